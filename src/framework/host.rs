//! The master side of the framework protocol for masters hosted on an executor (job masters): one `Framework`
//! service per executor routes each message by its master id to that master's core [`Workers`] bookkeeping and
//! queues the resulting events for the master to take. A message for a master this host does not run is told its
//! worker is stale: nobody here can vouch for it.
//!
//! A message claiming that someone newer than the hosted master exists ([`Workers::claim`]) is believed only when
//! the master's [`Issuer`] (the metastore key where the leader records the job's current job-master epoch) shows
//! a newer master; otherwise it is refused (`INVALID_ARGUMENT`) and changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::clock::Clock;
use crate::core::ids::{Epoch, TaskId};
use crate::core::workers::{Claim, Event, Message, Reply, Verdict, WorkerStatus, Workers};
use crate::meta::MetaStore;
use crate::rpc::pb;
use crate::rpc::status::{invalid_argument, Reason};

/// Where the newest epoch of a hosted master is durably issued: a metastore key holding it as a decimal (for a
/// job master, `job-masters/<job>`, which the leader writes as it starts each incarnation).
#[derive(Clone, Debug)]
pub struct Issuer {
    pub store: MetaStore,
    pub key: String,
}

impl Issuer {
    /// The newest master epoch issued (none when the key is gone), read within `timeout`.
    async fn newest(&self, timeout: std::time::Duration) -> Result<Epoch, Status> {
        let unavailable =
            |why: String| Reason::MetastoreUnavailable.status(format!("cannot check the epoch claimed: {why}; retry"));
        let read = tokio::time::timeout(timeout, self.store.get(&self.key))
            .await
            .map_err(|_| unavailable("the metastore did not answer in time".to_owned()))?
            .map_err(|e| unavailable(e.to_string()))?;
        match read {
            None => Ok(Epoch::NONE),
            Some(v) => crate::meta::parse_counter(&self.key, &v).map(Epoch).map_err(|e| unavailable(e.to_string())),
        }
    }
}

/// One hosted master's bookkeeping, events not yet taken, the workers it wants canceled, and what each worker
/// last said of its progress.
pub struct Hosted {
    pub workers: Workers,
    pub events: Vec<Event>,
    pub cancel: BTreeSet<TaskId>,
    pub progress: BTreeMap<TaskId, String>,
    /// Who can confirm a claim of a newer master; without one, every such claim is refused.
    pub issuer: Option<Issuer>,
    /// The master's status document as it last published it (none before its first): `QueryJobMaster` answers
    /// from here without a round trip into the master's loop.
    pub status: Option<Published>,
    /// Where each worker's newest incarnation was placed: its epoch and its executor's name. Reports of that
    /// incarnation are believed from that executor only.
    pub placed_on: BTreeMap<TaskId, (Epoch, String)>,
}

/// A status document a hosted master published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// The master incarnation that made it.
    pub epoch: Epoch,
    /// The document, JSON, at most [`crate::core::job_status::STATUS_DOCUMENT_MAX`] bytes.
    pub document: String,
}

/// How a message was taken.
enum Handled {
    Reply(Reply, bool),
    /// It claims someone newer than the hosted master exists, and nothing confirmed it (yet): nothing changed.
    Claim {
        claim: Claim,
        issuer: Option<Issuer>,
        timeout: std::time::Duration,
    },
}

/// A hosted master's handle: its bookkeeping, and a signal when events arrive.
#[derive(Clone)]
pub struct HostedHandle {
    state: Arc<Mutex<Hosted>>,
    pub wake: Arc<Notify>,
}

impl HostedHandle {
    pub fn lock(&self) -> MutexGuard<'_, Hosted> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the events queued so far, in arrival order.
    pub fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut self.lock().events)
    }
}

/// A message a hosted master accepted, for observers (design.md §5 rule 2's checker): the master incarnation that
/// took it, and the worker incarnation that sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heard {
    pub master: String,
    pub master_epoch: Epoch,
    pub worker: TaskId,
    pub worker_epoch: Epoch,
}

/// Receives what hosted masters accepted; must not block.
pub type HeardObserver = Arc<dyn Fn(Heard) + Send + Sync>;

/// The executor's router of framework messages to the masters it hosts.
#[derive(Clone)]
pub struct Host {
    masters: Arc<Mutex<BTreeMap<String, HostedHandle>>>,
    clock: Clock,
    observer: Option<HeardObserver>,
    /// The simulation's fault points (inert in production).
    fault_points: crate::buggify::FaultPoints,
}

/// Routing for one hosted master, ended when dropped (so a master stopped by having its future dropped stops
/// being routed to at once).
pub struct Hosting {
    host: Host,
    master_id: String,
    handle: HostedHandle,
}

impl Hosting {
    pub fn handle(&self) -> &HostedHandle {
        &self.handle
    }
}

impl Drop for Hosting {
    fn drop(&mut self) {
        let mut table = self.host.table();
        if table.get(&self.master_id).is_some_and(|h| Arc::ptr_eq(&h.state, &self.handle.state)) {
            table.remove(&self.master_id);
        }
    }
}

impl Host {
    pub fn new(clock: Clock) -> Host {
        Host { masters: Arc::new(Mutex::new(BTreeMap::new())), clock, observer: None, fault_points: Default::default() }
    }

    /// The same host with the executor's fault points: a job master's answers to its workers may leave late.
    pub fn with_fault_points(mut self, fault_points: crate::buggify::FaultPoints) -> Host {
        self.fault_points = fault_points;
        self
    }

    /// The same host, telling `observer` of every message a hosted master accepts.
    pub fn observed_by(mut self, observer: Option<HeardObserver>) -> Host {
        self.observer = observer;
        self
    }

    /// Routes messages for `master_id` to `workers` until the returned guard is dropped. A newer incarnation of
    /// the same master replaces an older one's routing (the older one's guard then removes nothing). `issuer`
    /// confirms claims of a newer master.
    pub fn host(&self, master_id: &str, workers: Workers, issuer: Option<Issuer>) -> Hosting {
        Hosting { host: self.clone(), master_id: master_id.to_owned(), handle: self.add(master_id, workers, issuer) }
    }

    fn table(&self) -> MutexGuard<'_, BTreeMap<String, HostedHandle>> {
        self.masters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts routing messages for `master_id` to `workers` (a fresh or recovering bookkeeping).
    pub fn add(&self, master_id: &str, workers: Workers, issuer: Option<Issuer>) -> HostedHandle {
        let h = HostedHandle {
            state: Arc::new(Mutex::new(Hosted {
                workers,
                events: vec![],
                cancel: BTreeSet::new(),
                progress: BTreeMap::new(),
                issuer,
                status: None,
                placed_on: BTreeMap::new(),
            })),
            wake: Arc::new(Notify::new()),
        };
        self.table().insert(master_id.to_owned(), h.clone());
        h
    }

    /// Stops routing for `master_id` (it stopped): its workers are told they are stale from now on.
    pub fn remove(&self, master_id: &str) {
        self.table().remove(master_id);
    }

    pub fn get(&self, master_id: &str) -> Option<HostedHandle> {
        self.table().get(master_id).cloned()
    }

    /// Takes a message and answers it: a claim of a newer master is checked with the hosted master's issuer
    /// first, and refused unless the newest epoch it issued confirms it.
    async fn serve(
        &self,
        master_id: &str,
        msg: &Message,
        status: Option<WorkerStatus>,
        progress: &str,
    ) -> Result<(Reply, bool), Status> {
        let (issuer, timeout) = match self.handle(master_id, msg, status.clone(), progress, None) {
            Handled::Reply(reply, cancel) => return Ok((reply, cancel)),
            Handled::Claim { issuer, timeout, .. } => (issuer, timeout),
        };
        let newest = match &issuer {
            Some(issuer) => issuer.newest(timeout).await?,
            None => Epoch::NONE,
        };
        // Judged again with what the bookkeeping holds now (the read took a while).
        match self.handle(master_id, msg, status, progress, Some(newest)) {
            Handled::Reply(reply, cancel) => Ok((reply, cancel)),
            Handled::Claim { claim, .. } => {
                tracing::debug!(master = master_id, ?claim, newest = newest.0, "an epoch claim was not confirmed");
                Err(invalid_argument(claim.field(), claim))
            }
        }
    }

    /// A worker's message is believed only from the executor its incarnation was placed on, when this host knows
    /// it (an incarnation it does not know, an older one say, is answered by the bookkeeping as it is: stale).
    fn check_host(&self, caller: &crate::core::auth::Principal, master_id: &str, msg: &Message) -> Result<(), Status> {
        let host = self.table().get(master_id).and_then(|h| {
            let state = h.state.lock().unwrap_or_else(|p| p.into_inner());
            state.placed_on.get(&msg.task).filter(|(epoch, _)| *epoch == msg.worker_epoch).map(|(_, n)| n.clone())
        });
        let Some(host) = host.filter(|h| !h.is_empty()) else { return Ok(()) };
        let action = crate::core::auth::Action::ReportToJobMaster { host: Some(host) };
        crate::core::auth::authorize(caller, &action, crate::rpc::identity::mode()).map_err(Status::from)
    }

    /// Feeds a message to the hosted master's bookkeeping, unless it claims someone newer exists and `newest` (the
    /// newest master epoch its issuer issued, once read) does not confirm the claim: then nothing changes.
    fn handle(
        &self,
        master_id: &str,
        msg: &Message,
        status: Option<WorkerStatus>,
        progress: &str,
        newest: Option<Epoch>,
    ) -> Handled {
        let Some(h) = self.get(master_id) else {
            let reply = Reply { verdict: Verdict::StaleWorker, master_epoch: Epoch::NONE, worker_epoch: Epoch::NONE };
            return Handled::Reply(reply, false);
        };
        let now = self.clock.now();
        let (reply, cancel) = {
            let mut hosted = h.lock();
            if let Some(claim) = hosted.workers.claim(msg) {
                let mine = hosted.workers.master_epoch();
                if !newest.is_some_and(|newest| claim.confirmed_by(mine, newest)) {
                    let timeout = hosted.workers.timing().timeout;
                    return Handled::Claim { claim, issuer: hosted.issuer.clone(), timeout };
                }
            }
            let (reply, events) = match status {
                Some(s) => hosted.workers.on_status(now, msg, s),
                None => hosted.workers.on_heartbeat(now, msg),
            };
            if reply.verdict == Verdict::Accepted && !progress.is_empty() {
                hosted.progress.insert(msg.task.clone(), progress.to_owned());
            }
            let cancel = reply.verdict == Verdict::Accepted && hosted.cancel.contains(&msg.task);
            let any = !events.is_empty();
            hosted.events.extend(events);
            drop(hosted);
            if any {
                h.wake.notify_one();
            }
            if let Some(observe) = self.observer.as_ref().filter(|_| reply.verdict == Verdict::Accepted) {
                let (master, worker) = (master_id.to_owned(), msg.task.clone());
                observe(Heard { master, master_epoch: reply.master_epoch, worker, worker_epoch: msg.worker_epoch });
            }
            (reply, cancel)
        };
        Handled::Reply(reply, cancel)
    }
}

/// A framework message from the wire.
pub fn message(worker_id: &str, master_epoch: u64, worker_epoch: u64) -> Result<Message, Status> {
    let task = TaskId::parse(worker_id).map_err(|e| invalid_argument("worker_id", e))?;
    Ok(Message { task, master_epoch: Epoch(master_epoch), worker_epoch: Epoch(worker_epoch) })
}

/// A verdict for the wire.
pub fn verdict(v: Verdict) -> i32 {
    match v {
        Verdict::Accepted => pb::Verdict::Accepted as i32,
        Verdict::StaleWorker => pb::Verdict::StaleWorker as i32,
        Verdict::StaleMaster => pb::Verdict::StaleMaster as i32,
    }
}

/// A terminal status from the wire.
pub fn worker_status(s: Option<&pb::WorkerStatus>) -> Result<WorkerStatus, Status> {
    let Some(s) = s else { return Err(invalid_argument("status", "is required")) };
    Ok(match pb::WorkerState::try_from(s.state) {
        Ok(pb::WorkerState::Running) => WorkerStatus::Running,
        Ok(pb::WorkerState::Finished) => WorkerStatus::Finished,
        Ok(pb::WorkerState::Canceled) => WorkerStatus::Canceled,
        Ok(pb::WorkerState::Failed) => {
            if s.error_message.len() > super::ERROR_MESSAGE_MAX {
                return Err(invalid_argument(
                    "status.error_message",
                    format!("is {} bytes; at most {} are allowed", s.error_message.len(), super::ERROR_MESSAGE_MAX),
                ));
            }
            WorkerStatus::Failed { message: s.error_message.clone(), retryable: s.retryable }
        }
        Ok(pb::WorkerState::Stopped) => WorkerStatus::Stopped,
        _ => return Err(invalid_argument("status.state", format!("{} is not a worker state", s.state))),
    })
}

impl Host {
    /// The status `master_id` last published: refused (`JOB_MASTER_NOT_HOSTED`, saying which) when this host
    /// runs no such master or it has published none yet.
    pub fn published(&self, master_id: &str) -> Result<Published, Status> {
        let Some(h) = self.get(master_id) else {
            let what = crate::core::text::quote(master_id);
            return Err(Reason::JobMasterNotHosted.status(format!("this executor hosts no master {what} now")));
        };
        let published = h.lock().status.clone();
        published.ok_or_else(|| {
            let what = crate::core::text::quote(master_id);
            Reason::JobMasterNotHosted.status(format!("master {what} has published no status yet; retry"))
        })
    }
}

#[tonic::async_trait]
impl pb::framework_server::Framework for Host {
    async fn query_job_master(
        &self,
        req: Request<pb::QueryJobMasterRequest>,
    ) -> Result<Response<pb::QueryJobMasterResponse>, Status> {
        crate::rpc::identity::check(&req, &crate::core::auth::Action::ReadCluster)?;
        let p = self.published(&req.get_ref().master_id)?;
        Ok(Response::new(pb::QueryJobMasterResponse { master_epoch: p.epoch.0, document: p.document }))
    }

    async fn worker_heartbeat(
        &self,
        req: Request<pb::WorkerHeartbeatRequest>,
    ) -> Result<Response<pb::WorkerHeartbeatResponse>, Status> {
        let caller = crate::rpc::identity::check(&req, &crate::core::auth::Action::ReportToJobMaster { host: None })?;
        let r = req.into_inner();
        let msg = message(&r.worker_id, r.master_epoch, r.worker_epoch)?;
        self.check_host(&caller, &r.master_id, &msg)?;
        let progress = super::progress_from_wire(&r.progress)?;
        let (reply, cancel) = self.serve(&r.master_id, &msg, None, &progress).await?;
        // Decided, not yet sent: the worker hears an answer that may be stale by then.
        crate::buggify::point(&self.fault_points, crate::buggify::Point::JobMasterReply).await;
        let command = if cancel { pb::Command::Cancel } else { pb::Command::Continue };
        Ok(Response::new(pb::WorkerHeartbeatResponse {
            verdict: verdict(reply.verdict),
            master_epoch: reply.master_epoch.0,
            worker_epoch: reply.worker_epoch.0,
            command: command as i32,
        }))
    }

    async fn report_worker_status(
        &self,
        req: Request<pb::ReportWorkerStatusRequest>,
    ) -> Result<Response<pb::ReportWorkerStatusResponse>, Status> {
        let caller = crate::rpc::identity::check(&req, &crate::core::auth::Action::ReportToJobMaster { host: None })?;
        let r = req.into_inner();
        let msg = message(&r.worker_id, r.master_epoch, r.worker_epoch)?;
        self.check_host(&caller, &r.master_id, &msg)?;
        let status = worker_status(r.status.as_ref())?;
        let progress = super::progress_from_wire(&r.progress)?;
        let (reply, _) = self.serve(&r.master_id, &msg, Some(status), &progress).await?;
        crate::buggify::point(&self.fault_points, crate::buggify::Point::JobMasterReply).await;
        Ok(Response::new(pb::ReportWorkerStatusResponse {
            verdict: verdict(reply.verdict),
            master_epoch: reply.master_epoch.0,
            worker_epoch: reply.worker_epoch.0,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::timing::HeartbeatTiming;
    use crate::rpc::status::reason_of;

    fn msg(task: &str, worker_epoch: u64) -> Message {
        Message { task: TaskId::parse(task).unwrap(), master_epoch: Epoch(7), worker_epoch: Epoch(worker_epoch) }
    }

    /// A message as the service takes it when it claims nothing newer (a claim here fails the test).
    fn answer(host: &Host, master: &str, m: &Message, progress: &str) -> (Reply, bool) {
        match host.handle(master, m, None, progress, None) {
            Handled::Reply(reply, cancel) => (reply, cancel),
            Handled::Claim { claim, .. } => panic!("{m:?} claims {claim:?}"),
        }
    }

    #[test]
    fn routing_ends_with_the_guard_and_an_older_guard_removes_nothing() {
        let host = Host::new(Clock::start());
        let timing = HeartbeatTiming::worker_default();
        let mut first = Workers::new(Epoch(7), timing);
        first.on_dispatched(crate::core::time::Time::ZERO, &TaskId::parse("j/w0").unwrap(), Epoch(70)).unwrap();
        let old = host.host("j", first, None);
        // A message for a master this host does not run: the worker is told it is stale.
        assert_eq!(answer(&host, "other", &msg("j/w0", 70), "").0.verdict, Verdict::StaleWorker);
        // The hosted master accepts its worker, keeps its progress, and queues the event.
        let (reply, cancel) = answer(&host, "j", &msg("j/w0", 70), "3/10");
        assert_eq!((reply.verdict, cancel), (Verdict::Accepted, false));
        assert_eq!(old.handle().lock().progress.values().cloned().collect::<Vec<_>>(), vec!["3/10".to_owned()]);
        assert_eq!(old.handle().take_events().len(), 1);
        // A newer incarnation of the same master takes over the routing; dropping the older guard leaves it.
        let new = host.host("j", Workers::new(Epoch(8), timing), None);
        drop(old);
        assert!(host.get("j").is_some_and(|h| Arc::ptr_eq(&h.state, &new.handle().state)));
        // Queries are answered from what the hosted incarnation published, and refused when there is nothing.
        assert_eq!(host.published("j").unwrap_err().code(), tonic::Code::NotFound);
        let doc = Published { epoch: Epoch(8), document: "{}".into() };
        new.handle().lock().status = Some(doc.clone());
        assert_eq!(host.published("j").unwrap(), doc);
        let missing = host.published("other").unwrap_err();
        assert_eq!((missing.code(), reason_of(&missing)), (tonic::Code::NotFound, Some(Reason::JobMasterNotHosted)));
        drop(new);
        assert!(host.get("j").is_none());
        assert_eq!(host.published("j").unwrap_err().code(), tonic::Code::NotFound);
        assert_eq!(answer(&host, "j", &msg("j/w0", 70), "").0.verdict, Verdict::StaleWorker);
    }

    #[test]
    fn a_failed_status_says_whether_running_the_worker_again_may_help() {
        let failed = |retryable| pb::WorkerStatus {
            state: pb::WorkerState::Failed as i32,
            error_message: "disk full".into(),
            retryable,
            ..Default::default()
        };
        for retryable in [false, true] {
            let got = worker_status(Some(&failed(retryable))).unwrap();
            assert_eq!(got, WorkerStatus::Failed { message: "disk full".into(), retryable });
        }
        // A sender from before the field says nothing of it: not retryable.
        let old = pb::WorkerStatus { state: pb::WorkerState::Failed as i32, ..Default::default() };
        assert_eq!(
            worker_status(Some(&old)).unwrap(),
            WorkerStatus::Failed { message: String::new(), retryable: false }
        );
        // Recorded statuses from before the field read it as false too.
        let stored: WorkerStatus = serde_json::from_str(r#"{"Failed":{"message":"x"}}"#).unwrap();
        assert_eq!(stored, WorkerStatus::Failed { message: "x".into(), retryable: false });
    }

    #[test]
    fn a_worker_asked_to_cancel_hears_it_on_its_next_accepted_heartbeat() {
        let host = Host::new(Clock::start());
        let mut w = Workers::new(Epoch(7), HeartbeatTiming::worker_default());
        let task = TaskId::parse("j/w1").unwrap();
        w.on_dispatched(crate::core::time::Time::ZERO, &task, Epoch(71)).unwrap();
        let hosting = host.host("j", w, None);
        hosting.handle().lock().cancel.insert(task);
        assert!(answer(&host, "j", &msg("j/w1", 71), "").1);
        // A stale incarnation is not told to cancel: it is told to stop.
        let (reply, cancel) = answer(&host, "j", &msg("j/w1", 70), "");
        assert_eq!((reply.verdict, cancel), (Verdict::StaleWorker, false));
    }

    // The production runtime only: the simulation runs its tests in the simulator.
    #[cfg(not(madsim))]
    #[tokio::test]
    async fn a_claim_of_a_newer_master_is_believed_only_when_the_issuer_shows_one() {
        let host = Host::new(Clock::start());
        let store = MetaStore::embedded("host-claims", None).unwrap();
        let issuer = Issuer { store: store.clone(), key: crate::meta::keys::job_master("j") };
        let put = |epoch: u64| {
            let store = store.clone();
            let op = crate::meta::Op::Put {
                key: crate::meta::keys::job_master("j"),
                value: epoch.to_string().into_bytes(),
                lease: None,
            };
            async move { assert!(store.txn(&[], &[op]).await.unwrap()) }
        };
        put(7).await;
        let mut w = Workers::new(Epoch(7), HeartbeatTiming::worker_default());
        w.on_dispatched(crate::core::time::Time::ZERO, &TaskId::parse("j/w0").unwrap(), Epoch(7_000_001)).unwrap();
        let hosting = host.host("j", w, Some(issuer));
        let bogus = [
            ("worker_epoch", Message { worker_epoch: Epoch(u64::MAX), ..msg("j/w0", 0) }),
            ("master_epoch", Message { master_epoch: Epoch(u64::MAX), ..msg("j/w0", 7_000_001) }),
            ("master_epoch", Message { master_epoch: Epoch(8), ..msg("j/w0", 7_000_001) }),
        ];
        // The issuer shows this master (7) is the newest: each claim is refused, naming its field, and changes
        // nothing; the worker's own heartbeat is still accepted.
        for (field, m) in &bogus {
            let refused = host.serve("j", m, None, "").await.unwrap_err();
            assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{m:?}");
            assert!(refused.message().starts_with(&format!("{field}: ")), "{}", refused.message());
            assert!(refused.message().contains("never issued"), "{}", refused.message());
        }
        assert!(!hosting.handle().lock().workers.is_superseded());
        assert!(hosting.handle().take_events().is_empty());
        let (reply, _) = host.serve("j", &msg("j/w0", 7_000_001), None, "").await.unwrap();
        assert_eq!(reply.verdict, Verdict::Accepted);
        // Once the leader started job master 8, the same claims are true: this master is superseded.
        put(8).await;
        let (reply, _) = host.serve("j", &bogus[2].1, None, "").await.unwrap();
        assert_eq!(reply.verdict, Verdict::StaleMaster);
        assert!(hosting.handle().lock().workers.is_superseded());
        // Without an issuer nothing can confirm a claim.
        let mut w = Workers::new(Epoch(7), HeartbeatTiming::worker_default());
        w.on_dispatched(crate::core::time::Time::ZERO, &TaskId::parse("k/w0").unwrap(), Epoch(7_000_001)).unwrap();
        let _k = host.host("k", w, None);
        let m = Message { worker_epoch: Epoch(u64::MAX), ..msg("k/w0", 0) };
        assert_eq!(host.serve("k", &m, None, "").await.unwrap_err().code(), tonic::Code::InvalidArgument);
    }
}
