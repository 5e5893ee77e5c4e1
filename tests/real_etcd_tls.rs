//! etcd over TLS with a client certificate, then with etcd's authentication on, with real processes (production
//! build; issue 15, step 5).
//!
//! `scripts/with-etcd --tls` starts an etcd that serves https only and asks every client for a certificate from its
//! own CA (`foreman tls init --etcd`). In order, on that one etcd:
//! 1. A master and an executor with `--etcd https://… --etcd-ca --etcd-cert --etcd-key` run a fake job to finished,
//!    and its checkpoints are exact, read back over TLS: the executor reached etcd with its own certificate, learning
//!    only the endpoints from the master.
//! 2. Refused at start, with the flag and the fix named (and checked against the same start succeeding above): a
//!    master in plain text (`host:port`), a master trusting another CA (etcd's certificate untrusted), a master with
//!    the CA but no client certificate; a metastore client in plain text fails too.
//! 3. etcd's authentication turned on through the etcd-client API as an operator would with etcdctl: a root user, a
//!    `foreman` role with readwrite on `/foreman/` only, a `foreman` user with that role, `auth enable`. A master and
//!    an executor with `--etcd-user foreman --etcd-password-file` run a job to finished, and after an idle spell
//!    longer than etcd's `--auth-token-ttl` another one (the expired token fetched again); a wrong password stops a
//!    master's start; a password file readable by others stops an executor's; and the `foreman` user cannot write
//!    outside the prefix (the role is narrow).
//!
//! Needs the TLS etcd: `scripts/with-etcd --tls cargo test --test real_etcd_tls -- --ignored`. Run with `--ignored`
//! and no such etcd, it fails rather than skips.
#![cfg(not(madsim))]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use common::{
    checkpoint_problems, checkpoints, create_job, etcd_from_env, hold_ports, query, wait_for_leader, Cluster,
    ExecutorListView, JobView, NodeOptions, POLL,
};
use foreman::meta::access::{EtcdAccess, EtcdFiles};
use foreman::meta::MetaStore;
use foreman::rpc::pb;
use foreman::rpc::pb::discovery_client::DiscoveryClient;

/// How long the first election, the executor's registration and the job's creation may take.
const SETTLE_MAX: Duration = Duration::from_secs(20);
/// How long the job may take to finish.
const FINISH_MAX: Duration = Duration::from_secs(60);
/// How long a refused start may take to exit (one etcd round trip and a handshake).
const REFUSAL_MAX: Duration = Duration::from_secs(20);
/// The deadline on each metastore call of the test's own clients.
const META_TIMEOUT: Duration = Duration::from_secs(5);
/// Longer than the `--auth-token-ttl` of `scripts/with-etcd --tls` (2 s): an idle client's token expires.
const AUTH_TOKEN_IDLE: Duration = Duration::from_secs(4);
/// The fake job's shape: two workers counting to 20.
const WORKERS: u32 = 2;
const TARGET: u64 = 20;

/// The directory of etcd's CA and foreman's client certificate, from `scripts/with-etcd --tls`.
fn certs_from_env() -> PathBuf {
    let dir = std::env::var("FOREMAN_TEST_ETCD_TLS").unwrap_or_default();
    assert!(
        !dir.is_empty(),
        "FOREMAN_TEST_ETCD_TLS must name the etcd certificates: run `scripts/with-etcd --tls cargo test --test \
         real_etcd_tls -- --ignored`"
    );
    PathBuf::from(dir)
}

/// `--etcd-ca`, `--etcd-cert`, `--etcd-key` of the files in `dir`.
fn tls_args(dir: &Path) -> Vec<String> {
    let f = |name: &str| dir.join(name).display().to_string();
    ["--etcd-ca", &f("ca.pem"), "--etcd-cert", &f("client.pem"), "--etcd-key", &f("client-key.pem")]
        .map(String::from)
        .to_vec()
}

/// The TLS files in `dir` (CA and client certificate), and `user` with `password_file`, loaded.
fn access(dir: &Path, user: Option<(&str, &Path)>) -> EtcdAccess {
    let (ca, cert, key) = (dir.join("ca.pem"), dir.join("client.pem"), dir.join("client-key.pem"));
    let files = EtcdFiles {
        ca: Some(&ca),
        cert: Some(&cert),
        key: Some(&key),
        user: user.map(|(u, _)| u),
        password_file: user.map(|(_, p)| p),
    };
    EtcdAccess::load(&files).expect("the etcd client files")
}

/// A file holding `text` with `mode`.
fn secret_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// Runs `foreman <args>`, which must exit non-zero within [`REFUSAL_MAX`] (it is killed and the test fails
/// otherwise); returns its output.
async fn refused_start(args: &[String]) -> String {
    let out = run_refused(args).await;
    eprintln!("refused: `foreman {}`: {}", args.join(" "), out.lines().last().unwrap_or_default());
    out
}

async fn run_refused(args: &[String]) -> String {
    let log = std::env::temp_dir().join(format!("foreman-refusal-{}-{}.log", std::process::id(), args.len()));
    let file = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_foreman"))
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("run foreman");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > REFUSAL_MAX {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`foreman {}` still runs after {REFUSAL_MAX:?}: {}", args.join(" "), read(&log));
        }
        tokio::time::sleep(POLL).await;
    };
    let out = read(&log);
    let _ = std::fs::remove_file(&log);
    assert!(!status.success(), "`foreman {}` started: {out}", args.join(" "));
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn assert_mentions(text: &str, words: &[&str]) {
    for w in words {
        assert!(text.contains(w), "{text:?} should mention {w:?}");
    }
}

/// `foreman master` flags that would start a master on a free port with `etcd`, in a cluster of its own.
fn master_args(etcd: &str, extra: &[String]) -> Vec<String> {
    let port = hold_ports(1).pop().expect("a port").local_addr().unwrap().to_string();
    let mut args: Vec<String> = [
        "master",
        "--insecure",
        "--name",
        "refused",
        "--addr",
        &port,
        "--http-addr",
        "",
        "--cluster",
        "refused",
        "--etcd",
        etcd,
    ]
    .map(String::from)
    .to_vec();
    args.extend_from_slice(extra);
    args
}

/// Starts one master and one executor with `etcd_args`, runs a fake job to finished and checks its checkpoints
/// through a client with `access`. With `idle`, the cluster then does nothing for that long (past etcd's
/// `--auth-token-ttl`, so that the executor's auth token expires) and a second job must finish too, the executor
/// having authenticated again.
async fn jobs_finish(etcd: &str, label: &str, etcd_args: Vec<String>, access: &EtcdAccess, idle: Option<Duration>) {
    let options = NodeOptions { master_args: etcd_args.clone(), executor_args: etcd_args, ..NodeOptions::default() };
    let mut cluster = Cluster::start_with(etcd, label, 1, &[4], options);
    let masters = cluster.masters_except(None);
    wait_for_leader(&mut cluster, &masters, SETTLE_MAX, "a leader", |l| l.leader_epoch > 0).await;
    let started = Instant::now();
    loop {
        cluster.assert_running();
        if query::<ExecutorListView>(&masters, &["cluster", "executors"]).await.is_ok_and(|v| v.executors.len() == 1) {
            break;
        }
        assert!(started.elapsed() < SETTLE_MAX, "the executor did not register within {SETTLE_MAX:?}");
        tokio::time::sleep(POLL).await;
    }
    // What the executor asked the master: the endpoints with their scheme and the key prefix, no credentials (the
    // answer has no field for them); the executor used its own.
    let address = format!("http://{}", cluster.nodes[0].address);
    let mut discovery = DiscoveryClient::connect(address).await.expect("a client of the master");
    let store = discovery.query_meta_store(pb::QueryMetaStoreRequest {}).await.expect("QueryMetaStore").into_inner();
    assert_eq!(store.endpoints, [etcd.to_owned()]);
    assert_eq!(store.key_prefix, format!("/foreman/{}/", cluster.cluster));
    let meta = MetaStore::etcd_with(&[etcd.to_owned()], &cluster.cluster, META_TIMEOUT, access)
        .await
        .expect("a metastore client over TLS");
    let jobs: &[&str] = if idle.is_some() { &["job-1", "job-2"] } else { &["job-1"] };
    for (i, id) in jobs.iter().enumerate() {
        if let (1, Some(idle)) = (i, idle) {
            eprintln!("{label}: idle for {idle:?}");
            tokio::time::sleep(idle).await;
        }
        let config = format!(r#"{{"workers":{WORKERS},"target":{TARGET},"tick_ms":20}}"#);
        create_job(&masters, id, "fake", &config, SETTLE_MAX).await;
        let started = Instant::now();
        let job = loop {
            cluster.assert_running();
            let last = match query::<JobView>(&masters, &["job", "get", id]).await {
                Ok(j) if j.state == "finished" => break j,
                Ok(j) => format!("{j:?}"),
                Err(e) => e,
            };
            assert!(started.elapsed() < FINISH_MAX, "{id} did not finish within {FINISH_MAX:?}; last: {last}");
            tokio::time::sleep(POLL).await;
        };
        eprintln!("{label}: {job:?}");
        // After an idle spell this client's token has expired too: its first call is refused and the token fetched
        // again (a refusal, never applied), so the read is tried once more.
        let found = match checkpoints(&meta, id).await {
            Ok(found) => found,
            Err(e) if idle.is_some() && e.contains("invalid auth token") => {
                checkpoints(&meta, id).await.expect("the checkpoints, with a new token")
            }
            Err(e) => panic!("the checkpoints: {e}"),
        };
        let problems = checkpoint_problems(id, &found, WORKERS, TARGET, true);
        assert!(problems.is_empty(), "{problems:?}");
    }
    let executor_log = read(&cluster.nodes[1].log);
    assert!(executor_log.contains("learned the metastore"), "{executor_log}");
    if idle.is_some() {
        assert!(executor_log.contains("authenticated again"), "the token did not expire: {executor_log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd with TLS: scripts/with-etcd --tls cargo test --test real_etcd_tls -- --ignored"]
async fn etcd_with_tls_and_users() {
    let etcd = etcd_from_env("real_etcd_tls");
    assert!(etcd.starts_with("https://"), "FOREMAN_TEST_ETCD={etcd}: run under scripts/with-etcd --tls");
    let certs = certs_from_env();
    let tls = access(&certs, None);
    let scratch = std::env::temp_dir().join(format!("foreman-etcd-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();

    // 1. TLS with a client certificate: a job runs, the executor using its own certificate.
    jobs_finish(&etcd, "etcd-tls", tls_args(&certs), &tls, None).await;

    // 2. What etcd refuses is refused at start, naming what to fix.
    let bare = etcd.strip_prefix("https://").unwrap();
    let out = refused_start(&master_args(bare, &[])).await;
    assert_mentions(&out, &["cannot use the metastore", "etcd may serve TLS", "https://"]);
    let plain = MetaStore::etcd(&[bare.to_owned()], "plain", META_TIMEOUT).await.expect("connects lazily");
    let e = plain.probe().await.expect_err("a plain-text client of a TLS etcd");
    eprintln!("a plain-text client of the TLS etcd: {e}");

    let other = scratch.join("other");
    let made = Command::new(env!("CARGO_BIN_EXE_foreman"))
        .args(["tls", "init", "--etcd", "--cluster", "other", "--dir", other.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let mut untrusted = tls_args(&certs);
    untrusted[1] = other.join("etcd").join("ca.pem").display().to_string();
    let out = refused_start(&master_args(&etcd, &untrusted)).await;
    assert_mentions(&out, &["cannot use the metastore", "not trusted", "--etcd-ca"]);

    let ca_only = tls_args(&certs)[..2].to_vec();
    let out = refused_start(&master_args(&etcd, &ca_only)).await;
    assert_mentions(&out, &["cannot use the metastore", "--etcd-cert"]);

    // 3. etcd's authentication, set up as an operator would with etcdctl.
    let tls_options = || {
        let f = |name: &str| std::fs::read(certs.join(name)).unwrap();
        etcd_client::ConnectOptions::new().with_tls(
            etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(f("ca.pem")))
                .identity(etcd_client::Identity::from_pem(f("client.pem"), f("client-key.pem"))),
        )
    };
    let password = "correct horse battery staple";
    {
        let mut admin = etcd_client::Client::connect([&etcd], Some(tls_options())).await.expect("an admin client");
        admin.user_add("root", "root-password", None).await.expect("user add root");
        admin.user_grant_role("root", "root").await.expect("user grant-role root root");
        admin.role_add("foreman").await.expect("role add foreman");
        let prefix = etcd_client::Permission::read_write("/foreman/").with_prefix();
        admin.role_grant_permission("foreman", prefix).await.expect("role grant-permission");
        admin.user_add("foreman", password, None).await.expect("user add foreman");
        admin.user_grant_role("foreman", "foreman").await.expect("user grant-role foreman foreman");
        admin.auth_enable().await.expect("auth enable");
    }
    let good = secret_file(&scratch, "password", &format!("{password}\n"), 0o600);
    let wrong = secret_file(&scratch, "wrong", "not the password\n", 0o600);
    let loose = secret_file(&scratch, "loose", &format!("{password}\n"), 0o644);
    let user_args = |file: &Path| {
        let mut args = tls_args(&certs);
        args.extend(["--etcd-user", "foreman", "--etcd-password-file", file.to_str().unwrap()].map(String::from));
        args
    };

    let out = refused_start(&master_args(&etcd, &user_args(&wrong))).await;
    assert_mentions(
        &out,
        &["cannot use the metastore", "authentication failed", "--etcd-user", "--etcd-password-file"],
    );
    let port = hold_ports(1).pop().unwrap().local_addr().unwrap().to_string();
    let mut executor: Vec<String> =
        ["executor", "--insecure", "--name", "loose", "--addr", &port, "--join", "127.0.0.1:1"]
            .map(String::from)
            .to_vec();
    executor.extend(user_args(&loose));
    let out = refused_start(&executor).await;
    assert_mentions(&out, &["--etcd-password-file", "a password file must be readable by its owner only", "chmod 600"]);

    let as_foreman = access(&certs, Some(("foreman", &good)));
    jobs_finish(&etcd, "etcd-auth", user_args(&good), &as_foreman, Some(AUTH_TOKEN_IDLE)).await;

    // The role is narrow: the foreman user writes under /foreman/ and nowhere else.
    let mut client = etcd_client::Client::connect([&etcd], Some(tls_options().with_user("foreman", password)))
        .await
        .expect("a client as foreman");
    client.put("/foreman/role-check", "ok", None).await.expect("a write under /foreman/");
    let e = client.put("/elsewhere/role-check", "no", None).await.expect_err("a write outside /foreman/");
    assert!(e.to_string().contains("permission denied"), "{e}");
    let _ = std::fs::remove_dir_all(&scratch);
}
