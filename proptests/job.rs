//! The job state machine ([`Jobs`]) against a per-job model of design.md §5 rules 4 and 5 and §6.
//!
//! The model keeps, per job, the state users see, the phase of its job master (waiting, starting, online,
//! recovering, done), the current incarnation's epoch and executor, restarts, consecutive failures, the
//! healthy-since and not-before times of its backoff, the cancel bookkeeping, and whether a cancel was ever
//! acknowledged; plus the epoch counter and every epoch handed out. Operations: create, cancel, delete, start
//! (of a startable job, or of one that must be refused), the framework's verdicts (online, lost with or without
//! a fatal error, exit with each outcome) tagged with the current epoch or a stale, future or null one, ticks,
//! time advances, and leader changes (`Jobs::restore` from the jobs' records).
//!
//! After every step the properties assert `Jobs::check`, agreement with the model on everything observable, that
//! every persisted record is a legal change (`JobTransitions` is fed every creation, persisted write and delete,
//! and every started incarnation), that a job whose cancel was acknowledged never starts again, that a verdict
//! about any incarnation but the current one is `Stale` and changes nothing, that only terminal jobs are deleted,
//! and that epochs handed out strictly increase and stay below `next_epoch`. The second property restores from
//! the last *persisted* record of each job (what a new leader really reads) and also asserts that everything
//! durable in memory was returned for persisting.

use std::collections::BTreeMap;
use std::time::Duration;

use foreman::core::backoff::BackoffPolicy;
use foreman::core::ids::{Epoch, ExecutorId, JobId};
use foreman::core::invariants::JobTransitions;
use foreman::core::job::{
    ExitOutcome, FailureReason, JobError, JobPolicy, JobRecord, JobSpec, JobState, Jobs, Phase, Step, Verdict,
};
use foreman::core::rng::SplitMix64;
use foreman::core::time::Time;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::gen::{advance, config, job, millis, rule};

const JOBS: u8 = 4;

#[derive(Clone, Debug)]
enum EpochPick {
    /// The job's live incarnation (or its last one, if none is live).
    Current,
    /// Any epoch handed out so far, to any job.
    Old(prop::sample::Index),
    /// Above every epoch handed out.
    Future(u64),
    None,
}

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Create {
        job: u8,
    },
    Cancel {
        job: u8,
    },
    Delete {
        job: u8,
    },
    Start {
        job: u8,
        executor: u64,
    },
    Online {
        job: u8,
        epoch: EpochPick,
    },
    Lost {
        job: u8,
        epoch: EpochPick,
        fatal: bool,
    },
    Exit {
        job: u8,
        epoch: EpochPick,
        outcome: u8,
    },
    Tick,
    /// A leader change `gap` ms later; the persisted epoch counter may lag behind the restored records.
    Failover {
        gap: u64,
        lag: prop::sample::Index,
    },
}

fn epoch_pick() -> impl Strategy<Value = EpochPick> {
    prop_oneof![
        6 => Just(EpochPick::Current),
        2 => any::<prop::sample::Index>().prop_map(EpochPick::Old),
        1 => (0u64..3).prop_map(EpochPick::Future),
        1 => Just(EpochPick::None),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let j = 0..JOBS;
    prop_oneof![
        4 => advance(1_500, 12_000).prop_map(Op::Advance),
        3 => j.clone().prop_map(|job| Op::Create { job }),
        2 => j.clone().prop_map(|job| Op::Cancel { job }),
        1 => j.clone().prop_map(|job| Op::Delete { job }),
        5 => (j.clone(), 1u64..4).prop_map(|(job, executor)| Op::Start { job, executor }),
        4 => (j.clone(), epoch_pick()).prop_map(|(job, epoch)| Op::Online { job, epoch }),
        3 => (j.clone(), epoch_pick(), prop::bool::weighted(0.15)).prop_map(|(job, epoch, fatal)| Op::Lost {
            job,
            epoch,
            fatal
        }),
        2 => (j, epoch_pick(), 0u8..3).prop_map(|(job, epoch, outcome)| Op::Exit { job, epoch, outcome }),
        3 => Just(Op::Tick),
        1 => (advance(2_000, 8_000), any::<prop::sample::Index>()).prop_map(|(gap, lag)| Op::Failover { gap, lag }),
    ]
}

fn policy() -> impl Strategy<Value = JobPolicy> {
    (millis(100, 2_000), prop_oneof![Just(0.0), 0.0f64..0.5], millis(1_000, 10_000), 1u32..5, millis(500, 5_000))
        .prop_map(|(initial, jitter, reset_after, max_tries, grace)| JobPolicy {
            backoff: BackoffPolicy {
                initial: Duration::from_millis(initial),
                multiplier: 1.5,
                max: Duration::from_millis(5_000),
                jitter,
                reset_after: Duration::from_millis(reset_after),
                max_tries,
            },
            cancel_grace: Duration::from_millis(grace),
            job_master_share: 0.5,
        })
}

#[derive(Clone, Debug)]
struct MJob {
    state: JobState,
    phase: Phase,
    epoch: Epoch,
    executor: Option<ExecutorId>,
    restarts: u32,
    failures: u32,
    healthy_since: Option<Time>,
    not_before: Option<Time>,
    /// The pending delay as of the last persisted write (what a new leader waits again).
    persisted_delay: Duration,
    /// The failure count as of the last persisted write.
    persisted_failures: u32,
    canceling_since: Option<Time>,
    revoked: bool,
    /// A cancel of this job returned `Canceling` or `Canceled`.
    cancel_acked: bool,
}

impl MJob {
    fn new() -> MJob {
        MJob {
            state: JobState::Created,
            phase: Phase::Waiting,
            epoch: Epoch::NONE,
            executor: None,
            restarts: 0,
            failures: 0,
            healthy_since: None,
            not_before: None,
            persisted_delay: Duration::ZERO,
            persisted_failures: 0,
            canceling_since: None,
            revoked: false,
            cancel_acked: false,
        }
    }

    fn startable(&self, now: Time) -> bool {
        self.phase == Phase::Waiting
            && !self.state.is_terminal()
            && self.state != JobState::Canceling
            && self.not_before.is_none_or(|t| now >= t)
    }

    /// The backoff rule: a job healthy for `reset_after` starts over.
    /// Returns whether the reset forgot anything (which must then be persisted).
    fn maybe_reset(&mut self, now: Time, p: &BackoffPolicy) -> bool {
        if self.healthy_since.is_some_and(|s| now - s >= p.reset_after) {
            let forgot = self.failures != 0 || self.not_before.is_some();
            self.failures = 0;
            self.not_before = None;
            return forgot;
        }
        false
    }

    fn done(&mut self, state: JobState) {
        self.state = state;
        self.phase = Phase::Done;
        self.executor = None;
        self.revoked = false;
    }
}

#[derive(Debug)]
struct Model {
    jobs: BTreeMap<JobId, MJob>,
    next_epoch: Epoch,
    /// Every epoch handed out, in order, with its job.
    handed: Vec<(JobId, Epoch)>,
    /// The metastore: the last persisted record of every job.
    store: BTreeMap<JobId, JobRecord>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Restore {
    /// From `record(now)` of every job in memory.
    FromMemory,
    /// From the last persisted record of every job.
    FromStore,
}

/// How a run drives the jobs.
#[derive(Clone, Copy)]
struct Knobs {
    restore: Restore,
    /// Leave out `Finished` exits of jobs still `Created` (a bug once: they persisted Created → Finished, then illegal; now legal, see `JobState::can_become`).
    avoid_finish_before_online: bool,
    /// With [`Restore::FromStore`], also require the backoff's failure count and base in memory to equal the
    /// persisted ones (a bug once: a reset by `tick` was never handed out to persist).
    durable_backoff: bool,
}

fn spec() -> JobSpec {
    JobSpec {
        job_type: "fake".into(),
        config: "{}".into(),
        selectors: vec![],
        cost: 1,
        request: String::new(),
        project: Default::default(),
    }
}

fn fail(step: usize, what: String) -> TestCaseError {
    TestCaseError::fail(format!("step {step}: {what}"))
}

struct World {
    jobs: Jobs,
    m: Model,
    rules: JobTransitions,
    now: Time,
    step: usize,
}

impl World {
    /// Feeds a persisted record to the transition checker and the store; it must be the job as it now is.
    fn persist(&mut self, id: &JobId, step: &Step) -> Result<(), TestCaseError> {
        let Some(record) = &step.persist else { return Ok(()) };
        prop_assert_eq!(&record.id, id);
        rule(self.rules.on_write(self.now, id, record.state))?;
        let current = self.jobs.get(id).map(|j| j.record(self.now));
        prop_assert_eq!(Some(record), current.as_ref(), "step {}: persisted record is not the job's", self.step);
        let mj = self.m.jobs.get_mut(id).expect("persisted a modelled job");
        mj.persisted_delay = mj.not_before.map_or(Duration::ZERO, |t| t - self.now);
        mj.persisted_failures = mj.failures;
        self.m.store.insert(id.clone(), record.clone());
        Ok(())
    }

    fn pick(&self, id: &JobId, pick: &EpochPick) -> Epoch {
        match pick {
            EpochPick::Current => self.m.jobs.get(id).map_or(Epoch(1), |j| j.phase.live_epoch().unwrap_or(j.epoch)),
            EpochPick::Old(i) if !self.m.handed.is_empty() => self.m.handed[i.index(self.m.handed.len())].1,
            EpochPick::Old(_) => Epoch(1),
            EpochPick::Future(k) => Epoch(self.m.next_epoch.0 + k),
            EpochPick::None => Epoch::NONE,
        }
    }

    /// The verdict is about the current incarnation iff the model says so; a stale one changes nothing.
    fn verdict(
        &self,
        id: &JobId,
        epoch: Epoch,
        v: &Verdict,
        before: Option<(JobRecord, Phase)>,
    ) -> Result<bool, TestCaseError> {
        let current = self.m.jobs.get(id).is_some_and(|j| j.phase.live_epoch() == Some(epoch));
        if matches!(v, Verdict::Stale) {
            let after = self.jobs.get(id).map(|j| (j.record(self.now), j.phase()));
            prop_assert_eq!(before, after, "step {}: a stale verdict changed {}", self.step, id);
        }
        Ok(current)
    }

    fn apply(&mut self, op: &Op, policy: &JobPolicy, rng: &mut SplitMix64, knobs: Knobs) -> Result<(), TestCaseError> {
        let (step, now) = (self.step, self.now);
        match op {
            Op::Advance(d) => self.now = now + Duration::from_millis(*d),
            Op::Create { job: j } => {
                let id = job(*j);
                match self.jobs.create(id.clone(), spec()) {
                    Ok(record) => {
                        prop_assert!(!self.m.jobs.contains_key(&id), "step {}: created {} twice", step, id);
                        prop_assert_eq!(record.state, JobState::Created);
                        rule(self.rules.on_create(now, &id))?;
                        self.m.jobs.insert(id.clone(), MJob::new());
                        self.m.store.insert(id, record);
                    }
                    Err(e) => {
                        prop_assert!(self.m.jobs.contains_key(&id), "step {}: {}", step, e);
                        prop_assert_eq!(e, JobError::AlreadyExists { id });
                    }
                }
            }
            Op::Cancel { job: j } => {
                let id = job(*j);
                let got = self.jobs.cancel(now, &id);
                let Some(mj) = self.m.jobs.get_mut(&id) else {
                    prop_assert_eq!(got, Err(JobError::NotFound { id }), "step {}", step);
                    return Ok(());
                };
                let Ok((state, s)) = got else { return Err(fail(step, format!("cancel of {id}: {got:?}"))) };
                if mj.state.is_terminal() || mj.state == JobState::Canceling {
                    prop_assert_eq!(&s, &Step::default(), "step {}: cancel of a {} job", step, mj.state);
                } else if let Some(e) = mj.phase.live_epoch() {
                    mj.state = JobState::Canceling;
                    mj.canceling_since = Some(now);
                    prop_assert_eq!(s.cancel, Some(e), "step {}: the live incarnation is told to stop", step);
                } else {
                    mj.done(JobState::Canceled);
                    prop_assert_eq!(s.cancel, None);
                }
                prop_assert_eq!(state, mj.state, "step {}", step);
                if matches!(state, JobState::Canceling | JobState::Canceled) {
                    mj.cancel_acked = true;
                }
                self.persist(&id, &s)?;
            }
            Op::Delete { job: j } => {
                let id = job(*j);
                let got = self.jobs.delete(&id);
                match self.m.jobs.get(&id) {
                    None => prop_assert_eq!(got, Err(JobError::NotFound { id }), "step {}", step),
                    Some(mj) if !mj.state.is_terminal() => {
                        let state = mj.state;
                        prop_assert_eq!(got, Err(JobError::NotTerminated { id, state }), "step {}", step)
                    }
                    Some(mj) => {
                        let Ok(Some(record)) = got else {
                            return Err(fail(step, format!("delete of {id}: {got:?}")));
                        };
                        prop_assert_eq!(record.state, mj.state);
                        rule(self.rules.on_delete(now, &id))?;
                        self.m.jobs.remove(&id);
                        self.m.store.remove(&id);
                        prop_assert!(self.jobs.get(&id).is_none(), "step {}: deleted {} is still there", step, id);
                    }
                }
            }
            Op::Start { job: j, executor } => {
                let id = job(*j);
                let executor = ExecutorId(*executor);
                let Some(mj) = self.m.jobs.get_mut(&id) else {
                    let got = self.jobs.start(now, &id, executor);
                    prop_assert_eq!(got, Err(JobError::NotFound { id }), "step {}", step);
                    return Ok(());
                };
                if mj.phase == Phase::Waiting && !mj.startable(now) && !mj.state.is_terminal() {
                    // Held by its backoff: the caller only starts what `startable` lists (checked below).
                    return Ok(());
                }
                let got = self.jobs.start(now, &id, executor);
                if !mj.startable(now) {
                    let state = mj.state;
                    prop_assert_eq!(got, Err(JobError::NotStartable { id, state }), "step {}", step);
                    return Ok(());
                }
                let Ok((epoch, s)) = got else { return Err(fail(step, format!("start of {id}: {got:?}"))) };
                prop_assert!(!mj.cancel_acked, "step {}: {} started after its cancel was acknowledged", step, id);
                prop_assert_eq!(epoch, self.m.next_epoch, "step {}", step);
                if let Some(&(_, last)) = self.m.handed.last() {
                    prop_assert!(epoch > last, "step {}: epoch {} handed out after {}", step, epoch, last);
                }
                rule(self.rules.on_incarnation(now, &id, epoch))?;
                self.m.next_epoch = epoch.next();
                self.m.handed.push((id.clone(), epoch));
                mj.epoch = epoch;
                mj.executor = Some(executor);
                mj.phase = Phase::Starting { epoch, executor };
                self.persist(&id, &s)?;
            }
            Op::Online { job: j, epoch } => {
                let id = job(*j);
                let epoch = self.pick(&id, epoch);
                let before = self.jobs.get(&id).map(|j| (j.record(now), j.phase()));
                let v = self.jobs.on_online(now, &id, epoch);
                let current = self.verdict(&id, epoch, &v, before)?;
                let Some(mj) = self.m.jobs.get_mut(&id).filter(|mj| current && !mj.revoked) else {
                    prop_assert_eq!(v, Verdict::Stale, "step {}: online of {} epoch {}", step, id, epoch);
                    return Ok(());
                };
                let Verdict::Applied(s) = v else { return Err(fail(step, format!("online of {id} {epoch}: stale"))) };
                let mut want = Step::default();
                if !matches!(mj.phase, Phase::Online { .. }) {
                    mj.phase = Phase::Online { epoch };
                    mj.healthy_since.get_or_insert(now);
                    match mj.state {
                        JobState::Created => mj.state = JobState::Running,
                        JobState::Canceling => want.cancel = Some(epoch),
                        _ => {}
                    }
                }
                prop_assert_eq!(s.cancel, want.cancel, "step {}", step);
                prop_assert_eq!(s.revoke, None);
                self.persist(&id, &s)?;
            }
            Op::Lost { job: j, epoch, fatal } => {
                let id = job(*j);
                let epoch = self.pick(&id, epoch);
                let before = self.jobs.get(&id).map(|j| (j.record(now), j.phase()));
                let message = fatal.then(|| "refused".to_owned());
                let v = self.jobs.on_lost(now, &id, epoch, message, rng);
                let current = self.verdict(&id, epoch, &v, before)?;
                let Some(mj) = self.m.jobs.get_mut(&id).filter(|_| current) else {
                    prop_assert_eq!(v, Verdict::Stale, "step {}: loss of {} epoch {}", step, id, epoch);
                    return Ok(());
                };
                let Verdict::Applied(s) = v else { return Err(fail(step, format!("loss of {id} {epoch}: stale"))) };
                let failure = self.jobs.get(&id).and_then(|j| j.failure().cloned());
                if mj.state == JobState::Canceling {
                    mj.done(JobState::Canceled);
                } else if *fatal {
                    mj.done(JobState::Failed);
                    prop_assert_eq!(failure.map(|f| f.reason), Some(FailureReason::DispatchRefused));
                } else {
                    mj.maybe_reset(now, &policy.backoff);
                    mj.healthy_since = None;
                    mj.failures = (mj.failures + 1).min(policy.backoff.max_tries);
                    if mj.failures >= policy.backoff.max_tries {
                        mj.done(JobState::Failed);
                        mj.not_before = None;
                        prop_assert_eq!(failure.map(|f| f.reason), Some(FailureReason::BackoffExhausted));
                    } else {
                        mj.restarts += 1;
                        mj.phase = Phase::Waiting;
                        mj.executor = None;
                        mj.revoked = false;
                        // The delay itself is random (its bounds are the backoff property's business).
                        let nb = self.jobs.get(&id).and_then(|j| j.backoff().not_before());
                        prop_assert!(nb.is_some_and(|t| t > now), "step {}: restart of {} not delayed", step, id);
                        mj.not_before = nb;
                    }
                }
                self.persist(&id, &s)?;
            }
            Op::Exit { job: j, epoch, outcome } => {
                let id = job(*j);
                let epoch = self.pick(&id, epoch);
                let (outcome, state) = match outcome {
                    0 => (ExitOutcome::Finished, JobState::Finished),
                    1 => (ExitOutcome::Canceled, JobState::Canceled),
                    _ => (ExitOutcome::Failed { message: "boom".into() }, JobState::Failed),
                };
                let created = self.m.jobs.get(&id).is_some_and(|j| j.state == JobState::Created);
                if knobs.avoid_finish_before_online && created && state == JobState::Finished {
                    return Ok(());
                }
                let before = self.jobs.get(&id).map(|j| (j.record(now), j.phase()));
                let v = self.jobs.on_exit(now, &id, epoch, outcome);
                let current = self.verdict(&id, epoch, &v, before)?;
                let Some(mj) = self.m.jobs.get_mut(&id).filter(|_| current) else {
                    prop_assert_eq!(v, Verdict::Stale, "step {}: exit of {} epoch {}", step, id, epoch);
                    return Ok(());
                };
                let Verdict::Applied(s) = v else { return Err(fail(step, format!("exit of {id} {epoch}: stale"))) };
                mj.done(state);
                self.persist(&id, &s)?;
            }
            Op::Tick => {
                let got = self.jobs.tick(now);
                let mut want = vec![];
                let mut want_persist = vec![];
                for (id, mj) in self.m.jobs.iter_mut() {
                    if mj.maybe_reset(now, &policy.backoff) {
                        want_persist.push(id.clone());
                    }
                    if let (Some(since), Some(e)) = (mj.canceling_since, mj.phase.live_epoch()) {
                        if mj.state == JobState::Canceling && !mj.revoked && now >= since + policy.cancel_grace {
                            mj.revoked = true;
                            want.push((id.clone(), e));
                        }
                    }
                }
                prop_assert_eq!(&got.revoke, &want, "step {}: revocations", step);
                let persisted: Vec<JobId> = got.persist.iter().map(|r| r.id.clone()).collect();
                prop_assert_eq!(persisted, want_persist, "step {}: backoff resets to persist", step);
                for record in got.persist {
                    let id = record.id.clone();
                    self.persist(&id, &Step { persist: Some(record), ..Step::default() })?;
                }
            }
            Op::Failover { gap, lag } => {
                let records: Vec<JobRecord> = match knobs.restore {
                    Restore::FromMemory => self.jobs.iter().map(|j| j.record(now)).collect(),
                    Restore::FromStore => self.m.store.values().cloned().collect(),
                };
                // The persisted counter may lag behind the restored records (restore raises it above them), never
                // behind an epoch no record carries any more.
                let top = records.iter().map(|r| r.epoch).max().unwrap_or(Epoch::NONE);
                let lo = if top.next() >= self.m.next_epoch { 1 } else { self.m.next_epoch.0 };
                let persisted = lo + lag.index((self.m.next_epoch.0 - lo + 1) as usize) as u64;
                let at = now + Duration::from_millis(*gap);
                self.now = at;
                self.jobs = Jobs::restore(policy.clone(), at, Epoch(persisted), records);
                for mj in self.m.jobs.values_mut() {
                    let pending = match knobs.restore {
                        Restore::FromMemory => mj.not_before.map_or(Duration::ZERO, |t| t - now),
                        Restore::FromStore => {
                            mj.failures = mj.persisted_failures;
                            mj.persisted_delay
                        }
                    };
                    mj.not_before = (!pending.is_zero()).then(|| at + pending);
                    mj.healthy_since = None;
                    mj.revoked = false;
                    mj.canceling_since = (mj.state == JobState::Canceling).then_some(at);
                    mj.phase = match (mj.state.is_terminal(), mj.executor) {
                        (true, _) => Phase::Done,
                        (false, None) => Phase::Waiting,
                        (false, Some(_)) => Phase::Recovering { epoch: mj.epoch },
                    };
                }
            }
        }
        Ok(())
    }

    /// Everything observable agrees with the model.
    fn agree(&self, knobs: Knobs) -> Result<(), TestCaseError> {
        let (step, now) = (self.step, self.now);
        rule(self.jobs.check())?;
        prop_assert_eq!(self.jobs.next_epoch(), self.m.next_epoch, "step {}", step);
        if let Some(&(_, last)) = self.m.handed.last() {
            prop_assert!(self.jobs.next_epoch() > last, "step {}: next epoch not above {}", step, last);
        }
        prop_assert_eq!(self.jobs.len(), self.m.jobs.len(), "step {}", step);
        for (id, mj) in &self.m.jobs {
            let Some(j) = self.jobs.get(id) else { return Err(fail(step, format!("{id} is missing"))) };
            prop_assert_eq!(j.state(), mj.state, "step {}: {}", step, id);
            prop_assert_eq!(self.rules.state(id), Some(mj.state), "step {}: persisted state of {}", step, id);
            prop_assert_eq!(j.phase(), mj.phase, "step {}: {}", step, id);
            prop_assert_eq!(j.epoch(), mj.epoch, "step {}: {}", step, id);
            prop_assert_eq!(j.executor(), mj.executor, "step {}: {}", step, id);
            prop_assert_eq!(j.restarts(), mj.restarts, "step {}: {}", step, id);
            prop_assert_eq!(j.backoff().failures(), mj.failures, "step {}: {}", step, id);
            prop_assert_eq!(j.backoff().not_before(), mj.not_before, "step {}: {}", step, id);
            if let Some(e) = mj.phase.live_epoch() {
                prop_assert_eq!(self.jobs.wants_cancel(id, e), mj.state == JobState::Canceling, "step {}", step);
            }
            if knobs.restore == Restore::FromStore {
                // Every durable change was handed out to persist: memory and metastore agree.
                let (mem, stored) = (j.record(now), &self.m.store[id]);
                let durable = |r: &JobRecord| (r.state, r.epoch, r.executor, r.restarts, r.failure.clone());
                prop_assert_eq!(durable(&mem), durable(stored), "step {}: {} changed without a write", step, id);
                if knobs.durable_backoff {
                    let backoff = |r: &JobRecord| (r.backoff.failures, r.backoff.base_ms);
                    prop_assert_eq!(backoff(&mem), backoff(stored), "step {}: {} backoff not persisted", step, id);
                }
            }
        }
        let startable: Vec<JobId> =
            self.m.jobs.iter().filter(|(_, j)| j.startable(now)).map(|(id, _)| id.clone()).collect();
        prop_assert_eq!(self.jobs.startable(now), startable, "step {}", step);
        let recovering: Vec<(JobId, Epoch)> = self
            .m
            .jobs
            .iter()
            .filter_map(|(id, j)| match j.phase {
                Phase::Recovering { epoch } => Some((id.clone(), epoch)),
                _ => None,
            })
            .collect();
        let got: Vec<(JobId, Epoch)> = self.jobs.recovering().map(|(id, e)| (id.clone(), e)).collect();
        prop_assert_eq!(got, recovering, "step {}", step);
        Ok(())
    }
}

fn run(policy: &JobPolicy, seed: u64, ops: &[Op], knobs: Knobs) -> Result<(), TestCaseError> {
    let mut w = World {
        jobs: Jobs::new(policy.clone()),
        m: Model { jobs: BTreeMap::new(), next_epoch: Epoch(1), handed: vec![], store: BTreeMap::new() },
        rules: JobTransitions::default(),
        now: Time::ZERO,
        step: 0,
    };
    let mut rng = SplitMix64::new(seed);
    for (step, op) in ops.iter().enumerate() {
        w.step = step;
        w.apply(op, policy, &mut rng, knobs)?;
        w.agree(knobs)?;
    }
    Ok(())
}

/// The strictest knobs: every property runs with them unless it says otherwise.
const GREEN: Knobs = Knobs { restore: Restore::FromMemory, avoid_finish_before_online: false, durable_backoff: true };

proptest! {
    #![proptest_config(config())]

    /// Legal transitions, cancel intent, fencing by epoch, deletion and epoch allocation, across leader changes
    /// restored from the jobs in memory.
    #[test]
    fn jobs_follow_the_model(
        policy in policy(),
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(&policy, seed, &ops, GREEN)?;
    }

    /// The same, with leader changes restored from what was persisted: every change of state, epoch, executor,
    /// restarts and failure was handed out to persist.
    #[test]
    fn jobs_survive_leader_changes_from_the_metastore(
        policy in policy(),
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(&policy, seed, &ops, Knobs { restore: Restore::FromStore, ..GREEN })?;
    }

    /// A backoff reset after a healthy period survives a leader change (design.md §6: backoff state is
    /// persisted).
    #[test]
    fn jobs_persist_backoff_resets(
        policy in policy(),
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(&policy, seed, &ops, Knobs { restore: Restore::FromStore, durable_backoff: true, ..GREEN })?;
    }

    /// A job master that finishes before its first heartbeat was accepted (its job still `Created`) must not
    /// make the job manager persist an illegal transition.
    #[test]
    fn jobs_exit_before_online_is_legal(
        policy in policy(),
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(&policy, seed, &ops, Knobs { avoid_finish_before_online: false, ..GREEN })?;
    }
}
