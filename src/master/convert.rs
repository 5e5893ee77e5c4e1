//! Between the wire (`rpc::pb`) and the core's types. Input from the network is validated here: every refusal
//! is an `InvalidArgument` naming the field.

use tonic::Status;

use crate::core::ids::JobId;
use crate::core::ids::{Epoch, TaskId};
use crate::core::job::{CorruptRecord, FailureReason, Job, JobState};
use crate::core::labels::{Selector, SelectorOp};
use crate::core::manager::ExecutorUsage;
use crate::core::registry::{EndedTask, ReportedTask, Status as ExecStatus, TaskKind, ENDED_TASKS_MAX};
use crate::core::time::{millis_of, Time};
use crate::rpc::pb;
use crate::rpc::status::invalid_argument;

/// The most slots one task may take: no executor has more.
pub const COST_MAX: u32 = crate::core::registry::CAPACITY_MAX;

pub fn selectors(field: &str, wire: &[pb::Selector]) -> Result<Vec<Selector>, Status> {
    let mut out = Vec::with_capacity(wire.len());
    for (i, s) in wire.iter().enumerate() {
        let op = match pb::SelectorOp::try_from(s.op) {
            Ok(pb::SelectorOp::Eq) => SelectorOp::Eq,
            Ok(pb::SelectorOp::Neq) => SelectorOp::Neq,
            Ok(pb::SelectorOp::Regex) => SelectorOp::Regex,
            _ => {
                return Err(invalid_argument(&format!("{field}[{i}].op"), format!("{} is not EQ, NEQ or REGEX", s.op)))
            }
        };
        let sel = Selector::new(&s.key, op, &s.target).map_err(|e| invalid_argument(&format!("{field}[{i}]"), e))?;
        out.push(sel);
    }
    crate::core::labels::validate_selectors(&out).map_err(|e| invalid_argument(field, e))?;
    Ok(out)
}

pub use crate::rpc::selector_to_wire;

pub fn job_id(field: &str, text: &str) -> Result<JobId, Status> {
    JobId::parse(text).map_err(|e| invalid_argument(field, e))
}

pub fn cost(field: &str, wire: u32) -> Result<u32, Status> {
    match wire {
        0 => Ok(1),
        c if c > COST_MAX => Err(invalid_argument(field, format!("{c} exceeds the maximum of {COST_MAX}"))),
        c => Ok(c),
    }
}

pub fn state_to_wire(s: JobState) -> pb::JobState {
    match s {
        JobState::Created => pb::JobState::Created,
        JobState::Running => pb::JobState::Running,
        JobState::Canceling => pb::JobState::Canceling,
        JobState::Finished => pb::JobState::Finished,
        JobState::Canceled => pb::JobState::Canceled,
        JobState::Failed => pb::JobState::Failed,
    }
}

pub use crate::core::manager::StateFilter;

pub fn state_from_wire(field: &str, wire: i32) -> Result<Option<StateFilter>, Status> {
    let state = match pb::JobState::try_from(wire) {
        Ok(pb::JobState::Unspecified) => return Ok(None),
        Ok(pb::JobState::Corrupt) => return Ok(Some(StateFilter::Corrupt)),
        Ok(pb::JobState::Created) => JobState::Created,
        Ok(pb::JobState::Running) => JobState::Running,
        Ok(pb::JobState::Canceling) => JobState::Canceling,
        Ok(pb::JobState::Finished) => JobState::Finished,
        Ok(pb::JobState::Canceled) => JobState::Canceled,
        Ok(pb::JobState::Failed) => JobState::Failed,
        Err(_) => return Err(invalid_argument(field, format!("{wire} is not a job state"))),
    };
    Ok(Some(StateFilter::State(state)))
}

/// A job whose record is corrupt, as the API shows it: its id, the state `CORRUPT`, and where and why in `error`.
pub fn corrupt_job_to_wire(id: &JobId, record: &CorruptRecord) -> pb::Job {
    pb::Job {
        id: id.as_str().to_owned(),
        state: pb::JobState::Corrupt as i32,
        error: Some(pb::JobError {
            reason: "JOB_RECORD_CORRUPT".to_owned(),
            message: format!("{record}; it cannot run: delete it (foreman job delete {id})"),
        }),
        ..Default::default()
    }
}

fn failure_reason(r: FailureReason) -> String {
    serde_json::to_value(r).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_else(|| format!("{r:?}"))
}

pub fn job_to_wire(job: &Job, include_config: bool) -> pb::Job {
    let r = job.record(Time::ZERO);
    pb::Job {
        id: r.id.as_str().to_owned(),
        r#type: r.spec.job_type.clone(),
        config: if include_config { r.spec.config.clone().into_bytes() } else { vec![] },
        selectors: r.spec.selectors.iter().map(selector_to_wire).collect(),
        state: state_to_wire(r.state) as i32,
        error: r
            .failure
            .as_ref()
            .map(|f| pb::JobError { reason: failure_reason(f.reason), message: f.message.clone() }),
        restarts: r.restarts,
        epoch: r.epoch.0,
        executor_id: r.executor.map_or(0, |e| e.0),
        cost: r.spec.cost,
        progress: String::new(),
        waiting: job.unplaced().unwrap_or_default().to_owned(),
        last_error: r.last_error.as_deref().map(crate::framework::last_error_to_wire),
        project: r.spec.project.to_string(),
        // The job manager's notes, not the record's: `ops` adds them.
        resources: vec![],
    }
}

/// A project from the wire: empty means the default project.
pub fn project(field: &str, text: &str) -> Result<crate::core::ids::Project, Status> {
    if text.is_empty() {
        return Ok(crate::core::ids::Project::default());
    }
    crate::core::ids::Project::parse(text).map_err(|e| invalid_argument(field, e))
}

pub fn executor_to_wire(u: &ExecutorUsage, now: Time) -> pb::Executor {
    let v = &u.view;
    let s = &v.record.spec;
    pb::Executor {
        id: v.record.id.0,
        name: s.name.clone(),
        address: s.address.clone(),
        capacity: s.capacity,
        labels: s.labels.clone(),
        status: match v.status {
            ExecStatus::Online => pb::ExecutorStatus::Online,
            ExecStatus::Unconfirmed => pb::ExecutorStatus::Unconfirmed,
            ExecStatus::Draining => pb::ExecutorStatus::Draining,
        } as i32,
        used: u.used,
        last_heartbeat_age_ms: millis_of(now.saturating_since(v.last_heard)),
        resources: u.resources,
    }
}

pub fn reported_tasks(wire: &[pb::RunningTask]) -> Result<Vec<ReportedTask>, Status> {
    let mut out = Vec::with_capacity(wire.len());
    for (i, t) in wire.iter().enumerate() {
        let task = TaskId::parse(&t.task_id).map_err(|e| invalid_argument(&format!("tasks[{i}].task_id"), e))?;
        let kind = match pb::TaskKind::try_from(t.kind) {
            Ok(pb::TaskKind::JobMaster) => TaskKind::JobMaster,
            Ok(pb::TaskKind::Worker) => TaskKind::Worker,
            _ => return Err(invalid_argument(&format!("tasks[{i}].kind"), "must be JOB_MASTER or WORKER")),
        };
        out.push(ReportedTask { task, kind, epoch: Epoch(t.epoch), cost: t.cost.max(1) });
    }
    Ok(out)
}

pub fn ended_tasks(wire: &[pb::EndedTask]) -> Result<Vec<EndedTask>, Status> {
    if wire.len() > ENDED_TASKS_MAX {
        return Err(invalid_argument("ended", format!("{} ended tasks; at most {ENDED_TASKS_MAX}", wire.len())));
    }
    wire.iter()
        .enumerate()
        .map(|(i, t)| {
            let task = TaskId::parse(&t.task_id).map_err(|e| invalid_argument(&format!("ended[{i}].task_id"), e))?;
            Ok(EndedTask { task, epoch: Epoch(t.epoch) })
        })
        .collect()
}

/// The jobs an executor's heartbeat asks about (`held_jobs`): at most [`crate::core::collect::HELD_PER_HEARTBEAT`],
/// each a job id.
pub fn held_jobs(wire: &[String]) -> Result<Vec<JobId>, Status> {
    use crate::core::collect::HELD_PER_HEARTBEAT;
    if wire.len() > HELD_PER_HEARTBEAT {
        return Err(invalid_argument("held_jobs", format!("{} jobs; at most {HELD_PER_HEARTBEAT}", wire.len())));
    }
    wire.iter()
        .enumerate()
        .map(|(i, j)| JobId::parse(j).map_err(|e| invalid_argument(&format!("held_jobs[{i}]"), e)))
        .collect()
}
