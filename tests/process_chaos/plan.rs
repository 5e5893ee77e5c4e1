//! The chaos plan: what the seed draws (the workload, the control-plane episodes, the executor faults), and how it
//! is printed.

use std::time::Duration;

use foreman::core::rng::{Rng, SplitMix64};

use crate::{secs, ETCD_MEMBERS, EXECUTORS};

/// The workload: this many fake jobs, the first [`JOBS_BEFORE`] created before the nemesis starts, the others
/// during it; [`CANCELS`] of them canceled a few seconds after their creation.
const JOBS: usize = 10;
const JOBS_BEFORE: usize = 4;
const CANCELS: usize = 2;
/// Each fake job's step; its target makes it run 10–25 s undisturbed.
const TICK_MS: u64 = 100;
/// The control track's episodes: three leader kills, one etcd member restart, and this many more drawn.
const CONTROL_DRAWN: usize = 2;
/// Executor faults start within this long of the nemesis' start (and last at most 9.5 s).
const EXECUTOR_WINDOW: Duration = Duration::from_secs(50);
/// Jobs are created within this long of the nemesis' start.
const CREATE_WINDOW: Duration = Duration::from_secs(40);

/// One episode of the control track: masters and etcd, one at a time.
#[derive(Clone, Debug)]
pub enum ControlEpisode {
    /// SIGKILL the leader, measure the failover, restart it `down` after the new leader was named.
    KillLeader { down: Duration },
    /// SIGKILL a follower (the `pick`-th, modulo), restart it after `down`.
    KillFollower { pick: u64, down: Duration },
    /// SIGSTOP the leader or a follower (the `pick`-th), SIGCONT it after `paused`.
    PauseMaster { leader: bool, pick: u64, paused: Duration },
    /// SIGKILL etcd member `member`, start it again on the same data after `down`.
    RestartEtcd { member: usize, down: Duration },
}

/// One action of the executor track.
#[derive(Clone, Copy, Debug)]
pub enum ExecutorAction {
    Kill(usize),
    Restart(usize),
    Pause(usize),
    Resume(usize),
}

/// One fake job of the workload.
#[derive(Clone, Debug)]
pub struct JobPlan {
    pub id: String,
    pub workers: u32,
    pub target: u64,
    /// From the nemesis' start (the first jobs: before it).
    pub create_at: Duration,
    pub cancel_at: Option<Duration>,
}

impl JobPlan {
    pub fn config(&self) -> String {
        format!(r#"{{"workers":{},"target":{},"tick_ms":{TICK_MS}}}"#, self.workers, self.target)
    }
}

#[derive(Debug)]
pub struct Plan {
    /// Each episode with the pause before it.
    pub control: Vec<(Duration, ControlEpisode)>,
    /// Sorted by time from the nemesis' start; every fault is followed by its repair.
    pub executor: Vec<(Duration, ExecutorAction)>,
    pub jobs: Vec<JobPlan>,
}

fn between(rng: &mut SplitMix64, low_ms: u64, high_ms: u64) -> Duration {
    Duration::from_millis(low_ms + rng.below(high_ms - low_ms + 1))
}

impl Plan {
    pub fn draw(seed: u64) -> Plan {
        let mut rng = SplitMix64::new(seed);
        let kill_leader = |rng: &mut SplitMix64| ControlEpisode::KillLeader { down: between(rng, 500, 2500) };
        let mut episodes = vec![kill_leader(&mut rng), kill_leader(&mut rng), kill_leader(&mut rng)];
        episodes.push(ControlEpisode::RestartEtcd {
            member: rng.below(ETCD_MEMBERS as u64) as usize,
            down: between(&mut rng, 1000, 3000),
        });
        for _ in 0..CONTROL_DRAWN {
            // Weights: leader kill 2, master pause 2 (the leader two times in three), follower kill 1.
            episodes.push(match rng.below(5) {
                0 | 1 => kill_leader(&mut rng),
                2 | 3 => ControlEpisode::PauseMaster {
                    leader: rng.below(3) < 2,
                    pick: rng.next_u64(),
                    paused: between(&mut rng, 1000, 5000),
                },
                _ => ControlEpisode::KillFollower { pick: rng.next_u64(), down: between(&mut rng, 1000, 4000) },
            });
        }
        for i in (1..episodes.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            episodes.swap(i, j);
        }
        let control = episodes.into_iter().map(|e| (between(&mut rng, 1000, 2500), e)).collect();

        // Executor faults: kills (down 1–8 s) and pauses (1.5–9.5 s: shorter than the self-fence, between it and
        // the offline TTL, or past it), on an executor that is not faulted, at most two faulted at once.
        let mut executor = vec![];
        let mut busy_until = [Duration::ZERO; EXECUTORS];
        let mut t = between(&mut rng, 1000, 4000);
        while t < EXECUTOR_WINDOW {
            let faulted = busy_until.iter().filter(|b| **b > t).count();
            let free: Vec<usize> = (0..EXECUTORS).filter(|e| busy_until[*e] <= t).collect();
            if faulted < 2 && !free.is_empty() {
                let e = free[rng.below(free.len() as u64) as usize];
                let (fault, repair, lasts) = if rng.below(2) == 0 {
                    (ExecutorAction::Kill(e), ExecutorAction::Restart(e), between(&mut rng, 1000, 8000))
                } else {
                    (ExecutorAction::Pause(e), ExecutorAction::Resume(e), between(&mut rng, 1500, 9500))
                };
                executor.push((t, fault));
                executor.push((t + lasts, repair));
                busy_until[e] = t + lasts + Duration::from_secs(1);
            }
            t += between(&mut rng, 2000, 7000);
        }
        executor.sort_by_key(|(at, _)| *at);

        let mut jobs: Vec<JobPlan> = (0..JOBS)
            .map(|k| JobPlan {
                id: String::new(),
                workers: 2 + rng.below(2) as u32,
                target: 100 + rng.below(151),
                create_at: if k < JOBS_BEFORE {
                    Duration::ZERO
                } else {
                    between(&mut rng, 2000, CREATE_WINDOW.as_millis() as u64)
                },
                cancel_at: None,
            })
            .collect();
        jobs.sort_by_key(|j| j.create_at);
        for (k, j) in jobs.iter_mut().enumerate() {
            j.id = format!("chaos-{k}");
        }
        let mut canceled = 0;
        while canceled < CANCELS {
            let j = &mut jobs[rng.below(JOBS as u64) as usize];
            if j.cancel_at.is_none() {
                j.cancel_at = Some(j.create_at + between(&mut rng, 3000, 8000));
                canceled += 1;
            }
        }
        Plan { control, executor, jobs }
    }

    pub fn print(&self, seed: u64) {
        eprintln!(
            "seed {seed} (replay: FOREMAN_CHAOS_SEED={seed} cargo test --test process_chaos -- --ignored --nocapture)"
        );
        eprintln!("plan, control track (one episode at a time, each after a pause):");
        for (gap, e) in &self.control {
            eprintln!("  after {}: {e:?}", secs(*gap));
        }
        eprintln!("plan, executor track (times from the nemesis' start):");
        for (at, a) in &self.executor {
            eprintln!("  {}: {a:?}", secs(*at));
        }
        eprintln!("plan, workload (times from the nemesis' start; tick {TICK_MS} ms):");
        for j in &self.jobs {
            let cancel = j.cancel_at.map_or(String::new(), |c| format!(", cancel at {}", secs(c)));
            eprintln!("  {}: create at {} {}{cancel}", j.id, secs(j.create_at), j.config());
        }
    }
}
