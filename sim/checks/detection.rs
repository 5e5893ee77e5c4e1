//! Design.md §6 detection and no false alarms: every offline verdict came after a TTL without an
//! acknowledged heartbeat, and within TTL + check interval of the last time the declaring leader heard the executor.

use std::collections::BTreeMap;
use std::time::Duration;

use foreman::core::ids::ExecutorId;
use foreman::core::invariants::{Id, Rule, Violation};
use foreman::core::time::Time;
use foreman::executor::ExecutorObservation;
use foreman::master::Observation;

use super::Events;
use crate::cluster::Seen;
use crate::harness::Clock;

/// One offline declaration's timing.
#[derive(Clone, Copy, Debug)]
pub struct Detection {
    /// From the kill of the executor's node, when the scenario killed it.
    pub since_kill: Option<Duration>,
    /// From the last time the declaring leader heard from it (or the start of its term).
    pub took: Duration,
    /// What `took` must stay within (TTL + check interval, plus a hold or pause that applied), before slack.
    pub bound: Duration,
}

/// Whether a leader stalled at this fault point (by name) declares late: it holds up the leader's writes, and a
/// declaration is made once its write is durable.
fn delays_declarations(point: &str) -> bool {
    use foreman::buggify::Point;
    [Point::BeforeMetastoreWrite, Point::AfterMetastoreWrite, Point::BeforeOfflineDeclaration]
        .iter()
        .any(|p| p.name() == point)
}

/// Detection and no false alarms (design.md §6): every executor declared offline had no acknowledged heartbeat
/// for a TTL before (less network slack), and the leader declared it within TTL + check interval of the last time
/// it heard from it (or gave it a fresh TTL at the start of its term) — plus the suspect hold when a hold of that
/// leader's (most executors expired at once) was in force at some point between the two, and the time that leader spent paused or stalled by
/// a plan's hold at a point its declarations wait for. Returns every declaration's timing.
pub fn offline_declarations(
    clock: &Clock,
    events: &Events,
    ttl: Duration,
    check: Duration,
    hold: Duration,
    slack: Duration,
    clocks: &super::ClockSlack,
) -> Result<Vec<Detection>, Violation> {
    let mut held: BTreeMap<String, Vec<Time>> = BTreeMap::new();
    // Per node: its pauses so far, [from, to) (an open one ends at the declaration).
    let mut paused: BTreeMap<String, Vec<(Time, Option<Time>)>> = BTreeMap::new();
    let mut last_ack: BTreeMap<ExecutorId, Time> = BTreeMap::new();
    let mut killed: BTreeMap<String, Time> = BTreeMap::new();
    // Per node: the stalls plan holds made at points a declaration waits for, [from, to) (as pauses).
    let mut stalled: BTreeMap<String, Vec<(Time, Option<Time>)>> = BTreeMap::new();
    let mut detections = vec![];
    for (at, node, seen) in events {
        match seen {
            // The evidence against a verdict is when the leader could have heard the executor: no earlier than the
            // acknowledged heartbeat's send time (its arrival can be much later, after a pause).
            Seen::Exec(ExecutorObservation::HeartbeatAcked { id, sent, .. }) => {
                let sent = clock.at(*sent);
                let e = last_ack.entry(*id).or_insert(sent);
                *e = (*e).max(sent);
            }
            // The same for a registration: its answer may be taken after a pause (swarm seed 1796478929: answered at
            // 22.8 s, taken at 26.5 s when the executor resumed; the leader rightly counted its TTL from 22.8 s).
            Seen::Exec(ExecutorObservation::Registered { id, sent, .. }) => {
                last_ack.insert(*id, clock.at(*sent));
            }
            Seen::Killed => {
                killed.insert(node.clone(), *at);
            }
            Seen::Master(Observation::EvictionsHeld { at: when, .. }) => {
                held.entry(node.clone()).or_default().push(clock.at(*when));
            }
            Seen::HoldBegan { point, .. } if delays_declarations(point) => {
                stalled.entry(node.clone()).or_default().push((*at, None));
            }
            Seen::HoldEnded { point, .. } if delays_declarations(point) => {
                if let Some(open) = stalled.entry(node.clone()).or_default().iter_mut().find(|(_, to)| to.is_none()) {
                    open.1 = Some(*at);
                }
            }
            Seen::Paused => paused.entry(node.clone()).or_default().push((*at, None)),
            Seen::Resumed => {
                if let Some(last) = paused.entry(node.clone()).or_default().last_mut() {
                    last.1.get_or_insert(*at);
                }
            }
            Seen::Master(Observation::ExecutorOffline { id, name, at: when, last_heard, .. }) => {
                let (when, heard) = (clock.at(*when), clock.at(*last_heard));
                // A hold delays every expiry within its window [t, t + hold], including one heard after the
                // hold began (the leader keeps holding until the window ends, whoever else expires meanwhile).
                let was_held = held.get(node).is_some_and(|ts| ts.iter().any(|t| *t <= when && heard <= *t + hold));
                // A leader that was paused could not look meanwhile: its pause within [heard, when] adds to the bound.
                let frozen: Duration = paused
                    .get(node)
                    .into_iter()
                    .flatten()
                    .chain(stalled.get(node).into_iter().flatten())
                    .map(|(from, to)| to.unwrap_or(when).min(when).saturating_since((*from).max(heard)))
                    .sum();
                let bound = if was_held { ttl + check + hold } else { ttl + check } + frozen;
                let ack = last_ack.get(id).copied().unwrap_or(Time::ZERO);
                let ids = [Id::Master(node.clone()), Id::Executor(*id), Id::Node(name.clone())];
                // The leader counts the TTL on its clock: the shortest true TTL its clock's faults allow.
                if when.saturating_since(ack) + slack < clocks.shortest(ttl) {
                    let detail = format!(
                        "{node} declared executor {} ({name}) offline at {when}, but a heartbeat was acknowledged at \
                         {ack}, less than the TTL {ttl:?} before",
                        id.0
                    );
                    return Err(Violation::new(Rule::NoFalseAlarms, when, detail).with(ids));
                }
                let took = when.saturating_since(heard);
                if took > clocks.longest(bound) + slack {
                    let detail = format!(
                        "{node} declared executor {} ({name}) offline at {when}, {took:?} after it last heard from it \
                         at {heard}; the bound is TTL + check interval{}{} = {bound:?}",
                        id.0,
                        if was_held { " + suspect hold" } else { "" },
                        if frozen > Duration::ZERO { " + the leader's pauses and held stalls" } else { "" }
                    );
                    return Err(Violation::new(Rule::DetectionBound, when, detail).with(ids));
                }
                detections.push(Detection {
                    since_kill: killed.get(name).map(|k| when.saturating_since(*k)),
                    took,
                    bound,
                });
            }
            _ => {}
        }
    }
    Ok(detections)
}
