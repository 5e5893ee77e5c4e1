//! `checksum`, a job type as a user writes one (docs/job-types.md walks through it): N workers each fold their
//! share of a seeded, generated input into a checksum, and the job's output is the sum of theirs, exact whatever
//! fails on the way: every item counted once (each worker's sum is in the job's store, under `sums/w<i>`). Config: `{"workers": N, "items": M, "seed": S}`, optionally
//! `"batch"` (items per step, default 100) and `"tick_ms"` (a pause before each step, default 0).

use std::collections::BTreeMap;

use foreman::framework::api::*;
use serde::{Deserialize, Serialize};

/// The job's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub workers: u32,
    pub items: u64,
    pub seed: u64,
    #[serde(default = "batch_default")]
    pub batch: u64,
    #[serde(default)]
    pub tick_ms: u64,
}

fn batch_default() -> u64 {
    100
}

/// What worker `wI` is told: its share of the input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub seed: u64,
    pub start: u64,
    pub len: u64,
    pub batch: u64,
    pub tick_ms: u64,
}

/// A worker's checkpoint: how many items of its share it has folded, and their sum so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Folded {
    pub offset: u64,
    pub sum: u64,
}

/// Item `k` of the input generated from `seed` (SplitMix64's mix: any item computed alone, in any order).
pub fn item(seed: u64, k: u64) -> u64 {
    let mut z = seed.wrapping_add(k.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The checksum of items `from..to`: their sum, wrapping. A lost or repeated item changes it.
pub fn checksum(seed: u64, from: u64, to: u64) -> u64 {
    (from..to).fold(0u64, |sum, k| sum.wrapping_add(item(seed, k)))
}

impl Config {
    /// Worker `i`'s share of the items: `i*M/N .. (i+1)*M/N`.
    pub fn share(&self, i: u32) -> Share {
        let (n, m) = (u64::from(self.workers), self.items);
        let start = m * u64::from(i) / n;
        let end = m * (u64::from(i) + 1) / n;
        Share { seed: self.seed, start, len: end - start, batch: self.batch, tick_ms: self.tick_ms }
    }
}

/// The job type: its name, configuration, and its workers' work.
pub struct Checksum;

impl JobType for Checksum {
    const NAME: &'static str = "checksum";
    type Config = Config;
    type WorkerConfig = Share;
    type Checkpoint = Folded;
    type Logic = ChecksumLogic;

    fn parse_config(config: &[u8]) -> Result<Config, ConfigProblem> {
        let expected = r#"{"workers": N, "items": M, "seed": S}"#;
        let c: Config = serde_json::from_slice(config).map_err(|e| ConfigProblem::of_json(&e, expected))?;
        let within = ConfigProblem::within;
        within("workers", c.workers.into(), 1, 64)?;
        within("items", c.items, 0, 1_000_000_000)?;
        within("batch", c.batch, 1, 100_000)?;
        within("tick_ms", c.tick_ms, 0, 60_000)?;
        Ok(c)
    }

    /// Folds the share one batch at a time from where the last checkpoint left it. A batch counts once it is in
    /// an acknowledged checkpoint: the state saved is exactly once, whatever restarts.
    async fn work(&self, share: Share, ctx: &mut WorkerCtx<Folded>) -> Result<WorkerEnd, Interrupted> {
        let mut at = ctx.restored().copied().unwrap_or_default();
        loop {
            ctx.progress(format!("{}/{}", at.offset, share.len));
            if ctx.is_canceled() {
                return Ok(WorkerEnd::Canceled);
            }
            if at.offset >= share.len {
                return Ok(WorkerEnd::Finished);
            }
            // Between steps only: everything done so far is in the last checkpoint.
            if ctx.is_draining() {
                return Ok(WorkerEnd::Drained);
            }
            if ctx.pause(std::time::Duration::from_millis(share.tick_ms)).await == Paused::Interrupted {
                continue;
            }
            let (from, to) = (share.start + at.offset, share.start + (at.offset + share.batch).min(share.len));
            let next = Folded { offset: to - share.start, sum: at.sum.wrapping_add(checksum(share.seed, from, to)) };
            // The job's output for its readers, the share's sum in the job store: put before the checkpoint that
            // completes the share (once that is written, no incarnation runs the share again to put it).
            let key = format!("sums/{}", ctx.name());
            if next.offset >= share.len && ctx.store().put(&key, next.sum.to_string().as_bytes()).await? != Saved::Yes {
                continue;
            }
            // Unknown: it may have landed; the next turn writes the same state again.
            if ctx.try_save(&next).await? == Saved::Yes {
                at = next;
            }
        }
    }
}

/// The job master's decisions: every worker not known to be done is wanted; the job finishes when all are.
pub struct ChecksumLogic {
    config: Config,
    /// Per worker: items folded as last known (from a checkpoint), or `None` once it finished.
    left: Vec<Option<u64>>,
}

impl ChecksumLogic {
    fn index(&self, name: &WorkerName) -> Option<usize> {
        name.index().map(|i| i as usize).filter(|&i| i < self.left.len())
    }

    /// Worker `i` has folded at least `folded` items: done once that is its whole share.
    fn settle(&mut self, i: usize, folded: u64) {
        let len = self.config.share(i as u32).len;
        self.left[i] = self.left[i].map(|was| was.max(folded)).filter(|&f| f < len);
    }
}

impl JobLogic for ChecksumLogic {
    type Config = Config;
    type WorkerConfig = Share;
    type Checkpoint = Folded;

    fn recover(config: Config, checkpoints: &BTreeMap<WorkerName, Folded>) -> ChecksumLogic {
        let mut logic = ChecksumLogic { left: vec![Some(0); config.workers as usize], config };
        for i in 0..logic.left.len() {
            logic.settle(i, checkpoints.get(&WorkerName::indexed(i as u32)).map_or(0, |c| c.offset));
        }
        logic
    }

    fn wanted(&self) -> Vec<WorkerName> {
        (0..self.left.len()).filter(|&i| self.left[i].is_some()).map(|i| WorkerName::indexed(i as u32)).collect()
    }

    fn worker(&self, name: &WorkerName) -> Option<WorkerSpec<Share>> {
        self.index(name).map(|i| WorkerSpec::new(self.config.share(i as u32)))
    }

    /// A finished worker is done; one that ended otherwise goes on from its last checkpoint.
    fn on_event(&mut self, _now: Time, event: WorkerEvent<'_, Folded>) {
        let (name, folded) = match event {
            WorkerEvent::Online { .. } => return,
            WorkerEvent::Finished { name } => (name, u64::MAX),
            WorkerEvent::Ended { name, checkpoint, .. } => (name, checkpoint.map_or(0, |c| c.offset)),
        };
        if let Some(i) = self.index(name) {
            self.settle(i, folded);
        }
    }

    fn verdict(&self) -> Verdict {
        if self.left.iter().all(Option::is_none) {
            Verdict::Finished
        } else {
            Verdict::Running
        }
    }

    /// `"<folded>/<items> items, <done>/<workers> workers done"`, a live worker at what it last reported.
    fn progress(&self, live: &dyn LiveProgress) -> String {
        let (mut folded, mut done) = (0, 0);
        for (i, left) in self.left.iter().enumerate() {
            let len = self.config.share(i as u32).len;
            let reported = || live.count(&WorkerName::indexed(i as u32));
            folded += match left {
                None => len,
                Some(f) => reported().map_or(*f, |r| r.max(*f).min(len)),
            };
            done += u32::from(left.is_none());
        }
        format!("{folded}/{} items, {done}/{} workers done", self.config.items, self.config.workers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(workers: u32, items: u64) -> Config {
        Config { workers, items, seed: 7, batch: 10, tick_ms: 0 }
    }

    #[test]
    fn shares_cover_the_input_once_and_their_sums_add_up() {
        for (workers, items) in [(1, 0), (3, 2), (4, 1000), (7, 1001)] {
            let c = config(workers, items);
            let shares: Vec<Share> = (0..workers).map(|i| c.share(i)).collect();
            assert_eq!(shares.iter().map(|s| s.len).sum::<u64>(), items);
            assert!(shares.windows(2).all(|w| w[0].start + w[0].len == w[1].start));
            let total = shares.iter().fold(0u64, |t, s| t.wrapping_add(checksum(7, s.start, s.start + s.len)));
            assert_eq!(total, checksum(7, 0, items), "{workers} workers, {items} items");
        }
    }

    #[test]
    fn the_logic_wants_unfinished_workers_from_their_checkpoints() {
        let folded = |offset| Folded { offset, sum: 0 };
        let (w0, w1, w2) = (WorkerName::indexed(0), WorkerName::indexed(1), WorkerName::indexed(2));
        // Shares of 3 workers over 30 items: 10 each. w1 checkpointed all of its share: done.
        let mut logic =
            ChecksumLogic::recover(config(3, 30), &[(w0.clone(), folded(4)), (w1.clone(), folded(10))].into());
        assert_eq!(logic.wanted(), [w0.clone(), w2.clone()]);
        assert_eq!(logic.worker(&w2).map(|s| s.config.start), Some(20));
        assert_eq!(logic.progress(&BTreeMap::from([(w2.clone(), "6/10".to_owned())])), "20/30 items, 1/3 workers done");
        // Lost with a checkpoint behind what the logic knew: it goes on from the later.
        let lost = EndedWhy::Lost(LostReason::Silent);
        logic.on_event(Time::ZERO, WorkerEvent::Ended { name: &w0, why: lost, checkpoint: Some(&folded(2)) });
        assert_eq!(logic.left[0], Some(4));
        logic.on_event(
            Time::ZERO,
            WorkerEvent::Ended { name: &w0, why: EndedWhy::Stopped, checkpoint: Some(&folded(10)) },
        );
        logic.on_event(Time::ZERO, WorkerEvent::Finished { name: &WorkerName::parse("w02").unwrap() });
        assert_eq!((logic.wanted(), logic.verdict()), (vec![w2.clone()], Verdict::Running));
        logic.on_event(Time::ZERO, WorkerEvent::Finished { name: &w2 });
        assert_eq!((logic.wanted(), logic.verdict()), (vec![], Verdict::Finished));
        // A job of no items is finished from the start.
        assert_eq!(ChecksumLogic::recover(config(2, 0), &BTreeMap::new()).verdict(), Verdict::Finished);
    }

    #[test]
    fn configs_are_refused_naming_the_field() {
        let field = |text: &str| Checksum::parse_config(text.as_bytes()).err().map(|e| e.field);
        assert_eq!(field(r#"{"workers": 2, "items": 10, "seed": 1}"#), None);
        assert_eq!(field(r#"{"workers": 0, "items": 10, "seed": 1}"#).as_deref(), Some("config.workers"));
        assert_eq!(field(r#"{"workers": 2, "items": 10, "seed": 1, "batch": 0}"#).as_deref(), Some("config.batch"));
        assert_eq!(field(r#"{"workers": 2, "items": 10}"#).as_deref(), Some("config.seed"));
        assert_eq!(field(r#"{"workers": "two", "items": 10, "seed": 1}"#).as_deref(), Some("config"));
    }
}
