//! Where a follower forwards leader-only calls: the leader it last found in the metastore, trusted for a short
//! while and forgotten as soon as a forward shows it wrong.
//!
//! A follower used to read the leader's key for every call it forwarded: at 1,000 executors, most of the masters'
//! metastore requests (76-121 reads a second in the scale runs). A leader changes rarely, and a forward to a master
//! that no longer leads costs one refused call (a forwarded call is never forwarded again: the old leader answers
//! "not the leader"), after which the next call reads the key again. The age bound only limits how long a hint
//! outlives a leader change that no forwarded call has run into.

use std::time::Duration;

use super::time::Time;

/// How long a follower forwards to the leader it found without reading the leader's key again.
pub const HINT_AGE: Duration = Duration::from_secs(1);

/// The leader a follower last found, and when.
#[derive(Clone, Debug)]
pub struct LeaderHint<T> {
    found: Option<(T, Time)>,
}

impl<T> Default for LeaderHint<T> {
    fn default() -> LeaderHint<T> {
        LeaderHint { found: None }
    }
}

impl<T: Clone> LeaderHint<T> {
    /// The leader to forward to at `now`, if one was found less than [`HINT_AGE`] before.
    pub fn get(&self, now: Time) -> Option<T> {
        match &self.found {
            Some((v, at)) if now.saturating_since(*at) < HINT_AGE => Some(v.clone()),
            _ => None,
        }
    }

    /// The metastore named `leader` at `now` (`None`: nobody leads, or this master is taking over).
    pub fn found(&mut self, leader: Option<T>, now: Time) {
        self.found = leader.map(|v| (v, now));
    }

    /// A forward to `to` was not reached, or `to` said it does not lead: the hint is forgotten if it still names it.
    pub fn missed(&mut self, to: &T)
    where
        T: PartialEq,
    {
        if self.found.as_ref().is_some_and(|(v, _)| v == to) {
            self.found = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    #[test]
    fn a_found_leader_is_trusted_for_the_hint_age_only() {
        let mut h = LeaderHint::default();
        assert_eq!(h.get(at(0)), None);
        h.found(Some("a"), at(1_000));
        assert_eq!(h.get(at(1_000)), Some("a"));
        assert_eq!(h.get(at(1_999)), Some("a"));
        assert_eq!(h.get(at(2_000)), None);
        h.found(None, at(2_000));
        assert_eq!(h.get(at(2_001)), None);
    }

    #[test]
    fn a_missed_forward_forgets_the_leader_it_went_to_and_no_other() {
        let mut h = LeaderHint::default();
        h.found(Some("a"), at(0));
        // A miss of a leader found before the current one changes nothing.
        h.missed(&"b");
        assert_eq!(h.get(at(10)), Some("a"));
        h.missed(&"a");
        assert_eq!(h.get(at(10)), None);
    }
}
