//! The `exec` job master's decisions: worker `wI` runs command `I` until it exits 0, started again after a failure
//! up to `max_restarts` times in a row (the framework counts them: an exec worker's checkpoint moves only when it is
//! done). Pure, like every [`JobLogic`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::Exec;
use crate::core::ids::WorkerName;
use crate::core::job_master::{JobLogic, LiveProgress, Lost, OnLost, Verdict, WorkerEvent, WorkerSpec};

/// The local resource every exec worker keeps: its scratch directory (`FOREMAN_SCRATCH`).
pub const SCRATCH: &str = "scratch";
use crate::core::time::Time;

/// What an exec worker is told at dispatch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecWorker {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Its index among the job's workers (`FOREMAN_WORKER`).
    pub index: u32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// How long one run may take, in milliseconds (none: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Between SIGTERM and SIGKILL when it is stopped, in milliseconds.
    pub stop_grace_ms: u64,
}

/// An exec worker's checkpoint: whether its command has exited 0. Written once, as it does; a later incarnation
/// (its job master recovering after the report was lost) then ends at once without running the command again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub done: bool,
}

/// The exec job master's state: which workers are done.
#[derive(Clone, Debug)]
pub struct ExecLogic {
    exec: Exec,
    done: Vec<bool>,
}

impl ExecLogic {
    pub fn is_done(&self, index: u32) -> Option<bool> {
        self.done.get(index as usize).copied()
    }
}

/// The `a/b` a command last printed as `FOREMAN_PROGRESS a/b` (its worker's progress text), if it did.
fn fraction(text: &str) -> Option<(u64, u64)> {
    let (a, b) = text.split_once('/')?;
    let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.split_whitespace().next()?.parse().ok()?);
    (a <= b).then_some((a, b))
}

impl JobLogic for ExecLogic {
    type Config = Exec;
    type WorkerConfig = ExecWorker;
    type Checkpoint = Done;

    fn recover(exec: Exec, checkpoints: &BTreeMap<WorkerName, Done>) -> ExecLogic {
        let done =
            (0..exec.workers()).map(|i| checkpoints.get(&WorkerName::indexed(i)).is_some_and(|c| c.done)).collect();
        ExecLogic { exec, done }
    }

    fn wanted(&self) -> Vec<WorkerName> {
        (0..self.exec.workers()).filter(|&i| self.is_done(i) == Some(false)).map(WorkerName::indexed).collect()
    }

    fn worker(&self, name: &WorkerName) -> Option<WorkerSpec<ExecWorker>> {
        let index = name.index().filter(|&i| i < self.exec.workers())?;
        let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let spec = WorkerSpec::new(ExecWorker {
            argv: self.exec.commands[index as usize].clone(),
            index,
            env: self.exec.env.clone(),
            timeout_ms: self.exec.timeout.map(millis),
            stop_grace_ms: millis(self.exec.stop_grace),
        });
        // Its scratch directory is a local resource: its next incarnation runs where the directory is, while that
        // executor is online, and finds what the last one left there.
        Some(WorkerSpec { restarts_max: self.exec.max_restarts, resources: vec![SCRATCH.to_owned()], ..spec })
    }

    /// Done once it finished, or once a checkpoint read back after its end says so.
    fn on_event(&mut self, _now: Time, event: WorkerEvent<'_, Done>) {
        let name = match event {
            WorkerEvent::Online { .. } => return,
            WorkerEvent::Ended { checkpoint, .. } if !checkpoint.is_some_and(|c| c.done) => return,
            WorkerEvent::Finished { name } | WorkerEvent::Ended { name, .. } => name,
        };
        if let Some(done) = name.index().and_then(|i| self.done.get_mut(i as usize)) {
            *done = true;
        }
    }

    /// Its scratch directory went with its executor: with `scratch_required`, the job fails; else the worker starts
    /// afresh with an empty one.
    fn on_resources_lost(&mut self, _now: Time, name: &WorkerName, lost: &[Lost]) -> OnLost {
        let Some(scratch) = lost.iter().find(|l| l.name == SCRATCH) else { return OnLost::StartFresh };
        if !self.exec.scratch_required {
            return OnLost::StartFresh;
        }
        let on = scratch.holder.as_deref().map_or_else(|| "its executor".to_owned(), |h| format!("executor {h}"));
        OnLost::FailJob(if scratch.waited_out {
            format!(
                "worker {name}'s scratch directory on {on} was given up: that executor could not take the worker \
                 within the master's placement.pin-wait, and scratch_required is set"
            )
        } else {
            format!(
                "worker {name}'s scratch directory was lost with {on} (declared offline, drained or deregistered), \
                 and scratch_required is set"
            )
        })
    }

    fn verdict(&self) -> Verdict {
        if self.done.iter().all(|d| *d) {
            Verdict::Finished
        } else {
            Verdict::Running
        }
    }

    /// `"<done>/<workers> workers done"`, after `"<a>/<b> progress, "` when the workers not done printed
    /// `FOREMAN_PROGRESS a/b` (the sums of what each last printed; done workers do not count there).
    fn progress(&self, live: &dyn LiveProgress) -> String {
        let workers = self.done.len();
        let done = self.done.iter().filter(|d| **d).count();
        let reported: Vec<(u64, u64)> = (0..self.exec.workers())
            .filter(|&i| self.is_done(i) == Some(false))
            .filter_map(|i| live.get(&WorkerName::indexed(i)).and_then(fraction))
            .collect();
        if reported.is_empty() {
            return format!("{done}/{workers} workers done");
        }
        let (a, b) = reported.iter().fold((0u64, 0u64), |(a, b), (x, y)| (a.saturating_add(*x), b.saturating_add(*y)));
        format!("{a}/{b} progress, {done}/{workers} workers done")
    }

    fn check(&self) -> Result<(), String> {
        if self.done.len() != self.exec.commands.len() {
            return Err(format!("exec: {} done flags for {} workers", self.done.len(), self.exec.commands.len()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::job_master::EndedWhy;

    fn logic(json: &str, done: &[u32]) -> ExecLogic {
        let exec = Exec::parse(json.as_bytes()).unwrap();
        let checkpoints = done.iter().map(|&i| (WorkerName::indexed(i), Done { done: true })).collect();
        ExecLogic::recover(exec, &checkpoints)
    }

    #[test]
    fn a_lost_scratch_directory_fails_the_job_only_when_it_is_required() {
        let w1 = WorkerName::indexed(1);
        let lost = |holder: Option<&str>| {
            vec![Lost { name: SCRATCH.into(), holder: holder.map(str::to_owned), waited_out: false }]
        };
        let mut l = logic(r#"{"command": ["true"], "workers": 2}"#, &[]);
        assert_eq!(l.on_resources_lost(Time::ZERO, &w1, &lost(Some("ex-a"))), OnLost::StartFresh);
        let mut l = logic(r#"{"command": ["true"], "workers": 2, "scratch_required": true}"#, &[]);
        let OnLost::FailJob(reason) = l.on_resources_lost(Time::ZERO, &w1, &lost(Some("ex-a"))) else {
            panic!("a required scratch directory lost must fail the job")
        };
        assert!(reason.starts_with("worker w1's scratch directory was lost with executor ex-a"), "{reason}");
        let OnLost::FailJob(reason) = l.on_resources_lost(Time::ZERO, &w1, &lost(None)) else { panic!() };
        assert!(reason.contains("lost with its executor"), "{reason}");
        let waited = [Lost { name: SCRATCH.into(), holder: Some("ex-b".into()), waited_out: true }];
        let OnLost::FailJob(reason) = l.on_resources_lost(Time::ZERO, &w1, &waited) else { panic!() };
        assert!(reason.starts_with("worker w1's scratch directory on executor ex-b was given up"), "{reason}");
        // Another resource than its scratch directory is none of its business.
        let other = [Lost { name: "cache".into(), holder: None, waited_out: false }];
        assert_eq!(l.on_resources_lost(Time::ZERO, &w1, &other), OnLost::StartFresh);
    }

    #[test]
    fn every_worker_runs_until_its_command_exits_zero() {
        let mut l = logic(r#"{"command": ["true"], "workers": 3, "max_restarts": 5, "timeout": "2s"}"#, &[1]);
        let names = |v: Vec<WorkerName>| v.iter().map(|n| n.as_str().to_owned()).collect::<Vec<_>>();
        assert_eq!(names(l.wanted()), ["w0", "w2"]);
        let spec = l.worker(&WorkerName::indexed(2)).unwrap();
        assert_eq!((spec.config.index, spec.config.timeout_ms, spec.restarts_max), (2, Some(2000), 5));
        assert_eq!(spec.config.argv, ["true"]);
        assert!(l.worker(&WorkerName::indexed(3)).is_none());
        l.on_event(Time::ZERO, WorkerEvent::Finished { name: &WorkerName::indexed(0) });
        // Ended without a done checkpoint: it runs again.
        let w2 = WorkerName::indexed(2);
        l.on_event(Time::ZERO, WorkerEvent::Ended { name: &w2, why: EndedWhy::Stopped, checkpoint: None });
        assert_eq!(names(l.wanted()), ["w2"]);
        assert_eq!(l.verdict(), Verdict::Running);
        // Its report was lost, but its checkpoint says it exited 0: done.
        let done = Done { done: true };
        l.on_event(Time::ZERO, WorkerEvent::Ended { name: &w2, why: EndedWhy::Stopped, checkpoint: Some(&done) });
        assert_eq!(l.verdict(), Verdict::Finished);
        assert!(l.wanted().is_empty());
        l.check().unwrap();
    }

    #[test]
    fn progress_sums_what_the_commands_printed() {
        let l = logic(r#"{"command": ["x"], "workers": 3}"#, &[0]);
        let mut live = BTreeMap::new();
        assert_eq!(l.progress(&live), "1/3 workers done");
        live.insert(WorkerName::indexed(1), "3/10".to_owned());
        live.insert(WorkerName::indexed(2), "not a fraction".to_owned());
        assert_eq!(l.progress(&live), "3/10 progress, 1/3 workers done");
        live.insert(WorkerName::indexed(2), "12/20".to_owned());
        assert_eq!(l.progress(&live), "15/30 progress, 1/3 workers done");
        live.insert(WorkerName::indexed(2), "30/20".to_owned());
        assert_eq!(l.progress(&live), "3/10 progress, 1/3 workers done", "a > b is not a fraction");
    }

    #[test]
    fn a_done_checkpoint_round_trips_and_default_is_not_done() {
        assert_eq!(serde_json::to_string(&Done { done: true }).unwrap(), r#"{"done":true}"#);
        assert_eq!(serde_json::from_str::<Done>("{}").unwrap(), Done::default());
    }
}
