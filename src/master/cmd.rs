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

/// The etcd client of a master, checked at start: the files of `client` are loaded (a bad one is a configuration
/// error naming its flag), then a read shows whether etcd accepts this process. A refusal about
/// TLS or credentials stops the start with what to check; an etcd that is down or slow only warns (the process keeps
/// trying, as it always did).
pub(crate) async fn open_etcd(
    endpoints: &[String],
    cluster: &str,
    op_timeout: std::time::Duration,
    client: &crate::config::EtcdClientConfig,
) -> Result<MetaStore, MasterCmdError> {
    use crate::meta::access::{access_hint, closed_by_server, EtcdAccess};
    let access = EtcdAccess::load(&etcd_files(client)).map_err(MasterCmdError::Config)?;
    let tls = crate::config::etcd_scheme(endpoints).is_ok_and(|s| s == crate::config::EtcdScheme::Tls);
    let hint = |reason: &str| access_hint(reason, tls).or_else(|| access.closed_hint(reason));
    let refused = |reason: String| {
        let reason = match hint(&reason) {
            Some(hint) => format!("{reason} ({hint})"),
            None => reason,
        };
        MasterCmdError::Store { endpoints: endpoints.join(","), reason }
    };
    let store =
        MetaStore::etcd_with(endpoints, cluster, op_timeout, &access).await.map_err(|e| refused(e.to_string()))?;
    let mut probed = store.probe().await;
    // A connection closed may also be an etcd restarting: asked again, that one answers.
    for _ in 0..PROBE_CLOSED_RETRIES {
        match &probed {
            Err(e) if access.closed_hint(&e.to_string()).is_some() => {
                tokio::time::sleep(PROBE_CLOSED_PAUSE).await;
                probed = store.probe().await;
            }
            _ => break,
        }
    }
    match probed {
        Ok(()) => info!(etcd = %endpoints.join(","), access = %access.describe(), "etcd accepts this process"),
        Err(e) if hint(&e.to_string()).is_some() => return Err(refused(e.to_string())),
        Err(e) if !tls && closed_by_server(&e.to_string()) && serves_https(endpoints, cluster, op_timeout).await => {
            return Err(refused(format!("{e}; etcd answers a TLS handshake: it serves https")));
        }
        Err(e) => warn!(etcd = %endpoints.join(","), "etcd did not answer at start ({e}); trying on"),
    }
    Ok(store)
}

/// The files and user of `[etcd-client]`, as `meta::access` reads them.
pub(crate) fn etcd_files(c: &crate::config::EtcdClientConfig) -> crate::meta::access::EtcdFiles<'_> {
    crate::meta::access::EtcdFiles {
        ca: c.ca.as_deref(),
        cert: c.cert.as_deref(),
        key: c.key.as_deref(),
        user: c.user.as_deref(),
        password_file: c.password_file.as_deref(),
    }
}

/// How many times a start probe whose connection etcd closed is tried again, and the pause before each.
const PROBE_CLOSED_RETRIES: usize = 2;
const PROBE_CLOSED_PAUSE: std::time::Duration = std::time::Duration::from_millis(300);

/// Whether the plain `endpoints` serve TLS: a plain-text client of a TLS etcd only sees its connection closed, which
/// an etcd restarting shows too, so a TLS handshake is tried, trusting a CA made for it: an etcd that serves TLS
/// fails it at its certificate (the production build; the simulated etcd has no TLS).
async fn serves_https(endpoints: &[String], cluster: &str, op_timeout: std::time::Duration) -> bool {
    let Some(access) = crate::meta::access::EtcdAccess::trusting_nothing() else { return false };
    let https: Vec<String> = endpoints
        .iter()
        .filter_map(|e| crate::config::split_etcd_endpoint(e).ok())
        .map(|(_, host_port)| format!("https://{host_port}"))
        .collect();
    let Ok(store) = MetaStore::etcd_with(&https, cluster, op_timeout, &access).await else { return false };
    match store.probe().await {
        Ok(()) => true,
        Err(e) => crate::meta::access::access_hint(&e.to_string(), true).is_some_and(|h| h.contains("not trusted")),
    }
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
    cfg.tls.require("master").map_err(MasterCmdError::Config)?;
    if cfg.tls.insecure {
        warn!("--insecure: plain text, and no caller is proven; anyone who reaches {} may act as any node", cfg.addr);
    }
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
    let store = open_etcd(&cfg.etcd, &cfg.cluster, cfg.rpc.metastore_timeout, &cfg.etcd_client).await?;
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
