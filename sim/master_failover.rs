//! The master's first scenarios (issue 3): leader election and fencing, executor liveness across failovers, and
//! acknowledged jobs surviving leader kills. Each runs the real `Master` over simulated gRPC and the simulated
//! etcd, with stand-in executors, and ends with the checkers of `checks.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use foreman::core::invariants::{Id, Rule, Violation};
use foreman::master::Role;
use foreman::planted::Planted;
use foreman::rpc::pb;
use foreman::rpc::pb::job_manager_client::JobManagerClient;
use foreman::rpc::status::{reason_of, Reason};
use madsim::rand::Rng;

use crate::checks::{capacity_settled, one_live_incarnation, summary, Allowances};
use crate::cluster::{channel_to, master_addr, Cluster, Seen};
use crate::harness::{announce, fail};

/// Network and scheduling slack on every time bound: a few simulated hops.
const SLACK: Duration = Duration::from_millis(200);

fn secs(lo: u64, hi: u64) -> Duration {
    Duration::from_millis(madsim::rand::thread_rng().gen_range(lo * 1000..hi * 1000))
}

/// What a run measured, and its story (every recorded event, in order), for distributions and replay checks.
#[derive(Debug, Default)]
pub struct Figures {
    pub failover: Vec<Duration>,
    pub detection: Vec<Duration>,
    /// Detections where the leader changed between the kill and the declaration (the new leader's fresh TTL
    /// counts from its takeover).
    pub detection_across_failover: Vec<Duration>,
    pub story: Vec<String>,
}

impl Figures {
    fn of(c: &Cluster, detection: Vec<Duration>) -> Figures {
        let story = c.recorder.events().iter().map(|(at, node, seen)| format!("{at} {node} {seen:?}")).collect();
        Figures { detection, story, ..Figures::default() }
    }
}

/// The run's safety checks, whatever the scenario.
pub(crate) fn check_safety(c: &Cluster) -> Vec<std::time::Duration> {
    check_safety_with_slack(c, SLACK)
}

/// The same, with `slack` on every time bound (runs with slow networks or a slow etcd need more).
pub(crate) fn check_safety_with_slack(c: &Cluster, slack: Duration) -> Vec<std::time::Duration> {
    check_safety_detailed(c, slack).iter().filter_map(|d| d.since_kill).collect()
}

/// The same, with every offline declaration's timing. Fails the run with the first violation.
pub(crate) fn check_safety_detailed(c: &Cluster, slack: Duration) -> Vec<crate::checks::Detection> {
    safety_detailed(c, slack).unwrap_or_else(|v| fail(v))
}

/// The checks every scenario runs ([`crate::checks::every_run`]); the first violation, or every offline
/// declaration's timing.
fn safety_detailed(c: &Cluster, slack: Duration) -> Result<Vec<crate::checks::Detection>, Violation> {
    let allow = Allowances { slack, ..Allowances::default() };
    crate::checks::every_run(c, &allow).map(|m| m.detections)
}

/// The same with the run's allowances; fails the run with the first violation, or returns what the checkers
/// measured.
pub(crate) fn check_every_run(c: &Cluster, allow: &Allowances) -> crate::checks::Measured {
    crate::checks::every_run(c, allow).unwrap_or_else(|v| fail(v))
}

/// Capacity accounting once the cluster has settled (design.md §8): the leader holds no reservation and counts
/// exactly what every executor runs; with `idle` (every job has ended), nothing runs anywhere.
pub(crate) fn check_capacity_settled(c: &Cluster, idle: bool) {
    let running: Vec<crate::checks::Running> = c
        .executors
        .iter()
        .map(|n| {
            let e = n.current.lock().unwrap().clone();
            crate::checks::Running {
                node: n.name.clone(),
                id: e.as_ref().and_then(|e| e.id()),
                slots: e.map_or(0, |e| e.running().iter().map(|t| t.cost).sum()),
            }
        })
        .collect();
    if let Err(v) = capacity_settled(&c.recorder.events(), &running, idle) {
        fail(v);
    }
}

/// Kill the leader: exactly one new leader within lease TTL + one campaign retry; the old one, restarted, stays a
/// follower; no executor is declared offline (their heartbeats resume within the TTL through the new leader).
#[madsim::test]
async fn leader_killed_one_new_leader_within_bound() {
    leader_killed_one_new_leader_within_bound_run().await;
}

pub async fn leader_killed_one_new_leader_within_bound_run() -> Figures {
    announce("leader_killed_one_new_leader_within_bound");
    let c = Cluster::start(3, 3).await;
    let first = c.await_leader(Duration::from_secs(15)).await.expect("a leader within 15 s of start");
    tokio::time::sleep(secs(2, 6)).await;
    let killed_at = c.clock.now();
    c.kill_master(first);
    let el = &c.config.election;
    let bound = el.lease_ttl + el.campaign_retry;
    let next = c.await_leader(bound + SLACK).await;
    let failover = c.clock.now().saturating_since(killed_at);
    let next =
        next.unwrap_or_else(|| panic!("no single new leader within {:?} of killing master-{first}", bound + SLACK));
    assert_ne!(next, first);
    c.restart_master(first);
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(c.leaders(), vec![next], "the restarted master must stay a follower");
    let detections = check_safety(&c);
    assert!(detections.is_empty(), "healthy executors were declared offline: {detections:?}");
    Figures { failover: vec![failover], ..Figures::of(&c, detections) }
}

/// Cut the leader off from etcd but not from anyone else: it stops acting on its own (step-down deadline), a new
/// leader is elected, and no two masters act at the same simulated instant.
#[madsim::test]
async fn leader_cut_from_etcd_steps_down() {
    announce("leader_cut_from_etcd_steps_down");
    leader_cut_from_etcd_steps_down_run(None).await;
}

pub async fn leader_cut_from_etcd_steps_down_run(planted: Option<Planted>) -> Figures {
    let c = Cluster::start_with(3, 2, planted).await;
    let first = c.await_leader(Duration::from_secs(15)).await.expect("a leader within 15 s of start");
    tokio::time::sleep(secs(1, 5)).await;
    let (leader, etcd) = (c.masters[first].node.id(), c.etcd.id());
    c.net().clog_link(leader, etcd);
    c.net().clog_link(etcd, leader);
    let cut_at = c.clock.now();
    let el = &c.config.election;
    // It stops acting by its step-down deadline, counted from its last confirmed keep-alive (at most one interval
    // before the cut).
    let mut stopped = None;
    let mut waited = Duration::ZERO;
    while waited <= el.step_down + el.keepalive_interval + SLACK {
        if !matches!(c.masters[first].role(), Role::Leader(_) | Role::Recovering(_)) {
            stopped = Some(waited);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += Duration::from_millis(10);
    }
    // Rule 1: a leader stops acting before its lease can expire on the etcd side.
    let stopped = stopped.unwrap_or_else(|| {
        let detail = format!("step-down deadline: master-{first} still acts {waited:?} after being cut from etcd");
        fail(Violation::new(Rule::OneActingLeader, c.clock.now(), detail).with([Id::Master(format!("master-{first}"))]))
    });
    let next = c.await_leader(el.lease_ttl + el.campaign_retry + SLACK).await;
    let next =
        next.unwrap_or_else(|| panic!("no new leader {:?} after the cut", c.clock.now().saturating_since(cut_at)));
    assert_ne!(next, first);
    tracing::info!(
        "cut leader stopped acting after {stopped:?}; new leader after {:?}",
        c.clock.now().saturating_since(cut_at)
    );
    tokio::time::sleep(secs(5, 15)).await;
    c.net().unclog_link(leader, etcd);
    c.net().unclog_link(etcd, leader);
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(c.leaders().len(), 1, "exactly one leader after healing");
    let detections = check_safety(&c);
    Figures::of(&c, detections)
}

/// Executors that stop heartbeating (two killed at once; later one cut off one way from every master) are each
/// declared offline within TTL + check interval, across a leader kill in half the seeds; the others never are.
#[madsim::test]
async fn silent_executors_declared_offline_healthy_ones_never() {
    announce("silent_executors_declared_offline_healthy_ones_never");
    silent_executors_declared_offline_healthy_ones_never_run(None).await;
}

pub async fn silent_executors_declared_offline_healthy_ones_never_run(planted: Option<Planted>) -> Figures {
    let c = Cluster::start_with(3, 5, planted).await;
    let first = c.await_leader(Duration::from_secs(15)).await.expect("a leader within 15 s of start");
    tokio::time::sleep(secs(3, 6)).await;
    c.kill_executor(0);
    c.kill_executor(1);
    let kill_leader = madsim::rand::thread_rng().gen_bool(0.5);
    if kill_leader {
        tokio::time::sleep(secs(1, 8)).await;
        c.kill_master(first);
        c.await_leader(Duration::from_secs(10)).await.expect("a new leader");
        c.restart_master(first);
    }
    tokio::time::sleep(Duration::from_secs(25)).await;
    // Cut executor 2 off from every master, one way: its heartbeats no longer arrive.
    let e2 = c.executors[2].node.id();
    for m in &c.masters {
        c.net().clog_link(e2, m.node.id());
    }
    tokio::time::sleep(Duration::from_secs(20)).await;
    for m in &c.masters {
        c.net().unclog_link(e2, m.node.id());
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let detections = check_safety(&c);
    let events = c.recorder.events();
    let offline: Vec<String> = events
        .iter()
        .filter_map(|(_, _, s)| match s {
            Seen::Master(foreman::master::Observation::ExecutorOffline { name, .. }) => Some(name.clone()),
            _ => None,
        })
        .collect();
    for name in ["executor-0", "executor-1", "executor-2"] {
        assert_eq!(offline.iter().filter(|n| *n == name).count(), 1, "{name} declared offline once: {offline:?}");
    }
    assert!(!offline.iter().any(|n| n == "executor-3" || n == "executor-4"), "healthy executors declared: {offline:?}");
    assert!(
        events.iter().any(|(_, n, s)| n == "executor-2"
            && matches!(s, Seen::Exec(foreman::executor::ExecutorObservation::Reregister { .. }))),
        "executor-2 must be told to register again after the cut heals"
    );
    tracing::info!("leader killed: {kill_leader}; detection {}", summary(detections.clone()));
    if kill_leader {
        Figures { detection_across_failover: detections, ..Figures::of(&c, vec![]) }
    } else {
        Figures::of(&c, detections)
    }
}

/// Jobs created while leaders are killed: every acknowledged create is still there afterwards (design.md §5
/// rule 4). A create that timed out may have been applied: the client retries with the same id and takes
/// `ALREADY_EXISTS` as success.
#[madsim::test]
async fn acknowledged_jobs_survive_leader_kills() {
    acknowledged_jobs_survive_leader_kills_run().await;
}

pub async fn acknowledged_jobs_survive_leader_kills_run() -> Figures {
    announce("acknowledged_jobs_survive_leader_kills");
    let c = Cluster::start(3, 2).await;
    c.await_leader(Duration::from_secs(15)).await.expect("a leader within 15 s of start");
    let masters = c.masters.len();
    let rec = c.recorder.clone();
    let creator = c.client.spawn(async move {
        let mut which = 0usize;
        for k in 0..40u32 {
            let id = format!("job-{k:03}");
            loop {
                let Some(ch) = channel_to(&master_addr(which % masters), Duration::from_secs(2)).await else {
                    which += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let job = pb::Job {
                    id: id.clone(),
                    r#type: "fake".into(),
                    config: br#"{"workers": 2, "target": 10, "tick_ms": 100}"#.to_vec(),
                    ..Default::default()
                };
                match JobManagerClient::with_interceptor(ch, crate::harness::As::user())
                    .create_job(pb::CreateJobRequest { job: Some(job), request_id: String::new() })
                    .await
                {
                    Ok(_) => break,
                    Err(s) if reason_of(&s) == Some(Reason::JobAlreadyExists) => break,
                    Err(_) => {
                        which += 1;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            rec.record("client", Seen::JobCreated { id });
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    for _ in 0..2 {
        tokio::time::sleep(secs(3, 6)).await;
        if let Some(l) = c.await_leader(Duration::from_secs(10)).await {
            c.kill_master(l);
            tokio::time::sleep(secs(1, 3)).await;
            c.restart_master(l);
        }
    }
    creator.await.expect("the client finished");
    let leader = c.await_leader(Duration::from_secs(15)).await.expect("a leader after the kills");
    let acked: Vec<String> = c
        .recorder
        .events()
        .into_iter()
        .filter_map(|(_, _, s)| match s {
            Seen::JobCreated { id } => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(acked.len(), 40);
    let addr = master_addr(leader);
    let listed = c
        .client
        .spawn(async move {
            let ch = channel_to(&addr, Duration::from_secs(2)).await.expect("the leader answers");
            let mut client = JobManagerClient::with_interceptor(ch, crate::harness::As::user());
            let mut ids = vec![];
            let mut token = String::new();
            loop {
                let req = pb::ListJobsRequest { page_size: 7, page_token: token.clone(), ..Default::default() };
                let page = client.list_jobs(req).await.expect("list jobs").into_inner();
                ids.extend(page.jobs.into_iter().map(|j| j.id));
                if page.next_page_token.is_empty() {
                    return ids;
                }
                token = page.next_page_token;
            }
        })
        .await
        .expect("listing finished");
    for id in &acked {
        assert!(listed.contains(id), "acknowledged job {id} is missing after the leader kills; listed {listed:?}");
    }
    let detections = check_safety(&c);
    Figures::of(&c, detections)
}

/// Runs `scenario` for one seed in a fresh simulation (see [`crate::harness::run_seed`]); a failure fails the caller.
pub fn run_seed(seed: u64, scenario: fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Figures>>>) -> Figures {
    crate::harness::run_seed(seed, scenario).unwrap_or_else(|f| f.resume())
}

fn killed_leader() -> std::pin::Pin<Box<dyn std::future::Future<Output = Figures>>> {
    Box::pin(leader_killed_one_new_leader_within_bound_run())
}

fn silent_executors() -> std::pin::Pin<Box<dyn std::future::Future<Output = Figures>>> {
    Box::pin(silent_executors_declared_offline_healthy_ones_never_run(None))
}

/// The same seed replays the same run: an identical story, event for event (design.md §8).
#[test]
fn a_seed_replays_the_identical_run() {
    for seed in [1u64, 42, 4242] {
        let a = run_seed(seed, killed_leader);
        let b = run_seed(seed, killed_leader);
        assert!(!a.story.is_empty());
        assert_eq!(a.story, b.story, "seed {seed} did not replay identically");
        let other = run_seed(seed + 1, killed_leader);
        assert_ne!(a.story, other.story, "seeds {seed} and {} told the same story: is the seed used?", seed + 1);
    }
}

/// Failover and detection times over many seeds: p50 / p99 / max (each run also checks its own bounds).
#[test]
fn failover_and_detection_distributions() {
    let seeds: u64 = std::env::var("FOREMAN_FIGURE_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    let (mut failover, mut detection, mut across) = (vec![], vec![], vec![]);
    for seed in 0..seeds {
        failover.extend(run_seed(10_000 + seed, killed_leader).failover);
        let f = run_seed(20_000 + seed, silent_executors);
        detection.extend(f.detection);
        across.extend(f.detection_across_failover);
    }
    eprintln!("leader failover (kill to new serving leader), {seeds} seeds: {}", summary(failover.clone()));
    eprintln!("executor detection (kill to declared offline), same leader: {}", summary(detection.clone()));
    eprintln!("executor detection with a leader kill in between: {}", summary(across.clone()));
    assert_eq!(failover.len() as u64, seeds);
    assert!((detection.len() + across.len()) as u64 >= 2 * seeds);
}

/// Runs `f` on the client node (so its calls come from the client's address) and waits for it.
pub(crate) async fn on_client<T: Send + 'static>(
    c: &Cluster,
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    c.client.spawn(f).await.expect("the client task finished")
}

/// A job-manager call through whichever master answers, retrying for up to `within` (the calls' own time
/// included), as a careful client does: each master in turn, and once every master was tried, a pause that doubles
/// from 250 ms up to 4 s, with a jitter of up to half of it (so that a crowd of clients does not come back at once).
pub(crate) async fn with_jobs<T, F, Fut>(masters: usize, within: Duration, mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut(JobManagerClient<tonic::transport::Channel, crate::harness::As>) -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let clock = crate::harness::Clock::start();
    let mut last = tonic::Status::unavailable("no master tried");
    let mut which = 0usize;
    let mut pause = Duration::from_millis(250);
    loop {
        if let Some(ch) = channel_to(&master_addr(which % masters), Duration::from_secs(2)).await {
            match call(JobManagerClient::with_interceptor(ch, crate::harness::As::user())).await {
                Ok(v) => return Ok(v),
                Err(s) if s.code() == tonic::Code::Unavailable || s.code() == tonic::Code::DeadlineExceeded => last = s,
                Err(s) => return Err(s),
            }
        }
        which += 1;
        let round_done = which.is_multiple_of(masters);
        let wait = if round_done {
            let jitter = madsim::rand::thread_rng().gen_range(0..=pause.as_millis() as u64 / 2);
            let wait = pause + Duration::from_millis(jitter);
            pause = (pause * 2).min(Duration::from_secs(4));
            wait
        } else {
            Duration::from_millis(10)
        };
        if clock.now().saturating_since(foreman::core::time::Time::ZERO) + wait > within {
            return Err(last);
        }
        tokio::time::sleep(wait).await;
    }
}

pub(crate) async fn get_job(masters: usize, id: &str) -> pb::Job {
    let id = id.to_owned();
    with_jobs(masters, Duration::from_secs(30), move |mut c| {
        let id = id.clone();
        async move { c.get_job(pb::GetJobRequest { id, include_config: false }).await.map(|r| r.into_inner()) }
    })
    .await
    .expect("the job can be read")
}

/// Polls (on the client) until `pred` holds for job `id`, up to `within`; returns the job as last seen.
pub(crate) async fn await_job(c: &Cluster, id: &str, within: Duration, pred: fn(&pb::Job) -> bool) -> (bool, pb::Job) {
    let masters = c.masters.len();
    let id = id.to_owned();
    let rec = c.recorder.clone();
    on_client(c, async move {
        let mut waited = Duration::ZERO;
        loop {
            let j = get_job(masters, &id).await;
            rec.record("client", Seen::JobRead { id: id.clone(), state: Some(j.state) });
            if pred(&j) || waited >= within {
                return (pred(&j), j);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            waited += Duration::from_millis(500);
        }
    })
    .await
}

pub(crate) fn running(j: &pb::Job) -> bool {
    j.state == pb::JobState::Running as i32
}

pub(crate) fn terminal(j: &pb::Job) -> bool {
    [pb::JobState::Finished, pb::JobState::Canceled, pb::JobState::Failed].iter().any(|s| *s as i32 == j.state)
}

/// Job masters (stand-ins) through leader failovers: healthy ones are re-adopted by each new leader, not
/// restarted; one whose executor dies is started again elsewhere after its TTL; a cancel acknowledged just before
/// the leader dies is honoured by the next one; at most one live incarnation of each job master at every instant.
#[madsim::test]
async fn job_masters_run_through_failovers() {
    job_masters_run_through_failovers_run().await;
}

pub async fn job_masters_run_through_failovers_run() -> Figures {
    announce("job_masters_run_through_failovers");
    let c = Cluster::start(3, 3).await;
    c.await_leader(Duration::from_secs(15)).await.expect("a leader within 15 s of start");
    let masters = c.masters.len();
    let ids = ["alpha", "bravo", "charlie", "delta"];
    on_client(&c, async move {
        for id in ids {
            let job = pb::Job {
                id: id.into(),
                r#type: "fake".into(),
                // Long enough to be running through every fault below (~60 s of steps).
                config: br#"{"workers": 2, "target": 600, "tick_ms": 100}"#.to_vec(),
                ..Default::default()
            };
            let created = with_jobs(masters, Duration::from_secs(20), move |mut c| {
                let job = job.clone();
                async move {
                    c.create_job(pb::CreateJobRequest { job: Some(job), request_id: String::new() })
                        .await
                        .map(|r| r.into_inner())
                }
            })
            .await;
            match created {
                Ok(_) => {}
                Err(s) if reason_of(&s) == Some(Reason::JobAlreadyExists) => {}
                Err(s) => panic!("create {id}: {s}"),
            }
        }
    })
    .await;
    let mut epochs = BTreeMap::new();
    for id in ids {
        let (ok, j) = await_job(&c, id, Duration::from_secs(30), running).await;
        assert!(ok, "{id} is not running 30 s after creation: {j:?}");
        epochs.insert(id, (j.epoch, j.executor_id));
    }
    // A leader failover: every job master is re-adopted (same epoch, no restart).
    let leader = c.await_leader(Duration::from_secs(5)).await.expect("a leader");
    c.kill_master(leader);
    c.await_leader(Duration::from_secs(10)).await.expect("a new leader");
    c.restart_master(leader);
    tokio::time::sleep(Duration::from_secs(15)).await;
    for id in ids {
        let j = on_client(&c, async move { get_job(masters, id).await }).await;
        assert!(running(&j), "{id} must still run after the failover: {j:?}");
        assert_eq!((j.epoch, j.restarts), (epochs[id].0, 0), "{id} was restarted instead of re-adopted: {j:?}");
    }
    // Cancel one job and kill the leader right after the cancel was acknowledged: the next leader honours it.
    let canceled = on_client(&c, async move {
        with_jobs(masters, Duration::from_secs(20), |mut c| async move {
            c.cancel_job(pb::CancelJobRequest { id: "delta".into() }).await.map(|r| r.into_inner())
        })
        .await
        .expect("cancel delta")
    })
    .await;
    assert_eq!(canceled.state, pb::JobState::Canceling as i32, "{canceled:?}");
    let leader = c.await_leader(Duration::from_secs(5)).await.expect("a leader");
    c.kill_master(leader);
    c.await_leader(Duration::from_secs(10)).await.expect("a new leader");
    c.restart_master(leader);
    // Kill the executor hosting alpha: alpha starts again elsewhere, with a newer epoch.
    let host = epochs["alpha"].1;
    let executors = c.list_executors().await;
    let victim = executors.iter().find(|e| e.id == host).map(|e| e.name.clone()).expect("alpha's executor is listed");
    let index = c.executors.iter().position(|e| e.name == victim).expect("a known executor");
    c.kill_executor(index);
    let old = epochs["alpha"].0;
    let (ok, j) =
        await_job(&c, "alpha", Duration::from_secs(60), |j| running(j) && j.restarts >= 1 && j.executor_id != 0).await;
    assert!(ok && j.epoch > old, "alpha did not start again after its executor died: {j:?}");
    let (ok, j) = await_job(&c, "delta", Duration::from_secs(30), terminal).await;
    assert!(ok && j.state == pb::JobState::Canceled as i32, "delta must end canceled: {j:?}");
    for id in ["alpha", "bravo", "charlie"] {
        let (ok, j) = await_job(&c, id, Duration::from_secs(120), terminal).await;
        assert!(ok && j.state == pb::JobState::Finished as i32, "{id} must finish: {j:?}");
    }
    let detections = check_safety(&c);
    if let Err(v) = one_live_incarnation(&c.recorder.events()) {
        fail(v);
    }
    Figures::of(&c, detections)
}

/// `ResignLeader` hands leadership over: another master leads within a campaign retry (plus a few hops), with no
/// instant of two acting leaders; a follower asked to resign sits the next election out.
#[madsim::test]
async fn resign_hands_leadership_over() {
    announce("resign_hands_leadership_over");
    let c = Cluster::start(3, 2).await;
    let first = c.await_leader(Duration::from_secs(15)).await.expect("a leader within 15 s of start");
    tokio::time::sleep(secs(1, 4)).await;
    let addr = master_addr(first);
    let asked_at = c.clock.now();
    on_client(&c, async move {
        let ch = channel_to(&addr, Duration::from_secs(2)).await.expect("the leader answers");
        let mut d =
            foreman::rpc::pb::discovery_client::DiscoveryClient::with_interceptor(ch, crate::harness::As::user());
        d.resign_leader(pb::ResignLeaderRequest {}).await.expect("resign");
    })
    .await;
    let el = &c.config.election;
    let mut next = None;
    let mut waited = Duration::ZERO;
    while waited <= el.campaign_retry + Duration::from_secs(1) {
        if let [one] = c.leaders()[..] {
            if one != first {
                next = Some(one);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += Duration::from_millis(10);
    }
    let next = next
        .unwrap_or_else(|| panic!("no other leader {:?} after the resign", c.clock.now().saturating_since(asked_at)));
    tracing::info!("handed over to master-{next} after {:?}", c.clock.now().saturating_since(asked_at));
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(c.leaders(), vec![next], "leadership stays where it was handed");
    check_safety(&c);
}

/// Several executors die at once (fewer than half, so no eviction is held): every one is declared offline in the
/// same check, within TTL + check interval of when the leader last heard from it (design.md §6: "for each of any
/// number of simultaneous deaths"; the original system declared one per check).
#[madsim::test]
async fn simultaneous_deaths_are_declared_together() {
    announce("simultaneous_deaths_are_declared_together");
    simultaneous_deaths_are_declared_together_run(None).await;
}

pub async fn simultaneous_deaths_are_declared_together_run(planted: Option<Planted>) -> Figures {
    let c = Cluster::start_with(3, 7, planted).await;
    c.await_leader(Duration::from_secs(15)).await.expect("a leader within 15 s of start");
    tokio::time::sleep(secs(3, 8)).await;
    for i in 0..3 {
        c.kill_executor(i);
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    let detections = check_safety(&c);
    let events = c.recorder.events();
    let offline: Vec<(foreman::core::time::Time, String)> = events
        .iter()
        .filter_map(|(at, _, s)| match s {
            Seen::Master(foreman::master::Observation::ExecutorOffline { name, .. }) => Some((*at, name.clone())),
            _ => None,
        })
        .collect();
    let names: Vec<&str> = offline.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names.len(), 3, "exactly the three dead executors are declared offline: {offline:?}");
    for name in ["executor-0", "executor-1", "executor-2"] {
        assert!(names.contains(&name), "{name} declared offline: {offline:?}");
    }
    Figures::of(&c, detections)
}
