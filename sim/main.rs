//! foreman's deterministic simulation (design.md §8), compiled only in the simulation build (`cargo stest`).
//!
//! Every test here is a `#[madsim::test]`: one seed draws the whole run (network latency, scheduling, faults),
//! and `MADSIM_TEST_SEED=<seed>` replays it exactly. `MADSIM_TEST_NUM=<n>` runs n consecutive seeds.
#![cfg(madsim)]

mod aimed_exec;
mod aimed_failing;
mod aimed_jm;
mod aimed_late;
mod aimed_leader;
mod aimed_store;
mod aimed_worker;
mod bug_finding;
mod checks;
mod clocks;
mod cluster;
mod coverage;
mod epoch_claims;
mod example_checksum;
mod exec_jobs;
mod executor_node;
mod fake_jobs;
mod faults;
mod framework_link;
mod guards;
mod harness;
mod heartbeat_timing;
mod job_status;
mod last_line;
mod late_faults;
mod leader_route;
mod leak;
mod master_failover;
mod meta_contract;
mod regressions;
mod rogue;
mod shrink;
mod speed;
mod swarm;
mod tombstones;
mod worker_selectors;
mod workloads;
