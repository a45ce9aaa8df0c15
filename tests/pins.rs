//! Pinned outputs: every built-in stage implementation runs on a tiny input
//! and its outputs are compared with `tests/pins/outputs.json`, so a change
//! of what a stage computes cannot land without a bump of the stage's
//! implementation version (which is in every stage key: without the bump, a
//! cache would go on serving results the code no longer produces).
//!
//! Floating-point results may differ in their last bits between CPU models
//! (the `gemm` kernels and the fused SIMD paths are chosen at run time), so
//! the comparison has two levels:
//!
//! * on the CPU the pins were recorded on (model name and SIMD level), every
//!   output's content hash must be the pinned one, bit for bit;
//! * elsewhere, every table must have the pinned rows and columns, its text
//!   columns the pinned values, each float column's mean, standard deviation,
//!   minimum and maximum within 1 % of the pinned ones (relative to the
//!   column's scale), and each integer or boolean column's mean and standard
//!   deviation likewise (a flag at a threshold may flip with the last bit of
//!   a float); other outputs (model blobs, figures, pages) are checked
//!   through the tables computed from them. A change of what a stage
//!   computes smaller than that is caught on the pinning CPU only.
//!
//! After a deliberate change: bump the stage's version in its `describe!`,
//! then re-pin with `SCOREFLOW_PIN=update cargo test --release --all-features
//! --test pins` and commit the file with the change.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::Workspace;
use scoreflow::engine::frame::{ColumnData, Table};
use serde::{Deserialize, Serialize};

/// What is pinned of one output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OutputPin {
    hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    table: Option<TablePin>,
}

/// A table's shape and a summary of every column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TablePin {
    rows: usize,
    /// Float columns: `[mean, sd, min, max]` (a statistic that is not finite
    /// is written as null and compared as such).
    floats: BTreeMap<String, [Option<f64>; 4]>,
    /// Integer and boolean columns: the same statistics.
    counts: BTreeMap<String, [Option<f64>; 4]>,
    /// Text columns: their values' hash.
    text: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StagePin {
    implementation: String,
    version: u32,
    outputs: BTreeMap<String, OutputPin>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pins {
    /// The CPU the hashes were recorded on: where they must match exactly.
    cpu: String,
    stages: BTreeMap<String, StagePin>,
}

/// This machine's CPU, as far as it decides floating-point bits: the model
/// and the SIMD level the kernels dispatch on.
fn cpu() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    #[cfg(target_arch = "x86_64")]
    let level = if is_x86_feature_detected!("avx512f") {
        "avx512f"
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        "avx2+fma"
    } else {
        "sse2"
    };
    #[cfg(not(target_arch = "x86_64"))]
    let level = std::env::consts::ARCH;
    format!("{model} | {level}")
}

/// The tiny pipelines: together they run every built-in implementation.
fn cases() -> Vec<(&'static str, String)> {
    let moons = common::small_moons()
        + "  ancestral:\n    kind: sample\n    inputs: { model: ddpm.model }\n    params: { sampler: ddpm, n_samples: 200, steps: 20 }\n";
    let gmm = "name: gmm\nseed: 5\nstages:
  target:
    kind: generate
    params: { dataset: boltzmann, n_samples: 80, draw: 1 }
  train:
    kind: train
    inputs: { target: target.samples, val: target.samples }
    params: { objective: idem, outer: 2, inner: 3, batch: 40, k: 8, n_init: 48, samples_per_outer: 30, steps: 20, snapshot_every: 1, val_every: 1, val_batch: 30 }
  samples:
    kind: sample
    inputs: { model: train.model }
    params: { sampler: ve_sde, n_samples: 80, steps: 20 }
  mc:
    kind: sample
    params: { sampler: mc_score, n_samples: 40, steps: 50, k: 16 }
  metrics:
    kind: validate
    inputs: { samples: samples, target: target.samples }
    params: { checks: boltzmann }
  study:
    kind: validate
    params: { checks: score_estimator, energy: gmm40, points: 8, repeats: 2 }
  report:
    kind: report
    inputs: { target: target.samples, samples: samples, mc_samples: mc, metrics: metrics.metrics, loss: train.loss, tracker: train.tracker, buffer: train.buffer }
    params: { layout: idem }
"
    .to_string();
    let dw4 = "name: dw4\nseed: 4\nstages:
  reference:
    kind: generate
    params: { dataset: boltzmann, energy: dw4, method: mcmc, n_samples: 20, chains: 4, burn_in: 1000, thin: 100, step: 0.001, init_scale: 2.0, max_rhat: 0.0, draw: 1 }
  train:
    kind: train
    inputs: { target: reference.samples, val: reference.samples }
    params: { objective: idem, energy: dw4, outer: 2, inner: 3, batch: 8, k: 8, hidden: 8, steps: 10, samples_per_outer: 8, n_init: 8, init_from_prior: true, lambda: none, max_norm: 20.0, sigma_max: 3.0, normalization: 1.0, plateau_every: 2, val_batch: 4 }
  samples:
    kind: sample
    inputs: { model: train.model }
    params: { sampler: ve_sde, n_samples: 12, steps: 10 }
  score_fit:
    kind: validate
    inputs: { model: train.model, target: reference.samples }
    params: { checks: network_score, points: 8, repeats: 2, k: 16 }
"
    .to_string();
    let smeme = common::small_smeme()
        + "  tuned_am:\n    kind: tune\n    inputs: { model: pretrain.model }\n    params: { method: smeme_am, iterations: 2, gamma: 0.3, steps_per_iteration: 4, traj_per_batch: 16, am_steps: 20, eval_samples: 200, eval_steps: 20 }\n"
        + "  report_am:\n    kind: report\n    inputs: { iterations: tuned_am.iterations, samples: tuned_am.samples, tracker: tuned_am.tracker }\n    params: { layout: smeme_am }\n";
    vec![("smeme", smeme), ("two_moons", moons), ("gmm", gmm), ("dw4", dw4)]
}

/// `[mean, sd, min, max]` of a column's values.
fn stats(v: &[f64]) -> [Option<f64>; 4] {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(*x), b.max(*x)));
    let finite = |x: f64| x.is_finite().then_some(x);
    [finite(mean), finite(sd), finite(lo), finite(hi)]
}

fn summarise(t: &Table) -> TablePin {
    let mut pin =
        TablePin { rows: t.num_rows(), floats: BTreeMap::new(), counts: BTreeMap::new(), text: BTreeMap::new() };
    for c in &t.columns {
        let name = c.name.clone();
        match &c.data {
            ColumnData::F64(v) => {
                pin.floats.insert(name, stats(v));
            }
            ColumnData::F32(v) => {
                pin.floats.insert(name, stats(&v.iter().map(|x| *x as f64).collect::<Vec<_>>()));
            }
            ColumnData::I64(v) => {
                pin.counts.insert(name, stats(&v.iter().map(|x| *x as f64).collect::<Vec<_>>()));
            }
            ColumnData::Bool(v) => {
                pin.counts.insert(name, stats(&v.iter().map(|x| *x as u8 as f64).collect::<Vec<_>>()));
            }
            ColumnData::Str(v) => {
                let mut h = blake3::Hasher::new();
                for s in v {
                    h.update(&(s.len() as u64).to_le_bytes());
                    h.update(s.as_bytes());
                }
                pin.text.insert(name, h.finalize().to_hex()[..16].to_string());
            }
        }
    }
    pin
}

/// Run every case and collect what each stage produced.
fn observe() -> BTreeMap<String, StagePin> {
    let mut stages = BTreeMap::new();
    let mut run = |case: &str, ws: &Workspace, spec: &str| {
        let out = ws.cmd(&["run", spec, "--json"]).env("RAYON_NUM_THREADS", "2").output().unwrap();
        assert!(out.status.success(), "{case}: {}", String::from_utf8_lossy(&out.stderr));
        let pipeline = std::path::Path::new(spec).file_stem().unwrap().to_string_lossy().into_owned();
        let m = ws.latest_manifest(&pipeline);
        for st in m["stages"].as_array().unwrap() {
            let (kind, method) = (st["kind"].as_str().unwrap(), st["method"].as_str().unwrap());
            let imp = scoreflow::registry()
                .find(scoreflow::engine::stage::Kind::parse(kind).unwrap(), method)
                .unwrap_or_else(|| panic!("{kind} {method} is registered"));
            let mut outputs = BTreeMap::new();
            for (name, hash) in st["outputs"].as_object().unwrap() {
                let hash = hash.as_str().unwrap().to_string();
                let dir = ws.artifacts().join("objects").join(&hash[..2]);
                let file = std::fs::read_dir(&dir)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .find(|p| p.file_stem().is_some_and(|s| s.to_string_lossy() == hash))
                    .unwrap_or_else(|| panic!("{case}: object {hash}"));
                let table = (file.extension().is_some_and(|e| e == "parquet")).then(|| {
                    let (t, _) = Table::from_parquet(std::fs::read(&file).unwrap()).unwrap();
                    summarise(&t)
                });
                outputs.insert(name.clone(), OutputPin { hash, table });
            }
            let pin = StagePin { implementation: format!("{kind} {method}"), version: imp.version(), outputs };
            stages.insert(format!("{case}/{}", st["name"].as_str().unwrap()), pin);
        }
    };
    for (case, spec) in cases() {
        let ws = Workspace::new();
        let file = format!("{case}.yaml");
        ws.write(&file, &spec);
        run(case, &ws, &file);
    }
    // The colour pipeline as shipped, with its dopesheet beside it.
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.path().join("pipelines")).unwrap();
    std::fs::create_dir_all(ws.path().join("data")).unwrap();
    std::fs::copy(common::checkout("pipelines/color.yaml"), ws.path().join("pipelines/color.yaml")).unwrap();
    std::fs::copy(common::checkout("data/ex-1.7-dopesheet.csv"), ws.path().join("data/ex-1.7-dopesheet.csv")).unwrap();
    run("color", &ws, "pipelines/color.yaml");
    // The curricula comparison as shipped, at one seed (its matrix removed).
    for sheet in ["ex-1.5-dopesheet.csv", "ex-1.6-smooth-dopesheet.csv", "ex-1.6-stepped-dopesheet.csv"] {
        std::fs::copy(common::checkout(&format!("data/{sheet}")), ws.path().join("data").join(sheet)).unwrap();
    }
    let spec = std::fs::read_to_string(common::checkout("pipelines/color_curricula.yaml")).unwrap();
    let spec = spec.replace("matrix:\n  seed: [1, 2, 3]\n", "");
    assert!(!spec.contains("matrix:"), "the curricula spec's matrix moved; update this test");
    ws.write("pipelines/color_curricula.yaml", &spec);
    run("color_curricula", &ws, "pipelines/color_curricula.yaml");
    stages
}

/// `a` within 1 % of `b`, relative to `scale`.
fn close(a: Option<f64>, b: Option<f64>, scale: f64) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-2 * scale.max(a.abs()).max(b.abs()).max(1e-12),
        (a, b) => a == b,
    }
}

/// Summaries `got` against `pin` (the first `k` statistics of each).
fn columns_close(
    what: &str,
    got: &BTreeMap<String, [Option<f64>; 4]>,
    pin: &BTreeMap<String, [Option<f64>; 4]>,
    k: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    for (col, pv) in pin {
        let gv = &got[col];
        let scale = pv[1].unwrap_or(0.0).max(pv[0].unwrap_or(0.0).abs());
        if !(0..k).all(|i| close(gv[i], pv[i], scale)) {
            out.push(format!("{what}.{col}`: [mean, sd, min, max] {gv:?}, pinned {pv:?}"));
        }
    }
    out
}

/// How `got` differs from `pin` beyond a CPU's rounding (empty: it does not).
fn differences(what: &str, got: &StagePin, pin: &StagePin, exact: bool) -> Vec<String> {
    let mut out = Vec::new();
    for (name, p) in &pin.outputs {
        let Some(g) = got.outputs.get(name) else {
            out.push(format!("{what}: output `{name}` is gone"));
            continue;
        };
        if g.hash == p.hash {
            continue;
        }
        if exact {
            out.push(format!("{what}: output `{name}` has content {} (pinned {})", &g.hash[..12], &p.hash[..12]));
            continue;
        }
        let (Some(gt), Some(pt)) = (&g.table, &p.table) else {
            continue; // a blob: checked through the tables computed from it
        };
        if gt.rows != pt.rows
            || gt.text != pt.text
            || gt.floats.keys().ne(pt.floats.keys())
            || gt.counts.keys().ne(pt.counts.keys())
        {
            out.push(format!("{what}: table `{name}` has other rows, columns or text than pinned"));
            continue;
        }
        let at = format!("{what}: `{name}");
        out.extend(columns_close(&at, &gt.floats, &pt.floats, 4));
        out.extend(columns_close(&at, &gt.counts, &pt.counts, 2));
    }
    for name in got.outputs.keys().filter(|n| !pin.outputs.contains_key(*n)) {
        out.push(format!("{what}: output `{name}` is new"));
    }
    out
}

#[test]
fn every_stage_output_is_pinned() {
    let path = common::checkout("tests/pins/outputs.json");
    let got = observe();
    let here = cpu();
    if std::env::var("SCOREFLOW_PIN").as_deref() == Ok("update") {
        let pins = Pins { cpu: here, stages: got };
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_string_pretty(&pins).unwrap() + "\n").unwrap();
        return;
    }
    let pins: Pins = serde_json::from_slice(&std::fs::read(&path).expect("tests/pins/outputs.json"))
        .expect("tests/pins/outputs.json parses");

    // Every built-in implementation is pinned (the tests' own `debug echo` aside).
    let pinned: BTreeSet<&str> = pins.stages.values().map(|s| s.implementation.as_str()).collect();
    let missing: Vec<String> = scoreflow::registry()
        .all()
        .iter()
        .map(|s| format!("{} {}", s.kind().name(), s.method()))
        .filter(|n| n != "debug echo" && !pinned.contains(n.as_str()))
        .collect();
    assert!(missing.is_empty(), "stages without a pinned output (add them to a case in tests/pins.rs): {missing:?}");

    let exact = pins.cpu == here;
    let mut stale = Vec::new();
    let mut changed = Vec::new();
    for (what, pin) in &pins.stages {
        let Some(g) = got.get(what) else {
            stale.push(format!("{what}: no longer in the cases"));
            continue;
        };
        if g.version != pin.version || g.implementation != pin.implementation {
            stale.push(format!(
                "{what}: {} version {} (pinned: {} version {})",
                g.implementation, g.version, pin.implementation, pin.version
            ));
            continue;
        }
        changed.extend(differences(what, g, pin, exact));
    }
    stale.extend(got.keys().filter(|k| !pins.stages.contains_key(*k)).map(|k| format!("{k}: not pinned yet")));
    let how = "re-pin with `SCOREFLOW_PIN=update cargo test --release --all-features --test pins` and commit tests/pins/outputs.json";
    assert!(
        changed.is_empty(),
        "stage outputs changed without a version bump ({}):\n  {}\nIf the change is meant, bump each stage's implementation version (`version` in its describe!, which is in its key, so caches recompute it), then {how}.",
        if exact {
            "compared bit for bit: this is the CPU the pins were recorded on"
        } else {
            "compared within 1 %: the pins were recorded on another CPU"
        },
        changed.join("\n  ")
    );
    assert!(stale.is_empty(), "the pins are out of date:\n  {}\n{how}.", stale.join("\n  "));
    if !exact {
        eprintln!("pins recorded on `{}`; this CPU is `{here}`: tables compared within 1 %", pins.cpu);
    }
}
