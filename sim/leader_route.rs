//! Executors heartbeat the leader directly once a reply names its address (core/leader_route.rs), and go back
//! through a follower when they cannot reach it. Both scenarios run a workload and every checker besides.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use foreman::executor::ExecutorObservation;
use foreman::master::Observation;
use madsim::rand::Rng;

use crate::cluster::{Cluster, Seen};
use crate::fake_jobs::{finish_and_check, jobs_running, leader};
use crate::harness::announce;

/// Executors' heartbeats the masters of `c` forwarded, over their current lives.
fn forwarded_heartbeats(c: &Cluster) -> u64 {
    c.masters
        .iter()
        .filter_map(|m| m.current.lock().unwrap().as_ref().map(|m| m.stats.forwarded_calls[0].load(Ordering::Relaxed)))
        .sum()
}

/// Every executor joined through master-0 first. The leader is moved off master-0 (killed while it leads, then
/// started again as a follower), so that each executor's first heartbeats after the move go through a follower;
/// from the first reply that names the leader's address on, they go to the leader itself: over 20 s of a healthy
/// cluster (some 160 heartbeats) no master forwards one. With every executor calling its joined master, as
/// before, each of those heartbeats would be forwarded.
#[madsim::test]
async fn executors_follow_the_leader_to_its_address() {
    announce("executors_follow_the_leader_to_its_address");
    let (c, jobs, _) = jobs_running(None).await;
    while leader(&c).await == 0 {
        c.kill_master(0);
        tokio::time::sleep(Duration::from_secs(1)).await;
        leader(&c).await;
        c.restart_master(0);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = forwarded_heartbeats(&c);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let forwarded = forwarded_heartbeats(&c) - before;
    assert_eq!(forwarded, 0, "the followers forwarded {forwarded} executor heartbeats in 20 s of a healthy cluster");
    finish_and_check(&c, &jobs, &BTreeSet::new()).await;
}

/// One executor is cut from the leader (both ways) for 20 to 30 s, while it reaches the followers and they reach
/// the leader. Its direct call times out once; then it heartbeats through a follower for the rest of the term,
/// and is neither declared offline nor fenced. It must not go back to the leader's address each time a forwarded
/// reply names it again: every other heartbeat would be a call that cannot arrive (the same term is not tried
/// again, `LeaderRoute::missed`). Checked: its acknowledged heartbeats over the cut, past its first second, are at
/// least 80 % of what the heartbeat interval allows (going back and forth would allow about half).
#[madsim::test]
async fn executor_cut_from_the_leader_heartbeats_through_a_follower() {
    announce("executor_cut_from_the_leader_heartbeats_through_a_follower");
    let (c, jobs, _) = jobs_running(None).await;
    let l = leader(&c).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let e = madsim::rand::thread_rng().gen_range(0..c.executors.len());
    let name = format!("executor-{e}");
    let links =
        [(c.executors[e].node.id(), c.masters[l].node.id()), (c.masters[l].node.id(), c.executors[e].node.id())];
    let cut = Duration::from_millis(madsim::rand::thread_rng().gen_range(20_000..=30_000));
    let from = c.clock.now();
    for (a, b) in links {
        c.net().clog_link(a, b);
    }
    tokio::time::sleep(cut).await;
    for (a, b) in links {
        c.net().unclog_link(a, b);
    }
    let until = c.clock.now();
    let counted_from = from + Duration::from_secs(1);
    let interval = c.config.executors.heartbeat_interval;
    let mut acked = 0u64;
    for (at, node, seen) in c.recorder.events() {
        let during = at >= from && at <= until;
        match &seen {
            Seen::Exec(ExecutorObservation::HeartbeatAcked { .. }) if node == name && at >= counted_from && during => {
                acked += 1
            }
            Seen::Exec(ExecutorObservation::Fenced { .. } | ExecutorObservation::Reregister { .. })
                if node == name && during =>
            {
                panic!("{name}, cut from the leader only, at {at}: {seen:?}")
            }
            Seen::Master(Observation::ExecutorOffline { name: n, .. }) if *n == name && during => {
                panic!("{name}, cut from the leader only, was declared offline at {at}")
            }
            _ => {}
        }
    }
    let span = until.saturating_since(counted_from);
    let allowed = span.as_millis() as u64 / interval.as_millis().max(1) as u64;
    assert!(
        acked * 10 >= allowed * 8,
        "{name}, cut from the leader only, had {acked} heartbeats acknowledged in {span:?} ({allowed} at its \
         interval of {interval:?})"
    );
    finish_and_check(&c, &jobs, &BTreeSet::new()).await;
}
