//! The driver of a leader term: recovery from the metastore, then one task that owns the term's job manager
//! ([`crate::core::manager::Manager`]) and carries out what it decides. Every decision is the manager's; this
//! module moves bytes and timers. Requests reach the manager through the term's inbox with their reply channels.
//!
//! Each [`Ready`] is carried out in this order:
//! 1. the write (at most one is ever in flight), as guarded transactions on the term's leader key, in a task of
//!    its own; its outcome comes back to [`Manager::on_write`];
//! 2. the reads, each in a task of its own; each result comes back to [`Manager::on_read`];
//! 3. the dispatches, each in a task of its own; a definite refusal comes back as an input;
//! 4. the answers, on their reply channels;
//! 5. the events: logs, metrics, observations;
//! 6. the step-down, which ends the term at once.
//!
//! Then the driver waits for the first of: an outcome, a timer (the periodic pass, the tombstone sweep), a request.
//! Before stepping the manager it checks that this master may still act: nothing is decided past the step-down
//! deadline.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::Master;
use crate::core::ids::{ExecutorId, JobId, LeaderEpoch};
use crate::core::job::{CorruptRecord, JobRecord};
use crate::core::manager::{
    self as manager, Answer, Dispatch, Event, Input, IoId, Manager, Read, ReadResult, Record, ReplyTo, Request,
    Snapshot, WriteOutcome,
};
use crate::core::registry::ExecutorRecord;
use crate::meta::{keys, Cond, LeaderKey, MetaError, Op, TXN_OPS_MAX};

/// How many requests may wait in a term's inbox before their senders wait too.
const INBOX: usize = 4096;

/// A request and where its answer goes.
pub(crate) struct Call {
    pub request: Request,
    pub reply: oneshot::Sender<Answer>,
}

/// The serving term, as the rest of the master reaches it.
pub(crate) struct Serving {
    pub epoch: LeaderEpoch,
    pub inbox: mpsc::Sender<Call>,
}

/// What a task of the driver reports back.
enum Done {
    Write(IoId, WriteOutcome),
    Read(IoId, Result<ReadResult, String>),
    Input(Input),
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

async fn timed<T>(m: &Master, f: impl std::future::Future<Output = Result<T, MetaError>>) -> Result<T, MetaError> {
    match tokio::time::timeout(m.cfg.rpc.metastore_timeout, f).await {
        Ok(r) => r,
        Err(_) => Err(MetaError::Unknown("the metastore did not answer in time".into())),
    }
}

/// Runs a term: recovery, then the driver until this master may no longer act. Returns why it ended.
pub(super) async fn lead(m: Arc<Master>, key: LeaderKey, epoch: LeaderEpoch) -> String {
    let snapshot = match recover(&m).await {
        Ok(s) => s,
        Err(e) => return format!("recovery failed: {e}"),
    };
    let now = m.clock.now();
    let seed = { crate::core::rng::Rng::next_u64(&mut m.lock().rng) };
    let mut manager = Manager::recover(now, epoch, m.manager_policy(), m.plants(), seed, snapshot);
    let (inbox, mut calls) = mpsc::channel::<Call>(INBOX);
    {
        let mut inner = m.lock();
        if inner.leadership.acting(m.clock.now()) != Some(epoch) {
            return "lost the lease during recovery".into();
        }
        inner.serving = Some(Serving { epoch, inbox });
    }
    m.observe(super::Observation::ActingBegan { epoch, at: m.clock.instant(now) });
    let (done, mut outcomes) = mpsc::unbounded_channel::<Done>();
    let mut replies: BTreeMap<ReplyTo, oneshot::Sender<Answer>> = BTreeMap::new();
    let mut next_reply = 0u64;
    loop {
        let ready = manager.ready();
        let (wake_at, sweep_at) = (ready.wake_at, ready.sweep_at);
        if let Some(why) = carry_out(&m, &key, ready, &done, &mut replies) {
            return why;
        }
        let far = m.clock.now() + std::time::Duration::from_secs(3600);
        let (wake, sweep) = (m.clock.instant(wake_at.unwrap_or(far)), m.clock.instant(sweep_at.unwrap_or(far)));
        let input = tokio::select! {
            biased;
            _ = m.wake.notified() => None,
            Some(d) = outcomes.recv() => Some(d),
            _ = tokio::time::sleep_until(wake) => Some(Done::Input(Input::Tick)),
            _ = tokio::time::sleep_until(sweep) => {
                Some(Done::Input(Input::SweepTombstones { wall: crate::clock::wall_now() }))
            }
            Some(call) = calls.recv() => {
                next_reply += 1;
                replies.insert(ReplyTo(next_reply), call.reply);
                Some(Done::Input(Input::Request(ReplyTo(next_reply), call.request)))
            }
        };
        let now = m.clock.now();
        if m.lock().leadership.acting(now) != Some(epoch) {
            return "the lease could not be confirmed within the step-down deadline".into();
        }
        match input {
            Some(Done::Write(io, outcome)) => manager.on_write(now, io, outcome),
            Some(Done::Read(io, result)) => manager.on_read(now, io, result),
            Some(Done::Input(input)) => manager.step(now, input),
            None => {}
        }
    }
}

/// Carries out one [`manager::Ready`] in its documented order; why the term ends, if it does.
fn carry_out(
    m: &Arc<Master>,
    key: &LeaderKey,
    ready: manager::Ready,
    done: &mpsc::UnboundedSender<Done>,
    replies: &mut BTreeMap<ReplyTo, oneshot::Sender<Answer>>,
) -> Option<String> {
    if let Some((io, records)) = ready.write {
        let (m, key, done) = (m.clone(), key.clone(), done.clone());
        tokio::spawn(async move {
            let outcome = persist(&m, &key, &records).await;
            let _ = done.send(Done::Write(io, outcome));
        });
    }
    for (io, read) in ready.reads {
        let (m, done) = (m.clone(), done.clone());
        tokio::spawn(async move {
            let result = read_one(&m, &read).await;
            let _ = done.send(Done::Read(io, result));
        });
    }
    for d in ready.dispatches {
        tokio::spawn(dispatch(m.clone(), d, done.clone()));
    }
    for (to, answer) in ready.answers {
        if let Some(reply) = replies.remove(&to) {
            let _ = reply.send(answer);
        }
    }
    for e in ready.events {
        m.report(e);
    }
    let down = ready.step_down?;
    m.step_down_now(&down.why);
    if let Some(newer) = down.newer {
        m.lock().leadership.observe_epoch(newer);
    }
    Some(down.why)
}

/// The metastore operations of a write, in order.
fn ops_of(records: &[Record]) -> Result<Vec<Op>, String> {
    let put = |key: String, value: Vec<u8>| Op::Put { key, value, lease: None };
    let counter = |key: String, n: u64| put(key, n.to_string().into_bytes());
    let json = |what: &str, r: Result<Vec<u8>, serde_json::Error>| r.map_err(|e| format!("cannot encode {what}: {e}"));
    let mut ops = vec![];
    for r in records {
        match r {
            Record::Job(j) => ops.push(put(keys::job(j.id.as_str()), json("a job record", serde_json::to_vec(j))?)),
            Record::Executor(e) => {
                ops.push(put(keys::executor(e.id.0), json("an executor record", serde_json::to_vec(e))?))
            }
            Record::DeleteExecutor(id) => ops.push(Op::Delete { key: keys::executor(id.0) }),
            Record::ExecutorNextId(ExecutorId(n)) => ops.push(counter(keys::executor_next_id(), *n)),
            Record::JobNextEpoch(e) => ops.push(counter(keys::job_next_epoch(), e.0)),
            Record::JobMasterFence(job, e) => ops.push(counter(keys::job_master(job.as_str()), e.0)),
            Record::DeleteJob { id, stored } => {
                ops.extend(stored.iter().map(|k| Op::Delete { key: k.clone() }));
                ops.push(Op::Delete { key: keys::job_master(id.as_str()) });
                ops.push(Op::Delete { key: keys::job(id.as_str()) });
            }
            Record::Tombstone { id, request, deleted_at } => {
                let t = crate::core::tombstone::Tombstone { request: request.clone(), deleted_at: *deleted_at };
                ops.push(put(keys::deleted_job(id.as_str()), json("a tombstone", serde_json::to_vec(&t))?));
            }
            Record::DeleteTombstone(id) => ops.push(Op::Delete { key: keys::deleted_job(id.as_str()) }),
        }
    }
    Ok(ops)
}

/// Writes `records` under the term's guard, in transactions of at most [`TXN_OPS_MAX`] operations.
async fn persist(m: &Master, key: &LeaderKey, records: &[Record]) -> WriteOutcome {
    let ops = match ops_of(records) {
        Ok(ops) => ops,
        Err(e) => return WriteOutcome::NotApplied(e),
    };
    let guard = [Cond::IsLeader(key.clone())];
    for (i, chunk) in ops.chunks(TXN_OPS_MAX).enumerate() {
        crate::buggify::point(&m.fault_points, crate::buggify::Point::BeforeMetastoreWrite).await;
        match timed(m, m.store.txn(&guard, chunk)).await {
            Ok(true) => {}
            Ok(false) => return WriteOutcome::Fenced,
            // A later chunk's failure leaves the earlier ones applied: the outcome as a whole is not known.
            Err(MetaError::Unknown(e)) => return WriteOutcome::Unknown(e),
            Err(e) if i > 0 => return WriteOutcome::Unknown(e.to_string()),
            Err(e) => return WriteOutcome::NotApplied(e.to_string()),
        }
    }
    crate::buggify::point(&m.fault_points, crate::buggify::Point::AfterMetastoreWrite).await;
    WriteOutcome::Written
}

async fn read_one(m: &Master, read: &Read) -> Result<ReadResult, String> {
    let store = &m.store;
    let r = match read {
        Read::Job(id) => {
            let key = keys::job(id.as_str());
            ReadResult::Job(timed(m, store.get(&key)).await.map_err(|e| e.to_string())?.map(|v| decode_job(&key, &v)))
        }
        Read::Tombstone(id) => {
            let stored = timed(m, store.get(&keys::deleted_job(id.as_str()))).await.map_err(|e| e.to_string())?;
            ReadResult::Tombstone(stored.map(|v| crate::core::tombstone::Tombstone::decode(&v).0))
        }
        Read::JobData(id) => {
            let mut found = vec![];
            for prefix in [keys::workers_prefix(id.as_str()), keys::checkpoints_prefix(id.as_str())] {
                found.extend(
                    timed(m, store.list(&prefix)).await.map_err(|e| e.to_string())?.into_iter().map(|(k, _)| k),
                );
            }
            ReadResult::Keys(found)
        }
        Read::LeaderEpoch => {
            let stored = timed(m, store.get(&keys::leader_epoch())).await.map_err(|e| e.to_string())?;
            ReadResult::Counter(manager::parse_counter("leader epoch", stored.as_deref()).map_err(|e| e.to_string())?)
        }
        Read::Tombstones => {
            let mut listed = vec![];
            for (k, v) in timed(m, store.list(&keys::deleted_jobs_prefix())).await.map_err(|e| e.to_string())? {
                let Some(id) = keys::deleted_job_id_of(&k).and_then(|id| JobId::parse(id).ok()) else {
                    warn!(key = %k, "skipping a tombstone under a key that names no job");
                    continue;
                };
                let (token, deleted_at) = crate::core::tombstone::Tombstone::decode(&v);
                listed.push((id, deleted_at, token));
            }
            ReadResult::Tombstones(listed)
        }
    };
    Ok(r)
}

/// Reads what a new term starts from.
async fn recover(m: &Master) -> Result<Snapshot, String> {
    let store = &m.store;
    let mut s = Snapshot::default();
    for (k, v) in timed(m, store.list(&keys::executors_prefix())).await.map_err(|e| e.to_string())? {
        if keys::executor_id_of(&k).is_none() {
            continue;
        }
        match serde_json::from_slice::<ExecutorRecord>(&v) {
            Ok(r) => s.executors.push(r),
            Err(e) => {
                // Its executor is unknown to this leader: its next heartbeat makes it register again.
                warn!(key = %k, "an executor record does not decode: {e}; its executor will register again");
                s.corrupt_executors += 1;
            }
        }
    }
    let counter = |name, v: Option<Vec<u8>>| manager::parse_counter(name, v.as_deref()).map_err(|e| e.to_string());
    let next = timed(m, store.get(&keys::executor_next_id())).await.map_err(|e| e.to_string())?;
    s.next_executor_id = counter("next executor id", next)?;
    for (k, v) in timed(m, store.list(&keys::jobs_prefix())).await.map_err(|e| e.to_string())? {
        match decode_job(&k, &v) {
            Ok(r) => s.jobs.push(r),
            Err(record) => {
                warn!(key = %k, "a job record is corrupt: {}; the job is shown as corrupt until it is deleted", record.problem);
                match keys::job_id_of(&k).and_then(|id| JobId::parse(id).ok()) {
                    Some(id) => s.corrupt_jobs.push((id, record)),
                    None => s.corrupt_unnamed_jobs += 1,
                }
            }
        }
    }
    let next = timed(m, store.get(&keys::job_next_epoch())).await.map_err(|e| e.to_string())?;
    s.next_job_epoch = counter("next job-master epoch", next)?;
    Ok(s)
}

/// Starts a job master: two-phase dispatch to its executor. A definite refusal loses the incarnation (a refused
/// configuration fails the job); an unanswered call leaves it to the bookkeeping's TTL, as the job master may run.
async fn dispatch(m: Arc<Master>, d: Dispatch, done: mpsc::UnboundedSender<Done>) {
    let timeout = m.cfg.rpc.request_timeout;
    let pre = crate::rpc::pb::PreDispatchTaskRequest {
        task_id: crate::core::ids::TaskId::job_master(&d.job).as_str().to_owned(),
        kind: crate::rpc::pb::TaskKind::JobMaster as i32,
        task_type: d.spec.job_type.clone(),
        task_config: d.spec.config.clone().into_bytes(),
        job_id: d.job.as_str().to_owned(),
        epoch: d.epoch.0,
        master_id: m.name().to_owned(),
        master_address: m.address().to_owned(),
        master_epoch: d.leader_epoch.0,
        leader_epoch: d.leader_epoch.0,
        request_id: format!("{}/{}", d.job, d.epoch.0),
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
    warn!(job = %d.job, epoch = d.epoch.0, executor = %d.executor, "dispatch failed: {status}");
    if crate::framework::dispatch::is_definite(&status) {
        let fatal = (status.code() == tonic::Code::InvalidArgument).then(|| status.message().to_owned());
        let _ = done.send(Done::Input(Input::DispatchRefused { job: d.job, epoch: d.epoch, fatal }));
    }
}

impl Master {
    /// Logs, counts and observes one event of the term.
    fn report(&self, e: Event) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.stats;
        match e {
            Event::Recovered { executors, jobs, waiting } => {
                info!(master = %self.name(), executors, jobs, waiting, "recovered; serving")
            }
            Event::Registered { id, name, repeated } => info!(executor = %id, %name, repeated, "registered"),
            Event::Draining { id } => info!(executor = %id, "draining: nothing more is placed on it"),
            Event::HeartbeatGap { gap } => s.heartbeat_gaps.observe(gap),
            Event::ExecutorOffline { id, name, at, last_heard } => {
                Master::bump(&s.executors_offline);
                info!(executor = %id, %name, "declared offline");
                let (at, last_heard) = (self.clock.instant(at), self.clock.instant(last_heard));
                self.observe(super::Observation::ExecutorOffline { id: id.0, name, at, last_heard });
            }
            Event::EvictionsHeld { held, at } => {
                warn!(held, "most executors expired at once: holding evictions (this leader may be cut off)");
                self.observe(super::Observation::EvictionsHeld { held, at: self.clock.instant(at) });
            }
            Event::JobMasterLost { job, epoch, reason } => info!(%job, epoch = epoch.0, ?reason, "job master lost"),
            Event::JobMastersRecovered { adopted, lost } => info!(adopted, lost, "job-master recovery ended"),
            Event::JobMastersPlaced { count } => {
                s.job_master_placements.fetch_add(count as u64, Relaxed);
            }
            Event::WorkerPlaced => Master::bump(&s.worker_placements),
            Event::Rejected(why) => s.reject(why),
            Event::WriteFenced => Master::bump(&s.fenced_writes),
            Event::WriteUnknown => Master::bump(&s.unknown_writes),
            Event::CorruptJob { id, problem } => warn!(job = %id, "the job's record is corrupt: {problem}"),
            Event::WriteFailed { what, why } => warn!("{what} write failed: {why}"),
            Event::DispatchRefused { job, epoch } => tracing::debug!(%job, epoch = epoch.0, "dispatch refused"),
            Event::TombstonesSwept { collected, stamped, kept, early } => {
                if early > 0 {
                    warn!(early, "too many tombstones: the oldest collected before their retention ended");
                }
                info!(collected, stamped, kept, "tombstones swept");
            }
            Event::Capacity { at, view } => {
                if self.observed() {
                    self.observe(super::Observation::Capacity(self.capacity_sample(at, view)));
                }
            }
        }
    }
}
