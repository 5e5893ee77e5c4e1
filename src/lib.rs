//! foreman: a fault-tolerant job master with a deterministic simulator.
//!
//! Layers (design.md §3): [`core`] decides, [`rpc`] carries the API, [`config`] holds the validated settings.

pub mod config;
pub mod core;
pub mod rpc;
