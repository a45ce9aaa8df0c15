//! Sweeps: a spec's `matrix:` runs one pipeline instance per combination of
//! values, and a stage that does not depend on a swept value runs once.

mod common;

use common::{Workspace, small_smeme};

/// small_smeme with a matrix over the tuning's exploration weight.
fn swept(values: &str) -> String {
    small_smeme().replacen("stages:", &format!("matrix:\n  stages.tuned.params.beta: {values}\nstages:"), 1)
}

#[test]
fn shared_stages_run_once_and_keys_do_not_depend_on_the_matrix() {
    let ws = Workspace::new();
    ws.write("sweep.yaml", &swept("[0.5, 0.9]"));
    let out = ws.cmd(&["run", "sweep.yaml"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("matrix: 2 instances, 18 stages in all, 13 distinct, 5 shared by several instances"),
        "{text}"
    );
    let (_, ev) = ws.run_json("sweep.yaml", &["--force", "tuned[beta=0.5]"]);
    assert_eq!(Workspace::ran(&ev), ["tuned[beta=0.5]"], "the rest is fresh; early cutoff keeps its dependents fresh");
    // The instances' stages have the keys a plain spec with the same values has:
    // each plain run finds everything cached.
    for beta in ["0.5", "0.9"] {
        ws.write("plain.yaml", &small_smeme().replace("beta: 0.9", &format!("beta: {beta}")));
        let (out, ev) = ws.run_json("plain.yaml", &[]);
        assert!(out.status.success());
        assert!(Workspace::ran(&ev).is_empty(), "beta {beta}: {:?}", Workspace::ran(&ev));
    }
    // Listing the values in another order changes nothing.
    ws.write("sweep.yaml", &swept("[0.9, 0.5]"));
    let (_, ev) = ws.run_json("sweep.yaml", &[]);
    assert!(Workspace::ran(&ev).is_empty());
    // Each instance's report page lists that instance's stages, not the grid's.
    let page = std::fs::read_to_string(ws.artifacts().join("reports/smeme/report[beta=0.5]/index.html")).unwrap();
    assert!(page.contains("This page depends on") && page.contains("tuned[beta=0.5]"));
    assert!(!page.contains("tuned[beta=0.9]"), "the other instance's stage is not on this page");
    // The sweep's own page: the experiment table, a figure, the instance pages.
    let sweep = std::fs::read_to_string(ws.artifacts().join("reports/smeme/index.html")).unwrap();
    for part in
        ["a sweep of 2 instances", "Experiment table", "<img src=\"sweep.png\"", "report%5Bbeta=0.5%5D/index.html"]
    {
        assert!(sweep.contains(part), "{part} missing from the sweep page");
    }
    let png = std::fs::read(ws.artifacts().join("reports/smeme/sweep.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    assert!(text.contains("reports/smeme/index.html"), "run names the sweep page: {text}");
    // A swept stage's outputs are found by its name.
    let out = ws.cmd(&["inspect", "tuned[beta=0.5].tracker", "--pipeline", "sweep.yaml", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_seed_matrix_gives_every_stage_its_own_instance() {
    let ws = Workspace::new();
    ws.write("seeds.yaml", &small_smeme().replacen("stages:", "matrix:\n  seed: [1, 2]\nstages:", 1));
    let out = ws.cmd(&["check", "seeds.yaml"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ok, 18 stages (matrix: 2 instances, 18 stages in all, 18 distinct, 0 shared"), "{text}");
    let dag = String::from_utf8_lossy(&ws.cmd(&["dag", "seeds.yaml"]).output().unwrap().stdout).to_string();
    assert!(dag.contains("pretrain[seed=1]") && dag.contains("report[seed=2]"), "{dag}");
}

/// `compare` tables a sweep: one row per instance with its swept values and
/// every metric, then median/min/max over seeds; the same table is written as
/// Parquet under artifacts/compare/.
#[test]
fn compare_tables_a_sweep_with_its_aggregate_over_seeds() {
    let ws = Workspace::new();
    ws.write("seeds.yaml", &small_smeme().replacen("stages:", "matrix:\n  seed: [1, 2, 3]\nstages:", 1));
    ws.cmd(&["run", "seeds.yaml"]).assert().success();
    let out = ws.cmd(&["compare", "seeds.yaml", "--json", "--metrics", "valid_fraction"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let seeds: Vec<&str> = rows.iter().map(|r| r["seed"].as_str().unwrap()).collect();
    assert_eq!(seeds, ["1", "2", "3", "median of 3", "min of 3", "max of 3"]);
    let v = |i: usize, m: &str| rows[i][m].as_f64().unwrap();
    for m in ["validity.valid_fraction", "validity_tuned.valid_fraction"] {
        let mut per_seed = [v(0, m), v(1, m), v(2, m)];
        per_seed.sort_by(f64::total_cmp);
        assert_eq!([v(3, m), v(4, m), v(5, m)], [per_seed[1], per_seed[0], per_seed[2]], "{m}");
        // Each row's value is the stage's own: the seed's validity summary.
        let own = ws
            .cmd(&["inspect", &format!("{}[seed=1].summary", m.split('.').next().unwrap()), "--pipeline", "seeds.yaml"])
            .arg("--sql")
            .arg("SELECT value FROM t WHERE metric = 'valid_fraction'")
            .arg("--json")
            .output()
            .unwrap();
        assert!(own.status.success(), "{}", String::from_utf8_lossy(&own.stderr));
        let own: serde_json::Value = serde_json::from_slice(&own.stdout).unwrap();
        assert_eq!(own["head"][0]["value"].as_f64().unwrap(), v(0, m));
    }
    let parquet = ws.artifacts().join("compare/smeme.parquet"); // named after the pipeline
    let out = ws.cmd(&["inspect", parquet.to_str().unwrap(), "--json"]).output().unwrap();
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(t["rows"], 6);
}

/// `--set` and `--matrix` change the spec for one command exactly as editing
/// the file would: the same keys, the same stage names, every error checked
/// (and named by its option), and the run's manifest records them.
#[test]
fn command_line_overrides_act_as_the_edited_file() {
    let ws = Workspace::new();
    ws.write("p.yaml", &small_smeme());
    assert!(ws.cmd(&["run", "p.yaml"]).output().unwrap().status.success());
    let out = ws.cmd(&["status", "p.yaml", "--set", "stages.tuned.params.beta=2.0"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("tuned") && l.contains("dirty") && l.contains("beta")), "{text}");
    let (out, ev) = ws.run_json("p.yaml", &["--set", "stages.tuned.params.beta=2.0"]);
    assert!(out.status.success());
    assert!(Workspace::ran(&ev).contains(&"tuned".to_string()));
    assert_eq!(ws.latest_manifest("smeme")["overrides"][0], "--set stages.tuned.params.beta=2.0");
    // The two runs side by side: what changed, and every metric of both.
    let out = ws.cmd(&["compare", "p.yaml", "--runs", "previous", "latest", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let changed: Vec<&str> = lines.iter().filter_map(|l| l["stage"].as_str()).collect();
    assert!(changed.contains(&"tuned") && !changed.contains(&"pretrain"), "{changed:?}");
    let metric = |name: &str| lines.iter().find(|l| l["metric"] == name).unwrap_or_else(|| panic!("{name}: {lines:?}"));
    let pre = metric("validity.valid_fraction");
    assert_eq!(pre["a"], pre["b"], "the pre-trained model's samples did not change");
    assert_eq!(pre["delta"], 0.0);
    let tuned = metric("validity_tuned.valid_fraction");
    let d = tuned["b"].as_f64().unwrap() - tuned["a"].as_f64().unwrap();
    assert!((tuned["delta"].as_f64().unwrap() - d).abs() < 1e-12);
    let text = ws.cmd(&["compare", "p.yaml", "--runs", "previous", "latest"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("(--set stages.tuned.params.beta=2.0)") && text.contains("B − A"), "{text}");
    let out = ws.cmd(&["compare", "p.yaml", "--runs", "latest", "nosuchrun"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    // The edited file finds that run's results.
    ws.write("edited.yaml", &small_smeme().replace("beta: 0.9", "beta: 2.0"));
    let (_, ev) = ws.run_json("edited.yaml", &[]);
    assert!(Workspace::ran(&ev).is_empty(), "{:?}", Workspace::ran(&ev));

    // --matrix is the spec's matrix: the same stages, all cached by the sweep file.
    ws.write("sweep.yaml", &swept("[0.5, 2.0]"));
    let (out, ev) = ws.run_json("sweep.yaml", &[]);
    assert!(out.status.success());
    assert!(Workspace::ran(&ev).contains(&"tuned[beta=0.5]".to_string()));
    let (out, ev) = ws.run_json("p.yaml", &["--matrix", "stages.tuned.params.beta=0.5,2.0"]);
    assert!(out.status.success());
    assert!(Workspace::ran(&ev).is_empty(), "{:?}", Workspace::ran(&ev));
    assert!(ev.iter().any(|e| e["stage"] == "tuned[beta=2.0]"), "named as in the file's sweep");

    let out = ws
        .cmd(&[
            "check",
            "p.yaml",
            "--set",
            "stages.tuned.params.beta=high",
            "--matrix",
            "stages.tuned.params.betta=1,2",
            "--set",
            "seed",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!("override_option_error", String::from_utf8_lossy(&out.stderr));
    let out = ws.cmd(&["check", "p.yaml", "--set", "stages.tuned.params.beta=high"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!("override_value_error", String::from_utf8_lossy(&out.stderr));
    // A matrix axis is checked against a valid spec.
    let out = ws.cmd(&["check", "p.yaml", "--matrix", "stages.tuned.params.betta=1,2"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!("override_matrix_error", String::from_utf8_lossy(&out.stderr));
    // Two lists are one too many: an error, not the first list alone.
    let out = ws.cmd(&["check", "p.yaml", "--matrix", "seed=[1,2],[3]"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--matrix seed=[1,2],[3]: the values must be one list"), "{err}");
}

/// A metrics table that is corrupt in the cache is reported by `compare`
/// (exit 1, naming it), never silently left out of the table.
#[test]
fn compare_reports_a_corrupt_metrics_table() {
    let ws = Workspace::new();
    ws.write("p.yaml", &common::small_moons());
    let out = ws.cmd(&["run", "p.yaml"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let object = std::fs::canonicalize(ws.artifacts().join("latest/two_moons/metrics/metrics.parquet")).unwrap();
    // Same size, other bytes: the record still looks complete by size.
    let size = std::fs::metadata(&object).unwrap().len() as usize;
    std::fs::write(&object, vec![b'x'; size]).unwrap();
    let out = ws.cmd(&["compare", "p.yaml"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the metrics of metrics.metrics") && err.contains("could not be read"), "{err}");
}

/// Two generate stages; `--matrix` sweeps the first one's noise, the second
/// is shared by every instance.
const MOONS: &str = "name: moons\nstages:\n  moons:\n    kind: generate\n    params: { dataset: two_moons, n_samples: 200 }\n  target:\n    kind: generate\n    params: { dataset: two_moons, n_samples: 100, draw: 2 }\n";

/// gc keeps a sweep after a different run (it is young), drops it with
/// `--older-than 0s`, and keeps a tagged run through any gc; `latest/` has
/// the unswept stage under the pipeline and each instance under its values,
/// with extensions from the media.
#[test]
fn a_sweep_survives_gc_unless_old_and_untagged_and_latest_links_every_instance() {
    let ws = Workspace::new();
    ws.write("p.yaml", MOONS);
    let sweep = ["--matrix", "stages.moons.params.noise=0.05,0.1"];
    assert!(ws.run_json("p.yaml", &sweep).0.status.success());
    let latest = ws.artifacts().join("latest");
    for rel in [
        "moons/target/samples.parquet",
        "moons[noise=0.05]/moons/samples.parquet",
        "moons[noise=0.1]/target/stats.parquet",
    ] {
        assert!(latest.join(rel).exists(), "latest/{rel}");
    }
    let swept_records = ws.files_under("artifacts/records").len();
    assert_eq!(swept_records, 3, "two instances of moons, one shared target");

    // A different run: the sweep is no longer the latest, but young.
    assert!(ws.run_json("p.yaml", &["--set", "stages.moons.params.n_samples=300"]).0.status.success());
    let out = ws.cmd(&["gc"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("removed 0 records"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(ws.files_under("artifacts/records").len(), 4);
    let out = ws.cmd(&["gc", "--dry-run", "--older-than", "0s"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("would remove 2 records") && text.contains("stage `moons[noise=0.1]` of moons, last in run "),
        "{text}"
    );
    ws.cmd(&["gc", "--older-than", "0s"]).assert().success();
    assert_eq!(ws.files_under("artifacts/records").len(), 2, "the latest run's two results");

    // The sweep again, tagged: it survives gc --older-than 0s after another run.
    let (out, _) = ws.run_json("p.yaml", &sweep);
    assert!(out.status.success());
    let run_id = ws.latest_manifest("moons")["run_id"].as_str().unwrap().to_string();
    let out = ws.cmd(&["tag", &run_id[..12], "noise-sweep"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(ws.run_json("p.yaml", &["--set", "stages.moons.params.n_samples=300"]).0.status.success());
    ws.cmd(&["gc", "--older-than", "0s"]).assert().success();
    assert_eq!(ws.files_under("artifacts/records").len(), 4, "the tagged sweep's three and the latest's own");
    let tags = String::from_utf8_lossy(&ws.cmd(&["tags"]).output().unwrap().stdout).to_string();
    assert!(tags.contains("noise-sweep") && tags.contains(&run_id), "{tags}");
    // Unknown runs and bad names are errors; an untagged sweep goes.
    assert_eq!(ws.cmd(&["tag", "nope", "x"]).output().unwrap().status.code(), Some(2));
    assert_eq!(ws.cmd(&["tag", &run_id, "a/b"]).output().unwrap().status.code(), Some(2));
    ws.cmd(&["tag", "--delete", "noise-sweep"]).assert().success();
    ws.cmd(&["gc", "--older-than", "0s"]).assert().success();
    assert_eq!(ws.files_under("artifacts/records").len(), 2);
}

/// `compare` without options tables what the latest run ran (its --matrix
/// read back from its manifest); with nothing to table it exits 1 naming the
/// runs there are; `compare --runs` lists the settings that changed.
#[test]
fn compare_finds_the_latest_runs_options_and_says_when_nothing_matches() {
    let ws = Workspace::new();
    ws.write("m.yaml", &common::small_moons());
    let out = ws.cmd(&["compare", "m.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("it has no recorded run"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ws.run_json("m.yaml", &["--matrix", "seed=1,2"]).0.status.success());
    let out = ws.cmd(&["compare", "m.yaml", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows[0]["seed"], "1", "the latest run's matrix: {rows:?}");
    // Options that match no result: exit 1, the runs named.
    let out = ws.cmd(&["compare", "m.yaml", "--set", "seed=7"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("with --set seed=7") && err.contains("(--matrix seed=1,2)"), "{err}");

    // A YAML edit, then the two runs side by side: the setting first.
    ws.write("m.yaml", &common::small_moons().replace("lr: 0.001", "lr: 0.002"));
    assert!(ws.run_json("m.yaml", &["--matrix", "seed=1,2"]).0.status.success());
    let out = ws.cmd(&["compare", "m.yaml", "--runs", "previous", "latest"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("stages.ddpm[seed=1].params.lr 0.001 → 0.002"), "{text}");
    assert!(text.find("setting").unwrap() < text.find("metric").unwrap(), "{text}");
}

/// After a YAML edit of the tuning's β, `compare --runs` names the setting
/// before the stages and metrics.
#[test]
fn compare_runs_names_the_edited_parameter() {
    let ws = Workspace::new();
    ws.write("smeme.yaml", &small_smeme());
    assert!(ws.run_json("smeme.yaml", &[]).0.status.success());
    ws.write("smeme.yaml", &small_smeme().replace("beta: 0.9", "beta: 2.0"));
    assert!(ws.run_json("smeme.yaml", &[]).0.status.success());
    let out = ws.cmd(&["compare", "smeme.yaml", "--runs", "previous", "latest"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("1 setting differs\n  stages.tuned.params.beta 0.9 → 2.0\n"), "{text}");
}

/// A swept value is text in a stage's name, and the name is a folder's
/// (`latest/<pipeline>/<stage>/`): `/` and control characters are
/// percent-encoded, so a value like `../../esc` stays one folder name
/// inside `latest/`.
#[test]
fn a_swept_value_never_makes_a_path_of_its_own() {
    let ws = Workspace::new();
    ws.write(
        "m.yaml",
        "name: m\nstages:\n  c:\n    kind: generate\n    run: [sh, -c, \"printf 'v\\\\n1\\\\n' > $SCOREFLOW_OUTPUT_DIR/t.csv\"]\n    outputs: { t: table }\n    params: { p: a }\n",
    );
    let (out, events) = ws.run_json("m.yaml", &["--matrix", "stages.c.params.p=[a, \"../../../../esc\", \"\\e[31m\"]"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut ran = Workspace::ran(&events);
    ran.sort();
    assert_eq!(ran, ["c[p=%1B[31m]", "c[p=..%2F..%2F..%2F..%2Fesc]", "c[p=a]"]);
    let latest = ws.artifacts().join("latest");
    assert!(latest.join("m/c[p=..%2F..%2F..%2F..%2Fesc]/t.parquet").symlink_metadata().is_ok());
    assert!(latest.join("m[p=..%2F..%2F..%2F..%2Fesc]/c/t.parquet").symlink_metadata().is_ok());
    assert!(!ws.path().join("esc]").exists() && !ws.artifacts().join("esc]").exists());
    let outside: Vec<_> = std::fs::read_dir(ws.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(outside.iter().all(|n| n != "esc]"), "{outside:?}");
}
