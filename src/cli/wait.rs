//! `foreman job create --wait` and `foreman job wait`: ask for a job every poll interval until it ends, showing
//! its progress on stderr.
//!
//! The poll loop ([`wait_for_job`]) only moves bytes and timers. What it shows is decided by
//! [`super::progress::ProgressView`], a pure state machine (the elapsed time and what a poll saw in, the text for
//! stderr out).
//!
//! Invariants: only an answer ends the wait early (the job ended, or a master refused the call, e.g. the job is
//! unknown); a poll that no master could serve (no leader during a failover, a master unreachable) is shown and
//! retried, and ends the wait only through `--wait-timeout`. While waiting only progress is written, to stderr;
//! the result goes to stdout afterwards, so scripts can parse stdout.

use std::io::Write;
use std::time::Duration;

use super::client::{Client, Resend};
use super::output::sanitize;
use super::progress::{bounded, ProgressView, Rendering, Sighting, PROGRESS_CHARS_MAX};
use super::CliError;
use crate::clock::Clock;
use crate::config::format_duration;
use crate::rpc::pb;
use crate::rpc::pb::job_manager_client::JobManagerClient;

/// `--poll-interval` when not given.
pub const POLL_INTERVAL_DEFAULT: &str = "500ms";
/// The shortest `--poll-interval`, so that a waiting client cannot keep the leader busy.
pub const POLL_INTERVAL_MIN: Duration = Duration::from_millis(50);

/// How to wait: from `--poll-interval` and `--wait-timeout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitOptions {
    pub poll_interval: Duration,
    /// `None`: wait until the job ends.
    pub timeout: Option<Duration>,
}

/// Whether a job in this state will never change again (a corrupt record changes only by its deletion).
pub fn is_terminal(state: i32) -> bool {
    matches!(
        pb::JobState::try_from(state),
        Ok(pb::JobState::Finished | pb::JobState::Canceled | pb::JobState::Failed | pb::JobState::Corrupt)
    )
}

/// How a job that ended ends the command: nothing for a finished job, otherwise the error that sets the exit code.
pub fn verdict(job: &pb::Job) -> Option<CliError> {
    let id = sanitize(&job.id);
    match pb::JobState::try_from(job.state) {
        Ok(pb::JobState::Failed) => {
            let error = job.error.clone().unwrap_or_default();
            Some(CliError::JobFailed { id, reason: sanitize(&error.reason), message: sanitize(&error.message) })
        }
        Ok(pb::JobState::Canceled) => Some(CliError::JobCanceled { id }),
        Ok(pb::JobState::Corrupt) => {
            let message = sanitize(&job.error.clone().unwrap_or_default().message);
            Some(CliError::JobCorrupt { id, message })
        }
        _ => None,
    }
}

/// Polls `GetJob` for job `id` until it ends (module documentation), writing progress to `progress_out`, and
/// returns the job as it ended. Errors: the master's refusal, or [`CliError::WaitTimedOut`].
pub async fn wait_for_job(
    client: &mut Client,
    id: &str,
    options: WaitOptions,
    rendering: Rendering,
    progress_out: &mut dyn Write,
) -> Result<pb::Job, CliError> {
    let clock = Clock::start();
    let elapsed = || Duration::from_millis(clock.now().as_millis());
    let mut view = ProgressView::new(rendering);
    // Progress is a courtesy: a stderr that cannot be written must not end the wait.
    let mut show = |text: Option<String>| {
        if let Some(text) = text {
            let _ = progress_out.write_all(text.as_bytes()).and_then(|()| progress_out.flush());
        }
    };
    let request = pb::GetJobRequest { id: id.to_owned(), include_config: false };
    loop {
        let poll = client.call(&Resend::Safe, request.clone(), |ch, req| async move {
            JobManagerClient::new(ch).get_job(req).await
        });
        // The wait's deadline bounds a poll too: a poll is a read, safe to abandon.
        let answer = match options.timeout {
            None => Some(poll.await),
            Some(timeout) => tokio::time::timeout(timeout.saturating_sub(elapsed()), poll).await.ok(),
        };
        match answer {
            Some(Ok(job)) => {
                show(view.on_sighting(elapsed(), Sighting::of_job(&job)));
                if is_terminal(job.state) {
                    show(view.finish());
                    return Ok(job);
                }
            }
            Some(Err(CliError::NoMaster { attempts })) => {
                // The report has a line per master tried; the progress line takes them all, `; ` apart.
                let report = CliError::NoMaster { attempts }.to_string();
                let detail = report.lines().map(str::trim).collect::<Vec<_>>().join("; ");
                show(view.on_sighting(elapsed(), Sighting::NoMaster { detail }));
            }
            Some(Err(refused)) => {
                show(view.finish());
                return Err(refused);
            }
            None => {}
        }
        let pause = match options.timeout {
            None => options.poll_interval,
            Some(timeout) => {
                let left = timeout.saturating_sub(elapsed());
                if left.is_zero() {
                    show(view.finish());
                    let last = view.last().cloned();
                    return Err(CliError::WaitTimedOut { id: sanitize(id), waited: timeout, last });
                }
                options.poll_interval.min(left)
            }
        };
        tokio::time::sleep(pause).await;
    }
}

/// The text of [`CliError::WaitTimedOut`]: what the last poll saw, and what to do next.
pub(super) fn timed_out_text(id: &str, waited: Duration, last: Option<&Sighting>) -> String {
    let head = format!("job {id} has not ended within {} (--wait-timeout)", format_duration(waited));
    match last {
        Some(job @ Sighting::Job { .. }) => format!(
            "{head}; last seen: {}. The job goes on: wait again with `foreman job wait {id}`, or stop it with \
             `foreman job cancel {id}`",
            job.text()
        ),
        Some(Sighting::NoMaster { detail }) => {
            format!("{head}; no master could serve the last poll: {}", bounded(&sanitize(detail), PROGRESS_CHARS_MAX))
        }
        None => format!("{head}; no poll was answered in time (see --timeout)"),
    }
}

/// The text of [`CliError::JobFailed`]: `job j1 failed: <message> (<REASON>)`, like a refusal.
pub(super) fn failed_text(id: &str, reason: &str, message: &str) -> String {
    match (reason.is_empty(), message.is_empty()) {
        (false, false) => format!("job {id} failed: {message} ({reason})"),
        (true, false) => format!("job {id} failed: {message}"),
        (false, true) => format!("job {id} failed ({reason})"),
        (true, true) => format!("job {id} failed; the leader gave no reason"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::progress::tests::{job, secs};

    #[test]
    fn terminal_states_and_verdicts() {
        // (state, terminal, exit code of the verdict; 0 for none)
        let table = [
            (pb::JobState::Unspecified as i32, false, 0),
            (pb::JobState::Created as i32, false, 0),
            (pb::JobState::Running as i32, false, 0),
            (pb::JobState::Canceling as i32, false, 0),
            (pb::JobState::Finished as i32, true, 0),
            (pb::JobState::Canceled as i32, true, 4),
            (pb::JobState::Failed as i32, true, 3),
            (pb::JobState::Corrupt as i32, true, 1),
            (42, false, 0),
        ];
        for (state, terminal, code) in table {
            assert_eq!(is_terminal(state), terminal, "{state}");
            let job = pb::Job { id: "j1".into(), state, ..Default::default() };
            assert_eq!(verdict(&job).map_or(0, |e| e.exit_code()), code, "{state}");
        }
    }

    #[test]
    fn failure_messages_say_what_the_leader_said() {
        let failed = |reason: &str, message: &str| {
            let job = pb::Job {
                id: "j1".into(),
                state: pb::JobState::Failed as i32,
                error: Some(pb::JobError { reason: reason.into(), message: message.into() }),
                ..Default::default()
            };
            verdict(&job).unwrap().to_string()
        };
        assert_eq!(failed("JOB_MASTER_FAILED", "disk full"), "job j1 failed: disk full (JOB_MASTER_FAILED)");
        assert_eq!(failed("", "disk full"), "job j1 failed: disk full");
        assert_eq!(failed("BACKOFF_EXHAUSTED", ""), "job j1 failed (BACKOFF_EXHAUSTED)");
        assert_eq!(failed("", ""), "job j1 failed; the leader gave no reason");
        assert_eq!(failed("X", "a\nb"), "job j1 failed: a\\nb (X)");
        let canceled = pb::Job { id: "j1".into(), state: pb::JobState::Canceled as i32, ..Default::default() };
        assert_eq!(verdict(&canceled).unwrap().to_string(), "job j1 was canceled");
        let timed_out = |last: Option<Sighting>| CliError::WaitTimedOut { id: "j1".into(), waited: secs(90.0), last };
        assert_eq!(timed_out(None).exit_code(), 5);
        // (what the last poll saw, the message)
        let table = [
            (
                Some(job("running", "3/8")),
                "job j1 has not ended within 1m30s (--wait-timeout); last seen: RUNNING 3/8. The job goes on: wait \
                 again with `foreman job wait j1`, or stop it with `foreman job cancel j1`",
            ),
            (
                Some(Sighting::NoMaster { detail: "no leader (NO_LEADER)".into() }),
                "job j1 has not ended within 1m30s (--wait-timeout); no master could serve the last poll: no leader \
                 (NO_LEADER)",
            ),
            (None, "job j1 has not ended within 1m30s (--wait-timeout); no poll was answered in time (see --timeout)"),
        ];
        for (last, text) in table {
            assert_eq!(timed_out(last).to_string(), text);
        }
    }
}
