//! Design.md §5 rule 5: a job whose cancel was acknowledged never starts a new incarnation.

use std::collections::BTreeMap;

use foreman::core::ids::Epoch;
use foreman::core::invariants::{Id, Rule, Violation};
use foreman::core::time::Time;
use foreman::executor::ExecutorObservation;
use foreman::master::Observation;

use super::Events;
use crate::cluster::Seen;

/// The task ids of a job: its job master (the job id) and its workers (`<job>/<worker>`).
fn of_job(task: &str, job: &str) -> bool {
    task == job || task.strip_prefix(job).is_some_and(|rest| rest.starts_with('/'))
}

/// A canceled job never starts again: once a cancel was acknowledged, no job-master incarnation newer than the
/// one the cancel reply named starts (the named one may still be on its way: it was dispatched before), no leader
/// places a worker of the job (its job master, until the stop reaches it, may still ask; the leader that answered
/// the cancel, or any later one, holds the job canceling), and once that incarnation stopped, nothing of the job
/// starts at all (a worker dispatched just before the cancel reached its job master may still start, and is
/// stopped by it), but a worker whose confirm its job master had sent before it stopped: that message was on its
/// way (the regression seed 1796502674, with the job manager's group commit: a confirm delayed by a 300 ms latency
/// fault started its worker 8 ms after its job master fenced itself; the worker was told stale 256 ms later).
pub fn canceled_never_restart(events: &Events) -> Result<(), Violation> {
    // Job → (when the cancel was acknowledged, the newest job-master epoch the reply named).
    let mut canceled: BTreeMap<String, (Time, Epoch)> = BTreeMap::new();
    let mut ended: BTreeMap<String, Time> = BTreeMap::new();
    // Worker incarnation → when its job master first sent its confirm.
    let mut confirmed: BTreeMap<(String, Epoch), Time> = BTreeMap::new();
    for (at, node, seen) in events {
        match seen {
            Seen::Exec(ExecutorObservation::WorkerConfirmSent { task, epoch, .. }) => {
                confirmed.entry((task.to_string(), *epoch)).or_insert(*at);
            }
            Seen::JobCanceled { id, epoch, .. } => {
                canceled.entry(id.clone()).or_insert((*at, *epoch));
            }
            Seen::Exec(ExecutorObservation::TaskStopped { task, epoch, .. })
                if canceled.get(task.as_str()).is_some_and(|(_, named)| epoch >= named) =>
            {
                ended.entry(task.to_string()).or_insert(*at);
            }
            Seen::Master(Observation::WorkerPlaced { job, task }) => {
                if let Some((when, _)) = canceled.get(job.as_str()) {
                    let detail =
                        format!("{node} placed {task} after the cancel of job {job} was acknowledged at {when}");
                    let ids = [Id::Job(job.to_string()), Id::Task(task.to_string()), Id::Node(node.clone())];
                    return Err(Violation::new(Rule::CanceledNeverRestart, *at, detail).with(ids));
                }
            }
            Seen::Exec(ExecutorObservation::TaskStarted { task, epoch, .. }) => {
                for (job, (when, named)) in &canceled {
                    let ids = || {
                        [Id::Job(job.clone()), Id::Task(task.to_string()), Id::Epoch(*epoch), Id::Node(node.clone())]
                    };
                    if task.as_str() == job && epoch > named {
                        let detail = format!(
                            "job master {task} epoch {epoch} started on {node}, newer than epoch {named} named by the \
                             cancel acknowledged at {when}"
                        );
                        return Err(Violation::new(Rule::CanceledNeverRestart, *at, detail).with(ids()));
                    }
                    let on_its_way =
                        |stopped: &Time| confirmed.get(&(task.to_string(), *epoch)).is_some_and(|sent| sent <= stopped);
                    if of_job(task.as_str(), job)
                        && task.as_str() != job
                        && ended.get(job).is_some_and(|s| !on_its_way(s))
                    {
                        let detail = format!(
                            "{task} epoch {epoch} started on {node} after job {job} was canceled and its job master \
                             stopped"
                        );
                        return Err(Violation::new(Rule::CanceledNeverRestart, *at, detail).with(ids()));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}
