//! The term's metastore I/O: what a new term starts from, the guarded writes of the job manager's records and its
//! reads. Moves bytes only: what to write and read, and what the answers mean, is the manager's.

use tracing::{info, warn};

use super::Master;
use crate::core::ids::{ExecutorId, JobId, LeaderEpoch};
use crate::core::job::{CorruptRecord, JobRecord};
use crate::core::manager::{Held, Read, ReadResult, Record, Snapshot, WriteOutcome};
use crate::core::registry::ExecutorRecord;
use crate::core::write_fence::{Attempt, Settled, WriteFence};
use crate::meta::{keys, Cond, LeaderKey, MetaError, Op, TXN_OPS_MAX};

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
                ops.push(Op::Delete { key: keys::job_status(id.as_str()) });
                ops.push(Op::Delete { key: keys::job(id.as_str()) });
            }
            Record::Tombstone { id, request, deleted_at } => {
                let t = crate::core::tombstone::Tombstone { request: request.clone(), deleted_at: *deleted_at };
                ops.push(put(keys::deleted_job(id.as_str()), json("a tombstone", serde_json::to_vec(&t))?));
            }
            Record::DeleteTombstone(id) => ops.push(Op::Delete { key: keys::deleted_job(id.as_str()) }),
            Record::Resource { resource, held } => {
                let Some((job, name)) = resource.split_once('/') else {
                    return Err(format!("cannot write resource {resource:?}: it names no job"));
                };
                let key = keys::resource(job, name);
                ops.push(match held {
                    Held::On(e) => counter(key, e.0),
                    // No executor has id 0.
                    Held::Lost => counter(key, RESOURCE_LOST),
                    Held::Gone => Op::Delete { key },
                });
            }
        }
    }
    Ok(ops)
}

/// A resource record's value for a resource lost with its executor (executor ids start at 1).
const RESOURCE_LOST: u64 = 0;

/// The most operations of a leader's records in one transaction: the rest of etcd's limit, after the fence's put.
pub(crate) const LEADER_TXN_OPS_MAX: usize = TXN_OPS_MAX - 1;

/// Takes the term's write fence under its leader key (before anything is recovered: a deposed leader's write that
/// lands before this is read by the recovery, and none lands after it).
pub(super) async fn take_fence(m: &Master, key: &LeaderKey, epoch: LeaderEpoch) -> Result<WriteFence, String> {
    let (fence, value) = WriteFence::take(epoch);
    let put = Op::Put { key: keys::leader_writes(), value: value.into_bytes(), lease: None };
    match timed(m, m.store.txn(&[Cond::IsLeader(key.clone())], &[put])).await {
        Ok(true) => Ok(fence),
        Ok(false) => Err("deposed before taking the write fence".into()),
        Err(e) => Err(format!("could not take the write fence: {e}")),
    }
}

/// Writes `records` under the term's write fence, in transactions of at most [`LEADER_TXN_OPS_MAX`] records'
/// operations. A transaction that goes unanswered is settled by fencing it off (see [`crate::core::write_fence`]);
/// `Unknown` only when that fails too, and then the fence is lost (`None`): the term cannot write again.
pub(super) async fn persist(
    m: &Master,
    mut fence: WriteFence,
    records: &[Record],
) -> (WriteOutcome, Option<WriteFence>) {
    let ops = match ops_of(records) {
        Ok(ops) => ops,
        Err(e) => return (WriteOutcome::NotApplied(e), Some(fence)),
    };
    if records.iter().any(|r| matches!(r, Record::DeleteExecutor(_))) {
        // The check found executors expired; declaring them offline (durably, before acting on it) comes late.
        crate::buggify::point(&m.fault_points, crate::buggify::Point::BeforeOfflineDeclaration).await;
    }
    // A later transaction's failure leaves the earlier ones applied: the outcome as a whole is not known.
    let partial =
        |i: usize, why: String| if i == 0 { WriteOutcome::NotApplied(why) } else { WriteOutcome::Unknown(why) };
    for (i, chunk) in ops.chunks(LEADER_TXN_OPS_MAX).enumerate() {
        crate::buggify::point(&m.fault_points, crate::buggify::Point::BeforeMetastoreWrite).await;
        let a = fence.attempt();
        let mut guard = vec![compares(&a)];
        if m.planted(crate::planted::Planted::LeaderWritesUnguarded) {
            guard.clear();
        }
        let mut txn = chunk.to_vec();
        txn.push(puts(&a));
        match timed(m, m.store.txn(&guard, &txn)).await {
            Ok(true) => fence.applied(&a),
            Ok(false) => return (WriteOutcome::Fenced, None),
            Err(MetaError::Unknown(why)) => match settle(m, &mut fence, &a).await {
                Ok(Settled::Applied) => {}
                Ok(Settled::FencedOff) => return (partial(i, why), Some(fence)),
                Ok(Settled::TakenOver) => return (WriteOutcome::Fenced, None),
                Err(e) => return (WriteOutcome::Unknown(format!("{why}; and then {e}")), None),
            },
            Err(e) => return (partial(i, e.to_string()), Some(fence)),
        }
    }
    crate::buggify::point(&m.fault_points, crate::buggify::Point::AfterMetastoreWrite).await;
    (WriteOutcome::Written, Some(fence))
}

/// The compare of attempt `a` on the fence key.
fn compares(a: &Attempt) -> Cond {
    Cond::ValueEquals { key: keys::leader_writes(), value: a.expect.clone().into_bytes() }
}

/// The put of attempt `a` on the fence key.
fn puts(a: &Attempt) -> Op {
    Op::Put { key: keys::leader_writes(), value: a.put.clone().into_bytes(), lease: None }
}

/// Settles the unanswered transaction `a`: moves the fence past it, or learns that it was applied or that another
/// leader took over. `Err` when that goes unanswered too.
async fn settle(m: &Master, fence: &mut WriteFence, a: &Attempt) -> Result<Settled, String> {
    let bump = fence.attempt();
    match timed(m, m.store.txn(&[compares(&bump)], &[puts(&bump)])).await {
        Ok(true) => {
            fence.applied(&bump);
            info!(fence = %bump.put, "a write that went unanswered was fenced off: it can no longer apply");
            Ok(Settled::FencedOff)
        }
        Ok(false) => {
            let found = timed(m, m.store.get(&keys::leader_writes()))
                .await
                .map_err(|e| format!("could not read the write fence: {e}"))?;
            Ok(fence.settle(a, found.as_deref()))
        }
        Err(e) => Err(format!("could not fence it off: {e}")),
    }
}

pub(super) async fn read_one(m: &Master, read: &Read) -> Result<ReadResult, String> {
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
            for prefix in
                [keys::workers_prefix, keys::checkpoints_prefix, keys::job_store_prefix].map(|p| p(id.as_str()))
            {
                found.extend(
                    timed(m, store.list(&prefix)).await.map_err(|e| e.to_string())?.into_iter().map(|(k, _)| k),
                );
            }
            ReadResult::Keys(found)
        }
        Read::LeaderEpoch => {
            let key = keys::leader_epoch();
            let stored = timed(m, store.get(&key)).await.map_err(|e| e.to_string())?;
            ReadResult::Counter(counter(&key, stored)?)
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

/// A stored counter: absent is 0; anything but a decimal number is an error, never 0 (read as 0, a counter would
/// hand out ids and epochs again).
fn counter(key: &str, stored: Option<Vec<u8>>) -> Result<u64, String> {
    stored.map_or(Ok(0), |v| crate::meta::parse_counter(key, &v).map_err(|e| e.to_string()))
}

/// How much a recovery read: records listed and their bytes (keys and values).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ReadSize {
    pub records: usize,
    pub bytes: usize,
}

impl ReadSize {
    fn add(&mut self, listed: &[(String, Vec<u8>)]) {
        self.records += listed.len();
        self.bytes += listed.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    }
}

/// How long recovery waits before it sends a read again that was not answered or was refused.
const RECOVERY_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// A recovery read, sent again while it fails in a way the next attempt may get past (it timed out, or the
/// metastore was unavailable) and this master may still act in `epoch`: one unanswered read must not give the term
/// up (a new term is a new campaign, and its recovery meets the same metastore; `sim/regressions.rs`, seed 301094).
/// A corrupt value or a lost lease ends recovery at once; so does the end of acting (the step-down deadline bounds
/// the retries).
async fn patiently<T, F, Fut>(m: &Master, epoch: LeaderEpoch, read: F) -> Result<T, String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, MetaError>>,
{
    loop {
        let e = match timed(m, read()).await {
            Ok(v) => return Ok(v),
            Err(e @ (MetaError::Unavailable(_) | MetaError::Unknown(_))) => e,
            Err(e) => return Err(e.to_string()),
        };
        if m.lock().leadership.acting(m.clock.now()) != Some(epoch) {
            return Err(e.to_string());
        }
        warn!(master = %m.name(), epoch = epoch.0, "a recovery read failed: {e}; reading again");
        m.clock.sleep(RECOVERY_RETRY).await;
    }
}

/// Reads what a new term starts from, and how much it read.
pub(super) async fn recover(m: &Master, epoch: LeaderEpoch) -> Result<(Snapshot, ReadSize), String> {
    let store = &m.store;
    let mut s = Snapshot::default();
    let mut size = ReadSize::default();
    let key = keys::executors_prefix();
    let executors = patiently(m, epoch, || store.list(&key)).await?;
    size.add(&executors);
    for (k, v) in executors {
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
    let key = keys::executor_next_id();
    let next = patiently(m, epoch, || store.get(&key)).await?;
    s.next_executor_id = counter(&keys::executor_next_id(), next)?;
    let key = keys::jobs_prefix();
    let jobs = patiently(m, epoch, || store.list(&key)).await?;
    size.add(&jobs);
    for (k, v) in jobs {
        // Where workers' resources live, kept with the job records.
        if let Some((job, name)) = keys::resource_of(&k) {
            match crate::meta::parse_counter(&k, &v) {
                Ok(id) => s.resources.push((
                    format!("{job}/{name}"),
                    if id == RESOURCE_LOST { Held::Lost } else { Held::On(ExecutorId(id)) },
                )),
                Err(e) => warn!(key = %k, "a resource record does not decode: {e}; its worker is placed anew"),
            }
            continue;
        }
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
    let key = keys::job_next_epoch();
    let next = patiently(m, epoch, || store.get(&key)).await?;
    s.next_job_epoch = counter(&keys::job_next_epoch(), next)?;
    Ok((s, size))
}
