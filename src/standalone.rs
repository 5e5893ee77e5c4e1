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
use std::path::PathBuf;
use std::sync::Arc;

use tracing::{info, warn};

use crate::config::MasterConfig;
use crate::executor::Executor;
use crate::master::Master;
use crate::meta::MetaStore;

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
    /// A master configuration file (TOML, as `foreman master --config` takes) for timings and policies; its
    /// `addr` and `etcd` settings are not used here.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Why `foreman standalone` could not run; the message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// Bad flags or configuration: nothing was started.
    #[error("{0}")]
    Config(String),
    #[error("cannot use the data directory: {0}")]
    Store(String),
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
            let mut e = crate::config::ExecutorConfig {
                name: format!("standalone-executor-{}", i + 1),
                addr: SocketAddr::new(addr.ip(), port as u16).to_string(),
                join: vec![self.addr.clone()],
                capacity: self.capacity,
                ..Default::default()
            };
            e.fill_derived();
            e.validate().map_err(|e| bad(format!("executor {}: {e}", i + 1)))?;
            executors.push(e);
        }
        Ok(Layout { master, executors })
    }
}

/// What `foreman standalone` prints once it is up: where it listens and how to use it.
pub fn banner(layout: &Layout, data_dir: &std::path::Path) -> String {
    let master = &layout.master.addr;
    let executors: Vec<&str> = layout.executors.iter().map(|e| e.addr.as_str()).collect();
    let to = if master == "127.0.0.1:10240" { String::new() } else { format!(" --master {master}") };
    let http = &layout.master.http_addr;
    let http = if http.is_empty() {
        String::new()
    } else {
        format!("HTTP API and metrics: http://{http}/api/v1/jobs, http://{http}/metrics\n")
    };
    format!(
        "foreman standalone: a master at {master} and {n} executor{s} ({list}), state in {dir}\n\
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
    let _ = writeln!(out, "{}", banner(&layout, &flags.data_dir)).and_then(|()| out.flush());

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
        let text = banner(&layout, std::path::Path::new("data"));
        assert!(text.contains("a master at 127.0.0.1:20000 and 1 executor (127.0.0.1:20100), state in data"), "{text}");
        assert!(text.contains("--wait --master 127.0.0.1:20000\n"), "{text}");
        let default = banner(&flags(&[]).layout().unwrap(), std::path::Path::new("foreman-data"));
        assert!(default.contains("foreman job create --type fake"), "{default}");
    }
}
