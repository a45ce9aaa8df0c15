//! File inputs: a spec names a file a stage reads (`inputs: { sheet: { file:
//! path } }`); its content, never its path or mtime, enters the key.

mod common;

use common::Workspace;

const SPEC: &str = "name: sched\nstages:\n  timeline:\n    kind: generate\n    inputs: { sheet: { file: data/sheet.csv } }\n    params: { dataset: dopesheet }\n";
const SHEET: &str = "STEP,PHASE,ACTION,lr,reg-planar\n0,Train,,1e-8,0.02\n+10,,,0.01,\n100,,,0.005,0.1\n";

fn workspace() -> Workspace {
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.path().join("data")).unwrap();
    ws.write("data/sheet.csv", SHEET);
    ws.write("p.yaml", SPEC);
    ws
}

fn status(ws: &Workspace, spec: &str) -> String {
    let out = ws.cmd(&["status", spec]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Editing the file reruns its stage, with the file named in the reason;
/// moving it (same bytes, new path) leaves the stage fresh; touching it
/// (new mtime, same bytes) changes nothing.
#[test]
fn a_file_input_is_keyed_by_its_content() {
    let ws = workspace();
    let (out, events) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(Workspace::ran(&events), vec!["timeline"]);
    // The realised schedule is a table: step 0..=100, the key's value at its step.
    let out = ws
        .cmd(&["inspect", "timeline", "--pipeline", "p.yaml", "--sql", "SELECT lr FROM t WHERE step = 10", "--json"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("0.01"), "{}", String::from_utf8_lossy(&out.stdout));

    // Same bytes written again: fresh.
    ws.write("data/sheet.csv", SHEET);
    assert!(status(&ws, "p.yaml").contains("fresh"));

    // One cell edited: dirty, and the reason names the file.
    ws.write("data/sheet.csv", &SHEET.replace("0.005", "0.004"));
    let s = status(&ws, "p.yaml");
    assert!(s.contains("file data/sheet.csv changed (as `sheet`)"), "{s}");
    let (out, events) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success());
    assert_eq!(Workspace::ran(&events), vec!["timeline"]);
    let started = events.iter().find(|e| e["event"] == "started").unwrap();
    assert!(started["reasons"][0].as_str().unwrap().contains("file data/sheet.csv changed"), "{started}");

    // Moved and renamed, the spec following it: the same bytes, so fresh.
    std::fs::create_dir_all(ws.path().join("elsewhere")).unwrap();
    std::fs::rename(ws.path().join("data/sheet.csv"), ws.path().join("elsewhere/renamed.csv")).unwrap();
    ws.write("p.yaml", &SPEC.replace("data/sheet.csv", "elsewhere/renamed.csv"));
    assert!(status(&ws, "p.yaml").contains("fresh"), "{}", status(&ws, "p.yaml"));
    let (out, events) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success());
    assert!(Workspace::ran(&events).is_empty());
}

/// A missing file, a file bound to an input that takes a stage's table, and a
/// stage bound to an input that takes a file: errors at the spec's line and
/// column, all at once, exit 2, nothing written.
#[test]
fn file_input_errors_are_spec_errors() {
    let ws = workspace();
    let spec = "name: bad\nstages:\n  timeline:\n    kind: generate\n    inputs: { sheet: { file: data/missing.csv } }\n    params: { dataset: dopesheet }\n  other:\n    kind: generate\n    inputs: { sheet: timeline }\n    params: { dataset: dopesheet }\n  moons:\n    kind: sample\n    inputs: { model: { file: data/sheet.csv } }\n    params: { sampler: euler_discrete }\n";
    ws.write("bad.yaml", spec);
    let out = ws.cmd(&["run", "bad.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).replace(&ws.path().display().to_string(), "<ws>");
    insta::assert_snapshot!(err.lines().map(|l| l.split(" (os error").next().unwrap()).collect::<Vec<_>>().join("\n"));
    assert!(!ws.artifacts().exists(), "nothing written");
}
