//! The checks every request passes before a handler sees it: it names this API in `Host` (421 otherwise), it does
//! not come from a foreign web page (`Origin`, when sent, names it too: 403 otherwise), and its body, if it has
//! one, is JSON (`Content-Type: application/json`: 415 otherwise).
//!
//! Why: a web page in an operator's browser can send requests to a loopback master. A cross-origin `POST` with a
//! `text/plain` body needs no preflight, so the JSON requirement stops it; a page whose DNS name is rebound to
//! 127.0.0.1 is same-origin to the browser but sends its own name in `Host` and `Origin`, so the name check stops
//! it. Clients that are not browsers (curl, the CLI) send the right `Host` and no `Origin`.
//!
//! Invariants: the checks read headers only, never panic on them, and each refusal says what to send instead.

use std::net::SocketAddr;

use axum::http::{header, HeaderMap, StatusCode, Uri};
use tonic::Code;

use super::ApiError;
use crate::core::text::{bounded, quote};
use crate::rpc::status::{Reason, MESSAGE_MAX};

/// The names a request may call this API by, lowercase, as a `Host` header carries them (`host:port`, or `host` on
/// a default port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names(Vec<String>);

impl Names {
    /// The API's own names on the port it listens on (`local`): the host of `http_addr` (the configured listen
    /// address), `localhost`, `127.0.0.1` and `[::1]`; then `configured` (`http.names`).
    pub fn new(local: SocketAddr, http_addr: &str, configured: &[String]) -> Names {
        let port = local.port();
        let listen_host = http_addr.rsplit_once(':').map_or(http_addr, |(host, _)| host);
        let own = [local.to_string(), format!("{listen_host}:{port}")];
        let loopback = ["localhost", "127.0.0.1", "[::1]"].map(|host| format!("{host}:{port}"));
        let mut names: Vec<String> = Vec::new();
        for name in own.into_iter().chain(loopback).chain(configured.iter().cloned()) {
            let name = name.to_ascii_lowercase();
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
        Names(names)
    }

    /// The names, in the order above.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// The names for a message, bounded.
    fn listed(&self) -> String {
        bounded(&self.0.join(", "), MESSAGE_MAX / 2).into_owned()
    }

    /// Refuses a request whose `Host` (or, without one, the authority of its URI) is not one of the names.
    pub fn check_host(&self, headers: &HeaderMap, uri: &Uri) -> Result<(), ApiError> {
        let host = match headers.get(header::HOST) {
            Some(value) => value.to_str().ok(),
            None => uri.authority().map(|a| a.as_str()),
        };
        match host {
            Some(host) if self.contains(host) => Ok(()),
            Some(host) => Err(misdirected(format!(
                "this API does not answer to the host {}; call it by one of {}, or add the name to the master's \
                 http.names (--http-names)",
                quote(host),
                self.listed()
            ))),
            None if headers.contains_key(header::HOST) => {
                Err(misdirected(format!("the Host header is not text; send Host: one of {}", self.listed())))
            }
            None => Err(misdirected(format!("the request names no host; send Host: one of {}", self.listed()))),
        }
    }

    /// Refuses a request with an `Origin` that is not `http://` or `https://` followed by one of the names. A
    /// request without `Origin` (not from a browser) passes.
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(value) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = value.to_str().unwrap_or("");
        let authority = origin
            .split_once("://")
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
            .map(|(_, authority)| authority);
        match authority {
            Some(authority) if self.contains(authority) => Ok(()),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                Code::PermissionDenied,
                None,
                format!(
                    "requests from the web origin {} are refused (a web page may not drive this API); an Origin must \
                     be http:// or https:// and one of {}, or add the name to the master's http.names (--http-names)",
                    quote(origin),
                    self.listed()
                ),
            )),
        }
    }
}

fn misdirected(message: String) -> ApiError {
    ApiError::new(StatusCode::MISDIRECTED_REQUEST, Code::PermissionDenied, None, message)
}

/// Refuses a request that has a body (a `Content-Length` above 0, or a `Transfer-Encoding`) without
/// `Content-Type: application/json` (parameters such as `; charset=utf-8` allowed).
pub fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    let has_body = length.is_some_and(|n| n > 0) || headers.contains_key(header::TRANSFER_ENCODING);
    if !has_body {
        return Ok(());
    }
    let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or(""));
    let is_json = content_type
        .and_then(|t| t.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        return Ok(());
    }
    let sent = match content_type {
        Some(t) => format!("is {}", quote(t)),
        None => "is missing".to_owned(),
    };
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Code::InvalidArgument,
        Some(Reason::InvalidArgument),
        format!("request body: its Content-Type {sent}; send Content-Type: application/json with a JSON body"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    fn names() -> Names {
        Names::new("127.0.0.1:10280".parse().unwrap(), "127.0.0.1:10280", &["Foreman.Example.com".to_owned()])
    }

    #[test]
    fn the_names_are_the_listen_address_loopback_and_the_configured_ones() {
        assert_eq!(
            names().as_slice(),
            ["127.0.0.1:10280", "localhost:10280", "[::1]:10280", "foreman.example.com"],
            "deduplicated and lowercase"
        );
        let any = Names::new("0.0.0.0:8080".parse().unwrap(), "0.0.0.0:8080", &[]);
        assert_eq!(any.as_slice(), ["0.0.0.0:8080", "localhost:8080", "127.0.0.1:8080", "[::1]:8080"]);
        // A port chosen by the system: the bound port counts, not the configured 0.
        let picked = Names::new("127.0.0.1:4321".parse().unwrap(), "localhost:0", &[]);
        assert_eq!(picked.as_slice(), ["127.0.0.1:4321", "localhost:4321", "[::1]:4321"]);
    }

    #[test]
    fn host_table() {
        let n = names();
        let uri = Uri::from_static("/healthz");
        // (Host, passes)
        let table = [
            ("127.0.0.1:10280", true),
            ("LOCALHOST:10280", true),
            ("[::1]:10280", true),
            ("foreman.example.com", true),
            ("localhost", false),
            ("127.0.0.1:10281", false),
            ("evil.example:10280", false),
            ("foreman.example.com:10280", false),
            ("", false),
        ];
        for (host, want) in table {
            let got = n.check_host(&headers(&[("host", host)]), &uri);
            assert_eq!(got.is_ok(), want, "{host}: {got:?}");
            if let Err(e) = got {
                assert_eq!(e.http, StatusCode::MISDIRECTED_REQUEST);
                assert!(e.body.message.contains("localhost:10280"), "{}", e.body.message);
                assert!(e.body.message.contains("http.names"), "{}", e.body.message);
            }
        }
        let none = n.check_host(&HeaderMap::new(), &uri).unwrap_err();
        assert!(none.body.message.contains("names no host"), "{}", none.body.message);
        // An absolute-form request without Host: its authority counts.
        assert!(n.check_host(&HeaderMap::new(), &Uri::from_static("http://localhost:10280/healthz")).is_ok());
        let mut binary = HeaderMap::new();
        binary.insert(header::HOST, HeaderValue::from_bytes(b"\xff").unwrap());
        assert!(n.check_host(&binary, &uri).unwrap_err().body.message.contains("not text"));
    }

    #[test]
    fn origin_table() {
        let n = names();
        // (Origin, passes)
        let table = [
            ("http://127.0.0.1:10280", true),
            ("https://localhost:10280", true),
            ("HTTP://foreman.example.com", true),
            ("http://evil.example", false),
            ("http://evil.example:10280", false),
            ("http://localhost:10281", false),
            ("ftp://localhost:10280", false),
            ("null", false),
            ("localhost:10280", false),
            ("http://localhost:10280/path", false),
        ];
        for (origin, want) in table {
            let got = n.check_origin(&headers(&[("origin", origin)]));
            assert_eq!(got.is_ok(), want, "{origin}: {got:?}");
            if let Err(e) = got {
                assert_eq!((e.http, e.body.code), (StatusCode::FORBIDDEN, "PERMISSION_DENIED"));
            }
        }
        assert!(n.check_origin(&HeaderMap::new()).is_ok(), "no Origin: not a browser");
    }

    #[test]
    fn content_type_table() {
        // (headers, passes)
        let table: &[(&[(&'static str, &str)], bool)] = &[
            (&[("content-length", "2"), ("content-type", "application/json")], true),
            (&[("content-length", "2"), ("content-type", "application/json; charset=utf-8")], true),
            (&[("content-length", "2"), ("content-type", "Application/JSON")], true),
            (&[("content-length", "2"), ("content-type", "text/plain")], false),
            (&[("content-length", "2"), ("content-type", "application/jsonx")], false),
            (&[("content-length", "2"), ("content-type", "application/json-patch+json")], false),
            (&[("content-length", "2")], false),
            (&[("transfer-encoding", "chunked")], false),
            (&[("transfer-encoding", "chunked"), ("content-type", "application/json")], true),
            // No body: no type needed.
            (&[], true),
            (&[("content-length", "0")], true),
            (&[("content-length", "0"), ("content-type", "text/plain")], true),
        ];
        for (pairs, want) in table {
            let got = check_content_type(&headers(pairs));
            assert_eq!(got.is_ok(), *want, "{pairs:?}: {got:?}");
            if let Err(e) = got {
                assert_eq!(e.http, StatusCode::UNSUPPORTED_MEDIA_TYPE);
                assert!(e.body.message.contains("send Content-Type: application/json"), "{}", e.body.message);
            }
        }
    }
}
