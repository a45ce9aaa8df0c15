//! Engine behaviour with the test-only `debug` stage: caching, reasons, early
//! cutoff, renames, crash safety, corruption, concurrency and parallelism.
#![cfg(feature = "test-stages")]

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::Workspace;

fn chain(a_value: i64, a_sleep: i64, b_value: i64) -> String {
    format!(
        "name: chain\nseed: 1\nstages:\n  a:\n    kind: debug\n    params: {{ value: {a_value}, sleep_ms: {a_sleep} }}\n  b:\n    kind: debug\n    inputs: {{ data: a }}\n    params: {{ value: {b_value} }}\n  c:\n    kind: debug\n    inputs: {{ data: b }}\n  d:\n    kind: debug\n    params: {{ value: 100 }}\n"
    )
}

#[test]
fn first_run_runs_all_second_runs_none() {
    let ws = Workspace::new();
    ws.write("p.yaml", &chain(1, 0, 2));
    let (out, ev) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(Workspace::ran(&ev), ["a", "b", "c", "d"]);
    let (out, ev) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success());
    assert!(Workspace::ran(&ev).is_empty());
    assert_eq!(ev.iter().filter(|e| e["event"] == "fresh").count(), 4);
}

#[test]
fn changed_param_reruns_the_stage_and_its_dependents_only_and_says_why() {
    let ws = Workspace::new();
    ws.write("p.yaml", &chain(1, 0, 2));
    ws.run_json("p.yaml", &[]);
    ws.write("p.yaml", &chain(1, 0, 3));
    let status = ws.cmd(&["status", "p.yaml"]).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("param value changed 2 → 3"), "{text}");
    assert!(text.contains("waits for b"), "{text}");
    let (_, ev) = ws.run_json("p.yaml", &[]);
    assert_eq!(Workspace::ran(&ev), ["b", "c"]);
    let started: Vec<_> = ev.iter().filter(|e| e["event"] == "started").collect();
    assert_eq!(started[0]["reasons"][0], "param value changed 2 → 3");
    assert_eq!(started[1]["reasons"][0], "input b changed (as `data`)");
    // Reverting finds the earlier result (run cache): nothing runs.
    ws.write("p.yaml", &chain(1, 0, 2));
    let (_, ev) = ws.run_json("p.yaml", &[]);
    assert!(Workspace::ran(&ev).is_empty());
}

#[test]
fn early_cutoff_keeps_dependents_fresh() {
    let ws = Workspace::new();
    ws.write("p.yaml", &chain(1, 0, 2));
    ws.run_json("p.yaml", &[]);
    // sleep_ms changes a's key but not its output.
    ws.write("p.yaml", &chain(1, 5, 2));
    let (_, ev) = ws.run_json("p.yaml", &[]);
    assert_eq!(Workspace::ran(&ev), ["a"]);
}

#[test]
fn renamed_stage_reuses_its_cache() {
    let ws = Workspace::new();
    ws.write("p.yaml", &chain(1, 0, 2));
    ws.run_json("p.yaml", &[]);
    ws.write("p.yaml", &chain(1, 0, 2).replace("  d:\n", "  renamed:\n"));
    let (out, ev) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success());
    assert!(Workspace::ran(&ev).is_empty(), "{ev:?}");
}

#[test]
fn writing_a_default_explicitly_changes_nothing() {
    let ws = Workspace::new();
    ws.write("p.yaml", &chain(1, 0, 2));
    ws.run_json("p.yaml", &[]);
    ws.write(
        "p.yaml",
        &chain(1, 0, 2).replace("params: { value: 100 }", "params: { value: 100, fail: false, mode: echo }"),
    );
    let (_, ev) = ws.run_json("p.yaml", &[]);
    assert!(Workspace::ran(&ev).is_empty());
}

#[test]
fn forced_stage_reruns_and_only_and_force_are_checked() {
    let ws = Workspace::new();
    ws.write("p.yaml", &chain(1, 0, 2));
    let (_, ev) = ws.run_json("p.yaml", &["--only", "b"]);
    assert_eq!(Workspace::ran(&ev), ["a", "b"]);
    let (_, ev) = ws.run_json("p.yaml", &["--force", "a"]);
    assert_eq!(Workspace::ran(&ev), ["a", "c", "d"]);
    let out = ws.cmd(&["run", "p.yaml", "--only", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_failing_stage_exits_1_leaves_no_record_and_skips_dependents() {
    let ws = Workspace::new();
    ws.write("p.yaml", &chain(1, 0, 2).replace("params: { value: 2 }", "params: { value: 2, fail: true }"));
    let (out, ev) = ws.run_json("p.yaml", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(ev.iter().any(|e| e["event"] == "failed" && e["stage"] == "b"));
    assert!(ev.iter().any(|e| e["event"] == "skipped" && e["stage"] == "c"));
    // Only a and d have records.
    assert_eq!(ws.files_under("artifacts/records").len(), 2);
    let m = ws.latest_manifest("chain");
    assert_eq!(m["ok"], false);
}

#[test]
fn a_nan_is_an_error_never_a_cached_result() {
    let ws = Workspace::new();
    ws.write("p.yaml", "name: n\nstages:\n  a:\n    kind: debug\n    params: { nan: true }\n");
    let (out, ev) = ws.run_json("p.yaml", &[]);
    assert_eq!(out.status.code(), Some(1));
    let failed = ev.iter().find(|e| e["event"] == "failed").unwrap();
    assert!(failed["error"].as_str().unwrap().contains("non-finite loss NaN at step 3"));
    assert!(ws.files_under("artifacts/records").is_empty());
    assert!(ws.files_under("artifacts/objects").is_empty());
}

/// `run p.yaml --json --jobs 1` in the background, returned once stage `a` has
/// reported progress (its stdout is drained in a thread from then on).
fn run_until_a_reports_progress(ws: &Workspace) -> std::process::Child {
    let bin = assert_cmd::cargo::cargo_bin("scoreflow");
    let mut child = std::process::Command::new(bin)
        .current_dir(ws.path())
        .args(["run", "p.yaml", "--json", "--jobs", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("event").unwrap();
        if line.contains("\"progress\"") && line.contains("\"a\"") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    child
}

#[test]
fn kill_9_mid_stage_leaves_a_consistent_cache() {
    let ws = Workspace::new();
    ws.write("p.yaml", &chain(1, 3000, 2));
    let mut child = run_until_a_reports_progress(&ws);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // d may have completed (it has no sleep); a must not have a record.
    let status = ws.cmd(&["status", "p.yaml", "--json"]).output().unwrap();
    let st: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(st[0]["stage"], "a");
    assert_eq!(st[0]["fresh"], false);
    // A later run of the same spec completes and computes a.
    let (out, ev) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success());
    assert!(Workspace::ran(&ev).contains(&"a".to_string()));
}

#[test]
fn a_corrupted_cache_file_is_detected_recomputed_and_warned_about() {
    let ws = Workspace::new();
    ws.write("p.yaml", &chain(1, 0, 2));
    ws.run_json("p.yaml", &[]);
    // Find a's output object via the manifest and overwrite it with same-size garbage.
    let m = ws.latest_manifest("chain");
    let hash = m["stages"][0]["outputs"]["table"].as_str().unwrap().to_string();
    let path = ws.artifacts().join("objects").join(&hash[..2]).join(format!("{hash}.parquet"));
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    std::fs::write(&path, vec![b'x'; len]).unwrap();
    // b must rerun to read a's output: change b.
    ws.write("p.yaml", &chain(1, 0, 5));
    let (out, ev) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        ev.iter().any(|e| e["event"] == "warning" && e["message"].as_str().unwrap().contains("a.table is corrupt")),
        "{ev:?}"
    );
    let ran = Workspace::ran(&ev);
    assert!(ran.contains(&"a".to_string()) && ran.contains(&"b".to_string()), "{ran:?}");
    let started_a = ev.iter().find(|e| e["event"] == "started" && e["stage"] == "a").unwrap();
    assert_eq!(started_a["reasons"][0], "cached output table was corrupt");
    // Truncation is caught too (the size differs from the record's).
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len / 2).unwrap();
    let (_, ev) = ws.run_json("p.yaml", &[]);
    let started_a = ev.iter().find(|e| e["event"] == "started" && e["stage"] == "a").unwrap();
    assert_eq!(started_a["reasons"][0], "cached output table was corrupt");
    // A deleted object is missing.
    std::fs::remove_file(&path).unwrap();
    let (_, ev) = ws.run_json("p.yaml", &[]);
    let started_a = ev.iter().find(|e| e["event"] == "started" && e["stage"] == "a").unwrap();
    assert_eq!(started_a["reasons"][0], "output table missing from the cache");
}

#[test]
fn two_concurrent_runs_both_succeed_and_compute_each_stage_once() {
    let ws = Workspace::new();
    ws.write("p.yaml", &chain(1, 1500, 2));
    let bin = assert_cmd::cargo::cargo_bin("scoreflow");
    let spawn = || {
        std::process::Command::new(&bin)
            .current_dir(ws.path())
            .args(["run", "p.yaml", "--json"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (c1, c2) = (spawn(), spawn());
    let (o1, o2) = (c1.wait_with_output().unwrap(), c2.wait_with_output().unwrap());
    assert!(o1.status.success() && o2.status.success());
    let ran = |o: &std::process::Output| -> Vec<String> {
        let ev: Vec<serde_json::Value> =
            String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        Workspace::ran(&ev)
    };
    let mut all = ran(&o1);
    all.extend(ran(&o2));
    all.sort();
    assert_eq!(all, ["a", "b", "c", "d"], "each stage computed exactly once");
    // And the cache is whole: a third run is all fresh.
    let (_, ev) = ws.run_json("p.yaml", &[]);
    assert!(Workspace::ran(&ev).is_empty());
}

#[test]
fn independent_branches_run_in_parallel() {
    let ws = Workspace::new();
    ws.write(
        "p.yaml",
        "name: par\nstages:\n  x:\n    kind: debug\n    params: { value: 1, sleep_ms: 800 }\n  y:\n    kind: debug\n    params: { value: 2, sleep_ms: 800 }\n",
    );
    let (out, _) = ws.run_json("p.yaml", &["--jobs", "2"]);
    assert!(out.status.success());
    let m = ws.latest_manifest("par");
    let (x, y) = (&m["stages"][0], &m["stages"][1]);
    let overlap = x["started_ms"].as_u64().unwrap() < y["finished_ms"].as_u64().unwrap()
        && y["started_ms"].as_u64().unwrap() < x["finished_ms"].as_u64().unwrap();
    assert!(overlap, "intervals should overlap: {x} {y}");
}

#[test]
fn gc_removes_unreachable_results() {
    let ws = Workspace::new();
    ws.write("p.yaml", &chain(1, 0, 2));
    ws.run_json("p.yaml", &[]);
    ws.write("p.yaml", &chain(1, 0, 3));
    ws.run_json("p.yaml", &[]);
    let before = ws.files_under("artifacts/records").len();
    // Both runs are young: the default (30 days) keeps the first's results.
    let out = ws.cmd(&["gc", "--dry-run"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("would remove 0 records"));
    let out = ws.cmd(&["gc", "--dry-run", "--older-than", "0s"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("would remove 2 records"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(ws.files_under("artifacts/records").len(), before);
    ws.cmd(&["gc", "--older-than", "0s"]).assert().success();
    assert_eq!(ws.files_under("artifacts/records").len(), before - 2);
    let (_, ev) = ws.run_json("p.yaml", &[]);
    assert!(Workspace::ran(&ev).is_empty());
}

#[test]
fn two_spec_files_with_one_name_keep_their_own_runs_and_gc_roots() {
    let ws = Workspace::new();
    ws.write("p.yaml", &chain(1, 0, 2));
    ws.write("copy.yaml", &chain(1, 0, 3)); // same `name: chain`, another b
    let (out, _) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success());
    let out = ws.cmd(&["run", "copy.yaml"]).output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: p.yaml also names its pipeline `chain`"), "{err}");
    assert!(err.contains("runs/chain@copy"), "{err}");
    assert!(ws.artifacts().join("runs/chain/latest.json").exists());
    assert!(ws.artifacts().join("runs/chain@copy/latest.json").exists());
    // gc keeps both specs' latest results: nothing to remove.
    let out = ws.cmd(&["gc", "--dry-run"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("would remove 0 records"), "{text}");
    // Each spec is fresh against its own history.
    for spec in ["p.yaml", "copy.yaml"] {
        let (_, ev) = ws.run_json(spec, &[]);
        assert!(Workspace::ran(&ev).is_empty(), "{spec}");
    }
    // gc lists what it removes, and --dry-run lists the same.
    ws.write("copy.yaml", &chain(1, 0, 4));
    ws.run_json("copy.yaml", &[]);
    let dry = String::from_utf8_lossy(&ws.cmd(&["gc", "--dry-run", "--older-than", "0s"]).output().unwrap().stdout)
        .to_string();
    let real = String::from_utf8_lossy(&ws.cmd(&["gc", "--older-than", "0s"]).output().unwrap().stdout).to_string();
    assert!(
        dry.contains("would remove record records/") && dry.contains("(stage `b` of chain@copy, last in run "),
        "{dry}"
    );
    assert_eq!(dry.replace("would remove", "removed"), real);
}

#[test]
fn ctrl_c_records_what_finished_and_says_what_was_interrupted() {
    let ws = Workspace::new();
    ws.write("p.yaml", &chain(1, 3000, 2));
    let child = run_until_a_reports_progress(&ws);
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("interrupted while a ran"), "{err}");
    assert!(err.contains("finished stages are recorded in"), "{err}");
    let m = ws.latest_manifest("chain");
    let status = |name: &str| {
        m["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status("a").as_deref(), Some("interrupted"));
    assert_eq!(m["ok"], false);
    // The next run finishes the job, reusing what finished.
    let (out, ev) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success());
    let ran = Workspace::ran(&ev);
    assert!(ran.contains(&"a".to_string()));
    if status("d").as_deref() == Some("ran") {
        assert!(!ran.contains(&"d".to_string()), "d finished before the interrupt: reused");
    }
}

/// A stage that panics fails like any failed stage: the run ends at once
/// (never waits for a message the dead thread would have sent) with exit 1
/// and a manifest, its dependents are skipped, independent stages finish,
/// and `gc` takes the cache's lock immediately after.
#[test]
fn a_panicking_stage_fails_the_run_and_leaves_the_cache_usable() {
    let ws = Workspace::new();
    ws.write(
        "p.yaml",
        "name: pan\nstages:\n  a:\n    kind: debug\n    params: { panic: true }\n  b:\n    kind: debug\n    inputs: { data: a }\n  c:\n    kind: debug\n    params: { value: 3 }\n",
    );
    let out = ws.cmd(&["run", "p.yaml"]).timeout(std::time::Duration::from_secs(60)).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("the stage panicked (a bug, please report it): debug stage asked to panic"), "{text}");
    let m = ws.latest_manifest("pan");
    let status = |name: &str| {
        m["stages"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!((status("a"), status("b"), status("c")), ("failed".into(), "skipped".into(), "ran".into()));
    assert_eq!(ws.files_under("artifacts/records").len(), 1, "only c's record");
    let out = ws.cmd(&["gc", "--dry-run"]).timeout(std::time::Duration::from_secs(20)).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A truncated `latest.json` is not skipped as a gc root (which removed all of
/// its pipeline's results): gc refuses, naming the file, exit 2, nothing removed.
#[test]
fn gc_refuses_when_a_latest_manifest_does_not_parse() {
    let ws = Workspace::new();
    ws.write("p.yaml", &chain(1, 0, 2));
    let (out, _) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success());
    let before = ws.files_under("artifacts/objects").len() + ws.files_under("artifacts/records").len();
    let latest = ws.artifacts().join("runs/chain/latest.json");
    let text = std::fs::read(&latest).unwrap();
    std::fs::write(&latest, &text[..text.len() / 2]).unwrap();
    for args in [&["gc", "--dry-run"][..], &["gc"][..]] {
        let out = ws.cmd(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("latest.json does not parse") && err.contains("removed nothing"), "{err}");
    }
    let after = ws.files_under("artifacts/objects").len() + ws.files_under("artifacts/records").len();
    assert_eq!(after, before, "nothing removed");
}

/// `verify` goes on past an entry it cannot read (a directory where an object
/// or a record should be): it is left in place and reported, and every entry
/// after it is still checked.
#[test]
fn verify_reports_every_bad_entry_and_goes_on_past_unreadable_ones() {
    let ws = Workspace::new();
    ws.write("p.yaml", &chain(1, 0, 2));
    let (out, _) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success());
    let objects = ws.files_under("artifacts/objects");
    assert!(objects.len() >= 2, "{objects:?}");
    // Directories squatting at an object's and a record's name (in the first
    // shards), and a corrupt object that sorts after them.
    std::fs::create_dir_all(ws.artifacts().join("objects/00").join(format!("{}.parquet", "0".repeat(64)))).unwrap();
    std::fs::create_dir_all(ws.artifacts().join("records/00").join(format!("{}.json", "0".repeat(64)))).unwrap();
    let last = ws.artifacts().join("objects").join(objects.last().unwrap());
    std::fs::write(&last, b"garbage").unwrap();
    let out = ws.cmd(&["verify"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.matches("(left in place: not a file verify can read)").count(), 2, "both directories: {text}");
    assert!(text.contains(objects.last().unwrap().as_str()), "the corrupt object after them too: {text}");
}

/// The record file and the object file of stage `stage`'s output `table` in
/// the latest run of `chain`.
fn record_and_object(ws: &Workspace, stage: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let m = ws.latest_manifest("chain");
    let line = m["stages"].as_array().unwrap().iter().find(|s| s["name"] == stage).unwrap();
    let key = line["key"].as_str().unwrap();
    let hash = line["outputs"]["table"].as_str().unwrap();
    (
        ws.artifacts().join("records").join(&key[..2]).join(format!("{key}.json")),
        ws.artifacts().join("objects").join(&hash[..2]).join(format!("{hash}.parquet")),
    )
}

/// A flip in an object's Parquet footer metadata that still decodes to the
/// right content (`stage_kind: debug` → `eebug`): the stage reruns, and the
/// store replaces the flipped file with the right bytes instead of keeping it
/// as "valid by content" and recording its new file hash.
#[test]
fn a_flip_in_footer_metadata_is_replaced_not_adopted() {
    let ws = Workspace::new();
    ws.write("p.yaml", &chain(1, 0, 2));
    assert!(ws.run_json("p.yaml", &[]).0.status.success());
    let (_, object) = record_and_object(&ws, "a");
    let clean = std::fs::read(&object).unwrap();
    let at = clean.windows(5).rposition(|w| w == b"debug").expect("the stage kind in the footer");
    let mut flipped = clean.clone();
    flipped[at] ^= 0x01; // 'd' → 'e'
    std::fs::write(&object, &flipped).unwrap();
    let (out, ev) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success());
    assert_eq!(Workspace::ran(&ev), ["a"], "the flipped object is not fresh; its content is unchanged, so b is");
    assert_eq!(std::fs::read(&object).unwrap(), clean, "the original bytes are back");
    let out = ws.cmd(&["verify"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let shown = ws.cmd(&["inspect", "a", "--pipeline", "p.yaml"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&shown.stdout).contains("eebug"));
}

/// A record whose output `hash` was edited names an object that is not the
/// file it names: never fresh, and `verify` removes it.
#[test]
fn a_record_naming_another_objects_hash_is_not_a_result() {
    let ws = Workspace::new();
    ws.write("p.yaml", &chain(1, 0, 2));
    assert!(ws.run_json("p.yaml", &[]).0.status.success());
    let (record, _) = record_and_object(&ws, "d");
    let text = std::fs::read_to_string(&record).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["outputs"]["table"]["hash"] = serde_json::Value::String("ab".repeat(32));
    std::fs::write(&record, serde_json::to_vec_pretty(&json).unwrap()).unwrap();

    let out = ws.cmd(&["verify"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("the record names file"), "{said}");
    assert!(!record.exists(), "the record is removed");

    std::fs::write(&record, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    let (out, ev) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success());
    assert_eq!(Workspace::ran(&ev), ["d"]);
    let (_, ev) = ws.run_json("p.yaml", &[]);
    assert!(Workspace::ran(&ev).is_empty(), "healed: the rerun's record is right");
}

/// `gc` after a failed run keeps the previous results of the stages that
/// failed or were skipped in it: fixing the failure reuses them.
#[test]
fn gc_after_a_failed_run_keeps_the_previous_results_of_what_failed() {
    let ws = Workspace::new();
    ws.write("p.yaml", &chain(1, 0, 2));
    assert!(ws.run_json("p.yaml", &[]).0.status.success());
    // b now fails (c is skipped); a and d are fresh.
    ws.write("p.yaml", &chain(1, 0, 2).replace("params: { value: 2 }", "params: { value: 2, fail: true }"));
    assert_eq!(ws.run_json("p.yaml", &[]).0.status.code(), Some(1));
    let out = ws.cmd(&["gc", "--older-than", "0s"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("removed record"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    ws.write("p.yaml", &chain(1, 0, 2));
    let (out, ev) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success());
    assert!(Workspace::ran(&ev).is_empty(), "b and c kept through gc: {:?}", Workspace::ran(&ev));
}

/// `runs` and `compare` refuse a manifest that does not parse (exit 2, naming
/// it) instead of reporting without it.
#[test]
fn runs_and_compare_refuse_a_manifest_that_does_not_parse() {
    let ws = Workspace::new();
    ws.write("p.yaml", &chain(1, 0, 2));
    assert!(ws.run_json("p.yaml", &[]).0.status.success());
    let latest = ws.artifacts().join("runs/chain/latest.json");
    let text = std::fs::read(&latest).unwrap();
    std::fs::write(&latest, &text[..text.len() / 2]).unwrap();
    for args in [&["runs", "p.yaml"][..], &["compare", "p.yaml"][..]] {
        let out = ws.cmd(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("latest.json does not parse"), "{args:?}: {err}");
    }
}

/// `run` and `status` go on past an object or record they cannot read (a
/// directory in its place): that stage is not fresh, every other stage is
/// still assessed, and the run fails only the stage whose file is in the way,
/// saying where.
#[test]
fn run_and_status_go_on_past_unreadable_entries() {
    let ws = Workspace::new();
    ws.write("p.yaml", &chain(1, 0, 2));
    assert!(ws.run_json("p.yaml", &[]).0.status.success());
    let (_, object) = record_and_object(&ws, "a");
    let (record, _) = record_and_object(&ws, "d");
    std::fs::remove_file(&object).unwrap();
    std::fs::create_dir(&object).unwrap();
    std::fs::remove_file(&record).unwrap();
    std::fs::create_dir(&record).unwrap();
    let out = ws.cmd(&["status", "p.yaml", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fresh: Vec<(String, bool)> = st
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["stage"].as_str().unwrap().to_string(), s["fresh"].as_bool().unwrap()))
        .collect();
    assert_eq!(fresh.len(), 4, "{fresh:?}");
    assert!(fresh.iter().all(|(_, f)| !f), "a and d unreadable, b and c downstream of a: {fresh:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cached output table was corrupt"), "{text}");
    let (out, _) = ws.run_json("p.yaml", &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("Is a directory"), "the stage says what is in the way: {text}");
}

/// The numerics' random streams are the engine's canonical encoding of
/// (domain, seed, name[, particle]): every cached result was drawn from
/// streams seeded this way, so the two must never drift apart.
#[test]
fn random_streams_use_the_engines_canonical_encoding() {
    use rand::{RngCore, SeedableRng};
    use scoreflow::engine::hash::Canon;
    for (seed, name, p) in [(0u64, "", 0usize), (7, "init", 3), (u64::MAX, "pc", 1 << 40), (42, "ddpm-ancestral", 9)] {
        let mut c = Canon::new("scoreflow/rng/v1");
        c.u64(seed).bytes(name.as_bytes());
        let want = rand_chacha::ChaCha8Rng::from_seed(c.finish().0).next_u64();
        assert_eq!(scoreflow::numerics::rng::stream(seed, name).next_u64(), want, "stream({seed}, {name:?})");
        let mut c = Canon::new("scoreflow/particle-rng/v1");
        c.u64(seed).bytes(name.as_bytes()).u64(p as u64);
        let want = rand_chacha::ChaCha8Rng::from_seed(c.finish().0).next_u64();
        assert_eq!(
            scoreflow::numerics::rng::particle(seed, name, p).next_u64(),
            want,
            "particle({seed}, {name:?}, {p})"
        );
    }
}
