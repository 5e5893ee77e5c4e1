//! Job masters' heartbeats carried by their executor's heartbeat (issue 17 item 2; design.md §9's scale): when the
//! leader asks for it (`executors.carry-job-masters`), a hosted job master does not call the leader itself. Its
//! link leaves its heartbeat here, the executor's next heartbeat takes every message waiting and carries them in
//! one call (`HeartbeatRequest.job_masters`), and each job master's answer comes back in that call's reply. Calls
//! to the leader then grow with executors, not with jobs.
//!
//! A carried heartbeat is acknowledged as of the executor call's send time, never before: the link anchors its
//! self-fence there ([`Carried::sent`]), which is no later than the leader's receipt, so the job master still
//! stops before the leader may declare it gone (design.md §5, rule 3). A message whose call failed, or whose reply
//! does not answer it, is dropped: its link hears nothing and its fence keeps counting, as after a failed call.
//!
//! The carrier moves bytes only: the leader decides whether executors carry (its answer's `carry_job_masters`),
//! the job manager judges each message as if it had come alone.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::core::time::Time;
use crate::rpc::pb;

/// The most job-master messages one executor heartbeat carries (a leader refuses more: INVALID_ARGUMENT).
pub const CARRIED_MAX: usize = 4_096;

/// A carried heartbeat's answer.
#[derive(Clone, Debug)]
pub struct Carried {
    /// When the executor sent the heartbeat that carried it.
    pub sent: Time,
    pub reply: pb::WorkerHeartbeatResponse,
}

type Waiting = BTreeMap<String, (pb::WorkerHeartbeatRequest, oneshot::Sender<Carried>)>;

/// One executor's carrier, shared by its job masters' links and its membership loop.
#[derive(Clone, Default)]
pub struct Carrier {
    /// What the leader last said: carry (true) or let each job master call it.
    on: Arc<AtomicBool>,
    /// The messages waiting for the next heartbeat, one per job master (a newer one replaces the older).
    waiting: Arc<Mutex<Waiting>>,
}

impl std::fmt::Debug for Carrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Carrier").field("on", &self.is_on()).finish_non_exhaustive()
    }
}

/// The messages one heartbeat took, waiting for its reply.
pub struct Taken(Vec<(String, oneshot::Sender<Carried>)>);

impl Carrier {
    /// Whether job masters' heartbeats go through the executor now.
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// What the leader said in its last answer.
    pub fn set_on(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Leaves `req` for the executor's next heartbeat and waits for its answer; `None` when the call that carried it
    /// failed or did not answer it (the caller bounds the wait: its fence deadline).
    pub async fn carry(&self, req: pb::WorkerHeartbeatRequest) -> Option<Carried> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(req.worker_id.clone(), (req, tx));
        rx.await.ok()
    }

    /// Takes every waiting message, at most [`CARRIED_MAX`] (the rest wait for the next heartbeat), in the order of
    /// their job ids.
    pub fn take(&self) -> (Vec<pb::WorkerHeartbeatRequest>, Taken) {
        let mut waiting = self.lock();
        let keys: Vec<String> = waiting.keys().take(CARRIED_MAX).cloned().collect();
        let mut reqs = Vec::with_capacity(keys.len());
        let mut taken = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some((req, tx)) = waiting.remove(&k) {
                reqs.push(req);
                taken.push((k, tx));
            }
        }
        (reqs, Taken(taken))
    }
}

impl Taken {
    /// Hands each carried message its answer from `replies` (by job master), as of `sent`. A message with no
    /// answer, or with several (a forged reply), is dropped: its link hears nothing.
    pub fn answer(self, sent: Time, replies: Vec<pb::CarriedReply>) {
        let mut by_id: BTreeMap<String, Option<pb::WorkerHeartbeatResponse>> = BTreeMap::new();
        for r in replies {
            let Some(reply) = r.reply else { continue };
            by_id.entry(r.worker_id).and_modify(|seen| *seen = None).or_insert(Some(reply));
        }
        for (id, tx) in self.0 {
            if let Some(Some(reply)) = by_id.remove(&id) {
                // why: a link that stopped waiting (its task ended) drops its receiver; nothing to tell it.
                let _ = tx.send(Carried { sent, reply });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: &str, epoch: u64) -> pb::WorkerHeartbeatRequest {
        pb::WorkerHeartbeatRequest { worker_id: id.into(), worker_epoch: epoch, ..Default::default() }
    }

    fn reply(id: &str, epoch: u64) -> pb::CarriedReply {
        pb::CarriedReply {
            worker_id: id.into(),
            reply: Some(pb::WorkerHeartbeatResponse { worker_epoch: epoch, ..Default::default() }),
        }
    }

    #[tokio::test]
    async fn each_message_gets_its_own_answer_as_of_the_send_time() {
        let c = Carrier::default();
        let (a, b) = (c.clone(), c.clone());
        let ha = tokio::spawn(async move { a.carry(req("job-a", 1)).await });
        let hb = tokio::spawn(async move { b.carry(req("job-b", 7)).await });
        let mut reqs = vec![];
        while reqs.len() < 2 {
            tokio::task::yield_now().await;
            let (more, taken) = c.take();
            if more.is_empty() {
                continue;
            }
            reqs.extend(more.iter().map(|r| r.worker_id.clone()));
            taken.answer(Time::from_millis(40), vec![reply("job-b", 7), reply("job-a", 1)]);
        }
        let (ra, rb) = (ha.await.unwrap().expect("a answered"), hb.await.unwrap().expect("b answered"));
        assert_eq!((ra.sent, ra.reply.worker_epoch), (Time::from_millis(40), 1));
        assert_eq!((rb.sent, rb.reply.worker_epoch), (Time::from_millis(40), 7));
    }

    #[tokio::test]
    async fn unanswered_doubly_answered_and_failed_messages_hear_nothing() {
        let c = Carrier::default();
        let handles: Vec<_> = ["job-a", "job-b", "job-c"]
            .iter()
            .map(|id| {
                let (c, id) = (c.clone(), id.to_string());
                tokio::spawn(async move { c.carry(req(&id, 1)).await })
            })
            .collect();
        let mut taken_ids = vec![];
        while taken_ids.len() < 3 {
            tokio::task::yield_now().await;
            let (reqs, taken) = c.take();
            taken_ids.extend(reqs.iter().map(|r| r.worker_id.clone()));
            // job-a: answered twice (refused); job-b: not answered; job-c: answered.
            taken.answer(Time::ZERO, vec![reply("job-a", 1), reply("job-a", 1), reply("job-c", 1)]);
        }
        let got: Vec<bool> = {
            let mut v = vec![];
            for h in handles {
                v.push(h.await.unwrap().is_some());
            }
            v
        };
        assert_eq!(got, vec![false, false, true]);
        // A failed call: the taken messages are dropped with it.
        let c2 = c.clone();
        let h = tokio::spawn(async move { c2.carry(req("job-d", 1)).await });
        loop {
            tokio::task::yield_now().await;
            let (reqs, taken) = c.take();
            if !reqs.is_empty() {
                drop(taken);
                break;
            }
        }
        assert!(h.await.unwrap().is_none());
    }

    #[test]
    fn a_newer_message_of_a_job_master_replaces_the_waiting_one() {
        let c = Carrier::default();
        let (tx1, rx1) = oneshot::channel();
        let (tx2, _rx2) = oneshot::channel();
        c.lock().insert("job-a".into(), (req("job-a", 1), tx1));
        c.lock().insert("job-a".into(), (req("job-a", 2), tx2));
        let (reqs, _taken) = c.take();
        assert_eq!(reqs.iter().map(|r| r.worker_epoch).collect::<Vec<_>>(), vec![2]);
        let mut rx1 = rx1;
        assert!(rx1.try_recv().is_err(), "the replaced message's waiter hears nothing");
    }
}
