//! The executor process (design.md §2): registers with the masters given by `--join`, heartbeats the leader with
//! the timing the leader announces, fences itself when its heartbeats go unacknowledged for the self-fence time,
//! runs the tasks the masters dispatch to it (two-phase dispatch), and drains when it shuts down.
//!
//! Layering: every decision is the core's executor agent ([`Agent`]: registration, heartbeat replies, the
//! self-fence, dispatch admission and the [`Dispatcher`], the drain); this module is its driver and moves bytes
//! and timers. The agent, the tasks' stop handles and the metastore address sit in one [`State`] behind a mutex
//! that is never held across an `.await`. Each input (a tick, a call's answer, a dispatch, a task's exit, the
//! drain) is one step under that lock (in debug and simulation builds it ends by asserting the agent's
//! invariants), and what the agent returns is executed in this order:
//! 1. under the same lock, every [`Action::StopAll`] signals the stop of every task and drops its handle, so no
//!    task starts or runs on between a decision and its execution;
//! 2. after the lock, each action in the agent's order: its log lines and observations (a stop's `task stopped`
//!    lines come between the stop's reason and its observation), the drain signal for
//!    [`Action::AskTasksToStop`], the end of the drain for [`Action::Drained`];
//! 3. the membership loop ([`Executor::run`]) opens the round an [`Action::Round`] asks for, and sleeps until the
//!    agent's next instant, woken earlier by a round's end or by any step that moved that instant earlier.
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

pub use crate::core::dispatcher::{Dispatcher, Refusal};
pub use crate::framework::task::{
    DrainSignal, ExecutorObservation, ExecutorObserver, MetaSlot, StopSignal, StopWhy, TaskEnv, TaskExit, TaskFactory,
    TaskFuture, TaskKind, TaskSpec,
};

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tonic::transport::Channel;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::config::ExecutorConfig;
use crate::core::agent::{
    Action, Agent, AgentConfig, Drain, Heard, HeartbeatCall, HeartbeatReply, Outgoing, Ready, RegisterReply, Stop,
    Verdict,
};
use crate::core::ids::{Epoch, ExecutorId, LeaderEpoch, TaskId};
use crate::core::registry::ReportedTask;
use crate::core::time::Time;
use crate::core::timing::HeartbeatTiming;
use crate::framework::host::Host;
use crate::meta::MetaStore;
use crate::planted::Plants;
use crate::rpc::pb;
use crate::rpc::pb::discovery_client::DiscoveryClient;

struct TaskHandle {
    epoch: Epoch,
    stop: tokio::sync::watch::Sender<bool>,
    /// Run as the executor stops it, before the stop is recorded: its processes' kills.
    hooks: crate::framework::task::StopHooks,
}

pub(crate) struct State {
    pub(crate) agent: Agent,
    /// The stop handles of the tasks started; the agent's running set, less the tasks confirmed and not yet begun.
    tasks: BTreeMap<TaskId, TaskHandle>,
    meta: Option<MetaStoreInfo>,
}

/// What a step decided, less what was executed under the lock: each action with the tasks its stop stopped.
#[must_use = "a step's actions must be executed"]
pub(crate) struct Decided(Vec<(Action, Vec<(TaskId, Epoch)>)>);

/// The membership loop's connections: one channel per master of `--join`, and the master talked to next; or the
/// leader's own address, once a reply has named it (`core::leader_route`), and a channel to it.
struct Masters {
    channels: Vec<Option<Channel>>,
    which: usize,
    route: crate::core::leader_route::LeaderRoute,
    leader: Option<(String, Channel)>,
}

impl Masters {
    /// The master called did not answer usefully: after a direct call, back to the masters joined through (the
    /// one that forwarded before); else the next of them, on a new connection.
    fn pass_over(&mut self, direct: bool) {
        if direct {
            self.route.missed();
            self.leader = None;
        } else {
            let index = self.which % self.channels.len();
            self.channels[index] = None;
            self.which += 1;
        }
    }

    fn new(join: usize) -> Masters {
        Masters { channels: vec![None; join.max(1)], which: 0, route: Default::default(), leader: None }
    }
}

/// A membership round in progress; it hands the connections back when it is over.
type RoundFuture = Pin<Box<dyn Future<Output = Masters> + Send>>;

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
    planted: Plants,
    /// Drawn when the process starts; sent with every registration (see `RegisterExecutorRequest.instance`).
    instance: u64,
    /// The simulation's fault points, handed to the tasks (`crate::buggify`).
    fault_points: crate::buggify::FaultPoints,
    /// Where the metastore client counts its requests (its own count unless told).
    meta_requests: crate::meta::Requests,
    /// Raised once when the executor starts draining; every task watches it (`TaskEnv::draining`).
    drain: Arc<DrainSignal>,
    /// Wakes the membership loop: a step moved the agent's next instant earlier than the loop may sleep.
    wake: tokio::sync::Notify,
    /// Notified when the drain is over.
    drained: tokio::sync::Notify,
    /// What its tasks' processes printed (`framework::logs`), read by the masters for `foreman job logs`.
    logs: crate::framework::logs::LogStore,
    /// Its job masters' heartbeats, carried in its own when the leader asks for it.
    carrier: crate::framework::carrier::Carrier,
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
        Executor::with_clock(cfg, factory, observer, Clock::start())
    }

    /// An executor as [`Executor::new`] makes, judging every deadline of its own (its self-fence, its heartbeat
    /// timing, and its job masters' worker TTLs) by `clock` (the simulation hands it one on the node's dial).
    pub fn with_clock(
        cfg: ExecutorConfig,
        factory: Arc<dyn TaskFactory>,
        observer: Option<ExecutorObserver>,
        clock: Clock,
    ) -> Arc<Executor> {
        let agent = Agent::new(
            AgentConfig {
                name: cfg.name.clone(),
                capacity: cfg.capacity,
                dispatch_ttl: cfg.dispatch_ttl,
                task_queue: cfg.task_queue as usize,
                rpc_timeout: cfg.rpc_timeout,
                drain_timeout: cfg.drain_timeout,
                timing: HeartbeatTiming::executor_default(),
                collect_every: cfg.collect_interval,
            },
            clock.now(),
        );
        // The production command checks the directory before it gets here (`cmd::run_with`); a test's executor
        // whose directory is refused keeps its logs in memory.
        let logs = crate::framework::logs::LogStore::for_executor(&cfg.dir()).unwrap_or_else(|e| {
            tracing::warn!(executor = %cfg.name, "logs kept in memory: {e}");
            crate::framework::logs::LogStore::memory()
        });
        Arc::new(Executor {
            logs,
            carrier: Default::default(),
            host: Host::new(clock.clone())
                .observed_by(observer.clone().map(|o| crate::framework::task::worker_heard(o, &cfg.name))),
            meta: Arc::default(),
            drain: Arc::default(),
            wake: tokio::sync::Notify::new(),
            drained: tokio::sync::Notify::new(),
            planted: Plants::NONE,
            instance: process_instance(&cfg.name),
            fault_points: Default::default(),
            meta_requests: Default::default(),
            state: Mutex::new(State { agent, tasks: BTreeMap::new(), meta: None }),
            cfg,
            clock,
            factory,
            observer,
        })
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Who this executor's own calls come from.
    pub fn identity(&self) -> crate::rpc::identity::Identity {
        crate::rpc::identity::Identity::executor(self.name())
    }

    /// The bugs planted in this executor and its tasks, and whether its tripwires are armed (simulation only).
    pub fn plants(&self) -> Plants {
        self.planted
    }

    /// The same executor with `bug` planted into its tasks (simulation build only).
    /// Call it on a fresh executor.
    #[cfg(madsim)]
    pub fn with_planted(self: Arc<Executor>, bugs: impl Into<Plants>) -> Arc<Executor> {
        let bug: Plants = bugs.into();
        match Arc::try_unwrap(self) {
            Ok(mut e) => {
                e.planted = bug;
                e.lock().agent.plant(bug);
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
                e.host = e.host.with_fault_points(switch.clone());
                e.fault_points = switch;
                Arc::new(e)
            }
            Err(e) => e,
        }
    }

    /// The same executor counting its metastore requests into `requests` (the simulation counts every life of every
    /// executor together). Call it on a fresh executor.
    pub fn counting_metastore_into(self: Arc<Executor>, requests: &crate::meta::Requests) -> Arc<Executor> {
        match Arc::try_unwrap(self) {
            Ok(mut e) => {
                e.meta_requests = requests.clone();
                Arc::new(e)
            }
            Err(e) => e,
        }
    }

    /// The same executor keeping its tasks' logs in `logs` (the simulation hands each node's executor the store of
    /// its node, which outlives a restart as a disk does). Call it on a fresh executor.
    pub fn with_logs(self: Arc<Executor>, logs: crate::framework::logs::LogStore) -> Arc<Executor> {
        match Arc::try_unwrap(self) {
            Ok(mut e) => {
                e.logs = logs;
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
            clock: self.clock.clone(),
            meta: self.meta.clone(),
            observer: self.observer.clone(),
            planted: self.planted,
            fault_points: self.fault_points.clone(),
            drain: self.drain.clone(),
            confirmed: self.clock.now(),
            stop_hooks: crate::framework::task::StopHooks::default(),
            logs: self.logs.clone(),
            dir: self.cfg.dir(),
            carrier: self.carrier.clone(),
        }
    }

    /// What its tasks' processes printed.
    pub fn logs(&self) -> &crate::framework::logs::LogStore {
        &self.logs
    }

    /// The jobs this executor keeps data of: its commands' logs and scratch directories, sorted.
    fn held_jobs(&self) -> Vec<String> {
        let mut jobs = self.logs.jobs();
        jobs.extend(crate::framework::process::scratch_jobs(&self.cfg.dir()));
        jobs.sort();
        jobs.dedup();
        jobs
    }

    /// Removes what this executor keeps of `job`, which no longer exists.
    fn collect(&self, job: &str) {
        self.logs.remove_job(job);
        if let Err(e) = crate::framework::process::remove_scratch(&self.cfg.dir(), job) {
            warn!(executor = %self.name(), job, "the scratch directories of a deleted job stay: {e}");
        }
        info!(executor = %self.name(), job, "removed the logs and scratch directories of a deleted job");
        self.observe(ExecutorObservation::JobDataRemoved { job: job.to_owned() });
    }

    pub fn config(&self) -> &ExecutorConfig {
        &self.cfg
    }

    /// The id while registered.
    pub fn id(&self) -> Option<ExecutorId> {
        self.lock().agent.id()
    }

    /// The highest leader epoch seen in a reply.
    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.lock().agent.leader_epoch()
    }

    /// The metastore the masters named, once known.
    pub fn metastore(&self) -> Option<MetaStoreInfo> {
        self.lock().meta.clone()
    }

    /// The tasks running now, as reported in heartbeats.
    pub fn running(&self) -> Vec<pb::RunningTask> {
        self.lock().agent.running().iter().map(running_to_wire).collect()
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

    /// One step of the agent: `input` gets the state and the time, both read under the lock, and returns its
    /// answer and the agent's [`Ready`]. Every stop it decides is executed under the same lock (step 1 of the
    /// module's order); the rest is returned for [`Executor::execute`].
    pub(crate) fn step<R>(&self, input: impl FnOnce(&mut State, Time) -> (R, Ready)) -> (R, Decided) {
        let mut s = self.lock();
        let now = self.now();
        let before = s.agent.wake();
        let (answer, ready) = input(&mut s, now);
        // The agent's invariants after every step, in debug and simulation builds.
        if cfg!(debug_assertions) {
            if let Err(e) = s.agent.check_invariants(now) {
                use crate::core::invariants::{stop, Id, Rule, Violation};
                let detail = format!("the agent of executor {}: {e}", self.name());
                stop(Violation::new(Rule::MachineInvariant, now, detail).with([Id::Node(self.name().to_owned())]));
            }
        }
        let mut decided = Vec::with_capacity(ready.actions.len());
        for action in ready.actions {
            let stopped = match action {
                Action::StopAll { .. } => std::mem::take(&mut s.tasks)
                    .into_iter()
                    .map(|(task, h)| {
                        let _ = h.stop.send(true);
                        h.hooks.run();
                        (task, h.epoch)
                    })
                    .collect(),
                _ => vec![],
            };
            decided.push((action, stopped));
        }
        if ready.wake < before {
            self.wake.notify_one();
        }
        (answer, Decided(decided))
    }

    /// A step whose actions are executed at once.
    pub(crate) fn decide<R>(&self, input: impl FnOnce(&mut State, Time) -> (R, Ready)) -> R {
        let (answer, decided) = self.step(input);
        self.execute(decided);
        answer
    }

    /// Executes what a step decided, after its lock, in the agent's order (step 2 of the module's order).
    /// [`Action::Round`] is the membership loop's, which looks for it in the tick's [`Ready`].
    pub(crate) fn execute(&self, decided: Decided) {
        for (action, stopped) in decided.0 {
            match action {
                Action::Round { .. } => {}
                Action::Registered { id, leader_epoch, sent } => {
                    info!(executor = %self.name(), id = id.0, "registered");
                    let sent = self.clock.instant(sent);
                    self.observe(ExecutorObservation::Registered { id, leader_epoch, sent });
                }
                Action::HeartbeatAcked { id, sent, leader_epoch } => {
                    let sent = self.clock.instant(sent);
                    self.observe(ExecutorObservation::HeartbeatAcked { id, sent, leader_epoch });
                }
                Action::StopAll { why } => {
                    #[allow(clippy::disallowed_methods)] // tokio's clock: simulated in the simulation build
                    let at = tokio::time::Instant::now();
                    let stop_why = match why {
                        Stop::Fenced { id } => {
                            warn!(executor = %self.name(), id = id.0, "no acknowledged heartbeat for the self-fence time: stopping every task");
                            StopWhy::Fenced
                        }
                        Stop::DeclaredOffline { id } => {
                            info!(executor = %self.name(), id = id.0, "declared offline: stopping every task and registering again");
                            StopWhy::Reregister
                        }
                        Stop::Shutdown => StopWhy::Shutdown,
                    };
                    for (task, epoch) in stopped {
                        info!(executor = %self.name(), task = %task.as_str(), epoch = epoch.0, why = %stop_why, "task stopped");
                        self.observe(ExecutorObservation::TaskStopped { task, epoch, why: stop_why.clone() });
                    }
                    match why {
                        Stop::Fenced { id } => self.observe(ExecutorObservation::Fenced { id, at }),
                        Stop::DeclaredOffline { id } => self.observe(ExecutorObservation::Reregister { id }),
                        Stop::Shutdown => {}
                    }
                }
                Action::AskTasksToStop => self.drain.raise(),
                Action::ListHeld => {
                    let held = self.held_jobs();
                    self.decide(|s, now| ((), s.agent.listed(now, held)));
                }
                Action::Collect { jobs } => {
                    for job in jobs {
                        self.collect(&job);
                    }
                }
                Action::Drained { left } => {
                    if left == 0 {
                        info!(executor = %self.name(), "drained: every task stopped");
                    } else {
                        warn!(executor = %self.name(), left, "drain timeout: stopping the tasks left where they are");
                    }
                    self.drained.notify_waiters();
                }
            }
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
        let server = crate::rpc::tls::server_builder()?
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
            self.decide(|s, now| ((), s.agent.stop(now)));
            return r;
        }
        let r = tokio::select! {
            biased;
            _ = self.drain_tasks() => Ok(()),
            r = &mut server => r,
            _ = &mut run => Ok(()),
        };
        self.decide(|s, now| ((), s.agent.stop(now)));
        self.deregister().await;
        r
    }

    /// Stops taking tasks, tells the leader (a heartbeat saying so, waited for up to `rpc-timeout`, so that it
    /// places nothing more here before the tasks' replacements are placed), then asks the running tasks to stop
    /// at a checkpoint; returns once none runs or `drain-timeout` passed. The membership loop must be running.
    pub async fn drain_tasks(&self) {
        let running = self.lock().tasks.len();
        info!(executor = %self.name(), running, "draining: no new tasks; running tasks stop at their next checkpoint");
        self.decide(|s, now| ((), s.agent.drain(now)));
        loop {
            let over = self.drained.notified();
            tokio::pin!(over);
            over.as_mut().enable();
            if self.lock().agent.drain_state() == Drain::Over {
                return;
            }
            over.await;
        }
    }

    /// Tells the masters this executor leaves (any master: followers forward to the leader). Best effort: when no
    /// master answers, the leader declares it offline after its TTL, as after a crash.
    async fn deregister(&self) {
        let Some(id) = self.lock().agent.id() else { return };
        for addr in &self.cfg.join {
            let Some(ch) = connect(addr, self.cfg.rpc_timeout).await else { continue };
            let mut client = DiscoveryClient::new(ch);
            let call = client
                .deregister_executor(self.identity().request(pb::DeregisterExecutorRequest { executor_id: id.0 }));
            match tokio::time::timeout(self.cfg.rpc_timeout, call).await {
                Ok(Ok(_)) => {
                    info!(executor = %self.name(), id = id.0, "deregistered");
                    self.lock().agent.on_deregistered(id);
                    self.observe(ExecutorObservation::Deregistered { id });
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

    /// The membership loop (never returns): ticks the agent at its next instant, opens the rounds it asks for
    /// (one at a time), and sleeps until the next instant, a round's end, or a wake-up from another step.
    pub async fn run(self: Arc<Executor>) {
        let mut masters = Some(Masters::new(self.cfg.join.len()));
        let mut round: Option<RoundFuture> = None;
        loop {
            let (open, wake) = self.decide(|s, now| {
                let ready = s.agent.tick(now);
                let open = ready.actions.iter().find_map(|a| match a {
                    Action::Round { timeout } => Some(*timeout),
                    _ => None,
                });
                ((open, ready.wake), ready)
            });
            if let Some(timeout) = open {
                // The agent opens a round only once the previous one ended, which handed the connections back.
                if let Some(m) = masters.take() {
                    round = Some(Box::pin(self.clone().round(m, timeout)));
                }
            }
            let ended = tokio::select! {
                biased;
                _ = self.sleep_until(wake) => None,
                _ = self.wake.notified() => None,
                m = in_round(&mut round) => Some(m),
            };
            if let Some(m) = ended {
                masters = Some(m);
                round = None;
            }
        }
    }

    /// Sleeps until core time `t` (for ever if it is [`Time::NEVER`]).
    async fn sleep_until(&self, t: Time) {
        self.clock.sleep_until(t).await;
    }

    /// One membership round: the call the agent hands out, sent to the current master (the next one after a
    /// useless answer), then the metastore's address if it is not known yet.
    async fn round(self: Arc<Executor>, mut masters: Masters, timeout: Duration) -> Masters {
        self.call(&mut masters, timeout).await;
        self.decide(|s, now| ((), s.agent.end_round(now)));
        masters
    }

    async fn call(&self, masters: &mut Masters, timeout: Duration) {
        let index = masters.which % masters.channels.len();
        // The leader itself when a reply named it, else the next master joined through.
        let (target, kept) = match masters.route.direct() {
            Some(leader) => {
                let kept = masters.leader.as_ref().filter(|(a, _)| a == leader).map(|(_, c)| c.clone());
                (leader.to_owned(), kept)
            }
            None => {
                let Some(target) = self.cfg.join.get(index) else { return };
                (target.clone(), masters.channels[index].clone())
            }
        };
        let direct = masters.route.direct().is_some();
        let ch = match kept {
            Some(ch) => Some(ch),
            None => connect(&target, timeout).await,
        };
        let Some(ch) = ch else {
            self.missed_leader(direct, &target);
            masters.pass_over(direct);
            return;
        };
        if direct {
            masters.leader = Some((target.clone(), ch.clone()));
        } else {
            masters.channels[index] = Some(ch.clone());
        }
        let mut client = DiscoveryClient::new(ch);
        let outgoing = {
            let mut s = self.lock();
            let now = self.now();
            s.agent.outgoing(now)
        };
        let heard = match outgoing {
            Outgoing::Register => self.register(&mut client, timeout).await,
            Outgoing::Heartbeat(call) => {
                let (heard, leader) = self.heartbeat(&mut client, call, timeout).await;
                if let (Heard::Useful, Some((address, epoch))) = (heard, leader) {
                    masters.route.answered(&target, &address, epoch);
                }
                heard
            }
        };
        match heard {
            Heard::Useful => self.learn_metastore(&mut client).await,
            Heard::Useless => {
                self.missed_leader(direct, &target);
                masters.pass_over(direct);
            }
        }
    }

    /// Says so when a call straight to the leader missed: the executor heartbeats through its joined masters for the
    /// rest of that term (a leader that died, or an advertised address this executor cannot reach).
    fn missed_leader(&self, direct: bool, address: &str) {
        if direct {
            info!(executor = %self.name(), leader = %address, "the leader's address did not answer; heartbeating through the joined masters until the next term");
        }
    }

    async fn register(&self, client: &mut DiscoveryClient<Channel>, deadline: Duration) -> Heard {
        let req = pb::RegisterExecutorRequest {
            name: self.cfg.name.clone(),
            address: self.cfg.advertise_addr.clone(),
            capacity: self.cfg.capacity,
            labels: self.cfg.labels.clone().into_iter().collect(),
            instance: self.instance,
        };
        match tokio::time::timeout(deadline, client.register_executor(self.identity().request(req))).await {
            Ok(Ok(r)) => {
                let r = r.into_inner();
                self.carrier.set_on(r.carry_job_masters);
                let reply = RegisterReply {
                    id: ExecutorId(r.executor_id),
                    leader_epoch: LeaderEpoch(r.leader_epoch),
                    timing: r.timing.as_ref().map(crate::rpc::timing_from_wire),
                };
                self.decide(|s, now| s.agent.on_register_reply(now, reply))
            }
            Ok(Err(status)) => {
                info!(executor = %self.name(), "registration refused: {}", status.message());
                self.decide(|s, now| (Heard::Useless, s.agent.on_call_failed(now)))
            }
            Err(_) => self.decide(|s, now| (Heard::Useless, s.agent.on_call_failed(now))),
        }
    }

    /// One heartbeat: how useful its answer was, and where the answer says the leader is (its address and term).
    async fn heartbeat(
        &self,
        client: &mut DiscoveryClient<Channel>,
        call: HeartbeatCall,
        deadline: Duration,
    ) -> (Heard, Option<(String, LeaderEpoch)>) {
        // Taken before the stall point below: the carried job masters' fences count from no later than the send.
        let (job_masters, taken) = self.carrier.take();
        let sent = self.now();
        let req = pb::HeartbeatRequest {
            job_masters,
            executor_id: call.id.0,
            leader_epoch: call.leader_epoch.0,
            tasks: call.tasks.iter().map(running_to_wire).collect(),
            draining: call.draining,
            fenced: call.fenced,
            held_jobs: call.held,
            ended: call
                .ended
                .into_iter()
                .map(|e| pb::EndedTask { task_id: e.task.as_str().to_owned(), epoch: e.epoch.0 })
                .collect(),
        };
        // Built, not yet sent: a stall here makes the heartbeat arrive stale.
        crate::buggify::point(&self.fault_points, crate::buggify::Point::HeartbeatSend).await;
        match tokio::time::timeout(deadline, client.heartbeat(self.identity().request(req))).await {
            Ok(Ok(r)) => {
                let r = r.into_inner();
                self.carrier.set_on(r.carry_job_masters);
                taken.answer(sent, r.job_masters);
                let verdict = match pb::HeartbeatVerdict::try_from(r.verdict) {
                    Ok(pb::HeartbeatVerdict::Accepted) => Verdict::Accepted,
                    Ok(pb::HeartbeatVerdict::Reregister) => Verdict::Reregister,
                    _ => Verdict::Unknown,
                };
                let leader = (r.leader_address, LeaderEpoch(r.leader_epoch));
                let reply = HeartbeatReply {
                    verdict,
                    leader_epoch: LeaderEpoch(r.leader_epoch),
                    timing: r.timing.as_ref().map(crate::rpc::timing_from_wire),
                    gone: r.gone_jobs,
                };
                (self.decide(|s, now| s.agent.on_heartbeat_reply(now, reply)), Some(leader))
            }
            Ok(Err(_)) | Err(_) => (self.decide(|s, now| (Heard::Useless, s.agent.on_call_failed(now))), None),
        }
    }

    async fn learn_metastore(&self, client: &mut DiscoveryClient<Channel>) {
        let known = {
            let s = self.lock();
            s.meta.is_some() || s.agent.id().is_none()
        };
        if known {
            return;
        }
        let call = client.query_meta_store(self.identity().request(pb::QueryMetaStoreRequest {}));
        let Ok(Ok(r)) = tokio::time::timeout(self.cfg.rpc_timeout, call).await else { return };
        let r = r.into_inner();
        let kind = pb::StoreKind::try_from(r.kind).unwrap_or(pb::StoreKind::Unspecified);
        let info = MetaStoreInfo { kind, endpoints: r.endpoints, key_prefix: r.key_prefix };
        if kind == pb::StoreKind::Etcd && self.meta.get().is_none() {
            let Some(cluster) = MetaStore::cluster_of_prefix(&info.key_prefix) else {
                warn!(executor = %self.name(), prefix = %info.key_prefix, "the masters named a key prefix foreman does not use");
                return;
            };
            // The masters name the endpoints only; the credentials are this executor's own (`[etcd-client]`,
            // checked at start).
            let access = match crate::meta::access::EtcdAccess::load(&etcd_files(&self.cfg.etcd_client)) {
                Ok(access) => access,
                Err(e) => {
                    warn!(executor = %self.name(), "cannot use the metastore the masters named: {e}");
                    return;
                }
            };
            match MetaStore::etcd_with(&info.endpoints, &cluster, self.cfg.rpc_timeout, &access).await {
                Ok(store) => {
                    if let Err(hint) = probe_access(&store, &access, &info.endpoints).await {
                        warn!(executor = %self.name(), "cannot use the metastore the masters named: {hint}");
                        return;
                    }
                    // The simulation's metastore faults of this node (none in production).
                    self.meta.set(store.with_latency(self.fault_points.latency()).counting_into(&self.meta_requests));
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

    /// A dispatch's confirmation arrived and is about to be judged: the simulation may hold it here.
    pub(crate) async fn before_confirm(&self) {
        crate::buggify::point(&self.fault_points, crate::buggify::Point::ConfirmReceived).await;
    }

    /// A dispatch was accepted and its task is about to start: the simulation may hold it here.
    pub(crate) async fn before_start(&self) {
        crate::buggify::point(&self.fault_points, crate::buggify::Point::DispatchAccept).await;
    }

    /// Starts a confirmed task (already in the agent's running set), unless the executor stopped serving since
    /// the confirmation was taken, or the task's self-fence time has passed since: then the refusal says why.
    pub(crate) fn start_task(self: &Arc<Executor>, spec: TaskSpec) -> Result<(), Refusal> {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let (task, epoch, placed, leader_epoch) = (spec.task_id.clone(), spec.epoch, spec.executor, spec.leader_epoch);
        let mut stop = StopSignal { rx: rx.clone() };
        let mut env = self.task_env();
        // The task's self-fence counts from its confirmation.
        if let Some(confirmed) = self.lock().agent.confirmed(&task, epoch) {
            env.confirmed = confirmed;
        }
        let hooks = env.stop_hooks.clone();
        // Futures are lazy: building it runs none of the task's work.
        let fut = self.factory.start(env, spec, StopSignal { rx });
        self.decide(|s, now| {
            let (begun, ready) = s.agent.begin_task(now, &task, epoch, placed);
            if begun.is_ok() {
                s.tasks.insert(task.clone(), TaskHandle { epoch, stop: tx, hooks });
            }
            (begun, ready)
        })?;
        info!(executor = %self.name(), task = %task.as_str(), epoch = epoch.0, "task started");
        self.observe(ExecutorObservation::TaskStarted { task: task.clone(), epoch, leader_epoch });
        let e = self.clone();
        tokio::spawn(async move {
            // A panic that escaped the task's own runtime fails the task here: it must not stay listed as running.
            let exit = tokio::select! {
                biased;
                _ = stop.stopped() => None,
                exit = crate::framework::panic::catch_panic(fut) => Some(exit),
            };
            // Stopped by the executor: the stop already reported it.
            let Some(exit) = exit else { return };
            let exit = exit.unwrap_or_else(|message| {
                warn!(executor = %e.name(), task = %task.as_str(), epoch = epoch.0, "task panicked: {message}");
                e.observe(ExecutorObservation::TaskPanicked { task: task.clone(), epoch, message: message.clone() });
                TaskExit::Failed(format!("panicked: {message}"))
            });
            let (ours, decided) = e.step(|s, now| {
                let (ours, ready) = s.agent.on_task_exit(now, &task, epoch);
                if ours {
                    let handle = s.tasks.remove(&task);
                    debug_assert!(
                        handle.is_some_and(|h| h.epoch == epoch),
                        "task {task} epoch {epoch} ran in the agent without its handle"
                    );
                }
                (ours, ready)
            });
            if ours {
                let why = StopWhy::Exited(exit);
                info!(executor = %e.name(), task = %task.as_str(), epoch = epoch.0, why = %why, "task stopped");
                e.observe(ExecutorObservation::TaskStopped { task: task.clone(), epoch, why });
            }
            e.execute(decided);
        });
        Ok(())
    }
}

/// The round in progress, if any (pending for ever if none).
async fn in_round(round: &mut Option<RoundFuture>) -> Masters {
    match round {
        Some(r) => r.await,
        None => std::future::pending().await,
    }
}

fn running_to_wire(t: &ReportedTask) -> pb::RunningTask {
    pb::RunningTask {
        task_id: t.task.as_str().to_owned(),
        kind: kind_to_wire(t.kind) as i32,
        epoch: t.epoch.0,
        cost: t.cost,
    }
}

fn kind_to_wire(k: TaskKind) -> pb::TaskKind {
    match k {
        TaskKind::JobMaster => pb::TaskKind::JobMaster,
        TaskKind::Worker => pb::TaskKind::Worker,
    }
}

/// A dispatched task's timing, validated by the core's rules (the message names the broken rule).
pub(crate) fn timing_from_wire_workers(t: &pb::HeartbeatTiming) -> Result<HeartbeatTiming, String> {
    let t = crate::rpc::timing_from_wire(t);
    t.validate("workers").map(|()| t).map_err(|e| e.to_string())
}

async fn connect(addr: &str, timeout: Duration) -> Option<Channel> {
    crate::rpc::connect::connect(addr, timeout).await.ok()
}

/// The files and user of `[etcd-client]`, as `meta::access` reads them.
pub(crate) fn etcd_files(c: &crate::config::EtcdClientConfig) -> crate::meta::access::EtcdFiles<'_> {
    crate::meta::access::EtcdFiles {
        ca: c.ca.as_deref(),
        cert: c.cert.as_deref(),
        key: c.key.as_deref(),
        user: c.user.as_deref(),
        password_file: c.password_file.as_deref(),
    }
}

/// With TLS or a user, one read before the store is used: a refusal about TLS or credentials is reported with what
/// to check (and the store left unused, to be tried again at the next heartbeat); an etcd down or slow is not.
async fn probe_access(
    store: &MetaStore,
    access: &crate::meta::access::EtcdAccess,
    endpoints: &[String],
) -> Result<(), String> {
    if !access.has_tls() && access.user().is_none() {
        return Ok(());
    }
    let tls = crate::config::etcd_scheme(endpoints).is_ok_and(|s| s == crate::config::EtcdScheme::Tls);
    match store.probe().await {
        Err(e) => {
            match crate::meta::access::access_hint(&e.to_string(), tls).or_else(|| access.closed_hint(&e.to_string())) {
                Some(hint) => Err(format!("{e} ({hint})")),
                None => Ok(()),
            }
        }
        Ok(()) => Ok(()),
    }
}

/// Where the metastore is, as the masters said (`QueryMetaStore`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaStoreInfo {
    pub kind: crate::rpc::pb::StoreKind,
    pub endpoints: Vec<String>,
    pub key_prefix: String,
}
