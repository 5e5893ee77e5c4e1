//! The `fake` job: N workers each count to a target, one step per tick, checkpointing every step.
//!
//! It exists to test foreman itself: its result is exactly predictable (every counter ends at `target`), so a
//! lost, duplicated or rolled-back step shows. Here: its configuration, and its job master's decisions (which
//! workers to start, from which checkpoint, when the job is done) as a pure state machine; and its workers'
//! counting, on the framework's worker runtime ([`Fake`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigProblem;
use crate::core::ids::WorkerName;
#[cfg(test)]
use crate::core::job_master::EndedWhy;
use crate::core::job_master::{JobLogic, LiveProgress, Verdict, WorkerEvent, WorkerSpec};
use crate::core::time::Time;
#[cfg(test)]
use crate::core::workers::LostReason;
use crate::framework::api::{Interrupted, JobType, Paused, Saved, WorkerCtx, WorkerEnd, WorkerError};
use crate::framework::checkpoint::Stored;

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
    /// Failure knobs, to test the framework's handling of failing workers (none by default). Each incarnation of
    /// each worker fails retryably after taking this many steps (1..=target): it gets on between failures, so the
    /// job still finishes with exact counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_every: Option<u64>,
    /// Each worker fails when its counter is at this step (0..target), every time: retryably (a poison input: it
    /// is restarted up to its limit, then its job fails) or, with `fail_terminal`, terminally (its job fails at
    /// once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_at: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fail_terminal: bool,
    /// Each worker panics when its counter is at this step (0..target), every time: the framework catches it and
    /// counts it as a retryable failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic_at: Option<u64>,
    /// How many times a worker is started again after failing in a row without progress (the framework's
    /// default, 10, when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts_max: Option<u32>,
    /// The job master's logic panics as it starts, every time: the framework catches it and fails the
    /// incarnation retryably, so the leader starts it again after the job's backoff, until the backoff gives up.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub master_panics: bool,
}

impl FakeConfig {
    /// A job whose `workers` each count to `target`, a step every `tick_ms`, failing never.
    pub fn counting(workers: u32, target: u64, tick_ms: u64) -> FakeConfig {
        FakeConfig {
            workers,
            target,
            tick_ms,
            fail_every: None,
            fail_at: None,
            fail_terminal: false,
            panic_at: None,
            restarts_max: None,
            master_panics: false,
        }
    }

    /// Parses and checks a configuration; the error names the field to fix.
    pub fn parse(config: &[u8]) -> Result<FakeConfig, ConfigProblem> {
        let expected = r#"{"workers": N, "target": T, "tick_ms": I}"#;
        let c: FakeConfig = serde_json::from_slice(config).map_err(|e| ConfigProblem::of_json(&e, expected))?;
        let range = ConfigProblem::within;
        range("workers", u64::from(c.workers), 1, u64::from(WORKERS_MAX))?;
        // A target of 0 is a job of no steps: its job master ends as soon as it starts, having started no worker.
        range("target", c.target, 0, TARGET_MAX)?;
        range("tick_ms", c.tick_ms, TICK_MS_MIN, TICK_MS_MAX)?;
        if let Some(n) = c.fail_every {
            range("fail_every", n, 1, c.target.max(1))?;
        }
        for (field, at) in [("fail_at", c.fail_at), ("panic_at", c.panic_at)] {
            if let Some(k) = at.filter(|k| *k >= c.target) {
                let why = format!("is {k}; must be below the target ({}), or the worker never reaches it", c.target);
                return Err(ConfigProblem::new(format!("config.{field}"), why));
            }
        }
        if c.fail_terminal && c.fail_at.is_none() {
            return Err(ConfigProblem::new("config.fail_terminal", "needs fail_at: the step at which to fail"));
        }
        if let Some(r) = c.restarts_max {
            range("restarts_max", u64::from(r), 0, 1_000)?;
        }
        Ok(c)
    }
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
            // The failure knobs.
            (r#"{"workers": 1, "target": 10, "tick_ms": 1, "fail_every": 3, "restarts_max": 0}"#, Ok(())),
            (r#"{"workers": 1, "target": 10, "tick_ms": 1, "fail_at": 9, "fail_terminal": true}"#, Ok(())),
            (r#"{"workers": 1, "target": 10, "tick_ms": 1, "fail_every": 0}"#, Err("config.fail_every")),
            (r#"{"workers": 1, "target": 10, "tick_ms": 1, "fail_every": 11}"#, Err("config.fail_every")),
            (r#"{"workers": 1, "target": 10, "tick_ms": 1, "fail_at": 10}"#, Err("config.fail_at")),
            (r#"{"workers": 1, "target": 10, "tick_ms": 1, "fail_terminal": true}"#, Err("config.fail_terminal")),
            (r#"{"workers": 1, "target": 10, "tick_ms": 1, "restarts_max": 1001}"#, Err("config.restarts_max")),
            (r#"{"workers": 1, "target": 10, "tick_ms": 1, "panic_at": 0}"#, Ok(())),
            (r#"{"workers": 1, "target": 10, "tick_ms": 1, "panic_at": 10}"#, Err("config.panic_at")),
        ];
        for (text, want) in table {
            let got = FakeConfig::parse(text.as_bytes()).map(|_| ()).map_err(|e| e.field);
            assert_eq!(got.as_ref().map_err(|f| f.as_str()), want.as_ref().map_err(|f| *f), "{text}");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The fake job master's decisions, pure (`core::job_master::JobLogic`): which workers to start, from which
// checkpoint, when the job is done. The runtime around it (creating workers through the framework, reading and
// writing checkpoints) comes with the executor.
// ---------------------------------------------------------------------------------------------------------------

/// What a fake worker is told at dispatch (the failure knobs only when set, so a plain job's bytes stay as they
/// were).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    pub target: u64,
    pub tick_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_every: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_at: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fail_terminal: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic_at: Option<u64>,
}

/// A fake worker's state, as its checkpoints hold it: how far it counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    pub counter: u64,
}

/// A fake worker's checkpoint as stored (`{"counter":5,"epoch":7000001,"seq":5}`): for the fake, `seq` always
/// equals `counter` (both start at 0 and advance by one per accepted write), except in values written before
/// `seq` existed, which read it as 0.
pub type Checkpoint = Stored<Counter>;

// ---------------------------------------------------------------------------------------------------------------
// The fake worker's work, on the framework's worker runtime.
// ---------------------------------------------------------------------------------------------------------------

/// The fake job type, as its workers see it.
pub struct Fake;

impl JobType for Fake {
    const NAME: &'static str = TYPE;
    type Config = FakeConfig;
    type WorkerConfig = WorkerConfig;
    type Checkpoint = Counter;
    type Logic = FakeLogic;

    fn parse_config(config: &[u8]) -> Result<FakeConfig, ConfigProblem> {
        FakeConfig::parse(config)
    }

    /// Counts from the restored checkpoint to the target, one step per tick, checkpointing each step.
    async fn work(&self, config: WorkerConfig, ctx: &mut WorkerCtx<Counter>) -> Result<WorkerEnd, Interrupted> {
        let mut counter = ctx.restored().map_or(0, |c| c.counter);
        let started = counter;
        let tick = Duration::from_millis(config.tick_ms);
        loop {
            ctx.progress(format!("{}/{}", counter.min(config.target), config.target));
            if ctx.is_canceled() {
                return Ok(WorkerEnd::Canceled);
            }
            if counter >= config.target {
                return Ok(WorkerEnd::Finished);
            }
            if config.fail_at == Some(counter) {
                let how = if config.fail_terminal { "terminal" } else { "retryable" };
                let message = format!("planned failure at step {counter} ({how})");
                return Ok(WorkerEnd::Failed(WorkerError { message, retryable: !config.fail_terminal }));
            }
            if config.panic_at == Some(counter) {
                panic!("fake: planned panic at step {counter}");
            }
            if config.fail_every.is_some_and(|n| counter - started >= n) {
                let message = format!("planned failure after {} steps (retryable)", counter - started);
                return Ok(WorkerEnd::Failed(WorkerError { message, retryable: true }));
            }
            // Only here, between steps: every step taken is checkpointed and none is in flight.
            if ctx.is_draining() {
                return Ok(WorkerEnd::Drained);
            }
            if ctx.pause(tick).await == Paused::Interrupted {
                continue;
            }
            match ctx.try_save(&Counter { counter: counter + 1 }).await? {
                Saved::Yes => counter += 1,
                // The same step is written again at the next tick (the same value, so applying it twice is
                // harmless).
                Saved::Unknown => {}
            }
        }
    }
}

/// Worker `index`'s name within its job.
pub fn worker_name(index: u32) -> WorkerName {
    WorkerName::parse(&format!("w{index}")).expect("w<digits> is a valid worker name")
}

/// The index of a worker named `w<index>` (in the canonical form [`worker_name`] gives).
pub fn worker_index(name: &WorkerName) -> Option<u32> {
    let index: u32 = name.as_str().strip_prefix('w')?.parse().ok()?;
    (worker_name(index) == *name).then_some(index)
}

/// Where one worker stands, as its job master sees it (whether an incarnation of it runs is the runtime's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// To count on from `counter` (the checkpoint it started from, or the one read back after its end).
    Pending { counter: u64 },
    /// Reached the target.
    Done,
}

/// The fake job master's state.
#[derive(Clone, Debug)]
pub struct FakeLogic {
    config: FakeConfig,
    slots: Vec<Slot>,
}

impl FakeLogic {
    pub fn config(&self) -> &FakeConfig {
        &self.config
    }

    pub fn slot(&self, index: u32) -> Option<Slot> {
        self.slots.get(index as usize).copied()
    }

    fn slot_of(&mut self, name: &WorkerName) -> Option<&mut Slot> {
        let index = worker_index(name)?;
        self.slots.get_mut(index as usize)
    }
}

impl JobLogic for FakeLogic {
    type Config = FakeConfig;
    type WorkerConfig = WorkerConfig;
    type Checkpoint = Counter;

    fn recover(config: FakeConfig, checkpoints: &BTreeMap<WorkerName, Counter>) -> FakeLogic {
        assert!(!config.master_panics, "fake: planned panic of the job master");
        let slots = (0..config.workers)
            .map(|i| {
                let counter = checkpoints.get(&worker_name(i)).map_or(0, |c| c.counter.min(config.target));
                if counter >= config.target {
                    Slot::Done
                } else {
                    Slot::Pending { counter }
                }
            })
            .collect();
        FakeLogic { config, slots }
    }

    /// Every worker short of the target, in index order.
    fn wanted(&self) -> Vec<WorkerName> {
        (0..self.config.workers).filter(|&i| self.slot(i) != Some(Slot::Done)).map(worker_name).collect()
    }

    fn worker(&self, name: &WorkerName) -> Option<WorkerSpec<WorkerConfig>> {
        worker_index(name).filter(|&i| i < self.config.workers)?;
        let c = &self.config;
        let config = WorkerConfig {
            target: c.target,
            tick_ms: c.tick_ms,
            fail_every: c.fail_every,
            fail_at: c.fail_at,
            fail_terminal: c.fail_terminal,
            panic_at: c.panic_at,
        };
        let spec = WorkerSpec::new(config);
        Some(WorkerSpec { restarts_max: c.restarts_max.unwrap_or(spec.restarts_max), ..spec })
    }

    fn on_event(&mut self, _now: Time, event: WorkerEvent<'_, Counter>) {
        let target = self.config.target;
        match event {
            WorkerEvent::Online { .. } => {}
            WorkerEvent::Finished { name } => {
                if let Some(slot) = self.slot_of(name) {
                    *slot = Slot::Done;
                }
            }
            // Started again from the later of where it started and what it checkpointed.
            WorkerEvent::Ended { name, checkpoint, .. } => {
                if let Some(slot) = self.slot_of(name) {
                    if let Slot::Pending { counter } = *slot {
                        let counter = checkpoint.map_or(counter, |c| counter.max(c.counter)).min(target);
                        *slot = if counter >= target { Slot::Done } else { Slot::Pending { counter } };
                    }
                }
            }
        }
    }

    fn verdict(&self) -> Verdict {
        if self.slots.iter().all(|s| *s == Slot::Done) {
            Verdict::Finished
        } else {
            Verdict::Running
        }
    }

    /// `"<steps>/<total> steps, <done>/<workers> workers done"`, a running worker counted at the later of where
    /// it started and what it last reported (`"<counter>/<target>"`).
    fn progress(&self, live: &dyn LiveProgress) -> String {
        let target = self.config.target;
        let mut steps = 0u64;
        let mut done = 0u32;
        for (index, slot) in self.slots.iter().enumerate() {
            steps += match *slot {
                Slot::Done => {
                    done += 1;
                    target
                }
                Slot::Pending { counter } => live
                    .get(&worker_name(index as u32))
                    .and_then(|p| p.split('/').next()?.parse::<u64>().ok())
                    .map_or(counter, |c| c.max(counter).min(target)),
            };
        }
        let total = target.saturating_mul(u64::from(self.config.workers));
        format!("{steps}/{total} steps, {done}/{} workers done", self.config.workers)
    }

    fn check(&self) -> Result<(), String> {
        if self.slots.len() != self.config.workers as usize {
            return Err(format!("fake: {} slots for {} workers", self.slots.len(), self.config.workers));
        }
        for (i, s) in self.slots.iter().enumerate() {
            if let Slot::Pending { counter } = s {
                if *counter >= self.config.target {
                    return Err(format!("fake: w{i} at {counter} >= target {} but not done", self.config.target));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod master_tests {
    use super::*;

    fn config(workers: u32, target: u64) -> FakeConfig {
        FakeConfig::counting(workers, target, 10)
    }

    fn cp(counter: u64) -> Counter {
        Counter { counter }
    }

    fn names(list: &[u32]) -> Vec<WorkerName> {
        list.iter().map(|&i| worker_name(i)).collect()
    }

    #[test]
    fn worker_names_and_indexes_round_trip() {
        for i in [0, 7, 999] {
            assert_eq!(worker_index(&worker_name(i)), Some(i));
        }
        for other in ["x1", "w", "w01", "w-1", "w4294967296"] {
            assert_eq!(worker_index(&WorkerName::parse(other).unwrap()), None, "{other}");
        }
    }

    #[test]
    fn recover_wants_every_unfinished_worker_from_its_checkpoint() {
        let cps: BTreeMap<WorkerName, Counter> = [
            (worker_name(0), cp(5)),
            (worker_name(2), cp(10)),
            (worker_name(3), cp(99)), // beyond the target (config changed?): done
            (WorkerName::parse("stray").unwrap(), cp(3)),
        ]
        .into();
        let m = FakeLogic::recover(config(4, 10), &cps);
        assert_eq!(m.wanted(), names(&[0, 1]));
        assert_eq!(m.slot(0), Some(Slot::Pending { counter: 5 }));
        assert_eq!(m.slot(2), Some(Slot::Done));
        assert_eq!(m.slot(3), Some(Slot::Done));
        assert_eq!(m.verdict(), Verdict::Running);
        m.check().unwrap();
        assert_eq!(
            m.worker(&worker_name(3)).map(|s| s.config),
            Some(WorkerConfig {
                target: 10,
                tick_ms: 10,
                fail_every: None,
                fail_at: None,
                fail_terminal: false,
                panic_at: None
            })
        );
        // A plain job's workers are told what they were before the failure knobs existed.
        let plain = m.worker(&worker_name(0)).unwrap();
        assert_eq!(serde_json::to_string(&plain.config).unwrap(), r#"{"target":10,"tick_ms":10}"#);
        assert_eq!(plain.restarts_max, crate::core::restarts::WORKER_RESTARTS_DEFAULT);
        let knobs = FakeConfig { fail_at: Some(4), fail_terminal: true, restarts_max: Some(2), ..config(2, 10) };
        let spec = FakeLogic::recover(knobs, &BTreeMap::new()).worker(&worker_name(1)).unwrap();
        assert_eq!((spec.config.fail_at, spec.config.fail_terminal, spec.restarts_max), (Some(4), true, 2));
        assert_eq!(m.worker(&worker_name(4)), None);
        assert_eq!(m.worker(&WorkerName::parse("stray").unwrap()), None);
    }

    #[test]
    fn events_table() {
        // (event on worker 0, pending from 2 of target 4; its slot after)
        let w0 = worker_name(0);
        let table: &[(&str, WorkerEvent<'_, Counter>, Slot)] = &[
            ("online", WorkerEvent::Online { name: &w0 }, Slot::Pending { counter: 2 }),
            ("finished", WorkerEvent::Finished { name: &w0 }, Slot::Done),
            (
                "lost, checkpoint ahead",
                WorkerEvent::Ended { name: &w0, why: EndedWhy::Lost(LostReason::Silent), checkpoint: Some(&cp(3)) },
                Slot::Pending { counter: 3 },
            ),
            (
                "lost, checkpoint behind what it started from",
                WorkerEvent::Ended { name: &w0, why: EndedWhy::Stopped, checkpoint: Some(&cp(1)) },
                Slot::Pending { counter: 2 },
            ),
            (
                "never started: no checkpoint read",
                WorkerEvent::Ended { name: &w0, why: EndedWhy::NotStarted, checkpoint: None },
                Slot::Pending { counter: 2 },
            ),
            (
                "ended at the target",
                WorkerEvent::Ended { name: &w0, why: EndedWhy::Canceled, checkpoint: Some(&cp(4)) },
                Slot::Done,
            ),
            (
                "checkpoint beyond the target",
                WorkerEvent::Ended { name: &w0, why: EndedWhy::Canceled, checkpoint: Some(&cp(9)) },
                Slot::Done,
            ),
        ];
        for (what, event, want) in table {
            let mut m = FakeLogic::recover(config(2, 4), &[(w0.clone(), cp(2))].into());
            m.on_event(Time::ZERO, event.clone());
            assert_eq!(m.slot(0), Some(*want), "{what}");
            assert_eq!(m.slot(1), Some(Slot::Pending { counter: 0 }), "{what}: w1 untouched");
            m.check().unwrap();
        }
        // An event about a worker the job does not have changes nothing.
        let mut m = FakeLogic::recover(config(1, 4), &BTreeMap::new());
        m.on_event(Time::ZERO, WorkerEvent::Finished { name: &worker_name(5) });
        assert_eq!(m.wanted(), names(&[0]));
    }

    #[test]
    fn progress_counts_live_reports_only_forward_and_the_verdict_follows_the_slots() {
        let mut m = FakeLogic::recover(config(3, 10), &[(worker_name(0), cp(4))].into());
        let mut live: BTreeMap<WorkerName, String> = BTreeMap::new();
        assert_eq!(m.progress(&live), "4/30 steps, 0/3 workers done");
        live.insert(worker_name(0), "7/10".into());
        live.insert(worker_name(1), "garbage".into());
        live.insert(worker_name(2), "12/10".into());
        assert_eq!(m.progress(&live), "17/30 steps, 0/3 workers done");
        live.insert(worker_name(0), "1/10".into());
        assert_eq!(m.progress(&live), "14/30 steps, 0/3 workers done", "a report behind the checkpoint counts not");
        for i in 0..3 {
            m.on_event(Time::ZERO, WorkerEvent::Finished { name: &worker_name(i) });
        }
        assert_eq!(m.verdict(), Verdict::Finished);
        assert!(m.wanted().is_empty());
        assert_eq!(m.progress(&live), "30/30 steps, 3/3 workers done");
        // A job of no steps is finished from the start.
        assert_eq!(FakeLogic::recover(config(2, 0), &BTreeMap::new()).verdict(), Verdict::Finished);
    }
}
