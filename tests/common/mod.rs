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

/// The manifest line of `stage` in the latest run of `pipeline`.
pub fn stage_line(ws: &Workspace, pipeline: &str, stage: &str) -> serde_json::Value {
    let m = ws.latest_manifest(pipeline);
    m["stages"].as_array().unwrap().iter().find(|s| s["name"] == stage).cloned().unwrap_or_else(|| {
        panic!("no stage {stage} in {m}");
    })
}

/// Checkpoint files in the workspace's cache.
pub fn checkpoints(ws: &Workspace) -> Vec<String> {
    ws.files_under("artifacts/checkpoints").into_iter().filter(|f| f.ends_with(".ckpt")).collect()
}

/// Where [`signal_after_checkpoint`] puts the stopped run's `--json` events
/// (in the workspace, outside `artifacts/`).
pub const SIGNALLED: &str = "signalled.jsonl";

/// Start `scoreflow run SPEC --json ARGS` with `-j threads`, wait until it
/// has written its first, second or third checkpoint (at random), then a
/// random 0–`max_extra_ms` more (both printed, so a failure can be replayed),
/// and send `signal` (its events go to [`SIGNALLED`]). Panics when the run ended before it could be signalled
/// (give its stage more checkpoints). Returns how the process ended.
pub fn signal_after_checkpoint(
    ws: &Workspace,
    spec: &str,
    args: &[&str],
    threads: usize,
    signal: i32,
    max_extra_ms: u64,
) -> std::process::ExitStatus {
    use std::time::{Duration, Instant};
    let before = checkpoints(ws);
    let bin = assert_cmd::cargo::cargo_bin("scoreflow");
    let mut child = std::process::Command::new(bin)
        .current_dir(ws.path())
        .env_remove("SCOREFLOW_ARTIFACTS")
        .args(["run", spec, "--json", "-j", &threads.to_string()])
        .args(args)
        .stdout(std::fs::File::create(ws.path().join(SIGNALLED)).expect("stdout file"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn scoreflow");
    let started = Instant::now();
    let path_of = |f: &str| ws.path().join("artifacts/checkpoints").join(f);
    // Checkpoints are replaced by a rename: a new modification time is a new one.
    let mtime = |f: &str| std::fs::metadata(path_of(f)).and_then(|m| m.modified()).ok();
    let nanos = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    let wanted = 1 + nanos() % 3;
    let mut seen: Vec<_> = before.iter().map(|f| (f.clone(), mtime(f))).collect();
    let mut written = 0;
    loop {
        for f in checkpoints(ws) {
            let t = mtime(&f);
            if !seen.iter().any(|(o, s)| *o == f && *s == t) {
                seen.retain(|(o, _)| *o != f);
                seen.push((f, t));
                written += 1;
            }
        }
        if written >= wanted {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child.stderr.take().unwrap().read_to_string(&mut err).ok();
            panic!("the run ended ({status}) before its first checkpoint: {err}");
        }
        assert!(started.elapsed() < Duration::from_secs(180), "no checkpoint within 3 minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
    let extra = if max_extra_ms == 0 { 0 } else { nanos() % max_extra_ms };
    std::thread::sleep(Duration::from_millis(extra));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run finished before signal {signal} ({extra} ms after checkpoint {written}): give the stage more checkpoints"
    );
    eprintln!("signal {signal} at {extra} ms after checkpoint {written}, {threads} thread(s)");
    // SAFETY: a plain kill(2) of our own child.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    child.wait().unwrap()
}

/// The resume contract for one checkpointing stage of `spec` (pipeline
/// `pipeline`): an uninterrupted run's outputs of `stage`, then, for SIGKILL
/// and SIGTERM at 1 and 2 threads, a run of the stage stopped at a random
/// point after its first checkpoint and run again: the second run resumes
/// (its manifest says from which step) and its output content hashes equal
/// the uninterrupted run's.
pub fn assert_resumes_identically(spec: &str, pipeline: &str, stage: &str, every: &str, max_extra_ms: u64) {
    let ws = Workspace::new();
    ws.write("p.yaml", spec);
    resumes_identically_in(&ws, "p.yaml", pipeline, stage, every, max_extra_ms);
}

/// [`assert_resumes_identically`] for the spec file `spec` of a prepared workspace.
pub fn resumes_identically_in(ws: &Workspace, spec: &str, pipeline: &str, stage: &str, every: &str, max_extra_ms: u64) {
    let (out, _) = ws.run_json(spec, &["-j", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let control = stage_line(ws, pipeline, stage)["outputs"].clone();
    assert!(checkpoints(ws).is_empty(), "a finished stage leaves no checkpoint: {:?}", checkpoints(ws));
    let args = ["--only", stage, "--force", stage, "--checkpoint-every", every];
    for (signal, threads) in [(libc::SIGKILL, 1), (libc::SIGTERM, 1), (libc::SIGKILL, 2), (libc::SIGTERM, 2)] {
        let status = signal_after_checkpoint(ws, spec, &args, threads, signal, max_extra_ms);
        if signal == libc::SIGTERM {
            assert_eq!(status.code(), Some(143), "SIGTERM: exit 128 + 15 after the checkpoint");
            assert_eq!(stage_line(ws, pipeline, stage)["status"], "interrupted");
        } else {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(libc::SIGKILL));
        }
        assert_eq!(checkpoints(ws).len(), 1, "the stopped stage's checkpoint is kept");
        let mut again = vec!["-j".to_string(), threads.to_string()];
        again.extend(args.iter().map(|s| s.to_string()));
        let again: Vec<&str> = again.iter().map(String::as_str).collect();
        let (out, _) = ws.run_json(spec, &again);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let line = stage_line(ws, pipeline, stage);
        assert!(line["resumed_from"].as_u64().is_some_and(|s| s > 0), "it resumed: {line}");
        assert_eq!(line["resumes"].as_array().map(|r| r.len()), Some(1), "one stop, one resume: {line}");
        assert_eq!(line["resumes"][0]["step"], line["resumed_from"]);
        assert_eq!(line["outputs"], control, "signal {signal}, {threads} thread(s): the same bytes as uninterrupted");
        assert!(checkpoints(ws).is_empty(), "the recorded stage's checkpoint is removed");
    }
}
