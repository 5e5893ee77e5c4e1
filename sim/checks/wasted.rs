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
//! A worker started again after a failure its work declared (retryable: its retry is how the failure is handled,
//! which the failures checker judges) is neither counted nor judged here. Restarts are counted per attempt: a job master's start is the leader's `JobMasterStarted` (so a dispatch that
//! never ran counts too), a worker's is its task's `TaskStarted` on an executor. The story must record every fault
//! (the swarm's does: its faults are all plan steps); scenarios that cut links by hand do not run this checker.

use std::collections::{BTreeMap, BTreeSet};

use foreman::core::ids::TaskId;
use foreman::core::invariants::{Id, Rule, Violation};
use foreman::core::time::Time;
use foreman::executor::{ExecutorObservation, StopWhy, TaskExit};
use foreman::master::Observation;

use super::Events;
use crate::cluster::Seen;
use crate::faults::Fault;

/// What the checker counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restarts {
    /// Job-master attempts after a job's first.
    pub job_masters: usize,
    /// Worker incarnations started after a worker's first.
    pub workers: usize,
}

/// A stretch of the story in which something was disturbed: one master only (`Some`: the node, or the plan step
/// that disturbed the leader), or more.
#[derive(Clone, Debug)]
struct Stretch {
    from: Time,
    to: Time,
    master: Option<String>,
}

/// Every restart of the story, each required to have a disturbance (or the `horizon` after one) overlapping the time
/// since the start it replaces; `disturbed` adds stretches the story does not record.
///
/// A disturbance of one master alone (killed, paused, stopped, held at a fault point, or the leader cut from etcd)
/// explains no restart of work that ran (its task started on an executor) when `failovers` holds (the cluster has
/// another master to take over, and its timings keep work through a failover: `Config::failover_keeps_work`) and
/// no other master was disturbed within `horizon` of it: that is a leader failover, through which design.md §6 says
/// healthy job masters keep running, re-adopted and not restarted ([`Rule::ReAdopted`]). With one master, timings
/// that do not claim it, or masters disturbed together, no failover keeps work, and such a restart is explained.
pub fn restarts_explained(
    events: &Events,
    disturbed: &[(Time, Time)],
    horizon: std::time::Duration,
    failovers: bool,
) -> Result<Restarts, Violation> {
    let end = events.last().map_or(Time::ZERO, |(at, _, _)| *at);
    let mut stretches: Vec<Stretch> = disturbed.iter().map(|&(from, to)| Stretch { from, to, master: None }).collect();
    let mut open: BTreeMap<String, (Time, Option<String>)> = BTreeMap::new();
    // Per node and plan step: the first stall's start, the master it disturbs alone, and how many stalls are on.
    let mut stalls: BTreeMap<String, (Time, Option<String>, usize)> = BTreeMap::new();
    let master_of = |node: &str| node.starts_with("master-").then(|| node.to_owned());
    for (at, node, seen) in events {
        match seen {
            Seen::FaultBegan { step, plan, .. } => {
                // A step the plan cannot read back counts as a disturbance of everything. A master's kill, pause or
                // stop is in the story as its node's, with the node's name.
                let fault = plan.parse::<crate::faults::Step>().ok().map(|s| s.fault);
                let node_level = fault.as_ref().is_some_and(|f| {
                    matches!(f, Fault::KillLeader | Fault::KillMaster(_) | Fault::PauseMaster(_) | Fault::StopMaster(_))
                });
                if node_level {
                    continue;
                }
                let master = fault.is_some_and(|f| f.masters_only()).then(|| format!("step {step}"));
                open.insert(format!("step {step}"), (*at, master));
            }
            Seen::FaultHealed { step, .. } => {
                if let Some((from, master)) = open.remove(&format!("step {step}")) {
                    stretches.push(Stretch { from, to: *at, master });
                }
            }
            Seen::Killed | Seen::Paused | Seen::StopAsked => {
                open.entry(format!("node {node}")).or_insert((*at, master_of(node)));
            }
            Seen::Restarted | Seen::Resumed => {
                if let Some((from, master)) = open.remove(&format!("node {node}")) {
                    stretches.push(Stretch { from, to: *at, master });
                }
            }
            // A hold's stalls outlive its step: one begun before the heal lasts its full stall. A node is disturbed
            // while any stall of a step is on (swarm seed 1796543579: a dispatch held 31.5 s on executor-1 kept it
            // refusing the job's later incarnations 25 s after the step healed).
            Seen::HoldBegan { step, .. } => {
                let key = format!("hold {node} {step}");
                let (_, _, on) = stalls.entry(key).or_insert_with(|| (*at, master_of(node), 0));
                *on += 1;
            }
            Seen::HoldEnded { step, .. } => {
                let key = format!("hold {node} {step}");
                if let Some((from, master, on)) = stalls.get_mut(&key) {
                    *on -= 1;
                    if *on == 0 {
                        stretches.push(Stretch { from: *from, to: *at, master: master.take() });
                        stalls.remove(&key);
                    }
                }
            }
            _ => {}
        }
    }
    stretches.extend(open.into_values().map(|(from, master)| Stretch { from, to: end, master }));
    stretches.extend(stalls.into_values().map(|(from, master, _)| Stretch { from, to: end, master }));
    // A master's disturbance is a failover only with another master to take over, none disturbed near it.
    let near =
        |a: &Stretch, b: &Stretch| a.from <= b.to.saturating_add(horizon) && b.from <= a.to.saturating_add(horizon);
    let together: Vec<bool> = stretches
        .iter()
        .map(|s| {
            s.master.is_some()
                && (!failovers || stretches.iter().any(|t| t.master.is_some() && t.master != s.master && near(s, t)))
        })
        .collect();
    for (s, together) in stretches.iter_mut().zip(together) {
        if together {
            s.master = None;
        }
    }
    let explained = |from: Time, to: Time, failovers: bool| {
        stretches
            .iter()
            .any(|s| (failovers || s.master.is_none()) && s.from <= to && s.to.saturating_add(horizon) >= from)
    };
    let mut last_start: BTreeMap<TaskId, (Time, u64)> = BTreeMap::new();
    // Incarnations that ran: started on an executor.
    let mut ran: BTreeSet<(TaskId, u64)> = BTreeSet::new();
    let mut counted = Restarts::default();
    // Incarnations that ended failing, as their work declared (a worker started again after its own failure is not
    // work a fault wasted: its retry is the failure's handling, judged by the failures checker).
    let mut failed: BTreeSet<(TaskId, u64)> = BTreeSet::new();
    for (at, node, seen) in events {
        match seen {
            Seen::Exec(ExecutorObservation::TaskStarted { task, epoch, .. }) => {
                ran.insert((task.clone(), epoch.0));
            }
            Seen::Exec(ExecutorObservation::TaskStopped {
                task,
                epoch,
                why: StopWhy::Exited(TaskExit::Failed(_) | TaskExit::FailedRetryable(_)),
            }) => {
                failed.insert((task.clone(), epoch.0));
            }
            _ => {}
        }
        let (task, epoch, job_master) = match seen {
            Seen::Master(Observation::JobMasterStarted { job, epoch, .. }) => (TaskId::job_master(job), *epoch, true),
            Seen::Exec(ExecutorObservation::TaskStarted { task, epoch, .. }) if task.is_worker() => {
                (task.clone(), *epoch, false)
            }
            _ => continue,
        };
        if let Some((from, old)) = last_start.insert(task.clone(), (*at, epoch.0)) {
            if old == epoch.0 || failed.contains(&(task.clone(), old)) {
                continue;
            }
            if job_master {
                counted.job_masters += 1;
            } else {
                counted.workers += 1;
            }
            let what = if job_master { "job master" } else { "worker" };
            let ids = [Id::Task(task.to_string()), Id::Epoch(epoch)];
            if explained(from, *at, false) {
                continue;
            }
            if explained(from, *at, true) && ran.contains(&(task.clone(), old)) {
                let detail = format!(
                    "{node} started {what} {task} again (incarnation {}) at {at}, though only masters were disturbed \
                     since incarnation {old} started at {from}: it should have been re-adopted",
                    epoch.0
                );
                return Err(Violation::new(Rule::ReAdopted, *at, detail).with(ids));
            }
            if !explained(from, *at, true) {
                let detail = format!(
                    "{node} started {what} {task} again (incarnation {}) at {at}, though nothing was disturbed since \
                     incarnation {old} started at {from}",
                    epoch.0
                );
                return Err(Violation::new(Rule::WastedWork, *at, detail).with(ids));
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
        let v = restarts_explained(&quiet, &[], H, true).expect_err("nothing disturbed the first incarnation");
        assert_eq!(v.rule, Rule::WastedWork);
        // A kill between the two starts explains it, healed or not; so does a stretch the caller gives.
        let mut killed = quiet.clone();
        killed.insert(2, (t(4_000), "executor-0".into(), Seen::Killed));
        assert_eq!(restarts_explained(&killed, &[], H, true), Ok(Restarts { job_masters: 1, workers: 0 }));
        assert!(restarts_explained(&quiet, &[(t(8_000), t(8_500))], H, true).is_ok());
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
        assert!(restarts_explained(&early, &[], H, true).is_err());
        assert!(restarts_explained(&early, &[], Duration::from_millis(400), true).is_ok());
        // A worker's restart is counted and judged the same way.
        let workers = vec![worker(1_000, "job-0/w0", 1), worker(3_000, "job-0/w0", 2)];
        assert!(restarts_explained(&workers, &[], H, true).is_err());
        assert_eq!(
            restarts_explained(&workers, &[(t(0), t(1_500))], H, true),
            Ok(Restarts { job_masters: 0, workers: 1 })
        );
        // A worker started again after a failure it declared is its failure's handling: neither counted nor judged.
        let failed = |exit: TaskExit| {
            let o = ExecutorObservation::TaskStopped {
                task: task_id("job-0/w0"),
                epoch: Epoch(1),
                why: StopWhy::Exited(exit),
            };
            (t(2_000), "executor-0".to_owned(), Seen::Exec(o))
        };
        for exit in [TaskExit::FailedRetryable("planned".into()), TaskExit::Failed("planned".into())] {
            let retried = vec![workers[0].clone(), failed(exit), workers[1].clone()];
            assert_eq!(restarts_explained(&retried, &[], H, true), Ok(Restarts::default()));
        }
        let stale = vec![workers[0].clone(), failed(TaskExit::Stale), workers[1].clone()];
        assert_eq!(restarts_explained(&stale, &[], H, true).map_err(|v| v.rule), Err(Rule::WastedWork));
    }

    #[madsim::test]
    async fn a_stall_disturbs_until_it_ends_even_after_its_step_healed() {
        let began = |ms: u64| {
            (t(ms), "executor-1".to_owned(), Seen::HoldBegan { step: 1, point: "dispatch-accept", stall: H * 100 })
        };
        let ended = |ms: u64| (t(ms), "executor-1".to_owned(), Seen::HoldEnded { step: 1, point: "dispatch-accept" });
        let step = |began: u64, healed: u64| {
            let plan = "0.5s hold(executor-1, dispatch-accept, 20s, every) for 1s".to_owned();
            [
                (t(began), "faults".to_owned(), Seen::FaultBegan { step: 1, plan, broke: String::new() }),
                (t(healed), "faults".to_owned(), Seen::FaultHealed { step: 1, healed: String::new() }),
            ]
        };
        // Two stalls overlap; the step heals at 1.5 s, the last stall ends at 21 s: a restart at 21.5 s of an
        // incarnation started at 20 s is explained.
        let [b, h] = step(500, 1_500);
        let story = vec![b, began(600), began(1_000), h, ended(20_600), started(20_000, "job-0", 1), ended(21_000)];
        let mut story = story;
        story.push(started(21_500, "job-0", 2));
        story.sort_by_key(|(at, _, _)| *at);
        assert_eq!(restarts_explained(&story, &[], H, true), Ok(Restarts { job_masters: 1, workers: 0 }));
        // Once the last stall ended (and the horizon after it passed), a restart is judged again.
        let mut later = story.clone();
        later.push(started(30_000, "job-0", 3));
        let v = restarts_explained(&later, &[], H, true).expect_err("nothing disturbed incarnation 2");
        assert_eq!(v.rule, Rule::WastedWork, "{v}");
    }

    #[madsim::test]
    async fn a_job_master_that_ran_is_not_restarted_when_only_masters_were_disturbed() {
        let ran = |ms: u64, epoch: u64| {
            let o = ExecutorObservation::TaskStarted {
                task: task_id("job-0"),
                epoch: Epoch(epoch),
                leader_epoch: LeaderEpoch(1),
            };
            (t(ms), "executor-0".to_owned(), Seen::Exec(o))
        };
        let leader_killed = (t(4_000), "master-0".to_owned(), Seen::Killed);
        let story = vec![started(1_000, "job-0", 1), ran(1_100, 1), leader_killed.clone(), started(9_000, "job-0", 2)];
        let v = restarts_explained(&story, &[], H, true).expect_err("a leader's death alone restarts nothing that ran");
        assert_eq!(v.rule, Rule::ReAdopted, "{v}");
        // One that never ran (its dispatch was lost with the leader) may be started again.
        let never_ran = vec![started(1_000, "job-0", 1), leader_killed.clone(), started(9_000, "job-0", 2)];
        assert!(restarts_explained(&never_ran, &[], H, true).is_ok());
        // A disturbance of the executors too explains it; so does a plan step that is not the masters' only.
        let mut also = story.clone();
        also.insert(3, (t(5_000), "executor-0".into(), Seen::Killed));
        assert!(restarts_explained(&also, &[], H, true).is_ok());
        let step = |plan: &str| {
            vec![
                started(1_000, "job-0", 1),
                ran(1_100, 1),
                (t(4_000), "faults".to_owned(), Seen::FaultBegan { step: 1, plan: plan.into(), broke: String::new() }),
                (t(5_000), "faults".to_owned(), Seen::FaultHealed { step: 1, healed: String::new() }),
                started(9_000, "job-0", 2),
            ]
        };
        let v = restarts_explained(&step("4s cut-leader-from-etcd for 1s"), &[], H, true).expect_err("the leader cut");
        assert_eq!(v.rule, Rule::ReAdopted);
        assert!(restarts_explained(&step("4s kill-executor(0) for 1s"), &[], H, true).is_ok());
        // With one master, or timings that do not claim it, a failover keeps no work: its death explains the restart.
        assert!(restarts_explained(&story, &[], H, false).is_ok());
        // Nor when two masters are disturbed together (or one within the horizon of the other).
        let mut two = story.clone();
        two.insert(3, (t(4_100), "master-1".into(), Seen::Paused));
        assert!(restarts_explained(&two, &[], H, true).is_ok());
    }
}
