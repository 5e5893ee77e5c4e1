//! Fake jobs survive an executor crash and a leader crash, with real processes against a real etcd (production
//! build; issue 4, item 7).
//!
//! Two `foreman master` and three `foreman executor` processes share a cluster on a real etcd. Four fake jobs are
//! created through the CLI; once every one is running, the executor hosting the first job's job master is
//! SIGKILLed (its job masters and workers die with it: nothing is handed over), and right after it the leader
//! master (its lease has to expire before the survivor can lead). Every job must still finish, and its durable
//! result must be exact: one checkpoint per worker, each at exactly the target (a lost step leaves a counter
//! short, a step run twice or a stale incarnation writing would show as a wrong or extra checkpoint). The test
//! prints its story: the kills, the new leader, when the dead executor was declared offline, when the killed job
//! master's job ran again under a new epoch, and each job's finish.
//!
//! Needs an etcd: `scripts/with-etcd cargo test --test process_jobs -- --ignored` starts a throwaway one and sets
//! `FOREMAN_TEST_ETCD`. Run with `--ignored` and no etcd, it fails rather than skips.
#![cfg(not(madsim))]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use common::{
    checkpoint_problems, checkpoints, create_job, etcd_from_env, http_get, leader, query, sample, wait_for_leader,
    Cluster, ExecutorListView, JobListView, JobView, METRICS, POLL,
};
use foreman::meta::MetaStore;

/// Slots per executor: the two that survive hold every job master and worker at once (4 + 14 = 18 of 24), so
/// capacity never decides when a job can go on.
const EXECUTOR_CAPACITY: u32 = 12;
/// How long the first election, the executors' registration and each job creation may take.
const SETTLE_MAX: Duration = Duration::from_secs(15);
/// How long the jobs may take to be running (their job masters online) after they were created.
const RUNNING_MAX: Duration = Duration::from_secs(30);
/// How long every job may take to finish after the kills (issue 4, item 7).
const FINISH_MAX: Duration = Duration::from_secs(120);
/// How often the jobs, the leader and the executors are polled after the kills.
const WATCH_POLL: Duration = Duration::from_millis(200);
/// The deadline on each metastore call of the final check.
const META_TIMEOUT: Duration = Duration::from_secs(5);

/// The leader's `/metrics`, fetched with curl, after every job finished: every listed metric with its HELP and
/// TYPE lines, and values that tell this run's story (the new leader declared the killed executor offline, placed
/// the orphaned job's job master again and its job master's workers, and holds every job finished).
async fn check_leader_metrics(cluster: &Cluster, executors_online: usize) {
    let masters = cluster.masters_except(None);
    let current = leader(&masters).await.unwrap_or_else(|e| panic!("no leader after the jobs finished: {e}"));
    let node = &cluster.nodes[cluster.index_of(&current.name)];
    let http = node.http.as_deref().expect("masters serve HTTP");
    let (status, text) = http_get(http, "/metrics").await.unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    assert_eq!(status, 200, "{text}");
    for (name, kind) in METRICS {
        assert!(text.contains(&format!("# HELP {name} ")), "{name} has no HELP line:\n{text}");
        assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name} is not a {kind}:\n{text}");
    }
    let value = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series}:\n{text}"));
    let exactly = [
        ("foreman_is_leader", 1.0),
        ("foreman_leader_epoch", current.leader_epoch as f64),
        ("foreman_executors{state=\"online\"}", executors_online as f64),
        ("foreman_jobs{state=\"finished\"}", JOBS.len() as f64),
    ];
    for (series, want) in exactly {
        assert_eq!(value(series), want, "{series}:\n{text}");
    }
    let at_least = [
        ("foreman_executors_declared_offline_total", 1.0),
        ("foreman_placements_total{kind=\"job_master\"}", 1.0),
        ("foreman_placements_total{kind=\"worker\"}", 1.0),
        ("foreman_executor_heartbeat_gap_seconds_count", 1.0),
        ("foreman_leader_tick_cpu_seconds_count", 1.0),
        ("foreman_metastore_requests_total{op=\"write\"}", 1.0),
        ("foreman_metastore_requests_total{op=\"lease\"}", 1.0),
    ];
    for (series, min) in at_least {
        assert!(value(series) >= min, "{series} is below {min}:\n{text}");
    }
    eprintln!("leader {} /metrics: every listed metric, values as expected", current.name);
}

/// One fake job of the workload. At 10–20 ms a step, each runs 6–12 s undisturbed: still running at the kills.
struct FakeJob {
    id: &'static str,
    workers: u32,
    target: u64,
    tick_ms: u64,
}

impl FakeJob {
    fn config(&self) -> String {
        format!(r#"{{"workers":{},"target":{},"tick_ms":{}}}"#, self.workers, self.target, self.tick_ms)
    }
}

const JOBS: &[FakeJob] = &[
    // The first job's job master is the one killed. Its workers on other executors go on counting until they fence
    // themselves (the worker self-fence, 10 s), so it takes longer than that: its new job master has to restart
    // them from their checkpoints rather than find them all done.
    FakeJob { id: "count-a", workers: 4, target: 600, tick_ms: 20 },
    FakeJob { id: "count-b", workers: 3, target: 600, tick_ms: 15 },
    FakeJob { id: "count-c", workers: 4, target: 450, tick_ms: 20 },
    FakeJob { id: "count-d", workers: 3, target: 600, tick_ms: 10 },
];

/// Seconds since `t0`, for the story.
fn at(t0: Instant, t: Instant) -> String {
    format!("t={:.3}s", t.duration_since(t0).as_secs_f64())
}

fn since(earlier: Instant, later: Instant) -> String {
    format!("{} ms", later.duration_since(earlier).as_millis())
}

/// What the watch saw of one job.
#[derive(Default)]
struct Watched {
    last: Option<JobView>,
    /// When a job-master epoch other than the one at the kills was first seen.
    new_epoch_at: Option<Instant>,
    /// When the job was first seen running under such an epoch.
    running_again_at: Option<Instant>,
    finished_at: Option<Instant>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real etcd: run through scripts/with-etcd"]
async fn fake_jobs_finish_exactly_after_the_executor_hosting_a_job_master_and_the_leader_are_sigkilled() {
    let etcd = etcd_from_env("process_jobs");
    let t0 = Instant::now();
    let mut cluster = Cluster::start(&etcd, "jobs", 2, &[EXECUTOR_CAPACITY; 3]);
    let all = cluster.masters_except(None);
    let meta = MetaStore::etcd(std::slice::from_ref(&etcd), &cluster.cluster, META_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("cannot open the metastore at {etcd}: {e}"));

    // 1. A leader, and three executors online.
    let first = wait_for_leader(&mut cluster, &all, SETTLE_MAX, "the first election", |v| v.leader_epoch > 0).await;
    eprintln!("{} leader {} (epoch {})", at(t0, Instant::now()), first.name, first.leader_epoch);
    let started = Instant::now();
    let executors = loop {
        cluster.assert_running();
        let last = match query::<ExecutorListView>(&all, &["cluster", "executors"]).await {
            Ok(v) if v.executors.len() == 3 && v.executors.iter().all(|e| e.status == "online") => break v.executors,
            Ok(v) => format!("{v:?}"),
            Err(e) => e,
        };
        assert!(started.elapsed() < SETTLE_MAX, "3 executors online: not within {SETTLE_MAX:?}; last answer: {last}");
        tokio::time::sleep(POLL).await;
    };
    let node_of: BTreeMap<u64, usize> = executors.iter().map(|e| (e.id, cluster.index_at(&e.address))).collect();
    eprintln!(
        "{} executors online: {}",
        at(t0, Instant::now()),
        executors.iter().map(|e| format!("{} = id {}", e.name, e.id)).collect::<Vec<_>>().join(", ")
    );

    // 2. The workload.
    for job in JOBS {
        create_job(&all, job.id, "fake", &job.config(), SETTLE_MAX).await;
        eprintln!("{} created {} {}", at(t0, Instant::now()), job.id, job.config());
    }

    // 3. Every job running (its job master online, on an executor) and every worker counting (it checkpointed at
    // least once), then the kills.
    let started = Instant::now();
    let running: BTreeMap<String, JobView> = loop {
        cluster.assert_running();
        let last = match query::<JobListView>(&all, &["job", "list", "--all"]).await {
            Ok(v) => {
                let running: BTreeMap<String, JobView> = v
                    .jobs
                    .iter()
                    .filter(|j| j.state == "running" && j.executor_id.is_some())
                    .map(|j| (j.id.clone(), j.clone()))
                    .collect();
                let mut counting = 0;
                for job in JOBS {
                    let found = checkpoints(&meta, job.id).await.unwrap_or_else(|e| panic!("{e}"));
                    if found.len() == job.workers as usize && found.values().all(|c| c.counter > 0) {
                        counting += 1;
                    }
                }
                if running.len() == JOBS.len() && counting == JOBS.len() {
                    break running;
                }
                if let Some(ended) = v.jobs.iter().find(|j| !["created", "running"].contains(&j.state.as_str())) {
                    panic!(
                        "{} is {} before any fault (the workload is too short, or broken): {ended:?}",
                        ended.id, ended.state
                    );
                }
                format!("{counting} of {} jobs with every worker counting; {:?}", JOBS.len(), v.jobs)
            }
            Err(e) => e,
        };
        assert!(started.elapsed() < RUNNING_MAX, "every job running: not within {RUNNING_MAX:?}; last answer: {last}");
        tokio::time::sleep(POLL).await;
    };
    let running_at = Instant::now();
    for job in JOBS {
        let view = &running[job.id];
        let found = checkpoints(&meta, job.id).await.unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "{} {} running: job master epoch {} on executor {}, counters {}",
            at(t0, running_at),
            job.id,
            view.epoch,
            view.executor_id.map_or("-".to_owned(), |e| e.to_string()),
            found.iter().map(|(w, c)| format!("{w}={}", c.counter)).collect::<Vec<_>>().join(" ")
        );
    }
    match query::<ExecutorListView>(&all, &["cluster", "executors"]).await {
        Ok(v) => eprintln!(
            "{} slots used: {}",
            at(t0, Instant::now()),
            v.executors.iter().map(|e| format!("{} {}/{}", e.name, e.used, e.capacity)).collect::<Vec<_>>().join(", ")
        ),
        Err(e) => eprintln!("(slots used: unknown: {e})"),
    }

    // Each job's status, live from its job master: the incarnation the leader lists, a line per worker.
    for job in JOBS {
        let status: serde_json::Value =
            query(&all, &["job", "status", job.id]).await.unwrap_or_else(|e| panic!("{} status: {e}", job.id));
        let workers = status["status"]["workers"].as_array().map_or(0, Vec::len);
        assert_eq!(
            (status["source"].as_str(), status["epoch"].as_u64(), workers),
            (Some("live"), Some(running[job.id].epoch), job.workers as usize),
            "{}: {status}",
            job.id
        );
    }

    let victim_id = running[JOBS[0].id].executor_id.expect("a running job has an executor");
    let victim = *node_of
        .get(&victim_id)
        .unwrap_or_else(|| panic!("{} runs on executor {victim_id}, which was not listed: {executors:?}", JOBS[0].id));
    // Every job master on that executor dies with it; each of those jobs must be restarted.
    let orphaned: Vec<&JobView> = running.values().filter(|j| j.executor_id == Some(victim_id)).collect();
    let executor_killed_at = Instant::now();
    cluster.kill(victim);
    eprintln!(
        "{} SIGKILLed executor {} (id {victim_id}), host of the job masters of {}",
        at(t0, executor_killed_at),
        cluster.nodes[victim].name,
        orphaned.iter().map(|j| format!("{} (epoch {})", j.id, j.epoch)).collect::<Vec<_>>().join(", ")
    );
    let current = leader(&all).await.unwrap_or_else(|e| panic!("no leader to kill: {e}"));
    let leader_node = cluster.index_of(&current.name);
    let leader_killed_at = Instant::now();
    cluster.kill(leader_node);
    eprintln!("{} SIGKILLed leader {} (epoch {})", at(t0, leader_killed_at), current.name, current.leader_epoch);
    let survivors = cluster.masters_except(None);

    // 4. Watch until every job finished.
    let mut new_leader: Option<(Instant, String, u64)> = None;
    let mut offline_at: Option<Instant> = None;
    let mut watched: BTreeMap<&str, Watched> = JOBS.iter().map(|j| (j.id, Watched::default())).collect();
    let mut last_error = String::new();
    loop {
        cluster.assert_running();
        let now = Instant::now();
        if new_leader.is_none() {
            if let Ok(v) = leader(&survivors).await {
                if v.name != current.name && v.leader_epoch > current.leader_epoch {
                    eprintln!("{} new leader {} (epoch {})", at(t0, now), v.name, v.leader_epoch);
                    new_leader = Some((now, v.name, v.leader_epoch));
                }
            }
        }
        if new_leader.is_some() && offline_at.is_none() {
            if let Ok(v) = query::<ExecutorListView>(&survivors, &["cluster", "executors"]).await {
                if v.executors.iter().all(|e| e.id != victim_id) {
                    eprintln!("{} executor {victim_id} declared offline", at(t0, now));
                    offline_at = Some(now);
                }
            }
        }
        match query::<JobListView>(&survivors, &["job", "list", "--all"]).await {
            Ok(v) => {
                for job in v.jobs {
                    let Some(w) = watched.get_mut(job.id.as_str()) else { continue };
                    if ["failed", "canceled", "canceling"].contains(&job.state.as_str()) {
                        panic!("{} is {} at {}: {job:?}", job.id, job.state, at(t0, now));
                    }
                    let changed = w.last.as_ref().is_none_or(|l| {
                        (l.state.as_str(), l.epoch, l.executor_id, l.restarts)
                            != (job.state.as_str(), job.epoch, job.executor_id, job.restarts)
                    });
                    if changed {
                        eprintln!(
                            "{} {} {} epoch {} executor {} restarts {}",
                            at(t0, now),
                            job.id,
                            job.state,
                            job.epoch,
                            job.executor_id.map_or("-".to_owned(), |e| e.to_string()),
                            job.restarts
                        );
                    }
                    if job.epoch != running[&job.id].epoch {
                        w.new_epoch_at.get_or_insert(now);
                        if job.state == "running" && job.executor_id.is_some() {
                            w.running_again_at.get_or_insert(now);
                        }
                    }
                    if job.state == "finished" {
                        w.finished_at.get_or_insert(now);
                    }
                    w.last = Some(job);
                }
            }
            Err(e) => last_error = e,
        }
        if watched.values().all(|w| w.finished_at.is_some()) {
            break;
        }
        assert!(
            executor_killed_at.elapsed() < FINISH_MAX,
            "not every job finished within {FINISH_MAX:?} of the kills; last seen: {}; last CLI error: {last_error}",
            watched.iter().map(|(id, w)| format!("{id}: {:?}", w.last)).collect::<Vec<_>>().join("; ")
        );
        tokio::time::sleep(WATCH_POLL).await;
    }

    // The durable result: exactly `workers` checkpoints per job, each at exactly `target`.
    let mut problems = vec![];
    let mut final_epochs = BTreeMap::new();
    for job in JOBS {
        let found = match checkpoints(&meta, job.id).await {
            Ok(found) => found,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        problems.extend(checkpoint_problems(job.id, &found, job.workers, job.target, true));
        final_epochs.insert(job.id, found.iter().map(|(w, c)| format!("{w}@{}", c.epoch)).collect::<Vec<_>>());
    }
    for orphan in &orphaned {
        let last = watched[orphan.id.as_str()].last.as_ref().expect("a finished job was seen");
        if last.restarts < 1 || last.epoch <= orphan.epoch {
            problems.push(format!(
                "{}: its job master (epoch {}) died with executor {victim_id}, yet the job finished with restarts \
                 {} and epoch {}: expected restarts >= 1 and a newer epoch",
                orphan.id, orphan.epoch, last.restarts, last.epoch
            ));
        }
    }

    // Each finished job's status: its last job master's final one, stored, with every worker done.
    for job in JOBS {
        let status: serde_json::Value =
            query(&survivors, &["job", "status", job.id]).await.unwrap_or_else(|e| panic!("{} status: {e}", job.id));
        let last = watched[job.id].last.as_ref().expect("a finished job was seen");
        let doc = &status["status"];
        let done = doc["workers"].as_array().map_or(0, |w| w.iter().filter(|w| w["state"] == "done").count());
        if (status["source"].as_str(), status["epoch"].as_u64(), doc["state"].as_str(), done)
            != (Some("stored"), Some(last.epoch), Some("finished"), job.workers as usize)
        {
            problems.push(format!("{}: finished at epoch {}, but its status is {status}", job.id, last.epoch));
        }
    }

    // 5. The story.
    eprintln!("---- story (times from the executor kill at {}) ----", at(t0, executor_killed_at));
    eprintln!("leader {} killed {} after the executor", current.name, since(executor_killed_at, leader_killed_at));
    match &new_leader {
        Some((t, name, epoch)) => {
            eprintln!("new leader {name} (epoch {epoch}) named {} after the leader kill", since(leader_killed_at, *t))
        }
        None => eprintln!("new leader: not observed"),
    }
    match offline_at {
        Some(t) => eprintln!("executor {victim_id} declared offline {} after its kill", since(executor_killed_at, t)),
        None => eprintln!("executor {victim_id} declared offline: not observed"),
    }
    for orphan in &orphaned {
        let w = &watched[orphan.id.as_str()];
        let show = |t: Option<Instant>| t.map_or("not observed".to_owned(), |t| since(executor_killed_at, t));
        eprintln!(
            "{}: new job-master epoch seen after {}, running again after {}",
            orphan.id,
            show(w.new_epoch_at),
            show(w.running_again_at)
        );
    }
    for job in JOBS {
        let w = &watched[job.id];
        let last = w.last.as_ref().expect("a finished job was seen");
        eprintln!(
            "{}: finished {} after the executor kill (epoch {}, restarts {}); final checkpoint epochs {}",
            job.id,
            w.finished_at.map_or("-".to_owned(), |t| since(executor_killed_at, t)),
            last.epoch,
            last.restarts,
            final_epochs.get(job.id).map_or("unreadable".to_owned(), |e| e.join(" "))
        );
    }
    assert!(problems.is_empty(), "the jobs finished, but their results are wrong:\n{}", problems.join("\n"));
    check_leader_metrics(&cluster, executors.len() - 1).await;
    cluster.assert_running();
    eprintln!("whole test: {} ms", t0.elapsed().as_millis());
}
