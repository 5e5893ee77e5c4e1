//! The fake job master's decisions (`foreman::jobs::fake::FakeMaster`) against a model: workers start from their
//! checkpoints, progress only forwards and only from their current incarnation, restart from the later of what the
//! master saw and what was checkpointed, and the job is done exactly when every worker reached the target. A
//! refused event changes nothing.

use std::collections::BTreeMap;

use foreman::core::ids::Epoch;
use foreman::jobs::fake::{Checkpoint, FakeConfig, FakeMaster, Slot};
use proptest::prelude::*;

use crate::gen::config;

#[derive(Clone, Debug)]
enum Op {
    /// Start worker `w` (if idle) with a fresh epoch.
    Start { w: u32 },
    /// Worker `w` reports `delta` past (or, if `back`, before) what the model knows, from its current epoch or an
    /// older one.
    Progress { w: u32, delta: u64, back: bool, stale: bool },
    /// Worker `w`'s incarnation is lost; the checkpoint read back is `ahead` past what the model knows.
    Lost { w: u32, ahead: u64, stale: bool },
    /// The job master restarts from the checkpoints (the model's durable counters).
    Restart,
}

fn op(workers: u32) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..workers).prop_map(|w| Op::Start { w }),
        6 => (0..workers + 1, 0..4u64, prop::bool::weighted(0.1), prop::bool::weighted(0.1))
            .prop_map(|(w, delta, back, stale)| Op::Progress { w, delta, back, stale }),
        2 => (0..workers, 0..3u64, prop::bool::weighted(0.2)).prop_map(|(w, ahead, stale)| Op::Lost { w, ahead, stale }),
        1 => Just(Op::Restart),
    ]
}

/// The model: per worker, the durable counter (what a checkpoint holds), and the running epoch if any.
#[derive(Clone, Debug)]
struct Model {
    target: u64,
    counter: Vec<u64>,
    running: Vec<Option<Epoch>>,
}

fn run(workers: u32, target: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let cfg = FakeConfig { workers, target, tick_ms: 1 };
    let mut m = FakeMaster::recover(cfg.clone(), &BTreeMap::new());
    let mut model = Model { target, counter: vec![0; workers as usize], running: vec![None; workers as usize] };
    let mut next_epoch = 1u64;
    for (step, op) in ops.iter().enumerate() {
        let before = format!("{m:?}");
        match *op {
            Op::Start { w } => {
                let i = w as usize;
                let idle = model.running[i].is_none() && model.counter[i] < target;
                let e = Epoch(next_epoch);
                next_epoch += 1;
                let r = m.on_started(w, e);
                prop_assert_eq!(r.is_ok(), idle, "step {}: start w{}: {:?}", step, w, r);
                if idle {
                    model.running[i] = Some(e);
                }
            }
            Op::Progress { w, delta, back, stale } => {
                let Some(&cur) = model.counter.get(w as usize) else {
                    prop_assert!(m.on_progress(w, Epoch(1), 0).is_err(), "step {}: unknown worker accepted", step);
                    continue;
                };
                let i = w as usize;
                let counter = if back { cur.saturating_sub(delta + 1) } else { cur + delta };
                let epoch = match (model.running[i], stale) {
                    (Some(e), false) => e,
                    (Some(e), true) => Epoch(e.0.saturating_sub(1)),
                    (None, _) => Epoch(next_epoch + 7),
                };
                let ok = model.running[i] == Some(epoch) && counter >= cur && counter <= target;
                let r = m.on_progress(w, epoch, counter);
                prop_assert_eq!(r.is_ok(), ok, "step {}: progress w{} {:?} to {}: {:?}", step, w, epoch, counter, r);
                if ok {
                    model.counter[i] = counter;
                    prop_assert_eq!(r.unwrap(), counter == target);
                    if counter == target {
                        model.running[i] = None;
                    }
                }
            }
            Op::Lost { w, ahead, stale } => {
                let i = w as usize;
                let epoch = match model.running[i] {
                    Some(e) if !stale => e,
                    Some(e) => Epoch(e.0 + 1000),
                    None => Epoch(1),
                };
                let ok = model.running[i] == Some(epoch);
                let read_back = (model.counter[i] + ahead).min(target);
                let r = m.on_lost(w, epoch, read_back);
                prop_assert_eq!(r.is_ok(), ok, "step {}: lost w{}: {:?}", step, w, r);
                if ok {
                    model.counter[i] = read_back;
                    model.running[i] = None;
                }
            }
            Op::Restart => {
                let cps: BTreeMap<u32, Checkpoint> = model
                    .counter
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| (i as u32, Checkpoint { counter: c, epoch: Epoch(1), stopped: false }))
                    .collect();
                m = FakeMaster::recover(cfg.clone(), &cps);
                model.running = vec![None; workers as usize];
            }
        }
        if let Err(e) = m.check() {
            return Err(TestCaseError::fail(format!("step {step}: {e}")));
        }
        // Agreement with the model, slot by slot; a refused event left everything as it was.
        for i in 0..workers {
            let want = match (model.running[i as usize], model.counter[i as usize]) {
                (_, c) if c >= model.target => Slot::Done,
                (Some(epoch), counter) => Slot::Running { epoch, counter },
                (None, counter) => Slot::Idle { counter },
            };
            prop_assert_eq!(m.slot(i), Some(want), "step {}: w{} after {:?} (before: {})", step, i, op, before);
        }
        prop_assert_eq!(m.is_done(), model.counter.iter().all(|&c| c >= target), "step {}", step);
        let idle: Vec<(u32, u64)> = (0..workers)
            .filter(|&i| model.running[i as usize].is_none() && model.counter[i as usize] < target)
            .map(|i| (i, model.counter[i as usize]))
            .collect();
        prop_assert_eq!(m.to_start(), idle, "step {}", step);
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
