//! A simulated cluster of real `foreman` nodes: one etcd node, N masters, M executors running the production job
//! types (`foreman::jobs::builtin()`, or a test's own, [`Tasks::Types`]), and a client node. Everything nodes see is reported to one [`Recorder`]
//! handed to them here, never through a global.
//!
//! Addresses: etcd 10.0.0.1:2379, master i at 10.0.1.(i+1):10240, executor i at 10.0.2.(i+1):10250 (beyond the 250th
//! at 10.2.(i/250).(i%250+1)), the client at 10.0.3.1.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foreman::clock::Dial;
use foreman::config::{ExecutorConfig, MasterConfig};
use foreman::core::ids::Epoch;
use foreman::executor::sleep::SleepTasks;
use foreman::executor::{Executor, ExecutorObservation, ExecutorObserver};
use foreman::framework::api::JobTypes;
use foreman::master::{Master, Observation, Observer, Role};
use foreman::meta::MetaStore;
use foreman::planted::Plants;
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
    /// An executor's own report (membership, fencing, task starts and stops, checkpoints).
    Exec(ExecutorObservation),
    /// The client's create was acknowledged.
    JobCreated {
        id: String,
    },
    /// The client's cancel was acknowledged; the reply named this newest job-master epoch (0: none yet) and this
    /// state (`pb::JobState`).
    JobCanceled {
        id: String,
        epoch: Epoch,
        state: i32,
    },
    /// The client read the job: its state (`pb::JobState`), or `None` when the job was not found.
    JobRead {
        id: String,
        state: Option<i32>,
    },
    /// The client's delete was acknowledged (or a retried delete found the job gone).
    JobDeleted {
        id: String,
    },
    /// The scenario killed this node.
    Killed,
    /// The scenario restarted this node.
    Restarted,
    /// The scenario paused this node (its tasks are not polled until it is resumed).
    Paused,
    Resumed,
    /// The scenario asked this node to stop gracefully (as Ctrl-C or SIGTERM does in production).
    StopAsked,
    /// A fault plan's step began (recorded under the name [`crate::faults::FAULTS`]): its number in the plan
    /// (from 1), the step as the plan writes it, and what it broke.
    FaultBegan {
        step: usize,
        plan: String,
        broke: String,
    },
    /// The step's heal: what it gave back.
    FaultHealed {
        step: usize,
        healed: String,
    },
    /// A plan step's hold stalled this node at a fault point (`foreman::buggify::Point`'s name) for `stall`.
    HoldBegan {
        step: usize,
        point: &'static str,
        stall: std::time::Duration,
    },
    /// That stall ended: the node goes on from the point.
    HoldEnded {
        step: usize,
        point: &'static str,
    },
}

impl crate::harness::Story for Seen {
    fn routine(&self) -> bool {
        matches!(
            self,
            Seen::Exec(
                ExecutorObservation::HeartbeatAcked { .. }
                    | ExecutorObservation::Checkpoint { .. }
                    | ExecutorObservation::WorkerHeard { .. }
                    | ExecutorObservation::WorkerConfirmSent { .. }
            ) | Seen::Master(
                Observation::Capacity(_) | Observation::JobMasterHeard { .. } | Observation::ActingUntil { .. }
            ) | Seen::JobRead { .. }
        )
    }
}

/// Records a node's held stalls in the story, under its name.
fn hold_observer(recorder: &Recorder<Seen>, name: &str) -> foreman::buggify::HoldObserver {
    let (rec, name) = (recorder.clone(), name.to_owned());
    Arc::new(move |step, point: foreman::buggify::Point, stall, ended| {
        let point = point.name();
        rec.record(&name, if ended { Seen::HoldEnded { step, point } } else { Seen::HoldBegan { step, point, stall } });
    })
}

pub fn master_addr(i: usize) -> String {
    format!("10.0.1.{}:10240", i + 1)
}

pub fn executor_addr(i: usize) -> String {
    if i < 250 {
        format!("10.0.2.{}:10250", i + 1)
    } else {
        // The scale workload's executors beyond the 250th (issue 17: up to 1,000 and more).
        format!("10.2.{}.{}:10250", i / 250, i % 250 + 1)
    }
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
    /// This node's fault points: the run's switch, its own holds and metastore latency.
    pub points: foreman::buggify::FaultPoints,
    /// The current incarnation's master, for role queries (replaced on restart).
    pub current: Arc<Mutex<Option<Arc<Master>>>>,
    /// Set to ask the node to stop gracefully (reset when the node starts again).
    pub stop: Arc<tokio::sync::watch::Sender<bool>>,
    /// The node's clock: every incarnation of the master reads it (clock faults turn it).
    pub dial: Dial,
}

/// A fresh shutdown signal for a node starting (again): resolves once the scenario asks it to stop.
fn shutdown_signal(stop: &tokio::sync::watch::Sender<bool>) -> impl std::future::Future<Output = ()> {
    stop.send_replace(false);
    let mut asked = stop.subscribe();
    async move {
        let _ = asked.wait_for(|stop| *stop).await;
    }
}

impl MasterNode {
    pub fn role(&self) -> Role {
        self.current.lock().unwrap().as_ref().map_or(Role::Follower, |m| m.role())
    }
}

/// The slots of every executor; capacity = this many tasks of cost 1.
pub const EXECUTOR_CAPACITY: u32 = 8;

/// The executors' collection interval in the simulation: no listing of kept job data within a run. Only exec jobs
/// keep any, and their scenario sets its own interval; a listing every minute would add steps to every other run,
/// and move every seed (and the guard table's catching seeds with them).
pub const NO_COLLECTION: Duration = Duration::from_secs(86_400);

/// A real executor joining every master.
pub fn executor_config(i: usize, masters: usize) -> ExecutorConfig {
    let mut c = ExecutorConfig {
        name: format!("executor-{i}"),
        addr: executor_addr(i),
        join: (0..masters).map(master_addr).collect(),
        capacity: EXECUTOR_CAPACITY,
        collect_interval: NO_COLLECTION,
        ..ExecutorConfig::default()
    };
    c.fill_derived();
    c.validate().expect("the simulated executor configuration is valid");
    c
}

/// `n` executors of one slot each, joining `masters` masters: a full cluster is easy to make (scenarios where a
/// successor must wait for the slot its predecessor holds).
pub fn one_slot_executors(n: usize, masters: usize) -> Vec<ExecutorConfig> {
    (0..n)
        .map(|i| {
            let mut e = executor_config(i, masters);
            e.capacity = 1;
            e.validate().expect("the scenario's executor configuration is valid");
            e
        })
        .collect()
}

pub struct ExecutorNode {
    pub name: String,
    pub node: NodeHandle,
    /// This node's fault points: the run's switch and its own holds.
    pub points: foreman::buggify::FaultPoints,
    /// The current incarnation's executor, for state queries (replaced on restart).
    pub current: Arc<Mutex<Option<Arc<Executor>>>>,
    /// Set to ask the node to stop gracefully (reset when the node starts again).
    pub stop: Arc<tokio::sync::watch::Sender<bool>>,
    /// The node's clock: every incarnation of the executor reads it (clock faults turn it).
    pub dial: Dial,
    /// The node's disk for its executor's logs: every incarnation keeps them there.
    pub disk: foreman::framework::logs::LogStore,
}

/// What the executors run.
#[derive(Clone)]
pub enum Tasks {
    /// The production job types (`foreman::jobs::builtin()`).
    Jobs,
    /// The test factory whose tasks sleep (`foreman::executor::sleep::SleepTasks`, an hour unless told).
    Sleep,
    /// These job types, which the masters accept too: a user's own, under test.
    Types(JobTypes),
}

/// Exactly what to build: every node's configuration (addresses as in [`master_addr`] and [`executor_addr`]).
pub struct Spec {
    pub masters: Vec<MasterConfig>,
    pub executors: Vec<ExecutorConfig>,
    pub tasks: Tasks,
    /// The bugs planted in every node (usually none or one).
    pub planted: Plants,
    /// The share of etcd requests that time out (5 to 15 s, never applied): madsim's etcd fault knob.
    pub etcd_timeout_rate: f32,
}

impl Spec {
    /// A cluster of these nodes running the production job types, with every bug in `planted` and no etcd
    /// timeouts: the shape of most aimed scenarios.
    pub fn jobs(masters: Vec<MasterConfig>, executors: Vec<ExecutorConfig>, planted: impl Into<Plants>) -> Spec {
        Spec { masters, executors, tasks: Tasks::Jobs, planted: planted.into(), etcd_timeout_rate: 0.0 }
    }
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
    /// Every node's fault-point switch (`foreman::buggify`), off until a scenario turns it on.
    pub fault_points: foreman::buggify::FaultPoints,
    /// What the nodes cost, over all their lives.
    pub costs: Costs,
}

/// What a run's nodes cost, counted over every life of every node: for figures (issue 17 item 2), never for a
/// check (the leader loop's CPU is read from the host's clock).
#[derive(Clone, Default)]
pub struct Costs {
    /// The masters' metastore requests.
    pub masters: foreman::meta::Requests,
    /// The executors' metastore requests (their job masters' and workers' included).
    pub executors: foreman::meta::Requests,
    /// Each master life's statistics, in the order the lives began.
    pub master_stats: Arc<Mutex<Vec<Arc<foreman::master::metrics::Stats>>>>,
}

/// At the end of a run, every node is killed: madsim does not drop a task still pending when its runtime ends, so
/// without this each run would leave behind everything its nodes' tasks hold (about 1 MB per idle cluster, 3 MB
/// per swarm seed; `sim/leak.rs` measures it). Killing a node drops its tasks.
impl Drop for Cluster {
    fn drop(&mut self) {
        let nodes = self.masters.iter().map(|m| m.node.id()).chain(self.executors.iter().map(|e| e.node.id()));
        let nodes: Vec<_> = nodes.chain([self.etcd.id(), self.client.id()]).collect();
        for id in nodes {
            self.handle.kill(id);
        }
    }
}

impl Cluster {
    pub async fn start(masters: usize, executors: usize) -> Cluster {
        Cluster::build(masters, executors, Tasks::Jobs, None).await
    }

    /// With `planted`, every executor runs its tasks with that bug (the planted-bug runs).
    pub async fn start_with(masters: usize, executors: usize, planted: impl Into<Plants>) -> Cluster {
        Cluster::build(masters, executors, Tasks::Jobs, planted).await
    }

    pub async fn build(masters: usize, executors: usize, tasks: Tasks, planted: impl Into<Plants>) -> Cluster {
        let spec = Spec {
            masters: (0..masters).map(master_config).collect(),
            executors: (0..executors).map(|i| executor_config(i, masters)).collect(),
            tasks,
            planted: planted.into(),
            etcd_timeout_rate: 0.0,
        };
        Cluster::build_spec(spec).await
    }

    /// A cluster of exactly these nodes.
    pub async fn build_spec(spec: Spec) -> Cluster {
        Cluster::build_paced(spec, Duration::ZERO).await
    }

    /// A cluster of exactly these nodes, its executors started one after another over `executors_over` (in
    /// order, the first at once), as an operator brings up a large fleet; it returns once the last has started.
    pub async fn build_paced(spec: Spec, executors_over: Duration) -> Cluster {
        let Spec { masters: master_configs, executors: executor_configs, tasks, planted, etcd_timeout_rate } = spec;
        // Every simulated cluster arms the tripwires: a guard held unreachable that is reached fails the run.
        let planted = planted.armed();
        let handle = Handle::current();
        let clock = Clock::start();
        let recorder = Recorder::new(clock.clone());
        let fault_points = foreman::buggify::FaultPoints::default();
        let costs = Costs::default();
        let etcd_addr: SocketAddr = ETCD_ADDR.parse().unwrap();
        let etcd = handle
            .create_node()
            .name("etcd")
            .ip(etcd_addr.ip())
            .init(move || async move {
                etcd_client::SimServer::builder().timeout_rate(etcd_timeout_rate).serve(etcd_addr).await.unwrap()
            })
            .build();
        // Let etcd listen before anyone connects.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let config = master_configs.first().cloned().unwrap_or_else(|| master_config(0));
        // A test's own job types: its masters accept them (else the built-in ones, which they accept by default).
        let accepted = match &tasks {
            Tasks::Types(types) => Some(types.clone()),
            Tasks::Jobs | Tasks::Sleep => None,
        };
        let mut ms = vec![];
        for cfg in master_configs {
            let current: Arc<Mutex<Option<Arc<Master>>>> = Arc::new(Mutex::new(None));
            let slot = current.clone();
            let rec = recorder.clone();
            let name = cfg.name.clone();
            let points = fault_points.for_node(Some(hold_observer(&recorder, &name)));
            let switch = points.clone();
            let addr: SocketAddr = cfg.addr.parse().unwrap();
            let stop = Arc::new(tokio::sync::watch::channel(false).0);
            let stop_in = stop.clone();
            let dial = Dial::new();
            let dial_in = dial.clone();
            let accepted = accepted.clone();
            let stats_of_lives = costs.master_stats.clone();
            let requests_of_masters = costs.masters.clone();
            let node = handle
                .create_node()
                .name(&name)
                .ip(addr.ip())
                .init(move || {
                    let cfg = cfg.clone();
                    let slot = slot.clone();
                    let rec = rec.clone();
                    let switch = switch.clone();
                    let dial = dial_in.clone();
                    let accepted = accepted.clone();
                    let stats_of_lives = stats_of_lives.clone();
                    let requests = requests_of_masters.clone();
                    let shutdown = shutdown_signal(&stop_in);
                    async move {
                        let timeout = cfg.rpc.metastore_timeout;
                        // A master that cannot reach etcd at start exits and its supervisor starts it again.
                        let store = loop {
                            match MetaStore::etcd(&cfg.etcd, &cfg.cluster, timeout).await {
                                Ok(store) => break store.with_latency(switch.latency()).counting_into(&requests),
                                Err(e) => {
                                    tracing::warn!("cannot reach the metastore at start ({e}); starting again in 1 s");
                                    tokio::time::sleep(Duration::from_secs(1)).await;
                                }
                            }
                        };
                        let observer: Observer =
                            Arc::new(move |node: &str, o: Observation| rec.record(node, Seen::Master(o)));
                        let seed = madsim::rand::random::<u64>();
                        let mut m = Master::with_observer(cfg, store, seed, Some(observer));
                        if let Some(types) = accepted {
                            m = m.with_job_types(types);
                        }
                        let m = m.with_planted(planted).with_fault_points(switch).with_dial(&dial);
                        *slot.lock().unwrap() = Some(m.clone());
                        stats_of_lives.lock().unwrap().push(m.stats.clone());
                        m.serve(addr, shutdown).await.expect("master serves");
                    }
                })
                .build();
            ms.push(MasterNode { name, node, points, current, stop, dial });
        }
        let mut es = vec![];
        let gap = executors_over / (executor_configs.len().max(1) as u32);
        for (i, cfg) in executor_configs.into_iter().enumerate() {
            if i > 0 && !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            let name = cfg.name.clone();
            let addr: SocketAddr = cfg.addr.parse().unwrap();
            let rec = recorder.clone();
            let current: Arc<Mutex<Option<Arc<Executor>>>> = Arc::new(Mutex::new(None));
            let slot = current.clone();
            let points = fault_points.for_node(Some(hold_observer(&recorder, &name)));
            let switch = points.clone();
            let stop = Arc::new(tokio::sync::watch::channel(false).0);
            let stop_in = stop.clone();
            let dial = Dial::new();
            let dial_in = dial.clone();
            let tasks = tasks.clone();
            // The node's disk for its executor's logs: every life of the executor finds what the last one kept.
            let disk = foreman::framework::logs::LogStore::memory();
            let disk_of_node = disk.clone();
            let requests_of_executors = costs.executors.clone();
            let node = handle
                .create_node()
                .name(&name)
                .ip(addr.ip())
                .init(move || {
                    let (cfg, rec, slot, switch) = (cfg.clone(), rec.clone(), slot.clone(), switch.clone());
                    let dial = dial_in.clone();
                    let tasks = tasks.clone();
                    let disk = disk.clone();
                    let requests = requests_of_executors.clone();
                    let shutdown = shutdown_signal(&stop_in);
                    async move {
                        let observer: ExecutorObserver =
                            Arc::new(move |node: &str, o: ExecutorObservation| rec.record(node, Seen::Exec(o)));
                        let factory: Arc<dyn foreman::executor::TaskFactory> = match tasks {
                            Tasks::Jobs => Arc::new(foreman::jobs::builtin()),
                            Tasks::Sleep => Arc::new(SleepTasks { default_sleep: Duration::from_secs(3600) }),
                            Tasks::Types(types) => Arc::new(types),
                        };
                        let clock = foreman::clock::Clock::start_on(&dial);
                        let e = Executor::with_clock(cfg, factory, Some(observer), clock)
                            .with_planted(planted)
                            .with_fault_points(switch)
                            .with_logs(disk)
                            .counting_metastore_into(&requests);
                        *slot.lock().unwrap() = Some(e.clone());
                        e.serve(addr, shutdown).await.expect("executor serves");
                    }
                })
                .build();
            es.push(ExecutorNode { name, node, points, current, stop, dial, disk: disk_of_node });
        }
        let client = handle.create_node().name("client").ip("10.0.3.1".parse().unwrap()).build();
        Cluster { handle, clock, recorder, etcd, masters: ms, executors: es, client, config, fault_points, costs }
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

    /// Asks master `i` to stop gracefully, as SIGTERM does: it steps down and gives its lease back.
    pub fn stop_master(&self, i: usize) {
        self.recorder.record(&self.masters[i].name, Seen::StopAsked);
        self.masters[i].stop.send_replace(true);
    }

    /// Asks executor `i` to stop gracefully, as SIGTERM does: it drains and deregisters.
    pub fn stop_executor(&self, i: usize) {
        self.recorder.record(&self.executors[i].name, Seen::StopAsked);
        self.executors[i].stop.send_replace(true);
    }

    pub fn restart_master(&self, i: usize) {
        self.exit_if_stopped(&self.masters[i].name, &self.masters[i].stop, self.masters[i].node.id());
        self.recorder.record(&self.masters[i].name, Seen::Restarted);
        self.handle.restart(self.masters[i].node.id());
    }

    /// A node asked to stop gracefully is a process that exited once its shutdown ended: its sockets are closed
    /// before it starts again (madsim's restart alone keeps a node's network state; its kill resets it).
    /// One still draining when it is started again was SIGKILLed first: recorded as a kill.
    fn exit_if_stopped(&self, name: &str, stop: &tokio::sync::watch::Sender<bool>, node: madsim::task::NodeId) {
        if *stop.borrow() {
            self.recorder.record(name, Seen::Killed);
            self.handle.kill(node);
        }
    }

    pub fn pause_master(&self, i: usize) {
        self.recorder.record(&self.masters[i].name, Seen::Paused);
        self.handle.pause(self.masters[i].node.id());
    }

    pub fn resume_master(&self, i: usize) {
        self.recorder.record(&self.masters[i].name, Seen::Resumed);
        self.handle.resume(self.masters[i].node.id());
    }

    /// Executor `i`'s current incarnation.
    pub fn executor(&self, i: usize) -> Arc<Executor> {
        self.executors[i].current.lock().unwrap().clone().expect("the executor node started")
    }

    /// Waits until one master leads and every executor is registered, up to `within`.
    pub async fn settle(&self, within: Duration) {
        let step = Duration::from_millis(50);
        let mut waited = Duration::ZERO;
        loop {
            let registered =
                self.executors.iter().all(|e| e.current.lock().unwrap().as_ref().is_some_and(|e| e.id().is_some()));
            if self.leaders().len() == 1 && registered {
                return;
            }
            assert!(waited < within, "no leader with every executor registered after {within:?}");
            tokio::time::sleep(step).await;
            waited += step;
        }
    }

    /// Lists the executors through any master (followers forward), from the client node.
    pub async fn list_executors(&self) -> Vec<pb::Executor> {
        let masters = self.masters.len();
        self.client
            .spawn(async move {
                let mut last = String::from("no master could be reached");
                for round in 0..(masters * 20) {
                    if let Some(ch) = channel_to(&master_addr(round % masters), Duration::from_secs(2)).await {
                        match DiscoveryClient::with_interceptor(ch, crate::harness::As::user())
                            .list_executors(pb::ListExecutorsRequest {})
                            .await
                        {
                            Ok(r) => return r.into_inner().executors,
                            Err(e) => last = format!("{}: {}", master_addr(round % masters), e.message()),
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                panic!("no master listed the executors (the last answer: {last})");
            })
            .await
            .expect("the client task finished")
    }

    /// What executor node `node` reported, in order.
    pub fn exec_events(&self, node: &str) -> Vec<(foreman::core::time::Time, ExecutorObservation)> {
        self.recorder
            .events()
            .into_iter()
            .filter(|(_, n, _)| n == node)
            .filter_map(|(t, _, e)| match e {
                Seen::Exec(o) => Some((t, o)),
                _ => None,
            })
            .collect()
    }

    pub fn kill_executor(&self, i: usize) {
        self.recorder.record(&self.executors[i].name, Seen::Killed);
        self.handle.kill(self.executors[i].node.id());
    }

    pub fn restart_executor(&self, i: usize) {
        self.exit_if_stopped(&self.executors[i].name, &self.executors[i].stop, self.executors[i].node.id());
        self.recorder.record(&self.executors[i].name, Seen::Restarted);
        self.handle.restart(self.executors[i].node.id());
    }

    pub fn pause_executor(&self, i: usize) {
        self.recorder.record(&self.executors[i].name, Seen::Paused);
        self.handle.pause(self.executors[i].node.id());
    }

    pub fn resume_executor(&self, i: usize) {
        self.recorder.record(&self.executors[i].name, Seen::Resumed);
        self.handle.resume(self.executors[i].node.id());
    }
}

/// A channel to one node; what the client node uses.
pub async fn channel_to(addr: &str, timeout: Duration) -> Option<Channel> {
    Endpoint::from_shared(format!("http://{addr}")).ok()?.timeout(timeout).connect_timeout(timeout).connect().await.ok()
}
