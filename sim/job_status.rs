//! A job's status (`GetJobStatus`, issue 14 item 2c) through the faults that change who answers it: the leader
//! killed twice and the executor hosting the job's job master killed, while a client asks for the status every few
//! hundred milliseconds.
//!
//! Checked on every answer (rule `StatusFromCurrent`): a live answer is never from an incarnation older than any
//! answer before it (no status from a superseded job master once a newer one answered), and no answer is from an
//! incarnation newer than the newest one any executor started by the time it arrived. Checked at the end (rule
//! `StatusFinal`): once the job finished, its status is the stored final one of its last incarnation, saying
//! finished with every worker done; deleting the job deletes `job-status/<job>`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foreman::core::invariants::{Id, Rule, Violation};
use foreman::core::time::Time;
use foreman::executor::ExecutorObservation;
use foreman::jobs::fake::FakeConfig;
use foreman::meta::keys;
use foreman::planted::Planted;
use foreman::rpc::pb;
use madsim::rand::Rng;

use crate::cluster::{Cluster, Seen};
use crate::fake_jobs::{finish_and_check, job_master_host, jobs_running_with, leader, JobFigures};
use crate::harness::{announce, require};
use crate::master_failover::{get_job, on_client, with_jobs};

const JOB: &str = "job-0";

fn millis(lo: u64, hi: u64) -> Duration {
    Duration::from_millis(madsim::rand::thread_rng().gen_range(lo..=hi))
}

/// One answer the client got, when it arrived.
#[derive(Clone, Debug)]
struct Answer {
    at: Time,
    status: pb::JobStatus,
}

/// The status of `JOB`, through whichever master answers (call on the client node).
async fn job_status(masters: usize) -> Result<pb::JobStatus, tonic::Status> {
    with_jobs(masters, Duration::from_secs(10), move |mut c| async move {
        c.get_job_status(pb::GetJobStatusRequest { id: JOB.into() }).await.map(|r| r.into_inner())
    })
    .await
}

fn document(s: &pb::JobStatus) -> serde_json::Value {
    serde_json::from_str(&s.document).unwrap_or(serde_json::Value::Null)
}

/// The newest epoch of `JOB`'s job master that any executor started by `at`.
fn newest_started(c: &Cluster, at: Time) -> u64 {
    c.recorder
        .events()
        .iter()
        .filter(|(t, _, _)| *t <= at)
        .filter_map(|(_, _, seen)| match seen {
            Seen::Exec(ExecutorObservation::TaskStarted { task, epoch, .. }) if task.as_str() == JOB => Some(epoch.0),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// Rule `StatusFromCurrent` over the answers, in arrival order.
fn check_answers(c: &Cluster, answers: &[Answer]) {
    let mut newest_seen = 0u64;
    for a in answers {
        let live = a.status.source == pb::JobStatusSource::Live as i32;
        let started = newest_started(c, a.at);
        require(a.status.epoch <= started, || {
            let detail = format!(
                "a status from job-master epoch {} (source {}) arrived at {} when the newest started was {started}",
                a.status.epoch, a.status.source, a.at
            );
            Violation::new(Rule::StatusFromCurrent, a.at, detail).with([Id::Job(JOB.into())])
        });
        require(!live || a.status.epoch >= newest_seen, || {
            let detail = format!(
                "a live status from job-master epoch {} after a status from epoch {newest_seen} had been shown",
                a.status.epoch
            );
            Violation::new(Rule::StatusFromCurrent, a.at, detail).with([Id::Job(JOB.into())])
        });
        newest_seen = newest_seen.max(a.status.epoch);
    }
}

/// The status at the end: stored by the job's last incarnation, finished, every worker done (rule `StatusFinal`).
fn check_final(c: &Cluster, status: &pb::JobStatus, job: &pb::Job, workers: u32) {
    let doc = document(status);
    let done = doc["workers"].as_array().map_or(0, |w| w.iter().filter(|w| w["state"] == "done").count());
    let all = doc["workers"].as_array().map_or(0, Vec::len);
    let ok = status.source == pb::JobStatusSource::Stored as i32
        && status.epoch == job.epoch
        && doc["state"] == "finished"
        && done == workers as usize
        && all == workers as usize;
    require(ok, || {
        let detail = format!("job {JOB} finished at epoch {}, and its status is {status:?}", job.epoch);
        Violation::new(Rule::StatusFinal, c.clock.now(), detail).with([Id::Job(JOB.into())])
    });
}

/// Job-0 (3 workers counting to 200 every 100 ms, about 20 s) runs beside two drawn jobs; a client asks for its
/// status every 200 to 800 ms. The leader is killed, then job-0's job-master host, then the leader again (each
/// killed node comes back). Every answer is checked as it stands in the story, then the final status, then that
/// deleting the job deletes its status.
pub async fn job_status_through_leader_and_job_master_host_kills_run(planted: Option<Planted>) -> JobFigures {
    let workers = 3;
    let (c, jobs, running) = jobs_running_with(planted, Some(FakeConfig::counting(workers, 200, 100))).await;
    let masters = c.masters.len();
    let (answers, stop) = (Arc::new(Mutex::new(Vec::<Answer>::new())), Arc::new(AtomicBool::new(false)));
    let (into, until, clock) = (answers.clone(), stop.clone(), c.clock.clone());
    let poller = c.client.spawn(async move {
        while !until.load(Ordering::SeqCst) {
            if let Ok(status) = job_status(masters).await {
                into.lock().unwrap().push(Answer { at: clock.now(), status });
            }
            tokio::time::sleep(millis(200, 800)).await;
        }
    });
    tokio::time::sleep(millis(500, 3_000)).await;
    let first = leader(&c).await;
    c.kill_master(first);
    leader(&c).await;
    c.restart_master(first);
    tokio::time::sleep(millis(500, 3_000)).await;
    let victim = job_master_host(&c, &running[JOB]).await;
    c.kill_executor(victim);
    tokio::time::sleep(millis(1_000, 8_000)).await;
    let second = leader(&c).await;
    c.kill_master(second);
    leader(&c).await;
    c.restart_master(second);
    c.restart_executor(victim);
    let figures = finish_and_check(&c, &jobs, &Default::default()).await;
    stop.store(true, Ordering::SeqCst);
    poller.await.expect("the poller ended");
    let answers = answers.lock().unwrap().clone();
    check_answers(&c, &answers);
    let count = |s: pb::JobStatusSource| answers.iter().filter(|a| a.status.source == s as i32).count();
    tracing::info!(
        "figure: {} status answers: {} live, {} stored, {} none",
        answers.len(),
        count(pb::JobStatusSource::Live),
        count(pb::JobStatusSource::Stored),
        count(pb::JobStatusSource::None)
    );

    let (job, status) = on_client(&c, async move { (get_job(masters, JOB).await, job_status(masters).await) }).await;
    let status = status.unwrap_or_else(|s| panic!("the status of {JOB} after it finished: {s}"));
    check_final(&c, &status, &job, workers);
    on_client(&c, async move {
        with_jobs(masters, Duration::from_secs(30), |mut c| async move {
            c.delete_job(pb::DeleteJobRequest { id: JOB.into() }).await.map(|r| r.into_inner())
        })
        .await
        .unwrap_or_else(|s| panic!("delete {JOB}: {s}"))
    })
    .await;
    let key = keys::job_status(JOB);
    let gone = !crate::fake_jobs::stored_under(&c, &key).await.contains_key(&key);
    require(gone, || {
        let detail = format!("{} is still stored after {JOB} was deleted", keys::job_status(JOB));
        Violation::new(Rule::StatusFinal, c.clock.now(), detail).with([Id::Job(JOB.into())])
    });
    figures
}

#[madsim::test]
async fn job_status_through_leader_and_job_master_host_kills() {
    announce("job_status_through_leader_and_job_master_host_kills");
    job_status_through_leader_and_job_master_host_kills_run(None).await;
}
