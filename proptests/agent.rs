//! The executor's agent ([`Agent`]) against design.md §5 rules 2, 3 and 7 and its reporting of ended tasks.
//!
//! The harness plays the executor's driver: it ticks the agent, opens the rounds the agent asks for, sends the
//! call the agent hands out and answers it as a master would (or not), and runs, confirms and ends tasks. The
//! model keeps what the agent must agree with, computed its own way: the registration, the newest leader epoch
//! heard in a reply, the fence deadline (the send time of the newest acknowledged heartbeat of the current
//! registration, or of the registration, plus the self-fence in force) and whether it fenced and no
//! acknowledgement lifted the fence since, the running set, and the incarnations
//! that ended since the registration and that no acknowledged heartbeat has carried.
//!
//! Operations: time advances, ticks, sends, answers (a registration admitted by a leader older than, as old as
//! or newer than the newest heard; a heartbeat accepted, refused with "register again", or answered with an
//! unknown verdict, each possibly announcing a valid or an invalid self-fence; no answer), round ends,
//! pre-dispatches (placed on this registration or another, under a leader epoch older, equal or newer),
//! confirmations (the task starts at once, as the driver does), task exits, a drain, a stop.
//!
//! After every step the property asserts the agent's own invariants and agreement with the model, and:
//! - it never runs or takes a task at or after its fence deadline, and it is fenced exactly when the model's
//!   deadline has passed (rule 3);
//! - it never takes a dispatch placed under a leader epoch older than the newest heard in a reply (rule 2), and
//!   the newest leader epoch heard never decreases;
//! - told to register again, it stops every task and holds no id until a new registration (rule 7);
//! - every heartbeat reports every incarnation that ended since the registration and that no acknowledged
//!   heartbeat carried;
//! - one round at a time, at most one call in flight; draining, it takes no task; stopped, it opens no round.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use foreman::core::agent::{
    Action, Agent, AgentConfig, Drain, HeartbeatReply, Outgoing, RegisterReply, Registration, Stop, Verdict,
};
use foreman::core::dispatcher::{TaskKind, TaskSpec};
use foreman::core::ids::{Epoch, ExecutorId, LeaderEpoch, TaskId};
use foreman::core::time::Time;
use foreman::core::timing::HeartbeatTiming;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::gen::{config, task};

fn timing() -> HeartbeatTiming {
    HeartbeatTiming::executor_default()
}

fn agent_config() -> AgentConfig {
    AgentConfig {
        name: "ex".to_owned(),
        capacity: 3,
        dispatch_ttl: Duration::from_secs(5),
        task_queue: 3,
        rpc_timeout: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(10),
        timing: timing(),
        collect_every: Duration::from_secs(3),
    }
}

/// How a master answers the call in flight.
#[derive(Clone, Debug)]
enum Answer {
    /// Answered by the leader of the newest epoch heard plus `delta`: a registration is admitted; a heartbeat
    /// gets `verdict` (accepted, register again, unknown) and `self_fence` announced, if any.
    Answered { delta: i64, verdict: u8, self_fence: Option<u64> },
    /// No answer within the deadline, or a refusal.
    Failed,
}

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Tick,
    Send,
    Answer(Answer),
    EndRound,
    /// A whole membership round: a tick, the call sent, `answer` after `latency` ms, the round's end.
    Round {
        latency: u64,
        answer: Answer,
    },
    /// Pre-dispatch of task `task` with an epoch above (or, with `reuse`, equal to) its last, under the newest
    /// leader epoch heard plus `delta`, placed on this registration or, with `elsewhere`, on another.
    Park {
        task: u8,
        reuse: bool,
        delta: i64,
        elsewhere: bool,
    },
    Confirm {
        task: u8,
    },
    /// A pre-dispatch and its confirmation at once.
    Dispatch {
        task: u8,
        reuse: bool,
        delta: i64,
        elsewhere: bool,
    },
    Exit {
        task: u8,
    },
    Drain,
    Stop,
}

fn op() -> impl Strategy<Value = Op> {
    let delta = prop_oneof![1 => Just(-1i64), 6 => Just(0i64), 1 => Just(1i64)];
    let fence = prop_oneof![8 => Just(None), 2 => (2_000u64..8_500).prop_map(Some), 1 => Just(Some(9_500u64))];
    let answer = prop_oneof![
        12 => (prop_oneof![10 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)], delta.clone(), fence)
            .prop_map(|(verdict, delta, self_fence)| Answer::Answered { delta, verdict, self_fence }),
        2 => Just(Answer::Failed),
    ];
    let park = (0u8..4, any::<bool>(), delta, prop::bool::weighted(0.1));
    prop_oneof![
        20 => prop_oneof![6 => 0u64..700, 1 => 700u64..9_000].prop_map(Op::Advance),
        3 => Just(Op::Tick),
        3 => Just(Op::Send),
        3 => answer.clone().prop_map(Op::Answer),
        3 => Just(Op::EndRound),
        30 => (prop_oneof![4 => 0u64..200, 1 => 200u64..1_500], answer)
            .prop_map(|(latency, answer)| Op::Round { latency, answer }),
        4 => park.clone().prop_map(|(task, reuse, delta, elsewhere)| Op::Park { task, reuse, delta, elsewhere }),
        4 => (0u8..4).prop_map(|task| Op::Confirm { task }),
        16 => park.prop_map(|(task, reuse, delta, elsewhere)| Op::Dispatch { task, reuse, delta, elsewhere }),
        10 => (0u8..4).prop_map(|task| Op::Exit { task }),
        1 => Just(Op::Drain),
        1 => Just(Op::Stop),
    ]
}

/// The composite operations as the single inputs they stand for.
fn expand(ops: &[Op]) -> Vec<Op> {
    ops.iter()
        .flat_map(|op| match op.clone() {
            Op::Round { latency, answer } => {
                vec![Op::Tick, Op::Send, Op::Advance(latency), Op::Answer(answer), Op::EndRound]
            }
            Op::Dispatch { task, reuse, delta, elsewhere } => {
                vec![Op::Park { task, reuse, delta, elsewhere }, Op::Confirm { task }]
            }
            op => vec![op],
        })
        .collect()
}

/// The call in flight, as the harness sent it.
#[derive(Clone, Debug)]
enum Sent {
    Register { at: Time },
    Heartbeat { id: ExecutorId, at: Time, ended: BTreeSet<(TaskId, Epoch)> },
}

#[derive(Debug, Default)]
struct Model {
    id: Option<ExecutorId>,
    next_id: u64,
    heard: LeaderEpoch,
    anchor: Time,
    self_fence: Duration,
    running: BTreeMap<TaskId, Epoch>,
    /// Ended since the registration, not carried by an acknowledged heartbeat.
    ended: BTreeSet<(TaskId, Epoch)>,
    /// Fenced, and no acknowledgement since has moved the deadline past the time it came.
    fenced: bool,
    round_open: bool,
    /// The open round's call was sent.
    called: bool,
    sent: Option<Sent>,
    draining: bool,
    stopped: bool,
    /// The drain is over, or the agent stopped: no round opens any more.
    over: bool,
    /// Per task: the newest epoch used, and the request ids parked (newest last).
    epochs: BTreeMap<TaskId, u64>,
    parked: BTreeMap<TaskId, Vec<(String, Epoch)>>,
    requests: u64,
}

impl Model {
    fn deadline(&self) -> Time {
        self.anchor + self.self_fence
    }

    fn stop_all(&mut self) {
        let running = std::mem::take(&mut self.running);
        self.ended.extend(running);
        self.parked.clear();
    }

    /// Time passes before the agent takes an input: past the fence deadline, every task stops.
    fn pass_time(&mut self, now: Time) {
        if self.id.is_some() && now >= self.deadline() {
            self.fenced = true;
            self.stop_all();
        }
    }
}

fn shift(e: LeaderEpoch, delta: i64) -> LeaderEpoch {
    LeaderEpoch(e.0.saturating_add_signed(delta))
}

fn valid_fence(ms: u64) -> Option<HeartbeatTiming> {
    let t = HeartbeatTiming { self_fence: Duration::from_millis(ms), ..timing() };
    t.validate("executors").is_ok().then_some(t)
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let ops = expand(ops);
    let mut now = Time::ZERO;
    let mut a = Agent::new(agent_config(), now);
    let mut m = Model { self_fence: timing().self_fence, next_id: 1, ..Model::default() };
    for (step, op) in ops.iter().enumerate() {
        let heard_before = a.leader_epoch();
        let deadline_before = m.deadline();
        let id_before = m.id;
        let mut actions = vec![];
        // Whether the agent took an input at `now` (an advance or a send does not let time pass for it).
        let mut fed = true;
        match op.clone() {
            Op::Round { .. } | Op::Dispatch { .. } => unreachable!("expanded"),
            Op::Advance(d) => {
                now = now + Duration::from_millis(d);
                fed = false;
            }
            Op::Tick => {
                m.pass_time(now);
                actions = a.tick(now).actions;
            }
            Op::Send => {
                fed = false;
                if m.round_open && !m.called {
                    m.called = true;
                    m.sent = Some(match a.outgoing(now) {
                        Outgoing::Register => {
                            prop_assert!(m.id.is_none(), "step {}: registering while registered", step);
                            Sent::Register { at: now }
                        }
                        Outgoing::Heartbeat(h) => {
                            prop_assert_eq!(Some(h.id), m.id, "step {}", step);
                            prop_assert_eq!(h.leader_epoch, m.heard, "step {}", step);
                            prop_assert_eq!(h.draining, m.draining, "step {}", step);
                            let reported: BTreeSet<(TaskId, Epoch)> =
                                h.ended.iter().map(|e| (e.task.clone(), e.epoch)).collect();
                            let missing: Vec<_> = m.ended.difference(&reported).collect();
                            prop_assert!(missing.is_empty(), "step {}: ended and not reported: {:?}", step, missing);
                            let running: BTreeMap<TaskId, Epoch> =
                                h.tasks.iter().map(|t| (t.task.clone(), t.epoch)).collect();
                            prop_assert_eq!(&running, &m.running, "step {}: the heartbeat's running set", step);
                            Sent::Heartbeat { id: h.id, at: now, ended: reported }
                        }
                    });
                }
            }
            Op::Answer(answer) => {
                let Some(sent) = m.sent.take() else { continue };
                m.pass_time(now);
                match (answer, sent) {
                    (Answer::Failed, _) => actions = a.on_call_failed(now).actions,
                    (Answer::Answered { delta, self_fence, .. }, Sent::Register { at }) => {
                        let epoch = shift(m.heard, delta);
                        let id = ExecutorId(m.next_id);
                        m.next_id += 1;
                        let announced =
                            self_fence.map(|ms| HeartbeatTiming { self_fence: Duration::from_millis(ms), ..timing() });
                        let reply = RegisterReply { id, leader_epoch: epoch, timing: announced };
                        actions = a.on_register_reply(now, reply).1.actions;
                        if epoch >= m.heard {
                            if let Some(t) = self_fence.and_then(valid_fence) {
                                m.self_fence = t.self_fence;
                            }
                            m.heard = epoch;
                            m.id = Some(id);
                            m.anchor = at;
                            m.ended.clear();
                            m.fenced = false;
                            // Answered so late that the new fence's deadline has passed.
                            m.pass_time(now);
                        }
                    }
                    (Answer::Answered { delta, verdict, self_fence }, Sent::Heartbeat { id, at, ended }) => {
                        let epoch = shift(m.heard, delta);
                        let verdict = [Verdict::Accepted, Verdict::Reregister, Verdict::Unknown][verdict as usize];
                        let announced =
                            self_fence.map(|ms| HeartbeatTiming { self_fence: Duration::from_millis(ms), ..timing() });
                        // Every job is gone, as far as this leader says: what the agent collects is its to judge.
                        let gone = (0..8).map(|i| task(i).as_str().to_owned()).collect();
                        let reply = HeartbeatReply { verdict, leader_epoch: epoch, timing: announced, gone };
                        actions = a.on_heartbeat_reply(now, reply).1.actions;
                        if m.id == Some(id) && epoch >= m.heard {
                            if let Some(t) = self_fence.and_then(valid_fence) {
                                m.self_fence = t.self_fence;
                            }
                            match verdict {
                                Verdict::Accepted => {
                                    m.heard = epoch;
                                    m.anchor = m.anchor.max(at);
                                    m.ended = m.ended.difference(&ended).cloned().collect();
                                    // Only an acknowledgement lifts a fence, and only one that moves the
                                    // deadline past now.
                                    if now < m.deadline() {
                                        m.fenced = false;
                                    }
                                }
                                Verdict::Reregister => {
                                    m.heard = epoch;
                                    m.id = None;
                                    m.stop_all();
                                }
                                Verdict::Unknown => {}
                            }
                        }
                        // A shorter self-fence may have moved the deadline to now or before.
                        m.pass_time(now);
                    }
                }
            }
            Op::EndRound => {
                if !m.round_open {
                    continue;
                }
                {
                    m.pass_time(now);
                    actions = a.end_round(now).actions;
                    m.round_open = false;
                    m.sent = None;
                }
            }
            Op::Park { task: t, reuse, delta, elsewhere } => {
                let task = task(t);
                let last = m.epochs.get(&task).copied().unwrap_or(0);
                let epoch = if reuse && last > 0 { last } else { last + 1 };
                m.epochs.insert(task.clone(), epoch);
                m.requests += 1;
                let request_id = format!("r{}", m.requests);
                let placed = match (m.id, elsewhere) {
                    (Some(id), false) => id,
                    (Some(id), true) => ExecutorId(id.0 + 100),
                    (None, _) => ExecutorId(1),
                };
                let leader = shift(m.heard, delta);
                m.pass_time(now);
                let spec = TaskSpec {
                    task_id: task.clone(),
                    kind: TaskKind::Worker,
                    task_type: "sleep".to_owned(),
                    task_config: vec![],
                    job_id: "j".to_owned(),
                    epoch: Epoch(epoch),
                    master_id: "m".to_owned(),
                    master_address: "10.0.0.1:1".to_owned(),
                    master_epoch: Epoch(1),
                    leader_epoch: leader,
                    request_id: request_id.clone(),
                    cost: 1,
                    timing: HeartbeatTiming::worker_default(),
                    executor: placed,
                };
                let (taken, ready) = a.pre_dispatch(now, spec);
                actions = ready.actions;
                if taken.is_ok() {
                    prop_assert!(
                        leader >= heard_before,
                        "step {}: parked under leader {} after hearing {}",
                        step,
                        leader,
                        heard_before
                    );
                    prop_assert!(
                        m.id.is_some() && !m.draining && now < m.deadline(),
                        "step {}: parked while not serving",
                        step
                    );
                    m.parked.entry(task).or_default().push((request_id, Epoch(epoch)));
                }
            }
            Op::Confirm { task: t } => {
                let task = task(t);
                let Some((request_id, epoch)) = m.parked.get_mut(&task).and_then(|p| p.pop()) else { continue };
                m.pass_time(now);
                let (confirmed, ready) = a.confirm(now, task.as_str(), &request_id);
                actions = ready.actions;
                if let Ok(spec) = confirmed {
                    prop_assert_eq!(spec.epoch, epoch, "step {}", step);
                    prop_assert!(
                        spec.leader_epoch >= heard_before,
                        "step {}: confirmed a placement of leader {} after hearing {}",
                        step,
                        spec.leader_epoch,
                        heard_before
                    );
                    let (begun, ready) = a.begin_task(now, &task, epoch, spec.executor);
                    prop_assert!(begun.is_ok(), "step {}: confirmed, then refused at once: {:?}", step, begun);
                    actions.extend(ready.actions);
                    prop_assert!(
                        m.id.is_some() && !m.draining && now < m.deadline(),
                        "step {}: started while not serving",
                        step
                    );
                    m.running.insert(task, epoch);
                }
            }
            Op::Exit { task: t } => {
                let task = task(t);
                let Some(&epoch) = m.running.get(&task) else { continue };
                // A task that ends at the fence deadline was stopped by the fence first.
                m.pass_time(now);
                let (ours, ready) = a.on_task_exit(now, &task, epoch);
                actions = ready.actions;
                prop_assert_eq!(ours, m.running.contains_key(&task), "step {}: whose exit", step);
                if ours {
                    m.running.remove(&task);
                    m.ended.insert((task, epoch));
                }
            }
            Op::Drain => {
                m.pass_time(now);
                actions = a.drain(now).actions;
                m.draining = true;
            }
            Op::Stop => {
                m.pass_time(now);
                actions = a.stop(now).actions;
                m.draining = true;
                m.stopped = true;
                m.over = true;
                m.stop_all();
            }
        }
        // The actions, against the model.
        for action in &actions {
            match action {
                Action::Round { .. } => {
                    prop_assert!(!m.round_open, "step {}: a round opened while one runs", step);
                    prop_assert!(!m.over, "step {}: a round opened after the drain or the stop", step);
                    m.round_open = true;
                    m.called = false;
                }
                Action::StopAll { why: Stop::Fenced { id } } => {
                    // Fenced under the registration it held, or under the one this step made (answered so late
                    // that its fence deadline, counted from its send time, has passed).
                    prop_assert!(Some(*id) == id_before || Some(*id) == m.id, "step {}: fenced as {}", step, id);
                    let deadline = deadline_before.min(m.deadline());
                    prop_assert!(now >= deadline, "step {}: fenced at {} before the deadline {}", step, now, deadline);
                }
                Action::StopAll { why: Stop::DeclaredOffline { .. } } => prop_assert!(m.id.is_none(), "step {}", step),
                Action::Drained { .. } => {
                    prop_assert!(m.draining && !m.over, "step {}", step);
                    m.over = true;
                }
                Action::ListHeld => {
                    // The executor keeps data of every job of the universe; handing the list in changes nothing
                    // else.
                    let held = (0..8).map(|i| task(i).as_str().to_owned()).collect();
                    let more = a.listed(now, held).actions;
                    prop_assert!(more.is_empty(), "step {}: a listing handed in did {:?}", step, more);
                }
                Action::Collect { jobs } => {
                    // Never the data of a job it runs a task of.
                    for j in jobs {
                        prop_assert!(
                            !m.running.keys().any(|t| t.as_str() == j),
                            "step {}: collected {} while its task runs",
                            step,
                            j
                        );
                    }
                }
                _ => {}
            }
        }
        if !fed {
            continue;
        }
        prop_assert_eq!(a.id(), m.id, "step {}: the registration", step);
        prop_assert_eq!(a.leader_epoch(), m.heard, "step {}: the newest leader heard", step);
        prop_assert!(a.leader_epoch() >= heard_before, "step {}: the leader epoch heard went back", step);
        let running: BTreeMap<TaskId, Epoch> = a.running().into_iter().map(|t| (t.task, t.epoch)).collect();
        prop_assert_eq!(&running, &m.running, "step {}: the running set", step);
        if let Some(id) = m.id {
            prop_assert_eq!(a.registration(), Registration::Registered { id }, "step {}", step);
            prop_assert_eq!(a.fence_deadline(), m.deadline(), "step {}: the fence deadline", step);
            prop_assert_eq!(a.is_fenced(now), m.fenced || now >= m.deadline(), "step {}: fenced at {}", step, now);
        }
        if !running.is_empty() {
            prop_assert!(
                now < m.deadline(),
                "step {}: tasks run at {}, past the fence deadline {}",
                step,
                now,
                m.deadline()
            );
        }
        prop_assert_eq!(a.draining(), m.draining, "step {}", step);
        if m.stopped {
            prop_assert_eq!(a.drain_state(), Drain::Over, "step {}", step);
        }
        if let Err(e) = a.check_invariants(now) {
            return Err(TestCaseError::fail(format!("step {step}: {e}")));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// The agent fences, hears leaders, reports ended tasks and registers as the model says, and never acts
    /// past its fence or for a deposed leader.
    #[test]
    fn agent_follows_the_model(ops in prop::collection::vec(op(), 1..120)) {
        run(&ops)?;
    }
}
