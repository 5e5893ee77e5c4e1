//! A connection flood against `foreman standalone`'s HTTP API with few file descriptors (production build; issue 15,
//! "Why": 20,000 idle connections used to exhaust the process's descriptors, after which its own executors missed
//! their heartbeats and were declared offline).
//!
//! The standalone runs under `ulimit -n 1024` (its HTTP connection cap is then derived from that limit, 224), with
//! executor heartbeats short enough that the flood outlasts the offline TTL and the self-fence several times over.
//! A fake job runs; the test opens [`FLOOD`] connections to the HTTP port and holds them, silent, for
//! [`FLOOD_HOLD`]. Throughout, a new HTTP connection is answered 503 with `Retry-After` at once, the gRPC API answers
//! (`cluster executors` over the CLI), and both executors stay online under their first ids. Then the job finishes
//! under its first incarnation with no restart (a self-fenced executor would have stopped its job master), and once
//! the flood's connections close, the HTTP API answers 200 again.
//!
//! No etcd is needed: standalone runs on its embedded metastore.
#![cfg(not(madsim))]

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use common::{http_get, ExecutorListView, JobView, POLL};

fn home() -> std::path::PathBuf {
    common::test_home("flood")
}

async fn foreman(args: &[&str]) -> common::Run {
    common::foreman_in(Some(&home()), args).await
}

async fn query<T: serde::de::DeserializeOwned>(master: &str, args: &[&str]) -> Result<T, String> {
    common::query_in(Some(&home()), master, args).await
}

/// How long the standalone may take to print its banner, lead and register its executors.
const START_MAX: Duration = Duration::from_secs(20);
/// The descriptors the standalone may open (`ulimit -n`): far fewer than the flood's connections.
const NOFILE: u32 = 1024;
/// The connections the flood opens and holds.
const FLOOD: usize = 3000;
/// How long the flood is held once open: past the offline TTL and the self-fence of [`TIMINGS`].
const FLOOD_HOLD: Duration = Duration::from_secs(6);
/// How long one of the flood's connections may take to connect.
const CONNECT_MAX: Duration = Duration::from_secs(2);
/// How long the HTTP API may take to answer again once the flood's connections close.
const RECOVER_MAX: Duration = Duration::from_secs(10);
/// How long the job may take to finish.
const FINISH_MAX: Duration = Duration::from_secs(60);
/// Short executor heartbeats (offline after 4 s, self-fence after 3 s) and an election that validates with them.
const TIMINGS: &str = r#"
[election]
lease-ttl = "2s"
keepalive-interval = "300ms"
step-down = "900ms"
campaign-retry = "200ms"

[executors]
heartbeat-interval = "250ms"
heartbeat-timeout = "500ms"
self-fence = "3s"
offline-ttl = "4s"
check-interval = "250ms"
"#;

/// The standalone process, killed when dropped.
struct Standalone {
    child: Child,
    log: PathBuf,
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- standalone log ----\n{}", common::tail(&self.log, 60));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_leaves_the_standalone_serving_and_its_executors_online() {
    let dir = common::scratch_dir("flood");
    let config = dir.join("foreman.toml");
    std::fs::write(&config, TIMINGS).expect("write the configuration");
    let log = dir.join("standalone.log");
    let ports = common::StandalonePorts::new();
    let executors_port = ports.executors;
    let (master, http) = (format!("127.0.0.1:{}", ports.master), format!("127.0.0.1:{}", ports.http));
    let mut child = Command::new("sh")
        .args(["-c", &format!("ulimit -n {NOFILE} && exec \"$0\" \"$@\"")])
        .arg(env!("CARGO_BIN_EXE_foreman"))
        .args(["standalone", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--addr", &master, "--http-addr", &http, "--executor-port", &executors_port.to_string()])
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env("HOME", home())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::options().create(true).append(true).open(&log).expect("open the log"))
        .spawn()
        .expect("start foreman standalone");
    // The banner ends with its `stop:` line, printed once every server was started.
    let stdout = child.stdout.take().expect("piped stdout");
    let standalone = Standalone { child, log: log.clone() };
    for line in BufReader::new(stdout).lines().take(8) {
        if line.unwrap_or_default().starts_with("stop:") {
            break;
        }
    }

    let started = Instant::now();
    let before = loop {
        match query::<ExecutorListView>(&master, &["cluster", "executors"]).await {
            Ok(l) if l.executors.len() == 2 && l.executors.iter().all(|e| e.status == "online") => break l,
            other => assert!(started.elapsed() < START_MAX, "no two executors online: {other:?}"),
        }
        tokio::time::sleep(POLL).await;
    };
    // The limit reached the process: its HTTP cap was derived from it.
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(said.contains("HTTP API: at most 224 connections"), "{}", common::tail(&log, 40));
    let ids = |l: &ExecutorListView| l.executors.iter().map(|e| (e.id, e.name.clone())).collect::<Vec<_>>();
    // About 8 s of counting: running through the whole flood.
    let (workers, target) = (2, 400);
    let job_config = format!(r#"{{"workers":{workers},"target":{target},"tick_ms":20}}"#);
    let run =
        foreman(&["job", "create", "--id", "flooded", "--type", "fake", "--config", &job_config, "--master", &master])
            .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let running = loop {
        match query::<JobView>(&master, &["job", "get", "flooded"]).await {
            Ok(j) if j.state == "running" && j.executor_id.is_some() => break j,
            other => assert!(started.elapsed() < START_MAX, "the job never ran: {other:?}"),
        }
        tokio::time::sleep(POLL).await;
    };

    // The flood: connections held open and silent.
    let flood_started = Instant::now();
    let mut held = Vec::with_capacity(FLOOD);
    for i in 0..FLOOD {
        // A server that accepts (and refuses past its cap) completes each connection at once; one that cannot
        // accept any more leaves them in its listen queue until it is full, and then they hang.
        match tokio::time::timeout(CONNECT_MAX, TcpStream::connect(&http)).await {
            Ok(Ok(s)) => held.push(s),
            Ok(Err(e)) => panic!("the flood's connection {i} failed ({e}): raise this test's own descriptor limit"),
            Err(_) => panic!("the standalone stopped accepting after {i} connections of the flood"),
        }
    }
    eprintln!("flood: {FLOOD} connections opened in {:?}", flood_started.elapsed());
    let (hold_started, mut checks) = (Instant::now(), 0);
    while hold_started.elapsed() < FLOOD_HOLD {
        let asked = Instant::now();
        let (code, body) = http_get(&http, "/healthz").await.unwrap_or_else(|e| panic!("a refusal, not {e}"));
        assert_eq!(code, 503, "the cap must be full during the flood: {body}");
        assert!(asked.elapsed() < Duration::from_secs(1), "the 503 took {:?}", asked.elapsed());
        let l: ExecutorListView = query(&master, &["cluster", "executors"]).await.unwrap_or_else(|e| {
            panic!("the gRPC API stopped answering {:?} into the flood: {e}", hold_started.elapsed())
        });
        assert_eq!(ids(&l), ids(&before), "the executors must keep their ids");
        assert!(
            l.executors.iter().all(|e| e.status == "online"),
            "{:?} into the flood: {l:?}",
            flood_started.elapsed()
        );
        checks += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("flood held {:?}: {checks} checks, each a 503 at once and both executors online", FLOOD_HOLD);

    let done = loop {
        match query::<JobView>(&master, &["job", "get", "flooded"]).await {
            Ok(j) if j.state != "running" => break j,
            other => assert!(flood_started.elapsed() < FINISH_MAX, "the job never ended: {other:?}"),
        }
        tokio::time::sleep(POLL).await;
    };
    assert_eq!((done.state.as_str(), done.restarts, done.epoch), ("finished", 0, running.epoch), "{done:?}");
    drop(held);
    let closed = Instant::now();
    loop {
        match http_get(&http, "/healthz").await {
            Ok((200, _)) => break,
            other => assert!(closed.elapsed() < RECOVER_MAX, "the HTTP API never recovered: {other:?}"),
        }
        tokio::time::sleep(POLL).await;
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains("declared offline"), "{}", common::tail(&log, 40));
    drop(standalone);
    let _ = std::fs::remove_dir_all(&dir);
}
