//! The framework: one master/worker protocol for both levels (design.md §2) — the job manager and its job
//! masters, each job master and its workers. The decisions are the core's ([`crate::core::workers`] on the master
//! side, [`crate::core::fence`] on the worker side); this module carries them over gRPC.
//!
//! - [`link`]: the worker side — heartbeats with a deadline, self-fencing at the deadline itself, stale and cancel
//!   verdicts, terminal status reports retried until acknowledged.
//! - [`host`]: the master side for masters hosted on an executor — routes messages by master id to each hosted
//!   master's bookkeeping and queues its events.

pub mod host;
pub mod link;
