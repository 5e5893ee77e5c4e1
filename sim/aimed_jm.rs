//! Scenarios aimed at the job-master-level guards (design.md §8): a superseded job master's worker records
//! (`job-master-writes-unguarded`, framework/job_master.rs), a job master shown a newer one (`newer-master-ignored`,
//! core/workers.rs `fence_master`), and placements asked by a stale job master (`stale-job-master-places`, core/manager
//! `schedule`).
//!
//! A fourth, [`job_master_reads_a_newer_owner_run`], makes `job-master-owner-unchecked` the last line beyond the
//! clock tolerance.
//!
//! What the first three found: none of the three can be the last line of defence under the standard checkers. Each guards
//! against a job master that still acts once its successor exists, and the simulator's own rule-3 checker (one live
//! incarnation) already fails any run where one does, with every guard in place: the old job master is live from its
//! start to its stop (not while its node is paused, and for 5 ms after a resume), and the leader starts the next one
//! only after the old one's own self-fence or its executor's passed. What a stopped job master leaves behind is only
//! what it had sent, and madsim delivers that within the link's latency (a cut refuses a new connection at once, and
//! every etcd request opens its own), so nothing of it arrives after the successor's records. Both scenarios pass
//! 150 seeds with each of the three switches and without any; both catch `executor-ignores-fence` at their first
//! seed (the executor's self-fence is what stops the old job master on resume).

use std::collections::BTreeSet;
use std::time::Duration;

use foreman::buggify::Point;
use foreman::executor::ExecutorObservation;
use foreman::jobs::fake::FakeConfig;
use foreman::planted::Planted;
use madsim::rand::Rng;

use crate::checks::Allowances;
use crate::cluster::{executor_config, master_config, one_slot_executors, Cluster, Seen, Spec};
use crate::fake_jobs::{
    await_running, create, finish_and_check, finish_and_check_allowing, job_master_host, leader, JobFigures,
};
use crate::harness::announce;

/// Masters whose job masters fence themselves (13 s) later than the executors' offline TTL (5 s), as `validate()`
/// allows: the leader restarts a job master as soon as its executor is declared offline, long before the old one's
/// own fence; only the executor's self-fence (3 s) stops the old one first.
fn late_fencing_masters() -> Vec<foreman::config::MasterConfig> {
    (0..3)
        .map(|i| {
            let mut m = master_config(i);
            (m.executors.offline_ttl, m.executors.self_fence) = (Duration::from_secs(5), Duration::from_secs(3));
            (m.workers.offline_ttl, m.workers.self_fence) = (Duration::from_secs(15), Duration::from_secs(13));
            m.validate().expect("the scenario's timing is valid");
            m
        })
        .collect()
}

/// Aimed at the three job-master guards, and at the executor's self-fence (core/agent.rs). Elsewhere a job master
/// stops by its own fence before its successor exists; here, with the late-fencing masters above, the executor
/// hosting job-0's job master is paused for longer than the executors' offline TTL and the backoff (the leader
/// declares it offline and starts the next job master elsewhere, which awaits the old one's workers) but shorter than
/// the job masters' own self-fence. On resume the old job master's fence has not passed: only the executor's
/// self-fence stops it, in the same instant (whichever of the two the simulator polls first). Every job then
/// finishes. Without the executor's self-fence the old job master lives beside its successor (one live incarnation
/// fails at the first seed); with it, the old one sends nothing more, so the job-master guards are never reached.
pub async fn job_master_host_paused_past_its_successor_run(planted: Option<Planted>) -> JobFigures {
    let masters = late_fencing_masters();
    let executors = (0..4).map(|i| executor_config(i, 3)).collect();
    let c = Cluster::build_spec(Spec::jobs(masters, executors, planted)).await;
    leader(&c).await;
    let jobs = vec![("job-0".to_owned(), FakeConfig::counting(3, 300, 150))];
    create(&c, &jobs).await;
    let running = await_running(&c, &jobs).await;
    let host = job_master_host(&c, &running["job-0"]).await;
    tokio::time::sleep(Duration::from_millis(madsim::rand::thread_rng().gen_range(0..=1_500))).await;
    c.pause_executor(host);
    // Past the offline TTL, the backoff and the next job master's start, inside the old one's self-fence.
    tokio::time::sleep(Duration::from_millis(madsim::rand::thread_rng().gen_range(8_000..=12_500))).await;
    c.resume_executor(host);
    finish_and_check(&c, &jobs, &BTreeSet::new()).await
}

#[madsim::test]
async fn job_master_host_paused_past_its_successor() {
    announce("job_master_host_paused_past_its_successor");
    job_master_host_paused_past_its_successor_run(None).await;
}

/// A job master that finds another incarnation owning its job stops (framework/job_master.rs `recover`, switch
/// `job-master-owner-unchecked`). Within the clock tolerance the owner record moves on only after the leader lost
/// the old incarnation, and by then that incarnation has fenced itself, or, not yet live, is answered "stale" before
/// it reaches `recover`.
///
/// Beyond the tolerance the check is what stops it. Here the only executor at the start runs its clock at a quarter
/// of true time (a job master's 10 s self-fence lasts 40 s) and is cut from etcd. Job-0's job master starts there,
/// is acknowledged by the leader (it is live), and retries reading its job (its `recover`) across the cut. Its next
/// heartbeat is held for 30 s (the new `task-heartbeat-send` hold), so the leader loses it after its 12 s TTL, while
/// the executor itself heartbeats on and stays online. The leader starts the next job master on the second
/// executor, started meanwhile (the first one's only slot is taken), whose start is held 7 s after the dispatch
/// (`dispatch-accept`). Its owner record written, the cut to etcd heals: the old job master's next read finds the
/// newer owner and it stops, before its successor starts. Its writes from the heal on are in flight until its
/// successor started (a write the job's fence refuses would stop it too, and that guard is another's). Without the
/// check it goes on, its placements refused and its writes unanswered, until its held heartbeat is answered "stale"
/// 34 s after its start, and its successor starts beside it (rule 3).
/// Every job then finishes, the §6 bounds stretched by what a quarter-speed clock does.
pub async fn job_master_reads_a_newer_owner_run(planted: Option<Planted>) -> JobFigures {
    let c = Cluster::build_spec(Spec::jobs(vec![master_config(0)], one_slot_executors(2, 1), planted)).await;
    leader(&c).await;
    c.settle(Duration::from_secs(10)).await;
    c.stop_executor(1);
    c.executors[0].dial.set_rate_ppm(250_000);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (e, etcd) = (c.executors[0].node.id(), c.etcd.id());
    for (a, b) in [(e, etcd), (etcd, e)] {
        c.net().clog_link(a, b);
    }
    let jobs = vec![("job-0".to_owned(), FakeConfig::counting(1, 100, 100))];
    create(&c, &jobs).await;
    let host = job_master_started_on(&c, "job-0", 1).await;
    assert_eq!(host, 0, "job-0's first job master started on the only executor");
    // Acknowledged at once (its first heartbeat); its next one, a quarter-speed second later, is held.
    tokio::time::sleep(Duration::from_millis(madsim::rand::thread_rng().gen_range(300..=1_500))).await;
    c.executors[0].points.hold(0, Point::TaskHeartbeatSend, Duration::from_secs(30), false);
    c.restart_executor(1);
    c.executors[1].points.hold(0, Point::DispatchAccept, Duration::from_secs(7), false);
    // The successor's owner record is written before its dispatch, which the second executor holds.
    let since = c.clock.now();
    loop {
        let held = c.recorder.events().into_iter().any(|(_, node, seen)| {
            node == c.executors[1].name && matches!(seen, Seen::HoldBegan { point: "dispatch-accept", .. })
        });
        if held {
            break;
        }
        assert!(c.clock.now().saturating_since(since) < Duration::from_secs(60), "no successor was dispatched");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Its writes from now on (its status, a worker record) are in flight for 20 s: a write the job's fence refuses
    // would tell it too, and that guard is another's.
    let writes = c.executors[0].points.latency();
    writes.set_in_flight(Duration::from_secs(20));
    for (a, b) in [(e, etcd), (etcd, e)] {
        c.net().unclog_link(a, b);
    }
    job_master_started_on(&c, "job-0", 2).await;
    writes.set_in_flight(Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(30)).await;
    c.executors[0].dial.set_rate_ppm(1_000_000);
    let allow = Allowances::clocks_within(0.75);
    finish_and_check_allowing(&c, &jobs, &BTreeSet::new(), &allow).await
}

#[madsim::test]
async fn job_master_reads_a_newer_owner() {
    announce("job_master_reads_a_newer_owner");
    job_master_reads_a_newer_owner_run(None).await;
}

type Run = std::pin::Pin<Box<dyn std::future::Future<Output = JobFigures>>>;

/// The probes by name.
fn scenario(name: &str) -> fn(Option<Planted>) -> Run {
    match name {
        "records" => |p| Box::pin(job_master_records_land_after_its_successors_run(p)),
        "slow" => |p| Box::pin(job_masters_heard_through_a_slow_metastore_run(p)),
        "owner" => |p| Box::pin(job_master_reads_a_newer_owner_run(p)),
        _ => |p| Box::pin(job_master_host_paused_past_its_successor_run(p)),
    }
}

/// Seeds-to-catch of the probes against switches (by hand: `FOREMAN_AIMED_SCENARIO=paused|records|slow|owner
/// FOREMAN_AIMED=<switch>[,<switch>|none...] FOREMAN_AIMED_SEEDS=<n> cargo stest --test sim aimed_jm::probe --
/// --ignored --nocapture`); each catching seed is run again without the switch.
#[test]
#[ignore]
fn probe() {
    use crate::harness::run_seed;
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    let n: u64 = std::env::var("FOREMAN_AIMED_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(50);
    let base: u64 = std::env::var("FOREMAN_AIMED_BASE").ok().and_then(|s| s.parse().ok()).unwrap_or(400_000);
    let run = scenario(&std::env::var("FOREMAN_AIMED_SCENARIO").unwrap_or_default());
    let mine = [Planted::JobMasterWritesUnguarded, Planted::NewerMasterIgnored, Planted::StaleJobMasterPlaces];
    let switches: Vec<Option<Planted>> = match std::env::var("FOREMAN_AIMED") {
        Ok(names) => names.split(',').map(Planted::from_name).collect(),
        Err(_) => mine.into_iter().map(Some).chain([None]).collect(),
    };
    for switch in switches {
        let name = switch.map_or("none", |s| s.name());
        let caught = (base..base + n).find_map(|seed| run_seed(seed, move || run(switch)).err().map(|f| (seed, f)));
        match caught {
            None => eprintln!("probe {name}: not caught in {n} seeds from {base}"),
            Some((seed, f)) => {
                let alone = switch.is_some() && run_seed(seed, move || run(None)).is_err();
                eprintln!(
                    "probe {name}: caught at seed {seed} ({} seeds; fails without: {alone}): {f}",
                    seed - base + 1
                );
            }
        }
    }
}

/// The executor where incarnation `epoch` of `job`'s job master started, once it has (polled every 5 ms).
async fn job_master_started_on(c: &Cluster, job: &str, epoch: u64) -> usize {
    loop {
        let found = c.recorder.events().into_iter().find_map(|(_, node, seen)| match seen {
            Seen::Exec(ExecutorObservation::TaskStarted { task, epoch: e, .. })
                if task.as_str() == job && e.0 == epoch =>
            {
                c.executors.iter().position(|x| x.name == node)
            }
            _ => None,
        });
        if let Some(i) = found {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Aimed at `job-master-writes-unguarded` and `stale-job-master-places`: the same pause as above, taken while
/// job-0's first job master starts its six workers one after the other (most likely while it waits for the leader's
/// placement of one of them, or for a worker record's write), and resumed once the next job master started elsewhere
/// and wrote its own worker records, inside the old one's own self-fence. The only way left for the old job master
/// to write or place after its successor: to be polled first on resume, take the answer that came in while it was
/// paused and send its next request in that same instant (a connection's set-up may take no simulated time), before
/// the executor's self-fence drops it. In 150 seeds that never happened (a successor's worker never found its record
/// taken over); and had it, the record would name an incarnation never dispatched, which only costs the successor's
/// worker a restart after its TTL (no rule broken).
pub async fn job_master_records_land_after_its_successors_run(planted: Option<Planted>) -> JobFigures {
    let masters = late_fencing_masters();
    let executors = (0..4).map(|i| executor_config(i, 3)).collect();
    let c = Cluster::build_spec(Spec::jobs(masters, executors, planted)).await;
    leader(&c).await;
    let jobs = vec![("job-0".to_owned(), FakeConfig::counting(6, 300, 150))];
    create(&c, &jobs).await;
    let host = job_master_started_on(&c, "job-0", 1).await;
    // While it reads the job and starts its workers one after the other.
    tokio::time::sleep(Duration::from_millis(madsim::rand::thread_rng().gen_range(60..=250))).await;
    c.pause_executor(host);
    // Past the offline TTL, the backoff and the successor's first worker records, inside the old one's fence.
    tokio::time::sleep(Duration::from_millis(madsim::rand::thread_rng().gen_range(8_000..=12_500))).await;
    c.resume_executor(host);
    finish_and_check(&c, &jobs, &BTreeSet::new()).await
}

#[madsim::test]
async fn job_master_records_land_after_its_successors() {
    announce("job_master_records_land_after_its_successors");
    job_master_records_land_after_its_successors_run(None).await;
}

/// Masters whose job masters heartbeat at the swarm's tightest draw (every 300 ms, a 300 ms timeout, a 2.1 s self-fence).
fn impatient_job_masters() -> Vec<foreman::config::MasterConfig> {
    (0..3)
        .map(|i| {
            let mut m = master_config(i);
            m.workers.heartbeat_interval = Duration::from_millis(300);
            m.workers.heartbeat_timeout = Duration::from_millis(300);
            (m.workers.self_fence, m.workers.offline_ttl) =
                (Duration::from_millis(2_100), Duration::from_millis(4_500));
            m.validate().expect("the scenario's timing is valid");
            m
        })
        .collect()
}

/// A job master's plain heartbeat must not wait behind the leader's writes about other jobs. Every master's
/// metastore requests take up to 150-250 ms from the start (under the job masters' 300 ms timeout: no fault, so it
/// explains no restart), and ten jobs are created one after the other, so that some write (a create, a job
/// master's first check-in, a finish, the periodic pass) is nearly always in progress. Every job finishes and no
/// job master or worker that ran is started again (the wasted-work checker). With every job master's message
/// queued behind the write in progress, as before, healthy job masters fenced themselves (caught at the third of
/// 60 seeds; swarm seed 1796457366, pinned, with no fault at all). At 350-500 ms it still fails: a first check-in
/// queues behind the periodic pass's writes (seed 400007), and a job master whose heartbeat timed out turns to a
/// follower, which reads the leader from the slow metastore before forwarding (seed 400000).
pub async fn job_masters_heard_through_a_slow_metastore_run(planted: Option<Planted>) -> JobFigures {
    let masters = impatient_job_masters();
    let executors = (0..4).map(|i| executor_config(i, 3)).collect();
    let c = Cluster::build_spec(Spec::jobs(masters, executors, planted)).await;
    leader(&c).await;
    let slow = Duration::from_millis(madsim::rand::thread_rng().gen_range(150..=250));
    for m in &c.masters {
        m.points.latency().set(slow);
    }
    let jobs: Vec<_> = (0..10)
        .map(|i| {
            let workers = madsim::rand::thread_rng().gen_range(1..=3);
            (format!("job-{i}"), FakeConfig::counting(workers, 40, 100))
        })
        .collect();
    create(&c, &jobs).await;
    let figures = finish_and_check(&c, &jobs, &BTreeSet::new()).await;
    let k = &c.config;
    let horizon = (k.executors.offline_ttl + k.executors.self_fence).max(k.workers.offline_ttl + k.workers.self_fence)
        + k.executors.check_interval;
    let events = c.recorder.events();
    if let Err(v) = crate::checks::restarts_explained(&events, &[], horizon, k.failover_keeps_work()) {
        crate::harness::fail(v);
    }
    figures
}

#[madsim::test]
async fn job_masters_heard_through_a_slow_metastore() {
    announce("job_masters_heard_through_a_slow_metastore");
    job_masters_heard_through_a_slow_metastore_run(None).await;
}
