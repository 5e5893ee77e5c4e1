//! The embedded store's durable copy: one redb database in the data directory, checked against a small manifest.
//!
//! Files of a data directory:
//! - `foreman.redb`: the table `kv` (every durable key with its value) and the table `meta` (`format`, `store`: a
//!   random id drawn when the database was created, `seq`: how many transactions were committed, and `imported`
//!   when it was created from an earlier foreman's files).
//! - `MANIFEST`: `{"format","store","seq"}`, replaced atomically (a new file, fsync'd, renamed) when the store
//!   opens, after every [`MANIFEST_EVERY`] commits and when it closes. It is the database's witness: the database
//!   must name the same store and hold at least the manifest's `seq`.
//! - `LOCK`: locked while a store is open, so that a second process is refused rather than sharing the files.
//!
//! Invariants:
//! - A transaction's changes and its `seq` are one redb transaction, committed with `Durability::Immediate` and
//!   two-phase commit before the caller applies them in memory; a failed commit leaves memory as it was.
//! - The manifest's `seq` is never above the database's: it is written only after the commits it counts.
//! - Every open verifies every page's checksum (redb's integrity check) and then the manifest. Two-phase commit is
//!   what makes a page that fails its checksum an error: with redb's default one-phase commit, a damaged page of
//!   the last transaction after a crash is taken for a commit cut short, and that acknowledged transaction is
//!   rolled back silently.
//! - The database is created under another name and renamed into place once complete, so `foreman.redb` is never
//!   a half-created file, and an empty `foreman.redb` is never foreman's own.
//! - Leased keys are never in the files: leases do not outlive the process.
//!
//! What cannot be detected is in the README ("What the embedded store detects").

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use redb::backends::FileBackend;
use redb::{Builder, Database, Durability, ReadableDatabase, ReadableTable, StorageBackend, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{legacy, MetaError};

/// The database file.
pub(super) const DB: &str = "foreman.redb";
/// Where a new database is built before it is renamed to [`DB`].
const DB_TMP: &str = "foreman.redb.tmp";
pub(super) const MANIFEST: &str = "MANIFEST";
const MANIFEST_TMP: &str = "MANIFEST.tmp";
const LOCK: &str = "LOCK";
/// The layout of `meta` and `kv` this code reads and writes.
const FORMAT: u64 = 1;
/// The manifest is brought up to date after this many commits (and at every open and close): a copy of the
/// database older than that is refused.
pub(super) const MANIFEST_EVERY: u64 = 256;
/// redb's page cache. The serving copy is the in-memory map, so the database is read only when the store opens.
const CACHE_BYTES: usize = 16 << 20;

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// What foreman does instead of starting with less than was acknowledged.
const REMEDY: &str = "foreman will not start on it rather than lose acknowledged writes: restore the data directory \
                      from a backup, or move it aside to start with an empty store";

/// Every durable key with its value.
pub(super) type Kv = BTreeMap<String, Vec<u8>>;

/// One durable effect of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Change {
    Put { key: String, value: Vec<u8> },
    Del { key: String },
}

/// Why a commit failed, and whether it may have happened.
#[derive(Debug)]
pub(super) enum CommitError {
    /// Refused before redb committed anything: the transaction certainly did not happen.
    NotWritten(String),
    /// redb's commit failed: it may or may not be on disk, and redb refuses further writes until reopened.
    Unknown(String),
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Manifest {
    format: u64,
    store: u64,
    seq: u64,
}

/// What `meta` holds.
struct Meta {
    store: u64,
    seq: u64,
    imported: Option<u64>,
}

/// The open durable copy of one data directory.
pub(super) struct Durable {
    dir: PathBuf,
    db: Database,
    /// `LOCK`, locked for as long as this store is open. The operating system releases the lock when the process
    /// ends, however it ends.
    _lock: File,
    store: u64,
    /// The last committed transaction.
    seq: u64,
    /// Commits since the manifest was last written.
    unwitnessed: u64,
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> MetaError {
    MetaError::Unavailable(format!("{what} {}: {e}", path.display()))
}

/// A file foreman refuses to start on: what is wrong with it, then what to do.
fn refuse(path: &Path, reason: impl std::fmt::Display) -> MetaError {
    MetaError::Corrupt { key: path.display().to_string(), reason: format!("{reason}; {REMEDY}") }
}

/// [`refuse`], when the operator may also accept the file as it is by deleting the manifest.
fn refuse_unless_accepted(path: &Path, reason: impl std::fmt::Display, manifest: &Path) -> MetaError {
    MetaError::Corrupt {
        key: path.display().to_string(),
        reason: format!(
            "{reason}; {REMEDY}. If you mean to use this database as it is, delete {} to accept it",
            manifest.display()
        ),
    }
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

/// Makes a rename or a new file in `dir` durable. Best effort: not every platform can fsync a directory. A rename
/// lost this way is redone: a database whose rename was lost is created (or imported) again, and a manifest whose
/// rename was lost is an older one, which the database still satisfies.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// A store id unlikely to repeat: from the process's hashing keys, which the standard library draws from the
/// operating system's randomness.
fn new_store_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

/// The manifest of `dir`, if there is one.
fn read_manifest(path: &Path, db: &Path) -> Result<Option<Manifest>, MetaError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, "cannot read", e)),
    };
    match serde_json::from_slice::<Manifest>(&bytes) {
        Ok(m) if m.format == FORMAT => Ok(Some(m)),
        Ok(m) => Err(MetaError::Corrupt {
            key: path.display().to_string(),
            reason: format!("the manifest is of format {}, this foreman reads {FORMAT}: use a newer foreman", m.format),
        }),
        Err(e) => Err(MetaError::Corrupt {
            key: path.display().to_string(),
            reason: format!(
                "the manifest does not decode ({e}); it witnesses {}, which foreman therefore cannot check. If that \
                 database is the one you mean to use, delete the manifest to accept it as it is",
                db.display()
            ),
        }),
    }
}

/// An error of redb while opening or reading `path`, as foreman reports it.
fn open_error(path: &Path, e: redb::Error) -> MetaError {
    use std::io::ErrorKind;
    match e {
        redb::Error::Corrupted(why) => refuse(path, format!("the database fails redb's checks ({why})")),
        redb::Error::Io(e) if e.kind() == ErrorKind::InvalidData => {
            refuse(path, format!("the file is not a redb database ({e})"))
        }
        redb::Error::Io(e) if e.kind() == ErrorKind::UnexpectedEof => {
            refuse(path, format!("the file is cut short: too short to be a redb database ({e})"))
        }
        redb::Error::Io(e) => io_error(path, "cannot read", e),
        redb::Error::TableDoesNotExist(table) => {
            refuse(path, format!("the database has no table {table:?}: it is not a foreman store"))
        }
        redb::Error::UpgradeRequired(version) => MetaError::Unavailable(format!(
            "{} is in redb's file format {version}, which this foreman does not read",
            path.display()
        )),
        redb::Error::DatabaseAlreadyOpen => MetaError::Unavailable(format!(
            "{} is in use by another process; stop it, or give another --data-dir",
            path.display()
        )),
        other => MetaError::Unavailable(format!("cannot open {}: {other}", path.display())),
    }
}

/// Opens the database at `path`, verifying every page, and reads it whole. redb's integrity check reports a
/// damaged file as an error; a panic from a file damaged in a way it did not foresee is reported the same way.
fn open_db<B: StorageBackend>(path: &Path, backend: B) -> Result<(Database, Meta, Kv), MetaError> {
    let opened = catch_unwind(AssertUnwindSafe(|| -> Result<_, redb::Error> {
        let db = Builder::new()
            .set_cache_size(CACHE_BYTES)
            .set_check_integrity_on_open(true)
            .create_with_backend(backend)?;
        let (meta, kv) = {
            let read = db.begin_read()?;
            let meta = read.open_table(META)?;
            let field = |name: &str| meta.get(name).map(|v| v.map(|v| v.value()));
            let format = field("format")?;
            let store = field("store")?;
            let seq = field("seq")?;
            let imported = field("imported")?;
            let mut kv = BTreeMap::new();
            for entry in read.open_table(KV)?.iter()? {
                let (key, value) = entry?;
                kv.insert(key.value().to_owned(), value.value().to_vec());
            }
            ((format, store, seq, imported), kv)
        };
        Ok((db, meta, kv))
    }));
    let (db, (format, store, seq, imported), kv) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(e)) => return Err(open_error(path, e)),
        Err(_) => return Err(refuse(path, "the database is damaged: redb panicked reading it")),
    };
    let meta = match (format, store, seq) {
        (Some(FORMAT), Some(store), Some(seq)) => Meta { store, seq, imported },
        (Some(format), _, _) if format != FORMAT => {
            return Err(MetaError::Unavailable(format!(
                "{} is of format {format}, this foreman reads {FORMAT}: use a newer foreman",
                path.display()
            )))
        }
        _ => return Err(refuse(path, "the database lacks foreman's metadata (format, store, seq)")),
    };
    Ok((db, meta, kv))
}

/// Writes a new database holding `kv` at `path`, under another name first and renamed once complete.
fn create(dir: &Path, kv: &Kv, imported: Option<u64>) -> Result<(), MetaError> {
    let tmp = dir.join(DB_TMP);
    let path = dir.join(DB);
    let failed = |e: redb::Error| MetaError::Unavailable(format!("cannot create {}: {e}", tmp.display()));
    let _ = fs::remove_file(&tmp);
    let db = Builder::new().set_cache_size(CACHE_BYTES).create(&tmp).map_err(|e| failed(e.into()))?;
    let write = || -> Result<(), redb::Error> {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.set_two_phase_commit(true);
        {
            let mut meta = txn.open_table(META)?;
            meta.insert("format", FORMAT)?;
            meta.insert("store", new_store_id())?;
            meta.insert("seq", 0)?;
            if let Some(seq) = imported {
                meta.insert("imported", seq)?;
            }
            let mut table = txn.open_table(KV)?;
            for (key, value) in kv {
                table.insert(key.as_str(), value.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    };
    write().map_err(failed)?;
    db.close().map_err(|e| failed(e.into()))?;
    fs::rename(&tmp, &path).map_err(|e| io_error(&path, "cannot rename the new database to", e))?;
    sync_dir(dir);
    Ok(())
}

impl Durable {
    /// Opens (or creates) the store in `dir` and returns it with every durable key and value. Refuses, saying which
    /// file and what to do, rather than start with less than the store acknowledged (see the module's docs).
    pub(super) fn open(dir: &Path) -> Result<(Durable, Kv), MetaError> {
        Durable::open_with(dir, |file| file)
    }

    /// [`Durable::open`], with redb's storage wrapped by `backend` (tests inject faults there).
    fn open_with<B: StorageBackend>(
        dir: &Path,
        backend: impl FnOnce(FileBackend) -> B,
    ) -> Result<(Durable, Kv), MetaError> {
        // Owner-only when made here: job records hold their configurations, which other local users have no
        // business reading. An existing directory keeps the mode its owner gave it.
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(|e| io_error(dir, "cannot create the data directory", e))?;
        let lock = lock_dir(dir)?;
        let path = dir.join(DB);
        let manifest_path = dir.join(MANIFEST);
        let _ = fs::remove_file(dir.join(DB_TMP));
        let manifest = read_manifest(&manifest_path, &path)?;
        let legacy = legacy::present(dir);

        let exists = path.try_exists().map_err(|e| io_error(&path, "cannot look for", e))?;
        let created = !exists;
        if !exists {
            if let Some(m) = &manifest {
                return Err(refuse(
                    &path,
                    format!(
                        "the database is missing, but {} says it held {} transactions",
                        manifest_path.display(),
                        m.seq
                    ),
                ));
            }
            let (kv, imported) = if legacy {
                let old = legacy::read(dir)?;
                tracing::info!(
                    dir = %dir.display(),
                    keys = old.kv.len(),
                    seq = old.seq,
                    records = old.records,
                    "importing the files of an earlier foreman ({}, {}) into {DB}",
                    legacy::SNAPSHOT,
                    legacy::LOG
                );
                (old.kv, Some(old.seq))
            } else {
                (BTreeMap::new(), None)
            };
            create(dir, &kv, imported)?;
        }

        let len = fs::metadata(&path).map_err(|e| io_error(&path, "cannot read", e))?.len();
        if len == 0 {
            return Err(refuse(&path, "the database file is empty"));
        }
        let file =
            OpenOptions::new().read(true).write(true).open(&path).map_err(|e| io_error(&path, "cannot open", e))?;
        let (db, meta, kv) = open_db(&path, backend(FileBackend::new(file)))?;

        if legacy && meta.imported.is_none() {
            return Err(MetaError::Corrupt {
                key: dir.display().to_string(),
                reason: format!(
                    "the directory holds both {DB} and the files of an earlier foreman ({}, {}) that were never \
                     imported into it; move whichever you do not mean to use out of the directory",
                    legacy::SNAPSHOT,
                    legacy::LOG
                ),
            });
        }
        match &manifest {
            None if !created => tracing::warn!(
                manifest = %manifest_path.display(),
                "no manifest: {DB} is taken as it is (transaction {}) and a new manifest is written", meta.seq
            ),
            None => {}
            Some(m) if m.store != meta.store => {
                return Err(refuse_unless_accepted(
                    &path,
                    format!(
                        "the database is store {:016x}, but {} names store {:016x}: it was replaced by another data \
                         directory's database",
                        meta.store,
                        manifest_path.display(),
                        m.store
                    ),
                    &manifest_path,
                ))
            }
            Some(m) if m.seq > meta.seq => {
                return Err(refuse_unless_accepted(
                    &path,
                    format!(
                        "the database holds {} transactions, but {} recorded {}: it was replaced by an older copy, \
                         without the last {} transactions",
                        meta.seq,
                        manifest_path.display(),
                        m.seq,
                        m.seq - meta.seq
                    ),
                    &manifest_path,
                ))
            }
            Some(_) => {}
        }

        let mut durable =
            Durable { dir: dir.to_owned(), db, _lock: lock, store: meta.store, seq: meta.seq, unwitnessed: 0 };
        durable.write_manifest()?;
        if legacy {
            legacy::move_aside(dir)?;
            sync_dir(dir);
        }
        Ok((durable, kv))
    }

    /// Replaces the manifest with this store's id and last transaction.
    fn write_manifest(&mut self) -> Result<(), MetaError> {
        let manifest = Manifest { format: FORMAT, store: self.store, seq: self.seq };
        let tmp = self.dir.join(MANIFEST_TMP);
        let path = self.dir.join(MANIFEST);
        let bytes = serde_json::to_vec(&manifest).map_err(|e| MetaError::Unavailable(e.to_string()))?;
        let written = File::create(&tmp).and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()));
        written.map_err(|e| io_error(&tmp, "cannot write", e))?;
        fs::rename(&tmp, &path).map_err(|e| io_error(&path, "cannot rename the new manifest to", e))?;
        sync_dir(&self.dir);
        self.unwitnessed = 0;
        Ok(())
    }

    /// Commits `changes` as one durable transaction.
    pub(super) fn commit(&mut self, changes: &[Change]) -> Result<(), CommitError> {
        let seq = self.seq + 1;
        let staged = || -> Result<redb::WriteTransaction, redb::Error> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            txn.set_two_phase_commit(true);
            {
                let mut kv = txn.open_table(KV)?;
                for change in changes {
                    match change {
                        Change::Put { key, value } => {
                            kv.insert(key.as_str(), value.as_slice())?;
                        }
                        Change::Del { key } => {
                            kv.remove(key.as_str())?;
                        }
                    }
                }
                txn.open_table(META)?.insert("seq", seq)?;
            }
            Ok(txn)
        };
        // Dropping a transaction that was not committed aborts it.
        let txn = staged().map_err(|e| CommitError::NotWritten(format!("cannot write to {DB}: {e}")))?;
        txn.commit().map_err(|e| CommitError::Unknown(format!("the commit to {DB} failed: {e}")))?;
        self.seq = seq;
        self.unwitnessed += 1;
        if self.unwitnessed >= MANIFEST_EVERY {
            if let Err(e) = self.write_manifest() {
                tracing::warn!("could not bring the manifest up to date, will try again: {e}");
            }
        }
        Ok(())
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        if self.unwitnessed > 0 {
            if let Err(e) = self.write_manifest() {
                tracing::warn!("could not bring the manifest up to date as the store closed: {e}");
            }
        }
    }
}

#[cfg(all(test, not(madsim)))]
mod tests;
