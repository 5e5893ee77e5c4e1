//! Failing tasks (issue 14): a worker's failure is handled as it declared it, and a task that panicked ends.
//!
//! The fake job plans its workers' failures (`FakeConfig`'s knobs): a retryable failure every few steps (a flaky
//! worker: its job still finishes), a failure at the same step every time, retryable (a poison input: started
//! again up to its limit of restarts in a row, then its job fails) or terminal (its job fails at once), or a panic
//! at the same step every time (caught, and counted as a retryable failure). What each must come to:
//! - in the story ([`failures_as_declared`]): a worker of a job that plans no failure never fails; a failure is
//!   reported as its plan says (retryable or terminal); under one job master (workers' epochs carry their job
//!   master's), a worker fails at most its limit of restarts + 1 times, and a terminally failed worker never
//!   starts again;
//! - at the job's end ([`job_end_as_declared`]): a flaky job finishes, a poison or terminal one fails with the
//!   planned reason and, for a poison one, the count of failures in a row; any of them may end canceled when a
//!   cancel was asked for;
//! - [`panics_end_their_task`]: every incarnation that panicked stops on its executor before the run ends, unless
//!   that node was killed or restarted first.
//!
//! An exec job of the swarm plans its failures too ([`Plan::Exits`]): its command always exits with the same
//! non-zero code (the job fails after its restarts, naming the code), or it never fails.

use std::collections::{BTreeMap, BTreeSet};

use foreman::core::ids::{Epoch, TaskId};
use foreman::core::invariants::{Id, Rule, Violation};
use foreman::executor::{ExecutorObservation, StopWhy, TaskExit};
use foreman::framework::job_master::WORKER_EPOCHS_PER_MASTER;
use foreman::jobs::fake::FakeConfig;
use foreman::rpc::pb;

use super::Events;
use crate::cluster::Seen;

/// The restarts a worker gets when its job does not say (the framework's default).
const RESTARTS_DEFAULT: u32 = foreman::core::restarts::WORKER_RESTARTS_DEFAULT;

/// How a job plans its workers to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Never.
    Never,
    /// Retryably, after every few steps: the job finishes.
    Flaky,
    /// At step `at` every time, retryably (`panics`: by panicking): the job fails after `restarts` + 1 failures in
    /// a row.
    Poison { at: u64, restarts: u32, panics: bool },
    /// At step `at`, terminally: the job fails at the first.
    Terminal { at: u64 },
    /// An exec job whose command always exits with `code` (the simulated twin's `exit=`): each exit is a retryable
    /// failure, and the job fails after `restarts` + 1 of them in a row (its workers make no progress the
    /// framework counts: an exec worker's checkpoint moves only when it is done).
    Exits { code: i32, restarts: u32 },
}

impl Plan {
    pub fn of(c: &FakeConfig) -> Plan {
        let restarts = c.restarts_max.unwrap_or(RESTARTS_DEFAULT);
        match (c.fail_at, c.panic_at, c.fail_every) {
            (Some(at), _, _) if c.fail_terminal => Plan::Terminal { at },
            (Some(at), _, _) => Plan::Poison { at, restarts, panics: false },
            (None, Some(at), _) => Plan::Poison { at, restarts, panics: true },
            (None, None, Some(_)) => Plan::Flaky,
            (None, None, None) => Plan::Never,
        }
    }

    /// The most failures of one worker under one job master.
    fn most_failures(self) -> Option<u64> {
        match self {
            Plan::Never => Some(0),
            Plan::Flaky => None,
            Plan::Poison { restarts, .. } | Plan::Exits { restarts, .. } => Some(u64::from(restarts) + 1),
            Plan::Terminal { .. } => Some(1),
        }
    }
}

/// The job a worker's task id belongs to.
fn job_of(task: &TaskId) -> Option<&str> {
    task.as_str().split_once('/').map(|(job, _)| job)
}

/// Every worker failure of the story against its job's plan (`plans`, by job id; jobs not in it are not judged).
pub fn failures_as_declared(events: &Events, plans: &BTreeMap<String, Plan>) -> Result<(), Violation> {
    // Per worker and job-master epoch: its failures so far.
    let mut failures: BTreeMap<(TaskId, u64), u64> = BTreeMap::new();
    let mut ended: BTreeSet<(TaskId, u64)> = BTreeSet::new();
    for (at, node, seen) in events {
        let Seen::Exec(o) = seen else { continue };
        let (task, epoch) = match o {
            ExecutorObservation::TaskStarted { task, epoch, .. }
            | ExecutorObservation::TaskStopped { task, epoch, .. } => (task, *epoch),
            _ => continue,
        };
        let Some(plan) = job_of(task).and_then(|j| plans.get(j)).copied() else { continue };
        let master = epoch.0 / WORKER_EPOCHS_PER_MASTER;
        let ids = || [Id::Node(node.clone()), Id::Task(task.to_string()), Id::Epoch(epoch)];
        let broken = |detail: String| Err(Violation::new(Rule::FailuresAsDeclared, *at, detail).with(ids()));
        let why = match o {
            ExecutorObservation::TaskStarted { .. } => {
                if ended.contains(&(task.clone(), master)) {
                    return broken(format!(
                        "{node} started worker {task} (incarnation {}) after it failed terminally under the same job \
                         master",
                        epoch.0
                    ));
                }
                continue;
            }
            ExecutorObservation::TaskStopped { why: StopWhy::Exited(exit), .. } => exit,
            _ => continue,
        };
        let (message, retryable) = match why {
            TaskExit::Failed(m) => (m, false),
            TaskExit::FailedRetryable(m) => (m, true),
            _ => continue,
        };
        let declared = match plan {
            Plan::Never => {
                return broken(format!("worker {task} of a job that plans no failure failed: {message}"));
            }
            Plan::Flaky | Plan::Poison { .. } | Plan::Exits { .. } => true,
            Plan::Terminal { .. } => false,
        };
        if retryable != declared {
            let said = if retryable { "retryable" } else { "terminal" };
            return broken(format!("worker {task} reported its planned failure as {said}: {message}"));
        }
        let n = failures.entry((task.clone(), master)).or_default();
        *n += 1;
        if plan.most_failures().is_some_and(|most| *n > most) {
            return broken(format!(
                "worker {task} failed {n} times under job master {master}, more than its plan allows ({plan:?}); \
                 last: {message}"
            ));
        }
        if !retryable {
            ended.insert((task.clone(), master));
        }
    }
    Ok(())
}

/// How job `id` (planning `plan`) ended, against its plan: `Err` says how it is wrong. `cancel_asked`: a cancel
/// was asked for (acknowledged or not), so it may have ended canceled.
pub fn job_end_as_declared(id: &str, plan: Plan, cancel_asked: bool, job: &pb::Job) -> Result<(), String> {
    let state = pb::JobState::try_from(job.state).unwrap_or(pb::JobState::Unspecified);
    if cancel_asked && state == pb::JobState::Canceled {
        return Ok(());
    }
    let message = job.error.as_ref().map_or("", |e| e.message.as_str());
    let want = match plan {
        Plan::Never | Plan::Flaky => {
            return match state {
                pb::JobState::Finished => Ok(()),
                _ => Err(format!("{id} ({plan:?}) ended {state:?}, not finished: {message:?}")),
            };
        }
        Plan::Poison { at, restarts, panics } => {
            let last = if panics {
                format!("panicked: fake: planned panic at step {at}")
            } else {
                format!("planned failure at step {at} (retryable)")
            };
            format!("failed {} times in a row without progress; last: {last}", restarts + 1)
        }
        Plan::Terminal { at } => format!("failed: planned failure at step {at} (terminal)"),
        Plan::Exits { code, restarts } => {
            format!("failed {} times in a row without progress; last: `sim` exited with code {code}", restarts + 1)
        }
    };
    if state != pb::JobState::Failed || !message.contains(&want) {
        return Err(format!("{id} ({plan:?}) ended {state:?} saying {message:?}; expected failed, saying {want:?}"));
    }
    Ok(())
}

/// Every incarnation that panicked stopped on its executor, unless its node was killed or restarted first.
pub fn panics_end_their_task(events: &Events) -> Result<(), Violation> {
    let mut open: BTreeMap<(String, TaskId, Epoch), foreman::core::time::Time> = BTreeMap::new();
    for (at, node, seen) in events {
        match seen {
            Seen::Exec(ExecutorObservation::TaskPanicked { task, epoch, .. }) => {
                open.insert((node.clone(), task.clone(), *epoch), *at);
            }
            Seen::Exec(ExecutorObservation::TaskStopped { task, epoch, .. }) => {
                open.remove(&(node.clone(), task.clone(), *epoch));
            }
            Seen::Killed | Seen::Restarted => open.retain(|(n, _, _), _| n != node),
            _ => {}
        }
    }
    match open.into_iter().next() {
        None => Ok(()),
        Some(((node, task, epoch), at)) => {
            let detail = format!("{task} (incarnation {}) panicked on {node} at {at} and never stopped", epoch.0);
            let ids = [Id::Node(node), Id::Task(task.to_string()), Id::Epoch(epoch)];
            Err(Violation::new(Rule::PanicsEndTheirTask, at, detail).with(ids))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::task_id;
    use foreman::core::ids::LeaderEpoch;
    use foreman::core::time::Time;

    fn ev(ms: u64, node: &str, o: ExecutorObservation) -> (Time, String, Seen) {
        (Time::from_millis(ms), node.to_owned(), Seen::Exec(o))
    }

    fn started(task: &str, epoch: u64) -> ExecutorObservation {
        ExecutorObservation::TaskStarted { task: task_id(task), epoch: Epoch(epoch), leader_epoch: LeaderEpoch(1) }
    }

    fn failed(task: &str, epoch: u64, retryable: bool) -> ExecutorObservation {
        let m = "planned".to_owned();
        let exit = if retryable { TaskExit::FailedRetryable(m) } else { TaskExit::Failed(m) };
        ExecutorObservation::TaskStopped { task: task_id(task), epoch: Epoch(epoch), why: StopWhy::Exited(exit) }
    }

    fn plans(plan: Plan) -> BTreeMap<String, Plan> {
        [("j".to_owned(), plan)].into()
    }

    fn rule(r: Result<(), Violation>) -> Option<Rule> {
        r.err().map(|v| v.rule)
    }

    #[test]
    fn failures_as_declared_counts_per_job_master_and_knows_each_plan() {
        let m = WORKER_EPOCHS_PER_MASTER;
        let poison = Plan::Poison { at: 3, restarts: 1, panics: false };
        // Two failures under job master 1, two more under job master 2: within the plan.
        let two_masters = [
            ev(0, "e1", started("j/w0", m + 1)),
            ev(1, "e1", failed("j/w0", m + 1, true)),
            ev(2, "e1", started("j/w0", m + 2)),
            ev(3, "e1", failed("j/w0", m + 2, true)),
            ev(4, "e2", started("j/w0", 2 * m + 1)),
            ev(5, "e2", failed("j/w0", 2 * m + 1, true)),
            ev(6, "e2", started("j/w0", 2 * m + 2)),
            ev(7, "e2", failed("j/w0", 2 * m + 2, true)),
        ];
        assert_eq!(failures_as_declared(&two_masters, &plans(poison)), Ok(()));
        // A third under one job master is one too many (restarts 1: two failures in all).
        let mut three = two_masters[..4].to_vec();
        three.extend([ev(8, "e1", started("j/w0", m + 3)), ev(9, "e1", failed("j/w0", m + 3, true))]);
        assert_eq!(rule(failures_as_declared(&three, &plans(poison))), Some(Rule::FailuresAsDeclared));
        // A flaky job fails as often as it likes; a plain job never.
        assert_eq!(failures_as_declared(&three, &plans(Plan::Flaky)), Ok(()));
        assert_eq!(rule(failures_as_declared(&three, &plans(Plan::Never))), Some(Rule::FailuresAsDeclared));
        // Jobs without a plan are not judged.
        assert_eq!(failures_as_declared(&three, &BTreeMap::new()), Ok(()));
        // A terminal failure is reported terminal, and its worker does not start again under that job master.
        let terminal = Plan::Terminal { at: 3 };
        let once = [ev(0, "e1", started("j/w0", m + 1)), ev(1, "e1", failed("j/w0", m + 1, false))];
        assert_eq!(failures_as_declared(&once, &plans(terminal)), Ok(()));
        assert_eq!(rule(failures_as_declared(&once, &plans(poison))), Some(Rule::FailuresAsDeclared));
        let retried = [once[0].clone(), once[1].clone(), ev(2, "e2", started("j/w0", m + 2))];
        assert_eq!(rule(failures_as_declared(&retried, &plans(terminal))), Some(Rule::FailuresAsDeclared));
        let next_master = [once[0].clone(), once[1].clone(), ev(2, "e2", started("j/w0", 2 * m + 1))];
        assert_eq!(failures_as_declared(&next_master, &plans(terminal)), Ok(()));
        let as_retryable = [once[0].clone(), ev(1, "e1", failed("j/w0", m + 1, true))];
        assert_eq!(rule(failures_as_declared(&as_retryable, &plans(terminal))), Some(Rule::FailuresAsDeclared));
    }

    #[test]
    fn job_ends_as_its_plan_says() {
        let job = |state: pb::JobState, message: &str| pb::Job {
            state: state as i32,
            error: (!message.is_empty()).then(|| pb::JobError { message: message.to_owned(), ..Default::default() }),
            ..Default::default()
        };
        let finished = job(pb::JobState::Finished, "");
        let canceled = job(pb::JobState::Canceled, "");
        assert_eq!(job_end_as_declared("j", Plan::Flaky, false, &finished), Ok(()));
        assert!(job_end_as_declared("j", Plan::Flaky, false, &canceled).is_err());
        assert_eq!(job_end_as_declared("j", Plan::Flaky, true, &canceled), Ok(()));
        let flaky_failed = job(pb::JobState::Failed, "worker j/w0 failed: planned failure after 3 steps (retryable)");
        assert!(job_end_as_declared("j", Plan::Flaky, false, &flaky_failed).is_err());
        let poison = Plan::Poison { at: 5, restarts: 2, panics: false };
        let gave_up = job(
            pb::JobState::Failed,
            "worker j/w1 failed 3 times in a row without progress; last: planned failure at step 5 (retryable)",
        );
        assert_eq!(job_end_as_declared("j", poison, false, &gave_up), Ok(()));
        // Given up at the first failure: the retries were skipped.
        let at_once = job(pb::JobState::Failed, "worker j/w1 failed: planned failure at step 5 (retryable)");
        assert!(job_end_as_declared("j", poison, false, &at_once).is_err());
        assert!(job_end_as_declared("j", poison, false, &finished).is_err());
        let panics = Plan::Poison { at: 5, restarts: 0, panics: true };
        let panicked = job(
            pb::JobState::Failed,
            "worker j/w0 failed 1 times in a row without progress; last: panicked: fake: planned panic at step 5",
        );
        assert_eq!(job_end_as_declared("j", panics, false, &panicked), Ok(()));
        let terminal = Plan::Terminal { at: 5 };
        let failed = job(pb::JobState::Failed, "worker j/w0 failed: planned failure at step 5 (terminal)");
        assert_eq!(job_end_as_declared("j", terminal, false, &failed), Ok(()));
        assert!(job_end_as_declared("j", terminal, false, &gave_up).is_err());
        // An exec job whose command always exits 3 gives up after its restarts + 1 exits, naming the code.
        let exits = Plan::Exits { code: 3, restarts: 1 };
        let exited = job(
            pb::JobState::Failed,
            "worker j/w2 failed 2 times in a row without progress; last: `sim` exited with code 3",
        );
        assert_eq!(job_end_as_declared("j", exits, false, &exited), Ok(()));
        assert!(job_end_as_declared("j", Plan::Exits { code: 3, restarts: 2 }, false, &exited).is_err());
        assert!(job_end_as_declared("j", Plan::Exits { code: 4, restarts: 1 }, false, &exited).is_err());
        assert!(job_end_as_declared("j", exits, false, &finished).is_err());
        assert_eq!(job_end_as_declared("j", exits, true, &canceled), Ok(()));
    }

    #[test]
    fn an_exec_job_that_always_exits_fails_retryably_up_to_its_restarts() {
        let m = WORKER_EPOCHS_PER_MASTER;
        let exits = Plan::Exits { code: 3, restarts: 1 };
        let mut story = vec![
            ev(0, "e1", started("j/w0", m + 1)),
            ev(1, "e1", failed("j/w0", m + 1, true)),
            ev(2, "e1", started("j/w0", m + 2)),
            ev(3, "e1", failed("j/w0", m + 2, true)),
        ];
        assert_eq!(failures_as_declared(&story, &plans(exits)), Ok(()));
        story.extend([ev(4, "e1", started("j/w0", m + 3)), ev(5, "e1", failed("j/w0", m + 3, true))]);
        assert_eq!(rule(failures_as_declared(&story, &plans(exits))), Some(Rule::FailuresAsDeclared));
        let terminal = [ev(0, "e1", started("j/w0", m + 1)), ev(1, "e1", failed("j/w0", m + 1, false))];
        assert_eq!(rule(failures_as_declared(&terminal, &plans(exits))), Some(Rule::FailuresAsDeclared));
    }

    #[test]
    fn a_panicked_incarnation_must_stop_on_its_node_unless_the_node_died() {
        let panicked = |task: &str, epoch: u64| ExecutorObservation::TaskPanicked {
            task: task_id(task),
            epoch: Epoch(epoch),
            message: "boom".into(),
        };
        let left = [ev(0, "e1", started("j/w0", 1)), ev(1, "e1", panicked("j/w0", 1))];
        let v = panics_end_their_task(&left).unwrap_err();
        assert_eq!((v.rule, v.at), (Rule::PanicsEndTheirTask, Time::from_millis(1)));
        let mut ended = left.to_vec();
        ended.push(ev(2, "e1", failed("j/w0", 1, true)));
        assert_eq!(panics_end_their_task(&ended), Ok(()));
        // Stopped on another node, or another incarnation stopped: still left running.
        let elsewhere = [left[0].clone(), left[1].clone(), ev(2, "e2", failed("j/w0", 1, true))];
        assert!(panics_end_their_task(&elsewhere).is_err());
        let other = [left[0].clone(), left[1].clone(), ev(2, "e1", failed("j/w0", 2, true))];
        assert!(panics_end_their_task(&other).is_err());
        let killed = [left[0].clone(), left[1].clone(), (Time::from_millis(2), "e1".to_owned(), Seen::Killed)];
        assert_eq!(panics_end_their_task(&killed), Ok(()));
    }
}
