//! The master's gRPC services: `Discovery`, `JobManager`, `TaskScheduler`, and `Framework` (job masters report
//! to the job manager). Leader-only calls are answered by the acting leader once its recovery is done, forwarded
//! by a follower to the leader it finds in the metastore (once: a forwarded call is never forwarded again), and
//! refused with a reason when no leader is known.
//!
//! Every handler first checks that its caller may make the call ([`crate::rpc::identity::check`]); the calls whose
//! rule needs what only the leader's job manager knows (who an executor id belongs to, where a job master runs)
//! are checked again by the term's driver with those facts.

use std::future::Future;
use std::sync::Arc;

use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use super::convert;
use super::election::LeaderValue;
use super::{Master, Role};
use crate::core::auth::{Action, Role as UserRole};
use crate::core::ids::{ExecutorId, LeaderEpoch};
use crate::core::job::JobSpec;
use crate::core::registry::ExecutorSpec;
use crate::framework::host::{message, verdict};
use crate::meta::{keys, StoreKind};
use crate::rpc::connect::ConnectFailure;
use crate::rpc::identity::check;
use crate::rpc::pb;
use crate::rpc::pb::discovery_client::DiscoveryClient;
use crate::rpc::pb::framework_client::FrameworkClient;
use crate::rpc::pb::job_manager_client::JobManagerClient;
use crate::rpc::pb::task_scheduler_client::TaskSchedulerClient;
use crate::rpc::status::{invalid_argument, reason_of, Reason};

/// The metadata entry a forwarding follower adds: the leader answers, it never forwards again.
pub const FORWARDED_KEY: &str = "foreman-forwarded-by";

/// The gRPC face of a [`Master`]; cheap to clone.
#[derive(Clone)]
pub struct MasterService {
    m: Arc<Master>,
}

enum Route {
    Local,
    Forward(LeaderValue),
}

impl MasterService {
    pub fn new(m: Arc<Master>) -> MasterService {
        MasterService { m }
    }

    /// Who the metastore says leads, if anyone.
    async fn leader(&self) -> Result<Option<LeaderValue>, Status> {
        let m = &self.m;
        match tokio::time::timeout(m.cfg.rpc.metastore_timeout, m.store.leader()).await {
            Ok(Ok(v)) => Ok(v.as_deref().and_then(LeaderValue::decode)),
            Ok(Err(e)) => Err(Reason::NoLeader.status(format!("cannot find the leader: {e}; retry"))),
            Err(_) => Err(Reason::NoLeader.status("cannot find the leader: the metastore did not answer; retry")),
        }
    }

    async fn route<T>(&self, req: &Request<T>) -> Result<Route, Status> {
        match self.m.role() {
            Role::Leader(_) => return Ok(Route::Local),
            Role::Recovering(_) => {
                return Err(Reason::MasterNotReady.status("master not ready: recovery is running; retry"))
            }
            Role::Follower => {}
        }
        if req.metadata().get(FORWARDED_KEY).is_some() {
            return Err(Reason::NotLeader.status(format!("{} is not the leader (any more); retry", self.m.name())));
        }
        // The leader found a moment ago, if a forward has not shown it wrong since (`core::leader_hint`).
        let hinted = self.m.lock().leader_hint.get(self.m.clock.now());
        if let Some(v) = hinted {
            return Ok(Route::Forward(v));
        }
        // Boxed, as is the forward (see `leader_only!`): only a follower looks the leader up, and the metastore's
        // future (several KB) would otherwise be part of every call's future, the leader's included.
        let found = Box::pin(self.leader()).await?;
        let other = found.clone().filter(|v| v.name != self.m.name());
        self.m.lock().leader_hint.found(other, self.m.clock.now());
        match found {
            None => Err(Reason::NoLeader.status("no leader is elected right now; retry")),
            Some(v) if v.name == self.m.name() => {
                Err(Reason::NoLeader.status("the leader is taking over or stepping down; retry"))
            }
            Some(v) => Ok(Route::Forward(v)),
        }
    }

    /// Forwards a call to the leader with this master's request deadline.
    /// (`heartbeat`: the call is an executor's heartbeat, counted apart.)
    async fn forward<T, R, F, Fut>(
        &self,
        to: LeaderValue,
        heartbeat: bool,
        req: Request<T>,
        call: F,
    ) -> Result<Response<R>, Status>
    where
        F: FnOnce(Channel, Request<T>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let timeout = self.m.cfg.rpc.request_timeout;
        Master::bump(&self.m.stats.forwarded_calls[usize::from(!heartbeat)]);
        let missed = |status: Status| {
            let mut inner = self.m.lock();
            inner.leader_hint.missed(&to);
            if inner.forward_channel.as_ref().is_some_and(|(v, _)| v == &to) {
                inner.forward_channel = None;
            }
            status
        };
        let kept = self.m.lock().forward_channel.as_ref().filter(|(v, _)| v == &to).map(|(_, c)| c.clone());
        let connected = match kept {
            Some(c) => Ok(c),
            None => crate::rpc::connect::connect(&to.address, timeout).await.inspect(|c| {
                self.m.lock().forward_channel = Some((to.clone(), c.clone()));
            }),
        };
        let channel = match connected {
            Ok(c) => c,
            Err(e) => {
                return Err(missed(match e.failure {
                    ConnectFailure::BadAddress => {
                        Reason::NoLeader.status(format!("the leader {} published an unusable address: {e}", to.name))
                    }
                    ConnectFailure::Unreachable => {
                        Reason::NoLeader.status(format!("the leader {}: {e}; retry", to.name))
                    }
                }))
            }
        };
        let mut metadata = tonic::metadata::MetadataMap::new();
        crate::rpc::identity::forward(&req, &mut metadata);
        let mut fwd = Request::from_parts(metadata, tonic::Extensions::default(), req.into_inner());
        fwd.set_timeout(timeout);
        if let Ok(v) = self.m.name().parse() {
            fwd.metadata_mut().insert(FORWARDED_KEY, v);
        }
        match call(channel, fwd).await {
            Ok(r) => Ok(r),
            Err(status) => {
                let status = forward_failure(&to, status);
                // Not reached, or no longer the leader: the next call looks the leader up again.
                match reason_of(&status) {
                    Some(Reason::NotLeader | Reason::NoLeader | Reason::ForwardFailed) => Err(missed(status)),
                    _ => Err(status),
                }
            }
        }
    }
}

/// What a follower answers for a forwarded call that failed. The leader's own answers carry a reason and are
/// passed on as they are; a status without one was made by the transport (the leader died or went silent while
/// the call was on its way: tonic says `Unknown` "transport error", or the deadline passed), so the call may or may
/// not have been carried out, and the client must be told so, not handed a refusal it cannot read.
fn forward_failure(to: &LeaderValue, status: Status) -> Status {
    let transport = matches!(
        status.code(),
        Code::Unknown | Code::Internal | Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded
    );
    if reason_of(&status).is_some() || !transport {
        return status;
    }
    let what = crate::core::text::bounded(status.message(), 200);
    Reason::ForwardFailed.status(format!(
        "the call forwarded to the leader {} at {} broke off ({:?}: {what}); it may or may not have been carried out: \
         read before you retry a change (a create with the same request id is safe to resend)",
        to.name,
        to.address,
        status.code()
    ))
}

/// Routes a leader-only call: answers it here or forwards it.
///
/// The forward is boxed: its future (a connection and a client call, several KB) would otherwise be part of every
/// call's future, which the leader allocates, moves and keeps for each call in flight while it answers locally.
macro_rules! leader_only {
    ($self:ident, $req:ident, $client:ident, $method:ident, $local:expr) => {{
        match $self.route(&$req).await? {
            Route::Local => $local,
            Route::Forward(to) => {
                let heartbeat = stringify!($method) == "heartbeat";
                Box::pin($self.forward(to, heartbeat, $req, |ch, r| async move { $client::new(ch).$method(r).await }))
                    .await
            }
        }
    }};
}

#[tonic::async_trait]
impl pb::discovery_server::Discovery for MasterService {
    async fn register_executor(
        &self,
        req: Request<pb::RegisterExecutorRequest>,
    ) -> Result<Response<pb::RegisterExecutorResponse>, Status> {
        check(&req, &Action::RegisterExecutor { name: req.get_ref().name.clone() })?;
        leader_only!(self, req, DiscoveryClient, register_executor, {
            let r = req.into_inner();
            let spec = ExecutorSpec {
                name: r.name,
                address: r.address,
                capacity: r.capacity,
                labels: r.labels,
                instance: r.instance,
            };
            let (record, epoch) = self.m.register_executor(spec).await?;
            Ok(Response::new(pb::RegisterExecutorResponse {
                executor_id: record.id.0,
                leader_epoch: epoch.0,
                timing: Some(crate::rpc::timing_to_wire(&self.m.cfg.executor_timing())),
                carry_job_masters: self.m.cfg.executors.carry_job_masters,
            }))
        })
    }

    async fn deregister_executor(
        &self,
        req: Request<pb::DeregisterExecutorRequest>,
    ) -> Result<Response<pb::DeregisterExecutorResponse>, Status> {
        let executor = ExecutorId(req.get_ref().executor_id);
        let caller = check(&req, &Action::DeregisterExecutor { executor, owner: None })?;
        leader_only!(self, req, DiscoveryClient, deregister_executor, {
            self.m.deregister_executor(executor, caller).await?;
            Ok(Response::new(pb::DeregisterExecutorResponse {}))
        })
    }

    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let caller = check(&req, &Action::Heartbeat { executor: ExecutorId(req.get_ref().executor_id), owner: None })?;
        for jm in &req.get_ref().job_masters {
            check(&req, &Action::ReportToJobManager { job: jm.worker_id.clone(), host: None })?;
        }
        leader_only!(self, req, DiscoveryClient, heartbeat, {
            let r = req.into_inner();
            let tasks = convert::reported_tasks(&r.tasks)?;
            let ended = convert::ended_tasks(&r.ended)?;
            let held = convert::held_jobs(&r.held_jobs)?;
            let carried = carried_messages(r.job_masters)?;
            let (accepted, epoch, gone) = self
                .m
                .executor_heartbeat(
                    ExecutorId(r.executor_id),
                    LeaderEpoch(r.leader_epoch),
                    tasks,
                    ended,
                    r.draining,
                    r.fenced,
                    held,
                    caller.clone(),
                )
                .await?;
            let verdict = if accepted { pb::HeartbeatVerdict::Accepted } else { pb::HeartbeatVerdict::Reregister };
            // A job master of an executor told to register again is gone with it: its carried heartbeat goes
            // unanswered (its executor stops it).
            // Boxed, and only when there is something to judge (the judging future is over 1 KB, and most
            // heartbeats carry nothing).
            let job_masters = if accepted && !carried.is_empty() {
                Box::pin(self.judge_carried(carried, &caller)).await
            } else {
                vec![]
            };
            crate::buggify::point(&self.m.fault_points, crate::buggify::Point::HeartbeatReply).await;
            Ok(Response::new(pb::HeartbeatResponse {
                verdict: verdict as i32,
                leader_epoch: epoch.0,
                timing: Some(crate::rpc::timing_to_wire(&self.m.cfg.executor_timing())),
                gone_jobs: gone.into_iter().map(String::from).collect(),
                job_masters,
                carry_job_masters: self.m.cfg.executors.carry_job_masters,
                leader_address: self.m.cfg.advertise_addr.clone(),
            }))
        })
    }

    async fn query_meta_store(
        &self,
        req: Request<pb::QueryMetaStoreRequest>,
    ) -> Result<Response<pb::QueryMetaStoreResponse>, Status> {
        check(&req, &Action::QueryMetaStore)?;
        let store = &self.m.store;
        let kind = match store.kind() {
            StoreKind::Etcd => pb::StoreKind::Etcd,
            StoreKind::Embedded => pb::StoreKind::Embedded,
        };
        Ok(Response::new(pb::QueryMetaStoreResponse {
            kind: kind as i32,
            endpoints: store.endpoints().to_vec(),
            key_prefix: store.prefix().to_owned(),
        }))
    }

    async fn list_executors(
        &self,
        req: Request<pb::ListExecutorsRequest>,
    ) -> Result<Response<pb::ListExecutorsResponse>, Status> {
        check(&req, &Action::ReadCluster)?;
        leader_only!(self, req, DiscoveryClient, list_executors, { Ok(Response::new(self.m.list_executors().await?)) })
    }

    async fn list_masters(
        &self,
        req: Request<pb::ListMastersRequest>,
    ) -> Result<Response<pb::ListMastersResponse>, Status> {
        check(&req, &Action::ReadCluster)?;
        let m = &self.m;
        let listed = tokio::time::timeout(m.cfg.rpc.metastore_timeout, m.store.list(&keys::masters_prefix()))
            .await
            .map_err(|_| Reason::MetastoreUnavailable.status("the metastore did not answer; retry"))?
            .map_err(|e| Reason::MetastoreUnavailable.status(format!("the metastore did not answer: {e}; retry")))?;
        let leader = self.leader().await.ok().flatten();
        let mut masters: Vec<pb::Master> = listed
            .iter()
            .filter_map(|(_, v)| std::str::from_utf8(v).ok().and_then(LeaderValue::decode))
            .map(|v| pb::Master {
                is_leader: leader.as_ref().is_some_and(|l| l.name == v.name && l.lease == v.lease),
                name: v.name,
                address: v.address,
            })
            .collect();
        masters.sort_by(|a, b| a.name.cmp(&b.name));
        masters.dedup_by(|a, b| a.name == b.name);
        Ok(Response::new(pb::ListMastersResponse { masters }))
    }

    async fn get_leader(&self, req: Request<pb::GetLeaderRequest>) -> Result<Response<pb::GetLeaderResponse>, Status> {
        check(&req, &Action::ReadCluster)?;
        if let Role::Leader(epoch) = self.m.role() {
            return Ok(Response::new(pb::GetLeaderResponse {
                name: self.m.name().to_owned(),
                address: self.m.address().to_owned(),
                leader_epoch: epoch.0,
            }));
        }
        let Some(v) = self.leader().await? else {
            return Err(Reason::NoLeader.status("no leader is elected right now; retry"));
        };
        // The leader publishes its term (same lease = same round); until it has, the epoch is not known here and
        // is reported as 0.
        let m = &self.m;
        let epoch = match tokio::time::timeout(m.cfg.rpc.metastore_timeout, m.store.get(&keys::leader_term())).await {
            Ok(Ok(Some(b))) => std::str::from_utf8(&b)
                .ok()
                .and_then(LeaderValue::decode)
                .filter(|r| r.lease == v.lease && r.name == v.name)
                .map_or(0, |r| r.epoch),
            _ => 0,
        };
        Ok(Response::new(pb::GetLeaderResponse { name: v.name, address: v.address, leader_epoch: epoch }))
    }

    async fn resign_leader(
        &self,
        req: Request<pb::ResignLeaderRequest>,
    ) -> Result<Response<pb::ResignLeaderResponse>, Status> {
        check(&req, &Action::ResignLeader)?;
        self.m.resign();
        Ok(Response::new(pb::ResignLeaderResponse {}))
    }
}

/// The most characters a create token may have.
const REQUEST_ID_MAX: usize = 128;

fn request_id(r: &str) -> Result<String, Status> {
    if r.len() > REQUEST_ID_MAX || !r.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid_argument(
            "request_id",
            format!("use at most {REQUEST_ID_MAX} printable characters, no spaces"),
        ));
    }
    Ok(r.to_owned())
}

fn job_spec(types: &crate::jobs::JobTypes, job: &pb::Job) -> Result<JobSpec, Status> {
    let project = convert::project("job.project", &job.project)?;
    types.validate(&job.r#type, &job.config).map_err(|p| invalid_argument(&format!("job.{}", p.field), &p.problem))?;
    let config = String::from_utf8(job.config.clone()).map_err(|_| invalid_argument("job.config", "is not UTF-8"))?;
    Ok(JobSpec {
        job_type: job.r#type.clone(),
        config,
        selectors: convert::selectors("job.selectors", &job.selectors)?,
        cost: convert::cost("job.cost", job.cost)?,
        request: String::new(),
        project,
    })
}

#[tonic::async_trait]
impl pb::job_manager_server::JobManager for MasterService {
    async fn create_job(&self, req: Request<pb::CreateJobRequest>) -> Result<Response<pb::Job>, Status> {
        let project = convert::project("job.project", req.get_ref().job.as_ref().map_or("", |j| &j.project))?;
        check(&req, &Action::CreateJob { project })?;
        leader_only!(self, req, JobManagerClient, create_job, {
            let r = req.into_inner();
            let Some(job) = r.job else { return Err(invalid_argument("job", "is required")) };
            let id = if job.id.is_empty() { None } else { Some(convert::job_id("job.id", &job.id)?) };
            let spec = JobSpec { request: request_id(&r.request_id)?, ..job_spec(&self.m.job_types, &job)? };
            Ok(Response::new(self.m.create_job(id, spec).await?))
        })
    }

    async fn get_job(&self, req: Request<pb::GetJobRequest>) -> Result<Response<pb::Job>, Status> {
        let caller = check(&req, &Action::Jobs { need: UserRole::Read })?;
        leader_only!(self, req, JobManagerClient, get_job, {
            let r = req.into_inner();
            let id = convert::job_id("id", &r.id)?;
            Ok(Response::new(self.m.get_job(&id, r.include_config, caller).await?))
        })
    }

    async fn list_jobs(&self, req: Request<pb::ListJobsRequest>) -> Result<Response<pb::ListJobsResponse>, Status> {
        let caller = check(&req, &Action::Jobs { need: UserRole::Read })?;
        leader_only!(self, req, JobManagerClient, list_jobs, {
            Ok(Response::new(self.m.list_jobs(req.get_ref(), &caller).await?))
        })
    }

    async fn cancel_job(&self, req: Request<pb::CancelJobRequest>) -> Result<Response<pb::Job>, Status> {
        // Only "some grant" here: whether the caller may change this job depends on its project, which the
        // leader's driver checks (a job the caller may not read is then answered as a missing one, and a reader
        // hears the role it lacks in that project).
        let caller = check(&req, &Action::Jobs { need: UserRole::Read })?;
        leader_only!(self, req, JobManagerClient, cancel_job, {
            let id = convert::job_id("id", &req.into_inner().id)?;
            Ok(Response::new(self.m.cancel_job(&id, caller).await?))
        })
    }

    async fn delete_job(&self, req: Request<pb::DeleteJobRequest>) -> Result<Response<pb::DeleteJobResponse>, Status> {
        // As for a cancel: the job's project decides, at the leader.
        let caller = check(&req, &Action::Jobs { need: UserRole::Read })?;
        leader_only!(self, req, JobManagerClient, delete_job, {
            let id = convert::job_id("id", &req.into_inner().id)?;
            self.m.delete_job(&id, caller).await?;
            Ok(Response::new(pb::DeleteJobResponse {}))
        })
    }

    async fn get_job_status(&self, req: Request<pb::GetJobStatusRequest>) -> Result<Response<pb::JobStatus>, Status> {
        let caller = check(&req, &Action::Jobs { need: UserRole::Read })?;
        leader_only!(self, req, JobManagerClient, get_job_status, {
            let id = convert::job_id("id", &req.into_inner().id)?;
            Ok(Response::new(self.m.get_job_status(&id, caller).await?))
        })
    }

    async fn job_logs(&self, req: Request<pb::JobLogsRequest>) -> Result<Response<pb::JobLogsResponse>, Status> {
        let caller = check(&req, &Action::Jobs { need: UserRole::Read })?;
        leader_only!(self, req, JobManagerClient, job_logs, {
            Ok(Response::new(self.m.job_logs(req.get_ref(), caller).await?))
        })
    }
}

#[tonic::async_trait]
impl pb::task_scheduler_server::TaskScheduler for MasterService {
    async fn schedule_task(
        &self,
        req: Request<pb::ScheduleTaskRequest>,
    ) -> Result<Response<pb::ScheduleTaskResponse>, Status> {
        let caller = check(&req, &Action::ScheduleTask { job: req.get_ref().job_id.clone(), host: None })?;
        leader_only!(self, req, TaskSchedulerClient, schedule_task, {
            Ok(Response::new(self.m.schedule_task(req.get_ref(), caller).await?))
        })
    }
}

impl MasterService {
    /// The job manager's answers to the job-master heartbeats an executor carried in its own, each judged as if
    /// it had come alone (`worker_heartbeat`). One the job manager refuses (its caller may not speak for that job
    /// master, say) goes unanswered, with a warning: the executor's own heartbeat is already applied.
    ///
    /// They are judged within half the executor heartbeat's deadline, the rest left unanswered (their job masters
    /// send them again with the next heartbeat, their fences counting meanwhile): a job manager slow to judge them
    /// must not make the executor's own heartbeat miss its deadline, which would fence the executor and all it
    /// runs.
    async fn judge_carried(
        &self,
        carried: Vec<CarriedMessage>,
        caller: &crate::core::auth::Principal,
    ) -> Vec<pb::CarriedReply> {
        let budget = self.m.cfg.executors.heartbeat_timeout / 2;
        let until = self.m.clock.now().saturating_add(budget);
        let mut replies = Vec::with_capacity(carried.len());
        for c in carried {
            let left = until.saturating_since(self.m.clock.now());
            if left.is_zero() {
                break;
            }
            let worker_id = c.msg.task.as_str().to_owned();
            let reply = if let Role::Recovering(epoch) = self.m.role() {
                pb::WorkerHeartbeatResponse {
                    verdict: pb::Verdict::NotReady as i32,
                    master_epoch: epoch.0,
                    worker_epoch: 0,
                    command: pb::Command::Continue as i32,
                }
            } else {
                let judged = self.m.job_master_message(c.msg.clone(), None, &c.progress, c.last_error, caller.clone());
                let Ok(judged) = tokio::time::timeout(left, judged).await else { break };
                match judged {
                    Ok((reply, cancel)) => {
                        self.heard(&c.msg, &reply);
                        let command = if cancel { pb::Command::Cancel } else { pb::Command::Continue };
                        pb::WorkerHeartbeatResponse {
                            verdict: verdict(reply.verdict),
                            master_epoch: reply.master_epoch.0,
                            worker_epoch: reply.worker_epoch.0,
                            command: command as i32,
                        }
                    }
                    Err(status) => {
                        let why = status.message();
                        tracing::warn!(job_master = %worker_id, "a carried heartbeat went unanswered: {why}");
                        continue;
                    }
                }
            };
            replies.push(pb::CarriedReply { worker_id, reply: Some(reply) });
        }
        replies
    }

    /// Tells observers that this leader accepted a job master's message (rule 2's checker): which term took it,
    /// from which incarnation. The leader takes job masters' messages one at a time (under its write lock), and
    /// this report follows its message's without an await, so in the simulation (one thread) the reports come in
    /// the order of the decisions.
    fn heard(&self, msg: &crate::core::workers::Message, reply: &crate::core::workers::Reply) {
        if reply.verdict == crate::core::workers::Verdict::Accepted && self.m.observed() {
            self.m.observe(super::Observation::JobMasterHeard {
                leader_epoch: crate::core::ids::LeaderEpoch(reply.master_epoch.0),
                task: msg.task.clone(),
                epoch: msg.worker_epoch,
            });
        }
    }
}

#[tonic::async_trait]
impl pb::framework_server::Framework for MasterService {
    /// A master process hosts no job masters: the job manager's own status is the job's record.
    async fn query_job_master(
        &self,
        req: Request<pb::QueryJobMasterRequest>,
    ) -> Result<Response<pb::QueryJobMasterResponse>, Status> {
        check(&req, &Action::ReadCluster)?;
        Err(Reason::JobMasterNotHosted
            .status("a master process hosts no job masters: ask a master for GetJobStatus, or the job's executor"))
    }

    async fn worker_heartbeat(
        &self,
        req: Request<pb::WorkerHeartbeatRequest>,
    ) -> Result<Response<pb::WorkerHeartbeatResponse>, Status> {
        let caller = check(&req, &Action::ReportToJobManager { job: req.get_ref().worker_id.clone(), host: None })?;
        if let Role::Recovering(epoch) = self.m.role() {
            return Ok(Response::new(pb::WorkerHeartbeatResponse {
                verdict: pb::Verdict::NotReady as i32,
                master_epoch: epoch.0,
                worker_epoch: 0,
                command: pb::Command::Continue as i32,
            }));
        }
        leader_only!(self, req, FrameworkClient, worker_heartbeat, {
            let r = req.into_inner();
            let msg = message(&r.worker_id, r.master_epoch, r.worker_epoch)?;
            let progress = crate::framework::progress_from_wire(&r.progress)?;
            let last_error = crate::framework::last_error_from_wire(r.last_error.as_ref())?;
            let (reply, cancel) = self.m.job_master_message(msg.clone(), None, &progress, last_error, caller).await?;
            self.heard(&msg, &reply);
            let command = if cancel { pb::Command::Cancel } else { pb::Command::Continue };
            Ok(Response::new(pb::WorkerHeartbeatResponse {
                verdict: verdict(reply.verdict),
                master_epoch: reply.master_epoch.0,
                worker_epoch: reply.worker_epoch.0,
                command: command as i32,
            }))
        })
    }

    async fn report_worker_status(
        &self,
        req: Request<pb::ReportWorkerStatusRequest>,
    ) -> Result<Response<pb::ReportWorkerStatusResponse>, Status> {
        let caller = check(&req, &Action::ReportToJobManager { job: req.get_ref().worker_id.clone(), host: None })?;
        leader_only!(self, req, FrameworkClient, report_worker_status, {
            let r = req.into_inner();
            let msg = message(&r.worker_id, r.master_epoch, r.worker_epoch)?;
            let status = crate::framework::host::worker_status(r.status.as_ref())?;
            let progress = crate::framework::progress_from_wire(&r.progress)?;
            let (reply, _) = self.m.job_master_message(msg.clone(), Some(status), &progress, None, caller).await?;
            self.heard(&msg, &reply);
            Ok(Response::new(pb::ReportWorkerStatusResponse {
                verdict: verdict(reply.verdict),
                master_epoch: reply.master_epoch.0,
                worker_epoch: reply.worker_epoch.0,
            }))
        })
    }
}

/// A carried job-master heartbeat, decoded.
struct CarriedMessage {
    msg: crate::core::workers::Message,
    progress: String,
    last_error: Option<crate::core::job::LastError>,
}

/// The job-master heartbeats an executor carried (`HeartbeatRequest.job_masters`), every one decoded before
/// anything of the call is applied: a bad one refuses the whole call (INVALID_ARGUMENT, naming it), so nothing is
/// half done.
fn carried_messages(reqs: Vec<pb::WorkerHeartbeatRequest>) -> Result<Vec<CarriedMessage>, Status> {
    use crate::framework::carrier::CARRIED_MAX;
    if reqs.len() > CARRIED_MAX {
        return Err(invalid_argument(
            "job_masters",
            format!("carries {} job-master heartbeats; at most {CARRIED_MAX} fit in one call", reqs.len()),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(reqs.len());
    for r in reqs {
        let what = |e: Status| invalid_argument("job_masters", format!("{:?}: {}", r.worker_id, e.message()));
        let msg = message(&r.worker_id, r.master_epoch, r.worker_epoch).map_err(what)?;
        if let Err(e) = crate::core::ids::JobId::parse(&r.worker_id) {
            return Err(invalid_argument(
                "job_masters",
                format!(
                    "{:?} is no job master's id (a job id): {e}; only job masters' heartbeats are carried",
                    r.worker_id
                ),
            ));
        }
        if !seen.insert(r.worker_id.clone()) {
            return Err(invalid_argument("job_masters", format!("{:?} is carried twice", r.worker_id)));
        }
        let progress = crate::framework::progress_from_wire(&r.progress).map_err(what)?;
        let last_error = crate::framework::last_error_from_wire(r.last_error.as_ref()).map_err(what)?;
        out.push(CarriedMessage { msg, progress, last_error });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::pb::discovery_server::Discovery;

    /// The most a heartbeat's handler future may take (bytes): a leader allocates one for every heartbeat in
    /// flight and keeps it until its term answers, so the rare paths (forwarding to the leader, judging carried
    /// job-master heartbeats) are boxed apart.
    const HEARTBEAT_FUTURE_MAX: usize = 2048;

    #[test]
    fn a_heartbeat_handler_future_stays_small() {
        if cfg!(madsim) {
            return;
        }
        let store = crate::meta::MetaStore::embedded("future-size", None).unwrap();
        let svc = MasterService::new(Master::new(crate::config::MasterConfig::default(), store, 1));
        let f = svc.heartbeat(Request::new(pb::HeartbeatRequest::default()));
        let size = std::mem::size_of_val(&*f);
        assert!(size <= HEARTBEAT_FUTURE_MAX, "a heartbeat's handler future takes {size} bytes");
    }
}
