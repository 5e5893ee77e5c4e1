//! Design.md §5 rule 6: placement within capacity, never on an executor declared offline.

use std::collections::BTreeMap;

use foreman::core::ids::ExecutorId;
use foreman::core::invariants::{Id, Rule, Violation};
use foreman::executor::ExecutorObservation;
use foreman::master::Observation;

use super::Events;
use crate::cluster::Seen;

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

/// Rule 6, selectors: every job master starts on an executor whose labels meet its job's selector (here: the
/// zone a job asks for, `wants`, against each executor node's zone, `zone_of`).
pub fn placement_meets_selectors(
    events: &Events,
    zone_of: &BTreeMap<String, String>,
    wants: &BTreeMap<String, String>,
) -> Result<(), Violation> {
    for (at, node, seen) in events {
        let Seen::Exec(ExecutorObservation::TaskStarted { task, epoch, .. }) = seen else { continue };
        let Some(zone) = wants.get(task.as_str()) else { continue };
        if zone_of.get(node) != Some(zone) {
            let detail = format!(
                "job master {task} epoch {epoch} started on {node} (zone {:?}), but the job asks for zone {zone}",
                zone_of.get(node)
            );
            let ids =
                [Id::Job(task.to_string()), Id::Task(task.to_string()), Id::Epoch(*epoch), Id::Node(node.clone())];
            return Err(Violation::new(Rule::Selectors, *at, detail).with(ids));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::task_id;
    use foreman::core::ids::{Epoch, LeaderEpoch};
    use foreman::core::time::Time;

    #[test]
    fn a_job_master_outside_its_zone_is_caught() {
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
    }
}
