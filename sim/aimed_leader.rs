//! Guards made the last line of defence (design.md §8), continued: scenarios aimed at the leader's guards that no
//! swarm seed leaves alone, each naming the guard, what hides it elsewhere, and how the scenario takes that away.
//!
//! Not here: `dispatch-beside-live` (core/workers.rs `admits`, no new incarnation while an older one may be alive).
//! Every step that makes a job startable ends its job master's entry in the same step (a loss removes it, an exit
//! or a drained stop marks it exited, an executor gone or deregistered removes it, a refused dispatch removes it),
//! and a new term tracks only the incarnations its records name; one level down, a job master's idle worker slot
//! comes the same way. The one path on which a job is startable beside an entry that may be alive is a job
//! master's drained stop whose write is reported unknown after it landed: the settling read finds the job
//! waiting, and the failed report's exit is forgotten (core/manager `failed`, `forget_exit`), so the entry is
//! online again; but that incarnation reported its own stop after its last action (its executor quiesced it), so a
//! new incarnation beside it overlaps nothing a checker could see. The guard then only delays the restart by a
//! TTL; no fault makes it the last line while every path keeps the entry and the job in step.

use std::collections::BTreeSet;
use std::time::Duration;

use foreman::buggify::Point;
use foreman::jobs::fake::FakeConfig;
use foreman::planted::Planted;
use foreman::rpc::pb;
use madsim::rand::Rng;

use crate::cluster::Cluster;
use crate::fake_jobs::{cancel, create, finish_and_check, leader, JobFigures};
use crate::faults::{self, Fault, HoldAt, Plan, Step};
use crate::harness::announce;
use crate::master_failover::{await_job, terminal};

/// Every job-manager write compares the term's leader key (master/store_io.rs `persist`). The write task is
/// spawned apart from the term (master/leader.rs `carry_out`), so a write stalled before its transaction does land
/// after its leader stepped down; but elsewhere it lands on records the next leader has not contradicted, or
/// rewrites itself at its next change of the same job, and only a third term would read what it left. The swarm
/// holds the leader's next write of a random moment (mostly a periodic pass's job records, which the next leader
/// derives the same way from what is durable), and no third term follows before those records are written again.
///
/// Here the held write is one the next leader contradicts for sure, and a third term reads it. The leader is held
/// right before its next metastore write and, at once, before its lease's next renewal, both for a stall drawn
/// from the swarm's range for such holds (1.2–2.5 times the lease TTL); the next write is a client's create of a
/// job (the cluster is idle otherwise). The leader steps down at its deadline, the client's create is retried on
/// the next leader, which creates the job, and the client cancels it: it is Canceled before it ever ran. Then the
/// old leader's write of the job's first record (Created, nothing started) comes out of its stall, and the next
/// leader is killed: the third term recovers the job from the metastore. Guarded, the old write was refused (its
/// term's key was gone) and the job stays Canceled; unguarded, the canceled job is brought back and started again
/// (rule 5, canceled never restart).
pub async fn held_create_lands_after_its_cancel_run(planted: Option<Planted>) -> JobFigures {
    let c = Cluster::start_with(3, 3, planted).await;
    c.settle(Duration::from_secs(30)).await;
    let first = leader(&c).await;
    let lease = c.config.election.lease_ttl.as_millis() as u64;
    let stall = Duration::from_millis(madsim::rand::thread_rng().gen_range(lease * 6 / 5..=lease * 5 / 2));
    let held = |point| Fault::Hold { at: HoldAt::Leader, point, stall, every: false };
    let lasts = stall * 2;
    let plan = Plan {
        steps: vec![
            Step { at: Duration::ZERO, fault: held(Point::BeforeMetastoreWrite), lasts },
            Step { at: Duration::ZERO, fault: held(Point::LeaseKeepAlive), lasts },
        ],
    };
    let jobs = vec![("job-1".to_owned(), FakeConfig::counting(2, 400, 150))];
    let start = c.clock.now();
    let mut canceled = BTreeSet::new();
    let client = async {
        tokio::time::sleep(Duration::from_millis(madsim::rand::thread_rng().gen_range(0..=500))).await;
        create(&c, &jobs).await;
        let reply = cancel(&c, "job-1").await;
        let acknowledged = [pb::JobState::Canceling, pb::JobState::Canceled].iter().any(|s| *s as i32 == reply.state);
        if acknowledged {
            canceled.insert("job-1".to_owned());
        }
        await_job(&c, "job-1", Duration::from_secs(60), terminal).await;
    };
    tokio::join!(faults::play(&c, &plan, start, start + lasts), client);
    let second = leader(&c).await;
    assert_ne!(first, second, "the held leader stepped down");
    c.kill_master(second);
    leader(&c).await;
    c.restart_master(second);
    finish_and_check(&c, &jobs, &canceled).await
}

#[madsim::test]
async fn held_create_lands_after_its_cancel() {
    announce("held_create_lands_after_its_cancel");
    held_create_lands_after_its_cancel_run(None).await;
}

/// A new leader places nothing on an executor before hearing it (core/registry.rs `restore`: restored executors
/// are unconfirmed until their first heartbeat). Elsewhere the executors a new leader restores are alive, and a
/// placement on one before it is heard is at worst beyond its room: the executor's own capacity check
/// (core/dispatcher.rs) refuses the dispatch and the task is placed again, so no executor ever runs beyond its
/// capacity, and the placement checker, which judges what executors run, sees nothing. No checker judged the
/// leader's placement decision itself.
///
/// `checks::placed_only_on_live_executors` does (rule 6, "only on executors that are online"): no leader places
/// work on an executor whose process was down for the whole of its term so far. This scenario gives a new leader
/// such an executor to restore: an executor dies, and some seconds later (drawn so that the old leader has not
/// declared it offline yet, and so that no heartbeat it sent can still reach anyone once the next term begins)
/// the leader dies too; the next leader restores the dead executor's record with a fresh TTL, and the client
/// creates a job at once, which it must place. Guarded, the dead executor is never heard, never placed on, and
/// declared offline after its TTL; unguarded, the new leader takes it as online with nothing running and, least
/// loaded, places work on it.
pub async fn executor_dies_then_its_leader_run(planted: Option<Planted>) -> JobFigures {
    let (c, mut jobs, _) = crate::fake_jobs::jobs_running(planted).await;
    let mut rng = madsim::rand::thread_rng();
    let victim = rng.gen_range(0..c.executors.len());
    let l = leader(&c).await;
    c.kill_executor(victim);
    // Within the executor's offline TTL (10 s) less the next election (the lease TTL, 5 s, and a retry), and past
    // what a heartbeat sent before its death may take to reach a leader (9 s) once the next term begins.
    tokio::time::sleep(Duration::from_millis(rng.gen_range(4_500..=8_000))).await;
    c.kill_master(l);
    let late = ("job-3".to_owned(), FakeConfig::counting(2, 60, 150));
    create(&c, std::slice::from_ref(&late)).await;
    jobs.push(late);
    leader(&c).await;
    c.restart_master(l);
    finish_and_check(&c, &jobs, &BTreeSet::new()).await
}

#[madsim::test]
async fn executor_dies_then_its_leader() {
    announce("executor_dies_then_its_leader");
    executor_dies_then_its_leader_run(None).await;
}

/// Seeds to catch each scenario's switch, from a base seed, and whether the catching seed passes without it.
#[test]
#[ignore]
fn aimed_probe() {
    let base: u64 = std::env::var("AIMED_BASE").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let max: u64 = std::env::var("AIMED_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    type Scenario = fn(Option<Planted>) -> std::pin::Pin<Box<dyn std::future::Future<Output = JobFigures>>>;
    let scenarios: [(&str, Planted, Scenario); 2] = [
        ("held_create_lands_after_its_cancel", Planted::LeaderWritesUnguarded, |p| {
            Box::pin(held_create_lands_after_its_cancel_run(p))
        }),
        ("executor_dies_then_its_leader", Planted::RestoredPlacedUnheard, |p| {
            Box::pin(executor_dies_then_its_leader_run(p))
        }),
    ];
    let only = std::env::var("AIMED_ONLY").ok();
    for (name, switch, scenario) in scenarios {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let mut caught = None;
        let mut missed = vec![];
        let all = std::env::var_os("AIMED_ALL").is_some();
        for n in 0..max {
            let run = move || -> std::pin::Pin<Box<dyn std::future::Future<Output = JobFigures>>> {
                Box::pin(async move {
                    announce(name);
                    scenario(Some(switch)).await
                })
            };
            match crate::harness::run_seed(base + n, run) {
                Err(f) if caught.is_none() => caught = Some((n + 1, base + n, f)),
                Err(_) => {}
                Ok(_) => missed.push(base + n),
            }
            if caught.is_some() && !all {
                break;
            }
        }
        if all {
            eprintln!("{name}: {} of {max} seeds from {base} not caught: {missed:?}", missed.len());
        }
        match caught {
            None => eprintln!("{name} ({}): not caught in {max} seeds from {base}", switch.name()),
            Some((n, seed, f)) => {
                let alone = crate::harness::run_seed(seed, move || scenario(None));
                eprintln!(
                    "{name} ({}): caught at seed {n} ({seed}): {f}; without the switch: {}",
                    switch.name(),
                    if alone.is_ok() { "passes".to_owned() } else { format!("FAILS: {}", alone.err().unwrap()) }
                );
            }
        }
    }
}
