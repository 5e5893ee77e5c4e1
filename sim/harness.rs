//! What every scenario shares: the simulated clock in core time, a recorder nodes report to, and the seed banner.
//!
//! The recorder is handed to each node when the scenario builds it, never reached through a global: all simulated
//! nodes share one process, and statics would leak between nodes and between seeds.

use std::sync::{Arc, Mutex};

use foreman::core::time::Time;

/// The simulated clock, as the core sees time: milliseconds since the scenario began.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    // madsim's `tokio::time::Instant` is std's, whose `now` madsim serves from the simulated clock: this read
    // is deterministic here, though clippy sees the std path it bans elsewhere.
    #[allow(clippy::disallowed_methods)]
    pub fn start() -> Clock {
        Clock { origin: tokio::time::Instant::now() }
    }

    /// An instant as scenario time.
    pub fn at(&self, when: tokio::time::Instant) -> Time {
        Time::from_millis(u64::try_from(when.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX))
    }

    pub fn now(&self) -> Time {
        Time::from_millis(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}

/// An append-only log of what nodes saw, in simulated-time order, shared by the nodes of one run.
#[derive(Clone, Debug)]
pub struct Recorder<E> {
    events: Arc<Mutex<Vec<(Time, String, E)>>>,
    clock: Clock,
}

impl<E: Clone + std::fmt::Debug> Recorder<E> {
    pub fn new(clock: Clock) -> Recorder<E> {
        Recorder { events: Arc::new(Mutex::new(Vec::new())), clock }
    }

    /// Records `event` seen by `node` now, and tells the story line.
    pub fn record(&self, node: &str, event: E) {
        let at = self.clock.now();
        tracing::info!("t={at} {node} {event:?}");
        self.events.lock().expect("recorder lock").push((at, node.to_owned(), event));
    }

    pub fn events(&self) -> Vec<(Time, String, E)> {
        self.events.lock().expect("recorder lock").clone()
    }
}

/// Prints the seed first, so every run (and every failure) says how to replay it.
pub fn announce(scenario: &str) -> u64 {
    let seed = madsim::runtime::Handle::current().seed();
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    eprintln!("scenario {scenario} seed {seed}: replay with MADSIM_TEST_SEED={seed} cargo stest --test sim {scenario}");
    seed
}
