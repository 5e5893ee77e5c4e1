//! Whom an executor heartbeats: a master it joined through, or the leader itself once a reply has named the
//! leader's address.
//!
//! Any master takes an executor's calls (followers forward them), so an executor that joined through a follower
//! used to send every heartbeat through it: two calls per heartbeat, and a follower busy with work that is not
//! its own (a quarter to a third of the standard scenario's heartbeat calls were forwards). A leader now says where it is in each
//! heartbeat reply, and the executor calls that address directly from then on.
//!
//! A direct call that goes unanswered or is refused sends the executor back to the masters it joined through, and
//! that address is not called directly again during the same term: an executor that can reach a follower but not
//! the leader's advertised address (a partition, an address only the masters can route) keeps heartbeating
//! through the follower instead of losing every other heartbeat to a call that cannot arrive. A later term (a
//! higher leader epoch named in a reply) is a new chance, even at the same address.

use super::ids::LeaderEpoch;

/// An executor's choice between its joined masters and the leader's own address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderRoute {
    /// The leader's address, called instead of the joined masters.
    direct: Option<(String, LeaderEpoch)>,
    /// The leader address a direct call missed, and its term: not called directly again in that term.
    shunned: Option<(String, LeaderEpoch)>,
}

impl LeaderRoute {
    /// The address to call instead of the joined masters, if any.
    pub fn direct(&self) -> Option<&str> {
        self.direct.as_ref().map(|(a, _)| a.as_str())
    }

    /// A useful reply to a call sent to `called` said the leader of term `epoch` is at `leader` (empty: the
    /// reply did not say, as from a master of an older version).
    pub fn answered(&mut self, called: &str, leader: &str, epoch: LeaderEpoch) {
        if leader.is_empty() {
            return;
        }
        if self.shunned.as_ref().is_some_and(|(a, e)| a == leader && *e >= epoch) {
            return;
        }
        if leader == called && self.direct.is_none() {
            // A joined master that leads: calling it already goes straight to the leader.
            return;
        }
        self.direct = Some((leader.to_owned(), epoch));
    }

    /// A direct call went unanswered or was refused: back to the joined masters, and that address is not called
    /// directly again in the term it was learned in. Nothing changes when no call was direct.
    pub fn missed(&mut self) {
        if let Some(d) = self.direct.take() {
            self.shunned = Some(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const J: &str = "join:1";
    const L: &str = "leader:1";

    #[test]
    fn a_forwarded_reply_sends_the_next_call_to_the_leader() {
        let mut r = LeaderRoute::default();
        assert_eq!(r.direct(), None);
        r.answered(J, L, LeaderEpoch(3));
        assert_eq!(r.direct(), Some(L));
        // The leader's own replies keep it there.
        r.answered(L, L, LeaderEpoch(3));
        assert_eq!(r.direct(), Some(L));
    }

    #[test]
    fn a_joined_master_that_leads_or_a_silent_reply_changes_nothing() {
        let mut r = LeaderRoute::default();
        r.answered(L, L, LeaderEpoch(3));
        assert_eq!(r.direct(), None);
        r.answered(J, "", LeaderEpoch(3));
        assert_eq!(r.direct(), None);
    }

    #[test]
    fn a_missed_direct_call_is_not_repeated_in_the_same_term() {
        let mut r = LeaderRoute::default();
        r.answered(J, L, LeaderEpoch(3));
        r.missed();
        assert_eq!(r.direct(), None);
        // The joined master still forwards to the same leader: stay with it.
        r.answered(J, L, LeaderEpoch(3));
        assert_eq!(r.direct(), None);
        // A new term, even at the same address, is called directly again.
        r.answered(J, L, LeaderEpoch(4));
        assert_eq!(r.direct(), Some(L));
    }

    #[test]
    fn a_new_leader_named_by_the_old_one_is_followed() {
        let mut r = LeaderRoute::default();
        r.answered(J, L, LeaderEpoch(3));
        // The old leader, called directly, now follows and forwards to the new one.
        r.answered(L, "other:1", LeaderEpoch(4));
        assert_eq!(r.direct(), Some("other:1"));
        r.missed();
        r.answered(J, "other:1", LeaderEpoch(4));
        assert_eq!(r.direct(), None);
        // Another leader's address is not shunned.
        r.answered(J, L, LeaderEpoch(5));
        assert_eq!(r.direct(), Some(L));
    }

    #[test]
    fn a_miss_with_no_direct_call_changes_nothing() {
        let mut r = LeaderRoute::default();
        r.missed();
        assert_eq!(r, LeaderRoute::default());
    }
}
