//! The metastore (design.md §3): key-value state, leases and the leader election, behind one API with two
//! backends.
//!
//! - **etcd** ([`MetaStore::etcd`]): the production backend, and in the simulation build madsim's simulated etcd.
//!   Only the subset that behaves the same in real and simulated etcd is used (madsim-notes §4): single-key and
//!   prefix reads, value-compare transactions, leases, and the Election API. No watches, no revision or version
//!   compares, no range deletes.
//! - **embedded** ([`MetaStore::embedded`]): an in-process store for `foreman standalone` and for tests, optionally
//!   durable in a directory. It implements the same contract, leases and election included
//!   ([`contract`] runs one suite against both).
//!
//! Invariants this module keeps for its callers:
//! - Every key lives under `/foreman/<cluster>/`; the API takes and returns keys relative to that prefix, so two
//!   clusters sharing an etcd never see each other's keys.
//! - A transaction is all-or-nothing. Its only conditions are value equalities, so fencing is portable: a leader
//!   guards its writes with [`Cond::IsLeader`] (its election key still holds its campaign value), which is false
//!   once the leader resigned, its lease expired or was revoked, in every backend.
//! - Errors say whether a write may have happened: [`MetaError::Unavailable`] means certainly not,
//!   [`MetaError::Unknown`] means maybe (re-read before retrying).
//! - A transaction that every backend would not treat alike is refused before it is sent (see [`MetaStore::txn`]).

pub mod access;
#[doc(hidden)]
pub mod contract;
mod durable;
mod embedded;
mod etcd;
pub mod keys;
mod legacy;

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The most operations one transaction may carry (real etcd's default `--max-txn-ops`).
pub const TXN_OPS_MAX: usize = 128;

/// How many times [`MetaStore::bump_counter`] re-reads a counter that moved under it before giving up.
const BUMP_RETRIES_MAX: usize = 3;

/// A lease granted by the metastore; keys put with it and election candidacies on it end with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseId(pub i64);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// Which backend a [`MetaStore`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Etcd,
    Embedded,
}

/// A condition of a transaction. Both kinds are value equalities, the only compare that real and simulated etcd
/// evaluate alike (an equality on a missing key is false in both).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cond {
    /// `key` exists and holds exactly `value`.
    ValueEquals { key: String, value: Vec<u8> },
    /// True while `key` is the current leader's key with its campaign value: false after a resign, after the
    /// lease ended, and so for every deposed leader.
    IsLeader(LeaderKey),
}

/// A write of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Sets `key` to `value`; with a lease the key is deleted when the lease ends.
    Put { key: String, value: Vec<u8>, lease: Option<LeaseId> },
    /// Deletes `key` (nothing happens if it is missing).
    Delete { key: String },
}

/// Proof of an election win: the candidate's full election key (`<prefix>election/<lease id, hex>`) and its
/// campaign value. Guard writes with [`Cond::IsLeader`]; give leadership up with [`MetaStore::resign`].
#[derive(Clone, Debug)]
pub struct LeaderKey {
    key: String,
    value: String,
    lease: LeaseId,
    handle: LeaderHandle,
}

/// What a backend needs to resign the leadership: etcd wants its own leader key back as it was handed out.
#[derive(Clone, Debug)]
enum LeaderHandle {
    Etcd(etcd_client::LeaderKey),
    Embedded { created: u64 },
}

impl LeaderKey {
    /// The full election key (including the store prefix).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The campaign value this key was won with.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The lease the candidacy lives on.
    pub fn lease(&self) -> LeaseId {
        self.lease
    }
}

impl PartialEq for LeaderKey {
    fn eq(&self, other: &LeaderKey) -> bool {
        (&self.key, &self.value, self.lease) == (&other.key, &other.value, other.lease)
    }
}

impl Eq for LeaderKey {}

/// Why a metastore call did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// Refused before being sent or refused by the store (connection refused, a transaction the contract does not
    /// allow, ...): definitely not applied.
    #[error("metastore unavailable: {0}")]
    Unavailable(String),
    /// The call timed out or failed in flight: a write may or may not have been applied. Callers re-read before
    /// retrying.
    #[error("metastore outcome unknown: {0}")]
    Unknown(String),
    /// The lease expired or was revoked (or never existed).
    #[error("the lease is gone: it expired or was revoked")]
    LeaseGone,
    /// A stored value (or the embedded store's files) could not be decoded.
    #[error("corrupt metastore data at {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

/// A value-equality compare on a full key: what every [`Cond`] becomes.
#[derive(Clone, Debug)]
struct Compare {
    key: String,
    value: Vec<u8>,
}

/// An [`Op`] on a full key.
#[derive(Clone, Debug)]
enum Write {
    Put { key: String, value: Vec<u8>, lease: Option<LeaseId> },
    Delete { key: String },
}

/// What a metastore request is, as [`Requests`] counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RequestKind {
    /// A read: one key, a prefix, or the current leader.
    Read,
    /// A transaction (a write, and the reads of its conditions).
    Write,
    /// A lease's grant, keep-alive or revoke.
    Lease,
    /// A campaign or a resign.
    Election,
}

impl RequestKind {
    pub const ALL: [RequestKind; 4] =
        [RequestKind::Read, RequestKind::Write, RequestKind::Lease, RequestKind::Election];

    /// The label value of the kind (`read`, `write`, `lease`, `election`).
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Read => "read",
            RequestKind::Write => "write",
            RequestKind::Lease => "lease",
            RequestKind::Election => "election",
        }
    }
}

/// Requests sent to the metastore, by [`RequestKind`], counted when sent (a transaction the contract refuses before
/// sending is not counted; one that fails or times out is). Cheap to clone; clones count together, so that every
/// handle of a process (or, in the simulation, every node of a run) can share one count.
#[derive(Clone, Debug, Default)]
pub struct Requests(Arc<[std::sync::atomic::AtomicU64; 4]>);

impl Requests {
    pub(crate) fn count(&self, kind: RequestKind) {
        self.0[kind as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Requests of `kind` so far.
    pub fn of(&self, kind: RequestKind) -> u64 {
        self.0[kind as usize].load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests of every kind so far.
    pub fn total(&self) -> u64 {
        RequestKind::ALL.iter().map(|&k| self.of(k)).sum()
    }
}

#[derive(Clone)]
enum Backend {
    /// Boxed: the etcd client is large, and handles are cloned often.
    Etcd(Arc<etcd::EtcdStore>),
    Embedded(embedded::EmbeddedStore),
}

/// A handle on the metastore of one cluster; cheap to clone, and clones share the connection (etcd) or the
/// state (embedded).
#[derive(Clone)]
pub struct MetaStore {
    backend: Backend,
    prefix: Arc<str>,
    endpoints: Arc<[String]>,
    requests: Requests,
}

impl fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetaStore")
            .field("kind", &self.kind())
            .field("prefix", &self.prefix)
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

fn check_cluster(cluster: &str) -> Result<(), MetaError> {
    match crate::core::ids::cluster_name_problem(cluster) {
        None => Ok(()),
        Some(problem) => Err(MetaError::Unavailable(problem)),
    }
}

fn cluster_prefix(cluster: &str) -> Arc<str> {
    format!("/foreman/{cluster}/").into()
}

/// etcd counts lease TTLs in whole seconds: round up, at least one.
fn ttl_secs(ttl: Duration) -> i64 {
    let secs = ttl.as_millis().div_ceil(1000).max(1);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

impl MetaStore {
    /// A client of the etcd cluster at `endpoints` (`host:port`), in plain text and without a user: see
    /// [`MetaStore::etcd_with`].
    pub async fn etcd(endpoints: &[String], cluster: &str, op_timeout: Duration) -> Result<MetaStore, MetaError> {
        MetaStore::etcd_with(endpoints, cluster, op_timeout, &access::EtcdAccess::default()).await
    }

    /// A client of the etcd cluster at `endpoints`: `host:port` or `http://host:port` (plain text), or
    /// `https://host:port` (TLS with `access`'s CA and client certificate; production build only), all of one
    /// scheme. Without a user it connects lazily (nothing is sent until the first call); with one it authenticates
    /// at once, so a wrong password fails here. Every call is bounded by `op_timeout`.
    pub async fn etcd_with(
        endpoints: &[String],
        cluster: &str,
        op_timeout: Duration,
        access: &access::EtcdAccess,
    ) -> Result<MetaStore, MetaError> {
        check_cluster(cluster)?;
        if endpoints.is_empty() {
            return Err(MetaError::Unavailable("no etcd endpoint given".into()));
        }
        // The configuration checked the endpoints; here only whether they are https, all or none.
        let https = endpoints.iter().filter(|e| e.starts_with("https://")).count();
        if https != 0 && https != endpoints.len() {
            return Err(MetaError::Unavailable(format!(
                "etcd endpoints {} mix https and plain text",
                endpoints.join(",")
            )));
        }
        let tls = https > 0;
        if tls && !access.has_tls() {
            return Err(MetaError::Unavailable(format!(
                "the etcd endpoints {} are https: give --etcd-ca (the CA that signed etcd's certificate)",
                endpoints.join(",")
            )));
        }
        let store = etcd::EtcdStore::connect(endpoints, tls, access, op_timeout).await?;
        Ok(MetaStore {
            backend: Backend::Etcd(Arc::new(store)),
            prefix: cluster_prefix(cluster),
            endpoints: endpoints.into(),
            requests: Requests::default(),
        })
    }

    /// An in-process store. With `data_dir` it is durable across process restarts: a redb database in the
    /// directory, committed before a transaction returns, verified whole (every page's checksum, and a manifest
    /// against older copies) when the store opens, which refuses a damaged or replaced database rather than start
    /// with less than it acknowledged (`Corrupt`, naming the file and what to do). The files of an earlier foreman
    /// (`snapshot.json`, `log.jsonl`) found there are imported once, strictly, and renamed aside. Leases and leased
    /// keys never outlive the process, as if every lease expired at the restart. Without `data_dir` the store lives
    /// in memory and touches no file. Clones of the returned handle share the store.
    pub fn embedded(cluster: &str, data_dir: Option<&Path>) -> Result<MetaStore, MetaError> {
        check_cluster(cluster)?;
        let store = embedded::EmbeddedStore::open(data_dir)?;
        Ok(MetaStore {
            backend: Backend::Embedded(store),
            prefix: cluster_prefix(cluster),
            endpoints: Arc::new([]),
            requests: Requests::default(),
        })
    }

    /// The same store with each etcd request delayed by up to what `latency` says (the simulation's sustained
    /// metastore latency; the embedded store ignores it). Call it on a fresh handle, before it is cloned.
    pub fn with_latency(mut self, latency: crate::buggify::Latency) -> MetaStore {
        if let Backend::Etcd(s) = &mut self.backend {
            match Arc::get_mut(s) {
                Some(s) => s.latency = latency,
                None => tracing::warn!("a metastore handle already shared takes no latency"),
            }
        }
        self
    }

    /// The same store counting its requests into `requests` (shared with whoever else counts there) instead of
    /// its own count. Handles cloned from this one afterwards count there too.
    pub fn counting_into(mut self, requests: &Requests) -> MetaStore {
        self.requests = requests.clone();
        self
    }

    /// The requests this handle and its clones sent so far.
    pub fn requests(&self) -> &Requests {
        &self.requests
    }

    pub fn kind(&self) -> StoreKind {
        match self.backend {
            Backend::Etcd(_) => StoreKind::Etcd,
            Backend::Embedded(_) => StoreKind::Embedded,
        }
    }

    /// One read of a key under this cluster's prefix: whether this process may use the store at all (for etcd:
    /// reachable, its certificate trusted, this process's credentials accepted, read permission on the prefix).
    pub async fn probe(&self) -> Result<(), MetaError> {
        self.get("").await.map(|_| ())
    }

    /// The etcd endpoints (empty for the embedded store).
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The cluster a key prefix of [`MetaStore::prefix`]'s shape names (`/foreman/<cluster>/`).
    pub fn cluster_of_prefix(prefix: &str) -> Option<String> {
        let cluster = prefix.strip_prefix("/foreman/")?.strip_suffix('/')?;
        check_cluster(cluster).ok().map(|()| cluster.to_owned())
    }

    /// `/foreman/<cluster>/`: every key of this cluster lives under it.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn election_name(&self) -> String {
        self.full(&keys::election())
    }

    /// The value at `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, MetaError> {
        let key = self.full(key);
        self.requests.count(RequestKind::Read);
        match &self.backend {
            Backend::Etcd(s) => s.get(&key).await,
            Backend::Embedded(s) => Ok(s.get(&key)),
        }
    }

    /// Every key under `prefix` (relative, as passed to [`MetaStore::txn`]) with its value, sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        let full = self.full(prefix);
        self.requests.count(RequestKind::Read);
        let mut found = match &self.backend {
            Backend::Etcd(s) => s.list(&full).await?,
            Backend::Embedded(s) => s.list(&full),
        };
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
            .into_iter()
            .map(|(k, v)| match k.strip_prefix(&*self.prefix) {
                Some(rel) => Ok((rel.to_owned(), v)),
                None => Err(MetaError::Corrupt { key: k.clone(), reason: "listed outside the cluster prefix".into() }),
            })
            .collect()
    }

    /// All-or-nothing: if every condition holds, applies every op and returns `Ok(true)`; otherwise changes
    /// nothing and returns `Ok(false)`. `Err(LeaseGone)` when a put names a lease that is gone.
    ///
    /// Refused with `Unavailable` before anything is sent, because the backends would not agree on them: more than
    /// [`TXN_OPS_MAX`] ops; two ops on one key (real etcd refuses, the simulated one applies both); an op on an
    /// election key (those belong to the Election API); a put with a lease together with any condition or other
    /// op (the simulated etcd panics on a leased put in a transaction whose lease is gone, so a leased put is sent
    /// as a plain put and must stand alone).
    pub async fn txn(&self, conds: &[Cond], ops: &[Op]) -> Result<bool, MetaError> {
        self.check_txn(conds, ops)?;
        let compares: Vec<Compare> = conds
            .iter()
            .map(|c| match c {
                Cond::ValueEquals { key, value } => Compare { key: self.full(key), value: value.clone() },
                Cond::IsLeader(leader) => Compare { key: leader.key.clone(), value: leader.value.clone().into_bytes() },
            })
            .collect();
        let writes: Vec<Write> = ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => {
                    Write::Put { key: self.full(key), value: value.clone(), lease: *lease }
                }
                Op::Delete { key } => Write::Delete { key: self.full(key) },
            })
            .collect();
        self.requests.count(RequestKind::Write);
        match &self.backend {
            Backend::Etcd(s) => s.txn(&compares, &writes).await,
            Backend::Embedded(s) => s.txn(&compares, &writes),
        }
    }

    fn check_txn(&self, conds: &[Cond], ops: &[Op]) -> Result<(), MetaError> {
        let refuse = |why: String| Err(MetaError::Unavailable(format!("transaction refused: {why}")));
        if ops.len() > TXN_OPS_MAX {
            return refuse(format!("{} ops, more than {TXN_OPS_MAX}", ops.len()));
        }
        let election = keys::election();
        let mut seen = BTreeSet::new();
        for op in ops {
            let key = match op {
                Op::Put { key, .. } | Op::Delete { key } => key,
            };
            if !seen.insert(key.as_str()) {
                return refuse(format!("two ops on {key:?}"));
            }
            if key.starts_with(&election) {
                return refuse(format!("{key:?} belongs to the election; use campaign and resign"));
            }
            if let Op::Put { lease: Some(lease), .. } = op {
                if ops.len() > 1 || !conds.is_empty() {
                    return refuse(format!(
                        "the put of {key:?} with lease {lease} must be the only op of a transaction without conditions"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Grants a lease of `ttl`, rounded up to whole seconds (etcd's unit; real etcd grants at least 2 s).
    pub async fn grant(&self, ttl: Duration) -> Result<LeaseId, MetaError> {
        let secs = ttl_secs(ttl);
        self.requests.count(RequestKind::Lease);
        match &self.backend {
            Backend::Etcd(s) => s.grant(secs).await,
            Backend::Embedded(s) => Ok(s.grant(secs)),
        }
    }

    /// One keep-alive round trip: the lease lives another full TTL from now. `Err(LeaseGone)` when the lease
    /// expired or was revoked.
    pub async fn keep_alive(&self, lease: LeaseId) -> Result<(), MetaError> {
        self.requests.count(RequestKind::Lease);
        match &self.backend {
            Backend::Etcd(s) => s.keep_alive(lease).await,
            Backend::Embedded(s) => s.keep_alive(lease),
        }
    }

    /// Ends `lease` now: its keys are deleted and its candidacy (or leadership) ends. Revoking a lease that is
    /// already gone succeeds.
    pub async fn revoke(&self, lease: LeaseId) -> Result<(), MetaError> {
        self.requests.count(RequestKind::Lease);
        match &self.backend {
            Backend::Etcd(s) => s.revoke(lease).await,
            Backend::Embedded(s) => {
                s.revoke(lease);
                Ok(())
            }
        }
    }

    /// Enters the cluster's election with `value` (unique per campaign) on `lease`, and waits until this candidate
    /// leads: candidates lead in the order they entered, each once every earlier one resigned or lost its lease.
    /// Never times out: race it with your own deadlines. `Err(LeaseGone)` if the lease ends first.
    pub async fn campaign(&self, value: &str, lease: LeaseId) -> Result<LeaderKey, MetaError> {
        let name = self.election_name();
        self.requests.count(RequestKind::Election);
        match &self.backend {
            Backend::Etcd(s) => s.campaign(&name, value, lease).await,
            Backend::Embedded(s) => s.campaign(&name, value, lease).await,
        }
    }

    /// The current leader's campaign value, if anyone leads. (Read directly: the simulated etcd's observe does not
    /// send the current leader first.)
    pub async fn leader(&self) -> Result<Option<String>, MetaError> {
        let name = self.election_name();
        self.requests.count(RequestKind::Read);
        let found = match &self.backend {
            Backend::Etcd(s) => s.leader(&name).await?,
            Backend::Embedded(s) => s.leader(&name),
        };
        found
            .map(|(key, value)| String::from_utf8(value).map_err(|e| MetaError::Corrupt { key, reason: e.to_string() }))
            .transpose()
    }

    /// Gives the leadership (or a candidacy) of `key` up; the next candidate in line leads. Resigning a key that is
    /// already gone succeeds.
    pub async fn resign(&self, key: &LeaderKey) -> Result<(), MetaError> {
        self.requests.count(RequestKind::Election);
        match (&self.backend, &key.handle) {
            (Backend::Etcd(s), LeaderHandle::Etcd(raw)) => s.resign(raw).await,
            (Backend::Embedded(s), LeaderHandle::Embedded { created }) => {
                s.resign(&key.key, *created);
                Ok(())
            }
            _ => Err(MetaError::Unavailable(format!("leader key {} was won in another kind of store", key.key))),
        }
    }

    /// Adds one to the decimal counter at `key` (missing = 0) in a transaction guarded by `guard`, and returns the
    /// new value; `None` when a guard condition failed (for a leader epoch: this leader was deposed).
    ///
    /// The write also compares the old value, so two writers never take the same number. A missing counter cannot
    /// be compared (an equality on a missing key is false in real and simulated etcd alike, and "not equal" on a
    /// missing key differs between them): its first write is protected by `guard` alone, which for the counters of
    /// [`keys`] is the leader's key, so only one writer exists.
    pub async fn bump_counter(&self, key: &str, guard: &[Cond]) -> Result<Option<u64>, MetaError> {
        let mut attempts = 0;
        loop {
            let old = self.get(key).await?;
            let current = match &old {
                None => 0,
                Some(bytes) => parse_counter(key, bytes)?,
            };
            let next = current.checked_add(1).ok_or_else(|| MetaError::Corrupt {
                key: key.to_owned(),
                reason: "the counter is at u64::MAX".into(),
            })?;
            let mut conds = guard.to_vec();
            if let Some(bytes) = &old {
                conds.push(Cond::ValueEquals { key: key.to_owned(), value: bytes.clone() });
            }
            let put = Op::Put { key: key.to_owned(), value: next.to_string().into_bytes(), lease: None };
            if self.txn(&conds, &[put]).await? {
                return Ok(Some(next));
            }
            // Refused: either a guard failed, or the counter moved under us (then try again, a bounded number of
            // times).
            if self.get(key).await? == old {
                return Ok(None);
            }
            attempts += 1;
            if attempts >= BUMP_RETRIES_MAX {
                return Err(MetaError::Unavailable(format!(
                    "the counter {key} changed under each of {BUMP_RETRIES_MAX} attempts"
                )));
            }
        }
    }
}

/// Reads a decimal counter as [`MetaStore::bump_counter`] writes it.
pub fn parse_counter(key: &str, bytes: &[u8]) -> Result<u64, MetaError> {
    std::str::from_utf8(bytes).ok().and_then(|s| s.trim().parse().ok()).ok_or_else(|| MetaError::Corrupt {
        key: key.to_owned(),
        reason: format!("not a decimal counter: {:?}", String::from_utf8_lossy(bytes)),
    })
}

/// A scratch directory unique to one test of one process, removed when dropped.
#[cfg(all(test, not(madsim)))]
struct ScratchDir(std::path::PathBuf);

#[cfg(all(test, not(madsim)))]
impl ScratchDir {
    fn new(test: &str) -> ScratchDir {
        let dir = std::env::temp_dir().join(format!("foreman-meta-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        ScratchDir(dir)
    }
}

#[cfg(all(test, not(madsim)))]
impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[tokio::test]
    async fn requests_are_counted_by_kind_and_shared_by_clones_and_counting_into() {
        let shared = Requests::default();
        let store = MetaStore::embedded("unit", None).unwrap().counting_into(&shared);
        let clone = store.clone();
        let put = Op::Put { key: "a".into(), value: b"1".to_vec(), lease: None };
        assert_eq!(clone.txn(&[], std::slice::from_ref(&put)).await, Ok(true));
        assert_eq!(store.get("a").await, Ok(Some(b"1".to_vec())));
        assert_eq!(store.list("").await.map(|l| l.len()), Ok(1));
        let lease = store.grant(Duration::from_secs(5)).await.unwrap();
        store.keep_alive(lease).await.unwrap();
        let won = store.campaign("me", lease).await.unwrap();
        assert_eq!(store.leader().await, Ok(Some("me".into())));
        store.resign(&won).await.unwrap();
        store.revoke(lease).await.unwrap();
        // A transaction the contract refuses is never sent, so not counted.
        assert!(store.txn(&[], &[put.clone(), put]).await.is_err());
        let counts: Vec<u64> = RequestKind::ALL.iter().map(|&k| shared.of(k)).collect();
        assert_eq!(counts, [3, 1, 3, 2], "read, write, lease, election");
        assert_eq!((shared.total(), store.requests().total()), (9, 9));
        // Another store keeps its own count.
        let other = MetaStore::embedded("unit", None).unwrap();
        let _ = other.get("a").await;
        assert_eq!((other.requests().total(), shared.total()), (1, 9));
    }

    #[tokio::test]
    async fn contract_holds_for_the_in_memory_embedded_store() {
        let store = MetaStore::embedded("unit", None).unwrap();
        let cases = contract::run_all(store.clone(), store).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(cases.len() >= 10, "{cases:?}");
    }

    #[test]
    fn futures_are_send() {
        let store = MetaStore::embedded("unit", None).unwrap();
        assert_send(&store.get("a"));
        assert_send(&store.list("a"));
        assert_send(&store.txn(&[], &[]));
        assert_send(&store.grant(Duration::from_secs(1)));
        assert_send(&store.keep_alive(LeaseId(1)));
        assert_send(&store.campaign("v", LeaseId(1)));
        assert_send(&store.bump_counter("c", &[]));
    }

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_secs(Duration::ZERO), 1);
        assert_eq!(ttl_secs(Duration::from_millis(1)), 1);
        assert_eq!(ttl_secs(Duration::from_millis(1000)), 1);
        assert_eq!(ttl_secs(Duration::from_millis(1001)), 2);
        assert_eq!(ttl_secs(Duration::from_secs(5)), 5);
    }

    #[test]
    fn cluster_names_with_a_slash_are_refused() {
        assert!(MetaStore::embedded("", None).is_err());
        assert!(MetaStore::embedded("a/b", None).is_err());
        assert_eq!(MetaStore::embedded("a-b", None).unwrap().prefix(), "/foreman/a-b/");
    }

    fn put(key: &str, value: &str) -> Op {
        Op::Put { key: key.into(), value: value.into(), lease: None }
    }

    #[tokio::test]
    async fn contract_holds_for_the_durable_embedded_store() {
        let dir = ScratchDir::new("durable-contract");
        let store = MetaStore::embedded("unit", Some(&dir.0)).unwrap();
        contract::run_all(store.clone(), store).await.unwrap_or_else(|e| panic!("{e}"));
    }

    #[tokio::test]
    async fn durable_store_survives_a_restart_but_leases_do_not() {
        let dir = ScratchDir::new("restart");
        {
            let store = MetaStore::embedded("unit", Some(&dir.0)).unwrap();
            assert!(store.txn(&[], &[put("a", "1"), put("b", "2"), put("c", "3")]).await.unwrap());
            assert!(store.txn(&[], &[put("a", "10"), Op::Delete { key: "c".into() }]).await.unwrap());
            let lease = store.grant(Duration::from_secs(60)).await.unwrap();
            // A leased put over a durable key: after the restart the lease is gone, so the key is too.
            let leased = Op::Put { key: "b".into(), value: "leased".into(), lease: Some(lease) };
            assert!(store.txn(&[], &[leased]).await.unwrap());
            let only = Op::Put { key: "only-leased".into(), value: "x".into(), lease: Some(lease) };
            assert!(store.txn(&[], &[only]).await.unwrap());
            assert_eq!(store.bump_counter("n", &[]).await.unwrap(), Some(1));
            store.campaign("me", lease).await.unwrap();
        }
        let store = MetaStore::embedded("unit", Some(&dir.0)).unwrap();
        assert_eq!(store.get("a").await.unwrap(), Some(b"10".to_vec()));
        assert_eq!(store.get("b").await.unwrap(), None);
        assert_eq!(store.get("c").await.unwrap(), None);
        assert_eq!(store.get("only-leased").await.unwrap(), None);
        assert_eq!(store.leader().await.unwrap(), None, "no candidacy outlives the process");
        assert_eq!(store.bump_counter("n", &[]).await.unwrap(), Some(2));
        let keys: Vec<String> = store.list("").await.unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "n"]);
        // Another cluster in the same directory sees none of it.
        drop(store);
        let other = MetaStore::embedded("other", Some(&dir.0)).unwrap();
        assert_eq!(other.list("").await.unwrap(), vec![]);
    }

    #[tokio::test]
    async fn a_data_directory_in_use_is_refused_with_what_to_do() {
        let dir = ScratchDir::new("locked");
        let store = MetaStore::embedded("unit", Some(&dir.0)).unwrap();
        assert!(store.txn(&[], &[put("a", "1")]).await.unwrap());
        let Err(e) = MetaStore::embedded("unit", Some(&dir.0)) else {
            panic!("a second store opened a directory in use")
        };
        let text = e.to_string();
        assert!(text.contains("in use by another foreman process") && text.contains("--data-dir"), "{text}");
        // Nothing was lost, and the directory opens again once the first store is closed.
        drop(store);
        let again = MetaStore::embedded("unit", Some(&dir.0)).unwrap();
        assert_eq!(again.get("a").await.unwrap(), Some(b"1".to_vec()));
    }
}
