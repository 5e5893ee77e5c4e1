//! Fake jobs on real executors (issue 4): real masters, real `foreman executor` nodes running the production job
//! types, the simulated etcd. Each scenario draws a small workload of fake jobs, attacks it with one kind of
//! fault while it runs, lets it heal, and then checks every rule on the whole recorded run:
//!
//! - one acting leader at a time, detection bound and no false alarms (`checks::single_acting_leader`,
//!   `checks::offline_declarations`);
//! - at most one live incarnation of every job master and worker at every instant (`checks::one_live_incarnation`);
//! - checkpoints never go backwards nor skip (`checks::checkpoints_forward`);
//! - a canceled job never starts again (`checks::canceled_never_restart`);
//! - no executor runs beyond its capacity or under an id declared offline (`checks::placement_within_bounds`), and
//!   no leader places work on an executor that was down for the whole of its term
//!   (`checks::placed_only_on_live_executors`);
//! - every job ends Finished (Canceled when its cancel was acknowledged first) and every worker's checkpoint in
//!   the metastore is exactly at the target.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use foreman::core::ids::{Epoch, TaskId};
use foreman::core::invariants::{Id, Rule, Violation};
use foreman::core::time::Time;
use foreman::executor::ExecutorObservation;
use foreman::jobs::fake::{Checkpoint, FakeConfig};
use foreman::master::Observation;
use foreman::meta::MetaStore;
use foreman::planted::Planted;
use foreman::rpc::pb;
use madsim::rand::Rng;

use crate::checks::{
    canceled_never_restart, checkpoints_forward, first_broken, ids_never_reused, job_history, one_live_incarnation,
    placed_only_on_live_executors, placement_within_bounds, summary, Allowances,
};
use crate::cluster::{Cluster, Seen, CLUSTER, ETCD_ADDR, EXECUTOR_CAPACITY};
use crate::harness::{announce, fail, require, run_seed};
use crate::master_failover::{await_job, check_every_run, on_client, running, terminal, with_jobs};

/// How long a healed cluster has to finish every job.
const FINISH_WITHIN: Duration = Duration::from_secs(240);

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct JobFigures {
    /// Executor killed → declared offline.
    pub detection: Vec<Duration>,
    /// Executor hosting a job master killed → the job's next job-master incarnation started.
    pub reschedule: Vec<Duration>,
    /// Leader killed → the next leader acting.
    pub failover: Vec<Duration>,
    pub story: Vec<String>,
}

fn millis(lo: u64, hi: u64) -> Duration {
    Duration::from_millis(madsim::rand::thread_rng().gen_range(lo..hi))
}

/// A small workload: each job runs some 5 to 30 simulated seconds when nothing goes wrong.
fn draw_jobs(n: usize) -> Vec<(String, FakeConfig)> {
    let mut rng = madsim::rand::thread_rng();
    (0..n)
        .map(|i| {
            let config = FakeConfig::counting(rng.gen_range(1..=3), rng.gen_range(40..=120), rng.gen_range(100..=250));
            (format!("job-{i}"), config)
        })
        .collect()
}

fn config_json(c: &FakeConfig) -> Vec<u8> {
    serde_json::to_vec(c).expect("a fake config serializes")
}

/// Creates `job` through any master (call on the client node), retrying through failovers for up to 30 s with one
/// request token, so a retry of an applied attempt gets the job back. Whether it was acknowledged.
pub(crate) async fn create_job(masters: usize, job: pb::Job) -> bool {
    let id = job.id.clone();
    // One token for every attempt of this create, as a careful client does.
    let token = format!("create-{id}");
    let created = with_jobs(masters, Duration::from_secs(30), move |mut c| {
        let (job, request_id) = (job.clone(), token.clone());
        async move { c.create_job(pb::CreateJobRequest { job: Some(job), request_id }).await.map(|r| r.into_inner()) }
    })
    .await;
    match created {
        Ok(_) => true,
        Err(s) if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded) => false,
        Err(s) => panic!("create {id}: {s}"),
    }
}

/// Cancels `id` through any master (call on the client node), retrying for up to 30 s; the job as the cancel
/// left it, when acknowledged.
pub(crate) async fn cancel_job(masters: usize, id: &str) -> Option<pb::Job> {
    let job = id.to_owned();
    let reply = with_jobs(masters, Duration::from_secs(30), move |mut c| {
        let id = job.clone();
        async move { c.cancel_job(pb::CancelJobRequest { id }).await.map(|r| r.into_inner()) }
    })
    .await;
    match reply {
        Ok(j) => Some(j),
        Err(s) if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded) => None,
        Err(s) => panic!("cancel {id}: {s}"),
    }
}

/// Creates the jobs, recording each acknowledgement.
pub(crate) async fn create(c: &Cluster, jobs: &[(String, FakeConfig)]) {
    let masters = c.masters.len();
    for (id, config) in jobs {
        let job = pb::Job { id: id.clone(), r#type: "fake".into(), config: config_json(config), ..Default::default() };
        assert!(on_client(c, create_job(masters, job)).await, "create {id}: no master acknowledged it in 30 s");
        c.recorder.record("client", Seen::JobCreated { id: id.clone() });
    }
}

/// Cancels `id`; returns the job as the cancel left it, and records the acknowledgement.
pub(crate) async fn cancel(c: &Cluster, id: &str) -> pb::Job {
    let masters = c.masters.len();
    let job = id.to_owned();
    let reply = on_client(c, async move { cancel_job(masters, &job).await }).await;
    let reply = reply.unwrap_or_else(|| panic!("cancel {id}: no master acknowledged it in 30 s"));
    c.recorder.record("client", Seen::JobCanceled { id: id.to_owned(), epoch: Epoch(reply.epoch), state: reply.state });
    reply
}

/// Waits until every job runs; returns them.
pub(crate) async fn await_running(c: &Cluster, jobs: &[(String, FakeConfig)]) -> BTreeMap<String, pb::Job> {
    let mut out = BTreeMap::new();
    for (id, _) in jobs {
        let (ok, j) = await_job(c, id, Duration::from_secs(60), |j| running(j) || terminal(j)).await;
        assert!(ok, "{id} is not running 60 s after creation: {j:?}");
        out.insert(id.clone(), j);
    }
    out
}

/// The index of the executor node registered under `id` right now.
async fn executor_index(c: &Cluster, id: u64) -> Option<usize> {
    let listed = c.list_executors().await;
    let name = listed.iter().find(|e| e.id == id)?.name.clone();
    c.executors.iter().position(|e| e.name == name)
}

/// The tasks each executor node runs now, from the recorded starts and stops.
pub(crate) fn live_tasks(c: &Cluster) -> BTreeMap<String, BTreeSet<TaskId>> {
    let mut live: BTreeMap<String, BTreeSet<TaskId>> = BTreeMap::new();
    for (_, node, seen) in c.recorder.events() {
        match seen {
            Seen::Exec(ExecutorObservation::TaskStarted { task, .. }) => {
                live.entry(node).or_default().insert(task);
            }
            Seen::Exec(ExecutorObservation::TaskStopped { task, .. }) => {
                live.entry(node).or_default().remove(&task);
            }
            Seen::Killed => {
                live.remove(&node);
            }
            _ => {}
        }
    }
    live
}

/// The executor hosting job `id`'s job master (it must be running).
pub(crate) async fn job_master_host(c: &Cluster, job: &pb::Job) -> usize {
    executor_index(c, job.executor_id).await.unwrap_or_else(|| panic!("{}'s executor is not listed: {job:?}", job.id))
}

/// The most recent leader, waiting for one.
pub(crate) async fn leader(c: &Cluster) -> usize {
    c.await_leader(Duration::from_secs(30)).await.expect("a leader within 30 s")
}

/// Reads every checkpoint of `job` from the metastore (on the client node).
pub(crate) async fn checkpoints(c: &Cluster, job: &str) -> BTreeMap<String, Checkpoint> {
    stored_checkpoints(c, job).await
}

/// Reads every checkpoint of `job` from the metastore as `T` (on the client node), by key; retried until the
/// metastore answers.
pub(crate) async fn stored_checkpoints<T: serde::de::DeserializeOwned + Send + 'static>(
    c: &Cluster,
    job: &str,
) -> BTreeMap<String, T> {
    let stored = stored_under(c, &foreman::meta::keys::checkpoints_prefix(job)).await;
    stored.into_iter().map(|(k, v)| (k, serde_json::from_slice::<T>(&v).expect("a checkpoint parses"))).collect()
}

/// Every key under `prefix` in the metastore with its value (read on the client node), by key; retried until the
/// metastore answers.
pub(crate) async fn stored_under(c: &Cluster, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let prefix = prefix.to_owned();
    on_client(c, async move {
        let store =
            MetaStore::etcd(&[ETCD_ADDR.to_owned()], CLUSTER, Duration::from_secs(2)).await.expect("etcd client");
        loop {
            if let Ok(list) = store.list(&prefix).await {
                return list.into_iter().collect();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
}

/// Waits for every job to end, then checks every rule on the run. `canceled`: the jobs whose cancel was
/// acknowledged while they were not yet terminal: they end Canceled, or Finished when their job master finished
/// the work before it heard of the cancel (the others must end Finished).
pub(crate) async fn finish_and_check(
    c: &Cluster,
    jobs: &[(String, FakeConfig)],
    canceled: &BTreeSet<String>,
) -> JobFigures {
    let allow = Allowances { slack: Duration::from_millis(200), ..Allowances::default() };
    finish_and_check_allowing(c, jobs, canceled, &allow).await
}

/// The same, with the run's allowances (a scenario whose clock faults stretch the §6 bounds says so here).
pub(crate) async fn finish_and_check_allowing(
    c: &Cluster,
    jobs: &[(String, FakeConfig)],
    canceled: &BTreeSet<String>,
    allow: &Allowances,
) -> JobFigures {
    for (id, config) in jobs {
        let (ok, j) = await_job(c, id, FINISH_WITHIN, terminal).await;
        require(ok, || {
            let detail = format!("{id} did not end within {FINISH_WITHIN:?} of the faults healing: {j:?}");
            Violation::new(Rule::JobEnds, c.clock.now(), detail).with([Id::Job(id.clone())])
        });
        let finished = j.state == pb::JobState::Finished as i32;
        let ok = finished || (canceled.contains(id) && j.state == pb::JobState::Canceled as i32);
        assert!(ok, "{id} ended {:?} (canceled: {}): {j:?}", j.state, canceled.contains(id));
        if finished {
            let cps = checkpoints(c, id).await;
            assert_eq!(cps.len(), config.workers as usize, "{id}: one checkpoint per worker: {cps:?}");
            for (key, cp) in &cps {
                // The framework counts accepted writes in `seq`; for the fake each is one step.
                require(cp.state.counter == config.target && cp.seq == cp.state.counter, || {
                    let detail = format!("{key} ended at {} of {} (seq {})", cp.state.counter, config.target, cp.seq);
                    Violation::new(Rule::ExactCounters, c.clock.now(), detail).with([Id::Job(id.clone())])
                });
            }
        }
    }
    let detection = check_every_run(c, allow).detections.iter().filter_map(|d| d.since_kill).collect();
    let events = c.recorder.events();
    let rpc = &c.config.rpc;
    // The longest a heartbeat may be on its way to a leader: a follower's leader lookup, a connect and a call,
    // and a second of network slack.
    let in_flight = rpc.metastore_timeout + rpc.request_timeout * 2 + Duration::from_secs(1);
    first_broken([
        ("one live incarnation", one_live_incarnation(&events)),
        ("checkpoints forward", checkpoints_forward(&events)),
        ("canceled never restart", canceled_never_restart(&events)),
        ("placement", placement_within_bounds(&events, EXECUTOR_CAPACITY)),
        ("job history", job_history(&events)),
        ("registry", ids_never_reused(&events)),
        ("placement on live executors", placed_only_on_live_executors(&c.clock, &events, in_flight)),
    ])
    .unwrap_or_else(|v| fail(v));
    let story = events.iter().map(|(at, node, seen)| format!("{at} {node} {seen:?}")).collect();
    JobFigures { detection, failover: failovers(c), reschedule: reschedules(c), story }
}

/// Leader kill → next acting period's start, for every master the scenario killed while it led.
pub(crate) fn failovers(c: &Cluster) -> Vec<Duration> {
    let events = c.recorder.events();
    let mut acting: Option<String> = None;
    let mut killed_at: Option<Time> = None;
    let mut out = vec![];
    for (at, node, seen) in &events {
        match seen {
            Seen::Master(Observation::ActingBegan { at: when, .. }) => {
                if let Some(k) = killed_at.take() {
                    out.push(c.clock.at(*when).saturating_since(k));
                }
                acting = Some(node.clone());
            }
            Seen::Master(Observation::ActingEnded { .. }) if acting.as_deref() == Some(node) => acting = None,
            Seen::Killed if acting.as_deref() == Some(node) => {
                killed_at = Some(*at);
                acting = None;
            }
            _ => {}
        }
    }
    out
}

/// Executor kill → the next start of each job master it was running (a new incarnation elsewhere).
pub(crate) fn reschedules(c: &Cluster) -> Vec<Duration> {
    // Job masters only: their task id is the job id (no '/').
    next_starts(c, |seen| *seen == Seen::Killed)
        .into_iter()
        .filter(|(task, _)| !task.is_worker())
        .map(|(_, d)| d)
        .collect()
}

/// For every task running on a node when `trigger` happened to that node: the time from then to the task's next
/// start (a new incarnation, anywhere), with the task's id.
fn next_starts(c: &Cluster, trigger: impl Fn(&Seen) -> bool) -> Vec<(TaskId, Duration)> {
    let events = c.recorder.events();
    let mut live: BTreeMap<String, BTreeSet<TaskId>> = BTreeMap::new();
    let mut waiting: BTreeMap<TaskId, Time> = BTreeMap::new();
    let mut out = vec![];
    for (at, node, seen) in &events {
        match seen {
            Seen::Exec(ExecutorObservation::TaskStarted { task, .. }) => {
                if let Some(since) = waiting.remove(task) {
                    out.push((task.clone(), at.saturating_since(since)));
                }
                live.entry(node.clone()).or_default().insert(task.clone());
            }
            Seen::Exec(ExecutorObservation::TaskStopped { task, .. }) => {
                live.entry(node.clone()).or_default().remove(task);
            }
            seen if trigger(seen) => {
                for task in live.remove(node).unwrap_or_default() {
                    waiting.insert(task, *at);
                }
            }
            _ => {}
        }
    }
    out
}

/// The common start of a job scenario: a cluster of 3 masters and 4 executors (with `planted`), a leader, three
/// drawn jobs created and running. Returns the cluster, the jobs, and the jobs as last seen running.
pub(crate) async fn jobs_running(
    planted: Option<Planted>,
) -> (Cluster, Vec<(String, FakeConfig)>, BTreeMap<String, pb::Job>) {
    jobs_running_with(planted, None).await
}

/// The same, with job-0's configuration given.
pub(crate) async fn jobs_running_with(
    planted: Option<Planted>,
    first: Option<FakeConfig>,
) -> (Cluster, Vec<(String, FakeConfig)>, BTreeMap<String, pb::Job>) {
    let c = Cluster::start_with(3, 4, planted).await;
    leader(&c).await;
    let mut jobs = draw_jobs(3);
    if let Some(config) = first {
        jobs[0].1 = config;
    }
    create(&c, &jobs).await;
    let running = await_running(&c, &jobs).await;
    (c, jobs, running)
}

/// The executor hosting a job master is killed (and, with `restart`, comes back soon after under a new id):
/// its job masters start again elsewhere after their TTL, their workers are recovered or restarted from their
/// checkpoints, and every job finishes with exact counters.
pub async fn executor_killed_run(restart: bool, planted: Option<Planted>) -> JobFigures {
    let (c, jobs, running) = jobs_running(planted).await;
    tokio::time::sleep(millis(500, 4000)).await;
    let victim = job_master_host(&c, &running["job-0"]).await;
    c.kill_executor(victim);
    if restart {
        tokio::time::sleep(millis(200, 6000)).await;
        c.restart_executor(victim);
    }
    finish_and_check(&c, &jobs, &BTreeSet::new()).await
}

#[madsim::test]
async fn executor_killed_while_hosting_a_job_master() {
    announce("executor_killed_while_hosting_a_job_master");
    let f = executor_killed_run(false, None).await;
    assert!(!f.reschedule.is_empty(), "the killed job master was never started again");
}

#[madsim::test]
async fn executor_killed_and_restarted() {
    announce("executor_killed_and_restarted");
    executor_killed_run(true, None).await;
}

/// Graceful stop → the next start of each task that ran on the stopped executor (job masters and workers),
/// with the task's id.
fn moved_after_stop(c: &Cluster) -> Vec<(TaskId, Duration)> {
    next_starts(c, |seen| *seen == Seen::StopAsked)
}

/// How soon a drained task runs again elsewhere: its executor announces the drain (one heartbeat), the task
/// stops at its next step (a tick of at most 250 ms) and reports Stopped, its master places it again. Far below
/// the executor's offline TTL (10 s), which is what a crash costs.
const MOVED_WITHIN: Duration = Duration::from_secs(3);

/// The executor hosting job-0's job master is asked to stop (SIGTERM) while jobs run, and sometimes comes back
/// later: it announces the drain (nothing more is placed on it), its workers stop after a checkpoint that says
/// so and its job masters stop; each is started again elsewhere at once, then the executor deregisters. Nothing
/// is lost (exact counters), nothing runs twice, the backoff is not charged, and the executor is never declared
/// offline.
#[madsim::test]
async fn executor_stopped_gracefully_while_hosting_a_job_master() {
    executor_stopped_gracefully_while_hosting_a_job_master_run().await;
}

/// The body of [`executor_stopped_gracefully_while_hosting_a_job_master`] (its regression seeds replay it).
pub(crate) async fn executor_stopped_gracefully_while_hosting_a_job_master_run() {
    announce("executor_stopped_gracefully_while_hosting_a_job_master");
    let (c, jobs, running) = jobs_running(None).await;
    tokio::time::sleep(millis(500, 4000)).await;
    let victim = job_master_host(&c, &running["job-0"]).await;
    let id = c.executor(victim).id().expect("the job master's host is registered");
    let name = c.executors[victim].name.clone();
    c.stop_executor(victim);
    if madsim::rand::thread_rng().gen_bool(0.5) {
        tokio::time::sleep(millis(2_000, 8_000)).await;
        c.restart_executor(victim);
    }
    finish_and_check(&c, &jobs, &BTreeSet::new()).await;
    let moved = moved_after_stop(&c);
    let shown: Vec<(&str, &Duration)> = moved.iter().map(|(task, took)| (task.as_str(), took)).collect();
    assert!(moved.iter().any(|(task, _)| task.as_str() == "job-0"), "job-0's job master never ran again: {shown:?}");
    tracing::info!("figure: drained tasks ran again after {shown:?}");
    for (task, took) in &moved {
        require(took <= &MOVED_WITHIN, || {
            let detail = format!("{task} ran again {took:?} after its executor was asked to stop");
            Violation::new(Rule::Reschedule, c.clock.now(), detail).with([Id::Task(task.to_string())])
        });
    }
    let events = c.recorder.events();
    let deregistered = events.iter().any(|(_, node, seen)| {
        *node == name && matches!(seen, Seen::Exec(ExecutorObservation::Deregistered { id: d }) if *d == id)
    });
    assert!(deregistered, "{name} (executor {}) never deregistered", id.0);
    let declared = events
        .iter()
        .any(|(_, _, seen)| matches!(seen, Seen::Master(Observation::ExecutorOffline { id: d, .. }) if *d == id));
    assert!(!declared, "{name} (executor {}) left gracefully but was declared offline", id.0);
    for (job, _) in &jobs {
        let (_, j) = await_job(&c, job, Duration::from_secs(1), terminal).await;
        assert!(j.restarts <= 1, "{job} restarted {} times for one graceful stop: {j:?}", j.restarts);
    }
}

/// The leader is asked to stop (SIGTERM) while jobs run: it steps down and gives its election lease back, so
/// another master leads at once instead of after the lease TTL (5 s); every job finishes.
#[madsim::test]
async fn leader_stopped_gracefully_hands_over_at_once() {
    announce("leader_stopped_gracefully_hands_over_at_once");
    let (c, jobs, _) = jobs_running(None).await;
    tokio::time::sleep(millis(0, 3000)).await;
    let first = leader(&c).await;
    let asked = c.clock.now();
    c.stop_master(first);
    // Polled every 10 ms (simulated): the figure is exact to that step.
    loop {
        if matches!(c.leaders()[..], [next] if next != first) {
            break;
        }
        assert!(c.clock.now().saturating_since(asked) < Duration::from_secs(30), "no other leader within 30 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = c.clock.now().saturating_since(asked);
    tracing::info!("figure: graceful leader handover took {took:?}");
    let ttl = c.config.election.lease_ttl;
    require(took < Duration::from_secs(1), || {
        let detail = format!("the next leader took {took:?} after a graceful stop (lease TTL {ttl:?})");
        Violation::new(Rule::FailoverBound, c.clock.now(), detail).with([Id::Master(c.masters[first].name.clone())])
    });
    if madsim::rand::thread_rng().gen_bool(0.5) {
        tokio::time::sleep(millis(0, 5_000)).await;
        c.restart_master(first);
    }
    finish_and_check(&c, &jobs, &BTreeSet::new()).await;
}

/// The executor hosting a job master is paused longer than its self-fence, then resumed: its tasks stop the
/// moment they run again (they fenced), their replacements run elsewhere, the executor registers anew.
#[madsim::test]
async fn executor_paused_past_its_self_fence() {
    announce("executor_paused_past_its_self_fence");
    let (c, jobs, running) = jobs_running(None).await;
    tokio::time::sleep(millis(500, 4000)).await;
    let victim = job_master_host(&c, &running["job-0"]).await;
    c.pause_executor(victim);
    tokio::time::sleep(millis(9_000, 25_000)).await;
    c.resume_executor(victim);
    finish_and_check(&c, &jobs, &BTreeSet::new()).await;
}

/// The executor hosting a job master is cut from every master, both ways, but still reaches etcd and the other
/// executors: it fences itself before the leader declares it offline, its job masters are started elsewhere,
/// and once the cut heals it registers anew.
#[madsim::test]
async fn executor_cut_from_masters_not_from_etcd() {
    announce("executor_cut_from_masters_not_from_etcd");
    let (c, jobs, running) = jobs_running(None).await;
    tokio::time::sleep(millis(500, 4000)).await;
    let victim = c.executors[job_master_host(&c, &running["job-0"]).await].node.id();
    for m in &c.masters {
        c.net().clog_link(victim, m.node.id());
        c.net().clog_link(m.node.id(), victim);
    }
    tokio::time::sleep(millis(12_000, 25_000)).await;
    for m in &c.masters {
        c.net().unclog_link(victim, m.node.id());
        c.net().unclog_link(m.node.id(), victim);
    }
    finish_and_check(&c, &jobs, &BTreeSet::new()).await;
}

/// An executor running a worker is cut from the other executors (where the worker's job master runs) and from
/// etcd, but not from the masters: the executor itself stays online, so only the worker's own self-fence keeps
/// it from running beside the replacement its job master starts after the worker's TTL.
pub async fn worker_cut_run(planted: Option<Planted>) -> JobFigures {
    let (c, jobs, _) = jobs_running(planted).await;
    tokio::time::sleep(millis(1000, 4000)).await;
    // An executor running a worker whose job master runs elsewhere; else any executor running a worker.
    let live = live_tasks(&c);
    let hosts_master = |node: &str, job: &str| live.get(node).is_some_and(|t| t.iter().any(|t| t.as_str() == job));
    let candidates: Vec<&String> = live
        .iter()
        .filter(|(node, tasks)| {
            tasks.iter().any(|t| t.as_str().split_once('/').is_some_and(|(job, _)| !hosts_master(node, job)))
        })
        .map(|(node, _)| node)
        .collect();
    let fallback: Vec<&String> =
        live.iter().filter(|(_, tasks)| tasks.iter().any(|t| t.is_worker())).map(|(node, _)| node).collect();
    let pool = if candidates.is_empty() { fallback } else { candidates };
    if let Some(name) = pool.get(madsim::rand::thread_rng().gen_range(0..pool.len().max(1))) {
        let victim = c.executors.iter().find(|e| e.name == **name).expect("a known executor").node.id();
        let others: Vec<_> =
            c.executors.iter().map(|e| e.node.id()).filter(|id| *id != victim).chain([c.etcd.id()]).collect();
        for o in &others {
            c.net().clog_link(victim, *o);
            c.net().clog_link(*o, victim);
        }
        tokio::time::sleep(millis(14_000, 25_000)).await;
        for o in &others {
            c.net().unclog_link(victim, *o);
            c.net().unclog_link(*o, victim);
        }
    }
    finish_and_check(&c, &jobs, &BTreeSet::new()).await
}

#[madsim::test]
async fn worker_cut_from_its_job_master_and_etcd() {
    announce("worker_cut_from_its_job_master_and_etcd");
    worker_cut_run(None).await;
}

/// The leader is killed while the job masters of freshly created jobs are being placed and dispatched: the next
/// leader recovers the jobs (started incarnations are re-adopted or lost after their TTL, never duplicated).
#[madsim::test]
async fn leader_killed_while_job_masters_are_dispatched() {
    announce("leader_killed_while_job_masters_are_dispatched");
    let c = Cluster::start(3, 4).await;
    let first = leader(&c).await;
    let jobs = draw_jobs(3);
    create(&c, &jobs).await;
    tokio::time::sleep(millis(0, 1500)).await;
    c.kill_master(first);
    leader(&c).await;
    c.restart_master(first);
    let f = finish_and_check(&c, &jobs, &BTreeSet::new()).await;
    assert!(!f.failover.is_empty(), "the killed leader was not followed by another");
}

/// A job is canceled around a leader kill (the cancel may be acknowledged by either leader): it ends Canceled
/// (it runs a minute, far longer than the cancel takes to reach it), never starts again, and the other jobs finish.
#[madsim::test]
async fn job_canceled_during_a_failover() {
    announce("job_canceled_during_a_failover");
    job_canceled_during_a_failover_run(None).await;
}

pub async fn job_canceled_during_a_failover_run(planted: Option<Planted>) -> JobFigures {
    let long = FakeConfig::counting(2, 400, 150);
    let (c, jobs, _) = jobs_running_with(planted, Some(long)).await;
    tokio::time::sleep(millis(0, 3000)).await;
    let l = leader(&c).await;
    let kill_first = madsim::rand::thread_rng().gen_bool(0.5);
    if kill_first {
        c.kill_master(l);
    }
    let reply = cancel(&c, "job-0").await;
    if !kill_first {
        tokio::time::sleep(millis(0, 500)).await;
        c.kill_master(l);
    }
    leader(&c).await;
    c.restart_master(l);
    let mut canceled = BTreeSet::new();
    let acknowledged = [pb::JobState::Canceling, pb::JobState::Canceled].iter().any(|s| *s as i32 == reply.state);
    if acknowledged {
        canceled.insert("job-0".to_owned());
    }
    let f = finish_and_check(&c, &jobs, &canceled).await;
    let (_, j) = await_job(&c, "job-0", Duration::from_secs(1), terminal).await;
    assert!(
        !acknowledged || j.state == pb::JobState::Canceled as i32,
        "cancel intent: job-0's cancel was acknowledged ({:?}) but it ended {:?}: {j:?}",
        reply.state,
        j.state
    );
    f
}

/// The leader is killed while fake jobs run, and at that moment the executor hosting job-0's job master loses
/// the masters for a few seconds (well within every self-fence): the next leader waits for that job master to
/// check in and re-adopts it, never starting a second one beside it.
#[madsim::test]
async fn leader_killed_during_a_network_blip() {
    announce("leader_killed_during_a_network_blip");
    leader_killed_during_a_blip_run(None).await;
}

pub async fn leader_killed_during_a_blip_run(planted: Option<Planted>) -> JobFigures {
    let (c, jobs, running) = jobs_running(planted).await;
    let host = c.executors[job_master_host(&c, &running["job-0"]).await].node.id();
    let first = leader(&c).await;
    for m in &c.masters {
        c.net().clog_link(host, m.node.id());
    }
    c.kill_master(first);
    tokio::time::sleep(millis(2_000, 6_000)).await;
    for m in &c.masters {
        c.net().unclog_link(host, m.node.id());
    }
    leader(&c).await;
    c.restart_master(first);
    finish_and_check(&c, &jobs, &BTreeSet::new()).await
}

/// The executor hosting job-0's job master is killed; the moment the leader has charged job-0's backoff for the
/// loss (once written), the leader is killed too, well inside the delay: the next leader must wait that whole
/// delay again from its takeover before job-0 runs again (the backoff checker holds every leader to it), and every
/// job finishes.
#[madsim::test]
async fn leader_killed_while_a_job_waits_out_its_backoff() {
    announce("leader_killed_while_a_job_waits_out_its_backoff");
    leader_killed_while_a_job_waits_out_its_backoff_run(None).await;
}

pub async fn leader_killed_while_a_job_waits_out_its_backoff_run(planted: Option<Planted>) -> JobFigures {
    let (c, jobs, running) = jobs_running(planted).await;
    tokio::time::sleep(millis(500, 4000)).await;
    let victim = job_master_host(&c, &running["job-0"]).await;
    let from = c.recorder.events().len();
    c.kill_executor(victim);
    // Polled every 10 ms (simulated): the leader dies within 10 ms of the charge, its delay at least 800 ms.
    let charged = |seen: &Seen| matches!(seen, Seen::Master(Observation::BackoffCharged { job, allowed: Some(_), .. }) if job.as_str() == "job-0");
    let since = c.clock.now();
    while !c.recorder.events_from(from).iter().any(|(_, _, seen)| charged(seen)) {
        assert!(c.clock.now().saturating_since(since) < Duration::from_secs(60), "job-0 was never charged");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let l = leader(&c).await;
    c.kill_master(l);
    leader(&c).await;
    c.restart_master(l);
    finish_and_check(&c, &jobs, &BTreeSet::new()).await
}

/// The leader is killed while fake jobs run: the next one re-adopts every job master and every job finishes, and no
/// job master or worker that ran is started again (design.md §6 failover: re-adopted, not restarted; the wasted-work
/// checker, for which a leader's death explains no restart of work that ran).
#[madsim::test]
async fn leader_failover_with_jobs() {
    announce("leader_failover_with_jobs");
    leader_failover_with_jobs_run(None).await;
}

pub async fn leader_failover_with_jobs_run(planted: Option<Planted>) -> JobFigures {
    let (c, jobs, _) = jobs_running(planted).await;
    let first = leader(&c).await;
    c.kill_master(first);
    leader(&c).await;
    c.restart_master(first);
    let figures = finish_and_check(&c, &jobs, &BTreeSet::new()).await;
    // Every fault of this run is in its story (a kill and a restart).
    let k = &c.config;
    let horizon = (k.executors.offline_ttl + k.executors.self_fence).max(k.workers.offline_ttl + k.workers.self_fence)
        + k.executors.check_interval;
    if let Err(v) = crate::checks::restarts_explained(
        &c.recorder.events(),
        &[],
        horizon,
        c.masters.len() > 1 && k.failover_keeps_work(),
    ) {
        fail(v);
    }
    figures
}

/// Detection, job-master reschedule and leader failover times over many seeds (each run checks every rule).
#[test]
fn job_failover_distributions() {
    let seeds: u64 = std::env::var("FOREMAN_FIGURE_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let (mut detection, mut reschedule, mut failover) = (vec![], vec![], vec![]);
    for n in 0..seeds {
        let f = run_seed(50_000 + n, || Box::pin(executor_killed_run(false, None)))
            .unwrap_or_else(|p| panic!("seed {}: {}", 50_000 + n, p));
        detection.extend(f.detection);
        reschedule.extend(f.reschedule);
        let f = run_seed(60_000 + n, || Box::pin(leader_failover_with_jobs_run(None)))
            .unwrap_or_else(|p| panic!("seed {}: {}", 60_000 + n, p));
        failover.extend(f.failover);
    }
    eprintln!("executor detection (kill to declared offline), {seeds} seeds: {}", summary(detection.clone()));
    eprintln!("job-master reschedule (executor kill to next incarnation started): {}", summary(reschedule.clone()));
    eprintln!("leader failover with jobs running (kill to next leader acting): {}", summary(failover.clone()));
    assert_eq!(failover.len() as u64, seeds, "every leader kill is followed by a new leader");
    assert!(reschedule.len() as u64 >= seeds, "every killed job master is started again");
}

/// A seed of the job scenarios replays the same run, event for event, with real executors, job masters and
/// workers in it (and another seed tells another story).
#[test]
fn a_job_seed_replays_the_identical_run() {
    for seed in [7u64, 77] {
        let run = move || run_seed(seed, || Box::pin(executor_killed_run(true, None))).expect("the run passes");
        let (a, b) = (run(), run());
        assert!(a.story.len() > 100, "a short story: {}", a.story.len());
        assert_eq!(a.story, b.story, "seed {seed} did not replay identically");
        let other = run_seed(seed + 1, || Box::pin(executor_killed_run(true, None))).expect("the run passes");
        assert_ne!(a.story, other.story, "seeds {seed} and {} told the same story", seed + 1);
    }
}
