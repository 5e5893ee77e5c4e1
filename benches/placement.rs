//! Placement throughput of the core (design.md §9 target: ≥ 100,000 decisions/s on one core with 1,000
//! executors, selectors and capacity).
//!
//! Run with `cargo bench --bench placement`. Prints decisions per second for each request mix and strategy.
//! Each decision reserves capacity; the task is released right after, so the cluster stays at a steady fill
//! that the background "reported" load sets, and every decision scans the same-sized candidate sets.

use std::hint::black_box;
use std::time::Duration;

use foreman::core::ids::{ExecutorId, TaskId};
use foreman::core::labels::{Labels, Selector};
use foreman::core::placement::{PlacementPolicy, PlacementRequest, Placer, Strategy};
use foreman::core::rng::{Rng, SplitMix64};
use foreman::core::time::Time;

const EXECUTORS: u64 = 1_000;
const DECISIONS: usize = 400_000;

fn cluster(strategy: Strategy, rng: &mut SplitMix64) -> Placer {
    let mut p = Placer::new(PlacementPolicy { strategy, reservation_ttl: Duration::from_secs(10) });
    for i in 0..EXECUTORS {
        let mut labels = Labels::new();
        labels.insert("zone".into(), format!("z{}", i % 5));
        labels.insert("rack".into(), format!("r{}", i % 40));
        labels.insert("disk".into(), if i % 3 == 0 { "hdd" } else { "ssd" }.into());
        if i % 10 == 0 {
            labels.insert("gpu".into(), "yes".into());
        }
        let capacity = 8 + rng.below(57) as u32;
        let reported = rng.below(u64::from(capacity) / 2) as u32;
        p.upsert(ExecutorId(i + 1), capacity, &labels, reported);
    }
    p
}

fn bench(name: &str, strategy: Strategy, selectors: &[&str]) {
    let mut rng = SplitMix64::new(42);
    let mut placer = cluster(strategy, &mut rng);
    let selectors: Vec<Selector> = selectors.iter().map(|s| Selector::parse(s).expect("valid selector")).collect();
    let tasks: Vec<TaskId> = (0..1024).map(|i| TaskId::parse(&format!("job-{i}/w")).expect("valid id")).collect();
    let mut placed = 0usize;
    // why: a benchmark measures wall time; nothing here runs in the simulator.
    #[allow(clippy::disallowed_methods)]
    let start = std::time::Instant::now();
    for i in 0..DECISIONS {
        let task = &tasks[i % tasks.len()];
        let cost = 1 + (i % 4) as u32;
        let req = PlacementRequest { task, epoch: None, cost, selectors: &selectors, resources: &[] };
        if let Ok(p) = placer.place(Time::ZERO, &req, &mut rng) {
            placed += 1;
            black_box(p);
        }
        placer.release(task);
    }
    let elapsed = start.elapsed();
    let per_s = DECISIONS as f64 / elapsed.as_secs_f64();
    println!(
        "{name:<34} {:>12.0} decisions/s  {:>7.0} ns/decision  ({placed} of {DECISIONS} placed, {EXECUTORS} executors)",
        per_s,
        elapsed.as_nanos() as f64 / DECISIONS as f64
    );
    placer.check().expect("placer invariants after the run");
}

fn main() {
    println!("placement benchmark: target >= 100000 decisions/s on one core (design.md §9)");
    bench("least-loaded, no selectors", Strategy::LeastLoaded, &[]);
    bench("least-loaded, zone=z1", Strategy::LeastLoaded, &["zone=z1"]);
    bench("least-loaded, zone!=z0 disk=ssd", Strategy::LeastLoaded, &["zone!=z0", "disk=ssd"]);
    bench("least-loaded, rack~^r1[0-9]$ gpu=yes", Strategy::LeastLoaded, &["rack~^r1[0-9]$", "gpu=yes"]);
    bench("bin-pack, no selectors", Strategy::BinPack, &[]);
    bench("bin-pack, zone!=z0 disk=ssd", Strategy::BinPack, &["zone!=z0", "disk=ssd"]);
}
