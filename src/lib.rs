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
        let mut files: Vec<_> =
            std::fs::read_dir(&dir).expect("src/core exists").map(|e| e.expect("entry").path()).collect();
        files.sort();
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
