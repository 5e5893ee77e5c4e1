//! The etcd backend: real etcd in the production build, madsim's simulated etcd in the simulation build.
//!
//! Only calls that behave alike in both are made (madsim-notes §4.2, §4.3): `get` without options (exact key),
//! `GetOptions::new().with_prefix()` (never a bare `GetOptions::new()`, which is a prefix read in the simulation),
//! value-equality compares, single-key deletes, leases, and the Election API's campaign and resign. Every call is
//! bounded by the operation time-out, except `campaign`, which blocks by design and is raced by its caller. The one
//! exception is a listing against real etcd, which is paged (a range with a limit, at one revision): the simulated
//! etcd has neither, and never answers over a size limit.
//!
//! Where the two differ, this module absorbs it:
//! - "lease not found" is recognised by its text (the simulation answers `NotFound "etcdserver: requested lease
//!   not found"`, real etcd-client `LeaseKeepAliveError("lease not found")` after checking `ttl <= 0`);
//! - a leased put is sent as a plain put, never inside a transaction (the simulation panics on a leased put in a
//!   transaction whose lease is gone); [`super::MetaStore::txn`] makes sure such a put stands alone;
//! - the leader is read as the election's key with the lowest creation revision (what both servers compute),
//!   not through observe;
//! - resigning a key that is already gone is success in both (the simulation says "session expired").

use std::future::Future;
use std::io::ErrorKind;
use std::time::Duration;

use etcd_client::{
    Client, Compare as EtcdCompare, CompareOp, ConnectOptions, GetOptions, PutOptions, ResignOptions, Txn, TxnOp,
};

use super::access::EtcdAccess;
use super::{Compare, LeaderHandle, LeaderKey, LeaseId, MetaError, Write};

/// Whether a failed call may have changed the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    /// A read, or a call that changes nothing when it fails.
    Read,
    /// A write: a time-out or a failure in flight leaves its outcome unknown.
    Write,
}

pub(super) struct EtcdStore {
    client: Client,
    op_timeout: Duration,
    /// Whether the client authenticates as a user: its token expires when unused (etcd's `--auth-token-ttl`), and is
    /// then fetched again.
    #[cfg_attr(madsim, allow(dead_code))]
    has_user: bool,
    /// The simulation's metastore latency (zero, and inert, in production).
    pub(super) latency: crate::buggify::Latency,
}

/// How many keys the first page of a listing asks a real etcd for; each next page asks for as many as fit in
/// [`LIST_PAGE_BYTES`] at the sizes seen so far.
#[cfg(not(madsim))]
const LIST_PAGE_KEYS_FIRST: i64 = 1000;
/// The most keys one page asks for.
#[cfg(not(madsim))]
const LIST_PAGE_KEYS_MAX: i64 = 10_000;
/// The size a page aims at: below etcd's default 1.5 MiB request limit (`--max-request-bytes`), a quarter of the
/// client's 4 MiB receive limit. Fewer, larger pages matter: etcd 3.4 walks its index from a page's start to the
/// range's end for every page, so a listing costs its pages times the keys left.
#[cfg(not(madsim))]
const LIST_PAGE_BYTES: usize = 1 << 20;

/// The first key after every key that starts with `prefix` (etcd's prefix range end): its last byte below 0xff
/// incremented, the rest dropped; `\0` (to the end of the keyspace) when every byte is 0xff.
#[cfg(not(madsim))]
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Whether a failed read was a response larger than the client accepts (tonic's decode limit).
#[cfg(not(madsim))]
fn is_too_large(text: &str) -> bool {
    text.contains("message length too large")
}

fn is_lease_not_found(text: &str) -> bool {
    text.to_ascii_lowercase().contains("lease not found")
}

/// An etcd-client error with its sources (a transport error's own text is only "transport error"), each source
/// not already in the text before it; at most [`CHAIN_DEPTH_MAX`] parts.
fn chain(e: &etcd_client::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if parts.len() >= CHAIN_DEPTH_MAX {
            break;
        }
        let text = s.to_string();
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Enough for tonic's transport errors (transport → hyper → connect → io).
const CHAIN_DEPTH_MAX: usize = 8;

/// Maps an etcd-client error to what the caller can do about it.
fn classify(e: etcd_client::Error, effect: Effect) -> MetaError {
    let text = chain(&e);
    if is_lease_not_found(&text) {
        return MetaError::LeaseGone;
    }
    let refused = match &e {
        // The simulation refuses requests to a dead or cut-off etcd at once.
        etcd_client::Error::IoError(io) => io.kind() == ErrorKind::ConnectionRefused,
        etcd_client::Error::InvalidArgs(_)
        | etcd_client::Error::InvalidUri(_)
        | etcd_client::Error::EndpointError(_) => true,
        etcd_client::Error::GRpcStatus(status) => {
            use tonic::Code;
            match status.code() {
                // "etcdserver: request timed out" is Unavailable too, but real etcd may still apply that request.
                Code::Unavailable => !text.contains("timed out"),
                Code::InvalidArgument
                | Code::NotFound
                | Code::AlreadyExists
                | Code::PermissionDenied
                | Code::Unauthenticated
                | Code::FailedPrecondition
                | Code::ResourceExhausted
                | Code::OutOfRange
                | Code::Unimplemented => true,
                _ => false,
            }
        }
        _ => false,
    };
    if refused || effect == Effect::Read {
        MetaError::Unavailable(text)
    } else {
        MetaError::Unknown(text)
    }
}

impl EtcdStore {
    /// A client of `endpoints` (validated by the caller: one scheme, `tls` when it is https and `access` has the
    /// CA). The simulated etcd takes bare `host:port` and has no TLS.
    pub(super) async fn connect(
        endpoints: &[String],
        tls: bool,
        access: &EtcdAccess,
        op_timeout: Duration,
    ) -> Result<EtcdStore, MetaError> {
        let mut options = ConnectOptions::new();
        if let Some((user, password)) = &access.user {
            options = options.with_user(user.clone(), password.clone());
        }
        // why: the simulated etcd has no TLS options; production turns the loaded files into etcd-client's.
        #[cfg(not(madsim))]
        let endpoints: Vec<String> = {
            if let (true, Some(t)) = (tls, &access.tls) {
                let mut o = etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(&t.ca));
                if let Some((cert, key)) = &t.identity {
                    o = o.identity(etcd_client::Identity::from_pem(cert, key));
                }
                options = options.with_tls(o);
            }
            endpoints.to_vec()
        };
        #[cfg(madsim)]
        let endpoints: Vec<String> = {
            if tls {
                return Err(MetaError::Unavailable("the simulated etcd has no TLS: give host:port".to_owned()));
            }
            endpoints.iter().map(|e| e.strip_prefix("http://").unwrap_or(e).to_owned()).collect()
        };
        // Without a user neither client contacts the server here (the bound is for a slow DNS lookup); with one,
        // real etcd-client authenticates now.
        let client = match tokio::time::timeout(op_timeout, Client::connect(&endpoints, Some(options))).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(MetaError::Unavailable(chain(&e))),
            Err(_) => return Err(MetaError::Unavailable(format!("connecting to etcd {endpoints:?} timed out"))),
        };
        Ok(EtcdStore { client, op_timeout, has_user: access.user.is_some(), latency: Default::default() })
    }

    /// Runs one etcd call under the operation time-out.
    async fn call<T>(
        &self,
        what: &str,
        effect: Effect,
        f: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, MetaError> {
        let (before, after) = self.latency.draw();
        let delayed = async {
            if !before.is_zero() {
                tokio::time::sleep(before).await;
            }
            let answer = f.await;
            if !after.is_zero() {
                tokio::time::sleep(after).await;
            }
            answer
        };
        match tokio::time::timeout(self.op_timeout, delayed).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                // why: the simulated etcd has no authentication, so no token to renew.
                #[cfg(not(madsim))]
                self.maybe_renew_token(&e).await;
                Err(classify(e, effect))
            }
            Err(_) => {
                let why = format!("etcd {what} did not answer within {:?}", self.op_timeout);
                Err(match effect {
                    Effect::Read => MetaError::Unavailable(why),
                    Effect::Write => MetaError::Unknown(why),
                })
            }
        }
    }

    /// A refused token (etcd's simple tokens expire after `--auth-token-ttl` unused) is fetched again, so that the
    /// caller's retry succeeds. The refused request itself was not applied (`Unauthenticated` is a refusal).
    #[cfg(not(madsim))]
    async fn maybe_renew_token(&self, e: &etcd_client::Error) {
        let expired = matches!(e, etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::Unauthenticated);
        if !(self.has_user && expired) {
            return;
        }
        match tokio::time::timeout(self.op_timeout, self.client.refresh_token()).await {
            Ok(Ok(())) => tracing::info!("etcd refused the auth token ({e}); authenticated again"),
            Ok(Err(again)) => tracing::warn!("etcd refused the auth token ({e}), and authenticating again: {again}"),
            Err(_) => tracing::warn!("etcd refused the auth token ({e}); authenticating again timed out"),
        }
    }

    pub(super) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, MetaError> {
        let mut kv = self.client.kv_client();
        let resp = self.call("get", Effect::Read, kv.get(key, None)).await?;
        Ok(resp.kvs().iter().find(|kv| kv.key() == key.as_bytes()).map(|kv| kv.value().to_vec()))
    }

    /// Every key under `prefix` (full keys), in key order.
    ///
    /// Against a real etcd the listing is read in pages of about [`LIST_PAGE_BYTES`], all at the revision of the
    /// first page: one snapshot, as a single read would be, but no response near the client's 4 MiB receive limit
    /// (a single read of 100,000 job records is a 39 MB response, which the client refuses whole). A page the
    /// client still refuses as too large (a value larger than the ones before it) is asked again at half the keys,
    /// down to one key. The simulated etcd has no ranges or limits: it answers the whole prefix at once.
    pub(super) async fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        #[cfg(madsim)]
        let kvs = {
            let mut kv = self.client.kv_client();
            let resp = self.call("list", Effect::Read, kv.get(prefix, Some(GetOptions::new().with_prefix()))).await?;
            resp.kvs().iter().map(|kv| (kv.key().to_vec(), kv.value().to_vec())).collect::<Vec<_>>()
        };
        #[cfg(not(madsim))]
        let kvs = self.list_paged(prefix).await?;
        kvs.into_iter()
            .filter(|(key, _)| key.starts_with(prefix.as_bytes()))
            .map(|(key, value)| match String::from_utf8(key) {
                Ok(key) => Ok((key, value)),
                Err(e) => Err(MetaError::Corrupt {
                    key: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                    reason: format!("the key is not UTF-8: {}", e.utf8_error()),
                }),
            })
            .collect()
    }

    /// The keys and values under `prefix`, read page by page at one revision (see [`EtcdStore::list`]).
    #[cfg(not(madsim))]
    async fn list_paged(&self, prefix: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>, MetaError> {
        let end = prefix_end(prefix.as_bytes());
        let mut kv = self.client.kv_client();
        let mut out = vec![];
        let mut start = prefix.as_bytes().to_vec();
        let mut revision = 0i64;
        let mut limit = LIST_PAGE_KEYS_FIRST;
        let (mut pages, mut largest) = (0usize, 0usize);
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(limit);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let mut resp = match self.call("list", Effect::Read, kv.get(start.clone(), Some(options))).await {
                Ok(resp) => resp,
                Err(MetaError::Unavailable(why)) if limit > 1 && is_too_large(&why) => {
                    limit /= 2;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if revision == 0 {
                revision = resp.header().map_or(0, |h| h.revision());
            }
            let more = resp.more();
            let kvs = resp.take_kvs();
            pages += 1;
            let bytes: usize = kvs.iter().map(|kv| kv.key().len() + kv.value().len()).sum();
            largest = largest.max(bytes);
            let Some(last) = kvs.last() else { break };
            let per_key = (bytes / kvs.len()).max(1);
            limit = i64::try_from(LIST_PAGE_BYTES / per_key).unwrap_or(LIST_PAGE_KEYS_MAX).clamp(1, LIST_PAGE_KEYS_MAX);
            let mut next = last.key().to_vec();
            next.push(0);
            out.extend(kvs.into_iter().map(|kv| kv.into_key_value()));
            if !more {
                break;
            }
            start = next;
        }
        if pages > 1 {
            tracing::debug!(prefix, pages, keys = out.len(), largest_page_bytes = largest, revision, "a paged listing");
        }
        Ok(out)
    }

    pub(super) async fn txn(&self, compares: &[Compare], writes: &[Write]) -> Result<bool, MetaError> {
        if let [Write::Put { key, value, lease: Some(lease) }] = writes {
            debug_assert!(compares.is_empty(), "MetaStore::txn lets a leased put stand alone only");
            let mut kv = self.client.kv_client();
            let opts = PutOptions::new().with_lease(lease.0);
            self.call("put", Effect::Write, kv.put(key.as_str(), value.clone(), Some(opts))).await?;
            return Ok(true);
        }
        let when: Vec<EtcdCompare> =
            compares.iter().map(|c| EtcdCompare::value(c.key.as_str(), CompareOp::Equal, c.value.clone())).collect();
        let then: Vec<TxnOp> = writes
            .iter()
            .map(|w| match w {
                Write::Put { key, value, lease } => {
                    TxnOp::put(key.as_str(), value.clone(), lease.map(|l| PutOptions::new().with_lease(l.0)))
                }
                Write::Delete { key } => TxnOp::delete(key.as_str(), None),
            })
            .collect();
        let mut kv = self.client.kv_client();
        let txn = Txn::new().when(when).and_then(then);
        #[cfg(madsim)]
        {
            let in_flight = self.latency.in_flight();
            if !in_flight.is_zero() {
                // The simulation's writes in flight: the request leaves now and is applied `in_flight` later, on
                // its own, whatever becomes of this caller (it may time out, or be dropped with its task).
                let (tx, rx) = tokio::sync::oneshot::channel();
                tokio::spawn(async move {
                    tokio::time::sleep(in_flight).await;
                    let _ = tx.send(kv.txn(txn).await);
                });
                let answer = async move {
                    match rx.await {
                        Ok(answer) => answer,
                        // The node stopped before the write left: no answer ever comes (the time-out says so).
                        Err(_) => std::future::pending().await,
                    }
                };
                return Ok(self.call("txn", Effect::Write, answer).await?.succeeded());
            }
        }
        let resp = self.call("txn", Effect::Write, kv.txn(txn)).await?;
        Ok(resp.succeeded())
    }

    pub(super) async fn grant(&self, ttl_secs: i64) -> Result<LeaseId, MetaError> {
        let mut lease = self.client.lease_client();
        let resp = self.call("lease grant", Effect::Write, lease.grant(ttl_secs, None)).await?;
        Ok(LeaseId(resp.id()))
    }

    pub(super) async fn keep_alive(&self, id: LeaseId) -> Result<(), MetaError> {
        // `keep_alive` opens a stream, sends one request and reads one answer: one round trip. Real etcd-client
        // turns an answer with `ttl <= 0` into "lease not found"; the simulation answers with that error itself.
        let mut lease = self.client.lease_client();
        self.call("lease keep-alive", Effect::Read, lease.keep_alive(id.0)).await.map(|_| ())
    }

    pub(super) async fn revoke(&self, id: LeaseId) -> Result<(), MetaError> {
        let mut lease = self.client.lease_client();
        match self.call("lease revoke", Effect::Write, lease.revoke(id.0)).await {
            Ok(_) | Err(MetaError::LeaseGone) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn campaign(&self, name: &str, value: &str, lease: LeaseId) -> Result<LeaderKey, MetaError> {
        let mut election = self.client.election_client();
        let mut resp = match election.campaign(name, value, lease.0).await {
            Ok(resp) => resp,
            // The simulation ends a campaign whose candidacy vanished (its lease ended) with "session expired".
            Err(e) if e.to_string().contains("session expired") => return Err(MetaError::LeaseGone),
            Err(e) => return Err(classify(e, Effect::Write)),
        };
        let raw = resp
            .take_leader()
            .ok_or_else(|| MetaError::Unknown("etcd ended the campaign without a leader key".into()))?;
        let key = raw
            .key_str()
            .map_err(|e| MetaError::Corrupt { key: name.to_owned(), reason: format!("leader key: {e}") })?
            .to_owned();
        Ok(LeaderKey { key, value: value.to_owned(), lease, handle: LeaderHandle::Etcd(raw) })
    }

    /// The leader's full key and value: the candidate with the lowest creation revision.
    pub(super) async fn leader(&self, name: &str) -> Result<Option<(String, Vec<u8>)>, MetaError> {
        let prefix = format!("{name}/");
        let mut kv = self.client.kv_client();
        let resp =
            self.call("leader", Effect::Read, kv.get(prefix.as_str(), Some(GetOptions::new().with_prefix()))).await?;
        Ok(resp
            .kvs()
            .iter()
            .filter(|kv| kv.key().starts_with(prefix.as_bytes()))
            .min_by_key(|kv| kv.create_revision())
            .map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.value().to_vec())))
    }

    pub(super) async fn resign(&self, raw: &etcd_client::LeaderKey) -> Result<(), MetaError> {
        let mut election = self.client.election_client();
        let opts = ResignOptions::new().with_leader(raw.clone());
        match tokio::time::timeout(self.op_timeout, election.resign(Some(opts))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.to_string().contains("session expired") || is_lease_not_found(&e.to_string()) => Ok(()),
            Ok(Err(e)) => Err(classify(e, Effect::Write)),
            Err(_) => Err(MetaError::Unknown(format!("etcd resign did not answer within {:?}", self.op_timeout))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_whether_a_write_may_have_happened() {
        let refused = || etcd_client::Error::IoError(std::io::Error::from(ErrorKind::ConnectionRefused));
        assert!(matches!(classify(refused(), Effect::Write), MetaError::Unavailable(_)));
        let status = |code, msg: &str| etcd_client::Error::GRpcStatus(tonic::Status::new(code, msg));
        let cases = [
            (status(tonic::Code::Unavailable, "transport error"), Effect::Write, "unavailable"),
            (status(tonic::Code::Unavailable, "etcdserver: request timed out"), Effect::Write, "unknown"),
            (status(tonic::Code::Unavailable, "etcdserver: request timed out"), Effect::Read, "unavailable"),
            (status(tonic::Code::DeadlineExceeded, "deadline"), Effect::Write, "unknown"),
            (status(tonic::Code::InvalidArgument, "duplicate key"), Effect::Write, "unavailable"),
            (status(tonic::Code::NotFound, "etcdserver: requested lease not found"), Effect::Write, "gone"),
            (etcd_client::Error::LeaseKeepAliveError("lease not found".into()), Effect::Read, "gone"),
            (etcd_client::Error::IoError(std::io::Error::from(ErrorKind::BrokenPipe)), Effect::Write, "unknown"),
        ];
        for (e, effect, want) in cases {
            let text = e.to_string();
            let got = match classify(e, effect) {
                MetaError::Unavailable(_) => "unavailable",
                MetaError::Unknown(_) => "unknown",
                MetaError::LeaseGone => "gone",
                MetaError::Corrupt { .. } => "corrupt",
            };
            assert_eq!(got, want, "{text} ({effect:?})");
        }
    }
}
