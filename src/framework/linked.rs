//! What the worker and job-master runtimes share: a task's work run beside its link to its master, and its outcome
//! reported and turned into the task's exit.

use tokio::sync::watch;

use super::link::{Link, LinkEnd, LinkSpec, Report};
use super::task::{TaskEnv, TaskExit, TaskSpec};

/// The link of the task `spec` to its master, tried at `addresses` in turn, with the task's guard switches; a job
/// master's (`carried`) goes through its executor's carrier while the leader asks for it.
pub fn link_to_master(env: &TaskEnv, spec: &TaskSpec, addresses: Vec<String>, carried: bool) -> Link {
    let mut link = Link::new(
        LinkSpec {
            master_id: spec.master_id.clone(),
            addresses,
            master_epoch: spec.master_epoch,
            worker: spec.task_id.clone(),
            worker_epoch: spec.epoch,
            timing: spec.timing,
            identity: env.identity(),
            carrier: carried.then(|| env.carrier.clone()),
        },
        env.clock.clone(),
        env.confirmed,
    )
    .with_fault_points(env.fault_points.clone());
    link.plant(env.plants());
    link
}

/// How a task's work ended, before it is reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Finished,
    Canceled,
    Failed(String),
    /// It failed, and running it again may help.
    FailedRetryable(String),
    /// Someone newer exists (told so, or a fenced write was refused).
    Stale,
    Fenced,
    /// The executor is leaving: stopped after the last checkpoint (nothing left in flight), to start again
    /// elsewhere.
    Stopped,
}

impl From<LinkEnd> for Outcome {
    fn from(end: LinkEnd) -> Outcome {
        match end {
            LinkEnd::Fenced => Outcome::Fenced,
            LinkEnd::Stale => Outcome::Stale,
            LinkEnd::Cancel => Outcome::Canceled,
        }
    }
}

/// Heartbeats until the task must stop; a cancel is passed on to the work (which then ends by itself).
pub async fn keep_linked(link: &mut Link, cancel: watch::Sender<bool>) -> LinkEnd {
    loop {
        match link.run().await {
            LinkEnd::Cancel => {
                cancel.send_replace(true);
            }
            end => return end,
        }
    }
}

/// Reports the outcome (a terminal status is persisted before this: checkpoints for a worker, nothing to persist
/// for a job master whose state is its workers') and turns it into the task's exit.
pub async fn finish(link: &mut Link, outcome: Outcome) -> TaskExit {
    let (report, exit) = match outcome {
        Outcome::Finished => (Report::Finished, TaskExit::Finished),
        Outcome::Canceled => (Report::Canceled, TaskExit::Canceled),
        Outcome::Failed(m) => (Report::Failed { message: m.clone(), retryable: false }, TaskExit::Failed(m)),
        Outcome::FailedRetryable(m) => {
            (Report::Failed { message: m.clone(), retryable: true }, TaskExit::FailedRetryable(m))
        }
        Outcome::Stopped => (Report::Stopped, TaskExit::Stopped),
        Outcome::Stale => return TaskExit::Stale,
        Outcome::Fenced => return TaskExit::Fenced,
    };
    match link.report(report).await {
        Ok(()) => exit,
        Err(LinkEnd::Stale) => TaskExit::Stale,
        Err(_) => TaskExit::Fenced,
    }
}

/// Runs `work` beside the link: the link's end (fenced, stale) stops the work at once; a cancel reaches the
/// work through its watch.
pub async fn linked<F>(link: &mut Link, work: impl FnOnce(watch::Receiver<bool>) -> F) -> Outcome
where
    F: std::future::Future<Output = Outcome>,
{
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let work = work(cancel_rx);
    tokio::select! {
        biased;
        end = keep_linked(link, cancel_tx) => end.into(),
        out = work => out,
    }
}
