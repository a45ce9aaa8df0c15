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

/// A file input stays inside the spec's project: a path out of it (`../..`,
/// an absolute path, a link pointing out) is an error at the path unless the
/// input says `allow_outside: true`, which `check` then names. Nothing but a
/// regular file is read (a FIFO would block, `/dev/zero` never ends), and
/// nothing over the size cap.
#[test]
fn file_inputs_stay_in_the_project_and_are_regular_files_under_the_cap() {
    let ws = Workspace::new();
    let proj = ws.path().join("proj");
    std::fs::create_dir_all(proj.join("pipelines")).unwrap();
    std::fs::create_dir_all(proj.join("data")).unwrap();
    ws.write("outside.csv", SHEET);
    ws.write("proj/data/sheet.csv", SHEET);
    std::os::unix::fs::symlink(ws.path().join("outside.csv"), proj.join("data/link.csv")).unwrap();
    let fifo = proj.join("data/pipe.csv");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let spec = |path: &str, extra: &str| {
        format!(
            "name: sched\nstages:\n  timeline:\n    kind: generate\n    inputs: {{ sheet: {{ file: {path}{extra} }} }}\n    params: {{ dataset: dopesheet }}\n"
        )
    };
    let check = |text: &str, env: Option<&str>| {
        ws.write("proj/pipelines/p.yaml", text);
        let mut cmd = ws.cmd(&["check", "proj/pipelines/p.yaml"]);
        if let Some(cap) = env {
            cmd.env("SCOREFLOW_MAX_INPUT_BYTES", cap);
        }
        let out = cmd.timeout(std::time::Duration::from_secs(20)).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
    };
    for path in ["../../outside.csv", "../data/link.csv", "/etc/passwd"] {
        let (code, text) = check(&spec(path, ""), None);
        assert_eq!(code, Some(2), "{path}: {text}");
        assert!(text.contains("p.yaml:5:") && text.contains("lies outside the project"), "{path}: {text}");
        assert!(text.contains("allow_outside: true"), "{text}");
    }
    let (code, text) = check(&spec("../../outside.csv", ", allow_outside: true"), None);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("reads `../../outside.csv` from outside the project"), "{text}");
    for path in ["../data/pipe.csv", "/dev/zero", "../data"] {
        let (code, text) = check(&spec(path, ", allow_outside: true"), None);
        assert_eq!(code, Some(2), "{path}: {text}");
        assert!(text.contains("is not a regular file"), "{path}: {text}");
    }
    let (code, text) = check(&spec("../data/sheet.csv", ""), Some("16"));
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("more than the 16 a file input may have"), "{text}");
    let (code, text) = check(&spec("../data/sheet.csv", ""), None);
    assert_eq!(code, Some(0), "{text}");
}

/// Objects take the cache's own permissions: in a cache only its owner may
/// enter, a file input (and every object) is 0600, whatever the source's mode.
#[test]
fn objects_take_the_caches_permissions_never_the_sources() {
    use std::os::unix::fs::PermissionsExt;
    let ws = workspace();
    std::fs::set_permissions(ws.path().join("data/sheet.csv"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::create_dir_all(ws.artifacts()).unwrap();
    std::fs::set_permissions(ws.artifacts(), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(ws.run_json("p.yaml", &[]).0.status.success());
    let objects = ws.files_under("artifacts/objects");
    assert!(!objects.is_empty());
    for o in objects {
        let mode = std::fs::metadata(ws.artifacts().join("objects").join(&o)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{o}");
    }
}

/// A dopesheet is parsed whole and range-checked by `check`: a bad cell or a
/// step past the bound is an error at the spec's input and at the sheet's own
/// line and column, exit 2, before anything runs (no other stage is cached).
#[test]
fn a_bad_dopesheet_stops_check_at_its_line_and_column() {
    let spec = format!("{SPEC}  moons:\n    kind: generate\n    params: {{ dataset: two_moons, n_samples: 100 }}\n");
    for (sheet, want) in [
        ("STEP,PHASE,ACTION,lr\n0,Train,,1e-3\n10,,,fast\n", "data/sheet.csv:3:6: lr: `fast` is not a finite number"),
        ("STEP,PHASE,ACTION,lr\n0,Train,,1e-3\n18446744073709551615,,,0.1\n", "data/sheet.csv:3:1: STEP: step"),
        (
            "STEP,PHASE,ACTION,lr\n0,Train,,1e-3\n1000000000000,,,0.1\n",
            "past the last step a sheet may have (10000000)",
        ),
        ("STEP,PHASE,ACTION,lr\n0,Train,,1e-3\n+18446744073709551615,,,0.1\n", "past the last step"),
    ] {
        let ws = workspace();
        ws.write("data/sheet.csv", sheet);
        ws.write("p.yaml", &spec);
        for cmd in ["check", "run"] {
            let out = ws.cmd(&[cmd, "p.yaml"]).timeout(std::time::Duration::from_secs(30)).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd} {sheet}: {err}");
            assert!(err.contains("p.yaml:5:") && err.contains(want), "{cmd}: expected `{want}` in {err}");
        }
        assert!(!ws.artifacts().exists(), "nothing cached");
    }
}
