//! Workers that fail (design.md §6, issue 14's failing tasks): the fake job's failure knobs, on a real cluster.
//!
//! - A worker that fails retryably every few steps is started again from its checkpoint after a backoff, again and
//!   again, and its job finishes with exact counters: it made progress between failures, so it never gives up.
//! - A worker that fails at the same step every time (a poison input) is started again up to its limit of
//!   restarts, then its job fails, saying which worker failed how many times and why.
//! - A worker that fails terminally fails its job at once, with its reason.
//! - A job master whose logic panics fails its incarnation retryably: the leader starts it again after the job's
//!   backoff, and fails the job when the backoff gives up, saying how often and why.
//!
//! Each run checks every safety rule the job scenarios check (one live incarnation, checkpoints forward, ...).

use std::collections::BTreeSet;
use std::time::Duration;

use foreman::core::ids::TaskId;
use foreman::executor::ExecutorObservation;
use foreman::jobs::fake::FakeConfig;
use foreman::rpc::pb;

use crate::cluster::{Cluster, Seen};
use crate::fake_jobs::{create, finish_and_check, leader};
use crate::harness::announce;
use crate::master_failover::{await_job, terminal};

/// Waits for `id` to end and returns it, requiring it to have failed.
async fn failed(c: &Cluster, id: &str, within: Duration) -> pb::Job {
    let (ended, job) = await_job(c, id, within, terminal).await;
    assert!(ended, "{id} did not end within {within:?}: {job:?}");
    assert_eq!(job.state, pb::JobState::Failed as i32, "{id} ended {:?}, not failed: {job:?}", job.state);
    job
}

/// Two workers that each fail retryably after every 7 steps they take, counting to 40: each is started again from
/// its checkpoint 5 times, and the job finishes with both counters exact.
#[madsim::test]
async fn worker_errors_every_n_steps_job_finishes_exact() {
    announce("worker_errors_every_n_steps_job_finishes_exact");
    let c = Cluster::start(3, 4).await;
    leader(&c).await;
    let config = FakeConfig { fail_every: Some(7), ..FakeConfig::counting(2, 40, 50) };
    let jobs = vec![("job-0".to_owned(), config)];
    create(&c, &jobs).await;
    finish_and_check(&c, &jobs, &BTreeSet::new()).await;
    // Failed at 7, 14, 21, 28 and 35: six incarnations each.
    assert_eq!(worker_starts(&c, "job-0"), 12, "two workers started six times each");
    // The last error it got over is kept with the job (sent with its job master's heartbeats, written once each).
    let (_, job) = await_job(&c, "job-0", Duration::ZERO, terminal).await;
    let e = job.last_error.expect("a job that restarted workers says its last error");
    assert!(e.source == "job-0/w0" || e.source == "job-0/w1", "{e:?}");
    assert_eq!((e.message.as_str(), e.retryable), ("planned failure after 7 steps (retryable)", true), "{e:?}");
    assert!(e.at_unix_ms > 0, "{e:?}");
}

/// How many worker incarnations of `job` started.
fn worker_starts(c: &Cluster, job: &str) -> usize {
    let prefix = format!("{job}/");
    c.recorder
        .events()
        .into_iter()
        .filter(|(_, _, seen)| {
            matches!(seen, Seen::Exec(ExecutorObservation::TaskStarted { task, .. }) if task.as_str().starts_with(&prefix))
        })
        .count()
}

/// A worker that fails retryably at step 5 every time, allowed 3 restarts: after its fourth failure in a row
/// without progress its job fails, naming it, the count, and its last error. Its sibling's progress does not
/// count for it.
#[madsim::test]
async fn poison_worker_gives_up_after_its_restart_limit() {
    announce("poison_worker_gives_up_after_its_restart_limit");
    let c = Cluster::start(3, 4).await;
    leader(&c).await;
    let config = FakeConfig { fail_at: Some(5), restarts_max: Some(3), ..FakeConfig::counting(1, 40, 50) };
    create(&c, &[("job-0".to_owned(), config)]).await;
    let job = failed(&c, "job-0", Duration::from_secs(120)).await;
    assert_eq!(worker_starts(&c, "job-0"), 4, "started, then restarted three times");
    let error = job.error.expect("a failed job says why");
    assert_eq!(error.reason, "JOB_MASTER_FAILED", "{error:?}");
    assert!(
        error.message.contains(
            "worker job-0/w0 failed 4 times in a row without progress; last: planned failure at step 5 (retryable)"
        ),
        "{error:?}"
    );
    crate::master_failover::check_safety(&c);
}

/// A worker that fails terminally at step 5 fails its job at once, with its reason.
#[madsim::test]
async fn worker_terminal_error_fails_the_job_with_its_reason() {
    announce("worker_terminal_error_fails_the_job_with_its_reason");
    let c = Cluster::start(3, 4).await;
    leader(&c).await;
    let config = FakeConfig { fail_at: Some(5), fail_terminal: true, ..FakeConfig::counting(1, 40, 50) };
    create(&c, &[("job-0".to_owned(), config)]).await;
    let job = failed(&c, "job-0", Duration::from_secs(60)).await;
    assert_eq!(worker_starts(&c, "job-0"), 1, "never restarted");
    let error = job.error.clone().expect("a failed job says why");
    assert!(error.message.contains("worker job-0/w0 failed: planned failure at step 5"), "{error:?}");
    assert_eq!(job.restarts, 0, "no worker failure restarts the job master: {job:?}");
    crate::master_failover::check_safety(&c);
}

/// A worker whose work panics at step 5, every time, allowed 2 restarts: each panic is caught and reported as a
/// retryable failure, each panicking incarnation stops (its executor does not list it as running any more), and
/// after the third the job fails, naming the panic.
#[madsim::test]
async fn worker_panics_at_step_k_job_fails_within_bound() {
    announce("worker_panics_at_step_k_job_fails_within_bound");
    let c = Cluster::start(3, 4).await;
    leader(&c).await;
    let config = FakeConfig { panic_at: Some(5), restarts_max: Some(2), ..FakeConfig::counting(1, 40, 50) };
    create(&c, &[("job-0".to_owned(), config)]).await;
    let job = failed(&c, "job-0", Duration::from_secs(120)).await;
    let error = job.error.clone().expect("a failed job says why");
    assert!(
        error.message.contains(
            "worker job-0/w0 failed 3 times in a row without progress; last: panicked: fake: planned panic at step 5"
        ),
        "{error:?}"
    );
    // Every panic is followed by its incarnation's stop on the same executor.
    let events = c.recorder.events();
    let panics: Vec<(String, TaskId, foreman::core::ids::Epoch)> = events
        .iter()
        .filter_map(|(_, node, seen)| match seen {
            Seen::Exec(ExecutorObservation::TaskPanicked { task, epoch, .. }) => {
                Some((node.clone(), task.clone(), *epoch))
            }
            _ => None,
        })
        .collect();
    assert_eq!(panics.len(), 3, "{panics:?}");
    for (node, task, epoch) in &panics {
        let stopped = events.iter().any(|(_, n, seen)| {
            n == node
                && matches!(seen, Seen::Exec(ExecutorObservation::TaskStopped { task: t, epoch: e, .. }) if t == task && e == epoch)
        });
        assert!(stopped, "{task} epoch {epoch} panicked on {node} and never stopped");
    }
    crate::master_failover::check_safety(&c);
}

/// A job master whose logic panics as it starts, every time (the fake's `master_panics`), on a cluster whose job
/// backoff gives up at the third failure in a row: each panic is caught, observed and reported as a retryable
/// failure; the leader charges the backoff and starts it again, and after the third the job fails, saying so.
/// Every panicking incarnation stops on its executor.
#[madsim::test]
async fn job_master_panics_are_retried_with_the_job_backoff_until_it_gives_up() {
    announce("job_master_panics_are_retried_with_the_job_backoff_until_it_gives_up");
    let masters = (0..3)
        .map(|i| {
            let mut m = crate::cluster::master_config(i);
            m.backoff.initial = Duration::from_millis(300);
            m.backoff.max_tries = 3;
            m
        })
        .collect();
    let spec = crate::cluster::Spec {
        masters,
        executors: (0..3).map(|i| crate::cluster::executor_config(i, 3)).collect(),
        tasks: crate::cluster::Tasks::Jobs,
        planted: Default::default(),
        etcd_timeout_rate: 0.0,
    };
    let c = Cluster::build_spec(spec).await;
    leader(&c).await;
    let config = FakeConfig { master_panics: true, ..FakeConfig::counting(1, 10, 50) };
    create(&c, &[("job-0".to_owned(), config)]).await;
    let job = failed(&c, "job-0", Duration::from_secs(120)).await;
    let error = job.error.clone().expect("a failed job says why");
    assert_eq!(error.reason, "JOB_MASTER_FAILED", "{error:?}");
    assert_eq!(
        error.message,
        "the job master failed 3 times in a row; last: job master panicked: fake: planned panic of the job master",
        "{error:?}"
    );
    assert_eq!(job.restarts, 2, "started again twice: {job:?}");
    // Its last error is the job master's own last failure, no longer retried.
    let last = job.last_error.clone().expect("the job keeps its last error");
    let panicked = "job master panicked: fake: planned panic of the job master";
    assert_eq!((last.source.as_str(), last.message.as_str(), last.retryable), ("job-0", panicked, false), "{last:?}");
    assert_eq!(worker_starts(&c, "job-0"), 0, "no worker ever started");
    // The last incarnation reported its failure before its task returns: its executor lists it until then.
    let listed = || {
        c.executors.iter().any(|n| {
            n.current.lock().unwrap().as_ref().is_some_and(|e| e.running().iter().any(|t| t.task_id == "job-0"))
        })
    };
    for _ in 0..50 {
        if !listed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!listed(), "the last panicked incarnation is still listed running 5 s after its job failed");
    let events = c.recorder.events();
    let panics = events
        .iter()
        .filter(|(_, _, seen)| matches!(seen, Seen::Exec(ExecutorObservation::TaskPanicked { task, .. }) if task.as_str() == "job-0"))
        .count();
    assert_eq!(panics, 3, "three incarnations panicked");
    if let Err(v) = crate::checks::panics_end_their_task(&events) {
        crate::harness::fail(v);
    }
    crate::master_failover::check_safety(&c);
}
