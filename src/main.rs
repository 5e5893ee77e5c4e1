//! The `foreman` command line: one binary, one subcommand per role (design.md §2).
//!
//! - `foreman standalone` runs a master and executors in one process over the embedded metastore.
//! - `foreman config master|executor` loads and validates a configuration exactly as the node would at start-up
//!   and prints the effective settings as TOML: the check an operator runs before deploying.
//! - `foreman cluster leader|masters|executors|resign` and `foreman job create|get|list|cancel|delete|wait` are
//!   the clients of the masters' gRPC API (`foreman::cli`).
//! - `foreman completion <shell>` prints a shell completion script, generated from this very definition.
//!
//! Exit codes: 0 on success; 2 on a usage, input or configuration error (nothing was sent; warnings do not change
//! the code); 1 for anything else: a master refused the call or none could serve it, or the output cannot be
//! written. Waiting for a job (`job create --wait`, `job wait`) ends with 3 when the job failed, 4 when it was
//! canceled, 5 when `--wait-timeout` passed first.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;
use serde::Serialize;

use foreman::cli::{self, CliError, ClientFlags, ClusterCommand, JobCommand};
use foreman::config::{ExecutorConfig, ExecutorFlags, MasterConfig, MasterFlags};

/// The exit code of a usage or configuration error: the client commands' code for refused input.
const EXIT_INVALID: u8 = cli::EXIT_USAGE;

/// A fault-tolerant job master.
#[derive(Debug, Parser)]
#[command(name = "foreman", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a master: campaign for leadership over etcd, and serve the cluster (Ctrl-C or SIGTERM stops it; a
    /// leader resigns first).
    Master(Box<MasterFlags>),
    /// Run an executor: register with the masters, heartbeat, and run the tasks they dispatch (Ctrl-C or SIGTERM
    /// drains it: no new tasks, running ones stop at a checkpoint, then it deregisters).
    Executor(Box<ExecutorFlags>),
    /// Run a whole cluster in this process: a master and executors over the embedded metastore, its state kept in
    /// --data-dir (Ctrl-C or SIGTERM stops it gracefully; a restart resumes every job).
    Standalone(Box<foreman::standalone::StandaloneFlags>),
    /// Load and validate a configuration, then print the effective settings as TOML.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Ask the masters about the cluster: the leader, the masters, the executors.
    Cluster {
        #[command(flatten)]
        client: ClientFlags,
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Create, inspect, list, cancel, delete and wait for jobs.
    #[command(after_help = JOB_EXIT_CODES)]
    Job {
        #[command(flatten)]
        client: ClientFlags,
        #[command(subcommand)]
        command: JobCommand,
    },
    /// Certificates for mutual TLS between the processes of a cluster.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// Users' tokens: `foreman token add NAME --project P --role R --file TOKENS`.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print a shell completion script for bash, zsh, fish, elvish or PowerShell to stdout.
    ///
    /// How to install it: below.
    #[command(after_help = COMPLETION_INSTALL)]
    Completion {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: Shell,
    },
}

#[derive(Debug, Subcommand)]
enum TlsCommand {
    /// Make a cluster CA and a key pair and certificate for each master, executor and user, owner-only files in
    /// --dir (never overwritten), and print the flags each process needs.
    Init(foreman::cli::tls::InitFlags),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Draws a new token for a user from the OS's generator, prints it once (stdout) and appends its SHA-256 and
    /// grant to the tokens file (created owner-only; refused if group or others may read it).
    Add(foreman::cli::token::AddFlags),
}

/// How to install a completion script, for `foreman completion --help`.
const COMPLETION_INSTALL: &str = "\
Install (then start a new shell):
  bash        foreman completion bash > ~/.local/share/bash-completion/completions/foreman
              (with the bash-completion package; without it, add `source <(foreman completion bash)` to ~/.bashrc)
  zsh         foreman completion zsh > ~/.zfunc/_foreman
              and add `fpath=(~/.zfunc $fpath); autoload -Uz compinit; compinit` to ~/.zshrc
  fish        foreman completion fish > ~/.config/fish/completions/foreman.fish
  elvish      add `eval (foreman completion elvish | slurp)` to ~/.config/elvish/rc.elv
  powershell  add `foreman completion powershell | Out-String | Invoke-Expression` to $PROFILE";

/// The exit codes of `foreman job ...`, for its `--help`.
const JOB_EXIT_CODES: &str = "\
Exit codes: 0 done; 1 a master refused the call, or none could serve it; 2 bad input (nothing was sent).
Waiting for a job (create --wait, wait): 3 the job failed, 4 it was canceled, 5 --wait-timeout passed first.";

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
    /// A client command failed; the error knows its exit code.
    Client(CliError),
}

fn main() -> ExitCode {
    // First: started as an exec command's shim, this process is only that (framework::process).
    if let Some(code) = foreman::framework::process::run_shim_if_asked() {
        return ExitCode::from(code);
    }
    // A runtime invariant that breaks (debug builds) stops the process with a typed violation as the panic's
    // payload: say what it was, then what the default hook says (where, and the backtrace when asked for).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(v) = info.payload().downcast_ref::<foreman::core::invariants::Violation>() {
            eprintln!("broken invariant: {v}");
        }
        default_hook(info);
    }));
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
        Err(Failure::Client(e)) => {
            eprintln_lossy(&format!("error: {e}"));
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Master(flags) => {
            init_logging();
            block_on(foreman::master::cmd::run(&flags))?.map_err(|e| match e {
                foreman::master::cmd::MasterCmdError::Config(m) => Failure::Invalid(m),
                other => Failure::Other(anyhow::anyhow!(other)),
            })
        }
        Command::Executor(flags) => {
            init_logging();
            block_on(foreman::executor::cmd::run(&flags))?.map_err(|e| match e {
                foreman::executor::cmd::ExecutorCmdError::Config(m) => Failure::Invalid(m),
                other => Failure::Other(anyhow::anyhow!(other)),
            })
        }
        Command::Standalone(flags) => {
            init_logging();
            let mut out = std::io::stdout();
            block_on(foreman::standalone::run(&flags, &mut out))?.map_err(|e| match e {
                foreman::standalone::StandaloneError::Config(m) => Failure::Invalid(m),
                other => Failure::Other(anyhow::anyhow!(other)),
            })
        }
        Command::Config(ConfigCommand::Master(flags)) => {
            let (config, warnings) = MasterConfig::load(&flags).map_err(|e| Failure::Invalid(e.to_string()))?;
            print_config(&config, &warnings)
        }
        Command::Config(ConfigCommand::Executor(flags)) => {
            let (config, warnings) = ExecutorConfig::load(&flags).map_err(|e| Failure::Invalid(e.to_string()))?;
            print_config(&config, &warnings)
        }
        Command::Cluster { client, command } => block_on(cli::run_cluster(&client, command))?.map_err(Failure::Client),
        Command::Job { client, command } => block_on(cli::run_job(&client, command))?.map_err(Failure::Client),
        Command::Tls(TlsCommand::Init(flags)) => {
            let printed = foreman::cli::tls::init(&flags).map_err(Failure::Invalid)?;
            print!("{printed}");
            Ok(())
        }
        Command::Token(TokenCommand::Add(flags)) => {
            let added = foreman::cli::token::add(&flags).map_err(Failure::Invalid)?;
            eprintln_lossy(&added.advice);
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", added.token)
                .and_then(|()| out.flush())
                .context("cannot write to stdout")
                .map_err(Failure::Other)
        }
        Command::Completion { shell } => {
            // Into memory first: clap_complete panics when its writer fails, and a closed stdout is no reason to.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "foreman", &mut script);
            let mut out = std::io::stdout().lock();
            out.write_all(&script).and_then(|()| out.flush()).context("cannot write to stdout").map_err(Failure::Other)
        }
    }
}

/// Logs to stderr; `RUST_LOG` filters (default: info).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: logs redirected to files stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}

/// Runs an async command to completion on a new runtime.
///
/// In the simulation build this compiles but is never run: the simulator drives nodes itself and never calls
/// `main` (madsim's `Runtime::block_on` would refuse).
fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, Failure> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime").map_err(Failure::Other)?;
    Ok(runtime.block_on(future))
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
