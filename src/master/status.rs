//! `GetJobStatus`: the leader asks the job's current job master for the status it published, and falls back to
//! the status a job master stored under `job-status/<job>`. Which one to ask and which answer to give are
//! `core::job_status`'s ([`plan`], [`choose`]); this module moves the bytes, each step bounded by a deadline.

use std::time::Duration;

use tonic::Status;

use super::Master;
use crate::core::ids::JobId;
use crate::core::job_status::{choose, plan, Choice, JobAt, Plan, StoredStatus, STATUS_DOCUMENT_MAX};
use crate::meta::keys;
use crate::rpc::pb;
use crate::rpc::pb::framework_client::FrameworkClient;
use crate::rpc::status::{Reason, MESSAGE_MAX};

/// The longest the leader waits for a job master's answer (within the request timeout): the executor answers
/// from memory, so a healthy one answers at once, and a slow one leaves time for the metastore read after it.
pub const JOB_MASTER_QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// A job master's answer.
struct LiveAnswer {
    epoch: u64,
    document: String,
}

impl Master {
    /// The job's status: live from its current job master, or as stored, or none yet (see `jobs.proto`).
    pub(crate) async fn get_job_status(
        &self,
        id: &JobId,
        caller: crate::core::auth::Principal,
    ) -> Result<pb::JobStatus, Status> {
        let job = self.get_job(id, false, caller).await?;
        let ended = matches!(
            pb::JobState::try_from(job.state),
            Ok(pb::JobState::Finished | pb::JobState::Canceled | pb::JobState::Failed | pb::JobState::Corrupt)
        );
        let at = JobAt { epoch: job.epoch, executor: (job.executor_id != 0).then_some(job.executor_id), ended };
        let address = match at.executor {
            Some(executor) if !ended => self
                .list_executors()
                .await?
                .executors
                .into_iter()
                .find(|e| e.id == executor)
                .map(|e| e.address)
                .filter(|a| !a.is_empty()),
            _ => None,
        };
        let mut notes = vec![];
        let live = match (plan(at, address.is_some()), address) {
            (Plan::AskJobMaster { executor }, Some(address)) => match self.query_job_master(id, &address).await {
                Ok(live) => Some(live),
                Err(why) => {
                    notes.push(format!("the job master on executor {executor} did not answer: {why}"));
                    None
                }
            },
            (p, _) => {
                notes.push(why_not_asked(p).to_owned());
                None
            }
        };
        if let Some(l) = live.as_ref().filter(|l| l.epoch != at.epoch) {
            notes.push(format!("the job master answered as incarnation {}, not the current {}", l.epoch, at.epoch));
        }
        let live_epoch = live.as_ref().map(|l| l.epoch);
        let mut answer = pb::JobStatus { id: id.as_str().to_owned(), job_epoch: at.epoch, ..Default::default() };
        if let Some(live) = live.filter(|l| choose(at, Some(l.epoch), None) == Choice::Live) {
            answer.source = pb::JobStatusSource::Live as i32;
            answer.epoch = live.epoch;
            answer.document = live.document;
            return Ok(answer);
        }
        let stored = self.stored_status(id).await?;
        match (choose(at, live_epoch, stored.as_ref().map(|s| s.epoch)), stored) {
            (Choice::Stored, Some(stored)) => {
                let document = serde_json::to_string(&stored.status).map_err(|e| {
                    Reason::Internal.status(format!("the stored status of job {id} does not serialize: {e}"))
                })?;
                answer.source = pb::JobStatusSource::Stored as i32;
                answer.epoch = stored.epoch;
                answer.at_unix_ms = stored.at.0;
                answer.document = document;
            }
            (_, stored) => {
                if let Some(s) = &stored {
                    notes.push(format!("the stored status is from incarnation {}, newer than the current", s.epoch));
                }
                notes.push("no job master has stored a status yet".to_owned());
                answer.source = pb::JobStatusSource::None as i32;
            }
        }
        answer.note = crate::core::text::bounded(&notes.join("; "), MESSAGE_MAX).into_owned();
        Ok(answer)
    }

    /// Asks the job master hosted at `address` for the status it published.
    async fn query_job_master(&self, id: &JobId, address: &str) -> Result<LiveAnswer, String> {
        let timeout = JOB_MASTER_QUERY_TIMEOUT.min(self.cfg.rpc.request_timeout);
        let ask = async {
            let channel = crate::rpc::connect::connect(address, timeout).await.map_err(|e| e.to_string())?;
            let mut req = tonic::Request::new(pb::QueryJobMasterRequest { master_id: id.as_str().to_owned() });
            req.set_timeout(timeout);
            self.identity().stamp(&mut req);
            FrameworkClient::new(channel)
                .query_job_master(req)
                .await
                .map(|r| r.into_inner())
                .map_err(|s| crate::core::text::bounded(s.message(), 200).into_owned())
        };
        let r = tokio::time::timeout(timeout, ask)
            .await
            .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))??;
        if r.document.len() > STATUS_DOCUMENT_MAX {
            return Err(format!(
                "its status is {} bytes, more than the {STATUS_DOCUMENT_MAX} allowed",
                r.document.len()
            ));
        }
        Ok(LiveAnswer { epoch: r.master_epoch, document: r.document })
    }

    /// The status a job master of the job stored, if any. A value that does not decode counts as none (it is
    /// replaced at the next write); an unanswered read is refused, to be retried.
    async fn stored_status(&self, id: &JobId) -> Result<Option<StoredStatus>, Status> {
        let key = keys::job_status(id.as_str());
        let read = tokio::time::timeout(self.cfg.rpc.metastore_timeout, self.store.get(&key)).await;
        let value = match read {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                return Err(Reason::MetastoreUnavailable.status(format!("reading the stored status: {e}; retry")))
            }
            Err(_) => {
                return Err(Reason::MetastoreUnavailable
                    .status("reading the stored status: the metastore did not answer in time; retry"))
            }
        };
        Ok(value.and_then(|v| match serde_json::from_slice::<StoredStatus>(&v) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(job = %id, "the stored status at {key} does not decode: {e}");
                None
            }
        }))
    }
}

fn why_not_asked(p: Plan) -> &'static str {
    match p {
        Plan::StoreOnly { why } => why,
        Plan::AskJobMaster { .. } => "the job master's executor is not online",
    }
}
