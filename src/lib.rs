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
mod source_tree {
    //! The crate's own sources, for the tests that hold its structure.

    use std::path::{Path, PathBuf};

    /// Every `.rs` file under `dir` (relative to the crate's root), subdirectories included, in path order.
    pub fn files(dir: &str) -> Vec<PathBuf> {
        let mut files = vec![];
        let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)];
        while let Some(d) = dirs.pop() {
            for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{} is not readable: {e}", d.display())) {
                let path = entry.expect("a directory entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
    }

    /// The code of a line: what comes before a `//` comment.
    pub fn code(line: &str) -> &str {
        line.split("//").next().unwrap_or("")
    }
}

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
        // Every source file, in subdirectories too (the job manager is a directory of its own).
        let files = super::source_tree::files("src/core");
        assert!(files.iter().any(|f| f.ends_with("manager/mod.rs")), "the walk reaches subdirectories: {files:?}");
        assert!(files.len() >= 10, "found only {files:?}");
        let mut found = vec![];
        for path in &files {
            let text = std::fs::read_to_string(path).expect("readable source");
            for (n, line) in text.lines().enumerate() {
                let code = super::source_tree::code(line);
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

    #[test]
    fn only_the_durable_copy_names_redb() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let files = super::source_tree::files("src");
        assert!(files.len() >= 40, "found only {} files", files.len());
        let found: Vec<String> = files
            .iter()
            .filter(|path| !ALLOWED.iter().any(|allowed| root.join(allowed) == **path))
            .filter(|path| {
                let text = std::fs::read_to_string(path).expect("readable source");
                // Spelled in two so that this line does not name it.
                text.lines().any(|line| super::source_tree::code(line).contains(concat!("redb", "::")))
            })
            .map(|path| path.display().to_string())
            .collect();
        assert!(found.is_empty(), "only {ALLOWED:?} may name redb, not:\n{}", found.join("\n"));
    }
}

#[cfg(test)]
mod architecture {
    //! The layer arrows of design.md §3, held: which top-level modules each module may name (`crate::x`). Core
    //! imports nothing of the crate; the decision-free layers below the processes (rpc, meta, clock, config)
    //! import only the core; job types import the framework and the core; the master never imports the CLI; the
    //! executor and the master talk over gRPC, never by importing each other.

    use std::collections::{BTreeMap, BTreeSet};

    /// Every top-level module and the modules it may import. A new module must be placed here.
    const ALLOWED: &[(&str, &[&str])] = &[
        ("core", &[]),
        ("buggify", &[]),
        ("planted", &["core"]),
        ("shutdown", &[]),
        ("clock", &["core"]),
        ("config", &["core"]),
        ("rpc", &["core"]),
        ("meta", &["core", "buggify"]),
        ("framework", &["core", "rpc", "meta", "clock", "buggify"]),
        ("jobs", &["core", "framework"]),
        (
            "executor",
            &["core", "rpc", "meta", "clock", "config", "framework", "jobs", "buggify", "planted", "shutdown"],
        ),
        ("master", &["core", "rpc", "meta", "clock", "config", "framework", "jobs", "buggify", "planted", "shutdown"]),
        ("cli", &["core", "rpc", "clock", "config"]),
        ("standalone", &["core", "config", "executor", "master", "jobs", "meta", "rpc", "shutdown"]),
    ];

    /// Arrows that break the layering today, each with the issue that removes it. Every one must still exist:
    /// when the work lands, its line goes too.
    const KNOWN: &[(&str, &str, &str)] = &[];

    /// The top-level module a source file belongs to (`src/<m>.rs` or `src/<m>/...`); None for lib.rs and main.rs.
    fn module_of(path: &std::path::Path) -> Option<String> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let rel = path.strip_prefix(&src).ok()?;
        let first = rel.components().next()?.as_os_str().to_str()?;
        let name = first.strip_suffix(".rs").unwrap_or(first);
        (!matches!(name, "lib" | "main")).then(|| name.to_owned())
    }

    /// The top-level modules a line of code names through `crate::`, grouped imports included
    /// (`crate::{a::b, c::{d, e}}` names a and c).
    fn named(code: &str) -> Vec<String> {
        let mut out = vec![];
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            // `foreman_crate::` or `other_crate::` are other paths.
            let before = rest[..at].chars().next_back();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // The first identifier of each item at depth one.
                let (mut depth, mut item_start) = (1usize, true);
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        ',' if depth == 1 => item_start = true,
                        c if item_start && (c.is_alphanumeric() || c == '_') => {
                            let word: String =
                                group[i..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                            out.push(word);
                            item_start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                let word: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !word.is_empty() {
                    out.push(word);
                }
            }
        }
        out
    }

    #[test]
    fn the_import_parser_sees_plain_and_grouped_paths() {
        assert_eq!(named("use crate::core::ids::JobId;"), ["core"]);
        assert_eq!(named("use crate::{core::{ids, job}, rpc::pb, meta};"), ["core", "rpc", "meta"]);
        assert_eq!(
            named("let x = crate::rpc::connect::connect(a, t); other_crate::x; crate::meta::y"),
            ["rpc", "meta"]
        );
        assert_eq!(named("nothing here"), Vec::<String>::new());
    }

    #[test]
    fn layers_import_only_downward() {
        let allowed: BTreeMap<&str, BTreeSet<&str>> =
            ALLOWED.iter().map(|(m, to)| (*m, to.iter().copied().collect())).collect();
        let known: BTreeSet<(&str, &str)> = KNOWN.iter().map(|(from, to, _)| (*from, *to)).collect();
        let files = super::source_tree::files("src");
        assert!(files.len() >= 40, "found only {} files", files.len());
        let mut found: BTreeMap<(String, String), String> = BTreeMap::new();
        let mut unplaced = BTreeSet::new();
        for path in &files {
            let Some(from) = module_of(path) else { continue };
            if !allowed.contains_key(from.as_str()) {
                unplaced.insert(from.clone());
                continue;
            }
            let text = std::fs::read_to_string(path).expect("readable source");
            for (n, line) in text.lines().enumerate() {
                for to in named(super::source_tree::code(line)) {
                    if to != from {
                        let place = format!("{}:{}", path.display(), n + 1);
                        found.entry((from.clone(), to)).or_insert(place);
                    }
                }
            }
        }
        assert!(unplaced.is_empty(), "modules with no place in the layering (add them to ALLOWED): {unplaced:?}");
        // The test sees real arrows (a parser that found nothing would pass everything).
        assert!(found.contains_key(&("master".into(), "core".into())), "found {:?}", found.keys());
        let broken: Vec<String> = found
            .iter()
            .filter(|((from, to), _)| {
                !allowed[from.as_str()].contains(to.as_str()) && !known.contains(&(from.as_str(), to.as_str()))
            })
            .map(|((from, to), at)| format!("{from} -> {to} (first at {at})"))
            .collect();
        assert!(broken.is_empty(), "arrows design.md §3 does not allow:\n{}", broken.join("\n"));
        let gone: Vec<String> = KNOWN
            .iter()
            .filter(|(from, to, _)| !found.contains_key(&((*from).into(), (*to).into())))
            .map(|(from, to, why)| format!("{from} -> {to} ({why})"))
            .collect();
        assert!(
            gone.is_empty(),
            "known exceptions that no longer exist (remove them from KNOWN):\n{}",
            gone.join("\n")
        );
    }
}
