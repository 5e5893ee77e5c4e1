//! The metastore contract against a real etcd (production build only).
//!
//! The contract test needs an etcd: `scripts/with-etcd cargo test --test real_etcd -- --ignored` starts a
//! throwaway one and sets `FOREMAN_TEST_ETCD`. Run with `--ignored` and no etcd, it fails rather than skips, so a
//! missing etcd can never pass for green.
#![cfg(not(madsim))]

use std::time::Duration;

use foreman::meta::{contract, MetaError, MetaStore, Op};

const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// A cluster name no earlier run used, so that a long-lived etcd never hands this run another run's keys.
fn fresh_cluster() -> String {
    // why: only a name; a wall-clock read in a production-build test does not touch any simulation.
    #[allow(clippy::disallowed_methods)]
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("contract-{}-{nanos}", std::process::id())
}

#[tokio::test]
#[ignore = "needs a real etcd: set FOREMAN_TEST_ETCD=host:port"]
async fn metastore_contract_holds_on_real_etcd() {
    let endpoint = std::env::var("FOREMAN_TEST_ETCD")
        .expect("FOREMAN_TEST_ETCD must name a real etcd as host:port (scripts/with-etcd starts one and sets it)");
    let endpoints = vec![endpoint];
    let cluster = fresh_cluster();
    let store = MetaStore::etcd(&endpoints, &cluster, OP_TIMEOUT).await.expect("first client");
    let second = MetaStore::etcd(&endpoints, &cluster, OP_TIMEOUT).await.expect("second client");
    let passed = contract::run_all(store.clone(), second).await.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("real etcd at {endpoints:?}, cluster {cluster}: {} cases passed: {passed:?}", passed.len());
    foreman::framework::store::contract(store.clone()).await.unwrap_or_else(|e| panic!("job store: {e}"));
    let left = store.list("").await.expect("list");
    assert!(left.is_empty(), "the suite left keys behind: {left:?}");
}

/// Nothing listens on port 1: calls fail within the operation time-out instead of hanging, and say honestly
/// whether a write may have happened.
#[tokio::test]
async fn an_unreachable_etcd_fails_within_the_time_out() {
    let timeout = Duration::from_millis(500);
    let store = MetaStore::etcd(&["127.0.0.1:1".to_owned()], "nowhere", timeout).await.expect("connects lazily");
    let read = tokio::time::timeout(timeout * 4, store.get("k")).await.expect("bounded by the op time-out");
    assert!(matches!(read, Err(MetaError::Unavailable(_))), "{read:?}");
    let put = Op::Put { key: "k".into(), value: b"v".to_vec(), lease: None };
    let write = tokio::time::timeout(timeout * 4, store.txn(&[], &[put])).await.expect("bounded by the op time-out");
    assert!(matches!(write, Err(MetaError::Unavailable(_) | MetaError::Unknown(_))), "{write:?}");
    eprintln!("unreachable etcd: read {read:?}, write {write:?}");
}
