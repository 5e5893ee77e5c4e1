//! Job types: what a job's `type` and `config` mean.
//!
//! The job manager only needs a job type to check a configuration at `CreateJob`, so that a job that can never
//! run is refused with the field to fix instead of failing on an executor later. The types' job masters and
//! workers (what runs on executors) live with each type.
//!
//! | type | config | what it does |
//! |---|---|---|
//! | `fake` | `{"workers": N, "target": T, "tick_ms": I}` | N workers each count to T, one step every I ms, checkpointing |

pub mod fake;

use crate::core::text::quote;

/// The largest configuration a job may carry, in bytes (it is stored with the job and sent with each dispatch).
pub const CONFIG_MAX_BYTES: usize = 64 * 1024;

pub use crate::framework::api::ConfigProblem;

/// The production task factory: the job masters and workers of every job type this build knows.
pub struct JobTypes;

impl crate::framework::task::TaskFactory for JobTypes {
    fn start(
        &self,
        env: crate::framework::task::TaskEnv,
        spec: crate::framework::task::TaskSpec,
        _stop: crate::framework::task::StopSignal,
    ) -> crate::framework::task::TaskFuture {
        use crate::framework::task::{TaskExit, TaskKind};
        match (spec.kind, spec.task_type.as_str()) {
            (TaskKind::JobMaster, fake::TYPE) => {
                Box::pin(crate::framework::job_master::run(std::sync::Arc::new(fake::Fake), env, spec))
            }
            (TaskKind::Worker, fake::TYPE) => {
                Box::pin(crate::framework::worker::run(std::sync::Arc::new(fake::Fake), env, spec))
            }
            (_, other) => {
                let why = format!(
                    "{} is not a job type this executor runs; known: {}",
                    crate::core::text::quote(other),
                    TYPES.join(", ")
                );
                Box::pin(async move { TaskExit::Failed(why) })
            }
        }
    }
}

/// The job types this build knows, in name order.
pub const TYPES: &[&str] = &[fake::TYPE];

/// Checks a job's type and configuration as `CreateJob` receives them.
pub fn validate(job_type: &str, config: &[u8]) -> Result<(), ConfigProblem> {
    if config.len() > CONFIG_MAX_BYTES {
        return Err(ConfigProblem::new(
            "config",
            format!("is {} bytes; at most {CONFIG_MAX_BYTES} are allowed", config.len()),
        ));
    }
    match job_type {
        fake::TYPE => fake::FakeConfig::parse(config).map(|_| ()),
        "" => Err(ConfigProblem::new("type", format!("is required; known types: {}", TYPES.join(", ")))),
        other => {
            let known = TYPES.join(", ");
            Err(ConfigProblem::new("type", format!("{} is not a known job type; known: {known}", quote(other))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_field() {
        let big = vec![b' '; CONFIG_MAX_BYTES + 1];
        let table: &[(&str, &[u8], &str)] = &[
            ("", b"{}", "type"),
            ("spark", b"{}", "type"),
            ("fake", &big, "config"),
            ("fake", b"not json", "config"),
            ("fake", br#"{"workers": 0, "target": 1, "tick_ms": 1}"#, "config.workers"),
        ];
        for (ty, config, field) in table {
            let e = validate(ty, config).unwrap_err();
            assert_eq!(e.field, *field, "{ty}: {e}");
        }
        assert_eq!(validate("fake", br#"{"workers": 2, "target": 10, "tick_ms": 100}"#), Ok(()));
    }
}
