//! Bug-finding power (issue 4's acceptance, issue 5 item 7): realistic bugs planted one at a time
//! (`foreman::planted`, simulation build only), each run against the scenario that attacks it until a checker
//! fails. The test reports how many seeds each took, checks that the checker that fired is the one the bug
//! breaks, and re-runs the catching seed without the bug: it must pass, so the failure was the bug's.

use std::future::Future;
use std::pin::Pin;

use foreman::planted::Planted;

use crate::harness::{panic_text, run_seed};

use crate::fake_jobs::{job_canceled_during_a_failover_run, leader_killed_during_a_blip_run, worker_cut_run};
use crate::master_failover::{leader_cut_from_etcd_steps_down_run, simultaneous_deaths_are_declared_together_run};

type Run = Pin<Box<dyn Future<Output = ()>>>;
type Scenario = fn(Option<Planted>) -> Run;

/// The most seeds a bug may survive.
const MAX_SEEDS: u64 = 300;

/// (bug, the scenario that attacks it, its name, what the failure must say).
fn table() -> Vec<(Planted, Scenario, &'static str, &'static str)> {
    vec![
        (
            Planted::WorkerIgnoresFence,
            |b| {
                Box::pin(async move {
                    worker_cut_run(b).await;
                })
            },
            "worker_cut_from_its_job_master_and_etcd",
            "one live incarnation",
        ),
        (
            Planted::OneOfflinePerCheck,
            |b| {
                Box::pin(async move {
                    simultaneous_deaths_are_declared_together_run(b).await;
                })
            },
            "simultaneous_deaths_are_declared_together",
            "detection bound",
        ),
        (
            Planted::NoStepDown,
            |b| {
                Box::pin(async move {
                    leader_cut_from_etcd_steps_down_run(b).await;
                })
            },
            "leader_cut_from_etcd_steps_down",
            "safety rule 1",
        ),
        (
            Planted::RecoveryWithoutWait,
            |b| {
                Box::pin(async move {
                    leader_killed_during_a_blip_run(b).await;
                })
            },
            "leader_killed_during_a_network_blip",
            "one live incarnation",
        ),
        (
            Planted::RecoveryForgetsCancel,
            |b| {
                Box::pin(async move {
                    job_canceled_during_a_failover_run(b).await;
                })
            },
            "job_canceled_during_a_failover",
            "cancel",
        ),
    ]
}

#[test]
fn planted_bugs_are_caught() {
    let mut report = vec![];
    for (i, (bug, scenario, name, rule)) in table().into_iter().enumerate() {
        let base = 80_000 + 10_000 * i as u64;
        let caught = (base..base + MAX_SEEDS).find_map(|seed| {
            let Err(p) = run_seed(seed, move || scenario(Some(bug))) else { return None };
            Some((seed, panic_text(&*p)))
        });
        let Some((seed, text)) = caught else {
            panic!("planted bug {} survived {MAX_SEEDS} seeds of {name}", bug.name());
        };
        assert!(text.contains(rule), "seed {seed}: {} broke another rule than {rule:?}: {text}", bug.name());
        assert!(
            run_seed(seed, move || scenario(None)).is_ok(),
            "seed {seed} of {name} fails without the planted bug {} too: not the bug's failure",
            bug.name()
        );
        let seeds = seed - base + 1;
        eprintln!("planted bug {}: caught by {name} at seed {seed}, after {seeds} seeds: {text}", bug.name());
        report.push((bug.name(), name, seeds));
    }
    eprintln!("\n| planted bug | scenario | seeds to catch |\n|---|---|---|");
    for (bug, name, seeds) in report {
        eprintln!("| {bug} | {name} | {seeds} |");
    }
}

/// One seed of one planted bug with its story (by hand: `FOREMAN_PROBE=<bug index> RUST_LOG=info cargo stest
/// --test sim probe_planted -- --ignored --nocapture`).
#[test]
#[ignore]
fn probe_planted() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    let i: usize = std::env::var("FOREMAN_PROBE").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let (bug, scenario, name, _) = table().swap_remove(i);
    let seed =
        std::env::var("FOREMAN_PROBE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(80_000 + 10_000 * i as u64);
    let r = run_seed(seed, move || scenario(Some(bug)));
    eprintln!("{} on {name}, seed {seed}: {}", bug.name(), r.err().map(|p| panic_text(&*p)).unwrap_or("passed".into()));
}
