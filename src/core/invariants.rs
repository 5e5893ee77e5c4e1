//! The safety rules of design.md §5 as checkers over observations.
//!
//! Each checker consumes what happened, in order, and says when a rule broke: which rule, at what time, with
//! which ids. The property tests (`proptests/`) feed them after every step of the core's state machines. Rule 3's
//! [`LiveIncarnations`] and rule 1's [`one_acting_leader`] also judge whole runs: the simulator's recorder (every
//! node's events on one simulated clock, so "at the same instant" is exact) and the process-level chaos test (the
//! executors' logs on one machine's wall clock). Checks tied to the simulator's own events (placement by its
//! events, registry, cancels, the job API's history) live beside it in `sim/checks`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use super::ids::{Epoch, ExecutorId, JobId, LeaderEpoch, TaskId};
use super::job::JobState;
use super::time::Time;

/// A safety rule of design.md §5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    /// 1: at most one master acts as leader at any instant; terms' epochs strictly increase.
    OneActingLeader,
    /// 2: no message from an older epoch is accepted.
    FencedMessages,
    /// 3: at most one live incarnation of any job master or worker at any instant.
    OneLiveIncarnation,
    /// 4: every acknowledged job stays until deleted.
    NoJobLost,
    /// 5: legal job transitions only; terminal states absorb; a canceled job never starts again.
    LegalTransitions,
    /// 6: placement only on online executors, within capacity, satisfying selectors.
    Placement,
    /// 7: executor ids are never reused.
    RegistryIntegrity,
}

impl Rule {
    /// The rule's number in design.md §5.
    pub fn number(self) -> u8 {
        match self {
            Rule::OneActingLeader => 1,
            Rule::FencedMessages => 2,
            Rule::OneLiveIncarnation => 3,
            Rule::NoJobLost => 4,
            Rule::LegalTransitions => 5,
            Rule::Placement => 6,
            Rule::RegistryIntegrity => 7,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Rule::OneActingLeader => "one acting leader",
            Rule::FencedMessages => "fenced messages",
            Rule::OneLiveIncarnation => "at most one live incarnation",
            Rule::NoJobLost => "no job lost",
            Rule::LegalTransitions => "legal transitions only",
            Rule::Placement => "placement",
            Rule::RegistryIntegrity => "registry integrity",
        };
        write!(f, "rule {} ({s})", self.number())
    }
}

/// A broken safety rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub rule: Rule,
    pub at: Time,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "safety {} at {}: {}", self.rule, self.at, self.detail)
    }
}

impl std::error::Error for Violation {}

fn violation(rule: Rule, at: Time, detail: String) -> Result<(), Violation> {
    Err(Violation { rule, at, detail })
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
}

impl LiveIncarnations {
    pub fn new(resume_grace: Duration) -> LiveIncarnations {
        LiveIncarnations { resume_grace, tasks: BTreeMap::new(), highest: BTreeMap::new(), quiesced: BTreeSet::new() }
    }

    /// Time moved on to `now`: every resumed incarnation whose grace has passed without it stopping is live from
    /// the end of its grace. Returns those (they went on running after the resume).
    pub fn advance(&mut self, now: Time) -> Result<Vec<IncarnationRef>, Violation> {
        let mut promoted = vec![];
        for (task, incs) in self.tasks.iter_mut() {
            for i in 0..incs.len() {
                let Standing::Resumed(at) = incs[i].standing else { continue };
                if at + self.resume_grace >= now {
                    continue;
                }
                if let Some(other) = incs.iter().find(|o| o.standing == Standing::Live) {
                    return Err(Violation {
                        rule: Rule::OneLiveIncarnation,
                        at: at + self.resume_grace,
                        detail: format!(
                            "{task} epoch {} on {} was resumed and did not stop within {:?} while epoch {} is live \
                             on {}",
                            incs[i].epoch, incs[i].node, self.resume_grace, other.epoch, other.node
                        ),
                    });
                }
                incs[i].standing = Standing::Live;
                promoted.push(IncarnationRef { task: task.clone(), epoch: incs[i].epoch, node: incs[i].node.clone() });
            }
        }
        Ok(promoted)
    }

    pub fn on_start(&mut self, at: Time, task: &str, epoch: u64, node: &str) -> Result<(), Violation> {
        let incs = self.tasks.entry(task.to_owned()).or_default();
        if let Some(other) = incs.iter().find(|o| o.standing == Standing::Live) {
            return violation(
                Rule::OneLiveIncarnation,
                at,
                format!("{task} epoch {epoch} started on {node} while epoch {} is live on {}", other.epoch, other.node),
            );
        }
        let last = self.highest.entry(task.to_owned()).or_default();
        if epoch <= *last {
            return violation(
                Rule::OneLiveIncarnation,
                at,
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
            return Err(Violation {
                rule: Rule::OneLiveIncarnation,
                at,
                detail: format!(
                    "{task} epoch {epoch} acted on {node} after a resume while epoch {} is live on {}",
                    other.epoch, other.node
                ),
            });
        }
        let Standing::Resumed(since) = std::mem::replace(&mut incs[i].standing, Standing::Live) else {
            return Ok(None);
        };
        Ok(Some(since))
    }

    /// The incarnation quiesced for a drain: it acts no more, so it is no longer live; its stop follows.
    pub fn on_quiesced(&mut self, task: &str, epoch: u64, node: &str) {
        let incs = self.tasks.entry(task.to_owned()).or_default();
        if let Some(i) = incs.iter().position(|o| o.epoch == epoch && o.node == node) {
            incs.remove(i);
            self.quiesced.insert((task.to_owned(), epoch, node.to_owned()));
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
        for incs in self.tasks.values_mut() {
            for o in incs.iter_mut().filter(|o| o.node == node) {
                o.standing = standing;
            }
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
                format!("{master} began acting with epoch {epoch} while {other} acts with epoch {e}"),
            );
        }
        if epoch <= self.highest {
            return violation(
                Rule::OneActingLeader,
                at,
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
            return violation(Rule::LegalTransitions, at, format!("{job} created again while it exists as {s}"));
        }
        self.states.insert(job.clone(), JobState::Created);
        Ok(())
    }

    pub fn on_write(&mut self, at: Time, job: &JobId, to: JobState) -> Result<(), Violation> {
        let Some(&from) = self.states.get(job) else {
            return violation(Rule::NoJobLost, at, format!("{job} written as {to} but it does not exist"));
        };
        if from != to && !from.can_become(to) {
            return violation(Rule::LegalTransitions, at, format!("{job} went from {from} to {to}"));
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
            Some(s) => violation(Rule::LegalTransitions, at, format!("{job} deleted while {s}")),
            None => violation(Rule::NoJobLost, at, format!("{job} deleted but it does not exist")),
        }
    }

    /// A job master incarnation of `job` started: not allowed once a cancel was acknowledged or the job ended.
    pub fn on_incarnation(&self, at: Time, job: &JobId, epoch: Epoch) -> Result<(), Violation> {
        match self.states.get(job) {
            Some(s) if s.is_terminal() || *s == JobState::Canceling => {
                violation(Rule::LegalTransitions, at, format!("{job} started job master epoch {epoch} while {s}"))
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
        return violation(Rule::Placement, at, format!("{task} placed on {executor}, which is not online"));
    }
    if used_before + u64::from(cost) > u64::from(capacity) {
        return violation(
            Rule::Placement,
            at,
            format!("{task} (cost {cost}) placed on {executor} with {used_before} of {capacity} slots used"),
        );
    }
    Ok(())
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
