//! Goal: the executor-liveness timing rules hold end to end over simulated gRPC, before any real master exists:
//! a killed executor is declared offline within its TTL plus one check interval; a partitioned one fences itself
//! strictly before the registry declares it offline, then registers again under a new id; a healthy one is never
//! declared offline.
//!
//! Method: one node serves `Discovery` (register + heartbeat) straight over the core [`Registry`], checking
//! liveness every check interval; three executor nodes register and heartbeat with a deadline on every call and
//! keep a core [`SelfFence`]. Executor 2 is killed at 5 s; executor 3 is cut off from the network from 8 s to
//! 25 s (staggered so that no single check sees a majority expire, which would engage the mass-eviction hold).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use foreman::core::fence::{Ack, SelfFence};
use foreman::core::ids::{ExecutorId, LeaderEpoch};
use foreman::core::placement::PlacementPolicy;
use foreman::core::registry::{ExecutorSpec, Registry, RegistryPolicy};
use foreman::core::time::Time;
use foreman::core::timing::HeartbeatTiming;
use foreman::rpc::identity::Identity;
use foreman::rpc::pb;
use foreman::rpc::pb::discovery_client::DiscoveryClient;
use foreman::rpc::pb::discovery_server::{Discovery, DiscoveryServer};
use foreman::rpc::status::Reason;
use madsim::net::NetSim;
use madsim::runtime::Handle;
use tonic::{Request, Response, Status};

use crate::harness::{announce, Clock, Recorder};

const MASTER_ADDR: &str = "10.0.1.1:10240";
const EPOCH: LeaderEpoch = LeaderEpoch(1);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Registered(ExecutorId),
    Accepted(ExecutorId),
    Offline(ExecutorId),
    Fenced(ExecutorId),
}

impl crate::harness::Story for Seen {}

/// A registry-only stand-in for the master: `RegisterExecutor` and `Heartbeat` over the core registry.
#[derive(Clone)]
struct RegistryService {
    registry: Arc<Mutex<Registry>>,
    clock: Clock,
    recorder: Recorder<Seen>,
    timing: HeartbeatTiming,
}

fn timing_pb(t: &HeartbeatTiming) -> pb::HeartbeatTiming {
    pb::HeartbeatTiming {
        heartbeat_interval_ms: t.interval.as_millis() as u64,
        heartbeat_timeout_ms: t.timeout.as_millis() as u64,
        self_fence_ms: t.self_fence.as_millis() as u64,
        offline_ttl_ms: t.offline_ttl.as_millis() as u64,
    }
}

#[tonic::async_trait]
impl Discovery for RegistryService {
    async fn register_executor(
        &self,
        req: Request<pb::RegisterExecutorRequest>,
    ) -> Result<Response<pb::RegisterExecutorResponse>, Status> {
        let r = req.into_inner();
        let spec = ExecutorSpec {
            name: r.name,
            address: r.address,
            capacity: r.capacity,
            labels: r.labels.into_iter().collect(),
            instance: r.instance,
        };
        let record = self.registry.lock().unwrap().register(self.clock.now(), spec)?;
        self.recorder.record("master", Seen::Registered(record.id));
        Ok(Response::new(pb::RegisterExecutorResponse {
            executor_id: record.id.0,
            leader_epoch: EPOCH.0,
            timing: Some(timing_pb(&self.timing)),
            ..Default::default()
        }))
    }

    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let id = ExecutorId(req.into_inner().executor_id);
        let verdict = match self.registry.lock().unwrap().heartbeat(self.clock.now(), id, vec![], &[]) {
            Ok(()) => {
                self.recorder.record("master", Seen::Accepted(id));
                pb::HeartbeatVerdict::Accepted
            }
            Err(_) => pb::HeartbeatVerdict::Reregister,
        };
        Ok(Response::new(pb::HeartbeatResponse {
            verdict: verdict as i32,
            leader_epoch: EPOCH.0,
            timing: Some(timing_pb(&self.timing)),
            gone_jobs: vec![],
            ..Default::default()
        }))
    }

    async fn deregister_executor(
        &self,
        _: Request<pb::DeregisterExecutorRequest>,
    ) -> Result<Response<pb::DeregisterExecutorResponse>, Status> {
        Err(Status::unimplemented("not part of this scenario"))
    }
    async fn query_meta_store(
        &self,
        _: Request<pb::QueryMetaStoreRequest>,
    ) -> Result<Response<pb::QueryMetaStoreResponse>, Status> {
        Err(Status::unimplemented("not part of this scenario"))
    }
    async fn list_executors(
        &self,
        _: Request<pb::ListExecutorsRequest>,
    ) -> Result<Response<pb::ListExecutorsResponse>, Status> {
        Err(Status::unimplemented("not part of this scenario"))
    }
    async fn list_masters(
        &self,
        _: Request<pb::ListMastersRequest>,
    ) -> Result<Response<pb::ListMastersResponse>, Status> {
        Err(Status::unimplemented("not part of this scenario"))
    }
    async fn get_leader(&self, _: Request<pb::GetLeaderRequest>) -> Result<Response<pb::GetLeaderResponse>, Status> {
        Err(Reason::NoLeader.status("not part of this scenario"))
    }
    async fn resign_leader(
        &self,
        _: Request<pb::ResignLeaderRequest>,
    ) -> Result<Response<pb::ResignLeaderResponse>, Status> {
        Err(Status::unimplemented("not part of this scenario"))
    }
}

async fn serve_master(svc: RegistryService, check_interval: Duration) {
    let checker = svc.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(check_interval).await;
            let out = checker.registry.lock().unwrap().check(checker.clock.now());
            for record in out.offline {
                checker.recorder.record("master", Seen::Offline(record.id));
            }
        }
    });
    tonic::transport::Server::builder()
        .add_service(DiscoveryServer::new(svc))
        .serve(MASTER_ADDR.parse().unwrap())
        .await
        .expect("the master serves");
}

/// An executor's registration and heartbeat loop, with a deadline on every call and a core self-fence.
async fn run_executor(name: String, clock: Clock, recorder: Recorder<Seen>) {
    let rpc_timeout = Duration::from_secs(1);
    'register: loop {
        let Ok(Ok(mut client)) =
            tokio::time::timeout(rpc_timeout, DiscoveryClient::connect(format!("http://{MASTER_ADDR}"))).await
        else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let req = pb::RegisterExecutorRequest {
            name: name.clone(),
            address: format!("{name}:10340"),
            capacity: 4,
            labels: Default::default(),
            instance: 0,
        };
        let sent = clock.now();
        let Ok(Ok(reply)) =
            tokio::time::timeout(rpc_timeout, client.register_executor(Identity::executor(&name).request(req))).await
        else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let reply = reply.into_inner();
        let id = ExecutorId(reply.executor_id);
        let t = reply.timing.expect("timing announced");
        let (interval, deadline) =
            (Duration::from_millis(t.heartbeat_interval_ms), Duration::from_millis(t.heartbeat_timeout_ms));
        let mut fence: SelfFence<LeaderEpoch> = SelfFence::new(sent, Duration::from_millis(t.self_fence_ms));
        let mut fenced = false;
        loop {
            tokio::time::sleep(interval).await;
            let sent = clock.now();
            if !fenced && fence.is_fenced(sent) {
                fenced = true;
                recorder.record(&name, Seen::Fenced(id));
            }
            let req = pb::HeartbeatRequest { executor_id: id.0, leader_epoch: fence.epoch().0, ..Default::default() };
            if let Ok(Ok(reply)) =
                tokio::time::timeout(deadline, client.heartbeat(Identity::executor(&name).request(req))).await
            {
                let reply = reply.into_inner();
                if reply.verdict == pb::HeartbeatVerdict::Reregister as i32 {
                    continue 'register;
                }
                if let Ack::Extended(_) = fence.on_ack(sent, LeaderEpoch(reply.leader_epoch)) {
                    fenced = false;
                }
            }
        }
    }
}

fn first(events: &[(Time, String, Seen)], want: &Seen) -> Option<Time> {
    events.iter().find(|(_, _, e)| e == want).map(|(t, _, _)| *t)
}

fn last_accepted(events: &[(Time, String, Seen)], id: ExecutorId) -> Time {
    events.iter().filter(|(_, _, e)| *e == Seen::Accepted(id)).map(|(t, _, _)| *t).max().expect("it heartbeated")
}

#[madsim::test]
async fn executor_killed_and_partitioned_heartbeat_timing() {
    announce("executor_killed_and_partitioned_heartbeat_timing");
    let handle = Handle::current();
    let clock = Clock::start();
    let recorder: Recorder<Seen> = Recorder::new(clock.clone());
    let timing = HeartbeatTiming::executor_default();
    timing.validate("executors").expect("default timing is safe");
    let check_interval = Duration::from_millis(500);
    let policy = RegistryPolicy { offline_ttl: timing.offline_ttl, ..RegistryPolicy::default() };

    let svc = RegistryService {
        registry: Arc::new(Mutex::new(Registry::new(policy, PlacementPolicy::default()))),
        clock: clock.clone(),
        recorder: recorder.clone(),
        timing,
    };
    handle
        .create_node()
        .name("master")
        .ip("10.0.1.1".parse().unwrap())
        .init(move || serve_master(svc.clone(), check_interval))
        .build();
    let mut executors = vec![];
    for i in 1..=3 {
        let (name, rec, clock) = (format!("executor-{i}"), recorder.clone(), clock.clone());
        let node = handle
            .create_node()
            .name(&name)
            .ip(format!("10.0.2.{i}").parse().unwrap())
            .init(move || run_executor(name.clone(), clock.clone(), rec.clone()))
            .build();
        executors.push(node.id());
    }

    tokio::time::sleep(Duration::from_secs(5)).await;
    handle.kill(executors[1]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    NetSim::current().clog_node(executors[2]);
    tokio::time::sleep(Duration::from_secs(17)).await;
    NetSim::current().unclog_node(executors[2]);
    tokio::time::sleep(Duration::from_secs(10)).await;

    let events = recorder.events();
    let registered: Vec<ExecutorId> =
        events.iter().filter_map(|(_, _, e)| if let Seen::Registered(id) = e { Some(*id) } else { None }).collect();
    assert_eq!(registered.len(), 4, "three registrations and one re-registration: {events:?}");
    let ttl = timing.offline_ttl;

    // Every executor declared offline was detected within TTL + one check interval of its last heartbeat, and
    // fenced itself (if alive) strictly before.
    let offline: Vec<(Time, ExecutorId)> =
        events.iter().filter_map(|(t, _, e)| if let Seen::Offline(id) = e { Some((*t, *id)) } else { None }).collect();
    assert_eq!(offline.len(), 2, "the killed and the partitioned executor, nobody else: {offline:?}");
    for &(at, id) in &offline {
        let heard = last_accepted(&events, id);
        assert!(at >= heard + ttl, "{id} declared offline at {at}, before its TTL from {heard}");
        assert!(
            at <= heard + ttl + check_interval,
            "{id} declared offline at {at}, later than TTL + check after {heard}"
        );
        if let Some(fenced) = first(&events, &Seen::Fenced(id)) {
            assert!(fenced < at, "{id} fenced at {fenced}, not before it was declared offline at {at}");
        }
    }
    // The partitioned executor fenced itself, then came back under a new id; the healthy one never left.
    let partitioned = offline.iter().map(|(_, id)| *id).find(|id| first(&events, &Seen::Fenced(*id)).is_some());
    let partitioned = partitioned.expect("the partitioned executor fenced itself");
    assert!(registered.last().unwrap() > &partitioned, "re-registered with a fresh id");
    let healthy: Vec<ExecutorId> =
        registered[..3].iter().copied().filter(|id| !offline.iter().any(|(_, o)| o == id)).collect();
    assert_eq!(healthy.len(), 1);
    assert!(last_accepted(&events, healthy[0]) >= Time::from_millis(34_000), "the healthy executor kept heartbeating");
}
