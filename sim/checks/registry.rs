//! Design.md §5 rule 7, registry integrity: executor ids are never reused. No id is ever held by two executor
//! processes, and an executor that registers again (a restart, or told it was declared offline) gets an id above
//! every one it held before; and an executor that registers again within one life has stopped all its work first
//! (a heartbeat from an executor declared offline "makes that executor stop its work and register again").

use std::collections::{BTreeMap, BTreeSet};

use foreman::core::ids::ExecutorId;
use foreman::core::invariants::{Id, Rule, Violation};
use foreman::executor::ExecutorObservation;

use super::Events;
use crate::cluster::Seen;

pub fn ids_never_reused(events: &Events) -> Result<(), Violation> {
    let mut holder: BTreeMap<ExecutorId, &str> = BTreeMap::new();
    let mut highest: BTreeMap<&str, ExecutorId> = BTreeMap::new();
    for (at, node, seen) in events {
        let Seen::Exec(ExecutorObservation::Registered { id, .. }) = seen else { continue };
        if let Some(other) = holder.get(id).filter(|other| **other != node.as_str()) {
            let detail = format!("executor id {} registered by {node}, but {other} had it", id.0);
            let ids = [Id::Executor(*id), Id::Node(node.clone()), Id::Node((*other).to_owned())];
            return Err(Violation::new(Rule::RegistryIntegrity, *at, detail).with(ids));
        }
        let last = highest.entry(node).or_default();
        if *id <= *last {
            let detail = format!("{node} registered again as {}, not above the id {} it held before", id.0, last.0);
            let ids = [Id::Node(node.clone()), Id::Executor(*id), Id::Executor(*last)];
            return Err(Violation::new(Rule::RegistryIntegrity, *at, detail).with(ids));
        }
        *last = *id;
        holder.insert(*id, node);
    }
    Ok(())
}

/// Rule 7's second half: an executor registering again in the same life (not after a restart) runs no task
/// started before: told it was declared offline, it stopped every task first (and fenced, it had stopped them
/// already). A task still running then would run beside the successor the leader may already have placed
/// elsewhere, under a registration the leader has forgotten.
pub fn registered_again_with_nothing_running(events: &Events) -> Result<(), Violation> {
    // Per node: whether it has registered in this life, and the tasks it runs (started, not yet stopped).
    let mut registered: BTreeSet<&str> = BTreeSet::new();
    let mut running: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    for (at, node, seen) in events {
        match seen {
            Seen::Exec(ExecutorObservation::TaskStarted { task, epoch, .. }) => {
                running.entry(node).or_default().insert(task.to_string(), epoch.0);
            }
            Seen::Exec(ExecutorObservation::TaskStopped { task, epoch, .. }) => {
                let tasks = running.entry(node).or_default();
                if tasks.get(task.as_str()) == Some(&epoch.0) {
                    tasks.remove(task.as_str());
                }
            }
            Seen::Killed | Seen::Restarted => {
                registered.remove(node.as_str());
                running.remove(node.as_str());
            }
            Seen::Exec(ExecutorObservation::Registered { id, .. }) => {
                let again = !registered.insert(node);
                let tasks = running.get(node.as_str());
                if let Some((task, epoch)) = tasks.and_then(|t| t.iter().next()).filter(|_| again) {
                    let detail = format!(
                        "{node} registered again as {} while still running {task} epoch {epoch} from before",
                        id.0
                    );
                    let ids = [Id::Node(node.clone()), Id::Executor(*id), Id::Task(task.clone())];
                    return Err(Violation::new(Rule::RegistryIntegrity, *at, detail).with(ids));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use foreman::core::ids::LeaderEpoch;
    use foreman::core::time::Time;

    fn reg(ms: u64, node: &str, id: u64) -> (Time, String, Seen) {
        let registered = ExecutorObservation::Registered {
            id: ExecutorId(id),
            leader_epoch: LeaderEpoch(1),
            sent: crate::harness::Clock::start().instant(foreman::core::time::Time::ZERO),
        };
        (Time::from_millis(ms), node.into(), Seen::Exec(registered))
    }

    #[test]
    fn ids_are_held_once_and_rise_per_executor() {
        assert_eq!(ids_never_reused(&[reg(0, "e0", 1), reg(1, "e1", 2), reg(9, "e0", 3)]), Ok(()));
        let shared = ids_never_reused(&[reg(0, "e0", 1), reg(1, "e1", 1)]).unwrap_err();
        assert_eq!((shared.rule, shared.at), (Rule::RegistryIntegrity, Time::from_millis(1)), "{shared}");
        assert_eq!(shared.ids, [Id::Executor(ExecutorId(1)), Id::Node("e1".into()), Id::Node("e0".into())]);
        let back = ids_never_reused(&[reg(0, "e0", 4), reg(1, "e0", 2)]).unwrap_err();
        assert_eq!(back.rule, Rule::RegistryIntegrity);
        assert!(back.ids.contains(&Id::Executor(ExecutorId(4))), "{back}");
    }

    fn task(ms: u64, node: &str, name: &str, epoch: u64, started: bool) -> (Time, String, Seen) {
        let (task, epoch) = (crate::checks::task_id(name), foreman::core::ids::Epoch(epoch));
        let seen = if started {
            ExecutorObservation::TaskStarted { task, epoch, leader_epoch: LeaderEpoch(1) }
        } else {
            ExecutorObservation::TaskStopped { task, epoch, why: foreman::framework::task::StopWhy::Reregister }
        };
        (Time::from_millis(ms), node.into(), Seen::Exec(seen))
    }

    #[test]
    fn registering_again_needs_every_task_stopped_in_that_life() {
        let stopped_first =
            [reg(0, "e0", 1), task(1, "e0", "job-0", 1, true), task(5, "e0", "job-0", 1, false), reg(6, "e0", 3)];
        assert_eq!(registered_again_with_nothing_running(&stopped_first), Ok(()));
        let killed = (Time::from_millis(5), "e0".to_owned(), Seen::Killed);
        let restarted = [reg(0, "e0", 1), task(1, "e0", "job-0", 1, true), killed, reg(6, "e0", 3)];
        assert_eq!(registered_again_with_nothing_running(&restarted), Ok(()));
        // Another node's task, and an older epoch's stop, do not count as this task stopping.
        let kept = [
            reg(0, "e0", 1),
            task(1, "e0", "job-0", 2, true),
            task(2, "e1", "job-0", 2, false),
            task(3, "e0", "job-0", 1, false),
            reg(6, "e0", 3),
        ];
        let v = registered_again_with_nothing_running(&kept).unwrap_err();
        assert_eq!((v.rule, v.at), (Rule::RegistryIntegrity, Time::from_millis(6)), "{v}");
        assert!(v.detail.contains("job-0 epoch 2"), "{v}");
        // A first registration with a task running (a task cannot start before one, but the checker judges only
        // registrations again) is not this rule's concern.
        assert_eq!(registered_again_with_nothing_running(&[task(1, "e0", "job-0", 1, true), reg(2, "e0", 1)]), Ok(()));
    }
}
