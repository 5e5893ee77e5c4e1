//! The safety checks over the executors' logs and the test's own record of what it did to their processes: rule 3
//! (one live incarnation of each task at every instant, by the core's checker the simulation uses too) and rule 5
//! (a canceled job never starts again, with the reasoning of `sim/checks/cancel.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use foreman::core::ids::Epoch;
use foreman::core::invariants::{Id, LiveIncarnations, NotRunning, Rule, Stopped, Violation};
use foreman::core::time::Time;

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

/// A log instant (µs since the Unix epoch) as the core's time: milliseconds since `origin_us`.
fn core_time(origin_us: i64, us: i64) -> Time {
    Time::from_millis(u64::try_from((us - origin_us) / 1_000).unwrap_or(0))
}

/// Rule 3 over the executors' events, by the core's checker (the simulation's too): at most one live incarnation
/// of each task at every instant, and each task's incarnations start in strictly increasing epoch order. A
/// SIGKILL ends a process's incarnations; a SIGSTOP freezes them until the SIGCONT, after which each is live again
/// once it acts (a checkpoint) or once [`RESUME_GRACE`] passed without its stop line.
pub fn one_live_incarnation(origin_us: i64, events: &[Event]) -> Result<IncarnationSummary, Violation> {
    let mut live = LiveIncarnations::new(RESUME_GRACE);
    let mut summary = IncarnationSummary::default();
    for (at_us, node, seen) in events {
        let at = core_time(origin_us, *at_us);
        for went_on in live.advance(at)? {
            summary.resumed.push(format!("{}@{} on {}: went on running", went_on.task, went_on.epoch, went_on.node));
        }
        match seen {
            Seen::Started { task, epoch } => {
                live.on_start(at, task, *epoch, node)?;
                summary.starts += 1;
            }
            Seen::Stopped { task, epoch, why } => {
                let inconsistent = |what: &str| {
                    let detail = format!("the logs say {task} epoch {epoch} stopped on {node} {what}");
                    let ids = [Id::Task(task.clone()), Id::Epoch(Epoch(*epoch)), Id::Node(node.clone())];
                    Violation::new(Rule::ConsistentStory, at, detail).with(ids)
                };
                match live.on_stop(task, *epoch, node) {
                    Err(NotRunning) => return Err(inconsistent("but was not running there")),
                    Ok(Stopped::WhileFrozen) => return Err(inconsistent("while the process was stopped")),
                    Ok(Stopped::AfterResume(resumed)) => {
                        let after = at - resumed;
                        summary.slowest_stop = summary.slowest_stop.max(after);
                        summary
                            .resumed
                            .push(format!("{task}@{epoch} on {node}: {why} {} after the SIGCONT", secs(after)));
                    }
                    Ok(Stopped::WasLive) => {}
                }
                *summary.stops.entry(why.clone()).or_default() += 1;
            }
            // A resumed incarnation that acts is live from then on.
            Seen::Checkpoint { task, epoch } => {
                if let Some(resumed) = live.on_acted(at, task, *epoch, node)? {
                    summary
                        .resumed
                        .push(format!("{task}@{epoch} on {node}: acted {} after the SIGCONT", secs(at - resumed)));
                }
            }
            Seen::Fault(Fault::Killed) => {
                *summary.stops.entry("killed".to_owned()).or_default() += live.on_node_killed(node);
            }
            Seen::Fault(Fault::Paused) => live.on_node_paused(node),
            Seen::Fault(Fault::Resumed) => live.on_node_resumed(at, node),
        }
    }
    for went_on in live.advance(Time::NEVER)? {
        summary.resumed.push(format!("{}@{} on {}: went on running", went_on.task, went_on.epoch, went_on.node));
    }
    summary.tasks = live.tasks_seen();
    Ok(summary)
}

/// Rule 5 over the executors' events (as in `sim/checks/cancel.rs`): once a cancel was acknowledged, no job-master
/// incarnation newer than the one the reply named starts, and once that one stopped, nothing of the job starts.
pub fn canceled_never_restart(
    origin_us: i64,
    events: &[Event],
    cancels: &BTreeMap<String, (i64, JobView)>,
) -> Result<(), Violation> {
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
                    let broken = |detail: String| {
                        let ids = [
                            Id::Job(job.clone()),
                            Id::Task(task.clone()),
                            Id::Epoch(Epoch(*epoch)),
                            Id::Node(node.clone()),
                        ];
                        Err(Violation::new(Rule::CanceledNeverRestart, core_time(origin_us, *at), detail).with(ids))
                    };
                    if task == job && *epoch > named {
                        return broken(format!(
                            "job master {task} epoch {epoch} started on {node}, newer than epoch {named} named by the \
                             cancel acknowledged at {}",
                            story_time(origin_us, cancels[job].0)
                        ));
                    }
                    if task != job && of_job(task, job) && ended.contains_key(job) {
                        return broken(format!(
                            "{task} epoch {epoch} started on {node} after job {job} was canceled and its job master \
                             stopped"
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
    use foreman::core::invariants::Class;

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
            "2025-11-29T11:03:01.000000Z DEBUG foreman::framework::checkpoint: checkpoint written task=j/w1 epoch=7 seq=3",
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
        let ms = 1_000;
        let events = [
            started(0, "a", "j", 1),
            stopped(10 * ms, "a", "j", 1),
            started(20 * ms, "b", "j", 2),
            fault(30 * ms, "b", Fault::Killed),
            started(40 * ms, "a", "j", 3),
            // Frozen while paused; stops within the grace of its resume.
            fault(50 * ms, "a", Fault::Paused),
            started(60 * ms, "b", "j", 4),
            fault(70 * ms, "a", Fault::Resumed),
            stopped(80 * ms, "a", "j", 3),
        ];
        let summary = one_live_incarnation(0, &events).expect("no overlap");
        assert_eq!((summary.starts, summary.tasks), (4, 1));
        assert_eq!(summary.stops.get("killed"), Some(&1));
        assert_eq!(summary.slowest_stop, Duration::from_millis(10));
        assert_eq!(summary.resumed, ["j@3 on a: fenced 0.010s after the SIGCONT"]);
    }

    #[test]
    fn rule_3_catches_two_live_incarnations() {
        let (ms, grace) = (1_000, RESUME_GRACE.as_micros() as i64);
        let overlap = [started(0, "a", "j", 1), started(5 * ms, "b", "j", 2)];
        let v = one_live_incarnation(0, &overlap).unwrap_err();
        assert_eq!((v.rule, v.at), (Rule::OneLiveIncarnation, Time::from_millis(5)));
        assert_eq!(
            v.to_string(),
            "safety rule 3 (at most one live incarnation) at 0.005s: j epoch 2 started on b while epoch 1 is live on a"
        );
        let replayed = [started(0, "a", "j", 2), stopped(ms, "a", "j", 2), started(2 * ms, "b", "j", 2)];
        let v = one_live_incarnation(0, &replayed).unwrap_err();
        assert_eq!((v.rule, v.at), (Rule::OneLiveIncarnation, Time::from_millis(2)));
        assert!(v.detail.contains("after epoch 2 had started"), "{v}");
        let paused = [started(0, "a", "j", 1), fault(ms, "a", Fault::Paused), started(2 * ms, "b", "j", 2)];
        let acted = [&paused[..], &[fault(3 * ms, "a", Fault::Resumed), checkpoint(4 * ms, "a", "j", 1)]].concat();
        let v = one_live_incarnation(0, &acted).unwrap_err();
        assert_eq!((v.rule, v.at), (Rule::OneLiveIncarnation, Time::from_millis(4)));
        assert!(v.detail.contains("acted on a after a resume"), "{v}");
        let lingered =
            [&paused[..], &[fault(3 * ms, "a", Fault::Resumed), stopped(5 * ms + grace, "a", "j", 1)]].concat();
        let v = one_live_incarnation(0, &lingered).unwrap_err();
        assert_eq!(v.rule, Rule::OneLiveIncarnation);
        assert!(v.detail.contains("did not stop within"), "{v}");
        // Inconsistent logs are no broken rule: the reader's story cannot be told.
        let frozen = [&paused[..], &[stopped(3 * ms, "a", "j", 1)]].concat();
        let v = one_live_incarnation(0, &frozen).unwrap_err();
        assert_eq!((v.class(), v.rule), (Class::Crash, Rule::ConsistentStory));
        assert!(v.detail.contains("while the process was stopped"), "{v}");
        let unknown = [stopped(0, "a", "j", 1)];
        let v = one_live_incarnation(0, &unknown).unwrap_err();
        assert_eq!((v.rule, v.task()), (Rule::ConsistentStory, Some("j")));
        assert!(v.detail.contains("but was not running there"), "{v}");
    }

    #[test]
    fn rule_5_catches_a_canceled_job_starting_again() {
        let view = |epoch| JobView {
            id: "j".into(),
            job_type: "fake".into(),
            project: None,
            state: "canceling".into(),
            restarts: 0,
            epoch,
            executor_id: None,
            resources: vec![],
        };
        let cancels = BTreeMap::from([("j".to_owned(), (10, view(1)))]);
        let fine = [started(0, "a", "j", 1), started(11, "a", "j/w0", 1_000_001), stopped(12, "a", "j", 1)];
        assert!(canceled_never_restart(0, &fine, &cancels).is_ok());
        let newer = [started(0, "a", "j", 1), stopped(11, "a", "j", 1), started(12, "b", "j", 2)];
        let v = canceled_never_restart(0, &newer, &cancels).unwrap_err();
        assert_eq!((v.class(), v.rule, v.rule.number()), (Class::Safety, Rule::CanceledNeverRestart, Some(5)));
        assert_eq!(v.ids[..3], [Id::Job("j".into()), Id::Task("j".into()), Id::Epoch(Epoch(2))]);
        assert!(v.detail.contains("newer than epoch 1"), "{v}");
        let worker = [started(0, "a", "j", 1), stopped(11, "a", "j", 1), started(12, "b", "j/w0", 1_000_002)];
        let v = canceled_never_restart(0, &worker, &cancels).unwrap_err();
        assert_eq!((v.rule, v.task()), (Rule::CanceledNeverRestart, Some("j/w0")));
        assert!(v.detail.contains("its job master stopped"), "{v}");
    }
}
