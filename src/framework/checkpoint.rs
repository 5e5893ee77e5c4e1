//! A worker's checkpoint: its job type's state, durable, written only by the worker's current incarnation.
//!
//! Stored at `checkpoints/<job>/<worker>` as the job type's state (a JSON object) flattened beside three keys of
//! the framework's: `epoch` (the incarnation that wrote it), `stopped` (written as that incarnation's last act,
//! when its executor drained: it runs no more) and `seq` (the writes accepted so far, across incarnations). Every
//! write compares the worker's record (`workers/<job>/<worker>` = its epoch, written by its job master before the
//! dispatch), so a superseded incarnation's write is refused and a checkpoint never goes backwards; a worker reads
//! its checkpoint after that record was written, so it resumes from the last one any earlier incarnation wrote.
//!
//! `seq` makes the rule checkable for every job type: within an incarnation, each accepted write is the previous
//! one plus one, and a write whose outcome is unknown is sent again with the same number (so one that landed is
//! overwritten by the same step, never skipped). Values written before `seq` existed read as 0.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::task::{ExecutorObservation, TaskEnv};
use crate::core::ids::{Epoch, TaskId};
use crate::core::planted::Planted;
use crate::meta::{keys, Cond, MetaStore, Op};

/// How long a worker waits before reading its checkpoint again when the metastore did not answer.
pub const READ_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// The keys the framework keeps beside a job type's state: a state may not have them.
pub const RESERVED_KEYS: [&str; 3] = ["epoch", "stopped", "seq"];

/// A checkpoint as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored<S> {
    /// First, so a value begins with the job type's own keys.
    #[serde(flatten)]
    pub state: S,
    /// The incarnation that wrote it.
    pub epoch: Epoch,
    /// Written by incarnation `epoch` as its last act, when its executor drained: that incarnation runs no more,
    /// so a job master recovering need not wait for it to check in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
    /// Accepted writes so far, across incarnations.
    #[serde(default)]
    pub seq: u64,
}

/// Decodes a stored checkpoint (none when the key holds nothing).
pub fn decode<S: DeserializeOwned>(bytes: Option<&[u8]>) -> Result<Option<Stored<S>>, String> {
    bytes.map(serde_json::from_slice::<Stored<S>>).transpose().map_err(|e| e.to_string())
}

/// Reads worker `name`'s checkpoint, trying again every [`READ_RETRY`] until the metastore answers (the caller
/// bounds the wait: a worker's link, a job master's).
pub async fn read_until_answered<S: DeserializeOwned>(
    meta: &MetaStore,
    job: &str,
    name: &str,
) -> Result<Option<Stored<S>>, String> {
    loop {
        match meta.get(&keys::checkpoint(job, name)).await {
            Ok(v) => return decode(v.as_deref()).map_err(|e| format!("checkpoint of {job}/{name}: {e}")),
            Err(e) => {
                debug!(job, worker = name, "reading a checkpoint: {e}; retrying");
                tokio::time::sleep(READ_RETRY).await;
            }
        }
    }
}

/// Why a checkpoint was not written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaveError {
    /// The fenced write was refused: a newer incarnation of the worker exists.
    Superseded,
    /// The job type's state cannot be stored (not a JSON object, or it has a key the framework keeps): a bug of the
    /// job type, which no retry mends.
    BadState(String),
}

/// Encodes `state` as stored, or says why it cannot be.
pub fn encode<S: Serialize>(state: &S, epoch: Epoch, stopped: bool, seq: u64) -> Result<Vec<u8>, SaveError> {
    let bad = |why: String| SaveError::BadState(format!("a checkpoint's state {why}"));
    match serde_json::to_value(state) {
        Ok(serde_json::Value::Object(map)) => {
            if let Some(key) = RESERVED_KEYS.iter().find(|k| map.contains_key(**k)) {
                return Err(bad(format!("has the key \"{key}\", which the framework keeps beside it")));
            }
        }
        Ok(other) => return Err(bad(format!("must be a JSON object, not {other}"))),
        Err(e) => return Err(bad(format!("does not encode: {e}"))),
    }
    serde_json::to_vec(&Stored { state, epoch, stopped, seq }).map_err(|e| bad(format!("does not encode: {e}")))
}

/// How a write ended, when it was not refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Saved {
    Yes,
    /// The metastore did not answer: the write may have landed. The next write sends the same step again.
    Unknown,
}

/// One incarnation's checkpoints: what it restored, and its fenced writes.
pub struct Checkpoints<S> {
    meta: MetaStore,
    key: String,
    /// The worker record's compare (none under the `checkpoint-unguarded` switch).
    guard: Option<Cond>,
    task: TaskId,
    epoch: Epoch,
    /// The last state known durable (restored or acknowledged) and its sequence number.
    state: S,
    seq: u64,
}

impl<S: Serialize + DeserializeOwned + Clone + Default> Checkpoints<S> {
    /// Incarnation `epoch` of worker `name` (task `task`) of job `job`: reads its checkpoint until answered.
    /// Returns its writer and the state restored (none when no checkpoint exists). A value that does not decode
    /// is an error: the incarnation cannot know where to resume.
    pub async fn open(
        env: &TaskEnv,
        meta: MetaStore,
        job: &str,
        name: &str,
        task: TaskId,
        epoch: Epoch,
    ) -> Result<(Checkpoints<S>, Option<S>), String> {
        let guard = Cond::ValueEquals { key: keys::worker(job, name), value: epoch.0.to_string().into_bytes() };
        let guard = (!env.planted(Planted::CheckpointUnguarded)).then_some(guard);
        let restored = read_until_answered::<S>(&meta, job, name).await?;
        let (state, seq) = restored.as_ref().map_or((S::default(), 0), |s| (s.state.clone(), s.seq));
        let key = keys::checkpoint(job, name);
        let cps = Checkpoints { meta, key, guard, task, epoch, state, seq };
        Ok((cps, restored.map(|s| s.state)))
    }

    fn guards(&self) -> &[Cond] {
        self.guard.as_slice()
    }

    /// One fenced write of `state` as the next step. Observed for the simulator's checkers when accepted.
    pub async fn try_save(&mut self, env: &TaskEnv, state: &S) -> Result<Saved, SaveError> {
        let seq = self.seq + 1;
        let value = encode(state, self.epoch, false, seq)?;
        // Computed, not yet written: the write may arrive after this incarnation was superseded.
        env.before_checkpoint_write().await;
        match self.meta.txn(self.guards(), &[Op::Put { key: self.key.clone(), value, lease: None }]).await {
            Ok(true) => {
                self.state = state.clone();
                self.seq = seq;
                // Debug: one line per step. The real-process chaos test turns it on to see a resumed incarnation act.
                debug!(task = %self.task, epoch = self.epoch.0, seq, "checkpoint written");
                env.observe(ExecutorObservation::Checkpoint { task: self.task.clone(), epoch: self.epoch, seq });
                Ok(Saved::Yes)
            }
            // The worker's record holds another epoch: a newer incarnation exists.
            Ok(false) => Err(SaveError::Superseded),
            Err(e) => {
                debug!(task = %self.task, "checkpoint write: {e}; the next write sends this step again");
                Ok(Saved::Unknown)
            }
        }
    }

    /// Writes the last durable state again, saying this incarnation stopped (its executor drains), within the
    /// executor's RPC timeout: best effort (without it, a recovering job master waits for the incarnation to
    /// check in). Observed as the incarnation's quiescence whatever the answer, unless refused.
    pub async fn mark_stopped(&mut self, env: &TaskEnv) -> Result<(), SaveError> {
        let value = encode(&self.state, self.epoch, true, self.seq)?;
        let put = [Op::Put { key: self.key.clone(), value, lease: None }];
        match tokio::time::timeout(env.rpc_timeout, self.meta.txn(self.guards(), &put)).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return Err(SaveError::Superseded),
            Ok(Err(_)) | Err(_) => debug!(task = %self.task, "the stopped checkpoint was not confirmed"),
        }
        env.observe(ExecutorObservation::TaskQuiesced { task: self.task.clone(), epoch: self.epoch });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
    struct Counter {
        counter: u64,
    }

    #[test]
    fn stored_values_decode_old_and_new() {
        // (bytes, (counter, epoch, stopped, seq))
        type Row<'a> = (&'a [u8], Option<(u64, u64, bool, u64)>);
        let table: &[Row] = &[
            // Written before `seq` existed (the standalone legacy fixture's shapes).
            (br#"{"counter":5,"epoch":3}"#, Some((5, 3, false, 0))),
            (br#"{"counter":23,"epoch":2000001,"stopped":true}"#, Some((23, 2000001, true, 0))),
            (br#"{"counter":7,"epoch":9,"seq":7}"#, Some((7, 9, false, 7))),
        ];
        for (bytes, want) in table {
            let got = decode::<Counter>(Some(bytes)).unwrap().map(|s| (s.state.counter, s.epoch.0, s.stopped, s.seq));
            assert_eq!(&got, want, "{}", String::from_utf8_lossy(bytes));
        }
        assert_eq!(decode::<Counter>(None), Ok(None));
        for bad in [&b"five"[..], br#"{"epoch":3}"#, br#"{"counter":1}"#] {
            assert!(decode::<Counter>(Some(bad)).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_state_that_is_no_object_or_has_a_reserved_key_is_refused() {
        #[derive(Serialize)]
        struct Clash {
            seq: u32,
        }
        let err = |r: Result<Vec<u8>, SaveError>| match r {
            Err(SaveError::BadState(m)) => m,
            other => panic!("{other:?}"),
        };
        let m = err(encode(&Clash { seq: 1 }, Epoch(1), false, 1));
        assert_eq!(m, "a checkpoint's state has the key \"seq\", which the framework keeps beside it");
        let m = err(encode(&5u64, Epoch(1), false, 1));
        assert_eq!(m, "a checkpoint's state must be a JSON object, not 5");
        assert!(encode(&Counter { counter: 1 }, Epoch(1), false, 1).is_ok());
    }

    #[test]
    fn stored_values_begin_with_the_state_and_omit_a_false_stopped() {
        let s = Stored { state: Counter { counter: 5 }, epoch: Epoch(7000001), stopped: false, seq: 5 };
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"counter":5,"epoch":7000001,"seq":5}"#);
        assert_eq!(encode(&s.state, s.epoch, false, 5).unwrap(), serde_json::to_vec(&s).unwrap());
        let s = Stored { stopped: true, ..s };
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"counter":5,"epoch":7000001,"stopped":true,"seq":5}"#);
    }

    /// The contract on a real store (the embedded one): a write goes only under the incarnation's worker record,
    /// numbers steps from what it restored, is refused once a newer incarnation's record is written, and the
    /// stopped marker keeps the last accepted state and number.
    #[tokio::test]
    async fn writes_are_fenced_numbered_and_the_marker_keeps_the_last_step() {
        use std::sync::{Arc, Mutex};
        let meta = MetaStore::embedded("test", None).unwrap();
        let seen: Arc<Mutex<Vec<ExecutorObservation>>> = Arc::default();
        let sink = seen.clone();
        let observer: crate::framework::task::ExecutorObserver =
            Arc::new(move |_: &str, o: ExecutorObservation| sink.lock().unwrap().push(o));
        let env = TaskEnv::for_test(meta.clone(), Some(observer));
        let record =
            |epoch: u64| Op::Put { key: keys::worker("j", "w0"), value: epoch.to_string().into_bytes(), lease: None };
        let task = TaskId::parse("j/w0").unwrap();
        // Incarnation 1: nothing to restore; two steps.
        assert!(meta.txn(&[], &[record(1)]).await.unwrap());
        let (mut one, restored) =
            Checkpoints::<Counter>::open(&env, meta.clone(), "j", "w0", task.clone(), Epoch(1)).await.unwrap();
        assert_eq!(restored, None);
        for c in 1..=2 {
            assert_eq!(one.try_save(&env, &Counter { counter: c }).await, Ok(Saved::Yes));
        }
        // Incarnation 2 takes over: it resumes from step 2, and incarnation 1's next write is refused.
        assert!(meta.txn(&[], &[record(2)]).await.unwrap());
        let (mut two, restored) =
            Checkpoints::<Counter>::open(&env, meta.clone(), "j", "w0", task.clone(), Epoch(2)).await.unwrap();
        assert_eq!(restored, Some(Counter { counter: 2 }));
        assert_eq!(one.try_save(&env, &Counter { counter: 3 }).await, Err(SaveError::Superseded));
        assert_eq!(one.mark_stopped(&env).await, Err(SaveError::Superseded));
        assert_eq!(two.try_save(&env, &Counter { counter: 3 }).await, Ok(Saved::Yes));
        two.mark_stopped(&env).await.unwrap();
        let stored = decode::<Counter>(meta.get(&keys::checkpoint("j", "w0")).await.unwrap().as_deref()).unwrap();
        assert_eq!(stored, Some(Stored { state: Counter { counter: 3 }, epoch: Epoch(2), stopped: true, seq: 3 }));
        let seen = seen.lock().unwrap();
        let steps: Vec<(u64, u64)> = seen
            .iter()
            .filter_map(|o| match o {
                ExecutorObservation::Checkpoint { epoch, seq, .. } => Some((epoch.0, *seq)),
                _ => None,
            })
            .collect();
        assert_eq!(steps, vec![(1, 1), (1, 2), (2, 3)], "only accepted writes are observed, numbered on");
        assert!(matches!(seen.last(), Some(ExecutorObservation::TaskQuiesced { epoch: Epoch(2), .. })));
    }
}
