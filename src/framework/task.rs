//! The task API: what every task an executor hosts (a job master, a worker) receives and returns. The
//! [`TaskFactory`] that turns a dispatch ([`TaskSpec`]) into a [`TaskFuture`], the [`TaskEnv`] a task works with
//! (the masters, the framework host, the metastore once known, the drain), the [`StopSignal`], how a task ends
//! ([`TaskExit`], [`StopWhy`]), and the observations an executor and its tasks report. The executor runs tasks
//! through it; job types (`src/jobs`) see their executor only through it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crate::core::dispatcher::{TaskKind, TaskSpec};

use crate::clock::Clock;
use crate::core::ids::{Epoch, ExecutorId, LeaderEpoch, TaskId};
use crate::core::planted::{Planted, Plants};
use crate::framework::host::Host;
use crate::meta::MetaStore;

/// How a task ended by itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskExit {
    Finished,
    /// It was asked to cancel, and did.
    Canceled,
    Failed(String),
    /// It failed, and running it again may help (logged as `failed` too).
    FailedRetryable(String),
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
            StopWhy::Exited(TaskExit::Failed(_) | TaskExit::FailedRetryable(_)) => "failed",
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
    pub(crate) rx: tokio::sync::watch::Receiver<bool>,
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
    pub(crate) meta: Arc<MetaSlot>,
    pub(crate) observer: Option<ExecutorObserver>,
    /// The bug planted into this executor's tasks (only the simulation build can plant one).
    pub(crate) planted: Plants,
    /// The simulation's fault points.
    pub fault_points: crate::buggify::FaultPoints,
    /// When the executor confirmed the task's dispatch: its self-fence counts from here.
    pub confirmed: crate::core::time::Time,
    /// True once the executor drains (it is shutting down): a task should stop at its next checkpoint and report
    /// [`crate::core::workers::WorkerStatus::Stopped`] so that its master starts it again elsewhere at once.
    pub(crate) drain: Arc<DrainSignal>,
    /// What the executor runs as it stops this task, before it records the stop.
    pub(crate) stop_hooks: StopHooks,
    /// Where the task's processes' output is kept.
    pub(crate) logs: crate::framework::logs::LogStore,
    /// The executor's own directory (its commands' scratch directories and process records).
    pub dir: std::path::PathBuf,
    /// Where a job master leaves its heartbeats for the executor to carry, when the leader asks for it.
    pub(crate) carrier: crate::framework::carrier::Carrier,
}

/// What an executor does, synchronously and under its lock, as it stops a task (it fenced itself, was told to
/// register again, or shuts down), before it records the stop: kill the task's processes
/// ([`crate::framework::process`]). The task's future is dropped only when its executor's runtime next polls it, and
/// nothing of the task may act once its stop is recorded; a process acts without being polled.
#[derive(Clone, Default)]
pub struct StopHooks(Arc<Mutex<Hooks>>);

#[derive(Default)]
struct Hooks {
    next: u64,
    hooks: std::collections::BTreeMap<u64, Box<dyn FnOnce() + Send>>,
    ran: bool,
}

impl StopHooks {
    fn lock(&self) -> std::sync::MutexGuard<'_, Hooks> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `hook` when the task is stopped (at once, if it already was); its id, to [`StopHooks::remove`] it.
    pub(crate) fn add(&self, hook: Box<dyn FnOnce() + Send>) -> u64 {
        let mut h = self.lock();
        if h.ran {
            drop(h);
            hook();
            return 0;
        }
        h.next += 1;
        let id = h.next;
        h.hooks.insert(id, hook);
        id
    }

    pub(crate) fn remove(&self, id: u64) {
        self.lock().hooks.remove(&id);
    }

    /// Runs every hook, in the order they were added; a hook added later runs at once.
    pub(crate) fn run(&self) {
        let hooks = {
            let mut h = self.lock();
            h.ran = true;
            std::mem::take(&mut h.hooks)
        };
        for hook in hooks.into_values() {
            hook();
        }
    }
}

impl TaskEnv {
    /// Who a task's calls come from: its executor.
    pub fn identity(&self) -> crate::rpc::identity::Identity {
        crate::rpc::identity::Identity::executor(&self.executor)
    }
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
    pub(crate) fn set(&self, store: MetaStore) {
        *self.store.lock().unwrap_or_else(|p| p.into_inner()) = Some(store);
        self.notify.notify_waiters();
    }

    pub(crate) fn get(&self) -> Option<MetaStore> {
        self.store.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl DrainSignal {
    pub(crate) fn raise(&self) {
        self.set.store(true, std::sync::atomic::Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn is_raised(&self) -> bool {
        self.set.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl TaskEnv {
    /// An environment for the crate's unit tests: an executor `test` with the metastore `meta`, observations to
    /// `observer`, no fault points and nothing planted.
    #[cfg(test)]
    pub(crate) fn for_test(meta: MetaStore, observer: Option<ExecutorObserver>) -> TaskEnv {
        let clock = Clock::start();
        let slot = MetaSlot::default();
        slot.set(meta);
        TaskEnv {
            executor: "test".into(),
            address: "127.0.0.1:1".into(),
            join: vec![],
            rpc_timeout: Duration::from_secs(1),
            host: Host::new(clock.clone()),
            confirmed: clock.now(),
            clock,
            meta: Arc::new(slot),
            observer,
            planted: Plants::NONE,
            fault_points: crate::buggify::FaultPoints::default(),
            drain: Arc::new(DrainSignal::default()),
            stop_hooks: StopHooks::default(),
            logs: crate::framework::logs::LogStore::memory(),
            dir: std::env::temp_dir().join("foreman-test"),
            carrier: Default::default(),
        }
    }

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
    /// A worker's checkpoint is computed and about to be written: the simulation may hold it here.
    pub async fn before_checkpoint_write(&self) {
        crate::buggify::point(&self.fault_points, crate::buggify::Point::CheckpointWrite).await;
    }

    pub fn planted(&self, bug: Planted) -> bool {
        self.planted.has(bug)
    }

    /// The guard switches for the core machines this task runs (none in the production build).
    pub fn plants(&self) -> Plants {
        self.planted
    }
}

/// What an executor tells an observer (the simulator's checkers; later, metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecutorObservation {
    /// Admitted under this id, by the leader of `leader_epoch`; the registration was sent at `sent` (its answer
    /// may be taken much later, after a pause: the leader heard it no later than it answered).
    Registered {
        id: ExecutorId,
        leader_epoch: LeaderEpoch,
        sent: tokio::time::Instant,
    },
    /// No acknowledged heartbeat for the self-fence time: every task was stopped at `at`.
    Fenced {
        id: ExecutorId,
        at: tokio::time::Instant,
    },
    /// A heartbeat under this id, sent at `sent`, was acknowledged by the leader of `leader_epoch` (the leader
    /// heard it after `sent`; the acknowledgement may arrive much later, e.g. after a pause).
    HeartbeatAcked {
        id: ExecutorId,
        sent: tokio::time::Instant,
        leader_epoch: LeaderEpoch,
    },
    /// Told it was declared offline: every task stopped, registering again.
    Reregister {
        id: ExecutorId,
    },
    /// Left the cluster: every task had stopped, and a master took its deregistration.
    Deregistered {
        id: ExecutorId,
    },
    /// Started, as dispatched by a leader (or a job master) under `leader_epoch`.
    TaskStarted {
        task: TaskId,
        epoch: Epoch,
        leader_epoch: LeaderEpoch,
    },
    TaskStopped {
        task: TaskId,
        epoch: Epoch,
        why: StopWhy,
    },
    /// The task's code panicked with `message` (caught: see `framework::panic`). In a worker's work the worker
    /// reports a retryable failure; anywhere else the task exits failed. Its `TaskStopped` follows.
    TaskPanicked {
        task: TaskId,
        epoch: Epoch,
        message: String,
    },
    /// The task stopped its work for a drain, or a job master's work failed retryably, and will act no more (it
    /// only reports that to its master, which may start the next incarnation once it has the report); its
    /// `TaskStopped` follows once the report is done.
    TaskQuiesced {
        task: TaskId,
        epoch: Epoch,
    },
    /// A worker's checkpoint write was acknowledged by the metastore: its sequence number (accepted writes of
    /// that worker so far, across incarnations; `framework::checkpoint`).
    Checkpoint {
        task: TaskId,
        epoch: Epoch,
        seq: u64,
    },
    /// The executor removed what it kept of `job` (its commands' logs and scratch directories): the leader said
    /// the job no longer exists.
    JobDataRemoved {
        job: String,
    },
    /// A worker incarnation started a command (`framework::process`).
    ProcessStarted {
        task: TaskId,
        epoch: Epoch,
    },
    /// That command's process ended: it exited, or its group was killed (a kill of the executor's node ends it too,
    /// unobserved).
    ProcessEnded {
        task: TaskId,
        epoch: Epoch,
    },
    /// A job master hosted here (`master`, incarnation `master_epoch`) accepted a heartbeat or status report of
    /// incarnation `epoch` of its worker `task`.
    WorkerHeard {
        master: String,
        master_epoch: Epoch,
        task: TaskId,
        epoch: Epoch,
    },
    /// A job master hosted here (`master`, incarnation `master_epoch`) sends the confirm of incarnation `epoch` of
    /// its worker `task`: from now on that worker may start on its executor, even after this job master stopped
    /// (the confirm is on its way).
    WorkerConfirmSent {
        master: String,
        master_epoch: Epoch,
        task: TaskId,
        epoch: Epoch,
    },
}

/// The executor's observer, told what the job masters it hosts accept.
pub(crate) fn worker_heard(observer: ExecutorObserver, name: &str) -> crate::framework::host::HeardObserver {
    let name = name.to_owned();
    Arc::new(move |h: crate::framework::host::Heard| {
        let (master, master_epoch, task, epoch) = (h.master, h.master_epoch, h.worker, h.worker_epoch);
        observer(&name, ExecutorObservation::WorkerHeard { master, master_epoch, task, epoch })
    })
}

/// Receives an executor's observations; must not block.
pub type ExecutorObserver = Arc<dyn Fn(&str, ExecutorObservation) + Send + Sync>;
