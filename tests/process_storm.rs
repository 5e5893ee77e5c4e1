//! A storm of one-step jobs with real processes against a real etcd (production build; issue 11).
//!
//! Three `foreman master` and three `foreman executor` processes of 16 slots each (48 slots, the cluster of the
//! report in which such a storm froze at 48/48 used). The test creates 2,000 fake jobs of one worker and one step
//! (`{"workers":1,"target":1,"tick_ms":1}`: each task starts and ends between two heartbeats of its executor)
//! through the gRPC API, 32 at a time, spread over the three masters (followers forward to the leader). Halfway
//! through the creates it SIGKILLs the leader: creates in flight get no answer and go to the next master with the
//! same `request_id`, which makes the retry safe, and the new leader has to place and release as exactly as the
//! old one. Then every job must finish, and the slots must all come back: the leader's `/metrics` shows
//! `foreman_executor_slots{kind="used"} 0` and every job finished, `ListExecutors` shows 0 used everywhere, and
//! each job left exactly one checkpoint at its target.
//!
//! Knobs: `FOREMAN_STORM_JOBS` (default 2,000), `FOREMAN_STORM_LEADER_KILL=0` (no kill). A master's answer outside
//! the client contract (see [`AfterFailure`]) fails the test.
//!
//! Needs an etcd: `scripts/with-etcd cargo test --test process_storm -- --ignored --nocapture` starts a throwaway one
//! and sets `FOREMAN_TEST_ETCD`. Run with `--ignored` and no etcd, it fails rather than skips.
#![cfg(not(madsim))]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use common::{
    checkpoint_problems, etcd_from_env, http_get, query, sample, wait_for_leader, CheckpointValue, Cluster,
    ExecutorListView, POLL,
};
use foreman::meta::MetaStore;
use foreman::rpc::pb;
use foreman::rpc::pb::discovery_client::DiscoveryClient;
use foreman::rpc::pb::job_manager_client::JobManagerClient;

/// How many jobs the storm creates, unless `FOREMAN_STORM_JOBS` says otherwise.
const JOBS_DEFAULT: usize = 2_000;
/// Creates in flight at once.
const IN_FLIGHT: usize = 32;
const MASTERS: usize = 3;
const EXECUTORS: usize = 3;
const EXECUTOR_CAPACITY: u32 = 16;
/// A fake job of one worker and one step.
const ONE_STEP: &str = r#"{"workers":1,"target":1,"tick_ms":1}"#;
/// How long the first election and the executors' registration may take.
const SETTLE_MAX: Duration = Duration::from_secs(20);
/// The deadline of one call to one master (the CLI's default `--timeout`).
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one job's create may be retried: a failover (the lease TTL, 5 s, and the new leader's recovery) fits
/// many times over, and it stays inside the window in which a master honours a repeated `request_id` (the CLI
/// resends one for at most 60 s too).
const CREATE_MAX: Duration = Duration::from_secs(60);
/// The first pause after a failed attempt, doubled after each one up to [`RETRY_PAUSE_MAX`].
const RETRY_PAUSE: Duration = Duration::from_millis(50);
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(1);
/// How often the surviving masters are asked who leads after the kill.
const LEADER_POLL: Duration = Duration::from_millis(200);
/// How long every job may take to finish, from the first create.
const FINISH_MAX: Duration = Duration::from_secs(300);
/// How long the count of finished jobs may stand still before the storm is called stuck (a failover pauses it
/// for the lease TTL, 5 s, and the new leader's recovery).
const STALL_MAX: Duration = Duration::from_secs(60);
/// How often the jobs are counted while they run.
const WATCH_POLL: Duration = Duration::from_secs(1);
/// How often the count is printed.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// How long the executors may take to report the last ended task after every job finished: a few executor
/// heartbeats (500 ms), and well inside `placement.reservation-ttl` (10 s), so reservations that only expired
/// would not pass.
const SLOTS_BACK_MAX: Duration = Duration::from_secs(5);
/// Jobs a `ListJobs` page holds (its maximum).
const PAGE_SIZE: u32 = 1_000;
/// The deadline on each metastore call of the final check.
const META_TIMEOUT: Duration = Duration::from_secs(10);

/// What the creators did, shared between them and the test.
#[derive(Default)]
struct Storm {
    /// The next job index to create.
    next: AtomicUsize,
    /// Creates acknowledged.
    created: AtomicUsize,
    /// Failed attempts that were retried, by what they ended with.
    retries: Mutex<BTreeMap<String, usize>>,
    /// Jobs that could not be created, with why.
    refused: Mutex<Vec<String>>,
    /// Attempts that ended with a status outside the client contract ([`AfterFailure::ResendOutsideContract`]).
    outside_contract: Mutex<Vec<String>>,
}

fn job_id(i: usize) -> String {
    format!("storm-{i:05}")
}

/// A lazily connected channel to each master, with [`CALL_TIMEOUT`] on every call.
fn channels(cluster: &Cluster) -> Vec<(String, Channel)> {
    let masters = cluster.nodes.iter().filter(|n| n.role == common::Role::Master);
    masters
        .map(|n| {
            let endpoint = Endpoint::from_shared(format!("http://{}", n.address)).expect("a valid endpoint");
            (n.name.clone(), endpoint.connect_timeout(CALL_TIMEOUT).timeout(CALL_TIMEOUT).connect_lazy())
        })
        .collect()
}

/// What the storm's client does after an attempt that failed.
#[derive(Debug, PartialEq, Eq)]
enum AfterFailure {
    /// Send the same request (same `request_id`) again, to the next master; the text says why, to count.
    Resend(String),
    /// Resend too, but a master answered outside the client contract: with no foreman reason. A follower whose
    /// forward to the killed leader broke once sent tonic's own `Unknown` "transport error" back as if it were the
    /// leader's answer, which the CLI took for a refusal; it must say `FORWARD_FAILED` (the create may have been
    /// carried out). Counted apart, printed, and failing the test.
    ResendOutsideContract(String),
    /// A master refused the create.
    Refused,
}

/// Sorts a failed attempt on master `name`. The storm resends whatever is not a refusal: with a `request_id` a
/// repeat of a create that was carried out returns the job, so every outcome that is unknown may be resent.
fn after_failure(status: &tonic::Status, name: &str) -> AfterFailure {
    use foreman::rpc::status::{reason_of, Reason};
    use tonic::Code;
    match reason_of(status) {
        Some(
            reason @ (Reason::NotLeader
            | Reason::NoLeader
            | Reason::MasterNotReady
            | Reason::MetastoreUnavailable
            | Reason::ForwardFailed),
        ) => AfterFailure::Resend(reason.as_str().to_owned()),
        Some(_) => AfterFailure::Refused,
        None => match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                AfterFailure::Resend(format!("{:?}", status.code()))
            }
            // A status this client made itself carries its cause (`source`); one a master sent does not. tonic
            // reports a connection cut in the middle of a call as `Unknown` "transport error": this client makes
            // one when its call to the killed leader breaks (the CLI resends it as an unknown outcome too).
            code if std::error::Error::source(status).is_some() => {
                AfterFailure::Resend(format!("{code:?} made by this client (its call broke)"))
            }
            code => AfterFailure::ResendOutsideContract(format!(
                "{code:?} {:?} answered by {name} with no reason",
                status.message()
            )),
        },
    }
}

/// Creates job `i` through any master: starts at master `first`, goes to the next one after every failed attempt,
/// and resends the same `request_id` until a master answers, for at most [`CREATE_MAX`]. `Err` is a refusal, or
/// no answer in time.
async fn create(
    masters: &[(String, Channel)],
    first: usize,
    i: usize,
    token: &str,
    storm: &Storm,
) -> Result<(), String> {
    let id = job_id(i);
    let request = pb::CreateJobRequest {
        job: Some(pb::Job { id: id.clone(), r#type: "fake".to_owned(), config: ONE_STEP.into(), ..pb::Job::default() }),
        request_id: token.to_owned(),
    };
    let started = Instant::now();
    let mut pause = RETRY_PAUSE;
    for attempt in 0.. {
        let (name, channel) = &masters[(first + attempt) % masters.len()];
        let mut call = tonic::Request::new(request.clone());
        call.set_timeout(CALL_TIMEOUT);
        let reply = tokio::time::timeout(CALL_TIMEOUT, JobManagerClient::new(channel.clone()).create_job(call)).await;
        let failure = match reply {
            Ok(Ok(job)) => {
                let job = job.into_inner();
                return if job.id == id {
                    Ok(())
                } else {
                    Err(format!("{id}: created as {:?} through {name}", job.id))
                };
            }
            Ok(Err(status)) => match after_failure(&status, name) {
                AfterFailure::Resend(why) => why,
                AfterFailure::ResendOutsideContract(why) => {
                    storm.outside_contract.lock().expect("not poisoned").push(format!("{id}: {why}"));
                    why
                }
                AfterFailure::Refused => {
                    let reason = foreman::rpc::status::reason_of(&status).map_or("-", |r| r.as_str());
                    return Err(format!("{id}: refused by {name}: {reason}: {}", status.message()));
                }
            },
            Err(_elapsed) => "no answer in time".to_owned(),
        };
        *storm.retries.lock().expect("not poisoned").entry(failure.clone()).or_default() += 1;
        if started.elapsed() > CREATE_MAX {
            return Err(format!("{id}: not created within {CREATE_MAX:?}; the last attempt ({name}): {failure}"));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_PAUSE_MAX);
    }
    unreachable!("the loop returns")
}

/// One of the [`IN_FLIGHT`] creators: takes the next job index until there is none left.
async fn creator(masters: Arc<Vec<(String, Channel)>>, k: usize, jobs: usize, run: String, storm: Arc<Storm>) {
    loop {
        let i = storm.next.fetch_add(1, Ordering::SeqCst);
        if i >= jobs {
            return;
        }
        match create(&masters, k % masters.len(), i, &format!("{run}-{i}"), &storm).await {
            Ok(()) => {
                storm.created.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => storm.refused.lock().expect("not poisoned").push(e),
        }
    }
}

/// The leader's kill, and what followed.
struct Kill {
    leader: pb::GetLeaderResponse,
    at: Instant,
    /// Creates acknowledged before the kill.
    after_creates: usize,
    /// The next leader, its epoch, and how long after the kill it was first named.
    next_leader: Option<(String, u64, Duration)>,
}

impl Kill {
    /// Asks the surviving masters who leads, and notes the first leader after the killed one.
    async fn watch_failover(&mut self, masters: &[(String, Channel)], t0: Instant) {
        let dead = self.leader.name.clone();
        if let Some(l) = leader_now(masters, |name| name != dead).await {
            if l.name != dead && l.leader_epoch > self.leader.leader_epoch {
                let after = self.at.elapsed();
                eprintln!(
                    "t={:.3}s new leader {} (epoch {}), {} ms after the kill",
                    t0.elapsed().as_secs_f64(),
                    l.name,
                    l.leader_epoch,
                    after.as_millis()
                );
                self.next_leader = Some((l.name, l.leader_epoch, after));
            }
        }
    }
}

/// The leader as the first running master that answers names it.
async fn leader_now(masters: &[(String, Channel)], running: impl Fn(&str) -> bool) -> Option<pb::GetLeaderResponse> {
    for (_, channel) in masters.iter().filter(|(name, _)| running(name)) {
        let reply = DiscoveryClient::new(channel.clone()).get_leader(pb::GetLeaderRequest {}).await;
        match reply {
            Ok(l) if l.get_ref().leader_epoch > 0 => return Some(l.into_inner()),
            Ok(_) | Err(_) => {}
        }
    }
    None
}

/// Every job, through the first running master that answers every page.
async fn list_jobs(masters: &[(String, Channel)], running: impl Fn(&str) -> bool) -> Result<Vec<pb::Job>, String> {
    let mut last = String::new();
    'masters: for (name, channel) in masters.iter().filter(|(name, _)| running(name)) {
        let mut client = JobManagerClient::new(channel.clone());
        let mut jobs = vec![];
        let mut page_token = String::new();
        loop {
            let request = pb::ListJobsRequest { page_size: PAGE_SIZE, page_token, ..pb::ListJobsRequest::default() };
            match client.list_jobs(request).await {
                Ok(page) => {
                    let page = page.into_inner();
                    jobs.extend(page.jobs);
                    if page.next_page_token.is_empty() {
                        return Ok(jobs);
                    }
                    page_token = page.next_page_token;
                }
                Err(status) => {
                    last = format!("{name}: {:?} {}", status.code(), status.message());
                    continue 'masters;
                }
            }
        }
    }
    Err(format!("no master listed the jobs; the last failure: {last}"))
}

/// The number of jobs in each state.
fn count_states(jobs: &[pb::Job]) -> BTreeMap<String, usize> {
    let mut states = BTreeMap::new();
    for job in jobs {
        let state = pb::JobState::try_from(job.state).map_or(format!("state {}", job.state), |s| {
            s.as_str_name().trim_start_matches("JOB_STATE_").to_lowercase()
        });
        *states.entry(state).or_default() += 1;
    }
    states
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} does not parse")),
        Err(_) => default,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real etcd: run through scripts/with-etcd"]
async fn a_storm_of_one_step_jobs_all_finish_and_give_every_slot_back_across_a_leader_kill() {
    let etcd = etcd_from_env("process_storm");
    let jobs: usize = env_or("FOREMAN_STORM_JOBS", JOBS_DEFAULT);
    let kill_leader = env_or::<u8>("FOREMAN_STORM_LEADER_KILL", 1) != 0;
    let mut cluster = Cluster::start(&etcd, "storm", MASTERS, &[EXECUTOR_CAPACITY; EXECUTORS]);
    let all = cluster.masters_except(None);
    let first = wait_for_leader(&mut cluster, &all, SETTLE_MAX, "the first election", |v| v.leader_epoch > 0).await;
    let settle = Instant::now();
    loop {
        cluster.assert_running();
        let last = match query::<ExecutorListView>(&all, &["cluster", "executors"]).await {
            Ok(v) if v.executors.len() == EXECUTORS && v.executors.iter().all(|e| e.status == "online") => break,
            Ok(v) => format!("{v:?}"),
            Err(e) => e,
        };
        assert!(settle.elapsed() < SETTLE_MAX, "{EXECUTORS} executors online: not within {SETTLE_MAX:?}; last: {last}");
        tokio::time::sleep(POLL).await;
    }
    eprintln!(
        "leader {} (epoch {}), {EXECUTORS} executors of {EXECUTOR_CAPACITY} slots online; creating {jobs} one-step jobs, \
         {IN_FLIGHT} in flight{}",
        first.name,
        first.leader_epoch,
        if kill_leader { ", the leader SIGKILLed halfway" } else { "" }
    );

    // 1. The storm, and the leader's kill halfway through it.
    let masters = Arc::new(channels(&cluster));
    let storm = Arc::new(Storm::default());
    let t0 = Instant::now();
    let mut creators = tokio::task::JoinSet::new();
    for k in 0..IN_FLIGHT {
        creators.spawn(creator(masters.clone(), k, jobs, cluster.cluster.clone(), storm.clone()));
    }
    let mut killed: Option<Kill> = None;
    let mut leader_polled = Instant::now();
    while !creators.is_empty() {
        cluster.assert_running();
        if kill_leader && killed.is_none() && storm.created.load(Ordering::SeqCst) >= jobs / 2 {
            let leader = leader_now(&masters, |_| true).await.expect("a leader to kill");
            let after_creates = storm.created.load(Ordering::SeqCst);
            cluster.kill(cluster.index_of(&leader.name));
            eprintln!(
                "t={:.3}s SIGKILLed leader {} (epoch {}) after {after_creates} creates",
                t0.elapsed().as_secs_f64(),
                leader.name,
                leader.leader_epoch
            );
            killed = Some(Kill { leader, at: Instant::now(), after_creates, next_leader: None });
        }
        if let Some(kill) = killed.as_mut().filter(|k| k.next_leader.is_none()) {
            if leader_polled.elapsed() >= LEADER_POLL {
                leader_polled = Instant::now();
                kill.watch_failover(&masters, t0).await;
            }
        }
        if let Ok(Some(done)) = tokio::time::timeout(Duration::from_millis(50), creators.join_next()).await {
            done.expect("a creator panicked");
        }
    }
    let created_in = t0.elapsed();
    let retries = storm.retries.lock().expect("not poisoned").clone();
    let refused = storm.refused.lock().expect("not poisoned").clone();
    eprintln!(
        "t={:.3}s {} of {jobs} created: {:.0} creates/s; retried attempts: {retries:?}",
        created_in.as_secs_f64(),
        storm.created.load(Ordering::SeqCst),
        jobs as f64 / created_in.as_secs_f64()
    );
    assert!(refused.is_empty(), "{} creates failed:\n{}", refused.len(), refused.join("\n"));
    let outside = storm.outside_contract.lock().expect("not poisoned").clone();
    assert!(outside.is_empty(), "a master answered outside the client contract:\n{}", outside.join("\n"));
    if let Some(kill) = killed.as_mut() {
        while kill.next_leader.is_none() {
            assert!(kill.at.elapsed() < SETTLE_MAX, "no new leader within {SETTLE_MAX:?} of the kill");
            tokio::time::sleep(LEADER_POLL).await;
            kill.watch_failover(&masters, t0).await;
        }
    }
    let dead = killed.as_ref().map(|k| k.leader.name.clone());
    let running = |name: &str| dead.as_deref() != Some(name);

    // 2. Every job finishes; none fails or is lost.
    let mut reported = Instant::now();
    let mut progress = (0, Instant::now());
    let finished_in = loop {
        cluster.assert_running();
        let last = match list_jobs(&masters, running).await {
            Ok(listed) => {
                let states = count_states(&listed);
                let finished = states.get("finished").copied().unwrap_or(0);
                if finished != progress.0 {
                    progress = (finished, Instant::now());
                }
                if progress.1.elapsed() > STALL_MAX {
                    let slots = slots_left(&cluster, &masters, running, jobs).await.err().unwrap_or_default();
                    panic!("no job finished for {STALL_MAX:?}: {states:?}; {slots}");
                }
                if let Some(bad) = listed.iter().find(|j| {
                    !matches!(
                        pb::JobState::try_from(j.state),
                        Ok(pb::JobState::Created | pb::JobState::Running | pb::JobState::Finished)
                    )
                }) {
                    panic!("{} is {:?}: {bad:?}", bad.id, pb::JobState::try_from(bad.state));
                }
                if listed.len() == jobs && states.get("finished") == Some(&jobs) {
                    break t0.elapsed();
                }
                assert!(listed.len() <= jobs, "{} jobs listed, {jobs} created", listed.len());
                format!("{} jobs listed: {states:?}", listed.len())
            }
            Err(e) => e,
        };
        if reported.elapsed() >= REPORT_EVERY {
            eprintln!("t={:.3}s {last}", t0.elapsed().as_secs_f64());
            reported = Instant::now();
        }
        assert!(t0.elapsed() < FINISH_MAX, "not every job finished within {FINISH_MAX:?}; last: {last}");
        tokio::time::sleep(WATCH_POLL).await;
    };
    let all_finished = Instant::now();
    eprintln!(
        "t={:.3}s all {jobs} finished: {:.1} jobs/s from the first create",
        finished_in.as_secs_f64(),
        jobs as f64 / finished_in.as_secs_f64()
    );

    // 3. Every slot comes back, as the leader's metrics and ListExecutors show it.
    let slots_back_in = loop {
        cluster.assert_running();
        let last = slots_left(&cluster, &masters, running, jobs).await;
        match last {
            Ok(()) => break all_finished.elapsed(),
            Err(e) => {
                assert!(
                    all_finished.elapsed() < SLOTS_BACK_MAX,
                    "every job finished, but not every slot came back within {SLOTS_BACK_MAX:?}: {e}"
                );
            }
        }
        tokio::time::sleep(POLL).await;
    };

    // 4. Each job ran its one step: exactly one checkpoint, at the target.
    let meta = MetaStore::etcd(std::slice::from_ref(&etcd), &cluster.cluster, META_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("cannot open the metastore at {etcd}: {e}"));
    let listed = meta.list("checkpoints/").await.unwrap_or_else(|e| panic!("cannot list checkpoints/: {e}"));
    let mut found: BTreeMap<String, BTreeMap<String, CheckpointValue>> =
        (0..jobs).map(|i| (job_id(i), BTreeMap::new())).collect();
    let mut problems = vec![];
    for (key, value) in listed {
        let Some((job, worker)) = key.strip_prefix("checkpoints/").and_then(|k| k.split_once('/')) else {
            problems.push(format!("{key}: not a checkpoint key"));
            continue;
        };
        match serde_json::from_slice::<CheckpointValue>(&value) {
            Ok(c) => {
                found.entry(job.to_owned()).or_default().insert(worker.to_owned(), c);
            }
            Err(e) => problems.push(format!("{key}: not a checkpoint ({e})")),
        }
    }
    for (job, checkpoints) in &found {
        problems.extend(checkpoint_problems(job, checkpoints, 1, 1, true));
    }
    assert!(problems.is_empty(), "{} problems with the checkpoints:\n{}", problems.len(), problems.join("\n"));

    eprintln!(
        "STORM: {jobs} one-step jobs on {MASTERS} masters and {EXECUTORS}x{EXECUTOR_CAPACITY} slots, {IN_FLIGHT} creates in \
         flight: created in {:.1}s ({:.0}/s), all finished after {:.1}s ({:.1} jobs/s), every slot free {} ms later; \
         leader kill: {}",
        created_in.as_secs_f64(),
        jobs as f64 / created_in.as_secs_f64(),
        finished_in.as_secs_f64(),
        jobs as f64 / finished_in.as_secs_f64(),
        slots_back_in.as_millis(),
        killed.map_or("none".to_owned(), |k| {
            let (name, epoch, after) = k.next_leader.expect("seen before the jobs were counted");
            format!(
                "{} (epoch {}) after {} creates, {name} (epoch {epoch}) led {} ms later",
                k.leader.name,
                k.leader.leader_epoch,
                k.after_creates,
                after.as_millis()
            )
        })
    );
}

/// `Ok` once the leader's `/metrics` shows no slot used and every job finished, and `ListExecutors` shows every
/// executor online with no slot used; otherwise what is left.
async fn slots_left(
    cluster: &Cluster,
    masters: &[(String, Channel)],
    running: impl Fn(&str) -> bool + Copy,
    jobs: usize,
) -> Result<(), String> {
    let leader = leader_now(masters, running).await.ok_or("no leader")?;
    let http = cluster.nodes[cluster.index_of(&leader.name)].http.clone().expect("masters serve HTTP");
    let (status, text) = http_get(&http, "/metrics").await?;
    if status != 200 {
        return Err(format!("GET /metrics of {}: {status}", leader.name));
    }
    let used = sample(&text, "foreman_executor_slots{kind=\"used\"}");
    let finished = sample(&text, "foreman_jobs{state=\"finished\"}");
    if used != Some(0.0) || finished != Some(jobs as f64) {
        return Err(format!("{}'s /metrics: slots used {used:?}, jobs finished {finished:?}", leader.name));
    }
    let (_, channel) = masters.iter().find(|(name, _)| *name == leader.name).expect("the leader is a master");
    let listed = DiscoveryClient::new(channel.clone())
        .list_executors(pb::ListExecutorsRequest {})
        .await
        .map_err(|s| format!("ListExecutors: {:?} {}", s.code(), s.message()))?
        .into_inner();
    let online = i32::from(pb::ExecutorStatus::Online);
    if listed.executors.len() != EXECUTORS || listed.executors.iter().any(|e| e.used != 0 || e.status != online) {
        let shown: Vec<String> = listed
            .executors
            .iter()
            .map(|e| format!("{} {}/{} status {}", e.name, e.used, e.capacity, e.status))
            .collect();
        return Err(format!("ListExecutors: {shown:?}"));
    }
    Ok(())
}
