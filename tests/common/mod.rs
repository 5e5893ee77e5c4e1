//! What the real-process tests share: a cluster of `foreman master` and `foreman executor` processes on loopback
//! against a real etcd, and the `foreman` CLI to observe it, as an operator would.
//!
//! Every process logs to its own file in a temporary directory. Dropping the [`Cluster`] SIGKILLs every child
//! still running; when the test failed, it first prints the tail of each log and keeps the directory.

// why: each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

pub mod etcd;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use foreman::meta::MetaStore;

/// How often a condition is polled through the CLI.
pub const POLL: Duration = Duration::from_millis(100);
/// The deadline the CLI puts on each master it asks.
pub const CLI_TIMEOUT: &str = "1s";
/// How many lines of each log a failed test prints.
pub const LOG_TAIL_LINES: usize = 40;
/// The deadline `curl` puts on each HTTP request.
pub const HTTP_TIMEOUT_SECS: &str = "2";

/// Every metric a master's `/metrics` promises (README, docs/openapi.json), with its type.
pub const METRICS: [(&str, &str); 16] = [
    ("foreman_is_leader", "gauge"),
    ("foreman_leader_epoch", "gauge"),
    ("foreman_leader_terms_total", "counter"),
    ("foreman_executors", "gauge"),
    ("foreman_executor_slots", "gauge"),
    ("foreman_executors_declared_offline_total", "counter"),
    ("foreman_executor_heartbeat_gap_seconds", "histogram"),
    ("foreman_jobs", "gauge"),
    ("foreman_placements_total", "counter"),
    ("foreman_placement_rejections_total", "counter"),
    ("foreman_fenced_writes_total", "counter"),
    ("foreman_unknown_writes_total", "counter"),
    ("foreman_forwarded_calls_total", "counter"),
    ("foreman_corrupt_records", "gauge"),
    ("foreman_leader_tick_cpu_seconds", "histogram"),
    ("foreman_metastore_requests_total", "counter"),
];

/// The value of `series` (name and labels exactly as exposed, e.g. `foreman_jobs{state="created"}`) in a
/// Prometheus text exposition.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `cluster leader --output json`.
#[derive(Clone, Debug, Deserialize)]
pub struct LeaderView {
    pub name: String,
    pub address: String,
    pub leader_epoch: u64,
}

/// One row of `cluster masters --output json`.
#[derive(Debug, Deserialize)]
pub struct MasterView {
    pub name: String,
    pub is_leader: bool,
}

/// `cluster masters --output json`.
#[derive(Debug, Deserialize)]
pub struct MasterListView {
    pub masters: Vec<MasterView>,
}

/// One row of `cluster executors --output json`.
#[derive(Clone, Debug, Deserialize)]
pub struct ExecutorView {
    pub id: u64,
    pub name: String,
    pub address: String,
    pub status: String,
    pub used: u32,
    pub capacity: u32,
}

/// `cluster executors --output json`.
#[derive(Debug, Deserialize)]
pub struct ExecutorListView {
    pub executors: Vec<ExecutorView>,
}

/// A job, as `job get|create --output json` and each row of `job list --output json` show it.
#[derive(Clone, Debug, Deserialize)]
pub struct JobView {
    pub id: String,
    #[serde(rename = "type")]
    pub job_type: String,
    #[serde(default)]
    pub project: Option<String>,
    pub state: String,
    pub restarts: u32,
    pub epoch: u64,
    pub executor_id: Option<u64>,
    #[serde(default)]
    pub resources: Vec<JobResourceView>,
}

/// Where a job's worker keeps a local resource, as `job get --output json` shows it.
#[derive(Clone, Debug, Deserialize)]
pub struct JobResourceView {
    pub worker: String,
    pub name: String,
    pub executor_id: u64,
    pub executor_name: Option<String>,
}

/// `job list --output json`.
#[derive(Debug, Deserialize)]
pub struct JobListView {
    pub jobs: Vec<JobView>,
}

/// Short election timings for in-process masters: the shortest lease real etcd grants, and a step-down deadline
/// that `validate()` accepts with it (step-down + 1 s < lease TTL, keepalive < step-down).
pub fn short_election() -> foreman::config::ElectionConfig {
    foreman::config::ElectionConfig {
        lease_ttl: Duration::from_secs(2),
        keepalive_interval: Duration::from_millis(300),
        step_down: Duration::from_millis(900),
        campaign_retry: Duration::from_millis(200),
    }
}

/// Serves master `m`'s gRPC services on `incoming` (what `Master::serve` does, on a listener the test bound), until
/// the test's runtime ends.
pub fn serve_grpc(m: std::sync::Arc<foreman::master::Master>, incoming: tonic::transport::server::TcpIncoming) {
    use foreman::rpc::pb;
    let svc = foreman::master::MasterService::new(m);
    let server = tonic::transport::Server::builder()
        .add_service(pb::discovery_server::DiscoveryServer::new(svc.clone()))
        .add_service(pb::job_manager_server::JobManagerServer::new(svc.clone()))
        .add_service(pb::task_scheduler_server::TaskSchedulerServer::new(svc.clone()))
        .add_service(pb::framework_server::FrameworkServer::new(svc))
        .serve_with_incoming(incoming);
    tokio::spawn(server);
}

/// The etcd the test runs against: `FOREMAN_TEST_ETCD`, set by `scripts/with-etcd`. Without it the test fails
/// rather than skips (it only runs when asked for with `--ignored`).
pub fn etcd_from_env(test: &str) -> String {
    let etcd = std::env::var("FOREMAN_TEST_ETCD").unwrap_or_default();
    assert!(
        !etcd.is_empty(),
        "FOREMAN_TEST_ETCD must name a real etcd as host:port: run `scripts/with-etcd cargo test --test {test} -- \
         --ignored`, which starts a throwaway one and sets it"
    );
    etcd
}

/// What a node of the cluster is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Master,
    /// An executor with this many slots.
    Executor {
        capacity: u32,
    },
}

/// One `foreman master` or `foreman executor` process of the test cluster.
pub struct Node {
    pub name: String,
    pub role: Role,
    pub address: String,
    /// A master's HTTP API address (`--http-addr`); executors have none.
    pub http: Option<String>,
    child: Option<Child>,
    /// SIGSTOPped and not yet SIGCONTinued.
    paused: bool,
    /// Its stderr and stdout (the log), across restarts.
    pub log: PathBuf,
}

impl Node {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }
}

/// What the nodes run with beyond their role's flags.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// More `foreman master` flags (timing, ...).
    pub master_args: Vec<String>,
    /// More `foreman executor` flags.
    pub executor_args: Vec<String>,
    /// `RUST_LOG` of the masters.
    pub master_log: String,
    /// `RUST_LOG` of the executors.
    pub executor_log: String,
    /// Mutual TLS: `foreman tls init` makes a CA and a certificate per node (and for the users `admin` and
    /// `other`) in `<dir>/tls`, and each node starts with its own.
    pub tls: bool,
    /// Users' tokens, `(name, project, role)`: `foreman token add` writes each to `<dir>/tokens` (which the masters
    /// are started with, `--auth-tokens`) and the token it prints to [`Cluster::token_file`].
    pub tokens: Vec<(&'static str, &'static str, &'static str)>,
}

impl Default for NodeOptions {
    fn default() -> NodeOptions {
        NodeOptions {
            master_args: vec![],
            executor_args: vec![],
            master_log: "info".to_owned(),
            executor_log: "info".to_owned(),
            tls: false,
            tokens: vec![],
        }
    }
}

/// The test's processes, all in one fresh cluster of one etcd.
pub struct Cluster {
    /// The etcd endpoints, comma separated.
    pub etcd: String,
    /// The cluster name: every key lives under `/foreman/<cluster>/`.
    pub cluster: String,
    pub dir: PathBuf,
    pub nodes: Vec<Node>,
    options: NodeOptions,
}

impl Cluster {
    /// Starts `masters` masters (`m0`, `m1`, ...) and one executor (`exec0`, `exec1`, ...: not `e<n>`, which is how
    /// the masters log executor ids) per entry of `executor_capacities`, joining every master, on free loopback
    /// ports in a fresh cluster named after `label`.
    pub fn start(etcd: &str, label: &str, masters: usize, executor_capacities: &[u32]) -> Cluster {
        Cluster::start_with(etcd, label, masters, executor_capacities, NodeOptions::default())
    }

    /// [`Cluster::start`] with more flags and other log filters for the nodes (kept for their restarts).
    pub fn start_with(
        etcd: &str,
        label: &str,
        masters: usize,
        executor_capacities: &[u32],
        options: NodeOptions,
    ) -> Cluster {
        let run = unique_suffix();
        let dir = std::env::temp_dir().join(format!("foreman-{label}-{run}"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let roles = (0..masters).map(|i| (format!("m{i}"), Role::Master)).chain(
            executor_capacities.iter().enumerate().map(|(i, c)| (format!("exec{i}"), Role::Executor { capacity: *c })),
        );
        let roles: Vec<(String, Role)> = roles.collect();
        // All ports are held at once so they differ (a gRPC one per node, an HTTP one per master); each is released
        // just before its process binds it.
        let masters_count = roles.iter().filter(|(_, role)| *role == Role::Master).count();
        let mut ports = hold_ports(roles.len() + masters_count).into_iter();
        let listeners: Vec<(std::net::TcpListener, Option<std::net::TcpListener>)> = roles
            .iter()
            .map(|(_, role)| {
                let grpc = ports.next().expect("held");
                (grpc, (*role == Role::Master).then(|| ports.next().expect("held")))
            })
            .collect();
        let address = |l: &std::net::TcpListener| l.local_addr().expect("bound address").to_string();
        let nodes = listeners
            .iter()
            .zip(roles)
            .map(|((grpc, http), (name, role))| Node {
                log: dir.join(format!("{name}.log")),
                name,
                role,
                address: address(grpc),
                http: http.as_ref().map(address),
                child: None,
                paused: false,
            })
            .collect();
        drop(listeners);
        let mut c = Cluster { etcd: etcd.to_owned(), cluster: format!("{label}-{run}"), dir, nodes, options };
        if c.options.tls {
            c.tls_init();
        }
        c.tokens_init();
        for i in 0..c.nodes.len() {
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

    /// The directory of the cluster's CA and certificates (`NodeOptions::tls`).
    pub fn tls_dir(&self) -> PathBuf {
        self.dir.join("tls")
    }

    /// The TLS flags of a process holding the certificate of `who` (`master/m0`, `executor/exec1`, `user/admin`).
    pub fn tls_args(&self, who: &str) -> Vec<String> {
        let stem = who.replace('/', "-");
        let d = self.tls_dir();
        let path = |f: String| d.join(f).display().to_string();
        vec![
            "--tls-ca".into(),
            path("ca.pem".into()),
            "--tls-cert".into(),
            path(format!("{stem}.pem")),
            "--tls-key".into(),
            path(format!("{stem}-key.pem")),
        ]
    }

    /// The file holding user `name`'s token (`NodeOptions::tokens`), mode 0600.
    pub fn token_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("token-{name}"))
    }

    /// The flags the cluster's operator passes to every CLI call: the CA (`--tls-ca`) when the cluster has TLS, and
    /// the token of the user `admin` (`--token-file`) when [`NodeOptions::tokens`] has one; none for a plain-text
    /// cluster without tokens. The helpers that take them are the `*_with` ones ([`query_with`], [`leader_with`],
    /// [`create_job_with`]) and [`wait_for_leader`].
    pub fn client_args(&self) -> Vec<String> {
        let mut args = vec![];
        if self.options.tls {
            args.extend(["--tls-ca".to_owned(), self.tls_dir().join("ca.pem").display().to_string()]);
        }
        if self.options.tokens.iter().any(|(name, _, _)| *name == "admin") {
            args.extend(["--token-file".to_owned(), self.token_file("admin").display().to_string()]);
        }
        args
    }

    /// The masters' tokens file (`NodeOptions::tokens`).
    pub fn tokens_path(&self) -> PathBuf {
        self.dir.join("tokens")
    }

    fn tokens_init(&self) {
        for (name, project, role) in &self.options.tokens {
            let file = self.tokens_path().display().to_string();
            let args = ["token", "add", name, "--project", project, "--role", role, "--file", &file];
            let out = Command::new(env!("CARGO_BIN_EXE_foreman")).args(args).output().expect("run foreman token add");
            assert!(out.status.success(), "foreman token add: {}", String::from_utf8_lossy(&out.stderr));
            let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            assert!(token.starts_with("foreman_"), "the token alone on stdout: {token:?}");
            let path = self.token_file(name);
            std::fs::write(&path, format!("{token}\n")).expect("write the token file");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod the token file");
            }
        }
    }

    fn tls_init(&self) {
        let names = |master: bool| {
            let n: Vec<&str> =
                self.nodes.iter().filter(|n| (n.role == Role::Master) == master).map(|n| n.name.as_str()).collect();
            n.join(",")
        };
        let dir = self.tls_dir().display().to_string();
        let (masters, executors) = (names(true), names(false));
        let mut args = vec!["tls", "init", "--dir", &dir, "--cluster", &self.cluster, "--users", "admin,other"];
        if !masters.is_empty() {
            args.extend(["--masters", &masters]);
        }
        if !executors.is_empty() {
            args.extend(["--executors", &executors]);
        }
        let out = Command::new(env!("CARGO_BIN_EXE_foreman")).args(&args).output().expect("run foreman tls init");
        assert!(out.status.success(), "foreman tls init: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Starts (or restarts) node `i`, appending to its log.
    pub fn spawn(&mut self, i: usize) {
        let join = self.master_addresses(None);
        let tls = match self.nodes[i].role {
            // Plain text must be asked for: a master or executor without TLS refuses to start.
            _ if !self.options.tls => vec!["--insecure".to_owned()],
            Role::Master => self.tls_args(&format!("master/{}", self.nodes[i].name)),
            Role::Executor { .. } => self.tls_args(&format!("executor/{}", self.nodes[i].name)),
        };
        let tokens = match self.options.tokens.is_empty() {
            true => vec![],
            false => vec!["--auth-tokens".to_owned(), self.tokens_path().display().to_string()],
        };
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "{} is already running", node.name);
        let log = File::options().create(true).append(true).open(&node.log).expect("open the log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_foreman"));
        let rust_log = match node.role {
            Role::Master => {
                command.args(["master", "--name", &node.name, "--addr", &node.address, "--etcd", &self.etcd]);
                command.args(["--cluster", &self.cluster, "--http-addr", node.http.as_deref().unwrap_or("")]);
                command.args(&self.options.master_args);
                &self.options.master_log
            }
            Role::Executor { capacity } => {
                command.args(["executor", "--name", &node.name, "--addr", &node.address, "--join", &join]);
                command.args(["--capacity", &capacity.to_string()]);
                command.args(&self.options.executor_args);
                &self.options.executor_log
            }
        };
        command.args(&tls);
        if node.role == Role::Master {
            command.args(&tokens);
        }
        let child = command
            .env("RUST_LOG", rust_log)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", node.name));
        node.child = Some(child);
    }

    /// SIGKILLs node `i` (`Child::kill` is SIGKILL on unix; it ends a stopped process too) and reaps it.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].paused = false;
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM to node `i` and waits up to `max` for it to exit: its exit code (`None` when a signal ended
    /// it) and how long it took. Fails the test if it is still running after `max` (then SIGKILLs it).
    pub async fn terminate(&mut self, i: usize, max: Duration) -> (Option<i32>, Duration) {
        let name = self.nodes[i].name.clone();
        let child = self.nodes[i].child.as_mut().unwrap_or_else(|| panic!("{name} is not running"));
        let pid = child.id().to_string();
        let sent = Instant::now();
        let status = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(status.success(), "kill -TERM {pid} ({name}) failed: {status}");
        loop {
            if let Some(status) = child.try_wait().expect("wait for the child") {
                self.nodes[i].child = None;
                return (status.code(), sent.elapsed());
            }
            if sent.elapsed() > max {
                self.kill(i);
                panic!("{name} did not exit within {max:?} of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGSTOPs node `i`: it keeps its sockets and memory but runs nothing until [`Cluster::resume`].
    pub fn pause(&mut self, i: usize) {
        assert!(!self.nodes[i].paused, "{} is already paused", self.nodes[i].name);
        self.signal(i, "STOP");
        self.nodes[i].paused = true;
    }

    /// SIGCONTs node `i`, paused by [`Cluster::pause`].
    pub fn resume(&mut self, i: usize) {
        assert!(self.nodes[i].paused, "{} is not paused", self.nodes[i].name);
        self.signal(i, "CONT");
        self.nodes[i].paused = false;
    }

    /// Sends signal `name` to node `i`'s process with the shell's `kill` (no unsafe code, no extra crate), and
    /// returns once it was sent.
    fn signal(&self, i: usize, name: &str) {
        let node = &self.nodes[i];
        let child = node.child.as_ref().unwrap_or_else(|| panic!("{} is not running", node.name));
        let status = Command::new("sh")
            .args(["-c", r#"kill -s "$0" "$1""#, name, &child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("cannot run sh to signal {}: {e}", node.name));
        assert!(status.success(), "kill -s {name} {} ({}) failed: {status}", child.id(), node.name);
    }

    pub fn index_of(&self, name: &str) -> usize {
        self.nodes.iter().position(|n| n.name == name).unwrap_or_else(|| panic!("no node named {name:?}"))
    }

    /// The node listening on `address`.
    pub fn index_at(&self, address: &str) -> usize {
        self.nodes.iter().position(|n| n.address == address).unwrap_or_else(|| {
            panic!(
                "no node listens on {address:?}; nodes: {}",
                self.nodes.iter().map(|n| format!("{}={}", n.name, n.address)).collect::<Vec<_>>().join(" ")
            )
        })
    }

    /// Every master's address, but `except`'s, comma separated: the `--join` of executors.
    fn master_addresses(&self, except: Option<usize>) -> String {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| n.role == Role::Master && Some(*i) != except)
            .map(|(_, n)| n.address.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The `--master` list of the masters running now (all but `except`).
    pub fn masters_except(&self, except: Option<usize>) -> String {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| n.role == Role::Master && Some(*i) != except && n.child.is_some())
            .map(|(_, n)| n.address.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Fails the test if a process exited on its own (a crash, a refused configuration).
    pub fn assert_running(&mut self) {
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
                eprintln!(
                    "---- last lines of {} ({}), debug lines left out ----\n{}",
                    node.name,
                    node.log.display(),
                    tail_without(&node.log, LOG_TAIL_LINES, " DEBUG ")
                );
            }
            eprintln!("(logs kept in {})", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The last `lines` lines of the file at `path`.
pub fn tail(path: &Path, lines: usize) -> String {
    tail_matching(path, lines, |_| true)
}

/// The last `lines` lines of the file at `path` that do not contain `skip`.
pub fn tail_without(path: &Path, lines: usize, skip: &str) -> String {
    tail_matching(path, lines, |l| !l.contains(skip))
}

fn tail_matching(path: &Path, lines: usize, keep: impl Fn(&str) -> bool) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("<cannot read: {e}>"));
    let all: Vec<&str> = text.lines().filter(|l| keep(l)).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The lowest port [`hold_ports`] hands out.
const PORT_LOW: u16 = 20_000;

/// Holds `n` distinct free loopback ports below the kernel's ephemeral range: a node restarted on its port must
/// find it free, and a port from the ephemeral range may meanwhile be taken by any outgoing connection on the
/// machine. Each is released when its listener is dropped, just before its process binds it.
pub fn hold_ports(n: usize) -> Vec<std::net::TcpListener> {
    /// Every port [`hold_ports`] gave out in this test process: never given twice (the tests of one binary run side
    /// by side, and each releases its ports to its nodes, which bind them a moment later and again on a restart).
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    // The ephemeral range's low end (Linux); 32768 is Linux's default.
    let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()))
        .unwrap_or(32_768)
        .max(PORT_LOW + 1_000);
    // Drawn apart from other test processes that hold ports at the same time.
    let mut rng = foreman::core::rng::SplitMix64::new((wall_nanos() as u64) ^ (u64::from(std::process::id()) << 32));
    let mut held = vec![];
    let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Ports in use by other tests are skipped, and so are the ports this process gave out already (a test beside
    // this one may have released one to its node, which has not bound it yet, or may start a node on it again);
    // the bound keeps a full machine from looping for ever.
    for _ in 0..(n * 100) {
        if held.len() == n {
            break;
        }
        let port = PORT_LOW + foreman::core::rng::Rng::below(&mut rng, u64::from(high - PORT_LOW)) as u16;
        if given.contains(&port) {
            continue;
        }
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            given.insert(port);
            held.push(l);
        }
    }
    assert_eq!(held.len(), n, "found only {} free loopback ports in {PORT_LOW}..{high}", held.len());
    held
}

/// A suffix no earlier run used, so that a long-lived etcd never hands this run another run's keys.
/// The free loopback ports of one `foreman standalone`: its master, its HTTP API, and the first of its two
/// executors' ports (the second takes the port after it, free too).
#[derive(Clone, Copy, Debug)]
pub struct StandalonePorts {
    pub master: u16,
    pub http: u16,
    pub executors: u16,
}

impl StandalonePorts {
    pub fn new() -> StandalonePorts {
        loop {
            // Held together, so that they differ; released before use.
            let held: Vec<std::net::TcpListener> =
                (0..3).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port")).collect();
            let p: Vec<u16> = held.iter().map(|l| l.local_addr().expect("bound").port()).collect();
            if p[2] < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p[2] + 1)).is_ok() {
                return StandalonePorts { master: p[0], http: p[1], executors: p[2] };
            }
        }
    }
}

/// A new directory of its own for one test run (`foreman-<label>-<pid>-<nanos>` in the temporary directory).
pub fn scratch_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("foreman-{label}-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// The `HOME` of the standalones a test binary starts and of its CLI (`foreman-<label>-home-<pid>`): a secure
/// standalone leaves its profile there (one file per master address) and the CLI finds it there, with no flag, as a
/// user's would. Never the real home: a test must not write into it.
pub fn test_home(label: &str) -> PathBuf {
    let home = std::env::temp_dir().join(format!("foreman-{label}-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap_or_else(|e| panic!("cannot create {}: {e}", home.display()));
    home
}

fn unique_suffix() -> String {
    format!("{}-{}", std::process::id(), wall_nanos())
}

/// The wall clock in nanoseconds since the Unix epoch: for names and seeds only.
fn wall_nanos() -> u128 {
    // why: names and a seed, never compared; a wall-clock read in a production-build test touches no simulation.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_nanos())
}

/// What one CLI run did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `foreman <args>` (off the async workers: it blocks until the child exits).
pub async fn foreman(args: &[&str]) -> Run {
    foreman_in(None, args).await
}

/// Runs `foreman <args>` with `home` as its `HOME` (where the CLI finds a standalone's profile), if given.
pub async fn foreman_in(home: Option<&Path>, args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let home = home.map(Path::to_owned);
    let output = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_foreman"));
        if let Some(home) = home {
            command.env("HOME", home);
        }
        command.args(&args).env_remove("FOREMAN_MASTERS").env_remove("FOREMAN_TOKEN_FILE").output()
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

/// `curl`s `path` of the HTTP API at `address`: the status and the body, or why there is none.
pub async fn http_get(address: &str, path: &str) -> Result<(u16, String), String> {
    http_get_with(address, path, &[]).await
}

/// [`http_get`] with more request headers (`"Name: value"`).
pub async fn http_get_with(address: &str, path: &str, headers: &[&str]) -> Result<(u16, String), String> {
    http_call(address, "GET", path, headers).await
}

/// `curl -X <method>`s `path` with more request headers (`"Name: value"`), no body.
pub async fn http_call(address: &str, method: &str, path: &str, headers: &[&str]) -> Result<(u16, String), String> {
    let url = format!("http://{address}{path}");
    let args = [
        "--silent",
        "--show-error",
        "--max-time",
        HTTP_TIMEOUT_SECS,
        "--write-out",
        "\n%{http_code}",
        "-X",
        method,
        &url,
    ];
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    for h in headers {
        args.extend(["--header".to_owned(), (*h).to_owned()]);
    }
    let output = tokio::task::spawn_blocking(move || Command::new("curl").args(&args).output())
        .await
        .expect("the blocking task")
        .map_err(|e| format!("cannot run curl (Debian: apt-get install -y curl): {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!("curl {url}: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let code = code.trim().parse().map_err(|_| format!("curl {url}: no status in {stdout:?}"))?;
    Ok((code, body.to_owned()))
}

/// Runs `foreman <args> --master <masters> --output json --timeout CLI_TIMEOUT` and parses its output as `T`:
/// the view, or why there is none.
pub async fn query<T: serde::de::DeserializeOwned>(masters: &str, args: &[&str]) -> Result<T, String> {
    query_in(None, masters, args).await
}

/// [`query`] with `home` as the CLI's `HOME`, if given.
pub async fn query_in<T: serde::de::DeserializeOwned>(
    home: Option<&Path>,
    masters: &str,
    args: &[&str],
) -> Result<T, String> {
    query_run(home, masters, &[], args).await
}

/// [`query`] with more flags (`client`: [`Cluster::client_args`]).
pub async fn query_with<T: serde::de::DeserializeOwned>(
    masters: &str,
    client: &[String],
    args: &[&str],
) -> Result<T, String> {
    query_run(None, masters, client, args).await
}

async fn query_run<T: serde::de::DeserializeOwned>(
    home: Option<&Path>,
    masters: &str,
    client: &[String],
    args: &[&str],
) -> Result<T, String> {
    let client: Vec<&str> = client.iter().map(String::as_str).collect();
    let common = ["--master", masters, "--output", "json", "--timeout", CLI_TIMEOUT];
    let run = foreman_in(home, &[args, &common, &client].concat()).await;
    if run.code != Some(0) {
        return Err(format!("`foreman {}` exit {:?}: {}", args.join(" "), run.code, run.stderr.trim()));
    }
    serde_json::from_str(&run.stdout).map_err(|e| {
        format!("`foreman {}` printed no {} ({e}): {}", args.join(" "), std::any::type_name::<T>(), run.stdout)
    })
}

/// `foreman cluster leader` against `masters`: the leader, or why there is none.
pub async fn leader(masters: &str) -> Result<LeaderView, String> {
    leader_with(masters, &[]).await
}

/// [`leader`] with more flags (`client`: [`Cluster::client_args`]).
pub async fn leader_with(masters: &str, client: &[String]) -> Result<LeaderView, String> {
    query_with(masters, client, &["cluster", "leader"]).await
}

/// Polls `cluster leader` against `masters` (with the cluster's [`Cluster::client_args`]) every [`POLL`] until
/// `accept` takes the answer, for at most `max`.
pub async fn wait_for_leader(
    cluster: &mut Cluster,
    masters: &str,
    max: Duration,
    what: &str,
    accept: impl Fn(&LeaderView) -> bool,
) -> LeaderView {
    let client = cluster.client_args();
    let started = Instant::now();
    loop {
        cluster.assert_running();
        let last = match leader_with(masters, &client).await {
            Ok(v) if accept(&v) => return v,
            Ok(v) => format!("{v:?}"),
            Err(e) => e,
        };
        assert!(started.elapsed() < max, "{what}: not within {max:?}; last answer: {last}");
        tokio::time::sleep(POLL).await;
    }
}

/// Creates a job through the CLI, trying again while the leader cannot serve yet (`MASTER_NOT_READY`, no leader)
/// for at most `max`. An earlier attempt whose reply was lost may have created it: `JOB_ALREADY_EXISTS` counts as
/// done, so `id` must be new to the cluster.
pub async fn create_job(masters: &str, id: &str, job_type: &str, config: &str, max: Duration) {
    create_job_with(masters, &[], id, job_type, config, max).await
}

/// [`create_job`] with more flags (`client`: [`Cluster::client_args`]).
pub async fn create_job_with(masters: &str, client: &[String], id: &str, job_type: &str, config: &str, max: Duration) {
    let client: Vec<&str> = client.iter().map(String::as_str).collect();
    let started = Instant::now();
    loop {
        let args = ["job", "create", "--type", job_type, "--config", config, "--id", id, "--master", masters];
        let run = foreman(&[&args[..], &["--output", "json", "--timeout", CLI_TIMEOUT], &client].concat()).await;
        if run.code == Some(0) || run.stderr.contains("JOB_ALREADY_EXISTS") {
            return;
        }
        assert!(started.elapsed() < max, "job create {id} never succeeded within {max:?}: {run:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// A worker's checkpoint as the fake job stores it: `{"counter": C, "epoch": E, "seq": S}`, with `"stopped": true`
/// when its incarnation stopped for a drain (the framework's envelope around the fake's state, framework/checkpoint.rs).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointValue {
    pub counter: u64,
    pub epoch: u64,
    /// The framework's count of accepted writes: for the fake, always its counter.
    pub seq: u64,
    #[serde(default)]
    pub stopped: bool,
}

/// A job's checkpoints in the metastore, by worker name (`w0`, `w1`, ...); a value that is not a checkpoint is an
/// error naming its key.
pub async fn checkpoints(meta: &MetaStore, job: &str) -> Result<BTreeMap<String, CheckpointValue>, String> {
    let prefix = format!("checkpoints/{job}/");
    let listed = meta.list(&prefix).await.map_err(|e| format!("cannot list {prefix}: {e}"))?;
    let mut found = BTreeMap::new();
    for (key, value) in listed {
        let c = serde_json::from_slice::<CheckpointValue>(&value)
            .map_err(|e| format!("{key}: not a checkpoint ({e}): {}", String::from_utf8_lossy(&value)))?;
        found.insert(key.strip_prefix(&prefix).unwrap_or(&key).to_owned(), c);
    }
    Ok(found)
}

/// What is wrong with a fake job's durable result, if anything: `expect_done` asks for exactly one checkpoint per
/// worker (`w0` .. `w<workers-1>`), each at exactly `target` (a lost step leaves a counter short; a step run twice
/// or a stale incarnation writing shows as a wrong or extra checkpoint); otherwise (a canceled job) only known
/// workers, none past the target.
pub fn checkpoint_problems(
    job: &str,
    found: &BTreeMap<String, CheckpointValue>,
    workers: u32,
    target: u64,
    expect_done: bool,
) -> Vec<String> {
    let mut problems = vec![];
    let mut expected: Vec<String> = (0..workers).map(|i| format!("w{i}")).collect();
    expected.sort();
    let names: Vec<String> = found.keys().cloned().collect();
    let unknown = names.iter().any(|n| !expected.contains(n));
    if (expect_done && names != expected) || unknown {
        problems.push(format!("{job}: checkpoints of {names:?}, expected {expected:?}"));
    }
    for (worker, c) in found {
        if c.seq != c.counter {
            problems.push(format!(
                "{job}/{worker}: seq {} but counter {} (epoch {}): a write was lost or counted twice",
                c.seq, c.counter, c.epoch
            ));
        }
        if c.counter > target || (expect_done && c.counter != target) {
            problems.push(format!(
                "{job}/{worker}: counter {} (epoch {}), expected {} the target {target}",
                c.counter,
                c.epoch,
                if expect_done { "exactly" } else { "at most" }
            ));
        }
    }
    problems
}
