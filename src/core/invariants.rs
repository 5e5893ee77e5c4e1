//! The safety rules of design.md §5 as checkers over observations.
//!
//! Each checker consumes what happened, in order, and says when a rule broke: which rule, at what time, with
//! which ids. They are shared three ways: the core's own consistency checks call them, property tests feed them
//! after every step, and the simulator's recorder feeds them every event of every node (all nodes share one
//! simulated clock there, so "at the same instant" is exact).

use std::collections::BTreeMap;
use std::fmt;

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
        write!(f, "safety violation of {} at t={}: {}", self.rule, self.at, self.detail)
    }
}

impl std::error::Error for Violation {}

fn violation(rule: Rule, at: Time, detail: String) -> Result<(), Violation> {
    Err(Violation { rule, at, detail })
}

/// Rule 3: tasks start and stop on nodes; at most one incarnation of a task is live at once, and a task's
/// incarnations start in strictly increasing epoch order.
#[derive(Clone, Debug, Default)]
pub struct LiveIncarnations {
    live: BTreeMap<TaskId, (Epoch, String)>,
    highest: BTreeMap<TaskId, Epoch>,
}

impl LiveIncarnations {
    pub fn on_start(&mut self, at: Time, task: &TaskId, epoch: Epoch, node: &str) -> Result<(), Violation> {
        if let Some((live, on)) = self.live.get(task) {
            return violation(
                Rule::OneLiveIncarnation,
                at,
                format!("{task} epoch {epoch} started on {node} while epoch {live} is live on {on}"),
            );
        }
        if let Some(&last) = self.highest.get(task) {
            if epoch <= last {
                return violation(
                    Rule::OneLiveIncarnation,
                    at,
                    format!("{task} epoch {epoch} started on {node} after epoch {last} had already started"),
                );
            }
        }
        self.highest.insert(task.clone(), epoch);
        self.live.insert(task.clone(), (epoch, node.to_owned()));
        Ok(())
    }

    /// An incarnation stopped. A stop for an incarnation that is not live is a recorder error, reported too.
    pub fn on_stop(&mut self, at: Time, task: &TaskId, epoch: Epoch, node: &str) -> Result<(), Violation> {
        match self.live.get(task) {
            Some((e, on)) if *e == epoch && on == node => {
                self.live.remove(task);
                Ok(())
            }
            _ => violation(
                Rule::OneLiveIncarnation,
                at,
                format!("{task} epoch {epoch} stopped on {node} but was not live there"),
            ),
        }
    }

    /// Every incarnation on `node` stopped (the node crashed).
    pub fn on_node_down(&mut self, node: &str) {
        self.live.retain(|_, (_, on)| on != node);
    }

    /// The live incarnation of a task, if any.
    pub fn live(&self, task: &TaskId) -> Option<(Epoch, &str)> {
        self.live.get(task).map(|(e, n)| (*e, n.as_str()))
    }

    pub fn live_count(&self) -> usize {
        self.live.len()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Time {
        Time::from_millis(n)
    }

    fn t(s: &str) -> TaskId {
        TaskId::parse(s).unwrap()
    }

    #[test]
    fn two_live_incarnations_are_caught() {
        let mut l = LiveIncarnations::default();
        l.on_start(ms(0), &t("a"), Epoch(1), "ex-1").unwrap();
        let v = l.on_start(ms(5), &t("a"), Epoch(2), "ex-2").unwrap_err();
        assert_eq!(v.rule, Rule::OneLiveIncarnation);
        assert!(v.to_string().contains("rule 3") && v.to_string().contains("t=0.005s"), "{v}");
        l.on_stop(ms(6), &t("a"), Epoch(1), "ex-1").unwrap();
        l.on_start(ms(7), &t("a"), Epoch(2), "ex-2").unwrap();
        // Going back to an older epoch is caught even when nothing is live.
        l.on_stop(ms(8), &t("a"), Epoch(2), "ex-2").unwrap();
        assert!(l.on_start(ms(9), &t("a"), Epoch(2), "ex-1").is_err());
        assert!(l.on_stop(ms(9), &t("b"), Epoch(1), "ex-1").is_err());
    }

    #[test]
    fn node_down_stops_its_incarnations() {
        let mut l = LiveIncarnations::default();
        l.on_start(ms(0), &t("a"), Epoch(1), "ex-1").unwrap();
        l.on_node_down("ex-1");
        l.on_start(ms(1), &t("a"), Epoch(2), "ex-2").unwrap();
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
