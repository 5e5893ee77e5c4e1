//! What the HTTP API reads from the network: the body of a job create and query strings, turned into the gRPC
//! requests the services take. Nothing here trusts its input or panics on it: every refusal is an
//! `INVALID_ARGUMENT` status whose message names the part of the request to fix, like the gRPC API's own.
//!
//! The checks that the gRPC API makes (job ids, types, configurations, selectors, tokens) are left to it: this
//! module only translates, so that both APIs refuse the same input with the same words.

use std::collections::BTreeMap;

use serde::Deserialize;
use tonic::Status;

use crate::core::job::JobState;
use crate::core::labels::Selector;
use crate::core::text::quote;
use crate::master::convert::{selector_to_wire, state_to_wire};
use crate::master::metrics::job_state_label;
use crate::rpc::pb;
use crate::rpc::status::invalid_argument;

/// The longest query string read, in bytes.
pub const QUERY_MAX_BYTES: usize = 4096;

/// The body of `POST /api/v1/jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateJobBody {
    #[serde(rename = "type")]
    job_type: String,
    /// A JSON value (sent as its JSON text) or a string (sent as it is).
    #[serde(default)]
    config: serde_json::Value,
    #[serde(default)]
    id: String,
    /// Each one `"key=value"`, `"key!=value"`, `"key~regex"`, or `{"key", "op", "target"}` as jobs show them.
    #[serde(default)]
    selectors: Vec<serde_json::Value>,
    #[serde(default)]
    cost: u32,
    #[serde(default)]
    request_id: String,
    /// Empty: the default project.
    #[serde(default)]
    project: String,
}

/// A selector as jobs show it (`crate::rpc::views::SelectorView`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectorBody {
    key: String,
    op: String,
    target: String,
}

/// An example of a create body, for the messages that refuse one.
const CREATE_EXAMPLE: &str = r#"{"type": "fake", "config": {"workers": 2, "target": 100, "tick_ms": 50}, "id": "optional", "selectors": ["zone=east"]}"#;

/// The `CreateJob` request a create body stands for.
pub fn create_job_request(body: &[u8]) -> Result<pb::CreateJobRequest, Status> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid_argument("request body", format!("is empty; send a JSON object like {CREATE_EXAMPLE}")));
    }
    let b: CreateJobBody = serde_json::from_slice(body)
        .map_err(|e| invalid_argument("request body", format!("{e}; send a JSON object like {CREATE_EXAMPLE}")))?;
    let config = match b.config {
        serde_json::Value::Null => vec![],
        serde_json::Value::String(text) => text.into_bytes(),
        value => value.to_string().into_bytes(),
    };
    let selectors = b.selectors.iter().enumerate().map(|(i, s)| selector(i, s)).collect::<Result<_, _>>()?;
    Ok(pb::CreateJobRequest {
        job: Some(pb::Job {
            id: b.id,
            r#type: b.job_type,
            config,
            selectors,
            cost: b.cost,
            project: b.project,
            ..Default::default()
        }),
        request_id: b.request_id,
    })
}

fn selector(i: usize, value: &serde_json::Value) -> Result<pb::Selector, Status> {
    let field = format!("selectors[{i}]");
    if let serde_json::Value::String(text) = value {
        return Selector::parse(text).map(|s| selector_to_wire(&s)).map_err(|e| invalid_argument(&field, e));
    }
    let s = SelectorBody::deserialize(value).map_err(|e| {
        invalid_argument(
            &field,
            format!("{e}; write \"key=value\", \"key!=value\", \"key~regex\" or {{\"key\", \"op\", \"target\"}}"),
        )
    })?;
    let op = match s.op.as_str() {
        "eq" => pb::SelectorOp::Eq,
        "neq" => pb::SelectorOp::Neq,
        "regex" => pb::SelectorOp::Regex,
        other => {
            return Err(invalid_argument(&format!("{field}.op"), format!("{} is not eq, neq or regex", quote(other))))
        }
    };
    Ok(pb::Selector { key: s.key, target: s.target, op: op as i32 })
}

/// A query string's parameters. Each may appear once; a parameter the endpoint does not take is refused by name,
/// so that a misspelt filter does not silently list everything.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Query(BTreeMap<String, String>);

impl Query {
    /// Parses `raw` (the part after `?`, percent-encoded) allowing only the parameters `known`.
    pub fn parse(raw: Option<&str>, known: &[&str]) -> Result<Query, Status> {
        let raw = raw.unwrap_or("");
        if raw.len() > QUERY_MAX_BYTES {
            return Err(invalid_argument("query", format!("is longer than {QUERY_MAX_BYTES} bytes")));
        }
        let mut params = BTreeMap::new();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (key, value) = (decode(key)?, decode(value)?);
            if !known.contains(&key.as_str()) {
                let expected = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
                return Err(invalid_argument(
                    "query",
                    format!("unknown parameter {}; this endpoint takes {expected}", quote(&key)),
                ));
            }
            if params.insert(key.clone(), value).is_some() {
                return Err(invalid_argument(&key, "is given twice; give it once"));
            }
        }
        Ok(Query(params))
    }

    pub fn text(&self, key: &str) -> String {
        self.0.get(key).cloned().unwrap_or_default()
    }

    /// `true`, `false` (or `1`, `0`); absent is false.
    pub fn flag(&self, key: &str) -> Result<bool, Status> {
        match self.0.get(key).map(String::as_str) {
            None | Some("false" | "0") => Ok(false),
            Some("true" | "1" | "") => Ok(true),
            Some(other) => Err(invalid_argument(key, format!("{} is not true or false", quote(other)))),
        }
    }

    /// A whole number; absent is 0.
    pub fn number(&self, key: &str) -> Result<u32, Status> {
        match self.0.get(key) {
            None => Ok(0),
            Some(text) => {
                text.parse().map_err(|_| invalid_argument(key, format!("{} is not a whole number", quote(text))))
            }
        }
    }

    /// A whole number of 64 bits; absent is 0.
    pub fn big_number(&self, key: &str) -> Result<u64, Status> {
        match self.0.get(key) {
            None => Ok(0),
            Some(text) => {
                text.parse().map_err(|_| invalid_argument(key, format!("{} is not a whole number", quote(text))))
            }
        }
    }

    /// A log stream: `stdout` (also when absent) or `stderr`.
    pub fn log_stream(&self, key: &str) -> Result<pb::LogStream, Status> {
        match self.0.get(key).map(String::as_str) {
            None | Some("stdout") => Ok(pb::LogStream::Stdout),
            Some("stderr") => Ok(pb::LogStream::Stderr),
            Some(other) => {
                Err(invalid_argument(key, format!("{} is not a stream; use stdout or stderr", quote(other))))
            }
        }
    }

    /// A job state by its lowercase name (`running`, or `corrupt` for the jobs whose records do not decode);
    /// absent is any state.
    pub fn job_state(&self, key: &str) -> Result<pb::JobState, Status> {
        let Some(text) = self.0.get(key) else { return Ok(pb::JobState::Unspecified) };
        let wanted = text.to_ascii_lowercase();
        if wanted == "corrupt" {
            return Ok(pb::JobState::Corrupt);
        }
        JobState::ALL.into_iter().find(|s| job_state_label(*s) == wanted).map(state_to_wire).ok_or_else(|| {
            let names: Vec<String> =
                JobState::ALL.into_iter().map(job_state_label).chain(["corrupt".to_owned()]).collect();
            invalid_argument(key, format!("{} is not a job state; use one of {}", quote(text), names.join(", ")))
        })
    }
}

/// Percent-decoding of one query component (`+` is a space, as HTML forms send it).
fn decode(text: &str) -> Result<String, Status> {
    let bad = || invalid_argument("query", format!("{} is not percent-encoded UTF-8", quote(text)));
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).ok_or_else(bad)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::status::{reason_of, Reason};

    #[track_caller]
    fn refused<T: std::fmt::Debug>(r: Result<T, Status>, words: &[&str]) {
        let s = r.expect_err("refused");
        assert_eq!(reason_of(&s), Some(Reason::InvalidArgument), "{s:?}");
        for w in words {
            assert!(s.message().contains(w), "{:?} should contain {w:?}", s.message());
        }
    }

    #[test]
    fn create_bodies_become_requests() {
        let r = create_job_request(
            br#"{"type": "fake", "config": {"workers": 1}, "id": "j1", "cost": 2, "request_id": "t1",
                 "selectors": ["zone=east", {"key": "disk", "op": "neq", "target": "hdd"}, "host~^a"]}"#,
        )
        .unwrap();
        let job = r.job.unwrap();
        assert_eq!((job.id.as_str(), job.r#type.as_str(), job.cost, r.request_id.as_str()), ("j1", "fake", 2, "t1"));
        assert_eq!(job.config, br#"{"workers":1}"#);
        let ops: Vec<(String, i32, String)> = job.selectors.into_iter().map(|s| (s.key, s.op, s.target)).collect();
        let want = [
            ("zone", pb::SelectorOp::Eq, "east"),
            ("disk", pb::SelectorOp::Neq, "hdd"),
            ("host", pb::SelectorOp::Regex, "^a"),
        ]
        .map(|(k, op, t)| (k.to_owned(), op as i32, t.to_owned()));
        assert_eq!(ops, want);
        // A string config is sent as it is; no config is an empty one (the job type says whether it may be).
        let r = create_job_request(br#"{"type": "fake", "config": "{\"workers\": 1}"}"#).unwrap();
        assert_eq!(r.job.unwrap().config, br#"{"workers": 1}"#);
        assert!(create_job_request(br#"{"type": "fake"}"#).unwrap().job.unwrap().config.is_empty());
    }

    #[test]
    fn bad_create_bodies_are_refused_saying_what_to_fix() {
        // (body, words the message must contain)
        let table: &[(&[u8], &[&str])] = &[
            (b"", &["request body", "is empty", "\"type\""]),
            (b"{", &["request body", "EOF", "\"type\""]),
            (b"[]", &["request body", "expected struct"]),
            (br#"{"config": {}}"#, &["missing field `type`"]),
            (br#"{"type": "fake", "tpye": 1}"#, &["unknown field `tpye`", "expected one of"]),
            (br#"{"type": 7}"#, &["invalid type: integer `7`, expected a string"]),
            (br#"{"type": "fake", "cost": -1}"#, &["invalid value: integer `-1`"]),
            (br#"{"type": "fake", "selectors": ["zone"]}"#, &["selectors[0]"]),
            (
                br#"{"type": "fake", "selectors": [{"key": "a", "op": "like", "target": "b"}]}"#,
                &["selectors[0].op", "like"],
            ),
            (br#"{"type": "fake", "selectors": [{"key": "a"}]}"#, &["selectors[0]", "missing field `op`"]),
            (br#"{"type": "fake", "selectors": [3]}"#, &["selectors[0]", "key=value"]),
        ];
        for (body, words) in table {
            refused(create_job_request(body), words);
        }
    }

    #[test]
    fn queries_parse_and_refuse_by_name() {
        let known = ["state", "type", "page_size", "include_config", "page_token"];
        let q =
            Query::parse(Some("state=RUNNING&type=fa%6Be&page_size=5&include_config&page_token=a+b"), &known).unwrap();
        assert_eq!(q.job_state("state").unwrap(), pb::JobState::Running);
        assert_eq!(q.text("type"), "fake");
        assert_eq!(q.number("page_size").unwrap(), 5);
        assert!(q.flag("include_config").unwrap());
        assert_eq!(q.text("page_token"), "a b");
        let empty = Query::parse(None, &known).unwrap();
        assert_eq!(empty.job_state("state").unwrap(), pb::JobState::Unspecified);
        assert!(!empty.flag("include_config").unwrap());
        assert_eq!(empty.number("page_size").unwrap(), 0);

        // (query, words the message must contain)
        let table: &[(&str, &[&str])] = &[
            ("stat=running", &["unknown parameter \"stat\"", "state, type"]),
            ("state=a&state=b", &["state: is given twice"]),
            ("type=%zz", &["percent-encoded"]),
            ("type=%ff", &["percent-encoded UTF-8"]),
            ("type=%4", &["percent-encoded"]),
        ];
        for (raw, words) in table {
            refused(Query::parse(Some(raw), &known), words);
        }
        let q = |raw| Query::parse(Some(raw), &known).unwrap();
        refused(q("state=done").job_state("state"), &["state: \"done\" is not a job state", "finished"]);
        refused(q("page_size=-1").number("page_size"), &["page_size", "whole number"]);
        refused(q("include_config=yes").flag("include_config"), &["include_config", "true or false"]);
        refused(Query::parse(Some(&"a".repeat(QUERY_MAX_BYTES + 1)), &known), &["longer than"]);
        refused(Query::parse(Some("x=1"), &[]), &["takes none"]);
    }
}
