//! Design.md §6 rescheduling: a job whose job master died runs again within detection + backoff + one scheduling
//! round, when capacity exists.
//!
//! The bound is a sum, and each term has its checker: detection (an executor's death declared within TTL + check
//! interval: [`super::offline_declarations`]; the verdict on its job masters is taken in the same pass, and a job
//! master lost on a live executor is given up by its own TTL), the backoff in force (each loss charges the job a
//! delay within the policy's bounds, and every leader holds the job to exactly that delay:
//! [`super::restarts_spaced`]), and the scheduling round, checked here: once its backoff allows it, a job is
//! started at the first pass of the leader at which capacity exists for it. So a restart within the sum follows.
//!
//! "Capacity exists" is judged on what the leader reports after each pass (`Capacity`: every schedulable
//! executor's capacity, the slots its last report counts and the slots reserved, the job masters' share, and every
//! job waiting for a job master). A job the pass left waiting had capacity if, after the pass, some executor its
//! selectors admit had at least its cost free, and the job masters' share had room for it, cluster-wide and among
//! the executors its selectors admit (one job master may always run). Jobs are placed in id order within a pass, and placing only takes slots, so whatever was free
//! after the pass was free when its turn came. Not judged: a pass while the leader holds evictions as a suspect
//! (it places nothing then, by design), a job whose earlier incarnation the leader still waits to give up, and
//! every pass at which no executor it may use had a free slot for it: there the job rightly waits, and its
//! rescheduling time is not bounded.

use std::time::Duration;

use foreman::core::invariants::{Id, Rule, Violation};
use foreman::master::{CapacitySample, Observation};

use super::Events;
use crate::cluster::Seen;
use crate::harness::Clock;

/// One job that a pass left waiting though capacity existed for it, if any.
fn left_waiting(clock: &Clock, node: &str, s: &CapacitySample) -> Option<Violation> {
    if s.suspecting {
        return None;
    }
    for w in &s.waiting {
        let due = w.startable && w.allowed.is_none_or(|a| a <= s.at);
        let share = s.job_master_slots == 0 || s.job_master_slots + u64::from(w.cost) <= s.job_master_cap;
        // The same share among the executors its selectors admit, where its workers must run too.
        let admitted = w.admitted_share.is_none_or(|(held, cap)| held == 0 || held + u64::from(w.cost) <= cap);
        if !due || !share || !admitted {
            continue;
        }
        let room = s.executors.iter().find(|e| {
            let free = u64::from(e.capacity).saturating_sub(u64::from(e.reported) + u64::from(e.reserved));
            free >= u64::from(w.cost) && w.admits.as_ref().is_none_or(|ids| ids.contains(&e.id))
        });
        let Some(e) = room else { continue };
        let at = clock.at(s.at);
        let since = match w.allowed.map(|a| clock.at(a)) {
            Some(a) => format!("its backoff allowed it from {a}"),
            None => "nothing held it back".to_owned(),
        };
        let detail = format!(
            "{node} (leader epoch {}) left {} waiting after its pass at {at}, though {since}, executor {} had {} of \
             its {} slots free for its cost {}, and job masters held {} of their {} slots",
            s.epoch.0,
            w.job,
            e.id.0,
            u64::from(e.capacity).saturating_sub(u64::from(e.reported) + u64::from(e.reserved)),
            e.capacity,
            w.cost,
            s.job_master_slots,
            s.job_master_cap
        );
        let ids =
            [Id::Job(w.job.to_string()), Id::Master(node.to_owned()), Id::LeaderEpoch(s.epoch), Id::Executor(e.id)];
        return Some(Violation::new(Rule::Reschedule, at, detail).with(ids));
    }
    None
}

/// The scheduling round of rescheduling (design.md §6), on every seed: no pass of a leader leaves a job waiting
/// for a job master when its backoff allows it and capacity exists for it (see the module's doc for what counts).
/// Returns, for every job-master loss that charged a backoff, the time from the charge to the job's next start
/// (the figure the bound is about, less detection).
pub fn restarted_when_capacity_exists(clock: &Clock, events: &Events) -> Result<Vec<Duration>, Violation> {
    let mut charged: std::collections::BTreeMap<String, foreman::core::time::Time> = Default::default();
    let mut figures = vec![];
    for (_, node, seen) in events {
        match seen {
            Seen::Master(Observation::Capacity(s)) => {
                if let Some(v) = left_waiting(clock, node, s) {
                    return Err(v);
                }
            }
            Seen::Master(Observation::BackoffCharged { job, allowed: Some(_), at, .. }) => {
                charged.insert(job.to_string(), clock.at(*at));
            }
            Seen::Master(Observation::JobMasterStarted { job, at, .. }) => {
                if let Some(since) = charged.remove(job.as_str()) {
                    figures.push(clock.at(*at).saturating_since(since));
                }
            }
            _ => {}
        }
    }
    Ok(figures)
}

/// A pass that places what it can passes; one that leaves a due job waiting beside room for it fails.
#[cfg(test)]
mod tests {
    use super::*;
    use foreman::core::ids::{ExecutorId, JobId, LeaderEpoch};
    use foreman::core::time::Time;
    use foreman::master::{ExecutorSlots, WaitingSample};

    fn at(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    /// After a pass at `ms`: executor 1 (zone a) with 2 slots, one reported in use; job j (cost 1) waits, its
    /// backoff allowing it from 5 s.
    fn pass(clock: &Clock, ms: u64) -> CapacitySample {
        CapacitySample {
            epoch: LeaderEpoch(3),
            at: clock.instant(at(ms)),
            executors: vec![ExecutorSlots { id: ExecutorId(1), capacity: 2, reported: 1, reserved: 0 }],
            reservations: vec![],
            suspecting: false,
            job_master_slots: 0,
            job_master_cap: 1,
            waiting: vec![WaitingSample {
                job: JobId::parse("j").expect("a job id"),
                cost: 1,
                allowed: Some(clock.instant(at(5_000))),
                startable: true,
                admits: None,
                admitted_share: None,
            }],
        }
    }

    fn check(clock: &Clock, s: CapacitySample) -> Result<Vec<Duration>, Violation> {
        let ms = clock.at(s.at).as_millis();
        restarted_when_capacity_exists(clock, &[(at(ms), "m0".into(), Seen::Master(Observation::Capacity(s)))])
    }

    #[test]
    fn a_due_job_left_waiting_beside_room_for_it_is_caught() {
        let clock = Clock::start();
        let v = check(&clock, pass(&clock, 6_000)).unwrap_err();
        assert_eq!(
            (v.class(), v.rule, v.at),
            (foreman::core::invariants::Class::Liveness, Rule::Reschedule, at(6_000))
        );
        assert!(v.detail.contains("executor 1 had 1 of its 2 slots free"), "{v}");
        // The same pass with no room for it, or before its backoff allows it, or held back otherwise: it waits.
        let mut cases: Vec<(&str, CapacitySample)> = vec![("backoff", pass(&clock, 4_999))];
        let mut full = pass(&clock, 6_000);
        full.executors[0].reserved = 1;
        cases.push(("full", full));
        let mut share = pass(&clock, 6_000);
        share.job_master_slots = 1;
        cases.push(("job masters' share", share));
        let mut selectors = pass(&clock, 6_000);
        selectors.waiting[0].admits = Some(vec![ExecutorId(2)]);
        cases.push(("selectors", selectors));
        let mut admitted_share = pass(&clock, 6_000);
        admitted_share.waiting[0].admitted_share = Some((1, 1));
        cases.push(("job masters' share among the executors its selectors admit", admitted_share));
        let mut suspect = pass(&clock, 6_000);
        suspect.suspecting = true;
        cases.push(("suspect", suspect));
        let mut previous = pass(&clock, 6_000);
        previous.waiting[0].startable = false;
        cases.push(("earlier incarnation", previous));
        for (why, s) in cases {
            assert!(check(&clock, s).is_ok(), "{why}");
        }
        // One job master may always run, whatever the share.
        let mut alone = pass(&clock, 6_000);
        alone.job_master_cap = 0;
        alone.waiting[0].admitted_share = Some((0, 0));
        assert_eq!(check(&clock, alone).map_err(|v| v.rule), Err(Rule::Reschedule));
    }
}
