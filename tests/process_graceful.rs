//! Graceful shutdown with real processes against a real etcd (production build; issue 6, item 6).
//!
//! - SIGTERM on the leader master: it steps down and gives its election lease back before it exits, so a survivor
//!   leads at once, not after the lease TTL that a SIGKILL costs (`process_failover`).
//! - SIGTERM on the executor hosting a job master: it tells the leader it drains (nothing new is placed on it),
//!   its workers stop right after a checkpoint and its job masters stop, each is started again elsewhere at once,
//!   then it deregisters and exits 0. Every job still finishes with exact counters, and the leader never has to
//!   declare the executor offline.
//!
//! Needs an etcd: `scripts/with-etcd cargo test --test process_graceful -- --ignored` starts a throwaway one and
//! sets `FOREMAN_TEST_ETCD`. Run with `--ignored` and no etcd, it fails rather than skips.
#![cfg(not(madsim))]

mod common;

use std::time::Duration;

use tokio::time::Instant;

use common::{create_job, etcd_from_env, query, wait_for_leader, Cluster, ExecutorListView, JobView, POLL};

/// The election lease the masters run with: the default, not passed on the command line.
const LEASE_TTL: Duration = Duration::from_secs(5);
/// A graceful handover must beat the lease TTL by far; this bound leaves room for the CLI polls of a slow machine.
const HANDOVER_MAX: Duration = Duration::from_secs(2);
/// The executors' offline TTL (the default): what a crashed executor's work waits for before it moves.
const OFFLINE_TTL: Duration = Duration::from_secs(10);
/// A drained job master must run again elsewhere well before the offline TTL.
const MOVED_MAX: Duration = Duration::from_secs(4);
/// How long a process may take to exit after SIGTERM (an executor's drain is bounded by its drain timeout, 10 s).
const EXIT_MAX: Duration = Duration::from_secs(15);
/// How long the first election, the registrations and each job creation may take.
const SETTLE_MAX: Duration = Duration::from_secs(15);
/// How long every job may take to finish after the stop.
const FINISH_MAX: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real etcd: run through scripts/with-etcd"]
async fn sigterm_on_the_leader_hands_over_at_once() {
    let etcd = etcd_from_env("process_graceful");
    let mut cluster = Cluster::start(&etcd, "graceful-leader", 3, &[]);
    let all = cluster.masters_except(None);
    let first = wait_for_leader(&mut cluster, &all, SETTLE_MAX, "the first election", |v| v.leader_epoch > 0).await;
    let victim = cluster.index_of(&first.name);
    let survivors = cluster.masters_except(Some(victim));
    let asked = Instant::now();
    let (code, exited_after) = cluster.terminate(victim, EXIT_MAX).await;
    assert_eq!(code, Some(0), "{} exited with {code:?} after SIGTERM", first.name);
    let next = wait_for_leader(&mut cluster, &survivors, LEASE_TTL + Duration::from_secs(5), "handover", |v| {
        v.name != first.name && v.leader_epoch > first.leader_epoch
    })
    .await;
    let handover = asked.elapsed();
    eprintln!(
        "HANDOVER: {} (epoch {}) got SIGTERM and exited 0 after {} ms; {} (epoch {}) named leader after {} ms \
         (lease TTL {} ms, bound {} ms)",
        first.name,
        first.leader_epoch,
        exited_after.as_millis(),
        next.name,
        next.leader_epoch,
        handover.as_millis(),
        LEASE_TTL.as_millis(),
        HANDOVER_MAX.as_millis()
    );
    assert!(handover <= HANDOVER_MAX, "the next leader took {handover:?} after SIGTERM (a SIGKILL costs the TTL)");
    let log = std::fs::read_to_string(&cluster.nodes[victim].log).unwrap_or_default();
    assert!(log.contains("gave the election lease back"), "{} did not give its lease back:\n{log}", first.name);
}

/// The fake jobs of the executor test: 8–12 s undisturbed, so they run through the stop.
const JOBS: &[(&str, &str)] = &[
    ("drain-a", r#"{"workers":3,"target":600,"tick_ms":15}"#),
    ("drain-b", r#"{"workers":2,"target":500,"tick_ms":20}"#),
    ("drain-c", r#"{"workers":3,"target":600,"tick_ms":20}"#),
];

async fn job(masters: &str, id: &str) -> Result<JobView, String> {
    query(masters, &["job", "get", id]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real etcd: run through scripts/with-etcd"]
async fn sigterm_on_an_executor_drains_it_and_moves_its_work_at_once() {
    let etcd = etcd_from_env("process_graceful");
    let mut cluster = Cluster::start(&etcd, "graceful-executor", 2, &[12, 12, 12]);
    let masters = cluster.masters_except(None);
    wait_for_leader(&mut cluster, &masters, SETTLE_MAX, "the first election", |v| v.leader_epoch > 0).await;
    for (id, config) in JOBS {
        create_job(&masters, id, "fake", config, SETTLE_MAX).await;
    }
    // Every job running, and the first one's job master placed.
    let started = Instant::now();
    let hosting = loop {
        cluster.assert_running();
        let mut all_running = true;
        let mut first = None;
        for (id, _) in JOBS {
            match job(&masters, id).await {
                Ok(j) if j.state == "running" && j.executor_id.is_some() => {
                    if *id == JOBS[0].0 {
                        first = Some(j);
                    }
                }
                _ => all_running = false,
            }
        }
        if let (true, Some(j)) = (all_running, first) {
            break j;
        }
        assert!(started.elapsed() < SETTLE_MAX * 2, "the jobs are not all running");
        tokio::time::sleep(POLL).await;
    };
    // Let the workers count a while, then SIGTERM the executor hosting the first job's job master.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let host_id = hosting.executor_id.expect("placed");
    let executors: ExecutorListView = query(&masters, &["cluster", "executors"]).await.expect("list executors");
    let host = executors.executors.iter().find(|e| e.id == host_id).expect("the host is listed");
    let victim = cluster.index_of(&host.name);
    let asked = Instant::now();
    let (code, exited_after) = cluster.terminate(victim, EXIT_MAX).await;
    assert_eq!(code, Some(0), "{} exited with {code:?} after SIGTERM", host.name);
    let moved = loop {
        if let Ok(j) = job(&masters, JOBS[0].0).await {
            if j.epoch > hosting.epoch && j.executor_id.is_some_and(|e| e != host_id) {
                break asked.elapsed();
            }
            assert!(j.state != "failed", "{} failed: {j:?}", JOBS[0].0);
        }
        assert!(asked.elapsed() < OFFLINE_TTL * 2, "{}'s job master never ran again", JOBS[0].0);
        tokio::time::sleep(POLL).await;
    };
    eprintln!(
        "DRAIN: {} (executor {host_id}) got SIGTERM, drained, deregistered and exited 0 after {} ms; {}'s job \
         master ran again elsewhere {} ms after the signal (offline TTL {} ms, bound {} ms)",
        host.name,
        exited_after.as_millis(),
        JOBS[0].0,
        moved.as_millis(),
        OFFLINE_TTL.as_millis(),
        MOVED_MAX.as_millis()
    );
    assert!(moved <= MOVED_MAX, "the job master moved {moved:?} after SIGTERM");
    let log = std::fs::read_to_string(&cluster.nodes[victim].log).unwrap_or_default();
    for said in ["draining: no new tasks", "drained: every task stopped", "deregistered"] {
        assert!(log.contains(said), "{} never logged {said:?}:\n{log}", host.name);
    }
    // Every job finishes, exactly, and the stopped executor was never declared offline.
    let started = Instant::now();
    for (id, _) in JOBS {
        let done = loop {
            match job(&masters, id).await {
                Ok(j) if j.state == "finished" => break j,
                Ok(j) => assert!(!matches!(j.state.as_str(), "failed" | "canceled"), "{id} ended {j:?}"),
                Err(_) => {}
            }
            assert!(started.elapsed() < FINISH_MAX, "{id} did not finish within {FINISH_MAX:?}");
            tokio::time::sleep(POLL).await;
        };
        eprintln!("{id}: finished, {} restart(s)", done.restarts);
        assert!(done.restarts <= 1, "{id} restarted {} times for one graceful stop", done.restarts);
    }
    for i in 0..cluster.nodes.len() {
        if cluster.nodes[i].name.starts_with('m') {
            let log = std::fs::read_to_string(&cluster.nodes[i].log).unwrap_or_default();
            let offline = format!("executor=e{host_id} ");
            assert!(
                !log.lines().any(|l| l.contains("declared offline") && l.contains(&offline)),
                "{} declared the drained executor offline",
                cluster.nodes[i].name
            );
        }
    }
}
