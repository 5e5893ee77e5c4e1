//! `foreman master`: loads and validates the configuration, connects to the metastore, and serves until Ctrl-C.

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

pub async fn run(flags: &MasterFlags) -> Result<(), MasterCmdError> {
    let (cfg, warnings) = MasterConfig::load(flags).map_err(|e| MasterCmdError::Config(e.to_string()))?;
    for w in warnings {
        warn!("configuration: {w}");
    }
    let addr: SocketAddr = cfg.addr.parse().map_err(|e| MasterCmdError::Listen {
        addr: cfg.addr.clone(),
        reason: format!("{e}; expected host:port with an IP address, e.g. 127.0.0.1:10240"),
    })?;
    let store = MetaStore::etcd(&cfg.etcd, &cfg.cluster, cfg.rpc.metastore_timeout)
        .await
        .map_err(|e| MasterCmdError::Store { endpoints: cfg.etcd.join(","), reason: e.to_string() })?;
    let seed = process_seed(&cfg.name);
    info!(name = %cfg.name, addr = %cfg.addr, advertise = %cfg.advertise_addr, etcd = %cfg.etcd.join(","), "master starting");
    let m = Master::new(cfg, store, seed);
    let shutdown = async {
        let signal = crate::shutdown::requested().await;
        info!("{signal}: stepping down, giving the election lease back, exiting");
    };
    m.serve(addr, shutdown).await.map_err(|e| MasterCmdError::Listen { addr: addr.to_string(), reason: e.to_string() })
}
