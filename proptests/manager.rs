//! The job manager of a leader term ([`Manager`]) against a model metastore, with generated write outcomes
//! (design.md §5 rules 3, 4, 5 and 7; issue 12).
//!
//! The harness plays the driver and everything around it. A model metastore holds the domain records (jobs,
//! executors, the two counters, job-master fences, tombstones) and applies each write the manager hands out
//! according to a generated outcome: written, fenced (nothing applied; the term ends and a fresh manager recovers
//! from the model with the next leader epoch), not applied, unknown but applied, unknown and not applied. Reads are
//! answered from the model, and fail now and then. Outcomes may be held while more inputs arrive (a write in
//! flight), so requests meet a busy manager. Executors register (a few names), heartbeat and go silent; each
//! fences itself once no heartbeat of its was accepted for `EXECUTOR_SELF_FENCE`, stopping its job masters. Each
//! dispatched job master runs from its dispatch until its terminal report is acknowledged, it is told it is stale,
//! its dispatch is refused, or it fences itself: no accepted heartbeat for the job masters' self-fence time.
//! Clients create jobs (with or without an id, with or without a request token, repeats of a token), get, list,
//! cancel and delete them. Failovers end the term at any point.
//!
//! After every step of the manager the properties assert: `check_invariants`; at most one write in flight; every
//! job record written is a legal transition of the stored one (rule 5); executor ids are never reused and the
//! executor counter never goes back (rule 7); job-master fences strictly grow per job, the epoch counter never goes
//! back and every dispatch has a new epoch (rule 3); a dispatch finds every other incarnation of its job dead
//! (rule 3); a job whose cancel was acknowledged, or stored Canceling or terminal, is never dispatched (rule 5); an
//! acknowledged create is durable when answered and a job leaves the store only by a deletion of a terminal job
//! (rule 4); a deleted job's create token refuses a delayed repeat while its tombstone lasts (rule 4); job reads
//! answer only what is durable; and once the manager is idle (no operation in progress) its jobs are exactly the
//! stored ones, each with the stored state, epoch, executor, restarts and failure.
//!
//! The plain tests at the end replay short sequences that broke the leader's glue once (`sim/regressions.rs`);
//! each says which fix it guards and how it failed without it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;

use foreman::core::backoff::BackoffPolicy;
use foreman::core::ids::{Epoch, ExecutorId, JobId, LeaderEpoch, TaskId};
use foreman::core::invariants::{Rule, Violation};
use foreman::core::job::{JobPolicy, JobRecord, JobSpec, JobState};
use foreman::core::manager::{
    Answer, Held, Input, IoId, JobFilter, JobView, Manager, ManagerPolicy, Plants, Read, ReadResult, Record, Refusal,
    Reply, ReplyTo, Request, Snapshot, WriteOutcome,
};
use foreman::core::placement::PlacementPolicy;
use foreman::core::registry::{ExecutorRecord, ExecutorSpec, RegistryPolicy, ReportedTask, TaskKind};
use foreman::core::time::{Time, WallTime};
use foreman::core::timing::HeartbeatTiming;
use foreman::core::workers::{Message, Verdict, WorkerStatus};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::gen::{advance, config};

/// Executor processes (names `e0`, `e1`, ...).
const EXECUTORS: u8 = 3;
/// Job ids a create may name (`j0`, ...), and request tokens (`r0`, ...).
const NAMED_JOBS: u8 = 3;
const TOKENS: u8 = 3;
/// An executor stops its tasks once no heartbeat of its was accepted for this long (below the registry's TTL).
const EXECUTOR_SELF_FENCE: Duration = Duration::from_secs(3);
/// The longest a trace kept for a failure message may be.
const TRACE_MAX: usize = 400;

fn policy() -> ManagerPolicy {
    ManagerPolicy {
        registry: RegistryPolicy {
            offline_ttl: Duration::from_secs(4),
            suspect_hold: Duration::from_secs(4),
            ..RegistryPolicy::default()
        },
        placement: PlacementPolicy::default(),
        jobs: JobPolicy {
            backoff: BackoffPolicy {
                initial: Duration::from_millis(500),
                multiplier: 2.0,
                max: Duration::from_secs(4),
                jitter: 0.2,
                reset_after: Duration::from_secs(10),
                max_tries: 4,
            },
            cancel_grace: Duration::from_secs(5),
            job_master_share: 0.5,
        },
        job_masters: HeartbeatTiming {
            interval: Duration::from_millis(500),
            timeout: Duration::from_millis(500),
            self_fence: Duration::from_secs(3),
            offline_ttl: Duration::from_secs(5),
        },
        dispatch_window: Duration::from_secs(1),
        check_interval: Duration::from_millis(500),
        tombstone_retention: Duration::from_secs(20),
        batch_max: 128,
        report_capacity: false,
        pin_wait: Duration::from_secs(60),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Generated inputs.
// ---------------------------------------------------------------------------------------------------------------

/// How a write ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Written,
    Fenced,
    NotApplied,
    UnknownApplied,
    UnknownNotApplied,
}

/// One input of the harness. Jobs are picked by index among the job ids seen so far (in id order).
#[derive(Clone, Debug)]
pub enum Op {
    /// Time passes by `ms`; with `beat`, every executor and job master that is not silent heartbeats first; then
    /// the periodic pass (and the tombstone sweep when due).
    /// Job master `i` does not beat when bit `i % 8` of `drop` is set (its beat is lost).
    Advance {
        ms: u64,
        beat: bool,
        drop: u8,
    },
    /// The metastore stalls: `ms` pass in steps of at most 1 s, each an `Advance` with beats, while every
    /// outstanding write and read stays in flight.
    Stall {
        ms: u64,
    },
    /// The next outstanding write outcome or read result arrives.
    Io,
    Register {
        exec: u8,
    },
    Beat {
        exec: u8,
    },
    SilenceExecutor {
        exec: u8,
    },
    /// An executor leaves: it stops its tasks and deregisters.
    Deregister {
        exec: u8,
    },
    Create {
        id: Option<u8>,
        token: Option<u8>,
        variant: bool,
    },
    /// A create sent before arrives again (a client's retry, or a delayed copy).
    Repeat {
        create: u8,
    },
    Get {
        job: u8,
    },
    List,
    Cancel {
        job: u8,
    },
    Delete {
        job: u8,
    },
    /// A heartbeat of the job's newest live job master.
    JobMasterBeat {
        job: u8,
    },
    /// A terminal report of the job's newest live job master: 0 Finished, 1 Failed, 2 Canceled, 3 Failed retryably
    /// (its logic panicked).
    JobMasterReport {
        job: u8,
        status: u8,
    },
    /// The newest dispatch of the job that was never heard of is refused by its executor.
    Refuse {
        job: u8,
        fatal: bool,
    },
    /// The job's newest live job master says nothing more (it fences itself in time).
    SilenceJobMaster {
        job: u8,
    },
    /// The term ends; `gap` ms later the next leader recovers from the metastore.
    Failover {
        gap: u64,
    },
}

/// An input, and whether its I/O is held in flight (else every outstanding outcome arrives right after it).
#[derive(Clone, Debug)]
pub struct Step {
    pub op: Op,
    pub hold: bool,
}

fn op() -> impl Strategy<Value = Op> {
    let e = 0..EXECUTORS;
    let j = any::<u8>();
    prop_oneof![
        10 => (
            prop_oneof![29 => advance(1_500, 8_000), 1 => 20_000u64..40_000],
            prop::bool::weighted(0.85),
            prop_oneof![3 => Just(0u8), 1 => any::<u8>()],
        )
            .prop_map(|(ms, beat, drop)| Op::Advance { ms, beat, drop }),
        1 => (1_000u64..7_000).prop_map(|ms| Op::Stall { ms }),
        4 => Just(Op::Io),
        3 => e.clone().prop_map(|exec| Op::Register { exec }),
        2 => e.clone().prop_map(|exec| Op::Beat { exec }),
        2 => e.clone().prop_map(|exec| Op::SilenceExecutor { exec }),
        1 => e.prop_map(|exec| Op::Deregister { exec }),
        5 => (prop::option::of(0..NAMED_JOBS), prop::option::weighted(0.7, 0..TOKENS), prop::bool::weighted(0.2))
            .prop_map(|(id, token, variant)| Op::Create { id, token, variant }),
        2 => any::<u8>().prop_map(|create| Op::Repeat { create }),
        2 => j.prop_map(|job| Op::Get { job }),
        1 => Just(Op::List),
        3 => j.prop_map(|job| Op::Cancel { job }),
        3 => j.prop_map(|job| Op::Delete { job }),
        2 => j.prop_map(|job| Op::JobMasterBeat { job }),
        3 => (j, 0u8..4).prop_map(|(job, status)| Op::JobMasterReport { job, status }),
        1 => (j, prop::bool::weighted(0.3)).prop_map(|(job, fatal)| Op::Refuse { job, fatal }),
        3 => j.prop_map(|job| Op::SilenceJobMaster { job }),
        1 => (0u64..2_000).prop_map(|gap| Op::Failover { gap }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (op(), prop::bool::weighted(0.2)).prop_map(|(op, hold)| Step { op, hold })
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        16 => Just(Outcome::Written),
        1 => Just(Outcome::Fenced),
        1 => Just(Outcome::NotApplied),
        1 => Just(Outcome::UnknownApplied),
        1 => Just(Outcome::UnknownNotApplied),
    ]
}

/// One generated run: the manager's seed, the inputs, the outcome of each write in turn (`Written` once used
/// up) and whether each read in turn fails (none once used up).
#[derive(Clone, Debug)]
pub struct Case {
    pub seed: u64,
    pub steps: Vec<Step>,
    pub outcomes: Vec<Outcome>,
    pub read_fails: Vec<bool>,
}

// ---------------------------------------------------------------------------------------------------------------
// What broke.
// ---------------------------------------------------------------------------------------------------------------

/// A failed property: a safety rule of design.md §5, the manager's own invariants, or a property of the term.
#[derive(Debug)]
pub enum Broken {
    Safety(Violation),
    Invariant { at: Time, detail: String },
    Property { name: &'static str, at: Time, detail: String },
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Broken::Safety(v) => write!(f, "{v}"),
            Broken::Invariant { at, detail } => write!(f, "manager invariant at {at}: {detail}"),
            Broken::Property { name, at, detail } => write!(f, "property \"{name}\" at {at}: {detail}"),
        }
    }
}

type Check = Result<(), Broken>;

fn safety(rule: Rule, at: Time, detail: String) -> Check {
    Err(Broken::Safety(Violation::new(rule, at, detail)))
}

fn property(name: &'static str, at: Time, detail: String) -> Check {
    Err(Broken::Property { name, at, detail })
}

// ---------------------------------------------------------------------------------------------------------------
// The model metastore.
// ---------------------------------------------------------------------------------------------------------------

#[derive(Clone, Debug, Default)]
struct Store {
    jobs: BTreeMap<JobId, JobRecord>,
    executors: BTreeMap<ExecutorId, ExecutorRecord>,
    next_executor_id: u64,
    next_job_epoch: u64,
    fences: BTreeMap<JobId, Epoch>,
    /// Deleted jobs' create tokens, with when they were deleted.
    tombstones: BTreeMap<JobId, (String, Option<WallTime>)>,
    /// Where workers' local resources live, or that they were lost.
    resources: BTreeMap<String, Held>,
}

impl Store {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            executors: self.executors.values().cloned().collect(),
            corrupt_executors: 0,
            next_executor_id: self.next_executor_id,
            jobs: self.jobs.values().cloned().collect(),
            corrupt_jobs: vec![],
            corrupt_unnamed_jobs: 0,
            next_job_epoch: self.next_job_epoch,
            resources: self.resources.iter().map(|(r, h)| (r.clone(), *h)).collect(),
        }
    }

    fn read(&self, read: &Read, leader_epoch: u64) -> ReadResult {
        match read {
            Read::Job(id) => ReadResult::Job(self.jobs.get(id).cloned().map(Ok)),
            Read::Tombstone(id) => ReadResult::Tombstone(self.tombstones.get(id).map(|(t, _)| t.clone())),
            Read::JobData(_) => ReadResult::Keys(vec![]),
            Read::LeaderEpoch => ReadResult::Counter(leader_epoch),
            Read::Tombstones => ReadResult::Tombstones(
                self.tombstones.iter().map(|(id, (t, at))| (id.clone(), *at, t.clone())).collect(),
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The world around the manager.
// ---------------------------------------------------------------------------------------------------------------

/// An executor process.
#[derive(Clone, Debug)]
struct Executor {
    name: String,
    /// Drawn anew each time the process starts over (after it fenced itself or left).
    instance: u64,
    id: Option<ExecutorId>,
    /// When the newest heartbeat (or registration) that was accepted was sent.
    last_ack: Time,
    silent: bool,
    registering: bool,
}

/// A job master incarnation, from its dispatch.
#[derive(Clone, Debug)]
struct JobMaster {
    job: JobId,
    epoch: Epoch,
    /// The executor process it runs on (none: dispatched to an id no process holds, so it never ran).
    exec: Option<usize>,
    alive: bool,
    /// When the newest heartbeat that was accepted was sent (its dispatch, at first).
    last_ack: Time,
    /// It sent something: its dispatch was not refused.
    heard: bool,
    silent: bool,
    /// Told to cancel: its next beat reports Canceled.
    cancel: bool,
    /// The terminal status it reports, once it has one: every later beat repeats it until it is acknowledged.
    report: Option<WorkerStatus>,
    /// A heartbeat of its was accepted.
    online: bool,
    /// The newest master epoch it knows.
    knows: Epoch,
    /// The term that dispatched it: only that term's driver hears of a refusal of its dispatch.
    term: u64,
    how_ended: Option<&'static str>,
}

/// A request waiting for its answer.
#[derive(Clone, Debug)]
enum Pending {
    Register { exec: usize, instance: u64, sent: Time },
    ExecutorBeat { exec: usize, id: ExecutorId, sent: Time },
    Deregister,
    Create { id: Option<JobId>, request: String },
    Get(JobId),
    List,
    Cancel(JobId),
    Delete(JobId),
    JobMaster { jm: usize, sent: Time, report: bool },
}

struct Harness {
    policy: ManagerPolicy,
    seed: u64,
    now: Time,
    /// The newest leader epoch issued; the manager's term.
    epoch: u64,
    m: Manager,
    store: Store,
    outcomes: VecDeque<Outcome>,
    read_fails: VecDeque<bool>,
    write: Option<(IoId, Vec<Record>)>,
    reads: VecDeque<(IoId, Read)>,
    pending: BTreeMap<ReplyTo, Pending>,
    next_reply: u64,
    sweep_at: Option<Time>,
    executors: Vec<Executor>,
    masters: Vec<JobMaster>,
    /// Every create request sent, for repeats.
    creates: Vec<(Option<JobId>, JobSpec)>,
    /// Every job id seen, in id order: what the generated job indices pick from.
    seen: BTreeSet<JobId>,
    /// Jobs whose create was acknowledged (until deleted).
    acked: BTreeSet<JobId>,
    /// Jobs whose cancel was acknowledged (until deleted).
    cancel_acked: BTreeSet<JobId>,
    /// Every epoch dispatched.
    dispatched: BTreeSet<Epoch>,
    /// The highest fence ever stored per job.
    fence_high: BTreeMap<JobId, Epoch>,
    /// Every executor id ever stored, with the process (name, instance) it was admitted for.
    executor_ids: BTreeMap<ExecutorId, (String, u64)>,
    trace: Vec<String>,
    /// How often each interesting thing happened (see `manager_runs_reach_the_interesting_paths`).
    seen_paths: BTreeMap<&'static str, u64>,
}

impl Harness {
    fn new(case: &Case) -> Harness {
        let policy = policy();
        let m = Manager::recover(
            Time::ZERO,
            LeaderEpoch(1),
            policy.clone(),
            Plants::default(),
            case.seed,
            Snapshot::default(),
        );
        let executors = (0..EXECUTORS)
            .map(|i| Executor {
                name: format!("e{i}"),
                instance: 1,
                id: None,
                last_ack: Time::ZERO,
                silent: false,
                registering: false,
            })
            .collect();
        Harness {
            policy,
            seed: case.seed,
            now: Time::ZERO,
            epoch: 1,
            m,
            store: Store::default(),
            outcomes: case.outcomes.iter().copied().collect(),
            read_fails: case.read_fails.iter().copied().collect(),
            write: None,
            reads: VecDeque::new(),
            pending: BTreeMap::new(),
            next_reply: 0,
            sweep_at: None,
            executors,
            masters: vec![],
            creates: vec![],
            seen: BTreeSet::new(),
            acked: BTreeSet::new(),
            cancel_acked: BTreeSet::new(),
            dispatched: BTreeSet::new(),
            fence_high: BTreeMap::new(),
            executor_ids: BTreeMap::new(),
            trace: vec![],
            seen_paths: BTreeMap::new(),
        }
    }

    fn count(&mut self, what: &'static str) {
        *self.seen_paths.entry(what).or_default() += 1;
    }

    fn note(&mut self, line: String) {
        if self.trace.len() < TRACE_MAX {
            self.trace.push(format!("t={} {line}", self.now));
        }
    }

    fn pick_job(&self, i: u8) -> JobId {
        if self.seen.is_empty() {
            return JobId::parse(&format!("j{}", i % NAMED_JOBS)).expect("valid job id");
        }
        self.seen.iter().nth(usize::from(i) % self.seen.len()).expect("in range").clone()
    }

    /// The newest incarnation of `job` that `keep` accepts.
    fn newest_master(&self, job: &JobId, keep: impl Fn(&JobMaster) -> bool) -> Option<usize> {
        self.masters
            .iter()
            .enumerate()
            .filter(|(_, jm)| &jm.job == job && keep(jm))
            .map(|(i, _)| i)
            .max_by_key(|&i| self.masters[i].epoch)
    }

    /// Everything that fenced itself by now stops: executors (with their job masters), then job masters.
    fn refresh(&mut self) {
        let now = self.now;
        for i in 0..self.executors.len() {
            let e = &self.executors[i];
            if e.id.is_some() && now >= e.last_ack + EXECUTOR_SELF_FENCE {
                let name = e.name.clone();
                self.note(format!("{name} fences itself"));
                self.stop_executor(i, "its executor fenced itself");
            }
        }
        let fence = self.policy.job_masters.self_fence;
        for jm in &mut self.masters {
            if jm.alive && now >= jm.last_ack + fence {
                jm.alive = false;
                jm.how_ended = Some("fenced itself");
                *self.seen_paths.entry("job master fenced itself").or_default() += 1;
            }
        }
    }

    /// Executor `i` stops every task and starts over as a new process that registers again.
    fn stop_executor(&mut self, i: usize, why: &'static str) {
        for jm in self.masters.iter_mut().filter(|jm| jm.alive && jm.exec == Some(i)) {
            jm.alive = false;
            jm.how_ended = Some(why);
        }
        let e = &mut self.executors[i];
        e.id = None;
        e.instance += 1;
        e.silent = false;
        e.registering = false;
    }

    fn send(&mut self, request: Request, pending: Pending) -> Check {
        self.next_reply += 1;
        let to = ReplyTo(self.next_reply);
        self.pending.insert(to, pending);
        self.m.step(self.now, Input::Request(to, request));
        self.after()
    }

    fn input(&mut self, input: Input) -> Check {
        self.m.step(self.now, input);
        self.after()
    }

    // -----------------------------------------------------------------------------------------------------------
    // After every step of the manager: take its Ready, check everything.
    // -----------------------------------------------------------------------------------------------------------

    fn after(&mut self) -> Check {
        let ready = self.m.ready();
        // Answers first: they were decided before the write this Ready hands out (if any) was.
        for (to, answer) in ready.answers {
            self.answered(to, answer)?;
        }
        for d in ready.dispatches {
            self.dispatched(d)?;
        }
        if let Some((io, records)) = ready.write {
            if let Some((old, _)) = &self.write {
                return property("one write in flight", self.now, format!("write {io:?} while {old:?} is in flight"));
            }
            self.check_write(&records)?;
            self.write = Some((io, records));
        }
        self.reads.extend(ready.reads);
        self.sweep_at = ready.sweep_at;
        for e in &ready.events {
            if let foreman::core::manager::Event::ExecutorOffline { id, .. } = e {
                if self.store.executors.contains_key(id) {
                    return property(
                        "offline verdicts are reported once durable",
                        self.now,
                        format!("executor {id} reported offline while the store still registers it"),
                    );
                }
            }
            // A backoff's charge and a start are reported once durable: the store holds what they say.
            if let foreman::core::manager::Event::BackoffCharged { job, failures, allowed, .. } = e {
                let stored = self.store.jobs.get(job);
                let durable = stored.is_some_and(|r| {
                    r.backoff.failures == *failures
                        && r.executor.is_none()
                        && allowed.is_none() == (r.state == JobState::Failed)
                });
                if !durable {
                    return property(
                        "backoff charges are reported once durable",
                        self.now,
                        format!("{job} charged ({failures} failures, allowed {allowed:?}) but stored {stored:?}"),
                    );
                }
            }
            if let foreman::core::manager::Event::JobMasterStarted { job, epoch, .. } = e {
                let stored = self.store.jobs.get(job);
                if !stored.is_some_and(|r| r.epoch == *epoch && r.executor.is_some()) {
                    return property(
                        "starts are reported once durable",
                        self.now,
                        format!("{job} epoch {epoch} reported started but stored {stored:?}"),
                    );
                }
            }
            let what = match e {
                foreman::core::manager::Event::BackoffCharged { .. } => "backoff charged",
                foreman::core::manager::Event::JobMasterStarted { .. } => "job master started",
                foreman::core::manager::Event::ExecutorOffline { .. } => "executor declared offline",
                foreman::core::manager::Event::JobMasterLost { .. } => "job master declared lost",
                foreman::core::manager::Event::DispatchRefused { .. } => "dispatch refused",
                foreman::core::manager::Event::TombstonesSwept { .. } => "tombstones swept",
                foreman::core::manager::Event::WriteFailed { .. } => "write failed",
                _ => continue,
            };
            *self.seen_paths.entry(what).or_default() += 1;
        }
        if let Some(down) = ready.step_down {
            self.note(format!("term {} steps down: {}", self.epoch, down.why));
            return self.failover();
        }
        self.check()
    }

    /// The term ended: the next leader recovers from the store and begins with its periodic pass, as the driver
    /// does (its first wake is due at once).
    fn failover(&mut self) -> Check {
        self.count("failover");
        self.epoch += 1;
        self.write = None;
        self.reads.clear();
        for p in std::mem::take(&mut self.pending).into_values() {
            if let Pending::Register { exec, .. } = p {
                self.executors[exec].registering = false;
            }
        }
        self.refresh();
        self.note(format!("term {} recovers", self.epoch));
        self.m = Manager::recover(
            self.now,
            LeaderEpoch(self.epoch),
            self.policy.clone(),
            Plants::default(),
            self.seed ^ self.epoch,
            self.store.snapshot(),
        );
        self.after()?;
        self.input(Input::Tick)
    }

    fn check(&mut self) -> Check {
        let now = self.now;
        if let Err(detail) = self.m.check_invariants() {
            return Err(Broken::Invariant { at: now, detail });
        }
        for id in &self.acked {
            if !self.store.jobs.contains_key(id) {
                return safety(Rule::NoJobLost, now, format!("the acknowledged job {id} is no longer stored"));
            }
        }
        if self.m.is_busy() || self.write.is_some() {
            return Ok(());
        }
        // Idle: memory is the store.
        if !self.store.jobs.is_empty() {
            *self.seen_paths.entry("idle with jobs (memory checked)").or_default() += 1;
        }
        let mem: BTreeSet<&JobId> = self.m.jobs().iter().map(|j| j.id()).collect();
        let stored: BTreeSet<&JobId> = self.store.jobs.keys().collect();
        if mem != stored {
            return property(
                "memory equals the store once idle",
                now,
                format!("the manager knows jobs {mem:?}, the store holds {stored:?}"),
            );
        }
        for j in self.m.jobs().iter() {
            let r = &self.store.jobs[j.id()];
            let m = (j.state(), j.epoch(), j.executor(), j.restarts(), j.failure());
            let s = (r.state, r.epoch, r.executor, r.restarts, r.failure.as_ref());
            if m != s {
                return property(
                    "memory equals the store once idle",
                    now,
                    format!(
                        "job {}: memory has (state, epoch, executor, restarts, failure) {m:?}, the store {s:?}",
                        j.id()
                    ),
                );
            }
        }
        Ok(())
    }

    /// Checks a write the manager asks for against what the store holds before it.
    fn check_write(&mut self, records: &[Record]) -> Check {
        let now = self.now;
        self.note(format!("write {records:?}"));
        let new_epoch_counter = records.iter().find_map(|r| match r {
            Record::JobNextEpoch(e) => Some(*e),
            _ => None,
        });
        let new_executor_counter = records.iter().find_map(|r| match r {
            Record::ExecutorNextId(n) => Some(*n),
            _ => None,
        });
        for r in records {
            match r {
                Record::Job(j)
                    if !self.store.jobs.contains_key(&j.id)
                        && !j.spec.request.is_empty()
                        && self.store.jobs.values().any(|o| o.spec.request == j.spec.request) =>
                {
                    return safety(
                        Rule::NoJobLost,
                        now,
                        format!(
                            "job {} created for request {}, which already created a stored job",
                            j.id, j.spec.request
                        ),
                    )
                }
                Record::Job(j)
                    if !self.store.jobs.contains_key(&j.id)
                        && !j.spec.request.is_empty()
                        && self.store.tombstones.get(&j.id).is_some_and(|(t, _)| *t == j.spec.request) =>
                {
                    return safety(
                        Rule::NoJobLost,
                        now,
                        format!(
                            "deleted job {} comes back: a repeat of its create ({}) is written",
                            j.id, j.spec.request
                        ),
                    )
                }
                Record::Job(j) => match self.store.jobs.get(&j.id) {
                    None if j.state != JobState::Created => {
                        return safety(
                            Rule::LegalTransitions,
                            now,
                            format!("job {} written {} with no stored record", j.id, j.state),
                        )
                    }
                    Some(p) if p.state != j.state && !p.state.can_become(j.state) => {
                        return safety(
                            Rule::LegalTransitions,
                            now,
                            format!("job {} written {} -> {}", j.id, p.state, j.state),
                        )
                    }
                    _ => {}
                },
                Record::JobMasterFence(job, e) => {
                    if let Some(high) = self.fence_high.get(job).filter(|h| *h >= e) {
                        return safety(
                            Rule::OneLiveIncarnation,
                            now,
                            format!("job {job}: fence {e} written after fence {high}"),
                        );
                    }
                    let counter = new_epoch_counter.map_or(self.store.next_job_epoch, |c| c.0);
                    if e.0 >= counter {
                        return safety(
                            Rule::OneLiveIncarnation,
                            now,
                            format!("job {job}: fence {e} is not below the epoch counter {counter}"),
                        );
                    }
                    let stored = self.store.jobs.get(job).map(|r| r.state);
                    if self.cancel_acked.contains(job)
                        || stored.is_some_and(|s| s == JobState::Canceling || s.is_terminal())
                    {
                        return safety(
                            Rule::LegalTransitions,
                            now,
                            format!("job {job} (stored {stored:?}) starts incarnation {e} after its cancel or end"),
                        );
                    }
                }
                Record::JobNextEpoch(e) if e.0 < self.store.next_job_epoch => {
                    return safety(
                        Rule::OneLiveIncarnation,
                        now,
                        format!("the epoch counter goes back from {} to {e}", self.store.next_job_epoch),
                    )
                }
                Record::ExecutorNextId(n) if n.0 < self.store.next_executor_id => {
                    return safety(
                        Rule::RegistryIntegrity,
                        now,
                        format!("the executor counter goes back from {} to {n}", self.store.next_executor_id),
                    )
                }
                Record::Executor(e) => {
                    let process = (e.spec.name.clone(), e.spec.instance);
                    if self.executor_ids.get(&e.id).is_some_and(|p| *p != process) {
                        return safety(
                            Rule::RegistryIntegrity,
                            now,
                            format!("executor id {} reused for {process:?} (was {:?})", e.id, self.executor_ids[&e.id]),
                        );
                    }
                    let counter = new_executor_counter.map_or(self.store.next_executor_id, |c| c.0);
                    if e.id.0 >= counter {
                        return safety(
                            Rule::RegistryIntegrity,
                            now,
                            format!("executor id {} is not below the counter {counter}", e.id),
                        );
                    }
                }
                Record::DeleteJob { id, .. } => {
                    if let Some(r) = self.store.jobs.get(id).filter(|r| !r.state.is_terminal()) {
                        return safety(Rule::NoJobLost, now, format!("job {id} deleted while {}", r.state));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn apply(&mut self, records: &[Record]) {
        for r in records {
            match r {
                Record::Job(j) => {
                    self.seen.insert(j.id.clone());
                    self.store.jobs.insert(j.id.clone(), j.clone());
                }
                Record::Executor(e) => {
                    self.executor_ids.insert(e.id, (e.spec.name.clone(), e.spec.instance));
                    self.store.executors.insert(e.id, e.clone());
                }
                Record::DeleteExecutor(id) => {
                    self.store.executors.remove(id);
                }
                Record::ExecutorNextId(n) => self.store.next_executor_id = n.0,
                Record::JobNextEpoch(e) => self.store.next_job_epoch = e.0,
                Record::JobMasterFence(job, e) => {
                    self.fence_high.insert(job.clone(), *e);
                    self.store.fences.insert(job.clone(), *e);
                }
                Record::DeleteJob { id, .. } => {
                    self.store.jobs.remove(id);
                    self.store.fences.remove(id);
                    self.acked.remove(id);
                    self.cancel_acked.remove(id);
                }
                Record::Tombstone { id, request, deleted_at } => {
                    *self.seen_paths.entry("tombstone stored").or_default() += 1;
                    self.store.tombstones.insert(id.clone(), (request.clone(), Some(*deleted_at)));
                }
                Record::DeleteTombstone(id) => {
                    self.store.tombstones.remove(id);
                }
                Record::Resource { resource, held } => match held {
                    Held::Gone => {
                        self.store.resources.remove(resource);
                    }
                    _ => {
                        self.store.resources.insert(resource.clone(), *held);
                    }
                },
            }
        }
    }

    /// Delivers the next outstanding outcome: the write in flight first, else the oldest read. Whether there was
    /// one.
    fn deliver(&mut self) -> Result<bool, Broken> {
        if let Some((io, records)) = self.write.take() {
            let outcome = self.outcomes.pop_front().unwrap_or(Outcome::Written);
            self.count(match outcome {
                Outcome::Written => "write written",
                Outcome::Fenced => "write fenced",
                Outcome::NotApplied => "write not applied",
                Outcome::UnknownApplied => "write unknown, applied",
                Outcome::UnknownNotApplied => "write unknown, not applied",
            });
            self.note(format!("write {io:?} {outcome:?}"));
            let result = match outcome {
                Outcome::Written => {
                    self.apply(&records);
                    WriteOutcome::Written
                }
                Outcome::Fenced => WriteOutcome::Fenced,
                Outcome::NotApplied => WriteOutcome::NotApplied("refused".into()),
                Outcome::UnknownApplied => {
                    self.apply(&records);
                    WriteOutcome::Unknown("timed out".into())
                }
                Outcome::UnknownNotApplied => WriteOutcome::Unknown("timed out".into()),
            };
            self.m.on_write(self.now, io, result);
            self.after()?;
            return Ok(true);
        }
        let Some((io, read)) = self.reads.pop_front() else { return Ok(false) };
        let result = if self.read_fails.pop_front().unwrap_or(false) {
            Err("the read timed out".to_owned())
        } else {
            Ok(self.store.read(&read, self.epoch))
        };
        self.note(format!("read {read:?} -> {result:?}"));
        self.m.on_read(self.now, io, result);
        self.after()?;
        Ok(true)
    }

    fn pump(&mut self) -> Check {
        while self.deliver()? {}
        Ok(())
    }

    // -----------------------------------------------------------------------------------------------------------
    // Answers and dispatches.
    // -----------------------------------------------------------------------------------------------------------

    /// A job view answered must show what is durable.
    fn durable_view(&self, what: &str, view: &JobView) -> Check {
        let JobView::Job { job, .. } = view else { return Ok(()) };
        match self.store.jobs.get(job.id()) {
            Some(r) if r.state == job.state() => Ok(()),
            stored => property(
                "job reads answer what is durable",
                self.now,
                format!(
                    "{what} answered job {} {} while the store holds {:?}",
                    job.id(),
                    job.state(),
                    stored.map(|r| r.state)
                ),
            ),
        }
    }

    fn answered(&mut self, to: ReplyTo, answer: Answer) -> Check {
        let Some(p) = self.pending.remove(&to) else { return Ok(()) };
        let now = self.now;
        match p {
            Pending::Register { exec, instance, sent } => {
                let e = &mut self.executors[exec];
                if e.instance != instance {
                    return Ok(());
                }
                e.registering = false;
                if let Ok(Reply::Registered { record, .. }) = answer {
                    if e.id.is_none() && now < sent + EXECUTOR_SELF_FENCE {
                        e.id = Some(record.id);
                        e.last_ack = sent;
                        let name = e.name.clone();
                        self.note(format!("{name} registered as {}", record.id));
                    }
                }
            }
            Pending::ExecutorBeat { exec, id, sent } => {
                if self.executors[exec].id != Some(id) {
                    return Ok(());
                }
                match answer {
                    Ok(Reply::Heartbeat { known: true, .. }) => {
                        let e = &mut self.executors[exec];
                        e.last_ack = e.last_ack.max(sent);
                    }
                    Ok(Reply::Heartbeat { known: false, .. }) => {
                        self.note(format!("executor {id} told to register again"));
                        self.stop_executor(exec, "its executor was told to register again");
                    }
                    _ => {}
                }
            }
            Pending::Deregister => {}
            Pending::Create { id, request } => {
                if let Err(Refusal::JobDeleted(_)) = &answer {
                    self.count("create refused: job deleted");
                }
                if let Err(Refusal::RequestIdReused(_)) = &answer {
                    self.count("create refused: request id reused");
                }
                let Ok(Reply::Job(view)) = answer else {
                    self.note(format!("create {id:?} {request:?} -> {answer:?}"));
                    return Ok(());
                };
                let created = view.id().clone();
                self.note(format!("create {id:?} {request:?} -> {created}"));
                self.seen.insert(created.clone());
                if !self.store.jobs.contains_key(&created) {
                    return safety(Rule::NoJobLost, now, format!("create of {created} acknowledged but not stored"));
                }
                if let Some((token, _)) = self.store.tombstones.get(&created) {
                    if !request.is_empty() && *token == request {
                        return safety(
                            Rule::NoJobLost,
                            now,
                            format!("job {created} came back: a repeat of its create ({request}) was acknowledged after its deletion"),
                        );
                    }
                }
                self.durable_view("a create", &view)?;
                self.count("create acknowledged");
                self.acked.insert(created);
            }
            Pending::Get(id) => match answer {
                Ok(Reply::Job(view)) => self.durable_view("a get", &view)?,
                Err(Refusal::Job(foreman::core::job::JobError::NotFound { .. }))
                    if self.store.jobs.contains_key(&id) =>
                {
                    return property(
                        "job reads answer what is durable",
                        now,
                        format!("a get answered job {id} not found while the store holds it"),
                    )
                }
                _ => {}
            },
            Pending::List => {
                if let Ok(Reply::Jobs { jobs, .. }) = answer {
                    for v in &jobs {
                        self.durable_view("a listing", v)?;
                    }
                }
            }
            Pending::Cancel(id) => {
                self.note(format!("cancel {id} -> {answer:?}"));
                if let Ok(Reply::Job(view)) = answer {
                    self.durable_view("a cancel", &view)?;
                    if let JobView::Job { job, .. } = &view {
                        if matches!(job.state(), JobState::Canceling | JobState::Canceled) {
                            self.count(if job.state() == JobState::Canceling {
                                "cancel acknowledged canceling"
                            } else {
                                "cancel acknowledged canceled"
                            });
                            self.cancel_acked.insert(id);
                        }
                    }
                }
            }
            Pending::Delete(id) => {
                self.note(format!("delete {id} -> {answer:?}"));
                if answer.is_ok() {
                    self.count("delete acknowledged");
                }
                if let Err(Refusal::JobDeleted(_)) = &answer {
                    self.count("create refused: job deleted");
                }
                if answer.is_ok() && self.store.jobs.contains_key(&id) {
                    return safety(Rule::NoJobLost, now, format!("delete of {id} acknowledged but it is still stored"));
                }
            }
            Pending::JobMaster { jm, sent, report } => {
                let Ok(Reply::JobMaster { reply, cancel }) = answer else { return Ok(()) };
                let fence = self.policy.job_masters.self_fence;
                let m = &mut self.masters[jm];
                if !m.alive {
                    return Ok(());
                }
                match reply.verdict {
                    Verdict::Accepted if now < m.last_ack + fence => {
                        m.last_ack = m.last_ack.max(sent);
                        m.knows = m.knows.max(reply.master_epoch);
                        m.cancel |= cancel;
                        m.online = true;
                        if report {
                            m.alive = false;
                            m.how_ended = Some("exited");
                            // It stops now: its exit must be durable, or its job would wait for it for ever (or
                            // run it again).
                            let (job, epoch) = (m.job.clone(), m.epoch);
                            // A retryable failure ends the incarnation, not the job: the job waits out its backoff
                            // (or is canceled, or given up), its record naming no executor for that incarnation.
                            let retrying = matches!(m.report, Some(WorkerStatus::Failed { retryable: true, .. }));
                            if let Some(r) = self.store.jobs.get(&job).filter(|r| {
                                r.epoch == epoch && !r.state.is_terminal() && (!retrying || r.executor.is_some())
                            }) {
                                return property(
                                    "acknowledged exits are durable",
                                    now,
                                    format!(
                                        "job master {job}/{epoch} was told its exit was taken, but the store holds {}",
                                        r.state
                                    ),
                                );
                            }
                        }
                    }
                    Verdict::StaleWorker => {
                        m.alive = false;
                        m.how_ended = Some("told it is stale");
                    }
                    _ => {}
                }
                let (job, epoch, how) = (m.job.clone(), m.epoch, m.how_ended);
                if let Some(how) = how {
                    self.count(how);
                    self.note(format!("job master {job}/{epoch} {how}"));
                }
            }
        }
        Ok(())
    }

    fn dispatched(&mut self, d: foreman::core::manager::Dispatch) -> Check {
        let now = self.now;
        self.refresh();
        self.note(format!("dispatch {}/{} on {}", d.job, d.epoch, d.executor));
        if !self.dispatched.insert(d.epoch) {
            return safety(Rule::OneLiveIncarnation, now, format!("epoch {} dispatched twice", d.epoch));
        }
        if self.cancel_acked.contains(&d.job) {
            return safety(
                Rule::LegalTransitions,
                now,
                format!("job {} dispatched (epoch {}) after its cancel was acknowledged", d.job, d.epoch),
            );
        }
        match self.store.jobs.get(&d.job) {
            Some(r) if r.epoch == d.epoch && r.state != JobState::Canceling && !r.state.is_terminal() => {}
            stored => {
                return safety(
                    Rule::LegalTransitions,
                    now,
                    format!("job {} dispatched (epoch {}) while the store holds {stored:?}", d.job, d.epoch),
                )
            }
        }
        // One that reports a retryable failure acts no more (it quiesced: the runtime says so before it reports),
        // like a drained task: its job may start again once the report is taken.
        let acting =
            |jm: &JobMaster| jm.alive && !matches!(jm.report, Some(WorkerStatus::Failed { retryable: true, .. }));
        if let Some(live) = self.masters.iter().find(|jm| jm.job == d.job && acting(jm)) {
            return safety(
                Rule::OneLiveIncarnation,
                now,
                format!(
                    "job {} dispatched at epoch {} while its job master {} may still run (last acknowledged at {})",
                    d.job, d.epoch, live.epoch, live.last_ack
                ),
            );
        }
        let restart = self.masters.iter().any(|jm| jm.job == d.job);
        self.count(if restart { "dispatch of a later incarnation" } else { "first dispatch" });
        let exec = self.executors.iter().position(|e| e.id == Some(d.executor));
        self.masters.push(JobMaster {
            job: d.job,
            epoch: d.epoch,
            exec,
            alive: exec.is_some(),
            last_ack: now,
            heard: false,
            silent: false,
            cancel: false,
            report: None,
            online: false,
            knows: Epoch(d.leader_epoch.0),
            term: self.epoch,
            how_ended: exec.is_none().then_some("never ran"),
        });
        Ok(())
    }

    // -----------------------------------------------------------------------------------------------------------
    // Inputs.
    // -----------------------------------------------------------------------------------------------------------

    fn executor_beat(&mut self, i: usize) -> Check {
        let Some(id) = self.executors[i].id else { return Ok(()) };
        let tasks = self
            .masters
            .iter()
            .filter(|jm| jm.alive && jm.exec == Some(i))
            .map(|jm| ReportedTask {
                task: TaskId::job_master(&jm.job),
                kind: TaskKind::JobMaster,
                epoch: jm.epoch,
                cost: 1,
            })
            .collect();
        let request = Request::Heartbeat {
            id,
            seen: LeaderEpoch(self.epoch),
            tasks,
            ended: vec![],
            draining: false,
            fenced: false,
            held: vec![],
        };
        self.send(request, Pending::ExecutorBeat { exec: i, id, sent: self.now })
    }

    fn register(&mut self, i: usize) -> Check {
        let e = &mut self.executors[i];
        if e.id.is_some() || e.registering {
            return Ok(());
        }
        e.registering = true;
        let spec = ExecutorSpec {
            name: e.name.clone(),
            address: format!("{}:9000", e.name),
            capacity: 4,
            labels: Default::default(),
            instance: e.instance,
        };
        let pending = Pending::Register { exec: i, instance: e.instance, sent: self.now };
        self.send(Request::RegisterExecutor { spec }, pending)
    }

    fn job_master_send(&mut self, i: usize, status: Option<WorkerStatus>) -> Check {
        let jm = &mut self.masters[i];
        if !jm.alive {
            return Ok(());
        }
        jm.heard = true;
        if jm.report.is_none() {
            jm.report = status.or_else(|| jm.cancel.then_some(WorkerStatus::Canceled));
        }
        let status = jm.report.clone();
        let report = status.is_some();
        let msg = Message { task: TaskId::job_master(&jm.job), master_epoch: jm.knows, worker_epoch: jm.epoch };
        let request = Request::JobMaster {
            msg,
            status,
            progress: String::new(),
            last_error: None,
            wall: foreman::core::time::WallTime(0),
        };
        self.send(request, Pending::JobMaster { jm: i, sent: self.now, report })
    }

    fn op(&mut self, op: &Op) -> Check {
        self.refresh();
        self.note(format!("{op:?}"));
        match op {
            Op::Stall { ms } => {
                let mut left = *ms;
                while left > 0 {
                    let slice = left.min(1_000);
                    left -= slice;
                    self.op(&Op::Advance { ms: slice, beat: true, drop: 0 })?;
                }
                Ok(())
            }
            Op::Advance { ms, beat, drop } => {
                self.now = self.now + Duration::from_millis(*ms);
                self.refresh();
                if *beat {
                    // Executors keep trying to register, and heartbeat once registered.
                    for i in 0..self.executors.len() {
                        if self.executors[i].silent {
                            continue;
                        }
                        if self.executors[i].id.is_none() {
                            self.register(i)?;
                        } else {
                            self.executor_beat(i)?;
                        }
                    }
                    for i in 0..self.masters.len() {
                        let lost = drop & (1 << (i % 8)) != 0;
                        if self.masters[i].alive && !self.masters[i].silent && !lost {
                            self.job_master_send(i, None)?;
                        }
                    }
                }
                self.input(Input::Tick)?;
                if self.sweep_at.is_some_and(|at| self.now >= at) {
                    let wall = WallTime(1_000_000 + self.now.as_millis());
                    self.count("tombstone sweep due");
                    self.input(Input::SweepTombstones { wall })?;
                }
                Ok(())
            }
            Op::Io => self.deliver().map(|_| ()),
            Op::Register { exec } => self.register(usize::from(*exec)),
            Op::Beat { exec } => self.executor_beat(usize::from(*exec)),
            Op::SilenceExecutor { exec } => {
                self.executors[usize::from(*exec)].silent = true;
                Ok(())
            }
            Op::Deregister { exec } => {
                let i = usize::from(*exec);
                let Some(id) = self.executors[i].id else { return Ok(()) };
                self.stop_executor(i, "its executor left");
                self.send(Request::DeregisterExecutor { id }, Pending::Deregister)
            }
            Op::Create { id, token, variant } => {
                let id = id.map(|i| JobId::parse(&format!("j{i}")).expect("valid job id"));
                if let Some(id) = &id {
                    self.seen.insert(id.clone());
                }
                let request = token.map(|t| format!("r{t}")).unwrap_or_default();
                let spec = JobSpec {
                    job_type: "fake".into(),
                    config: if *variant { "{\"v\":1}".into() } else { "{}".into() },
                    selectors: vec![],
                    cost: 1,
                    request: request.clone(),
                    project: Default::default(),
                };
                self.creates.push((id.clone(), spec.clone()));
                self.send(Request::CreateJob { id: id.clone(), spec }, Pending::Create { id, request })
            }
            Op::Repeat { create } => {
                if self.creates.is_empty() {
                    return Ok(());
                }
                let (id, spec) = self.creates[usize::from(*create) % self.creates.len()].clone();
                let request = spec.request.clone();
                self.send(Request::CreateJob { id: id.clone(), spec }, Pending::Create { id, request })
            }
            Op::Get { job } => {
                let id = self.pick_job(*job);
                self.send(Request::GetJob { id: id.clone(), include_config: false }, Pending::Get(id))
            }
            Op::List => {
                let filter = JobFilter {
                    job_type: String::new(),
                    state: None,
                    after: None,
                    size: 100,
                    include_config: false,
                    readable: foreman::core::auth::Readable::All,
                };
                self.send(Request::ListJobs(filter), Pending::List)
            }
            Op::Cancel { job } => {
                let id = self.pick_job(*job);
                self.send(Request::CancelJob { id: id.clone() }, Pending::Cancel(id))
            }
            Op::Delete { job } => {
                let id = self.pick_job(*job);
                let wall = WallTime(1_000_000 + self.now.as_millis());
                self.send(Request::DeleteJob { id: id.clone(), wall }, Pending::Delete(id))
            }
            Op::JobMasterBeat { job } => {
                let id = self.pick_job(*job);
                match self.newest_master(&id, |jm| jm.alive) {
                    Some(i) => self.job_master_send(i, None),
                    None => Ok(()),
                }
            }
            Op::JobMasterReport { job, status } => {
                let id = self.pick_job(*job);
                let status = match status {
                    0 => WorkerStatus::Finished,
                    1 => WorkerStatus::Failed { message: "boom".into(), retryable: false },
                    // Its logic panicked: started again after the job's backoff.
                    3 => WorkerStatus::Failed { message: "job master panicked: boom".into(), retryable: true },
                    _ => WorkerStatus::Canceled,
                };
                match self.newest_master(&id, |jm| jm.alive) {
                    Some(i) => self.job_master_send(i, Some(status)),
                    None => Ok(()),
                }
            }
            Op::Refuse { job, fatal } => {
                let id = self.pick_job(*job);
                let term = self.epoch;
                let refusable = |jm: &JobMaster| !jm.heard && jm.term == term && jm.how_ended != Some("refused");
                let Some(i) = self.newest_master(&id, refusable) else {
                    return Ok(());
                };
                let jm = &mut self.masters[i];
                jm.alive = false;
                jm.how_ended = Some("refused");
                let (job, epoch) = (jm.job.clone(), jm.epoch);
                let fatal = fatal.then(|| "the configuration does not parse".to_owned());
                self.input(Input::DispatchRefused { job, epoch, fatal })
            }
            Op::SilenceJobMaster { job } => {
                let id = self.pick_job(*job);
                if let Some(i) = self.newest_master(&id, |jm| jm.alive) {
                    self.masters[i].silent = true;
                }
                Ok(())
            }
            Op::Failover { gap } => {
                self.note(format!("term {} ends", self.epoch));
                self.now = self.now + Duration::from_millis(*gap);
                self.failover()
            }
        }
    }
}

impl Harness {
    /// The end of a run: no more faults (every write is taken, every read answered, executors heartbeat), then a
    /// long quiet stretch. After it no job may be stuck: a job whose record names an incarnation has that
    /// incarnation running, and a job whose job master was heard from is no longer shown Created.
    fn quiet(&mut self) -> Check {
        self.outcomes.clear();
        self.read_fails.clear();
        for e in &mut self.executors {
            e.silent = false;
        }
        self.note("quiet".into());
        self.pump()?;
        for _ in 0..QUIET_SECONDS {
            self.op(&Op::Advance { ms: 1_000, beat: true, drop: 0 })?;
            self.pump()?;
        }
        self.refresh();
        for r in self.store.jobs.values().filter(|r| !r.state.is_terminal()) {
            let Some(executor) = r.executor else { continue };
            let running = self.masters.iter().find(|jm| jm.job == r.id && jm.epoch == r.epoch && jm.alive);
            match running {
                None => {
                    return property(
                        "no job is stuck",
                        self.now,
                        format!(
                            "after {QUIET_SECONDS} s of quiet job {} is {} naming incarnation {} on {executor}, which does not run",
                            r.id, r.state, r.epoch
                        ),
                    )
                }
                Some(jm) if jm.online && r.state == JobState::Created => {
                    return property(
                        "no job is stuck",
                        self.now,
                        format!("job {} is still Created though its job master {} was heard from", r.id, r.epoch),
                    )
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// How long the quiet stretch at the end of a run lasts: longer than any chain of timeouts (the registry's TTL
/// and suspect hold, a job master's TTL with its dispatch window, a recovery wait, the longest backoff, the cancel
/// grace) put end to end.
const QUIET_SECONDS: u32 = 40;

/// Runs one case; the first broken property, with the run's trace.
pub fn run(case: &Case) -> Result<(), String> {
    run_counting(case).0
}

/// [`run`], and how often each interesting path was taken.
fn run_counting(case: &Case) -> (Result<(), String>, BTreeMap<&'static str, u64>) {
    let mut h = Harness::new(case);
    let result = (|| {
        h.after()?;
        h.input(Input::Tick)?;
        for s in &case.steps {
            h.op(&s.op)?;
            if !s.hold {
                h.pump()?;
            }
        }
        h.quiet()
    })();
    for r in h.store.jobs.values().filter(|r| r.state.is_terminal()) {
        let what = match r.state {
            JobState::Finished => "job ended finished",
            JobState::Canceled => "job ended canceled",
            _ => "job ended failed",
        };
        *h.seen_paths.entry(what).or_default() += 1;
    }
    if std::env::var_os("MANAGER_TRACE").is_some() {
        println!("{}", h.trace.join("\n"));
    }
    (result.map_err(|e| format!("{e}\ntrace:\n{}", h.trace.join("\n"))), h.seen_paths)
}

fn check_case(case: &Case) -> Result<(), TestCaseError> {
    run(case).map_err(TestCaseError::fail)
}

fn case(faulty: bool) -> impl Strategy<Value = Case> {
    let outcomes = if faulty { prop::collection::vec(outcome(), 0..40).boxed() } else { Just(vec![]).boxed() };
    let read_fails =
        if faulty { prop::collection::vec(prop::bool::weighted(0.05), 0..20).boxed() } else { Just(vec![]).boxed() };
    (any::<u64>(), prop::collection::vec(step(), 1..100), outcomes, read_fails)
        .prop_map(|(seed, steps, outcomes, read_fails)| Case { seed, steps, outcomes, read_fails })
}

proptest! {
    #![proptest_config(config())]

    /// The safety rules and the manager's agreement with the metastore, under every write outcome, held writes,
    /// failed reads and failovers.
    #[test]
    fn manager_keeps_the_rules_under_every_write_outcome(case in case(true)) {
        check_case(&case)?;
    }

    /// The same when every write is taken: longer lives for jobs and job masters (finishing, canceling,
    /// restarting after silence), with failovers.
    #[test]
    fn manager_keeps_the_rules_when_writes_are_taken(case in case(false)) {
        check_case(&case)?;
    }
}

/// Not a property: how often the generated runs reach each interesting path (run it to tune the generators:
/// `cargo test --test proptests manager_runs_reach -- --ignored --nocapture`).
#[test]
#[ignore]
fn manager_runs_reach_the_interesting_paths() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for faulty in [true, false] {
        let mut total: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut runs_with: BTreeMap<&'static str, u64> = BTreeMap::new();
        let n = 500;
        for _ in 0..n {
            let c = case(faulty).new_tree(&mut runner).expect("a case").current();
            let (result, seen) = run_counting(&c);
            assert!(result.is_ok(), "{}", result.unwrap_err());
            for (k, v) in seen {
                *total.entry(k).or_default() += v;
                *runs_with.entry(k).or_default() += 1;
            }
        }
        println!("{n} runs, faulty writes {faulty}: path, times, runs that took it");
        for (k, v) in &total {
            println!("  {k:40} {v:7} {:5}", runs_with[k]);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Regressions: short runs that once broke the leader's glue. Each names the fix it guards and how it failed with
// that fix reverted.
// ---------------------------------------------------------------------------------------------------------------

fn replay(steps: Vec<(Op, bool)>, outcomes: Vec<Outcome>) {
    let steps = steps.into_iter().map(|(op, hold)| Step { op, hold }).collect();
    if let Err(e) = run(&Case { seed: 1, steps, outcomes, read_fails: vec![] }) {
        panic!("{e}");
    }
}

/// An executor, a job, and the pass that places its job master (dispatched at once).
fn placed() -> Vec<(Op, bool)> {
    vec![
        (Op::Register { exec: 0 }, false),
        (Op::Create { id: Some(0), token: None, variant: false }, false),
        (Op::Advance { ms: 0, beat: false, drop: 0 }, false),
    ]
}

/// `placed`, then the job master's first heartbeat (the job becomes Running).
fn running() -> Vec<(Op, bool)> {
    let mut s = placed();
    s.push((Op::JobMasterBeat { job: 0 }, false));
    s
}

use Outcome::{NotApplied, UnknownApplied, UnknownNotApplied, Written};

/// Guards `Workers::on_dispatch_sent` (called when a pass's write is taken): a job master's never-heard TTL runs
/// from when its dispatch is sent, not from when it was placed. Found by the properties here. Without it:
/// "safety rule 3 (at most one live incarnation) at 7.000s: job j0 dispatched at epoch 2 while its job master 1
/// may still run (last acknowledged at 5.000s)".
#[test]
fn regression_a_dispatch_sent_late_is_timed_from_its_sending() {
    let mut s = placed();
    s.pop();
    s.extend([
        (Op::Advance { ms: 0, beat: false, drop: 0 }, true),
        (Op::Advance { ms: 2000, beat: true, drop: 0 }, true),
        (Op::Advance { ms: 2000, beat: true, drop: 0 }, true),
        (Op::Advance { ms: 1000, beat: true, drop: 0 }, true),
        (Op::Io, false),
        (Op::SilenceJobMaster { job: 0 }, false),
        (Op::Advance { ms: 1000, beat: true, drop: 0 }, false),
        (Op::Advance { ms: 1000, beat: true, drop: 0 }, false),
        (Op::Advance { ms: 500, beat: true, drop: 0 }, false),
        (Op::Advance { ms: 500, beat: true, drop: 0 }, false),
    ]);
    replay(s, vec![]);
}

/// Guards the settling of a deletion (`Manager::write` re-reads the job of a `DeleteJob` record whose outcome is
/// not known). Found by the properties here. Without it: "property "memory equals the store once idle" at
/// 0.000s: the manager knows jobs {JobId("j0")}, the store holds {}".
#[test]
fn regression_a_deletion_whose_write_is_unknown_is_settled() {
    let s = vec![
        (Op::Create { id: Some(0), token: None, variant: false }, false),
        (Op::Cancel { job: 0 }, false),
        (Op::Delete { job: 0 }, false),
    ];
    replay(s, vec![Written, Written, UnknownApplied]);
}

/// Guards `Jobs::reload` keeping only a live phase: a cancel whose write failed left the job Created in phase
/// Done, never to start. Found by the properties here. Without it: "job manager of term 1: an invariant broke:
/// jobs: j0 is Created in phase Done".
#[test]
fn regression_a_failed_terminal_write_leaves_the_job_to_start() {
    let s = vec![(Op::Create { id: Some(0), token: None, variant: false }, false), (Op::Cancel { job: 0 }, false)];
    replay(s, vec![Written, UnknownNotApplied]);
}

/// Guards `Manager::reload` tracking again an incarnation the metastore still names (the leader-glue fix of
/// `sim/regressions.rs` seeds 50459 and 51301: a refused dispatch whose write timed out left the job Created for
/// ever; that fix, once made for refused dispatches only, now lives in the reload). Without it: "property "no job is stuck" at 40.000s: after 40 s of quiet job j0 is Created naming
/// incarnation 1 on e1, which does not run".
#[test]
fn regression_a_refused_dispatch_whose_write_failed_is_tracked_again() {
    let mut s = placed();
    s.push((Op::Refuse { job: 0, fatal: false }, false));
    replay(s, vec![Written, Written, Written, NotApplied]);
}

/// Guards the same re-tracking for a deregistration whose write failed (the job kept naming the incarnation on
/// the executor that left). Found by the properties here. Without it: "property "no job is stuck" at 40.000s:
/// after 40 s of quiet job j0 is Created naming incarnation 1 on e1, which does not run".
#[test]
fn regression_a_deregistration_whose_write_failed_tracks_the_named_incarnation_again() {
    let mut s = placed();
    s.push((Op::Deregister { exec: 0 }, false));
    replay(s, vec![Written, Written, Written, UnknownNotApplied]);
}

/// Guards the re-application of what a job missed (`Manager::job_master`, the fix of `sim/regressions.rs` seed
/// 1795937081014915470: an accepted message of the current incarnation re-applies the transition whose write
/// failed) and `Jobs::on_online` owing Running to a job still Created (found by the properties here: the first
/// fix alone did not re-persist Running, the reload having kept the Online phase). Without either: "property
/// "no job is stuck" at 40.000s: job j0 is still Created though its job master 1 was heard from".
#[test]
fn regression_a_running_job_master_makes_its_job_running_after_a_failed_write() {
    replay(running(), vec![Written, Written, Written, NotApplied]);
}

/// Guards `Workers::forget_exit` in `Manager::failed` (the fix of `sim/regressions.rs` seed 1795938750227562002:
/// an exit whose write failed is forgotten, so a job master that then fenced itself is lost after its TTL).
/// Without it: "property "no job is stuck" at 40.000s: after 40 s of quiet job j0 is Running naming incarnation
/// 1 on e1, which does not run".
#[test]
fn regression_an_exit_whose_write_failed_is_forgotten() {
    let mut s = running();
    s.push((Op::JobMasterReport { job: 0, status: 0 }, false));
    s.push((Op::SilenceJobMaster { job: 0 }, false));
    replay(s, vec![Written, Written, Written, Written, NotApplied]);
}

/// Guards job reads waiting for the write under way (the fix of `sim/regressions.rs` seed 1795938750227574478:
/// GetJob answered an exit decided in memory whose write then failed). Without it: "property "job reads answer
/// what is durable" at 0.000s: a get answered job j0 Finished while the store holds Some(Running)".
#[test]
fn regression_job_reads_wait_for_the_write_under_way() {
    let mut s = running();
    s.push((Op::JobMasterReport { job: 0, status: 0 }, true));
    s.push((Op::Get { job: 0 }, true));
    replay(s, vec![Written, Written, Written, Written, NotApplied]);
}

/// Guards the tombstone read of a create naming its job (the fix of `sim/regressions.rs` seeds 60912 and 60280:
/// a delayed repeat of a deleted job's create brought it back). Without it: "safety rule 4 (no job lost) at
/// 0.000s: deleted job j0 comes back: a repeat of its create (r0) is written".
#[test]
fn regression_a_deleted_jobs_create_token_refuses_a_delayed_repeat() {
    let s = vec![
        (Op::Create { id: Some(0), token: Some(0), variant: false }, false),
        (Op::Cancel { job: 0 }, false),
        (Op::Delete { job: 0 }, false),
        (Op::Repeat { create: 0 }, false),
    ];
    replay(s, vec![]);
}

/// Guards the repeat lookup of a create's token (the other half of the fix of seed 60912: a repeat of an applied
/// create gets the job it created). Without it: "safety rule 4 (no job lost) at 0.000s: job job-… created for
/// request r0, which already created a stored job".
#[test]
fn regression_a_repeated_create_gets_the_job_it_created() {
    let s = vec![(Op::Create { id: None, token: Some(0), variant: false }, false), (Op::Repeat { create: 0 }, false)];
    replay(s, vec![UnknownApplied]);
}

/// Guards offline verdicts being reported once durable (the fix of `sim/regressions.rs` seed
/// 1795938750227560956). Without it: "property "offline verdicts are reported once durable" at 5.000s: executor
/// e1 reported offline while the store still registers it".
#[test]
fn regression_offline_verdicts_are_reported_once_durable() {
    let s = vec![
        (Op::Register { exec: 0 }, false),
        (Op::SilenceExecutor { exec: 0 }, false),
        (Op::Advance { ms: 5000, beat: true, drop: 0 }, false),
    ];
    replay(s, vec![Written, NotApplied]);
}
