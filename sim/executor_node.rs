//! Real `foreman executor` nodes (src/executor) against real masters over the simulated etcd, running the sleep
//! test task factory: membership (register, heartbeat, listed online, the metastore learned), the self-fence
//! before the leader's offline verdict under a one-way cut, and the dispatch rules driven from a client node.
//!
//! Addresses as in cluster.rs: etcd 10.0.0.1:2379, master i at 10.0.1.(i+1):10240, executor i at
//! 10.0.2.(i+1):10250, the client at 10.0.3.1.

use std::time::Duration;

use foreman::core::ids::{Epoch, ExecutorId, LeaderEpoch};
use foreman::executor::{ExecutorObservation, StopWhy};
use foreman::master::Observation;
use foreman::rpc::pb;
use foreman::rpc::pb::executor_service_client::ExecutorServiceClient;
use foreman::rpc::status::{reason_of, Reason};
use madsim::net::NetSim;
use tonic::Code;

use crate::checks::{fenced_messages, task_id};
use crate::cluster::{
    channel_to, executor_addr, executor_config, master_config, Cluster, Seen, Spec, Tasks, ETCD_ADDR,
};
use crate::harness::{announce, fail, As};

/// The dispatches a scenario sends itself come from a master, as the leader's do.
fn as_master() -> As {
    As::principal(&foreman::core::auth::Principal::Master("master-0".into()))
}

#[madsim::test]
async fn executors_register_heartbeat_and_are_listed_online() {
    announce("executors_register_heartbeat_and_are_listed_online");
    let sim = Cluster::build(3, 3, Tasks::Sleep, None).await;
    sim.settle(Duration::from_secs(30)).await;
    // Several heartbeat rounds and TTLs.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let listed = sim.list_executors().await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    for x in &listed {
        assert_eq!(x.status, pb::ExecutorStatus::Online as i32, "{x:?}");
        assert!(x.last_heartbeat_age_ms <= 2_000, "{x:?}");
    }
    for i in 0..3 {
        let e = sim.executor(i);
        assert!(listed.iter().any(|l| l.name == e.name() && Some(ExecutorId(l.id)) == e.id()), "{listed:?}");
    }
    for i in 0..3 {
        let e = sim.executor(i);
        let meta = e.metastore().expect("the executor learned the metastore");
        assert_eq!(meta.endpoints, vec![ETCD_ADDR.to_owned()]);
        assert_eq!(meta.kind, pb::StoreKind::Etcd);
        assert!(e.leader_epoch() >= LeaderEpoch(1));
        let seen = sim.exec_events(e.name());
        assert!(
            seen.iter().all(|(_, o)| !matches!(
                o,
                ExecutorObservation::Fenced { .. } | ExecutorObservation::Reregister { .. }
            )),
            "a healthy executor neither fenced nor re-registered: {seen:?}"
        );
        assert_eq!(seen.iter().filter(|(_, o)| matches!(o, ExecutorObservation::Registered { .. })).count(), 1);
    }
    fenced(&sim);
}

#[madsim::test]
async fn executor_cut_from_masters_fences_before_offline_then_registers_anew() {
    announce("executor_cut_from_masters_fences_before_offline_then_registers_anew");
    let sim = Cluster::build(2, 3, Tasks::Sleep, None).await;
    sim.settle(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let victim = sim.executor(0);
    let old_id = victim.id().expect("registered");
    // A task that would run for an hour: the fence must stop it.
    let addr = executor_addr(0);
    let id = old_id;
    let leader = victim.leader_epoch();
    sim.client
        .spawn(async move {
            let ch = channel_to(&addr, Duration::from_secs(2)).await.expect("the executor answers");
            let mut c = ExecutorServiceClient::with_interceptor(ch, as_master());
            c.pre_dispatch_task(pre_dispatch((id, leader), "long", 1, "r1", 3_600_000)).await.expect("parked");
            c.confirm_dispatch_task(confirm("long", "r1")).await.expect("started");
        })
        .await
        .expect("the client task finished");
    assert_eq!(victim.running().len(), 1);
    let net = NetSim::current();
    let exec_node = sim.executors[0].node.id();
    for m in &sim.masters {
        net.clog_link(exec_node, m.node.id());
    }
    tokio::time::sleep(Duration::from_secs(20)).await;
    for m in &sim.masters {
        net.unclog_link(exec_node, m.node.id());
    }
    // Offline, told to register again on its next heartbeat, and admitted under a new id.
    let step = Duration::from_millis(100);
    let mut waited = Duration::ZERO;
    while victim.id().is_none_or(|id| id == old_id) {
        assert!(waited < Duration::from_secs(20), "the executor did not register again after the cut healed");
        tokio::time::sleep(step).await;
        waited += step;
    }
    let events = sim.recorder.events();
    let fenced_at = events
        .iter()
        .find_map(|(_, n, e)| match e {
            Seen::Exec(ExecutorObservation::Fenced { id, at }) if n == victim.name() && *id == old_id => Some(*at),
            _ => None,
        })
        .expect("the cut executor fenced itself");
    let (offline_at, last_heard) = events
        .iter()
        .find_map(|(_, _, e)| match e {
            Seen::Master(Observation::ExecutorOffline { id, at, last_heard, .. }) if *id == old_id => {
                Some((*at, *last_heard))
            }
            _ => None,
        })
        .expect("the leader declared the cut executor offline");
    // The fence is anchored at the send time of the newest acknowledged heartbeat, which the leader heard later.
    let self_fence = master_config(0).executors.self_fence;
    assert!(
        fenced_at <= last_heard + self_fence,
        "fenced at {} but the leader last heard it at {}: later than the self-fence ({self_fence:?}) allows",
        sim.clock.at(fenced_at),
        sim.clock.at(last_heard)
    );
    assert!(
        fenced_at < offline_at,
        "fenced at {} but declared offline at {}: the executor must stop first",
        sim.clock.at(fenced_at),
        sim.clock.at(offline_at)
    );
    let seen = sim.exec_events(victim.name());
    assert!(seen.iter().any(|(_, o)| *o == ExecutorObservation::Reregister { id: old_id }), "{seen:?}");
    let stopped = ExecutorObservation::TaskStopped { task: task_id("long"), epoch: Epoch(1), why: StopWhy::Fenced };
    let stopped_at = seen.iter().find(|(_, o)| *o == stopped).map(|(t, _)| *t).expect("the fence stopped the task");
    assert!(stopped_at <= sim.clock.at(fenced_at), "stopped at {stopped_at}, fenced at {}", sim.clock.at(fenced_at));
    assert!(victim.running().is_empty());
    // Nobody else was disturbed.
    for i in 1..3 {
        let others = sim.exec_events(sim.executor(i).name());
        assert!(others.iter().all(|(_, o)| !matches!(o, ExecutorObservation::Fenced { .. })), "{others:?}");
    }
    assert!(events.iter().all(|(_, _, e)| match e {
        Seen::Master(Observation::ExecutorOffline { id, .. }) => *id == old_id,
        _ => true,
    }));
    fenced(&sim);
}

/// A dispatch placed on executor `executor` under leader epoch `leader`.
fn pre_dispatch(
    (executor, leader): (ExecutorId, LeaderEpoch),
    task: &str,
    epoch: u64,
    request: &str,
    sleep_ms: u64,
) -> pb::PreDispatchTaskRequest {
    pb::PreDispatchTaskRequest {
        task_id: task.to_owned(),
        kind: pb::TaskKind::Worker as i32,
        task_type: "sleep".to_owned(),
        task_config: sleep_ms.to_string().into_bytes(),
        job_id: "job".to_owned(),
        epoch,
        master_id: "client".to_owned(),
        master_address: "10.0.3.1:1".to_owned(),
        master_epoch: 1,
        leader_epoch: leader.0,
        request_id: request.to_owned(),
        executor_id: executor.0,
        cost: 1,
        timing: Some(pb::HeartbeatTiming {
            heartbeat_interval_ms: 1000,
            heartbeat_timeout_ms: 1000,
            self_fence_ms: 10_000,
            offline_ttl_ms: 12_000,
        }),
    }
}

fn confirm(task: &str, request: &str) -> pb::ConfirmDispatchTaskRequest {
    pb::ConfirmDispatchTaskRequest { task_id: task.to_owned(), request_id: request.to_owned() }
}

/// The leader stalls (paused 2 s, within its step-down time) while an executor with a short request deadline is
/// registering: each attempt times out at the executor and is retried, and the resumed leader handles every one.
/// They are one process's repeats: one id, no ghost executors that would be placed on and later declared offline
/// (CI swarm seed 1795945331 ran a job master on a ghost id while the process ran another job master under its
/// real id).
#[madsim::test]
async fn registrations_retried_against_a_stalled_leader_leave_no_ghosts() {
    announce("registrations_retried_against_a_stalled_leader_leave_no_ghosts");
    let mut impatient = executor_config(1, 1);
    impatient.rpc_timeout = Duration::from_millis(300);
    impatient.validate().expect("a valid executor configuration");
    let spec = Spec {
        masters: vec![master_config(0)],
        executors: vec![executor_config(0, 1), impatient],
        tasks: Tasks::Sleep,
        planted: Default::default(),
        etcd_timeout_rate: 0.0,
    };
    let sim = Cluster::build_spec(spec).await;
    sim.settle(Duration::from_secs(30)).await;
    let before = sim.executor(1).id().expect("registered");
    sim.kill_executor(1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    sim.pause_master(0);
    sim.restart_executor(1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    sim.resume_master(0);
    sim.settle(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let now = sim.executor(1).id().expect("registered");
    let listed = sim.list_executors().await;
    let ids: Vec<ExecutorId> = listed
        .iter()
        .filter(|x| x.name == sim.executor(1).name() && ExecutorId(x.id) != before)
        .filter(|x| x.status == pb::ExecutorStatus::Online as i32)
        .map(|x| ExecutorId(x.id))
        .collect();
    assert_eq!(ids, vec![now], "one id for the restarted process: {listed:?}");
    let registered = sim
        .exec_events(sim.executor(1).name())
        .into_iter()
        .filter(|(_, o)| matches!(o, ExecutorObservation::Registered { .. }))
        .count();
    assert_eq!(registered, 2, "once before the kill, once after");
    fenced(&sim);
}

#[madsim::test]
async fn dispatch_refuses_running_tasks_and_expired_requests() {
    announce("dispatch_refuses_running_tasks_and_expired_requests");
    let sim = Cluster::build(1, 2, Tasks::Sleep, None).await;
    sim.settle(Duration::from_secs(30)).await;
    let e = sim.executor(0);
    let ttl = e.config().dispatch_ttl;
    let id = e.id().expect("registered");
    let leader = e.leader_epoch();
    let addr = executor_addr(0);
    let checked = sim
        .client
        .spawn(async move {
            let ch = channel_to(&addr, Duration::from_secs(2)).await.expect("the executor answers");
            let mut c = ExecutorServiceClient::with_interceptor(ch, as_master());
            c.pre_dispatch_task(pre_dispatch((id, leader), "t1", 5, "r1", 600_000)).await.expect("parked");
            c.confirm_dispatch_task(confirm("t1", "r1")).await.expect("started");
            // The same task id while it runs, with a newer or an older epoch: refused.
            for (epoch, request) in [(6, "r2"), (4, "r3")] {
                let s = c.pre_dispatch_task(pre_dispatch((id, leader), "t1", epoch, request, 1)).await.unwrap_err();
                assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
                assert!(s.message().contains("already runs"), "{s:?}");
                assert_eq!(reason_of(&s), Some(Reason::TaskAlreadyRunning), "{s:?}");
            }
            // Placed on another registration (an earlier or a duplicate one of this process): refused.
            let s = c.pre_dispatch_task(pre_dispatch((id.next(), leader), "t8", 1, "r8", 1)).await.unwrap_err();
            assert_eq!((s.code(), reason_of(&s)), (Code::FailedPrecondition, Some(Reason::ExecutorOffline)), "{s:?}");
            assert!(s.message().contains(&format!("placed on executor {}", id.next())), "{s:?}");
            // Placed under an older leader term than this executor has heard from: refused.
            let older = LeaderEpoch(leader.0 - 1);
            let s = c.pre_dispatch_task(pre_dispatch((id, older), "t7", 1, "r7", 1)).await.unwrap_err();
            assert_eq!((s.code(), reason_of(&s)), (Code::FailedPrecondition, Some(Reason::StaleEpoch)), "{s:?}");
            assert!(s.message().contains("has heard from leader epoch"), "{s:?}");
            // Invalid requests.
            let s = c.pre_dispatch_task(pre_dispatch((id, leader), "t9", 0, "r9", 1)).await.unwrap_err();
            assert_eq!(reason_of(&s), Some(Reason::InvalidArgument), "{s:?}");
            let mut bad = pre_dispatch((id, leader), "t9", 1, "r9", 1);
            bad.timing.as_mut().unwrap().self_fence_ms = 13_000;
            let s = c.pre_dispatch_task(bad).await.unwrap_err();
            assert!(s.message().starts_with("timing:") && s.message().contains("rule:"), "{s:?}");
            // Parked, never confirmed in time: NOT_FOUND.
            c.pre_dispatch_task(pre_dispatch((id, leader), "t2", 1, "r4", 1)).await.expect("parked");
            tokio::time::sleep(ttl + Duration::from_millis(100)).await;
            let s = c.confirm_dispatch_task(confirm("t2", "r4")).await.unwrap_err();
            assert_eq!((s.code(), reason_of(&s)), (Code::NotFound, Some(Reason::DispatchNotFound)), "{s:?}");
            let s = c.confirm_dispatch_task(confirm("t3", "never")).await.unwrap_err();
            assert_eq!((s.code(), reason_of(&s)), (Code::NotFound, Some(Reason::DispatchNotFound)), "{s:?}");
            // The expired epoch never ran, so nothing of it is remembered: it may be parked again. A newer one
            // starts, runs its 1 ms and finishes; after it, the older epoch can no longer start.
            c.pre_dispatch_task(pre_dispatch((id, leader), "t2", 1, "r5", 1)).await.expect("parked again");
            c.pre_dispatch_task(pre_dispatch((id, leader), "t2", 2, "r6", 1)).await.expect("parked");
            c.confirm_dispatch_task(confirm("t2", "r6")).await.expect("started");
            let s = c.confirm_dispatch_task(confirm("t2", "r5")).await.unwrap_err();
            assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
            let stale_or_running = [Some(Reason::StaleEpoch), Some(Reason::TaskAlreadyRunning)];
            assert!(stale_or_running.contains(&reason_of(&s)), "{s:?}");
            true
        })
        .await
        .expect("the client task finished");
    assert!(checked);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // t1 runs and is reported to the leader; t2 finished.
    let running: Vec<String> = e.running().into_iter().map(|t| t.task_id).collect();
    assert_eq!(running, vec!["t1".to_owned()]);
    let listed = sim.list_executors().await;
    let me = listed.iter().find(|x| Some(ExecutorId(x.id)) == e.id()).expect("listed");
    assert_eq!(me.used, 1, "{me:?}");
    let seen = sim.exec_events(e.name());
    let stopped = ExecutorObservation::TaskStopped {
        task: task_id("t2"),
        epoch: Epoch(2),
        why: StopWhy::Exited(foreman::executor::TaskExit::Finished),
    };
    assert!(seen.iter().any(|(_, o)| *o == stopped), "{seen:?}");
    let started = ExecutorObservation::TaskStarted { task: task_id("t1"), epoch: Epoch(5), leader_epoch: leader };
    assert!(seen.iter().any(|(_, o)| *o == started), "{seen:?}");
    fenced(&sim);
}

/// Rule 2 over the run: no executor accepted an older leader epoch than one it had accepted.
fn fenced(sim: &Cluster) {
    fenced_messages(&sim.recorder.events()).unwrap_or_else(|v| fail(v));
}
