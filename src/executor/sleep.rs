//! A test task factory: every task sleeps, then finishes. Its configuration is the sleep in milliseconds as
//! decimal text (`task_config`); anything else sleeps [`SleepTasks::default_sleep`]. For tests and the
//! simulation; not a job type.

use std::time::Duration;

use super::{StopSignal, TaskEnv, TaskExit, TaskFactory, TaskFuture, TaskSpec};

/// Tasks that sleep and finish.
#[derive(Clone, Debug)]
pub struct SleepTasks {
    pub default_sleep: Duration,
}

impl TaskFactory for SleepTasks {
    fn start(&self, _env: TaskEnv, spec: TaskSpec, mut stop: StopSignal) -> TaskFuture {
        let sleep = std::str::from_utf8(&spec.task_config)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .map_or(self.default_sleep, Duration::from_millis);
        Box::pin(async move {
            tokio::select! {
                biased;
                _ = stop.stopped() => TaskExit::Stopped,
                _ = tokio::time::sleep(sleep) => TaskExit::Finished,
            }
        })
    }
}
