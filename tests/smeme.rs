//! The flagship pipeline's first stages through the real binary: the data set,
//! its labels, explanations, inspect, determinism.

mod common;

use common::Workspace;

/// The flagship spec's data stages (generate, label): the diffusion stages are
/// exercised with small settings in `tests/diffusion.rs`.
fn smeme() -> String {
    let full = std::fs::read_to_string(common::checkout("pipelines/smeme.yaml")).unwrap();
    full[..full.find("  pretrain:").expect("pretrain stage")].to_string()
}

#[test]
fn smeme_runs_and_reruns_nothing() {
    let ws = Workspace::new();
    ws.write("smeme.yaml", &smeme());
    let out = ws.cmd(&["run", "smeme.yaml"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("triangles  running  because new stage, no cached result"), "{text}");
    let (_, ev) = ws.run_json("smeme.yaml", &[]);
    assert!(Workspace::ran(&ev).is_empty());
}

#[test]
fn labels_follow_the_seed_quotas() {
    let ws = Workspace::new();
    ws.write("smeme.yaml", &smeme());
    ws.cmd(&["run", "smeme.yaml"]).assert().success();
    let out =
        ws.cmd(&["inspect", "labelled.counts", "--pipeline", "smeme.yaml", "--json", "-n", "6"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let count =
        |ty: &str| v["head"].as_array().unwrap().iter().find(|r| r["type"] == ty).unwrap()["count"].as_i64().unwrap();
    // Quotas: int(4096·0.05) = 204 isosceles, int(4096·0.9) = 3686 scalene (at most),
    // then int(4096·0.7) = 2867 acute and int(4096·0.3) = 1228 obtuse (at most).
    assert_eq!(count("equilateral"), 0);
    assert_eq!(count("right"), 0);
    assert!(count("isosceles") <= 204);
    assert!(count("obtuse") <= 1228 && count("acute") <= 2867);
    let rows = count("acute") + count("obtuse");
    assert_eq!(rows, count("isosceles") + count("scalene"));
    // The seed got 2764 rows; ours differ only by the random draw.
    assert!((2600..=2950).contains(&rows), "{rows}");
    assert_eq!(v["metadata"]["scoreflow.stage_kind"], "label");
    // Lineage: the file alone says where it came from.
    let meta = &v["metadata"];
    assert_eq!(meta["scoreflow.stage"], "labelled");
    assert_eq!(meta["scoreflow.pipeline"], "smeme");
    assert_eq!(meta["scoreflow.spec_file"], "smeme.yaml");
    assert_eq!(meta["scoreflow.impl_version"], "1");
    let inputs: serde_json::Value = serde_json::from_str(meta["scoreflow.inputs"].as_str().unwrap()).unwrap();
    let m = ws.latest_manifest("smeme");
    let triangles = m["stages"].as_array().unwrap().iter().find(|s| s["name"] == "triangles").unwrap();
    assert_eq!(inputs["data"], triangles["outputs"]["samples"], "the input's content hash");
}

#[test]
fn status_names_the_changed_param() {
    let ws = Workspace::new();
    ws.write("smeme.yaml", &smeme());
    ws.cmd(&["run", "smeme.yaml"]).assert().success();
    ws.write("smeme.yaml", &smeme().replace("n_samples: 4096", "n_samples: 2048"));
    let out = ws.cmd(&["status", "smeme.yaml"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("triangles  dirty  param n_samples changed 4096 → 2048"), "{text}");
    assert!(text.contains("labelled   dirty  waits for triangles"), "{text}");
}

#[test]
fn same_spec_and_seed_give_identical_bytes() {
    let (a, b) = (Workspace::new(), Workspace::new());
    for ws in [&a, &b] {
        ws.write("smeme.yaml", &smeme());
        ws.cmd(&["run", "smeme.yaml"]).assert().success();
    }
    let objects = a.files_under("artifacts/objects");
    assert_eq!(objects, b.files_under("artifacts/objects"));
    for f in &objects {
        let p = format!("artifacts/objects/{f}");
        assert_eq!(std::fs::read(a.path().join(&p)).unwrap(), std::fs::read(b.path().join(&p)).unwrap());
    }
    // A different seed changes the data.
    let c = Workspace::new();
    c.write("smeme.yaml", &smeme().replace("seed: 42", "seed: 43"));
    c.cmd(&["run", "smeme.yaml"]).assert().success();
    assert_ne!(c.files_under("artifacts/objects"), objects);
}

#[test]
fn inspect_sql_dag_and_check() {
    let ws = Workspace::new();
    ws.write("smeme.yaml", &smeme());
    ws.cmd(&["run", "smeme.yaml"]).assert().success();
    let out = ws
        .cmd(&[
            "inspect",
            "labelled",
            "--pipeline",
            "smeme.yaml",
            "--sql",
            "SELECT side_type, COUNT(*) AS n FROM t GROUP BY side_type ORDER BY side_type",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("isosceles") && text.contains("describe:"), "{text}");
    let dot = ws.cmd(&["dag", "smeme.yaml", "--dot"]).output().unwrap();
    assert!(String::from_utf8_lossy(&dot.stdout).contains("\"triangles\" -> \"labelled\""));
    ws.cmd(&["check", "smeme.yaml"]).assert().success();
    let out = ws.cmd(&["inspect", "nosuch", "--pipeline", "smeme.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn artifacts_dir_defaults_beside_pipelines_and_env_overrides() {
    let ws = Workspace::new();
    std::fs::create_dir(ws.path().join("pipelines")).unwrap();
    ws.write("pipelines/smeme.yaml", &smeme());
    ws.cmd(&["run", "pipelines/smeme.yaml"]).assert().success();
    assert!(ws.path().join("artifacts/runs/smeme/latest.json").exists());
    ws.cmd(&["run", "pipelines/smeme.yaml"]).env("SCOREFLOW_ARTIFACTS", ws.path().join("elsewhere")).assert().success();
    assert!(ws.path().join("elsewhere/runs/smeme/latest.json").exists());
}
