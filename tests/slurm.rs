//! `--executor slurm` against a real Slurm cluster: `scripts/slurm-up.sh`
//! starts one on loopback, and `.ci/run` starts it and sets
//! `SCOREFLOW_SLURM_TESTS=1`, which makes these tests fail loudly when no
//! cluster answers. Without the variable they run when `sinfo` finds an idle
//! node and otherwise say that they were skipped.
//!
//! * a 3-seed matrix yields on Slurm the content hashes it yields locally, and
//!   a second run is all fresh without submitting a job;
//! * a failing stage and one over its time limit are reported with their Slurm
//!   state and log, leave no record, and skip their dependents;
//! * Ctrl-C cancels the jobs the run submitted.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Workspace, small_moons};

fn cluster() -> bool {
    // A node that can take jobs: any state but the unusable ones (a busy node
    // reads `allocated`, `mixed`, `completing` or `planned`, with flag suffixes).
    let usable = |state: &str| {
        let s = state.trim().trim_end_matches(['*', '~', '#', '$', '@', '+', '!', '%', '^', '-']).to_lowercase();
        !s.is_empty()
            && !["down", "drain", "fail", "unk", "not_responding", "inval", "future"]
                .iter()
                .any(|bad| s.starts_with(bad))
    };
    let answers = || {
        Command::new("sinfo")
            .args(["-h", "-o", "%T"])
            .output()
            .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).lines().any(usable))
    };
    // A controller busy with another test's jobs may miss one call: ask for 5 s.
    let up = (0..10).any(|i| {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(500));
        }
        answers()
    });
    if std::env::var("SCOREFLOW_SLURM_TESTS").is_ok_and(|v| v == "1") {
        assert!(up, "SCOREFLOW_SLURM_TESTS=1 but no Slurm node answers: start one with scripts/slurm-up.sh");
        return true;
    }
    if !up {
        eprintln!("skipped: no Slurm cluster (scripts/slurm-up.sh starts one; .ci/run requires it)");
    }
    up
}

/// Each stage's key and output hashes in the latest manifest.
fn results(ws: &Workspace, pipeline: &str) -> BTreeMap<String, (String, serde_json::Value)> {
    let m = ws.latest_manifest(pipeline);
    m["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (s["name"].as_str().unwrap().to_string(), (s["key"].as_str().unwrap().to_string(), s["outputs"].clone()))
        })
        .collect()
}

fn scontrol_state(id: &str) -> String {
    let o = Command::new("scontrol").args(["show", "job", "-o", id]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    text.split_whitespace().find_map(|f| f.strip_prefix("JobState=")).unwrap_or_default().to_string()
}

#[test]
fn a_seed_matrix_on_slurm_yields_the_local_hashes_and_a_rerun_submits_nothing() {
    if !cluster() {
        return;
    }
    // Data stages keep their own seed (shared by the instances); the model,
    // its samples, metrics and report follow the swept pipeline seed.
    let spec = small_moons()
        .replace("    kind: generate\n", "    kind: generate\n    seed: 11\n")
        .replace("seed: 42\n", "seed: 42\nmatrix:\n  seed: [1, 2, 3]\n");
    let local = Workspace::new();
    local.write("p.yaml", &spec);
    let (out, _) = local.run_json("p.yaml", &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let ws = Workspace::new();
    ws.write("p.yaml", &spec);
    let started = Instant::now();
    let (out, events) = ws.run_json("p.yaml", &["--executor", "slurm", "--poll", "0.2"]);
    let slurm_seconds = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let submitted: Vec<&str> =
        events.iter().filter(|e| e["event"] == "submitted").map(|e| e["stage"].as_str().unwrap()).collect();
    let ran = Workspace::ran(&events);
    assert_eq!(submitted.len(), ran.len(), "every stage that ran was a Slurm job");
    assert!(ran.contains(&"ddpm[seed=2]".to_string()), "{ran:?}");
    // Shared data stages ran once for the three instances.
    assert_eq!(ran.iter().filter(|s| s.starts_with("moons")).count(), 1, "{ran:?}");
    assert_eq!(results(&ws, "two_moons"), results(&local, "two_moons"), "same keys and content hashes as local");
    eprintln!("slurm run: {} jobs in {slurm_seconds:.1}s", submitted.len());
    assert!(
        !ws.artifacts().join("slurm").read_dir().is_ok_and(|mut d| d.next().is_some()),
        "job files of a good run are removed"
    );

    // Everything is cached: nothing is submitted.
    let (out, events) = ws.run_json("p.yaml", &["--executor", "slurm", "--poll", "0.2"]);
    assert!(out.status.success());
    assert!(events.iter().all(|e| e["event"] != "submitted" && e["event"] != "started"), "{events:?}");
    assert_eq!(events.iter().filter(|e| e["event"] == "fresh").count(), results(&ws, "two_moons").len());
}

#[test]
fn failed_and_timed_out_jobs_are_reported_with_their_slurm_state_and_leave_no_record() {
    if !cluster() {
        return;
    }
    let ws = Workspace::new();
    ws.write(
        "p.yaml",
        "name: faults\nstages:\n  bad:\n    kind: debug\n    params: { fail: true }\n  after:\n    kind: debug\n    inputs: { data: bad }\n  slow:\n    kind: debug\n    params: { sleep_ms: 300000 }\n    resources: { time: 1 }\n  fine:\n    kind: debug\n    params: { value: 3 }\n",
    );
    let (out, events) = ws.run_json("p.yaml", &["--executor", "slurm", "--poll", "0.2"]);
    assert_eq!(out.status.code(), Some(1));
    let failed: BTreeMap<&str, &str> = events
        .iter()
        .filter(|e| e["event"] == "failed")
        .map(|e| (e["stage"].as_str().unwrap(), e["error"].as_str().unwrap()))
        .collect();
    assert!(failed["bad"].starts_with("debug stage asked to fail (Slurm job "), "{}", failed["bad"]);
    assert!(failed["bad"].contains(" FAILED, NonZeroExitCode; log: "), "{}", failed["bad"]);
    assert!(failed["slow"].contains("exceeded its time limit (TIMEOUT, TimeLimit)"), "{}", failed["slow"]);
    assert!(failed["slow"].contains("DUE TO TIME LIMIT"), "the log's tail: {}", failed["slow"]);
    assert!(events.iter().any(|e| e["event"] == "skipped" && e["stage"] == "after"));
    assert_eq!(Workspace::ran(&events), vec!["fine"]);
    let m = ws.latest_manifest("faults");
    let status: BTreeMap<&str, &str> = m["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(status["bad"], "failed");
    assert_eq!(status["slow"], "failed");
    assert_eq!(ws.files_under("artifacts/records").len(), 1, "only `fine` has a record");
    // The failed run keeps its logs.
    let logs: Vec<String> = ws.files_under("artifacts/slurm").into_iter().filter(|f| f.ends_with(".log")).collect();
    assert_eq!(logs.len(), 3, "{logs:?}");
    // gc removes them.
    assert!(ws.cmd(&["gc"]).output().unwrap().status.success());
    assert!(ws.files_under("artifacts/slurm").is_empty());
}

#[test]
fn ctrl_c_cancels_the_submitted_jobs() {
    if !cluster() {
        return;
    }
    let ws = Workspace::new();
    ws.write("p.yaml", "name: cancel\nstages:\n  slow:\n    kind: debug\n    params: { sleep_ms: 120000, value: 9 }\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_scoreflow"))
        .current_dir(ws.path())
        .env_remove("SCOREFLOW_ARTIFACTS")
        .args(["run", "p.yaml", "--json", "--executor", "slurm", "--poll", "0.2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let id = loop {
        let line = lines.next().expect("a submitted event").unwrap();
        let e: serde_json::Value = serde_json::from_str(&line).unwrap();
        if e["event"] == "submitted" {
            break e["job"].as_str().unwrap().to_string();
        }
    };
    let t = Instant::now();
    while scontrol_state(&id) != "RUNNING" && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("interrupted while slow ran; cancelled its Slurm job"), "{err}");
    let t = Instant::now();
    while scontrol_state(&id) != "CANCELLED" && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(scontrol_state(&id), "CANCELLED");
    assert!(ws.files_under("artifacts/records").is_empty(), "a cancelled job leaves no record");
    assert_eq!(ws.latest_manifest("cancel")["stages"][0]["status"], "interrupted");
}

/// A command stage runs on a node as a worker job with the keys and output
/// hashes it has locally: the sandbox, code and inputs come from the shared
/// cache, not from the submitting process.
#[test]
fn a_command_stage_on_slurm_yields_the_local_hashes() {
    if !cluster() {
        return;
    }
    let script = "set -e\nawk -v s=\"$SCOREFLOW_SEED\" 'BEGIN { print \"i,v\"; for (i = 0; i < 50; i++) print i \",\" (i * s) % 7 }' > \"$SCOREFLOW_OUTPUT_DIR/t.csv\"\n";
    let spec = "name: cmd\nseed: 5\nmatrix:\n  seed: [1, 2]\nstages:\n  moons:\n    kind: generate\n    seed: 3\n    params: { dataset: two_moons, n_samples: 100 }\n  table:\n    kind: generate\n    run: [sh, scripts/make.sh]\n    code: [scripts/make.sh]\n    outputs: { t: table }\n  copy:\n    kind: validate\n    run: [sh, -c, 'cp \"$SCOREFLOW_INPUT_DATA\" \"$SCOREFLOW_OUTPUT_DIR/d.parquet\"']\n    inputs: { data: moons }\n    outputs: { d: table }\n";
    let mut outcomes = Vec::new();
    for executor in ["local", "slurm"] {
        let ws = Workspace::new();
        std::fs::create_dir_all(ws.path().join("scripts")).unwrap();
        ws.write("scripts/make.sh", script);
        ws.write("p.yaml", spec);
        let args: &[&str] = if executor == "slurm" { &["--executor", "slurm", "--poll", "0.2"] } else { &[] };
        let (out, events) = ws.run_json("p.yaml", args);
        assert!(
            out.status.success(),
            "{executor}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if executor == "slurm" {
            assert!(events.iter().any(|e| e["event"] == "submitted" && e["stage"] == "table[seed=2]"), "{events:?}");
        }
        outcomes.push(results(&ws, "cmd"));
    }
    assert_eq!(outcomes[0], outcomes[1], "same keys and content hashes on Slurm as locally");
}

/// A stage that needs about two minutes, under a one-minute time limit:
/// warned before the limit (`--signal=B:USR1@30`), the worker saves a
/// checkpoint and exits, and the coordinator resubmits it until it is done.
/// The output is the one a local run gives, and the manifest lists every
/// resubmission.
#[test]
fn a_stage_longer_than_its_time_limit_finishes_through_requeues() {
    if !cluster() {
        return;
    }
    let spec = |step_ms: u64| {
        format!(
            "name: long\nseed: 8\nstages:\n  walk:\n    kind: debug\n    params: {{ steps: 120, step_ms: {step_ms} }}\n    resources: {{ time: 1, checkpoint_every: 10 steps }}\n"
        )
    };
    // The table does not depend on the pace: a local run without sleeps.
    let local = Workspace::new();
    local.write("p.yaml", &spec(0));
    assert!(local.run_json("p.yaml", &[]).0.status.success());
    let ws = Workspace::new();
    ws.write("p.yaml", &spec(1000));
    let started = Instant::now();
    // `--no-resume`: the first job starts over, and its resubmissions still
    // continue from what it saved.
    let (out, events) = ws.run_json("p.yaml", &["--executor", "slurm", "--poll", "0.5", "--no-resume"]);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let line = common::stage_line(&ws, "long", "walk");
    let requeues = line["requeues"].as_array().expect("requeues in the manifest");
    eprintln!(
        "two minutes of work under a one-minute limit: {:.0}s, resubmitted {} times: {requeues:?}",
        started.elapsed().as_secs_f64(),
        requeues.len()
    );
    assert!(!requeues.is_empty(), "{line}");
    for r in requeues {
        assert!(["CHECKPOINTED", "TIMEOUT"].contains(&r["state"].as_str().unwrap()), "{r}");
        assert!(r["step"].as_u64().is_some_and(|s| s > 0 && s < 120), "{r}");
    }
    assert!(line["resumed_from"].as_u64().is_some_and(|s| s > 0), "{line}");
    // Each resubmitted job continued from the checkpoint its predecessor left.
    let resumed: Vec<_> =
        line["resumes"].as_array().expect("resumes in the manifest").iter().map(|r| &r["step"]).collect();
    assert_eq!(resumed, requeues.iter().map(|r| &r["step"]).collect::<Vec<_>>(), "{line}");
    assert!(
        events.iter().any(|e| e["event"] == "warning" && e["message"].as_str().unwrap().contains("resubmitted as job"))
    );
    assert_eq!(line["outputs"], common::stage_line(&local, "long", "walk")["outputs"], "the bytes of a local run");
    assert!(common::checkpoints(&ws).is_empty());
}
