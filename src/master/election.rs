//! Campaigning, keeping the lease alive, and stepping down (design.md §5 rule 1).
//!
//! One round: grant a lease, publish this master's membership under it, campaign with it while keeping it
//! alive; once elected, take the next leader epoch in a transaction guarded by the new leader key (a deposed
//! leader cannot take one), then lead until the lease cannot be confirmed within the step-down deadline, the
//! lease is gone, a write is fenced, someone shows a newer epoch, or a resign is asked for. Losing leadership
//! never ends the process: the round ends, the lease is revoked (best effort), and the next round campaigns again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::Master;
use crate::core::ids::LeaderEpoch;
use crate::core::leadership::StepDown;
use crate::core::time::Time;
use crate::meta::{keys, Cond, LeaseId, MetaError, Op};

/// What a master publishes as its campaign value and membership record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderValue {
    pub name: String,
    pub address: String,
    /// The lease of the campaign: unique per round, so two rounds of one master never share a value.
    pub lease: i64,
    /// In the `leader-term` record only: the leader epoch of the term this round won (0 elsewhere).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl LeaderValue {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn decode(text: &str) -> Option<LeaderValue> {
        serde_json::from_str(text).ok()
    }
}

pub(super) async fn run(m: Arc<Master>) {
    loop {
        match round(&m).await {
            Ok(why) => info!(master = %m.name(), "leadership round ended: {why}"),
            Err(e) => warn!(master = %m.name(), "election round failed: {e}"),
        }
        if std::mem::take(&mut m.lock().sit_out) {
            // Asked to stay out: let the others campaign first.
            m.clock.sleep(m.cfg.election.lease_ttl).await;
        }
        m.clock.sleep(m.cfg.election.campaign_retry).await;
    }
}

async fn timed<T>(m: &Master, f: impl std::future::Future<Output = Result<T, MetaError>>) -> Result<T, MetaError> {
    match tokio::time::timeout(m.cfg.rpc.metastore_timeout, f).await {
        Ok(r) => r,
        Err(_) => Err(MetaError::Unknown("the metastore did not answer in time".into())),
    }
}

async fn round(m: &Arc<Master>) -> Result<String, MetaError> {
    let ttl = m.cfg.election.lease_ttl;
    let granted_at = m.clock.now();
    let lease = timed(m, m.store.grant(ttl)).await?;
    m.lock().lease = Some(lease);
    let last_ok = AtomicU64::new(granted_at.as_millis());
    let value = LeaderValue { name: m.name().to_owned(), address: m.address().to_owned(), lease: lease.0, epoch: 0 };
    let member = Op::Put { key: keys::masters(m.name()), value: value.encode().into_bytes(), lease: Some(lease) };
    if let Err(e) = timed(m, m.store.txn(&[], &[member])).await {
        warn!(master = %m.name(), "could not publish membership: {e}");
    }
    let outcome = campaign_and_lead(m, lease, &value, &last_ok).await;
    // Whatever ended the round, this master no longer leads; give the lease back so others need not wait.
    m.step_down_now("the round ended");
    m.lock().lease = None;
    let _ = timed(m, m.store.revoke(lease)).await;
    outcome
}

async fn campaign_and_lead(
    m: &Arc<Master>,
    lease: LeaseId,
    value: &LeaderValue,
    last_ok: &AtomicU64,
) -> Result<String, MetaError> {
    let encoded = value.encode();
    // One keep-alive loop for the whole round: its cadence must not restart when the round moves from campaigning
    // to taking an epoch to leading, or the first keep-alive of a term could come a whole interval after one sent
    // just before the win, past the step-down deadline (a new leader stepping down at once, round after round).
    let keep = keep_alive(m, lease, last_ok);
    tokio::pin!(keep);
    let key = tokio::select! {
        biased;
        _ = m.resign_wake.notified() => return Ok("asked to sit out the election".into()),
        why = &mut keep => return Ok(why),
        r = m.store.campaign(&encoded, lease) => r?,
    };
    // Elected. The epoch write is guarded by the new leader key: a master deposed meanwhile cannot take one.
    let guard = [Cond::IsLeader(key.clone())];
    let epoch_key = keys::leader_epoch();
    let epoch = tokio::select! {
        biased;
        why = &mut keep => return Ok(why),
        r = timed(m, m.store.bump_counter(&epoch_key, &guard)) => r,
    };
    let epoch = match epoch {
        Ok(Some(e)) => LeaderEpoch(e),
        Ok(None) => {
            let _ = timed(m, m.store.resign(&key)).await;
            return Ok("deposed before taking an epoch".into());
        }
        Err(e) => {
            let _ = timed(m, m.store.resign(&key)).await;
            return Err(e);
        }
    };
    let since = Time::from_millis(last_ok.load(Ordering::Relaxed));
    let began = m.lock().leadership.become_leader(epoch, since);
    if let Err(e) = began {
        let _ = timed(m, m.store.resign(&key)).await;
        return Ok(format!("refused the term: {e}"));
    }
    Master::bump(&m.stats.terms);
    info!(master = %m.name(), epoch = epoch.0, "became leader");
    // Publish the term, so that any master can tell who leads under which epoch from one record (best effort:
    // the counter remains the truth).
    let term = LeaderValue { epoch: epoch.0, ..value.clone() };
    let put = Op::Put { key: keys::leader_term(), value: term.encode().into_bytes(), lease: Some(lease) };
    if let Err(e) = timed(m, m.store.txn(&[], &[put])).await {
        warn!(master = %m.name(), "could not publish the term's epoch: {e}");
    }
    let why = tokio::select! {
        biased;
        _ = m.resign_wake.notified() => "resigned".to_owned(),
        why = &mut keep => why,
        why = super::leader::lead(m.clone(), key.clone(), epoch) => why,
    };
    m.step_down_now(&why);
    let _ = timed(m, m.store.resign(&key)).await;
    Ok(why)
}

/// Keeps `lease` alive until it is gone; feeds every confirmed keep-alive (by its send time) to the leadership.
/// Sends one every interval from the previous send (a fixed rate: a slow answer does not push the next one back,
/// so a leader is re-confirmed an interval after its last confirmation plus one round trip). Returns why it stopped.
async fn keep_alive(m: &Master, lease: LeaseId, last_ok: &AtomicU64) -> String {
    let every = m.cfg.election.keepalive_interval;
    let ttl = m.cfg.election.lease_ttl;
    let mut next = m.clock.now() + every;
    loop {
        m.clock.sleep_until(next).await;
        crate::buggify::point(&m.fault_points, crate::buggify::Point::LeaseKeepAlive).await;
        let sent = m.clock.now();
        next = sent + every;
        let deadline = every.min(m.cfg.rpc.metastore_timeout);
        match tokio::time::timeout(deadline, m.store.keep_alive(lease)).await {
            Ok(Ok(())) => {
                last_ok.store(sent.as_millis(), Ordering::Relaxed);
                let term = {
                    let mut inner = m.lock();
                    inner.leadership.on_keepalive(sent);
                    inner.leadership.epoch().zip(inner.leadership.deadline())
                };
                if let Some((epoch, until)) = term {
                    m.observe(super::Observation::ActingUntil { epoch, until: m.clock.instant(until) });
                }
            }
            Ok(Err(MetaError::LeaseGone)) => return "the lease is gone".into(),
            Ok(Err(_)) | Err(_) => {
                let last = Time::from_millis(last_ok.load(Ordering::Relaxed));
                if sent.saturating_since(last) >= ttl {
                    return "the lease could not be renewed within its TTL".into();
                }
            }
        }
    }
}

impl Master {
    /// Ends this master's term now (if it has one): it stops acting before anything else happens.
    pub(crate) fn step_down_now(&self, why: &str) {
        let now = self.clock.now();
        let ended = {
            let mut inner = self.lock();
            inner.serving = None;
            let until = inner.leadership.deadline();
            inner.leadership.step_down(StepDown::Lost).map(|e| (e, until.map_or(now, |u| u.min(now))))
        };
        if let Some((epoch, end)) = ended {
            info!(master = %self.name(), epoch = epoch.0, "stepped down: {why}");
            self.observe(super::Observation::ActingEnded { epoch, at: self.clock.instant(end) });
        }
        self.wake.notify_waiters();
    }

    /// Asks this master to hand leadership over (if it leads) or to sit out the next election (if not).
    pub fn resign(&self) {
        {
            let mut inner = self.lock();
            inner.sit_out = inner.serving.is_none();
        }
        self.resign_wake.notify_one();
    }
}
