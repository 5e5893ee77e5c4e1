//! Checkers over a run's recorded events. Each returns the first broken rule with the ids and simulated time.

use std::collections::BTreeMap;
use std::time::Duration;

use foreman::core::time::Time;
use foreman::master::Observation;

use crate::cluster::Seen;
use crate::harness::Clock;

type Events = [(Time, String, Seen)];

/// One acting period of one master: [begin, end).
#[derive(Clone, Debug)]
pub struct Acting {
    pub master: String,
    pub epoch: u64,
    pub begin: Time,
    pub end: Time,
}

/// The acting periods, from the masters' reports; a period that never ended ends at the node's recorded kill,
/// or at `until` (the end of the run).
pub fn acting_periods(clock: &Clock, events: &Events, until: Time) -> Vec<Acting> {
    let mut open: BTreeMap<String, Acting> = BTreeMap::new();
    let mut done = vec![];
    for (at, node, seen) in events {
        match seen {
            Seen::Master(Observation::ActingBegan { epoch, at: when }) => {
                let begin = clock.at(*when);
                if let Some(prev) =
                    open.insert(node.clone(), Acting { master: node.clone(), epoch: epoch.0, begin, end: until })
                {
                    done.push(Acting { end: begin, ..prev });
                }
            }
            Seen::Master(Observation::ActingEnded { epoch, at: when }) => {
                if let Some(a) = open.remove(node) {
                    assert_eq!(a.epoch, epoch.0, "{node}: ended a term it did not begin");
                    done.push(Acting { end: clock.at(*when), ..a });
                }
            }
            Seen::Killed => {
                if let Some(a) = open.remove(node) {
                    done.push(Acting { end: *at, ..a });
                }
            }
            _ => {}
        }
    }
    done.extend(open.into_values());
    done.sort_by_key(|a| (a.begin, a.master.clone()));
    done
}

/// Rule 1: at no simulated instant do two masters act as leader, and every term has a larger epoch than the one
/// before it.
pub fn single_acting_leader(periods: &[Acting]) -> Result<(), String> {
    for (i, a) in periods.iter().enumerate() {
        for b in &periods[i + 1..] {
            if b.begin < a.end && a.begin < b.end && a.master != b.master {
                return Err(format!(
                    "safety rule 1: {} (epoch {}) acted over [{}, {}) and {} (epoch {}) over [{}, {})",
                    a.master, a.epoch, a.begin, a.end, b.master, b.epoch, b.begin, b.end
                ));
            }
        }
    }
    for w in periods.windows(2) {
        if w[1].epoch <= w[0].epoch {
            return Err(format!(
                "safety rule 1: epoch {} of {} at {} is not above epoch {} of {} at {}",
                w[1].epoch, w[1].master, w[1].begin, w[0].epoch, w[0].master, w[0].begin
            ));
        }
    }
    Ok(())
}

/// Detection and no false alarms (design.md §6): every executor declared offline had no acknowledged heartbeat
/// for a TTL before (less network slack), and the leader declared it within TTL + check interval of the last time
/// it heard from it (or gave it a fresh TTL at the start of its term). Returns, for executors the scenario killed,
/// the time from the kill to the declaration.
pub fn offline_declarations(
    clock: &Clock,
    events: &Events,
    ttl: Duration,
    check: Duration,
    slack: Duration,
) -> Result<Vec<Duration>, String> {
    let mut last_ack: BTreeMap<u64, Time> = BTreeMap::new();
    let mut killed: BTreeMap<String, Time> = BTreeMap::new();
    let mut detections = vec![];
    for (at, node, seen) in events {
        match seen {
            Seen::Acked { id } | Seen::Registered { id } => {
                last_ack.insert(*id, *at);
            }
            Seen::Killed => {
                killed.insert(node.clone(), *at);
            }
            Seen::Master(Observation::ExecutorOffline { id, name, at: when, last_heard }) => {
                let (when, heard) = (clock.at(*when), clock.at(*last_heard));
                let ack = last_ack.get(id).copied().unwrap_or(Time::ZERO);
                if when.saturating_since(ack) + slack < ttl {
                    return Err(format!(
                        "no false alarms: {node} declared executor {id} ({name}) offline at {when}, but a heartbeat \
                         was acknowledged at {ack}, less than the TTL {ttl:?} before"
                    ));
                }
                let took = when.saturating_since(heard);
                if took > ttl + check + slack {
                    return Err(format!(
                        "detection bound: {node} declared executor {id} ({name}) offline at {when}, {took:?} after it \
                         last heard from it at {heard}; the bound is TTL + check interval = {:?}",
                        ttl + check
                    ));
                }
                if let Some(k) = killed.get(name) {
                    detections.push(when.saturating_since(*k));
                }
            }
            _ => {}
        }
    }
    Ok(detections)
}

/// Rule 3: at most one live incarnation of every job master at every simulated instant. A node's kill stops its
/// incarnations.
pub fn one_live_incarnation(events: &Events) -> Result<(), String> {
    let mut live = foreman::core::invariants::LiveIncarnations::default();
    for (at, node, seen) in events {
        match seen {
            Seen::TaskLive { task, epoch } => {
                let t = foreman::core::ids::TaskId::parse(task).map_err(|e| e.to_string())?;
                live.on_start(*at, &t, foreman::core::ids::Epoch(*epoch), node).map_err(|v| v.to_string())?;
            }
            Seen::TaskStopped { task, epoch, .. } => {
                let t = foreman::core::ids::TaskId::parse(task).map_err(|e| e.to_string())?;
                live.on_stop(*at, &t, foreman::core::ids::Epoch(*epoch), node).map_err(|v| v.to_string())?;
            }
            Seen::Killed => live.on_node_down(node),
            _ => {}
        }
    }
    Ok(())
}

/// p50 / p99 / max of a sample, for the figures a scenario prints.
pub fn summary(mut xs: Vec<Duration>) -> String {
    if xs.is_empty() {
        return "no samples".into();
    }
    xs.sort();
    let pick = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
    format!("n={} p50={:?} p99={:?} max={:?}", xs.len(), pick(0.5), pick(0.99), xs[xs.len() - 1])
}
