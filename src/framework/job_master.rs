//! The job-master runtime: one incarnation of a job type's job master, from its dispatch to its report. The
//! decisions are the job type's ([`JobType::Logic`], a [`JobLogic`]) and the core's [`Workers`]; this module moves
//! bytes and timers, and keeps which incarnation of each worker is current, so the logic hears only about those.
//!
//! Fencing, end to end:
//! - The leader writes `job-masters/<job>` = the job master's epoch as it starts the incarnation; the job master
//!   guards each of its own writes (its workers' records) on that value, so a superseded job master writes
//!   nothing.
//! - Before dispatching a worker incarnation, the job master writes `workers/<job>/<worker>` = its epoch; the
//!   worker guards each checkpoint on that value, so a superseded worker's checkpoint is refused and a checkpoint
//!   never goes backwards. A worker reads its starting counter after that record was written, so it resumes
//!   from the last checkpoint any earlier incarnation managed to write.
//! - Worker epochs are `job-master epoch × 1,000,000 + n`: above every epoch of an earlier job-master incarnation
//!   and rising within one, with no counter to share with the leader.
//!
//! Each loop turn it also builds the job's status ([`crate::core::job_status::StatusDoc`]), publishes it to its host
//! (which answers `QueryJobMaster` from it) and stores it under `job-status/<job>` with the same fence as its worker
//! records: when changed, at most every [`STATUS_PERSIST_INTERVAL`], and once more as it ends, before it reports.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, info, warn};

use std::sync::Arc;

use super::api::JobType;
use super::checkpoint::{read_until_answered, Stored};
use super::dispatch::{dispatch, is_definite, schedule};
use super::host::{Hosting, Issuer, Published};
use super::link::Progress;
use super::linked::{finish, link_to_master, linked, Outcome};
use super::panic::catch_panic;
use super::task::{ExecutorObservation, TaskEnv, TaskExit, TaskSpec};
use crate::core::ids::{Epoch, JobId, TaskId, WorkerName};
use crate::core::job::LastError;
use crate::core::job_master::{
    EndedWhy, JobLogic, LiveProgress, Lost, OnFailure, OnLost, Verdict, WorkerError, WorkerEvent,
};
use crate::core::job_status::{
    JobMasterState, StatusDoc, StatusError, StatusThrottle, StoredStatus, WorkerLine, WorkerPhase,
    STATUS_PERSIST_INTERVAL,
};
use crate::core::planted::Planted;
use crate::core::restarts::{seed_of, RestartDecision, Restarts};
use crate::core::time::{Time, WallTime};
use crate::core::workers::{EntryState, Event, WorkerStatus, Workers};
use crate::meta::{keys, Cond, MetaStore, Op};
use crate::rpc::pb;

/// How many worker incarnations one job-master incarnation may create.
pub const WORKER_EPOCHS_PER_MASTER: u64 = 1_000_000;

/// How long a job master waits before trying again to place or dispatch a worker that could not be started.
pub const RETRY: Duration = Duration::from_secs(1);

/// How many times an ending job master tries to store its final status (spaced by [`RETRY`]) before it reports
/// anyway: the report must not wait on an unreachable metastore for long (the leader then shows the last status
/// stored, which says the job was still running, beside the job's terminal state).
pub const FINAL_STATUS_TRIES: u32 = 3;

fn worker_task(job: &str, name: &WorkerName) -> Result<TaskId, crate::core::ids::IdError> {
    Ok(name.task(&JobId::parse(job)?))
}

// ---------------------------------------------------------------------------------------------------------------
// The job master.
// ---------------------------------------------------------------------------------------------------------------

/// Runs one incarnation of a job master of job type `t`: recovers its workers from the metastore, starts the ones
/// its logic wants through the leader's placement and two-phase dispatch, restarts lost ones from their
/// checkpoints, and reports how the job ended once the logic says so.
pub async fn run<T: JobType>(_t: Arc<T>, mut env: TaskEnv, spec: TaskSpec) -> TaskExit {
    let meta = env.metastore().await;
    let mut addresses = vec![spec.master_address.clone()];
    addresses.extend(env.join.iter().filter(|a| **a != spec.master_address).cloned());
    let mut link = link_to_master(&env, &spec, addresses, true);
    let config = match T::parse_config(&spec.task_config) {
        Ok(c) => c,
        Err(e) => return finish(&mut link, Outcome::Failed(format!("job configuration: {e}"))).await,
    };
    if let Some(end) = link.until_live().await {
        return finish(&mut link, end.into()).await;
    }
    let progress = link.progress();
    let drain = env.clone();
    let (env_after, spec_task, spec_epoch) = (env.clone(), spec.task_id.clone(), spec.epoch);
    let (task, epoch) = (spec.task_id.clone(), spec.epoch);
    // A draining executor stops its job masters where they are: a job master's state is all in the metastore (its
    // workers' records and checkpoints), so the next incarnation recovers it whole.
    let outcome = tokio::select! {
        biased;
        _ = drain.draining() => {
            drain.observe(ExecutorObservation::TaskQuiesced { task, epoch });
            Outcome::Stopped
        }
        outcome = linked(&mut link, |cancel| async move {
            let observer = env.clone();
            let (task, epoch) = (spec.task_id.clone(), spec.epoch);
            let body = async move {
                let mut jm = match JobMaster::<T>::recover(env, meta, &spec, config).await {
                    Ok(jm) => jm,
                    Err(outcome) => return outcome,
                };
                jm.run(progress, cancel).await
            };
            // A panic of the job type's logic fails this incarnation retryably: the leader starts the job master
            // again after the job's backoff, and gives the job up (failed, saying why) when the backoff does.
            match catch_panic(body).await {
                Ok(outcome) => outcome,
                Err(message) => {
                    warn!(%task, epoch = epoch.0, "job master panicked: {message}");
                    observer.observe(ExecutorObservation::TaskPanicked { task, epoch, message: message.clone() });
                    Outcome::FailedRetryable(format!("job master panicked: {message}"))
                }
            }
        }) => outcome,
    };
    if matches!(outcome, Outcome::FailedRetryable(_)) {
        // It acts no more and only reports its failure, after which the leader may start the next incarnation
        // (after the job's backoff): not live from here, as a drained task.
        env_after.observe(ExecutorObservation::TaskQuiesced { task: spec_task, epoch: spec_epoch });
    }
    finish(&mut link, outcome).await
}

struct JobMaster<T: JobType> {
    env: TaskEnv,
    meta: MetaStore,
    job: String,
    epoch: Epoch,
    spec: TaskSpec,
    fence: Cond,
    logic: T::Logic,
    /// Each worker's current incarnation, while it may run: the logic hears only about these.
    live: BTreeMap<WorkerName, Epoch>,
    hosting: Hosting,
    /// Worker incarnations created by this job master so far.
    created: u64,
    /// Workers not to be tried again before then.
    retry: BTreeMap<WorkerName, Time>,
    /// Restarts after retryable failures: when each worker may start again, and when to give up.
    restarts: Restarts,
    /// Which master to ask for placements first (the last one that answered).
    scheduler: usize,
    /// A worker's retryable failure not yet handed to the link, which sends the last one with every heartbeat.
    last_error: Option<LastError>,
    /// Why each worker the leader could not place was refused (no executor matches, no capacity, no leader), until
    /// it is placed: shown in the job's progress.
    unplaced: BTreeMap<WorkerName, String>,
    /// The last retryable failure handed to the link: the status shows it.
    shown_error: Option<LastError>,
    /// Every worker this incarnation knows of (recorded, wanted, or started): the status has a line for each.
    known: BTreeSet<WorkerName>,
    /// Each known worker's newest incarnation under this job master (or recorded by an earlier one).
    epochs: BTreeMap<WorkerName, Epoch>,
    /// When each worker that failed retryably starts again, by the wall clock (for the status).
    retrying: BTreeMap<WorkerName, WallTime>,
    /// When the status is stored.
    status: StatusThrottle,
    /// A changed status waits for the throttle's interval.
    status_pending: bool,
    /// After a failed write, the status is not tried again before then (a metastore that refuses at once must
    /// not make the loop spin).
    status_retry: Option<Time>,
}

/// How storing a status went.
enum StatusWrite {
    /// Stored, or not due.
    Done,
    /// Not stored (the metastore did not answer, or refused for a reason other than the fence): try again later.
    Again,
    /// Refused by the fence: a newer job master exists.
    Superseded,
}

impl<T: JobType> JobMaster<T> {
    /// Reads the job's workers and checkpoints and starts hosting its workers' messages: the incarnations
    /// recorded and not done are awaited for the recovery window; the others start from their checkpoints.
    async fn recover(
        env: TaskEnv,
        meta: MetaStore,
        spec: &TaskSpec,
        config: T::Config,
    ) -> Result<JobMaster<T>, Outcome> {
        let job = spec.job_id.clone();
        let epoch = spec.epoch;
        let (owner, records, checkpoints) = loop {
            match read_job::<T::Checkpoint>(&meta, &job).await {
                Ok(r) => break r,
                Err(e) => {
                    debug!(job, "reading the job's state: {e}; retrying");
                    env.clock.sleep(RETRY).await;
                }
            }
        };
        if owner != Some(epoch.0) && !env.planted(Planted::JobMasterOwnerUnchecked) {
            info!(job, epoch = epoch.0, ?owner, "another job-master incarnation owns the job: stopping");
            return Err(Outcome::Stale);
        }
        let states = checkpoints.iter().map(|(name, c)| (name.clone(), c.state.clone())).collect();
        let logic = T::Logic::recover(config, &states);
        let wanted: BTreeSet<WorkerName> = logic.wanted().into_iter().collect();
        let mut live = BTreeMap::new();
        let mut expected = vec![];
        for (name, worker_epoch) in &records {
            // An incarnation that checkpointed its own stop (its executor drained) runs no more: start it again
            // at once instead of waiting for it to check in.
            if checkpoints.get(name).is_some_and(|c| c.stopped && c.epoch == *worker_epoch) {
                continue;
            }
            if wanted.contains(name) {
                if let Ok(task) = worker_task(&job, name) {
                    live.insert(name.clone(), *worker_epoch);
                    expected.push((task, *worker_epoch));
                }
            }
        }
        let now = env.clock.now();
        info!(job, epoch = epoch.0, awaited = expected.len(), "job master recovering its workers");
        let workers = Workers::recover(now, epoch, spec.timing, expected)
            .with_dispatch_window(env.rpc_timeout)
            .with_plants(env.plants());
        // The leader records each job-master incarnation it starts: the proof a worker's claim of a newer job
        // master needs before this one believes it is stale.
        let issuer = Issuer { store: meta.clone(), key: keys::job_master(&job) };
        let hosting = env.host.host(&job, workers, Some(issuer));
        let fence = Cond::ValueEquals { key: keys::job_master(&job), value: epoch.0.to_string().into_bytes() };
        let restarts = Restarts::new(seed_of(&job, epoch.0));
        let known: BTreeSet<WorkerName> = records.keys().cloned().chain(wanted.iter().cloned()).collect();
        let epochs = records.clone();
        Ok(JobMaster {
            restarts,
            env,
            meta,
            job,
            epoch,
            spec: spec.clone(),
            fence,
            logic,
            live,
            hosting,
            created: 0,
            retry: BTreeMap::new(),
            scheduler: 0,
            last_error: None,
            unplaced: BTreeMap::new(),
            shown_error: None,
            known,
            epochs,
            retrying: BTreeMap::new(),
            status: StatusThrottle::new(STATUS_PERSIST_INTERVAL),
            status_pending: false,
            status_retry: None,
        })
    }

    /// Runs the job master's turns until it ends, then stores its final status (finished, failed or canceled)
    /// before the outcome is reported: a status refused by the fence makes it stale.
    async fn run(&mut self, progress: Progress, cancel: watch::Receiver<bool>) -> Outcome {
        let outcome = self.turns(progress, cancel).await;
        let (state, reason) = match &outcome {
            Outcome::Finished => (JobMasterState::Finished, None),
            Outcome::Failed(reason) => (JobMasterState::Failed, Some(reason.clone())),
            Outcome::Canceled => (JobMasterState::Canceled, None),
            _ => return outcome,
        };
        let (doc, text) = self.publish(state, reason);
        for attempt in 1..=FINAL_STATUS_TRIES {
            match self.maybe_store_status(&doc, &text, true).await {
                StatusWrite::Done => break,
                StatusWrite::Superseded => return Outcome::Stale,
                StatusWrite::Again if attempt < FINAL_STATUS_TRIES => self.env.clock.sleep(RETRY).await,
                StatusWrite::Again => warn!(job = %self.job, epoch = self.epoch.0, "the final status was not stored"),
            }
        }
        outcome
    }

    async fn turns(&mut self, progress: Progress, mut cancel: watch::Receiver<bool>) -> Outcome {
        let interval = self.spec.timing.interval;
        let wake = self.hosting.handle().wake.clone();
        loop {
            let now = self.env.clock.now();
            let events = {
                let mut h = self.hosting.handle().lock();
                let mut events = std::mem::take(&mut h.events);
                events.extend(h.workers.tick(now));
                events
            };
            for ev in events {
                if let Some(outcome) = self.on_event(ev).await {
                    return outcome;
                }
            }
            if let Some(e) = self.last_error.take() {
                self.shown_error = Some(e.clone());
                progress.set_last_error(e);
            }
            if *cancel.borrow_and_update() {
                let mut h = self.hosting.handle().lock();
                let live: Vec<TaskId> =
                    h.workers.iter().filter(|(_, e)| e.state.may_be_live()).map(|(t, _)| t.clone()).collect();
                if live.is_empty() {
                    return Outcome::Canceled;
                }
                h.cancel.extend(live);
            } else {
                if self.logic.verdict() == Verdict::Finished {
                    progress.set(self.progress_text());
                    return Outcome::Finished;
                }
                if let Some(outcome) = self.start_idle().await {
                    return outcome;
                }
            }
            progress.set(self.progress_text());
            let state = if *cancel.borrow() { JobMasterState::Canceling } else { JobMasterState::Running };
            let (doc, text) = self.publish(state, None);
            match self.maybe_store_status(&doc, &text, false).await {
                StatusWrite::Done | StatusWrite::Again => {}
                StatusWrite::Superseded => return Outcome::Stale,
            }
            let now = self.env.clock.now();
            let stored = if self.status_pending { self.status.next_allowed().max(self.status_retry) } else { None };
            let next =
                [self.hosting.handle().lock().workers.next_deadline(), self.retry.values().min().copied(), stored]
                    .into_iter()
                    .flatten()
                    .fold(now + interval, Time::min);
            let canceling = *cancel.borrow();
            tokio::select! {
                biased;
                r = cancel.changed(), if !canceling => { let _ = r; }
                _ = wake.notified() => {}
                _ = self.env.clock.sleep_until(next) => {}
            }
        }
    }

    /// The name of one of this job's workers, from its task id.
    fn name_of(&self, task: &TaskId) -> Option<WorkerName> {
        WorkerName::of_task(task, &self.job).filter(|name| self.logic.worker(name).is_some())
    }

    async fn on_event(&mut self, ev: Event) -> Option<Outcome> {
        match ev {
            Event::Online { task, epoch } => {
                debug!(job = %self.job, %task, epoch = epoch.0, "worker online");
                if let Some(name) = self.name_of(&task).filter(|n| self.live.get(n) == Some(&epoch)) {
                    let now = self.env.clock.now();
                    self.logic.on_event(now, WorkerEvent::Online { name: &name });
                }
            }
            Event::Exited { task, epoch, status } => {
                let name = self.name_of(&task)?;
                let status = match status {
                    WorkerStatus::Failed { message, retryable: true }
                        if self.env.planted(Planted::RetryableTreatedAsTerminal) =>
                    {
                        WorkerStatus::Failed { message, retryable: false }
                    }
                    status => status,
                };
                match status {
                    WorkerStatus::Finished => {
                        if self.live.get(&name) == Some(&epoch) {
                            self.live.remove(&name);
                            let now = self.env.clock.now();
                            self.logic.on_event(now, WorkerEvent::Finished { name: &name });
                        } else {
                            debug!(job = %self.job, %task, epoch = epoch.0, "finished report of a past incarnation");
                        }
                    }
                    WorkerStatus::Failed { message, retryable: true } => {
                        return self.failed_retryably(&task, &name, epoch, message).await;
                    }
                    WorkerStatus::Failed { message, retryable: false } => {
                        let now = self.env.clock.now();
                        let error = WorkerError { message, retryable: false };
                        return match self.logic.on_failed(now, &name, &error) {
                            OnFailure::FailJob => {
                                Some(Outcome::Failed(format!("worker {task} failed: {}", error.message)))
                            }
                        };
                    }
                    // Canceled without being asked (or asked, while canceling), or drained by its executor: started
                    // again (from its checkpoint) unless canceling.
                    WorkerStatus::Canceled | WorkerStatus::Running => self.lost(&name, epoch, EndedWhy::Canceled).await,
                    WorkerStatus::Stopped => self.lost(&name, epoch, EndedWhy::Stopped).await,
                }
            }
            Event::Lost { task, epoch, reason } => {
                info!(job = %self.job, %task, epoch = epoch.0, %reason, "worker lost");
                let name = self.name_of(&task)?;
                self.lost(&name, epoch, EndedWhy::Lost(reason)).await;
            }
            Event::Superseded { seen } => {
                info!(job = %self.job, seen = seen.0, "a newer job master exists: stopping");
                return Some(Outcome::Stale);
            }
            Event::Recovered { adopted, lost } => info!(job = %self.job, adopted, lost, "worker recovery ended"),
        }
        None
    }

    /// Incarnation `epoch` of worker `name` failed retryably. If it was the current one, it starts again after its
    /// backoff, from its checkpoint, unless it failed in a row without progress more often than its limit: then
    /// the logic decides (by default its job fails, saying so). `Some(outcome)` when this job master must stop.
    async fn failed_retryably(
        &mut self,
        task: &TaskId,
        name: &WorkerName,
        epoch: Epoch,
        message: String,
    ) -> Option<Outcome> {
        let stored = match read_until_answered::<T::Checkpoint>(&self.meta, &self.job, name.as_str()).await {
            Ok(c) => c,
            Err(e) => {
                warn!(job = %self.job, "{e}; counting the failure as one without progress");
                None
            }
        };
        if self.live.get(name) != Some(&epoch) {
            debug!(job = %self.job, %task, epoch = epoch.0, "the failure of a past incarnation");
            return None;
        }
        let max = self.logic.worker(name).map_or(0, |w| w.restarts_max);
        let now = self.env.clock.now();
        match self.restarts.on_retryable(now, name, stored.as_ref().map(|s| s.seq), max) {
            RestartDecision::RetryAt { at, attempt } => {
                let wait = at.saturating_since(now);
                info!(job = %self.job, %task, epoch = epoch.0, attempt, ?wait, "worker failed, starting it again: {message}");
                let wall = crate::clock::wall_now();
                let source = task.to_string();
                self.last_error = Some(LastError { source, message: message.clone(), retryable: true, at: wall });
                self.live.remove(name);
                self.retry.insert(name.clone(), at);
                self.retrying.insert(name.clone(), WallTime(wall.0.saturating_add(crate::core::time::millis_of(wait))));
                let checkpoint = stored.map(|s| s.state);
                let why = EndedWhy::Retrying { attempt, at };
                self.logic.on_event(now, WorkerEvent::Ended { name, why, checkpoint: checkpoint.as_ref() });
                None
            }
            RestartDecision::GiveUp { failures } => {
                let message = format!("failed {failures} times in a row without progress; last: {message}");
                let error = WorkerError { message, retryable: true };
                match self.logic.on_failed(now, name, &error) {
                    OnFailure::FailJob => Some(Outcome::Failed(format!("worker {task} {}", error.message))),
                }
            }
        }
    }

    /// Incarnation `epoch` of worker `name` is gone: if it was the current one, the logic hears of it with the
    /// checkpoint read back, and the worker restarts from there while it is wanted.
    async fn lost(&mut self, name: &WorkerName, epoch: Epoch, why: EndedWhy) {
        let checkpoint = match read_until_answered::<T::Checkpoint>(&self.meta, &self.job, name.as_str()).await {
            Ok(c) => c.map(|c| c.state),
            Err(e) => {
                warn!(job = %self.job, "{e}; restarting the worker from what this job master saw");
                None
            }
        };
        if self.live.get(name) != Some(&epoch) {
            debug!(job = %self.job, worker = %name, epoch = epoch.0, "the end of a past incarnation");
            return;
        }
        self.live.remove(name);
        let now = self.env.clock.now();
        self.logic.on_event(now, WorkerEvent::Ended { name, why, checkpoint: checkpoint.as_ref() });
    }

    /// The status of this job master now, in `state`, as published to the host (and bounded).
    fn status_doc(&mut self, state: JobMasterState, reason: Option<String>) -> StatusDoc {
        let wanted: BTreeSet<WorkerName> = self.logic.wanted().into_iter().collect();
        self.known.extend(wanted.iter().cloned());
        let h = self.hosting.handle().lock();
        let live = Live { job: &self.job, live: &self.live, progress: &h.progress };
        let detail = self.logic.status(&live);
        let progress = self.progress_line(&live, &wanted);
        // Numbered workers in their order (w2 before w10), then any others by name.
        let mut names: Vec<&WorkerName> = self.known.iter().collect();
        names.sort_by(|a, b| {
            (a.index().is_none(), a.index(), a.as_str()).cmp(&(b.index().is_none(), b.index(), b.as_str()))
        });
        let workers = names
            .into_iter()
            .map(|name| {
                let task = worker_task(&self.job, name).ok();
                let entry = task.as_ref().and_then(|t| h.workers.get(t));
                let phase = match (self.live.get(name), self.retrying.get(name)) {
                    (Some(_), _) => match entry.map(|e| &e.state) {
                        Some(EntryState::Created | EntryState::Waiting) | None => WorkerPhase::Starting,
                        Some(_) => WorkerPhase::Running,
                    },
                    (None, Some(at)) => WorkerPhase::Retrying { at: *at },
                    (None, None) if wanted.contains(name) => WorkerPhase::Waiting,
                    (None, None) => WorkerPhase::Done,
                };
                WorkerLine {
                    name: name.as_str().to_owned(),
                    epoch: self.epochs.get(name).map_or(0, |e| e.0),
                    phase,
                    progress: task.as_ref().and_then(|t| h.progress.get(t)).cloned().unwrap_or_default(),
                    failures: self.restarts.in_a_row(name),
                }
            })
            .collect();
        let last_error = self.shown_error.as_ref().map(|e| StatusError {
            source: e.source.clone(),
            message: e.message.clone(),
            at: e.at,
        });
        StatusDoc {
            job: self.job.clone(),
            epoch: self.epoch.0,
            executor: self.spec.executor.0,
            state,
            reason,
            progress,
            workers,
            last_error,
            detail,
            cut: None,
        }
    }

    /// Builds the status in `state` and publishes it to the host, which answers queries from it; returns it,
    /// bounded, and its text.
    fn publish(&mut self, state: JobMasterState, reason: Option<String>) -> (StatusDoc, String) {
        let (doc, text) = self.status_doc(state, reason).fit();
        let published = Published { epoch: self.epoch, document: text.clone() };
        self.hosting.handle().lock().status = Some(published);
        (doc, text)
    }

    /// Stores the status (`doc`, serialized as `text`) under `job-status/<job>` if the throttle says it is due
    /// (`last`: the final one), fenced on this incarnation.
    async fn maybe_store_status(&mut self, doc: &StatusDoc, text: &str, last: bool) -> StatusWrite {
        let now = self.env.clock.now();
        if !last && self.status_retry.is_some_and(|at| at > now) {
            self.status_pending = self.status.due(now, text, true);
            return StatusWrite::Done;
        }
        if !self.status.due(now, text, last) {
            // Not due: unchanged, or changed within the interval (then it waits for the throttle's deadline).
            self.status_pending = self.status.due(now, text, true);
            return StatusWrite::Done;
        }
        let stored = StoredStatus { epoch: self.epoch.0, at: crate::clock::wall_now(), status: doc.clone() };
        let value = match serde_json::to_vec(&stored) {
            Ok(v) => v,
            Err(e) => {
                warn!(job = %self.job, "the status does not serialize: {e}");
                return StatusWrite::Done;
            }
        };
        let put = Op::Put { key: keys::job_status(&self.job), value, lease: None };
        let fenced = !self.env.planted(Planted::StatusUnguarded);
        let fence = if fenced { std::slice::from_ref(&self.fence) } else { &[][..] };
        match self.meta.txn(fence, &[put]).await {
            Ok(true) => {
                self.status.on_written(now, text.to_owned());
                (self.status_pending, self.status_retry) = (false, None);
                StatusWrite::Done
            }
            Ok(false) => {
                info!(job = %self.job, epoch = self.epoch.0, "the job's fence moved on: a newer job master exists");
                StatusWrite::Superseded
            }
            Err(e) => {
                debug!(job = %self.job, "storing the status: {e}; trying again in {RETRY:?}");
                (self.status_pending, self.status_retry) = (true, Some(now + RETRY));
                StatusWrite::Again
            }
        }
    }

    /// The job's progress as its heartbeats carry it.
    fn progress_text(&self) -> String {
        let h = self.hosting.handle().lock();
        let live = Live { job: &self.job, live: &self.live, progress: &h.progress };
        let wanted: BTreeSet<WorkerName> = self.logic.wanted().into_iter().collect();
        self.progress_line(&live, &wanted)
    }

    /// The logic's progress line, and why a worker waits unplaced if one of the `wanted` does.
    fn progress_line(&self, live: &Live<'_>, wanted: &BTreeSet<WorkerName>) -> String {
        let mut waiting =
            self.unplaced.iter().filter(|(name, _)| wanted.contains(*name) && !self.live.contains_key(*name));
        with_unplaced(self.logic.progress(live), waiting.next(), waiting.count())
    }

    /// Starts every idle worker not waiting for a retry. `Some(outcome)` when this job master must stop.
    async fn start_idle(&mut self) -> Option<Outcome> {
        let idle: Vec<WorkerName> = self.logic.wanted().into_iter().filter(|n| !self.live.contains_key(n)).collect();
        for name in idle {
            let now = self.env.clock.now();
            if self.retry.get(&name).is_some_and(|t| *t > now) {
                continue;
            }
            self.retry.remove(&name);
            self.retrying.remove(&name);
            if let Some(outcome) = self.start(name).await {
                return Some(outcome);
            }
        }
        None
    }

    async fn start(&mut self, name: WorkerName) -> Option<Outcome> {
        let Some(worker) = self.logic.worker(&name) else {
            return Some(Outcome::Failed(format!("job {} wants worker {name}, which it does not have", self.job)));
        };
        let Ok(task) = worker_task(&self.job, &name) else {
            return Some(Outcome::Failed(format!("job {} cannot name its worker {name}", self.job)));
        };
        if self.created + 1 >= WORKER_EPOCHS_PER_MASTER {
            return Some(Outcome::Failed(format!(
                "this job master created {} worker incarnations, the most one may",
                self.created
            )));
        }
        let Some(epoch) =
            self.epoch.0.checked_mul(WORKER_EPOCHS_PER_MASTER).and_then(|e| e.checked_add(self.created + 1))
        else {
            return Some(Outcome::Failed(format!("job-master epoch {} leaves no room for worker epochs", self.epoch)));
        };
        let epoch = Epoch(epoch);
        let timeout = self.env.rpc_timeout;
        let again = |jm: &mut JobMaster<T>, name: WorkerName| {
            let at = jm.env.clock.now() + RETRY;
            jm.retry.insert(name, at);
            None
        };
        // Where: the leader's placement (any master forwards).
        let req = pb::ScheduleTaskRequest {
            task_id: task.as_str().to_owned(),
            cost: worker.cost,
            resources: worker
                .resources
                .iter()
                .map(|r| pb::ResourceKey { job_id: self.job.clone(), resource_id: format!("{name}/{r}") })
                .collect(),
            selectors: worker.selectors.iter().map(crate::rpc::selector_to_wire).collect(),
            job_id: self.job.clone(),
            master_epoch: self.epoch.0,
            epoch: epoch.0,
        };
        let placed = match schedule(&self.env.join, self.scheduler, &req, timeout, &self.env.identity()).await {
            Ok(p) => p,
            Err(status) => {
                debug!(job = %self.job, %task, "not placed: {}", status.message());
                self.scheduler += 1;
                self.unplaced.insert(name.clone(), status.message().to_owned());
                return again(self, name);
            }
        };
        self.unplaced.remove(&name);
        // Its resources were lost with their executor (or given up after the pin wait): its job type says whether it
        // starts afresh without them.
        if !placed.lost.is_empty() {
            let lost: Vec<Lost> = placed
                .lost
                .iter()
                .map(|l| Lost {
                    name: l.resource_id.split_once('/').map_or(l.resource_id.as_str(), |(_, n)| n).to_owned(),
                    holder: (!l.executor_name.is_empty()).then(|| l.executor_name.clone()),
                    waited_out: l.waited_out,
                })
                .collect();
            match self.logic.on_resources_lost(self.env.clock.now(), &name, &lost) {
                OnLost::StartFresh => {
                    info!(job = %self.job, %task, ?lost, "its resources were lost (or given up): it starts afresh");
                }
                OnLost::FailJob(reason) => return Some(Outcome::Failed(reason)),
            }
        }
        // The record first: from now on only this incarnation's checkpoints are taken.
        self.created += 1;
        let record = Op::Put {
            key: keys::worker(&self.job, name.as_str()),
            value: epoch.0.to_string().into_bytes(),
            lease: None,
        };
        let fenced = !self.env.planted(Planted::JobMasterWritesUnguarded);
        let fence = if fenced { std::slice::from_ref(&self.fence) } else { &[][..] };
        match self.meta.txn(fence, &[record]).await {
            Ok(true) => {}
            Ok(false) => {
                info!(job = %self.job, epoch = self.epoch.0, "the job's fence moved on: a newer job master exists");
                return Some(Outcome::Stale);
            }
            Err(e) => {
                debug!(job = %self.job, %task, "worker record: {e}; retrying");
                return again(self, name);
            }
        }
        let now = self.env.clock.now();
        let dispatched = {
            let mut hosted = self.hosting.handle().lock();
            hosted.placed_on.insert(task.clone(), (epoch, placed.executor_name.clone()));
            hosted.workers.on_dispatched(now, &task, epoch)
        };
        if let Err(e) = dispatched {
            debug!(job = %self.job, "{e}");
            return again(self, name);
        }
        self.live.insert(name.clone(), epoch);
        self.known.insert(name.clone());
        self.epochs.insert(name.clone(), epoch);
        let config: T::WorkerConfig = worker.config;
        let pre = pb::PreDispatchTaskRequest {
            task_id: task.as_str().to_owned(),
            kind: pb::TaskKind::Worker as i32,
            task_type: T::NAME.to_owned(),
            task_config: serde_json::to_vec(&config).unwrap_or_default(),
            job_id: self.job.clone(),
            epoch: epoch.0,
            master_id: self.job.clone(),
            master_address: self.env.address.clone(),
            master_epoch: self.epoch.0,
            leader_epoch: placed.leader_epoch,
            request_id: format!("{task}/{}", epoch.0),
            cost: worker.cost,
            timing: Some(crate::rpc::timing_to_wire(&self.spec.timing)),
            executor_id: placed.executor_id,
        };
        // The link stops this job master when it is fenced or stale; the window bounds a frozen one.
        let confirming = || {
            self.env.observe(ExecutorObservation::WorkerConfirmSent {
                master: self.job.clone(),
                master_epoch: self.epoch,
                task: task.clone(),
                epoch,
            })
        };
        let identity = self.env.identity();
        match dispatch(&placed.executor_address, pre, timeout, || true, confirming, &self.env.fault_points, &identity)
            .await
        {
            Ok(()) => {
                info!(job = %self.job, %task, epoch = epoch.0, executor = placed.executor_id, "worker dispatched");
                None
            }
            Err(status) if is_definite(&status) => {
                debug!(job = %self.job, %task, "dispatch refused: {}", status.message());
                self.hosting.handle().lock().workers.on_dispatch_failed(&task, epoch);
                if self.live.get(&name) == Some(&epoch) {
                    self.live.remove(&name);
                    let now = self.env.clock.now();
                    self.logic
                        .on_event(now, WorkerEvent::Ended { name: &name, why: EndedWhy::NotStarted, checkpoint: None });
                }
                again(self, name)
            }
            // It may run: its heartbeats, or its TTL, decide.
            Err(status) => {
                debug!(job = %self.job, %task, "dispatch unanswered: {}", status.message());
                None
            }
        }
    }
}

/// A progress line with the first worker waiting unplaced and why, and how many more wait (last: the line is cut
/// at [`super::PROGRESS_MAX`] bytes when sent).
fn with_unplaced(progress: String, first: Option<(&WorkerName, &String)>, more: usize) -> String {
    let Some((name, why)) = first else { return progress };
    let more = if more > 0 { format!(" (and {more} more workers)") } else { String::new() };
    format!("{progress}; {name} not placed: {why}{more}")
}

/// What the logic may know of its workers' reported progress: that of current incarnations only.
struct Live<'a> {
    job: &'a str,
    live: &'a BTreeMap<WorkerName, Epoch>,
    progress: &'a BTreeMap<TaskId, String>,
}

impl LiveProgress for Live<'_> {
    fn get(&self, name: &WorkerName) -> Option<&str> {
        if !self.live.contains_key(name) {
            return None;
        }
        let task = worker_task(self.job, name).ok()?;
        self.progress.get(&task).map(String::as_str)
    }
}

/// The job's worker records, by worker name.
type Records = BTreeMap<WorkerName, Epoch>;

/// The job's owner epoch, its worker records (name → epoch) and checkpoints (name → checkpoint). Keys whose last
/// segment is not a worker name are passed over.
async fn read_job<S: serde::de::DeserializeOwned>(
    meta: &MetaStore,
    job: &str,
) -> Result<(Option<u64>, Records, BTreeMap<WorkerName, Stored<S>>), String> {
    let owner = match meta.get(&keys::job_master(job)).await.map_err(|e| e.to_string())? {
        Some(v) => Some(crate::meta::parse_counter(&keys::job_master(job), &v).map_err(|e| e.to_string())?),
        None => None,
    };
    let mut records = BTreeMap::new();
    let prefix = keys::workers_prefix(job);
    for (key, value) in meta.list(&prefix).await.map_err(|e| e.to_string())? {
        let Ok(name) = WorkerName::parse(key.rsplit('/').next().unwrap_or_default()) else { continue };
        let epoch = crate::meta::parse_counter(&key, &value).map_err(|e| e.to_string())?;
        records.insert(name, Epoch(epoch));
    }
    let mut checkpoints = BTreeMap::new();
    let prefix = keys::checkpoints_prefix(job);
    for (key, value) in meta.list(&prefix).await.map_err(|e| e.to_string())? {
        let Ok(name) = WorkerName::parse(key.rsplit('/').next().unwrap_or_default()) else { continue };
        let c: Stored<S> = serde_json::from_slice(&value).map_err(|e| format!("{key}: {e}"))?;
        checkpoints.insert(name, c);
    }
    Ok((owner, records, checkpoints))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::core::job_master::WorkerSpec;
    use crate::core::timing::HeartbeatTiming;
    use crate::core::workers::LostReason;
    use crate::framework::api::{ConfigProblem, Interrupted, WorkerCtx, WorkerEnd};

    type Heard = Arc<Mutex<Vec<String>>>;

    /// A logic of one worker, w0, that writes down what it hears.
    struct Listening {
        heard: Heard,
    }

    impl JobLogic for Listening {
        type Config = Heard;
        type WorkerConfig = ();
        type Checkpoint = ();
        fn recover(heard: Heard, _: &BTreeMap<WorkerName, ()>) -> Listening {
            Listening { heard }
        }
        fn wanted(&self) -> Vec<WorkerName> {
            vec![WorkerName::parse("w0").unwrap()]
        }
        fn worker(&self, name: &WorkerName) -> Option<WorkerSpec<()>> {
            (name.as_str() == "w0").then(|| WorkerSpec::new(()))
        }
        fn on_event(&mut self, _: Time, event: WorkerEvent<'_, ()>) {
            let text = match event {
                WorkerEvent::Online { name } => format!("{name} online"),
                WorkerEvent::Finished { name } => format!("{name} finished"),
                WorkerEvent::Ended { name, why, .. } => format!("{name} ended: {why:?}"),
            };
            self.heard.lock().unwrap().push(text);
        }
        fn verdict(&self) -> Verdict {
            Verdict::Running
        }
        fn progress(&self, _: &dyn LiveProgress) -> String {
            String::new()
        }
    }

    struct Listen;

    impl JobType for Listen {
        const NAME: &'static str = "listen";
        type Config = Heard;
        type WorkerConfig = ();
        type Checkpoint = ();
        type Logic = Listening;
        fn parse_config(_: &[u8]) -> Result<Heard, ConfigProblem> {
            Ok(Heard::default())
        }
        async fn work(&self, _: (), _: &mut WorkerCtx<()>) -> Result<WorkerEnd, Interrupted> {
            Ok(WorkerEnd::Finished)
        }
    }

    /// Job `j`'s first job-master incarnation, of the listening type, on executor `executor`.
    fn listen_spec(executor: u64) -> TaskSpec {
        let second = Duration::from_secs(1);
        TaskSpec {
            task_id: TaskId::parse("j").unwrap(),
            kind: crate::core::registry::TaskKind::JobMaster,
            task_type: "listen".into(),
            task_config: vec![],
            job_id: "j".into(),
            epoch: Epoch(1),
            master_id: "leader".into(),
            master_address: "127.0.0.1:1".into(),
            master_epoch: Epoch(1),
            leader_epoch: crate::core::ids::LeaderEpoch(1),
            request_id: "r".into(),
            cost: 1,
            timing: HeartbeatTiming {
                interval: second,
                timeout: second,
                self_fence: 3 * second,
                offline_ttl: 5 * second,
            },
            executor: crate::core::ids::ExecutorId(executor),
        }
    }

    /// The logic never hears about a worker incarnation that is not the current one: a late report of an older
    /// incarnation (its finish, its coming online, its loss) is the runtime's to drop, so that a job type never
    /// needs epochs. Only the current incarnation's events reach it.
    #[tokio::test]
    async fn events_about_an_older_incarnation_never_reach_the_logic() {
        let meta = MetaStore::embedded("test", None).unwrap();
        let owner = Op::Put { key: keys::job_master("j"), value: b"1".to_vec(), lease: None };
        assert!(meta.txn(&[], &[owner]).await.unwrap());
        let env = TaskEnv::for_test(meta.clone(), None);
        let spec = listen_spec(1);
        let heard = Heard::default();
        let mut jm = match JobMaster::<Listen>::recover(env, meta, &spec, heard.clone()).await {
            Ok(jm) => jm,
            Err(outcome) => panic!("{outcome:?}"),
        };
        let task = TaskId::parse("j/w0").unwrap();
        let (old, current) = (Epoch(1_000_001), Epoch(1_000_002));
        jm.live.insert(WorkerName::parse("w0").unwrap(), current);
        let events = [
            Event::Online { task: task.clone(), epoch: old },
            Event::Exited { task: task.clone(), epoch: old, status: WorkerStatus::Finished },
            Event::Exited { task: task.clone(), epoch: old, status: WorkerStatus::Stopped },
            Event::Lost { task: task.clone(), epoch: old, reason: LostReason::Silent },
        ];
        for ev in events {
            assert_eq!(jm.on_event(ev).await, None);
        }
        assert!(heard.lock().unwrap().is_empty(), "heard about an older incarnation: {:?}", heard.lock().unwrap());
        assert_eq!(jm.on_event(Event::Online { task: task.clone(), epoch: current }).await, None);
        let finished = Event::Exited { task: task.clone(), epoch: current, status: WorkerStatus::Finished };
        assert_eq!(jm.on_event(finished).await, None);
        assert_eq!(*heard.lock().unwrap(), ["w0 online", "w0 finished"]);
        assert!(jm.live.is_empty(), "a finished worker has no current incarnation");
    }

    /// The status the runtime builds says where each worker stands, is published to the host, and is stored
    /// only when changed and due, fenced on this incarnation: once a newer job master owns the job, storing it
    /// is refused and this one learns it is superseded.
    #[tokio::test]
    async fn the_status_is_published_each_turn_and_stored_fenced_when_due() {
        let meta = MetaStore::embedded("test-status", None).unwrap();
        let put =
            |epoch: u64| Op::Put { key: keys::job_master("j"), value: epoch.to_string().into_bytes(), lease: None };
        assert!(meta.txn(&[], &[put(1)]).await.unwrap());
        let env = TaskEnv::for_test(meta.clone(), None);
        let spec = listen_spec(4);
        let mut jm = match JobMaster::<Listen>::recover(env, meta.clone(), &spec, Heard::default()).await {
            Ok(jm) => jm,
            Err(outcome) => panic!("{outcome:?}"),
        };
        let read = || async {
            let v = meta.get(&keys::job_status("j")).await.unwrap()?;
            Some(serde_json::from_slice::<StoredStatus>(&v).unwrap())
        };
        // Before any incarnation of w0: it waits.
        let (fitted, text) = jm.publish(JobMasterState::Running, None);
        let doc: StatusDoc = serde_json::from_str(&text).unwrap();
        assert_eq!(doc, fitted, "the text is the document");
        assert_eq!((doc.job.as_str(), doc.epoch, doc.executor), ("j", 1, 4));
        assert_eq!(doc.workers.len(), 1);
        assert_eq!((doc.workers[0].name.as_str(), doc.workers[0].phase), ("w0", WorkerPhase::Waiting));
        let published = jm.hosting.handle().lock().status.clone().unwrap();
        assert_eq!(published, Published { epoch: Epoch(1), document: text.clone() });
        assert!(matches!(jm.maybe_store_status(&fitted, &text, false).await, StatusWrite::Done));
        assert_eq!(read().await.unwrap().status, doc);
        // A running incarnation with progress: changed, but within the interval, so not stored yet.
        let w0 = WorkerName::parse("w0").unwrap();
        let task = TaskId::parse("j/w0").unwrap();
        jm.live.insert(w0.clone(), Epoch(1_000_001));
        jm.epochs.insert(w0.clone(), Epoch(1_000_001));
        jm.hosting.handle().lock().progress.insert(task, "5/10".into());
        let (fitted, text) = jm.publish(JobMasterState::Running, None);
        let doc: StatusDoc = serde_json::from_str(&text).unwrap();
        assert_eq!(doc.workers[0].phase, WorkerPhase::Starting);
        assert_eq!((doc.workers[0].epoch, doc.workers[0].progress.as_str()), (1_000_001, "5/10"));
        assert!(matches!(jm.maybe_store_status(&fitted, &text, false).await, StatusWrite::Done));
        assert!(jm.status_pending);
        assert_eq!(read().await.unwrap().status.workers[0].phase, WorkerPhase::Waiting);
        // Its work done: the final status is stored at once.
        jm.live.remove(&w0);
        let (fitted, text) = jm.publish(JobMasterState::Finished, None);
        assert!(matches!(jm.maybe_store_status(&fitted, &text, true).await, StatusWrite::Done));
        let stored = read().await.unwrap();
        assert_eq!((stored.epoch, stored.status.state), (1, JobMasterState::Finished));
        // Listening always wants w0: it waits again rather than being done.
        assert_eq!(stored.status.workers[0].phase, WorkerPhase::Waiting);
        // A newer job master owns the job: the write is refused, and nothing changes in the store.
        assert!(meta.txn(&[], &[put(2)]).await.unwrap());
        let (fitted, text) = jm.publish(JobMasterState::Failed, Some("x".into()));
        assert!(matches!(jm.maybe_store_status(&fitted, &text, true).await, StatusWrite::Superseded));
        assert_eq!(read().await.unwrap(), stored);
    }

    #[test]
    fn a_worker_waiting_unplaced_is_named_in_the_progress_with_why() {
        let (w1, why) = (WorkerName::indexed(1), "no executor matches zone=eu".to_owned());
        assert_eq!(with_unplaced("3/9 steps".into(), None, 0), "3/9 steps");
        assert_eq!(
            with_unplaced("3/9 steps".into(), Some((&w1, &why)), 0),
            "3/9 steps; w1 not placed: no executor matches zone=eu"
        );
        assert_eq!(
            with_unplaced("3/9 steps".into(), Some((&w1, &why)), 2),
            "3/9 steps; w1 not placed: no executor matches zone=eu (and 2 more workers)"
        );
    }

    #[test]
    fn worker_tasks_are_named_in_their_job() {
        let w3 = WorkerName::parse("w3").unwrap();
        assert_eq!(worker_task("job-1", &w3).map(|t| t.to_string()), Ok("job-1/w3".to_owned()));
        assert!(worker_task("not a job", &w3).is_err());
    }
}
