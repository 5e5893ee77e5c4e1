//! The client commands of the `foreman` binary: `foreman cluster ...` and `foreman job ...`.
//!
//! Input is checked here, before anything is sent, with the same rules the master applies (job ids, selectors,
//! JSON configuration), so a typo costs no round trip and is reported against the flag that holds it. The
//! commands then talk to the masters through [`client::Client`] (failover, deadlines, unknown outcomes) and
//! print through [`output`] (tables or JSON).
//!
//! Exit codes ([`CliError::exit_code`]): 0 on success; 2 when the input is refused (usage errors, a bad flag
//! value: nothing was sent); 1 for everything else (a refusal from the master, no master able to serve the
//! call, an unknown outcome, a reply that makes no sense, stdout not writable). Waiting for a job
//! (`job create --wait`, `job wait`) adds three: 3 the job failed, 4 it was canceled, 5 `--wait-timeout` passed
//! first ([`WAIT_EXIT_CODES`]).

pub mod client;
pub mod logs;
pub mod output;
pub mod progress;
pub mod tls;
pub mod token;
pub mod wait;

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use thiserror::Error;

use crate::config::{format_duration, parse_duration};
use crate::core::ids::JobId;
use crate::core::labels::{validate_selectors, Selector};
use crate::rpc::pb;
use crate::rpc::pb::discovery_client::DiscoveryClient;
use crate::rpc::pb::job_manager_client::JobManagerClient;
use client::{Attempt, AttemptFailure, Client, MasterAddress, Resend};
use output::{
    DeletedView, ExecutorListView, ExecutorView, JobListView, JobStatusView, JobView, LeaderView, MasterListView,
    MasterView, ResignedView,
};

/// Where the client commands look for masters when neither `--master` nor `FOREMAN_MASTERS` says.
pub const DEFAULT_MASTER: &str = "127.0.0.1:10240";
/// The most pages `job list --all` follows: with the largest page, a million jobs.
pub const LIST_PAGES_MAX: usize = 1000;
/// The largest page `ListJobs` serves.
pub const PAGE_SIZE_MAX: u32 = 1000;

/// The exit code of input refused before anything was sent.
pub const EXIT_USAGE: u8 = 2;
/// The exit code of a waited-for job that failed.
pub const EXIT_JOB_FAILED: u8 = 3;
/// The exit code of a waited-for job that was canceled.
pub const EXIT_JOB_CANCELED: u8 = 4;
/// The exit code of a wait that `--wait-timeout` ended before the job did.
pub const EXIT_WAIT_TIMED_OUT: u8 = 5;

/// The exit codes of `job create --wait` and `job wait`, for their `--help`.
pub const WAIT_EXIT_CODES: &str = "\
Exit codes:
  0  the job finished (it is printed on stdout)
  1  a master refused the call (e.g. no such job); or, creating, no master could take the job or its outcome
     is unknown (a poll while waiting that no master can serve is retried: a leader failover does not end it)
  2  bad input: nothing was sent
  3  the job failed: printed on stdout, its reason and message on stderr
  4  the job was canceled: printed on stdout
  5  --wait-timeout passed before the job ended (the job goes on; nothing on stdout)

Progress goes to stderr. On a terminal, with --output table: a line that stays for each change of state (and
retry), and between them one line redrawn in place, with a bar when the progress begins with N/M, e.g.
`[  1.5s] RUNNING [####----------------]  21% 170/800 steps` (cut to $COLUMNS, default 80). Elsewhere (pipes, CI
logs, --output json, TERM=dumb): one line per change, e.g. `[  3.5s] RUNNING 412/800 steps`.";

/// Flags every client command takes, before or after its subcommand.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Connection and output")]
pub struct ClientFlags {
    /// Masters to ask, in this order, comma separated; the next is tried when one is unreachable.
    #[arg(
        long = "master",
        value_name = "HOST:PORT[,HOST:PORT...]",
        env = "FOREMAN_MASTERS",
        default_value = DEFAULT_MASTER,
        value_delimiter = ',',
        value_parser = MasterAddress::parse,
        global = true
    )]
    pub masters: Vec<MasterAddress>,

    /// How to print the result.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = OutputFormat::Table, global = true)]
    pub output: OutputFormat,

    /// Deadline for each master tried (connecting and answering), e.g. 500ms, 5s, 1m.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_timeout, global = true)]
    pub timeout: Duration,

    /// TLS to the masters: the cluster CA, and either a token or a certificate of role `user` (`foreman tls init
    /// --users`).
    #[command(flatten)]
    pub tls: crate::config::TlsFlags,

    /// The file holding this user's token (from `foreman token add`; mode 0600) [default: ~/.config/foreman/token
    /// if it exists]. A token is never given on the command line.
    #[arg(long, value_name = "FILE", env = "FOREMAN_TOKEN_FILE", global = true)]
    pub token_file: Option<std::path::PathBuf>,
}

impl ClientFlags {
    /// A client of `masters` with this command's deadline and token.
    pub fn client(&self, masters: Vec<MasterAddress>) -> Result<Client, CliError> {
        Ok(Client::new(masters, self.timeout)?.with_token(self.token()?))
    }

    /// The token this command sends, if it has one: `--token-file` (or `$FOREMAN_TOKEN_FILE`), else the admin
    /// token of a `foreman standalone` at the first --master address that has a profile ([`Self::profile`]),
    /// else `~/.config/foreman/token` if it exists ([`token`]).
    pub fn token(&self) -> Result<Option<String>, CliError> {
        let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
        if self.token_file.is_none() {
            if let Some(p) = self.profile()? {
                return token::read_token(&p.token_file, true).map(Some).map_err(CliError::Usage);
            }
        }
        match token::token_path(self.token_file.as_deref(), home.as_deref()) {
            Some((path, given)) => token::read_token(&path, given).map(Some).map_err(CliError::Usage),
            None => Ok(None),
        }
    }

    /// What a `foreman standalone` of this user left for the CLI (its CA and admin token file) at the first
    /// --master address that has one, when no TLS flag is given.
    pub fn profile(&self) -> Result<Option<crate::config::ClientProfile>, CliError> {
        let flags = &self.tls;
        if flags.tls_ca.is_some() || flags.tls_cert.is_some() || flags.tls_key.is_some() {
            return Ok(None);
        }
        let Some(home) = std::env::var_os("HOME").map(std::path::PathBuf::from) else { return Ok(None) };
        for m in &self.masters {
            if let Some(p) = crate::config::ClientProfile::find(&home, m.as_str()).map_err(CliError::Usage)? {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }

    /// Sets up this process's TLS from `--tls-ca`, `--tls-cert` and `--tls-key`: all three (a user's certificate
    /// says who calls), the CA alone (a token says who calls), or none; a certificate that is not a user's is
    /// refused.
    pub fn set_up_tls(&self) -> Result<(), CliError> {
        let mut config = crate::config::TlsConfig::default();
        self.tls.apply(&mut config);
        if let Some(p) = self.profile()? {
            return crate::rpc::tls::set_up_ca_only(&p.ca).map_err(CliError::Usage);
        }
        if let (Some(ca), None, None) = (&config.ca, &config.cert, &config.key) {
            return crate::rpc::tls::set_up_ca_only(ca).map_err(CliError::Usage);
        }
        crate::rpc::tls::set_up(config.files(), |t| match t.principal() {
            crate::core::auth::Principal::User { .. } => Ok(()),
            other => Err(format!(
                "--tls-cert names {other}: the CLI needs a user's certificate (foreman tls init --users NAME)"
            )),
        })
        .map(|_| ())
        .map_err(CliError::Usage)
    }
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// Stable, pretty-printed JSON for programs.
    Json,
}

/// `foreman cluster ...`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show the leader: its name, address and leadership epoch.
    Leader,
    /// List the masters and which one leads.
    Masters,
    /// List the executors the leader knows, with their usage and labels.
    Executors,
    /// Ask the first --master address (only that one) to resign leadership.
    ///
    /// A leader hands leadership over; a follower stays out of the next election. Sent to the first address of
    /// --master only, with no failover: the master that resigns is the one you name.
    Resign,
}

/// `foreman job ...`.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Submit a job; prints it as the leader accepted it, or with --wait as it ended.
    #[command(after_help = WAIT_EXIT_CODES)]
    Create(CreateArgs),
    /// Show one job.
    Get {
        /// The job's id.
        #[arg(value_name = "ID", value_parser = parse_job_id)]
        id: JobId,
        /// Include the job's configuration.
        #[arg(long)]
        config: bool,
    },
    /// Show a job's status as its job master sees it: each worker's state and progress, and the job type's
    /// detail. Live from the job's current job master, or else as a job master last stored it (at most 10 s old
    /// while it ran; its final status once the job ended).
    Status {
        /// The job's id.
        #[arg(value_name = "ID", value_parser = parse_job_id)]
        id: JobId,
    },
    /// Show what the commands of a job's workers printed (exec jobs): each worker's newest incarnation, read from
    /// the executor that holds it.
    Logs {
        /// The job's id.
        #[arg(value_name = "ID", value_parser = parse_job_id)]
        id: JobId,
        /// Only this worker (w0, w1, ...).
        #[arg(long, value_name = "WORKER", value_parser = parse_worker)]
        worker: Option<String>,
        /// Show what they printed on stderr instead of stdout.
        #[arg(long)]
        stderr: bool,
        /// Keep showing new output, and new incarnations, until the job has ended.
        #[arg(long, short = 'f')]
        follow: bool,
        /// With --follow: how often to ask (at least 50ms).
        #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_poll_interval, requires = "follow")]
        poll_interval: Duration,
    },
    /// List jobs, sorted by id: one page, or every page with --all.
    List(ListArgs),
    /// Cancel a job (idempotent); prints the job as the cancel left it.
    Cancel {
        /// The job's id.
        #[arg(value_name = "ID", value_parser = parse_job_id)]
        id: JobId,
    },
    /// Delete a job that has ended, and everything stored for it; the id may then be used again.
    Delete {
        /// The job's id.
        #[arg(value_name = "ID", value_parser = parse_job_id)]
        id: JobId,
    },
    /// Wait for a job to end, showing its progress on stderr; prints the job as it ended.
    #[command(after_help = WAIT_EXIT_CODES)]
    Wait(WaitArgs),
}

fn parse_worker(s: &str) -> Result<String, String> {
    crate::core::ids::WorkerName::parse(s).map(|w| w.as_str().to_owned()).map_err(|e| e.to_string())
}

/// `foreman job create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The job type, e.g. fake.
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_job_type)]
    pub job_type: String,
    /// The job type's configuration: JSON text, or @FILE to read it from a file.
    #[arg(long, value_name = "JSON", value_parser = JobConfig::parse, allow_hyphen_values = true)]
    pub config: JobConfig,
    /// The job's id (letters, digits, '_', '-', '.'); generated by the leader when absent.
    #[arg(long, value_name = "ID", value_parser = parse_job_id, allow_hyphen_values = true)]
    pub id: Option<JobId>,
    /// Where the job master may run: key=value, key!=value or key~regex; repeat for several (all must hold).
    #[arg(long = "selector", value_name = "SELECTOR", value_parser = Selector::parse)]
    pub selectors: Vec<Selector>,
    /// Slots the job master takes on its executor (default 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub cost: Option<u32>,
    /// The project the job belongs to (needs role submit there) [default: default].
    #[arg(long, value_name = "PROJECT", value_parser = parse_project, allow_hyphen_values = true)]
    pub project: Option<String>,
    /// Then wait for the job to end, showing its progress on stderr, and print it as it ended (exit codes below).
    #[arg(long, help_heading = "Waiting")]
    pub wait: bool,
    /// With --wait: how often to ask for the job (at least 50ms).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = wait::POLL_INTERVAL_DEFAULT,
        value_parser = parse_poll_interval,
        requires = "wait",
        help_heading = "Waiting"
    )]
    pub poll_interval: Duration,
    /// With --wait: give up waiting after this long (exit code 5; the job goes on) [default: wait until it ends].
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout, requires = "wait", help_heading = "Waiting")]
    pub wait_timeout: Option<Duration>,
}

impl CreateArgs {
    /// How to wait, with --wait.
    pub fn wait_options(&self) -> Option<wait::WaitOptions> {
        self.wait.then_some(wait::WaitOptions { poll_interval: self.poll_interval, timeout: self.wait_timeout })
    }
}

/// `foreman job wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The job's id.
    #[arg(value_name = "ID", value_parser = parse_job_id)]
    pub id: JobId,
    /// How often to ask for the job (at least 50ms).
    #[arg(long, value_name = "DURATION", default_value = wait::POLL_INTERVAL_DEFAULT, value_parser = parse_poll_interval)]
    pub poll_interval: Duration,
    /// Give up waiting after this long (exit code 5; the job goes on) [default: wait until it ends].
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub wait_timeout: Option<Duration>,
}

impl WaitArgs {
    pub fn wait_options(&self) -> wait::WaitOptions {
        wait::WaitOptions { poll_interval: self.poll_interval, timeout: self.wait_timeout }
    }
}

/// `foreman job list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only jobs in this state.
    #[arg(long, value_enum, value_name = "STATE")]
    pub state: Option<StateFilter>,
    /// Only jobs of this type.
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_job_type)]
    pub job_type: Option<String>,
    /// Jobs per page (1 to 1000; the leader's default is 100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(PAGE_SIZE_MAX)))]
    pub page_size: Option<u32>,
    /// Follow the pages to the end and print every job.
    #[arg(long, conflicts_with = "page_token")]
    pub all: bool,
    /// Start at this page: the next_page_token of the previous one (JSON output).
    #[arg(long, value_name = "TOKEN")]
    pub page_token: Option<String>,
    /// Only jobs of this project (a listing shows only the projects the caller may read anyway).
    #[arg(long, value_name = "PROJECT", value_parser = parse_project, allow_hyphen_values = true)]
    pub project: Option<String>,
}

fn parse_project(text: &str) -> Result<String, String> {
    crate::core::ids::Project::parse(text).map(String::from).map_err(|e| e.to_string())
}

/// A job state, as `job list --state` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StateFilter {
    Created,
    Running,
    Canceling,
    Finished,
    Canceled,
    Failed,
    /// Jobs whose stored record does not decode (they can only be deleted).
    Corrupt,
}

impl StateFilter {
    fn to_wire(self) -> pb::JobState {
        match self {
            StateFilter::Created => pb::JobState::Created,
            StateFilter::Running => pb::JobState::Running,
            StateFilter::Canceling => pb::JobState::Canceling,
            StateFilter::Finished => pb::JobState::Finished,
            StateFilter::Canceled => pb::JobState::Canceled,
            StateFilter::Failed => pb::JobState::Failed,
            StateFilter::Corrupt => pb::JobState::Corrupt,
        }
    }
}

/// A job configuration that is valid JSON, kept as the user wrote it (key order and all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobConfig {
    text: String,
}

impl JobConfig {
    /// The most bytes a configuration may have, to refuse a wrong file before sending it.
    pub const MAX_BYTES: usize = 4 << 20;

    /// Parses `--config`: JSON text, or `@FILE`. Errors name the line and column to fix.
    pub fn parse(arg: &str) -> Result<JobConfig, String> {
        let (text, source) = match arg.strip_prefix('@') {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path:?}: {e}"))?;
                (text, format!(" in {path:?}"))
            }
            None => (arg.to_owned(), String::new()),
        };
        if text.len() > Self::MAX_BYTES {
            return Err(format!("{} bytes{source}; at most {} are allowed", text.len(), Self::MAX_BYTES));
        }
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
            // serde_json's message ends with its own " at line L column C"; say it once, first.
            let message = e.to_string();
            let problem = message.split(" at line ").next().unwrap_or(&message);
            return Err(format!("not valid JSON{source}: line {}, column {}: {problem}", e.line(), e.column()));
        }
        Ok(JobConfig { text })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Parses a job id with the master's rule.
pub fn parse_job_id(text: &str) -> Result<JobId, String> {
    JobId::parse(text).map_err(|e| e.to_string())
}

/// A job type: a non-empty word.
fn parse_job_type(text: &str) -> Result<String, String> {
    if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("job type {text:?} is not valid: give the type's name, e.g. fake"));
    }
    Ok(text.to_owned())
}

/// A duration longer than zero.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err("must be longer than zero, e.g. 5s".to_owned());
    }
    Ok(d)
}

/// A poll interval: at least [`wait::POLL_INTERVAL_MIN`].
fn parse_poll_interval(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < wait::POLL_INTERVAL_MIN {
        return Err(format!(
            "{text} is too often: at least {} between polls, e.g. {}",
            format_duration(wait::POLL_INTERVAL_MIN),
            wait::POLL_INTERVAL_DEFAULT
        ));
    }
    Ok(d)
}

/// Why a client command failed. [`CliError::exit_code`] maps it to the process's exit code.
#[derive(Debug, Error)]
pub enum CliError {
    /// The input was refused before anything was sent.
    #[error("{0}")]
    Usage(String),
    /// A master refused the call.
    #[error("{message} ({reason}){}", refusal_hint(reason))]
    Refused { address: String, message: String, reason: String },
    /// No master could serve the call: unreachable, or each answered that it cannot serve now.
    #[error("{}", no_master_text(attempts))]
    NoMaster { attempts: Vec<Attempt> },
    /// A write that must not be repeated may or may not have been carried out.
    #[error("the master at {address} did not confirm the call ({detail}); it may or may not have happened: {check}")]
    UnknownOutcome { address: String, detail: String, check: String },
    /// A reply that does not make sense (a bug on the server side).
    #[error("unexpected reply from the master: {0}")]
    BadReply(String),
    /// The result could not be written.
    #[error("cannot write to stdout: {0}")]
    Output(std::io::Error),
    /// A waited-for job failed; the fields are escaped server text.
    #[error("{}", wait::failed_text(id, reason, message))]
    JobFailed { id: String, reason: String, message: String },
    /// A waited-for job was canceled.
    #[error("job {id} was canceled")]
    JobCanceled { id: String },
    /// A waited-for job's stored record is corrupt: it will never run. The message is escaped server text.
    #[error("job {id} will never end: {message} (JOB_RECORD_CORRUPT)")]
    JobCorrupt { id: String, message: String },
    /// `--wait-timeout` passed before the job ended; `last` is what the last poll saw, if one was answered.
    #[error("{}", wait::timed_out_text(id, *waited, last.as_ref()))]
    WaitTimedOut { id: String, waited: Duration, last: Option<progress::Sighting> },
}

impl CliError {
    /// [`EXIT_USAGE`] for refused input (nothing was sent); [`EXIT_JOB_FAILED`], [`EXIT_JOB_CANCELED`] and
    /// [`EXIT_WAIT_TIMED_OUT`] for how a wait ended; 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::JobFailed { .. } => EXIT_JOB_FAILED,
            CliError::JobCanceled { .. } => EXIT_JOB_CANCELED,
            CliError::WaitTimedOut { .. } => EXIT_WAIT_TIMED_OUT,
            _ => 1,
        }
    }
}

/// `no master reachable at a, b: is `foreman master` running?` when no master could be reached; `no master
/// could serve the call` when some answered; then one line per attempt.
fn no_master_text(attempts: &[Attempt]) -> String {
    let addresses = attempts.iter().map(|a| a.address.as_str()).collect::<Vec<_>>().join(", ");
    let answered = attempts.iter().any(|a| !matches!(a.failure, AttemptFailure::Connect(_)));
    let mut text = if answered {
        format!("no master could serve the call (tried {addresses})")
    } else {
        format!("no master reachable at {addresses}: is `foreman master` running?")
    };
    for a in attempts {
        text.push_str(&format!("\n  {}: {}", a.address, a.failure));
    }
    if let Some(hint) = tls_hint(attempts, crate::rpc::tls::installed().is_some()) {
        text.push('\n');
        text.push_str(hint);
    }
    text
}

/// What to check when the failures look like a TLS mismatch: a plain-text client answered by the transport alone
/// (a TLS master's server cannot speak HTTP/2 in clear: no foreman reason comes back), or a handshake that failed
/// over a certificate.
/// What to do about a refusal of who the CLI is, after the master's own message.
fn refusal_hint(reason: &str) -> &'static str {
    match reason {
        "UNAUTHENTICATED" => {
            "; give the CLI the token `foreman token add` printed, in a file only you may read: --token-file FILE, \
             $FOREMAN_TOKEN_FILE, or ~/.config/foreman/token"
        }
        "PERMISSION_DENIED" => "; use a token with that role (an admin makes one with `foreman token add`)",
        _ => "",
    }
}

fn tls_hint(attempts: &[Attempt], tls_on: bool) -> Option<&'static str> {
    let transport_only = |a: &Attempt| match &a.failure {
        AttemptFailure::Unavailable { reason, .. } => reason.starts_with("gRPC "),
        _ => false,
    };
    let certificate = |a: &Attempt| a.failure.to_string().to_ascii_lowercase().contains("certificate");
    if !tls_on && attempts.iter().any(transport_only) {
        Some(
            "if the masters run with TLS, give the CLI --tls-ca (and a token, or --tls-cert and --tls-key: a user's \
             certificate from `foreman tls init --users NAME`)",
        )
    } else if tls_on && attempts.iter().any(certificate) {
        Some(
            "the TLS handshake failed: check that --tls-ca is this cluster's CA and --tls-cert, if given, a user \
             certificate it signed",
        )
    } else {
        None
    }
}

/// Runs `foreman cluster <command>` and prints its result.
pub async fn run_cluster(flags: &ClientFlags, command: ClusterCommand) -> Result<(), CliError> {
    flags.set_up_tls()?;
    let text = cluster_output(flags, command).await?;
    write_stdout(&text)
}

/// Runs `foreman job <command>` and prints its result.
pub async fn run_job(flags: &ClientFlags, command: JobCommand) -> Result<(), CliError> {
    flags.set_up_tls()?;
    let printed = job_output(flags, command).await?;
    write_stdout(&printed.text)?;
    if printed.more_pages && std::io::stdout().is_terminal() {
        let _ = writeln!(
            std::io::stderr().lock(),
            "more jobs exist: add --all to list them all, or --page-token with the next_page_token of --output json"
        );
    }
    printed.then.map_or(Ok(()), Err)
}

/// What a job command prints on stdout, and how it ends once that is printed.
struct Printed {
    text: String,
    /// More pages of jobs exist than were printed.
    more_pages: bool,
    /// The error that ends the command after the text (a waited-for job that failed or was canceled).
    then: Option<CliError>,
}

impl Printed {
    fn text(text: String) -> Printed {
        Printed { text, more_pages: false, then: None }
    }
}

async fn cluster_output(flags: &ClientFlags, command: ClusterCommand) -> Result<String, CliError> {
    let json = flags.output == OutputFormat::Json;
    let safe = Resend::Safe;
    match command {
        ClusterCommand::Leader => {
            let mut client = flags.client(flags.masters.clone())?;
            let reply = client
                .call(&safe, pb::GetLeaderRequest {}, |ch, req| async move {
                    DiscoveryClient::new(ch).get_leader(req).await
                })
                .await?;
            let view = LeaderView::from(&reply);
            Ok(if json { output::to_json(&view) } else { output::leader_detail(&view) })
        }
        ClusterCommand::Masters => {
            let mut client = flags.client(flags.masters.clone())?;
            let reply = client
                .call(&safe, pb::ListMastersRequest {}, |ch, req| async move {
                    DiscoveryClient::new(ch).list_masters(req).await
                })
                .await?;
            let view = MasterListView { masters: reply.masters.iter().map(MasterView::from).collect() };
            Ok(if json { output::to_json(&view) } else { output::masters_table(&view.masters) })
        }
        ClusterCommand::Executors => {
            let mut client = flags.client(flags.masters.clone())?;
            let reply = client
                .call(&safe, pb::ListExecutorsRequest {}, |ch, req| async move {
                    DiscoveryClient::new(ch).list_executors(req).await
                })
                .await?;
            let view = ExecutorListView { executors: reply.executors.iter().map(ExecutorView::from).collect() };
            Ok(if json { output::to_json(&view) } else { output::executors_table(&view.executors) })
        }
        ClusterCommand::Resign => {
            // Only the named master: resigning "whichever master answered" would be a different command.
            let first = flags.masters.first().cloned().into_iter().collect();
            let mut client = flags.client(first)?;
            let address = flags.masters[0].to_string();
            let check = format!("check with `foreman cluster leader --master {address}`");
            client
                .call(&Resend::Unsafe { check }, pb::ResignLeaderRequest {}, |ch, req| async move {
                    DiscoveryClient::new(ch).resign_leader(req).await
                })
                .await?;
            let view = ResignedView { address, resigned: true };
            Ok(if json { output::to_json(&view) } else { output::resigned_text(&view) })
        }
    }
}

/// What to print, and how the command ends.
async fn job_output(flags: &ClientFlags, command: JobCommand) -> Result<Printed, CliError> {
    let json = flags.output == OutputFormat::Json;
    let render_job = |job: &pb::Job| {
        let view = JobView::from(job);
        if json {
            output::to_json(&view)
        } else {
            output::job_detail(&view)
        }
    };
    match command {
        JobCommand::Create(args) => {
            // Everything the flags could not check one by one, before connecting.
            validate_selectors(&args.selectors).map_err(|e| CliError::Usage(format!("--selector: {e}")))?;
            let wait_options = args.wait_options();
            let mut client = flags.client(flags.masters.clone())?;
            let job = pb::Job {
                id: args.id.map(String::from).unwrap_or_default(),
                r#type: args.job_type,
                config: args.config.text.into_bytes(),
                selectors: args.selectors.iter().map(crate::rpc::selector_to_wire).collect(),
                cost: args.cost.unwrap_or(0),
                project: args.project.unwrap_or_default(),
                ..Default::default()
            };
            // One token for every attempt of this create: a repeat gets the job the first attempt made, so resending
            // through a failover never creates it twice.
            let request = pb::CreateJobRequest { job: Some(job), request_id: create_token() };
            // The token is resent for a bounded time only: a deleted job's tombstone, which refuses a late repeat
            // of its create, is kept for a retention that must outlast every attempt (README, "Design decisions").
            let span = crate::config::CREATE_RETRY_SPAN_MAX;
            let call = client
                .call(&Resend::Safe, request, |ch, req| async move { JobManagerClient::new(ch).create_job(req).await });
            let reply = match tokio::time::timeout(span, call).await {
                Ok(reply) => reply?,
                Err(_) => {
                    return Err(CliError::UnknownOutcome {
                        address: flags.masters.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(","),
                        detail: format!("no master created it within {}", format_duration(span)),
                        check: "see whether `foreman job list` shows it before creating it again".to_owned(),
                    })
                }
            };
            match wait_options {
                None => Ok(Printed::text(render_job(&reply))),
                Some(options) => {
                    if reply.id.is_empty() {
                        return Err(CliError::BadReply(
                            "CreateJob accepted the job but returned no id to wait for; find it with `foreman job \
                             list`"
                                .to_owned(),
                        ));
                    }
                    let job = wait_and_show(&mut client, &reply.id, options, flags.output).await?;
                    Ok(Printed { text: render_job(&job), more_pages: false, then: wait::verdict(&job) })
                }
            }
        }
        JobCommand::Get { id, config } => {
            let mut client = flags.client(flags.masters.clone())?;
            let request = pb::GetJobRequest { id: id.to_string(), include_config: config };
            let reply = client
                .call(&Resend::Safe, request, |ch, req| async move { JobManagerClient::new(ch).get_job(req).await })
                .await?;
            Ok(Printed::text(render_job(&reply)))
        }
        JobCommand::Status { id } => {
            let mut client = flags.client(flags.masters.clone())?;
            let request = pb::GetJobStatusRequest { id: id.to_string() };
            let reply =
                client
                    .call(&Resend::Safe, request, |ch, req| async move {
                        JobManagerClient::new(ch).get_job_status(req).await
                    })
                    .await?;
            let view = JobStatusView::from(&reply);
            let now = crate::clock::wall_now().0;
            Ok(Printed::text(if json { output::to_json(&view) } else { output::job_status_detail(&view, now) }))
        }
        JobCommand::Logs { id, worker, stderr, follow, poll_interval } => {
            let mut client = flags.client(flags.masters.clone())?;
            let ask = logs::LogsAsk { id, worker, stderr, follow, poll_interval, json };
            logs::show(&mut client, &ask).await?;
            Ok(Printed::text(String::new()))
        }
        JobCommand::List(args) => {
            let mut client = flags.client(flags.masters.clone())?;
            let (jobs, next_page_token) = list_jobs(&mut client, &args).await?;
            let more = next_page_token.is_some();
            let view = JobListView { jobs: jobs.iter().map(JobView::from).collect(), next_page_token };
            let text = if json { output::to_json(&view) } else { output::jobs_table(&view.jobs) };
            Ok(Printed { text, more_pages: more, then: None })
        }
        JobCommand::Cancel { id } => {
            let mut client = flags.client(flags.masters.clone())?;
            // CancelJob is idempotent: resending it after an unknown outcome is safe.
            let request = pb::CancelJobRequest { id: id.to_string() };
            let reply = client
                .call(&Resend::Safe, request, |ch, req| async move { JobManagerClient::new(ch).cancel_job(req).await })
                .await?;
            Ok(Printed::text(render_job(&reply)))
        }
        JobCommand::Delete { id } => {
            let mut client = flags.client(flags.masters.clone())?;
            // Not resent: a second DeleteJob after a first that worked says JOB_NOT_FOUND, which would mislead.
            let check = format!("check with `foreman job get {id}`");
            let request = pb::DeleteJobRequest { id: id.to_string() };
            client
                .call(&Resend::Unsafe { check }, request, |ch, req| async move {
                    JobManagerClient::new(ch).delete_job(req).await
                })
                .await?;
            let view = DeletedView { id: id.to_string(), deleted: true };
            Ok(Printed::text(if json { output::to_json(&view) } else { output::deleted_text(&view) }))
        }
        JobCommand::Wait(args) => {
            let mut client = flags.client(flags.masters.clone())?;
            let job = wait_and_show(&mut client, args.id.as_str(), args.wait_options(), flags.output).await?;
            Ok(Printed { text: render_job(&job), more_pages: false, then: wait::verdict(&job) })
        }
    }
}

/// Waits for job `id` to end, its progress on stderr (with a bar, redrawn in place, on a terminal when the output is
/// for people).
async fn wait_and_show(
    client: &mut Client,
    id: &str,
    options: wait::WaitOptions,
    output: OutputFormat,
) -> Result<pb::Job, CliError> {
    let mut stderr = std::io::stderr();
    let rendering = progress::Rendering::choose(
        stderr.is_terminal(),
        output,
        std::env::var_os("TERM").as_deref(),
        std::env::var_os("COLUMNS").as_deref(),
    );
    wait::wait_for_job(client, id, options, rendering, &mut stderr).await
}

/// One page of jobs, or every page with `--all`; and the token of the page after the last one returned.
async fn list_jobs(client: &mut Client, args: &ListArgs) -> Result<(Vec<pb::Job>, Option<String>), CliError> {
    let mut jobs = Vec::new();
    let mut token = args.page_token.clone().unwrap_or_default();
    for _ in 0..LIST_PAGES_MAX {
        let request = pb::ListJobsRequest {
            page_size: args.page_size.unwrap_or(0),
            page_token: token.clone(),
            r#type: args.job_type.clone().unwrap_or_default(),
            state: args.state.map_or(pb::JobState::Unspecified, StateFilter::to_wire) as i32,
            include_config: false,
            project: args.project.clone().unwrap_or_default(),
        };
        let reply = client
            .call(&Resend::Safe, request, |ch, req| async move { JobManagerClient::new(ch).list_jobs(req).await })
            .await?;
        jobs.extend(reply.jobs);
        if reply.next_page_token.is_empty() {
            return Ok((jobs, None));
        }
        if !args.all {
            return Ok((jobs, Some(reply.next_page_token)));
        }
        if reply.next_page_token == token {
            return Err(CliError::BadReply(format!(
                "ListJobs returned its own page token {:?} as the next one; stopping instead of looping",
                output::sanitize(&token)
            )));
        }
        token = reply.next_page_token;
    }
    Err(CliError::BadReply(format!("ListJobs had more than {LIST_PAGES_MAX} pages; stopping (use --page-size)")))
}

/// Writes the result. A closed stdout (`foreman job list | head -1`) is the reader's choice, not an error.
fn write_stdout(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::Output(e)),
    }
}

/// A token for one `job create` invocation: this process, this moment.
fn create_token() -> String {
    use std::hash::{Hash, Hasher};
    // why: the CLI runs only in production; the token only has to differ between invocations.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::process::id().hash(&mut h);
    now.hash(&mut h);
    format!("cli-{:016x}-{}", h.finish(), now.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn a_tls_mismatch_gets_a_hint() {
        let address = MasterAddress::parse("127.0.0.1:10240").unwrap();
        let at = |failure| Attempt { address: address.clone(), failure };
        let clear = at(AttemptFailure::Unavailable {
            message: "h2 protocol error: http2 error".into(),
            reason: "gRPC Internal".into(),
        });
        assert!(tls_hint(std::slice::from_ref(&clear), false).unwrap().contains("--tls-ca"));
        let bad_ca = at(AttemptFailure::Connect("transport error: invalid peer certificate: BadSignature".into()));
        assert!(tls_hint(std::slice::from_ref(&bad_ca), true).unwrap().contains("this cluster's CA"));
        // A master that is down, or one that answered with a foreman reason, is no TLS matter.
        let down = at(AttemptFailure::Connect("tcp connect error: Connection refused".into()));
        let busy = at(AttemptFailure::Unavailable { message: "no leader".into(), reason: "NO_LEADER".into() });
        for tls_on in [false, true] {
            assert_eq!(tls_hint(&[down.clone(), busy.clone()], tls_on), None);
        }
        assert!(no_master_text(&[clear]).contains("--tls-cert"));
    }

    /// The client commands as the binary mounts them.
    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        flags: ClientFlags,
        #[command(subcommand)]
        command: TestCommand,
    }

    #[derive(Debug, Subcommand)]
    enum TestCommand {
        #[command(subcommand)]
        Job(JobCommand),
        #[command(subcommand)]
        Cluster(ClusterCommand),
    }

    fn parse(args: &[&str]) -> Result<TestCli, String> {
        TestCli::try_parse_from(std::iter::once("foreman").chain(args.iter().copied())).map_err(|e| e.to_string())
    }

    #[test]
    fn flags_have_defaults_and_go_anywhere() {
        let cli = parse(&["job", "get", "j1"]).unwrap();
        // FOREMAN_MASTERS may be set where the tests run; the default applies only when it is not.
        if std::env::var_os("FOREMAN_MASTERS").is_none() {
            assert_eq!(cli.flags.masters, vec![MasterAddress::parse(DEFAULT_MASTER).unwrap()]);
        }
        assert_eq!(cli.flags.output, OutputFormat::Table);
        assert_eq!(cli.flags.timeout, Duration::from_secs(5));
        let cli =
            parse(&["job", "get", "j1", "--master", "a:1,b:2", "--output", "json", "--timeout", "1m30s"]).unwrap();
        assert_eq!(cli.flags.masters.iter().map(|m| m.as_str()).collect::<Vec<_>>(), ["a:1", "b:2"]);
        assert_eq!(cli.flags.output, OutputFormat::Json);
        assert_eq!(cli.flags.timeout, Duration::from_secs(90));
    }

    #[test]
    fn bad_values_name_their_flag() {
        // (arguments, words the error must contain)
        let table: &[(&[&str], &[&str])] = &[
            (&["job", "get", "a b"], &["<ID>", "job id"]),
            (
                &["job", "create", "--type", "fake", "--config", "{}", "--selector", "zone"],
                &["--selector", "key=value"],
            ),
            (&["job", "create", "--type", "fake", "--config", "{}", "--selector", "zone~("], &["--selector", "regex"]),
            (&["job", "create", "--type", "fake", "--config", "{\"a\":1,}"], &["--config", "line 1, column 8"]),
            (&["job", "create", "--type", "fake", "--config", "{}", "--id", "-x"], &["--id", "job id"]),
            (&["job", "create", "--type", "fake", "--config", "{}", "--cost", "0"], &["--cost"]),
            (&["job", "create", "--type", "", "--config", "{}"], &["--type", "e.g. fake"]),
            (&["job", "list", "--state", "sleeping"], &["--state", "running"]),
            (&["job", "list", "--page-size", "1001"], &["--page-size"]),
            (&["job", "list", "--all", "--page-token", "x"], &["--all", "--page-token"]),
            (&["cluster", "leader", "--master", "a:1,"], &["--master", "empty"]),
            (&["cluster", "leader", "--master", "http://a:1"], &["--master", "scheme"]),
            (&["cluster", "leader", "--timeout", "0s"], &["--timeout", "longer than zero"]),
            (&["cluster", "leader", "--timeout", "5"], &["--timeout", "unit"]),
            (&["job", "wait", "j1", "--poll-interval", "49ms"], &["--poll-interval", "at least 50ms"]),
            (&["job", "wait", "j1", "--wait-timeout", "0s"], &["--wait-timeout", "longer than zero"]),
            (&["job", "wait", "j1", "--wait-timeout", "soon"], &["--wait-timeout"]),
            (&["job", "wait"], &["<ID>"]),
            (&["job", "wait", "a b"], &["<ID>", "job id"]),
        ];
        for (args, words) in table {
            let e = parse(args).expect_err(&format!("{args:?} must be refused"));
            for word in *words {
                assert!(e.contains(word), "{args:?}: {word:?} not in {e}");
            }
        }
    }

    #[test]
    fn wait_flags_belong_to_create_with_wait_and_to_wait() {
        let create = ["job", "create", "--type", "fake", "--config", "{}"];
        let with = |extra: &[&'static str]| parse(&[&create[..], extra].concat());
        let options = |cli: TestCli| match cli.command {
            TestCommand::Job(JobCommand::Create(args)) => args.wait_options(),
            TestCommand::Job(JobCommand::Wait(args)) => Some(args.wait_options()),
            other => panic!("neither create nor wait: {other:?}"),
        };
        let ms = Duration::from_millis;
        // (arguments after `job create ...`, how it waits)
        let table: &[(&[&str], Option<wait::WaitOptions>)] = &[
            (&[], None),
            (&["--wait"], Some(wait::WaitOptions { poll_interval: ms(500), timeout: None })),
            (
                &["--wait", "--poll-interval", "50ms", "--wait-timeout", "2m"],
                Some(wait::WaitOptions { poll_interval: ms(50), timeout: Some(Duration::from_secs(120)) }),
            ),
        ];
        for (extra, want) in table {
            assert_eq!(options(with(extra).unwrap()), *want, "{extra:?}");
        }
        let cli = parse(&["job", "wait", "j1"]).unwrap();
        assert_eq!(options(cli), Some(wait::WaitOptions { poll_interval: ms(500), timeout: None }));
        let cli = parse(&["job", "wait", "j1", "--wait-timeout", "1m30s", "--poll-interval", "2s", "--output", "json"])
            .unwrap();
        assert_eq!(cli.flags.output, OutputFormat::Json);
        assert_eq!(
            options(cli),
            Some(wait::WaitOptions { poll_interval: Duration::from_secs(2), timeout: Some(Duration::from_secs(90)) })
        );
        // Refused: the waiting flags without --wait, and --wait where there is nothing to wait for (or already is).
        // (arguments, words the error must contain)
        let refused: &[(Vec<&str>, &[&str])] = &[
            ([&create[..], &["--poll-interval", "1s"]].concat(), &["--wait"]),
            ([&create[..], &["--wait-timeout", "1m"]].concat(), &["--wait"]),
            ([&create[..], &["--wait", "--poll-interval", "1ms"]].concat(), &["--poll-interval", "at least 50ms"]),
            (vec!["job", "get", "j1", "--wait"], &["--wait"]),
            (vec!["job", "cancel", "j1", "--wait"], &["--wait"]),
            (vec!["job", "list", "--wait-timeout", "1s"], &["--wait-timeout"]),
            (vec!["job", "wait", "j1", "--wait"], &["--wait"]),
            (vec!["cluster", "leader", "--poll-interval", "1s"], &["--poll-interval"]),
        ];
        for (args, words) in refused {
            let e = parse(args).expect_err(&format!("{args:?} must be refused"));
            for word in *words {
                assert!(e.contains(word), "{args:?}: {word:?} not in {e}");
            }
        }
    }

    #[test]
    fn create_keeps_the_config_text_and_parses_selectors() {
        let cli = parse(&[
            "job",
            "create",
            "--type",
            "fake",
            "--config",
            "{\"b\": 1, \"a\": 2}",
            "--id",
            "j-1",
            "--selector",
            "zone=east",
            "--selector",
            "disk!=hdd",
            "--selector",
            "rack~^r1",
            "--cost",
            "3",
        ])
        .unwrap();
        let TestCommand::Job(JobCommand::Create(args)) = cli.command else { panic!("not a create: {cli:?}") };
        assert_eq!(args.config.as_str(), "{\"b\": 1, \"a\": 2}");
        assert_eq!(args.id.unwrap().as_str(), "j-1");
        let wire: Vec<pb::Selector> = args.selectors.iter().map(crate::rpc::selector_to_wire).collect();
        let ops: Vec<i32> = wire.iter().map(|s| s.op).collect();
        assert_eq!(ops, [pb::SelectorOp::Eq as i32, pb::SelectorOp::Neq as i32, pb::SelectorOp::Regex as i32]);
        assert_eq!(wire[2].target, "^r1");
        assert_eq!(args.cost, Some(3));
    }

    #[test]
    fn config_from_a_file_and_its_errors() {
        let dir = std::env::temp_dir().join(format!("foreman-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.json");
        std::fs::write(&good, "{\n  \"workers\": 2\n}\n").unwrap();
        assert_eq!(JobConfig::parse(&format!("@{}", good.display())).unwrap().as_str(), "{\n  \"workers\": 2\n}\n");
        let bad = dir.join("bad.json");
        std::fs::write(&bad, "{\n  \"workers\": 2,\n}\n").unwrap();
        let e = JobConfig::parse(&format!("@{}", bad.display())).unwrap_err();
        assert!(e.contains("line 3, column 1") && e.contains("bad.json"), "{e}");
        let e = JobConfig::parse(&format!("@{}", dir.join("missing.json").display())).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn exit_codes() {
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        let refused =
            CliError::Refused { address: "a:1".into(), message: "no job".into(), reason: "JOB_NOT_FOUND".into() };
        assert_eq!(refused.exit_code(), 1);
        assert_eq!(refused.to_string(), "no job (JOB_NOT_FOUND)");
        assert_eq!(CliError::NoMaster { attempts: vec![] }.exit_code(), 1);
        // How a wait ends: each outcome its own code, none shared with the codes above.
        let failed = CliError::JobFailed { id: "j1".into(), reason: "R".into(), message: "m".into() };
        assert_eq!(failed.exit_code(), EXIT_JOB_FAILED);
        assert_eq!(CliError::JobCanceled { id: "j1".into() }.exit_code(), EXIT_JOB_CANCELED);
        let timed_out = CliError::WaitTimedOut { id: "j1".into(), waited: Duration::from_secs(1), last: None };
        assert_eq!(timed_out.exit_code(), EXIT_WAIT_TIMED_OUT);
        assert_eq!([EXIT_USAGE, EXIT_JOB_FAILED, EXIT_JOB_CANCELED, EXIT_WAIT_TIMED_OUT], [2, 3, 4, 5]);
    }

    #[test]
    fn no_master_messages_name_every_address() {
        // The default master, down: the words of issue 6.
        let default = MasterAddress::parse(DEFAULT_MASTER).unwrap();
        let down = CliError::NoMaster {
            attempts: vec![Attempt { address: default, failure: AttemptFailure::Connect("connection refused".into()) }],
        };
        assert_eq!(
            down.to_string(),
            "no master reachable at 127.0.0.1:10240: is `foreman master` running?\n  127.0.0.1:10240: connection refused"
        );
        let a = MasterAddress::parse("a:1").unwrap();
        let b = MasterAddress::parse("b:2").unwrap();
        let unreachable = CliError::NoMaster {
            attempts: vec![
                Attempt { address: a.clone(), failure: AttemptFailure::Connect("connection refused".into()) },
                Attempt { address: b.clone(), failure: AttemptFailure::Connect("could not connect within 5s".into()) },
            ],
        };
        assert_eq!(
            unreachable.to_string(),
            "no master reachable at a:1, b:2: is `foreman master` running?\n  a:1: connection refused\n  b:2: could \
             not connect within 5s"
        );
        let busy = CliError::NoMaster {
            attempts: vec![
                Attempt { address: a, failure: AttemptFailure::Connect("connection refused".into()) },
                Attempt {
                    address: b,
                    failure: AttemptFailure::Unavailable { message: "no leader".into(), reason: "NO_LEADER".into() },
                },
            ],
        };
        assert_eq!(
            busy.to_string(),
            "no master could serve the call (tried a:1, b:2)\n  a:1: connection refused\n  b:2: no leader (NO_LEADER)"
        );
    }
}
