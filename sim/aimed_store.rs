//! The fences of a job's own data made the last line of defence (design.md §8): a worker's job-store writes
//! compare its worker record (framework/store.rs, switch `store-unguarded`), and a job master's status writes
//! compare its job-master record (framework/job_master.rs `maybe_store_status`, switch `status-unguarded`).
//!
//! What hides them elsewhere is what hides the checkpoint guard (`sim/aimed_worker.rs`): a write leaves only while
//! its writer runs, a writer runs only until its self-fence, its successor starts only after that, and the write
//! reaches etcd within milliseconds. The writes in flight ([`foreman::buggify::Latency::set_in_flight`]) take that
//! away: sent into a cut, they land when it has healed, long after their writer stopped. And the swarm's only job
//! type writes no job store, while its status writes are judged by no checker there.
//!
//! Both scenarios run a job type of their own, `tally`, whose worker `wI` counts to a target, putting each next count
//! under `count/wI` in the job store before the checkpoint that acknowledges it: once the job finished, every
//! worker's stored count is its target (rule 2 seen in the store, [`Rule::StoreForward`]), and the job's stored
//! status is its last incarnation's final one ([`Rule::StatusFinal`]).

use std::collections::BTreeMap;
use std::time::Duration;

use foreman::core::invariants::{Id, Rule, Violation};
use foreman::core::job_status::{JobMasterState, StoredStatus};
use foreman::framework::api::*;
use foreman::meta::keys;
use foreman::planted::Planted;
use foreman::rpc::pb;
use madsim::rand::Rng;
use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, Tasks};
use crate::fake_jobs::{create_job, leader, live_tasks, stored_under};
use crate::harness::{announce, require};
use crate::master_failover::{await_job, check_safety, on_client, terminal};

const JOB: &str = "tally-0";
const WORKERS: u32 = 2;
const TARGET: u64 = 100;

fn millis(lo: u64, hi: u64) -> Duration {
    Duration::from_millis(madsim::rand::thread_rng().gen_range(lo..=hi))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TallyConfig {
    workers: u32,
    target: u64,
    tick_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Share {
    target: u64,
    tick_ms: u64,
}

/// A worker's count (a checkpoint is a JSON object).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Count {
    n: u64,
}

struct TallyLogic {
    config: TallyConfig,
    done: Vec<bool>,
}

impl JobLogic for TallyLogic {
    type Config = TallyConfig;
    type WorkerConfig = Share;
    type Checkpoint = Count;

    fn recover(config: TallyConfig, checkpoints: &BTreeMap<WorkerName, Count>) -> TallyLogic {
        let done = (0..config.workers)
            .map(|i| checkpoints.get(&WorkerName::indexed(i)).is_some_and(|c| c.n >= config.target))
            .collect();
        TallyLogic { config, done }
    }

    fn wanted(&self) -> Vec<WorkerName> {
        (0..self.config.workers).filter(|&i| !self.done[i as usize]).map(WorkerName::indexed).collect()
    }

    fn worker(&self, _: &WorkerName) -> Option<WorkerSpec<Share>> {
        Some(WorkerSpec::new(Share { target: self.config.target, tick_ms: self.config.tick_ms }))
    }

    fn on_event(&mut self, _: Time, event: WorkerEvent<'_, Count>) {
        if let WorkerEvent::Finished { name } = event {
            if let Some(done) = name.index().and_then(|i| self.done.get_mut(i as usize)) {
                *done = true;
            }
        }
    }

    fn verdict(&self) -> Verdict {
        if self.done.iter().all(|d| *d) {
            Verdict::Finished
        } else {
            Verdict::Running
        }
    }

    fn progress(&self, _: &dyn LiveProgress) -> String {
        format!("{}/{} workers done", self.done.iter().filter(|d| **d).count(), self.done.len())
    }
}

struct Tally;

impl JobType for Tally {
    const NAME: &'static str = "tally";
    type Config = TallyConfig;
    type WorkerConfig = Share;
    type Checkpoint = Count;
    type Logic = TallyLogic;

    fn parse_config(config: &[u8]) -> Result<TallyConfig, ConfigProblem> {
        serde_json::from_slice(config).map_err(|e| ConfigProblem::of_json(&e, r#"{"workers": 2, "target": 100, ...}"#))
    }

    async fn work(&self, share: Share, ctx: &mut WorkerCtx<Count>) -> Result<WorkerEnd, Interrupted> {
        let mut n = ctx.restored().map_or(0, |c| c.n);
        loop {
            ctx.progress(format!("{n}/{}", share.target));
            if ctx.is_canceled() {
                return Ok(WorkerEnd::Canceled);
            }
            if n >= share.target {
                return Ok(WorkerEnd::Finished);
            }
            if ctx.is_draining() {
                return Ok(WorkerEnd::Drained);
            }
            if ctx.pause(Duration::from_millis(share.tick_ms)).await == Paused::Interrupted {
                continue;
            }
            // The count in the store first, then the checkpoint that acknowledges it.
            let key = format!("count/{}", ctx.name());
            if ctx.store().put(&key, (n + 1).to_string().as_bytes()).await? != Saved::Yes {
                continue;
            }
            if ctx.try_save(&Count { n: n + 1 }).await? == Saved::Yes {
                n += 1;
            }
        }
    }
}

/// A cluster of two masters and four executors running `tally` jobs.
async fn cluster(planted: Option<Planted>) -> Cluster {
    let types = JobTypes::new().with(Tally).expect("one job type");
    Cluster::build(2, 4, Tasks::Types(types), planted).await
}

async fn create(c: &Cluster) {
    let config = TallyConfig { workers: WORKERS, target: TARGET, tick_ms: 150 };
    let config = serde_json::to_vec(&config).expect("a config serializes");
    let job = pb::Job { id: JOB.into(), r#type: "tally".into(), config, ..Default::default() };
    assert!(on_client(c, create_job(c.masters.len(), job)).await, "create {JOB}");
}

/// The executors (by index) running `kind` of [`JOB`]'s tasks (its workers, or its job master).
fn hosts(c: &Cluster, workers: bool) -> Vec<usize> {
    let live = live_tasks(c);
    (0..c.executors.len())
        .filter(|i| {
            live.get(&c.executors[*i].name).is_some_and(|tasks| {
                tasks.iter().any(|t| {
                    t.is_worker() == workers && (t.as_str() == JOB || t.as_str().starts_with(&format!("{JOB}/")))
                })
            })
        })
        .collect()
}

/// Cuts executor `victim` from every other node for 15 s with the metastore writes it sends landing 32 to 45 s
/// after they left; returns once the last of them has landed (past the executor's self-fence and its tasks'
/// offline TTL: their successors run elsewhere by then).
pub(crate) async fn cut_with_writes_in_flight(c: &Cluster, victim: usize) {
    let id = c.executors[victim].node.id();
    let others: Vec<_> = c
        .masters
        .iter()
        .map(|m| m.node.id())
        .chain(c.executors.iter().map(|e| e.node.id()).filter(|o| *o != id))
        .chain([c.etcd.id()])
        .collect();
    let in_flight = millis(32_000, 45_000);
    c.executors[victim].points.latency().set_in_flight(in_flight);
    for o in &others {
        c.net().clog_link(id, *o);
        c.net().clog_link(*o, id);
    }
    // Past the executor's self-fence and its tasks' offline TTL: their successors run elsewhere by then.
    let cut = Duration::from_secs(15);
    tokio::time::sleep(cut).await;
    c.executors[victim].points.latency().set_in_flight(Duration::ZERO);
    for o in &others {
        c.net().unclog_link(id, *o);
        c.net().unclog_link(*o, id);
    }
    tokio::time::sleep(in_flight - cut + Duration::from_secs(8)).await;
}

/// Waits for [`JOB`] to finish, then judges its store and its stored status, then every rule.
async fn finish_and_judge(c: &Cluster) {
    let (ended, job) = await_job(c, JOB, Duration::from_secs(120), terminal).await;
    require(ended && job.state == pb::JobState::Finished as i32, || {
        Violation::new(Rule::JobEnds, c.clock.now(), format!("{JOB} did not finish: {job:?}"))
            .with([Id::Job(JOB.into())])
    });
    let stored = stored_under(c, &keys::job_store_prefix(JOB)).await;
    for i in 0..WORKERS {
        let key = keys::job_store(JOB, &format!("count/w{i}"));
        let got = stored.get(&key).map(|v| String::from_utf8_lossy(v).into_owned());
        require(got.as_deref() == Some(TARGET.to_string().as_str()), || {
            let detail = format!("{key} holds {got:?} after {JOB} finished; its worker counted to {TARGET}");
            Violation::new(Rule::StoreForward, c.clock.now(), detail)
                .with([Id::Job(JOB.into()), Id::Task(format!("{JOB}/w{i}"))])
        });
    }
    let status = stored_under(c, &keys::job_status(JOB)).await;
    let stored = status.get(&keys::job_status(JOB)).and_then(|v| serde_json::from_slice::<StoredStatus>(v).ok());
    let state = stored.as_ref().map(|s| (s.epoch, s.status.state));
    require(state.is_some_and(|(_, s)| s == JobMasterState::Finished), || {
        let detail = format!("{JOB} finished but its stored status is (epoch, state) {state:?}");
        Violation::new(Rule::StatusFinal, c.clock.now(), detail).with([Id::Job(JOB.into())])
    });
    check_safety(c);
}

/// A worker's job-store writes, in flight from an executor cut from everything, land after its successor
/// finished the job: the worker record refuses each (rule 2), or the stored count ends below the target.
pub async fn store_writes_arrive_after_their_successor_finished_run(planted: Option<Planted>) {
    let c = cluster(planted).await;
    leader(&c).await;
    create(&c).await;
    // The workers start once the job master placed them, and count for a while.
    tokio::time::sleep(millis(3_000, 6_000)).await;
    let jm = hosts(&c, false);
    let workers: Vec<_> = hosts(&c, true).into_iter().filter(|w| !jm.contains(w)).collect();
    if let Some(&victim) = workers.get(madsim::rand::thread_rng().gen_range(0..workers.len().max(1))) {
        cut_with_writes_in_flight(&c, victim).await;
    }
    finish_and_judge(&c).await;
}

#[madsim::test]
async fn store_writes_arrive_after_their_successor_finished() {
    announce("store_writes_arrive_after_their_successor_finished");
    store_writes_arrive_after_their_successor_finished_run(None).await;
}

/// A job master's status writes, in flight from an executor cut from everything, land after its successor
/// finished the job and stored the final status: the job-master record refuses each (rule 2), or the stored
/// status goes back to a running one.
pub async fn status_writes_arrive_after_their_successor_finished_run(planted: Option<Planted>) {
    let c = cluster(planted).await;
    leader(&c).await;
    create(&c).await;
    tokio::time::sleep(millis(3_000, 6_000)).await;
    if let Some(&victim) = hosts(&c, false).first() {
        cut_with_writes_in_flight(&c, victim).await;
    }
    finish_and_judge(&c).await;
}

#[madsim::test]
async fn status_writes_arrive_after_their_successor_finished() {
    announce("status_writes_arrive_after_their_successor_finished");
    status_writes_arrive_after_their_successor_finished_run(None).await;
}
