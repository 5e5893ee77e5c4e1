//! `foreman standalone`: a whole cluster in one process, for a first contact and for development. One master and
//! N executors (default 2) share the embedded metastore, kept in a data directory so that jobs survive a restart.
//!
//! The nodes are the real ones, talking gRPC over loopback exactly as in a cluster: the master is elected (alone)
//! over the embedded store, the executors register and heartbeat, job masters and workers run on them. Only the
//! metastore differs: executors are handed the master's embedded store instead of learning etcd endpoints.
//!
//! Shutdown (Ctrl-C or SIGTERM) goes in the order that loses nothing: every executor drains (stops taking tasks,
//! lets its tasks stop at a checkpoint, deregisters), then the master steps down and exits. The data directory is
//! locked while the process runs; a second `foreman standalone` on it is refused.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{info, warn};

use crate::config::{ClientProfile, MasterConfig};
use crate::core::auth::Principal;
use crate::executor::Executor;
use crate::master::Master;
use crate::meta::MetaStore;
use crate::rpc::tls::{check_owner_only, create_private_dirs, write_private, Ca};

/// The most executors one standalone process runs.
pub const EXECUTORS_MAX: u32 = 64;

/// `foreman standalone` flags.
#[derive(Clone, Debug, clap::Args)]
pub struct StandaloneFlags {
    /// Where the metastore keeps its state; created if missing, locked while the process runs.
    #[arg(long, value_name = "DIR", default_value = "foreman-data")]
    pub data_dir: PathBuf,
    /// The master's listen address: where `foreman job` and `foreman cluster` reach the cluster.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:10240")]
    pub addr: String,
    /// How many executors to run.
    #[arg(long, value_name = "N", default_value_t = 2, allow_hyphen_values = true)]
    pub executors: u32,
    /// The first executor's port (same host as --addr); the others take the ports after it [default: the
    /// master's port + 100].
    #[arg(long, value_name = "PORT")]
    pub executor_port: Option<u16>,
    /// The HTTP API and /metrics address; empty turns it off [default: the master's, 127.0.0.1:10280].
    #[arg(long, value_name = "HOST:PORT")]
    pub http_addr: Option<String>,
    /// More host names the HTTP API answers to (Host and Origin), comma-separated, host or host:port, e.g. the
    /// name a browser or a proxy uses [default: only its own address, localhost, 127.0.0.1 and [::1] on its port].
    #[arg(long, value_name = "HOST[:PORT],...", value_delimiter = ',')]
    pub http_names: Option<Vec<String>>,
    /// Each executor's capacity in slots.
    #[arg(long, value_name = "N", default_value_t = 16, allow_hyphen_values = true)]
    pub capacity: u32,
    /// How often each executor looks for the data of deleted jobs (logs, scratch directories) to remove.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = crate::config::parse_duration)]
    pub collect_interval: std::time::Duration,
    /// A master configuration file (TOML, as `foreman master --config` takes) for timings and policies; its
    /// `addr`, `etcd`, `tls` and `auth` settings are not used here.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Serve plain text and check no one: any local user (and any web page, through the HTTP API) may then act on
    /// the cluster. Without it, the standalone makes its own CA and admin token in --data-dir and the CLI of this
    /// user finds them.
    #[arg(long)]
    pub insecure: bool,
}

/// Why `foreman standalone` could not run; the message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// Bad flags or configuration: nothing was started.
    #[error("{0}")]
    Config(String),
    #[error("cannot use the data directory: {0}")]
    Store(String),
    #[error("cannot set up TLS and the admin token: {0}")]
    Security(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
}

/// The validated layout of one standalone process.
#[derive(Clone, Debug)]
pub struct Layout {
    pub master: MasterConfig,
    pub executors: Vec<crate::config::ExecutorConfig>,
}

impl StandaloneFlags {
    /// The master's and executors' configurations these flags describe, validated.
    pub fn layout(&self) -> Result<Layout, StandaloneError> {
        let bad = StandaloneError::Config;
        let addr: SocketAddr = self.addr.parse().map_err(|e| {
            bad(format!("--addr {:?}: {e}; expected host:port with an IP address, e.g. 127.0.0.1:10240", self.addr))
        })?;
        if !(1..=EXECUTORS_MAX).contains(&self.executors) {
            return Err(bad(format!("--executors {}: it must be from 1 to {EXECUTORS_MAX}", self.executors)));
        }
        let first = match self.executor_port {
            Some(p) => u32::from(p),
            None => u32::from(addr.port()) + 100,
        };
        let last = first + self.executors - 1;
        if first == 0 || last > u32::from(u16::MAX) {
            return Err(bad(format!(
                "executor ports {first}..={last} do not fit in 1..=65535; give --executor-port (or another --addr)"
            )));
        }
        if (first..=last).contains(&u32::from(addr.port())) {
            return Err(bad(format!(
                "executor ports {first}..={last} include the master's port {}; give another --executor-port",
                addr.port()
            )));
        }
        if self.capacity == 0 {
            return Err(bad("--capacity 0: each executor needs at least 1 slot".into()));
        }
        let mut master = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| bad(format!("cannot read the configuration file {}: {e}", path.display())))?;
                MasterConfig::from_toml(&text).map_err(|e| bad(format!("{}: {e}", path.display())))?
            }
            None => MasterConfig::default(),
        };
        master.name = "standalone-master".to_owned();
        master.addr = self.addr.clone();
        master.advertise_addr = String::new();
        if let Some(http) = &self.http_addr {
            master.http_addr = http.clone();
        }
        if let Some(names) = &self.http_names {
            master.http.names.extend(names.iter().cloned());
        }
        master.fill_derived();
        master.validate().map_err(|e| bad(e.to_string()))?;
        let mut executors = Vec::new();
        for (i, port) in (first..=last).enumerate() {
            let name = format!("standalone-executor-{}", i + 1);
            let mut e = crate::config::ExecutorConfig {
                // Each executor's own directory in the standalone's: two standalones on one machine never share one.
                data_dir: self.data_dir.join("executors").join(&name).to_string_lossy().into_owned(),
                name,
                addr: SocketAddr::new(addr.ip(), port as u16).to_string(),
                join: vec![self.addr.clone()],
                capacity: self.capacity,
                collect_interval: self.collect_interval,
                ..Default::default()
            };
            e.fill_derived();
            e.validate().map_err(|e| bad(format!("executor {}: {e}", i + 1)))?;
            executors.push(e);
        }
        Ok(Layout { master, executors })
    }
}

/// The security of a standalone that is not `--insecure`: where its CA and admin token are, and where the CLI of
/// this user was told about them (`None` when that could not be written).
#[derive(Clone, Debug)]
pub struct Secured {
    pub ca: PathBuf,
    pub token_file: PathBuf,
    pub profile: Option<PathBuf>,
}

/// The directory of a standalone's secrets in its data directory.
const SECURITY_DIR: &str = "security";

/// Makes (the first time) or reads the standalone's CA and admin token in `data_dir/security/`, and sets this
/// process up with them: TLS on every gRPC server and channel (a server certificate for `hosts`, issued at each
/// start), the admin token's tokens file, and a node token for each of `nodes` (in memory). Every file is
/// owner-only; one group or others may read is refused, saying what to run.
pub fn secure(
    data_dir: &Path,
    cluster: &str,
    master: &Principal,
    nodes: &[Principal],
    hosts: &[String],
) -> Result<Secured, String> {
    let dir = std::fs::canonicalize(data_dir)
        .map_err(|e| format!("--data-dir {}: {e}", data_dir.display()))?
        .join(SECURITY_DIR);
    create_private_dirs(&dir)?;
    let (ca_file, ca_key_file) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let ca = match (ca_file.exists(), ca_key_file.exists()) {
        (true, true) => {
            check_owner_only("the standalone's CA key", &ca_key_file, "a private key")?;
            let read = |f: &Path| std::fs::read_to_string(f).map_err(|e| format!("{}: cannot read: {e}", f.display()));
            Ca::from_pem(&read(&ca_file)?, &read(&ca_key_file)?).map_err(|e| {
                format!(
                    "{} and {}: {e}; remove both to make a new CA (clients then trust the new ca.pem)",
                    ca_file.display(),
                    ca_key_file.display()
                )
            })?
        }
        (false, false) => {
            let ca = Ca::new("foreman standalone CA")?;
            write_private(&ca_key_file, ca.key_pem())?;
            write_private(&ca_file, ca.cert_pem())?;
            ca
        }
        (has_cert, _) => {
            let (there, missing) = if has_cert { (&ca_file, &ca_key_file) } else { (&ca_key_file, &ca_file) };
            return Err(format!(
                "{} is missing beside {}: restore it, or remove {} to make a new CA",
                missing.display(),
                there.display(),
                there.display()
            ));
        }
    };
    let (cert, key) = ca.issue(cluster, master, hosts)?;
    let tls = crate::rpc::tls::Tls::serving_only(ca.cert_pem(), &cert, &key)?;

    let (tokens_file, token_file) = (dir.join("tokens"), dir.join("admin.token"));
    if token_file.exists() {
        check_owner_only("the standalone's admin token", &token_file, "a token file")?;
    } else {
        let admin = [crate::rpc::tokens::GrantLine { project: "*".to_owned(), role: "admin".to_owned() }];
        let token = crate::rpc::tokens::add(&tokens_file, "admin", &admin)?;
        write_private(&token_file, &format!("{token}\n"))?;
    }
    crate::rpc::tls::install(tls)?;
    crate::rpc::tokens::install(&tokens_file)?;
    crate::rpc::tokens::install_nodes(nodes)?;
    Ok(Secured { ca: ca_file, token_file, profile: None })
}

/// Tells the CLI of this user where the CA and the admin token of the standalone at `address` are
/// ([`ClientProfile`]); the file written.
pub fn write_profile(home: &Path, address: &str, secured: &Secured) -> Result<PathBuf, String> {
    let path = ClientProfile::path(home, address);
    let dir = path.parent().unwrap_or(home);
    create_private_dirs(dir)?;
    let profile = ClientProfile { ca: secured.ca.clone(), token_file: secured.token_file.clone() };
    let text = toml::to_string(&profile).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let _ = std::fs::remove_file(&path);
    write_private(&path, &text)?;
    Ok(path)
}

/// Removes what an earlier secure standalone at `address` left for the CLI: an `--insecure` one serves plain text,
/// which a CLI trusting that CA could not reach.
fn forget_profile(home: &Path, address: &str) {
    let path = ClientProfile::path(home, address);
    if path.exists() {
        match std::fs::remove_file(&path) {
            Ok(()) => info!(profile = %path.display(), "--insecure: removed the CLI's profile of a secure standalone"),
            Err(e) => warn!(profile = %path.display(), "cannot remove the CLI's profile of a secure standalone: {e}"),
        }
    }
}

/// The hosts the standalone's server certificate names: loopback under every name, and the listen address's host.
fn hosts_of(layout: &Layout) -> Vec<String> {
    let mut hosts: Vec<String> = ["127.0.0.1", "localhost", "::1"].map(String::from).to_vec();
    if let Ok(a) = layout.master.addr.parse::<SocketAddr>() {
        let ip = a.ip().to_string();
        if !hosts.contains(&ip) && !a.ip().is_unspecified() {
            hosts.push(ip);
        }
    }
    hosts
}

/// What `foreman standalone` prints once it is up: where it listens, how it is secured, and how to use it.
pub fn banner(layout: &Layout, data_dir: &std::path::Path, secured: Option<&Secured>) -> String {
    let master = &layout.master.addr;
    let executors: Vec<&str> = layout.executors.iter().map(|e| e.addr.as_str()).collect();
    let mut to = if master == "127.0.0.1:10240" { String::new() } else { format!(" --master {master}") };
    let security = match secured {
        None => {
            "security: none (--insecure): plain text, and anyone who reaches these ports acts as anyone\n".to_owned()
        }
        Some(s) => {
            let flags = format!("--tls-ca {} --token-file {}", s.ca.display(), s.token_file.display());
            let found = match &s.profile {
                Some(p) => format!("this user's CLI finds them ({}); from another account give {flags}", p.display()),
                None => {
                    to.push(' ');
                    to.push_str(&flags);
                    format!("give the CLI {flags}")
                }
            };
            format!(
                "security: TLS, and every call needs a token; the CA and the admin token are in {}: {found}\n",
                s.ca.parent().unwrap_or(data_dir).display()
            )
        }
    };
    let http = &layout.master.http_addr;
    let http = match (http.is_empty(), secured) {
        (true, _) => String::new(),
        (false, None) => format!("HTTP API and metrics: http://{http}/api/v1/jobs, http://{http}/metrics\n"),
        (false, Some(s)) => format!(
            "HTTP API and metrics: http://{http}/api/v1/jobs, http://{http}/metrics (send the admin token: curl -H \
             \"Authorization: Bearer $(cat {})\" ...)\n",
            s.token_file.display()
        ),
    };
    format!(
        "foreman standalone: a master at {master} and {n} executor{s} ({list}), state in {dir}\n\
         {security}\
         {http}\
         submit a job:    foreman job create --type fake --config '{{\"workers\":4,\"target\":200,\"tick_ms\":10}}' --wait{to}\n\
         see the cluster: foreman cluster executors{to}\n\
         stop: Ctrl-C (executors drain and deregister, then the master steps down; jobs resume on the next start)",
        n = executors.len(),
        s = if executors.len() == 1 { "" } else { "s" },
        list = executors.join(", "),
        dir = data_dir.display(),
    )
}

/// Checks that every address of `layout` can be listened on now, so that a busy port is reported before anything
/// starts (the servers bind again right after).
fn check_ports(layout: &Layout) -> Result<(), StandaloneError> {
    let addrs = std::iter::once(&layout.master.addr).chain(layout.executors.iter().map(|e| &e.addr));
    for addr in addrs {
        if let Err(e) = std::net::TcpListener::bind(addr.as_str()) {
            let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                "; is another foreman running? Stop it, or give --addr / --executor-port"
            } else {
                ""
            };
            return Err(StandaloneError::Listen { addr: addr.clone(), reason: format!("{e}{hint}") });
        }
    }
    Ok(())
}

/// Runs a standalone cluster of the built-in job types until Ctrl-C or SIGTERM. `out` receives the banner.
pub async fn run(flags: &StandaloneFlags, out: &mut dyn std::io::Write) -> Result<(), StandaloneError> {
    run_with(flags, out, crate::jobs::builtin()).await
}

/// The same, its master accepting and its executors running the job types of `types` (a binary of one's own
/// job types; see docs/job-types.md).
pub async fn run_with(
    flags: &StandaloneFlags,
    out: &mut dyn std::io::Write,
    types: crate::jobs::JobTypes,
) -> Result<(), StandaloneError> {
    let layout = flags.layout()?;
    let store = MetaStore::embedded(&layout.master.cluster, Some(&flags.data_dir))
        .map_err(|e| StandaloneError::Store(e.to_string()))?;
    check_ports(&layout)?;
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let secured = if flags.insecure {
        warn!("--insecure: plain text, and no caller is checked; any local user or web page may act on this cluster");
        if let Some(home) = &home {
            forget_profile(home, &layout.master.addr);
        }
        None
    } else {
        let master = Principal::Master(layout.master.name.clone());
        let mut nodes = vec![master.clone()];
        nodes.extend(layout.executors.iter().map(|e| Principal::Executor(e.name.clone())));
        let mut s = secure(&flags.data_dir, &layout.master.cluster, &master, &nodes, &hosts_of(&layout))
            .map_err(StandaloneError::Security)?;
        match &home {
            Some(home) => match write_profile(home, &layout.master.addr, &s) {
                Ok(p) => s.profile = Some(p),
                Err(e) => warn!("cannot tell this user's CLI where the CA and the token are ({e}); see the banner"),
            },
            None => warn!("no HOME: this user's CLI is not told where the CA and the token are; see the banner"),
        }
        Some(s)
    };
    let seed = crate::master::cmd::process_seed(&layout.master.name);
    let master_addr: SocketAddr =
        layout.master.addr.parse().map_err(|e| StandaloneError::Config(format!("--addr: {e}")))?;
    #[cfg(not(madsim))]
    let http = crate::master::cmd::bind_http(&layout.master.http_addr)
        .await
        .map_err(|e| StandaloneError::Listen { addr: layout.master.http_addr.clone(), reason: e.to_string() })?;
    let master = Master::new(layout.master.clone(), store.clone(), seed).with_job_types(types.clone());
    #[cfg(not(madsim))]
    if let Some(listener) = http {
        let served = crate::master::http::serve(master.clone(), listener, std::future::pending());
        tokio::spawn(async move {
            if let Err(e) = served.await {
                warn!("the HTTP API stopped: {e}");
            }
        });
    }
    let (master_stop, mut master_stopping) = tokio::sync::watch::channel(false);
    let mut master_task = tokio::spawn(master.serve(master_addr, async move {
        let _ = master_stopping.wait_for(|stop| *stop).await;
    }));

    let (executors_stop, executors_stopping) = tokio::sync::watch::channel(false);
    let mut executor_tasks = Vec::new();
    for cfg in &layout.executors {
        let parent = cfg.dir().parent().map(std::path::Path::to_path_buf).unwrap_or_default();
        crate::rpc::tls::create_private_dirs(&parent).map_err(StandaloneError::Config)?;
        crate::executor::cmd::prepare(cfg).map_err(StandaloneError::Config)?;
        let addr: SocketAddr = cfg.addr.parse().map_err(|e| StandaloneError::Config(format!("{}: {e}", cfg.addr)))?;
        let e = Executor::new(cfg.clone(), Arc::new(types.clone()), None);
        e.use_metastore(store.clone());
        let mut stopping = executors_stopping.clone();
        let name = cfg.name.clone();
        executor_tasks.push((
            name,
            tokio::spawn(e.serve(addr, async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            })),
        ));
    }
    let _ = writeln!(out, "{}", banner(&layout, &flags.data_dir, secured.as_ref())).and_then(|()| out.flush());

    let ended_early = tokio::select! {
        biased;
        signal = crate::shutdown::requested() => {
            info!("{signal}: draining the executors, then stopping the master");
            None
        }
        r = &mut master_task => Some(r),
    };
    let master_failed = |reason: String| StandaloneError::Listen { addr: layout.master.addr.clone(), reason };
    if let Some(r) = ended_early {
        let _ = executors_stop.send(true);
        return Err(master_failed(match r {
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(())) | Err(_) => "the master stopped unexpectedly".into(),
        }));
    }
    let _ = executors_stop.send(true);
    for (name, task) in executor_tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(executor = %name, "stopped with an error: {e}"),
            Err(e) => warn!(executor = %name, "ended abnormally: {e}"),
        }
    }
    let _ = master_stop.send(true);
    match master_task.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(master_failed(e.to_string())),
        Err(e) => Err(master_failed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        flags: StandaloneFlags,
    }

    fn flags(args: &[&str]) -> StandaloneFlags {
        Cmd::try_parse_from(std::iter::once("standalone").chain(args.iter().copied())).unwrap().flags
    }

    #[test]
    fn defaults_give_a_master_and_two_executors_beside_it() {
        let layout = flags(&[]).layout().unwrap();
        assert_eq!(layout.master.addr, "127.0.0.1:10240");
        let addrs: Vec<&str> = layout.executors.iter().map(|e| e.addr.as_str()).collect();
        assert_eq!(addrs, ["127.0.0.1:10340", "127.0.0.1:10341"]);
        assert!(layout.executors.iter().all(|e| e.join == ["127.0.0.1:10240"] && e.capacity == 16));
        let names: Vec<&str> = layout.executors.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["standalone-executor-1", "standalone-executor-2"]);
    }

    #[test]
    fn bad_layouts_are_refused_with_what_to_fix() {
        let cases: &[(&[&str], &str)] = &[
            (&["--addr", "localhost"], "--addr \"localhost\""),
            (&["--executors", "0"], "--executors 0: it must be from 1 to 64"),
            (&["--executors", "65"], "--executors 65"),
            (&["--addr", "127.0.0.1:65500"], "do not fit in 1..=65535"),
            (&["--executor-port", "10239", "--executors", "3"], "include the master's port 10240"),
            (&["--capacity", "0"], "--capacity 0: each executor needs at least 1 slot"),
            (&["--capacity", "2000000"], "executor 1: invalid setting `capacity`"),
            (&["--config", "/nonexistent/foreman.toml"], "cannot read the configuration file"),
            (&["--http-names", "http://foreman.example"], "http.names"),
        ];
        for (args, expected) in cases {
            let e = flags(args).layout().unwrap_err().to_string();
            assert!(e.contains(expected), "{args:?}: {e:?} does not say {expected:?}");
        }
    }

    #[test]
    fn http_names_add_to_the_ones_the_api_answers_to() {
        let layout = flags(&["--http-names", "foreman.example:10280,foreman.example"]).layout().unwrap();
        assert_eq!(layout.master.http.names, ["foreman.example:10280", "foreman.example"]);
    }

    #[test]
    fn the_banner_says_where_it_listens_and_how_to_submit_a_job() {
        let layout = flags(&["--addr", "127.0.0.1:20000", "--executors", "1"]).layout().unwrap();
        let text = banner(&layout, std::path::Path::new("data"), None);
        assert!(text.contains("a master at 127.0.0.1:20000 and 1 executor (127.0.0.1:20100), state in data"), "{text}");
        assert!(text.contains("--wait --master 127.0.0.1:20000\n"), "{text}");
        let default = banner(&flags(&[]).layout().unwrap(), std::path::Path::new("foreman-data"), None);
        assert!(default.contains("foreman job create --type fake"), "{default}");
    }
}
