//! The rules of design.md as checkers over observations, and the typed verdict every checker gives.
//!
//! Each checker consumes what happened, in order, and says when a rule broke: a [`Violation`] naming its class
//! (safety, liveness), the rule, the instant and the ids involved, with a sentence for people. Nobody parses that
//! sentence back: the swarm counts failures by [`Violation::class`], the planted-bug runs match on
//! [`Violation::rule`]. The property tests (`proptests/`) feed these checkers after every step of the core's state
//! machines. Rule 3's [`LiveIncarnations`], rule 1's [`one_acting_leader`] and rule 2's [`FencedEpochs`] also
//! judge whole runs: the simulator's recorder (every node's events on one simulated clock, so "at the same
//! instant" is exact) and the process-level chaos test (the executors' logs on one machine's wall clock). Checks
//! tied to the simulator's own events (placement by its events, registry, cancels, the job API's history,
//! capacity accounting, the liveness bounds) live beside it in `sim/checks`, and return the same [`Violation`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use super::ids::{Epoch, ExecutorId, JobId, LeaderEpoch, TaskId};
use super::job::JobState;
use super::time::Time;

/// What kind of promise a violation broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Something that must never happen happened (design.md §5, and the safety checks of §6 and §8).
    Safety,
    /// Something that must happen did not, or not within its bound (design.md §6).
    Liveness,
    /// Neither: the run itself went wrong (a node's or the harness's panic), or its observations cannot be placed
    /// in one story (a recorder's or a log reader's error, not a broken rule).
    Crash,
}

impl Class {
    /// The class's name, as failures print it: `safety`, `liveness`, `crash`.
    pub fn name(self) -> &'static str {
        match self {
            Class::Safety => "safety",
            Class::Liveness => "liveness",
            Class::Crash => "crash",
        }
    }

    /// The class [`Class::name`] names.
    pub fn from_name(name: &str) -> Option<Class> {
        [Class::Safety, Class::Liveness, Class::Crash].into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A rule a run must keep: the safety rules of design.md §5 (numbered as there; some have more than one face),
/// the other safety checks, and the liveness bounds of §6 (named).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// 1: at most one master acts as leader at any instant; terms' epochs strictly increase; a master stops acting
    /// by its step-down deadline.
    OneActingLeader,
    /// 2: no receiver accepts a message from an older epoch than one it already accepted from that sender.
    FencedMessages,
    /// 2, seen in the data: a worker's acknowledged checkpoints never go back, nor skip within an incarnation.
    CheckpointsForward,
    /// 2, seen in the job store: what a worker put is never replaced by a write of a superseded incarnation of it.
    StoreForward,
    /// 2, seen in the worker records: a worker's record never names an older incarnation than it named before (a
    /// superseded job master's record is refused).
    RecordsForward,
    /// 3: at most one live incarnation of any job master or worker at any instant.
    OneLiveIncarnation,
    /// 4: every acknowledged job stays until deleted.
    NoJobLost,
    /// 5: legal job transitions only; terminal states absorb.
    LegalTransitions,
    /// 5: a job whose cancel was acknowledged never starts a new incarnation.
    CanceledNeverRestart,
    /// 6: placement only on online executors, within capacity.
    Placement,
    /// 6: placement satisfies the job's selectors.
    Selectors,
    /// 7: executor ids are never reused.
    RegistryIntegrity,
    /// §6: no executor is declared offline while its heartbeats were acknowledged within the TTL.
    NoFalseAlarms,
    /// §6 no mass eviction from the wrong side: a leader that loses most executors at once (more than the suspect
    /// fraction, and at least two) holds their evictions for the suspect hold before it declares them offline.
    NoMassEviction,
    /// §8 capacity accounting: no reservation outlives the reservation TTL.
    ReservationWindow,
    /// §8 capacity accounting: a reservation is gone once the executor's report that settles it was taken.
    ReservationSettled,
    /// A finished fake job's workers end exactly at their target.
    ExactCounters,
    /// §6 detection: an executor whose heartbeats stop is declared offline within TTL + check interval.
    DetectionBound,
    /// §6 failover: a new leader serves within its bound (after a kill, a resign, or the faults healing).
    FailoverBound,
    /// §6 rescheduling: lost or drained work runs again within its bound; a job waiting for a job master is started
    /// at the first pass at which its backoff allows it and an executor it may use has room.
    Reschedule,
    /// §6 backoff: a job master is never started again before the backoff in force allows it, the delay drawn for
    /// each loss is the policy's for that many failures in a row, failures are forgotten only after a healthy
    /// period, the job gives up (fails) exactly at the configured tries, and a new leader waits the whole persisted
    /// delay again from its takeover. Safety: a restart too early is something that must never happen (like a
    /// false alarm), not something late.
    BackoffBound,
    /// Every executor is online again (under its current id) within its bound once the faults heal.
    ExecutorsOnline,
    /// Every placeable job ends within its bound once the faults heal.
    JobEnds,
    /// A job no executor can take says why.
    UnplaceableSaysWhy,
    /// §6 wasted work: no job master or worker is started again unless a fault overlapped the life of the
    /// incarnation it replaces (a restart no fault explains is work a correct decision would not have wasted, even
    /// when safety catches the wrong decision downstream).
    WastedWork,
    /// §6 failover: healthy job masters (and their workers) keep running through a leader failover, re-adopted
    /// and not restarted: no incarnation that ran is started again when only masters were disturbed since.
    ReAdopted,
    /// §6 no false alarms, once healthy: after the faults healed and their consequences played out, nothing is
    /// declared offline, fenced or told it is stale, and no healthy leader steps down.
    QuietOnceHealthy,
    /// §8 capacity accounting, settled: once every job ended, the leader holds no slot and counts what runs.
    CapacitySettled,
    /// A worker's failure is handled as it was declared: a retryable error never fails its job and is retried at
    /// most its limit of restarts in a row before the job fails naming it; a terminal one is never retried and
    /// fails its job with its reason; a worker of a job that plans no failure never fails.
    FailuresAsDeclared,
    /// A task whose code panicked ends (its executor stops listing it as running), unless its node died first.
    PanicsEndTheirTask,
    /// A deleted job leaves nothing behind in the metastore: no record, job-master fence, worker record,
    /// checkpoint or job-store key.
    DeletedLeavesNothing,
    /// The observations cannot be placed in one story (a stop of an incarnation that never started there).
    ConsistentStory,
    /// A state machine's own invariant, checked after every step in debug and simulation builds (the job
    /// manager's: its registry, placement, jobs, job-master bookkeeping and the ones between them).
    MachineInvariant,
    /// A guard that design.md holds unreachable (a second line behind one that always acts first) was reached: the
    /// reasoning that made it a second line is wrong (the simulation's tripwires, [`super::planted::Plants::armed`]).
    UnreachableGuard,
    /// A job's status is never shown from a job-master incarnation older than one that answered live before it,
    /// nor from one newer than the newest started.
    StatusFromCurrent,
    /// A job's status, once the job ended, is its final one (every worker done for a finished job); it goes with
    /// the job when the job is deleted.
    StatusFinal,
    /// What the command of a finished exec worker printed is kept on its executor and read back whole through the
    /// masters (`JobLogs`), with how it ended.
    LogsKept,
    /// A deleted job's data on the executors (its commands' logs and scratch directories) is removed from every
    /// executor within its bound.
    JobDataCollected,
}

impl Rule {
    /// Which class the rule belongs to.
    pub fn class(self) -> Class {
        use Rule::*;
        match self {
            OneActingLeader | FencedMessages | CheckpointsForward | StoreForward | RecordsForward
            | OneLiveIncarnation | NoJobLost | LegalTransitions | CanceledNeverRestart | Placement | Selectors
            | RegistryIntegrity | NoFalseAlarms | NoMassEviction | ReservationWindow | ReservationSettled
            | ExactCounters | MachineInvariant | BackoffBound | FailuresAsDeclared | PanicsEndTheirTask
            | DeletedLeavesNothing | StatusFromCurrent | UnreachableGuard => Class::Safety,
            DetectionBound | FailoverBound | Reschedule | ExecutorsOnline | JobEnds | UnplaceableSaysWhy
            | QuietOnceHealthy | CapacitySettled | WastedWork | ReAdopted | StatusFinal | LogsKept
            | JobDataCollected => Class::Liveness,
            ConsistentStory => Class::Crash,
        }
    }

    /// The rule's number in design.md §5, for the safety rules listed there.
    pub fn number(self) -> Option<u8> {
        use Rule::*;
        Some(match self {
            OneActingLeader => 1,
            FencedMessages | CheckpointsForward | StoreForward | RecordsForward => 2,
            OneLiveIncarnation => 3,
            NoJobLost => 4,
            LegalTransitions | CanceledNeverRestart => 5,
            Placement | Selectors => 6,
            RegistryIntegrity => 7,
            _ => return None,
        })
    }

    /// What the rule says, in a few words.
    pub fn name(self) -> &'static str {
        use Rule::*;
        match self {
            OneActingLeader => "one acting leader",
            FencedMessages => "fenced messages",
            CheckpointsForward => "checkpoints never go back",
            StoreForward => "the job store never goes back to a superseded incarnation's write",
            RecordsForward => "a worker's record never goes back to an older incarnation",
            OneLiveIncarnation => "at most one live incarnation",
            NoJobLost => "no job lost",
            LegalTransitions => "legal transitions only",
            CanceledNeverRestart => "a canceled job never starts again",
            Placement => "placement",
            Selectors => "selectors",
            RegistryIntegrity => "registry integrity",
            NoFalseAlarms => "§6 no false alarms",
            NoMassEviction => "§6 no mass eviction from the wrong side",
            ReservationWindow => "capacity accounting (window)",
            ReservationSettled => "capacity accounting (settled)",
            ExactCounters => "exact counters",
            DetectionBound => "§6 detection bound",
            FailoverBound => "§6 failover bound",
            Reschedule => "§6 rescheduling bound",
            BackoffBound => "§6 backoff",
            ExecutorsOnline => "every executor online",
            JobEnds => "every job ends",
            UnplaceableSaysWhy => "an unplaceable job says why",
            WastedWork => "§6 wasted work (a restart no fault explains)",
            ReAdopted => "§6 failover (work re-adopted, not restarted)",
            QuietOnceHealthy => "§6 no false alarms once healthy",
            CapacitySettled => "capacity accounting (settled cluster)",
            FailuresAsDeclared => "a worker's failure handled as declared",
            PanicsEndTheirTask => "a panicking task ends",
            DeletedLeavesNothing => "a deleted job leaves nothing behind",
            ConsistentStory => "the observations are inconsistent",
            MachineInvariant => "a state machine's invariant",
            UnreachableGuard => "a guard held unreachable is never reached",
            StatusFromCurrent => "a job's status comes from its current job master",
            StatusFinal => "a job's final status is stored, and deleted with it",
            LogsKept => "a finished command's logs are kept and read back whole",
            JobDataCollected => "a deleted job's data leaves every executor",
        }
    }
}

impl fmt::Display for Rule {
    /// `rule 3 (at most one live incarnation)` for a numbered rule, its name otherwise (`§6 detection bound`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.number() {
            Some(n) => write!(f, "rule {n} ({})", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

/// One id a violation involves.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Id {
    /// A job, by its id.
    Job(String),
    /// A task: a job master (its job's id) or a worker (`<job>/<worker>`).
    Task(String),
    /// An incarnation of a task (a job master's or a worker's epoch).
    Epoch(Epoch),
    /// A leader's term.
    LeaderEpoch(LeaderEpoch),
    /// An executor, by its registered id.
    Executor(ExecutorId),
    /// A master process, by its name.
    Master(String),
    /// Any other process (an executor's, the client's), by its node name.
    Node(String),
}

/// A broken rule: which one, when, the ids involved, and a sentence saying what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub rule: Rule,
    pub at: Time,
    pub ids: Vec<Id>,
    pub detail: String,
}

impl Violation {
    pub fn new(rule: Rule, at: Time, detail: impl Into<String>) -> Violation {
        Violation { rule, at, ids: vec![], detail: detail.into() }
    }

    /// The same, naming `ids` too.
    pub fn with(mut self, ids: impl IntoIterator<Item = Id>) -> Violation {
        self.ids.extend(ids);
        self
    }

    pub fn class(&self) -> Class {
        self.rule.class()
    }

    /// The task the violation names first, if any.
    pub fn task(&self) -> Option<&str> {
        self.ids.iter().find_map(|id| match id {
            Id::Task(t) => Some(t.as_str()),
            _ => None,
        })
    }
}

impl fmt::Display for Violation {
    /// `safety rule 3 (at most one live incarnation) at 12.500s: <detail>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} at {}: {}", self.class(), self.rule, self.at, self.detail)
    }
}

impl std::error::Error for Violation {}

/// Stops at a rule broken inside a state machine (a runtime assertion of debug and simulation builds), with the
/// typed violation as the panic's payload: the simulator's harness takes it as it is, and the production binary's
/// panic hook prints it.
pub fn stop(v: Violation) -> ! {
    std::panic::panic_any(v)
}

fn violation(rule: Rule, at: Time, ids: impl IntoIterator<Item = Id>, detail: String) -> Result<(), Violation> {
    Err(Violation::new(rule, at, detail).with(ids))
}

fn job_id(job: &JobId) -> [Id; 1] {
    [Id::Job(job.as_str().to_owned())]
}

/// Where one incarnation stands, for [`LiveIncarnations`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    Live,
    /// Its node is paused (its process stopped): it cannot act.
    Frozen,
    /// Its node was resumed at this instant: it is live again once it acts, or once the resume grace has passed
    /// without it stopping. A fenced task stops the moment it runs again, before it can act, which may come a
    /// moment after the resume.
    Resumed(Time),
}

#[derive(Clone, Debug)]
struct Incarnation {
    epoch: u64,
    node: String,
    standing: Standing,
}

/// An incarnation that a checker event names, for callers that report what happened to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncarnationRef {
    pub task: String,
    pub epoch: u64,
    pub node: String,
}

/// What [`LiveIncarnations::on_stop`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// It was live (or had quiesced for a drain).
    WasLive,
    /// Its node had been resumed at this instant and it had not acted since.
    AfterResume(Time),
    /// Its node was paused. A paused process logs nothing, so a log reader takes this for an inconsistency;
    /// the simulator's recorder may see it at the very instant of a pause.
    WhileFrozen,
}

/// A stop that cannot be placed in the story: the incarnation never started on that node (or already stopped).
/// The observations themselves are inconsistent (a recorder or log reader error, not a broken rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotRunning;

/// Rule 3: at most one live incarnation of every task at every instant, and each task's incarnations start in
/// strictly increasing epoch order. Fed the executors' task starts, stops and checkpoints, plus what was done to
/// their nodes: a kill ends a node's incarnations, a pause freezes them (a frozen incarnation cannot act, so it is
/// not live), and after a resume each is live again once it acts or once `resume_grace` passed without it
/// stopping. A task that quiesced for a drain (it acts no more, it only reports its stop) is no longer live.
///
/// Shared by the simulator's checker (one simulated clock for every node) and the process-level chaos test (one
/// machine's wall clock for every process). Feed events in time order; call [`LiveIncarnations::advance`] before
/// each one and once at the end with [`Time::NEVER`].
#[derive(Clone, Debug)]
pub struct LiveIncarnations {
    resume_grace: Duration,
    tasks: BTreeMap<String, Vec<Incarnation>>,
    highest: BTreeMap<String, u64>,
    quiesced: BTreeSet<(String, u64, String)>,
    /// The tasks with a resumed incarnation, the only ones [`LiveIncarnations::advance`] looks at (a scan of every
    /// task per event made a story of 25,000 tasks take longer to check than to run).
    resumed: BTreeSet<String>,
}

/// Whether any of a task's incarnations is resumed and not yet settled.
fn any_resumed(incs: &[Incarnation]) -> bool {
    incs.iter().any(|o| matches!(o.standing, Standing::Resumed(_)))
}

/// Keeps `resumed` (the index of tasks with a resumed incarnation) true of `task`, whose incarnations are `incs`.
fn index_resumed(resumed: &mut BTreeSet<String>, task: &str, incs: Option<&[Incarnation]>) {
    if incs.is_some_and(any_resumed) {
        if !resumed.contains(task) {
            resumed.insert(task.to_owned());
        }
    } else {
        resumed.remove(task);
    }
}

impl LiveIncarnations {
    pub fn new(resume_grace: Duration) -> LiveIncarnations {
        LiveIncarnations {
            resume_grace,
            tasks: BTreeMap::new(),
            highest: BTreeMap::new(),
            quiesced: BTreeSet::new(),
            resumed: BTreeSet::new(),
        }
    }

    /// Time moved on to `now`: every resumed incarnation whose grace has passed without it stopping is live from
    /// the end of its grace. Returns those (they went on running after the resume).
    pub fn advance(&mut self, now: Time) -> Result<Vec<IncarnationRef>, Violation> {
        let mut promoted = vec![];
        let mut settled = vec![];
        for task in &self.resumed {
            let Some(incs) = self.tasks.get_mut(task) else { continue };
            for i in 0..incs.len() {
                let Standing::Resumed(at) = incs[i].standing else { continue };
                if at + self.resume_grace >= now {
                    continue;
                }
                if let Some(other) = incs.iter().find(|o| o.standing == Standing::Live) {
                    let detail = format!(
                        "{task} epoch {} on {} was resumed and did not stop within {:?} while epoch {} is live on {}",
                        incs[i].epoch, incs[i].node, self.resume_grace, other.epoch, other.node
                    );
                    let ids = [
                        Id::Task(task.clone()),
                        Id::Epoch(Epoch(incs[i].epoch)),
                        Id::Node(incs[i].node.clone()),
                        Id::Epoch(Epoch(other.epoch)),
                        Id::Node(other.node.clone()),
                    ];
                    return Err(Violation::new(Rule::OneLiveIncarnation, at + self.resume_grace, detail).with(ids));
                }
                incs[i].standing = Standing::Live;
                promoted.push(IncarnationRef { task: task.clone(), epoch: incs[i].epoch, node: incs[i].node.clone() });
            }
            if !any_resumed(incs) {
                settled.push(task.clone());
            }
        }
        for task in settled {
            self.resumed.remove(&task);
        }
        Ok(promoted)
    }

    /// Keeps [`LiveIncarnations::resumed`] true of `task` after its incarnations changed.
    fn note_resumed(&mut self, task: &str) {
        index_resumed(&mut self.resumed, task, self.tasks.get(task).map(Vec::as_slice));
    }

    pub fn on_start(&mut self, at: Time, task: &str, epoch: u64, node: &str) -> Result<(), Violation> {
        let incs = self.tasks.entry(task.to_owned()).or_default();
        if let Some(other) = incs.iter().find(|o| o.standing == Standing::Live) {
            return violation(
                Rule::OneLiveIncarnation,
                at,
                [
                    Id::Task(task.to_owned()),
                    Id::Epoch(Epoch(epoch)),
                    Id::Node(node.to_owned()),
                    Id::Epoch(Epoch(other.epoch)),
                    Id::Node(other.node.clone()),
                ],
                format!("{task} epoch {epoch} started on {node} while epoch {} is live on {}", other.epoch, other.node),
            );
        }
        let last = self.highest.entry(task.to_owned()).or_default();
        if epoch <= *last {
            return violation(
                Rule::OneLiveIncarnation,
                at,
                [
                    Id::Task(task.to_owned()),
                    Id::Epoch(Epoch(epoch)),
                    Id::Node(node.to_owned()),
                    Id::Epoch(Epoch(*last)),
                ],
                format!("{task} epoch {epoch} started on {node} after epoch {last} had started"),
            );
        }
        *last = epoch;
        incs.push(Incarnation { epoch, node: node.to_owned(), standing: Standing::Live });
        Ok(())
    }

    /// The incarnation stopped on `node`.
    pub fn on_stop(&mut self, task: &str, epoch: u64, node: &str) -> Result<Stopped, NotRunning> {
        if self.quiesced.remove(&(task.to_owned(), epoch, node.to_owned())) {
            return Ok(Stopped::WasLive);
        }
        let incs = self.tasks.entry(task.to_owned()).or_default();
        let Some(i) = incs.iter().position(|o| o.epoch == epoch && o.node == node) else {
            return Err(NotRunning);
        };
        let stopped = match incs[i].standing {
            Standing::Frozen => Stopped::WhileFrozen,
            Standing::Resumed(at) => Stopped::AfterResume(at),
            Standing::Live => Stopped::WasLive,
        };
        incs.remove(i);
        self.note_resumed(task);
        Ok(stopped)
    }

    /// The incarnation acted (for example, wrote a checkpoint). A resumed one is live from here on; returns the
    /// instant it had been resumed at, if it was.
    pub fn on_acted(&mut self, at: Time, task: &str, epoch: u64, node: &str) -> Result<Option<Time>, Violation> {
        let incs = self.tasks.entry(task.to_owned()).or_default();
        let resumed =
            incs.iter().position(|o| o.epoch == epoch && o.node == node && matches!(o.standing, Standing::Resumed(_)));
        let Some(i) = resumed else { return Ok(None) };
        if let Some(other) = incs.iter().find(|o| o.standing == Standing::Live) {
            let detail = format!(
                "{task} epoch {epoch} acted on {node} after a resume while epoch {} is live on {}",
                other.epoch, other.node
            );
            let ids = [
                Id::Task(task.to_owned()),
                Id::Epoch(Epoch(epoch)),
                Id::Node(node.to_owned()),
                Id::Epoch(Epoch(other.epoch)),
                Id::Node(other.node.clone()),
            ];
            return Err(Violation::new(Rule::OneLiveIncarnation, at, detail).with(ids));
        }
        let Standing::Resumed(since) = std::mem::replace(&mut incs[i].standing, Standing::Live) else {
            return Ok(None);
        };
        self.note_resumed(task);
        Ok(Some(since))
    }

    /// The incarnation quiesced for a drain: it acts no more, so it is no longer live; its stop follows.
    pub fn on_quiesced(&mut self, task: &str, epoch: u64, node: &str) {
        let incs = self.tasks.entry(task.to_owned()).or_default();
        if let Some(i) = incs.iter().position(|o| o.epoch == epoch && o.node == node) {
            incs.remove(i);
            self.quiesced.insert((task.to_owned(), epoch, node.to_owned()));
            self.note_resumed(task);
        }
    }

    /// `node` was killed: its incarnations ended. Returns how many.
    pub fn on_node_killed(&mut self, node: &str) -> usize {
        let mut ended = 0;
        for incs in self.tasks.values_mut() {
            let before = incs.len();
            incs.retain(|o| o.node != node);
            ended += before - incs.len();
        }
        self.resumed.retain(|task| self.tasks.get(task).is_some_and(|incs| any_resumed(incs)));
        ended
    }

    /// `node` was paused: its incarnations are frozen.
    pub fn on_node_paused(&mut self, node: &str) {
        self.set_standing(node, Standing::Frozen);
    }

    /// `node` was resumed at `at`.
    pub fn on_node_resumed(&mut self, at: Time, node: &str) {
        self.set_standing(node, Standing::Resumed(at));
    }

    fn set_standing(&mut self, node: &str, standing: Standing) {
        for (task, incs) in self.tasks.iter_mut() {
            for o in incs.iter_mut().filter(|o| o.node == node) {
                o.standing = standing;
            }
            index_resumed(&mut self.resumed, task, Some(incs));
        }
    }

    /// The live incarnation of a task (epoch and node), if any.
    pub fn live(&self, task: &str) -> Option<(u64, &str)> {
        let incs = self.tasks.get(task)?;
        incs.iter().find(|o| o.standing == Standing::Live).map(|o| (o.epoch, o.node.as_str()))
    }

    /// How many tasks started at least one incarnation.
    pub fn tasks_seen(&self) -> usize {
        self.highest.len()
    }
}

/// Rule 1: masters begin and end acting as leader; at most one acts at once, and terms' epochs strictly increase.
#[derive(Clone, Debug, Default)]
pub struct ActingLeaders {
    acting: Option<(String, LeaderEpoch)>,
    highest: LeaderEpoch,
}

impl ActingLeaders {
    pub fn on_begin(&mut self, at: Time, master: &str, epoch: LeaderEpoch) -> Result<(), Violation> {
        if let Some((other, e)) = &self.acting {
            return violation(
                Rule::OneActingLeader,
                at,
                [Id::Master(master.to_owned()), Id::LeaderEpoch(epoch), Id::Master(other.clone()), Id::LeaderEpoch(*e)],
                format!("{master} began acting with epoch {epoch} while {other} acts with epoch {e}"),
            );
        }
        if epoch <= self.highest {
            return violation(
                Rule::OneActingLeader,
                at,
                [Id::Master(master.to_owned()), Id::LeaderEpoch(epoch), Id::LeaderEpoch(self.highest)],
                format!("{master} began acting with epoch {epoch}, not above the earlier {}", self.highest),
            );
        }
        self.highest = epoch;
        self.acting = Some((master.to_owned(), epoch));
        Ok(())
    }

    pub fn on_end(&mut self, master: &str, epoch: LeaderEpoch) {
        if self.acting.as_ref().is_some_and(|(m, e)| m == master && *e == epoch) {
            self.acting = None;
        }
    }

    /// Every term of `master` ended (it crashed).
    pub fn on_node_down(&mut self, master: &str) {
        if self.acting.as_ref().is_some_and(|(m, _)| m == master) {
            self.acting = None;
        }
    }

    pub fn acting(&self) -> Option<(&str, LeaderEpoch)> {
        self.acting.as_ref().map(|(m, e)| (m.as_str(), *e))
    }
}

/// Rules 4 and 5: job records as persisted. Creation starts at `Created`; every later write is a legal
/// transition or no change; only terminal jobs are deleted; a canceled job never starts an incarnation.
#[derive(Clone, Debug, Default)]
pub struct JobTransitions {
    states: BTreeMap<JobId, JobState>,
}

impl JobTransitions {
    pub fn on_create(&mut self, at: Time, job: &JobId) -> Result<(), Violation> {
        if let Some(s) = self.states.get(job) {
            return violation(
                Rule::LegalTransitions,
                at,
                job_id(job),
                format!("{job} created again while it exists as {s}"),
            );
        }
        self.states.insert(job.clone(), JobState::Created);
        Ok(())
    }

    pub fn on_write(&mut self, at: Time, job: &JobId, to: JobState) -> Result<(), Violation> {
        let Some(&from) = self.states.get(job) else {
            return violation(Rule::NoJobLost, at, job_id(job), format!("{job} written as {to} but it does not exist"));
        };
        if from != to && !from.can_become(to) {
            return violation(Rule::LegalTransitions, at, job_id(job), format!("{job} went from {from} to {to}"));
        }
        self.states.insert(job.clone(), to);
        Ok(())
    }

    pub fn on_delete(&mut self, at: Time, job: &JobId) -> Result<(), Violation> {
        match self.states.get(job) {
            Some(s) if s.is_terminal() => {
                self.states.remove(job);
                Ok(())
            }
            Some(s) => violation(Rule::LegalTransitions, at, job_id(job), format!("{job} deleted while {s}")),
            None => violation(Rule::NoJobLost, at, job_id(job), format!("{job} deleted but it does not exist")),
        }
    }

    /// A job master incarnation of `job` started: not allowed once a cancel was acknowledged or the job ended.
    pub fn on_incarnation(&self, at: Time, job: &JobId, epoch: Epoch) -> Result<(), Violation> {
        match self.states.get(job) {
            Some(s) if s.is_terminal() || *s == JobState::Canceling => {
                let canceled = matches!(s, JobState::Canceling | JobState::Canceled);
                violation(
                    if canceled { Rule::CanceledNeverRestart } else { Rule::LegalTransitions },
                    at,
                    [Id::Job(job.as_str().to_owned()), Id::Epoch(epoch)],
                    format!("{job} started job master epoch {epoch} while {s}"),
                )
            }
            _ => Ok(()),
        }
    }

    pub fn state(&self, job: &JobId) -> Option<JobState> {
        self.states.get(job).copied()
    }

    /// Every known job and its last written state, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&JobId, JobState)> {
        self.states.iter().map(|(j, s)| (j, *s))
    }
}

/// Rule 7: executor ids are handed out in strictly increasing order and never again.
#[derive(Clone, Debug, Default)]
pub struct ExecutorIds {
    highest: Option<ExecutorId>,
}

impl ExecutorIds {
    pub fn on_register(&mut self, at: Time, id: ExecutorId) -> Result<(), Violation> {
        if let Some(h) = self.highest {
            if id <= h {
                return violation(
                    Rule::RegistryIntegrity,
                    at,
                    [Id::Executor(id), Id::Executor(h)],
                    format!("executor id {id} handed out after {h}: ids must never be reused"),
                );
            }
        }
        self.highest = Some(id);
        Ok(())
    }
}

/// Rule 6: one placement decision, as seen at the moment it was made.
pub fn placement_fits(
    at: Time,
    task: &TaskId,
    executor: ExecutorId,
    online: bool,
    used_before: u64,
    cost: u32,
    capacity: u32,
) -> Result<(), Violation> {
    if !online {
        return violation(
            Rule::Placement,
            at,
            [Id::Task(task.as_str().to_owned()), Id::Executor(executor)],
            format!("{task} placed on {executor}, which is not online"),
        );
    }
    if used_before + u64::from(cost) > u64::from(capacity) {
        return violation(
            Rule::Placement,
            at,
            [Id::Task(task.as_str().to_owned()), Id::Executor(executor)],
            format!("{task} (cost {cost}) placed on {executor} with {used_before} of {capacity} slots used"),
        );
    }
    Ok(())
}

/// Who received a fenced message (design.md §5 rule 2): a process, or the bookkeeping a master keeps for one term
/// or incarnation (a new term or incarnation starts afresh, as the bookkeeping does).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Receiver {
    /// An executor process, hearing the leader (until the process ends).
    Executor { node: String },
    /// A leader's term on a master process, hearing its job masters.
    Leader { master: String, epoch: LeaderEpoch },
    /// A job master's incarnation, hosted on an executor process, hearing its workers.
    JobMaster { node: String, task: String, epoch: Epoch },
}

impl Receiver {
    /// The process it lives in.
    pub fn node(&self) -> &str {
        match self {
            Receiver::Executor { node } | Receiver::JobMaster { node, .. } => node,
            Receiver::Leader { master, .. } => master,
        }
    }

    fn ids(&self) -> Vec<Id> {
        match self {
            Receiver::Executor { node } => vec![Id::Node(node.clone())],
            Receiver::Leader { master, epoch } => vec![Id::Master(master.clone()), Id::LeaderEpoch(*epoch)],
            Receiver::JobMaster { node, task, epoch } => {
                vec![Id::Node(node.clone()), Id::Task(task.clone()), Id::Epoch(*epoch)]
            }
        }
    }
}

impl fmt::Display for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Receiver::Executor { node } => f.write_str(node),
            Receiver::Leader { master, epoch } => write!(f, "{master} (leader epoch {epoch})"),
            Receiver::JobMaster { node, task, epoch } => write!(f, "job master {task} epoch {epoch} on {node}"),
        }
    }
}

/// Who sent a fenced message, as its receiver tells senders apart; the epoch a message carries is the sender's.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sender {
    /// The leader (any term): its epoch is the leader epoch.
    Leader,
    /// The incarnations of one task, heard by their master (a job master by the leader, a worker by its job
    /// master): the epoch is the incarnation's.
    Task(String),
}

impl Sender {
    fn ids(&self, epoch: u64) -> Vec<Id> {
        match self {
            Sender::Leader => vec![Id::LeaderEpoch(LeaderEpoch(epoch))],
            Sender::Task(task) => vec![Id::Task(task.clone()), Id::Epoch(Epoch(epoch))],
        }
    }

    fn epoch_text(&self, epoch: u64) -> String {
        match self {
            Sender::Leader => format!("leader epoch {epoch}"),
            Sender::Task(task) => format!("{task} epoch {epoch}"),
        }
    }
}

/// Rule 2: a receiver never accepts a message from an older epoch than one it has already accepted from the same
/// sender (a message from an older epoch is dropped, and its sender told it is stale). Fed every accepted message
/// in time order: who took it, from whom, with which epoch, and what it was (for the story). A receiver's memory
/// ends with its process ([`FencedEpochs::on_node_gone`]): a restarted process knows no epoch yet.
#[derive(Clone, Debug, Default)]
pub struct FencedEpochs {
    /// (receiver, sender) → the newest epoch accepted, when, and what it came with.
    newest: BTreeMap<(Receiver, Sender), (u64, Time, String)>,
}

impl FencedEpochs {
    pub fn on_accepted(
        &mut self,
        at: Time,
        receiver: &Receiver,
        from: &Sender,
        epoch: u64,
        what: &str,
    ) -> Result<(), Violation> {
        let key = (receiver.clone(), from.clone());
        if let Some((newest, when, how)) = self.newest.get(&key) {
            if epoch < *newest {
                let detail = format!(
                    "{receiver} accepted {what} from {} after it had accepted {how} from {} at {when}",
                    from.epoch_text(epoch),
                    from.epoch_text(*newest)
                );
                let ids = receiver.ids().into_iter().chain(from.ids(epoch)).chain(from.ids(*newest));
                return violation(Rule::FencedMessages, at, ids, detail);
            }
        }
        self.newest.insert(key, (epoch, at, what.to_owned()));
        Ok(())
    }

    /// The process `node` ended (killed or restarted): its receivers remember nothing.
    pub fn on_node_gone(&mut self, node: &str) {
        self.newest.retain(|(r, _), _| r.node() != node);
    }
}

/// One acting period of one master (rule 1): `[begin, end)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActingPeriod {
    pub master: String,
    pub epoch: u64,
    pub begin: Time,
    pub end: Time,
}

/// Rule 1: no two masters' acting periods overlap, and every term (in order of its start) has a larger epoch than
/// the one before it.
pub fn one_acting_leader(periods: &[ActingPeriod]) -> Result<(), Violation> {
    let mut sorted: Vec<&ActingPeriod> = periods.iter().collect();
    sorted.sort_by(|a, b| (a.begin, &a.master).cmp(&(b.begin, &b.master)));
    for (i, a) in sorted.iter().enumerate() {
        for b in &sorted[i + 1..] {
            if b.begin < a.end && a.begin < b.end && a.master != b.master {
                return violation(
                    Rule::OneActingLeader,
                    b.begin.max(a.begin),
                    [
                        Id::Master(a.master.clone()),
                        Id::LeaderEpoch(LeaderEpoch(a.epoch)),
                        Id::Master(b.master.clone()),
                        Id::LeaderEpoch(LeaderEpoch(b.epoch)),
                    ],
                    format!(
                        "{} (epoch {}) acted over [{}, {}) and {} (epoch {}) over [{}, {})",
                        a.master, a.epoch, a.begin, a.end, b.master, b.epoch, b.begin, b.end
                    ),
                );
            }
        }
    }
    for w in sorted.windows(2) {
        if w[1].epoch <= w[0].epoch {
            return violation(
                Rule::OneActingLeader,
                w[1].begin,
                [
                    Id::Master(w[1].master.clone()),
                    Id::LeaderEpoch(LeaderEpoch(w[1].epoch)),
                    Id::Master(w[0].master.clone()),
                    Id::LeaderEpoch(LeaderEpoch(w[0].epoch)),
                ],
                format!(
                    "epoch {} of {} at {} is not above epoch {} of {} at {}",
                    w[1].epoch, w[1].master, w[1].begin, w[0].epoch, w[0].master, w[0].begin
                ),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-live-incarnation checker's first `advance`: a scan of every task per event. The indexed one must
    /// say the same of every sequence of events.
    fn advance_by_scan(l: &mut LiveIncarnations, now: Time) -> Result<Vec<IncarnationRef>, Violation> {
        let mut promoted = vec![];
        for (task, incs) in l.tasks.iter_mut() {
            for i in 0..incs.len() {
                let Standing::Resumed(at) = incs[i].standing else { continue };
                if at + l.resume_grace >= now {
                    continue;
                }
                if let Some(other) = incs.iter().find(|o| o.standing == Standing::Live) {
                    let detail = format!("{task} {} {} {}", incs[i].epoch, incs[i].node, other.epoch);
                    return Err(Violation::new(Rule::OneLiveIncarnation, at + l.resume_grace, detail));
                }
                incs[i].standing = Standing::Live;
                promoted.push(IncarnationRef { task: task.clone(), epoch: incs[i].epoch, node: incs[i].node.clone() });
            }
        }
        Ok(promoted)
    }

    proptest::proptest! {
        /// Random stories of starts, stops, acts, drains, kills, pauses and resumes over a few tasks and nodes:
        /// after every event the indexed `advance` promotes the same incarnations, fails at the same instant, and
        /// leaves the same incarnation live for every task as a scan of every task does.
        #[test]
        fn indexed_advance_agrees_with_a_scan(
            ops in proptest::collection::vec((0u8..8, 0usize..4, 0usize..3, 1u64..4), 1..120)
        ) {
            let (mut indexed, mut scanned) = (LiveIncarnations::new(GRACE), LiveIncarnations::new(GRACE));
            let mut now = ms(0);
            let mut epoch = 0u64;
            for (op, task, node, step) in ops {
                now = now + Duration::from_millis(step * 2);
                let (a, b) = (indexed.advance(now), advance_by_scan(&mut scanned, now));
                match (&a, &b) {
                    (Ok(x), Ok(y)) => proptest::prop_assert_eq!(x, y),
                    (Err(x), Err(y)) => { proptest::prop_assert_eq!(x.at, y.at); break; }
                    _ => proptest::prop_assert!(false, "indexed {a:?} but scanned {b:?}"),
                }
                let (task, node) = (format!("task-{task}"), format!("node-{node}"));
                match op {
                    0 | 1 => {
                        epoch += 1;
                        let x = indexed.on_start(now, &task, epoch, &node);
                        let y = scanned.on_start(now, &task, epoch, &node);
                        proptest::prop_assert_eq!(x.is_ok(), y.is_ok());
                        if x.is_err() { break; }
                    }
                    2 => {
                        let e = indexed.live(&task).map(|(e, _)| e).unwrap_or(epoch);
                        proptest::prop_assert_eq!(indexed.on_stop(&task, e, &node), scanned.on_stop(&task, e, &node));
                    }
                    3 => {
                        let x = indexed.on_acted(now, &task, epoch, &node);
                        let y = scanned.on_acted(now, &task, epoch, &node);
                        proptest::prop_assert_eq!(x.as_ref().ok(), y.as_ref().ok());
                        if x.is_err() { break; }
                    }
                    4 => { indexed.on_quiesced(&task, epoch, &node); scanned.on_quiesced(&task, epoch, &node); }
                    5 => proptest::prop_assert_eq!(indexed.on_node_killed(&node), scanned.on_node_killed(&node)),
                    6 => { indexed.on_node_paused(&node); scanned.on_node_paused(&node); }
                    _ => { indexed.on_node_resumed(now, &node); scanned.on_node_resumed(now, &node); }
                }
                for t in 0..4 {
                    let t = format!("task-{t}");
                    proptest::prop_assert_eq!(indexed.live(&t), scanned.live(&t));
                }
            }
        }
    }

    fn ms(n: u64) -> Time {
        Time::from_millis(n)
    }

    const GRACE: Duration = Duration::from_millis(5);

    fn t(s: &str) -> TaskId {
        TaskId::parse(s).unwrap()
    }

    #[test]
    fn two_live_incarnations_are_caught() {
        let mut l = LiveIncarnations::new(GRACE);
        l.on_start(ms(0), "a", 1, "ex-1").unwrap();
        let v = l.on_start(ms(5), "a", 2, "ex-2").unwrap_err();
        assert_eq!(v.rule, Rule::OneLiveIncarnation);
        assert_eq!(
            v.to_string(),
            "safety rule 3 (at most one live incarnation) at 0.005s: a epoch 2 started on ex-2 while epoch 1 is live \
             on ex-1"
        );
        assert_eq!(l.on_stop("a", 1, "ex-1"), Ok(Stopped::WasLive));
        l.on_start(ms(7), "a", 2, "ex-2").unwrap();
        // Going back to an older epoch is caught even when nothing is live.
        l.on_stop("a", 2, "ex-2").unwrap();
        assert!(l.on_start(ms(9), "a", 2, "ex-1").unwrap_err().detail.contains("after epoch 2 had started"));
        assert_eq!(l.on_stop("b", 1, "ex-1"), Err(NotRunning));
        assert_eq!(l.tasks_seen(), 1);
    }

    #[test]
    fn a_kill_ends_its_incarnations() {
        let mut l = LiveIncarnations::new(GRACE);
        l.on_start(ms(0), "a", 1, "ex-1").unwrap();
        l.on_start(ms(0), "b", 1, "ex-1").unwrap();
        assert_eq!(l.on_node_killed("ex-1"), 2);
        l.on_start(ms(1), "a", 2, "ex-2").unwrap();
        assert_eq!(l.on_stop("b", 1, "ex-1"), Err(NotRunning));
    }

    #[test]
    fn a_paused_incarnation_is_not_live_until_it_acts_or_its_grace_passes() {
        let mut l = LiveIncarnations::new(GRACE);
        l.on_start(ms(0), "a", 1, "ex-1").unwrap();
        l.on_node_paused("ex-1");
        // Frozen: its successor may start.
        l.on_start(ms(10), "a", 2, "ex-2").unwrap();
        // Resumed and stopped within the grace: fine.
        l.on_node_resumed(ms(20), "ex-1");
        assert!(l.advance(ms(25)).unwrap().is_empty());
        assert_eq!(l.on_stop("a", 1, "ex-1"), Ok(Stopped::AfterResume(ms(20))));

        // Resumed and acting while its successor is live: caught at once.
        let mut l = LiveIncarnations::new(GRACE);
        l.on_start(ms(0), "a", 1, "ex-1").unwrap();
        l.on_node_paused("ex-1");
        l.on_start(ms(10), "a", 2, "ex-2").unwrap();
        l.on_node_resumed(ms(20), "ex-1");
        let v = l.on_acted(ms(21), "a", 1, "ex-1").unwrap_err();
        assert!(v.detail.contains("acted on ex-1 after a resume while epoch 2 is live on ex-2"), "{v}");

        // Resumed and silent past its grace while its successor is live: caught when time moves past the grace.
        let mut l = LiveIncarnations::new(GRACE);
        l.on_start(ms(0), "a", 1, "ex-1").unwrap();
        l.on_node_paused("ex-1");
        l.on_start(ms(10), "a", 2, "ex-2").unwrap();
        l.on_node_resumed(ms(20), "ex-1");
        let v = l.advance(ms(26)).unwrap_err();
        assert_eq!(v.at, ms(25));
        assert!(v.detail.contains("did not stop within 5ms"), "{v}");

        // Resumed with nothing else live: it goes on running, and says so.
        let mut l = LiveIncarnations::new(GRACE);
        l.on_start(ms(0), "a", 1, "ex-1").unwrap();
        l.on_node_paused("ex-1");
        l.on_node_resumed(ms(20), "ex-1");
        assert_eq!(l.on_acted(ms(21), "a", 1, "ex-1"), Ok(Some(ms(20))));
        assert!(l.on_start(ms(22), "a", 2, "ex-2").is_err(), "live again once it acted");
        let mut l = LiveIncarnations::new(GRACE);
        l.on_start(ms(0), "a", 1, "ex-1").unwrap();
        l.on_node_paused("ex-1");
        l.on_node_resumed(ms(20), "ex-1");
        let went_on = l.advance(Time::NEVER).unwrap();
        assert_eq!(went_on, vec![IncarnationRef { task: "a".into(), epoch: 1, node: "ex-1".into() }]);
    }

    #[test]
    fn a_quiesced_incarnation_is_no_longer_live() {
        let mut l = LiveIncarnations::new(GRACE);
        l.on_start(ms(0), "a", 1, "ex-1").unwrap();
        assert!(l.on_start(ms(1), "a", 2, "ex-2").is_err());
        let mut l = LiveIncarnations::new(GRACE);
        l.on_start(ms(0), "a", 1, "ex-1").unwrap();
        l.on_quiesced("a", 1, "ex-1");
        l.on_start(ms(1), "a", 2, "ex-2").unwrap();
        // Its stop report comes later and is expected.
        assert_eq!(l.on_stop("a", 1, "ex-1"), Ok(Stopped::WasLive));
        assert_eq!(l.on_stop("a", 1, "ex-1"), Err(NotRunning));
    }

    #[test]
    fn a_stop_while_paused_is_reported() {
        let mut l = LiveIncarnations::new(GRACE);
        l.on_start(ms(0), "a", 1, "ex-1").unwrap();
        l.on_node_paused("ex-1");
        assert_eq!(l.on_stop("a", 1, "ex-1"), Ok(Stopped::WhileFrozen));
        assert_eq!(l.on_stop("a", 1, "ex-1"), Err(NotRunning));
    }

    fn period(master: &str, epoch: u64, begin: u64, end: u64) -> ActingPeriod {
        ActingPeriod { master: master.into(), epoch, begin: ms(begin), end: ms(end) }
    }

    #[test]
    fn overlapping_or_unordered_terms_are_caught() {
        assert!(one_acting_leader(&[period("m1", 1, 0, 10), period("m2", 2, 10, 20)]).is_ok());
        // A master's own consecutive terms may touch.
        assert!(one_acting_leader(&[period("m1", 1, 0, 10), period("m1", 2, 10, 20)]).is_ok());
        let v = one_acting_leader(&[period("m2", 2, 9, 20), period("m1", 1, 0, 10)]).unwrap_err();
        assert_eq!((v.rule, v.at), (Rule::OneActingLeader, ms(9)));
        assert!(v.detail.contains("m1 (epoch 1) acted over [0.000s, 0.010s) and m2 (epoch 2)"), "{v}");
        let v = one_acting_leader(&[period("m1", 2, 0, 10), period("m2", 2, 10, 20)]).unwrap_err();
        assert!(v.detail.contains("epoch 2 of m2 at 0.010s is not above epoch 2 of m1"), "{v}");
    }

    #[test]
    fn two_acting_leaders_are_caught() {
        let mut a = ActingLeaders::default();
        a.on_begin(ms(0), "m1", LeaderEpoch(1)).unwrap();
        assert!(a.on_begin(ms(1), "m2", LeaderEpoch(2)).is_err());
        a.on_end("m1", LeaderEpoch(1));
        assert!(a.on_begin(ms(2), "m2", LeaderEpoch(1)).is_err(), "epoch must grow");
        a.on_begin(ms(2), "m2", LeaderEpoch(2)).unwrap();
    }

    #[test]
    fn job_transitions_are_checked() {
        let j = JobId::parse("j").unwrap();
        let mut h = JobTransitions::default();
        h.on_create(ms(0), &j).unwrap();
        assert!(h.on_create(ms(0), &j).is_err());
        h.on_write(ms(1), &j, JobState::Running).unwrap();
        h.on_write(ms(1), &j, JobState::Running).unwrap();
        assert!(h.on_delete(ms(2), &j).is_err());
        let mut h2 = h.clone();
        assert!(h2.on_write(ms(2), &j, JobState::Created).is_err());
        h.on_write(ms(3), &j, JobState::Canceling).unwrap();
        assert!(h.on_incarnation(ms(4), &j, Epoch(3)).is_err());
        h.on_write(ms(5), &j, JobState::Canceled).unwrap();
        assert!(h.on_write(ms(6), &j, JobState::Running).is_err());
        h.on_delete(ms(7), &j).unwrap();
        assert!(h.on_write(ms(8), &j, JobState::Running).is_err());
    }

    #[test]
    fn fenced_epochs_catch_an_older_epoch_per_receiver_and_sender() {
        let executor = Receiver::Executor { node: "ex-1".into() };
        let mut f = FencedEpochs::default();
        f.on_accepted(ms(0), &executor, &Sender::Leader, 4, "a heartbeat acknowledgement").unwrap();
        // The same epoch again, and a newer one: fine.
        f.on_accepted(ms(1), &executor, &Sender::Leader, 4, "a dispatch of j").unwrap();
        f.on_accepted(ms(2), &executor, &Sender::Leader, 5, "a registration").unwrap();
        let v = f.on_accepted(ms(3), &executor, &Sender::Leader, 4, "a dispatch of k").unwrap_err();
        assert_eq!((v.class(), v.rule, v.rule.number(), v.at), (Class::Safety, Rule::FencedMessages, Some(2), ms(3)));
        assert_eq!(v.ids, [Id::Node("ex-1".into()), Id::LeaderEpoch(LeaderEpoch(4)), Id::LeaderEpoch(LeaderEpoch(5))]);
        assert_eq!(
            v.to_string(),
            "safety rule 2 (fenced messages) at 0.003s: ex-1 accepted a dispatch of k from leader epoch 4 after it had \
             accepted a registration from leader epoch 5 at 0.002s"
        );
        // Another receiver, or the same one after its process ended, knows nothing of it.
        f.on_accepted(ms(3), &Receiver::Executor { node: "ex-2".into() }, &Sender::Leader, 1, "a registration")
            .unwrap();
        f.on_node_gone("ex-1");
        f.on_accepted(ms(4), &executor, &Sender::Leader, 3, "a registration").unwrap();
        // Per sender: one task's epochs do not fence another's; a new term of the leader is a new receiver.
        let term = |epoch| Receiver::Leader { master: "m0".into(), epoch: LeaderEpoch(epoch) };
        f.on_accepted(ms(5), &term(2), &Sender::Task("j".into()), 7, "a heartbeat").unwrap();
        f.on_accepted(ms(5), &term(2), &Sender::Task("k".into()), 3, "a heartbeat").unwrap();
        f.on_accepted(ms(6), &term(3), &Sender::Task("j".into()), 6, "a heartbeat").unwrap();
        let v = f.on_accepted(ms(7), &term(2), &Sender::Task("j".into()), 6, "a status report").unwrap_err();
        assert_eq!(v.task(), Some("j"));
        assert!(v.detail.starts_with("m0 (leader epoch 2) accepted a status report from j epoch 6 after"), "{v}");
    }

    #[test]
    fn rules_know_their_class_and_number() {
        assert_eq!(Rule::OneLiveIncarnation.to_string(), "rule 3 (at most one live incarnation)");
        assert_eq!(Rule::DetectionBound.to_string(), "§6 detection bound");
        assert_eq!((Rule::DetectionBound.class(), Rule::DetectionBound.number()), (Class::Liveness, None));
        assert_eq!(Rule::ReservationWindow.class(), Class::Safety);
        assert_eq!(Rule::ConsistentStory.class(), Class::Crash);
        for c in [Class::Safety, Class::Liveness, Class::Crash] {
            assert_eq!(Class::from_name(c.name()), Some(c));
        }
        let v = Violation::new(Rule::JobEnds, ms(1_500), "j did not end").with([Id::Job("j".into())]);
        assert_eq!(v.to_string(), "liveness every job ends at 1.500s: j did not end");
    }

    #[test]
    fn executor_ids_and_placement() {
        let mut ids = ExecutorIds::default();
        ids.on_register(ms(0), ExecutorId(1)).unwrap();
        ids.on_register(ms(0), ExecutorId(3)).unwrap();
        assert!(ids.on_register(ms(0), ExecutorId(3)).is_err());
        assert!(placement_fits(ms(0), &t("a"), ExecutorId(1), true, 3, 1, 4).is_ok());
        assert!(placement_fits(ms(0), &t("a"), ExecutorId(1), true, 3, 2, 4).is_err());
        assert!(placement_fits(ms(0), &t("a"), ExecutorId(1), false, 0, 1, 4).is_err());
    }
}
