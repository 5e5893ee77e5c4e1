//! The master side of two-phase dispatch, for both levels: the job manager starting a job master and a job master
//! starting a worker. Also where a job master asks the leader to place a worker.

use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::rpc::connect::ConnectFailure;
use crate::rpc::pb;
use crate::rpc::pb::executor_service_client::ExecutorServiceClient;
use crate::rpc::pb::task_scheduler_client::TaskSchedulerClient;

async fn channel(address: &str, timeout: Duration) -> Result<Channel, Status> {
    crate::rpc::connect::connect(address, timeout).await.map_err(|e| match e.failure {
        ConnectFailure::BadAddress => Status::invalid_argument(e.to_string()),
        ConnectFailure::Unreachable => Status::unavailable(e.to_string()),
    })
}

/// Pre-dispatches `pre` to the executor at `address` and confirms it, all within `window` (connecting included):
/// the master's bookkeeping allows a dispatch that long to start its task
/// ([`crate::core::workers::Workers::with_dispatch_window`]). Past it the outcome is unknown
/// (`DEADLINE_EXCEEDED`).
///
/// The confirm is sent only while `may_confirm` holds (the dispatcher still acts: a leader still leads) and the
/// window is not over: a dispatcher frozen between the two calls (a paused process) finds both out before it
/// confirms, not after (a timeout polls its future first, so it cannot be relied on to stop a ready confirm).
/// `confirming` is called just before the confirm is sent (for observers).
#[allow(clippy::too_many_arguments)]
pub async fn dispatch(
    address: &str,
    pre: pb::PreDispatchTaskRequest,
    window: Duration,
    may_confirm: impl Fn() -> bool,
    confirming: impl Fn(),
    fault_points: &crate::buggify::FaultPoints,
    identity: &crate::rpc::identity::Identity,
) -> Result<(), Status> {
    #[allow(clippy::disallowed_methods)] // tokio's clock: simulated in the simulation build
    let deadline = tokio::time::Instant::now() + window;
    let confirm = pb::ConfirmDispatchTaskRequest { task_id: pre.task_id.clone(), request_id: pre.request_id.clone() };
    let calls = async {
        let mut client = ExecutorServiceClient::new(channel(address, window).await?);
        client.pre_dispatch_task(identity.request(pre)).await?;
        crate::buggify::point(fault_points, crate::buggify::Point::BetweenPreDispatchAndConfirm).await;
        #[allow(clippy::disallowed_methods)] // tokio's clock: simulated in the simulation build
        let late = tokio::time::Instant::now() >= deadline;
        if late || !may_confirm() {
            // Parked, never confirmed: the executor drops it when its dispatch TTL ends.
            return Err(Status::failed_precondition(format!(
                "not confirmed: {}",
                if late { "the dispatch window is over" } else { "the dispatcher no longer acts" }
            )));
        }
        confirming();
        client.confirm_dispatch_task(identity.request(confirm)).await?;
        Ok(())
    };
    match tokio::time::timeout(window, calls).await {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded(format!("the dispatch to {address} took longer than {window:?}"))),
    }
}

/// Whether a failed dispatch certainly did not start the task. A call that timed out, was cut, or failed in an
/// unknown way may have started it: the master's bookkeeping must then wait for the incarnation's TTL.
pub fn is_definite(status: &Status) -> bool {
    !matches!(status.code(), Code::DeadlineExceeded | Code::Unknown | Code::Cancelled)
}

/// Asks the masters at `join` (from `first` on, in turn; any of them forwards to the leader) where `req`'s task
/// should run. The first definite answer wins: a placement, or a refusal other than "unavailable".
pub async fn schedule(
    join: &[String],
    first: usize,
    req: &pb::ScheduleTaskRequest,
    timeout: Duration,
    identity: &crate::rpc::identity::Identity,
) -> Result<pb::ScheduleTaskResponse, Status> {
    let mut last = Status::unavailable("no master address to ask");
    for i in 0..join.len() {
        let address = &join[(first + i) % join.len()];
        let ch = match channel(address, timeout).await {
            Ok(ch) => ch,
            Err(e) => {
                last = e;
                continue;
            }
        };
        match tokio::time::timeout(timeout, TaskSchedulerClient::new(ch).schedule_task(identity.request(req.clone())))
            .await
        {
            Ok(Ok(r)) => return Ok(r.into_inner()),
            Ok(Err(s)) if !matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Unknown) => {
                return Err(s)
            }
            Ok(Err(s)) => last = s,
            Err(_) => last = Status::deadline_exceeded(format!("{address} did not answer within {timeout:?}")),
        }
    }
    Err(last)
}
