//! Exec jobs under the swarm's faults (issue 16, step 2): a simulated cluster of 3 masters and 4 executors runs
//! `exec` jobs whose commands are the process service's simulated twin (`["sim", "run=…", "exit=…", "lines=…",
//! "term=…"]`, framework/process.rs), while the swarm's fault plan plays (`faults::Plan::draw`: kills, restarts,
//! pauses, drains, cuts, message loss, holds, clock faults), foreman's fault points on for odd seeds. Then it heals
//! and checks:
//!
//! - the commands: at most one live process of every worker at every instant, and none outliving the incarnation
//!   that started it ([`crate::checks::one_live_process`], [`crate::checks::no_process_outlives_its_task`]), from
//!   the executors' own process records;
//! - the jobs: each whose commands exit 0 ends finished; the one in six whose command always exits 3 ends failed,
//!   saying so;
//! - the logs: each worker of a finished job shows, through the masters (`JobLogs`), exactly what its last
//!   command printed and that it exited with code 0 ([`Rule::LogsKept`]);
//! - each worker's next incarnation on the executor holding its scratch directory while that executor serves
//!   ([`crate::checks::worker_stays_with_its_resource`]);
//! - last, every job deleted: no executor keeps logs of any of them within [`COLLECTED_WITHIN`]
//!   ([`Rule::JobDataCollected`]);
//! - foreman's rules on the whole run ([`crate::checks::every_run`] and the job checkers, as everywhere).
//!
//! The swarm mixes exec jobs into the seeds of its exec class too (`swarm::draw_exec_jobs`), with the same
//! checkers but the reading of logs. Seeds: `FOREMAN_EXEC_SEEDS` (default
//! [`SEEDS_DEFAULT`]) from `MADSIM_TEST_SEED` (default: the wall clock, printed); each failing one prints its plan
//! and the command that replays it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use foreman::core::invariants::{Id, Rule, Violation};
use foreman::planted::Planted;
use foreman::rpc::pb;
use madsim::rand::Rng;

use crate::checks::{
    first_broken, ids_never_reused, job_history, no_process_outlives_its_task, one_live_incarnation, one_live_process,
    placement_within_bounds, worker_stays_with_its_resource, Allowances,
};
use crate::cluster::{executor_config, master_config, Cluster, Seen, Spec, Tasks, EXECUTOR_CAPACITY};
use crate::fake_jobs::create_job;
use crate::faults::{self, Plan, Scope};
use crate::harness::{fail, first_seed, report, require, run_seeds};
use crate::master_failover::{await_job, check_every_run, on_client, terminal, with_jobs};
use foreman::config::ExecutorConfig;

/// Seeds a plain run takes.
pub const SEEDS_DEFAULT: u64 = 100;
/// How long the faults play, and how long a healed cluster has to end every job.
const FAULT_PHASE: Duration = Duration::from_secs(60);
const END_WITHIN: Duration = Duration::from_secs(240);
/// How often the executors list the job data they keep, in this scenario.
const COLLECT_INTERVAL: Duration = Duration::from_secs(5);
/// How long after the deletes a job's data may stay: a listing interval and the heartbeats that ask, with room for
/// an executor kept out of the registry a while by a hold.
const COLLECTED_WITHIN: Duration = Duration::from_secs(60);
/// How long after its job ended a worker's logs may take to be readable: its executor back in the registry (a plan's
/// hold may keep its heartbeats 30 s, then its TTL and a registration).
const LOGS_WITHIN: Duration = Duration::from_secs(90);

/// One drawn exec job: its id, its configuration, when it is created, and whether its command always fails.
#[derive(Clone, Debug)]
struct Drawn {
    id: String,
    config: serde_json::Value,
    at: Duration,
    fails: bool,
}

/// 3 to 5 jobs of 1 to 3 workers, each command running 1 to 20 s with up to 5 progress lines, ending 0 to 2 s
/// after SIGTERM (one in five ignores it: only the SIGKILL after the 1 s grace ends it); one job in six runs a
/// command that always exits 3 (it must end failed after its one restart). Created in the fault phase's first 15 s.
fn draw_jobs() -> Vec<Drawn> {
    let mut rng = madsim::rand::thread_rng();
    (0..rng.gen_range(3..=5))
        .map(|i| {
            let fails = rng.gen_bool(1.0 / 6.0);
            let term = if rng.gen_bool(0.2) {
                "term=ignore".to_owned()
            } else {
                format!("term={}ms", rng.gen_range(0..2_000))
            };
            let command = [
                "sim".to_owned(),
                format!("run={}ms", rng.gen_range(1_000..20_000)),
                format!("exit={}", if fails { 3 } else { 0 }),
                format!("lines={}", rng.gen_range(0..=5)),
                term,
            ];
            let config = serde_json::json!({
                "command": command,
                "workers": rng.gen_range(1..=3),
                "max_restarts": 1,
                "stop_grace": "1s",
            });
            Drawn { id: format!("exec-{i}"), config, at: Duration::from_millis(rng.gen_range(0..15_000)), fails }
        })
        .collect()
}

fn job_of(d: &Drawn) -> pb::Job {
    let config = serde_json::to_vec(&d.config).expect("a config serializes");
    pb::Job { id: d.id.clone(), r#type: "exec".into(), config, ..Default::default() }
}

/// One seed, with `planted` in every node (or none). `ran` receives the plan's text first.
pub async fn exec_run(planted: Option<Planted>, ran: Arc<Mutex<Option<String>>>) {
    let seed = madsim::runtime::Handle::current().seed();
    let spec = Spec {
        masters: (0..3).map(master_config).collect(),
        executors: (0..4)
            .map(|i| ExecutorConfig { collect_interval: COLLECT_INTERVAL, ..executor_config(i, 3) })
            .collect(),
        tasks: Tasks::Jobs,
        planted: planted.into(),
        etcd_timeout_rate: 0.0,
    };
    let c = Cluster::build_spec(spec).await;
    let jobs = draw_jobs();
    let k = &c.config;
    let scope = Scope::of(c.masters.len(), c.executors.len(), k, FAULT_PHASE);
    let plan = Plan::draw(seed, &scope);
    *ran.lock().expect("the plan's slot") = Some(plan.to_string());
    let buggify = seed % 2 == 1;
    tracing::info!("exec seed {seed}: jobs {jobs:?}\n  plan: {plan}\n  fault points: {buggify}");
    c.fault_points.set(buggify);
    let start = c.clock.now();
    let mut creates = vec![];
    for d in jobs.clone() {
        let (masters, rec) = (c.masters.len(), c.recorder.clone());
        creates.push(c.client.spawn(async move {
            tokio::time::sleep(d.at).await;
            let created = create_job(masters, job_of(&d)).await;
            if created {
                rec.record("client", Seen::JobCreated { id: d.id.clone() });
            }
            created
        }));
    }
    faults::play(&c, &plan, start, start + FAULT_PHASE).await;
    c.fault_points.set(false);
    for (call, d) in creates.into_iter().zip(&jobs) {
        if call.await.expect("the client task finished") {
            continue;
        }
        assert!(
            on_client(&c, create_job(c.masters.len(), job_of(d))).await,
            "create {}: unanswered after healing",
            d.id
        );
        c.recorder.record("client", Seen::JobCreated { id: d.id.clone() });
    }
    for d in &jobs {
        let (ended, job) = await_job(&c, &d.id, END_WITHIN, terminal).await;
        let want = if d.fails { pb::JobState::Failed } else { pb::JobState::Finished };
        let says = !d.fails || job.error.as_ref().is_some_and(|e| e.message.contains("`sim` exited with code 3"));
        require(ended && job.state == want as i32 && says, || {
            let detail = format!("{} did not end {want:?} within {END_WITHIN:?} of the faults healing: {job:?}", d.id);
            Violation::new(Rule::JobEnds, c.clock.now(), detail).with([Id::Job(d.id.clone())])
        });
    }
    for d in jobs.iter().filter(|d| !d.fails) {
        logs_kept(&c, d).await;
    }
    let latency = plan.latency_max().unwrap_or_default() * 2;
    let stalls = if buggify { Duration::from_millis(3_000) } else { Duration::ZERO };
    let slow = plan.metastore_latency_max().map(|max| max.min(k.rpc.metastore_timeout) * 2).unwrap_or_default();
    let allow = Allowances {
        slack: Duration::from_millis(200) + latency + stalls + slow,
        clocks: plan.clock_slack(),
        ..Allowances::default()
    };
    let events = c.recorder.events();
    // The commands first: a command left running is what this scenario is for.
    first_broken([
        ("one live process", one_live_process(&events)),
        ("no process outlives its task", no_process_outlives_its_task(&events)),
    ])
    .unwrap_or_else(|v| fail(v));
    check_every_run(&c, &allow);
    first_broken([
        ("one live incarnation", one_live_incarnation(&events)),
        ("placement", placement_within_bounds(&events, EXECUTOR_CAPACITY)),
        ("job history", job_history(&events)),
        ("registry", ids_never_reused(&events)),
    ])
    .unwrap_or_else(|v| fail(v));
    let pinned = jobs.iter().map(|d| d.id.clone()).collect();
    worker_stays_with_its_resource(&events, &pinned).unwrap_or_else(|v| fail(v));
    let started = events
        .iter()
        .filter(|(_, _, s)| matches!(s, Seen::Exec(foreman::executor::ExecutorObservation::ProcessStarted { .. })))
        .count();
    require(started > 0, || Violation::new(Rule::JobEnds, c.clock.now(), "no command ever started"));
    // Last, after the checks of the run: every job deleted, and its data leaves every executor.
    data_collected(&c, &jobs).await;
}

/// Deletes every job (each has ended) and waits, up to [`COLLECTED_WITHIN`], until no executor keeps logs of any
/// of them ([`Rule::JobDataCollected`]): the executors list what they keep every [`COLLECT_INTERVAL`] and the
/// leader names the deleted jobs in its heartbeat answers.
async fn data_collected(c: &Cluster, jobs: &[Drawn]) {
    let masters = c.masters.len();
    for d in jobs {
        let id = d.id.clone();
        let deleted = on_client(c, async move {
            with_jobs(masters, Duration::from_secs(30), move |mut c| {
                let id = id.clone();
                async move { c.delete_job(pb::DeleteJobRequest { id }).await.map(|r| r.into_inner()) }
            })
            .await
        })
        .await;
        if let Err(s) = deleted {
            fail(Violation::new(Rule::JobEnds, c.clock.now(), format!("delete {}: {s}", d.id)));
        }
        c.recorder.record("client", Seen::JobDeleted { id: d.id.clone() });
    }
    let ids: Vec<String> = jobs.iter().map(|d| d.id.clone()).collect();
    await_data_collected(c, &ids, c.clock.now(), COLLECTED_WITHIN).await;
}

/// Waits until no executor keeps logs of any of the jobs `ids` (deleted by `from`), and fails the run
/// ([`Rule::JobDataCollected`]) if some executor still does `within` after `from`.
pub async fn await_data_collected(c: &Cluster, ids: &[String], from: foreman::core::time::Time, within: Duration) {
    loop {
        let left: Vec<String> = c
            .executors
            .iter()
            .flat_map(|e| e.disk.jobs().into_iter().filter(|j| ids.contains(j)).map(|j| format!("{j} on {}", e.name)))
            .collect();
        if left.is_empty() {
            return;
        }
        if c.clock.now().saturating_since(from) > within {
            let detail =
                format!("{within:?} after the deletes, executors still keep logs of deleted jobs: {}", left.join(", "));
            fail(Violation::new(Rule::JobDataCollected, c.clock.now(), detail));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What each worker of finished job `d` printed, read through the masters (`JobLogs`, as `foreman job logs` reads
/// it): its newest incarnation's stdout is exactly the twin's progress lines, and it exited with code 0. Every
/// executor is back (the faults healed) and each node's logs outlive its restarts, as a disk does.
async fn logs_kept(c: &Cluster, d: &Drawn) {
    let workers = d.config["workers"].as_u64().unwrap_or(1);
    let lines: u32 = d.config["command"][3].as_str().and_then(|l| l.strip_prefix("lines=")?.parse().ok()).unwrap_or(0);
    let want: String = (1..=lines).map(|i| format!("FOREMAN_PROGRESS {i}/{lines}\n")).collect();
    let masters = c.masters.len();
    for w in 0..workers {
        let (id, worker, expected) = (d.id.clone(), format!("w{w}"), want.clone());
        // Asked until its executor is back (a held heartbeat may keep it out of the registry a while after the
        // heal), up to LOGS_WITHIN.
        let (whole, read) = on_client(c, async move {
            let mut waited = Duration::ZERO;
            loop {
                let (id, worker) = (id.clone(), worker.clone());
                let read = with_jobs(masters, Duration::from_secs(30), move |mut c| {
                    let request = pb::JobLogsRequest { id: id.clone(), worker: worker.clone(), ..Default::default() };
                    async move { c.job_logs(request).await.map(|r| r.into_inner()) }
                })
                .await;
                let whole = read.as_ref().ok().and_then(|r| r.chunk.as_ref()).is_some_and(|ch| {
                    ch.data == expected.as_bytes()
                        && ch.start == 0
                        && ch.total == expected.len() as u64
                        && ch.exit == "exited with code 0"
                });
                if whole || waited >= LOGS_WITHIN {
                    return (whole, read);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                waited += Duration::from_secs(1);
            }
        })
        .await;
        require(whole, || {
            let detail = format!(
                "the logs of {}/w{w} read through the masters are not its command's whole output (want {want:?}, \
                 exited with code 0): {read:?}",
                d.id
            );
            Violation::new(Rule::LogsKept, c.clock.now(), detail).with([Id::Job(d.id.clone())])
        });
    }
}

/// The same, as `bug_finding` runs a scenario.
pub async fn exec_jobs_under_faults_run(planted: Option<Planted>) {
    exec_run(planted, Arc::new(Mutex::new(None))).await;
}

fn replay_command(seed: u64) -> String {
    format!(
        "MADSIM_TEST_SEED={seed} FOREMAN_EXEC_SEEDS=1 RUST_LOG=info cargo stest --test sim \
         exec_jobs::exec_jobs_under_faults -- --exact --nocapture"
    )
}

#[test]
fn exec_jobs_under_faults() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let seeds = env("FOREMAN_EXEC_SEEDS").unwrap_or(SEEDS_DEFAULT).max(1);
    let first = first_seed();
    report(&format!("exec_jobs: {seeds} seeds from {first}; replay one with {}", replay_command(first)));
    let (_, failed) = run_seeds(first..first + seeds, replay_command, |ran| exec_run(None, ran));
    report(&format!("exec_jobs: {} of {seeds} seeds passed", seeds - failed.len() as u64));
    assert!(failed.is_empty(), "exec_jobs: seeds {failed:?} failed (each printed its replay command above)");
}
