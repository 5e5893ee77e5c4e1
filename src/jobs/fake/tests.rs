use super::*;
use crate::core::job_master::EndedWhy;
use crate::core::workers::LostReason;

#[test]
fn parse_table() {
    let table: &[(&str, Result<(), &str>)] = &[
        (r#"{"workers": 3, "target": 100, "tick_ms": 10}"#, Ok(())),
        (r#"{"workers": 0, "target": 100, "tick_ms": 10}"#, Err("config.workers")),
        (r#"{"workers": 1001, "target": 100, "tick_ms": 10}"#, Err("config.workers")),
        (r#"{"workers": 1, "target": 0, "tick_ms": 10}"#, Ok(())),
        (r#"{"workers": 1, "target": 1000000001, "tick_ms": 10}"#, Err("config.target")),
        (r#"{"workers": 1, "target": 1, "tick_ms": 0}"#, Err("config.tick_ms")),
        (r#"{"workers": 1, "target": 1}"#, Err("config.tick_ms")),
        (r#"{"workers": -1, "target": 1, "tick_ms": 1}"#, Err("config.workers")),
        (r#"{"workers": 1, "target": "ten", "tick_ms": 1}"#, Err("config.target")),
        (r#"{"workers": 1, "target": 1, "tick_ms": 1, "speed": 2}"#, Err("config.speed")),
        (r#"[1, 2]"#, Err("config")),
        (r#"{"workers": 1,"#, Err("config")),
        // The failure knobs.
        (r#"{"workers": 1, "target": 10, "tick_ms": 1, "fail_every": 3, "restarts_max": 0}"#, Ok(())),
        (r#"{"workers": 1, "target": 10, "tick_ms": 1, "fail_at": 9, "fail_terminal": true}"#, Ok(())),
        (r#"{"workers": 1, "target": 10, "tick_ms": 1, "fail_every": 0}"#, Err("config.fail_every")),
        (r#"{"workers": 1, "target": 10, "tick_ms": 1, "fail_every": 11}"#, Err("config.fail_every")),
        (r#"{"workers": 1, "target": 10, "tick_ms": 1, "fail_at": 10}"#, Err("config.fail_at")),
        (r#"{"workers": 1, "target": 10, "tick_ms": 1, "fail_terminal": true}"#, Err("config.fail_terminal")),
        (r#"{"workers": 1, "target": 10, "tick_ms": 1, "restarts_max": 1001}"#, Err("config.restarts_max")),
        (r#"{"workers": 1, "target": 10, "tick_ms": 1, "panic_at": 0}"#, Ok(())),
        (r#"{"workers": 1, "target": 10, "tick_ms": 1, "panic_at": 10}"#, Err("config.panic_at")),
        (r#"{"workers": 1, "target": 10, "tick_ms": 1, "master_panics": true}"#, Ok(())),
    ];
    for (text, want) in table {
        let got = FakeConfig::parse(text.as_bytes()).map(|_| ()).map_err(|e| e.field);
        assert_eq!(got.as_ref().map_err(|f| f.as_str()), want.as_ref().map_err(|f| *f), "{text}");
    }
    // What a plain job is written as: the knobs only when set.
    let plain = serde_json::to_string(&FakeConfig::counting(2, 5, 10)).unwrap();
    assert_eq!(plain, r#"{"workers":2,"target":5,"tick_ms":10}"#);
}

fn config(workers: u32, target: u64) -> FakeConfig {
    FakeConfig::counting(workers, target, 10)
}

fn cp(counter: u64) -> Counter {
    Counter { counter }
}

fn w(i: u32) -> WorkerName {
    WorkerName::indexed(i)
}

#[test]
fn recover_wants_every_unfinished_worker_from_its_checkpoint() {
    let cps: BTreeMap<WorkerName, Counter> = [
        (w(0), cp(5)),
        (w(2), cp(10)),
        (w(3), cp(99)), // beyond the target (config changed?): done
        (WorkerName::parse("stray").unwrap(), cp(3)),
    ]
    .into();
    let m = FakeLogic::recover(config(4, 10), &cps);
    assert_eq!(m.wanted(), [w(0), w(1)]);
    assert_eq!((0..5).map(|i| m.counter(i)).collect::<Vec<_>>(), [Some(5), Some(0), Some(10), Some(10), None]);
    assert_eq!(m.verdict(), Verdict::Running);
    m.check().unwrap();
    let plain =
        WorkerConfig { target: 10, tick_ms: 10, fail_every: None, fail_at: None, fail_terminal: false, panic_at: None };
    assert_eq!(m.worker(&w(3)).map(|s| s.config), Some(plain));
    // A plain job's workers are told what they were before the failure knobs existed.
    let spec = m.worker(&w(0)).unwrap();
    assert_eq!(serde_json::to_string(&spec.config).unwrap(), r#"{"target":10,"tick_ms":10}"#);
    assert_eq!(spec.restarts_max, crate::core::restarts::WORKER_RESTARTS_DEFAULT);
    let knobs = FakeConfig { fail_at: Some(4), fail_terminal: true, restarts_max: Some(2), ..config(2, 10) };
    let spec = FakeLogic::recover(knobs, &BTreeMap::new()).worker(&w(1)).unwrap();
    assert_eq!((spec.config.fail_at, spec.config.fail_terminal, spec.restarts_max), (Some(4), true, 2));
    assert_eq!(m.worker(&w(4)), None);
    assert_eq!(m.worker(&WorkerName::parse("stray").unwrap()), None);
    assert_eq!(m.worker(&WorkerName::parse("w01").unwrap()), None, "not the canonical name of w1");
}

#[test]
#[should_panic(expected = "planned panic of the job master")]
fn a_job_master_told_to_panic_does() {
    FakeLogic::recover(FakeConfig { master_panics: true, ..config(1, 1) }, &BTreeMap::new());
}

#[test]
fn events_table() {
    // (event on worker 0, which counts on from 2 of target 4; where it counts on from after)
    let w0 = w(0);
    let table: &[(&str, WorkerEvent<'_, Counter>, u64)] = &[
        ("online", WorkerEvent::Online { name: &w0 }, 2),
        ("finished", WorkerEvent::Finished { name: &w0 }, 4),
        (
            "lost, checkpoint ahead",
            WorkerEvent::Ended { name: &w0, why: EndedWhy::Lost(LostReason::Silent), checkpoint: Some(&cp(3)) },
            3,
        ),
        (
            "stopped, checkpoint behind what it started from",
            WorkerEvent::Ended { name: &w0, why: EndedWhy::Stopped, checkpoint: Some(&cp(1)) },
            2,
        ),
        (
            "never started: no checkpoint read",
            WorkerEvent::Ended { name: &w0, why: EndedWhy::NotStarted, checkpoint: None },
            2,
        ),
        ("ended at the target", WorkerEvent::Ended { name: &w0, why: EndedWhy::Canceled, checkpoint: Some(&cp(4)) }, 4),
        (
            "checkpoint beyond the target",
            WorkerEvent::Ended { name: &w0, why: EndedWhy::Canceled, checkpoint: Some(&cp(9)) },
            4,
        ),
    ];
    for (what, event, want) in table {
        let mut m = FakeLogic::recover(config(2, 4), &[(w0.clone(), cp(2))].into());
        m.on_event(Time::ZERO, event.clone());
        assert_eq!(m.counter(0), Some(*want), "{what}");
        assert_eq!(m.counter(1), Some(0), "{what}: w1 untouched");
        assert_eq!(m.wanted().contains(&w0), *want < 4, "{what}");
        m.check().unwrap();
    }
    // A done worker stays done, whatever is read back after it.
    let mut m = FakeLogic::recover(config(1, 4), &BTreeMap::new());
    m.on_event(Time::ZERO, WorkerEvent::Finished { name: &w0 });
    m.on_event(Time::ZERO, WorkerEvent::Ended { name: &w0, why: EndedWhy::Stopped, checkpoint: Some(&cp(1)) });
    assert_eq!(m.counter(0), Some(4));
    // An event about a worker the job does not have changes nothing.
    let mut m = FakeLogic::recover(config(1, 4), &BTreeMap::new());
    m.on_event(Time::ZERO, WorkerEvent::Finished { name: &w(5) });
    assert_eq!(m.wanted(), [w(0)]);
}

#[test]
fn progress_counts_live_reports_only_forward_and_the_verdict_follows_the_counters() {
    let mut m = FakeLogic::recover(config(3, 10), &[(w(0), cp(4))].into());
    let mut live: BTreeMap<WorkerName, String> = BTreeMap::new();
    assert_eq!(m.progress(&live), "4/30 steps, 0/3 workers done");
    live.insert(w(0), "7/10".into());
    live.insert(w(1), "garbage".into());
    live.insert(w(2), "12/10".into());
    assert_eq!(m.progress(&live), "17/30 steps, 0/3 workers done");
    live.insert(w(0), "1/10".into());
    assert_eq!(m.progress(&live), "14/30 steps, 0/3 workers done", "a report behind the checkpoint counts not");
    for i in 0..3 {
        m.on_event(Time::ZERO, WorkerEvent::Finished { name: &w(i) });
    }
    assert_eq!(m.verdict(), Verdict::Finished);
    assert!(m.wanted().is_empty());
    assert_eq!(m.progress(&live), "30/30 steps, 3/3 workers done");
    // A job of no steps is finished from the start.
    assert_eq!(FakeLogic::recover(config(2, 0), &BTreeMap::new()).verdict(), Verdict::Finished);
}
