//! `ExecutorService` over the executor's agent ([`crate::core::agent`]): request validation, and the mapping of
//! its refusals to gRPC statuses.
//!
//! | refusal | code | reason |
//! |---|---|---|
//! | no identity (checked builds: the simulation) | `Unauthenticated` | `UNAUTHENTICATED` |
//! | a job master's dispatch from anyone but a master; any from a user | `PermissionDenied` | `PERMISSION_DENIED` |
//! | a malformed field | `InvalidArgument` | `INVALID_ARGUMENT` |
//! | the task id already runs here | `FailedPrecondition` | `TASK_ALREADY_RUNNING` |
//! | an epoch not newer than one started here for the task | `FailedPrecondition` | `STALE_EPOCH` |
//! | placed under a leader epoch older than one this executor heard from | `FailedPrecondition` | `STALE_EPOCH` |
//! | placed on another registration (executor id) than the one this process holds | `FailedPrecondition` | `EXECUTOR_OFFLINE` |
//! | the executor is fenced or not registered | `FailedPrecondition` | `EXECUTOR_OFFLINE` |
//! | the executor stopped serving between the confirmation and the task's start | `FailedPrecondition` | `EXECUTOR_OFFLINE` |
//! | the executor is shutting down (draining) | `FailedPrecondition` | `EXECUTOR_OFFLINE` |
//! | parking area full, or not enough free capacity | `ResourceExhausted` | `PLACEMENT_FAILED` |
//! | an unknown or expired request id | `NotFound` | `DISPATCH_NOT_FOUND` |

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{timing_from_wire_workers, Executor, Refusal, TaskKind, TaskSpec};
use crate::core::auth::Action;
use crate::core::ids::{Epoch, ExecutorId, LeaderEpoch, TaskId};
use crate::rpc::pb;
use crate::rpc::pb::executor_service_server::ExecutorService;
use crate::rpc::status::{invalid_argument, Reason};

/// The most slots one task may cost (as the master's placement).
const COST_MAX: u32 = crate::core::registry::CAPACITY_MAX;

#[derive(Clone)]
pub(crate) struct ExecutorSvc {
    pub(crate) e: Arc<Executor>,
}

/// Validates a pre-dispatch request.
pub fn spec_from_wire(r: pb::PreDispatchTaskRequest) -> Result<TaskSpec, Status> {
    let task_id = TaskId::parse(&r.task_id).map_err(|e| invalid_argument("task_id", e))?;
    let kind = match pb::TaskKind::try_from(r.kind) {
        Ok(pb::TaskKind::JobMaster) => TaskKind::JobMaster,
        Ok(pb::TaskKind::Worker) => TaskKind::Worker,
        _ => return Err(invalid_argument("kind", format!("{} is not a task kind (JOB_MASTER or WORKER)", r.kind))),
    };
    if r.epoch == 0 {
        return Err(invalid_argument("epoch", "must be positive (epochs start at 1)"));
    }
    if r.request_id.is_empty() {
        return Err(invalid_argument("request_id", "must not be empty"));
    }
    if r.executor_id == 0 {
        return Err(invalid_argument("executor_id", "must name the executor the task was placed on"));
    }
    let timing = match r.timing.as_ref() {
        None => return Err(invalid_argument("timing", "is missing")),
        Some(t) => timing_from_wire_workers(t).map_err(|e| invalid_argument("timing", e))?,
    };
    let cost = match r.cost {
        0 => 1,
        c if c > COST_MAX => return Err(invalid_argument("cost", format!("{c} exceeds the maximum of {COST_MAX}"))),
        c => c,
    };
    Ok(TaskSpec {
        task_id,
        kind,
        task_type: r.task_type,
        task_config: r.task_config,
        job_id: r.job_id,
        epoch: Epoch(r.epoch),
        master_id: r.master_id,
        master_address: r.master_address,
        master_epoch: Epoch(r.master_epoch),
        leader_epoch: LeaderEpoch(r.leader_epoch),
        request_id: r.request_id,
        cost,
        timing,
        executor: ExecutorId(r.executor_id),
    })
}

/// The status a refusal is sent as.
pub fn refusal_status(r: &Refusal) -> Status {
    let message = r.to_string();
    match r {
        Refusal::StaleEpoch { .. } => Reason::StaleEpoch.status(message),
        Refusal::AlreadyRunning { .. } => Reason::TaskAlreadyRunning.status(message),
        Refusal::DuplicateRequest { .. } => invalid_argument("request_id", message),
        Refusal::ParkingFull { .. } | Refusal::NoCapacity { .. } => Reason::PlacementFailed.status(message),
        Refusal::NotFound { .. } => Reason::DispatchNotFound.status(message),
        Refusal::NotRegistered { .. }
        | Refusal::Draining { .. }
        | Refusal::Fenced { .. }
        | Refusal::OtherRegistration { .. }
        | Refusal::StoppedMeanwhile { .. } => Reason::ExecutorOffline.status(message),
        Refusal::DeposedLeader { .. } => Reason::StaleEpoch.status(message),
    }
}

#[tonic::async_trait]
impl ExecutorService for ExecutorSvc {
    async fn pre_dispatch_task(
        &self,
        req: Request<pb::PreDispatchTaskRequest>,
    ) -> Result<Response<pb::PreDispatchTaskResponse>, Status> {
        let job_master = req.get_ref().kind == pb::TaskKind::JobMaster as i32;
        crate::rpc::identity::check(&req, &Action::Dispatch { job_master })?;
        let spec = spec_from_wire(req.into_inner())?;
        self.e.decide(|s, now| s.agent.pre_dispatch(now, spec)).map_err(|r| refusal_status(&r))?;
        Ok(Response::new(pb::PreDispatchTaskResponse {}))
    }

    async fn confirm_dispatch_task(
        &self,
        req: Request<pb::ConfirmDispatchTaskRequest>,
    ) -> Result<Response<pb::ConfirmDispatchTaskResponse>, Status> {
        crate::rpc::identity::check(&req, &Action::ConfirmDispatch)?;
        let r = req.into_inner();
        // Received, not yet judged: the judgement (and the answer) may come late.
        self.e.before_confirm().await;
        // Judged and moved in one step of the agent, and judged again when the task starts: a fence or a new
        // registration in between cannot let a task start after it.
        let spec =
            self.e.decide(|s, now| s.agent.confirm(now, &r.task_id, &r.request_id)).map_err(|r| refusal_status(&r))?;
        // Accepted, not yet started: the start (and the answer) may come late.
        self.e.before_start().await;
        self.e.start_task(spec).map_err(|r| refusal_status(&r))?;
        Ok(Response::new(pb::ConfirmDispatchTaskResponse {}))
    }

    async fn read_logs(&self, req: Request<pb::ReadLogsRequest>) -> Result<Response<pb::ReadLogsResponse>, Status> {
        crate::rpc::identity::check(&req, &Action::ReadLogs)?;
        let r = req.into_inner();
        use crate::framework::logs::wire;
        let ask = wire::request("job_id", &r.job_id, &r.worker, r.stream, r.max_bytes)?;
        let logs = self.e.logs();
        let held = logs.index(ask.job.as_str());
        let chunk = ask.worker.and_then(|w| {
            let epoch = (r.epoch != 0)
                .then_some(r.epoch)
                .or_else(|| held.iter().filter(|i| i.worker == w.as_str()).map(|i| i.epoch).max())?;
            let c = logs.read(ask.job.as_str(), w.as_str(), Some(epoch), ask.stream, r.offset, ask.max)?;
            Some(wire::chunk(w.as_str(), epoch, ask.stream, c))
        });
        let held = held.into_iter().map(wire::incarnation).collect();
        Ok(Response::new(pb::ReadLogsResponse { held, chunk }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> pb::PreDispatchTaskRequest {
        pb::PreDispatchTaskRequest {
            task_id: "job/w1".to_owned(),
            kind: pb::TaskKind::Worker as i32,
            task_type: "fake".to_owned(),
            task_config: b"{}".to_vec(),
            job_id: "job".to_owned(),
            epoch: 7,
            master_id: "job".to_owned(),
            master_address: "10.0.0.1:10250".to_owned(),
            master_epoch: 3,
            leader_epoch: 2,
            request_id: "r1".to_owned(),
            executor_id: 4,
            cost: 0,
            timing: Some(pb::HeartbeatTiming {
                heartbeat_interval_ms: 1000,
                heartbeat_timeout_ms: 1000,
                self_fence_ms: 10_000,
                offline_ttl_ms: 12_000,
            }),
        }
    }

    #[test]
    fn request_validation_table() {
        type Edit = fn(&mut pb::PreDispatchTaskRequest);
        let table: &[(&str, Edit, Option<&str>)] = &[
            ("valid", |_| {}, None),
            ("empty task id", |r| r.task_id.clear(), Some("task_id:")),
            ("task id with a space", |r| r.task_id = "a b".to_owned(), Some("task_id:")),
            ("no kind", |r| r.kind = 0, Some("kind:")),
            ("unknown kind", |r| r.kind = 9, Some("kind:")),
            ("epoch 0", |r| r.epoch = 0, Some("epoch:")),
            ("no request id", |r| r.request_id.clear(), Some("request_id:")),
            ("no executor id", |r| r.executor_id = 0, Some("executor_id:")),
            ("no timing", |r| r.timing = None, Some("timing: is missing")),
            (
                "fence not before offline",
                |r| r.timing.as_mut().unwrap().self_fence_ms = 11_000,
                Some("rule: self-fence < offline TTL - heartbeat deadline"),
            ),
            ("zero interval", |r| r.timing.as_mut().unwrap().heartbeat_interval_ms = 0, Some("is zero")),
            ("cost too high", |r| r.cost = COST_MAX + 1, Some("cost:")),
        ];
        for (name, edit, want) in table {
            let mut r = valid();
            edit(&mut r);
            match (spec_from_wire(r), want) {
                (Ok(spec), None) => {
                    assert_eq!(spec.cost, 1, "cost 0 counts as one slot");
                    assert_eq!(spec.epoch, Epoch(7));
                }
                (Err(s), Some(w)) => {
                    assert_eq!(crate::rpc::status::reason_of(&s), Some(Reason::InvalidArgument), "{name}");
                    assert!(s.message().contains(w), "{name}: {} should contain {w}", s.message());
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn refusals_map_to_codes() {
        let t = TaskId::parse("t").unwrap();
        let t2 = t.clone();
        let table = [
            (
                Refusal::AlreadyRunning { task: t.clone(), running: Epoch(1), requested: Epoch(2) },
                tonic::Code::FailedPrecondition,
                Some(Reason::TaskAlreadyRunning),
            ),
            (
                Refusal::StaleEpoch { task: t.clone(), seen: Epoch(2), requested: Epoch(2) },
                tonic::Code::FailedPrecondition,
                Some(Reason::StaleEpoch),
            ),
            (Refusal::ParkingFull { max: 1 }, tonic::Code::ResourceExhausted, Some(Reason::PlacementFailed)),
            (
                Refusal::NoCapacity { task: t, cost: 2, free: 1, capacity: 4 },
                tonic::Code::ResourceExhausted,
                Some(Reason::PlacementFailed),
            ),
            (
                Refusal::NotFound {
                    task: "t".to_owned(),
                    request_id: "r".to_owned(),
                    ttl: std::time::Duration::from_secs(5),
                },
                tonic::Code::NotFound,
                Some(Reason::DispatchNotFound),
            ),
            (
                Refusal::NotRegistered { executor: "ex".to_owned() },
                tonic::Code::FailedPrecondition,
                Some(Reason::ExecutorOffline),
            ),
            (
                Refusal::Draining { executor: "ex".to_owned() },
                tonic::Code::FailedPrecondition,
                Some(Reason::ExecutorOffline),
            ),
            (
                Refusal::Fenced { executor: "ex".to_owned() },
                tonic::Code::FailedPrecondition,
                Some(Reason::ExecutorOffline),
            ),
            (
                Refusal::OtherRegistration { executor: "ex".to_owned(), placed: ExecutorId(1), current: ExecutorId(2) },
                tonic::Code::FailedPrecondition,
                Some(Reason::ExecutorOffline),
            ),
            (
                Refusal::DeposedLeader {
                    task: t2.clone(),
                    epoch: Epoch(3),
                    placed_under: LeaderEpoch(1),
                    newest: LeaderEpoch(2),
                },
                tonic::Code::FailedPrecondition,
                Some(Reason::StaleEpoch),
            ),
            (
                Refusal::StoppedMeanwhile { task: t2, epoch: Epoch(3) },
                tonic::Code::FailedPrecondition,
                Some(Reason::ExecutorOffline),
            ),
        ];
        for (r, code, reason) in table {
            let s = refusal_status(&r);
            assert_eq!(s.code(), code, "{r:?}");
            assert_eq!(crate::rpc::status::reason_of(&s), reason, "{r:?}");
            assert_eq!(s.message(), r.to_string());
        }
    }
}
