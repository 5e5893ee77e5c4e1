//! The framework protocol end to end over simulated gRPC: a host serving one master's bookkeeping
//! (`framework::host`), and workers on other nodes keeping a `framework::link`. Checks design.md §5 rule 3 at
//! its source: a worker cut off from its master stops (self-fences) strictly before its master declares it lost;
//! a revoked or superseded incarnation is told it is stale and stops; a cancel is honoured and its report
//! acknowledged.

use std::net::SocketAddr;
use std::time::Duration;

use foreman::clock::Clock as NodeClock;
use foreman::core::ids::{Epoch, TaskId};
use foreman::core::timing::HeartbeatTiming;
use foreman::core::workers::{Event, WorkerStatus, Workers};
use foreman::framework::host::{Host, HostedHandle, Issuer};
use foreman::framework::link::{Link, LinkEnd, LinkSpec, Report};
use foreman::rpc::pb::framework_server::FrameworkServer;
use madsim::rand::Rng;
use madsim::runtime::Handle;

use crate::harness::{announce, Clock, Recorder};

const HOST: &str = "10.0.4.1:10260";
const MASTER: &str = "jm";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Live,
    Ended(LinkEnd),
    Reported,
    Master(Event),
}

impl crate::harness::Story for Seen {}

/// Starts the host node with one hosted master at epoch 5 and `tasks` dispatched; it ticks its bookkeeping every
/// 50 ms and records every event. Returns the hosted handle.
async fn host(
    rec: &Recorder<Seen>,
    timing: HeartbeatTiming,
    tasks: &[(&str, u64)],
    issuer: Option<Issuer>,
) -> HostedHandle {
    let handle = Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let rec = rec.clone();
    let tasks: Vec<(TaskId, Epoch)> = tasks.iter().map(|(t, e)| (TaskId::parse(t).unwrap(), Epoch(*e))).collect();
    let addr: SocketAddr = HOST.parse().unwrap();
    let node = handle.create_node().name("host").ip(addr.ip()).build();
    node.spawn(async move {
        let clock = NodeClock::start();
        let host = Host::new(clock.clone());
        let mut workers = Workers::new(Epoch(5), timing);
        for (t, e) in &tasks {
            workers.on_dispatched(clock.now(), t, *e).unwrap();
        }
        let hosted = host.add(MASTER, workers, issuer);
        let _ = tx.send(hosted.clone());
        let ticker = async {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let now = clock.now();
                let ticked = hosted.lock().workers.tick(now);
                for ev in hosted.take_events().into_iter().chain(ticked) {
                    rec.record("host", Seen::Master(ev));
                }
            }
        };
        let server = tonic::transport::Server::builder().add_service(FrameworkServer::new(host.clone())).serve(addr);
        tokio::select! {
            biased;
            _ = server => {}
            _ = ticker => {}
        }
    });
    rx.await.expect("the host started")
}

/// Starts a worker node running a link for `task` at `epoch`: it records when it became live and why it ended,
/// and reports Canceled when told to cancel.
fn worker(rec: &Recorder<Seen>, name: &str, ip: &str, task: &str, epoch: u64, timing: HeartbeatTiming) {
    let rec = rec.clone();
    let name = name.to_owned();
    let spec = LinkSpec {
        master_id: MASTER.into(),
        addresses: vec![HOST.into()],
        master_epoch: Epoch(5),
        worker: TaskId::parse(task).unwrap(),
        worker_epoch: Epoch(epoch),
        timing,
        identity: foreman::rpc::identity::Identity::executor(&name),
        carrier: None,
    };
    let node = Handle::current().create_node().name(&name).ip(ip.parse().unwrap()).build();
    node.spawn(async move {
        let clock = NodeClock::start();
        let now = clock.now();
        let mut link = Link::new(spec, clock, now);
        let end = loop {
            let beat = link.beat().await;
            if link.is_live() {
                break None;
            }
            if let Some(end) = beat {
                break Some(end);
            }
            tokio::time::sleep(timing.interval).await;
        };
        let end = match end {
            Some(end) => end,
            None => {
                rec.record(&name, Seen::Live);
                link.run().await
            }
        };
        rec.record(&name, Seen::Ended(end.clone()));
        if end == LinkEnd::Cancel && link.report(Report::Canceled).await.is_ok() {
            rec.record(&name, Seen::Reported);
        }
    });
}

fn when(rec: &Recorder<Seen>, node: &str, pred: impl Fn(&Seen) -> bool) -> Option<foreman::core::time::Time> {
    rec.events().into_iter().find(|(_, n, s)| n == node && pred(s)).map(|(at, _, _)| at)
}

/// Cut off one way from its master, a worker fences itself strictly before its master declares it lost.
#[madsim::test]
async fn a_cut_off_worker_fences_itself_before_its_master_declares_it_lost() {
    announce("a_cut_off_worker_fences_itself_before_its_master_declares_it_lost");
    let rec = Recorder::new(Clock::start());
    let timing = HeartbeatTiming::worker_default();
    let hosted = host(&rec, timing, &[("w1", 3)], None).await;
    worker(&rec, "w1", "10.0.4.2", "w1", 3, timing);
    let cut_after = Duration::from_millis(madsim::rand::thread_rng().gen_range(2_000..6_000));
    tokio::time::sleep(cut_after).await;
    assert!(when(&rec, "w1", |s| *s == Seen::Live).is_some(), "w1 never became live");
    let net = madsim::net::NetSim::current();
    let (w, h) = (node_id("w1"), node_id("host"));
    if madsim::rand::thread_rng().gen_bool(0.5) {
        net.clog_link(w, h); // its heartbeats do not arrive
    } else {
        net.clog_link(h, w); // they arrive, the replies do not: the master keeps it, it fences anyway (safe side)
    }
    tokio::time::sleep(timing.offline_ttl + Duration::from_secs(3)).await;
    let fenced = when(&rec, "w1", |s| *s == Seen::Ended(LinkEnd::Fenced)).expect("w1 fenced itself");
    if let Some(lost) = when(&rec, "host", |s| matches!(s, Seen::Master(Event::Lost { .. }))) {
        assert!(fenced < lost, "w1 fenced at {fenced}, after its master declared it lost at {lost}");
    }
    let _ = hosted;
}

/// A revoked incarnation is told it is stale and stops. A worker epoch the master never issued is refused and
/// changes nothing while the issuer shows no newer master; once it shows one, the master learns it is superseded.
#[madsim::test]
async fn stale_incarnations_are_told_and_stop() {
    announce("stale_incarnations_are_told_and_stop");
    let rec = Recorder::new(Clock::start());
    let timing = HeartbeatTiming::worker_default();
    let store = foreman::meta::MetaStore::embedded("framework-link", None).expect("an embedded store");
    let fence = foreman::meta::keys::job_master(MASTER);
    let issue = |epoch: u64| {
        let (store, key) = (store.clone(), fence.clone());
        async move {
            let op = foreman::meta::Op::Put { key, value: epoch.to_string().into_bytes(), lease: None };
            assert!(store.txn(&[], &[op]).await.expect("an embedded write"));
        }
    };
    issue(5).await;
    let issuer = Issuer { store: store.clone(), key: fence.clone() };
    let hosted = host(&rec, timing, &[("w1", 3)], Some(issuer)).await;
    worker(&rec, "w1", "10.0.4.2", "w1", 3, timing);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(when(&rec, "w1", |s| *s == Seen::Live).is_some(), "w1 never became live");
    hosted.lock().workers.revoke(&TaskId::parse("w1").unwrap(), Epoch(3));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(when(&rec, "w1", |s| *s == Seen::Ended(LinkEnd::Stale)).is_some(), "the revoked w1 did not stop");
    // An incarnation the master never created (a newer epoch than it issued), while no newer master exists: its
    // messages are refused, so it never becomes live, and the master carries on.
    hosted
        .lock()
        .workers
        .on_dispatched(foreman::core::time::Time::ZERO, &TaskId::parse("w2").unwrap(), Epoch(4))
        .unwrap();
    worker(&rec, "w2b", "10.0.4.3", "w2", u64::MAX, timing);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(when(&rec, "w2b", |s| *s == Seen::Live).is_none(), "a never-issued epoch became live");
    assert!(!hosted.lock().workers.is_superseded(), "a never-issued worker epoch superseded the master");
    // Once a newer master exists (the issuer shows epoch 6), a newer worker epoch is believed: nothing panics, the
    // master learns it is superseded.
    issue(6).await;
    worker(&rec, "w2c", "10.0.4.4", "w2", 9, timing);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(hosted.lock().workers.is_superseded(), "a confirmed newer worker epoch must mark the master superseded");
}

/// A cancel reaches the worker on its next heartbeat; its Canceled report is acknowledged and ends it.
#[madsim::test]
async fn a_cancel_is_honoured_and_its_report_acknowledged() {
    announce("a_cancel_is_honoured_and_its_report_acknowledged");
    let rec = Recorder::new(Clock::start());
    let timing = HeartbeatTiming::worker_default();
    let hosted = host(&rec, timing, &[("w1", 3)], None).await;
    worker(&rec, "w1", "10.0.4.2", "w1", 3, timing);
    tokio::time::sleep(Duration::from_secs(3)).await;
    hosted.lock().cancel.insert(TaskId::parse("w1").unwrap());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(when(&rec, "w1", |s| *s == Seen::Reported).is_some(), "w1 did not report its cancel");
    let exited = rec.events().into_iter().any(|(_, n, s)| {
        n == "host" && matches!(s, Seen::Master(Event::Exited { status: WorkerStatus::Canceled, .. }))
    });
    assert!(exited, "the master did not record w1's exit");
}

fn node_id(name: &str) -> madsim::task::NodeId {
    Handle::current().get_node(name).unwrap_or_else(|| panic!("no node {name}")).id()
}
