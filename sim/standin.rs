//! A stand-in executor that hosts stand-in job masters, until the real executor exists (issue 4): it registers
//! and heartbeats like `standin_executor`, serves `ExecutorService` (two-phase dispatch), and runs each dispatched
//! job master as a task over the real worker-side `framework::link`: it heartbeats the job manager through any
//! master, fences itself at its self-fence deadline, stops when told it is stale, honours a cancel, and finishes
//! after a while.
//!
//! It reports when each incarnation became live (its first acknowledged heartbeat) and when it stopped, which feeds
//! the "at most one live incarnation" checker.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foreman::clock::Clock as NodeClock;
use foreman::core::ids::{Epoch, TaskId};
use foreman::core::timing::HeartbeatTiming;
use foreman::framework::link::{Link, LinkEnd, LinkSpec, Report};
use foreman::rpc::pb;
use foreman::rpc::pb::discovery_client::DiscoveryClient;
use foreman::rpc::pb::executor_service_server::{ExecutorService, ExecutorServiceServer};
use tonic::{Request, Response, Status};

use crate::cluster::{channel_to, master_addr, Seen};
use crate::harness::Recorder;

/// How long a stand-in job master runs before it reports Finished.
pub const RUN_FOR: Duration = Duration::from_secs(40);

#[derive(Default)]
struct State {
    parked: BTreeMap<String, pb::PreDispatchTaskRequest>,
    /// Running tasks: task id → (epoch, stop flag).
    running: BTreeMap<String, (u64, Arc<Mutex<bool>>)>,
}

#[derive(Clone)]
struct Executor {
    name: String,
    state: Arc<Mutex<State>>,
    rec: Recorder<Seen>,
    masters: usize,
}

#[tonic::async_trait]
impl ExecutorService for Executor {
    async fn pre_dispatch_task(
        &self,
        req: Request<pb::PreDispatchTaskRequest>,
    ) -> Result<Response<pb::PreDispatchTaskResponse>, Status> {
        let r = req.into_inner();
        let mut st = self.state.lock().unwrap();
        if let Some((epoch, _)) = st.running.get(&r.task_id) {
            return Err(Status::failed_precondition(format!("task {} already runs epoch {epoch}", r.task_id)));
        }
        st.parked.insert(r.request_id.clone(), r);
        Ok(Response::new(pb::PreDispatchTaskResponse {}))
    }

    async fn confirm_dispatch_task(
        &self,
        req: Request<pb::ConfirmDispatchTaskRequest>,
    ) -> Result<Response<pb::ConfirmDispatchTaskResponse>, Status> {
        let r = req.into_inner();
        let task = {
            let mut st = self.state.lock().unwrap();
            let Some(task) = st.parked.remove(&r.request_id) else {
                return Err(Status::not_found(format!("no parked dispatch {}", r.request_id)));
            };
            let stop = Arc::new(Mutex::new(false));
            st.running.insert(task.task_id.clone(), (task.epoch, stop.clone()));
            (task, stop)
        };
        let (task, stop) = task;
        tokio::spawn(job_master(self.clone(), task, stop));
        Ok(Response::new(pb::ConfirmDispatchTaskResponse {}))
    }
}

/// Stops every task (the executor was told to register again).
fn stop_all(ex: &Executor) {
    let st = ex.state.lock().unwrap();
    for (_, stop) in st.running.values() {
        *stop.lock().unwrap() = true;
    }
}

/// Whether the executor told this task to stop; checked every 100 ms.
async fn stopped(stop: &Mutex<bool>) {
    while !*stop.lock().unwrap() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A stand-in job master over the real worker-side link: live from its first acknowledged heartbeat, it runs for
/// [`RUN_FOR`], honours a cancel, and stops when fenced or told it is stale.
async fn job_master(ex: Executor, task: pb::PreDispatchTaskRequest, stop: Arc<Mutex<bool>>) {
    let timing =
        task.timing.map(|t| foreman::rpc::timing_from_wire(&t)).unwrap_or_else(HeartbeatTiming::worker_default);
    let Ok(worker) = TaskId::parse(&task.task_id) else { return };
    let spec = LinkSpec {
        master_id: task.master_id.clone(),
        // Any master answers for the job manager (followers forward); the dispatching leader first.
        addresses: std::iter::once(task.master_address.clone()).chain((0..ex.masters).map(master_addr)).collect(),
        master_epoch: Epoch(task.master_epoch),
        worker,
        worker_epoch: Epoch(task.epoch),
        timing,
    };
    let mut link = Link::new(spec, NodeClock::start());
    let why: String = 'run: {
        // Until live: heartbeat every interval (fenced, stale or stopped first ends it).
        while !link.is_live() {
            let end = tokio::select! {
                biased;
                _ = stopped(&stop) => break 'run "its executor stopped it".into(),
                end = async { tokio::time::sleep(timing.interval).await; link.beat().await } => end,
            };
            if let Some(end) = end {
                break 'run format!("{end:?} before it was live");
            }
        }
        ex.rec.record(&ex.name, Seen::TaskLive { task: task.task_id.clone(), epoch: task.epoch });
        let end = tokio::select! {
            biased;
            _ = stopped(&stop) => break 'run "its executor stopped it".into(),
            end = link.run() => Some(end),
            _ = tokio::time::sleep(RUN_FOR) => None,
        };
        let report = match end {
            None => Report::Finished,
            Some(LinkEnd::Cancel) => Report::Canceled,
            Some(other) => break 'run format!("{other:?}"),
        };
        match link.report(report.clone()).await {
            Ok(()) => format!("{report:?}"),
            Err(end) => format!("{end:?} while reporting {report:?}"),
        }
    };
    let mut st = ex.state.lock().unwrap();
    if st.running.get(&task.task_id).is_some_and(|(e, _)| *e == task.epoch) {
        st.running.remove(&task.task_id);
    }
    drop(st);
    if link.is_live() {
        ex.rec.record(&ex.name, Seen::TaskStopped { task: task.task_id.clone(), epoch: task.epoch, why });
    }
}

/// The stand-in executor node: serves dispatch, registers and heartbeats, reporting its tasks.
pub async fn executor(
    name: String,
    addr: SocketAddr,
    rec: Recorder<Seen>,
    masters: usize,
    interval: Duration,
    deadline: Duration,
) {
    let ex = Executor { name: name.clone(), state: Arc::new(Mutex::new(State::default())), rec: rec.clone(), masters };
    let server = tonic::transport::Server::builder().add_service(ExecutorServiceServer::new(ex.clone())).serve(addr);
    let beat = async {
        let mut which = 0usize;
        let mut id: Option<u64> = None;
        let mut leader_epoch = 0u64;
        loop {
            tokio::time::sleep(interval).await;
            let Some(ch) = channel_to(&master_addr(which % masters), deadline).await else {
                which += 1;
                continue;
            };
            let mut client = DiscoveryClient::new(ch);
            match id {
                None => {
                    let req = pb::RegisterExecutorRequest {
                        name: name.clone(),
                        address: addr.to_string(),
                        capacity: 4,
                        labels: Default::default(),
                    };
                    match client.register_executor(req).await {
                        Ok(r) => {
                            let r = r.into_inner();
                            id = Some(r.executor_id);
                            leader_epoch = leader_epoch.max(r.leader_epoch);
                            rec.record(&name, Seen::Registered { id: r.executor_id });
                        }
                        Err(_) => which += 1,
                    }
                }
                Some(me) => {
                    let tasks = ex
                        .state
                        .lock()
                        .unwrap()
                        .running
                        .iter()
                        .map(|(t, (e, _))| pb::RunningTask {
                            task_id: t.clone(),
                            kind: pb::TaskKind::JobMaster as i32,
                            epoch: *e,
                            cost: 1,
                        })
                        .collect();
                    match client.heartbeat(pb::HeartbeatRequest { executor_id: me, leader_epoch, tasks }).await {
                        Ok(r) => {
                            let r = r.into_inner();
                            leader_epoch = leader_epoch.max(r.leader_epoch);
                            if r.verdict == pb::HeartbeatVerdict::Accepted as i32 {
                                rec.record(&name, Seen::Acked { id: me });
                            } else {
                                rec.record(&name, Seen::Reregister { id: me });
                                stop_all(&ex);
                                id = None;
                            }
                        }
                        Err(_) => which += 1,
                    }
                }
            }
        }
    };
    tokio::select! {
        biased;
        r = server => r.expect("the stand-in executor serves"),
        _ = beat => {}
    }
}
