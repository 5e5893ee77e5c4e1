//! A stand-in executor that hosts stand-in job masters, until the real executor exists (issue 4): it registers
//! and heartbeats like `standin_executor`, serves `ExecutorService` (two-phase dispatch), and runs each dispatched
//! job master as a task that heartbeats the job manager through any master, fences itself when no heartbeat was
//! acknowledged for its self-fence time, stops when told it is stale, honours a cancel, and finishes after a while.
//!
//! It reports when each incarnation became live (its first acknowledged heartbeat) and when it stopped, which feeds
//! the "at most one live incarnation" checker.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foreman::rpc::pb;
use foreman::rpc::pb::discovery_client::DiscoveryClient;
use foreman::rpc::pb::executor_service_server::{ExecutorService, ExecutorServiceServer};
use foreman::rpc::pb::framework_client::FrameworkClient;
use tonic::{Request, Response, Status};

use crate::cluster::{channel_to, master_addr, Seen};
use crate::harness::{Clock, Recorder};

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

async fn job_master(ex: Executor, task: pb::PreDispatchTaskRequest, stop: Arc<Mutex<bool>>) {
    let timing = task.timing.unwrap_or_default();
    let interval = Duration::from_millis(timing.heartbeat_interval_ms.max(1));
    let deadline = Duration::from_millis(timing.heartbeat_timeout_ms.max(1));
    let self_fence = Duration::from_millis(timing.self_fence_ms.max(1));
    let clock = Clock::start();
    let mut which = 0usize;
    let mut master_epoch = task.master_epoch;
    let mut last_ack = clock.now();
    let mut live_since = None;
    let why: &str = loop {
        tokio::time::sleep(interval).await;
        if *stop.lock().unwrap() {
            break "its executor stopped it";
        }
        let sent = clock.now();
        if sent.saturating_since(last_ack) >= self_fence {
            break "self-fenced";
        }
        let Some(ch) = channel_to(&master_addr(which % ex.masters), deadline).await else {
            which += 1;
            continue;
        };
        let mut client = FrameworkClient::new(ch);
        let finished = live_since.is_some_and(|s| clock.now().saturating_since(s) >= RUN_FOR);
        let reply = if finished {
            let req = pb::ReportWorkerStatusRequest {
                master_id: task.master_id.clone(),
                master_epoch,
                worker_id: task.task_id.clone(),
                worker_epoch: task.epoch,
                status: Some(pb::WorkerStatus { state: pb::WorkerState::Finished as i32, ..Default::default() }),
            };
            client.report_worker_status(req).await.map(|r| {
                let r = r.into_inner();
                (r.verdict, r.master_epoch, pb::Command::Continue as i32)
            })
        } else {
            let req = pb::WorkerHeartbeatRequest {
                master_id: task.master_id.clone(),
                master_epoch,
                worker_id: task.task_id.clone(),
                worker_epoch: task.epoch,
            };
            client.worker_heartbeat(req).await.map(|r| {
                let r = r.into_inner();
                (r.verdict, r.master_epoch, r.command)
            })
        };
        let Ok((verdict, epoch, command)) = reply else {
            which += 1;
            continue;
        };
        match pb::Verdict::try_from(verdict) {
            Ok(pb::Verdict::Accepted) => {
                master_epoch = master_epoch.max(epoch);
                last_ack = sent;
                if live_since.is_none() {
                    live_since = Some(clock.now());
                    ex.rec.record(&ex.name, Seen::TaskLive { task: task.task_id.clone(), epoch: task.epoch });
                }
                if finished {
                    break "finished";
                }
                if command == pb::Command::Cancel as i32 {
                    // Cancel: report it (the next rounds retry until acknowledged), then stop.
                    let req = pb::ReportWorkerStatusRequest {
                        master_id: task.master_id.clone(),
                        master_epoch,
                        worker_id: task.task_id.clone(),
                        worker_epoch: task.epoch,
                        status: Some(pb::WorkerStatus {
                            state: pb::WorkerState::Canceled as i32,
                            ..Default::default()
                        }),
                    };
                    if let Ok(r) = client.report_worker_status(req).await {
                        if r.into_inner().verdict == pb::Verdict::Accepted as i32 {
                            break "canceled";
                        }
                    }
                }
            }
            Ok(pb::Verdict::StaleWorker) => break "told it is stale",
            // A stale master or one still recovering: keep going (the self-fence bounds it).
            _ => {}
        }
    };
    let mut st = ex.state.lock().unwrap();
    if st.running.get(&task.task_id).is_some_and(|(e, _)| *e == task.epoch) {
        st.running.remove(&task.task_id);
    }
    drop(st);
    if live_since.is_some() {
        ex.rec
            .record(&ex.name, Seen::TaskStopped { task: task.task_id.clone(), epoch: task.epoch, why: why.to_owned() });
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
