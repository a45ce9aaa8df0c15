// Over 700 lines: objects, records, locks and leases share one set of file rules; a third is their unit tests.
//! The artifact cache: every file scoreflow writes lives here.
//!
//! ```text
//! artifacts/
//!   objects/<2 hex>/<content hash>.parquet   output tables, content-addressed
//!   objects/<2 hex>/<content hash>.bin       output blobs (model weights)
//!   records/<2 hex>/<stage key>.json         one record per completed stage key
//!   locks/<stage key>.lock                   exists while a stage key is computed
//!   gc.lock                                  shared by runs, exclusive for gc/verify
//!   tmp/                                     files being written
//!   runs/<pipeline>/<run id>.json            one manifest per run
//!   runs/<pipeline>/latest.json              the latest manifest (gc roots)
//!   latest/, reports/                        views of the latest run's results
//! ```
//!
//! This module holds objects, records, locks and leases; runs, manifests and
//! the views are in [`crate::engine::manifest`], `gc` and `verify` in
//! [`crate::engine::maintenance`].
//!
//! Writes are crash-safe by construction: every file is written under `tmp/` and
//! renamed into place, objects first, the record last. A record therefore exists
//! only for a stage that finished, and names objects that were complete before it
//! was written. A process killed mid-stage leaves at most stray files in `tmp/`
//! (removed by the next run once their writer is dead, and by `gc`) and nothing a
//! later run could mistake for a result. A record that does not parse is removed
//! and reported; one whose objects are missing, of the wrong size or whose bytes
//! do not match the file hash it records is a cache miss, never a result (the bad
//! object is removed). Object contents are verified against their content hash
//! whenever they are read, and before `store` reuses a file already in place.
//!
//! Concurrency: computing a stage key takes an exclusive OS file lock on
//! `locks/<key>.lock` (released by the kernel if the process dies; the file is
//! removed when the key is done), then checks the record again, so two runs
//! sharing a cache never compute the same key twice and never block each other on
//! unrelated stages. A run holds a shared lock on `gc.lock` from start to end;
//! `gc` and `verify` take it exclusively, so they wait for runs and runs wait for
//! them.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::engine::frame::Table;
use crate::engine::hash::{Hash, blob_hash};
use crate::engine::stage::{Artifact, Format};

pub use crate::engine::maintenance::{GcReport, Problem, VerifyReport};
pub use crate::engine::manifest::{Home, Manifest, ManifestStage, StageState};

/// How closely a record's objects are checked before the record counts as a
/// result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Every byte against the recorded file hash: before a result is reused.
    Bytes,
    /// Present and of the recorded size: to read a result that is verified by
    /// content when its object is read (`compare`'s metric tables).
    Size,
}

/// Errors from the cache's file system work.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error("cannot encode {what}: {why}")]
    Encode { what: String, why: String },
    /// A run manifest that `gc` needs as a root does not parse: removing
    /// anything could remove what it names.
    #[error(
        "{path} does not parse ({why}); gc keeps what the runs and tags worth keeping name, so it removed nothing. Restore the file (runs/<pipeline>/ holds every run's manifest, tags/ every tag) or remove it"
    )]
    BadRoot { path: PathBuf, why: String },
    /// A run manifest that a report on runs needs does not parse.
    #[error(
        "{path} does not parse ({why}); a run's manifest is written whole or not at all, so something else changed it. Restore it, or remove it to leave that run out"
    )]
    BadManifest { path: PathBuf, why: String },
    /// `scoreflow tag` could not tag: no such run, several, or a bad name.
    #[error("{0}")]
    BadTag(String),
}

pub(crate) fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CacheError + 'a {
    move |source| CacheError::Io { action, path: path.to_path_buf(), source }
}

/// Why a stored object could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("missing")]
    Missing,
    #[error("corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// One output in a record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutputEntry {
    /// Content hash (hex).
    pub hash: String,
    /// `table` or `blob`.
    pub format: String,
    /// Path relative to the cache root.
    pub file: String,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// blake3 of the object file's bytes (hex): checked on every cache hit, so a
    /// result `run` calls fresh was read whole and matched. Records written before
    /// it existed lack it; their objects are verified by content instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_hash: Option<String>,
}

impl OutputEntry {
    pub fn content_hash(&self) -> Option<Hash> {
        self.hash.parse().ok()
    }
    pub fn format(&self) -> Format {
        if self.format == "blob" { Format::Blob } else { Format::Table }
    }
}

/// What a completed stage key produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub format: u32,
    pub key: String,
    /// The expanded hash inputs (see [`crate::engine::hash::KeyInputs`]); read only to
    /// explain why a later key differs.
    pub hash_inputs: serde_json::Value,
    pub outputs: BTreeMap<String, OutputEntry>,
    /// The name of the stage that produced it (informational; not part of the key).
    pub stage_name: String,
    pub started_ms: u64,
    pub finished_ms: u64,
    pub scoreflow_version: String,
}

pub const RECORD_FORMAT: u32 = 1;

/// An exclusive lock on one stage key, released on drop (or by the kernel when
/// the process dies). Its file exists only while it is held: the holder removes
/// it before unlocking, and a waiter that then gets the lock on the removed file
/// sees that the path no longer names its file and tries again.
pub struct KeyLock {
    file: Option<File>,
    path: PathBuf,
}

impl Drop for KeyLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        drop(self.file.take());
    }
}

/// A run's hold on the cache: shared between runs, exclusive for `gc`, so `gc`
/// never deletes what a live run may still record. Released on drop (or by the
/// kernel when the process dies).
pub struct Lease {
    pub(crate) _file: File,
}

/// What the next run should know about a record.
#[derive(Debug)]
pub enum Lookup {
    /// No record for the key.
    Miss,
    /// A record file that is not a record (it has been removed): its path.
    Garbage(String),
    Hit(Record),
}

/// A cache rooted at a directory.
#[derive(Debug, Clone)]
pub struct Cache {
    pub(crate) root: PathBuf,
}

pub(crate) static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// This machine's host name (in temporary file names, so that a shared cache
/// tells one node's writers from another's).
pub fn host() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().replace(['/', '@'], "_"))
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into())
    })
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn sharded(&self, dir: &str, hex: &str, ext: &str) -> PathBuf {
        self.root.join(dir).join(&hex[..2]).join(format!("{hex}.{ext}"))
    }

    pub fn record_path(&self, key: &Hash) -> PathBuf {
        self.sharded("records", &key.hex(), "json")
    }

    pub fn object_rel(hash: &Hash, format: Format) -> String {
        let hex = hash.hex();
        let ext = match format {
            Format::Table => "parquet",
            Format::Blob => "bin",
        };
        format!("objects/{}/{hex}.{ext}", &hex[..2])
    }

    pub fn object_path(&self, hash: &Hash, format: Format) -> PathBuf {
        self.root.join(Cache::object_rel(hash, format))
    }

    /// `bytes` in a new, uniquely named file under `tmp/` (its name starts with
    /// the writer's pid and ends with its host), and `dest`'s folder made.
    fn temp_with(&self, dest: &Path, bytes: &[u8]) -> Result<PathBuf, CacheError> {
        let tmp_dir = self.root.join("tmp");
        fs::create_dir_all(&tmp_dir).map_err(io_err("create", &tmp_dir))?;
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_err("create", parent))?;
        }
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = tmp_dir.join(format!("{}-{}-{n}@{}.partial", std::process::id(), now_ms(), host()));
        let written = self
            .file_options()
            .open(&tmp)
            .map_err(io_err("create", &tmp))
            .and_then(|mut f| f.write_all(bytes).map_err(io_err("write", &tmp)));
        if let Err(e) = written {
            // A failed write (a full disk, say) leaves nothing behind.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(tmp)
    }

    /// How the cache creates a file: with the read and write bits of the cache
    /// root's own mode (a cache only its owner may enter gets files only its
    /// owner may read; the umask still applies), never those of a file it
    /// copies — a file input read from a 0600 file never becomes a 0644 object
    /// in a cache others can read.
    fn file_options(&self) -> fs::OpenOptions {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let mode = fs::metadata(&self.root).map_or(0o644, |m| m.permissions().mode() & 0o666);
            options.mode(mode);
        }
        options
    }

    /// Write `bytes` to `dest` atomically: a unique file under `tmp/`, then rename.
    pub fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> Result<(), CacheError> {
        let tmp = self.temp_with(dest, bytes)?;
        fs::rename(&tmp, dest).map_err(io_err("rename into place", dest)).inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
    }

    /// Write `bytes` to `dest` unless a file is there already: a unique file
    /// under `tmp/`, then a hard link, which (unlike a rename) never replaces
    /// and is atomic on local and network filesystems. Returns whether `bytes`
    /// were placed.
    fn place_new(&self, dest: &Path, bytes: &[u8]) -> Result<bool, CacheError> {
        let tmp = self.temp_with(dest, bytes)?;
        let linked = match fs::hard_link(&tmp, dest) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(CacheError::Io { action: "link into place", path: dest.to_path_buf(), source: e }),
        };
        let _ = fs::remove_file(&tmp);
        linked
    }

    /// The record of `key`, or `Ok(None)` on a miss. A record that cannot be read
    /// as one is a miss too (see [`Cache::lookup`], which also says so).
    pub fn load_record(&self, key: &Hash) -> Result<Option<Record>, CacheError> {
        Ok(match self.lookup(key)? {
            Lookup::Hit(r) => Some(r),
            _ => None,
        })
    }

    /// The record of `key`. A file that does not parse as the record of this key
    /// is [`Lookup::Garbage`] (see [`Cache::remove_record`]).
    pub fn lookup(&self, key: &Hash) -> Result<Lookup, CacheError> {
        let path = self.record_path(key);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lookup::Miss),
            // Not readable as a file (a directory in its place, say): not a
            // result, and no reason to stop at it; `verify` reports it.
            Err(_) if fs::metadata(&path).is_ok_and(|m| !m.is_file()) => return Ok(Lookup::Garbage(self.rel(&path))),
            Err(e) => {
                return Err(CacheError::Io { action: "read", path, source: e });
            }
        };
        match serde_json::from_slice::<Record>(&bytes).ok().filter(|r| r.format == RECORD_FORMAT && r.key == key.hex())
        {
            Some(r) => Ok(Lookup::Hit(r)),
            None => Ok(Lookup::Garbage(self.rel(&path))),
        }
    }

    pub(crate) fn rel(&self, path: &Path) -> String {
        path.strip_prefix(&self.root).unwrap_or(path).display().to_string()
    }

    /// Check one output's object file: present, of its recorded size, and with
    /// its recorded file hash (read whole: blake3 runs at several GB/s). Entries
    /// without a file hash are verified by content (decode and hash).
    pub fn check_entry(&self, o: &OutputEntry) -> Result<(), ObjectError> {
        self.check_entry_by(o, Verify::Bytes)
    }

    fn check_entry_by(&self, o: &OutputEntry, verify: Verify) -> Result<(), ObjectError> {
        self.read_checked(o, verify, false).map(|_| ())
    }

    /// Read the object an output entry names, checked (identity, size, file
    /// hash) before any decoder sees its bytes, then verified by content.
    pub fn read_entry(&self, o: &OutputEntry) -> Result<Artifact, ObjectError> {
        self.read_checked(o, Verify::Bytes, true).map(|a| a.expect("decoded on request"))
    }

    /// The entry's object, checked as `verify` says; decoded (and verified by
    /// content) when `decode` asks or when the entry has no file hash.
    fn read_checked(&self, o: &OutputEntry, verify: Verify, decode: bool) -> Result<Option<Artifact>, ObjectError> {
        // A record names its object by content hash: the file it names must be
        // that object's, so an edited `hash` or `file` is never taken at its word
        // (and never names a path outside the store).
        let hash =
            o.content_hash().ok_or_else(|| ObjectError::Corrupt(format!("bad content hash {:?} in record", o.hash)))?;
        let expected = Cache::object_rel(&hash, o.format());
        if o.file != expected {
            return Err(ObjectError::Corrupt(format!(
                "the record names file {} for object {}, whose file is {expected}",
                o.file,
                hash.short()
            )));
        }
        let path = self.root.join(&o.file);
        if verify == Verify::Size {
            return match fs::metadata(&path) {
                Ok(m) if m.len() == o.bytes => Ok(None),
                Ok(m) => Err(ObjectError::Corrupt(format!("{} bytes, recorded {}", m.len(), o.bytes))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ObjectError::Missing),
                Err(e) => Err(CacheError::Io { action: "stat", path, source: e }.into()),
            };
        }
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ObjectError::Missing),
            Err(e) => return Err(CacheError::Io { action: "read", path, source: e }.into()),
        };
        if bytes.len() as u64 != o.bytes {
            return Err(ObjectError::Corrupt(format!("{} bytes, recorded {}", bytes.len(), o.bytes)));
        }
        if let Some(h) = &o.file_hash {
            check_file_hash(&bytes, [h.as_str()])?;
            if !decode {
                return Ok(None);
            }
        }
        verify_bytes(bytes, &hash, o.format()).map(Some)
    }

    /// The first output of `record` whose object is missing or corrupt, with why.
    /// Nothing is removed: the stage reruns, and [`Cache::store`] replaces a bad
    /// object in place.
    pub fn bad_output(&self, record: &Record) -> Result<Option<(String, ObjectError)>, CacheError> {
        self.bad_output_by(record, Verify::Bytes)
    }

    /// [`Cache::bad_output`], checking the objects as `verify` says.
    pub fn bad_output_by(&self, record: &Record, verify: Verify) -> Result<Option<(String, ObjectError)>, CacheError> {
        for (name, o) in &record.outputs {
            match self.check_entry_by(o, verify) {
                Ok(()) => {}
                // An object that cannot be read (a directory in its place, a
                // permission) is not a result: the stage reruns, and storing
                // its output says what is in the way if it still is.
                Err(ObjectError::Cache(e)) => {
                    return Ok(Some((name.clone(), ObjectError::Corrupt(format!("unreadable ({e})")))));
                }
                Err(e) => return Ok(Some((name.clone(), e))),
            }
        }
        Ok(None)
    }

    /// A run's shared hold on the cache (see [`Lease`]); waits while `gc` runs.
    pub fn lease(&self) -> Result<Lease, CacheError> {
        let file = self.lease_file()?;
        let path = self.root.join("gc.lock");
        file.lock_shared().map_err(io_err("lock", &path))?;
        Ok(Lease { _file: file })
    }

    pub(crate) fn lease_file(&self) -> Result<File, CacheError> {
        fs::create_dir_all(&self.root).map_err(io_err("create", &self.root))?;
        let path = self.root.join("gc.lock");
        File::options().create(true).truncate(false).write(true).open(&path).map_err(io_err("open", &path))
    }

    /// Remove files under `tmp/` that a dead process left (their names start with
    /// the writer's process id; a process that no longer exists cannot finish
    /// them). Returns how many were removed. Only on Linux, where `/proc` says
    /// which processes live; elsewhere `gc` removes them.
    pub fn clean_stale_tmp(&self) -> usize {
        if !cfg!(target_os = "linux") {
            return 0;
        }
        let Ok(files) = read_dir(&self.root.join("tmp")) else {
            return 0;
        };
        let mut removed = 0;
        for f in files {
            let owned = Self::temp_owner(&f);
            if owned.is_some_and(|pid| pid != std::process::id() && !Self::alive(pid)) && fs::remove_file(&f).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// The process id a temporary file's name starts with (its writer's), when
    /// the writer ran on this host. `None` for another host's file (on a
    /// cluster the cache is shared and a pid means nothing across nodes).
    pub(crate) fn temp_owner(file: &Path) -> Option<u32> {
        let name = file.file_name()?.to_string_lossy().into_owned();
        let name = name.strip_suffix(".partial").unwrap_or(&name);
        if let Some((_, writer_host)) = name.rsplit_once('@')
            && writer_host != host()
        {
            return None;
        }
        name.split('-').next()?.parse().ok()
    }

    /// Whether process `pid` exists (Linux; elsewhere every writer is assumed alive).
    pub(crate) fn alive(pid: u32) -> bool {
        !cfg!(target_os = "linux") || Path::new(&format!("/proc/{pid}")).exists()
    }

    pub fn write_record(&self, record: &Record) -> Result<(), CacheError> {
        let key: Hash = record.key.parse().map_err(|why| CacheError::Encode { what: "record key".into(), why })?;
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| CacheError::Encode { what: "record".into(), why: e.to_string() })?;
        self.write_atomic(&self.record_path(&key), &bytes)
    }

    /// Forget a record (one that is garbage, or one of whose objects turned out to
    /// be corrupt).
    pub fn remove_record(&self, key: &Hash) {
        let _ = fs::remove_file(self.record_path(key));
    }

    /// Store an artifact under its content hash. A file already at that path
    /// is kept only when its bytes are the ones about to be written, or when
    /// they are the bytes another stage's record names for this object (two
    /// stages that produce one content write files that differ in their
    /// provenance metadata: the first placed stays). Anything else in place —
    /// a file whose footer or statistics were flipped but still decodes to the
    /// right content, say — is replaced atomically. `metadata` goes into
    /// Parquet key-value metadata. Returns its entry, with the size and file
    /// hash of the object now in place.
    pub fn store(&self, artifact: &Artifact, metadata: &[(String, String)]) -> Result<OutputEntry, CacheError> {
        let (hash, format, rows) = match artifact {
            Artifact::Table(t) => (t.content_hash(), Format::Table, Some(t.num_rows() as u64)),
            Artifact::Blob(b) => (blob_hash(b), Format::Blob, None),
        };
        let rel = Cache::object_rel(&hash, format);
        let path = self.root.join(&rel);
        let encoded = match artifact {
            Artifact::Table(t) => {
                let mut meta = metadata.to_vec();
                meta.push(("scoreflow.content_hash".into(), hash.hex()));
                t.to_parquet(&meta).map_err(|e| CacheError::Encode { what: "table".into(), why: e.to_string() })?
            }
            Artifact::Blob(b) => b.clone(),
        };
        let mine = (encoded.len() as u64, blake3::hash(&encoded));
        let (bytes, file_hash) = if self.place_new(&path, &encoded)? {
            mine
        } else {
            match fs::read(&path) {
                Ok(found) if blake3::hash(&found) == mine.1 => mine,
                Ok(found) if self.named_by_its_record(&rel, &found) => (found.len() as u64, blake3::hash(&found)),
                // Corrupt, unreadable or unknown: replaced by this writer's bytes.
                _ => {
                    self.write_atomic(&path, &encoded)?;
                    mine
                }
            }
        };
        Ok(OutputEntry {
            hash: hash.hex(),
            format: format.name().into(),
            file: rel,
            bytes,
            rows,
            file_hash: Some(file_hash.to_hex().to_string()),
        })
    }

    /// Whether `bytes` (in place at object `rel`) are the file that the record
    /// of the stage key in their own provenance metadata names for it, size and
    /// file hash: the object of another stage with the same content. The file
    /// hash covers every byte, so a flip anywhere (the metadata included) fails.
    fn named_by_its_record(&self, rel: &str, bytes: &[u8]) -> bool {
        let Some(key) = Table::parquet_metadata(bytes)
            .and_then(|m| m.into_iter().find(|(k, _)| k == "scoreflow.stage_key").map(|(_, v)| v))
            .and_then(|k| k.parse::<Hash>().ok())
        else {
            return false;
        };
        let Ok(Lookup::Hit(record)) = self.lookup(&key) else {
            // No record yet: its writer may be between this object and its
            // record, holding its key's lock. A live writer's object stays.
            return self.key_is_locked(&key);
        };
        let found = blake3::hash(bytes).to_hex();
        record
            .outputs
            .values()
            .any(|o| o.file == rel && o.bytes == bytes.len() as u64 && o.file_hash.as_deref() == Some(found.as_str()))
    }

    /// Read an object and verify it against its content hash.
    pub fn read(&self, hash: &Hash, format: Format) -> Result<Artifact, ObjectError> {
        let path = self.object_path(hash, format);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ObjectError::Missing),
            Err(e) => {
                return Err(CacheError::Io { action: "read", path, source: e }.into());
            }
        };
        verify_bytes(bytes, hash, format)
    }

    /// Delete an object that failed verification.
    pub fn remove_object(&self, hash: &Hash, format: Format) {
        let _ = fs::remove_file(self.object_path(hash, format));
    }

    /// Whether some process holds the lock of stage key `key` now.
    fn key_is_locked(&self, key: &Hash) -> bool {
        let path = self.root.join("locks").join(format!("{}.lock", key.hex()));
        File::open(&path).is_ok_and(|f| matches!(f.try_lock(), Err(fs::TryLockError::WouldBlock)))
    }

    /// Take the exclusive lock of a stage key, waiting for another process that
    /// holds it.
    pub fn lock(&self, key: &Hash) -> Result<KeyLock, CacheError> {
        let dir = self.root.join("locks");
        let path = dir.join(format!("{}.lock", key.hex()));
        loop {
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
            let file =
                File::options().create(true).truncate(false).write(true).open(&path).map_err(io_err("open", &path))?;
            file.lock().map_err(io_err("lock", &path))?;
            // The previous holder removes the file before unlocking: holding a
            // lock on a file the path no longer names locks nothing.
            if same_file(&file, &path) {
                return Ok(KeyLock { file: Some(file), path });
            }
        }
    }
}

/// `Ok` when the blake3 of `bytes` is one of the `recorded` file hashes
/// (hex), else `Corrupt` naming what was found and what was recorded.
pub(crate) fn check_file_hash<'a>(
    bytes: &[u8],
    recorded: impl IntoIterator<Item = &'a str>,
) -> Result<(), ObjectError> {
    let found = blake3::hash(bytes).to_hex();
    let recorded: Vec<&str> = recorded.into_iter().collect();
    if recorded.contains(&found.as_str()) {
        return Ok(());
    }
    let short: Vec<&str> = recorded.iter().map(|h| h.get(..12).unwrap_or(h)).collect();
    Err(ObjectError::Corrupt(format!("file hash {}, recorded {}", &found[..12], short.join(" or "))))
}

/// Parse and hash an object's bytes; `Corrupt` unless the content hash matches.
pub(crate) fn verify_bytes(bytes: Vec<u8>, hash: &Hash, format: Format) -> Result<Artifact, ObjectError> {
    let (artifact, found) = match format {
        Format::Table => {
            let (t, _) = Table::from_parquet(bytes).map_err(|e| ObjectError::Corrupt(e.to_string()))?;
            let h = t.content_hash();
            (Artifact::Table(t), h)
        }
        Format::Blob => {
            let h = blob_hash(&bytes);
            (Artifact::Blob(bytes), h)
        }
    };
    if found != *hash {
        return Err(ObjectError::Corrupt(format!("content hash is {}, expected {}", found.short(), hash.short())));
    }
    Ok(artifact)
}

/// Whether `path` still names the open `file` (same device and inode).
fn same_file(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

/// Entries of a directory, sorted; a missing directory has none.
/// The files of a sharded directory (`records/`, `objects/`, `checkpoints/`:
/// `<2 hex>/<name>`), sorted. An entry of `dir` that is not a directory — a
/// stray file, a link — is listed itself (its name is no key's, so the
/// caller reports it), never followed.
pub(crate) fn sharded(dir: &Path) -> Result<Vec<PathBuf>, CacheError> {
    let mut out = Vec::new();
    for shard in read_dir(dir)? {
        if fs::symlink_metadata(&shard).is_ok_and(|m| m.is_dir()) {
            out.extend(read_dir(&shard)?);
        } else {
            out.push(shard);
        }
    }
    Ok(out)
}

/// Remove what is at `path` in the cache: a file or a link (never what it
/// points to), or a directory in a file's place with what it holds.
pub(crate) fn remove_entry(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    }
}

pub(crate) fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, CacheError> {
    match fs::read_dir(dir) {
        Ok(rd) => {
            let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            v.sort();
            Ok(v)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(CacheError::Io { action: "list", path: dir.to_path_buf(), source: e }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::frame::ColumnData;

    fn table() -> Artifact {
        Artifact::Table(Table::new().with("x", ColumnData::F64(vec![1.0, 2.0])))
    }

    #[test]
    fn store_then_read_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let entry = cache.store(&table(), &[]).unwrap();
        let hash = entry.content_hash().unwrap();
        assert_eq!(cache.read(&hash, Format::Table).unwrap(), table());
        // Corrupt it: flip bytes in the middle.
        let path = dir.path().join(&entry.file);
        let mut bytes = fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes.truncate(mid);
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(cache.read(&hash, Format::Table), Err(ObjectError::Corrupt(_))));
    }

    #[test]
    fn a_miss_is_ok_none_and_garbage_records_are_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let key = Hash::of(b"k");
        assert!(cache.load_record(&key).unwrap().is_none());
        let path = cache.record_path(&key);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, b"{\"format\": 1, \"key\": ").unwrap();
        assert!(cache.load_record(&key).unwrap().is_none());
    }

    #[test]
    fn stray_temp_files_are_not_results_and_gc_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        fs::create_dir_all(dir.path().join("tmp")).unwrap();
        fs::write(dir.path().join("tmp/123.partial"), b"half").unwrap();
        let report = cache.gc(false, Default::default()).unwrap();
        assert_eq!(report.temp_files, 1);
        assert!(!dir.path().join("tmp/123.partial").exists());
    }

    /// On a shared cache a pid means something only on its own host: another
    /// host's temporary file is never taken for a dead writer's by a run here.
    #[test]
    fn temporary_files_name_their_writers_host() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let mine = cache.temp_with(&dir.path().join("x"), b"1").unwrap();
        assert_eq!(Cache::temp_owner(&mine), Some(std::process::id()));
        assert!(mine.to_string_lossy().ends_with(&format!("@{}.partial", host())));
        let elsewhere = dir.path().join("tmp/4000000-1-0@some-other-node.partial");
        fs::write(&elsewhere, b"half").unwrap();
        assert_eq!(Cache::temp_owner(&elsewhere), None);
        cache.clean_stale_tmp();
        assert!(elsewhere.exists(), "not this host's to judge");
    }

    /// Writers of one content at once (stages of different keys, each under
    /// its key's lock, storing then recording as the worker does): the first
    /// file placed stays, and every entry names its bytes.
    #[test]
    fn concurrent_stores_of_one_content_agree_on_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let t = Artifact::Table(Table::new().with("v", crate::engine::frame::ColumnData::I64(vec![1, 2])));
        let entries: Vec<OutputEntry> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let (cache, t) = (&cache, &t);
                    s.spawn(move || {
                        let key = Hash::of(format!("stage {i}").as_bytes());
                        let _lock = cache.lock(&key).unwrap();
                        let entry = cache.store(t, &[("scoreflow.stage_key".into(), key.hex())]).unwrap();
                        let record = Record {
                            format: RECORD_FORMAT,
                            key: key.hex(),
                            hash_inputs: serde_json::Value::Null,
                            outputs: [("table".to_string(), entry.clone())].into_iter().collect(),
                            stage_name: format!("s{i}"),
                            started_ms: 0,
                            finished_ms: 0,
                            scoreflow_version: String::new(),
                        };
                        cache.write_record(&record).unwrap();
                        entry
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let on_disk = blake3::hash(&fs::read(dir.path().join(&entries[0].file)).unwrap()).to_hex().to_string();
        for e in &entries {
            assert_eq!(e.file_hash.as_deref(), Some(on_disk.as_str()));
        }
    }

    /// A live process's temporary file is a write in progress: gc keeps it (a
    /// run about to rename its spec ownership into place failed beside gc).
    #[test]
    fn gc_keeps_a_live_writers_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        fs::create_dir_all(dir.path().join("tmp")).unwrap();
        let live = dir.path().join(format!("tmp/{}-0.json", std::process::id()));
        fs::write(&live, b"being written").unwrap();
        let report = cache.gc(false, Default::default()).unwrap();
        assert_eq!(report.temp_files, 0);
        assert!(live.exists());
    }
}
