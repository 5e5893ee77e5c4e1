//! `foreman standalone` as a newcomer meets it (production build; issue 6, item 1): the README's first command,
//! then `foreman job create --type fake ... --wait` against it. Then what an operator relies on: SIGTERM stops it
//! cleanly (executors drain and deregister, the master gives its lease back, exit code 0), a restart on the same
//! data directory still knows every job and resumes the interrupted one at once, and a second process on that
//! directory is refused with a message that says what to do. An earlier foreman's data directory (its JSON log) is
//! imported, its jobs resuming; a damaged data directory is refused, naming the file and what to do. Jobs shorter
//! than a heartbeat give their slots back, and a job no executor can take says why.
//!
//! No etcd is needed: standalone runs on its embedded metastore.
#![cfg(not(madsim))]

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use common::{ExecutorListView, JobListView, JobView, LeaderView, StandalonePorts, POLL};

/// How long a standalone process may take to print its banner and serve.
const START_MAX: Duration = Duration::from_secs(20);
/// How long it may take to exit after SIGTERM (its executors' drain is bounded by their drain timeout, 10 s).
const EXIT_MAX: Duration = Duration::from_secs(15);
/// A job interrupted by a clean stop resumes at once after the restart: no executor TTL, no worker TTL to wait
/// out (each is 10 s). This bound leaves room for a slow machine.
const RESUME_MAX: Duration = Duration::from_secs(5);
/// The one-step jobs of the slot test. Each takes two slots (its job master's and its worker's): if tasks that
/// ended held theirs for ever, the two executors' 32 slots would be gone after about 16 jobs and the rest would
/// never finish.
const ONE_STEP_JOBS: usize = 25;
/// A fake job of one worker and one step: it starts and ends between two heartbeats of its executor.
const ONE_STEP: &str = r#"{"workers":1,"target":1,"tick_ms":1}"#;
/// How long the one-step jobs may take to finish (about 1 s here).
const ONE_STEP_FINISH_MAX: Duration = Duration::from_secs(60);
/// How long the executors may take to report the last ended task after every job finished: a few executor
/// heartbeats (500 ms), and well inside `placement.reservation-ttl` (10 s), so reservations that only expired
/// would not pass.
const SLOTS_BACK_MAX: Duration = Duration::from_secs(5);
/// How long the leader may take to say why a job waits: a few passes of its loop (500 ms).
const WAITING_MAX: Duration = Duration::from_secs(5);

fn home() -> PathBuf {
    common::test_home("standalone")
}

/// `foreman <args>` as the user who started the standalones (its `HOME`, [`home`]).
async fn foreman(args: &[&str]) -> common::Run {
    common::foreman_in(Some(&home()), args).await
}

/// `foreman <args> --master <master> --output json`, parsed, as the user who started the standalones.
async fn query<T: serde::de::DeserializeOwned>(master: &str, args: &[&str]) -> Result<T, String> {
    common::query_in(Some(&home()), master, args).await
}

/// One `foreman standalone` process on free loopback ports.
struct Standalone {
    child: Option<Child>,
    master: String,
    log: PathBuf,
}

impl Standalone {
    /// Starts `foreman standalone` on `dir` and waits for its banner; the banner's text.
    fn start(dir: &Path, ports: StandalonePorts, log: &Path) -> (Standalone, String) {
        Standalone::start_with(dir, ports, log, &[])
    }

    /// [`Standalone::start`] with more flags.
    fn start_with(dir: &Path, ports: StandalonePorts, log: &Path, extra: &[&str]) -> (Standalone, String) {
        let master = format!("127.0.0.1:{}", ports.master);
        let mut child = Command::new(env!("CARGO_BIN_EXE_foreman"))
            .args(["standalone", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--addr", &master, "--http-addr", &format!("127.0.0.1:{}", ports.http)])
            .args(["--executor-port", &ports.executors.to_string()])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env("HOME", home())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::options().create(true).append(true).open(log).expect("open the log"))
            .spawn()
            .expect("start foreman standalone");
        // The banner is printed once every server was started: read its lines (a blocking read, bounded by the
        // process: it ends when the process does).
        let stdout = child.stdout.take().expect("piped stdout");
        let mut banner = String::new();
        for line in BufReader::new(stdout).lines().take(8) {
            let line = line.unwrap_or_default();
            banner.push_str(&line);
            banner.push('\n');
            if line.starts_with("stop:") {
                break;
            }
        }
        (Standalone { child: Some(child), master, log: log.to_owned() }, banner)
    }

    /// SIGTERM, then wait for the exit: the exit code and how long it took.
    async fn terminate(&mut self) -> (Option<i32>, Duration) {
        let mut child = self.child.take().expect("running");
        let sent = Instant::now();
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
        assert!(status.success());
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return (status.code(), sent.elapsed());
            }
            if sent.elapsed() > EXIT_MAX {
                let _ = child.kill();
                panic!("standalone did not exit within {EXIT_MAX:?} of SIGTERM:\n{}", common::tail(&self.log, 40));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("---- standalone log ----\n{}", common::tail(&self.log, 60));
            }
        }
    }
}

fn scratch(label: &str) -> PathBuf {
    common::scratch_dir(&format!("standalone-{label}"))
}

/// Waits until the standalone master leads and serves (the banner comes as soon as the servers were started).
async fn await_ready(master: &str) {
    let started = Instant::now();
    loop {
        match query::<LeaderView>(master, &["cluster", "leader"]).await {
            Ok(l) if l.leader_epoch > 0 => return,
            Ok(_) => {}
            Err(e) => assert!(started.elapsed() < START_MAX, "standalone at {master} never served: {e}"),
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn job(master: &str, id: &str) -> Result<JobView, String> {
    query(master, &["job", "get", id]).await
}

/// What `job get --output json` says of a job that waits to be placed.
#[derive(Debug, serde::Deserialize)]
struct WaitingView {
    state: String,
    waiting: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_runs_a_job_stops_cleanly_and_resumes_after_a_restart() {
    let dir = scratch("restart");
    let log = dir.join("standalone.log");
    let ports = StandalonePorts::new();
    let (mut first, banner) = Standalone::start(&dir, ports, &log);
    eprint!("{banner}");
    assert!(banner.contains(&format!("a master at {} and 2 executors", first.master)), "{banner}");
    assert!(banner.contains("foreman job create --type fake"), "{banner}");
    await_ready(&first.master).await;

    // The README's second step: a fake job with --wait finishes, exit code 0, progress on stderr.
    let wait = foreman(&[
        "job",
        "create",
        "--id",
        "hello",
        "--type",
        "fake",
        "--config",
        r#"{"workers":4,"target":200,"tick_ms":10}"#,
        "--wait",
        "--master",
        &first.master,
    ])
    .await;
    assert_eq!(wait.code, Some(0), "job create --wait: {wait:?}");
    assert!(wait.stdout.contains("finished"), "{wait:?}");
    assert!(wait.stderr.contains("FINISHED 800/800 steps"), "{wait:?}");

    // A longer job, interrupted by SIGTERM once it has made progress.
    let long = r#"{"workers":4,"target":800,"tick_ms":10}"#;
    let created =
        foreman(&["job", "create", "--id", "long", "--type", "fake", "--config", long, "--master", &first.master])
            .await;
    assert_eq!(created.code, Some(0), "{created:?}");
    let started = Instant::now();
    loop {
        if let Ok(j) = job(&first.master, "long").await {
            if j.state == "running" {
                break;
            }
        }
        assert!(started.elapsed() < START_MAX, "long never ran");
        tokio::time::sleep(POLL).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (code, took) = first.terminate().await;
    assert_eq!(code, Some(0), "exit code after SIGTERM");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    for said in ["SIGTERM", "drained: every task stopped", "deregistered", "gave the election lease back"] {
        assert!(text.contains(said), "the log never says {said:?}:\n{}", common::tail(&log, 40));
    }
    eprintln!("SIGTERM: standalone exited 0 after {} ms", took.as_millis());

    // Restart on the same data directory: both jobs are still there, and the interrupted one resumes at once.
    let (second, _) = Standalone::start(&dir, ports, &log);
    let restarted = Instant::now();
    await_ready(&second.master).await;
    let listed: JobListView = loop {
        match query(&second.master, &["job", "list"]).await {
            Ok(l) => break l,
            Err(e) => assert!(restarted.elapsed() < START_MAX, "no job list after the restart: {e}"),
        }
        tokio::time::sleep(POLL).await;
    };
    let ids: Vec<&str> = listed.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["hello", "long"], "{listed:?}");
    assert_eq!(listed.jobs[0].state, "finished");
    let resumed = loop {
        if let Ok(j) = job(&second.master, "long").await {
            if j.state == "running" && j.executor_id.is_some() && j.epoch > 1 {
                break restarted.elapsed();
            }
            assert!(j.state != "failed", "{j:?}");
        }
        assert!(restarted.elapsed() < RESUME_MAX * 3, "long never resumed");
        tokio::time::sleep(POLL).await;
    };
    let wait = foreman(&["job", "wait", "long", "--master", &second.master]).await;
    assert_eq!(wait.code, Some(0), "{wait:?}");
    let done = job(&second.master, "long").await.expect("get long");
    eprintln!("RESTART: long resumed {} ms after the restart and finished ({done:?})", resumed.as_millis());
    assert_eq!(done.state, "finished");
    assert!(resumed <= RESUME_MAX, "the interrupted job resumed {resumed:?} after the restart");
    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_standalone_on_the_same_data_directory_is_refused() {
    let dir = scratch("locked");
    let log = dir.join("first.log");
    let (first, _) = Standalone::start(&dir, StandalonePorts::new(), &log);
    await_ready(&first.master).await;
    let other = StandalonePorts::new();
    let run = foreman(&[
        "standalone",
        "--data-dir",
        dir.join("data").to_str().expect("a UTF-8 path"),
        "--addr",
        &format!("127.0.0.1:{}", other.master),
        "--http-addr",
        &format!("127.0.0.1:{}", other.http),
        "--executor-port",
        &other.executors.to_string(),
    ])
    .await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("in use by another foreman process"), "{run:?}");
    assert!(run.stderr.contains("--data-dir"), "{run:?}");
    // The first one still serves.
    let listed: Result<JobListView, String> = query(&first.master, &["job", "list"]).await;
    assert!(listed.is_ok(), "{listed:?}");
    drop(first);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The data directory of an earlier foreman (`tests/fixtures/legacy-data`: its JSON log, written by
/// `foreman standalone` before the store moved to redb, with a finished job and one stopped by SIGTERM while running).
fn legacy_data_dir(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("create the data directory");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy-data/log.jsonl");
    std::fs::copy(fixture, data.join("log.jsonl")).expect("copy the fixture");
    data
}

/// `foreman standalone` on `dir`'s data directory, expected to refuse at once: its exit code and stderr.
async fn refused_start(dir: &Path) -> common::Run {
    let ports = StandalonePorts::new();
    foreman(&[
        "standalone",
        "--data-dir",
        dir.join("data").to_str().expect("a UTF-8 path"),
        "--addr",
        &format!("127.0.0.1:{}", ports.master),
        "--http-addr",
        "",
        "--executor-port",
        &ports.executors.to_string(),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_foremans_data_directory_is_imported_and_its_jobs_resume() {
    let dir = scratch("legacy");
    let data = legacy_data_dir(&dir);
    let log = dir.join("standalone.log");
    let (node, _) = Standalone::start(&dir, StandalonePorts::new(), &log);
    await_ready(&node.master).await;
    let listed: JobListView = query(&node.master, &["job", "list"]).await.expect("job list");
    let ids: Vec<&str> = listed.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["before-upgrade", "interrupted"], "{listed:?}");
    assert_eq!(listed.jobs[0].state, "finished");
    let wait = foreman(&["job", "wait", "interrupted", "--master", &node.master, "--wait-timeout", "30s"]).await;
    assert_eq!(wait.code, Some(0), "the interrupted job did not finish after the import: {wait:?}");
    assert!(data.join("foreman.redb").exists() && data.join("log.jsonl.imported").exists());
    assert!(!data.join("log.jsonl").exists(), "the old log was left to import again");
    assert!(std::fs::read_to_string(&log).unwrap_or_default().contains("importing the files of an earlier foreman"));
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_data_directory_is_refused_saying_which_file_and_what_to_do() {
    let dir = scratch("damaged");
    let data = legacy_data_dir(&dir);
    let log = dir.join("standalone.log");
    let (mut node, _) = Standalone::start(&dir, StandalonePorts::new(), &log);
    await_ready(&node.master).await;
    let (code, _) = node.terminate().await;
    assert_eq!(code, Some(0));
    // The clean stop recorded every transaction in the manifest: a database one transaction short of it (here, the
    // manifest one ahead) is an older copy.
    let manifest_path = data.join("MANIFEST");
    let manifest = std::fs::read(&manifest_path).expect("a manifest after a clean stop");
    let mut ahead: serde_json::Value = serde_json::from_slice(&manifest).expect("the manifest is JSON");
    ahead["seq"] = (ahead["seq"].as_u64().expect("a seq") + 1).into();
    std::fs::write(&manifest_path, ahead.to_string()).expect("write the manifest");
    let run = refused_start(&dir).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("replaced by an older copy, without the last 1 transactions"), "{}", run.stderr);
    std::fs::write(&manifest_path, &manifest).expect("restore the manifest");
    // One bit of a job's record, in the database's committed pages.
    let db = data.join("foreman.redb");
    let mut bytes = std::fs::read(&db).expect("read the database");
    let at = bytes.windows(14).position(|w| w == b"before-upgrade").expect("the job's id is in the database");
    bytes[at + 7] ^= 0x04;
    std::fs::write(&db, &bytes).expect("damage the database");
    let run = refused_start(&dir).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    for says in [db.display().to_string().as_str(), "fails redb's checks", "restore the data directory from a backup"] {
        assert!(run.stderr.contains(says), "does not say {says:?}: {}", run.stderr);
    }
    // Emptied, it is refused too: never a fresh store in its place.
    std::fs::write(&db, b"").expect("empty the database");
    let run = refused_start(&dir).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("the database file is empty"), "{}", run.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_step_jobs_give_their_slots_back_and_a_job_no_executor_can_take_says_why() {
    let dir = scratch("slots");
    let log = dir.join("standalone.log");
    let (node, _) = Standalone::start(&dir, StandalonePorts::new(), &log);
    await_ready(&node.master).await;
    let master = node.master.as_str();

    // Each task of a one-step job starts and ends between two heartbeats of its executor: only the executor's
    // report of the ended incarnation gives its slots back.
    let started = Instant::now();
    let mut ids = vec![];
    for _ in 0..ONE_STEP_JOBS {
        let run =
            foreman(&["job", "create", "--type", "fake", "--config", ONE_STEP, "--master", master, "--output", "json"])
                .await;
        assert_eq!(run.code, Some(0), "job create: {run:?}");
        let created: JobView = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"));
        ids.push(created.id);
    }
    let created_in = started.elapsed();
    let finished_in = loop {
        let last = match query::<JobListView>(master, &["job", "list", "--all"]).await {
            Ok(listed) => {
                let finished = listed.jobs.iter().filter(|j| ids.contains(&j.id) && j.state == "finished").count();
                if finished == ids.len() {
                    break started.elapsed();
                }
                let other: Vec<String> = listed
                    .jobs
                    .iter()
                    .filter(|j| j.state != "finished")
                    .map(|j| format!("{} {}", j.id, j.state))
                    .collect();
                format!("{finished} of {} finished; not finished: {other:?}", ids.len())
            }
            Err(e) => e,
        };
        assert!(
            started.elapsed() < ONE_STEP_FINISH_MAX,
            "the one-step jobs did not all finish within {ONE_STEP_FINISH_MAX:?}: {last}"
        );
        tokio::time::sleep(POLL).await;
    };
    let all_finished = Instant::now();
    let slots_back_in = loop {
        let last = match query::<ExecutorListView>(master, &["cluster", "executors"]).await {
            Ok(v) if v.executors.len() == 2 && v.executors.iter().all(|e| e.used == 0) => break all_finished.elapsed(),
            Ok(v) => format!("{:?}", v.executors),
            Err(e) => e,
        };
        assert!(
            all_finished.elapsed() < SLOTS_BACK_MAX,
            "every job finished, but the executors' slots were not all free {SLOTS_BACK_MAX:?} later: {last}"
        );
        tokio::time::sleep(POLL).await;
    };
    eprintln!(
        "SLOTS: {ONE_STEP_JOBS} one-step jobs created in {} ms, all finished after {} ms, every slot free {} ms later",
        created_in.as_millis(),
        finished_in.as_millis(),
        slots_back_in.as_millis()
    );

    // A job larger than any executor stays created, and says why: in its record and to a client waiting for it.
    let run = foreman(&[
        "job", "create", "--id", "too-big", "--type", "fake", "--config", ONE_STEP, "--cost", "17", "--master", master,
    ])
    .await;
    assert_eq!(run.code, Some(0), "job create --cost 17: {run:?}");
    let asked = Instant::now();
    loop {
        let last = match query::<WaitingView>(master, &["job", "get", "too-big"]).await {
            Ok(v)
                if v.state == "created"
                    && v.waiting.as_deref().is_some_and(|w| w.starts_with("no executor has 17 slots")) =>
            {
                break
            }
            Ok(v) => format!("{v:?}"),
            Err(e) => e,
        };
        assert!(asked.elapsed() < WAITING_MAX, "too-big never said it waits for 17 slots: {last}");
        tokio::time::sleep(POLL).await;
    }
    let wait = foreman(&["job", "wait", "too-big", "--wait-timeout", "2s", "--master", master]).await;
    assert_eq!(wait.code, Some(5), "job wait --wait-timeout 2s on a job that cannot be placed: {wait:?}");
    assert!(wait.stderr.contains("waiting: no executor has 17 slots"), "{wait:?}");
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bad_standalone_flags_say_what_to_fix_and_start_nothing() {
    let cases: &[(&[&str], &str)] = &[
        (&["standalone", "--executors", "0"], "--executors 0: it must be from 1 to 64"),
        (&["standalone", "--addr", "localhost:1"], "expected host:port with an IP address"),
        (&["standalone", "--capacity", "0"], "--capacity 0"),
    ];
    for (args, says) in cases {
        let run = foreman(args).await;
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(run.stderr.contains(says), "{args:?}: {:?} does not say {says:?}", run.stderr);
    }
}

/// The mode bits of `path` that say who may read it.
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_is_secure_with_no_set_up_and_refuses_strangers() {
    let dir = scratch("secure");
    let log = dir.join("standalone.log");
    let ports = StandalonePorts::new();
    let (mut node, banner) = Standalone::start(&dir, ports, &log);
    eprint!("{banner}");
    assert!(banner.contains("security: TLS, and every call needs a token"), "{banner}");
    assert!(banner.contains("this user's CLI finds them"), "{banner}");
    await_ready(&node.master).await;
    let master = node.master.clone();

    // Its secrets: owner-only, and the CLI of the same user was told where they are.
    let security = dir.join("data/security");
    assert_eq!(mode_of(&dir.join("data")), 0o700, "the data directory holds job configurations");
    assert_eq!(mode_of(&security), 0o700);
    for f in ["ca.pem", "ca-key.pem", "tokens", "admin.token"] {
        assert_eq!(mode_of(&security.join(f)), 0o600, "{f}");
    }
    let profile = home().join(".config/foreman/standalone").join(format!("127.0.0.1_{}.toml", ports.master));
    assert_eq!(mode_of(&profile), 0o600, "{}", profile.display());

    // The same user's CLI, no flag but the address: a job runs (await_ready already read the leader so).
    let run = foreman(&[
        "job", "create", "--id", "secure", "--type", "fake", "--config", ONE_STEP, "--wait", "--master", &master,
    ])
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");

    // Another user (another HOME, no profile): plain text to a TLS port gets nothing, and says what to give.
    let stranger = dir.join("stranger");
    std::fs::create_dir_all(&stranger).expect("create the stranger's HOME");
    let as_stranger = |extra: &[&str]| {
        let mut args = vec!["job", "list", "--master", master.as_str(), "--timeout", "3s"];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let stranger = stranger.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            common::foreman_in(Some(&stranger), &args).await
        }
    };
    let run = as_stranger(&[]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("give the CLI --tls-ca"), "{}", run.stderr);
    // With the CA but no token: refused, as anyone would be on loopback.
    let ca = security.join("ca.pem").display().to_string();
    let run = as_stranger(&["--tls-ca", &ca]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("UNAUTHENTICATED"), "{}", run.stderr);
    // With a token that is not the cluster's: refused.
    let forged = stranger.join("token");
    std::fs::write(&forged, format!("foreman_{}\n", "0".repeat(64))).expect("write a forged token");
    std::fs::set_permissions(&forged, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let forged = forged.display().to_string();
    let run = as_stranger(&["--tls-ca", &ca, "--token-file", &forged]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("not known to this cluster"), "{}", run.stderr);
    // With the CA and the admin token, given as the banner says: served.
    let token = security.join("admin.token").display().to_string();
    let run = as_stranger(&["--tls-ca", &ca, "--token-file", &token]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("secure"), "{run:?}");

    // The HTTP API: a token or nothing.
    let http = format!("127.0.0.1:{}", ports.http);
    let (code, body) = common::http_get(&http, "/api/v1/jobs").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 401, "{body}");
    let bearer = format!("Authorization: Bearer {}", std::fs::read_to_string(&token).expect("the token").trim());
    let (code, body) = common::http_get_with(&http, "/api/v1/jobs", &[&bearer]).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"secure\""), "{body}");

    // A secret others may read is refused at the next start, saying what to run.
    let (code, _) = node.terminate().await;
    assert_eq!(code, Some(0));
    let admin = security.join("admin.token");
    std::fs::set_permissions(&admin, std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");
    let run = refused_start(&dir).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("chmod 600") && run.stderr.contains("admin.token"), "{}", run.stderr);
    std::fs::set_permissions(&admin, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");

    // The same data directory again: the same CA and token (the stranger's flags still work).
    let (node, _) = Standalone::start(&dir, ports, &log);
    await_ready(&node.master).await;
    let run = as_stranger(&["--tls-ca", &ca, "--token-file", &token]).await;
    assert_eq!(run.code, Some(0), "after a restart: {run:?}");
    drop(node);

    // --insecure, asked for: plain text, no token, and the CLI's profile is gone (a CLI trusting the CA could not
    // reach a plain-text port).
    let (node, banner) = Standalone::start_with(&dir, ports, &log, &["--insecure"]);
    assert!(banner.contains("security: none (--insecure)"), "{banner}");
    assert!(!profile.exists(), "the profile of the secure standalone is still there");
    await_ready(&node.master).await;
    let run = as_stranger(&[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let (code, body) = common::http_get(&http, "/api/v1/jobs").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 200, "{body}");
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
