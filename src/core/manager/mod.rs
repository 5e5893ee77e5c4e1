//! The job manager of one leader term, as one pure machine (sans-IO, in the manner of raft-rs's `RawNode` and
//! `Ready`): it owns the registry, the jobs, the job-master bookkeeping, the progress texts, and the durable
//! operation in progress. The driver (`src/master/leader.rs`) steps it with inputs, carries out each [`Ready`] it
//! hands out, and feeds back the outcome of every write and read. It never fails: a refusal is an answer.
//!
//! **Group commit.** An operation's write is staged, not made at once: while the next queued input is one that
//! touches no job the staged write touches (a create with no id, a cancel, a read of one job, a job master's
//! message), it is taken too and its records join the same write, up to one transaction's operations and
//! [`BATCH_BYTES_MAX`]. A storm of creates then costs the metastore one transaction per batch, and the inputs behind
//! it wait for one write, not one each. Every operation of a batch is answered once the write is taken; if it is
//! not, each fails as it would have alone.
//!
//! **Ordering, stated once.** Decisions that change durable state are applied in memory before their write is
//! made, and at most one such operation is in progress at a time: from its first read or write until its last
//! outcome has been taken (a failed write is settled by re-reading what it touched). While one is in progress
//! every input that changes durable state, and every read of jobs (which must not show a state that is not
//! durable), waits in the manager's queue, in arrival order, except the periodic pass, which goes first once the
//! operation ends (a backlog of client calls must never delay the liveness checks by its sum). Executors'
//! heartbeats, worker placements, executor listings and the metrics' figures never wait: they change memory only.
//! Nor does a job master's plain heartbeat that changes nothing durable, nor a read of one job, when the operation
//! does not touch that job (what either is told is durable).
//!
//! A write that is fenced ends the term. So does a write whose outcome is not known (the driver settles an
//! unanswered write by fencing it off, `core::write_fence`, and reports `Unknown` only when that fails too: the
//! write may then still land after anything the term would write next). A write of the periodic pass that fails
//! ends the term too (its dispatches were never sent, and the next leader recovers from what is durable). Any other
//! write of job records that certainly was not applied is settled by reading each record back; if a settling read
//! fails, memory cannot be trusted and the term ends.

mod io;
#[cfg(test)]
mod tests;

pub use io::*;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::core::ids::{Epoch, ExecutorId, JobId, LeaderEpoch, TaskId};
use crate::core::job::{
    ExitOutcome, FailureReason, JobError, JobPolicy, JobRecord, JobState, Jobs, LastError, Phase, Verdict as JobVerdict,
};
use crate::core::labels::Selector;
use crate::core::placement::{PlacementError, PlacementPolicy, PlacementRequest, ResourcePin};
use crate::core::registry::{Registry, RegistryError, RegistryPolicy, Status as ExecutorStatus};
use crate::core::rng::{Rng, SplitMix64};
use crate::core::time::{Time, WallTime};
use crate::core::timing::HeartbeatTiming;
use crate::core::tombstone::{self, Retention};
use crate::core::workers::{Event as MasterEvent, Verdict as WorkerVerdict, WorkerStatus, Workers};

/// The most tombstones kept: beyond it the oldest go before their retention ends.
pub const TOMBSTONES_MAX: usize = 100_000;
/// How often a term looks for tombstones to collect, and how soon again while a sweep left work behind.
pub const TOMBSTONE_SWEEP_INTERVAL: Duration = Duration::from_secs(30);
pub const TOMBSTONE_SWEEP_AGAIN: Duration = Duration::from_secs(1);

/// A resource lost with its executor: who held it (when this term knew), and the earliest worker epoch placed since
/// (`None` before its first placement): a report of that incarnation or a later one running ends the loss.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Lost {
    holder: Option<String>,
    placed: Option<Epoch>,
    /// It was given up after the pin wait (its executor serves on but could not take the worker), not lost with
    /// an executor that left.
    waited_out: bool,
}

/// How a term behaves: its knobs, from the master's configuration.
#[derive(Clone, Debug)]
pub struct ManagerPolicy {
    pub registry: RegistryPolicy,
    pub placement: PlacementPolicy,
    pub jobs: JobPolicy,
    /// The job masters' heartbeat timing (their offline TTL).
    pub job_masters: HeartbeatTiming,
    /// How long a dispatch may take to reach its executor (added to a new job master's first TTL).
    pub dispatch_window: Duration,
    /// How often the periodic pass runs.
    pub check_interval: Duration,
    pub tombstone_retention: Duration,
    /// The most operations one write may carry per transaction (tombstone sweeps are batched by it).
    pub batch_max: usize,
    /// Report the slots after every pass ([`Event::Capacity`]): observers only, it costs a walk of the placer.
    pub report_capacity: bool,
    /// How long a worker waits for the executor holding its local resources, when that executor cannot take it,
    /// before they are given up as lost and it goes elsewhere (`placement.pin-wait`).
    pub pin_wait: Duration,
}

use crate::core::planted::Planted;
pub use crate::core::planted::Plants;

/// What happens once the write of an operation is taken.
#[derive(Clone, Debug)]
enum After {
    Tick { dispatches: Vec<Dispatch>, offline: Vec<Event> },
    Register { to: ReplyTo, record: crate::core::registry::ExecutorRecord },
    Deregister { to: ReplyTo },
    Create { to: ReplyTo, id: JobId, include_config: bool },
    Cancel { to: ReplyTo, id: JobId },
    Delete { to: ReplyTo, id: JobId },
    JobMaster { to: ReplyTo, task: TaskId, reply: crate::core::workers::Reply, cancel: bool, exit: Option<Epoch> },
    DispatchRefused,
    Sweep { swept: Event },
}

/// The durable operation in progress.
#[derive(Clone, Debug)]
enum Busy {
    /// Creates with given ids read their ids' tombstones first: consecutive ones together (group commit), each
    /// decided once every read is in, in order.
    CreateTombstones { creates: Vec<PendingCreate> },
    /// A delete lists what is stored for the job first.
    DeleteListing { io: IoId, to: ReplyTo, id: JobId, wall: WallTime },
    /// A write, and what follows it. `settle`: the jobs whose records it writes (re-read if it is not applied). `durable`:
    /// the events its decisions made, reported once it is taken (never, if it fails).
    Write { io: IoId, afters: Vec<After>, settle: Vec<JobId>, durable: Vec<Event> },
    /// A failed write's jobs, being re-read; `outcome` is why.
    Settle { waiting: BTreeSet<IoId>, ids: BTreeMap<IoId, JobId>, afters: Vec<After>, outcome: WriteOutcome },
}

/// A create with a given id whose tombstone is being read, and the read's result once in.
#[derive(Clone, Debug)]
struct PendingCreate {
    io: IoId,
    to: ReplyTo,
    id: JobId,
    spec: crate::core::job::JobSpec,
    read: Option<Result<ReadResult, String>>,
}

/// The records of operations taken but not yet written, and what follows each (see "Group commit" above).
#[derive(Clone, Debug, Default)]
struct Staged {
    records: Vec<Record>,
    afters: Vec<After>,
    /// The metastore operations the records make, and their size, as [`ops_of`] and [`bytes_of`] estimate them.
    ops: usize,
    bytes: usize,
    /// The jobs the records write (a later operation on one of them waits for the write).
    jobs: BTreeSet<JobId>,
}

/// An input that waits for the operation in progress.
#[derive(Clone, Debug)]
enum Deferred {
    Request(ReplyTo, Request),
    DispatchRefused { job: JobId, epoch: Epoch, fatal: Option<String> },
    Swept { stored: Vec<(JobId, Option<WallTime>, String)>, wall: WallTime, written: u64 },
}

/// A read that no operation waits on.
#[derive(Clone, Debug)]
enum Side {
    /// An executor's claim that a newer leader epoch exists.
    ExecutorClaim { to: ReplyTo, seen: LeaderEpoch },
    /// A job master's claim that someone newer exists.
    JobMasterClaim { to: ReplyTo, claim: crate::core::workers::Claim },
    /// The tombstones listed for a sweep; `written` is how many tombstones this term had written then.
    Tombstones { wall: WallTime, written: u64 },
}

/// The job manager of one leader term.
pub struct Manager {
    epoch: LeaderEpoch,
    policy: ManagerPolicy,
    plants: Plants,
    rng: SplitMix64,
    registry: Registry,
    jobs: Jobs,
    /// The job manager's view of its job masters (the framework's master side, at the top level).
    masters: Workers,
    /// What each job's current job master last said of its progress (memory only).
    progress: BTreeMap<JobId, String>,
    /// Where each worker's local resources live (`<job>/<worker>/<name>` → the executor that holds them), set when
    /// the worker is first placed naming them, recovered from the metastore by a new term. A worker is placed again
    /// where they are while that executor is online; they go with the executor (declared offline, deregistered,
    /// draining) or the job (deleted).
    resources: BTreeMap<String, ExecutorId>,
    /// Resources lost with the executor that held them (it was declared offline, drained or deregistered), until
    /// the worker's next incarnation is seen running: its placements name them, so its job type decides whether it
    /// starts afresh without them (exec's `scratch_required`). Persisted (a new term tells it too).
    lost: BTreeMap<String, Lost>,
    /// Since when each pinned resource's executor has refused its worker (full, or not serving): past
    /// [`ManagerPolicy::pin_wait`] the pin is given up (memory only: a new term waits again).
    pin_refused: BTreeMap<String, Time>,
    /// Resources whose record changed since the last write: the next periodic pass writes them (a placement does
    /// not wait for a write; a term that ends first loses them, and the worker's next placement is free).
    resources_dirty: BTreeSet<String>,
    corrupt_executors: u64,
    corrupt_unnamed_jobs: u64,
    /// How many times this term wrote or deleted a tombstone: a sweep decided on a listing older than the last
    /// such write is dropped.
    tombstones_written: u64,
    busy: Option<Busy>,
    /// Operations taken whose write is not made yet: made when no queued input can join it.
    staged: Option<Staged>,
    queue: VecDeque<Deferred>,
    /// A periodic pass is due and waits for the operation in progress.
    tick_due: bool,
    tick_at: Time,
    sweep_at: Time,
    sweeping: bool,
    side: BTreeMap<IoId, Side>,
    next_io: u64,
    /// The term asked to end; nothing more is decided.
    ended: bool,
    /// Events of decisions not yet written: they go with the next write and are reported once it is taken.
    undurable: Vec<Event>,
    out: Ready,
    /// Steps since the invariants were last checked ([`Manager::assert_invariants`]).
    unchecked_steps: u64,
}

/// Up to how many jobs and executors a term checks its invariants after every step.
const EVERY_STEP_MAX: usize = 256;

/// Above [`EVERY_STEP_MAX`], how many jobs and executors a term's invariant check may read per step, amortized.
const INVARIANT_BUDGET: usize = 32;

/// The most bytes of records one batch gathers, as [`bytes_of`] estimates them: well below etcd's 1.5 MiB request,
/// whatever the records' configurations (an operation alone is never refused by it: the first of a batch always
/// goes).
pub const BATCH_BYTES_MAX: usize = 512 * 1024;

impl Manager {
    /// A term that begins at `now` with what the metastore holds.
    pub fn recover(
        now: Time,
        epoch: LeaderEpoch,
        policy: ManagerPolicy,
        plants: Plants,
        seed: u64,
        mut snapshot: Snapshot,
    ) -> Manager {
        if plants.has(Planted::RecoveryForgetsCancel) {
            for r in snapshot.jobs.iter_mut().filter(|r| r.state == JobState::Canceling) {
                r.state = JobState::Running;
            }
        }
        if plants.has(Planted::RecoveryIgnoresBackoff) {
            for r in snapshot.jobs.iter_mut() {
                r.backoff.delay_ms = 0;
            }
        }
        let mut registry = Registry::restore(
            policy.registry.clone(),
            policy.placement.clone(),
            now,
            ExecutorId(snapshot.next_executor_id.max(1)),
            snapshot.executors,
        );
        if plants.has(Planted::OneOfflinePerCheck) {
            registry.plant_one_offline_per_check();
        }
        if plants.has(Planted::SlotLeak) {
            registry.placer_mut().plant_slot_leak();
        }
        registry.plant(plants);
        let mut jobs = Jobs::restore(policy.jobs.clone(), now, Epoch(snapshot.next_job_epoch.max(1)), snapshot.jobs);
        if plants.has(Planted::IllegalTransition) {
            jobs.plant_illegal_transition();
        }
        jobs.plant(plants);
        for (id, record) in snapshot.corrupt_jobs {
            jobs.note_corrupt(id, record);
        }
        // Resources of jobs and executors this term knows; a resource on an executor it does not know was lost with
        // it (that executor left in an earlier term); a resource of a job it does not know goes at the first write.
        let (mut resources, mut lost, mut resources_dirty) = (BTreeMap::new(), BTreeMap::new(), BTreeSet::new());
        for (r, held) in snapshot.resources {
            let job = r.split('/').next().and_then(|j| JobId::parse(j).ok());
            if job.is_none_or(|j| jobs.get(&j).is_none()) {
                resources_dirty.insert(r);
                continue;
            }
            match held {
                Held::On(e) if registry.get(e).is_some() => {
                    resources.insert(r, e);
                }
                Held::On(_) => {
                    lost.insert(r.clone(), Lost::default());
                    resources_dirty.insert(r);
                }
                Held::Lost => {
                    lost.insert(r, Lost::default());
                }
                Held::Gone => {
                    resources_dirty.insert(r);
                }
            }
        }
        let expected: Vec<(TaskId, Epoch)> = jobs.recovering().map(|(id, e)| (TaskId::job_master(id), e)).collect();
        let mut masters = Workers::recover(now, Epoch(epoch.0), policy.job_masters, expected)
            .with_dispatch_window(policy.dispatch_window)
            .with_plants(plants.of_job_manager());
        if plants.has(Planted::RecoveryWithoutWait) {
            masters = masters.plant_recovery_until(now);
        }
        let mut out = Ready::default();
        let waiting = jobs.recovering().count();
        out.events.push(Event::Recovered { executors: registry.len(), jobs: jobs.len(), waiting });
        Manager {
            epoch,
            sweep_at: now + TOMBSTONE_SWEEP_INTERVAL,
            tick_at: now,
            policy,
            plants,
            rng: SplitMix64::new(seed),
            registry,
            jobs,
            masters,
            progress: BTreeMap::new(),
            resources,
            lost,
            pin_refused: BTreeMap::new(),
            resources_dirty,
            corrupt_executors: snapshot.corrupt_executors,
            corrupt_unnamed_jobs: snapshot.corrupt_unnamed_jobs,
            tombstones_written: 0,
            busy: None,
            staged: None,
            queue: VecDeque::new(),
            tick_due: false,
            sweeping: false,
            side: BTreeMap::new(),
            next_io: 1,
            ended: false,
            undurable: Vec::new(),
            out,
            unchecked_steps: 0,
        }
    }

    pub fn epoch(&self) -> LeaderEpoch {
        self.epoch
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    pub fn masters(&self) -> &Workers {
        &self.masters
    }

    /// Whether a durable operation is in progress.
    pub fn is_busy(&self) -> bool {
        self.busy.is_some()
    }

    /// How many inputs wait for it.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Everything decided since the last call, and when to be woken next.
    pub fn ready(&mut self) -> Ready {
        let mut ready = std::mem::take(&mut self.out);
        if !self.ended {
            ready.wake_at = Some(self.tick_at);
            ready.sweep_at = (!self.sweeping).then_some(self.sweep_at);
        }
        ready
    }

    fn io(&mut self) -> IoId {
        let id = IoId(self.next_io);
        self.next_io += 1;
        id
    }

    fn answer(&mut self, to: ReplyTo, a: Answer) {
        self.out.answers.push((to, a));
    }

    fn end(&mut self, why: impl Into<String>, newer: Option<LeaderEpoch>) {
        if !self.ended {
            self.ended = true;
            self.out.step_down = Some(StepDown { why: why.into(), newer });
        }
    }

    /// What `request` does, for [`crate::core::auth::authorize`], with the facts only this term knows: the name
    /// an executor id was registered under, the executor hosting the job master incarnation a job master's call
    /// names, the project of the job a job call names. `None` for requests whose handler checks them without such
    /// facts. A fact this term does not know (an id it never heard of, an incarnation that is not the job's newest)
    /// stays `None`: the request's own answer (register again, stale) harms nobody; a job it does not hold is
    /// answered as not found, to every caller alike.
    pub fn action_of(&self, request: &Request) -> Option<crate::core::auth::Action> {
        use crate::core::auth::Action;
        let owner = |id: ExecutorId| self.registry.name(id).map(str::to_owned);
        match request {
            Request::Heartbeat { id, .. } => Some(Action::Heartbeat { executor: *id, owner: owner(*id) }),
            Request::DeregisterExecutor { id } => Some(Action::DeregisterExecutor { executor: *id, owner: owner(*id) }),
            Request::ScheduleTask(s) => Some(Action::ScheduleTask {
                job: s.job.to_string(),
                host: self.job_master_host(&s.job, s.master_epoch),
            }),
            Request::GetJob { id, .. } => self.job_action(id, crate::core::auth::Role::Read),
            Request::CancelJob { id } | Request::DeleteJob { id, .. } => {
                self.job_action(id, crate::core::auth::Role::Submit)
            }
            Request::JobMaster { msg, .. } => {
                let job = JobId::parse(msg.task.as_str()).ok();
                let host = job.as_ref().and_then(|j| self.job_master_host(j, msg.worker_epoch));
                Some(Action::ReportToJobManager { job: msg.task.to_string(), host })
            }
            _ => None,
        }
    }

    /// A call on job `id` needing `need`, with the job's project (`None` for a corrupt record); `None` if the job
    /// is not held at all.
    fn job_action(&self, id: &JobId, need: crate::core::auth::Role) -> Option<crate::core::auth::Action> {
        let project = match self.jobs.get(id) {
            Some(j) => Some(j.spec().project.clone()),
            None => {
                self.jobs.corrupt(id)?;
                None
            }
        };
        Some(crate::core::auth::Action::Job { job: id.clone(), need, project })
    }

    /// The name of the executor hosting incarnation `epoch` of `job`'s job master, if that is the job's newest
    /// incarnation and it is placed on an executor this term knows.
    fn job_master_host(&self, job: &JobId, epoch: Epoch) -> Option<String> {
        let j = self.jobs.get(job).filter(|j| j.epoch() == epoch)?;
        self.registry.name(j.executor()?).map(str::to_owned)
    }

    /// Steps the manager at `now` with `input`.
    pub fn step(&mut self, now: Time, input: Input) {
        if self.ended {
            if let Input::Request(to, _) = input {
                self.answer(to, Err(Refusal::NotLeader("this master is no longer the leader; retry".into())));
            }
            return;
        }
        match input {
            Input::Tick => {
                if now >= self.tick_at {
                    self.tick_due = true;
                }
            }
            Input::SweepTombstones { wall } => {
                if !self.sweeping && now >= self.sweep_at {
                    self.sweeping = true;
                    let io = self.io();
                    self.side.insert(io, Side::Tombstones { wall, written: self.tombstones_written });
                    self.out.reads.push((io, Read::Tombstones));
                }
            }
            Input::Request(to, request) => self.request(now, to, request),
            Input::DispatchRefused { job, epoch, fatal } => {
                self.queue.push_back(Deferred::DispatchRefused { job, epoch, fatal })
            }
            Input::ExecutorUnreachable { executor } => {
                self.registry.unreachable(now, executor);
            }
        }
        self.run(now);
    }

    /// Requests that never wait are answered at once; the rest queue behind the operation in progress.
    fn request(&mut self, now: Time, to: ReplyTo, request: Request) {
        match request {
            Request::Heartbeat { id, seen, tasks, ended, draining, fenced, held } => {
                self.heartbeat(now, to, id, seen, tasks, ended, draining, fenced, held)
            }
            Request::ScheduleTask(s) => {
                let a = self.schedule(now, s);
                self.answer(to, a);
            }
            Request::ListExecutors => {
                // One pass over the resources, not one per executor.
                let mut held: BTreeMap<ExecutorId, u32> = BTreeMap::new();
                for e in self.resources.values() {
                    *held.entry(*e).or_default() += 1;
                }
                let list = self
                    .registry
                    .iter()
                    .map(|view| {
                        let used = self.registry.placer().used(view.record.id).unwrap_or(0);
                        let resources = held.get(&view.record.id).copied().unwrap_or(0);
                        ExecutorUsage { used: u32::try_from(used).unwrap_or(u32::MAX), resources, view: view.to_view() }
                    })
                    .collect();
                self.answer(to, Ok(Reply::Executors(list)));
            }
            Request::Gauges => {
                let g = self.gauges();
                self.answer(to, Ok(Reply::Gauges(g)));
            }
            // A job master's heartbeat that changes nothing durable does not wait either: its job master has a
            // deadline of its own, and an answer held behind a slow write fenced a healthy job master (swarm seed
            // 1796457366: a job storm's writes held heartbeats 300-400 ms against a 300 ms timeout).
            Request::JobMaster { msg, status, progress, last_error, wall }
                if self.heard_at_once(&msg, status.as_ref(), last_error.as_ref()) =>
            {
                self.job_master(now, to, msg, status, progress, last_error, wall)
            }
            // Nor does a read of one job the operation in progress does not touch: what it shows is durable.
            Request::GetJob { id, include_config } if self.busy.as_ref().is_some_and(|b| !touches(b, &id)) => {
                let a = self.view(&id, include_config).map(Reply::Job);
                self.answer(to, a);
            }
            other => self.queue.push_back(Deferred::Request(to, other)),
        }
    }

    /// Whether a job master's message may be answered while an operation is in progress: a plain heartbeat of the
    /// job's current incarnation, already online, claiming nothing, for a job the operation does not touch (so
    /// what it is told, a cancel included, is durable). It raises no event and writes nothing.
    fn heard_at_once(
        &self,
        msg: &crate::core::workers::Message,
        status: Option<&WorkerStatus>,
        last_error: Option<&LastError>,
    ) -> bool {
        let Some(busy) = &self.busy else { return false };
        if self.ended {
            return false;
        }
        if !matches!(status, None | Some(WorkerStatus::Running)) || self.masters.claim(msg).is_some() {
            return false;
        }
        if !self.masters.is_online(msg) {
            return false;
        }
        let Ok(id) = JobId::parse(msg.task.as_str()) else { return false };
        !touches(busy, &id)
            && self.jobs.get(&id).is_some_and(|j| {
                j.state() != JobState::Created
                    && j.phase() == (Phase::Online { epoch: msg.worker_epoch })
                    && (last_error.is_none() || j.last_error() == last_error)
            })
    }

    /// Takes queued inputs while no operation is in progress: a due pass first, then the queue in order. A staged
    /// write takes the queued inputs that may join it, then is made.
    fn run(&mut self, now: Time) {
        while self.busy.is_none() && !self.ended {
            if let Some(staged) = &self.staged {
                if self.queue.front().is_some_and(|next| self.joins(staged, next)) {
                    let next = self.queue.pop_front().expect("looked at above");
                    self.take(now, next);
                } else {
                    self.flush();
                }
                continue;
            }
            if self.tick_due {
                self.tick_due = false;
                self.tick(now);
                continue;
            }
            let Some(next) = self.queue.pop_front() else { break };
            self.take(now, next);
        }
        if let Some(staged) = self.staged.take() {
            // The term ended before the write was made: nothing of it was applied.
            for after in staged.afters {
                self.abandon(after);
            }
        }
        if self.ended {
            for d in std::mem::take(&mut self.queue) {
                if let Deferred::Request(to, _) = d {
                    self.answer(to, Err(Refusal::NotLeader("this master lost its leadership; retry".into())));
                }
            }
        }
        self.assert_invariants(now);
    }

    /// Checks the invariants after a step (debug and simulation builds): after every step while the term holds at
    /// most [`EVERY_STEP_MAX`] jobs and executors (every cluster of the swarm and the aimed scenarios; not the
    /// overload and scale workloads), and above that once every `size / INVARIANT_BUDGET` steps, so that a step's
    /// cost stays bounded as the cluster grows (a full check reads every job: checked after every step, a 550-job
    /// term of the scale workload spent a quarter of the run checking). Checking draws nothing, so how often moves
    /// no seed.
    fn assert_invariants(&mut self, now: Time) {
        if cfg!(debug_assertions) {
            let size = self.jobs.len() + self.registry.len();
            self.unchecked_steps += 1;
            if size > EVERY_STEP_MAX && (self.unchecked_steps as usize).saturating_mul(INVARIANT_BUDGET) < size {
                return;
            }
            self.unchecked_steps = 0;
            if let Err(e) = self.check_invariants() {
                use crate::core::invariants::{stop, Id, Rule, Violation};
                let detail = format!("the job manager of term {}: {e}", self.epoch.0);
                stop(Violation::new(Rule::MachineInvariant, now, detail).with([Id::LeaderEpoch(self.epoch)]));
            }
        }
    }

    fn take(&mut self, now: Time, next: Deferred) {
        match next {
            Deferred::Request(to, r) => self.durable_request(now, to, r),
            Deferred::DispatchRefused { job, epoch, fatal } => self.dispatch_refused(now, job, epoch, fatal),
            Deferred::Swept { stored, wall, written } => self.sweep(now, stored, wall, written),
        }
    }

    /// Whether queued input `next` may join the staged write: it touches no job the write touches, it cannot end
    /// the term or start a read, and the write stays within one transaction and [`BATCH_BYTES_MAX`].
    fn joins(&self, staged: &Staged, next: &Deferred) -> bool {
        let Deferred::Request(_, request) = next else { return false };
        // Each joining operation writes at most one job record (a create, a cancel, a job master's message) or none
        // (a read). The periodic pass writes alone: its write carries the liveness verdicts and the dispatches, and
        // must stay as small and quick as they make it (and a failure of it, which ends the term, refuses nothing
        // else).
        if staged.ops + 1 > self.policy.batch_max || staged.afters.iter().any(|a| matches!(a, After::Tick { .. })) {
            return false;
        }
        match request {
            Request::CreateJob { id: None, spec } => {
                // A repeat of a create answers with its job: not while that job's write is staged.
                (spec.request.is_empty() || self.jobs.by_request(&spec.request).is_none())
                    && staged.bytes + spec_bytes(spec) <= BATCH_BYTES_MAX
            }
            Request::CancelJob { id } | Request::GetJob { id, .. } => !staged.jobs.contains(id),
            // A job master's message writes its own job's record at most (its bookkeeping's events name only it).
            Request::JobMaster { msg, .. } => JobId::parse(msg.task.as_str()).is_ok_and(|j| !staged.jobs.contains(&j)),
            _ => false,
        }
    }

    /// Stages a write of `records`; `after` runs once it is taken. The write is made when nothing more can join it
    /// (by [`Manager::run`], which every input ends with).
    fn write(&mut self, records: Vec<Record>, after: After) {
        debug_assert!(self.busy.is_none(), "a write started while an operation is in progress");
        let staged = self.staged.get_or_insert_with(Staged::default);
        staged.ops += ops_of(&records);
        staged.bytes += records.iter().map(bytes_of).sum::<usize>();
        // A deletion is a write of the job's record too: if its outcome is not known, the job is re-read like any
        // other, or memory would keep a job the metastore no longer holds.
        staged.jobs.extend(records.iter().filter_map(|r| match r {
            Record::Job(j) => Some(j.id.clone()),
            Record::DeleteJob { id, .. } => Some(id.clone()),
            _ => None,
        }));
        staged.records.extend(records);
        staged.afters.push(after);
    }

    /// Makes the staged write.
    fn flush(&mut self) {
        let Some(staged) = self.staged.take() else { return };
        let io = self.io();
        self.out.write = Some((io, dedup_jobs(staged.records)));
        let durable = std::mem::take(&mut self.undurable);
        let settle = staged.jobs.into_iter().collect();
        self.busy = Some(Busy::Write { io, afters: staged.afters, settle, durable });
    }

    /// Answers the caller of an operation whose write was never made (its term ended first).
    fn abandon(&mut self, after: After) {
        match after {
            After::Register { to, .. }
            | After::Deregister { to }
            | After::Create { to, .. }
            | After::Cancel { to, .. }
            | After::Delete { to, .. }
            | After::JobMaster { to, .. } => {
                self.answer(to, Err(Refusal::NotLeader("this master lost its leadership; retry".into())))
            }
            After::Tick { .. } | After::DispatchRefused | After::Sweep { .. } => {}
        }
    }

    fn durable_request(&mut self, now: Time, to: ReplyTo, request: Request) {
        match request {
            Request::RegisterExecutor { spec } => self.register(now, to, spec),
            Request::DeregisterExecutor { id } => self.deregister(now, to, id),
            Request::CreateJob { id, spec } => self.create(to, id, spec),
            Request::GetJob { id, include_config } => {
                let a = self.view(&id, include_config).map(Reply::Job);
                self.answer(to, a);
            }
            Request::ListJobs(filter) => {
                let a = self.list(&filter);
                self.answer(to, Ok(a));
            }
            Request::CancelJob { id } => match self.jobs.cancel(now, &id) {
                Ok((_, step)) => match step.persist {
                    Some(r) => self.write(vec![Record::Job(r)], After::Cancel { to, id }),
                    None => {
                        let a = self.view(&id, false).map(Reply::Job);
                        self.answer(to, a);
                    }
                },
                Err(e) => self.answer(to, Err(Refusal::Job(e))),
            },
            Request::DeleteJob { id, wall } => match self.jobs.may_delete(&id) {
                Ok(()) => {
                    let io = self.io();
                    self.out.reads.push((io, Read::JobData(id.clone())));
                    self.busy = Some(Busy::DeleteListing { io, to, id, wall });
                }
                Err(e) => self.answer(to, Err(Refusal::Job(e))),
            },
            Request::JobMaster { msg, status, progress, last_error, wall } => {
                self.job_master(now, to, msg, status, progress, last_error, wall)
            }
            Request::Heartbeat { .. } | Request::ScheduleTask(_) | Request::ListExecutors | Request::Gauges => {
                self.request(now, to, request)
            }
        }
    }

    // -------------------------------------------------------------------------------------------------------
    // The periodic pass.
    // -------------------------------------------------------------------------------------------------------

    fn tick(&mut self, now: Time) {
        self.tick_at = now + self.policy.check_interval;
        let mut records = vec![];
        let mut dispatches = vec![];
        let mut offline = vec![];
        // Executors: every expired one goes in this same check.
        let heard: BTreeMap<ExecutorId, Time> =
            self.registry.iter().filter(|v| v.expires_at <= now).map(|v| (v.record.id, v.last_heard)).collect();
        let check = self.registry.check(now);
        // A hold ends at its own instant, not at the first check after it: the declarations it held are due then
        // (design.md §6's bound is TTL + check interval + hold; ticks that ran late during the hold must not add
        // to it, swarm seed 1796534660).
        if let (false, Some(end)) = (check.held.is_empty(), check.next_deadline) {
            self.tick_at = self.tick_at.min(end.max(now));
        }
        if check.suspicion_began {
            self.out.events.push(Event::EvictionsHeld { held: check.held.len(), at: now });
        }
        for rec in &check.offline {
            offline.push(Event::ExecutorOffline {
                id: rec.id,
                name: rec.spec.name.clone(),
                at: now,
                last_heard: heard.get(&rec.id).copied().unwrap_or(now),
                among: check.among,
            });
            records.push(Record::DeleteExecutor(rec.id));
            self.forget_resources_on(rec.id, Some(&rec.spec.name));
            // Its executor fenced itself before the TTL ran out: its job masters are gone.
            for (id, epoch, step) in self.jobs.on_executor_gone(now, rec.id, &mut self.rng) {
                self.masters.remove(&TaskId::job_master(&id));
                records.extend(step.persist.map(Record::Job));
                self.note_charge(now, &id, epoch);
            }
        }
        // Job masters: silent, never started, revoked, or not recovered.
        for ev in self.masters.tick(now) {
            match ev {
                MasterEvent::Lost { task, epoch, reason } => {
                    self.registry.task_ended(&task, epoch);
                    let Ok(id) = JobId::parse(task.as_str()) else { continue };
                    self.out.events.push(Event::JobMasterLost { job: id.clone(), epoch, reason });
                    if let JobVerdict::Applied(step) = self.jobs.on_lost(now, &id, epoch, None, &mut self.rng) {
                        records.extend(step.persist.map(Record::Job));
                        self.note_charge(now, &id, epoch);
                    }
                }
                MasterEvent::Recovered { adopted, lost } => {
                    self.out.events.push(Event::JobMastersRecovered { adopted, lost })
                }
                _ => {}
            }
        }
        let t = self.jobs.tick(now);
        records.extend(t.persist.into_iter().map(Record::Job));
        for (id, e) in t.revoke {
            self.masters.revoke(&TaskId::job_master(&id), e);
        }
        if !self.registry.suspecting() {
            self.schedule_job_masters(now, &mut records, &mut dispatches);
        }
        for resource in std::mem::take(&mut self.resources_dirty) {
            // A loss not yet overcome comes first: a new term must tell it too.
            let held = match (self.lost.contains_key(&resource), self.resources.get(&resource)) {
                (true, _) => Held::Lost,
                (false, Some(e)) => Held::On(*e),
                (false, None) => Held::Gone,
            };
            records.push(Record::Resource { resource, held });
        }
        if self.policy.report_capacity {
            let view = self.capacity(now);
            self.out.events.push(Event::Capacity { at: now, view });
        }
        if records.is_empty() && dispatches.is_empty() {
            self.out.events.extend(offline);
            return;
        }
        self.write(records, After::Tick { dispatches, offline });
    }

    /// The slots of the executors online in this term.
    fn online_capacity(&self) -> u64 {
        self.registry
            .iter()
            .filter(|v| v.status == ExecutorStatus::Online)
            .map(|v| u64::from(v.record.spec.capacity))
            .sum()
    }

    /// For a job with selectors: how many online executors they admit, their slots, and the slots live job masters
    /// hold there (`held_on`, by executor). None for a job without selectors (the cluster-wide share is its rule).
    fn selected_share(&self, selectors: &[Selector], held_on: &BTreeMap<ExecutorId, u64>) -> Option<(usize, u64, u64)> {
        if selectors.is_empty() {
            return None;
        }
        let (mut admitted, mut slots, mut held) = (0, 0u64, 0u64);
        for v in self.registry.iter().filter(|v| v.status == ExecutorStatus::Online) {
            if selectors.iter().all(|s| s.matches(&v.record.spec.labels)) {
                admitted += 1;
                slots += u64::from(v.record.spec.capacity);
                held += held_on.get(&v.record.id).copied().unwrap_or(0);
            }
        }
        Some((admitted, slots, held))
    }

    /// Every job allowed to start now, if an executor fits it.
    fn schedule_job_masters(&mut self, now: Time, records: &mut Vec<Record>, dispatches: &mut Vec<Dispatch>) {
        let capacity = self.online_capacity();
        // The job masters' slots are summed once, and again after each placement: summed for every waiting job,
        // they would make this pass quadratic in the jobs.
        let mut held = self.jobs.job_master_slots();
        let mut held_on = self.jobs.job_master_slots_by_executor();
        for id in self.jobs.startable(now) {
            let Some(job) = self.jobs.get(&id) else { continue };
            let spec = job.spec().clone();
            if !self.jobs.job_master_fits_beside(held, spec.cost, capacity) {
                self.out.events.push(Event::Rejected(Rejection::JobMasterShare));
                self.jobs.note_unplaced(
                    &id,
                    format!(
                        "waiting for a job-master slot: job masters may hold half of the {capacity} online slots, and \
                         hold {held}"
                    ),
                );
                continue;
            }
            // The same share among the executors the job's selectors admit: its workers run only there, so job
            // masters filling them would leave its workers no slot for ever (swarm seed 1796461625: two jobs of
            // zone a, whose one executor has 2 slots, each ran its job master there and neither placed a worker).
            if let Some((admitted, slots, held_there)) = self.selected_share(&spec.selectors, &held_on) {
                if !self.jobs.job_master_fits_beside(held_there, spec.cost, slots) {
                    self.out.events.push(Event::Rejected(Rejection::JobMasterShare));
                    self.jobs.note_unplaced(
                        &id,
                        format!(
                            "waiting for a job-master slot among the {admitted} executors its selectors admit: job \
                             masters may hold half of their {slots} slots, and hold {held_there}"
                        ),
                    );
                    continue;
                }
            }
            let task = TaskId::job_master(&id);
            let pins: [ResourcePin; 0] = [];
            let req = PlacementRequest {
                task: &task,
                epoch: Some(self.jobs.next_epoch()),
                cost: spec.cost.max(1),
                selectors: &spec.selectors,
                resources: &pins,
            };
            let placed = match self.registry.place(now, &req, &mut self.rng) {
                Ok(p) => p,
                Err(e) => {
                    self.out.events.push(Event::Rejected(Rejection::from(&e)));
                    self.jobs.note_unplaced(&id, e.to_string());
                    continue;
                }
            };
            let started = self.registry.get(placed.executor).and_then(|view| {
                // The bookkeeping may still hold an incarnation that may be alive: it has to be lost first. Asked
                // before the job moves, so that a refusal leaves the job waiting as it was (asked after, the job
                // would be started in memory with an incarnation never written nor dispatched).
                self.masters.admits(now, &task, self.jobs.next_epoch()).ok()?;
                let (e, step) = self.jobs.start(now, &id, placed.executor).ok()?;
                self.masters.on_dispatched(now, &task, e).ok()?;
                Some((view, e, step))
            });
            held = self.jobs.job_master_slots();
            held_on = self.jobs.job_master_slots_by_executor();
            let Some((view, e, step)) = started else {
                self.registry.placer_mut().release(&task);
                continue;
            };
            records.extend(step.persist.map(Record::Job));
            if let Some(job) = self.jobs.get(&id) {
                let backoff = job.backoff();
                self.undurable.push(Event::JobMasterStarted {
                    job: id.clone(),
                    epoch: e,
                    restarts: job.restarts(),
                    failures: backoff.failures(),
                    delay: backoff.delay(),
                    allowed: backoff.not_before(),
                    at: now,
                });
            }
            // The incarnation's fence: its job master guards every write of its own on this value.
            records.push(Record::JobMasterFence(id.clone(), e));
            dispatches.push(Dispatch {
                job: id,
                epoch: e,
                executor: placed.executor,
                address: view.record.spec.address.clone(),
                spec,
                leader_epoch: self.epoch,
            });
        }
        if !dispatches.is_empty() {
            records.push(Record::JobNextEpoch(self.jobs.next_epoch()));
        }
    }

    fn capacity(&self, now: Time) -> CapacityView {
        let placer = self.registry.placer();
        let held_on = self.jobs.job_master_slots_by_executor();
        let schedulable: Vec<crate::core::registry::ExecutorRef<'_>> =
            self.registry.iter().filter(|v| placer.load(v.record.id).is_some()).collect();
        let waiting = self
            .jobs
            .iter()
            .filter(|j| j.phase() == Phase::Waiting && !j.state().is_terminal())
            .map(|j| {
                let selectors = &j.spec().selectors;
                let admits = (!selectors.is_empty()).then(|| {
                    schedulable
                        .iter()
                        .filter(|v| selectors.iter().all(|s| s.matches(&v.record.spec.labels)))
                        .map(|v| v.record.id)
                        .collect()
                });
                WaitingJob {
                    job: j.id().clone(),
                    cost: j.spec().cost.max(1),
                    allowed: j.backoff().not_before(),
                    // What the pass asks before it starts a job master.
                    startable: self.masters.admits(now, &TaskId::job_master(j.id()), self.jobs.next_epoch()).is_ok(),
                    admits,
                    admitted_share: self
                        .selected_share(selectors, &held_on)
                        .map(|(_, slots, held)| (held, self.jobs.job_master_cap(slots))),
                }
            })
            .collect();
        let job_masters = JobMasterShare {
            held: self.jobs.job_master_slots(),
            cap: self.jobs.job_master_cap(self.online_capacity()),
        };
        let executors = self
            .registry
            .iter()
            .filter_map(|v| {
                let (reported, reserved) = placer.load(v.record.id)?;
                Some((v.record.id, v.record.spec.capacity, reported, reserved))
            })
            .collect();
        let reservations = placer
            .reservations()
            .map(|r| (r.task.clone(), r.executor, r.epoch.unwrap_or(Epoch::NONE), r.cost, r.placed_at))
            .collect();
        CapacityView { executors, reservations, suspecting: self.registry.suspecting(), job_masters, waiting }
    }

    // -------------------------------------------------------------------------------------------------------
    // Executors.
    // -------------------------------------------------------------------------------------------------------

    fn register(&mut self, now: Time, to: ReplyTo, spec: crate::core::registry::ExecutorSpec) {
        if let Err(e) = Registry::validate_spec(&spec) {
            return self.answer(to, Err(Refusal::Registry(e)));
        }
        // A repeat of an admitted registration is answered with the id it got, so a retried call leaves no ghost.
        if let Some(record) = self.registry.repeat(now, &spec) {
            self.out.events.push(Event::Registered { id: record.id, name: record.spec.name.clone(), repeated: true });
            return self.answer(to, Ok(Reply::Registered { record, epoch: self.epoch }));
        }
        match self.registry.register(now, spec) {
            Ok(record) => {
                let records = vec![Record::Executor(record.clone()), Record::ExecutorNextId(self.registry.next_id())];
                self.write(records, After::Register { to, record });
            }
            Err(e) => self.answer(to, Err(Refusal::Registry(e))),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn heartbeat(
        &mut self,
        now: Time,
        to: ReplyTo,
        id: ExecutorId,
        seen: LeaderEpoch,
        tasks: Vec<crate::core::registry::ReportedTask>,
        ended: Vec<crate::core::registry::EndedTask>,
        draining: bool,
        fenced: bool,
        held: Vec<JobId>,
    ) {
        // A claim of a newer leader epoch deposes this leader only if the metastore confirms it was issued.
        if seen > self.epoch {
            let io = self.io();
            self.side.insert(io, Side::ExecutorClaim { to, seen });
            self.out.reads.push((io, Read::LeaderEpoch));
            return;
        }
        let previous = self.registry.last_heard(id);
        if !self.lost.is_empty() && self.registry.get(id).is_some() {
            self.losses_overcome(&tasks);
        }
        let a = match self.registry.heartbeat_reporting(now, id, tasks, &ended, fenced) {
            Ok(()) => {
                if let Some(previous) = previous {
                    self.out.events.push(Event::HeartbeatGap { gap: now.saturating_since(previous) });
                }
                if draining && self.registry.drain(id) == Ok(true) {
                    self.out.events.push(Event::Draining { id });
                    // Leaving: what it holds goes with it, and its workers start afresh elsewhere (their job types
                    // told).
                    let name = self.registry.name(id).map(str::to_owned);
                    self.forget_resources_on(id, name.as_deref());
                }
                // Data kept of a job this term does not know is garbage: the job was deleted (a serving leader
                // knows every job there is, recovered from the metastore).
                let gone = if self.plants.has(Planted::JobDataNotCollected) {
                    vec![]
                } else {
                    held.into_iter().filter(|j| self.jobs.get(j).is_none()).collect()
                };
                Ok(Reply::Heartbeat { known: true, epoch: self.epoch, gone })
            }
            Err(RegistryError::DeclaredOffline { .. } | RegistryError::Unknown { .. }) => {
                Ok(Reply::Heartbeat { known: false, epoch: self.epoch, gone: vec![] })
            }
            Err(e) => Err(Refusal::Registry(e)),
        };
        self.answer(to, a);
    }

    /// Executor `id` (named `holder` when known) leaves (declared offline, deregistered, draining): the resources it
    /// holds are lost with it.
    fn forget_resources_on(&mut self, id: ExecutorId, holder: Option<&str>) {
        let gone: Vec<String> = self.resources.iter().filter(|(_, e)| **e == id).map(|(r, _)| r.clone()).collect();
        for r in gone {
            self.resources.remove(&r);
            self.lost.insert(r.clone(), Lost { holder: holder.map(str::to_owned), placed: None, waited_out: false });
            self.resources_dirty.insert(r);
        }
    }

    /// A placement refused `e` because the executor holding a resource the worker is pinned to cannot take it (full,
    /// or not serving): the first such refusal starts the resource's pin wait; once the wait has passed, the pin is
    /// given up: the resource counts as lost (its job type told, as for an executor that left), and `true` says to
    /// place the worker again. A pin must not hold a worker for ever: an executor whose slots job masters hold (its
    /// own among them) would never take it (swarm seed 1797300267: an exec job's worker pinned to a 2-slot executor
    /// that two exec job masters filled, one of them its own, waiting for good).
    fn pin_waited_out(&mut self, now: Time, e: &PlacementError) -> bool {
        let (resource, executor) = match e {
            PlacementError::PinnedFull { resource, executor, .. }
            | PlacementError::PinnedUnavailable { resource, executor } => (resource, *executor),
            _ => return false,
        };
        let since = *self.pin_refused.entry(resource.clone()).or_insert(now);
        if now.saturating_since(since) < self.policy.pin_wait || self.resources.get(resource) != Some(&executor) {
            return false;
        }
        self.pin_refused.remove(resource);
        self.resources.remove(resource);
        let holder = self.registry.name(executor).map(str::to_owned);
        self.lost.insert(resource.clone(), Lost { holder, placed: None, waited_out: true });
        self.resources_dirty.insert(resource.clone());
        true
    }

    /// Executor reports of running workers: a worker running at or past the incarnation placed after its resources
    /// were lost has overcome the loss (its job type let it start afresh).
    fn losses_overcome(&mut self, tasks: &[crate::core::registry::ReportedTask]) {
        for t in tasks.iter().filter(|t| t.task.is_worker()) {
            let prefix = format!("{}/", t.task);
            let over: Vec<String> = self
                .lost
                .range(prefix.clone()..)
                .take_while(|(r, _)| r.starts_with(&prefix))
                .filter(|(_, l)| l.placed.is_some_and(|e| t.epoch >= e))
                .map(|(r, _)| r.clone())
                .collect();
            for r in over {
                self.lost.remove(&r);
                self.resources_dirty.insert(r);
            }
        }
    }

    fn deregister(&mut self, now: Time, to: ReplyTo, id: ExecutorId) {
        let Some(record) = self.registry.remove(id) else {
            return self.answer(to, Err(Refusal::Registry(RegistryError::Unknown { id })));
        };
        self.forget_resources_on(id, Some(&record.spec.name));
        let mut records = vec![];
        for (job, epoch, step) in self.jobs.on_executor_gone(now, id, &mut self.rng) {
            self.masters.remove(&TaskId::job_master(&job));
            records.extend(step.persist.map(Record::Job));
            self.note_charge(now, &job, epoch);
        }
        records.push(Record::DeleteExecutor(id));
        self.tick_at = self.tick_at.min(now);
        self.write(records, After::Deregister { to });
    }

    // -------------------------------------------------------------------------------------------------------
    // Jobs.
    // -------------------------------------------------------------------------------------------------------

    fn create(&mut self, to: ReplyTo, id: Option<JobId>, spec: crate::core::job::JobSpec) {
        // A repeat of a create that was applied (its reply lost or late) gets the job it created; the same token
        // on another request is refused, saying what differs.
        if !spec.request.is_empty() {
            let repeat = self.jobs.by_request(&spec.request).map(|j| {
                let mut differs = vec![];
                if id.as_ref().is_some_and(|id| id != j.id()) {
                    differs.push("job.id");
                }
                differs.extend(j.spec().differences(&spec));
                if differs.is_empty() {
                    self.view(j.id(), false).map(Reply::Job)
                } else {
                    Err(Refusal::RequestIdReused(format!(
                        "request_id {} created job {} with another request: this one differs in {}; a repeat must be \
                         the same request (use a new request_id for another job)",
                        crate::core::text::quote(&spec.request),
                        j.id(),
                        differs.join(", ")
                    )))
                }
            });
            if let Some(a) = repeat {
                return self.answer(to, a);
            }
        }
        match id {
            // A deleted job's create token stays behind: a delayed repeat of that create must not bring it back.
            Some(id) => {
                if let Some(refusal) = self.refuse_create(&id) {
                    return self.answer(to, Err(refusal));
                }
                let mut creates = vec![self.read_tombstone(to, id, spec)];
                self.join_tombstone_reads(&mut creates);
                self.busy = Some(Busy::CreateTombstones { creates });
            }
            None => {
                let id = self.generate_id();
                self.create_now(to, id, spec, false);
            }
        }
    }

    fn read_tombstone(&mut self, to: ReplyTo, id: JobId, spec: crate::core::job::JobSpec) -> PendingCreate {
        let io = self.io();
        self.out.reads.push((io, Read::Tombstone(id.clone())));
        PendingCreate { io, to, id, spec, read: None }
    }

    /// Takes the queued creates with ids that may read their tombstones beside `creates` (group commit): other
    /// ids, other request tokens, none a repeat of a create already held or refused without a read, and, written
    /// together, within one transaction (a create over a tombstone deletes it too: two operations) and
    /// [`BATCH_BYTES_MAX`].
    fn join_tombstone_reads(&mut self, creates: &mut Vec<PendingCreate>) {
        let mut bytes: usize = creates.iter().map(|c| spec_bytes(&c.spec)).sum();
        while (creates.len() + 1) * 2 <= self.policy.batch_max {
            let Some(Deferred::Request(_, Request::CreateJob { id: Some(id), spec })) = self.queue.front() else {
                break;
            };
            let token = &spec.request;
            let joins = self.refuse_create(id).is_none()
                && creates.iter().all(|c| &c.id != id && (token.is_empty() || &c.spec.request != token))
                && (token.is_empty() || self.jobs.by_request(token).is_none())
                && bytes + spec_bytes(spec) <= BATCH_BYTES_MAX;
            if !joins {
                break;
            }
            bytes += spec_bytes(spec);
            let Some(Deferred::Request(to, Request::CreateJob { id: Some(id), spec })) = self.queue.pop_front() else {
                unreachable!("looked at above")
            };
            creates.push(self.read_tombstone(to, id, spec));
        }
    }

    /// A refusal that needs no read: the id is taken.
    fn refuse_create(&self, id: &JobId) -> Option<Refusal> {
        self.jobs.may_create(id).err().map(Refusal::Job)
    }

    fn create_now(&mut self, to: ReplyTo, id: JobId, spec: crate::core::job::JobSpec, tombstone: bool) {
        match self.jobs.create(id.clone(), spec) {
            Ok(record) => {
                let mut records = vec![Record::Job(record)];
                if tombstone {
                    self.tombstones_written += 1;
                    records.push(Record::DeleteTombstone(id.clone()));
                }
                self.write(records, After::Create { to, id, include_config: false });
            }
            Err(e) => self.answer(to, Err(Refusal::Job(e))),
        }
    }

    /// A fresh job id, unique among the jobs this leader knows (ids of deleted jobs may come back, as documented).
    fn generate_id(&mut self) -> JobId {
        loop {
            let text = format!("job-{:012x}", self.rng.next_u64() & 0xffff_ffff_ffff);
            if let Ok(id) = JobId::parse(&text) {
                if self.jobs.get(&id).is_none() && self.jobs.corrupt(&id).is_none() {
                    return id;
                }
            }
        }
    }

    fn view(&self, id: &JobId, include_config: bool) -> Result<JobView, Refusal> {
        if let Some(record) = self.jobs.corrupt(id) {
            return Ok(JobView::Corrupt { id: id.clone(), record: record.clone() });
        }
        self.jobs
            .get(id)
            .map(|j| JobView::Job {
                job: Box::new(j.clone()),
                progress: self.progress.get(id).cloned(),
                include_config,
                resources: self.resources_of(id),
            })
            .ok_or_else(|| Refusal::Job(JobError::NotFound { id: id.clone() }))
    }

    /// Where job `id`'s workers' local resources live: the notes under `<job>/`, in key order (worker, then name).
    fn resources_of(&self, id: &JobId) -> Vec<ResourcePlace> {
        let prefix = format!("{id}/");
        self.resources
            .range(prefix.clone()..)
            .take_while(|(r, _)| r.starts_with(&prefix))
            .filter_map(|(r, e)| {
                let (worker, name) = r[prefix.len()..].split_once('/')?;
                Some(ResourcePlace {
                    worker: worker.to_owned(),
                    name: name.to_owned(),
                    executor: *e,
                    executor_name: self.registry.name(*e).map(str::to_owned),
                })
            })
            .collect()
    }

    fn list(&self, f: &JobFilter) -> Reply {
        // Readable jobs and corrupt records, merged in id order.
        // Both start after the previous page's last id: a page costs its own size, not the jobs before it.
        let mut readable = self.jobs.iter_after(f.after.as_ref()).peekable();
        let mut corrupt = self.jobs.corrupt_jobs_after(f.after.as_ref()).peekable();
        let mut jobs = vec![];
        let mut more = false;
        loop {
            let take_corrupt = match (readable.peek(), corrupt.peek()) {
                (None, None) => break,
                (Some(j), Some((id, _))) => *id < j.id(),
                (None, Some(_)) => true,
                (Some(_), None) => false,
            };
            let (id, keep) = if take_corrupt {
                let Some((id, _)) = corrupt.next() else { break };
                let keep = f.job_type.is_empty() && matches!(f.state, None | Some(StateFilter::Corrupt));
                (id, keep && f.readable.admits(None))
            } else {
                let Some(j) = readable.next() else { break };
                let keep = (f.job_type.is_empty() || j.spec().job_type == f.job_type)
                    && f.state.is_none_or(|s| s == StateFilter::State(j.state()))
                    && f.readable.admits(Some(&j.spec().project));
                (j.id(), keep)
            };
            if !keep {
                continue;
            }
            if jobs.len() == f.size {
                more = true;
                break;
            }
            if let Ok(v) = self.view(id, f.include_config) {
                jobs.push(v);
            }
        }
        let next = if more { jobs.last().map(|j| j.id().clone()) } else { None };
        Reply::Jobs { jobs, next }
    }

    // -------------------------------------------------------------------------------------------------------
    // Job masters.
    // -------------------------------------------------------------------------------------------------------

    fn schedule(&mut self, now: Time, s: Schedule) -> Answer {
        // Only the current, online incarnation of the job's job master may place its workers.
        let Some(j) = self.jobs.get(&s.job) else {
            self.out.events.push(Event::Rejected(Rejection::StaleJobMaster));
            return Err(Refusal::Job(JobError::NotFound { id: s.job }));
        };
        let online = self.masters.get(&TaskId::job_master(&s.job)).is_some_and(|e| e.epoch == s.master_epoch);
        let current = !j.state().is_terminal() && j.epoch() == s.master_epoch && online;
        if !current && !self.plants.has(Planted::StaleJobMasterPlaces) {
            self.out.events.push(Event::Rejected(Rejection::StaleJobMaster));
            let why = if j.state().is_terminal() {
                format!("the job is {}", j.state())
            } else if j.epoch() != s.master_epoch {
                format!("its current job master is epoch {}", j.epoch())
            } else {
                "that job master is not online".to_owned()
            };
            return Err(Refusal::StaleJobMaster(format!(
                "the job master of job {} at epoch {} may not place workers: {why}",
                s.job, s.master_epoch.0
            )));
        }
        // A job whose cancel was acknowledged starts nothing new (design.md §5 rule 5): its job master, until the
        // stop reaches it, may not place a worker (swarm seed 1796502674: a worker placed 1.7 s after the cancel was
        // acknowledged started once its job master had stopped).
        if j.state() == JobState::Canceling && !self.plants.has(Planted::StaleJobMasterPlaces) {
            self.out.events.push(Event::Rejected(Rejection::StaleJobMaster));
            return Err(Refusal::Job(JobError::PlacesNoWorkers { id: s.job, state: j.state() }));
        }
        // A worker runs where its job may run: the job's selectors, and the job master's own for this worker.
        let mut selectors = j.spec().selectors.clone();
        if self.plants.has(Planted::WorkerSelectorsDropped) {
            selectors.clear();
        }
        selectors.extend(s.selectors.iter().cloned());
        // Resources of another job are not this job master's to name.
        let prefix = format!("{}/", s.job);
        if let Some(r) = s.resources.iter().find(|r| !r.resource.starts_with(&prefix)) {
            let message = format!("resource {:?} is not job {}'s", r.resource, s.job);
            return Err(Refusal::InvalidArgument { field: "resources", message });
        }
        // A resource that lives somewhere pins the worker there; a pin the executor could not honour for the pin
        // wait is given up (the resource lost), and the worker placed again without it.
        let (placed, pins) = loop {
            let pins: Vec<ResourcePin> = s
                .resources
                .iter()
                .map(|r| ResourcePin {
                    resource: r.resource.clone(),
                    executor: if self.plants.has(Planted::WorkerPlacedAwayFromResource) {
                        None
                    } else {
                        self.resources.get(&r.resource).copied()
                    },
                })
                .collect();
            let request = PlacementRequest {
                task: &s.task,
                epoch: s.epoch,
                cost: s.cost,
                selectors: &selectors,
                resources: &pins,
            };
            match self.registry.place(now, &request, &mut self.rng) {
                Ok(p) => break (p, pins),
                Err(e) => {
                    if self.pin_waited_out(now, &e) {
                        continue;
                    }
                    self.out.events.push(Event::Rejected(Rejection::from(&e)));
                    return Err(Refusal::Placement(e));
                }
            }
        };
        let Some((name, address)) =
            self.registry.get(placed.executor).map(|v| (v.record.spec.name.clone(), v.record.spec.address.clone()))
        else {
            // The placer only places on registered executors.
            return Err(Refusal::NotLeader("placed on an executor that is not registered; retry".into()));
        };
        let mut lost = vec![];
        for pin in pins {
            self.pin_refused.remove(&pin.resource);
            if let Some(l) = self.lost.get_mut(&pin.resource) {
                // Told with every placement until an incarnation placed after the loss is seen running.
                if let Some(e) = s.epoch {
                    l.placed = Some(l.placed.map_or(e, |p| p.min(e)));
                }
                lost.push(LostResource {
                    resource: pin.resource.clone(),
                    holder: l.holder.clone(),
                    waited_out: l.waited_out,
                });
            }
            if self.resources.insert(pin.resource.clone(), placed.executor) != Some(placed.executor) {
                self.resources_dirty.insert(pin.resource);
            }
        }
        self.out.events.push(Event::WorkerPlaced { job: s.job.clone(), task: s.task.clone() });
        Ok(Reply::Placed { executor: placed.executor, name, address, leader_epoch: self.epoch, lost })
    }

    // why: the fields of `Request::JobMaster`, each used on its own path; a struct for them would only be unpacked.
    #[allow(clippy::too_many_arguments)]
    fn job_master(
        &mut self,
        now: Time,
        to: ReplyTo,
        msg: crate::core::workers::Message,
        status: Option<WorkerStatus>,
        progress: String,
        last_error: Option<LastError>,
        wall: WallTime,
    ) {
        let job = match JobId::parse(msg.task.as_str()) {
            Ok(j) => j,
            Err(e) => {
                return self.answer(to, Err(Refusal::InvalidArgument { field: "worker_id", message: e.to_string() }))
            }
        };
        // A claim that someone newer exists is judged against the metastore before anything changes.
        if let Some(claim) = self.masters.claim(&msg) {
            let io = self.io();
            self.side.insert(io, Side::JobMasterClaim { to, claim });
            self.out.reads.push((io, Read::LeaderEpoch));
            return;
        }
        let (reply, events) = match &status {
            Some(s) => self.masters.on_status(now, &msg, s.clone()),
            None => self.masters.on_heartbeat(now, &msg),
        };
        let outcome_of = |status: &WorkerStatus| match status {
            WorkerStatus::Finished => Some(ExitOutcome::Finished),
            WorkerStatus::Canceled => Some(ExitOutcome::Canceled),
            WorkerStatus::Failed { message, retryable: false } => {
                Some(ExitOutcome::Failed { message: message.clone() })
            }
            // Its own path (the backoff), above and below.
            WorkerStatus::Failed { retryable: true, .. } => None,
            WorkerStatus::Running | WorkerStatus::Stopped => None,
        };
        // A job master's own retryable failure, as its job's last error: at the leader's wall time.
        let failure_heard = |message: String| LastError { source: job.to_string(), message, retryable: true, at: wall };
        let mut records = vec![];
        let (mut online, mut exited) = (false, false);
        let mut exit = None;
        for ev in events {
            // An incarnation given up as lost holds no slot the leader counts any more. One that said it exited
            // still does until its executor reports it ended (or its reservation's window closes): a job master
            // says so before its task stops, and placing on that slot meanwhile is refused by a full executor
            // (swarm seed 1796448458: a job master exited 1.1 s before its task stopped; the job placed on its slot
            // was refused and restarted later, work no fault explains).
            if let MasterEvent::Lost { task, epoch, .. } = &ev {
                self.registry.task_ended(task, *epoch);
            }
            let v = match ev {
                MasterEvent::Online { epoch, .. } => {
                    online = true;
                    self.jobs.on_online(now, &job, epoch)
                }
                // Drained by its executor after its last action: it runs nowhere now, start it again.
                MasterEvent::Exited { epoch, status: WorkerStatus::Stopped, .. } => {
                    exit = Some(epoch);
                    self.jobs.on_stopped(now, &job, epoch)
                }
                // Failed, and running it again may help: the job's backoff decides when (as for a loss).
                MasterEvent::Exited { epoch, status: WorkerStatus::Failed { message, retryable: true }, .. } => {
                    exited = true;
                    exit = Some(epoch);
                    let error = failure_heard(message);
                    let v = self.jobs.on_failed_retryably(now, &job, epoch, error, &mut self.rng);
                    if matches!(v, JobVerdict::Applied(_)) {
                        self.note_charge(now, &job, epoch);
                    }
                    v
                }
                MasterEvent::Exited { epoch, status, .. } => {
                    let Some(outcome) = outcome_of(&status) else { continue };
                    exited = true;
                    exit = Some(epoch);
                    self.jobs.on_exit(now, &job, epoch, outcome)
                }
                MasterEvent::Recovered { adopted, lost } => {
                    self.out.events.push(Event::JobMastersRecovered { adopted, lost });
                    continue;
                }
                MasterEvent::Lost { task, epoch, .. } => match JobId::parse(task.as_str()) {
                    Ok(j) => {
                        let v = self.jobs.on_lost(now, &j, epoch, None, &mut self.rng);
                        if matches!(v, JobVerdict::Applied(_)) {
                            self.note_charge(now, &j, epoch);
                        }
                        v
                    }
                    Err(_) => continue,
                },
                MasterEvent::Superseded { .. } => continue,
            };
            if let JobVerdict::Applied(step) = v {
                records.extend(step.persist.map(Record::Job));
            }
        }
        // The bookkeeping can be ahead of the job: when the write of an earlier transition failed, the job was
        // reloaded from the metastore but the bookkeeping kept the incarnation online (or exited), so a repeat
        // raises no event. An accepted message of the current incarnation re-applies what the job missed.
        let current = self.jobs.get(&job).filter(|j| j.epoch() == msg.worker_epoch && !j.state().is_terminal());
        if let (WorkerVerdict::Accepted, Some(j)) = (reply.verdict, current) {
            let missed = match &status {
                Some(WorkerStatus::Failed { message, retryable: true }) if !exited => {
                    let error = failure_heard(message.clone());
                    let v = self.jobs.on_failed_retryably(now, &job, msg.worker_epoch, error, &mut self.rng);
                    if matches!(v, JobVerdict::Applied(_)) {
                        self.note_charge(now, &job, msg.worker_epoch);
                    }
                    Some(v)
                }
                Some(s) if !exited => outcome_of(s).map(|o| self.jobs.on_exit(now, &job, msg.worker_epoch, o)),
                _ if !online && j.state() == JobState::Created => {
                    Some(self.jobs.on_online(now, &job, msg.worker_epoch))
                }
                _ => None,
            };
            if let Some(JobVerdict::Applied(step)) = missed {
                records.extend(step.persist.map(Record::Job));
            }
        }
        // The job no longer names the incarnation the bookkeeping accepted: a settling read brought back a record
        // older than the start of that incarnation (a write of this term that landed after the read, which settled
        // a later write). The job waits to start again, and this incarnation, heard again and again, would never be
        // lost: the job would wait for ever and its job master could place no worker. It is told to stop, as a job
        // master that ignored its cancel is: revoked, it fences itself and is lost after its TTL, and the job starts
        // again (until then the bookkeeping keeps the job from starting beside it).
        // Only the incarnation the bookkeeping holds as current: an older one is the fence's to answer (it is, unless
        // the fence's guard is switched off, and then this must not hide it).
        let current = self.masters.get(&msg.task).is_some_and(|e| e.epoch == msg.worker_epoch);
        let unnamed = current && self.jobs.get(&job).is_some_and(|j| j.phase().live_epoch() != Some(msg.worker_epoch));
        let ending = status.as_ref().is_some_and(WorkerStatus::is_terminal);
        let reply = if reply.verdict == WorkerVerdict::Accepted && unnamed && !ending {
            self.masters.revoke(&msg.task, msg.worker_epoch);
            crate::core::workers::Reply { verdict: WorkerVerdict::StaleWorker, ..reply }
        } else {
            reply
        };
        // The last error its job got over: kept with the job, for users to see while it restarts.
        if let (WorkerVerdict::Accepted, Some(e)) = (reply.verdict, last_error) {
            if let JobVerdict::Applied(crate::core::job::Step { persist: Some(record), .. }) =
                self.jobs.on_last_error(now, &job, msg.worker_epoch, e)
            {
                // It carries every change made above: one write of the job, never two of one key.
                records.retain(|r| !matches!(r, Record::Job(j) if j.id == job));
                records.push(Record::Job(record));
            }
        }
        let cancel = self.jobs.wants_cancel(&job, msg.worker_epoch);
        if reply.verdict == WorkerVerdict::Accepted && !progress.is_empty() && self.jobs.get(&job).is_some() {
            self.progress.insert(job.clone(), progress);
        }
        if records.is_empty() {
            return self.answer(to, Ok(Reply::JobMaster { reply, cancel }));
        }
        self.write(records, After::JobMaster { to, task: msg.task, reply, cancel, exit });
    }

    /// Incarnation `lost` of job `id` was just given up (its loss applied at `now`): if that charged the job's
    /// backoff (it waits to start again, or it gave up and failed), the charge is reported once its write is taken.
    /// A loss that completed a cancel, or failed the job for a refused configuration, charges nothing.
    fn note_charge(&mut self, now: Time, id: &JobId, lost: Epoch) {
        let Some(job) = self.jobs.get(id) else { return };
        let backoff = job.backoff();
        let charged = match (job.phase(), job.failure()) {
            (Phase::Waiting, _) => backoff.not_before().is_some(),
            (_, Some(f)) => f.reason == FailureReason::BackoffExhausted,
            _ => false,
        };
        if charged {
            self.undurable.push(Event::BackoffCharged {
                job: id.clone(),
                lost,
                failures: backoff.failures(),
                delay: backoff.delay(),
                allowed: backoff.not_before(),
                at: now,
            });
        }
    }

    /// A job master's dispatch was refused: it certainly does not run. A refused configuration fails the job.
    fn dispatch_refused(&mut self, now: Time, job: JobId, epoch: Epoch, fatal: Option<String>) {
        let task = TaskId::job_master(&job);
        self.out.events.push(Event::DispatchRefused { job: job.clone(), epoch });
        self.masters.on_dispatch_failed(&task, epoch);
        self.registry.task_ended(&task, epoch);
        self.tick_at = self.tick_at.min(now);
        let JobVerdict::Applied(step) = self.jobs.on_lost(now, &job, epoch, fatal, &mut self.rng) else { return };
        self.note_charge(now, &job, epoch);
        let Some(record) = step.persist else { return };
        self.write(vec![Record::Job(record)], After::DispatchRefused);
    }

    // -------------------------------------------------------------------------------------------------------
    // Tombstones.
    // -------------------------------------------------------------------------------------------------------

    fn sweep(&mut self, now: Time, listed: Vec<(JobId, Option<WallTime>, String)>, wall: WallTime, written: u64) {
        self.sweeping = false;
        self.sweep_at = now + TOMBSTONE_SWEEP_INTERVAL;
        // A delete or create wrote a tombstone after the listing: the listing is stale, look again soon.
        if written != self.tombstones_written {
            self.sweep_at = now + TOMBSTONE_SWEEP_AGAIN;
            return;
        }
        let stored: Vec<(JobId, Option<WallTime>)> = listed.iter().map(|(id, at, _)| (id.clone(), *at)).collect();
        let retention = Retention {
            keep_for: self.policy.tombstone_retention,
            max: TOMBSTONES_MAX,
            batch_max: self.policy.batch_max,
        };
        let sweep = tombstone::sweep(wall, &stored, &retention);
        if sweep.more {
            self.sweep_at = now + TOMBSTONE_SWEEP_AGAIN;
        }
        if sweep.collect.is_empty() && sweep.stamp.is_empty() {
            return;
        }
        let tokens: BTreeMap<&JobId, &String> = listed.iter().map(|(id, _, t)| (id, t)).collect();
        let mut records: Vec<Record> = sweep.collect.iter().cloned().map(Record::DeleteTombstone).collect();
        for id in &sweep.stamp {
            let request = tokens.get(id).map(|t| (*t).clone()).unwrap_or_default();
            records.push(Record::Tombstone { id: id.clone(), request, deleted_at: wall });
        }
        self.tombstones_written += 1;
        let swept = Event::TombstonesSwept {
            collected: sweep.collect.len(),
            stamped: sweep.stamp.len(),
            kept: stored.len() - sweep.collect.len(),
            early: sweep.early,
        };
        self.write(records, After::Sweep { swept });
    }

    // -------------------------------------------------------------------------------------------------------
    // Outcomes.
    // -------------------------------------------------------------------------------------------------------

    /// The outcome of write `io`, at `now`.
    pub fn on_write(&mut self, now: Time, io: IoId, outcome: WriteOutcome) {
        if self.ended {
            return;
        }
        let Some(Busy::Write { io: expected, afters, mut settle, durable }) = self.busy.take() else {
            return;
        };
        debug_assert_eq!(io, expected, "a write outcome for a write not in flight");
        match &outcome {
            WriteOutcome::Written => {
                self.out.events.extend(durable);
                for after in afters {
                    self.written(now, after);
                }
            }
            WriteOutcome::Fenced => {
                self.out.events.push(Event::WriteFenced);
                for after in afters {
                    self.failed(now, after, &outcome);
                }
                self.end("a write was fenced: another master leads", None);
            }
            WriteOutcome::Unknown(why) => {
                // The driver could settle it neither way: the write may still be applied, later than anything this
                // term would write next, so the term writes nothing more. The next leader recovers what is durable.
                self.out.events.push(Event::WriteUnknown);
                let why = why.clone();
                for after in afters {
                    self.failed(now, after, &outcome);
                }
                self.end(format!("a write went unanswered and could not be settled: {why}"), None);
            }
            WriteOutcome::NotApplied(why) => {
                if afters.iter().any(|a| matches!(a, After::Tick { .. })) {
                    // Nothing of the pass is dispatched; the next leader recovers from what is durable. The
                    // operations that went with it are refused.
                    let why = why.clone();
                    for after in afters.into_iter().filter(|a| !matches!(a, After::Tick { .. })) {
                        self.failed(now, after, &outcome);
                    }
                    self.end(format!("a leader-loop write failed: {why}"), None);
                } else {
                    // A job the write would have created is forgotten: nothing of it is durable.
                    for after in &afters {
                        if let After::Create { id, .. } = after {
                            self.jobs.forget(id);
                            settle.retain(|s| s != id);
                        }
                    }
                    if settle.is_empty() {
                        for after in afters {
                            self.failed(now, after, &outcome);
                        }
                    } else {
                        // Certainly not applied (and never will be): reading the records back brings memory to what
                        // is durable.
                        let mut waiting = BTreeSet::new();
                        let mut ids = BTreeMap::new();
                        for id in settle {
                            let io = self.io();
                            self.out.reads.push((io, Read::Job(id.clone())));
                            waiting.insert(io);
                            ids.insert(io, id);
                        }
                        self.busy = Some(Busy::Settle { waiting, ids, afters, outcome });
                    }
                }
            }
        }
        self.run(now);
    }

    /// The write of an operation was taken.
    fn written(&mut self, now: Time, after: After) {
        match after {
            After::Tick { dispatches, offline } => {
                if !dispatches.is_empty() {
                    self.out.events.push(Event::JobMastersPlaced { count: dispatches.len() });
                }
                // Offline verdicts are reported once durable: one whose write failed never happened.
                self.out.events.extend(offline);
                // The dispatches leave now, not when they were placed: the write took a while, and a job master
                // created at the end of its dispatch window must have fenced itself before it is declared lost.
                for d in &dispatches {
                    self.masters.on_dispatch_sent(now, &TaskId::job_master(&d.job), d.epoch);
                }
                self.out.dispatches.extend(dispatches);
            }
            After::Register { to, record } => {
                self.out.events.push(Event::Registered {
                    id: record.id,
                    name: record.spec.name.clone(),
                    repeated: false,
                });
                self.answer(to, Ok(Reply::Registered { record, epoch: self.epoch }));
            }
            After::Deregister { to } => self.answer(to, Ok(Reply::Done)),
            After::Create { to, id, include_config } => {
                self.tick_at = self.tick_at.min(now);
                let a = self.view(&id, include_config).map(Reply::Job);
                self.answer(to, a);
            }
            After::Cancel { to, id } => {
                let a = self.view(&id, false).map(Reply::Job);
                self.answer(to, a);
            }
            After::Delete { to, id } => {
                if self.jobs.delete(&id).is_ok() {
                    self.masters.remove(&TaskId::job_master(&id));
                    self.progress.remove(&id);
                    // Their records went in the delete's write.
                    let prefix = format!("{id}/");
                    self.resources.retain(|r, _| !r.starts_with(&prefix));
                    self.lost.retain(|r, _| !r.starts_with(&prefix));
                    self.pin_refused.retain(|r, _| !r.starts_with(&prefix));
                    self.resources_dirty.retain(|r| !r.starts_with(&prefix));
                }
                self.answer(to, Ok(Reply::Done));
            }
            After::JobMaster { to, reply, cancel, .. } => self.answer(to, Ok(Reply::JobMaster { reply, cancel })),
            After::DispatchRefused => {}
            After::Sweep { swept } => self.out.events.push(swept),
        }
    }

    /// The write of an operation was not taken (and, for job records, memory agrees with the metastore again).
    fn failed(&mut self, now: Time, after: After, outcome: &WriteOutcome) {
        let refusal = match outcome {
            WriteOutcome::Fenced => Refusal::NotLeader("this master lost its leadership while answering; retry".into()),
            WriteOutcome::NotApplied(m) => {
                Refusal::Metastore(format!("the metastore did not take the write: {m}; retry"))
            }
            WriteOutcome::Unknown(m) => Refusal::Metastore(format!(
                "the metastore did not answer the write ({m}), so whether it was applied is not known; this master \
                 steps down: retry, and the next leader answers from what is durable"
            )),
            WriteOutcome::Written => return,
        };
        let what = match &after {
            After::Tick { .. } => "the leader loop's",
            After::Register { .. } => "a registration's",
            After::Deregister { .. } => "a deregistration's",
            After::Create { .. } => "a creation's",
            After::Cancel { .. } => "a cancel's",
            After::Delete { .. } => "a deletion's",
            After::JobMaster { .. } => "a job master's report's",
            After::DispatchRefused => "a refused dispatch's",
            After::Sweep { .. } => "a tombstone sweep's",
        };
        self.out.events.push(Event::WriteFailed { what, why: refusal.to_string() });
        match after {
            After::Tick { .. } => {}
            After::Register { to, record } => {
                // Not admitted: the id stays used (the counter only grows); the executor registers again.
                self.registry.remove(record.id);
                self.answer(to, Err(refusal));
            }
            After::Deregister { to }
            | After::Create { to, .. }
            | After::Cancel { to, .. }
            | After::Delete { to, .. } => self.answer(to, Err(refusal)),
            After::JobMaster { to, task, exit, .. } => {
                // The job was reloaded from the metastore; the bookkeeping must not keep an exit the job never
                // took, or a job master that is gone would never be lost (and its job never end).
                if let Some(epoch) = exit {
                    self.masters.forget_exit(&task, epoch);
                }
                self.answer(to, Err(refusal));
            }
            // The job is as the metastore has it again; if that still names the refused incarnation, the reload
            // tracked it once more (see `reload`).
            After::DispatchRefused => {}
            After::Sweep { .. } => {
                self.sweep_at = now + TOMBSTONE_SWEEP_INTERVAL;
            }
        }
    }

    /// The result of read `io`, at `now` (`Err`: the metastore did not answer).
    pub fn on_read(&mut self, now: Time, io: IoId, result: Result<ReadResult, String>) {
        if self.ended {
            return;
        }
        if let Some(side) = self.side.remove(&io) {
            self.side_read(now, side, result);
            self.run(now);
            return;
        }
        let Some(busy) = self.busy.take() else { return };
        match busy {
            Busy::CreateTombstones { mut creates } if creates.iter().any(|c| c.io == io && c.read.is_none()) => {
                if let Some(c) = creates.iter_mut().find(|c| c.io == io) {
                    c.read = Some(result);
                }
                if creates.iter().any(|c| c.read.is_none()) {
                    self.busy = Some(Busy::CreateTombstones { creates });
                } else {
                    // Every read is in: each create is decided in order, and those that go on write together.
                    for c in creates {
                        self.create_after_tombstone(c);
                    }
                }
            }
            Busy::DeleteListing { io: expected, to, id, wall } if expected == io => match result {
                Err(e) => self.answer(to, Err(Refusal::Metastore(format!("the metastore did not answer: {e}; retry")))),
                Ok(ReadResult::Keys(stored)) => match self.jobs.may_delete(&id) {
                    Ok(()) => {
                        // A corrupt record's create token is unknown: no tombstone is left for it.
                        let request = self.jobs.get(&id).map(|j| j.spec().request.clone()).unwrap_or_default();
                        let mut records = vec![Record::DeleteJob { id: id.clone(), stored }];
                        // Where its workers' resources were goes with it (the executors remove the files).
                        let prefix = format!("{id}/");
                        let held: BTreeSet<&String> = self
                            .resources
                            .keys()
                            .chain(self.lost.keys())
                            .chain(&self.resources_dirty)
                            .filter(|r| r.starts_with(&prefix))
                            .collect();
                        records.extend(
                            held.into_iter().map(|r| Record::Resource { resource: r.clone(), held: Held::Gone }),
                        );
                        if !request.is_empty() {
                            // A sweep that listed the tombstones before this write must not act on that listing.
                            self.tombstones_written += 1;
                            records.push(Record::Tombstone { id: id.clone(), request, deleted_at: wall });
                        }
                        self.write(records, After::Delete { to, id });
                    }
                    Err(e) => self.answer(to, Err(Refusal::Job(e))),
                },
                Ok(other) => self.unexpected(to, other),
            },
            Busy::Settle { mut waiting, mut ids, afters, outcome } if waiting.contains(&io) => {
                waiting.remove(&io);
                let id = ids.remove(&io).expect("every settling read names its job");
                match result {
                    Ok(ReadResult::Job(stored)) => {
                        self.reload(now, &id, stored);
                        if waiting.is_empty() {
                            for after in afters {
                                self.failed(now, after, &outcome);
                            }
                        } else {
                            self.busy = Some(Busy::Settle { waiting, ids, afters, outcome });
                        }
                    }
                    Ok(_) | Err(_) => {
                        let why = match result {
                            Err(e) => e,
                            Ok(_) => "the read answered something else".into(),
                        };
                        for after in afters {
                            self.failed(now, after, &outcome);
                        }
                        self.end(format!("a write could not be settled: could not read job {id}: {why}"), None);
                    }
                }
            }
            other => {
                // Not the read this operation waits on (it cannot happen: ids are unique and awaited once).
                self.busy = Some(other);
            }
        }
        self.run(now);
    }

    /// Decides a create with an id once its tombstone was read.
    fn create_after_tombstone(&mut self, c: PendingCreate) {
        let PendingCreate { to, id, spec, read, .. } = c;
        match read {
            None | Some(Err(_)) => {
                let e = match read {
                    Some(Err(e)) => e,
                    _ => "no answer".into(),
                };
                self.answer(to, Err(Refusal::Metastore(format!("the metastore did not answer: {e}; retry"))))
            }
            Some(Ok(ReadResult::Tombstone(token))) => {
                let request = spec.request.clone();
                match token {
                    Some(token) if !request.is_empty() && token == request => {
                        self.answer(
                            to,
                            Err(Refusal::JobDeleted(format!(
                                "job {id} was created by this request ({request}) and deleted since; a delayed \
                                 repeat does not bring it back (create it again with a new request id)"
                            ))),
                        );
                    }
                    token => self.create_now(to, id, spec, token.is_some()),
                }
            }
            Some(Ok(other)) => self.unexpected(to, other),
        }
    }

    fn unexpected(&mut self, to: ReplyTo, got: ReadResult) {
        self.answer(to, Err(Refusal::Metastore(format!("the metastore answered the wrong read: {got:?}; retry"))));
    }

    /// Makes a job agree with the metastore after a write whose outcome is not known.
    fn reload(&mut self, now: Time, id: &JobId, stored: Option<Result<JobRecord, crate::core::job::CorruptRecord>>) {
        match stored {
            Some(Err(record)) => {
                self.out.events.push(Event::CorruptJob { id: id.clone(), problem: record.problem.clone() });
                self.jobs.note_corrupt(id.clone(), record);
                self.progress.remove(id);
            }
            Some(Ok(record)) => {
                self.jobs.reload(now, Some(record), id);
                // The metastore may name an incarnation that the bookkeeping no longer tracks (the failed write
                // had it lost: its dispatch was refused, or its executor deregistered). It certainly does not run
                // or will be heard from; tracked again, it is adopted or declared lost after its TTL. Untracked,
                // nothing would ever end it and the job would wait for it for ever.
                if let Some(epoch) = self.jobs.get(id).and_then(|j| j.phase().live_epoch()) {
                    let task = TaskId::job_master(id);
                    if self.masters.get(&task).is_none_or(|e| e.epoch < epoch) {
                        let _ = self.masters.on_dispatched(now, &task, epoch);
                    }
                }
            }
            None => {
                self.jobs.reload(now, None, id);
                self.progress.remove(id);
            }
        }
    }

    fn side_read(&mut self, now: Time, side: Side, result: Result<ReadResult, String>) {
        let newest = match result {
            Ok(ReadResult::Counter(n)) => Ok(n),
            Ok(ReadResult::Tombstones(listed)) => {
                if let Side::Tombstones { wall, written } = side {
                    self.queue.push_back(Deferred::Swept { stored: listed, wall, written });
                }
                return;
            }
            Ok(other) => Err(format!("the metastore answered the wrong read: {other:?}")),
            Err(e) => Err(e),
        };
        let _ = now;
        match (side, newest) {
            (Side::Tombstones { .. }, _) => {
                self.sweeping = false;
                self.sweep_at = now + TOMBSTONE_SWEEP_INTERVAL;
            }
            (Side::ExecutorClaim { to, .. } | Side::JobMasterClaim { to, .. }, Err(e)) => {
                self.answer(to, Err(Refusal::Metastore(format!("the metastore did not answer: {e}; retry"))));
            }
            (Side::ExecutorClaim { to, seen }, Ok(issued)) => {
                if seen.0 <= issued {
                    self.answer(to, Err(Refusal::NotLeader("a newer leader exists; retry".into())));
                    self.end("an executor has seen a newer leader epoch", Some(seen));
                } else {
                    self.answer(
                        to,
                        Err(Refusal::InvalidArgument {
                            field: "leader_epoch",
                            message: format!("{} was never issued (the newest is {issued})", seen.0),
                        }),
                    );
                }
            }
            (Side::JobMasterClaim { to, claim }, Ok(newest)) => {
                if !claim.confirmed_by(Epoch(self.epoch.0), Epoch(newest)) {
                    self.answer(to, Err(Refusal::InvalidArgument { field: claim.field(), message: claim.to_string() }));
                } else {
                    self.answer(to, Err(Refusal::NotLeader("a newer leader exists; retry".into())));
                    self.end("a job master has seen a newer leader", Some(LeaderEpoch(newest)));
                }
            }
        }
    }

    // -------------------------------------------------------------------------------------------------------
    // Figures and invariants.
    // -------------------------------------------------------------------------------------------------------

    pub fn gauges(&self) -> TermGauges {
        let mut g = TermGauges::default();
        for v in self.registry.iter() {
            match v.status {
                ExecutorStatus::Online => g.executors_online += 1,
                ExecutorStatus::Unconfirmed => g.executors_unconfirmed += 1,
                ExecutorStatus::Draining => g.executors_draining += 1,
            }
            g.slots_capacity += u64::from(v.record.spec.capacity);
            g.slots_used += self.registry.placer().used(v.record.id).unwrap_or(0);
        }
        for j in self.jobs.iter() {
            if let Some(i) = JobState::ALL.iter().position(|s| *s == j.state()) {
                g.jobs[i] += 1;
            }
        }
        g.jobs_corrupt = self.jobs.corrupt_jobs().count() as u64;
        g.corrupt_job_records = g.jobs_corrupt + self.corrupt_unnamed_jobs;
        g.corrupt_executor_records = self.corrupt_executors;
        g
    }

    /// Every invariant of the term: the registry's and the placer's, the jobs', the job-master bookkeeping's, and
    /// the ones between them. The message names the one broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.registry.check_invariants()?;
        self.jobs.check()?;
        self.masters.check()?;
        if let Some(id) = self.progress.keys().find(|id| self.jobs.get(id).is_none()) {
            return Err(format!("manager: progress is kept for {id}, which is no job"));
        }
        for (task, entry) in self.masters.iter() {
            if !entry.state.may_be_live() {
                continue;
            }
            let Ok(id) = JobId::parse(task.as_str()) else {
                return Err(format!("manager: the job-master bookkeeping tracks {task}, which names no job"));
            };
            if entry.epoch >= self.jobs.next_epoch() {
                return Err(format!(
                    "manager: job master {id} epoch {} is not below the next epoch {}",
                    entry.epoch,
                    self.jobs.next_epoch()
                ));
            }
        }
        if self.busy.is_none() && (self.tick_due || !self.queue.is_empty()) && !self.ended {
            return Err("manager: inputs wait though no operation is in progress".into());
        }
        if self.staged.is_some() {
            return Err("manager: a staged write was left unmade after a step".into());
        }
        // Every decision that reports once durable writes what it decided: nothing waits for a write to come.
        if let Some(e) = self.undurable.first() {
            return Err(format!("manager: {e:?} waits to be reported, but no write of it was made"));
        }
        let _ = self.plants;
        Ok(())
    }
}

/// Whether operation `busy` touches job `id` (a read of it must wait for it).
fn touches(busy: &Busy, id: &JobId) -> bool {
    match busy {
        Busy::CreateTombstones { creates } => creates.iter().any(|c| &c.id == id),
        Busy::DeleteListing { id: t, .. } => t == id,
        Busy::Write { settle, .. } => settle.contains(id),
        Busy::Settle { ids, .. } => ids.values().any(|t| t == id),
    }
}

/// The metastore operations `records` make (as the driver writes them: a deletion removes what is stored for the
/// job besides its record).
fn ops_of(records: &[Record]) -> usize {
    records.iter().map(|r| if let Record::DeleteJob { stored, .. } = r { stored.len() + 3 } else { 1 }).sum()
}

/// An upper bound on the bytes `spec` takes in a job record: its configuration JSON-escaped at worst (a control
/// character is six bytes), and a kilobyte for the rest.
fn spec_bytes(spec: &crate::core::job::JobSpec) -> usize {
    spec.config.len().saturating_mul(6).saturating_add(1024)
}

/// An upper bound on the bytes `record` takes in a write (only a job record carries much).
fn bytes_of(record: &Record) -> usize {
    match record {
        Record::Job(j) => {
            let error = j.last_error.as_ref().map_or(0, |e| (e.message.len() + e.source.len()).saturating_mul(6));
            spec_bytes(&j.spec).saturating_add(error)
        }
        _ => 256,
    }
}

/// One record per job in a write, the last decided (a transaction may not touch a key twice); the rest in order.
fn dedup_jobs(records: Vec<Record>) -> Vec<Record> {
    let mut last: BTreeMap<JobId, usize> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        if let Record::Job(j) = r {
            last.insert(j.id.clone(), i);
        }
    }
    records
        .into_iter()
        .enumerate()
        .filter(|(i, r)| match r {
            Record::Job(j) => last.get(&j.id) == Some(i),
            _ => true,
        })
        .map(|(_, r)| r)
        .collect()
}
