//! A foreman binary of one's own: the built-in job types plus `checksum` (checksum.rs), with the server roles of
//! `foreman` (`standalone`, `master`, `executor`, their flags unchanged). Clients need no job type: submit with
//! any `foreman` binary, e.g.
//!
//! ```sh
//! cargo run --release --example checksum -- standalone --data-dir checksum-data
//! foreman job create --type checksum --config '{"workers":4,"items":1000000,"seed":7}' --wait
//! ```

mod checksum;

use std::process::ExitCode;

use clap::Parser;
use foreman::config::{ExecutorFlags, MasterFlags};
use foreman::framework::api::JobTypes;
use foreman::standalone::StandaloneFlags;

/// foreman with the `checksum` job type.
#[derive(Parser)]
enum Role {
    /// A master and executors in one process, over the embedded metastore.
    Standalone(StandaloneFlags),
    /// A master (etcd-backed): it accepts jobs of these types.
    Master(Box<MasterFlags>),
    /// An executor: it runs these types' job masters and workers.
    Executor(Box<ExecutorFlags>),
}

fn main() -> ExitCode {
    // First: its executors run exec commands under this binary as their shim (foreman::framework::process).
    if let Some(code) = foreman::framework::process::run_shim_if_asked() {
        return ExitCode::from(code);
    }
    let types: JobTypes = foreman::jobs::builtin().with(checksum::Checksum).expect("a job type of a new name");
    let role = Role::parse();
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new("info")).try_init();
    let runtime = tokio::runtime::Runtime::new().expect("an async runtime");
    let ended = runtime.block_on(async {
        match role {
            Role::Standalone(f) => {
                foreman::standalone::run_with(&f, &mut std::io::stdout(), types).await.err().map(|e| e.to_string())
            }
            Role::Master(f) => foreman::master::cmd::run_with(&f, types).await.err().map(|e| e.to_string()),
            Role::Executor(f) => foreman::executor::cmd::run_with(&f, types).await.err().map(|e| e.to_string()),
        }
    });
    match ended {
        None => ExitCode::SUCCESS,
        Some(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
