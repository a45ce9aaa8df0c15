//! Runs and what they leave for people: one manifest per run under
//! `runs/<home>/` (the latest is the gc roots and the base of rerun
//! explanations), which spec file owns a pipeline name ([`Home`]), and the
//! views rewritten by every run — `reports/<home>/<stage>/` and
//! `latest/<home>/<stage>/<output>` links.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::engine::cache::{Cache, CacheError, TMP_COUNTER, io_err};

/// What became of a stage in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageState {
    /// Its cached result was reused.
    Fresh,
    /// It was computed in this run.
    Ran,
    Failed,
    /// It was not run because a stage it needs failed.
    Skipped,
    /// The run was stopped (Ctrl-C) while it ran; it left no record.
    Interrupted,
}

impl StageState {
    /// Fresh or ran: the stage's result is in the cache.
    pub fn settled(self) -> bool {
        matches!(self, StageState::Fresh | StageState::Ran)
    }
    pub fn name(self) -> &'static str {
        match self {
            StageState::Fresh => "fresh",
            StageState::Ran => "ran",
            StageState::Failed => "failed",
            StageState::Skipped => "skipped",
            StageState::Interrupted => "interrupted",
        }
    }
}

/// A manifest line for one stage of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestStage {
    pub name: String,
    pub kind: String,
    pub method: String,
    pub status: StageState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Why it ran, in words (as `run` printed it).
    pub reasons: Vec<String>,
    /// Why it ran, structured ([`crate::engine::fingerprint::Reason`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub why: Vec<crate::engine::fingerprint::Reason>,
    pub started_ms: u64,
    pub finished_ms: u64,
    pub duration_ms: u64,
    /// A fresh stage's cached result: when it was computed, `[started_ms,
    /// finished_ms]` from its record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computed_ms: Option<[u64; 2]>,
    pub outputs: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The checkpoint step it last continued from, when it resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<u64>,
    /// Every time it was stopped and continued from its checkpoint on the way
    /// to this result (in this run or earlier ones, here or on a cluster),
    /// oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumes: Vec<crate::engine::checkpoint::Resume>,
    /// The Slurm jobs of this stage that stopped (time limit, preemption)
    /// and were resubmitted, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requeues: Vec<Requeue>,
}

/// One resubmission of a stage's Slurm job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Requeue {
    /// The job that stopped, and how (`TIMEOUT`, `PREEMPTED`, `NODE_FAIL`,
    /// or `CHECKPOINTED` when it saved on the warning signal and exited).
    pub job: String,
    pub state: String,
    /// The checkpoint step it left, if any.
    pub step: Option<u64>,
    /// The job that took over.
    pub next_job: String,
}

/// What one `scoreflow run` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub pipeline: String,
    /// The folder under `runs/` and `reports/` of this spec file (see [`Home`]).
    #[serde(default)]
    pub home: String,
    pub spec_file: String,
    /// The spec's identity: its path relative to the project (the folder holding
    /// the cache), else its canonical path.
    #[serde(default)]
    pub spec_id: String,
    /// The commit checked out in the spec's git repository, if it is in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    /// The command-line changes to the spec this run applied (`--set`, `--matrix`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
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

/// The folder under `runs/` and `reports/` that belongs to one spec file: the
/// pipeline's name for the first spec file that runs under it, `<name>@<file
/// stem>` (then `…-<hash of its path>`) for another spec file with the same
/// name — so a copied spec that keeps `name:` never overwrites the original's
/// reports or replaces its gc roots.
#[derive(Debug, Clone)]
pub struct Home {
    pub dir: String,
    pub spec_id: String,
    /// The other spec file that owns the name, when this one had to move aside.
    pub shared_with: Option<String>,
}

impl Cache {
    /// Write a report's files under `reports/<pipeline>/<stage>/` (replacing what
    /// was there) and return the directory. Reports are views of cached objects,
    /// rewritten by every run; nothing reads them back.
    pub fn publish(
        &self,
        pipeline: &str,
        stage: &str,
        files: &[(String, Vec<u8>)],
        unchanged: &[String],
    ) -> Result<PathBuf, CacheError> {
        let dir = self.report_dir(pipeline, stage);
        for (name, bytes) in files {
            self.write_atomic(&dir.join(name), bytes)?;
        }
        let keep: Vec<&str> =
            files.iter().map(|(name, _)| name.as_str()).chain(unchanged.iter().map(String::as_str)).collect();
        Self::prune(&dir, &keep);
        Ok(dir)
    }

    /// `reports/<pipeline>/<stage>/`.
    pub fn report_dir(&self, pipeline: &str, stage: &str) -> PathBuf {
        self.root.join("reports").join(pipeline).join(stage)
    }

    /// Remove the entries of a view folder (`reports/…`, `latest/…`) that the
    /// latest run did not write — a figure a new report version no longer
    /// draws, the link of a stage no longer in the spec. Best effort: a view
    /// left over is harmless, so failures are ignored.
    pub fn prune(dir: &Path, keep: &[&str]) {
        let Ok(entries) = fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if keep.contains(&name.as_ref()) || name.starts_with('.') {
                continue;
            }
            let path = e.path();
            let _ =
                if path.is_dir() && !path.is_symlink() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
        }
    }

    /// Point `latest/<home>/<stage>/<output>.<ext>` at the object a run used, so
    /// the newest results can be found without the tool (symbolic links,
    /// relative, rewritten by every run; on systems without them, nothing).
    pub fn link_latest(&self, home: &str, stage: &str, output: &str, file: &str, ext: &str) -> Result<(), CacheError> {
        let dir = self.root.join("latest").join(home).join(stage);
        let link = dir.join(format!("{output}.{ext}"));
        #[cfg(unix)]
        {
            let target = Path::new("../../..").join(file);
            if fs::read_link(&link).is_ok_and(|t| t == target) {
                return Ok(());
            }
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
            // A fresh link under a unique name, renamed over the old one: atomic,
            // so concurrent runs never see a missing or half-made link.
            let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let tmp = dir.join(format!(".{output}.{}-{n}.tmp", std::process::id()));
            std::os::unix::fs::symlink(&target, &tmp).map_err(io_err("link", &tmp))?;
            fs::rename(&tmp, &link).map_err(io_err("rename into place", &link))?;
        }
        #[cfg(not(unix))]
        let _ = link;
        Ok(())
    }

    fn runs_dir(&self, pipeline: &str) -> PathBuf {
        self.root.join("runs").join(pipeline)
    }

    /// The identity of a spec file in this cache: its canonical path relative to
    /// the project (the folder that holds the cache), else its canonical path.
    /// Moving the whole project keeps it; moving the spec within it does not.
    pub fn spec_id(&self, spec: &Path) -> String {
        let spec = fs::canonicalize(spec).unwrap_or_else(|_| spec.to_path_buf());
        let root = fs::canonicalize(&self.root)
            .ok()
            .or_else(|| self.root.parent().and_then(|p| fs::canonicalize(p).ok()).map(|p| p.join("artifacts")));
        match root.as_ref().and_then(|r| r.parent()).and_then(|project| spec.strip_prefix(project).ok()) {
            Some(rel) => rel.display().to_string(),
            None => spec.display().to_string(),
        }
    }

    /// Where a spec file's runs and reports live (see [`Home`]). With `claim`,
    /// a free folder is taken for this spec (by writing its `spec.json`).
    pub fn home(&self, name: &str, spec: &Path, claim: bool) -> Result<Home, CacheError> {
        let spec_id = self.spec_id(spec);
        let stem = spec.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let hash = &blake3::hash(spec_id.as_bytes()).to_hex()[..8];
        let mut shared_with = None;
        for dir in [name.to_string(), format!("{name}@{stem}"), format!("{name}@{stem}-{hash}")] {
            let owner_path = self.runs_dir(&dir).join("spec.json");
            let owner = fs::read(&owner_path)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["spec"].as_str().map(str::to_string));
            match owner {
                Some(o) if o == spec_id => return Ok(Home { dir, spec_id, shared_with }),
                Some(o) => {
                    shared_with.get_or_insert(o);
                }
                None => {
                    if claim {
                        let bytes = serde_json::to_vec_pretty(&serde_json::json!({ "spec": spec_id, "name": name }))
                            .expect("json");
                        self.write_atomic(&owner_path, &bytes)?;
                    }
                    return Ok(Home { dir, spec_id, shared_with });
                }
            }
        }
        Ok(Home { dir: format!("{name}@{stem}-{hash}"), spec_id, shared_with })
    }

    /// Write a run's manifest and make it the pipeline's latest.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<PathBuf, CacheError> {
        let bytes = serde_json::to_vec_pretty(manifest)
            .map_err(|e| CacheError::Encode { what: "manifest".into(), why: e.to_string() })?;
        let dir = self.runs_dir(if manifest.home.is_empty() { &manifest.pipeline } else { &manifest.home });
        let path = dir.join(format!("{}.json", manifest.run_id));
        self.write_atomic(&path, &bytes)?;
        self.write_atomic(&dir.join("latest.json"), &bytes)?;
        Ok(path)
    }

    /// Every recorded run of a spec's home, oldest first (unreadable manifests
    /// are passed over; `latest.json` is a copy of the newest, not a run).
    pub fn runs(&self, home: &str) -> Vec<Manifest> {
        let Ok(files) = crate::engine::cache::read_dir(&self.runs_dir(home)) else { return Vec::new() };
        let mut runs: Vec<Manifest> =
            files.iter().filter(|p| is_run_file(p)).filter_map(|p| read_manifest(p).ok()).collect();
        sort_runs(&mut runs);
        runs
    }

    /// Every recorded run of a spec's home, oldest first, for a command that
    /// reports on them (`runs`, `compare`): a manifest that does not parse,
    /// `latest.json` included, is an error naming it rather than a run
    /// silently left out.
    pub fn runs_checked(&self, home: &str) -> Result<Vec<Manifest>, CacheError> {
        let dir = self.runs_dir(home);
        let latest = dir.join("latest.json");
        if fs::symlink_metadata(&latest).is_ok() {
            read_manifest(&latest).map_err(|(path, why)| CacheError::BadManifest { path, why })?;
        }
        run_manifests(&dir).map_err(|(path, why)| CacheError::BadManifest { path, why })
    }

    /// The latest manifest of a pipeline, if any (an unreadable one counts as none).
    pub fn latest_manifest(&self, pipeline: &str) -> Option<Manifest> {
        let bytes = fs::read(self.runs_dir(pipeline).join("latest.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Whether `path` is one run's manifest in a home's folder (not the
/// `latest.json` copy, not the `spec.json` ownership file).
fn is_run_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
        && !path.file_name().is_some_and(|n| n == "latest.json" || n == "spec.json")
}

/// One manifest file, parsed; why not as `(path, why)`.
pub(crate) fn read_manifest(path: &Path) -> Result<Manifest, (PathBuf, String)> {
    let bytes = fs::read(path).map_err(|e| (path.to_path_buf(), e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| (path.to_path_buf(), e.to_string()))
}

/// Every run manifest in a home's folder `dir`, oldest first; the first that
/// cannot be read or parsed is an error `(path, why)`.
pub(crate) fn run_manifests(dir: &Path) -> Result<Vec<Manifest>, (PathBuf, String)> {
    let files = crate::engine::cache::read_dir(dir).map_err(|e| (dir.to_path_buf(), e.to_string()))?;
    let mut runs = files.iter().filter(|p| is_run_file(p)).map(|p| read_manifest(p)).collect::<Result<Vec<_>, _>>()?;
    sort_runs(&mut runs);
    Ok(runs)
}

fn sort_runs(runs: &mut [Manifest]) {
    runs.sort_by(|a, b| (a.started_ms, &a.run_id).cmp(&(b.started_ms, &b.run_id)));
}

/// The commit checked out in the git repository holding `path`, read from
/// `.git` directly (a loose or packed ref, or a detached HEAD); `None` outside a
/// repository.
pub fn git_commit(path: &std::path::Path) -> Option<String> {
    let start = std::fs::canonicalize(path).ok()?;
    let git = start.ancestors().map(|d| d.join(".git")).find(|g| g.exists())?;
    // A worktree or submodule has a `.git` file pointing at its git dir.
    let git = if git.is_file() {
        let text = std::fs::read_to_string(&git).ok()?;
        let rel = text.strip_prefix("gitdir:")?.trim();
        git.parent()?.join(rel)
    } else {
        git
    };
    let head = std::fs::read_to_string(git.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref:").map(str::trim) else {
        return Some(head.to_string());
    };
    let common = std::fs::read_to_string(git.join("commondir")).ok().map(|c| git.join(c.trim())).unwrap_or(git.clone());
    for dir in [&git, &common] {
        if let Ok(id) = std::fs::read_to_string(dir.join(reference)) {
            return Some(id.trim().to_string());
        }
        if let Ok(packed) = std::fs::read_to_string(dir.join("packed-refs"))
            && let Some(line) = packed.lines().find(|l| l.ends_with(reference) && !l.starts_with('#'))
        {
            return line.split_whitespace().next().map(str::to_string);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::git_commit;

    #[test]
    fn git_commit_reads_the_checked_out_commit() {
        let here = crate::checkout("");
        if here.join(".git").exists() {
            let c = git_commit(&here.join("Cargo.toml")).expect("a commit");
            assert!(c.len() == 40 && c.chars().all(|ch| ch.is_ascii_hexdigit()), "{c}");
        }
        assert_eq!(git_commit(std::path::Path::new("/")), None);
    }
}
