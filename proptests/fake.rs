//! The fake job master's decisions (`foreman::jobs::fake::FakeLogic`, a `JobLogic`) against a model: workers are
//! wanted from their checkpoints, restart from the later of where they started and what was checkpointed (never
//! beyond the target), and the job is finished exactly when every worker reached the target. Which incarnation is
//! current is the runtime's (the logic hears only of current ones), so the model has no epochs.

use std::collections::BTreeMap;

use foreman::core::ids::WorkerName;
use foreman::core::job_master::{EndedWhy, JobLogic, Verdict, WorkerEvent};
use foreman::core::time::Time;
use foreman::jobs::fake::{Counter, FakeConfig, FakeLogic};
use proptest::prelude::*;

use crate::gen::config;

#[derive(Clone, Debug)]
enum Op {
    /// Worker `w` (maybe not one of the job's) checked in.
    Online { w: u32 },
    /// Worker `w` reported it finished.
    Finished { w: u32 },
    /// Worker `w` ended; the checkpoint read back is `ahead` past (or, if `back`, before) the model's counter, or
    /// none.
    Ended { w: u32, ahead: u64, back: bool, none: bool },
    /// The job master restarts from the checkpoints (the model's durable counters).
    Restart,
}

fn op(workers: u32) -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..workers + 1).prop_map(|w| Op::Online { w }),
        2 => (0..workers + 1).prop_map(|w| Op::Finished { w }),
        5 => (0..workers + 1, 0..4u64, prop::bool::weighted(0.2), prop::bool::weighted(0.2))
            .prop_map(|(w, ahead, back, none)| Op::Ended { w, ahead, back, none }),
        1 => Just(Op::Restart),
    ]
}

fn cp(counter: u64) -> Counter {
    Counter { counter }
}

fn run(workers: u32, target: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let cfg = FakeConfig::counting(workers, target, 1);
    let mut m = FakeLogic::recover(cfg.clone(), &BTreeMap::new());
    // The model: per worker, the counter it would start from (the target once done).
    let mut counter = vec![0u64; workers as usize];
    for (step, op) in ops.iter().enumerate() {
        let before = format!("{m:?}");
        match *op {
            Op::Online { w } => m.on_event(Time::ZERO, WorkerEvent::Online { name: &WorkerName::indexed(w) }),
            Op::Finished { w } => {
                m.on_event(Time::ZERO, WorkerEvent::Finished { name: &WorkerName::indexed(w) });
                if let Some(c) = counter.get_mut(w as usize) {
                    *c = target;
                }
            }
            Op::Ended { w, ahead, back, none } => {
                let cur = counter.get(w as usize).copied().unwrap_or(0);
                let read = if back { cur.saturating_sub(ahead + 1) } else { cur + ahead };
                let checkpoint = (!none).then(|| cp(read));
                let why = EndedWhy::Stopped;
                m.on_event(
                    Time::ZERO,
                    WorkerEvent::Ended { name: &WorkerName::indexed(w), why, checkpoint: checkpoint.as_ref() },
                );
                if let Some(c) = counter.get_mut(w as usize) {
                    if !none {
                        *c = (*c).max(read).min(target);
                    }
                }
            }
            Op::Restart => {
                let cps: BTreeMap<WorkerName, Counter> =
                    counter.iter().enumerate().map(|(i, &c)| (WorkerName::indexed(i as u32), cp(c))).collect();
                m = FakeLogic::recover(cfg.clone(), &cps);
            }
        }
        if let Err(e) = m.check() {
            return Err(TestCaseError::fail(format!("step {step}: {e}")));
        }
        for i in 0..workers {
            let c = counter[i as usize];
            prop_assert_eq!(m.counter(i), Some(c), "step {}: w{} after {:?} (before: {})", step, i, op, before);
        }
        let done = counter.iter().all(|&c| c >= target);
        prop_assert_eq!(m.verdict() == Verdict::Finished, done, "step {}", step);
        let wanted: Vec<WorkerName> =
            (0..workers).filter(|&i| counter[i as usize] < target).map(WorkerName::indexed).collect();
        prop_assert_eq!(m.wanted(), wanted, "step {}", step);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Checkpoint-driven restarts never lose or repeat progress, and the job is done exactly when every worker is.
    #[test]
    fn fake_job_master_follows_the_model(
        (workers, target, ops) in (1..5u32, 1..8u64).prop_flat_map(|(w, t)| (Just(w), Just(t), prop::collection::vec(op(w), 1..80)))
    ) {
        run(workers, target, &ops)?;
    }
}
