//! Capacity accounting (design.md §8): every slot the leader holds is explained by something live.
//!
//! The leader reports its view of the slots after every pass of its loop ([`Observation::Capacity`]): per
//! executor what its last report counts and what reservations hold, and every reservation with the incarnation it
//! was made for and when. Two rules over that trace:
//! - **Window**: no reservation is older than the reservation TTL (it is given back by then, settled or not).
//! - **Settled**: a reservation made for an incarnation that started on its executor is gone once the leader that
//!   holds it has taken a heartbeat of that executor sent after that start (and after the placement): that
//!   heartbeat listed the incarnation running or ended, and either settles it.
//!
//! And one over the end of a run ([`capacity_settled`]): once every job has ended and the cluster has settled,
//! the leader holds nothing beyond what each executor really runs.

use std::collections::BTreeMap;
use std::time::Duration;

use foreman::core::ids::{Epoch, ExecutorId, LeaderEpoch, TaskId};
use foreman::core::invariants::{Id, Rule, Violation};
use foreman::core::time::Time;
use foreman::executor::ExecutorObservation;
use foreman::master::{CapacitySample, Observation};

use super::Events;
use crate::cluster::Seen;
use crate::harness::Clock;

/// An acknowledged heartbeat: recorded when its reply arrived, sent at, acknowledged by the leader of this epoch.
#[derive(Clone, Copy, Debug)]
struct Ack {
    recorded: Time,
    sent: Time,
    leader_epoch: LeaderEpoch,
}

/// The window and settled rules over a whole run; the first reservation that breaks one, with its ids and times.
pub fn reservations_explained(clock: &Clock, events: &Events, ttl: Duration) -> Result<(), Violation> {
    // Each incarnation's start with the executor id it started under, and each executor's acknowledged heartbeats
    // in the order they were sent.
    let mut started: BTreeMap<(&TaskId, Epoch), (Time, ExecutorId)> = BTreeMap::new();
    let mut acks: BTreeMap<ExecutorId, Vec<Ack>> = BTreeMap::new();
    let mut id_of: BTreeMap<&str, ExecutorId> = BTreeMap::new();
    for (at, node, seen) in events {
        match seen {
            Seen::Exec(ExecutorObservation::Registered { id, .. }) => {
                id_of.insert(node.as_str(), *id);
            }
            Seen::Exec(ExecutorObservation::TaskStarted { task, epoch, .. }) => {
                if let Some(&id) = id_of.get(node.as_str()) {
                    started.entry((task, *epoch)).or_insert((*at, id));
                }
            }
            Seen::Exec(ExecutorObservation::HeartbeatAcked { id, sent, leader_epoch }) => {
                let ack = Ack { recorded: *at, sent: clock.at(*sent), leader_epoch: *leader_epoch };
                acks.entry(*id).or_default().push(ack);
            }
            _ => {}
        }
    }
    for (at, node, seen) in events {
        let Seen::Master(Observation::Capacity(sample)) = seen else { continue };
        check_sample(clock, *at, node, sample, ttl, &started, &acks)?;
    }
    Ok(())
}

fn check_sample(
    clock: &Clock,
    at: Time,
    node: &str,
    sample: &CapacitySample,
    ttl: Duration,
    started: &BTreeMap<(&TaskId, Epoch), (Time, ExecutorId)>,
    acks: &BTreeMap<ExecutorId, Vec<Ack>>,
) -> Result<(), Violation> {
    for r in &sample.reservations {
        let placed = clock.at(r.placed);
        let age = at.saturating_since(placed);
        let ids = [
            Id::Master(node.to_owned()),
            Id::LeaderEpoch(sample.epoch),
            Id::Executor(r.executor),
            Id::Task(r.task.to_string()),
            Id::Epoch(r.epoch),
        ];
        if age > ttl {
            let detail = format!(
                "{node}, leader of epoch {}, still holds {} slot(s) on executor {} for {} epoch {}, reserved at \
                 {placed}, {age:?} ago; no reservation outlives the reservation TTL {ttl:?}",
                sample.epoch, r.cost, r.executor.0, r.task, r.epoch
            );
            return Err(Violation::new(Rule::ReservationWindow, at, detail).with(ids));
        }
        if r.epoch == Epoch::NONE {
            continue;
        }
        // Started on the executor the reservation holds slots on: a placement repeated for the same incarnation (a
        // ScheduleTask retried after its reply was lost) may hold slots on another executor, where nothing will
        // ever report it; that one ends with its window.
        let Some(&(start, on)) = started.get(&(&r.task, r.epoch)) else { continue };
        if on != r.executor {
            continue;
        }
        // The first heartbeat of its executor sent after the start carries the incarnation, running or ended.
        let Some(first) = acks.get(&r.executor).and_then(|a| a.iter().find(|a| a.sent > start)) else { continue };
        let settled = first.sent >= placed && first.recorded <= at && first.leader_epoch == sample.epoch;
        if settled {
            let detail = format!(
                "{node}, leader of epoch {}, still holds {} slot(s) on executor {} for {} epoch {} (reserved at \
                 {placed}), although that incarnation started at {start} and this leader took the executor's \
                 heartbeat sent at {} (acknowledged at {}), which reported it",
                sample.epoch, r.cost, r.executor.0, r.task, r.epoch, first.sent, first.recorded
            );
            return Err(Violation::new(Rule::ReservationSettled, at, detail).with(ids));
        }
    }
    Ok(())
}

/// What one executor node runs, for [`capacity_settled`]: its registered id and the slots of its running tasks.
#[derive(Clone, Debug)]
pub struct Running {
    pub node: String,
    pub id: Option<ExecutorId>,
    pub slots: u32,
}

/// Once the cluster has settled: the leader's last view holds no reservation, and the slots each executor's report
/// counts are exactly what the executor runs; with `idle` (every job ended), that is nothing at all.
pub fn capacity_settled(events: &Events, running: &[Running], idle: bool) -> Result<(), Violation> {
    let Some((at, node, sample)) = events.iter().rev().find_map(|(at, node, seen)| match seen {
        Seen::Master(Observation::Capacity(s)) => Some((*at, node, s)),
        _ => None,
    }) else {
        let end = events.last().map_or(Time::ZERO, |(at, _, _)| *at);
        return Err(Violation::new(Rule::CapacitySettled, end, "no leader ever reported its slots"));
    };
    let leader = [Id::Master(node.clone()), Id::LeaderEpoch(sample.epoch)];
    if let Some(r) = sample.reservations.first() {
        let detail = format!(
            "settled, {node} (epoch {}) still holds {} slot(s) on executor {} for {} epoch {}",
            sample.epoch, r.cost, r.executor.0, r.task, r.epoch
        );
        let ids = [Id::Executor(r.executor), Id::Task(r.task.to_string()), Id::Epoch(r.epoch)];
        return Err(Violation::new(Rule::CapacitySettled, at, detail).with(leader).with(ids));
    }
    for e in running {
        if idle && e.slots > 0 {
            let detail = format!("every job has ended, but {} still runs tasks of {} slot(s)", e.node, e.slots);
            return Err(Violation::new(Rule::CapacitySettled, at, detail).with([Id::Node(e.node.clone())]));
        }
        let Some(id) = e.id else { continue };
        let Some(held) = sample.executors.iter().find(|x| x.id == id) else { continue };
        if held.reported + held.reserved != e.slots {
            let detail = format!(
                "{node} (epoch {}) counts {} reported + {} reserved slot(s) on executor {} ({}), which runs tasks of \
                 {} slot(s)",
                sample.epoch, held.reported, held.reserved, id.0, e.node, e.slots
            );
            let ids = [Id::Executor(id), Id::Node(e.node.clone())];
            return Err(Violation::new(Rule::CapacitySettled, at, detail).with(leader).with(ids));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::task_id;
    use foreman::core::invariants::Class;
    use foreman::master::{ExecutorSlots, ReservationSample};

    fn ms(n: u64) -> Time {
        Time::from_millis(n)
    }

    fn sample(clock: &Clock, at: u64, reservations: &[(&str, u64, u64)]) -> (Time, String, Seen) {
        let reservations = reservations
            .iter()
            .map(|&(task, epoch, placed)| ReservationSample {
                task: task_id(task),
                executor: ExecutorId(1),
                epoch: Epoch(epoch),
                cost: 1,
                placed: clock.instant(ms(placed)),
            })
            .collect();
        let executors = vec![ExecutorSlots { id: ExecutorId(1), capacity: 4, reported: 0, reserved: 1 }];
        let s = CapacitySample {
            epoch: LeaderEpoch(2),
            at: clock.instant(ms(at)),
            executors,
            reservations,
            suspecting: false,
            job_master_slots: 0,
            job_master_cap: 2,
            waiting: vec![],
        };
        (ms(at), "master-0".into(), Seen::Master(Observation::Capacity(s)))
    }

    fn ack(clock: &Clock, recorded: u64, sent: u64, leader_epoch: u64) -> (Time, String, Seen) {
        let (sent, leader_epoch) = (clock.instant(ms(sent)), LeaderEpoch(leader_epoch));
        let o = ExecutorObservation::HeartbeatAcked { id: ExecutorId(1), sent, leader_epoch };
        (ms(recorded), "executor-0".into(), Seen::Exec(o))
    }

    fn started(at: u64, task: &str, epoch: u64) -> (Time, String, Seen) {
        let o =
            ExecutorObservation::TaskStarted { task: task_id(task), epoch: Epoch(epoch), leader_epoch: LeaderEpoch(2) };
        (ms(at), "executor-0".into(), Seen::Exec(o))
    }

    /// `node` registered as executor `id`.
    fn registered(node: &str, id: u64) -> (Time, String, Seen) {
        let o = ExecutorObservation::Registered {
            id: ExecutorId(id),
            leader_epoch: LeaderEpoch(2),
            sent: crate::harness::Clock::start().instant(foreman::core::time::Time::ZERO),
        };
        (ms(0), node.into(), Seen::Exec(o))
    }

    #[test]
    fn a_reservation_past_its_window_or_past_the_report_that_settles_it_is_caught() {
        let clock = Clock::start();
        let ttl = Duration::from_secs(10);
        let check = |events: &[(Time, String, Seen)]| reservations_explained(&clock, events, ttl);
        // Within its window, nothing reported yet: fine.
        assert_eq!(check(&[sample(&clock, 9_000, &[("j/w0", 5, 0)])]), Ok(()));
        // Past its window: caught, whatever else happened.
        let v = check(&[sample(&clock, 10_001, &[("j/w0", 5, 0)])]).unwrap_err();
        assert_eq!((v.rule, v.class(), v.task()), (Rule::ReservationWindow, Class::Safety, Some("j/w0")), "{v}");
        assert!(v.ids.contains(&Id::Epoch(Epoch(5))), "{v}");
        // Started at 100, stopped at once; the heartbeat sent at 300 reported it, acknowledged at 310 by this
        // leader: a sample after that still holding it is a leak.
        let leak = [
            registered("executor-0", 1),
            started(100, "j/w0", 5),
            ack(&clock, 310, 300, 2),
            sample(&clock, 500, &[("j/w0", 5, 50)]),
        ];
        assert_eq!(check(&leak).map_err(|v| v.rule), Err(Rule::ReservationSettled));
        // ...but not when the incarnation started on another executor than the one the reservation holds slots
        // on (a repeated placement of it went elsewhere): nothing will report it there, its window ends it.
        let elsewhere = [
            registered("executor-0", 2),
            started(100, "j/w0", 5),
            ack(&clock, 310, 300, 2),
            sample(&clock, 500, &[("j/w0", 5, 50)]),
        ];
        assert_eq!(check(&elsewhere), Ok(()));
        // ...but not before the acknowledgement, nor for another leader's acknowledgement, nor for a reservation
        // made after that heartbeat (a placement held up in the network, made after the incarnation ended).
        let early = [
            registered("executor-0", 1),
            started(100, "j/w0", 5),
            sample(&clock, 305, &[("j/w0", 5, 50)]),
            ack(&clock, 310, 300, 2),
        ];
        assert_eq!(check(&early), Ok(()));
        let other = [
            registered("executor-0", 1),
            started(100, "j/w0", 5),
            ack(&clock, 310, 300, 1),
            sample(&clock, 500, &[("j/w0", 5, 50)]),
        ];
        assert_eq!(check(&other), Ok(()));
        let late = [
            registered("executor-0", 1),
            started(100, "j/w0", 5),
            ack(&clock, 310, 300, 2),
            sample(&clock, 500, &[("j/w0", 5, 400)]),
        ];
        assert_eq!(check(&late), Ok(()));
        // A heartbeat sent before the start says nothing of it; a reservation for another incarnation neither.
        let before = [
            registered("executor-0", 1),
            ack(&clock, 90, 80, 2),
            started(100, "j/w0", 5),
            sample(&clock, 500, &[("j/w0", 5, 50)]),
        ];
        assert_eq!(check(&before), Ok(()));
        let newer = [
            registered("executor-0", 1),
            started(100, "j/w0", 5),
            ack(&clock, 310, 300, 2),
            sample(&clock, 500, &[("j/w0", 6, 50)]),
        ];
        assert_eq!(check(&newer), Ok(()));
    }

    #[test]
    fn a_settled_cluster_holds_what_its_executors_run() {
        let clock = Clock::start();
        let idle = |slots| [Running { node: "executor-0".into(), id: Some(ExecutorId(1)), slots }];
        let mut s = sample(&clock, 1_000, &[]);
        if let Seen::Master(Observation::Capacity(c)) = &mut s.2 {
            c.executors[0].reserved = 0;
        }
        assert_eq!(capacity_settled(std::slice::from_ref(&s), &idle(0), true), Ok(()));
        let still_runs = capacity_settled(std::slice::from_ref(&s), &idle(1), true).unwrap_err();
        assert_eq!((still_runs.rule, still_runs.class()), (Rule::CapacitySettled, Class::Liveness));
        assert_eq!(still_runs.ids, [Id::Node("executor-0".into())]);
        let miscounted = capacity_settled(std::slice::from_ref(&s), &idle(1), false).unwrap_err();
        assert!(miscounted.ids.contains(&Id::Executor(ExecutorId(1))), "{miscounted}");
        let held = sample(&clock, 1_000, &[("j", 3, 900)]);
        let v = capacity_settled(&[held], &idle(0), true).unwrap_err();
        assert_eq!((v.rule, v.task()), (Rule::CapacitySettled, Some("j")));
        assert_eq!(capacity_settled(&[], &idle(0), true).map_err(|v| v.rule), Err(Rule::CapacitySettled));
    }
}
