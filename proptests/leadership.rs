//! Leadership of one master ([`Leadership`]) against design.md §5 rule 1.
//!
//! The model keeps the highest leader epoch seen and the current term, if any: its epoch and the send time of
//! its newest successful lease keep-alive (or of the grant). Operations: winning elections with an epoch above,
//! equal to or below the highest seen, keep-alives sent up to a few seconds ago, explicit step-downs for each
//! reason, observations of other epochs, ticks, and time advances.
//!
//! After every step the property asserts agreement with the model on `acting`, `epoch`, `deadline` and
//! `highest_seen`; that the master never acts at or after its newest keep-alive's send time plus `step_down`
//! (so, with `step_down` below the lease TTL, never after etcd could let someone else win); that keep-alives
//! never move the deadline back; that terms begin with strictly increasing epochs and never overlap
//! (`ActingLeaders`); and that observing a larger epoch than the term's always ends it.

use std::time::Duration;

use foreman::core::ids::LeaderEpoch;
use foreman::core::invariants::ActingLeaders;
use foreman::core::leadership::{Leadership, LeadershipError, StepDown};
use foreman::core::time::Time;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::gen::{advance, config, millis, rule};

const MASTER: &str = "master-1";

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    /// Won an election with the highest epoch seen plus `delta` (which may be 0 or -1), the grant sent `back`
    /// ms ago.
    Elected {
        delta: i64,
        back: u64,
    },
    Keepalive {
        back: u64,
    },
    StepDown {
        why: u8,
        delta: i64,
    },
    Observe {
        delta: i64,
    },
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    let delta = prop_oneof![1 => Just(-1i64), 1 => Just(0i64), 4 => 1i64..3];
    prop_oneof![
        4 => advance(1_500, 8_000).prop_map(Op::Advance),
        2 => (delta.clone(), millis(0, 2_000)).prop_map(|(delta, back)| Op::Elected { delta, back }),
        5 => millis(0, 3_000).prop_map(|back| Op::Keepalive { back }),
        1 => (0u8..3, delta.clone()).prop_map(|(why, delta)| Op::StepDown { why, delta }),
        2 => delta.prop_map(|delta| Op::Observe { delta }),
        3 => Just(Op::Tick),
    ]
}

#[derive(Debug)]
struct Model {
    step_down: Duration,
    highest: LeaderEpoch,
    /// The term: its epoch and its newest keep-alive's send time.
    term: Option<(LeaderEpoch, Time)>,
}

impl Model {
    fn acting_until(&self) -> Option<Time> {
        self.term.map(|(_, sent)| sent + self.step_down)
    }

    fn end_term(&mut self, checker: &mut ActingLeaders) -> Option<LeaderEpoch> {
        let (epoch, _) = self.term.take()?;
        checker.on_end(MASTER, epoch);
        Some(epoch)
    }
}

fn shift(e: LeaderEpoch, delta: i64) -> LeaderEpoch {
    LeaderEpoch(e.0.saturating_add_signed(delta))
}

fn ago(now: Time, back: u64) -> Time {
    Time::from_millis(now.as_millis().saturating_sub(back))
}

fn run(step_down: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let step_down = Duration::from_millis(step_down);
    let mut l = Leadership::new(step_down);
    let mut m = Model { step_down, highest: LeaderEpoch::NONE, term: None };
    let mut terms = ActingLeaders::default();
    let mut now = Time::ZERO;
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Advance(d) => now = now + Duration::from_millis(d),
            Op::Elected { delta, back } => {
                let epoch = shift(m.highest, delta);
                let sent = ago(now, back);
                let got = l.become_leader(epoch, sent);
                if epoch <= m.highest {
                    let want = Err(LeadershipError::EpochNotNewer { got: epoch, seen: m.highest });
                    prop_assert_eq!(got, want, "step {}", step);
                } else {
                    prop_assert_eq!(got, Ok(()), "step {}", step);
                    // A new term replaces any earlier one on this master.
                    m.end_term(&mut terms);
                    rule(terms.on_begin(now, MASTER, epoch))?;
                    m.highest = epoch;
                    m.term = Some((epoch, sent));
                }
            }
            Op::Keepalive { back } => {
                let before = l.deadline();
                let sent = ago(now, back);
                l.on_keepalive(sent);
                if let Some((_, newest)) = &mut m.term {
                    *newest = (*newest).max(sent);
                }
                prop_assert!(l.deadline() >= before, "step {}: a keep-alive moved the deadline back", step);
            }
            Op::StepDown { why, delta } => {
                let why = match why {
                    0 => StepDown::LeaseUnconfirmed,
                    1 => StepDown::Lost,
                    _ => StepDown::Superseded { seen: shift(m.highest, delta) },
                };
                let got = l.step_down(why);
                if let StepDown::Superseded { seen } = why {
                    m.highest = m.highest.max(seen);
                }
                prop_assert_eq!(got, m.end_term(&mut terms), "step {}", step);
            }
            Op::Observe { delta } => {
                let base = m.term.map_or(m.highest, |(e, _)| e);
                let seen = shift(base, delta);
                let got = l.observe_epoch(seen);
                m.highest = m.highest.max(seen);
                let ends = m.term.is_some_and(|(e, _)| seen > e);
                let want = if ends { m.end_term(&mut terms) } else { None };
                prop_assert_eq!(got, want, "step {}: observed {}", step, seen);
                prop_assert!(!ends || l.epoch().is_none(), "step {}: a larger epoch must end the term", step);
            }
            Op::Tick => {
                let got = l.tick(now);
                let due = m.acting_until().is_some_and(|t| now >= t);
                let want = if due { m.end_term(&mut terms) } else { None };
                prop_assert_eq!(got, want, "step {}: tick", step);
            }
        }
        let acting = m.term.filter(|_| m.acting_until().is_some_and(|t| now < t)).map(|(e, _)| e);
        prop_assert_eq!(l.acting(now), acting, "step {}", step);
        if let (Some(_), Some((_, newest))) = (l.acting(now), m.term) {
            prop_assert!(now < newest + step_down, "step {}: acting at {} past {} + step-down", step, now, newest);
        }
        prop_assert_eq!(l.epoch(), m.term.map(|(e, _)| e), "step {}", step);
        prop_assert_eq!(l.deadline(), m.acting_until(), "step {}", step);
        prop_assert_eq!(l.highest_seen(), m.highest, "step {}", step);
        prop_assert_eq!(terms.acting().map(|(_, e)| e), l.epoch(), "step {}", step);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// One term at a time, strictly increasing epochs, and no acting past the step-down deadline.
    #[test]
    fn leadership_follows_the_model(step_down in millis(500, 5_000), ops in prop::collection::vec(op(), 1..60)) {
        run(step_down, &ops)?;
    }
}
