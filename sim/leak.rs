//! Where the simulator's memory goes (issue 17 item 5): runs many seeds of one kind of run in this process and
//! prints the resident set every so often, so that a run that leaves memory behind shows as a slope.
//!
//! By hand: `FOREMAN_LEAK=<kind> FOREMAN_LEAK_SEEDS=<n> cargo stest --test sim leak::probe -- --ignored --nocapture`,
//! kinds `empty` (a runtime and nothing in it), `sleep` (one timer, 100 simulated seconds), `cluster` (three masters
//! and three executors, idle for 60 simulated seconds), `swarm` (a swarm seed).

use std::time::Duration;

use crate::cluster::Cluster;
use crate::harness::run_seed;

/// The process's resident set in MB (Linux).
fn rss_mb() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0.0);
    pages * 4096.0 / 1e6
}

#[test]
#[ignore]
fn probe() {
    let kind = std::env::var("FOREMAN_LEAK").unwrap_or_else(|_| "cluster".into());
    let seeds: u64 = std::env::var("FOREMAN_LEAK_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    let start = rss_mb();
    eprintln!("{kind}: {start:.0} MB before");
    for k in 0..seeds {
        let seed = 700_000 + k;
        let result = match kind.as_str() {
            "empty" => run_seed(seed, || Box::pin(async {})).map(|_| ()),
            "sleep" => run_seed(seed, || Box::pin(async { tokio::time::sleep(Duration::from_secs(100)).await })),
            // A task that never ends, holding 1 MB, spawned on the main node and on a node of its own.
            "task" => run_seed(seed, || {
                Box::pin(async {
                    let held = vec![1u8; 1 << 20];
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(1_000_000)).await;
                        drop(held);
                    });
                    tokio::time::sleep(Duration::from_secs(1)).await;
                })
            }),
            "node" => run_seed(seed, || {
                Box::pin(async {
                    let node = madsim::runtime::Handle::current().create_node().name("n").build();
                    node.spawn(async move {
                        let held = vec![1u8; 1 << 20];
                        tokio::time::sleep(Duration::from_secs(1_000_000)).await;
                        drop(held);
                    });
                    tokio::time::sleep(Duration::from_secs(1)).await;
                })
            }),
            // The same, the node killed before the run ends.
            "killed" => run_seed(seed, || {
                Box::pin(async {
                    let handle = madsim::runtime::Handle::current();
                    let node = handle.create_node().name("n").build();
                    node.spawn(async move {
                        let held = vec![1u8; 1 << 20];
                        tokio::time::sleep(Duration::from_secs(1_000_000)).await;
                        drop(held);
                    });
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    handle.kill(node.id());
                })
            }),
            "cluster" => run_seed(seed, || {
                Box::pin(async {
                    let _c = Cluster::start(3, 3).await;
                    tokio::time::sleep(Duration::from_secs(60)).await;
                })
            }),
            "swarm" => run_seed(seed, || {
                Box::pin(async {
                    crate::swarm::swarm_run(crate::swarm::Run::default()).await;
                })
            }),
            other => panic!("unknown kind {other}"),
        };
        if let Err(f) = result {
            eprintln!("seed {seed}: {f}");
        }
        if (k + 1) % 50 == 0 {
            let now = rss_mb();
            eprintln!("{kind}: {} seeds, {now:.0} MB, {:.2} MB per seed so far", k + 1, (now - start) / (k + 1) as f64);
        }
    }
}
