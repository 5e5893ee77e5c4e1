//! Workloads unlike the handful of long jobs the other scenarios run (design.md §8): jobs far shorter than a
//! heartbeat interval, and storms of jobs past the cluster's capacity. Every slot the leader reserves must be
//! accounted for by something live (`checks::reservations_explained`, on the whole run), and once the jobs have
//! ended every slot is free again and the leader holds exactly what the executors run
//! (`checks::capacity_settled`).

use std::time::Duration;

use foreman::config::ExecutorConfig;
use foreman::core::invariants::{Id, Rule, Violation};
use foreman::jobs::fake::FakeConfig;
use foreman::planted::Planted;
use foreman::rpc::pb;
use madsim::rand::Rng;

use crate::checks::{first_broken, job_history, one_live_incarnation, placement_within_bounds};
use crate::cluster::{executor_addr, master_addr, master_config, Cluster, Seen, Spec};
use crate::fake_jobs::create_job;
use crate::harness::{announce, fail, require};
use crate::master_failover::{await_job, check_capacity_settled, check_safety, on_client, terminal};

/// A cluster of `masters` masters and `executors` executors of `capacity` slots each, settled.
async fn cluster(masters: usize, executors: usize, capacity: u32, planted: Option<Planted>) -> Cluster {
    let c = build(masters, &vec![(capacity, "a"); executors], planted).await;
    c.settle(Duration::from_secs(30)).await;
    c
}

/// A cluster of `masters` masters and one executor per (capacity, zone label), just built.
async fn build(masters: usize, executors: &[(u32, &str)], planted: Option<Planted>) -> Cluster {
    let executors = executors
        .iter()
        .enumerate()
        .map(|(i, &(capacity, zone))| {
            let mut c = ExecutorConfig {
                name: format!("executor-{i}"),
                addr: executor_addr(i),
                join: (0..masters).map(master_addr).collect(),
                capacity,
                collect_interval: crate::cluster::NO_COLLECTION,
                ..ExecutorConfig::default()
            };
            c.labels.insert("zone".into(), zone.into());
            c.fill_derived();
            c.validate().expect("the simulated executor configuration is valid");
            c
        })
        .collect();
    let masters = (0..masters).map(master_config).collect();
    Cluster::build_spec(Spec::jobs(masters, executors, planted)).await
}

/// Every rule on the whole run: the shared safety checks (leadership, detection, capacity accounting), one live
/// incarnation, legal job histories, placement within capacity.
fn check_rules(c: &Cluster, capacity: u32) {
    check_safety(c);
    let events = c.recorder.events();
    first_broken([
        ("one live incarnation", one_live_incarnation(&events)),
        ("job history", job_history(&events)),
        ("placement", placement_within_bounds(&events, capacity)),
    ])
    .unwrap_or_else(|v| fail(v));
}

/// Every job ended: the ones in `stuck` did not ([`Rule::JobEnds`]).
fn not_stuck(c: &Cluster, stuck: &[String], what: &str) {
    require(stuck.is_empty(), || {
        let detail = format!("{what}: {stuck:?}");
        Violation::new(Rule::JobEnds, c.clock.now(), detail).with(stuck.iter().map(|j| Id::Job(j.clone())))
    });
}

/// A job of one step or none: its tasks start and end well within one heartbeat interval.
fn tiny(id: String) -> pb::Job {
    let mut rng = madsim::rand::thread_rng();
    let config = FakeConfig::counting(rng.gen_range(1..=2), rng.gen_range(0..=1), 1);
    pb::Job {
        id,
        r#type: "fake".into(),
        config: serde_json::to_vec(&config).expect("a fake config serializes"),
        ..Default::default()
    }
}

/// Creates `jobs` one after the other (each acknowledged before the next), recording each acknowledgement.
async fn create_each(c: &Cluster, jobs: Vec<pb::Job>) {
    let masters = c.masters.len();
    for job in jobs {
        let id = job.id.clone();
        assert!(on_client(c, create_job(masters, job)).await, "create {id}: no master acknowledged it in 30 s");
        c.recorder.record("client", Seen::JobCreated { id });
    }
}

/// Waits up to `within` for each job to end; the ids of those that did not (checked after the safety rules, so a
/// leak is named by the accounting check rather than by its consequence).
async fn await_all(c: &Cluster, ids: &[String], within: Duration) -> Vec<String> {
    let mut stuck = vec![];
    for id in ids {
        let (ended, job) = await_job(c, id, within, terminal).await;
        if !ended || job.state != pb::JobState::Finished as i32 {
            stuck.push(format!("{id} ({:?})", pb::JobState::try_from(job.state).unwrap_or(pb::JobState::Unspecified)));
        }
    }
    stuck
}

/// The outside-in repro: on the shape of `foreman standalone` (one master, two executors of 16 slots), one-step
/// jobs created one after another, 60 of them. Each job's tasks start and end between two heartbeats of their
/// executor. Every job finishes, and afterwards every slot is free again: before reservations were settled by the
/// executors' reports of what ended, each such job leaked its slots, and about twenty of them deadlocked the
/// cluster.
#[madsim::test]
async fn one_step_jobs_give_every_slot_back() {
    one_step_jobs_give_every_slot_back_run(None).await;
}

pub async fn one_step_jobs_give_every_slot_back_run(planted: Option<Planted>) {
    announce("one_step_jobs_give_every_slot_back");
    let c = cluster(1, 2, 16, planted).await;
    let ids: Vec<String> = (0..60).map(|i| format!("one-step-{i}")).collect();
    create_each(&c, ids.iter().cloned().map(tiny).collect()).await;
    let stuck = await_all(&c, &ids, Duration::from_secs(60)).await;
    // A settled cluster: every reservation's window is over, every executor has reported since.
    tokio::time::sleep(c.config.placement.reservation_ttl + Duration::from_secs(2)).await;
    check_rules(&c, 16);
    not_stuck(&c, &stuck, "one-step jobs did not finish within 60 s");
    check_capacity_settled(&c, true);
}

/// A storm past capacity: three masters, three executors of 4 slots, 60 tiny jobs created at once (each needs a
/// job-master slot and one or two worker slots, and job masters may hold only half of the 12 slots), and the
/// leader killed in the middle of it. Every job finishes, no reservation outlives its window or the report that
/// settles it, and once the storm is over every slot is free again.
#[madsim::test]
async fn job_storm_past_capacity_with_a_leader_kill() {
    announce("job_storm_past_capacity_with_a_leader_kill");
    let c = cluster(3, 3, 4, None).await;
    let masters = c.masters.len();
    let ids: Vec<String> = (0..60).map(|i| format!("storm-{i}")).collect();
    let mut calls = vec![];
    for id in &ids {
        let (job, rec) = (tiny(id.clone()), c.recorder.clone());
        let delay = Duration::from_millis(madsim::rand::thread_rng().gen_range(0..2_000));
        calls.push(c.client.spawn(async move {
            tokio::time::sleep(delay).await;
            let id = job.id.clone();
            let acked = create_job(masters, job).await;
            if acked {
                rec.record("client", Seen::JobCreated { id: id.clone() });
            }
            (id, acked)
        }));
    }
    tokio::time::sleep(Duration::from_millis(madsim::rand::thread_rng().gen_range(500..4_000))).await;
    if let Some(&leader) = c.leaders().first() {
        c.kill_master(leader);
        tokio::time::sleep(Duration::from_secs(2)).await;
        c.restart_master(leader);
    }
    let mut acked = vec![];
    for call in calls {
        let (id, ok) = call.await.expect("the client task finished");
        assert!(ok, "create {id}: no master acknowledged it in 30 s");
        acked.push(id);
    }
    let stuck = await_all(&c, &acked, Duration::from_secs(120)).await;
    tokio::time::sleep(c.config.placement.reservation_ttl + Duration::from_secs(2)).await;
    check_rules(&c, 4);
    not_stuck(&c, &stuck, "storm jobs did not finish within 120 s");
    check_capacity_settled(&c, true);
}

/// Polls job `id` until its `waiting` reason is `want` (up to 10 s); the job as last seen.
async fn await_waiting(c: &Cluster, id: &str, want: &str) -> pb::Job {
    let mut waited = Duration::ZERO;
    loop {
        let (_, job) = await_job(c, id, Duration::ZERO, terminal).await;
        if job.waiting == want {
            return job;
        }
        assert!(waited < Duration::from_secs(10), "{id} does not say {want:?} after 10 s: {job:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
        waited += Duration::from_millis(250);
    }
}

/// Jobs no executor can take say why, and say it again after a leader failover: one costs more slots than any
/// executor has, the other asks for a zone no executor is in. Two masters, one executor of 4 slots in zone a, and
/// one of 8 slots in zone x that is paused from the start (it never registers). Once it is resumed, both jobs are
/// placed, run and finish, and no longer say anything.
#[madsim::test]
async fn unplaceable_jobs_say_why_until_an_executor_fits() {
    announce("unplaceable_jobs_say_why_until_an_executor_fits");
    let c = build(2, &[(4, "a"), (8, "x")], None).await;
    c.pause_executor(1);
    c.await_leader(Duration::from_secs(30)).await.expect("a leader");
    let mut big = tiny("big".into());
    big.cost = 6;
    let mut zoned = tiny("zoned".into());
    zoned.selectors = vec![pb::Selector { key: "zone".into(), target: "x".into(), op: pb::SelectorOp::Eq as i32 }];
    create_each(&c, vec![big, zoned]).await;
    let too_big = "no executor has 6 slots: the only executor that passes the filters has 4 slots, so it cannot be \
                   placed until a larger one joins";
    let no_zone = "no executor matches zone=x: it ruled out all 1 executors left by the filters before it";
    for (id, why) in [("big", too_big), ("zoned", no_zone)] {
        let job = await_waiting(&c, id, why).await;
        assert_eq!(job.state, pb::JobState::Created as i32, "{job:?}");
    }
    // The reasons live in the leader's memory: the next leader says them again.
    let leader = c.leaders()[0];
    c.kill_master(leader);
    for (id, why) in [("big", too_big), ("zoned", no_zone)] {
        await_waiting(&c, id, why).await;
    }
    c.restart_master(leader);
    c.resume_executor(1);
    let stuck = await_all(&c, &["big".into(), "zoned".into()], Duration::from_secs(60)).await;
    not_stuck(&c, &stuck, "placeable at last, yet not finished");
    for id in ["big", "zoned"] {
        let (_, job) = await_job(&c, id, Duration::ZERO, terminal).await;
        assert_eq!(job.waiting, "", "{job:?}");
    }
    tokio::time::sleep(c.config.placement.reservation_ttl + Duration::from_secs(2)).await;
    check_rules(&c, 8);
    check_capacity_settled(&c, true);
}
