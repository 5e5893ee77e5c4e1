//! A job type's job master, as decisions: which workers the job wants, what it makes of its workers' events, and
//! when the job is finished or failed. Pure and synchronous (no clock but the `now` it is given, no I/O, no
//! epochs): the framework's job-master runtime owns worker ids, incarnations, fences, placement and dispatch, and
//! hands the logic only events about each worker's *current* incarnation, so a logic cannot start a worker twice
//! or act on a stale report.
//!
//! The runtime, in a loop: recover the logic from the checkpoints found ([`JobLogic::recover`], the same path on
//! a first start and on every restart); start each [`JobLogic::wanted`] worker that has no live incarnation, with
//! the [`WorkerSpec`] the logic gives it; pass each worker event on ([`JobLogic::on_event`]); stop when
//! [`JobLogic::verdict`] says the job is finished or failed.

use std::collections::BTreeMap;

use super::ids::WorkerName;
use super::labels::Selector;
use super::restarts::WORKER_RESTARTS_DEFAULT;
use super::time::Time;
use super::workers::LostReason;

/// What one wanted worker is started with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSpec<C> {
    /// Handed to the worker at dispatch.
    pub config: C,
    /// Slots it takes on its executor.
    pub cost: u32,
    /// Where it may run, beside its job's own selectors: the leader places it on an executor that meets both.
    pub selectors: Vec<Selector>,
    /// How many times it is started again after failing retryably in a row without progress (its checkpoint not
    /// moving on); failing once more fails the job ([`crate::core::restarts`]).
    pub restarts_max: u32,
    /// The local resources it keeps on its executor, by name (an exec worker's `scratch`): its next incarnation is
    /// placed on the executor that holds them while that executor is online.
    pub resources: Vec<String>,
}

impl<C> WorkerSpec<C> {
    /// A worker of cost 1, placed by its job's selectors only, restarted up to [`WORKER_RESTARTS_DEFAULT`] times in a row without progress.
    pub fn new(config: C) -> WorkerSpec<C> {
        WorkerSpec { config, cost: 1, selectors: vec![], restarts_max: WORKER_RESTARTS_DEFAULT, resources: vec![] }
    }
}

/// Why a worker's current incarnation ended without finishing. The runtime starts it again while it is wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndedWhy {
    /// Its job master stopped hearing from it (or never did).
    Lost(LostReason),
    /// Its executor drained it at a checkpoint.
    Stopped,
    /// It said it was canceled, unasked (or asked, while the job is being canceled).
    Canceled,
    /// Its dispatch was refused: it never ran.
    NotStarted,
    /// It failed retryably (`attempt` times in a row without progress): it starts again, not before `at`.
    Retrying { attempt: u32, at: Time },
}

/// A worker's failure as it reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerError {
    pub message: String,
    /// Whether running the worker again may help.
    pub retryable: bool,
}

/// An event about a worker's current incarnation.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkerEvent<'a, S> {
    /// It checked in with its job master.
    Online { name: &'a WorkerName },
    /// It reported it finished (its last checkpoint is durable).
    Finished { name: &'a WorkerName },
    /// It ended without finishing. `checkpoint`: its last checkpoint, read back after the end (none when there is
    /// none, it could not be read, or the incarnation never ran).
    Ended { name: &'a WorkerName, why: EndedWhy, checkpoint: Option<&'a S> },
}

/// What the job master does about a failed worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// The job fails, naming the worker and its message.
    FailJob,
}

/// What the job master does about a worker whose local resources were lost with the executor that held them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnLost {
    /// The worker starts afresh, with new, empty resources where it is placed now.
    StartFresh,
    /// The job fails, for this reason.
    FailJob(String),
}

/// A local resource of a worker, lost with the executor that held it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lost {
    /// The resource's name (`scratch`).
    pub name: String,
    /// The executor that held it, when the leader knew it.
    pub holder: Option<String>,
    /// That executor serves on, but could not take the worker within the leader's pin wait: the resource was given
    /// up (its files stay there until the job is deleted). Else the executor left.
    pub waited_out: bool,
}

/// Where the job stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Running,
    Finished,
    Failed { reason: String },
}

/// The progress a worker whose current incarnation may be live last reported (none for any other worker).
pub trait LiveProgress {
    fn get(&self, name: &WorkerName) -> Option<&str>;

    /// The number a worker's progress text begins with, for types that report counts (`"412/800"` → 412).
    fn count(&self, name: &WorkerName) -> Option<u64> {
        self.get(name)?.split('/').next()?.parse().ok()
    }
}

/// The last progress of each worker that may be live, as a map (tests, and runtimes that keep one).
impl LiveProgress for BTreeMap<WorkerName, String> {
    fn get(&self, name: &WorkerName) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

/// A job type's job-master decisions.
pub trait JobLogic: Sized {
    /// The job's configuration, as the job type parsed it.
    type Config;
    /// What each worker is started with.
    type WorkerConfig;
    /// A worker's durable state, as its checkpoints hold it.
    type Checkpoint;

    /// The logic of a job master starting (first or again) from the checkpoints found, by worker name.
    fn recover(config: Self::Config, checkpoints: &BTreeMap<WorkerName, Self::Checkpoint>) -> Self;

    /// The workers that should run now, in start order; the runtime starts those without a live incarnation.
    fn wanted(&self) -> Vec<WorkerName>;

    /// What worker `name` is started with; `None` when it is not one of the job's workers.
    fn worker(&self, name: &WorkerName) -> Option<WorkerSpec<Self::WorkerConfig>>;

    /// An event about worker `name`'s current incarnation.
    fn on_event(&mut self, now: Time, event: WorkerEvent<'_, Self::Checkpoint>);

    /// Worker `name` failed.
    fn on_failed(&mut self, _now: Time, _name: &WorkerName, _error: &WorkerError) -> OnFailure {
        OnFailure::FailJob
    }

    /// Worker `name`'s local resources `lost` went with the executor that held them (declared offline, drained or
    /// deregistered), or were given up because it could not take the worker within the pin wait, since its last
    /// incarnation started; its next incarnation, placed elsewhere, is about to start without them. By default it
    /// starts afresh.
    fn on_resources_lost(&mut self, _now: Time, _name: &WorkerName, _lost: &[Lost]) -> OnLost {
        OnLost::StartFresh
    }

    /// Where the job stands.
    fn verdict(&self) -> Verdict;

    /// The job's progress as one line.
    fn progress(&self, live: &dyn LiveProgress) -> String;

    /// The job type's own detail for the job's status (`foreman job status`), beside what the runtime reports of
    /// every job (state, progress, each worker): JSON, kept small (the whole status is cut to
    /// [`super::job_status::STATUS_DOCUMENT_MAX`] bytes, the detail first). `null` by default.
    fn status(&self, _live: &dyn LiveProgress) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Checks the logic's invariants; the message names the one broken.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_is_the_number_a_progress_text_begins_with() {
        let live: BTreeMap<WorkerName, String> = [("412/800", 0), ("7", 1), ("garbage", 2), (" 3/4", 3), ("", 4)]
            .into_iter()
            .map(|(text, i)| (WorkerName::indexed(i), text.to_owned()))
            .collect();
        let counts: Vec<Option<u64>> = (0..6).map(|i| live.count(&WorkerName::indexed(i))).collect();
        assert_eq!(counts, [Some(412), Some(7), None, None, None, None]);
    }
}
