//! The driver of a leader term: recovery from the metastore, then the term's job manager
//! ([`crate::core::manager::Manager`]) and what carrying out its decisions needs, under one lock ([`Term`]). Every
//! decision is the manager's; this module moves bytes and timers.
//!
//! Two kinds of poll step the manager:
//! - **a caller's**: a request is stepped in the poll of the call that makes it, when the term's lock is free
//!   ([`Shared::try_call`]): a heartbeat is answered without a hop to another task. When the lock is busy (another
//!   thread steps the term), the call goes to the term's inbox instead;
//! - **the term's loop**: outcomes of writes, reads and dispatches, the timers (the periodic pass, the tombstone
//!   sweep) and the calls of the inbox. A caller's step that moved the timers or ended the term pokes the loop.
//!
//! After each step, the [`Ready`](manager::Ready) is carried out in this order:
//! 1. the write (at most one is ever in flight), as transactions guarded by the term's write fence, in a task of
//!    its own; its outcome (and the fence) comes back to [`Manager::on_write`];
//! 2. the reads, each in a task of its own; each result comes back to [`Manager::on_read`];
//! 3. the dispatches, each in a task of its own; a definite refusal comes back as an input;
//! 4. the answers, on their reply channels;
//! 5. the events: logs, metrics, observations;
//! 6. the step-down, which ends the term at once.
//!
//! Before any step, the stepping poll checks that this master may still act: nothing is decided past the step-down
//! deadline.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError, Weak};

use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{info, warn};

use super::store_io::{persist, read_one, recover, take_fence};
use super::Master;
use crate::core::ids::LeaderEpoch;
use crate::core::manager::{
    self as manager, Answer, Dispatch, Input, IoId, Manager, ReadResult, ReplyTo, Request, WriteOutcome,
};
use crate::core::time::Time;
use crate::core::write_fence::WriteFence;
use crate::meta::LeaderKey;

/// How many requests may wait in a term's inbox before their senders wait too.
const INBOX: usize = 4096;

/// A request and where its answer goes.
pub(crate) struct Call {
    pub request: Request,
    /// Who sent it, when the term must check that it may (see [`Manager::action_of`]).
    pub caller: Option<crate::core::auth::Principal>,
    pub reply: oneshot::Sender<Answer>,
}

/// The serving term, as the rest of the master reaches it.
pub(crate) struct Serving {
    pub epoch: LeaderEpoch,
    pub inbox: mpsc::Sender<Call>,
    pub term: Arc<Shared>,
}

/// A term's state as its loop and its callers share it.
pub(crate) struct Shared {
    epoch: LeaderEpoch,
    /// The master, for a caller's step to carry out with (weak: the master holds the serving term).
    master: Weak<Master>,
    term: Mutex<Term>,
    /// Wakes the loop after a caller's step moved its timers or ended the term (a permit is kept if the loop is
    /// not waiting yet).
    poke: Notify,
}

/// What [`Shared::try_call`] did with a call.
pub(crate) enum Tried {
    /// Stepped: the answer is on the call's reply channel, now or when the manager gives it.
    Stepped,
    /// Another poll steps the term: the call goes to the inbox (boxed: only a busy term pays for the room).
    Busy(Box<Call>),
    /// The term has ended, or this master may no longer act in it: nothing was stepped.
    Ended,
}

/// The job manager of a term and what carrying out its decisions needs.
struct Term {
    manager: Manager,
    /// The write fence: here between writes, with the one write in flight while it is.
    fence: Option<WriteFence>,
    replies: BTreeMap<ReplyTo, oneshot::Sender<Answer>>,
    next_reply: u64,
    /// Where the tasks of writes, reads and dispatches report back (to the loop).
    done: mpsc::UnboundedSender<Done>,
    /// The timers the loop waits on: the periodic pass, the tombstone sweep.
    armed: (Option<Time>, Option<Time>),
    /// Why the term ended, once it has: nothing is stepped after that.
    ended: Option<String>,
}

/// What a task of the driver reports back, or an input of the loop.
enum Done {
    Write(IoId, WriteOutcome, Option<WriteFence>),
    Read(IoId, Result<ReadResult, String>),
    Input(Input),
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Term> {
        // A panic while holding the lock is a bug that already failed loudly; keep serving what is left.
        self.term.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Steps the manager with `call` in this poll if no other poll steps it, and carries out what it decided.
    pub(crate) fn try_call(&self, call: Call) -> Tried {
        let mut t = match self.term.try_lock() {
            Ok(t) => t,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Tried::Busy(Box::new(call)),
        };
        let Some(m) = self.master.upgrade() else { return Tried::Ended };
        let now = m.clock.now();
        if t.ended.is_some() || m.lock().leadership.acting(now) != Some(self.epoch) {
            // The loop finds out why at once (a call that found the term over used to wake it too).
            self.poke.notify_one();
            return Tried::Ended;
        }
        let armed = t.armed;
        if let Some(input) = t.admit(call) {
            t.step(now, input);
            t.carry_out(&m);
        }
        if t.ended.is_some() || t.armed != armed {
            self.poke.notify_one();
        }
        Tried::Stepped
    }
}

impl Term {
    /// A call's request as the manager's input, or `None` if its caller may not make it (refused here, with what
    /// the manager knows now: who an executor id belongs to, where a job master runs). A process that checks
    /// nothing allows every call: the facts are not looked up (a copy of the executor's name, on every heartbeat).
    fn admit(&mut self, call: Call) -> Option<Done> {
        let mode = crate::rpc::identity::mode();
        let denied = match &call.caller {
            Some(p) if mode != crate::core::auth::Mode::Insecure => {
                self.manager.action_of(&call.request).and_then(|a| crate::core::auth::authorize(p, &a, mode).err())
            }
            _ => None,
        };
        if let Some(d) = denied {
            let _ = call.reply.send(Err(manager::Refusal::Denied(d)));
            return None;
        }
        self.next_reply += 1;
        self.replies.insert(ReplyTo(self.next_reply), call.reply);
        Some(Done::Input(Input::Request(ReplyTo(self.next_reply), call.request)))
    }

    fn step(&mut self, now: Time, input: Done) {
        match input {
            Done::Write(io, outcome, back) => {
                self.fence = back;
                self.manager.on_write(now, io, outcome)
            }
            Done::Read(io, result) => self.manager.on_read(now, io, result),
            Done::Input(input) => self.manager.step(now, input),
        }
    }

    /// Carries out the manager's [`manager::Ready`] in its documented order; records why the term ends, if it does.
    fn carry_out(&mut self, m: &Arc<Master>) {
        let ready = self.manager.ready();
        self.armed = (ready.wake_at, ready.sweep_at);
        if let Some((io, records)) = ready.write {
            // The fence travels with the one write in flight and comes back with its outcome.
            let Some(taken) = self.fence.take() else {
                // Lost with an earlier write, whose outcome ended the term (the manager never writes after that).
                self.end(m, "a write was asked for after the write fence was lost".into());
                return;
            };
            let (m, done) = (m.clone(), self.done.clone());
            tokio::spawn(async move {
                let (outcome, fence) = persist(&m, taken, &records).await;
                let _ = done.send(Done::Write(io, outcome, fence));
            });
        }
        for (io, read) in ready.reads {
            let (m, done) = (m.clone(), self.done.clone());
            tokio::spawn(async move {
                let result = read_one(&m, &read).await;
                let _ = done.send(Done::Read(io, result));
            });
        }
        for d in ready.dispatches {
            tokio::spawn(dispatch(m.clone(), d, self.done.clone()));
        }
        for (to, answer) in ready.answers {
            if let Some(reply) = self.replies.remove(&to) {
                let _ = reply.send(answer);
            }
        }
        for e in ready.events {
            m.report(e);
        }
        if let Some(down) = ready.step_down {
            m.step_down_now(&down.why);
            if let Some(newer) = down.newer {
                m.lock().leadership.observe_epoch(newer);
            }
            self.end(m, down.why);
        }
    }

    /// Ends the term: nothing is stepped after this, and the calls waiting for an answer get none (their reply
    /// channels close).
    fn end(&mut self, m: &Master, why: String) {
        if self.ended.is_none() {
            self.ended = Some(why);
        }
        self.replies.clear();
        m.wake.notify_waiters();
    }
}

/// Runs a term: recovery, then the driver until this master may no longer act. Returns why it ended.
pub(super) async fn lead(m: Arc<Master>, key: LeaderKey, epoch: LeaderEpoch) -> String {
    let fence = match take_fence(&m, &key, epoch).await {
        Ok(f) => Some(f),
        Err(e) => return e,
    };
    let reading = m.clock.now();
    let (snapshot, size) = match recover(&m, epoch).await {
        Ok(s) => s,
        Err(e) => return format!("recovery failed: {e}"),
    };
    let (executors, jobs) = (snapshot.executors.len(), snapshot.jobs.len());
    let now = m.clock.now();
    let seed = { crate::core::rng::Rng::next_u64(&mut m.lock().rng) };
    let manager = Manager::recover(now, epoch, m.manager_policy(), m.plants(), seed, snapshot);
    let (read, rebuilt) = (now.saturating_since(reading), m.clock.now().saturating_since(now));
    info!(
        epoch = epoch.0,
        executors,
        jobs,
        records = size.records,
        bytes = size.bytes,
        read_ms = crate::core::time::millis_of(read),
        rebuild_ms = crate::core::time::millis_of(rebuilt),
        "recovery read the metastore and rebuilt the term's state"
    );
    let (inbox, mut calls) = mpsc::channel::<Call>(INBOX);
    let (done, mut outcomes) = mpsc::unbounded_channel::<Done>();
    let term = Term { manager, fence, replies: BTreeMap::new(), next_reply: 0, done, armed: (None, None), ended: None };
    let shared = Arc::new(Shared { epoch, master: Arc::downgrade(&m), term: Mutex::new(term), poke: Notify::new() });
    {
        let mut inner = m.lock();
        if inner.leadership.acting(m.clock.now()) != Some(epoch) {
            return "lost the lease during recovery".into();
        }
        inner.serving = Some(Serving { epoch, inbox, term: shared.clone() });
    }
    m.observe(super::Observation::ActingBegan { epoch, at: m.clock.instant(now) });
    let until = m.lock().leadership.deadline();
    if let Some(until) = until {
        m.observe(super::Observation::ActingUntil { epoch, until: m.clock.instant(until) });
    }
    // What the loop steps next: recovery's own decisions are carried out first, with no input.
    let mut next: Option<Done> = None;
    loop {
        // The tick in progress: the thread's CPU clock when its step began. A tick is the manager's step at one of
        // its deadlines and the carrying out of what it decided, measured for the figures only (other steps are
        // not: a heartbeat's would pay two clock reads).
        let tick = matches!(next, Some(Done::Input(Input::Tick))).then(crate::clock::thread_cpu);
        let (wake_at, sweep_at) = {
            let mut t = shared.lock();
            if t.ended.is_none() {
                if let Some(input) = next.take() {
                    t.step(m.clock.now(), input);
                }
                t.carry_out(&m);
            }
            if let Some(why) = t.ended.clone() {
                t.replies.clear();
                return why;
            }
            t.armed
        };
        if let Some(began) = tick {
            m.stats.tick_cpu.observe(crate::clock::thread_cpu().saturating_sub(began));
        }
        // No deadline: no timer at all (a timer an hour away would sit in the simulator's heap for every wake-up).
        let (wake, sweep) = (wake_at.unwrap_or(Time::NEVER), sweep_at.unwrap_or(Time::NEVER));
        next = tokio::select! {
            biased;
            _ = m.wake.notified() => None,
            _ = shared.poke.notified() => None,
            Some(d) = outcomes.recv() => Some(d),
            _ = m.clock.sleep_until(wake) => Some(Done::Input(Input::Tick)),
            _ = m.clock.sleep_until(sweep) => {
                Some(Done::Input(Input::SweepTombstones { wall: crate::clock::wall_now() }))
            }
            Some(call) = calls.recv() => shared.lock().admit(call),
        };
        if m.lock().leadership.acting(m.clock.now()) != Some(epoch) {
            let why = "the lease could not be confirmed within the step-down deadline".to_owned();
            shared.lock().end(&m, why.clone());
            return why;
        }
    }
}

/// Starts a job master: two-phase dispatch to its executor. A definite refusal loses the incarnation (a refused
/// configuration fails the job); an unanswered call leaves it to the bookkeeping's TTL, as the job master may run.
async fn dispatch(m: Arc<Master>, d: Dispatch, done: mpsc::UnboundedSender<Done>) {
    let timeout = m.cfg.rpc.request_timeout;
    let pre = crate::rpc::pb::PreDispatchTaskRequest {
        task_id: crate::core::ids::TaskId::job_master(&d.job).as_str().to_owned(),
        kind: crate::rpc::pb::TaskKind::JobMaster as i32,
        task_type: d.spec.job_type.clone(),
        task_config: d.spec.config.clone().into_bytes(),
        job_id: d.job.as_str().to_owned(),
        epoch: d.epoch.0,
        master_id: m.name().to_owned(),
        master_address: m.address().to_owned(),
        master_epoch: d.leader_epoch.0,
        leader_epoch: d.leader_epoch.0,
        request_id: format!("{}/{}", d.job, d.epoch.0),
        cost: d.spec.cost,
        timing: Some(crate::rpc::timing_to_wire(&m.cfg.worker_timing())),
        executor_id: d.executor.0,
    };
    let still_leads = || m.lock().leadership.acting(m.clock.now()) == Some(d.leader_epoch);
    let result = crate::framework::dispatch::dispatch(
        &d.address,
        pre,
        timeout,
        still_leads,
        || {},
        &m.fault_points,
        &m.identity(),
    )
    .await;
    let Err(status) = result else {
        info!(job = %d.job, epoch = d.epoch.0, executor = %d.executor, "job master dispatched");
        return;
    };
    warn!(job = %d.job, epoch = d.epoch.0, executor = %d.executor, "dispatch failed: {status}");
    // No connection: nothing reached the executor (a leader cut off from it, or its process gone).
    if crate::rpc::connect::never_connected(&status) {
        let _ = done.send(Done::Input(Input::ExecutorUnreachable { executor: d.executor }));
    }
    if crate::framework::dispatch::is_definite(&status) {
        let fatal = (status.code() == tonic::Code::InvalidArgument).then(|| status.message().to_owned());
        let _ = done.send(Done::Input(Input::DispatchRefused { job: d.job, epoch: d.epoch, fatal }));
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use std::future::Future;
    use std::task::{Context, Waker};
    use std::time::Duration;

    use super::*;
    use crate::config::{ElectionConfig, MasterConfig};
    use crate::core::manager::Reply;
    use crate::master::Role;
    use crate::meta::MetaStore;

    /// A master alone on its own embedded store, once it leads and serves.
    async fn leading(name: &str) -> Arc<Master> {
        let store = MetaStore::embedded(&format!("leader-{name}"), None).expect("an embedded store");
        let election = ElectionConfig {
            lease_ttl: Duration::from_secs(2),
            keepalive_interval: Duration::from_millis(300),
            step_down: Duration::from_millis(900),
            campaign_retry: Duration::from_millis(200),
        };
        let mut cfg = MasterConfig {
            name: format!("m-{name}"),
            cluster: format!("leader-{name}"),
            election,
            ..MasterConfig::default()
        };
        cfg.fill_derived();
        cfg.validate().expect("a valid configuration");
        let m = Master::new(cfg, store, 3);
        tokio::spawn(m.clone().run(std::future::pending()));
        let serving = async {
            while !matches!(m.role(), Role::Leader(_)) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), serving).await.expect("the master leads within 10 s");
        m
    }

    #[tokio::test]
    async fn a_call_is_stepped_in_its_own_poll_when_the_term_is_free() {
        let m = leading("free").await;
        let mut call = Box::pin(m.call(Request::ListExecutors));
        // One poll, no yield: the manager answered within it.
        let first = call.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(matches!(first, std::task::Poll::Ready(Ok(Reply::Executors(_)))), "{first:?}");
    }

    #[tokio::test]
    async fn a_call_made_while_another_poll_steps_the_term_is_answered_through_the_inbox() {
        let m = leading("busy").await;
        let term = m.lock().serving.as_ref().map(|s| s.term.clone()).expect("a serving term");
        let held = term.lock();
        let mut call = Box::pin(m.call(Request::ListExecutors));
        // Polled once while the term is held (no yield: the loop cannot block on it): queued, unanswered.
        let first = call.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(first.is_pending(), "{first:?}");
        drop(held);
        let answer = tokio::time::timeout(Duration::from_secs(5), call).await.expect("answered by the loop");
        assert!(matches!(answer, Ok(Reply::Executors(_))), "{answer:?}");
    }
}
