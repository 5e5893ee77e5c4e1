//! Fenced writes (design.md §5 rule 2) seen in the data: a worker's checkpoints never go backwards, whatever its
//! job type (the framework numbers every accepted write, `framework::checkpoint`).

use std::collections::BTreeMap;

use foreman::core::ids::{Epoch, TaskId};
use foreman::core::invariants::{Id, Rule, Violation};
use foreman::executor::ExecutorObservation;

use super::Events;
use crate::cluster::Seen;

/// Checkpoints never go backwards: every acknowledged checkpoint's sequence number is at least the worker's
/// highest so far. Within one incarnation it is the next one or the same one again (a retried write), never a
/// skip; a new incarnation may start above the highest acknowledged one (its predecessor's last write can land
/// unacknowledged, e.g. when its executor dies), never below.
pub fn checkpoints_forward(events: &Events) -> Result<(), Violation> {
    // Task → (the highest acknowledged sequence number, the incarnation that wrote it).
    let mut high: BTreeMap<TaskId, (u64, Epoch)> = BTreeMap::new();
    for (at, node, seen) in events {
        if let Seen::Exec(ExecutorObservation::Checkpoint { task, epoch, seq }) = seen {
            let (h, by) = high.entry(task.clone()).or_default();
            let skip = *by == *epoch && *seq > *h + 1;
            if *seq < *h || skip {
                let detail = format!(
                    "{task} epoch {epoch} on {node} checkpointed step {seq} after {h} (by epoch {by}) had been"
                );
                return Err(Violation::new(Rule::CheckpointsForward, *at, detail).with([
                    Id::Task(task.to_string()),
                    Id::Epoch(*epoch),
                    Id::Node(node.clone()),
                    Id::Epoch(*by),
                ]));
            }
            (*h, *by) = (*seq, *epoch);
        }
    }
    Ok(())
}
