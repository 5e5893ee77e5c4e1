//! Guards made the last line of defence (design.md §8): scenarios aimed at a guard that the swarm's seeds rarely
//! or never leave alone, each naming the guard, what hides it elsewhere, and how the scenario takes that away.
//! `sim/bug_finding.rs` runs each against its guard's switch.

use std::collections::BTreeSet;
use std::time::Duration;

use foreman::jobs::fake::FakeConfig;
use foreman::planted::Planted;
use madsim::rand::Rng;

use crate::cluster::{executor_config, master_config, Cluster, Spec};
use crate::fake_jobs::{await_running, create, finish_and_check, job_master_host, leader, JobFigures};
use crate::harness::announce;

/// The job manager's fence of older job-master incarnations (core/workers.rs `fence`). Elsewhere the old
/// incarnation has fenced itself before its successor exists, and so sends nothing more; a follower master paused
/// with requests in its inbox forwards them to the leader when it resumes, seconds after their senders gave up on
/// them, and the old incarnation's heartbeat outlives it.
///
/// A follower is paused while the executor hosting job-0's job master is cut from the leader (not from the
/// follower): the job master's heartbeats, turned away by the cut, go to the follower and wait in its inbox. The
/// job master fences itself, the leader declares its executor offline and starts job-0's next job master
/// elsewhere, which checks in. Then the follower resumes and forwards the old incarnation's heartbeats: the leader
/// must answer them "stale" (rule 2), not count them as the job master's. Every job then finishes.
///
/// Job masters call the leader themselves here (`executors.carry-job-masters` off): carried, the old incarnation's
/// heartbeats ride on its executor's, which the leader turns away once it has declared that executor offline, so
/// the guard is not the last line (the carried swarm covers it there).
pub async fn job_master_heard_late_through_a_paused_follower_run(planted: Option<Planted>) -> JobFigures {
    let masters: Vec<_> = (0..2)
        .map(|i| {
            let mut m = master_config(i);
            m.executors.carry_job_masters = false;
            m
        })
        .collect();
    let executors = (0..3).map(|i| executor_config(i, 2)).collect();
    let c = Cluster::build_spec(Spec::jobs(masters, executors, planted)).await;
    let l = leader(&c).await;
    let jobs = vec![("job-0".to_owned(), FakeConfig::counting(1, 300, 150))];
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

/// An executor's self-fence (core/agent.rs). Elsewhere a job master on an executor cut from the masters fences
/// itself by its own link (its heartbeats go the same way) no later than the leader starts its successor; here the
/// job masters' self-fence (13 s) is longer than the executors' offline TTL (5 s), as `validate()` allows, so when
/// the leader declares the cut executor offline and restarts its job masters at once, only the executor's own
/// self-fence (3 s) has stopped the old ones.
pub async fn executor_cut_while_its_job_masters_fence_late_run(planted: Option<Planted>) -> JobFigures {
    let masters: Vec<_> = (0..3)
        .map(|i| {
            let mut m = master_config(i);
            (m.executors.offline_ttl, m.executors.self_fence) = (Duration::from_secs(5), Duration::from_secs(3));
            (m.workers.offline_ttl, m.workers.self_fence) = (Duration::from_secs(15), Duration::from_secs(13));
            m.validate().expect("the scenario's timing is valid");
            m
        })
        .collect();
    let executors = (0..4).map(|i| executor_config(i, 3)).collect();
    let c = Cluster::build_spec(Spec::jobs(masters, executors, planted)).await;
    leader(&c).await;
    let jobs = vec![("job-0".to_owned(), FakeConfig::counting(2, 300, 150))];
    create(&c, &jobs).await;
    let running = await_running(&c, &jobs).await;
    let host = c.executors[job_master_host(&c, &running["job-0"]).await].node.id();
    let links: Vec<_> = c.masters.iter().flat_map(|m| [(host, m.node.id()), (m.node.id(), host)]).collect();
    for (a, b) in &links {
        c.net().clog_link(*a, *b);
    }
    // Past the offline TTL and the backoff, well inside the job masters' self-fence.
    tokio::time::sleep(Duration::from_millis(madsim::rand::thread_rng().gen_range(8_000..=11_000))).await;
    for (a, b) in &links {
        c.net().unclog_link(*a, *b);
    }
    finish_and_check(&c, &jobs, &BTreeSet::new()).await
}

#[madsim::test]
async fn executor_cut_while_its_job_masters_fence_late() {
    announce("executor_cut_while_its_job_masters_fence_late");
    executor_cut_while_its_job_masters_fence_late_run(None).await;
}
