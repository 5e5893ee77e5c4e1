//! Design.md §6 backoff: restarts of a job are spaced by the backoff in force, and no path bypasses it.
//!
//! From the leaders' own reports: each loss that charged a job's backoff (`BackoffCharged`, reported once
//! written: the failures in a row, the delay drawn, when the job may start again), each start of a job master
//! (`JobMasterStarted`, once written), each pass's waiting jobs with when their backoff allows them (`Capacity`),
//! and each term's beginning (`ActingBegan`, at the instant its leader restored the jobs). Between a charge and
//! the job's next start the job waits on that charge, and every leader must hold it to exactly that delay: the
//! leader that charged it until the instant it named; a later leader (the charge was persisted with the job) for
//! the whole delay again from its takeover (design decision "Backoff": it cannot know how much of it passed).

use std::collections::BTreeMap;
use std::time::Duration;

use foreman::core::backoff::BackoffPolicy;
use foreman::core::ids::{Epoch, JobId, LeaderEpoch};
use foreman::core::invariants::{Id, Rule, Violation};
use foreman::core::time::Time;
use foreman::master::Observation;

use super::Events;
use crate::cluster::Seen;
use crate::harness::Clock;

/// How far two instants of one wait may differ: each master's clock counts whole milliseconds from its own start,
/// so one instant read through two clocks may differ by one.
const TOLERANCE: Duration = Duration::from_millis(2);

/// A charge the job still waits on.
#[derive(Clone, Debug)]
struct Waiting {
    /// The term that charged it, and the master leading it.
    term: LeaderEpoch,
    master: String,
    lost: Epoch,
    at: Time,
    failures: u32,
    delay: Duration,
    allowed: Time,
}

impl Waiting {
    /// When a leader of term `term` (begun at `began`) may start the job: the charging leader at the instant it
    /// named, a later one the whole delay after its takeover.
    fn required(&self, term: LeaderEpoch, began: Option<Time>) -> Time {
        match began {
            Some(began) if term > self.term => began + self.delay,
            _ => self.allowed,
        }
    }
}

/// What is known of a job's backoff history.
#[derive(Clone, Copy, Debug, Default)]
struct History {
    /// The failures in a row as last reported (by a charge or a start).
    failures: u32,
    /// When its last job master was started.
    started: Option<Time>,
}

/// Backoff (design.md §6), on every seed: every charge draws its delay within the policy's bounds for its failures
/// in a row ([`BackoffPolicy::delay_bounds`]) and names the instant that delay after it; the failures in a row only
/// grow, but for a reset after the job ran for the policy's `reset_after`; the job gives up exactly at `max_tries`
/// and never starts after; while a job waits on a charge, every pass lists it with exactly the instant its leader
/// must hold it to (the charging leader: the one it named; a later leader: its takeover plus the delay), and its
/// next start comes no earlier, with the same failures in a row; and no start comes before the instant its own
/// leader says the backoff allows. A job deleted (by the client) starts a new history. A pass that holds a job
/// longer than the charge says breaks rescheduling's bound instead ([`Rule::Reschedule`]: the backoff in force is
/// what the bound allows, and a job held past it is late, not early).
pub fn restarts_spaced(
    clock: &Clock,
    events: &Events,
    policy: &BackoffPolicy,
    clocks: &super::ClockSlack,
) -> Result<(), Violation> {
    // A leader counts a delay on its clock: the instants it names for one wait are off by what its clock's faults
    // allow (nothing without clock faults).
    let off_by_more = |a: Time, b: Time, delay: Duration| {
        let tolerance = TOLERANCE + clocks.off(delay);
        a.saturating_since(b) > tolerance || b.saturating_since(a) > tolerance
    };
    let mut term_of: BTreeMap<String, LeaderEpoch> = BTreeMap::new();
    let mut began: BTreeMap<LeaderEpoch, Time> = BTreeMap::new();
    let mut waiting: BTreeMap<JobId, Waiting> = BTreeMap::new();
    let mut history: BTreeMap<JobId, History> = BTreeMap::new();
    let reset_ok = |h: &History, at: Time| {
        h.started.is_some_and(|s| at.saturating_since(s) >= clocks.shortest(policy.reset_after))
    };
    for (_, node, seen) in events {
        match seen {
            Seen::Master(Observation::ActingBegan { epoch, at }) => {
                term_of.insert(node.clone(), *epoch);
                began.insert(*epoch, clock.at(*at));
            }
            Seen::JobDeleted { id } => {
                if let Ok(job) = JobId::parse(id) {
                    waiting.remove(&job);
                    history.remove(&job);
                }
            }
            Seen::Master(Observation::BackoffCharged { job, lost, failures, delay, allowed, at }) => {
                let (at, failures, delay) = (clock.at(*at), *failures, *delay);
                let term = term_of.get(node).copied().unwrap_or(LeaderEpoch::NONE);
                let ids =
                    || [Id::Job(job.to_string()), Id::Epoch(*lost), Id::Master(node.clone()), Id::LeaderEpoch(term)];
                let broken = |detail: String| Err(Violation::new(Rule::BackoffBound, at, detail).with(ids()));
                let h = history.entry(job.clone()).or_default();
                if failures <= h.failures && !(failures == 1 && reset_ok(h, at)) {
                    return broken(format!(
                        "{node} charged {job}'s backoff for the loss of epoch {} with {failures} failures in a row, \
                         after {} (fewer only after a reset, once it ran for {:?})",
                        lost.0, h.failures, policy.reset_after
                    ));
                }
                h.failures = failures;
                let Some(allowed) = allowed else {
                    if failures < policy.max_tries {
                        return broken(format!(
                            "{node} gave {job} up after {failures} failures in a row; it may try {} times",
                            policy.max_tries
                        ));
                    }
                    waiting.remove(job);
                    continue;
                };
                let allowed = clock.at(*allowed);
                let Some((lo, hi)) = policy.delay_bounds(failures) else {
                    return broken(format!(
                        "{node} delayed {job} after {failures} failures in a row: it gives up at {}",
                        policy.max_tries
                    ));
                };
                if delay + TOLERANCE < lo || delay > hi + TOLERANCE {
                    return broken(format!(
                        "{node} delayed {job} by {delay:?} after {failures} failures in a row; the policy draws \
                         within [{lo:?}, {hi:?}]"
                    ));
                }
                if off_by_more(allowed, at + delay, delay) {
                    return broken(format!(
                        "{node} charged {job} a delay of {delay:?} at {at} but allows it from {allowed}"
                    ));
                }
                let w = Waiting { term, master: node.clone(), lost: *lost, at, failures, delay, allowed };
                waiting.insert(job.clone(), w);
            }
            Seen::Master(Observation::Capacity(sample)) => {
                let (term, at) = (sample.epoch, clock.at(sample.at));
                let mut listed = vec![];
                for w in &sample.waiting {
                    listed.push(&w.job);
                    let Some(charge) = waiting.get(&w.job) else { continue };
                    if term < charge.term {
                        continue;
                    }
                    let required = charge.required(term, began.get(&term).copied());
                    let holds = w.allowed.map(|a| clock.at(a));
                    if holds.is_none_or(|h| off_by_more(h, required, charge.delay)) {
                        let shown = holds.map_or("no wait".to_owned(), |h| format!("{h}"));
                        let detail = format!(
                            "{node} (leader epoch {}) holds {} to {shown} after its pass at {at}; charged {:?} by {} \
                             (leader epoch {}) at {} for the loss of epoch {}, it must wait until {required}",
                            term.0, w.job, charge.delay, charge.master, charge.term.0, charge.at, charge.lost.0
                        );
                        // Too early bypasses the backoff; too late holds a restart past the backoff in force, the
                        // rescheduling bound's term.
                        let rule =
                            if holds.is_some_and(|h| h > required) { Rule::Reschedule } else { Rule::BackoffBound };
                        let ids = [Id::Job(w.job.to_string()), Id::Master(node.clone()), Id::LeaderEpoch(term)];
                        return Err(Violation::new(rule, at, detail).with(ids));
                    }
                }
                // A job this pass does not hold waiting has started, ended, or waits for its job master to check
                // in: it no longer waits on the charge.
                waiting.retain(|job, charge| listed.contains(&job) || term < charge.term);
            }
            Seen::Master(Observation::JobMasterStarted { job, epoch, restarts, failures, allowed, at, .. }) => {
                let (at, failures) = (clock.at(*at), *failures);
                let term = term_of.get(node).copied().unwrap_or(LeaderEpoch::NONE);
                let ids =
                    || [Id::Job(job.to_string()), Id::Epoch(*epoch), Id::Master(node.clone()), Id::LeaderEpoch(term)];
                let broken = |detail: String| Err(Violation::new(Rule::BackoffBound, at, detail).with(ids()));
                if let Some(allowed) = allowed.map(|a| clock.at(a)).filter(|a| *a > at) {
                    return broken(format!(
                        "{node} started {job} epoch {} at {at}, before {allowed}, when it said its backoff allowed it",
                        epoch.0
                    ));
                }
                if failures >= policy.max_tries {
                    return broken(format!(
                        "{node} started {job} epoch {} after {failures} failures in a row; it gives up at {}",
                        epoch.0, policy.max_tries
                    ));
                }
                if let Some(charge) = waiting.remove(job) {
                    let required = charge.required(term, began.get(&term).copied());
                    if at + TOLERANCE + clocks.off(charge.delay) < required {
                        return broken(format!(
                            "{node} (leader epoch {}) started {job} epoch {} at {at}; charged {:?} by {} (leader epoch \
                             {}) at {} for the loss of epoch {}, it had to wait until {required}",
                            term.0, epoch.0, charge.delay, charge.master, charge.term.0, charge.at, charge.lost.0
                        ));
                    }
                    if failures != charge.failures {
                        return broken(format!(
                            "{node} started {job} epoch {} with {failures} failures in a row; it was charged its \
                             {}th and has not run since",
                            epoch.0, charge.failures
                        ));
                    }
                }
                // A job's first start (no restart yet) begins its history.
                let h = history.entry(job.clone()).or_default();
                if *restarts == 0 {
                    *h = History::default();
                } else if failures < h.failures && !(failures == 0 && reset_ok(h, at)) {
                    return broken(format!(
                        "{node} started {job} epoch {} with {failures} failures in a row, after {} (fewer only after a \
                         reset, once it ran for {:?})",
                        epoch.0, h.failures, policy.reset_after
                    ));
                }
                *h = History { failures, started: Some(at) };
            }
            _ => {}
        }
    }
    Ok(())
}

/// A legal history passes; each illegal one fails with the backoff rule.
#[cfg(test)]
mod tests {
    use super::*;
    use foreman::master::CapacitySample;
    use foreman::master::WaitingSample;

    fn at(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(8),
            jitter: 0.0,
            reset_after: Duration::from_secs(60),
            max_tries: 4,
        }
    }

    fn job() -> JobId {
        JobId::parse("j").expect("a job id")
    }

    struct Story {
        clock: Clock,
        events: Vec<(Time, String, Seen)>,
    }

    impl Story {
        fn new() -> Story {
            Story { clock: Clock::start(), events: vec![] }
        }

        fn push(&mut self, ms: u64, node: &str, o: Observation) -> &mut Story {
            self.events.push((at(ms), node.to_owned(), Seen::Master(o)));
            self
        }

        fn began(&mut self, ms: u64, node: &str, epoch: u64) -> &mut Story {
            let o = Observation::ActingBegan { epoch: LeaderEpoch(epoch), at: self.clock.instant(at(ms)) };
            self.push(ms, node, o)
        }

        fn charged(&mut self, ms: u64, node: &str, lost: u64, failures: u32, delay: u64) -> &mut Story {
            let allowed = (delay > 0).then(|| self.clock.instant(at(ms + delay)));
            let (delay, at_) = (Duration::from_millis(delay), self.clock.instant(at(ms)));
            let o = Observation::BackoffCharged { job: job(), lost: Epoch(lost), failures, delay, allowed, at: at_ };
            self.push(ms, node, o)
        }

        fn started(
            &mut self,
            ms: u64,
            node: &str,
            epoch: u64,
            restarts: u32,
            failures: u32,
            allowed: Option<u64>,
        ) -> &mut Story {
            let allowed = allowed.map(|a| self.clock.instant(at(a)));
            let o = Observation::JobMasterStarted {
                job: job(),
                epoch: Epoch(epoch),
                restarts,
                failures,
                delay: Duration::ZERO,
                allowed,
                at: self.clock.instant(at(ms)),
            };
            self.push(ms, node, o)
        }

        /// A pass of `node` (leader epoch `epoch`) that leaves the job waiting until `allowed`.
        fn pass(&mut self, ms: u64, node: &str, epoch: u64, allowed: Option<u64>) -> &mut Story {
            let waiting = vec![WaitingSample {
                job: job(),
                cost: 1,
                allowed: allowed.map(|a| self.clock.instant(at(a))),
                startable: true,
                admits: None,
                admitted_share: None,
            }];
            let s = CapacitySample {
                epoch: LeaderEpoch(epoch),
                at: self.clock.instant(at(ms)),
                executors: vec![],
                reservations: vec![],
                suspecting: false,
                job_master_slots: 0,
                job_master_cap: 1,
                waiting,
            };
            self.push(ms, node, Observation::Capacity(s))
        }

        fn check(&self) -> Result<(), Violation> {
            restarts_spaced(&self.clock, &self.events, &policy(), &Default::default())
        }
    }

    fn broken_at(s: &Story) -> Option<(Rule, Time)> {
        s.check().err().map(|v| (v.rule, v.at))
    }

    /// m0 starts j, loses it twice (delays 1 s and 2 s, waiting out the first), is killed while j waits out the
    /// second; m1 takes over at 16 s and waits the whole 2 s again.
    fn legal() -> Story {
        let mut s = Story::new();
        s.began(0, "m0", 1).started(1_000, "m0", 1, 0, 0, None);
        s.charged(5_000, "m0", 1, 1, 1_000).pass(5_500, "m0", 1, Some(6_000));
        s.started(6_000, "m0", 2, 1, 1, Some(6_000)).charged(10_000, "m0", 2, 2, 2_000);
        s.pass(10_500, "m0", 1, Some(12_000));
        s.began(16_000, "m1", 2).pass(16_000, "m1", 2, Some(18_000)).started(18_000, "m1", 3, 2, 2, Some(18_000));
        s
    }

    #[test]
    fn a_history_that_waits_out_every_delay_passes() {
        assert_eq!(legal().check(), Ok(()));
    }

    #[test]
    fn a_new_leader_that_does_not_wait_the_persisted_delay_again_is_caught() {
        // It holds the job to nothing after its first pass (the planted bug), or to what was left of the delay.
        for held in [None, Some(12_000)] {
            let mut s = legal();
            s.events.truncate(8);
            s.pass(16_000, "m1", 2, held);
            let v = s.check().unwrap_err();
            assert_eq!(
                (v.class(), v.rule, v.at),
                (foreman::core::invariants::Class::Safety, Rule::BackoffBound, at(16_000))
            );
            assert!(v.detail.contains("it must wait until 18.000s"), "{v}");
        }
        // ...or starts it at once, with no pass between.
        let mut s = legal();
        s.events.truncate(8);
        s.started(16_000, "m1", 3, 2, 2, None);
        assert_eq!(broken_at(&s), Some((Rule::BackoffBound, at(16_000))));
    }

    #[test]
    fn a_restart_before_the_delay_or_against_the_policy_is_caught() {
        // Started 200 ms early by the leader that charged it.
        let mut s = Story::new();
        s.began(0, "m0", 1).started(1_000, "m0", 1, 0, 0, None).charged(5_000, "m0", 1, 1, 1_000);
        s.started(5_800, "m0", 2, 1, 1, Some(6_000));
        let v = s.check().unwrap_err();
        assert_eq!((v.rule, v.at), (Rule::BackoffBound, at(5_800)));
        // Started before what the leader itself said its backoff allowed (no charge seen).
        let mut s = Story::new();
        s.began(0, "m0", 1).started(1_000, "m0", 1, 0, 0, Some(1_500));
        assert_eq!(broken_at(&s), Some((Rule::BackoffBound, at(1_000))));
        // A delay outside the policy's bounds for the first failure (1 s, no jitter).
        let mut s = Story::new();
        s.began(0, "m0", 1).charged(5_000, "m0", 1, 1, 3_000);
        assert!(s.check().unwrap_err().detail.contains("within [1s, 1s]"));
        // The failures in a row did not grow, and no healthy period reset them.
        let mut s = Story::new();
        s.began(0, "m0", 1).started(1_000, "m0", 1, 0, 0, None).charged(5_000, "m0", 1, 1, 1_000);
        s.started(6_000, "m0", 2, 1, 1, Some(6_000)).charged(10_000, "m0", 2, 1, 1_000);
        assert_eq!(broken_at(&s), Some((Rule::BackoffBound, at(10_000))));
        // ...but after it ran for the reset period they start over.
        let mut s = Story::new();
        s.began(0, "m0", 1).started(1_000, "m0", 1, 0, 0, None).charged(5_000, "m0", 1, 1, 1_000);
        s.started(6_000, "m0", 2, 1, 1, Some(6_000)).charged(66_000, "m0", 2, 1, 1_000);
        assert_eq!(s.check(), Ok(()));
        // A pass that holds the job to an earlier instant than the one charged; to a later one, it is late.
        let mut s = Story::new();
        s.began(0, "m0", 1).charged(5_000, "m0", 1, 1, 1_000).pass(5_500, "m0", 1, Some(5_900));
        assert_eq!(broken_at(&s), Some((Rule::BackoffBound, at(5_500))));
        let mut s = Story::new();
        s.began(0, "m0", 1).charged(5_000, "m0", 1, 1, 1_000).pass(5_500, "m0", 1, Some(9_000));
        assert_eq!(broken_at(&s), Some((Rule::Reschedule, at(5_500))));
    }

    #[test]
    fn giving_up_comes_exactly_at_the_configured_tries() {
        let mut s = Story::new();
        s.began(0, "m0", 1).charged(1_000, "m0", 1, 1, 1_000).charged(3_000, "m0", 2, 2, 2_000);
        s.charged(6_000, "m0", 3, 3, 4_000);
        let mut early = Story { clock: s.clock.clone(), events: s.events.clone() };
        s.charged(11_000, "m0", 4, 4, 0);
        assert_eq!(s.check(), Ok(()));
        // Too late: a fourth delay instead of giving up, or a start after giving up.
        let mut late = Story { clock: s.clock.clone(), events: s.events[..4].to_vec() };
        late.charged(11_000, "m0", 4, 4, 8_000);
        assert_eq!(broken_at(&late), Some((Rule::BackoffBound, at(11_000))));
        s.started(20_000, "m0", 5, 4, 4, None);
        assert_eq!(broken_at(&s), Some((Rule::BackoffBound, at(20_000))));
        // Too early: gave up at the third.
        early.events.truncate(3);
        early.charged(6_000, "m0", 3, 3, 0);
        assert_eq!(broken_at(&early), Some((Rule::BackoffBound, at(6_000))));
    }

    #[test]
    fn a_deleted_job_starts_a_new_history() {
        let mut s = legal();
        s.events.push((at(20_000), "client".into(), Seen::JobDeleted { id: "j".into() }));
        s.started(21_000, "m1", 4, 0, 0, None).charged(25_000, "m1", 4, 1, 1_000);
        assert_eq!(s.check(), Ok(()));
    }
}
