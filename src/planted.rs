//! Planted bugs: realistic mistakes that the simulator's checkers must catch (issue 4's acceptance, issue 5's
//! bug-finding measurements). A bug can be planted only in the simulation build ([`crate::executor::Executor`]'s
//! `with_planted` exists only there); the production build carries the switch but can never turn it on.

/// A deliberate bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Planted {
    /// A hosted job master answers a worker of an older incarnation as if it were the current one (it forgets the
    /// worker-epoch half of the two-way fence), so a worker that should have stopped keeps running beside its
    /// replacement.
    StaleWorkerAnsweredAsCurrent,
    /// A worker ignores its self-fence deadline: cut off from its job master, it keeps working until it hears
    /// back, past the point where its job master declares it lost and starts a replacement.
    WorkerIgnoresFence,
}

impl Planted {
    pub const ALL: [Planted; 2] = [Planted::StaleWorkerAnsweredAsCurrent, Planted::WorkerIgnoresFence];

    pub fn name(self) -> &'static str {
        match self {
            Planted::StaleWorkerAnsweredAsCurrent => "stale-worker-answered-as-current",
            Planted::WorkerIgnoresFence => "worker-ignores-fence",
        }
    }
}
