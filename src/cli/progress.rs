//! What `foreman job create --wait` and `foreman job wait` show on stderr while they wait.
//!
//! Pure: [`ProgressView`] takes what each poll saw and the time since the wait began, and returns the bytes to
//! write, so both renderings are unit tested:
//! - on a terminal ([`Rendering::Terminal`]), a line that stays for each new phase (a job state, a run of retries),
//!   the last one included, and between them one line redrawn in place at every poll: the elapsed time, the state,
//!   a bar when the progress text begins with `N/M` ([`leading_ratio`]), then the text;
//! - elsewhere (pipes, CI logs, `--output json`), one line per change: the lines a terminal keeps, and more.
//!
//! Invariants: text from the server (states, progress, error details) is escaped ([`sanitize`]) and bounded
//! ([`PROGRESS_CHARS_MAX`]) before it is shown, so a job cannot move the cursor or flood the terminal; the redrawn
//! line never takes more than the terminal's width less one column ([`fit`]), so it never wraps and a carriage
//! return always gets back to its start.

use std::ffi::OsStr;
use std::time::Duration;

use super::output::{job_state_name, sanitize};
use super::OutputFormat;
use crate::rpc::pb;

/// The most characters of a job's progress text shown; the rest is cut and marked with `...`.
pub const PROGRESS_CHARS_MAX: usize = 200;
/// The terminal's width when `COLUMNS` does not say: terminals are at least 80 columns wide.
pub const TERMINAL_COLUMNS_DEFAULT: usize = 80;
/// The cells of the progress bar, between its brackets.
pub const BAR_CELLS: usize = 20;

/// What one poll saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sighting {
    /// The job, by its state's name (as `job get` prints it) and its progress text (empty when unknown).
    Job { state: String, progress: String },
    /// No master could serve the call (the error's text, on one line); the wait goes on.
    NoMaster { detail: String },
}

impl Sighting {
    /// The job's state and its progress text, or while it waits for a placement, why.
    pub fn of_job(job: &pb::Job) -> Sighting {
        let progress = if job.progress.is_empty() && !job.waiting.is_empty() {
            format!("waiting: {}", job.waiting)
        } else {
            job.progress.clone()
        };
        Sighting::Job { state: job_state_name(job.state), progress }
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
    /// A terminal `columns` wide: a line redrawn in place at every poll (the elapsed time moves even when nothing
    /// else does), with a bar when the progress is measurable; a line that stays at each change of state, at the
    /// first of a run of retries, and at the end.
    Terminal { columns: usize },
    /// Pipes, logs and `--output json`: one line per change of what the polls see.
    Lines,
}

impl Rendering {
    /// [`Rendering::Terminal`] when stderr is a terminal that understands escape sequences (`TERM` is not `dumb`)
    /// and the output is for people; [`Rendering::Lines`] otherwise. `term` and `columns` are the values of the
    /// `TERM` and `COLUMNS` environment variables.
    pub fn choose(
        stderr_is_terminal: bool,
        output: OutputFormat,
        term: Option<&OsStr>,
        columns: Option<&OsStr>,
    ) -> Rendering {
        let dumb = term.is_some_and(|t| t == "dumb");
        if stderr_is_terminal && !dumb && output == OutputFormat::Table {
            Rendering::Terminal { columns: terminal_columns(columns) }
        } else {
            Rendering::Lines
        }
    }
}

/// The terminal's width: `COLUMNS` when it is a whole number above zero, else [`TERMINAL_COLUMNS_DEFAULT`].
pub fn terminal_columns(columns: Option<&OsStr>) -> usize {
    columns
        .and_then(OsStr::to_str)
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|&c| c > 0)
        .unwrap_or(TERMINAL_COLUMNS_DEFAULT)
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
        let changed = self.last.as_ref() != Some(&sighting);
        let new_phase = self.last.as_ref().is_none_or(|last| !same_phase(last, &sighting));
        let line = status_line(elapsed, &sighting);
        let text = match self.rendering {
            Rendering::Lines => changed.then(|| format!("{line}\n")),
            Rendering::Terminal { .. } if new_phase => {
                // Over the redrawn line (erased first: a line as wide as the terminal would lose its last character
                // to an erase after it), a line that stays, as a log shows it.
                self.open = false;
                Some(format!("\r\x1b[K{line}\n"))
            }
            Rendering::Terminal { columns } => {
                self.open = true;
                // Back to the line's start, the new text, then erase what is left of a longer previous one.
                Some(format!("\r{}\x1b[K", live_line(elapsed, &sighting, columns)))
            }
        };
        self.last = Some(sighting);
        text
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

/// Whether two sightings are in the same phase: the same job state, or both retries. A new phase gets a line that
/// stays on a terminal.
fn same_phase(a: &Sighting, b: &Sighting) -> bool {
    match (a, b) {
        (Sighting::Job { state: a, .. }, Sighting::Job { state: b, .. }) => a == b,
        (Sighting::NoMaster { .. }, Sighting::NoMaster { .. }) => true,
        _ => false,
    }
}

/// The line redrawn on a terminal `columns` wide: `[  1.5s] RUNNING [####----------------]  21% 170/800 steps`
/// when the progress is measurable and the bar fits, else the status line; cut to fit one row.
pub fn live_line(elapsed: Duration, sighting: &Sighting, columns: usize) -> String {
    // One column spare: a line that reaches the terminal's last column may wrap, and a wrapped line cannot be
    // redrawn with a carriage return.
    let room = columns.saturating_sub(1);
    let line = match sighting {
        Sighting::Job { state, progress } => match measurable(progress) {
            Some((done, total)) => {
                let head = format!(
                    "[{:>5.1}s] {} {}",
                    elapsed.as_secs_f64(),
                    sanitize(&state.to_uppercase()),
                    bar(done, total)
                );
                if display_columns(&head) <= room {
                    format!("{head} {}", bounded(&sanitize(progress.trim()), PROGRESS_CHARS_MAX))
                } else {
                    status_line(elapsed, sighting)
                }
            }
            None => status_line(elapsed, sighting),
        },
        Sighting::NoMaster { .. } => status_line(elapsed, sighting),
    };
    fit(&line, room)
}

/// The `N/M` a progress text begins with (`170/800 steps, 0/4 workers done` → 170 of 800), if it has one.
/// Digits are ASCII only; numbers past `u64` do not count.
pub fn leading_ratio(progress: &str) -> Option<(u64, u64)> {
    let (done, rest) = leading_number(progress.trim_start())?;
    let (total, _) = leading_number(rest.strip_prefix('/')?)?;
    Some((done, total))
}

/// The ratio a bar can be drawn from: a leading `N/M` with `M` above zero (`0/0` measures nothing).
fn measurable(progress: &str) -> Option<(u64, u64)> {
    leading_ratio(progress).filter(|&(_, total)| total > 0)
}

/// The number `text` begins with, and the rest.
fn leading_number(text: &str) -> Option<(u64, &str)> {
    let end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let number = text[..end].parse().ok()?;
    Some((number, &text[end..]))
}

/// `[#####---------------]  25%`: `done` of `total` (above zero), rounded down so that the bar is full and shows
/// 100% only when the job is done; more done than the total counts as done.
pub fn bar(done: u64, total: u64) -> String {
    let done = u128::from(done.min(total));
    let total = u128::from(total.max(1));
    let filled = usize::try_from(done * BAR_CELLS as u128 / total).unwrap_or(BAR_CELLS).min(BAR_CELLS);
    let percent = done * 100 / total;
    format!("[{}{}] {percent:>3}%", "#".repeat(filled), "-".repeat(BAR_CELLS - filled))
}

/// The columns `text` takes at most on a terminal: one per ASCII character, two for any other (wide characters
/// take two; counting every other character as wide only ever overestimates, so a line fitted with it never wraps).
/// Control characters must have been escaped ([`sanitize`]).
pub fn display_columns(text: &str) -> usize {
    text.chars().map(char_columns).sum()
}

fn char_columns(c: char) -> usize {
    if c.is_ascii() {
        1
    } else {
        2
    }
}

/// `text` cut to take at most `columns` ([`display_columns`]), the cut marked with `...` when there is room for it.
pub fn fit(text: &str, columns: usize) -> String {
    if display_columns(text) <= columns {
        return text.to_owned();
    }
    let marker = if columns >= 4 { "..." } else { "" };
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        if used + char_columns(c) > columns - marker.len() {
            break;
        }
        used += char_columns(c);
        out.push(c);
    }
    if !marker.is_empty() {
        // `steps...`, not `steps ...`: the marker belongs to the word it cuts.
        out.truncate(out.trim_end().len());
        out.push_str(marker);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A sighting of the job in `state` with `progress` (also used by `wait`'s tests).
    pub(crate) fn job(state: &str, progress: &str) -> Sighting {
        Sighting::Job { state: state.to_owned(), progress: progress.to_owned() }
    }

    pub(crate) fn secs(s: f64) -> Duration {
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
    fn a_job_waiting_for_a_placement_shows_why_until_it_reports_progress() {
        let mut wire = pb::Job { state: pb::JobState::Created as i32, ..Default::default() };
        wire.waiting = "no executor has 17 slots".into();
        assert_eq!(Sighting::of_job(&wire).text(), "CREATED waiting: no executor has 17 slots");
        wire.progress = "3/8 steps".into();
        assert_eq!(Sighting::of_job(&wire).text(), "CREATED 3/8 steps");
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

    const RUNNING_21: &str = "[  1.5s] RUNNING [####----------------]  21% 170/800 steps, 0/4 workers done";

    #[test]
    fn terminal_rendering_keeps_a_line_per_phase_and_redraws_between() {
        let mut view = ProgressView::new(Rendering::Terminal { columns: 80 });
        assert_eq!(view.finish(), None, "nothing drawn, nothing to end");
        let no_leader = || Sighting::NoMaster { detail: "no leader".into() };
        // (elapsed, sighting, what is written)
        let steps = [
            (0.0, job("created", ""), "\r\x1b[K[  0.0s] CREATED\n"),
            // Unchanged, but the elapsed time moves on.
            (0.5, job("created", ""), "\r[  0.5s] CREATED\x1b[K"),
            (1.0, job("running", "0/800 steps"), "\r\x1b[K[  1.0s] RUNNING 0/800 steps\n"),
            (1.5, job("running", "170/800 steps, 0/4 workers done"), &format!("\r{RUNNING_21}\x1b[K")),
            (1.7, job("running", "who knows"), "\r[  1.7s] RUNNING who knows\x1b[K"),
            (2.0, no_leader(), "\r\x1b[K[  2.0s] retrying: no leader\n"),
            (2.5, no_leader(), "\r[  2.5s] retrying: no leader\x1b[K"),
            (3.0, job("running", "400/800 steps"), "\r\x1b[K[  3.0s] RUNNING 400/800 steps\n"),
            (
                3.5,
                job("running", "799/800 steps"),
                "\r[  3.5s] RUNNING [###################-]  99% 799/800 steps\x1b[K",
            ),
            (4.0, job("finished", "800/800 steps"), "\r\x1b[K[  4.0s] FINISHED 800/800 steps\n"),
        ];
        for (elapsed, sighting, want) in steps {
            assert_eq!(
                view.on_sighting(secs(elapsed), sighting.clone()).as_deref(),
                Some(want),
                "{elapsed}: {sighting:?}"
            );
        }
        assert_eq!(view.last(), Some(&job("finished", "800/800 steps")));
        assert_eq!(view.finish(), None, "the last line stays already");
        // A wait that ends mid-phase (--wait-timeout, a refusal) keeps the redrawn line, ended once.
        assert_eq!(view.on_sighting(secs(5.0), job("finished", "")).as_deref(), Some("\r[  5.0s] FINISHED\x1b[K"));
        assert_eq!(view.finish().as_deref(), Some("\n"));
        assert_eq!(view.finish(), None);
    }

    #[test]
    fn leading_ratios() {
        // (progress text, the ratio it begins with, whether a bar is drawn)
        let table = [
            ("170/800 steps, 0/4 workers done", Some((170, 800)), true),
            ("  3/10", Some((3, 10)), true),
            ("3/10/2024", Some((3, 10)), true),
            ("900/800 steps", Some((900, 800)), true),
            ("0/0 steps", Some((0, 0)), false),
            ("5/0", Some((5, 0)), false),
            ("", None, false),
            ("steps 3/10", None, false),
            ("3/", None, false),
            ("/10", None, false),
            ("-3/10", None, false),
            ("+3/10", None, false),
            ("3 / 10", None, false),
            ("3.5/10", None, false),
            ("99999999999999999999/1", None, false),
            ("1/99999999999999999999", None, false),
            ("\u{661}\u{662}/\u{663}", None, false),
            ("\u{ff11}/\u{ff12}", None, false),
            ("\u{fffd}3/10", None, false),
        ];
        for (progress, ratio, drawn) in table {
            assert_eq!(leading_ratio(progress), ratio, "{progress:?}");
            assert_eq!(measurable(progress).is_some(), drawn, "{progress:?}");
        }
        assert_eq!(leading_ratio("18446744073709551615/1"), Some((u64::MAX, 1)));
    }

    #[test]
    fn bars() {
        // (done, total, bar)
        let table = [
            (0, 800, "[--------------------]   0%"),
            (170, 800, "[####----------------]  21%"),
            (400, 800, "[##########----------]  50%"),
            (799, 800, "[###################-]  99%"),
            (800, 800, "[####################] 100%"),
            (900, 800, "[####################] 100%"),
            (1, 3, "[######--------------]  33%"),
            (1, u64::MAX, "[--------------------]   0%"),
            (u64::MAX - 1, u64::MAX, "[###################-]  99%"),
            (u64::MAX, u64::MAX, "[####################] 100%"),
            (u64::MAX, 1, "[####################] 100%"),
        ];
        for (done, total, want) in table {
            assert_eq!(bar(done, total), want, "{done}/{total}");
        }
    }

    #[test]
    fn live_lines_fit_the_terminal() {
        let running = job("running", "170/800 steps, 0/4 workers done");
        // (columns, line)
        let table = [
            (200, RUNNING_21),
            (80, RUNNING_21),
            (RUNNING_21.len() + 1, RUNNING_21),
            (RUNNING_21.len(), "[  1.5s] RUNNING [####----------------]  21% 170/800 steps, 0/4 workers..."),
            (48, "[  1.5s] RUNNING [####----------------]  21%..."),
            // Too narrow for the bar: the status line instead.
            (44, "[  1.5s] RUNNING 170/800 steps, 0/4 work..."),
            (5, "[..."),
            (4, "[  "),
            (1, ""),
            (0, ""),
        ];
        for (columns, want) in table {
            assert_eq!(live_line(secs(1.5), &running, columns), want, "{columns}");
        }
        // No measurable progress: the status line, without a bar or a spinner.
        for progress in ["", "0/0 steps", "warming up", "3 of 10"] {
            let line = live_line(secs(1.5), &job("running", progress), 80);
            assert_eq!(line, status_line(secs(1.5), &job("running", progress)), "{progress:?}");
        }
        let retry = Sighting::NoMaster { detail: "x".repeat(300) };
        assert_eq!(display_columns(&live_line(secs(1.5), &retry, 80)), 79);
    }

    #[test]
    fn odd_progress_text_never_escapes_or_wraps_the_line() {
        let texts = [
            "12/40 \x1b[2J\x1b[H cleared?".to_owned(),
            "5/10 a\rb\nc\td\u{7}\u{9b}31m".to_owned(),
            "5/10 \u{fffd}\u{fffd} lossy".to_owned(),
            "7/10 \u{4e2d}\u{6587}\u{6b65}\u{9aa4}".repeat(20),
            "7/10 e\u{301}\u{301}\u{301} combining".repeat(20),
            "\u{1f680}".repeat(300),
            "8/10 \u{200b}\u{202e}reversed".to_owned(),
        ];
        for text in &texts {
            for columns in [0, 1, 2, 3, 4, 5, 10, 20, 40, 44, 45, 60, 80, 81, 132, 300] {
                let line = live_line(secs(1.0), &job("running", text), columns);
                assert!(display_columns(&line) < columns.max(1), "{columns}: {line:?}");
                assert!(!line.chars().any(char::is_control), "{columns}: {line:?}");
            }
            let view =
                ProgressView::new(Rendering::Terminal { columns: 80 }).on_sighting(secs(1.0), job("running", text));
            let permanent = view.unwrap();
            let body = permanent.strip_prefix("\r\x1b[K").and_then(|l| l.strip_suffix('\n')).unwrap();
            assert!(!body.chars().any(char::is_control), "{body:?}");
        }
        assert_eq!(fit("\u{4e2d}\u{6587}ab", 6), "\u{4e2d}\u{6587}ab");
        assert_eq!(fit("\u{4e2d}\u{6587}abc", 6), "\u{4e2d}...");
        assert_eq!(fit("\u{4e2d}\u{6587}abc", 3), "\u{4e2d}");
        assert_eq!(fit("abc", 0), "");
    }

    #[test]
    fn rendering_is_chosen_from_the_terminal_and_the_output() {
        let os = |s: &'static str| Some(OsStr::new(s));
        let terminal = |columns| Rendering::Terminal { columns };
        // (stderr is a terminal, output, TERM, COLUMNS, rendering)
        let table = [
            (true, OutputFormat::Table, os("xterm-256color"), None, terminal(80)),
            (true, OutputFormat::Table, None, os("132"), terminal(132)),
            (true, OutputFormat::Table, os("xterm"), os("40"), terminal(40)),
            (true, OutputFormat::Json, os("xterm"), os("132"), Rendering::Lines),
            (true, OutputFormat::Table, os("dumb"), None, Rendering::Lines),
            (false, OutputFormat::Table, os("xterm"), os("132"), Rendering::Lines),
            (false, OutputFormat::Json, None, None, Rendering::Lines),
        ];
        for (is_terminal, output, term, columns, want) in table {
            assert_eq!(
                Rendering::choose(is_terminal, output, term, columns),
                want,
                "{is_terminal} {output:?} {term:?}"
            );
        }
        // (COLUMNS, width)
        let table = [(None, 80), (os("100"), 100), (os("1"), 1), (os("0"), 80), (os("-5"), 80), (os(""), 80)];
        let table2 = [(os(" 90"), 80), (os("90x"), 80), (os("1e3"), 80), (os("99999999999999999999999"), 80)];
        for (columns, want) in table.into_iter().chain(table2) {
            assert_eq!(terminal_columns(columns), want, "{columns:?}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            assert_eq!(terminal_columns(Some(OsStr::from_bytes(b"1\xff"))), 80);
        }
    }
}
