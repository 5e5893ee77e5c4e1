//! The decision logic of foreman: pure and synchronous.
//!
//! Nothing here is `async`, reads a clock, draws entropy or does I/O. Time comes in as a [`time::Time`]
//! argument, randomness as a seeded [`rng::Rng`], and effects go out as returned values that the async layers
//! execute. That is what lets the property tests and the simulator drive every decision directly.

pub mod agent;
pub mod auth;
pub mod backoff;
pub mod collect;
pub mod dispatcher;
pub mod duration;
pub mod fence;
pub mod ids;
pub mod invariants;
pub mod job;
pub mod job_master;
pub mod job_status;
pub mod labels;
pub mod leader_hint;
pub mod leader_route;
pub mod leadership;
pub mod manager;
pub mod placement;
pub mod planted;
pub mod registry;
pub mod restarts;
pub mod rng;
pub mod text;
pub mod time;
pub mod timing;
pub mod tombstone;
pub mod workers;
pub mod write_fence;
