//! Scenarios of the late-message family of faults (`sim/faults.rs`: holds, the leader cut from the executors, a
//! slow metastore): each a short declaration of topology, knobs and plan, checked by every checker of
//! [`crate::checks::every_run`] and by what the scenario expects of its own fault.

use std::time::Duration;

use foreman::master::Observation;
use foreman::planted::Planted;
use madsim::rand::Rng;

use crate::checks::Allowances;
use crate::cluster::{Cluster, Seen};
use crate::faults::{self, Fault, Plan, Step};
use crate::harness::announce;
use crate::master_failover::check_every_run;

/// When the plan's steps begin.
const AT: Duration = Duration::from_secs(2);

/// Runs `plan` on `c` for a fault phase of `phase`, then lets the cluster settle for `after`.
async fn run(c: &Cluster, plan: &Plan, phase: Duration, after: Duration) {
    let start = c.clock.now();
    faults::play(c, plan, start, start + phase).await;
    tokio::time::sleep(after).await;
}

fn one(fault: Fault, lasts: Duration) -> Plan {
    Plan { steps: vec![Step { at: AT, fault, lasts }] }
}

/// The leader's offline verdicts and its suspicions, in order: (when, true for a suspicion).
fn verdicts(c: &Cluster) -> Vec<(foreman::core::time::Time, bool)> {
    c.recorder
        .events()
        .into_iter()
        .filter_map(|(at, _, seen)| match seen {
            Seen::Master(Observation::ExecutorOffline { .. }) => Some((at, false)),
            Seen::Master(Observation::EvictionsHeld { .. }) => Some((at, true)),
            _ => None,
        })
        .collect()
}

/// Design.md §6, no mass eviction from the wrong side. One master (no follower to reach it through), four
/// executors, every one cut from the leader both ways for longer than the offline TTL but less than TTL + suspect
/// hold, the leader keeping etcd: it sees every executor expire at once, suspects itself, holds the evictions, and
/// the cut heals before the hold ends: nobody is declared offline.
///
/// It is also where the mass-eviction guard (core/registry.rs, switch `no-eviction-hold`) is the last line of
/// defence: without it the leader evicts all four at the TTL, and the no-mass-eviction checker fires. The cut
/// lasts a drawn part of the hold.
pub async fn leader_cut_from_executors_suspects_itself_run(planted: Option<Planted>) {
    let c = Cluster::start_with(1, 4, planted).await;
    c.settle(Duration::from_secs(15)).await;
    let ex = &c.config.executors;
    let part = madsim::rand::thread_rng().gen_range(0.2..0.8);
    let lasts = ex.offline_ttl + ex.suspect_hold.mul_f64(part);
    run(&c, &one(Fault::LeaderCutFromExecutors { both_ways: true }, lasts), lasts + AT, ex.offline_ttl * 2).await;
    check_every_run(&c, &Allowances { slack: Duration::from_millis(200), ..Allowances::default() });
    let v = verdicts(&c);
    assert_eq!(v.iter().map(|(_, held)| *held).collect::<Vec<_>>(), [true], "one suspicion, no eviction: {v:?}");
}

#[madsim::test]
async fn leader_cut_from_executors_suspects_itself() {
    announce("leader_cut_from_executors_suspects_itself");
    leader_cut_from_executors_suspects_itself_run(None).await;
}

/// The same cut for longer than TTL + suspect hold: the hold is bounded, and the leader evicts the executors it
/// still cannot hear only once it ran out (the detection checker allows for it); they register anew once healed.
#[madsim::test]
async fn leader_cut_from_executors_for_long_evicts_after_the_hold() {
    announce("leader_cut_from_executors_for_long_evicts_after_the_hold");
    let c = Cluster::start(1, 4).await;
    c.settle(Duration::from_secs(15)).await;
    let ex = &c.config.executors;
    let lasts = ex.offline_ttl + ex.suspect_hold * 2;
    run(&c, &one(Fault::LeaderCutFromExecutors { both_ways: false }, lasts), lasts + AT, ex.offline_ttl * 3).await;
    let v = verdicts(&c);
    let Some(&(suspected, true)) = v.first() else { panic!("the leader suspected itself first: {v:?}") };
    let evicted: Vec<_> = v.iter().filter(|(_, held)| !held).collect();
    assert_eq!(evicted.len(), 4, "every executor evicted once the hold ran out: {v:?}");
    assert!(evicted.iter().all(|(at, _)| *at >= suspected + ex.suspect_hold), "not before the hold ran out: {v:?}");
    check_every_run(&c, &Allowances { slack: Duration::from_millis(200), ..Allowances::default() });
}

/// With followers, the cut costs nothing: an executor that cannot reach the leader heartbeats a follower, which
/// forwards to the leader; nothing expires, nobody is suspected or evicted.
#[madsim::test]
async fn leader_cut_from_executors_is_bridged_by_followers() {
    announce("leader_cut_from_executors_is_bridged_by_followers");
    let c = Cluster::start(3, 4).await;
    c.settle(Duration::from_secs(15)).await;
    let ex = &c.config.executors;
    let lasts = ex.offline_ttl * 3;
    run(&c, &one(Fault::LeaderCutFromExecutors { both_ways: true }, lasts), lasts + AT, ex.offline_ttl).await;
    assert_eq!(verdicts(&c), [], "nothing suspected or evicted");
    check_every_run(&c, &Allowances { slack: Duration::from_millis(200), ..Allowances::default() });
}
