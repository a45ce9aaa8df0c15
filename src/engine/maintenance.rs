//! Keeping a cache healthy: `gc` removes what no run worth keeping uses
//! (each pipeline's latest run, every run younger than a cut-off, 30 days by
//! default, and every tagged run), `verify` checks every object and record
//! and removes what is bad. Both hold
//! the cache exclusively (runs hold it shared), so neither ever touches a result
//! a live run has made and not yet recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::path::Path;

use crate::engine::cache::{
    Cache, CacheError, Lease, Lookup, Manifest, ManifestStage, ObjectError, Record, check_file_hash, io_err, read_dir,
    remove_entry, sharded,
};
use crate::engine::hash::Hash;
use crate::engine::stage::Format;

/// One problem `verify` found (and removed).
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Path relative to the cache root.
    pub path: String,
    pub what: String,
    /// Whether verify removed it (an entry it cannot read is left in place).
    pub removed: bool,
}

/// What `scoreflow verify` checked.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub records: usize,
    pub objects: usize,
    pub checkpoints: usize,
    pub problems: Vec<Problem>,
}

/// What `gc` keeps: each pipeline's latest run (the results of its failed
/// stages from the newest run that has them), every run that finished less
/// than `keep_younger_than` ago, and every tagged run ([`Cache::tag`]).
#[derive(Debug, Clone, Copy)]
pub struct GcPolicy {
    pub keep_younger_than: std::time::Duration,
}

impl Default for GcPolicy {
    fn default() -> Self {
        GcPolicy { keep_younger_than: std::time::Duration::from_secs(30 * 24 * 3600) }
    }
}

/// A run kept by name: `scoreflow tag RUN NAME`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tag {
    pub name: String,
    /// The pipeline's home (`runs/<home>/`) and the run's id there.
    pub home: String,
    pub run_id: String,
    pub tagged_ms: u64,
}

/// What `gc` removed (or would remove).
#[derive(Debug, Default)]
pub struct GcReport {
    /// What was (or would be) removed, one line each: the record's path and the
    /// stage it was made for, or the object's path and size.
    pub removed: Vec<String>,
    pub records: usize,
    pub objects: usize,
    pub temp_files: usize,
    pub bytes: u64,
    pub kept_records: usize,
    pub kept_objects: usize,
    /// Checkpoints removed (their stage finished, they do not verify, or
    /// they are older than the cut-off) and kept (work a run can resume).
    pub checkpoints: usize,
    pub kept_checkpoints: usize,
}

impl Cache {
    /// `scoreflow verify`: every object against the content hash its name
    /// states, every record parsed and its outputs checked (size, file hash).
    /// What is bad is removed — a corrupt object, a garbage record, a record
    /// naming a bad or missing object — so the next run recomputes it.
    pub fn verify(&self) -> Result<VerifyReport, CacheError> {
        let _gc = self.exclusive()?;
        let mut report = VerifyReport::default();
        let mut bad_objects = BTreeSet::new();
        // Every record file, read once: its key (from its name), whether it is
        // a file at all, and what it holds.
        let mut records = Vec::new();
        for file in sharded(&self.root.join("records"))? {
            let key = file.file_stem().and_then(|n| n.to_str()).and_then(|n| n.parse::<Hash>().ok());
            let readable = !fs::metadata(&file).is_ok_and(|m| !m.is_file());
            let looked = if readable { key.map(|k| self.lookup(&k)) } else { None };
            records.push((file, key, readable, looked));
        }
        // The file hashes records give each object: its bytes are checked
        // against them before any decoder reads it (an object no record names
        // is verified by content).
        let mut recorded: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (_, _, _, looked) in &records {
            if let Some(Ok(Lookup::Hit(record))) = looked {
                for o in record.outputs.values() {
                    if let Some(h) = &o.file_hash {
                        recorded.entry(o.file.clone()).or_default().insert(h.clone());
                    }
                }
            }
        }
        for file in sharded(&self.root.join("objects"))? {
            report.objects += 1;
            let rel = self.rel(&file);
            let name = file.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let format = if file.extension().is_some_and(|e| e == "bin") { Format::Blob } else { Format::Table };
            let by_file_hash = recorded.get(&rel).map(|hashes| match fs::read(&file) {
                Ok(bytes) => check_file_hash(&bytes, hashes.iter().map(String::as_str)),
                Err(e) => Err(ObjectError::Cache(CacheError::Io { action: "read", path: file.clone(), source: e })),
            });
            let verdict = match name.parse::<Hash>() {
                Ok(hash) => match by_file_hash.unwrap_or_else(|| self.read(&hash, format).map(|_| ())) {
                    Ok(()) => continue,
                    // Not readable as a file (a directory in its place, say):
                    // reported, left for a person to look at, and the
                    // check goes on with the next entry.
                    Err(ObjectError::Cache(e)) => {
                        report.problems.push(Problem {
                            path: rel.clone(),
                            what: format!("unreadable ({e})"),
                            removed: false,
                        });
                        bad_objects.insert(rel);
                        continue;
                    }
                    Err(e) => e.to_string(),
                },
                Err(_) => "not an object name".to_string(),
            };
            let _ = fs::remove_file(&file);
            report.problems.push(Problem { path: rel.clone(), what: verdict, removed: true });
            bad_objects.insert(rel);
        }
        // Checkpoints: each must verify and be the key its name states.
        for (file, key) in self.checkpoint_files()? {
            report.checkpoints += 1;
            let verdict = match key {
                None => Some("not a checkpoint name".to_string()),
                Some(k) => self.read_checkpoint(&k).err().map(|e| format!("checkpoint: {e}")),
            };
            if let Some(what) = verdict {
                // Not a file (a directory in its place, say): reported and
                // left for a person, like a record; a run of its stage
                // replaces it.
                let removed = fs::symlink_metadata(&file).is_ok_and(|m| !m.is_dir()) && fs::remove_file(&file).is_ok();
                report.problems.push(Problem { path: self.rel(&file), what, removed });
            }
        }
        for (file, key, readable, looked) in records {
            report.records += 1;
            let rel = self.rel(&file);
            if !readable {
                report.problems.push(Problem { path: rel, what: "unreadable (not a file)".into(), removed: false });
                continue;
            }
            let record = match (key, looked) {
                (Some(_), Some(Ok(Lookup::Hit(r)))) => r,
                (Some(_), Some(Err(e))) => {
                    report.problems.push(Problem { path: rel, what: format!("unreadable ({e})"), removed: false });
                    continue;
                }
                (Some(_), _) => {
                    let _ = fs::remove_file(&file);
                    report.problems.push(Problem { path: rel, what: "not a record".into(), removed: true });
                    continue;
                }
                (None, _) => {
                    let _ = fs::remove_file(&file);
                    report.problems.push(Problem { path: rel, what: "not a record name".into(), removed: true });
                    continue;
                }
            };
            let bad = record.outputs.iter().find_map(|(name, o)| {
                if bad_objects.contains(&o.file) {
                    return Some(format!("output {name}: its object {} was corrupt", o.file));
                }
                self.check_entry(o).err().map(|e| format!("output {name}: object {} {e}", o.file))
            });
            if let Some(what) = bad {
                let _ = fs::remove_file(&file);
                report.problems.push(Problem { path: rel, what, removed: true });
            }
        }
        Ok(report)
    }

    /// The stage keys a pipeline's runs keep: each stage of its latest run
    /// whose result is in the cache, and for a stage that failed, was skipped
    /// or interrupted there, its result in the newest earlier run that has one
    /// (a failed run never costs the previous good results). `runs` are the
    /// pipeline's run manifests, oldest first, read once by `gc`.
    fn roots(&self, runs: &[Manifest], latest: &Manifest) -> Vec<Hash> {
        let key_of = |s: &ManifestStage| s.key.as_ref().and_then(|k| k.parse::<Hash>().ok());
        let mut keys: Vec<Hash> = latest.stages.iter().filter_map(key_of).collect();
        let mut wanted: BTreeSet<&str> = latest
            .stages
            .iter()
            .filter(|s| !s.status.settled() || key_of(s).is_none_or(|k| !self.record_path(&k).exists()))
            .map(|s| s.name.as_str())
            .collect();
        if wanted.is_empty() {
            return keys;
        }
        // Newest first.
        for m in runs.iter().rev() {
            for s in &m.stages {
                if wanted.contains(s.name.as_str())
                    && s.status.settled()
                    && let Some(k) = key_of(s)
                    && self.record_path(&k).exists()
                {
                    wanted.remove(s.name.as_str());
                    keys.push(k);
                }
            }
            if wanted.is_empty() {
                break;
            }
        }
        keys
    }

    /// Exclusive hold on the cache (no run holds a [`Lease`] meanwhile); says on
    /// stderr when it has to wait for running pipelines.
    fn exclusive(&self) -> Result<Lease, CacheError> {
        let file = self.lease_file()?;
        let path = self.root.join("gc.lock");
        if file.try_lock().is_err() {
            eprintln!("waiting for the pipelines running on {} to finish…", self.root.display());
            file.lock().map_err(io_err("lock", &path))?;
        }
        Ok(Lease { _file: file })
    }

    /// Tag run `run` (its id as `scoreflow runs` prints it, or a unique
    /// prefix) as `name`, so `gc` keeps its results; a tag of that name moves.
    pub fn tag(&self, run: &str, name: &str) -> Result<Tag, CacheError> {
        let bad = |why: String| CacheError::BadTag(why);
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.') {
            return Err(bad(format!("a tag is letters, digits, `_`, `-` or `.`, not `{name}`")));
        }
        let mut found = Vec::new();
        for dir in read_dir(&self.root.join("runs"))? {
            let home = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            for m in
                crate::engine::manifest::run_manifests(&dir).map_err(|(path, why)| CacheError::BadRoot { path, why })?
            {
                if m.run_id.starts_with(run) {
                    found.push((home.clone(), m.run_id));
                }
            }
        }
        let (home, run_id) = match found.len() {
            1 => found.pop().expect("one"),
            0 => {
                return Err(bad(format!(
                    "no run `{run}` in {} (`scoreflow runs FILE` lists them)",
                    self.root.display()
                )));
            }
            n => return Err(bad(format!("`{run}` names {n} runs; give more of the id"))),
        };
        let tag = Tag { name: name.to_string(), home, run_id, tagged_ms: crate::engine::cache::now_ms() };
        let dir = self.root.join("tags");
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let bytes = serde_json::to_vec_pretty(&tag).expect("json of a plain struct");
        self.write_atomic(&dir.join(format!("{name}.json")), &bytes)?;
        Ok(tag)
    }

    /// Remove tag `name`; `false` when there was none.
    pub fn untag(&self, name: &str) -> Result<bool, CacheError> {
        let path = self.root.join("tags").join(format!("{name}.json"));
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("remove", &path)(e)),
        }
    }

    /// Every tag, by name. A tag file that does not parse stops `gc` (it
    /// would otherwise lose what the tag keeps).
    pub fn tags(&self) -> Result<Vec<Tag>, CacheError> {
        let mut out = Vec::new();
        for file in read_dir(&self.root.join("tags"))? {
            if file.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let tag = fs::read(&file)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Tag>(&b).map_err(|e| e.to_string()))
                .map_err(|why| CacheError::BadRoot { path: file.clone(), why })?;
            out.push(tag);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Remove every record and object no run worth keeping reaches (see
    /// [`GcPolicy`]), plus leftovers in `tmp/` and unheld locks. Waits until no
    /// run holds the cache (runs wait for it in turn), so it never removes what a
    /// live run has made and not yet recorded in its manifest.
    pub fn gc(&self, dry_run: bool, policy: GcPolicy) -> Result<GcReport, CacheError> {
        let _gc = self.exclusive()?;
        let mut keep_records = BTreeSet::new();
        let mut keep_objects = BTreeSet::new();
        let cutoff = crate::engine::cache::now_ms().saturating_sub(policy.keep_younger_than.as_millis() as u64);
        let tagged: BTreeSet<(String, String)> = self.tags()?.into_iter().map(|t| (t.home, t.run_id)).collect();
        // The newest run naming each key, for the listing of what goes.
        let mut last_use: BTreeMap<Hash, String> = BTreeMap::new();
        let runs = self.root.join("runs");
        for entry in read_dir(&runs)? {
            let latest = entry.join("latest.json");
            let home = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let all = crate::engine::manifest::run_manifests(&entry)
                .map_err(|(path, why)| CacheError::BadRoot { path, why })?;
            let mut keys = Vec::new();
            for m in &all {
                let kept = m.finished_ms >= cutoff || tagged.contains(&(home.clone(), m.run_id.clone()));
                for s in m.stages.iter().filter(|s| s.status.settled()) {
                    let Some(k) = s.key.as_ref().and_then(|k| k.parse::<Hash>().ok()) else { continue };
                    last_use.insert(k, format!("stage `{}` of {home}, last in run {}", s.name, m.run_id));
                    if kept {
                        keys.push(k);
                    }
                }
            }
            match fs::read(&latest) {
                Ok(bytes) => {
                    let manifest = serde_json::from_slice::<Manifest>(&bytes)
                        .map_err(|e| CacheError::BadRoot { path: latest.clone(), why: e.to_string() })?;
                    keys.extend(self.roots(&all, &manifest));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CacheError::BadRoot { path: latest, why: e.to_string() }),
            }
            for key in keys {
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
                remove_entry(path).map_err(io_err("remove", path))?;
            }
            Ok(())
        };
        for file in sharded(&self.root.join("records"))? {
            if keep_records.contains(&file) {
                report.kept_records += 1;
            } else {
                let key = file.file_stem().and_then(|n| n.to_str()).and_then(|n| n.parse::<Hash>().ok());
                let stage = match key.and_then(|k| last_use.get(&k)) {
                    Some(used) => used.clone(),
                    None => fs::read(&file)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
                        .map_or_else(|| "not a record".to_string(), |r| format!("stage `{}`, in no run", r.stage_name)),
                };
                report.removed.push(format!("record {} ({stage})", self.rel(&file)));
                remove(&file, &mut report.records, &mut report.bytes)?;
            }
        }
        for file in sharded(&self.root.join("objects"))? {
            if keep_objects.contains(&file) {
                report.kept_objects += 1;
            } else {
                let size = fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
                report.removed.push(format!("object {} ({size} bytes)", self.rel(&file)));
                remove(&file, &mut report.objects, &mut report.bytes)?;
            }
        }
        // Checkpoints are work a run can resume: kept unless their stage has
        // its record, they do not verify, or nobody resumed them before the
        // cut-off.
        for (file, key) in self.checkpoint_files()? {
            let header = key.and_then(|k| self.read_checkpoint(&k).ok().flatten()).map(|c| c.header);
            let why = match (&header, key) {
                (None, _) => Some("does not verify".to_string()),
                (Some(_), Some(k)) if self.record_path(&k).exists() => Some("its stage finished".to_string()),
                (Some(h), _) if h.written_ms < cutoff => Some(format!("{}, never resumed", h.describe())),
                _ => None,
            };
            match why {
                Some(why) => {
                    report.removed.push(format!("checkpoint {} ({why})", self.rel(&file)));
                    remove(&file, &mut report.checkpoints, &mut report.bytes)?;
                }
                None => report.kept_checkpoints += 1,
            }
        }
        // A temporary file of a live process is a write in progress (a run that
        // has not taken its lease yet writing its spec ownership, say): kept.
        for file in read_dir(&self.root.join("tmp"))? {
            if Self::temp_owner(&file).is_some_and(Self::alive) {
                continue;
            }
            remove(&file, &mut report.temp_files, &mut report.bytes)?;
        }
        // The job files and logs a failed Slurm run kept (no run is in flight:
        // runs and their workers hold the lease gc has taken exclusively).
        for dir in read_dir(&self.root.join("slurm"))? {
            for file in read_dir(&dir)? {
                remove(&file, &mut report.temp_files, &mut report.bytes)?;
            }
            if !dry_run {
                let _ = fs::remove_dir(&dir);
            }
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
