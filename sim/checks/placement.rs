//! Design.md §5 rule 6: placement within capacity, never on an executor declared offline.

use std::collections::BTreeMap;

use foreman::executor::ExecutorObservation;
use foreman::master::Observation;

use super::Events;
use crate::cluster::Seen;

/// Placement: an executor never runs more tasks than its capacity (every task costs one slot here), and never
/// starts one under an id the leader has declared offline.
pub fn placement_within_bounds(events: &Events, capacity: u32) -> Result<(), String> {
    let mut running: BTreeMap<String, u32> = BTreeMap::new();
    let mut id_of: BTreeMap<String, u64> = BTreeMap::new();
    let mut offline: std::collections::BTreeSet<u64> = Default::default();
    for (at, node, seen) in events {
        match seen {
            Seen::Exec(ExecutorObservation::Registered { id }) => {
                id_of.insert(node.clone(), *id);
            }
            Seen::Master(Observation::ExecutorOffline { id, .. }) => {
                offline.insert(*id);
            }
            Seen::Exec(ExecutorObservation::TaskStarted { task, .. }) => {
                let n = running.entry(node.clone()).or_default();
                *n += 1;
                if *n > capacity {
                    return Err(format!(
                        "safety rule 6 (placement) at {at}: {node} runs {n} tasks (capacity {capacity}) with {task}"
                    ));
                }
                if let Some(id) = id_of.get(node).filter(|id| offline.contains(id)) {
                    return Err(format!(
                        "safety rule 6 (placement) at {at}: {task} started on {node}, whose id {id} was declared offline"
                    ));
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
) -> Result<(), String> {
    for (at, node, seen) in events {
        let Seen::Exec(ExecutorObservation::TaskStarted { task, epoch }) = seen else { continue };
        let Some(zone) = wants.get(task) else { continue };
        if zone_of.get(node) != Some(zone) {
            return Err(format!(
                "safety rule 6 (selectors) at {at}: job master {task} epoch {epoch} started on {node} (zone {:?}), \
                 but the job asks for zone {zone}",
                zone_of.get(node)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use foreman::core::time::Time;

    #[test]
    fn a_job_master_outside_its_zone_is_caught() {
        let zone_of: BTreeMap<String, String> = [("e0".into(), "a".into()), ("e1".into(), "b".into())].into();
        let wants: BTreeMap<String, String> = [("j".into(), "b".into())].into();
        let started = |node: &str, task: &str| {
            (
                Time::from_millis(5),
                node.to_owned(),
                Seen::Exec(ExecutorObservation::TaskStarted { task: task.into(), epoch: 1 }),
            )
        };
        assert_eq!(placement_meets_selectors(&[started("e1", "j"), started("e0", "k")], &zone_of, &wants), Ok(()));
        let err = placement_meets_selectors(&[started("e0", "j")], &zone_of, &wants).unwrap_err();
        assert!(err.starts_with("safety rule 6 (selectors) at 0.005s") && err.contains("asks for zone b"), "{err}");
    }
}
