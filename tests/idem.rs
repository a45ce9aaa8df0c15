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
