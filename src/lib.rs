//! foreman: a fault-tolerant job master with a deterministic simulator.
//!
//! Layers (design.md §3): [`core`] decides, [`rpc`] carries the API, [`config`] holds the validated settings.

pub mod buggify;
pub mod cli;
pub mod clock;
pub mod config;
pub mod core;
pub mod executor;
pub mod framework;
pub mod jobs;
pub mod master;
pub mod meta;
pub mod planted;
pub mod rpc;
pub mod shutdown;
pub mod standalone;

#[cfg(test)]
mod core_purity {
    //! src/core must stay pure: no async, no clocks, no entropy, no I/O, no unordered maps (design.md §3).
    //! Clippy's disallowed lists cover the whole crate; this test holds the core to the stricter rule that it does
    //! not even name the runtime crates.

    const FORBIDDEN: &[&str] = &[
        "async ",
        ".await",
        "tokio",
        "tonic",
        "etcd_client",
        "madsim",
        "Instant",
        "SystemTime",
        "std::thread",
        "std::fs",
        "std::net",
        "std::io",
        "std::env",
        "HashMap",
        "HashSet",
        "rand::",
        "getrandom",
        "println!",
    ];

    #[test]
    fn core_names_no_runtime_clock_entropy_or_io() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
        // Every source file, in subdirectories too (the job manager is a directory of its own).
        let mut files = vec![];
        let mut dirs = vec![dir];
        while let Some(d) = dirs.pop() {
            for entry in std::fs::read_dir(&d).expect("src/core is readable") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        files.sort();
        assert!(files.iter().any(|f| f.ends_with("manager/mod.rs")), "the walk reaches subdirectories: {files:?}");
        assert!(files.len() >= 10, "found only {files:?}");
        let mut found = vec![];
        for path in &files {
            let text = std::fs::read_to_string(path).expect("readable source");
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for word in FORBIDDEN {
                    if code.contains(word) {
                        found.push(format!("{}:{}: {word}", path.display(), n + 1));
                    }
                }
            }
        }
        assert!(found.is_empty(), "src/core must stay pure:\n{}", found.join("\n"));
    }
}

#[cfg(test)]
mod disk_confinement {
    //! The disk database is named by one module only: the embedded store's durable copy (src/meta/durable.rs and its
    //! tests), which only a store given a data directory opens. So the simulation's stores, which live in memory,
    //! never reach it, and nothing else writes behind the metastore's contract.

    const ALLOWED: &[&str] = &["src/meta/durable.rs", "src/meta/durable/tests.rs"];

    fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("a readable source directory") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn only_the_durable_copy_names_redb() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = vec![];
        sources(&root.join("src"), &mut files);
        assert!(files.len() >= 40, "found only {} files", files.len());
        let found: Vec<String> = files
            .iter()
            .filter(|path| !ALLOWED.iter().any(|allowed| root.join(allowed) == **path))
            .filter(|path| {
                let text = std::fs::read_to_string(path).expect("readable source");
                text.lines().any(|line| line.split("//").next().unwrap_or("").contains("redb::"))
            })
            .map(|path| path.display().to_string())
            .collect();
        assert!(found.is_empty(), "only {ALLOWED:?} may name redb, not:\n{}", found.join("\n"));
    }
}
