//! Design.md §6 failover: after the leader is lost, a new leader serves within lease TTL + one campaign retry.
//!
//! Judged on the acting periods (rule 1's, from the masters' reports: a term acts from its recovery until it
//! steps down, is killed, or its acting deadline passes): every stretch of the run after the first term began in
//! which no master acts must end within the bound. The bound runs from the last thing that could hold an election
//! up: a master killed, asked to stop or paused (every loss restarts it: a candidate that dies mid-recovery costs
//! another lease); a stretch when no master is up (killed, stopped or paused, until restarted or resumed); a fault
//! plan's step that disturbs elections, from its beginning to its heal as the story records them (the leader or
//! every master cut from etcd, latency, message loss, a slow metastore); a master's stall held by the plan, from
//! its beginning to its end; and any stretch the scenario names beside those (faults it
//! makes by hand, which the recorder does not see). A stretch still open when the run ends is judged only if the
//! bound has passed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use foreman::core::ids::LeaderEpoch;
use foreman::core::invariants::{ActingPeriod, Id, Rule, Violation};
use foreman::core::time::Time;

use super::Events;
use crate::cluster::Seen;
use crate::faults::{Fault, Step};

/// What a stretch with no acting leader is measured against.
#[derive(Clone, Debug)]
pub struct FailoverBound<'a> {
    /// The masters' node names.
    pub masters: &'a [String],
    /// Lease TTL + campaign retry.
    pub bound: Duration,
    /// Network and scheduling slack.
    pub slack: Duration,
    /// Stretches (from, to) in which elections are disturbed by faults the story does not record.
    pub disturbed: &'a [(Time, Time)],
    /// The end of the run.
    pub until: Time,
}

/// Whether a fault plan's step (as the plan writes it) can hold an election up: it cuts masters from etcd, or
/// slows or loses messages.
fn disturbs_elections(step: &str) -> bool {
    step.parse::<Step>().is_ok_and(|s| {
        matches!(
            s.fault,
            Fault::LeaderCutFromEtcd
                | Fault::AllMastersCutFromEtcd
                | Fault::Latency { .. }
                | Fault::Loss { .. }
                | Fault::SlowMetastore { .. }
        )
    })
}

/// Failover (design.md §6), on every seed: no stretch without an acting leader lasts longer than the bound past
/// the last obstacle in it (see the module's doc). Returns how long each stretch lasted past its last obstacle.
pub fn failover_within_bound(
    events: &Events,
    periods: &[ActingPeriod],
    b: &FailoverBound<'_>,
) -> Result<Vec<Duration>, Violation> {
    let masters: BTreeSet<&str> = b.masters.iter().map(String::as_str).collect();
    // Obstacles as stretches [from, to): losses are instants (from == to), the rest from the scenario and from
    // when no master was up.
    let mut obstacles: Vec<(Time, Time)> = b.disturbed.to_vec();
    let mut down: BTreeMap<&str, bool> = masters.iter().map(|m| (*m, false)).collect();
    let mut none_up_since: Option<Time> = None;
    let mut disturbing: BTreeMap<usize, Time> = BTreeMap::new();
    // A master's stalls held by the plan, by (node, step): its renewals, recovery or writes wait meanwhile.
    let mut stalled: BTreeMap<(&str, usize), Time> = BTreeMap::new();
    for (at, node, seen) in events {
        match seen {
            Seen::HoldBegan { step, .. } if masters.contains(node.as_str()) => {
                stalled.insert((node.as_str(), *step), *at);
            }
            Seen::HoldEnded { step, .. } => {
                if let Some(from) = stalled.remove(&(node.as_str(), *step)) {
                    obstacles.push((from, *at));
                }
            }
            Seen::FaultBegan { step, plan, .. } if disturbs_elections(plan) => {
                disturbing.insert(*step, *at);
            }
            Seen::FaultHealed { step, .. } => {
                if let Some(from) = disturbing.remove(step) {
                    obstacles.push((from, *at));
                }
            }
            _ => {}
        }
        let Some(m) = masters.get(node.as_str()).copied() else { continue };
        let is_down = match seen {
            Seen::Killed | Seen::StopAsked | Seen::Paused => {
                obstacles.push((*at, *at));
                true
            }
            Seen::Restarted | Seen::Resumed => false,
            _ => continue,
        };
        down.insert(m, is_down);
        let all_down = down.values().all(|d| *d);
        match (all_down, none_up_since) {
            (true, None) => none_up_since = Some(*at),
            (false, Some(since)) => {
                obstacles.push((since, *at));
                none_up_since = None;
            }
            _ => {}
        }
    }
    if let Some(since) = none_up_since {
        obstacles.push((since, Time::NEVER));
    }
    obstacles.extend(disturbing.into_values().map(|from| (from, Time::NEVER)));
    obstacles.extend(stalled.into_values().map(|from| (from, Time::NEVER)));
    let mut sorted: Vec<&ActingPeriod> = periods.iter().collect();
    sorted.sort_by_key(|p| (p.begin, p.end));
    let Some(first) = sorted.first() else { return Ok(vec![]) };
    // The stretches no period covers, after the first began.
    let mut gaps: Vec<(Time, Option<Time>, &ActingPeriod)> = vec![];
    let (mut covered_until, mut last) = (first.end, *first);
    for p in &sorted[1..] {
        if p.begin > covered_until {
            gaps.push((covered_until, Some(p.begin), last));
        }
        if p.end >= covered_until {
            (covered_until, last) = (p.end, *p);
        }
    }
    if covered_until < b.until {
        gaps.push((covered_until, None, last));
    }
    let allowed = b.bound + b.slack;
    let mut figures = vec![];
    for (from, to, before) in gaps {
        let mut start = from;
        loop {
            let deadline = start + allowed;
            let next = obstacles.iter().filter(|(o1, o2)| *o1 <= deadline && *o2 > start).map(|(_, o2)| *o2).max();
            match next {
                Some(o2) => start = o2,
                None => break,
            }
            if start == Time::NEVER {
                break;
            }
        }
        if start == Time::NEVER {
            continue;
        }
        let deadline = start + allowed;
        let end = to.unwrap_or(b.until);
        if end > deadline {
            let detail = format!(
                "no master acted from {from} ({} ended term {} then) {}; the bound is lease TTL + campaign retry = \
                 {:?} (+ {:?} slack) from {start}, after the last loss or disturbance",
                before.master,
                before.epoch,
                match to {
                    Some(to) => format!("until {to}"),
                    None => format!("to the end of the run at {end}"),
                },
                b.bound,
                b.slack
            );
            let ids = [Id::Master(before.master.clone()), Id::LeaderEpoch(LeaderEpoch(before.epoch))];
            return Err(Violation::new(Rule::FailoverBound, deadline, detail).with(ids));
        }
        if to.is_some() {
            figures.push(end.saturating_since(start));
        }
    }
    Ok(figures)
}

/// Leaderless stretches within the bound pass, one past it fails, and obstacles move the bound.
#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    fn period(master: &str, epoch: u64, begin: u64, end: u64) -> ActingPeriod {
        ActingPeriod { master: master.into(), epoch, begin: at(begin), end: at(end) }
    }

    fn check(
        events: &[(Time, String, Seen)],
        periods: &[ActingPeriod],
        disturbed: &[(Time, Time)],
        until: u64,
    ) -> Result<Vec<Duration>, Violation> {
        let masters = ["m0".to_owned(), "m1".to_owned()];
        let b = FailoverBound {
            masters: &masters,
            bound: Duration::from_secs(6),
            slack: Duration::from_millis(200),
            disturbed,
            until: at(until),
        };
        failover_within_bound(events, periods, &b)
    }

    #[test]
    fn a_leaderless_stretch_past_the_bound_is_caught_unless_something_held_the_election_up() {
        let killed = [(at(5_000), "m0".to_owned(), Seen::Killed)];
        let within = [period("m0", 1, 1_000, 5_000), period("m1", 2, 9_000, 30_000)];
        assert_eq!(check(&killed, &within, &[], 30_000), Ok(vec![Duration::from_secs(4)]));
        let late = [period("m0", 1, 1_000, 5_000), period("m1", 2, 12_000, 30_000)];
        let v = check(&killed, &late, &[], 30_000).unwrap_err();
        assert_eq!(
            (v.class(), v.rule, v.at),
            (foreman::core::invariants::Class::Liveness, Rule::FailoverBound, at(11_200))
        );
        assert!(v.detail.starts_with("no master acted from 5.000s (m0 ended term 1 then) until 12.000s"), "{v}");
        // The masters were cut from etcd until 8 s: the bound runs from there.
        assert_eq!(check(&killed, &late, &[(at(4_000), at(8_000))], 30_000), Ok(vec![Duration::from_secs(4)]));
        // The only other master was paused from 7 s to 7.5 s: no master was up, and the pause is a loss.
        let mut paused = killed.to_vec();
        paused.extend([(at(7_000), "m1".to_owned(), Seen::Paused), (at(7_500), "m1".to_owned(), Seen::Resumed)]);
        assert_eq!(check(&paused, &late, &[], 30_000), Ok(vec![Duration::from_millis(4_500)]));
        // A fault plan's step that cut the masters from etcd until 8 s, as the story records it; a step that
        // disturbs no election is no obstacle.
        let step = |n, plan: &str| Seen::FaultBegan { step: n, plan: plan.into(), broke: String::new() };
        let healed = |n| Seen::FaultHealed { step: n, healed: String::new() };
        let mut cut = killed.to_vec();
        cut.extend([
            (at(4_000), "faults".to_owned(), step(1, "4s cut-masters-from-etcd for 4s")),
            (at(4_500), "faults".to_owned(), step(2, "4.5s pause-executor(0) for 5s")),
            (at(8_000), "faults".to_owned(), healed(1)),
        ]);
        assert_eq!(check(&cut, &late, &[], 30_000), Ok(vec![Duration::from_secs(4)]));
        cut.remove(1);
        assert_eq!(check(&cut, &late, &[], 30_000).map_err(|v| v.rule), Err(Rule::FailoverBound));
        // Another node's pause is no obstacle.
        let other = [(at(5_000), "m0".to_owned(), Seen::Killed), (at(7_000), "e1".to_owned(), Seen::Paused)];
        assert_eq!(check(&other, &late, &[], 30_000).map_err(|v| v.rule), Err(Rule::FailoverBound));
        // Still leaderless at the end of the run: judged once the bound has passed.
        let alone = [period("m0", 1, 1_000, 5_000)];
        assert_eq!(check(&killed, &alone, &[], 11_000), Ok(vec![]));
        assert_eq!(
            check(&killed, &alone, &[], 20_000).map_err(|v| (v.rule, v.at)),
            Err((Rule::FailoverBound, at(11_200)))
        );
        // Never up again (both masters down): not judged.
        let both = [(at(5_000), "m0".to_owned(), Seen::Killed), (at(6_000), "m1".to_owned(), Seen::Killed)];
        assert_eq!(check(&both, &alone, &[], 60_000), Ok(vec![]));
    }
}
