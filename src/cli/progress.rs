//! What `foreman job create --wait` and `foreman job wait` show on stderr while they wait.
//!
//! Pure: [`ProgressView`] takes what each poll saw and the time since the wait began, and returns the text to
//! write, so both renderings are unit tested: on a terminal one line redrawn in place, elsewhere (pipes, CI logs)
//! one line per change.
//!
//! Invariant: text from the server (states, progress, error details) is escaped ([`sanitize`]) and bounded
//! ([`PROGRESS_CHARS_MAX`]) before it is shown, so a job cannot move the cursor or flood the terminal.

use std::time::Duration;

use super::output::{job_state_name, sanitize};
use crate::rpc::pb;

/// The most characters of a job's progress text shown; the rest is cut and marked with `...`.
pub const PROGRESS_CHARS_MAX: usize = 200;
/// The most characters of the line redrawn on a terminal: a line that wraps cannot be redrawn with a carriage
/// return, and terminals are at least 80 columns wide.
pub const TERMINAL_LINE_CHARS_MAX: usize = 79;

/// What one poll saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sighting {
    /// The job, by its state's name (as `job get` prints it) and its progress text (empty when unknown).
    Job { state: String, progress: String },
    /// No master could serve the call (the error's text, on one line); the wait goes on.
    NoMaster { detail: String },
}

impl Sighting {
    pub fn of_job(job: &pb::Job) -> Sighting {
        Sighting::Job { state: job_state_name(job.state), progress: job.progress.clone() }
    }

    /// `RUNNING 412/800 steps`; `RUNNING` alone when the progress is unknown; `retrying: <why>` when no master
    /// could answer. Server text is escaped and bounded.
    pub fn text(&self) -> String {
        match self {
            Sighting::Job { state, progress } => {
                let state = sanitize(&state.to_uppercase());
                let progress = bounded(&sanitize(progress.trim()), PROGRESS_CHARS_MAX);
                if progress.is_empty() {
                    state
                } else {
                    format!("{state} {progress}")
                }
            }
            Sighting::NoMaster { detail } => format!("retrying: {}", bounded(&sanitize(detail), PROGRESS_CHARS_MAX)),
        }
    }
}

/// `[  3.5s] RUNNING 412/800 steps`: the time since the wait began, in seconds, then what the poll saw.
pub fn status_line(elapsed: Duration, sighting: &Sighting) -> String {
    format!("[{:>5.1}s] {}", elapsed.as_secs_f64(), sighting.text())
}

/// At most `max` characters of `text`, the cut marked with `...`.
pub(super) fn bounded(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(3)).collect();
    out.push_str("...");
    out
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rendering {
    /// A terminal: one line, redrawn in place at every poll (the elapsed time moves even when nothing else does).
    Redraw,
    /// Pipes and logs: one line per change of what the polls see.
    Lines,
}

impl Rendering {
    /// Redraw on a terminal, lines elsewhere.
    pub fn for_terminal(is_terminal: bool) -> Rendering {
        if is_terminal {
            Rendering::Redraw
        } else {
            Rendering::Lines
        }
    }
}

/// What to write to stderr as the polls come in. Pure: it only returns text.
#[derive(Clone, Debug)]
pub struct ProgressView {
    rendering: Rendering,
    last: Option<Sighting>,
    /// A redrawn line is on the terminal, not yet ended with a newline.
    open: bool,
}

impl ProgressView {
    pub fn new(rendering: Rendering) -> ProgressView {
        ProgressView { rendering, last: None, open: false }
    }

    /// The text for a poll's sighting `elapsed` after the wait began, if there is any to write.
    pub fn on_sighting(&mut self, elapsed: Duration, sighting: Sighting) -> Option<String> {
        let line = status_line(elapsed, &sighting);
        let changed = self.last.as_ref() != Some(&sighting);
        self.last = Some(sighting);
        match self.rendering {
            Rendering::Lines => changed.then(|| format!("{line}\n")),
            Rendering::Redraw => {
                self.open = true;
                // Back to the line's start, the new text, then erase what is left of a longer previous one.
                Some(format!("\r{}\x1b[K", bounded(&line, TERMINAL_LINE_CHARS_MAX)))
            }
        }
    }

    /// What ends the progress before anything else is written to the terminal: a newline after a redrawn line.
    pub fn finish(&mut self) -> Option<String> {
        std::mem::take(&mut self.open).then(|| "\n".to_owned())
    }

    /// What the last poll saw.
    pub fn last(&self) -> Option<&Sighting> {
        self.last.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: &str, progress: &str) -> Sighting {
        Sighting::Job { state: state.to_owned(), progress: progress.to_owned() }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn status_lines_table() {
        // (elapsed, sighting, line)
        let table = [
            (secs(0.0), job("created", ""), "[  0.0s] CREATED"),
            (secs(3.5), job("running", "412/800 steps"), "[  3.5s] RUNNING 412/800 steps"),
            (secs(3.5), job("running", "  padded  "), "[  3.5s] RUNNING padded"),
            (
                secs(61.04),
                job("finished", "800/800 steps, 4/4 workers done"),
                "[ 61.0s] FINISHED 800/800 steps, 4/4 workers done",
            ),
            (secs(12345.0), job("UNKNOWN(9)", ""), "[12345.0s] UNKNOWN(9)"),
            (secs(1.0), job("running", "a\nb\x1b[2J"), "[  1.0s] RUNNING a\\nb\\u{1b}[2J"),
            (
                secs(2.0),
                Sighting::NoMaster {
                    detail: "no master could serve the call (tried a:1); a:1: no leader (NO_LEADER)".into(),
                },
                "[  2.0s] retrying: no master could serve the call (tried a:1); a:1: no leader (NO_LEADER)",
            ),
        ];
        for (elapsed, sighting, line) in table {
            assert_eq!(status_line(elapsed, &sighting), line, "{sighting:?}");
        }
    }

    #[test]
    fn long_progress_is_cut() {
        let text = job("running", &"x".repeat(PROGRESS_CHARS_MAX + 50)).text();
        assert_eq!(text.chars().count(), "RUNNING ".len() + PROGRESS_CHARS_MAX);
        assert!(text.ends_with("x..."), "{text}");
        assert_eq!(bounded("abc", 3), "abc");
        assert_eq!(bounded("abcd", 3), "...");
        assert_eq!(bounded("abcdé", 4), "a...");
    }

    #[test]
    fn lines_rendering_writes_one_line_per_change() {
        let mut view = ProgressView::new(Rendering::Lines);
        // (elapsed, sighting, what is written)
        let steps = [
            (0.0, job("created", ""), Some("[  0.0s] CREATED\n")),
            (0.5, job("created", ""), None),
            (1.0, job("running", ""), Some("[  1.0s] RUNNING\n")),
            (1.5, job("running", "1/8"), Some("[  1.5s] RUNNING 1/8\n")),
            (2.0, job("running", "1/8"), None),
            (2.5, Sighting::NoMaster { detail: "no leader".into() }, Some("[  2.5s] retrying: no leader\n")),
            (3.0, Sighting::NoMaster { detail: "no leader".into() }, None),
            (3.5, job("running", "1/8"), Some("[  3.5s] RUNNING 1/8\n")),
            (4.0, job("finished", "8/8"), Some("[  4.0s] FINISHED 8/8\n")),
        ];
        for (elapsed, sighting, want) in steps {
            assert_eq!(view.on_sighting(secs(elapsed), sighting.clone()).as_deref(), want, "{elapsed}: {sighting:?}");
        }
        assert_eq!(view.last(), Some(&job("finished", "8/8")));
        // Every line already ended.
        assert_eq!(view.finish(), None);
    }

    #[test]
    fn redraw_rendering_rewrites_one_line_and_ends_it_once() {
        let mut view = ProgressView::new(Rendering::Redraw);
        assert_eq!(view.finish(), None, "nothing drawn, nothing to end");
        // (elapsed, sighting, what is written)
        let steps = [
            (0.0, job("created", ""), "\r[  0.0s] CREATED\x1b[K"),
            // Unchanged, but the elapsed time moves on.
            (0.5, job("created", ""), "\r[  0.5s] CREATED\x1b[K"),
            (1.0, job("running", "1/8"), "\r[  1.0s] RUNNING 1/8\x1b[K"),
        ];
        for (elapsed, sighting, want) in steps {
            assert_eq!(view.on_sighting(secs(elapsed), sighting).as_deref(), Some(want), "{elapsed}");
        }
        assert_eq!(view.finish().as_deref(), Some("\n"));
        assert_eq!(view.finish(), None);
        // A line never wraps, however long the progress.
        let long = view.on_sighting(secs(2.0), job("running", &"y".repeat(150))).unwrap();
        let visible = long.trim_start_matches('\r').trim_end_matches("\x1b[K");
        assert_eq!(visible.chars().count(), TERMINAL_LINE_CHARS_MAX);
        assert!(visible.starts_with("[  2.0s] RUNNING yyy") && visible.ends_with("y..."), "{visible}");
    }
}
