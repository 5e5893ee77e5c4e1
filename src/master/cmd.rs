//! `foreman master`: loads and validates the configuration, connects to the metastore, and serves gRPC (and, in the
//! production build, the HTTP API on `http-addr`) until Ctrl-C. Both listeners are bound before the master starts
//! campaigning, so that a port in use fails the start instead of leaving a master half reachable.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

use tracing::{info, warn};

use super::Master;
use crate::config::{MasterConfig, MasterFlags};
use crate::meta::MetaStore;

/// Why `foreman master` could not run; the message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum MasterCmdError {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("cannot use the metastore at {endpoints}: {reason}")]
    Store { endpoints: String, reason: String },
}

/// A seed for tie-breaks and generated ids that differs between processes (production needs no replay).
pub(crate) fn process_seed(name: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    std::process::id().hash(&mut h);
    h.finish()
}

/// The HTTP API's listener on `addr`; `None` when `addr` is empty (the API is off).
#[cfg(not(madsim))]
pub(crate) async fn bind_http(addr: &str) -> Result<Option<tokio::net::TcpListener>, MasterCmdError> {
    if addr.is_empty() {
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| MasterCmdError::Listen { addr: addr.to_owned(), reason: format!("{e} (http-addr)") })?;
    Ok(Some(listener))
}

pub async fn run(flags: &MasterFlags) -> Result<(), MasterCmdError> {
    run_with(flags, crate::jobs::builtin()).await
}

/// The same, accepting jobs of `types` (their configurations are checked at `CreateJob`).
pub async fn run_with(flags: &MasterFlags, types: crate::jobs::JobTypes) -> Result<(), MasterCmdError> {
    let (cfg, warnings) = MasterConfig::load(flags).map_err(|e| MasterCmdError::Config(e.to_string()))?;
    for w in warnings {
        warn!("configuration: {w}");
    }
    let addr: SocketAddr = cfg.addr.parse().map_err(|e| MasterCmdError::Listen {
        addr: cfg.addr.clone(),
        reason: format!("{e}; expected host:port with an IP address, e.g. 127.0.0.1:10240"),
    })?;
    let me = crate::core::auth::Principal::Master(cfg.name.clone());
    if crate::rpc::tls::set_up(cfg.tls.files(), |t| t.expect(&me, Some(&cfg.cluster)))
        .map_err(MasterCmdError::Config)?
    {
        info!("mutual TLS on: gRPC peers need a certificate from the cluster CA; calls are checked by role");
    }
    if let Some(tokens) = &cfg.auth.tokens {
        crate::rpc::tokens::install(tokens).map_err(MasterCmdError::Config)?;
        info!(tokens = %tokens.display(), "users' tokens on: job calls need a token's grants");
    }
    #[cfg(not(madsim))]
    let http = bind_http(&cfg.http_addr).await?;
    let store = MetaStore::etcd(&cfg.etcd, &cfg.cluster, cfg.rpc.metastore_timeout)
        .await
        .map_err(|e| MasterCmdError::Store { endpoints: cfg.etcd.join(","), reason: e.to_string() })?;
    let seed = process_seed(&cfg.name);
    info!(name = %cfg.name, addr = %cfg.addr, advertise = %cfg.advertise_addr, etcd = %cfg.etcd.join(","), "master starting");
    let m = Master::new(cfg, store, seed).with_job_types(types);
    // why: the simulation serves no HTTP (its runtime has no real sockets for axum).
    #[cfg(not(madsim))]
    if let Some(listener) = http {
        let local = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        info!(http = %local, "serving the HTTP API and /metrics");
        let served = super::http::serve(m.clone(), listener, std::future::pending());
        tokio::spawn(async move {
            if let Err(e) = served.await {
                warn!("the HTTP API stopped: {e}");
            }
        });
    }
    let shutdown = async {
        let signal = crate::shutdown::requested().await;
        info!("{signal}: stepping down, giving the election lease back, exiting");
    };
    m.serve(addr, shutdown)
        .await
        .map_err(|e| MasterCmdError::Listen { addr: addr.to_string(), reason: crate::rpc::connect::error_chain(&e) })
}
