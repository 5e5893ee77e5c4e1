//! Worker bookkeeping: the master side of the framework protocol (design.md §5 rules 2 and 3).
//!
//! One [`Workers`] per master incarnation, at both levels: the job manager tracks its job masters with it, and
//! each job master tracks its workers. An entry per task records the incarnation (epoch) the master created and
//! when it was last heard from. Heartbeats are fenced both ways: an older worker epoch, or a task the master no
//! longer knows, is told it is stale and must stop; a message showing that someone newer than this master exists
//! (a higher master epoch, or a higher worker epoch than it created) tells *this master* it is stale. Nothing
//! panics on a newer epoch.
//!
//! A claim that someone newer exists is never taken on the sender's word: [`Workers::claim`] names it, and the
//! caller asks the issuer of master epochs (the metastore) whether a newer master really exists
//! ([`Claim::confirmed_by`]) before it feeds the message; a claim not confirmed is refused and changes nothing (a
//! bogus epoch of 2^64-1 would otherwise make a healthy master stop itself).
//!
//! A restarted master recovers: it expects the incarnations that were persisted, re-adopts those that check in,
//! and declares the others lost when the recovery wait ends. The wait equals the offline TTL, so an incarnation
//! that did not check in has fenced itself by then (it heard nothing since before the recovery began).
//!
//! Invariants ([`Workers::check`]): at most one entry per task; an entry that may be live never expires later than
//! its last accepted heartbeat (or its creation) plus the offline TTL; waiting entries exist only while
//! recovering.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::ids::{Epoch, TaskId};
use super::planted::{Planted, Plants};
use super::time::Time;
use super::timing::HeartbeatTiming;

/// The state a worker reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerStatus {
    Running,
    Finished,
    Canceled,
    Failed {
        message: String,
        /// Whether running it again may help (see `WorkerStatus.retryable` on the wire).
        #[serde(default)]
        retryable: bool,
    },
    /// Stopped at a checkpoint by its executor, which is leaving: not finished; start it again.
    Stopped,
}

impl WorkerStatus {
    pub fn is_terminal(&self) -> bool {
        !matches!(self, WorkerStatus::Running)
    }
}

/// Where an entry stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryState {
    /// Dispatched; not heard from yet.
    Created,
    /// Heartbeats were accepted.
    Online,
    /// Persisted by an earlier master incarnation; waiting for it to check in with this one.
    Waiting,
    /// Its heartbeats are refused (it ignored a cancel); it will fence itself and then expire.
    Revoked,
    /// It reported a terminal status; kept so repeated reports are acknowledged.
    Exited(WorkerStatus),
}

impl EntryState {
    /// Whether the incarnation may be alive.
    pub fn may_be_live(&self) -> bool {
        !matches!(self, EntryState::Exited(_))
    }
}

/// One task as its master sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub epoch: Epoch,
    pub state: EntryState,
    /// The incarnation is lost if not heard from by then.
    pub expires_at: Time,
    pub last_heard: Option<Time>,
}

/// A heartbeat or status message as the master receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub task: TaskId,
    /// The master epoch the worker knows (0: none yet).
    pub master_epoch: Epoch,
    pub worker_epoch: Epoch,
}

/// The fencing verdict, sent back with the master's epoch and the worker epoch it expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// The worker must stop.
    StaleWorker,
    /// This master is stale and must stop; the worker carries on.
    StaleMaster,
}

/// What to answer a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub verdict: Verdict,
    pub master_epoch: Epoch,
    /// The worker epoch the master expects for this task (0 if it knows none).
    pub worker_epoch: Epoch,
}

/// Why an incarnation is considered gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostReason {
    /// Dispatched but never heard from within the offline TTL.
    NeverStarted,
    /// Stopped heartbeating for the offline TTL.
    Silent,
    /// Did not check in with a recovering master.
    NotRecovered,
    /// Revoked, and now certainly fenced.
    Revoked,
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            LostReason::NeverStarted => "never started",
            LostReason::Silent => "silent",
            LostReason::NotRecovered => "not recovered",
            LostReason::Revoked => "revoked",
        };
        f.write_str(s)
    }
}

/// What the bookkeeping tells its master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// First accepted heartbeat of an incarnation (or its check-in after a master restart).
    Online { task: TaskId, epoch: Epoch },
    /// An incarnation is gone and has fenced itself; the task may be started again.
    Lost { task: TaskId, epoch: Epoch, reason: LostReason },
    /// An incarnation reported a terminal status.
    Exited { task: TaskId, epoch: Epoch, status: WorkerStatus },
    /// Someone newer than this master exists: it must stop.
    Superseded { seen: Epoch },
    /// The recovery wait ended (or no expected incarnation is still awaited). Every expected incarnation is
    /// counted once: `adopted` if it checked in (a heartbeat, or a report of its exit), else `lost` (not heard of
    /// in time, or revoked or removed while awaited).
    Recovered { adopted: usize, lost: usize },
}

/// What a message claims that its master cannot vouch for: that someone newer than this master exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The message shows master epoch `claimed`, above the master's own.
    NewerMaster { claimed: Epoch },
    /// The message shows worker epoch `claimed` for its task, above the epoch the master issued for it, `issued`:
    /// only a newer master could have issued it.
    NewerWorker { claimed: Epoch, issued: Epoch },
}

impl Claim {
    /// Whether the issuer of master epochs proves the claim against the master of epoch `mine`: `newest` is the
    /// newest master epoch it issued (as durably recorded). A newer master must exist, and a claimed master epoch
    /// must be one that was issued.
    pub fn confirmed_by(self, mine: Epoch, newest: Epoch) -> bool {
        newest > mine
            && match self {
                Claim::NewerMaster { claimed } => claimed <= newest,
                Claim::NewerWorker { .. } => true,
            }
    }

    /// The message field that carries the claim.
    pub fn field(self) -> &'static str {
        match self {
            Claim::NewerMaster { .. } => "master_epoch",
            Claim::NewerWorker { .. } => "worker_epoch",
        }
    }

    /// The epoch claimed.
    pub fn claimed(self) -> Epoch {
        match self {
            Claim::NewerMaster { claimed } | Claim::NewerWorker { claimed, .. } => claimed,
        }
    }
}

impl fmt::Display for Claim {
    /// What to tell the sender of a claim that was not confirmed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Claim::NewerMaster { claimed } => {
                write!(f, "{claimed} was never issued: no master of that epoch exists (this master's is the newest)")
            }
            Claim::NewerWorker { claimed, issued } => write!(
                f,
                "{claimed} was never issued for this task: its master issued {issued}, and no newer master exists"
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum WorkersError {
    #[error("task {task} still has incarnation {epoch} that may be alive; it must be lost or exit first")]
    StillLive { task: TaskId, epoch: Epoch },
    #[error("task {task}: new epoch {new} is not above the last one, {last}")]
    EpochNotNewer { task: TaskId, new: Epoch, last: Epoch },
}

/// A master incarnation's view of its workers.
#[derive(Clone, Debug)]
pub struct Workers {
    timing: HeartbeatTiming,
    /// How long a dispatch may take to start its task (the bound of the dispatch calls): a task created late in
    /// that window fences itself up to that much later than one created at once.
    dispatch_window: Duration,
    master_epoch: Epoch,
    entries: BTreeMap<TaskId, Entry>,
    recovering_until: Option<Time>,
    /// How many incarnations the recovery awaits in all, and how many of them checked in.
    expected: usize,
    adopted: usize,
    superseded: bool,
    /// The guard switches of the simulation's bug-finding runs (none in production).
    plants: Plants,
}

impl Workers {
    /// A master incarnation starting fresh (nothing to recover).
    pub fn new(master_epoch: Epoch, timing: HeartbeatTiming) -> Workers {
        Workers {
            timing,
            dispatch_window: Duration::ZERO,
            master_epoch,
            entries: BTreeMap::new(),
            recovering_until: None,
            expected: 0,
            adopted: 0,
            superseded: false,
            plants: Plants::NONE,
        }
    }

    /// A restarted master incarnation: it waits up to the offline TTL from `now` for the persisted incarnations
    /// `expected` to check in.
    pub fn recover(
        now: Time,
        master_epoch: Epoch,
        timing: HeartbeatTiming,
        expected: impl IntoIterator<Item = (TaskId, Epoch)>,
    ) -> Workers {
        let mut w = Workers::new(master_epoch, timing);
        let until = now + timing.offline_ttl;
        for (task, epoch) in expected {
            w.entries.insert(task, Entry { epoch, state: EntryState::Waiting, expires_at: until, last_heard: None });
        }
        w.expected = w.entries.len();
        w.recovering_until = Some(until);
        w
    }

    /// The same bookkeeping, allowing `window` for a dispatch to start its task: an incarnation never heard from
    /// is lost only after the offline TTL *plus* this window from its dispatch. The task fences itself the
    /// self-fence time after it was created, and it is created within the window (the dispatch calls are bounded
    /// by it), so it has stopped by then even if it started at the window's end.
    pub fn with_dispatch_window(mut self, window: Duration) -> Workers {
        self.dispatch_window = window;
        self
    }

    /// The same bookkeeping with the guard switches `plants` (the simulation's bug-finding runs only).
    pub fn with_plants(mut self, plants: Plants) -> Workers {
        self.plants = plants;
        self
    }

    /// Ends the recovery wait at `until` instead of after the offline TTL: the planted bug "recovery without the
    /// wait" (the simulation's bug-finding runs only).
    pub fn plant_recovery_until(mut self, until: Time) -> Workers {
        if self.recovering_until.is_some() {
            self.recovering_until = Some(until);
            for e in self.entries.values_mut().filter(|e| e.state == EntryState::Waiting) {
                e.expires_at = until;
            }
        }
        self
    }

    pub fn master_epoch(&self) -> Epoch {
        self.master_epoch
    }

    pub fn timing(&self) -> &HeartbeatTiming {
        &self.timing
    }

    /// Whether the recovery wait is still running.
    pub fn is_recovering(&self) -> bool {
        self.recovering_until.is_some()
    }

    /// Whether a message showed that this master is stale.
    pub fn is_superseded(&self) -> bool {
        self.superseded
    }

    pub fn get(&self, task: &TaskId) -> Option<&Entry> {
        self.entries.get(task)
    }

    /// Whether `msg` comes from the current incarnation of its task, already online under this master: a heartbeat
    /// of it is accepted and raises no event (it only moves the incarnation's deadline).
    pub fn is_online(&self, msg: &Message) -> bool {
        msg.master_epoch <= self.master_epoch
            && self.entries.get(&msg.task).is_some_and(|e| e.epoch == msg.worker_epoch && e.state == EntryState::Online)
    }

    /// Every entry, in task order.
    pub fn iter(&self) -> impl Iterator<Item = (&TaskId, &Entry)> {
        self.entries.iter()
    }

    /// A new incarnation was dispatched at `now` (called before the dispatch is sent). Refused while an older
    /// incarnation may still be alive.
    pub fn on_dispatched(&mut self, now: Time, task: &TaskId, epoch: Epoch) -> Result<(), WorkersError> {
        self.admits(now, task, epoch)?;
        let expires_at = now + self.timing.offline_ttl + self.dispatch_window;
        self.entries.insert(task.clone(), Entry { epoch, state: EntryState::Created, expires_at, last_heard: None });
        Ok(())
    }

    /// Whether [`Workers::on_dispatched`] would take incarnation `epoch` of `task` now (no incarnation of it may
    /// still be alive, and `epoch` is newer than any it had), without taking it: a caller that must change other
    /// state first (the job's record) asks before, so that a refusal leaves everything as it was.
    ///
    /// Held unreachable (a tripwire): a task goes back to waiting only once its incarnation ended here, or by a
    /// write that lands after a later one, which the term's write fence refuses (the README's guard table).
    pub fn admits(&self, now: Time, task: &TaskId, epoch: Epoch) -> Result<(), WorkersError> {
        if let Some(e) = self.entries.get(task) {
            if e.state.may_be_live() {
                self.plants.trip(Planted::DispatchBesideLive, now, || {
                    format!("a new incarnation {} of {task} asked while {} may be alive", epoch.0, e.epoch.0)
                });
            }
            if e.state.may_be_live() && !self.plants.has(Planted::DispatchBesideLive) {
                return Err(WorkersError::StillLive { task: task.clone(), epoch: e.epoch });
            }
            if epoch <= e.epoch {
                return Err(WorkersError::EpochNotNewer { task: task.clone(), new: epoch, last: e.epoch });
            }
        }
        Ok(())
    }

    /// The dispatch of incarnation `epoch` is sent at `now`, which may be well after [`Workers::on_dispatched`]
    /// (the master first makes the incarnation durable): the task is created within the dispatch window from
    /// now, so an incarnation never heard from is lost only the offline TTL plus that window from now.
    pub fn on_dispatch_sent(&mut self, now: Time, task: &TaskId, epoch: Epoch) {
        let expires_at = now + self.timing.offline_ttl + self.dispatch_window;
        if let Some(e) = self.entries.get_mut(task).filter(|e| e.epoch == epoch && e.state == EntryState::Created) {
            e.expires_at = e.expires_at.max(expires_at);
        }
    }

    /// The dispatch of incarnation `epoch` failed for sure: it will never run.
    pub fn on_dispatch_failed(&mut self, task: &TaskId, epoch: Epoch) {
        if self.entries.get(task).is_some_and(|e| e.epoch == epoch && e.state == EntryState::Created) {
            self.entries.remove(task);
        }
    }

    /// Forgets a task entirely (its job was deleted, or its master will not run it again). An awaited incarnation
    /// counts as lost to the recovery; the next tick ends a recovery that awaits no one any more.
    pub fn remove(&mut self, task: &TaskId) {
        self.entries.remove(task);
    }

    /// The exit of incarnation `epoch` was not taken after all (its master could not make it durable): the entry
    /// is back to online as it was before the report, so a repeated report is an exit again, and silence makes it
    /// lost after the offline TTL from its last heartbeat.
    pub fn forget_exit(&mut self, task: &TaskId, epoch: Epoch) {
        let ttl = self.timing.offline_ttl;
        if let Some(e) = self.entries.get_mut(task) {
            if e.epoch == epoch && matches!(e.state, EntryState::Exited(_)) {
                e.state = EntryState::Online;
                e.expires_at = e.last_heard.map_or(e.expires_at, |h| h + ttl);
            }
        }
    }

    /// Refuses incarnation `epoch`'s heartbeats from now on; it will fence itself and be lost when its TTL runs
    /// out. An awaited incarnation counts as lost to the recovery.
    pub fn revoke(&mut self, task: &TaskId, epoch: Epoch) {
        if let Some(e) = self.entries.get_mut(task) {
            if e.epoch == epoch && e.state.may_be_live() {
                e.state = EntryState::Revoked;
            }
        }
    }

    /// What `msg` claims that this master cannot vouch for, if anything: a master epoch above its own, or a worker
    /// epoch above the one it issued for the task. [`Workers::on_heartbeat`] and [`Workers::on_status`] believe
    /// such a claim (this master is then superseded), so the caller feeds them a message with a claim only once
    /// [`Claim::confirmed_by`] holds, and otherwise refuses it.
    pub fn claim(&self, msg: &Message) -> Option<Claim> {
        if msg.master_epoch > self.master_epoch {
            return Some(Claim::NewerMaster { claimed: msg.master_epoch });
        }
        let issued = self.entries.get(&msg.task)?.epoch;
        (msg.worker_epoch > issued).then_some(Claim::NewerWorker { claimed: msg.worker_epoch, issued })
    }

    fn reply(&self, verdict: Verdict, expected: Epoch) -> Reply {
        Reply { verdict, master_epoch: self.master_epoch, worker_epoch: expected }
    }

    /// The first fencing rule: a message that shows a newer master epoch makes this master stale, whatever else
    /// it says.
    ///
    /// Held unreachable in a cluster (a tripwire), here and for a newer worker epoch in [`Workers::fence`]: the
    /// caller feeds a claim only once the issuer confirmed it, and a message from an incarnation that a newer
    /// master created reaches an older master only through an executor hosting both, which its own checks prevent.
    fn fence_master(&mut self, now: Time, msg: &Message) -> Result<(), Reply> {
        if msg.master_epoch > self.master_epoch {
            let mine = self.master_epoch;
            self.plants.trip(Planted::NewerMasterIgnored, now, || {
                format!("{} shows master epoch {}, newer than this master's {}", msg.task, msg.master_epoch.0, mine.0)
            });
        }
        if msg.master_epoch > self.master_epoch && !self.plants.has(Planted::NewerMasterIgnored) {
            self.superseded = true;
            return Err(self.reply(Verdict::StaleMaster, Epoch::NONE));
        }
        Ok(())
    }

    /// Fences a message; on acceptance returns the entry.
    fn fence(&mut self, now: Time, msg: &Message) -> Result<&mut Entry, Reply> {
        self.fence_master(now, msg)?;
        let Some(e) = self.entries.get(&msg.task) else {
            return Err(self.reply(Verdict::StaleWorker, Epoch::NONE));
        };
        let expected = e.epoch;
        if msg.worker_epoch > expected {
            self.plants.trip(Planted::NewerMasterIgnored, now, || {
                format!("{} shows incarnation {}, newer than the {} issued", msg.task, msg.worker_epoch.0, expected.0)
            });
        }
        if msg.worker_epoch > expected && !self.plants.has(Planted::NewerMasterIgnored) {
            self.superseded = true;
            return Err(self.reply(Verdict::StaleMaster, expected));
        }
        let older = msg.worker_epoch < expected && !self.plants.has(Planted::StaleWorkerAnswered);
        if older || matches!(e.state, EntryState::Revoked | EntryState::Exited(_)) {
            return Err(self.reply(Verdict::StaleWorker, expected));
        }
        Ok(self.entries.get_mut(&msg.task).expect("looked up above"))
    }

    /// A heartbeat at `now`.
    pub fn on_heartbeat(&mut self, now: Time, msg: &Message) -> (Reply, Vec<Event>) {
        let ttl = self.timing.offline_ttl;
        let plants = self.plants;
        let entry = match self.fence(now, msg) {
            Ok(e) => e,
            Err(reply) => return (reply, self.superseded_event(msg, reply)),
        };
        if entry.state == EntryState::Waiting && plants.has(Planted::RecoveryAdoptsNothing) {
            let expected = entry.epoch;
            return (self.reply(Verdict::StaleWorker, expected), vec![]);
        }
        let was = entry.state.clone();
        entry.state = EntryState::Online;
        entry.last_heard = Some(now);
        entry.expires_at = now + ttl;
        let expected = entry.epoch;
        let mut events = vec![];
        if was != EntryState::Online {
            events.push(Event::Online { task: msg.task.clone(), epoch: expected });
        }
        if was == EntryState::Waiting {
            self.adopted += 1;
            events.extend(self.maybe_finish_recovery());
        }
        (self.reply(Verdict::Accepted, expected), events)
    }

    /// A status report at `now`. A terminal status ends the incarnation; a repeated one is acknowledged again.
    pub fn on_status(&mut self, now: Time, msg: &Message, status: WorkerStatus) -> (Reply, Vec<Event>) {
        if let Err(reply) = self.fence_master(now, msg) {
            return (reply, self.superseded_event(msg, reply));
        }
        if let Some(e) = self.entries.get(&msg.task) {
            if e.epoch == msg.worker_epoch && e.state == EntryState::Exited(status.clone()) {
                return (self.reply(Verdict::Accepted, e.epoch), vec![]);
            }
        }
        if !status.is_terminal() {
            return self.on_heartbeat(now, msg);
        }
        let entry = match self.fence(now, msg) {
            Ok(e) => e,
            Err(reply) => return (reply, self.superseded_event(msg, reply)),
        };
        let was = std::mem::replace(&mut entry.state, EntryState::Exited(status.clone()));
        entry.last_heard = Some(now);
        let epoch = entry.epoch;
        let mut events = vec![Event::Exited { task: msg.task.clone(), epoch, status }];
        if was == EntryState::Waiting {
            // It checked in, if only to say it is done.
            self.adopted += 1;
            events.extend(self.maybe_finish_recovery());
        }
        (self.reply(Verdict::Accepted, epoch), events)
    }

    fn superseded_event(&self, msg: &Message, reply: Reply) -> Vec<Event> {
        if reply.verdict == Verdict::StaleMaster {
            vec![Event::Superseded { seen: msg.master_epoch.max(msg.worker_epoch) }]
        } else {
            vec![]
        }
    }

    fn anyone_waiting(&self) -> bool {
        self.entries.values().any(|e| e.state == EntryState::Waiting)
    }

    fn recovered(&mut self) -> Event {
        self.recovering_until = None;
        Event::Recovered { adopted: self.adopted, lost: self.expected - self.adopted }
    }

    fn maybe_finish_recovery(&mut self) -> Vec<Event> {
        if self.recovering_until.is_some() && !self.anyone_waiting() {
            return vec![self.recovered()];
        }
        vec![]
    }

    /// Time-driven work at `now`: expiries and the end of the recovery wait. Events in task order.
    pub fn tick(&mut self, now: Time) -> Vec<Event> {
        let mut events = vec![];
        let recovery_over = self.recovering_until.is_some_and(|t| now >= t);
        // The whole TTL, unless the guard is switched off (then half of it: before the incarnation's self-fence).
        let early =
            if self.plants.has(Planted::WorkerLostEarly) { self.timing.offline_ttl / 2 } else { Duration::ZERO };
        let mut gone = vec![];
        for (task, e) in &self.entries {
            let reason = match e.state {
                EntryState::Waiting if recovery_over => LostReason::NotRecovered,
                EntryState::Waiting | EntryState::Exited(_) => continue,
                _ if e.expires_at > now + early => continue,
                EntryState::Created => LostReason::NeverStarted,
                EntryState::Online => LostReason::Silent,
                EntryState::Revoked => LostReason::Revoked,
            };
            gone.push(task.clone());
            events.push(Event::Lost { task: task.clone(), epoch: e.epoch, reason });
        }
        for task in gone {
            self.entries.remove(&task);
        }
        if recovery_over || (self.recovering_until.is_some() && !self.anyone_waiting()) {
            events.push(self.recovered());
        }
        events
    }

    /// The next time [`Workers::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Time> {
        let expiry = self.entries.values().filter(|e| e.state.may_be_live()).map(|e| e.expires_at).min();
        super::time::earliest(expiry, self.recovering_until)
    }

    /// Checks the invariants; the message names the one broken and the task.
    pub fn check(&self) -> Result<(), String> {
        let ttl = self.timing.offline_ttl;
        for (task, e) in &self.entries {
            if e.epoch == Epoch::NONE {
                return Err(format!("workers: {task} has no epoch"));
            }
            if e.state == EntryState::Waiting && self.recovering_until.is_none() {
                return Err(format!("workers: {task} waits for recovery that is over"));
            }
            if let (Some(heard), true) = (e.last_heard, matches!(e.state, EntryState::Online | EntryState::Revoked)) {
                if e.expires_at > heard + ttl {
                    return Err(format!("workers: {task} expires at {} past last heard {heard} + ttl", e.expires_at));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Time {
        Time::from_millis(n)
    }

    fn t(s: &str) -> TaskId {
        TaskId::parse(s).unwrap()
    }

    fn msg(task: &str, master: u64, worker: u64) -> Message {
        Message { task: t(task), master_epoch: Epoch(master), worker_epoch: Epoch(worker) }
    }

    fn workers() -> Workers {
        Workers::new(Epoch(5), HeartbeatTiming::worker_default())
    }

    #[test]
    fn an_unheard_incarnation_is_lost_after_ttl_plus_the_dispatch_window() {
        let ttl = HeartbeatTiming::worker_default().offline_ttl;
        let window = Duration::from_secs(3);
        let mut w = workers().with_dispatch_window(window);
        w.on_dispatched(ms(1000), &t("a"), Epoch(3)).unwrap();
        let lost_at = ms(1000) + ttl + window;
        assert_eq!(w.next_deadline(), Some(lost_at));
        let just_before = ms(1000 + (ttl + window).as_millis() as u64 - 1);
        assert!(w.tick(just_before).is_empty(), "lost before the window ended");
        assert_eq!(
            w.tick(lost_at),
            vec![Event::Lost { task: t("a"), epoch: Epoch(3), reason: LostReason::NeverStarted }]
        );
        // Once heard from, the usual TTL from the last heartbeat applies.
        w.on_dispatched(ms(20_000), &t("b"), Epoch(4)).unwrap();
        w.on_heartbeat(ms(20_100), &msg("b", 5, 4));
        assert_eq!(w.next_deadline(), Some(ms(20_100) + ttl));
        w.check().unwrap();
    }

    #[test]
    fn a_forgotten_exit_is_an_exit_again_or_lost_when_silent() {
        let ttl = HeartbeatTiming::worker_default().offline_ttl;
        let mut w = workers();
        w.on_dispatched(ms(0), &t("a"), Epoch(3)).unwrap();
        w.on_heartbeat(ms(100), &msg("a", 5, 3));
        let (_, ev) = w.on_status(ms(200), &msg("a", 5, 3), WorkerStatus::Finished);
        assert_eq!(ev.len(), 1);
        w.forget_exit(&t("a"), Epoch(3));
        assert_eq!(w.get(&t("a")).map(|e| e.state.clone()), Some(EntryState::Online));
        // A repeated report is taken again.
        let (reply, ev) = w.on_status(ms(300), &msg("a", 5, 3), WorkerStatus::Finished);
        assert_eq!((reply.verdict, ev.len()), (Verdict::Accepted, 1));
        // Forgotten again and then silent: lost a TTL after it was last heard (the report counts as heard).
        w.forget_exit(&t("a"), Epoch(3));
        assert_eq!(w.next_deadline(), Some(ms(300) + ttl));
        assert!(matches!(w.tick(ms(300) + ttl)[..], [Event::Lost { .. }]));
        w.check().unwrap();
    }

    /// The rule a closure stopped with, if it stopped with a typed violation.
    fn stopped_with(f: impl FnOnce()) -> Option<crate::core::invariants::Rule> {
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).err()?;
        caught.downcast_ref::<crate::core::invariants::Violation>().map(|v| v.rule)
    }

    #[test]
    fn armed_tripwires_stop_at_the_guards_held_unreachable_and_nowhere_else() {
        use crate::core::invariants::Rule::UnreachableGuard;
        let armed = || {
            let mut w = workers().with_plants(Plants::NONE.armed());
            w.on_dispatched(ms(0), &t("a"), Epoch(3)).unwrap();
            w
        };
        // What the cluster sends: no stop.
        assert_eq!(stopped_with(|| drop(armed().on_heartbeat(ms(100), &msg("a", 5, 3)))), None);
        assert_eq!(stopped_with(|| drop(armed().on_heartbeat(ms(100), &msg("a", 5, 2)))), None);
        // A newer master epoch, a newer incarnation, a dispatch beside a live one: each stops the node.
        assert_eq!(stopped_with(|| drop(armed().on_heartbeat(ms(100), &msg("a", 6, 3)))), Some(UnreachableGuard));
        let status = || drop(armed().on_status(ms(100), &msg("a", 6, 3), WorkerStatus::Finished));
        assert_eq!(stopped_with(status), Some(UnreachableGuard));
        assert_eq!(stopped_with(|| drop(armed().on_heartbeat(ms(100), &msg("a", 5, 4)))), Some(UnreachableGuard));
        assert_eq!(stopped_with(|| drop(armed().admits(ms(100), &t("a"), Epoch(4)))), Some(UnreachableGuard));
        // Unarmed (production, unit and property tests), the guards refuse as before.
        let mut w = workers();
        w.on_dispatched(ms(0), &t("a"), Epoch(3)).unwrap();
        assert_eq!(w.on_heartbeat(ms(100), &msg("a", 6, 3)).0.verdict, Verdict::StaleMaster);
        assert!(matches!(w.admits(ms(100), &t("a"), Epoch(4)), Err(WorkersError::StillLive { .. })));
    }

    #[test]
    fn heartbeat_fencing_table() {
        // Master epoch 5; task "a" created with worker epoch 3.
        // (message, verdict, events)
        let table: &[(Message, Verdict, usize)] = &[
            (msg("a", 5, 3), Verdict::Accepted, 1),
            (msg("a", 0, 3), Verdict::Accepted, 1), // first contact: learns the master epoch from the reply
            (msg("a", 4, 3), Verdict::Accepted, 1), // knew an older incarnation of this master: re-adopted
            (msg("a", 5, 2), Verdict::StaleWorker, 0),
            (msg("b", 5, 3), Verdict::StaleWorker, 0), // unknown task
            (msg("a", 6, 3), Verdict::StaleMaster, 1), // the worker saw a newer master
            (msg("a", 5, 4), Verdict::StaleMaster, 1), // someone newer created this task
        ];
        for (m, verdict, n_events) in table {
            let mut w = workers();
            w.on_dispatched(ms(0), &t("a"), Epoch(3)).unwrap();
            let (reply, events) = w.on_heartbeat(ms(100), m);
            assert_eq!(reply.verdict, *verdict, "{m:?}");
            assert_eq!(reply.master_epoch, Epoch(5));
            assert_eq!(events.len(), *n_events, "{m:?}: {events:?}");
            assert_eq!(w.is_superseded(), *verdict == Verdict::StaleMaster);
            w.check().unwrap();
        }
    }

    #[test]
    fn claims_of_someone_newer_are_named_and_believed_only_when_confirmed() {
        // Master epoch 5; task "a" issued worker epoch 3.
        let mut w = workers();
        w.on_dispatched(ms(0), &t("a"), Epoch(3)).unwrap();
        let max = u64::MAX;
        // (message, claim)
        let table: &[(Message, Option<Claim>)] = &[
            (msg("a", 5, 3), None),
            (msg("a", 4, 2), None),
            (msg("b", 5, max), None), // an unknown task claims nothing: it is told it is stale
            (msg("a", 6, 3), Some(Claim::NewerMaster { claimed: Epoch(6) })),
            (msg("a", max, max), Some(Claim::NewerMaster { claimed: Epoch(max) })),
            (msg("a", 5, max), Some(Claim::NewerWorker { claimed: Epoch(max), issued: Epoch(3) })),
        ];
        for (m, want) in table {
            assert_eq!(w.claim(m), *want, "{m:?}");
        }
        // (claim, newest master epoch issued, confirmed): a newer master must exist, and a claimed one be issued.
        let newer_master = |c: u64| Claim::NewerMaster { claimed: Epoch(c) };
        let newer_worker = Claim::NewerWorker { claimed: Epoch(max), issued: Epoch(3) };
        let verdicts = [
            (newer_master(6), 5, false),
            (newer_master(6), 6, true),
            (newer_master(6), 9, true),
            (newer_master(max), 9, false),
            (newer_worker, 5, false),
            (newer_worker, 0, false),
            (newer_worker, 6, true),
        ];
        for (claim, newest, want) in verdicts {
            assert_eq!(claim.confirmed_by(Epoch(5), Epoch(newest)), want, "{claim:?} against {newest}");
        }
        assert_eq!(newer_master(7).field(), "master_epoch");
        assert_eq!(newer_worker.field(), "worker_epoch");
        assert!(!w.is_superseded(), "naming a claim changes nothing");
    }

    #[test]
    fn online_once_then_expires_when_silent() {
        let mut w = workers();
        w.on_dispatched(ms(0), &t("a"), Epoch(3)).unwrap();
        let (_, ev) = w.on_heartbeat(ms(100), &msg("a", 5, 3));
        assert_eq!(ev, vec![Event::Online { task: t("a"), epoch: Epoch(3) }]);
        let (_, ev) = w.on_heartbeat(ms(1100), &msg("a", 5, 3));
        assert!(ev.is_empty());
        assert_eq!(w.next_deadline(), Some(ms(13_100)));
        assert!(w.tick(ms(13_099)).is_empty());
        assert_eq!(w.tick(ms(13_100)), vec![Event::Lost { task: t("a"), epoch: Epoch(3), reason: LostReason::Silent }]);
        // Gone: a late heartbeat of that incarnation is told it is stale.
        assert_eq!(w.on_heartbeat(ms(13_200), &msg("a", 5, 3)).0.verdict, Verdict::StaleWorker);
    }

    #[test]
    fn a_dispatch_never_heard_from_is_lost() {
        let mut w = workers();
        w.on_dispatched(ms(0), &t("a"), Epoch(3)).unwrap();
        assert_eq!(
            w.tick(ms(12_000)),
            vec![Event::Lost { task: t("a"), epoch: Epoch(3), reason: LostReason::NeverStarted }]
        );
    }

    #[test]
    fn no_new_incarnation_while_the_old_may_live() {
        let mut w = workers();
        w.on_dispatched(ms(0), &t("a"), Epoch(3)).unwrap();
        assert_eq!(
            w.on_dispatched(ms(1), &t("a"), Epoch(4)),
            Err(WorkersError::StillLive { task: t("a"), epoch: Epoch(3) })
        );
        w.on_status(ms(5), &msg("a", 5, 3), WorkerStatus::Failed { message: "x".into(), retryable: false });
        assert_eq!(
            w.on_dispatched(ms(6), &t("a"), Epoch(3)),
            Err(WorkersError::EpochNotNewer { task: t("a"), new: Epoch(3), last: Epoch(3) })
        );
        w.on_dispatched(ms(6), &t("a"), Epoch(4)).unwrap();
        // A definite dispatch failure forgets only that incarnation.
        w.on_dispatch_failed(&t("a"), Epoch(3));
        assert!(w.get(&t("a")).is_some());
        w.on_dispatch_failed(&t("a"), Epoch(4));
        assert!(w.get(&t("a")).is_none());
    }

    #[test]
    fn exit_is_reported_once_and_acknowledged_again() {
        let mut w = workers();
        w.on_dispatched(ms(0), &t("a"), Epoch(3)).unwrap();
        w.on_heartbeat(ms(10), &msg("a", 5, 3));
        let (r, ev) = w.on_status(ms(20), &msg("a", 5, 3), WorkerStatus::Finished);
        assert_eq!(r.verdict, Verdict::Accepted);
        assert_eq!(ev, vec![Event::Exited { task: t("a"), epoch: Epoch(3), status: WorkerStatus::Finished }]);
        let (r, ev) = w.on_status(ms(30), &msg("a", 5, 3), WorkerStatus::Finished);
        assert_eq!((r.verdict, ev.len()), (Verdict::Accepted, 0));
        assert_eq!(w.on_heartbeat(ms(40), &msg("a", 5, 3)).0.verdict, Verdict::StaleWorker);
        assert!(w.tick(ms(1_000_000)).is_empty(), "an exited entry never expires into a loss");
    }

    #[test]
    fn recovery_adopts_those_who_check_in_and_loses_the_rest_after_the_ttl() {
        let expected = [(t("a"), Epoch(3)), (t("b"), Epoch(4))];
        let mut w = Workers::recover(ms(1000), Epoch(9), HeartbeatTiming::worker_default(), expected);
        assert!(w.is_recovering());
        let (r, ev) = w.on_heartbeat(ms(1500), &msg("a", 5, 3));
        assert_eq!((r.verdict, r.master_epoch), (Verdict::Accepted, Epoch(9)));
        assert_eq!(ev, vec![Event::Online { task: t("a"), epoch: Epoch(3) }]);
        assert_eq!(w.on_heartbeat(ms(1500), &msg("b", 5, 3)).0.verdict, Verdict::StaleWorker);
        assert_eq!(w.on_heartbeat(ms(1500), &msg("c", 5, 1)).0.verdict, Verdict::StaleWorker);
        assert!(w.tick(ms(12_999)).is_empty());
        let ev = w.tick(ms(13_000));
        assert_eq!(
            ev,
            vec![
                Event::Lost { task: t("b"), epoch: Epoch(4), reason: LostReason::NotRecovered },
                Event::Recovered { adopted: 1, lost: 1 }
            ]
        );
        assert!(!w.is_recovering());
        w.check().unwrap();
    }

    #[test]
    fn recovery_ends_early_when_everyone_checked_in() {
        let mut w = Workers::recover(ms(0), Epoch(9), HeartbeatTiming::worker_default(), [(t("a"), Epoch(3))]);
        let (_, ev) = w.on_heartbeat(ms(10), &msg("a", 5, 3));
        assert_eq!(ev.last(), Some(&Event::Recovered { adopted: 1, lost: 0 }));
        assert!(!w.is_recovering());
    }

    #[test]
    fn a_revoked_incarnation_is_refused_and_lost_after_its_ttl() {
        let mut w = workers();
        w.on_dispatched(ms(0), &t("a"), Epoch(3)).unwrap();
        w.on_heartbeat(ms(100), &msg("a", 5, 3));
        w.revoke(&t("a"), Epoch(3));
        let (r, _) = w.on_heartbeat(ms(200), &msg("a", 5, 3));
        assert_eq!(r.verdict, Verdict::StaleWorker);
        assert!(w.tick(ms(12_099)).is_empty(), "the refused heartbeat did not extend it");
        assert_eq!(
            w.tick(ms(12_100)),
            vec![Event::Lost { task: t("a"), epoch: Epoch(3), reason: LostReason::Revoked }]
        );
    }

    #[test]
    fn recovery_counts_every_expected_incarnation_once() {
        // Regression (proptest `workers_recovery_accounts_for_every_expected_incarnation`): incarnations that exit,
        // are revoked or are removed while awaited were counted as neither adopted nor lost.
        let expected = [(t("a"), Epoch(3)), (t("b"), Epoch(4)), (t("c"), Epoch(5)), (t("d"), Epoch(6))];
        let mut w = Workers::recover(ms(0), Epoch(9), HeartbeatTiming::worker_default(), expected);
        let (reply, ev) = w.on_status(ms(10), &msg("a", 9, 3), WorkerStatus::Finished);
        assert_eq!(reply.verdict, Verdict::Accepted);
        assert_eq!(ev, vec![Event::Exited { task: t("a"), epoch: Epoch(3), status: WorkerStatus::Finished }]);
        w.on_heartbeat(ms(20), &msg("d", 9, 6));
        w.revoke(&t("b"), Epoch(4));
        w.remove(&t("c"));
        // No one is awaited any more: the next tick ends the recovery without waiting out the window.
        let ev = w.tick(ms(30));
        assert_eq!(ev, vec![Event::Recovered { adopted: 2, lost: 2 }]);
        assert!(!w.is_recovering());
        w.check().unwrap();
    }

    #[test]
    fn a_repeated_exit_showing_a_newer_master_is_fenced() {
        // Regression (proptest `workers_repeated_exit_from_a_newer_master_is_fenced`).
        let mut w = workers();
        w.on_dispatched(ms(0), &t("a"), Epoch(3)).unwrap();
        w.on_status(ms(10), &msg("a", 5, 3), WorkerStatus::Finished);
        let (reply, _) = w.on_status(ms(20), &msg("a", 5, 3), WorkerStatus::Finished);
        assert_eq!(reply.verdict, Verdict::Accepted, "a repeated report is acknowledged again");
        let (reply, ev) = w.on_status(ms(30), &msg("a", 6, 3), WorkerStatus::Finished);
        assert_eq!(reply.verdict, Verdict::StaleMaster);
        assert_eq!(ev, vec![Event::Superseded { seen: Epoch(6) }]);
        assert!(w.is_superseded());
    }
}
