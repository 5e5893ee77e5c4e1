//! The master side of the framework protocol for masters hosted on an executor (job masters): one `Framework`
//! service per executor routes each message by its master id to that master's core [`Workers`] bookkeeping and
//! queues the resulting events for the master to take. A message for a master this host does not run is told its
//! worker is stale: nobody here can vouch for it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::clock::Clock;
use crate::core::ids::{Epoch, TaskId};
use crate::core::workers::{Event, Message, Reply, Verdict, WorkerStatus, Workers};
use crate::rpc::pb;
use crate::rpc::status::invalid_argument;

/// One hosted master's bookkeeping, events not yet taken, the workers it wants canceled, and what each worker
/// last said of its progress.
pub struct Hosted {
    pub workers: Workers,
    pub events: Vec<Event>,
    pub cancel: BTreeSet<TaskId>,
    pub progress: BTreeMap<TaskId, String>,
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

/// The executor's router of framework messages to the masters it hosts.
#[derive(Clone)]
pub struct Host {
    masters: Arc<Mutex<BTreeMap<String, HostedHandle>>>,
    clock: Clock,
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
        Host { masters: Arc::new(Mutex::new(BTreeMap::new())), clock }
    }

    /// Routes messages for `master_id` to `workers` until the returned guard is dropped. A newer incarnation of
    /// the same master replaces an older one's routing (the older one's guard then removes nothing).
    pub fn host(&self, master_id: &str, workers: Workers) -> Hosting {
        Hosting { host: self.clone(), master_id: master_id.to_owned(), handle: self.add(master_id, workers) }
    }

    fn table(&self) -> MutexGuard<'_, BTreeMap<String, HostedHandle>> {
        self.masters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts routing messages for `master_id` to `workers` (a fresh or recovering bookkeeping).
    pub fn add(&self, master_id: &str, workers: Workers) -> HostedHandle {
        let h = HostedHandle {
            state: Arc::new(Mutex::new(Hosted {
                workers,
                events: vec![],
                cancel: BTreeSet::new(),
                progress: BTreeMap::new(),
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

    fn handle(&self, master_id: &str, msg: &Message, status: Option<WorkerStatus>, progress: &str) -> (Reply, bool) {
        let Some(h) = self.get(master_id) else {
            let reply = Reply { verdict: Verdict::StaleWorker, master_epoch: Epoch::NONE, worker_epoch: Epoch::NONE };
            return (reply, false);
        };
        let now = self.clock.now();
        let (reply, cancel) = {
            let mut hosted = h.lock();
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
            (reply, cancel)
        };
        (reply, cancel)
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
            WorkerStatus::Failed { message: s.error_message.clone() }
        }
        Ok(pb::WorkerState::Stopped) => WorkerStatus::Stopped,
        _ => return Err(invalid_argument("status.state", format!("{} is not a worker state", s.state))),
    })
}

#[tonic::async_trait]
impl pb::framework_server::Framework for Host {
    async fn worker_heartbeat(
        &self,
        req: Request<pb::WorkerHeartbeatRequest>,
    ) -> Result<Response<pb::WorkerHeartbeatResponse>, Status> {
        let r = req.into_inner();
        let msg = message(&r.worker_id, r.master_epoch, r.worker_epoch)?;
        let progress = super::progress_from_wire(&r.progress)?;
        let (reply, cancel) = self.handle(&r.master_id, &msg, None, &progress);
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
        let r = req.into_inner();
        let msg = message(&r.worker_id, r.master_epoch, r.worker_epoch)?;
        let status = worker_status(r.status.as_ref())?;
        let progress = super::progress_from_wire(&r.progress)?;
        let (reply, _) = self.handle(&r.master_id, &msg, Some(status), &progress);
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

    fn msg(task: &str, worker_epoch: u64) -> Message {
        Message { task: TaskId::parse(task).unwrap(), master_epoch: Epoch(7), worker_epoch: Epoch(worker_epoch) }
    }

    #[test]
    fn routing_ends_with_the_guard_and_an_older_guard_removes_nothing() {
        let host = Host::new(Clock::start());
        let timing = HeartbeatTiming::worker_default();
        let mut first = Workers::new(Epoch(7), timing);
        first.on_dispatched(crate::core::time::Time::ZERO, &TaskId::parse("j/w0").unwrap(), Epoch(70)).unwrap();
        let old = host.host("j", first);
        // A message for a master this host does not run: the worker is told it is stale.
        assert_eq!(host.handle("other", &msg("j/w0", 70), None, "").0.verdict, Verdict::StaleWorker);
        // The hosted master accepts its worker, keeps its progress, and queues the event.
        let (reply, cancel) = host.handle("j", &msg("j/w0", 70), None, "3/10");
        assert_eq!((reply.verdict, cancel), (Verdict::Accepted, false));
        assert_eq!(old.handle().lock().progress.values().cloned().collect::<Vec<_>>(), vec!["3/10".to_owned()]);
        assert_eq!(old.handle().take_events().len(), 1);
        // A newer incarnation of the same master takes over the routing; dropping the older guard leaves it.
        let new = host.host("j", Workers::new(Epoch(8), timing));
        drop(old);
        assert!(host.get("j").is_some_and(|h| Arc::ptr_eq(&h.state, &new.handle().state)));
        drop(new);
        assert!(host.get("j").is_none());
        assert_eq!(host.handle("j", &msg("j/w0", 70), None, "").0.verdict, Verdict::StaleWorker);
    }

    #[test]
    fn a_worker_asked_to_cancel_hears_it_on_its_next_accepted_heartbeat() {
        let host = Host::new(Clock::start());
        let mut w = Workers::new(Epoch(7), HeartbeatTiming::worker_default());
        let task = TaskId::parse("j/w1").unwrap();
        w.on_dispatched(crate::core::time::Time::ZERO, &task, Epoch(71)).unwrap();
        let hosting = host.host("j", w);
        hosting.handle().lock().cancel.insert(task);
        assert!(host.handle("j", &msg("j/w1", 71), None, "").1);
        // A stale incarnation is not told to cancel: it is told to stop.
        let (reply, cancel) = host.handle("j", &msg("j/w1", 70), None, "");
        assert_eq!((reply.verdict, cancel), (Verdict::StaleWorker, false));
    }
}
