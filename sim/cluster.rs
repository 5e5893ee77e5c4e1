//! A simulated cluster of real `foreman` masters: one etcd node, N masters, M stand-in executors that register
//! and heartbeat like the real executor will (deadline on every call, register again when told), and a client
//! node. Everything nodes see is reported to one [`Recorder`] handed to them here, never through a global.
//!
//! Addresses: etcd 10.0.0.1:2379, master i at 10.0.1.(i+1):10240, executor i at 10.0.2.(i+1):10250, the client at
//! 10.0.3.1.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foreman::config::MasterConfig;
use foreman::master::{Master, Observation, Observer, Role};
use foreman::meta::MetaStore;
use foreman::rpc::pb;
use foreman::rpc::pb::discovery_client::DiscoveryClient;
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use tonic::transport::{Channel, Endpoint};

use crate::harness::{Clock, Recorder};

pub const ETCD_ADDR: &str = "10.0.0.1:2379";
pub const CLUSTER: &str = "sim";

/// What nodes report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A master's own report (leadership, liveness decisions).
    Master(Observation),
    /// A stand-in executor was admitted under this id.
    Registered { id: u64 },
    /// A heartbeat of this executor id was acknowledged.
    Acked { id: u64 },
    /// The executor was told to register again.
    Reregister { id: u64 },
    /// The client's job call was acknowledged.
    JobCreated { id: String },
    /// A stand-in job master's incarnation became live (its first heartbeat was acknowledged).
    TaskLive { task: String, epoch: u64 },
    /// ...and stopped.
    TaskStopped { task: String, epoch: u64, why: String },
    /// The scenario killed this node.
    Killed,
    /// The scenario restarted this node.
    Restarted,
}

pub fn master_addr(i: usize) -> String {
    format!("10.0.1.{}:10240", i + 1)
}

pub fn executor_addr(i: usize) -> String {
    format!("10.0.2.{}:10250", i + 1)
}

/// Short timings so that a scenario covers several failovers in a few simulated minutes, within what
/// `validate()` accepts.
pub fn master_config(i: usize) -> MasterConfig {
    let mut c = MasterConfig {
        name: format!("master-{i}"),
        addr: master_addr(i),
        etcd: vec![ETCD_ADDR.to_owned()],
        cluster: CLUSTER.to_owned(),
        ..MasterConfig::default()
    };
    c.fill_derived();
    let warnings = c.validate().expect("the simulated master configuration is valid");
    assert!(warnings.is_empty(), "{warnings:?}");
    c
}

pub struct MasterNode {
    pub name: String,
    pub node: NodeHandle,
    /// The current incarnation's master, for role queries (replaced on restart).
    pub current: Arc<Mutex<Option<Arc<Master>>>>,
}

impl MasterNode {
    pub fn role(&self) -> Role {
        self.current.lock().unwrap().as_ref().map_or(Role::Follower, |m| m.role())
    }
}

pub struct ExecutorNode {
    pub name: String,
    pub node: NodeHandle,
}

pub struct Cluster {
    pub handle: Handle,
    pub clock: Clock,
    pub recorder: Recorder<Seen>,
    pub etcd: NodeHandle,
    pub masters: Vec<MasterNode>,
    pub executors: Vec<ExecutorNode>,
    pub client: NodeHandle,
    pub config: MasterConfig,
}

impl Cluster {
    pub async fn start(masters: usize, executors: usize) -> Cluster {
        Cluster::start_with(masters, executors, false).await
    }

    /// With `host_tasks`, the executors serve dispatch and run stand-in job masters (see `standin.rs`).
    pub async fn start_with(masters: usize, executors: usize, host_tasks: bool) -> Cluster {
        let handle = Handle::current();
        let clock = Clock::start();
        let recorder = Recorder::new(clock);
        let etcd_addr: SocketAddr = ETCD_ADDR.parse().unwrap();
        let etcd = handle
            .create_node()
            .name("etcd")
            .ip(etcd_addr.ip())
            .init(move || async move { etcd_client::SimServer::builder().serve(etcd_addr).await.unwrap() })
            .build();
        // Let etcd listen before anyone connects.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut ms = vec![];
        for i in 0..masters {
            let cfg = master_config(i);
            let current: Arc<Mutex<Option<Arc<Master>>>> = Arc::new(Mutex::new(None));
            let slot = current.clone();
            let rec = recorder.clone();
            let addr: SocketAddr = cfg.addr.parse().unwrap();
            let name = cfg.name.clone();
            let node = handle
                .create_node()
                .name(&name)
                .ip(addr.ip())
                .init(move || {
                    let cfg = cfg.clone();
                    let slot = slot.clone();
                    let rec = rec.clone();
                    async move {
                        let timeout = cfg.rpc.metastore_timeout;
                        let store = MetaStore::etcd(&cfg.etcd, &cfg.cluster, timeout).await.expect("etcd client");
                        let observer: Observer =
                            Arc::new(move |node: &str, o: Observation| rec.record(node, Seen::Master(o)));
                        let seed = madsim::rand::random::<u64>();
                        let m = Master::with_observer(cfg, store, seed, Some(observer));
                        *slot.lock().unwrap() = Some(m.clone());
                        m.serve(addr, std::future::pending()).await.expect("master serves");
                    }
                })
                .build();
            ms.push(MasterNode { name, node, current });
        }
        let config = master_config(0);
        let mut es = vec![];
        for i in 0..executors {
            let name = format!("executor-{i}");
            let addr: SocketAddr = executor_addr(i).parse().unwrap();
            let rec = recorder.clone();
            let n = name.clone();
            let interval = config.executors.heartbeat_interval;
            let deadline = config.executors.heartbeat_timeout;
            let node = handle
                .create_node()
                .name(&name)
                .ip(addr.ip())
                .init(move || {
                    let (n, rec) = (n.clone(), rec.clone());
                    async move {
                        if host_tasks {
                            crate::standin::executor(n, addr, rec, masters, interval, deadline).await
                        } else {
                            standin_executor(n, addr, rec, masters, interval, deadline).await
                        }
                    }
                })
                .build();
            es.push(ExecutorNode { name, node });
        }
        let client = handle.create_node().name("client").ip("10.0.3.1".parse().unwrap()).build();
        Cluster { handle, clock, recorder, etcd, masters: ms, executors: es, client, config }
    }

    pub fn net(&self) -> std::sync::Arc<NetSim> {
        NetSim::current()
    }

    /// The masters acting as serving leaders right now.
    pub fn leaders(&self) -> Vec<usize> {
        (0..self.masters.len()).filter(|&i| matches!(self.masters[i].role(), Role::Leader(_))).collect()
    }

    /// Waits (simulated time) until exactly one master leads, up to `within`; returns it.
    pub async fn await_leader(&self, within: Duration) -> Option<usize> {
        let step = Duration::from_millis(10);
        let mut waited = Duration::ZERO;
        loop {
            if let [one] = self.leaders()[..] {
                return Some(one);
            }
            if waited >= within {
                return None;
            }
            tokio::time::sleep(step).await;
            waited += step;
        }
    }

    pub fn kill_master(&self, i: usize) {
        self.recorder.record(&self.masters[i].name, Seen::Killed);
        *self.masters[i].current.lock().unwrap() = None;
        self.handle.kill(self.masters[i].node.id());
    }

    pub fn restart_master(&self, i: usize) {
        self.recorder.record(&self.masters[i].name, Seen::Restarted);
        self.handle.restart(self.masters[i].node.id());
    }

    pub fn kill_executor(&self, i: usize) {
        self.recorder.record(&self.executors[i].name, Seen::Killed);
        self.handle.kill(self.executors[i].node.id());
    }
}

/// A client of every master, trying them in turn; what executors and the client node use.
pub async fn channel_to(addr: &str, timeout: Duration) -> Option<Channel> {
    Endpoint::from_shared(format!("http://{addr}")).ok()?.timeout(timeout).connect_timeout(timeout).connect().await.ok()
}

/// A stand-in executor: registers, heartbeats every interval with a deadline, registers again when told, and
/// moves to the next master when one does not answer. Reports what it was told.
async fn standin_executor(
    name: String,
    addr: SocketAddr,
    rec: Recorder<Seen>,
    masters: usize,
    interval: Duration,
    deadline: Duration,
) {
    let mut which = 0usize;
    let mut id: Option<u64> = None;
    let mut leader_epoch = 0u64;
    loop {
        tokio::time::sleep(interval).await;
        let target = master_addr(which % masters);
        let Some(ch) = channel_to(&target, deadline).await else {
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
                let req = pb::HeartbeatRequest { executor_id: me, leader_epoch, tasks: vec![] };
                match client.heartbeat(req).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        leader_epoch = leader_epoch.max(r.leader_epoch);
                        if r.verdict == pb::HeartbeatVerdict::Accepted as i32 {
                            rec.record(&name, Seen::Acked { id: me });
                        } else {
                            rec.record(&name, Seen::Reregister { id: me });
                            id = None;
                        }
                    }
                    Err(_) => which += 1,
                }
            }
        }
    }
}
