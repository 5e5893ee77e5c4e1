//! Restart backoff ([`BackoffState`]) against its closed-form rules (design.md §6).
//!
//! The model keeps the consecutive failure count, the base the next delay is drawn from, the healthy-since time
//! and the not-before time. Operations: time advances, failures, the job coming online, explicit reset checks,
//! and a leader change (`record` at one time, `restore` at a later one). After every step the property asserts
//! `BackoffState::check`, that every delay lies in `[base·(1−j), base·(1+j)]` capped at `max`, that the base
//! grows by the multiplier up to `max`, that `GiveUp` comes exactly when the failures reach `max_tries`, that a
//! healthy period of `reset_after` starts over, that a restore never allows a start before the delay that was
//! pending when the record was written has passed again from the restore time, and that a second state driven
//! by an RNG with the same seed makes exactly the same decisions.

use std::time::Duration;

use foreman::core::backoff::{BackoffDecision, BackoffPolicy, BackoffState};
use foreman::core::rng::SplitMix64;
use foreman::core::time::{millis_of, Time};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::gen::{advance, config, millis, rule};

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Failure,
    Healthy,
    MaybeReset,
    /// A leader change: the state is recorded now and restored by the new leader `gap` ms later.
    Failover {
        gap: u64,
    },
}

fn policy() -> impl Strategy<Value = BackoffPolicy> {
    let multiplier = prop_oneof![1 => Just(1.0), 4 => 1.0f64..3.0];
    let jitter = prop_oneof![1 => Just(0.0), 1 => Just(1.0), 4 => 0.0f64..1.0];
    (millis(1, 2_000), multiplier, millis(1, 10_000), jitter, millis(1, 20_000), 1u32..8).prop_map(
        |(initial, multiplier, max, jitter, reset_after, max_tries)| BackoffPolicy {
            initial: Duration::from_millis(initial),
            multiplier,
            max: Duration::from_millis(max),
            jitter,
            reset_after: Duration::from_millis(reset_after),
            max_tries,
        },
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => advance(3_000, 30_000).prop_map(Op::Advance),
        4 => Just(Op::Failure),
        2 => Just(Op::Healthy),
        1 => Just(Op::MaybeReset),
        1 => advance(2_000, 20_000).prop_map(|gap| Op::Failover { gap }),
    ]
}

/// The reference: what a backoff must be, stated directly.
#[derive(Debug, Default)]
struct Model {
    failures: u32,
    /// The base of the next delay in ms; 0 before the first failure (then `initial` applies).
    base: u64,
    not_before: Option<Time>,
    healthy_since: Option<Time>,
}

impl Model {
    fn reset_if_healthy_long_enough(&mut self, now: Time, p: &BackoffPolicy) {
        if self.healthy_since.is_some_and(|s| now - s >= p.reset_after) {
            *self = Model { healthy_since: self.healthy_since, ..Model::default() };
        }
    }
}

/// The delay bounds for a base: `[base·(1−j), base·(1+j)]` (whole milliseconds, rounded outwards), capped.
fn delay_bounds(base: u64, p: &BackoffPolicy) -> (u64, u64) {
    let max = millis_of(p.max);
    let lo = (base as f64 * (1.0 - p.jitter)).floor() as u64;
    let hi = (base as f64 * (1.0 + p.jitter)).ceil() as u64;
    (lo.min(max), hi.min(max))
}

/// The next base: the current one times the multiplier, rounded to the millisecond, capped at `max`.
fn grown(base: u64, p: &BackoffPolicy) -> u64 {
    let max = millis_of(p.max);
    let next = (base as f64 * p.multiplier).round();
    if next >= max as f64 {
        max
    } else {
        next as u64
    }
}

fn run(p: &BackoffPolicy, seed: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let max = millis_of(p.max);
    let mut now = Time::ZERO;
    let mut real = BackoffState::new();
    let mut twin = BackoffState::new();
    let (mut rng, mut twin_rng) = (SplitMix64::new(seed), SplitMix64::new(seed));
    let mut m = Model::default();
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Advance(d) => now = now + Duration::from_millis(d),
            Op::Failure => {
                let got = real.on_failure(now, p, &mut rng);
                let again = twin.on_failure(now, p, &mut twin_rng);
                prop_assert_eq!(got, again, "step {}: same seed, same decision", step);
                m.reset_if_healthy_long_enough(now, p);
                m.healthy_since = None;
                if m.failures < p.max_tries {
                    m.failures += 1;
                }
                if m.failures >= p.max_tries {
                    prop_assert_eq!(got, BackoffDecision::GiveUp { failures: p.max_tries }, "step {}", step);
                    m.not_before = None;
                } else {
                    let BackoffDecision::RetryAt(at) = got else {
                        return Err(TestCaseError::fail(format!(
                            "step {step}: gave up after {} of {} failures",
                            m.failures, p.max_tries
                        )));
                    };
                    let base = if m.base == 0 { millis_of(p.initial) } else { m.base }.min(max);
                    let (lo, hi) = delay_bounds(base, p);
                    let delay = (at - now).as_millis() as u64;
                    prop_assert!(
                        (lo..=hi).contains(&delay),
                        "step {}: delay {} ms outside [{}, {}] for base {}",
                        step,
                        delay,
                        lo,
                        hi,
                        base
                    );
                    m.base = grown(base, p);
                    m.not_before = Some(at);
                }
            }
            Op::Healthy => {
                real.on_healthy(now);
                twin.on_healthy(now);
                m.healthy_since.get_or_insert(now);
            }
            Op::MaybeReset => {
                real.maybe_reset(now, p);
                twin.maybe_reset(now, p);
                m.reset_if_healthy_long_enough(now, p);
            }
            Op::Failover { gap } => {
                let (record, twin_record) = (real.record(now), twin.record(now));
                let pending = m.not_before.map_or(Duration::ZERO, |t| t - now);
                prop_assert_eq!(record.delay_ms as u128, pending.as_millis(), "step {}", step);
                now = now + Duration::from_millis(gap);
                real = BackoffState::restore(&record, now);
                twin = BackoffState::restore(&twin_record, now);
                // The whole pending delay again, from the restore time; nothing else survives but the counts.
                m.not_before = (!pending.is_zero()).then(|| now + pending);
                m.healthy_since = None;
                if let Some(nb) = real.not_before() {
                    prop_assert!(
                        nb >= now + pending,
                        "step {}: restored start {} before {} + {:?}",
                        step,
                        nb,
                        now,
                        pending
                    );
                }
            }
        }
        rule(real.check(p))?;
        prop_assert_eq!(&real, &twin, "step {}: same seed, same state", step);
        prop_assert_eq!(real.failures(), m.failures, "step {}", step);
        prop_assert!(m.failures <= p.max_tries);
        prop_assert_eq!(real.not_before(), m.not_before, "step {}", step);
        prop_assert_eq!(real.allows(now), m.not_before.is_none_or(|t| now >= t), "step {}", step);
        prop_assert_eq!(real.remaining(now), m.not_before.map_or(Duration::ZERO, |t| t - now), "step {}", step);
        prop_assert_eq!(real.record(now).base_ms, m.base, "step {}: base", step);
        prop_assert!(m.base <= max);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Delays, growth, give-up, reset, failover and determinism of one job's backoff.
    #[test]
    fn backoff_follows_its_rules(p in policy(), seed in any::<u64>(), ops in prop::collection::vec(op(), 1..60)) {
        run(&p, seed, &ops)?;
    }
}
