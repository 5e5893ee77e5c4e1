//! Tombstones of deleted jobs, and when to collect them.
//!
//! When a job created with a token (`CreateJobRequest.request_id`) is deleted, its token stays behind as a
//! tombstone (`deleted-jobs/<id>`), so that a delayed repeat of that create is refused (`JOB_DELETED`) instead of
//! bringing the job back. A repeat can only arrive while some attempt of the create is still on its way, which
//! ends within a bounded window (README, "Design decisions"); a tombstone is kept for a retention well past that
//! window, then collected.
//!
//! A tombstone records when its job was deleted, by the deleting leader's wall clock ([`WallTime`]): the one
//! clock every later leader can compare with, so a new leader keeps each tombstone for what is left of its
//! retention instead of starting it again. Clocks of different masters may differ by seconds; the retention's
//! margin over the window absorbs that.
//!
//! Invariants of a [`sweep`]: a tombstone is collected only once its retention ended, unless more than the cap
//! remain (then the oldest beyond the cap go, counted); one without a deletion time is stamped, never collected
//! in the same sweep; a sweep does at most its batch of operations, oldest first.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ids::JobId;
use super::time::{millis_of, WallTime};

/// What a tombstone holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The deleted job's create token.
    pub request: String,
    /// When the job was deleted, by the deleting leader's wall clock.
    #[serde(rename = "deleted_at_ms")]
    pub deleted_at: WallTime,
}

impl Tombstone {
    /// The stored form (JSON).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A stored tombstone: its token, and its deletion time when it has one. A value that is not a tombstone's
    /// JSON is a bare token (as tombstones were first written), with no deletion time.
    pub fn decode(bytes: &[u8]) -> (String, Option<WallTime>) {
        match serde_json::from_slice::<Tombstone>(bytes) {
            Ok(t) => (t.request, Some(t.deleted_at)),
            Err(_) => (String::from_utf8_lossy(bytes).into_owned(), None),
        }
    }
}

/// How long tombstones are kept, and the bounds of their collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// How long after its deletion a job's tombstone is kept (`jobs.tombstone-retention`).
    pub keep_for: Duration,
    /// The most tombstones kept: beyond it, the oldest go before their retention ends.
    pub max: usize,
    /// The most tombstones one sweep collects or stamps.
    pub batch_max: usize,
}

/// What a sweep decided, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Tombstones to delete.
    pub collect: Vec<JobId>,
    /// Tombstones without a deletion time, to write again with `now`: their retention starts now.
    pub stamp: Vec<JobId>,
    /// How many of `collect` go before their retention ended, because more than [`Retention::max`] remain.
    pub early: usize,
    /// More work remains than the batch allowed: sweep again soon.
    pub more: bool,
}

/// Decides, at `now`, which of the `stored` tombstones (each with its deletion time, if it has one) to collect and
/// which to stamp.
pub fn sweep(now: WallTime, stored: &[(JobId, Option<WallTime>)], r: &Retention) -> Sweep {
    let mut dated: Vec<(WallTime, &JobId)> = stored.iter().filter_map(|(id, at)| at.map(|at| (at, id))).collect();
    dated.sort();
    let keep_for = millis_of(r.keep_for);
    let expired = dated.iter().take_while(|(at, _)| at.0.saturating_add(keep_for) <= now.0).count();
    // Beyond the cap, the oldest of those still within their retention go too (tombstones without a time count
    // as kept).
    let undated = stored.len() - dated.len();
    let kept = dated.len() - expired + undated;
    let early = kept.saturating_sub(r.max).min(dated.len() - expired);
    let due: Vec<JobId> = dated.iter().take(expired + early).map(|(_, id)| (*id).clone()).collect();
    let unstamped: Vec<JobId> = stored.iter().filter(|(_, at)| at.is_none()).map(|(id, _)| id.clone()).collect();
    let more = due.len() + unstamped.len() > r.batch_max;
    let collect: Vec<JobId> = due.into_iter().take(r.batch_max).collect();
    let stamp: Vec<JobId> = unstamped.into_iter().take(r.batch_max - collect.len()).collect();
    let early = collect.len().saturating_sub(expired);
    Sweep { collect, stamp, early, more }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> JobId {
        JobId::parse(s).unwrap()
    }

    fn ids(v: &[&str]) -> Vec<JobId> {
        v.iter().map(|s| id(s)).collect()
    }

    const MIN: u64 = 60_000;

    fn retention(max: usize, batch_max: usize) -> Retention {
        Retention { keep_for: Duration::from_millis(10 * MIN), max, batch_max }
    }

    #[test]
    fn sweep_table() {
        let at = |m: u64| Some(WallTime(m * MIN));
        // Deleted at minutes 1, 5 and 12; "x" has no deletion time. Now is minute 15 (retention 10 minutes).
        let stored = vec![(id("a"), at(5)), (id("b"), at(1)), (id("c"), at(12)), (id("x"), None)];
        let now = WallTime(15 * MIN);
        let want = |collect: &[&str], stamp: &[&str], early, more| Sweep {
            collect: ids(collect),
            stamp: ids(stamp),
            early,
            more,
        };
        // (retention, sweep)
        let table = [
            // The expired ones go, oldest first (exactly at the end of its retention counts as expired).
            (retention(100, 100), want(&["b", "a"], &["x"], 0, false)),
            // A small batch: the oldest first, and more to do.
            (retention(100, 1), want(&["b"], &[], 0, true)),
            (retention(100, 2), want(&["b", "a"], &[], 0, true)),
            // The cap: two kept (c and x) against a cap of one: the oldest dated one goes early.
            (retention(1, 100), want(&["b", "a", "c"], &["x"], 1, false)),
            // A cap below the undated ones collects every dated one, but never an undated one.
            (retention(0, 100), want(&["b", "a", "c"], &["x"], 1, false)),
        ];
        for (r, want) in table {
            assert_eq!(sweep(now, &stored, &r), want, "{r:?}");
        }
        // Nothing expired yet: nothing to collect.
        let young = vec![(id("a"), at(14)), (id("b"), at(6))];
        assert_eq!(sweep(now, &young, &retention(100, 100)), Sweep::default());
        // A deletion time ahead of this clock (another master's clock ran ahead) is kept until it expires here.
        let ahead = vec![(id("a"), at(20))];
        assert_eq!(sweep(now, &ahead, &retention(100, 100)), Sweep::default());
        assert_eq!(sweep(WallTime(30 * MIN), &ahead, &retention(100, 100)).collect, ids(&["a"]));
    }

    #[test]
    fn tombstones_round_trip_and_bare_tokens_have_no_time() {
        let t = Tombstone { request: "cli-1".into(), deleted_at: WallTime(1_700_000_000_000) };
        assert_eq!(Tombstone::decode(&t.encode()), ("cli-1".to_owned(), Some(WallTime(1_700_000_000_000))));
        assert_eq!(Tombstone::decode(b"cli-2"), ("cli-2".to_owned(), None));
    }
}
