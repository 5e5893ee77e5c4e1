//! What goes into the job manager and what comes out of it: requests and their answers, the durable records it
//! asks to have written, the reads it asks for, the outcomes of both, and the events it reports. Domain values
//! only: the master turns them into wire types and metastore operations.

use std::fmt;

use crate::core::ids::{Epoch, ExecutorId, JobId, LeaderEpoch, TaskId};
use crate::core::job::{CorruptRecord, Job, JobError, JobRecord, JobSpec, JobState};
use crate::core::labels::Selector;
use crate::core::placement::{PlacementError, ResourcePin};
use crate::core::registry::{EndedTask, ExecutorRecord, ExecutorSpec, ExecutorView, RegistryError, ReportedTask};
use crate::core::time::{Time, WallTime};
use crate::core::workers::{LostReason, Message, Reply as WorkerReply, WorkerStatus};

/// The token the driver gives a request, under which its answer comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplyTo(pub u64);

/// The id the manager gives each read and write it asks for; their outcomes come back under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IoId(pub u64);

/// Everything the manager is stepped with.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// The periodic pass: liveness, job-master bookkeeping, backoff resets, cancel grace, scheduling. Due at
    /// [`Ready::wake_at`], or at once when a decision asked for one.
    Tick,
    /// Time to collect the tombstones of deleted jobs (due at [`Ready::sweep_at`]); `wall` is the wall clock now.
    SweepTombstones { wall: WallTime },
    /// A request from a client, an executor or a job master, answered under `ReplyTo`.
    Request(ReplyTo, Request),
    /// The dispatch of a job master failed definitely: the executor refused it, so it certainly does not run.
    /// `fatal` is the refusal when it was of the job's configuration (the job fails).
    DispatchRefused { job: JobId, epoch: Epoch, fatal: Option<String> },
    /// A dispatch could not reach this executor at all (its connection was refused): no work is placed there until
    /// it is heard again. Comes before the dispatch's [`Input::DispatchRefused`].
    ExecutorUnreachable { executor: ExecutorId },
}

/// A request that gets an answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    RegisterExecutor {
        spec: ExecutorSpec,
    },
    /// An executor's heartbeat; `seen` is the newest leader epoch it has heard of.
    Heartbeat {
        id: ExecutorId,
        seen: LeaderEpoch,
        tasks: Vec<ReportedTask>,
        ended: Vec<EndedTask>,
        draining: bool,
        /// The executor was fenced when it sent this (it takes no work until a heartbeat is acknowledged).
        fenced: bool,
        /// Jobs the executor keeps data of, asking whether they still exist.
        held: Vec<JobId>,
    },
    DeregisterExecutor {
        id: ExecutorId,
    },
    CreateJob {
        id: Option<JobId>,
        spec: JobSpec,
    },
    GetJob {
        id: JobId,
        include_config: bool,
    },
    ListJobs(JobFilter),
    CancelJob {
        id: JobId,
    },
    /// `wall` dates the tombstone the deletion leaves.
    DeleteJob {
        id: JobId,
        wall: WallTime,
    },
    /// A job master asks where to run one of its workers.
    ScheduleTask(Schedule),
    ListExecutors,
    /// A job master's heartbeat (`status` absent) or status report, with its progress text.
    JobMaster {
        msg: Message,
        status: Option<WorkerStatus>,
        progress: String,
        /// The last error its job got over (a heartbeat's; persisted when it changes).
        last_error: Option<crate::core::job::LastError>,
        /// The leader's wall clock as the message arrived: when a job master's own retryable failure happened, as
        /// its job's last error says.
        wall: WallTime,
    },
    /// The term's figures for the metrics.
    Gauges,
}

/// Which jobs a listing wants: one page of at most `size`, after `after` in id order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobFilter {
    /// Only jobs of this type (empty: any).
    pub job_type: String,
    pub state: Option<StateFilter>,
    pub after: Option<JobId>,
    pub size: usize,
    pub include_config: bool,
    /// The projects whose jobs the caller may see (and, for a listing by project, that one only).
    pub readable: crate::core::auth::Readable,
}

/// A listing's state filter: a state, or the corrupt records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateFilter {
    State(JobState),
    Corrupt,
}

/// A worker placement asked for by a job master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub task: TaskId,
    pub job: JobId,
    /// The asking job master's incarnation.
    pub master_epoch: Epoch,
    /// The worker incarnation the placement is for (absent: not given).
    pub epoch: Option<Epoch>,
    pub cost: u32,
    pub selectors: Vec<Selector>,
    pub resources: Vec<ResourcePin>,
}

/// A job as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobView {
    /// `resources`: where its workers' local resources live, as the leader recorded them, by worker and name.
    Job {
        job: Box<Job>,
        progress: Option<String>,
        include_config: bool,
        resources: Vec<ResourcePlace>,
    },
    Corrupt {
        id: JobId,
        record: CorruptRecord,
    },
}

impl JobView {
    pub fn id(&self) -> &JobId {
        match self {
            JobView::Job { job, .. } => job.id(),
            JobView::Corrupt { id, .. } => id,
        }
    }
}

/// Where one local resource of a job's worker lives (`job get`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePlace {
    pub worker: String,
    pub name: String,
    pub executor: ExecutorId,
    /// The executor's name while it is registered (a resource's note goes with its executor's offline verdict,
    /// drain or deregistration, so it nearly always is).
    pub executor_name: Option<String>,
}

/// An executor as the API shows it: the registry's view, the slots in use, and how many workers' local resources
/// it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutorUsage {
    pub view: ExecutorView,
    pub used: u32,
    pub resources: u32,
}

/// The term's figures for the metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TermGauges {
    pub executors_online: u64,
    pub executors_unconfirmed: u64,
    pub executors_draining: u64,
    pub slots_capacity: u64,
    pub slots_used: u64,
    /// Jobs per state, in the order of [`JobState::ALL`].
    pub jobs: [u64; 6],
    pub jobs_corrupt: u64,
    pub corrupt_job_records: u64,
    pub corrupt_executor_records: u64,
}

/// The answer to a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Registered {
        record: ExecutorRecord,
        epoch: LeaderEpoch,
    },
    /// `known` false: the executor must register again. `gone`: the held jobs that no longer exist.
    Heartbeat {
        known: bool,
        epoch: LeaderEpoch,
        gone: Vec<JobId>,
    },
    Done,
    Job(JobView),
    Jobs {
        jobs: Vec<JobView>,
        next: Option<JobId>,
    },
    Placed {
        executor: ExecutorId,
        /// The name it registered under.
        name: String,
        address: String,
        leader_epoch: LeaderEpoch,
        /// Resources the worker named that were lost since its last incarnation started: its job type decides
        /// whether it starts afresh without them.
        lost: Vec<LostResource>,
    },
    Executors(Vec<ExecutorUsage>),
    JobMaster {
        reply: WorkerReply,
        cancel: bool,
    },
    Gauges(TermGauges),
}

/// Why a request was refused. Each maps to one wire reason.
#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    Job(JobError),
    Registry(RegistryError),
    Placement(PlacementError),
    /// This master no longer leads (or a newer leader exists); nothing was applied.
    NotLeader(String),
    /// The metastore did not take the write or answer the read; the request may have been applied.
    Metastore(String),
    /// A job master that is not its job's current, online incarnation.
    StaleJobMaster(String),
    RequestIdReused(String),
    JobDeleted(String),
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    /// The caller may not make this request (the driver checks it with [`super::Manager::action_of`] before the
    /// request reaches the manager); nothing was applied.
    Denied(crate::core::auth::Denied),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Job(e) => write!(f, "{e}"),
            Refusal::Registry(e) => write!(f, "{e}"),
            Refusal::Placement(e) => write!(f, "{e}"),
            Refusal::NotLeader(m)
            | Refusal::Metastore(m)
            | Refusal::StaleJobMaster(m)
            | Refusal::RequestIdReused(m)
            | Refusal::JobDeleted(m) => f.write_str(m),
            Refusal::InvalidArgument { field, message } => write!(f, "{field}: {message}"),
            Refusal::Denied(d) => write!(f, "{d}"),
        }
    }
}

pub type Answer = Result<Reply, Refusal>;

/// A durable record the manager asks to have written, all of one write in one guarded transaction sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Job(JobRecord),
    Executor(ExecutorRecord),
    /// An executor declared offline or deregistered.
    DeleteExecutor(ExecutorId),
    /// The next executor id to hand out.
    ExecutorNextId(ExecutorId),
    /// The next job-master epoch to hand out.
    JobNextEpoch(Epoch),
    /// A job master incarnation's fence: its own writes are guarded on this value.
    JobMasterFence(JobId, Epoch),
    /// A job goes, with everything stored for it (`stored`: the keys of its workers and checkpoints, listed).
    DeleteJob {
        id: JobId,
        stored: Vec<String>,
    },
    /// A deleted job's create token, kept so that a late repeat of the create is refused.
    Tombstone {
        id: JobId,
        request: String,
        deleted_at: WallTime,
    },
    /// A tombstone collected.
    DeleteTombstone(JobId),
    /// Where a worker's local resource (`<job>/<worker>/<name>`) lives, that it was lost, or (`Gone`) that the
    /// record goes.
    Resource {
        resource: String,
        held: Held,
    },
}

/// What a resource record says of its resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// It lives on this executor.
    On(ExecutorId),
    /// It was lost: the executor holding it left (declared offline, drained, deregistered) before the worker's next
    /// incarnation started elsewhere. The worker's job type is told at its next placement.
    Lost,
    /// Nothing is recorded any more (the record is deleted).
    Gone,
}

/// A resource lost with its executor, as a placement's answer names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostResource {
    /// `<job>/<worker>/<name>`.
    pub resource: String,
    /// The executor that held it, when this term knew it.
    pub holder: Option<String>,
    /// Given up after the pin wait (that executor could not take the worker), not lost with an executor that left.
    pub waited_out: bool,
}

/// A read the manager asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// A job's record (to settle a write whose outcome is not known).
    Job(JobId),
    /// A deleted job's tombstone.
    Tombstone(JobId),
    /// The keys stored for a job's workers and checkpoints.
    JobData(JobId),
    /// The leader-epoch counter (to judge a claim that a newer leader exists).
    LeaderEpoch,
    /// Every tombstone.
    Tombstones,
}

/// What a read found.
// why: a read's result lives for one step of the manager, one at a time per read; boxing the record would only
// move it.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadResult {
    /// A job record: absent, decoded, or corrupt.
    Job(Option<Result<JobRecord, CorruptRecord>>),
    /// A tombstone's create token (absent: no tombstone).
    Tombstone(Option<String>),
    /// Keys.
    Keys(Vec<String>),
    /// A counter (absent: 0).
    Counter(u64),
    /// Tombstones: each job and its deletion time, when it has one; with its create token.
    Tombstones(Vec<(JobId, Option<WallTime>, String)>),
}

/// How a guarded write ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    /// The guard failed: this master no longer leads. Nothing was applied.
    Fenced,
    /// Certainly not applied (refused, or never sent).
    NotApplied(String),
    /// Maybe applied: the metastore did not answer in time.
    Unknown(String),
}

/// A job master to start, decided durably.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dispatch {
    pub job: JobId,
    pub epoch: Epoch,
    pub executor: ExecutorId,
    pub address: String,
    pub spec: JobSpec,
    pub leader_epoch: LeaderEpoch,
}

/// Why a placement was not made: the label `reason` of `foreman_placement_rejections_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rejection {
    /// No executor is online and reporting.
    NoExecutors,
    /// A selector matched no executor left by the filters before it.
    SelectorUnsatisfied,
    /// No executor has enough free slots.
    InsufficientCapacity,
    /// The task's resources live on different executors.
    ResourceConflict,
    /// A resource's executor is not online and reporting.
    PinnedUnavailable,
    /// A selector rules out a resource's executor.
    PinnedRejected,
    /// A resource's executor has too few free slots.
    PinnedFull,
    /// A task of cost 0.
    ZeroCost,
    /// The job waits: job masters already hold their share (half) of the online slots.
    JobMasterShare,
    /// `ScheduleTask` from a job master that is not its job's current, online incarnation.
    StaleJobMaster,
}

impl Rejection {
    /// Every reason, in the order of the enum (the index of its counter).
    pub const ALL: [Rejection; 10] = [
        Rejection::NoExecutors,
        Rejection::SelectorUnsatisfied,
        Rejection::InsufficientCapacity,
        Rejection::ResourceConflict,
        Rejection::PinnedUnavailable,
        Rejection::PinnedRejected,
        Rejection::PinnedFull,
        Rejection::ZeroCost,
        Rejection::JobMasterShare,
        Rejection::StaleJobMaster,
    ];

    /// The label value, e.g. `selector_unsatisfied`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::NoExecutors => "no_executors",
            Rejection::SelectorUnsatisfied => "selector_unsatisfied",
            Rejection::InsufficientCapacity => "insufficient_capacity",
            Rejection::ResourceConflict => "resource_conflict",
            Rejection::PinnedUnavailable => "pinned_unavailable",
            Rejection::PinnedRejected => "pinned_rejected",
            Rejection::PinnedFull => "pinned_full",
            Rejection::ZeroCost => "zero_cost",
            Rejection::JobMasterShare => "job_master_share",
            Rejection::StaleJobMaster => "stale_job_master",
        }
    }
}

impl From<&PlacementError> for Rejection {
    fn from(e: &PlacementError) -> Rejection {
        match e {
            PlacementError::ZeroCost => Rejection::ZeroCost,
            PlacementError::NoExecutors => Rejection::NoExecutors,
            PlacementError::SelectorUnsatisfied { .. } => Rejection::SelectorUnsatisfied,
            PlacementError::InsufficientCapacity { .. } => Rejection::InsufficientCapacity,
            PlacementError::ResourceConflict { .. } => Rejection::ResourceConflict,
            PlacementError::PinnedUnavailable { .. } => Rejection::PinnedUnavailable,
            PlacementError::PinnedRejected { .. } => Rejection::PinnedRejected,
            PlacementError::PinnedFull { .. } => Rejection::PinnedFull,
        }
    }
}

/// What happened, in decision order: for logs, metrics and observers.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Recovery is done; the term serves.
    Recovered {
        executors: usize,
        jobs: usize,
        waiting: usize,
    },
    Registered {
        id: ExecutorId,
        name: String,
        repeated: bool,
    },
    Draining {
        id: ExecutorId,
    },
    /// A heartbeat after `gap` since the one before.
    HeartbeatGap {
        gap: std::time::Duration,
    },
    /// Declared offline at `at` (reported once durable): the leader last heard from it at `last_heard`, and it was
    /// one of `among` executors the registry held at that check.
    ExecutorOffline {
        id: ExecutorId,
        name: String,
        at: Time,
        last_heard: Time,
        among: usize,
    },
    /// Most executors expired at once (seen at `at`): `held` evictions are held.
    EvictionsHeld {
        held: usize,
        at: Time,
    },
    JobMasterLost {
        job: JobId,
        epoch: Epoch,
        reason: LostReason,
    },
    /// The loss of incarnation `lost` at `at` charged the job's backoff (reported once durable): `failures` in a
    /// row now, and it may start again at `allowed`, `delay` after `at`; or it gave up (`allowed` none) and failed.
    BackoffCharged {
        job: JobId,
        lost: Epoch,
        failures: u32,
        delay: std::time::Duration,
        allowed: Option<Time>,
        at: Time,
    },
    /// The pass at `at` started incarnation `epoch` of the job's job master (reported once durable, as its
    /// dispatch leaves): the job's restart count, its backoff's failures in a row, the delay in force and when the
    /// backoff allowed the start (none: no delay pending).
    JobMasterStarted {
        job: JobId,
        epoch: Epoch,
        restarts: u32,
        failures: u32,
        delay: std::time::Duration,
        allowed: Option<Time>,
        at: Time,
    },
    JobMastersRecovered {
        adopted: usize,
        lost: usize,
    },
    /// Job masters placed by one pass (durably decided).
    JobMastersPlaced {
        count: usize,
    },
    /// A job master's request placed its worker `task` (an incarnation of a worker of `job`).
    WorkerPlaced {
        job: JobId,
        task: TaskId,
    },
    Rejected(Rejection),
    /// A write was fenced: another master leads.
    WriteFenced,
    /// A write's outcome is unknown.
    WriteUnknown,
    /// A stored job record turned out corrupt.
    CorruptJob {
        id: JobId,
        problem: String,
    },
    /// A write was not taken; `what` says which.
    WriteFailed {
        what: &'static str,
        why: String,
    },
    /// A dispatch was refused by its executor.
    DispatchRefused {
        job: JobId,
        epoch: Epoch,
    },
    TombstonesSwept {
        collected: usize,
        stamped: usize,
        kept: usize,
        early: usize,
    },
    /// The leader's view of the slots after a pass at `at` (only when asked for).
    Capacity {
        at: Time,
        view: CapacityView,
    },
}

/// The leader's slots after a pass: per schedulable executor (id, capacity, reported, reserved), each
/// reservation, and what the pass left waiting with what held it back (whether a job could have started is for
/// an observer to judge from these).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapacityView {
    pub executors: Vec<(ExecutorId, u32, u32, u32)>,
    /// Task, executor, incarnation ([`Epoch::NONE`]: not given), cost, when placed.
    pub reservations: Vec<(TaskId, ExecutorId, Epoch, u32, Time)>,
    /// The leader holds evictions as a suspect (most executors expired at once): it places nothing meanwhile.
    pub suspecting: bool,
    pub job_masters: JobMasterShare,
    /// Every job with no job master that may be alive and not ended, in id order.
    pub waiting: Vec<WaitingJob>,
}

/// The slots job masters hold together, and how many they may hold (one job master may always run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobMasterShare {
    pub held: u64,
    pub cap: u64,
}

/// A job waiting for a job master, as a pass left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitingJob {
    pub job: JobId,
    /// The slots its job master takes.
    pub cost: u32,
    /// When its backoff allows it to start (none: now).
    pub allowed: Option<Time>,
    /// The job-master bookkeeping admits its next incarnation (no earlier one may still be alive: else it waits
    /// for that one to be lost), as the pass asks before starting one.
    pub startable: bool,
    /// The schedulable executors its selectors admit (none: it has no selectors, all do).
    pub admits: Option<Vec<ExecutorId>>,
    /// For a job with selectors, the job masters' share among the online executors they admit: the slots live
    /// job masters hold there, and the most they may hold (one may always run).
    pub admitted_share: Option<(u64, u64)>,
}

/// Why the term must end now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepDown {
    pub why: String,
    /// A newer leader epoch confirmed by the metastore, for the leadership to remember.
    pub newer: Option<LeaderEpoch>,
}

/// Everything the manager asks of its driver after a step, in decision order within each list. The driver
/// carries it out in this order: (1) the write, guarded by the term's leadership, its outcome fed back through
/// [`super::Manager::on_write`]; (2) the reads, each result fed back through [`super::Manager::on_read`];
/// (3) the dispatches, each a task of its own whose definite refusal comes back as
/// [`Input::DispatchRefused`]; (4) the answers; (5) the events; (6) the step-down, which ends the term at once.
/// Then it sleeps until the earliest of `wake_at` and `sweep_at`, or the next input.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ready {
    /// At most one write is ever in flight (see [`super::Manager`] on ordering).
    pub write: Option<(IoId, Vec<Record>)>,
    pub reads: Vec<(IoId, Read)>,
    pub dispatches: Vec<Dispatch>,
    pub answers: Vec<(ReplyTo, Answer)>,
    pub events: Vec<Event>,
    pub step_down: Option<StepDown>,
    /// When to step the manager with [`Input::Tick`] next.
    pub wake_at: Option<Time>,
    /// When to step it with [`Input::SweepTombstones`] next.
    pub sweep_at: Option<Time>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.write.is_none()
            && self.reads.is_empty()
            && self.dispatches.is_empty()
            && self.answers.is_empty()
            && self.events.is_empty()
            && self.step_down.is_none()
    }
}

/// What the metastore holds when a term begins, decoded (a record that does not decode is listed as corrupt).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub executors: Vec<ExecutorRecord>,
    /// Executor records that do not decode (their executors register again).
    pub corrupt_executors: u64,
    pub next_executor_id: u64,
    pub jobs: Vec<JobRecord>,
    /// Job records that do not decode, under a key that names a job.
    pub corrupt_jobs: Vec<(JobId, CorruptRecord)>,
    /// Job records that do not decode, under a key that names no job.
    pub corrupt_unnamed_jobs: u64,
    pub next_job_epoch: u64,
    /// Where workers' local resources live: `<job>/<worker>/<name>` and the executor ([`Held::On`]), or that they
    /// were lost ([`Held::Lost`]).
    pub resources: Vec<(String, Held)>,
}
