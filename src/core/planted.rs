//! Planted bugs: realistic mistakes that the simulator's checkers must catch, and one switch per guard of design.md
//! §5 that removes that guard alone (design.md §8: every guard has a fault under which it is the last line of
//! defence). A bug can be planted only in the simulation build (the executor's and the master's `with_planted`
//! exist only there); the production build carries the switches but can never turn them on. Each switch is read
//! where its guard is, as `if !plants.has(..) { guard }`, and nowhere else.
//!
//! The list lives in the core so that the pure state machines can hold a [`Plants`] value; the top-level
//! `planted` module re-exports it for the layers above.

use super::invariants::{stop, Rule, Violation};
use super::time::Time;

/// A deliberate bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Planted {
    /// A worker ignores its self-fence deadline: cut off from its job master, it keeps working until it hears
    /// back, past the point where its job master declares it lost and starts a replacement.
    WorkerIgnoresFence,
    /// The leader declares at most one executor offline per check (the original system's behaviour), so
    /// simultaneous deaths are detected one check interval apart.
    OneOfflinePerCheck,
    /// A leader ignores its step-down deadline: cut off from etcd, it goes on acting while another is elected.
    NoStepDown,
    /// A new leader does not wait for live job masters to check in: it declares them lost at once and starts new
    /// incarnations beside them.
    RecoveryWithoutWait,
    /// A new leader loads a job being canceled as running: the cancel intent is lost in the failover.
    RecoveryForgetsCancel,
    /// The leader gives back the slots it reserved for a task only when its executor reports the task running:
    /// a task that starts and ends between two heartbeats holds its slots for good (no end report, no expiry).
    SlotLeak,
    /// A finishing job passes through `Created` on its way to `Finished` (Running → Created is illegal): the
    /// runtime assertion of every job state change must stop the first run where a job finishes.
    IllegalTransition,
    /// A new leader restores every job without the backoff delay persisted with it: a job whose job master was
    /// lost just before a failover starts again at the new leader's first pass, bypassing its backoff.
    RecoveryIgnoresBackoff,
    /// Guard: an executor's self-fence (rule 3). The executor never fences itself: with no acknowledged
    /// heartbeat, its tasks run on past the point where the leader declares it offline and moves them.
    ExecutorIgnoresFence,
    /// Guard: an executor ignores replies from a leader older than one it heard (rule 2). A deposed leader's
    /// heartbeat acknowledgement or registration reply is taken as current and extends the executor's fence.
    ExecutorHearsDeposedLeader,
    /// Guard: an executor refuses a dispatch placed under a leader older than one it heard (rule 2).
    ExecutorTakesDeposedDispatch,
    /// Guard: an executor refuses a task epoch not newer than one it has seen of that task (rule 2).
    ExecutorTakesStaleEpoch,
    /// Guard: an executor told it was declared offline stops its work before it registers again (rule 7). The
    /// executor registers again but keeps its tasks running.
    ExecutorKeepsWorkWhenOffline,
    /// Guard: the registry refuses a heartbeat from an executor it declared offline (rule 7). The heartbeat is
    /// acknowledged instead.
    OfflineHeartbeatAccepted,
    /// Guard: the leader waits the whole offline TTL before declaring an executor offline (rule 3: the executor
    /// fenced itself first). Declared offline at half the TTL, before its self-fence.
    EarlyOffline,
    /// Guard: a master (the job manager of its job masters, a job master of its workers) waits the whole offline
    /// TTL before declaring an incarnation lost (rule 3). Declared lost at half the TTL, before its self-fence.
    WorkerLostEarly,
    /// Guard: a job master answers a message from an older incarnation of one of its workers than the one it
    /// expects with "stale" (rule 2). Answered as if it were current.
    StaleWorkerAnswered,
    /// Guard: the job manager answers a message from an older incarnation of a job master than the one it
    /// expects with "stale" (rule 2): the same guard code as [`Planted::StaleWorkerAnswered`], one level up.
    StaleJobMasterAnswered,
    /// Guard: a master that receives a message showing a newer master epoch learns it is stale and stops
    /// (rule 2). The message is judged as if it carried this master's epoch.
    NewerMasterIgnored,
    /// Guard: a master starts no new incarnation of a task while an older one may be alive (rule 3).
    DispatchBesideLive,
    /// Guard: a worker's checkpoint write compares the worker record with its epoch (rule 2, checkpoints never
    /// go back). Written unguarded.
    CheckpointUnguarded,
    /// Guard: a job master's writes (its workers' records) compare the job's job-master record with its epoch
    /// (rule 3: a superseded job master writes nothing). Written unguarded.
    JobMasterWritesUnguarded,
    /// Guard: a job master that finds another incarnation owning its job at start-up stops (rule 3).
    JobMasterOwnerUnchecked,
    /// Guard: every metastore write of the job manager compares the term's write fence (rule 1: no write of a
    /// deposed leader, and none of this term after a later one). Written unguarded.
    LeaderWritesUnguarded,
    /// Guard: a worker (or job master) told it is stale stops (rule 2). It carries on until its fence.
    StaleVerdictIgnored,
    /// Guard: the leader places workers only for the current, online job master of a job whose cancel was not
    /// acknowledged (rules 2, 3 and 5).
    StaleJobMasterPlaces,
    /// Guard: placement never goes beyond an executor's free capacity (rule 6).
    CapacityIgnored,
    /// Guard: placement satisfies the job's selectors (rule 6).
    SelectorsIgnored,
    /// Guard: a worker is placed by its job's selectors too, not only by its job master's (rule 6). Placed by its
    /// job master's alone (the fake sends none: anywhere).
    WorkerSelectorsDropped,
    /// Guard: a new leader places nothing on a restored executor until it has heard from it (rule 6: online
    /// executors only).
    RestoredPlacedUnheard,
    /// Guard: a job whose job master is gone while it is being canceled ends `Canceled` (rule 5). It waits to
    /// start again instead, still `Canceling`.
    LossForgetsCancel,
    /// Guard (§6, no mass eviction from the wrong side): a leader that sees most executors expire at once
    /// suspects itself and holds the evictions. Evicts them at once.
    NoEvictionHold,
    /// A new leader adopts none of the job masters it recovered: one that checks in is answered stale, stops, and
    /// is started again once the recovery wait is over (safe, but every failover restarts all work: design.md §6
    /// failover says healthy job masters are re-adopted, not restarted).
    RecoveryAdoptsNothing,
    /// Guard (a worker's failure handled as declared): the job-master runtime starts a worker that failed
    /// retryably again, after its backoff, until its limit of restarts in a row. Treats the failure as terminal:
    /// the job fails with it.
    RetryableTreatedAsTerminal,
    /// Guard (a panicking task ends): the worker runtime catches a panic of the work and ends the incarnation
    /// failed. Leaves it hanging instead, as an uncaught panic would leave a task nobody reaps: its link stops, but
    /// its executor lists it running, holding its slot, while its job master starts its next incarnation.
    PanicLeftRunning,
    /// Guard: a write to the job store compares the writing worker's record with its epoch (rule 2: a superseded
    /// incarnation writes nothing). Written unguarded.
    StoreUnguarded,
    /// Guard: a job master's write of its job's status compares the job's job-master record with its epoch (rule
    /// 2: a superseded job master's status never replaces its successor's). Written unguarded.
    StatusUnguarded,
    /// Guard: an exec worker's command is killed with its process group when its worker ends by anything but the
    /// command's own exit (rule 3, for processes). The group is left running: the command outlives its
    /// incarnation, beside the next one.
    ExecLeftRunning,
    /// Guard: a leader names, in its heartbeat answers, the jobs an executor keeps data of that no longer exist,
    /// so the executor removes their logs and scratch directories. Never named: a deleted job's data stays on
    /// every executor for ever.
    JobDataNotCollected,
    /// Guard: a worker whose local resource lives on an online executor is placed there again (its next
    /// incarnation finds its files). Placed anywhere: it starts without them while they sit on the other executor.
    WorkerPlacedAwayFromResource,
}

impl Planted {
    /// Every planted bug and guard switch.
    pub const ALL: [Planted; 40] = [
        Planted::WorkerIgnoresFence,
        Planted::OneOfflinePerCheck,
        Planted::NoStepDown,
        Planted::RecoveryWithoutWait,
        Planted::RecoveryForgetsCancel,
        Planted::SlotLeak,
        Planted::IllegalTransition,
        Planted::RecoveryIgnoresBackoff,
        Planted::ExecutorIgnoresFence,
        Planted::ExecutorHearsDeposedLeader,
        Planted::ExecutorTakesDeposedDispatch,
        Planted::ExecutorTakesStaleEpoch,
        Planted::ExecutorKeepsWorkWhenOffline,
        Planted::OfflineHeartbeatAccepted,
        Planted::EarlyOffline,
        Planted::WorkerLostEarly,
        Planted::StaleWorkerAnswered,
        Planted::StaleJobMasterAnswered,
        Planted::NewerMasterIgnored,
        Planted::DispatchBesideLive,
        Planted::CheckpointUnguarded,
        Planted::JobMasterWritesUnguarded,
        Planted::JobMasterOwnerUnchecked,
        Planted::LeaderWritesUnguarded,
        Planted::StaleVerdictIgnored,
        Planted::StaleJobMasterPlaces,
        Planted::CapacityIgnored,
        Planted::SelectorsIgnored,
        Planted::WorkerSelectorsDropped,
        Planted::RestoredPlacedUnheard,
        Planted::LossForgetsCancel,
        Planted::NoEvictionHold,
        Planted::RecoveryAdoptsNothing,
        Planted::RetryableTreatedAsTerminal,
        Planted::PanicLeftRunning,
        Planted::StoreUnguarded,
        Planted::StatusUnguarded,
        Planted::ExecLeftRunning,
        Planted::JobDataNotCollected,
        Planted::WorkerPlacedAwayFromResource,
    ];

    /// The bug of this [`name`](Planted::name).
    pub fn from_name(name: &str) -> Option<Planted> {
        Planted::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Planted::WorkerIgnoresFence => "worker-ignores-fence",
            Planted::OneOfflinePerCheck => "one-offline-per-check",
            Planted::NoStepDown => "no-step-down",
            Planted::RecoveryWithoutWait => "recovery-without-wait",
            Planted::RecoveryForgetsCancel => "recovery-forgets-cancel",
            Planted::SlotLeak => "slot-leak",
            Planted::IllegalTransition => "illegal-transition",
            Planted::RecoveryIgnoresBackoff => "recovery-ignores-backoff",
            Planted::ExecutorIgnoresFence => "executor-ignores-fence",
            Planted::ExecutorHearsDeposedLeader => "executor-hears-deposed-leader",
            Planted::ExecutorTakesDeposedDispatch => "executor-takes-deposed-dispatch",
            Planted::ExecutorTakesStaleEpoch => "executor-takes-stale-epoch",
            Planted::ExecutorKeepsWorkWhenOffline => "executor-keeps-work-when-offline",
            Planted::OfflineHeartbeatAccepted => "offline-heartbeat-accepted",
            Planted::EarlyOffline => "early-offline",
            Planted::WorkerLostEarly => "worker-lost-early",
            Planted::StaleWorkerAnswered => "stale-worker-answered",
            Planted::StaleJobMasterAnswered => "stale-job-master-answered",
            Planted::NewerMasterIgnored => "newer-master-ignored",
            Planted::DispatchBesideLive => "dispatch-beside-live",
            Planted::CheckpointUnguarded => "checkpoint-unguarded",
            Planted::JobMasterWritesUnguarded => "job-master-writes-unguarded",
            Planted::JobMasterOwnerUnchecked => "job-master-owner-unchecked",
            Planted::LeaderWritesUnguarded => "leader-writes-unguarded",
            Planted::StaleVerdictIgnored => "stale-verdict-ignored",
            Planted::StaleJobMasterPlaces => "stale-job-master-places",
            Planted::CapacityIgnored => "capacity-ignored",
            Planted::SelectorsIgnored => "selectors-ignored",
            Planted::WorkerSelectorsDropped => "worker-selectors-dropped",
            Planted::RestoredPlacedUnheard => "restored-placed-unheard",
            Planted::LossForgetsCancel => "loss-forgets-cancel",
            Planted::NoEvictionHold => "no-eviction-hold",
            Planted::RecoveryAdoptsNothing => "recovery-adopts-nothing",
            Planted::RetryableTreatedAsTerminal => "retryable-treated-as-terminal",
            Planted::PanicLeftRunning => "panic-left-running",
            Planted::StoreUnguarded => "store-unguarded",
            Planted::StatusUnguarded => "status-unguarded",
            Planted::ExecLeftRunning => "exec-left-running",
            Planted::JobDataNotCollected => "job-data-not-collected",
            Planted::WorkerPlacedAwayFromResource => "worker-placed-away-from-resource",
        }
    }
}

/// The bugs planted in one node, as its state machines hold them (none in production): usually one, or a guard's
/// switch together with the switch of the guard in front of it (the simulator's "behind a removed first line"
/// scenarios, sim/behind.rs).
///
/// A node's value also says whether its tripwires are armed ([`Plants::armed`]): the guards design.md holds
/// unreachable (each a second line behind one that always acts first, so that no fault can make it the last line)
/// then stop the node with [`crate::core::invariants::Rule::UnreachableGuard`] if they are ever reached, switch or
/// no switch. Every simulated cluster arms them; production, unit tests and property tests never do (there the
/// guard just refuses, as defence in depth).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Plants(u64);

/// The bit of [`Plants::armed`], above every bug's.
const TRIPWIRES: u64 = 1 << 63;

impl Plants {
    /// No bug: every guard in place.
    pub const NONE: Plants = Plants(0);

    /// These bugs, with the tripwires armed.
    pub fn armed(self) -> Plants {
        Plants(self.0 | TRIPWIRES)
    }

    /// Whether the tripwires are armed: a guard held unreachable that is reached stops the node.
    pub fn tripwires(self) -> bool {
        self.0 & TRIPWIRES != 0
    }

    /// The guard whose switch is `guard`, held unreachable, was reached at `at` (whether or not its switch is on):
    /// with the tripwires armed, the node stops with the violation; otherwise nothing happens here and the guard
    /// does its work.
    pub fn trip(self, guard: Planted, at: Time, detail: impl FnOnce() -> String) {
        if self.tripwires() {
            stop(Violation::new(Rule::UnreachableGuard, at, format!("{} reached: {}", guard.name(), detail())));
        }
    }

    pub fn of(bug: Option<Planted>) -> Plants {
        bug.map_or(Plants::NONE, |b| Plants::NONE.with(b))
    }

    /// These bugs and `bug` too.
    pub fn with(self, bug: Planted) -> Plants {
        Plants(self.0 | Plants::bit(bug))
    }

    fn bit(bug: Planted) -> u64 {
        1 << (bug as u32)
    }

    /// The switches of the job manager's bookkeeping of its job masters. It runs the code of a job master's
    /// bookkeeping of its workers (core/workers.rs), whose stale-incarnation guard has a switch per level.
    pub fn of_job_manager(self) -> Plants {
        let worker = Plants::bit(Planted::StaleWorkerAnswered);
        let rest = Plants(self.0 & !worker & !Plants::bit(Planted::StaleJobMasterAnswered));
        if self.has(Planted::StaleJobMasterAnswered) {
            rest.with(Planted::StaleWorkerAnswered)
        } else {
            rest
        }
    }

    /// Whether `bug` is planted.
    pub fn has(self, bug: Planted) -> bool {
        self.0 & Plants::bit(bug) != 0
    }

    /// The planted bugs, in [`Planted::ALL`]'s order.
    pub fn list(self) -> impl Iterator<Item = Planted> {
        Planted::ALL.into_iter().filter(move |b| self.has(*b))
    }
}

impl From<Option<Planted>> for Plants {
    fn from(bug: Option<Planted>) -> Plants {
        Plants::of(bug)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bug_reads_back_from_its_name() {
        for bug in Planted::ALL {
            assert_eq!(Planted::from_name(bug.name()), Some(bug));
        }
        assert_eq!(Planted::from_name("slot leak"), None);
    }

    #[test]
    fn tripwires_are_apart_from_every_bug() {
        assert!(Planted::ALL.len() < 63, "a bug's bit would be the tripwires'");
        let armed = Plants::NONE.armed();
        assert!(armed.tripwires() && !Plants::NONE.tripwires());
        assert_eq!(armed.list().count(), 0, "arming plants no bug");
        let one = Plants::of(Some(Planted::NoStepDown)).armed();
        assert!(one.has(Planted::NoStepDown) && one.tripwires());
        assert_eq!(one.list().collect::<Vec<_>>(), vec![Planted::NoStepDown]);
        assert!(one.of_job_manager().tripwires(), "the job manager's bookkeeping keeps them armed");
    }

    #[test]
    fn plants_hold_each_bug_apart() {
        assert!(Planted::ALL.len() <= 64, "a Plants is a 64-bit set");
        for bug in Planted::ALL {
            let one = Plants::of(Some(bug));
            assert_eq!(one.list().collect::<Vec<_>>(), vec![bug]);
            let two = one.with(Planted::NoStepDown);
            assert!(two.has(bug) && two.has(Planted::NoStepDown));
            assert_eq!(two.list().count(), if bug == Planted::NoStepDown { 1 } else { 2 });
        }
        assert_eq!(Plants::NONE.list().count(), 0);
        let jm = Plants::of(Some(Planted::StaleJobMasterAnswered)).with(Planted::NoStepDown).of_job_manager();
        assert_eq!(jm.list().collect::<Vec<_>>(), vec![Planted::NoStepDown, Planted::StaleWorkerAnswered]);
        assert_eq!(Plants::of(Some(Planted::StaleWorkerAnswered)).of_job_manager(), Plants::NONE);
    }
}
