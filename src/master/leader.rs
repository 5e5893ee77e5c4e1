//! The driver of a leader term: recovery from the metastore, then one task that owns the term's job manager
//! ([`crate::core::manager::Manager`]) and carries out what it decides. Every decision is the manager's; this
//! module moves bytes and timers. Requests reach the manager through the term's inbox with their reply channels.
//!
//! Each [`Ready`] is carried out in this order:
//! 1. the write (at most one is ever in flight), as transactions guarded by the term's write fence, in a task of
//!    its own; its outcome (and the fence) comes back to [`Manager::on_write`];
//! 2. the reads, each in a task of its own; each result comes back to [`Manager::on_read`];
//! 3. the dispatches, each in a task of its own; a definite refusal comes back as an input;
//! 4. the answers, on their reply channels;
//! 5. the events: logs, metrics, observations;
//! 6. the step-down, which ends the term at once.
//!
//! Then the driver waits for the first of: an outcome, a timer (the periodic pass, the tombstone sweep), a request.
//! Before stepping the manager it checks that this master may still act: nothing is decided past the step-down
//! deadline.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::store_io::{persist, read_one, recover, take_fence};
use super::Master;
use crate::core::ids::LeaderEpoch;
use crate::core::manager::{
    self as manager, Answer, Dispatch, Input, IoId, Manager, ReadResult, ReplyTo, Request, WriteOutcome,
};
use crate::core::write_fence::WriteFence;
use crate::meta::LeaderKey;

/// How many requests may wait in a term's inbox before their senders wait too.
const INBOX: usize = 4096;

/// A request and where its answer goes.
pub(crate) struct Call {
    pub request: Request,
    /// Who sent it, when the driver must check that it may (see [`Manager::action_of`]).
    pub caller: Option<crate::core::auth::Principal>,
    pub reply: oneshot::Sender<Answer>,
}

/// The serving term, as the rest of the master reaches it.
pub(crate) struct Serving {
    pub epoch: LeaderEpoch,
    pub inbox: mpsc::Sender<Call>,
}

/// What a task of the driver reports back.
enum Done {
    Write(IoId, WriteOutcome, Option<WriteFence>),
    Read(IoId, Result<ReadResult, String>),
    Input(Input),
}

/// Runs a term: recovery, then the driver until this master may no longer act. Returns why it ended.
pub(super) async fn lead(m: Arc<Master>, key: LeaderKey, epoch: LeaderEpoch) -> String {
    let mut fence = match take_fence(&m, &key, epoch).await {
        Ok(f) => Some(f),
        Err(e) => return e,
    };
    let reading = m.clock.now();
    let (snapshot, size) = match recover(&m).await {
        Ok(s) => s,
        Err(e) => return format!("recovery failed: {e}"),
    };
    let (executors, jobs) = (snapshot.executors.len(), snapshot.jobs.len());
    let now = m.clock.now();
    let seed = { crate::core::rng::Rng::next_u64(&mut m.lock().rng) };
    let mut manager = Manager::recover(now, epoch, m.manager_policy(), m.plants(), seed, snapshot);
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
    {
        let mut inner = m.lock();
        if inner.leadership.acting(m.clock.now()) != Some(epoch) {
            return "lost the lease during recovery".into();
        }
        inner.serving = Some(Serving { epoch, inbox });
    }
    m.observe(super::Observation::ActingBegan { epoch, at: m.clock.instant(now) });
    let until = m.lock().leadership.deadline();
    if let Some(until) = until {
        m.observe(super::Observation::ActingUntil { epoch, until: m.clock.instant(until) });
    }
    let (done, mut outcomes) = mpsc::unbounded_channel::<Done>();
    let mut replies: BTreeMap<ReplyTo, oneshot::Sender<Answer>> = BTreeMap::new();
    let mut next_reply = 0u64;
    // The tick in progress: the thread's CPU clock when its step began. A tick is the manager's periodic pass and
    // the carrying out of what it decided, measured for the figures only (other passes are not: a heartbeat's
    // would pay two clock reads).
    let mut tick: Option<std::time::Duration> = None;
    loop {
        let ready = manager.ready();
        let (wake_at, sweep_at) = (ready.wake_at, ready.sweep_at);
        let ended = carry_out(&m, &mut fence, ready, &done, &mut replies);
        if let Some(began) = tick.take() {
            m.stats.tick_cpu.observe(crate::clock::thread_cpu().saturating_sub(began));
        }
        if let Some(why) = ended {
            return why;
        }
        let far = m.clock.now() + std::time::Duration::from_secs(3600);
        let (wake, sweep) = (wake_at.unwrap_or(far), sweep_at.unwrap_or(far));
        let input = tokio::select! {
            biased;
            _ = m.wake.notified() => None,
            Some(d) = outcomes.recv() => Some(d),
            _ = m.clock.sleep_until(wake) => Some(Done::Input(Input::Tick)),
            _ = m.clock.sleep_until(sweep) => {
                Some(Done::Input(Input::SweepTombstones { wall: crate::clock::wall_now() }))
            }
            Some(call) = calls.recv() => {
                // Checked here, with what the manager knows now (who an executor id belongs to, where a job
                // master runs), and refused before the manager sees it. A process that checks nothing allows
                // every call: the facts are not looked up (a copy of the executor's name, on every heartbeat).
                let mode = crate::rpc::identity::mode();
                let denied = match &call.caller {
                    Some(p) if mode != crate::core::auth::Mode::Insecure => manager
                        .action_of(&call.request)
                        .and_then(|a| crate::core::auth::authorize(p, &a, mode).err()),
                    _ => None,
                };
                match denied {
                    Some(d) => {
                        let _ = call.reply.send(Err(manager::Refusal::Denied(d)));
                        None
                    }
                    None => {
                        next_reply += 1;
                        replies.insert(ReplyTo(next_reply), call.reply);
                        Some(Done::Input(Input::Request(ReplyTo(next_reply), call.request)))
                    }
                }
            }
        };
        let now = m.clock.now();
        if m.lock().leadership.acting(now) != Some(epoch) {
            return "the lease could not be confirmed within the step-down deadline".into();
        }
        if matches!(input, Some(Done::Input(Input::Tick))) {
            tick = Some(crate::clock::thread_cpu());
        }
        match input {
            Some(Done::Write(io, outcome, back)) => {
                fence = back;
                manager.on_write(now, io, outcome)
            }
            Some(Done::Read(io, result)) => manager.on_read(now, io, result),
            Some(Done::Input(input)) => manager.step(now, input),
            None => {}
        }
    }
}

/// Carries out one [`manager::Ready`] in its documented order; why the term ends, if it does.
fn carry_out(
    m: &Arc<Master>,
    fence: &mut Option<WriteFence>,
    ready: manager::Ready,
    done: &mpsc::UnboundedSender<Done>,
    replies: &mut BTreeMap<ReplyTo, oneshot::Sender<Answer>>,
) -> Option<String> {
    if let Some((io, records)) = ready.write {
        // The fence travels with the one write in flight and comes back with its outcome.
        let Some(taken) = fence.take() else {
            // Lost with an earlier write, whose outcome ended the term (the manager never writes after that).
            return Some("a write was asked for after the write fence was lost".into());
        };
        let (m, done) = (m.clone(), done.clone());
        tokio::spawn(async move {
            let (outcome, fence) = persist(&m, taken, &records).await;
            let _ = done.send(Done::Write(io, outcome, fence));
        });
    }
    for (io, read) in ready.reads {
        let (m, done) = (m.clone(), done.clone());
        tokio::spawn(async move {
            let result = read_one(&m, &read).await;
            let _ = done.send(Done::Read(io, result));
        });
    }
    for d in ready.dispatches {
        tokio::spawn(dispatch(m.clone(), d, done.clone()));
    }
    for (to, answer) in ready.answers {
        if let Some(reply) = replies.remove(&to) {
            let _ = reply.send(answer);
        }
    }
    for e in ready.events {
        m.report(e);
    }
    let down = ready.step_down?;
    m.step_down_now(&down.why);
    if let Some(newer) = down.newer {
        m.lock().leadership.observe_epoch(newer);
    }
    Some(down.why)
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
