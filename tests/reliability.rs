//! Cache integrity under corruption, gc beside a run, and kill -9: each fault is
//! injected into a real cache and the next run must end with outputs
//! byte-identical to a clean run's, saying what was bad.
//!
//! * the corruption matrix: {truncate, same-size bit flip, delete, garbage
//!   record} × {table, model blob, report page}, plus a missing `runs/`;
//! * `verify` finds and removes what is bad;
//! * `gc` in a loop beside a run never loses a result;
//! * a bounded kill -9 loop leaves nothing the next run does not clean.
#![cfg(feature = "test-stages")]

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;

use common::{Workspace, small_moons};

/// Every object file's bytes, by relative path.
fn objects(ws: &Workspace) -> Vec<(String, Vec<u8>)> {
    ws.files_under("artifacts/objects")
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(ws.artifacts().join("objects").join(&f)).unwrap();
            (f, bytes)
        })
        .collect()
}

/// The object file of `stage.output` in the latest run.
fn object_of(ws: &Workspace, stage: &str, output: &str) -> PathBuf {
    let m = ws.latest_manifest("two_moons");
    let line = m["stages"].as_array().unwrap().iter().find(|s| s["name"] == stage).unwrap();
    let hash = line["outputs"][output].as_str().unwrap();
    let dir = ws.artifacts().join("objects").join(&hash[..2]);
    ["parquet", "bin"].iter().map(|e| dir.join(format!("{hash}.{e}"))).find(|p| p.exists()).unwrap()
}

fn record_of(ws: &Workspace, stage: &str) -> PathBuf {
    let m = ws.latest_manifest("two_moons");
    let line = m["stages"].as_array().unwrap().iter().find(|s| s["name"] == stage).unwrap();
    let key = line["key"].as_str().unwrap();
    ws.artifacts().join("records").join(&key[..2]).join(format!("{key}.json"))
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Truncate,
    BitFlip,
    Delete,
    GarbageRecord,
}

fn inject(ws: &Workspace, fault: Fault, stage: &str, output: &str) {
    let obj = object_of(ws, stage, output);
    match fault {
        Fault::Truncate => {
            let len = std::fs::metadata(&obj).unwrap().len();
            std::fs::OpenOptions::new().write(true).open(&obj).unwrap().set_len(len / 2).unwrap();
        }
        Fault::BitFlip => {
            let mut bytes = std::fs::read(&obj).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x10;
            std::fs::write(&obj, bytes).unwrap();
        }
        Fault::Delete => std::fs::remove_file(&obj).unwrap(),
        Fault::GarbageRecord => std::fs::write(record_of(ws, stage), b"{\"format\": 1, \"key\": 12").unwrap(),
    }
}

#[test]
fn every_fault_on_every_object_kind_heals_to_the_clean_bytes_with_a_warning() {
    let clean = Workspace::new();
    clean.write("p.yaml", &small_moons());
    clean.cmd(&["run", "p.yaml"]).assert().success();
    let want = objects(&clean);

    let targets = [("moons", "samples"), ("ddpm", "model"), ("report", "html")];
    let faults = [Fault::Truncate, Fault::BitFlip, Fault::Delete, Fault::GarbageRecord];
    for (stage, output) in targets {
        for fault in faults {
            let ws = Workspace::new();
            ws.write("p.yaml", &small_moons());
            ws.cmd(&["run", "p.yaml"]).assert().success();
            inject(&ws, fault, stage, output);
            let out = ws.cmd(&["run", "p.yaml"]).output().unwrap();
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success(), "{fault:?} on {stage}.{output}: {text}");
            let said = match fault {
                Fault::Truncate | Fault::BitFlip => format!("cached output {stage}.{output} is corrupt"),
                Fault::Delete => format!("output {output} missing from the cache"),
                Fault::GarbageRecord => format!("of stage {stage} is not a record"),
            };
            assert!(text.contains(&said), "{fault:?} on {stage}.{output}: expected `{said}` in\n{text}");
            assert_eq!(objects(&ws), want, "{fault:?} on {stage}.{output}: outputs differ from a clean run");
            // And the page is published whole.
            let page = ws.artifacts().join("reports/two_moons/report/index.html");
            assert!(std::fs::read_to_string(page).unwrap().contains("sliced_w1"));
            // The next run is all fresh.
            let (_, ev) = ws.run_json("p.yaml", &[]);
            assert!(Workspace::ran(&ev).is_empty(), "{fault:?} on {stage}.{output}");
        }
    }
}

#[test]
fn a_missing_runs_folder_loses_nothing() {
    let ws = Workspace::new();
    ws.write("p.yaml", &small_moons());
    ws.cmd(&["run", "p.yaml"]).assert().success();
    let want = objects(&ws);
    std::fs::remove_dir_all(ws.artifacts().join("runs")).unwrap();
    let (out, ev) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success());
    assert!(Workspace::ran(&ev).is_empty(), "records alone make every stage fresh");
    assert_eq!(objects(&ws), want);
    assert!(ws.artifacts().join("runs/two_moons/latest.json").exists());
}

#[test]
fn verify_reports_and_removes_what_is_bad() {
    let ws = Workspace::new();
    ws.write("p.yaml", &small_moons());
    ws.cmd(&["run", "p.yaml"]).assert().success();
    let out = ws.cmd(&["verify"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("all good"));

    let model = object_of(&ws, "ddpm", "model");
    inject(&ws, Fault::BitFlip, "ddpm", "model");
    inject(&ws, Fault::GarbageRecord, "moons", "samples");
    let out = ws.cmd(&["verify"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let rel = model.strip_prefix(ws.artifacts()).unwrap().display().to_string();
    assert!(text.contains(&format!("bad: {rel}: corrupt")), "{text}");
    assert!(text.contains("not a record"), "{text}");
    assert!(text.contains("output model: its object"), "the record naming the bad object goes too: {text}");
    assert!(!model.exists());
    // Clean again, and the next run recomputes exactly what was removed.
    assert!(ws.cmd(&["verify"]).output().unwrap().status.success());
    let (out, ev) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success());
    assert_eq!(Workspace::ran(&ev), ["ddpm", "moons"]);
}

/// Three debug stages in a chain, each sleeping `ms`.
fn slow_chain(ms: u64) -> String {
    format!(
        "name: slow\nstages:\n  a:\n    kind: debug\n    params: {{ value: 1, sleep_ms: {ms} }}\n  b:\n    kind: debug\n    inputs: {{ data: a }}\n    params: {{ value: 2, sleep_ms: {ms} }}\n  c:\n    kind: debug\n    inputs: {{ data: b }}\n    params: {{ value: 3, sleep_ms: {ms} }}\n"
    )
}

#[test]
fn gc_in_a_loop_beside_a_run_never_loses_a_result() {
    let ws = Workspace::new();
    // Something for gc to collect: an older result nobody's latest run uses.
    ws.write("old.yaml", &slow_chain(0).replace("name: slow", "name: old"));
    ws.cmd(&["run", "old.yaml"]).assert().success();
    ws.write("old.yaml", &slow_chain(0).replace("name: slow", "name: old").replace("value: 3", "value: 4"));
    ws.cmd(&["run", "old.yaml"]).assert().success();

    ws.write("p.yaml", &slow_chain(400));
    let bin = assert_cmd::cargo::cargo_bin("scoreflow");
    let mut run = std::process::Command::new(&bin)
        .current_dir(ws.path())
        .args(["run", "p.yaml", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut removed_any = false;
    while run.try_wait().unwrap().is_none() {
        let out = ws.cmd(&["gc", "--older-than", "0s"]).output().unwrap();
        assert!(out.status.success());
        removed_any |= String::from_utf8_lossy(&out.stdout).contains("removed record ");
    }
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(removed_any, "gc collected the old result while the run went on");
    ws.cmd(&["gc"]).assert().success();
    let (out, ev) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success());
    assert!(Workspace::ran(&ev).is_empty(), "every result of the run survived gc");
}

#[test]
fn a_bounded_kill_9_loop_leaves_nothing_the_next_run_does_not_clean() {
    let ws = Workspace::new();
    ws.write("p.yaml", &slow_chain(300));
    let bin = assert_cmd::cargo::cargo_bin("scoreflow");
    for kill in 0..5 {
        let mut child = std::process::Command::new(&bin)
            .current_dir(ws.path())
            .args(["run", "p.yaml", "--json", "--jobs", "1"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Kill after a varying number of progress events: mid-stage, between stages.
        let mut seen = 0;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.contains("\"progress\"") || line.contains("\"finished\"") {
                seen += 1;
                if seen == 3 + 4 * kill {
                    break;
                }
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // Also leave a partial write of a dead process behind.
        std::fs::create_dir_all(ws.artifacts().join("tmp")).unwrap();
        std::fs::write(ws.artifacts().join(format!("tmp/{}-1-{kill}.partial", 4_000_000 + kill)), b"half").unwrap();
    }
    let (out, _) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success());
    assert!(ws.files_under("artifacts/tmp").is_empty(), "{:?}", ws.files_under("artifacts/tmp"));
    assert!(ws.files_under("artifacts/locks").is_empty(), "{:?}", ws.files_under("artifacts/locks"));
    let (_, ev) = ws.run_json("p.yaml", &[]);
    assert!(Workspace::ran(&ev).is_empty());
    let out = ws.cmd(&["verify"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// A figure corrupted (or edited) in `reports/` is written again by the next
/// run, although its object is unchanged; an intact one is left alone.
#[test]
fn a_corrupted_published_figure_is_rewritten() {
    let ws = Workspace::new();
    ws.write("p.yaml", &small_moons());
    ws.cmd(&["run", "p.yaml"]).assert().success();
    let dir = ws.artifacts().join("reports/two_moons/report");
    let figure = dir.join("training.png");
    let clean = std::fs::read(&figure).unwrap();
    let mut bad = clean.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x20;
    std::fs::write(&figure, &bad).unwrap();
    let other = dir.join("generated.png");
    let before = std::fs::metadata(&other).unwrap().modified().unwrap();
    let (out, ev) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success());
    assert!(Workspace::ran(&ev).is_empty());
    assert_eq!(std::fs::read(&figure).unwrap(), clean, "the figure is the object's bytes again");
    assert_eq!(std::fs::metadata(&other).unwrap().modified().unwrap(), before, "an intact figure is not rewritten");
}
