//! Design.md §5 rule 7, registry integrity: executor ids are never reused. No id is ever held by two executor
//! processes, and an executor that registers again (a restart, or told it was declared offline) gets an id above
//! every one it held before.

use std::collections::BTreeMap;

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
}
