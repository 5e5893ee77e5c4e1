//! Mutual TLS and users' tokens with real processes against a real etcd (production build; issue 15, steps 2 and
//! 3).
//!
//! `foreman tls init` makes a CA and the certificates of two masters, two executors and two users; every process
//! starts with its own, and `foreman token add` writes the masters' tokens file: `admin` and `ops` with role admin
//! in every project, `reader` with role read in project a, `bsub` with role submit in project b. A fake job runs to
//! finished through the CLI with a user's certificate (which gets its name's grants), and another is created
//! through the follower alone (forwarded to the leader on the user's behalf). The HTTP API answers 401 without a
//! token while `/healthz` answers, and 200 with one. Then the refusals: a plain-text client (no TLS at all), a
//! client with a certificate of another CA (same cluster name, same user name), a client with neither certificate
//! nor token (`UNAUTHENTICATED`), an executor's certificate calling `ResignLeader` (a user's call) or heartbeating
//! for and deregistering the other executor's id (`PERMISSION_DENIED`, the other executor still online under its
//! id), each checked against the same call with the right certificate succeeding, so that no refusal passes for
//! the wrong reason. Then every forged call of issue 15's "Why" that a raw gRPC client can make, sent while a fake
//! job runs (`forged_calls_change_nothing`): a job master's Finished or Failed report to the leader (and through the
//! follower) from no identity, an admin's token or certificate, and the executor not hosting that job master; a
//! rogue executor registering with a huge capacity; `QueryMetaStore` from a user or no one; dispatches of a job
//! master or a worker straight to an executor; a worker's report to a job master; heartbeats, deregistrations and
//! resigns from no identity. Each refusal's exact code and `foreman-reason` is checked, and then that nothing
//! changed: the job finishes under the same incarnation with exact counters, the two executors are online under
//! their ids, no third is listed, and the leader's epoch is the same. Last, tokens with the CA alone: project a's whole job lifecycle with an admin token, project
//! b's with its submitter; the reader cancelling is `PERMISSION_DENIED`; project b's token gets exactly a missing
//! job's `JOB_NOT_FOUND` for project a's job and does not see it listed; no token is `UNAUTHENTICATED`.
//!
//! A second cluster has a tokens file but no TLS: users are held to their tokens all the same (a create forwarded
//! by a follower carries the caller's token), while the executors, which cannot prove who they are, still register.
//!
//! Needs an etcd: `scripts/with-etcd cargo test --test process_tls -- --ignored` starts a throwaway one and sets
//! `FOREMAN_TEST_ETCD`. Run with `--ignored` and no etcd, it fails rather than skips.
#![cfg(not(madsim))]

mod common;

use std::time::Duration;

use tokio::time::Instant;

use common::{
    etcd_from_env, foreman, http_call, http_get, http_get_with, Cluster, ExecutorListView, JobView, NodeOptions,
    CLI_TIMEOUT, POLL,
};
use foreman::rpc::pb;
use foreman::rpc::pb::discovery_client::DiscoveryClient;
use foreman::rpc::pb::executor_service_client::ExecutorServiceClient;
use foreman::rpc::pb::framework_client::FrameworkClient;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// How long the first election, the executors' registration and the job's creation may take.
const SETTLE_MAX: Duration = Duration::from_secs(20);
/// How long the job may take to finish.
const FINISH_MAX: Duration = Duration::from_secs(60);

/// `foreman <args> --master <masters> --output json --timeout …` with the TLS flags of `who`.
async fn cli(cluster: &Cluster, who: Option<&str>, args: &[&str]) -> common::Run {
    let masters = cluster.masters_except(None);
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend(["--master", &masters, "--output", "json", "--timeout", CLI_TIMEOUT].map(String::from));
    if let Some(w) = who {
        all.extend(cluster.tls_args(w));
    }
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    foreman(&refs).await
}

/// Polls `args` as the user admin until `accept` takes the parsed answer, for at most `max`.
async fn until<T: serde::de::DeserializeOwned + std::fmt::Debug>(
    cluster: &mut Cluster,
    args: &[&str],
    max: Duration,
    accept: impl Fn(&T) -> bool,
) -> T {
    let started = Instant::now();
    loop {
        cluster.assert_running();
        let run = cli(cluster, Some("user/admin"), args).await;
        let last = match serde_json::from_str::<T>(&run.stdout) {
            Ok(v) if run.code == Some(0) && accept(&v) => return v,
            Ok(v) => format!("{v:?}"),
            Err(_) => format!("exit {:?}: {}", run.code, run.stderr.trim()),
        };
        assert!(started.elapsed() < max, "`foreman {}`: not within {max:?}; last: {last}", args.join(" "));
        tokio::time::sleep(POLL).await;
    }
}

/// A channel to `address` with TLS material read from files (`who`'s certificate and key, `ca`).
async fn channel(
    address: &str,
    ca: &std::path::Path,
    who: Option<(&std::path::Path, &str)>,
) -> tonic::transport::Channel {
    let read = |p: &std::path::Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)));
    if let Some((dir, stem)) = who {
        let cert = read(&dir.join(format!("{stem}.pem")));
        let key = read(&dir.join(format!("{stem}-key.pem")));
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let endpoint = Endpoint::from_shared(format!("https://{address}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls config")
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5));
    endpoint.connect_lazy()
}

/// A call that failed in the transport (the server's TLS alert, or the connection it closed, which the client may
/// see first: TLS 1.3 checks a client certificate after the client's first write), not a status the server answered
/// and not a master that was down.
fn assert_handshake_refused(e: &tonic::Status) {
    let text = format!("{e:?}");
    assert!(e.metadata().get("foreman-reason").is_none(), "answered by a master: {text}");
    assert!(matches!(e.code(), tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::Unavailable), "{text}");
    assert!(!text.contains("ConnectionRefused") && !text.contains("Connection refused"), "master down: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real etcd: scripts/with-etcd cargo test --test process_tls -- --ignored"]
async fn a_tls_cluster_runs_a_job_and_refuses_strangers() {
    let etcd = etcd_from_env("process_tls");
    let tokens = vec![("admin", "*", "admin"), ("ops", "*", "admin"), ("reader", "a", "read"), ("bsub", "b", "submit")];
    let options = NodeOptions { tls: true, tokens, ..NodeOptions::default() };
    let mut cluster = Cluster::start_with(&etcd, "tls", 2, &[4, 4], options);

    let leader: common::LeaderView =
        until(&mut cluster, &["cluster", "leader"], SETTLE_MAX, |v: &common::LeaderView| v.leader_epoch > 0).await;
    eprintln!("leader over TLS: {leader:?}");
    let master = leader.address.clone();
    let follower = cluster.nodes.iter().find(|n| n.http.is_some() && n.name != leader.name).expect("a follower");
    let (follower_address, leader_http) =
        (follower.address.clone(), cluster.nodes[cluster.index_of(&leader.name)].http.clone().expect("HTTP"));
    let executors: ExecutorListView =
        until(&mut cluster, &["cluster", "executors"], SETTLE_MAX, |v: &ExecutorListView| v.executors.len() == 2).await;
    eprintln!("executors registered over TLS: {executors:?}");

    // A fake job, created and waited for through the CLI with a user's certificate.
    let config = r#"{"workers":2,"target":20,"tick_ms":20}"#;
    let run =
        cli(&cluster, Some("user/admin"), &["job", "create", "--type", "fake", "--config", config, "--id", "tls-1"])
            .await;
    assert_eq!(run.code, Some(0), "job create over TLS: {}", run.stderr);
    let job: JobView =
        until(&mut cluster, &["job", "get", "tls-1"], FINISH_MAX, |j: &JobView| j.state == "finished").await;
    eprintln!("job over TLS: {job:?}");

    // Through the follower alone: it forwards the create to the leader, naming the user.
    let mut as_admin = cluster.tls_args("user/admin");
    as_admin.extend(["--master", &follower_address, "--timeout", "5s", "--output", "json"].map(String::from));
    let mut args = vec!["job", "create", "--type", "fake", "--config", config, "--id", "tls-2"];
    args.extend(as_admin.iter().map(String::as_str));
    let run = foreman(&args).await;
    assert_eq!(run.code, Some(0), "job create through the follower: {}", run.stderr);
    let job: JobView =
        until(&mut cluster, &["job", "get", "tls-2"], FINISH_MAX, |j: &JobView| j.state == "finished").await;
    eprintln!("job created through the follower: {job:?}");

    // The HTTP API calls the handlers in process, with no certificate: 401 without a token, 200 with one.
    let (code, body) = http_get(&leader_http, "/api/v1/jobs").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("UNAUTHENTICATED"), "{body}");
    let (code, body) = http_get(&leader_http, "/healthz").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 200, "{body}");
    let ops = std::fs::read_to_string(cluster.token_file("ops")).expect("ops's token");
    let bearer = format!("Authorization: Bearer {}", ops.trim());
    let (code, body) = http_get_with(&leader_http, "/api/v1/jobs", &[&bearer]).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"tls-1\"") && body.contains("\"project\":\"default\""), "{body}");
    let unknown = "Authorization: Bearer foreman_0000";
    let (code, body) = http_get_with(&leader_http, "/api/v1/jobs", &[unknown]).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 401, "{body}");

    // Plain text to a TLS port: no answer (the CLI without TLS flags).
    let run = cli(&cluster, None, &["cluster", "leader"]).await;
    assert_ne!(run.code, Some(0), "a plain-text client was answered: {}", run.stdout);
    eprintln!("plain text refused: {}", run.stderr.trim());
    assert!(!run.stderr.contains("Connection refused"), "the masters are down, not refusing: {}", run.stderr);
    assert!(run.stderr.contains("give the CLI --tls-ca"), "no hint: {}", run.stderr);

    // The same user name and cluster name, from another CA: the handshake fails.
    let other = cluster.dir.join("other-ca");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_foreman"))
        .args(["tls", "init", "--dir", &other.display().to_string(), "--cluster", &cluster.cluster])
        .args(["--users", "admin"])
        .output()
        .expect("run foreman tls init");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let masters = cluster.masters_except(None);
    let o = |f: &str| other.join(f).display().to_string();
    let run = foreman(&[
        "cluster",
        "leader",
        "--master",
        &masters,
        "--timeout",
        CLI_TIMEOUT,
        "--tls-ca",
        &o("ca.pem"),
        "--tls-cert",
        &o("user-admin.pem"),
        "--tls-key",
        &o("user-admin-key.pem"),
    ])
    .await;
    assert_ne!(run.code, Some(0), "a client of another CA was answered: {}", run.stdout);
    eprintln!("another CA refused: {}", run.stderr.trim());
    assert!(run.stderr.contains("check that --tls-ca is this cluster's CA"), "no hint: {}", run.stderr);
    // Its certificate, trusting the right CA (so only the client certificate is wrong): refused by the server.
    let ch = channel(&master, &cluster.tls_dir().join("ca.pem"), Some((&other, "user-admin"))).await;
    let e = DiscoveryClient::new(ch).get_leader(pb::GetLeaderRequest {}).await.expect_err("another CA's client");
    eprintln!("another CA's client certificate, directly: {e:?}");
    assert_handshake_refused(&e);
    // No client certificate and no token, trusting the right CA: the handshake is accepted (a token could follow),
    // the call is refused as anonymous.
    let ch = channel(&master, &cluster.tls_dir().join("ca.pem"), None).await;
    let e = DiscoveryClient::new(ch).get_leader(pb::GetLeaderRequest {}).await.expect_err("no client certificate");
    eprintln!("no client certificate, no token: {e:?}");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");

    // An executor's certificate: it may read, but not resign the leader.
    let dir = cluster.tls_dir();
    let ch = channel(&master, &dir.join("ca.pem"), Some((&dir, "executor-exec0"))).await;
    let mut as_executor = DiscoveryClient::new(ch);
    as_executor.get_leader(pb::GetLeaderRequest {}).await.expect("an executor reads the leader");
    let s = as_executor.resign_leader(pb::ResignLeaderRequest {}).await.expect_err("an executor resigning");
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    eprintln!("executor resigning: {s:?}");
    // An executor's certificate heartbeating for, and deregistering, the other executor's id: refused.
    let exec1 = executors.executors.iter().find(|e| e.name == "exec1").expect("exec1 registered").id;
    let forged = pb::HeartbeatRequest { executor_id: exec1, leader_epoch: leader.leader_epoch, ..Default::default() };
    let s = as_executor.heartbeat(forged).await.expect_err("exec0 heartbeating as exec1");
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    eprintln!("exec0 heartbeating for exec1: {s:?}");
    let s = as_executor
        .deregister_executor(pb::DeregisterExecutorRequest { executor_id: exec1 })
        .await
        .expect_err("exec0 deregistering exec1");
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    // exec1 is still registered under its id and online.
    let after: ExecutorListView = until(&mut cluster, &["cluster", "executors"], SETTLE_MAX, |_| true).await;
    let e1 = after.executors.iter().find(|e| e.name == "exec1").expect("exec1 listed");
    assert_eq!((e1.id, e1.status.as_str()), (exec1, "online"), "{after:?}");
    // And the leader did not move.
    let after: common::LeaderView = until(&mut cluster, &["cluster", "leader"], SETTLE_MAX, |_| true).await;
    assert_eq!(after.leader_epoch, leader.leader_epoch, "{after:?}");

    forged_calls_change_nothing(&mut cluster, &etcd, &leader, &follower_address, &executors).await;
    tokens_with_the_ca_alone(&mut cluster).await;
    cluster.assert_running();
}

/// Who a forged call is sent as. Every one trusts the cluster's CA, so that only the caller's identity is wrong.
#[derive(Clone, Debug)]
enum Who {
    /// No client certificate and no token.
    Nobody,
    /// A user's bearer token (its file, [`Cluster::token_file`]), and no client certificate.
    Token(&'static str),
    /// The certificate and key of this stem in the cluster's TLS directory (`user-admin`, `executor-exec0`).
    Cert(String),
}

/// Adds the bearer token, if any, to every call.
#[derive(Clone)]
struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

/// A raw channel to `address` as `who`.
type Forger = tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>;

async fn forger(cluster: &Cluster, address: &str, who: &Who) -> Forger {
    let dir = cluster.tls_dir();
    let ca = dir.join("ca.pem");
    let (ch, bearer) = match who {
        Who::Nobody => (channel(address, &ca, None).await, None),
        Who::Token(user) => {
            let token = std::fs::read_to_string(cluster.token_file(user)).expect("the user's token");
            let value = format!("Bearer {}", token.trim()).parse().expect("a token is ASCII");
            (channel(address, &ca, None).await, Some(value))
        }
        Who::Cert(stem) => (channel(address, &ca, Some((&dir, stem))).await, None),
    };
    tonic::service::interceptor::InterceptedService::new(ch, Bearer(bearer))
}

/// Asserts that a forged call was refused with exactly `code` and its `foreman-reason`.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(
    what: &str,
    who: &Who,
    code: tonic::Code,
    r: Result<tonic::Response<T>, tonic::Status>,
) {
    let s = match r {
        Ok(taken) => panic!("security: {what} as {who:?} was taken: {taken:?}"),
        Err(s) => s,
    };
    let reason = match code {
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        other => panic!("not a refusal code: {other:?}"),
    };
    let got = s.metadata().get("foreman-reason").and_then(|v| v.to_str().ok());
    assert_eq!((s.code(), got), (code, Some(reason)), "{what} as {who:?}: {s:?}");
    assert!(!s.message().is_empty(), "{what} as {who:?}: a refusal says what is missing");
    eprintln!("refused: {what} as {who:?}: {code:?} {}", s.message());
}

/// The attacks of issue 15's "Why" that need a raw client, each made while a fake job runs: a job master's
/// Finished and Failed reports to the leader, and through the follower, from a caller with no identity, with an
/// admin's token, an admin's certificate, and the certificate of the executor that does not host the job master;
/// a heartbeat for and a deregistration of an executor, and resigns in a row, from no identity and from a reader;
/// executors registering with a huge capacity under no identity, a user's, or another executor's name; `QueryMetaStore` (where etcd is)
/// without an executor's or a master's certificate; dispatches straight to the executor hosting the job master
/// (a second job master for the running job, a worker, a confirmation) from no identity, a user, and the other
/// executor; a worker's report to the job master from no identity and from a user. Each refusal's exact code and
/// reason is checked, and then that nothing changed: the job is still running under the same incarnation, ends
/// finished with every worker's counter exactly at its target and no restart, both executors are online under
/// their ids with their capacities, no third is listed, and the leader's epoch is the same. The hosting
/// executor's own heartbeat for the same job master, with the same fields, is accepted: the refusals are of the
/// caller, not of a wrong message.
async fn forged_calls_change_nothing(
    cluster: &mut Cluster,
    etcd: &str,
    leader: &common::LeaderView,
    follower: &str,
    executors: &ExecutorListView,
) {
    // Long enough to be running through every forgery below (about 10 s of counting).
    let (id, workers, target) = ("forged-1", 2, 500);
    let config = format!(r#"{{"workers":{workers},"target":{target},"tick_ms":20}}"#);
    let run =
        cli(cluster, Some("user/admin"), &["job", "create", "--type", "fake", "--config", &config, "--id", id]).await;
    assert_eq!(run.code, Some(0), "job create: {}", run.stderr);
    let job: JobView =
        until(cluster, &["job", "get", id], SETTLE_MAX, |j: &JobView| j.state == "running" && j.executor_id.is_some())
            .await;
    let host = executors.executors.iter().find(|e| Some(e.id) == job.executor_id).expect("the host is listed");
    let other = executors.executors.iter().find(|e| Some(e.id) != job.executor_id).expect("another executor");
    eprintln!("{id} running: job master epoch {} on {} (id {})", job.epoch, host.name, host.id);
    let (host_cert, other_cert) =
        (Who::Cert(format!("executor-{}", host.name)), Who::Cert(format!("executor-{}", other.name)));
    let admin_cert = Who::Cert("user-admin".to_owned());
    use tonic::Code::{PermissionDenied as Denied, Unauthenticated as Anonymous};

    // 1. The job master's report that would end the job, to the leader.
    let report = |state: pb::WorkerState| pb::ReportWorkerStatusRequest {
        master_id: "job-manager".into(),
        master_epoch: leader.leader_epoch,
        worker_id: id.into(),
        worker_epoch: job.epoch,
        status: Some(pb::WorkerStatus { state: state as i32, error_message: "forged".into(), ..Default::default() }),
        progress: String::new(),
    };
    let to_leader = [
        (Who::Nobody, Anonymous),
        (Who::Token("admin"), Denied),
        (admin_cert.clone(), Denied),
        (other_cert.clone(), Denied),
    ];
    // Through the follower too, which forwards a call to the leader on the caller's behalf.
    for state in [pb::WorkerState::Finished, pb::WorkerState::Failed] {
        for (who, code) in &to_leader {
            for (at, address) in [("the leader", leader.address.as_str()), ("the follower", follower)] {
                let mut c = FrameworkClient::new(forger(cluster, address, who).await);
                assert_refused(
                    &format!("a {state:?} report for job {id} to {at}"),
                    who,
                    *code,
                    c.report_worker_status(report(state)).await,
                );
            }
        }
    }
    // The same fields in a heartbeat from the executor hosting the job master: accepted.
    let mut c = FrameworkClient::new(forger(cluster, &leader.address, &host_cert).await);
    let beat = pb::WorkerHeartbeatRequest {
        master_id: "job-manager".into(),
        master_epoch: leader.leader_epoch,
        worker_id: id.into(),
        worker_epoch: job.epoch,
        ..Default::default()
    };
    let answer = c.worker_heartbeat(beat).await.expect("the host's heartbeat for its job master").into_inner();
    assert_eq!(answer.verdict, pb::Verdict::Accepted as i32, "the host's own heartbeat: {answer:?}");

    // 2. A rogue executor with a huge capacity, to be given every job master.
    let rogue = |name: &str| pb::RegisterExecutorRequest {
        name: name.into(),
        address: "127.0.0.1:9".into(),
        capacity: 1_000_000,
        labels: Default::default(),
        instance: 7,
    };
    for (who, name, code) in [
        (Who::Nobody, "rogue", Anonymous),
        (Who::Token("admin"), "rogue", Denied),
        (admin_cert.clone(), "rogue", Denied),
        (other_cert.clone(), "rogue", Denied),
        (other_cert.clone(), host.name.as_str(), Denied),
    ] {
        let mut c = DiscoveryClient::new(forger(cluster, &leader.address, &who).await);
        assert_refused(&format!("registering executor {name:?}"), &who, code, c.register_executor(rogue(name)).await);
    }

    // An executor's heartbeat (its tasks would be kept or fenced by a stranger's word), its deregistration (they
    // stop), and the leader's resignation, in a loop, from no identity and from a user who may only read.
    let victim = host.id;
    for (who, code) in [(Who::Nobody, Anonymous), (Who::Token("reader"), Denied)] {
        let mut c = DiscoveryClient::new(forger(cluster, &leader.address, &who).await);
        let beat =
            pb::HeartbeatRequest { executor_id: victim, leader_epoch: leader.leader_epoch, ..Default::default() };
        assert_refused(&format!("a heartbeat for executor {victim}"), &who, code, c.heartbeat(beat).await);
        let dereg = pb::DeregisterExecutorRequest { executor_id: victim };
        assert_refused(&format!("deregistering executor {victim}"), &who, code, c.deregister_executor(dereg).await);
        for _ in 0..3 {
            assert_refused("ResignLeader", &who, code, c.resign_leader(pb::ResignLeaderRequest {}).await);
        }
    }

    // 3. Where etcd is (and then, etcd having no auth of its own, any key).
    for (who, code) in [(Who::Nobody, Anonymous), (Who::Token("admin"), Denied), (admin_cert.clone(), Denied)] {
        let mut c = DiscoveryClient::new(forger(cluster, &leader.address, &who).await);
        assert_refused("QueryMetaStore", &who, code, c.query_meta_store(pb::QueryMetaStoreRequest {}).await);
    }
    let mut c = DiscoveryClient::new(forger(cluster, &leader.address, &other_cert).await);
    c.query_meta_store(pb::QueryMetaStoreRequest {}).await.expect("an executor asks where the metastore is");

    // 4. Dispatches straight to the executor hosting the job master: a second job master for the running job (a
    // newer incarnation, which would fence the real one), a worker of it, and a confirmation of either. The
    // executors take no tokens (only the masters have the tokens file): a token is an unknown identity there.
    let dispatch = |kind: pb::TaskKind, task: &str| pb::PreDispatchTaskRequest {
        task_id: task.into(),
        kind: kind as i32,
        task_type: "fake".into(),
        task_config: config.clone().into_bytes(),
        job_id: id.into(),
        epoch: job.epoch + 1,
        master_id: id.into(),
        master_address: leader.address.clone(),
        master_epoch: leader.leader_epoch,
        leader_epoch: leader.leader_epoch,
        request_id: "forged-request".into(),
        cost: 1,
        timing: Some(foreman::rpc::timing_to_wire(&foreman::core::timing::HeartbeatTiming::worker_default())),
        executor_id: host.id,
    };
    let worker = format!("{id}/w0");
    for (who, kind, code) in [
        (Who::Nobody, pb::TaskKind::JobMaster, Anonymous),
        (Who::Nobody, pb::TaskKind::Worker, Anonymous),
        (Who::Token("admin"), pb::TaskKind::JobMaster, Anonymous),
        (admin_cert.clone(), pb::TaskKind::JobMaster, Denied),
        (admin_cert.clone(), pb::TaskKind::Worker, Denied),
        (other_cert.clone(), pb::TaskKind::JobMaster, Denied),
    ] {
        let task = if kind == pb::TaskKind::JobMaster { id } else { worker.as_str() };
        let mut c = ExecutorServiceClient::new(forger(cluster, &host.address, &who).await);
        assert_refused(
            &format!("dispatching {kind:?} {task}"),
            &who,
            code,
            c.pre_dispatch_task(dispatch(kind, task)).await,
        );
    }
    for (who, code) in [(Who::Nobody, Anonymous), (Who::Token("admin"), Anonymous), (admin_cert.clone(), Denied)] {
        let mut c = ExecutorServiceClient::new(forger(cluster, &host.address, &who).await);
        let confirm = pb::ConfirmDispatchTaskRequest { task_id: id.into(), request_id: "forged-request".into() };
        assert_refused("ConfirmDispatchTask", &who, code, c.confirm_dispatch_task(confirm).await);
    }

    // 5. A worker's report to its job master, at the executor hosting it.
    let finished = pb::ReportWorkerStatusRequest {
        master_id: id.into(),
        master_epoch: job.epoch,
        worker_id: worker.clone(),
        worker_epoch: 0,
        status: Some(pb::WorkerStatus { state: pb::WorkerState::Finished as i32, ..Default::default() }),
        progress: String::new(),
    };
    for (who, code) in [(Who::Nobody, Anonymous), (Who::Token("admin"), Anonymous), (admin_cert.clone(), Denied)] {
        let mut c = FrameworkClient::new(forger(cluster, &host.address, &who).await);
        assert_refused(
            &format!("a Finished report for worker {worker}"),
            &who,
            code,
            c.report_worker_status(finished.clone()).await,
        );
        let beat = pb::WorkerHeartbeatRequest { master_id: id.into(), worker_id: worker.clone(), ..Default::default() };
        assert_refused(&format!("a heartbeat for worker {worker}"), &who, code, c.worker_heartbeat(beat).await);
    }

    // Nothing changed: the job still runs under the same incarnation, then finishes exactly.
    let now: JobView = until(cluster, &["job", "get", id], SETTLE_MAX, |_| true).await;
    assert_eq!((now.state.as_str(), now.epoch, now.executor_id), ("running", job.epoch, job.executor_id),
        "{id} must still be running under its job master as the forgeries end (if it finished already, raise its target): {now:?}");
    let done: JobView = until(cluster, &["job", "get", id], FINISH_MAX, |j: &JobView| j.state != "running").await;
    assert_eq!((done.state.as_str(), done.restarts, done.epoch), ("finished", 0, job.epoch), "{done:?}");
    let meta = foreman::meta::MetaStore::etcd(&[etcd.to_owned()], &cluster.cluster, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("cannot open the metastore at {etcd}: {e}"));
    let found = common::checkpoints(&meta, id).await.unwrap_or_else(|e| panic!("{e}"));
    let problems = common::checkpoint_problems(id, &found, workers, target, true);
    assert!(problems.is_empty(), "{problems:?}");
    eprintln!("{id} finished exactly: {found:?}");
    let after: ExecutorListView = until(cluster, &["cluster", "executors"], SETTLE_MAX, |_| true).await;
    let seen = |l: &ExecutorListView| {
        l.executors.iter().map(|e| (e.id, e.name.clone(), e.capacity, e.status.clone())).collect::<Vec<_>>()
    };
    let mut expected = seen(executors);
    expected.iter_mut().for_each(|e| e.3 = "online".into());
    assert_eq!(seen(&after), expected, "the executors must be the same two, online");
    let now: common::LeaderView = until(cluster, &["cluster", "leader"], SETTLE_MAX, |_| true).await;
    assert_eq!((now.name.as_str(), now.leader_epoch), (leader.name.as_str(), leader.leader_epoch), "{now:?}");
}

/// `foreman <args>` with the CA (when the cluster has TLS) and the token of `user` (none: no token at all), JSON
/// output, to every master.
async fn as_token(cluster: &Cluster, user: Option<&str>, args: &[&str]) -> common::Run {
    as_token_to(cluster, &cluster.masters_except(None), user, args).await
}

/// [`as_token`] to `masters` only.
async fn as_token_to(cluster: &Cluster, masters: &str, user: Option<&str>, args: &[&str]) -> common::Run {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend(["--master", masters, "--output", "json", "--timeout", CLI_TIMEOUT].map(String::from));
    if cluster.tls_dir().exists() {
        all.extend(["--tls-ca".to_owned(), cluster.tls_dir().join("ca.pem").display().to_string()]);
    }
    if let Some(u) = user {
        all.extend(["--token-file".to_owned(), cluster.token_file(u).display().to_string()]);
    }
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    foreman(&refs).await
}

/// Polls `foreman job get ID` with `user`'s token until the job is in `state`.
async fn await_state(cluster: &mut Cluster, user: &str, id: &str, state: &str) -> JobView {
    let started = Instant::now();
    loop {
        cluster.assert_running();
        let run = as_token(cluster, Some(user), &["job", "get", id]).await;
        let last = match serde_json::from_str::<JobView>(&run.stdout) {
            Ok(j) if j.state == state => return j,
            Ok(j) => format!("{j:?}"),
            Err(_) => format!("exit {:?}: {}", run.code, run.stderr.trim()),
        };
        assert!(started.elapsed() < FINISH_MAX, "job {id} not {state} within {FINISH_MAX:?}; last: {last}");
        tokio::time::sleep(POLL).await;
    }
}

/// Asserts that `run` failed with `reason`, and returns its stderr.
#[track_caller]
fn refused(run: &common::Run, reason: &str) -> String {
    assert_eq!(run.code, Some(1), "expected a refusal {reason}: {} {}", run.stdout, run.stderr);
    assert!(run.stderr.contains(reason), "expected {reason}: {}", run.stderr);
    run.stderr.clone()
}

/// Tokens with the CA alone (no client certificate): each project's lifecycle with the right token, and the
/// refusals of the wrong ones.
async fn tokens_with_the_ca_alone(cluster: &mut Cluster) {
    let quick = r#"{"workers":1,"target":20,"tick_ms":20}"#;
    let slow = r#"{"workers":1,"target":1000000,"tick_ms":50}"#;
    // Project a, with an admin token: create, get, status, list, wait for it to finish, delete.
    let run = as_token(
        cluster,
        Some("ops"),
        &["job", "create", "--type", "fake", "--config", quick, "--id", "pa-1", "--project", "a"],
    )
    .await;
    assert_eq!(run.code, Some(0), "ops creating in project a: {}", run.stderr);
    let job = await_state(cluster, "ops", "pa-1", "finished").await;
    assert_eq!(job.project.as_deref(), Some("a"), "{job:?}");
    let run = as_token(cluster, Some("ops"), &["job", "status", "pa-1"]).await;
    assert_eq!(run.code, Some(0), "ops reading pa-1's status: {}", run.stderr);
    // A slow job of project a for the reader to try to cancel.
    let run = as_token(
        cluster,
        Some("ops"),
        &["job", "create", "--type", "fake", "--config", slow, "--id", "pa-2", "--project", "a"],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);

    // The reader of project a reads it, but may not cancel it.
    let run = as_token(cluster, Some("reader"), &["job", "get", "pa-2"]).await;
    assert_eq!(run.code, Some(0), "the reader getting pa-2: {}", run.stderr);
    let e = refused(&as_token(cluster, Some("reader"), &["job", "cancel", "pa-2"]).await, "PERMISSION_DENIED");
    assert!(e.contains("needs role submit in project a") && e.contains("user/reader has a=read"), "{e}");
    assert!(e.contains("foreman token add"), "what to fix: {e}");
    let e = refused(
        &as_token(cluster, Some("reader"), &["job", "create", "--type", "fake", "--config", quick, "--project", "a"])
            .await,
        "PERMISSION_DENIED",
    );
    assert!(e.contains("needs role submit in project a"), "{e}");

    // Project b's submitter: project a's job answers exactly as a missing one, and is not listed.
    let missing = refused(&as_token(cluster, Some("bsub"), &["job", "get", "no-such-job"]).await, "JOB_NOT_FOUND");
    for args in [["job", "get", "pa-2"], ["job", "cancel", "pa-2"], ["job", "delete", "pa-1"]] {
        let got = refused(&as_token(cluster, Some("bsub"), &args).await, "JOB_NOT_FOUND");
        let id = args[2];
        assert_eq!(got.replace(id, "no-such-job"), missing, "`{}` must be answered as a missing job", args.join(" "));
    }
    let run = as_token(cluster, Some("bsub"), &["job", "list"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.stdout.contains("pa-") && !run.stdout.contains("tls-"), "bsub sees only project b: {}", run.stdout);
    let run = as_token(cluster, Some("bsub"), &["job", "list", "--project", "a"]).await;
    assert!(run.code == Some(0) && !run.stdout.contains("pa-"), "a filter never widens: {} {}", run.stdout, run.stderr);
    // Its own project's lifecycle: create, cancel, delete.
    let run = as_token(
        cluster,
        Some("bsub"),
        &["job", "create", "--type", "fake", "--config", slow, "--id", "pb-1", "--project", "b"],
    )
    .await;
    assert_eq!(run.code, Some(0), "bsub creating in project b: {}", run.stderr);
    let run = as_token(cluster, Some("bsub"), &["job", "cancel", "pb-1"]).await;
    assert_eq!(run.code, Some(0), "bsub canceling pb-1: {}", run.stderr);
    await_state(cluster, "bsub", "pb-1", "canceled").await;
    let run = as_token(cluster, Some("bsub"), &["job", "delete", "pb-1"]).await;
    assert_eq!(run.code, Some(0), "bsub deleting pb-1: {}", run.stderr);
    // And in project a, the admin ends what it started.
    let run = as_token(cluster, Some("ops"), &["job", "cancel", "pa-2"]).await;
    assert_eq!(run.code, Some(0), "ops canceling pa-2: {}", run.stderr);
    let run = as_token(cluster, Some("ops"), &["job", "delete", "pa-1"]).await;
    assert_eq!(run.code, Some(0), "ops deleting pa-1: {}", run.stderr);
    // A project's submitter may not resign the leader; no token at all is UNAUTHENTICATED, with what to do.
    let e = refused(&as_token(cluster, Some("bsub"), &["cluster", "resign"]).await, "PERMISSION_DENIED");
    assert!(e.contains("role admin in every project (*)"), "{e}");
    let e = refused(&as_token(cluster, None, &["job", "list"]).await, "UNAUTHENTICATED");
    assert!(e.contains("--token-file"), "what to fix: {e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real etcd: scripts/with-etcd cargo test --test process_tls -- --ignored"]
async fn a_tokens_file_without_tls_holds_users_to_their_tokens() {
    let etcd = etcd_from_env("process_tls");
    let tokens = vec![("ops", "*", "admin"), ("reader", "a", "read")];
    let mut cluster = Cluster::start_with(&etcd, "tokens", 2, &[4], NodeOptions { tokens, ..NodeOptions::default() });
    let started = Instant::now();
    // The executor registers without a certificate or a token: processes keep their calls.
    let leader = loop {
        cluster.assert_running();
        let run = as_token(&cluster, Some("ops"), &["cluster", "executors"]).await;
        let listed = serde_json::from_str::<ExecutorListView>(&run.stdout).ok();
        if listed.is_some_and(|l| l.executors.len() == 1) {
            let run = as_token(&cluster, Some("ops"), &["cluster", "leader"]).await;
            if let Ok(l) = serde_json::from_str::<common::LeaderView>(&run.stdout) {
                break l;
            }
        }
        assert!(started.elapsed() < SETTLE_MAX, "no leader and executor: {} {}", run.stdout, run.stderr);
        tokio::time::sleep(POLL).await;
    };
    let follower = cluster.nodes.iter().find(|n| n.http.is_some() && n.name != leader.name).expect("a follower");
    let (follower_address, leader_http) =
        (follower.address.clone(), cluster.nodes[cluster.index_of(&leader.name)].http.clone().expect("HTTP"));

    let e = refused(&as_token(&cluster, None, &["job", "list"]).await, "UNAUTHENTICATED");
    assert!(e.contains("--token-file"), "{e}");
    let quick = r#"{"workers":1,"target":20,"tick_ms":20}"#;
    let create = ["job", "create", "--type", "fake", "--config", quick, "--id", "plain-1", "--project", "a"];
    let e = refused(&as_token(&cluster, Some("reader"), &create).await, "PERMISSION_DENIED");
    assert!(e.contains("needs role submit in project a"), "{e}");
    // Through the follower alone: the leader checks the token the follower passed on.
    let run = as_token_to(&cluster, &follower_address, Some("ops"), &create).await;
    assert_eq!(run.code, Some(0), "ops creating through the follower: {}", run.stderr);
    let job = await_state(&mut cluster, "reader", "plain-1", "finished").await;
    assert_eq!(job.project.as_deref(), Some("a"), "{job:?}");
    let e = refused(&as_token(&cluster, Some("reader"), &["job", "delete", "plain-1"]).await, "PERMISSION_DENIED");
    assert!(e.contains("needs role submit in project a"), "{e}");

    let ops = std::fs::read_to_string(cluster.token_file("ops")).expect("ops's token");
    let bearer = format!("Authorization: Bearer {}", ops.trim());
    let (code, body) =
        http_get_with(&leader_http, "/api/v1/jobs/plain-1", &[&bearer]).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_get(&leader_http, "/api/v1/jobs/plain-1").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 401, "{body}");
    let reader = std::fs::read_to_string(cluster.token_file("reader")).expect("the reader's token");
    let bearer = format!("Authorization: Bearer {}", reader.trim());
    let (code, body) =
        http_call(&leader_http, "DELETE", "/api/v1/jobs/plain-1", &[&bearer]).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("PERMISSION_DENIED") && body.contains("needs role submit in project a"), "{body}");
    cluster.assert_running();
}
