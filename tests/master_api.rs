//! The master's gRPC API against bad input, and its happy paths: one real `Master` in-process over the embedded
//! metastore, served by tonic on a loopback port, called through the generated clients (production build; no
//! etcd needed).
//!
//! Every refusal is checked three ways: the gRPC code, the stable `foreman-reason` (what clients branch on), and
//! that the message names the field to fix. Every test also checks that a refused call changed nothing: the jobs
//! (with their configurations) and the executors the leader lists are the same before and after.
//!
//! Each test starts its own master on its own embedded store, so the tests share nothing and run in parallel.
#![cfg(not(madsim))]

mod common;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Response, Status};

use foreman::config::MasterConfig;
use foreman::core::ids::JobId;
use foreman::master::{Master, Role};
use foreman::meta::MetaStore;
use foreman::rpc::pb;
use foreman::rpc::pb::discovery_client::DiscoveryClient;
use foreman::rpc::pb::framework_client::FrameworkClient;
use foreman::rpc::pb::job_manager_client::JobManagerClient;
use foreman::rpc::pb::task_scheduler_client::TaskSchedulerClient;
use foreman::rpc::status::{reason_of, Reason};

/// The deadline on every call a test makes: a hang fails the test instead of stalling it.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a fresh master may take to win its (uncontested) election and finish recovery.
const LEAD_DEADLINE: Duration = Duration::from_secs(10);
/// A valid fake-job configuration.
const CONFIG: &str = r#"{"workers": 2, "target": 5, "tick_ms": 10}"#;

/// One master serving on loopback, and clients of it. Dropping it stops the master.
struct TestMaster {
    m: Arc<Master>,
    address: String,
    discovery: DiscoveryClient<Channel>,
    jobs: JobManagerClient<Channel>,
    scheduler: TaskSchedulerClient<Channel>,
    framework: FrameworkClient<Channel>,
    _shutdown: oneshot::Sender<()>,
}

/// What a refused call must leave as it was: every job (with its configuration, without why it waits: that is the
/// leader's live view, which changes as it tries to place the job) and every executor (without the heartbeat age,
/// which moves with time).
#[derive(Debug, PartialEq)]
struct Snapshot {
    jobs: Vec<pb::Job>,
    executors: Vec<pb::Executor>,
}

impl TestMaster {
    /// Starts a master named `m-<name>` over the embedded store of cluster `test-<name>` and waits until it leads
    /// and serves.
    async fn start(name: &str) -> TestMaster {
        let store = MetaStore::embedded(&format!("test-{name}"), None).expect("an embedded store");
        TestMaster::start_on(name, store).await
    }

    /// The same over `store` (of cluster `test-<name>`), which other masters may have used before.
    async fn start_on(name: &str, store: MetaStore) -> TestMaster {
        let t = TestMaster::join(name, name, store).await;
        t.wait_until_leading().await;
        t
    }

    /// Starts master `m-<name>` of cluster `test-<cluster>` over `store` (a clone of another master's store makes
    /// the two masters of one cluster), without waiting for anything.
    async fn join(name: &str, cluster: &str, store: MetaStore) -> TestMaster {
        // Bound before the master is configured: the port is ours, no race with other tests.
        let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).expect("bind a loopback port");
        let address = incoming.local_addr().expect("bound address").to_string();
        let mut cfg = MasterConfig {
            name: format!("m-{name}"),
            addr: address.clone(),
            cluster: format!("test-{cluster}"),
            election: common::short_election(),
            ..MasterConfig::default()
        };
        cfg.fill_derived();
        let warnings = cfg.validate().unwrap_or_else(|e| panic!("the test configuration is refused: {e}"));
        eprintln!("master {name} at {address}; configuration warnings: {warnings:?}");
        let m = Master::new(cfg, store, 7);

        common::serve_grpc(m.clone(), incoming);
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(m.clone().run(async move {
            let _ = rx.await;
        }));

        let channel = Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CALL_TIMEOUT)
            .connect_lazy();
        TestMaster {
            m,
            address,
            discovery: DiscoveryClient::new(channel.clone()),
            jobs: JobManagerClient::new(channel.clone()),
            scheduler: TaskSchedulerClient::new(channel.clone()),
            framework: FrameworkClient::new(channel),
            _shutdown: tx,
        }
    }

    /// Polls `GetLeader` until it names this master and the master serves leader-only calls (recovery done).
    async fn wait_until_leading(&self) -> pb::GetLeaderResponse {
        let started = tokio::time::Instant::now();
        loop {
            let last = match self.discovery.clone().get_leader(pb::GetLeaderRequest {}).await {
                Ok(r) => {
                    let r = r.into_inner();
                    if r.name == self.m.name() && matches!(self.m.role(), Role::Leader(_)) {
                        return r;
                    }
                    format!("{r:?}, role {:?}", self.m.role())
                }
                Err(s) => format!("{s:?}"),
            };
            assert!(
                started.elapsed() < LEAD_DEADLINE,
                "{} did not lead within {LEAD_DEADLINE:?}: {last}",
                self.m.name()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn snapshot(&self) -> Snapshot {
        let mut jobs = vec![];
        let mut token = String::new();
        loop {
            let page = self
                .jobs
                .clone()
                .list_jobs(pb::ListJobsRequest {
                    page_size: 1000,
                    page_token: token,
                    include_config: true,
                    ..Default::default()
                })
                .await
                .expect("ListJobs")
                .into_inner();
            jobs.extend(page.jobs.into_iter().map(|j| pb::Job { waiting: String::new(), ..j }));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let mut executors = self
            .discovery
            .clone()
            .list_executors(pb::ListExecutorsRequest {})
            .await
            .expect("ListExecutors")
            .into_inner();
        for e in &mut executors.executors {
            e.last_heartbeat_age_ms = 0;
        }
        Snapshot { jobs, executors: executors.executors }
    }

    async fn create(&self, job: pb::Job) -> Result<pb::Job, Status> {
        self.jobs
            .clone()
            .create_job(pb::CreateJobRequest { job: Some(job), request_id: String::new() })
            .await
            .map(Response::into_inner)
    }

    async fn get(&self, id: &str, include_config: bool) -> Result<pb::Job, Status> {
        self.jobs.clone().get_job(pb::GetJobRequest { id: id.into(), include_config }).await.map(Response::into_inner)
    }

    async fn list(&self, req: pb::ListJobsRequest) -> Result<pb::ListJobsResponse, Status> {
        self.jobs.clone().list_jobs(req).await.map(Response::into_inner)
    }

    async fn register(&self, name: &str, capacity: u32, labels: &[(&str, &str)]) -> Result<u64, Status> {
        let req = pb::RegisterExecutorRequest {
            name: name.into(),
            address: "127.0.0.1:1".into(),
            capacity,
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            instance: 0,
        };
        self.discovery.clone().register_executor(req).await.map(|r| r.into_inner().executor_id)
    }

    async fn heartbeat(&self, executor_id: u64, leader_epoch: u64) -> Result<pb::HeartbeatResponse, Status> {
        let req = pb::HeartbeatRequest { executor_id, leader_epoch, ..Default::default() };
        self.discovery.clone().heartbeat(req).await.map(Response::into_inner)
    }
}

/// A fake job with `id` (empty: generated).
fn fake_job(id: &str) -> pb::Job {
    pb::Job { id: id.into(), r#type: "fake".into(), config: CONFIG.as_bytes().to_vec(), ..Default::default() }
}

fn selector(key: &str, op: i32, target: &str) -> pb::Selector {
    pb::Selector { key: key.into(), target: target.into(), op }
}

/// Asserts that `result` is a refusal with `code`, `reason`, and a message that names `field`.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(what: &str, result: Result<T, Status>, code: Code, reason: Reason, field: &str) {
    let status = match result {
        Ok(v) => panic!("{what}: expected {code:?}/{reason}, got a success: {v:?}"),
        Err(s) => s,
    };
    assert_eq!(status.code(), code, "{what}: {status:?}");
    assert_eq!(reason_of(&status), Some(reason), "{what}: {status:?}");
    assert!(status.message().contains(field), "{what}: the message does not name {field:?}: {:?}", status.message());
}

/// Asserts an `INVALID_ARGUMENT` whose message starts with the field's name (`job.config.workers: ...`).
#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(what: &str, result: Result<T, Status>, field: &str) {
    let status = match result {
        Ok(v) => panic!("{what}: expected INVALID_ARGUMENT on {field}, got a success: {v:?}"),
        Err(s) => s,
    };
    assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    assert_eq!(reason_of(&status), Some(Reason::InvalidArgument), "{what}: {status:?}");
    assert!(
        status.message().starts_with(&format!("{field}: ")),
        "{what}: the message does not start with the field {field:?}: {:?}",
        status.message()
    );
}

#[tokio::test]
async fn create_job_refuses_bad_input_and_changes_nothing() {
    let t = TestMaster::start("create-refusals").await;
    t.create(fake_job("keep")).await.expect("a valid job");
    let before = t.snapshot().await;

    let with = |f: &dyn Fn(&mut pb::Job)| {
        let mut j = fake_job("");
        f(&mut j);
        Some(j)
    };
    let mut oversized = br#"{"workers": 1, "target": 1, "tick_ms": 1}"#.to_vec();
    oversized.resize(foreman::jobs::CONFIG_MAX_BYTES + 1, b' ');
    // (what, job, the field the refusal must name)
    let cases: Vec<(&str, Option<pb::Job>, &str)> = vec![
        ("no job at all", None, "job"),
        ("unknown type", with(&|j| j.r#type = "spark".into()), "job.type"),
        ("empty type", with(&|j| j.r#type = String::new()), "job.type"),
        ("id too long", with(&|j| j.id = "a".repeat(JobId::MAX_LEN + 1)), "job.id"),
        ("id with a path", with(&|j| j.id = "../x".into()), "job.id"),
        ("id with a slash", with(&|j| j.id = "a/b".into()), "job.id"),
        ("id with a space", with(&|j| j.id = "a b".into()), "job.id"),
        ("id starting with '-'", with(&|j| j.id = "-a".into()), "job.id"),
        ("id ending with '.'", with(&|j| j.id = "a.".into()), "job.id"),
        ("bad selector regex", with(&|j| j.selectors = vec![selector("zone", 3, "(")]), "job.selectors[0]"),
        ("selector op UNSPECIFIED", with(&|j| j.selectors = vec![selector("zone", 0, "east")]), "job.selectors[0].op"),
        (
            "selector op out of the enum",
            with(&|j| j.selectors = vec![selector("zone", 42, "east")]),
            "job.selectors[0].op",
        ),
        ("selector with an empty key", with(&|j| j.selectors = vec![selector("", 1, "east")]), "job.selectors[0]"),
        (
            "second selector bad",
            with(&|j| j.selectors = vec![selector("zone", 1, "east"), selector("disk", 1, "a b")]),
            "job.selectors[1]",
        ),
        ("33 selectors", with(&|j| j.selectors = vec![selector("zone", 1, "east"); 33]), "job.selectors"),
        ("oversized config", with(&|j| j.config = oversized.clone()), "job.config"),
        ("malformed config", with(&|j| j.config = br#"{"workers": 1,"#.to_vec()), "job.config"),
        ("config not JSON", with(&|j| j.config = b"workers=1".to_vec()), "job.config"),
        ("config not UTF-8", with(&|j| j.config = vec![0xff, 0xfe]), "job.config"),
        ("empty config", with(&|j| j.config = vec![]), "job.config"),
        (
            "workers 0",
            with(&|j| j.config = br#"{"workers": 0, "target": 5, "tick_ms": 10}"#.to_vec()),
            "job.config.workers",
        ),
        (
            "workers above the maximum",
            with(&|j| j.config = br#"{"workers": 1001, "target": 5, "tick_ms": 10}"#.to_vec()),
            "job.config.workers",
        ),
        (
            "target above the maximum",
            with(&|j| j.config = br#"{"workers": 1, "target": 1000000001, "tick_ms": 10}"#.to_vec()),
            "job.config.target",
        ),
        ("tick missing", with(&|j| j.config = br#"{"workers": 1, "target": 1}"#.to_vec()), "job.config.tick_ms"),
        (
            "unknown config field",
            with(&|j| j.config = br#"{"workers": 1, "target": 1, "tick_ms": 1, "speed": 2}"#.to_vec()),
            "job.config.speed",
        ),
        ("cost above the maximum", with(&|j| j.cost = 1_000_001), "job.cost"),
    ];
    for (what, job, field) in cases {
        let result = t
            .jobs
            .clone()
            .create_job(pb::CreateJobRequest { job, request_id: String::new() })
            .await
            .map(Response::into_inner);
        assert_invalid(what, result, field);
    }
    assert_eq!(t.snapshot().await, before, "a refused CreateJob changed something");
}

/// The id rule is the original system's (ids.rs): letters of either case, digits, '_', '-' and '.', 1 to 63
/// characters, starting and ending with a letter, digit or '_'. The edges that are valid are accepted.
#[tokio::test]
async fn create_job_accepts_every_valid_id_shape() {
    let t = TestMaster::start("valid-ids").await;
    let longest = "z".repeat(JobId::MAX_LEN);
    for id in ["UPPER", "MiXeD-Case.1", "_", "a", "a_b-c.d", "0", longest.as_str()] {
        let job = t.create(fake_job(id)).await.unwrap_or_else(|s| panic!("{id:?} refused: {s:?}"));
        assert_eq!(job.id, id);
    }
}

#[tokio::test]
async fn create_job_with_an_existing_id_is_already_exists_and_keeps_the_original() {
    let t = TestMaster::start("duplicate").await;
    let original = t.create(fake_job("dup")).await.expect("the first create");
    let before = t.snapshot().await;

    let mut other = fake_job("dup");
    other.config = br#"{"workers": 9, "target": 9, "tick_ms": 9}"#.to_vec();
    other.selectors = vec![selector("zone", 1, "west")];
    assert_refused("same id again", t.create(other).await, Code::AlreadyExists, Reason::JobAlreadyExists, "dup");
    // The very same request again is refused too: CreateJob with an id is not an upsert.
    assert_refused(
        "identical create",
        t.create(fake_job("dup")).await,
        Code::AlreadyExists,
        Reason::JobAlreadyExists,
        "dup",
    );

    assert_eq!(t.snapshot().await, before, "a refused CreateJob changed something");
    let now = t.get("dup", true).await.expect("the original is still there");
    assert_eq!(now.config, CONFIG.as_bytes(), "the original configuration");
    assert_eq!(now.selectors, original.selectors);
    assert_eq!(now.state, pb::JobState::Created as i32);
}

#[tokio::test]
async fn job_calls_on_missing_or_live_jobs_and_bad_list_requests_are_refused() {
    let t = TestMaster::start("job-refusals").await;
    t.create(fake_job("live")).await.expect("a valid job");
    let before = t.snapshot().await;

    let mut jm = t.jobs.clone();
    let (nf, jnf) = (Code::NotFound, Reason::JobNotFound);
    assert_refused("GetJob missing", t.get("ghost", false).await, nf, jnf, "ghost");
    assert_refused(
        "CancelJob missing",
        jm.cancel_job(pb::CancelJobRequest { id: "ghost".into() }).await,
        nf,
        jnf,
        "ghost",
    );
    assert_refused(
        "DeleteJob missing",
        jm.delete_job(pb::DeleteJobRequest { id: "ghost".into() }).await,
        nf,
        jnf,
        "ghost",
    );

    assert_refused(
        "DeleteJob of a Created job",
        jm.delete_job(pb::DeleteJobRequest { id: "live".into() }).await,
        Code::FailedPrecondition,
        Reason::JobNotTerminated,
        "live",
    );

    // Ids are checked before anything is looked up.
    assert_invalid("GetJob empty id", t.get("", false).await, "id");
    assert_invalid("GetJob bad id", t.get("../x", false).await, "id");
    assert_invalid("CancelJob bad id", jm.cancel_job(pb::CancelJobRequest { id: "../x".into() }).await, "id");
    assert_invalid("DeleteJob bad id", jm.delete_job(pb::DeleteJobRequest { id: "a/b".into() }).await, "id");

    let list = |f: &dyn Fn(&mut pb::ListJobsRequest)| {
        let mut r = pb::ListJobsRequest::default();
        f(&mut r);
        r
    };
    assert_invalid("ListJobs page_size 1001", t.list(list(&|r| r.page_size = 1001)).await, "page_size");
    assert_invalid("ListJobs page_size u32::MAX", t.list(list(&|r| r.page_size = u32::MAX)).await, "page_size");
    assert_invalid("ListJobs state 99", t.list(list(&|r| r.state = 99)).await, "state");
    assert_invalid("ListJobs state -1", t.list(list(&|r| r.state = -1)).await, "state");
    assert_invalid("ListJobs bad page_token", t.list(list(&|r| r.page_token = "../x".into())).await, "page_token");
    // The largest page is fine.
    let page = t.list(list(&|r| r.page_size = 1000)).await.expect("page_size 1000");
    assert_eq!(page.jobs.len(), 1);

    assert_eq!(t.snapshot().await, before, "a refused job call changed something");
}

#[tokio::test]
async fn jobs_are_created_got_listed_in_pages_filtered_canceled_and_deleted() {
    let t = TestMaster::start("job-happy").await;

    // Create with an id: echoed as accepted, durable, Created.
    let mut first = fake_job("a-1");
    first.selectors = vec![selector("zone", pb::SelectorOp::Eq as i32, "east")];
    let created = t.create(first.clone()).await.expect("create a-1");
    assert_eq!(created.id, "a-1");
    assert_eq!(created.r#type, "fake");
    assert_eq!(created.state, pb::JobState::Created as i32);
    assert_eq!(created.selectors, first.selectors);
    assert_eq!((created.epoch, created.executor_id, created.restarts), (0, 0, 0));
    assert_eq!(created.cost, 1, "cost 0 means the default of 1");
    assert!(created.config.is_empty(), "CreateJob returns no configuration");

    // Create without an id: the leader generates a valid, fresh one.
    let generated = t.create(fake_job("")).await.expect("create without an id");
    JobId::parse(&generated.id).unwrap_or_else(|e| panic!("generated id {:?} is not valid: {e}", generated.id));
    let generated2 = t.create(fake_job("")).await.expect("create without an id");
    JobId::parse(&generated2.id).unwrap_or_else(|e| panic!("generated id {:?} is not valid: {e}", generated2.id));
    assert_ne!(generated.id, generated2.id);
    for id in ["b-2", "c-3"] {
        t.create(fake_job(id)).await.unwrap_or_else(|s| panic!("create {id}: {s:?}"));
    }

    // Get, with and without the configuration.
    let got = t.get("a-1", true).await.expect("get a-1");
    assert_eq!(got.config, CONFIG.as_bytes());
    assert_eq!(got.selectors, first.selectors);
    assert!(t.get("a-1", false).await.expect("get a-1").config.is_empty());

    // Paging: 5 jobs, pages of 2, sorted by id, the last page has no token.
    let mut all: Vec<String> =
        vec!["a-1".into(), "b-2".into(), "c-3".into(), generated.id.clone(), generated2.id.clone()];
    all.sort();
    let mut seen = vec![];
    let mut tokens = vec![];
    let mut token = String::new();
    for page_no in 0.. {
        assert!(page_no < 10, "paging does not end: {tokens:?}");
        let page = t
            .list(pb::ListJobsRequest { page_size: 2, page_token: token.clone(), ..Default::default() })
            .await
            .expect("ListJobs page");
        assert!(page.jobs.len() <= 2, "{page:?}");
        assert!(page.jobs.iter().all(|j| j.config.is_empty()), "no configuration unless asked for");
        seen.extend(page.jobs.iter().map(|j| j.id.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        tokens.push(page.next_page_token.clone());
        token = page.next_page_token;
    }
    assert_eq!(seen, all, "every job once, in id order");
    assert_eq!(tokens, vec![all[1].clone(), all[3].clone()], "a token is the last id of its page");
    let with_config = t.list(pb::ListJobsRequest { include_config: true, ..Default::default() }).await.unwrap();
    assert!(with_config.jobs.iter().all(|j| j.config == CONFIG.as_bytes()));

    // Cancel of a job that never ran: Canceled at once; idempotent.
    let canceled = t.jobs.clone().cancel_job(pb::CancelJobRequest { id: "c-3".into() }).await.unwrap().into_inner();
    assert_eq!(canceled.state, pb::JobState::Canceled as i32);
    let again = t.jobs.clone().cancel_job(pb::CancelJobRequest { id: "c-3".into() }).await.unwrap().into_inner();
    assert_eq!(again.state, pb::JobState::Canceled as i32);

    // Filters: by state, by type.
    let ids = |r: pb::ListJobsResponse| r.jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    let by_state = |s: pb::JobState| pb::ListJobsRequest { state: s as i32, ..Default::default() };
    assert_eq!(ids(t.list(by_state(pb::JobState::Canceled)).await.unwrap()), vec!["c-3"]);
    let created_now: Vec<String> = all.iter().filter(|id| *id != "c-3").cloned().collect();
    assert_eq!(ids(t.list(by_state(pb::JobState::Created)).await.unwrap()), created_now);
    assert!(ids(t.list(by_state(pb::JobState::Running)).await.unwrap()).is_empty());
    let by_type = |ty: &str| pb::ListJobsRequest { r#type: ty.into(), ..Default::default() };
    assert_eq!(ids(t.list(by_type("fake")).await.unwrap()), all);
    assert!(ids(t.list(by_type("spark")).await.unwrap()).is_empty());
    // Both filters and paging together.
    let page = t
        .list(pb::ListJobsRequest { page_size: 1, state: pb::JobState::Created as i32, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(ids(page.clone()), vec![created_now[0].clone()]);
    assert_eq!(page.next_page_token, created_now[0]);

    // Delete of a terminal job; then it is gone, and its id may be used again.
    t.jobs.clone().delete_job(pb::DeleteJobRequest { id: "c-3".into() }).await.expect("delete c-3");
    assert_refused("get after delete", t.get("c-3", false).await, Code::NotFound, Reason::JobNotFound, "c-3");
    assert_eq!(ids(t.list(pb::ListJobsRequest::default()).await.unwrap()), created_now);
    let reused = t.create(fake_job("c-3")).await.expect("an id is free again after DeleteJob");
    assert_eq!(reused.state, pb::JobState::Created as i32);
}

#[tokio::test]
async fn executors_register_with_fresh_ids_and_refusals_change_nothing() {
    let t = TestMaster::start("executors").await;

    // Ids start at 1 and are never reused, not even after a deregistration.
    assert_eq!(t.register("exec-a", 4, &[("zone", "east")]).await.expect("register a"), 1);
    assert_eq!(t.register("exec-b", 2, &[]).await.expect("register b"), 2);
    t.discovery
        .clone()
        .deregister_executor(pb::DeregisterExecutorRequest { executor_id: 2 })
        .await
        .expect("deregister 2");
    assert_eq!(t.register("exec-b", 2, &[]).await.expect("register b again"), 3);

    let listed = t.snapshot().await.executors;
    let summary: Vec<(u64, &str, u32, i32)> =
        listed.iter().map(|e| (e.id, e.name.as_str(), e.capacity, e.status)).collect();
    let online = pb::ExecutorStatus::Online as i32;
    assert_eq!(summary, vec![(1, "exec-a", 4, online), (3, "exec-b", 2, online)]);
    assert_eq!(listed[0].labels.get("zone").map(String::as_str), Some("east"));
    assert_eq!(listed[0].address, "127.0.0.1:1");

    // Heartbeats: a live id is accepted; a deregistered or never-issued id is told to register again (a verdict,
    // not an error), and is not admitted by it.
    let leader = t.discovery.clone().get_leader(pb::GetLeaderRequest {}).await.unwrap().into_inner();
    let ok = t.heartbeat(1, leader.leader_epoch).await.expect("heartbeat of 1");
    assert_eq!(ok.verdict, pb::HeartbeatVerdict::Accepted as i32);
    assert_eq!(ok.leader_epoch, leader.leader_epoch);
    assert!(ok.timing.is_some_and(|tm| tm.self_fence_ms < tm.offline_ttl_ms));
    for (what, id, epoch) in [("deregistered", 2, leader.leader_epoch), ("never issued", 42, 0), ("id 0", 0, 0)] {
        let r = t.heartbeat(id, epoch).await.unwrap_or_else(|s| panic!("heartbeat of {what} executor {id}: {s:?}"));
        assert_eq!(r.verdict, pb::HeartbeatVerdict::Reregister as i32, "{what}: {r:?}");
    }

    let before = t.snapshot().await;
    let reg = |name: &str, address: &str, capacity: u32, labels: &[(&str, &str)]| pb::RegisterExecutorRequest {
        name: name.into(),
        address: address.into(),
        capacity,
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        instance: 0,
    };
    // (what, request, what the message must name)
    let cases = vec![
        ("empty name", reg("", "127.0.0.1:1", 1, &[]), "name"),
        ("name with a space", reg("a b", "127.0.0.1:1", 1, &[]), "name"),
        ("capacity 0", reg("x", "127.0.0.1:1", 0, &[]), "capacity"),
        ("capacity above the maximum", reg("x", "127.0.0.1:1", 1_000_001, &[]), "capacity"),
        ("address without a port", reg("x", "127.0.0.1", 1, &[]), "address"),
        ("address with a scheme", reg("x", "http://127.0.0.1:1", 1, &[]), "address"),
        ("bad label key", reg("x", "127.0.0.1:1", 1, &[("bad key", "v")]), "label key"),
        ("label key starting with '-'", reg("x", "127.0.0.1:1", 1, &[("-k", "v")]), "label key"),
        ("bad label value", reg("x", "127.0.0.1:1", 1, &[("k", "")]), "label value"),
    ];
    for (what, req, field) in cases {
        let r = t.discovery.clone().register_executor(req).await;
        assert_refused(what, r, Code::InvalidArgument, Reason::InvalidArgument, field);
    }
    assert_refused(
        "deregister never issued",
        t.discovery.clone().deregister_executor(pb::DeregisterExecutorRequest { executor_id: 42 }).await,
        Code::NotFound,
        Reason::UnknownExecutor,
        "42",
    );
    assert_refused(
        "deregister twice",
        t.discovery.clone().deregister_executor(pb::DeregisterExecutorRequest { executor_id: 2 }).await,
        Code::NotFound,
        Reason::UnknownExecutor,
        "2",
    );
    let bad_task = pb::HeartbeatRequest {
        executor_id: 1,
        leader_epoch: leader.leader_epoch,
        tasks: vec![pb::RunningTask { task_id: "a b".into(), kind: pb::TaskKind::Worker as i32, epoch: 1, cost: 1 }],
        ..Default::default()
    };
    assert_invalid("heartbeat with a bad task id", t.discovery.clone().heartbeat(bad_task).await, "tasks[0].task_id");
    let bad_kind = pb::HeartbeatRequest {
        executor_id: 1,
        leader_epoch: leader.leader_epoch,
        tasks: vec![pb::RunningTask { task_id: "j/w".into(), kind: 0, epoch: 1, cost: 1 }],
        ..Default::default()
    };
    assert_invalid("heartbeat with no task kind", t.discovery.clone().heartbeat(bad_kind).await, "tasks[0].kind");
    let bad_ended = pb::HeartbeatRequest {
        executor_id: 1,
        leader_epoch: leader.leader_epoch,
        ended: vec![pb::EndedTask { task_id: "".into(), epoch: 1 }],
        ..Default::default()
    };
    assert_invalid(
        "heartbeat with a bad ended task",
        t.discovery.clone().heartbeat(bad_ended).await,
        "ended[0].task_id",
    );
    let too_many = pb::HeartbeatRequest {
        executor_id: 1,
        leader_epoch: leader.leader_epoch,
        ended: vec![pb::EndedTask { task_id: "j/w".into(), epoch: 1 }; 4_097],
        ..Default::default()
    };
    assert_invalid("heartbeat with too many ended tasks", t.discovery.clone().heartbeat(too_many).await, "ended");
    assert_eq!(t.snapshot().await, before, "a refused executor call changed something");

    // The next fresh id is still 4: refusals burn no ids.
    assert_eq!(t.register("exec-c", 1, &[]).await.expect("register c"), 4);
}

#[tokio::test]
async fn a_repeated_registration_of_one_process_gets_its_id_back() {
    let t = TestMaster::start("repeats").await;
    let req = |instance: u64| pb::RegisterExecutorRequest {
        name: "exec-r".into(),
        address: "127.0.0.1:1".into(),
        capacity: 2,
        labels: Default::default(),
        instance,
    };
    let register = |instance: u64| {
        let mut d = t.discovery.clone();
        async move { d.register_executor(req(instance)).await.map(|r| r.into_inner().executor_id) }
    };
    // One process retrying (its first reply lost): one id, however often it asks.
    let first = register(77).await.expect("register");
    assert_eq!(register(77).await.expect("repeat"), first);
    assert_eq!(register(77).await.expect("repeat"), first);
    // Another process of that name (it restarted): a new id.
    let restarted = register(78).await.expect("register the restarted process");
    assert!(restarted > first);
    let listed: Vec<u64> = t.snapshot().await.executors.iter().map(|e| e.id).collect();
    assert_eq!(listed, vec![first, restarted], "no ghost ids from the repeats");
    // Deregistered, the same process is a new executor when it registers again.
    t.discovery
        .clone()
        .deregister_executor(pb::DeregisterExecutorRequest { executor_id: first })
        .await
        .expect("deregister");
    assert!(register(77).await.expect("register again") > restarted);
}

#[tokio::test]
async fn scheduler_and_framework_refuse_what_they_cannot_serve() {
    let t = TestMaster::start("framework").await;
    t.create(fake_job("waiting")).await.expect("a job no job master runs");
    let before = t.snapshot().await;

    let sched = |job_id: &str, task_id: &str, master_epoch: u64| pb::ScheduleTaskRequest {
        task_id: task_id.into(),
        job_id: job_id.into(),
        master_epoch,
        ..Default::default()
    };
    let mut s = t.scheduler.clone();
    // No job master of the job is online (none ever started): whatever epoch it claims, it is not current.
    for epoch in [0, 1, 7] {
        assert_refused(
            &format!("ScheduleTask, job master offline, epoch {epoch}"),
            s.schedule_task(sched("waiting", "waiting/w0", epoch)).await,
            Code::FailedPrecondition,
            Reason::StaleEpoch,
            "waiting",
        );
    }
    // A job that does not exist is not found (not a stale epoch), and the refusal names the job.
    let missing = s.schedule_task(sched("ghost", "ghost/w0", 1)).await;
    let message = missing.as_ref().err().map(|s| s.message().to_owned()).unwrap_or_default();
    assert_refused("ScheduleTask for a missing job", missing, Code::NotFound, Reason::JobNotFound, "job ghost");
    assert!(!message.contains("ghost/w0"), "the task id is not the job master: {message}");
    assert_invalid("ScheduleTask bad task id", s.schedule_task(sched("waiting", "a b", 1)).await, "task_id");
    assert_invalid("ScheduleTask bad job id", s.schedule_task(sched("../x", "w", 1)).await, "job_id");
    let mut costly = sched("waiting", "waiting/w0", 1);
    costly.cost = 1_000_001;
    assert_invalid("ScheduleTask cost above the maximum", s.schedule_task(costly).await, "cost");
    let mut unspecified = sched("waiting", "waiting/w0", 1);
    unspecified.selectors = vec![selector("zone", 0, "east")];
    assert_invalid("ScheduleTask selector op UNSPECIFIED", s.schedule_task(unspecified).await, "selectors[0].op");

    let mut f = t.framework.clone();
    let report = |worker_id: &str, status: Option<pb::WorkerStatus>| pb::ReportWorkerStatusRequest {
        master_id: t.m.name().into(),
        master_epoch: 1,
        worker_id: worker_id.into(),
        worker_epoch: 1,
        status,
        progress: String::new(),
    };
    assert_invalid(
        "ReportWorkerStatus without status",
        f.report_worker_status(report("waiting", None)).await,
        "status",
    );
    let unspecified = pb::WorkerStatus { state: 0, ..Default::default() };
    assert_invalid(
        "ReportWorkerStatus with state UNSPECIFIED",
        f.report_worker_status(report("waiting", Some(unspecified))).await,
        "status.state",
    );
    let finished = pb::WorkerStatus { state: pb::WorkerState::Finished as i32, ..Default::default() };
    assert_invalid(
        "ReportWorkerStatus bad worker id",
        f.report_worker_status(report("a b", Some(finished.clone()))).await,
        "worker_id",
    );
    // A worker id that is a task id but not a job id cannot be one of the job manager's job masters.
    assert_invalid(
        "ReportWorkerStatus worker, not a job master",
        f.report_worker_status(report("j/w", Some(finished))).await,
        "worker_id",
    );
    let hb = pb::WorkerHeartbeatRequest {
        master_id: t.m.name().into(),
        master_epoch: 0,
        worker_id: "a b".into(),
        worker_epoch: 1,
        progress: String::new(),
        last_error: None,
    };
    assert_invalid("WorkerHeartbeat bad worker id", f.worker_heartbeat(hb).await, "worker_id");
    // A job master the job manager never started is a stale worker: it must stop.
    let unknown = pb::WorkerHeartbeatRequest {
        master_id: t.m.name().into(),
        master_epoch: 0,
        worker_id: "ghost".into(),
        worker_epoch: 1,
        progress: String::new(),
        last_error: None,
    };
    let r = f.worker_heartbeat(unknown).await.expect("a verdict, not an error").into_inner();
    assert_eq!(r.verdict, pb::Verdict::StaleWorker as i32, "{r:?}");

    assert_eq!(t.snapshot().await, before, "a refused call changed something");
}

#[tokio::test]
async fn discovery_names_this_master_as_the_leader() {
    let t = TestMaster::start("discovery").await;
    let leader = t.discovery.clone().get_leader(pb::GetLeaderRequest {}).await.expect("GetLeader").into_inner();
    assert_eq!(leader.name, "m-discovery");
    assert_eq!(leader.address, t.address);
    assert!(leader.leader_epoch >= 1, "{leader:?}");
    assert_eq!(t.m.role(), Role::Leader(foreman::core::ids::LeaderEpoch(leader.leader_epoch)));

    let masters = t.discovery.clone().list_masters(pb::ListMastersRequest {}).await.expect("ListMasters").into_inner();
    assert_eq!(
        masters.masters,
        vec![pb::Master { name: "m-discovery".into(), address: t.address.clone(), is_leader: true }]
    );

    let store = t.discovery.clone().query_meta_store(pb::QueryMetaStoreRequest {}).await.unwrap().into_inner();
    assert_eq!(store.kind, pb::StoreKind::Embedded as i32);
    assert_eq!(store.key_prefix, "/foreman/test-discovery/");
    assert!(store.endpoints.is_empty());

    let executors = t.discovery.clone().list_executors(pb::ListExecutorsRequest {}).await.unwrap().into_inner();
    assert!(executors.executors.is_empty());
}

/// A heartbeat that claims a leader epoch no leader ever had (a buggy or foreign executor) must not take the
/// cluster's leadership away for good. Today it does: the leader believes the epoch, steps down, and remembers it
/// as the highest seen; every later election it wins takes the next epoch from the metastore's counter, which is
/// below the remembered one, so `Leadership::become_leader` refuses every term, forever.
#[tokio::test]
async fn a_heartbeat_claiming_a_never_issued_leader_epoch_does_not_lock_the_leader_out() {
    let t = TestMaster::start("bogus-epoch").await;
    t.create(fake_job("kept")).await.expect("a job");
    let leader = t.discovery.clone().get_leader(pb::GetLeaderRequest {}).await.unwrap().into_inner();
    let bogus = leader.leader_epoch + 1000;
    let r = t.heartbeat(42, bogus).await;
    eprintln!("heartbeat with leader_epoch {bogus} (the real one is {}): {r:?}", leader.leader_epoch);

    // Regression (found by this test): the claim was trusted, the leader stepped down and refused every later
    // term. Now a claim the metastore does not confirm is refused, naming the field, and the leader stays.
    let err = r.expect_err("a never-issued leader epoch is refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("leader_epoch"), "{err:?}");
    assert_eq!(t.m.stats.terms.load(std::sync::atomic::Ordering::Relaxed), 1, "the leader must not step down");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    loop {
        if matches!(t.m.role(), Role::Leader(_)) && t.get("kept", false).await.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the master has not led again 8 s after a heartbeat claimed leader epoch {bogus}: role {:?}, terms \
             begun {}, GetLeader {:?}",
            t.m.role(),
            t.m.stats.terms.load(std::sync::atomic::Ordering::Relaxed),
            t.discovery.clone().get_leader(pb::GetLeaderRequest {}).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_create_token_makes_repeats_safe_and_keeps_a_deleted_job_deleted() {
    let t = TestMaster::start("tokens").await;
    let create = |token: &str| {
        let mut jobs = t.jobs.clone();
        let req = pb::CreateJobRequest { job: Some(fake_job("tok")), request_id: token.into() };
        async move { jobs.create_job(req).await.map(Response::into_inner) }
    };
    let first = create("t-1").await.expect("created");
    // A repeat of the applied create (its reply lost) gets the job; another request for the id is refused.
    let again = create("t-1").await.expect("a repeat gets the job");
    assert_eq!((first.id.as_str(), again.state), ("tok", first.state));
    assert_refused(
        "another create of the id",
        create("t-2").await,
        Code::AlreadyExists,
        Reason::JobAlreadyExists,
        "tok",
    );
    t.jobs.clone().cancel_job(pb::CancelJobRequest { id: "tok".into() }).await.expect("canceled");
    t.jobs.clone().delete_job(pb::DeleteJobRequest { id: "tok".into() }).await.expect("deleted");
    // The first create, delayed in the network, arrives again: it must not bring the job back.
    assert_refused("a delayed repeat", create("t-1").await, Code::FailedPrecondition, Reason::JobDeleted, "tok");
    assert_refused("gone", t.get("tok", false).await, Code::NotFound, Reason::JobNotFound, "tok");
    // A new request may use the id again (and then the old token no longer matters).
    let fresh = create("t-3").await.expect("a new request may use the id again");
    assert_eq!(fresh.state, pb::JobState::Created as i32);
    assert_refused(
        "a bad token",
        create("has space").await,
        Code::InvalidArgument,
        Reason::InvalidArgument,
        "request_id",
    );
}

/// A job record in the store that does not decode is shown as corrupt, never as missing: `GetJob` says where it is
/// and what is wrong, `ListJobs` lists it (and filters on it), a cancel and a create of its id are refused without
/// touching it, the metrics count it, and a delete removes it, after which the id is free again. A record stored
/// under another job's key is corrupt the same way.
#[tokio::test]
async fn corrupt_job_records_are_shown_refused_counted_and_deletable() {
    let store = MetaStore::embedded("test-corrupt", None).expect("an embedded store");
    let t = TestMaster::start_on("corrupt", store.clone()).await;
    for id in ["good", "victim"] {
        t.create(fake_job(id)).await.expect("created");
    }
    let good = store.get("jobs/good").await.expect("read").expect("stored");
    // A torn value, and a valid record of another job under an id of its own.
    let garbage = br#"{"id":"victim","spec":{"job_type":"fa"#.to_vec();
    let put = |key: &str, value: Vec<u8>| foreman::meta::Op::Put { key: key.into(), value, lease: None };
    assert!(store.txn(&[], &[put("jobs/victim", garbage.clone()), put("jobs/impostor", good)]).await.expect("written"));
    // The next leader reads the store afresh.
    drop(t);
    let t = TestMaster::start_on("corrupt", store.clone()).await;

    let victim = t.get("victim", false).await.expect("a corrupt job is still found");
    assert_eq!(victim.state, pb::JobState::Corrupt as i32, "{victim:?}");
    let error = victim.error.clone().expect("the job says what is wrong");
    assert_eq!(error.reason, "JOB_RECORD_CORRUPT");
    for part in ["jobs/victim", "does not decode", "EOF while parsing", "foreman job delete victim"] {
        assert!(error.message.contains(part), "{part:?} missing from {:?}", error.message);
    }
    let impostor = t.get("impostor", false).await.expect("found");
    assert!(impostor.error.expect("an error").message.contains("it holds the record of job good"));

    let all = t.list(pb::ListJobsRequest::default()).await.expect("listed");
    let states: Vec<(String, i32)> = all.jobs.iter().map(|j| (j.id.clone(), j.state)).collect();
    let corrupt = pb::JobState::Corrupt as i32;
    let created = pb::JobState::Created as i32;
    assert_eq!(
        states,
        [("good".into(), created), ("impostor".into(), corrupt), ("victim".into(), corrupt)],
        "every job, corrupt or not, in id order"
    );
    let only = t.list(pb::ListJobsRequest { state: corrupt, ..Default::default() }).await.expect("listed");
    assert_eq!(only.jobs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["impostor", "victim"]);
    let typed = t.list(pb::ListJobsRequest { r#type: "fake".into(), ..Default::default() }).await.expect("listed");
    assert_eq!(typed.jobs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["good"], "a corrupt record has no type");
    let paged = t.list(pb::ListJobsRequest { page_size: 1, page_token: "good".into(), ..Default::default() });
    assert_eq!(paged.await.expect("listed").jobs[0].id, "impostor");

    let cancel = t.jobs.clone().cancel_job(pb::CancelJobRequest { id: "victim".into() }).await;
    assert_refused("cancel", cancel, Code::FailedPrecondition, Reason::JobRecordCorrupt, "jobs/victim");
    assert_refused(
        "a create over it",
        t.create(fake_job("victim")).await,
        Code::FailedPrecondition,
        Reason::JobRecordCorrupt,
        "delete it first",
    );
    assert_eq!(store.get("jobs/victim").await.expect("read"), Some(garbage), "the record was overwritten");
    let metrics = t.m.metrics_text().await;
    for line in ["foreman_corrupt_records{kind=\"job\"} 2", "foreman_jobs{state=\"corrupt\"} 2"] {
        assert!(metrics.lines().any(|l| l == line), "{line} missing from\n{metrics}");
    }

    t.jobs.clone().delete_job(pb::DeleteJobRequest { id: "victim".into() }).await.expect("deleted");
    assert_eq!(store.get("jobs/victim").await.expect("read"), None);
    assert_refused("gone", t.get("victim", false).await, Code::NotFound, Reason::JobNotFound, "victim");
    t.create(fake_job("victim")).await.expect("the id is free again");
    assert!(t.m.metrics_text().await.lines().any(|l| l == "foreman_corrupt_records{kind=\"job\"} 1"));
}

/// What a client can read of a refusal is bounded whatever it sent: a 100 KB job id is refused `INVALID_ARGUMENT`
/// with a reason and a short message that quotes a prefix of the id and its size, by the leader and through a
/// follower alike (before, the leader echoed the whole id: a client saw `RESOURCE_EXHAUSTED`, or through a
/// follower `h2 protocol error`, instead of what to fix).
#[tokio::test]
async fn a_huge_input_is_refused_with_a_bounded_message_by_the_leader_and_through_a_follower() {
    let store = MetaStore::embedded("test-huge", None).expect("an embedded store");
    let leader = TestMaster::join("huge-leader", "huge", store.clone()).await;
    leader.wait_until_leading().await;
    let follower = TestMaster::join("huge-follower", "huge", store).await;
    assert_eq!(follower.m.role(), Role::Follower);
    leader.create(fake_job("kept")).await.expect("a job");
    let before = leader.snapshot().await;

    let huge = "j".repeat(100_000);
    for t in [&leader, &follower] {
        let who = t.m.name();
        let results: Vec<(&str, &str, Result<pb::Job, Status>)> = vec![
            ("CreateJob", "job.id", t.create(fake_job(&huge)).await),
            ("GetJob", "id", t.get(&huge, false).await),
            (
                "CancelJob",
                "id",
                t.jobs.clone().cancel_job(pb::CancelJobRequest { id: huge.clone() }).await.map(Response::into_inner),
            ),
        ];
        for (call, field, result) in results {
            let what = format!("{call} with a 100 KB id through {who}");
            let status = result.expect_err(&what);
            assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
            assert_eq!(reason_of(&status), Some(Reason::InvalidArgument), "{what}: {status:?}");
            let message = status.message();
            assert!(message.len() <= foreman::rpc::status::MESSAGE_MAX, "{what}: {} bytes", message.len());
            assert!(message.starts_with(&format!("{field}: job id \"jjj")), "{what}: {message}");
            assert!(message.contains("…(100000 bytes)") && message.contains("at most 63"), "{what}: {message}");
        }
        // A huge request token and a huge selector are bounded just the same.
        let mut with_selector = fake_job("");
        with_selector.selectors = vec![selector(&huge, 1, "east")];
        for (what, request) in [
            ("a 100 KB token", pb::CreateJobRequest { job: Some(fake_job("")), request_id: huge.clone() }),
            ("a 100 KB selector key", pb::CreateJobRequest { job: Some(with_selector), request_id: String::new() }),
        ] {
            let status = t.jobs.clone().create_job(request).await.expect_err(what);
            assert_eq!(reason_of(&status), Some(Reason::InvalidArgument), "{what} through {who}: {status:?}");
            assert!(status.message().len() <= foreman::rpc::status::MESSAGE_MAX, "{what}: {}", status.message().len());
        }
    }
    assert_eq!(leader.snapshot().await, before, "a refused call changed something");
}

/// The proto promises at most 256 bytes of progress: a longer text is refused, naming the field, before anything
/// is looked at (the framework's own links cut a task's text to 256 bytes before sending, so no job master of
/// ours is ever refused for it).
/// Job masters' heartbeats carried in an executor's (`HeartbeatRequest.job_masters`): each is answered by job
/// master as if it had come alone; a bad one refuses the whole call, naming it, and changes nothing.
#[tokio::test]
async fn carried_job_master_heartbeats_are_answered_each_and_bad_ones_refuse_the_call() {
    let t = TestMaster::start("carried").await;
    let id = t.register("exec-a", 4, &[]).await.expect("register");
    let leader = t.discovery.clone().get_leader(pb::GetLeaderRequest {}).await.unwrap().into_inner();
    let jm = |worker_id: &str| pb::WorkerHeartbeatRequest {
        master_id: t.m.name().into(),
        master_epoch: 0,
        worker_id: worker_id.into(),
        worker_epoch: 1,
        progress: String::new(),
        last_error: None,
    };
    let beat = |job_masters: Vec<pb::WorkerHeartbeatRequest>| pb::HeartbeatRequest {
        executor_id: id,
        leader_epoch: leader.leader_epoch,
        job_masters,
        ..Default::default()
    };
    let mut d = t.discovery.clone();
    // Answered one by one: job masters the job manager never started are stale, as when they call alone.
    let r = d.heartbeat(beat(vec![jm("ghost-b"), jm("ghost-a")])).await.expect("a heartbeat").into_inner();
    assert_eq!(r.verdict, pb::HeartbeatVerdict::Accepted as i32);
    assert!(!r.carry_job_masters, "off by default");
    let answers: Vec<(String, i32)> =
        r.job_masters.iter().map(|c| (c.worker_id.clone(), c.reply.as_ref().map_or(-1, |r| r.verdict))).collect();
    let stale = pb::Verdict::StaleWorker as i32;
    assert_eq!(answers, vec![("ghost-b".to_owned(), stale), ("ghost-a".to_owned(), stale)]);

    let before = t.snapshot().await;
    let long = pb::WorkerHeartbeatRequest { progress: "x".repeat(257), ..jm("ghost") };
    let too_many: Vec<_> = (0..=foreman::framework::carrier::CARRIED_MAX).map(|i| jm(&format!("job-{i}"))).collect();
    for (what, carried) in [
        ("a bad id", vec![jm("ghost"), jm("a b")]),
        ("a worker's id, not a job master's", vec![jm("j/w")]),
        ("one job master twice", vec![jm("ghost"), jm("ghost")]),
        ("a long progress text", vec![long]),
        ("more than the most one call carries", too_many),
    ] {
        assert_invalid(&format!("a heartbeat carrying {what}"), d.heartbeat(beat(carried)).await, "job_masters");
    }
    assert_eq!(t.snapshot().await, before, "a refused call changed something");
}

#[tokio::test]
async fn a_progress_text_beyond_256_bytes_is_refused() {
    let t = TestMaster::start("progress").await;
    let before = t.snapshot().await;
    let heartbeat = |progress: String| pb::WorkerHeartbeatRequest {
        master_id: t.m.name().into(),
        master_epoch: 0,
        worker_id: "ghost".into(),
        worker_epoch: 1,
        progress,
        last_error: None,
    };
    let mut f = t.framework.clone();
    for size in [257, 1 << 20] {
        assert_invalid(
            &format!("WorkerHeartbeat with {size} bytes of progress"),
            f.worker_heartbeat(heartbeat("x".repeat(size))).await,
            "progress",
        );
    }
    // A last error beyond its bounds is refused the same way, naming its field.
    let long_source = pb::LastError { source: "s".repeat(129), ..Default::default() };
    let long_message =
        pb::LastError { message: "m".repeat(foreman::framework::ERROR_MESSAGE_MAX + 1), ..Default::default() };
    for (e, field) in [(long_source, "last_error.source"), (long_message, "last_error.message")] {
        let req = pb::WorkerHeartbeatRequest { last_error: Some(e), ..heartbeat(String::new()) };
        assert_invalid(&format!("WorkerHeartbeat with a long {field}"), f.worker_heartbeat(req).await, field);
    }
    let report = pb::ReportWorkerStatusRequest {
        master_id: t.m.name().into(),
        master_epoch: 0,
        worker_id: "ghost".into(),
        worker_epoch: 1,
        status: Some(pb::WorkerStatus { state: pb::WorkerState::Finished as i32, ..Default::default() }),
        progress: "é".repeat(129),
    };
    assert_invalid("ReportWorkerStatus with 258 bytes of progress", f.report_worker_status(report).await, "progress");
    let failed = pb::ReportWorkerStatusRequest {
        master_id: t.m.name().into(),
        master_epoch: 0,
        worker_id: "ghost".into(),
        worker_epoch: 1,
        status: Some(pb::WorkerStatus {
            state: pb::WorkerState::Failed as i32,
            error_message: "e".repeat(foreman::framework::ERROR_MESSAGE_MAX + 1),
            ..Default::default()
        }),
        progress: String::new(),
    };
    assert_invalid(
        "ReportWorkerStatus with a 4 KiB error",
        f.report_worker_status(failed).await,
        "status.error_message",
    );
    // 256 bytes are fine: an unknown job master is then told it is stale, as ever.
    let r = f.worker_heartbeat(heartbeat("x".repeat(256))).await.expect("a verdict").into_inner();
    assert_eq!(r.verdict, pb::Verdict::StaleWorker as i32);
    assert_eq!(t.snapshot().await, before, "a refused call changed something");
}

/// A create token names one request: a repeat must ask for the same job (type, configuration, selectors, cost
/// and id), or it is refused `ALREADY_EXISTS` (`REQUEST_ID_REUSED`) saying what differs, and nothing changes.
#[tokio::test]
async fn a_create_token_reused_for_another_request_is_refused_saying_what_differs() {
    let t = TestMaster::start("token-reuse").await;
    let create = |job: pb::Job, token: &str| {
        let mut jobs = t.jobs.clone();
        let req = pb::CreateJobRequest { job: Some(job), request_id: token.into() };
        async move { jobs.create_job(req).await.map(Response::into_inner) }
    };
    let first = create(fake_job("orig"), "t-1").await.expect("created");
    let before = t.snapshot().await;
    let with = |f: &dyn Fn(&mut pb::Job)| {
        let mut j = fake_job("orig");
        f(&mut j);
        j
    };
    // (what, the repeat, the fields the refusal names)
    let cases: Vec<(&str, pb::Job, &[&str])> = vec![
        ("another id", with(&|j| j.id = "other".into()), &["job.id"]),
        (
            "another config",
            with(&|j| j.config = br#"{"workers": 9, "target": 5, "tick_ms": 10}"#.to_vec()),
            &["job.config"],
        ),
        ("another selector", with(&|j| j.selectors = vec![selector("zone", 1, "east")]), &["job.selectors"]),
        ("another cost", with(&|j| j.cost = 3), &["job.cost"]),
        (
            "another id, config and cost",
            with(&|j| {
                j.id = String::new();
                j.cost = 2;
                j.config = br#"{"workers": 1, "target": 1, "tick_ms": 1}"#.to_vec();
            }),
            &["job.config", "job.cost"],
        ),
    ];
    for (what, job, fields) in cases {
        let status = create(job, "t-1").await.expect_err(what);
        assert_eq!(status.code(), Code::AlreadyExists, "{what}: {status:?}");
        assert_eq!(reason_of(&status), Some(Reason::RequestIdReused), "{what}: {status:?}");
        for field in fields {
            assert!(status.message().contains(field), "{what}: {:?} does not name {field}", status.message());
        }
        assert!(status.message().contains("orig"), "{what}: the message names the job: {:?}", status.message());
    }
    assert_eq!(t.snapshot().await, before, "a refused create changed something");
    // The very same request is a repeat: the job it created (with or without its id).
    assert_eq!(create(fake_job("orig"), "t-1").await.expect("a repeat").id, first.id);
    assert_eq!(create(fake_job(""), "t-1").await.expect("a repeat without the id").id, first.id);
    assert_eq!(t.snapshot().await, before);
}

/// `GetJobStatus` through the leader and a follower: an unknown job is refused as by `GetJob`, a bad id names its
/// field, a job no job master ran has no status yet (saying why), and a stored status from an incarnation newer
/// than the one the leader knows is never shown. A master process hosts no job masters: `QueryJobMaster` on it is
/// NOT_FOUND.
#[tokio::test]
async fn job_status_through_the_leader_and_a_follower() {
    let store = MetaStore::embedded("test-status", None).expect("an embedded store");
    let leader = TestMaster::join("status-leader", "status", store.clone()).await;
    leader.wait_until_leading().await;
    let follower = TestMaster::join("status-follower", "status", store.clone()).await;
    assert_eq!(follower.m.role(), Role::Follower);
    leader.create(fake_job("waiting")).await.expect("a job no job master runs");
    let status = |t: &TestMaster, id: &str| {
        let mut jobs = t.jobs.clone();
        let id = id.to_owned();
        async move { jobs.get_job_status(pb::GetJobStatusRequest { id }).await.map(Response::into_inner) }
    };
    for t in [&leader, &follower] {
        let who = t.m.name().to_owned();
        assert_refused(
            &format!("GetJobStatus missing via {who}"),
            status(t, "ghost").await,
            Code::NotFound,
            Reason::JobNotFound,
            "ghost",
        );
        assert_invalid(&format!("GetJobStatus bad id via {who}"), status(t, "../x").await, "id");
        let s = status(t, "waiting").await.expect("a job's status");
        assert_eq!(
            (s.id.as_str(), s.source, s.epoch, s.job_epoch),
            ("waiting", pb::JobStatusSource::None as i32, 0, 0)
        );
        assert!(s.document.is_empty(), "{s:?}");
        assert!(s.note.contains("no job master runs now") && s.note.contains("has stored a status yet"), "{s:?}");
    }
    // A status stored under an epoch the leader never issued for the job: not shown.
    let bogus = serde_json::json!({"epoch": 9, "at": 1, "status": {
        "job": "waiting", "epoch": 9, "executor": 1, "state": "running", "progress": "", "workers": [], "detail": null}});
    let put = foreman::meta::Op::Put {
        key: foreman::meta::keys::job_status("waiting"),
        value: bogus.to_string().into_bytes(),
        lease: None,
    };
    assert!(store.txn(&[], &[put]).await.expect("a put"));
    let s = status(&leader, "waiting").await.expect("a job's status");
    assert_eq!((s.source, s.epoch), (pb::JobStatusSource::None as i32, 0), "{s:?}");
    assert!(s.note.contains("newer than the current"), "{s:?}");
    // Deleting the job (canceled: nothing ran) deletes its status too.
    t_cancel_and_delete(&leader, "waiting").await;
    assert_eq!(store.get(&foreman::meta::keys::job_status("waiting")).await.expect("a read"), None);

    let refused = leader
        .framework
        .clone()
        .query_job_master(pb::QueryJobMasterRequest { master_id: "waiting".into() })
        .await
        .expect_err("a master hosts no job masters");
    assert_eq!((refused.code(), reason_of(&refused)), (Code::NotFound, Some(Reason::JobMasterNotHosted)));
}

async fn t_cancel_and_delete(t: &TestMaster, id: &str) {
    let mut jm = t.jobs.clone();
    jm.cancel_job(pb::CancelJobRequest { id: id.into() }).await.expect("a cancel");
    jm.delete_job(pb::DeleteJobRequest { id: id.into() }).await.expect("a delete");
}
