//! Every guard load-bearing (design.md §8, issue 13 item 2): each guard that enforces a rule of design.md §5 has
//! a switch in the simulation build that removes it alone (`foreman::planted`), and this module measures, for
//! each, how many swarm seeds it takes until a checker notices.
//!
//! Method. The swarm's seeds run from one fixed first seed, [`BASE`], the same seeds for every guard (so the
//! figures compare), with the guard's switch on in every node. The first seed whose run fails is the catching
//! seed; it must pass with the switch off, so the failure is the switch's and not the seed's. The count, the rule
//! and the checker that fired make the guard's row; a guard no seed catches within [`HUNT_MAX`] is reported as
//! such, with the fault that would expose it.
//!
//! Two tests share [`TABLE`], which records what the full hunt measured:
//! - [`every_guard_is_load_bearing`] runs in CI, cheaply and honestly: for a guard recorded caught at the n-th
//!   seed with n ≤ [`CI_HUNT`] it hunts again from [`BASE`] and requires the same n (so the README's figure is the
//!   code's); for a larger n it replays the recorded seed, which must fail with the switch. Every catching seed is
//!   then run without the switch and must pass. A guard recorded as not caught costs nothing here: the full hunt
//!   is the only honest measure of "not caught in 2,000", and it is on demand. About 200 seeds in all (43 s on the
//!   shared 2-core machine, 97 s under heavy load).
//! - [`guard_hunt`] (`--ignored`) is the full hunt: up to `FOREMAN_GUARD_SEEDS` seeds (default [`HUNT_MAX`]) per
//!   guard, `MADSIM_TEST_JOBS` at a time (default 2), `FOREMAN_GUARD=<switch name>[,<switch name>...]` for some
//!   guards, `FOREMAN_GUARD_FROM=<k>` to go on with a hunt whose first k seeds passed, `FOREMAN_GUARD_SEEDS_OF=exec`
//!   to hunt only the swarm's exec seeds (after a change that moved only their stories, as `swarm::fingerprints`
//!   shows: the other seeds' earlier hunt stands); it prints the table to paste
//!   into [`TABLE`] and the README. A change that moves the swarm's draws moves the figures:
//!   [`every_guard_is_load_bearing`] then says which row to measure again.
//!
//! A guard the swarm catches rarely or never gets, where today's faults allow, a scenario aimed at it in
//! `sim/last_line.rs`, run against its switch by `bug_finding::planted_bugs_are_caught`.

use foreman::planted::Planted;

use crate::cluster::Cluster;
use crate::harness::{announce, run_seed, Failure};
use crate::swarm::{self, swarm_run};

/// The guards held unreachable: each is a tripwire (`Plants::trip`) that stops any simulated node reaching it, in
/// [`TABLE`]'s order. Every other guard must be load-bearing.
const TRIPWIRES: [Planted; 3] =
    [Planted::ExecutorHearsDeposedLeader, Planted::NewerMasterIgnored, Planted::DispatchBesideLive];

/// The first swarm seed of every guard's hunt.
const BASE: u64 = 300_000;

/// The most seeds a guard may survive (design.md §8).
const HUNT_MAX: u64 = 2_000;

/// Up to how many seeds CI hunts again to confirm a recorded figure exactly (beyond it, CI replays the seed).
const CI_HUNT: u64 = 40;

/// What the full hunt measured for a guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Measured {
    /// The n-th seed from [`BASE`] was the first to fail (seed `BASE + n - 1`).
    Caught(u64),
    /// No seed failed among the first n.
    NotCaught(u64),
}

/// One guard: its switch, the rule it enforces, where it is, what the hunt measured, and for a guard the swarm
/// does not catch, the fault that would make it the last line of defence.
struct Guard {
    switch: Planted,
    rule: &'static str,
    guard: &'static str,
    measured: Measured,
    needs: &'static str,
    /// The scenario of `sim/bug_finding.rs` aimed at this guard, and at which of its seeds it catches the switch
    /// (`planted_bugs_are_caught` measures it again on every CI run and requires this figure).
    targeted: Option<(&'static str, u64)>,
}

use Measured::*;

/// Every guard of design.md §5 (and the §6 guards that have a switch), with what the full hunt measured.
const TABLE: &[Guard] = &[
    Guard {
        switch: Planted::NoStepDown,
        rule: "1",
        guard: "a leader stops acting at its step-down deadline (core/leadership.rs)",
        measured: Caught(2),
        needs: "",
        targeted: Some(("leader_cut_from_etcd_steps_down", 1)),
    },
    Guard {
        switch: Planted::LeaderWritesUnguarded,
        rule: "1",
        guard: "every job-manager write compares the term's write fence (core/write_fence.rs, master/store_io.rs)",
        measured: Caught(855),
        needs: "the swarm's holds mostly stall whatever the leader writes next, which the next leader rewrites \
            the same way; targeted: a create held past the term lands after the next leader created and canceled the job, and \
            a third term recovers it from the stale record (also caught at the first seed of \
            `job_created_twice_then_its_leader_killed`: an unanswered create of the same term lands after the \
            job's start, and the next leader starts a second job master)",
        targeted: Some(("held_create_lands_after_its_cancel", 1)),
    },
    Guard {
        switch: Planted::ExecutorHearsDeposedLeader,
        rule: "2",
        guard: "an executor takes no reply from a leader older than one it heard (core/agent.rs)",
        measured: NotCaught(2000),
        needs: "a tripwire, held unreachable (every simulated cluster stops with rule `a guard held unreachable is \
            never reached` if it is, switch or no switch; reached in none of 4,000 swarm seeds nor any scenario): \
            the newest leader epoch reaches an executor only in register and heartbeat replies, one round in flight \
            with its deadline, decided only while acting (rule 1), and a leader shown a newer epoch than its own \
            refuses; only rule 1 broken (the no-step-down switch, a clock beyond the tolerance) makes it matter",
        targeted: None,
    },
    Guard {
        switch: Planted::ExecutorTakesDeposedDispatch,
        rule: "2",
        guard: "an executor refuses a dispatch placed under an older leader (core/agent.rs `admit`)",
        measured: Caught(12),
        needs: "",
        targeted: None,
    },
    Guard {
        switch: Planted::ExecutorTakesStaleEpoch,
        rule: "2",
        guard: "an executor refuses a task epoch not newer than one it saw (core/dispatcher.rs)",
        measured: NotCaught(2000),
        needs: "targeted: a confirmation judged 26–45 s late (a hold at the new confirm-received point, the \
            executor's parking TTL 60 s) after the task's next incarnation ran there",
        targeted: Some(("stale_confirmation_judged_after_a_newer_incarnation_ran", 1)),
    },
    Guard {
        switch: Planted::StaleWorkerAnswered,
        rule: "2",
        guard: "a job master answers an older worker incarnation \"stale\" (core/workers.rs `fence`)",
        measured: NotCaught(2000),
        needs: "targeted: a worker that left cleanly (its executor drained) repeats its Stopped report after its \
            successor started, the answer to the first lost one way",
        targeted: Some(("worker_report_repeated_after_its_successor_started", 1)),
    },
    Guard {
        switch: Planted::StaleJobMasterAnswered,
        rule: "2",
        guard: "the job manager answers an older job-master incarnation \"stale\" (the same code, one level up)",
        measured: Caught(416),
        needs: "",
        targeted: Some(("job_master_heard_late_through_a_paused_follower", 1)),
    },
    Guard {
        switch: Planted::NewerMasterIgnored,
        rule: "2",
        guard: "a master shown a newer master epoch stops (core/workers.rs `fence_master`)",
        measured: NotCaught(2000),
        needs: "a tripwire, held unreachable (every simulated cluster stops with rule `a guard held unreachable is \
            never reached` if it is, switch or no switch; reached in none of 4,000 swarm seeds nor any scenario): an \
            executor routes a worker's message to the newest incarnation of its job master it hosts, so a newer \
            epoch reaches an older one only if both run on one executor, which four earlier checks prevent; the \
            leader checks that it may act before every step; a clock beyond the tolerance",
        targeted: None,
    },
    Guard {
        switch: Planted::StaleVerdictIgnored,
        rule: "2",
        guard: "a worker or job master told \"stale\" stops (framework/link.rs)",
        measured: NotCaught(2000),
        needs:
            "the last line only beyond the clock tolerance: a heartbeat is answered stale only after the offline TTL \
            since the worker was last heard (its own fence came first) or after its own exit report (it sends no more \
            heartbeats); targeted: a worker's clock at a quarter of true time (its 10 s self-fence lasts 40 s), cut \
            from its job master past the TTL, and a full cluster that keeps its successor from starting until after \
            the verdict",
        targeted: Some(("worker_told_stale_while_its_slow_fence_runs", 1)),
    },
    Guard {
        switch: Planted::CheckpointUnguarded,
        rule: "2",
        guard: "a checkpoint write compares the worker record with its epoch (framework/checkpoint.rs)",
        measured: NotCaught(2000),
        needs: "targeted: a fenced worker's checkpoint writes, in flight (the new writes-in-flight fault), land \
            after its successor finished",
        targeted: Some(("worker_checkpoint_arrives_after_its_successor_finished", 1)),
    },
    Guard {
        switch: Planted::StoreUnguarded,
        rule: "2",
        guard: "a job-store write compares the worker record with its epoch (framework/store.rs)",
        measured: NotCaught(2000),
        needs: "the swarm's fake writes no job store; targeted: a fenced worker's store writes, in flight, land after \
            its successor finished (a job type of the scenario's own, counting into the store)",
        targeted: Some(("store_writes_arrive_after_their_successor_finished", 1)),
    },
    Guard {
        switch: Planted::StatusUnguarded,
        rule: "2",
        guard: "a job master's status write compares the job-master record with its epoch (framework/job_master.rs)",
        measured: NotCaught(2000),
        needs: "no swarm checker reads the stored status; targeted: a fenced job master's status writes, in flight, \
            land after its successor stored the final one",
        targeted: Some(("status_writes_arrive_after_their_successor_finished", 1)),
    },
    Guard {
        switch: Planted::StaleJobMasterPlaces,
        rule: "2, 3, 5",
        guard: "only the current, online job master of a job not being canceled places workers (core/manager \
            `schedule`)",
        measured: Caught(3),
        needs: "",
        targeted: None,
    },
    Guard {
        switch: Planted::ExecutorIgnoresFence,
        rule: "3",
        guard: "an executor's self-fence (core/agent.rs)",
        measured: Caught(181),
        needs: "",
        targeted: Some(("executor_cut_while_its_job_masters_fence_late", 1)),
    },
    Guard {
        switch: Planted::WorkerIgnoresFence,
        rule: "3",
        guard: "a worker's self-fence (framework/link.rs)",
        measured: Caught(6),
        needs: "",
        targeted: Some(("worker_cut_from_its_job_master_and_etcd", 1)),
    },
    Guard {
        switch: Planted::EarlyOffline,
        rule: "3",
        guard: "an executor is declared offline only after the whole offline TTL (core/registry.rs)",
        measured: Caught(5),
        needs: "",
        targeted: None,
    },
    Guard {
        switch: Planted::WorkerLostEarly,
        rule: "3",
        guard: "an incarnation is lost only after the whole offline TTL (core/workers.rs `tick`)",
        measured: Caught(6),
        needs: "",
        targeted: None,
    },
    Guard {
        switch: Planted::RecoveryWithoutWait,
        rule: "3",
        guard: "a new leader waits the offline TTL for live job masters to check in (core/workers.rs)",
        measured: Caught(8),
        needs: "",
        targeted: Some(("leader_killed_during_a_network_blip", 9)),
    },
    Guard {
        switch: Planted::DispatchBesideLive,
        rule: "3",
        guard: "no new incarnation while an older one may be alive (core/workers.rs `admits`)",
        measured: NotCaught(2000),
        needs: "a tripwire, held unreachable (every simulated cluster stops with rule `a guard held unreachable is \
            never reached` if it is, switch or no switch; reached in none of 4,000 swarm seeds nor any scenario): \
            since the term's write fence, a job goes back to waiting only when its incarnation ended in the leader's \
            memory, or by a write that lands after a later one (the leader's writes in flight twice, \
            `job_created_twice_beside_its_job_master`: caught at its first seed before the fence, not in 100 seeds \
            with it), which the fence refuses",
        targeted: None,
    },
    Guard {
        switch: Planted::JobMasterWritesUnguarded,
        rule: "3",
        guard: "a job master's writes compare the job's job-master record (framework/job_master.rs)",
        measured: NotCaught(2000),
        needs: "a superseded job master's record, landing late, names an incarnation never dispatched and only \
            restarts the successor's worker from its checkpoint, which any fault of the swarm explains; targeted: \
            its records in flight land over its successor's, seen by the client reading the records (rule 2 in the \
            records)",
        targeted: Some(("job_master_records_in_flight_land_after_its_successors", 1)),
    },
    Guard {
        switch: Planted::JobMasterOwnerUnchecked,
        rule: "3",
        guard: "a job master that finds another owning its job stops (framework/job_master.rs `recover`)",
        measured: NotCaught(2000),
        needs: "the last line only beyond the clock tolerance: the owner record moves on only after the leader lost \
            the old incarnation, which by then fenced itself or is answered stale before it reaches recover; \
            targeted: a job master at a quarter of true time, cut from etcd while its leader loses it (its heartbeat \
            held at the new task-heartbeat-send point), reads its job once its successor's owner record is written \
            (its own writes in flight, so that no refused write tells it first)",
        targeted: Some(("job_master_reads_a_newer_owner", 1)),
    },
    Guard {
        switch: Planted::RecoveryForgetsCancel,
        rule: "5",
        guard: "a new leader restores a canceling job as canceling (core/manager `recover`)",
        measured: Caught(4),
        needs: "",
        targeted: Some(("job_canceled_during_a_failover", 1)),
    },
    Guard {
        switch: Planted::LossForgetsCancel,
        rule: "5",
        guard: "a canceling job whose job master is gone ends Canceled (core/job.rs `end_incarnation`)",
        measured: Caught(4),
        needs: "",
        targeted: None,
    },
    Guard {
        switch: Planted::IllegalTransition,
        rule: "5",
        guard: "the runtime assertion on every job state change (core/job.rs `set_state`)",
        measured: Caught(1),
        needs: "",
        targeted: Some(("one_step_jobs_give_every_slot_back", 1)),
    },
    Guard {
        switch: Planted::CapacityIgnored,
        rule: "6",
        guard: "placement within free capacity (core/placement.rs)",
        measured: Caught(3),
        needs: "",
        targeted: None,
    },
    Guard {
        switch: Planted::SelectorsIgnored,
        rule: "6",
        guard: "placement satisfies the selectors (core/placement.rs)",
        measured: Caught(1),
        needs: "",
        targeted: None,
    },
    Guard {
        switch: Planted::WorkerSelectorsDropped,
        rule: "6",
        guard: "a worker is placed by its job's selectors too (core/manager `schedule`)",
        measured: Caught(1),
        needs: "",
        targeted: None,
    },
    Guard {
        switch: Planted::RestoredPlacedUnheard,
        rule: "6",
        guard: "a new leader places nothing on an executor before hearing it (core/registry.rs)",
        measured: Caught(744),
        needs: "targeted: an executor dies, then its leader before declaring it; the next leader restores the dead \
            executor's record (judged by the leader-placement checker of the job scenarios)",
        targeted: Some(("executor_dies_then_its_leader", 1)),
    },
    Guard {
        switch: Planted::SlotLeak,
        rule: "6",
        guard: "reservations end with the task's end report or expiry (core/placement.rs)",
        measured: Caught(3),
        needs: "",
        targeted: Some(("one_step_jobs_give_every_slot_back", 1)),
    },
    Guard {
        switch: Planted::OfflineHeartbeatAccepted,
        rule: "7",
        guard: "a heartbeat from an executor declared offline is refused (core/registry.rs)",
        measured: Caught(8),
        needs: "",
        targeted: None,
    },
    Guard {
        switch: Planted::ExecutorKeepsWorkWhenOffline,
        rule: "7",
        guard: "an executor told it was declared offline stops its work (core/agent.rs)",
        measured: NotCaught(2000),
        needs: "unreachable within the clock tolerance: a declaration before the executor's self-fence is a false \
            alarm the no-false-alarms checker refuses first; targeted beyond it: a leader clock at 2× (the §6 \
            bounds judged by it stretched to match) declares a briefly cut executor offline before its self-fence, \
            and the executor, told so, keeps its worker running unregistered",
        targeted: Some(("executor_told_offline_by_a_fast_leader_clock", 1)),
    },
    Guard {
        switch: Planted::OneOfflinePerCheck,
        rule: "§6 detection",
        guard: "every expired executor goes offline in the same check (core/registry.rs)",
        measured: Caught(235),
        needs: "",
        targeted: Some(("simultaneous_deaths_are_declared_together", 1)),
    },
    Guard {
        switch: Planted::NoEvictionHold,
        rule: "§6 no mass eviction",
        guard: "a leader that sees most executors expire at once holds the evictions (core/registry.rs)",
        measured: Caught(23),
        needs: "",
        targeted: Some(("leader_cut_from_executors_suspects_itself", 1)),
    },
    Guard {
        switch: Planted::RecoveryIgnoresBackoff,
        rule: "§6 backoff",
        guard: "a new leader keeps the persisted backoff (core/manager `recover`)",
        measured: Caught(10),
        needs: "",
        targeted: Some(("leader_killed_while_a_job_waits_out_its_backoff", 1)),
    },
    Guard {
        switch: Planted::RecoveryAdoptsNothing,
        rule: "§6 failover",
        guard: "a new leader re-adopts the job masters that check in (core/workers.rs `on_heartbeat`)",
        measured: NotCaught(2000),
        needs: "the swarm's plans put another fault than the failover in the life of nearly every job master, and any \
            such fault explains a restart; targeted: the leader killed while fake jobs run, nothing else disturbed",
        targeted: Some(("leader_failover_with_jobs", 1)),
    },
    Guard {
        switch: Planted::RetryableTreatedAsTerminal,
        rule: "failures",
        guard: "a worker's retryable failure starts it again, up to its restarts in a row (framework/job_master.rs)",
        measured: Caught(3),
        needs: "",
        targeted: None,
    },
    Guard {
        switch: Planted::ExecLeftRunning,
        rule: "3",
        guard: "an exec worker's command is killed with its process group when the worker ends, and by its executor \
            as it stops the task, before the stop is recorded (framework/process.rs)",
        measured: Caught(4),
        needs: "",
        targeted: Some(("exec_jobs_under_faults", 5)),
    },
    Guard {
        switch: Planted::JobDataNotCollected,
        rule: "data collected",
        guard: "a leader names, in its heartbeat answers, the jobs an executor keeps data of that no longer exist, so \
            their logs and scratch directories go (core/manager)",
        measured: Caught(44),
        needs: "",
        targeted: Some(("exec_jobs_under_faults", 1)),
    },
    Guard {
        switch: Planted::WorkerPlacedAwayFromResource,
        rule: "6",
        guard: "a worker whose local resource lives on a serving executor is placed there again (core/manager \
            `schedule`)",
        measured: Caught(52),
        needs: "",
        targeted: Some(("exec_jobs_under_faults", 1)),
    },
    Guard {
        switch: Planted::PanicLeftRunning,
        rule: "failures",
        guard: "a panic of a worker's work ends its incarnation, failed (framework/worker.rs)",
        measured: Caught(9),
        needs: "",
        targeted: None,
    },
];

/// The targeted scenario recorded for `switch`'s guard, and at which of its seeds it catches the switch.
pub fn targeted(switch: Planted) -> Option<(&'static str, u64)> {
    TABLE.iter().find(|g| g.switch == switch).and_then(|g| g.targeted)
}

/// One swarm seed with `switch` on in every node (or none).
fn run(seed: u64, switch: Option<Planted>) -> Result<(), Failure> {
    run_seed(seed, move || Box::pin(swarm_run(swarm::Run { planted: switch, ..swarm::Run::default() }))).map(|_| ())
}

/// The checker a failure names (`[the X checker]`), else its rule, else "crash".
fn fired(f: &Failure) -> String {
    let text = f.to_string();
    if let Some(checker) = text.split("[the ").nth(1).and_then(|t| t.split(" checker]").next()) {
        return format!("{checker} checker");
    }
    match f.violation() {
        Some(v) => v.rule.to_string(),
        None => format!("crash: {}", text.lines().next().unwrap_or_default().chars().take(60).collect::<String>()),
    }
}

/// Hunts `switch` over the seeds `BASE + from..BASE + max`, `jobs` at a time: the first failing seed's index
/// (1-based, from [`BASE`]) and failure, in seed order whatever the threads' timing. With `only`, only the seeds
/// it admits run (a measure again after a change that moved only those seeds' stories: `swarm::fingerprints` shows
/// which).
fn hunt(switch: Planted, from: u64, max: u64, jobs: u64, only: Option<fn(u64) -> bool>) -> Option<(u64, Failure)> {
    let admitted: Vec<u64> = (from..max).filter(|k| only.is_none_or(|f| f(BASE + k))).collect();
    for chunk in admitted.chunks(jobs.max(1) as usize) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|&k| {
                // why: seeds in parallel on the suite's own threads, outside any simulation; each is one run.
                #[allow(clippy::disallowed_methods)]
                let h = std::thread::spawn(move || (k, run(BASE + k, Some(switch))));
                h
            })
            .collect();
        let mut failed: Vec<(u64, Failure)> = vec![];
        for h in batch {
            let (k, r) = h.join().expect("a seed's thread");
            if let Err(f) = r {
                failed.push((k, f));
            }
        }
        if let Some((k, f)) = failed.into_iter().min_by_key(|(k, _)| *k) {
            return Some((k + 1, f));
        }
    }
    None
}

/// `FOREMAN_GUARD_SEEDS_OF`: the class of seeds a hunt is limited to (`exec`: the swarm's exec seeds), if any.
fn only_from_env() -> Option<fn(u64) -> bool> {
    match std::env::var("FOREMAN_GUARD_SEEDS_OF").ok()?.as_str() {
        "exec" => Some(swarm::with_exec_jobs),
        other => panic!("FOREMAN_GUARD_SEEDS_OF={other}: the classes are: exec"),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The row of `g` in the README's table.
fn row_of(g: &Guard, result: &str, checker: &str) -> String {
    let targeted = g.targeted.map_or("—".to_owned(), |(name, n)| format!("`{name}`, {n}"));
    format!("| {} | `{}` | {} | {checker} | {result} | {targeted} | {} |", g.guard, g.switch.name(), g.rule, g.needs)
}

/// The README table's header.
const HEADER: &str =
    "| guard | switch | rule | checker that fired | swarm seeds to catch | targeted scenario, seeds to \
                      catch | what it needs |\n|---|---|---|---|---|---|---|";

/// The CI check of [`TABLE`] (see the module documentation): each recorded catch is the code's, and each catching
/// seed passes without its switch.
#[test]
fn every_guard_is_load_bearing() {
    let jobs = env_u64("MADSIM_TEST_JOBS").unwrap_or(2).clamp(1, 16);
    let mut rows = vec![];
    let mut wrong = vec![];
    for g in TABLE {
        let name = g.switch.name();
        let (n, failure) = match g.measured {
            Caught(n) if n <= CI_HUNT => match hunt(g.switch, 0, n, jobs, None) {
                Some((found, f)) if found == n => (n, f),
                Some((found, _)) => {
                    wrong.push(format!("{name}: caught at seed {found} of the hunt, the table says {n}"));
                    continue;
                }
                None => {
                    wrong.push(format!("{name}: not caught in {n} seeds any more, the table says {n}"));
                    continue;
                }
            },
            Caught(n) => match run(BASE + n - 1, Some(g.switch)) {
                Err(f) => (n, f),
                Ok(()) => {
                    wrong.push(format!("{name}: the recorded seed {} no longer fails", BASE + n - 1));
                    continue;
                }
            },
            NotCaught(max) => {
                rows.push(row_of(g, &format!("not caught in {max}"), "—"));
                continue;
            }
        };
        let seed = BASE + n - 1;
        if let Err(f) = run(seed, None) {
            wrong.push(format!("{name}: seed {seed} fails without the switch too (not the guard's failure): {f}"));
            continue;
        }
        rows.push(row_of(g, &n.to_string(), &fired(&failure)));
    }
    eprintln!("\n{HEADER}");
    for r in &rows {
        eprintln!("{r}");
    }
    // Load-bearing: some seed of the swarm (within the most a guard may survive) or of a scenario aimed at it breaks
    // a checker without it.
    let bare: Vec<&str> = TABLE
        .iter()
        .filter(|g| !matches!(g.measured, Caught(n) if n <= HUNT_MAX) && g.targeted.is_none())
        .map(|g| g.switch.name())
        .collect();
    eprintln!(
        "guards no seed shows load-bearing ({} of {}; each must be a tripwire): {}",
        bare.len(),
        TABLE.len(),
        bare.join(", ")
    );
    let tripwires: Vec<&str> = TRIPWIRES.iter().map(|p| p.name()).collect();
    if bare != tripwires {
        wrong.push(format!(
            "every guard is load-bearing or a tripwire (core/workers.rs, core/agent.rs `Plants::trip`): not \
             load-bearing {bare:?}, tripwires {tripwires:?}"
        ));
    }
    assert!(
        wrong.is_empty(),
        "the guard table is not the code's any more; measure these rows again (FOREMAN_GUARD=<switch> cargo stest \
         --test sim guards::guard_hunt -- --ignored --nocapture) and update sim/guards.rs and the README:\n{}",
        wrong.join("\n")
    );
}

/// The full hunt (see the module documentation): prints each guard's row as it is measured, then the table. Each
/// guard is hunted in a child process of its own (a simulation leaves a few megabytes behind, and a hunt of 2,000
/// seeds is enough for one process).
#[test]
#[ignore]
fn guard_hunt() {
    let max = env_u64("FOREMAN_GUARD_SEEDS").unwrap_or(HUNT_MAX);
    let jobs = env_u64("MADSIM_TEST_JOBS").unwrap_or(2).clamp(1, 16);
    let only = std::env::var("FOREMAN_GUARD").ok();
    let from = env_u64("FOREMAN_GUARD_FROM").unwrap_or(0);
    let selected = TABLE.iter().filter(|g| only.as_deref().is_none_or(|o| o.split(',').any(|o| o == g.switch.name())));
    if std::env::var_os("FOREMAN_GUARD_CHILD").is_some() {
        for g in selected {
            println!("guard-row {}", hunt_row(g, from, max, jobs));
        }
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let mut rows = vec![];
    for g in selected {
        let out = std::process::Command::new(&exe)
            .args(["guards::guard_hunt", "--ignored", "--exact", "--nocapture", "--test-threads=1"])
            .env("FOREMAN_GUARD_CHILD", "1")
            .env("FOREMAN_GUARD", g.switch.name())
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("the hunt's child process");
        let text = String::from_utf8_lossy(&out.stdout);
        let row = text.lines().find_map(|l| l.find("guard-row ").map(|at| l[at + "guard-row ".len()..].to_owned()));
        let r =
            row.unwrap_or_else(|| row_of(g, &format!("the hunt's child ended without a row ({})", out.status), "—"));
        eprintln!("{r}");
        rows.push(r);
    }
    eprintln!("\n{HEADER}");
    for r in &rows {
        eprintln!("{r}");
    }
}

/// Hunts guard `g` over the seeds `from..max` and makes its row.
fn hunt_row(g: &Guard, from: u64, max: u64, jobs: u64) -> String {
    let only = only_from_env();
    match hunt(g.switch, from, max, jobs, only) {
        None if only.is_some() => row_of(g, &format!("not caught in the admitted seeds of {max}"), "—"),
        None => row_of(g, &format!("not caught in {max}"), "—"),
        Some((n, f)) => {
            let seed = BASE + n - 1;
            let alone = match run(seed, None) {
                Ok(()) => String::new(),
                Err(e) => format!(" (FAILS WITHOUT THE SWITCH TOO: {e})"),
            };
            eprintln!("guard {}: seed {seed}: {f}", g.switch.name());
            row_of(g, &format!("{n}{alone}"), &fired(&f))
        }
    }
}

/// Every node of a simulated cluster has its tripwires armed (the three guards held unreachable stop the node if
/// they are ever reached), and arming plants no bug: the rows above that say "a tripwire" rely on it.
#[madsim::test]
async fn every_node_of_a_cluster_arms_its_tripwires() {
    announce("every_node_of_a_cluster_arms_its_tripwires");
    let c = Cluster::start_with(2, 2, None).await;
    c.settle(std::time::Duration::from_secs(5)).await;
    for m in &c.masters {
        let plants = m.current.lock().unwrap().as_ref().map(|m| m.plants()).expect("the master runs");
        assert!(plants.tripwires(), "{}: tripwires not armed", m.name);
        assert_eq!(plants.list().count(), 0, "{}: a bug planted", m.name);
    }
    for e in &c.executors {
        let plants = e.current.lock().unwrap().as_ref().map(|e| e.plants()).expect("the executor runs");
        assert!(plants.tripwires(), "{}: tripwires not armed", e.name);
        assert_eq!(plants.list().count(), 0, "{}: a bug planted", e.name);
    }
}
