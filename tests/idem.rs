//! iDEM (seed 001) stages on GMM-40: exact reference sets, the mc_score
//! sampler and the Boltzmann checks, end to end through the binary.

mod common;

use common::Workspace;

fn tiny(samples: usize) -> String {
    format!(
        "name: idem\nseed: 3\nstages:\n  target:\n    kind: generate\n    params: {{ dataset: boltzmann, n_samples: {samples}, draw: 1 }}\n  floor:\n    kind: generate\n    params: {{ dataset: boltzmann, n_samples: {samples}, draw: 2 }}\n  mc:\n    kind: sample\n    params: {{ sampler: mc_score, n_samples: {samples}, steps: 100, k: 16 }}\n  metrics:\n    kind: validate\n    inputs: {{ samples: mc, target: target.samples, floor: floor.samples }}\n    params: {{ checks: boltzmann }}\n"
    )
}

/// Same spec and seed, one thread or two: the same bytes.
#[test]
fn mc_score_samples_do_not_depend_on_the_thread_count() {
    let hashes: Vec<serde_json::Value> = ["1", "2"]
        .iter()
        .map(|jobs| {
            let ws = Workspace::new();
            ws.write("p.yaml", &tiny(60));
            let (out, _) = ws.run_json("p.yaml", &["--jobs", jobs]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let m = ws.latest_manifest("idem");
            m["stages"].as_array().unwrap().iter().map(|s| s["outputs"].clone()).collect()
        })
        .collect();
    assert_eq!(hashes[0], hashes[1]);
}

/// The metrics table: every metric beside its floor, modes counted on GMM-40's 40.
#[test]
fn the_boltzmann_checks_report_each_metric_beside_its_floor() {
    let ws = Workspace::new();
    ws.write("p.yaml", &tiny(200));
    let (out, _) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = ws.cmd(&["compare", "p.yaml", "--json"]).output().unwrap();
    let row: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for m in ["x_w2", "energy_w2", "tv", "modes_1", "modes_5", "on_mode"] {
        let v = row[format!("metrics.{m}")].as_f64().unwrap_or_else(|| panic!("{m}: {row}"));
        assert!(v.is_finite() && v >= 0.0, "{m} = {v}");
    }
    assert!(row["metrics.modes_1"].as_f64().unwrap() <= 40.0);
    let out = ws
        .cmd(&[
            "inspect",
            "metrics",
            "--pipeline",
            "p.yaml",
            "--sql",
            "SELECT floor FROM t WHERE metric = 'x_w2'",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("floor"), "{text}");
}

/// A tiny iDEM pipeline: train (initial buffer by mc_score, two outer steps),
/// the network's reverse SDE, the checks and the report.
fn tiny_idem(extra: &str) -> String {
    format!(
        "name: idem_train\nseed: 5\nstages:\n  target:\n    kind: generate\n    params: {{ dataset: boltzmann, n_samples: 80, draw: 1 }}\n  train:\n    kind: train\n    inputs: {{ target: target.samples }}\n    params: {{ objective: idem, outer: 2, inner: 3, batch: 40, k: 8, n_init: 48, samples_per_outer: 30, steps: 20, snapshot_every: 1, select: last{extra} }}\n  samples:\n    kind: sample\n    inputs: {{ model: train.model }}\n    params: {{ sampler: ve_sde, n_samples: 80, steps: 20 }}\n  metrics:\n    kind: validate\n    inputs: {{ samples: samples, target: target.samples }}\n    params: {{ checks: boltzmann }}\n  report:\n    kind: report\n    inputs: {{ target: target.samples, samples: samples, metrics: metrics.metrics, loss: train.loss, tracker: train.tracker, buffer: train.buffer }}\n    params: {{ layout: idem }}\n"
    )
}

/// Training, sampling and reporting run end to end; the loss table has a row
/// per step, the tracker one per outer step, the buffer the initial particles
/// and each outer step's; the same bytes on one thread or two.
#[test]
fn idem_training_runs_end_to_end_and_does_not_depend_on_the_thread_count() {
    let mut outputs = Vec::new();
    for threads in ["1", "2"] {
        let ws = Workspace::new();
        ws.write("p.yaml", &tiny_idem(""));
        let out = ws.cmd(&["run", "p.yaml", "--json"]).env("RAYON_NUM_THREADS", threads).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let m = ws.latest_manifest("idem_train");
        outputs.push(m["stages"].as_array().unwrap().iter().map(|s| s["outputs"].clone()).collect::<Vec<_>>());
        let count = |output: &str, sql: &str| -> String {
            let out = ws.cmd(&["inspect", output, "--pipeline", "p.yaml", "--sql", sql, "--json"]).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        assert!(count("train.loss", "SELECT COUNT(*) AS n FROM t").contains("6"), "2 × 3 steps");
        let tracker = count("train.tracker", "SELECT outer FROM t");
        assert!(tracker.contains('1') && tracker.contains('2'), "{tracker}");
        let buffer = count("train.buffer", "SELECT outer, COUNT(*) AS n FROM t GROUP BY outer ORDER BY outer");
        for n in ["48", "30"] {
            assert!(buffer.contains(n), "{buffer}");
        }
        assert!(ws.path().join("artifacts/reports/idem_train/report/training.png").exists());
        let names = ws.export_model("train.model", "p.yaml", "iDEM MLP");
        assert!(names.contains(&"layers.0.weight".to_string()) && names.len().is_multiple_of(2), "{names:?}");
    }
    assert_eq!(outputs[0], outputs[1]);
}
