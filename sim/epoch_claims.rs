//! Epoch claims that nothing vouches for, sent by a foreign client to a real cluster: a claim of an epoch its
//! issuer never issued is refused and changes nothing, at every level. An unconfirmed dispatch raises nothing an
//! executor remembers; a worker message claiming a worker or job-master epoch its job master never issued is
//! refused by the job master (`INVALID_ARGUMENT`); a job-master message claiming a job-master or leader epoch the
//! leader never issued is refused by the leader. Before, each of them stopped a healthy job master, made an
//! executor refuse a task id for good, or could depose a leader.

use std::collections::BTreeSet;
use std::time::Duration;

use foreman::core::timing::HeartbeatTiming;
use foreman::jobs::fake::FakeConfig;
use foreman::master::Observation;
use foreman::rpc::pb;
use foreman::rpc::pb::discovery_client::DiscoveryClient;
use foreman::rpc::pb::executor_service_client::ExecutorServiceClient;
use foreman::rpc::pb::framework_client::FrameworkClient;
use foreman::rpc::status::{reason_of, Reason};

use crate::cluster::{channel_to, executor_addr, master_addr, Cluster, Seen};
use crate::fake_jobs::{create_job, finish_and_check};
use crate::harness::{announce, As};
use foreman::core::auth::Principal;

/// The claims come from the one executor's own identity (it hosts the job master and its workers): what is
/// checked here is the epoch fence, past the identity check.
fn host_executor() -> As {
    As::principal(&Principal::Executor("executor-0".into()))
}
use crate::master_failover::{await_job, get_job, on_client, running, terminal};

const JOB: &str = "later";
const BOGUS: u64 = u64::MAX;

/// Asserts that `result` is a refusal `INVALID_ARGUMENT` naming `field`.
#[track_caller]
fn refused<T: std::fmt::Debug>(what: &str, result: Result<T, tonic::Status>, field: &str) {
    let status = match result {
        Ok(v) => panic!("safety: {what} was taken: {v:?}"),
        Err(s) => s,
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{what}: {status:?}");
    assert_eq!(reason_of(&status), Some(Reason::InvalidArgument), "{what}: {status:?}");
    assert!(status.message().starts_with(&format!("{field}: ")), "{what}: {:?}", status.message());
}

/// Goal: a job runs to its end untouched by every never-issued epoch a foreign client can claim. Method: one master
/// and one executor (every task lands where the bogus dispatches wait); before the job exists, dispatches of its
/// job master and a worker claiming epoch 2^64-1 are parked and never confirmed; while it runs, its job master and
/// the leader are sent messages claiming worker, job-master and leader epochs of 2^64-1. The job must finish with
/// exact counters by its first job master (no restart, same epoch) under the first leader.
#[madsim::test]
async fn never_issued_epochs_sent_to_a_running_job_change_nothing() {
    announce("never_issued_epochs_sent_to_a_running_job_change_nothing");
    let c = Cluster::start(1, 1).await;
    c.settle(Duration::from_secs(30)).await;
    let executor = c.list_executors().await.first().expect("the executor is listed").id;

    // Dispatches of the job's job master and first worker that nobody confirms: parked, then expired.
    let parked = on_client(&c, async move {
        let ch = channel_to(&executor_addr(0), Duration::from_secs(2)).await.expect("the executor answers");
        let mut results = vec![];
        for (task, kind) in [(JOB.to_owned(), pb::TaskKind::JobMaster), (format!("{JOB}/w0"), pb::TaskKind::Worker)] {
            let req = pb::PreDispatchTaskRequest {
                task_id: task.clone(),
                kind: kind as i32,
                task_type: "fake".into(),
                task_config: br#"{"workers": 1, "target": 1, "tick_ms": 1}"#.to_vec(),
                job_id: JOB.into(),
                epoch: BOGUS,
                master_id: "master-0".into(),
                master_address: master_addr(0),
                master_epoch: BOGUS,
                leader_epoch: BOGUS,
                request_id: format!("bogus-{task}"),
                cost: 1,
                timing: Some(foreman::rpc::timing_to_wire(&HeartbeatTiming::worker_default())),
                executor_id: executor,
            };
            results.push(
                ExecutorServiceClient::with_interceptor(
                    ch.clone(),
                    As::principal(&Principal::Master("master-0".into())),
                )
                .pre_dispatch_task(req)
                .await
                .map(|_| ()),
            );
        }
        results
    })
    .await;
    for r in parked {
        r.expect("an unconfirmed dispatch is parked (and expires)");
    }

    let config = FakeConfig::counting(2, 60, 150);
    let job = pb::Job {
        id: JOB.into(),
        r#type: "fake".into(),
        config: serde_json::to_vec(&config).unwrap(),
        ..Default::default()
    };
    assert!(on_client(&c, create_job(1, job)).await, "create {JOB}: not acknowledged");
    c.recorder.record("client", Seen::JobCreated { id: JOB.into() });
    let (ok, started) = await_job(&c, JOB, Duration::from_secs(60), running).await;
    assert!(ok, "liveness: {JOB} does not run 60 s after its creation (its dispatch refused?): {started:?}");
    let epoch = started.epoch;
    // Both workers placed: the job master knows their incarnations.
    let working = on_client(&c, async {
        for _ in 0..60 {
            let j = get_job(1, JOB).await;
            let steps = j.progress.split('/').next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
            if steps > 0 || terminal(&j) {
                return j;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        get_job(1, JOB).await
    })
    .await;
    assert!(running(&working), "{JOB} ended before the claims were sent: {working:?}");

    let answers = on_client(&c, async move {
        let leader = channel_to(&master_addr(0), Duration::from_secs(2)).await.expect("the master answers");
        let leader_epoch = DiscoveryClient::with_interceptor(leader.clone(), As::user())
            .get_leader(pb::GetLeaderRequest {})
            .await
            .unwrap()
            .into_inner();
        let host = channel_to(&executor_addr(0), Duration::from_secs(2)).await.expect("the executor answers");
        let beat =
            |master_id: &str, worker_id: &str, master_epoch: u64, worker_epoch: u64| pb::WorkerHeartbeatRequest {
                master_id: master_id.into(),
                master_epoch,
                worker_id: worker_id.into(),
                worker_epoch,
                progress: String::new(),
                last_error: None,
            };
        let worker = format!("{JOB}/w0");
        let mut out = vec![];
        // To the job master, as its worker: a worker epoch it never issued; a job-master epoch never issued.
        for (what, field, req) in [
            ("a worker epoch 2^64-1 to the job master", "worker_epoch", beat(JOB, &worker, epoch, BOGUS)),
            ("a job-master epoch 2^64-1 to the job master", "master_epoch", beat(JOB, &worker, BOGUS, 1)),
        ] {
            out.push((
                what,
                field,
                FrameworkClient::with_interceptor(host.clone(), host_executor())
                    .worker_heartbeat(req)
                    .await
                    .map(|_| ()),
            ));
        }
        let report = pb::ReportWorkerStatusRequest {
            master_id: JOB.into(),
            master_epoch: epoch,
            worker_id: worker.clone(),
            worker_epoch: BOGUS,
            status: Some(pb::WorkerStatus { state: pb::WorkerState::Finished as i32, ..Default::default() }),
            progress: String::new(),
        };
        let reported = FrameworkClient::with_interceptor(host.clone(), host_executor())
            .report_worker_status(report)
            .await
            .map(|_| ());
        out.push(("a Finished report with worker epoch 2^64-1", "worker_epoch", reported));
        // To the leader, as the job's job master: a job-master epoch never issued; a leader epoch never issued.
        let m = "master-0";
        for (what, field, req) in [
            ("a job-master epoch 2^64-1 to the leader", "worker_epoch", beat(m, JOB, leader_epoch.leader_epoch, BOGUS)),
            ("a leader epoch 2^64-1 to the leader", "master_epoch", beat(m, JOB, BOGUS, epoch)),
        ] {
            out.push((
                what,
                field,
                FrameworkClient::with_interceptor(leader.clone(), host_executor())
                    .worker_heartbeat(req)
                    .await
                    .map(|_| ()),
            ));
        }
        out
    })
    .await;
    for (what, field, result) in answers {
        refused(what, result, field);
    }

    finish_and_check(&c, &[(JOB.to_owned(), config)], &BTreeSet::new()).await;
    let (_, ended) = await_job(&c, JOB, Duration::from_secs(1), terminal).await;
    assert_eq!(ended.state, pb::JobState::Finished as i32, "{ended:?}");
    assert_eq!(
        (ended.restarts, ended.epoch),
        (0, epoch),
        "safety: a never-issued epoch stopped {JOB}'s job master: {ended:?}"
    );
    let terms = c
        .recorder
        .events()
        .iter()
        .filter(|(_, _, seen)| matches!(seen, Seen::Master(Observation::ActingBegan { .. })))
        .count();
    assert_eq!(terms, 1, "safety: a never-issued epoch deposed the leader");
}
