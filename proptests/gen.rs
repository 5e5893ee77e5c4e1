//! Shared helpers: the run configuration, time, ids, and the glue between the core's checkers and proptest.

use std::fmt::Display;

use foreman::core::ids::{JobId, TaskId};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// The cases every property runs by default.
pub const CASES: u32 = 1000;

/// At least [`CASES`] cases, or exactly `PROPTEST_CASES` when it is set; failures are persisted under
/// `proptest-regressions/` (proptest's default file persistence).
pub fn config() -> ProptestConfig {
    let base = ProptestConfig::default();
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() { base.cases } else { CASES };
    ProptestConfig { cases, ..base }
}

pub fn task(i: u8) -> TaskId {
    TaskId::parse(&format!("t{i}")).expect("valid task id")
}

pub fn job(i: u8) -> JobId {
    JobId::parse(&format!("j{i}")).expect("valid job id")
}

/// Most generated times are multiples of this, so that deadlines are hit exactly, not only passed: a rule that
/// says `>=` where it should say `>` (or the reverse) shows.
pub const GRID: u64 = 250;

/// A duration in milliseconds in `lo..hi` (`hi - lo` at least [`GRID`]): mostly a multiple of [`GRID`].
pub fn millis(lo: u64, hi: u64) -> impl Strategy<Value = u64> {
    let grid = (lo.div_ceil(GRID)..hi.div_ceil(GRID)).prop_map(|k| k * GRID);
    prop_oneof![4 => grid, 1 => lo..hi]
}

/// A time advance in milliseconds: mostly up to `small`, sometimes a long silence up to `large`.
pub fn advance(small: u64, large: u64) -> impl Strategy<Value = u64> {
    prop_oneof![4 => millis(0, small + 1), 1 => millis(0, large + 1)]
}

/// Turns a checker's verdict (a broken safety rule, or a broken invariant) into a test failure.
pub fn rule<E: Display>(r: Result<(), E>) -> Result<(), TestCaseError> {
    r.map_err(|e| TestCaseError::fail(e.to_string()))
}
