//! The term's write fence (design.md §5 rule 1): what makes a leader's writes land in the order it made them, and
//! never after a later leader took over.
//!
//! A new leader takes the fence before it recovers anything: it puts its own value on the fence key in a
//! transaction guarded by its election key. From then on every transaction of the term compares the fence key
//! with the value the leader last put there, and puts the next one. So a transaction applies only if nothing else
//! was applied since the one before it, from this leader or any other:
//! - a deposed leader's write fails once the next leader has taken the fence, and one that landed before that is
//!   read by the next leader's recovery, which comes after the taking;
//! - a write of this leader whose answer never came (it may still be applied, seconds later: a request retransmitted
//!   when a partition heals, or queued behind a stalled member) cannot land after a later write of the same term.
//!
//! A write whose answer did not come is settled by fencing it off: a transaction that compares the value it
//! expected and moves the fence past it. If that applies, the write never will; if it does not, a read of the fence
//! tells whether the write was applied or another leader took over. Only when that too goes unanswered is the
//! fence lost, and the term must end (its next write could neither compare a value it knows nor settle anything).
//!
//! Values are `<leader epoch>.<attempt>`, every attempt of a term with its own number (a settling read must tell
//! which of two attempts applied), so no two transactions ever put the same value.

use super::ids::LeaderEpoch;

/// One guarded transaction's compare and put on the fence key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The value the transaction compares: the last one known to be in the store.
    pub expect: String,
    /// The value it puts.
    pub put: String,
    n: u64,
}

/// How a write whose answer did not come was settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// The write was applied.
    Applied,
    /// The write can no longer be applied: the fence moved past it.
    FencedOff,
    /// Another leader took the fence: neither the write nor anything of this term after it applies.
    TakenOver,
}

/// The fence of one term, as its leader knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteFence {
    epoch: LeaderEpoch,
    /// The attempt whose value the store holds.
    known: u64,
    /// The next attempt's number.
    next: u64,
}

impl WriteFence {
    /// The fence of the term `epoch`, and the value its leader puts to take it.
    pub fn take(epoch: LeaderEpoch) -> (WriteFence, String) {
        let fence = WriteFence { epoch, known: 0, next: 1 };
        let value = fence.value(0);
        (fence, value)
    }

    fn value(&self, n: u64) -> String {
        format!("{}.{n}", self.epoch.0)
    }

    /// The compare and put of the next transaction.
    pub fn attempt(&mut self) -> Attempt {
        let n = self.next;
        self.next += 1;
        Attempt { expect: self.value(self.known), put: self.value(n), n }
    }

    /// `a` was applied: the store holds its value.
    pub fn applied(&mut self, a: &Attempt) {
        self.known = a.n;
    }

    /// The write `a` went unanswered, the transaction `bump` that was to fence it off did not apply, and the fence
    /// key then held `found`: what became of `a`.
    pub fn settle(&mut self, a: &Attempt, found: Option<&[u8]>) -> Settled {
        if found == Some(a.put.as_bytes()) {
            self.applied(a);
            Settled::Applied
        } else {
            Settled::TakenOver
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_transaction_compares_the_value_the_one_before_it_put() {
        let (mut f, taken) = WriteFence::take(LeaderEpoch(7));
        assert_eq!(taken, "7.0");
        let a = f.attempt();
        assert_eq!((a.expect.as_str(), a.put.as_str()), ("7.0", "7.1"));
        f.applied(&a);
        let b = f.attempt();
        assert_eq!((b.expect.as_str(), b.put.as_str()), ("7.1", "7.2"));
    }

    #[test]
    fn an_unanswered_write_fenced_off_leaves_the_next_comparing_the_bump() {
        let (mut f, _) = WriteFence::take(LeaderEpoch(2));
        let lost = f.attempt();
        let bump = f.attempt();
        assert_eq!(bump.expect, lost.expect, "the bump compares what the lost write compared");
        assert_ne!(bump.put, lost.put, "no two attempts put the same value");
        f.applied(&bump);
        let next = f.attempt();
        assert_eq!(next.expect, bump.put);
        assert_ne!(next.expect, lost.expect, "the lost write can no longer apply once the next one did");
    }

    #[test]
    fn a_settling_read_tells_the_write_applied_from_a_takeover() {
        let (mut f, _) = WriteFence::take(LeaderEpoch(3));
        let a = f.attempt();
        let _bump = f.attempt();
        assert_eq!(f.settle(&a, Some(b"4.0")), Settled::TakenOver);
        assert_eq!(f.settle(&a, None), Settled::TakenOver);
        assert_eq!(f.settle(&a, Some(a.put.as_bytes())), Settled::Applied);
        assert_eq!(f.attempt().expect, a.put, "once applied, the next write compares its value");
    }
}
