//! A rogue node in a running cluster, calling with forged or wrong identities (foreman::core::auth's table, held
//! in the simulation where every node says who it is): each call is refused with the right code, and the cluster
//! is unharmed.

use std::collections::BTreeSet;
use std::time::Duration;

use foreman::core::auth::Principal;
use foreman::core::timing::HeartbeatTiming;
use foreman::executor::ExecutorObservation;
use foreman::jobs::fake::FakeConfig;
use foreman::master::Observation;
use foreman::rpc::pb;
use foreman::rpc::pb::discovery_client::DiscoveryClient;
use foreman::rpc::pb::executor_service_client::ExecutorServiceClient;
use foreman::rpc::pb::framework_client::FrameworkClient;
use foreman::rpc::pb::job_manager_client::JobManagerClient;
use foreman::rpc::status::{reason_of, Reason};
use tonic::transport::Channel;
use tonic::Code;

use crate::cluster::{channel_to, executor_addr, master_addr, Cluster, Seen};
use crate::fake_jobs::{await_running, create, finish_and_check};
use crate::harness::{announce, As};
use crate::master_failover::on_client;

/// One forged call: what it is, and the refusal it must get.
type Forged = (&'static str, Code, Result<(), tonic::Status>);

/// What a user of another project got for a job it may not read, and for a job that does not exist.
struct Stranger {
    cancel: Result<(), tonic::Status>,
    get: Result<(), tonic::Status>,
    missing: Result<(), tonic::Status>,
    listed: Vec<String>,
    reader_get: Result<(), tonic::Status>,
}

fn executor(name: &str) -> As {
    As::principal(&Principal::Executor(name.to_owned()))
}

/// Asserts that `result` is a refusal with `code` and its reason.
#[track_caller]
fn refused(what: &str, code: Code, result: &Result<(), tonic::Status>) {
    let status = match result {
        Ok(()) => panic!("safety: {what} was taken"),
        Err(s) => s,
    };
    let reason = match code {
        Code::Unauthenticated => Reason::Unauthenticated,
        _ => Reason::PermissionDenied,
    };
    assert_eq!((status.code(), reason_of(status)), (code, Some(reason)), "{what}: {status:?}");
    assert!(!status.message().is_empty(), "{what}: a refusal says what is missing");
}

/// Goal: no forged identity harms a running cluster. Method: three masters, two executors, two counting jobs
/// running; a rogue client then sends, to the leader, a heartbeat and a deregistration of one executor's id as
/// the other executor, Finished and Failed reports for a job's job master from the executor that does not host it,
/// from a user and from no identity, a resign as an executor, the same heartbeat, deregistration and resign with no
/// identity at all, a registration with a huge capacity from no identity, a user and an executor under another
/// name, `QueryMetaStore` from no identity and a user; to an executor, a job master's dispatch from an executor, a
/// worker's from a user, both with no identity, a confirmation and a worker's report from no identity and a user;
/// a cancel of a job by a user who may only read its project. Each must be refused with its code. A user of another project cancelling or getting a job gets exactly
/// what a missing job gets, and does not see it listed, while a reader of its project may get it. Then both jobs
/// finish with exact counters under the first leader, no executor was declared offline or deregistered, and the
/// job scenarios' checkers pass.
#[madsim::test]
async fn forged_identities_are_refused_and_change_nothing() {
    announce("forged_identities_are_refused_and_change_nothing");
    let c = Cluster::start(3, 2).await;
    c.settle(Duration::from_secs(30)).await;
    let leader = c.await_leader(Duration::from_secs(15)).await.expect("a leader within 15 s of start");
    let jobs: Vec<(String, FakeConfig)> =
        (0..2).map(|i| (format!("job-{i}"), FakeConfig::counting(2, 80, 150))).collect();
    create(&c, &jobs).await;
    let running = await_running(&c, &jobs).await;
    let executors = c.list_executors().await;
    assert_eq!(executors.len(), 2, "{executors:?}");
    let before: BTreeSet<(u64, String)> = executors.iter().map(|e| (e.id, e.name.clone())).collect();
    let (victim, rogue) = (executors[0].clone(), executors[1].clone());
    let job = running["job-0"].clone();
    let host = executors.iter().find(|e| e.id == job.executor_id).expect("job-0's job master runs on a listed one");
    let not_host = executors.iter().find(|e| e.id != job.executor_id).expect("another executor").name.clone();
    let (host_name, jm_address) = (host.name.clone(), host.address.clone());
    // Where job-0's w0 runs now, and its epoch: a report of it from the other executor is a forgery.
    let w0 = format!("{}/w0", job.id);
    let w0_started = || {
        c.recorder.events().into_iter().rev().find_map(|(_, node, seen)| match seen {
            Seen::Exec(ExecutorObservation::TaskStarted { task, epoch, .. }) if task.as_str() == w0 => {
                Some((node, epoch.0))
            }
            _ => None,
        })
    };
    let mut waited = Duration::ZERO;
    let (w0_host, w0_epoch) = loop {
        if let Some(found) = w0_started() {
            break found;
        }
        assert!(waited < Duration::from_secs(30), "job-0/w0 never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    };
    let w0_stranger = executors.iter().find(|e| e.name != w0_host).expect("another executor").name.clone();

    let job_id = job.id.clone();
    let (answers, stranger) = on_client(&c, async move {
        let to_leader = channel_to(&master_addr(leader), Duration::from_secs(2)).await.expect("the leader answers");
        let discovery = |who: As| DiscoveryClient::with_interceptor(to_leader.clone(), who);
        let beat = pb::HeartbeatRequest { executor_id: victim.id, ..Default::default() };
        let mut out: Vec<Forged> = vec![
            (
                "a heartbeat for another executor's id",
                Code::PermissionDenied,
                ok(discovery(executor(&rogue.name)).heartbeat(beat.clone()).await),
            ),
            (
                "a heartbeat with no identity",
                Code::Unauthenticated,
                ok(plain_discovery(&to_leader).heartbeat(beat).await),
            ),
            (
                "a deregistration of another executor's id",
                Code::PermissionDenied,
                ok(discovery(executor(&rogue.name))
                    .deregister_executor(pb::DeregisterExecutorRequest { executor_id: victim.id })
                    .await),
            ),
            (
                "ResignLeader as an executor",
                Code::PermissionDenied,
                ok(discovery(executor(&rogue.name)).resign_leader(pb::ResignLeaderRequest {}).await),
            ),
            (
                "ResignLeader with no identity",
                Code::Unauthenticated,
                ok(plain_discovery(&to_leader).resign_leader(pb::ResignLeaderRequest {}).await),
            ),
        ];
        // A Finished report for job-0's current job master, which would end the job, from the other executor.
        let leader_epoch =
            discovery(As::user()).get_leader(pb::GetLeaderRequest {}).await.expect("the leader answers").into_inner();
        let finished = pb::ReportWorkerStatusRequest {
            master_id: "master".into(),
            master_epoch: leader_epoch.leader_epoch,
            worker_id: job.id.clone(),
            worker_epoch: job.epoch,
            status: Some(pb::WorkerStatus { state: pb::WorkerState::Finished as i32, ..Default::default() }),
            progress: String::new(),
        };
        let report = FrameworkClient::with_interceptor(to_leader.clone(), executor(&not_host))
            .report_worker_status(finished.clone())
            .await;
        out.push(("a Finished report from an executor not hosting the job master", Code::PermissionDenied, ok(report)));
        let failed = pb::ReportWorkerStatusRequest {
            status: Some(pb::WorkerStatus { state: pb::WorkerState::Failed as i32, ..Default::default() }),
            ..finished.clone()
        };
        let report = FrameworkClient::with_interceptor(to_leader.clone(), executor(&not_host))
            .report_worker_status(failed.clone())
            .await;
        out.push(("a Failed report from an executor not hosting the job master", Code::PermissionDenied, ok(report)));
        for (by_user, by_no_one, report) in [
            ("a Finished report from a user", "a Finished report with no identity", finished),
            ("a Failed report from a user", "a Failed report with no identity", failed),
        ] {
            let r = FrameworkClient::with_interceptor(to_leader.clone(), As::user())
                .report_worker_status(report.clone())
                .await;
            out.push((by_user, Code::PermissionDenied, ok(r)));
            let r = FrameworkClient::new(to_leader.clone()).report_worker_status(report).await;
            out.push((by_no_one, Code::Unauthenticated, ok(r)));
        }
        // A rogue executor with a huge capacity, and where the metastore is.
        let huge = pb::RegisterExecutorRequest {
            name: "rogue".into(),
            address: executor_addr(0),
            capacity: 1_000_000,
            labels: Default::default(),
            instance: 7,
        };
        let r = plain_discovery(&to_leader).register_executor(huge.clone()).await;
        out.push(("registering a rogue executor with no identity", Code::Unauthenticated, ok(r)));
        let r = discovery(As::user()).register_executor(huge.clone()).await;
        out.push(("registering a rogue executor as a user", Code::PermissionDenied, ok(r)));
        let r = discovery(executor(&rogue.name)).register_executor(huge).await;
        out.push(("registering under another name as an executor", Code::PermissionDenied, ok(r)));
        let r = plain_discovery(&to_leader).query_meta_store(pb::QueryMetaStoreRequest {}).await;
        out.push(("QueryMetaStore with no identity", Code::Unauthenticated, ok(r)));
        let r = discovery(As::user()).query_meta_store(pb::QueryMetaStoreRequest {}).await;
        out.push(("QueryMetaStore as a user", Code::PermissionDenied, ok(r)));
        let r = plain_discovery(&to_leader)
            .deregister_executor(pb::DeregisterExecutorRequest { executor_id: victim.id })
            .await;
        out.push(("a deregistration with no identity", Code::Unauthenticated, ok(r)));
        // Dispatches straight to an executor: a job master's from an executor, a worker's from a user.
        let to_executor = channel_to(&executor_addr(0), Duration::from_secs(2)).await.expect("the executor answers");
        for (what, kind, who) in [
            ("a job master's dispatch from an executor", pb::TaskKind::JobMaster, executor(&host_name)),
            ("a worker's dispatch from a user", pb::TaskKind::Worker, As::user()),
        ] {
            let pre = pb::PreDispatchTaskRequest {
                task_id: "rogue".into(),
                kind: kind as i32,
                task_type: "fake".into(),
                task_config: br#"{"workers": 1, "target": 1, "tick_ms": 1}"#.to_vec(),
                job_id: "rogue".into(),
                epoch: 1,
                master_id: "rogue".into(),
                master_address: master_addr(0),
                master_epoch: 1,
                leader_epoch: leader_epoch.leader_epoch,
                request_id: "rogue-1".into(),
                cost: 1,
                timing: Some(foreman::rpc::timing_to_wire(&HeartbeatTiming::worker_default())),
                executor_id: 1,
            };
            let r =
                ExecutorServiceClient::with_interceptor(to_executor.clone(), who).pre_dispatch_task(pre.clone()).await;
            out.push((what, Code::PermissionDenied, ok(r)));
            let r = ExecutorServiceClient::new(to_executor.clone()).pre_dispatch_task(pre).await;
            out.push(("a dispatch with no identity", Code::Unauthenticated, ok(r)));
        }
        let confirm = pb::ConfirmDispatchTaskRequest { task_id: "rogue".into(), request_id: "rogue-1".into() };
        let r = ExecutorServiceClient::new(to_executor.clone()).confirm_dispatch_task(confirm.clone()).await;
        out.push(("a confirmation with no identity", Code::Unauthenticated, ok(r)));
        let r = ExecutorServiceClient::with_interceptor(to_executor.clone(), As::user())
            .confirm_dispatch_task(confirm)
            .await;
        out.push(("a confirmation from a user", Code::PermissionDenied, ok(r)));
        // A worker's report to a job master, at an executor.
        let worker_done = pb::ReportWorkerStatusRequest {
            master_id: job.id.clone(),
            master_epoch: job.epoch,
            worker_id: format!("{}/w0", job.id),
            worker_epoch: 0,
            status: Some(pb::WorkerStatus { state: pb::WorkerState::Finished as i32, ..Default::default() }),
            progress: String::new(),
        };
        let r = FrameworkClient::new(to_executor.clone()).report_worker_status(worker_done.clone()).await;
        out.push(("a worker's report with no identity", Code::Unauthenticated, ok(r)));
        let r = FrameworkClient::with_interceptor(to_executor.clone(), As::user())
            .report_worker_status(worker_done.clone())
            .await;
        out.push(("a worker's report from a user", Code::PermissionDenied, ok(r)));
        // Its current incarnation's Finished report, from the executor it does not run on.
        let forged = pb::ReportWorkerStatusRequest { worker_epoch: w0_epoch, ..worker_done };
        let to_job_master =
            channel_to(&jm_address, Duration::from_secs(2)).await.expect("job-0's job master's executor answers");
        let r =
            FrameworkClient::with_interceptor(to_job_master, executor(&w0_stranger)).report_worker_status(forged).await;
        out.push(("a worker's report from the executor it does not run on", Code::PermissionDenied, ok(r)));
        // Job calls by users with grants in the job's project (default) or only in another.
        let jobs_as = |who: As| JobManagerClient::with_interceptor(to_leader.clone(), who);
        let reader = || As::user_with("reader", "default=read");
        let cancel = |id: &str| pb::CancelJobRequest { id: id.to_owned() };
        let get = |id: &str| pb::GetJobRequest { id: id.to_owned(), include_config: false };
        let r = jobs_as(reader()).cancel_job(cancel(&job.id)).await;
        out.push(("a cancel by a user who may only read the job's project", Code::PermissionDenied, ok(r)));
        let stranger = || jobs_as(As::user_with("stranger", "other=submit"));
        let listed = stranger().list_jobs(pb::ListJobsRequest::default()).await.expect("a listing is answered");
        let stranger = Stranger {
            cancel: ok(stranger().cancel_job(cancel(&job.id)).await),
            get: ok(stranger().get_job(get(&job.id)).await),
            missing: ok(stranger().cancel_job(cancel("no-such-job")).await),
            listed: listed.into_inner().jobs.into_iter().map(|j| j.id).collect(),
            reader_get: ok(jobs_as(reader()).get_job(get(&job.id)).await),
        };
        (out, stranger)
    })
    .await;
    for (what, code, result) in &answers {
        refused(what, *code, result);
    }
    let missing = stranger.missing.expect_err("a missing job is not found");
    assert_eq!((missing.code(), reason_of(&missing)), (Code::NotFound, Some(Reason::JobNotFound)), "{missing:?}");
    for (what, got) in [("cancel", &stranger.cancel), ("get", &stranger.get)] {
        let got = got.as_ref().expect_err("safety: another project's user reached the job");
        assert_eq!(
            (got.code(), reason_of(got), got.message().replace(&job_id, "no-such-job")),
            (missing.code(), reason_of(&missing), missing.message().to_owned()),
            "safety: a {what} by another project's user must be answered as for a missing job"
        );
    }
    assert!(stranger.listed.is_empty(), "safety: another project's user listed {:?}", stranger.listed);
    stranger.reader_get.expect("a reader of the job's project may get it");

    finish_and_check(&c, &jobs, &BTreeSet::new()).await;
    let after: BTreeSet<(u64, String)> = c.list_executors().await.iter().map(|e| (e.id, e.name.clone())).collect();
    assert_eq!(after, before, "safety: an executor was deregistered or declared offline (it registered again)");
    let events = c.recorder.events();
    let offline: Vec<_> =
        events.iter().filter(|(_, _, s)| matches!(s, Seen::Master(Observation::ExecutorOffline { .. }))).collect();
    assert!(offline.is_empty(), "safety: executors declared offline: {offline:?}");
    let terms = events.iter().filter(|(_, _, s)| matches!(s, Seen::Master(Observation::ActingBegan { .. }))).count();
    assert_eq!(terms, 1, "safety: the leader changed (a forged resign was taken)");
    for (id, _) in &jobs {
        let (_, ended) =
            crate::master_failover::await_job(&c, id, Duration::from_secs(1), crate::master_failover::terminal).await;
        assert_eq!((ended.state, ended.restarts), (pb::JobState::Finished as i32, 0), "safety: {id}: {ended:?}");
    }
}

/// A call's outcome without its answer.
fn ok<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<(), tonic::Status> {
    r.map(|_| ())
}

/// A Discovery client whose calls say nothing of who makes them.
fn plain_discovery(ch: &Channel) -> DiscoveryClient<Channel> {
    DiscoveryClient::new(ch.clone())
}
