//! Checkers over a run's recorded events. Each returns the first broken rule with the ids and simulated time.
//!
//! [`every_run`] is the list every scenario and the swarm run on the whole story of each seed: rule 1 (one acting
//! leader), rule 2 (fenced messages), rule 7's re-registration with nothing running, capacity accounting, and the bounds of design.md §6 (detection and no false
//! alarms, failover, rescheduling's scheduling round, backoff). The checkers that need a scenario's own knowledge
//! (its jobs' exact counters, its workload's selectors) are run by the scenarios beside it.

mod backoff;
mod cancel;
mod capacity;
mod checkpoints;
mod detection;
mod eviction;
mod failover;
mod failures;
mod fenced;
mod history;
mod incarnations;
mod leader;
mod placement;
mod processes;
mod registry;
mod reschedule;
mod resources;
mod wasted;

pub use backoff::restarts_spaced;
pub use cancel::canceled_never_restart;
pub use capacity::{capacity_settled, reservations_explained, Running};
pub use checkpoints::checkpoints_forward;
pub use detection::{offline_declarations, Detection};
pub use eviction::{no_mass_eviction, EvictionPolicy};
pub use failover::{failover_within_bound, FailoverBound};
pub use failures::{failures_as_declared, job_end_as_declared, panics_end_their_task, Plan as FailurePlan};
pub use fenced::fenced_messages;
pub use history::job_history;
pub use incarnations::one_live_incarnation;
pub use leader::{acting_periods, single_acting_leader};
pub use placement::{placed_only_on_live_executors, placement_meets_selectors, placement_within_bounds};
pub use processes::{no_process_outlives_its_task, one_live_process};
pub use registry::{ids_never_reused, registered_again_with_nothing_running};
pub use reschedule::restarted_when_capacity_exists;
pub use resources::worker_stays_with_its_resource;
pub use wasted::{restarts_explained, Restarts};

use std::time::Duration;

use foreman::core::ids::TaskId;
use foreman::core::invariants::Violation;
use foreman::core::time::Time;
use foreman::executor::ExecutorObservation;
use foreman::master::Observation;

use crate::cluster::{Cluster, Seen};
use crate::harness::Clock;

pub type Events = [(Time, String, Seen)];

/// What the checkers of [`every_run`] allow for beyond the run's knobs.
#[derive(Clone, Debug, Default)]
pub struct Allowances {
    /// Network and scheduling slack on every time bound (runs with slow networks, a slow etcd or stalling fault
    /// points need more).
    pub slack: Duration,
    /// Stretches (from, to) in which faults the story does not record held elections up (masters cut from etcd
    /// by hand, a slow or lossy network): the failover bound runs from their end. A fault plan's steps are in the
    /// story: the failover checker finds those itself.
    pub elections_disturbed: Vec<(Time, Time)>,
    /// The failover bound does not apply at all: etcd times requests out for the whole run (madsim's etcd cannot
    /// be healed of it), so elections succeed eventually, not within a bound.
    pub no_failover_bound: bool,
    /// The run's clock faults: the §6 bounds a node judges by its own clock stretch by what they allow.
    pub clocks: ClockSlack,
}

impl Allowances {
    /// A run whose clocks run within `1 ± rate` of true time, with 200 ms of slack on every bound: the aimed
    /// scenarios that turn a node's clock beyond the tolerance to make a guard the last line.
    pub fn clocks_within(rate: f64) -> Allowances {
        Allowances {
            slack: Duration::from_millis(200),
            clocks: ClockSlack { rate, jump: Duration::ZERO },
            ..Allowances::default()
        }
    }
}

/// What a run's clock faults allow the §6 bounds (never the §5 safety rules, which the tolerance must keep):
/// every node's clock within `1 ± rate` of true time, and jumps forward of at most `jump` in total.
///
/// A span a node counts as `d` on its clock lasts between `d / (1 + rate)` and `d / (1 - rate)` of true time; a
/// node reports the instants it has read as they were (its dial remembers its faces), but a deadline it has not
/// reached yet through its clock's current face, so a later rate change or jump moves when it really comes: by
/// another factor of `1 ± rate`, and by the jump. Hence a bound of `d` on
/// a node's clock is held by the checkers to `[d (1 - rate) / (1 + rate) - jump, d (1 + rate) / (1 - rate) +
/// jump]` of true time ([`ClockSlack::shortest`], [`ClockSlack::longest`]). With no clock fault both are `d`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ClockSlack {
    pub rate: f64,
    pub jump: Duration,
}

impl ClockSlack {
    /// The longest true span a bound of `d` on a node's clock can be seen to last.
    pub fn longest(&self, d: Duration) -> Duration {
        if self.rate == 0.0 {
            return d + self.jump;
        }
        d.mul_f64((1.0 + self.rate) / (1.0 - self.rate)) + self.jump
    }

    /// The shortest true span a bound of `d` on a node's clock can be seen to last.
    pub fn shortest(&self, d: Duration) -> Duration {
        if self.rate == 0.0 {
            return d.saturating_sub(self.jump);
        }
        d.mul_f64((1.0 - self.rate) / (1.0 + self.rate)).saturating_sub(self.jump)
    }

    /// How far either way a span of `d` on a node's clock can be seen off.
    pub fn off(&self, d: Duration) -> Duration {
        (self.longest(d) - d).max(d - self.shortest(d))
    }
}

/// What [`every_run`] measured.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    /// Every offline declaration's timing.
    pub detections: Vec<Detection>,
    /// Every stretch without an acting leader, from its last obstacle to the next term.
    pub failovers: Vec<Duration>,
    /// Every backoff charge to the job's next start.
    pub restarts: Vec<Duration>,
}

/// The checkers every scenario and the swarm run on the whole story of a seed, in this order: one acting leader
/// (rule 1), fenced messages (rule 2), capacity accounting (reservations explained by live tasks), detection and
/// no false alarms, no mass eviction, failover, backoff, rescheduling. The first violation, or what they measured.
pub fn every_run(c: &Cluster, a: &Allowances) -> Result<Measured, Violation> {
    let events = c.recorder.events();
    let until = c.clock.now();
    let periods = acting_periods(&c.clock, &events, until);
    single_acting_leader(&periods)?;
    fenced_messages(&events)?;
    registered_again_with_nothing_running(&events)?;
    reservations_explained(&c.clock, &events, a.clocks.longest(c.config.placement.reservation_ttl))?;
    let ex = &c.config.executors;
    let detections = offline_declarations(
        &c.clock,
        &events,
        ex.offline_ttl,
        ex.check_interval,
        ex.suspect_hold,
        a.slack,
        &a.clocks,
    )?;
    let policy = EvictionPolicy { ttl: ex.offline_ttl, hold: ex.suspect_hold, fraction: ex.suspect_fraction };
    no_mass_eviction(&c.clock, &events, policy, a.slack, &a.clocks)?;
    let failovers = if a.no_failover_bound {
        vec![]
    } else {
        let masters: Vec<String> = c.masters.iter().map(|m| m.name.clone()).collect();
        let el = &c.config.election;
        let bound = FailoverBound {
            masters: &masters,
            bound: a.clocks.longest(el.lease_ttl + el.campaign_retry),
            slack: a.slack,
            disturbed: &a.elections_disturbed,
            until,
        };
        failover_within_bound(&events, &periods, &bound)?
    };
    restarts_spaced(&c.clock, &events, &c.config.backoff.policy(), &a.clocks)?;
    let restarts = restarted_when_capacity_exists(&c.clock, &events)?;
    Ok(Measured { detections, failovers, restarts })
}

/// The first violation among named checkers' verdicts, its sentence naming the checker that found it.
pub fn first_broken<'a>(verdicts: impl IntoIterator<Item = (&'a str, Result<(), Violation>)>) -> Result<(), Violation> {
    for (checker, verdict) in verdicts {
        verdict.map_err(|mut v| {
            v.detail = format!("{} [the {checker} checker]", v.detail);
            v
        })?;
    }
    Ok(())
}

/// p50 / p99 / max of a sample, for the figures a scenario prints.
pub fn summary(mut xs: Vec<Duration>) -> String {
    if xs.is_empty() {
        return "no samples".into();
    }
    xs.sort();
    let pick = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
    format!("n={} p50={:?} p99={:?} max={:?}", xs.len(), pick(0.5), pick(0.99), xs[xs.len() - 1])
}

/// A task id for a test's story: ids are validated, so a literal must be a valid one.
pub fn task_id(s: &str) -> TaskId {
    TaskId::parse(s).unwrap_or_else(|e| panic!("a test's task id: {e}"))
}

/// The checkers themselves: each fails on a story that breaks its rule, and passes the same story kept.
#[cfg(test)]
mod tests {
    use super::*;
    use foreman::core::ids::{Epoch, ExecutorId, LeaderEpoch};
    use foreman::core::invariants::{Class, Id, Rule};
    use foreman::executor::StopWhy;

    fn at(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    fn ev(ms: u64, node: &str, seen: Seen) -> (Time, String, Seen) {
        (at(ms), node.to_owned(), seen)
    }

    fn started(task: &str, epoch: u64) -> Seen {
        Seen::Exec(ExecutorObservation::TaskStarted {
            task: task_id(task),
            epoch: Epoch(epoch),
            leader_epoch: LeaderEpoch(1),
        })
    }

    /// The rule a story breaks (or `None` when the checker passes it).
    fn broken(r: Result<(), foreman::core::invariants::Violation>) -> Option<Rule> {
        r.err().map(|v| v.rule)
    }

    fn stopped(task: &str, epoch: u64) -> Seen {
        Seen::Exec(ExecutorObservation::TaskStopped { task: task_id(task), epoch: Epoch(epoch), why: StopWhy::Fenced })
    }

    fn checkpoint(task: &str, epoch: u64, seq: u64) -> Seen {
        Seen::Exec(ExecutorObservation::Checkpoint { task: task_id(task), epoch: Epoch(epoch), seq })
    }

    #[test]
    fn one_live_incarnation_catches_overlaps_and_knows_pauses_and_kills() {
        let overlap =
            [ev(0, "e1", started("j/w0", 1)), ev(5, "e2", started("j/w0", 2)), ev(9, "e1", stopped("j/w0", 1))];
        let v = one_live_incarnation(&overlap).unwrap_err();
        assert_eq!((v.class(), v.rule, v.at), (Class::Safety, Rule::OneLiveIncarnation, at(5)));
        assert_eq!(
            v.ids,
            [
                Id::Task("j/w0".into()),
                Id::Epoch(Epoch(2)),
                Id::Node("e2".into()),
                Id::Epoch(Epoch(1)),
                Id::Node("e1".into())
            ]
        );
        let handover =
            [ev(0, "e1", started("j/w0", 1)), ev(5, "e1", stopped("j/w0", 1)), ev(6, "e2", started("j/w0", 2))];
        assert_eq!(one_live_incarnation(&handover), Ok(()));
        let older = [ev(0, "e1", started("j", 5)), ev(1, "e1", stopped("j", 5)), ev(2, "e2", started("j", 4))];
        let v = one_live_incarnation(&older).unwrap_err();
        assert_eq!((v.rule, v.at), (Rule::OneLiveIncarnation, at(2)));
        assert!(v.detail.contains("after epoch 5"), "{v}");
        let killed = [ev(0, "e1", started("j", 1)), ev(3, "e1", Seen::Killed), ev(4, "e2", started("j", 2))];
        assert_eq!(one_live_incarnation(&killed), Ok(()));
        // Paused: not live meanwhile; resumed and stopped when next polled (fenced), without acting: never live
        // again.
        let mut paused = vec![
            ev(0, "e1", started("j", 1)),
            ev(1, "e1", Seen::Paused),
            ev(4, "e2", started("j", 2)),
            ev(9, "e1", Seen::Resumed),
            ev(10, "e1", stopped("j", 1)),
            ev(30, "e2", stopped("j", 2)),
        ];
        assert_eq!(one_live_incarnation(&paused), Ok(()));
        // ...but resumed and still running past the grace, beside its replacement: caught;
        paused[4] = ev(20, "e1", stopped("j", 1));
        let v = one_live_incarnation(&paused).unwrap_err();
        assert_eq!((v.rule, v.at), (Rule::OneLiveIncarnation, at(14)), "{v}");
        assert!(v
            .detail
            .contains("j epoch 1 on e1 was resumed and did not stop within 5ms while epoch 2 is live on e2"));
        // ...and resumed and acting at once: caught.
        paused[4] = ev(10, "e1", checkpoint("j", 1, 7));
        let v = one_live_incarnation(&paused).unwrap_err();
        assert_eq!((v.rule, v.at), (Rule::OneLiveIncarnation, at(10)), "{v}");
        assert!(v.detail.contains("acted on e1 after a resume"), "{v}");
        // A stop of an incarnation that never started: the story itself is broken, not a rule.
        let phantom = [ev(0, "e1", stopped("j", 1))];
        let v = one_live_incarnation(&phantom).unwrap_err();
        assert_eq!((v.class(), v.rule), (Class::Crash, Rule::ConsistentStory));
        // Quiesced for a drain: no longer live, though its stop (after its report) comes after the replacement.
        let quiesced = |task: &str, epoch| {
            Seen::Exec(ExecutorObservation::TaskQuiesced { task: task_id(task), epoch: Epoch(epoch) })
        };
        let drained = [
            ev(0, "e1", started("j/w0", 1)),
            ev(5, "e1", quiesced("j/w0", 1)),
            ev(6, "e2", started("j/w0", 2)),
            ev(9, "e1", stopped("j/w0", 1)),
        ];
        assert_eq!(one_live_incarnation(&drained), Ok(()));
        // Another incarnation's quiescence does not end this one.
        let wrong =
            [ev(0, "e1", started("j/w0", 1)), ev(5, "e3", quiesced("j/w0", 1)), ev(6, "e2", started("j/w0", 2))];
        let v = one_live_incarnation(&wrong).unwrap_err();
        assert_eq!(v.rule, Rule::OneLiveIncarnation);
        assert!(v.detail.contains("while epoch 1 is live on e1"), "{v}");
    }

    #[test]
    fn checkpoints_forward_allows_retries_and_unacknowledged_steps_across_incarnations_only() {
        let ok = [
            ev(0, "e1", checkpoint("j/w0", 1, 1)),
            ev(1, "e1", checkpoint("j/w0", 1, 2)),
            ev(2, "e1", checkpoint("j/w0", 1, 2)), // a retried write
            ev(3, "e2", checkpoint("j/w0", 2, 4)), // step 3 landed unacknowledged
        ];
        assert_eq!(checkpoints_forward(&ok), Ok(()));
        let back = [ev(0, "e1", checkpoint("j/w0", 1, 5)), ev(1, "e2", checkpoint("j/w0", 2, 4))];
        let v = checkpoints_forward(&back).unwrap_err();
        assert_eq!((v.rule, v.rule.number(), v.at, v.task()), (Rule::CheckpointsForward, Some(2), at(1), Some("j/w0")));
        assert!(v.detail.contains("checkpointed step 4 after 5"), "{v}");
        let skip = [ev(0, "e1", checkpoint("j/w0", 1, 1)), ev(1, "e1", checkpoint("j/w0", 1, 3))];
        assert_eq!(broken(checkpoints_forward(&skip)), Some(Rule::CheckpointsForward));
    }

    #[test]
    fn canceled_jobs_never_restart() {
        let cancel = Seen::JobCanceled { id: "j".into(), epoch: Epoch(1), state: 3 };
        let restarted = [ev(0, "e1", started("j", 1)), ev(1, "client", cancel.clone()), ev(2, "e2", started("j", 2))];
        let v = canceled_never_restart(&restarted).unwrap_err();
        assert_eq!((v.rule, v.rule.number(), v.at), (Rule::CanceledNeverRestart, Some(5), at(2)));
        assert_eq!(v.ids[..3], [Id::Job("j".into()), Id::Task("j".into()), Id::Epoch(Epoch(2))]);
        assert!(v.detail.contains("newer than epoch 1"), "{v}");
        // The incarnation the cancel named was dispatched before it: it may still start.
        let in_flight = [ev(1, "client", cancel.clone()), ev(2, "e2", started("j", 1)), ev(3, "e2", stopped("j", 1))];
        assert_eq!(canceled_never_restart(&in_flight), Ok(()));
        let late_worker = [
            ev(0, "e1", started("j", 1)),
            ev(1, "client", cancel.clone()),
            ev(2, "e2", started("j/w0", 10)), // dispatched just before the job master heard: allowed
            ev(3, "e1", stopped("j", 1)),
            ev(4, "e2", started("j/w1", 11)),
        ];
        let v = canceled_never_restart(&late_worker).unwrap_err();
        assert_eq!((v.rule, v.at, v.task()), (Rule::CanceledNeverRestart, at(4), Some("j/w1")));
        assert_eq!(canceled_never_restart(&late_worker[..4]), Ok(()));
        // A worker whose confirm its job master sent before it stopped was on its way: it may start after the stop.
        // One whose confirm was sent after the stop, or of another incarnation, may not.
        let confirm = |task: &str, epoch: u64| {
            Seen::Exec(ExecutorObservation::WorkerConfirmSent {
                master: "j".into(),
                master_epoch: Epoch(1),
                task: task_id(task),
                epoch: Epoch(epoch),
            })
        };
        let on_its_way = |sent: u64, epoch: u64| {
            [
                ev(0, "e1", started("j", 1)),
                ev(1, "client", cancel.clone()),
                ev(sent, "e1", confirm("j/w1", epoch)),
                ev(3, "e1", stopped("j", 1)),
                ev(4, "e2", started("j/w1", 11)),
            ]
        };
        assert_eq!(canceled_never_restart(&on_its_way(2, 11)), Ok(()));
        assert_eq!(canceled_never_restart(&on_its_way(3, 11)), Ok(()), "sent at the instant it stopped");
        let mut same_instant = on_its_way(3, 11);
        same_instant.swap(2, 3); // the stop recorded first, the confirm at the same instant: still not after it
        assert_eq!(canceled_never_restart(&same_instant), Ok(()));
        let after = [
            ev(0, "e1", started("j", 1)),
            ev(1, "client", cancel.clone()),
            ev(3, "e1", stopped("j", 1)),
            ev(4, "e1", confirm("j/w1", 11)),
            ev(5, "e2", started("j/w1", 11)),
        ];
        assert_eq!(canceled_never_restart(&after).unwrap_err().task(), Some("j/w1"), "sent after the stop");
        assert_eq!(canceled_never_restart(&on_its_way(2, 10)).unwrap_err().task(), Some("j/w1"), "another epoch");
        // Another job whose id starts the same is not this job.
        let other = [ev(1, "client", cancel.clone()), ev(2, "e2", started("jx", 1)), ev(3, "e2", started("jx/w0", 2))];
        assert_eq!(canceled_never_restart(&other), Ok(()));
        // No leader places a worker of the job once its cancel was acknowledged; before it, or another job's, may.
        let placed = |job: &str, task: &str| {
            Seen::Master(foreman::master::Observation::WorkerPlaced {
                job: foreman::core::ids::JobId::parse(job).unwrap(),
                task: task_id(task),
            })
        };
        let placements = [
            ev(0, "m1", placed("j", "j/w0")),
            ev(1, "client", cancel),
            ev(2, "m1", placed("jx", "jx/w0")),
            ev(3, "m2", placed("j", "j/w1")),
        ];
        let v = canceled_never_restart(&placements).unwrap_err();
        assert_eq!((v.rule, v.at, v.task()), (Rule::CanceledNeverRestart, at(3), Some("j/w1")));
        assert!(v.detail.contains("m2 placed j/w1 after the cancel of job j"), "{v}");
        assert_eq!(canceled_never_restart(&placements[..3]), Ok(()));
    }

    #[test]
    fn detection_bound_knows_holds_and_a_paused_leader() {
        let clock = Clock::start();
        let (ttl, check, hold, slack) =
            (Duration::from_secs(10), Duration::from_millis(500), Duration::from_secs(10), Duration::from_millis(200));
        let offline = |when: u64| {
            Seen::Master(Observation::ExecutorOffline {
                id: ExecutorId(1),
                name: "e1".into(),
                at: clock.instant(at(when)),
                last_heard: clock.instant(at(0)),
                among: 1,
            })
        };
        let check_of = |events: &[(Time, String, Seen)]| {
            offline_declarations(&clock, events, ttl, check, hold, slack, &Default::default())
        };
        assert!(check_of(&[ev(10_400, "m0", offline(10_400))]).is_ok());
        let v = check_of(&[ev(12_000, "m0", offline(12_000))]).unwrap_err();
        assert_eq!((v.class(), v.rule, v.at), (Class::Liveness, Rule::DetectionBound, at(12_000)));
        assert_eq!(v.ids, [Id::Master("m0".into()), Id::Executor(ExecutorId(1)), Id::Node("e1".into())]);
        let held = Seen::Master(Observation::EvictionsHeld { held: 2, at: clock.instant(at(10_000)) });
        assert!(check_of(&[ev(10_000, "m0", held), ev(20_000, "m0", offline(20_000))]).is_ok());
        // A hold that began before the executor was last heard still holds its expiry (swarm seed 1796470228):
        // the hold began at 0 (its window runs to 10 s), heard at 1 s, declared 18 s later.
        let early = Seen::Master(Observation::EvictionsHeld { held: 2, at: clock.instant(Time::ZERO) });
        let heard_late = |when: u64| {
            Seen::Master(Observation::ExecutorOffline {
                id: ExecutorId(1),
                name: "e1".into(),
                at: clock.instant(at(when)),
                last_heard: clock.instant(at(1_000)),
                among: 3,
            })
        };
        assert!(check_of(&[ev(0, "m0", early.clone()), ev(19_000, "m0", heard_late(19_000))]).is_ok());
        // Not a hold whose window had ended before it was last heard (heard at 11 s, declared 12 s later).
        let late = Seen::Master(Observation::ExecutorOffline {
            id: ExecutorId(1),
            name: "e1".into(),
            at: clock.instant(at(23_000)),
            last_heard: clock.instant(at(11_000)),
            among: 3,
        });
        let v = check_of(&[ev(0, "m0", early), ev(23_000, "m0", late)]).unwrap_err();
        assert_eq!(v.rule, Rule::DetectionBound);
        let paused = [ev(5_000, "m0", Seen::Paused), ev(9_000, "m0", Seen::Resumed), ev(14_000, "m0", offline(14_000))];
        assert!(check_of(&paused).is_ok());
        let other_paused =
            [ev(5_000, "m1", Seen::Paused), ev(9_000, "m1", Seen::Resumed), ev(14_000, "m0", offline(14_000))];
        assert_eq!(check_of(&other_paused).map_err(|v| v.rule).err(), Some(Rule::DetectionBound));
        // A false alarm: acknowledged 2 s before the declaration.
        let acked = |sent: u64| {
            let (sent, leader_epoch) = (clock.instant(at(sent)), LeaderEpoch(1));
            Seen::Exec(ExecutorObservation::HeartbeatAcked { id: ExecutorId(1), sent, leader_epoch })
        };
        let v = check_of(&[ev(8_400, "e1", acked(8_300)), ev(10_400, "m0", offline(10_400))]).unwrap_err();
        assert_eq!((v.class(), v.rule), (Class::Safety, Rule::NoFalseAlarms));
        // An acknowledgement that arrives late (its executor was paused) is evidence only from its send time.
        assert!(check_of(&[ev(10_390, "e1", acked(0)), ev(10_400, "m0", offline(10_400))]).is_ok());
        // So is a registration's answer taken late (swarm seed 1796478929), and one taken at once is evidence.
        let registered = |sent: u64| {
            let (sent, leader_epoch) = (clock.instant(at(sent)), LeaderEpoch(1));
            Seen::Exec(ExecutorObservation::Registered { id: ExecutorId(1), leader_epoch, sent })
        };
        assert!(check_of(&[ev(3_700, "e1", registered(0)), ev(10_400, "m0", offline(10_400))]).is_ok());
        let v = check_of(&[ev(3_700, "e1", registered(3_600)), ev(10_400, "m0", offline(10_400))]).unwrap_err();
        assert_eq!(v.rule, Rule::NoFalseAlarms);
    }

    #[test]
    fn a_killed_leader_stops_acting_at_its_deadline_if_that_came_first() {
        let clock = Clock::start();
        let master = |o| Seen::Master(o);
        let began =
            |epoch, when| master(Observation::ActingBegan { epoch: LeaderEpoch(epoch), at: clock.instant(at(when)) });
        let until = |epoch, when| {
            master(Observation::ActingUntil { epoch: LeaderEpoch(epoch), until: clock.instant(at(when)) })
        };
        // m0 leads from 1 s, its deadline last moved to 4 s; it stalls, m1 begins at 6 s, m0 is killed at 9 s.
        let mut story = vec![
            ev(1_000, "m0", began(1, 1_000)),
            ev(1_000, "m0", until(1, 4_000)),
            ev(6_000, "m1", began(2, 6_000)),
            ev(9_000, "m0", Seen::Killed),
        ];
        let periods = acting_periods(&clock, &story, at(20_000));
        assert_eq!(
            periods.iter().map(|p| (p.epoch, p.begin, p.end)).collect::<Vec<_>>(),
            [(1, at(1_000), at(4_000)), (2, at(6_000), at(20_000))]
        );
        assert_eq!(single_acting_leader(&periods), Ok(()));
        // Without the deadline the kill would end it (the false alarm this fixes), and a kill before its deadline
        // still ends it at the kill.
        story.remove(1);
        let v = single_acting_leader(&acting_periods(&clock, &story, at(20_000))).unwrap_err();
        assert_eq!((v.rule, v.at), (Rule::OneActingLeader, at(6_000)));
        story.insert(1, ev(1_000, "m0", until(1, 12_000)));
        let periods = acting_periods(&clock, &story, at(20_000));
        assert_eq!((periods[0].begin, periods[0].end), (at(1_000), at(9_000)));
        assert_eq!(broken(single_acting_leader(&periods)), Some(Rule::OneActingLeader));
        // A deadline of an earlier term says nothing about this one.
        story[1] = ev(500, "m0", until(0, 2_000));
        assert_eq!(acting_periods(&clock, &story, at(20_000))[0].end, at(9_000));
    }

    #[test]
    fn placement_within_capacity_and_never_on_an_offline_id() {
        let registered = |id| {
            Seen::Exec(ExecutorObservation::Registered {
                id: ExecutorId(id),
                leader_epoch: LeaderEpoch(1),
                sent: crate::harness::Clock::start().instant(foreman::core::time::Time::ZERO),
            })
        };
        let full = [ev(0, "e1", registered(1)), ev(1, "e1", started("a", 1)), ev(2, "e1", started("b", 2))];
        let v = placement_within_bounds(&full, 1).unwrap_err();
        assert_eq!((v.rule, v.at, v.task()), (Rule::Placement, at(2), Some("b")));
        assert!(v.detail.contains("capacity 1"), "{v}");
        assert_eq!(placement_within_bounds(&full, 2), Ok(()));
        let offline = Seen::Master(Observation::ExecutorOffline {
            id: ExecutorId(1),
            name: "e1".into(),
            at: Clock::start().instant(at(5)),
            last_heard: Clock::start().instant(at(0)),
            among: 1,
        });
        let on_offline = [ev(0, "e1", registered(1)), ev(5, "m0", offline), ev(6, "e1", started("a", 1))];
        let v = placement_within_bounds(&on_offline, 8).unwrap_err();
        assert_eq!(v.rule, Rule::Placement);
        assert!(v.ids.contains(&Id::Executor(ExecutorId(1))) && v.detail.contains("declared offline"), "{v}");
        let mut anew = on_offline.to_vec();
        anew.insert(2, ev(6, "e1", registered(2)));
        assert_eq!(placement_within_bounds(&anew, 8), Ok(()));
    }
    #[test]
    fn fenced_messages_catch_an_older_leader_epoch_at_an_executor() {
        let registered = |leader_epoch| {
            Seen::Exec(ExecutorObservation::Registered {
                id: ExecutorId(1),
                leader_epoch: LeaderEpoch(leader_epoch),
                sent: crate::harness::Clock::start().instant(foreman::core::time::Time::ZERO),
            })
        };
        let acked = |leader_epoch| {
            let (sent, leader_epoch) = (Clock::start().instant(at(0)), LeaderEpoch(leader_epoch));
            Seen::Exec(ExecutorObservation::HeartbeatAcked { id: ExecutorId(1), sent, leader_epoch })
        };
        let dispatched = |task: &str, leader_epoch| {
            let (task, epoch, leader_epoch) = (task_id(task), Epoch(1), LeaderEpoch(leader_epoch));
            Seen::Exec(ExecutorObservation::TaskStarted { task, epoch, leader_epoch })
        };
        // A failover: the executor hears leader 2, then leader 3 (its acknowledgements, its dispatches).
        let kept = [
            ev(0, "e1", registered(2)),
            ev(1, "e1", dispatched("a", 2)),
            ev(2, "e1", acked(2)),
            ev(3, "e1", acked(3)),
            ev(4, "e1", dispatched("b", 3)),
            // Another executor still hears the deposed leader: each receiver has its own memory.
            ev(5, "e2", acked(2)),
        ];
        assert_eq!(fenced_messages(&kept), Ok(()));
        // The deposed leader's confirm lands after leader 3 was heard (the dispatch guard gone): caught.
        let mut stale = kept.to_vec();
        stale.push(ev(6, "e1", dispatched("c", 2)));
        let v = fenced_messages(&stale).unwrap_err();
        assert_eq!((v.class(), v.rule, v.rule.number(), v.at), (Class::Safety, Rule::FencedMessages, Some(2), at(6)));
        assert_eq!(v.ids, [Id::Node("e1".into()), Id::LeaderEpoch(LeaderEpoch(2)), Id::LeaderEpoch(LeaderEpoch(3))]);
        assert_eq!(
            v.to_string(),
            "safety rule 2 (fenced messages) at 0.006s: e1 accepted a dispatch of c epoch 1 from leader epoch 2 after \
             it had accepted a dispatch of b epoch 1 from leader epoch 3 at 0.004s"
        );
        // So is an acknowledgement or a registration from the deposed leader.
        let mut stale_ack = kept.to_vec();
        stale_ack.push(ev(6, "e1", acked(2)));
        assert_eq!(broken(fenced_messages(&stale_ack)), Some(Rule::FencedMessages));
        let mut stale_registration = kept.to_vec();
        stale_registration.push(ev(6, "e1", registered(1)));
        assert_eq!(broken(fenced_messages(&stale_registration)), Some(Rule::FencedMessages));
        // A restarted executor process knows no leader yet: the deposed one may answer it first.
        let mut restarted = kept.to_vec();
        restarted.extend([ev(6, "e1", Seen::Restarted), ev(7, "e1", registered(2))]);
        assert_eq!(fenced_messages(&restarted), Ok(()));
    }

    #[test]
    fn fenced_messages_catch_an_older_incarnation_at_its_master() {
        let heard_by_leader = |leader_epoch, epoch| {
            Seen::Master(Observation::JobMasterHeard {
                leader_epoch: LeaderEpoch(leader_epoch),
                task: task_id("j"),
                epoch: Epoch(epoch),
            })
        };
        let heard_by_job_master = |master_epoch, task: &str, epoch| {
            let (master, master_epoch, task, epoch) =
                ("j".to_owned(), Epoch(master_epoch), task_id(task), Epoch(epoch));
            Seen::Exec(ExecutorObservation::WorkerHeard { master, master_epoch, task, epoch })
        };
        let kept = [
            // The leader of term 4 hears job master 7, then its successor 8.
            ev(0, "m0", heard_by_leader(4, 7)),
            ev(1, "m0", heard_by_leader(4, 8)),
            // A new term is a new receiver: it may hear the older incarnation first (it re-adopts what checks in).
            ev(2, "m1", heard_by_leader(5, 7)),
            // Job master 8 hears worker w0 epoch 20, then 21; worker w1 has its own epochs.
            ev(3, "e1", heard_by_job_master(8, "j/w0", 20)),
            ev(4, "e1", heard_by_job_master(8, "j/w0", 21)),
            ev(5, "e1", heard_by_job_master(8, "j/w1", 3)),
            // Its successor, job master 9, is another receiver.
            ev(6, "e1", heard_by_job_master(9, "j/w0", 20)),
        ];
        assert_eq!(fenced_messages(&kept), Ok(()));
        let mut stale_job_master = kept.to_vec();
        stale_job_master.push(ev(7, "m0", heard_by_leader(4, 7)));
        let v = fenced_messages(&stale_job_master).unwrap_err();
        assert_eq!((v.rule, v.at, v.task()), (Rule::FencedMessages, at(7), Some("j")));
        assert_eq!(v.ids[..2], [Id::Master("m0".into()), Id::LeaderEpoch(LeaderEpoch(4))]);
        assert!(v.detail.starts_with("m0 (leader epoch 4) accepted a message from j epoch 7 after"), "{v}");
        let mut stale_worker = kept.to_vec();
        stale_worker.push(ev(7, "e1", heard_by_job_master(8, "j/w0", 20)));
        let v = fenced_messages(&stale_worker).unwrap_err();
        assert_eq!((v.rule, v.at), (Rule::FencedMessages, at(7)));
        assert!(v.ids.contains(&Id::Task("j/w0".into())) && v.ids.contains(&Id::Epoch(Epoch(21))), "{v}");
        assert!(v.detail.starts_with("job master j epoch 8 on e1 accepted a message from j/w0 epoch 20"), "{v}");
    }
}
