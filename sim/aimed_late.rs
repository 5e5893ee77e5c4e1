//! Guards made the last line of defence by writes that land late (design.md §8): a metastore transaction applied
//! a fixed time after it was sent, whether or not its sender still waits for the answer
//! ([`foreman::buggify::Latency::set_in_flight`]: a request sent on a long-lived connection into a partition and
//! retransmitted when it heals, or forwarded by an etcd member that was cut off, is applied after its client timed
//! out and moved on).
//!
//! `dispatch-beside-live` (core/workers.rs `admits`) is the last line in
//! [`job_created_twice_beside_its_job_master_run`]: the leader's own late write brings a job back to "waiting to
//! start" while its job master runs. That scenario found a real bug: without the switch the job waited for ever
//! (its job master, still accepted at every heartbeat, was never lost, and could place no worker since the job
//! named no incarnation). Fixed in core/manager `job_master`: a job master its job no longer names is told to stop
//! and revoked, so it is lost after its TTL and the job starts again (unit test
//! `a_job_master_its_reloaded_job_no_longer_names_is_revoked_and_the_job_starts_again_once_it_is_lost`).
//!
//! Left, a real bug not fixed here (rule 3, no switch): the metastore holds the older record until the job's next
//! write, so a leader change in that window recovers the job as waiting for its first job master and starts one
//! beside the job master that runs (the next term has no bookkeeping of it, so no guard stands in the way).
//! [`job_created_twice_then_its_leader_killed_run`] (probe only, index 2 of `probe`) fails 37 of 50 seeds from
//! 600000 without any switch: "job-0 epoch 2 started on executor-1 while epoch 1 is live on executor-2". A late
//! write of a job record overwrites a newer one because the leader guards its writes with its leadership only
//! (master/store_io.rs `persist`). A fix needs job-record writes that a late landing cannot apply (compare the
//! record's previous value; a create would need an "absent" compare, which the simulated etcd lacks: value compares
//! only), or a recovery that trusts the job's job-master record over an older job record (it names a newer start)
//! and persists the adopted incarnation's executor (which the job master's check-in does not carry).
//!
//! `job-master-writes-unguarded` (jobs/fake_run.rs:598) cannot be the last line, writes in flight or not, and
//! [`job_master_records_in_flight_land_after_its_successors_run`] shows it: 0 of 150 seeds from 600000 fail with the switch
//! (in seed 600000 the old record does land over the successor's, and costs one worker a restart). The worker record
//! is the only write a job master makes. A record matters only to the worker whose epoch it names (the checkpoint
//! guard compares it with the writer's own epoch, fake_run.rs:223). A job master names in it an incarnation it
//! created for it (fake_run.rs:595) and dispatches that incarnation only once the write's answer came
//! (fake_run.rs:600-612, 638), which follows the write's landing. For the record to land after the job's
//! job-master record moved on (the leader's start of the successor, core/manager/mod.rs:579), the old job master must
//! still run when it moves: the leader starts the successor only once the old incarnation ended in its bookkeeping
//! (core/manager/mod.rs:555; lost 12 s after it was last heard, core/workers.rs:527, while it fences itself after
//! 10 s, core/timing.rs:94-95; or its own report after it quiesced, fake_run.rs:316, which drops the write's
//! answer). So a late record names an incarnation never dispatched: the successor's worker of that index finds its
//! next checkpoint refused (fake_run.rs:270), stops, is lost after its TTL and starts again from the last checkpoint,
//! read after its new record (fake_run.rs:226); a recovering successor awaits the record's incarnation for the
//! recovery window and loses it. A delay: counters stay exact and checkpoints forward, no two incarnations live at
//! once, and no successor skips a live worker (the stopped-checkpoint shortcut, fake_run.rs:373, needs a checkpoint
//! written by the record's incarnation, which never ran). What would make it the last line: a job master that acts
//! after its successor's start (two live job masters, which `dispatch-beside-live` and the self-fences prevent), or a
//! reader that takes the worker record as the truth of which incarnation runs (none does: the job master's own
//! bookkeeping decides, and the recovery only awaits what a record names).

use std::collections::BTreeSet;
use std::time::Duration;

use foreman::executor::ExecutorObservation;
use foreman::jobs::fake::FakeConfig;
use foreman::planted::Planted;
use madsim::rand::Rng;

use crate::cluster::{Cluster, Seen};
use crate::fake_jobs::{create, finish_and_check, leader, JobFigures};
use crate::harness::announce;

fn millis(lo: u64, hi: u64) -> Duration {
    Duration::from_millis(madsim::rand::thread_rng().gen_range(lo..=hi))
}

/// The leader's bookkeeping of job masters (core/workers.rs `admits`): no new incarnation of a job master while an
/// older one may be alive. Elsewhere a job is startable only once its job master's incarnation ended in the
/// leader's memory (exited, or lost after its TTL), and memory and the metastore agree: a write that failed is
/// settled by reading the record back. A write that lands after its settling read breaks that agreement: the
/// metastore then holds a state older than the leader's memory, and the next settling read of the job brings it
/// back into memory.
///
/// Job-0 is created while the leader's writes are in flight (2.3 to 4.5 s): the write of the new job times out, its
/// settling read does not find it, and the create is refused; the client creates it again (the same request), now
/// written, and the leader starts its job master. The job master's first heartbeat makes the job running: that
/// write is sent while the leader's writes are in flight again, so it times out too, and by its settling read the
/// first create's write has landed (a job waiting for its first job master). The leader reloads the job as waiting
/// to start, while its job master runs and the bookkeeping holds it online. The job master's executor is cut from
/// the masters for 2.5 to 6 s around that read (within every self-fence): whatever the leader answers, the job
/// master hears nothing, and runs on. Only the guard keeps the leader from starting a second job master beside it
/// (rule 3). The cut heals; the job master, which the job no longer names, is told to stop, is lost after its TTL,
/// and the job starts again and finishes. With the switch, 93 of the 100 seeds from 600000 fail rule 3 (the first
/// at seed 600000), and each of them passes without it.
pub async fn job_created_twice_beside_its_job_master_run(planted: Option<Planted>) -> JobFigures {
    let c = Cluster::start_with(2, 4, planted).await;
    let l = leader(&c).await;
    // Every executor registered.
    tokio::time::sleep(millis(1_000, 2_000)).await;
    let jobs = vec![("job-0".to_owned(), FakeConfig { workers: 2, target: 100, tick_ms: 150 })];
    let dial = c.masters[l].points.latency();
    dial.set_in_flight(millis(2_300, 4_500));
    let heal = dial.clone();
    let window = millis(100, 400);
    tokio::spawn(async move {
        tokio::time::sleep(window).await;
        heal.set_in_flight(Duration::ZERO);
    });
    create(&c, &jobs).await;
    // Its job master starts; its first heartbeat follows within milliseconds.
    let started = loop {
        let host = c.recorder.events().into_iter().find_map(|(at, node, seen)| match seen {
            Seen::Exec(ExecutorObservation::TaskStarted { task, .. }) if task.as_str() == "job-0" => {
                c.executors.iter().position(|x| x.name == node).map(|i| (at, i))
            }
            _ => None,
        });
        if let Some(h) = host {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let (at, host) = started;
    dial.set_in_flight(millis(2_500, 5_000));
    tokio::time::sleep(millis(100, 400)).await;
    dial.set_in_flight(Duration::ZERO);
    // Cut before the running write's settling read (2 s after it was sent), healed before any self-fence.
    let since = c.clock.now().saturating_since(at);
    tokio::time::sleep(millis(800, 1_800).saturating_sub(since)).await;
    let victim = c.executors[host].node.id();
    let masters: Vec<_> = c.masters.iter().map(|m| m.node.id()).collect();
    for m in &masters {
        c.net().clog_link(victim, *m);
        c.net().clog_link(*m, victim);
    }
    tokio::time::sleep(millis(2_500, 6_000)).await;
    for m in &masters {
        c.net().unclog_link(victim, *m);
        c.net().unclog_link(*m, victim);
    }
    finish_and_check(&c, &jobs, &BTreeSet::new()).await
}

#[madsim::test]
async fn job_created_twice_beside_its_job_master() {
    announce("job_created_twice_beside_its_job_master");
    job_created_twice_beside_its_job_master_run(None).await;
}

/// Aimed at `job-master-writes-unguarded` (jobs/fake_run.rs `start`): a job master's worker records sent just
/// before it is cut off land after its successor's. Job-0's first job master starts its two workers while its
/// node's writes are in flight (16 to 25 s): each worker record times out, unanswered, and nothing is dispatched.
/// Its executor is then cut from the masters for 15 s: the job master can place nothing more, its executor fences
/// itself, and the leader starts the next job master elsewhere, which writes its own records and starts the
/// workers. Then the old records land: refused by the job's job-master record (the guard), or, without it, naming
/// incarnations never dispatched: the successor's workers find their checkpoints refused, stop, are lost after
/// their TTL and start again from their checkpoints. A delay only: every job finishes, with exact counters.
pub async fn job_master_records_in_flight_land_after_its_successors_run(planted: Option<Planted>) -> JobFigures {
    let c = Cluster::start_with(2, 4, planted).await;
    leader(&c).await;
    tokio::time::sleep(millis(1_000, 2_000)).await;
    let jobs = vec![("job-0".to_owned(), FakeConfig { workers: 2, target: 100, tick_ms: 150 })];
    create(&c, &jobs).await;
    let host = job_master_started_on(&c, "job-0").await;
    let dial = c.executors[host].points.latency();
    let in_flight = millis(16_000, 25_000);
    dial.set_in_flight(in_flight);
    // Its workers placed and their records sent (each unanswered for 3 s).
    tokio::time::sleep(millis(300, 2_500)).await;
    dial.set_in_flight(Duration::ZERO);
    let victim = c.executors[host].node.id();
    let masters: Vec<_> = c.masters.iter().map(|m| m.node.id()).collect();
    for m in &masters {
        c.net().clog_link(victim, *m);
        c.net().clog_link(*m, victim);
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    for m in &masters {
        c.net().unclog_link(victim, *m);
        c.net().unclog_link(*m, victim);
    }
    // Until the last record sent has landed.
    tokio::time::sleep(in_flight).await;
    finish_and_check(&c, &jobs, &BTreeSet::new()).await
}

#[madsim::test]
async fn job_master_records_in_flight_land_after_its_successors() {
    announce("job_master_records_in_flight_land_after_its_successors");
    job_master_records_in_flight_land_after_its_successors_run(None).await;
}

/// The executor (by index) where `job`'s first job master started, once it has (polled every millisecond).
async fn job_master_started_on(c: &Cluster, job: &str) -> usize {
    loop {
        let host = c.recorder.events().into_iter().find_map(|(_, node, seen)| match seen {
            Seen::Exec(ExecutorObservation::TaskStarted { task, .. }) if task.as_str() == job => {
                c.executors.iter().position(|x| x.name == node)
            }
            _ => None,
        });
        if let Some(h) = host {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Probe of a real bug (not a guard's scenario; fails without any switch, so it has no `#[madsim::test]`): the same
/// late create, and then the leader is killed once it has landed, before the job's next write. The job's record says
/// it waits for its first job master while that job master runs; the next leader, with no bookkeeping of it, starts
/// a second one beside it (rule 3).
pub async fn job_created_twice_then_its_leader_killed_run(planted: Option<Planted>) -> JobFigures {
    let c = Cluster::start_with(2, 4, planted).await;
    let l = leader(&c).await;
    tokio::time::sleep(millis(1_000, 2_000)).await;
    let jobs = vec![("job-0".to_owned(), FakeConfig { workers: 2, target: 100, tick_ms: 150 })];
    let dial = c.masters[l].points.latency();
    let in_flight = millis(2_300, 4_500);
    dial.set_in_flight(in_flight);
    let heal = dial.clone();
    let window = millis(100, 400);
    tokio::spawn(async move {
        tokio::time::sleep(window).await;
        heal.set_in_flight(Duration::ZERO);
    });
    create(&c, &jobs).await;
    job_master_started_on(&c, "job-0").await;
    // The first create's write has landed.
    tokio::time::sleep(in_flight).await;
    c.kill_master(l);
    tokio::time::sleep(millis(15_000, 20_000)).await;
    c.restart_master(l);
    finish_and_check(&c, &jobs, &BTreeSet::new()).await
}

/// Seeds-to-catch of each scenario against its guard's switch, from a base seed, and the catching seed without
/// the switch (by hand: `FOREMAN_AIMED=<index> FOREMAN_AIMED_MAX=<n> FOREMAN_AIMED_BASE=<seed> cargo stest --test
/// sim aimed_late::probe -- --ignored --nocapture`; `FOREMAN_AIMED_SWITCH=none` runs without any switch).
#[test]
#[ignore]
fn probe() {
    use crate::harness::run_seed;
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    type Run = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;
    type Scenario = fn(Option<Planted>) -> Run;
    let table: Vec<(Planted, Scenario, &str)> = vec![
        (
            Planted::DispatchBesideLive,
            |p| {
                Box::pin(async move {
                    job_created_twice_beside_its_job_master_run(p).await;
                })
            },
            "job_created_twice_beside_its_job_master",
        ),
        (
            Planted::JobMasterWritesUnguarded,
            |p| {
                Box::pin(async move {
                    job_master_records_in_flight_land_after_its_successors_run(p).await;
                })
            },
            "job_master_records_in_flight_land_after_its_successors",
        ),
        (
            Planted::DispatchBesideLive,
            |p| {
                Box::pin(async move {
                    job_created_twice_then_its_leader_killed_run(p).await;
                })
            },
            "job_created_twice_then_its_leader_killed",
        ),
    ];
    let env = |k: &str| std::env::var(k).ok().and_then(|s| s.parse::<u64>().ok());
    let i = env("FOREMAN_AIMED").unwrap_or(0) as usize;
    let max = env("FOREMAN_AIMED_MAX").unwrap_or(300);
    let base = env("FOREMAN_AIMED_BASE").unwrap_or(600_000);
    let (switch, scenario, name) = table[i];
    let switch = match std::env::var("FOREMAN_AIMED_SWITCH").ok() {
        Some(n) if n == "none" => None,
        Some(n) => Planted::from_name(&n).or(Some(switch)),
        None => Some(switch),
    };
    let label = switch.map_or("none", |s| s.name());
    if std::env::var("FOREMAN_AIMED_COUNT").is_ok() {
        // How many of the seeds catch it, each catching seed also run without the switch.
        let (mut caught, mut clean) = (0, 0);
        for k in 0..max {
            let seed = base + k;
            if run_seed(seed, move || scenario(switch)).is_err() {
                caught += 1;
                clean += usize::from(run_seed(seed, move || scenario(None)).is_ok());
            }
        }
        eprintln!("{label} on {name}: {caught} of {max} seeds from {base} caught it, {clean} of them pass without");
        return;
    }
    for k in 0..max {
        let seed = base + k;
        if let Err(f) = run_seed(seed, move || scenario(switch)) {
            eprintln!("{label} on {name}: caught at seed {seed} ({} seeds): {f}", k + 1);
            if switch.is_some() {
                let without = run_seed(seed, move || scenario(None));
                eprintln!("without the switch: {}", without.err().map(|f| f.to_string()).unwrap_or("passed".into()));
            }
            return;
        }
        eprintln!("seed {seed}: passed");
    }
    eprintln!("{label} on {name}: not caught in {max} seeds from {base}");
}
