//! Coverage of the fault space, measured: how often each fault kind was applied, each fault point stalled and each
//! interesting state was reached, per seed, so that the swarm's report shows its gaps instead of leaving them to be
//! guessed. Counting only reads the story (and the fault points' own counts): it never steers a run.
//!
//! The interesting states are the interleavings the design's guards exist for; each is read off the story by a
//! rule stated next to it in [`STATES`]. A state reached by no seed of a run is printed with a zero, as is a fault
//! kind never drawn and a fault point that never fired.

use std::collections::{BTreeMap, BTreeSet};

use foreman::buggify::Point;
use foreman::core::ids::TaskId;
use foreman::core::time::Time;
use foreman::executor::{ExecutorObservation, StopWhy, TaskExit};
use foreman::master::Observation;
use foreman::rpc::pb;

use crate::cluster::Seen;
use crate::faults;

/// One seed's counts, by item (`fault <kind>`, `point <name>`, `state <name>`).
pub type Counts = BTreeMap<String, u64>;

/// The interesting states, each with what it means in the story.
pub const STATES: &[(&str, &str)] = &[
    ("leader-change", "a master began acting after another had (a failover or a step-down and back)"),
    ("job-master-re-adopted", "a new leader's recovery re-adopted a job master that ran on through the failover"),
    ("leader-lost-mid-dispatch", "a leader started a job master and its term ended before the task started"),
    ("job-master-lost-while-canceling", "a job master stopped for another reason than its end after a cancel"),
    ("worker-superseded-after-checkpoints", "a worker that had checkpointed stopped unfinished; a newer one started"),
    ("offline-while-hosting-job-master", "an executor declared offline while a job master ran on it"),
    ("failover-during-backoff", "a leader's term ended while a job it charged still waited out its backoff"),
    ("evictions-held", "a leader held evictions as a suspect (most executors expired at once)"),
    ("executor-self-fenced", "an executor fenced itself (no acknowledged heartbeat for its self-fence)"),
    ("worker-self-fenced", "a task's own link fenced it (no acknowledged heartbeat from its master)"),
    ("task-told-stale", "a task stopped because its master said it is stale"),
    ("executor-reregistered", "an executor was told it was declared offline and registered again"),
    ("task-drained", "a task quiesced for a graceful stop of its executor"),
    ("job-gave-up", "a job's backoff gave up (the job failed after its last try)"),
    ("worker-failed-retryably", "a worker's work ended in a retryable failure (its job master starts it again)"),
    ("worker-failed-terminally", "a worker's work ended in a terminal failure (its job fails)"),
    ("task-panicked", "a task's code panicked and was caught"),
    ("exec-command-run", "an exec worker's command (the process service's simulated twin) started"),
    (
        "exec-job-failed-for-lost-scratch",
        "an exec job with scratch_required failed: a worker's scratch directory was lost with its executor, or given up",
    ),
];

/// The counts of one run's story, with the fault points' own counts.
pub fn of_story(events: &[(Time, String, Seen)], points: &BTreeMap<&'static str, u64>) -> Counts {
    let mut c = Counts::new();
    let mut bump = |item: String| *c.entry(item).or_default() += 1;
    for (name, n) in points {
        for _ in 0..*n {
            bump(format!("point {name}"));
        }
    }
    // Running tasks by node; job masters' dispatches in flight by (job master task, epoch) → the leader's node.
    let mut running: BTreeMap<&str, BTreeSet<(TaskId, u64)>> = BTreeMap::new();
    let mut in_flight: BTreeMap<(TaskId, u64), &str> = BTreeMap::new();
    let mut canceled: BTreeSet<TaskId> = BTreeSet::new();
    // Backoffs charged and not yet allowed, by the charging master's node: (job, allowed).
    let mut waiting: BTreeMap<&str, Vec<Time>> = BTreeMap::new();
    let mut checkpointed: BTreeSet<(TaskId, u64)> = BTreeSet::new();
    let mut superseded: BTreeMap<TaskId, u64> = BTreeMap::new();
    let mut acting: Option<&str> = None;
    let mut began = 0usize;
    for (at, node, seen) in events {
        let node = node.as_str();
        let ended_term = |waiting: &mut BTreeMap<&str, Vec<Time>>, in_flight: &mut BTreeMap<(TaskId, u64), &str>| {
            let mut hits = vec![];
            if waiting.remove(node).is_some_and(|ws| ws.iter().any(|allowed| allowed > at)) {
                hits.push("state failover-during-backoff".to_owned());
            }
            let lost: Vec<_> = in_flight.iter().filter(|(_, n)| **n == node).map(|(k, _)| k.clone()).collect();
            for k in lost {
                in_flight.remove(&k);
                hits.push("state leader-lost-mid-dispatch".to_owned());
            }
            hits
        };
        match seen {
            Seen::FaultBegan { plan, .. } => bump(format!("fault {}", faults::kind_of_step(plan))),
            Seen::Killed => {
                if acting == Some(node) {
                    acting = None;
                }
                for h in ended_term(&mut waiting, &mut in_flight) {
                    bump(h);
                }
                running.remove(node);
            }
            Seen::Master(Observation::ActingBegan { .. }) => {
                began += 1;
                if began > 1 {
                    bump("state leader-change".to_owned());
                }
                acting = Some(node);
            }
            Seen::Master(Observation::ActingEnded { .. }) => {
                if acting == Some(node) {
                    acting = None;
                }
                for h in ended_term(&mut waiting, &mut in_flight) {
                    bump(h);
                }
            }
            Seen::Master(Observation::JobMasterStarted { job, epoch, .. }) => {
                in_flight.insert((TaskId::job_master(job), epoch.0), node);
            }
            Seen::Master(Observation::BackoffCharged { allowed, delay, .. }) => match allowed {
                Some(_) => waiting.entry(node).or_default().push(at.saturating_add(*delay)),
                None => bump("state job-gave-up".to_owned()),
            },
            Seen::Master(Observation::EvictionsHeld { .. }) => bump("state evictions-held".to_owned()),
            Seen::Master(Observation::JobMastersRecovered { adopted, .. }) if *adopted > 0 && began > 1 => {
                bump("state job-master-re-adopted".to_owned())
            }
            Seen::Master(Observation::ExecutorOffline { name, .. }) => {
                let hosts_job_master = running.get(name.as_str()).is_some_and(|ts| ts.iter().any(|(t, _)| is_jm(t)));
                if hosts_job_master {
                    bump("state offline-while-hosting-job-master".to_owned());
                }
            }
            Seen::JobCanceled { id, state, .. } if *state == pb::JobState::Canceling as i32 => {
                if let Ok(t) = TaskId::parse(id) {
                    canceled.insert(t);
                }
            }
            Seen::Exec(ExecutorObservation::Fenced { .. }) => bump("state executor-self-fenced".to_owned()),
            Seen::Exec(ExecutorObservation::Reregister { .. }) => bump("state executor-reregistered".to_owned()),
            Seen::Exec(ExecutorObservation::TaskQuiesced { .. }) => bump("state task-drained".to_owned()),
            Seen::Exec(ExecutorObservation::TaskPanicked { .. }) => bump("state task-panicked".to_owned()),
            Seen::Exec(ExecutorObservation::ProcessStarted { .. }) => bump("state exec-command-run".to_owned()),
            Seen::Exec(ExecutorObservation::Checkpoint { task, epoch, .. }) => {
                checkpointed.insert((task.clone(), epoch.0));
            }
            Seen::Exec(ExecutorObservation::TaskStarted { task, epoch, .. }) => {
                in_flight.remove(&(task.clone(), epoch.0));
                running.entry(node).or_default().insert((task.clone(), epoch.0));
                if superseded.get(task).is_some_and(|old| *old < epoch.0) {
                    superseded.remove(task);
                    bump("state worker-superseded-after-checkpoints".to_owned());
                }
            }
            Seen::Exec(ExecutorObservation::TaskStopped { task, epoch, why }) => {
                if let Some(ts) = running.get_mut(node) {
                    ts.remove(&(task.clone(), epoch.0));
                }
                let ended = matches!(why, StopWhy::Exited(TaskExit::Finished | TaskExit::Canceled));
                match why {
                    StopWhy::Exited(TaskExit::Fenced) => bump("state worker-self-fenced".to_owned()),
                    StopWhy::Exited(TaskExit::Stale) => bump("state task-told-stale".to_owned()),
                    StopWhy::Exited(TaskExit::FailedRetryable(_)) if !is_jm(task) => {
                        bump("state worker-failed-retryably".to_owned())
                    }
                    StopWhy::Exited(TaskExit::Failed(_)) if !is_jm(task) => {
                        bump("state worker-failed-terminally".to_owned())
                    }
                    StopWhy::Exited(TaskExit::Failed(m)) if m.contains("'s scratch directory") => {
                        bump("state exec-job-failed-for-lost-scratch".to_owned())
                    }
                    _ => {}
                }
                if !ended && is_jm(task) && canceled.contains(task) {
                    bump("state job-master-lost-while-canceling".to_owned());
                }
                if !ended && !is_jm(task) && checkpointed.contains(&(task.clone(), epoch.0)) {
                    superseded.insert(task.clone(), epoch.0);
                }
            }
            _ => {}
        }
    }
    c
}

/// Whether a task is a job master (a worker's id is `<job>/<name>`).
fn is_jm(task: &TaskId) -> bool {
    !task.is_worker()
}

/// Every item a report lists, reached or not: every fault kind the plans' grammar knows, every fault point, every
/// state.
pub fn items() -> Vec<String> {
    let mut all: Vec<String> = faults::kinds().into_iter().map(|k| format!("fault {k}")).collect();
    all.extend(Point::ALL.iter().map(|p| format!("point {}", p.name())));
    all.extend(STATES.iter().map(|(s, _)| format!("state {s}")));
    all
}

/// Coverage over many seeds: per item, how many seeds reached it and how often in all.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub seeds: u64,
    pub items: BTreeMap<String, (u64, u64)>,
}

impl Summary {
    pub fn add(&mut self, counts: &Counts) {
        self.seeds += 1;
        for (item, n) in counts {
            let e = self.items.entry(item.clone()).or_default();
            e.0 += 1;
            e.1 += n;
        }
    }

    /// The report: every item (zeros included, marked as gaps), seeds reaching it and times in all.
    pub fn report(&self) -> String {
        let mut lines = vec![format!("coverage over {} seeds (item: seeds reaching it, times in all)", self.seeds)];
        let mut listed = BTreeSet::new();
        let mut all = items();
        all.extend(self.items.keys().filter(|k| !all.contains(k)).cloned().collect::<Vec<_>>());
        for item in all {
            if !listed.insert(item.clone()) {
                continue;
            }
            let (seeds, times) = self.items.get(&item).copied().unwrap_or_default();
            let gap = if seeds == 0 { "   <- never reached" } else { "" };
            lines.push(format!("  {item}: {seeds} seeds, {times} times{gap}"));
        }
        lines.join("\n")
    }
}

/// A seed's counts on one line of a child's output (`item=count` joined by `,`; items hold no `,` `=` or space).
pub fn to_field(counts: &Counts) -> String {
    counts.iter().map(|(k, n)| format!("{}={n}", k.replace(' ', ":"))).collect::<Vec<_>>().join(",")
}

/// The counts of [`to_field`]'s text; `None` when it is not such text.
pub fn from_field(text: &str) -> Option<Counts> {
    text.split(',')
        .filter(|f| !f.is_empty())
        .map(|f| {
            let (k, n) = f.rsplit_once('=')?;
            Some((k.replacen(':', " ", 1), n.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_back_from_their_field() {
        let mut c = Counts::new();
        c.insert("fault kill-leader".into(), 2);
        c.insert("state leader-lost-mid-dispatch".into(), 1);
        c.insert("point before-metastore-write".into(), 7);
        assert_eq!(from_field(&to_field(&c)), Some(c));
        assert_eq!(from_field(""), Some(Counts::new()));
        assert_eq!(from_field("x=y"), None);
    }

    #[test]
    fn every_fault_kind_and_point_is_listed() {
        let all = items();
        for k in ["fault kill-leader", "fault loss", "fault cut-executor-from-masters", "point heartbeat-reply"] {
            assert!(all.iter().any(|i| i == k), "{k} missing from {all:?}");
        }
        let summary = Summary::default();
        assert!(summary.report().contains("state leader-change: 0 seeds, 0 times   <- never reached"));
    }
}
