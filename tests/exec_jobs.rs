//! The `exec` job type on a real `foreman standalone` (production build; issue 16, step 1): commands run as child
//! processes with foreman's variables, exit codes decide, and no process outlives its worker: not after a cancel,
//! not after a timeout, not after the whole standalone is SIGKILLed (its commands' children included).
//!
//! Each command carries a marker of its own in its arguments, so the test finds its processes with `pgrep -f`
//! and nothing else's. No etcd is needed.
#![cfg(not(madsim))]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use common::{JobView, POLL};

/// How long a standalone may take to serve, and a job to end.
const START_MAX: Duration = Duration::from_secs(20);
const END_MAX: Duration = Duration::from_secs(60);
/// How long processes may take to be gone after what should end them (a SIGKILL is at once; a cancel goes through
/// the leader, the job master and the worker's graceful stop).
const GONE_MAX: Duration = Duration::from_secs(10);

fn scratch(label: &str) -> PathBuf {
    let dir = common::scratch_dir(&format!("exec-{label}"));
    std::fs::create_dir_all(dir.join("home")).expect("create the test HOME");
    dir
}

/// One standalone on free loopback ports, its `HOME` in its scratch directory (where its CLI finds it).
struct Standalone {
    child: Option<Child>,
    master: String,
    http: String,
    dir: PathBuf,
}

impl Standalone {
    async fn start(dir: &Path) -> Standalone {
        let ports = common::StandalonePorts::new();
        let master = format!("127.0.0.1:{}", ports.master);
        let log = std::fs::File::create(dir.join("standalone.log")).expect("create the log");
        let child = Command::new(env!("CARGO_BIN_EXE_foreman"))
            .args(["standalone", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--addr", &master, "--http-addr", &format!("127.0.0.1:{}", ports.http)])
            .args(["--executor-port", &ports.executors.to_string()])
            .args(["--collect-interval", "1s"])
            .env("HOME", dir.join("home"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start foreman standalone");
        let http = format!("127.0.0.1:{}", ports.http);
        let s = Standalone { child: Some(child), master, http, dir: dir.to_owned() };
        let started = Instant::now();
        loop {
            if s.cli(&["cluster", "executors"]).await.stdout.matches("online").count() == 2 {
                return s;
            }
            assert!(started.elapsed() < START_MAX, "no standalone:\n{}", common::tail(&dir.join("standalone.log"), 30));
            tokio::time::sleep(POLL).await;
        }
    }

    async fn cli(&self, args: &[&str]) -> common::Run {
        let mut all = args.to_vec();
        all.extend(["--master", &self.master, "--timeout", "5s"]);
        common::foreman_in(Some(&self.dir.join("home")), &all).await
    }

    async fn job(&self, id: &str) -> JobView {
        let run = self.cli(&["job", "get", id, "--output", "json"]).await;
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("job get {id}: {e}: {run:?}"))
    }

    async fn create(&self, id: &str, config: &serde_json::Value) {
        let config = config.to_string();
        let run = self.cli(&["job", "create", "--id", id, "--type", "exec", "--config", &config]).await;
        assert_eq!(run.code, Some(0), "{run:?}");
    }

    /// Waits until `id` is in `state`.
    async fn until(&self, id: &str, state: &str) -> JobView {
        let started = Instant::now();
        loop {
            let job = self.job(id).await;
            if job.state == state {
                return job;
            }
            assert!(started.elapsed() < END_MAX, "{id} never {state}: {job:?}");
            tokio::time::sleep(POLL).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The processes whose command line holds `marker`: `pid command...` lines.
fn processes(marker: &str) -> Vec<String> {
    let out = Command::new("pgrep").args(["-af", marker]).output().expect("run pgrep (Debian: procps)");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.contains("pgrep")).map(str::to_owned).collect()
}

/// Waits until at least `n` processes carry `marker`.
async fn await_processes(marker: &str, n: usize) -> Vec<String> {
    let started = Instant::now();
    loop {
        let found = processes(marker);
        if found.len() >= n {
            return found;
        }
        assert!(started.elapsed() < END_MAX, "{marker}: {} processes, not {n}: {found:?}", found.len());
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until no process carries `marker`; how long that took.
async fn await_gone(marker: &str) -> Duration {
    let started = Instant::now();
    loop {
        let found = processes(marker);
        if found.is_empty() {
            return started.elapsed();
        }
        assert!(started.elapsed() < GONE_MAX, "{marker} still running: {found:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_jobs_run_commands_and_leave_no_process_behind() {
    let dir = scratch("jobs");
    let mut node = Standalone::start(&dir).await;
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let greet = out.join("greetings");

    // Three greetings, each worker with its index and epoch, and progress lines; then done.
    let command = format!(
        "echo hello from $FOREMAN_WORKER epoch $FOREMAN_EPOCH in $PWD >> {}; echo FOREMAN_PROGRESS 1/2; echo \
         greeting from $FOREMAN_WORKER; echo complaint from $FOREMAN_WORKER >&2; echo FOREMAN_PROGRESS 2/2",
        greet.display()
    );
    node.create("hello", &serde_json::json!({"command": ["sh", "-c", command], "workers": 3})).await;
    let wait = node.cli(&["job", "wait", "hello", "--wait-timeout", "60s"]).await;
    assert_eq!(wait.code, Some(0), "{wait:?}");
    let text = std::fs::read_to_string(&greet).expect("the greetings");
    let mut workers: Vec<&str> = text.lines().map(|l| l.split(' ').nth(2).unwrap_or("?")).collect();
    workers.sort_unstable();
    assert_eq!(workers, ["0", "1", "2"], "{text}");
    for line in text.lines() {
        let epoch: u64 = line.split(' ').nth(4).and_then(|e| e.parse().ok()).unwrap_or(0);
        assert!(epoch > 0, "{line}");
        assert!(line.contains("/scratch/hello/w"), "its scratch directory is its working directory: {line}");
    }
    eprintln!("greetings:\n{text}");
    // Where each worker's scratch directory lives, as `job get` and `cluster executors` show it.
    let job = node.job("hello").await;
    let places: Vec<String> = job.resources.iter().map(|r| format!("{}/{}", r.worker, r.name)).collect();
    assert_eq!(places, ["w0/scratch", "w1/scratch", "w2/scratch"], "{job:?}");
    assert!(job.resources.iter().all(|r| r.executor_name.is_some()), "{job:?}");
    let listed = node.cli(&["cluster", "executors", "--output", "json"]).await;
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).expect("JSON");
    let held: u64 = listed["executors"].as_array().into_iter().flatten().filter_map(|e| e["resources"].as_u64()).sum();
    assert_eq!(held, 3, "{listed}");

    // What they printed, through the masters from the executors that hold it: each worker under its header.
    let logs = node.cli(&["job", "logs", "hello"]).await;
    assert_eq!(logs.code, Some(0), "{logs:?}");
    for w in 0..3 {
        assert!(logs.stdout.contains(&format!("==> w{w} (incarnation ")), "{logs:?}");
        assert!(logs.stdout.contains(&format!("\ngreeting from {w}\n")), "{logs:?}");
    }
    assert_eq!(logs.stdout.matches("exited with code 0) <==").count(), 3, "{logs:?}");
    assert!(!logs.stdout.contains("complaint"), "stderr is the other stream: {logs:?}");
    let err = node.cli(&["job", "logs", "hello", "--stderr", "--worker", "w1"]).await;
    assert_eq!((err.code, err.stdout.as_str()), (Some(0), "complaint from 1\n"), "{err:?}");
    eprintln!("job logs:\n{}", logs.stdout);
    // The same through the HTTP API, with the standalone's admin token.
    let token = dir.join("data").join("security").join("admin.token");
    let bearer = format!("Authorization: Bearer {}", std::fs::read_to_string(&token).expect("the token").trim());
    let (code, body) = common::http_get_with(&node.http, "/api/v1/jobs/hello/logs?worker=w2&stream=stderr", &[&bearer])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(view["sources"].as_array().map(Vec::len), Some(3), "{body}");
    assert_eq!(view["chunk"]["text"], "complaint from 2\n", "{body}");
    assert_eq!(
        (view["chunk"]["next_offset"].as_u64(), view["chunk"]["total"].as_u64()),
        (Some(17), Some(17)),
        "{body}"
    );
    let (code, body) = common::http_get_with(&node.http, "/api/v1/jobs/hello/logs?stream=both", &[&bearer])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(code == 400 && body.contains("stdout or stderr"), "{code} {body}");
    // Kept in each executor's own directory, in the standalone's, owner-only.
    let executors = dir.join("data").join("executors");
    let held: Vec<PathBuf> = std::fs::read_dir(&executors)
        .expect("the executors' directories")
        .flatten()
        .map(|e| e.path().join("logs").join("hello"))
        .filter(|p| p.is_dir())
        .collect();
    assert!(!held.is_empty(), "no logs under {}", executors.display());
    {
        use std::os::unix::fs::PermissionsExt;
        for d in std::fs::read_dir(&executors).unwrap().flatten() {
            let mode = d.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.path().display());
        }
    }
    // A program that cannot be found: the shim's word on it is in the worker's stderr.
    node.create("missing", &serde_json::json!({"command": ["no-such-program-for-foreman"], "max_restarts": 0})).await;
    let wait = node.cli(&["job", "wait", "missing", "--wait-timeout", "60s"]).await;
    assert_eq!(wait.code, Some(3), "{wait:?}");
    let err = node.cli(&["job", "logs", "missing", "--stderr"]).await;
    assert!(err.stdout.contains("cannot run no-such-program-for-foreman"), "{err:?}");
    assert!(node.cli(&["job", "logs", "missing", "--worker", ".."]).await.code != Some(0), "a bad worker name");

    // A deleted job's logs and scratch directories leave every executor (each looks every second here).
    let kept = |job: &str| -> Vec<PathBuf> {
        std::fs::read_dir(&executors)
            .unwrap()
            .flatten()
            .flat_map(|e| [e.path().join("logs").join(job), e.path().join("scratch").join(job)])
            .filter(|p| p.exists())
            .collect()
    };
    assert!(!kept("hello").is_empty(), "hello's data before the delete");
    let run = node.cli(&["job", "delete", "hello"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let started = Instant::now();
    while !kept("hello").is_empty() {
        assert!(started.elapsed() < END_MAX, "still kept after the delete: {:?}", kept("hello"));
        tokio::time::sleep(POLL).await;
    }
    eprintln!(
        "delete: hello's logs and scratch directories gone from every executor in {} ms",
        started.elapsed().as_millis()
    );
    assert!(!kept("missing").is_empty(), "another job's data stays");

    // A command that fails: started again max_restarts times, then the job fails saying how it exited.
    node.create("fails", &serde_json::json!({"command": ["sh", "-c", "exit 3"], "max_restarts": 1})).await;
    let wait = node.cli(&["job", "wait", "fails", "--wait-timeout", "60s"]).await;
    assert_eq!(wait.code, Some(3), "{wait:?}");
    assert!(wait.stderr.contains("`sh` exited with code 3") && wait.stderr.contains("2 times in a row"), "{wait:?}");

    // The epoch grows with every incarnation: the first run fails, the second sees a higher one and succeeds.
    let epochs = out.join("epochs");
    let flaky = format!("echo $FOREMAN_EPOCH >> {e}; [ $(wc -l < {e}) -ge 2 ]", e = epochs.display());
    node.create("flaky", &serde_json::json!({"command": ["sh", "-c", flaky]})).await;
    node.until("flaky", "finished").await;
    let seen: Vec<u64> =
        std::fs::read_to_string(&epochs).unwrap().lines().map(|l| l.trim().parse().expect("an epoch")).collect();
    assert!(seen.len() == 2 && seen[1] > seen[0], "the epochs of two incarnations: {seen:?}");

    // A cancel stops the command and its children (a background child of the shell included).
    let marker = format!("cancel-marker-{}", std::process::id());
    // Each worker: its shim, its shell, and the shell's background child, all carrying the marker.
    let long = format!("sh -c 'sleep 600; : {marker}' & sleep 600; : {marker}");
    node.create("canceled", &serde_json::json!({"command": ["sh", "-c", long], "workers": 2, "stop_grace": "1s"}))
        .await;
    node.until("canceled", "running").await;
    let running = await_processes(&marker, 6).await;
    eprintln!("before the cancel: {running:#?}");
    let run = node.cli(&["job", "cancel", "canceled"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let took = await_gone(&marker).await;
    eprintln!("cancel: every process gone {} ms after the cancel was acknowledged", took.as_millis());
    node.until("canceled", "canceled").await;

    // A timeout stops it, and fails the job saying so.
    let marker = format!("timeout-marker-{}", std::process::id());
    node.create(
        "timed",
        &serde_json::json!({"command": ["sh", "-c", format!("sleep 600; : {marker}")], "timeout": "1s",
            "max_restarts": 0, "stop_grace": "500ms"}),
    )
    .await;
    let wait = node.cli(&["job", "wait", "timed", "--wait-timeout", "60s"]).await;
    assert_eq!(wait.code, Some(3), "{wait:?}");
    assert!(wait.stderr.contains("ran past its timeout of 1s"), "{wait:?}");
    await_gone(&marker).await;

    // SIGKILL of the whole standalone: every command dies with it (its shim hears its parent die).
    let marker = format!("sigkill-marker-{}", std::process::id());
    let long = format!("sh -c 'sleep 600; : {marker}' & sleep 600; : {marker}");
    node.create("orphaned", &serde_json::json!({"command": ["sh", "-c", long], "workers": 2})).await;
    let running = await_processes(&marker, 6).await;
    eprintln!("before the SIGKILL: {running:#?}");
    node.kill();
    let took = await_gone(&marker).await;
    eprintln!("SIGKILL: every process gone {} ms after the standalone's", took.as_millis());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rounds and workers per job of [`exec_figures`].
const FIGURE_ROUNDS: usize = 5;
const FIGURE_WORKERS: usize = 8;

/// The `q`-quantile of `d` (nearest rank), in milliseconds.
fn quantile_ms(d: &[Duration], q: f64) -> u128 {
    let mut d = d.to_vec();
    d.sort();
    let i = ((d.len() as f64 * q).ceil() as usize).clamp(1, d.len()) - 1;
    d[i].as_millis()
}

/// What an exec job costs in time on a fresh standalone (two executors of 16 slots; the CLI is the test build's):
/// figures, never asserts. In each of [`FIGURE_ROUNDS`] rounds, a job of [`FIGURE_WORKERS`] workers whose command
/// marks that it started, then sleeps: from just before `job create` to every worker's command started (a file each,
/// looked for every 2 ms), and from the cancel's answer to every process of the job gone (`pgrep`); then a job of one
/// worker running `true`, `job create --wait` from its start to its answer. Printed with `--nocapture`; the README's
/// "Measured" section has a run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_figures() {
    let dir = scratch("figures");
    let node = Standalone::start(&dir).await;
    let (mut started, mut gone, mut trivial) = (vec![], vec![], vec![]);
    for round in 0..FIGURE_ROUNDS {
        let marks = dir.join(format!("started-{round}"));
        std::fs::create_dir_all(&marks).expect("create the marks directory");
        let marker = format!("figure-marker-{}-{round}", std::process::id());
        let command = format!("touch {}/$FOREMAN_WORKER; sleep 600; : {marker}", marks.display());
        let id = format!("fig{round}");
        let config =
            serde_json::json!({"command": ["sh", "-c", command], "workers": FIGURE_WORKERS, "stop_grace": "1s"});
        let asked = Instant::now();
        node.create(&id, &config).await;
        loop {
            let n = std::fs::read_dir(&marks).map(|d| d.count()).unwrap_or(0);
            if n == FIGURE_WORKERS {
                break;
            }
            assert!(asked.elapsed() < END_MAX, "{id}: {n} of {FIGURE_WORKERS} workers started");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        started.push(asked.elapsed());
        let run = node.cli(&["job", "cancel", &id]).await;
        assert_eq!(run.code, Some(0), "{run:?}");
        gone.push(await_gone(&marker).await);
        node.until(&id, "canceled").await;

        let id = format!("true{round}");
        let config = serde_json::json!({"command": ["true"]}).to_string();
        let asked = Instant::now();
        let run = node.cli(&["job", "create", "--id", &id, "--type", "exec", "--config", &config, "--wait"]).await;
        assert_eq!(run.code, Some(0), "{run:?}");
        trivial.push(asked.elapsed());
    }
    let show = |what: &str, d: &[Duration]| {
        eprintln!(
            "exec figures: {what}: p50 {} ms, max {} ms ({} rounds)",
            quantile_ms(d, 0.5),
            quantile_ms(d, 1.0),
            d.len()
        );
    };
    show(&format!("create to all {FIGURE_WORKERS} commands started"), &started);
    show(&format!("cancel answered to all {FIGURE_WORKERS} workers' processes gone"), &gone);
    show("`job create --wait` of one `true`, to its answer", &trivial);
    let _ = std::fs::remove_dir_all(&dir);
}
