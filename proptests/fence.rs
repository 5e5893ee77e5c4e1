//! Self-fencing ([`SelfFence`]) against the reporter's rule of design.md §5 rule 3.
//!
//! The model keeps the highest judge epoch seen, the send time of the newest heartbeat acknowledged by a judge
//! that is not stale, and the self-fence duration; and, for the judge's side, the earliest time it could declare
//! the reporter offline (its offline TTL after the newest accepted heartbeat was *sent*, since it accepted it
//! later). Operations: acknowledgements of heartbeats sent up to a few seconds ago by judges of an older, the
//! same or a newer epoch, epoch observations without an acknowledgement, changes of the self-fence duration
//! (always below the offline TTL), and time advances.
//!
//! After every step the property asserts agreement with the model on the deadline, the epoch and `is_fenced`;
//! that acknowledgements and observations never move the deadline back; that a reply from an epoch older than
//! one already seen never extends it; and that the reporter is fenced strictly before the judge could declare
//! it offline.

use std::time::Duration;

use foreman::core::fence::{Ack, SelfFence};
use foreman::core::ids::LeaderEpoch;
use foreman::core::invariants::{FencedEpochs, Receiver, Sender};
use foreman::core::time::Time;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::gen::{advance, config, millis, rule};

/// The judge's offline TTL; every self-fence duration drawn is below it.
const OFFLINE_TTL: Duration = Duration::from_millis(10_000);

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    /// A judge at the seen epoch plus `delta` (which may be -1) acknowledged the heartbeat sent `back` ms ago.
    Ack {
        back: u64,
        delta: i64,
    },
    Observe {
        delta: i64,
    },
    SetDuration(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let delta = prop_oneof![2 => Just(-1i64), 6 => Just(0i64), 2 => 1i64..3];
    prop_oneof![
        4 => advance(1_500, 12_000).prop_map(Op::Advance),
        6 => (millis(0, 4_000), delta.clone()).prop_map(|(back, delta)| Op::Ack { back, delta }),
        1 => delta.prop_map(|delta| Op::Observe { delta }),
        1 => millis(1, OFFLINE_TTL.as_millis() as u64).prop_map(Op::SetDuration),
    ]
}

#[derive(Debug)]
struct Model {
    epoch: LeaderEpoch,
    anchor: Time,
    self_fence: Duration,
    /// The judge cannot declare the reporter offline before this.
    judge_offline_at: Time,
}

fn shift(e: LeaderEpoch, delta: i64) -> LeaderEpoch {
    LeaderEpoch(e.0.saturating_add_signed(delta))
}

fn run(start: u64, self_fence: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let start = Time::from_millis(start);
    let self_fence = Duration::from_millis(self_fence);
    let mut f: SelfFence<LeaderEpoch> = SelfFence::new(start, self_fence);
    // Before any acknowledgement the judge's TTL runs from the registration, which the reporter's start follows.
    let mut m = Model { epoch: LeaderEpoch::NONE, anchor: start, self_fence, judge_offline_at: start + OFFLINE_TTL };
    let mut now = start;
    let (mut fenced, receiver) = (FencedEpochs::default(), Receiver::Executor { node: "reporter".to_owned() });
    for (step, op) in ops.iter().enumerate() {
        let before = f.deadline();
        match *op {
            Op::Advance(d) => now = now + Duration::from_millis(d),
            Op::Ack { back, delta } => {
                let sent = Time::from_millis(now.as_millis().saturating_sub(back));
                let epoch = shift(m.epoch, delta);
                let got = f.on_ack(sent, epoch);
                // What the fence takes as an acknowledgement is an accepted message (rule 2's checker).
                if let Ack::Extended(_) = got {
                    rule(fenced.on_accepted(now, &receiver, &Sender::Leader, epoch.0, "an acknowledgement"))?;
                }
                if epoch < m.epoch {
                    prop_assert_eq!(got, Ack::StaleSender { seen: m.epoch }, "step {}", step);
                    prop_assert_eq!(f.deadline(), before, "step {}: a stale reply moved the deadline", step);
                } else {
                    m.epoch = epoch;
                    m.anchor = m.anchor.max(sent);
                    m.judge_offline_at = m.judge_offline_at.max(sent + OFFLINE_TTL);
                    prop_assert_eq!(got, Ack::Extended(m.anchor + m.self_fence), "step {}", step);
                }
                prop_assert!(f.deadline() >= before, "step {}: deadline moved back from {}", step, before);
            }
            Op::Observe { delta } => {
                let epoch = shift(m.epoch, delta);
                f.observe_epoch(epoch);
                m.epoch = m.epoch.max(epoch);
                prop_assert_eq!(f.deadline(), before, "step {}: an observation moved the deadline", step);
            }
            Op::SetDuration(d) => {
                f.set_duration(Duration::from_millis(d));
                m.self_fence = Duration::from_millis(d);
            }
        }
        prop_assert_eq!(f.epoch(), m.epoch, "step {}", step);
        prop_assert_eq!(f.deadline(), m.anchor + m.self_fence, "step {}", step);
        prop_assert_eq!(f.is_fenced(now), now >= m.anchor + m.self_fence, "step {}", step);
        prop_assert!(
            f.deadline() < m.judge_offline_at,
            "step {}: fenced at {}, but the judge may declare it offline at {}",
            step,
            f.deadline(),
            m.judge_offline_at
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// The fence deadline only moves forward, only for current judges, and always before the judge's.
    #[test]
    fn self_fence_follows_the_model(
        start in millis(0, 5_000),
        self_fence in millis(1, OFFLINE_TTL.as_millis() as u64),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(start, self_fence, &ops)?;
    }
}
