//! What foreman costs its etcd (issue 17, item 4), read from etcd's own counters (`/metrics` on its client port):
//! per job lifecycle (create → running → finished → deleted, `fake` jobs of N workers checkpointing every step) and
//! per hour of an idle cluster, with real processes against a real etcd (production build).
//!
//! One `foreman master` and two `foreman executor` processes. First the idle cluster is measured for
//! [`IDLE`]; then each job of [`JOBS`] runs alone from its create to its deletion, and its cost is what etcd
//! counted over that time less the idle rate. The test prints a table and holds each figure to the bound the
//! design gives it (see [`bound`]): a write added to every tick, every heartbeat or every step of a job fails it.
//!
//! Needs an etcd: `scripts/with-etcd cargo test --test process_cost -- --ignored --nocapture` starts a throwaway
//! one and sets `FOREMAN_TEST_ETCD`. It must be the only client of that etcd while it runs (`scripts/test` runs
//! the process tests' binaries one after another). Run with `--ignored` and no etcd, it fails rather than skips.
#![cfg(not(madsim))]

mod common;

use std::time::Duration;

use tokio::time::Instant;

use common::{create_job, etcd_from_env, foreman, http_get, query, sample, wait_for_leader, Cluster, JobView, POLL};

/// How long the idle cluster is measured.
const IDLE: Duration = Duration::from_secs(20);
/// How long the first election and the executors' registration may take.
const SETTLE_MAX: Duration = Duration::from_secs(20);
/// How long a job may take from its create to its deletion.
const JOB_MAX: Duration = Duration::from_secs(60);
/// (workers, target): each worker counts to the target, a step (and a checkpoint) every 10 ms.
const JOBS: [(u64, u64); 3] = [(1, 50), (4, 50), (4, 200)];

/// etcd's counters at one moment.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    /// Raft proposals committed: every write etcd made durable (a transaction is one, whatever it holds).
    proposals: f64,
    puts: f64,
    deletes: f64,
    /// Reads (ranges), each counted once whether alone or in a transaction.
    ranges: f64,
    /// Bytes etcd received from its gRPC clients, and sent them.
    received: f64,
    sent: f64,
}

impl Counters {
    fn minus(self, o: Counters) -> Counters {
        Counters {
            proposals: self.proposals - o.proposals,
            puts: self.puts - o.puts,
            deletes: self.deletes - o.deletes,
            ranges: self.ranges - o.ranges,
            received: self.received - o.received,
            sent: self.sent - o.sent,
        }
    }

    fn scaled(self, k: f64) -> Counters {
        Counters {
            proposals: self.proposals * k,
            puts: self.puts * k,
            deletes: self.deletes * k,
            ranges: self.ranges * k,
            received: self.received * k,
            sent: self.sent * k,
        }
    }
}

async fn counters(etcd: &str) -> Counters {
    let (status, text) = http_get(etcd, "/metrics").await.unwrap_or_else(|e| panic!("etcd's /metrics: {e}"));
    assert_eq!(status, 200, "etcd's /metrics: {text}");
    let value = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("etcd's /metrics has no {series}"));
    Counters {
        proposals: value("etcd_server_proposals_committed_total"),
        puts: value("etcd_mvcc_put_total"),
        deletes: value("etcd_mvcc_delete_total"),
        ranges: value("etcd_mvcc_range_total"),
        received: value("etcd_network_client_grpc_received_bytes_total"),
        sent: value("etcd_network_client_grpc_sent_bytes_total"),
    }
}

/// The most writes (puts + deletes) a job of `workers` workers counting to `target` may cost over `secs` seconds,
/// by the design: the create (the job record and its create token), the job master's record and epoch, each state
/// change of the job (created → running → finished), the deletion (every key of the job: record, token, fences,
/// worker records, checkpoints, status, job store) — a fixed 30; per worker its record and its deletion and one
/// incarnation's start — 4; a checkpoint per step; and the job's status, written when it changed at most every
/// 10 s, plus its final one.
fn bound(workers: u64, target: u64, secs: f64) -> f64 {
    30.0 + 4.0 * workers as f64 + (workers * target) as f64 + (secs / 10.0).ceil() + 2.0
}

#[tokio::test]
#[ignore = "needs an etcd: scripts/with-etcd cargo test --test process_cost -- --ignored --nocapture"]
async fn metastore_cost_per_job_and_per_idle_hour() {
    let etcd = etcd_from_env("process_cost");
    let mut cluster = Cluster::start(&etcd, "cost", 1, &[16, 16]);
    let masters = cluster.masters_except(None);
    wait_for_leader(&mut cluster, &masters, SETTLE_MAX, "the first leader", |_| true).await;
    let started = Instant::now();
    loop {
        let online: Result<common::ExecutorListView, _> = query(&masters, &["cluster", "executors"]).await;
        if online.as_ref().is_ok_and(|l| l.executors.iter().filter(|e| e.status == "online").count() == 2) {
            break;
        }
        assert!(started.elapsed() < SETTLE_MAX, "two executors online: not within {SETTLE_MAX:?}: {online:?}");
        tokio::time::sleep(POLL).await;
    }
    // Past the registrations' own writes.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let before = counters(&etcd).await;
    let t0 = Instant::now();
    tokio::time::sleep(IDLE).await;
    let idle_secs = t0.elapsed().as_secs_f64();
    let idle = counters(&etcd).await.minus(before).scaled(1.0 / idle_secs);
    let per_hour = idle.scaled(3600.0);
    eprintln!(
        "idle cluster (1 master, 2 executors), per hour: {:.0} proposals, {:.0} puts, {:.0} deletes, {:.0} reads, \
         {:.0} KB received, {:.0} KB sent (measured over {idle_secs:.1} s)",
        per_hour.proposals,
        per_hour.puts,
        per_hour.deletes,
        per_hour.ranges,
        per_hour.received / 1e3,
        per_hour.sent / 1e3
    );
    // Idle, nothing is written: executors heartbeat the leader, not etcd, and the leases are kept alive without
    // a write (etcd renews a lease on its leader, with no proposal).
    assert!(per_hour.puts + per_hour.deletes < 1.0, "an idle cluster writes to etcd: {per_hour:?} per hour");

    eprintln!("\n| job | seconds | writes (puts + deletes) | bound | proposals | reads | KB received | KB sent |");
    eprintln!("|---|---|---|---|---|---|---|---|");
    for (n, (workers, target)) in JOBS.into_iter().enumerate() {
        let id = format!("cost-{n}");
        let config = format!(r#"{{"workers":{workers},"target":{target},"tick_ms":10}}"#);
        let before = counters(&etcd).await;
        let t0 = Instant::now();
        create_job(&masters, &id, "fake", &config, JOB_MAX).await;
        loop {
            let job: Result<JobView, _> = query(&masters, &["job", "get", &id]).await;
            if job.as_ref().is_ok_and(|j| j.state == "finished") {
                break;
            }
            assert!(t0.elapsed() < JOB_MAX, "{id} did not finish within {JOB_MAX:?}: {job:?}");
            tokio::time::sleep(POLL).await;
        }
        loop {
            let run = foreman(&["job", "delete", &id, "--master", &masters, "--timeout", "2s"]).await;
            if run.code == Some(0) || run.stderr.contains("JOB_NOT_FOUND") {
                break;
            }
            assert!(t0.elapsed() < JOB_MAX, "{id} could not be deleted: {run:?}");
            tokio::time::sleep(POLL).await;
        }
        let secs = t0.elapsed().as_secs_f64();
        let cost = counters(&etcd).await.minus(before).minus(idle.scaled(secs));
        let writes = cost.puts + cost.deletes;
        let most = bound(workers, target, secs);
        eprintln!(
            "| {workers} workers × {target} steps | {secs:.1} | {writes:.0} ({:.0} + {:.0}) | {most:.0} | {:.0} | {:.0} | \
             {:.1} | {:.1} |",
            cost.puts,
            cost.deletes,
            cost.proposals,
            cost.ranges,
            cost.received / 1e3,
            cost.sent / 1e3
        );
        assert!(writes <= most, "{id}: {writes} writes, more than the design's {most} ({cost:?})");
        // Every step is a checkpoint: fewer writes than steps would mean the counters were not where they count.
        assert!(cost.puts >= (workers * target) as f64, "{id}: {} puts for {} steps", cost.puts, workers * target);
    }
}
