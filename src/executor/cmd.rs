//! `foreman executor`: loads and validates the configuration, then registers with the masters and serves until
//! Ctrl-C, running the job masters and workers of every job type this build knows ([`crate::jobs::builtin`], or
//! the types a binary of one's own passes to [`run_with`]).

use std::net::SocketAddr;
use std::sync::Arc;

use tracing::{info, warn};

use super::Executor;
use crate::config::{ExecutorConfig, ExecutorFlags};

/// Why `foreman executor` could not run; the message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorCmdError {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
}

/// Readies executor `cfg`'s own directory before it registers: refused when it is not its own (another user's, a
/// link, open to others), and what an earlier life left running there (exec commands it could not kill as it died)
/// is killed (`framework::process::sweep_left_behind`).
pub fn prepare(cfg: &ExecutorConfig) -> Result<(), String> {
    let dir = cfg.dir();
    crate::framework::process::private_dir(&dir).map_err(|e| format!("the executor's directory (--data-dir): {e}"))?;
    for line in crate::framework::process::sweep_left_behind(&dir) {
        warn!(executor = %cfg.name, "{line}");
    }
    Ok(())
}

pub async fn run(flags: &ExecutorFlags) -> Result<(), ExecutorCmdError> {
    run_with(flags, crate::jobs::builtin()).await
}

/// The same, running the job masters and workers of `types`.
pub async fn run_with(flags: &ExecutorFlags, types: crate::jobs::JobTypes) -> Result<(), ExecutorCmdError> {
    let (cfg, warnings) = ExecutorConfig::load(flags).map_err(|e| ExecutorCmdError::Config(e.to_string()))?;
    for w in warnings {
        warn!("configuration: {w}");
    }
    let addr: SocketAddr = cfg.addr.parse().map_err(|e| ExecutorCmdError::Listen {
        addr: cfg.addr.clone(),
        reason: format!("{e}; expected host:port with an IP address, e.g. 127.0.0.1:10340"),
    })?;
    cfg.tls.require("executor").map_err(ExecutorCmdError::Config)?;
    if cfg.tls.insecure {
        warn!("--insecure: plain text, and no caller is proven; anyone who reaches {} may act as any node", cfg.addr);
    }
    let me = crate::core::auth::Principal::Executor(cfg.name.clone());
    if crate::rpc::tls::set_up(cfg.tls.files(), |t| t.expect(&me, None)).map_err(ExecutorCmdError::Config)? {
        info!("mutual TLS on: gRPC peers need a certificate from the cluster CA; calls are checked by role");
    }
    // The etcd files are read when the masters name the metastore; a bad one stops the start here instead.
    let etcd = crate::meta::access::EtcdAccess::load(&super::etcd_files(&cfg.etcd_client))
        .map_err(ExecutorCmdError::Config)?;
    prepare(&cfg).map_err(ExecutorCmdError::Config)?;
    info!(name = %cfg.name, addr = %cfg.addr, advertise = %cfg.advertise_addr, join = %cfg.join.join(","), etcd_access = %etcd.describe(), "executor starting");
    let e = Executor::new(cfg, Arc::new(types), None);
    let shutdown = async {
        let signal = crate::shutdown::requested().await;
        info!("{signal}: draining (no new tasks; running tasks stop at a checkpoint), deregistering, exiting");
    };
    e.serve(addr, shutdown)
        .await
        .map_err(|e| ExecutorCmdError::Listen { addr: addr.to_string(), reason: crate::rpc::connect::error_chain(&e) })
}
