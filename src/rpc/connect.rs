//! The one way a foreman process opens a gRPC channel to another: the CLI to a master, a follower to its leader,
//! an executor to a master, a dispatcher to an executor, a task to its master. One address form (`host:port`), one
//! deadline for connecting and for each call on the channel, one error. Transport settings every link shares are
//! set here, once.

use std::fmt;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// Why no channel was opened. Nothing was sent on it: a call that fails here may be tried elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectError {
    /// The address as given.
    pub address: String,
    pub failure: ConnectFailure,
    /// The transport's error and its sources (see [`error_chain`]).
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectFailure {
    /// The address is not a usable `host:port`.
    BadAddress,
    /// Nothing answered at the address within the deadline, or the connection was refused.
    Unreachable,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.failure {
            ConnectFailure::BadAddress => write!(f, "{:?} is not a host:port address: {}", self.address, self.detail),
            ConnectFailure::Unreachable => write!(f, "cannot reach {}: {}", self.address, self.detail),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Whether a call's status says no channel could be opened to its address (it was refused or nothing answered in
/// time): nothing was sent. The status a caller makes of a [`ConnectError`] is `UNAVAILABLE` with its sentence.
pub fn never_connected(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable && status.message().starts_with("cannot reach ")
}

/// The endpoint of `address` (`host:port`), with `timeout` for connecting and for each call.
///
/// With this process's TLS [installed](crate::rpc::tls::install), the channel is mutual TLS (`https`): it presents
/// the process's certificate and accepts only a server certificate from the cluster CA naming the address's host.
pub fn endpoint(address: &str, timeout: Duration) -> Result<Endpoint, ConnectError> {
    let bad = |e: tonic::transport::Error| ConnectError {
        address: address.to_owned(),
        failure: ConnectFailure::BadAddress,
        detail: error_chain(&e),
    };
    let tls = crate::rpc::tls::installed();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let e = Endpoint::from_shared(format!("{scheme}://{address}")).map_err(bad)?;
    let e = e.timeout(timeout).connect_timeout(timeout);
    match tls {
        Some(t) => e.tls_config(t.client()).map_err(bad),
        None => Ok(e),
    }
}

/// Connects to `address` (`host:port`) within `timeout`; calls on the channel have the same deadline.
pub async fn connect(address: &str, timeout: Duration) -> Result<Channel, ConnectError> {
    endpoint(address, timeout)?.connect().await.map_err(|e| ConnectError {
        address: address.to_owned(),
        failure: ConnectFailure::Unreachable,
        detail: error_chain(&e),
    })
}

/// An error and its sources, `outer: inner: innermost`, skipping a source its parent already quotes. Unsanitized:
/// a caller that prints it to a terminal cleans it first.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    /// Enough for tonic's transport errors (transport → hyper → connect → io); deeper chains are cut.
    const DEPTH_MAX: usize = 8;
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        if parts.len() >= DEPTH_MAX {
            break;
        }
        let text = e.to_string();
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_address_is_refused_before_any_connection() {
        for bad in ["", "has space:1", "host:port:extra/\u{7f}"] {
            let e = endpoint(bad, Duration::from_secs(1)).expect_err(bad);
            assert_eq!(e.failure, ConnectFailure::BadAddress, "{bad:?}");
            assert!(e.to_string().contains("is not a host:port address"), "{e}");
        }
        assert!(endpoint("127.0.0.1:1", Duration::from_secs(1)).is_ok());
        assert!(endpoint("[::1]:10240", Duration::from_secs(1)).is_ok());
    }

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);
    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn an_error_chain_names_each_source_once() {
        let io = Layer("connection refused", None);
        let e = Layer(
            "transport error",
            Some(Box::new(Layer("tcp connect error: connection refused", Some(Box::new(io))))),
        );
        assert_eq!(error_chain(&e), "transport error: tcp connect error: connection refused");
    }
}
