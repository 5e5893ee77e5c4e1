//! Late messages without a late-message fault: a follower master paused with requests in its inbox forwards them
//! to the leader when it resumes, seconds after their senders gave up on them. This is the one way the faults of
//! today deliver a job master's heartbeat past its TTL, so it is where the leader's fence of older incarnations
//! (core/workers.rs, the same guard a job master applies to its workers) is the last line of defence: the old
//! incarnation has long fenced itself, and only its message survives it.

use std::collections::BTreeSet;
use std::time::Duration;

use foreman::jobs::fake::FakeConfig;
use foreman::planted::Planted;
use madsim::rand::Rng;

use crate::cluster::Cluster;
use crate::fake_jobs::{await_running, create, finish_and_check, job_master_host, leader, JobFigures};
use crate::harness::announce;

/// A follower is paused while the executor hosting job-0's job master is cut from the leader (not from the
/// follower): the job master's heartbeats, turned away by the cut, go to the follower and wait in its inbox. The
/// job master fences itself, the leader declares its executor offline and starts job-0's next job master
/// elsewhere, which checks in. Then the follower resumes and forwards the old incarnation's heartbeats: the leader
/// must answer them "stale" (rule 2), not count them as the job master's. Every job then finishes.
pub async fn job_master_heard_late_through_a_paused_follower_run(planted: Option<Planted>) -> JobFigures {
    let c = Cluster::start_with(2, 3, planted).await;
    let l = leader(&c).await;
    let jobs = vec![("job-0".to_owned(), FakeConfig { workers: 1, target: 300, tick_ms: 150 })];
    create(&c, &jobs).await;
    let running = await_running(&c, &jobs).await;
    let host = c.executors[job_master_host(&c, &running["job-0"]).await].node.id();
    let to_leader = [(host, c.masters[l].node.id()), (c.masters[l].node.id(), host)];
    c.pause_master(1 - l);
    for (a, b) in to_leader {
        c.net().clog_link(a, b);
    }
    // Past the executor's offline TTL, the backoff and the next job master's first heartbeat.
    tokio::time::sleep(Duration::from_millis(madsim::rand::thread_rng().gen_range(18_000..=25_000))).await;
    c.resume_master(1 - l);
    for (a, b) in to_leader {
        c.net().unclog_link(a, b);
    }
    finish_and_check(&c, &jobs, &BTreeSet::new()).await
}

#[madsim::test]
async fn job_master_heard_late_through_a_paused_follower() {
    announce("job_master_heard_late_through_a_paused_follower");
    job_master_heard_late_through_a_paused_follower_run(None).await;
}
