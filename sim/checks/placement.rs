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
