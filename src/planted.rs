//! Planted bugs: realistic mistakes that the simulator's checkers must catch (issue 4's acceptance, issue 5's
//! bug-finding measurements). A bug can be planted only in the simulation build ([`crate::executor::Executor`]'s
//! `with_planted` exists only there); the production build carries the switch but can never turn it on.
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
}

impl Planted {
    pub const ALL: [Planted; 1] = [Planted::WorkerIgnoresFence];

    pub fn name(self) -> &'static str {
        match self {
            Planted::WorkerIgnoresFence => "worker-ignores-fence",
        }
    }
}
