//! Goal: the metastore contract (`foreman::meta::contract`) holds against madsim's simulated etcd, the backend
//! every other scenario runs on, and against the embedded store on simulated time; so whatever a scenario proves
//! over the simulated etcd also holds for what `foreman standalone` and a real etcd do.
//!
//! Method: an etcd node and a client node; the client runs the whole suite through two separate etcd clients (the
//! election cases campaign from both). A second scenario runs the suite against an in-memory embedded store, whose
//! lease expiry is measured on the simulated clock. Both also run the job store's contract
//! (`foreman::framework::store::contract`: fenced puts refused once superseded, listing, refusals of bad keys).

use std::time::Duration;

use foreman::meta::{contract, MetaStore};
use madsim::runtime::Handle;

use crate::harness::announce;

const ETCD_ADDR: &str = "10.0.0.1:2379";
const OP_TIMEOUT: Duration = Duration::from_secs(2);

#[madsim::test]
async fn metastore_contract_on_simulated_etcd() {
    announce("metastore_contract_on_simulated_etcd");
    let handle = Handle::current();
    let addr = ETCD_ADDR.parse().unwrap();
    handle
        .create_node()
        .name("etcd")
        .ip("10.0.0.1".parse().unwrap())
        .init(move || async move { etcd_client::SimServer::builder().serve(addr).await.unwrap() })
        .build();
    // Let etcd listen before anyone connects.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let client = handle.create_node().name("client").ip("10.0.3.1".parse().unwrap()).build();
    let passed = client
        .spawn(async move {
            let endpoints = vec![ETCD_ADDR.to_owned()];
            let store = MetaStore::etcd(&endpoints, "contract", OP_TIMEOUT).await.expect("first client");
            let second = MetaStore::etcd(&endpoints, "contract", OP_TIMEOUT).await.expect("second client");
            let passed = contract::run_all(store.clone(), second).await?;
            // The job store's contract (fenced puts, listing, refusals), over the same client.
            foreman::framework::store::contract(store.clone()).await.map_err(|e| format!("job store: {e}"))?;
            let left = store.list("").await.map_err(|e| e.to_string())?;
            if !left.is_empty() {
                return Err(format!("the suite left keys behind: {left:?}"));
            }
            Ok(passed)
        })
        .await
        .expect("the client node ran");
    let passed = passed.unwrap_or_else(|e| panic!("contract broken on the simulated etcd: {e}"));
    tracing::info!("{} contract cases passed on the simulated etcd", passed.len());
}

#[madsim::test]
async fn metastore_contract_on_embedded_store() {
    announce("metastore_contract_on_embedded_store");
    let store = MetaStore::embedded("contract", None).expect("in-memory store");
    let passed = contract::run_all(store.clone(), store.clone())
        .await
        .unwrap_or_else(|e| panic!("contract broken on the embedded store: {e}"));
    foreman::framework::store::contract(store.clone())
        .await
        .unwrap_or_else(|e| panic!("the job store's contract broken on the embedded store: {e}"));
    let left = store.list("").await.expect("list");
    assert!(left.is_empty(), "the suite left keys behind: {left:?}");
    tracing::info!("{} contract cases passed on the embedded store", passed.len());
}
