//! The metastore contract: one suite of cases that every backend must pass, run against the embedded store (unit
//! tests), a real etcd (`tests/real_etcd.rs`) and the simulated etcd (`sim/meta_contract.rs`).
//!
//! Each case uses its own key prefix (`contract/<case>/`), so cases never see each other's keys. The election is
//! one per cluster, so the cases that campaign check that nobody leads when they start and leave nobody leading
//! when they end. Give the suite a fresh cluster: it assumes the election is free and the keys are absent.
//!
//! Timing: the lease-expiry case waits for a 2 s lease (real etcd's minimum) to expire, a few seconds of wall time
//! against a real etcd; the other cases wait at most `BLOCKED_FOR` (300 ms) to see that a campaign is blocked.

use std::future::Future;
use std::time::Duration;

use super::{Cond, LeaderKey, LeaseId, MetaError, MetaStore, Op, TXN_OPS_MAX};

/// How long a campaign must stay blocked to count as blocked.
const BLOCKED_FOR: Duration = Duration::from_millis(300);
/// The longest a case may take before it counts as hung.
const CASE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a campaign may take to win once the way is clear.
const WIN_WITHIN: Duration = Duration::from_secs(10);
/// A lease long enough never to expire during a case.
const LONG_TTL: Duration = Duration::from_secs(60);
/// The shortest lease real etcd grants: the expiry case uses it.
const SHORT_TTL: Duration = Duration::from_secs(2);

type CaseResult = Result<(), String>;

/// Runs every case against `store`, with `second` another client of the same store (for the election cases; a
/// clone of `store` will do for the embedded backend). Returns the names of the cases that passed, or the first
/// failure as `"<case>: <what broke>"`.
pub async fn run_all(store: MetaStore, second: MetaStore) -> Result<Vec<&'static str>, String> {
    let s = &store;
    let t = &second;
    let mut passed = vec![];
    run(&mut passed, "get_put_get", get_put_get(s)).await?;
    run(&mut passed, "list_sorted_by_prefix", list_sorted_by_prefix(s)).await?;
    run(&mut passed, "list_many_and_large", list_many_and_large(s)).await?;
    run(&mut passed, "txn_all_or_nothing", txn_all_or_nothing(s)).await?;
    run(&mut passed, "value_equals_on_existing_key", value_equals_on_existing_key(s)).await?;
    run(&mut passed, "value_equals_on_missing_key_is_false", value_equals_on_missing_key_is_false(s)).await?;
    run(&mut passed, "txn_refusals", txn_refusals(s)).await?;
    run(&mut passed, "leased_put_goes_with_its_lease", leased_put_goes_with_its_lease(s)).await?;
    run(&mut passed, "keep_alive_on_revoked_lease_is_gone", keep_alive_on_revoked_lease_is_gone(s)).await?;
    run(&mut passed, "is_leader_while_leading_only", is_leader_while_leading_only(s)).await?;
    run(&mut passed, "deposed_by_resign_is_fenced", deposed_leader_is_fenced(s, t, Depose::Resign)).await?;
    run(&mut passed, "deposed_by_revoke_is_fenced", deposed_leader_is_fenced(s, t, Depose::Revoke)).await?;
    run(&mut passed, "candidates_lead_in_campaign_order", candidates_lead_in_campaign_order(s, t)).await?;
    run(&mut passed, "bump_counter", bump_counter(s, t)).await?;
    run(&mut passed, "campaign_on_revoked_lease_is_gone", campaign_on_revoked_lease_is_gone(s)).await?;
    run(&mut passed, "lease_expiry_hands_over", lease_expiry_hands_over(s, t)).await?;
    Ok(passed)
}

async fn run(passed: &mut Vec<&'static str>, name: &'static str, case: impl Future<Output = CaseResult>) -> CaseResult {
    tracing::info!(case = name, "metastore contract case");
    match tokio::time::timeout(CASE_TIMEOUT, case).await {
        Ok(Ok(())) => {
            passed.push(name);
            Ok(())
        }
        Ok(Err(e)) => Err(format!("{name}: {e}")),
        Err(_) => Err(format!("{name}: did not finish within {CASE_TIMEOUT:?}")),
    }
}

fn put(key: &str, value: &str) -> Op {
    Op::Put { key: key.into(), value: value.into(), lease: None }
}

fn leased(key: &str, value: &str, lease: LeaseId) -> Op {
    Op::Put { key: key.into(), value: value.into(), lease: Some(lease) }
}

fn del(key: &str) -> Op {
    Op::Delete { key: key.into() }
}

fn equals(key: &str, value: &str) -> Cond {
    Cond::ValueEquals { key: key.into(), value: value.into() }
}

/// Turns a metastore error into the case's failure message.
fn m<T>(what: &str, r: Result<T, MetaError>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn check(ok: bool, what: impl FnOnce() -> String) -> CaseResult {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

async fn expect_value(s: &MetaStore, key: &str, want: Option<&str>) -> CaseResult {
    let got = m(&format!("get {key}"), s.get(key).await)?;
    let got = got.map(|v| String::from_utf8_lossy(&v).into_owned());
    check(got.as_deref() == want, || format!("{key} holds {got:?}, expected {want:?}"))
}

async fn expect_txn(s: &MetaStore, what: &str, conds: &[Cond], ops: &[Op], want: bool) -> CaseResult {
    let got = m(what, s.txn(conds, ops).await)?;
    check(got == want, || format!("{what}: the transaction returned {got}, expected {want}"))
}

async fn expect_leader(s: &MetaStore, want: Option<&str>) -> CaseResult {
    let got = m("leader", s.leader().await)?;
    check(got.as_deref() == want, || format!("the leader is {got:?}, expected {want:?}"))
}

async fn keys_under(s: &MetaStore, prefix: &str) -> Result<Vec<String>, String> {
    Ok(m(&format!("list {prefix}"), s.list(prefix).await)?.into_iter().map(|(k, _)| k).collect())
}

/// Campaigns and expects to win within [`WIN_WITHIN`].
async fn win(s: &MetaStore, value: &str, lease: LeaseId) -> Result<LeaderKey, String> {
    match tokio::time::timeout(WIN_WITHIN, s.campaign(value, lease)).await {
        Ok(r) => m(&format!("campaign {value}"), r),
        Err(_) => Err(format!("campaign {value} did not win within {WIN_WITHIN:?}")),
    }
}

/// Polls `f` until it finishes or [`BLOCKED_FOR`] passes; an early finish is a failure (the future stays usable).
async fn expect_blocked<F: Future + Unpin>(f: &mut F, what: &str) -> CaseResult {
    tokio::select! {
        biased;
        _ = f => Err(format!("{what} finished early")),
        _ = tokio::time::sleep(BLOCKED_FOR) => Ok(()),
    }
}

async fn get_put_get(s: &MetaStore) -> CaseResult {
    let k = "contract/kv/a";
    expect_value(s, k, None).await?;
    expect_txn(s, "put", &[], &[put(k, "1")], true).await?;
    expect_value(s, k, Some("1")).await?;
    expect_txn(s, "overwrite", &[], &[put(k, "2")], true).await?;
    expect_value(s, k, Some("2")).await?;
    // An empty value is a value, not an absence.
    expect_txn(s, "put empty", &[], &[put(k, "")], true).await?;
    expect_value(s, k, Some("")).await?;
    expect_txn(s, "delete", &[], &[del(k)], true).await?;
    expect_value(s, k, None).await?;
    expect_txn(s, "delete a missing key", &[], &[del(k)], true).await?;
    // Bytes that are not UTF-8 come back as they went in.
    let raw = Op::Put { key: k.into(), value: vec![0, 0xff, 0x80, b'\n'], lease: None };
    expect_txn(s, "put raw bytes", &[], &[raw], true).await?;
    let got = m("get raw", s.get(k).await)?;
    check(got.as_deref() == Some(&[0, 0xff, 0x80, b'\n'][..]), || format!("raw bytes came back as {got:?}"))?;
    expect_txn(s, "clean up", &[], &[del(k)], true).await
}

async fn list_sorted_by_prefix(s: &MetaStore) -> CaseResult {
    let p = "contract/list/";
    let all = ["job/1", "job/10", "job/2", "job1", "jo", "job/1/x", "jobs/1"];
    // Written out of order, in two transactions.
    expect_txn(s, "put", &[], &all[..4].iter().rev().map(|k| put(&format!("{p}{k}"), k)).collect::<Vec<_>>(), true)
        .await?;
    expect_txn(s, "put", &[], &all[4..].iter().map(|k| put(&format!("{p}{k}"), k)).collect::<Vec<_>>(), true).await?;
    let got = m("list", s.list(&format!("{p}job/")).await)?;
    let want: Vec<(String, Vec<u8>)> =
        ["job/1", "job/1/x", "job/10", "job/2"].iter().map(|k| (format!("{p}{k}"), k.as_bytes().to_vec())).collect();
    check(got == want, || format!("list job/ gave {got:?}, expected {want:?}"))?;
    // A prefix is a plain string prefix: job/1 covers job/10, and a key is its own prefix.
    let got = keys_under(s, &format!("{p}job/1")).await?;
    let want = [format!("{p}job/1"), format!("{p}job/1/x"), format!("{p}job/10")];
    check(got == want, || format!("list job/1 gave {got:?}"))?;
    // A single get is exact: job/1 only (the simulated etcd's GetOptions::new() would return job/10 too).
    expect_value(s, &format!("{p}job/1"), Some("job/1")).await?;
    expect_value(s, &format!("{p}job"), None).await?;
    let got = keys_under(s, &format!("{p}nothing/")).await?;
    check(got.is_empty(), || format!("an empty prefix listed {got:?}"))?;
    let got = keys_under(s, p).await?;
    let mut want: Vec<String> = all.iter().map(|k| format!("{p}{k}")).collect();
    want.sort();
    check(got == want, || format!("list of everything gave {got:?}, expected {want:?}"))?;
    let cleanup: Vec<Op> = all.iter().map(|k| del(&format!("{p}{k}"))).collect();
    expect_txn(s, "clean up", &[], &cleanup, true).await?;
    let got = keys_under(s, p).await?;
    check(got.is_empty(), || format!("left behind {got:?}"))
}

/// How many keys [`list_many_and_large`] lists: more than two of real etcd's listing pages.
const LIST_MANY: usize = 2_345;
/// The large values [`list_many_and_large`] lists, and their size: together over the 4 MiB a gRPC client receives
/// in one response by default, each under real etcd's 1.5 MiB request limit.
const LIST_LARGE: usize = 6;
const LIST_LARGE_BYTES: usize = 1_000_000;

/// A listing returns every key once, in order, whatever its size: more keys than one page of a real etcd's
/// listing holds, and values that no single response of the client may hold together.
async fn list_many_and_large(s: &MetaStore) -> CaseResult {
    let p = "contract/list-many/";
    let many: Vec<String> = (0..LIST_MANY).map(|i| format!("{p}small/{i:05}")).collect();
    for chunk in many.chunks(TXN_OPS_MAX) {
        expect_txn(s, "put many", &[], &chunk.iter().map(|k| put(k, k)).collect::<Vec<_>>(), true).await?;
    }
    let got = m("list many", s.list(&format!("{p}small/")).await)?;
    let want: Vec<(String, Vec<u8>)> = many.iter().map(|k| (k.clone(), k.as_bytes().to_vec())).collect();
    check(got == want, || format!("listed {} keys of {LIST_MANY}, or out of order", got.len()))?;
    let large: Vec<String> = (0..LIST_LARGE).map(|i| format!("{p}large/{i}")).collect();
    for (i, k) in large.iter().enumerate() {
        let value = vec![b'a' + i as u8; LIST_LARGE_BYTES];
        expect_txn(s, "put large", &[], &[Op::Put { key: k.clone(), value, lease: None }], true).await?;
    }
    let got = m("list large", s.list(&format!("{p}large/")).await)?;
    let sizes: Vec<(String, usize, Option<u8>)> =
        got.iter().map(|(k, v)| (k.clone(), v.len(), v.first().copied())).collect();
    let want: Vec<(String, usize, Option<u8>)> =
        large.iter().enumerate().map(|(i, k)| (k.clone(), LIST_LARGE_BYTES, Some(b'a' + i as u8))).collect();
    check(sizes == want, || format!("listed {sizes:?}, expected {want:?}"))?;
    for chunk in many.iter().chain(&large).collect::<Vec<_>>().chunks(TXN_OPS_MAX) {
        expect_txn(s, "clean up", &[], &chunk.iter().map(|k| del(k)).collect::<Vec<_>>(), true).await?;
    }
    let got = keys_under(s, p).await?;
    check(got.is_empty(), || format!("left behind {} keys", got.len()))
}

async fn txn_all_or_nothing(s: &MetaStore) -> CaseResult {
    let (a, b, c) = ("contract/txn/a", "contract/txn/b", "contract/txn/c");
    expect_txn(s, "setup", &[], &[put(a, "1")], true).await?;
    // One condition of two fails: nothing happens, not even the ops whose keys the true condition names.
    let ops = [put(b, "new"), put(c, "new"), del(a)];
    expect_txn(s, "half-true conditions", &[equals(a, "1"), equals(b, "x")], &ops, false).await?;
    expect_value(s, a, Some("1")).await?;
    expect_value(s, b, None).await?;
    expect_value(s, c, None).await?;
    // Every condition holds: every op happens.
    expect_txn(s, "true conditions", &[equals(a, "1")], &ops, true).await?;
    expect_value(s, a, None).await?;
    expect_value(s, b, Some("new")).await?;
    expect_value(s, c, Some("new")).await?;
    // A transaction without ops just evaluates its conditions.
    expect_txn(s, "conditions only, true", &[equals(b, "new")], &[], true).await?;
    expect_txn(s, "conditions only, false", &[equals(b, "old")], &[], false).await?;
    // The largest allowed transaction applies whole.
    let many: Vec<Op> = (0..TXN_OPS_MAX).map(|i| put(&format!("contract/txn/many/{i:03}"), "x")).collect();
    expect_txn(s, "largest transaction", &[equals(b, "new")], &many, true).await?;
    let n = keys_under(s, "contract/txn/many/").await?.len();
    check(n == TXN_OPS_MAX, || format!("{n} of {TXN_OPS_MAX} puts applied"))?;
    let cleanup: Vec<Op> = (0..TXN_OPS_MAX).map(|i| del(&format!("contract/txn/many/{i:03}"))).collect();
    expect_txn(s, "clean up", &[], &cleanup, true).await?;
    expect_txn(s, "clean up", &[], &[del(b), del(c)], true).await
}

async fn value_equals_on_existing_key(s: &MetaStore) -> CaseResult {
    let k = "contract/eq/k";
    expect_txn(s, "setup", &[], &[put(k, "v1")], true).await?;
    expect_txn(s, "equal", &[equals(k, "v1")], &[put(k, "v2")], true).await?;
    expect_value(s, k, Some("v2")).await?;
    expect_txn(s, "stale value", &[equals(k, "v1")], &[put(k, "v3")], false).await?;
    expect_txn(s, "prefix of the value", &[equals(k, "v")], &[put(k, "v3")], false).await?;
    expect_value(s, k, Some("v2")).await?;
    expect_txn(s, "clean up", &[], &[del(k)], true).await
}

async fn value_equals_on_missing_key_is_false(s: &MetaStore) -> CaseResult {
    let (k, other) = ("contract/missing/k", "contract/missing/other");
    expect_txn(s, "equal to a value", &[equals(k, "x")], &[put(other, "1")], false).await?;
    expect_txn(s, "equal to the empty value", &[equals(k, "")], &[put(other, "1")], false).await?;
    expect_value(s, other, None).await?;
    expect_value(s, k, None).await
}

async fn txn_refusals(s: &MetaStore) -> CaseResult {
    let k = "contract/refuse/k";
    let lease = m("grant", s.grant(LONG_TTL).await)?;
    let refused = |r: Result<bool, MetaError>, what: &str| match r {
        Err(MetaError::Unavailable(_)) => Ok(()),
        other => Err(format!("{what}: expected a refusal, got {other:?}")),
    };
    refused(s.txn(&[], &[put(k, "1"), del(k)]).await, "two ops on one key")?;
    let many: Vec<Op> = (0..=TXN_OPS_MAX).map(|i| put(&format!("{k}{i}"), "x")).collect();
    refused(s.txn(&[], &many).await, "too many ops")?;
    refused(s.txn(&[equals(k, "x")], &[leased(k, "1", lease)]).await, "a leased put with a condition")?;
    refused(s.txn(&[], &[leased(k, "1", lease), put("contract/refuse/j", "1")]).await, "a leased put with company")?;
    refused(s.txn(&[], &[put("election/x", "1")]).await, "a hand-made election key")?;
    expect_value(s, k, None).await?;
    let got = keys_under(s, "contract/refuse/").await?;
    check(got.is_empty(), || format!("a refused transaction wrote {got:?}"))?;
    m("revoke", s.revoke(lease).await)
}

async fn leased_put_goes_with_its_lease(s: &MetaStore) -> CaseResult {
    let (k, plain, over) = ("contract/lease/k", "contract/lease/plain", "contract/lease/over");
    let lease = m("grant", s.grant(LONG_TTL).await)?;
    expect_txn(s, "plain put", &[], &[put(plain, "stays"), put(over, "durable")], true).await?;
    expect_txn(s, "leased put", &[], &[leased(k, "1", lease)], true).await?;
    // A leased put over a plain key attaches it to the lease.
    expect_txn(s, "leased put over a plain key", &[], &[leased(over, "leased", lease)], true).await?;
    expect_value(s, k, Some("1")).await?;
    expect_value(s, over, Some("leased")).await?;
    m("revoke", s.revoke(lease).await)?;
    expect_value(s, k, None).await?;
    expect_value(s, over, None).await?;
    expect_value(s, plain, Some("stays")).await?;
    match s.txn(&[], &[leased(k, "2", lease)]).await {
        Err(MetaError::LeaseGone) => {}
        other => return Err(format!("a put on a revoked lease gave {other:?}, expected LeaseGone")),
    }
    expect_value(s, k, None).await?;
    expect_txn(s, "clean up", &[], &[del(plain)], true).await
}

async fn keep_alive_on_revoked_lease_is_gone(s: &MetaStore) -> CaseResult {
    let lease = m("grant", s.grant(LONG_TTL).await)?;
    m("keep-alive", s.keep_alive(lease).await)?;
    m("keep-alive", s.keep_alive(lease).await)?;
    m("revoke", s.revoke(lease).await)?;
    match s.keep_alive(lease).await {
        Err(MetaError::LeaseGone) => {}
        other => return Err(format!("keep-alive on a revoked lease gave {other:?}, expected LeaseGone")),
    }
    // Revoking again is not an error: the lease is gone either way.
    m("revoke again", s.revoke(lease).await)
}

async fn is_leader_while_leading_only(s: &MetaStore) -> CaseResult {
    let k = "contract/leader/k";
    expect_leader(s, None).await?;
    let lease = m("grant", s.grant(LONG_TTL).await)?;
    let key = win(s, "leader-1", lease).await?;
    check(key.value() == "leader-1", || format!("the leader key holds {:?}", key.value()))?;
    check(key.key().starts_with(&format!("{}election/", s.prefix())), || format!("leader key {}", key.key()))?;
    expect_leader(s, Some("leader-1")).await?;
    let guard = [Cond::IsLeader(key.clone())];
    expect_txn(s, "guarded write while leading", &guard, &[put(k, "1")], true).await?;
    m("keep-alive", s.keep_alive(lease).await)?;
    expect_txn(s, "guarded write after a keep-alive", &guard, &[put(k, "2")], true).await?;
    m("resign", s.resign(&key).await)?;
    expect_leader(s, None).await?;
    expect_txn(s, "guarded write after resigning", &guard, &[put(k, "3")], false).await?;
    expect_value(s, k, Some("2")).await?;
    // Resigning twice is not an error.
    m("resign again", s.resign(&key).await)?;

    // The same again, losing the lease instead.
    let key = win(s, "leader-2", lease).await?;
    let guard = [Cond::IsLeader(key.clone())];
    expect_txn(s, "guarded write while leading again", &guard, &[put(k, "4")], true).await?;
    m("revoke", s.revoke(lease).await)?;
    expect_leader(s, None).await?;
    expect_txn(s, "guarded write after the lease ended", &guard, &[put(k, "5")], false).await?;
    expect_value(s, k, Some("4")).await?;
    m("resign after the lease ended", s.resign(&key).await)?;
    expect_txn(s, "clean up", &[], &[del(k)], true).await
}

#[derive(Clone, Copy, Debug)]
enum Depose {
    Resign,
    Revoke,
}

/// The fencing case: a leader that lost its leadership (by resigning or by losing its lease) cannot write any more,
/// even after the next leader took over and wrote.
async fn deposed_leader_is_fenced(s: &MetaStore, t: &MetaStore, how: Depose) -> CaseResult {
    let k = "contract/fence/v";
    expect_leader(s, None).await?;
    let lease_a = m("grant A", s.grant(LONG_TTL).await)?;
    let lease_b = m("grant B", t.grant(LONG_TTL).await)?;
    let a = win(s, "fence-a", lease_a).await?;
    let guard_a = [Cond::IsLeader(a.clone())];
    expect_txn(s, "A writes while leading", &guard_a, &[put(k, "a")], true).await?;

    let mut b_campaign = Box::pin(t.campaign("fence-b", lease_b));
    expect_blocked(&mut b_campaign, "B's campaign while A leads").await?;
    expect_leader(t, Some("fence-a")).await?;
    match how {
        Depose::Resign => m("A resigns", s.resign(&a).await)?,
        Depose::Revoke => m("A's lease is revoked", s.revoke(lease_a).await)?,
    }
    let b = match tokio::time::timeout(WIN_WITHIN, b_campaign).await {
        Ok(r) => m("B's campaign", r)?,
        Err(_) => return Err(format!("B did not win within {WIN_WITHIN:?} of A's deposition ({how:?})")),
    };
    expect_leader(s, Some("fence-b")).await?;
    let guard_b = [Cond::IsLeader(b.clone())];
    expect_txn(t, "B writes as the new leader", &guard_b, &[put(k, "b")], true).await?;
    // The deposed leader's guarded write is refused, and changes nothing.
    expect_txn(s, "deposed A's guarded write", &guard_a, &[put(k, "a-stale")], false).await?;
    expect_txn(s, "deposed A's guarded delete", &guard_a, &[del(k)], false).await?;
    expect_value(s, k, Some("b")).await?;
    // Still refused with B's guard added: one false condition is enough.
    expect_txn(s, "A's guard with B's", &[guard_b[0].clone(), guard_a[0].clone()], &[put(k, "x")], false).await?;
    expect_value(t, k, Some("b")).await?;

    m("B resigns", t.resign(&b).await)?;
    expect_leader(s, None).await?;
    m("revoke A", s.revoke(lease_a).await)?;
    m("revoke B", t.revoke(lease_b).await)?;
    expect_txn(s, "clean up", &[], &[del(k)], true).await
}

async fn candidates_lead_in_campaign_order(s: &MetaStore, t: &MetaStore) -> CaseResult {
    expect_leader(s, None).await?;
    let leases = [
        m("grant 1", s.grant(LONG_TTL).await)?,
        m("grant 2", t.grant(LONG_TTL).await)?,
        m("grant 3", s.grant(LONG_TTL).await)?,
    ];
    let first = win(s, "order-1", leases[0]).await?;
    let mut second = Box::pin(t.campaign("order-2", leases[1]));
    expect_blocked(&mut second, "the second campaign").await?;
    let mut third = Box::pin(s.campaign("order-3", leases[2]));
    expect_blocked(&mut third, "the third campaign").await?;
    expect_blocked(&mut second, "the second campaign").await?;
    m("resign 1", s.resign(&first).await)?;
    // The second candidate in line wins, not the third.
    let second = match tokio::time::timeout(WIN_WITHIN, second).await {
        Ok(r) => m("the second campaign", r)?,
        Err(_) => return Err("the second candidate did not win after the first resigned".into()),
    };
    expect_blocked(&mut third, "the third campaign after the second won").await?;
    expect_leader(s, Some("order-2")).await?;
    m("revoke 2", t.revoke(leases[1]).await)?;
    let third = match tokio::time::timeout(WIN_WITHIN, third).await {
        Ok(r) => m("the third campaign", r)?,
        Err(_) => return Err("the third candidate did not win after the second's lease ended".into()),
    };
    expect_leader(t, Some("order-3")).await?;
    expect_txn(s, "stale guard of the second", &[Cond::IsLeader(second)], &[], false).await?;
    m("resign 3", s.resign(&third).await)?;
    expect_leader(s, None).await?;
    for lease in leases {
        m("revoke", s.revoke(lease).await)?;
    }
    Ok(())
}

async fn bump_counter(s: &MetaStore, t: &MetaStore) -> CaseResult {
    let (c, free, bad) = ("contract/bump/epoch", "contract/bump/free", "contract/bump/bad");
    expect_leader(s, None).await?;
    let lease_a = m("grant A", s.grant(LONG_TTL).await)?;
    let a = win(s, "bump-a", lease_a).await?;
    let guard_a = [Cond::IsLeader(a.clone())];
    let mut last = 0;
    for _ in 0..3 {
        let got = m("bump", s.bump_counter(c, &guard_a).await)?;
        let Some(n) = got else { return Err("the leader's bump was refused".into()) };
        check(n == last + 1, || format!("the counter went from {last} to {n}"))?;
        last = n;
    }
    expect_value(s, c, Some("3")).await?;
    // Deposed: A resigns, B leads and bumps; A's bump is refused and changes nothing.
    m("A resigns", s.resign(&a).await)?;
    let lease_b = m("grant B", t.grant(LONG_TTL).await)?;
    let b = win(t, "bump-b", lease_b).await?;
    let got = m("B bumps", t.bump_counter(c, &[Cond::IsLeader(b.clone())]).await)?;
    check(got == Some(4), || format!("the new leader's bump gave {got:?}, expected Some(4)"))?;
    let got = m("deposed A bumps", s.bump_counter(c, &guard_a).await)?;
    check(got.is_none(), || format!("the deposed leader's bump gave {got:?}, expected None"))?;
    expect_value(s, c, Some("4")).await?;
    // A deposed leader cannot take the first value of a missing counter either.
    let got = m("deposed A bumps a new counter", s.bump_counter(free, &guard_a).await)?;
    check(got.is_none(), || format!("the deposed leader's first bump gave {got:?}"))?;
    expect_value(s, free, None).await?;
    // Without a guard, a counter simply counts.
    for want in 1..=2 {
        let got = m("unguarded bump", s.bump_counter(free, &[]).await)?;
        check(got == Some(want), || format!("an unguarded bump gave {got:?}, expected Some({want})"))?;
    }
    // A value that is not a counter is reported, not overwritten.
    expect_txn(s, "setup", &[], &[put(bad, "seven")], true).await?;
    match s.bump_counter(bad, &[]).await {
        Err(MetaError::Corrupt { .. }) => {}
        other => return Err(format!("bumping a non-counter gave {other:?}, expected Corrupt")),
    }
    expect_value(s, bad, Some("seven")).await?;
    m("B resigns", t.resign(&b).await)?;
    m("revoke A", s.revoke(lease_a).await)?;
    m("revoke B", t.revoke(lease_b).await)?;
    expect_txn(s, "clean up", &[], &[del(c), del(free), del(bad)], true).await
}

async fn campaign_on_revoked_lease_is_gone(s: &MetaStore) -> CaseResult {
    expect_leader(s, None).await?;
    let lease = m("grant", s.grant(LONG_TTL).await)?;
    m("revoke", s.revoke(lease).await)?;
    match tokio::time::timeout(WIN_WITHIN, s.campaign("dead", lease)).await {
        Ok(Err(MetaError::LeaseGone)) => {}
        Ok(other) => return Err(format!("a campaign on a revoked lease gave {other:?}, expected LeaseGone")),
        Err(_) => return Err("a campaign on a revoked lease hung".into()),
    }
    expect_leader(s, None).await
}

/// A leader that stops keeping its lease alive loses it on its own: its leased keys go, the next candidate leads,
/// and the old leader's guard is false.
async fn lease_expiry_hands_over(s: &MetaStore, t: &MetaStore) -> CaseResult {
    let (member, k) = ("contract/expiry/member", "contract/expiry/v");
    expect_leader(s, None).await?;
    let lease_a = m("grant A", s.grant(SHORT_TTL).await)?;
    let a = win(s, "expiry-a", lease_a).await?;
    expect_txn(s, "A's membership", &[], &[leased(member, "a", lease_a)], true).await?;
    expect_txn(s, "A writes", &[Cond::IsLeader(a.clone())], &[put(k, "a")], true).await?;
    let lease_b = m("grant B", t.grant(LONG_TTL).await)?;
    // Nothing else calls the store while B waits: the store must end A's lease on its own. Generous: real etcd
    // checks for expired leases every 500 ms, and refreshes leases when its own leader changes.
    let b = match tokio::time::timeout(SHORT_TTL * 5, t.campaign("expiry-b", lease_b)).await {
        Ok(r) => m("B's campaign", r)?,
        Err(_) => return Err("A's lease did not expire, or B did not take over".into()),
    };
    expect_leader(t, Some("expiry-b")).await?;
    expect_value(t, member, None).await?;
    expect_txn(s, "A's guarded write after its lease expired", &[Cond::IsLeader(a)], &[put(k, "stale")], false).await?;
    expect_value(t, k, Some("a")).await?;
    match s.keep_alive(lease_a).await {
        Err(MetaError::LeaseGone) => {}
        other => return Err(format!("keep-alive on an expired lease gave {other:?}, expected LeaseGone")),
    }
    m("B resigns", t.resign(&b).await)?;
    m("revoke B", t.revoke(lease_b).await)?;
    expect_leader(s, None).await?;
    expect_txn(s, "clean up", &[], &[del(k)], true).await
}
