//! The `foreman` command line: one binary, one subcommand per role (design.md §2).
//!
//! Today it has `foreman config master|executor`, which loads and validates a configuration exactly as the node
//! would at start-up and prints the effective settings as TOML: the check an operator runs before deploying.
//! Exit codes: 0 on success, 2 on a usage or configuration error (warnings do not change the code), 1 when the
//! output cannot be written.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::Serialize;

use foreman::config::{ExecutorConfig, ExecutorFlags, MasterConfig, MasterFlags};

/// The exit code of a usage or configuration error.
const EXIT_INVALID: u8 = 2;

/// A fault-tolerant job master.
#[derive(Debug, Parser)]
#[command(name = "foreman", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load and validate a configuration, then print the effective settings as TOML.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a master configuration (file and flags as `foreman master` takes them).
    Master(Box<MasterFlags>),
    /// Check an executor configuration (file and flags as `foreman executor` takes them).
    Executor(Box<ExecutorFlags>),
}

/// How a command ended, beyond success.
enum Failure {
    /// The input was refused: printed as `error: ...`, exit code 2.
    Invalid(String),
    /// Something else went wrong (writing the output): exit code 1.
    Other(anyhow::Error),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version requests end here too, with code 0; usage errors with clap's code 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_INVALID));
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Invalid(message)) => {
            eprintln_lossy(&format!("error: {message}"));
            ExitCode::from(EXIT_INVALID)
        }
        Err(Failure::Other(e)) => {
            eprintln_lossy(&format!("error: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Config(ConfigCommand::Master(flags)) => {
            let (config, warnings) = MasterConfig::load(&flags).map_err(|e| Failure::Invalid(e.to_string()))?;
            print_config(&config, &warnings)
        }
        Command::Config(ConfigCommand::Executor(flags)) => {
            let (config, warnings) = ExecutorConfig::load(&flags).map_err(|e| Failure::Invalid(e.to_string()))?;
            print_config(&config, &warnings)
        }
    }
}

/// Warnings to stderr, then the configuration as TOML to stdout.
fn print_config<T: Serialize>(config: &T, warnings: &[String]) -> Result<(), Failure> {
    for warning in warnings {
        eprintln_lossy(&format!("warning: {warning}"));
    }
    let text = toml::to_string(config).context("cannot write the configuration as TOML").map_err(Failure::Other)?;
    // A closed stdout (`foreman config master | head -1`) is an error to report, not a panic.
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("cannot write to stdout").map_err(Failure::Other)
}

/// Writes a line to stderr, ignoring a closed stderr rather than panicking as `eprintln!` would.
fn eprintln_lossy(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
