//! The `fake` job: N workers each count to a target, one step per tick, checkpointing every step.
//!
//! It exists to test foreman: its result is exactly predictable (every counter ends at `target`), so a lost,
//! duplicated or rolled-back step shows, and it fails on purpose when told to. Its job master's decisions are a
//! pure state machine ([`FakeLogic`]), its workers' counting is [`Fake::work`]; the framework does the rest.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigProblem;
use crate::core::ids::WorkerName;
use crate::core::job_master::{JobLogic, LiveProgress, Verdict, WorkerEvent, WorkerSpec};
use crate::core::time::Time;
use crate::framework::api::{Interrupted, JobType, Paused, Saved, WorkerCtx, WorkerEnd, WorkerError};
use crate::framework::checkpoint::Stored;

pub const TYPE: &str = "fake";

/// How a planned panic's message begins (the simulator's harness keeps these out of its output).
pub const PLANNED_PANIC: &str = "fake: planned panic";
/// The most workers a fake job may have, its highest target, and the bounds of its tick in milliseconds.
pub const WORKERS_MAX: u32 = 1_000;
pub const TARGET_MAX: u64 = 1_000_000_000;
pub const TICK_MS_MIN: u64 = 1;
pub const TICK_MS_MAX: u64 = 3_600_000;

/// A fake job's configuration: `workers` each count to `target`, a step every `tick_ms`. The other fields are
/// knobs to fail on purpose (none by default), to test how the framework handles failing tasks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeConfig {
    pub workers: u32,
    pub target: u64,
    pub tick_ms: u64,
    /// Each incarnation of each worker fails retryably after taking this many steps (1..=target): it gets on
    /// between failures, so the job still finishes with exact counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_every: Option<u64>,
    /// Each worker fails at this step (below the target), every time: retryably (a poison input: it is started
    /// again up to its limit, then its job fails) or, with `fail_terminal`, terminally (its job fails at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_at: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fail_terminal: bool,
    /// Each worker panics at this step (below the target), every time: a retryable failure to the framework.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic_at: Option<u64>,
    /// How often a worker is started again after failing in a row without progress (default: the framework's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts_max: Option<u32>,
    /// The job master panics as it starts, every time: the leader starts it again after the job's backoff, until
    /// the backoff gives up.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub master_panics: bool,
}

impl FakeConfig {
    /// A job whose `workers` each count to `target`, a step every `tick_ms`, failing never.
    pub fn counting(workers: u32, target: u64, tick_ms: u64) -> FakeConfig {
        FakeConfig { workers, target, tick_ms, ..FakeConfig::default() }
    }

    /// Parses and checks a configuration; the error names the field to fix.
    pub fn parse(config: &[u8]) -> Result<FakeConfig, ConfigProblem> {
        let expected = r#"{"workers": N, "target": T, "tick_ms": I}"#;
        let c: FakeConfig = ConfigProblem::parse_json(config, expected)?;
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

/// What a fake worker is told at dispatch (the knobs only when set: a plain job's bytes are as before them).
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

/// A fake worker's checkpoint as stored (`{"counter":5,"epoch":7000001,"seq":5}`; `seq` == `counter` since `seq` was).
pub type Checkpoint = Stored<Counter>;

/// The fake job type.
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
        loop {
            ctx.progress(format!("{}/{}", counter.min(config.target), config.target));
            if ctx.is_canceled() {
                return Ok(WorkerEnd::Canceled);
            }
            if counter >= config.target {
                return Ok(WorkerEnd::Finished);
            }
            let failed = |message, retryable| Ok(WorkerEnd::Failed(WorkerError { message, retryable }));
            if config.fail_at == Some(counter) {
                let how = if config.fail_terminal { "terminal" } else { "retryable" };
                return failed(format!("planned failure at step {counter} ({how})"), !config.fail_terminal);
            }
            if config.panic_at == Some(counter) {
                panic!("{PLANNED_PANIC} at step {counter}");
            }
            if config.fail_every.is_some_and(|n| counter - started >= n) {
                return failed(format!("planned failure after {} steps (retryable)", counter - started), true);
            }
            // Only here, between steps: every step taken is checkpointed and none is in flight.
            if ctx.is_draining() {
                return Ok(WorkerEnd::Drained);
            }
            if ctx.pause(Duration::from_millis(config.tick_ms)).await == Paused::Interrupted {
                continue;
            }
            match ctx.try_save(&Counter { counter: counter + 1 }).await? {
                Saved::Yes => counter += 1,
                // The same step is written again at the next tick (the same value: applying it twice is harmless).
                Saved::Unknown => {}
            }
        }
    }
}

/// The fake job master's state: where each worker counts on from (the target once it is done), its workers
/// named `w0`, `w1`, ... ([`WorkerName::indexed`]).
#[derive(Clone, Debug)]
pub struct FakeLogic {
    config: FakeConfig,
    counters: Vec<u64>,
}

impl FakeLogic {
    /// Where worker `index` counts on from (the later of its start and its last checkpoint; at most the target).
    pub fn counter(&self, index: u32) -> Option<u64> {
        self.counters.get(index as usize).copied()
    }
}

impl JobLogic for FakeLogic {
    type Config = FakeConfig;
    type WorkerConfig = WorkerConfig;
    type Checkpoint = Counter;

    fn recover(config: FakeConfig, checkpoints: &BTreeMap<WorkerName, Counter>) -> FakeLogic {
        assert!(!config.master_panics, "fake: planned panic of the job master");
        let at = |i| checkpoints.get(&WorkerName::indexed(i)).map_or(0, |c: &Counter| c.counter.min(config.target));
        FakeLogic { counters: (0..config.workers).map(at).collect(), config }
    }

    fn wanted(&self) -> Vec<WorkerName> {
        let short = |&i: &u32| self.counter(i) < Some(self.config.target);
        (0..self.config.workers).filter(short).map(WorkerName::indexed).collect()
    }

    fn worker(&self, name: &WorkerName) -> Option<WorkerSpec<WorkerConfig>> {
        name.index().filter(|&i| i < self.config.workers)?;
        let FakeConfig { target, tick_ms, fail_every, fail_at, fail_terminal, panic_at, .. } = self.config;
        let spec = WorkerSpec::new(WorkerConfig { target, tick_ms, fail_every, fail_at, fail_terminal, panic_at });
        Some(WorkerSpec { restarts_max: self.config.restarts_max.unwrap_or(spec.restarts_max), ..spec })
    }

    /// A finished worker is done; an ended one counts on from the later of its start and its checkpoint.
    fn on_event(&mut self, _now: Time, event: WorkerEvent<'_, Counter>) {
        let target = self.config.target;
        let (name, reached) = match event {
            WorkerEvent::Online { .. } => return,
            WorkerEvent::Finished { name } => (name, target),
            WorkerEvent::Ended { name, checkpoint, .. } => (name, checkpoint.map_or(0, |c| c.counter)),
        };
        if let Some(counter) = name.index().and_then(|i| self.counters.get_mut(i as usize)) {
            *counter = (*counter).max(reached).min(target);
        }
    }

    fn verdict(&self) -> Verdict {
        if self.counters.iter().all(|&c| c >= self.config.target) {
            Verdict::Finished
        } else {
            Verdict::Running
        }
    }

    /// `"<steps>/<total> steps, <done>/<workers> workers done"`, a running worker counted at the later of where
    /// it started and what it last reported (`"<counter>/<target>"`).
    fn progress(&self, live: &dyn LiveProgress) -> String {
        let (target, workers) = (self.config.target, self.config.workers);
        let at = |i: usize, c: u64| live.count(&WorkerName::indexed(i as u32)).map_or(c, |n| n.max(c).min(target));
        let steps: u64 = self.counters.iter().enumerate().map(|(i, &c)| if c >= target { c } else { at(i, c) }).sum();
        let done = self.counters.iter().filter(|&&c| c >= target).count();
        format!("{steps}/{} steps, {done}/{workers} workers done", target.saturating_mul(u64::from(workers)))
    }

    fn check(&self) -> Result<(), String> {
        let (workers, target) = (self.config.workers, self.config.target);
        if self.counters.len() != workers as usize {
            return Err(format!("fake: {} counters for {workers} workers", self.counters.len()));
        }
        match self.counters.iter().position(|&c| c > target) {
            Some(i) => Err(format!("fake: w{i} at {} beyond the target {target}", self.counters[i])),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
