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

/// The clock faults a configuration tolerates (README, "Clock tolerance"): every node's clock runs within
/// `1 ± rate` of true time, and no node's clock jumps forward by more than `jump` in total within one TTL.
///
/// Derived from the orderings of design.md §5 and §6, each judged by two clocks. A reporter whose clock runs at
/// `r_e` stops its work `self_fence / r_e` true seconds after its last acknowledged heartbeat (at most a heartbeat
/// deadline after the judge heard it; RPC deadlines run in true time); a judge whose clock runs at `r_m` and
/// jumps forward by `j` declares it offline no sooner than `(offline_ttl - j) / r_m` after it last heard it. So,
/// at both levels, with the reporter as slow and the judge as fast as the band allows:
///
/// `self_fence / (1 - rate) + heartbeat_timeout < (offline_ttl - jump) / (1 + rate)`.
///
/// A leader acts until `step_down / r_m` after a keep-alive was sent, and etcd may expire its lease `lease_ttl - 1s`
/// after it received it (a jump only shortens the acting): `step_down / (1 - rate) < lease_ttl - 1s`. A
/// reservation is judged by the leader and its task reported by the executor's heartbeat:
/// `heartbeat_interval / (1 - rate) < reservation_ttl / (1 + rate)` (a jump of the leader's clock counts too).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockTolerance {
    /// The largest relative error of any node's clock rate (0.05: every clock between 0.95× and 1.05×).
    pub rate: f64,
    /// The most any node's clock may jump forward, in total, within one offline TTL.
    pub jump: Duration,
}

/// One ordering between a reporter's deadline and a judge's, as [`ClockTolerance`] states it: whether
/// `reporter / (1 - rate) + fixed < (judge - jump) / (1 + rate)`.
pub fn ordering_holds(reporter: Duration, fixed: Duration, judge: Duration, rate: f64, jump: Duration) -> bool {
    if !(0.0..1.0).contains(&rate) || jump >= judge {
        return false;
    }
    let slow = reporter.as_secs_f64() / (1.0 - rate) + fixed.as_secs_f64();
    let fast = (judge - jump).as_secs_f64() / (1.0 + rate);
    slow < fast
}

/// The largest rate error (to a millionth) for which `holds(rate)` is true, `holds` being monotonic (true up to
/// some error, false beyond); 0 when it fails even for exact clocks.
pub fn largest_rate(holds: impl Fn(f64) -> bool) -> f64 {
    if !holds(0.0) {
        return 0.0;
    }
    let (mut lo, mut hi) = (0u64, 1_000_000u64);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if holds(mid as f64 / 1e6) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo as f64 / 1e6
}

impl HeartbeatTiming {
    /// Whether this contract's safety ordering holds with every clock within `1 ± rate` and the judge's clock
    /// jumping forward by `jump` (see [`ClockTolerance`]).
    pub fn tolerates(&self, rate: f64, jump: Duration) -> bool {
        ordering_holds(self.self_fence, self.timeout, self.offline_ttl, rate, jump)
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
    fn clock_tolerance_of_the_defaults() {
        let (ex, wo) = (HeartbeatTiming::executor_default(), HeartbeatTiming::worker_default());
        let rate = |t: HeartbeatTiming| largest_rate(|r| t.tolerates(r, Duration::ZERO));
        // 8/(1-r) + 1 < 10/(1+r) and 10/(1-r) + 1 < 12/(1+r).
        assert!((0.055..0.056).contains(&rate(ex)), "{}", rate(ex));
        assert!((0.045..0.046).contains(&rate(wo)), "{}", rate(wo));
        assert!(ex.tolerates(0.0, Duration::from_millis(999)) && !ex.tolerates(0.0, Duration::from_secs(1)));
        assert!(!ex.tolerates(0.5, Duration::ZERO), "an executor at 0.5x fences after 16 s: far beyond");
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
