//! A job's status document, as its job master sees the job: built by the job-master runtime each loop turn,
//! published to the executor's host (which answers `QueryJobMaster` from it), persisted under
//! `job-status/<job>` (throttled, and once more as the job master ends), and served to users by the leader's
//! `GetJobStatus`. This module holds the pure parts: the document and its bound ([`StatusDoc::fit`]), when to
//! persist it ([`StatusThrottle`]), and which answer the leader gives ([`plan`], [`choose`]).
//!
//! Invariants kept:
//! - A serialized document is at most [`STATUS_DOCUMENT_MAX`] bytes: [`StatusDoc::fit`] drops the type-specific
//!   detail, then workers, saying what it cut, rather than refuse to publish.
//! - The throttle writes a document only when it differs from the last one written, at most once per
//!   [`STATUS_PERSIST_INTERVAL`], except the final one, which is written whatever the interval.
//! - The leader answers live only from the job's current job-master incarnation; a stored document from an
//!   incarnation newer than the one the leader knows is never shown (it cannot be written: the job master's
//!   writes are fenced on the epoch the leader issued; holding it here too costs nothing).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::time::{Time, WallTime};

/// The largest status document (serialized JSON) a job master publishes, stores or a leader passes on: a status
/// is read by people and scripts, not a data channel, and etcd values should stay far below its 1.5 MiB request
/// limit.
pub const STATUS_DOCUMENT_MAX: usize = 64 * 1024;

/// How often at most a job master writes its changed status to the metastore: progress changes every heartbeat
/// (1 s by default) for every job, and a status is worth a write only as the failover copy of what users see
/// live; a status at most this old after a failover is enough. The final status is written whatever the interval.
pub const STATUS_PERSIST_INTERVAL: Duration = Duration::from_secs(10);

/// Where a job master's job stands, as its status says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobMasterState {
    Running,
    /// Asked to cancel: stopping its workers.
    Canceling,
    Finished,
    Failed,
    Canceled,
}

impl JobMasterState {
    /// Whether the job master ended with it (its status is final).
    pub fn is_final(self) -> bool {
        matches!(self, JobMasterState::Finished | JobMasterState::Failed | JobMasterState::Canceled)
    }
}

/// Where one worker stands, as its job master sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum WorkerPhase {
    /// Wanted, with no incarnation yet (waiting for a placement or its dispatch).
    Waiting,
    /// Dispatched (or recorded by an earlier job master); not heard from yet.
    Starting,
    /// Its heartbeats are accepted.
    Running,
    /// Failed retryably; starts again at `at` (wall clock of the job master).
    Retrying { at: WallTime },
    /// Not wanted any more and not running: its work is done.
    Done,
}

/// One worker's line in a status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerLine {
    pub name: String,
    /// Its current (or last) incarnation's epoch; 0 when it has had none under this job master.
    pub epoch: u64,
    #[serde(flatten)]
    pub phase: WorkerPhase,
    /// What it last said of its progress (empty when nothing).
    pub progress: String,
    /// Retryable failures in a row without progress.
    pub failures: u32,
}

/// The last error the job met and got over (a worker's retryable failure), as the status shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusError {
    pub source: String,
    pub message: String,
    pub at: WallTime,
}

/// A job's status as its job master sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusDoc {
    pub job: String,
    /// The job-master incarnation that made it.
    pub epoch: u64,
    /// The executor hosting that job master (0 when unknown).
    pub executor: u64,
    pub state: JobMasterState,
    /// Why the job failed, with [`JobMasterState::Failed`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub progress: String,
    pub workers: Vec<WorkerLine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<StatusError>,
    /// The job type's own detail ([`super::job_master::JobLogic::status`]); `null` when it gives none.
    #[serde(default)]
    pub detail: serde_json::Value,
    /// What [`StatusDoc::fit`] cut to keep the document within [`STATUS_DOCUMENT_MAX`], if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut: Option<String>,
}

impl StatusDoc {
    /// The document serialized, within [`STATUS_DOCUMENT_MAX`]: a larger one loses its detail first, then its
    /// workers from the last, and says so in `cut`.
    pub fn fit(mut self) -> (StatusDoc, String) {
        let size = |d: &StatusDoc| serde_json::to_string(d).unwrap_or_default();
        let text = size(&self);
        if text.len() <= STATUS_DOCUMENT_MAX {
            return (self, text);
        }
        let whole = text.len();
        self.detail = serde_json::Value::Null;
        self.cut = Some(format!("the status was {whole} bytes, more than {STATUS_DOCUMENT_MAX}: its detail was cut"));
        let workers = self.workers.len();
        loop {
            let text = size(&self);
            if text.len() <= STATUS_DOCUMENT_MAX || self.workers.is_empty() {
                return (self, text);
            }
            let keep = self.workers.len() / 2;
            self.workers.truncate(keep);
            self.progress = super::text::bounded(&self.progress, 256).into_owned();
            self.cut = Some(format!(
                "the status was {whole} bytes, more than {STATUS_DOCUMENT_MAX}: its detail and {} of {workers} \
                 workers were cut",
                workers - keep
            ));
        }
    }
}

/// A status as stored under `job-status/<job>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredStatus {
    /// The job-master incarnation that wrote it (also the document's).
    pub epoch: u64,
    /// When it was written, by the writer's wall clock.
    pub at: WallTime,
    pub status: StatusDoc,
}

/// When a job master writes its status: only a changed document, at most once per interval, and the final one
/// whatever the interval. It remembers what was last written (the serialized document), not what was tried.
#[derive(Clone, Debug)]
pub struct StatusThrottle {
    interval: Duration,
    last: Option<(Time, String)>,
}

impl StatusThrottle {
    pub fn new(interval: Duration) -> StatusThrottle {
        StatusThrottle { interval, last: None }
    }

    /// Whether to write `doc` (serialized) now; `last` says it is the job master's final status.
    pub fn due(&self, now: Time, doc: &str, last: bool) -> bool {
        match &self.last {
            None => true,
            Some((_, written)) if written == doc => false,
            Some(_) if last => true,
            Some((at, _)) => now >= *at + self.interval,
        }
    }

    /// `doc` was written at `now`.
    pub fn on_written(&mut self, now: Time, doc: String) {
        self.last = Some((now, doc));
    }

    /// When a changed document may be written next (none before the first write: at once).
    pub fn next_allowed(&self) -> Option<Time> {
        self.last.as_ref().map(|(at, _)| *at + self.interval)
    }
}

/// What the leader knows of a job when asked for its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobAt {
    /// The epoch of the job's newest job-master incarnation (0 before the first).
    pub epoch: u64,
    /// The executor hosting the current incarnation (none when none runs).
    pub executor: Option<u64>,
    /// Whether the job reached a terminal state (its job master ended).
    pub ended: bool,
}

/// Whom the leader asks first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// The job master on this executor, then the store if it does not answer as the current incarnation.
    AskJobMaster { executor: u64 },
    /// Only the store: no job master runs now (none yet, or the job ended), or its executor's address is unknown.
    StoreOnly { why: &'static str },
}

/// Whom to ask for a job's status. `address_known`: whether the leader knows the hosting executor's address.
pub fn plan(job: JobAt, address_known: bool) -> Plan {
    match job.executor {
        _ if job.ended => Plan::StoreOnly { why: "the job ended" },
        None => Plan::StoreOnly { why: "no job master runs now" },
        Some(_) if !address_known => Plan::StoreOnly { why: "the job master's executor is not online" },
        Some(executor) => Plan::AskJobMaster { executor },
    }
}

/// What the leader answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// The job master's answer, from the current incarnation.
    Live,
    /// The stored status.
    Stored,
    /// No status exists yet (or none that may be shown).
    None,
}

/// Which answer to give: a live one only from the current incarnation (`live_epoch` = the epoch the job master
/// answered with); otherwise a stored one not newer than the current incarnation.
pub fn choose(job: JobAt, live_epoch: Option<u64>, stored_epoch: Option<u64>) -> Choice {
    if live_epoch.is_some_and(|e| e == job.epoch && job.epoch != 0) {
        return Choice::Live;
    }
    match stored_epoch {
        Some(e) if e <= job.epoch => Choice::Stored,
        _ => Choice::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(workers: usize, detail: serde_json::Value) -> StatusDoc {
        StatusDoc {
            job: "j".into(),
            epoch: 3,
            executor: 1,
            state: JobMasterState::Running,
            reason: None,
            progress: "1/2".into(),
            workers: (0..workers)
                .map(|i| WorkerLine {
                    name: format!("w{i}"),
                    epoch: 3_000_001,
                    phase: WorkerPhase::Running,
                    progress: "x".repeat(100),
                    failures: 0,
                })
                .collect(),
            last_error: None,
            detail,
            cut: None,
        }
    }

    #[test]
    fn a_document_reads_as_documented() {
        let mut d = doc(1, serde_json::json!({"k": 1}));
        d.workers[0].phase = WorkerPhase::Retrying { at: WallTime(5) };
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["state"], "running");
        assert_eq!(v["workers"][0]["state"], "retrying");
        assert_eq!(v["workers"][0]["at"], 5);
        assert_eq!(v["detail"]["k"], 1);
        assert!(v.get("cut").is_none() && v.get("reason").is_none());
        let back: StatusDoc = serde_json::from_value(v).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn a_document_too_large_loses_its_detail_then_workers_and_says_so() {
        // (doc, kept detail, kept workers)
        let big = serde_json::Value::String("d".repeat(STATUS_DOCUMENT_MAX));
        let table = [
            (doc(3, serde_json::json!(1)), true, 3),
            (doc(3, big.clone()), false, 3),
            (doc(2000, serde_json::Value::Null), false, 250),
            (doc(2000, big), false, 250),
        ];
        for (d, detail, workers) in table {
            let (fitted, text) = d.clone().fit();
            assert!(text.len() <= STATUS_DOCUMENT_MAX, "{} bytes", text.len());
            assert_eq!(serde_json::from_str::<StatusDoc>(&text).unwrap(), fitted);
            assert_eq!(!fitted.detail.is_null(), detail);
            assert_eq!(fitted.workers.len(), workers);
            assert_eq!(fitted.cut.is_some(), fitted != d);
        }
    }

    #[test]
    fn the_throttle_writes_changes_at_most_once_per_interval_and_the_final_one_at_once() {
        let s = |n| Time::ZERO + Duration::from_secs(n);
        let mut t = StatusThrottle::new(Duration::from_secs(10));
        assert!(t.due(s(0), "a", false), "the first status is written at once");
        t.on_written(s(0), "a".into());
        // (now, doc, final) → due
        let table = [
            (s(1), "a", false, false),
            (s(1), "b", false, false),
            (s(9), "b", false, false),
            (s(10), "b", false, true),
            (s(10), "a", false, false),
            (s(1), "b", true, true),
            (s(1), "a", true, false),
        ];
        for (now, d, last, due) in table {
            assert_eq!(t.due(now, d, last), due, "{now} {d} final={last}");
        }
        assert_eq!(t.next_allowed(), Some(s(10)));
        t.on_written(s(12), "b".into());
        assert!(!t.due(s(21), "c", false) && t.due(s(22), "c", false));
    }

    #[test]
    fn the_leader_asks_the_current_job_master_and_shows_only_what_the_current_epoch_allows() {
        let running = JobAt { epoch: 5, executor: Some(2), ended: false };
        let ended = JobAt { ended: true, ..running };
        let none = JobAt { executor: None, ..running };
        assert_eq!(plan(running, true), Plan::AskJobMaster { executor: 2 });
        assert!(matches!(plan(running, false), Plan::StoreOnly { .. }));
        assert!(matches!(plan(ended, true), Plan::StoreOnly { .. }));
        assert!(matches!(plan(none, true), Plan::StoreOnly { .. }));
        // (job, live epoch, stored epoch) → choice
        let table = [
            (running, Some(5), Some(5), Choice::Live),
            (running, Some(5), None, Choice::Live),
            (running, Some(4), Some(4), Choice::Stored),
            (running, Some(4), None, Choice::None),
            (running, Some(6), Some(6), Choice::None),
            (running, None, Some(3), Choice::Stored),
            (running, None, None, Choice::None),
            (JobAt { epoch: 0, executor: None, ended: false }, Some(0), None, Choice::None),
        ];
        for (job, live, stored, choice) in table {
            assert_eq!(choose(job, live, stored), choice, "{job:?} live={live:?} stored={stored:?}");
        }
    }
}
