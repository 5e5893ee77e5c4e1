//! A job's own key-value store: small values a job type keeps beside its workers' checkpoints, read and written by
//! every worker of the job (TiFlow's per-job metastore), and deleted with the job.
//!
//! Stored at `job-store/<job>/<key>`. Every write is fenced as a checkpoint is: it compares the writing worker's
//! record (`workers/<job>/<worker>` = its epoch), so a superseded incarnation writes nothing, whatever the network
//! holds up. A write the metastore did not answer may have landed ([`Saved::Unknown`]): write the same value again
//! (or a newer one). Reads are retried until the metastore answers, as a checkpoint's: a worker that cannot reach
//! the metastore waits, and its link (heartbeats, self-fence, verdicts) ends it if it must.
//!
//! What a value means is the job type's: the store orders nothing between workers. Two workers writing one key
//! both land, the later one wins; give each worker its own keys (`sums/w3`) or make the values idempotent.

use thiserror::Error;
use tracing::debug;

use super::checkpoint::{Saved, READ_RETRY};
use crate::core::ids::{Epoch, TaskId};
use crate::meta::{keys, Cond, MetaStore, Op};

/// The longest key, in bytes.
pub const KEY_MAX: usize = 128;
/// The largest value, in bytes: a store for small values (results, offsets, markers), far below a metastore
/// transaction's limit (etcd's 1.5 MiB request), so that a job's deletion stays a few transactions.
pub const VALUE_MAX: usize = 64 * 1024;

/// Why the store refused a call.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum StoreError {
    /// A newer incarnation of the writing worker exists: this one must end (see `Interrupted::Superseded`).
    #[error("superseded: a newer incarnation of this worker exists")]
    Superseded,
    /// The key or value is not one the store keeps; the message says what to fix. A bug of the job type.
    #[error("{0}")]
    Refused(String),
}

/// Checks a key: 1 to [`KEY_MAX`] bytes of letters, digits, `.`, `_`, `-` and `/`, with no empty segment (no
/// leading, trailing or doubled `/`), so that listing `a/` never returns `ab`'s keys.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    let refuse = |why: String| Err(StoreError::Refused(format!("job store key {key:?}: {why}")));
    if key.is_empty() || key.len() > KEY_MAX {
        return refuse(format!("is {} bytes long; must be 1 to {KEY_MAX}", key.len()));
    }
    if let Some(c) = key.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))) {
        return refuse(format!("has {c:?}; use letters, digits, '.', '_', '-' and '/'"));
    }
    if key.split('/').any(str::is_empty) {
        return refuse("has an empty segment (a leading, trailing or doubled '/')".into());
    }
    Ok(())
}

/// One worker incarnation's handle on its job's store.
#[derive(Clone)]
pub struct JobStore {
    meta: MetaStore,
    job: String,
    /// The writing worker's record compare (none only with the planted `StoreUnguarded`).
    guard: Option<Cond>,
    task: TaskId,
    epoch: Epoch,
}

impl JobStore {
    /// Incarnation `epoch` of worker `name` (task `task`) of job `job`.
    pub fn new(meta: MetaStore, job: &str, name: &str, task: TaskId, epoch: Epoch) -> JobStore {
        let guard = Cond::ValueEquals { key: keys::worker(job, name), value: epoch.0.to_string().into_bytes() };
        JobStore { meta, job: job.to_owned(), guard: Some(guard), task, epoch }
    }

    /// The same store with its writes unfenced: the planted `StoreUnguarded` (simulation build) only.
    pub(crate) fn unguarded(self) -> JobStore {
        JobStore { guard: None, ..self }
    }

    /// The value under `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        let full = keys::job_store(&self.job, key);
        loop {
            match self.meta.get(&full).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    debug!(task = %self.task, key, "reading the job store: {e}; retrying");
                    tokio::time::sleep(READ_RETRY).await;
                }
            }
        }
    }

    /// Every key under `prefix` (`""` for all, else a key prefix ending in `/` or a whole key's start) with its
    /// value, in key order; the keys as the job type wrote them.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        if !prefix.is_empty() {
            check_key(prefix.strip_suffix('/').unwrap_or(prefix))?;
        }
        let root = keys::job_store_prefix(&self.job);
        let full = format!("{root}{prefix}");
        loop {
            match self.meta.list(&full).await {
                Ok(found) => {
                    let mine = found.into_iter().filter_map(|(k, v)| Some((k.strip_prefix(&root)?.to_owned(), v)));
                    return Ok(mine.collect());
                }
                Err(e) => {
                    debug!(task = %self.task, prefix, "listing the job store: {e}; retrying");
                    tokio::time::sleep(READ_RETRY).await;
                }
            }
        }
    }

    /// One fenced write of `value` under `key`.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<Saved, StoreError> {
        check_key(key)?;
        if value.len() > VALUE_MAX {
            let why = format!("a job store value of {} bytes under {key:?}: at most {VALUE_MAX}", value.len());
            return Err(StoreError::Refused(why));
        }
        let op = Op::Put { key: keys::job_store(&self.job, key), value: value.to_vec(), lease: None };
        self.fenced(key, op).await
    }

    /// One fenced deletion of `key` (nothing happens if it is missing).
    pub async fn delete(&self, key: &str) -> Result<Saved, StoreError> {
        check_key(key)?;
        self.fenced(key, Op::Delete { key: keys::job_store(&self.job, key) }).await
    }

    async fn fenced(&self, key: &str, op: Op) -> Result<Saved, StoreError> {
        match self.meta.txn(self.guard.as_slice(), &[op]).await {
            Ok(true) => Ok(Saved::Yes),
            Ok(false) => Err(StoreError::Superseded),
            Err(e) => {
                debug!(task = %self.task, epoch = self.epoch.0, key, "job store write: {e}; it may have landed");
                Ok(Saved::Unknown)
            }
        }
    }
}

/// The store's contract on any metastore (given a fresh one): the embedded store's unit test and the simulated
/// etcd's scenario (`sim/meta_contract.rs`) run it. `Err` names the first expectation broken.
pub async fn contract(meta: MetaStore) -> Result<(), String> {
    macro_rules! expect {
        ($got:expr, $want:pat $(if $cond:expr)?, $what:expr) => {
            match $got {
                $want $(if $cond)? => {}
                other => return Err(format!("{}: got {other:?}", $what)),
            }
        };
    }
    let record = |epoch: u64| {
        let put = Op::Put { key: keys::worker("j", "w0"), value: epoch.to_string().into_bytes(), lease: None };
        let meta = meta.clone();
        async move { meta.txn(&[], &[put]).await.map_err(|e| e.to_string()) }
    };
    let handle = |name: &str, epoch: u64| {
        let task = TaskId::parse(&format!("j/{name}")).expect("a worker task id");
        JobStore::new(meta.clone(), "j", name, task, Epoch(epoch))
    };
    expect!(record(1).await, Ok(true), "worker record 1");
    let one = handle("w0", 1);
    expect!(one.get("sums/w0").await, Ok(None), "a key never written");
    expect!(one.put("sums/w0", b"41").await, Ok(Saved::Yes), "a first put");
    expect!(one.put("sums/w0", b"42").await, Ok(Saved::Yes), "a second put of the key");
    expect!(one.put("sums/w00", b"x").await, Ok(Saved::Yes), "a put of a longer key");
    expect!(one.put("other", b"y").await, Ok(Saved::Yes), "a put of another key");
    expect!(one.get("sums/w0").await, Ok(Some(v)) if v == b"42", "the last value put");
    let want = [("sums/w0".to_owned(), b"42".to_vec()), ("sums/w00".to_owned(), b"x".to_vec())];
    expect!(one.list("sums/").await, Ok(l) if l == want, "a listing under sums/, in key order");
    expect!(one.list("").await, Ok(l) if l.len() == 3, "a listing of everything");
    expect!(one.list("sums/w0").await, Ok(l) if l.len() == 2, "a prefix without '/' (a key's start)");
    // Another job's store is not this one's.
    let put = Op::Put { key: keys::job_store("j2", "sums/w0"), value: b"no".to_vec(), lease: None };
    expect!(meta.txn(&[], &[put]).await, Ok(true), "another job's key");
    expect!(one.list("").await, Ok(l) if l.len() == 3, "a listing beside another job's key");
    // A newer incarnation's record supersedes incarnation 1: its writes are refused, its reads still answer.
    expect!(record(2).await, Ok(true), "worker record 2");
    expect!(one.put("sums/w0", b"stale").await, Err(StoreError::Superseded), "a superseded put");
    expect!(one.delete("other").await, Err(StoreError::Superseded), "a superseded deletion");
    expect!(one.get("sums/w0").await, Ok(Some(v)) if v == b"42", "the value a superseded put left");
    let two = handle("w0", 2);
    expect!(two.delete("other").await, Ok(Saved::Yes), "a deletion");
    expect!(two.delete("never-written").await, Ok(Saved::Yes), "a deletion of a missing key");
    expect!(two.get("other").await, Ok(None), "a deleted key");
    // A worker without a record (its job master never wrote one) writes nothing.
    expect!(handle("w9", 1).put("a", b"b").await, Err(StoreError::Superseded), "a put without a record");
    // Bad keys and values are refused before anything is sent, naming the problem.
    expect!(two.put("a b", b"").await, Err(StoreError::Refused(m)) if m.contains("' '"), "a bad key");
    let big = vec![0u8; VALUE_MAX + 1];
    expect!(two.put("big", &big).await, Err(StoreError::Refused(m)) if m.contains("at most 65536"), "a big value");
    expect!(two.put("big", &big[..VALUE_MAX]).await, Ok(Saved::Yes), "the largest value");
    expect!(two.list("/x").await, Err(StoreError::Refused(_)), "a bad prefix");
    // Clean up, so the suite leaves no key behind.
    for key in [keys::worker("j", "w0"), keys::job_store("j2", "sums/w0")]
        .into_iter()
        .chain(["sums/w0", "sums/w00", "big"].map(|k| keys::job_store("j", k)))
    {
        expect!(meta.txn(&[], &[Op::Delete { key }]).await, Ok(true), "cleaning up");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_table() {
        let long = "k".repeat(KEY_MAX);
        for ok in ["a", "sums/w3", "a.b_c-d/e", long.as_str()] {
            assert_eq!(check_key(ok), Ok(()), "{ok}");
        }
        let too_long = "k".repeat(KEY_MAX + 1);
        let table = [
            ("", "must be 1 to 128"),
            (too_long.as_str(), "is 129 bytes long"),
            ("a b", "has ' '"),
            ("é", "has 'é'"),
            ("/a", "empty segment"),
            ("a/", "empty segment"),
            ("a//b", "empty segment"),
        ];
        for (key, want) in table {
            let got = check_key(key).unwrap_err().to_string();
            assert!(got.contains(want), "{key:?}: {got}");
        }
    }

    #[tokio::test]
    async fn the_store_on_the_embedded_metastore() {
        contract(MetaStore::embedded("test", None).unwrap()).await.unwrap();
    }
}
