//! The `exec` job type (issue 16, docs/plans/issue-16.md): N workers each run a command as a child process on
//! their executor, started again when it fails, until each exits 0.
//!
//! A worker's command runs with the executor's `PATH`, `HOME`, `USER`, `LANG`, `LC_ALL` and `TZ` (nothing else of
//! the executor's environment), the job's `env`, and foreman's own variables: `FOREMAN_JOB_ID`, `FOREMAN_WORKER`
//! (its index), `FOREMAN_EPOCH` (this incarnation's epoch: it grows with every incarnation of the worker, a fencing
//! token to hand to the systems the command writes to) and `FOREMAN_SCRATCH` (a directory of its own on its
//! executor, also its working directory). A line `FOREMAN_PROGRESS a/b` on its stdout is its progress.
//!
//! Exit 0 ends the worker (its checkpoint says so, so that a recovering job master never runs it again); a
//! non-zero exit, a signal or the timeout is a retryable failure, up to `max_restarts` in a row, then the job
//! fails. A cancel or a drain stops the command: SIGTERM to its process group, `stop_grace`, SIGKILL. Every other
//! end of the worker kills the group at once (`framework::process`).

pub mod config;
pub mod logic;

use std::time::Duration;

use self::config::Exec;
use self::logic::{Done, ExecLogic, ExecWorker};
use super::ConfigProblem;
use crate::core::duration::format_duration;
use crate::framework::api::{
    Interrupted, JobType, Paused, ProcessEvent, ProcessSpec, Saved, WorkerCtx, WorkerEnd, WorkerError,
};
use crate::framework::process::{inherited_env, Exit};

pub const TYPE: &str = "exec";
/// The prefix of a stdout line that says how far the command got (`FOREMAN_PROGRESS 12/100`).
pub const PROGRESS_PREFIX: &str = "FOREMAN_PROGRESS ";
/// The longest wait of a run without a timeout, between two looks (a cancel or a drain ends it sooner).
const UNTIMED_WAIT: Duration = Duration::from_secs(3600);
/// Between two tries of the checkpoint that says the command exited 0, when the metastore did not answer.
const SAVE_RETRY: Duration = Duration::from_millis(500);

/// The exec job type.
pub struct ExecType;

/// What ended a wait for the command.
enum Next {
    Event(ProcessEvent),
    /// A cancel arrived or the executor drains.
    Interrupted,
    /// The pause ran out: the timeout, if there is one.
    Elapsed,
}

impl JobType for ExecType {
    const NAME: &'static str = TYPE;
    type Config = Exec;
    type WorkerConfig = ExecWorker;
    type Checkpoint = Done;
    type Logic = ExecLogic;

    fn parse_config(config: &[u8]) -> Result<Exec, ConfigProblem> {
        Exec::parse(config)
    }

    async fn work(&self, w: ExecWorker, ctx: &mut WorkerCtx<Done>) -> Result<WorkerEnd, Interrupted> {
        let failed = |message: String| Ok(WorkerEnd::Failed(WorkerError { message, retryable: true }));
        if ctx.restored().is_some_and(|d| d.done) {
            return Ok(WorkerEnd::Finished);
        }
        if ctx.is_canceled() {
            return Ok(WorkerEnd::Canceled);
        }
        if ctx.is_draining() {
            return Ok(WorkerEnd::Drained);
        }
        let program = w.argv.first().cloned().unwrap_or_default();
        let scratch = match ctx.scratch_dir() {
            Ok(d) => d,
            Err(e) => return failed(e),
        };
        let mut env = inherited_env();
        env.extend(w.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend([
            ("FOREMAN_JOB_ID".to_owned(), ctx.job().as_str().to_owned()),
            ("FOREMAN_WORKER".to_owned(), w.index.to_string()),
            ("FOREMAN_EPOCH".to_owned(), ctx.epoch().0.to_string()),
            ("FOREMAN_SCRATCH".to_owned(), scratch.display().to_string()),
        ]);
        let spec = ProcessSpec { argv: w.argv.clone(), env, cwd: scratch };
        // The command's group is killed when `process` goes, at the end of this block: whatever it left running
        // once it exited goes with it.
        let exit = {
            let mut process = match ctx.spawn(&spec) {
                Ok(p) => p,
                Err(e) => return failed(format!("cannot start `{program}`: {e}")),
            };
            let grace = Duration::from_millis(w.stop_grace_ms);
            let timeout = w.timeout_ms.map(Duration::from_millis);
            let started = ctx.clock().now();
            loop {
                let ran = ctx.clock().now().saturating_since(started);
                let wait = timeout.map_or(UNTIMED_WAIT, |t| t.saturating_sub(ran));
                let next = tokio::select! {
                    biased;
                    e = process.event() => Next::Event(e),
                    p = ctx.pause(wait) => match p {
                        Paused::Interrupted => Next::Interrupted,
                        Paused::Elapsed => Next::Elapsed,
                    },
                };
                match next {
                    Next::Event(ProcessEvent::Line(line)) => {
                        if let Some(p) = line.strip_prefix(PROGRESS_PREFIX) {
                            ctx.progress(p.trim());
                        }
                    }
                    Next::Event(ProcessEvent::Exited(e)) => break e,
                    Next::Interrupted if ctx.is_canceled() => {
                        process.stop(grace).await;
                        return Ok(WorkerEnd::Canceled);
                    }
                    Next::Interrupted if ctx.is_draining() => {
                        process.stop(grace).await;
                        return Ok(WorkerEnd::Drained);
                    }
                    Next::Interrupted => {}
                    Next::Elapsed => {
                        if let Some(t) = timeout.filter(|t| ctx.clock().now().saturating_since(started) >= *t) {
                            process.stop(grace).await;
                            return failed(format!("`{program}` ran past its timeout of {}", format_duration(t)));
                        }
                    }
                }
            }
        };
        if exit != Exit::Code(0) {
            return failed(format!("`{program}` {exit}"));
        }
        // Done, once its checkpoint says so: a job master that recovers never runs it again.
        loop {
            match ctx.try_save(&Done { done: true }).await? {
                Saved::Yes => return Ok(WorkerEnd::Finished),
                Saved::Unknown => {
                    if ctx.pause(SAVE_RETRY).await == Paused::Interrupted && ctx.is_canceled() {
                        return Ok(WorkerEnd::Canceled);
                    }
                }
            }
        }
    }
}
