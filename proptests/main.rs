#![cfg(not(madsim))]
//! Model-based property tests of `src/core` (design.md §5–§7, STYLE.md `proptests/`).
//!
//! Each module drives one state machine with a generated sequence of operations (time advances included) and,
//! after every step, checks the type's own invariant function, agreement with a small reference model written
//! here, and the design's safety rules through `foreman::core::invariants`. Failures are shrunk to a minimal
//! operation list and their seeds persisted under `proptest-regressions/`.
//!
//! Every property runs at least 1,000 cases; `PROPTEST_CASES=N` runs N instead.

mod gen;

mod agent;
mod backoff;
mod fake;
mod fence;
mod job;
mod leadership;
mod manager;
mod placement;
mod registry;
mod workers;
