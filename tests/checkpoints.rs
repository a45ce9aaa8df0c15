//! Checkpoints, through the engine alone: the test-only `debug` stage with
//! `steps` (a draw from its random stream per step, a sleep per step) is
//! killed, stopped, corrupted and resumed, and must give the bytes an
//! uninterrupted run gives. The real stages' resume tests are in
//! `tests/resume.rs`.

mod common;

use common::{SIGNALLED, Workspace, assert_resumes_identically, checkpoints, signal_after_checkpoint, stage_line};

const SPEC: &str = "name: ck\nseed: 3\nstages:\n  walk:\n    kind: debug\n    params: { steps: 150, step_ms: 10 }\n";

#[test]
fn a_killed_or_stopped_stage_resumes_with_the_same_bytes() {
    assert_resumes_identically(SPEC, "ck", "walk", "10 steps", 150);
}

/// A workspace whose `walk` was killed after a checkpoint, and the outputs
/// of an uninterrupted run in another workspace.
fn killed() -> (Workspace, serde_json::Value) {
    let control = Workspace::new();
    control.write("p.yaml", SPEC);
    assert!(control.run_json("p.yaml", &[]).0.status.success());
    let ws = Workspace::new();
    ws.write("p.yaml", SPEC);
    signal_after_checkpoint(&ws, "p.yaml", &["--checkpoint-every", "10 steps"], 2, libc::SIGKILL, 200);
    assert_eq!(checkpoints(&ws).len(), 1);
    (ws, stage_line(&control, "ck", "walk")["outputs"].clone())
}

#[test]
fn status_says_where_a_stage_resumes_and_gc_keeps_its_checkpoint() {
    let (ws, control) = killed();
    let out = ws.cmd(&["status", "p.yaml"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("walk")).unwrap();
    assert!(line.contains("dirty") && line.contains("resumes from step "), "{line}");
    assert!(line.contains(" of 150 (checkpoint "), "{line}");
    assert!(line.ends_with(" of work left at the pace so far)"), "{line}");
    let json = ws.cmd(&["status", "p.yaml", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v[0]["checkpoint"]["total"], 150);
    // 10 ms a step: the steps left take about 10 ms each (the run's start-up counts as work).
    let (step, left) = (v[0]["checkpoint"]["step"].as_u64().unwrap(), v[0]["checkpoint"]["left_ms"].as_u64().unwrap());
    assert!(left >= (150 - step) * 10, "{step}: {left} ms left");
    // gc keeps work a run can resume; verify checks it.
    let gc = ws.cmd(&["gc"]).output().unwrap();
    assert!(String::from_utf8_lossy(&gc.stdout).contains("1 checkpoints (work a run resumes)"), "{gc:?}");
    assert_eq!(checkpoints(&ws).len(), 1);
    let verify = ws.cmd(&["verify"]).output().unwrap();
    assert!(verify.status.success(), "{verify:?}");
    assert!(String::from_utf8_lossy(&verify.stdout).contains("1 checkpoints"), "{verify:?}");
    let (out, _) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success());
    assert_eq!(stage_line(&ws, "ck", "walk")["outputs"], control);
    assert!(stage_line(&ws, "ck", "walk")["resumed_from"].as_u64().is_some());
}

/// Stopped twice (killed, then told to stop) and finished by a third run:
/// each run says where it resumes, and the manifest of the run that finished
/// lists both resumes, oldest first — how many stops the result took.
#[test]
fn the_manifest_counts_every_resume_on_the_way_to_the_result() {
    let (ws, control) = killed();
    let args = ["--checkpoint-every", "10 steps"];
    let first = checkpoint_step(&ws);
    let status = signal_after_checkpoint(&ws, "p.yaml", &args, 2, libc::SIGTERM, 200);
    assert_eq!(status.code(), Some(143));
    let line = stage_line(&ws, "ck", "walk");
    assert_eq!(line["status"], "interrupted");
    let second = checkpoint_step(&ws);
    let said = format!("by signal 15 at step {second} of 150; its checkpoint is saved and the next run resumes there");
    assert_eq!(line["error"], said.as_str());
    assert!(second > first, "{first} then {second}");
    // The run says it stopped, not that it failed.
    let events = std::fs::read_to_string(ws.path().join(SIGNALLED)).unwrap();
    let last: serde_json::Value = serde_json::from_str(events.lines().last().unwrap()).unwrap();
    assert_eq!(
        (&last["event"], &last["stopped"], &last["failed"], &last["ok"]),
        (&"run_finished".into(), &1.into(), &0.into(), &false.into()),
        "{last}"
    );
    assert!(events.lines().any(|l| l.contains(r#""event":"stopped""#)), "{events}");
    let runs = ws.cmd(&["runs", "p.yaml", "--json"]).output().unwrap();
    let last: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&runs.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(
        (&last["stopped"], &last["failed"], &last["result"]),
        (&1.into(), &0.into(), &"interrupted".into()),
        "{last}"
    );
    let out = ws.cmd(&["status", "p.yaml"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("resumes from step {second} of 150 (checkpoint ")), "{text}");
    assert!(text.contains("; resumed once before; about "), "{text}");
    let (out, events) = ws.run_json("p.yaml", &args);
    assert!(out.status.success());
    let started = events.iter().find(|e| e["event"] == "started").unwrap();
    assert_eq!(started["resumes_from"]["step"], second, "{started}");
    assert_eq!(started["resumes_from"]["resumes"].as_array().map(Vec::len), Some(1), "{started}");
    let line = stage_line(&ws, "ck", "walk");
    assert_eq!(line["outputs"], control, "twice stopped, the same bytes");
    let steps: Vec<u64> = line["resumes"].as_array().unwrap().iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [first, second], "{line}");
    assert_eq!(line["resumed_from"], second);
    // Without --json the run's line says it too.
    let (ws, _) = killed();
    let out = ws.cmd(&["run", "p.yaml"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("walk") && l.contains("running")).unwrap();
    assert!(line.contains("because ") && line.contains("; resumes from step "), "{line}");
}

/// The step the workspace's one checkpoint is at (from `status --json`).
fn checkpoint_step(ws: &Workspace) -> u64 {
    let json = ws.cmd(&["status", "p.yaml", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    v[0]["checkpoint"]["step"].as_u64().expect("a checkpoint")
}

/// A corrupt checkpoint, or something other than a file in its place: a
/// flipped state byte, a cut, a step in its header changed (the file's hash
/// covers the header: step 20's state must not resume as step 80's), a
/// directory, a FIFO (reading it would hang), a link to /dev/zero (reading
/// it would never end).
#[test]
fn a_corrupt_or_truncated_checkpoint_is_discarded_and_the_stage_starts_over() {
    for damage in ["flip", "truncate", "header", "directory", "fifo", "link"] {
        let (ws, control) = killed();
        let file = ws.path().join("artifacts/checkpoints").join(&checkpoints(&ws)[0]);
        let mut bytes = std::fs::read(&file).unwrap();
        match damage {
            "flip" => {
                let n = bytes.len();
                bytes[n - 40] ^= 0x40;
            }
            "truncate" => bytes.truncate(bytes.len() - 7),
            "header" => {
                let at = bytes.windows(7).position(|w| w == b"\"step\":").expect("a step in the header") + 7;
                bytes[at] = if bytes[at] == b'8' { b'9' } else { b'8' };
            }
            _ => {}
        }
        std::fs::remove_file(&file).unwrap();
        match damage {
            "directory" => std::fs::create_dir_all(file.join("inside")).unwrap(),
            "fifo" => assert!(std::process::Command::new("mkfifo").arg(&file).status().unwrap().success()),
            "link" => std::os::unix::fs::symlink("/dev/zero", &file).unwrap(),
            _ => std::fs::write(&file, &bytes).unwrap(),
        }
        let status = ws.cmd(&["status", "p.yaml"]).output().unwrap();
        assert!(!String::from_utf8_lossy(&status.stdout).contains("resumes"), "{damage}: {status:?}");
        let (out, events) = ws.run_json("p.yaml", &[]);
        assert!(out.status.success(), "{damage}");
        let warned = events
            .iter()
            .any(|e| e["event"] == "warning" && e["message"].as_str().unwrap().contains("discarded the checkpoint"));
        assert!(warned, "{damage}: {events:?}");
        let line = stage_line(&ws, "ck", "walk");
        assert!(line.get("resumed_from").is_none(), "{damage}: started over: {line}");
        assert_eq!(line["outputs"], control, "{damage}");
    }
    // verify removes a bad checkpoint.
    let (ws, _) = killed();
    let file = ws.path().join("artifacts/checkpoints").join(&checkpoints(&ws)[0]);
    std::fs::write(&file, b"SFCKPT1\nnonsense").unwrap();
    let verify = ws.cmd(&["verify"]).output().unwrap();
    assert_eq!(verify.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("bad: checkpoints/"), "{verify:?}");
    assert!(checkpoints(&ws).is_empty());
    // A stray file beside the shards, a directory in a checkpoint's place:
    // `verify` reports both and goes on, `gc` removes both.
    let root = ws.artifacts().join("checkpoints");
    std::fs::write(root.join("stray"), b"x").unwrap();
    let dir = root.join("ab").join(format!("ab{}.ckpt", "0".repeat(62)));
    std::fs::create_dir_all(dir.join("inside")).unwrap();
    let verify = ws.cmd(&["verify"]).output().unwrap();
    let said = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(1), "{verify:?}");
    assert!(said.contains("checkpoints/stray") && said.contains("not a checkpoint name"), "{said}");
    assert!(
        said.contains(&format!("checkpoints/ab/ab{}.ckpt", "0".repeat(62))) && said.contains("not a file"),
        "{said}"
    );
    assert!(!root.join("stray").exists() && dir.exists(), "the stray file removed, the directory left: {said}");
    let gc = ws.cmd(&["gc", "--older-than", "0s"]).output().unwrap();
    assert!(gc.status.success(), "{gc:?}");
    assert!(!dir.exists(), "{gc:?}");
}

/// A stage that panics (a bug) takes its checkpoint with it: resumed, the
/// same state would lead to the same panic, or be what the stage could not
/// take.
#[test]
fn a_panicking_stage_leaves_no_checkpoint() {
    let ws = Workspace::new();
    ws.write("p.yaml", &SPEC.replace("step_ms: 10 }", "step_ms: 0, panic: true }"));
    let (out, events) = ws.run_json("p.yaml", &["--checkpoint-every", "10 steps"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let failed = events.iter().find(|e| e["event"] == "failed").expect("a failed event");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("panicked") && error.contains("its checkpoint was discarded"), "{error}");
    assert!(checkpoints(&ws).is_empty());
}

#[test]
fn no_resume_starts_over_and_other_inputs_never_use_the_checkpoint() {
    let (ws, control) = killed();
    // Other params: another key, so the checkpoint is not this stage's.
    let (out, _) = ws.run_json("p.yaml", &["--set", "stages.walk.params.steps=151"]);
    assert!(out.status.success());
    assert!(stage_line(&ws, "ck", "walk").get("resumed_from").is_none());
    assert_eq!(checkpoints(&ws).len(), 1, "the other key's checkpoint is left for its own run");
    let (out, _) = ws.run_json("p.yaml", &["--no-resume"]);
    assert!(out.status.success());
    let line = stage_line(&ws, "ck", "walk");
    assert!(line.get("resumed_from").is_none(), "{line}");
    assert_eq!(line["outputs"], control);
    assert!(checkpoints(&ws).is_empty());
}

#[test]
fn a_bad_interval_is_refused_before_anything_runs() {
    let ws = Workspace::new();
    ws.write("p.yaml", &SPEC.replace("step_ms: 10 }", "step_ms: 10 }\n    resources: { checkpoint_every: often }"));
    let out = ws.cmd(&["run", "p.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("p.yaml:7:") && err.contains("`resources.checkpoint_every` of stage `walk`"), "{err}");
    assert!(!ws.artifacts().join("records").exists());
    let out = ws.cmd(&["run", "p.yaml", "--checkpoint-every", "0 steps"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
