//! Shrinking a failing fault plan to a small one that still fails the same way: the candidate plans, and the
//! search over them, pure (no simulation here: whoever shrinks says whether a candidate still fails, by running
//! the seed with it).
//!
//! The search, in rounds until a round changes nothing or the budget of runs is spent:
//! 1. **drop steps**, delta-debugging style: the plan of no step first (a failure that needs no fault of the plan,
//!    one of the fault points' or the workload's, says so at once), then chunks of half the steps, a quarter, ...,
//!    then single steps, again and again until no single step can go;
//! 2. **shorten** each step: halve its `lasts` while the plan still fails, down to [`LASTS_FLOOR`];
//! 3. **move** each step later: to the instant of a later step (the nearest that still fails), then halve the
//!    time left between its `at` and the end of the fault phase while the plan still fails, until less than
//!    [`MOVE_LEAST`] is left;
//! 4. while more than [`SUBSET_TARGET`] steps are left, **move** each step earlier, to the instant of the nearest
//!    earlier step, if the plan still fails so (a plan never tried before: no two moves undo each other).
//!
//! When a round changes nothing and more than [`SUBSET_TARGET`] steps are left: the subsets of at most that many
//! steps of the plan it ended with, then (once) those of the plan it was given, smallest first; rounds again from
//! the first that fails.
//!
//! Invariants it keeps:
//! - **What it returns failed**: the plan it was given (which the caller saw fail), or a candidate the predicate
//!   said fails; never one it did not run.
//! - **At most `budget` runs**: a candidate is run only while fewer than `budget` ran, and a candidate already run
//!   is not run again (its verdict is remembered by its text).
//! - **Every candidate is a plan of the same seed**: the given plan's steps, fewer, shorter, later, or earlier to
//!   another step's instant, each still beginning within the fault phase, in the order they begin (so its text
//!   reads back as it).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::faults::{Plan, Step};

/// The shortest a step is shortened to: the shortest a drawn step lasts.
pub const LASTS_FLOOR: Duration = Duration::from_millis(500);

/// The most steps the shrink aims for: it tries every subset of at most this many steps of a plan it could not
/// shrink below it by single drops.
pub const SUBSET_TARGET: usize = 3;

/// Subsets are tried only of plans of at most this many steps (8 steps: 92 subsets).
pub const SUBSET_MOST: usize = 8;

/// Every subset of `size` of `0..n`, in lexicographic order.
fn subsets(n: usize, size: usize) -> Vec<Vec<usize>> {
    let mut all = vec![];
    if size > n {
        return all;
    }
    let mut pick: Vec<usize> = (0..size).collect();
    loop {
        all.push(pick.clone());
        // The rightmost index that can still move right, moved, and the ones after it right behind it.
        let Some(i) = (0..size).rev().find(|&i| pick[i] < n - size + i) else { return all };
        pick[i] += 1;
        for j in i + 1..size {
            pick[j] = pick[j - 1] + 1;
        }
    }
}

/// A step is moved later only while more than this is left of the fault phase after it.
pub const MOVE_LEAST: Duration = Duration::from_secs(1);

/// The small subsets of the plan the shrink was given are tried only of plans of at most this many steps (10 steps:
/// 175 subsets of at most [`SUBSET_TARGET`]).
pub const ORIGINAL_SUBSET_MOST: usize = 10;

/// What a shrink found: the smallest failing plan, from how many steps, in how many runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Shrunk {
    pub plan: Plan,
    /// The steps of the plan it started from.
    pub from_steps: usize,
    /// The candidates it ran.
    pub runs: usize,
    /// The budget it had; `runs == budget` when it stopped for want of runs (it may shrink further).
    pub budget: usize,
    /// Whether it stopped for want of runs, with candidates left to try.
    pub budget_reached: bool,
}

impl fmt::Display for Shrunk {
    /// `5 steps → 2 steps in 37 runs`, and when the budget stopped it, that it did.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (from, to) = (self.from_steps, self.plan.steps.len());
        write!(f, "{} → {} in {}", count(from, "step"), count(to, "step"), count(self.runs, "run"))?;
        if self.budget_reached {
            write!(f, " (the budget of {} runs reached: it may shrink further)", self.budget)?;
        }
        Ok(())
    }
}

/// `1 step`, `2 steps`.
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Shrinks `plan`, which failed, within a fault phase of `phase`: at most `budget` candidates are given to `fails`,
/// which runs one and says whether it still fails the same way.
pub fn shrink(plan: &Plan, phase: Duration, budget: usize, fails: impl FnMut(&Plan) -> bool) -> Shrunk {
    let mut s = Shrinker {
        steps: plan.steps.clone(),
        original: plan.steps.clone(),
        original_tried: false,
        phase,
        budget,
        runs: 0,
        seen: BTreeMap::new(),
        fails,
    };
    s.seen.insert(plan.to_string(), true);
    let budget_reached = s.search().is_none();
    Shrunk { plan: ordered(&s.steps), from_steps: plan.steps.len(), runs: s.runs, budget, budget_reached }
}

/// The plan of `steps`, in the order they begin (at equal instants, in the order given).
fn ordered(steps: &[Step]) -> Plan {
    let mut steps = steps.to_vec();
    steps.sort_by_key(|s| s.at);
    Plan { steps }
}

/// Whole milliseconds, down: a shrunk plan's durations read as the drawn ones do.
fn whole_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

struct Shrinker<F> {
    /// The smallest failing plan so far, its steps in a fixed order (the candidates sort them).
    steps: Vec<Step>,
    /// The plan it was given, and whether its small subsets were tried ([`Shrinker::original_subset`]).
    original: Vec<Step>,
    original_tried: bool,
    phase: Duration,
    budget: usize,
    runs: usize,
    /// Every plan run (and the given one), by its text: whether it failed.
    seen: BTreeMap<String, bool>,
    fails: F,
}

/// `None`: the budget is spent.
type Spent<T> = Option<T>;

impl<F: FnMut(&Plan) -> bool> Shrinker<F> {
    /// Rounds of drop, shorten, move later, move earlier, until one changes nothing; then, if more than
    /// [`SUBSET_TARGET`] steps are left of a plan of at most [`SUBSET_MOST`], the subsets of at most
    /// [`SUBSET_TARGET`] of them (smallest first), then once those of the given plan ([`Shrinker::original_subset`]),
    /// and rounds again from the first that fails.
    fn search(&mut self) -> Spent<()> {
        loop {
            let before = self.steps.clone();
            self.drop_steps()?;
            self.shorten()?;
            self.move_later()?;
            self.move_earlier()?;
            if self.steps == before && !self.small_subset()? && !self.original_subset()? {
                return Some(());
            }
        }
    }

    /// A local minimum of single drops is not the smallest failing plan: dropping one fault moves the timing of
    /// everything after it (the network's draws, the order of events), so a failure that needs three of five
    /// faults may need a fourth or fifth to keep its timing while single drops are tried, and fail again once two
    /// go at once (seeds of the planted bugs stuck at 5 steps after the late and clock faults came). Whether a
    /// subset of at most [`SUBSET_TARGET`] steps still failed (then it is the plan).
    fn small_subset(&mut self) -> Spent<bool> {
        let n = self.steps.len();
        if n <= SUBSET_TARGET || n > SUBSET_MOST {
            return Some(false);
        }
        for size in 1..=SUBSET_TARGET {
            for pick in subsets(n, size) {
                let candidate: Vec<Step> = pick.iter().map(|&i| self.steps[i].clone()).collect();
                if self.attempt(candidate)? {
                    return Some(true);
                }
            }
        }
        Some(false)
    }

    /// Whether a subset of at most [`SUBSET_TARGET`] steps of the plan it was given failed (then it is the plan),
    /// tried once, when the search is stuck above that many steps, for a given plan of at most
    /// [`ORIGINAL_SUBSET_MOST`] steps. The drops slip: the first chunk dropped that still fails may fail by another
    /// story than the given plan's, one that needs more faults (a leader cut from the executors and killed while
    /// they are declared offline fails the backoff rule in two steps; the drops kept five others that fail it
    /// later by the luck of their timing), and the subsets of the plan it ends with never see the steps it dropped.
    fn original_subset(&mut self) -> Spent<bool> {
        let n = self.original.len();
        if self.original_tried || self.steps.len() <= SUBSET_TARGET || n > ORIGINAL_SUBSET_MOST {
            return Some(false);
        }
        self.original_tried = true;
        for size in 1..=SUBSET_TARGET.min(n) {
            for pick in subsets(n, size) {
                let candidate: Vec<Step> = pick.iter().map(|&i| self.original[i].clone()).collect();
                if self.attempt(candidate)? {
                    return Some(true);
                }
            }
        }
        Some(false)
    }

    /// Runs `candidate` (unless run before) and keeps it if it fails: whether it did.
    fn attempt(&mut self, candidate: Vec<Step>) -> Spent<bool> {
        let text = ordered(&candidate).to_string();
        let failed = match self.seen.get(&text) {
            Some(&failed) => failed,
            None => {
                if self.runs >= self.budget {
                    return None;
                }
                self.runs += 1;
                let failed = (self.fails)(&ordered(&candidate));
                self.seen.insert(text, failed);
                failed
            }
        };
        if failed {
            self.steps = candidate;
        }
        Some(failed)
    }

    fn drop_steps(&mut self) -> Spent<()> {
        if self.steps.is_empty() || self.attempt(vec![])? {
            return Some(());
        }
        let mut chunk = self.steps.len().div_ceil(2);
        loop {
            let mut dropped = false;
            let mut i = 0;
            while i < self.steps.len() {
                let mut candidate = self.steps.clone();
                candidate.drain(i..(i + chunk).min(self.steps.len()));
                if self.attempt(candidate)? {
                    dropped = true;
                } else {
                    i += chunk;
                }
            }
            if chunk > 1 {
                chunk = chunk.div_ceil(2);
            } else if !dropped {
                return Some(());
            }
        }
    }

    fn shorten(&mut self) -> Spent<()> {
        for k in 0..self.steps.len() {
            while self.steps[k].lasts > LASTS_FLOOR {
                let mut candidate = self.steps.clone();
                candidate[k].lasts = whole_ms(self.steps[k].lasts / 2).max(LASTS_FLOOR);
                if !self.attempt(candidate)? {
                    break;
                }
            }
        }
        Some(())
    }

    /// Runs `candidate` unless it ran before (or is the plan it was given), and keeps it if it fails: whether it
    /// did. For the moves that make a plan no smaller: taking a plan seen before would let two moves undo each
    /// other for ever, each a plan already known to fail.
    fn attempt_new(&mut self, candidate: Vec<Step>) -> Spent<bool> {
        if self.seen.contains_key(&ordered(&candidate).to_string()) {
            return Some(false);
        }
        self.attempt(candidate)
    }

    /// Each step moved earlier, to the instant of the nearest earlier step, if the plan still fails so (while it is
    /// above [`SUBSET_TARGET`] steps): a step that must coincide with an earlier one (two executors killed as a leader
    /// takes over) then holds by itself, and the steps that bought the luck of a later timing may go.
    fn move_earlier(&mut self) -> Spent<()> {
        for k in 0..self.steps.len() {
            if self.steps.len() <= SUBSET_TARGET {
                return Some(());
            }
            let at = self.steps[k].at;
            if let Some(earlier) = self.steps.iter().map(|s| s.at).filter(|e| *e < at).max() {
                let mut candidate = self.steps.clone();
                candidate[k].at = earlier;
                self.attempt_new(candidate)?;
            }
        }
        Some(())
    }

    fn move_later(&mut self) -> Spent<()> {
        for k in 0..self.steps.len() {
            // To the instant of a later step first, the nearest first: a failure that needs two faults at about
            // the same time (two executors due offline in one check) then holds without the luck of the timing
            // that met it, and may no longer need the faults that bought that luck.
            let mut later: Vec<Duration> =
                self.steps.iter().map(|s| s.at).filter(|at| *at > self.steps[k].at).collect();
            later.sort();
            later.dedup();
            for at in later {
                let mut candidate = self.steps.clone();
                candidate[k].at = at;
                if self.attempt(candidate)? {
                    break;
                }
            }
            while self.phase.saturating_sub(self.steps[k].at) > MOVE_LEAST {
                let mut candidate = self.steps.clone();
                let left = self.phase - self.steps[k].at;
                candidate[k].at = whole_ms(self.steps[k].at + left / 2);
                if !self.attempt(candidate)? {
                    break;
                }
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use foreman::core::rng::{Rng, SplitMix64};

    use super::*;
    use crate::faults::{Fault, Scope};

    const PHASE: Duration = Duration::from_secs(60);

    fn scope() -> Scope {
        Scope {
            masters: 3,
            executors: 6,
            offline_ttl: Duration::from_secs(7),
            lease_ttl: Duration::from_secs(5),
            worker_offline_ttl: Duration::from_secs(12),
            phase: PHASE,
            clocks: foreman::core::timing::ClockTolerance { rate: 0.0, jump: Duration::ZERO },
        }
    }

    fn plan(text: &str) -> Plan {
        text.parse().expect("a plan")
    }

    /// Whether `plan` holds a step of `fault`.
    fn has(plan: &Plan, fault: &Fault) -> bool {
        plan.steps.iter().any(|s| s.fault == *fault)
    }

    /// A failure that holds for all five steps or for exactly three of them, and for no four: single drops are
    /// stuck at five, the subsets find the three.
    #[test]
    fn a_plan_stuck_at_single_drops_shrinks_through_its_subsets() {
        let five = plan(
            "2s kill-leader for 3s; 4s kill-executor(1) for 3s; 6s kill-executor(2) for 3s; \
             8s kill-executor(3) for 3s; 10s kill-executor(4) for 3s",
        );
        let three = [Fault::KillLeader, Fault::KillExecutor(2), Fault::KillExecutor(4)];
        let s = shrink(&five, PHASE, 500, |p| {
            let kinds: Vec<&Fault> = p.steps.iter().map(|s| &s.fault).collect();
            p.steps.len() == 5 || (p.steps.len() == 3 && three.iter().all(|f| kinds.contains(&f)))
        });
        assert_eq!(s.plan.steps.len(), 3, "{s}: {}", s.plan);
        assert!(three.iter().all(|f| has(&s.plan, f)), "{}", s.plan);
        assert_eq!(subsets(4, 2).len(), 6);
        assert_eq!(subsets(3, 3), vec![vec![0, 1, 2]]);
        assert!(subsets(2, 3).is_empty());
    }

    /// The drops slip to another story: without the first half of the plan it still fails, by four steps that all
    /// must stay, and the two steps of the given plan's own story are gone. The subsets of the given plan find
    /// them.
    #[test]
    fn a_plan_whose_drops_slip_to_another_story_shrinks_through_the_given_plans_subsets() {
        let eight = plan(
            "2s kill-leader for 3s; 4s kill-executor(1) for 3s; 6s kill-executor(2) for 3s; 8s kill-executor(3) for \
             3s; 10s kill-executor(4) for 3s; 12s kill-executor(5) for 3s; 14s kill-executor(6) for 3s; 16s \
             kill-executor(7) for 3s",
        );
        let story = [Fault::KillLeader, Fault::KillExecutor(5)];
        let luck = [Fault::KillExecutor(4), Fault::KillExecutor(5), Fault::KillExecutor(6), Fault::KillExecutor(7)];
        let s = shrink(&eight, PHASE, 500, |p| story.iter().all(|f| has(p, f)) || luck.iter().all(|f| has(p, f)));
        assert_eq!(s.plan.steps.len(), 2, "{s}: {}", s.plan);
        assert!(story.iter().all(|f| has(&s.plan, f)), "{}", s.plan);
        assert!(!s.budget_reached, "{s}");
        // Without the given plan's subsets the search ends on the four steps of luck.
        let mut stuck = Shrinker {
            steps: eight.steps.clone(),
            original: eight.steps.clone(),
            original_tried: true,
            phase: PHASE,
            budget: 500,
            runs: 0,
            seen: BTreeMap::new(),
            fails: |p: &Plan| story.iter().all(|f| has(p, f)) || luck.iter().all(|f| has(p, f)),
        };
        assert_eq!(stuck.search(), Some(()));
        assert_eq!(stuck.steps.len(), 4, "{}", ordered(&stuck.steps));
    }

    /// Two kills fail the run when they coincide early (or with the luck of their given timing and two other
    /// faults): moving the later kill to the earlier one's instant lets the luck go.
    #[test]
    fn a_step_moved_earlier_to_another_steps_instant_lets_the_luck_go() {
        let original = plan(
            "10s kill-executor(1) for 3s; 20s kill-executor(2) for 3s; 25s latency(100ms) for 5s; 30s loss(0.01) for \
             2s",
        );
        let fails = |p: &Plan| {
            let at = |f: &Fault| p.steps.iter().find(|s| s.fault == *f).map(|s| s.at);
            let (Some(a), Some(b)) = (at(&Fault::KillExecutor(1)), at(&Fault::KillExecutor(2))) else { return false };
            let luck = at(&Fault::Latency { max_ms: 100 }).is_some() && at(&Fault::Loss { rate: 0.01 }).is_some();
            (a == b && a <= Duration::from_secs(12))
                || (luck && a == Duration::from_secs(10) && b == Duration::from_secs(20))
        };
        let shrunk = shrink(&original, PHASE, 150, fails);
        assert_eq!(shrunk.plan.to_string(), "10s kill-executor(1) for 0.5s; 10s kill-executor(2) for 0.5s", "{shrunk}");
        assert!(!shrunk.budget_reached, "{shrunk}");
    }

    #[test]
    fn it_shrinks_to_the_culprit_steps() {
        let original = plan(
            "2.5s latency(100ms) for 9s; 4.1s kill-leader for 12.5s; 9.02s cut-executor-from-masters(2, one-way) for \
             3s; 11s pause-executor(1) for 20s; 17s kill-executor(3) for 7.5s; 30s loss(0.05) for 1.2s; 33s \
             stop-master(0) for 4s; 41s cut-leader-from-etcd for 2s",
        );
        let (a, b) = (Fault::KillExecutor(3), Fault::CutExecutorFromMasters { executor: 2, both_ways: false });
        let fails = |p: &Plan| has(p, &a) && has(p, &b);
        let shrunk = shrink(&original, PHASE, 150, fails);
        let faults: BTreeSet<String> = shrunk.plan.steps.iter().map(|s| s.fault.to_string()).collect();
        assert_eq!(faults, BTreeSet::from([a.to_string(), b.to_string()]), "{}", shrunk.plan);
        assert!(!shrunk.budget_reached, "{shrunk}");
        // Neither step's timing matters to this predicate: both as short as allowed, and as late.
        for s in &shrunk.plan.steps {
            assert_eq!(s.lasts, LASTS_FLOOR, "{}", shrunk.plan);
            assert!(PHASE - s.at <= MOVE_LEAST, "{}", shrunk.plan);
        }
        assert_eq!(shrunk.plan.to_string().parse::<Plan>(), Ok(shrunk.plan.clone()));
        assert_eq!(shrunk.from_steps, 8);
        assert!(shrunk.to_string().starts_with("8 steps → 2 steps in "), "{shrunk}");
    }

    #[test]
    fn it_keeps_what_the_failure_needs_of_a_steps_timing() {
        let original = plan("3s pause-master(0) for 2s; 5s kill-leader for 20s; 9s loss(0.01) for 4s");
        // Fails while the leader's kill lasts 4 s or more and begins before 40 s.
        let fails = |p: &Plan| {
            p.steps.iter().any(|s| {
                s.fault == Fault::KillLeader && s.lasts >= Duration::from_secs(4) && s.at < Duration::from_secs(40)
            })
        };
        let shrunk = shrink(&original, PHASE, 150, fails);
        assert_eq!(shrunk.plan.steps.len(), 1, "{}", shrunk.plan);
        let s = &shrunk.plan.steps[0];
        assert!(fails(&shrunk.plan));
        // Halved from 20 s while it fails: 10 s, 5 s, then 2.5 s no longer does.
        assert_eq!(s.lasts, Duration::from_secs(5), "{}", shrunk.plan);
        // Half the way to the end while it fails: 32.5 s, then 46.25 s no longer does.
        assert_eq!(s.at, Duration::from_millis(32_500), "{}", shrunk.plan);
    }

    #[test]
    fn steps_that_must_coincide_are_moved_together_and_the_luck_dropped() {
        let original = plan(
            "10s kill-executor(1) for 3s; 11s latency(100ms) for 5s; 11.5s loss(0.01) for 2s; 12s kill-executor(2) \
             for 3s",
        );
        // Two kills fail the run when they coincide, or, with the network's luck of latency and loss, when both
        // come within the first 20 s.
        let fails = |p: &Plan| {
            let at = |f: &Fault| p.steps.iter().find(|s| s.fault == *f).map(|s| s.at);
            let (Some(a), Some(b)) = (at(&Fault::KillExecutor(1)), at(&Fault::KillExecutor(2))) else { return false };
            let luck = at(&Fault::Latency { max_ms: 100 }).is_some() && at(&Fault::Loss { rate: 0.01 }).is_some();
            a == b || (luck && a.max(b) <= Duration::from_secs(20))
        };
        let shrunk = shrink(&original, PHASE, 150, fails);
        // The first kill moved later to the latency's instant (the luck holds), then the second moved earlier to it.
        assert_eq!(shrunk.plan.to_string(), "11s kill-executor(1) for 0.5s; 11s kill-executor(2) for 0.5s", "{shrunk}");
    }

    #[test]
    fn a_failure_that_needs_no_fault_shrinks_to_none_in_one_run() {
        let original = plan("3s pause-master(0) for 2s; 5s kill-leader for 20s");
        let shrunk = shrink(&original, PHASE, 150, |_| true);
        assert_eq!((shrunk.plan.to_string().as_str(), shrunk.runs), ("none", 1));
        assert_eq!(shrunk.to_string(), "2 steps → 0 steps in 1 run");
    }

    #[test]
    fn it_returns_only_plans_that_failed_and_runs_no_candidate_twice() {
        let mut rng = SplitMix64::new(7);
        for seed in 0..300u64 {
            let original = Plan::draw(seed, &scope());
            let salt = rng.next_u64();
            let mut failed = BTreeSet::from([original.to_string()]);
            let mut ran = BTreeSet::new();
            // A predicate with no sense in it: about one candidate in three fails, by its text.
            let shrunk = shrink(&original, PHASE, 150, |p| {
                let text = p.to_string();
                assert!(ran.insert(text.clone()), "seed {seed}: {text} ran twice");
                assert_eq!(text.parse::<Plan>().as_ref(), Ok(p), "seed {seed}");
                assert_eq!(p.check(3, 6, PHASE), Ok(()), "seed {seed}: {text}");
                let mut h = SplitMix64::new(salt ^ text.bytes().fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b)));
                let fails = h.next_u64().is_multiple_of(3);
                if fails {
                    failed.insert(text);
                }
                fails
            });
            assert!(failed.contains(&shrunk.plan.to_string()), "seed {seed}: {} never failed", shrunk.plan);
            assert!(shrunk.plan.steps.len() <= original.steps.len(), "seed {seed}");
            assert_eq!(shrunk.runs, ran.len(), "seed {seed}");
        }
    }

    #[test]
    fn it_respects_its_budget() {
        let original = plan(
            "2.5s latency(100ms) for 9s; 4.1s kill-leader for 12.5s; 9.02s cut-executor-from-masters(2, one-way) for \
             3s; 11s pause-executor(1) for 20s; 17s kill-executor(3) for 7.5s; 30s loss(0.05) for 1.2s",
        );
        for budget in [0, 1, 5, 12] {
            let mut runs = 0;
            let shrunk = shrink(&original, PHASE, budget, |p| {
                runs += 1;
                has(p, &Fault::KillExecutor(3))
            });
            assert_eq!((runs, shrunk.runs), (budget, budget), "budget {budget}");
            assert!(shrunk.budget_reached, "budget {budget}: {shrunk}");
            assert!(has(&shrunk.plan, &Fault::KillExecutor(3)), "budget {budget}: {}", shrunk.plan);
            assert!(shrunk.to_string().contains(&format!("the budget of {budget} runs reached")), "{shrunk}");
        }
        assert_eq!(shrink(&original, PHASE, 0, |_| true).plan, original, "no run: the plan it was given");
        // Enough runs: it ends on its own, with runs to spare.
        let shrunk = shrink(&original, PHASE, 150, |p| has(p, &Fault::KillExecutor(3)));
        assert!(!shrunk.budget_reached && shrunk.runs < 150, "{shrunk}");
    }
}
