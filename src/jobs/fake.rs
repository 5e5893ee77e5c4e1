//! The `fake` job: N workers each count to a target, one step per tick, checkpointing every step.
//!
//! It exists to test foreman itself: its result is exactly predictable (every counter ends at `target`), so a
//! lost, duplicated or rolled-back step shows. Only its configuration lives here for now; its job master and
//! workers come with the executor.

use serde::{Deserialize, Serialize};

use super::ConfigProblem;

pub const TYPE: &str = "fake";

/// The most workers a fake job may have.
pub const WORKERS_MAX: u32 = 1_000;
/// The highest target.
pub const TARGET_MAX: u64 = 1_000_000_000;
/// The tick bounds, in milliseconds.
pub const TICK_MS_MIN: u64 = 1;
pub const TICK_MS_MAX: u64 = 3_600_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeConfig {
    pub workers: u32,
    pub target: u64,
    pub tick_ms: u64,
}

impl FakeConfig {
    /// Parses and checks a configuration; the error names the field to fix.
    pub fn parse(config: &[u8]) -> Result<FakeConfig, ConfigProblem> {
        let c: FakeConfig = serde_json::from_slice(config).map_err(|e| {
            let field = match e.classify() {
                serde_json::error::Category::Data => data_field(&e.to_string()),
                _ => "config".to_owned(),
            };
            ConfigProblem::new(field, format!("{e}; expected {{\"workers\": N, \"target\": T, \"tick_ms\": I}}"))
        })?;
        let range = |field: &str, v: u64, lo: u64, hi: u64| {
            if v < lo || v > hi {
                Err(ConfigProblem::new(format!("config.{field}"), format!("is {v}; must be within {lo}..={hi}")))
            } else {
                Ok(())
            }
        };
        range("workers", u64::from(c.workers), 1, u64::from(WORKERS_MAX))?;
        range("target", c.target, 1, TARGET_MAX)?;
        range("tick_ms", c.tick_ms, TICK_MS_MIN, TICK_MS_MAX)?;
        Ok(c)
    }
}

/// The field a serde data error is about, when its message names one (`missing field `x``, `unknown field `x``).
fn data_field(message: &str) -> String {
    for lead in ["missing field `", "unknown field `"] {
        if let Some(rest) = message.strip_prefix(lead) {
            if let Some(name) = rest.split('`').next() {
                return format!("config.{name}");
            }
        }
    }
    "config".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let table: &[(&str, Result<(), &str>)] = &[
            (r#"{"workers": 3, "target": 100, "tick_ms": 10}"#, Ok(())),
            (r#"{"workers": 0, "target": 100, "tick_ms": 10}"#, Err("config.workers")),
            (r#"{"workers": 1001, "target": 100, "tick_ms": 10}"#, Err("config.workers")),
            (r#"{"workers": 1, "target": 0, "tick_ms": 10}"#, Err("config.target")),
            (r#"{"workers": 1, "target": 1, "tick_ms": 0}"#, Err("config.tick_ms")),
            (r#"{"workers": 1, "target": 1}"#, Err("config.tick_ms")),
            (r#"{"workers": -1, "target": 1, "tick_ms": 1}"#, Err("config")),
            (r#"{"workers": 1, "target": 1, "tick_ms": 1, "speed": 2}"#, Err("config.speed")),
            (r#"[1, 2]"#, Err("config")),
            (r#"{"workers": 1,"#, Err("config")),
        ];
        for (text, want) in table {
            let got = FakeConfig::parse(text.as_bytes()).map(|_| ()).map_err(|e| e.field);
            assert_eq!(got.as_ref().map_err(|f| f.as_str()), want.as_ref().map_err(|f| *f), "{text}");
        }
    }
}
