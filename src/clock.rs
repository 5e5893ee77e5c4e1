//! The runtime's clock, as `src/core` sees time: milliseconds since the node started.
//!
//! The one place outside the core that reads the time, through `tokio::time` only: real time in the production
//! build, simulated time in the simulation build (where madsim serves `Instant::now` from its virtual clock). The
//! wall clock is read here too ([`wall_now`]), for the few times that must be stored and compared between masters.

use std::time::Duration;

use crate::core::time::{Time, WallTime};

/// A node's clock; cheap to copy.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    // In the simulation build `tokio::time::Instant` is std's, whose `now` madsim virtualises; clippy sees the std
    // path it bans elsewhere.
    #[allow(clippy::disallowed_methods)]
    pub fn start() -> Clock {
        Clock { origin: tokio::time::Instant::now() }
    }

    /// An instant as this clock's time (instants before the start read as zero).
    pub fn at(&self, when: tokio::time::Instant) -> Time {
        Time::from_millis(u64::try_from(when.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX))
    }

    pub fn now(&self) -> Time {
        Time::from_millis(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// The instant of core time `t`, for timers.
    pub fn instant(&self, t: Time) -> tokio::time::Instant {
        self.origin + Duration::from_millis(t.as_millis())
    }
}

/// The wall clock now: the time a master stores where another master must judge it later (a deleted job's
/// tombstone). Simulated in the simulation build (madsim serves `SystemTime::now` from its virtual clock, from a
/// start drawn by the seed).
// why: the one wall-clock read; its readers allow for the skew between masters' clocks.
#[allow(clippy::disallowed_methods)]
pub fn wall_now() -> WallTime {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    WallTime(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
}
