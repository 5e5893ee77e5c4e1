//! Write latency and throughput of the durable embedded metastore (`foreman standalone`'s), through the public API.
//!
//! Run with `cargo bench --bench metastore` (production build). Every write is durable before it returns, so the
//! figures are mostly the disk's fsync; they say how many metastore writes a standalone cluster can make, and how
//! long a restart takes to load a store of many keys. `FOREMAN_BENCH_DIR` puts the scratch directories on another
//! disk (default: the system's temporary directory).
//!
//! Cases: one put per transaction (a job's state change), 16 puts per transaction (a job with its workers), and
//! reopening a store of 10,000 keys.

#[cfg(not(madsim))]
mod bench {
    use std::path::PathBuf;
    use std::time::Duration;

    use foreman::meta::{MetaStore, Op};

    /// Transactions per case.
    const TXNS: usize = 1_000;
    /// Keys in the store that is reopened.
    const REOPEN_KEYS: usize = 10_000;
    /// About a job record's size.
    const VALUE_BYTES: usize = 400;

    // why: a benchmark measures wall time; nothing here runs in the simulator.
    #[allow(clippy::disallowed_methods)]
    fn clock() -> std::time::Instant {
        std::time::Instant::now()
    }

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(label: &str) -> Scratch {
            let base = std::env::var_os("FOREMAN_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
            let dir = base.join(format!("foreman-bench-{label}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn value(i: usize) -> Vec<u8> {
        let mut v = format!("{{\"id\":\"job-{i:08}\",\"state\":\"running\",\"epoch\":{i},\"config\":\"").into_bytes();
        v.resize(VALUE_BYTES - 2, b'x');
        v.extend_from_slice(b"\"}");
        v
    }

    fn put(key: String, i: usize) -> Op {
        Op::Put { key, value: value(i), lease: None }
    }

    fn percentile(sorted: &[Duration], p: f64) -> Duration {
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[i]
    }

    fn dir_bytes(dir: &std::path::Path) -> u64 {
        std::fs::read_dir(dir)
            .map(|entries| entries.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0)
    }

    async fn writes(label: &str, ops_per_txn: usize) {
        let scratch = Scratch::new(label);
        let store = MetaStore::embedded("bench", Some(&scratch.0)).expect("open the store");
        let mut took = Vec::with_capacity(TXNS);
        let start = clock();
        for t in 0..TXNS {
            let ops: Vec<Op> = (0..ops_per_txn).map(|o| put(format!("jobs/{:04}/{o:02}", t % 200), t)).collect();
            let began = clock();
            assert!(store.txn(&[], &ops).await.expect("a durable write"));
            took.push(began.elapsed());
        }
        let total = start.elapsed();
        took.sort();
        println!(
            "{label:<28} {:>8.0} txn/s {:>9.0} puts/s   p50 {:>7.3} ms  p99 {:>7.3} ms  max {:>7.3} ms   on disk {:>6} KiB",
            TXNS as f64 / total.as_secs_f64(),
            (TXNS * ops_per_txn) as f64 / total.as_secs_f64(),
            percentile(&took, 0.5).as_secs_f64() * 1e3,
            percentile(&took, 0.99).as_secs_f64() * 1e3,
            took.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
            dir_bytes(&scratch.0) / 1024,
        );
    }

    async fn reopen() {
        let scratch = Scratch::new("reopen");
        {
            let store = MetaStore::embedded("bench", Some(&scratch.0)).expect("open the store");
            for chunk in (0..REOPEN_KEYS).collect::<Vec<_>>().chunks(100) {
                let ops: Vec<Op> = chunk.iter().map(|&i| put(format!("jobs/{i:06}"), i)).collect();
                assert!(store.txn(&[], &ops).await.expect("a durable write"));
            }
        }
        let began = clock();
        let store = MetaStore::embedded("bench", Some(&scratch.0)).expect("reopen the store");
        let took = began.elapsed();
        let listed = store.list("jobs/").await.expect("list").len();
        assert_eq!(listed, REOPEN_KEYS);
        println!(
            "{:<28} {:>8.1} ms for {REOPEN_KEYS} keys of {VALUE_BYTES} bytes   on disk {} KiB",
            "reopen",
            took.as_secs_f64() * 1e3,
            dir_bytes(&scratch.0) / 1024
        );
    }

    pub fn main() {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a current-thread runtime");
        runtime.block_on(async {
            println!("durable embedded metastore: {TXNS} transactions per case, values of {VALUE_BYTES} bytes");
            writes("1 put per transaction", 1).await;
            writes("16 puts per transaction", 16).await;
            reopen().await;
        });
    }
}

fn main() {
    #[cfg(not(madsim))]
    bench::main();
}
