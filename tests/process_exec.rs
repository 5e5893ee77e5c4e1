//! An exec worker's command dies with its executor and runs again elsewhere with a higher fencing token (production
//! build, real processes, a real etcd; issue 16, step 1).
//!
//! One master and two executors. An exec job of one worker runs a command that appends its `FOREMAN_EPOCH` to a
//! file, starts a child of its own, and waits for a release file. Once it runs, its executor is SIGKILLed: no
//! process of the command (its shim, its shell, the shell's child: each carries a marker) may survive it. The
//! worker must then run again on the other executor with a higher epoch, and once released the job finishes.
//!
//! With `scratch_required`, the same loss fails the job instead, and a restarted executor kills what its last life
//! left running.
//!
//! Needs an etcd: `scripts/with-etcd cargo test --test process_exec -- --ignored --nocapture`.
#![cfg(not(madsim))]

mod common;

use std::process::Command;
use std::time::Duration;

use tokio::time::Instant;

use common::{etcd_from_env, query, Cluster, JobView, NodeOptions, POLL};

/// How long the cluster may take to settle, the job to run, and to run again after its executor's SIGKILL (the
/// offline TTL, then placement and the new incarnation).
const SETTLE_MAX: Duration = Duration::from_secs(20);
const RERUN_MAX: Duration = Duration::from_secs(40);
/// How long the command's processes may take to be gone after its executor was SIGKILLed.
const GONE_MAX: Duration = Duration::from_secs(2);

fn processes(marker: &str) -> Vec<String> {
    let out = Command::new("pgrep").args(["-af", marker]).output().expect("run pgrep (Debian: procps)");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.contains("pgrep")).map(str::to_owned).collect()
}

fn epochs(path: &std::path::Path) -> Vec<u64> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// The cluster's node running the command whose shim `pgrep` printed as `shim` (the shim names its executor's
/// pid), and that pid.
fn executor_of(cluster: &Cluster, shim: &str) -> (usize, u32) {
    let pid: u32 = shim.split_whitespace().nth(3).and_then(|p| p.parse().ok()).expect("the executor's pid");
    let node = (0..cluster.nodes.len())
        .find(|&i| cluster.nodes[i].pid() == Some(pid))
        .expect("the executor running the command is one of the cluster's");
    (node, pid)
}

/// One master and two executors with short timings (so that a rerun comes within seconds), both online, and the
/// address list of the masters.
async fn two_executors(etcd: &str, name: &str) -> (Cluster, String) {
    let master_args = [
        "--executors-heartbeat-interval=250ms",
        "--executors-heartbeat-timeout=500ms",
        "--executors-self-fence=2s",
        "--executors-offline-ttl=3s",
        "--executors-check-interval=250ms",
        "--workers-heartbeat-interval=250ms",
        "--workers-heartbeat-timeout=500ms",
        "--workers-self-fence=2s",
        "--workers-offline-ttl=3s",
        "--backoff-initial=500ms",
    ]
    .map(String::from)
    .to_vec();
    let options = NodeOptions { master_args, ..NodeOptions::default() };
    let mut cluster = Cluster::start_with(etcd, name, 1, &[4, 4], options);
    let masters = cluster.masters_except(None);
    let started = Instant::now();
    loop {
        cluster.assert_running();
        let listed: Result<common::ExecutorListView, String> = query(&masters, &["cluster", "executors"]).await;
        if listed.is_ok_and(|l| l.executors.iter().filter(|e| e.status == "online").count() == 2) {
            break;
        }
        assert!(started.elapsed() < SETTLE_MAX, "the executors never registered");
        tokio::time::sleep(POLL).await;
    }
    (cluster, masters)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real etcd: scripts/with-etcd cargo test --test process_exec -- --ignored"]
async fn an_exec_command_dies_with_its_executor_and_runs_again_elsewhere_with_a_higher_epoch() {
    let etcd = etcd_from_env("process_exec");
    let (mut cluster, masters) = two_executors(&etcd, "exec").await;

    let dir = cluster.dir.join("exec");
    std::fs::create_dir_all(&dir).unwrap();
    let (tokens, release) = (dir.join("epochs"), dir.join("release"));
    let marker = format!("exec-marker-{}", std::process::id());
    let command = format!(
        "echo $FOREMAN_EPOCH >> {t}; sh -c 'sleep 600; : {marker}' & while [ ! -e {r} ]; do sleep 0.1; done; : {marker}",
        t = tokens.display(),
        r = release.display()
    );
    let config = serde_json::json!({"command": ["sh", "-c", command]}).to_string();
    let run =
        common::foreman(&["job", "create", "--id", "x1", "--type", "exec", "--config", &config, "--master", &masters])
            .await;
    assert_eq!(run.code, Some(0), "{run:?}");

    // Running: its shim, its shell and the shell's child carry the marker; the shim names its executor's pid.
    let started = Instant::now();
    let running = loop {
        let found = processes(&marker);
        if found.len() >= 3 && epochs(&tokens).len() == 1 {
            break found;
        }
        assert!(started.elapsed() < SETTLE_MAX, "the command never ran: {found:?}");
        tokio::time::sleep(POLL).await;
    };
    eprintln!("running: {running:#?}");
    let shim = running.iter().find(|p| p.contains("__foreman-exec-shim")).expect("the shim");
    let (victim, executor_pid) = executor_of(&cluster, shim);
    let first = epochs(&tokens)[0];

    // SIGKILL its executor: nothing of the command survives it.
    eprintln!("SIGKILL {} (pid {executor_pid})", cluster.nodes[victim].name);
    cluster.kill(victim);
    let killed = Instant::now();
    // It may already run again elsewhere (new processes, new pids): only the killed executor's must go.
    loop {
        let left: Vec<String> = processes(&marker).into_iter().filter(|p| running.contains(p)).collect();
        if left.is_empty() {
            break;
        }
        assert!(killed.elapsed() < GONE_MAX, "processes outlived their executor: {left:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("the command's processes were gone {} ms after its executor's SIGKILL", killed.elapsed().as_millis());

    // It runs again on the other executor, with a higher epoch.
    loop {
        cluster.assert_running();
        let seen = epochs(&tokens);
        if seen.len() >= 2 && processes(&marker).len() >= 3 {
            assert!(seen[1] > first, "the next incarnation's epoch {} is not above {first}", seen[1]);
            break;
        }
        assert!(killed.elapsed() < RERUN_MAX, "the worker never ran again: epochs {seen:?}");
        tokio::time::sleep(POLL).await;
    }
    let again = processes(&marker);
    assert!(again.iter().all(|p| !p.contains(&format!("__foreman-exec-shim {executor_pid} "))), "{again:?}");
    eprintln!("ran again {} ms after the SIGKILL, epochs {:?}", killed.elapsed().as_millis(), epochs(&tokens));

    // Released: the job finishes, and nothing of it is left.
    std::fs::write(&release, b"").unwrap();
    let started = Instant::now();
    loop {
        let job: Result<JobView, String> = query(&masters, &["job", "get", "x1"]).await;
        if job.as_ref().is_ok_and(|j| j.state == "finished") {
            break;
        }
        assert!(started.elapsed() < SETTLE_MAX, "x1 never finished: {job:?}");
        tokio::time::sleep(POLL).await;
    }
    let started = Instant::now();
    while !processes(&marker).is_empty() {
        assert!(started.elapsed() < GONE_MAX, "processes left after the job finished: {:?}", processes(&marker));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// With `scratch_required`, a worker whose scratch directory went with its executor is not started afresh
/// elsewhere: its job fails, saying which directory was lost with which executor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real etcd: scripts/with-etcd cargo test --test process_exec -- --ignored"]
async fn a_required_scratch_directory_lost_with_its_executor_fails_the_job() {
    let etcd = etcd_from_env("process_exec");
    let (mut cluster, masters) = two_executors(&etcd, "required").await;
    let dir = cluster.dir.join("exec");
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("epochs");
    let marker = format!("required-marker-{}", std::process::id());
    let command = format!("echo $FOREMAN_EPOCH >> {t}; sleep 600; : {marker}", t = tokens.display());
    let config = serde_json::json!({"command": ["sh", "-c", command], "scratch_required": true}).to_string();
    let create = ["job", "create", "--id", "x2", "--type", "exec", "--config", &config, "--master", &masters];
    let run = common::foreman(&create).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let started = Instant::now();
    let shim = loop {
        let found = processes(&marker);
        if let Some(shim) = found.iter().find(|p| p.contains("__foreman-exec-shim")) {
            if epochs(&tokens).len() == 1 {
                break shim.clone();
            }
        }
        assert!(started.elapsed() < SETTLE_MAX, "the command never ran: {found:?}");
        tokio::time::sleep(POLL).await;
    };
    let (victim, executor_pid) = executor_of(&cluster, &shim);
    let name = cluster.nodes[victim].name.clone();
    // Its scratch directory lives there, as `job get` shows.
    let job: JobView = query(&masters, &["job", "get", "x2"]).await.expect("job get x2");
    assert_eq!(job.resources.len(), 1, "{job:?}");
    assert_eq!(job.resources[0].executor_name.as_deref(), Some(name.as_str()), "{job:?}");

    eprintln!("SIGKILL {name} (pid {executor_pid})");
    cluster.kill(victim);
    let killed = Instant::now();
    let error = loop {
        cluster.assert_running();
        let run = common::foreman(&["job", "get", "x2", "--master", &masters]).await;
        if run.stdout.contains("STATE:      failed") {
            break run.stdout;
        }
        assert!(killed.elapsed() < RERUN_MAX, "x2 never failed: {run:?}");
        tokio::time::sleep(POLL).await;
    };
    eprintln!("x2 failed {} ms after the SIGKILL:\n{error}", killed.elapsed().as_millis());
    let want = format!("worker w0's scratch directory was lost with executor {name}");
    assert!(error.contains(&want), "{error}");
    assert_eq!(epochs(&tokens).len(), 1, "the worker ran again without its scratch directory");
    assert!(processes(&marker).is_empty(), "{:?}", processes(&marker));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real etcd: scripts/with-etcd cargo test --test process_exec -- --ignored"]
async fn a_restarted_executor_kills_what_its_last_life_left_running() {
    let etcd = etcd_from_env("process_exec");
    let mut cluster = Cluster::start(&etcd, "sweep", 1, &[4]);
    let masters = cluster.masters_except(None);
    let marker = format!("sweep-marker-{}", std::process::id());
    let command = format!("sh -c 'sleep 600; : {marker}' & sleep 600; : {marker}");
    let config = serde_json::json!({"command": ["sh", "-c", command]}).to_string();
    let started = Instant::now();
    loop {
        let run = common::foreman(&[
            "job", "create", "--id", "s1", "--type", "exec", "--config", &config, "--master", &masters,
        ])
        .await;
        if run.code == Some(0) || run.stderr.contains("JOB_ALREADY_EXISTS") {
            break;
        }
        assert!(started.elapsed() < SETTLE_MAX, "job create: {run:?}");
        tokio::time::sleep(POLL).await;
    }
    let running = loop {
        let found = processes(&marker);
        if found.len() >= 3 {
            break found;
        }
        assert!(started.elapsed() < SETTLE_MAX, "the command never ran: {found:?}");
        tokio::time::sleep(POLL).await;
    };
    let executor = cluster.index_of("exec0");
    let shim: u32 = running
        .iter()
        .find(|p| p.contains("__foreman-exec-shim"))
        .and_then(|p| p.split_whitespace().next()?.parse().ok())
        .expect("the shim's pid");
    // The executor frozen first, so it cannot see its shim die and kill the group itself; then the shim SIGKILLed
    // (its parent-death signal is lost with it) and the executor too: the command is left running, an orphan.
    cluster.pause(executor);
    let status = Command::new("kill").args(["-KILL", &shim.to_string()]).status().expect("run kill");
    assert!(status.success());
    cluster.kill(executor);
    // The shim gone (reaped once its executor is), its command's processes left: polled, as a loaded machine may
    // take a while to reap (a fixed 300 ms once saw too few in a full run).
    let killed = Instant::now();
    let orphans = loop {
        let found = processes(&marker);
        let settled = found.len() >= 2 && found.iter().all(|p| !p.contains("__foreman-exec-shim"));
        if settled {
            break found;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "the command should have outlived its shim and executor here: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("left running by a dead executor: {orphans:#?}");

    // Its next life kills them before it registers.
    cluster.spawn(executor);
    let restarted = Instant::now();
    // A new incarnation of the worker may start meanwhile (new processes, new pids): only the orphans must go.
    while processes(&marker).iter().any(|p| orphans.contains(p)) {
        assert!(
            restarted.elapsed() < SETTLE_MAX,
            "the orphans outlived the executor's restart: {:?}",
            processes(&marker)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("the restarted executor killed them within {} ms", restarted.elapsed().as_millis());
    let log = std::fs::read_to_string(&cluster.nodes[executor].log).unwrap_or_default();
    assert!(log.contains("left from this executor's last life"), "{}", common::tail(&cluster.nodes[executor].log, 20));
    let run = common::foreman(&["job", "cancel", "s1", "--master", &masters]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
}
