//! Self-fencing: the reporting side of a heartbeat (design.md §5 rule 3).
//!
//! An executor (towards the leader) and a job master or worker (towards its master) keep a [`SelfFence`]. The
//! fence deadline is the *send time* of the newest acknowledged heartbeat plus the self-fence duration. Anchoring
//! at the send time, not at the reply's arrival, keeps the reporter's deadline no later than the judge's view:
//! the judge accepted that heartbeat after it was sent, so its offline TTL runs from a later instant. A reply from
//! an older epoch than one already seen is not an acknowledgement (a deposed master cannot keep anyone alive).
//!
//! Invariants: the deadline never moves backwards; the known epoch never decreases.

use std::time::Duration;

use super::time::Time;

/// How a reply was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ack<E> {
    /// It acknowledged the heartbeat; the fence deadline moved to this time.
    Extended(Time),
    /// It came from an older epoch than one already seen: ignored.
    StaleSender { seen: E },
}

/// A reporter's self-fence timer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelfFence<E> {
    self_fence: Duration,
    /// The send time of the newest acknowledged heartbeat, or when fencing started.
    anchor: Time,
    epoch: E,
}

impl<E: Copy + Ord + Default> SelfFence<E> {
    /// A fence that starts counting at `start`: a reporter that hears nothing fences itself at
    /// `start + self_fence`.
    pub fn new(start: Time, self_fence: Duration) -> SelfFence<E> {
        SelfFence { self_fence, anchor: start, epoch: E::default() }
    }

    /// The highest epoch of the judging side seen so far.
    pub fn epoch(&self) -> E {
        self.epoch
    }

    /// The reporter must have stopped its work by this time unless a newer heartbeat is acknowledged.
    pub fn deadline(&self) -> Time {
        self.anchor + self.self_fence
    }

    /// Whether the reporter is fenced at `now`.
    pub fn is_fenced(&self, now: Time) -> bool {
        now >= self.deadline()
    }

    /// The self-fence duration changed: the judge announced new timing, together with the offline TTL it now
    /// applies, so the new duration takes effect at once.
    pub fn set_duration(&mut self, self_fence: Duration) {
        self.self_fence = self_fence;
    }

    /// A reply from a judge at `epoch` acknowledged the heartbeat sent at `sent_at`.
    pub fn on_ack(&mut self, sent_at: Time, epoch: E) -> Ack<E> {
        if epoch < self.epoch {
            return Ack::StaleSender { seen: self.epoch };
        }
        self.epoch = epoch;
        self.anchor = self.anchor.max(sent_at);
        Ack::Extended(self.deadline())
    }

    /// Learned of a judge epoch without an acknowledgement (a refusal that names the judge's epoch).
    pub fn observe_epoch(&mut self, epoch: E) {
        self.epoch = self.epoch.max(epoch);
    }
}

/// How long a draining worker told it is stale may still take over its last step (the checkpoint that says it
/// stopped, guarded by its epoch), from `now`: twice the call timeout, so that the next job master need not wait a
/// whole recovery window for it, and never past its own fence `deadline`: a recovering job master gives up on it
/// after the offline TTL, longer than the fence, so its successor may start once the fence has passed (swarm seeds
/// 1796703745 and 1796705496: that write held 13 s, twice the call timeout outlasted the new job master's recovery
/// wait, and the two incarnations overlapped by a tenth of a second).
pub fn stale_linger(now: Time, call_timeout: Duration, deadline: Time) -> Duration {
    (call_timeout * 2).min(deadline.saturating_since(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ids::LeaderEpoch;

    #[test]
    fn a_stale_worker_lingers_twice_the_call_timeout_and_never_past_its_fence() {
        let now = Time::from_millis(10_000);
        let call = Duration::from_secs(3);
        assert_eq!(stale_linger(now, call, Time::from_millis(60_000)), Duration::from_secs(6));
        assert_eq!(stale_linger(now, call, Time::from_millis(12_500)), Duration::from_millis(2_500));
        assert_eq!(stale_linger(now, call, Time::from_millis(9_000)), Duration::ZERO, "already past its fence");
    }

    fn ms(n: u64) -> Time {
        Time::from_millis(n)
    }

    #[test]
    fn fences_from_the_send_time_of_the_newest_ack() {
        let mut f: SelfFence<LeaderEpoch> = SelfFence::new(ms(0), Duration::from_secs(8));
        assert_eq!(f.deadline(), ms(8000));
        assert_eq!(f.on_ack(ms(500), LeaderEpoch(1)), Ack::Extended(ms(8500)));
        // A late reply to an older heartbeat never moves the deadline back.
        assert_eq!(f.on_ack(ms(200), LeaderEpoch(1)), Ack::Extended(ms(8500)));
        assert!(!f.is_fenced(ms(8499)));
        assert!(f.is_fenced(ms(8500)));
    }

    #[test]
    fn replies_from_an_older_epoch_do_not_acknowledge() {
        let mut f: SelfFence<LeaderEpoch> = SelfFence::new(ms(0), Duration::from_secs(8));
        f.on_ack(ms(100), LeaderEpoch(3));
        assert_eq!(f.on_ack(ms(900), LeaderEpoch(2)), Ack::StaleSender { seen: LeaderEpoch(3) });
        assert_eq!(f.deadline(), ms(8100));
        f.observe_epoch(LeaderEpoch(5));
        assert_eq!(f.on_ack(ms(900), LeaderEpoch(4)), Ack::StaleSender { seen: LeaderEpoch(5) });
        assert_eq!(f.on_ack(ms(900), LeaderEpoch(5)), Ack::Extended(ms(8900)));
    }
}
