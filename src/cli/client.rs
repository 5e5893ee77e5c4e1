//! Talking to the masters: connect in the order given, fail over to the next, and never resend a write whose
//! outcome is unknown.
//!
//! Each attempt has one deadline (`--timeout`) for connecting and the call together. What happens after a
//! failed attempt depends on what is known about it:
//!
//! | attempt ended with | the request | next master |
//! |---|---|---|
//! | no connection (refused, unresolvable, connect timed out) | was not sent | always |
//! | `Unavailable` with `NOT_LEADER`, `NO_LEADER` or `MASTER_NOT_READY` | was not carried out | always |
//! | no answer in time, `DeadlineExceeded`, `Cancelled`, any other `Unavailable` (`FORWARD_FAILED` among them), `Unknown` or `Internal` without a reason (the connection broke mid-call) | may have been carried out | only for a call that is safe to resend |
//! | any other status | was refused | never: the refusal is the answer |
//!
//! A write that is not safe to resend (`CreateJob` without an id may create a second job) therefore stops at the
//! first unknown outcome and tells the user how to find out what happened (STYLE.md: resolve an unknown outcome
//! by re-reading before retrying).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use super::CliError;
use crate::config::format_duration;
use crate::rpc::status::{reason_of, Reason, REASON_KEY};

/// The most master addresses one command takes.
pub const MASTERS_MAX: usize = 64;
/// The longest server message kept in an error report, in characters.
const MESSAGE_MAX: usize = 2000;

/// A master's address, `host:port`, checked to be a valid gRPC endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterAddress(String);

impl MasterAddress {
    /// Parses `host:port` (an IPv6 host in brackets: `[::1]:10240`). No scheme: the CLI adds `http://`.
    pub fn parse(text: &str) -> Result<MasterAddress, String> {
        const EXAMPLE: &str = "write host:port, e.g. 127.0.0.1:10240";
        let s = text.trim();
        if s.is_empty() {
            return Err(format!("a master address is empty: {EXAMPLE}"));
        }
        if s.contains("://") {
            return Err(format!("{s:?} has a scheme: {EXAMPLE} (the CLI speaks plain http://)"));
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(format!("{s:?} has no port: {EXAMPLE}"));
        };
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("{s:?} has no valid port (1 to 65535): {EXAMPLE}"));
        }
        let bracketed = host.starts_with('[') && host.ends_with(']') && host.len() > 2;
        let valid_host = !host.is_empty()
            && (bracketed || !host.contains(':'))
            && !host.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '?' | '#'));
        if !valid_host {
            return Err(format!("{s:?} has no valid host: {EXAMPLE} (an IPv6 host goes in brackets: [::1]:10240)"));
        }
        if crate::rpc::connect::endpoint(s, Duration::from_secs(1)).is_err() {
            return Err(format!("{s:?} is not a valid address: {EXAMPLE}"));
        }
        Ok(MasterAddress(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MasterAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a call may be sent to the next master after an attempt whose outcome is unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resend {
    /// Reads, and writes that are idempotent (`CancelJob`).
    Safe,
    /// A write that must not run twice. `check` tells the user how to find out whether it happened.
    Unsafe { check: String },
}

/// How one attempt on one master failed, for the report when no master could serve the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptFailure {
    /// No connection: the request was not sent.
    Connect(String),
    /// Connected, but no answer within the deadline.
    NoAnswer(Duration),
    /// The master answered that it cannot serve the call now.
    Unavailable { message: String, reason: String },
}

impl fmt::Display for AttemptFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptFailure::Connect(detail) => f.write_str(detail),
            AttemptFailure::NoAnswer(timeout) => write!(f, "no answer within {}", format_duration(*timeout)),
            AttemptFailure::Unavailable { message, reason } => write!(f, "{message} ({reason})"),
        }
    }
}

/// One failed attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub address: MasterAddress,
    pub failure: AttemptFailure,
}

/// What an attempt's status means for the next step (the table of the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusClass {
    /// The master did not carry the call out and another master may: try the next one.
    NotDone,
    /// The call may have been carried out.
    MaybeDone,
    /// The call was refused: report it.
    Refused,
}

/// Sorts a status from an attempt into [`StatusClass`].
pub fn classify(status: &Status) -> StatusClass {
    match status.code() {
        Code::Unavailable => match reason_of(status) {
            Some(Reason::NotLeader | Reason::NoLeader | Reason::MasterNotReady) => StatusClass::NotDone,
            _ => StatusClass::MaybeDone,
        },
        // The client never cancels a call itself: a `Cancelled` status is its deadline expiring, or the connection
        // closed under the call; either way the call may have been carried out.
        Code::DeadlineExceeded | Code::Cancelled => StatusClass::MaybeDone,
        // A foreman master gives every answer a reason: one without is the transport's, a connection cut while the
        // call was on its way (tonic's `Unknown` "transport error", h2's `Internal`).
        Code::Unknown | Code::Internal if status.metadata().get(REASON_KEY).is_none() => StatusClass::MaybeDone,
        _ => StatusClass::Refused,
    }
}

/// The reason a status carries, as its wire name: a reason this client knows, else the raw metadata value (a
/// newer server's reason), else the gRPC code for a status that did not come from foreman.
pub fn reason_text(status: &Status) -> String {
    if let Some(reason) = reason_of(status) {
        return reason.as_str().to_owned();
    }
    match status.metadata().get(REASON_KEY).and_then(|v| v.to_str().ok()) {
        Some(raw) if !raw.is_empty() => super::output::sanitize(raw),
        _ => format!("gRPC {:?}", status.code()),
    }
}

/// A server's message, escaped and bounded, or the code's description when the server sent none.
pub fn message_text(status: &Status) -> String {
    let message = status.message().trim();
    let message = if message.is_empty() { status.code().description() } else { message };
    let mut text = super::output::sanitize(message);
    if text.chars().count() > MESSAGE_MAX {
        text = text.chars().take(MESSAGE_MAX).collect::<String>() + "...";
    }
    text
}

/// A connection to the masters, with failover. Remembers the master that answered last and starts there.
pub struct Client {
    masters: Vec<MasterAddress>,
    timeout: Duration,
    /// The master to try first.
    current: usize,
    /// A connection to `masters[current]`, once one succeeded.
    channel: Option<Channel>,
    /// The user's bearer token, sent with every call.
    token: Option<String>,
}

impl Client {
    /// A client for these masters, tried in this order, each call with this deadline per master.
    pub fn new(masters: Vec<MasterAddress>, timeout: Duration) -> Result<Client, CliError> {
        if masters.is_empty() {
            return Err(CliError::Usage("--master: give at least one host:port".to_owned()));
        }
        if masters.len() > MASTERS_MAX {
            return Err(CliError::Usage(format!(
                "--master: {} addresses given; at most {MASTERS_MAX} are allowed",
                masters.len()
            )));
        }
        if timeout.is_zero() {
            return Err(CliError::Usage("--timeout: must be longer than zero, e.g. 5s".to_owned()));
        }
        Ok(Client { masters, timeout, current: 0, channel: None, token: None })
    }

    /// Sends `token` (`authorization: Bearer <token>`) with every call: who the user is.
    pub fn with_token(mut self, token: Option<String>) -> Client {
        self.token = token;
        self
    }

    /// Sends `message` through `rpc` to the masters in turn until one answers (module documentation).
    pub async fn call<Req, Resp, F, Fut>(&mut self, resend: &Resend, message: Req, mut rpc: F) -> Result<Resp, CliError>
    where
        Req: Clone,
        F: FnMut(Channel, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let count = self.masters.len();
        let mut attempts = Vec::with_capacity(count);
        for step in 0..count {
            let index = (self.current + step) % count;
            let address = self.masters[index].clone();
            let cached = if step == 0 { self.channel.take() } else { None };
            let mut request = Request::new(message.clone());
            if let Some(v) = self.token.as_ref().and_then(|t| format!("Bearer {t}").parse().ok()) {
                request.metadata_mut().insert(crate::rpc::identity::AUTHORIZATION_KEY, v);
            }
            // The server learns the deadline too (the `grpc-timeout` header) and can stop working on the call.
            request.set_timeout(self.timeout);
            let mut sent = false;
            let timeout = self.timeout;
            // why: `tokio::time` in both builds (the simulation's is std's `Instant`, whose `now` madsim
            // virtualises; clippy sees the std path it bans elsewhere).
            #[allow(clippy::disallowed_methods)]
            let began = tokio::time::Instant::now();
            let attempt = async {
                let channel = match cached {
                    Some(channel) => channel,
                    None => connect(&address, timeout).await?,
                };
                sent = true;
                let reply = rpc(channel.clone(), request).await;
                Ok::<_, AttemptFailure>((channel, reply))
            };
            let failure = match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok((channel, Ok(reply)))) => {
                    self.current = index;
                    self.channel = Some(channel);
                    return Ok(reply.into_inner());
                }
                Ok(Ok((channel, Err(status)))) => match classify(&status) {
                    StatusClass::Refused => {
                        // The master answered: the connection is good for the next call.
                        self.current = index;
                        self.channel = Some(channel);
                        return Err(CliError::Refused {
                            address: address.to_string(),
                            message: message_text(&status),
                            reason: reason_text(&status),
                        });
                    }
                    StatusClass::NotDone => {
                        AttemptFailure::Unavailable { message: message_text(&status), reason: reason_text(&status) }
                    }
                    StatusClass::MaybeDone => {
                        // A `Cancelled` long before the deadline is not the deadline: the connection was closed
                        // under the call (a TLS server refusing a plain-text client closes it at once).
                        let deadline = status.code() == Code::DeadlineExceeded
                            || (status.code() == Code::Cancelled && began.elapsed() >= timeout * 9 / 10);
                        let failure = if deadline {
                            AttemptFailure::NoAnswer(timeout)
                        } else {
                            AttemptFailure::Unavailable { message: message_text(&status), reason: reason_text(&status) }
                        };
                        Self::maybe_done(resend, &address, failure)?
                    }
                },
                Ok(Err(connect_failure)) => connect_failure,
                Err(_elapsed) if !sent => {
                    AttemptFailure::Connect(format!("could not connect within {}", format_duration(timeout)))
                }
                Err(_elapsed) => Self::maybe_done(resend, &address, AttemptFailure::NoAnswer(timeout))?,
            };
            attempts.push(Attempt { address, failure });
        }
        Err(CliError::NoMaster { attempts })
    }

    /// After an attempt that may have been carried out: the failure to record when the call may go to the next
    /// master, or the error that stops it.
    fn maybe_done(
        resend: &Resend,
        address: &MasterAddress,
        failure: AttemptFailure,
    ) -> Result<AttemptFailure, CliError> {
        match resend {
            Resend::Safe => Ok(failure),
            Resend::Unsafe { check } => Err(CliError::UnknownOutcome {
                address: address.to_string(),
                detail: failure.to_string(),
                check: check.clone(),
            }),
        }
    }
}

/// Connects to one master; a failure means the request was not sent.
async fn connect(address: &MasterAddress, timeout: Duration) -> Result<Channel, AttemptFailure> {
    crate::rpc::connect::connect(address.as_str(), timeout)
        .await
        .map_err(|e| AttemptFailure::Connect(super::output::sanitize(&e.detail)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_addresses() {
        for ok in ["127.0.0.1:10240", "localhost:1", " m-1.example.com:65535 ", "[::1]:10240"] {
            assert_eq!(MasterAddress::parse(ok).map(|a| a.to_string()), Ok(ok.trim().to_owned()), "{ok}");
        }
        // (input, a word the message must contain)
        let bad = [
            ("", "empty"),
            ("localhost", "no port"),
            ("http://localhost:1", "scheme"),
            ("localhost:0", "port"),
            ("localhost:99999", "port"),
            ("localhost:x", "port"),
            (":10240", "host"),
            ("::1:10240", "brackets"),
            ("a b:1", "host"),
            ("a/b:1", "host"),
        ];
        for (text, word) in bad {
            let e = MasterAddress::parse(text).unwrap_err();
            assert!(e.contains(word), "{text:?}: {e}");
            assert!(e.contains("host:port"), "{text:?}: {e}");
        }
    }

    #[test]
    fn status_classes_table() {
        // (status, class)
        let table = [
            (Reason::NotLeader.status("not leader"), StatusClass::NotDone),
            (Reason::NoLeader.status("no leader"), StatusClass::NotDone),
            (Reason::MasterNotReady.status("recovering"), StatusClass::NotDone),
            (Reason::MetastoreUnavailable.status("etcd slow"), StatusClass::MaybeDone),
            (Status::unavailable("connection reset"), StatusClass::MaybeDone),
            (Status::deadline_exceeded("late"), StatusClass::MaybeDone),
            (Status::cancelled("Timeout expired"), StatusClass::MaybeDone),
            (Status::unknown("transport error"), StatusClass::MaybeDone),
            (Status::internal("h2 protocol error: error reading a body from connection"), StatusClass::MaybeDone),
            (Reason::ForwardFailed.status("the leader broke off"), StatusClass::MaybeDone),
            (Reason::Internal.status("a broken invariant"), StatusClass::Refused),
            (Reason::JobNotFound.status("no job"), StatusClass::Refused),
            (Reason::InvalidArgument.status("bad"), StatusClass::Refused),
            // A status of another kind without a reason (a server that does not know the call) is still refused.
            (Status::unimplemented("no such method"), StatusClass::Refused),
        ];
        for (status, class) in table {
            assert_eq!(classify(&status), class, "{status:?}");
        }
    }

    #[test]
    fn reasons_known_unknown_and_absent() {
        assert_eq!(reason_text(&Reason::JobNotFound.status("x")), "JOB_NOT_FOUND");
        let mut newer = Status::failed_precondition("x");
        newer.metadata_mut().insert(REASON_KEY, tonic::metadata::MetadataValue::from_static("QUOTA_EXCEEDED"));
        assert_eq!(reason_text(&newer), "QUOTA_EXCEEDED");
        assert_eq!(reason_text(&Status::internal("x")), "gRPC Internal");
    }

    #[test]
    fn messages_are_escaped_bounded_and_never_empty() {
        assert_eq!(message_text(&Status::internal("a\nb")), "a\\nb");
        assert_eq!(message_text(&Status::internal("")), Code::Internal.description());
        let long = message_text(&Status::internal("x".repeat(MESSAGE_MAX * 2)));
        assert_eq!(long.chars().count(), MESSAGE_MAX + 3);
    }

    #[test]
    fn client_refuses_empty_or_huge_master_lists_and_zero_timeouts() {
        let one = vec![MasterAddress::parse("a:1").unwrap()];
        assert!(matches!(Client::new(vec![], Duration::from_secs(1)), Err(CliError::Usage(_))));
        assert!(matches!(Client::new(one.clone(), Duration::ZERO), Err(CliError::Usage(_))));
        let many = vec![one[0].clone(); MASTERS_MAX + 1];
        assert!(matches!(Client::new(many, Duration::from_secs(1)), Err(CliError::Usage(_))));
        assert!(Client::new(one, Duration::from_secs(1)).is_ok());
    }
}
