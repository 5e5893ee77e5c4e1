//! Goal (issue 14, item 4): a job type's workers are placed by their own selectors and their job's together, and a
//! worker no executor can take says why in its job's progress.
//!
//! Method: a job type of the test's own, `zoned`, whose worker `wI` asks for the zone its configuration names at
//! `I` (`{"zones": ["a", "b"]}`) and finishes at once; three executors, two in zone `a`, one in zone `b`. A job
//! over zones `a`, `b`, `a` finishes with each worker started in its zone; a job over `a` and `nowhere` starts `w0`
//! and shows `w1 not placed: ...` naming the selector, until canceled; a job whose own selector (`zone=a`)
//! contradicts its worker's (`zone=b`) shows the worker unplaced too.

use std::collections::BTreeMap;
use std::time::Duration;

use foreman::executor::ExecutorObservation;
use foreman::framework::api::*;
use foreman::rpc::pb;
use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, Seen, Spec, Tasks};
use crate::fake_jobs::{create_job, leader};
use crate::harness::announce;
use crate::master_failover::{await_job, on_client, terminal, with_jobs};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ZonedConfig {
    zones: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Nothing {}

struct ZonedLogic {
    zones: Vec<String>,
    done: Vec<bool>,
}

impl JobLogic for ZonedLogic {
    type Config = ZonedConfig;
    type WorkerConfig = ();
    type Checkpoint = Nothing;

    fn recover(config: ZonedConfig, _: &BTreeMap<WorkerName, Nothing>) -> ZonedLogic {
        ZonedLogic { done: vec![false; config.zones.len()], zones: config.zones }
    }

    fn wanted(&self) -> Vec<WorkerName> {
        (0..self.zones.len() as u32).filter(|&i| !self.done[i as usize]).map(WorkerName::indexed).collect()
    }

    fn worker(&self, name: &WorkerName) -> Option<WorkerSpec<()>> {
        let zone = self.zones.get(name.index()? as usize)?;
        let selectors = vec![Selector::parse(&format!("zone={zone}")).ok()?];
        Some(WorkerSpec { selectors, ..WorkerSpec::new(()) })
    }

    fn on_event(&mut self, _: Time, event: WorkerEvent<'_, Nothing>) {
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

struct Zoned;

impl JobType for Zoned {
    const NAME: &'static str = "zoned";
    type Config = ZonedConfig;
    type WorkerConfig = ();
    type Checkpoint = Nothing;
    type Logic = ZonedLogic;

    fn parse_config(config: &[u8]) -> Result<ZonedConfig, ConfigProblem> {
        serde_json::from_slice(config).map_err(|e| ConfigProblem::of_json(&e, r#"{"zones": ["a", ...]}"#))
    }

    async fn work(&self, _: (), _: &mut WorkerCtx<Nothing>) -> Result<WorkerEnd, Interrupted> {
        Ok(WorkerEnd::Finished)
    }
}

const ZONES: [&str; 3] = ["a", "a", "b"];

async fn cluster() -> Cluster {
    let executors = (0..3)
        .map(|i| {
            let mut e = crate::cluster::executor_config(i, 1);
            e.labels.insert("zone".into(), ZONES[i].into());
            e
        })
        .collect();
    let types = JobTypes::new().with(Zoned).expect("one job type");
    let spec = Spec {
        masters: vec![crate::cluster::master_config(0)],
        executors,
        tasks: Tasks::Types(types),
        planted: Default::default(),
        etcd_timeout_rate: 0.0,
    };
    Cluster::build_spec(spec).await
}

async fn create(c: &Cluster, id: &str, zones: &[&str], selectors: Vec<pb::Selector>) {
    let config = serde_json::to_vec(&serde_json::json!({ "zones": zones })).unwrap();
    let job = pb::Job { id: id.into(), r#type: "zoned".into(), config, selectors, ..Default::default() };
    assert!(on_client(c, create_job(1, job)).await, "create {id}");
}

/// Polls job `id` until its progress contains `want`; returns the progress.
async fn progress_saying(c: &Cluster, id: &str, want: &str) -> String {
    let (id, want) = (id.to_owned(), want.to_owned());
    on_client(c, async move {
        let mut last = String::new();
        for _ in 0..60 {
            let j = id.clone();
            let got = with_jobs(1, Duration::from_secs(10), move |mut client| {
                let id = j.clone();
                async move { client.get_job(pb::GetJobRequest { id, include_config: false }).await }
            })
            .await
            .expect("get the job")
            .into_inner();
            if got.progress.contains(&want) {
                return got.progress;
            }
            last = got.progress;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("job {id}'s progress never said {want:?}; last: {last:?}")
    })
    .await
}

async fn cancel(c: &Cluster, id: &str) {
    let id = id.to_owned();
    on_client(c, async move {
        with_jobs(1, Duration::from_secs(10), move |mut client| {
            let id = id.clone();
            async move { client.cancel_job(pb::CancelJobRequest { id }).await }
        })
        .await
        .expect("cancel")
    })
    .await;
}

#[madsim::test]
async fn workers_are_placed_by_their_own_selectors_and_say_why_not() {
    announce("workers_are_placed_by_their_own_selectors_and_say_why_not");
    let c = cluster().await;
    leader(&c).await;
    create(&c, "placed", &["a", "b", "a"], vec![]).await;
    let (ended, job) = await_job(&c, "placed", Duration::from_secs(60), terminal).await;
    assert!(ended && job.state == pb::JobState::Finished as i32, "{job:?}");
    // Each worker started in its zone (node executor-I is in ZONES[I]).
    let mut started = BTreeMap::new();
    for (_, node, seen) in c.recorder.events() {
        if let Seen::Exec(ExecutorObservation::TaskStarted { task, .. }) = seen {
            if let Some(w) = task.as_str().strip_prefix("placed/") {
                let i: usize = node.strip_prefix("executor-").and_then(|i| i.parse().ok()).expect("an executor node");
                started.insert(w.to_owned(), ZONES[i]);
            }
        }
    }
    let want: BTreeMap<String, &str> = [("w0", "a"), ("w1", "b"), ("w2", "a")].map(|(w, z)| (w.into(), z)).into();
    assert_eq!(started, want, "where each worker started");

    create(&c, "stuck", &["a", "nowhere"], vec![]).await;
    let progress = progress_saying(&c, "stuck", "w1 not placed").await;
    assert!(progress.starts_with("1/2 workers done; w1 not placed: no executor matches zone=nowhere"), "{progress}");
    cancel(&c, "stuck").await;
    let (ended, job) = await_job(&c, "stuck", Duration::from_secs(60), terminal).await;
    assert!(ended && job.state == pb::JobState::Canceled as i32, "{job:?}");

    // The job's own selector and its worker's, together, match no executor.
    let zone_a = pb::Selector { key: "zone".into(), target: "a".into(), op: pb::SelectorOp::Eq as i32 };
    create(&c, "contradicts", &["b"], vec![zone_a]).await;
    let progress = progress_saying(&c, "contradicts", "w0 not placed").await;
    assert!(progress.starts_with("0/1 workers done; w0 not placed: "), "{progress}");
    cancel(&c, "contradicts").await;
    crate::master_failover::check_safety(&c);
}
