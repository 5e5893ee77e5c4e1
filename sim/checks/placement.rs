//! Design.md §5 rule 6: placement within capacity, never on an executor declared offline.

use std::collections::BTreeMap;
use std::time::Duration;

use foreman::core::ids::{ExecutorId, LeaderEpoch};
use foreman::core::invariants::{Id, Rule, Violation};
use foreman::core::time::Time;
use foreman::executor::ExecutorObservation;
use foreman::master::Observation;

use super::Events;
use crate::cluster::Seen;
use crate::harness::Clock;

/// Placement: an executor never runs more tasks than its capacity (every task costs one slot here), and never
/// starts one under an id the leader has declared offline.
pub fn placement_within_bounds(events: &Events, capacity: u32) -> Result<(), Violation> {
    let mut running: BTreeMap<String, u32> = BTreeMap::new();
    let mut id_of: BTreeMap<String, ExecutorId> = BTreeMap::new();
    let mut offline: std::collections::BTreeSet<ExecutorId> = Default::default();
    for (at, node, seen) in events {
        match seen {
            Seen::Exec(ExecutorObservation::Registered { id, .. }) => {
                id_of.insert(node.clone(), *id);
            }
            Seen::Master(Observation::ExecutorOffline { id, .. }) => {
                offline.insert(*id);
            }
            Seen::Exec(ExecutorObservation::TaskStarted { task, epoch, .. }) => {
                let n = running.entry(node.clone()).or_default();
                *n += 1;
                let ids = [Id::Task(task.to_string()), Id::Epoch(*epoch), Id::Node(node.clone())];
                if *n > capacity {
                    let detail = format!("{node} runs {n} tasks (capacity {capacity}) with {task}");
                    return Err(Violation::new(Rule::Placement, *at, detail).with(ids));
                }
                if let Some(id) = id_of.get(node).filter(|id| offline.contains(id)) {
                    let detail = format!("{task} started on {node}, whose id {} was declared offline", id.0);
                    return Err(Violation::new(Rule::Placement, *at, detail).with(ids).with([Id::Executor(*id)]));
                }
            }
            Seen::Exec(ExecutorObservation::TaskStopped { .. }) => {
                if let Some(n) = running.get_mut(node) {
                    *n = n.saturating_sub(1);
                }
            }
            Seen::Killed => {
                running.remove(node);
                id_of.remove(node);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Rule 6, only on executors that are online, judged where the decision is made: a leader places nothing on an
/// executor that was never online in its term. [`placement_within_bounds`] judges what executors run, which each
/// executor's own capacity check keeps within bounds whatever the leader decided; this judges the leader's
/// placements themselves (the reservations its passes report, [`Observation::Capacity`]).
///
/// An executor is certainly not online in a term when its process was down for the whole of the term up to the
/// placement: killed (and not restarted since) more than `in_flight` before the term began, `in_flight` being the
/// longest a heartbeat it sent may take to reach a leader (its follower's leader lookup, then a connect and a call,
/// each within its deadline). No heartbeat of it can then reach the leader in its term: the leader can only have
/// taken the executor's record from the metastore. A run in which some node was paused between the kill and the
/// placement is not judged (a paused follower may forward a heartbeat long after it was sent).
pub fn placed_only_on_live_executors(clock: &Clock, events: &Events, in_flight: Duration) -> Result<(), Violation> {
    let mut node_of: BTreeMap<ExecutorId, &str> = BTreeMap::new();
    let mut down: BTreeMap<&str, Time> = BTreeMap::new();
    let mut began: BTreeMap<LeaderEpoch, Time> = BTreeMap::new();
    // Every pause: (paused at, resumed at, if it was).
    let mut pauses: Vec<(&str, Time, Option<Time>)> = vec![];
    for (at, node, seen) in events {
        match seen {
            Seen::Exec(ExecutorObservation::Registered { id, .. }) => {
                node_of.insert(*id, node.as_str());
            }
            Seen::Killed => {
                down.entry(node.as_str()).or_insert(*at);
            }
            Seen::Restarted => {
                down.remove(node.as_str());
            }
            Seen::Paused => pauses.push((node.as_str(), *at, None)),
            Seen::Resumed => {
                if let Some(p) = pauses.iter_mut().rev().find(|(n, _, resumed)| *n == node && resumed.is_none()) {
                    p.2 = Some(*at);
                }
            }
            Seen::Master(Observation::ActingBegan { epoch, at: when }) => {
                began.entry(*epoch).or_insert(clock.at(*when));
            }
            Seen::Master(Observation::Capacity(sample)) => {
                let Some(&term) = began.get(&sample.epoch) else { continue };
                for r in &sample.reservations {
                    let Some(&executor) = node_of.get(&r.executor) else { continue };
                    let Some(&died) = down.get(executor) else { continue };
                    let placed = clock.at(r.placed);
                    let paused = pauses.iter().any(|&(_, from, to)| from <= placed && to.is_none_or(|to| to >= died));
                    if died + in_flight >= term || placed < term || paused {
                        continue;
                    }
                    let detail = format!(
                        "{node} (leader epoch {}, acting since {term}) placed {} epoch {} on executor {} at {placed}, \
                         but {executor}, registered under that id, had been down since {died}, more than {in_flight:?} \
                         before the term began: it was never online in this term",
                        sample.epoch.0, r.task, r.epoch, r.executor.0
                    );
                    let ids = [
                        Id::Master(node.clone()),
                        Id::LeaderEpoch(sample.epoch),
                        Id::Executor(r.executor),
                        Id::Node(executor.to_owned()),
                        Id::Task(r.task.to_string()),
                        Id::Epoch(r.epoch),
                    ];
                    return Err(Violation::new(Rule::Placement, *at, detail).with(ids));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Rule 6, selectors: every job master and every worker starts on an executor whose labels meet its job's
/// selector (here: the zone a job asks for, `wants`, by job id, against each executor node's zone, `zone_of`).
pub fn placement_meets_selectors(
    events: &Events,
    zone_of: &BTreeMap<String, String>,
    wants: &BTreeMap<String, String>,
) -> Result<(), Violation> {
    for (at, node, seen) in events {
        let Seen::Exec(ExecutorObservation::TaskStarted { task, epoch, .. }) = seen else { continue };
        let job = task.as_str().split('/').next().unwrap_or_default();
        let Some(zone) = wants.get(job) else { continue };
        if zone_of.get(node) != Some(zone) {
            let what = if task.is_worker() { "worker" } else { "job master" };
            let detail = format!(
                "{what} {task} epoch {epoch} started on {node} (zone {:?}), but job {job} asks for zone {zone}",
                zone_of.get(node)
            );
            let ids = [Id::Job(job.to_owned()), Id::Task(task.to_string()), Id::Epoch(*epoch), Id::Node(node.clone())];
            return Err(Violation::new(Rule::Selectors, *at, detail).with(ids));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::task_id;
    use foreman::core::ids::Epoch;
    use foreman::master::{CapacitySample, ReservationSample};

    #[test]
    fn a_placement_on_an_executor_down_since_before_the_term_is_caught() {
        let clock = Clock::start();
        let at = Time::from_millis;
        let ev = |ms: u64, node: &str, seen: Seen| (at(ms), node.to_owned(), seen);
        let began = |epoch: u64, ms: u64| {
            Seen::Master(Observation::ActingBegan { epoch: LeaderEpoch(epoch), at: clock.instant(at(ms)) })
        };
        let placed = |epoch: u64, executor: u64, ms: u64| {
            Seen::Master(Observation::Capacity(CapacitySample {
                epoch: LeaderEpoch(epoch),
                at: clock.instant(at(ms)),
                executors: vec![],
                reservations: vec![ReservationSample {
                    task: task_id("j"),
                    executor: ExecutorId(executor),
                    epoch: Epoch(4),
                    cost: 1,
                    placed: clock.instant(at(ms)),
                }],
                suspecting: false,
                job_master_slots: 1,
                job_master_cap: 4,
                waiting: vec![],
            }))
        };
        let registered = |id| {
            Seen::Exec(ExecutorObservation::Registered {
                id: ExecutorId(id),
                leader_epoch: LeaderEpoch(1),
                sent: crate::harness::Clock::start().instant(foreman::core::time::Time::ZERO),
            })
        };
        // e1 (executor 1) dies at 1 s, the leader m0 at 4 s; m1 leads from 12 s and places on executor 1 at once.
        let story = vec![
            ev(0, "m0", began(1, 0)),
            ev(100, "e1", registered(1)),
            ev(150, "e2", registered(2)),
            ev(500, "m0", placed(1, 1, 500)),
            ev(1_000, "e1", Seen::Killed),
            ev(4_000, "m0", Seen::Killed),
            ev(12_000, "m1", began(2, 12_000)),
            ev(12_100, "m1", placed(2, 2, 12_100)),
            ev(12_200, "m1", placed(2, 1, 12_200)),
        ];
        let in_flight = Duration::from_secs(9);
        let v = placed_only_on_live_executors(&clock, &story, in_flight).unwrap_err();
        assert_eq!((v.rule, v.rule.number(), v.at), (Rule::Placement, Some(6), at(12_200)));
        assert!(v.ids.contains(&Id::Executor(ExecutorId(1))) && v.ids.contains(&Id::Node("e1".into())), "{v}");
        assert!(v.detail.contains("had been down since 1.000s"), "{v}");
        // A heartbeat sent just before the kill might still have reached the new leader: not judged.
        assert_eq!(placed_only_on_live_executors(&clock, &story, Duration::from_secs(11)), Ok(()));
        // Restarted before the placement (it registers anew, and may be heard): not judged.
        let mut restarted = story.clone();
        restarted.insert(6, ev(11_000, "e1", Seen::Restarted));
        assert_eq!(placed_only_on_live_executors(&clock, &restarted, in_flight), Ok(()));
        // A node paused meanwhile may have forwarded an old heartbeat late: not judged.
        let mut paused = story.clone();
        paused.insert(5, ev(2_000, "m2", Seen::Paused));
        paused.insert(6, ev(9_000, "m2", Seen::Resumed));
        assert_eq!(placed_only_on_live_executors(&clock, &paused, in_flight), Ok(()));
        // A pause over before the executor died says nothing about its heartbeats.
        let mut paused_before = story.clone();
        paused_before.insert(1, ev(50, "m2", Seen::Paused));
        paused_before.insert(2, ev(60, "m2", Seen::Resumed));
        assert!(placed_only_on_live_executors(&clock, &paused_before, in_flight).is_err());
    }

    #[test]
    fn a_job_master_or_worker_outside_its_zone_is_caught() {
        let zone_of: BTreeMap<String, String> = [("e0".into(), "a".into()), ("e1".into(), "b".into())].into();
        let wants: BTreeMap<String, String> = [("j".into(), "b".into())].into();
        let started = |node: &str, task: &str| {
            (
                Time::from_millis(5),
                node.to_owned(),
                Seen::Exec(ExecutorObservation::TaskStarted {
                    task: task_id(task),
                    epoch: Epoch(1),
                    leader_epoch: LeaderEpoch(1),
                }),
            )
        };
        assert_eq!(placement_meets_selectors(&[started("e1", "j"), started("e0", "k")], &zone_of, &wants), Ok(()));
        let v = placement_meets_selectors(&[started("e0", "j")], &zone_of, &wants).unwrap_err();
        assert_eq!(
            (v.rule, v.rule.number(), v.at, v.task()),
            (Rule::Selectors, Some(6), Time::from_millis(5), Some("j"))
        );
        assert!(v.detail.contains("asks for zone b"), "{v}");
        // Its workers too; another job whose id begins the same is not it.
        let ok = [started("e1", "j/w0"), started("e0", "jj/w0"), started("e0", "k/w3")];
        assert_eq!(placement_meets_selectors(&ok, &zone_of, &wants), Ok(()));
        let v = placement_meets_selectors(&[started("e0", "j/w1")], &zone_of, &wants).unwrap_err();
        assert_eq!((v.rule, v.task()), (Rule::Selectors, Some("j/w1")));
        assert!(v.detail.starts_with("worker j/w1 epoch 1 started on e0"), "{v}");
    }
}
