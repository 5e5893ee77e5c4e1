//! The worker side of the framework protocol: a job master towards the job manager, a worker towards its job
//! master. A [`Link`] heartbeats the master every interval with a deadline on each call, keeps a core
//! [`SelfFence`] anchored at the send time of acknowledged heartbeats, and says when its task must stop: fenced (no
//! acknowledgement for the self-fence time), told it is stale, or told to cancel. [`Link::run`] races the
//! heartbeats against the fence deadline, so the task stops at the deadline itself, never a round later.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;
use crate::core::fence::SelfFence;
use crate::core::ids::{Epoch, TaskId};
use crate::core::job::LastError;
use crate::core::planted::{Planted, Plants};
use crate::core::time::Time;
use crate::core::timing::HeartbeatTiming;
use crate::rpc::pb;
use crate::rpc::pb::framework_client::FrameworkClient;

/// What a link needs to know, from the dispatch that created its task.
#[derive(Clone, Debug)]
pub struct LinkSpec {
    /// Which master this worker belongs to (a job id, or the job manager's id).
    pub master_id: String,
    /// Where that master can be reached, tried in turn (any master process forwards to the leader).
    pub addresses: Vec<String>,
    /// The master epoch known at creation.
    pub master_epoch: Epoch,
    pub worker: TaskId,
    pub worker_epoch: Epoch,
    pub timing: HeartbeatTiming,
    /// Who the link's calls come from: the executor hosting the task.
    pub identity: crate::rpc::identity::Identity,
    /// A job master's: its executor's carrier. While the leader asks for it, the heartbeats ride on the executor's
    /// own (`super::carrier`) instead of being calls of their own.
    pub carrier: Option<super::carrier::Carrier>,
}

/// Why a task must stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEnd {
    /// No heartbeat was acknowledged for the self-fence time.
    Fenced,
    /// The master no longer knows this incarnation, or knows a newer one.
    Stale,
    /// The master asked it to cancel.
    Cancel,
}

/// A terminal status to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    Finished,
    Canceled,
    /// It cannot go on; `retryable` when running it again may help.
    Failed {
        message: String,
        retryable: bool,
    },
    /// Stopped at a checkpoint because the executor is leaving; not finished.
    Stopped,
}

/// What a task says of its progress in its heartbeats (and a job master, of the last error its job got over);
/// cheap to clone and set from the task's work.
#[derive(Clone, Default)]
pub struct Progress(Arc<Mutex<(String, Option<LastError>)>>);

impl Progress {
    /// Sets the text sent from now on, cut to [`super::PROGRESS_MAX`] bytes at a character boundary (a master
    /// refuses a longer one).
    pub fn set(&self, text: String) {
        let text = if text.len() > super::PROGRESS_MAX { super::progress_text(&text) } else { text };
        self.0.lock().unwrap_or_else(|p| p.into_inner()).0 = text;
    }

    pub fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).0.clone()
    }

    /// Sets the last error sent from now on, its message cut to [`super::ERROR_MESSAGE_MAX`] bytes.
    pub fn set_last_error(&self, mut error: LastError) {
        error.message = super::error_message_text(&error.message);
        self.0.lock().unwrap_or_else(|p| p.into_inner()).1 = Some(error);
    }

    pub fn last_error(&self) -> Option<LastError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).1.clone()
    }
}

/// One worker's link to its master.
pub struct Link {
    spec: LinkSpec,
    clock: Clock,
    fence: SelfFence<Epoch>,
    which: usize,
    /// The channel to the master `which` names, kept from call to call (a connection, and with TLS a handshake,
    /// per heartbeat otherwise); dropped when that master is passed over.
    channel: Option<tonic::transport::Channel>,
    live: bool,
    progress: Progress,
    /// A planted bug (simulation only): the link never fences.
    ignore_fence: bool,
    /// The guard switches of the simulation's bug-finding runs (none in production).
    plants: Plants,
    /// The hosting executor's fault points (the simulation's holds; inert in production).
    points: crate::buggify::FaultPoints,
}

impl Link {
    /// A link whose fence counts from `since` (when the task's dispatch was confirmed, at the latest now): with
    /// no acknowledgement, the task stops the self-fence time after it.
    pub fn new(spec: LinkSpec, clock: Clock, since: crate::core::time::Time) -> Link {
        let fence = SelfFence::new(since.min(clock.now()), spec.timing.self_fence);
        let mut link = Link {
            spec,
            clock,
            fence,
            which: 0,
            channel: None,
            live: false,
            progress: Progress::default(),
            ignore_fence: false,
            plants: Plants::NONE,
            points: crate::buggify::FaultPoints::default(),
        };
        link.fence.observe_epoch(link.spec.master_epoch);
        link
    }

    pub fn spec(&self) -> &LinkSpec {
        &self.spec
    }

    /// The progress text sent with every heartbeat from now on.
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// The newest master epoch seen.
    pub fn master_epoch(&self) -> Epoch {
        self.fence.epoch()
    }

    /// Whether the master accepted a heartbeat yet (the incarnation is live from then on).
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// When the task must have stopped unless a newer heartbeat is acknowledged.
    pub fn deadline(&self) -> Time {
        if self.ignore_fence {
            return Time::NEVER;
        }
        self.fence.deadline()
    }

    /// Plants the bug [`crate::planted::Planted::WorkerIgnoresFence`]: this link never fences its task.
    pub fn plant_ignore_fence(&mut self) {
        self.ignore_fence = true;
    }

    /// Sets the guard switches (the simulation's bug-finding runs only).
    pub fn plant(&mut self, plants: Plants) {
        self.plants = plants;
    }

    /// Stalls its heartbeats where the simulation holds its executor's `task-heartbeat-send` point.
    pub fn with_fault_points(mut self, points: crate::buggify::FaultPoints) -> Link {
        self.points = points;
        self
    }

    fn is_fenced(&self, now: Time) -> bool {
        !self.ignore_fence && self.fence.is_fenced(now)
    }

    /// Heartbeats (the first one at once, then every interval) until the master accepts one: the incarnation is
    /// live from then on. `Some(end)` when the task must stop first; a cancel on the first acknowledgement is
    /// `Some(LinkEnd::Cancel)`, the link then being live.
    pub async fn until_live(&mut self) -> Option<LinkEnd> {
        let mut first = true;
        while !self.live {
            let (clock, deadline) = (self.clock.clone(), self.deadline());
            let pause = if first { Duration::ZERO } else { self.pause() };
            first = false;
            let beat = tokio::select! {
                biased;
                _ = clock.sleep_until(deadline) => None,
                end = async { clock.sleep(pause).await; self.beat().await } => Some(end),
            };
            match beat {
                None if self.is_fenced(self.clock.now()) => return Some(LinkEnd::Fenced),
                Some(Some(end)) => return Some(end),
                _ => {}
            }
        }
        None
    }

    async fn client(&mut self) -> Option<FrameworkClient<tonic::transport::Channel>> {
        if let Some(ch) = &self.channel {
            return Some(FrameworkClient::new(ch.clone()));
        }
        let n = self.spec.addresses.len().max(1);
        let address = self.spec.addresses.get(self.which % n)?.clone();
        // A master that cannot be reached, or whose address is not usable, is passed over for the next.
        match crate::rpc::connect::connect(&address, self.spec.timing.timeout).await {
            Ok(ch) => {
                self.channel = Some(ch.clone());
                Some(FrameworkClient::new(ch))
            }
            Err(_) => {
                self.pass_over();
                None
            }
        }
    }

    /// The current master did not answer: the next call goes to the next address, on a new connection.
    fn pass_over(&mut self) {
        self.which += 1;
        self.channel = None;
    }

    /// Takes a reply: `Some(end)` when the task must stop.
    fn on_reply(&mut self, sent: Time, verdict: i32, master_epoch: u64, command: i32) -> Option<LinkEnd> {
        match pb::Verdict::try_from(verdict) {
            Ok(pb::Verdict::Accepted) => {
                if let crate::core::fence::Ack::Extended(_) = self.fence.on_ack(sent, Epoch(master_epoch)) {
                    self.live = true;
                    if command == pb::Command::Cancel as i32 {
                        return Some(LinkEnd::Cancel);
                    }
                }
                None
            }
            Ok(pb::Verdict::StaleWorker) if !self.plants.has(Planted::StaleVerdictIgnored) => Some(LinkEnd::Stale),
            Ok(pb::Verdict::StaleWorker) => None,
            // A stale master (or one still recovering) does not acknowledge; the fence keeps counting.
            _ => {
                self.fence.observe_epoch(Epoch(master_epoch));
                None
            }
        }
    }

    /// The carrier the next heartbeat goes through, if the leader asks for one.
    fn carrier(&self) -> Option<super::carrier::Carrier> {
        self.spec.carrier.as_ref().filter(|c| c.is_on()).cloned()
    }

    /// The pause between two heartbeats: the interval, or none when they are carried (the executor's heartbeat
    /// sets the pace: each one waits for the next).
    fn pause(&self) -> Duration {
        if self.carrier().is_some() {
            Duration::ZERO
        } else {
            self.spec.timing.interval
        }
    }

    /// One heartbeat, with the deadline; `Some(end)` when the task must stop.
    pub async fn beat(&mut self) -> Option<LinkEnd> {
        let sent = self.clock.now();
        if self.is_fenced(sent) {
            return Some(LinkEnd::Fenced);
        }
        let carrier = self.carrier();
        let mut client = match carrier {
            Some(_) => None,
            None => Some(self.client().await?),
        };
        let req = pb::WorkerHeartbeatRequest {
            master_id: self.spec.master_id.clone(),
            master_epoch: self.fence.epoch().0,
            worker_id: self.spec.worker.as_str().to_owned(),
            worker_epoch: self.spec.worker_epoch.0,
            progress: self.progress.get(),
            last_error: self.progress.last_error().as_ref().map(super::last_error_to_wire),
        };
        // Built, not yet sent: a stall here makes the master stop hearing this task while it goes on.
        crate::buggify::point(&self.points, crate::buggify::Point::TaskHeartbeatSend).await;
        let (Some(client), None) = (client.as_mut(), &carrier) else {
            // Carried: acknowledged as of the executor call's send time (no earlier than `sent`).
            let carried = carrier?.carry(req).await?;
            let r = carried.reply;
            return self.on_reply(carried.sent, r.verdict, r.master_epoch, r.command);
        };
        match client.worker_heartbeat(self.spec.identity.request(req)).await {
            Ok(r) => {
                let r = r.into_inner();
                self.on_reply(sent, r.verdict, r.master_epoch, r.command)
            }
            Err(_) => {
                self.pass_over();
                None
            }
        }
    }

    /// Heartbeats every interval until the task must stop; stops at the fence deadline itself.
    pub async fn run(&mut self) -> LinkEnd {
        loop {
            let (clock, deadline) = (self.clock.clone(), self.deadline());
            let interval = self.pause();
            let beat = tokio::select! {
                biased;
                _ = clock.sleep_until(deadline) => None,
                end = async { clock.sleep(interval).await; self.beat().await } => Some(end),
            };
            match beat {
                None if self.is_fenced(self.clock.now()) => return LinkEnd::Fenced,
                Some(Some(end)) => return end,
                _ => {}
            }
        }
    }

    /// Reports a terminal status (already persisted by the caller) until the master acknowledges it, or until the
    /// task must stop anyway. Acknowledged: `Ok(())`. Like the heartbeats, every attempt (the connection, the call,
    /// the pause before the next) races the fence deadline: a task whose fence passed while a report was on its
    /// way (its process paused, say) stops at once instead of when that call gives up.
    pub async fn report(&mut self, report: Report) -> Result<(), LinkEnd> {
        let (state, message, retryable) = match &report {
            Report::Finished => (pb::WorkerState::Finished, String::new(), false),
            Report::Canceled => (pb::WorkerState::Canceled, String::new(), false),
            Report::Failed { message, retryable } => {
                (pb::WorkerState::Failed, super::error_message_text(message), *retryable)
            }
            Report::Stopped => (pb::WorkerState::Stopped, String::new(), false),
        };
        loop {
            if self.is_fenced(self.clock.now()) {
                return Err(LinkEnd::Fenced);
            }
            let (clock, deadline) = (self.clock.clone(), self.deadline());
            let attempt = tokio::select! {
                biased;
                _ = clock.sleep_until(deadline) => None,
                done = self.report_once(state, &message, retryable) => done,
            };
            if let Some(done) = attempt {
                return done;
            }
        }
    }

    /// One attempt of [`Self::report`], then the pause before the next: `Some` when the report is settled.
    async fn report_once(
        &mut self,
        state: pb::WorkerState,
        message: &str,
        retryable: bool,
    ) -> Option<Result<(), LinkEnd>> {
        if let Some(mut client) = self.client().await {
            let req = pb::ReportWorkerStatusRequest {
                master_id: self.spec.master_id.clone(),
                master_epoch: self.fence.epoch().0,
                worker_id: self.spec.worker.as_str().to_owned(),
                worker_epoch: self.spec.worker_epoch.0,
                status: Some(pb::WorkerStatus {
                    state: state as i32,
                    error_message: message.to_owned(),
                    detail: vec![],
                    retryable,
                }),
                progress: self.progress.get(),
            };
            match client.report_worker_status(self.spec.identity.request(req)).await {
                Ok(r) => {
                    let r = r.into_inner();
                    match pb::Verdict::try_from(r.verdict) {
                        Ok(pb::Verdict::Accepted) => return Some(Ok(())),
                        Ok(pb::Verdict::StaleWorker) => return Some(Err(LinkEnd::Stale)),
                        _ => self.fence.observe_epoch(Epoch(r.master_epoch)),
                    }
                }
                Err(_) => self.pass_over(),
            }
        }
        self.clock.sleep(self.spec.timing.interval.min(Duration::from_millis(500))).await;
        None
    }
}
