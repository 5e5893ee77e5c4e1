//! The operations behind the leader-only RPCs: each sends its request to the term's job manager and turns the
//! answer into wire types. Validation of wire input is `convert`'s; every decision is the manager's.

use std::future::Future;

use tonic::Status;
use tracing::{info, warn};

use super::leader::{Call, Tried};
use super::Master;
use crate::core::auth::Principal;
use crate::core::ids::{Epoch, ExecutorId, JobId, LeaderEpoch, TaskId};
use crate::core::job::JobSpec;
use crate::core::manager::{
    Event, JobFilter, JobView, ManagerPolicy, Plants, Refusal, Reply, Request, Schedule, TermGauges,
};
use crate::core::placement::ResourcePin;
use crate::core::registry::{EndedTask, ExecutorRecord, ExecutorSpec, ReportedTask};
use crate::rpc::pb;
use crate::rpc::status::{invalid_argument, Reason};

impl From<Refusal> for Status {
    fn from(r: Refusal) -> Status {
        match r {
            Refusal::Job(e) => Status::from(e),
            Refusal::Registry(e) => Status::from(e),
            Refusal::Placement(e) => Status::from(e),
            Refusal::NotLeader(m) => Reason::NotLeader.status(m),
            Refusal::Metastore(m) => Reason::MetastoreUnavailable.status(m),
            Refusal::StaleJobMaster(m) => Reason::StaleEpoch.status(m),
            Refusal::RequestIdReused(m) => Reason::RequestIdReused.status(m),
            Refusal::JobDeleted(m) => Reason::JobDeleted.status(m),
            Refusal::InvalidArgument { field, message } => invalid_argument(field, message),
            Refusal::Denied(d) => Status::from(d),
        }
    }
}

fn job_to_wire(v: JobView) -> pb::Job {
    match v {
        JobView::Job { job, progress, include_config, resources } => {
            let mut w = super::convert::job_to_wire(&job, include_config);
            if let Some(p) = progress {
                w.progress = p;
            }
            w.resources = resources
                .into_iter()
                .map(|r| pb::JobResource {
                    worker: r.worker,
                    name: r.name,
                    executor_id: r.executor.0,
                    executor_name: r.executor_name.unwrap_or_default(),
                })
                .collect();
            w
        }
        JobView::Corrupt { id, record } => super::convert::corrupt_job_to_wire(&id, &record),
    }
}

fn unexpected(r: Reply) -> Status {
    Reason::Internal.status(format!("the job manager answered out of turn: {r:?}"))
}

impl Master {
    /// The knobs of a term, from the configuration.
    pub(crate) fn manager_policy(&self) -> ManagerPolicy {
        let cfg = &self.cfg;
        ManagerPolicy {
            registry: cfg.executors.registry_policy(),
            placement: cfg.placement.policy(),
            jobs: crate::core::job::JobPolicy {
                backoff: cfg.backoff.policy(),
                ..crate::core::job::JobPolicy::default()
            },
            job_masters: cfg.worker_timing(),
            dispatch_window: cfg.rpc.request_timeout,
            check_interval: cfg.executors.check_interval,
            tombstone_retention: cfg.jobs.tombstone_retention,
            batch_max: super::store_io::LEADER_TXN_OPS_MAX,
            report_capacity: self.observed(),
            pin_wait: cfg.placement.pin_wait,
        }
    }

    /// The bugs planted in this master's terms, and whether its tripwires are armed (simulation only).
    pub fn plants(&self) -> Plants {
        self.planted
    }

    /// The slots as an observer sees them.
    pub(crate) fn capacity_sample(
        &self,
        at: crate::core::time::Time,
        view: crate::core::manager::CapacityView,
    ) -> super::CapacitySample {
        let executors = view
            .executors
            .into_iter()
            .map(|(id, capacity, reported, reserved)| super::ExecutorSlots { id, capacity, reported, reserved })
            .collect();
        let reservations = view
            .reservations
            .into_iter()
            .map(|(task, executor, epoch, cost, placed)| super::ReservationSample {
                task,
                executor,
                epoch,
                cost,
                placed: self.clock.instant(placed),
            })
            .collect();
        let waiting = view
            .waiting
            .into_iter()
            .map(|w| super::WaitingSample {
                job: w.job,
                cost: w.cost,
                allowed: w.allowed.map(|t| self.clock.instant(t)),
                startable: w.startable,
                admits: w.admits,
                admitted_share: w.admitted_share,
            })
            .collect();
        let epoch = self.lock().leadership.epoch().unwrap_or(LeaderEpoch(0));
        super::CapacitySample {
            epoch,
            at: self.clock.instant(at),
            executors,
            reservations,
            suspecting: view.suspecting,
            job_master_slots: view.job_masters.held,
            job_master_cap: view.job_masters.cap,
            waiting,
        }
    }

    /// Sends `request` to the serving term's job manager and waits for its answer.
    pub(crate) fn call(&self, request: Request) -> impl Future<Output = Result<Reply, Status>> + '_ {
        self.call_as(request, None)
    }

    /// Sends `request` from `caller` to the serving term's job manager and waits for its answer; the term checks
    /// that `caller` may make it, with the facts the manager holds ([`crate::core::manager::Manager::action_of`]).
    /// The manager is stepped in this future's poll when the term's lock is free (see [`super::leader`]).
    ///
    /// Not an `async fn`: the call is made up here and the future holds it once (an `async fn` would keep its
    /// arguments beside the call made of them), as it waits for room in the inbox, when it must, by reserving it
    /// (what `send` does, without taking the call into its own future). A leader keeps this future for every call
    /// in flight.
    pub(crate) fn call_as(
        &self,
        request: Request,
        caller: Option<Principal>,
    ) -> impl Future<Output = Result<Reply, Status>> + '_ {
        self.call_then(request, caller, Ok)
    }

    /// [`Master::call_as`], the answer read by `read` within the same future (an `async` wrapper awaiting it would
    /// hold the call's future twice: where it keeps it, and where it awaits it).
    pub(crate) fn call_then<T, F>(
        &self,
        request: Request,
        caller: Option<Principal>,
        read: F,
    ) -> impl Future<Output = Result<T, Status>> + '_
    where
        F: FnOnce(Reply) -> Result<T, Status> + 'static,
        T: 'static,
    {
        // Whether the request changes durable state: if the term ends while it is under way, it may have.
        let durable = !matches!(
            request,
            Request::Heartbeat { .. }
                | Request::GetJob { .. }
                | Request::ListJobs(_)
                | Request::ScheduleTask(_)
                | Request::ListExecutors
                | Request::Gauges
        );
        let (reply, answer) = tokio::sync::oneshot::channel();
        let call = Call { request, caller, reply };
        async move {
            let (term, inbox) = {
                let now = self.clock.now();
                let inner = self.lock();
                match (&inner.serving, inner.leadership.acting(now)) {
                    (Some(s), Some(e)) if s.epoch == e => (s.term.clone(), s.inbox.clone()),
                    (_, Some(_)) => {
                        return Err(Reason::MasterNotReady.status("master not ready: recovery is running; retry"))
                    }
                    _ => return Err(Reason::NotLeader.status("this master is not the leader; retry")),
                }
            };
            // Stepped in this poll when no other poll steps the term; else through the inbox. Neither the term nor
            // the inbox is held while the answer is awaited: a term whose loop ended is dropped, its calls closed.
            let tried = term.try_call(call);
            drop(term);
            match tried {
                Tried::Stepped => drop(inbox),
                Tried::Ended => return Err(Reason::NotLeader.status("this master is not the leader any more; retry")),
                Tried::Busy(call) => {
                    let Ok(room) = inbox.reserve_owned().await else {
                        return Err(Reason::NotLeader.status("this master is not the leader any more; retry"));
                    };
                    room.send(*call);
                }
            }
            match answer.await {
                Ok(Ok(r)) => read(r),
                Ok(Err(refusal)) => Err(refusal.into()),
                Err(_) if durable => Err(Reason::MetastoreUnavailable
                    .status("this master's term ended while answering; the request may have been applied; retry")),
                Err(_) => Err(Reason::NotLeader.status("this master's term ended while answering; retry")),
            }
        }
    }

    pub(crate) async fn register_executor(&self, spec: ExecutorSpec) -> Result<(ExecutorRecord, LeaderEpoch), Status> {
        match self.call(Request::RegisterExecutor { spec }).await? {
            Reply::Registered { record, epoch } => Ok((record, epoch)),
            r => Err(unexpected(r)),
        }
    }

    /// A heartbeat; `Ok(false)` tells the executor to register again. An executor that claims to have seen a newer
    /// leader epoch deposes this leader only if the metastore confirms that epoch was issued.
    ///
    /// Not an `async fn`, for the reason [`Master::call_as`] is not: its future is the call's, and nothing beside.
    // why: the heartbeat's own fields, as the manager's request has them, and who sent it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn executor_heartbeat(
        &self,
        id: ExecutorId,
        seen: LeaderEpoch,
        tasks: Vec<ReportedTask>,
        ended: Vec<EndedTask>,
        draining: bool,
        fenced: bool,
        held: Vec<JobId>,
        caller: Principal,
    ) -> impl Future<Output = Result<(bool, LeaderEpoch, Vec<JobId>), Status>> + '_ {
        let request = Request::Heartbeat { id, seen, tasks, ended, draining, fenced, held };
        self.call_then(request, Some(caller), |r| match r {
            Reply::Heartbeat { known, epoch, gone } => Ok((known, epoch, gone)),
            r => Err(unexpected(r)),
        })
    }

    pub(crate) async fn deregister_executor(&self, id: ExecutorId, caller: Principal) -> Result<(), Status> {
        match self.call_as(Request::DeregisterExecutor { id }, Some(caller)).await? {
            Reply::Done => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    pub(crate) async fn create_job(&self, id: Option<JobId>, spec: JobSpec) -> Result<pb::Job, Status> {
        match self.call(Request::CreateJob { id, spec }).await? {
            Reply::Job(v) => Ok(job_to_wire(v)),
            r => Err(unexpected(r)),
        }
    }

    /// A job as committed: the read waits for the write under way, so a client never sees a state that is not
    /// durable.
    pub(crate) async fn get_job(&self, id: &JobId, include_config: bool, caller: Principal) -> Result<pb::Job, Status> {
        match self.call_as(Request::GetJob { id: id.clone(), include_config }, Some(caller)).await? {
            Reply::Job(v) => Ok(job_to_wire(v)),
            r => Err(unexpected(r)),
        }
    }

    /// Jobs as committed (see [`Master::get_job`]), of the projects `caller` may read.
    pub(crate) async fn list_jobs(
        &self,
        req: &pb::ListJobsRequest,
        caller: &Principal,
    ) -> Result<pb::ListJobsResponse, Status> {
        let size = match req.page_size {
            0 => 100,
            n if n > 1000 => return Err(invalid_argument("page_size", format!("{n} exceeds the maximum of 1000"))),
            n => n as usize,
        };
        let state = super::convert::state_from_wire("state", req.state)?;
        let after =
            if req.page_token.is_empty() { None } else { Some(super::convert::job_id("page_token", &req.page_token)?) };
        let mut readable = crate::core::auth::readable(caller, crate::rpc::identity::mode());
        if !req.project.is_empty() {
            readable = readable.only(&super::convert::project("project", &req.project)?);
        }
        let filter = JobFilter {
            job_type: req.r#type.clone(),
            state,
            after,
            size,
            include_config: req.include_config,
            readable,
        };
        match self.call(Request::ListJobs(filter)).await? {
            Reply::Jobs { jobs, next } => Ok(pb::ListJobsResponse {
                jobs: jobs.into_iter().map(job_to_wire).collect(),
                next_page_token: next.map(|id| id.as_str().to_owned()).unwrap_or_default(),
            }),
            r => Err(unexpected(r)),
        }
    }

    pub(crate) async fn cancel_job(&self, id: &JobId, caller: Principal) -> Result<pb::Job, Status> {
        match self.call_as(Request::CancelJob { id: id.clone() }, Some(caller)).await? {
            Reply::Job(v) => Ok(job_to_wire(v)),
            r => Err(unexpected(r)),
        }
    }

    pub(crate) async fn delete_job(&self, id: &JobId, caller: Principal) -> Result<(), Status> {
        let request = Request::DeleteJob { id: id.clone(), wall: crate::clock::wall_now() };
        match self.call_as(request, Some(caller)).await? {
            Reply::Done => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    pub(crate) async fn schedule_task(
        &self,
        req: &pb::ScheduleTaskRequest,
        caller: Principal,
    ) -> Result<pb::ScheduleTaskResponse, Status> {
        let task = TaskId::parse(&req.task_id).map_err(|e| invalid_argument("task_id", e))?;
        let job = super::convert::job_id("job_id", &req.job_id)?;
        let cost = super::convert::cost("cost", req.cost)?;
        let selectors = super::convert::selectors("selectors", &req.selectors)?;
        let resources: Vec<ResourcePin> = req
            .resources
            .iter()
            .map(|r| ResourcePin { resource: format!("{}/{}", r.job_id, r.resource_id), executor: None })
            .collect();
        let s = Schedule {
            task,
            job,
            master_epoch: Epoch(req.master_epoch),
            epoch: (req.epoch != 0).then_some(Epoch(req.epoch)),
            cost,
            selectors,
            resources,
        };
        match self.call_as(Request::ScheduleTask(s), Some(caller)).await? {
            Reply::Placed { executor, name, address, leader_epoch, lost } => Ok(pb::ScheduleTaskResponse {
                executor_id: executor.0,
                executor_address: address,
                leader_epoch: leader_epoch.0,
                executor_name: name,
                lost: lost
                    .into_iter()
                    .map(|l| pb::LostResource {
                        // The request's resource id: `<worker>/<name>`, without the job.
                        resource_id: l.resource.split_once('/').map_or(l.resource.clone(), |(_, r)| r.to_owned()),
                        executor_name: l.holder.unwrap_or_default(),
                        waited_out: l.waited_out,
                    })
                    .collect(),
            }),
            r => Err(unexpected(r)),
        }
    }

    pub(crate) async fn list_executors(&self) -> Result<pb::ListExecutorsResponse, Status> {
        let now = self.clock.now();
        match self.call(Request::ListExecutors).await? {
            Reply::Executors(list) => Ok(pb::ListExecutorsResponse {
                executors: list.iter().map(|u| super::convert::executor_to_wire(u, now)).collect(),
            }),
            r => Err(unexpected(r)),
        }
    }

    /// A job master's heartbeat or status report to the job manager.
    pub(crate) async fn job_master_message(
        &self,
        msg: crate::core::workers::Message,
        status: Option<crate::core::workers::WorkerStatus>,
        progress: &str,
        last_error: Option<crate::core::job::LastError>,
        caller: Principal,
    ) -> Result<(crate::core::workers::Reply, bool), Status> {
        let wall = crate::clock::wall_now();
        let request = Request::JobMaster { msg, status, progress: progress.to_owned(), last_error, wall };
        match self.call_as(request, Some(caller)).await? {
            Reply::JobMaster { reply, cancel } => Ok((reply, cancel)),
            r => Err(unexpected(r)),
        }
    }

    /// The serving term's figures, if this master serves.
    pub(crate) async fn term_gauges(&self) -> Option<TermGauges> {
        match self.call(Request::Gauges).await {
            Ok(Reply::Gauges(g)) => Some(g),
            _ => None,
        }
    }
}

impl Master {
    /// Logs, counts and observes one event of the term.
    pub(super) fn report(&self, e: Event) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.stats;
        match e {
            Event::Recovered { executors, jobs, waiting } => {
                info!(master = %self.name(), executors, jobs, waiting, "recovered; serving")
            }
            Event::Registered { id, name, repeated } => {
                info!(executor = %id, %name, repeated, "registered")
            }
            Event::Draining { id } => {
                info!(executor = %id, "draining: nothing more is placed on it")
            }
            Event::HeartbeatGap { gap } => s.heartbeat_gaps.observe(gap),
            Event::ExecutorOffline { id, name, at, last_heard, among } => {
                Master::bump(&s.executors_offline);
                info!(executor = %id, %name, "declared offline");
                let (at, last_heard) = (self.clock.instant(at), self.clock.instant(last_heard));
                self.observe(super::Observation::ExecutorOffline { id, name, at, last_heard, among });
            }
            Event::EvictionsHeld { held, at } => {
                warn!(held, "most executors expired at once: holding evictions (this leader may be cut off)");
                self.observe(super::Observation::EvictionsHeld { held, at: self.clock.instant(at) });
            }
            Event::JobMasterLost { job, epoch, reason } => {
                info!(%job, epoch = epoch.0, ?reason, "job master lost")
            }
            Event::BackoffCharged { job, lost, failures, delay, allowed, at } => {
                match allowed {
                    Some(_) => info!(%job, epoch = lost.0, failures, ?delay, "restart delayed by the backoff"),
                    None => warn!(%job, epoch = lost.0, failures, "the backoff gave up: the job failed"),
                }
                let (allowed, at) = (allowed.map(|t| self.clock.instant(t)), self.clock.instant(at));
                self.observe(super::Observation::BackoffCharged { job, lost, failures, delay, allowed, at });
            }
            Event::JobMasterStarted { job, epoch, restarts, failures, delay, allowed, at } => {
                tracing::debug!(%job, epoch = epoch.0, restarts, "job master started");
                let (allowed, at) = (allowed.map(|t| self.clock.instant(t)), self.clock.instant(at));
                let o = super::Observation::JobMasterStarted { job, epoch, restarts, failures, delay, allowed, at };
                self.observe(o);
            }
            Event::JobMastersRecovered { adopted, lost } => {
                info!(adopted, lost, "job-master recovery ended");
                self.observe(super::Observation::JobMastersRecovered { adopted, lost });
            }
            Event::JobMastersPlaced { count } => {
                s.job_master_placements.fetch_add(count as u64, Relaxed);
            }
            Event::WorkerPlaced { job, task } => {
                Master::bump(&s.worker_placements);
                if self.observed() {
                    self.observe(super::Observation::WorkerPlaced { job, task });
                }
            }
            Event::Rejected(why) => s.reject(why),
            Event::WriteFenced => Master::bump(&s.fenced_writes),
            Event::WriteUnknown => Master::bump(&s.unknown_writes),
            Event::CorruptJob { id, problem } => {
                warn!(job = %id, "the job's record is corrupt: {problem}")
            }
            Event::WriteFailed { what, why } => warn!("{what} write failed: {why}"),
            Event::DispatchRefused { job, epoch } => {
                tracing::debug!(%job, epoch = epoch.0, "dispatch refused")
            }
            Event::TombstonesSwept { collected, stamped, kept, early } => {
                if early > 0 {
                    warn!(early, "too many tombstones: the oldest collected before their retention ended");
                }
                info!(collected, stamped, kept, "tombstones swept");
            }
            Event::Capacity { at, view } => {
                if self.observed() {
                    self.observe(super::Observation::Capacity(self.capacity_sample(at, view)));
                }
            }
        }
    }
}
