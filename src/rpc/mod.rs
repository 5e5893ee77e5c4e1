//! The gRPC API: generated code and the mapping of errors to statuses.

pub mod connect;
pub mod identity;
pub mod logs;
pub mod status;
pub mod tls;
pub mod tokens;
pub mod views;

use std::time::Duration;

use crate::core::time::millis_of;
use crate::core::timing::HeartbeatTiming;

/// The generated messages, clients and servers of `proto/foreman/v1/*.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("foreman.v1");
}

/// Heartbeat timing as it travels (milliseconds).
/// A selector as sent (the CLI's job selectors, the master's views of them, a job master's worker selectors).
pub fn selector_to_wire(s: &crate::core::labels::Selector) -> pb::Selector {
    use crate::core::labels::SelectorOp;
    let op = match s.op() {
        SelectorOp::Eq => pb::SelectorOp::Eq,
        SelectorOp::Neq => pb::SelectorOp::Neq,
        SelectorOp::Regex => pb::SelectorOp::Regex,
    };
    pb::Selector { key: s.key().to_owned(), target: s.target().to_owned(), op: op as i32 }
}

pub fn timing_to_wire(t: &HeartbeatTiming) -> pb::HeartbeatTiming {
    pb::HeartbeatTiming {
        heartbeat_interval_ms: millis_of(t.interval),
        heartbeat_timeout_ms: millis_of(t.timeout),
        self_fence_ms: millis_of(t.self_fence),
        offline_ttl_ms: millis_of(t.offline_ttl),
    }
}

/// Heartbeat timing from the wire, unvalidated (see [`HeartbeatTiming::validate`]).
pub fn timing_from_wire(t: &pb::HeartbeatTiming) -> HeartbeatTiming {
    HeartbeatTiming {
        interval: Duration::from_millis(t.heartbeat_interval_ms),
        timeout: Duration::from_millis(t.heartbeat_timeout_ms),
        self_fence: Duration::from_millis(t.self_fence_ms),
        offline_ttl: Duration::from_millis(t.offline_ttl_ms),
    }
}
