//! Leadership of one master (design.md §5 rule 1).
//!
//! A master acts as leader only while it holds the election *and* its lease was renewed recently enough: the
//! leader stops acting `step_down` after the send time of its newest successful lease keep-alive, which is shorter
//! than the lease TTL (minus the simulated etcd's early expiry), so it stops before etcd can let anyone else win.
//! Every term has a strictly larger leader epoch; a master that sees a larger epoch than its own steps down.
//!
//! Invariants: at most one term at a time on this master; epochs of successive terms strictly increase; the
//! acting deadline never exceeds the newest keep-alive's send time plus `step_down`.

use std::time::Duration;

use thiserror::Error;

use super::ids::LeaderEpoch;
use super::time::Time;

/// Why a term could not begin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum LeadershipError {
    #[error("leader epoch {got} is not above the highest seen, {seen}")]
    EpochNotNewer { got: LeaderEpoch, seen: LeaderEpoch },
}

/// Why a term ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepDown {
    /// No keep-alive succeeded within the step-down deadline.
    LeaseUnconfirmed,
    /// The election (or a resign) ended it.
    Lost,
    /// Someone showed a larger leader epoch.
    Superseded { seen: LeaderEpoch },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Follower,
    Leader { epoch: LeaderEpoch, acting_until: Time },
}

/// One master's view of its own leadership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leadership {
    step_down: Duration,
    role: Role,
    highest_seen: LeaderEpoch,
    /// A planted bug (the simulation's bug-finding runs only): the step-down deadline is ignored.
    ignore_deadline: bool,
}

impl Leadership {
    pub fn new(step_down: Duration) -> Leadership {
        Leadership { step_down, role: Role::Follower, highest_seen: LeaderEpoch::NONE, ignore_deadline: false }
    }

    /// Won the election with `epoch`; `keepalive_sent_at` is the send time of the newest keep-alive that
    /// succeeded (or of the lease grant).
    pub fn become_leader(&mut self, epoch: LeaderEpoch, keepalive_sent_at: Time) -> Result<(), LeadershipError> {
        if epoch <= self.highest_seen {
            return Err(LeadershipError::EpochNotNewer { got: epoch, seen: self.highest_seen });
        }
        self.highest_seen = epoch;
        self.role = Role::Leader { epoch, acting_until: keepalive_sent_at + self.step_down };
        Ok(())
    }

    /// A lease keep-alive sent at `sent_at` succeeded.
    pub fn on_keepalive(&mut self, sent_at: Time) {
        if let Role::Leader { acting_until, .. } = &mut self.role {
            *acting_until = (*acting_until).max(sent_at + self.step_down);
        }
    }

    /// The term ended for `why`. Returns the epoch of the term that ended, if one was running.
    pub fn step_down(&mut self, why: StepDown) -> Option<LeaderEpoch> {
        if let StepDown::Superseded { seen } = why {
            self.highest_seen = self.highest_seen.max(seen);
        }
        match std::mem::replace(&mut self.role, Role::Follower) {
            Role::Leader { epoch, .. } => Some(epoch),
            Role::Follower => None,
        }
    }

    /// Someone showed leader epoch `seen`: a leader with a smaller one steps down.
    pub fn observe_epoch(&mut self, seen: LeaderEpoch) -> Option<LeaderEpoch> {
        self.highest_seen = self.highest_seen.max(seen);
        match self.role {
            Role::Leader { epoch, .. } if seen > epoch => self.step_down(StepDown::Superseded { seen }),
            _ => None,
        }
    }

    /// Plants the bug "no step-down": a leader keeps acting past its deadline, until something else ends its term
    /// (the simulation's bug-finding runs only).
    pub fn plant_ignore_deadline(&mut self) {
        self.ignore_deadline = true;
    }

    /// Time-driven: steps down when the acting deadline passed. Returns the ended term's epoch.
    pub fn tick(&mut self, now: Time) -> Option<LeaderEpoch> {
        match self.role {
            Role::Leader { acting_until, .. } if now >= acting_until && !self.ignore_deadline => {
                self.step_down(StepDown::LeaseUnconfirmed)
            }
            _ => None,
        }
    }

    /// The epoch to act under at `now`, if this master may act as leader. Every leader action checks this first.
    pub fn acting(&self, now: Time) -> Option<LeaderEpoch> {
        match self.role {
            Role::Leader { epoch, acting_until } if now < acting_until || self.ignore_deadline => Some(epoch),
            _ => None,
        }
    }

    /// The current term's epoch, acting or not (a leader past its deadline steps down on the next tick).
    pub fn epoch(&self) -> Option<LeaderEpoch> {
        match self.role {
            Role::Leader { epoch, .. } => Some(epoch),
            Role::Follower => None,
        }
    }

    /// When the leader must stop acting, if it is one.
    pub fn deadline(&self) -> Option<Time> {
        match self.role {
            Role::Leader { acting_until, .. } if !self.ignore_deadline => Some(acting_until),
            _ => None,
        }
    }

    pub fn highest_seen(&self) -> LeaderEpoch {
        self.highest_seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Time {
        Time::from_millis(n)
    }

    #[test]
    fn acts_only_until_the_step_down_deadline() {
        let mut l = Leadership::new(Duration::from_secs(3));
        assert_eq!(l.acting(ms(0)), None);
        l.become_leader(LeaderEpoch(1), ms(100)).unwrap();
        assert_eq!(l.acting(ms(3099)), Some(LeaderEpoch(1)));
        assert_eq!(l.acting(ms(3100)), None);
        l.on_keepalive(ms(1000));
        assert_eq!(l.acting(ms(3999)), Some(LeaderEpoch(1)));
        // An older keep-alive finishing late does not shorten or extend anything.
        l.on_keepalive(ms(500));
        assert_eq!(l.deadline(), Some(ms(4000)));
        assert_eq!(l.tick(ms(3999)), None);
        assert_eq!(l.tick(ms(4000)), Some(LeaderEpoch(1)));
        assert_eq!(l.acting(ms(3000)), None, "stepped down for good");
    }

    #[test]
    fn epochs_strictly_increase_across_terms() {
        let mut l = Leadership::new(Duration::from_secs(3));
        l.become_leader(LeaderEpoch(2), ms(0)).unwrap();
        assert_eq!(l.step_down(StepDown::Lost), Some(LeaderEpoch(2)));
        assert_eq!(
            l.become_leader(LeaderEpoch(2), ms(0)),
            Err(LeadershipError::EpochNotNewer { got: LeaderEpoch(2), seen: LeaderEpoch(2) })
        );
        l.become_leader(LeaderEpoch(3), ms(0)).unwrap();
    }

    #[test]
    fn a_larger_epoch_seen_deposes() {
        let mut l = Leadership::new(Duration::from_secs(3));
        l.become_leader(LeaderEpoch(2), ms(0)).unwrap();
        assert_eq!(l.observe_epoch(LeaderEpoch(2)), None);
        assert_eq!(l.observe_epoch(LeaderEpoch(4)), Some(LeaderEpoch(2)));
        assert_eq!(l.acting(ms(1)), None);
        assert!(l.become_leader(LeaderEpoch(3), ms(1)).is_err());
    }
}
