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
//! the wrong reason. Last, tokens with the CA alone: project a's whole job lifecycle with an admin token, project
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

    tokens_with_the_ca_alone(&mut cluster).await;
    cluster.assert_running();
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
