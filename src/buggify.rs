//! Fault points (FoundationDB's `BUGGIFY`): the places where timing matters most may, in the simulation, stall on
//! purpose, so that a seed explores the interleavings a slow disk, a descheduled thread or a long GC pause would
//! make. Each point only delays (the work still happens, later): whatever a checker then finds is a real bug.
//!
//! In the production build a point is an empty inline function. In the simulation build it fires only while the
//! node's [`FaultPoints`] switch is on (a scenario hands one switch to every node it builds, and turns it off when
//! the faults heal), with the point's probability, and draws its stall from the seed; so a seed replays its stalls
//! exactly, and runs that leave the switch off draw nothing from it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The switch of a run's fault points, shared by the nodes a scenario builds (off unless turned on), and the count
/// of stalls each point made (for the simulator's coverage report).
#[derive(Clone, Debug, Default)]
pub struct FaultPoints {
    on: Arc<AtomicBool>,
    fired: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

impl FaultPoints {
    pub fn set(&self, on: bool) {
        self.on.store(on, Ordering::SeqCst);
    }

    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::SeqCst)
    }

    /// How many stalls each point made so far, by the point's name (points that never fired are absent).
    pub fn fired(&self) -> BTreeMap<&'static str, u64> {
        self.fired.lock().map(|f| f.clone()).unwrap_or_default()
    }

    #[cfg(madsim)]
    fn count(&self, point: Point) {
        if let Ok(mut fired) = self.fired.lock() {
            *fired.entry(point.name()).or_default() += 1;
        }
    }
}

/// A place that may stall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

impl Point {
    /// Every point, for reports that must show the points that never fired too.
    pub const ALL: [Point; 5] = [
        Point::BeforeMetastoreWrite,
        Point::AfterMetastoreWrite,
        Point::BetweenPreDispatchAndConfirm,
        Point::LeaseKeepAlive,
        Point::HeartbeatReply,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Point::BeforeMetastoreWrite => "before-metastore-write",
            Point::AfterMetastoreWrite => "after-metastore-write",
            Point::BetweenPreDispatchAndConfirm => "between-pre-dispatch-and-confirm",
            Point::LeaseKeepAlive => "lease-keep-alive",
            Point::HeartbeatReply => "heartbeat-reply",
        }
    }

    /// How often an enabled point fires, and the longest stall it makes.
    fn shape(self) -> (f64, Duration) {
        match self {
            Point::BeforeMetastoreWrite | Point::AfterMetastoreWrite => (0.02, Duration::from_millis(1_500)),
            Point::BetweenPreDispatchAndConfirm => (0.1, Duration::from_secs(4)),
            Point::LeaseKeepAlive => (0.05, Duration::from_millis(2_000)),
            Point::HeartbeatReply => (0.01, Duration::from_millis(1_500)),
        }
    }
}

/// Stalls at `point` when the simulation says so.
#[cfg(madsim)]
pub async fn point(switch: &FaultPoints, point: Point) {
    use madsim::rand::Rng;
    let (probability, longest) = point.shape();
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
