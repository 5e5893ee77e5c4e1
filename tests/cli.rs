//! The `foreman cluster` and `foreman job` commands end to end: the real binary against an in-process fake
//! master (a tonic server with canned answers and canned refusals), over real gRPC on loopback.
//!
//! Each test starts its own fake masters on free ports and runs the binary as a child process, so the tests
//! see exactly what a user sees: stdout, stderr and the exit code. Jobs that `--wait` follows advance one step
//! per `GetJob` call, not per unit of time, so a test sees the same story however fast or slow the machine is.
//! `foreman completion` needs no master: its scripts are checked here too.
#![cfg(not(madsim))]

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

use foreman::core::ids::JobId;
use foreman::core::job::{JobError, JobState};
use foreman::rpc::pb;
use foreman::rpc::pb::discovery_server::{Discovery, DiscoveryServer};
use foreman::rpc::pb::job_manager_server::{JobManager, JobManagerServer};
use foreman::rpc::status::Reason;

/// How a fake master behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Canned answers.
    Healthy,
    /// Every call: `Unavailable` with `NO_LEADER`, as a follower that knows no leader answers.
    NoLeader,
    /// Every call hangs far beyond any deadline the tests use.
    Silent,
}

/// What a fake master was asked.
#[derive(Debug, Default)]
struct Calls {
    names: Mutex<Vec<&'static str>>,
    creates: Mutex<Vec<pb::CreateJobRequest>>,
    lists: Mutex<Vec<pb::ListJobsRequest>>,
    /// `GetJob` calls per scripted job so far.
    script_calls: Mutex<BTreeMap<String, usize>>,
}

impl Calls {
    fn names(&self) -> Vec<&'static str> {
        self.names.lock().unwrap().clone()
    }
}

#[derive(Clone)]
struct Fake {
    mode: Mode,
    calls: Arc<Calls>,
}

impl Fake {
    /// Records the call, then behaves as the mode says.
    async fn enter(&self, name: &'static str) -> Result<(), Status> {
        self.calls.names.lock().unwrap().push(name);
        match self.mode {
            Mode::Healthy => Ok(()),
            Mode::NoLeader => Err(Reason::NoLeader.status("no leader is known right now; retry")),
            Mode::Silent => {
                tokio::time::sleep(Duration::from_secs(600)).await;
                Err(Status::internal("woke up"))
            }
        }
    }
}

/// The jobs the fake leader holds, sorted by id.
fn canned_jobs() -> Vec<pb::Job> {
    let mut jobs = vec![
        pb::Job {
            id: "j1".into(),
            r#type: "fake".into(),
            config: br#"{"workers":2,"target":100}"#.to_vec(),
            selectors: vec![pb::Selector { key: "zone".into(), target: "east".into(), op: 1 }],
            state: pb::JobState::Running as i32,
            restarts: 1,
            epoch: 5,
            executor_id: 2,
            cost: 0,
            error: None,
            progress: "412/800".into(),
            waiting: String::new(),
            last_error: None,
            project: "default".into(),
            resources: vec![pb::JobResource {
                worker: "w0".into(),
                name: "scratch".into(),
                executor_id: 1,
                executor_name: "exec-a".into(),
            }],
        },
        pb::Job {
            id: "j2".into(),
            r#type: "fake".into(),
            state: pb::JobState::Failed as i32,
            restarts: 100,
            epoch: 9,
            error: Some(pb::JobError { reason: "BACKOFF_EXHAUSTED".into(), message: "gave up after 100".into() }),
            ..Default::default()
        },
        pb::Job { id: "j3".into(), r#type: "fake".into(), state: 42, ..Default::default() },
        pb::Job { id: "j4".into(), r#type: "fake".into(), state: pb::JobState::Created as i32, ..Default::default() },
        pb::Job { id: "j5".into(), r#type: "fake".into(), state: pb::JobState::Finished as i32, ..Default::default() },
    ];
    jobs.sort_by(|a, b| a.id.cmp(&b.id));
    jobs
}

/// One answer of a scripted job to `GetJob`.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// The job in this state, with this progress text.
    Job(pb::JobState, &'static str),
    /// `Unavailable` with `NO_LEADER`, as during a leader failover.
    NoLeader,
}

/// The error a scripted job that fails reports.
const SCRIPTED_FAILURE: (&str, &str) = ("JOB_MASTER_FAILED", "worker 2: disk full");

/// Jobs whose `GetJob` answers advance one step per call (the last step repeats).
fn script(id: &str) -> Option<&'static [Step]> {
    use pb::JobState::{Canceled, Canceling, Created, Failed, Finished, Running};
    use Step::{Job, NoLeader};
    let steps: &'static [Step] = match id {
        "w-finish" => &[
            Job(Created, ""),
            Job(Running, ""),
            Job(Running, "0/200 steps"),
            // Unchanged: no new progress line.
            Job(Running, "0/200 steps"),
            NoLeader,
            Job(Running, "100/200 steps"),
            Job(Finished, "200/200 steps, 4/4 workers done"),
        ],
        "w-fail" => &[Job(Created, ""), Job(Running, "3/10 steps"), Job(Failed, "3/10 steps")],
        "w-cancel" => &[Job(Running, "5/10 steps"), Job(Canceling, "5/10 steps"), Job(Canceled, "")],
        "w-forever" => &[Job(Running, "1/1000000 steps")],
        _ => return None,
    };
    Some(steps)
}

fn not_found(id: &str) -> Status {
    JobError::NotFound { id: JobId::parse(id).unwrap() }.into()
}

#[tonic::async_trait]
impl Discovery for Fake {
    async fn register_executor(
        &self,
        _: Request<pb::RegisterExecutorRequest>,
    ) -> Result<Response<pb::RegisterExecutorResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn deregister_executor(
        &self,
        _: Request<pb::DeregisterExecutorRequest>,
    ) -> Result<Response<pb::DeregisterExecutorResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn heartbeat(&self, _: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn query_meta_store(
        &self,
        _: Request<pb::QueryMetaStoreRequest>,
    ) -> Result<Response<pb::QueryMetaStoreResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn list_executors(
        &self,
        _: Request<pb::ListExecutorsRequest>,
    ) -> Result<Response<pb::ListExecutorsResponse>, Status> {
        self.enter("list_executors").await?;
        let executors = vec![
            pb::Executor {
                id: 1,
                name: "exec-a".into(),
                address: "10.0.0.11:10241".into(),
                capacity: 8,
                labels: [("zone", "east"), ("disk", "ssd")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                status: pb::ExecutorStatus::Online as i32,
                used: 3,
                last_heartbeat_age_ms: 250,
                resources: 1,
            },
            pb::Executor {
                id: 2,
                name: "exec-b".into(),
                address: "10.0.0.12:10241".into(),
                capacity: 4,
                labels: Default::default(),
                status: 7,
                used: 0,
                last_heartbeat_age_ms: 1500,
                resources: 0,
            },
        ];
        Ok(Response::new(pb::ListExecutorsResponse { executors }))
    }

    async fn list_masters(
        &self,
        _: Request<pb::ListMastersRequest>,
    ) -> Result<Response<pb::ListMastersResponse>, Status> {
        self.enter("list_masters").await?;
        let masters = vec![
            pb::Master { name: "m1".into(), address: "10.0.0.1:10240".into(), is_leader: true },
            pb::Master { name: "m2".into(), address: "10.0.0.2:10240".into(), is_leader: false },
        ];
        Ok(Response::new(pb::ListMastersResponse { masters }))
    }

    async fn get_leader(&self, _: Request<pb::GetLeaderRequest>) -> Result<Response<pb::GetLeaderResponse>, Status> {
        self.enter("get_leader").await?;
        Ok(Response::new(pb::GetLeaderResponse {
            name: "m1".into(),
            address: "10.0.0.1:10240".into(),
            leader_epoch: 7,
        }))
    }

    async fn resign_leader(
        &self,
        _: Request<pb::ResignLeaderRequest>,
    ) -> Result<Response<pb::ResignLeaderResponse>, Status> {
        self.enter("resign_leader").await?;
        Ok(Response::new(pb::ResignLeaderResponse {}))
    }
}

#[tonic::async_trait]
impl JobManager for Fake {
    async fn create_job(&self, request: Request<pb::CreateJobRequest>) -> Result<Response<pb::Job>, Status> {
        self.enter("create_job").await?;
        let request = request.into_inner();
        self.calls.creates.lock().unwrap().push(request.clone());
        let mut job = request.job.unwrap_or_default();
        if job.id.is_empty() {
            job.id = "generated-1".into();
        }
        if job.id == "j1" {
            return Err(JobError::AlreadyExists { id: JobId::parse("j1").unwrap() }.into());
        }
        job.state = pb::JobState::Created as i32;
        job.config.clear();
        Ok(Response::new(job))
    }

    async fn get_job(&self, request: Request<pb::GetJobRequest>) -> Result<Response<pb::Job>, Status> {
        self.enter("get_job").await?;
        let request = request.into_inner();
        if let Some(steps) = script(&request.id) {
            let call = {
                let mut calls = self.calls.script_calls.lock().unwrap();
                let count = calls.entry(request.id.clone()).or_default();
                *count += 1;
                *count - 1
            };
            return match steps[call.min(steps.len() - 1)] {
                Step::NoLeader => Err(Reason::NoLeader.status("no leader is known right now; retry")),
                Step::Job(state, progress) => {
                    let error = (state == pb::JobState::Failed).then(|| pb::JobError {
                        reason: SCRIPTED_FAILURE.0.into(),
                        message: SCRIPTED_FAILURE.1.into(),
                    });
                    Ok(Response::new(pb::Job {
                        id: request.id,
                        r#type: "fake".into(),
                        state: state as i32,
                        progress: progress.into(),
                        epoch: 1,
                        error,
                        ..Default::default()
                    }))
                }
            };
        }
        let mut job = canned_jobs().into_iter().find(|j| j.id == request.id).ok_or_else(|| not_found(&request.id))?;
        if !request.include_config {
            job.config.clear();
        }
        Ok(Response::new(job))
    }

    async fn list_jobs(&self, request: Request<pb::ListJobsRequest>) -> Result<Response<pb::ListJobsResponse>, Status> {
        self.enter("list_jobs").await?;
        let request = request.into_inner();
        self.calls.lists.lock().unwrap().push(request.clone());
        // Pages of two by default, the token being the last id of the page before.
        let size = if request.page_size == 0 { 2 } else { request.page_size as usize };
        let matching: Vec<pb::Job> = canned_jobs()
            .into_iter()
            .filter(|j| request.state == 0 || j.state == request.state)
            .filter(|j| request.page_token.is_empty() || j.id > request.page_token)
            .map(|mut j| {
                j.config.clear();
                j
            })
            .collect();
        let more = matching.len() > size;
        let jobs: Vec<pb::Job> = matching.into_iter().take(size).collect();
        let next_page_token = if more { jobs.last().map(|j| j.id.clone()).unwrap_or_default() } else { String::new() };
        Ok(Response::new(pb::ListJobsResponse { jobs, next_page_token }))
    }

    async fn get_job_status(
        &self,
        request: Request<pb::GetJobStatusRequest>,
    ) -> Result<Response<pb::JobStatus>, Status> {
        self.enter("get_job_status").await?;
        let id = request.into_inner().id;
        let status = match id.as_str() {
            // Live, from the current job master: one worker running, one retrying, one done, and a detail.
            "j1" => pb::JobStatus {
                id,
                source: pb::JobStatusSource::Live as i32,
                epoch: 5,
                job_epoch: 5,
                document: serde_json::json!({
                    "job": "j1", "epoch": 5, "executor": 2, "state": "running", "progress": "412/800",
                    "workers": [
                        {"name": "w0", "epoch": 5000001, "state": "running", "progress": "300/400", "failures": 0},
                        {"name": "w1", "epoch": 5000002, "state": "retrying", "at": 1, "progress": "", "failures": 2},
                        {"name": "w2", "epoch": 5000003, "state": "done", "progress": "400/400", "failures": 0},
                    ],
                    "last_error": {"source": "j1/w1", "message": "disk\u{1b}[2J full", "at": 1_764_936_000_000u64},
                    "detail": {"rate": 12},
                })
                .to_string(),
                ..Default::default()
            },
            // Ended: its final status, as stored.
            "j2" => pb::JobStatus {
                id,
                source: pb::JobStatusSource::Stored as i32,
                epoch: 3,
                job_epoch: 3,
                at_unix_ms: 1_000,
                document: serde_json::json!({
                    "job": "j2", "epoch": 3, "executor": 1, "state": "failed", "reason": "worker j2/w0 failed: x",
                    "progress": "1/2", "workers": [], "detail": null,
                })
                .to_string(),
                note: "the job ended".into(),
            },
            "j4" => pb::JobStatus {
                id,
                source: pb::JobStatusSource::None as i32,
                note: "no job master runs now; no job master has stored a status yet".into(),
                ..Default::default()
            },
            _ => return Err(not_found(&id)),
        };
        Ok(Response::new(status))
    }

    /// Job j1: w0's incarnation 2 on e1, ended, its stdout of 10 bytes whose first 3 the cap dropped; w1 held in
    /// incarnations 3 (on e1) and 4 (on e2, running), its stdout and stderr short. At most 4 bytes a call, so the
    /// CLI must page.
    async fn job_logs(&self, request: Request<pb::JobLogsRequest>) -> Result<Response<pb::JobLogsResponse>, Status> {
        self.enter("job_logs").await?;
        let r = request.into_inner();
        if r.id != "j1" {
            return Err(not_found(&r.id));
        }
        let source = |worker: &str, epoch: u64, name: &str, exit: &str| pb::LogSource {
            incarnation: Some(pb::LogIncarnation {
                worker: worker.into(),
                epoch,
                exit: exit.into(),
                ..Default::default()
            }),
            executor_id: 1,
            executor_name: name.into(),
        };
        let sources = vec![
            source("w0", 2, "e1", "exited with code 0"),
            source("w1", 3, "e1", "exited with code 1"),
            source("w1", 4, "e2", ""),
        ];
        let stderr = r.stream == pb::LogStream::Stderr as i32;
        let (text, dropped_before, exit): (&[u8], u64, &str) = match (r.worker.as_str(), r.epoch, stderr) {
            ("", _, _) => return Ok(Response::new(pb::JobLogsResponse { sources, ..Default::default() })),
            ("w0", 2, false) => (b"0123456\n", 3, "exited with code 0"),
            ("w0", 2, true) => (b"", 0, "exited with code 0"),
            ("w1", 4, false) => (b"second\n", 0, ""),
            ("w1", 4, true) => (b"oops\n", 0, ""),
            _ => {
                return Ok(Response::new(pb::JobLogsResponse {
                    sources,
                    note: "no such incarnation".into(),
                    ..Default::default()
                }))
            }
        };
        // The stream wrote `dropped_before` bytes the cap dropped, then `text`.
        let total = dropped_before + text.len() as u64;
        let start = r.offset.max(dropped_before).min(total);
        let from = (start - dropped_before) as usize;
        let to = (from + 4).min(text.len());
        let chunk = pb::LogChunk {
            worker: r.worker,
            epoch: r.epoch,
            stream: r.stream,
            start,
            data: text[from..to].to_vec(),
            total,
            dropped: dropped_before.saturating_sub(r.offset),
            exit: exit.into(),
        };
        Ok(Response::new(pb::JobLogsResponse {
            sources,
            chunk: Some(chunk),
            note: "executor 7 (e7) did not answer: x".into(),
        }))
    }

    async fn cancel_job(&self, request: Request<pb::CancelJobRequest>) -> Result<Response<pb::Job>, Status> {
        self.enter("cancel_job").await?;
        let id = request.into_inner().id;
        let mut job = canned_jobs().into_iter().find(|j| j.id == id).ok_or_else(|| not_found(&id))?;
        job.config.clear();
        job.state = pb::JobState::Canceling as i32;
        Ok(Response::new(job))
    }

    async fn delete_job(
        &self,
        request: Request<pb::DeleteJobRequest>,
    ) -> Result<Response<pb::DeleteJobResponse>, Status> {
        self.enter("delete_job").await?;
        let id = request.into_inner().id;
        match id.as_str() {
            "j1" => Err(JobError::NotTerminated { id: JobId::parse("j1").unwrap(), state: JobState::Running }.into()),
            "j5" => Ok(Response::new(pb::DeleteJobResponse {})),
            other => Err(not_found(other)),
        }
    }
}

/// Starts a fake master on a free loopback port; it serves until the test's runtime ends.
async fn start(mode: Mode) -> (String, Arc<Calls>) {
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).expect("bind a loopback port");
    let address = incoming.local_addr().expect("bound address").to_string();
    let calls = Arc::new(Calls::default());
    let fake = Fake { mode, calls: calls.clone() };
    let server = Server::builder()
        .add_service(DiscoveryServer::new(fake.clone()))
        .add_service(JobManagerServer::new(fake))
        .serve_with_incoming(incoming);
    tokio::spawn(server);
    (address, calls)
}

/// An address where nothing listens (a port that was free a moment ago).
fn dead_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("bound address").to_string()
}

/// What the binary did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

impl Run {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

/// Runs `foreman <args>` with `FOREMAN_MASTERS` unset (or set to `env_masters`).
async fn foreman_with_env(args: &[&str], env_masters: Option<&str>) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env_masters = env_masters.map(str::to_owned);
    let output: Output = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_foreman"));
        command.args(&args).env_remove("FOREMAN_MASTERS");
        if let Some(masters) = env_masters {
            command.env("FOREMAN_MASTERS", masters);
        }
        command.output()
    })
    .await
    .expect("the runner thread")
    .expect("the foreman binary runs");
    Run {
        code: output.status.code().expect("foreman exits with a code, not a signal"),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}

async fn foreman(args: &[&str]) -> Run {
    foreman_with_env(args, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_leader_prints_a_table_and_json() {
    let (master, _) = start(Mode::Healthy).await;
    let run = foreman(&["cluster", "leader", "--master", &master]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "NAME:     m1\nADDRESS:  10.0.0.1:10240\nEPOCH:    7\n", "{run:?}");
    let run = foreman(&["cluster", "leader", "--master", &master, "--output", "json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json(), serde_json::json!({"name": "m1", "address": "10.0.0.1:10240", "leader_epoch": 7}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_masters_prints_a_table_and_json() {
    let (master, _) = start(Mode::Healthy).await;
    let run = foreman(&["--help"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    // Global flags go before or after the subcommand.
    let run = foreman(&["cluster", "--master", &master, "masters"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "NAME  ADDRESS         LEADER\nm1    10.0.0.1:10240  yes\nm2    10.0.0.2:10240  no\n");
    let run = foreman(&["cluster", "masters", "--output", "json", "--master", &master]).await;
    assert_eq!(
        run.json(),
        serde_json::json!({"masters": [
            {"name": "m1", "address": "10.0.0.1:10240", "is_leader": true},
            {"name": "m2", "address": "10.0.0.2:10240", "is_leader": false},
        ]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_executors_prints_a_table_and_json() {
    let (master, _) = start(Mode::Healthy).await;
    let run = foreman(&["cluster", "executors", "--master", &master]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let want = "\
ID  NAME    ADDRESS          STATUS      USED/CAPACITY  RESOURCES  LABELS              LAST-HEARTBEAT
e1  exec-a  10.0.0.11:10241  online      3/8            1          disk=ssd,zone=east  250ms ago
e2  exec-b  10.0.0.12:10241  UNKNOWN(7)  0/4            0          -                   1.5s ago
";
    assert_eq!(run.stdout, want, "{run:?}");
    let run = foreman(&["cluster", "executors", "--master", &master, "--output", "json"]).await;
    assert_eq!(
        run.json(),
        serde_json::json!({"executors": [
            {"id": 1, "name": "exec-a", "address": "10.0.0.11:10241", "status": "online", "used": 3, "capacity": 8,
             "labels": {"disk": "ssd", "zone": "east"}, "last_heartbeat_age_ms": 250, "resources": 1},
            {"id": 2, "name": "exec-b", "address": "10.0.0.12:10241", "status": "UNKNOWN(7)", "used": 0,
             "capacity": 4, "labels": {}, "last_heartbeat_age_ms": 1500, "resources": 0},
        ]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_get_prints_a_table_and_json_with_config() {
    let (master, calls) = start(Mode::Healthy).await;
    let run = foreman(&["job", "get", "j1", "--master", &master]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let want = "\
ID:         j1
TYPE:       fake
STATE:      running
PROGRESS:   412/800
RESTARTS:   1
EPOCH:      5
EXECUTOR:   e2
COST:       1
SELECTORS:  zone=east
ERROR:      -
RESOURCES:  w0/scratch on exec-a (e1)
";
    assert_eq!(run.stdout, want, "{run:?}");

    let run = foreman(&["job", "get", "j1", "--config", "--master", &master, "--output", "json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.json(),
        serde_json::json!({
            "id": "j1", "type": "fake", "project": "default", "state": "running", "restarts": 1, "epoch": 5,
            "executor_id": 2, "cost": 1, "selectors": [{"key": "zone", "op": "eq", "target": "east"}], "error": null,
            "progress": "412/800", "waiting": null, "config": {"workers": 2, "target": 100}, "last_error": null,
            "resources": [{"worker": "w0", "name": "scratch", "executor_id": 1, "executor_name": "exec-a"}],
        })
    );

    let run = foreman(&["job", "get", "j2", "--master", &master]).await;
    assert!(run.stdout.contains("STATE:      failed\n"), "{run:?}");
    assert!(run.stdout.contains("ERROR:      BACKOFF_EXHAUSTED: gave up after 100\n"), "{run:?}");
    assert_eq!(calls.names(), ["get_job", "get_job", "get_job"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_get_with_an_unknown_state_prints_it_instead_of_failing() {
    let (master, _) = start(Mode::Healthy).await;
    let run = foreman(&["job", "get", "j3", "--master", &master]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("STATE:      UNKNOWN(42)\n"), "{run:?}");
    let run = foreman(&["job", "get", "j3", "--master", &master, "--output", "json"]).await;
    assert_eq!(run.json()["state"], "UNKNOWN(42)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_list_prints_one_page_or_follows_every_page_with_all() {
    let (master, calls) = start(Mode::Healthy).await;
    let run = foreman(&["job", "list", "--master", &master]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let want = "\
ID  TYPE  STATE    RESTARTS  EPOCH  EXECUTOR  ERROR
j1  fake  running  1         5      e2        -
j2  fake  failed   100       9      -         BACKOFF_EXHAUSTED
";
    assert_eq!(run.stdout, want, "{run:?}");
    // Not a terminal: no hint about more pages.
    assert_eq!(run.stderr, "", "{run:?}");

    let run = foreman(&["job", "list", "--master", &master, "--output", "json"]).await;
    let json = run.json();
    assert_eq!(json["next_page_token"], "j2", "{run:?}");
    assert_eq!(json["jobs"].as_array().map(Vec::len), Some(2));

    let run = foreman(&["job", "list", "--master", &master, "--page-token", "j2", "--output", "json"]).await;
    let ids: Vec<String> = run.json()["jobs"].as_array().unwrap().iter().map(|j| j["id"].to_string()).collect();
    assert_eq!(ids, ["\"j3\"", "\"j4\""], "{run:?}");

    let run = foreman(&["job", "list", "--all", "--master", &master]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let ids: Vec<&str> = run.stdout.lines().skip(1).map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(ids, ["j1", "j2", "j3", "j4", "j5"], "{run:?}");
    assert!(run.stdout.contains("j3  fake  UNKNOWN(42)"), "{run:?}");
    let run = foreman(&["job", "list", "--all", "--master", &master, "--output", "json"]).await;
    assert_eq!(run.json()["next_page_token"], serde_json::Value::Null);
    assert_eq!(run.json()["jobs"].as_array().map(Vec::len), Some(5));

    let run =
        foreman(&["job", "list", "--state", "failed", "--page-size", "10", "--type", "fake", "--master", &master])
            .await;
    assert_eq!(run.stdout.lines().count(), 2, "{run:?}");

    let lists = calls.lists.lock().unwrap().clone();
    let tokens: Vec<&str> = lists.iter().map(|l| l.page_token.as_str()).collect();
    // One page, one page, from j2, then --all twice (three pages each), then the filtered one.
    assert_eq!(tokens, ["", "", "j2", "", "j2", "j4", "", "j2", "j4", ""]);
    let last = lists.last().unwrap();
    assert_eq!((last.state, last.page_size, last.r#type.as_str()), (pb::JobState::Failed as i32, 10, "fake"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_create_sends_what_the_flags_say() {
    let (master, calls) = start(Mode::Healthy).await;
    let config = "{\"workers\": 3, \"target\": 10}";
    let run = foreman(&[
        "job",
        "create",
        "--type",
        "fake",
        "--config",
        config,
        "--id",
        "my-job",
        "--selector",
        "zone=east",
        "--selector",
        "disk!=hdd",
        "--selector",
        "rack~^r[12]$",
        "--cost",
        "2",
        "--master",
        &master,
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("ID:         my-job\n"), "{run:?}");
    assert!(run.stdout.contains("STATE:      created\n"), "{run:?}");
    assert!(run.stdout.contains("SELECTORS:  zone=east, disk!=hdd, rack~^r[12]$\n"), "{run:?}");

    let run =
        foreman(&["job", "create", "--type", "fake", "--config", "{}", "--master", &master, "--output", "json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["id"], "generated-1");

    let creates = calls.creates.lock().unwrap().clone();
    let job = creates[0].job.clone().unwrap();
    assert_eq!(job.id, "my-job");
    assert_eq!(job.r#type, "fake");
    // The configuration goes as written, key order and spacing included.
    assert_eq!(job.config, config.as_bytes());
    let selectors: Vec<(String, i32, String)> =
        job.selectors.iter().map(|s| (s.key.clone(), s.op, s.target.clone())).collect();
    assert_eq!(
        selectors,
        [
            ("zone".to_owned(), pb::SelectorOp::Eq as i32, "east".to_owned()),
            ("disk".to_owned(), pb::SelectorOp::Neq as i32, "hdd".to_owned()),
            ("rack".to_owned(), pb::SelectorOp::Regex as i32, "^r[12]$".to_owned()),
        ]
    );
    assert_eq!(job.cost, 2);
    let second = creates[1].job.clone().unwrap();
    assert_eq!((second.id.as_str(), second.cost, second.selectors.len()), ("", 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_status_prints_a_summary_with_a_line_per_worker_and_json() {
    let (master, calls) = start(Mode::Healthy).await;
    let run = foreman(&["job", "status", "j1", "--master", &master]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let want = "\
ID:          j1
SOURCE:      live, from job master epoch 5
STATE:       running
EXECUTOR:    e2
PROGRESS:    412/800
LAST ERROR:  j1/w1 at 2025-12-05T12:00:00Z: disk\\u{1b}[2J full
WORKERS:
  NAME  EPOCH    STATE     FAILURES  PROGRESS
  w0    5000001  running   0         300/400
  w1    5000002  retrying  2         -
  w2    5000003  done      0         400/400
DETAIL:
  {
    \"rate\": 12
  }
";
    assert_eq!(run.stdout, want, "{run:?}");
    let run = foreman(&["job", "status", "j1", "--master", &master, "--output", "json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let json = run.json();
    assert_eq!(
        (json["id"].as_str(), json["source"].as_str(), json["epoch"].as_u64()),
        (Some("j1"), Some("live"), Some(5))
    );
    assert_eq!(json["status"]["workers"][1]["state"], "retrying");
    assert_eq!(json["status"]["detail"]["rate"], 12);
    assert!(json["note"].is_null() && json["at_unix_ms"].is_null(), "{json}");
    // Stored: its source, age and the note say why it is not live.
    let field = |run: &Run, key: &str| -> String {
        let line = run.stdout.lines().find(|l| l.starts_with(&format!("{key}:")));
        line.map(|l| l[key.len() + 1..].trim().to_owned()).unwrap_or_else(|| panic!("no {key}: {run:?}"))
    };
    let run = foreman(&["job", "status", "j2", "--master", &master]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(field(&run, "SOURCE").starts_with("stored by job master epoch 3 (the job's is 3), "), "{run:?}");
    assert!(field(&run, "SOURCE").ends_with(" ago"), "{run:?}");
    assert_eq!(field(&run, "NOTE"), "the job ended");
    assert_eq!(field(&run, "REASON"), "worker j2/w0 failed: x");
    assert!(!run.stdout.contains("WORKERS") && !run.stdout.contains("DETAIL"), "{run:?}");
    let run = foreman(&["job", "status", "j4", "--master", &master, "--output", "json"]).await;
    assert_eq!((run.json()["source"].as_str(), run.json()["status"].is_null()), (Some("none"), true), "{run:?}");
    let run = foreman(&["job", "status", "j4", "--master", &master]).await;
    assert_eq!(field(&run, "SOURCE"), "none: no status yet");
    assert!(field(&run, "NOTE").starts_with("no job master runs now"), "{run:?}");
    // An unknown job is refused as by `job get`; a bad id never reaches a master.
    let run = foreman(&["job", "status", "nope", "--master", &master]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("(JOB_NOT_FOUND)"), "{run:?}");
    let run = foreman(&["job", "status", "not a job", "--master", &master]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(calls.names(), ["get_job_status"; 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_logs_pages_each_workers_newest_incarnation_under_its_header() {
    let (master, calls) = start(Mode::Healthy).await;
    let run = foreman(&["job", "logs", "j1", "--master", &master]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let want = "\
==> w0 (incarnation 2 on e1: exited with code 0) <==
0123456

==> w1 (incarnation 4 on e2: running) <==
second
";
    assert_eq!(run.stdout, want, "{run:?}");
    assert!(run.stderr.contains("note: executor 7 (e7) did not answer: x\n"), "{run:?}");
    assert_eq!(run.stderr.matches("did not answer").count(), 1, "each note once: {run:?}");
    assert!(run.stderr.contains("note: w0: the first 3 bytes were dropped by the executor's cap"), "{run:?}");
    // As JSON Lines: each piece (paged at 4 bytes here) with its worker, incarnation, executor, end and offset.
    let run = foreman(&["job", "logs", "j1", "--output", "json", "--master", &master]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let pieces: Vec<serde_json::Value> =
        run.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let text = |w: &str| -> String {
        pieces.iter().filter(|p| p["worker"] == w).filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().concat()
    };
    assert_eq!((text("w0").as_str(), text("w1").as_str()), ("0123456\n", "second\n"), "{run:?}");
    assert_eq!(
        pieces[0],
        serde_json::json!({"worker": "w0", "epoch": 2, "executor": "e1", "exit": "exited with code 0",
                           "stream": "stdout", "offset": 3, "text": "0123"}),
        "{run:?}"
    );
    assert_eq!(
        pieces.last().map(|p| (p["epoch"].clone(), p["exit"].clone())),
        Some((4.into(), serde_json::Value::Null))
    );
    assert!(run.stderr.contains("note: w0: the first 3 bytes were dropped by the executor's cap"), "{run:?}");
    // One worker: its output alone; the other stream.
    let run = foreman(&["job", "logs", "j1", "--worker", "w1", "--stderr", "--master", &master]).await;
    assert_eq!((run.code, run.stdout.as_str()), (0, "oops\n"), "{run:?}");
    // A worker that holds nothing: a note, no output.
    let run = foreman(&["job", "logs", "j1", "--worker", "w9", "--master", &master]).await;
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{run:?}");
    assert!(run.stderr.contains("no logs of worker w9 of job j1"), "{run:?}");
    // Refused before any call: a bad worker name; an unknown job as `job get` says it.
    let run = foreman(&["job", "logs", "j1", "--worker", "..", "--master", &master]).await;
    assert_eq!(run.code, 2, "{run:?}");
    let before = calls.names().len();
    let run = foreman(&["job", "logs", "nope", "--master", &master]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("(JOB_NOT_FOUND)"), "{run:?}");
    assert_eq!(calls.names().len(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_cancel_and_delete() {
    let (master, calls) = start(Mode::Healthy).await;
    let run = foreman(&["job", "cancel", "j1", "--master", &master]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("STATE:      canceling\n"), "{run:?}");
    let run = foreman(&["job", "delete", "j5", "--master", &master]).await;
    assert_eq!((run.code, run.stdout.as_str()), (0, "deleted job j5\n"), "{run:?}");
    let run = foreman(&["job", "delete", "j5", "--master", &master, "--output", "json"]).await;
    assert_eq!(run.json(), serde_json::json!({"id": "j5", "deleted": true}));
    assert_eq!(calls.names(), ["cancel_job", "delete_job", "delete_job"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_prints_its_message_and_reason_and_exits_1() {
    let (master, calls) = start(Mode::Healthy).await;
    let not_found_line = format!("error: {} (JOB_NOT_FOUND)\n", not_found("nope").message());
    // (arguments, what stderr must contain)
    let table: &[(&[&str], &str)] = &[
        (&["job", "get", "nope"], &not_found_line),
        (&["job", "delete", "j1"], "(JOB_NOT_TERMINATED)"),
        (&["job", "create", "--type", "fake", "--config", "{}", "--id", "j1"], "(JOB_ALREADY_EXISTS)"),
        (&["job", "cancel", "nope"], "(JOB_NOT_FOUND)"),
    ];
    for (args, want) in table {
        let mut args = args.to_vec();
        args.extend(["--master", &master]);
        let run = foreman(&args).await;
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert_eq!(run.stdout, "", "{args:?}: {run:?}");
        assert!(run.stderr.starts_with("error: "), "{args:?}: {run:?}");
        assert!(run.stderr.contains(want), "{args:?}: {want:?} missing: {run:?}");
    }
    // The message and the reason, on one line, and nothing else.
    let run = foreman(&["job", "get", "nope", "--master", &master]).await;
    assert_eq!(run.stderr, not_found_line, "{run:?}");
    // A refusal is the answer: no failover to another master.
    let (other, other_calls) = start(Mode::Healthy).await;
    let run = foreman(&["job", "get", "nope", "--master", &format!("{master},{other}")]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(calls.names().len(), 6);
    assert_eq!(other_calls.names(), Vec::<&str>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_naming_the_flag_without_contacting_a_master() {
    let (master, calls) = start(Mode::Healthy).await;
    let long_id = "x".repeat(64);
    // (arguments, words stderr must contain)
    let table: &[(&[&str], &[&str])] = &[
        (&["job", "create", "--type", "fake", "--config", "{}", "--selector", "zone"], &["--selector", "key=value"]),
        (&["job", "create", "--type", "fake", "--config", "{}", "--selector", "bad_key=x"], &["--selector", "key"]),
        (&["job", "create", "--type", "fake", "--config", "{}", "--selector", "zone~[a-"], &["--selector", "regex"]),
        (&["job", "create", "--type", "fake", "--config", "{\"a\": }"], &["--config", "line 1, column 7"]),
        (&["job", "create", "--type", "fake", "--config", "{\n\"a\": 1,\n}"], &["--config", "line 3, column 1"]),
        (&["job", "create", "--type", "fake", "--config", "{}", "--id", "a b"], &["--id", "job id"]),
        (&["job", "create", "--type", "fake", "--config", "{}", "--id", "-x"], &["--id", "job id"]),
        (&["job", "create", "--config", "{}"], &["--type"]),
        (&["job", "get", "bad/id"], &["<ID>", "job id"]),
        (&["job", "cancel", long_id.as_str()], &["<ID>", "at most 63"]),
        (&["job", "delete", "-"], &["'-'"]),
        (&["job", "list", "--state", "sleeping"], &["--state", "possible values"]),
        (&["job", "list", "--page-size", "0"], &["--page-size"]),
        (&["cluster", "leader", "--timeout", "soon"], &["--timeout"]),
        (&["cluster", "leader", "--output", "yaml"], &["--output"]),
        (&["cluster", "leader", "--master", "localhost"], &["--master", "host:port"]),
        (&["job", "create", "--type", "fake", "--config", "{}", "--wait-timeout", "1m"], &["--wait"]),
        (&["job", "get", "j1", "--wait"], &["--wait"]),
        (&["job", "wait", "j1", "--poll-interval", "1ms"], &["--poll-interval", "at least 50ms"]),
        (&["job", "wait", "j1", "--wait-timeout", "0s"], &["--wait-timeout", "longer than zero"]),
    ];
    for (args, words) in table {
        let mut args = args.to_vec();
        args.extend(["--master", &master]);
        let run = foreman(&args).await;
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        for word in *words {
            assert!(run.stderr.contains(word), "{args:?}: {word:?} missing: {run:?}");
        }
    }
    // Too many selectors is checked after parsing, still before connecting.
    let selectors: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
    let mut args = vec!["job", "create", "--type", "fake", "--config", "{}", "--master", &master];
    for s in &selectors {
        args.extend(["--selector", s]);
    }
    let run = foreman(&args).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--selector: 33 selectors given; at most 32"), "{run:?}");
    assert_eq!(calls.names(), Vec::<&str>::new(), "no call may reach a master");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_masters_are_all_named() {
    let (a, b) = (dead_address(), dead_address());
    let run = foreman(&["job", "list", "--master", &format!("{a},{b}")]).await;
    assert_eq!(run.code, 1, "{run:?}");
    let first = run.stderr.lines().next().unwrap();
    assert_eq!(first, format!("error: no master reachable at {a}, {b}: is `foreman master` running?"), "{run:?}");
    assert!(run.stderr.contains(&format!("\n  {a}: ")) && run.stderr.contains(&format!("\n  {b}: ")), "{run:?}");
    // One master: the issue's wording, with the hint, then the reason on the next line.
    let run = foreman(&["cluster", "leader", "--master", &a]).await;
    assert_eq!(run.code, 1, "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines[0], format!("error: no master reachable at {a}: is `foreman master` running?"), "{run:?}");
    assert!(lines.len() == 2 && lines[1].starts_with(&format!("  {a}: ")), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_from_a_dead_master_to_a_live_one() {
    let (live, calls) = start(Mode::Healthy).await;
    let dead = dead_address();
    let run = foreman(&["cluster", "leader", "--master", &format!("{dead},{live}")]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("m1"), "{run:?}");
    // --all keeps using the master that answered.
    let run = foreman(&["job", "list", "--all", "--master", &format!("{dead},{live}")]).await;
    assert_eq!((run.code, run.stdout.lines().count()), (0, 6), "{run:?}");
    // A create whose request never left is safe to send to the next master.
    let run =
        foreman(&["job", "create", "--type", "fake", "--config", "{}", "--master", &format!("{dead},{live}")]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(calls.names(), ["get_leader", "list_jobs", "list_jobs", "list_jobs", "create_job"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_past_a_master_that_knows_no_leader() {
    let (follower, follower_calls) = start(Mode::NoLeader).await;
    let (leader, _) = start(Mode::Healthy).await;
    let run = foreman(&["job", "get", "j1", "--master", &format!("{follower},{leader}")]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(follower_calls.names(), ["get_job"]);
    // Not carried out, so a create may go on too.
    let run =
        foreman(&["job", "create", "--type", "fake", "--config", "{}", "--master", &format!("{follower},{leader}")])
            .await;
    assert_eq!(run.code, 0, "{run:?}");
    // When every master says so, the report says what each answered.
    let run = foreman(&["job", "get", "j1", "--master", &follower]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.starts_with(&format!("error: no master could serve the call (tried {follower})")), "{run:?}");
    assert!(run.stderr.contains("no leader is known right now; retry (NO_LEADER)"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_past_a_master_that_does_not_answer() {
    let (silent, silent_calls) = start(Mode::Silent).await;
    let (live, _) = start(Mode::Healthy).await;
    let run = foreman(&["cluster", "masters", "--timeout", "300ms", "--master", &format!("{silent},{live}")]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(silent_calls.names(), ["list_masters"]);
    // A listener that accepts connections and never speaks gRPC.
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mute_address = mute.local_addr().unwrap().to_string();
    let run =
        foreman(&["cluster", "masters", "--timeout", "300ms", "--master", &format!("{mute_address},{live}")]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let run = foreman(&["cluster", "masters", "--timeout", "300ms", "--master", &silent]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(&format!("{silent}: no answer within 300ms")), "{run:?}");
    drop(mute);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_is_resent_with_its_token_and_a_delete_is_not() {
    let (silent, silent_calls) = start(Mode::Silent).await;
    let (live, live_calls) = start(Mode::Healthy).await;
    let masters = format!("{silent},{live}");
    // A create carries one request token for all its attempts, so the master that gets a repeat of an applied
    // attempt answers with the job: resending it through a failover is safe.
    let create = |id: &'static str| {
        let masters = masters.clone();
        async move {
            foreman(&[
                "job",
                "create",
                "--type",
                "fake",
                "--config",
                "{}",
                "--id",
                id,
                "--timeout",
                "300ms",
                "--master",
                &masters,
            ])
            .await
        }
    };
    let run = create("x1").await;
    assert_eq!(run.code, 0, "{run:?}");
    let run = create("x2").await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(silent_calls.names(), ["create_job", "create_job"]);
    assert_eq!(live_calls.names(), ["create_job", "create_job"]);
    let tokens: Vec<String> = live_calls.creates.lock().unwrap().iter().map(|r| r.request_id.clone()).collect();
    assert!(tokens.iter().all(|t| !t.is_empty()), "{tokens:?}");
    assert_ne!(tokens[0], tokens[1], "each invocation draws its own token");
    // A delete must not run twice: an unknown outcome is reported, not resent.
    let run = foreman(&["job", "delete", "j5", "--timeout", "300ms", "--master", &masters]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(&format!("the master at {silent} did not confirm the call")), "{run:?}");
    assert_eq!(silent_calls.names(), ["create_job", "create_job", "delete_job"]);
    // Cancel is idempotent: it goes on to the next master.
    let run = foreman(&["job", "cancel", "j1", "--timeout", "300ms", "--master", &masters]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(live_calls.names(), ["create_job", "create_job", "cancel_job"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masters_come_from_the_environment() {
    let (live, calls) = start(Mode::Healthy).await;
    let dead = dead_address();
    let run = foreman_with_env(&["cluster", "leader"], Some(&format!("{dead},{live}"))).await;
    assert_eq!(run.code, 0, "{run:?}");
    // --master wins over the environment.
    let run = foreman_with_env(&["cluster", "leader", "--master", &dead], Some(&live)).await;
    assert_eq!(run.code, 1, "{run:?}");
    let run = foreman_with_env(&["cluster", "leader"], Some("not-an-address")).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--master"), "{run:?}");
    assert_eq!(calls.names(), ["get_leader"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resign_goes_to_the_first_master_only() {
    let (live, calls) = start(Mode::Healthy).await;
    let dead = dead_address();
    let run = foreman(&["cluster", "resign", "--master", &format!("{dead},{live}")]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.starts_with(&format!("error: no master reachable at {dead}: ")), "{run:?}");
    assert!(!run.stderr.contains(&live), "{run:?}");
    let run = foreman(&["cluster", "resign", "--master", &format!("{live},{dead}"), "--output", "json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json(), serde_json::json!({"address": live, "resigned": true}));
    assert_eq!(calls.names(), ["resign_leader"]);
}

/// The texts of the progress lines on stderr, without their `[  1.5s] ` prefix; the elapsed times must not go
/// backwards. Every line up to the first `error:` must be a progress line.
fn progress_lines(run: &Run) -> Vec<String> {
    let line = regex::Regex::new(r"^\[ *(\d+\.\d)s\] (.+)$").unwrap();
    let mut texts = Vec::new();
    let mut previous = 0.0;
    for l in run.stderr.lines().take_while(|l| !l.starts_with("error: ")) {
        let captures = line.captures(l).unwrap_or_else(|| panic!("not a progress line: {l:?}\n{run:?}"));
        let elapsed: f64 = captures[1].parse().unwrap();
        assert!(elapsed >= previous, "time went backwards at {l:?}: {run:?}");
        previous = elapsed;
        texts.push(captures[2].to_owned());
    }
    texts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_wait_follows_the_job_to_finished_past_a_leaderless_poll() {
    let (master, calls) = start(Mode::Healthy).await;
    let run = foreman(&[
        "job",
        "create",
        "--type",
        "fake",
        "--config",
        r#"{"workers":4,"target":200,"tick_ms":10}"#,
        "--id",
        "w-finish",
        "--wait",
        "--poll-interval",
        "50ms",
        "--output",
        "json",
        "--master",
        &master,
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    // Progress on stderr, one line per change (not a terminal); the poll no master could serve is retried.
    let lines = progress_lines(&run);
    let retry = format!("retrying: no master could serve the call (tried {master}); {master}: no leader is known");
    assert_eq!(lines.len(), 6, "{run:?}");
    assert_eq!(lines[..3], ["CREATED", "RUNNING", "RUNNING 0/200 steps"], "{run:?}");
    assert!(lines[3].starts_with(&retry) && lines[3].ends_with("(NO_LEADER)"), "{run:?}");
    assert_eq!(lines[4..], ["RUNNING 100/200 steps", "FINISHED 200/200 steps, 4/4 workers done"], "{run:?}");
    assert_eq!(run.stderr.lines().count(), 6, "nothing but progress on stderr: {run:?}");
    // The job as it ended on stdout, as `job get --output json` prints it.
    let json = run.json();
    assert_eq!(
        (&json["id"], &json["state"], &json["progress"], &json["error"]),
        (&"w-finish".into(), &"finished".into(), &"200/200 steps, 4/4 workers done".into(), &serde_json::Value::Null),
        "{run:?}"
    );
    let get = foreman(&["job", "get", "w-finish", "--output", "json", "--master", &master]).await;
    assert_eq!(get.json(), json);
    // One create, then one GetJob per step until the job ended (then the `job get` above).
    let mut want = vec!["create_job"];
    want.extend(["get_job"; 8]);
    assert_eq!(calls.names(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_prints_the_job_as_it_ended_with_a_table_by_default() {
    let (master, calls) = start(Mode::Healthy).await;
    let run = foreman(&["job", "wait", "w-finish", "--poll-interval", "50ms", "--master", &master]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("ID:         w-finish\nTYPE:       fake\nSTATE:      finished\n"), "{run:?}");
    assert!(run.stdout.contains("PROGRESS:   200/200 steps, 4/4 workers done\n"), "{run:?}");
    assert_eq!(progress_lines(&run).len(), 6, "{run:?}");
    assert_eq!(calls.names(), ["get_job"; 7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_a_failed_job_exits_3_and_for_a_canceled_one_4() {
    let (master, _) = start(Mode::Healthy).await;
    let run = foreman(&["job", "wait", "w-fail", "--poll-interval", "50ms", "--master", &master]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(progress_lines(&run), ["CREATED", "RUNNING 3/10 steps", "FAILED 3/10 steps"], "{run:?}");
    // The job on stdout, the reason and message on stderr's last line.
    assert!(run.stdout.contains("STATE:      failed\n"), "{run:?}");
    assert!(run.stdout.contains("ERROR:      JOB_MASTER_FAILED: worker 2: disk full\n"), "{run:?}");
    assert_eq!(
        run.stderr.lines().last(),
        Some("error: job w-fail failed: worker 2: disk full (JOB_MASTER_FAILED)"),
        "{run:?}"
    );

    let run =
        foreman(&["job", "wait", "w-cancel", "--poll-interval", "50ms", "--output", "json", "--master", &master]).await;
    assert_eq!(run.code, 4, "{run:?}");
    assert_eq!(progress_lines(&run), ["RUNNING 5/10 steps", "CANCELING 5/10 steps", "CANCELED"], "{run:?}");
    assert_eq!(run.json()["state"], "canceled", "{run:?}");
    assert_eq!(run.stderr.lines().last(), Some("error: job w-cancel was canceled"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_wait_for_a_job_that_fails_exits_3() {
    let (master, calls) = start(Mode::Healthy).await;
    let config = r#"{"workers":1,"target":10}"#;
    let args = ["job", "create", "--type", "fake", "--config", config, "--id", "w-fail", "--wait", "--poll-interval"];
    let run = foreman(&[&args[..], &["50ms", "--output", "json", "--master", &master]].concat()).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(progress_lines(&run), ["CREATED", "RUNNING 3/10 steps", "FAILED 3/10 steps"], "{run:?}");
    let json = run.json();
    assert_eq!((&json["state"], &json["error"]["reason"]), (&"failed".into(), &"JOB_MASTER_FAILED".into()), "{run:?}");
    assert_eq!(
        run.stderr.lines().last(),
        Some("error: job w-fail failed: worker 2: disk full (JOB_MASTER_FAILED)"),
        "{run:?}"
    );
    assert_eq!(calls.names(), ["create_job", "get_job", "get_job", "get_job"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_gives_up_at_the_wait_timeout_and_exits_5() {
    let (master, calls) = start(Mode::Healthy).await;
    let run = foreman(&[
        "job",
        "wait",
        "w-forever",
        "--poll-interval",
        "50ms",
        "--wait-timeout",
        "2s",
        "--output",
        "json",
        "--master",
        &master,
    ])
    .await;
    assert_eq!(run.code, 5, "{run:?}");
    assert_eq!(run.stdout, "", "nothing on stdout: the job has not ended: {run:?}");
    // Many polls, one line: nothing changed.
    assert_eq!(progress_lines(&run), ["RUNNING 1/1000000 steps"], "{run:?}");
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(
            "error: job w-forever has not ended within 2s (--wait-timeout); last seen: RUNNING 1/1000000 steps. \
             The job goes on: wait again with `foreman job wait w-forever`"
        ),
        "{run:?}"
    );
    assert!(!calls.names().is_empty());
    assert!(calls.names().iter().all(|n| *n == "get_job"), "a wait only reads: {:?}", calls.names());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_an_unknown_job_is_a_refusal() {
    let (master, calls) = start(Mode::Healthy).await;
    let run = foreman(&["job", "wait", "nope", "--master", &master]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stdout, "", "{run:?}");
    // The refusal ends the wait at once, and says so on one line.
    assert_eq!(run.stderr, format!("error: {} (JOB_NOT_FOUND)\n", not_found("nope").message()), "{run:?}");
    assert_eq!(calls.names(), ["get_job"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_scripts_cover_every_command_and_a_bad_shell_is_a_usage_error() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = foreman(&["completion", shell]).await;
        // Not `{run:?}`: a script is tens of kilobytes.
        assert_eq!((run.code, run.stderr.as_str()), (0, ""), "{shell}");
        assert!(run.stdout.len() > 1000, "{shell}: {} bytes", run.stdout.len());
        let words = ["job", "cluster", "standalone", "master", "executor", "completion", "create", "wait-timeout"];
        for word in words {
            assert!(run.stdout.contains(word), "{shell}: {word:?} not in the script");
        }
        if shell == "bash" {
            // The script must at least parse, where there is a bash to ask.
            let script = std::env::temp_dir().join(format!("foreman-completion-{}.bash", std::process::id()));
            std::fs::write(&script, &run.stdout).unwrap();
            if let Ok(check) = Command::new("bash").arg("-n").arg(&script).output() {
                assert!(check.status.success(), "bash -n: {}", String::from_utf8_lossy(&check.stderr));
            }
            let _ = std::fs::remove_file(&script);
        }
    }
    // clap's usage errors: exit 2, nothing on stdout, the shells it knows.
    let run = foreman(&["completion", "tcsh"]).await;
    assert_eq!((run.code, run.stdout.as_str()), (2, ""), "{run:?}");
    assert!(run.stderr.starts_with("error: invalid value 'tcsh' for '<SHELL>'"), "{run:?}");
    assert!(run.stderr.contains("[possible values: bash, elvish, fish, powershell, zsh]"), "{run:?}");
    let run = foreman(&["completion"]).await;
    assert_eq!((run.code, run.stdout.as_str()), (2, ""), "{run:?}");
    assert!(run.stderr.contains("<SHELL>"), "{run:?}");
}
