//! The embedded backend: the same contract as etcd, in-process (for `foreman standalone` and tests).
//!
//! State lives behind one `std::sync::Mutex`, never held across an `.await`; clones of the handle share it.
//! Leases are measured with `tokio::time` (simulated in the simulation build). Expiry is lazy: every call first
//! expires the leases whose deadline passed, and a waiting campaign sleeps until the next deadline of a candidate
//! ahead of it, so no background task is needed and a store can be built outside a runtime.
//!
//! The election mirrors etcd's: a candidate is the key `<election>/<lease id, hex>` holding its value, attached to
//! its lease; the candidate whose key was created first leads. A campaign waits (on a `Notify` poked by every
//! change, or the next lease deadline) until its key leads; if its caller drops it before then, its key is deleted,
//! as a real etcd does for a cancelled campaign.
//!
//! Durability invariant (with a data directory): the non-leased keys in memory are exactly the durable ones, kept in
//! the data directory's database ([`super::durable`]). Memory stays the serving copy; a write that changes a
//! non-leased key is committed durably before it is applied in memory and acknowledged, and a leased put over a
//! durable key is committed as its deletion: the lease cannot outlive the process, and neither can the key. A write
//! whose commit failed is not applied in memory. Without a data directory nothing touches the disk (the simulation
//! builds its stores so).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::durable::{Change, CommitError, Durable, Kv};
use super::{Compare, LeaderHandle, LeaderKey, LeaseId, MetaError, Write};

/// Where time comes from: `tokio::time`, so that the simulation controls it.
// In the simulation build `tokio::time::Instant` is std's, whose `now` madsim virtualises; clippy sees the std path
// it bans elsewhere.
#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

#[derive(Clone, Debug)]
struct Entry {
    value: Vec<u8>,
    lease: Option<i64>,
    /// The store revision that created the key: orders election candidates.
    created: u64,
}

#[derive(Debug)]
struct Lease {
    ttl: Duration,
    deadline: Instant,
    keys: BTreeSet<String>,
}

struct State {
    kv: BTreeMap<String, Entry>,
    leases: BTreeMap<i64, Lease>,
    /// Bumped by every write.
    revision: u64,
    next_lease: i64,
    durable: Option<Durable>,
    /// Set when the database can no longer be trusted to match memory: every later write is refused.
    broken: Option<String>,
}

/// How a waiting candidate stands.
enum Standing {
    Leads,
    /// Its key is gone (its lease ended, or someone resigned it).
    Gone,
    /// Someone is ahead; the earliest moment one of them can lose its lease.
    Behind(Option<Instant>),
}

impl State {
    /// Ends every lease whose deadline passed, deleting its keys. Returns whether anything changed.
    fn expire(&mut self, now: Instant) -> bool {
        let expired: Vec<i64> = self.leases.iter().filter(|(_, l)| l.deadline <= now).map(|(id, _)| *id).collect();
        for id in &expired {
            self.end_lease(*id);
        }
        !expired.is_empty()
    }

    /// Removes a lease and its keys. Leased keys are never durable, so nothing is committed.
    fn end_lease(&mut self, id: i64) -> bool {
        let Some(lease) = self.leases.remove(&id) else { return false };
        for key in lease.keys {
            if self.kv.get(&key).is_some_and(|e| e.lease == Some(id)) {
                self.kv.remove(&key);
            }
        }
        self.revision += 1;
        true
    }

    fn detach(&mut self, key: &str) {
        if let Some(id) = self.kv.get(key).and_then(|e| e.lease) {
            if let Some(lease) = self.leases.get_mut(&id) {
                lease.keys.remove(key);
            }
        }
    }

    fn put(&mut self, key: &str, value: Vec<u8>, lease: Option<i64>) {
        self.detach(key);
        let created = self.kv.get(key).map_or(self.revision, |e| e.created);
        if let Some(id) = lease {
            if let Some(l) = self.leases.get_mut(&id) {
                l.keys.insert(key.to_owned());
            }
        }
        self.kv.insert(key.to_owned(), Entry { value, lease, created });
    }

    fn delete(&mut self, key: &str) {
        self.detach(key);
        self.kv.remove(key);
    }

    /// The durable effect of `writes` (see the module's durability invariant), in order.
    fn changes(&self, writes: &[Write]) -> Vec<Change> {
        let durable = |key: &str| self.kv.get(key).is_some_and(|e| e.lease.is_none());
        writes
            .iter()
            .filter_map(|w| match w {
                Write::Put { key, value, lease: None } => Some(Change::Put { key: key.clone(), value: value.clone() }),
                Write::Put { key, .. } | Write::Delete { key } if durable(key) => {
                    Some(Change::Del { key: key.clone() })
                }
                _ => None,
            })
            .collect()
    }

    /// Makes `changes` durable before they are applied.
    fn persist(&mut self, changes: &[Change]) -> Result<(), MetaError> {
        if changes.is_empty() {
            return Ok(());
        }
        if let Some(why) = &self.broken {
            return Err(MetaError::Unavailable(format!("the embedded store refuses writes: {why}")));
        }
        let Some(durable) = &mut self.durable else { return Ok(()) };
        match durable.commit(changes) {
            Ok(()) => Ok(()),
            Err(CommitError::NotWritten(why)) => Err(MetaError::Unavailable(why)),
            Err(CommitError::Unknown(why)) => {
                tracing::error!("the embedded store's database failed a commit, refusing further writes: {why}");
                self.broken = Some(why.clone());
                Err(MetaError::Unknown(why))
            }
        }
    }

    fn txn(&mut self, compares: &[Compare], writes: &[Write]) -> Result<bool, MetaError> {
        let holds = compares.iter().all(|c| self.kv.get(&c.key).is_some_and(|e| e.value == c.value));
        if !holds {
            return Ok(false);
        }
        for w in writes {
            if let Write::Put { lease: Some(lease), .. } = w {
                if !self.leases.contains_key(&lease.0) {
                    return Err(MetaError::LeaseGone);
                }
            }
        }
        let changes = self.changes(writes);
        self.persist(&changes)?;
        self.revision += 1;
        for w in writes {
            match w {
                Write::Put { key, value, lease } => self.put(key, value.clone(), lease.map(|l| l.0)),
                Write::Delete { key } => self.delete(key),
            }
        }
        Ok(true)
    }

    /// The leading candidate of the election `name`: the key created first.
    fn leader(&self, name: &str) -> Option<(&String, &Entry)> {
        let prefix = format!("{name}/");
        self.kv.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)).min_by_key(|(_, e)| e.created)
    }

    fn standing(&self, name: &str, key: &str, created: u64) -> Standing {
        if self.kv.get(key).is_none_or(|e| e.created != created) {
            return Standing::Gone;
        }
        let prefix = format!("{name}/");
        let ahead = self
            .kv
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, e)| e.created < created);
        let mut any = false;
        let mut next_deadline: Option<Instant> = None;
        for (_, e) in ahead {
            any = true;
            if let Some(l) = e.lease.and_then(|id| self.leases.get(&id)) {
                next_deadline = Some(next_deadline.map_or(l.deadline, |d| d.min(l.deadline)));
            }
        }
        if any {
            Standing::Behind(next_deadline)
        } else {
            Standing::Leads
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// Poked after every change, for waiting campaigns.
    changed: Notify,
}

#[derive(Clone)]
pub(super) struct EmbeddedStore {
    shared: Arc<Shared>,
}

impl EmbeddedStore {
    /// A store in memory, durable in `data_dir` when one is given.
    pub(super) fn open(data_dir: Option<&Path>) -> Result<EmbeddedStore, MetaError> {
        let durable = data_dir.map(Durable::open).transpose()?;
        Ok(EmbeddedStore::serving(durable))
    }

    /// A store serving the keys of an open durable copy (none without one), committing its writes to it.
    pub(super) fn serving(durable: Option<(Durable, Kv)>) -> EmbeddedStore {
        let (durable, kv) = match durable {
            Some((durable, kv)) => (Some(durable), kv),
            None => (None, BTreeMap::new()),
        };
        let kv = kv.into_iter().map(|(k, value)| (k, Entry { value, lease: None, created: 0 })).collect();
        let state = State { kv, leases: BTreeMap::new(), revision: 1, next_lease: 1, durable, broken: None };
        EmbeddedStore { shared: Arc::new(Shared { state: Mutex::new(state), changed: Notify::new() }) }
    }

    /// Locks the state after expiring what is due, and pokes the waiting campaigns when that changed anything.
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves no half-applied write (writes apply after their checks), so the
        // state behind a poisoned lock is still consistent.
        let mut state = self.shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.expire(now()) {
            self.shared.changed.notify_waiters();
        }
        state
    }

    pub(super) fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.lock().kv.get(key).map(|e| e.value.clone())
    }

    pub(super) fn list(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let state = self.lock();
        state
            .kv
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, e)| (k.clone(), e.value.clone()))
            .collect()
    }

    pub(super) fn txn(&self, compares: &[Compare], writes: &[Write]) -> Result<bool, MetaError> {
        let applied = self.lock().txn(compares, writes)?;
        if applied && !writes.is_empty() {
            self.shared.changed.notify_waiters();
        }
        Ok(applied)
    }

    pub(super) fn grant(&self, ttl_secs: i64) -> LeaseId {
        let ttl = Duration::from_secs(u64::try_from(ttl_secs).unwrap_or(1));
        let mut state = self.lock();
        let id = state.next_lease;
        state.next_lease += 1;
        state.leases.insert(id, Lease { ttl, deadline: now() + ttl, keys: BTreeSet::new() });
        LeaseId(id)
    }

    pub(super) fn keep_alive(&self, id: LeaseId) -> Result<(), MetaError> {
        let mut state = self.lock();
        let lease = state.leases.get_mut(&id.0).ok_or(MetaError::LeaseGone)?;
        lease.deadline = now() + lease.ttl;
        Ok(())
    }

    pub(super) fn revoke(&self, id: LeaseId) {
        if self.lock().end_lease(id.0) {
            self.shared.changed.notify_waiters();
        }
    }

    pub(super) async fn campaign(&self, name: &str, value: &str, lease: LeaseId) -> Result<LeaderKey, MetaError> {
        let key = format!("{name}/{:016x}", lease.0);
        let created = {
            let mut state = self.lock();
            if !state.leases.contains_key(&lease.0) {
                return Err(MetaError::LeaseGone);
            }
            // A candidate key is leased, hence never durable: nothing to commit.
            state.revision += 1;
            state.put(&key, value.as_bytes().to_vec(), Some(lease.0));
            state.kv.get(&key).map_or(0, |e| e.created)
        };
        self.shared.changed.notify_waiters();
        let mut candidacy = Candidacy { store: self, key: &key, created, won: false };
        loop {
            // Registered before the state is read, so a change made in between still wakes this campaign.
            let changed = self.shared.changed.notified();
            let standing = self.lock().standing(name, &key, created);
            let wake_at = match standing {
                Standing::Leads => {
                    candidacy.won = true;
                    let handle = LeaderHandle::Embedded { created };
                    return Ok(LeaderKey { key: key.clone(), value: value.to_owned(), lease, handle });
                }
                Standing::Gone => return Err(MetaError::LeaseGone),
                Standing::Behind(deadline) => deadline,
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        biased;
                        _ = changed => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    pub(super) fn leader(&self, name: &str) -> Option<(String, Vec<u8>)> {
        self.lock().leader(name).map(|(k, e)| (k.clone(), e.value.clone()))
    }

    pub(super) fn resign(&self, key: &str, created: u64) {
        let mut state = self.lock();
        if state.kv.get(key).is_some_and(|e| e.created == created) {
            state.revision += 1;
            state.delete(key);
            drop(state);
            self.shared.changed.notify_waiters();
        }
    }
}

/// A campaign in progress: if it is dropped before it wins, its candidate key goes, as etcd deletes the key of a
/// cancelled campaign.
struct Candidacy<'a> {
    store: &'a EmbeddedStore,
    key: &'a str,
    created: u64,
    won: bool,
}

impl Drop for Candidacy<'_> {
    fn drop(&mut self) {
        if !self.won {
            self.store.resign(self.key, self.created);
        }
    }
}
