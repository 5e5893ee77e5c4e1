//! The executor's agent: every decision an executor process makes about its membership and its work, as one pure
//! machine driven by time and inputs (design.md §3, §5 rules 2, 3 and 7). The executor process (`src/executor`)
//! moves the bytes and keeps the timers; this decides.
//!
//! What it owns: the registration (unregistered, registering, registered under an id; declared offline, it stops
//! every task and is unregistered again, so it registers anew), the timing the leader announced, the self-fence
//! and the newest leader epoch heard, the membership rounds (one call in flight at a time: a registration while
//! unregistered, else a heartbeat), the drain, and the [`Dispatcher`] with the admission of every dispatch.
//!
//! How it is driven: [`Agent::tick`] at the instant [`Ready::wake`] names (or earlier) and every input return a
//! [`Ready`], whose actions the driver executes in their order. Every input first lets time pass: a fence or a
//! drain deadline that is due acts before the input is judged, as if the tick had come first; and a step that
//! moves the fence deadline to now or before (a shorter self-fence announced) fences before it returns, so no
//! task runs past the deadline after any step. A round runs as
//! [`Action::Round`] → connect → [`Agent::outgoing`] (the call's content, taken when it is sent) → one of
//! [`Agent::on_register_reply`], [`Agent::on_heartbeat_reply`], [`Agent::on_call_failed`] → [`Agent::end_round`];
//! the next round starts an interval after this one started, or at once when a drain asked for a heartbeat.
//!
//! The rules:
//! - Self-fence (rule 3): registered, with no acknowledged heartbeat for the self-fence time (counted from the
//!   *send time* of the newest acknowledged one, [`SelfFence`]), it stops every task at once and takes none until
//!   an acknowledgement moves the deadline past now. A reply from a leader older than one heard from acknowledges
//!   nothing.
//! - Declared offline (rule 7): a heartbeat answered "register again" stops every task and drops the id; the next
//!   round registers, and the new registration forgets the ended incarnations the old id had to report.
//! - Dispatch (rule 2): taken only while registered under the id it was placed on, not draining, not fenced (by
//!   the flag, or because the deadline has passed), and placed under a leader epoch no older than the newest heard
//!   in a reply ([`admit`]). Epochs claimed by dispatches themselves are never taken as heard: anyone may send one.
//! - Ended incarnations are reported in every heartbeat until one carrying them is acknowledged.
//! - Drain: it refuses new work, asks for a heartbeat at once that says it drains, and once that is acknowledged
//!   (or `rpc_timeout` passed) asks the tasks to stop at a checkpoint; once none runs (or `drain_timeout`
//!   passed) the drain is over and the driver stops what is left ([`Agent::stop`]) and deregisters.
//!
//! Invariants ([`Agent::check_invariants`]): the dispatcher's; a task runs only while registered, not fenced and
//! before the fence deadline; a call is in flight only within an open round, a registration only while
//! unregistered.

use std::time::Duration;

use super::collect::Collector;
use super::dispatcher::{Dispatcher, Refusal, TaskSpec};
use super::fence::{Ack, SelfFence};
use super::ids::{Epoch, ExecutorId, LeaderEpoch, TaskId};
use super::planted::{Planted, Plants};
use super::registry::{EndedTask, ReportedTask};
use super::time::Time;
use super::timing::HeartbeatTiming;

/// What the agent decides with: the executor's validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    /// The executor's name, for refusals.
    pub name: String,
    /// The slots running and parked tasks may use together.
    pub capacity: u32,
    /// How long a parked dispatch waits for its confirmation.
    pub dispatch_ttl: Duration,
    /// The most dispatches parked at once.
    pub task_queue: usize,
    /// The bound of every call made while unregistered, and how long a drain waits for its announcement.
    pub rpc_timeout: Duration,
    /// How long a drain waits for the tasks to stop by themselves.
    pub drain_timeout: Duration,
    /// The timing used until the leader announces its own.
    pub timing: HeartbeatTiming,
    /// How often the executor lists the jobs it keeps data of, to ask the leader which are gone
    /// ([`super::collect`]).
    pub collect_every: Duration,
}

/// Where the executor stands with the masters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    /// Not registered (never yet, declared offline, or deregistered): the next round registers.
    Unregistered,
    /// A registration sent at `sent_at` awaits its answer.
    Registering { sent_at: Time },
    /// Registered under `id`.
    Registered { id: ExecutorId },
}

/// Why every task stops at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Registered as `id`, no heartbeat was acknowledged for the self-fence time.
    Fenced { id: ExecutorId },
    /// The leader declared registration `id` offline: register anew.
    DeclaredOffline { id: ExecutorId },
    /// The executor stops.
    Shutdown,
}

/// What the driver does, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a membership round: connect to the current master within `timeout`, send what [`Agent::outgoing`]
    /// hands out (bounded by `timeout`), feed its answer back, then [`Agent::end_round`].
    Round { timeout: Duration },
    /// List the jobs the executor keeps data of, and hand them to [`Agent::listed`].
    ListHeld,
    /// Remove what the executor keeps of these jobs: they no longer exist, and it runs nothing of them.
    Collect { jobs: Vec<String> },
    /// Admitted under `id` by the leader of `leader_epoch`, the registration sent at `sent`.
    Registered { id: ExecutorId, leader_epoch: LeaderEpoch, sent: Time },
    /// The heartbeat sent at `sent` under `id` was acknowledged by the leader of `leader_epoch`.
    HeartbeatAcked { id: ExecutorId, sent: Time, leader_epoch: LeaderEpoch },
    /// Stop every task now, for `why` (the dispatcher has already let them go and counts them as ended).
    StopAll { why: Stop },
    /// Ask the running tasks to stop at their next checkpoint (the drain).
    AskTasksToStop,
    /// The drain is over; `left` tasks still run (0: every task stopped by itself). Time to [`Agent::stop`] and
    /// deregister.
    Drained { left: usize },
}

/// The effects of one step, and when the agent must be ticked next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ready {
    pub actions: Vec<Action>,
    /// Tick the agent at this instant at the latest ([`Time::NEVER`]: only an input can change anything).
    pub wake: Time,
}

/// What a round sends, decided when it is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// Register (the driver fills in the executor's name, address, capacity, labels).
    Register,
    Heartbeat(HeartbeatCall),
}

/// The content of a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatCall {
    pub id: ExecutorId,
    /// The newest leader epoch heard.
    pub leader_epoch: LeaderEpoch,
    /// The running set.
    pub tasks: Vec<ReportedTask>,
    pub draining: bool,
    /// The ended incarnations no acknowledged heartbeat has reported yet.
    pub ended: Vec<EndedTask>,
    /// Fenced when sent: it takes no dispatch until a heartbeat is acknowledged, so the leader places nothing on it
    /// until a heartbeat says otherwise (one sent during a cut and delivered late is no proof it takes work).
    pub fenced: bool,
    /// Jobs it keeps data of, asking whether they still exist.
    pub held: Vec<String>,
}

/// A registration's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisterReply {
    pub id: ExecutorId,
    pub leader_epoch: LeaderEpoch,
    /// The leader's executor timing, as announced (validated here; an invalid one is ignored).
    pub timing: Option<HeartbeatTiming>,
}

/// What the leader said of a heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// Declared offline (or unknown): stop everything and register again.
    Reregister,
    /// Anything else: not an acknowledgement.
    Unknown,
}

/// A heartbeat's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub verdict: Verdict,
    pub leader_epoch: LeaderEpoch,
    /// As [`RegisterReply::timing`].
    pub timing: Option<HeartbeatTiming>,
    /// Of the held jobs asked about, those that no longer exist.
    pub gone: Vec<String>,
}

/// What a round's answer was worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard {
    /// The master answered usefully: keep talking to it.
    Useful,
    /// It did not (no answer, a refusal, a deposed leader): try the next master.
    Useless,
}

/// Where a drain stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drain {
    /// Not draining.
    No,
    /// A heartbeat saying so is on its way; the tasks run on until it is acknowledged or `until`.
    Announcing { until: Time },
    /// The tasks were asked to stop at a checkpoint; the drain waits for them until `until`.
    Quiescing { until: Time },
    /// Over: no round starts and no task is taken any more.
    Over,
}

/// Where the executor stands when a dispatch arrives, for [`admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    /// Its registration, if it holds one.
    pub id: Option<ExecutorId>,
    /// Shutting down: no task may start.
    pub draining: bool,
    /// Fenced and not acknowledged since: no task may start.
    pub fenced: bool,
    /// The newest leader epoch it has heard from.
    pub newest_leader_epoch: LeaderEpoch,
}

/// Whether the executor named `executor`, standing as `s`, may take work placed on registration `placed` at all.
pub fn serving(executor: &str, s: &Standing, placed: ExecutorId) -> Result<(), Refusal> {
    let executor = executor.to_owned();
    match s.id {
        None => Err(Refusal::NotRegistered { executor }),
        Some(_) if s.draining => Err(Refusal::Draining { executor }),
        Some(_) if s.fenced => Err(Refusal::Fenced { executor }),
        Some(current) if current != placed => Err(Refusal::OtherRegistration { executor, placed, current }),
        Some(_) => Ok(()),
    }
}

/// Whether the dispatch `spec` may be taken here (before the parking rules, and again at its confirm): the
/// executor serves the registration it was placed on, and no leader newer than the one that placed it has spoken.
///
/// A placement made for another registration of this process (an earlier one the leader has not yet declared
/// offline, or a duplicate from a retried registration) is refused: that id will expire, and a task started under
/// it would outlive the leader's view of it. A dispatch stands on the leader term that placed it: once this
/// executor has heard from a newer leader, what that term placed may already have been declared lost and placed
/// again elsewhere (a leader paused mid-dispatch resumes and sends its confirm).
pub fn admit(executor: &str, s: &Standing, spec: &TaskSpec) -> Result<(), Refusal> {
    serving(executor, s, spec.executor)?;
    if spec.leader_epoch < s.newest_leader_epoch {
        return Err(Refusal::DeposedLeader {
            task: spec.task_id.clone(),
            epoch: spec.epoch,
            placed_under: spec.leader_epoch,
            newest: s.newest_leader_epoch,
        });
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Round {
    /// No round runs; the next one starts at `next`.
    Idle { next: Time },
    /// A round started at `started` runs.
    Open { started: Time },
}

/// The call a round has sent and not yet seen answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InFlight {
    Register { sent_at: Time },
    Heartbeat { id: ExecutorId, sent_at: Time, ended_mark: Option<u64>, draining: bool },
}

/// One executor's decisions.
#[derive(Clone, Debug)]
pub struct Agent {
    cfg: AgentConfig,
    id: Option<ExecutorId>,
    /// The leader's announced timing (the configured one until the first reply).
    timing: HeartbeatTiming,
    /// Anchored at the send time of the newest acknowledged heartbeat; its epoch is the newest leader epoch heard.
    fence: SelfFence<LeaderEpoch>,
    /// Fenced and not acknowledged since.
    fenced: bool,
    dispatcher: Dispatcher,
    round: Round,
    /// A heartbeat was asked for while a round ran: the next round starts as soon as this one ends.
    round_soon: bool,
    call: Option<InFlight>,
    drain: Drain,
    /// The collection of deleted jobs' data.
    collector: Collector,
    /// The guard switches of the simulation's bug-finding runs (none in production).
    plants: Plants,
}

impl Agent {
    /// A fresh executor at `now`: unregistered, its first round due at once.
    pub fn new(cfg: AgentConfig, now: Time) -> Agent {
        Agent {
            id: None,
            timing: cfg.timing,
            fence: SelfFence::new(now, cfg.timing.self_fence),
            fenced: false,
            dispatcher: Dispatcher::new(cfg.dispatch_ttl, cfg.task_queue, cfg.capacity),
            round: Round::Idle { next: now },
            round_soon: false,
            call: None,
            drain: Drain::No,
            collector: Collector::new(cfg.collect_every, now),
            plants: Plants::NONE,
            cfg,
        }
    }

    /// Sets the guard switches (the simulation's bug-finding runs only).
    pub fn plant(&mut self, plants: Plants) {
        self.plants = plants;
        self.dispatcher.plant(plants);
    }

    /// Whether the fence deadline passed at `now` (never, with the self-fence switched off).
    fn fence_passed(&self, now: Time) -> bool {
        !self.plants.has(Planted::ExecutorIgnoresFence) && self.fence.is_fenced(now)
    }

    /// The leader epoch a reply of `epoch` counts as: its own, or with the guard against deposed leaders switched
    /// off, the newest heard (so a deposed leader's reply is taken as current).
    fn heard(&self, epoch: LeaderEpoch) -> LeaderEpoch {
        if self.plants.has(Planted::ExecutorHearsDeposedLeader) {
            epoch.max(self.fence.epoch())
        } else {
            epoch
        }
    }

    /// A reply from a leader older than one heard: held unreachable (design.md §5 rule 2; the README's guard table
    /// says why), so a tripwire.
    fn trip_deposed(&self, now: Time, what: &str, epoch: LeaderEpoch) {
        let heard = self.fence.epoch();
        self.plants.trip(Planted::ExecutorHearsDeposedLeader, now, || {
            format!("{what} answered by the leader of epoch {}, older than {} heard", epoch.0, heard.0)
        });
    }

    /// Time passes: fences, moves the drain on, opens a round, when each is due.
    pub fn tick(&mut self, now: Time) -> Ready {
        let mut actions = self.advance(now);
        if let Round::Idle { next } = self.round {
            if now >= next && self.drain != Drain::Over {
                // The kept jobs are listed as a heartbeat round opens, when one is due: the heartbeats ask about
                // them (the listing needs no timer of its own).
                if self.id.is_some() && self.collector.take_listing(now) {
                    actions.push(Action::ListHeld);
                }
                self.dispatcher.expire(now);
                self.round = Round::Open { started: now };
                actions.push(Action::Round { timeout: self.call_timeout() });
            }
        }
        self.ready(now, actions)
    }

    /// The round's call is about to be sent at `now`: what it carries. A registration while unregistered, else a
    /// heartbeat with the running set, the drain and the ended incarnations to report.
    pub fn outgoing(&mut self, now: Time) -> Outgoing {
        match self.id {
            None => {
                self.call = Some(InFlight::Register { sent_at: now });
                Outgoing::Register
            }
            Some(id) => {
                let (ended, ended_mark) = self.dispatcher.ended_report();
                let draining = self.draining();
                self.call = Some(InFlight::Heartbeat { id, sent_at: now, ended_mark, draining });
                Outgoing::Heartbeat(HeartbeatCall {
                    id,
                    leader_epoch: self.fence.epoch(),
                    tasks: self.running(),
                    draining,
                    ended: ended.into_iter().map(|(task, epoch)| EndedTask { task, epoch }).collect(),
                    fenced: self.is_fenced(now),
                    held: self.collector.ask(&self.running_jobs()),
                })
            }
        }
    }

    /// The registration was answered. A leader older than one heard from is not listened to.
    pub fn on_register_reply(&mut self, now: Time, reply: RegisterReply) -> (Heard, Ready) {
        let mut actions = self.advance(now);
        let Some(InFlight::Register { sent_at }) = self.call.take() else {
            return (Heard::Useless, self.ready(now, actions));
        };
        if reply.leader_epoch < self.fence.epoch() {
            self.trip_deposed(now, "a registration", reply.leader_epoch);
        }
        if self.heard(reply.leader_epoch) < self.fence.epoch() {
            return (Heard::Useless, self.ready(now, actions));
        }
        if let Some(t) = valid(reply.timing) {
            self.timing = t;
        }
        // A new registration starts a new fence, anchored at the registration's send time (the leader admitted it
        // later, so its TTL runs from later still).
        let seen = self.fence.epoch();
        let mut fence = SelfFence::new(sent_at, self.timing.self_fence);
        fence.observe_epoch(seen);
        fence.on_ack(sent_at, reply.leader_epoch);
        self.fence = fence;
        self.fenced = false;
        self.id = Some(reply.id);
        // The leader gave the old id's reservations up with the id.
        self.dispatcher.forget_ended();
        actions.push(Action::Registered { id: reply.id, leader_epoch: reply.leader_epoch, sent: sent_at });
        (Heard::Useful, self.ready(now, actions))
    }

    /// The heartbeat was answered.
    pub fn on_heartbeat_reply(&mut self, now: Time, reply: HeartbeatReply) -> (Heard, Ready) {
        let mut actions = self.advance(now);
        let Some(InFlight::Heartbeat { id, sent_at, ended_mark, draining }) = self.call.take() else {
            return (Heard::Useless, self.ready(now, actions));
        };
        let gone = if reply.verdict == Verdict::Accepted && self.id == Some(id) {
            self.collector.answered(&reply.gone, &self.running_jobs())
        } else {
            self.collector.unanswered();
            vec![]
        };
        if !gone.is_empty() {
            actions.push(Action::Collect { jobs: gone });
        }
        if self.id != Some(id) {
            // Registered again meanwhile: the answer is about an id this executor no longer holds.
            return (Heard::Useful, self.ready(now, actions));
        }
        if reply.leader_epoch < self.fence.epoch() {
            self.trip_deposed(now, "a heartbeat", reply.leader_epoch);
        }
        if self.heard(reply.leader_epoch) < self.fence.epoch() {
            // A deposed leader: not an acknowledgement.
            return (Heard::Useless, self.ready(now, actions));
        }
        if let Some(t) = valid(reply.timing) {
            self.timing = t;
            self.fence.set_duration(t.self_fence);
        }
        match reply.verdict {
            Verdict::Accepted => {
                // The leader took the ended incarnations this heartbeat carried (a newer leader holds no
                // reservation made before it began, so none of them matters to it).
                if let Some(mark) = ended_mark {
                    self.dispatcher.ended_acked(mark);
                }
                if let Ack::Extended(_) = self.fence.on_ack(sent_at, self.heard(reply.leader_epoch)) {
                    if self.fenced && !self.fence.is_fenced(now) {
                        self.fenced = false;
                    }
                }
                actions.push(Action::HeartbeatAcked { id, sent: sent_at, leader_epoch: reply.leader_epoch });
                if draining {
                    if let Drain::Announcing { .. } = self.drain {
                        self.quiesce(now, &mut actions);
                    }
                }
                (Heard::Useful, self.ready(now, actions))
            }
            Verdict::Reregister => {
                self.fence.observe_epoch(reply.leader_epoch);
                self.id = None;
                if !self.plants.has(Planted::ExecutorKeepsWorkWhenOffline) {
                    self.dispatcher.clear();
                    actions.push(Action::StopAll { why: Stop::DeclaredOffline { id } });
                }
                (Heard::Useful, self.ready(now, actions))
            }
            Verdict::Unknown => (Heard::Useless, self.ready(now, actions)),
        }
    }

    /// The round's call got no answer: no connection, a refusal, or its deadline passed.
    pub fn on_call_failed(&mut self, now: Time) -> Ready {
        let actions = self.advance(now);
        self.call = None;
        self.collector.unanswered();
        self.ready(now, actions)
    }

    /// The round is over (its answer, if any, was fed in): the next one starts an interval after this one
    /// started, or at once if a heartbeat was asked for meanwhile.
    pub fn end_round(&mut self, now: Time) -> Ready {
        let actions = self.advance(now);
        if let Round::Open { started } = self.round {
            let next = if self.round_soon { now } else { started + self.timing.interval };
            self.round = Round::Idle { next };
            self.round_soon = false;
            self.call = None;
        }
        self.ready(now, actions)
    }

    /// Phase one of a dispatch: admission, then the parking rules.
    pub fn pre_dispatch(&mut self, now: Time, spec: TaskSpec) -> (Result<(), Refusal>, Ready) {
        let actions = self.advance(now);
        let taken = match self.admit(now, &spec) {
            Ok(()) => self.dispatcher.park(now, spec),
            Err(refused) => Err(refused),
        };
        (taken, self.ready(now, actions))
    }

    /// Phase two: the parked request moves to the running set if it is still admitted (judged again: the
    /// executor may have fenced itself, or heard of a newer leader, since it was parked). The returned spec is the
    /// driver's to build, then to [`Agent::begin_task`].
    pub fn confirm(&mut self, now: Time, task: &str, request_id: &str) -> (Result<TaskSpec, Refusal>, Ready) {
        let actions = self.advance(now);
        let confirmed = self.dispatcher.confirm(now, task, request_id).and_then(|spec| match self.admit(now, &spec) {
            Ok(()) => Ok(spec),
            Err(refused) => {
                self.dispatcher.stopped(&spec.task_id, spec.epoch);
                Err(refused)
            }
        });
        (confirmed, self.ready(now, actions))
    }

    /// The driver built the confirmed task `epoch` of `task`, placed on registration `placed`, and starts it now,
    /// unless the executor stopped serving or let the task go since the confirmation, or the task's self-fence
    /// time has passed since it (its supervisor counts from the dispatch and may have started another incarnation
    /// by now): then the task counts as ended, never having run.
    pub fn begin_task(
        &mut self,
        now: Time,
        task: &TaskId,
        epoch: Epoch,
        placed: ExecutorId,
    ) -> (Result<(), Refusal>, Ready) {
        let actions = self.advance(now);
        let still_ours = self.id.is_some()
            && !self.is_fenced(now)
            && !self.draining()
            && self.dispatcher.running().get(task).is_some_and(|r| r.epoch == epoch && now < r.start_by);
        let begun = if still_ours {
            Ok(())
        } else {
            self.dispatcher.stopped(task, epoch);
            Err(self
                .serving_as(now, placed)
                .err()
                .unwrap_or_else(|| Refusal::StoppedMeanwhile { task: task.clone(), epoch }))
        };
        (begun, self.ready(now, actions))
    }

    /// The task `epoch` of `task` ended by itself; whether it was the running one (else the executor had stopped
    /// it already).
    pub fn on_task_exit(&mut self, now: Time, task: &TaskId, epoch: Epoch) -> (bool, Ready) {
        let actions = self.advance(now);
        let ours = self.dispatcher.stopped(task, epoch);
        (ours, self.ready(now, actions))
    }

    /// The executor is asked to shut down: it drains (see the module documentation).
    pub fn drain(&mut self, now: Time) -> Ready {
        let actions = self.advance(now);
        if self.drain == Drain::No {
            self.drain = Drain::Announcing { until: now + self.cfg.rpc_timeout };
            match self.round {
                Round::Idle { next } => self.round = Round::Idle { next: next.min(now) },
                Round::Open { .. } => self.round_soon = true,
            }
        }
        self.ready(now, actions)
    }

    /// The executor stops now: every task stops, no round starts and no task is taken any more.
    pub fn stop(&mut self, now: Time) -> Ready {
        let mut actions = self.advance(now);
        self.drain = Drain::Over;
        self.dispatcher.clear();
        actions.push(Action::StopAll { why: Stop::Shutdown });
        self.ready(now, actions)
    }

    /// A master took the deregistration of `id`.
    pub fn on_deregistered(&mut self, id: ExecutorId) {
        if self.id == Some(id) {
            self.id = None;
        }
    }

    /// Time passes first, before any input is judged: fences when the deadline has passed, and asks the tasks to
    /// stop when the drain's announcement had its time.
    fn advance(&mut self, now: Time) -> Vec<Action> {
        let mut actions = vec![];
        self.maybe_fence(now, &mut actions);
        if let Drain::Announcing { until } = self.drain {
            if now >= until {
                self.quiesce(now, &mut actions);
            }
        }
        actions
    }

    /// Registered, not fenced yet and past the deadline: every task stops now.
    fn maybe_fence(&mut self, now: Time, actions: &mut Vec<Action>) {
        if let Some(id) = self.id {
            if !self.fenced && self.fence_passed(now) {
                self.fenced = true;
                self.dispatcher.clear();
                actions.push(Action::StopAll { why: Stop::Fenced { id } });
            }
        }
    }

    /// The leader knows of the drain (or its time to hear is up): the tasks are asked to stop at a checkpoint.
    fn quiesce(&mut self, now: Time, actions: &mut Vec<Action>) {
        actions.push(Action::AskTasksToStop);
        self.drain = Drain::Quiescing { until: now + self.cfg.drain_timeout };
    }

    /// Ends every step: fences if the step moved the deadline to now or before (a shorter self-fence announced),
    /// and the drain is over once no task runs or its time is up.
    fn ready(&mut self, now: Time, mut actions: Vec<Action>) -> Ready {
        self.maybe_fence(now, &mut actions);
        if let Drain::Quiescing { until } = self.drain {
            if now >= until || self.dispatcher.running().is_empty() {
                self.drain = Drain::Over;
                actions.push(Action::Drained { left: self.dispatcher.running().len() });
            }
        }
        Ready { actions, wake: self.wake() }
    }

    /// The next instant something is due: the fence deadline, the next round, a drain deadline.
    pub fn wake(&self) -> Time {
        let mut wake = Time::NEVER;
        if self.id.is_some() && !self.fenced {
            wake = wake.min(self.fence.deadline());
        }
        if let Round::Idle { next } = self.round {
            if self.drain != Drain::Over {
                wake = wake.min(next);
            }
        }
        if let Drain::Announcing { until } | Drain::Quiescing { until } = self.drain {
            wake = wake.min(until);
        }
        wake
    }

    /// The executor kept data of jobs `jobs`, listed at `now` (after an [`Action::ListHeld`]).
    pub fn listed(&mut self, now: Time, jobs: Vec<String>) -> Ready {
        let actions = self.advance(now);
        self.collector.listed(now, jobs);
        self.ready(now, actions)
    }

    /// The jobs a task running here (or parked to start) belongs to: their data is in use.
    fn running_jobs(&self) -> std::collections::BTreeSet<String> {
        let job = |t: &TaskId| t.as_str().split('/').next().unwrap_or_default().to_owned();
        self.dispatcher.running().keys().map(job).chain(self.dispatcher.parked_jobs()).collect()
    }

    /// The bound of the round's calls: the leader's heartbeat deadline while registered, else `rpc_timeout`.
    fn call_timeout(&self) -> Duration {
        if self.id.is_some() {
            self.timing.timeout
        } else {
            self.cfg.rpc_timeout
        }
    }

    fn standing(&self, now: Time) -> Standing {
        Standing {
            id: self.id,
            draining: self.draining(),
            fenced: self.is_fenced(now),
            newest_leader_epoch: self.fence.epoch(),
        }
    }

    fn admit(&self, now: Time, spec: &TaskSpec) -> Result<(), Refusal> {
        if self.plants.has(Planted::ExecutorTakesDeposedDispatch) {
            return serving(&self.cfg.name, &self.standing(now), spec.executor);
        }
        admit(&self.cfg.name, &self.standing(now), spec)
    }

    /// Whether this executor takes work placed on registration `placed` at `now` ([`serving`]).
    pub fn serving_as(&self, now: Time, placed: ExecutorId) -> Result<(), Refusal> {
        serving(&self.cfg.name, &self.standing(now), placed)
    }

    /// Fenced at `now`: by the flag, or because the deadline has passed and the tick is yet to come.
    pub fn is_fenced(&self, now: Time) -> bool {
        self.fenced || (self.id.is_some() && self.fence_passed(now))
    }

    pub fn registration(&self) -> Registration {
        match (self.id, self.call) {
            (Some(id), _) => Registration::Registered { id },
            (None, Some(InFlight::Register { sent_at })) => Registration::Registering { sent_at },
            (None, _) => Registration::Unregistered,
        }
    }

    /// The id while registered.
    pub fn id(&self) -> Option<ExecutorId> {
        self.id
    }

    /// The newest leader epoch heard in a reply.
    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.fence.epoch()
    }

    /// Until when the running tasks may run without a newer acknowledgement.
    pub fn fence_deadline(&self) -> Time {
        self.fence.deadline()
    }

    pub fn timing(&self) -> &HeartbeatTiming {
        &self.timing
    }

    /// Draining, or stopped: no task is taken.
    pub fn draining(&self) -> bool {
        self.drain != Drain::No
    }

    pub fn drain_state(&self) -> Drain {
        self.drain
    }

    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// When incarnation `epoch` of `task` was confirmed, while it is in the running set.
    pub fn confirmed(&self, task: &TaskId, epoch: Epoch) -> Option<Time> {
        self.dispatcher.running().get(task).filter(|r| r.epoch == epoch).map(|r| r.confirmed)
    }

    /// The running set, as a heartbeat reports it.
    pub fn running(&self) -> Vec<ReportedTask> {
        self.dispatcher
            .running()
            .iter()
            .map(|(t, r)| ReportedTask { task: t.clone(), kind: r.kind, epoch: r.epoch, cost: r.cost })
            .collect()
    }

    /// Checks the invariants in the module documentation at `now` (the time of the latest step); the error names
    /// the broken one with its ids.
    pub fn check_invariants(&self, now: Time) -> Result<(), String> {
        self.dispatcher.check_invariants()?;
        self.collector.check_invariants()?;
        if let Some((task, r)) = self.dispatcher.running().iter().next() {
            let why = match self.id {
                None => Some("while unregistered".to_owned()),
                Some(_) if self.fenced => Some("while fenced".to_owned()),
                Some(id) if self.fence_passed(now) => {
                    Some(format!("as {id} at {now}, past the fence deadline {}", self.fence.deadline()))
                }
                Some(_) => None,
            };
            if let Some(why) = why {
                return Err(format!("task {task} epoch {} runs {why}", r.epoch));
            }
        }
        match (self.call, self.round) {
            (Some(_), Round::Idle { .. }) => {
                return Err(format!("a call is in flight outside a round: {:?}", self.call))
            }
            (Some(InFlight::Register { .. }), _) if self.id.is_some() => {
                return Err(format!("a registration is in flight while registered as {:?}", self.id))
            }
            _ => {}
        }
        Ok(())
    }
}

/// The leader's announced timing if it is valid; an invalid announcement is ignored (the previous timing stays).
fn valid(t: Option<HeartbeatTiming>) -> Option<HeartbeatTiming> {
    t.filter(|t| t.validate("executors").is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::registry::TaskKind;

    fn ms(n: u64) -> Time {
        Time::from_millis(n)
    }

    fn cfg() -> AgentConfig {
        AgentConfig {
            name: "ex".to_owned(),
            capacity: 4,
            dispatch_ttl: Duration::from_secs(5),
            task_queue: 4,
            rpc_timeout: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(10),
            timing: HeartbeatTiming::executor_default(),
            collect_every: Duration::from_secs(3600),
        }
    }

    fn spec(task: &str, epoch: u64, leader: u64, placed: u64) -> TaskSpec {
        TaskSpec {
            task_id: TaskId::parse(task).unwrap(),
            kind: TaskKind::Worker,
            task_type: "sleep".to_owned(),
            task_config: vec![],
            job_id: "j".to_owned(),
            epoch: Epoch(epoch),
            master_id: "m".to_owned(),
            master_address: "10.0.0.1:1".to_owned(),
            master_epoch: Epoch(1),
            leader_epoch: LeaderEpoch(leader),
            request_id: format!("r-{task}-{epoch}"),
            cost: 1,
            timing: HeartbeatTiming::worker_default(),
            executor: ExecutorId(placed),
        }
    }

    /// One input of a table line.
    #[derive(Clone, Debug)]
    enum In {
        Tick,
        /// The round's call is sent.
        Send,
        /// The registration was answered: id, leader epoch.
        Registered(u64, u64),
        /// The heartbeat was answered with this verdict by this leader epoch.
        Heartbeat(Verdict, u64),
        /// As `Heartbeat(Accepted, ..)`, announcing this self-fence in milliseconds.
        AckedWithFence(u64, u64),
        Failed,
        End,
        /// Pre-dispatch of task, epoch, under leader epoch, placed on executor id.
        Park(&'static str, u64, u64, u64),
        Confirm(&'static str, u64),
        Begin(&'static str, u64),
        Exit(&'static str, u64),
        Drain,
        Stop,
    }

    fn show_action(a: &Action) -> String {
        match a {
            Action::Round { timeout } => format!("round {}ms", timeout.as_millis()),
            Action::Registered { id, .. } => format!("registered {id}"),
            Action::HeartbeatAcked { id, sent, leader_epoch } => format!("acked {id} sent {sent} by {leader_epoch}"),
            Action::StopAll { why } => format!("stop all {why:?}"),
            Action::AskTasksToStop => "ask tasks to stop".to_owned(),
            Action::Drained { left } => format!("drained {left} left"),
            Action::ListHeld => "list held".to_owned(),
            Action::Collect { jobs } => format!("collect {}", jobs.join(",")),
        }
    }

    fn show_refusal<T>(r: &Result<T, Refusal>) -> String {
        match r {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!("{e:?}").split([' ', '{']).next().unwrap_or_default().to_owned(),
        }
    }

    fn show_outgoing(o: &Outgoing) -> String {
        match o {
            Outgoing::Register => "register".to_owned(),
            Outgoing::Heartbeat(h) => {
                let tasks: Vec<String> = h.tasks.iter().map(|t| format!("{}@{}", t.task, t.epoch)).collect();
                let ended: Vec<String> = h.ended.iter().map(|t| format!("{}@{}", t.task, t.epoch)).collect();
                let draining = if h.draining { " draining" } else { "" };
                format!(
                    "heartbeat {} by {} run [{}] ended [{}]{draining}",
                    h.id,
                    h.leader_epoch,
                    tasks.join(","),
                    ended.join(",")
                )
            }
        }
    }

    fn step(a: &mut Agent, now: Time, input: In) -> String {
        let task = |t: &str| TaskId::parse(t).unwrap();
        let (answer, ready) = match input {
            In::Tick => (String::new(), a.tick(now)),
            In::Send => return show_outgoing(&a.outgoing(now)),
            In::Registered(id, leader) => {
                let reply = RegisterReply { id: ExecutorId(id), leader_epoch: LeaderEpoch(leader), timing: None };
                let (heard, r) = a.on_register_reply(now, reply);
                (format!("{heard:?}"), r)
            }
            In::Heartbeat(verdict, leader) => {
                let reply = HeartbeatReply { verdict, leader_epoch: LeaderEpoch(leader), timing: None, gone: vec![] };
                let (heard, r) = a.on_heartbeat_reply(now, reply);
                (format!("{heard:?}"), r)
            }
            In::AckedWithFence(leader, fence) => {
                let timing =
                    HeartbeatTiming { self_fence: Duration::from_millis(fence), ..HeartbeatTiming::executor_default() };
                let reply = HeartbeatReply {
                    verdict: Verdict::Accepted,
                    leader_epoch: LeaderEpoch(leader),
                    timing: Some(timing),
                    gone: vec![],
                };
                let (heard, r) = a.on_heartbeat_reply(now, reply);
                (format!("{heard:?}"), r)
            }
            In::Failed => (String::new(), a.on_call_failed(now)),
            In::End => (String::new(), a.end_round(now)),
            In::Park(t, epoch, leader, placed) => {
                let (r, ready) = a.pre_dispatch(now, spec(t, epoch, leader, placed));
                (show_refusal(&r), ready)
            }
            In::Confirm(t, epoch) => {
                let (r, ready) = a.confirm(now, t, &format!("r-{t}-{epoch}"));
                (show_refusal(&r), ready)
            }
            In::Begin(t, epoch) => {
                let placed = a.id().unwrap_or_default();
                let (r, ready) = a.begin_task(now, &task(t), Epoch(epoch), placed);
                (show_refusal(&r), ready)
            }
            In::Exit(t, epoch) => {
                let (ours, ready) = a.on_task_exit(now, &task(t), Epoch(epoch));
                (format!("{ours}"), ready)
            }
            In::Drain => (String::new(), a.drain(now)),
            In::Stop => (String::new(), a.stop(now)),
        };
        assert_eq!(ready.wake, a.wake());
        let mut parts = vec![answer];
        parts.extend(ready.actions.iter().map(show_action));
        parts.retain(|p| !p.is_empty());
        parts.join("; ")
    }

    /// Runs a table: each line is (time in ms, input, what it answered and did). The invariants hold after every
    /// line.
    fn run(table: &[(u64, In, &str)]) -> Agent {
        let mut a = Agent::new(cfg(), ms(0));
        for (n, (at, input, want)) in table.iter().enumerate() {
            let got = step(&mut a, ms(*at), input.clone());
            assert_eq!(got, *want, "line {n}: {input:?} at {at} ms");
            a.check_invariants(ms(*at)).unwrap_or_else(|e| panic!("line {n}: {e}"));
        }
        a
    }

    /// Registered as e1 by leader 1 at 5 ms, its fence deadline at 8 s, the next round due at 500 ms.
    const JOIN: &[(u64, In, &str)] = &[
        (0, In::Tick, "round 2000ms"),
        (0, In::Tick, ""),
        (0, In::Send, "register"),
        (5, In::Registered(1, 1), "Useful; registered e1"),
        (5, In::End, ""),
    ];

    fn joined(rest: &[(u64, In, &str)]) -> Agent {
        run(&[JOIN, rest].concat())
    }

    #[test]
    fn registers_heartbeats_and_fences_when_nothing_is_acknowledged() {
        let a = joined(&[
            (499, In::Tick, ""),
            (500, In::Tick, "round 1000ms"),
            (500, In::Send, "heartbeat e1 by 1 run [] ended []"),
            (520, In::Heartbeat(Verdict::Accepted, 1), "Useful; acked e1 sent 0.500s by 1"),
            (520, In::End, ""),
            // The next round an interval after this one started; its call never answered.
            (1000, In::Tick, "round 1000ms"),
            (1000, In::Send, "heartbeat e1 by 1 run [] ended []"),
            (1000, In::Park("a", 1, 1, 1), "ok"),
            (1001, In::Confirm("a", 1), "ok"),
            (1001, In::Begin("a", 1), "ok"),
            // Fenced at the send time of the newest acknowledged heartbeat plus the self-fence.
            (8499, In::Tick, ""),
            (8500, In::Tick, "stop all Fenced { id: ExecutorId(1) }"),
            (8500, In::Park("b", 1, 1, 1), "Fenced"),
            // The heartbeat sent at 1 s is acknowledged late: the deadline moves to 9 s, past now: unfenced.
            (8600, In::Heartbeat(Verdict::Accepted, 1), "Useful; acked e1 sent 1.000s by 1"),
            (8600, In::Park("b", 1, 1, 1), "ok"),
            (8600, In::End, ""),
            (8600, In::Tick, "round 1000ms"),
        ]);
        assert_eq!(a.fence_deadline(), ms(9000));
        assert_eq!(a.registration(), Registration::Registered { id: ExecutorId(1) });
    }

    #[test]
    fn time_passes_before_any_input_is_judged() {
        // No tick at the deadline: the next input fences first, then is judged.
        joined(&[
            (10, In::Park("a", 1, 1, 1), "ok"),
            (10, In::Confirm("a", 1), "ok"),
            (10, In::Begin("a", 1), "ok"),
            (3100, In::Park("b", 1, 1, 1), "ok"),
            // The fence let the parked request go with the running task.
            (8005, In::Confirm("b", 1), "NotFound; stop all Fenced { id: ExecutorId(1) }"),
            (8005, In::Park("c", 1, 1, 1), "Fenced"),
        ]);
        // A late acknowledgement that leaves the deadline in the past does not unfence.
        joined(&[
            (500, In::Tick, "round 1000ms"),
            (500, In::Send, "heartbeat e1 by 1 run [] ended []"),
            (
                8600,
                In::Heartbeat(Verdict::Accepted, 1),
                "Useful; stop all Fenced { id: ExecutorId(1) }; acked e1 sent 0.500s by 1",
            ),
            (8600, In::Park("a", 1, 1, 1), "Fenced"),
        ]);
    }

    #[test]
    fn a_deposed_leader_acknowledges_nothing_and_its_dispatches_are_refused() {
        let a = joined(&[
            (500, In::Tick, "round 1000ms"),
            (500, In::Send, "heartbeat e1 by 1 run [] ended []"),
            (510, In::Heartbeat(Verdict::Accepted, 3), "Useful; acked e1 sent 0.500s by 3"),
            (510, In::End, ""),
            (1000, In::Tick, "round 1000ms"),
            (1000, In::Send, "heartbeat e1 by 3 run [] ended []"),
            (1010, In::Heartbeat(Verdict::Accepted, 2), "Useless"),
            (1010, In::End, ""),
            (1010, In::Park("a", 1, 2, 1), "DeposedLeader"),
            (1010, In::Park("a", 1, 3, 1), "ok"),
            // A dispatch claiming a newer leader is taken, but the claim is not heard as a leader: anyone may send
            // one.
            (1010, In::Park("b", 1, 9, 1), "ok"),
            (1010, In::Park("c", 1, 3, 1), "ok"),
            (1010, In::Park("d", 1, 3, 2), "OtherRegistration"),
        ]);
        assert_eq!(a.leader_epoch(), LeaderEpoch(3));
        assert_eq!(a.fence_deadline(), ms(8500), "the deposed leader's reply moved nothing");
    }

    #[test]
    fn armed_tripwires_stop_at_a_deposed_leaders_answer() {
        // Heard leader 3, then answered by leader 2: a heartbeat's acknowledgement, or a registration's answer.
        let heard_three = |armed: bool| {
            let mut a = joined(&[
                (500, In::Tick, "round 1000ms"),
                (500, In::Send, "heartbeat e1 by 1 run [] ended []"),
                (510, In::Heartbeat(Verdict::Accepted, 3), "Useful; acked e1 sent 0.500s by 3"),
                (510, In::End, ""),
                (1000, In::Tick, "round 1000ms"),
            ]);
            if armed {
                a.plant(Plants::NONE.armed());
            }
            a
        };
        let stopped = |input: In| {
            let mut a = heard_three(true);
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                step(&mut a, ms(1000), In::Send);
                step(&mut a, ms(1010), input);
            }));
            caught.err().and_then(|p| p.downcast_ref::<crate::core::invariants::Violation>().map(|v| v.rule))
        };
        let unreachable = Some(crate::core::invariants::Rule::UnreachableGuard);
        assert_eq!(stopped(In::Heartbeat(Verdict::Accepted, 2)), unreachable);
        assert_eq!(stopped(In::Heartbeat(Verdict::Accepted, 3)), None, "the current leader's answer");
        assert_eq!(stopped(In::Heartbeat(Verdict::Accepted, 4)), None, "a newer leader's answer");
        // Unarmed, the answer is refused as before.
        let mut a = heard_three(false);
        step(&mut a, ms(1000), In::Send);
        assert_eq!(step(&mut a, ms(1010), In::Heartbeat(Verdict::Accepted, 2)), "Useless");
        // A registration answered by an older leader than one heard, armed.
        let mut a = heard_three(true);
        step(&mut a, ms(1000), In::Send);
        step(&mut a, ms(1010), In::Heartbeat(Verdict::Reregister, 3));
        step(&mut a, ms(1010), In::End);
        step(&mut a, ms(3000), In::Tick);
        assert_eq!(step(&mut a, ms(3000), In::Send), "register");
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            step(&mut a, ms(3010), In::Registered(2, 2));
        }));
        let rule = caught.err().and_then(|p| p.downcast_ref::<crate::core::invariants::Violation>().map(|v| v.rule));
        assert_eq!(rule, unreachable);
    }

    #[test]
    fn declared_offline_stops_everything_and_registers_anew() {
        let a = joined(&[
            (10, In::Park("a", 1, 1, 1), "ok"),
            (10, In::Confirm("a", 1), "ok"),
            (10, In::Begin("a", 1), "ok"),
            (500, In::Tick, "round 1000ms"),
            (500, In::Send, "heartbeat e1 by 1 run [a@1] ended []"),
            (510, In::Heartbeat(Verdict::Reregister, 2), "Useful; stop all DeclaredOffline { id: ExecutorId(1) }"),
            (510, In::Park("b", 1, 2, 1), "NotRegistered"),
            (510, In::Exit("a", 1), "false"),
            (510, In::End, ""),
            (1000, In::Tick, "round 2000ms"),
            (1000, In::Send, "register"),
            // A registration answered by an older leader than one heard from is not taken.
            (1010, In::Registered(2, 1), "Useless"),
            (1010, In::End, ""),
            (1500, In::Tick, "round 2000ms"),
            (1500, In::Send, "register"),
            (1510, In::Registered(2, 2), "Useful; registered e2"),
            (1510, In::End, ""),
            // The new registration does not report what ended under the old one.
            (2000, In::Tick, "round 1000ms"),
            (2000, In::Send, "heartbeat e2 by 2 run [] ended []"),
        ]);
        assert_eq!(a.fence_deadline(), ms(9500), "the new fence counts from the registration's send time");
    }

    #[test]
    fn ended_incarnations_are_reported_until_a_heartbeat_carrying_them_is_acknowledged() {
        joined(&[
            (10, In::Park("a", 1, 1, 1), "ok"),
            (10, In::Confirm("a", 1), "ok"),
            (10, In::Begin("a", 1), "ok"),
            (20, In::Exit("a", 1), "true"),
            (20, In::Park("b", 1, 1, 1), "ok"),
            (20, In::Confirm("b", 1), "ok"),
            (20, In::Begin("b", 1), "ok"),
            (500, In::Tick, "round 1000ms"),
            (500, In::Send, "heartbeat e1 by 1 run [b@1] ended [a@1]"),
            (1500, In::Failed, ""),
            (1500, In::End, ""),
            (1500, In::Tick, "round 1000ms"),
            (1500, In::Send, "heartbeat e1 by 1 run [b@1] ended [a@1]"),
            // b ends while the heartbeat carrying a is in flight: its acknowledgement leaves b to report.
            (1505, In::Exit("b", 1), "true"),
            (1510, In::Heartbeat(Verdict::Accepted, 1), "Useful; acked e1 sent 1.500s by 1"),
            (1510, In::End, ""),
            (2000, In::Tick, "round 1000ms"),
            (2000, In::Send, "heartbeat e1 by 1 run [] ended [b@1]"),
            (2010, In::Heartbeat(Verdict::Accepted, 1), "Useful; acked e1 sent 2.000s by 1"),
            (2010, In::End, ""),
            (2500, In::Tick, "round 1000ms"),
            (2500, In::Send, "heartbeat e1 by 1 run [] ended []"),
        ]);
    }

    #[test]
    fn a_shorter_announced_self_fence_applies_at_once_and_an_invalid_one_is_ignored() {
        let a = joined(&[
            (500, In::Tick, "round 1000ms"),
            (500, In::Send, "heartbeat e1 by 1 run [] ended []"),
            (510, In::AckedWithFence(1, 4000), "Useful; acked e1 sent 0.500s by 1"),
            (510, In::End, ""),
            (1000, In::Tick, "round 1000ms"),
            (1000, In::Send, "heartbeat e1 by 1 run [] ended []"),
            // Not below the offline TTL minus the deadline: ignored.
            (1010, In::AckedWithFence(1, 9500), "Useful; acked e1 sent 1.000s by 1"),
            (1010, In::End, ""),
        ]);
        assert_eq!(a.fence_deadline(), ms(5000));
        assert_eq!(a.timing().self_fence, Duration::from_secs(4));
    }

    #[test]
    fn a_drain_announces_itself_then_asks_the_tasks_to_stop_and_ends_when_none_runs() {
        let a = joined(&[
            (10, In::Park("a", 1, 1, 1), "ok"),
            (10, In::Confirm("a", 1), "ok"),
            (10, In::Begin("a", 1), "ok"),
            // Asked between rounds: a round at once.
            (100, In::Drain, ""),
            (100, In::Park("b", 1, 1, 1), "Draining"),
            (100, In::Tick, "round 1000ms"),
            (100, In::Send, "heartbeat e1 by 1 run [a@1] ended [] draining"),
            (110, In::Heartbeat(Verdict::Accepted, 1), "Useful; acked e1 sent 0.100s by 1; ask tasks to stop"),
            (110, In::End, ""),
            (300, In::Exit("a", 1), "true; drained 0 left"),
            // Over: no round starts any more.
            (600, In::Tick, ""),
            (700, In::Stop, "stop all Shutdown"),
        ]);
        assert_eq!(a.drain_state(), Drain::Over);
        assert_eq!(a.wake(), ms(8100), "only the fence is left to wake for");
    }

    #[test]
    fn a_drain_unheard_and_tasks_that_do_not_stop_are_bounded_by_their_timeouts() {
        joined(&[
            (10, In::Park("a", 1, 1, 1), "ok"),
            (10, In::Confirm("a", 1), "ok"),
            (10, In::Begin("a", 1), "ok"),
            (500, In::Tick, "round 1000ms"),
            (500, In::Send, "heartbeat e1 by 1 run [a@1] ended []"),
            // Asked while a round runs: the next round starts as soon as this one ends.
            (600, In::Drain, ""),
            (700, In::Heartbeat(Verdict::Accepted, 1), "Useful; acked e1 sent 0.500s by 1"),
            (700, In::End, ""),
            (700, In::Tick, "round 1000ms"),
            (700, In::Send, "heartbeat e1 by 1 run [a@1] ended [] draining"),
            // No answer within rpc_timeout of the drain: the tasks are asked anyway.
            (2599, In::Tick, ""),
            (2600, In::Tick, "ask tasks to stop"),
            (2700, In::Heartbeat(Verdict::Accepted, 1), "Useful; acked e1 sent 0.700s by 1"),
            (2700, In::End, ""),
            (8000, In::Tick, "round 1000ms"),
            (8000, In::Send, "heartbeat e1 by 1 run [a@1] ended [] draining"),
            (8010, In::Heartbeat(Verdict::Accepted, 1), "Useful; acked e1 sent 8.000s by 1"),
            (8010, In::End, ""),
            (12_599, In::Tick, "round 1000ms"),
            (12_600, In::Tick, "drained 1 left"),
            (12_600, In::Stop, "stop all Shutdown"),
            (12_600, In::Exit("a", 1), "false"),
        ]);
    }

    #[test]
    fn a_task_confirmed_then_let_go_before_it_begins_does_not_start() {
        joined(&[
            (10, In::Park("a", 1, 1, 1), "ok"),
            (10, In::Confirm("a", 1), "ok"),
            (10, In::Drain, ""),
            (10, In::Begin("a", 1), "Draining"),
            (10, In::Exit("a", 1), "false"),
        ]);
        joined(&[
            (10, In::Park("a", 1, 1, 1), "ok"),
            (10, In::Confirm("a", 1), "ok"),
            (8005, In::Begin("a", 1), "Fenced; stop all Fenced { id: ExecutorId(1) }"),
        ]);
    }

    #[test]
    fn admission_needs_the_placed_registration_serving_and_no_newer_leader() {
        let serving =
            Standing { id: Some(ExecutorId(1)), draining: false, fenced: false, newest_leader_epoch: LeaderEpoch(1) };
        let placed = spec("j/w0", 3, 1, 1);
        assert_eq!(admit("ex", &serving, &placed), Ok(()));
        let refused = |s: Standing| admit("ex", &s, &placed).unwrap_err();
        // Each reason alone, and the order when several hold: registration, drain, fence, then the leader.
        assert!(matches!(refused(Standing { id: None, ..serving }), Refusal::NotRegistered { .. }));
        let all = Standing { draining: true, fenced: true, newest_leader_epoch: LeaderEpoch(9), ..serving };
        assert!(matches!(refused(all), Refusal::Draining { .. }));
        assert!(matches!(refused(Standing { draining: false, ..all }), Refusal::Fenced { .. }));
        let moved = Standing { id: Some(ExecutorId(2)), ..serving };
        assert_eq!(
            refused(moved).to_string(),
            "the task was placed on executor e1, but ex is registered as e2 now; dispatch elsewhere"
        );
        let newer = Standing { newest_leader_epoch: LeaderEpoch(2), ..serving };
        assert_eq!(
            refused(newer),
            Refusal::DeposedLeader {
                task: placed.task_id.clone(),
                epoch: Epoch(3),
                placed_under: LeaderEpoch(1),
                newest: LeaderEpoch(2)
            }
        );
        // A newer leader than any heard from may place here (it is heard from through the dispatch itself).
        let mut from_newer = placed.clone();
        from_newer.leader_epoch = LeaderEpoch(5);
        assert_eq!(admit("ex", &serving, &from_newer), Ok(()));
        assert_eq!(super::serving("ex", &newer, ExecutorId(1)), Ok(()), "serving judges the registration only");
    }
}
