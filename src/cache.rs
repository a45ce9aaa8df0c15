//! The artifact cache: every file scoreflow writes lives here.
//!
//! ```text
//! artifacts/
//!   objects/<2 hex>/<content hash>.parquet   output tables, content-addressed
//!   objects/<2 hex>/<content hash>.bin       output blobs (model weights)
//!   records/<2 hex>/<stage key>.json         one record per completed stage key
//!   locks/<stage key>.lock                   held while a stage key is computed
//!   tmp/                                     files being written
//!   runs/<pipeline>/<run id>.json            one manifest per run
//!   runs/<pipeline>/latest.json              the latest manifest (gc roots)
//! ```
//!
//! Writes are crash-safe by construction: every file is written under `tmp/` and
//! renamed into place, objects first, the record last. A record therefore exists
//! only for a stage that finished, and names objects that were complete before it
//! was written. A process killed mid-stage leaves at most stray files in `tmp/`
//! (removed by `gc`) and nothing a later run could mistake for a result. A record
//! that does not parse, or whose objects are missing or of the wrong size, is a
//! cache miss, never a result. Object contents are verified against their content
//! hash whenever they are read.
//!
//! Concurrency: computing a stage key takes an exclusive OS file lock on
//! `locks/<key>.lock` (released by the kernel if the process dies), then checks
//! the record again, so two runs sharing a cache never compute the same key twice
//! and never block each other on unrelated stages.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::frame::Table;
use crate::hash::{Hash, blob_hash};
use crate::stages::{Artifact, Format};

/// Errors from the cache's file system work.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error("cannot encode {what}: {why}")]
    Encode { what: String, why: String },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CacheError + 'a {
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
    /// The expanded hash inputs (see [`crate::hash::KeyInputs`]); read only to
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

/// A manifest line for one stage of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestStage {
    pub name: String,
    pub kind: String,
    pub method: String,
    /// `fresh`, `ran`, `failed`, `skipped` or `not selected`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub reasons: Vec<String>,
    pub started_ms: u64,
    pub finished_ms: u64,
    pub duration_ms: u64,
    pub outputs: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What one `scoreflow run` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub pipeline: String,
    pub spec_file: String,
    pub run_id: String,
    pub started_ms: u64,
    pub finished_ms: u64,
    pub ok: bool,
    pub stages: Vec<ManifestStage>,
}

impl Manifest {
    pub fn stage(&self, name: &str) -> Option<&ManifestStage> {
        self.stages.iter().find(|s| s.name == name)
    }
}

/// An exclusive lock on one stage key, released on drop (or by the kernel when
/// the process dies).
pub struct KeyLock {
    _file: File,
}

/// What `gc` removed (or would remove).
#[derive(Debug, Default)]
pub struct GcReport {
    pub records: usize,
    pub objects: usize,
    pub temp_files: usize,
    pub bytes: u64,
    pub kept_records: usize,
    pub kept_objects: usize,
}

/// A cache rooted at a directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

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

    /// Write `bytes` to `dest` atomically: a unique file under `tmp/`, then rename.
    pub fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> Result<(), CacheError> {
        let tmp_dir = self.root.join("tmp");
        fs::create_dir_all(&tmp_dir).map_err(io_err("create", &tmp_dir))?;
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_err("create", parent))?;
        }
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = tmp_dir.join(format!("{}-{}-{n}.partial", std::process::id(), now_ms()));
        let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
        f.write_all(bytes).map_err(io_err("write", &tmp))?;
        drop(f);
        fs::rename(&tmp, dest).map_err(io_err("rename into place", dest))
    }

    /// The record of `key`, or `Ok(None)` on a miss. A record that cannot be read
    /// as one is a miss too (it is rewritten when the stage completes).
    pub fn load_record(&self, key: &Hash) -> Result<Option<Record>, CacheError> {
        let path = self.record_path(key);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(CacheError::Io { action: "read", path, source: e });
            }
        };
        Ok(serde_json::from_slice::<Record>(&bytes).ok().filter(|r| r.format == RECORD_FORMAT && r.key == key.hex()))
    }

    /// The first output of `record` whose object is missing or has the wrong size
    /// (a cheap check: one `stat` per output, no reads).
    pub fn missing_output(&self, record: &Record) -> Option<String> {
        record
            .outputs
            .iter()
            .find(|(_, o)| fs::metadata(self.root.join(&o.file)).map(|m| m.len() != o.bytes).unwrap_or(true))
            .map(|(name, _)| name.clone())
    }

    pub fn write_record(&self, record: &Record) -> Result<(), CacheError> {
        let key: Hash = record.key.parse().map_err(|why| CacheError::Encode { what: "record key".into(), why })?;
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| CacheError::Encode { what: "record".into(), why: e.to_string() })?;
        self.write_atomic(&self.record_path(&key), &bytes)
    }

    /// Forget a record (used when one of its objects turned out to be corrupt).
    pub fn remove_record(&self, key: &Hash) {
        let _ = fs::remove_file(self.record_path(key));
    }

    /// Store an artifact under its content hash (no-op when already present).
    /// `metadata` goes into Parquet key-value metadata. Returns its entry.
    pub fn store(&self, artifact: &Artifact, metadata: &[(String, String)]) -> Result<OutputEntry, CacheError> {
        let (hash, format, rows) = match artifact {
            Artifact::Table(t) => (t.content_hash(), Format::Table, Some(t.num_rows() as u64)),
            Artifact::Blob(b) => (blob_hash(b), Format::Blob, None),
        };
        let rel = Cache::object_rel(&hash, format);
        let path = self.root.join(&rel);
        let bytes = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(_) => {
                let encoded = match artifact {
                    Artifact::Table(t) => {
                        let mut meta = metadata.to_vec();
                        meta.push(("scoreflow.content_hash".into(), hash.hex()));
                        t.to_parquet(&meta)
                            .map_err(|e| CacheError::Encode { what: "table".into(), why: e.to_string() })?
                    }
                    Artifact::Blob(b) => b.clone(),
                };
                self.write_atomic(&path, &encoded)?;
                encoded.len() as u64
            }
        };
        Ok(OutputEntry { hash: hash.hex(), format: format.name().into(), file: rel, bytes, rows })
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

    /// Delete an object that failed verification.
    pub fn remove_object(&self, hash: &Hash, format: Format) {
        let _ = fs::remove_file(self.object_path(hash, format));
    }

    /// Take the exclusive lock of a stage key, waiting for another process that
    /// holds it.
    pub fn lock(&self, key: &Hash) -> Result<KeyLock, CacheError> {
        let dir = self.root.join("locks");
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let path = dir.join(format!("{}.lock", key.hex()));
        let file =
            File::options().create(true).truncate(false).write(true).open(&path).map_err(io_err("open", &path))?;
        file.lock().map_err(io_err("lock", &path))?;
        Ok(KeyLock { _file: file })
    }

    /// Write a report's files under `reports/<pipeline>/<stage>/` (replacing what
    /// was there) and return the directory. Reports are views of cached objects,
    /// rewritten by every run; nothing reads them back.
    pub fn publish(&self, pipeline: &str, stage: &str, files: &[(String, Vec<u8>)]) -> Result<PathBuf, CacheError> {
        let dir = self.root.join("reports").join(pipeline).join(stage);
        for (name, bytes) in files {
            self.write_atomic(&dir.join(name), bytes)?;
        }
        Ok(dir)
    }

    fn runs_dir(&self, pipeline: &str) -> PathBuf {
        self.root.join("runs").join(pipeline)
    }

    /// Write a run's manifest and make it the pipeline's latest.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<PathBuf, CacheError> {
        let bytes = serde_json::to_vec_pretty(manifest)
            .map_err(|e| CacheError::Encode { what: "manifest".into(), why: e.to_string() })?;
        let dir = self.runs_dir(&manifest.pipeline);
        let path = dir.join(format!("{}.json", manifest.run_id));
        self.write_atomic(&path, &bytes)?;
        self.write_atomic(&dir.join("latest.json"), &bytes)?;
        Ok(path)
    }

    /// The latest manifest of a pipeline, if any (an unreadable one counts as none).
    pub fn latest_manifest(&self, pipeline: &str) -> Option<Manifest> {
        let bytes = fs::read(self.runs_dir(pipeline).join("latest.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Remove every record and object that the latest run of each known pipeline
    /// does not reach, plus leftovers in `tmp/` and unheld locks.
    pub fn gc(&self, dry_run: bool) -> Result<GcReport, CacheError> {
        let mut keep_records = BTreeSet::new();
        let mut keep_objects = BTreeSet::new();
        let runs = self.root.join("runs");
        for entry in read_dir(&runs)? {
            let latest = entry.join("latest.json");
            let Ok(bytes) = fs::read(&latest) else {
                continue;
            };
            let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) else {
                continue;
            };
            for stage in &manifest.stages {
                let Some(key) = stage.key.as_ref().and_then(|k| k.parse::<Hash>().ok()) else {
                    continue;
                };
                if let Some(record) = self.load_record(&key)? {
                    keep_records.insert(self.record_path(&key));
                    for o in record.outputs.values() {
                        keep_objects.insert(self.root.join(&o.file));
                    }
                }
            }
        }
        let mut report = GcReport::default();
        let remove = |path: &Path, counter: &mut usize, bytes: &mut u64| -> Result<(), CacheError> {
            *bytes += fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            *counter += 1;
            if !dry_run {
                fs::remove_file(path).map_err(io_err("remove", path))?;
            }
            Ok(())
        };
        for shard in read_dir(&self.root.join("records"))? {
            for file in read_dir(&shard)? {
                if keep_records.contains(&file) {
                    report.kept_records += 1;
                } else {
                    remove(&file, &mut report.records, &mut report.bytes)?;
                }
            }
        }
        for shard in read_dir(&self.root.join("objects"))? {
            for file in read_dir(&shard)? {
                if keep_objects.contains(&file) {
                    report.kept_objects += 1;
                } else {
                    remove(&file, &mut report.objects, &mut report.bytes)?;
                }
            }
        }
        for file in read_dir(&self.root.join("tmp"))? {
            remove(&file, &mut report.temp_files, &mut report.bytes)?;
        }
        for file in read_dir(&self.root.join("locks"))? {
            // Only locks nobody holds; a held one belongs to a running stage.
            if let Ok(f) = File::open(&file)
                && f.try_lock().is_ok()
                && !dry_run
            {
                let _ = fs::remove_file(&file);
            }
        }
        Ok(report)
    }
}

/// Entries of a directory, sorted; a missing directory has none.
fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, CacheError> {
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
    use crate::frame::ColumnData;

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
        let report = cache.gc(false).unwrap();
        assert_eq!(report.temp_files, 1);
        assert!(!dir.path().join("tmp/123.partial").exists());
    }
}
