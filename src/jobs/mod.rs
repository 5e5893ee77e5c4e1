//! Job types: what a job's `type` and `config` mean.
//!
//! Each is a [`crate::framework::api::JobType`]: its configuration (checked at `CreateJob`, so that a job that can
//! never run is refused with the field to fix instead of failing on an executor later), its job master's decisions
//! and its workers' work. [`builtin`] is the registry an executor starts tasks from and a master checks jobs with.
//!
//! | type | config | what it does |
//! |---|---|---|
//! | `fake` | `{"workers": N, "target": T, "tick_ms": I}` | N workers each count to T, one step every I ms, checkpointing |
//!
//! The fake's failure knobs (optional, for testing the framework): `fail_every` (each incarnation fails retryably
//! after that many steps), `fail_at` (each worker fails at that step, every time: retryably, or with
//! `fail_terminal` terminally), `panic_at` (each worker panics at that step), `restarts_max` (restarts in a row
//! without progress before its job fails), `master_panics` (the job master's logic panics as it starts).

pub mod exec;
pub mod fake;

pub use crate::framework::api::ConfigProblem;
pub use crate::framework::types::{JobTypes, CONFIG_MAX_BYTES};

/// The job types this build runs: what an executor starts and a master accepts.
pub fn builtin() -> JobTypes {
    JobTypes::new().with(fake::Fake).expect("the built-in job types have distinct names")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_field() {
        let big = vec![b' '; CONFIG_MAX_BYTES + 1];
        let table: &[(&str, &[u8], &str)] = &[
            ("", b"{}", "type"),
            ("spark", b"{}", "type"),
            ("fake", &big, "config"),
            ("fake", b"not json", "config"),
            ("fake", br#"{"workers": 0, "target": 1, "tick_ms": 1}"#, "config.workers"),
        ];
        let types = builtin();
        for (ty, config, field) in table {
            let e = types.validate(ty, config).unwrap_err();
            assert_eq!(e.field, *field, "{ty}: {e}");
        }
        assert_eq!(types.validate("fake", br#"{"workers": 2, "target": 10, "tick_ms": 100}"#), Ok(()));
        assert_eq!(
            types.validate("spark", b"{}").unwrap_err().problem,
            "\"spark\" is not a known job type; known: fake"
        );
        assert_eq!(types.validate("", b"{}").unwrap_err().problem, "is required; known types: fake");
        assert_eq!(types.names(), ["fake"]);
        assert_eq!(builtin().with(fake::Fake).err(), Some(crate::framework::types::DuplicateType("fake")));
    }
}
