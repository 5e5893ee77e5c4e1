//! The embedded store's durability: an append-only log of applied writes plus a snapshot, in one directory.
//!
//! Files: `snapshot.json` (every durable key at some log sequence number) and `log.jsonl` (one JSON record per
//! applied transaction, newline-terminated, each with a sequence number). A record is written and fsync'd before
//! the transaction it records is applied in memory, so an acknowledged transaction is durable.
//!
//! Invariants:
//! - Replay = snapshot, then every log record with a larger sequence number, in order. Records carry blind puts and
//!   deletes, so a crash between writing a snapshot and emptying the log (records replayed twice) is harmless, and
//!   the sequence numbers skip them anyway.
//! - A torn last line (a crash mid-append: no newline, or bytes that do not decode) is dropped and cut off on
//!   open, so the next append starts on a clean line. A bad line with good lines after it is corruption, not a
//!   torn write, and opening fails rather than silently losing acknowledged transactions.
//! - Leased keys are never in the files: leases do not outlive the process.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::MetaError;

/// A snapshot is taken after this many log records.
pub(super) const COMPACT_EVERY: usize = 1024;

const SNAPSHOT: &str = "snapshot.json";
const SNAPSHOT_TMP: &str = "snapshot.json.tmp";
const LOCK: &str = "LOCK";
const LOG: &str = "log.jsonl";

pub(super) fn log_path(dir: &Path) -> PathBuf {
    dir.join(LOG)
}

/// One durable effect of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum LogOp {
    Put {
        key: String,
        #[serde(with = "hex")]
        value: Vec<u8>,
    },
    Del {
        key: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Record {
    seq: u64,
    ops: Vec<LogOp>,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    seq: u64,
    kv: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    key: String,
    #[serde(with = "hex")]
    value: Vec<u8>,
}

/// Why an append failed, and whether the store may go on.
#[derive(Debug)]
pub(super) enum AppendError {
    /// Nothing of the record remains in the log: the transaction certainly did not happen.
    NotWritten(String),
    /// The record may be in the log and could not be removed: the transaction may have happened, and the log can
    /// no longer be trusted to match memory.
    Broken(String),
}

/// The open log of one directory.
pub(super) struct Wal {
    dir: PathBuf,
    log: File,
    /// `LOCK` in the directory, locked for as long as this store is open: a second process opening the same
    /// directory is refused rather than interleaving its log with ours. The operating system releases the lock
    /// when the process ends, however it ends.
    _lock: File,
    /// Length of the log up to the last complete record.
    len: u64,
    next_seq: u64,
    records_since_snapshot: usize,
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> MetaError {
    MetaError::Unavailable(format!("{what} {}: {e}", path.display()))
}

fn corrupt(path: &Path, reason: String) -> MetaError {
    MetaError::Corrupt { key: path.display().to_string(), reason }
}

/// Takes the directory's lock, or says which directory is in use and what to do.
fn lock_dir(dir: &Path) -> Result<File, MetaError> {
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_error(&path, "cannot open the lock file", e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(MetaError::Unavailable(format!(
            "the data directory {} is in use by another foreman process (it holds {}); stop that process or give \
             another --data-dir",
            dir.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(io_error(&path, "cannot lock", e)),
    }
}

/// Makes a rename or a new file in `dir` durable. Best effort: not every platform can fsync a directory.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn apply(kv: &mut BTreeMap<String, Vec<u8>>, ops: Vec<LogOp>) {
    for op in ops {
        match op {
            LogOp::Put { key, value } => {
                kv.insert(key, value);
            }
            LogOp::Del { key } => {
                kv.remove(&key);
            }
        }
    }
}

impl Wal {
    /// Opens (or creates) the store in `dir` and returns the log with every durable key and value.
    pub(super) fn open(dir: &Path) -> Result<(Wal, BTreeMap<String, Vec<u8>>), MetaError> {
        fs::create_dir_all(dir).map_err(|e| io_error(dir, "cannot create the data directory", e))?;
        let lock = lock_dir(dir)?;
        let _ = fs::remove_file(dir.join(SNAPSHOT_TMP));
        let mut kv = BTreeMap::new();
        let snapshot_path = dir.join(SNAPSHOT);
        let mut seq = 0;
        match fs::read(&snapshot_path) {
            Ok(bytes) => {
                let snap: Snapshot = serde_json::from_slice(&bytes)
                    .map_err(|e| corrupt(&snapshot_path, format!("the snapshot does not decode: {e}")))?;
                seq = snap.seq;
                kv.extend(snap.kv.into_iter().map(|e| (e.key, e.value)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&snapshot_path, "cannot read", e)),
        }

        let log_path = log_path(dir);
        let mut log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&log_path)
            .map_err(|e| io_error(&log_path, "cannot open", e))?;
        let mut text = Vec::new();
        log.read_to_end(&mut text).map_err(|e| io_error(&log_path, "cannot read", e))?;
        let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
        let mut len = 0u64;
        let mut records = 0;
        let mut previous = 0;
        for (i, line) in lines.iter().enumerate() {
            let record = line
                .strip_suffix(b"\n")
                .ok_or_else(|| "no newline at the end".to_owned())
                .and_then(|body| serde_json::from_slice::<Record>(body).map_err(|e| e.to_string()));
            match record {
                Ok(r) if r.seq <= previous || r.seq > seq + 1 => {
                    return Err(corrupt(
                        &log_path,
                        format!("line {} holds record {} after record {previous}, with {seq} applied", i + 1, r.seq),
                    ));
                }
                Ok(r) => {
                    previous = r.seq;
                    // Records up to the snapshot's sequence number are already in it (a crash came between
                    // writing the snapshot and emptying the log).
                    if r.seq > seq {
                        seq = r.seq;
                        apply(&mut kv, r.ops);
                        records += 1;
                    }
                    len += line.len() as u64;
                }
                Err(why) if i + 1 == lines.len() => {
                    tracing::warn!(
                        log = %log_path.display(),
                        line = i + 1,
                        "dropping a torn last log line ({why}): a write cut short by a crash, never acknowledged"
                    );
                }
                Err(why) => {
                    return Err(corrupt(
                        &log_path,
                        format!("line {} does not decode ({why}) and {} lines follow it", i + 1, lines.len() - i - 1),
                    ));
                }
            }
        }
        if len < text.len() as u64 {
            log.set_len(len).map_err(|e| io_error(&log_path, "cannot cut the torn end of", e))?;
            log.sync_all().map_err(|e| io_error(&log_path, "cannot sync", e))?;
        }
        sync_dir(dir);
        let wal =
            Wal { dir: dir.to_owned(), log, _lock: lock, len, next_seq: seq + 1, records_since_snapshot: records };
        Ok((wal, kv))
    }

    /// Appends one record and fsyncs it.
    pub(super) fn append(&mut self, ops: &[LogOp]) -> Result<(), AppendError> {
        let record = Record { seq: self.next_seq, ops: ops.to_vec() };
        let mut line = serde_json::to_vec(&record).map_err(|e| AppendError::NotWritten(e.to_string()))?;
        line.push(b'\n');
        let written = self.log.write_all(&line).and_then(|()| self.log.sync_data());
        if let Err(e) = written {
            // Take back whatever part of the record reached the file, so the log still matches memory.
            let undone = self.log.set_len(self.len).and_then(|()| self.log.sync_all());
            return Err(match undone {
                Ok(()) => AppendError::NotWritten(format!("cannot append to the log: {e}")),
                Err(e2) => AppendError::Broken(format!("cannot append to the log ({e}) nor undo the append ({e2})")),
            });
        }
        self.len += line.len() as u64;
        self.next_seq += 1;
        self.records_since_snapshot += 1;
        Ok(())
    }

    /// Whether enough records piled up to take a snapshot.
    pub(super) fn wants_snapshot(&self) -> bool {
        self.records_since_snapshot >= COMPACT_EVERY
    }

    /// Writes every durable key as a snapshot and empties the log. A failure leaves the previous snapshot and the
    /// log as they were (both still replay to the same state).
    pub(super) fn snapshot<'a>(
        &mut self,
        kv: impl Iterator<Item = (&'a String, &'a Vec<u8>)>,
    ) -> Result<(), std::io::Error> {
        let snap = Snapshot {
            seq: self.next_seq - 1,
            kv: kv.map(|(k, v)| Entry { key: k.clone(), value: v.clone() }).collect(),
        };
        let bytes = serde_json::to_vec(&snap)?;
        let tmp = self.dir.join(SNAPSHOT_TMP);
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, self.dir.join(SNAPSHOT))?;
        sync_dir(&self.dir);
        // From here on the snapshot holds every record; the log's records are skipped by sequence number.
        self.log.set_len(0)?;
        self.log.sync_all()?;
        self.len = 0;
        self.records_since_snapshot = 0;
        Ok(())
    }
}

/// Bytes as lowercase hex in JSON.
mod hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let text: String = bytes
            .iter()
            .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]])
            .map(char::from)
            .collect();
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd number of hex digits"));
        }
        (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    .ok_or_else(|| serde::de::Error::custom("not a hex digit"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_every_byte() {
        let op = LogOp::Put { key: "k".into(), value: (0..=255).collect() };
        let text = serde_json::to_string(&op).unwrap();
        assert_eq!(serde_json::from_str::<LogOp>(&text).unwrap(), op);
        assert!(serde_json::from_str::<LogOp>(r#"{"put":{"key":"k","value":"0g"}}"#).is_err());
        assert!(serde_json::from_str::<LogOp>(r#"{"put":{"key":"k","value":"abc"}}"#).is_err());
    }
}
