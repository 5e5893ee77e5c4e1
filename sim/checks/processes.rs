//! Design.md §5 rule 3 for an exec worker's commands (issue 16): at most one live process of every worker at every
//! instant, judged from what the executors say of the processes themselves (`ProcessStarted`, `ProcessEnded`),
//! not from what any master believes; and no command outlives the incarnation that started it.

use std::collections::BTreeSet;

use foreman::core::invariants::{Id, LiveIncarnations, Rule, Violation};
use foreman::core::time::Time;
use foreman::executor::ExecutorObservation;

use super::incarnations::RESUME_GRACE;
use super::Events;
use crate::cluster::Seen;

/// At most one live process of every worker at every instant, its incarnations' processes started in increasing
/// epoch order. A node's kill ends its processes (the shim's parent-death signal; in the simulation they are the
/// node's tasks), and a paused node's processes are frozen with it (a real command would run on: a paused
/// executor is the one place where two may overlap, bounded by that executor's own fence, which the incarnation
/// checker already holds it to).
pub fn one_live_process(events: &Events) -> Result<(), Violation> {
    let mut live = LiveIncarnations::new(RESUME_GRACE);
    for (at, node, seen) in events {
        live.advance(*at)?;
        match seen {
            Seen::Exec(ExecutorObservation::ProcessStarted { task, epoch }) => {
                live.on_start(*at, &format!("the command of {task}"), epoch.0, node)?;
            }
            Seen::Exec(ExecutorObservation::ProcessEnded { task, epoch }) => {
                let _ = live.on_stop(&format!("the command of {task}"), epoch.0, node);
            }
            Seen::Killed => {
                live.on_node_killed(node);
            }
            Seen::Paused => live.on_node_paused(node),
            Seen::Resumed => live.on_node_resumed(*at, node),
            _ => {}
        }
    }
    live.advance(Time::NEVER).map(|_| ())
}

/// A command has ended by the time its executor records the incarnation that started it stopped: whatever ends a
/// worker (its own end, told stale, fenced, its executor fencing itself or told to register again) ends its
/// command first.
pub fn no_process_outlives_its_task(events: &Events) -> Result<(), Violation> {
    let mut live: BTreeSet<(String, String, u64)> = BTreeSet::new();
    for (at, node, seen) in events {
        match seen {
            Seen::Exec(ExecutorObservation::ProcessStarted { task, epoch }) => {
                live.insert((node.clone(), task.to_string(), epoch.0));
            }
            Seen::Exec(ExecutorObservation::ProcessEnded { task, epoch }) => {
                live.remove(&(node.clone(), task.to_string(), epoch.0));
            }
            Seen::Killed => live.retain(|(n, _, _)| n != node),
            Seen::Exec(ExecutorObservation::TaskStopped { task, epoch, why })
                if live.contains(&(node.clone(), task.to_string(), epoch.0)) =>
            {
                let detail = format!(
                    "the command of {task} epoch {epoch} still runs on {node} after its incarnation stopped ({why})"
                );
                return Err(Violation::new(Rule::OneLiveIncarnation, *at, detail).with([
                    Id::Task(task.to_string()),
                    Id::Epoch(*epoch),
                    Id::Node(node.clone()),
                ]));
            }
            _ => {}
        }
    }
    Ok(())
}
