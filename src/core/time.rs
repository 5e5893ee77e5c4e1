//! Time as the core sees it: a point on one node's monotonic clock, passed in by the caller.
//!
//! The core never reads a clock. The async layer turns its runtime's `Instant` into a [`Time`] (milliseconds since
//! the node started) and hands it to every entry point, so the same decisions run under the simulator's virtual
//! clock, in property tests with made-up times, and in production.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A point in time on one node's monotonic clock, in milliseconds since an arbitrary origin.
///
/// Times from different nodes are not comparable; nothing durable stores a [`Time`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Time(u64);

impl Time {
    /// The origin.
    pub const ZERO: Time = Time(0);
    /// A time later than any the core will ever be given; used as "never".
    pub const NEVER: Time = Time(u64::MAX);

    /// The time `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Time {
        Time(millis)
    }

    /// Milliseconds since the origin.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The time `d` later, saturating at [`Time::NEVER`].
    pub fn saturating_add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(millis_of(d)))
    }

    /// How long after `earlier` this is; zero if it is not later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        self.saturating_add(d)
    }
}

impl Sub<Time> for Time {
    type Output = Duration;
    fn sub(self, earlier: Time) -> Duration {
        self.saturating_since(earlier)
    }
}

impl fmt::Display for Time {
    /// `12.500s`, the form story logs use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Time::NEVER {
            return f.write_str("never");
        }
        write!(f, "{}.{:03}s", self.0 / 1000, self.0 % 1000)
    }
}

/// A wall-clock time: milliseconds since the Unix epoch, as some master's clock read it. Unlike [`Time`], it
/// may be stored and compared between masters, within the clock skew between them; it is used only where a
/// decision must outlive a leader (a deleted job's tombstone), and always with a margin for that skew.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WallTime(pub u64);

/// A duration in whole milliseconds, saturating (durations beyond 584 million years are "forever").
pub fn millis_of(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The earlier of two optional deadlines.
pub fn earliest(a: Option<Time>, b: Option<Time>) -> Option<Time> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Time::from_millis(5) + Duration::from_millis(7), Time::from_millis(12));
        assert_eq!(Time::NEVER + Duration::from_secs(1), Time::NEVER);
        assert_eq!(Time::from_millis(5) - Time::from_millis(9), Duration::ZERO);
        assert_eq!(Time::from_millis(9) - Time::from_millis(5), Duration::from_millis(4));
    }

    #[test]
    fn display_reads_as_seconds() {
        assert_eq!(Time::from_millis(12_500).to_string(), "12.500s");
        assert_eq!(Time::from_millis(7).to_string(), "0.007s");
        assert_eq!(Time::NEVER.to_string(), "never");
    }

    #[test]
    fn earliest_prefers_some() {
        let (a, b) = (Time::from_millis(1), Time::from_millis(2));
        assert_eq!(earliest(Some(a), Some(b)), Some(a));
        assert_eq!(earliest(None, Some(b)), Some(b));
        assert_eq!(earliest(Some(a), None), Some(a));
        assert_eq!(earliest(None, None), None);
    }
}
