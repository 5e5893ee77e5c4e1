//! The gRPC API: generated code and the mapping of errors to statuses.

pub mod connect;
pub mod status;
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
