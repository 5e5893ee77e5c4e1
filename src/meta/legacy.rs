//! The embedded store's previous files, read once to import them: `snapshot.json` (every durable key at some
//! sequence number) and `log.jsonl` (one JSON record per transaction, newline-terminated, numbered).
//!
//! The import is strict, because these files hold a user's jobs and nothing else will: a snapshot that does not
//! decode, a complete log line that does not decode (the last one included), or a sequence number out of order
//! (a gap, a record missing after the snapshot) refuses the import. The one leniency is a last line without its
//! newline: each record was written with its newline and fsync'd before its transaction was acknowledged, so such
//! a line is a write cut short by a crash, never acknowledged.
//!
//! What this format cannot tell: records lost from the end of the log at a record boundary, or a log emptied
//! (it keeps no count). The import takes what the files hold and logs how much that is.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::MetaError;

pub(super) const SNAPSHOT: &str = "snapshot.json";
pub(super) const LOG: &str = "log.jsonl";
const SNAPSHOT_TMP: &str = "snapshot.json.tmp";
/// What an imported file is renamed to: `<name>.imported`, kept for the operator to delete.
const IMPORTED_SUFFIX: &str = ".imported";

/// What the previous files held.
#[derive(Debug)]
pub(super) struct Imported {
    pub kv: BTreeMap<String, Vec<u8>>,
    /// The last transaction applied.
    pub seq: u64,
    /// Log records applied after the snapshot.
    pub records: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum LogOp {
    Put {
        key: String,
        #[serde(with = "hex")]
        value: Vec<u8>,
    },
    Del {
        key: String,
    },
}

#[derive(Deserialize)]
struct Record {
    seq: u64,
    ops: Vec<LogOp>,
}

#[derive(Deserialize)]
struct Snapshot {
    seq: u64,
    kv: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    key: String,
    #[serde(with = "hex")]
    value: Vec<u8>,
}

/// Whether `dir` holds files of the previous format to import.
pub(super) fn present(dir: &Path) -> bool {
    dir.join(SNAPSHOT).exists() || dir.join(LOG).exists()
}

/// How to get past a refused import: the files are left as they are.
fn refuse(path: &Path, reason: String) -> MetaError {
    MetaError::Corrupt {
        key: path.display().to_string(),
        reason: format!(
            "{reason}. This file of an earlier foreman could not be imported, and foreman will not start without \
             the acknowledged writes it may hold: restore the data directory from a backup, or move it aside to \
             start with an empty store"
        ),
    }
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> MetaError {
    MetaError::Unavailable(format!("{what} {}: {e}", path.display()))
}

/// Reads the previous files of `dir`, strictly (see the module's docs).
pub(super) fn read(dir: &Path) -> Result<Imported, MetaError> {
    let mut kv = BTreeMap::new();
    let snapshot_path = dir.join(SNAPSHOT);
    let mut seq = 0;
    match fs::read(&snapshot_path) {
        Ok(bytes) => {
            let snap: Snapshot = serde_json::from_slice(&bytes)
                .map_err(|e| refuse(&snapshot_path, format!("the snapshot does not decode: {e}")))?;
            seq = snap.seq;
            kv.extend(snap.kv.into_iter().map(|e| (e.key, e.value)));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&snapshot_path, "cannot read", e)),
    }
    let snapshot_seq = seq;

    let log_path = dir.join(LOG);
    let text = match fs::read(&log_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_error(&log_path, "cannot read", e)),
    };
    let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
    let mut previous: Option<u64> = None;
    let mut records = 0;
    for (i, line) in lines.iter().enumerate() {
        let Some(body) = line.strip_suffix(b"\n") else {
            // Only the last line can lack its newline.
            tracing::warn!(
                log = %log_path.display(),
                line = i + 1,
                "not importing the log's last line, which has no newline: a write cut short by a crash, never \
                 acknowledged"
            );
            break;
        };
        let record: Record = serde_json::from_slice(body).map_err(|e| {
            refuse(&log_path, format!("line {} of {} is complete but does not decode ({e})", i + 1, lines.len()))
        })?;
        let expected = match previous {
            Some(p) => p + 1,
            // The first record may be one the snapshot already holds (a crash came between writing the snapshot
            // and emptying the log), but not one after a gap.
            None if record.seq <= snapshot_seq + 1 && record.seq > 0 => record.seq,
            None => snapshot_seq + 1,
        };
        if record.seq != expected {
            return Err(refuse(
                &log_path,
                format!(
                    "line {} holds record {} where record {expected} was due (the snapshot holds up to {snapshot_seq}): \
                     records are missing",
                    i + 1,
                    record.seq
                ),
            ));
        }
        previous = Some(record.seq);
        if record.seq > seq {
            seq = record.seq;
            records += 1;
            for op in record.ops {
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
    }
    Ok(Imported { kv, seq, records })
}

fn imported_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(IMPORTED_SUFFIX);
    path.with_file_name(name)
}

/// Renames the imported files to `<name>.imported`, so that they are never imported again, and removes a snapshot
/// left half-written. Called once their content is durable in the new store.
pub(super) fn move_aside(dir: &Path) -> Result<(), MetaError> {
    for name in [SNAPSHOT, LOG] {
        let path = dir.join(name);
        match fs::rename(&path, imported_path(&path)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&path, "cannot rename the imported file", e)),
        }
    }
    let _ = fs::remove_file(dir.join(SNAPSHOT_TMP));
    Ok(())
}

/// Bytes as lowercase hex in JSON.
mod hex {
    use serde::{Deserialize, Deserializer};

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
