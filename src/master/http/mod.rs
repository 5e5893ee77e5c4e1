//! The master's HTTP/JSON API and its Prometheus metrics (production build only; docs/openapi.json describes it).
//!
//! Every job and cluster endpoint calls, in process, the very [`MasterService`] method that its gRPC twin reaches:
//! validation, forwarding of leader-only calls to the leader, and refusals with their stable reasons are the gRPC
//! API's, so the two cannot drift apart. A refusal becomes an HTTP status through one table ([`HTTP_STATUSES`])
//! and the JSON body `{"code": "NOT_FOUND", "reason": "JOB_NOT_FOUND", "message": "..."}` (`code` is the gRPC code,
//! `reason` the stable reason or `null`). Bodies are the JSON that `foreman ... --output json` prints
//! ([`crate::cli::output`]). The caller is the gRPC API's too: a request's `Authorization: Bearer <token>` is
//! passed to the handler as the call's `authorization` entry, so a token means the same user on both APIs (401
//! without one or with an unknown one when the masters check identities, 403 naming the role and project missing).
//!
//! Invariants:
//! - the endpoints served are exactly [`ROUTES`]; the OpenAPI test holds docs/openapi.json to the same list;
//! - nothing from the network panics: bodies, paths and query strings are parsed by `input`, and every failure is
//!   a 400 whose message says what to fix;
//! - every request is bounded: its body by [`BODY_MAX_BYTES`], its handling by twice the master's request timeout
//!   (a forwarded call may take a connect and a call), and the requests in flight by [`REQUESTS_IN_FLIGHT_MAX`];
//! - every connection is bounded (`server`): their number by a cap that keeps file descriptors for the rest of the
//!   process, the time to send a request's headers and the time a connection may sit idle by `[http]` settings;
//! - no request reaches a handler unless it names this API in `Host`, comes from no foreign web `Origin`, and, when
//!   it has a body, says it is JSON (`guard`): a web page cannot drive the API;
//! - every 503 (overload) carries `Retry-After`.

mod guard;
mod input;
mod server;

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;
use serde::Serialize;
use tokio::sync::Semaphore;
use tonic::{Code, Request, Status};

use super::{Master, MasterService, Role};
use crate::config::MasterConfig;
use crate::rpc::pb;
use crate::rpc::pb::discovery_server::Discovery;
use crate::rpc::pb::job_manager_server::JobManager;
use crate::rpc::status::{reason_of, Reason};
use crate::rpc::views::{
    DeletedView, ExecutorListView, ExecutorView, JobListView, JobStatusView, JobView, LeaderView, MasterListView,
    MasterView,
};

/// The largest request body read, in bytes: a job configuration (at most 64 KiB) escaped into a JSON string,
/// with room to spare.
pub const BODY_MAX_BYTES: usize = 256 * 1024;
/// The most requests handled at once; more are refused with 503 at once rather than queued.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 64;
/// The OpenAPI description of this API, served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");
/// The media type of the Prometheus text format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One endpoint: its method, its path (axum's syntax, which is OpenAPI's: `/api/v1/jobs/{id}`), its handler.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    handler: fn() -> MethodRouter<Api>,
}

/// Every endpoint the HTTP API serves: the router is built from this table and nothing else.
pub const ROUTES: &[Route] = &[
    Route { method: Method::GET, path: "/healthz", handler: || get(healthz) },
    Route { method: Method::GET, path: "/metrics", handler: || get(metrics) },
    Route { method: Method::GET, path: "/api/v1/openapi.json", handler: || get(openapi) },
    Route { method: Method::POST, path: "/api/v1/jobs", handler: || post(create_job) },
    Route { method: Method::GET, path: "/api/v1/jobs", handler: || get(list_jobs) },
    Route { method: Method::GET, path: "/api/v1/jobs/{id}", handler: || get(get_job) },
    Route { method: Method::DELETE, path: "/api/v1/jobs/{id}", handler: || delete(delete_job) },
    Route { method: Method::POST, path: "/api/v1/jobs/{id}/cancel", handler: || post(cancel_job) },
    Route { method: Method::GET, path: "/api/v1/jobs/{id}/status", handler: || get(get_job_status) },
    Route { method: Method::GET, path: "/api/v1/jobs/{id}/logs", handler: || get(get_job_logs) },
    Route { method: Method::GET, path: "/api/v1/cluster/leader", handler: || get(cluster_leader) },
    Route { method: Method::GET, path: "/api/v1/cluster/masters", handler: || get(cluster_masters) },
    Route { method: Method::GET, path: "/api/v1/cluster/executors", handler: || get(cluster_executors) },
];

/// Each gRPC code, its name in error bodies, and the HTTP status it is answered with (grpc-gateway's mapping,
/// except `FAILED_PRECONDITION`: 409, the request conflicts with the job's state).
pub const HTTP_STATUSES: &[(Code, &str, u16)] = &[
    (Code::Ok, "OK", 200),
    (Code::Cancelled, "CANCELLED", 499),
    (Code::Unknown, "UNKNOWN", 500),
    (Code::InvalidArgument, "INVALID_ARGUMENT", 400),
    (Code::DeadlineExceeded, "DEADLINE_EXCEEDED", 504),
    (Code::NotFound, "NOT_FOUND", 404),
    (Code::AlreadyExists, "ALREADY_EXISTS", 409),
    (Code::PermissionDenied, "PERMISSION_DENIED", 403),
    (Code::ResourceExhausted, "RESOURCE_EXHAUSTED", 429),
    (Code::FailedPrecondition, "FAILED_PRECONDITION", 409),
    (Code::Aborted, "ABORTED", 409),
    (Code::OutOfRange, "OUT_OF_RANGE", 400),
    (Code::Unimplemented, "UNIMPLEMENTED", 501),
    (Code::Internal, "INTERNAL", 500),
    (Code::Unavailable, "UNAVAILABLE", 503),
    (Code::DataLoss, "DATA_LOSS", 500),
    (Code::Unauthenticated, "UNAUTHENTICATED", 401),
];

/// What every handler holds: the services, called in process, their master, and the names the API answers to.
#[derive(Clone)]
pub struct Api {
    svc: MasterService,
    m: Arc<Master>,
    in_flight: Arc<Semaphore>,
    names: Arc<guard::Names>,
}

/// The router of [`ROUTES`], with JSON answers for unknown paths and methods, over master `m`, answering to `names`.
fn router(m: Arc<Master>, names: guard::Names) -> Router {
    let api = Api {
        svc: MasterService::new(m.clone()),
        m,
        in_flight: Arc::new(Semaphore::new(REQUESTS_IN_FLIGHT_MAX)),
        names: Arc::new(names),
    };
    let routes = ROUTES.iter().fold(Router::new(), |r, route| r.route(route.path, (route.handler)()));
    // The last layer added runs first: the guard refuses foreign requests before they take a slot in flight.
    routes
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(api.clone(), limit_in_flight))
        .layer(axum::middleware::from_fn_with_state(api.clone(), guard_request))
        .layer(DefaultBodyLimit::max(BODY_MAX_BYTES))
        .with_state(api)
}

/// Serves the API on `listener` with the limits of the master's `[http]` settings until `shutdown` resolves; then
/// lets open connections finish their requests and returns once they have closed.
pub async fn serve(
    m: Arc<Master>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let names = guard::Names::new(local, &m.cfg.http_addr, &m.cfg.http.names);
    tracing::info!(http = %local, names = %names.as_slice().join(","), "the HTTP API answers to these hosts");
    let http = m.cfg.http.clone();
    let handling = handling_deadline(&m.cfg);
    server::serve(router(m, names), listener, &http, handling, shutdown).await
}

/// The deadline on handling one request: twice the master's request timeout (a forwarded call may take a connect
/// and a call).
fn handling_deadline(cfg: &MasterConfig) -> std::time::Duration {
    cfg.rpc.request_timeout * 2
}

// ---------------------------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------------------------

/// The body of every refusal.
#[derive(Debug, Serialize)]
struct ErrorBody {
    /// The gRPC code's name, e.g. `NOT_FOUND`.
    code: &'static str,
    /// The stable reason (`crate::rpc::status::Reason`), `null` when the refusal has none.
    reason: Option<&'static str>,
    message: String,
}

/// A refusal: an HTTP status and its [`ErrorBody`].
#[derive(Debug)]
pub struct ApiError {
    http: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    fn new(http: StatusCode, code: Code, reason: Option<Reason>, message: impl Into<String>) -> ApiError {
        ApiError {
            http,
            body: ErrorBody { code: code_name(code), reason: reason.map(Reason::as_str), message: message.into() },
        }
    }
}

fn row(code: Code) -> &'static (Code, &'static str, u16) {
    HTTP_STATUSES.iter().find(|(c, _, _)| *c == code).unwrap_or(&(Code::Unknown, "UNKNOWN", 500))
}

fn code_name(code: Code) -> &'static str {
    row(code).1
}

/// The HTTP status a gRPC code is answered with.
pub fn http_status(code: Code) -> StatusCode {
    StatusCode::from_u16(row(code).2).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl From<Status> for ApiError {
    fn from(s: Status) -> ApiError {
        ApiError::new(http_status(s.code()), s.code(), reason_of(&s), s.message())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = self.http == StatusCode::SERVICE_UNAVAILABLE;
        let mut response = json(self.http, &self.body);
        if retry {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// `body` as JSON with `status`.
fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the answer: {e}")).into_response(),
    }
}

type Answer = Result<Response, ApiError>;

/// Runs a service call under the API's deadline.
async fn call<T>(api: &Api, f: impl Future<Output = Result<tonic::Response<T>, Status>>) -> Result<T, ApiError> {
    let deadline = handling_deadline(&api.m.cfg);
    match tokio::time::timeout(deadline, f).await {
        Ok(r) => r.map(tonic::Response::into_inner).map_err(ApiError::from),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            Code::DeadlineExceeded,
            None,
            format!(
                "the master did not answer within {}; the outcome is unknown: read before retrying a change",
                crate::config::format_duration(deadline)
            ),
        )),
    }
}

/// The job id of a path, or why it is not one.
fn path_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(id)| id)
        .map_err(|e| ApiError::new(e.status(), Code::InvalidArgument, Some(Reason::InvalidArgument), e.body_text()))
}

/// Why a request body could not be read.
fn body_error(e: BytesRejection) -> ApiError {
    let message = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        format!(
            "request body: larger than {BODY_MAX_BYTES} bytes; a job configuration may have at most {} bytes",
            crate::jobs::CONFIG_MAX_BYTES
        )
    } else {
        format!("request body: {}", e.body_text())
    };
    ApiError::new(e.status(), Code::InvalidArgument, Some(Reason::InvalidArgument), message)
}

// ---------------------------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------------------------

/// Refuses a request that does not name this API, comes from a foreign web page, or has a body not said to be JSON
/// (`guard`), before it takes a slot in flight.
async fn guard_request(State(api): State<Api>, request: axum::extract::Request, next: Next) -> Response {
    let checked = api
        .names
        .check_host(request.headers(), request.uri())
        .and_then(|()| api.names.check_origin(request.headers()))
        .and_then(|()| guard::check_content_type(request.headers()));
    match checked {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// Refuses a request at once when [`REQUESTS_IN_FLIGHT_MAX`] are being handled.
async fn limit_in_flight(State(api): State<Api>, request: axum::extract::Request, next: Next) -> Response {
    let Ok(_permit) = api.in_flight.try_acquire() else {
        let message = format!("{REQUESTS_IN_FLIGHT_MAX} requests are in flight; retry");
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, Code::Unavailable, None, message).into_response();
    };
    next.run(request).await
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    let message = format!("no endpoint {method} {}; the endpoints are listed at /api/v1/openapi.json", uri.path());
    ApiError::new(StatusCode::NOT_FOUND, Code::NotFound, None, message)
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    let allowed: Vec<&str> =
        ROUTES.iter().filter(|r| matches_path(r.path, uri.path())).map(|r| r.method.as_str()).collect();
    let message = format!("{} does not take {method}; use {}", uri.path(), allowed.join(" or "));
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, Code::Unimplemented, None, message)
}

/// Whether `path` fits the route pattern `pattern` (`{name}` matches one segment).
fn matches_path(pattern: &str, path: &str) -> bool {
    let (p, q): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == q.len() && p.iter().zip(&q).all(|(a, b)| a == b || (a.starts_with('{') && a.ends_with('}')))
}

/// `GET /healthz`: 200 while the process serves, with its role.
async fn healthz(State(api): State<Api>) -> Response {
    #[derive(Serialize)]
    struct Health<'a> {
        status: &'static str,
        name: &'a str,
        /// `leader`, `recovering` (leader, recovery not done) or `follower`.
        role: &'static str,
        /// The epoch this master leads under, `null` when it follows.
        leader_epoch: Option<u64>,
    }
    let (role, leader_epoch) = match api.m.role() {
        Role::Leader(e) => ("leader", Some(e.0)),
        Role::Recovering(e) => ("recovering", Some(e.0)),
        Role::Follower => ("follower", None),
    };
    json(StatusCode::OK, &Health { status: "ok", name: api.m.name(), role, leader_epoch })
}

/// `GET /metrics`: the Prometheus text exposition.
async fn metrics(State(api): State<Api>) -> Response {
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], api.m.metrics_text().await).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// `POST /api/v1/jobs`: 201 with the job (or, for a repeat of an applied create token, the job it created).
async fn create_job(State(api): State<Api>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Answer {
    let body = body.map_err(body_error)?;
    let req = input::create_job_request(&body)?;
    let job = call(&api, JobManager::create_job(&api.svc, grpc(&headers, req))).await?;
    let mut response = json(StatusCode::CREATED, &JobView::from(&job));
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/jobs/{}", job.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /api/v1/jobs?state=&type=&page_size=&page_token=&include_config=&project=`: one page of jobs (of the
/// projects the caller may read).
async fn list_jobs(State(api): State<Api>, headers: HeaderMap, RawQuery(query): RawQuery) -> Answer {
    let q = input::Query::parse(
        query.as_deref(),
        &["state", "type", "page_size", "page_token", "include_config", "project"],
    )?;
    let req = pb::ListJobsRequest {
        page_size: q.number("page_size")?,
        page_token: q.text("page_token"),
        r#type: q.text("type"),
        state: q.job_state("state")? as i32,
        include_config: q.flag("include_config")?,
        project: q.text("project"),
    };
    let page = call(&api, JobManager::list_jobs(&api.svc, grpc(&headers, req))).await?;
    let view = JobListView {
        jobs: page.jobs.iter().map(JobView::from).collect(),
        next_page_token: (!page.next_page_token.is_empty()).then_some(page.next_page_token),
    };
    Ok(json(StatusCode::OK, &view))
}

/// `GET /api/v1/jobs/{id}?include_config=`.
async fn get_job(
    State(api): State<Api>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Answer {
    let q = input::Query::parse(query.as_deref(), &["include_config"])?;
    let req = pb::GetJobRequest { id: path_id(id)?, include_config: q.flag("include_config")? };
    let job = call(&api, JobManager::get_job(&api.svc, grpc(&headers, req))).await?;
    Ok(json(StatusCode::OK, &JobView::from(&job)))
}

/// `GET /api/v1/jobs/{id}/status`: the job's status as its job master sees it (live, stored, or none yet).
async fn get_job_status(State(api): State<Api>, headers: HeaderMap, id: Result<Path<String>, PathRejection>) -> Answer {
    let req = pb::GetJobStatusRequest { id: path_id(id)? };
    let status = call(&api, JobManager::get_job_status(&api.svc, grpc(&headers, req))).await?;
    Ok(json(StatusCode::OK, &JobStatusView::from(&status)))
}

/// `GET /api/v1/jobs/{id}/logs?worker=&epoch=&stream=&offset=&max_bytes=`: where the job's logs are, and with a
/// worker a chunk of one stream of its newest incarnation (or `epoch`).
async fn get_job_logs(
    State(api): State<Api>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Answer {
    let q = input::Query::parse(query.as_deref(), &["worker", "epoch", "stream", "offset", "max_bytes"])?;
    let id = path_id(id)?;
    let req = pb::JobLogsRequest {
        id: id.clone(),
        worker: q.text("worker"),
        epoch: q.big_number("epoch")?,
        stream: q.log_stream("stream")? as i32,
        offset: q.big_number("offset")?,
        max_bytes: q.big_number("max_bytes")?,
    };
    let logs = call(&api, JobManager::job_logs(&api.svc, grpc(&headers, req))).await?;
    Ok(json(StatusCode::OK, &crate::rpc::views::JobLogsView::of(&id, &logs)))
}

/// `POST /api/v1/jobs/{id}/cancel`: the job as the cancel left it.
async fn cancel_job(State(api): State<Api>, headers: HeaderMap, id: Result<Path<String>, PathRejection>) -> Answer {
    let req = pb::CancelJobRequest { id: path_id(id)? };
    let job = call(&api, JobManager::cancel_job(&api.svc, grpc(&headers, req))).await?;
    Ok(json(StatusCode::OK, &JobView::from(&job)))
}

/// `DELETE /api/v1/jobs/{id}`: only a job that has ended.
async fn delete_job(State(api): State<Api>, headers: HeaderMap, id: Result<Path<String>, PathRejection>) -> Answer {
    let id = path_id(id)?;
    call(&api, JobManager::delete_job(&api.svc, grpc(&headers, pb::DeleteJobRequest { id: id.clone() }))).await?;
    Ok(json(StatusCode::OK, &DeletedView { id, deleted: true }))
}

/// `message` as the gRPC request its handler takes, carrying the HTTP request's `Authorization` (a user's bearer
/// token) as the gRPC call's: the caller is then the same principal on both APIs.
fn grpc<T>(headers: &HeaderMap, message: T) -> Request<T> {
    let mut r = Request::new(message);
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        if let Ok(v) = tonic::metadata::MetadataValue::try_from(v.as_bytes()) {
            r.metadata_mut().insert(crate::rpc::identity::AUTHORIZATION_KEY, v);
        }
    }
    r
}

async fn cluster_leader(State(api): State<Api>, headers: HeaderMap) -> Answer {
    let leader = call(&api, Discovery::get_leader(&api.svc, grpc(&headers, pb::GetLeaderRequest {}))).await?;
    Ok(json(StatusCode::OK, &LeaderView::from(&leader)))
}

async fn cluster_masters(State(api): State<Api>, headers: HeaderMap) -> Answer {
    let list = call(&api, Discovery::list_masters(&api.svc, grpc(&headers, pb::ListMastersRequest {}))).await?;
    Ok(json(StatusCode::OK, &MasterListView { masters: list.masters.iter().map(MasterView::from).collect() }))
}

async fn cluster_executors(State(api): State<Api>, headers: HeaderMap) -> Answer {
    let list = call(&api, Discovery::list_executors(&api.svc, grpc(&headers, pb::ListExecutorsRequest {}))).await?;
    Ok(json(StatusCode::OK, &ExecutorListView { executors: list.executors.iter().map(ExecutorView::from).collect() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grpc_code_has_one_http_status() {
        let codes = [
            Code::Ok,
            Code::Cancelled,
            Code::Unknown,
            Code::InvalidArgument,
            Code::DeadlineExceeded,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unimplemented,
            Code::Internal,
            Code::Unavailable,
            Code::DataLoss,
            Code::Unauthenticated,
        ];
        assert_eq!(HTTP_STATUSES.len(), codes.len());
        for code in codes {
            assert_eq!(HTTP_STATUSES.iter().filter(|(c, _, _)| *c == code).count(), 1, "{code:?}");
        }
        // (code, HTTP status) the API documents
        let table = [
            (Code::InvalidArgument, 400),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::FailedPrecondition, 409),
            (Code::Unavailable, 503),
            (Code::Internal, 500),
        ];
        for (code, want) in table {
            assert_eq!(http_status(code).as_u16(), want, "{code:?}");
        }
    }

    #[test]
    fn a_refusal_keeps_its_reason_and_message() {
        let e = ApiError::from(Reason::JobNotTerminated.status("job j is running; cancel it first"));
        assert_eq!(e.http, StatusCode::CONFLICT);
        assert_eq!((e.body.code, e.body.reason), ("FAILED_PRECONDITION", Some("JOB_NOT_TERMINATED")));
        assert_eq!(e.body.message, "job j is running; cancel it first");
        let e = ApiError::from(Status::internal("not ours"));
        assert_eq!((e.http, e.body.reason), (StatusCode::INTERNAL_SERVER_ERROR, None));
    }

    #[test]
    fn route_patterns_match_one_segment_per_parameter() {
        // (pattern, path, matches)
        let table = [
            ("/api/v1/jobs/{id}", "/api/v1/jobs/j1", true),
            ("/api/v1/jobs/{id}", "/api/v1/jobs/j1/cancel", false),
            ("/api/v1/jobs/{id}/cancel", "/api/v1/jobs/j1/cancel", true),
            ("/healthz", "/healthz", true),
            ("/healthz", "/metrics", false),
        ];
        for (pattern, path, want) in table {
            assert_eq!(matches_path(pattern, path), want, "{pattern} {path}");
        }
    }

    #[test]
    fn the_openapi_document_is_json() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("docs/openapi.json parses");
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", doc["openapi"]);
    }
}
