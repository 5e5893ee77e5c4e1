//! Guards of the worker level made the last line of defence (design.md §8): scenarios aimed at the guards between
//! a job master and its workers that the swarm's seeds never leave alone, each naming the guard, what hides it
//! elsewhere, and how the scenario takes that away (as `sim/last_line.rs` does one level up).
//!
//! A third guard, a worker (or job master) told "stale" on a heartbeat stops (framework/link.rs `on_reply`, switch
//! `stale-verdict-ignored`), is the last line only beyond the clock tolerance: see
//! [`worker_told_stale_while_its_slow_fence_runs_run`].

use std::collections::BTreeSet;
use std::time::Duration;

use foreman::jobs::fake::FakeConfig;
use foreman::planted::Planted;
use madsim::rand::Rng;

use crate::checks::Allowances;
use crate::cluster::{master_config, one_slot_executors, Cluster, Spec};
use crate::fake_jobs::{
    await_running, create, finish_and_check, finish_and_check_allowing, job_master_host, leader, live_tasks, JobFigures,
};
use crate::harness::announce;

fn millis(lo: u64, hi: u64) -> Duration {
    Duration::from_millis(madsim::rand::thread_rng().gen_range(lo..=hi))
}

/// The executors (by index) running a worker of `job` but not its job master, which runs on executor `host`.
fn worker_hosts(c: &Cluster, job: &str, host: usize) -> Vec<usize> {
    let live = live_tasks(c);
    (0..c.executors.len())
        .filter(|i| *i != host)
        .filter(|i| {
            live.get(&c.executors[*i].name)
                .is_some_and(|tasks| tasks.iter().any(|t| t.is_worker() && t.as_str().starts_with(&format!("{job}/"))))
        })
        .collect()
}

/// A job master's answer "stale" to an older incarnation of one of its workers (core/workers.rs `fence`).
/// Elsewhere a worker's incarnation is superseded only once its job master has stopped hearing it for the offline
/// TTL, by which time it has fenced itself and sends nothing more; and workers reach their job master directly, so
/// no forwarder holds a message of theirs. But a worker that leaves cleanly is superseded at once: when its
/// executor drains, it checkpoints its stop and reports `Stopped`, and its job master starts its next incarnation
/// the moment it takes the report. If the answer to that report is lost, the old incarnation sends the report
/// again, alive and unfenced, after its successor started.
///
/// Job-0's job master runs on one executor and a worker on another; the link from the job master's executor to the
/// worker's is cut one way (the answers are lost, the worker's messages still arrive), and the worker's executor is
/// asked to stop. The worker's `Stopped` report is taken, its successor starts elsewhere and checks in, and the old
/// incarnation, its report unanswered within the heartbeat deadline, sends it again: the job master must answer
/// "stale" (rule 2), not take the report as its successor's exit. Every job then finishes.
pub async fn worker_report_repeated_after_its_successor_started_run(planted: Option<Planted>) -> JobFigures {
    let c = Cluster::start_with(2, 4, planted).await;
    leader(&c).await;
    let jobs = vec![("job-0".to_owned(), FakeConfig::counting(2, 200, 150))];
    create(&c, &jobs).await;
    let running = await_running(&c, &jobs).await;
    // The workers start once the job master placed them.
    tokio::time::sleep(millis(1_500, 4_000)).await;
    let host = job_master_host(&c, &running["job-0"]).await;
    let hosts = worker_hosts(&c, "job-0", host);
    if let Some(&worker) = hosts.get(madsim::rand::thread_rng().gen_range(0..hosts.len().max(1))) {
        let (from, to) = (c.executors[host].node.id(), c.executors[worker].node.id());
        c.net().clog_link(from, to);
        // Within the worker's self-fence (its heartbeats are no longer acknowledged).
        tokio::time::sleep(millis(0, 3_000)).await;
        c.stop_executor(worker);
        // Past the drain's timeout: the stopped executor is gone by then.
        tokio::time::sleep(millis(12_000, 16_000)).await;
        c.net().unclog_link(from, to);
    }
    finish_and_check(&c, &jobs, &BTreeSet::new()).await
}

#[madsim::test]
async fn worker_report_repeated_after_its_successor_started() {
    announce("worker_report_repeated_after_its_successor_started");
    worker_report_repeated_after_its_successor_started_run(None).await;
}

/// A worker's checkpoint write compares the worker record with its epoch (framework/checkpoint.rs). Elsewhere a write
/// leaves only while its worker runs, a worker runs only until its self-fence, and its job master starts the next
/// incarnation only after that; the write then reaches etcd within milliseconds (the simulated client opens a
/// connection per request, refused at once across a cut). A real client sends its requests on one long-lived
/// connection: a write sent into a partition is retransmitted and applied when the partition heals, long after its
/// client gave up on it and stopped. The writes in flight ([`foreman::buggify::Latency::set_in_flight`]) are that.
///
/// Job-0's job master runs on one executor and a worker on another. The worker's executor is cut from every other
/// node for 15 s, and the metastore writes it sends into the cut arrive 32 to 45 s after they were sent (after the
/// heal, as retransmitted requests). The worker's checkpoint of its next step times out and is sent again at each
/// attempt until its executor fences itself; its job master declares it lost and starts its successor elsewhere,
/// which finishes the job. Then the old writes arrive: the worker record refuses each (rule 2), or the checkpoint
/// ends below the target (exact counters).
pub async fn worker_checkpoint_arrives_after_its_successor_finished_run(planted: Option<Planted>) -> JobFigures {
    let c = Cluster::start_with(2, 4, planted).await;
    leader(&c).await;
    let jobs = vec![("job-0".to_owned(), FakeConfig::counting(2, 100, 150))];
    create(&c, &jobs).await;
    let running = await_running(&c, &jobs).await;
    tokio::time::sleep(millis(1_500, 4_000)).await;
    let host = job_master_host(&c, &running["job-0"]).await;
    let hosts = worker_hosts(&c, "job-0", host);
    if let Some(&worker) = hosts.get(madsim::rand::thread_rng().gen_range(0..hosts.len().max(1))) {
        crate::aimed_store::cut_with_writes_in_flight(&c, worker).await;
    }
    finish_and_check(&c, &jobs, &BTreeSet::new()).await
}

#[madsim::test]
async fn worker_checkpoint_arrives_after_its_successor_finished() {
    announce("worker_checkpoint_arrives_after_its_successor_finished");
    worker_checkpoint_arrives_after_its_successor_finished_run(None).await;
}

/// A worker told "stale" stops (framework/link.rs `on_reply`). Elsewhere ignoring the verdict keeps the incarnation
/// running only until its own self-fence, and no successor can start before that fence: a heartbeat is answered
/// "stale" by a host that no longer runs the master (framework/host.rs `handle`; the master's next incarnation then
/// waits the offline TTL for the worker to check in, core/workers.rs `recover`, and the worker's last acknowledgement
/// came before it started), for an older epoch or an unknown task (the entry was superseded only after the offline
/// TTL since it was last heard, core/workers.rs `tick`, or after the worker's own exit report, after which it sends
/// no heartbeat), or for a revoked or exited entry (the same two). The only successors that start at once, after an
/// exit report or a checkpointed stop (framework/job_master.rs `recover`), follow the end of the old incarnation's
/// work; a repeated exit report told "stale" stops it whatever the switch (framework/link.rs `report_once`). Within
/// the clock tolerance the self-fence always comes first.
///
/// Beyond it, the verdict is what stops a worker whose clock is slow. Here a worker's executor runs its clock at a
/// quarter of true time (its 10 s self-fence lasts 40 s), and the cluster is full: three executors of one slot each,
/// one of them stopped, job-0's job master on one and its only worker on the other. The worker's executor is cut from
/// the job master's executor and from etcd (its checkpoints time out, so no refused write tells it it was superseded,
/// and it stays online with the leader) for 14 s: the job master loses the worker after its 12 s TTL and asks for a
/// place for the next incarnation, which it cannot have while the old one fills the only free slot. The cut to the
/// job master heals: the old worker's next heartbeat is answered "stale", and it stops at once, giving its slot to its
/// successor. 22 s after the cut the third executor starts again. Without the guard the old worker runs on until its
/// slow fence, 36 s or more after the cut, and its successor starts on the third executor beside it (rule 3). Every
/// job then finishes, the §6 bounds stretched by what a quarter-speed clock does (the checkers' clock slack).
pub async fn worker_told_stale_while_its_slow_fence_runs_run(planted: Option<Planted>) -> JobFigures {
    let c = Cluster::build_spec(Spec::jobs(vec![master_config(0)], one_slot_executors(3, 1), planted)).await;
    leader(&c).await;
    c.settle(Duration::from_secs(10)).await;
    c.stop_executor(2);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let jobs = vec![("job-0".to_owned(), FakeConfig::counting(1, 400, 100))];
    create(&c, &jobs).await;
    let running = await_running(&c, &jobs).await;
    tokio::time::sleep(millis(2_000, 4_000)).await;
    let host = job_master_host(&c, &running["job-0"]).await;
    let hosts = worker_hosts(&c, "job-0", host);
    let Some(&worker) = hosts.first() else {
        panic!("job-0's worker does not run beside its job master's executor: {:?}", live_tasks(&c));
    };
    c.executors[worker].dial.set_rate_ppm(250_000);
    tokio::time::sleep(millis(4_000, 6_000)).await;
    let (w, jm, etcd) = (c.executors[worker].node.id(), c.executors[host].node.id(), c.etcd.id());
    for (a, b) in [(w, jm), (jm, w), (w, etcd), (etcd, w)] {
        c.net().clog_link(a, b);
    }
    tokio::time::sleep(millis(13_500, 14_500)).await;
    for (a, b) in [(w, jm), (jm, w)] {
        c.net().unclog_link(a, b);
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    c.restart_executor(2);
    tokio::time::sleep(Duration::from_secs(20)).await;
    for (a, b) in [(w, etcd), (etcd, w)] {
        c.net().unclog_link(a, b);
    }
    c.executors[worker].dial.set_rate_ppm(1_000_000);
    let allow = Allowances::clocks_within(0.75);
    finish_and_check_allowing(&c, &jobs, &BTreeSet::new(), &allow).await
}

#[madsim::test]
async fn worker_told_stale_while_its_slow_fence_runs() {
    announce("worker_told_stale_while_its_slow_fence_runs");
    worker_told_stale_while_its_slow_fence_runs_run(None).await;
}

/// Seeds-to-catch of each scenario against its guard's switch, from a base seed, and the catching seed without
/// the switch (by hand: `FOREMAN_AIMED=<index> FOREMAN_AIMED_MAX=<n> cargo stest --test sim aimed_worker::probe --
/// --ignored --nocapture`).
#[test]
#[ignore]
fn probe() {
    use crate::harness::run_seed;
    type Run = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;
    type Scenario = fn(Option<Planted>) -> Run;
    let table: Vec<(Planted, Scenario, &str)> = vec![
        (
            Planted::StaleWorkerAnswered,
            |p| {
                Box::pin(async move {
                    worker_report_repeated_after_its_successor_started_run(p).await;
                })
            },
            "worker_report_repeated_after_its_successor_started",
        ),
        (
            Planted::CheckpointUnguarded,
            |p| {
                Box::pin(async move {
                    worker_checkpoint_arrives_after_its_successor_finished_run(p).await;
                })
            },
            "worker_checkpoint_arrives_after_its_successor_finished",
        ),
        (
            Planted::StoreUnguarded,
            |p| Box::pin(crate::aimed_store::store_writes_arrive_after_their_successor_finished_run(p)),
            "store_writes_arrive_after_their_successor_finished",
        ),
        (
            Planted::StatusUnguarded,
            |p| Box::pin(crate::aimed_store::status_writes_arrive_after_their_successor_finished_run(p)),
            "status_writes_arrive_after_their_successor_finished",
        ),
        (
            Planted::StaleVerdictIgnored,
            |p| {
                Box::pin(async move {
                    worker_told_stale_while_its_slow_fence_runs_run(p).await;
                })
            },
            "worker_told_stale_while_its_slow_fence_runs",
        ),
    ];
    let env = |k: &str| std::env::var(k).ok().and_then(|s| s.parse::<u64>().ok());
    let i = env("FOREMAN_AIMED").unwrap_or(0) as usize;
    let max = env("FOREMAN_AIMED_MAX").unwrap_or(300);
    let base = env("FOREMAN_AIMED_BASE").unwrap_or(500_000);
    let (switch, scenario, name) = table[i];
    // Another guard's switch against the same scenario (`FOREMAN_AIMED_SWITCH=<switch name>`).
    let switch = std::env::var("FOREMAN_AIMED_SWITCH").ok().and_then(|n| Planted::from_name(&n)).unwrap_or(switch);
    if std::env::var("FOREMAN_AIMED_COUNT").is_ok() {
        // How many of the seeds catch it, each catching seed also run without the switch.
        let (mut caught, mut clean) = (0, 0);
        for k in 0..max {
            let seed = base + k;
            if run_seed(seed, move || scenario(Some(switch))).is_err() {
                caught += 1;
                clean += usize::from(run_seed(seed, move || scenario(None)).is_ok());
            }
        }
        eprintln!(
            "{} on {name}: {caught} of {max} seeds from {base} caught it, {clean} of them pass without",
            switch.name()
        );
        return;
    }
    for k in 0..max {
        let seed = base + k;
        if let Err(f) = run_seed(seed, move || scenario(Some(switch))) {
            eprintln!("{} on {name}: caught at seed {seed} ({} seeds): {f}", switch.name(), k + 1);
            let without = run_seed(seed, move || scenario(None));
            eprintln!("without the switch: {}", without.err().map(|f| f.to_string()).unwrap_or("passed".into()));
            return;
        }
        eprintln!("seed {seed}: passed");
    }
    eprintln!("{} on {name}: not caught in {max} seeds from {base}", switch.name());
}
