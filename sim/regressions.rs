//! Seeds that once failed, with what they exposed, replayed on every run (design.md §8). A seed replays the same
//! run only while the scenario draws the same way, so each entry names the scenario it belongs to; when a
//! scenario's drawing changes, its seeds are found again (run many seeds of the old failure's shape) and updated.

use crate::harness::{panic_text, run_seed};
use crate::swarm::swarm_run;

/// (scenario, seed, what it exposed).
const SWARM_SEEDS: &[(u64, &str)] = &[
    (
        1795937081014915470,
        "a job stuck Running forever: its job master's Finished report was taken into the bookkeeping, the write of \
         the transition timed out (etcd request time-out), the job was reloaded from the metastore, and the \
         report's retry was acknowledged as a repeat without moving the job (fixed: an accepted message of the \
         current incarnation re-applies what the job missed)",
    ),
    (
        1795937081014915520,
        "a detection 0.4 s past TTL + check interval: leader checks ran every interval *after* the previous check's \
         write, so slow writes pushed every later check back (fixed: checks keep their cadence from their start)",
    ),
    (
        1795937081014915425,
        "a detection past TTL + check interval while the leader held evictions (both executors killed at once): \
         the checker now knows the documented suspect hold (EvictionsHeld observation)",
    ),
    (
        1795938750227560956,
        "an executor declared offline by a leader whose write then failed (every master cut from etcd) was reported \
         offline although the next leader rightly found it registered and placed on it (fixed: offline verdicts are \
         reported once durable)",
    ),
    (
        1795938750227562002,
        "a job stuck Canceling forever: its job master's Finished report was taken into the bookkeeping, the write \
         failed (every master cut from etcd), the job master fenced itself before any retry got through, and the \
         bookkeeping's exited entry never expired (fixed: an exit whose write failed is forgotten, so a silent job \
         master is lost after its TTL)",
    ),
    (
        1795938750227574478,
        "a dirty read: GetJob answered a job master's exit (Finished) decided in memory while its write was under \
         way; the write failed (etcd time-out), the job was reloaded as Running, and the client that had seen it \
         end could not delete it (fixed: job reads wait for the write under way)",
    ),
];

#[test]
fn swarm_regression_seeds_pass() {
    for (seed, what) in SWARM_SEEDS {
        if let Err(p) = run_seed(*seed, || Box::pin(swarm_run())) {
            panic!(
                "regression seed {seed} fails again ({what}): {}\nreplay: MADSIM_TEST_SEED={seed} cargo stest --test sim \
                 swarm -- --nocapture",
                panic_text(&*p)
            );
        }
    }
}
