//! Restart backoff for jobs whose job master was lost (design.md §6).
//!
//! Each failure draws the next delay from the current base with seeded jitter, then grows the base by the
//! multiplier up to the cap. A job that stayed healthy for `reset_after` starts over; a job that failed
//! `max_tries` times in a row gives up. The state is plain data ([`BackoffState`]) so the leader persists it with
//! the job and a new leader restores it: failover never resets or bypasses a backoff.
//!
//! Invariants (checked by [`BackoffState::check`]): the base stays within `[initial, max]`; a pending delay
//! never exceeds `max`; the failure count never exceeds `max_tries`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::rng::Rng;
use super::time::{millis_of, Time};

/// The backoff settings (design.md §6 defaults: 1 s × 1.5 up to 60 s, ±20 % jitter, reset after 5 min healthy,
/// give up after 100 tries).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub multiplier: f64,
    pub max: Duration,
    /// Each delay is drawn uniformly from `base × [1 − jitter, 1 + jitter]`, then capped at `max`.
    pub jitter: f64,
    pub reset_after: Duration,
    pub max_tries: u32,
}

impl Default for BackoffPolicy {
    fn default() -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_secs(1),
            multiplier: 1.5,
            max: Duration::from_secs(60),
            jitter: 0.2,
            reset_after: Duration::from_secs(300),
            max_tries: 100,
        }
    }
}

impl BackoffPolicy {
    /// The range the delay drawn at the `failures`-th failure in a row lies in, capped at `max`: the base
    /// (`initial`, times `multiplier` for each failure before it, each step rounded to the millisecond and capped)
    /// within ±`jitter`, rounded outwards to whole milliseconds. `None` when no delay is drawn: before the first
    /// failure, and from the `max_tries`-th on (the job gives up). What checkers hold a drawn delay to.
    pub fn delay_bounds(&self, failures: u32) -> Option<(Duration, Duration)> {
        if failures == 0 || failures >= self.max_tries {
            return None;
        }
        let max_ms = millis_of(self.max);
        let mut base = millis_of(self.initial).min(max_ms);
        for _ in 1..failures {
            base = grow(base, self.multiplier, max_ms);
        }
        let jitter = clamped_jitter(self.jitter);
        let lo = (base as f64 * (1.0 - jitter)).floor().max(0.0) as u64;
        let hi = (base as f64 * (1.0 + jitter)).ceil() as u64;
        Some((Duration::from_millis(lo.min(max_ms)), Duration::from_millis(hi.min(max_ms))))
    }
}

/// What a failure leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackoffDecision {
    /// Start again, but not before this time.
    RetryAt(Time),
    /// The job failed `max_tries` times in a row: stop trying.
    GiveUp { failures: u32 },
}

/// One job's backoff, as persisted with the job. Times in it are local to the leader that holds it; the durable
/// form ([`BackoffRecord`]) carries only durations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackoffState {
    /// Consecutive failures since the last reset.
    failures: u32,
    /// The base the next delay is drawn from, in milliseconds; 0 before the first failure.
    base_ms: u64,
    /// The job may not start before this time.
    not_before: Option<Time>,
    /// Healthy (online) since this time, if it is.
    healthy_since: Option<Time>,
    /// The delay in force, in milliseconds: drawn at the last failure, or the pending delay a new leader restored
    /// (which it waits again in whole); 0 when none. Memory only, for observers.
    #[serde(default)]
    delay_ms: u64,
}

/// The durable form of a [`BackoffState`]: what a new leader needs to honour it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackoffRecord {
    pub failures: u32,
    pub base_ms: u64,
    /// The delay in force when the record was written. A new leader waits all of it again from the moment it
    /// restores the job: it cannot know how much of it already passed, and waiting longer is always safe.
    pub delay_ms: u64,
}

impl BackoffState {
    /// A job that never failed.
    pub fn new() -> BackoffState {
        BackoffState::default()
    }

    /// Consecutive failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The earliest time the job may start again.
    pub fn not_before(&self) -> Option<Time> {
        self.not_before
    }

    /// The delay in force: the one drawn at the last failure, or the pending delay a new leader restored and waits
    /// again; zero when none (never failed, reset, or gave up).
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms)
    }

    /// Whether the job may start at `now`.
    pub fn allows(&self, now: Time) -> bool {
        self.not_before.is_none_or(|t| now >= t)
    }

    /// The job's job master came online at `now`.
    pub fn on_healthy(&mut self, now: Time) {
        if self.healthy_since.is_none() {
            self.healthy_since = Some(now);
        }
    }

    /// Forgets the past if the job has been healthy for `reset_after` by `now`.
    /// Returns whether that changed the durable part (which the caller must then persist).
    pub fn maybe_reset(&mut self, now: Time, policy: &BackoffPolicy) -> bool {
        if let Some(since) = self.healthy_since {
            if now.saturating_since(since) >= policy.reset_after {
                let before = (self.failures, self.base_ms, self.not_before);
                *self = BackoffState { healthy_since: Some(since), ..BackoffState::default() };
                return before != (0, 0, None);
            }
        }
        false
    }

    /// The job's job master was lost at `now`: decide when it may start again.
    pub fn on_failure(&mut self, now: Time, policy: &BackoffPolicy, rng: &mut impl Rng) -> BackoffDecision {
        self.maybe_reset(now, policy);
        self.healthy_since = None;
        if self.failures >= policy.max_tries {
            (self.not_before, self.delay_ms) = (None, 0);
            return BackoffDecision::GiveUp { failures: self.failures };
        }
        self.failures += 1;
        if self.failures >= policy.max_tries {
            (self.not_before, self.delay_ms) = (None, 0);
            return BackoffDecision::GiveUp { failures: self.failures };
        }
        let max_ms = millis_of(policy.max);
        let base = if self.base_ms == 0 { millis_of(policy.initial) } else { self.base_ms }.min(max_ms);
        let delay = jittered(base, policy.jitter, rng).min(max_ms);
        self.base_ms = grow(base, policy.multiplier, max_ms);
        let at = now.saturating_add(Duration::from_millis(delay));
        self.not_before = Some(at);
        self.delay_ms = delay;
        BackoffDecision::RetryAt(at)
    }

    /// The durable form, written with the job at `now`.
    pub fn record(&self, now: Time) -> BackoffRecord {
        let delay_ms = self.not_before.map_or(0, |t| t.saturating_since(now).as_millis() as u64);
        BackoffRecord { failures: self.failures, base_ms: self.base_ms, delay_ms }
    }

    /// Whether `record` holds the same charge as this state: the same failures in a row and the same base (each
    /// charge moves both, a reset clears both).
    pub fn same_charge(&self, record: &BackoffRecord) -> bool {
        (self.failures, self.base_ms) == (record.failures, record.base_ms)
    }

    /// Restores a persisted backoff at `now` on a new leader: the pending delay starts over from `now`.
    pub fn restore(record: &BackoffRecord, now: Time) -> BackoffState {
        let not_before = (record.delay_ms > 0).then(|| now.saturating_add(Duration::from_millis(record.delay_ms)));
        BackoffState {
            failures: record.failures,
            base_ms: record.base_ms,
            not_before,
            healthy_since: None,
            delay_ms: record.delay_ms,
        }
    }

    /// Checks the invariants against the policy in force; the message names the one broken.
    pub fn check(&self, policy: &BackoffPolicy) -> Result<(), String> {
        let max_ms = millis_of(policy.max);
        if self.failures > policy.max_tries {
            return Err(format!("backoff: {} failures exceed max_tries {}", self.failures, policy.max_tries));
        }
        if self.base_ms > max_ms {
            return Err(format!("backoff: base {} ms exceeds max {} ms", self.base_ms, max_ms));
        }
        if self.failures == 0 && self.base_ms != 0 {
            return Err(format!("backoff: base {} ms with no failure", self.base_ms));
        }
        Ok(())
    }

    /// The delay in force at `now`, for checks: zero if the job may start.
    pub fn remaining(&self, now: Time) -> Duration {
        self.not_before.map_or(Duration::ZERO, |t| t.saturating_since(now))
    }
}

/// `base × U[1 − j, 1 + j]`, in milliseconds, never below zero.
fn jittered(base_ms: u64, jitter: f64, rng: &mut impl Rng) -> u64 {
    let jitter = clamped_jitter(jitter);
    let factor = 1.0 - jitter + 2.0 * jitter * rng.unit();
    (base_ms as f64 * factor).round().max(0.0) as u64
}

/// The jitter a policy draws with: within [0, 1], and none if it is not a number.
fn clamped_jitter(jitter: f64) -> f64 {
    if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// `base × multiplier`, capped.
fn grow(base_ms: u64, multiplier: f64, max_ms: u64) -> u64 {
    let m = if multiplier.is_finite() && multiplier >= 1.0 { multiplier } else { 1.0 };
    let next = (base_ms as f64 * m).round();
    if next >= max_ms as f64 {
        max_ms
    } else {
        next as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rng::SplitMix64;

    fn ms(n: u64) -> Time {
        Time::from_millis(n)
    }

    fn no_jitter() -> BackoffPolicy {
        BackoffPolicy { jitter: 0.0, max_tries: 5, ..BackoffPolicy::default() }
    }

    #[test]
    fn delays_grow_by_the_multiplier_up_to_the_cap() {
        let p = BackoffPolicy { max: Duration::from_millis(3000), max_tries: 100, ..no_jitter() };
        let mut b = BackoffState::new();
        let mut rng = SplitMix64::new(1);
        let mut delays = vec![];
        for _ in 0..6 {
            match b.on_failure(ms(0), &p, &mut rng) {
                BackoffDecision::RetryAt(t) => delays.push(t.as_millis()),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(delays, vec![1000, 1500, 2250, 3000, 3000, 3000]);
        b.check(&p).unwrap();
    }

    #[test]
    fn jitter_stays_within_bounds_and_is_seeded() {
        let p = BackoffPolicy { jitter: 0.5, ..BackoffPolicy::default() };
        let draw = |seed| {
            let mut b = BackoffState::new();
            match b.on_failure(ms(0), &p, &mut SplitMix64::new(seed)) {
                BackoffDecision::RetryAt(t) => t.as_millis(),
                other => panic!("{other:?}"),
            }
        };
        for seed in 0..200 {
            let d = draw(seed);
            assert!((500..=1500).contains(&d), "seed {seed}: {d}");
            assert_eq!(d, draw(seed));
        }
        assert!((0..20).map(draw).collect::<std::collections::BTreeSet<_>>().len() > 1);
    }

    #[test]
    fn every_drawn_delay_lies_within_the_policy_bounds_and_is_the_delay_in_force() {
        for (jitter, multiplier) in [(0.0, 1.5), (0.2, 1.5), (0.5, 2.0), (1.0, 1.0)] {
            let p = BackoffPolicy {
                jitter,
                multiplier,
                max: Duration::from_millis(7_000),
                max_tries: 9,
                ..BackoffPolicy::default()
            };
            for seed in 0..50 {
                let (mut b, mut rng) = (BackoffState::new(), SplitMix64::new(seed));
                for failures in 1..9 {
                    let BackoffDecision::RetryAt(t) = b.on_failure(ms(0), &p, &mut rng) else {
                        panic!("gave up early")
                    };
                    let (lo, hi) = p.delay_bounds(failures).expect("a delay is drawn");
                    let d = t.saturating_since(ms(0));
                    assert!(lo <= d && d <= hi, "failure {failures}: {d:?} outside [{lo:?}, {hi:?}]");
                    assert_eq!(b.delay(), d);
                }
                assert_eq!(b.on_failure(ms(0), &p, &mut rng), BackoffDecision::GiveUp { failures: 9 });
                assert_eq!(b.delay(), Duration::ZERO);
            }
        }
        let p = BackoffPolicy::default();
        assert_eq!(p.delay_bounds(0), None);
        assert_eq!(p.delay_bounds(1), Some((Duration::from_millis(800), Duration::from_millis(1_200))));
        assert_eq!(p.delay_bounds(3), Some((Duration::from_millis(1_800), Duration::from_millis(2_700))));
        assert_eq!(p.delay_bounds(20), Some((Duration::from_millis(48_000), Duration::from_millis(60_000))));
        assert_eq!(p.delay_bounds(100), None);
    }

    #[test]
    fn gives_up_after_max_tries() {
        let p = no_jitter();
        let mut b = BackoffState::new();
        let mut rng = SplitMix64::new(1);
        for _ in 0..4 {
            assert!(matches!(b.on_failure(ms(0), &p, &mut rng), BackoffDecision::RetryAt(_)));
        }
        assert_eq!(b.on_failure(ms(0), &p, &mut rng), BackoffDecision::GiveUp { failures: 5 });
        assert_eq!(b.on_failure(ms(0), &p, &mut rng), BackoffDecision::GiveUp { failures: 5 });
        b.check(&p).unwrap();
    }

    #[test]
    fn a_healthy_period_resets_but_a_short_one_does_not() {
        let p = BackoffPolicy { reset_after: Duration::from_secs(10), ..no_jitter() };
        let mut rng = SplitMix64::new(1);
        // (healthy for ms, expected delay of the next failure)
        for (healthy, want) in [(9_999u64, 1500u64), (10_000, 1000)] {
            let mut b = BackoffState::new();
            b.on_failure(ms(0), &p, &mut rng);
            b.on_healthy(ms(1000));
            assert_eq!(
                b.on_failure(ms(1000 + healthy), &p, &mut rng),
                BackoffDecision::RetryAt(ms(1000 + healthy + want))
            );
        }
    }

    #[test]
    fn allows_only_after_the_delay() {
        let mut b = BackoffState::new();
        assert!(b.allows(ms(0)));
        b.on_failure(ms(100), &no_jitter(), &mut SplitMix64::new(1));
        assert!(!b.allows(ms(1099)));
        assert!(b.allows(ms(1100)));
    }

    #[test]
    fn restore_waits_the_whole_pending_delay_again() {
        let p = no_jitter();
        let mut b = BackoffState::new();
        let mut rng = SplitMix64::new(1);
        b.on_failure(ms(0), &p, &mut rng);
        b.on_failure(ms(0), &p, &mut rng);
        let rec = b.record(ms(0));
        assert_eq!(rec, BackoffRecord { failures: 2, base_ms: 2250, delay_ms: 1500 });
        let r = BackoffState::restore(&rec, ms(50_000));
        assert_eq!(r.failures(), 2);
        assert_eq!(r.delay(), Duration::from_millis(1500), "the pending delay is the one in force again");
        assert!(!r.allows(ms(51_499)));
        assert!(r.allows(ms(51_500)));
        // The next failure continues from the persisted base: nothing was reset by the failover.
        let mut r = r;
        assert_eq!(r.on_failure(ms(60_000), &p, &mut rng), BackoffDecision::RetryAt(ms(62_250)));
    }
}
