//! Design.md §5 rule 7, registry integrity: executor ids are never reused. No id is ever held by two executor
//! processes, and an executor that registers again (a restart, or told it was declared offline) gets an id above
//! every one it held before.

use std::collections::BTreeMap;

use foreman::executor::ExecutorObservation;

use super::Events;
use crate::cluster::Seen;

pub fn ids_never_reused(events: &Events) -> Result<(), String> {
    let mut holder: BTreeMap<u64, &str> = BTreeMap::new();
    let mut highest: BTreeMap<&str, u64> = BTreeMap::new();
    for (at, node, seen) in events {
        let Seen::Exec(ExecutorObservation::Registered { id }) = seen else { continue };
        if let Some(other) = holder.get(id).filter(|other| **other != node.as_str()) {
            return Err(format!("safety rule 7 at {at}: executor id {id} registered by {node}, but {other} had it"));
        }
        let last = highest.entry(node).or_default();
        if *id <= *last {
            return Err(format!(
                "safety rule 7 at {at}: {node} registered again as {id}, not above the id {last} it held before"
            ));
        }
        *last = *id;
        holder.insert(*id, node);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use foreman::core::time::Time;

    fn reg(ms: u64, node: &str, id: u64) -> (Time, String, Seen) {
        (Time::from_millis(ms), node.into(), Seen::Exec(ExecutorObservation::Registered { id }))
    }

    #[test]
    fn ids_are_held_once_and_rise_per_executor() {
        assert_eq!(ids_never_reused(&[reg(0, "e0", 1), reg(1, "e1", 2), reg(9, "e0", 3)]), Ok(()));
        let shared = ids_never_reused(&[reg(0, "e0", 1), reg(1, "e1", 1)]).unwrap_err();
        assert!(shared.starts_with("safety rule 7 at 0.001s") && shared.contains("e0 had it"), "{shared}");
        let back = ids_never_reused(&[reg(0, "e0", 4), reg(1, "e0", 2)]).unwrap_err();
        assert!(back.contains("not above the id 4"), "{back}");
    }
}
