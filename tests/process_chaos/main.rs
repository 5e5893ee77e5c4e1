//! Process-level chaos (production build; issue 6, item 3): a real etcd cluster of 3 members, 3 `foreman master`
//! and 4 `foreman executor` processes on loopback, a workload of fake jobs through the CLI, and a bounded, seeded
//! nemesis that SIGKILLs and restarts masters (the leader most often) and executors, SIGSTOPs and SIGCONTs them,
//! and restarts one etcd member; then everything is healed and every job must end. Every process runs with mutual
//! TLS and the masters with a tokens file (issue 15: the production default): each node holds its own certificate
//! from `foreman tls init`, and every CLI call the test makes carries the CA and the token of an admin user.
//!
//! Method. The seed (printed first; `FOREMAN_CHAOS_SEED` replays it) draws the plan: the jobs (ids, workers,
//! targets, when each is created and which are canceled), the control-plane episodes (leader kills, a follower kill
//! or a master pause, one etcd member restart), run one after the other, and the executor faults (kills and pauses
//! with their durations, at most two executors faulted at once), which overlap them. The plan names roles, not
//! processes: "kill the leader" kills whoever leads at that moment, so a replay repeats the plan, not every pick.
//! The workload, the control track and the executor track run side by side.
//!
//! What is checked:
//! - every acknowledged job ends `finished` with exact counters (one checkpoint per worker, each exactly at the
//!   target), or, when its cancel was acknowledged, `canceled` with no counter past the target (`finished` with
//!   exact counters is legal too: it finished while the cancel was on its way, design.md §5 rule 5);
//! - at most one live incarnation of every job master and worker at every instant (rule 3), from the executors'
//!   `task started` / `task stopped` log lines and the instants at which the test killed, paused and resumed them
//!   (one machine, one clock): an incarnation is live from its start line to its stop line, or to its process's
//!   SIGKILL; a paused process's incarnations are frozen (they cannot act), and after the resume one is live again
//!   once it acts (a `checkpoint written` line) or once [`checks::RESUME_GRACE`] passed without its stop line: the
//!   reasoning of the simulation's checker (`sim/checks/incarnations.rs`), whose grace is 5 ms of simulated time; a
//!   real process needs the OS to run it again first, and the test prints how long each resumed task took to stop;
//! - a canceled job never starts again (rule 5), as `sim/checks/cancel.rs` checks it;
//! - after each SIGKILL of the leader the survivors name a new leader within the lease TTL + 1 s (design.md §9),
//!   measured from just before the kill to the first `cluster leader` answer naming another master with a newer
//!   epoch (an upper bound). No etcd fault overlaps a leader kill: the control track runs its episodes one at a
//!   time and waits the lease TTL + 2 s after an etcd member is back (an etcd leader change extends every lease by
//!   etcd's election timeout, which would legitimately push a failover past the bound).
//!
//! Needs `etcd` on PATH (Debian: etcd-server); starts and stops its own etcd cluster:
//! `cargo test --test process_chaos -- --ignored --nocapture` (scripts/test runs it).
#![cfg(not(madsim))]

mod checks;
#[path = "../common/mod.rs"]
mod common;
mod plan;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use checks::{canceled_never_restart, one_live_incarnation, parse_log, Event, Seen, RESUME_GRACE};
use common::etcd::EtcdCluster;
use common::{
    checkpoint_problems, checkpoints, create_job_with, leader_with, query_with, Cluster, ExecutorListView, JobListView,
    JobView, LeaderView, NodeOptions, POLL,
};
use foreman::meta::MetaStore;
use plan::{ControlEpisode, ExecutorAction, JobPlan, Plan};

const ETCD_MEMBERS: usize = 3;
const MASTERS: usize = 3;
const EXECUTORS: usize = 4;
/// Slots per executor: with two executors faulted, the other two still hold every job master and worker.
const EXECUTOR_CAPACITY: u32 = 24;

/// The masters' election lease (`--election-lease-ttl` below).
const LEASE_TTL: Duration = Duration::from_secs(3);
/// The failover bound of design.md §9: a new leader named within the lease TTL + 1 s of the leader's SIGKILL.
const FAILOVER_MAX: Duration = Duration::from_secs(LEASE_TTL.as_secs() + 1);
/// Short timings that `MasterConfig::validate` accepts without a warning: step-down (1.5 s) < lease TTL − 1 s;
/// self-fence + heartbeat timeout < offline TTL at both levels; both self-fences (6 s) outlive a failover (lease
/// TTL + campaign retry + heartbeat interval = 3.75 s for executors, 4 s for job masters), so a leader kill does not
/// stop healthy work.
const MASTER_ARGS: &[&str] = &[
    "--election-lease-ttl=3s",
    "--election-keepalive-interval=500ms",
    "--election-step-down=1500ms",
    "--election-campaign-retry=500ms",
    "--executors-heartbeat-interval=250ms",
    "--executors-heartbeat-timeout=500ms",
    "--executors-self-fence=6s",
    "--executors-offline-ttl=7s",
    "--executors-check-interval=250ms",
    "--workers-heartbeat-interval=500ms",
    "--workers-heartbeat-timeout=500ms",
    "--workers-self-fence=6s",
    "--workers-offline-ttl=7s",
    "--backoff-initial=500ms",
    "--backoff-max=4s",
    "--placement-reservation-ttl=3s",
];
/// The executors log each checkpoint (debug) too: a resumed incarnation's first checkpoint is its first act.
const EXECUTOR_LOG: &str = "info,foreman::framework::checkpoint=debug";

/// How long the first election and the executors' registration may take.
const SETTLE_MAX: Duration = Duration::from_secs(20);
/// How long a leader may take to be named between episodes (a paused leader's term may be ending).
const LEADER_MAX: Duration = Duration::from_secs(15);
/// How long the failover of a killed leader is watched (past the bound, to report how long it really took).
const FAILOVER_WATCH: Duration = Duration::from_secs(15);
/// How long a create or cancel is retried through the chaos before the test gives up on the API.
const API_MAX: Duration = Duration::from_secs(20);
/// How long a restarted etcd member may take to be healthy.
const ETCD_HEALTHY_MAX: Duration = Duration::from_secs(20);
/// After an etcd member is back, no control-plane fault for this long: the lease TTL + 2 s (see the module
/// documentation).
const ETCD_SETTLE: Duration = Duration::from_secs(LEASE_TTL.as_secs() + 2);
/// How long every job may take to end after the heal.
const FINISH_MAX: Duration = Duration::from_secs(120);
/// The deadline on each metastore call of the final check.
const META_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole test's budget (CI runs it in under 5 minutes).
const TEST_MAX: Duration = Duration::from_secs(270);

/// The wall clock in microseconds since the Unix epoch: the executors' log lines carry it (tracing's default
/// timestamps), and the test's kills, pauses and resumes are compared with them.
fn wall_us() -> i64 {
    // why: the test compares its own instants with the wall-clock timestamps of the processes' logs (one machine,
    // one clock); a production-build test touches no simulation.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_micros()).unwrap_or(i64::MAX)
}

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

/// What the test did to a process, at a wall-clock instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// After the SIGKILL was delivered and the process reaped: it logs nothing later.
    Killed,
    /// After the SIGSTOP was sent.
    Paused,
    /// Before the SIGCONT was sent.
    Resumed,
}

/// A measured failover.
#[derive(Clone, Debug)]
struct Failover {
    from: LeaderView,
    to: Option<LeaderView>,
    took: Duration,
}

/// The story: every line printed at once with the time since the test started, and what the checks need.
struct Story {
    t0: Instant,
    wall0_us: i64,
    /// Everything the nemesis did, for the summary.
    actions: Mutex<Vec<String>>,
    /// Kills, pauses and resumes of executors, by process name.
    faults: Mutex<Vec<(i64, String, Fault)>>,
    failovers: Mutex<Vec<Failover>>,
    /// Acknowledged cancels: job → (the wall-clock instant the CLI returned, the job as the reply showed it).
    cancels: Mutex<BTreeMap<String, (i64, JobView)>>,
    /// Create and cancel attempts that failed (not acknowledged; retried).
    api_failures: Mutex<usize>,
}

impl Story {
    fn new() -> Story {
        Story {
            t0: Instant::now(),
            wall0_us: wall_us(),
            actions: Mutex::new(vec![]),
            faults: Mutex::new(vec![]),
            failovers: Mutex::new(vec![]),
            cancels: Mutex::new(BTreeMap::new()),
            api_failures: Mutex::new(0),
        }
    }

    fn stamp(&self) -> String {
        format!("t={:>7.3}s", self.t0.elapsed().as_secs_f64())
    }

    fn say(&self, what: &str) {
        eprintln!("{} {what}", self.stamp());
    }

    /// A nemesis action: told, and kept for the summary.
    fn act(&self, what: &str) {
        let line = format!("{} {what}", self.stamp());
        eprintln!("{line}");
        lock(&self.actions).push(line);
    }

    fn fault(&self, at_us: i64, node: &str, fault: Fault) {
        lock(&self.faults).push((at_us, node.to_owned(), fault));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------------------------------
// The tracks.
// ---------------------------------------------------------------------------------------------------------------

/// The running masters' addresses, comma separated, but `except`.
fn masters(cluster: &Mutex<Cluster>, except: Option<usize>) -> String {
    lock(cluster).masters_except(except)
}

/// The CLI flags of the test's operator: the CA and the admin's token.
fn client(cluster: &Mutex<Cluster>) -> Vec<String> {
    lock(cluster).client_args()
}

/// Polls `cluster leader` until a master with an epoch leads, for at most `max`.
async fn current_leader(cluster: &Mutex<Cluster>, max: Duration) -> LeaderView {
    let client = client(cluster);
    let started = Instant::now();
    loop {
        lock(cluster).assert_running();
        let last = match leader_with(&masters(cluster, None), &client).await {
            Ok(v) if v.leader_epoch > 0 => return v,
            Ok(v) => format!("{v:?}"),
            Err(e) => e,
        };
        assert!(started.elapsed() < max, "no leader within {max:?}; last answer: {last}");
        tokio::time::sleep(POLL).await;
    }
}

/// The masters' node indices, the leader's first.
fn master_nodes(cluster: &Mutex<Cluster>, leader: &LeaderView) -> (usize, Vec<usize>) {
    let c = lock(cluster);
    let leader = c.index_of(&leader.name);
    let followers = (0..c.nodes.len())
        .filter(|i| *i != leader && c.nodes[*i].role == common::Role::Master && c.nodes[*i].is_running())
        .collect();
    (leader, followers)
}

async fn control_track(
    story: &Story,
    cluster: &Mutex<Cluster>,
    etcd: &mut EtcdCluster,
    plan: &[(Duration, ControlEpisode)],
) {
    for (gap, episode) in plan {
        tokio::time::sleep(*gap).await;
        match episode {
            ControlEpisode::KillLeader { down } => {
                let before = current_leader(cluster, LEADER_MAX).await;
                let (victim, _) = master_nodes(cluster, &before);
                let started = Instant::now();
                lock(cluster).kill(victim);
                story.act(&format!("SIGKILL leader {} (epoch {})", before.name, before.leader_epoch));
                let survivors = masters(cluster, Some(victim));
                let to = loop {
                    lock(cluster).assert_running();
                    if let Ok(v) = leader_with(&survivors, &client(cluster)).await {
                        if v.name != before.name && v.leader_epoch > before.leader_epoch {
                            break Some(v);
                        }
                    }
                    if started.elapsed() > FAILOVER_WATCH {
                        break None;
                    }
                    tokio::time::sleep(POLL).await;
                };
                let took = started.elapsed();
                match &to {
                    Some(v) => story.act(&format!(
                        "failover: {} (epoch {}) named {} after the kill (bound {})",
                        v.name,
                        v.leader_epoch,
                        secs(took),
                        secs(FAILOVER_MAX)
                    )),
                    None => story.act(&format!("failover: no new leader named within {}", secs(FAILOVER_WATCH))),
                }
                lock(&story.failovers).push(Failover { from: before.clone(), to, took });
                tokio::time::sleep(*down).await;
                lock(cluster).spawn(victim);
                story.act(&format!("restarted {}", before.name));
            }
            ControlEpisode::KillFollower { pick, down } => {
                let current = current_leader(cluster, LEADER_MAX).await;
                let (_, followers) = master_nodes(cluster, &current);
                let victim = followers[(*pick % followers.len() as u64) as usize];
                let name = lock(cluster).nodes[victim].name.clone();
                lock(cluster).kill(victim);
                story.act(&format!("SIGKILL follower {name} (leader {})", current.name));
                tokio::time::sleep(*down).await;
                lock(cluster).spawn(victim);
                story.act(&format!("restarted {name}"));
            }
            ControlEpisode::PauseMaster { leader: of_leader, pick, paused } => {
                let current = current_leader(cluster, LEADER_MAX).await;
                let (leader_node, followers) = master_nodes(cluster, &current);
                let victim =
                    if *of_leader { leader_node } else { followers[(*pick % followers.len() as u64) as usize] };
                let name = lock(cluster).nodes[victim].name.clone();
                let role = if victim == leader_node { "leader" } else { "follower" };
                lock(cluster).pause(victim);
                story.act(&format!("SIGSTOP {role} {name} for {}", secs(*paused)));
                tokio::time::sleep(*paused).await;
                lock(cluster).resume(victim);
                let after = current_leader(cluster, LEADER_MAX).await;
                story.act(&format!("SIGCONT {name}; leader now {} (epoch {})", after.name, after.leader_epoch));
            }
            ControlEpisode::RestartEtcd { member, down } => {
                let was_leader = etcd.leader().await == Some(*member);
                let name = etcd.members[*member].name.clone();
                etcd.kill(*member);
                let role = if was_leader { "the etcd leader" } else { "an etcd follower" };
                story.act(&format!("SIGKILL etcd member {name} ({role})"));
                tokio::time::sleep(*down).await;
                etcd.spawn(*member);
                let restarted = Instant::now();
                etcd.wait_healthy(ETCD_HEALTHY_MAX).await.unwrap_or_else(|e| panic!("{name} restarted: {e}"));
                story.act(&format!(
                    "restarted etcd member {name} on its data; every member healthy after {}",
                    secs(restarted.elapsed())
                ));
                story.say(&format!("(no control-plane fault for {} after an etcd restart)", secs(ETCD_SETTLE)));
                tokio::time::sleep(ETCD_SETTLE).await;
            }
        }
    }
}

async fn executor_track(story: &Story, cluster: &Mutex<Cluster>, start: Instant, plan: &[(Duration, ExecutorAction)]) {
    for (at, action) in plan {
        tokio::time::sleep_until(start + *at).await;
        let mut c = lock(cluster);
        let node = |e: usize| c.index_of(&format!("exec{e}"));
        match *action {
            ExecutorAction::Kill(e) => {
                let i = node(e);
                c.kill(i);
                story.fault(wall_us(), &c.nodes[i].name, Fault::Killed);
                story.act(&format!("SIGKILL executor {}", c.nodes[i].name));
            }
            ExecutorAction::Restart(e) => {
                let i = node(e);
                c.spawn(i);
                story.act(&format!("restarted executor {}", c.nodes[i].name));
            }
            ExecutorAction::Pause(e) => {
                let i = node(e);
                c.pause(i);
                story.fault(wall_us(), &c.nodes[i].name, Fault::Paused);
                story.act(&format!("SIGSTOP executor {}", c.nodes[i].name));
            }
            ExecutorAction::Resume(e) => {
                let i = node(e);
                story.fault(wall_us(), &c.nodes[i].name, Fault::Resumed);
                c.resume(i);
                story.act(&format!("SIGCONT executor {}", c.nodes[i].name));
            }
        }
    }
}

/// Creates the jobs and cancels some, at their planned times. Each call is retried until acknowledged, for at most
/// [`API_MAX`]: a create that failed may still have happened, so it is repeated with the same id and
/// `JOB_ALREADY_EXISTS` counts as done; a cancel is idempotent.
async fn workload(story: &Story, all: &str, client: &[String], start: Instant, jobs: &[JobPlan]) {
    enum Op<'a> {
        Create(&'a JobPlan),
        Cancel(&'a JobPlan),
    }
    let mut ops: Vec<(Duration, Op)> = jobs.iter().map(|j| (j.create_at, Op::Create(j))).collect();
    ops.extend(jobs.iter().filter_map(|j| j.cancel_at.map(|c| (c, Op::Cancel(j)))));
    ops.sort_by_key(|(at, _)| *at);
    for (at, op) in ops {
        tokio::time::sleep_until(start + at).await;
        match op {
            Op::Create(j) => {
                create_job_with(all, client, &j.id, "fake", &j.config(), API_MAX).await;
                story.say(&format!("created {} {}", j.id, j.config()));
            }
            Op::Cancel(j) => {
                let started = Instant::now();
                let view = loop {
                    match query_with::<JobView>(all, client, &["job", "cancel", &j.id]).await {
                        Ok(view) => break view,
                        Err(e) => {
                            *lock(&story.api_failures) += 1;
                            assert!(started.elapsed() < API_MAX, "the cancel of {} never succeeded: {e}", j.id);
                        }
                    }
                    tokio::time::sleep(POLL).await;
                };
                story.say(&format!("canceled {}: {} (job-master epoch {})", j.id, view.state, view.epoch));
                lock(&story.cancels).insert(j.id.clone(), (wall_us(), view));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The test.
// ---------------------------------------------------------------------------------------------------------------

fn seed() -> u64 {
    let text = std::env::var("FOREMAN_CHAOS_SEED").unwrap_or_default();
    if !text.trim().is_empty() {
        return text.trim().parse().unwrap_or_else(|e| panic!("FOREMAN_CHAOS_SEED={text:?}: {e}"));
    }
    wall_us().unsigned_abs() % 1_000_000_007
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts real etcd, master and executor processes: run by scripts/test"]
async fn three_etcd_three_masters_four_executors_under_a_seeded_nemesis_every_job_ends_exactly() {
    let seed = seed();
    let plan = Plan::draw(seed);
    plan.print(seed);
    let story = Story::new();

    // 1. etcd, the masters and executors, a leader, every executor online.
    let mut etcd = EtcdCluster::start("chaos", ETCD_MEMBERS);
    etcd.wait_healthy(SETTLE_MAX).await.unwrap_or_else(|e| panic!("{e}"));
    story.say(&format!("etcd healthy: {}", etcd.endpoints()));
    let options = NodeOptions {
        master_args: MASTER_ARGS.iter().map(|a| a.to_string()).collect(),
        executor_log: EXECUTOR_LOG.to_owned(),
        tls: true,
        tokens: vec![("admin", "*", "admin")],
        ..NodeOptions::default()
    };
    let cluster = Cluster::start_with(&etcd.endpoints(), "chaos", MASTERS, &[EXECUTOR_CAPACITY; EXECUTORS], options);
    let cluster = Mutex::new(cluster);
    let all = masters(&cluster, None);
    let client = client(&cluster);
    let first = current_leader(&cluster, SETTLE_MAX).await;
    story.say(&format!("leader {} (epoch {})", first.name, first.leader_epoch));
    let started = Instant::now();
    loop {
        let last = match query_with::<ExecutorListView>(&all, &client, &["cluster", "executors"]).await {
            Ok(v) if v.executors.len() == EXECUTORS && v.executors.iter().all(|e| e.status == "online") => break,
            Ok(v) => format!("{v:?}"),
            Err(e) => e,
        };
        assert!(started.elapsed() < SETTLE_MAX, "{EXECUTORS} executors online: not within {SETTLE_MAX:?}: {last}");
        tokio::time::sleep(POLL).await;
    }
    story.say(&format!("{EXECUTORS} executors online"));

    // 2. The nemesis and the workload, side by side; each track repairs what it broke.
    let start = Instant::now();
    story.say("nemesis starts");
    tokio::join!(
        control_track(&story, &cluster, &mut etcd, &plan.control),
        executor_track(&story, &cluster, start, &plan.executor),
        workload(&story, &all, &client, start, &plan.jobs),
    );
    let nemesis = start.elapsed();
    let mut cluster = cluster.into_inner().unwrap_or_else(|p| p.into_inner());

    // 3. Heal: every process running and resumed (the tracks repaired everything; this makes sure), etcd healthy.
    for i in 0..cluster.nodes.len() {
        if cluster.nodes[i].is_paused() {
            cluster.resume(i);
        }
        if !cluster.nodes[i].is_running() {
            cluster.spawn(i);
        }
    }
    for i in 0..etcd.members.len() {
        if !etcd.members[i].is_running() {
            etcd.spawn(i);
        }
    }
    etcd.wait_healthy(ETCD_HEALTHY_MAX).await.unwrap_or_else(|e| panic!("after the heal: {e}"));
    cluster.assert_running();
    story.say(&format!("healed after {} of nemesis: every process running, etcd healthy", secs(nemesis)));

    // 4. Every job ends.
    let healed = Instant::now();
    let mut ended: BTreeMap<String, JobView> = BTreeMap::new();
    let mut last_error = String::new();
    while ended.len() < plan.jobs.len() {
        cluster.assert_running();
        match query_with::<JobListView>(&all, &client, &["job", "list", "--all"]).await {
            Ok(v) => {
                for job in v.jobs {
                    if ["finished", "canceled", "failed"].contains(&job.state.as_str()) && !ended.contains_key(&job.id)
                    {
                        story.say(&format!(
                            "{} {} (job-master epoch {}, restarts {})",
                            job.id, job.state, job.epoch, job.restarts
                        ));
                        ended.insert(job.id.clone(), job);
                    }
                }
            }
            Err(e) => last_error = e,
        }
        assert!(
            healed.elapsed() < FINISH_MAX,
            "not every job ended within {FINISH_MAX:?} of the heal: ended {:?}; last CLI error: {last_error}",
            ended.keys().collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    story.say(&format!("every job ended, {} after the heal", secs(healed.elapsed())));

    // 5. The checks.
    let mut problems = vec![];
    let endpoints: Vec<String> = etcd.endpoints().split(',').map(str::to_owned).collect();
    let meta = MetaStore::etcd(&endpoints, &cluster.cluster, META_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("cannot open the metastore at {endpoints:?}: {e}"));
    let cancels = std::mem::take(&mut *lock(&story.cancels));
    let mut job_lines = vec![];
    for j in &plan.jobs {
        let job = &ended[&j.id];
        let canceled = cancels.contains_key(&j.id);
        let expected = if canceled { "canceled (or finished)" } else { "finished" };
        let ok_state = job.state == "finished" || (canceled && job.state == "canceled");
        if !ok_state {
            problems.push(format!("{} ended {}, expected {expected}: {job:?}", j.id, job.state));
        }
        let found = match checkpoints(&meta, &j.id).await {
            Ok(found) => found,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        problems.extend(checkpoint_problems(&j.id, &found, j.workers, j.target, job.state == "finished"));
        job_lines.push(format!(
            "{}: {} (expected {expected}), job-master epoch {}, restarts {}, counters {}",
            j.id,
            job.state,
            job.epoch,
            job.restarts,
            found.iter().map(|(w, c)| format!("{w}={}@{}", c.counter, c.epoch)).collect::<Vec<_>>().join(" ")
        ));
    }

    let mut events: Vec<Event> = vec![];
    for node in cluster.nodes.iter().filter(|n| matches!(n.role, common::Role::Executor { .. })) {
        let text = std::fs::read_to_string(&node.log).unwrap_or_else(|e| panic!("{}: {e}", node.log.display()));
        match parse_log(&node.name, &text) {
            Ok(found) => events.extend(found),
            Err(e) => problems.push(e),
        }
    }
    events.extend(lock(&story.faults).iter().map(|(at, node, f)| (*at, node.clone(), Seen::Fault(*f))));
    events.sort_by_key(|(at, _, _)| *at);
    let incarnations = match one_live_incarnation(story.wall0_us, &events) {
        Ok(s) => Some(s),
        Err(v) => {
            problems.push(v.to_string());
            None
        }
    };
    if let Err(v) = canceled_never_restart(story.wall0_us, &events, &cancels) {
        problems.push(v.to_string());
    }

    let failovers = lock(&story.failovers).clone();
    for f in &failovers {
        if f.to.is_none() || f.took > FAILOVER_MAX {
            problems.push(format!(
                "failover after the SIGKILL of {} (epoch {}) took {}, more than the lease TTL + 1 s = {}",
                f.from.name,
                f.from.leader_epoch,
                secs(f.took),
                secs(FAILOVER_MAX)
            ));
        }
    }

    // 6. The story's summary.
    eprintln!("---- summary (seed {seed}) ----");
    eprintln!("the nemesis ({} from its start to the last repair):", secs(nemesis));
    for a in lock(&story.actions).iter() {
        eprintln!("  {a}");
    }
    let mut took: Vec<Duration> = failovers.iter().map(|f| f.took).collect();
    took.sort();
    eprintln!(
        "failovers after leader SIGKILLs (bound {}): {}",
        secs(FAILOVER_MAX),
        failovers
            .iter()
            .map(|f| format!("{}->{} {}", f.from.name, f.to.as_ref().map_or("?", |t| t.name.as_str()), secs(f.took)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !took.is_empty() {
        eprintln!("failover p50 {} max {}", secs(percentile(&took, 0.5)), secs(percentile(&took, 1.0)));
    }
    eprintln!("API calls that failed during the chaos and were retried: {}", lock(&story.api_failures));
    eprintln!("jobs:");
    for line in &job_lines {
        eprintln!("  {line}");
    }
    if let Some(s) = &incarnations {
        eprintln!(
            "incarnations checked (rule 3): {} starts of {} tasks on {} executor processes' logs; stops: {}",
            s.starts,
            s.tasks,
            EXECUTORS,
            s.stops.iter().map(|(why, n)| format!("{why} {n}")).collect::<Vec<_>>().join(", ")
        );
        eprintln!(
            "resumed incarnations (grace {}; slowest stop {} after its SIGCONT):",
            secs(RESUME_GRACE),
            secs(s.slowest_stop)
        );
        for r in &s.resumed {
            eprintln!("  {r}");
        }
    }
    eprintln!("canceled jobs checked (rule 5): {}", cancels.keys().cloned().collect::<Vec<_>>().join(", "));
    let total = story.t0.elapsed();
    eprintln!("whole test: {}", secs(total));
    assert!(problems.is_empty(), "seed {seed}: {} problem(s):\n{}", problems.len(), problems.join("\n"));
    assert!(total < TEST_MAX, "the test took {}, over its {} budget", secs(total), secs(TEST_MAX));
    cluster.assert_running();
}
