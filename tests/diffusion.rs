//! The diffusion stages of the flagship pipeline through the real binary, at
//! small settings: train → sample → validate, reruns, determinism.

mod common;

use common::{Workspace, small_smeme};

#[test]
fn pipeline_runs_through_validation_and_snr_reruns_only_sampling() {
    let ws = Workspace::new();
    ws.write("smeme.yaml", &small_smeme());
    let out = ws.cmd(&["run", "smeme.yaml"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("[validity]") && text.contains("Total: 300") && text.contains("Valid: "), "{text}");
    assert!(text.contains("[tuned]") && text.contains("[outer 1] valid"), "{text}");
    assert!(text.contains("Exploration (reference → samples, change):"), "{text}");
    assert!(text.contains("mean loss per epoch: "), "{text}");
    let (_, ev) = ws.run_json("smeme.yaml", &[]);
    assert!(Workspace::ran(&ev).is_empty());
    // --json says the cached checks' headlines too, before its last event.
    let summary = ev.iter().position(|e| e["event"] == "summary" && e["stage"] == "validity").expect("a summary");
    assert!(ev[summary]["text"].as_str().unwrap().contains("Total: 300"), "{:?}", ev[summary]);
    assert_eq!((summary < ev.len() - 1, &ev[ev.len() - 1]["event"]), (true, &"run_finished".into()));
    // Only the first sample stage's snr: it, its validation and the comparison rerun.
    ws.write("smeme.yaml", &small_smeme().replacen("snr: 0.15, prior", "snr: 0.2, prior", 1));
    let (out, ev) = ws.run_json("smeme.yaml", &[]);
    assert!(out.status.success());
    assert_eq!(Workspace::ran(&ev), ["report", "samples", "validity", "validity_tuned"]);
    let started = ev.iter().find(|e| e["event"] == "started" && e["stage"] == "samples").unwrap();
    assert_eq!(started["reasons"][0], "param snr changed 0.15 → 0.2");
    // The validity table and per-sample flags are inspectable.
    let out =
        ws.cmd(&["inspect", "validity.summary", "--pipeline", "smeme.yaml", "--json", "-n", "20"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = v["head"].as_array().unwrap().iter().find(|r| r["metric"] == "n").unwrap()["value"].as_f64().unwrap();
    assert_eq!(n, 300.0);
}

#[test]
fn same_spec_same_seed_same_bytes() {
    let (a, b) = (Workspace::new(), Workspace::new());
    for ws in [&a, &b] {
        ws.write("smeme.yaml", &small_smeme());
        ws.cmd(&["run", "smeme.yaml"]).assert().success();
    }
    let objects = a.files_under("artifacts/objects");
    assert!(objects.iter().any(|f| f.ends_with(".bin")), "the model is stored as a blob");
    assert_eq!(objects, b.files_under("artifacts/objects"));
    for f in &objects {
        let p = format!("artifacts/objects/{f}");
        assert_eq!(std::fs::read(a.path().join(&p)).unwrap(), std::fs::read(b.path().join(&p)).unwrap(), "{f}");
    }
}

#[test]
fn the_ndarray_device_runs_the_same_pipeline() {
    let ws = Workspace::new();
    ws.write("smeme.yaml", &small_smeme());
    let out = ws.cmd(&["run", "smeme.yaml", "--device", "ndarray", "--only", "pretrain"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn changing_beta_reruns_only_tune_and_what_follows() {
    let ws = Workspace::new();
    ws.write("smeme.yaml", &small_smeme());
    ws.cmd(&["run", "smeme.yaml"]).assert().success();
    ws.write("smeme.yaml", &small_smeme().replace("beta: 0.9", "beta: 2.0"));
    let (out, ev) = ws.run_json("smeme.yaml", &[]);
    assert!(out.status.success());
    assert_eq!(Workspace::ran(&ev), ["report", "samples_tuned", "tuned", "validity_tuned"]);
    let m = ws.latest_manifest("smeme");
    let tuned = m["stages"].as_array().unwrap().iter().find(|s| s["name"] == "tuned").unwrap();
    assert_eq!(tuned["reasons"][0], "param beta changed 0.9 → 2.0");
}

#[test]
fn the_report_references_only_files_that_exist_and_its_pngs_are_not_blank() {
    let ws = Workspace::new();
    ws.write("smeme.yaml", &small_smeme());
    let out = ws.cmd(&["run", "smeme.yaml"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let page = ws.path().join("artifacts/reports/smeme/report/index.html");
    assert!(text.contains("report: ") && text.contains("reports/smeme/report/index.html"), "{text}");
    let html = std::fs::read_to_string(&page).unwrap();
    // The page records the experiment: the result in words, the seed's numbers
    // beside ours, the stage table with why each stage ran, and the spec.
    for part in ["<h2>Result</h2>", "Tuning moved the valid fraction from", "89.09", "90.62", "Exploration"] {
        assert!(html.contains(part), "{part} missing from the page");
    }
    for part in ["<h2>This run</h2>", "<h2>Spec</h2>", "no cached result", "n_samples: 300", "model ← tuned.model"] {
        assert!(html.contains(part), "{part} missing from the page");
    }
    let dir = page.parent().unwrap();
    let srcs: Vec<&str> = html.split("src=\"").skip(1).map(|s| &s[..s.find('"').unwrap()]).collect();
    assert_eq!(srcs.len(), 5, "{srcs:?}");
    // The folder holds the page and its figures, nothing left from older runs.
    std::fs::write(dir.join("uv_scatter.png"), b"from an older report version").unwrap();
    ws.cmd(&["run", "smeme.yaml"]).assert().success();
    let mut files: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    let mut expected: Vec<String> = srcs.iter().map(|s| s.to_string()).chain(["index.html".into()]).collect();
    expected.sort();
    assert_eq!(files, expected);
    for src in srcs {
        let bytes = std::fs::read(dir.join(src)).unwrap_or_else(|e| panic!("{src}: {e}"));
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        let coloured = buf.chunks(3).filter(|p| p != &[255, 255, 255]).count();
        assert!(coloured > 2000, "{src} looks blank");
    }
    // The rerun above found every stage cached and says, for each, the run
    // that computed it and why, and when this run checked it.
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("ran in run ").count(), 9, "{html}");
    assert_eq!(html.matches("; last checked ").count(), 9, "{html}");
}
