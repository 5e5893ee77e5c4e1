//! The job types a build runs, by name: what checks a job's configuration at `CreateJob` (so that a job that can
//! never run is refused with the field to fix, not failed on an executor later), and what starts a job's job
//! master and workers on an executor.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::api::{ConfigProblem, JobType};
use super::task::{StopSignal, TaskEnv, TaskExit, TaskFactory, TaskFuture, TaskSpec};
use crate::core::registry::TaskKind;
use crate::core::text::quote;

/// The largest configuration a job may carry, in bytes (it is stored with the job and sent with each dispatch).
pub const CONFIG_MAX_BYTES: usize = 64 * 1024;

/// One job type, its types erased.
trait Erased: Send + Sync {
    fn validate(&self, config: &[u8]) -> Result<(), ConfigProblem>;
    fn start(&self, env: TaskEnv, spec: TaskSpec) -> TaskFuture;
}

struct Typed<T>(Arc<T>);

impl<T: JobType> Erased for Typed<T> {
    fn validate(&self, config: &[u8]) -> Result<(), ConfigProblem> {
        T::parse_config(config).map(|_| ())
    }

    fn start(&self, env: TaskEnv, spec: TaskSpec) -> TaskFuture {
        match spec.kind {
            TaskKind::JobMaster => Box::pin(super::job_master::run(self.0.clone(), env, spec)),
            TaskKind::Worker => Box::pin(super::worker::run(self.0.clone(), env, spec)),
        }
    }
}

/// The job types of a build, by name.
#[derive(Clone, Default)]
pub struct JobTypes {
    types: BTreeMap<&'static str, Arc<dyn Erased>>,
}

/// Two job types of one name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("job type {0:?} is registered twice")]
pub struct DuplicateType(pub &'static str);

impl JobTypes {
    pub fn new() -> JobTypes {
        JobTypes::default()
    }

    /// These types and `t`; refused if one of them has its name.
    pub fn with<T: JobType>(mut self, t: T) -> Result<JobTypes, DuplicateType> {
        if self.types.contains_key(T::NAME) {
            return Err(DuplicateType(T::NAME));
        }
        self.types.insert(T::NAME, Arc::new(Typed(Arc::new(t))));
        Ok(self)
    }

    /// The names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.types.keys().copied().collect()
    }

    /// Checks a job's type and configuration as `CreateJob` receives them; the refusal names the field to fix.
    pub fn validate(&self, job_type: &str, config: &[u8]) -> Result<(), ConfigProblem> {
        if config.len() > CONFIG_MAX_BYTES {
            return Err(ConfigProblem::new(
                "config",
                format!("is {} bytes; at most {CONFIG_MAX_BYTES} are allowed", config.len()),
            ));
        }
        let known = self.names().join(", ");
        match self.types.get(job_type) {
            Some(t) => t.validate(config),
            None if job_type.is_empty() => {
                Err(ConfigProblem::new("type", format!("is required; known types: {known}")))
            }
            None => {
                Err(ConfigProblem::new("type", format!("{} is not a known job type; known: {known}", quote(job_type))))
            }
        }
    }
}

impl TaskFactory for JobTypes {
    fn start(&self, env: TaskEnv, spec: TaskSpec, _stop: StopSignal) -> TaskFuture {
        match self.types.get(spec.task_type.as_str()) {
            Some(t) => t.start(env, spec),
            None => {
                let why = format!(
                    "{} is not a job type this executor runs; known: {}",
                    quote(&spec.task_type),
                    self.names().join(", ")
                );
                Box::pin(async move { TaskExit::Failed(why) })
            }
        }
    }
}
