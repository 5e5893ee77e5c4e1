//! Checkers over a run's recorded events. Each returns the first broken rule with the ids and simulated time.

mod history;
pub use history::job_history;

use std::collections::BTreeMap;
use std::time::Duration;

use foreman::core::time::Time;
use foreman::executor::ExecutorObservation;
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

/// Detection and no false alarms (design.md §6): every executor declared offline had no acknowledged heartbeat
/// for a TTL before (less network slack), and the leader declared it within TTL + check interval of the last time
/// it heard from it (or gave it a fresh TTL at the start of its term) — plus the suspect hold when that leader
/// held evictions meanwhile (most executors expired at once). Returns every declaration's timing.
pub fn offline_declarations(
    clock: &Clock,
    events: &Events,
    ttl: Duration,
    check: Duration,
    hold: Duration,
    slack: Duration,
) -> Result<Vec<Detection>, String> {
    let mut held: BTreeMap<String, Vec<Time>> = BTreeMap::new();
    // Per node: its pauses so far, [from, to) (an open one ends at the declaration).
    let mut paused: BTreeMap<String, Vec<(Time, Option<Time>)>> = BTreeMap::new();
    let mut last_ack: BTreeMap<u64, Time> = BTreeMap::new();
    let mut killed: BTreeMap<String, Time> = BTreeMap::new();
    let mut detections = vec![];
    for (at, node, seen) in events {
        match seen {
            // The evidence against a verdict is when the leader could have heard the executor: no earlier than the
            // acknowledged heartbeat's send time (its arrival can be much later, after a pause).
            Seen::Exec(ExecutorObservation::HeartbeatAcked { id, sent }) => {
                let sent = clock.at(*sent);
                let e = last_ack.entry(*id).or_insert(sent);
                *e = (*e).max(sent);
            }
            Seen::Exec(ExecutorObservation::Registered { id }) => {
                last_ack.insert(*id, *at);
            }
            Seen::Killed => {
                killed.insert(node.clone(), *at);
            }
            Seen::Master(Observation::EvictionsHeld { at: when, .. }) => {
                held.entry(node.clone()).or_default().push(clock.at(*when));
            }
            Seen::Paused => paused.entry(node.clone()).or_default().push((*at, None)),
            Seen::Resumed => {
                if let Some(last) = paused.entry(node.clone()).or_default().last_mut() {
                    last.1.get_or_insert(*at);
                }
            }
            Seen::Master(Observation::ExecutorOffline { id, name, at: when, last_heard }) => {
                let (when, heard) = (clock.at(*when), clock.at(*last_heard));
                let was_held = held.get(node).is_some_and(|ts| ts.iter().any(|t| heard <= *t && *t <= when));
                // A leader that was paused could not look meanwhile: its pause within [heard, when] adds to the bound.
                let frozen: Duration = paused
                    .get(node)
                    .into_iter()
                    .flatten()
                    .map(|(from, to)| to.unwrap_or(when).min(when).saturating_since((*from).max(heard)))
                    .sum();
                let bound = if was_held { ttl + check + hold } else { ttl + check } + frozen;
                let ack = last_ack.get(id).copied().unwrap_or(Time::ZERO);
                if when.saturating_since(ack) + slack < ttl {
                    return Err(format!(
                        "no false alarms: {node} declared executor {id} ({name}) offline at {when}, but a heartbeat \
                         was acknowledged at {ack}, less than the TTL {ttl:?} before"
                    ));
                }
                let took = when.saturating_since(heard);
                if took > bound + slack {
                    return Err(format!(
                        "detection bound: {node} declared executor {id} ({name}) offline at {when}, {took:?} after it \
                         last heard from it at {heard}; the bound is TTL + check interval{}{} = {bound:?}",
                        if was_held { " + suspect hold" } else { "" },
                        if frozen > Duration::ZERO { " + the leader's pause" } else { "" }
                    ));
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

/// Where one incarnation stands, for [`one_live_incarnation`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    Live,
    /// Its node is paused: it cannot act.
    Frozen,
    /// Its node was resumed at this instant: it is live from the next instant on unless it stops at this one (a
    /// fenced task stops the moment it is polled again, before it can act).
    Resumed(Time),
}

#[derive(Clone, Debug)]
struct Incarnation {
    epoch: u64,
    node: String,
    standing: Standing,
}

/// Rule 3: at most one live incarnation of every job master and every worker at every simulated instant, and
/// each task's incarnations start in strictly increasing epoch order. Fed by the executors' own task starts and
/// stops; a node's kill stops its incarnations, and a paused node's incarnations are not live until it resumes.
pub fn one_live_incarnation(events: &Events) -> Result<(), String> {
    let mut tasks: BTreeMap<String, Vec<Incarnation>> = BTreeMap::new();
    let mut highest: BTreeMap<String, u64> = BTreeMap::new();
    // Resumed incarnations become live once time moves past their resume instant.
    fn promote(tasks: &mut BTreeMap<String, Vec<Incarnation>>, now: Time) -> Result<(), String> {
        for (task, incs) in tasks.iter_mut() {
            for i in 0..incs.len() {
                let Standing::Resumed(at) = incs[i].standing else { continue };
                if at >= now {
                    continue;
                }
                if let Some(other) = incs.iter().find(|o| o.standing == Standing::Live) {
                    return Err(format!(
                        "safety rule 3 at {at}: {task} epoch {} resumed on {} while epoch {} is live on {}",
                        incs[i].epoch, incs[i].node, other.epoch, other.node
                    ));
                }
                incs[i].standing = Standing::Live;
            }
        }
        Ok(())
    }
    for (at, node, seen) in events {
        promote(&mut tasks, *at)?;
        match seen {
            Seen::Exec(ExecutorObservation::TaskStarted { task, epoch }) => {
                let incs = tasks.entry(task.clone()).or_default();
                if let Some(other) = incs.iter().find(|o| o.standing == Standing::Live) {
                    return Err(format!(
                        "safety rule 3 at {at}: {task} epoch {epoch} started on {node} while epoch {} is live on {}",
                        other.epoch, other.node
                    ));
                }
                let last = highest.entry(task.clone()).or_default();
                if *epoch <= *last {
                    return Err(format!(
                        "safety rule 3 at {at}: {task} epoch {epoch} started on {node} after epoch {last} had started"
                    ));
                }
                *last = *epoch;
                incs.push(Incarnation { epoch: *epoch, node: node.clone(), standing: Standing::Live });
            }
            Seen::Exec(ExecutorObservation::TaskStopped { task, epoch, .. }) => {
                let incs = tasks.entry(task.clone()).or_default();
                let Some(i) = incs.iter().position(|o| o.epoch == *epoch && o.node == *node) else {
                    return Err(format!(
                        "recorder at {at}: {task} epoch {epoch} stopped on {node} but never started there"
                    ));
                };
                incs.remove(i);
            }
            Seen::Killed => {
                for incs in tasks.values_mut() {
                    incs.retain(|o| o.node != *node);
                }
            }
            Seen::Paused | Seen::Resumed => {
                for incs in tasks.values_mut() {
                    for o in incs.iter_mut().filter(|o| o.node == *node) {
                        o.standing = if *seen == Seen::Paused { Standing::Frozen } else { Standing::Resumed(*at) };
                    }
                }
            }
            _ => {}
        }
    }
    promote(&mut tasks, Time::NEVER)
}

/// Checkpoints never go backwards: every acknowledged checkpoint of a worker is at least its highest so far.
/// Within one incarnation it is the next step or the same one again (a retried write), never a skip; a new
/// incarnation may start above the highest acknowledged one (its predecessor's last write can land unacknowledged,
/// e.g. when its executor dies), never below.
pub fn checkpoints_forward(events: &Events) -> Result<(), String> {
    let mut high: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (at, node, seen) in events {
        if let Seen::Exec(ExecutorObservation::Checkpoint { task, epoch, counter }) = seen {
            let (h, by) = high.entry(task.clone()).or_default();
            let skip = *by == *epoch && *counter > *h + 1;
            if *counter < *h || skip {
                return Err(format!(
                    "checkpoints at {at}: {task} epoch {epoch} on {node} checkpointed {counter} after {h} (by epoch \
                     {by}) had been"
                ));
            }
            (*h, *by) = (*counter, *epoch);
        }
    }
    Ok(())
}

/// The task ids of a job: its job master (the job id) and its workers (`<job>/<worker>`).
fn of_job(task: &str, job: &str) -> bool {
    task == job || task.strip_prefix(job).is_some_and(|rest| rest.starts_with('/'))
}

/// A canceled job never starts again: once a cancel was acknowledged, no job-master incarnation newer than the
/// one the cancel reply named starts (the named one may still be on its way: it was dispatched before), and once
/// that incarnation stopped, nothing of the job starts at all (a worker dispatched just before the cancel reached
/// its job master may still start, and is stopped by it).
pub fn canceled_never_restart(events: &Events) -> Result<(), String> {
    // Job → (when the cancel was acknowledged, the newest job-master epoch the reply named).
    let mut canceled: BTreeMap<String, (Time, u64)> = BTreeMap::new();
    let mut ended: BTreeMap<String, Time> = BTreeMap::new();
    for (at, node, seen) in events {
        match seen {
            Seen::JobCanceled { id, epoch, .. } => {
                canceled.entry(id.clone()).or_insert((*at, *epoch));
            }
            Seen::Exec(ExecutorObservation::TaskStopped { task, epoch, .. })
                if canceled.get(task).is_some_and(|(_, named)| epoch >= named) =>
            {
                ended.entry(task.clone()).or_insert(*at);
            }
            Seen::Exec(ExecutorObservation::TaskStarted { task, epoch }) => {
                for (job, (when, named)) in &canceled {
                    if task == job && epoch > named {
                        return Err(format!(
                            "cancel at {at}: job master {task} epoch {epoch} started on {node}, newer than epoch \
                             {named} named by the cancel acknowledged at {when}"
                        ));
                    }
                    if of_job(task, job) && task != job && ended.contains_key(job) {
                        return Err(format!(
                            "cancel at {at}: {task} epoch {epoch} started on {node} after job {job} was canceled and \
                             its job master stopped"
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Placement: an executor never runs more tasks than its capacity (every task costs one slot here), and never
/// starts one under an id the leader has declared offline.
pub fn placement_within_bounds(events: &Events, capacity: u32) -> Result<(), String> {
    let mut running: BTreeMap<String, u32> = BTreeMap::new();
    let mut id_of: BTreeMap<String, u64> = BTreeMap::new();
    let mut offline: std::collections::BTreeSet<u64> = Default::default();
    for (at, node, seen) in events {
        match seen {
            Seen::Exec(ExecutorObservation::Registered { id }) => {
                id_of.insert(node.clone(), *id);
            }
            Seen::Master(Observation::ExecutorOffline { id, .. }) => {
                offline.insert(*id);
            }
            Seen::Exec(ExecutorObservation::TaskStarted { task, .. }) => {
                let n = running.entry(node.clone()).or_default();
                *n += 1;
                if *n > capacity {
                    return Err(format!("placement at {at}: {node} runs {n} tasks (capacity {capacity}) with {task}"));
                }
                if let Some(id) = id_of.get(node).filter(|id| offline.contains(id)) {
                    return Err(format!(
                        "placement at {at}: {task} started on {node}, whose id {id} was declared offline"
                    ));
                }
            }
            Seen::Exec(ExecutorObservation::TaskStopped { .. }) => {
                if let Some(n) = running.get_mut(node) {
                    *n = n.saturating_sub(1);
                }
            }
            Seen::Killed => {
                running.remove(node);
                id_of.remove(node);
            }
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

/// The checkers themselves: each fails on a story that breaks its rule, and passes the same story kept.
#[cfg(test)]
mod tests {
    use super::*;
    use foreman::executor::StopWhy;

    fn at(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    fn ev(ms: u64, node: &str, seen: Seen) -> (Time, String, Seen) {
        (at(ms), node.to_owned(), seen)
    }

    fn started(task: &str, epoch: u64) -> Seen {
        Seen::Exec(ExecutorObservation::TaskStarted { task: task.into(), epoch })
    }

    fn stopped(task: &str, epoch: u64) -> Seen {
        Seen::Exec(ExecutorObservation::TaskStopped { task: task.into(), epoch, why: StopWhy::Fenced })
    }

    fn checkpoint(task: &str, epoch: u64, counter: u64) -> Seen {
        Seen::Exec(ExecutorObservation::Checkpoint { task: task.into(), epoch, counter })
    }

    #[test]
    fn one_live_incarnation_catches_overlaps_and_knows_pauses_and_kills() {
        let overlap =
            [ev(0, "e1", started("j/w0", 1)), ev(5, "e2", started("j/w0", 2)), ev(9, "e1", stopped("j/w0", 1))];
        assert!(one_live_incarnation(&overlap).unwrap_err().contains("safety rule 3"));
        let handover =
            [ev(0, "e1", started("j/w0", 1)), ev(5, "e1", stopped("j/w0", 1)), ev(6, "e2", started("j/w0", 2))];
        assert_eq!(one_live_incarnation(&handover), Ok(()));
        let older = [ev(0, "e1", started("j", 5)), ev(1, "e1", stopped("j", 5)), ev(2, "e2", started("j", 4))];
        assert!(one_live_incarnation(&older).unwrap_err().contains("after epoch 5"));
        let killed = [ev(0, "e1", started("j", 1)), ev(3, "e1", Seen::Killed), ev(4, "e2", started("j", 2))];
        assert_eq!(one_live_incarnation(&killed), Ok(()));
        // Paused: not live meanwhile; resumed and stopped at once (fenced): never live again.
        let mut paused = vec![
            ev(0, "e1", started("j", 1)),
            ev(1, "e1", Seen::Paused),
            ev(4, "e2", started("j", 2)),
            ev(9, "e1", Seen::Resumed),
            ev(9, "e1", stopped("j", 1)),
            ev(12, "e2", stopped("j", 2)),
        ];
        assert_eq!(one_live_incarnation(&paused), Ok(()));
        // ...but resumed and still running a moment later, beside its replacement: caught.
        paused[4] = ev(10, "e1", stopped("j", 1));
        assert!(one_live_incarnation(&paused).unwrap_err().contains("resumed on e1 while epoch 2 is live"));
        let phantom = [ev(0, "e1", stopped("j", 1))];
        assert!(one_live_incarnation(&phantom).unwrap_err().contains("never started"));
    }

    #[test]
    fn checkpoints_forward_allows_retries_and_unacknowledged_steps_across_incarnations_only() {
        let ok = [
            ev(0, "e1", checkpoint("j/w0", 1, 1)),
            ev(1, "e1", checkpoint("j/w0", 1, 2)),
            ev(2, "e1", checkpoint("j/w0", 1, 2)), // a retried write
            ev(3, "e2", checkpoint("j/w0", 2, 4)), // step 3 landed unacknowledged
        ];
        assert_eq!(checkpoints_forward(&ok), Ok(()));
        let back = [ev(0, "e1", checkpoint("j/w0", 1, 5)), ev(1, "e2", checkpoint("j/w0", 2, 4))];
        assert!(checkpoints_forward(&back).unwrap_err().contains("checkpointed 4 after 5"));
        let skip = [ev(0, "e1", checkpoint("j/w0", 1, 1)), ev(1, "e1", checkpoint("j/w0", 1, 3))];
        assert!(checkpoints_forward(&skip).is_err());
    }

    #[test]
    fn canceled_jobs_never_restart() {
        let cancel = Seen::JobCanceled { id: "j".into(), epoch: 1, state: 3 };
        let restarted = [ev(0, "e1", started("j", 1)), ev(1, "client", cancel.clone()), ev(2, "e2", started("j", 2))];
        assert!(canceled_never_restart(&restarted).unwrap_err().contains("newer than epoch 1"));
        // The incarnation the cancel named was dispatched before it: it may still start.
        let in_flight = [ev(1, "client", cancel.clone()), ev(2, "e2", started("j", 1)), ev(3, "e2", stopped("j", 1))];
        assert_eq!(canceled_never_restart(&in_flight), Ok(()));
        let late_worker = [
            ev(0, "e1", started("j", 1)),
            ev(1, "client", cancel.clone()),
            ev(2, "e2", started("j/w0", 10)), // dispatched just before the job master heard: allowed
            ev(3, "e1", stopped("j", 1)),
            ev(4, "e2", started("j/w1", 11)),
        ];
        assert!(canceled_never_restart(&late_worker).unwrap_err().contains("its job master stopped"));
        assert_eq!(canceled_never_restart(&late_worker[..4]), Ok(()));
        // Another job whose id starts the same is not this job.
        let other = [ev(1, "client", cancel), ev(2, "e2", started("jx", 1)), ev(3, "e2", started("jx/w0", 2))];
        assert_eq!(canceled_never_restart(&other), Ok(()));
    }

    #[test]
    fn detection_bound_knows_holds_and_a_paused_leader() {
        let clock = Clock::start();
        let (ttl, check, hold, slack) =
            (Duration::from_secs(10), Duration::from_millis(500), Duration::from_secs(10), Duration::from_millis(200));
        let offline = |when: u64| {
            Seen::Master(Observation::ExecutorOffline {
                id: 1,
                name: "e1".into(),
                at: clock.instant(at(when)),
                last_heard: clock.instant(at(0)),
            })
        };
        let check_of = |events: &[(Time, String, Seen)]| offline_declarations(&clock, events, ttl, check, hold, slack);
        assert!(check_of(&[ev(10_400, "m0", offline(10_400))]).is_ok());
        assert!(check_of(&[ev(12_000, "m0", offline(12_000))]).unwrap_err().contains("detection bound"));
        let held = Seen::Master(Observation::EvictionsHeld { held: 2, at: clock.instant(at(10_000)) });
        assert!(check_of(&[ev(10_000, "m0", held), ev(20_000, "m0", offline(20_000))]).is_ok());
        let paused = [ev(5_000, "m0", Seen::Paused), ev(9_000, "m0", Seen::Resumed), ev(14_000, "m0", offline(14_000))];
        assert!(check_of(&paused).is_ok());
        let other_paused =
            [ev(5_000, "m1", Seen::Paused), ev(9_000, "m1", Seen::Resumed), ev(14_000, "m0", offline(14_000))];
        assert!(check_of(&other_paused).is_err());
        // A false alarm: acknowledged 2 s before the declaration.
        let acked =
            |sent: u64| Seen::Exec(ExecutorObservation::HeartbeatAcked { id: 1, sent: clock.instant(at(sent)) });
        assert!(check_of(&[ev(8_400, "e1", acked(8_300)), ev(10_400, "m0", offline(10_400))])
            .unwrap_err()
            .contains("false alarms"));
        // An acknowledgement that arrives late (its executor was paused) is evidence only from its send time.
        assert!(check_of(&[ev(10_390, "e1", acked(0)), ev(10_400, "m0", offline(10_400))]).is_ok());
    }

    #[test]
    fn placement_within_capacity_and_never_on_an_offline_id() {
        let registered = |id| Seen::Exec(ExecutorObservation::Registered { id });
        let full = [ev(0, "e1", registered(1)), ev(1, "e1", started("a", 1)), ev(2, "e1", started("b", 2))];
        assert!(placement_within_bounds(&full, 1).unwrap_err().contains("capacity 1"));
        assert_eq!(placement_within_bounds(&full, 2), Ok(()));
        let offline = Seen::Master(Observation::ExecutorOffline {
            id: 1,
            name: "e1".into(),
            at: Clock::start().instant(at(5)),
            last_heard: Clock::start().instant(at(0)),
        });
        let on_offline = [ev(0, "e1", registered(1)), ev(5, "m0", offline), ev(6, "e1", started("a", 1))];
        assert!(placement_within_bounds(&on_offline, 8).unwrap_err().contains("declared offline"));
        let mut anew = on_offline.to_vec();
        anew.insert(2, ev(6, "e1", registered(2)));
        assert_eq!(placement_within_bounds(&anew, 8), Ok(()));
    }
}
