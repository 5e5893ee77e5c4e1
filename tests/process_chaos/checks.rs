//! The safety checks over the executors' logs and the test's own record of what it did to their processes: rule 3
//! (one live incarnation of each task at every instant) and rule 5 (a canceled job never starts again), with the
//! reasoning of the simulation's checkers (`sim/checks/incarnations.rs`, `sim/checks/cancel.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::JobView;
use crate::{secs, Fault};

/// A resumed incarnation that neither acted nor stopped this long after its process's SIGCONT counts as live. A
/// fenced task stops the moment its process runs again: 2–5 ms after the SIGCONT on the 2-core machine; the
/// grace leaves room for a loaded one.
pub const RESUME_GRACE: Duration = Duration::from_millis(250);

/// What one event says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    Started { task: String, epoch: u64 },
    Stopped { task: String, epoch: u64, why: String },
    Checkpoint { task: String, epoch: u64 },
    Fault(Fault),
}

/// One event: its wall-clock instant (µs), the executor process's name, what happened.
pub type Event = (i64, String, Seen);

/// A log instant (µs since the Unix epoch) as the story's time, from `origin_us`.
fn story_time(origin_us: i64, us: i64) -> String {
    format!("t={:.3}s", (us - origin_us) as f64 / 1e6)
}

/// `2025-01-31T12:34:56.123456Z` (tracing's default timestamp) as microseconds since the Unix epoch.
fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let digits: String = fraction.chars().chain(std::iter::repeat('0')).take(6).collect();
    let micros = digits.parse::<i64>().ok()?;
    // Days from the civil date (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3_600 + mm * 60 + ss) * 1_000_000) + micros)
}

/// The value of field `name` (`name=value`) in a log line's words.
fn field<'a>(words: &[&'a str], name: &str) -> Option<&'a str> {
    words.iter().find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
}

/// The task events of one executor's log (all its processes, in order).
pub fn parse_log(node: &str, text: &str) -> Result<Vec<Event>, String> {
    let mut events = vec![];
    for line in text.lines() {
        let kind = ["task started", "task stopped", "checkpoint written"]
            .into_iter()
            .find(|k| line.contains(&format!(": {k} ")));
        let Some(kind) = kind else { continue };
        let words: Vec<&str> = line.split_whitespace().collect();
        let bad = || format!("{node}: cannot read the log line {line:?}");
        let at = words.first().and_then(|w| parse_timestamp(w)).ok_or_else(bad)?;
        let task = field(&words, "task").ok_or_else(bad)?.to_owned();
        let epoch = field(&words, "epoch").and_then(|e| e.parse().ok()).ok_or_else(bad)?;
        let seen = match kind {
            "task started" => Seen::Started { task, epoch },
            "task stopped" => Seen::Stopped { task, epoch, why: field(&words, "why").ok_or_else(bad)?.to_owned() },
            _ => Seen::Checkpoint { task, epoch },
        };
        events.push((at, node.to_owned(), seen));
    }
    Ok(events)
}

/// Where one incarnation stands (as in `sim/checks/incarnations.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    Live,
    /// Its process is stopped: it cannot act.
    Frozen,
    /// Its process was resumed at this instant (µs): live again once it acts or [`RESUME_GRACE`] passed.
    Resumed(i64),
}

#[derive(Clone, Debug)]
struct Incarnation {
    epoch: u64,
    node: String,
    standing: Standing,
}

/// What the rule-3 check went through.
#[derive(Debug, Default)]
pub struct IncarnationSummary {
    pub starts: usize,
    pub tasks: usize,
    /// Stops by why (`finished`, `executor-fenced`, ..., and `killed` for those ended by a SIGKILL).
    pub stops: BTreeMap<String, usize>,
    /// For each incarnation frozen by a pause: how it came out (stopped or acted how long after the SIGCONT, or
    /// still running: the pause was shorter than every fence).
    pub resumed: Vec<String>,
    /// The longest time from a SIGCONT to a resumed incarnation's stop line.
    pub slowest_stop: Duration,
}

/// Rule 3 over the executors' events: at most one live incarnation of each task at every instant, and each task's
/// incarnations start in strictly increasing epoch order.
pub fn one_live_incarnation(origin_us: i64, events: &[Event]) -> Result<IncarnationSummary, String> {
    let grace = RESUME_GRACE.as_micros() as i64;
    let mut tasks: BTreeMap<String, Vec<Incarnation>> = BTreeMap::new();
    let mut highest: BTreeMap<String, u64> = BTreeMap::new();
    let mut summary = IncarnationSummary::default();
    let promote = |tasks: &mut BTreeMap<String, Vec<Incarnation>>, now: i64, summary: &mut IncarnationSummary| {
        for (task, incs) in tasks.iter_mut() {
            for i in 0..incs.len() {
                let Standing::Resumed(at) = incs[i].standing else { continue };
                if at + grace >= now {
                    continue;
                }
                if let Some(other) = incs.iter().find(|o| o.standing == Standing::Live) {
                    return Err(format!(
                        "safety rule 3 at {}: {task} epoch {} on {} was resumed and did not stop within {} while \
                         epoch {} is live on {}",
                        story_time(origin_us, at),
                        incs[i].epoch,
                        incs[i].node,
                        secs(RESUME_GRACE),
                        other.epoch,
                        other.node
                    ));
                }
                summary.resumed.push(format!("{task}@{} on {}: went on running", incs[i].epoch, incs[i].node));
                incs[i].standing = Standing::Live;
            }
        }
        Ok(())
    };
    for (at, node, seen) in events {
        promote(&mut tasks, *at, &mut summary)?;
        match seen {
            Seen::Started { task, epoch } => {
                let incs = tasks.entry(task.clone()).or_default();
                if let Some(other) = incs.iter().find(|o| o.standing == Standing::Live) {
                    return Err(format!(
                        "safety rule 3 at {}: {task} epoch {epoch} started on {node} while epoch {} is live on {}",
                        story_time(origin_us, *at),
                        other.epoch,
                        other.node
                    ));
                }
                let last = highest.entry(task.clone()).or_default();
                if *epoch <= *last {
                    return Err(format!(
                        "safety rule 3 at {}: {task} epoch {epoch} started on {node} after epoch {last} had started",
                        story_time(origin_us, *at)
                    ));
                }
                *last = *epoch;
                summary.starts += 1;
                incs.push(Incarnation { epoch: *epoch, node: node.clone(), standing: Standing::Live });
            }
            Seen::Stopped { task, epoch, why } => {
                let incs = tasks.entry(task.clone()).or_default();
                let Some(i) = incs.iter().position(|o| o.epoch == *epoch && o.node == *node) else {
                    return Err(format!(
                        "the logs are inconsistent at {}: {task} epoch {epoch} stopped on {node} but was not running \
                         there",
                        story_time(origin_us, *at)
                    ));
                };
                match incs[i].standing {
                    Standing::Frozen => {
                        return Err(format!(
                            "the logs are inconsistent at {}: {task} epoch {epoch} stopped on {node} while the \
                             process was stopped",
                            story_time(origin_us, *at)
                        ))
                    }
                    Standing::Resumed(resumed) => {
                        let after = Duration::from_micros((at - resumed).max(0) as u64);
                        summary.slowest_stop = summary.slowest_stop.max(after);
                        summary
                            .resumed
                            .push(format!("{task}@{epoch} on {node}: {why} {} after the SIGCONT", secs(after)));
                    }
                    Standing::Live => {}
                }
                incs.remove(i);
                *summary.stops.entry(why.clone()).or_default() += 1;
            }
            // A resumed incarnation that acts is live from then on.
            Seen::Checkpoint { task, epoch } => {
                let incs = tasks.entry(task.clone()).or_default();
                let acted = incs
                    .iter()
                    .position(|o| o.epoch == *epoch && o.node == *node && matches!(o.standing, Standing::Resumed(_)));
                if let Some(i) = acted {
                    if let Some(other) = incs.iter().find(|o| o.standing == Standing::Live) {
                        return Err(format!(
                            "safety rule 3 at {}: {task} epoch {epoch} checkpointed on {node} after a resume while \
                             epoch {} is live on {}",
                            story_time(origin_us, *at),
                            other.epoch,
                            other.node
                        ));
                    }
                    if let Standing::Resumed(resumed) = incs[i].standing {
                        let after = Duration::from_micros((at - resumed).max(0) as u64);
                        summary
                            .resumed
                            .push(format!("{task}@{epoch} on {node}: acted {} after the SIGCONT", secs(after)));
                    }
                    incs[i].standing = Standing::Live;
                }
            }
            Seen::Fault(Fault::Killed) => {
                for incs in tasks.values_mut() {
                    let before = incs.len();
                    incs.retain(|o| o.node != *node);
                    *summary.stops.entry("killed".to_owned()).or_default() += before - incs.len();
                }
            }
            Seen::Fault(fault) => {
                for incs in tasks.values_mut() {
                    for o in incs.iter_mut().filter(|o| o.node == *node) {
                        o.standing = if *fault == Fault::Paused { Standing::Frozen } else { Standing::Resumed(*at) };
                    }
                }
            }
        }
    }
    promote(&mut tasks, i64::MAX, &mut summary)?;
    summary.tasks = highest.len();
    Ok(summary)
}

/// Rule 5 over the executors' events (as in `sim/checks/cancel.rs`): once a cancel was acknowledged, no job-master
/// incarnation newer than the one the reply named starts, and once that one stopped, nothing of the job starts.
pub fn canceled_never_restart(
    origin_us: i64,
    events: &[Event],
    cancels: &BTreeMap<String, (i64, JobView)>,
) -> Result<(), String> {
    let of_job = |task: &str, job: &str| task == job || task.strip_prefix(job).is_some_and(|r| r.starts_with('/'));
    let mut ended: BTreeMap<String, i64> = BTreeMap::new();
    for (at, node, seen) in events {
        let acknowledged = |job: &str| cancels.get(job).filter(|(when, _)| when <= at).map(|(_, v)| v.epoch);
        match seen {
            Seen::Stopped { task, epoch, .. } if acknowledged(task).is_some_and(|named| *epoch >= named) => {
                ended.entry(task.clone()).or_insert(*at);
            }
            Seen::Started { task, epoch } => {
                for job in cancels.keys() {
                    let Some(named) = acknowledged(job) else { continue };
                    if task == job && *epoch > named {
                        return Err(format!(
                            "safety rule 5 at {}: job master {task} epoch {epoch} started on {node}, newer than epoch \
                             {named} named by the cancel acknowledged at {}",
                            story_time(origin_us, *at),
                            story_time(origin_us, cancels[job].0)
                        ));
                    }
                    if task != job && of_job(task, job) && ended.contains_key(job) {
                        return Err(format!(
                            "safety rule 5 at {}: {task} epoch {epoch} started on {node} after job {job} was canceled \
                             and its job master stopped",
                            story_time(origin_us, *at)
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The checks' own tests: they run in the plain `cargo test`.
#[cfg(test)]
mod tests {
    use super::*;

    fn started(at: i64, node: &str, task: &str, epoch: u64) -> Event {
        (at, node.to_owned(), Seen::Started { task: task.to_owned(), epoch })
    }

    fn stopped(at: i64, node: &str, task: &str, epoch: u64) -> Event {
        (at, node.to_owned(), Seen::Stopped { task: task.to_owned(), epoch, why: "fenced".to_owned() })
    }

    fn fault(at: i64, node: &str, f: Fault) -> Event {
        (at, node.to_owned(), Seen::Fault(f))
    }

    fn checkpoint(at: i64, node: &str, task: &str, epoch: u64) -> Event {
        (at, node.to_owned(), Seen::Checkpoint { task: task.to_owned(), epoch })
    }

    #[test]
    fn timestamps_and_log_lines_are_read() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00.000001Z"), Some(1));
        assert_eq!(parse_timestamp("2000-03-01T00:00:01.5Z"), Some(951_868_801_500_000));
        assert_eq!(parse_timestamp("2025-11-29T11:03:00.123456"), None);
        let log = [
            "2025-11-29T11:03:00.123456Z  INFO foreman::executor: task started executor=exec0 task=j/w1 epoch=7",
            "2025-11-29T11:03:01.000000Z DEBUG foreman::jobs::fake_run: checkpoint written task=j/w1 epoch=7 counter=3",
            "2025-11-29T11:03:02.000000Z  INFO foreman::executor: task stopped executor=exec0 task=j/w1 epoch=7 \
             why=executor-fenced",
            "2025-11-29T11:03:03.000000Z  INFO foreman::executor: registered executor=exec0 id=4",
        ]
        .join("\n");
        let events = parse_log("exec0", &log).expect("readable");
        let base = parse_timestamp("2025-11-29T11:03:00.123456Z").expect("a timestamp");
        assert_eq!(events.len(), 3);
        assert_eq!(events[0], started(base, "exec0", "j/w1", 7));
        assert_eq!(events[1], checkpoint(base + 876_544, "exec0", "j/w1", 7));
        let why = Seen::Stopped { task: "j/w1".into(), epoch: 7, why: "executor-fenced".into() };
        assert_eq!(events[2], (base + 1_876_544, "exec0".to_owned(), why));
        assert!(parse_log("exec0", "garbage: task started task=x").is_err());
    }

    #[test]
    fn rule_3_lets_one_incarnation_follow_another() {
        let events = [
            started(0, "a", "j", 1),
            stopped(10, "a", "j", 1),
            started(20, "b", "j", 2),
            fault(30, "b", Fault::Killed),
            started(40, "a", "j", 3),
            // Frozen while paused; stops within the grace of its resume.
            fault(50, "a", Fault::Paused),
            started(60, "b", "j", 4),
            fault(70, "a", Fault::Resumed),
            stopped(80, "a", "j", 3),
        ];
        let summary = one_live_incarnation(0, &events).expect("no overlap");
        assert_eq!((summary.starts, summary.tasks), (4, 1));
        assert_eq!(summary.stops.get("killed"), Some(&1));
    }

    #[test]
    fn rule_3_catches_two_live_incarnations() {
        let grace = RESUME_GRACE.as_micros() as i64;
        let overlap = [started(0, "a", "j", 1), started(5, "b", "j", 2)];
        assert!(one_live_incarnation(0, &overlap).unwrap_err().contains("started on b while epoch 1"));
        let replayed = [started(0, "a", "j", 2), stopped(1, "a", "j", 2), started(2, "b", "j", 2)];
        assert!(one_live_incarnation(0, &replayed).unwrap_err().contains("after epoch 2 had started"));
        let paused = [started(0, "a", "j", 1), fault(1, "a", Fault::Paused), started(2, "b", "j", 2)];
        let acted = [&paused[..], &[fault(3, "a", Fault::Resumed), checkpoint(4, "a", "j", 1)]].concat();
        assert!(one_live_incarnation(0, &acted).unwrap_err().contains("checkpointed on a after a resume"));
        let lingered = [&paused[..], &[fault(3, "a", Fault::Resumed), stopped(4 + grace, "a", "j", 1)]].concat();
        assert!(one_live_incarnation(0, &lingered).unwrap_err().contains("did not stop within"));
    }

    #[test]
    fn rule_5_catches_a_canceled_job_starting_again() {
        let view = |epoch| JobView {
            id: "j".into(),
            job_type: "fake".into(),
            state: "canceling".into(),
            restarts: 0,
            epoch,
            executor_id: None,
        };
        let cancels = BTreeMap::from([("j".to_owned(), (10, view(1)))]);
        let fine = [started(0, "a", "j", 1), started(11, "a", "j/w0", 1_000_001), stopped(12, "a", "j", 1)];
        assert!(canceled_never_restart(0, &fine, &cancels).is_ok());
        let newer = [started(0, "a", "j", 1), stopped(11, "a", "j", 1), started(12, "b", "j", 2)];
        assert!(canceled_never_restart(0, &newer, &cancels).unwrap_err().contains("newer than epoch 1"));
        let worker = [started(0, "a", "j", 1), stopped(11, "a", "j", 1), started(12, "b", "j/w0", 1_000_002)];
        assert!(canceled_never_restart(0, &worker, &cancels).unwrap_err().contains("its job master stopped"));
    }
}
