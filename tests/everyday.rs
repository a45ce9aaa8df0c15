//! Everyday use as a new user meets it: one cache wherever the command runs
//! from, a diverging training that fails instead of caching, and plain words
//! for a spec file that is not there.

mod common;

use common::{Workspace, small_smeme};

#[test]
fn the_cache_is_the_same_from_any_directory() {
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.path().join("pipelines")).unwrap();
    ws.write("pipelines/smeme.yaml", &small_smeme());
    let out = ws.cmd(&["run", "pipelines/smeme.yaml"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let root = std::fs::canonicalize(ws.artifacts()).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("cache: {}\n", root.display())));
    // From inside pipelines/, and through `..`: the same cache, all fresh.
    for (dir, spec) in [("pipelines", "smeme.yaml"), ("pipelines", "../pipelines/smeme.yaml")] {
        let out = ws.cmd(&["status", spec]).current_dir(ws.path().join(dir)).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with(&format!("cache: {}\n", root.display())), "{text}");
        assert!(!text.contains("dirty"), "{text}");
        let (_, ev) = {
            let out = ws.cmd(&["run", spec, "--json"]).current_dir(ws.path().join(dir)).output().unwrap();
            let ev: Vec<serde_json::Value> =
                String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
            (out, ev)
        };
        assert!(Workspace::ran(&ev).is_empty());
    }
    assert!(!ws.path().join("pipelines/artifacts").exists(), "no second cache");
}

#[test]
fn a_diverging_training_fails_and_caches_nothing() {
    let ws = Workspace::new();
    ws.write("p.yaml", &small_smeme().replace("lr: 0.01", "lr: 1000"));
    let out = ws.cmd(&["run", "p.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("pretrain") && text.contains("FAILED"), "{text}");
    assert!(text.contains("training diverged") || text.contains("non-finite loss"), "{text}");
    assert!(text.contains("at step"), "{text}");
    let status = ws.cmd(&["status", "p.yaml", "--json"]).output().unwrap();
    let st: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let pretrain = st.as_array().unwrap().iter().find(|s| s["stage"] == "pretrain").unwrap();
    assert_eq!(pretrain["fresh"], false, "no record for the diverged stage");
}

/// One step is enough to diverge: the update after the only loss the loop
/// sees is checked by one more loss of the final weights, so `lr: 1000` with
/// a single step fails the training stage (not only the sampler after it).
#[test]
fn a_single_diverging_step_fails_the_training_stage() {
    for (pipeline, stage, edit) in [
        (
            small_smeme(),
            "pretrain",
            [("lr: 0.01", "lr: 1000"), ("epochs: 2", "epochs: 1"), ("batches_per_epoch: 20", "batches_per_epoch: 1")],
        ),
        (
            common::small_moons(),
            "ddpm",
            [
                ("lr: 0.001", "lr: 1000"),
                ("train_steps: 60", "train_steps: 1"),
                ("weight_decay: 0.01", "weight_decay: 0.01"),
            ],
        ),
    ] {
        let ws = Workspace::new();
        let text = edit.iter().fold(pipeline, |t, (a, b)| {
            assert!(t.contains(a), "{a}");
            t.replace(a, b)
        });
        ws.write("p.yaml", &text);
        let out = ws.cmd(&["run", "p.yaml"]).output().unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{said}");
        assert!(said.contains(&format!("{stage} FAILED")) || said.contains(stage), "{said}");
        assert!(said.contains("training diverged") || said.contains("non-finite loss"), "{stage}: {said}");
        let status = ws.cmd(&["status", "p.yaml", "--json"]).output().unwrap();
        let st: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        let line = st.as_array().unwrap().iter().find(|s| s["stage"] == stage).unwrap();
        assert_eq!(line["fresh"], false, "{stage}: no record for the diverged stage");
    }
}

#[test]
fn a_missing_spec_file_is_named_in_plain_words() {
    let ws = Workspace::new();
    for cmd in ["run", "status", "check", "dag"] {
        let out = ws.cmd(&[cmd, "nope.yaml"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err, "error: nope.yaml: no such file\n", "{cmd}");
    }
    assert!(!ws.artifacts().exists());
}

#[test]
fn inspect_shows_as_many_rows_as_asked() {
    let ws = Workspace::new();
    ws.write("p.yaml", &small_smeme());
    ws.cmd(&["run", "p.yaml", "--only", "triangles"]).assert().success();
    let out = ws.cmd(&["inspect", "triangles.samples", "--pipeline", "p.yaml", "-n", "15"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // The head table: rows after the `╞═…` rule up to the closing `└…`.
    let section = text.split("head(15):").nth(1).unwrap();
    let body = section.split('╞').nth(1).unwrap().split('└').next().unwrap();
    let rows: Vec<&str> = body.lines().filter(|l| l.starts_with('│')).collect();
    assert_eq!(rows.len(), 15, "{section}");
    assert!(!body.contains('…'), "no elided rows: {section}");
}

/// The SQL table is `t`, and a column named `t` (the sampler's trajectories
/// have one) does not clash with it: bare `t` in a select list or a condition
/// is the column, `FROM t` the table, `t.t` the column qualified.
#[test]
fn sql_over_a_table_with_a_column_named_t() {
    let ws = Workspace::new();
    ws.write("p.yaml", &small_smeme());
    ws.cmd(&["run", "p.yaml", "--only", "samples"]).assert().success();
    let query = |q: &str| -> serde_json::Value {
        let out = ws
            .cmd(&["inspect", "samples.trajectories", "--pipeline", "p.yaml", "--json", "-n", "100", "--sql", q])
            .output()
            .unwrap();
        assert!(out.status.success(), "{q}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let all = query("SELECT * FROM t");
    let rows = all["rows"].as_u64().unwrap();
    let half = query("SELECT t, a FROM t WHERE t < 0.5");
    let kept = half["rows"].as_u64().unwrap();
    assert!(kept > 0 && kept < rows, "{kept} of {rows}");
    let names: Vec<&str> = half["schema"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["t", "a"]);
    assert_eq!(query("SELECT t.t FROM t WHERE t.t < 0.5")["rows"], kept);
    assert_eq!(query("SELECT MAX(t) AS t FROM t")["rows"], 1);
}

#[test]
fn a_copied_spec_that_keeps_the_name_publishes_its_own_report() {
    let ws = Workspace::new();
    ws.write("smeme.yaml", &small_smeme());
    ws.write("smeme_snr.yaml", &small_smeme().replace("snr: 0.15, prior: standard }", "snr: 0.2, prior: standard }"));
    ws.cmd(&["run", "smeme.yaml"]).assert().success();
    let original = std::fs::read(ws.artifacts().join("reports/smeme/report/index.html")).unwrap();
    let out = ws.cmd(&["run", "smeme_snr.yaml"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("also names its pipeline `smeme`"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("reports/smeme@smeme_snr/report/index.html"));
    assert_eq!(std::fs::read(ws.artifacts().join("reports/smeme/report/index.html")).unwrap(), original);
    // The manifest says which spec file, and where it came from.
    let m = ws.latest_manifest("smeme@smeme_snr");
    assert_eq!(m["spec_id"], "smeme_snr.yaml");
    assert_eq!(m["home"], "smeme@smeme_snr");
}

#[test]
fn export_round_trips_tables_and_models_and_latest_links_find_them() {
    let ws = Workspace::new();
    ws.write("p.yaml", &small_smeme());
    ws.cmd(&["run", "p.yaml"]).assert().success();
    let export = |target: &str, file: &str| {
        let out = ws.cmd(&["export", target, "--pipeline", "p.yaml", "-o", file]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::read(ws.path().join(file)).unwrap()
    };
    // The latest links point at the objects the run used.
    let latest = |rel: &str| std::fs::read(ws.artifacts().join("latest/smeme").join(rel)).unwrap();
    assert_eq!(export("samples.samples", "out/s.parquet"), latest("samples/samples.parquet"));
    assert_eq!(export("pretrain.model", "out/model.bin"), latest("pretrain/model.bin"));
    // CSV: a header and one line per sample, values that parse back.
    let csv = String::from_utf8(export("samples", "out/s.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("a,b,c"));
    let rows: Vec<Vec<f32>> = lines.map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    assert_eq!(rows.len(), 300);
    assert!(rows.iter().all(|r| r.len() == 3));
    // safetensors: 8-byte header length, JSON header naming float32 tensors.
    let st = export("pretrain.model", "out/model.safetensors");
    let n = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&st[8..8 + n]).unwrap();
    assert_eq!(header["layers.0.weight"]["dtype"], "F32");
    assert_eq!(header["layers.0.weight"]["shape"], serde_json::json!([256, 67]));
    // A table cannot become safetensors; inspect describes a blob instead of failing.
    let out = ws.cmd(&["export", "samples", "--pipeline", "p.yaml", "-o", "x.safetensors"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    // A model is never written under a name that promises another format.
    let out = ws.cmd(&["export", "pretrain.model", "--pipeline", "p.yaml", "-o", "x.pt"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("export it as .safetensors, .bin") && err.contains("not `.pt`"), "{err}");
    assert!(!ws.path().join("x.pt").exists());
    // An existing file is kept unless --force; a link is never written through.
    let spec_before = std::fs::read(ws.path().join("p.yaml")).unwrap();
    let out = ws.cmd(&["export", "samples", "--pipeline", "p.yaml", "-o", "p.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("p.yaml exists; add --force"));
    assert_eq!(std::fs::read(ws.path().join("p.yaml")).unwrap(), spec_before, "the spec is untouched");
    let link = ws.artifacts().join("latest/smeme/samples/samples.parquet");
    let object = std::fs::read(&link).unwrap();
    let out = ws
        .cmd(&["export", "validity", "--pipeline", "p.yaml", "-o", link.to_str().unwrap(), "--force"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a symbolic link"));
    assert_eq!(std::fs::read(&link).unwrap(), object, "the object behind the link is untouched");
    let out =
        ws.cmd(&["export", "samples", "--pipeline", "p.yaml", "-o", "out/s.parquet", "--force"]).output().unwrap();
    assert!(out.status.success(), "--force replaces: {}", String::from_utf8_lossy(&out.stderr));
    let out = ws.cmd(&["inspect", "pretrain.model", "--pipeline", "p.yaml"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("model weights (score network)"));
    let out = ws.cmd(&["inspect", "samples.nope", "--pipeline", "p.yaml"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("its outputs are: samples, trajectories"));
    let out = ws.cmd(&["inspect", "sample", "--pipeline", "p.yaml"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("did you mean `samples`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn flags_act_where_they_are_offered_and_unknown_stages_get_a_suggestion() {
    let ws = Workspace::new();
    ws.write("p.yaml", &small_smeme());
    // --device picks the training backend: offered on `run` only.
    for cmd in [["check", "p.yaml"], ["dag", "p.yaml"], ["status", "p.yaml"]] {
        let out = ws.cmd(&[cmd[0], cmd[1], "--device", "flex"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd:?}");
    }
    let out = ws.cmd(&["run", "p.yaml", "--only", "sample"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no stage `sample`") && err.contains("did you mean `samples`"), "{err}");
    // --jobs 1 runs (and bounds the threads inside stages).
    let out = ws.cmd(&["run", "p.yaml", "--jobs", "1", "--only", "triangles"]).output().unwrap();
    assert!(out.status.success());
}

/// On a terminal (a pseudo-terminal from util-linux's `script`), every status
/// line ends with its own newline: indicatif's `println` padded lines to the
/// terminal's width instead, and they ran together on one line.
#[test]
fn status_lines_on_a_terminal_end_with_a_newline() {
    let ws = Workspace::new();
    ws.write("p.yaml", &small_smeme());
    let bin = assert_cmd::cargo::cargo_bin("scoreflow");
    let out = std::process::Command::new("script")
        .args(["-qec", &format!("{} run p.yaml", bin.display()), "/dev/null"])
        .current_dir(ws.path())
        .env_remove("SCOREFLOW_ARTIFACTS")
        .output()
        .expect("util-linux's script runs the binary on a pseudo-terminal");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    // What a terminal shows: each line's text after its last carriage return
    // or erase-line sequence (bars redraw in place).
    let shown: Vec<&str> = text
        .split('\n')
        .map(|l| l.split('\r').flat_map(|s| s.split("\u{1b}[2K")).filter(|s| !s.trim().is_empty()).last().unwrap_or(""))
        .collect();
    for stage in ["triangles", "labelled", "pretrain", "samples", "validity", "tuned", "report"] {
        assert!(
            shown.iter().any(|l| l.starts_with(stage) && l.contains(" done ")),
            "no line of its own for `{stage} done`:\n{text}"
        );
    }
    assert!(shown.iter().all(|l| l.matches(" done ").count() <= 1), "lines ran together:\n{text}");
}

/// The README's stage table is `scoreflow stages --markdown`, never a copy
/// edited by hand: a new implementation or a changed default fails here until
/// the README is regenerated.
#[test]
fn the_readme_stage_table_is_generated_from_the_declarations() {
    let readme = std::fs::read_to_string(common::checkout("README.md")).unwrap();
    let begin = "<!-- generated by `scoreflow stages --markdown`; a test keeps it equal -->\n";
    let start = readme.find(begin).expect("the README marks its generated table") + begin.len();
    let end = start + readme[start..].find("<!-- end of generated table -->").unwrap();
    let out = Workspace::new().cmd(&["stages", "--markdown"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        &readme[start..end],
        String::from_utf8_lossy(&out.stdout),
        "regenerate the README's table with `scoreflow stages --markdown`"
    );
    // The plain listing names every implementation with its selector.
    let out = Workspace::new().cmd(&["stages", "sample", "pc"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("sample sampler: pc (implementation version"), "{text}");
    assert!(text.contains("model  model/score_ou"), "{text}");
    let out = Workspace::new().cmd(&["stages", "sampel"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `sample`"));
}

/// `scoreflow runs` lists a pipeline's recorded runs, oldest first, with what
/// each did: computed, reused, failed.
#[test]
fn runs_lists_every_recorded_run_with_what_it_did() {
    let ws = Workspace::new();
    ws.write("p.yaml", &small_smeme());
    ws.cmd(&["run", "p.yaml", "--only", "pretrain"]).assert().success();
    ws.cmd(&["run", "p.yaml", "--only", "pretrain"]).assert().success();
    ws.write("p.yaml", &small_smeme().replace("lr: 0.01", "lr: 1000"));
    ws.cmd(&["run", "p.yaml", "--only", "pretrain"]).assert().code(1);
    let out = ws.cmd(&["runs", "p.yaml", "--json"]).output().unwrap();
    assert!(out.status.success());
    let runs: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(runs.len(), 3, "{runs:?}");
    let fields =
        |r: &serde_json::Value| (r["ran"].clone(), r["fresh"].clone(), r["failed"].clone(), r["result"].clone());
    assert_eq!(fields(&runs[0]), (3.into(), 0.into(), 0.into(), "ok".into()));
    assert_eq!(fields(&runs[1]), (0.into(), 3.into(), 0.into(), "ok".into()));
    assert_eq!(fields(&runs[2]), (0.into(), 2.into(), 1.into(), "failed".into()));
    let text = String::from_utf8_lossy(&ws.cmd(&["runs", "p.yaml"]).output().unwrap().stdout).to_string();
    assert_eq!(text.lines().count(), 2 + 3, "{text}");
}

/// Every pipeline the repository ships passes `scoreflow check` (params,
/// inputs, the stage graph), so none of them fails on a typo after hours.
#[test]
fn every_shipped_pipeline_checks() {
    let mut specs: Vec<_> = std::fs::read_dir(common::checkout("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    specs.sort();
    assert!(specs.len() >= 10, "{specs:?}");
    let ws = Workspace::new();
    for spec in specs {
        let out = ws.cmd(&["check", spec.to_str().unwrap()]).output().unwrap();
        assert!(out.status.success(), "{}: {}", spec.display(), String::from_utf8_lossy(&out.stderr));
    }
}

/// `--only` takes a comma list and leaves the file where it is; a run that
/// computes nothing still prints each validate stage's headline metrics,
/// from the cache.
#[test]
fn only_takes_a_list_and_a_no_op_run_prints_the_headline_metrics() {
    let ws = Workspace::new();
    ws.write("m.yaml", &common::small_moons());
    let out = ws.cmd(&["run", "--only", "moons,target", "m.yaml", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut ran: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "finished")
        .map(|e| e["stage"].as_str().unwrap().to_string())
        .collect();
    ran.sort();
    assert_eq!(ran, ["moons", "target"]);
    assert!(
        ws.cmd(&["run", "--only", "metrics", "--only", "target_floor", "m.yaml"]).output().unwrap().status.success()
    );
    let out = ws.cmd(&["run", "m.yaml"]).output().unwrap();
    assert!(out.status.success());
    let out = ws.cmd(&["run", "m.yaml"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0 ran"), "{text}");
    assert!(text.contains("[metrics]") && text.contains("samples vs target") && text.contains("mmd"), "{text}");
    // The report page of the no-op run still says why each stage ran, and when.
    let page = std::fs::read_to_string(ws.artifacts().join("reports/two_moons/report/index.html")).unwrap();
    assert!(
        page.contains("ran in run ") && page.contains("because new stage") && page.contains("last checked"),
        "{page}"
    );
}
