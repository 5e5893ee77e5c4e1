//! What the client commands print: aligned tables for people, stable JSON for programs.
//!
//! Server replies become views first (the serde structs below, the JSON schema of `--output json`), and views
//! become text through pure functions (data in, `String` out). Nothing here fails or panics on what a server
//! sends: enum values this client does not know print as `UNKNOWN(7)`, control characters in server strings are
//! escaped before they reach a terminal, and a job configuration that is not JSON is shown as a string.

use std::fmt::Write as _;
use std::time::Duration;

use crate::config::format_duration;
use crate::core::ids::ExecutorId;

/// The space between two table columns.
const COLUMN_GAP: usize = 2;
/// What an empty cell shows.
const NONE: &str = "-";

pub use crate::rpc::views::*;

/// `job list`: ID TYPE STATE RESTARTS EPOCH EXECUTOR ERROR.
pub fn jobs_table(jobs: &[JobView]) -> String {
    let rows = jobs
        .iter()
        .map(|j| {
            vec![
                j.id.clone(),
                j.job_type.clone(),
                j.state.clone(),
                j.restarts.to_string(),
                j.epoch.to_string(),
                executor_cell(j.executor_id),
                j.error.as_ref().map_or_else(|| NONE.to_owned(), error_cell),
            ]
        })
        .collect::<Vec<_>>();
    table(&["ID", "TYPE", "STATE", "RESTARTS", "EPOCH", "EXECUTOR", "ERROR"], &rows)
}

/// One job, field by field: what `job get`, `job create`, `job cancel` and `job wait` print.
pub fn job_detail(job: &JobView) -> String {
    let selectors = if job.selectors.is_empty() {
        NONE.to_owned()
    } else {
        job.selectors.iter().map(SelectorView::command_line_form).collect::<Vec<_>>().join(", ")
    };
    let error = job.error.as_ref().map_or_else(
        || NONE.to_owned(),
        |e| match (e.reason.is_empty(), e.message.is_empty()) {
            (false, false) => format!("{}: {}", e.reason, e.message),
            (false, true) => e.reason.clone(),
            _ => e.message.clone(),
        },
    );
    let mut rows = vec![
        vec!["ID".to_owned(), job.id.clone()],
        vec!["TYPE".to_owned(), job.job_type.clone()],
        vec!["STATE".to_owned(), job.state.clone()],
        vec!["PROGRESS".to_owned(), job.progress.clone().unwrap_or_default()],
        vec!["RESTARTS".to_owned(), job.restarts.to_string()],
        vec!["EPOCH".to_owned(), job.epoch.to_string()],
        vec!["EXECUTOR".to_owned(), executor_cell(job.executor_id)],
        vec!["COST".to_owned(), job.cost.to_string()],
        vec!["SELECTORS".to_owned(), selectors],
        vec!["ERROR".to_owned(), error],
    ];
    // Only when its workers keep local resources: where each lives.
    if !job.resources.is_empty() {
        let places = job
            .resources
            .iter()
            .map(|r| {
                let on = match &r.executor_name {
                    Some(name) => format!("{name} ({})", ExecutorId(r.executor_id)),
                    None => ExecutorId(r.executor_id).to_string(),
                };
                format!("{}/{} on {on}", sanitize(&r.worker), sanitize(&r.name))
            })
            .collect::<Vec<_>>()
            .join(", ");
        rows.push(vec!["RESOURCES".to_owned(), places]);
    }
    if let Some(e) = &job.last_error {
        let how = if e.retryable { "retryable" } else { "terminal" };
        rows.push(vec!["LAST ERROR".to_owned(), format!("{} ({how}) at {}: {}", e.source, e.at, e.message)]);
    }
    // Only while the job waits for a placement: why.
    if let Some(waiting) = &job.waiting {
        rows.insert(4, vec!["WAITING".to_owned(), waiting.clone()]);
    }
    let mut out = String::new();
    let config = job.config.as_ref().map(|c| match c {
        serde_json::Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_else(|_| other.to_string()),
    });
    match config {
        // A one-line configuration fits the table; a longer one follows it, indented.
        Some(text) if !text.contains('\n') => rows.push(vec!["CONFIG".to_owned(), text]),
        Some(text) => {
            out.push_str("CONFIG:\n");
            for line in text.lines() {
                let _ = writeln!(out, "  {}", sanitize(line));
            }
        }
        None => {}
    }
    let mut text = key_values(&rows);
    text.push_str(&out);
    text
}

/// `job status`: where the answer came from and how old it is, the job master's state and progress, one line per
/// worker, then the job type's detail. `now_unix_ms`: this machine's wall clock, for a stored status's age.
pub fn job_status_detail(view: &JobStatusView, now_unix_ms: u64) -> String {
    // Every text came from the network (a job type's own words among them): shown without control characters.
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => sanitize(s),
        serde_json::Value::Null => String::new(),
        other => sanitize(&other.to_string()),
    };
    let doc = &view.status;
    let source = match (view.source.as_str(), view.at_unix_ms) {
        ("live", _) => format!("live, from job master epoch {}", view.epoch),
        ("stored", Some(at)) => format!(
            "stored by job master epoch {} (the job's is {}), {} ago",
            view.epoch,
            view.job_epoch,
            format_duration(Duration::from_millis(now_unix_ms.saturating_sub(at)))
        ),
        ("stored", None) => format!("stored by job master epoch {} (the job's is {})", view.epoch, view.job_epoch),
        ("none", _) => "none: no status yet".to_owned(),
        (other, _) => other.to_owned(),
    };
    let mut rows = vec![vec!["ID".to_owned(), view.id.clone()], vec!["SOURCE".to_owned(), source]];
    if let Some(note) = &view.note {
        rows.push(vec!["NOTE".to_owned(), note.clone()]);
    }
    if !doc.is_null() {
        rows.push(vec!["STATE".to_owned(), text(&doc["state"])]);
        if !doc["reason"].is_null() {
            rows.push(vec!["REASON".to_owned(), text(&doc["reason"])]);
        }
        rows.push(vec!["EXECUTOR".to_owned(), executor_cell(doc["executor"].as_u64().filter(|e| *e != 0))]);
        rows.push(vec!["PROGRESS".to_owned(), text(&doc["progress"])]);
        let e = &doc["last_error"];
        if !e.is_null() {
            rows.push(vec![
                "LAST ERROR".to_owned(),
                format!(
                    "{} at {}: {}",
                    text(&e["source"]),
                    e["at"].as_u64().map_or_else(|| text(&e["at"]), utc_text),
                    text(&e["message"])
                ),
            ]);
        }
        if !doc["cut"].is_null() {
            rows.push(vec!["CUT".to_owned(), text(&doc["cut"])]);
        }
    }
    let mut out = key_values(&rows);
    let workers = doc["workers"].as_array().map(Vec::as_slice).unwrap_or_default();
    if !workers.is_empty() {
        out.push_str("WORKERS:\n");
        let rows: Vec<Vec<String>> = workers
            .iter()
            .map(|w| {
                let state = match (text(&w["state"]).as_str(), w["at"].as_u64()) {
                    ("retrying", Some(at)) if at > now_unix_ms => {
                        format!("retrying in {}", format_duration(Duration::from_millis(at - now_unix_ms)))
                    }
                    (state, _) => state.to_owned(),
                };
                vec![text(&w["name"]), text(&w["epoch"]), state, text(&w["failures"]), text(&w["progress"])]
            })
            .collect();
        for line in table(&["NAME", "EPOCH", "STATE", "FAILURES", "PROGRESS"], &rows).lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    let detail = &doc["detail"];
    if !detail.is_null() {
        out.push_str("DETAIL:\n");
        let pretty = serde_json::to_string_pretty(detail).unwrap_or_else(|_| detail.to_string());
        for line in pretty.lines() {
            let _ = writeln!(out, "  {}", sanitize(line));
        }
    }
    out
}

/// `cluster executors`: ID NAME ADDRESS STATUS USED/CAPACITY RESOURCES LABELS LAST-HEARTBEAT.
pub fn executors_table(executors: &[ExecutorView]) -> String {
    let rows = executors
        .iter()
        .map(|e| {
            let labels = if e.labels.is_empty() {
                NONE.to_owned()
            } else {
                e.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
            };
            vec![
                ExecutorId(e.id).to_string(),
                e.name.clone(),
                e.address.clone(),
                e.status.clone(),
                format!("{}/{}", e.used, e.capacity),
                e.resources.to_string(),
                labels,
                format!("{} ago", format_duration(Duration::from_millis(e.last_heartbeat_age_ms))),
            ]
        })
        .collect::<Vec<_>>();
    table(&["ID", "NAME", "ADDRESS", "STATUS", "USED/CAPACITY", "RESOURCES", "LABELS", "LAST-HEARTBEAT"], &rows)
}

/// `cluster masters`: NAME ADDRESS LEADER.
pub fn masters_table(masters: &[MasterView]) -> String {
    let rows = masters
        .iter()
        .map(|m| vec![m.name.clone(), m.address.clone(), if m.is_leader { "yes" } else { "no" }.to_owned()])
        .collect::<Vec<_>>();
    table(&["NAME", "ADDRESS", "LEADER"], &rows)
}

/// `cluster leader`.
pub fn leader_detail(leader: &LeaderView) -> String {
    key_values(&[
        vec!["NAME".to_owned(), leader.name.clone()],
        vec!["ADDRESS".to_owned(), leader.address.clone()],
        vec!["EPOCH".to_owned(), leader.leader_epoch.to_string()],
    ])
}

/// `job delete`.
pub fn deleted_text(view: &DeletedView) -> String {
    format!("deleted job {}\n", sanitize(&view.id))
}

/// `cluster resign`.
pub fn resigned_text(view: &ResignedView) -> String {
    format!(
        "the master at {} resigned: a leader hands leadership over, a follower stays out of the next election\n",
        sanitize(&view.address)
    )
}

fn executor_cell(id: Option<u64>) -> String {
    id.map_or_else(|| NONE.to_owned(), |id| ExecutorId(id).to_string())
}

/// A job error in one cell: the reason when there is one, the message otherwise.
fn error_cell(e: &JobErrorView) -> String {
    if e.reason.is_empty() {
        e.message.clone()
    } else {
        e.reason.clone()
    }
}

/// `KEY:  value` lines, values aligned.
fn key_values(rows: &[Vec<String>]) -> String {
    let rows = rows
        .iter()
        .map(|row| row.iter().enumerate().map(|(i, c)| if i == 0 { format!("{c}:") } else { c.clone() }).collect())
        .collect::<Vec<Vec<String>>>();
    render_rows(&rows)
}

/// An aligned table: a header line, then one line per row. Cells are escaped, columns padded to their widest
/// cell, and no line ends in spaces. Rows shorter than the header leave the last columns empty.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut all = Vec::with_capacity(rows.len() + 1);
    all.push(headers.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>());
    all.extend(rows.iter().cloned());
    render_rows(&all)
}

fn render_rows(rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|c| if c.is_empty() { NONE.to_owned() } else { sanitize(c) }).collect())
        .collect();
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count() + COLUMN_GAP;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Escapes control characters (newlines, tabs, terminal escapes) so that a server string can neither break a
/// table's alignment nor drive the terminal.
pub fn sanitize(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::pb;

    fn job(id: &str, state: i32) -> pb::Job {
        pb::Job {
            id: id.to_owned(),
            r#type: "fake".to_owned(),
            state,
            restarts: 2,
            epoch: 17,
            executor_id: 3,
            ..Default::default()
        }
    }

    #[test]
    fn enum_names_table() {
        // (value, job state, executor status, selector op)
        let table = [
            (0, "unspecified", "unspecified", "unspecified"),
            (1, "created", "online", "eq"),
            (2, "running", "unconfirmed", "neq"),
            (3, "canceling", "draining", "regex"),
            (4, "finished", "UNKNOWN(4)", "UNKNOWN(4)"),
            (5, "canceled", "UNKNOWN(5)", "UNKNOWN(5)"),
            (6, "failed", "UNKNOWN(6)", "UNKNOWN(6)"),
            (7, "corrupt", "UNKNOWN(7)", "UNKNOWN(7)"),
            (8, "UNKNOWN(8)", "UNKNOWN(8)", "UNKNOWN(8)"),
            (-1, "UNKNOWN(-1)", "UNKNOWN(-1)", "UNKNOWN(-1)"),
        ];
        for (value, state, status, op) in table {
            assert_eq!(job_state_name(value), state, "{value}");
            assert_eq!(executor_status_name(value), status, "{value}");
            assert_eq!(selector_op_name(value), op, "{value}");
        }
    }

    #[test]
    fn jobs_table_aligns_columns_and_fills_empty_cells() {
        let mut failed = job("a-much-longer-job-id", 6);
        failed.executor_id = 0;
        failed.error = Some(pb::JobError { reason: "BACKOFF_EXHAUSTED".into(), message: "gave up".into() });
        let views: Vec<JobView> = [job("j1", 2), failed, job("j3", 99)].iter().map(JobView::from).collect();
        let text = jobs_table(&views);
        // Column widths come from the widest cell: UNKNOWN(99) widens STATE for every row.
        let want = "\
ID                    TYPE  STATE        RESTARTS  EPOCH  EXECUTOR  ERROR
j1                    fake  running      2         17     e3        -
a-much-longer-job-id  fake  failed       2         17     -         BACKOFF_EXHAUSTED
j3                    fake  UNKNOWN(99)  2         17     e3        -
";
        assert_eq!(text, want);
        assert!(text.lines().all(|l| !l.ends_with(' ')));
    }

    #[test]
    fn empty_table_is_its_header() {
        assert_eq!(jobs_table(&[]), "ID  TYPE  STATE  RESTARTS  EPOCH  EXECUTOR  ERROR\n");
        assert_eq!(masters_table(&[]), "NAME  ADDRESS  LEADER\n");
    }

    #[test]
    fn executors_table_sorts_labels_and_shows_usage_and_age() {
        let labels = [("zone", "east"), ("disk", "ssd")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let wire = pb::Executor {
            id: 4,
            name: "exec-a".into(),
            address: "10.0.0.4:10241".into(),
            capacity: 8,
            labels,
            status: 1,
            used: 3,
            last_heartbeat_age_ms: 1500,
            resources: 2,
        };
        let unknown = pb::Executor { id: 5, name: "exec-b".into(), status: 7, ..Default::default() };
        let views: Vec<ExecutorView> = [wire, unknown].iter().map(ExecutorView::from).collect();
        let text = executors_table(&views);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "ID  NAME    ADDRESS         STATUS      USED/CAPACITY  RESOURCES  LABELS              LAST-HEARTBEAT"
        );
        assert_eq!(
            lines[1],
            "e4  exec-a  10.0.0.4:10241  online      3/8            2          disk=ssd,zone=east  1.5s ago"
        );
        assert_eq!(
            lines[2],
            "e5  exec-b  -               UNKNOWN(7)  0/0            0          -                   0s ago"
        );
    }

    #[test]
    fn masters_table_marks_the_leader() {
        let views = vec![
            MasterView { name: "m1".into(), address: "a:1".into(), is_leader: false },
            MasterView { name: "m2".into(), address: "b:2".into(), is_leader: true },
        ];
        assert_eq!(masters_table(&views), "NAME  ADDRESS  LEADER\nm1    a:1      no\nm2    b:2      yes\n");
    }

    #[test]
    fn job_detail_shows_selectors_error_and_config() {
        let mut wire = job("j1", 6);
        wire.selectors = vec![
            pb::Selector { key: "zone".into(), target: "east".into(), op: 1 },
            pb::Selector { key: "disk".into(), target: "hdd".into(), op: 2 },
            pb::Selector { key: "rack".into(), target: "^r1".into(), op: 3 },
            pb::Selector { key: "odd".into(), target: "x".into(), op: 9 },
        ];
        wire.error = Some(pb::JobError { reason: "JOB_MASTER_FAILED".into(), message: "boom".into() });
        wire.config = br#"{"workers":2}"#.to_vec();
        let text = job_detail(&JobView::from(&wire));
        let want = "\
ID:         j1
TYPE:       fake
STATE:      failed
PROGRESS:   -
RESTARTS:   2
EPOCH:      17
EXECUTOR:   e3
COST:       1
SELECTORS:  zone=east, disk!=hdd, rack~^r1, odd UNKNOWN(9) x
ERROR:      JOB_MASTER_FAILED: boom
CONFIG:
  {
    \"workers\": 2
  }
";
        assert_eq!(text, want);
    }

    #[test]
    fn a_job_s_resources_show_where_each_lives_in_its_detail_and_its_json() {
        let mut wire = job("j1", pb::JobState::Running as i32);
        let text = job_detail(&JobView::from(&wire));
        assert!(!text.contains("RESOURCES"), "a job without resources shows no row: {text}");
        wire.resources = vec![
            pb::JobResource {
                worker: "w0".into(),
                name: "scratch".into(),
                executor_id: 4,
                executor_name: "ex-a".into(),
            },
            pb::JobResource {
                worker: "w1\n".into(),
                name: "scratch".into(),
                executor_id: 7,
                executor_name: String::new(),
            },
        ];
        let view = JobView::from(&wire);
        let text = job_detail(&view);
        assert!(text.contains("RESOURCES:  w0/scratch on ex-a (e4), w1\\n/scratch on e7\n"), "{text}");
        let value: serde_json::Value = serde_json::from_str(&to_json(&view)).unwrap();
        let want = serde_json::json!([
            {"worker": "w0", "name": "scratch", "executor_id": 4, "executor_name": "ex-a"},
            {"worker": "w1\n", "name": "scratch", "executor_id": 7, "executor_name": null},
        ]);
        assert_eq!(value["resources"], want);
    }

    #[test]
    fn config_that_is_not_json_becomes_a_string() {
        let mut wire = job("j1", 2);
        wire.config = b"not json \x1b[31m".to_vec();
        let view = JobView::from(&wire);
        assert_eq!(view.config, Some(serde_json::Value::String("not json \u{1b}[31m".into())));
        // The escape character never reaches the terminal.
        assert!(job_detail(&view).contains("CONFIG:     not json \\u{1b}[31m\n"));
    }

    #[test]
    fn control_characters_are_escaped_in_cells() {
        let mut wire = job("j1", 2);
        wire.error = Some(pb::JobError { reason: String::new(), message: "line one\nline\ttwo".into() });
        let text = jobs_table(&[JobView::from(&wire)]);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("line one\\nline\\ttwo"), "{text}");
    }

    #[test]
    fn json_is_snake_case_with_lowercase_states() {
        let mut wire = job("j1", 2);
        wire.selectors = vec![pb::Selector { key: "zone".into(), target: "east".into(), op: 1 }];
        wire.config = br#"{"b":1,"a":[true]}"#.to_vec();
        wire.progress = "412/800 steps".into();
        wire.project = "team-a".into();
        let view = JobListView { jobs: vec![JobView::from(&wire)], next_page_token: None };
        let value: serde_json::Value = serde_json::from_str(&to_json(&view)).unwrap();
        let want = serde_json::json!({
            "jobs": [{
                "id": "j1", "type": "fake", "project": "team-a", "state": "running", "restarts": 2, "epoch": 17,
                "executor_id": 3, "cost": 1, "selectors": [{"key": "zone", "op": "eq", "target": "east"}], "error": null,
                "progress": "412/800 steps", "waiting": null, "config": {"a": [true], "b": 1}, "last_error": null,
                "resources": [],
            }],
            "next_page_token": null,
        });
        assert_eq!(value, want);
        let none = JobView::from(&pb::Job { id: "j2".into(), ..Default::default() });
        let value: serde_json::Value = serde_json::from_str(&to_json(&none)).unwrap();
        assert_eq!(value["executor_id"], serde_json::Value::Null);
        assert_eq!(value["config"], serde_json::Value::Null);
        assert_eq!(value["progress"], serde_json::Value::Null);
        assert_eq!(value["project"], serde_json::Value::Null, "a corrupt record's project is not known");
        assert_eq!(value["waiting"], serde_json::Value::Null);
        assert_eq!(value["state"], "unspecified");
    }

    #[test]
    fn a_job_s_last_error_shows_who_failed_how_and_when_in_its_detail_and_its_json() {
        let mut wire = job("j1", pb::JobState::Running as i32);
        wire.last_error = Some(pb::LastError {
            source: "j1/w0".into(),
            message: "planned failure after 3 steps (retryable)".into(),
            retryable: true,
            at_unix_ms: 1_796_472_601_000,
        });
        let view = JobView::from(&wire);
        let text = job_detail(&view);
        assert!(
            text.contains(
                "LAST ERROR:  j1/w0 (retryable) at 2026-12-05T12:10:01Z: planned failure after 3 steps (retryable)"
            ),
            "{text}"
        );
        let value: serde_json::Value = serde_json::from_str(&to_json(&view)).unwrap();
        let want = serde_json::json!({
            "source": "j1/w0", "message": "planned failure after 3 steps (retryable)", "retryable": true,
            "at_unix_ms": 1_796_472_601_000u64, "at": "2026-12-05T12:10:01Z",
        });
        assert_eq!(value["last_error"], want);
        assert!(!job_detail(&JobView::from(&job("j2", 2))).contains("LAST ERROR"));
    }

    #[test]
    fn a_job_waiting_for_a_placement_says_why_in_its_detail_and_its_json() {
        let mut wire = job("j1", 0);
        wire.state = pb::JobState::Created as i32;
        wire.waiting = "no executor matches zone=x: it ruled out all 2 executors left by the filters before it".into();
        let view = JobView::from(&wire);
        let text = job_detail(&view);
        let line = text.lines().find(|l| l.starts_with("WAITING:")).unwrap_or_else(|| panic!("{text}"));
        assert_eq!(line, format!("WAITING:    {}", wire.waiting));
        let value: serde_json::Value = serde_json::from_str(&to_json(&view)).unwrap();
        assert_eq!(value["waiting"], serde_json::Value::String(wire.waiting.clone()));
    }

    #[test]
    fn leader_detail_lines() {
        let view = LeaderView { name: "m1".into(), address: "10.0.0.1:10240".into(), leader_epoch: 7 };
        assert_eq!(leader_detail(&view), "NAME:     m1\nADDRESS:  10.0.0.1:10240\nEPOCH:    7\n");
    }
}
