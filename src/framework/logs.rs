//! What the processes of a worker incarnation print (issue 16, step 3): each incarnation's stdout and stderr kept
//! on its executor, capped, and read back by the masters for `foreman job logs`.
//!
//! - **Layout**: `<job>/<worker>/<epoch>.<out|err>.<start>`, one file per segment of a stream, where `<start>` is
//!   the offset of the segment's first byte in everything the stream ever wrote, and `<job>/<worker>/<epoch>.exit`,
//!   how the command ended, once it did. Under the executor's own directory (`--data-dir`, `logs/`), owner-only.
//! - **Cap**: a stream keeps at most [`LOG_MAX`] bytes (and at least half of it once it wrote more), in two
//!   segments of half that: when the newer is full, the older is removed and a new one begun. So the newest output is kept (the end of a long run is what explains its
//!   failure), and offsets stay valid: a reader behind what was dropped is told how much it missed.
//! - **Incarnations**: a worker keeps the logs of its newest [`INCARNATIONS_KEPT`] incarnations on an executor; a
//!   new one removes the oldest beyond that.
//! - **Storage**: files in the production build; in the simulation a map in memory per executor (the twin runs no
//!   real command and the simulated nodes share one file system), with the same layout and the same code above it.
//!   A write that fails (a full disk) is logged once per stream and dropped: a command never stops because its
//!   output cannot be kept.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The most bytes kept of one stream of one incarnation.
pub const LOG_MAX: u64 = 8 << 20;
/// The incarnations of a worker whose logs an executor keeps.
pub const INCARNATIONS_KEPT: usize = 5;
/// The most bytes one read returns.
pub const READ_MAX: u64 = 1 << 20;

/// One of a process's output streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stream {
    Out,
    Err,
}

impl Stream {
    fn suffix(self) -> &'static str {
        match self {
            Stream::Out => "out",
            Stream::Err => "err",
        }
    }
}

/// What an executor holds of one incarnation of a worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incarnation {
    pub worker: String,
    pub epoch: u64,
    /// Everything each stream wrote (kept or dropped since).
    pub out: u64,
    pub err: u64,
    /// How its command ended, once it did (as [`super::process::Exit`] says it).
    pub exit: Option<String>,
}

/// Part of a stream, from `start`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    pub start: u64,
    pub data: Vec<u8>,
    /// Everything the stream wrote so far: the next offset to ask for is `start + data.len()`, up to this.
    pub total: u64,
    /// Bytes between the offset asked for and `start` that were dropped by the cap.
    pub dropped: u64,
    /// How the command ended, once it did.
    pub exit: Option<String>,
}

/// Where the segments live: names relative to the store's root, `/`-separated.
#[derive(Clone)]
enum Backend {
    Dir(PathBuf),
    Memory(Arc<Mutex<BTreeMap<String, Vec<u8>>>>),
}

impl Backend {
    fn append(&self, name: &str, bytes: &[u8]) -> Result<(), String> {
        match self {
            Backend::Dir(root) => {
                let path = root.join(name);
                let mut options = std::fs::OpenOptions::new();
                options.append(true).create(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                // The directories are made (owner-only) the first time only: most writes find them.
                let f = match options.open(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        if let Some(dir) = path.parent() {
                            crate::rpc::tls::create_private_dirs(dir)?;
                        }
                        options.open(&path)
                    }
                    opened => opened,
                };
                let mut f = f.map_err(|e| format!("cannot open {}: {e}", path.display()))?;
                std::io::Write::write_all(&mut f, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
            }
            Backend::Memory(m) => {
                lock(m).entry(name.to_owned()).or_default().extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<(), String> {
        self.remove(name);
        self.append(name, bytes)
    }

    fn remove(&self, name: &str) {
        match self {
            Backend::Dir(root) => {
                let _ = std::fs::remove_file(root.join(name));
            }
            Backend::Memory(m) => {
                lock(m).remove(name);
            }
        }
    }

    fn remove_dir(&self, dir: &str) {
        match self {
            Backend::Dir(root) => {
                let _ = std::fs::remove_dir_all(root.join(dir));
            }
            Backend::Memory(m) => lock(m).retain(|k, _| !k.starts_with(&format!("{dir}/"))),
        }
    }

    fn size(&self, name: &str) -> u64 {
        match self {
            Backend::Dir(root) => std::fs::metadata(root.join(name)).map_or(0, |m| m.len()),
            Backend::Memory(m) => lock(m).get(name).map_or(0, |v| v.len() as u64),
        }
    }

    fn read(&self, name: &str, offset: u64, max: u64) -> Vec<u8> {
        match self {
            Backend::Dir(root) => {
                use std::io::{Read, Seek};
                let Ok(mut f) = std::fs::File::open(root.join(name)) else { return vec![] };
                if f.seek(std::io::SeekFrom::Start(offset)).is_err() {
                    return vec![];
                }
                let mut out = vec![];
                let _ = f.take(max).read_to_end(&mut out);
                out
            }
            Backend::Memory(m) => {
                let m = lock(m);
                let Some(v) = m.get(name) else { return vec![] };
                let from = usize::try_from(offset).unwrap_or(usize::MAX).min(v.len());
                let to = from.saturating_add(usize::try_from(max).unwrap_or(usize::MAX)).min(v.len());
                v[from..to].to_vec()
            }
        }
    }

    /// The names directly in `dir` (files and directories), sorted.
    fn list(&self, dir: &str) -> Vec<String> {
        match self {
            Backend::Dir(root) => {
                let mut names: Vec<String> = std::fs::read_dir(root.join(dir))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .collect();
                names.sort();
                names
            }
            Backend::Memory(m) => {
                let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
                let mut names: Vec<String> = lock(m)
                    .keys()
                    .filter_map(|k| k.strip_prefix(&prefix))
                    .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
                    .collect();
                names.dedup();
                names
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A name usable as one path component: not empty, not `.` or `..`, no separator.
fn component(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s == "." || s == ".." || s.contains(['/', '\\', '\0']) {
        return Err(format!("{what} {s:?} cannot name a log"));
    }
    Ok(())
}

/// A segment's name: `<epoch>.<stream>.<start>`, parsed.
fn segment_of(name: &str) -> Option<(u64, Stream, u64)> {
    let mut parts = name.split('.');
    let epoch = parts.next()?.parse().ok()?;
    let stream = match parts.next()? {
        "out" => Stream::Out,
        "err" => Stream::Err,
        _ => return None,
    };
    let start = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((epoch, stream, start))
}

/// An executor's logs: cheap to clone, shared by its tasks (which write) and its service (which reads).
#[derive(Clone)]
pub struct LogStore {
    backend: Backend,
    /// The most bytes of a segment (half a stream's cap).
    segment_max: u64,
}

impl LogStore {
    /// Logs kept as files under `root` (created owner-only as they are written).
    pub fn dir(root: PathBuf) -> LogStore {
        LogStore { backend: Backend::Dir(root), segment_max: LOG_MAX / 2 }
    }

    /// Logs kept in memory (the simulation's executors, and tests).
    pub fn memory() -> LogStore {
        LogStore { backend: Backend::Memory(Arc::default()), segment_max: LOG_MAX / 2 }
    }

    /// The same store with a stream's cap at `max` bytes (tests).
    pub fn with_cap(mut self, max: u64) -> LogStore {
        self.segment_max = (max / 2).max(1);
        self
    }

    /// The store of the executor whose own directory is `dir`: its `logs/` in the production build (refused when
    /// `dir` is not the executor's own, as for its scratch directories), memory in the simulation.
    pub fn for_executor(dir: &std::path::Path) -> Result<LogStore, String> {
        if cfg!(madsim) {
            return Ok(LogStore::memory());
        }
        super::process::private_dir(dir)?;
        Ok(LogStore::dir(dir.join("logs")))
    }

    /// Begins the logs of incarnation `epoch` of `worker` of `job`, removing the oldest of the worker's beyond
    /// [`INCARNATIONS_KEPT`].
    pub fn writer(&self, job: &str, worker: &str, epoch: u64) -> Result<LogWriter, String> {
        component("job", job)?;
        component("worker", worker)?;
        let dir = format!("{job}/{worker}");
        let mut epochs: Vec<u64> = self.epochs(&dir).into_keys().filter(|e| *e != epoch).collect();
        epochs.sort_unstable();
        let over = (epochs.len() + 1).saturating_sub(INCARNATIONS_KEPT);
        for old in &epochs[..over] {
            for name in self.names_of(&dir, *old) {
                self.backend.remove(&format!("{dir}/{name}"));
            }
        }
        Ok(LogWriter {
            store: self.clone(),
            dir,
            epoch,
            streams: [Segments::default(), Segments::default()],
            warned: false,
        })
    }

    /// Every incarnation of `job` this store holds logs of, by worker then epoch.
    pub fn index(&self, job: &str) -> Vec<Incarnation> {
        if component("job", job).is_err() {
            return vec![];
        }
        let mut out = vec![];
        for worker in self.backend.list(job) {
            let dir = format!("{job}/{worker}");
            for (epoch, names) in self.epochs(&dir) {
                let total = |s: Stream| self.total(&dir, &names, epoch, s);
                out.push(Incarnation {
                    worker: worker.clone(),
                    epoch,
                    out: total(Stream::Out),
                    err: total(Stream::Err),
                    exit: self.exit(&dir, epoch),
                });
            }
        }
        out
    }

    /// Up to `max` bytes (at most [`READ_MAX`]) of `stream` of incarnation `epoch` of `worker` of `job` (the newest
    /// held when `epoch` is `None`) from `offset`. `None` when none is held.
    pub fn read(
        &self,
        job: &str,
        worker: &str,
        epoch: Option<u64>,
        stream: Stream,
        offset: u64,
        max: u64,
    ) -> Option<Chunk> {
        component("job", job).ok()?;
        component("worker", worker).ok()?;
        let dir = format!("{job}/{worker}");
        let epochs = self.epochs(&dir);
        let (epoch, names) = match epoch {
            Some(e) => (e, epochs.get(&e)?.clone()),
            None => epochs.into_iter().next_back()?,
        };
        let mut segments: Vec<(u64, String)> = names
            .iter()
            .filter_map(|n| segment_of(n).filter(|(_, s, _)| *s == stream).map(|(_, _, start)| (start, n.clone())))
            .collect();
        segments.sort();
        let total = self.total(&dir, &names, epoch, stream);
        let first = segments.first().map_or(total, |(s, _)| *s);
        let start = offset.clamp(first, total);
        let mut chunk = Chunk {
            start,
            total,
            dropped: first.saturating_sub(offset),
            exit: self.exit(&dir, epoch),
            ..Chunk::default()
        };
        let mut want = max.min(READ_MAX);
        let mut at = start;
        for (seg_start, name) in &segments {
            if want == 0 {
                break;
            }
            let name = format!("{dir}/{name}");
            let end = seg_start + self.backend.size(&name);
            if at >= end {
                continue;
            }
            let got = self.backend.read(&name, at - seg_start, want);
            at += got.len() as u64;
            want -= got.len() as u64;
            chunk.data.extend(got);
        }
        Some(chunk)
    }

    /// The jobs this store holds logs of.
    pub fn jobs(&self) -> Vec<String> {
        self.backend.list("")
    }

    /// Removes everything held of `job` (its data is collected once the job no longer exists).
    pub fn remove_job(&self, job: &str) {
        if component("job", job).is_ok() {
            self.backend.remove_dir(job);
        }
    }

    /// The incarnations in `dir` and the names of each one's files.
    fn epochs(&self, dir: &str) -> BTreeMap<u64, Vec<String>> {
        let mut out: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for name in self.backend.list(dir) {
            let epoch = name.split('.').next().and_then(|e| e.parse::<u64>().ok());
            if let Some(e) = epoch {
                out.entry(e).or_default().push(name);
            }
        }
        out
    }

    fn names_of(&self, dir: &str, epoch: u64) -> Vec<String> {
        self.epochs(dir).remove(&epoch).unwrap_or_default()
    }

    fn total(&self, dir: &str, names: &[String], epoch: u64, stream: Stream) -> u64 {
        names
            .iter()
            .filter_map(|n| {
                segment_of(n).filter(|(e, s, _)| *e == epoch && *s == stream).map(|(_, _, start)| (start, n))
            })
            .max()
            .map_or(0, |(start, n)| start + self.backend.size(&format!("{dir}/{n}")))
    }

    fn exit(&self, dir: &str, epoch: u64) -> Option<String> {
        let name = format!("{dir}/{epoch}.exit");
        let bytes = self.backend.read(&name, 0, 1024);
        (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// A stream's segments as its writer knows them: the newer's start and length, and whether an older one is kept.
#[derive(Clone, Copy, Debug, Default)]
struct Segments {
    start: u64,
    len: u64,
    begun: bool,
    older: Option<u64>,
}

/// The writer of one incarnation's logs.
pub struct LogWriter {
    store: LogStore,
    dir: String,
    epoch: u64,
    streams: [Segments; 2],
    warned: bool,
}

impl LogWriter {
    /// Keeps `bytes` of `stream`, dropping the oldest beyond the cap.
    pub fn write(&mut self, stream: Stream, mut bytes: &[u8]) {
        let max = self.store.segment_max;
        while !bytes.is_empty() {
            let s = &mut self.streams[stream as usize];
            if s.begun && s.len >= max {
                // The newer segment is full: the older goes, a new one begins after it.
                if let Some(old) = s.older.take() {
                    self.store.backend.remove(&self.name(stream, old));
                }
                let s = &mut self.streams[stream as usize];
                s.older = Some(s.start);
                s.start += s.len;
                s.len = 0;
            }
            let s = &mut self.streams[stream as usize];
            s.begun = true;
            let room = usize::try_from(max - s.len).unwrap_or(usize::MAX);
            let (now, rest) = bytes.split_at(bytes.len().min(room));
            s.len += now.len() as u64;
            let name = self.name(stream, self.streams[stream as usize].start);
            if let Err(e) = self.store.backend.append(&name, now) {
                self.warn(&e);
            }
            bytes = rest;
        }
    }

    /// Records how the command ended.
    pub fn exit(&mut self, how: &str) {
        let name = format!("{}/{}.exit", self.dir, self.epoch);
        if let Err(e) = self.store.backend.put(&name, how.as_bytes()) {
            self.warn(&e);
        }
    }

    fn name(&self, stream: Stream, start: u64) -> String {
        format!("{}/{}.{}.{start}", self.dir, self.epoch, stream.suffix())
    }

    fn warn(&mut self, e: &str) {
        if !self.warned {
            self.warned = true;
            tracing::warn!("a command's output is not kept: {e}");
        }
    }
}

/// The logs on the wire (`ExecutorService.ReadLogs`, `JobManager.JobLogs`): requests validated, answers built.
pub mod wire {
    use crate::rpc::pb;
    use crate::rpc::status::invalid_argument;
    use tonic::Status;

    /// A logs request, validated (`ReadLogs` at an executor, `JobLogs` at a master).
    pub struct Ask {
        pub job: crate::core::ids::JobId,
        pub worker: Option<crate::core::ids::WorkerName>,
        pub stream: super::Stream,
        pub max: u64,
    }

    /// The most bytes a logs request returns when it names no maximum.
    const LOGS_DEFAULT_MAX: u64 = 64 << 10;

    pub fn request(field: &str, job: &str, worker: &str, stream: i32, max: u64) -> Result<Ask, Status> {
        use super::{Stream, READ_MAX};
        let job = crate::core::ids::JobId::parse(job).map_err(|e| invalid_argument(field, e))?;
        let worker = if worker.is_empty() {
            None
        } else {
            Some(crate::core::ids::WorkerName::parse(worker).map_err(|e| invalid_argument("worker", e))?)
        };
        let stream = match pb::LogStream::try_from(stream) {
            Ok(pb::LogStream::Unspecified | pb::LogStream::Stdout) => Stream::Out,
            Ok(pb::LogStream::Stderr) => Stream::Err,
            Err(_) => return Err(invalid_argument("stream", format!("{stream} is not a stream (STDOUT or STDERR)"))),
        };
        let max = match max {
            0 => LOGS_DEFAULT_MAX,
            m if m > READ_MAX => {
                return Err(invalid_argument("max_bytes", format!("{m} exceeds the maximum of {READ_MAX}")));
            }
            m => m,
        };
        Ok(Ask { job, worker, stream, max })
    }

    pub fn incarnation(i: super::Incarnation) -> pb::LogIncarnation {
        pb::LogIncarnation {
            worker: i.worker,
            epoch: i.epoch,
            stdout_bytes: i.out,
            stderr_bytes: i.err,
            exit: i.exit.unwrap_or_default(),
        }
    }

    pub fn stream(s: super::Stream) -> pb::LogStream {
        match s {
            super::Stream::Out => pb::LogStream::Stdout,
            super::Stream::Err => pb::LogStream::Stderr,
        }
    }

    pub fn chunk(worker: &str, epoch: u64, stream: super::Stream, c: super::Chunk) -> pb::LogChunk {
        pb::LogChunk {
            worker: worker.to_owned(),
            epoch,
            stream: self::stream(stream) as i32,
            start: c.start,
            data: c.data,
            total: c.total,
            dropped: c.dropped,
            exit: c.exit.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(c: &Chunk) -> &str {
        std::str::from_utf8(&c.data).unwrap()
    }

    fn test_dir(label: &str) -> PathBuf {
        std::env::temp_dir().join(format!("foreman-logs-unit-{}-{label}", std::process::id()))
    }

    /// A store in memory and, in the production build, one in a directory of the test's own (`label`).
    fn stores(label: &str) -> Vec<LogStore> {
        let mut v = vec![LogStore::memory()];
        if !cfg!(madsim) {
            let dir = test_dir(label);
            let _ = std::fs::remove_dir_all(&dir);
            v.push(LogStore::dir(dir));
        }
        v
    }

    #[test]
    fn a_stream_is_read_back_from_any_offset_with_its_exit() {
        for store in stores("read-back") {
            let mut w = store.writer("job-1", "w0", 3).unwrap();
            w.write(Stream::Out, b"hello\n");
            w.write(Stream::Err, b"oops\n");
            w.write(Stream::Out, b"world\n");
            let c = store.read("job-1", "w0", None, Stream::Out, 0, 100).unwrap();
            assert_eq!((text(&c), c.total, c.dropped, c.exit.as_deref()), ("hello\nworld\n", 12, 0, None));
            let c = store.read("job-1", "w0", Some(3), Stream::Out, 6, 3).unwrap();
            assert_eq!((text(&c), c.start), ("wor", 6));
            w.exit("exited with code 0");
            let c = store.read("job-1", "w0", None, Stream::Err, 0, 100).unwrap();
            assert_eq!((text(&c), c.exit.as_deref()), ("oops\n", Some("exited with code 0")));
            // Past the end: nothing, and where the end is.
            let c = store.read("job-1", "w0", None, Stream::Out, 99, 10).unwrap();
            assert_eq!((c.data.len(), c.start, c.total), (0, 12, 12));
            assert!(store.read("job-1", "w1", None, Stream::Out, 0, 10).is_none());
            assert!(store.read("job-1", "w0", Some(2), Stream::Out, 0, 10).is_none());
            let index = store.index("job-1");
            assert_eq!(
                index,
                [Incarnation {
                    worker: "w0".into(),
                    epoch: 3,
                    out: 12,
                    err: 5,
                    exit: Some("exited with code 0".into())
                }]
            );
            store.remove_job("job-1");
            assert!(store.index("job-1").is_empty());
        }
        let _ = std::fs::remove_dir_all(test_dir("read-back"));
    }

    #[test]
    fn the_cap_keeps_the_newest_output_and_says_what_was_dropped() {
        for store in stores("cap") {
            let store = store.with_cap(10);
            let mut w = store.writer("j", "w0", 1).unwrap();
            w.write(Stream::Out, b"0123456789abcdefghij"); // 20 bytes: segments of 5, two kept
            let c = store.read("j", "w0", None, Stream::Out, 0, 100).unwrap();
            assert_eq!((text(&c), c.start, c.dropped, c.total), ("abcdefghij", 10, 10, 20));
            for b in b"KLM" {
                w.write(Stream::Out, &[*b]);
            }
            let c = store.read("j", "w0", None, Stream::Out, 12, 100).unwrap();
            assert_eq!((text(&c), c.start, c.dropped, c.total), ("fghijKLM", 15, 3, 23));
            let c = store.read("j", "w0", None, Stream::Out, 18, 100).unwrap();
            assert_eq!((text(&c), c.start, c.dropped), ("ijKLM", 18, 0));
            let sizes: u64 = store.index("j").iter().map(|i| i.out).sum();
            assert_eq!(sizes, 23);
        }
        let _ = std::fs::remove_dir_all(test_dir("cap"));
    }

    #[test]
    fn a_worker_keeps_its_newest_incarnations_only() {
        let store = LogStore::memory();
        for epoch in 1..=7 {
            store.writer("j", "w0", epoch).unwrap().write(Stream::Out, b"x");
        }
        let epochs: Vec<u64> = store.index("j").iter().map(|i| i.epoch).collect();
        assert_eq!(epochs, [3, 4, 5, 6, 7]);
        assert!(store.writer("j", "..", 1).is_err());
        assert!(store.writer("a/b", "w0", 1).is_err());
    }
}
