//! Checkers over a run's recorded events. Each returns the first broken rule with the ids and simulated time.

mod cancel;
mod capacity;
mod checkpoints;
mod detection;
mod history;
mod incarnations;
mod leader;
mod placement;
mod registry;

pub use cancel::canceled_never_restart;
pub use capacity::{capacity_settled, reservations_explained, Running};
pub use checkpoints::checkpoints_forward;
pub use detection::{offline_declarations, Detection};
pub use history::job_history;
pub use incarnations::one_live_incarnation;
pub use leader::{acting_periods, single_acting_leader};
pub use placement::{placement_meets_selectors, placement_within_bounds};
pub use registry::ids_never_reused;

use std::time::Duration;

use foreman::core::time::Time;
use foreman::executor::ExecutorObservation;
use foreman::master::Observation;

use crate::cluster::Seen;
use crate::harness::Clock;

type Events = [(Time, String, Seen)];
/// p50 / p99 / max of a sample, for the figures a scenario prints.
pub fn summary(mut xs: Vec<Duration>) -> String {
    if xs.is_empty() {
        return "no samples".into();
    }
    xs.sort();
    let pick = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
    format!("n={} p50={:?} p99={:?} max={:?}", xs.len(), pick(0.5), pick(0.99), xs[xs.len() - 1])
}

/// The checkers themselves: each fails on a story that breaks its rule, and passes the same story kept.
#[cfg(test)]
mod tests {
    use super::*;
    use foreman::executor::StopWhy;

    fn at(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    fn ev(ms: u64, node: &str, seen: Seen) -> (Time, String, Seen) {
        (at(ms), node.to_owned(), seen)
    }

    fn started(task: &str, epoch: u64) -> Seen {
        Seen::Exec(ExecutorObservation::TaskStarted { task: task.into(), epoch })
    }

    fn stopped(task: &str, epoch: u64) -> Seen {
        Seen::Exec(ExecutorObservation::TaskStopped { task: task.into(), epoch, why: StopWhy::Fenced })
    }

    fn checkpoint(task: &str, epoch: u64, counter: u64) -> Seen {
        Seen::Exec(ExecutorObservation::Checkpoint { task: task.into(), epoch, counter })
    }

    #[test]
    fn one_live_incarnation_catches_overlaps_and_knows_pauses_and_kills() {
        let overlap =
            [ev(0, "e1", started("j/w0", 1)), ev(5, "e2", started("j/w0", 2)), ev(9, "e1", stopped("j/w0", 1))];
        assert!(one_live_incarnation(&overlap).unwrap_err().contains("safety rule 3"));
        let handover =
            [ev(0, "e1", started("j/w0", 1)), ev(5, "e1", stopped("j/w0", 1)), ev(6, "e2", started("j/w0", 2))];
        assert_eq!(one_live_incarnation(&handover), Ok(()));
        let older = [ev(0, "e1", started("j", 5)), ev(1, "e1", stopped("j", 5)), ev(2, "e2", started("j", 4))];
        assert!(one_live_incarnation(&older).unwrap_err().contains("after epoch 5"));
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
        assert!(one_live_incarnation(&paused)
            .unwrap_err()
            .contains("j epoch 1 on e1 was resumed and did not stop within 5ms while epoch 2 is live on e2"));
        // ...and resumed and acting at once: caught.
        paused[4] = ev(10, "e1", checkpoint("j", 1, 7));
        assert!(one_live_incarnation(&paused).unwrap_err().contains("acted on e1 after a resume"));
        let phantom = [ev(0, "e1", stopped("j", 1))];
        assert!(one_live_incarnation(&phantom).unwrap_err().contains("never started"));
        // Quiesced for a drain: no longer live, though its stop (after its report) comes after the replacement.
        let quiesced = |task: &str, epoch| Seen::Exec(ExecutorObservation::TaskQuiesced { task: task.into(), epoch });
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
        assert!(one_live_incarnation(&wrong).unwrap_err().contains("while epoch 1 is live on e1"));
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
        assert!(checkpoints_forward(&back).unwrap_err().contains("checkpointed 4 after 5"));
        let skip = [ev(0, "e1", checkpoint("j/w0", 1, 1)), ev(1, "e1", checkpoint("j/w0", 1, 3))];
        assert!(checkpoints_forward(&skip).is_err());
    }

    #[test]
    fn canceled_jobs_never_restart() {
        let cancel = Seen::JobCanceled { id: "j".into(), epoch: 1, state: 3 };
        let restarted = [ev(0, "e1", started("j", 1)), ev(1, "client", cancel.clone()), ev(2, "e2", started("j", 2))];
        assert!(canceled_never_restart(&restarted).unwrap_err().contains("newer than epoch 1"));
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
        assert!(canceled_never_restart(&late_worker).unwrap_err().contains("its job master stopped"));
        assert_eq!(canceled_never_restart(&late_worker[..4]), Ok(()));
        // Another job whose id starts the same is not this job.
        let other = [ev(1, "client", cancel), ev(2, "e2", started("jx", 1)), ev(3, "e2", started("jx/w0", 2))];
        assert_eq!(canceled_never_restart(&other), Ok(()));
    }

    #[test]
    fn detection_bound_knows_holds_and_a_paused_leader() {
        let clock = Clock::start();
        let (ttl, check, hold, slack) =
            (Duration::from_secs(10), Duration::from_millis(500), Duration::from_secs(10), Duration::from_millis(200));
        let offline = |when: u64| {
            Seen::Master(Observation::ExecutorOffline {
                id: 1,
                name: "e1".into(),
                at: clock.instant(at(when)),
                last_heard: clock.instant(at(0)),
            })
        };
        let check_of = |events: &[(Time, String, Seen)]| offline_declarations(&clock, events, ttl, check, hold, slack);
        assert!(check_of(&[ev(10_400, "m0", offline(10_400))]).is_ok());
        assert!(check_of(&[ev(12_000, "m0", offline(12_000))]).unwrap_err().contains("detection bound"));
        let held = Seen::Master(Observation::EvictionsHeld { held: 2, at: clock.instant(at(10_000)) });
        assert!(check_of(&[ev(10_000, "m0", held), ev(20_000, "m0", offline(20_000))]).is_ok());
        let paused = [ev(5_000, "m0", Seen::Paused), ev(9_000, "m0", Seen::Resumed), ev(14_000, "m0", offline(14_000))];
        assert!(check_of(&paused).is_ok());
        let other_paused =
            [ev(5_000, "m1", Seen::Paused), ev(9_000, "m1", Seen::Resumed), ev(14_000, "m0", offline(14_000))];
        assert!(check_of(&other_paused).is_err());
        // A false alarm: acknowledged 2 s before the declaration.
        let acked = |sent: u64| {
            Seen::Exec(ExecutorObservation::HeartbeatAcked { id: 1, sent: clock.instant(at(sent)), leader_epoch: 1 })
        };
        assert!(check_of(&[ev(8_400, "e1", acked(8_300)), ev(10_400, "m0", offline(10_400))])
            .unwrap_err()
            .contains("false alarms"));
        // An acknowledgement that arrives late (its executor was paused) is evidence only from its send time.
        assert!(check_of(&[ev(10_390, "e1", acked(0)), ev(10_400, "m0", offline(10_400))]).is_ok());
    }

    #[test]
    fn placement_within_capacity_and_never_on_an_offline_id() {
        let registered = |id| Seen::Exec(ExecutorObservation::Registered { id });
        let full = [ev(0, "e1", registered(1)), ev(1, "e1", started("a", 1)), ev(2, "e1", started("b", 2))];
        assert!(placement_within_bounds(&full, 1).unwrap_err().contains("capacity 1"));
        assert_eq!(placement_within_bounds(&full, 2), Ok(()));
        let offline = Seen::Master(Observation::ExecutorOffline {
            id: 1,
            name: "e1".into(),
            at: Clock::start().instant(at(5)),
            last_heard: Clock::start().instant(at(0)),
        });
        let on_offline = [ev(0, "e1", registered(1)), ev(5, "m0", offline), ev(6, "e1", started("a", 1))];
        assert!(placement_within_bounds(&on_offline, 8).unwrap_err().contains("declared offline"));
        let mut anew = on_offline.to_vec();
        anew.insert(2, ev(6, "e1", registered(2)));
        assert_eq!(placement_within_bounds(&anew, 8), Ok(()));
    }
}
