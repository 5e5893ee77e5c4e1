//! The `fake` job: N workers each count to a target, one step per tick, checkpointing every step.
//!
//! It exists to test foreman itself: its result is exactly predictable (every counter ends at `target`), so a
//! lost, duplicated or rolled-back step shows. Here: its configuration, and its job master's decisions (which
//! workers to start, from which checkpoint, when the job is done) as a pure state machine; the runtime that
//! creates workers and writes checkpoints comes with the executor.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ConfigProblem;
use crate::core::ids::Epoch;

pub const TYPE: &str = "fake";

/// The most workers a fake job may have.
pub const WORKERS_MAX: u32 = 1_000;
/// The highest target.
pub const TARGET_MAX: u64 = 1_000_000_000;
/// The tick bounds, in milliseconds.
pub const TICK_MS_MIN: u64 = 1;
pub const TICK_MS_MAX: u64 = 3_600_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeConfig {
    pub workers: u32,
    pub target: u64,
    pub tick_ms: u64,
}

impl FakeConfig {
    /// Parses and checks a configuration; the error names the field to fix.
    pub fn parse(config: &[u8]) -> Result<FakeConfig, ConfigProblem> {
        let c: FakeConfig = serde_json::from_slice(config).map_err(|e| {
            let field = match e.classify() {
                serde_json::error::Category::Data => data_field(&e.to_string()),
                _ => "config".to_owned(),
            };
            ConfigProblem::new(field, format!("{e}; expected {{\"workers\": N, \"target\": T, \"tick_ms\": I}}"))
        })?;
        let range = |field: &str, v: u64, lo: u64, hi: u64| {
            if v < lo || v > hi {
                Err(ConfigProblem::new(format!("config.{field}"), format!("is {v}; must be within {lo}..={hi}")))
            } else {
                Ok(())
            }
        };
        range("workers", u64::from(c.workers), 1, u64::from(WORKERS_MAX))?;
        // A target of 0 is a job of no steps: its job master ends as soon as it starts, having started no worker.
        range("target", c.target, 0, TARGET_MAX)?;
        range("tick_ms", c.tick_ms, TICK_MS_MIN, TICK_MS_MAX)?;
        Ok(c)
    }
}

/// The field a serde data error is about, when its message names one (`missing field `x``, `unknown field `x``).
fn data_field(message: &str) -> String {
    for lead in ["missing field `", "unknown field `"] {
        if let Some(rest) = message.strip_prefix(lead) {
            if let Some(name) = rest.split('`').next() {
                return format!("config.{name}");
            }
        }
    }
    "config".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let table: &[(&str, Result<(), &str>)] = &[
            (r#"{"workers": 3, "target": 100, "tick_ms": 10}"#, Ok(())),
            (r#"{"workers": 0, "target": 100, "tick_ms": 10}"#, Err("config.workers")),
            (r#"{"workers": 1001, "target": 100, "tick_ms": 10}"#, Err("config.workers")),
            (r#"{"workers": 1, "target": 0, "tick_ms": 10}"#, Ok(())),
            (r#"{"workers": 1, "target": 1000000001, "tick_ms": 10}"#, Err("config.target")),
            (r#"{"workers": 1, "target": 1, "tick_ms": 0}"#, Err("config.tick_ms")),
            (r#"{"workers": 1, "target": 1}"#, Err("config.tick_ms")),
            (r#"{"workers": -1, "target": 1, "tick_ms": 1}"#, Err("config")),
            (r#"{"workers": 1, "target": 1, "tick_ms": 1, "speed": 2}"#, Err("config.speed")),
            (r#"[1, 2]"#, Err("config")),
            (r#"{"workers": 1,"#, Err("config")),
        ];
        for (text, want) in table {
            let got = FakeConfig::parse(text.as_bytes()).map(|_| ()).map_err(|e| e.field);
            assert_eq!(got.as_ref().map_err(|f| f.as_str()), want.as_ref().map_err(|f| *f), "{text}");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The fake job master's decisions, pure: events in, the workers to start out. The runtime around it (creating
// workers through the framework, reading and writing checkpoints) comes with the executor.
// ---------------------------------------------------------------------------------------------------------------

/// A worker's durable progress: its counter, written by incarnation `epoch`. The metastore refuses a checkpoint
/// from any incarnation but the worker's current one, so a checkpoint never goes backwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub counter: u64,
    pub epoch: Epoch,
    /// Written by incarnation `epoch` as its last act, when its executor drained: that incarnation runs no more,
    /// so a job master recovering need not wait for it to check in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
}

/// Where one worker stands, as its job master sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Not running: to be started from `counter`.
    Idle { counter: u64 },
    /// Incarnation `epoch` was created from `counter`.
    Running { epoch: Epoch, counter: u64 },
    /// Reached the target.
    Done,
}

/// Why an event was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FakeError {
    #[error("worker w{index} does not exist (the job has {workers})")]
    NoSuchWorker { index: u32, workers: u32 },
    #[error("worker w{index} epoch {epoch} is not its current incarnation")]
    Stale { index: u32, epoch: Epoch },
    #[error("worker w{index} went from {from} back to {to}")]
    Backwards { index: u32, from: u64, to: u64 },
    #[error("worker w{index} reported {counter}, beyond the target {target}")]
    BeyondTarget { index: u32, counter: u64, target: u64 },
}

/// The fake job master's state.
#[derive(Clone, Debug)]
pub struct FakeMaster {
    config: FakeConfig,
    slots: Vec<Slot>,
}

impl FakeMaster {
    /// A job master (first or restarted) from the checkpoints found in the metastore, by worker index.
    pub fn recover(config: FakeConfig, checkpoints: &BTreeMap<u32, Checkpoint>) -> FakeMaster {
        let slots = (0..config.workers)
            .map(|i| {
                let counter = checkpoints.get(&i).map_or(0, |c| c.counter.min(config.target));
                if counter >= config.target {
                    Slot::Done
                } else {
                    Slot::Idle { counter }
                }
            })
            .collect();
        FakeMaster { config, slots }
    }

    pub fn config(&self) -> &FakeConfig {
        &self.config
    }

    pub fn slot(&self, index: u32) -> Option<Slot> {
        self.slots.get(index as usize).copied()
    }

    /// The workers to start now, with the counter each starts from, in index order.
    pub fn to_start(&self) -> Vec<(u32, u64)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Slot::Idle { counter } => Some((i as u32, *counter)),
                _ => None,
            })
            .collect()
    }

    fn slot_mut(&mut self, index: u32) -> Result<&mut Slot, FakeError> {
        let workers = self.config.workers;
        self.slots.get_mut(index as usize).ok_or(FakeError::NoSuchWorker { index, workers })
    }

    /// Incarnation `epoch` of worker `index` was created.
    pub fn on_started(&mut self, index: u32, epoch: Epoch) -> Result<(), FakeError> {
        let slot = self.slot_mut(index)?;
        match *slot {
            Slot::Idle { counter } => {
                *slot = Slot::Running { epoch, counter };
                Ok(())
            }
            _ => Err(FakeError::Stale { index, epoch }),
        }
    }

    /// Worker `index` (incarnation `epoch`) checkpointed `counter`. Returns whether it is done.
    pub fn on_progress(&mut self, index: u32, epoch: Epoch, counter: u64) -> Result<bool, FakeError> {
        let target = self.config.target;
        let slot = self.slot_mut(index)?;
        let Slot::Running { epoch: current, counter: from } = *slot else {
            return Err(FakeError::Stale { index, epoch });
        };
        if epoch != current {
            return Err(FakeError::Stale { index, epoch });
        }
        if counter < from {
            return Err(FakeError::Backwards { index, from, to: counter });
        }
        if counter > target {
            return Err(FakeError::BeyondTarget { index, counter, target });
        }
        *slot = if counter == target { Slot::Done } else { Slot::Running { epoch, counter } };
        Ok(counter == target)
    }

    /// Incarnation `epoch` of worker `index` is gone (lost, or told it is stale): it is started again from its
    /// last checkpoint, which the caller read back (`checkpointed`, at least what this master saw).
    pub fn on_lost(&mut self, index: u32, epoch: Epoch, checkpointed: u64) -> Result<(), FakeError> {
        let target = self.config.target;
        let slot = self.slot_mut(index)?;
        match *slot {
            Slot::Running { epoch: current, counter } if current == epoch => {
                let counter = counter.max(checkpointed).min(target);
                *slot = if counter == target { Slot::Done } else { Slot::Idle { counter } };
                Ok(())
            }
            _ => Err(FakeError::Stale { index, epoch }),
        }
    }

    /// Every worker reached the target: the job master reports Finished.
    pub fn is_done(&self) -> bool {
        self.slots.iter().all(|s| *s == Slot::Done)
    }

    /// Checks the invariants; the message names the one broken.
    pub fn check(&self) -> Result<(), String> {
        if self.slots.len() != self.config.workers as usize {
            return Err(format!("fake: {} slots for {} workers", self.slots.len(), self.config.workers));
        }
        for (i, s) in self.slots.iter().enumerate() {
            match s {
                Slot::Idle { counter } | Slot::Running { counter, .. } if *counter >= self.config.target => {
                    return Err(format!("fake: w{i} at {counter} >= target {} but not done", self.config.target));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A fake worker's next counter after a tick, if it has not reached the target.
pub fn step(counter: u64, target: u64) -> Option<u64> {
    (counter < target).then_some(counter + 1)
}

#[cfg(test)]
mod master_tests {
    use super::*;

    fn config(workers: u32, target: u64) -> FakeConfig {
        FakeConfig { workers, target, tick_ms: 10 }
    }

    #[test]
    fn recover_starts_every_unfinished_worker_from_its_checkpoint() {
        let cps: BTreeMap<u32, Checkpoint> = [
            (0, Checkpoint { counter: 5, epoch: Epoch(3), stopped: false }),
            (2, Checkpoint { counter: 10, epoch: Epoch(4), stopped: false }),
            (3, Checkpoint { counter: 99, epoch: Epoch(4), stopped: false }), // beyond the target (config changed?): done
        ]
        .into();
        let m = FakeMaster::recover(config(4, 10), &cps);
        assert_eq!(m.to_start(), vec![(0, 5), (1, 0)]);
        assert_eq!(m.slot(2), Some(Slot::Done));
        assert_eq!(m.slot(3), Some(Slot::Done));
        m.check().unwrap();
    }

    #[test]
    fn events_table() {
        // (event on worker 0 after it started with epoch 7 from 2, expected result)
        type Event = fn(&mut FakeMaster) -> Result<bool, FakeError>;
        let table: &[(&str, Event, Result<bool, FakeError>)] = &[
            ("progress", |m| m.on_progress(0, Epoch(7), 3), Ok(false)),
            ("reaches target", |m| m.on_progress(0, Epoch(7), 4), Ok(true)),
            ("stale epoch", |m| m.on_progress(0, Epoch(6), 3), Err(FakeError::Stale { index: 0, epoch: Epoch(6) })),
            ("backwards", |m| m.on_progress(0, Epoch(7), 1), Err(FakeError::Backwards { index: 0, from: 2, to: 1 })),
            (
                "beyond target",
                |m| m.on_progress(0, Epoch(7), 5),
                Err(FakeError::BeyondTarget { index: 0, counter: 5, target: 4 }),
            ),
            (
                "no such worker",
                |m| m.on_progress(9, Epoch(7), 3),
                Err(FakeError::NoSuchWorker { index: 9, workers: 2 }),
            ),
            (
                "start twice",
                |m| m.on_started(0, Epoch(8)).map(|_| false),
                Err(FakeError::Stale { index: 0, epoch: Epoch(8) }),
            ),
            (
                "lost, stale",
                |m| m.on_lost(0, Epoch(6), 0).map(|_| false),
                Err(FakeError::Stale { index: 0, epoch: Epoch(6) }),
            ),
        ];
        for (name, event, want) in table {
            let mut m = FakeMaster::recover(
                config(2, 4),
                &[(0, Checkpoint { counter: 2, epoch: Epoch(1), stopped: false })].into(),
            );
            m.on_started(0, Epoch(7)).unwrap();
            assert_eq!(&event(&mut m), want, "{name}");
            m.check().unwrap();
        }
    }

    #[test]
    fn a_lost_worker_restarts_from_the_later_of_seen_and_checkpointed() {
        let mut m = FakeMaster::recover(config(1, 10), &BTreeMap::new());
        m.on_started(0, Epoch(1)).unwrap();
        m.on_progress(0, Epoch(1), 4).unwrap();
        // The checkpoint read back is ahead of what the master saw (the last report was lost).
        m.on_lost(0, Epoch(1), 6).unwrap();
        assert_eq!(m.to_start(), vec![(0, 6)]);
        m.on_started(0, Epoch(2)).unwrap();
        // The old incarnation is fenced from now on.
        assert_eq!(m.on_progress(0, Epoch(1), 7), Err(FakeError::Stale { index: 0, epoch: Epoch(1) }));
        for c in 7..=10 {
            assert_eq!(m.on_progress(0, Epoch(2), c), Ok(c == 10));
        }
        assert!(m.is_done());
        assert_eq!(step(9, 10), Some(10));
        assert_eq!(step(10, 10), None);
    }
}
