//! Planted bugs: realistic mistakes that the simulator's checkers must catch (issue 4's acceptance, issue 5's
//! bug-finding measurements). A bug can be planted only in the simulation build (`with_planted` of
//! [`crate::executor::Executor`] and [`crate::master::Master`] exists only there); the production build carries
//! the switches but can never turn them on.
//!
//! Tried and dropped: "a job master answers a stale worker as if it were current" never shows, over 100 seeds
//! each of the worker-cut and executor-kill scenarios: a worker incarnation is only ever superseded after it fenced
//! itself (the job master waits out its TTL), and a stale worker's checkpoints are refused by its epoch guard, so
//! no stale worker is left to be answered. The bug needs a second one (a broken self-fence) to matter.

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
}

impl Planted {
    /// Every planted bug.
    pub const ALL: [Planted; 8] = [
        Planted::WorkerIgnoresFence,
        Planted::OneOfflinePerCheck,
        Planted::NoStepDown,
        Planted::RecoveryWithoutWait,
        Planted::RecoveryForgetsCancel,
        Planted::SlotLeak,
        Planted::IllegalTransition,
        Planted::RecoveryIgnoresBackoff,
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
        }
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
}
