//! What an executor keeps of jobs on its disk (its commands' logs and scratch directories, issue 16) and when it
//! lets it go: the collection of the data of deleted jobs, as one pure machine inside the agent.
//!
//! Every [`Collector::every`] the executor lists the jobs it keeps data of ([`Collector::listed`]); its heartbeats
//! then ask the leader about them, [`HELD_PER_HEARTBEAT`] at a time, skipping jobs it runs a task of; the leader
//! answers which no longer exist (a serving leader knows every job there is), and the executor removes what it
//! keeps of those ([`Collector::answered`]), unless a task of the job started meanwhile. So a deleted job's data goes
//! within a listing period and a few heartbeats of the delete, whether the executor was there at the delete, came
//! back later, or started again; a heartbeat that goes unanswered only delays it to the next listing.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use super::time::Time;

/// The most jobs one heartbeat asks about.
pub const HELD_PER_HEARTBEAT: usize = 64;

/// The collection's state.
#[derive(Clone, Debug)]
pub struct Collector {
    every: Duration,
    /// When the next listing is due (after the jobs listed last were all asked about).
    next_list: Time,
    /// A listing was asked for and not yet handed in.
    listing: bool,
    /// Listed, not yet asked about.
    queue: VecDeque<String>,
    /// Asked about in the heartbeat in flight.
    asked: Vec<String>,
}

impl Collector {
    /// A collector listing every `every`, the first listing a period after `now` (data left by an earlier life
    /// goes then).
    pub fn new(every: Duration, now: Time) -> Collector {
        Collector { every, next_list: now + every, listing: false, queue: VecDeque::new(), asked: vec![] }
    }

    /// Whether a listing is due at `now`: its time came and everything listed last was asked about. Asking for it
    /// marks it asked for, until [`Collector::listed`].
    pub fn take_listing(&mut self, now: Time) -> bool {
        if self.listing || now < self.next_list || !self.queue.is_empty() || !self.asked.is_empty() {
            return false;
        }
        self.listing = true;
        true
    }

    /// The jobs the executor keeps data of, listed at `now`.
    pub fn listed(&mut self, now: Time, jobs: Vec<String>) {
        self.listing = false;
        self.queue = jobs.into();
        self.next_list = now + self.every;
    }

    /// The jobs the next heartbeat asks about: up to [`HELD_PER_HEARTBEAT`] listed ones it runs nothing of.
    pub fn ask(&mut self, running: &BTreeSet<String>) -> Vec<String> {
        // A job whose task runs here is in use: it is listed again next time.
        self.queue.retain(|j| !running.contains(j));
        let n = self.queue.len().min(HELD_PER_HEARTBEAT);
        self.asked = self.queue.drain(..n).collect();
        self.asked.clone()
    }

    /// The leader answered the heartbeat: of the jobs asked about, `gone` no longer exist. What to remove: those
    /// of them the executor still runs nothing of.
    pub fn answered(&mut self, gone: &[String], running: &BTreeSet<String>) -> Vec<String> {
        let asked = std::mem::take(&mut self.asked);
        asked.into_iter().filter(|j| gone.contains(j) && !running.contains(j)).collect()
    }

    /// The heartbeat went unanswered: its jobs are asked about after the next listing.
    pub fn unanswered(&mut self) {
        self.asked.clear();
    }

    /// When the next listing is due (none while one is under way or listed jobs wait to be asked about).
    pub fn wake(&self) -> Time {
        if self.listing || !self.queue.is_empty() || !self.asked.is_empty() {
            Time::NEVER
        } else {
            self.next_list
        }
    }

    /// Its invariants: nothing is both queued and asked about.
    pub fn check_invariants(&self) -> Result<(), String> {
        match self.asked.iter().find(|j| self.queue.contains(j)) {
            Some(j) => Err(format!("collector: job {j} is queued and asked about at once")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> Time {
        Time::from_millis(s * 1000)
    }

    fn jobs(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("j{i:03}")).collect()
    }

    #[test]
    fn listed_jobs_are_asked_about_in_turn_and_the_gone_ones_removed() {
        let mut c = Collector::new(Duration::from_secs(60), t(0));
        assert_eq!(c.wake(), t(60));
        assert!(!c.take_listing(t(59)));
        assert!(c.take_listing(t(60)));
        assert!(!c.take_listing(t(60)), "asked for once");
        c.listed(t(0), jobs(70));
        let running: BTreeSet<String> = ["j001".to_owned()].into();
        let first = c.ask(&running);
        assert_eq!(first.len(), HELD_PER_HEARTBEAT);
        assert!(!first.contains(&"j001".to_owned()), "a job it runs a task of is not asked about");
        // j002 is gone, and a task of j003 started meanwhile: only j002 goes.
        let gone = ["j002".to_owned(), "j003".to_owned(), "j999".to_owned()];
        let now_running: BTreeSet<String> = ["j003".to_owned()].into();
        assert_eq!(c.answered(&gone, &now_running), ["j002"]);
        let second = c.ask(&running);
        assert_eq!(second.len(), 70 - 1 - HELD_PER_HEARTBEAT);
        c.unanswered();
        assert!(c.ask(&running).is_empty());
        // Everything asked about: the next listing comes a period after the last.
        assert_eq!(c.wake(), t(60));
        assert!(!c.take_listing(t(59)));
        assert!(c.take_listing(t(60)));
        c.check_invariants().unwrap();
    }
}
