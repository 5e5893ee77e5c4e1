//! The job state machine of the job manager (design.md §5 rules 4 and 5; original-system.md §3.3, §3.6).
//!
//! A job has a durable state users see ([`JobState`]) and, on the leader, a phase that says what its job master
//! is doing ([`Phase`]): waiting to start (backoff, capacity), starting (dispatched, awaiting its first
//! heartbeat), online, recovering (a new leader waits for it to check in), or done. Liveness of job masters is
//! judged elsewhere (the framework's worker bookkeeping); this module receives its verdicts — online, lost,
//! exited — tagged with the incarnation's epoch, and ignores verdicts about any incarnation but the current one.
//!
//! Every change that must survive the leader is returned as a [`JobRecord`] to persist before the caller acts or
//! answers. Cancel intent is the durable state `Canceling` itself, so every path — the tick, a lost job master,
//! a failed dispatch, a new leader's recovery — sees it, and a job whose cancel was acknowledged never starts a
//! new incarnation.
//!
//! Invariants ([`Jobs::check`]): the phase agrees with the state (terminal ⇔ done; a canceling job is never
//! waiting to start); a starting/online/recovering phase names the record's epoch; every epoch is below
//! `next_epoch`; backoff state respects its policy.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::backoff::{BackoffDecision, BackoffPolicy, BackoffRecord, BackoffState};
use super::ids::{Epoch, ExecutorId, JobId, Project};
use super::labels::Selector;
use super::planted::{Planted, Plants};
use super::rng::Rng;
use super::time::{Time, WallTime};

/// The state users see, persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Accepted and durable; no job master has come online yet.
    Created,
    /// A job master came online at least once; it runs, or is being restarted.
    Running,
    /// A cancel was acknowledged; the job master is being stopped.
    Canceling,
    Finished,
    Canceled,
    Failed,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Created,
        JobState::Running,
        JobState::Canceling,
        JobState::Finished,
        JobState::Canceled,
        JobState::Failed,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Finished | JobState::Canceled | JobState::Failed)
    }

    /// Whether a persisted job may go from `self` to `to` in one write (design.md §5 rule 5).
    ///
    /// Created → Running → Finished | Failed; Created | Running → Canceling → Canceled. A cancel that finds no
    /// job master to stop completes in the same write (Created | Running → Canceled). A job that never came online
    /// can fail (its restarts gave up, or its executor refused its configuration): Created → Failed. A job master
    /// can finish before the job manager saw its first heartbeat (a short job, or one whose exit reaches a new
    /// leader still recovering it); the exit proves it ran, and Running is folded into the same write:
    /// Created → Finished. A job master
    /// that finished or failed while its cancel was on the way reports what really happened:
    /// Canceling → Finished | Failed. Terminal states are absorbing.
    pub fn can_become(self, to: JobState) -> bool {
        use JobState::*;
        matches!(
            (self, to),
            (Created, Running)
                | (Created, Finished)
                | (Created, Canceling)
                | (Created, Canceled)
                | (Created, Failed)
                | (Running, Canceling)
                | (Running, Canceled)
                | (Running, Finished)
                | (Running, Failed)
                | (Canceling, Canceled)
                | (Canceling, Finished)
                | (Canceling, Failed)
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            JobState::Created => "Created",
            JobState::Running => "Running",
            JobState::Canceling => "Canceling",
            JobState::Finished => "Finished",
            JobState::Canceled => "Canceled",
            JobState::Failed => "Failed",
        };
        f.write_str(s)
    }
}

/// What a user asked to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The job type, e.g. `fake`.
    pub job_type: String,
    /// The job type's configuration, JSON text, validated by the job type when the job is created.
    pub config: String,
    pub selectors: Vec<Selector>,
    /// Slots the job master takes on its executor.
    pub cost: u32,
    /// The create request's token (`CreateJobRequest.request_id`), empty if none was given.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request: String,
    /// The project the job belongs to. A record without one (written before jobs had projects) reads as
    /// [`Project::DEFAULT`], and a job of the default project is written without it, so such records stay as
    /// they were.
    #[serde(default, skip_serializing_if = "Project::is_default")]
    pub project: Project,
}

impl JobSpec {
    /// What a create carrying `other` asks for differently from this job's own create, by request field
    /// (`job.type`, `job.config`, `job.selectors`, `job.cost`, `job.project`): a repeat of a create with the same token must ask
    /// for the same job, or the token was reused for another request. Empty when it is a true repeat.
    pub fn differences(&self, other: &JobSpec) -> Vec<&'static str> {
        let mut out = vec![];
        if self.job_type != other.job_type {
            out.push("job.type");
        }
        if self.config != other.config {
            out.push("job.config");
        }
        if self.selectors != other.selectors {
            out.push("job.selectors");
        }
        if self.cost != other.cost {
            out.push("job.cost");
        }
        if self.project != other.project {
            out.push("job.project");
        }
        out
    }
}

/// Why a job failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureReason {
    /// The job master was lost `max_tries` times in a row.
    BackoffExhausted,
    /// The job master exited with an error.
    JobMasterFailed,
    /// An executor refused to build the job master, for a reason that retrying cannot fix.
    DispatchRefused,
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            FailureReason::BackoffExhausted => "BACKOFF_EXHAUSTED",
            FailureReason::JobMasterFailed => "JOB_MASTER_FAILED",
            FailureReason::DispatchRefused => "DISPATCH_REFUSED",
        };
        f.write_str(s)
    }
}

/// A failed job's reason and message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFailure {
    pub reason: FailureReason,
    pub message: String,
}

/// The last error a running job met and got over (a worker's retryable failure, after which its job master
/// started it again): what a user sees while the job restarts. Its job master sends it with its heartbeats; the
/// leader keeps it in the job's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    /// Who failed: a worker's task id.
    pub source: String,
    pub message: String,
    /// Whether it is started again.
    pub retryable: bool,
    /// When, by the wall clock of the job master that saw it.
    pub at: WallTime,
}

/// The durable form of a job: everything a new leader needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    pub spec: JobSpec,
    pub state: JobState,
    /// The newest job master incarnation's epoch; [`Epoch::NONE`] before the first.
    pub epoch: Epoch,
    /// Where the newest incarnation runs, while it may be alive: set when it is dispatched, cleared when it is
    /// lost or exits. A new leader waits for exactly the incarnations that have one.
    pub executor: Option<ExecutorId>,
    /// How many times a lost job master was started again.
    pub restarts: u32,
    pub failure: Option<JobFailure>,
    pub backoff: BackoffRecord,
    /// Records from before the field read none. Boxed: most jobs never have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<Box<LastError>>,
}

/// How a job master ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitOutcome {
    Finished,
    Canceled,
    Failed { message: String },
}

/// What the job's job master is doing, as the leader sees it. Not persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No live job master; start one when the backoff allows and capacity exists.
    Waiting,
    /// Dispatched to `executor`; waiting for the first heartbeat of incarnation `epoch`.
    Starting { epoch: Epoch, executor: ExecutorId },
    /// Incarnation `epoch` heartbeats.
    Online { epoch: Epoch },
    /// A new leader waits for incarnation `epoch` to check in.
    Recovering { epoch: Epoch },
    /// Terminal: nothing runs and nothing will.
    Done,
}

impl Phase {
    /// The incarnation that may be alive, if any.
    pub fn live_epoch(self) -> Option<Epoch> {
        match self {
            Phase::Starting { epoch, .. } | Phase::Online { epoch } | Phase::Recovering { epoch } => Some(epoch),
            Phase::Waiting | Phase::Done => None,
        }
    }
}

/// A job on the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    record: JobRecord,
    backoff: BackoffState,
    phase: Phase,
    /// When the cancel of a live job master was acknowledged.
    canceling_since: Option<Time>,
    /// Set once the job master ignored its cancel for the grace period and was revoked.
    revoked: bool,
    /// Why the last attempt to place its job master found no executor (memory only: each leader's first pass
    /// says it again).
    unplaced: Option<String>,
}

impl Job {
    /// Charges a failure of its incarnation to its backoff: it waits to start again, or, when the backoff gives up,
    /// fails with `failure(failures in a row)`. Whether it gave up.
    fn charge(
        &mut self,
        now: Time,
        policy: &BackoffPolicy,
        rng: &mut impl Rng,
        failure: impl FnOnce(u32) -> JobFailure,
    ) -> bool {
        match self.backoff.on_failure(now, policy, rng) {
            BackoffDecision::RetryAt(_) => {
                self.record.restarts += 1;
                self.phase = Phase::Waiting;
                false
            }
            BackoffDecision::GiveUp { failures } => {
                self.set_state(now, JobState::Failed);
                self.record.failure = Some(failure(failures));
                self.phase = Phase::Done;
                true
            }
        }
    }

    /// The one place a job's state changes. An illegal transition (design.md §5 rule 5) is a bug in the caller:
    /// debug and simulation builds stop at it, where it happens.
    fn set_state(&mut self, now: Time, to: JobState) {
        if cfg!(debug_assertions) && !self.record.state.can_become(to) {
            use super::invariants::{stop, Id, Rule, Violation};
            let id = self.record.id.as_str().to_owned();
            let detail = format!("job {id}: illegal transition {} -> {to}", self.record.state);
            stop(Violation::new(Rule::LegalTransitions, now, detail).with([Id::Job(id)]));
        }
        self.record.state = to;
    }

    pub fn id(&self) -> &JobId {
        &self.record.id
    }

    pub fn state(&self) -> JobState {
        self.record.state
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn spec(&self) -> &JobSpec {
        &self.record.spec
    }

    pub fn epoch(&self) -> Epoch {
        self.record.epoch
    }

    pub fn restarts(&self) -> u32 {
        self.record.restarts
    }

    pub fn failure(&self) -> Option<&JobFailure> {
        self.record.failure.as_ref()
    }

    pub fn last_error(&self) -> Option<&LastError> {
        self.record.last_error.as_deref()
    }

    pub fn executor(&self) -> Option<ExecutorId> {
        self.record.executor
    }

    pub fn backoff(&self) -> &BackoffState {
        &self.backoff
    }

    /// Why the job waits for a placement: set while no job master runs and the last attempt to place one found no
    /// executor for it (which filter or how many slots), cleared once one is placed.
    pub fn unplaced(&self) -> Option<&str> {
        let waits = self.phase == Phase::Waiting && self.record.state != JobState::Canceling;
        self.unplaced.as_deref().filter(|_| waits && !self.record.state.is_terminal())
    }

    /// The durable form at `now`.
    pub fn record(&self, now: Time) -> JobRecord {
        JobRecord { backoff: self.backoff.record(now), ..self.record.clone() }
    }
}

/// A job record in the metastore that does not decode (or names another job than its key): the job exists, but
/// nothing about it can be trusted. It is shown as corrupt, never run, and can only be deleted; a create of its id
/// is refused, so that it is never silently overwritten.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptRecord {
    /// Where it is stored.
    pub key: String,
    /// Why it cannot be read, e.g. the decoder's error with its line and column.
    pub problem: String,
    /// Its size in bytes.
    pub len: usize,
}

impl fmt::Display for CorruptRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "its record at {} ({} bytes) is corrupt: {}", self.key, self.len, self.problem)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum JobError {
    #[error("job {id} does not exist")]
    NotFound { id: JobId },
    #[error("job {id} exists, but {record}; delete it first (foreman job delete {id})")]
    Corrupt { id: JobId, record: CorruptRecord },
    #[error("job {id} already exists")]
    AlreadyExists { id: JobId },
    #[error("job {id} is {state}; only a finished, canceled or failed job can be deleted: cancel it first")]
    NotTerminated { id: JobId, state: JobState },
    #[error("job {id} is {state} and cannot start a job master")]
    NotStartable { id: JobId, state: JobState },
    #[error("job {id} is {state}: its job master may place no new workers")]
    PlacesNoWorkers { id: JobId, state: JobState },
}

/// The settings of the job state machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobPolicy {
    pub backoff: BackoffPolicy,
    /// How long a job master may take to honour a cancel before the job manager revokes it.
    pub cancel_grace: Duration,
    /// The share of the online executors' capacity that job masters may hold together (one job master may always
    /// run). Job masters wait for their workers, and workers need slots too: without a cap, job masters can take
    /// every slot and wait for ever (a swarm seed with 2 executors of 2 slots and 6 jobs). Like YARN's limit on
    /// application masters.
    pub job_master_share: f64,
}

impl Default for JobPolicy {
    fn default() -> JobPolicy {
        JobPolicy { backoff: BackoffPolicy::default(), cancel_grace: Duration::from_secs(30), job_master_share: 0.5 }
    }
}

/// What a job event asks of the caller, in order: persist `persist` (when set) before acting on the rest or
/// answering anyone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub persist: Option<JobRecord>,
    /// Tell this incarnation to stop (cancel), on its next heartbeat.
    pub cancel: Option<Epoch>,
    /// Stop acknowledging this incarnation: it ignored its cancel. It will fence itself and then be lost.
    pub revoke: Option<Epoch>,
}

/// What [`Jobs::tick`] asks of the caller: persist these records, and stop acknowledging these incarnations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tick {
    pub persist: Vec<JobRecord>,
    pub revoke: Vec<(JobId, Epoch)>,
}

/// How an event about an incarnation was taken.
// A verdict lives for one call and is matched at once; boxing the step would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// About the current incarnation; the step says what to do.
    Applied(Step),
    /// About an incarnation that is not the current one (or a job that is gone): tell it it is stale.
    Stale,
}

/// The range of ids after `after` (of every id when `None`).
fn after_bound(after: Option<&JobId>) -> (std::ops::Bound<&JobId>, std::ops::Bound<&JobId>) {
    use std::ops::Bound;
    (after.map_or(Bound::Unbounded, Bound::Excluded), Bound::Unbounded)
}

/// Every job the leader manages.
#[derive(Clone, Debug)]
pub struct Jobs {
    policy: JobPolicy,
    jobs: BTreeMap<JobId, Job>,
    /// The jobs created by each request token (a create repeated with its token finds its job without a scan).
    by_request: BTreeMap<String, BTreeSet<JobId>>,
    /// Jobs whose records do not decode: shown, refused for everything but a delete, never run.
    corrupt: BTreeMap<JobId, CorruptRecord>,
    next_epoch: Epoch,
    /// A planted bug (simulation only): a finishing job passes through `Created` on its way.
    plant_illegal_transition: bool,
    /// The guard switches of the simulation's bug-finding runs (none in production).
    plants: Plants,
}

impl Jobs {
    /// No jobs: the first leader of a new cluster.
    pub fn new(policy: JobPolicy) -> Jobs {
        Jobs {
            policy,
            jobs: BTreeMap::new(),
            by_request: BTreeMap::new(),
            corrupt: BTreeMap::new(),
            next_epoch: Epoch(1),
            plant_illegal_transition: false,
            plants: Plants::NONE,
        }
    }

    /// A new leader's jobs, from the metastore at `now`. Jobs whose job master may be alive wait in
    /// [`Phase::Recovering`] for the framework's verdict; jobs that never had one wait to start, their persisted
    /// backoff honoured. `next_epoch` is the persisted counter, raised above every restored epoch.
    pub fn restore(
        policy: JobPolicy,
        now: Time,
        next_epoch: Epoch,
        records: impl IntoIterator<Item = JobRecord>,
    ) -> Jobs {
        let mut jobs = Jobs::new(policy);
        jobs.next_epoch = next_epoch.max(Epoch(1));
        for record in records {
            jobs.next_epoch = jobs.next_epoch.max(record.epoch.next());
            let backoff = BackoffState::restore(&record.backoff, now);
            let phase = if record.state.is_terminal() {
                Phase::Done
            } else if record.executor.is_none() {
                Phase::Waiting
            } else {
                Phase::Recovering { epoch: record.epoch }
            };
            let canceling_since = (record.state == JobState::Canceling).then_some(now);
            let mut job = Job { record, backoff, phase, canceling_since, revoked: false, unplaced: None };
            if job.record.state == JobState::Canceling && job.phase == Phase::Waiting {
                // Canceled while nothing ran, but the write of the final state was lost: finish it.
                job.set_state(now, JobState::Canceled);
                job.phase = Phase::Done;
            }
            jobs.insert(job);
        }
        jobs
    }

    /// Holds `job`, replacing any job of its id.
    fn insert(&mut self, job: Job) {
        self.remove(&job.record.id);
        if !job.record.spec.request.is_empty() {
            self.by_request.entry(job.record.spec.request.clone()).or_default().insert(job.record.id.clone());
        }
        self.jobs.insert(job.record.id.clone(), job);
    }

    /// Stops holding job `id`.
    fn remove(&mut self, id: &JobId) -> Option<Job> {
        let job = self.jobs.remove(id)?;
        let token = &job.record.spec.request;
        if let Some(ids) = self.by_request.get_mut(token) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_request.remove(token);
            }
        }
        Some(job)
    }

    /// The job created by request token `request` (the first by id, should several name it).
    pub fn by_request(&self, request: &str) -> Option<&Job> {
        self.by_request.get(request)?.first().and_then(|id| self.jobs.get(id))
    }

    pub fn policy(&self) -> &JobPolicy {
        &self.policy
    }

    /// The epoch the next incarnation will get; persisted with every job record that uses one.
    pub fn next_epoch(&self) -> Epoch {
        self.next_epoch
    }

    pub fn get(&self, id: &JobId) -> Option<&Job> {
        self.jobs.get(id)
    }

    /// Every job, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    /// The jobs whose ids sort after `after` (every job when `None`), in id order: a page of a listing starts
    /// where the previous one ended, without walking the jobs before it.
    pub fn iter_after(&self, after: Option<&JobId>) -> impl Iterator<Item = &Job> {
        self.jobs.range::<JobId, _>(after_bound(after)).map(|(_, j)| j)
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Every incarnation a new leader must wait for, in id order.
    pub fn recovering(&self) -> impl Iterator<Item = (&JobId, Epoch)> {
        self.jobs.iter().filter_map(|(id, j)| match j.phase {
            Phase::Recovering { epoch } => Some((id, epoch)),
            _ => None,
        })
    }

    fn job_mut(&mut self, id: &JobId) -> Result<&mut Job, JobError> {
        if let Some(record) = self.corrupt.get(id) {
            return Err(JobError::Corrupt { id: id.clone(), record: record.clone() });
        }
        self.jobs.get_mut(id).ok_or_else(|| JobError::NotFound { id: id.clone() })
    }

    /// The record of job `id` does not decode: the job is known only as corrupt from now on (until it is
    /// deleted), whatever was known of it before.
    pub fn note_corrupt(&mut self, id: JobId, record: CorruptRecord) {
        self.remove(&id);
        self.corrupt.insert(id, record);
    }

    /// Job `id`'s record, if it is corrupt.
    pub fn corrupt(&self, id: &JobId) -> Option<&CorruptRecord> {
        self.corrupt.get(id)
    }

    /// Every corrupt job, in id order.
    pub fn corrupt_jobs(&self) -> impl Iterator<Item = (&JobId, &CorruptRecord)> {
        self.corrupt.iter()
    }

    /// The corrupt records whose job ids sort after `after` (all when `None`), in id order.
    pub fn corrupt_jobs_after(&self, after: Option<&JobId>) -> impl Iterator<Item = (&JobId, &CorruptRecord)> {
        self.corrupt.range::<JobId, _>(after_bound(after))
    }

    /// Sets the guard switches (the simulation's bug-finding runs only).
    pub fn plant(&mut self, plants: Plants) {
        self.plants = plants;
    }

    /// Plants a bug for the simulator's bug-finding runs: every job that finishes first goes back to `Created`,
    /// an illegal transition that the runtime assertion must catch in the first seed where a job finishes.
    pub fn plant_illegal_transition(&mut self) {
        self.plant_illegal_transition = true;
    }

    /// Whether a job may be created under `id`: not while a job or a corrupt record holds it.
    pub fn may_create(&self, id: &JobId) -> Result<(), JobError> {
        if let Some(record) = self.corrupt.get(id) {
            return Err(JobError::Corrupt { id: id.clone(), record: record.clone() });
        }
        if self.jobs.contains_key(id) {
            return Err(JobError::AlreadyExists { id: id.clone() });
        }
        Ok(())
    }

    /// Accepts a new job. The caller persists the record (creating it only if absent) before acknowledging, and
    /// calls [`Jobs::forget`] if that fails.
    pub fn create(&mut self, id: JobId, spec: JobSpec) -> Result<JobRecord, JobError> {
        self.may_create(&id)?;
        let record = JobRecord {
            id: id.clone(),
            spec,
            state: JobState::Created,
            epoch: Epoch::NONE,
            executor: None,
            restarts: 0,
            failure: None,
            backoff: BackoffRecord::default(),
            last_error: None,
        };
        let job = Job {
            record: record.clone(),
            backoff: BackoffState::new(),
            phase: Phase::Waiting,
            canceling_since: None,
            revoked: false,
            unplaced: None,
        };
        self.insert(job);
        Ok(record)
    }

    /// Drops a job from memory without any durable effect (its creation could not be persisted).
    pub fn forget(&mut self, id: &JobId) {
        self.remove(id);
    }

    /// Replaces a job with what the metastore holds (to settle a write whose outcome was unknown).
    pub fn reload(&mut self, now: Time, record: Option<JobRecord>, id: &JobId) {
        self.corrupt.remove(id);
        match record {
            None => {
                self.remove(id);
            }
            Some(record) => {
                self.next_epoch = self.next_epoch.max(record.epoch.next());
                let previous = self.remove(id);
                let mut fresh = Jobs::restore(self.policy.clone(), now, self.next_epoch, [record]);
                let mut job = fresh.jobs.remove(id).expect("restored the one record");
                // A phase that names the same live incarnation stays as it was: the reload settles the durable
                // part. Only a live one: a job that had ended in memory (say, canceled while nothing ran) and is
                // read back as it was before, waiting, must wait again, not stay ended in phase while its record
                // says it waits (found by the runtime invariants in the swarm: a Created job in phase Done, which
                // would never have started).
                if let Some(prev) = previous {
                    let live = prev.phase.live_epoch();
                    if live.is_some() && live == job.phase.live_epoch() && !job.record.state.is_terminal() {
                        job.phase = prev.phase;
                    }
                    // The backoff stays as this term holds it when the metastore holds the same charge: this term
                    // knows when its delay ends. Restored, it would wait the whole delay again from now, as only a
                    // new leader must (found by the backoff checker in the swarm: a storm job canceled while it
                    // waited for a slot, the cancel's write timed out, held a second whole delay).
                    if prev.backoff.same_charge(&job.record.backoff) {
                        job.backoff = prev.backoff;
                    }
                }
                self.insert(job);
            }
        }
    }

    /// Cancels a job; idempotent. A terminal job is returned as it is; a job with no live job master is canceled
    /// at once; a job whose job master may be alive becomes `Canceling` and that incarnation is told to stop.
    pub fn cancel(&mut self, now: Time, id: &JobId) -> Result<(JobState, Step), JobError> {
        let job = self.job_mut(id)?;
        let state = job.record.state;
        if state.is_terminal() || state == JobState::Canceling {
            return Ok((state, Step::default()));
        }
        let mut step = Step::default();
        match job.phase.live_epoch() {
            None => {
                job.set_state(now, JobState::Canceled);
                job.phase = Phase::Done;
            }
            Some(epoch) => {
                job.set_state(now, JobState::Canceling);
                job.canceling_since = Some(now);
                step.cancel = Some(epoch);
            }
        }
        step.persist = Some(job.record(now));
        Ok((job.record.state, step))
    }

    /// Whether job `id` may be deleted now: it ended, or its record is corrupt (nothing of it can run). The caller
    /// removes its record and everything stored under it, then calls [`Jobs::delete`].
    pub fn may_delete(&self, id: &JobId) -> Result<(), JobError> {
        if self.corrupt.contains_key(id) {
            return Ok(());
        }
        let job = self.jobs.get(id).ok_or_else(|| JobError::NotFound { id: id.clone() })?;
        if !job.record.state.is_terminal() {
            return Err(JobError::NotTerminated { id: id.clone(), state: job.record.state });
        }
        Ok(())
    }

    /// Deletes a terminal or corrupt job (its record is gone from the metastore); the record, if it was readable.
    pub fn delete(&mut self, id: &JobId) -> Result<Option<JobRecord>, JobError> {
        if self.corrupt.remove(id).is_some() {
            return Ok(None);
        }
        let job = self.jobs.get(id).ok_or_else(|| JobError::NotFound { id: id.clone() })?;
        if !job.record.state.is_terminal() {
            return Err(JobError::NotTerminated { id: id.clone(), state: job.record.state });
        }
        Ok(Some(self.remove(id).expect("checked above").record))
    }

    /// Jobs that should get a job master now: waiting, not canceled, and allowed by their backoff; in id order.
    pub fn startable(&self, now: Time) -> Vec<JobId> {
        self.jobs
            .values()
            .filter(|j| j.phase == Phase::Waiting && !j.record.state.is_terminal() && j.backoff.allows(now))
            .map(|j| j.record.id.clone())
            .collect()
    }

    /// The slots the job masters that may be alive hold together.
    pub fn job_master_slots(&self) -> u64 {
        self.jobs
            .values()
            .filter(|j| j.phase.live_epoch().is_some())
            .map(|j| u64::from(j.record.spec.cost.max(1)))
            .sum()
    }

    /// The slots live job masters hold, by the executor their incarnation was placed on.
    pub fn job_master_slots_by_executor(&self) -> BTreeMap<ExecutorId, u64> {
        let mut out = BTreeMap::new();
        for j in self.jobs.values().filter(|j| j.phase.live_epoch().is_some()) {
            if let Some(e) = j.record.executor {
                *out.entry(e).or_default() += u64::from(j.record.spec.cost.max(1));
            }
        }
        out
    }

    /// Whether a job master of `cost` slots may start beside the live ones, on executors of `capacity` slots in
    /// all: within [`JobPolicy::job_master_share`] of it, or alone.
    pub fn job_master_fits(&self, cost: u32, capacity: u64) -> bool {
        self.job_master_fits_beside(self.job_master_slots(), cost, capacity)
    }

    /// [`Jobs::job_master_fits`] beside live job masters holding `held` slots together (what
    /// [`Jobs::job_master_slots`] says), for a caller that asks for many jobs at once: summing the slots is a pass
    /// over every job.
    pub fn job_master_fits_beside(&self, held: u64, cost: u32, capacity: u64) -> bool {
        let cap = self.job_master_cap(capacity);
        held == 0 || held + u64::from(cost.max(1)) <= cap
    }

    /// The slots job masters may hold together on executors of `capacity` slots in all
    /// ([`JobPolicy::job_master_share`] of it, rounded down).
    pub fn job_master_cap(&self, capacity: u64) -> u64 {
        (self.policy.job_master_share * capacity as f64).floor() as u64
    }

    /// The last attempt to place a job master for `id` found no executor, for this reason (shown with the job
    /// until one is placed).
    pub fn note_unplaced(&mut self, id: &JobId, why: String) {
        if let Some(job) = self.jobs.get_mut(id) {
            job.unplaced = Some(why);
        }
    }

    /// The earliest time a waiting job's backoff ends, if any is waiting on one.
    pub fn next_start(&self) -> Option<Time> {
        self.jobs.values().filter(|j| j.phase == Phase::Waiting).filter_map(|j| j.backoff.not_before()).min()
    }

    /// A job master for `id` was placed on `executor`: allocate its incarnation's epoch. The caller persists the
    /// record (which carries the epoch) and the epoch counter before dispatching.
    pub fn start(&mut self, now: Time, id: &JobId, executor: ExecutorId) -> Result<(Epoch, Step), JobError> {
        let epoch = self.next_epoch;
        let job = self.jobs.get_mut(id).ok_or_else(|| JobError::NotFound { id: id.clone() })?;
        if job.phase != Phase::Waiting || job.record.state.is_terminal() || job.record.state == JobState::Canceling {
            return Err(JobError::NotStartable { id: id.clone(), state: job.record.state });
        }
        self.next_epoch = epoch.next();
        job.record.epoch = epoch;
        job.record.executor = Some(executor);
        job.phase = Phase::Starting { epoch, executor };
        job.unplaced = None;
        Ok((epoch, Step { persist: Some(job.record(now)), ..Step::default() }))
    }

    fn current(&mut self, id: &JobId, epoch: Epoch) -> Option<&mut Job> {
        self.jobs.get_mut(id).filter(|j| j.phase.live_epoch() == Some(epoch))
    }

    /// The first heartbeat of incarnation `epoch` was accepted (or it checked in with a new leader).
    pub fn on_online(&mut self, now: Time, id: &JobId, epoch: Epoch) -> Verdict {
        let Some(job) = self.current(id, epoch) else { return Verdict::Stale };
        if job.revoked {
            return Verdict::Stale;
        }
        let mut step = Step::default();
        // Online already, but still Created: the write of Running failed and the job was reloaded from the
        // metastore with its phase kept. Running is owed (the caller re-applies a repeat for this), or the job
        // would show Created for as long as its job master runs.
        let already = matches!(job.phase, Phase::Online { .. });
        if already && job.record.state != JobState::Created {
            return Verdict::Applied(step);
        }
        job.phase = Phase::Online { epoch };
        if !already {
            job.backoff.on_healthy(now);
        }
        match job.record.state {
            JobState::Created => {
                job.set_state(now, JobState::Running);
                step.persist = Some(job.record(now));
            }
            JobState::Canceling => step.cancel = Some(epoch),
            _ => {}
        }
        Verdict::Applied(step)
    }

    /// Incarnation `epoch` said `error` is the last error its job met: kept (and to persist) when it is the
    /// current incarnation of a job still running and the error is new; anything else changes nothing.
    pub fn on_last_error(&mut self, now: Time, id: &JobId, epoch: Epoch, error: LastError) -> Verdict {
        let Some(job) = self.current(id, epoch) else { return Verdict::Stale };
        if job.record.state.is_terminal() || job.record.last_error.as_deref() == Some(&error) {
            return Verdict::Applied(Step::default());
        }
        job.record.last_error = Some(Box::new(error));
        Verdict::Applied(Step { persist: Some(job.record(now)), ..Step::default() })
    }

    /// Whether incarnation `epoch` should be told to stop (its job is canceling).
    pub fn wants_cancel(&self, id: &JobId, epoch: Epoch) -> bool {
        self.jobs.get(id).is_some_and(|j| j.phase.live_epoch() == Some(epoch) && j.record.state == JobState::Canceling)
    }

    /// Incarnation `epoch` is gone without exiting: its dispatch failed for sure (`fatal` when retrying cannot
    /// help), it never came online, it stopped heartbeating, or it did not check in with a new leader. The job is
    /// canceled if a cancel is pending, fails if the error is fatal or the backoff gives up, else waits to start
    /// again.
    pub fn on_lost(
        &mut self,
        now: Time,
        id: &JobId,
        epoch: Epoch,
        fatal: Option<String>,
        rng: &mut impl Rng,
    ) -> Verdict {
        let policy = self.policy.backoff.clone();
        self.end_incarnation(now, id, epoch, |job| {
            if let Some(message) = fatal {
                job.set_state(now, JobState::Failed);
                job.record.failure = Some(JobFailure { reason: FailureReason::DispatchRefused, message });
                job.phase = Phase::Done;
                return;
            }
            job.charge(now, &policy, rng, |failures| JobFailure {
                reason: FailureReason::BackoffExhausted,
                message: format!("the job master was lost {failures} times in a row"),
            });
        })
    }

    /// Incarnation `epoch` stopped itself at a checkpoint because its executor is leaving (it reported
    /// [`crate::core::workers::WorkerStatus::Stopped`] after its last action): it no longer runs anywhere, so the
    /// job may start again at once. Not a failure: the backoff is neither charged nor consulted beyond where it
    /// stands. A pending cancel ends the job Canceled instead.
    pub fn on_stopped(&mut self, now: Time, id: &JobId, epoch: Epoch) -> Verdict {
        self.end_incarnation(now, id, epoch, |job| {
            job.record.restarts += 1;
            job.phase = Phase::Waiting;
        })
    }

    /// Incarnation `epoch` of job `id` runs nowhere now: a pending cancel completes (Canceled), otherwise `next`
    /// decides what the job does; the record is persisted either way. Stale for any but the current incarnation.
    fn end_incarnation(&mut self, now: Time, id: &JobId, epoch: Epoch, next: impl FnOnce(&mut Job)) -> Verdict {
        let keeps_cancel = !self.plants.has(Planted::LossForgetsCancel);
        let Some(job) = self.current(id, epoch) else { return Verdict::Stale };
        job.revoked = false;
        job.record.executor = None;
        if keeps_cancel && job.record.state == JobState::Canceling {
            job.set_state(now, JobState::Canceled);
            job.phase = Phase::Done;
        } else {
            next(job);
        }
        Verdict::Applied(Step { persist: Some(job.record(now)), ..Step::default() })
    }

    /// Executor `executor` is gone (declared offline, or it deregistered): it stopped its tasks before that, so
    /// every incarnation on it is lost now (see [`Jobs::on_lost`]). Returns them with their steps, in id order.
    pub fn on_executor_gone(
        &mut self,
        now: Time,
        executor: ExecutorId,
        rng: &mut impl Rng,
    ) -> Vec<(JobId, Epoch, Step)> {
        let on_it: Vec<(JobId, Epoch)> = self
            .jobs
            .values()
            .filter(|j| j.record.executor == Some(executor) && j.phase.live_epoch().is_some())
            .map(|j| (j.record.id.clone(), j.record.epoch))
            .collect();
        let mut lost = vec![];
        for (id, epoch) in on_it {
            if let Verdict::Applied(step) = self.on_lost(now, &id, epoch, None, rng) {
                lost.push((id, epoch, step));
            }
        }
        lost
    }

    /// Incarnation `epoch` failed, and running it again may help (it said so: its job-master logic panicked, or
    /// it met an error of the moment): like a loss, the job waits out its backoff and starts again, unless a cancel
    /// is pending (it ends Canceled) or the backoff gives up (it fails, saying how often and the last error). The
    /// failure becomes the job's last error (`retryable` while the job starts again), for users to see why it
    /// restarts.
    pub fn on_failed_retryably(
        &mut self,
        now: Time,
        id: &JobId,
        epoch: Epoch,
        mut error: LastError,
        rng: &mut impl Rng,
    ) -> Verdict {
        let policy = self.policy.backoff.clone();
        self.end_incarnation(now, id, epoch, |job| {
            let gave_up = job.charge(now, &policy, rng, |failures| JobFailure {
                reason: FailureReason::JobMasterFailed,
                message: format!("the job master failed {failures} times in a row; last: {}", error.message),
            });
            error.retryable = !gave_up;
            job.record.last_error = Some(Box::new(error));
        })
    }

    /// Incarnation `epoch` exited with `outcome` (already persisted by the job master's side).
    pub fn on_exit(&mut self, now: Time, id: &JobId, epoch: Epoch, outcome: ExitOutcome) -> Verdict {
        let planted = self.plant_illegal_transition;
        let Some(job) = self.current(id, epoch) else { return Verdict::Stale };
        let (state, failure) = match outcome {
            ExitOutcome::Finished => (JobState::Finished, None),
            ExitOutcome::Canceled => (JobState::Canceled, None),
            ExitOutcome::Failed { message } => {
                (JobState::Failed, Some(JobFailure { reason: FailureReason::JobMasterFailed, message }))
            }
        };
        if planted && state == JobState::Finished {
            job.set_state(now, JobState::Created);
        }
        job.set_state(now, state);
        job.record.failure = failure;
        job.record.executor = None;
        job.phase = Phase::Done;
        job.revoked = false;
        Verdict::Applied(Step { persist: Some(job.record(now)), ..Step::default() })
    }

    /// Time-driven work: resets backoffs of jobs healthy long enough (handing out their records to persist, so a
    /// new leader does not bring old failures back), and revokes job masters that ignored their cancel for the
    /// grace period. Both lists are in id order.
    pub fn tick(&mut self, now: Time) -> Tick {
        let mut tick = Tick::default();
        for job in self.jobs.values_mut() {
            if job.backoff.maybe_reset(now, &self.policy.backoff) {
                tick.persist.push(job.record(now));
            }
            if let (Some(since), Some(epoch)) = (job.canceling_since, job.phase.live_epoch()) {
                if job.record.state == JobState::Canceling && !job.revoked && now >= since + self.policy.cancel_grace {
                    job.revoked = true;
                    tick.revoke.push((job.record.id.clone(), epoch));
                }
            }
        }
        tick
    }

    /// Checks the invariants; the message names the one broken and the job.
    pub fn check(&self) -> Result<(), String> {
        if let Some(id) = self.corrupt.keys().find(|id| self.jobs.contains_key(*id)) {
            return Err(format!("jobs: {id} is both corrupt and known"));
        }
        for (id, j) in &self.jobs {
            if &j.record.id != id {
                return Err(format!("jobs: entry {id} holds record {}", j.record.id));
            }
            let state = j.record.state;
            if state.is_terminal() != (j.phase == Phase::Done) {
                return Err(format!("jobs: {id} is {state} in phase {:?}", j.phase));
            }
            if state == JobState::Canceling && j.phase == Phase::Waiting {
                return Err(format!("jobs: {id} is canceling but waits to start"));
            }
            if let Some(epoch) = j.phase.live_epoch() {
                if epoch != j.record.epoch {
                    return Err(format!("jobs: {id} phase names epoch {epoch} but the record has {}", j.record.epoch));
                }
            }
            if j.phase.live_epoch().is_some() != j.record.executor.is_some() {
                return Err(format!("jobs: {id} in phase {:?} records executor {:?}", j.phase, j.record.executor));
            }
            if j.record.epoch >= self.next_epoch {
                return Err(format!("jobs: {id} epoch {} is not below next_epoch {}", j.record.epoch, self.next_epoch));
            }
            j.backoff.check(&self.policy.backoff).map_err(|e| format!("jobs: {id}: {e}"))?;
            let token = &j.record.spec.request;
            if !token.is_empty() && !self.by_request.get(token).is_some_and(|ids| ids.contains(id)) {
                return Err(format!("jobs: {id} is not indexed under its request token {token:?}"));
            }
        }
        let indexed: usize = self.by_request.values().map(BTreeSet::len).sum();
        let tokened = self.jobs.values().filter(|j| !j.record.spec.request.is_empty()).count();
        if indexed != tokened {
            return Err(format!("jobs: {indexed} jobs are indexed by request token, {tokened} have one"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rng::SplitMix64;

    fn ms(n: u64) -> Time {
        Time::from_millis(n)
    }

    fn id(s: &str) -> JobId {
        JobId::parse(s).unwrap()
    }

    fn spec() -> JobSpec {
        JobSpec {
            job_type: "fake".into(),
            config: "{}".into(),
            selectors: vec![],
            cost: 1,
            request: String::new(),
            project: Project::default(),
        }
    }

    fn policy() -> JobPolicy {
        JobPolicy {
            backoff: BackoffPolicy { jitter: 0.0, max_tries: 3, ..BackoffPolicy::default() },
            cancel_grace: Duration::from_secs(30),
            job_master_share: 0.5,
        }
    }

    fn boom(at: u64) -> LastError {
        LastError { source: "j1".into(), message: "boom".into(), retryable: true, at: WallTime(at) }
    }

    #[test]
    fn a_job_master_failing_retryably_is_charged_like_a_loss_until_the_backoff_gives_up() {
        let mut jobs = Jobs::new(policy());
        let mut rng = SplitMix64::new(7);
        jobs.create(id("j1"), spec()).unwrap();
        let mut now = 0;
        for failure in 1..=3u32 {
            now += 100_000;
            let (epoch, _) = jobs.start(ms(now), &id("j1"), ExecutorId(1)).unwrap();
            assert!(matches!(jobs.on_online(ms(now + 1), &id("j1"), epoch), Verdict::Applied(_)));
            let v = jobs.on_failed_retryably(ms(now + 2), &id("j1"), epoch, boom(now), &mut rng);
            assert!(matches!(v, Verdict::Applied(Step { persist: Some(_), .. })), "{v:?}");
            let job = jobs.get(&id("j1")).unwrap();
            let kept = job.record.last_error.as_deref().unwrap();
            assert_eq!((kept.message.as_str(), kept.retryable, kept.at), ("boom", failure < 3, WallTime(now)));
            if failure < 3 {
                assert_eq!(
                    (job.phase, job.record.state, job.record.restarts),
                    (Phase::Waiting, JobState::Running, failure)
                );
            } else {
                assert_eq!(job.record.state, JobState::Failed);
                let f = job.record.failure.clone().unwrap();
                assert_eq!(f.reason, FailureReason::JobMasterFailed);
                assert_eq!(f.message, "the job master failed 3 times in a row; last: boom");
            }
        }
        // A report of an incarnation that is not the current one changes nothing.
        assert_eq!(jobs.on_failed_retryably(ms(now + 3), &id("j1"), Epoch(1), boom(now), &mut rng), Verdict::Stale);
    }

    /// A record written before projects existed reads as the default project's, a default project's job is
    /// written without the field, and another project's with it.
    #[test]
    fn records_before_projects_read_as_the_default_project() {
        let record = Jobs::new(policy()).create(id("j1"), spec()).unwrap();
        let text = serde_json::to_string(&record).unwrap();
        assert!(!text.contains("project"), "{text}");
        let read = serde_json::from_str::<JobRecord>(&text).unwrap();
        assert_eq!(read.spec.project.as_str(), "default");
        let mut other = record.clone();
        other.spec.project = Project::parse("team-a").unwrap();
        let text = serde_json::to_string(&other).unwrap();
        assert!(text.contains(r#""project":"team-a""#), "{text}");
        assert_eq!(serde_json::from_str::<JobRecord>(&text).unwrap(), other);
        let bad = text.replace("team-a", "Team A");
        assert!(serde_json::from_str::<JobRecord>(&bad).is_err(), "an invalid project is a corrupt record");
    }

    /// A record written before `last_error` existed reads as having none, and one without an error is written
    /// without the field (so older leaders in a rolling upgrade read it the same).
    #[test]
    fn records_before_the_last_error_decode_and_records_without_one_omit_it() {
        let record = Jobs::new(policy()).create(id("j1"), spec()).unwrap();
        let text = serde_json::to_string(&record).unwrap();
        assert!(!text.contains("last_error"), "{text}");
        assert_eq!(serde_json::from_str::<JobRecord>(&text).unwrap(), record);
        let with = JobRecord {
            last_error: Some(Box::new(LastError {
                source: "j1/w0".into(),
                message: "m".into(),
                retryable: true,
                at: WallTime(7),
            })),
            ..record
        };
        let text = serde_json::to_string(&with).unwrap();
        assert!(text.contains(r#""last_error":{"source":"j1/w0","message":"m","retryable":true,"at":7}"#), "{text}");
        assert_eq!(serde_json::from_str::<JobRecord>(&text).unwrap(), with);
    }

    #[test]
    fn a_cancel_whose_write_failed_leaves_a_job_that_waits_again() {
        // Regression (swarm seeds 1797200942, 1797200990, caught by the runtime invariants): the record read back
        // after the failed write says Created, waiting; the job must wait again, not stay ended in phase.
        let mut jobs = Jobs::new(policy());
        let created = jobs.create(id("j"), spec()).unwrap();
        let (state, step) = jobs.cancel(ms(1), &id("j")).unwrap();
        assert_eq!((state, jobs.get(&id("j")).unwrap().phase()), (JobState::Canceled, Phase::Done));
        assert_eq!(step.persist.unwrap().state, JobState::Canceled);
        jobs.reload(ms(2), Some(created), &id("j"));
        let j = jobs.get(&id("j")).unwrap();
        assert_eq!((j.state(), j.phase()), (JobState::Created, Phase::Waiting));
        jobs.check().unwrap();
        assert_eq!(jobs.startable(ms(2)), vec![id("j")]);
    }

    #[test]
    fn a_reload_of_the_same_charge_keeps_the_delay_this_term_holds() {
        // Regression (swarm seed 104522, caught by the backoff checker): j is charged a 1 s delay at 5 ms, waits
        // for a slot past it, and a cancel at 2 s fails to be written: read back as waiting, j may start at once,
        // not a whole delay after the reload.
        let mut jobs = Jobs::new(policy());
        jobs.create(id("j"), spec()).unwrap();
        let (e, _) = jobs.start(ms(0), &id("j"), ExecutorId(1)).unwrap();
        let Verdict::Applied(step) = jobs.on_lost(ms(5), &id("j"), e, None, &mut SplitMix64::new(1)) else {
            panic!("the loss applies")
        };
        let charged = step.persist.unwrap();
        assert_eq!((charged.backoff.failures, charged.backoff.delay_ms), (1, 1_000));
        assert_eq!(jobs.startable(ms(1_004)), vec![]);
        jobs.cancel(ms(2_000), &id("j")).unwrap();
        jobs.reload(ms(2_000), Some(charged.clone()), &id("j"));
        jobs.check().unwrap();
        assert_eq!(jobs.startable(ms(2_000)), vec![id("j")]);
        assert_eq!(jobs.get(&id("j")).unwrap().backoff().not_before(), Some(ms(1_005)));
        // Read back before the charge was written (a record with fewer failures), the job takes what is durable.
        let mut fresh = Jobs::new(policy());
        fresh.create(id("k"), spec()).unwrap();
        let (e, first) = fresh.start(ms(0), &id("k"), ExecutorId(1)).unwrap();
        fresh.on_lost(ms(5), &id("k"), e, None, &mut SplitMix64::new(1));
        fresh.reload(ms(6), first.persist, &id("k"));
        let k = fresh.get(&id("k")).unwrap();
        assert_eq!((k.backoff().failures(), k.backoff().not_before()), (0, None));
        // A new leader, which holds no memory of the charge, waits the whole delay again (Jobs::restore).
        let restored = Jobs::restore(policy(), ms(2_000), Epoch(5), [charged]);
        assert_eq!(restored.get(&id("j")).unwrap().backoff().not_before(), Some(ms(3_000)));
    }

    #[test]
    fn a_repeated_create_differs_by_the_fields_it_changes() {
        let original = JobSpec { request: "t-1".into(), ..spec() };
        let zone = crate::core::labels::Selector::parse("zone=east").unwrap();
        // (the repeat, the fields that differ); the token itself is not compared
        let table: Vec<(JobSpec, Vec<&str>)> = vec![
            (original.clone(), vec![]),
            (JobSpec { request: "t-2".into(), ..original.clone() }, vec![]),
            (JobSpec { job_type: "other".into(), ..original.clone() }, vec!["job.type"]),
            (JobSpec { config: "{\"a\":1}".into(), cost: 2, ..original.clone() }, vec!["job.config", "job.cost"]),
            (JobSpec { selectors: vec![zone], ..original.clone() }, vec!["job.selectors"]),
            (JobSpec { project: Project::parse("b").unwrap(), ..original.clone() }, vec!["job.project"]),
        ];
        for (repeat, want) in table {
            assert_eq!(original.differences(&repeat), want, "{repeat:?}");
        }
    }

    #[test]
    fn a_request_token_finds_its_job_while_it_is_held_and_never_after() {
        let with = |t: &str| JobSpec { request: t.into(), ..spec() };
        let mut jobs =
            Jobs::restore(policy(), ms(0), Epoch(1), [Jobs::new(policy()).create(id("r"), with("t-r")).unwrap()]);
        assert_eq!(jobs.by_request("t-r").map(Job::id), Some(&id("r")));
        jobs.create(id("a"), with("t-a")).unwrap();
        jobs.create(id("b"), spec()).unwrap();
        assert_eq!(jobs.by_request("t-a").map(Job::id), Some(&id("a")));
        assert!(jobs.by_request("").is_none(), "no token finds nothing");
        // Forgotten (its create was not written), reloaded, made corrupt, deleted: the index follows.
        jobs.forget(&id("a"));
        assert!(jobs.by_request("t-a").is_none());
        jobs.check().unwrap();
        let stored = jobs.get(&id("r")).unwrap().record(ms(1));
        jobs.reload(ms(1), Some(stored), &id("r"));
        assert_eq!(jobs.by_request("t-r").map(Job::id), Some(&id("r")));
        jobs.reload(ms(1), None, &id("r"));
        assert!(jobs.by_request("t-r").is_none());
        jobs.create(id("c"), with("t-c")).unwrap();
        let corrupt = CorruptRecord { key: "c".into(), problem: "bad".into(), len: 3 };
        jobs.note_corrupt(id("c"), corrupt);
        assert!(jobs.by_request("t-c").is_none());
        jobs.create(id("d"), with("t-d")).unwrap();
        jobs.cancel(ms(2), &id("d")).unwrap();
        jobs.delete(&id("d")).unwrap();
        assert!(jobs.by_request("t-d").is_none());
        jobs.check().unwrap();
    }

    #[test]
    fn job_masters_hold_at_most_their_share_of_the_slots_but_one_always_runs() {
        let mut jobs = Jobs::new(policy());
        for n in ["a", "b", "c"] {
            jobs.create(id(n), spec()).unwrap();
        }
        // Alone, a job master may start even where its share rounds down to nothing.
        assert!(jobs.job_master_fits(1, 1));
        assert!(jobs.job_master_fits(1, 0));
        jobs.start(Time::ZERO, &id("a"), ExecutorId(1)).unwrap();
        assert_eq!(jobs.job_master_slots(), 1);
        // 4 slots: job masters may hold 2, so 2 stay for workers.
        assert!(jobs.job_master_fits(1, 4));
        assert!(!jobs.job_master_fits(2, 4));
        jobs.start(Time::ZERO, &id("b"), ExecutorId(1)).unwrap();
        assert!(!jobs.job_master_fits(1, 4));
        assert!(jobs.job_master_fits(1, 6));
        // Given the slots summed once, it answers the same.
        assert!(!jobs.job_master_fits_beside(2, 1, 4) && jobs.job_master_fits_beside(2, 1, 6));
        assert!(jobs.job_master_fits_beside(0, 3, 1));
        // A job whose job master is gone holds nothing.
        jobs.cancel(Time::ZERO, &id("c")).unwrap();
        assert_eq!(jobs.job_master_slots(), 2);
    }

    #[test]
    fn a_job_that_cannot_be_placed_says_why_until_it_is() {
        let mut jobs = Jobs::new(policy());
        let (a, b) = (id("a"), id("b"));
        jobs.create(a.clone(), spec()).unwrap();
        jobs.create(b.clone(), spec()).unwrap();
        assert_eq!(jobs.get(&a).unwrap().unplaced(), None);
        jobs.note_unplaced(&a, "no executor matches zone=x".into());
        jobs.note_unplaced(&b, "no executor has 17 slots".into());
        assert_eq!(jobs.get(&a).unwrap().unplaced(), Some("no executor matches zone=x"));
        // A newer reason replaces the older one.
        jobs.note_unplaced(&a, "no executor is online and reporting".into());
        assert_eq!(jobs.get(&a).unwrap().unplaced(), Some("no executor is online and reporting"));
        // Placed: nothing to say, also after it is lost and waits again (until the next attempt says why).
        let (e, _) = jobs.start(ms(0), &a, ExecutorId(1)).unwrap();
        assert_eq!(jobs.get(&a).unwrap().unplaced(), None);
        jobs.on_lost(ms(5), &a, e, None, &mut SplitMix64::new(1));
        assert_eq!(jobs.get(&a).unwrap().phase(), Phase::Waiting);
        assert_eq!(jobs.get(&a).unwrap().unplaced(), None);
        // Canceled while it waited: it waits for nothing any more.
        jobs.cancel(ms(6), &b).unwrap();
        assert_eq!(jobs.get(&b).unwrap().unplaced(), None);
    }

    /// A job driven to the given phase: "waiting", "starting", "online", "recovering", "canceling".
    fn job_in(phase: &str) -> (Jobs, JobId, Epoch) {
        let mut jobs = Jobs::new(policy());
        let j = id("j");
        jobs.create(j.clone(), spec()).unwrap();
        if phase == "waiting" {
            return (jobs, j, Epoch::NONE);
        }
        let (e, _) = jobs.start(ms(0), &j, ExecutorId(1)).unwrap();
        match phase {
            "starting" => {}
            "online" => {
                jobs.on_online(ms(10), &j, e);
            }
            "canceling" => {
                jobs.on_online(ms(10), &j, e);
                jobs.cancel(ms(20), &j).unwrap();
            }
            "recovering" => {
                jobs.on_online(ms(10), &j, e);
                let rec = jobs.get(&j).unwrap().record(ms(10));
                jobs = Jobs::restore(policy(), ms(100), jobs.next_epoch(), [rec]);
            }
            other => panic!("{other}"),
        }
        jobs.check().unwrap();
        (jobs, j, e)
    }

    #[test]
    fn legal_transitions_table() {
        use JobState::*;
        // Every (from, to) pair; exactly these are legal.
        let legal = [
            (Created, Running),
            (Created, Finished),
            (Created, Canceling),
            (Created, Canceled),
            (Created, Failed),
            (Running, Canceling),
            (Running, Canceled),
            (Running, Finished),
            (Running, Failed),
            (Canceling, Canceled),
            (Canceling, Finished),
            (Canceling, Failed),
        ];
        for from in JobState::ALL {
            for to in JobState::ALL {
                assert_eq!(from.can_become(to), legal.contains(&(from, to)), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn cancel_per_phase_table() {
        // (phase, resulting state, a stop is sent?)
        let table = [
            ("waiting", JobState::Canceled, false),
            ("starting", JobState::Canceling, true),
            ("online", JobState::Canceling, true),
            ("recovering", JobState::Canceling, true),
            ("canceling", JobState::Canceling, false),
        ];
        for (phase, want, stop) in table {
            let (mut jobs, j, _) = job_in(phase);
            let before = jobs.get(&j).unwrap().state();
            let (state, step) = jobs.cancel(ms(50), &j).unwrap();
            assert_eq!(state, want, "{phase}");
            assert_eq!(step.cancel.is_some(), stop, "{phase}");
            assert_eq!(step.persist.is_some(), before != want, "{phase}: persist only on change");
            jobs.check().unwrap();
        }
    }

    #[test]
    fn a_stopped_incarnation_starts_again_at_once_without_charging_the_backoff() {
        // max_tries is 3: three stops in a row would give up if they counted as failures.
        let (mut jobs, j, mut e) = job_in("online");
        for round in 1..=4u32 {
            let at = 100 * u64::from(round);
            let Verdict::Applied(step) = jobs.on_stopped(ms(at), &j, e) else { panic!("round {round}") };
            let record = step.persist.expect("persisted");
            assert_eq!((record.state, record.restarts, record.executor), (JobState::Running, round, None));
            assert_eq!(jobs.startable(ms(at)), vec![j.clone()], "round {round}: startable at once");
            jobs.check().unwrap();
            e = jobs.start(ms(at + 1), &j, ExecutorId(2)).unwrap().0;
            jobs.on_online(ms(at + 2), &j, e);
        }
        // Only the current incarnation counts; an older one's report is stale.
        assert_eq!(jobs.on_stopped(ms(900), &j, Epoch(e.0 - 1)), Verdict::Stale);
        // A stop while canceling ends the job Canceled.
        let (mut jobs, j, e) = job_in("canceling");
        let Verdict::Applied(step) = jobs.on_stopped(ms(100), &j, e) else { panic!() };
        assert_eq!(step.persist.unwrap().state, JobState::Canceled);
        assert!(jobs.startable(ms(100)).is_empty());
    }

    #[test]
    fn cancel_and_delete_of_terminal_jobs() {
        let (mut jobs, j, e) = job_in("online");
        assert!(matches!(jobs.delete(&j), Err(JobError::NotTerminated { state: JobState::Running, .. })));
        jobs.on_exit(ms(50), &j, e, ExitOutcome::Finished);
        assert_eq!(jobs.cancel(ms(60), &j).unwrap(), (JobState::Finished, Step::default()));
        assert_eq!(jobs.delete(&j).unwrap().map(|r| r.state), Some(JobState::Finished));
        assert_eq!(jobs.cancel(ms(60), &j), Err(JobError::NotFound { id: j.clone() }));
        assert_eq!(jobs.delete(&j), Err(JobError::NotFound { id: j.clone() }));
        // A deleted id may be created again; its epochs continue from the shared counter.
        jobs.create(j.clone(), spec()).unwrap();
        let (e2, _) = jobs.start(ms(70), &j, ExecutorId(1)).unwrap();
        assert!(e2 > e);
    }

    #[test]
    fn create_refuses_an_existing_id_and_changes_nothing() {
        let (mut jobs, j, _) = job_in("online");
        assert_eq!(jobs.create(j.clone(), spec()), Err(JobError::AlreadyExists { id: j.clone() }));
        assert_eq!(jobs.get(&j).unwrap().state(), JobState::Running);
    }

    #[test]
    fn online_lost_and_exit_per_phase_table() {
        // (phase, event, resulting state, resulting phase kind)
        let table: &[(&str, &str, JobState, &str)] = &[
            ("starting", "online", JobState::Running, "online"),
            ("starting", "lost", JobState::Created, "waiting"),
            ("starting", "fatal", JobState::Failed, "done"),
            ("online", "lost", JobState::Running, "waiting"),
            ("online", "finished", JobState::Finished, "done"),
            ("online", "failed", JobState::Failed, "done"),
            ("online", "canceled", JobState::Canceled, "done"),
            ("recovering", "online", JobState::Running, "online"),
            ("recovering", "lost", JobState::Running, "waiting"),
            ("canceling", "lost", JobState::Canceled, "done"),
            ("canceling", "finished", JobState::Finished, "done"),
            ("canceling", "canceled", JobState::Canceled, "done"),
        ];
        for &(phase, event, want_state, want_phase) in table {
            let (mut jobs, j, e) = job_in(phase);
            let mut rng = SplitMix64::new(1);
            let v = match event {
                "online" => jobs.on_online(ms(200), &j, e),
                "lost" => jobs.on_lost(ms(200), &j, e, None, &mut rng),
                "fatal" => jobs.on_lost(ms(200), &j, e, Some("bad config".into()), &mut rng),
                "finished" => jobs.on_exit(ms(200), &j, e, ExitOutcome::Finished),
                "canceled" => jobs.on_exit(ms(200), &j, e, ExitOutcome::Canceled),
                "failed" => jobs.on_exit(ms(200), &j, e, ExitOutcome::Failed { message: "boom".into() }),
                other => panic!("{other}"),
            };
            assert!(matches!(v, Verdict::Applied(_)), "{phase}/{event}");
            let job = jobs.get(&j).unwrap();
            assert_eq!(job.state(), want_state, "{phase}/{event}");
            let kind = match job.phase() {
                Phase::Waiting => "waiting",
                Phase::Starting { .. } => "starting",
                Phase::Online { .. } => "online",
                Phase::Recovering { .. } => "recovering",
                Phase::Done => "done",
            };
            assert_eq!(kind, want_phase, "{phase}/{event}");
            jobs.check().unwrap();
        }
    }

    #[test]
    fn events_about_other_incarnations_are_stale_and_change_nothing() {
        let (mut jobs, j, e) = job_in("online");
        let mut rng = SplitMix64::new(1);
        let before = jobs.get(&j).unwrap().record(ms(0));
        for other in [Epoch(e.0 - 1), e.next(), Epoch::NONE] {
            assert_eq!(jobs.on_online(ms(5), &j, other), Verdict::Stale);
            assert_eq!(jobs.on_lost(ms(5), &j, other, None, &mut rng), Verdict::Stale);
            assert_eq!(jobs.on_exit(ms(5), &j, other, ExitOutcome::Finished), Verdict::Stale);
        }
        assert_eq!(jobs.on_online(ms(5), &id("nope"), e), Verdict::Stale);
        assert_eq!(jobs.get(&j).unwrap().record(ms(0)), before);
    }

    #[test]
    fn illegal_starts_are_refused() {
        let (mut jobs, j, _) = job_in("online");
        assert!(matches!(jobs.start(ms(0), &j, ExecutorId(1)), Err(JobError::NotStartable { .. })));
        let (mut jobs, j, _) = job_in("canceling");
        assert!(matches!(jobs.start(ms(0), &j, ExecutorId(1)), Err(JobError::NotStartable { .. })));
        assert_eq!(jobs.start(ms(0), &id("x"), ExecutorId(1)).unwrap_err(), JobError::NotFound { id: id("x") });
    }

    #[test]
    fn lost_job_masters_restart_with_backoff_then_give_up() {
        let (mut jobs, j, mut e) = job_in("online");
        let mut rng = SplitMix64::new(1);
        let mut now = 100;
        for round in 1..=2 {
            jobs.on_lost(ms(now), &j, e, None, &mut rng);
            assert!(jobs.startable(ms(now)).is_empty(), "round {round}: backoff holds the restart");
            let at = jobs.next_start().unwrap();
            assert!(jobs.startable(at).contains(&j));
            now = at.as_millis();
            e = jobs.start(ms(now), &j, ExecutorId(2)).unwrap().0;
        }
        jobs.on_lost(ms(now), &j, e, None, &mut rng);
        let job = jobs.get(&j).unwrap();
        assert_eq!(job.state(), JobState::Failed);
        assert_eq!(job.failure().unwrap().reason, FailureReason::BackoffExhausted);
        assert_eq!(job.restarts(), 2);
        jobs.check().unwrap();
    }

    #[test]
    fn a_canceling_job_never_starts_again() {
        let (mut jobs, j, e) = job_in("canceling");
        assert!(jobs.startable(ms(1_000_000)).is_empty());
        assert!(jobs.wants_cancel(&j, e));
        jobs.on_lost(ms(100), &j, e, None, &mut SplitMix64::new(1));
        assert_eq!(jobs.get(&j).unwrap().state(), JobState::Canceled);
        assert!(jobs.startable(ms(1_000_000)).is_empty());
    }

    #[test]
    fn restore_honours_cancel_intent_and_backoff() {
        let (mut jobs, j, e) = job_in("online");
        let mut rng = SplitMix64::new(1);
        jobs.on_lost(ms(100), &j, e, None, &mut rng);
        let k = id("k");
        jobs.create(k.clone(), spec()).unwrap();
        let (ek, _) = jobs.start(ms(100), &k, ExecutorId(1)).unwrap();
        jobs.cancel(ms(100), &k).unwrap();
        let records: Vec<JobRecord> = jobs.iter().map(|x| x.record(ms(100))).collect();
        let restored = Jobs::restore(policy(), ms(5_000), Epoch(1), records);
        restored.check().unwrap();
        // j waits its whole pending delay again; k waits for its job master, to cancel it.
        assert!(restored.startable(ms(5_999)).is_empty());
        assert_eq!(restored.startable(ms(6_000)), vec![j.clone()]);
        assert_eq!(restored.get(&k).unwrap().phase(), Phase::Recovering { epoch: ek });
        assert!(restored.wants_cancel(&k, ek));
        assert!(restored.next_epoch() > ek);
    }

    #[test]
    fn a_job_master_ignoring_its_cancel_is_revoked_after_the_grace() {
        let (mut jobs, j, e) = job_in("canceling");
        assert!(jobs.tick(ms(30_019)).revoke.is_empty());
        assert_eq!(jobs.tick(ms(30_020)).revoke, vec![(j.clone(), e)]);
        assert!(jobs.tick(ms(40_000)).revoke.is_empty(), "revoked once");
        assert_eq!(jobs.on_online(ms(40_000), &j, e), Verdict::Stale);
        jobs.on_lost(ms(50_000), &j, e, None, &mut SplitMix64::new(1));
        assert_eq!(jobs.get(&j).unwrap().state(), JobState::Canceled);
    }

    #[test]
    fn a_healthy_job_forgets_its_failures_durably() {
        // Regression (proptest `jobs_persist_backoff_resets`): the reset was made in memory only, so a new leader
        // brought the old failures back.
        let (mut jobs, j, e) = job_in("online");
        let mut rng = SplitMix64::new(1);
        jobs.on_lost(ms(100), &j, e, None, &mut rng);
        let at = jobs.next_start().unwrap();
        let e = jobs.start(at, &j, ExecutorId(2)).unwrap().0;
        jobs.on_online(at, &j, e);
        let reset_at = at + Duration::from_secs(300);
        assert!(jobs.tick(ms(reset_at.as_millis() - 1)).persist.is_empty());
        let tick = jobs.tick(reset_at);
        assert_eq!(tick.persist.len(), 1);
        assert_eq!(tick.persist[0].backoff, BackoffRecord::default());
        assert_eq!(tick.persist[0].restarts, 1, "the restart count is history, not backoff");
        assert!(jobs.tick(reset_at + Duration::from_secs(1)).persist.is_empty(), "persisted once");
    }

    #[test]
    fn an_exit_before_the_first_heartbeat_finishes_the_job() {
        // Regression (proptest `jobs_exit_before_online_is_legal`): Created → Finished is written in one step.
        for phase in ["starting", "recovering"] {
            let (mut jobs, j, e) = job_in(phase);
            if phase == "recovering" {
                // Recovering from a record written before the first heartbeat: still Created.
                let mut rec = jobs.get(&j).unwrap().record(ms(0));
                rec.state = JobState::Created;
                jobs = Jobs::restore(policy(), ms(0), jobs.next_epoch(), [rec]);
            }
            assert_eq!(jobs.get(&j).unwrap().state(), JobState::Created, "{phase}");
            let Verdict::Applied(step) = jobs.on_exit(ms(50), &j, e, ExitOutcome::Finished) else { panic!("{phase}") };
            let rec = step.persist.unwrap();
            assert_eq!(rec.state, JobState::Finished, "{phase}");
            assert!(JobState::Created.can_become(rec.state));
            jobs.check().unwrap();
        }
    }

    #[test]
    fn a_gone_executor_loses_exactly_the_incarnations_on_it() {
        let (mut jobs, j, e) = job_in("online"); // on executor 1
        let k = id("k");
        jobs.create(k.clone(), spec()).unwrap();
        let (ek, _) = jobs.start(ms(0), &k, ExecutorId(2)).unwrap();
        let mut rng = SplitMix64::new(1);
        let lost = jobs.on_executor_gone(ms(100), ExecutorId(1), &mut rng);
        assert_eq!(lost.len(), 1);
        assert_eq!((&lost[0].0, lost[0].1), (&j, e));
        assert!(lost[0].2.persist.as_ref().is_some_and(|r| r.executor.is_none()));
        assert_eq!(jobs.get(&k).unwrap().phase(), Phase::Starting { epoch: ek, executor: ExecutorId(2) });
        assert!(jobs.on_executor_gone(ms(200), ExecutorId(1), &mut rng).is_empty(), "nothing left on it");
        jobs.check().unwrap();
    }
}
