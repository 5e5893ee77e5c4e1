//! The worker runtime: one incarnation of a job type's worker, from its dispatch to its report.
//!
//! In order: wait for the metastore; heartbeat until the job master accepts the incarnation (it is live from
//! then on); then, beside the link, read the checkpoint (after the job master wrote this incarnation's record, so
//! it resumes from whatever an earlier incarnation managed to write) and run the job type's work with a
//! [`WorkerCtx`]. The link's end (fenced, stale) stops the work at once; a cancel reaches it through the context.
//! A work that ends [`WorkerEnd::Drained`] has its last checkpoint marked stopped. The outcome is reported to the
//! job master until acknowledged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::watch;
use tracing::warn;

use super::api::{Interrupted, JobType, WorkerCtx, WorkerEnd, WorkerError};
use super::checkpoint::{Checkpoints, SaveError};
use super::link::LinkEnd;
use super::linked::{finish, keep_linked, link_to_master, Outcome};
use super::panic::catch_panic;
use super::store::JobStore;
use super::task::{ExecutorObservation, TaskEnv, TaskExit, TaskSpec};
use crate::core::ids::{JobId, TaskId, WorkerName};
use crate::core::planted::Planted;

/// A worker task id's job and worker name.
fn split_task(task: &TaskId) -> Option<(JobId, WorkerName)> {
    let (job, name) = task.as_str().split_once('/')?;
    Some((JobId::parse(job).ok()?, WorkerName::parse(name).ok()?))
}

/// Runs one incarnation of a worker of job type `t`.
pub async fn run<T: JobType>(t: Arc<T>, mut env: TaskEnv, spec: TaskSpec) -> TaskExit {
    let meta = env.metastore().await;
    let mut link = link_to_master(&env, &spec, vec![spec.master_address.clone()], false);
    if env.planted(Planted::WorkerIgnoresFence) {
        link.plant_ignore_fence();
    }
    if let Some(end) = link.until_live().await {
        return finish(&mut link, end.into()).await;
    }
    // Checked once live, so that its job master hears why (a terminal failure) instead of losing it after its TTL
    // and starting it again, for ever.
    let config: T::WorkerConfig = match serde_json::from_slice(&spec.task_config) {
        Ok(c) => c,
        Err(e) => {
            let why = format!("task_config: {e} (the configuration of a {} worker)", T::NAME);
            return finish(&mut link, Outcome::Failed(why)).await;
        }
    };
    let Some((job, name)) = split_task(&spec.task_id) else {
        let why = format!("{} is not a worker task id (<job>/<worker>)", spec.task_id);
        return finish(&mut link, Outcome::Failed(why)).await;
    };
    let progress = link.progress();
    let (cancel_tx, cancel) = watch::channel(false);
    // Set by the planted bug `PanicLeftRunning` only.
    let hanging = AtomicBool::new(false);
    let work = async {
        let store = JobStore::new(meta.clone(), job.as_str(), name.as_str(), spec.task_id.clone(), spec.epoch);
        let store = if env.planted(Planted::StoreUnguarded) { store.unguarded() } else { store };
        let opened = Checkpoints::<T::Checkpoint>::open(
            &env,
            meta,
            job.as_str(),
            name.as_str(),
            spec.task_id.clone(),
            spec.epoch,
        )
        .await;
        let (checkpoints, restored) = match opened {
            Ok(c) => c,
            Err(e) => return Outcome::Failed(e),
        };
        let (ctx_env, epoch) = (env.clone(), spec.epoch);
        let mut ctx = WorkerCtx { env: ctx_env, job, name, epoch, checkpoints, store, restored, progress, cancel };
        // A panic of the work is a retryable failure of this incarnation: counted and bounded like any other.
        let end = match catch_panic(t.work(config, &mut ctx)).await {
            Ok(Ok(end)) => end,
            Ok(Err(Interrupted::Superseded)) => return Outcome::Stale,
            Ok(Err(Interrupted::BadState(m))) => return Outcome::Failed(m),
            Err(message) => {
                let (task, epoch) = (spec.task_id.clone(), spec.epoch);
                warn!(%task, epoch = epoch.0, "worker panicked: {message}");
                env.observe(ExecutorObservation::TaskPanicked { task, epoch, message: message.clone() });
                if env.planted(Planted::PanicLeftRunning) {
                    hanging.store(true, Ordering::Relaxed);
                }
                return Outcome::FailedRetryable(format!("panicked: {message}"));
            }
        };
        match end {
            WorkerEnd::Finished => Outcome::Finished,
            WorkerEnd::Canceled => Outcome::Canceled,
            WorkerEnd::Failed(WorkerError { message, retryable: false }) => Outcome::Failed(message),
            WorkerEnd::Failed(WorkerError { message, retryable: true }) => Outcome::FailedRetryable(message),
            // Only between steps: every step taken is checkpointed and none is in flight. The last checkpoint says
            // this incarnation stopped (best effort: without it, a recovering job master waits for it to check in).
            WorkerEnd::Drained => match ctx.checkpoints.mark_stopped(&ctx.env).await {
                Ok(()) => Outcome::Stopped,
                Err(SaveError::Superseded) => Outcome::Stale,
                Err(SaveError::BadState(m)) => Outcome::Failed(m),
            },
        }
    };
    let mut work = Box::pin(work);
    let outcome = tokio::select! {
        biased;
        end = keep_linked(&mut link, cancel_tx) => match end {
            // Told stale while its executor drains: most likely its job master, drained on the same executor,
            // stopped first. The work is taking its last step, the checkpoint that says this incarnation stopped
            // (guarded by its epoch, so refused if a newer one exists): let it, within the bound `stale_linger`
            // decides.
            LinkEnd::Stale if env.is_draining() => {
                let linger = crate::core::fence::stale_linger(env.clock.now(), env.rpc_timeout, link.deadline());
                tokio::time::timeout(linger, &mut work).await.unwrap_or(Outcome::Stale)
            }
            end => end.into(),
        },
        out = &mut work => out,
    };
    // Whatever the work still holds goes now, before the report: a command it started is killed with its group
    // (framework::process), so that nothing of this incarnation acts once its end is reported.
    drop(work);
    if matches!(outcome, Outcome::FailedRetryable(_) | Outcome::Failed(_)) {
        // Its work ended failing: it acts no more and only reports the failure, after which its job master may
        // start the next incarnation (swarm seed 1796483774: the answer to that report was held, and the failed
        // incarnation counted live beside its successor). Not live from here, as a drained task.
        env.observe(ExecutorObservation::TaskQuiesced { task: spec.task_id.clone(), epoch: spec.epoch });
    }
    if hanging.load(Ordering::Relaxed) {
        // The planted bug: the link is gone (no heartbeat, no report), the task never returns.
        return std::future::pending().await;
    }
    finish(&mut link, outcome).await
}
