//! Design.md §5 rule 3: at most one live incarnation of every job master and worker at every instant.

use std::collections::BTreeMap;

use foreman::core::time::Time;
use foreman::executor::ExecutorObservation;

use super::Events;
use crate::cluster::Seen;

/// Where one incarnation stands, for [`one_live_incarnation`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    Live,
    /// Its node is paused: it cannot act.
    Frozen,
    /// Its node was resumed at this instant: it is live again once it acts (a checkpoint) or once
    /// [`RESUME_GRACE`] has passed without it stopping; a fenced task stops the moment it is polled again, before it
    /// can act, which the simulator may schedule a moment after the resume (time is kept in whole milliseconds).
    Resumed(Time),
}

/// How long a resumed incarnation may take to be polled and stop, without acting, before it counts as live.
const RESUME_GRACE: std::time::Duration = std::time::Duration::from_millis(5);

#[derive(Clone, Debug)]
struct Incarnation {
    epoch: u64,
    node: String,
    standing: Standing,
}

/// Rule 3: at most one live incarnation of every job master and every worker at every simulated instant, and
/// each task's incarnations start in strictly increasing epoch order. Fed by the executors' own task starts and
/// stops; a node's kill stops its incarnations, and a paused node's incarnations are not live until it resumes. A
/// task that quiesced for a drain (it acts no more, it only reports its stop) is no longer live.
pub fn one_live_incarnation(events: &Events) -> Result<(), String> {
    let mut tasks: BTreeMap<String, Vec<Incarnation>> = BTreeMap::new();
    let mut quiesced: std::collections::BTreeSet<(String, u64, String)> = std::collections::BTreeSet::new();
    let mut highest: BTreeMap<String, u64> = BTreeMap::new();
    // Resumed incarnations become live once time moves past their resume instant.
    fn promote(tasks: &mut BTreeMap<String, Vec<Incarnation>>, now: Time) -> Result<(), String> {
        for (task, incs) in tasks.iter_mut() {
            for i in 0..incs.len() {
                let Standing::Resumed(at) = incs[i].standing else { continue };
                if at + RESUME_GRACE >= now {
                    continue;
                }
                if let Some(other) = incs.iter().find(|o| o.standing == Standing::Live) {
                    return Err(format!(
                        "safety rule 3 at {at}: {task} epoch {} resumed on {} while epoch {} is live on {}",
                        incs[i].epoch, incs[i].node, other.epoch, other.node
                    ));
                }
                incs[i].standing = Standing::Live;
            }
        }
        Ok(())
    }
    for (at, node, seen) in events {
        promote(&mut tasks, *at)?;
        match seen {
            Seen::Exec(ExecutorObservation::TaskStarted { task, epoch }) => {
                let incs = tasks.entry(task.clone()).or_default();
                if let Some(other) = incs.iter().find(|o| o.standing == Standing::Live) {
                    return Err(format!(
                        "safety rule 3 at {at}: {task} epoch {epoch} started on {node} while epoch {} is live on {}",
                        other.epoch, other.node
                    ));
                }
                let last = highest.entry(task.clone()).or_default();
                if *epoch <= *last {
                    return Err(format!(
                        "safety rule 3 at {at}: {task} epoch {epoch} started on {node} after epoch {last} had started"
                    ));
                }
                *last = *epoch;
                incs.push(Incarnation { epoch: *epoch, node: node.clone(), standing: Standing::Live });
            }
            // Quiesced for a drain: it acts no more, so it is no longer live; its stop follows.
            Seen::Exec(ExecutorObservation::TaskQuiesced { task, epoch }) => {
                let incs = tasks.entry(task.clone()).or_default();
                if let Some(i) = incs.iter().position(|o| o.epoch == *epoch && o.node == *node) {
                    incs.remove(i);
                    quiesced.insert((task.clone(), *epoch, node.clone()));
                }
            }
            Seen::Exec(ExecutorObservation::TaskStopped { task, epoch, .. })
                if quiesced.remove(&(task.clone(), *epoch, node.clone())) => {}
            Seen::Exec(ExecutorObservation::TaskStopped { task, epoch, .. }) => {
                let incs = tasks.entry(task.clone()).or_default();
                let Some(i) = incs.iter().position(|o| o.epoch == *epoch && o.node == *node) else {
                    return Err(format!(
                        "crash (the recorder's story is inconsistent) at {at}: {task} epoch {epoch} stopped on {node} but never started there"
                    ));
                };
                incs.remove(i);
            }
            // A resumed incarnation that acts is live from then on.
            Seen::Exec(ExecutorObservation::Checkpoint { task, epoch, .. }) => {
                let incs = tasks.entry(task.clone()).or_default();
                let acted = incs
                    .iter()
                    .position(|o| o.epoch == *epoch && o.node == *node && matches!(o.standing, Standing::Resumed(_)));
                if let Some(i) = acted {
                    if let Some(other) = incs.iter().find(|o| o.standing == Standing::Live) {
                        return Err(format!(
                            "safety rule 3 at {at}: {task} epoch {epoch} checkpointed on {node} after a resume while \
                             epoch {} is live on {}",
                            other.epoch, other.node
                        ));
                    }
                    incs[i].standing = Standing::Live;
                }
            }
            Seen::Killed => {
                for incs in tasks.values_mut() {
                    incs.retain(|o| o.node != *node);
                }
            }
            Seen::Paused | Seen::Resumed => {
                for incs in tasks.values_mut() {
                    for o in incs.iter_mut().filter(|o| o.node == *node) {
                        o.standing = if *seen == Seen::Paused { Standing::Frozen } else { Standing::Resumed(*at) };
                    }
                }
            }
            _ => {}
        }
    }
    promote(&mut tasks, Time::NEVER)
}
