//! A job master's restarts of its workers after retryable failures: when each may start again, and when it gives
//! up. Pure: time in, decisions out.
//!
//! A worker that fails with a retryable error starts again after a backoff (1 s, doubling up to 30 s, ±20 %
//! jitter from a generator seeded per job-master incarnation, so that its draws move nothing else). Failures are
//! counted *in a row without progress*: a failure after the worker's checkpoint moved on since its previous
//! failure counts as the first again. So a worker that errs now and then but gets on finishes, while one that
//! fails at the same step every time (a poison input) gives up once it failed one more time than its limit of
//! restarts, and its job fails saying so. The counts live in the job master's memory: a new job-master incarnation
//! starts them over (bounded in turn by the job's own backoff).

use std::collections::BTreeMap;
use std::time::Duration;

use super::backoff::{BackoffDecision, BackoffPolicy, BackoffState};
use super::ids::WorkerName;
use super::rng::SplitMix64;
use super::time::Time;

/// How many times a worker is started again after failing in a row without progress, unless its job type says
/// otherwise.
pub const WORKER_RESTARTS_DEFAULT: u32 = 10;

/// The backoff between a worker's restarts.
pub fn worker_backoff() -> BackoffPolicy {
    BackoffPolicy {
        initial: Duration::from_secs(1),
        multiplier: 2.0,
        max: Duration::from_secs(30),
        jitter: 0.2,
        // Never reset by time: progress resets it (see the module documentation).
        reset_after: Duration::MAX,
        max_tries: u32::MAX,
    }
}

/// What a retryable failure leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartDecision {
    /// Start it again, not before then; `attempt` is its failures in a row without progress.
    RetryAt { at: Time, attempt: u32 },
    /// It failed `failures` times in a row without progress, one more than its limit: stop trying.
    GiveUp { failures: u32 },
}

#[derive(Clone, Debug, Default)]
struct Entry {
    backoff: BackoffState,
    /// Failures in a row without progress.
    in_a_row: u32,
    /// The checkpoint's sequence number at the last failure.
    seq: Option<u64>,
}

/// One job master's restart bookkeeping, by worker.
#[derive(Clone, Debug)]
pub struct Restarts {
    policy: BackoffPolicy,
    rng: SplitMix64,
    workers: BTreeMap<WorkerName, Entry>,
}

impl Restarts {
    /// Draws from `seed` (the runtime derives it from the job and the job master's epoch).
    pub fn new(seed: u64) -> Restarts {
        Restarts { policy: worker_backoff(), rng: SplitMix64::new(seed), workers: BTreeMap::new() }
    }

    /// Worker `name` failed retryably at `now`, its checkpoint at sequence number `seq` (none when it has none or
    /// it could not be read), with at most `max` restarts in a row without progress.
    pub fn on_retryable(&mut self, now: Time, name: &WorkerName, seq: Option<u64>, max: u32) -> RestartDecision {
        let e = self.workers.entry(name.clone()).or_default();
        let progressed = match (e.seq, seq) {
            (Some(before), Some(after)) => after > before,
            (None, Some(after)) => e.in_a_row > 0 && after > 0,
            (_, None) => false,
        };
        if progressed {
            *e = Entry::default();
        }
        e.in_a_row = e.in_a_row.saturating_add(1);
        e.seq = seq.or(e.seq);
        if e.in_a_row > max {
            return RestartDecision::GiveUp { failures: e.in_a_row };
        }
        match e.backoff.on_failure(now, &self.policy, &mut self.rng) {
            BackoffDecision::RetryAt(at) => RestartDecision::RetryAt { at, attempt: e.in_a_row },
            BackoffDecision::GiveUp { failures } => RestartDecision::GiveUp { failures },
        }
    }

    /// Failures in a row without progress of worker `name`.
    pub fn in_a_row(&self, name: &WorkerName) -> u32 {
        self.workers.get(name).map_or(0, |e| e.in_a_row)
    }

    /// Checks the invariants: every delay within the policy's bounds.
    pub fn check(&self) -> Result<(), String> {
        for (name, e) in &self.workers {
            e.backoff.check(&self.policy).map_err(|m| format!("restarts of {name}: {m}"))?;
        }
        Ok(())
    }
}

/// A seed for a job master's restarts: its job and its epoch, folded (FNV-1a), so two job masters draw apart.
pub fn seed_of(job: &str, epoch: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in job.bytes().chain(epoch.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(n: &str) -> WorkerName {
        WorkerName::parse(n).unwrap()
    }

    fn at(r: RestartDecision) -> Time {
        match r {
            RestartDecision::RetryAt { at, .. } => at,
            other => panic!("{other:?}"),
        }
    }

    /// The same step failing every time gives up after the limit; each wait doubles, within the jitter.
    #[test]
    fn failing_at_the_same_step_gives_up_one_failure_past_the_limit() {
        let mut r = Restarts::new(seed_of("j", 1));
        let mut now = Time::from_millis(0);
        let mut waits = vec![];
        for attempt in 1..=3 {
            let d = r.on_retryable(now, &w("w0"), Some(5), 3);
            assert!(matches!(d, RestartDecision::RetryAt { attempt: a, .. } if a == attempt), "{d:?}");
            waits.push(at(d).saturating_since(now));
            now = at(d);
        }
        assert_eq!(r.on_retryable(now, &w("w0"), Some(5), 3), RestartDecision::GiveUp { failures: 4 });
        for (i, wait) in waits.iter().enumerate() {
            let base = 1_000u64 << i;
            let ms = wait.as_millis() as u64;
            assert!(ms >= base * 8 / 10 && ms <= base * 12 / 10, "wait {i}: {ms} ms, base {base}");
        }
        r.check().unwrap();
    }

    /// A worker whose checkpoint moved on since its last failure starts counting again: erring now and then never
    /// gives up.
    #[test]
    fn a_failure_after_progress_counts_as_the_first() {
        let mut r = Restarts::new(seed_of("j", 1));
        let mut now = Time::from_millis(0);
        for seq in (7..=700).step_by(7) {
            let d = r.on_retryable(now, &w("w0"), Some(seq), 2);
            assert!(matches!(d, RestartDecision::RetryAt { attempt: 1, .. }), "seq {seq}: {d:?}");
            now = at(d);
        }
        // Workers count apart; one without a checkpoint never shows progress.
        assert!(matches!(r.on_retryable(now, &w("w1"), None, 1), RestartDecision::RetryAt { attempt: 1, .. }));
        assert_eq!(r.on_retryable(now, &w("w1"), None, 1), RestartDecision::GiveUp { failures: 2 });
        assert_eq!(r.in_a_row(&w("w0")), 1);
    }

    #[test]
    fn seeds_differ_by_job_and_epoch() {
        assert_ne!(seed_of("j", 1), seed_of("j", 2));
        assert_ne!(seed_of("j", 1), seed_of("k", 1));
        assert_eq!(seed_of("j", 1), seed_of("j", 1));
    }
}
