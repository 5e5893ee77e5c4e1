//! Fault points (FoundationDB's `BUGGIFY`): the places where timing matters most may, in the simulation, stall on
//! purpose, so that a seed explores the interleavings a slow disk, a descheduled thread or a long GC pause would
//! make. Each point only delays (the work still happens, later): whatever a checker then finds is a real bug.
//!
//! In the production build a point is an empty inline function. In the simulation build a point stalls in two
//! ways:
//! - **at random**, only while the run's [`FaultPoints`] switch is on (a scenario hands one switch to every node it
//!   builds, and turns it off when the faults heal), with the point's probability, drawing its stall from the seed;
//!   so a seed replays its stalls exactly, and runs that leave the switch off draw nothing from it. Points that
//!   exist for holds only ([`Point::shape`] is `None`) never stall at random and draw nothing;
//! - **held by a fault plan**: each node has its own holds ([`FaultPoints::for_node`]); while a plan's step holds
//!   a point of a node, that node stalls there for the hold's time, at the next pass only or at every pass. Holds
//!   draw nothing from the seed, and each stall is told to the node's [`HoldObserver`] when it begins and when it
//!   ends (the simulation's story).
//!
//! Beside the points, a node's [`Latency`] dial delays each of its metastore requests by up to the dial's value
//! (a plan's sustained metastore latency); at zero it draws nothing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Told of a hold's stall at a node: the plan's step number, the point, the stall, and whether the stall ended
/// (`false` when it begins).
pub type HoldObserver = Arc<dyn Fn(usize, Point, Duration, bool) + Send + Sync>;

/// One plan step's hold of a point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hold {
    step: usize,
    point: Point,
    stall: Duration,
    /// Every pass stalls while the hold lasts (else only the next one).
    every: bool,
    fired: bool,
}

/// A node's holds and its metastore latency.
#[derive(Default)]
struct NodeFaults {
    holds: Mutex<Vec<Hold>>,
    // why: only the simulation build's `point` stalls at holds and tells the observer; production never sets one.
    #[cfg_attr(not(madsim), allow(dead_code))]
    observer: Option<HoldObserver>,
    latency: Latency,
}

/// The switch of a run's fault points, shared by the nodes a scenario builds (off unless turned on) with the count
/// of stalls each point made, and one node's holds and metastore latency (see [`FaultPoints::for_node`]).
#[derive(Clone, Default)]
pub struct FaultPoints {
    switch: Arc<AtomicBool>,
    /// The stalls each point made (at random or held), over every node of the run (the simulator's coverage).
    fired: Arc<Mutex<BTreeMap<&'static str, u64>>>,
    node: Arc<NodeFaults>,
}

impl std::fmt::Debug for FaultPoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultPoints").field("on", &self.is_on()).finish_non_exhaustive()
    }
}

impl FaultPoints {
    pub fn set(&self, on: bool) {
        self.switch.store(on, Ordering::SeqCst);
    }

    pub fn is_on(&self) -> bool {
        self.switch.load(Ordering::SeqCst)
    }

    /// One node's fault points: the same switch, the node's own holds and latency dial, its stalls told to
    /// `observer`.
    pub fn for_node(&self, observer: Option<HoldObserver>) -> FaultPoints {
        FaultPoints {
            switch: self.switch.clone(),
            fired: self.fired.clone(),
            node: Arc::new(NodeFaults { observer, ..NodeFaults::default() }),
        }
    }

    /// How many stalls each point made so far (at random or held), over every node of the run, by the point's name
    /// (points that never fired are absent).
    pub fn fired(&self) -> BTreeMap<&'static str, u64> {
        self.fired.lock().map(|f| f.clone()).unwrap_or_default()
    }

    #[cfg(madsim)]
    fn count(&self, point: Point) {
        if let Ok(mut fired) = self.fired.lock() {
            *fired.entry(point.name()).or_default() += 1;
        }
    }

    fn holds(&self) -> std::sync::MutexGuard<'_, Vec<Hold>> {
        self.node.holds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Plan step `step` holds `point` of this node: its next pass (or, with `every`, each pass until
    /// [`FaultPoints::release`]) stalls for `stall`.
    pub fn hold(&self, step: usize, point: Point, stall: Duration, every: bool) {
        self.holds().push(Hold { step, point, stall, every, fired: false });
    }

    /// Step `step`'s hold ends (a stall in progress runs its course).
    pub fn release(&self, step: usize) {
        self.holds().retain(|h| h.step != step);
    }

    /// The stall a pass of `point` owes a hold now, if any (the earliest step's first).
    // why: only the simulation build's `point` (and the tests) take holds.
    #[cfg_attr(not(madsim), allow(dead_code))]
    fn take_hold(&self, point: Point) -> Option<(usize, Duration)> {
        let mut holds = self.holds();
        let h = holds.iter_mut().find(|h| h.point == point && (h.every || !h.fired))?;
        h.fired = true;
        Some((h.step, h.stall))
    }

    /// This node's metastore latency dial.
    pub fn latency(&self) -> Latency {
        self.node.latency.clone()
    }
}

/// A node's metastore latency: each request waits up to this long (0: none), shared by the node's metastore
/// handles. Beside it, the writes in flight: each transaction is applied a fixed time after it is sent, whether or
/// not its sender still waits for the answer (0: none).
#[derive(Clone, Debug, Default)]
pub struct Latency {
    max: Arc<AtomicU64>,
    in_flight: Arc<AtomicU64>,
}

impl Latency {
    /// Each request from now on waits up to `max`.
    pub fn set(&self, max: Duration) {
        self.max.store(max.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn max(&self) -> Duration {
        Duration::from_millis(self.max.load(Ordering::SeqCst))
    }

    /// Each transaction sent from now on is applied `delay` after it is sent (zero: at once), even if its sender
    /// gave up on it or stopped meanwhile: a request on a long-lived connection, sent into a partition and
    /// retransmitted until it heals, or queued in the metastore behind a stall, is applied late although its
    /// client timed out. The simulation's scenarios arm it; the swarm never does, and it draws nothing.
    pub fn set_in_flight(&self, delay: Duration) {
        self.in_flight.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// How long a transaction sent now stays in flight (zero in production).
    pub fn in_flight(&self) -> Duration {
        Duration::from_millis(self.in_flight.load(Ordering::SeqCst))
    }

    /// How long one request waits before it is sent and after its answer came (nothing in production, or while
    /// the dial is at zero: then nothing is drawn).
    pub fn draw(&self) -> (Duration, Duration) {
        #[cfg(madsim)]
        {
            use madsim::rand::Rng;
            let max = self.max.load(Ordering::SeqCst);
            if max > 0 {
                let mut rng = madsim::rand::thread_rng();
                let total = rng.gen_range(0..=max);
                // Part on the way there, part on the way back: a write may be applied and its answer late.
                let before = rng.gen_range(0..=total);
                return (Duration::from_millis(before), Duration::from_millis(total - before));
            }
        }
        (Duration::ZERO, Duration::ZERO)
    }
}

/// A place that may stall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Point {
    /// The leader is about to write to the metastore (its write, and everything waiting for it, is late).
    BeforeMetastoreWrite,
    /// The leader's write succeeded; acting on it is late (its in-memory view lags what is durable).
    AfterMetastoreWrite,
    /// A master parked a task on an executor and is about to confirm it: the window between the two phases.
    BetweenPreDispatchAndConfirm,
    /// A master is about to renew its election lease.
    LeaseKeepAlive,
    /// The leader answered an executor's heartbeat; the reply leaves late.
    HeartbeatReply,
    /// An executor built its heartbeat and is about to send it (the heartbeat arrives stale).
    HeartbeatSend,
    /// A job master decided its answer to a worker's message; the answer leaves late.
    JobMasterReply,
    /// A worker computed its next checkpoint and is about to write it (the write arrives stale).
    CheckpointWrite,
    /// An executor accepted a dispatch (confirmed) and is about to start the task.
    DispatchAccept,
    /// The leader's liveness check found executors expired and is about to declare them offline.
    BeforeOfflineDeclaration,
    /// An executor received a dispatch's confirmation and is about to judge it (the confirmation is judged late:
    /// its master has given up on it, and may have started a newer incarnation meanwhile). Holds only.
    ConfirmReceived,
    /// A worker or job master built its heartbeat to its master and is about to send it (its master stops hearing
    /// it while its task goes on: the heartbeat arrives stale, or after the master lost it). Holds only.
    TaskHeartbeatSend,
}

impl Point {
    /// Every point, in order (reports list the points that never fired too).
    pub const ALL: [Point; 12] = [
        Point::BeforeMetastoreWrite,
        Point::AfterMetastoreWrite,
        Point::BetweenPreDispatchAndConfirm,
        Point::LeaseKeepAlive,
        Point::HeartbeatReply,
        Point::HeartbeatSend,
        Point::JobMasterReply,
        Point::CheckpointWrite,
        Point::DispatchAccept,
        Point::BeforeOfflineDeclaration,
        Point::ConfirmReceived,
        Point::TaskHeartbeatSend,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Point::BeforeMetastoreWrite => "before-metastore-write",
            Point::AfterMetastoreWrite => "after-metastore-write",
            Point::BetweenPreDispatchAndConfirm => "between-pre-dispatch-and-confirm",
            Point::LeaseKeepAlive => "lease-keep-alive",
            Point::HeartbeatReply => "heartbeat-reply",
            Point::HeartbeatSend => "heartbeat-send",
            Point::JobMasterReply => "job-master-reply",
            Point::CheckpointWrite => "checkpoint-write",
            Point::DispatchAccept => "dispatch-accept",
            Point::BeforeOfflineDeclaration => "before-offline-declaration",
            Point::ConfirmReceived => "confirm-received",
            Point::TaskHeartbeatSend => "task-heartbeat-send",
        }
    }

    /// The point of this name.
    pub fn from_name(name: &str) -> Option<Point> {
        Point::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether the point runs on a master (else on an executor: the executor itself, its job masters or workers).
    pub fn on_master(self) -> bool {
        matches!(
            self,
            Point::BeforeMetastoreWrite
                | Point::AfterMetastoreWrite
                | Point::BetweenPreDispatchAndConfirm
                | Point::LeaseKeepAlive
                | Point::HeartbeatReply
                | Point::BeforeOfflineDeclaration
        )
    }

    /// How often an enabled point fires at random, and the longest stall it makes; `None` for the points that
    /// only holds stall (so that adding one draws nothing more at random and moves no seed's stalls).
    fn shape(self) -> Option<(f64, Duration)> {
        match self {
            Point::BeforeMetastoreWrite | Point::AfterMetastoreWrite => Some((0.02, Duration::from_millis(1_500))),
            Point::BetweenPreDispatchAndConfirm => Some((0.1, Duration::from_secs(4))),
            Point::LeaseKeepAlive => Some((0.05, Duration::from_millis(2_000))),
            Point::HeartbeatReply => Some((0.01, Duration::from_millis(1_500))),
            Point::HeartbeatSend
            | Point::JobMasterReply
            | Point::CheckpointWrite
            | Point::DispatchAccept
            | Point::BeforeOfflineDeclaration
            | Point::ConfirmReceived
            | Point::TaskHeartbeatSend => None,
        }
    }
}

/// Stalls at `point` when the simulation says so: a hold of this node's first, else at random while the switch is
/// on.
#[cfg(madsim)]
pub async fn point(switch: &FaultPoints, point: Point) {
    use madsim::rand::Rng;
    if let Some((step, stall)) = switch.take_hold(point) {
        let observer = switch.node.observer.clone();
        if let Some(o) = &observer {
            o(step, point, stall, false);
        }
        tracing::info!(point = point.name(), ?stall, step, "held");
        switch.count(point);
        tokio::time::sleep(stall).await;
        if let Some(o) = &observer {
            o(step, point, stall, true);
        }
        return;
    }
    let Some((probability, longest)) = point.shape() else { return };
    if !switch.is_on() || !madsim::rand::thread_rng().gen_bool(probability) {
        return;
    }
    let stall = Duration::from_millis(madsim::rand::thread_rng().gen_range(0..=longest.as_millis() as u64));
    tracing::info!(point = point.name(), ?stall, "buggify");
    switch.count(point);
    tokio::time::sleep(stall).await;
}

/// Nothing, in production.
#[cfg(not(madsim))]
#[inline(always)]
pub async fn point(switch: &FaultPoints, point: Point) {
    let _ = (switch, point.shape());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_reads_back_by_its_name() {
        for p in Point::ALL {
            assert_eq!(Point::from_name(p.name()), Some(p));
        }
        assert_eq!(Point::from_name("nowhere"), None);
    }

    #[test]
    fn writes_in_flight_are_off_until_a_scenario_sets_them_and_draw_nothing() {
        let latency = FaultPoints::default().for_node(None).latency();
        assert_eq!(latency.in_flight(), Duration::ZERO);
        latency.set_in_flight(Duration::from_secs(30));
        // The node's handles share the dial.
        assert_eq!(latency.clone().in_flight(), Duration::from_secs(30));
        assert_eq!(latency.max(), Duration::ZERO, "the latency dial is apart");
        assert_eq!(latency.draw(), (Duration::ZERO, Duration::ZERO));
        latency.set_in_flight(Duration::ZERO);
        assert_eq!(latency.in_flight(), Duration::ZERO);
    }

    #[test]
    fn a_hold_fires_once_or_at_every_pass_until_released() {
        let fp = FaultPoints::default().for_node(None);
        let s = Duration::from_secs(7);
        fp.hold(3, Point::HeartbeatSend, s, false);
        fp.hold(4, Point::CheckpointWrite, s, true);
        assert_eq!(fp.take_hold(Point::HeartbeatSend), Some((3, s)));
        assert_eq!(fp.take_hold(Point::HeartbeatSend), None, "once: the next pass only");
        assert_eq!(fp.take_hold(Point::DispatchAccept), None);
        assert_eq!(fp.take_hold(Point::CheckpointWrite), Some((4, s)));
        assert_eq!(fp.take_hold(Point::CheckpointWrite), Some((4, s)), "every pass");
        fp.release(4);
        assert_eq!(fp.take_hold(Point::CheckpointWrite), None);
        // Another node's holds are its own.
        let other = fp.for_node(None);
        other.hold(1, Point::HeartbeatSend, s, true);
        assert_eq!(fp.take_hold(Point::HeartbeatSend), None);
    }
}
