//! A leader term: recovery from the metastore, the periodic leader loop, and the operations behind the
//! leader-only RPCs. Decisions are the core's; this module persists them (guarded by the term's leader key) and
//! carries them out.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tonic::Status;
use tracing::{info, warn};

use super::metrics::Rejection;
use super::Master;
use crate::core::ids::{Epoch, ExecutorId, JobId, LeaderEpoch, TaskId};
use crate::core::job::{CorruptRecord, JobPolicy, JobRecord, JobSpec, Jobs, Step, Verdict as JobVerdict};
use crate::core::placement::{PlacementRequest, ResourcePin};
use crate::core::registry::{EndedTask, ExecutorRecord, ExecutorSpec, Registry, RegistryError, ReportedTask};
use crate::core::rng::{Rng, SplitMix64};
use crate::core::time::Time;
use crate::core::workers::{Event, Workers};
use crate::meta::{keys, Cond, LeaderKey, MetaError, Op};
use crate::rpc::pb;
use crate::rpc::status::Reason;

/// The most operations one guarded transaction carries (etcd's default limit is 128).
const TXN_OPS_MAX: usize = 100;
/// How often a leader looks for tombstones of deleted jobs to collect.
const TOMBSTONE_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
/// How soon it looks again while a sweep left work behind (more than one batch was due).
const TOMBSTONE_SWEEP_AGAIN: std::time::Duration = std::time::Duration::from_secs(1);
/// The most tombstones kept: beyond it the oldest go before their retention ends (more than this many deletions
/// within one retention is beyond what the retention was sized for).
const TOMBSTONES_MAX: usize = 100_000;

/// Everything a leader term holds in memory: rebuilt from the metastore when the term begins, and installed only
/// once that recovery is done (until then an acting leader has no term and answers `MASTER_NOT_READY`).
pub struct Term {
    pub epoch: LeaderEpoch,
    pub key: LeaderKey,
    pub registry: Registry,
    pub jobs: Jobs,
    /// The job manager's view of its job masters (the framework's master side, at the top level).
    pub masters: Workers,
    /// What each job's current job master last said of its progress (memory only; shown by GetJob/ListJobs).
    pub progress: std::collections::BTreeMap<JobId, String>,
    /// Stored records found corrupt when the term began that the API cannot name (an executor record, or a job
    /// record under a key that is no job id): counted by the metrics. Corrupt job records are in `jobs`.
    pub corrupt_unnamed: CorruptCounts,
    /// How many times this term has written or deleted a tombstone (see [`sweep_tombstones`]).
    pub tombstones_written: u64,
}

/// Corrupt records of each kind that the API cannot show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CorruptCounts {
    pub executors: u64,
    pub jobs: u64,
}

/// A job record read from the metastore: the record, or why it cannot be trusted.
fn decode_job(key: &str, value: &[u8]) -> Result<JobRecord, CorruptRecord> {
    let corrupt = |problem: String| CorruptRecord { key: key.to_owned(), problem, len: value.len() };
    match serde_json::from_slice::<JobRecord>(value) {
        Ok(r) if keys::job(r.id.as_str()) == key => Ok(r),
        Ok(r) => Err(corrupt(format!("it holds the record of job {}", r.id))),
        Err(e) => Err(corrupt(format!("it does not decode: {e}"))),
    }
}

impl Term {
    fn job_to_wire(&self, j: &crate::core::job::Job, include_config: bool) -> pb::Job {
        let mut w = super::convert::job_to_wire(j, include_config);
        if let Some(p) = self.progress.get(j.id()) {
            w.progress = p.clone();
        }
        w
    }
}

/// Why a write did not happen.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// The guard failed: this master is no longer the leader. Nothing was applied.
    Fenced,
    /// The metastore did not answer; the write may or may not have been applied.
    Unknown(String),
    /// The metastore refused or could not be reached; nothing was applied.
    Unavailable(String),
}

impl From<WriteError> for Status {
    fn from(e: WriteError) -> Status {
        match e {
            WriteError::Fenced => Reason::NotLeader.status("this master lost its leadership while answering; retry"),
            WriteError::Unknown(m) | WriteError::Unavailable(m) => {
                Reason::MetastoreUnavailable.status(format!("the metastore did not take the write: {m}; retry"))
            }
        }
    }
}

fn meta_status(e: MetaError) -> Status {
    Reason::MetastoreUnavailable.status(format!("the metastore did not answer: {e}; retry"))
}

fn job_op(record: &JobRecord) -> Op {
    Op::Put { key: keys::job(record.id.as_str()), value: serde_json::to_vec(record).unwrap_or_default(), lease: None }
}

fn counter_op(key: String, value: u64) -> Op {
    Op::Put { key, value: value.to_string().into_bytes(), lease: None }
}

fn job_policy(m: &Master) -> JobPolicy {
    JobPolicy { backoff: m.cfg.backoff.policy(), ..JobPolicy::default() }
}

/// Runs a term: recovery, then the leader loop until this master may no longer act. Returns why it ended.
pub(super) async fn lead(m: Arc<Master>, key: LeaderKey, epoch: LeaderEpoch) -> String {
    match recover(&m, key, epoch).await {
        Ok(term) => {
            let (execs, jobs, waiting) = (term.registry.len(), term.jobs.len(), term.jobs.recovering().count());
            let mut inner = m.lock();
            if inner.leadership.acting(m.clock.now()) != Some(epoch) {
                return "lost the lease during recovery".into();
            }
            inner.term = Some(term);
            drop(inner);
            m.observe(super::Observation::ActingBegan { epoch, at: m.clock.instant(m.clock.now()) });
            info!(master = %m.name(), epoch = epoch.0, execs, jobs, waiting, "recovered; serving");
            tokio::spawn(tombstone_sweeper(m.clone(), epoch));
        }
        Err(e) => return format!("recovery failed: {e}"),
    }
    let mut dispatches = vec![];
    loop {
        let started = m.clock.now();
        if m.lock().leadership.acting(started) != Some(epoch) {
            return "the lease could not be confirmed within the step-down deadline".into();
        }
        match tick(&m, epoch).await {
            Ok(new) => dispatches.extend(new),
            Err(why) => return why,
        }
        for d in dispatches.drain(..) {
            tokio::spawn(dispatch(m.clone(), d));
        }
        // Checks keep their cadence from the start of each one (a slow write does not push every later check
        // back), so detection stays within TTL + check interval while writes take less than the interval.
        let next = started + m.cfg.executors.check_interval;
        tokio::select! {
            biased;
            _ = m.wake.notified() => {}
            _ = tokio::time::sleep_until(m.clock.instant(next)) => {}
        }
    }
}

/// Collects the tombstones of deleted jobs whose retention ended, for as long as term `epoch` lasts: one bounded
/// sweep every [`TOMBSTONE_SWEEP_INTERVAL`] (sooner while work is left). It runs beside the leader loop rather
/// than in it, so that a slow listing never delays a liveness check.
async fn tombstone_sweeper(m: Arc<Master>, epoch: LeaderEpoch) {
    let mut pause = TOMBSTONE_SWEEP_INTERVAL;
    loop {
        tokio::time::sleep(pause).await;
        if m.lock().leadership.acting(m.clock.now()) != Some(epoch) {
            return;
        }
        pause = match sweep_tombstones(&m, epoch).await {
            Ok(true) => TOMBSTONE_SWEEP_AGAIN,
            Ok(false) => TOMBSTONE_SWEEP_INTERVAL,
            Err(why) => {
                warn!(epoch = epoch.0, "tombstone sweep: {why}; trying again later");
                TOMBSTONE_SWEEP_INTERVAL
            }
        };
    }
}

/// One sweep: lists the tombstones, lets the core decide ([`crate::core::tombstone::sweep`]) at the wall-clock
/// time now, and deletes (or stamps) one batch under the term's guard. The write is serialized with creates and
/// deletes (the write lock) and skipped when a delete wrote a tombstone after the listing, which would otherwise
/// judge it by a stale read. Whether work is left.
async fn sweep_tombstones(m: &Master, epoch: LeaderEpoch) -> Result<bool, String> {
    use crate::core::tombstone::{self, Retention, Tombstone};
    let term = |t: &Term| if t.epoch == epoch { Ok(()) } else { Err(Reason::NotLeader.status("the term ended")) };
    let written = m.with_term(|t, _, _| term(t).map(|_| t.tombstones_written)).map_err(|s| s.message().to_owned())?;
    let listed = timed(m, m.store.list(&keys::deleted_jobs_prefix())).await.map_err(|e| e.to_string())?;
    let mut stored = Vec::with_capacity(listed.len());
    let mut tokens = std::collections::BTreeMap::new();
    for (k, v) in &listed {
        let Some(id) = keys::deleted_job_id_of(k).and_then(|id| JobId::parse(id).ok()) else {
            warn!(key = %k, "skipping a tombstone under a key that names no job");
            continue;
        };
        let (token, deleted_at) = Tombstone::decode(v);
        stored.push((id.clone(), deleted_at));
        tokens.insert(id, token);
    }
    let now = crate::clock::wall_now();
    let retention = Retention { keep_for: m.cfg.jobs.tombstone_retention, max: TOMBSTONES_MAX, batch_max: TXN_OPS_MAX };
    let sweep = tombstone::sweep(now, &stored, &retention);
    if sweep.collect.is_empty() && sweep.stamp.is_empty() {
        return Ok(false);
    }
    let _write = m.write_lock().await;
    let (key, written_now) = m
        .with_term(|t, _, _| term(t).map(|_| (t.key.clone(), t.tombstones_written)))
        .map_err(|s| s.message().to_owned())?;
    if written_now != written {
        return Ok(true);
    }
    let mut ops: Vec<Op> = sweep.collect.iter().map(|id| Op::Delete { key: keys::deleted_job(id.as_str()) }).collect();
    for id in &sweep.stamp {
        let request = tokens.get(id).cloned().unwrap_or_default();
        let value = Tombstone { request, deleted_at: now }.encode();
        ops.push(Op::Put { key: keys::deleted_job(id.as_str()), value, lease: None });
    }
    m.persist(&key, ops).await.map_err(|e| Status::from(e).message().to_owned())?;
    if sweep.early > 0 {
        warn!(
            early = sweep.early,
            max = TOMBSTONES_MAX,
            "too many tombstones: the oldest collected before their retention ended"
        );
    }
    info!(
        collected = sweep.collect.len(),
        stamped = sweep.stamp.len(),
        kept = stored.len() - sweep.collect.len(),
        "tombstones swept"
    );
    Ok(sweep.more)
}

async fn timed<T>(m: &Master, f: impl std::future::Future<Output = Result<T, MetaError>>) -> Result<T, MetaError> {
    match tokio::time::timeout(m.cfg.rpc.metastore_timeout, f).await {
        Ok(r) => r,
        Err(_) => Err(MetaError::Unknown("the metastore did not answer in time".into())),
    }
}

async fn recover(m: &Master, key: LeaderKey, epoch: LeaderEpoch) -> Result<Term, MetaError> {
    let store = &m.store;
    let mut executors = vec![];
    let mut unnamed = CorruptCounts::default();
    for (k, v) in timed(m, store.list(&keys::executors_prefix())).await? {
        if keys::executor_id_of(&k).is_none() {
            continue;
        }
        match serde_json::from_slice::<ExecutorRecord>(&v) {
            Ok(r) => executors.push(r),
            Err(e) => {
                // Its executor is unknown to this leader: its next heartbeat makes it register again.
                warn!(key = %k, "an executor record does not decode: {e}; its executor will register again");
                unnamed.executors += 1;
            }
        }
    }
    let next_id = read_counter(m, &keys::executor_next_id()).await?;
    let mut jobs = vec![];
    let mut corrupt = vec![];
    for (k, v) in timed(m, store.list(&keys::jobs_prefix())).await? {
        match decode_job(&k, &v) {
            Ok(r) => jobs.push(r),
            Err(record) => {
                warn!(key = %k, "a job record is corrupt: {}; the job is shown as corrupt until it is deleted", record.problem);
                match keys::job_id_of(&k).and_then(|id| JobId::parse(id).ok()) {
                    Some(id) => corrupt.push((id, record)),
                    None => unnamed.jobs += 1,
                }
            }
        }
    }
    let next_epoch = read_counter(m, &keys::job_next_epoch()).await?;
    let now = m.clock.now();
    if m.planted(crate::planted::Planted::RecoveryForgetsCancel) {
        for r in jobs.iter_mut().filter(|r| r.state == crate::core::job::JobState::Canceling) {
            r.state = crate::core::job::JobState::Running;
        }
    }
    let mut registry = Registry::restore(
        m.cfg.executors.registry_policy(),
        m.cfg.placement.policy(),
        now,
        ExecutorId(next_id.max(1)),
        executors,
    );
    let mut jobs = Jobs::restore(job_policy(m), now, Epoch(next_epoch.max(1)), jobs);
    for (id, record) in corrupt {
        jobs.note_corrupt(id, record);
    }
    let expected: Vec<(TaskId, Epoch)> = jobs.recovering().map(|(id, e)| (TaskId::job_master(id), e)).collect();
    let mut masters = Workers::recover(now, Epoch(epoch.0), m.cfg.worker_timing(), expected)
        .with_dispatch_window(m.cfg.rpc.request_timeout);
    if m.planted(crate::planted::Planted::RecoveryWithoutWait) {
        masters = masters.plant_recovery_until(now);
    }
    if m.planted(crate::planted::Planted::OneOfflinePerCheck) {
        registry.plant_one_offline_per_check();
    }
    if m.planted(crate::planted::Planted::SlotLeak) {
        registry.placer_mut().plant_slot_leak();
    }
    let progress = Default::default();
    Ok(Term { epoch, key, registry, jobs, masters, progress, corrupt_unnamed: unnamed, tombstones_written: 0 })
}

async fn read_counter(m: &Master, key: &str) -> Result<u64, MetaError> {
    Ok(timed(m, m.store.get(key))
        .await?
        .and_then(|v| std::str::from_utf8(&v).ok().and_then(|s| s.trim().parse().ok()))
        .unwrap_or(0))
}

/// The term's view of the slots, for observers.
fn capacity_sample(m: &Master, term: &Term, now: Time) -> super::CapacitySample {
    let placer = term.registry.placer();
    let executors = term
        .registry
        .iter()
        .filter_map(|v| {
            let (reported, reserved) = placer.load(v.record.id)?;
            let id = v.record.id.0;
            Some(super::ExecutorSlots { id, capacity: v.record.spec.capacity, reported, reserved })
        })
        .collect();
    let reservations = placer
        .reservations()
        .map(|r| super::ReservationSample {
            task: r.task.as_str().to_owned(),
            executor: r.executor.0,
            epoch: r.epoch.map_or(0, |e| e.0),
            cost: r.cost,
            placed: m.clock.instant(r.placed_at),
        })
        .collect();
    super::CapacitySample { epoch: term.epoch, at: m.clock.instant(now), executors, reservations }
}

/// A job master to start on an executor, decided by the leader loop.
pub(crate) struct Dispatch {
    job: JobId,
    epoch: Epoch,
    executor: ExecutorId,
    address: String,
    spec: JobSpec,
    leader_epoch: LeaderEpoch,
}

impl Master {
    /// Writes `ops` under the term's guard, in order, in transactions of at most [`TXN_OPS_MAX`] operations. A
    /// fenced write ends the term at once.
    pub(crate) async fn persist(&self, key: &LeaderKey, ops: Vec<Op>) -> Result<(), WriteError> {
        let guard = [Cond::IsLeader(key.clone())];
        for chunk in ops.chunks(TXN_OPS_MAX) {
            crate::buggify::point(&self.fault_points, crate::buggify::Point::BeforeMetastoreWrite).await;
            match timed(self, self.store.txn(&guard, chunk)).await {
                Ok(true) => {}
                Ok(false) => {
                    Master::bump(&self.stats.fenced_writes);
                    self.step_down_now("a write was fenced: another master leads");
                    return Err(WriteError::Fenced);
                }
                Err(MetaError::Unknown(e)) => {
                    Master::bump(&self.stats.unknown_writes);
                    return Err(WriteError::Unknown(e));
                }
                Err(e) => return Err(WriteError::Unavailable(e.to_string())),
            }
        }
        crate::buggify::point(&self.fault_points, crate::buggify::Point::AfterMetastoreWrite).await;
        Ok(())
    }

    /// After a failed write of job records: re-reads each and makes memory agree with the metastore. If even the
    /// re-read fails, memory cannot be trusted: the term ends.
    async fn settle_jobs(&self, key: &LeaderKey, ids: &[JobId]) -> Result<(), String> {
        for id in ids {
            let key_of_job = keys::job(id.as_str());
            let stored = match timed(self, self.store.get(&key_of_job)).await {
                Ok(v) => v.map(|v| decode_job(&key_of_job, &v)),
                Err(e) => {
                    self.step_down_now("a write could not be settled");
                    return Err(format!("could not settle job {id}: {e}"));
                }
            };
            let now = self.clock.now();
            let mut inner = self.lock();
            match (inner.term.as_mut(), stored) {
                (Some(t), Some(Err(record))) if &t.key == key => {
                    warn!(job = %id, "the job's record is corrupt: {}", record.problem);
                    t.jobs.note_corrupt(id.clone(), record);
                }
                (Some(t), stored) if &t.key == key => t.jobs.reload(now, stored.and_then(Result::ok), id),
                _ => return Err("the term ended".into()),
            }
        }
        Ok(())
    }

    /// Persists job records decided under the lock; on an unknown outcome settles them, on a fence ends the term.
    async fn persist_jobs(&self, key: &LeaderKey, records: Vec<JobRecord>, extra: Vec<Op>) -> Result<(), Status> {
        if records.is_empty() && extra.is_empty() {
            return Ok(());
        }
        // One write per job: the last decided record wins (a transaction may not touch a key twice).
        let latest: std::collections::BTreeMap<JobId, JobRecord> =
            records.into_iter().map(|r| (r.id.clone(), r)).collect();
        let ids: Vec<JobId> = latest.keys().cloned().collect();
        let mut ops: Vec<Op> = latest.values().map(job_op).collect();
        ops.extend(extra);
        match self.persist(key, ops).await {
            Ok(()) => Ok(()),
            Err(WriteError::Fenced) => Err(WriteError::Fenced.into()),
            Err(e) => {
                self.settle_jobs(key, &ids).await.map_err(|why| Reason::MetastoreUnavailable.status(why))?;
                Err(e.into())
            }
        }
    }

    /// Runs `f` on the acting term; the error says why there is none.
    pub(crate) fn with_term<T>(
        &self,
        f: impl FnOnce(&mut Term, Time, &mut SplitMix64) -> Result<T, Status>,
    ) -> Result<T, Status> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let inner = &mut *inner;
        let acting = inner.leadership.acting(now);
        match (&mut inner.term, acting) {
            (Some(t), Some(e)) if t.epoch == e => f(t, now, &mut inner.rng),
            (Some(_), Some(_)) => Err(Reason::MasterNotReady.status("master not ready: recovery is running; retry")),
            _ => Err(Reason::NotLeader.status("this master is not the leader; retry")),
        }
    }
}

/// One pass of the leader loop: liveness, job-master bookkeeping, backoff resets and cancel grace, scheduling.
async fn tick(m: &Arc<Master>, epoch: LeaderEpoch) -> Result<Vec<Dispatch>, String> {
    let _write = m.write.lock().await;
    let now = m.clock.now();
    let mut records: Vec<JobRecord> = vec![];
    let mut ops: Vec<Op> = vec![];
    let mut dispatches = vec![];
    let mut declared = vec![];
    let key = {
        let mut guard = m.lock();
        let inner = &mut *guard;
        // Decide nothing past the step-down deadline (a master paused, or starved, wakes up here before its
        // leadership loop noticed that its lease may be gone).
        if inner.leadership.acting(now) != Some(epoch) {
            return Err("no longer acting as leader".into());
        }
        let Some(term) = inner.term.as_mut().filter(|t| t.epoch == epoch) else {
            return Err("the term ended".into());
        };
        let rng = &mut inner.rng;
        // Executors: every expired one goes in this same check.
        let heard: std::collections::BTreeMap<ExecutorId, Time> =
            term.registry.iter().filter(|v| v.expires_at <= now).map(|v| (v.record.id, v.last_heard)).collect();
        let check = term.registry.check(now);
        if check.suspicion_began {
            warn!(
                held = check.held.len(),
                "most executors expired at once: holding evictions (this leader may be cut off)"
            );
            m.observe(super::Observation::EvictionsHeld { held: check.held.len(), at: m.clock.instant(now) });
        }
        for rec in &check.offline {
            Master::bump(&m.stats.executors_offline);
            info!(executor = %rec.id, name = %rec.spec.name, "declared offline");
            declared.push(super::Observation::ExecutorOffline {
                id: rec.id.0,
                name: rec.spec.name.clone(),
                at: m.clock.instant(now),
                last_heard: m.clock.instant(heard.get(&rec.id).copied().unwrap_or(now)),
            });
            ops.push(Op::Delete { key: keys::executor(rec.id.0) });
            // Its executor fenced itself before the TTL ran out: its job masters are gone.
            for (id, _, step) in term.jobs.on_executor_gone(now, rec.id, rng) {
                term.masters.remove(&TaskId::job_master(&id));
                records.extend(step.persist);
            }
        }
        // Job masters: silent, never started, revoked, or not recovered.
        for ev in term.masters.tick(now) {
            match ev {
                Event::Lost { task, epoch: e, reason } => {
                    term.registry.task_ended(&task, e);
                    let Ok(id) = JobId::parse(task.as_str()) else { continue };
                    info!(job = %id, epoch = e.0, ?reason, "job master lost");
                    if let JobVerdict::Applied(step) = term.jobs.on_lost(now, &id, e, None, rng) {
                        records.extend(step.persist);
                    }
                }
                Event::Recovered { adopted, lost } => info!(adopted, lost, "job-master recovery ended"),
                _ => {}
            }
        }
        let t = term.jobs.tick(now);
        records.extend(t.persist);
        for (id, e) in t.revoke {
            term.masters.revoke(&TaskId::job_master(&id), e);
        }
        // Scheduling: every job allowed to start now, if an executor fits it.
        if !term.registry.suspecting() {
            let capacity: u64 = term
                .registry
                .iter()
                .filter(|v| v.status == crate::core::registry::Status::Online)
                .map(|v| u64::from(v.record.spec.capacity))
                .sum();
            // The job masters' slots are summed once, and again after each placement: summed for every waiting
            // job, they would make this pass quadratic in the jobs, all of it under the leader's locks.
            let mut held = term.jobs.job_master_slots();
            for id in term.jobs.startable(now) {
                let Some(job) = term.jobs.get(&id) else { continue };
                let spec = job.spec().clone();
                if !term.jobs.job_master_fits_beside(held, spec.cost, capacity) {
                    tracing::debug!(job = %id, capacity, "waits: job masters hold their share of the slots");
                    m.stats.reject(Rejection::JobMasterShare);
                    term.jobs.note_unplaced(
                        &id,
                        format!(
                            "waiting for a job-master slot: job masters may hold half of the {capacity} online slots, \
                             and hold {held}"
                        ),
                    );
                    continue;
                }
                let task = TaskId::job_master(&id);
                let pins: [ResourcePin; 0] = [];
                let req = PlacementRequest {
                    task: &task,
                    epoch: Some(term.jobs.next_epoch()),
                    cost: spec.cost.max(1),
                    selectors: &spec.selectors,
                    resources: &pins,
                };
                let placed = match term.registry.place(now, &req, rng) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::debug!(job = %id, "not placed: {e}");
                        m.stats.reject(Rejection::from(&e));
                        term.jobs.note_unplaced(&id, e.to_string());
                        continue;
                    }
                };
                let started = term.registry.get(placed.executor).and_then(|view| {
                    let (e, step) = term.jobs.start(now, &id, placed.executor).ok()?;
                    // The bookkeeping may still hold an incarnation that may be alive: it has to be lost first.
                    term.masters.on_dispatched(now, &task, e).ok()?;
                    Some((view, e, step))
                });
                held = term.jobs.job_master_slots();
                let Some((view, e, step)) = started else {
                    term.registry.placer_mut().release(&task);
                    continue;
                };
                records.extend(step.persist);
                // The incarnation's fence: its job master guards every write of its own on this value.
                ops.push(counter_op(keys::job_master(id.as_str()), e.0));
                dispatches.push(Dispatch {
                    job: id,
                    epoch: e,
                    executor: placed.executor,
                    address: view.record.spec.address.clone(),
                    spec,
                    leader_epoch: epoch,
                });
            }
            if !dispatches.is_empty() {
                ops.push(counter_op(keys::job_next_epoch(), term.jobs.next_epoch().0));
            }
        }
        // The registry's and the placer's invariants (no reservation past its window, each executor's reserved
        // slots the sum of its reservations) after every pass, in debug and simulation builds.
        if cfg!(debug_assertions) {
            if let Err(e) = term.registry.check_invariants() {
                panic!("leader {} epoch {}: broken after a leader-loop pass: {e}", m.name(), epoch.0);
            }
        }
        if m.observed() {
            m.observe(super::Observation::Capacity(capacity_sample(m, term, now)));
        }
        term.key.clone()
    };
    if let Err(e) = m.persist_jobs(&key, records, ops).await {
        // Dispatch nothing that was not durably decided.
        return Err(format!("a leader-loop write failed: {}", e.message()));
    }
    m.stats.job_master_placements.fetch_add(dispatches.len() as u64, Ordering::Relaxed);
    // Offline verdicts are reported once durable: one whose write failed never happened (the next leader finds
    // the executor still registered).
    for o in declared {
        m.observe(o);
    }
    Ok(dispatches)
}

/// Starts a job master: two-phase dispatch to its executor. A definite refusal loses the incarnation now (a
/// refused configuration fails the job); an unanswered call leaves it to the bookkeeping's TTL, because the job
/// master may be running.
async fn dispatch(m: Arc<Master>, d: Dispatch) {
    let timeout = m.cfg.rpc.request_timeout;
    let task = TaskId::job_master(&d.job);
    let request_id = format!("{}/{}", d.job, d.epoch.0);
    let pre = pb::PreDispatchTaskRequest {
        task_id: task.as_str().to_owned(),
        kind: pb::TaskKind::JobMaster as i32,
        task_type: d.spec.job_type.clone(),
        task_config: d.spec.config.clone().into_bytes(),
        job_id: d.job.as_str().to_owned(),
        epoch: d.epoch.0,
        master_id: m.name().to_owned(),
        master_address: m.address().to_owned(),
        master_epoch: d.leader_epoch.0,
        leader_epoch: d.leader_epoch.0,
        request_id: request_id.clone(),
        cost: d.spec.cost,
        timing: Some(crate::rpc::timing_to_wire(&m.cfg.worker_timing())),
        executor_id: d.executor.0,
    };
    let still_leads = || m.lock().leadership.acting(m.clock.now()) == Some(d.leader_epoch);
    let result = crate::framework::dispatch::dispatch(&d.address, pre, timeout, still_leads, &m.fault_points).await;
    let Err(status) = result else {
        info!(job = %d.job, epoch = d.epoch.0, executor = %d.executor, "job master dispatched");
        return;
    };
    let definite = crate::framework::dispatch::is_definite(&status);
    warn!(job = %d.job, epoch = d.epoch.0, executor = %d.executor, "dispatch failed: {status}");
    if !definite {
        return;
    }
    let fatal = (status.code() == tonic::Code::InvalidArgument).then(|| status.message().to_owned());
    let _write = m.write_lock().await;
    let now = m.clock.now();
    let (key, records) = {
        let mut guard = m.lock();
        let inner = &mut *guard;
        let Some(term) = inner.term.as_mut().filter(|t| t.epoch == d.leader_epoch) else { return };
        term.masters.on_dispatch_failed(&task, d.epoch);
        term.registry.task_ended(&task, d.epoch);
        let JobVerdict::Applied(step) = term.jobs.on_lost(now, &d.job, d.epoch, fatal, &mut inner.rng) else { return };
        (term.key.clone(), step.persist.into_iter().collect::<Vec<_>>())
    };
    if let Err(e) = m.persist_jobs(&key, records, vec![]).await {
        warn!(job = %d.job, "could not persist a failed dispatch: {}", e.message());
        // The job is as the metastore has it again. If that still names this incarnation, the bookkeeping must
        // track it once more (it certainly did not start), or nothing would ever declare it lost and the job
        // would wait for ever (found by the swarm with fault points on).
        let now = m.clock.now();
        let mut guard = m.lock();
        if let Some(term) = guard.term.as_mut().filter(|t| t.epoch == d.leader_epoch) {
            let still_named = term.jobs.get(&d.job).is_some_and(|j| j.phase().live_epoch() == Some(d.epoch));
            if still_named {
                let _ = term.masters.on_dispatched(now, &task, d.epoch);
            }
        }
    }
    m.wake.notify_one();
}

// ---------------------------------------------------------------------------------------------------------------
// Operations behind the leader-only RPCs.
// ---------------------------------------------------------------------------------------------------------------

impl Master {
    pub(crate) async fn register_executor(&self, spec: ExecutorSpec) -> Result<(ExecutorRecord, LeaderEpoch), Status> {
        Registry::validate_spec(&spec).map_err(Status::from)?;
        let _write = self.write_lock().await;
        // A repeat of an admitted registration (written before it was admitted: registrations are serialized by
        // the write lock) is answered with the id it got, so a retried call leaves no ghost executor behind.
        if let Some(answer) = self.with_term(|t, now, _| Ok(t.registry.repeat(now, &spec).map(|r| (r, t.epoch))))? {
            info!(executor = %answer.0.id, name = %answer.0.spec.name, "registration repeated; same id");
            return Ok(answer);
        }
        let (key, epoch, record, next) = self.with_term(|t, now, _| {
            let record = t.registry.register(now, spec).map_err(Status::from)?;
            Ok((t.key.clone(), t.epoch, record, t.registry.next_id()))
        })?;
        let ops = vec![
            Op::Put {
                key: keys::executor(record.id.0),
                value: serde_json::to_vec(&record).unwrap_or_default(),
                lease: None,
            },
            counter_op(keys::executor_next_id(), next.0),
        ];
        match self.persist(&key, ops).await {
            Ok(()) => {
                info!(executor = %record.id, name = %record.spec.name, "registered");
                Ok((record, epoch))
            }
            Err(e) => {
                // Not admitted: the id stays used (the counter only grows), the executor registers again.
                let _ = self.with_term(|t, _, _| Ok(t.registry.remove(record.id)));
                Err(e.into())
            }
        }
    }

    /// A heartbeat; `Ok(false)` tells the executor to register again.
    /// A heartbeat; `Ok(false)` tells the executor to register again. An executor that claims to have seen a
    /// newer leader epoch deposes this leader only if the metastore confirms that epoch was issued: a claim from
    /// the network is never trusted on its own (a bogus one would otherwise lock this master out of every later
    /// term).
    pub(crate) async fn executor_heartbeat(
        &self,
        id: ExecutorId,
        seen: LeaderEpoch,
        tasks: Vec<ReportedTask>,
        ended: &[EndedTask],
        draining: bool,
    ) -> Result<(bool, LeaderEpoch), Status> {
        let claims_newer = self.lock().leadership.epoch().is_some_and(|e| seen > e);
        if claims_newer {
            let issued = read_counter(self, &keys::leader_epoch()).await.map_err(meta_status)?;
            if seen.0 <= issued {
                self.step_down_now("an executor has seen a newer leader epoch");
                self.lock().leadership.observe_epoch(seen);
                return Err(Reason::NotLeader.status("a newer leader exists; retry"));
            }
            return Err(crate::rpc::status::invalid_argument(
                "leader_epoch",
                format!("{} was never issued (the newest is {issued})", seen.0),
            ));
        }
        self.with_term(|t, now, _| {
            let previous = t.registry.last_heard(id);
            match t.registry.heartbeat(now, id, tasks, ended) {
                Ok(()) => {
                    if let Some(previous) = previous {
                        self.stats.heartbeat_gaps.observe(now.saturating_since(previous));
                    }
                    if draining && t.registry.drain(id) == Ok(true) {
                        info!(executor = %id, "draining: nothing more is placed on it");
                    }
                    Ok((true, t.epoch))
                }
                Err(RegistryError::DeclaredOffline { .. } | RegistryError::Unknown { .. }) => Ok((false, t.epoch)),
                Err(e) => Err(Status::from(e)),
            }
        })
    }

    pub(crate) async fn deregister_executor(&self, id: ExecutorId) -> Result<(), Status> {
        let _write = self.write_lock().await;
        let (key, records) = self.with_term(|t, now, rng| {
            if t.registry.remove(id).is_none() {
                return Err(Status::from(RegistryError::Unknown { id }));
            }
            let mut records = vec![];
            for (job, _, step) in t.jobs.on_executor_gone(now, id, rng) {
                t.masters.remove(&TaskId::job_master(&job));
                records.extend(step.persist);
            }
            Ok((t.key.clone(), records))
        })?;
        self.persist_jobs(&key, records, vec![Op::Delete { key: keys::executor(id.0) }]).await?;
        self.wake.notify_one();
        Ok(())
    }

    pub(crate) async fn create_job(&self, id: Option<JobId>, spec: JobSpec) -> Result<pb::Job, Status> {
        let _write = self.write_lock().await;
        // A repeat of a create that was applied (its reply lost or late) gets the job it created; the same token
        // on another request is refused, saying what differs.
        let request = spec.request.clone();
        let repeat = self.with_term(|t, _, _| {
            if request.is_empty() {
                return Ok(None);
            }
            let Some(j) = t.jobs.iter().find(|j| j.spec().request == request) else { return Ok(None) };
            let mut differs = vec![];
            if id.as_ref().is_some_and(|id| id != j.id()) {
                differs.push("job.id");
            }
            differs.extend(j.spec().differences(&spec));
            if differs.is_empty() {
                return Ok(Some(t.job_to_wire(j, false)));
            }
            Err(Reason::RequestIdReused.status(format!(
                "request_id {} created job {} with another request: this one differs in {}; a repeat must be the \
                 same request (use a new request_id for another job)",
                crate::core::text::quote(&request),
                j.id(),
                differs.join(", ")
            )))
        })?;
        if let Some(job) = repeat {
            return Ok(job);
        }
        // A deleted job's create token stays behind: a delayed repeat of that create must not bring it back.
        let mut tombstone = None;
        if let Some(id) = &id {
            let stored = timed(self, self.store.get(&keys::deleted_job(id.as_str()))).await.map_err(meta_status)?;
            if let Some(stored) = stored {
                let (token, _) = crate::core::tombstone::Tombstone::decode(&stored);
                if !request.is_empty() && token == request {
                    return Err(Reason::JobDeleted.status(format!(
                        "job {id} was created by this request ({request}) and deleted since; a delayed repeat does \
                         not bring it back (create it again with a new request id)"
                    )));
                }
                tombstone = Some(Op::Delete { key: keys::deleted_job(id.as_str()) });
            }
        }
        let (key, record, job) = self.with_term(|t, _, rng| {
            let id = match id {
                Some(id) => id,
                None => generate_id(&t.jobs, rng),
            };
            let record = t.jobs.create(id.clone(), spec).map_err(Status::from)?;
            let job = t.jobs.get(&id).map(|j| t.job_to_wire(j, false));
            if tombstone.is_some() {
                t.tombstones_written += 1;
            }
            Ok((t.key.clone(), record, job))
        })?;
        let id = record.id.clone();
        let ops = std::iter::once(job_op(&record)).chain(tombstone).collect();
        match self.persist(&key, ops).await {
            Ok(()) => {
                self.wake.notify_one();
                job.ok_or_else(|| Reason::Internal.status("the created job vanished"))
            }
            Err(WriteError::Fenced) => Err(WriteError::Fenced.into()),
            Err(WriteError::Unavailable(e)) => {
                let _ = self.with_term(|t, _, _| {
                    t.jobs.forget(&id);
                    Ok(())
                });
                Err(WriteError::Unavailable(e).into())
            }
            Err(WriteError::Unknown(e)) => {
                // Settle: the job exists iff its record is there.
                match timed(self, self.store.get(&keys::job(id.as_str()))).await {
                    Ok(Some(_)) => {
                        self.wake.notify_one();
                        job.ok_or_else(|| Reason::Internal.status("the created job vanished"))
                    }
                    Ok(None) => {
                        let _ = self.with_term(|t, _, _| {
                            t.jobs.forget(&id);
                            Ok(())
                        });
                        Err(WriteError::Unknown(e).into())
                    }
                    Err(e) => {
                        self.step_down_now("a job creation could not be settled");
                        Err(meta_status(e))
                    }
                }
            }
        }
    }

    /// A job as committed: reads wait for the write under way (decisions are applied in memory before their write
    /// completes, and a failed write reloads the job), so a client never sees a state that is not durable.
    pub(crate) async fn get_job(&self, id: &JobId, include_config: bool) -> Result<pb::Job, Status> {
        let _write = self.write_lock().await;
        self.job_view(id, include_config)
    }

    fn job_view(&self, id: &JobId, include_config: bool) -> Result<pb::Job, Status> {
        self.with_term(|t, _, _| {
            if let Some(record) = t.jobs.corrupt(id) {
                return Ok(super::convert::corrupt_job_to_wire(id, record));
            }
            t.jobs
                .get(id)
                .map(|j| t.job_to_wire(j, include_config))
                .ok_or_else(|| Status::from(crate::core::job::JobError::NotFound { id: id.clone() }))
        })
    }

    /// Jobs as committed (see [`Master::get_job`]).
    pub(crate) async fn list_jobs(&self, req: &pb::ListJobsRequest) -> Result<pb::ListJobsResponse, Status> {
        let _write = self.write_lock().await;
        let size = match req.page_size {
            0 => 100,
            n if n > 1000 => {
                return Err(crate::rpc::status::invalid_argument(
                    "page_size",
                    format!("{n} exceeds the maximum of 1000"),
                ))
            }
            n => n as usize,
        };
        let state = super::convert::state_from_wire("state", req.state)?;
        let after =
            if req.page_token.is_empty() { None } else { Some(super::convert::job_id("page_token", &req.page_token)?) };
        use super::convert::StateFilter;
        self.with_term(|t, _, _| {
            // Readable jobs and corrupt records, merged in id order.
            let mut readable = t.jobs.iter().peekable();
            let mut corrupt = t.jobs.corrupt_jobs().peekable();
            let mut jobs = vec![];
            let mut more = false;
            loop {
                let take_corrupt = match (readable.peek(), corrupt.peek()) {
                    (None, None) => break,
                    (Some(j), Some((id, _))) => *id < j.id(),
                    (None, Some(_)) => true,
                    (Some(_), None) => false,
                };
                let (id, wire) = if take_corrupt {
                    let (id, record) = corrupt.next().expect("peeked");
                    let keep = req.r#type.is_empty() && matches!(state, None | Some(StateFilter::Corrupt));
                    (id, keep.then(|| super::convert::corrupt_job_to_wire(id, record)))
                } else {
                    let j = readable.next().expect("peeked");
                    let keep = (req.r#type.is_empty() || j.spec().job_type == req.r#type)
                        && state.is_none_or(|s| s == StateFilter::State(j.state()));
                    (j.id(), keep.then(|| t.job_to_wire(j, req.include_config)))
                };
                if after.as_ref().is_some_and(|a| id <= a) {
                    continue;
                }
                let Some(wire) = wire else { continue };
                if jobs.len() == size {
                    more = true;
                    break;
                }
                jobs.push(wire);
            }
            let next_page_token =
                if more { jobs.last().map(|j| j.id.clone()).unwrap_or_default() } else { String::new() };
            Ok(pb::ListJobsResponse { jobs, next_page_token })
        })
    }

    pub(crate) async fn cancel_job(&self, id: &JobId) -> Result<pb::Job, Status> {
        let _write = self.write_lock().await;
        let (key, step) = self.with_term(|t, now, _| {
            let (_, step) = t.jobs.cancel(now, id).map_err(Status::from)?;
            Ok((t.key.clone(), step))
        })?;
        let Step { persist, .. } = step;
        self.persist_jobs(&key, persist.into_iter().collect(), vec![]).await?;
        self.job_view(id, false)
    }

    pub(crate) async fn delete_job(&self, id: &JobId) -> Result<(), Status> {
        let _write = self.write_lock().await;
        let (key, request) = self.with_term(|t, _, _| {
            t.jobs.may_delete(id).map_err(Status::from)?;
            // A corrupt record's create token is unknown: no tombstone is left for it.
            let request = t.jobs.get(id).map(|j| j.spec().request.clone()).unwrap_or_default();
            Ok((t.key.clone(), request))
        })?;
        // Everything stored for the job goes with it, in the same guarded transactions as the record.
        let mut ops = vec![];
        for prefix in [keys::workers_prefix(id.as_str()), keys::checkpoints_prefix(id.as_str())] {
            for (k, _) in timed(self, self.store.list(&prefix)).await.map_err(meta_status)? {
                ops.push(Op::Delete { key: k });
            }
        }
        ops.push(Op::Delete { key: keys::job_master(id.as_str()) });
        ops.push(Op::Delete { key: keys::job(id.as_str()) });
        if !request.is_empty() {
            let tombstone = crate::core::tombstone::Tombstone { request, deleted_at: crate::clock::wall_now() };
            ops.push(Op::Put { key: keys::deleted_job(id.as_str()), value: tombstone.encode(), lease: None });
            // A tombstone sweep that listed the tombstones before this write must not act on that listing.
            self.with_term(|t, _, _| {
                t.tombstones_written += 1;
                Ok(())
            })?;
        }
        self.persist(&key, ops).await?;
        self.with_term(|t, _, _| {
            t.jobs.delete(id).map_err(Status::from)?;
            t.masters.remove(&TaskId::job_master(id));
            t.progress.remove(id);
            Ok(())
        })
    }

    pub(crate) fn schedule_task(&self, req: &pb::ScheduleTaskRequest) -> Result<pb::ScheduleTaskResponse, Status> {
        let task = TaskId::parse(&req.task_id).map_err(|e| crate::rpc::status::invalid_argument("task_id", e))?;
        let job = super::convert::job_id("job_id", &req.job_id)?;
        let cost = super::convert::cost("cost", req.cost)?;
        let selectors = super::convert::selectors("selectors", &req.selectors)?;
        let resources: Vec<ResourcePin> = req
            .resources
            .iter()
            .map(|r| ResourcePin { resource: format!("{}/{}", r.job_id, r.resource_id), executor: None })
            .collect();
        self.with_term(|t, now, rng| {
            // Only the current, online incarnation of the job's job master may place its workers.
            let Some(j) = t.jobs.get(&job) else {
                self.stats.reject(Rejection::StaleJobMaster);
                return Err(Status::from(crate::core::job::JobError::NotFound { id: job.clone() }));
            };
            let online = t.masters.get(&TaskId::job_master(&job)).is_some_and(|e| e.epoch == Epoch(req.master_epoch));
            if j.state().is_terminal() || j.epoch() != Epoch(req.master_epoch) || !online {
                self.stats.reject(Rejection::StaleJobMaster);
                let why = if j.state().is_terminal() {
                    format!("the job is {}", j.state())
                } else if j.epoch() != Epoch(req.master_epoch) {
                    format!("its current job master is epoch {}", j.epoch())
                } else {
                    "that job master is not online".to_owned()
                };
                return Err(Reason::StaleEpoch.status(format!(
                    "the job master of job {job} at epoch {} may not place workers: {why}",
                    req.master_epoch
                )));
            }
            let epoch = (req.epoch != 0).then_some(Epoch(req.epoch));
            let request = PlacementRequest { task: &task, epoch, cost, selectors: &selectors, resources: &resources };
            let placed = t.registry.place(now, &request, rng).map_err(|e| {
                self.stats.reject(Rejection::from(&e));
                Status::from(e)
            })?;
            let view = t
                .registry
                .get(placed.executor)
                .ok_or_else(|| Reason::Internal.status("placed on an executor that is not registered"))?;
            Master::bump(&self.stats.worker_placements);
            Ok(pb::ScheduleTaskResponse {
                executor_id: placed.executor.0,
                executor_address: view.record.spec.address,
                leader_epoch: t.epoch.0,
            })
        })
    }

    pub(crate) fn list_executors(&self) -> Result<pb::ListExecutorsResponse, Status> {
        self.with_term(|t, now, _| {
            let executors = t
                .registry
                .iter()
                .map(|v| {
                    let used = t.registry.placer().used(v.record.id).unwrap_or(0);
                    super::convert::executor_to_wire(&v, u32::try_from(used).unwrap_or(u32::MAX), now)
                })
                .collect();
            Ok(pb::ListExecutorsResponse { executors })
        })
    }

    /// A job master's heartbeat or status report to the job manager.
    pub(crate) async fn job_master_message(
        &self,
        msg: crate::core::workers::Message,
        status: Option<crate::core::workers::WorkerStatus>,
        progress: &str,
    ) -> Result<(crate::core::workers::Reply, bool), Status> {
        let job = JobId::parse(msg.task.as_str()).map_err(|e| crate::rpc::status::invalid_argument("worker_id", e))?;
        let _write = self.write_lock().await;
        let taken = self.with_term(|t, now, rng| {
            // A claim that someone newer exists is judged before anything changes (below).
            if let Some(claim) = t.masters.claim(&msg) {
                return Ok(Err((claim, t.masters.master_epoch())));
            }
            let (reply, events) = match &status {
                Some(s) => t.masters.on_status(now, &msg, s.clone()),
                None => t.masters.on_heartbeat(now, &msg),
            };
            use crate::core::job::{ExitOutcome, JobState};
            use crate::core::workers::{Verdict as V, WorkerStatus as W};
            let outcome_of = |status: &W| match status {
                W::Finished => Some(ExitOutcome::Finished),
                W::Canceled => Some(ExitOutcome::Canceled),
                W::Failed { message } => Some(ExitOutcome::Failed { message: message.clone() }),
                W::Running | W::Stopped => None,
            };
            let mut records = vec![];
            let (mut online, mut exited) = (false, false);
            let mut exit_taken = None;
            for ev in events {
                // An incarnation that exited or was lost holds no slot any more, wherever it was placed.
                if let Event::Exited { task, epoch, .. } | Event::Lost { task, epoch, .. } = &ev {
                    t.registry.task_ended(task, *epoch);
                }
                let v = match ev {
                    Event::Online { epoch, .. } => {
                        online = true;
                        t.jobs.on_online(now, &job, epoch)
                    }
                    // Drained by its executor after its last action: it runs nowhere now, start it again.
                    Event::Exited { epoch, status: W::Stopped, .. } => {
                        exit_taken = Some(epoch);
                        t.jobs.on_stopped(now, &job, epoch)
                    }
                    Event::Exited { epoch, status, .. } => {
                        let Some(outcome) = outcome_of(&status) else { continue };
                        exited = true;
                        exit_taken = Some(epoch);
                        t.jobs.on_exit(now, &job, epoch, outcome)
                    }
                    Event::Recovered { adopted, lost } => {
                        info!(adopted, lost, "job-master recovery ended");
                        continue;
                    }
                    Event::Lost { task, epoch, .. } => match JobId::parse(task.as_str()) {
                        Ok(j) => t.jobs.on_lost(now, &j, epoch, None, rng),
                        Err(_) => continue,
                    },
                    Event::Superseded { .. } => continue,
                };
                if let JobVerdict::Applied(step) = v {
                    records.extend(step.persist);
                }
            }
            // The bookkeeping can be ahead of the job: when the write of an earlier transition failed, the job was
            // reloaded from the metastore but the bookkeeping kept the incarnation online (or exited), so a repeat
            // raises no event. An accepted message of the current incarnation re-applies what the job missed.
            let current = t.jobs.get(&job).filter(|j| j.epoch() == msg.worker_epoch && !j.state().is_terminal());
            if let (V::Accepted, Some(j)) = (reply.verdict, current) {
                let missed = match &status {
                    Some(s) if !exited => outcome_of(s).map(|o| t.jobs.on_exit(now, &job, msg.worker_epoch, o)),
                    _ if !online && j.state() == JobState::Created => {
                        Some(t.jobs.on_online(now, &job, msg.worker_epoch))
                    }
                    _ => None,
                };
                if let Some(JobVerdict::Applied(step)) = missed {
                    records.extend(step.persist);
                }
            }
            let cancel = t.jobs.wants_cancel(&job, msg.worker_epoch);
            if reply.verdict == crate::core::workers::Verdict::Accepted && !progress.is_empty() {
                t.progress.insert(job.clone(), progress.to_owned());
            }
            Ok(Ok((t.key.clone(), reply, records, cancel, exit_taken)))
        })?;
        let (key, reply, records, cancel, exit_taken) = match taken {
            Ok(taken) => taken,
            Err((claim, mine)) => return Err(self.judge_claim(claim, mine).await),
        };
        if let Err(e) = self.persist_jobs(&key, records, vec![]).await {
            // The job was reloaded from the metastore; the bookkeeping must not keep an exit the job never took,
            // or a job master that is gone would never be lost (and its job never end).
            if let Some(epoch) = exit_taken {
                let _ = self.with_term(|t, _, _| {
                    t.masters.forget_exit(&msg.task, epoch);
                    Ok(())
                });
            }
            return Err(e);
        }
        Ok((reply, cancel))
    }

    /// A job master's claim that someone newer than this leader exists: a leader epoch above this term's, or a
    /// job-master epoch above the one this leader started for the job (which only a newer leader could have
    /// started). Like an executor's claim, it deposes this leader only if the metastore's leader-epoch counter
    /// shows a newer leader (and, for a leader epoch, that this one was issued); otherwise the message is refused
    /// and nothing changes. The answer for the sender.
    async fn judge_claim(&self, claim: crate::core::workers::Claim, mine: Epoch) -> Status {
        let newest = match read_counter(self, &keys::leader_epoch()).await {
            Ok(n) => n,
            Err(e) => return meta_status(e),
        };
        if !claim.confirmed_by(mine, Epoch(newest)) {
            tracing::debug!(?claim, newest, "a job master claims an epoch never issued: refused");
            return crate::rpc::status::invalid_argument(claim.field(), claim);
        }
        self.step_down_now("a job master has seen a newer leader");
        self.lock().leadership.observe_epoch(LeaderEpoch(newest));
        Reason::NotLeader.status("a newer leader exists; retry")
    }
}

/// A fresh job id, unique among the jobs this leader knows (ids of deleted jobs may come back, as documented).
fn generate_id(jobs: &Jobs, rng: &mut SplitMix64) -> JobId {
    loop {
        let text = format!("job-{:012x}", rng.next_u64() & 0xffff_ffff_ffff);
        if let Ok(id) = JobId::parse(&text) {
            if jobs.get(&id).is_none() {
                return id;
            }
        }
    }
}
