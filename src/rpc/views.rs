//! The API's resources as JSON: the views `--output json` prints and the HTTP API serves (one schema for both).
//! Server replies become views here; nothing fails or panics on what a server sends: enum values this build does
//! not know show as `UNKNOWN(7)`, and a job configuration that is not JSON is shown as a string.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::rpc::pb;

/// A job, as `job get|create|cancel` and each row of `job list` show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobView {
    pub id: String,
    #[serde(rename = "type")]
    pub job_type: String,
    /// The project the job belongs to; `null` for a corrupt record (whose project cannot be read).
    pub project: Option<String>,
    /// Lowercase: `created`, `running`, `canceling`, `finished`, `canceled`, `failed`, or `corrupt` (its stored
    /// record does not decode; `error` says where); `UNKNOWN(n)` otherwise.
    pub state: String,
    pub restarts: u32,
    /// The newest job master incarnation's epoch; 0 before the first.
    pub epoch: u64,
    /// The executor hosting the current job master; `null` when none.
    pub executor_id: Option<u64>,
    /// Slots the job master takes (the server's 0 is its default, 1).
    pub cost: u32,
    pub selectors: Vec<SelectorView>,
    pub error: Option<JobErrorView>,
    /// What the running job master last said of its progress, e.g. `412/800 steps`; `null` when the leader
    /// has heard nothing (it keeps this in memory only: a new leader starts without it).
    pub progress: Option<String>,
    /// Why the job waits for a placement (no executor can take it: which filter, how many slots); `null` once
    /// it is placed.
    pub waiting: Option<String>,
    /// The job's configuration as JSON when the server sent it (`--config`); a string if it is not valid JSON.
    pub config: Option<serde_json::Value>,
    /// The last error the job met and got over while it runs (a worker's retryable failure); `null` when none.
    pub last_error: Option<LastErrorView>,
    /// Where its workers keep local resources (an exec worker's scratch directory), by worker and name.
    pub resources: Vec<JobResourceView>,
}

/// One local resource of a job's worker and the executor holding it (`executor_name` `null` once it is no longer
/// registered).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobResourceView {
    pub worker: String,
    pub name: String,
    pub executor_id: u64,
    pub executor_name: Option<String>,
}

/// The last error a running job got over: who failed, what it said, whether it is started again, and when (the
/// job master's wall clock: milliseconds since the Unix epoch, and the same as UTC text).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LastErrorView {
    pub source: String,
    pub message: String,
    pub retryable: bool,
    pub at_unix_ms: u64,
    pub at: String,
}

impl From<&pb::LastError> for LastErrorView {
    fn from(e: &pb::LastError) -> LastErrorView {
        LastErrorView {
            source: e.source.clone(),
            message: e.message.clone(),
            retryable: e.retryable,
            at_unix_ms: e.at_unix_ms,
            at: utc_text(e.at_unix_ms),
        }
    }
}

/// Milliseconds since the Unix epoch as UTC text, `2026-12-05T12:30:01Z` (proleptic Gregorian calendar).
pub fn utc_text(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm, for days ≥ 0).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3_600, rest % 3_600 / 60, rest % 60)
}

/// A label selector: `op` is `eq`, `neq` or `regex` (`UNKNOWN(n)` otherwise).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SelectorView {
    pub key: String,
    pub op: String,
    pub target: String,
}

/// Why a job failed, as the server put it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobErrorView {
    pub reason: String,
    pub message: String,
}

/// One page of `job list`, or all of them with `--all`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobListView {
    pub jobs: Vec<JobView>,
    /// Pass it to `--page-token` for the next page; `null` on the last page and with `--all`.
    pub next_page_token: Option<String>,
}

/// An executor, as `cluster executors` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExecutorView {
    pub id: u64,
    pub name: String,
    pub address: String,
    /// `online` or `unconfirmed` (restored by a new leader, not yet heard from); `UNKNOWN(n)` otherwise.
    pub status: String,
    pub used: u32,
    pub capacity: u32,
    pub labels: BTreeMap<String, String>,
    pub last_heartbeat_age_ms: u64,
    /// How many workers' local resources the leader has noted on it.
    pub resources: u32,
}

/// `cluster executors`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExecutorListView {
    pub executors: Vec<ExecutorView>,
}

/// A master, as `cluster masters` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MasterView {
    pub name: String,
    pub address: String,
    pub is_leader: bool,
}

/// `cluster masters`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MasterListView {
    pub masters: Vec<MasterView>,
}

/// `cluster leader`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeaderView {
    pub name: String,
    pub address: String,
    pub leader_epoch: u64,
}

/// `job status` and `GET /api/v1/jobs/{id}/status`: a job's status as its job master sees it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobStatusView {
    pub id: String,
    /// `live` (from the job's current job master), `stored` (what a job master last stored), `none` (no status
    /// yet), or `UNKNOWN(n)`.
    pub source: String,
    /// The job-master incarnation that made the status (0 with `none`).
    pub epoch: u64,
    /// The job's newest job-master incarnation, as the leader knows it.
    pub job_epoch: u64,
    /// With `stored`: when it was stored (milliseconds since the Unix epoch, the job master's clock).
    pub at_unix_ms: Option<u64>,
    /// Why the answer is not live, when it is not.
    pub note: Option<String>,
    /// The status document (`null` with `none`; a string if it is not JSON): `job`, `epoch`, `executor`, `state`,
    /// `reason`, `progress`, `workers` (each `name`, `epoch`, `state`, `at` when retrying, `progress`, `failures`),
    /// `last_error`, `detail` (the job type's own), `cut` (what was cut to keep it within 64 KiB).
    pub status: serde_json::Value,
}

impl From<&pb::JobStatus> for JobStatusView {
    fn from(s: &pb::JobStatus) -> JobStatusView {
        let source = match pb::JobStatusSource::try_from(s.source) {
            Ok(pb::JobStatusSource::Live) => "live".to_owned(),
            Ok(pb::JobStatusSource::Stored) => "stored".to_owned(),
            Ok(pb::JobStatusSource::None) => "none".to_owned(),
            _ => format!("UNKNOWN({})", s.source),
        };
        let status = if s.document.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&s.document).unwrap_or_else(|_| serde_json::Value::String(s.document.clone()))
        };
        JobStatusView {
            id: s.id.clone(),
            source,
            epoch: s.epoch,
            job_epoch: s.job_epoch,
            at_unix_ms: (s.at_unix_ms != 0).then_some(s.at_unix_ms),
            note: (!s.note.is_empty()).then(|| s.note.clone()),
            status,
        }
    }
}

/// `job delete`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeletedView {
    pub id: String,
    pub deleted: bool,
}

/// `cluster resign`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResignedView {
    /// The master that was asked.
    pub address: String,
    pub resigned: bool,
}

/// The lowercase name of a job state, `UNKNOWN(n)` for a value this client does not know.
pub fn job_state_name(value: i32) -> String {
    let name = match pb::JobState::try_from(value) {
        Ok(pb::JobState::Unspecified) => "unspecified",
        Ok(pb::JobState::Created) => "created",
        Ok(pb::JobState::Running) => "running",
        Ok(pb::JobState::Canceling) => "canceling",
        Ok(pb::JobState::Finished) => "finished",
        Ok(pb::JobState::Canceled) => "canceled",
        Ok(pb::JobState::Failed) => "failed",
        Ok(pb::JobState::Corrupt) => "corrupt",
        Err(_) => return unknown(value),
    };
    name.to_owned()
}

/// The lowercase name of an executor status, `UNKNOWN(n)` for a value this client does not know.
pub fn executor_status_name(value: i32) -> String {
    let name = match pb::ExecutorStatus::try_from(value) {
        Ok(pb::ExecutorStatus::Unspecified) => "unspecified",
        Ok(pb::ExecutorStatus::Online) => "online",
        Ok(pb::ExecutorStatus::Unconfirmed) => "unconfirmed",
        Ok(pb::ExecutorStatus::Draining) => "draining",
        Err(_) => return unknown(value),
    };
    name.to_owned()
}

/// The lowercase name of a selector operator, `UNKNOWN(n)` for a value this client does not know.
pub fn selector_op_name(value: i32) -> String {
    let name = match pb::SelectorOp::try_from(value) {
        Ok(pb::SelectorOp::Unspecified) => "unspecified",
        Ok(pb::SelectorOp::Eq) => "eq",
        Ok(pb::SelectorOp::Neq) => "neq",
        Ok(pb::SelectorOp::Regex) => "regex",
        Err(_) => return unknown(value),
    };
    name.to_owned()
}

fn unknown(value: i32) -> String {
    format!("UNKNOWN({value})")
}

impl From<&pb::Selector> for SelectorView {
    fn from(s: &pb::Selector) -> SelectorView {
        SelectorView { key: s.key.clone(), op: selector_op_name(s.op), target: s.target.clone() }
    }
}

impl SelectorView {
    /// The command-line form `key=value`, `key!=value` or `key~regex`; an unknown operator shows its number.
    pub fn command_line_form(&self) -> String {
        let op = match self.op.as_str() {
            "eq" => "=".to_owned(),
            "neq" => "!=".to_owned(),
            "regex" => "~".to_owned(),
            other => format!(" {other} "),
        };
        format!("{}{}{}", self.key, op, self.target)
    }
}

impl From<&pb::Job> for JobView {
    fn from(job: &pb::Job) -> JobView {
        let error = job
            .error
            .as_ref()
            .filter(|e| !(e.reason.is_empty() && e.message.is_empty()))
            .map(|e| JobErrorView { reason: e.reason.clone(), message: e.message.clone() });
        JobView {
            id: job.id.clone(),
            job_type: job.r#type.clone(),
            project: (!job.project.is_empty()).then(|| job.project.clone()),
            state: job_state_name(job.state),
            restarts: job.restarts,
            epoch: job.epoch,
            executor_id: (job.executor_id != 0).then_some(job.executor_id),
            cost: job.cost.max(1),
            selectors: job.selectors.iter().map(SelectorView::from).collect(),
            error,
            progress: (!job.progress.is_empty()).then(|| job.progress.clone()),
            waiting: (!job.waiting.is_empty()).then(|| job.waiting.clone()),
            config: config_value(&job.config),
            last_error: job.last_error.as_ref().map(LastErrorView::from),
            resources: job
                .resources
                .iter()
                .map(|r| JobResourceView {
                    worker: r.worker.clone(),
                    name: r.name.clone(),
                    executor_id: r.executor_id,
                    executor_name: (!r.executor_name.is_empty()).then(|| r.executor_name.clone()),
                })
                .collect(),
        }
    }
}

/// A job configuration as the server sent it: parsed JSON, or the text itself when it is not JSON.
fn config_value(bytes: &[u8]) -> Option<serde_json::Value> {
    if bytes.is_empty() {
        return None;
    }
    Some(
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned())),
    )
}

impl From<&pb::Executor> for ExecutorView {
    fn from(e: &pb::Executor) -> ExecutorView {
        ExecutorView {
            id: e.id,
            name: e.name.clone(),
            address: e.address.clone(),
            status: executor_status_name(e.status),
            used: e.used,
            capacity: e.capacity,
            // The wire map has no order; the view's is by key.
            labels: e.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            last_heartbeat_age_ms: e.last_heartbeat_age_ms,
            resources: e.resources,
        }
    }
}

impl From<&pb::Master> for MasterView {
    fn from(m: &pb::Master) -> MasterView {
        MasterView { name: m.name.clone(), address: m.address.clone(), is_leader: m.is_leader }
    }
}

impl From<&pb::GetLeaderResponse> for LeaderView {
    fn from(l: &pb::GetLeaderResponse) -> LeaderView {
        LeaderView { name: l.name.clone(), address: l.address.clone(), leader_epoch: l.leader_epoch }
    }
}

/// Any view as pretty-printed JSON, with a final newline.
pub fn to_json<T: Serialize>(view: &T) -> String {
    // The views hold only strings, numbers, string-keyed maps and JSON values: serializing cannot fail.
    let mut text = serde_json::to_string_pretty(view).expect("views serialize: string keys and plain values only");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_text_table() {
        let table = [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400_000, "2000-02-29T00:00:00Z"),
            (1_796_472_601_999, "2026-12-05T12:10:01Z"),
            (4_102_444_799_000, "2099-12-31T23:59:59Z"),
        ];
        for (ms, text) in table {
            assert_eq!(utc_text(ms), text, "{ms}");
        }
    }
}

/// `GET /api/v1/jobs/{id}/logs`: where each incarnation's logs are, and a chunk of one stream when a worker is named.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobLogsView {
    pub id: String,
    pub sources: Vec<LogSourceView>,
    pub chunk: Option<LogChunkView>,
    /// Executors that did not answer, or why no chunk came.
    pub note: Option<String>,
}

/// One incarnation's logs and the executor holding them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogSourceView {
    pub worker: String,
    pub epoch: u64,
    pub executor_id: u64,
    pub executor_name: String,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// How its command ended (`null` while it runs or when not known).
    pub exit: Option<String>,
}

/// A chunk of one stream: `text` is its bytes as UTF-8 (invalid sequences replaced); ask again from `next_offset`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogChunkView {
    pub worker: String,
    pub epoch: u64,
    /// `stdout` or `stderr`.
    pub stream: String,
    pub start: u64,
    pub next_offset: u64,
    /// Everything the stream wrote so far.
    pub total: u64,
    /// Bytes before `start`, from the offset asked for, that the executor's cap dropped.
    pub dropped: u64,
    pub exit: Option<String>,
    pub text: String,
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

impl JobLogsView {
    pub fn of(id: &str, r: &pb::JobLogsResponse) -> JobLogsView {
        let sources = r
            .sources
            .iter()
            .filter_map(|s| {
                let i = s.incarnation.as_ref()?;
                Some(LogSourceView {
                    worker: i.worker.clone(),
                    epoch: i.epoch,
                    executor_id: s.executor_id,
                    executor_name: s.executor_name.clone(),
                    stdout_bytes: i.stdout_bytes,
                    stderr_bytes: i.stderr_bytes,
                    exit: non_empty(&i.exit),
                })
            })
            .collect();
        let chunk = r.chunk.as_ref().map(|c| LogChunkView {
            worker: c.worker.clone(),
            epoch: c.epoch,
            stream: if c.stream == pb::LogStream::Stderr as i32 { "stderr" } else { "stdout" }.to_owned(),
            start: c.start,
            next_offset: c.start + c.data.len() as u64,
            total: c.total,
            dropped: c.dropped,
            exit: non_empty(&c.exit),
            text: String::from_utf8_lossy(&c.data).into_owned(),
        });
        JobLogsView { id: id.to_owned(), sources, chunk, note: non_empty(&r.note) }
    }
}
