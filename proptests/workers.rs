//! Worker bookkeeping ([`Workers`]) against a per-task model of the framework's fencing (design.md §5 rules 2
//! and 3).
//!
//! The model keeps, per task, the incarnation's epoch, its state (created, online, waiting for a recovering
//! master, revoked, exited), its expiry and last accepted heartbeat; plus the master's epoch, whether it learned
//! it is superseded, and the recovery window with its adopted count. Operations: dispatches (fresh, repeated or
//! older epochs), definite dispatch failures, heartbeats and status reports whose master and worker epochs are
//! the right ones, older, newer or none, revocations, removals, ticks, time advances, and master restarts
//! (`Workers::recover` with a larger master epoch, expecting every incarnation that may be live).
//!
//! After every step the properties assert `Workers::check`, agreement with the model on every entry, reply and
//! event, that no task ever has two incarnations that may be live (a `LiveIncarnations` checker sees every
//! accepted dispatch as a start and every loss, exit or forgotten dispatch as a stop), that `on_dispatched` is
//! refused while the previous incarnation may be live, that a task is declared lost only once its TTL ran out
//! since its last accepted heartbeat (or dispatch, or recovery start), that `StaleMaster` comes exactly when the
//! message shows a newer master or worker epoch than this master knows, that a stale worker is never accepted,
//! and that recovery ends by `start + offline_ttl` having adopted or lost every expected incarnation.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use foreman::core::ids::{Epoch, TaskId};
use foreman::core::invariants::{FencedEpochs, Id, LiveIncarnations, Receiver, Rule, Sender, Violation};
use foreman::core::time::Time;
use foreman::core::timing::HeartbeatTiming;
use foreman::core::workers::{
    Entry, EntryState, Event, LostReason, Message, Reply, Verdict, WorkerStatus, Workers, WorkersError,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::gen::{advance, config, millis, rule, task};

const TASKS: u8 = 5;
/// The node name the checker sees: the bookkeeping does not know where an incarnation runs.
const NODE: &str = "worker";

/// Rule 3's checker told that an incarnation stopped; a stop of one that is not live is a broken bookkeeping.
fn stopped(live: &mut LiveIncarnations, now: Time, task: &TaskId, epoch: Epoch) -> Result<(), Violation> {
    live.on_stop(task.as_str(), epoch.0, NODE).map(|_| ()).map_err(|_| {
        Violation::new(Rule::OneLiveIncarnation, now, format!("{task} epoch {epoch} stopped but was not live"))
            .with([Id::Task(task.as_str().to_owned()), Id::Epoch(epoch)])
    })
}

/// A worker epoch relative to the task's entry.
#[derive(Clone, Copy, Debug)]
enum WorkerPick {
    Same,
    Older,
    Newer,
}

/// A master epoch relative to this master's.
#[derive(Clone, Copy, Debug)]
enum MasterPick {
    Same,
    Older,
    Newer,
    None,
}

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    /// `fresh`: above every epoch the task ever had; else the entry's epoch minus `back`.
    Dispatch {
        task: u8,
        fresh: bool,
        back: u64,
    },
    DispatchFailed {
        task: u8,
        worker: WorkerPick,
    },
    Heartbeat {
        task: u8,
        master: MasterPick,
        worker: WorkerPick,
    },
    Status {
        task: u8,
        master: MasterPick,
        worker: WorkerPick,
        status: u8,
    },
    Revoke {
        task: u8,
        worker: WorkerPick,
    },
    Remove {
        task: u8,
    },
    Tick,
    /// The master restarts `gap` ms later with its epoch raised by `raise`.
    Recover {
        gap: u64,
        raise: u64,
    },
}

fn worker_pick() -> impl Strategy<Value = WorkerPick> {
    prop_oneof![8 => Just(WorkerPick::Same), 1 => Just(WorkerPick::Older), 1 => Just(WorkerPick::Newer)]
}

fn master_pick() -> impl Strategy<Value = MasterPick> {
    prop_oneof![
        8 => Just(MasterPick::Same),
        1 => Just(MasterPick::Older),
        1 => Just(MasterPick::Newer),
        1 => Just(MasterPick::None),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let t = 0..TASKS;
    prop_oneof![
        5 => advance(1_500, 8_000).prop_map(Op::Advance),
        4 => (t.clone(), prop::bool::weighted(0.8), 0u64..2).prop_map(|(task, fresh, back)| Op::Dispatch {
            task,
            fresh,
            back
        }),
        1 => (t.clone(), worker_pick()).prop_map(|(task, worker)| Op::DispatchFailed { task, worker }),
        8 => (t.clone(), master_pick(), worker_pick()).prop_map(|(task, master, worker)| Op::Heartbeat {
            task,
            master,
            worker
        }),
        3 => (t.clone(), master_pick(), worker_pick(), 0u8..4).prop_map(|(task, master, worker, status)| {
            Op::Status { task, master, worker, status }
        }),
        1 => (t.clone(), worker_pick()).prop_map(|(task, worker)| Op::Revoke { task, worker }),
        1 => t.prop_map(|task| Op::Remove { task }),
        4 => Just(Op::Tick),
        1 => (advance(1_000, 5_000), 1u64..3).prop_map(|(gap, raise)| Op::Recover { gap, raise }),
    ]
}

fn status(i: u8) -> WorkerStatus {
    match i {
        0 => WorkerStatus::Running,
        1 => WorkerStatus::Finished,
        2 => WorkerStatus::Canceled,
        _ => WorkerStatus::Failed { message: "boom".into(), retryable: false },
    }
}

#[derive(Debug)]
struct Model {
    ttl: Duration,
    master: Epoch,
    entries: BTreeMap<TaskId, Entry>,
    superseded: bool,
    /// The recovery window: its end, how many incarnations it expects, and how many checked in.
    recovery: Option<(Time, usize)>,
    adopted: usize,
    /// The highest epoch each task ever had.
    highest: BTreeMap<TaskId, Epoch>,
}

impl Model {
    fn worker_epoch(&self, t: &TaskId, pick: WorkerPick) -> Epoch {
        let base = self.entries.get(t).map_or_else(|| self.highest.get(t).copied().unwrap_or(Epoch(1)), |e| e.epoch);
        match pick {
            WorkerPick::Same => base,
            WorkerPick::Older => Epoch(base.0.saturating_sub(1)),
            WorkerPick::Newer => base.next(),
        }
    }

    fn master_epoch(&self, pick: MasterPick) -> Epoch {
        match pick {
            MasterPick::Same => self.master,
            MasterPick::Older => Epoch(self.master.0 - 1),
            MasterPick::Newer => self.master.next(),
            MasterPick::None => Epoch::NONE,
        }
    }

    /// The fencing rule: a newer master or worker epoch makes this master stale; an unknown task, an older
    /// worker epoch, or a refused (revoked, exited) incarnation makes the worker stale.
    fn fence(&mut self, msg: &Message) -> Result<Epoch, Reply> {
        let reply = |verdict, worker_epoch| Reply { verdict, master_epoch: self.master, worker_epoch };
        if msg.master_epoch > self.master {
            self.superseded = true;
            return Err(reply(Verdict::StaleMaster, Epoch::NONE));
        }
        let Some(e) = self.entries.get(&msg.task) else { return Err(reply(Verdict::StaleWorker, Epoch::NONE)) };
        if msg.worker_epoch > e.epoch {
            self.superseded = true;
            return Err(reply(Verdict::StaleMaster, e.epoch));
        }
        if msg.worker_epoch < e.epoch || matches!(e.state, EntryState::Revoked | EntryState::Exited(_)) {
            return Err(reply(Verdict::StaleWorker, e.epoch));
        }
        Ok(e.epoch)
    }

    fn rejected(msg: &Message, r: Reply) -> (Reply, Vec<Event>) {
        let events = match r.verdict {
            Verdict::StaleMaster => vec![Event::Superseded { seen: msg.master_epoch.max(msg.worker_epoch) }],
            _ => vec![],
        };
        (r, events)
    }

    fn anyone_waiting(&self) -> bool {
        self.entries.values().any(|e| e.state == EntryState::Waiting)
    }

    /// Ends the recovery: every expected incarnation that did not check in is lost.
    fn recovered(&mut self, events: &mut Vec<Event>) {
        let (_, expected) = self.recovery.take().expect("a recovery runs");
        events.push(Event::Recovered { adopted: self.adopted, lost: expected - self.adopted });
    }

    /// Ends the recovery early once no expected incarnation is still waiting.
    fn maybe_recovered(&mut self, events: &mut Vec<Event>) {
        if self.recovery.is_some() && !self.anyone_waiting() {
            self.recovered(events);
        }
    }

    fn heartbeat(&mut self, now: Time, msg: &Message) -> (Reply, Vec<Event>) {
        let epoch = match self.fence(msg) {
            Ok(e) => e,
            Err(r) => return Self::rejected(msg, r),
        };
        let e = self.entries.get_mut(&msg.task).expect("fenced");
        let was = std::mem::replace(&mut e.state, EntryState::Online);
        e.last_heard = Some(now);
        e.expires_at = now + self.ttl;
        let mut events = vec![];
        if was != EntryState::Online {
            events.push(Event::Online { task: msg.task.clone(), epoch });
        }
        if was == EntryState::Waiting {
            self.adopted += 1;
            self.maybe_recovered(&mut events);
        }
        (Reply { verdict: Verdict::Accepted, master_epoch: self.master, worker_epoch: epoch }, events)
    }

    fn status(&mut self, now: Time, msg: &Message, status: WorkerStatus) -> (Reply, Vec<Event>) {
        if msg.master_epoch > self.master {
            // Fenced before anything else, a repeated exit included.
            let r = self.fence(msg).expect_err("a newer master epoch is always refused");
            return Self::rejected(msg, r);
        }
        if let Some(e) = self.entries.get(&msg.task) {
            if e.epoch == msg.worker_epoch && e.state == EntryState::Exited(status.clone()) {
                // A repeated report of the same exit is acknowledged again.
                return (
                    Reply { verdict: Verdict::Accepted, master_epoch: self.master, worker_epoch: e.epoch },
                    vec![],
                );
            }
        }
        if !status.is_terminal() {
            return self.heartbeat(now, msg);
        }
        let epoch = match self.fence(msg) {
            Ok(e) => e,
            Err(r) => return Self::rejected(msg, r),
        };
        let e = self.entries.get_mut(&msg.task).expect("fenced");
        let was = std::mem::replace(&mut e.state, EntryState::Exited(status.clone()));
        e.last_heard = Some(now);
        let mut events = vec![Event::Exited { task: msg.task.clone(), epoch, status }];
        if was == EntryState::Waiting {
            self.adopted += 1;
            self.maybe_recovered(&mut events);
        }
        (Reply { verdict: Verdict::Accepted, master_epoch: self.master, worker_epoch: epoch }, events)
    }

    fn tick(&mut self, now: Time) -> Vec<Event> {
        let over = self.recovery.is_some_and(|(until, _)| now >= until);
        let mut events = vec![];
        let mut gone = vec![];
        for (t, e) in &self.entries {
            let reason = match &e.state {
                EntryState::Waiting if over => LostReason::NotRecovered,
                EntryState::Waiting | EntryState::Exited(_) => continue,
                _ if e.expires_at > now => continue,
                EntryState::Created => LostReason::NeverStarted,
                EntryState::Online => LostReason::Silent,
                EntryState::Revoked => LostReason::Revoked,
            };
            gone.push(t.clone());
            events.push(Event::Lost { task: t.clone(), epoch: e.epoch, reason });
        }
        for t in gone {
            self.entries.remove(&t);
        }
        if over || (self.recovery.is_some() && !self.anyone_waiting()) {
            self.recovered(&mut events);
        }
        events
    }
}

struct Knobs {
    /// Let incarnations a recovering master waits for exit, be revoked or be removed (a bug once: the recovery's
    /// summary then counted them as neither adopted nor lost).
    disturb_waiting: bool,
    /// Send repeated exit reports that show a newer master epoch (a bug once: acknowledged instead of
    /// `StaleMaster`).
    newer_master_on_repeated_exit: bool,
}

fn run(timing: HeartbeatTiming, ops: &[Op], knobs: &Knobs) -> Result<(), TestCaseError> {
    let ttl = timing.offline_ttl;
    let mut w = Workers::new(Epoch(5), timing);
    let mut m = Model {
        ttl,
        master: Epoch(5),
        entries: BTreeMap::new(),
        superseded: false,
        recovery: None,
        adopted: 0,
        highest: BTreeMap::new(),
    };
    let mut live = LiveIncarnations::new(Duration::ZERO);
    let mut fenced = FencedEpochs::default();
    // Tasks the caller removed: it promised not to dispatch them again, so the checker keeps whatever may still
    // run of them live.
    let mut retired: BTreeSet<TaskId> = BTreeSet::new();
    let mut now = Time::ZERO;
    // When each recovery began and how many incarnations it expected.
    let mut recovery_start: Option<(Time, usize)> = None;
    for (step, op) in ops.iter().enumerate() {
        let mut events = vec![];
        match op {
            Op::Advance(d) => now = now + Duration::from_millis(*d),
            Op::Dispatch { task: t, fresh, back } => {
                let t = task(*t);
                if retired.contains(&t) {
                    continue;
                }
                let highest = m.highest.get(&t).copied().unwrap_or(Epoch::NONE);
                let epoch = match (fresh, m.entries.get(&t)) {
                    (false, Some(e)) => Epoch(e.epoch.0.saturating_sub(*back).max(1)),
                    _ => highest.next(),
                };
                // Asking first changes nothing, and answers as the dispatch then does.
                let asked = w.admits(now, &t, epoch);
                let got = w.on_dispatched(now, &t, epoch);
                prop_assert_eq!(&asked, &got, "step {}: admits and on_dispatched disagree", step);
                let want = match m.entries.get(&t) {
                    Some(e) if e.state.may_be_live() => {
                        Err(WorkersError::StillLive { task: t.clone(), epoch: e.epoch })
                    }
                    Some(e) if epoch <= e.epoch => {
                        Err(WorkersError::EpochNotNewer { task: t.clone(), new: epoch, last: e.epoch })
                    }
                    _ => Ok(()),
                };
                prop_assert_eq!(&got, &want, "step {}", step);
                if got.is_ok() {
                    // A dispatch is the start of an incarnation as far as rule 3 goes.
                    rule(live.on_start(now, t.as_str(), epoch.0, NODE))?;
                    let entry = Entry { epoch, state: EntryState::Created, expires_at: now + ttl, last_heard: None };
                    m.entries.insert(t.clone(), entry);
                    m.highest.insert(t, epoch);
                }
            }
            Op::DispatchFailed { task: t, worker } => {
                let t = task(*t);
                let epoch = m.worker_epoch(&t, *worker);
                w.on_dispatch_failed(&t, epoch);
                if m.entries.get(&t).is_some_and(|e| e.epoch == epoch && e.state == EntryState::Created) {
                    m.entries.remove(&t);
                    rule(stopped(&mut live, now, &t, epoch))?;
                }
            }
            Op::Heartbeat { task: t, master, worker } => {
                let t = task(*t);
                let msg = Message {
                    worker_epoch: m.worker_epoch(&t, *worker),
                    master_epoch: m.master_epoch(*master),
                    task: t,
                };
                let entry_epoch = m.entries.get(&msg.task).map(|e| e.epoch);
                let master_before = m.master;
                let claim = w.claim(&msg);
                let got = w.on_heartbeat(now, &msg);
                let want = m.heartbeat(now, &msg);
                prop_assert_eq!(&got, &want, "step {}: heartbeat {:?}", step, msg);
                check_claim(step, claim, &got.0)?;
                check_reply(step, &msg, &got.0, entry_epoch, master_before)?;
                accepted(&mut fenced, now, master_before, &msg, &got.0)?;
                events = got.1;
            }
            Op::Status { task: t, master, worker, status: s } => {
                let t = task(*t);
                let msg = Message {
                    worker_epoch: m.worker_epoch(&t, *worker),
                    master_epoch: m.master_epoch(*master),
                    task: t,
                };
                let entry = m.entries.get(&msg.task);
                let waiting = entry.is_some_and(|e| e.state == EntryState::Waiting);
                if !knobs.disturb_waiting && waiting && status(*s).is_terminal() {
                    continue;
                }
                let repeated =
                    entry.is_some_and(|e| e.epoch == msg.worker_epoch && matches!(e.state, EntryState::Exited(_)));
                if !knobs.newer_master_on_repeated_exit && repeated && msg.master_epoch > m.master {
                    continue;
                }
                let entry_epoch = entry.map(|e| e.epoch);
                let master_before = m.master;
                let claim = w.claim(&msg);
                let got = w.on_status(now, &msg, status(*s));
                let want = m.status(now, &msg, status(*s));
                prop_assert_eq!(&got, &want, "step {}: status {:?}", step, msg);
                check_claim(step, claim, &got.0)?;
                check_reply(step, &msg, &got.0, entry_epoch, master_before)?;
                accepted(&mut fenced, now, master_before, &msg, &got.0)?;
                events = got.1;
            }
            Op::Revoke { task: t, worker } => {
                let t = task(*t);
                let epoch = m.worker_epoch(&t, *worker);
                if !knobs.disturb_waiting && m.entries.get(&t).is_some_and(|e| e.state == EntryState::Waiting) {
                    continue;
                }
                w.revoke(&t, epoch);
                if let Some(e) = m.entries.get_mut(&t).filter(|e| e.epoch == epoch && e.state.may_be_live()) {
                    e.state = EntryState::Revoked;
                }
            }
            Op::Remove { task: t } => {
                let t = task(*t);
                if !knobs.disturb_waiting && m.entries.get(&t).is_some_and(|e| e.state == EntryState::Waiting) {
                    continue;
                }
                w.remove(&t);
                m.entries.remove(&t);
                retired.insert(t);
            }
            Op::Tick => {
                let before = m.entries.clone();
                let until = m.recovery.map(|(u, _)| u);
                let got = w.tick(now);
                let want = m.tick(now);
                prop_assert_eq!(&got, &want, "step {}: tick", step);
                for ev in &got {
                    if let Event::Lost { task: t, epoch, reason } = ev {
                        let e = &before[t];
                        // Lost only once the TTL ran out since the last sign of life.
                        let deadline = match reason {
                            LostReason::NotRecovered => until.expect("lost to a recovery that runs"),
                            _ => e.last_heard.map_or(e.expires_at, |h| h + ttl),
                        };
                        prop_assert!(now >= deadline, "step {}: {} lost at {} before {}", step, t, now, deadline);
                        if let (EntryState::Online, Some(h)) = (&e.state, e.last_heard) {
                            prop_assert!(now >= h + ttl, "step {}: online {} lost early", step, t);
                        }
                        rule(stopped(&mut live, now, t, *epoch))?;
                    }
                }
                if let Some((start, _)) = recovery_start.filter(|(s, _)| now >= *s + ttl) {
                    let recovered = got.iter().any(|e| matches!(e, Event::Recovered { .. }));
                    prop_assert!(
                        recovered || !w.is_recovering(),
                        "step {}: recovery from {} still running",
                        step,
                        start
                    );
                }
                events = got;
            }
            Op::Recover { gap, raise } => {
                now = now + Duration::from_millis(*gap);
                let expected: Vec<(TaskId, Epoch)> = m
                    .entries
                    .iter()
                    .filter(|(_, e)| e.state.may_be_live())
                    .map(|(t, e)| (t.clone(), e.epoch))
                    .collect();
                m.master = Epoch(m.master.0 + raise);
                w = Workers::recover(now, m.master, timing, expected.clone());
                m.entries = expected
                    .iter()
                    .map(|(t, e)| {
                        (
                            t.clone(),
                            Entry { epoch: *e, state: EntryState::Waiting, expires_at: now + ttl, last_heard: None },
                        )
                    })
                    .collect();
                m.superseded = false;
                m.recovery = Some((now + ttl, expected.len()));
                m.adopted = 0;
                recovery_start = Some((now, expected.len()));
            }
        }
        for ev in &events {
            match ev {
                Event::Exited { task: t, epoch, .. } => rule(stopped(&mut live, now, t, *epoch))?,
                Event::Recovered { adopted, lost } => {
                    let (_, expected) = recovery_start.take().expect("a recovery was running");
                    prop_assert_eq!(adopted + lost, expected, "step {}: adopted + lost != expected", step);
                }
                _ => {}
            }
        }
        rule(w.check())?;
        prop_assert_eq!(w.master_epoch(), m.master);
        prop_assert_eq!(w.is_superseded(), m.superseded, "step {}", step);
        prop_assert_eq!(w.is_recovering(), m.recovery.is_some(), "step {}", step);
        let got: BTreeMap<TaskId, Entry> = w.iter().map(|(t, e)| (t.clone(), e.clone())).collect();
        prop_assert_eq!(&got, &m.entries, "step {}: entries", step);
        // At most one incarnation per task may be live, and the checker agrees with the bookkeeping on which.
        let may_live: BTreeSet<&TaskId> =
            m.entries.iter().filter(|(_, e)| e.state.may_be_live()).map(|(t, _)| t).collect();
        for t in (0..TASKS).map(task).filter(|t| !retired.contains(t)) {
            let tracked = live.live(t.as_str()).map(|(e, _)| Epoch(e));
            let want = m.entries.get(&t).filter(|_| may_live.contains(&t)).map(|e| e.epoch);
            prop_assert_eq!(tracked, want, "step {}: live incarnation of {}", step, t);
        }
        let expiry = m.entries.values().filter(|e| e.state.may_be_live()).map(|e| e.expires_at).min();
        let next = foreman::core::time::earliest(expiry, m.recovery.map(|(u, _)| u));
        prop_assert_eq!(w.next_deadline(), next, "step {}", step);
    }
    Ok(())
}

/// A message is named a claim (for its master to confirm before feeding it) exactly when feeding it would make the
/// master believe it is stale: no claim slips through unconfirmed, and no plain message waits on a confirmation.
fn check_claim(step: usize, claim: Option<foreman::core::workers::Claim>, r: &Reply) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        claim.is_some(),
        r.verdict == Verdict::StaleMaster,
        "step {}: claim {:?}, reply {:?}",
        step,
        claim,
        r
    );
    Ok(())
}

/// The fencing verdict's rules: `StaleMaster` exactly when the message shows a newer master, or a newer worker
/// epoch than the entry this master holds; a stale worker is never accepted; the reply names this master.
/// Rule 2's checker told of every message the bookkeeping accepted: one master incarnation never accepts a task's
/// older incarnation after a newer one.
fn accepted(
    fenced: &mut FencedEpochs,
    now: Time,
    master: Epoch,
    msg: &Message,
    r: &Reply,
) -> Result<(), TestCaseError> {
    if r.verdict != Verdict::Accepted {
        return Ok(());
    }
    let receiver = Receiver::JobMaster { node: NODE.to_owned(), task: "master".to_owned(), epoch: master };
    let from = Sender::Task(msg.task.as_str().to_owned());
    rule(fenced.on_accepted(now, &receiver, &from, msg.worker_epoch.0, "a message"))
}

fn check_reply(
    step: usize,
    msg: &Message,
    r: &Reply,
    entry: Option<Epoch>,
    master: Epoch,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(r.master_epoch, master, "step {}", step);
    let newer = msg.master_epoch > master || entry.is_some_and(|e| msg.worker_epoch > e);
    prop_assert_eq!(r.verdict == Verdict::StaleMaster, newer, "step {}: {:?} for {:?}", step, r, msg);
    let stale_worker = entry.is_none_or(|e| msg.worker_epoch < e);
    if stale_worker {
        prop_assert!(r.verdict != Verdict::Accepted, "step {}: stale worker accepted: {:?}", step, msg);
    }
    Ok(())
}

fn timing() -> impl Strategy<Value = HeartbeatTiming> {
    millis(1_000, 6_000).prop_map(|ttl| HeartbeatTiming {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(100),
        self_fence: Duration::from_millis(ttl / 2),
        offline_ttl: Duration::from_millis(ttl),
    })
}

/// The gentlest knobs; the properties below add the disturbances that once found bugs.
const GREEN: Knobs = Knobs { disturb_waiting: false, newer_master_on_repeated_exit: false };

proptest! {
    #![proptest_config(config())]

    /// Fencing, one live incarnation per task, expiry, and recovery of a restarted master.
    #[test]
    fn workers_follow_the_model(timing in timing(), ops in prop::collection::vec(op(), 1..60)) {
        run(timing, &ops, &GREEN)?;
    }

    /// A recovery's summary accounts for every expected incarnation, including those that exit, are revoked or
    /// are removed while it waits for them.
    #[test]
    fn workers_recovery_accounts_for_every_expected_incarnation(
        timing in timing(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(timing, &ops, &Knobs { disturb_waiting: true, ..GREEN })?;
    }

    /// A message showing a newer master epoch makes this master stale, even when it repeats an exit.
    #[test]
    fn workers_repeated_exit_from_a_newer_master_is_fenced(
        timing in timing(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(timing, &ops, &Knobs { newer_master_on_repeated_exit: true, ..GREEN })?;
    }
}
