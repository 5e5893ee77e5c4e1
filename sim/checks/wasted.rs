//! Wasted work (issue 13, item 4): every restart of a job master or a worker is counted, and each must be explained
//! by a fault that overlapped the life of the incarnation it replaces. A restart with nothing disturbed between the
//! two starts is work a correct decision would not have thrown away: a wrong decision that safety catches
//! downstream (a dispatch an executor refuses, a worker told it is stale for nothing, a job master given up while
//! it was fine) still fails this checker.
//!
//! What disturbs: every step of the fault plan from its start to its heal, every kill, pause and graceful stop of a
//! node until it is back, and what the run says the story does not hold (its fault points while they are on); and
//! each of these for `horizon` after it ended, the time its consequences take to play out (an executor that fenced
//! itself during a cut refuses work until a heartbeat sent after the heal is acknowledged; an id of a killed
//! process lives until its TTL runs out). So the checker judges the quiet stretches of a run: a wrong decision
//! there is caught, one in the aftermath of a fault is not (seed 1795945331's new leader, resumed from a pause,
//! placed job masters four times in a second on an executor still fenced by a cut just healed: it took a heartbeat
//! sent during the cut, delivered late, as proof the executor was back).
//! Restarts are counted per attempt: a job master's start is the leader's `JobMasterStarted` (so a dispatch that
//! never ran counts too), a worker's is its task's `TaskStarted` on an executor. The story must record every fault
//! (the swarm's does: its faults are all plan steps); scenarios that cut links by hand do not run this checker.

use std::collections::BTreeMap;

use foreman::core::ids::TaskId;
use foreman::core::invariants::{Id, Rule, Violation};
use foreman::core::time::Time;
use foreman::executor::ExecutorObservation;
use foreman::master::Observation;

use super::Events;
use crate::cluster::Seen;

/// What the checker counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restarts {
    /// Job-master attempts after a job's first.
    pub job_masters: usize,
    /// Worker incarnations started after a worker's first.
    pub workers: usize,
}

/// Every restart of the story, each required to have a disturbance (or the `horizon` after one) overlapping the time
/// since the start it replaces; `disturbed` adds stretches the story does not record.
pub fn restarts_explained(
    events: &Events,
    disturbed: &[(Time, Time)],
    horizon: std::time::Duration,
) -> Result<Restarts, Violation> {
    let end = events.last().map_or(Time::ZERO, |(at, _, _)| *at);
    let mut stretches: Vec<(Time, Time)> = disturbed.to_vec();
    let mut open: BTreeMap<String, Time> = BTreeMap::new();
    for (at, node, seen) in events {
        match seen {
            Seen::FaultBegan { step, .. } => {
                open.insert(format!("step {step}"), *at);
            }
            Seen::FaultHealed { step, .. } => {
                if let Some(from) = open.remove(&format!("step {step}")) {
                    stretches.push((from, *at));
                }
            }
            Seen::Killed | Seen::Paused | Seen::StopAsked => {
                open.entry(format!("node {node}")).or_insert(*at);
            }
            Seen::Restarted | Seen::Resumed => {
                if let Some(from) = open.remove(&format!("node {node}")) {
                    stretches.push((from, *at));
                }
            }
            _ => {}
        }
    }
    stretches.extend(open.into_values().map(|from| (from, end)));
    let explained = |from: Time, to: Time| stretches.iter().any(|(a, b)| *a <= to && b.saturating_add(horizon) >= from);
    let mut last_start: BTreeMap<TaskId, (Time, u64)> = BTreeMap::new();
    let mut counted = Restarts::default();
    for (at, node, seen) in events {
        let (task, epoch, job_master) = match seen {
            Seen::Master(Observation::JobMasterStarted { job, epoch, .. }) => (TaskId::job_master(job), *epoch, true),
            Seen::Exec(ExecutorObservation::TaskStarted { task, epoch, .. }) if task.is_worker() => {
                (task.clone(), *epoch, false)
            }
            _ => continue,
        };
        if let Some((from, old)) = last_start.insert(task.clone(), (*at, epoch.0)) {
            if old == epoch.0 {
                continue;
            }
            if job_master {
                counted.job_masters += 1;
            } else {
                counted.workers += 1;
            }
            if !explained(from, *at) {
                let what = if job_master { "job master" } else { "worker" };
                let detail = format!(
                    "{node} started {what} {task} again (incarnation {}) at {at}, though nothing was disturbed since \
                     incarnation {old} started at {from}",
                    epoch.0
                );
                return Err(
                    Violation::new(Rule::WastedWork, *at, detail).with([Id::Task(task.to_string()), Id::Epoch(epoch)])
                );
            }
        }
    }
    Ok(counted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::task_id;
    use foreman::core::ids::{Epoch, JobId, LeaderEpoch};
    use std::time::Duration;

    const H: Duration = Duration::from_millis(200);

    fn t(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    fn started(ms: u64, job: &str, epoch: u64) -> (Time, String, Seen) {
        let o = Observation::JobMasterStarted {
            job: JobId::parse(job).expect("a job id"),
            epoch: Epoch(epoch),
            restarts: 0,
            failures: 0,
            delay: Duration::ZERO,
            allowed: None,
            at: crate::harness::Clock::start().instant(t(ms)),
        };
        (t(ms), "master-0".into(), Seen::Master(o))
    }

    fn worker(ms: u64, task: &str, epoch: u64) -> (Time, String, Seen) {
        let o =
            ExecutorObservation::TaskStarted { task: task_id(task), epoch: Epoch(epoch), leader_epoch: LeaderEpoch(1) };
        (t(ms), "executor-0".into(), Seen::Exec(o))
    }

    #[madsim::test]
    async fn a_restart_needs_a_fault_in_its_window() {
        let quiet = vec![started(1_000, "job-0", 1), worker(2_000, "job-0/w0", 1), started(9_000, "job-0", 2)];
        let v = restarts_explained(&quiet, &[], H).expect_err("nothing disturbed the first incarnation");
        assert_eq!(v.rule, Rule::WastedWork);
        // A kill between the two starts explains it, healed or not; so does a stretch the caller gives.
        let mut killed = quiet.clone();
        killed.insert(2, (t(4_000), "executor-0".into(), Seen::Killed));
        assert_eq!(restarts_explained(&killed, &[], H), Ok(Restarts { job_masters: 1, workers: 0 }));
        assert!(restarts_explained(&quiet, &[(t(8_000), t(8_500))], H).is_ok());
        // A fault healed before the first start explains nothing, but within the horizon before it, it does.
        let mut early = vec![
            (
                t(100),
                "faults".into(),
                Seen::FaultBegan { step: 1, plan: "0.1s loss(0.1) for 0.5s".into(), broke: String::new() },
            ),
            (t(600), "faults".into(), Seen::FaultHealed { step: 1, healed: String::new() }),
        ];
        early.extend(quiet.clone());
        assert!(restarts_explained(&early, &[], H).is_err());
        assert!(restarts_explained(&early, &[], Duration::from_millis(400)).is_ok());
        // A worker's restart is counted and judged the same way.
        let workers = vec![worker(1_000, "job-0/w0", 1), worker(3_000, "job-0/w0", 2)];
        assert!(restarts_explained(&workers, &[], H).is_err());
        assert_eq!(restarts_explained(&workers, &[(t(0), t(1_500))], H), Ok(Restarts { job_masters: 0, workers: 1 }));
    }
}
