//! `foreman job logs`: what the processes of a job's workers printed (the exec job type's commands), read through
//! the masters from the executors that hold it (`JobManager.JobLogs`). One worker's output as it is; several
//! workers' each under a header (`==> w0 (incarnation 3 on executor-1: exited with code 0) <==`), as `tail` does
//! for several files. With `--follow`, new output as it comes, a new incarnation under a new header, until the job
//! has ended and everything it printed was shown. With `--output json`, one JSON object a line per piece of output
//! instead ([`LogPiece`]: the worker, its incarnation and executor, how its command ended, the stream, where the
//! piece starts and its text, bytes that are not UTF-8 replaced by U+FFFD), headers left out.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use super::client::{Client, Resend};
use super::CliError;
use crate::core::ids::JobId;
use crate::rpc::pb;
use crate::rpc::pb::job_manager_client::JobManagerClient;

/// The most bytes asked for at once.
const CHUNK: u64 = 1 << 20;

/// What to show.
#[derive(Clone, Debug)]
pub struct LogsAsk {
    pub id: JobId,
    pub worker: Option<String>,
    pub stderr: bool,
    pub follow: bool,
    pub poll_interval: Duration,
    /// JSON Lines ([`LogPiece`]) instead of the text.
    pub json: bool,
}

/// One piece of a worker's output, as `--output json` prints it (one a line).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LogPiece {
    pub worker: String,
    pub epoch: u64,
    pub executor: String,
    /// How its command ended (`null` while it runs or when not known).
    pub exit: Option<String>,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// Where in the stream the piece starts (bytes; a cap that dropped older output does not move it back).
    pub offset: u64,
    pub text: String,
}

/// The newest incarnation of a worker the index names, and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Newest {
    epoch: u64,
    executor: String,
    exit: String,
}

/// The workers in their natural order (`w2` before `w10`), each with its newest incarnation held, as the masters
/// choose it ([`crate::rpc::logs::shown`]).
fn newest(sources: &[pb::LogSource], only: Option<&str>) -> Vec<(String, Newest)> {
    crate::rpc::logs::shown(sources, only, 0)
        .into_iter()
        .filter_map(|s| {
            let i = s.incarnation.as_ref()?;
            Some((i.worker.clone(), Newest { epoch: i.epoch, executor: s.executor_name.clone(), exit: i.exit.clone() }))
        })
        .collect()
}

fn header(worker: &str, n: &Newest) -> String {
    let how = if n.exit.is_empty() { "running".to_owned() } else { n.exit.clone() };
    format!("==> {worker} (incarnation {} on {}: {how}) <==\n", n.epoch, n.executor)
}

/// Prints the logs `ask` names on stdout (notes on stderr).
pub async fn show(client: &mut Client, ask: &LogsAsk) -> Result<(), CliError> {
    let stream = if ask.stderr { pb::LogStream::Stderr } else { pb::LogStream::Stdout } as i32;
    // Per worker: the incarnation shown and how far.
    let mut at: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut shown_header: Option<(String, u64)> = None;
    let mut noted: Vec<String> = vec![];
    let mut ended = false;
    loop {
        let index = pb::JobLogsRequest { id: ask.id.to_string(), stream, ..Default::default() };
        let index = client
            .call(&Resend::Safe, index, |ch, req| async move { JobManagerClient::new(ch).job_logs(req).await })
            .await?;
        note(&mut noted, &index.note);
        let workers = newest(&index.sources, ask.worker.as_deref());
        if workers.is_empty() && !ask.follow {
            let whose = ask.worker.as_deref().map_or(String::new(), |w| format!(" of worker {w}"));
            note(
                &mut noted,
                &format!(
                    "no logs{whose} of job {} are held by an online executor (its commands printed nothing yet, or \
                     their executors are offline or collected them)",
                    ask.id
                ),
            );
        }
        let several = workers.len() > 1 || ask.follow && ask.worker.is_none();
        let mut printed = false;
        for (worker, n) in &workers {
            let pos = at.entry(worker.clone()).or_insert((n.epoch, 0));
            if pos.0 != n.epoch {
                *pos = (n.epoch, 0);
            }
            loop {
                let req = pb::JobLogsRequest {
                    id: ask.id.to_string(),
                    worker: worker.clone(),
                    epoch: n.epoch,
                    stream,
                    offset: pos.1,
                    max_bytes: CHUNK,
                };
                let r = client
                    .call(&Resend::Safe, req, |ch, req| async move { JobManagerClient::new(ch).job_logs(req).await })
                    .await?;
                note(&mut noted, &r.note);
                let Some(c) = r.chunk else { break };
                let first = pos.1 == 0 && shown_header.as_ref() != Some(&(worker.clone(), n.epoch));
                if c.data.is_empty() && !(first && several) {
                    break;
                }
                if c.dropped > 0 {
                    note(
                        &mut noted,
                        &format!("{worker}: the first {} bytes were dropped by the executor's cap", c.dropped),
                    );
                }
                if ask.json {
                    if !c.data.is_empty() {
                        let piece = LogPiece {
                            worker: worker.clone(),
                            epoch: n.epoch,
                            executor: n.executor.clone(),
                            exit: (!n.exit.is_empty()).then(|| n.exit.clone()),
                            stream: if ask.stderr { "stderr" } else { "stdout" },
                            offset: c.start,
                            text: String::from_utf8_lossy(&c.data).into_owned(),
                        };
                        let line = serde_json::to_string(&piece).unwrap_or_default() + "\n";
                        write_out(line.as_bytes())?;
                    }
                    shown_header = Some((worker.clone(), n.epoch));
                } else {
                    let mut out = String::new();
                    if several && shown_header.as_ref() != Some(&(worker.clone(), n.epoch)) {
                        if shown_header.is_some() {
                            out.push('\n');
                        }
                        out.push_str(&header(worker, n));
                        shown_header = Some((worker.clone(), n.epoch));
                    }
                    write_out(out.as_bytes())?;
                    write_out(&c.data)?;
                }
                printed |= !c.data.is_empty();
                pos.1 = c.start + c.data.len() as u64;
                if c.data.is_empty() || pos.1 >= c.total {
                    break;
                }
            }
        }
        if !ask.follow || (ended && !printed) {
            return Ok(());
        }
        // One more round after the job ended: what it printed last is shown.
        if !ended {
            let get = pb::GetJobRequest { id: ask.id.to_string(), include_config: false };
            let job = client
                .call(&Resend::Safe, get, |ch, req| async move { JobManagerClient::new(ch).get_job(req).await })
                .await?;
            ended = super::wait::is_terminal(job.state);
        }
        tokio::time::sleep(ask.poll_interval).await;
    }
}

/// A note on stderr, once.
fn note(noted: &mut Vec<String>, text: &str) {
    if text.is_empty() || noted.iter().any(|n| n == text) {
        return;
    }
    noted.push(text.to_owned());
    let _ = writeln!(std::io::stderr().lock(), "note: {text}");
}

fn write_out(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::Output(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(worker: &str, epoch: u64, executor: &str) -> pb::LogSource {
        pb::LogSource {
            incarnation: Some(pb::LogIncarnation { worker: worker.into(), epoch, ..Default::default() }),
            executor_id: 1,
            executor_name: executor.into(),
        }
    }

    #[test]
    fn each_worker_shows_its_newest_incarnation_in_natural_order() {
        let s = [source("w10", 1, "e1"), source("w2", 3, "e1"), source("w2", 5, "e2"), source("w2", 4, "e3")];
        let n = newest(&s, None);
        let order: Vec<(&str, u64, &str)> = n.iter().map(|(w, n)| (w.as_str(), n.epoch, n.executor.as_str())).collect();
        assert_eq!(order, [("w2", 5, "e2"), ("w10", 1, "e1")]);
        assert_eq!(newest(&s, Some("w10")).len(), 1);
        assert_eq!(header("w2", &n[0].1), "==> w2 (incarnation 5 on e2: running) <==\n");
    }
}
