//! Child processes of a worker (the `exec` job type's commands): started through [`super::api::WorkerCtx::spawn`],
//! owned by the worker incarnation that started them, and never outliving it.
//!
//! - **Every process runs in a process group of its own**, under a shim: the foreman binary itself, run as
//!   `foreman __foreman-exec-shim <executor pid> -- <argv>` (see [`run_shim_if_asked`]). The shim asks the kernel
//!   for SIGHUP when its parent (the executor) dies, and then SIGKILLs its whole group, so a SIGKILLed executor
//!   leaves no command running, its command's children included. It runs the command as its child in the same
//!   group, ignores SIGTERM (which the group receives when the worker stops it gracefully: the command hears it)
//!   and exits with the command's status. The parent-death signal is the safe `prctl` wrapper of rustix: this crate
//!   forbids `unsafe`, so no `pre_exec` hook is possible, hence the shim. **Limit**: a command that leaves its
//!   process group (`setsid`, a daemon) escapes every group signal.
//! - **Dropping a [`Process`] SIGKILLs its group** at once, synchronously, and so does its executor as it stops
//!   the task (the task's stop hooks, [`super::task::StopHooks`], run before the stop is recorded): whatever ends the
//!   worker (its link told stale or fenced, the executor fencing itself, told to register again, shutting down) ends
//!   its command first. A graceful stop is the work's own, before it returns ([`Process::stop`]: SIGTERM to the
//!   group, a grace, SIGKILL).
//! - Each group is recorded as it starts (`<executor dir>/processes/`), and an executor starting kills
//!   what its last life left ([`sweep_left_behind`]).
//! - Its stdout is read as lines (each cut to [`LINE_MAX`] bytes, so a command cannot grow the executor's memory),
//!   and both its stdout and its stderr are kept, capped, in its executor's logs ([`super::logs`]), with how it
//!   ended.
//! - The simulation build runs a twin instead: a command is a script (`["sim", "run=…", …]`) run as a task of the
//!   executor's node (see `imp` there).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The hidden first argument that makes a foreman binary the shim of one command.
pub const SHIM_ARG: &str = "__foreman-exec-shim";
/// The longest stdout line kept whole, in bytes; the rest of a longer line is dropped.
pub const LINE_MAX: usize = 4096;

/// What to run: the program and its arguments, its whole environment (nothing else is inherited), its working
/// directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The shells' (and the shim's) codes for a program that could not be run.
            Exit::Code(126) => write!(f, "exited with code 126 (the program is not executable)"),
            Exit::Code(127) => {
                write!(f, "exited with code 127 (the program was not found: check the command and PATH)")
            }
            Exit::Code(c) => write!(f, "exited with code {c}"),
            Exit::Signal(s) => write!(f, "was killed by signal {s}"),
        }
    }
}

/// What a running process did next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessEvent {
    /// A line of its stdout (without the newline; invalid UTF-8 replaced).
    Line(String),
    /// It ended (its group may hold more: they go when the [`Process`] is dropped).
    Exited(Exit),
}

/// Splits a byte stream into lines of at most [`LINE_MAX`] bytes: the part of a longer line past the cap is
/// dropped up to its newline.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
    /// The current line is past the cap: drop bytes until its newline.
    skipping: bool,
}

impl LineSplitter {
    /// Takes `bytes`, returns the lines they complete.
    pub fn push(&mut self, mut bytes: &[u8]) -> Vec<String> {
        let mut out = vec![];
        while !bytes.is_empty() {
            let newline = bytes.iter().position(|b| *b == b'\n');
            let (part, rest, ends) = match newline {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            if !self.skipping {
                let room = LINE_MAX - self.buf.len();
                self.buf.extend_from_slice(&part[..part.len().min(room)]);
                if part.len() > room {
                    self.skipping = true;
                }
            }
            if ends {
                if self.skipping && self.buf.is_empty() {
                    // The end of a line already given, cut.
                    self.skipping = false;
                } else {
                    out.push(self.take());
                }
            } else if self.skipping && !self.buf.is_empty() {
                // A line past the cap: given now, its tail dropped as it comes.
                out.push(self.take());
                self.skipping = true;
            }
            bytes = rest;
        }
        out
    }

    /// What is left when the stream ends, as a last line.
    pub fn finish(&mut self) -> Option<String> {
        (!self.buf.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        self.skipping = false;
        let line = String::from_utf8_lossy(&self.buf).trim_end_matches('\r').to_owned();
        self.buf.clear();
        line
    }
}

/// The worker incarnation a process belongs to: its executor's environment (for its observations) and who it is.
#[derive(Clone)]
pub struct Owner {
    pub env: super::task::TaskEnv,
    pub task: crate::core::ids::TaskId,
    pub epoch: crate::core::ids::Epoch,
}

impl Owner {
    /// The writer of this incarnation's logs (none for a task that is not a worker, or when the store refuses).
    fn log(&self) -> Option<super::logs::LogWriter> {
        let (job, worker) = self.task.as_str().split_once('/')?;
        self.env
            .logs
            .writer(job, worker, self.epoch.0)
            .map_err(|e| tracing::warn!(task = %self.task, "its command's output is not kept: {e}"))
            .ok()
    }

    fn started(&self) {
        let (task, epoch) = (self.task.clone(), self.epoch);
        self.env.observe(super::task::ExecutorObservation::ProcessStarted { task, epoch });
    }

    fn ended(&self) {
        let (task, epoch) = (self.task.clone(), self.epoch);
        self.env.observe(super::task::ExecutorObservation::ProcessEnded { task, epoch });
    }
}

/// What kills a process, shared by the [`Process`] and its executor's stop hook (the executor kills a task's
/// processes as it stops the task, before it records the stop: [`super::task::StopHooks`]). Its end is observed
/// once, whoever sees it first.
#[derive(Clone)]
struct Kill {
    owner: Owner,
    ended: std::sync::Arc<std::sync::atomic::AtomicBool>,
    target: imp::Target,
}

impl Kill {
    fn new(owner: Owner, target: imp::Target) -> Kill {
        Kill { owner, ended: Default::default(), target }
    }

    /// SIGKILLs what is left of it (its group may outlive its exit), and records its end if not yet.
    fn kill(&self) {
        // The planted bug: the group is left running when its worker ends.
        if self.owner.env.planted(crate::core::planted::Planted::ExecLeftRunning) {
            return;
        }
        self.target.kill();
        self.end();
    }

    /// Records its end if not yet.
    fn end(&self) {
        if !self.ended.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.owner.ended();
        }
    }

    /// Makes the executor kill it as it stops its task; the hook's id.
    fn hook(&self) -> u64 {
        let k = self.clone();
        self.owner.env.stop_hooks.add(Box::new(move || k.kill()))
    }
}

/// A running command and its process group. Dropping it SIGKILLs the group.
pub struct Process {
    imp: imp::Process,
}

impl Process {
    /// The next line of its stdout, or its end. After the end, the end again.
    pub async fn event(&mut self) -> ProcessEvent {
        self.imp.event().await
    }

    /// Stops it: SIGTERM to its group, up to `grace` for the group to be gone, then SIGKILL; returns once the
    /// command was reaped.
    pub async fn stop(&mut self, grace: Duration) {
        self.imp.stop(grace).await;
    }
}

/// Starts `spec` for `owner` in a process group of its own, under the shim (the simulation: its twin).
pub fn spawn(spec: &ProcessSpec, owner: Owner) -> Result<Process, String> {
    if spec.argv.is_empty() {
        return Err("no program to run".to_owned());
    }
    Ok(Process { imp: imp::Process::spawn(spec, owner)? })
}

/// Kills what an earlier life of `executor` left running: every process of a group it recorded starting and never
/// saw end (its shim SIGKILLed with it, say, so the parent-death signal never reached the group). Called as an
/// executor starts, before it registers; what it killed, a line each (the simulation: nothing, its node's kill ends
/// its processes).
pub fn sweep_left_behind(dir: &Path) -> Vec<String> {
    imp::sweep(dir)
}

/// A worker's scratch directory on its executor: `<executor dir>/scratch/<job>/<worker>` (issue 16 step 4 collects
/// it with its job). The executor's directory must be its own: a directory another user made there first (or a
/// symbolic link) is refused, as it would let that user read or plant the commands' files.
pub fn scratch_dir(executor_dir: &Path, job: &str, worker: &str) -> Result<PathBuf, String> {
    let dir = executor_dir.join("scratch").join(job).join(worker);
    if cfg!(madsim) {
        // The twin runs no real command: its scratch directory is a name only.
        return Ok(dir);
    }
    imp::private_dir(executor_dir)?;
    crate::rpc::tls::create_private_dirs(&dir).map_err(|e| format!("the scratch directory: {e}"))?;
    Ok(dir)
}

/// The jobs with scratch directories in the executor's directory (none in the simulation, whose scratch
/// directories are names only).
pub fn scratch_jobs(executor_dir: &Path) -> Vec<String> {
    if cfg!(madsim) {
        return vec![];
    }
    std::fs::read_dir(executor_dir.join("scratch"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect()
}

/// Removes the scratch directories of `job`'s workers from the executor's directory.
pub fn remove_scratch(executor_dir: &Path, job: &str) -> Result<(), String> {
    if cfg!(madsim) || job.is_empty() || job.contains(['/', '\\']) || job == "." || job == ".." {
        return Ok(());
    }
    let dir = executor_dir.join("scratch").join(job);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", dir.display())),
    }
}

/// Makes `dir` owner-only, or checks the one there is this user's own, owner-only directory (not a link).
pub(crate) fn private_dir(dir: &std::path::Path) -> Result<(), String> {
    imp::private_dir(dir)
}

/// The variables of the executor's own environment a command inherits (nothing else of it: the executor's
/// environment may hold its secrets): where programs are, who it runs as, the locale and time zone.
pub fn inherited_env() -> Vec<(String, String)> {
    const KEPT: [&str; 6] = ["PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ"];
    let mut env: Vec<(String, String)> =
        KEPT.iter().filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v))).collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".to_owned(), "/usr/local/bin:/usr/bin:/bin".to_owned()));
    }
    env
}

/// Runs the shim when this process was started as one (its first argument is [`SHIM_ARG`]) and returns the exit
/// code `main` must return; `None` at once otherwise. Call it first in `main` of every binary that runs executors:
/// foreman's own does, and a binary of one's own job types must too (docs/job-types.md), or its exec workers fail
/// to start.
pub fn run_shim_if_asked() -> Option<u8> {
    imp::run_shim_if_asked()
}

#[cfg(not(madsim))]
mod imp {
    use std::ffi::OsString;
    use std::process::Stdio;
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use rustix::process::{Pid, Signal};
    use tokio::io::AsyncReadExt;

    use super::super::logs::{LogWriter, Stream};
    use super::{Exit, Kill, LineSplitter, Owner, ProcessEvent, ProcessSpec, SHIM_ARG};

    /// A process group to kill (none once it is known gone).
    #[derive(Clone, Default)]
    pub struct Target(Arc<AtomicI32>);

    impl Target {
        fn pgid(&self) -> Option<Pid> {
            Pid::from_raw(self.0.load(Ordering::SeqCst))
        }

        pub fn kill(&self) {
            if let Some(pgid) = self.pgid() {
                let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
            }
        }

        fn gone(&self) {
            self.0.store(0, Ordering::SeqCst);
        }
    }

    /// How often a graceful stop looks whether the group is gone.
    const STOP_POLL: Duration = Duration::from_millis(20);
    /// How long a stop waits for the shim to be reaped after the SIGKILL.
    const REAP_MAX: Duration = Duration::from_secs(2);

    pub struct Process {
        child: tokio::process::Child,
        stdout: Option<tokio::process::ChildStdout>,
        stderr: Option<tokio::process::ChildStderr>,
        log: Option<LogWriter>,
        lines: LineSplitter,
        pending: std::collections::VecDeque<String>,
        exited: Option<Exit>,
        kill: Kill,
        hook: u64,
        /// The record of its group, removed once the group is killed.
        record: Option<std::path::PathBuf>,
    }

    /// What an executor records of a process group it started, so that its next life can kill it if this one
    /// could not (`<executor dir>/processes/<pgid>.json`).
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Record {
        pgid: i32,
        /// The group leader's start time, in clock ticks since boot (`/proc/<pid>/stat`): a process of the group
        /// started before it is not of this group (its id was reused).
        start: u64,
        task: String,
        epoch: u64,
    }

    fn records_dir(base: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
        (base.to_path_buf(), base.join("processes"))
    }

    /// A process's group and start time, from `/proc/<pid>/stat`.
    fn stat(pid: i32) -> Option<(i32, u64)> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) is in parentheses and may hold anything: the fields after its last ')'.
        let rest = text.get(text.rfind(')')? + 1..)?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Field 3 is `state`: `pgrp` is field 5, `starttime` field 22.
        Some((fields.get(2)?.parse().ok()?, fields.get(19)?.parse().ok()?))
    }

    fn write_record(executor: &std::path::Path, record: &Record) -> Result<std::path::PathBuf, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let (base, dir) = records_dir(executor);
        private_dir(&base)?;
        private_dir(&dir)?;
        let path = dir.join(format!("{}.json", record.pgid));
        let text = serde_json::to_vec(record).map_err(|e| e.to_string())?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        std::io::Write::write_all(&mut f, &text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }

    pub fn sweep(executor: &std::path::Path) -> Vec<String> {
        let (base, dir) = records_dir(executor);
        let Ok(entries) = std::fs::read_dir(&dir) else { return vec![] };
        if let Err(e) = private_dir(&base) {
            return vec![format!("the process records were not read: {e}")];
        }
        // Every process now, with its group and start time.
        let all: Vec<(i32, i32, u64)> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter_map(|pid| stat(pid).map(|(pgrp, start)| (pid, pgrp, start)))
            .collect();
        let mut out = vec![];
        for entry in entries.flatten() {
            let path = entry.path();
            let record: Option<Record> = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
            if let Some(r) = record {
                let members: Vec<i32> =
                    all.iter().filter(|(_, g, s)| *g == r.pgid && *s >= r.start).map(|(pid, _, _)| *pid).collect();
                for pid in &members {
                    if let Some(p) = Pid::from_raw(*pid) {
                        let _ = rustix::process::kill_process(p, Signal::KILL);
                    }
                }
                if !members.is_empty() {
                    out.push(format!(
                        "killed {} process(es) of {} epoch {} left from this executor's last life (group {})",
                        members.len(),
                        r.task,
                        r.epoch,
                        r.pgid
                    ));
                }
            }
            let _ = std::fs::remove_file(&path);
        }
        out
    }

    fn exit_of(status: std::process::ExitStatus) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(s)) => Exit::Signal(s),
            (None, None) => Exit::Code(-1),
        }
    }

    impl Process {
        pub fn spawn(spec: &ProcessSpec, owner: Owner) -> Result<Process, String> {
            let exe =
                std::env::current_exe().map_err(|e| format!("cannot find the foreman binary for the shim: {e}"))?;
            let mut cmd = tokio::process::Command::new(exe);
            cmd.arg(SHIM_ARG).arg(std::process::id().to_string()).arg("--").args(&spec.argv);
            cmd.env_clear().envs(spec.env.iter().map(|(k, v)| (k, v)));
            cmd.current_dir(&spec.cwd);
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
            cmd.process_group(0);
            let mut child = cmd.spawn().map_err(|e| format!("cannot start the shim: {e}"))?;
            let pgid = child.id().and_then(|id| Pid::from_raw(i32::try_from(id).ok()?));
            let stdout = child.stdout.take();
            let stderr = child.stderr.take();
            let target = Target::default();
            if let Some(p) = pgid {
                target.0.store(p.as_raw_nonzero().get(), Ordering::SeqCst);
            }
            // Recorded before anything else may happen to it: a next life of this executor kills what it finds.
            let record = pgid.and_then(|p| {
                let pgid = p.as_raw_nonzero().get();
                let start = stat(pgid).map_or(0, |(_, s)| s);
                let r = Record { pgid, start, task: owner.task.to_string(), epoch: owner.epoch.0 };
                write_record(&owner.env.dir, &r)
                    .map_err(|e| tracing::warn!("process group {pgid} not recorded: {e}"))
                    .ok()
            });
            owner.started();
            let log = owner.log();
            let kill = Kill::new(owner, target);
            let hook = kill.hook();
            Ok(Process {
                child,
                stdout,
                stderr,
                log,
                lines: LineSplitter::default(),
                pending: Default::default(),
                exited: None,
                kill,
                hook,
                record,
            })
        }

        pub async fn event(&mut self) -> ProcessEvent {
            loop {
                if let Some(line) = self.pending.pop_front() {
                    return ProcessEvent::Line(line);
                }
                if let Some(e) = self.exited {
                    return ProcessEvent::Exited(e);
                }
                let (mut out, mut err) = ([0u8; 4096], [0u8; 4096]);
                let read_out = async {
                    match self.stdout.as_mut() {
                        Some(o) => o.read(&mut out).await,
                        None => std::future::pending().await,
                    }
                };
                let read_err = async {
                    match self.stderr.as_mut() {
                        Some(e) => e.read(&mut err).await,
                        None => std::future::pending().await,
                    }
                };
                // Output first: what the command printed before it ended is read before its end is seen.
                tokio::select! {
                    biased;
                    n = read_out => match n {
                        Ok(n) if n > 0 => self.take_out(&out[..n]),
                        _ => {
                            self.stdout = None;
                            self.pending.extend(self.lines.finish());
                        }
                    },
                    n = read_err => match n {
                        Ok(n) if n > 0 => self.write_log(Stream::Err, &err[..n]),
                        _ => self.stderr = None,
                    },
                    status = self.child.wait() => {
                        // Its output may hold more (a child of the command keeping a pipe open has it too): what
                        // was written is read once more without waiting, then the end.
                        let wait = Duration::from_millis(10);
                        if let Some(mut o) = self.stdout.take() {
                            let mut rest = vec![];
                            let _ = tokio::time::timeout(wait, o.read_to_end(&mut rest)).await;
                            self.take_out(&rest);
                            self.pending.extend(self.lines.finish());
                        }
                        if let Some(mut e) = self.stderr.take() {
                            let mut rest = vec![];
                            let _ = tokio::time::timeout(wait, e.read_to_end(&mut rest)).await;
                            self.write_log(Stream::Err, &rest);
                        }
                        self.ended(status.map_or(Exit::Code(-1), exit_of));
                        self.kill.end();
                    }
                }
            }
        }

        /// Bytes of its stdout: kept, and cut into lines.
        fn take_out(&mut self, bytes: &[u8]) {
            self.write_log(Stream::Out, bytes);
            self.pending.extend(self.lines.push(bytes));
        }

        fn write_log(&mut self, stream: Stream, bytes: &[u8]) {
            if let Some(log) = self.log.as_mut() {
                log.write(stream, bytes);
            }
        }

        /// It ended as `exit`: once, in its logs too.
        fn ended(&mut self, exit: Exit) {
            if self.exited.is_none() {
                if let Some(log) = self.log.as_mut() {
                    log.exit(&exit.to_string());
                }
            }
            self.exited.get_or_insert(exit);
        }

        pub async fn stop(&mut self, grace: Duration) {
            let Some(pgid) = self.kill.target.pgid() else { return };
            let _ = rustix::process::kill_process_group(pgid, Signal::TERM);
            let deadline = tokio::time::Instant::now() + grace;
            while tokio::time::Instant::now() < deadline {
                // Reaping the shim as it ends, or the group would hold its zombie for ever.
                let _ = self.child.try_wait();
                if rustix::process::test_kill_process_group(pgid).is_err() {
                    break;
                }
                tokio::time::sleep(STOP_POLL).await;
            }
            self.kill.kill();
            if let Ok(Ok(status)) = tokio::time::timeout(REAP_MAX, self.child.wait()).await {
                self.ended(exit_of(status));
            }
            // Reaped after the SIGKILL: the group is gone, and its id may be another's some day.
            self.kill.target.gone();
        }
    }

    impl Drop for Process {
        fn drop(&mut self) {
            self.kill.kill();
            self.ended(Exit::Signal(9));
            self.kill.owner.env.stop_hooks.remove(self.hook);
            // Killed (or left running by the planted bug, whose point is that nothing cleans it up).
            if let Some(r) = self.record.take() {
                let _ = std::fs::remove_file(r);
            }
        }
    }

    /// Makes `dir` (owner-only) or checks the one there: a directory, not a link, this user's, owner-only.
    pub fn private_dir(dir: &std::path::Path) -> Result<(), String> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        }
        let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("cannot look at {}: {e}", dir.display()))?;
        let me = rustix::process::geteuid().as_raw();
        let mode = meta.permissions().mode() & 0o777;
        if !meta.file_type().is_dir() || meta.uid() != me || mode & 0o077 != 0 {
            return Err(format!(
                "{} is not this executor's own directory (a directory of user {me}, mode 700; it is {} of user {}, \
                 mode {mode:o}): another user may have made it; remove it",
                dir.display(),
                if meta.file_type().is_symlink() {
                    "a link"
                } else if meta.is_dir() {
                    "a directory"
                } else {
                    "a file"
                },
                meta.uid()
            ));
        }
        Ok(())
    }

    pub fn run_shim_if_asked() -> Option<u8> {
        let mut args = std::env::args_os();
        if args.nth(1).as_deref() != Some(std::ffi::OsStr::new(SHIM_ARG)) {
            return None;
        }
        // An exit code is its low 8 bits, as the shell sees it.
        Some((shim(args.collect()) & 0xff) as u8)
    }

    /// `<executor pid> -- <argv...>`: see the module's documentation. Exits 125 when it cannot run at all, 127 when
    /// the command cannot be started.
    fn shim(args: Vec<OsString>) -> i32 {
        let (Some(parent), Some(dashes)) = (args.first(), args.get(1)) else { return 125 };
        if dashes != "--" || args.len() < 3 {
            return 125;
        }
        let Some(parent) = parent.to_str().and_then(|p| p.parse::<i32>().ok()) else { return 125 };
        if rustix::process::set_parent_process_death_signal(Some(Signal::HUP)).is_err() {
            return 125;
        }
        // Asked after the request: a parent that died before it is seen here.
        if rustix::process::getppid().map(|p| p.as_raw_nonzero().get()) != Some(parent) {
            return 125;
        }
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(r) => r,
            Err(_) => return 125,
        };
        runtime.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut hup), Ok(mut term)) = (signal(SignalKind::hangup()), signal(SignalKind::terminate())) else {
                return 125;
            };
            let mut child = match tokio::process::Command::new(&args[2]).args(&args[3..]).spawn() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("foreman: cannot run {}: {e}", args[2].to_string_lossy());
                    return 127;
                }
            };
            loop {
                tokio::select! {
                    biased;
                    _ = hup.recv() => {
                        // The executor died: nothing of its command may outlive it.
                        let _ = rustix::process::kill_current_process_group(Signal::KILL);
                        return 137;
                    }
                    // The group is being stopped: the command heard it too; wait for it.
                    _ = term.recv() => {}
                    status = child.wait() => {
                        return match status.map(exit_of) {
                            Ok(Exit::Code(c)) => c,
                            Ok(Exit::Signal(s)) => 128 + s,
                            Err(_) => 125,
                        };
                    }
                }
            }
        })
    }
}

#[cfg(madsim)]
mod imp {
    //! The simulated twin: a command is a script, `["sim", "run=2500ms", "exit=0", "lines=5", "term=300ms"]`,
    //! run as a task of the executor's node (so a kill of the node ends it, as the shim's parent-death signal does
    //! a real one; a pause freezes it, where a real command would run on: the checkers allow for that as for the
    //! executor's own tasks). It prints `FOREMAN_PROGRESS i/lines` evenly over `run`, then exits with `exit`; on
    //! SIGTERM it ends `term` later, or never with `term=ignore` (then only the SIGKILL after the grace ends it).

    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::sync::{mpsc, Notify};

    use super::{Exit, Kill, Owner, ProcessEvent, ProcessSpec};

    /// What a simulated command does.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Script {
        pub run: Duration,
        pub exit: i32,
        pub lines: u32,
        /// How long it takes to end after SIGTERM; `None`: it ignores SIGTERM.
        pub term: Option<Duration>,
    }

    impl Script {
        /// Reads `["sim", "key=value", ...]`; every key has a default (`run=1s exit=0 lines=0 term=0ms`).
        pub fn parse(argv: &[String]) -> Result<Script, String> {
            if argv.first().map(String::as_str) != Some("sim") {
                let program = argv.first().map_or("", String::as_str);
                return Err(format!("cannot run `{program}`: the simulation runs only `sim` scripts"));
            }
            let mut s = Script { run: Duration::from_secs(1), exit: 0, lines: 0, term: Some(Duration::ZERO) };
            for arg in &argv[1..] {
                let (k, v) = arg.split_once('=').ok_or_else(|| format!("sim script: {arg:?} is not key=value"))?;
                let ms = |v: &str| crate::core::duration::parse_duration(v);
                match k {
                    "run" => s.run = ms(v)?,
                    "exit" => s.exit = v.parse().map_err(|_| format!("sim script: exit={v}"))?,
                    "lines" => s.lines = v.parse().map_err(|_| format!("sim script: lines={v}"))?,
                    "term" if v == "ignore" => s.term = None,
                    "term" => s.term = Some(ms(v)?),
                    _ => return Err(format!("sim script: unknown key {k:?}")),
                }
            }
            Ok(s)
        }
    }

    /// The task of a simulated command, to abort (its "SIGKILL").
    #[derive(Clone, Default)]
    pub struct Target(Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>);

    impl Target {
        pub fn kill(&self) {
            if let Some(t) = self.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
                t.abort();
            }
        }
    }

    pub struct Process {
        events: mpsc::UnboundedReceiver<ProcessEvent>,
        log: Option<super::super::logs::LogWriter>,
        ended: bool,
        term: Arc<Notify>,
        kill: Kill,
        hook: u64,
    }

    impl Process {
        pub fn spawn(spec: &ProcessSpec, owner: Owner) -> Result<Process, String> {
            let script = Script::parse(&spec.argv)?;
            let (tx, events) = mpsc::unbounded_channel();
            let term = Arc::new(Notify::new());
            owner.started();
            let log = owner.log();
            let kill = Kill::new(owner, Target::default());
            let (term2, kill2) = (term.clone(), kill.clone());
            let task = tokio::spawn(async move {
                let exit = run(script, &tx, &term2).await;
                kill2.end();
                let _ = tx.send(ProcessEvent::Exited(exit));
            });
            *kill.target.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
            let hook = kill.hook();
            Ok(Process { events, log, ended: false, term, kill, hook })
        }

        pub async fn event(&mut self) -> ProcessEvent {
            let e = match self.events.recv().await {
                Some(e) => e,
                // Its task is gone without a word: killed.
                None => ProcessEvent::Exited(Exit::Signal(9)),
            };
            match &e {
                ProcessEvent::Line(line) => {
                    if let Some(log) = self.log.as_mut() {
                        log.write(super::super::logs::Stream::Out, format!("{line}\n").as_bytes());
                    }
                }
                ProcessEvent::Exited(exit) => self.ended(*exit),
            }
            e
        }

        /// It ended as `exit`: once, in its logs too.
        fn ended(&mut self, exit: Exit) {
            if !std::mem::replace(&mut self.ended, true) {
                if let Some(log) = self.log.as_mut() {
                    log.exit(&exit.to_string());
                }
            }
        }

        pub async fn stop(&mut self, grace: Duration) {
            self.term.notify_one();
            let exited = async {
                while let Some(e) = self.events.recv().await {
                    if let ProcessEvent::Exited(exit) = e {
                        return Some(exit);
                    }
                }
                None
            };
            let exit = tokio::time::timeout(grace, exited).await.ok().flatten();
            self.kill.kill();
            self.ended(exit.unwrap_or(Exit::Signal(9)));
        }
    }

    impl Drop for Process {
        fn drop(&mut self) {
            self.kill.kill();
            self.ended(Exit::Signal(9));
            self.kill.owner.env.stop_hooks.remove(self.hook);
        }
    }

    /// The script's life: its lines, then its exit, or its end after SIGTERM.
    async fn run(s: Script, tx: &mpsc::UnboundedSender<ProcessEvent>, term: &Notify) -> Exit {
        let step = s.run / (s.lines + 1);
        let last = s.run.saturating_sub(step * s.lines);
        for printed in 0..=s.lines {
            let wait = if printed < s.lines { step } else { last };
            tokio::select! {
                biased;
                _ = term.notified() => {
                    return match s.term {
                        Some(d) => {
                            tokio::time::sleep(d).await;
                            Exit::Signal(15)
                        }
                        None => std::future::pending().await,
                    };
                }
                _ = tokio::time::sleep(wait) => {}
            }
            if printed < s.lines {
                let _ = tx.send(ProcessEvent::Line(format!("FOREMAN_PROGRESS {}/{}", printed + 1, s.lines)));
            }
        }
        Exit::Code(s.exit)
    }

    pub fn run_shim_if_asked() -> Option<u8> {
        None
    }

    pub fn private_dir(_: &std::path::Path) -> Result<(), String> {
        // Never called: the simulation makes no real directory (`scratch_dir`).
        Ok(())
    }

    pub fn sweep(_: &std::path::Path) -> Vec<String> {
        vec![]
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_script_says_what_the_simulated_command_does() {
            let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            let s = Script::parse(&argv(&["sim", "run=2500ms", "exit=3", "lines=5", "term=ignore"])).unwrap();
            assert_eq!(s, Script { run: Duration::from_millis(2500), exit: 3, lines: 5, term: None });
            assert_eq!(Script::parse(&argv(&["sim"])).unwrap().term, Some(Duration::ZERO));
            assert!(Script::parse(&argv(&["sh", "-c", "x"])).unwrap_err().contains("only `sim` scripts"));
            assert!(Script::parse(&argv(&["sim", "walk=1"])).unwrap_err().contains("unknown key"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_capped() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"a\nbc"), ["a"]);
        assert_eq!(s.push(b"d\r\n\n"), ["bcd", ""]);
        assert_eq!(s.finish(), None);
        let long = vec![b'x'; LINE_MAX + 10];
        let lines = s.push(&long);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), LINE_MAX);
        assert!(s.push(b"yyy").is_empty(), "the tail of a long line is dropped");
        assert_eq!(s.push(b"z\nnext\n"), ["next"]);
        assert_eq!(s.push(b"end"), Vec::<String>::new());
        assert_eq!(s.finish().as_deref(), Some("end"));
        assert_eq!(s.push(&[0xff, b'\n']), ["\u{fffd}"]);
    }

    #[test]
    fn an_exit_says_how() {
        assert_eq!(Exit::Code(3).to_string(), "exited with code 3");
        assert!(Exit::Code(127).to_string().contains("was not found"));
        assert_eq!(Exit::Signal(9).to_string(), "was killed by signal 9");
    }

    #[cfg(not(madsim))]
    #[test]
    fn a_scratch_directory_is_the_executors_own() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("foreman-unit-scratch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let executor = base.clone();
        let dir = scratch_dir(&executor, "j1", "w0").unwrap();
        assert!(dir.ends_with("scratch/j1/w0") && dir.is_dir());
        assert_eq!(std::fs::metadata(&base).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(scratch_dir(&executor, "j1", "w0").unwrap(), dir, "kept across incarnations");
        // Opened to others (as another user's would be): refused.
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = scratch_dir(&executor, "j1", "w1").unwrap_err();
        assert!(e.contains("is not this executor's own directory") && e.contains("mode 777"), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
        // A link planted where it goes: refused.
        std::os::unix::fs::symlink(std::env::temp_dir(), &base).unwrap();
        let e = scratch_dir(&executor, "j1", "w0").unwrap_err();
        assert!(e.contains("a link"), "{e}");
        std::fs::remove_file(&base).unwrap();
    }

    #[test]
    fn a_command_inherits_only_what_it_needs() {
        let env = inherited_env();
        assert!(env.iter().any(|(k, _)| k == "PATH"));
        assert!(env.iter().all(|(k, _)| ["PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ"].contains(&k.as_str())));
    }
}
