//! Design.md §5 rule 3: at most one live incarnation of every job master and worker at every instant, judged by
//! the core's checker ([`LiveIncarnations`], shared with the process-level chaos test) over the recorder's story.

use foreman::core::invariants::{Id, LiveIncarnations, Rule, Violation};
use foreman::core::time::Time;
use foreman::executor::ExecutorObservation;

use super::Events;
use crate::cluster::Seen;

/// How long a resumed incarnation may take to be polled and stop, without acting, before it counts as live: a
/// fenced task stops the moment it is polled again, which the simulator may schedule a moment after the resume
/// (time is kept in whole milliseconds).
pub(super) const RESUME_GRACE: std::time::Duration = std::time::Duration::from_millis(5);

/// Rule 3: at most one live incarnation of every job master and every worker at every simulated instant, and
/// each task's incarnations start in strictly increasing epoch order. Fed by the executors' own task starts and
/// stops (a checkpoint is an action); a node's kill stops its incarnations, and a paused node's incarnations are
/// not live until it resumes. A task that quiesced for a drain (it acts no more, it only reports its stop) is no
/// longer live.
pub fn one_live_incarnation(events: &Events) -> Result<(), Violation> {
    let mut live = LiveIncarnations::new(RESUME_GRACE);
    for (at, node, seen) in events {
        live.advance(*at)?;
        match seen {
            Seen::Exec(ExecutorObservation::TaskStarted { task, epoch, .. }) => {
                live.on_start(*at, task.as_str(), epoch.0, node)?;
            }
            Seen::Exec(ExecutorObservation::TaskQuiesced { task, epoch }) => {
                live.on_quiesced(task.as_str(), epoch.0, node)
            }
            Seen::Exec(ExecutorObservation::TaskStopped { task, epoch, .. }) => {
                live.on_stop(task.as_str(), epoch.0, node).map_err(|_| {
                    let detail = format!("{task} epoch {epoch} stopped on {node} but never started there");
                    Violation::new(Rule::ConsistentStory, *at, detail).with([
                        Id::Task(task.to_string()),
                        Id::Epoch(*epoch),
                        Id::Node(node.clone()),
                    ])
                })?;
            }
            Seen::Exec(ExecutorObservation::Checkpoint { task, epoch, .. }) => {
                live.on_acted(*at, task.as_str(), epoch.0, node)?;
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
