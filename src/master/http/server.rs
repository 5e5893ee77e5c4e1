//! The HTTP API's accept loop: HTTP/1.1 connections served by hyper, each under a cap and a watchdog.
//!
//! - **A cap on open connections** ([`connection_cap`]): each connection holds a permit of a semaphore; one over the
//!   cap is answered at once with a 503 (JSON, `Retry-After`) and closed, never queued. Those answers are bounded
//!   too: at most [`REFUSALS_IN_FLIGHT_MAX`] at once linger (within [`REFUSAL_LINGER`]) to read what the client
//!   sent before closing; past them the answer is written and the connection closed on the spot, without waiting.
//!   Without a configured cap, it is derived from the process's file-descriptor limit, leaving
//!   [`FDS_RESERVED`] descriptors to gRPC, etcd and an in-process executor, so a flood of HTTP connections cannot
//!   starve them.
//! - **A watchdog per connection**, from the phase the connection is in: idle (no request on it) at most
//!   `http.idle-timeout`; a request's headers, from their first byte, at most `http.header-read-timeout`; a request
//!   being read and handled at most `http.header-read-timeout` (for its body) plus the API's handling deadline.
//!   Past its deadline the connection is dropped, which closes it. hyper's own `header_read_timeout` is not used:
//!   it starts when the server begins to wait for a request, so on a kept-alive connection it would also bound the
//!   idle time, and one timer cannot be both.
//! - **Graceful shutdown**: when `shutdown` resolves the loop stops accepting, every connection finishes the
//!   request it is on and closes (its watchdog still bounds it), and [`serve`] returns when the last has closed.
//!
//! Nothing read from the network can panic here: hyper parses, the guard and the handlers check.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tonic::Code;
use tracing::{debug, info, warn};

use super::ErrorBody;
use crate::config::{format_duration, HttpConfig};

/// File descriptors the derived cap leaves to the rest of the process: gRPC connections (executors, the CLI,
/// other masters), calls to executors, etcd, the embedded store's files, and an in-process executor's own (a
/// standalone's).
pub const FDS_RESERVED: u64 = 512;
/// The derived cap when the file-descriptor limit leaves room for more.
pub const CONNECTIONS_DEFAULT_MAX: u32 = 1024;
/// The smallest derived cap; a file-descriptor limit too low for it is warned about at start.
pub const CONNECTIONS_DERIVED_MIN: u32 = 8;
/// The most connections over the cap being answered 503 at once with a linger; more are answered without one.
pub const REFUSALS_IN_FLIGHT_MAX: usize = 64;
/// The longest a refused connection is kept: to send the 503, then read and discard what the client sent, so that
/// the close does not reset the connection before the client has read the answer. Short: a client that sends
/// nothing and never closes (a flood) must not hold the refusals' places.
pub const REFUSAL_LINGER: Duration = Duration::from_millis(250);
/// The most bytes read and discarded from a refused connection.
const REFUSAL_DRAIN_MAX_BYTES: usize = 64 * 1024;
/// The pause after a failed accept (out of file descriptors, say), so that the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The connection cap and why it has its value (for the start-up log line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cap {
    pub max: u32,
    pub why: String,
    /// False when the cap does not fit the file-descriptor limit (warned about).
    pub fits: bool,
}

/// The cap: `configured` (`http.max-connections`) if set, else half of what the file-descriptor limit `nofile`
/// (the soft `RLIMIT_NOFILE`, `None` when unlimited or unknown) leaves after [`FDS_RESERVED`] and the refusals,
/// between [`CONNECTIONS_DERIVED_MIN`] and [`CONNECTIONS_DEFAULT_MAX`]. Half, so that the rest of the process can
/// grow past its reserve (more executors, more CLI calls) before HTTP and it compete.
pub fn connection_cap(configured: Option<u32>, nofile: Option<u64>) -> Cap {
    let kept = FDS_RESERVED + REFUSALS_IN_FLIGHT_MAX as u64;
    let limit = match nofile {
        Some(n) => format!("the file-descriptor limit (RLIMIT_NOFILE) is {n}"),
        None => "the file-descriptor limit (RLIMIT_NOFILE) is unlimited".to_owned(),
    };
    let budget = nofile.map(|n| n.saturating_sub(kept));
    if let Some(max) = configured {
        let fits = budget.is_none_or(|b| u64::from(max) <= b);
        let why = if fits {
            format!("set by http.max-connections; {limit}")
        } else {
            format!(
                "set by http.max-connections, but {limit}, which leaves {} once {FDS_RESERVED} descriptors are kept \
                 for gRPC, etcd and executors and {REFUSALS_IN_FLIGHT_MAX} for refusals: raise the limit (ulimit -n) \
                 or lower http.max-connections, or a flood of HTTP connections can starve the rest of the process",
                budget.unwrap_or(0)
            )
        };
        return Cap { max, why, fits };
    }
    let Some(budget) = budget else {
        return Cap { max: CONNECTIONS_DEFAULT_MAX, why: format!("the default; {limit}"), fits: true };
    };
    let half = u32::try_from(budget / 2).unwrap_or(u32::MAX);
    let max = half.clamp(CONNECTIONS_DERIVED_MIN, CONNECTIONS_DEFAULT_MAX);
    let kept_words =
        format!("{FDS_RESERVED} kept for gRPC, etcd and executors and {REFUSALS_IN_FLIGHT_MAX} for refusals");
    let (why, fits) = if half >= CONNECTIONS_DEFAULT_MAX {
        (format!("the default; {limit}, room for it beside the {kept_words}"), true)
    } else if half >= CONNECTIONS_DERIVED_MIN {
        (
            format!(
                "half of what is left once descriptors are kept: {limit}, {kept_words}; raise the limit (ulimit \
                 -n) or set http.max-connections for more"
            ),
            true,
        )
    } else {
        (
            format!(
                "the smallest cap, but {limit}, too low to keep {kept_words}: raise the limit (ulimit -n) to at least \
                 {}",
                kept + 2 * u64::from(CONNECTIONS_DERIVED_MIN)
            ),
            false,
        )
    };
    Cap { max, why, fits }
}

/// The soft `RLIMIT_NOFILE` of this process; `None` when unlimited or unknown.
fn nofile_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The deadlines of a connection's phases.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// A request's body and handling.
    pub request_timeout: Duration,
}

impl Limits {
    /// The limits of `http`, a request being allowed `handling` (the API's deadline on a call) after its body.
    pub fn new(http: &HttpConfig, handling: Duration) -> Limits {
        Limits {
            header_read_timeout: http.header_read_timeout,
            idle_timeout: http.idle_timeout,
            request_timeout: http.header_read_timeout + handling,
        }
    }

    fn deadline(&self, phase: Phase) -> Instant {
        match phase {
            Phase::Idle(since) => since + self.idle_timeout,
            Phase::Head(since) => since + self.header_read_timeout,
            Phase::Busy(since) => since + self.request_timeout,
        }
    }
}

/// Where a connection is, and since when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No request on it: waiting for one's first byte.
    Idle(Instant),
    /// A request's first byte came; its headers are not all read.
    Head(Instant),
    /// A request's headers were read: its body is being read, or it is being handled.
    Busy(Instant),
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Idle(_) => "idle",
            Phase::Head(_) => "reading a request's headers",
            Phase::Busy(_) => "reading or handling a request",
        }
    }
}

/// Serves `router` on `listener` with the limits of `http` until `shutdown` resolves, then lets the open connections
/// finish their requests and returns once they have closed. `handling` is the API's deadline on one call.
pub async fn serve(
    router: Router,
    listener: TcpListener,
    http: &HttpConfig,
    handling: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let cap = connection_cap(http.max_connections, nofile_limit());
    let limits = Limits::new(http, handling);
    let message = format!("HTTP API: at most {} connections ({})", cap.max, cap.why);
    if cap.fits {
        info!(http = %local, header_read_timeout = %format_duration(limits.header_read_timeout),
              idle_timeout = %format_duration(limits.idle_timeout), "{message}");
    } else {
        warn!(http = %local, "{message}");
    }
    let connections = Arc::new(Semaphore::new(cap.max as usize));
    let refusals = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT_MAX));
    let refusal: Arc<[u8]> = over_cap_answer(cap.max).into();
    let (stop, stopping) = watch::channel(false);
    let mut accept_failing = false;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                if !accept_failing {
                    warn!(http = %local, "cannot accept HTTP connections: {e}; retrying every {ACCEPT_ERROR_PAUSE:?}");
                    accept_failing = true;
                }
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        if std::mem::take(&mut accept_failing) {
            info!(http = %local, "accepting HTTP connections again");
        }
        match connections.clone().try_acquire_owned() {
            Ok(permit) => {
                // why: answers are small and whole; waiting to coalesce them only adds latency.
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_connection(stream, peer, router.clone(), limits, stopping.clone(), permit));
            }
            Err(_) => match refusals.clone().try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(refuse(stream, refusal.clone(), permit));
                }
                Err(_) => refuse_at_once(stream, &refusal),
            },
        }
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a permit until it has closed.
    let _ = connections.acquire_many(cap.max).await;
    Ok(())
}

/// The whole answer to a connection over the cap.
fn over_cap_answer(max: u32) -> Vec<u8> {
    let body = ErrorBody {
        code: super::code_name(Code::Unavailable),
        reason: None,
        message: format!(
            "this master has {max} HTTP connections open, the most it serves at once (http.max-connections); retry \
             later, or reuse a connection"
        ),
    };
    let body = serde_json::to_string(&body).unwrap_or_default();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answers a connection over the cap with `answer`, closes its sending side, and reads what the client sent until
/// it closes too (bounded in time and bytes), so that the client reads the answer rather than a reset.
async fn refuse(mut stream: TcpStream, answer: Arc<[u8]>, _permit: OwnedSemaphorePermit) {
    let exchange = async {
        stream.write_all(&answer).await?;
        stream.shutdown().await?;
        let mut buf = [0u8; 4096];
        let mut drained = 0;
        while drained < REFUSAL_DRAIN_MAX_BYTES {
            match stream.read(&mut buf).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, exchange).await;
}

/// Answers a connection over the cap with `answer` without waiting: writes what the socket takes now, closes the
/// sending side, discards what the client has already sent (so that the close is not a reset), and closes.
fn refuse_at_once(stream: TcpStream, answer: &[u8]) {
    let _ = stream.try_write(answer);
    let Ok(stream) = stream.into_std() else { return };
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut buf = [0u8; 4096];
    let mut drained = 0;
    while drained < REFUSAL_DRAIN_MAX_BYTES {
        match std::io::Read::read(&mut &stream, &mut buf) {
            Ok(n) if n > 0 => drained += n,
            _ => break,
        }
    }
}

/// Serves one connection until it closes, its phase's deadline passes, or (after `stopping`) its request is done.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let (phase, mut phase_changed) = watch::channel(Phase::Idle(Instant::now()));
    let phase = Arc::new(phase);
    let io = TokioIo::new(Watched { io: stream, phase: phase.clone() });
    let inner = TowerToHyperService::new(router);
    let service = hyper::service::service_fn(move |request| {
        phase.send_replace(Phase::Busy(Instant::now()));
        let answer = inner.call(request);
        let phase = phase.clone();
        async move {
            let answer = answer.await;
            phase.send_replace(Phase::Idle(Instant::now()));
            answer
        }
    });
    let connection = http1::Builder::new().keep_alive(true).header_read_timeout(None).serve_connection(io, service);
    tokio::pin!(connection);
    let mut stopped = false;
    loop {
        let now_in = *phase_changed.borrow_and_update();
        let deadline = limits.deadline(now_in);
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    debug!(%peer, "HTTP connection ended: {e}");
                }
                return;
            }
            () = tokio::time::sleep_until(deadline) => {
                debug!(%peer, "HTTP connection closed: {} for longer than allowed", now_in.name());
                return;
            }
            changed = phase_changed.changed() => {
                // The sender lives in this connection's service, which lives as long as `connection`.
                if changed.is_err() {
                    return;
                }
            }
            _ = stopping.changed(), if !stopped => {
                stopped = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// A connection's stream that marks the first byte of a request on an idle connection (the start of its headers).
struct Watched {
    io: TcpStream,
    phase: Arc<watch::Sender<Phase>>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.phase.send_if_modified(|phase| match phase {
                Phase::Idle(_) => {
                    *phase = Phase::Head(Instant::now());
                    true
                }
                Phase::Head(_) | Phase::Busy(_) => false,
            });
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_file_descriptors_to_the_rest_of_the_process() {
        // (configured, RLIMIT_NOFILE, cap, fits, words of why)
        type Row = (Option<u32>, Option<u64>, u32, bool, &'static [&'static str]);
        let table: &[Row] = &[
            (None, None, 1024, true, &["the default", "unlimited"]),
            (None, Some(20_000), 1024, true, &["the default", "20000"]),
            (None, Some(1024), 224, true, &["half of what is left", "1024", "512 kept for gRPC"]),
            (None, Some(600), 12, true, &["half of what is left"]),
            (None, Some(256), 8, false, &["the smallest cap", "256", "at least 592"]),
            (Some(100), Some(1024), 100, true, &["http.max-connections"]),
            (Some(5000), Some(1024), 5000, false, &["http.max-connections", "leaves 448", "ulimit -n"]),
            (Some(5000), None, 5000, true, &["http.max-connections", "unlimited"]),
        ];
        for &(configured, nofile, max, fits, words) in table {
            let cap = connection_cap(configured, nofile);
            assert_eq!((cap.max, cap.fits), (max, fits), "{configured:?} {nofile:?}: {cap:?}");
            for w in words {
                assert!(cap.why.contains(w), "{configured:?} {nofile:?}: {:?} should contain {w:?}", cap.why);
            }
        }
    }

    #[test]
    fn each_phase_has_its_deadline() {
        let http = HttpConfig {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ..HttpConfig::default()
        };
        let limits = Limits::new(&http, Duration::from_secs(6));
        let t = Instant::now();
        assert_eq!(limits.deadline(Phase::Idle(t)), t + Duration::from_secs(60));
        assert_eq!(limits.deadline(Phase::Head(t)), t + Duration::from_secs(10));
        assert_eq!(limits.deadline(Phase::Busy(t)), t + Duration::from_secs(16));
    }

    #[test]
    fn the_over_cap_answer_is_a_json_503_with_retry_after() {
        let answer = String::from_utf8(over_cap_answer(8)).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains("\r\nretry-after: 1\r\n") && head.contains("\r\nconnection: close"), "{head}");
        assert!(head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())), "{head}");
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["code"], "UNAVAILABLE");
        assert!(body["message"].as_str().unwrap().contains("8 HTTP connections"), "{body}");
    }
}
