//! The master's HTTP/JSON API and metrics: real `Master`s in process over the embedded metastore, serving gRPC and
//! HTTP on loopback ports, called with a plain HTTP/1.1 client written here (production build; no etcd needed).
//!
//! What is checked:
//! - docs/openapi.json parses, describes exactly the routes the server serves (`foreman::master::http::ROUTES`, the
//!   table the router is built from), its references resolve, and the server hands out the same document;
//! - the job endpoints create, get, list, cancel and delete jobs, with the JSON of `foreman job get --output json`;
//!   bad input is a 400 naming what to fix, an unknown job a 404, a conflict a 409, each with the stable reason;
//! - `/metrics` has every listed metric with its HELP and TYPE lines, and the values move: registry and job gauges,
//!   job-master placements (an executor registered over gRPC), placement rejections, heartbeat gaps;
//! - a follower answers the same calls by forwarding them to the leader, and says it follows;
//! - connections are bounded: a slowloris (headers that never end) is closed after the header-read timeout, an idle
//!   connection after the idle timeout, connections over the cap get a 503 with `Retry-After` while the gRPC API
//!   keeps answering, and a graceful shutdown closes idle connections and returns;
//! - a web page cannot drive the API: a body not said to be JSON is a 415, a foreign `Host` a 421, a foreign
//!   `Origin` a 403, while the API's own names work.
#![cfg(not(madsim))]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint};

use common::{sample, short_election, METRICS};
use foreman::config::{HttpConfig, MasterConfig};
use foreman::master::{http, Master, Role};
use foreman::meta::MetaStore;
use foreman::rpc::pb;
use foreman::rpc::pb::discovery_client::DiscoveryClient;
use foreman::rpc::pb::task_scheduler_client::TaskSchedulerClient;

/// The deadline on every call a test makes: a hang fails the test instead of stalling it.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a fresh master may take to win its (uncontested) election and finish recovery.
const LEAD_DEADLINE: Duration = Duration::from_secs(10);
/// How long a test waits for the leader loop to act (place a job master, count a rejection).
const ACT_DEADLINE: Duration = Duration::from_secs(10);
/// A valid fake-job configuration.
const CONFIG: &str = r#"{"workers": 2, "target": 5, "tick_ms": 10}"#;

/// One master serving gRPC and HTTP on loopback. Dropping it stops the master and its HTTP server.
struct Node {
    m: Arc<Master>,
    grpc: String,
    http: String,
    _stop_master: oneshot::Sender<()>,
    stop_http: Option<oneshot::Sender<()>>,
    http_served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Node {
    /// Starts master `m-<name>` of cluster `test-<cluster>` over `store` (a clone of another node's store makes
    /// the two masters of one cluster).
    async fn start(name: &str, cluster: &str, store: MetaStore) -> Node {
        Node::start_with(name, cluster, store, HttpConfig::default()).await
    }

    /// The same, with the HTTP API's `[http]` settings `http`.
    async fn start_with(name: &str, cluster: &str, store: MetaStore, http_cfg: HttpConfig) -> Node {
        let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).expect("bind a loopback port");
        let grpc = incoming.local_addr().expect("bound address").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let http = listener.local_addr().expect("bound address").to_string();
        let mut cfg = MasterConfig {
            name: format!("m-{name}"),
            addr: grpc.clone(),
            http_addr: http.clone(),
            cluster: format!("test-{cluster}"),
            election: short_election(),
            http: http_cfg,
            ..MasterConfig::default()
        };
        cfg.fill_derived();
        cfg.validate().unwrap_or_else(|e| panic!("the test configuration is refused: {e}"));
        let m = Master::new(cfg, store, 7);

        common::serve_grpc(m.clone(), incoming);
        let (stop_master, stopped) = oneshot::channel::<()>();
        tokio::spawn(m.clone().run(async move {
            let _ = stopped.await;
        }));
        let (stop_http, stopped) = oneshot::channel::<()>();
        let http_served = tokio::spawn(http::serve(m.clone(), listener, async move {
            let _ = stopped.await;
        }));
        eprintln!("master {name}: gRPC {grpc}, HTTP {http}");
        Node { m, grpc, http, _stop_master: stop_master, stop_http: Some(stop_http), http_served }
    }

    /// A lone master of its own cluster, leading and serving.
    async fn leader(name: &str) -> Node {
        Node::leader_with(name, HttpConfig::default()).await
    }

    /// The same, with the HTTP API's `[http]` settings `http`.
    async fn leader_with(name: &str, http: HttpConfig) -> Node {
        let store = MetaStore::embedded(&format!("test-{name}"), None).expect("an embedded store");
        let node = Node::start_with(name, name, store, http).await;
        node.wait_for_role("leader").await;
        node
    }

    /// Polls `/healthz` until it reports `role`.
    async fn wait_for_role(&self, role: &str) {
        let started = tokio::time::Instant::now();
        loop {
            let health = self.get("/healthz").await;
            assert_eq!(health.status, 200, "{health:?}");
            if health.json()["role"] == role && (role != "leader" || matches!(self.m.role(), Role::Leader(_))) {
                return;
            }
            assert!(started.elapsed() < LEAD_DEADLINE, "{} is not {role} within {LEAD_DEADLINE:?}", self.m.name());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn get(&self, path: &str) -> Reply {
        call(&self.http, "GET", path, None).await
    }

    async fn post(&self, path: &str, body: &str) -> Reply {
        call(&self.http, "POST", path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> Reply {
        call(&self.http, "DELETE", path, None).await
    }

    async fn put(&self, path: &str, body: &str) -> Reply {
        call(&self.http, "PUT", path, Some(body)).await
    }

    fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.grpc)).unwrap().timeout(CALL_TIMEOUT).connect_lazy()
    }

    /// Registers an executor over gRPC that nothing can dispatch to (its address refuses connections), and sends
    /// its first heartbeat. Returns its id and the leader epoch.
    async fn register_executor(&self, name: &str, capacity: u32) -> (u64, u64) {
        let req = pb::RegisterExecutorRequest {
            name: name.into(),
            address: "127.0.0.1:1".into(),
            capacity,
            labels: [("zone".to_owned(), "east".to_owned())].into(),
            instance: 1,
        };
        let r = DiscoveryClient::new(self.channel()).register_executor(req).await.expect("RegisterExecutor");
        let r = r.into_inner();
        self.heartbeat(r.executor_id, r.leader_epoch).await;
        (r.executor_id, r.leader_epoch)
    }

    async fn heartbeat(&self, executor_id: u64, leader_epoch: u64) {
        let req = pb::HeartbeatRequest { executor_id, leader_epoch, ..Default::default() };
        let r = DiscoveryClient::new(self.channel()).heartbeat(req).await.expect("Heartbeat").into_inner();
        assert_eq!(r.verdict, pb::HeartbeatVerdict::Accepted as i32, "{r:?}");
    }

    /// Polls `/metrics` until `series` (a name with its labels, as exposed) is at least `min`.
    async fn wait_for_metric(&self, series: &str, min: f64) -> f64 {
        let started = tokio::time::Instant::now();
        loop {
            let text = self.get("/metrics").await.body;
            if let Some(v) = sample(&text, series).filter(|v| *v >= min) {
                return v;
            }
            assert!(started.elapsed() < ACT_DEADLINE, "{series} did not reach {min} within {ACT_DEADLINE:?}:\n{text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// A plain HTTP/1.1 client
// ---------------------------------------------------------------------------------------------------------------

/// An HTTP answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    /// Header names in lowercase.
    headers: BTreeMap<String, String>,
    body: String,
}

impl Reply {
    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// Asserts a refusal: the status, the JSON error body's `code` and `reason`, and words of its message.
    #[track_caller]
    fn assert_refused(&self, status: u16, code: &str, reason: Option<&str>, words: &[&str]) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.headers.get("content-type").map(String::as_str), Some("application/json"), "{self:?}");
        let body = self.json();
        assert_eq!(body["code"], code, "{self:?}");
        assert_eq!(body["reason"], reason.map_or(Value::Null, Value::from), "{self:?}");
        let message = body["message"].as_str().unwrap_or_else(|| panic!("no message: {self:?}"));
        for w in words {
            assert!(message.contains(w), "{message:?} should contain {w:?}");
        }
    }
}

/// Sends one request on a fresh connection (`Connection: close`) and reads the whole answer.
async fn call(addr: &str, method: &str, path: &str, body: Option<&str>) -> Reply {
    call_with(addr, method, path, &[("Host", addr), ("Content-Type", "application/json")], body).await
}

/// The same with the headers `headers` (besides `Connection` and `Content-Length`).
async fn call_with(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let body = body.unwrap_or("");
        let headers: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
        let head =
            format!("{method} {path} HTTP/1.1\r\n{headers}Connection: close\r\nContent-Length: {}\r\n\r\n", body.len());
        stream.write_all(head.as_bytes()).await.expect("send the head");
        // A server may answer before it has read the whole body (one too large) and stop reading: the answer is
        // what counts.
        let _ = stream.write_all(body.as_bytes()).await;
        let mut raw = vec![];
        stream.read_to_end(&mut raw).await.expect("read the answer");
        raw
    };
    let raw = tokio::time::timeout(CALL_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within {CALL_TIMEOUT:?}"));
    parse_reply(&raw)
        .unwrap_or_else(|| panic!("{method} {path}: not an HTTP answer: {:?}", String::from_utf8_lossy(&raw)))
}

fn parse_reply(raw: &[u8]) -> Option<Reply> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body)?;
    }
    Some(Reply { status, headers, body: String::from_utf8(body).ok()? })
}

/// The body of a chunked transfer.
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![];
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The OpenAPI description
// ---------------------------------------------------------------------------------------------------------------

/// The methods OpenAPI knows in a path item.
const OPENAPI_METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn openapi_document() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

/// Every `$ref` in `v`, with where it is.
fn refs<'a>(v: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match v {
        Value::Object(map) => {
            for (k, item) in map {
                match (k.as_str(), item) {
                    ("$ref", Value::String(target)) => out.push((at.clone(), target)),
                    _ => refs(item, format!("{at}/{k}"), out),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                refs(item, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// A job's JSON with `waiting` (why it is not placed) taken out and checked to be `null` or a reason: it changes
/// as soon as the leader loop tries to place the job, so comparisons of whole jobs leave it aside.
fn placement_said(mut job: Value) -> Value {
    let waiting = job.as_object_mut().and_then(|o| o.remove("waiting"));
    assert!(matches!(&waiting, Some(Value::Null | Value::String(_))), "waiting: {waiting:?} in {job}");
    job
}

#[tokio::test]
async fn the_openapi_document_describes_exactly_the_routes_served() {
    let doc = openapi_document();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "not OpenAPI 3: {}", doc["openapi"]);
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    // The routes described, and those served (from the table the router is built from).
    let mut described = std::collections::BTreeSet::new();
    let mut operation_ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (key, op) in item.as_object().expect("a path item") {
            if key == "parameters" {
                continue;
            }
            assert!(OPENAPI_METHODS.contains(&key.as_str()), "{path}: {key} is not a method");
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{key} {path}: no operationId"));
            assert!(operation_ids.insert(id.to_owned()), "operationId {id} is used twice");
            let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{key} {path}: no responses"));
            assert!(responses.keys().any(|code| code.starts_with('2')), "{key} {path}: no success response");
            // Every path parameter is declared, on the path item or the operation.
            let declared: Vec<&str> = [&item["parameters"], &op["parameters"]]
                .into_iter()
                .filter_map(Value::as_array)
                .flatten()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            for segment in path.split('/').filter(|s| s.starts_with('{')) {
                let name = segment.trim_start_matches('{').trim_end_matches('}');
                assert!(declared.contains(&name), "{key} {path}: path parameter {name} is not declared");
            }
            described.insert((key.to_ascii_uppercase(), path.clone()));
        }
    }
    let served: std::collections::BTreeSet<(String, String)> =
        http::ROUTES.iter().map(|r| (r.method.to_string(), r.path.to_owned())).collect();
    assert_eq!(served.len(), http::ROUTES.len(), "a route is listed twice");
    let undescribed: Vec<_> = served.difference(&described).collect();
    let unserved: Vec<_> = described.difference(&served).collect();
    assert!(undescribed.is_empty(), "served but not in docs/openapi.json: {undescribed:?}");
    assert!(unserved.is_empty(), "in docs/openapi.json but not served: {unserved:?}");

    // Every reference resolves.
    let mut found = vec![];
    refs(&doc, String::new(), &mut found);
    assert!(!found.is_empty());
    for (at, target) in found {
        let pointer = target.strip_prefix('#').unwrap_or_else(|| panic!("{at}: {target} is not local"));
        assert!(doc.pointer(pointer).is_some(), "{at}: {target} does not resolve");
    }
    // The metrics endpoint names every metric.
    let metrics_doc = doc["paths"]["/metrics"]["get"]["description"].as_str().expect("/metrics has a description");
    for (name, _) in METRICS {
        assert!(metrics_doc.contains(name), "the /metrics description does not name {name}");
    }

    // The server hands out the same document, and answers what it does not serve in JSON.
    let node = Node::start("openapi", "openapi", MetaStore::embedded("test-openapi", None).unwrap()).await;
    let served_doc = node.get("/api/v1/openapi.json").await;
    assert_eq!(served_doc.status, 200);
    assert_eq!(served_doc.json(), doc);
    node.get("/api/v2/nothing").await.assert_refused(404, "NOT_FOUND", None, &["GET /api/v2/nothing", "openapi.json"]);
    node.put("/api/v1/jobs/j1", "{}").await.assert_refused(
        405,
        "UNIMPLEMENTED",
        None,
        &["/api/v1/jobs/j1 does not take PUT", "GET or DELETE"],
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn jobs_are_created_got_listed_canceled_and_deleted() {
    let t = Node::leader("jobs").await;
    let health = t.get("/healthz").await.json();
    assert_eq!(health["role"], "leader");
    assert_eq!(health["name"], "m-jobs");
    assert!(health["leader_epoch"].as_u64().is_some_and(|e| e >= 1), "{health}");

    // Create: 201, where it lives, and the job as `job get --output json` shows it.
    let body = json!({"type": "fake", "config": serde_json::from_str::<Value>(CONFIG).unwrap(), "id": "j1",
                      "selectors": ["zone=east", {"key": "disk", "op": "neq", "target": "hdd"}], "request_id": "r1"});
    let created = t.post("/api/v1/jobs", &body.to_string()).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.headers.get("location").map(String::as_str), Some("/api/v1/jobs/j1"));
    let job = placement_said(created.json());
    let want = json!({"id": "j1", "type": "fake", "project": "default", "state": "created", "restarts": 0, "epoch": 0,
                      "executor_id": null,
                      "cost": 1, "error": null, "progress": null, "config": null, "last_error": null, "resources": [],
                      "selectors": [{"key": "zone", "op": "eq", "target": "east"},
                                    {"key": "disk", "op": "neq", "target": "hdd"}]});
    assert_eq!(job, want);
    // A repeat of the same request gets the same job; another create of the id is a conflict.
    assert_eq!(placement_said(t.post("/api/v1/jobs", &body.to_string()).await.json()), want);
    let again = json!({"type": "fake", "config": CONFIG, "id": "j1"});
    t.post("/api/v1/jobs", &again.to_string()).await.assert_refused(
        409,
        "ALREADY_EXISTS",
        Some("JOB_ALREADY_EXISTS"),
        &["j1"],
    );

    // Get, with and without the configuration; a configuration given as a string is kept as it was.
    assert_eq!(placement_said(t.get("/api/v1/jobs/j1").await.json()), want);
    // No executor ever joined this master: the job says so once the leader tried to place it.
    let mut waiting = Value::Null;
    for _ in 0..100 {
        waiting = t.get("/api/v1/jobs/j1").await.json()["waiting"].clone();
        if !waiting.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(waiting, "no executor is online and reporting");
    let with_config = t.get("/api/v1/jobs/j1?include_config=true").await.json();
    assert_eq!(with_config["config"], serde_json::from_str::<Value>(CONFIG).unwrap());
    let created = t.post("/api/v1/jobs", &json!({"type": "fake", "config": CONFIG}).to_string()).await;
    assert_eq!(created.status, 201, "{created:?}");
    let generated = created.json()["id"].as_str().expect("a generated id").to_owned();
    assert!(generated.starts_with("job-"), "{generated}");

    // List, filtered and paged, in id order.
    let mut all = ["j1", generated.as_str()];
    all.sort();
    let list = t.get("/api/v1/jobs").await.json();
    let ids: Vec<&str> = list["jobs"].as_array().unwrap().iter().filter_map(|j| j["id"].as_str()).collect();
    assert_eq!(ids, all);
    assert_eq!(list["next_page_token"], Value::Null);
    let page = t.get("/api/v1/jobs?page_size=1").await.json();
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(page["next_page_token"], all[0]);
    let next = t.get(&format!("/api/v1/jobs?page_size=1&page_token={}", all[0])).await.json();
    assert_eq!((&next["jobs"][0]["id"], &next["next_page_token"]), (&json!(all[1]), &Value::Null));
    assert_eq!(t.get("/api/v1/jobs?state=finished").await.json()["jobs"], json!([]));
    assert_eq!(t.get("/api/v1/jobs?state=CREATED&type=fake").await.json()["jobs"].as_array().unwrap().len(), 2);

    // No executor: the job was never started, so a cancel ends it at once, and then it may be deleted.
    let canceled = t.post("/api/v1/jobs/j1/cancel", "").await;
    assert_eq!(canceled.status, 200, "{canceled:?}");
    assert_eq!(canceled.json()["state"], "canceled");
    let deleted = t.delete("/api/v1/jobs/j1").await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    assert_eq!(deleted.json(), json!({"id": "j1", "deleted": true}));
    t.get("/api/v1/jobs/j1").await.assert_refused(404, "NOT_FOUND", Some("JOB_NOT_FOUND"), &["j1"]);
    t.delete("/api/v1/jobs/j1").await.assert_refused(404, "NOT_FOUND", Some("JOB_NOT_FOUND"), &["j1"]);
    t.post("/api/v1/jobs/j1/cancel", "").await.assert_refused(404, "NOT_FOUND", Some("JOB_NOT_FOUND"), &["j1"]);
    // A job that has not ended cannot be deleted.
    t.delete(&format!("/api/v1/jobs/{generated}")).await.assert_refused(
        409,
        "FAILED_PRECONDITION",
        Some("JOB_NOT_TERMINATED"),
        &[generated.as_str()],
    );
}

#[tokio::test]
async fn bad_requests_are_refused_saying_what_to_fix_and_change_nothing() {
    let t = Node::leader("refusals").await;
    let keep = t.post("/api/v1/jobs", &json!({"type": "fake", "config": CONFIG, "id": "keep"}).to_string()).await;
    assert_eq!(keep.status, 201, "{keep:?}");
    let before = stored_jobs(&t.get("/api/v1/jobs?include_config=true").await.body);

    let invalid = Some("INVALID_ARGUMENT");
    // (body, words the message must contain): the HTTP layer's own refusals, then the gRPC API's, passed through.
    let table: &[(&str, &[&str])] = &[
        ("", &["request body: is empty", "\"type\""]),
        ("{\"type\": \"fake\"", &["request body", "EOF"]),
        ("{\"tpye\": \"fake\"}", &["request body", "unknown field `tpye`"]),
        ("{\"type\": \"fake\", \"cost\": \"two\"}", &["request body", "expected u32"]),
        ("{\"type\": \"fake\", \"selectors\": [\"zone\"]}", &["selectors[0]"]),
        ("{\"type\": \"fake\", \"config\": {\"workers\": 0, \"target\": 1, \"tick_ms\": 1}}", &["job.config.workers"]),
        ("{\"type\": \"nosuch\", \"config\": {}}", &["job.type", "nosuch"]),
        ("{\"type\": \"fake\", \"config\": {\"workers\": 1, \"target\": 1, \"tick_ms\": 1}, \"id\": \"a b\"}", &["job.id"]),
        ("{\"type\": \"fake\", \"config\": {\"workers\": 1, \"target\": 1, \"tick_ms\": 1}, \"request_id\": \"a b\"}", &["request_id"]),
    ];
    for (body, words) in table {
        t.post("/api/v1/jobs", body).await.assert_refused(400, "INVALID_ARGUMENT", invalid, words);
    }
    // Paths and query strings.
    t.get("/api/v1/jobs/a%20b").await.assert_refused(400, "INVALID_ARGUMENT", invalid, &["id"]);
    t.get("/api/v1/jobs?stat=running").await.assert_refused(400, "INVALID_ARGUMENT", invalid, &["\"stat\"", "state"]);
    t.get("/api/v1/jobs?state=done").await.assert_refused(400, "INVALID_ARGUMENT", invalid, &["state", "\"done\""]);
    t.get("/api/v1/jobs?page_size=5000").await.assert_refused(400, "INVALID_ARGUMENT", invalid, &["page_size", "1000"]);
    t.get("/api/v1/jobs?page_token=a%20b").await.assert_refused(400, "INVALID_ARGUMENT", invalid, &["page_token"]);
    t.get("/api/v1/jobs/keep?include_config=maybe").await.assert_refused(
        400,
        "INVALID_ARGUMENT",
        invalid,
        &["include_config"],
    );
    t.get("/api/v1/jobs/nosuch").await.assert_refused(404, "NOT_FOUND", Some("JOB_NOT_FOUND"), &["nosuch"]);
    // A body too large for the server.
    let huge = format!("{{\"type\": \"fake\", \"config\": \"{}\"}}", "x".repeat(http::BODY_MAX_BYTES));
    t.post("/api/v1/jobs", &huge).await.assert_refused(
        413,
        "INVALID_ARGUMENT",
        invalid,
        &["request body: larger than"],
    );

    let after = stored_jobs(&t.get("/api/v1/jobs?include_config=true").await.body);
    assert_eq!(after, before, "a refused call changed the jobs");
}

/// The jobs of a listing as stored, without `waiting`: why a job waits is the leader's live view (it changes as
/// the leader tries to place it), not part of the job.
fn stored_jobs(body: &str) -> Value {
    let mut v: Value = serde_json::from_str(body).expect("a job listing is JSON");
    for job in v["jobs"].as_array_mut().expect("a job listing has jobs") {
        job.as_object_mut().expect("a job is an object").remove("waiting");
    }
    v
}

// ---------------------------------------------------------------------------------------------------------------
// Cluster views and metrics
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn metrics_show_every_listed_metric_and_move_with_the_cluster() {
    let t = Node::leader("metrics").await;
    let text = t.get("/metrics").await;
    assert_eq!(text.status, 200);
    assert_eq!(text.headers.get("content-type").map(String::as_str), Some("text/plain; version=0.0.4; charset=utf-8"));
    let text = text.body;
    for (name, kind) in METRICS {
        assert!(text.contains(&format!("\n# HELP {name} ")) || text.starts_with(&format!("# HELP {name} ")), "{name}");
        assert!(text.contains(&format!("\n# TYPE {name} {kind}\n")), "{name} {kind}:\n{text}");
    }
    let exposed: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    assert_eq!(exposed, METRICS.map(|(name, _)| name), "a metric is exposed that the API does not list");
    assert_eq!(sample(&text, "foreman_is_leader"), Some(1.0));
    assert!(sample(&text, "foreman_leader_epoch").is_some_and(|e| e >= 1.0), "{text}");
    assert_eq!(sample(&text, "foreman_leader_terms_total"), Some(1.0));
    assert_eq!(sample(&text, "foreman_executors{state=\"online\"}"), Some(0.0));
    assert_eq!(sample(&text, "foreman_jobs{state=\"created\"}"), Some(0.0));
    assert_eq!(sample(&text, "foreman_placements_total{kind=\"job_master\"}"), Some(0.0));
    assert_eq!(sample(&text, "foreman_executor_heartbeat_gap_seconds_count"), Some(0.0));
    assert_eq!(sample(&text, "foreman_fenced_writes_total"), Some(0.0));
    assert_eq!(sample(&text, "foreman_unknown_writes_total"), Some(0.0));
    assert_eq!(sample(&text, "foreman_corrupt_records{kind=\"job\"}"), Some(0.0));
    assert_eq!(sample(&text, "foreman_corrupt_records{kind=\"executor\"}"), Some(0.0));
    // The leader campaigned on a lease, keeps it alive and read the metastore to recover: its requests so far.
    for op in ["read", "lease", "election"] {
        let series = format!("foreman_metastore_requests_total{{op=\"{op}\"}}");
        assert!(sample(&text, &series).is_some_and(|n| n >= 1.0), "{series}:\n{text}");
    }
    let writes = sample(&text, "foreman_metastore_requests_total{op=\"write\"}").expect("the writes are exposed");

    // An executor: the registry gauges and the heartbeat gaps move, and the cluster views show it.
    let (executor, epoch) = t.register_executor("e1", 4).await;
    t.heartbeat(executor, epoch).await;
    let text = t.get("/metrics").await.body;
    assert_eq!(sample(&text, "foreman_executors{state=\"online\"}"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "foreman_executor_slots{kind=\"capacity\"}"), Some(4.0), "{text}");
    assert_eq!(sample(&text, "foreman_executor_heartbeat_gap_seconds_count"), Some(2.0), "{text}");
    assert_eq!(sample(&text, "foreman_executor_heartbeat_gap_seconds_bucket{le=\"+Inf\"}"), Some(2.0), "{text}");
    let executors = t.get("/api/v1/cluster/executors").await.json();
    assert_eq!(executors["executors"][0]["id"], executor);
    assert_eq!(executors["executors"][0]["status"], "online");
    assert_eq!(executors["executors"][0]["labels"], json!({"zone": "east"}));
    let leader = t.get("/api/v1/cluster/leader").await.json();
    assert_eq!(leader, json!({"name": "m-metrics", "address": t.grpc, "leader_epoch": epoch}));
    let masters = t.get("/api/v1/cluster/masters").await.json();
    assert_eq!(masters, json!({"masters": [{"name": "m-metrics", "address": t.grpc, "is_leader": true}]}));

    // A job whose selector no executor satisfies is rejected on every pass of the leader loop; a job that fits is
    // placed (its dispatch then fails: nothing listens at the executor's address, which then gets no work for an
    // offline TTL, so the selector's job is created first, while the executor is still a candidate).
    let nowhere = json!({"type": "fake", "config": CONFIG, "id": "nowhere", "selectors": ["zone=west"]});
    assert_eq!(t.post("/api/v1/jobs", &nowhere.to_string()).await.status, 201);
    let fits = json!({"type": "fake", "config": CONFIG, "id": "fits"});
    assert_eq!(t.post("/api/v1/jobs", &fits.to_string()).await.status, 201);
    t.wait_for_metric("foreman_placements_total{kind=\"job_master\"}", 1.0).await;
    t.wait_for_metric("foreman_placement_rejections_total{reason=\"selector_unsatisfied\"}", 1.0).await;
    let text = t.get("/metrics").await.body;
    // The registration, the two creates and the placement were written; the leader loop ticked.
    let now_written = sample(&text, "foreman_metastore_requests_total{op=\"write\"}").expect("the writes");
    assert!(now_written >= writes + 3.0, "{writes} -> {now_written}:\n{text}");
    assert!(sample(&text, "foreman_leader_tick_cpu_seconds_count").is_some_and(|n| n >= 1.0), "{text}");
    let jobs: f64 = ["created", "running", "canceling", "finished", "canceled", "failed"]
        .iter()
        .filter_map(|s| sample(&text, &format!("foreman_jobs{{state=\"{s}\"}}")))
        .sum();
    assert_eq!(jobs, 2.0, "{text}");

    // A worker placement asked for by a job master that is not the job's current one is refused and counted.
    let stale = pb::ScheduleTaskRequest {
        task_id: "fits-w1".into(),
        cost: 1,
        job_id: "fits".into(),
        master_epoch: 999,
        ..Default::default()
    };
    let refused = TaskSchedulerClient::new(t.channel()).schedule_task(stale).await;
    assert!(refused.is_err(), "{refused:?}");
    t.wait_for_metric("foreman_placement_rejections_total{reason=\"stale_job_master\"}", 1.0).await;
}

#[tokio::test]
async fn a_follower_forwards_job_calls_to_the_leader_and_says_it_follows() {
    let store = MetaStore::embedded("test-pair", None).expect("an embedded store");
    let leader = Node::start("pair-leader", "pair", store.clone()).await;
    leader.wait_for_role("leader").await;
    let follower = Node::start("pair-follower", "pair", store).await;
    let health = follower.get("/healthz").await.json();
    assert_eq!((health["role"].as_str(), &health["leader_epoch"]), (Some("follower"), &Value::Null), "{health}");

    // The follower's answers are the leader's.
    let created =
        follower.post("/api/v1/jobs", &json!({"type": "fake", "config": CONFIG, "id": "fwd"}).to_string()).await;
    assert_eq!(created.status, 201, "{created:?}");
    let created = placement_said(created.json());
    assert_eq!(placement_said(leader.get("/api/v1/jobs/fwd").await.json()), created);
    assert_eq!(placement_said(follower.get("/api/v1/jobs/fwd").await.json()), created);
    follower.get("/api/v1/jobs/nosuch").await.assert_refused(404, "NOT_FOUND", Some("JOB_NOT_FOUND"), &["nosuch"]);
    assert_eq!(follower.get("/api/v1/cluster/leader").await.json()["name"], "m-pair-leader");
    // A job's status, from either: no job master ran, so none yet, saying why; an unknown job is a 404.
    for node in [&leader, &follower] {
        let status = node.get("/api/v1/jobs/fwd/status").await;
        assert_eq!(status.status, 200, "{status:?}");
        let status = status.json();
        let want = json!({"id": "fwd", "source": "none", "epoch": 0, "job_epoch": 0, "at_unix_ms": null,
                          "note": "no job master runs now; no job master has stored a status yet", "status": null});
        assert_eq!(status, want);
        node.get("/api/v1/jobs/nosuch/status").await.assert_refused(
            404,
            "NOT_FOUND",
            Some("JOB_NOT_FOUND"),
            &["nosuch"],
        );
        let long = format!("/api/v1/jobs/{}/status", "j".repeat(64));
        node.get(&long).await.assert_refused(400, "INVALID_ARGUMENT", Some("INVALID_ARGUMENT"), &["id"]);
    }

    // Its metrics: no registry or jobs of its own, and it does not lead.
    let text = follower.get("/metrics").await.body;
    assert_eq!(sample(&text, "foreman_is_leader"), Some(0.0), "{text}");
    assert_eq!(sample(&text, "foreman_leader_epoch"), Some(0.0), "{text}");
    assert!(text.contains("# TYPE foreman_jobs gauge\n") && !text.contains("foreman_jobs{"), "{text}");
}

/// A refusal over HTTP is as bounded as over gRPC: a 100 KB job id is a 400 whose message quotes a prefix and the
/// size, from the leader and through a follower.
#[tokio::test]
async fn a_huge_input_gets_a_bounded_refusal_from_the_leader_and_through_a_follower() {
    let store = MetaStore::embedded("test-bounded", None).expect("an embedded store");
    let leader = Node::start("bounded-leader", "bounded", store.clone()).await;
    leader.wait_for_role("leader").await;
    let follower = Node::start("bounded-follower", "bounded", store).await;
    follower.wait_for_role("follower").await;
    let huge = "j".repeat(100_000);
    let body = json!({"type": "fake", "config": CONFIG, "id": huge}).to_string();
    for node in [&leader, &follower] {
        let refused = node.post("/api/v1/jobs", &body).await;
        refused.assert_refused(400, "INVALID_ARGUMENT", Some("INVALID_ARGUMENT"), &["job.id", "…(100000 bytes)"]);
        assert!(refused.body.len() < 2 * foreman::rpc::status::MESSAGE_MAX, "{} bytes", refused.body.len());
    }
}

/// More than [`http::REQUESTS_IN_FLIGHT_MAX`] requests at once: the next is refused at once with 503 and a
/// `Retry-After`, like every other 503 of the API.
#[tokio::test]
async fn an_overloaded_api_answers_503_with_retry_after() {
    let t = Node::leader("overload").await;
    // Requests that hold their slot: the head of a create whose body never comes.
    let mut held = vec![];
    for _ in 0..http::REQUESTS_IN_FLIGHT_MAX {
        let mut stream = tokio::net::TcpStream::connect(&t.http).await.expect("connect");
        let head = format!(
            "POST /api/v1/jobs HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
            t.http
        );
        stream.write_all(head.as_bytes()).await.expect("send the head");
        held.push(stream);
    }
    let started = tokio::time::Instant::now();
    let refused = loop {
        let r = t.get("/healthz").await;
        if r.status == 503 {
            break r;
        }
        assert_eq!(r.status, 200, "{r:?}");
        assert!(started.elapsed() < ACT_DEADLINE, "no 503 with {} requests held", held.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    refused.assert_refused(503, "UNAVAILABLE", None, &["requests are in flight", "retry"]);
    assert_eq!(refused.headers.get("retry-after").map(String::as_str), Some("1"), "{refused:?}");
    drop(held);
    let started = tokio::time::Instant::now();
    while t.get("/healthz").await.status != 200 {
        assert!(started.elapsed() < ACT_DEADLINE, "still refusing after the held requests went");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A create token reused for another request is a 409 naming what differs, through any master.
#[tokio::test]
async fn a_reused_create_token_is_a_conflict() {
    let store = MetaStore::embedded("test-reused", None).expect("an embedded store");
    let leader = Node::start("reused-leader", "reused", store.clone()).await;
    leader.wait_for_role("leader").await;
    let follower = Node::start("reused-follower", "reused", store).await;
    follower.wait_for_role("follower").await;
    let create = |config: &str| json!({"type": "fake", "config": config, "id": "t1", "request_id": "r-1"}).to_string();
    assert_eq!(leader.post("/api/v1/jobs", &create(CONFIG)).await.status, 201);
    assert_eq!(follower.post("/api/v1/jobs", &create(CONFIG)).await.status, 201, "a repeat gets the job again");
    let other = r#"{"workers": 1, "target": 1, "tick_ms": 1}"#;
    follower.post("/api/v1/jobs", &create(other)).await.assert_refused(
        409,
        "ALREADY_EXISTS",
        Some("REQUEST_ID_REUSED"),
        &["r-1", "t1", "job.config"],
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Connections: timeouts, the cap, graceful shutdown
// ---------------------------------------------------------------------------------------------------------------

/// How long past a timeout the server may take to close a connection (scheduling on a loaded machine).
const CLOSE_MARGIN: Duration = Duration::from_secs(5);
/// How much earlier than a timeout a close may be observed: the client's clock starts a little after the server's.
const CLOSE_SLACK: Duration = Duration::from_millis(50);

/// Reads and discards what the server sends on `stream` until it closes the connection (EOF or a reset). Returns
/// how long after `since` it was closed; fails the test if it is still open `deadline` after `since`.
async fn wait_closed(stream: &mut TcpStream, since: Instant, deadline: Duration) -> Duration {
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout_at(since + deadline, async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open for {deadline:?}");
    since.elapsed()
}

/// Sends `GET path` on the kept-alive connection `stream` and reads its answer (a body with `Content-Length`),
/// leaving the connection open.
async fn keep_alive_get(stream: &mut TcpStream, addr: &str, path: &str) -> Reply {
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("send the head");
    let read = async {
        let (mut raw, mut buf) = (vec![], [0u8; 4096]);
        loop {
            let n = stream.read(&mut buf).await.expect("read the answer");
            assert!(n > 0, "closed before a whole answer: {:?}", String::from_utf8_lossy(&raw));
            raw.extend_from_slice(&buf[..n]);
            let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            let Some(reply) = parse_reply(&raw) else { continue };
            let length: usize = reply.headers.get("content-length").and_then(|v| v.parse().ok()).expect("a length");
            if raw.len() >= split + 4 + length {
                return reply;
            }
        }
    };
    tokio::time::timeout(CALL_TIMEOUT, read).await.unwrap_or_else(|_| panic!("GET {path}: no answer in time"))
}

/// The `[http]` settings of a test: the two timeouts, the defaults otherwise.
fn timeouts(header_read_timeout: Duration, idle_timeout: Duration) -> HttpConfig {
    HttpConfig { header_read_timeout, idle_timeout, ..HttpConfig::default() }
}

/// A slowloris holds a connection by sending headers that never end. The header-read timeout counts from their
/// first byte, and sending more does not extend it: both a stalled and a trickling client are closed once it has
/// passed (the idle timeout is a minute, so nothing else closes them), and the API keeps answering.
#[tokio::test]
async fn a_slowloris_is_closed_after_the_header_read_timeout() {
    let header_read_timeout = Duration::from_secs(1);
    let t = Node::leader_with("slowloris", timeouts(header_read_timeout, Duration::from_secs(60))).await;
    let partial = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\nX-Slow: ", t.http);

    let mut stalled = TcpStream::connect(&t.http).await.expect("connect");
    stalled.write_all(partial.as_bytes()).await.expect("send part of the headers");
    let stalled_since = Instant::now();

    let (mut trickle_read, mut trickle_write) = TcpStream::connect(&t.http).await.expect("connect").into_split();
    trickle_write.write_all(partial.as_bytes()).await.expect("send part of the headers");
    let trickle_since = Instant::now();
    // One more header byte every 100 ms, for at most 10 s or until the server has closed the connection.
    let trickler = tokio::spawn(async move {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if trickle_write.write_all(b"x").await.is_err() {
                return;
            }
        }
    });

    let took = wait_closed(&mut stalled, stalled_since, header_read_timeout + CLOSE_MARGIN).await;
    assert!(took + CLOSE_SLACK >= header_read_timeout, "closed after {took:?}, before the timeout");
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout_at(trickle_since + header_read_timeout + CLOSE_MARGIN, async {
        while let Ok(n) = trickle_read.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a trickling client kept its connection open past the header-read timeout");
    let took = trickle_since.elapsed();
    assert!(took + CLOSE_SLACK >= header_read_timeout, "closed after {took:?}, before the timeout");
    trickler.abort();
    assert_eq!(t.get("/healthz").await.status, 200);
}

/// A connection with no request on it is closed after the idle timeout, whether it never sent anything or was kept
/// alive after an answer; a connection in use is not (each request starts the idle time over).
#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let idle_timeout = Duration::from_secs(1);
    let t = Node::leader_with("idle", timeouts(Duration::from_secs(60), idle_timeout)).await;

    let mut silent = TcpStream::connect(&t.http).await.expect("connect");
    let silent_since = Instant::now();
    let mut kept = TcpStream::connect(&t.http).await.expect("connect");
    assert_eq!(keep_alive_get(&mut kept, &t.http, "/healthz").await.status, 200);
    let kept_since = Instant::now();
    // In use for 2.5 idle timeouts, a request every 0.4 of one: never closed.
    let mut busy = TcpStream::connect(&t.http).await.expect("connect");
    let busy_since = Instant::now();
    while busy_since.elapsed() < idle_timeout * 5 / 2 {
        assert_eq!(keep_alive_get(&mut busy, &t.http, "/healthz").await.status, 200);
        tokio::time::sleep(idle_timeout * 2 / 5).await;
    }

    let took = wait_closed(&mut silent, silent_since, idle_timeout + CLOSE_MARGIN).await;
    assert!(took + CLOSE_SLACK >= idle_timeout, "a silent connection closed after {took:?}, before the timeout");
    let took = wait_closed(&mut kept, kept_since, idle_timeout + CLOSE_MARGIN).await;
    assert!(took + CLOSE_SLACK >= idle_timeout, "a kept-alive connection closed after {took:?}, before the timeout");
    let busy_since = Instant::now();
    wait_closed(&mut busy, busy_since, idle_timeout + CLOSE_MARGIN).await;
}

/// With the cap's connections all open, one more gets an immediate 503 with `Retry-After` and is closed, as many
/// times as it is tried; the gRPC API of the same master answers all along; once some close, the API answers again,
/// and the held connections still work.
#[tokio::test]
async fn connections_over_the_cap_get_503_while_grpc_keeps_answering() {
    let cap = 8;
    let t = Node::leader_with("cap", HttpConfig { max_connections: Some(cap), ..HttpConfig::default() }).await;
    let mut held = vec![];
    for _ in 0..cap {
        let mut stream = TcpStream::connect(&t.http).await.expect("connect");
        // An answer means the server accepted it and holds its place.
        assert_eq!(keep_alive_get(&mut stream, &t.http, "/healthz").await.status, 200);
        held.push(stream);
    }
    for _ in 0..3 * cap {
        let started = Instant::now();
        let refused = t.get("/healthz").await;
        refused.assert_refused(503, "UNAVAILABLE", None, &["8 HTTP connections", "http.max-connections", "retry"]);
        assert_eq!(refused.headers.get("retry-after").map(String::as_str), Some("1"), "{refused:?}");
        assert_eq!(refused.headers.get("connection").map(String::as_str), Some("close"), "{refused:?}");
        assert!(started.elapsed() < Duration::from_secs(1), "the refusal took {:?}", started.elapsed());
    }
    let leader = DiscoveryClient::new(t.channel()).get_leader(pb::GetLeaderRequest {}).await;
    let leader = leader.expect("GetLeader over gRPC while HTTP is at its cap").into_inner();
    assert_eq!(leader.name, "m-cap");

    held.truncate(cap as usize / 2);
    let started = Instant::now();
    while t.get("/healthz").await.status != 200 {
        assert!(started.elapsed() < ACT_DEADLINE, "still refusing after half the connections closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for stream in &mut held {
        assert_eq!(keep_alive_get(stream, &t.http, "/healthz").await.status, 200);
    }
}

/// A graceful shutdown lets a request being received finish (its answer comes, then the close), closes idle
/// connections, stops accepting, and returns.
#[tokio::test]
async fn a_graceful_shutdown_finishes_requests_and_closes_idle_connections() {
    let mut t = Node::leader("graceful").await;
    let mut idle = TcpStream::connect(&t.http).await.expect("connect");
    assert_eq!(keep_alive_get(&mut idle, &t.http, "/healthz").await.status, 200);
    let body = json!({"type": "fake", "config": CONFIG, "id": "late"}).to_string();
    let mut busy = TcpStream::connect(&t.http).await.expect("connect");
    let head = format!(
        "POST /api/v1/jobs HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        t.http,
        body.len()
    );
    busy.write_all(head.as_bytes()).await.expect("send the head");
    // The request is in the server's hands (it waits for the body) before the shutdown.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let _ = t.stop_http.take().expect("serving").send(());
    let since = Instant::now();
    wait_closed(&mut idle, since, CLOSE_MARGIN).await;
    busy.write_all(body.as_bytes()).await.expect("send the body");
    let mut raw = vec![];
    tokio::time::timeout(CALL_TIMEOUT, busy.read_to_end(&mut raw)).await.expect("an answer").expect("read");
    let answer = parse_reply(&raw).unwrap_or_else(|| panic!("not an answer: {:?}", String::from_utf8_lossy(&raw)));
    assert_eq!(answer.status, 201, "{answer:?}");
    let served = tokio::time::timeout(CLOSE_MARGIN, &mut t.http_served).await.expect("serve returns");
    served.expect("the server task").expect("the server");
    assert!(TcpStream::connect(&t.http).await.is_err(), "still accepting after the shutdown");
}

// ---------------------------------------------------------------------------------------------------------------
// Foreign requests: Content-Type, Host, Origin
// ---------------------------------------------------------------------------------------------------------------

/// What a web page can send to a loopback master is refused: a body not said to be JSON (a "simple" cross-origin
/// request needs no preflight), a foreign `Host` (DNS rebinding), a foreign `Origin` (cross-site); none of them
/// changes anything. The API's own names, a configured name, and a same-origin page work.
#[tokio::test]
async fn a_web_page_cannot_drive_the_api() {
    let t =
        Node::leader_with("foreign", HttpConfig { names: vec!["foreman.test".into()], ..HttpConfig::default() }).await;
    let port = t.http.rsplit_once(':').expect("host:port").1;
    let localhost = format!("localhost:{port}");
    let job = json!({"type": "fake", "config": CONFIG, "id": "j"}).to_string();
    let create = |headers: Vec<(&'static str, String)>| {
        let (addr, job) = (t.http.clone(), job.clone());
        async move {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            call_with(&addr, "POST", "/api/v1/jobs", &headers, Some(&job)).await
        }
    };
    let invalid = Some("INVALID_ARGUMENT");

    // Content-Type
    let plain = create(vec![("Host", t.http.clone()), ("Content-Type", "text/plain".into())]).await;
    plain.assert_refused(415, "INVALID_ARGUMENT", invalid, &["\"text/plain\"", "send Content-Type: application/json"]);
    let form = create(vec![("Host", t.http.clone()), ("Content-Type", "application/x-www-form-urlencoded".into())]);
    form.await.assert_refused(415, "INVALID_ARGUMENT", invalid, &["application/x-www-form-urlencoded"]);
    let untyped = create(vec![("Host", t.http.clone())]).await;
    untyped.assert_refused(415, "INVALID_ARGUMENT", invalid, &["is missing", "send Content-Type: application/json"]);

    // Host
    let accepted = [t.http.as_str(), &localhost, "foreman.test"];
    for host in ["evil.example", &format!("evil.example:{port}"), &format!("localhost:{}", 1)] {
        let r = call_with(&t.http, "GET", "/api/v1/jobs", &[("Host", host)], None).await;
        r.assert_refused(421, "PERMISSION_DENIED", None, &[&format!("{host:?}"), &localhost, "http.names"]);
    }
    let rebound = create(vec![("Host", format!("evil.example:{port}")), ("Content-Type", "application/json".into())]);
    rebound.await.assert_refused(421, "PERMISSION_DENIED", None, &["evil.example"]);

    // Origin
    for origin in ["http://evil.example", &format!("http://evil.example:{port}"), "null"] {
        let headers = vec![
            ("Host", t.http.clone()),
            ("Origin", origin.to_owned()),
            ("Content-Type", "application/json".to_owned()),
        ];
        create(headers).await.assert_refused(403, "PERMISSION_DENIED", None, &[&format!("{origin:?}"), &localhost]);
    }
    assert_eq!(t.get("/api/v1/jobs").await.json()["jobs"], json!([]), "a refused request created a job");

    // The API's own names and a configured one; a same-origin page with a charset.
    for host in accepted {
        let r = call_with(&t.http, "GET", "/healthz", &[("Host", host)], None).await;
        assert_eq!(r.status, 200, "{host}: {r:?}");
    }
    let headers = vec![
        ("Host", localhost.clone()),
        ("Origin", format!("http://{localhost}")),
        ("Content-Type", "application/json; charset=utf-8".to_owned()),
    ];
    let created = create(headers).await;
    assert_eq!(created.status, 201, "{created:?}");
    // A request without a body needs no Content-Type.
    let canceled = call_with(&t.http, "POST", "/api/v1/jobs/j/cancel", &[("Host", "foreman.test")], None).await;
    assert_eq!(canceled.status, 200, "{canceled:?}");
}
