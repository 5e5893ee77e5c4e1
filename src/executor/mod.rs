//! The executor process (design.md §2): registers with the masters given by `--join`, heartbeats the leader with
//! the timing the leader announces, fences itself when its heartbeats go unacknowledged for the self-fence time,
//! and runs the tasks the masters dispatch to it (two-phase dispatch, [`dispatch`]).
//!
//! Layering: the decisions are the core's ([`crate::core::fence::SelfFence`], [`HeartbeatTiming`] rules) and the
//! pure [`Dispatcher`]; this module moves bytes and timers. All state sits in one [`State`] behind a mutex that is
//! never held across an `.await`.
//!
//! Tasks: a [`TaskFactory`] turns a [`TaskSpec`] into a future. When the executor stops a task (fenced, told to
//! register again, shutting down) it signals the task's [`StopSignal`] and drops the task's future at once, so a
//! stopped task runs none of its code after the stop: the self-fence is a hard stop.
//!
//! Every task start and stop is logged at info in one stable form, `task started executor=<name> task=<id>
//! epoch=<n>` and `task stopped executor=<name> task=<id> epoch=<n> why=<word>` ([`StopWhy`]'s words), whatever
//! stopped it (its own exit, the executor's self-fence, a declared-offline verdict, shutdown): the real-process
//! chaos test (`tests/process_chaos.rs`) reads them to check that no two incarnations of a task were ever live at
//! once. A SIGKILLed executor logs no stops: its tasks end with the process.

pub mod cmd;
mod service;
#[doc(hidden)]
pub mod sleep;

pub use crate::core::dispatcher::{Dispatcher, Refusal, TaskKind, TaskSpec};

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn};

use crate::clock::Clock;
use crate::config::ExecutorConfig;
use crate::core::fence::{Ack, SelfFence};
use crate::core::ids::{Epoch, ExecutorId, LeaderEpoch, TaskId};
use crate::core::time::Time;
use crate::core::timing::HeartbeatTiming;
use crate::framework::host::Host;
use crate::meta::MetaStore;
use crate::planted::Planted;
use crate::rpc::pb;
use crate::rpc::pb::discovery_client::DiscoveryClient;

/// How a task ended by itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskExit {
    Finished,
    /// It was asked to cancel, and did.
    Canceled,
    Failed(String),
    /// No acknowledged heartbeat from its master for the self-fence time: it stopped itself.
    Fenced,
    /// Its master told it that it is stale (a newer incarnation exists, or it was never accepted).
    Stale,
    /// It saw its stop signal and returned.
    Stopped,
}

/// Why a task left the running set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopWhy {
    /// The task's future returned.
    Exited(TaskExit),
    /// The executor fenced itself.
    Fenced,
    /// The executor was told to register again.
    Reregister,
    /// The executor is shutting down.
    Shutdown,
}

/// One word per reason, for the `task stopped` log line: `finished`, `canceled`, `failed`, `fenced` (the task's
/// own link fenced it), `stale`, `stopped`, `executor-fenced`, `declared-offline`, `shutdown`.
impl std::fmt::Display for StopWhy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopWhy::Exited(TaskExit::Finished) => "finished",
            StopWhy::Exited(TaskExit::Canceled) => "canceled",
            StopWhy::Exited(TaskExit::Failed(_)) => "failed",
            StopWhy::Exited(TaskExit::Fenced) => "fenced",
            StopWhy::Exited(TaskExit::Stale) => "stale",
            StopWhy::Exited(TaskExit::Stopped) => "stopped",
            StopWhy::Fenced => "executor-fenced",
            StopWhy::Reregister => "declared-offline",
            StopWhy::Shutdown => "shutdown",
        })
    }
}

/// Tells a task to stop. The executor also drops the task's future right after signalling, so the signal is for
/// work the task spawned elsewhere.
#[derive(Clone, Debug)]
pub struct StopSignal {
    rx: tokio::sync::watch::Receiver<bool>,
}

impl StopSignal {
    pub fn is_stopped(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once the task must stop.
    pub async fn stopped(&mut self) {
        while !*self.rx.borrow_and_update() {
            if self.rx.changed().await.is_err() {
                return;
            }
        }
    }
}

/// A running task: a future the executor polls until it returns or is stopped.
pub type TaskFuture = Pin<Box<dyn Future<Output = TaskExit> + Send>>;

/// Builds tasks from dispatch requests; the framework's job masters and workers plug in here.
pub trait TaskFactory: Send + Sync {
    fn start(&self, env: TaskEnv, spec: TaskSpec, stop: StopSignal) -> TaskFuture;
}

/// What a task may use of its executor: where the masters are, where it is reached, the framework host its own
/// workers talk to, the metastore, the clock, and the observer.
#[derive(Clone)]
pub struct TaskEnv {
    /// The executor's name.
    pub executor: String,
    /// Where this executor is reached (its advertised address): a job master's workers heartbeat it there.
    pub address: String,
    /// The masters, as given by `--join`.
    pub join: Vec<String>,
    /// The bound of every call a task makes.
    pub rpc_timeout: Duration,
    pub host: Host,
    pub clock: Clock,
    meta: Arc<MetaSlot>,
    observer: Option<ExecutorObserver>,
    /// The bug planted into this executor's tasks (only the simulation build can plant one).
    planted: Option<Planted>,
    /// The simulation's fault points.
    pub fault_points: crate::buggify::FaultPoints,
    /// True once the executor drains (it is shutting down): a task should stop at its next checkpoint and report
    /// [`crate::core::workers::WorkerStatus::Stopped`] so that its master starts it again elsewhere at once.
    drain: Arc<DrainSignal>,
}

/// The executor's drain, as its tasks see it: a flag set once, and a `Notify` that wakes every waiting task in
/// the order it began to wait. (Not a `watch` channel: tokio's watch wakes many waiting receivers in an order
/// drawn from a per-thread random generator, which the simulator does not control.)
#[derive(Default)]
pub struct DrainSignal {
    set: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

/// The metastore client once known, and a `Notify` that wakes the tasks waiting for it in the order they began
/// to wait (not a `watch` channel, for the reason given at [`DrainSignal`]).
#[derive(Default)]
pub struct MetaSlot {
    store: Mutex<Option<MetaStore>>,
    notify: tokio::sync::Notify,
}

impl MetaSlot {
    fn set(&self, store: MetaStore) {
        *self.store.lock().unwrap_or_else(|p| p.into_inner()) = Some(store);
        self.notify.notify_waiters();
    }

    fn get(&self) -> Option<MetaStore> {
        self.store.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl DrainSignal {
    fn raise(&self) {
        self.set.store(true, std::sync::atomic::Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn is_raised(&self) -> bool {
        self.set.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl TaskEnv {
    /// Whether the executor is draining.
    pub fn is_draining(&self) -> bool {
        self.drain.is_raised()
    }

    /// Resolves once the executor drains (never, if it never does).
    pub async fn draining(&self) {
        loop {
            let raised = self.drain.notify.notified();
            tokio::pin!(raised);
            raised.as_mut().enable();
            if self.drain.is_raised() {
                return;
            }
            raised.await;
        }
    }

    /// The metastore, once the executor has learned where it is (waits until then).
    pub async fn metastore(&mut self) -> MetaStore {
        loop {
            let known = self.meta.notify.notified();
            tokio::pin!(known);
            known.as_mut().enable();
            if let Some(m) = self.meta.get() {
                return m;
            }
            known.await;
        }
    }

    pub fn observe(&self, o: ExecutorObservation) {
        if let Some(f) = &self.observer {
            f(&self.executor, o);
        }
    }

    /// Whether `bug` is planted (never in the production build).
    pub fn planted(&self, bug: Planted) -> bool {
        self.planted == Some(bug)
    }
}

/// What an executor tells an observer (the simulator's checkers; later, metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecutorObservation {
    /// Admitted under this id.
    Registered {
        id: u64,
    },
    /// No acknowledged heartbeat for the self-fence time: every task was stopped at `at`.
    Fenced {
        id: u64,
        at: tokio::time::Instant,
    },
    /// A heartbeat under this id, sent at `sent`, was acknowledged by the leader of `leader_epoch` (the leader
    /// heard it after `sent`; the acknowledgement may arrive much later, e.g. after a pause).
    HeartbeatAcked {
        id: u64,
        sent: tokio::time::Instant,
        leader_epoch: u64,
    },
    /// Told it was declared offline: every task stopped, registering again.
    Reregister {
        id: u64,
    },
    /// Left the cluster: every task had stopped, and a master took its deregistration.
    Deregistered {
        id: u64,
    },
    TaskStarted {
        task: String,
        epoch: u64,
    },
    TaskStopped {
        task: String,
        epoch: u64,
        why: StopWhy,
    },
    /// The task stopped its work for a drain and will act no more (it only reports that to its master, which
    /// may start the next incarnation at once); its `TaskStopped` follows once the report is done.
    TaskQuiesced {
        task: String,
        epoch: u64,
    },
    /// A worker's checkpoint write was acknowledged by the metastore.
    Checkpoint {
        task: String,
        epoch: u64,
        counter: u64,
    },
}

/// Receives an executor's observations; must not block.
pub type ExecutorObserver = Arc<dyn Fn(&str, ExecutorObservation) + Send + Sync>;

/// Where the metastore is, as the masters said (`QueryMetaStore`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaStoreInfo {
    pub kind: pb::StoreKind,
    pub endpoints: Vec<String>,
    pub key_prefix: String,
}

struct TaskHandle {
    epoch: Epoch,
    stop: tokio::sync::watch::Sender<bool>,
}

pub(crate) struct State {
    pub(crate) dispatcher: Dispatcher,
    tasks: BTreeMap<TaskId, TaskHandle>,
    /// The id while registered.
    pub(crate) id: Option<ExecutorId>,
    /// The leader's announced timing (the configured defaults until the first reply).
    timing: HeartbeatTiming,
    /// Anchored at the send time of the newest acknowledged heartbeat; its epoch is the highest leader epoch seen.
    fence: SelfFence<LeaderEpoch>,
    /// Fenced and not acknowledged since: no task may start.
    pub(crate) fenced: bool,
    /// Shutting down: no task may start, running ones are asked to stop at a checkpoint.
    pub(crate) draining: bool,
    /// A heartbeat saying so was acknowledged: the leader places nothing more here.
    drain_announced: bool,
    meta: Option<MetaStoreInfo>,
}

impl State {
    /// Where this executor stands for a dispatch (`dispatch::admit`).
    pub(crate) fn standing(&self) -> crate::core::dispatcher::Standing {
        crate::core::dispatcher::Standing {
            id: self.id,
            draining: self.draining,
            fenced: self.fenced,
            newest_leader_epoch: self.fence.epoch().0,
        }
    }
}

/// One executor process's shared state.
pub struct Executor {
    cfg: ExecutorConfig,
    clock: Clock,
    factory: Arc<dyn TaskFactory>,
    observer: Option<ExecutorObserver>,
    state: Mutex<State>,
    /// Routes framework messages to the job masters this executor hosts.
    host: Host,
    /// The metastore client, once the masters said where it is.
    meta: Arc<MetaSlot>,
    planted: Option<Planted>,
    /// Drawn when the process starts; sent with every registration (see `RegisterExecutorRequest.instance`).
    instance: u64,
    /// The simulation's fault points, handed to the tasks (`crate::buggify`).
    fault_points: crate::buggify::FaultPoints,
    /// Raised once when the executor starts draining; every task watches it (`TaskEnv::draining`).
    drain: Arc<DrainSignal>,
    /// Notified whenever a task leaves the running set or the drain was announced (a drain waits on both).
    drain_progress: tokio::sync::Notify,
    /// Wakes the membership loop for a heartbeat now (to announce a drain).
    heartbeat_now: tokio::sync::Notify,
}

/// A number naming this executor process among the restarts of one executor: its name, process id and start
/// time. It draws no randomness, so the simulation's random streams are the same with or without it (the
/// simulated wall clock tells restarts apart there). Never 0 (0 means "none" on the wire).
fn process_instance(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    // why: read once, to tell this process from earlier ones; simulated in the simulation build, never compared.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    std::process::id().hash(&mut h);
    started.hash(&mut h);
    h.finish().max(1)
}

impl Executor {
    /// An executor with validated `cfg` (see [`ExecutorConfig::validate`]) running the tasks `factory` builds.
    pub fn new(
        cfg: ExecutorConfig,
        factory: Arc<dyn TaskFactory>,
        observer: Option<ExecutorObserver>,
    ) -> Arc<Executor> {
        let clock = Clock::start();
        let timing = HeartbeatTiming::executor_default();
        let dispatcher = Dispatcher::new(cfg.dispatch_ttl, cfg.task_queue as usize, cfg.capacity);
        Arc::new(Executor {
            host: Host::new(clock),
            meta: Arc::default(),
            drain: Arc::default(),
            drain_progress: tokio::sync::Notify::new(),
            heartbeat_now: tokio::sync::Notify::new(),
            planted: None,
            instance: process_instance(&cfg.name),
            fault_points: Default::default(),
            state: Mutex::new(State {
                dispatcher,
                tasks: BTreeMap::new(),
                id: None,
                timing,
                fence: SelfFence::new(clock.now(), timing.self_fence),
                fenced: false,
                draining: false,
                drain_announced: false,
                meta: None,
            }),
            cfg,
            clock,
            factory,
            observer,
        })
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The same executor with `bug` planted into its tasks (simulation build only).
    /// Call it on a fresh executor.
    #[cfg(madsim)]
    pub fn with_planted(self: Arc<Executor>, bug: Option<Planted>) -> Arc<Executor> {
        match Arc::try_unwrap(self) {
            Ok(mut e) => {
                e.planted = bug;
                Arc::new(e)
            }
            Err(e) => e,
        }
    }

    /// The same executor with the run's fault-point switch (simulation build only). Call it on a fresh executor.
    #[cfg(madsim)]
    pub fn with_fault_points(self: Arc<Executor>, switch: crate::buggify::FaultPoints) -> Arc<Executor> {
        match Arc::try_unwrap(self) {
            Ok(mut e) => {
                e.fault_points = switch;
                Arc::new(e)
            }
            Err(e) => e,
        }
    }

    /// Uses `store` as the metastore instead of the one the masters name (the embedded store of one process).
    pub fn use_metastore(&self, store: MetaStore) {
        self.meta.set(store);
    }

    fn task_env(&self) -> TaskEnv {
        TaskEnv {
            executor: self.cfg.name.clone(),
            address: self.cfg.advertise_addr.clone(),
            join: self.cfg.join.clone(),
            rpc_timeout: self.cfg.rpc_timeout,
            host: self.host.clone(),
            clock: self.clock,
            meta: self.meta.clone(),
            observer: self.observer.clone(),
            planted: self.planted,
            fault_points: self.fault_points.clone(),
            drain: self.drain.clone(),
        }
    }

    pub fn config(&self) -> &ExecutorConfig {
        &self.cfg
    }

    /// The id while registered.
    pub fn id(&self) -> Option<u64> {
        self.lock().id.map(|i| i.0)
    }

    /// The highest leader epoch seen in a reply.
    pub fn leader_epoch(&self) -> u64 {
        self.lock().fence.epoch().0
    }

    /// The metastore the masters named, once known.
    pub fn metastore(&self) -> Option<MetaStoreInfo> {
        self.lock().meta.clone()
    }

    /// The tasks running now, as reported in heartbeats.
    pub fn running(&self) -> Vec<pb::RunningTask> {
        running_wire(&self.lock().dispatcher)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn now(&self) -> Time {
        self.clock.now()
    }

    fn observe(&self, o: ExecutorObservation) {
        if let Some(f) = &self.observer {
            f(self.name(), o);
        }
    }

    /// Serves `ExecutorService` on `addr` and runs the membership loop until `shutdown` resolves; then leaves
    /// gracefully: no new task starts, running tasks get `drain-timeout` to stop at a checkpoint (still
    /// heartbeating and serving their messages meanwhile), every task left is stopped, and the executor
    /// deregisters so that the leader moves its work at once instead of after the offline TTL.
    ///
    /// Safety: the deregistration is sent only once no task of this executor runs (rule 3: the leader starts
    /// new incarnations of what it hosted as soon as it hears it).
    pub async fn serve(
        self: Arc<Executor>,
        addr: std::net::SocketAddr,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        let svc = service::ExecutorSvc { e: self.clone() };
        let server = tonic::transport::Server::builder()
            .add_service(pb::executor_service_server::ExecutorServiceServer::new(svc))
            .add_service(pb::framework_server::FrameworkServer::new(self.host.clone()))
            .serve(addr);
        tokio::pin!(server);
        let run = self.clone().run();
        tokio::pin!(run);
        let ended = tokio::select! {
            biased;
            _ = shutdown => None,
            r = &mut server => Some(r),
            _ = &mut run => Some(Ok(())),
        };
        if let Some(r) = ended {
            self.stop_all(StopWhy::Shutdown);
            return r;
        }
        let r = tokio::select! {
            biased;
            _ = self.drain_tasks() => Ok(()),
            r = &mut server => r,
            _ = &mut run => Ok(()),
        };
        self.stop_all(StopWhy::Shutdown);
        self.deregister().await;
        r
    }

    /// Stops taking tasks, tells the leader (a heartbeat saying so, waited for up to `rpc-timeout`, so that it
    /// places nothing more here before the tasks' replacements are placed), then asks the running tasks to stop
    /// at a checkpoint; returns once none runs or `drain-timeout` passed.
    pub async fn drain_tasks(&self) {
        let running = {
            let mut s = self.lock();
            s.draining = true;
            s.tasks.len()
        };
        info!(executor = %self.name(), running, "draining: no new tasks; running tasks stop at their next checkpoint");
        self.heartbeat_now.notify_one();
        self.await_drain_progress(self.cfg.rpc_timeout, |s| s.drain_announced).await;
        self.drain.raise();
        if self.await_drain_progress(self.cfg.drain_timeout, |s| s.tasks.is_empty()).await {
            info!(executor = %self.name(), "drained: every task stopped");
        } else {
            let left = self.lock().tasks.len();
            warn!(executor = %self.name(), left, "drain timeout: stopping the tasks left where they are");
        }
    }

    /// Waits until `done` holds of the state, looking again at every drain progress, for at most `within`;
    /// whether it holds.
    async fn await_drain_progress(&self, within: Duration, done: impl Fn(&State) -> bool) -> bool {
        let deadline = self.now() + within;
        loop {
            let progress = self.drain_progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            if done(&self.lock()) {
                return true;
            }
            let now = self.now();
            if now >= deadline {
                return false;
            }
            let _ = tokio::time::timeout(deadline.saturating_since(now), progress).await;
        }
    }

    /// Tells the masters this executor leaves (any master: followers forward to the leader). Best effort: when no
    /// master answers, the leader declares it offline after its TTL, as after a crash.
    async fn deregister(&self) {
        let Some(id) = self.lock().id else { return };
        for addr in &self.cfg.join {
            let Some(ch) = connect(addr, self.cfg.rpc_timeout).await else { continue };
            let mut client = DiscoveryClient::new(ch);
            let call = client.deregister_executor(pb::DeregisterExecutorRequest { executor_id: id.0 });
            match tokio::time::timeout(self.cfg.rpc_timeout, call).await {
                Ok(Ok(_)) => {
                    info!(executor = %self.name(), id = id.0, "deregistered");
                    self.lock().id = None;
                    self.observe(ExecutorObservation::Deregistered { id: id.0 });
                    return;
                }
                Ok(Err(status)) => {
                    warn!(executor = %self.name(), id = id.0, master = %addr, "deregistration refused: {}", status.message())
                }
                Err(_) => warn!(executor = %self.name(), id = id.0, master = %addr, "deregistration timed out"),
            }
        }
        warn!(executor = %self.name(), id = id.0, "no master took the deregistration; the leader will find it offline after its TTL");
    }

    /// The membership loop: register, heartbeat, fence (never returns).
    pub async fn run(self: Arc<Executor>) {
        let fence = self.clone().fence_loop();
        let membership = self.membership_loop();
        tokio::select! {
            biased;
            _ = fence => {}
            _ = membership => {}
        }
    }

    /// Fences the executor at its fence deadline.
    async fn fence_loop(self: Arc<Executor>) {
        loop {
            let (deadline, interval) = {
                let s = self.lock();
                // Nothing to fence while unregistered or already fenced: only look again later.
                let armed = s.id.is_some() && !s.fenced;
                (if armed { s.fence.deadline() } else { Time::NEVER }, s.timing.interval)
            };
            // The deadline only moves later, except when the leader announces a shorter self-fence: look again
            // at least every interval.
            let wake = deadline.min(self.now() + interval);
            tokio::time::sleep_until(self.clock.instant(wake)).await;
            let now = self.now();
            let fenced_id = {
                let mut s = self.lock();
                match s.id {
                    Some(id) if !s.fenced && s.fence.is_fenced(now) => {
                        s.fenced = true;
                        Some(id)
                    }
                    _ => None,
                }
            };
            if let Some(id) = fenced_id {
                warn!(executor = %self.name(), id = id.0, "no acknowledged heartbeat for the self-fence time: stopping every task");
                #[allow(clippy::disallowed_methods)] // tokio's clock: simulated in the simulation build
                let at = tokio::time::Instant::now();
                self.stop_all(StopWhy::Fenced);
                self.observe(ExecutorObservation::Fenced { id: id.0, at });
            }
        }
    }

    async fn membership_loop(self: Arc<Executor>) {
        let mut which = 0usize;
        let mut channels: Vec<Option<Channel>> = vec![None; self.cfg.join.len().max(1)];
        loop {
            let round = self.now();
            let (interval, timeout, registered) = {
                let mut s = self.lock();
                let now = self.clock.now();
                s.dispatcher.expire(now);
                (s.timing.interval, s.timing.timeout, s.id)
            };
            let index = which % channels.len();
            let Some(target) = self.cfg.join.get(index).cloned() else {
                tokio::time::sleep_until(self.clock.instant(round + interval)).await;
                continue;
            };
            let rpc_timeout = if registered.is_some() { timeout } else { self.cfg.rpc_timeout };
            let ch = match channels[index].clone() {
                Some(ch) => Some(ch),
                None => connect(&target, rpc_timeout).await,
            };
            let Some(ch) = ch else {
                which += 1;
                tokio::time::sleep_until(self.clock.instant(round + interval)).await;
                continue;
            };
            channels[index] = Some(ch.clone());
            let mut client = DiscoveryClient::new(ch);
            let ok = match registered {
                None => self.register(&mut client, rpc_timeout).await,
                Some(id) => self.heartbeat(&mut client, id, rpc_timeout).await,
            };
            if ok {
                self.learn_metastore(&mut client).await;
            } else {
                channels[index] = None;
                which += 1;
            }
            // Every interval from the start of the round (a slow round is followed at once by the next one).
            let next = self.lock().timing.interval;
            tokio::select! {
                biased;
                _ = self.heartbeat_now.notified() => {}
                _ = tokio::time::sleep_until(self.clock.instant(round + next)) => {}
            }
        }
    }

    /// One registration attempt; whether the master answered usefully.
    async fn register(&self, client: &mut DiscoveryClient<Channel>, deadline: Duration) -> bool {
        let req = pb::RegisterExecutorRequest {
            name: self.cfg.name.clone(),
            address: self.cfg.advertise_addr.clone(),
            capacity: self.cfg.capacity,
            labels: self.cfg.labels.clone().into_iter().collect(),
            instance: self.instance,
        };
        let sent_at = self.now();
        let reply = match tokio::time::timeout(deadline, client.register_executor(req)).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => {
                info!(executor = %self.name(), "registration refused: {}", status.message());
                return false;
            }
            Err(_) => return false,
        };
        let id = {
            let mut s = self.lock();
            let epoch = LeaderEpoch(reply.leader_epoch);
            if epoch < s.fence.epoch() {
                return false;
            }
            if let Some(t) = reply.timing.as_ref().and_then(timing_from_wire) {
                s.timing = t;
            }
            let seen = s.fence.epoch();
            let mut fence = SelfFence::new(sent_at, s.timing.self_fence);
            fence.observe_epoch(seen);
            fence.on_ack(sent_at, epoch);
            s.fence = fence;
            s.fenced = false;
            s.id = Some(ExecutorId(reply.executor_id));
            s.dispatcher.forget_ended();
            reply.executor_id
        };
        info!(executor = %self.name(), id, "registered");
        self.observe(ExecutorObservation::Registered { id });
        true
    }

    /// One heartbeat; whether the master answered usefully.
    async fn heartbeat(&self, client: &mut DiscoveryClient<Channel>, id: ExecutorId, deadline: Duration) -> bool {
        let (req, sent_at, ended_mark) = {
            let s = self.lock();
            let (ended, ended_mark) = s.dispatcher.ended_report();
            let req = pb::HeartbeatRequest {
                executor_id: id.0,
                leader_epoch: s.fence.epoch().0,
                tasks: running_wire(&s.dispatcher),
                draining: s.draining,
                ended: ended
                    .into_iter()
                    .map(|(t, e)| pb::EndedTask { task_id: t.as_str().to_owned(), epoch: e.0 })
                    .collect(),
            };
            (req, self.now(), ended_mark)
        };
        let draining = req.draining;
        let reply = match tokio::time::timeout(deadline, client.heartbeat(req)).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(_)) | Err(_) => return false,
        };
        let epoch = LeaderEpoch(reply.leader_epoch);
        let accepted = reply.verdict == pb::HeartbeatVerdict::Accepted as i32;
        let reregister = reply.verdict == pb::HeartbeatVerdict::Reregister as i32;
        {
            let mut s = self.lock();
            if s.id != Some(id) {
                return true; // registered again meanwhile
            }
            if epoch < s.fence.epoch() {
                return false; // a deposed leader: not an acknowledgement
            }
            if let Some(t) = reply.timing.as_ref().and_then(timing_from_wire) {
                s.timing = t;
                s.fence.set_duration(t.self_fence);
            }
            if accepted {
                // The leader took the ended incarnations this heartbeat carried (a newer leader holds no
                // reservation made before it began, so none of them matters to it).
                if let Some(mark) = ended_mark {
                    s.dispatcher.ended_acked(mark);
                }
                if let Ack::Extended(_) = s.fence.on_ack(sent_at, epoch) {
                    if s.fenced && !s.fence.is_fenced(self.now()) {
                        s.fenced = false;
                    }
                }
                if draining && !s.drain_announced {
                    s.drain_announced = true;
                    self.drain_progress.notify_waiters();
                }
                drop(s);
                let (sent, leader_epoch) = (self.clock.instant(sent_at), epoch.0);
                self.observe(ExecutorObservation::HeartbeatAcked { id: id.0, sent, leader_epoch });
                return true;
            }
            if !reregister {
                return false;
            }
            s.fence.observe_epoch(epoch);
            s.id = None;
        }
        info!(executor = %self.name(), id = id.0, "declared offline: stopping every task and registering again");
        self.stop_all(StopWhy::Reregister);
        self.observe(ExecutorObservation::Reregister { id: id.0 });
        true
    }

    async fn learn_metastore(&self, client: &mut DiscoveryClient<Channel>) {
        let known = {
            let s = self.lock();
            s.meta.is_some() || s.id.is_none()
        };
        if known {
            return;
        }
        let call = client.query_meta_store(pb::QueryMetaStoreRequest {});
        let Ok(Ok(r)) = tokio::time::timeout(self.cfg.rpc_timeout, call).await else { return };
        let r = r.into_inner();
        let kind = pb::StoreKind::try_from(r.kind).unwrap_or(pb::StoreKind::Unspecified);
        let info = MetaStoreInfo { kind, endpoints: r.endpoints, key_prefix: r.key_prefix };
        if kind == pb::StoreKind::Etcd && self.meta.get().is_none() {
            let Some(cluster) = MetaStore::cluster_of_prefix(&info.key_prefix) else {
                warn!(executor = %self.name(), prefix = %info.key_prefix, "the masters named a key prefix foreman does not use");
                return;
            };
            match MetaStore::etcd(&info.endpoints, &cluster, self.cfg.rpc_timeout).await {
                Ok(store) => {
                    self.meta.set(store);
                }
                Err(e) => {
                    warn!(executor = %self.name(), "cannot use the metastore the masters named: {e}");
                    return;
                }
            }
        }
        info!(executor = %self.name(), endpoints = %info.endpoints.join(","), "learned the metastore");
        self.lock().meta = Some(info);
    }

    /// Stops every task and drops every parked request.
    fn stop_all(&self, why: StopWhy) {
        let stopped: Vec<(TaskId, Epoch)> = {
            let mut s = self.lock();
            s.dispatcher.clear();
            let tasks = std::mem::take(&mut s.tasks);
            tasks
                .into_iter()
                .map(|(t, h)| {
                    let _ = h.stop.send(true);
                    (t, h.epoch)
                })
                .collect()
        };
        for (task, epoch) in stopped {
            info!(executor = %self.name(), task = %task.as_str(), epoch = epoch.0, why = %why, "task stopped");
            self.observe(ExecutorObservation::TaskStopped {
                task: task.as_str().to_owned(),
                epoch: epoch.0,
                why: why.clone(),
            });
        }
    }

    /// Starts a confirmed task (already in the dispatcher's running set); whether it started. It does not start
    /// when the executor fenced itself or left the cluster since the confirmation was taken.
    pub(crate) fn start_task(self: &Arc<Executor>, spec: TaskSpec) -> bool {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = spec.task_id.clone();
        let epoch = spec.epoch;
        let mut stop = StopSignal { rx: rx.clone() };
        // Futures are lazy: building it runs none of the task's work.
        let fut = self.factory.start(self.task_env(), spec, StopSignal { rx });
        {
            let mut s = self.lock();
            let still_ours = s.id.is_some()
                && !s.fenced
                && !s.draining
                && s.dispatcher.running().get(&task).is_some_and(|r| r.epoch == epoch);
            if !still_ours {
                s.dispatcher.stopped(&task, epoch);
                return false;
            }
            s.tasks.insert(task.clone(), TaskHandle { epoch, stop: tx });
        }
        info!(executor = %self.name(), task = %task.as_str(), epoch = epoch.0, "task started");
        self.observe(ExecutorObservation::TaskStarted { task: task.as_str().to_owned(), epoch: epoch.0 });
        let e = self.clone();
        tokio::spawn(async move {
            let exit = tokio::select! {
                biased;
                _ = stop.stopped() => None,
                exit = fut => Some(exit),
            };
            // Stopped by the executor: stop_all already removed and reported it.
            let Some(exit) = exit else { return };
            let ours = {
                let mut s = e.lock();
                let ours = s.tasks.get(&task).is_some_and(|h| h.epoch == epoch);
                if ours {
                    s.tasks.remove(&task);
                    s.dispatcher.stopped(&task, epoch);
                }
                ours
            };
            if ours {
                e.drain_progress.notify_waiters();
                let why = StopWhy::Exited(exit);
                info!(executor = %e.name(), task = %task.as_str(), epoch = epoch.0, why = %why, "task stopped");
                e.observe(ExecutorObservation::TaskStopped { task: task.as_str().to_owned(), epoch: epoch.0, why });
            }
        });
        true
    }
}

fn running_wire(d: &Dispatcher) -> Vec<pb::RunningTask> {
    d.running()
        .iter()
        .map(|(t, r)| pb::RunningTask {
            task_id: t.as_str().to_owned(),
            kind: kind_to_wire(r.kind) as i32,
            epoch: r.epoch.0,
            cost: r.cost,
        })
        .collect()
}

fn kind_to_wire(k: TaskKind) -> pb::TaskKind {
    match k {
        TaskKind::JobMaster => pb::TaskKind::JobMaster,
        TaskKind::Worker => pb::TaskKind::Worker,
    }
}

/// The leader's announced executor timing, if it is valid (an invalid announcement is ignored: the previous
/// timing stays).
pub(crate) fn timing_from_wire(t: &pb::HeartbeatTiming) -> Option<HeartbeatTiming> {
    let t = crate::rpc::timing_from_wire(t);
    t.validate("executors").ok().map(|()| t)
}

/// A dispatched task's timing, validated by the core's rules (the message names the broken rule).
pub(crate) fn timing_from_wire_workers(t: &pb::HeartbeatTiming) -> Result<HeartbeatTiming, String> {
    let t = crate::rpc::timing_from_wire(t);
    t.validate("workers").map(|()| t).map_err(|e| e.to_string())
}

async fn connect(addr: &str, timeout: Duration) -> Option<Channel> {
    Endpoint::from_shared(format!("http://{addr}")).ok()?.timeout(timeout).connect_timeout(timeout).connect().await.ok()
}
