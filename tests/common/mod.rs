//! Helpers shared by the integration tests: run the real binary on temp dirs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

/// `rel` in the checkout these tests belong to, found when they run (the
/// library's rule, shared with its unit tests and the benchmarks).
pub use scoreflow::checkout;

pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace { dir: tempfile::tempdir().expect("temp dir") }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn artifacts(&self) -> PathBuf {
        self.path().join("artifacts")
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).expect("write spec");
        p
    }
    /// `scoreflow ARGS` in this workspace, with the cache in `./artifacts`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::cargo_bin("scoreflow").expect("binary");
        c.current_dir(self.path()).env_remove("SCOREFLOW_ARTIFACTS").args(args);
        c
    }
    pub fn run_json(&self, spec: &str, extra: &[&str]) -> (Output, Vec<serde_json::Value>) {
        let mut args = vec!["run", spec, "--json"];
        args.extend_from_slice(extra);
        let out = self.cmd(&args).output().expect("run");
        let events =
            String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        (out, events)
    }
    /// Stage names that ran (not fresh) in a `--json` run.
    pub fn ran(events: &[serde_json::Value]) -> Vec<String> {
        let mut v: Vec<String> = events
            .iter()
            .filter(|e| e["event"] == "finished" && e["fresh"] == false)
            .map(|e| e["stage"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    }
    pub fn latest_manifest(&self, pipeline: &str) -> serde_json::Value {
        let p = self.artifacts().join("runs").join(pipeline).join("latest.json");
        serde_json::from_slice(&std::fs::read(p).expect("manifest")).expect("json")
    }
    /// `scoreflow export TARGET --pipeline SPEC -o <tmp>.safetensors`, after
    /// `inspect` has named the blob `kind`: the tensors' names, sorted.
    pub fn export_model(&self, target: &str, spec: &str, kind: &str) -> Vec<String> {
        let shown = self.cmd(&["inspect", target, "--pipeline", spec]).output().expect("inspect");
        let text = String::from_utf8_lossy(&shown.stdout);
        assert!(text.contains(kind), "inspect {target}: expected `{kind}` in {text}");
        let file = self.path().join(format!("{}.safetensors", target.replace('.', "_")));
        let out =
            self.cmd(&["export", target, "--pipeline", spec, "-o", file.to_str().unwrap()]).output().expect("export");
        assert!(out.status.success(), "export {target}: {}", String::from_utf8_lossy(&out.stderr));
        let bytes = std::fs::read(&file).expect("exported");
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).expect("safetensors header");
        let mut names: Vec<String> =
            header.as_object().unwrap().keys().filter(|k| *k != "__metadata__").cloned().collect();
        names.sort();
        names
    }
    /// All files under a directory, relative, sorted.
    pub fn files_under(&self, rel: &str) -> Vec<String> {
        let mut out = Vec::new();
        let root = self.path().join(rel);
        fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        walk(&p, root, out);
                    } else {
                        out.push(p.strip_prefix(root).unwrap().display().to_string());
                    }
                }
            }
        }
        walk(&root, &root, &mut out);
        out.sort();
        out
    }
}

/// The two-moons pipeline at small settings: tables, a model blob, a report.
pub fn small_moons() -> String {
    std::fs::read_to_string(checkout("pipelines/two_moons.yaml"))
        .unwrap()
        .replace("n_samples: 50000", "n_samples: 2000")
        .replace("n_samples: 5000, noise", "n_samples: 300, noise")
        .replace("train_steps: 5000", "train_steps: 60")
        .replace("batch_size: 512", "batch_size: 256")
        .replace("n_samples: 5000, steps: 1000", "n_samples: 300, steps: 20")
        .replace("directions: 256", "directions: 16")
}

/// pipelines/smeme.yaml with small training and sampling settings.
pub fn small_smeme() -> String {
    std::fs::read_to_string(checkout("pipelines/smeme.yaml"))
        .unwrap()
        .replace("epochs: 16", "epochs: 2")
        .replace("batches_per_epoch: 100", "batches_per_epoch: 20")
        .replace("n_samples: 4096, steps: 1000", "n_samples: 300, steps: 40")
        .replace("outer_epochs: 5", "outer_epochs: 2")
        .replace("inner_epochs: 10", "inner_epochs: 2")
        .replace("dataset_size: 1024", "dataset_size: 256")
        .replace("steps: 1000\n", "steps: 40\n")
}

/// A count of every panic in this test process from the first call on,
/// caught or not (the hook before it still prints each).
pub fn panics() -> &'static std::sync::atomic::AtomicUsize {
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            previous(info);
        }));
    });
    &COUNT
}
