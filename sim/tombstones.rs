//! Tombstones of deleted jobs (`deleted-jobs/<id>`): each refuses a delayed repeat of its job's create for the
//! retention (`jobs.tombstone-retention`, 10 min), measured from the deletion time stored in it, and is collected
//! by the leader once that has passed, by whichever master leads then.

use std::time::Duration;

use foreman::meta::{keys, MetaStore};
use foreman::rpc::pb;
use foreman::rpc::status::{reason_of, Reason};

use crate::cluster::{Cluster, CLUSTER, ETCD_ADDR};
use crate::harness::announce;
use crate::master_failover::{on_client, with_jobs};

/// How long a client call may keep retrying through failovers.
const CALL_WITHIN: Duration = Duration::from_secs(30);

fn token(id: &str) -> String {
    format!("create-{id}")
}

/// Creates `id` with its token (call on the client node): the job, or the refusal.
async fn create(masters: usize, id: String) -> Result<pb::Job, tonic::Status> {
    with_jobs(masters, CALL_WITHIN, move |mut c| {
        let job = pb::Job {
            id: id.clone(),
            r#type: "fake".into(),
            config: br#"{"workers": 1, "target": 1, "tick_ms": 1}"#.to_vec(),
            ..Default::default()
        };
        let request_id = token(&id);
        async move { c.create_job(pb::CreateJobRequest { job: Some(job), request_id }).await.map(|r| r.into_inner()) }
    })
    .await
}

/// Creates, cancels (nothing runs it: no executor) and deletes each job (call on the client node).
async fn create_and_delete(masters: usize, ids: Vec<String>) {
    for id in ids {
        create(masters, id.clone()).await.unwrap_or_else(|s| panic!("create {id}: {s}"));
        let cancel = id.clone();
        with_jobs(masters, CALL_WITHIN, move |mut c| {
            let id = cancel.clone();
            async move { c.cancel_job(pb::CancelJobRequest { id }).await.map(|r| r.into_inner()) }
        })
        .await
        .unwrap_or_else(|s| panic!("cancel {id}: {s}"));
        let delete = id.clone();
        let deleted = with_jobs(masters, CALL_WITHIN, move |mut c| {
            let id = delete.clone();
            async move { c.delete_job(pb::DeleteJobRequest { id }).await.map(|r| r.into_inner()) }
        })
        .await;
        // A retried delete whose first attempt was applied finds the job gone.
        if let Err(s) = &deleted {
            assert_eq!(reason_of(s), Some(Reason::JobNotFound), "delete {id}: {s}");
        }
    }
}

/// The ids that have a tombstone, from the metastore (call on the client node).
async fn tombstones() -> Vec<String> {
    let store = MetaStore::etcd(&[ETCD_ADDR.to_owned()], CLUSTER, Duration::from_secs(2)).await.expect("etcd client");
    loop {
        if let Ok(listed) = store.list(&keys::deleted_jobs_prefix()).await {
            return listed.iter().filter_map(|(k, _)| keys::deleted_job_id_of(k).map(str::to_owned)).collect();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Goal: tombstones are collected once their retention (10 min) has passed since their deletion, even by a leader
/// that did not write them, and a delayed repeat of a create inside that window is still refused. Method: two
/// masters, no executor; 50 jobs are created and deleted, one more 5 minutes later; the leader is killed in
/// between; 11 minutes after the first deletions only the last tombstone is left, its job's create is refused
/// (`JOB_DELETED`) and a collected job's create goes through again; past its own retention it goes too.
#[madsim::test]
async fn deleted_jobs_tombstones_collected_after_their_retention_across_a_failover() {
    announce("deleted_jobs_tombstones_collected_after_their_retention_across_a_failover");
    let c = Cluster::start(2, 0).await;
    c.await_leader(Duration::from_secs(30)).await.expect("a leader");
    let retention = c.config.jobs.tombstone_retention;
    let first: Vec<String> = (0..50).map(|i| format!("gone-{i}")).collect();
    let started = c.clock.now();
    on_client(&c, create_and_delete(2, first.clone())).await;
    let stored = on_client(&c, tombstones()).await;
    assert_eq!(stored.len(), 50, "one tombstone per deleted job: {stored:?}");

    tokio::time::sleep(Duration::from_secs(3 * 60)).await;
    let leader = c.await_leader(Duration::from_secs(30)).await.expect("a leader");
    c.kill_master(leader);
    c.await_leader(Duration::from_secs(30)).await.expect("the other master leads");
    c.restart_master(leader);
    tokio::time::sleep(Duration::from_secs(2 * 60)).await;
    on_client(&c, create_and_delete(2, vec!["late".to_owned()])).await;

    // Past the first deletions' retention (and one sweep): only the late job's tombstone is left.
    let due = started + retention + Duration::from_secs(60);
    tokio::time::sleep(due.saturating_since(c.clock.now())).await;
    assert_eq!(on_client(&c, tombstones()).await, vec!["late".to_owned()], "tombstones past their retention");
    // A delayed repeat of the late job's create, inside its window, is refused; a collected one's is a new job.
    let late = on_client(&c, create(2, "late".to_owned())).await;
    let refused = late.expect_err("safety: a delayed repeat inside the retention brought a deleted job back");
    assert_eq!(reason_of(&refused), Some(Reason::JobDeleted), "{refused:?}");
    let again = on_client(&c, create(2, "gone-0".to_owned())).await.expect("a create after the retention");
    assert_eq!(again.state, pb::JobState::Created as i32);

    tokio::time::sleep(retention).await;
    assert!(on_client(&c, tombstones()).await.is_empty(), "the late tombstone outlived its retention");
}
