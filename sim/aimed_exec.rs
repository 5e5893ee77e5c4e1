//! Guards of the executor and of the job master's start aimed at on purpose (design.md §8): scenarios that take
//! away what hides a guard elsewhere, each naming the guard, what hides it, and how the scenario takes that away.
//! The probe at the end measures how many seeds each takes to catch its guard's switch.

use std::collections::BTreeSet;
use std::time::Duration;

use foreman::buggify::Point;
use foreman::jobs::fake::FakeConfig;
use foreman::planted::Planted;
use madsim::rand::Rng;

use crate::checks::Allowances;
use crate::cluster::{executor_config, master_config, Cluster, Spec};
use crate::fake_jobs::{
    await_running, create, finish_and_check, finish_and_check_allowing, job_master_host, leader, JobFigures,
};
use crate::harness::{announce, run_seed};

/// An executor refuses a task epoch not newer than one it has confirmed (core/dispatcher.rs, `seen`). Elsewhere
/// an older dispatch can never be judged after a newer one of the same task was confirmed on the same executor:
/// the master sends the confirmation only within its dispatch window (framework/dispatch.rs), a parked request
/// expires after the executor's dispatch TTL (5 s), and the master dispatches the next incarnation only once the
/// older one is lost to its bookkeeping, its offline TTL plus that window after the dispatch (core/workers.rs
/// `on_dispatch_sent`, 15 s). So the confirmation of the older one is judged, or dropped with its parked request,
/// long before the newer one exists.
///
/// Here the executor's dispatch TTL is long (60 s, as `validate()` allows) and the executor's handling of one
/// confirmation stalls once it has arrived and before it is judged (a descheduled handler: a hold at
/// `confirm-received`), for 26 to 45 s. The only executor parks job-0's first job master, its confirmation
/// stalls, the leader's dispatch times out (outcome unknown), the incarnation is lost 15 s later, and the next
/// one is dispatched to the same executor, confirmed, and finishes the job. Then the stalled confirmation of the
/// older incarnation is judged, its request still parked: only the executor's memory of the newer epoch refuses
/// it (rule 2). Taken, the older epoch runs where a newer one already ran: the dispatcher's own invariant (a
/// running task's epoch is the newest it remembers) fails at once, a state machine's invariant; past it, the old
/// job master would start after the newer one, which the one-live-incarnation checker refuses (each task's
/// incarnations start in strictly increasing epoch order).
pub async fn stale_confirmation_judged_after_a_newer_incarnation_ran_run(planted: Option<Planted>) -> JobFigures {
    let masters = vec![master_config(0)];
    let mut e = executor_config(0, 1);
    e.dispatch_ttl = Duration::from_secs(60);
    e.validate().expect("the scenario's executor configuration is valid");
    let c = Cluster::build_spec(Spec::jobs(masters, vec![e], planted)).await;
    leader(&c).await;
    c.settle(Duration::from_secs(10)).await;
    // Past the first incarnation's loss (15 s), the backoff and the second one's whole run.
    let stall = Duration::from_millis(madsim::rand::thread_rng().gen_range(26_000..=45_000));
    c.executors[0].points.hold(0, Point::ConfirmReceived, stall, false);
    let jobs = vec![("job-0".to_owned(), FakeConfig::counting(1, 40, 100))];
    create(&c, &jobs).await;
    // The stalled confirmation is judged, and whatever it started has had time to show.
    tokio::time::sleep(stall + Duration::from_secs(5)).await;
    finish_and_check(&c, &jobs, &BTreeSet::new()).await
}

#[madsim::test]
async fn stale_confirmation_judged_after_a_newer_incarnation_ran() {
    announce("stale_confirmation_judged_after_a_newer_incarnation_ran");
    stale_confirmation_judged_after_a_newer_incarnation_ran_run(None).await;
}

/// An executor told it was declared offline stops its work (core/agent.rs, `Verdict::Reregister`; design.md §5
/// rule 7). Within the clock tolerance the executor has always fenced itself first: its self-fence (8 s) counts
/// from the send time of its newest acknowledged heartbeat, the leader's offline TTL (10 s) from that heartbeat's
/// arrival or later, and a leader that declared it offline answers its heartbeats "register again" only after the
/// declaration, so the answer comes after the fence deadline (core/timing.rs `ClockTolerance`: `self_fence / (1 -
/// rate) + timeout < (offline_ttl - jump) / (1 + rate)`). So the guard is the last line only beyond the tolerance.
///
/// Here the leader's clock runs at twice true time (far beyond the tolerance, a few percent), so its 10 s TTL
/// lasts 5 s: the executor hosting job-0's worker (not its job master) is cut from the only master for 5.7 to 7
/// s, declared offline meanwhile, and hears "register again" on its first heartbeat after the cut, its own
/// self-fence still 1 to 2 s away. The §6 bounds the leader judges by its clock are stretched by what its clock
/// does (the checkers' clock slack), so the early declaration is not a false alarm here; the safety rules are
/// checked as everywhere. The guard stops the worker at once and the executor registers again; without it the
/// worker runs on under no registration, which the executor's own invariant refuses at once (rule 7: nothing
/// runs while unregistered); on the story, the registry checker refuses the same (registering again with a task
/// running from before).
pub async fn executor_told_offline_by_a_fast_leader_clock_run(planted: Option<Planted>) -> JobFigures {
    let c = Cluster::start_with(1, 2, planted).await;
    let l = leader(&c).await;
    let jobs = vec![("job-0".to_owned(), FakeConfig::counting(1, 300, 100))];
    create(&c, &jobs).await;
    let running = await_running(&c, &jobs).await;
    let e = 1 - job_master_host(&c, &running["job-0"]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.masters[l].dial.set_rate_ppm(2_000_000);
    let links =
        [(c.executors[e].node.id(), c.masters[l].node.id()), (c.masters[l].node.id(), c.executors[e].node.id())];
    for (a, b) in links {
        c.net().clog_link(a, b);
    }
    tokio::time::sleep(Duration::from_millis(madsim::rand::thread_rng().gen_range(5_700..=7_000))).await;
    for (a, b) in links {
        c.net().unclog_link(a, b);
    }
    c.masters[l].dial.set_rate_ppm(1_000_000);
    // The §6 bounds judged by the leader's clock last half as long as they say: a clock slack whose shortest span
    // is half (rate 1/3: (1 - r) / (1 + r) = 1/2). The safety rules are checked as everywhere.
    let allow = Allowances::clocks_within(1.0 / 3.0);
    finish_and_check_allowing(&c, &jobs, &BTreeSet::new(), &allow).await
}

#[madsim::test]
async fn executor_told_offline_by_a_fast_leader_clock() {
    announce("executor_told_offline_by_a_fast_leader_clock");
    executor_told_offline_by_a_fast_leader_clock_run(None).await;
}

type Scenario = fn(Option<Planted>) -> std::pin::Pin<Box<dyn std::future::Future<Output = JobFigures>>>;

fn table() -> Vec<(Planted, Scenario, &'static str)> {
    vec![
        (
            Planted::ExecutorTakesStaleEpoch,
            |p| Box::pin(stale_confirmation_judged_after_a_newer_incarnation_ran_run(p)),
            "stale_confirmation_judged_after_a_newer_incarnation_ran",
        ),
        (
            Planted::ExecutorKeepsWorkWhenOffline,
            |p| Box::pin(executor_told_offline_by_a_fast_leader_clock_run(p)),
            "executor_told_offline_by_a_fast_leader_clock",
        ),
    ]
}

/// Seeds to catch each guard's switch with its scenario, from a base seed, and the catching seed without the
/// switch (by hand: `FOREMAN_AIMED_BASE=<seed> FOREMAN_AIMED_MAX=<n> cargo stest --test sim aimed_exec::probe --
/// --ignored --nocapture`).
#[test]
#[ignore]
fn probe() {
    let base: u64 = std::env::var("FOREMAN_AIMED_BASE").ok().and_then(|s| s.parse().ok()).unwrap_or(400_000);
    let max: u64 = std::env::var("FOREMAN_AIMED_MAX").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    // With FOREMAN_AIMED_ALL set, every seed of the range runs (how many of them catch the switch).
    let all = std::env::var("FOREMAN_AIMED_ALL").is_ok();
    for (bug, scenario, name) in table() {
        let mut caught = vec![];
        for seed in base..base + max {
            if let Err(f) = run_seed(seed, move || scenario(Some(bug))) {
                caught.push((seed, f));
                if !all {
                    break;
                }
            }
        }
        let Some((seed, failure)) = caught.first() else {
            eprintln!("{}: not caught by {name} in {max} seeds from {base}", bug.name());
            continue;
        };
        let seed = *seed;
        let without = run_seed(seed, move || scenario(None)).err().map(|f| f.to_string());
        eprintln!(
            "{}: caught by {name} at seed {seed}, after {} seeds ({} of the seeds run caught it): {failure}\n  \
             without the switch: {}",
            bug.name(),
            seed - base + 1,
            caught.len(),
            without.unwrap_or_else(|| "passed".to_owned())
        );
    }
}
