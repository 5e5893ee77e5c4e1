//! The master process (design.md §2): campaigns for leadership over the metastore and, while it leads, drives the
//! core's registry, job state machine and job-master bookkeeping; as a follower it forwards leader-only calls.
//!
//! Layering: every decision is the core's ([`crate::core`]); this module moves bytes and timers. A leader term is
//! the core's job manager ([`crate::core::manager::Manager`]), owned by one driver task (`leader.rs`) that no
//! lock reaches: requests go to it through the term's inbox. Every metastore write of a term is a transaction
//! guarded by the term's leader key, one at a time in the order decided. A write refused by the guard (a deposed
//! leader) is counted and ends the term; a write whose outcome is unknown is settled by re-reading the key, and if
//! even that fails the term ends too, so that the next leader recovers from what is durable: memory is never
//! trusted beyond the metastore.

pub mod cmd;
mod convert;
mod election;
// why: the simulation serves no HTTP; the API calls the same services in process, so nothing else differs.
#[cfg(not(madsim))]
pub mod http;
mod leader;
mod logs;
pub mod metrics;
mod ops;
mod service;
mod status;
mod store_io;

pub use election::LeaderValue;
pub use metrics::Stats;
pub use service::MasterService;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::MasterConfig;
use crate::core::ids::{Epoch, ExecutorId, JobId, LeaderEpoch, TaskId};
use crate::core::leadership::Leadership;
use crate::core::rng::SplitMix64;
use crate::meta::MetaStore;

/// What a master tells an observer (the simulator's checkers; later, metrics), with absolute instants so that
/// observers of several masters can compare them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// This master began acting as leader of term `epoch`.
    ActingBegan { epoch: LeaderEpoch, at: tokio::time::Instant },
    /// ...and stopped acting at `at`: the earlier of when it stepped down and when its acting deadline passed.
    ActingEnded { epoch: LeaderEpoch, at: tokio::time::Instant },
    /// The acting deadline of term `epoch` is now `until` (its term began, or a keep-alive was confirmed): a
    /// leader killed without saying `ActingEnded` stopped acting at the earlier of its kill and this.
    ActingUntil { epoch: LeaderEpoch, until: tokio::time::Instant },
    /// The term's wait for the job masters it recovered ended: `adopted` checked in and run on, `lost` did not.
    JobMastersRecovered { adopted: usize, lost: usize },
    /// An executor was declared offline at `at`; this leader last heard from it at `last_heard` (or gave it a
    /// fresh TTL then, when its term began). It was one of `among` executors the registry held at that check (the
    /// simulator's no-mass-eviction checker).
    ExecutorOffline {
        id: ExecutorId,
        name: String,
        at: tokio::time::Instant,
        last_heard: tokio::time::Instant,
        among: usize,
    },
    /// Most executors expired in one check: this leader suspects it is the one cut off and holds `held` evictions
    /// (for up to `executors.suspect-hold`).
    EvictionsHeld { held: usize, at: tokio::time::Instant },
    /// What the leader holds of every schedulable executor's slots, after a pass of its loop (reported only when
    /// someone observes: the simulator's capacity-accounting checks).
    Capacity(CapacitySample),
    /// This leader (term `leader_epoch`) accepted a heartbeat or status report of incarnation `epoch` of the job
    /// master `task` (reported only when someone observes: the simulator's rule-2 checker).
    JobMasterHeard { leader_epoch: LeaderEpoch, task: TaskId, epoch: Epoch },
    /// This leader placed a worker of `job` (its job master's request; reported only when someone observes: the
    /// simulator's rule-5 checker, nothing placed for a job after its cancel was acknowledged).
    WorkerPlaced { job: JobId, task: TaskId },
    /// The loss of incarnation `lost` of `job`'s job master, decided at `at`, charged the job's backoff (reported
    /// once written): `failures` in a row, and it may start again at `allowed`, `delay` after `at`; none: it gave
    /// up, and the job failed.
    BackoffCharged {
        job: JobId,
        lost: Epoch,
        failures: u32,
        delay: Duration,
        allowed: Option<tokio::time::Instant>,
        at: tokio::time::Instant,
    },
    /// The pass at `at` started incarnation `epoch` of `job`'s job master (reported once written, as its dispatch
    /// leaves): the job's restart count, its backoff's failures in a row, the delay in force and when the backoff
    /// allowed the start (none: nothing pending).
    JobMasterStarted {
        job: JobId,
        epoch: Epoch,
        restarts: u32,
        failures: u32,
        delay: Duration,
        allowed: Option<tokio::time::Instant>,
        at: tokio::time::Instant,
    },
}

/// The leader's view of the slots at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapacitySample {
    pub epoch: LeaderEpoch,
    pub at: tokio::time::Instant,
    /// Per schedulable executor: id, capacity, slots its last report counts, slots held by reservations.
    pub executors: Vec<ExecutorSlots>,
    pub reservations: Vec<ReservationSample>,
    /// The leader held evictions as a suspect: the pass placed nothing.
    pub suspecting: bool,
    /// The slots job masters held after the pass, and the most they may hold (one may always run).
    pub job_master_slots: u64,
    pub job_master_cap: u64,
    /// Every job the pass left without a job master that may be alive (not ended), in id order.
    pub waiting: Vec<WaitingSample>,
}

/// A job waiting for a job master after a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitingSample {
    pub job: JobId,
    pub cost: u32,
    /// When its backoff allows it to start (none: at once).
    pub allowed: Option<tokio::time::Instant>,
    /// No earlier incarnation may still be alive (else it waits for that one to be given up first).
    pub startable: bool,
    /// The schedulable executors its selectors admit; none when it has no selectors (every one does).
    pub admits: Option<Vec<ExecutorId>>,
    /// For a job with selectors: the slots live job masters hold on the online executors they admit, and the most
    /// they may hold there (one may always run).
    pub admitted_share: Option<(u64, u64)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutorSlots {
    pub id: ExecutorId,
    pub capacity: u32,
    pub reported: u32,
    pub reserved: u32,
}

/// A reservation: the task, the executor it holds slots on, the incarnation it was made for ([`Epoch::NONE`]: not
/// given), and when it was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservationSample {
    pub task: TaskId,
    pub executor: ExecutorId,
    pub epoch: Epoch,
    pub cost: u32,
    pub placed: tokio::time::Instant,
}

/// Receives a master's observations; must not block.
pub type Observer = Arc<dyn Fn(&str, Observation) + Send + Sync>;

/// What a master knows of the leadership, for routing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Campaigning or waiting; no term here.
    Follower,
    /// Leading, recovery not yet done: leader-only calls get `MASTER_NOT_READY`.
    Recovering(LeaderEpoch),
    /// Leading and serving.
    Leader(LeaderEpoch),
}

pub(crate) struct Inner {
    pub leadership: Leadership,
    /// The serving term's inbox (none while following or recovering).
    pub serving: Option<leader::Serving>,
    pub rng: SplitMix64,
    /// Leave the next election alone (a follower asked to resign).
    pub sit_out: bool,
    /// The lease of the election round in progress: revoked on shutdown, so that the other masters need not wait
    /// for its TTL.
    pub lease: Option<crate::meta::LeaseId>,
    /// The leader this master, as a follower, forwards leader-only calls to.
    pub leader_hint: crate::core::leader_hint::LeaderHint<election::LeaderValue>,
    /// The channel this master, as a follower, forwards on, and the leader (its round) it was opened to: kept from
    /// call to call (a connection, and with TLS a handshake, per forwarded call otherwise), dropped when a forward
    /// to that leader misses.
    pub forward_channel: Option<(election::LeaderValue, tonic::transport::Channel)>,
}

/// One master process's shared state.
pub struct Master {
    pub(crate) cfg: MasterConfig,
    pub(crate) store: MetaStore,
    pub(crate) clock: Clock,
    pub(crate) inner: Mutex<Inner>,
    /// Wakes the term's driver (it stepped down, or should look at its leadership again).
    pub(crate) wake: Notify,
    /// Wakes the election loop (a resign was asked for).
    pub(crate) resign_wake: Notify,
    pub stats: Arc<Stats>,
    pub(crate) observer: Option<Observer>,
    /// A bug planted by the simulation's bug-finding runs (never in the production build).
    planted: crate::planted::Plants,
    /// The simulation's fault points (`crate::buggify`); off, and inert in the production build.
    pub(crate) fault_points: crate::buggify::FaultPoints,
    /// The job types it accepts jobs of (their configurations are checked at `CreateJob`).
    pub(crate) job_types: crate::jobs::JobTypes,
}

impl Master {
    /// A master with validated `cfg` (see [`MasterConfig::validate`]); `seed` drives its tie-breaks and ids.
    pub fn new(cfg: MasterConfig, store: MetaStore, seed: u64) -> Arc<Master> {
        Master::with_observer(cfg, store, seed, None)
    }

    /// A master whose leadership and liveness decisions are reported to `observer`.
    pub fn with_observer(cfg: MasterConfig, store: MetaStore, seed: u64, observer: Option<Observer>) -> Arc<Master> {
        let leadership = Leadership::new(cfg.election.step_down);
        Arc::new(Master {
            clock: Clock::start(),
            inner: Mutex::new(Inner {
                leadership,
                serving: None,
                rng: SplitMix64::new(seed),
                sit_out: false,
                lease: None,
                leader_hint: Default::default(),
                forward_channel: None,
            }),
            wake: Notify::new(),
            resign_wake: Notify::new(),
            stats: Arc::default(),
            observer,
            cfg,
            store,
            planted: crate::planted::Plants::NONE,
            fault_points: Default::default(),
            job_types: crate::jobs::builtin(),
        })
    }

    /// The same master accepting jobs of `types` (by default [`crate::jobs::builtin`]). Call it on a fresh master.
    pub fn with_job_types(self: Arc<Master>, types: crate::jobs::JobTypes) -> Arc<Master> {
        match Arc::try_unwrap(self) {
            Ok(mut m) => {
                m.job_types = types;
                Arc::new(m)
            }
            Err(m) => m,
        }
    }

    /// The same master with the run's fault-point switch (simulation build only). Call it on a fresh master.
    #[cfg(madsim)]
    pub fn with_fault_points(self: Arc<Master>, switch: crate::buggify::FaultPoints) -> Arc<Master> {
        match Arc::try_unwrap(self) {
            Ok(mut m) => {
                m.fault_points = switch;
                Arc::new(m)
            }
            Err(m) => m,
        }
    }

    /// The same master on `dial`, the simulated node's clock (simulation build only): every deadline it judges
    /// (step-down, offline TTLs, keep-alive timing, campaign retry, backoff) follows the dial's rate and jumps.
    /// Call it on a fresh master.
    #[cfg(madsim)]
    pub fn with_dial(self: Arc<Master>, dial: &crate::clock::Dial) -> Arc<Master> {
        match Arc::try_unwrap(self) {
            Ok(mut m) => {
                m.clock = Clock::start_on(dial);
                Arc::new(m)
            }
            Err(m) => m,
        }
    }

    /// The same master with `bug` planted (simulation build only). Call it on a fresh master.
    #[cfg(madsim)]
    pub fn with_planted(self: Arc<Master>, bugs: impl Into<crate::planted::Plants>) -> Arc<Master> {
        let bug: crate::planted::Plants = bugs.into();
        match Arc::try_unwrap(self) {
            Ok(mut m) => {
                m.planted = bug;
                if bug.has(crate::planted::Planted::NoStepDown) {
                    m.lock().leadership.plant_ignore_deadline();
                }
                Arc::new(m)
            }
            Err(m) => m,
        }
    }

    pub(crate) fn planted(&self, bug: crate::planted::Planted) -> bool {
        self.planted.has(bug)
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The address other nodes reach this master at.
    /// Who this master's own calls come from.
    pub fn identity(&self) -> crate::rpc::identity::Identity {
        crate::rpc::identity::Identity::master(self.name())
    }

    pub fn address(&self) -> &str {
        if self.cfg.advertise_addr.is_empty() {
            &self.cfg.addr
        } else {
            &self.cfg.advertise_addr
        }
    }

    pub fn config(&self) -> &MasterConfig {
        &self.cfg
    }

    pub fn store(&self) -> &MetaStore {
        &self.store
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock is a bug that already failed loudly; keep serving what is left.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This master's role at this instant.
    pub fn role(&self) -> Role {
        let now = self.clock.now();
        let inner = self.lock();
        match (inner.leadership.acting(now), &inner.serving) {
            (Some(epoch), Some(_)) => Role::Leader(epoch),
            (Some(epoch), _) => Role::Recovering(epoch),
            _ => Role::Follower,
        }
    }

    /// Serves the master's gRPC services on `addr` and runs it until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Master>,
        addr: std::net::SocketAddr,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        let svc = MasterService::new(self.clone());
        let server = crate::rpc::tls::server_builder()?
            .add_service(crate::rpc::pb::discovery_server::DiscoveryServer::new(svc.clone()))
            .add_service(crate::rpc::pb::job_manager_server::JobManagerServer::new(svc.clone()))
            .add_service(crate::rpc::pb::task_scheduler_server::TaskSchedulerServer::new(svc.clone()))
            .add_service(crate::rpc::pb::framework_server::FrameworkServer::new(svc))
            .serve(addr);
        tokio::select! {
            biased;
            r = server => r,
            _ = self.run(shutdown) => Ok(()),
        }
    }

    /// Runs the master until `shutdown` resolves: the election loop, which runs the leader loop while it leads.
    /// On the way out it stops acting, then gives its election lease back (a leader resigns: the others elect a
    /// new leader at once instead of after the lease TTL; see [`Master::leave`]).
    pub async fn run(self: Arc<Master>, shutdown: impl std::future::Future<Output = ()>) {
        let election = election::run(self.clone());
        tokio::select! {
            biased;
            _ = shutdown => {}
            _ = election => {}
        }
        self.leave().await;
    }

    /// Stops acting and revokes the election lease of the round in progress, if any: its leader key and
    /// membership record go with it. Best effort, bounded by the metastore timeout: a lease that cannot be
    /// revoked expires after its TTL, as after a crash.
    pub async fn leave(&self) {
        self.step_down_now("shutting down");
        let lease = self.lock().lease.take();
        if let Some(lease) = lease {
            match tokio::time::timeout(self.cfg.rpc.metastore_timeout, self.store.revoke(lease)).await {
                Ok(Ok(())) => tracing::info!(master = %self.name(), "gave the election lease back"),
                Ok(Err(e)) => tracing::warn!(master = %self.name(), "could not give the election lease back: {e}"),
                Err(_) => tracing::warn!(master = %self.name(), "could not give the election lease back in time"),
            }
        }
    }

    /// Whether anyone observes this master (the simulation): observations that cost something to build are
    /// built only then.
    pub(crate) fn observed(&self) -> bool {
        self.observer.is_some()
    }

    pub(crate) fn observe(&self, o: Observation) {
        if let Some(f) = &self.observer {
            f(self.name(), o);
        }
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
