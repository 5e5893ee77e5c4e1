//! Leader failover with real processes against a real etcd (production build; design.md §9: "leader failover,
//! real processes + real etcd on loopback ≤ lease TTL + 1 s").
//!
//! Three `foreman master` processes share a cluster on a real etcd; the leader is SIGKILLed (no step-down, no
//! resign, no lease revoke: its lease has to expire), and the survivors must name a new leader within the lease
//! TTL plus one second and still hold the job created before the kill. The killed master then comes back and must
//! rejoin as a follower. Everything is observed through the `foreman` CLI, as an operator would.
//!
//! Needs an etcd: `scripts/with-etcd cargo test --test process_failover -- --ignored` starts a throwaway one and
//! sets `FOREMAN_TEST_ETCD`. Run with `--ignored` and no etcd, it fails rather than skips.
#![cfg(not(madsim))]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

/// The election lease the masters run with: the default (design.md §6), not passed on the command line.
const LEASE_TTL: Duration = Duration::from_secs(5);
/// The failover target of design.md §9.
const FAILOVER_MAX: Duration = Duration::from_secs(6);
/// How often the survivors are asked who leads.
const POLL: Duration = Duration::from_millis(100);
/// The deadline the CLI puts on each master it asks.
const CLI_TIMEOUT: &str = "1s";
/// How long the first election, and the restarted master's first round, may take.
const SETTLE_MAX: Duration = Duration::from_secs(15);
/// The whole test's budget.
const TEST_MAX: Duration = Duration::from_secs(60);

#[derive(Debug, Deserialize)]
struct LeaderView {
    name: String,
    address: String,
    leader_epoch: u64,
}

#[derive(Debug, Deserialize)]
struct MasterView {
    name: String,
    is_leader: bool,
}

#[derive(Debug, Deserialize)]
struct MasterListView {
    masters: Vec<MasterView>,
}

#[derive(Debug, Deserialize)]
struct JobView {
    id: String,
    #[serde(rename = "type")]
    job_type: String,
    state: String,
}

#[derive(Debug, Deserialize)]
struct JobListView {
    jobs: Vec<JobView>,
}

/// One `foreman master` process of the test cluster.
struct Node {
    name: String,
    address: String,
    child: Option<Child>,
    /// Its stderr (the log), across restarts.
    log: PathBuf,
}

/// The test's masters. Dropping it SIGKILLs every child still running; when the test failed, it prints the tail
/// of each master's log first.
struct Cluster {
    etcd: String,
    cluster: String,
    dir: PathBuf,
    nodes: Vec<Node>,
}

impl Cluster {
    /// Starts `n` masters on free loopback ports in a fresh cluster of the etcd at `etcd`.
    fn start(etcd: &str, n: usize) -> Cluster {
        let run = unique_suffix();
        let dir = std::env::temp_dir().join(format!("foreman-failover-{run}"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        // All ports are held at once so they differ; each is released just before its master binds it.
        let listeners: Vec<std::net::TcpListener> =
            (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port")).collect();
        let nodes = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| Node {
                name: format!("m{i}"),
                address: l.local_addr().expect("bound address").to_string(),
                child: None,
                log: dir.join(format!("m{i}.log")),
            })
            .collect();
        drop(listeners);
        let mut c = Cluster { etcd: etcd.to_owned(), cluster: format!("failover-{run}"), dir, nodes };
        for i in 0..n {
            c.spawn(i);
        }
        eprintln!(
            "cluster {} on etcd {}: {}; logs in {}",
            c.cluster,
            c.etcd,
            c.nodes.iter().map(|n| format!("{}={}", n.name, n.address)).collect::<Vec<_>>().join(" "),
            c.dir.display()
        );
        c
    }

    /// Starts (or restarts) master `i`, appending to its log.
    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "{} is already running", node.name);
        let log = File::options().create(true).append(true).open(&node.log).expect("open the log");
        let child = Command::new(env!("CARGO_BIN_EXE_foreman"))
            .args(["master", "--name", &node.name, "--addr", &node.address, "--etcd", &self.etcd])
            .args(["--cluster", &self.cluster])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", node.name));
        node.child = Some(child);
    }

    /// SIGKILLs master `i` (`Child::kill` is SIGKILL on unix) and reaps it.
    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn index_of(&self, name: &str) -> usize {
        self.nodes.iter().position(|n| n.name == name).unwrap_or_else(|| panic!("no master named {name:?}"))
    }

    /// The `--master` list of the masters running now (all but `except`).
    fn masters_except(&self, except: Option<usize>) -> String {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| Some(*i) != except && n.child.is_some())
            .map(|(_, n)| n.address.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Fails the test if a master exited on its own (a crash, a refused configuration).
    fn assert_running(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("{} exited on its own: {status}", node.name);
                }
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        if failed {
            for node in &self.nodes {
                eprintln!("---- last lines of {} ({}) ----\n{}", node.name, node.log.display(), tail(&node.log, 25));
            }
            eprintln!("(logs kept in {})", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("<cannot read: {e}>"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A suffix no earlier run used, so that a long-lived etcd never hands this run another run's keys.
fn unique_suffix() -> String {
    // why: only a name; a wall-clock read in a production-build test does not touch any simulation.
    #[allow(clippy::disallowed_methods)]
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}

/// What one CLI run did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `foreman <args>` (off the async workers: it blocks until the child exits).
async fn foreman(args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_foreman")).args(&args).env_remove("FOREMAN_MASTERS").output()
    })
    .await
    .expect("the blocking task")
    .expect("run the foreman binary");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `foreman cluster leader` against `masters`: the leader, or why there is none.
async fn leader(masters: &str) -> Result<LeaderView, String> {
    let run = foreman(&["cluster", "leader", "--master", masters, "--output", "json", "--timeout", CLI_TIMEOUT]).await;
    if run.code != Some(0) {
        return Err(format!("exit {:?}: {}", run.code, run.stderr.trim()));
    }
    serde_json::from_str(&run.stdout).map_err(|e| format!("not a leader view ({e}): {}", run.stdout))
}

/// Polls `cluster leader` against `masters` every [`POLL`] until `accept` takes the answer, for at most `max`.
async fn wait_for_leader(
    cluster: &mut Cluster,
    masters: &str,
    max: Duration,
    what: &str,
    accept: impl Fn(&LeaderView) -> bool,
) -> LeaderView {
    let started = Instant::now();
    loop {
        cluster.assert_running();
        let last = match leader(masters).await {
            Ok(v) if accept(&v) => return v,
            Ok(v) => format!("{v:?}"),
            Err(e) => e,
        };
        assert!(started.elapsed() < max, "{what}: not within {max:?}; last answer: {last}");
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real etcd: run through scripts/with-etcd"]
async fn three_masters_leader_sigkilled_survivors_elect_a_new_leader_within_lease_ttl_plus_1s() {
    let etcd = std::env::var("FOREMAN_TEST_ETCD").unwrap_or_default();
    assert!(
        !etcd.is_empty(),
        "FOREMAN_TEST_ETCD must name a real etcd as host:port: run `scripts/with-etcd cargo test --test \
         process_failover -- --ignored`, which starts a throwaway one and sets it"
    );
    let test_started = Instant::now();
    let mut cluster = Cluster::start(&etcd, 3);
    let all = cluster.masters_except(None);

    // A leader, and a job it made durable.
    // A follower answers from etcd, and may name the winner before it took its epoch (then the epoch is 0).
    let first = wait_for_leader(&mut cluster, &all, SETTLE_MAX, "the first election", |v| v.leader_epoch > 0).await;
    let elected_at = Instant::now();
    eprintln!("leader: {first:?} after {} ms", test_started.elapsed().as_millis());
    let config = r#"{"workers":2,"target":5,"tick_ms":10}"#;
    let create_args = ["job", "create", "--type", "fake", "--config", config, "--id", "before-kill"];
    let started = Instant::now();
    loop {
        let run = foreman(&[&create_args[..], &["--master", &all, "--output", "json"]].concat()).await;
        if run.code == Some(0) {
            break;
        }
        // The leader may still be recovering (MASTER_NOT_READY); an earlier attempt may have landed after all.
        if run.stderr.contains("JOB_ALREADY_EXISTS") {
            break;
        }
        assert!(started.elapsed() < SETTLE_MAX, "job create never succeeded: {run:?}");
        tokio::time::sleep(POLL).await;
    }

    // SIGKILL the leader: its lease has to run out on etcd before anyone else can win.
    let victim = cluster.index_of(&first.name);
    assert_eq!(cluster.nodes[victim].address, first.address);
    let survivors = cluster.masters_except(Some(victim));
    let killed_at = Instant::now();
    cluster.kill(victim);
    let phase = elected_at.elapsed();
    // Until the dead leader's lease expires, the survivors name it (they answer from etcd). The new leader is
    // named once it won, and carries a larger epoch once it took one.
    let next = wait_for_leader(&mut cluster, &survivors, FAILOVER_MAX + Duration::from_secs(5), "failover", |v| {
        v.name != first.name && v.leader_epoch > first.leader_epoch
    })
    .await;
    let failover = killed_at.elapsed();
    eprintln!(
        "FAILOVER: {} (epoch {}) SIGKILLed {} ms after it was first named; survivors named {} (epoch {}) after {} \
         ms (lease TTL {} ms, target <= {} ms)",
        first.name,
        first.leader_epoch,
        phase.as_millis(),
        next.name,
        next.leader_epoch,
        failover.as_millis(),
        LEASE_TTL.as_millis(),
        FAILOVER_MAX.as_millis()
    );

    // The new leader serves, and the job acknowledged before the kill survived it.
    let started = Instant::now();
    let listed = loop {
        let run = foreman(&["job", "list", "--master", &survivors, "--output", "json", "--timeout", CLI_TIMEOUT]).await;
        if run.code == Some(0) {
            let view: JobListView =
                serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not a job list ({e}): {}", run.stdout));
            break view;
        }
        assert!(started.elapsed() < SETTLE_MAX, "the survivors never listed jobs: {run:?}");
        tokio::time::sleep(POLL).await;
    };
    eprintln!("SERVING: job list answered {} ms after the kill", killed_at.elapsed().as_millis());
    let job = listed.jobs.iter().find(|j| j.id == "before-kill");
    let job = job.unwrap_or_else(|| panic!("the job acknowledged before the kill is gone: {listed:?}"));
    assert_eq!(job.job_type, "fake");
    assert!(["created", "running"].contains(&job.state.as_str()), "{job:?}");
    assert!(
        failover <= FAILOVER_MAX,
        "failover took {} ms, more than lease TTL + 1 s = {} ms",
        failover.as_millis(),
        FAILOVER_MAX.as_millis()
    );

    // The killed master comes back (same name, same address) and joins as a follower.
    cluster.spawn(victim);
    let all = cluster.masters_except(None);
    let started = Instant::now();
    let masters = loop {
        cluster.assert_running();
        let run =
            foreman(&["cluster", "masters", "--master", &all, "--output", "json", "--timeout", CLI_TIMEOUT]).await;
        if run.code == Some(0) {
            let view: MasterListView =
                serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not a master list ({e}): {}", run.stdout));
            if view.masters.len() == 3 {
                break view;
            }
        }
        assert!(started.elapsed() < SETTLE_MAX, "the restarted master never showed up: {run:?}");
        tokio::time::sleep(POLL).await;
    };
    let leaders: Vec<&str> = masters.masters.iter().filter(|m| m.is_leader).map(|m| m.name.as_str()).collect();
    assert_eq!(leaders, vec![next.name.as_str()], "exactly one leader, the one elected at failover: {masters:?}");
    // ...and stays one: a keep-alive round later the same term still leads.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let back = leader(&all).await.expect("a leader after the restart");
    assert_eq!((back.name.as_str(), back.leader_epoch), (next.name.as_str(), next.leader_epoch), "{back:?}");
    cluster.assert_running();

    let total = test_started.elapsed();
    eprintln!("whole test: {} ms", total.as_millis());
    assert!(total < TEST_MAX, "the test took {total:?}, over its {TEST_MAX:?} budget");
}
