//! Bug-finding power (issue 4's acceptance, issue 5 item 7): realistic bugs planted one at a time
//! (`foreman::planted`, simulation build only), each run against the scenario that attacks it until a checker
//! fails. The test reports how many seeds each took, checks that the checker that fired is the one the bug
//! breaks, and re-runs the catching seed without the bug: it must pass, so the failure was the bug's.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use foreman::core::invariants::Rule;
use foreman::planted::Planted;

use crate::faults::Plan;
use crate::harness::run_seed;

use crate::aimed_exec::{
    executor_told_offline_by_a_fast_leader_clock_run, stale_confirmation_judged_after_a_newer_incarnation_ran_run,
};
use crate::aimed_jm::job_master_reads_a_newer_owner_run;
use crate::aimed_late::job_master_records_in_flight_land_after_its_successors_run;
use crate::aimed_leader::{executor_dies_then_its_leader_run, held_create_lands_after_its_cancel_run};
use crate::aimed_store::{
    status_writes_arrive_after_their_successor_finished_run, store_writes_arrive_after_their_successor_finished_run,
};
use crate::aimed_worker::{
    worker_checkpoint_arrives_after_its_successor_finished_run, worker_report_repeated_after_its_successor_started_run,
    worker_told_stale_while_its_slow_fence_runs_run,
};
use crate::exec_jobs::exec_jobs_under_faults_run;
use crate::fake_jobs::{
    job_canceled_during_a_failover_run, leader_failover_with_jobs_run, leader_killed_during_a_blip_run,
    leader_killed_while_a_job_waits_out_its_backoff_run, worker_cut_run,
};
use crate::last_line::{
    executor_cut_while_its_job_masters_fence_late_run, job_master_heard_late_through_a_paused_follower_run,
};
use crate::late_faults::leader_cut_from_executors_suspects_itself_run;
use crate::master_failover::{leader_cut_from_etcd_steps_down_run, simultaneous_deaths_are_declared_together_run};
use crate::swarm::{self, swarm_run};
use crate::workloads::one_step_jobs_give_every_slot_back_run;

type Run = Pin<Box<dyn Future<Output = ()>>>;
type Scenario = fn(Option<Planted>) -> Run;

/// How many of [`table`]'s first rows are planted bugs (realistic bugs, each also run against the swarm); the rows
/// after them are guards' switches with the scenario aimed at each (sim/guards.rs, sim/last_line.rs, sim/aimed_*.rs).
const PLANTED_BUGS: usize = 8;

/// The most seeds a bug may survive.
const MAX_SEEDS: u64 = 300;

/// (bug, the scenario that attacks it, its name, the rules whose violation may catch it).
fn table() -> Vec<(Planted, Scenario, &'static str, &'static [Rule])> {
    vec![
        (
            Planted::WorkerIgnoresFence,
            |b| {
                Box::pin(async move {
                    worker_cut_run(b).await;
                })
            },
            "worker_cut_from_its_job_master_and_etcd",
            &[Rule::OneLiveIncarnation],
        ),
        (
            Planted::OneOfflinePerCheck,
            |b| {
                Box::pin(async move {
                    simultaneous_deaths_are_declared_together_run(b).await;
                })
            },
            "simultaneous_deaths_are_declared_together",
            &[Rule::DetectionBound],
        ),
        (
            Planted::NoStepDown,
            |b| {
                Box::pin(async move {
                    leader_cut_from_etcd_steps_down_run(b).await;
                })
            },
            "leader_cut_from_etcd_steps_down",
            &[Rule::OneActingLeader],
        ),
        (
            Planted::RecoveryWithoutWait,
            |b| {
                Box::pin(async move {
                    leader_killed_during_a_blip_run(b).await;
                })
            },
            "leader_killed_during_a_network_blip",
            &[Rule::OneLiveIncarnation],
        ),
        (
            Planted::RecoveryForgetsCancel,
            |b| {
                Box::pin(async move {
                    job_canceled_during_a_failover_run(b).await;
                })
            },
            "job_canceled_during_a_failover",
            // The cancel checker, or the job API's history (a job seen Canceling, then Running).
            &[Rule::CanceledNeverRestart, Rule::LegalTransitions],
        ),
        (
            Planted::SlotLeak,
            |b| Box::pin(one_step_jobs_give_every_slot_back_run(b)),
            "one_step_jobs_give_every_slot_back",
            &[Rule::ReservationWindow, Rule::ReservationSettled, Rule::CapacitySettled],
        ),
        // Caught by no checker but by the runtime assertion on every job state change, in the leader itself.
        (
            Planted::IllegalTransition,
            |b| Box::pin(one_step_jobs_give_every_slot_back_run(b)),
            "one_step_jobs_give_every_slot_back",
            &[Rule::LegalTransitions],
        ),
        (
            Planted::RecoveryIgnoresBackoff,
            |b| {
                Box::pin(async move {
                    leader_killed_while_a_job_waits_out_its_backoff_run(b).await;
                })
            },
            "leader_killed_while_a_job_waits_out_its_backoff",
            &[Rule::BackoffBound],
        ),
        // The job manager's fence of older job-master incarnations (core/workers.rs): the last line of defence once
        // a paused follower forwards an old job master's heartbeat late.
        (
            Planted::StaleJobMasterAnswered,
            |b| {
                Box::pin(async move {
                    job_master_heard_late_through_a_paused_follower_run(b).await;
                })
            },
            "job_master_heard_late_through_a_paused_follower",
            &[Rule::FencedMessages],
        ),
        // An executor's self-fence, the last line of defence where job masters fence later than the executors' TTL.
        (
            Planted::ExecutorIgnoresFence,
            |b| {
                Box::pin(async move {
                    executor_cut_while_its_job_masters_fence_late_run(b).await;
                })
            },
            "executor_cut_while_its_job_masters_fence_late",
            &[Rule::OneLiveIncarnation],
        ),
        // The mass-eviction guard, the last line of defence where a lone master is cut from every executor.
        (
            Planted::NoEvictionHold,
            |b| Box::pin(leader_cut_from_executors_suspects_itself_run(b)),
            "leader_cut_from_executors_suspects_itself",
            &[Rule::NoMassEviction],
        ),
        // An executor's refusal of an epoch not newer than one it saw: the last line once a confirmation is judged
        // after the task's next incarnation ran there (the dispatcher's own invariant names the stale start).
        (
            Planted::ExecutorTakesStaleEpoch,
            |b| {
                Box::pin(async move {
                    stale_confirmation_judged_after_a_newer_incarnation_ran_run(b).await;
                })
            },
            "stale_confirmation_judged_after_a_newer_incarnation_ran",
            &[Rule::MachineInvariant, Rule::OneLiveIncarnation, Rule::FencedMessages],
        ),
        // A job master's stale-incarnation answer one level down: the last line once a worker that left cleanly
        // repeats its report after its successor started (the answer to the first was lost).
        (
            Planted::StaleWorkerAnswered,
            |b| {
                Box::pin(async move {
                    worker_report_repeated_after_its_successor_started_run(b).await;
                })
            },
            "worker_report_repeated_after_its_successor_started",
            &[Rule::FencedMessages],
        ),
        // The checkpoint's worker-record guard: the last line once a fenced worker's writes, in flight, land after
        // its successor finished.
        (
            Planted::CheckpointUnguarded,
            |b| {
                Box::pin(async move {
                    worker_checkpoint_arrives_after_its_successor_finished_run(b).await;
                })
            },
            "worker_checkpoint_arrives_after_its_successor_finished",
            &[Rule::ExactCounters, Rule::CheckpointsForward],
        ),
        // Every job-manager write compares the term's write fence: the last line once a leader's create, held past
        // its term, lands after the next leader created and canceled the job.
        (
            Planted::LeaderWritesUnguarded,
            |b| {
                Box::pin(async move {
                    held_create_lands_after_its_cancel_run(b).await;
                })
            },
            "held_create_lands_after_its_cancel",
            &[Rule::CanceledNeverRestart, Rule::LegalTransitions],
        ),
        // A new leader places nothing on an executor before hearing it: the last line once an executor died just
        // before its leader, and the next leader restored its record.
        (
            Planted::RestoredPlacedUnheard,
            |b| {
                Box::pin(async move {
                    executor_dies_then_its_leader_run(b).await;
                })
            },
            "executor_dies_then_its_leader",
            &[Rule::Placement],
        ),
        // A new leader re-adopts the job masters that check in: without it, each is answered stale and started
        // again once the recovery wait is over; safe, but work restarted by a failover (§6 failover).
        (
            Planted::RecoveryAdoptsNothing,
            |b| {
                Box::pin(async move {
                    leader_failover_with_jobs_run(b).await;
                })
            },
            "leader_failover_with_jobs",
            &[Rule::ReAdopted],
        ),
        // The job store's worker-record guard and the status's job-master-record guard: the last line once a fenced
        // writer's writes, in flight, land after its successor finished the job.
        (
            Planted::StoreUnguarded,
            |b| Box::pin(store_writes_arrive_after_their_successor_finished_run(b)),
            "store_writes_arrive_after_their_successor_finished",
            &[Rule::StoreForward],
        ),
        (
            Planted::StatusUnguarded,
            |b| Box::pin(status_writes_arrive_after_their_successor_finished_run(b)),
            "status_writes_arrive_after_their_successor_finished",
            &[Rule::StatusFinal],
        ),
        // An executor told it was declared offline stops its work: the last line only beyond the clock tolerance
        // (a leader clock at 2×), caught by the executor's own invariant, or the registry checker past it.
        (
            Planted::ExecutorKeepsWorkWhenOffline,
            |b| {
                Box::pin(async move {
                    executor_told_offline_by_a_fast_leader_clock_run(b).await;
                })
            },
            "executor_told_offline_by_a_fast_leader_clock",
            &[Rule::MachineInvariant, Rule::RegistryIntegrity],
        ),
        // An exec worker's command is killed with its process group when the worker ends by anything but the
        // command's exit: caught by the process checkers of exec jobs under the swarm's faults.
        (
            Planted::ExecLeftRunning,
            |b| Box::pin(exec_jobs_under_faults_run(b)),
            "exec_jobs_under_faults",
            &[Rule::OneLiveIncarnation],
        ),
        // A leader names the deleted jobs an executor asks about, so their logs and scratch directories go: caught
        // when exec jobs are deleted at the end of their scenario.
        (
            Planted::JobDataNotCollected,
            |b| Box::pin(exec_jobs_under_faults_run(b)),
            "exec_jobs_under_faults",
            &[Rule::JobDataCollected],
        ),
        // A worker whose scratch directory lives on a serving executor runs there again: caught when an exec
        // worker's next incarnation starts elsewhere.
        (
            Planted::WorkerPlacedAwayFromResource,
            |b| Box::pin(exec_jobs_under_faults_run(b)),
            "exec_jobs_under_faults",
            &[Rule::Placement],
        ),
        // A worker told "stale" stops: the last line only beyond the clock tolerance (a worker's clock at a quarter
        // of true time, its successor held back by a full cluster until after the verdict).
        (
            Planted::StaleVerdictIgnored,
            |b| {
                Box::pin(async move {
                    worker_told_stale_while_its_slow_fence_runs_run(b).await;
                })
            },
            "worker_told_stale_while_its_slow_fence_runs",
            &[Rule::OneLiveIncarnation],
        ),
        // A job master that finds another owning its job stops: the last line only beyond the clock tolerance (a
        // job master at a quarter of true time whose master lost it while it could not read its job).
        (
            Planted::JobMasterOwnerUnchecked,
            |b| {
                Box::pin(async move {
                    job_master_reads_a_newer_owner_run(b).await;
                })
            },
            "job_master_reads_a_newer_owner",
            &[Rule::OneLiveIncarnation],
        ),
        // A job master's worker records compare its job's job-master record: without it, a superseded job master's
        // record, in flight, lands over its successor's (seen in the records themselves).
        (
            Planted::JobMasterWritesUnguarded,
            |b| {
                Box::pin(async move {
                    job_master_records_in_flight_land_after_its_successors_run(b).await;
                })
            },
            "job_master_records_in_flight_land_after_its_successors",
            &[Rule::RecordsForward],
        ),
    ]
}

#[test]
fn planted_bugs_are_caught() {
    let mut report = vec![];
    let mut wrong = vec![];
    for (i, (bug, scenario, name, rules)) in table().into_iter().enumerate() {
        let base = 80_000 + 10_000 * i as u64;
        let caught = (base..base + MAX_SEEDS)
            .find_map(|seed| run_seed(seed, move || scenario(Some(bug))).err().map(|f| (seed, f)));
        let Some((seed, failure)) = caught else {
            panic!("planted bug {} survived {MAX_SEEDS} seeds of {name}", bug.name());
        };
        let rule = failure.violation().map(|v| v.rule);
        assert!(
            rule.is_some_and(|r| rules.contains(&r)),
            "seed {seed}: {} broke another rule ({rule:?}) than {rules:?}: {failure}",
            bug.name()
        );
        let text = failure.to_string();
        assert!(
            run_seed(seed, move || scenario(None)).is_ok(),
            "seed {seed} of {name} fails without the planted bug {} too: not the bug's failure",
            bug.name()
        );
        let seeds = seed - base + 1;
        eprintln!("planted bug {}: caught by {name} at seed {seed}, after {seeds} seeds: {text}", bug.name());
        if bug == Planted::IllegalTransition {
            // Every seed of the scenario finishes jobs: the assertion must stop the very first.
            assert_eq!(seeds, 1, "the runtime assertion missed the illegal transition in the first seeds");
        }
        if crate::guards::targeted(bug) != Some((name, seeds)) {
            wrong.push(format!(
                "{}: {name} catches it at seed {seeds}; the guard table (sim/guards.rs) records {:?}",
                bug.name(),
                crate::guards::targeted(bug)
            ));
        }
        report.push((bug.name(), name, seeds));
    }
    eprintln!("\n| planted bug | scenario | seeds to catch |\n|---|---|---|");
    for (bug, name, seeds) in report {
        eprintln!("| {bug} | {name} | {seeds} |");
    }
    assert!(
        wrong.is_empty(),
        "the guard table's targeted figures are not the code's any more; update sim/guards.rs and the README:\n{}",
        wrong.join("\n")
    );
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
    eprintln!("{} on {name}, seed {seed}: {}", bug.name(), r.err().map(|f| f.to_string()).unwrap_or("passed".into()));
}

/// The swarm's seeds against each planted bug, in order from a fixed first seed, two at a time: how many it takes
/// until one fails (at most `FOREMAN_PLANTED_SWARM_MAX`, default 2,000), and the catching seed must pass without
/// the bug (so the checker that fired can fail only because of it). The seeds are fixed, so the counts are the
/// same on every run of the same code (`cargo stest --test sim planted_bugs_are_caught_by_the_swarm --
/// --nocapture` prints the table; `FOREMAN_PLANTED_ONLY=<bug>` runs one).
///
/// Then each catching seed's fault plan is shrunk ([`swarm::shrink_seed`], two bugs at a time) to the smallest that
/// still fails the same checker (the target is at most three steps: a row above it says so); the shrunk plan's
/// printed text, read back and run, must fail that checker again (what the swarm's failure report prints replays),
/// and the seed must pass with the shrunk plan without the bug (the shrunk failure is the bug's too).
#[test]
fn planted_bugs_are_caught_by_the_swarm() {
    let max: u64 = std::env::var("FOREMAN_PLANTED_SWARM_MAX").ok().and_then(|s| s.parse().ok()).unwrap_or(2_000);
    let only = std::env::var("FOREMAN_PLANTED_ONLY").ok();
    // (bug, swarm seeds to catch, the first failure's line); the catching seed and its plan, when caught.
    let mut report = vec![];
    let mut caught_all = vec![];
    // The planted bugs are the table's first eight; the rest are guards' switches with a scenario aimed at each,
    // which sim/guards.rs measures against the swarm with every other guard (some the swarm never catches).
    for (i, (bug, _, _, _)) in table().into_iter().enumerate().take(PLANTED_BUGS) {
        if only.as_deref().is_some_and(|o| o != bug.name()) {
            continue;
        }
        let base = 180_000 + 10_000 * i as u64;
        let mut caught = None;
        let mut n = 0;
        while n < max && caught.is_none() {
            let pair: Vec<_> = (n..(n + 2).min(max))
                .map(|k| {
                    let seed = base + k;
                    // why: two seeds at a time on the suite's own threads, outside any simulation.
                    #[allow(clippy::disallowed_methods)]
                    let h = std::thread::spawn(move || {
                        let ran = Arc::new(Mutex::new(None));
                        let run = swarm::Run { planted: Some(bug), ran: Some(ran.clone()), ..swarm::Run::default() };
                        let r = run_seed(seed, move || Box::pin(swarm_run(run)));
                        let plan = ran.lock().expect("the plan's slot").take();
                        (seed, r, plan)
                    });
                    h
                })
                .collect();
            for h in pair {
                let (seed, r, plan) = h.join().expect("the seed's thread");
                if let Err(f) = r {
                    caught = caught.or(Some((seed, f, plan)));
                }
            }
            n += 2;
        }
        let Some((seed, failure, plan)) = caught else {
            eprintln!("planted bug {}: survived {max} swarm seeds", bug.name());
            report.push((bug, 0, format!("not caught in {max} seeds")));
            continue;
        };
        assert!(
            run_seed(seed, || Box::pin(swarm_run(swarm::Run::default()))).is_ok(),
            "swarm seed {seed} fails without the planted bug {} too: not the bug's failure",
            bug.name()
        );
        let seeds = seed - base + 1;
        let text = failure.to_string();
        eprintln!("planted bug {}: caught by the swarm at seed {seed}, after {seeds} seeds: {text}", bug.name());
        report.push((bug, seeds, text.lines().next().unwrap_or_default().chars().take(100).collect::<String>()));
        let plan = plan.unwrap_or_else(|| panic!("swarm seed {seed} failed before it said its plan: {failure}"));
        let plan: Plan = plan.parse().unwrap_or_else(|e| panic!("swarm seed {seed}'s plan does not read back: {e}"));
        caught_all.push((bug, seed, failure.checker(), plan));
    }
    // why: how long the shrinking took, on the harness's wall clock, outside every simulation.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let mut shrunk = BTreeMap::new();
    for pair in caught_all.chunks(2) {
        std::thread::scope(|scope| {
            let handles: Vec<_> = pair
                .iter()
                .map(|(bug, seed, checker, plan)| {
                    // why: two shrinks at a time on the suite's own threads, outside any simulation.
                    #[allow(clippy::disallowed_methods)]
                    scope.spawn(move || {
                        // why: each shrink's wall time, outside every simulation.
                        #[allow(clippy::disallowed_methods)]
                        let started = std::time::Instant::now();
                        let s = swarm::shrink_seed(*seed, plan, Some(*bug), swarm::SHRINK_BUDGET);
                        (*bug, *seed, *checker, s, started.elapsed())
                    })
                })
                .collect();
            for h in handles {
                let (bug, seed, checker, s, took) = h.join().expect("the shrink's thread");
                shrunk.insert(bug, (seed, checker, s, took));
            }
        });
    }
    let shrinking = started.elapsed();
    let mut rows = vec![];
    // What went wrong with a shrink: reported together, after the table.
    let mut wrong = vec![];
    for (bug, seeds, first) in &report {
        let Some((seed, checker, s, took)) = shrunk.remove(bug) else {
            rows.push(format!("| {} | {seeds} | {first} | | |", bug.name()));
            continue;
        };
        let bug = *bug;
        let s = match s {
            Ok(s) if s.checker == checker => s,
            Ok(s) => {
                wrong.push(format!("{}: seed {seed} failed {} when run again, not {checker}", bug.name(), s.checker));
                continue;
            }
            Err(e) => {
                wrong.push(format!("{}: {e}", bug.name()));
                continue;
            }
        };
        let text = s.shrunk.plan.to_string();
        eprintln!(
            "planted bug {}: seed {seed}'s plan shrunk in {:.1}s, {}, still failing {checker}: {text}\n  replay: {}",
            bug.name(),
            took.as_secs_f64(),
            s.shrunk,
            swarm::replay_command(seed, Some(&text), Some(bug))
        );
        // The target is three steps (issue 13); a plan the search cannot bring there is reported, not failed (a
        // catching seed may need more: one-offline-per-check's seed 190121 once needed five, its second suspect hold
        // needing orphaned ids, two silenced executors and a leader change to align them).
        let above = if s.shrunk.plan.steps.len() > 3 { " ABOVE THE TARGET OF 3 STEPS" } else { "" };
        // Replayed from the text the report prints, read back.
        let replayed: Plan =
            text.parse().unwrap_or_else(|e| panic!("the shrunk plan {text:?} does not read back: {e}"));
        let run = swarm::Run { planted: Some(bug), plan: Some(replayed), ..swarm::Run::default() };
        let again = run_seed(seed, move || Box::pin(swarm_run(run))).err().map(|f| f.checker());
        if again != Some(checker) {
            wrong.push(format!("{}: seed {seed} with the shrunk plan {text} gave {again:?}", bug.name()));
        }
        // And the shrunk plan's failure is the bug's too: without it, the seed passes with that plan.
        let plan = Some(s.shrunk.plan.clone());
        if let Err(f) = run_seed(seed, move || Box::pin(swarm_run(swarm::Run { plan, ..swarm::Run::default() }))) {
            wrong.push(format!(
                "{}: seed {seed} with the shrunk plan {text} fails without the bug too: {f}",
                bug.name()
            ));
        }
        rows.push(format!(
            "| {} | {seeds} | {first} | {text} | {}, {:.1}s{above} |",
            bug.name(),
            s.shrunk,
            took.as_secs_f64()
        ));
    }
    eprintln!(
        "\n| planted bug | swarm seeds to catch | first failure | shrunk plan | shrinking |\n|---|---|---|---|---|"
    );
    for row in &rows {
        eprintln!("{row}");
    }
    eprintln!("(shrinking took {:.1}s in all, two bugs at a time)", shrinking.as_secs_f64());
    let survivors: Vec<_> = report.iter().filter(|(_, seeds, _)| *seeds == 0).map(|(bug, _, _)| bug.name()).collect();
    assert!(survivors.is_empty(), "planted bugs the swarm did not catch in {max} seeds: {survivors:?}");
    assert!(wrong.is_empty(), "planted bugs whose catching seed did not shrink as it must:\n{}", wrong.join("\n"));
}
