//! Master and executor configuration: TOML files and command-line flags, layered and validated.
//!
//! A setting's value comes from, in increasing precedence: the built-in default, the `--config` file, the
//! command-line flag. Then the derived defaults are filled in (`name`, `advertise-addr`) and the whole is
//! validated once, at start-up, before anything acts on it (design.md §6).
//!
//! Invariants a loaded configuration keeps:
//! - every duration is positive and a whole number of milliseconds (the core counts time in milliseconds);
//! - the safety orderings of design.md §5/§6 hold (self-fence before offline, step-down before the lease can
//!   expire); the usefulness ordering (self-fence outlives a leader failover) is only warned about;
//! - every address is `host:port` (etcd endpoints may carry `http://` or `https://`, one scheme for all), every list
//!   is non-empty and bounded;
//! - the effective configuration serializes to TOML that loads back to an equal value.
//!
//! Durations are human strings in TOML and on the command line (`500ms`, `5s`, `1m30s`, `1.5s`); see
//! [`parse_duration`] and [`format_duration`].

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::core::labels::{parse_label, validate_labels, Labels};
use crate::core::timing::{largest_rate, ordering_holds, ClockTolerance, HeartbeatTiming, TimingError};

/// Below this tolerated clock-rate error (0.1 %, ten times what commodity clocks drift), start-up warns.
pub const CLOCK_RATE_WARN: f64 = 0.001;

/// The largest configuration file read, in bytes.
pub const CONFIG_FILE_MAX_BYTES: u64 = 1 << 20;
/// The most entries an address list (`etcd`, `join`) may hold.
pub const ENDPOINTS_MAX: usize = 32;
/// The largest executor capacity, in slots (the registry's rule).
pub use crate::core::registry::CAPACITY_MAX;
/// The longest node or cluster name.
pub use crate::core::registry::NAME_MAX_LEN;
/// The longest executor task queue.
pub const TASK_QUEUE_MAX: u32 = 65_536;
/// The shortest election lease real etcd grants.
pub const LEASE_TTL_MIN: Duration = Duration::from_secs(2);
/// The master's default HTTP listen address (10280: clear of the gRPC ports 10240+ and 10340+ of the examples,
/// and of the kubelet's 10248-10250).
pub const HTTP_ADDR_DEFAULT: &str = "127.0.0.1:10280";
/// The most names `http.names` may list.
pub const HTTP_NAMES_MAX: usize = 32;
/// The largest `http.max-connections`.
pub const HTTP_CONNECTIONS_MAX: u32 = 65_536;
/// How early the simulated etcd may expire a lease (design.md §4); the step-down deadline keeps this margin.
pub const LEASE_EARLY_EXPIRY: Duration = Duration::from_secs(1);
/// The longest a client of this crate (`foreman job create`) resends one create token: every attempt of a create
/// ends within this long of the first. `jobs.tombstone-retention` must outlast it (README, "Design decisions").
pub const CREATE_RETRY_SPAN_MAX: Duration = Duration::from_secs(60);

/// Why a configuration cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML or does not fit the schema; `message` names the key and line.
    #[error("config file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// A setting breaks a rule. `setting` is the dotted path (`executors.self-fence`).
    #[error("invalid setting `{setting}`: {rule}")]
    Invalid { setting: String, rule: String },
}

fn invalid(setting: impl Into<String>, rule: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { setting: setting.into(), rule: rule.into() }
}

// ---------------------------------------------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------------------------------------------

pub use crate::core::duration::{format_duration, parse_duration, serde_duration};

// ---------------------------------------------------------------------------------------------------------------
// Master configuration
// ---------------------------------------------------------------------------------------------------------------

/// A master's settings (`foreman master`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct MasterConfig {
    /// The node's name in logs and listings; empty means `master-<advertise-addr>`.
    pub name: String,
    /// The listen address, `host:port`.
    pub addr: String,
    /// The address other nodes reach this master at; empty means `addr`.
    pub advertise_addr: String,
    /// The listen address of the HTTP/JSON API and the Prometheus metrics, `host:port`; empty turns it off.
    /// Production build only (the simulation serves no HTTP).
    pub http_addr: String,
    /// etcd endpoints: `host:port` or `http://host:port` (plain text), or `https://host:port` (TLS, with
    /// `etcd-client.ca`); all of one scheme.
    pub etcd: Vec<String>,
    /// The cluster name; all metastore keys live under `/foreman/<cluster>/`.
    pub cluster: String,
    /// Leader election.
    pub election: ElectionConfig,
    /// Executor liveness, announced to executors when they register.
    pub executors: ExecutorsConfig,
    /// Framework heartbeats: job manager → job masters, job masters → their workers.
    pub workers: WorkersConfig,
    /// Restarts of a job whose job master was lost.
    pub backoff: BackoffConfig,
    /// Task placement.
    pub placement: PlacementConfig,
    /// Deadlines on outgoing calls.
    pub rpc: RpcConfig,
    /// What is kept of deleted jobs.
    pub jobs: JobsConfig,
    /// The HTTP API's connection limits and the host names it answers to.
    pub http: HttpConfig,
    /// Mutual TLS on gRPC (none: plain text).
    pub tls: TlsConfig,
    /// How this master reaches etcd: TLS files and a user.
    pub etcd_client: EtcdClientConfig,
    /// Users' tokens (none: no user is known by a token).
    pub auth: AuthConfig,
}

impl Default for MasterConfig {
    fn default() -> MasterConfig {
        MasterConfig {
            name: String::new(),
            addr: "127.0.0.1:10240".to_owned(),
            advertise_addr: String::new(),
            http_addr: HTTP_ADDR_DEFAULT.to_owned(),
            etcd: vec!["127.0.0.1:2379".to_owned()],
            cluster: "default".to_owned(),
            election: ElectionConfig::default(),
            executors: ExecutorsConfig::default(),
            workers: WorkersConfig::default(),
            backoff: BackoffConfig::default(),
            placement: PlacementConfig::default(),
            rpc: RpcConfig::default(),
            jobs: JobsConfig::default(),
            http: HttpConfig::default(),
            tls: TlsConfig::default(),
            etcd_client: EtcdClientConfig::default(),
            auth: AuthConfig::default(),
        }
    }
}

/// Users and what they may do (`[auth]`, masters only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The tokens file (JSON lines, `foreman token add` appends to it; owner-only). With it, every job call,
    /// resign and user deregistration needs a token's grants, even without TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<PathBuf>,
}

/// Leader election timing (design.md §5 rule 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ElectionConfig {
    /// The TTL of the election lease.
    #[serde(with = "serde_duration")]
    pub lease_ttl: Duration,
    /// How often the leader renews its lease.
    #[serde(with = "serde_duration")]
    pub keepalive_interval: Duration,
    /// The leader stops acting if no keepalive succeeded within this long.
    #[serde(with = "serde_duration")]
    pub step_down: Duration,
    /// The pause between campaign attempts.
    #[serde(with = "serde_duration")]
    pub campaign_retry: Duration,
}

impl Default for ElectionConfig {
    fn default() -> ElectionConfig {
        ElectionConfig {
            lease_ttl: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(1),
            step_down: Duration::from_secs(3),
            campaign_retry: Duration::from_secs(1),
        }
    }
}

/// Executor liveness: the heartbeat contract plus the leader's checking and self-suspicion settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ExecutorsConfig {
    /// How often an executor heartbeats.
    #[serde(with = "serde_duration")]
    pub heartbeat_interval: Duration,
    /// The deadline an executor puts on each heartbeat RPC.
    #[serde(with = "serde_duration")]
    pub heartbeat_timeout: Duration,
    /// With no acknowledged heartbeat for this long, an executor stops all its tasks.
    #[serde(with = "serde_duration")]
    pub self_fence: Duration,
    /// With no heartbeat for this long, the leader declares an executor offline.
    #[serde(with = "serde_duration")]
    pub offline_ttl: Duration,
    /// How often the leader looks for expired executors.
    #[serde(with = "serde_duration")]
    pub check_interval: Duration,
    /// If more than this fraction of executors expire at once, the leader suspects itself.
    pub suspect_fraction: f64,
    /// ...and holds those evictions at most this long.
    #[serde(with = "serde_duration")]
    pub suspect_hold: Duration,
    /// Executors carry the heartbeats of the job masters they host in their own (one call per executor per
    /// interval instead of one per job master, `framework::carrier`): a job master then heartbeats at the executor
    /// heartbeat's pace, and its self-fence must outlast one executor round (rule: workers.self-fence >
    /// executors.heartbeat-interval + executors.heartbeat-timeout). Off by default (each job master calls the
    /// leader itself): see the README's design decisions for what keeps it off.
    pub carry_job_masters: bool,
}

impl Default for ExecutorsConfig {
    fn default() -> ExecutorsConfig {
        let t = HeartbeatTiming::executor_default();
        ExecutorsConfig {
            heartbeat_interval: t.interval,
            heartbeat_timeout: t.timeout,
            self_fence: t.self_fence,
            offline_ttl: t.offline_ttl,
            check_interval: Duration::from_millis(500),
            suspect_fraction: 0.5,
            suspect_hold: Duration::from_secs(10),
            carry_job_masters: false,
        }
    }
}

impl ExecutorsConfig {
    /// The heartbeat contract this section describes.
    pub fn timing(&self) -> HeartbeatTiming {
        HeartbeatTiming {
            interval: self.heartbeat_interval,
            timeout: self.heartbeat_timeout,
            self_fence: self.self_fence,
            offline_ttl: self.offline_ttl,
        }
    }
}

/// Framework heartbeats, at both levels (job manager → job masters, job masters → workers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// How often a job master or worker heartbeats.
    #[serde(with = "serde_duration")]
    pub heartbeat_interval: Duration,
    /// The deadline on each heartbeat RPC.
    #[serde(with = "serde_duration")]
    pub heartbeat_timeout: Duration,
    /// With no acknowledged heartbeat for this long, a job master or worker stops itself.
    #[serde(with = "serde_duration")]
    pub self_fence: Duration,
    /// With no heartbeat for this long, its master declares it offline.
    #[serde(with = "serde_duration")]
    pub offline_ttl: Duration,
}

impl Default for WorkersConfig {
    fn default() -> WorkersConfig {
        let t = HeartbeatTiming::worker_default();
        WorkersConfig {
            heartbeat_interval: t.interval,
            heartbeat_timeout: t.timeout,
            self_fence: t.self_fence,
            offline_ttl: t.offline_ttl,
        }
    }
}

impl WorkersConfig {
    /// The heartbeat contract this section describes.
    pub fn timing(&self) -> HeartbeatTiming {
        HeartbeatTiming {
            interval: self.heartbeat_interval,
            timeout: self.heartbeat_timeout,
            self_fence: self.self_fence,
            offline_ttl: self.offline_ttl,
        }
    }
}

/// The restart backoff of a job whose job master was lost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct BackoffConfig {
    /// The first delay.
    #[serde(with = "serde_duration")]
    pub initial: Duration,
    /// Each delay is the previous one times this (at least 1).
    pub multiplier: f64,
    /// The longest delay.
    #[serde(with = "serde_duration")]
    pub max: Duration,
    /// Each delay is drawn uniformly within ±jitter of the base, in [0, 1).
    pub jitter: f64,
    /// Healthy this long, the backoff starts over.
    #[serde(with = "serde_duration")]
    pub reset_after: Duration,
    /// After this many restarts the job fails.
    pub max_tries: u32,
}

impl Default for BackoffConfig {
    fn default() -> BackoffConfig {
        BackoffConfig {
            initial: Duration::from_secs(1),
            multiplier: 1.5,
            max: Duration::from_secs(60),
            jitter: 0.2,
            reset_after: Duration::from_secs(300),
            max_tries: 100,
        }
    }
}

/// How placement chooses among executors that fit (the core's; named on the command line as in the file).
pub use crate::core::placement::Strategy;

impl clap::ValueEnum for Strategy {
    fn value_variants<'a>() -> &'a [Strategy] {
        &[Strategy::LeastLoaded, Strategy::BinPack]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(match self {
            Strategy::LeastLoaded => clap::builder::PossibleValue::new("least-loaded")
                .help("Spread: the executor with the most free capacity"),
            Strategy::BinPack => {
                clap::builder::PossibleValue::new("bin-pack").help("Pack: the fullest executor that still fits")
            }
        })
    }
}

/// Task placement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct PlacementConfig {
    /// How to choose among executors that fit.
    pub strategy: Strategy,
    /// Capacity held for a task placed but not yet reported by its executor.
    #[serde(with = "serde_duration")]
    pub reservation_ttl: Duration,
    /// How long a worker waits for the executor holding its local resources (an exec worker's scratch directory)
    /// when that executor cannot take it (full, or not serving), before they are given up as lost and the worker
    /// is placed elsewhere (its job type told).
    #[serde(with = "serde_duration")]
    pub pin_wait: Duration,
}

impl Default for PlacementConfig {
    fn default() -> PlacementConfig {
        PlacementConfig {
            strategy: Strategy::LeastLoaded,
            reservation_ttl: Duration::from_secs(10),
            pin_wait: Duration::from_secs(60),
        }
    }
}

impl BackoffConfig {
    /// The core's policy of this section.
    pub fn policy(&self) -> crate::core::backoff::BackoffPolicy {
        crate::core::backoff::BackoffPolicy {
            initial: self.initial,
            multiplier: self.multiplier,
            max: self.max,
            jitter: self.jitter,
            reset_after: self.reset_after,
            max_tries: self.max_tries,
        }
    }
}

impl PlacementConfig {
    /// The core's policy of this section.
    pub fn policy(&self) -> crate::core::placement::PlacementPolicy {
        crate::core::placement::PlacementPolicy { strategy: self.strategy, reservation_ttl: self.reservation_ttl }
    }
}

impl ExecutorsConfig {
    /// The core registry's policy of this section.
    pub fn registry_policy(&self) -> crate::core::registry::RegistryPolicy {
        crate::core::registry::RegistryPolicy {
            offline_ttl: self.offline_ttl,
            suspect_fraction: self.suspect_fraction,
            suspect_hold: self.suspect_hold,
            one_offline_per_check: false,
        }
    }
}

/// Deadlines on a master's outgoing calls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RpcConfig {
    /// The deadline on outgoing RPCs, forwarding to the leader included.
    #[serde(with = "serde_duration")]
    pub request_timeout: Duration,
    /// The deadline on each metastore call.
    #[serde(with = "serde_duration")]
    pub metastore_timeout: Duration,
}

impl Default for RpcConfig {
    fn default() -> RpcConfig {
        RpcConfig { request_timeout: Duration::from_secs(3), metastore_timeout: Duration::from_secs(2) }
    }
}

/// What is kept of deleted jobs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct JobsConfig {
    /// How long a deleted job's create token (its tombstone) is kept, refusing a delayed repeat of its create
    /// (`JOB_DELETED`); then it is collected. It must outlast the longest a create can be on its way
    /// ([`MasterConfig::create_window`]).
    #[serde(with = "serde_duration")]
    pub tombstone_retention: Duration,
}

impl Default for JobsConfig {
    fn default() -> JobsConfig {
        JobsConfig { tombstone_retention: Duration::from_secs(600) }
    }
}

/// The HTTP API's connection limits and the names it answers to (production build only; `http-addr` turns the API
/// on and off).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Host names the API answers to besides its own (`http-addr`, and `localhost`, `127.0.0.1` and `[::1]` on its
    /// port), written as a client's `Host` header carries them: `host:port`, or `host` for a client on port 80 or
    /// 443 (behind a proxy). A request naming another host is refused (421), and so is an `Origin` that is not
    /// `http://` or `https://` one of these names (403): a web page cannot drive the API, even on loopback.
    pub names: Vec<String>,
    /// The most connections open at once; one more is answered 503 and closed. Absent: derived at start from the
    /// process's file-descriptor limit, so that a flood of connections cannot starve gRPC, etcd and executors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// The longest a client may take to send a request's headers, from their first byte; then the connection is
    /// closed.
    #[serde(with = "serde_duration")]
    pub header_read_timeout: Duration,
    /// The longest a connection may stay open with no request on it; then it is closed.
    #[serde(with = "serde_duration")]
    pub idle_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            names: vec![],
            max_connections: None,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Mutual TLS on every gRPC link (production build): the cluster CA and this process's certificate and key, PEM
/// files as `foreman tls init` writes them. All three, or none and `insecure` (plain text, nothing proven): a
/// master or executor with neither refuses to start ([`TlsConfig::require`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The cluster CA's certificate: peers must hold a certificate it signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// This process's certificate (SAN URI `foreman://<cluster>/<role>/<name>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// This process's private key; refused if group or others may read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Serve and call in plain text, with no TLS files (`--insecure`): anyone who reaches the port may call as
    /// anyone (a tokens file still holds users to their tokens). For a trusted network or a test only.
    pub insecure: bool,
}

impl TlsConfig {
    /// A master or executor serves mutual TLS, or says it does not: refused when no TLS file is set and
    /// `insecure` is not either (`role` names the command in the message).
    pub fn require(&self, role: &str) -> Result<(), String> {
        if self.insecure || self.ca.is_some() {
            return Ok(());
        }
        Err(format!(
            "no TLS configured: a foreman {role} serves mutual TLS by default, so that no one who can reach its \
             port can act as a master, an executor or a user. Make the certificates with `foreman tls init --dir \
             DIR --cluster NAME --masters ... --executors ...` and give this process --tls-ca, --tls-cert and \
             --tls-key (or [tls] ca, cert, key in its configuration); or pass --insecure (tls.insecure = true) to \
             serve plain text on a trusted network"
        ))
    }

    /// The CA, certificate and key files, as set.
    pub fn files(&self) -> [Option<&Path>; 3] {
        [self.ca.as_deref(), self.cert.as_deref(), self.key.as_deref()]
    }
}

/// All three TLS files or none (the files themselves are read and checked at start, by `rpc::tls`).
fn check_tls(t: &TlsConfig) -> Result<(), ConfigError> {
    let set = [t.ca.is_some(), t.cert.is_some(), t.key.is_some()];
    if set.iter().all(|b| *b) && t.insecure {
        return Err(invalid("tls", "insecure (--insecure) with ca, cert and key set: choose TLS or plain text"));
    }
    if set.iter().all(|b| *b) || set.iter().all(|b| !*b) {
        return Ok(());
    }
    let missing: Vec<&str> = ["tls.ca (--tls-ca)", "tls.cert (--tls-cert)", "tls.key (--tls-key)"]
        .iter()
        .zip(set)
        .filter(|(_, s)| !s)
        .map(|(n, _)| *n)
        .collect();
    Err(invalid("tls", format!("set all three of ca, cert and key, or none; missing: {}", missing.join(", "))))
}

/// Where a `foreman standalone` tells the CLI of the same user how to reach it: the CA its servers' certificate
/// comes from and the file of its admin token, for one master address. Written by the standalone at start
/// (`~/.config/foreman/standalone/<address>.toml`, owner-only), read by the CLI when no TLS flag and no token file
/// is given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ClientProfile {
    pub ca: PathBuf,
    pub token_file: PathBuf,
}

impl ClientProfile {
    /// The profile file of `address` (`host:port`) under `home`: one per address, so standalones on other ports
    /// keep theirs.
    pub fn path(home: &Path, address: &str) -> PathBuf {
        let name: String =
            address.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
        home.join(".config/foreman/standalone").join(format!("{name}.toml"))
    }

    /// Reads the profile of `address`, if there is one. A file that cannot be read or parsed is an error naming
    /// it (the CLI says so rather than going on without TLS).
    pub fn find(home: &Path, address: &str) -> Result<Option<ClientProfile>, String> {
        let path = ClientProfile::path(home, address);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
        };
        toml::from_str(&text).map(Some).map_err(|e| {
            format!(
                "{}: {e}; it is written by `foreman standalone` at start: remove it, or start it again",
                path.display()
            )
        })
    }
}

/// The TLS flags of `foreman master`, `executor` and the CLI.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct TlsFlags {
    /// The cluster CA's certificate (PEM); with --tls-cert and --tls-key, turns mutual TLS on.
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// This process's certificate (PEM), from `foreman tls init`.
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// This process's private key (PEM), mode 0600.
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_key: Option<PathBuf>,
}

impl TlsFlags {
    /// Overrides the settings given on the command line.
    pub fn apply(&self, t: &mut TlsConfig) {
        if self.tls_ca.is_some() {
            t.ca.clone_from(&self.tls_ca);
        }
        if self.tls_cert.is_some() {
            t.cert.clone_from(&self.tls_cert);
        }
        if self.tls_key.is_some() {
            t.key.clone_from(&self.tls_key);
        }
    }
}

/// How a process reaches etcd beyond its endpoints (production build: the simulated etcd has no TLS): the CA that
/// signed etcd's certificate, a client certificate when etcd asks for one (`--client-cert-auth`), and a user of
/// etcd's password authentication, the password read from a file. The files are read and checked at start
/// (`meta::access`); here only which settings go together.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct EtcdClientConfig {
    /// The CA certificate (PEM) etcd's server certificate must chain to; needed for `https://` endpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// This process's client certificate (PEM) for etcd; with `key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM); refused if group or others may read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// The etcd user (etcd's `user add`); with `password-file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A file holding the user's password (one trailing newline is dropped); refused if group or others may read
    /// it. Never a setting or a flag of its own: a command line is visible to every local user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

/// The scheme of etcd endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EtcdScheme {
    /// `host:port` or `http://host:port`.
    Plain,
    /// `https://host:port`.
    Tls,
}

/// One etcd endpoint's scheme and `host:port`: a bare `host:port` is plain text; `http://` and `https://` are the
/// only schemes, and nothing may follow the port.
pub fn split_etcd_endpoint(endpoint: &str) -> Result<(EtcdScheme, &str), String> {
    let (scheme, rest) = if let Some(rest) = endpoint.strip_prefix("https://") {
        (EtcdScheme::Tls, rest)
    } else if let Some(rest) = endpoint.strip_prefix("http://") {
        (EtcdScheme::Plain, rest)
    } else if let Some((scheme, _)) = endpoint.split_once("://") {
        return Err(format!("{endpoint:?} has the scheme {scheme:?}: use http://, https:// or a bare host:port"));
    } else {
        (EtcdScheme::Plain, endpoint)
    };
    if rest.contains('/') {
        return Err(format!("{endpoint:?} has a path: give [scheme://]host:port only"));
    }
    parse_addr(rest)?;
    Ok((scheme, rest))
}

/// The one scheme of a list of etcd endpoints; a list mixing them is refused, naming one of each.
pub fn etcd_scheme(endpoints: &[String]) -> Result<EtcdScheme, String> {
    let mut first: Option<(EtcdScheme, &str)> = None;
    for e in endpoints {
        let (scheme, _) = split_etcd_endpoint(e)?;
        match first {
            None => first = Some((scheme, e)),
            Some((s, other)) if s != scheme => {
                let (tls, plain) = if scheme == EtcdScheme::Tls { (e.as_str(), other) } else { (other, e.as_str()) };
                return Err(format!(
                    "{tls:?} is https but {plain:?} is plain text: etcd serves one or the other; write every \
                     endpoint with the same scheme"
                ));
            }
            Some(_) => {}
        }
    }
    Ok(first.map_or(EtcdScheme::Plain, |(s, _)| s))
}

fn check_etcd_endpoints(endpoints: &[String]) -> Result<(), ConfigError> {
    if endpoints.is_empty() {
        return Err(invalid("etcd", "the list is empty; give at least one [scheme://]host:port"));
    }
    if endpoints.len() > ENDPOINTS_MAX {
        return Err(invalid(
            "etcd",
            format!("{} addresses given; at most {ENDPOINTS_MAX} are allowed", endpoints.len()),
        ));
    }
    etcd_scheme(endpoints).map(|_| ()).map_err(|rule| invalid("etcd", rule))
}

/// Which etcd client settings go together: a certificate with its key, a user with a password file, a client
/// certificate only over TLS (which needs the CA). With `endpoints` (a master's), the TLS files match their scheme:
/// `https://` needs the CA (no system roots are trusted), and TLS files with plain endpoints are refused rather
/// than ignored.
fn check_etcd_client(c: &EtcdClientConfig, endpoints: Option<&[String]>) -> Result<(), ConfigError> {
    let setting = "etcd-client";
    if c.cert.is_some() != c.key.is_some() {
        let missing = if c.cert.is_none() { "cert (--etcd-cert)" } else { "key (--etcd-key)" };
        return Err(invalid(
            setting,
            format!("set both cert and key of the client certificate, or neither; missing: {missing}"),
        ));
    }
    if c.user.is_some() != c.password_file.is_some() {
        let missing = if c.user.is_none() { "user (--etcd-user)" } else { "password-file (--etcd-password-file)" };
        return Err(invalid(setting, format!("set both user and password-file, or neither; missing: {missing}")));
    }
    if c.user.as_deref().is_some_and(|u| u.trim().is_empty()) {
        return Err(invalid(setting, "user is empty: name the etcd user (etcd's `user add`)"));
    }
    if c.cert.is_some() && c.ca.is_none() {
        return Err(invalid(
            setting,
            "a client certificate is sent only over TLS, which needs ca (--etcd-ca): the CA that signed etcd's certificate",
        ));
    }
    let Some(endpoints) = endpoints else { return Ok(()) };
    let scheme = etcd_scheme(endpoints).map_err(|rule| invalid("etcd", rule))?;
    match scheme {
        EtcdScheme::Tls if c.ca.is_none() => Err(invalid(
            setting,
            "the etcd endpoints are https://: give ca (--etcd-ca), the CA that signed etcd's certificate (no system \
             roots are trusted)",
        )),
        EtcdScheme::Plain if c.ca.is_some() => Err(invalid(
            setting,
            "TLS files are given but the etcd endpoints are plain text: write them as https://host:port, or drop \
             ca, cert and key",
        )),
        _ => Ok(()),
    }
}

/// The etcd client flags of `foreman master` and `foreman executor`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct EtcdClientFlags {
    /// The CA (PEM) that signed etcd's server certificate; needed for https:// etcd endpoints.
    #[arg(long, value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,
    /// A client certificate (PEM) for etcd (etcd's --client-cert-auth); with --etcd-key.
    #[arg(long, value_name = "FILE")]
    pub etcd_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM), mode 0600.
    #[arg(long, value_name = "FILE")]
    pub etcd_key: Option<PathBuf>,
    /// An etcd user (etcd's password authentication); with --etcd-password-file.
    #[arg(long, value_name = "NAME")]
    pub etcd_user: Option<String>,
    /// A file holding the etcd user's password, mode 0600 (one trailing newline is dropped).
    #[arg(long, value_name = "FILE")]
    pub etcd_password_file: Option<PathBuf>,
}

impl EtcdClientFlags {
    /// Overrides the settings given on the command line.
    pub fn apply(&self, c: &mut EtcdClientConfig) {
        let set_some = |slot: &mut Option<PathBuf>, flag: &Option<PathBuf>| {
            if flag.is_some() {
                slot.clone_from(flag);
            }
        };
        set_some(&mut c.ca, &self.etcd_ca);
        set_some(&mut c.cert, &self.etcd_cert);
        set_some(&mut c.key, &self.etcd_key);
        set_some(&mut c.password_file, &self.etcd_password_file);
        if self.etcd_user.is_some() {
            c.user.clone_from(&self.etcd_user);
        }
    }
}

impl MasterConfig {
    /// Parses TOML text (no defaults filled in, not validated).
    pub fn from_toml(text: &str) -> Result<MasterConfig, ConfigError> {
        parse_toml(text, Path::new("<toml>"))
    }

    /// Defaults ← `--config` file ← flags; then the derived defaults; then [`MasterConfig::validate`].
    /// Returns the configuration and the warnings.
    pub fn load(flags: &MasterFlags) -> Result<(MasterConfig, Vec<String>), ConfigError> {
        let mut config: MasterConfig = match &flags.config {
            Some(path) => parse_toml(&read_file(path)?, path)?,
            None => MasterConfig::default(),
        };
        flags.apply(&mut config);
        config.fill_derived();
        let warnings = config.validate()?;
        Ok((config, warnings))
    }

    /// Fills the settings whose default depends on others: `advertise-addr` (from `addr`), then `name`.
    pub fn fill_derived(&mut self) {
        if self.advertise_addr.is_empty() {
            self.advertise_addr = self.addr.clone();
        }
        if self.name.is_empty() {
            self.name = derived_name("master", &self.advertise_addr);
        }
    }

    /// The executor heartbeat contract, announced to executors at registration.
    pub fn executor_timing(&self) -> HeartbeatTiming {
        self.executors.timing()
    }

    /// The framework heartbeat contract, for job masters and workers.
    pub fn worker_timing(&self) -> HeartbeatTiming {
        self.workers.timing()
    }

    /// The clock faults this configuration tolerates (see [`ClockTolerance`]): the largest rate error for which
    /// every ordering holds with no jump, then, with half that error, the largest jump (to a millisecond). Half
    /// the rate budget each: a clock may be off in rate and jump as well.
    pub fn clock_tolerance(&self) -> ClockTolerance {
        let (el, ex, wo) = (&self.election, self.executors.timing(), self.workers.timing());
        let lease_budget = el.lease_ttl.saturating_sub(LEASE_EARLY_EXPIRY);
        let reservation = self.placement.reservation_ttl;
        let holds = |rate: f64, jump: Duration| {
            ex.tolerates(rate, jump)
                && wo.tolerates(rate, jump)
                && ordering_holds(el.step_down, Duration::ZERO, lease_budget, rate, Duration::ZERO)
                && ordering_holds(ex.interval, Duration::ZERO, reservation, rate, jump)
        };
        let rate = largest_rate(|r| holds(r, Duration::ZERO)) / 2.0;
        let mut jump = Duration::ZERO;
        let mut step = Duration::from_secs(1 << 20);
        while step >= Duration::from_millis(1) {
            if holds(rate, jump + step) {
                jump += step;
            }
            step /= 2;
        }
        ClockTolerance { rate, jump: Duration::from_millis(jump.as_millis() as u64) }
    }

    /// The longest a create can be on its way after its client first sent it: the client resends its token for
    /// at most [`CREATE_RETRY_SPAN_MAX`]; an attempt the client gave up on may still be forwarded by a follower
    /// (a connect and a call, each within `rpc.request-timeout`), and the leader acts on it only while it may act
    /// (`election.step-down`), its write bounded by `rpc.metastore-timeout`. A deleted job's tombstone must
    /// outlast this window.
    pub fn create_window(&self) -> Duration {
        CREATE_RETRY_SPAN_MAX + self.rpc.request_timeout * 2 + self.election.step_down + self.rpc.metastore_timeout
    }

    fn durations(&self) -> [(&'static str, Duration); 24] {
        let (el, ex, wo, bo) = (&self.election, &self.executors, &self.workers, &self.backoff);
        [
            ("election.lease-ttl", el.lease_ttl),
            ("election.keepalive-interval", el.keepalive_interval),
            ("election.step-down", el.step_down),
            ("election.campaign-retry", el.campaign_retry),
            ("executors.heartbeat-interval", ex.heartbeat_interval),
            ("executors.heartbeat-timeout", ex.heartbeat_timeout),
            ("executors.self-fence", ex.self_fence),
            ("executors.offline-ttl", ex.offline_ttl),
            ("executors.check-interval", ex.check_interval),
            ("executors.suspect-hold", ex.suspect_hold),
            ("workers.heartbeat-interval", wo.heartbeat_interval),
            ("workers.heartbeat-timeout", wo.heartbeat_timeout),
            ("workers.self-fence", wo.self_fence),
            ("workers.offline-ttl", wo.offline_ttl),
            ("backoff.initial", bo.initial),
            ("backoff.max", bo.max),
            ("backoff.reset-after", bo.reset_after),
            ("placement.reservation-ttl", self.placement.reservation_ttl),
            ("placement.pin-wait", self.placement.pin_wait),
            ("rpc.request-timeout", self.rpc.request_timeout),
            ("rpc.metastore-timeout", self.rpc.metastore_timeout),
            ("jobs.tombstone-retention", self.jobs.tombstone_retention),
            ("http.header-read-timeout", self.http.header_read_timeout),
            ("http.idle-timeout", self.http.idle_timeout),
        ]
    }

    /// The usefulness ordering of design.md §6, for executors and for job masters and workers: (who, their
    /// self-fence, the longest leader failover a heartbeat of theirs may wait: lease TTL + campaign retry + their
    /// heartbeat interval).
    fn failover_spans(&self) -> [(&'static str, Duration, Duration); 2] {
        let el = &self.election;
        let span = |interval: Duration| el.lease_ttl + el.campaign_retry + interval;
        [
            ("executors", self.executors.self_fence, span(self.executors.heartbeat_interval)),
            ("workers", self.workers.self_fence, span(self.workers.heartbeat_interval)),
        ]
    }

    /// Whether a leader failover keeps work running (design.md §6 failover: healthy job masters re-adopted, not
    /// restarted): every self-fence outlives the longest failover its heartbeats may wait for. Breaking it is allowed
    /// but warned about at start-up.
    pub fn failover_keeps_work(&self) -> bool {
        self.failover_spans().iter().all(|(_, self_fence, failover)| self_fence > failover)
    }

    /// Checks every rule; refuses the first broken one, naming the setting and the rule. Returns warnings for
    /// combinations that are safe but costly (a leader failover would stop healthy work).
    ///
    /// Empty `name` and `advertise-addr` are accepted: they stand for their derived defaults.
    pub fn validate(&self) -> Result<Vec<String>, ConfigError> {
        check_name("name", &self.name)?;
        check_addr("addr", &self.addr)?;
        check_advertise_addr(&self.advertise_addr, &self.addr)?;
        check_http_addr(&self.http_addr, &self.addr)?;
        check_etcd_endpoints(&self.etcd)?;
        check_etcd_client(&self.etcd_client, Some(&self.etcd))?;
        check_cluster(&self.cluster)?;
        check_durations(&self.durations())?;
        check_http(&self.http)?;
        check_tls(&self.tls)?;

        let el = &self.election;
        if el.lease_ttl < LEASE_TTL_MIN {
            return Err(invalid(
                "election.lease-ttl",
                format!(
                    "{} is shorter than {}, the shortest lease real etcd grants (rule: lease TTL >= 2s)",
                    format_duration(el.lease_ttl),
                    format_duration(LEASE_TTL_MIN)
                ),
            ));
        }
        if el.step_down + LEASE_EARLY_EXPIRY >= el.lease_ttl {
            return Err(invalid(
                "election.step-down",
                format!(
                    "{} must be shorter than election.lease-ttl ({}) minus 1s: the simulated etcd may expire a \
                     lease up to 1s early, and the leader must stop acting before its lease can expire \
                     (rule: step-down deadline < lease TTL - 1s)",
                    format_duration(el.step_down),
                    format_duration(el.lease_ttl)
                ),
            ));
        }
        if el.keepalive_interval >= el.step_down {
            return Err(invalid(
                "election.keepalive-interval",
                format!(
                    "{} must be shorter than election.step-down ({}), or one keepalive round could not renew \
                     the lease in time (rule: keepalive interval < step-down deadline)",
                    format_duration(el.keepalive_interval),
                    format_duration(el.step_down)
                ),
            ));
        }

        check_timing("executors", &self.executors.timing())?;
        check_timing("workers", &self.workers.timing())?;
        let ex = &self.executors;
        if ex.check_interval >= ex.offline_ttl {
            return Err(invalid(
                "executors.check-interval",
                format!(
                    "{} must be shorter than executors.offline-ttl ({}) (rule: check interval < offline TTL)",
                    format_duration(ex.check_interval),
                    format_duration(ex.offline_ttl)
                ),
            ));
        }
        let wo = &self.workers;
        if ex.carry_job_masters && wo.self_fence <= ex.heartbeat_interval + ex.heartbeat_timeout {
            return Err(invalid(
                "workers.self-fence",
                format!(
                    "{} must be longer than executors.heartbeat-interval + executors.heartbeat-timeout ({}) with \
                     executors.carry-job-masters on: a job master's heartbeat then waits for its executor's next one \
                     (rule: workers.self-fence > executor heartbeat interval + timeout)",
                    format_duration(wo.self_fence),
                    format_duration(ex.heartbeat_interval + ex.heartbeat_timeout)
                ),
            ));
        }
        if !(ex.suspect_fraction > 0.0 && ex.suspect_fraction <= 1.0) {
            return Err(invalid(
                "executors.suspect-fraction",
                format!("{} must be above 0 and at most 1 (a fraction of the executors)", ex.suspect_fraction),
            ));
        }

        let bo = &self.backoff;
        if !bo.multiplier.is_finite() || bo.multiplier < 1.0 {
            return Err(invalid(
                "backoff.multiplier",
                format!("{} must be at least 1 (and finite): delays must not shrink", bo.multiplier),
            ));
        }
        if !(0.0..1.0).contains(&bo.jitter) {
            return Err(invalid(
                "backoff.jitter",
                format!("{} must be at least 0 and below 1 (a fraction of each delay)", bo.jitter),
            ));
        }
        if bo.max < bo.initial {
            return Err(invalid(
                "backoff.max",
                format!(
                    "{} must not be shorter than backoff.initial ({}) (rule: initial <= max)",
                    format_duration(bo.max),
                    format_duration(bo.initial)
                ),
            ));
        }
        if bo.max_tries == 0 {
            return Err(invalid("backoff.max-tries", "is 0; it must be at least 1"));
        }

        if self.placement.reservation_ttl <= ex.heartbeat_interval {
            return Err(invalid(
                "placement.reservation-ttl",
                format!(
                    "{} must be longer than executors.heartbeat-interval ({}): a reservation must outlive the \
                     heartbeat that reports its task (rule: reservation TTL > executor heartbeat interval)",
                    format_duration(self.placement.reservation_ttl),
                    format_duration(ex.heartbeat_interval)
                ),
            ));
        }

        let window = self.create_window();
        if self.jobs.tombstone_retention <= window {
            return Err(invalid(
                "jobs.tombstone-retention",
                format!(
                    "{} must be longer than the longest a create can be on its way ({}: a client's resends, \
                     forwarding, and the leader's step-down), or a delayed repeat of a deleted job's create could \
                     bring it back (rule: tombstone retention > create window)",
                    format_duration(self.jobs.tombstone_retention),
                    format_duration(window)
                ),
            ));
        }

        let mut warnings = vec![];
        let clocks = self.clock_tolerance();
        if clocks.rate < CLOCK_RATE_WARN {
            warnings.push(format!(
                "the timings tolerate clocks off by only ±{:.3}% in rate (and forward jumps of {}): a node whose \
                 clock drifts more could run beside its replacement (rule 3) or a leader act past its lease (rule \
                 1): widen the gaps between self-fence and offline TTL, or step-down and lease TTL",
                clocks.rate * 100.0,
                format_duration(clocks.jump)
            ));
        }
        for (what, self_fence, failover) in self.failover_spans() {
            if self_fence <= failover {
                warnings.push(format!(
                    "{what}.self-fence ({}) is not longer than election.lease-ttl + election.campaign-retry + \
                     {what}.heartbeat-interval ({}): a leader failover would make healthy {what} stop their \
                     work: raise {what}.self-fence above {} (and {what}.offline-ttl with it)",
                    format_duration(self_fence),
                    format_duration(failover),
                    format_duration(failover)
                ));
            }
        }
        Ok(warnings)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Executor configuration
// ---------------------------------------------------------------------------------------------------------------

/// An executor's settings (`foreman executor`). Its heartbeat timing is not here: the master announces it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ExecutorConfig {
    /// The node's name in logs and listings; empty means `executor-<advertise-addr>`.
    pub name: String,
    /// The listen address, `host:port`.
    pub addr: String,
    /// The address masters and job masters reach this executor at; empty means `addr`.
    pub advertise_addr: String,
    /// Master addresses, `host:port`.
    pub join: Vec<String>,
    /// Capacity in abstract slots.
    pub capacity: u32,
    /// Deadline on outgoing calls other than heartbeats (whose deadline the master sets).
    #[serde(with = "serde_duration")]
    pub rpc_timeout: Duration,
    /// The bound of the queue of tasks waiting to start.
    pub task_queue: u32,
    /// An unconfirmed pre-dispatch expires after this.
    #[serde(with = "serde_duration")]
    pub dispatch_ttl: Duration,
    /// On Ctrl-C or SIGTERM, how long running tasks get to stop at a checkpoint before they are stopped where they
    /// are; then the executor deregisters and exits.
    #[serde(with = "serde_duration")]
    pub drain_timeout: Duration,
    /// The executor's own directory (owner-only): its commands' logs, scratch directories and process records.
    /// Empty means `<temporary directory>/foreman-<name>`.
    pub data_dir: String,
    /// How often the executor lists the jobs it keeps data of and asks the leader which were deleted, to remove
    /// their data.
    #[serde(with = "serde_duration")]
    pub collect_interval: Duration,
    /// Mutual TLS on gRPC (none: plain text).
    pub tls: TlsConfig,
    /// How this executor reaches etcd (its endpoints come from the masters, `QueryMetaStore`): TLS files and a
    /// user, its own, never the masters'.
    pub etcd_client: EtcdClientConfig,
    /// Labels for placement selectors. Last, so that it serializes as a trailing `[labels]` table.
    pub labels: Labels,
}

impl Default for ExecutorConfig {
    fn default() -> ExecutorConfig {
        ExecutorConfig {
            name: String::new(),
            addr: "127.0.0.1:10340".to_owned(),
            advertise_addr: String::new(),
            join: vec!["127.0.0.1:10240".to_owned()],
            capacity: 16,
            rpc_timeout: Duration::from_secs(3),
            task_queue: 256,
            dispatch_ttl: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
            data_dir: String::new(),
            collect_interval: Duration::from_secs(60),
            tls: TlsConfig::default(),
            etcd_client: EtcdClientConfig::default(),
            labels: Labels::new(),
        }
    }
}

impl ExecutorConfig {
    /// The executor's own directory (see [`ExecutorConfig::data_dir`]), absolute: commands get paths in it
    /// (`FOREMAN_SCRATCH`) and run elsewhere (a relative `--data-dir`, the standalone's default, once gave them a
    /// path relative to the executor's working directory, which `cd $FOREMAN_SCRATCH` could not follow).
    pub fn dir(&self) -> PathBuf {
        let dir = if self.data_dir.is_empty() {
            std::env::temp_dir().join(format!("foreman-{}", self.name))
        } else {
            PathBuf::from(&self.data_dir)
        };
        std::path::absolute(&dir).unwrap_or(dir)
    }

    /// Parses TOML text (no defaults filled in, not validated).
    pub fn from_toml(text: &str) -> Result<ExecutorConfig, ConfigError> {
        parse_toml(text, Path::new("<toml>"))
    }

    /// Defaults ← `--config` file ← flags (labels from flags add to and override the file's); then the derived
    /// defaults; then [`ExecutorConfig::validate`]. Returns the configuration and the warnings.
    pub fn load(flags: &ExecutorFlags) -> Result<(ExecutorConfig, Vec<String>), ConfigError> {
        let mut config: ExecutorConfig = match &flags.config {
            Some(path) => parse_toml(&read_file(path)?, path)?,
            None => ExecutorConfig::default(),
        };
        flags.apply(&mut config);
        config.fill_derived();
        let warnings = config.validate()?;
        Ok((config, warnings))
    }

    /// Fills the settings whose default depends on others: `advertise-addr` (from `addr`), then `name`.
    pub fn fill_derived(&mut self) {
        if self.advertise_addr.is_empty() {
            self.advertise_addr = self.addr.clone();
        }
        if self.name.is_empty() {
            self.name = derived_name("executor", &self.advertise_addr);
        }
    }

    /// Checks every rule; refuses the first broken one, naming the setting and the rule. No executor setting
    /// warns today; the list is there for symmetry with [`MasterConfig::validate`].
    ///
    /// Empty `name` and `advertise-addr` are accepted: they stand for their derived defaults.
    pub fn validate(&self) -> Result<Vec<String>, ConfigError> {
        check_name("name", &self.name)?;
        check_addr("addr", &self.addr)?;
        check_advertise_addr(&self.advertise_addr, &self.addr)?;
        check_addr_list("join", &self.join)?;
        check_tls(&self.tls)?;
        check_etcd_client(&self.etcd_client, None)?;
        if !(1..=CAPACITY_MAX).contains(&self.capacity) {
            return Err(invalid(
                "capacity",
                format!("{} is out of range: it must be from 1 to {CAPACITY_MAX} slots", self.capacity),
            ));
        }
        validate_labels(&self.labels).map_err(|e| invalid("labels", e.to_string()))?;
        if !(1..=TASK_QUEUE_MAX).contains(&self.task_queue) {
            return Err(invalid(
                "task-queue",
                format!("{} is out of range: it must be from 1 to {TASK_QUEUE_MAX} tasks", self.task_queue),
            ));
        }
        check_durations(&[
            ("rpc-timeout", self.rpc_timeout),
            ("dispatch-ttl", self.dispatch_ttl),
            ("drain-timeout", self.drain_timeout),
            ("collect-interval", self.collect_interval),
        ])?;
        Ok(vec![])
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------------------------------

fn check_durations(durations: &[(&str, Duration)]) -> Result<(), ConfigError> {
    for &(setting, d) in durations {
        if d.is_zero() {
            return Err(invalid(setting, format!("{setting} is zero; it must be a positive duration")));
        }
        if !d.subsec_nanos().is_multiple_of(1_000_000) {
            return Err(invalid(
                setting,
                format!("{setting} is {}; durations are counted in whole milliseconds", format_duration(d)),
            ));
        }
    }
    Ok(())
}

fn check_timing(what: &'static str, timing: &HeartbeatTiming) -> Result<(), ConfigError> {
    timing.validate(what).map_err(|e| {
        let setting = match &e {
            TimingError::Zero { setting, .. } => format!("{what}.{setting}"),
            TimingError::FenceNotBeforeOffline { .. } | TimingError::FenceTooTight { .. } => {
                format!("{what}.self-fence")
            }
        };
        invalid(setting, e.to_string())
    })
}

fn check_name(setting: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Ok(());
    }
    let ok = name.len() <= NAME_MAX_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            setting,
            format!("{name:?} is not a valid name: use 1 to {NAME_MAX_LEN} letters, digits, '-', '_' and '.'"),
        ))
    }
}

/// `<prefix>-<address>` with every character a name may not hold replaced by `-`, cut to the longest name, so
/// that the derived name passes [`check_name`] when the effective configuration is loaded again.
fn derived_name(prefix: &str, address: &str) -> String {
    let mut name: String = format!("{prefix}-{address}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' })
        .collect();
    name.truncate(NAME_MAX_LEN);
    name
}

fn check_cluster(cluster: &str) -> Result<(), ConfigError> {
    match crate::core::ids::cluster_name_problem(cluster) {
        None => Ok(()),
        Some(problem) => Err(invalid("cluster", problem)),
    }
}

/// Splits `host:port`, or says what is wrong with it.
fn parse_addr(value: &str) -> Result<(&str, u16), String> {
    let example = "write host:port, e.g. 127.0.0.1:2379";
    if value.is_empty() {
        return Err(format!("the address is empty; {example}"));
    }
    if let Some((scheme, _)) = value.split_once("://") {
        return Err(format!("{value:?} has a scheme ({scheme}://); drop the scheme and {example}"));
    }
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err(format!("{value:?} has no port; {example}"));
    };
    if host.is_empty() {
        return Err(format!("{value:?} has no host; {example}"));
    }
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|ip| !ip.is_empty() && ip.bytes().all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.')))
    } else if host.contains(':') {
        return Err(format!("{value:?}: write an IPv6 address in brackets, e.g. [::1]:2379"));
    } else {
        host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    };
    if !host_ok {
        return Err(format!("{value:?} has an invalid host {host:?}; {example}"));
    }
    let port_num = if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
        port.parse::<u16>().ok().filter(|&p| p != 0)
    } else {
        None
    };
    match port_num {
        Some(p) => Ok((host, p)),
        None => Err(format!("{value:?} has an invalid port {port:?}: use a number from 1 to 65535")),
    }
}

fn check_addr(setting: &str, value: &str) -> Result<(), ConfigError> {
    parse_addr(value).map(|_| ()).map_err(|rule| invalid(setting, rule))
}

/// `advertise-addr` is what others dial: it must be a real address. Empty stands for `addr`, which then must be.
fn check_advertise_addr(advertise_addr: &str, addr: &str) -> Result<(), ConfigError> {
    let effective = if advertise_addr.is_empty() { addr } else { advertise_addr };
    let (host, _) = parse_addr(effective).map_err(|rule| invalid("advertise-addr", rule))?;
    if matches!(host, "0.0.0.0" | "[::]" | "[0:0:0:0:0:0:0:0]") {
        let source = if advertise_addr.is_empty() { " (taken from addr)" } else { "" };
        return Err(invalid(
            "advertise-addr",
            format!(
                "{effective:?}{source} listens on every interface but is no address other nodes can reach: set \
                 advertise-addr to this node's reachable host:port"
            ),
        ));
    }
    Ok(())
}

/// `http-addr` is a listen address like `addr` (any interface allowed), or empty: no HTTP API.
fn check_http_addr(http_addr: &str, addr: &str) -> Result<(), ConfigError> {
    if http_addr.is_empty() {
        return Ok(());
    }
    check_addr("http-addr", http_addr)?;
    if http_addr == addr {
        return Err(invalid(
            "http-addr",
            format!("{http_addr:?} is also addr, the gRPC listen address: give the HTTP API a port of its own"),
        ));
    }
    Ok(())
}

/// `[http]`: names a `Host` header can carry, and a connection cap within bounds.
fn check_http(http: &HttpConfig) -> Result<(), ConfigError> {
    if http.names.len() > HTTP_NAMES_MAX {
        return Err(invalid(
            "http.names",
            format!("{} names given; at most {HTTP_NAMES_MAX} are allowed", http.names.len()),
        ));
    }
    for name in &http.names {
        check_http_name(name).map_err(|rule| invalid("http.names", rule))?;
    }
    if let Some(n) = http.max_connections {
        if n == 0 || n > HTTP_CONNECTIONS_MAX {
            return Err(invalid(
                "http.max-connections",
                format!(
                    "{n} is out of range: give 1 to {HTTP_CONNECTIONS_MAX}, or leave it out to derive it from the \
                     file-descriptor limit"
                ),
            ));
        }
    }
    Ok(())
}

/// A name of `http.names`: `host` or `host:port`, as a `Host` header carries it.
fn check_http_name(name: &str) -> Result<(), String> {
    let example = "write host or host:port as clients name it, e.g. foreman.example.com:10280";
    if name.contains("://") || name.contains('/') {
        return Err(format!("{name:?} is not a host name; drop the scheme and path and {example}"));
    }
    let bracketed_alone = name.starts_with('[') && name.ends_with(']');
    if name.matches(':').count() > 1 && !name.starts_with('[') {
        return Err(format!("{name:?}: write an IPv6 address in brackets, e.g. [::1] or [::1]:10280"));
    }
    if name.contains(':') && !bracketed_alone {
        return parse_addr(name).map(|_| ());
    }
    // The host alone: check it as the host of `host:80`.
    parse_addr(&format!("{name}:80")).map(|_| ()).map_err(|_| format!("{name:?} is not a valid host; {example}"))
}

fn check_addr_list(setting: &str, values: &[String]) -> Result<(), ConfigError> {
    if values.is_empty() {
        return Err(invalid(setting, "the list is empty; give at least one host:port"));
    }
    if values.len() > ENDPOINTS_MAX {
        return Err(invalid(setting, format!("{} addresses given; at most {ENDPOINTS_MAX} are allowed", values.len())));
    }
    for value in values {
        check_addr(setting, value)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------------------------

fn read_file(path: &Path) -> Result<String, ConfigError> {
    let io = |source| ConfigError::Io { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    file.take(CONFIG_FILE_MAX_BYTES + 1).read_to_string(&mut text).map_err(io)?;
    if text.len() as u64 > CONFIG_FILE_MAX_BYTES {
        return Err(ConfigError::Parse {
            path: path.to_owned(),
            message: format!("the file is larger than {CONFIG_FILE_MAX_BYTES} bytes"),
        });
    }
    Ok(text)
}

fn parse_toml<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let mut message = e.to_string().trim_end().to_owned();
        // toml names the key and shows its line; the enclosing section helps with a key that exists in several.
        if let Some(section) = e.span().and_then(|span| section_at(text, span.start)) {
            message.push_str(&format!("\n(in section [{section}])"));
        }
        ConfigError::Parse { path: path.to_owned(), message }
    })
}

/// The `[table]` header in force at byte `offset` of a TOML text, if any.
fn section_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    before.lines().rev().find_map(|line| {
        let line = line.trim();
        let header = line.strip_prefix('[')?.trim_start_matches('[');
        let end = header.find(']')?;
        Some(header[..end].trim().to_owned())
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Flags
// ---------------------------------------------------------------------------------------------------------------

fn set<T: Clone>(slot: &mut T, flag: &Option<T>) {
    if let Some(value) = flag {
        *slot = value.clone();
    }
}

/// Command-line flags of a master: one per setting, overriding the `--config` file.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct MasterFlags {
    /// A TOML configuration file; flags override its settings.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The node's name [default: master-<advertise-addr>].
    #[arg(long)]
    pub name: Option<String>,
    /// The listen address [default: 127.0.0.1:10240].
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// The address other nodes reach this master at [default: --addr].
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise_addr: Option<String>,
    /// The HTTP/JSON API and /metrics listen address; "" turns it off [default: 127.0.0.1:10280].
    #[arg(long, value_name = "HOST:PORT")]
    pub http_addr: Option<String>,
    /// etcd endpoints, comma-separated: host:port or http://host:port (plain), https://host:port (TLS, with
    /// --etcd-ca) [default: 127.0.0.1:2379].
    #[arg(long, value_name = "[SCHEME://]HOST:PORT,...", value_delimiter = ',')]
    pub etcd: Option<Vec<String>>,
    /// The cluster name; keys live under /foreman/<cluster>/ [default: default].
    #[arg(long)]
    pub cluster: Option<String>,

    /// The election lease TTL [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub election_lease_ttl: Option<Duration>,
    /// How often the leader renews its lease [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub election_keepalive_interval: Option<Duration>,
    /// The leader stops acting if no keepalive succeeded within this long [default: 3s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub election_step_down: Option<Duration>,
    /// The pause between campaign attempts [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub election_campaign_retry: Option<Duration>,

    /// How often executors heartbeat [default: 500ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub executors_heartbeat_interval: Option<Duration>,
    /// The deadline on each executor heartbeat [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub executors_heartbeat_timeout: Option<Duration>,
    /// An executor stops its tasks after this long without an acknowledged heartbeat [default: 8s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub executors_self_fence: Option<Duration>,
    /// An executor silent this long is declared offline [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub executors_offline_ttl: Option<Duration>,
    /// How often the leader looks for expired executors [default: 500ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub executors_check_interval: Option<Duration>,
    /// Above this fraction of executors expiring at once, the leader suspects itself [default: 0.5].
    #[arg(long, value_name = "FRACTION", allow_hyphen_values = true)]
    pub executors_suspect_fraction: Option<f64>,
    /// How long a suspecting leader holds evictions at most [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub executors_suspect_hold: Option<Duration>,
    /// Executors carry their job masters' heartbeats in their own: calls to the leader grow with executors, not
    /// jobs [default: false].
    #[arg(long, value_name = "BOOL")]
    pub executors_carry_job_masters: Option<bool>,

    /// How often job masters and workers heartbeat [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub workers_heartbeat_interval: Option<Duration>,
    /// The deadline on each framework heartbeat [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub workers_heartbeat_timeout: Option<Duration>,
    /// A job master or worker stops after this long without an acknowledged heartbeat [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub workers_self_fence: Option<Duration>,
    /// A job master or worker silent this long is declared offline [default: 12s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub workers_offline_ttl: Option<Duration>,

    /// The first restart delay of a lost job [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub backoff_initial: Option<Duration>,
    /// Each restart delay is the previous one times this [default: 1.5].
    #[arg(long, value_name = "FACTOR", allow_hyphen_values = true)]
    pub backoff_multiplier: Option<f64>,
    /// The longest restart delay [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub backoff_max: Option<Duration>,
    /// Each delay is drawn within ±jitter of the base [default: 0.2].
    #[arg(long, value_name = "FRACTION", allow_hyphen_values = true)]
    pub backoff_jitter: Option<f64>,
    /// Healthy this long, the backoff starts over [default: 5m].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub backoff_reset_after: Option<Duration>,
    /// After this many restarts the job fails [default: 100].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub backoff_max_tries: Option<u32>,

    /// How placement chooses among executors that fit [default: least-loaded].
    #[arg(long, value_name = "STRATEGY")]
    pub placement_strategy: Option<Strategy>,
    /// Capacity held for a task placed but not yet reported [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub placement_reservation_ttl: Option<Duration>,
    /// How long a worker waits for the executor holding its local resources when that executor cannot take it,
    /// before they are given up and it goes elsewhere [default: 1m].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub placement_pin_wait: Option<Duration>,

    /// The deadline on outgoing RPCs, forwarding included [default: 3s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub rpc_request_timeout: Option<Duration>,
    /// The deadline on each metastore call [default: 2s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub rpc_metastore_timeout: Option<Duration>,

    /// How long a deleted job's create token is kept to refuse a delayed repeat of its create [default: 10m].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub jobs_tombstone_retention: Option<Duration>,

    /// More host names the HTTP API answers to (Host and Origin), comma-separated, host or host:port
    /// [default: only its own address, localhost, 127.0.0.1 and [::1] on its port].
    #[arg(long, value_name = "HOST[:PORT],...", value_delimiter = ',')]
    pub http_names: Option<Vec<String>>,
    /// The most HTTP connections open at once [default: derived from the file-descriptor limit].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub http_max_connections: Option<u32>,
    /// The longest a client may take to send a request's headers [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub http_header_read_timeout: Option<Duration>,
    /// The longest an HTTP connection may stay open with no request on it [default: 1m].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub http_idle_timeout: Option<Duration>,
    #[command(flatten)]
    pub tls: TlsFlags,
    #[command(flatten)]
    pub etcd_client: EtcdClientFlags,
    /// The users' tokens file (auth.tokens; `foreman token add` writes it, mode 0600).
    #[arg(long, value_name = "FILE")]
    pub auth_tokens: Option<PathBuf>,
    /// Serve plain text with no TLS (tls.insecure): anyone who reaches the port may act as any node. Without TLS
    /// files or this flag, the master refuses to start.
    #[arg(long)]
    pub insecure: bool,
}

impl MasterFlags {
    /// Overrides the settings given on the command line.
    pub fn apply(&self, c: &mut MasterConfig) {
        if self.auth_tokens.is_some() {
            c.auth.tokens.clone_from(&self.auth_tokens);
        }
        set(&mut c.name, &self.name);
        set(&mut c.addr, &self.addr);
        set(&mut c.advertise_addr, &self.advertise_addr);
        set(&mut c.http_addr, &self.http_addr);
        set(&mut c.etcd, &self.etcd);
        set(&mut c.cluster, &self.cluster);
        self.tls.apply(&mut c.tls);
        c.tls.insecure |= self.insecure;
        self.etcd_client.apply(&mut c.etcd_client);

        set(&mut c.election.lease_ttl, &self.election_lease_ttl);
        set(&mut c.election.keepalive_interval, &self.election_keepalive_interval);
        set(&mut c.election.step_down, &self.election_step_down);
        set(&mut c.election.campaign_retry, &self.election_campaign_retry);

        set(&mut c.executors.heartbeat_interval, &self.executors_heartbeat_interval);
        set(&mut c.executors.heartbeat_timeout, &self.executors_heartbeat_timeout);
        set(&mut c.executors.self_fence, &self.executors_self_fence);
        set(&mut c.executors.offline_ttl, &self.executors_offline_ttl);
        set(&mut c.executors.check_interval, &self.executors_check_interval);
        set(&mut c.executors.suspect_fraction, &self.executors_suspect_fraction);
        set(&mut c.executors.suspect_hold, &self.executors_suspect_hold);
        set(&mut c.executors.carry_job_masters, &self.executors_carry_job_masters);

        set(&mut c.workers.heartbeat_interval, &self.workers_heartbeat_interval);
        set(&mut c.workers.heartbeat_timeout, &self.workers_heartbeat_timeout);
        set(&mut c.workers.self_fence, &self.workers_self_fence);
        set(&mut c.workers.offline_ttl, &self.workers_offline_ttl);

        set(&mut c.backoff.initial, &self.backoff_initial);
        set(&mut c.backoff.multiplier, &self.backoff_multiplier);
        set(&mut c.backoff.max, &self.backoff_max);
        set(&mut c.backoff.jitter, &self.backoff_jitter);
        set(&mut c.backoff.reset_after, &self.backoff_reset_after);
        set(&mut c.backoff.max_tries, &self.backoff_max_tries);

        set(&mut c.placement.strategy, &self.placement_strategy);
        set(&mut c.placement.reservation_ttl, &self.placement_reservation_ttl);
        set(&mut c.placement.pin_wait, &self.placement_pin_wait);

        set(&mut c.rpc.request_timeout, &self.rpc_request_timeout);
        set(&mut c.rpc.metastore_timeout, &self.rpc_metastore_timeout);

        set(&mut c.jobs.tombstone_retention, &self.jobs_tombstone_retention);

        set(&mut c.http.names, &self.http_names);
        if let Some(n) = self.http_max_connections {
            c.http.max_connections = Some(n);
        }
        set(&mut c.http.header_read_timeout, &self.http_header_read_timeout);
        set(&mut c.http.idle_timeout, &self.http_idle_timeout);
    }
}

/// Command-line flags of an executor: one per setting, overriding the `--config` file.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ExecutorFlags {
    /// A TOML configuration file; flags override its settings.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The node's name [default: executor-<advertise-addr>].
    #[arg(long)]
    pub name: Option<String>,
    /// The listen address [default: 127.0.0.1:10340].
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// The address masters and job masters reach this executor at [default: --addr].
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise_addr: Option<String>,
    /// Master addresses, comma-separated [default: 127.0.0.1:10240].
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
    pub join: Option<Vec<String>>,
    /// Capacity in abstract slots [default: 16].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub capacity: Option<u32>,
    /// A label for placement selectors; repeat the flag for more. Adds to or overrides the file's labels.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// The deadline on outgoing calls other than heartbeats [default: 3s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub rpc_timeout: Option<Duration>,
    /// The bound of the queue of tasks waiting to start [default: 256].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub task_queue: Option<u32>,
    /// An unconfirmed pre-dispatch expires after this [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub dispatch_ttl: Option<Duration>,
    /// On Ctrl-C or SIGTERM, how long tasks get to stop at a checkpoint before the executor deregisters
    /// [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub drain_timeout: Option<Duration>,
    /// The executor's own directory, kept owner-only: its commands' logs, scratch directories and process records
    /// [default: <temporary directory>/foreman-<name>].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// How often to look for the data of deleted jobs to remove [default: 1m].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub collect_interval: Option<Duration>,
    #[command(flatten)]
    pub tls: TlsFlags,
    #[command(flatten)]
    pub etcd_client: EtcdClientFlags,
    /// Serve plain text with no TLS (tls.insecure): anyone who reaches the port may dispatch tasks to it. Without
    /// TLS files or this flag, the executor refuses to start.
    #[arg(long)]
    pub insecure: bool,
}

impl ExecutorFlags {
    /// Overrides the settings given on the command line; labels are merged, the flag's value winning.
    pub fn apply(&self, c: &mut ExecutorConfig) {
        set(&mut c.name, &self.name);
        set(&mut c.addr, &self.addr);
        set(&mut c.advertise_addr, &self.advertise_addr);
        set(&mut c.join, &self.join);
        set(&mut c.capacity, &self.capacity);
        for (key, value) in &self.labels {
            c.labels.insert(key.clone(), value.clone());
        }
        set(&mut c.rpc_timeout, &self.rpc_timeout);
        set(&mut c.task_queue, &self.task_queue);
        set(&mut c.dispatch_ttl, &self.dispatch_ttl);
        set(&mut c.drain_timeout, &self.drain_timeout);
        set(&mut c.data_dir, &self.data_dir);
        set(&mut c.collect_interval, &self.collect_interval);
        self.tls.apply(&mut c.tls);
        c.tls.insecure |= self.insecure;
        self.etcd_client.apply(&mut c.etcd_client);
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[derive(Debug, Parser)]
    struct MasterCli {
        #[command(flatten)]
        flags: MasterFlags,
    }

    #[derive(Debug, Parser)]
    struct ExecutorCli {
        #[command(flatten)]
        flags: ExecutorFlags,
    }

    fn master_flags(args: &[&str]) -> MasterFlags {
        let argv = std::iter::once("foreman").chain(args.iter().copied());
        MasterCli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}")).flags
    }

    fn executor_flags(args: &[&str]) -> ExecutorFlags {
        let argv = std::iter::once("foreman").chain(args.iter().copied());
        ExecutorCli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}")).flags
    }

    /// A file in the system temporary directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, text: &str) -> TempFile {
            let path = std::env::temp_dir().join(format!("foreman-config-{}-{name}.toml", std::process::id()));
            std::fs::write(&path, text).unwrap();
            TempFile(path)
        }

        fn arg(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn master(toml: &str) -> Result<Vec<String>, ConfigError> {
        MasterConfig::from_toml(toml)?.validate()
    }

    fn executor(toml: &str) -> Result<Vec<String>, ConfigError> {
        ExecutorConfig::from_toml(toml)?.validate()
    }

    /// Asserts a refusal names the setting and contains each of `words`.
    fn assert_refused(got: Result<Vec<String>, ConfigError>, setting: &str, words: &[&str], input: &str) {
        match got {
            Err(e @ ConfigError::Invalid { .. }) => {
                let text = e.to_string();
                assert!(text.starts_with(&format!("invalid setting `{setting}`: ")), "{input}: {text}");
                for w in words {
                    assert!(text.contains(w), "{input}: {text:?} should contain {w:?}");
                }
            }
            other => panic!("{input}: want a refusal of {setting}, got {other:?}"),
        }
    }

    #[test]
    fn durations_parse_table() {
        let table: &[(&str, Duration)] = &[
            ("500ms", ms(500)),
            ("5s", ms(5000)),
            ("2m", ms(120_000)),
            ("1h", ms(3_600_000)),
            ("1m30s", ms(90_000)),
            ("1.5s", ms(1500)),
            ("0.5m", ms(30_000)),
            ("1h2m3s4ms", ms(3_723_004)),
            (" 5s ", ms(5000)),
            ("0s", Duration::ZERO),
            ("1.250s", ms(1250)),
        ];
        for &(text, want) in table {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn duration_errors_table() {
        // (input, words the message must contain)
        let table: &[(&str, &[&str])] = &[
            ("-5s", &["cannot be negative"]),
            ("-0s", &["cannot be negative"]),
            ("5", &["no unit", "ms, s, m, h"]),
            ("", &["ms, s, m, h"]),
            ("5d", &["unknown unit \"d\"", "ms, s, m, h"]),
            ("5 s", &["remove the spaces"]),
            ("5s 1ms", &["remove the spaces"]),
            ("s", &["expected a number"]),
            ("30s1m", &["largest to smallest"]),
            ("1s1s", &["largest to smallest"]),
            ("1..5s", &["not a number"]),
            (".5s", &["not a number"]),
            ("5.s", &["not a number"]),
            ("1.5ms", &["whole milliseconds"]),
            ("1.0000000001s", &["whole milliseconds"]),
            ("99999999999999999999h", &["too large"]),
            ("999999999999999999999h", &["too large"]),
        ];
        for &(text, words) in table {
            let e = parse_duration(text).expect_err(text);
            assert!(e.contains(&format!("{text:?}")), "{e}");
            for w in words {
                assert!(e.contains(w), "{text}: {e:?} should contain {w:?}");
            }
        }
    }

    #[test]
    fn durations_format_shortest_exact() {
        let table: &[(Duration, &str)] = &[
            (ms(500), "500ms"),
            (ms(5000), "5s"),
            (ms(1500), "1.5s"),
            (ms(90_000), "1m30s"),
            (ms(60_000), "1m"),
            (ms(3_600_000), "1h"),
            (ms(3_600_500), "1h500ms"),
            (ms(61_250), "1m1.25s"),
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1_500_000), "1.5ms"),
            (Duration::from_nanos(1), "0.000001ms"),
        ];
        for &(d, want) in table {
            assert_eq!(format_duration(d), want, "{d:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn durations_round_trip(millis in 0u64..=u64::MAX / 1000) {
            let d = ms(millis);
            proptest::prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn clock_tolerance_of_the_defaults_and_its_warning() {
        let t = MasterConfig::default().clock_tolerance();
        // Half of the worker contract's 4.55 %, and the jump that still holds with it (README, "Clock tolerance").
        assert!((0.0227..0.0228).contains(&t.rate), "{t:?}");
        assert_eq!(t.jump, Duration::from_millis(509), "{t:?}");
        let tight = master("[executors]\nself-fence = \"8.995s\"").unwrap();
        assert!(tight.iter().any(|w| w.contains("tolerate clocks off by only")), "{tight:?}");
    }

    #[test]
    fn a_node_serves_tls_or_says_it_is_insecure() {
        let none = TlsConfig::default();
        let e = none.require("master").unwrap_err();
        for says in ["no TLS configured", "foreman master", "foreman tls init", "--tls-ca", "--insecure"] {
            assert!(e.contains(says), "{e:?} does not say {says:?}");
        }
        TlsConfig { insecure: true, ..TlsConfig::default() }.require("executor").unwrap();
        let files = "[tls]\nca = \"/d/ca.pem\"\ncert = \"/d/e1.pem\"\nkey = \"/d/e1-key.pem\"\n";
        let x = ExecutorConfig::from_toml(files).unwrap();
        x.tls.require("executor").unwrap();
        x.validate().unwrap();
        let both = ExecutorConfig::from_toml(&format!("{files}insecure = true\n")).unwrap();
        let e = both.validate().unwrap_err().to_string();
        assert!(e.contains("choose TLS or plain text"), "{e}");
        let (loaded, _) = MasterConfig::load(&master_flags(&["--insecure"])).unwrap();
        assert!(loaded.tls.insecure);
        assert!(!MasterConfig::default().tls.insecure, "TLS is the default");
    }

    #[test]
    fn a_client_profile_is_found_by_its_master_address() {
        let home = std::env::temp_dir().join(format!("foreman-config-profile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        let p = ClientProfile::path(&home, "[::1]:10240");
        assert_eq!(p, home.join(".config/foreman/standalone/___1__10240.toml"));
        assert_eq!(ClientProfile::path(&home, "127.0.0.1:10240").file_name().unwrap(), "127.0.0.1_10240.toml");
        assert_eq!(ClientProfile::find(&home, "127.0.0.1:10240"), Ok(None));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "ca = \"/d/ca.pem\"\ntoken-file = \"/d/admin.token\"\n").unwrap();
        let found = ClientProfile::find(&home, "[::1]:10240").unwrap().unwrap();
        assert_eq!(
            (found.ca.as_path(), found.token_file.as_path()),
            (Path::new("/d/ca.pem"), Path::new("/d/admin.token"))
        );
        std::fs::write(&p, "ca = 1\n").unwrap();
        let e = ClientProfile::find(&home, "[::1]:10240").unwrap_err();
        assert!(e.contains("___1__10240.toml") && e.contains("remove it"), "{e}");
        let _ = std::fs::remove_dir_all(&home);
    }

    #[test]
    fn tls_is_all_three_files_or_none() {
        let m = MasterConfig::from_toml("[tls]\nca = \"/d/ca.pem\"\ncert = \"/d/m1.pem\"\n").unwrap();
        let e = m.validate().unwrap_err().to_string();
        assert!(e.contains("`tls`") && e.contains("missing: tls.key (--tls-key)"), "{e}");
        let full = "[tls]\nca = \"/d/ca.pem\"\ncert = \"/d/e1.pem\"\nkey = \"/d/e1-key.pem\"\n";
        let x = ExecutorConfig::from_toml(full).unwrap();
        x.validate().unwrap();
        assert_eq!(
            x.tls.files(),
            [Some(Path::new("/d/ca.pem")), Some(Path::new("/d/e1.pem")), Some(Path::new("/d/e1-key.pem"))]
        );
        // Flags override the file, one by one.
        let flags = TlsFlags { tls_key: Some("/other/key.pem".into()), ..TlsFlags::default() };
        let mut t = x.tls.clone();
        flags.apply(&mut t);
        assert_eq!(t.key.as_deref(), Some(Path::new("/other/key.pem")));
        assert_eq!(t.ca, x.tls.ca);
        assert!(ExecutorConfig::from_toml("[tls]\nkey-file = \"x\"\n").is_err());
    }

    #[test]
    fn the_tokens_file_comes_from_auth_or_its_flag() {
        let c = MasterConfig::from_toml("[auth]\ntokens = \"/etc/foreman/tokens\"\n").unwrap();
        assert_eq!(c.auth.tokens.as_deref(), Some(Path::new("/etc/foreman/tokens")));
        assert!(MasterConfig::from_toml("[auth]\ntoken = \"x\"\n").is_err(), "unknown keys are refused");
        let (loaded, _) = MasterConfig::load(&master_flags(&["--auth-tokens", "/run/tokens"])).unwrap();
        assert_eq!(loaded.auth.tokens.as_deref(), Some(Path::new("/run/tokens")));
        assert_eq!(MasterConfig::default().auth.tokens, None, "none by default");
    }

    #[test]
    fn defaults_validate_without_warnings() {
        assert_eq!(MasterConfig::default().validate().unwrap(), Vec::<String>::new());
        assert_eq!(ExecutorConfig::default().validate().unwrap(), Vec::<String>::new());
        // An empty file is the defaults.
        assert_eq!(MasterConfig::from_toml("").unwrap(), MasterConfig::default());
        assert_eq!(ExecutorConfig::from_toml("").unwrap(), ExecutorConfig::default());
        let c = MasterConfig::default();
        assert_eq!(c.executor_timing(), HeartbeatTiming::executor_default());
        assert_eq!(c.worker_timing(), HeartbeatTiming::worker_default());
        let (loaded, warnings) = MasterConfig::load(&MasterFlags::default()).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(loaded.name, "master-127.0.0.1-10240");
        assert_eq!(loaded.advertise_addr, "127.0.0.1:10240");
        assert_eq!(loaded.http_addr, HTTP_ADDR_DEFAULT);
        // An empty flag turns the HTTP API off.
        let (off, _) = MasterConfig::load(&master_flags(&["--http-addr", ""])).unwrap();
        assert_eq!(off.http_addr, "");
    }

    #[test]
    fn master_refusals_table() {
        // (TOML, setting named, words the rule must contain)
        let table: &[(&str, &str, &[&str])] = &[
            // The unsafe timing the design forbids: 9.5s + 1s deadline reaches the 10s offline TTL.
            (
                "[executors]\nself-fence = \"9.5s\"",
                "executors.self-fence",
                &["rule: self-fence < offline TTL - heartbeat deadline"],
            ),
            (
                "[workers]\nself-fence = \"11s\"",
                "workers.self-fence",
                &["rule: self-fence < offline TTL - heartbeat deadline"],
            ),
            (
                "[executors]\nself-fence = \"1.5s\"",
                "executors.self-fence",
                &["rule: self-fence > heartbeat interval + heartbeat deadline"],
            ),
            ("[executors]\nself-fence = \"0s\"", "executors.self-fence", &["is zero; it must be a positive duration"]),
            ("[rpc]\nmetastore-timeout = \"0ms\"", "rpc.metastore-timeout", &["is zero"]),
            ("[backoff]\nreset-after = \"0s\"", "backoff.reset-after", &["is zero"]),
            // Carried, a job master's heartbeat waits for its executor's next one: its fence must outlast that round
            // (here 2s + 2s).
            (
                "[executors]\ncarry-job-masters = true\nheartbeat-interval = \"2s\"\nheartbeat-timeout = \"2s\"\n\
                 self-fence = \"5s\"\n[workers]\nself-fence = \"4s\"",
                "workers.self-fence",
                &["rule: workers.self-fence > executor heartbeat interval + timeout"],
            ),
            (
                "[executors]\ncheck-interval = \"10s\"",
                "executors.check-interval",
                &["rule: check interval < offline TTL"],
            ),
            (
                "[election]\nstep-down = \"4s\"",
                "election.step-down",
                &["rule: step-down deadline < lease TTL - 1s", "1s early"],
            ),
            (
                "[election]\nlease-ttl = \"1500ms\"\nstep-down = \"400ms\"\nkeepalive-interval = \"100ms\"",
                "election.lease-ttl",
                &["2s", "real etcd"],
            ),
            ("[election]\nkeepalive-interval = \"3s\"", "election.keepalive-interval", &["step-down", "keepalive"]),
            ("[backoff]\nmultiplier = 0.5", "backoff.multiplier", &["must be at least 1"]),
            ("[backoff]\nmultiplier = nan", "backoff.multiplier", &["must be at least 1"]),
            ("[backoff]\nmultiplier = inf", "backoff.multiplier", &["must be at least 1"]),
            ("[backoff]\njitter = 1.0", "backoff.jitter", &["below 1"]),
            ("[backoff]\njitter = -0.1", "backoff.jitter", &["at least 0"]),
            ("[backoff]\ninitial = \"2m\"", "backoff.max", &["backoff.initial", "rule: initial <= max"]),
            ("[backoff]\nmax-tries = 0", "backoff.max-tries", &["at least 1"]),
            ("[executors]\nsuspect-fraction = 0.0", "executors.suspect-fraction", &["above 0 and at most 1"]),
            ("[executors]\nsuspect-fraction = 1.5", "executors.suspect-fraction", &["above 0 and at most 1"]),
            (
                "[placement]\nreservation-ttl = \"500ms\"",
                "placement.reservation-ttl",
                &["executors.heartbeat-interval"],
            ),
            (
                "[jobs]\ntombstone-retention = \"71s\"",
                "jobs.tombstone-retention",
                &["1m11s", "rule: tombstone retention > create window"],
            ),
            (
                "[jobs]\ntombstone-retention = \"5m\"\n[rpc]\nrequest-timeout = \"2m\"",
                "jobs.tombstone-retention",
                &["5m must be longer than", "5m5s"],
            ),
            ("addr = \"127.0.0.1\"", "addr", &["no port"]),
            ("addr = \"127.0.0.1:0\"", "addr", &["port", "1 to 65535"]),
            ("addr = \"127.0.0.1:65536\"", "addr", &["1 to 65535"]),
            ("addr = \":10240\"", "addr", &["no host"]),
            ("addr = \"::1:10240\"", "addr", &["brackets"]),
            ("advertise-addr = \"a b:1\"", "advertise-addr", &["invalid host"]),
            ("http-addr = \"127.0.0.1\"", "http-addr", &["no port"]),
            ("http-addr = \"http://127.0.0.1:10280\"", "http-addr", &["drop the scheme"]),
            ("http-addr = \"127.0.0.1:10240\"", "http-addr", &["also addr", "port of its own"]),
            ("addr = \"0.0.0.0:10240\"", "advertise-addr", &["set advertise-addr", "taken from addr"]),
            ("etcd = [\"grpc://127.0.0.1:2379\"]", "etcd", &["scheme \"grpc\"", "http://, https://"]),
            ("etcd = [\"http://127.0.0.1:2379/v3\"]", "etcd", &["has a path"]),
            ("etcd = [\"https://127.0.0.1\"]", "etcd", &["no port"]),
            (
                "etcd = [\"https://e1:2379\", \"e2:2379\"]",
                "etcd",
                &["\"https://e1:2379\" is https but \"e2:2379\" is plain text", "same scheme"],
            ),
            ("etcd = [\"http://e1:2379\", \"https://e2:2379\"]", "etcd", &["\"https://e2:2379\" is https"]),
            ("etcd = [\"https://e1:2379\"]", "etcd-client", &["--etcd-ca", "no system roots"]),
            ("[etcd-client]\nca = \"ca.pem\"", "etcd-client", &["plain text", "https://host:port"]),
            (
                "etcd = [\"https://e1:2379\"]\n[etcd-client]\nca = \"ca.pem\"\ncert = \"c.pem\"",
                "etcd-client",
                &["both cert and key", "missing: key (--etcd-key)"],
            ),
            ("[etcd-client]\nkey = \"k.pem\"", "etcd-client", &["missing: cert (--etcd-cert)"]),
            ("[etcd-client]\nuser = \"foreman\"", "etcd-client", &["missing: password-file (--etcd-password-file)"]),
            ("[etcd-client]\npassword-file = \"p\"", "etcd-client", &["missing: user (--etcd-user)"]),
            ("[etcd-client]\nuser = \" \"\npassword-file = \"p\"", "etcd-client", &["user is empty"]),
            ("etcd = []", "etcd", &["empty"]),
            ("cluster = \"Prod\"", "cluster", &["lowercase"]),
            ("cluster = \"prod-\"", "cluster", &["starting and ending"]),
            ("cluster = \"\"", "cluster", &["1 to 63"]),
            ("name = \"a/b\"", "name", &["letters, digits, '-', '_' and '.'"]),
            ("[http]\nnames = [\"http://a.example:1\"]", "http.names", &["drop the scheme"]),
            ("[http]\nnames = [\"a.example/api\"]", "http.names", &["drop the scheme and path"]),
            ("[http]\nnames = [\"a b\"]", "http.names", &["\"a b\" is not a valid host"]),
            ("[http]\nnames = [\"\"]", "http.names", &["\"\" is not a valid host"]),
            ("[http]\nnames = [\"a.example:0\"]", "http.names", &["1 to 65535"]),
            ("[http]\nnames = [\"::1\"]", "http.names", &["brackets"]),
            ("[http]\nmax-connections = 0", "http.max-connections", &["1 to 65536", "leave it out"]),
            ("[http]\nmax-connections = 65537", "http.max-connections", &["1 to 65536"]),
            ("[http]\nheader-read-timeout = \"0s\"", "http.header-read-timeout", &["is zero"]),
            ("[http]\nidle-timeout = \"0s\"", "http.idle-timeout", &["is zero"]),
        ];
        for &(toml, setting, words) in table {
            assert_refused(master(toml), setting, words, toml);
        }
        // What passes.
        for toml in [
            "addr = \"[::1]:10240\"",
            "addr = \"0.0.0.0:10240\"\nadvertise-addr = \"10.0.0.1:10240\"",
            "http-addr = \"\"",
            "http-addr = \"0.0.0.0:8080\"",
            "etcd = [\"etcd-0.etcd:2379\", \"etcd-1.etcd:2379\"]",
            "etcd = [\"http://etcd-0.etcd:2379\", \"etcd-1.etcd:2379\"]",
            "etcd = [\"https://e1:2379\", \"https://e2:2379\"]\n[etcd-client]\nca = \"ca.pem\"",
            "etcd = [\"https://e1:2379\"]\n[etcd-client]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
             user = \"foreman\"\npassword-file = \"p\"",
            "[etcd-client]\nuser = \"foreman\"\npassword-file = \"p\"",
            "cluster = \"prod-1\"",
            "name = \"m_1.a-b\"",
            "[backoff]\nmultiplier = 1",
            "[executors]\nsuspect-fraction = 1.0",
            "[executors]\ncarry-job-masters = true",
            "[http]\nnames = [\"a.example\", \"a.example:8080\", \"[::1]\", \"[fd00::1]:80\", \"10.0.0.1:10280\"]",
            "[http]\nmax-connections = 1",
        ] {
            assert_eq!(master(toml).unwrap(), Vec::<String>::new(), "{toml}");
        }
    }

    #[test]
    fn executor_refusals_table() {
        let table: &[(&str, &str, &[&str])] = &[
            ("capacity = 0", "capacity", &["1 to 1000000"]),
            ("capacity = 1000001", "capacity", &["1 to 1000000"]),
            ("task-queue = 0", "task-queue", &["1 to 65536"]),
            ("task-queue = 65537", "task-queue", &["1 to 65536"]),
            ("rpc-timeout = \"0s\"", "rpc-timeout", &["is zero; it must be a positive duration"]),
            ("dispatch-ttl = \"0s\"", "dispatch-ttl", &["is zero"]),
            ("drain-timeout = \"0s\"", "drain-timeout", &["is zero"]),
            ("join = []", "join", &["empty"]),
            ("join = [\"grpc://m:1\"]", "join", &["drop the scheme"]),
            ("[etcd-client]\ncert = \"c.pem\"\nkey = \"k.pem\"", "etcd-client", &["needs ca (--etcd-ca)"]),
            ("[etcd-client]\nuser = \"foreman\"", "etcd-client", &["missing: password-file"]),
            ("[labels]\n\"bad key\" = \"x\"", "labels", &["label key"]),
            ("[labels]\nzone = \"-x\"", "labels", &["label value"]),
        ];
        for &(toml, setting, words) in table {
            assert_refused(executor(toml), setting, words, toml);
        }
    }

    #[test]
    fn etcd_client_flags_override_the_file_and_no_password_is_a_setting() {
        let err = MasterConfig::from_toml("[etcd-client]\npassword = \"hunter2\"").unwrap_err().to_string();
        assert!(err.contains("unknown field `password`"), "{err}");
        let file = std::env::temp_dir().join(format!("foreman-etcd-client-{}.toml", std::process::id()));
        std::fs::write(
            &file,
            "etcd = [\"https://e1:2379\"]\n[etcd-client]\nca = \"file-ca.pem\"\nuser = \"from-file\"\n\
             password-file = \"file-pw\"\n",
        )
        .unwrap();
        let flags = master_flags(&[
            "--config",
            file.to_str().unwrap(),
            "--etcd-ca",
            "flag-ca.pem",
            "--etcd-cert",
            "c.pem",
            "--etcd-key",
            "k.pem",
            "--etcd-user",
            "from-flag",
        ]);
        let (c, _) = MasterConfig::load(&flags).unwrap();
        std::fs::remove_file(&file).unwrap();
        let e = &c.etcd_client;
        assert_eq!(e.ca.as_deref(), Some(Path::new("flag-ca.pem")));
        assert_eq!((e.cert.as_deref(), e.key.as_deref()), (Some(Path::new("c.pem")), Some(Path::new("k.pem"))));
        assert_eq!((e.user.as_deref(), e.password_file.as_deref()), (Some("from-flag"), Some(Path::new("file-pw"))));
        // The effective configuration round-trips.
        let text = toml::to_string(&c).unwrap();
        assert_eq!(MasterConfig::from_toml(&text).unwrap(), c);
        // No flag takes a password.
        assert!(MasterCli::try_parse_from(["m", "--etcd-password", "x"]).is_err());
        let x = executor_flags(&["--etcd-ca", "ca.pem", "--etcd-user", "u", "--etcd-password-file", "p"]);
        let (c, _) = ExecutorConfig::load(&x).unwrap();
        assert_eq!(c.etcd_client.user.as_deref(), Some("u"));
    }

    #[test]
    fn etcd_endpoints_split_by_scheme() {
        assert_eq!(split_etcd_endpoint("e:1"), Ok((EtcdScheme::Plain, "e:1")));
        assert_eq!(split_etcd_endpoint("http://e:1"), Ok((EtcdScheme::Plain, "e:1")));
        assert_eq!(split_etcd_endpoint("https://[::1]:2379"), Ok((EtcdScheme::Tls, "[::1]:2379")));
        assert!(split_etcd_endpoint("HTTPS://e:1").unwrap_err().contains("scheme \"HTTPS\""));
        assert_eq!(etcd_scheme(&["https://a:1".into(), "https://b:2".into()]), Ok(EtcdScheme::Tls));
        assert_eq!(etcd_scheme(&["a:1".into(), "http://b:2".into()]), Ok(EtcdScheme::Plain));
    }

    #[test]
    fn code_built_durations_must_be_whole_milliseconds() {
        let mut c = MasterConfig::default();
        c.rpc.request_timeout = Duration::from_micros(2500);
        assert_refused(c.validate(), "rpc.request-timeout", &["whole milliseconds"], "2.5ms");
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        // (TOML, words the message must contain)
        let table: &[(&str, &[&str])] = &[
            ("bogus = 1", &["bogus"]),
            ("[executors]\nheartbeat-interval = \"1s\"\nself-fenc = \"8s\"", &["self-fenc", "[executors]", "line 3"]),
            ("[election]\nlease_ttl = \"5s\"", &["lease_ttl", "[election]", "lease-ttl"]),
            ("[nosuch]\na = 1", &["nosuch"]),
        ];
        for &(toml, words) in table {
            let e = MasterConfig::from_toml(toml).expect_err(toml);
            assert!(matches!(e, ConfigError::Parse { .. }), "{e:?}");
            let text = e.to_string();
            for w in words {
                assert!(text.contains(w), "{toml}: {text:?} should contain {w:?}");
            }
        }
        let e = ExecutorConfig::from_toml("capacity = 4\nlabel = 1").unwrap_err();
        assert!(e.to_string().contains("label"), "{e}");
    }

    #[test]
    fn bad_values_in_files_are_refused_with_the_key() {
        let table: &[(&str, &[&str])] = &[
            ("[election]\nlease-ttl = \"-5s\"", &["cannot be negative", "lease-ttl"]),
            ("[election]\nlease-ttl = 5", &["duration string"]),
            ("[election]\nlease-ttl = \"5\"", &["ms, s, m, h"]),
            ("[placement]\nstrategy = \"random\"", &["random", "least-loaded", "bin-pack"]),
            ("[backoff]\nmax-tries = -1", &["max-tries"]),
        ];
        for &(toml, words) in table {
            let text = MasterConfig::from_toml(toml).expect_err(toml).to_string();
            for w in words {
                assert!(text.contains(w), "{toml}: {text:?} should contain {w:?}");
            }
        }
        // An integer is accepted where a float is expected.
        assert_eq!(MasterConfig::from_toml("[backoff]\nmultiplier = 2").unwrap().backoff.multiplier, 2.0);
    }

    #[test]
    fn self_fence_shorter_than_a_failover_warns() {
        // 6s <= lease 5s + retry 1s + heartbeat 500ms: safe, but a failover would stop healthy executors.
        let warnings = master("[executors]\nself-fence = \"6s\"").unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("a leader failover would make healthy executors stop their work"));
        assert!(warnings[0].contains("raise executors.self-fence above 6.5s"), "{}", warnings[0]);
        let warnings = master("[workers]\nself-fence = \"7s\"").unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("raise workers.self-fence above 7s"), "{}", warnings[0]);
        // Just above the bound: no warning.
        assert!(master("[executors]\nself-fence = \"6501ms\"").unwrap().is_empty());
    }

    #[test]
    fn flags_override_the_file() {
        let file = TempFile::new(
            "master-precedence",
            "cluster = \"from-file\"\netcd = [\"e1:2379\"]\n\
             [election]\nlease-ttl = \"6s\"\nstep-down = \"4s\"\n\
             [executors]\noffline-ttl = \"12s\"\n",
        );
        let flags = master_flags(&[
            "--config",
            file.arg(),
            "--executors-offline-ttl",
            "11s",
            "--etcd",
            "a:1,b:2",
            "--placement-strategy",
            "bin-pack",
        ]);
        let (c, warnings) = MasterConfig::load(&flags).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.cluster, "from-file"); // file, no flag
        assert_eq!(c.election.lease_ttl, ms(6000)); // file, no flag
        assert_eq!(c.executors.offline_ttl, ms(11_000)); // flag beats file
        assert_eq!(c.etcd, ["a:1", "b:2"]); // flag list replaces file list
        assert_eq!(c.placement.strategy, Strategy::BinPack); // flag beats default
        assert_eq!(c.rpc.request_timeout, ms(3000)); // default

        let file = TempFile::new("executor-precedence", "capacity = 4\n[labels]\nzone = \"east\"\ndisk = \"hdd\"\n");
        let flags = executor_flags(&["--config", file.arg(), "--label", "disk=ssd", "--label", "gpu=yes"]);
        let (c, _) = ExecutorConfig::load(&flags).unwrap();
        assert_eq!(c.capacity, 4);
        let labels: Vec<_> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(labels, ["disk=ssd", "gpu=yes", "zone=east"]);
    }

    #[test]
    fn every_setting_has_its_flag() {
        // The same non-default value for every setting, once as a file and once as flags.
        let toml = r#"
            name = "m1"
            addr = "10.0.0.1:1"
            advertise-addr = "10.0.0.2:2"
            http-addr = "10.0.0.1:5"
            etcd = ["e1:3", "e2:4"]
            cluster = "c1"
            [election]
            lease-ttl = "7s"
            keepalive-interval = "2s"
            step-down = "5s"
            campaign-retry = "3s"
            [executors]
            heartbeat-interval = "600ms"
            heartbeat-timeout = "2s"
            self-fence = "12s"
            offline-ttl = "15s"
            check-interval = "700ms"
            suspect-fraction = 0.75
            suspect-hold = "20s"
            carry-job-masters = true
            [workers]
            heartbeat-interval = "2s"
            heartbeat-timeout = "3s"
            self-fence = "14s"
            offline-ttl = "18s"
            [backoff]
            initial = "2s"
            multiplier = 2.5
            max = "2m"
            jitter = 0.1
            reset-after = "10m"
            max-tries = 7
            [placement]
            strategy = "bin-pack"
            reservation-ttl = "20s"
            [rpc]
            request-timeout = "4s"
            metastore-timeout = "1500ms"
            [jobs]
            tombstone-retention = "1h"
            [http]
            names = ["foreman.example.com:10280", "foreman.example.com"]
            max-connections = 100
            header-read-timeout = "5s"
            idle-timeout = "30s"
        "#;
        let file = MasterConfig::from_toml(toml).unwrap();
        let args = [
            "--name=m1",
            "--addr=10.0.0.1:1",
            "--advertise-addr=10.0.0.2:2",
            "--http-addr=10.0.0.1:5",
            "--etcd=e1:3,e2:4",
            "--cluster=c1",
            "--election-lease-ttl=7s",
            "--election-keepalive-interval=2s",
            "--election-step-down=5s",
            "--election-campaign-retry=3s",
            "--executors-heartbeat-interval=600ms",
            "--executors-heartbeat-timeout=2s",
            "--executors-self-fence=12s",
            "--executors-offline-ttl=15s",
            "--executors-check-interval=700ms",
            "--executors-suspect-fraction=0.75",
            "--executors-suspect-hold=20s",
            "--executors-carry-job-masters=true",
            "--workers-heartbeat-interval=2s",
            "--workers-heartbeat-timeout=3s",
            "--workers-self-fence=14s",
            "--workers-offline-ttl=18s",
            "--backoff-initial=2s",
            "--backoff-multiplier=2.5",
            "--backoff-max=2m",
            "--backoff-jitter=0.1",
            "--backoff-reset-after=10m",
            "--backoff-max-tries=7",
            "--placement-strategy=bin-pack",
            "--placement-reservation-ttl=20s",
            "--rpc-request-timeout=4s",
            "--rpc-metastore-timeout=1500ms",
            "--jobs-tombstone-retention=1h",
            "--http-names=foreman.example.com:10280,foreman.example.com",
            "--http-max-connections=100",
            "--http-header-read-timeout=5s",
            "--http-idle-timeout=30s",
        ];
        let (from_flags, warnings) = MasterConfig::load(&master_flags(&args)).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(from_flags, file);

        let toml = r#"
            name = "x1"
            addr = "10.0.0.1:1"
            advertise-addr = "10.0.0.2:2"
            join = ["m1:3", "m2:4"]
            capacity = 3
            rpc-timeout = "4s"
            task-queue = 9
            dispatch-ttl = "6s"
            drain-timeout = "7s"
            [labels]
            zone = "east"
        "#;
        let file = ExecutorConfig::from_toml(toml).unwrap();
        let args = [
            "--name=x1",
            "--addr=10.0.0.1:1",
            "--advertise-addr=10.0.0.2:2",
            "--join=m1:3,m2:4",
            "--capacity=3",
            "--rpc-timeout=4s",
            "--task-queue=9",
            "--dispatch-ttl=6s",
            "--drain-timeout=7s",
            "--label=zone=east",
        ];
        let (from_flags, _) = ExecutorConfig::load(&executor_flags(&args)).unwrap();
        assert_eq!(from_flags, file);
    }

    #[test]
    fn bad_flags_are_refused_naming_the_flag() {
        // (arguments, words clap's message must contain)
        let table: &[(&[&str], &[&str])] = &[
            (&["--election-lease-ttl", "-5s"], &["--election-lease-ttl", "cannot be negative"]),
            (&["--executors-offline-ttl", "10"], &["--executors-offline-ttl", "ms, s, m, h"]),
            (&["--placement-strategy", "random"], &["--placement-strategy", "least-loaded"]),
            (&["--backoff-max-tries", "-1"], &["--backoff-max-tries"]),
            (&["--no-such-flag"], &["--no-such-flag"]),
        ];
        for &(args, words) in table {
            let argv = std::iter::once("foreman").chain(args.iter().copied());
            let text = MasterCli::try_parse_from(argv).expect_err("refused").to_string();
            for w in words {
                assert!(text.contains(w), "{args:?}: {text:?} should contain {w:?}");
            }
        }
        let argv = ["foreman", "--label", "zone"];
        let text = ExecutorCli::try_parse_from(argv).expect_err("refused").to_string();
        assert!(text.contains("--label"), "{text}");
        // A negative multiplier reaches validation, which names the rule.
        let (flags, e) = (master_flags(&["--backoff-multiplier", "-2"]), "must be at least 1");
        assert_refused(MasterConfig::load(&flags).map(|(_, w)| w), "backoff.multiplier", &[e], "-2");
    }

    #[test]
    fn file_errors() {
        let flags = master_flags(&["--config", "/nonexistent/foreman.toml"]);
        let e = MasterConfig::load(&flags).unwrap_err();
        assert!(matches!(e, ConfigError::Io { .. }), "{e:?}");
        assert!(e.to_string().contains("/nonexistent/foreman.toml"), "{e}");

        let file = TempFile::new("bad-syntax", "[executors\n");
        let e = MasterConfig::load(&master_flags(&["--config", file.arg()])).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e:?}");
        assert!(e.to_string().contains(file.arg()), "{e}");

        let file = TempFile::new("too-large", &"# padding\n".repeat(200_000));
        let e = MasterConfig::load(&master_flags(&["--config", file.arg()])).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
    }

    #[test]
    fn effective_config_round_trips_through_toml() {
        let (m, _) =
            MasterConfig::load(&master_flags(&["--backoff-multiplier=2", "--executors-self-fence=8.25s"])).unwrap();
        let text = toml::to_string(&m).unwrap();
        let back = MasterConfig::from_toml(&text).unwrap();
        assert_eq!(back, m, "{text}");
        assert!(back.validate().unwrap().is_empty());
        assert!(text.contains("self-fence = \"8.25s\""), "{text}");

        for args in [&["--label=zone=east", "--advertise-addr=[::1]:7"][..], &[]] {
            let (e, _) = ExecutorConfig::load(&executor_flags(args)).unwrap();
            let text = toml::to_string(&e).unwrap();
            let back = ExecutorConfig::from_toml(&text).unwrap();
            assert_eq!(back, e, "{text}");
            back.validate().unwrap();
        }
    }

    #[test]
    fn derived_names_are_valid_names() {
        let table = [
            ("127.0.0.1:10240", "master-127.0.0.1-10240"),
            ("[::1]:7", "master----1--7"),
            ("node-1.example.com:10240", "master-node-1.example.com-10240"),
        ];
        for (addr, want) in table {
            assert_eq!(derived_name("master", addr), want);
            check_name("name", want).unwrap();
        }
        let long = format!("{}:1", "h".repeat(100));
        assert_eq!(derived_name("master", &long).len(), NAME_MAX_LEN);
    }

    #[test]
    fn an_executors_directory_is_absolute_whatever_the_flag_says() {
        let relative = ExecutorConfig { data_dir: "data/e1".into(), name: "e1".into(), ..ExecutorConfig::default() };
        let dir = relative.dir();
        assert!(dir.is_absolute() && dir.ends_with("data/e1"), "{}", dir.display());
        let default = ExecutorConfig { name: "e2".into(), ..ExecutorConfig::default() };
        assert!(default.dir().is_absolute() && default.dir().ends_with("foreman-e2"));
    }
}
