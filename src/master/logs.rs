//! `JobLogs`: the leader reads what a job's workers' processes printed from the executors that hold it
//! (`ExecutorService.ReadLogs`, masters only). Where each worker's logs are is asked of every executor this term
//! knows, each call bounded by a deadline, a few at a time; an executor that does not answer is named in the note.
//! (Issue 16, step 4's resource records will tell where without asking every executor.)

use std::time::Duration;

use tonic::Status;

use super::Master;
use crate::framework::logs::wire;
use crate::rpc::pb;
use crate::rpc::pb::executor_service_client::ExecutorServiceClient;
use crate::rpc::status::MESSAGE_MAX;

/// The longest the leader waits for one executor's answer (within the request timeout).
pub const READ_LOGS_TIMEOUT: Duration = Duration::from_secs(2);
/// How many executors are asked at once.
const ASKED_AT_ONCE: usize = 32;

/// An executor to ask.
#[derive(Clone)]
struct Holder {
    id: u64,
    name: String,
    address: String,
}

impl Master {
    /// The logs of job `r.id` (see `jobs.proto`), for `caller`, who must be able to read the job.
    pub(crate) async fn job_logs(
        &self,
        r: &pb::JobLogsRequest,
        caller: crate::core::auth::Principal,
    ) -> Result<pb::JobLogsResponse, Status> {
        let ask = wire::request("id", &r.id, &r.worker, r.stream, r.max_bytes)?;
        // Whether the caller may read the job (and whether it exists), as GetJob says.
        self.get_job(&ask.job, false, caller).await?;
        let holders: Vec<Holder> = self
            .list_executors()
            .await?
            .executors
            .into_iter()
            .filter(|e| !e.address.is_empty())
            .map(|e| Holder { id: e.id, name: e.name, address: e.address })
            .collect();
        let index = pb::ReadLogsRequest { job_id: ask.job.as_str().to_owned(), ..Default::default() };
        let mut notes = vec![];
        let mut sources = vec![];
        for (h, answer) in self.ask_all(&holders, &index).await {
            match answer {
                Ok(a) => sources.extend(a.held.into_iter().map(|i| pb::LogSource {
                    incarnation: Some(i),
                    executor_id: h.id,
                    executor_name: h.name.clone(),
                })),
                Err(why) => notes.push(format!("executor {} ({}) did not answer: {why}", h.id, h.name)),
            }
        }
        let key = |s: &pb::LogSource| s.incarnation.as_ref().map(|i| (i.worker.clone(), i.epoch, s.executor_id));
        sources.sort_by_key(key);
        let mut answer = pb::JobLogsResponse { sources, ..Default::default() };
        if let Some(worker) = ask.worker {
            // The incarnation asked for (or the newest held), and the executor holding it.
            let held = crate::rpc::logs::shown(&answer.sources, Some(worker.as_str()), r.epoch)
                .first()
                .and_then(|s| s.incarnation.as_ref().map(|i| (i.epoch, s.executor_id)));
            match held.and_then(|(epoch, id)| holders.iter().find(|h| h.id == id).map(|h| (epoch, h))) {
                Some((epoch, h)) => {
                    let read = pb::ReadLogsRequest {
                        job_id: ask.job.as_str().to_owned(),
                        worker: worker.as_str().to_owned(),
                        epoch,
                        stream: wire::stream(ask.stream) as i32,
                        offset: r.offset,
                        max_bytes: ask.max,
                    };
                    match self.read_logs(h, read).await {
                        Ok(a) => answer.chunk = a.chunk,
                        Err(why) => notes.push(format!("executor {} ({}) did not answer: {why}", h.id, h.name)),
                    }
                }
                None => notes.push(format!(
                    "no online executor holds logs of worker {worker}{}",
                    if r.epoch == 0 { String::new() } else { format!(" incarnation {}", r.epoch) }
                )),
            }
        }
        answer.note = crate::core::text::bounded(&notes.join("; "), MESSAGE_MAX).into_owned();
        Ok(answer)
    }

    /// Asks every holder `req`, [`ASKED_AT_ONCE`] at a time; the answers in the holders' order.
    async fn ask_all(
        &self,
        holders: &[Holder],
        req: &pb::ReadLogsRequest,
    ) -> Vec<(Holder, Result<pb::ReadLogsResponse, String>)> {
        let mut out = vec![];
        for batch in holders.chunks(ASKED_AT_ONCE) {
            let calls: Vec<_> = batch
                .iter()
                .map(|h| {
                    let (h, req, identity, timeout) = (h.clone(), req.clone(), self.identity(), self.logs_timeout());
                    tokio::spawn(async move {
                        let a = read(&h, req, identity, timeout).await;
                        (h, a)
                    })
                })
                .collect();
            for (h, call) in batch.iter().zip(calls) {
                out.push(call.await.unwrap_or_else(|e| (h.clone(), Err(format!("the call failed: {e}")))));
            }
        }
        out
    }

    async fn read_logs(&self, h: &Holder, req: pb::ReadLogsRequest) -> Result<pb::ReadLogsResponse, String> {
        read(h, req, self.identity(), self.logs_timeout()).await
    }

    fn logs_timeout(&self) -> Duration {
        READ_LOGS_TIMEOUT.min(self.cfg.rpc.request_timeout)
    }
}

/// One `ReadLogs` call to `h`, bounded by `timeout`.
async fn read(
    h: &Holder,
    req: pb::ReadLogsRequest,
    identity: crate::rpc::identity::Identity,
    timeout: Duration,
) -> Result<pb::ReadLogsResponse, String> {
    let ask = async {
        let channel = crate::rpc::connect::connect(&h.address, timeout).await.map_err(|e| e.to_string())?;
        let mut req = tonic::Request::new(req);
        req.set_timeout(timeout);
        identity.stamp(&mut req);
        ExecutorServiceClient::new(channel)
            .read_logs(req)
            .await
            .map(|r| r.into_inner())
            .map_err(|s| crate::core::text::bounded(s.message(), 200).into_owned())
    };
    tokio::time::timeout(timeout, ask).await.map_err(|_| format!("no answer within {} ms", timeout.as_millis()))?
}
