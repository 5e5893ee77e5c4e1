//! An `exec` job's configuration: what to run, on how many workers, with what environment, restarted how often,
//! stopped within what time. Pure: read when the job is created (a master refuses a bad one, naming the field) and
//! by each of its job masters.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::duration::parse_duration;
use crate::framework::api::ConfigProblem;

/// The most workers an exec job may have.
pub const WORKERS_MAX: u32 = 1_024;
/// The most arguments of one command, and the longest argument, environment name or value, in bytes.
pub const ARGS_MAX: usize = 256;
pub const ARG_BYTES_MAX: usize = 4_096;
/// The most environment variables a job sets.
pub const ENV_MAX: usize = 128;
/// How often a worker is started again after failing, by default, and at most.
pub const RESTARTS_DEFAULT: u32 = 3;
pub const RESTARTS_MAX: u32 = 1_000;
/// The longest `timeout`, and the bounds of `stop_grace`.
pub const TIMEOUT_MAX: Duration = Duration::from_secs(30 * 24 * 3600);
pub const STOP_GRACE_DEFAULT: Duration = Duration::from_secs(10);
pub const STOP_GRACE_MAX: Duration = Duration::from_secs(600);
/// The prefix of the variables foreman sets itself; a job may not set them.
pub const RESERVED_PREFIX: &str = "FOREMAN_";

/// An exec job's configuration as written (`config` of `job create --type exec`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecConfig {
    /// One command, run by every worker: the program and its arguments (no shell unless named:
    /// `["sh", "-c", "..."]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Or one command per worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<Vec<Vec<String>>>,
    /// How many workers run `command` (default 1); with `commands`, their number if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<u32>,
    /// Variables added to each command's environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// How often a worker is started again after failing in a row (a non-zero exit, a signal, the timeout) before
    /// the job fails (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    /// How long one run of a command may take (`10m`); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// How long a command gets between SIGTERM and SIGKILL when it is stopped (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace: Option<String>,
    /// Whether a worker needs what its earlier runs left in its scratch directory: when the executor holding it is
    /// lost (declared offline, drained, deregistered) before the worker is done, the job fails instead of starting
    /// the worker afresh elsewhere with an empty one (default false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scratch_required: bool,
}

/// A checked exec job: each worker's command, and the rest with defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exec {
    /// Worker `wI` runs `commands[I]`.
    pub commands: Vec<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub max_restarts: u32,
    pub timeout: Option<Duration>,
    pub stop_grace: Duration,
    pub scratch_required: bool,
}

const EXPECTED: &str = r#"{"command": ["program", "arg", ...], "workers": N}"#;

impl Exec {
    /// Reads and checks a configuration; the error names the field to fix.
    pub fn parse(config: &[u8]) -> Result<Exec, ConfigProblem> {
        let c: ExecConfig = ConfigProblem::parse_json(config, EXPECTED)?;

        let commands = match (&c.command, &c.commands) {
            (Some(_), Some(_)) => {
                return Err(ConfigProblem::new(
                    "config.commands",
                    "give either command (one for every worker) or commands",
                ))
            }
            (None, None) => {
                return Err(ConfigProblem::new("config.command", format!("is required; expected {EXPECTED}")))
            }
            (Some(command), None) => {
                check_command("config.command", command)?;
                let workers = c.workers.unwrap_or(1);
                ConfigProblem::within("workers", u64::from(workers), 1, u64::from(WORKERS_MAX))?;
                vec![command.clone(); workers as usize]
            }
            (None, Some(commands)) => {
                ConfigProblem::within("commands", commands.len() as u64, 1, u64::from(WORKERS_MAX)).map_err(|_| {
                    ConfigProblem::new(
                        "config.commands",
                        format!("holds {} commands; give 1 to {WORKERS_MAX}", commands.len()),
                    )
                })?;
                if let Some(w) = c.workers.filter(|w| *w as usize != commands.len()) {
                    return Err(ConfigProblem::new(
                        "config.workers",
                        format!("is {w} but commands holds {}: drop workers, or make them agree", commands.len()),
                    ));
                }
                for (i, command) in commands.iter().enumerate() {
                    check_command(&format!("config.commands[{i}]"), command)?;
                }
                commands.clone()
            }
        };
        if c.env.len() > ENV_MAX {
            return Err(ConfigProblem::new("config.env", format!("sets {} variables; at most {ENV_MAX}", c.env.len())));
        }
        for (name, value) in &c.env {
            check_env(name, value)?;
        }
        let max_restarts = c.max_restarts.unwrap_or(RESTARTS_DEFAULT);
        ConfigProblem::within("max_restarts", u64::from(max_restarts), 0, u64::from(RESTARTS_MAX))?;
        let timeout = match &c.timeout {
            None => None,
            Some(t) => Some(duration("config.timeout", t, Duration::from_millis(1), TIMEOUT_MAX)?),
        };
        let stop_grace = match &c.stop_grace {
            None => STOP_GRACE_DEFAULT,
            Some(t) => duration("config.stop_grace", t, Duration::ZERO, STOP_GRACE_MAX)?,
        };
        Ok(Exec { commands, env: c.env, max_restarts, timeout, stop_grace, scratch_required: c.scratch_required })
    }

    pub fn workers(&self) -> u32 {
        // At most WORKERS_MAX, checked by `parse`.
        u32::try_from(self.commands.len()).unwrap_or(WORKERS_MAX)
    }
}

/// A command: a program and arguments, each a string a process can take (no NUL byte), within the bounds.
fn check_command(field: &str, command: &[String]) -> Result<(), ConfigProblem> {
    match command.first() {
        None => {
            return Err(ConfigProblem::new(
                field,
                "is empty; give the program and its arguments, e.g. [\"echo\", \"hi\"]",
            ))
        }
        Some(p) if p.trim().is_empty() => {
            return Err(ConfigProblem::new(format!("{field}[0]"), "the program's name is empty"))
        }
        Some(_) => {}
    }
    if command.len() > ARGS_MAX {
        return Err(ConfigProblem::new(field, format!("has {} arguments; at most {ARGS_MAX}", command.len())));
    }
    for (i, arg) in command.iter().enumerate() {
        if arg.len() > ARG_BYTES_MAX {
            return Err(ConfigProblem::new(
                format!("{field}[{i}]"),
                format!("is {} bytes; at most {ARG_BYTES_MAX}", arg.len()),
            ));
        }
        if arg.contains('\0') {
            return Err(ConfigProblem::new(format!("{field}[{i}]"), "holds a NUL byte, which no process argument can"));
        }
    }
    Ok(())
}

/// An environment variable the job sets: a portable name, not one of foreman's, a value a process can take.
fn check_env(name: &str, value: &str) -> Result<(), ConfigProblem> {
    let field = format!("config.env.{}", crate::core::text::quote(name));
    let portable = name.len() <= ARG_BYTES_MAX
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !portable {
        return Err(ConfigProblem::new(
            field,
            "is not a variable name: letters, digits and _, not starting with a digit",
        ));
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Err(ConfigProblem::new(
            field,
            format!("{RESERVED_PREFIX}* variables are foreman's own; choose another name"),
        ));
    }
    if value.len() > ARG_BYTES_MAX || value.contains('\0') {
        return Err(ConfigProblem::new(
            field,
            format!("the value must be at most {ARG_BYTES_MAX} bytes, without a NUL byte"),
        ));
    }
    Ok(())
}

/// A duration field (`10m`) within `lo..=hi`.
fn duration(field: &str, text: &str, lo: Duration, hi: Duration) -> Result<Duration, ConfigProblem> {
    let d = parse_duration(text).map_err(|e| ConfigProblem::new(field, e))?;
    if d < lo || d > hi {
        let show = crate::core::duration::format_duration;
        return Err(ConfigProblem::new(field, format!("is {}; must be within {}..={}", show(d), show(lo), show(hi))));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Exec, ConfigProblem> {
        Exec::parse(json.as_bytes())
    }

    #[test]
    fn a_command_for_every_worker_with_defaults() {
        let e = parse(r#"{"command": ["sh", "-c", "echo hello from $FOREMAN_WORKER"], "workers": 3}"#).unwrap();
        assert_eq!(e.workers(), 3);
        assert!(e.commands.iter().all(|c| c == &["sh", "-c", "echo hello from $FOREMAN_WORKER"]));
        assert_eq!((e.max_restarts, e.timeout, e.stop_grace), (3, None, Duration::from_secs(10)));
        let one = parse(r#"{"command": ["true"]}"#).unwrap();
        assert_eq!(one.workers(), 1);
        let each = parse(
            r#"{"commands": [["a"], ["b", "x"]], "env": {"K": "v"}, "timeout": "1m30s",
            "stop_grace": "0s", "max_restarts": 0}"#,
        )
        .unwrap();
        assert_eq!(each.commands, [vec!["a".to_owned()], vec!["b".to_owned(), "x".to_owned()]]);
        assert_eq!(
            (each.timeout, each.stop_grace, each.max_restarts),
            (Some(Duration::from_secs(90)), Duration::ZERO, 0)
        );
        assert_eq!(each.env.get("K").map(String::as_str), Some("v"));
        assert!(!each.scratch_required);
        assert!(parse(r#"{"command": ["a"], "scratch_required": true}"#).unwrap().scratch_required);
    }

    #[test]
    fn refusals_name_the_field_to_fix() {
        let long = "x".repeat(ARG_BYTES_MAX + 1);
        let many: Vec<String> = (0..=ARGS_MAX).map(|i| i.to_string()).collect();
        let table: Vec<(String, &str, &str)> = vec![
            ("{}".into(), "config.command", "is required"),
            (r#"{"command": []}"#.into(), "config.command", "is empty"),
            (r#"{"command": [" "]}"#.into(), "config.command[0]", "name is empty"),
            (r#"{"command": ["a"], "commands": [["b"]]}"#.into(), "config.commands", "either"),
            (r#"{"command": ["a"], "workers": 0}"#.into(), "config.workers", "within 1..=1024"),
            (r#"{"command": ["a"], "workers": 1025}"#.into(), "config.workers", "within 1..=1024"),
            (r#"{"commands": []}"#.into(), "config.commands", "holds 0 commands"),
            (r#"{"commands": [["a"], []]}"#.into(), "config.commands[1]", "is empty"),
            (r#"{"commands": [["a"]], "workers": 2}"#.into(), "config.workers", "commands holds 1"),
            (r#"{"command": ["a\u0000"]}"#.into(), "config.command[0]", "NUL"),
            (format!(r#"{{"command": ["a", "{long}"]}}"#), "config.command[1]", "at most 4096"),
            (serde_json::json!({ "command": many }).to_string(), "config.command", "at most 256"),
            (r#"{"command": ["a"], "env": {"1X": "v"}}"#.into(), "config.env.\"1X\"", "not a variable name"),
            (
                r#"{"command": ["a"], "env": {"FOREMAN_EPOCH": "9"}}"#.into(),
                "config.env.\"FOREMAN_EPOCH\"",
                "foreman's own",
            ),
            (r#"{"command": ["a"], "timeout": "ten"}"#.into(), "config.timeout", "invalid duration"),
            (r#"{"command": ["a"], "timeout": "0s"}"#.into(), "config.timeout", "must be within"),
            (r#"{"command": ["a"], "timeout": "31d"}"#.into(), "config.timeout", "unknown unit"),
            (r#"{"command": ["a"], "stop_grace": "11m"}"#.into(), "config.stop_grace", "must be within 0s..=10m"),
            (r#"{"command": ["a"], "max_restarts": 1001}"#.into(), "config.max_restarts", "within 0..=1000"),
            (r#"{"command": ["a"], "shell": true}"#.into(), "config.shell", "unknown field"),
            (r#"{"command": "echo hi"}"#.into(), "config.command", "expected a sequence"),
            ("[1, 2]".into(), "config", "is an array, not a JSON object"),
            (
                r#"{"command": ["a"], "scratch_required": "yes"}"#.into(),
                "config.scratch_required",
                "expected a boolean",
            ),
            (r#"{"command": ["a"], "workers": "3"}"#.into(), "config.workers", "expected u32"),
        ];
        for (json, field, says) in table {
            let e = parse(&json).expect_err(&json);
            assert_eq!(e.field, field, "{json}: {e:?}");
            assert!(e.problem.contains(says), "{json}: {:?} does not say {says:?}", e.problem);
        }
    }
}
