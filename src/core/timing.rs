//! The timing rules that make failure handling safe (design.md §5 rule 3, §6), as one checked value.
//!
//! A master judges the processes that report to it (executors, or the job masters and workers one level
//! down) by heartbeats. [`HeartbeatTiming`] is the contract between the two sides, owned by the judging side
//! and announced to the reporting side, so the two can never disagree: the reporter stops its work
//! (self-fences) strictly before the judge declares it offline and hands the work to someone else.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Heartbeat timing between a master and what reports to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatTiming {
    /// How often the reporter heartbeats.
    pub interval: Duration,
    /// The deadline the reporter puts on each heartbeat RPC.
    pub timeout: Duration,
    /// With no acknowledged heartbeat for this long, the reporter stops all its work.
    pub self_fence: Duration,
    /// With no heartbeat for this long, the master declares the reporter offline.
    pub offline_ttl: Duration,
}

/// A timing rule a configuration breaks. `what` names the section (`executors`, `workers`).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TimingError {
    #[error("{what}.{setting} is zero; it must be a positive duration")]
    Zero { what: &'static str, setting: &'static str },
    #[error(
        "{what}.self-fence ({self_fence:?}) must be shorter than {what}.offline-ttl ({offline_ttl:?}) minus \
         {what}.heartbeat-timeout ({timeout:?}): the reporter must stop its work before the master gives the work \
         to someone else (rule: self-fence < offline TTL - heartbeat deadline)"
    )]
    FenceNotBeforeOffline { what: &'static str, self_fence: Duration, offline_ttl: Duration, timeout: Duration },
    #[error(
        "{what}.self-fence ({self_fence:?}) must be longer than {what}.heartbeat-interval ({interval:?}) plus \
         {what}.heartbeat-timeout ({timeout:?}): one late heartbeat must not stop all the work \
         (rule: self-fence > heartbeat interval + heartbeat deadline)"
    )]
    FenceTooTight { what: &'static str, self_fence: Duration, interval: Duration, timeout: Duration },
}

impl HeartbeatTiming {
    /// Checks the safety orderings. `what` names the configuration section in messages.
    pub fn validate(&self, what: &'static str) -> Result<(), TimingError> {
        for (setting, d) in [
            ("heartbeat-interval", self.interval),
            ("heartbeat-timeout", self.timeout),
            ("self-fence", self.self_fence),
            ("offline-ttl", self.offline_ttl),
        ] {
            if d.is_zero() {
                return Err(TimingError::Zero { what, setting });
            }
        }
        if self.self_fence + self.timeout >= self.offline_ttl {
            return Err(TimingError::FenceNotBeforeOffline {
                what,
                self_fence: self.self_fence,
                offline_ttl: self.offline_ttl,
                timeout: self.timeout,
            });
        }
        if self.self_fence <= self.interval + self.timeout {
            return Err(TimingError::FenceTooTight {
                what,
                self_fence: self.self_fence,
                interval: self.interval,
                timeout: self.timeout,
            });
        }
        Ok(())
    }

    /// The design defaults for executors (design.md §6): heartbeat 500 ms with a 1 s deadline, self-fence 8 s,
    /// offline after 10 s.
    pub fn executor_default() -> HeartbeatTiming {
        HeartbeatTiming {
            interval: Duration::from_millis(500),
            timeout: Duration::from_secs(1),
            self_fence: Duration::from_secs(8),
            offline_ttl: Duration::from_secs(10),
        }
    }

    /// The design defaults for job masters and workers (design.md §6): heartbeat 1 s with a 1 s deadline,
    /// self-fence 10 s, offline after 12 s.
    pub fn worker_default() -> HeartbeatTiming {
        HeartbeatTiming {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            self_fence: Duration::from_secs(10),
            offline_ttl: Duration::from_secs(12),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(interval: u64, timeout: u64, fence: u64, ttl: u64) -> HeartbeatTiming {
        HeartbeatTiming {
            interval: Duration::from_millis(interval),
            timeout: Duration::from_millis(timeout),
            self_fence: Duration::from_millis(fence),
            offline_ttl: Duration::from_millis(ttl),
        }
    }

    #[test]
    fn defaults_are_valid() {
        HeartbeatTiming::executor_default().validate("executors").unwrap();
        HeartbeatTiming::worker_default().validate("workers").unwrap();
    }

    #[test]
    fn rules_table() {
        // (timing, expected outcome)
        let table: &[(HeartbeatTiming, Option<&str>)] = &[
            (t(500, 1000, 8000, 10_000), None),
            (t(500, 1000, 8999, 10_000), None),
            (t(500, 1000, 9000, 10_000), Some("rule: self-fence < offline TTL - heartbeat deadline")),
            (t(500, 1000, 12_000, 10_000), Some("rule: self-fence < offline TTL - heartbeat deadline")),
            (t(500, 1000, 1500, 10_000), Some("rule: self-fence > heartbeat interval + heartbeat deadline")),
            (t(0, 1000, 8000, 10_000), Some("heartbeat-interval is zero")),
            (t(500, 0, 8000, 10_000), Some("heartbeat-timeout is zero")),
            (t(500, 1000, 0, 10_000), Some("self-fence is zero")),
            (t(500, 1000, 8000, 0), Some("offline-ttl is zero")),
        ];
        for (timing, want) in table {
            match (timing.validate("executors"), want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => assert!(e.to_string().contains(w), "{e} should contain {w}"),
                (got, want) => panic!("{timing:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
