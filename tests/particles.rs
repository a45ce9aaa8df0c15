//! iDEM's particle systems (DW-4, LJ-13) through the binary: MCMC
//! reference sets with their diagnostics, the mc_score sampler kept
//! mean-free, and the molecule metrics beside their floor.

mod common;

use common::Workspace;

/// Chains this short have not mixed (DW-4's wells are metastable: R̂ exceeds
/// 1.1 at this length), so the sets are kept with `max_rhat: 0` — these tests
/// exercise the pipeline, not the reference's quality.
fn spec(energy: &str, chains: usize) -> String {
    let init = if energy == "dw4" { "init_scale: 2.0" } else { "init: minimum, init_scale: 0.05" };
    let init = format!("{init}, max_rhat: 0.0");
    format!(
        "name: particles\nseed: 4\nstages:
  reference:
    kind: generate
    params: {{ dataset: boltzmann, energy: {energy}, method: mcmc, n_samples: {n}, chains: {chains}, burn_in: 3000, thin: 200, step: 0.001, {init}, draw: 1 }}
  floor:
    kind: generate
    params: {{ dataset: boltzmann, energy: {energy}, method: mcmc, n_samples: {n}, chains: {chains}, burn_in: 3000, thin: 200, step: 0.001, {init}, draw: 2 }}
  mc:
    kind: sample
    params: {{ sampler: mc_score, energy: {energy}, n_samples: 40, steps: 100, k: 32, max_norm: 20.0, sigma_max: 2.0, normalization: 1.0 }}
  metrics:
    kind: validate
    inputs: {{ samples: mc, target: reference.samples, floor: floor.samples }}
    params: {{ checks: boltzmann, energy: {energy} }}
",
        n = chains * 5
    )
}

fn export_csv(ws: &Workspace, what: &str) -> Vec<Vec<String>> {
    let path = ws.path().join(format!("{what}.csv"));
    let out =
        ws.cmd(&["export", what, "--pipeline", "p.yaml", "-o", path.to_str().unwrap(), "--force"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::read_to_string(path).unwrap().lines().map(|l| l.split(',').map(str::to_string).collect()).collect()
}

/// DW-4 and LJ-13 end to end: the reference has one column per coordinate,
/// every configuration mean-free, the chain and energy recorded, and
/// diagnostics (acceptance, R̂, ESS); the sampler's particles are mean-free;
/// every molecule metric sits beside its floor.
#[test]
fn particle_references_samples_and_metrics() {
    for (energy, n, d) in [("dw4", 4, 2), ("lj13", 13, 3)] {
        let ws = Workspace::new();
        ws.write("p.yaml", &spec(energy, 20));
        let (out, _) = ws.run_json("p.yaml", &[]);
        assert!(out.status.success(), "{energy}: {}", String::from_utf8_lossy(&out.stderr));
        let rows = export_csv(&ws, "reference.samples");
        let header = &rows[0];
        assert_eq!(header.len(), n * d + 2, "{header:?}");
        assert_eq!(header[0], "p0_x");
        assert_eq!(header[n * d - 1], format!("p{}_{}", n - 1, ["x", "y", "z"][d - 1]));
        assert_eq!(&header[n * d..], ["chain", "energy"]);
        assert_eq!(rows.len() - 1, 100);
        for table in ["reference.samples", "mc.samples"] {
            for row in export_csv(&ws, table).iter().skip(1) {
                let x: Vec<f64> = row[..n * d].iter().map(|v| v.parse().unwrap()).collect();
                for k in 0..d {
                    let com: f64 = (0..n).map(|i| x[i * d + k]).sum::<f64>() / n as f64;
                    assert!(com.abs() < 1e-9, "{energy} {table}: centre of mass {com}");
                }
            }
        }
        let diag: std::collections::BTreeMap<String, f64> = export_csv(&ws, "reference.diagnostics")
            .iter()
            .skip(1)
            .map(|r| (r[0].clone(), r[1].parse().unwrap()))
            .collect();
        for key in ["acceptance", "rhat_energy", "ess_energy", "rhat_mean_distance", "energy_q25", "energy_q75"] {
            assert!(diag[key].is_finite(), "{energy}: {key} = {}", diag[key]);
        }
        assert!((0.3..0.8).contains(&diag["acceptance"]), "{energy}: acceptance {}", diag["acceptance"]);
        let out = ws.cmd(&["compare", "p.yaml", "--json"]).output().unwrap();
        let row: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for m in [
            "x_w2",
            "energy_w1",
            "energy_w2",
            "energy_w2_sq",
            "dist_w1",
            "dist_w2",
            "dist_w2_sq",
            "dist_tv",
            "energy_mean",
        ] {
            let v = row[format!("metrics.{m}")].as_f64().unwrap_or_else(|| panic!("{m}: {row}"));
            assert!(v.is_finite(), "{energy}: {m} = {v}");
        }
    }
}

/// DEM's evaluation sets (`data/dem/`, copied from DEM's repository) load as
/// DEM loads them: every configuration mean-free after loading and the test
/// splits' mean energies DEM's (DW-4 −22.45, LJ-13 −43.13, to 0.05); a
/// `validate` stage compares against them, with the blog's batches.
#[test]
fn dems_evaluation_sets_load_mean_free_with_dems_energies() {
    for (energy, file, n, d, want) in
        [("dw4", "test_split_DW4.npy", 4, 2, -22.45), ("lj13", "test_split_LJ13-1000.npy", 13, 3, -43.13)]
    {
        let ws = Workspace::new();
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        std::fs::copy(repo.join("data/dem").join(file), ws.path().join(file)).unwrap();
        ws.write(
            "p.yaml",
            &format!(
                "name: dem\nseed: 3\nstages:
  test:
    kind: generate
    inputs: {{ data: {{ file: {file} }} }}
    params: {{ dataset: boltzmann, energy: {energy}, method: file, n_samples: 10000 }}
  part:
    kind: generate
    inputs: {{ data: {{ file: {file} }} }}
    params: {{ dataset: boltzmann, energy: {energy}, method: file, n_samples: 3000 }}
  metrics:
    kind: validate
    inputs: {{ samples: part.samples, target: test.samples }}
    params: {{ checks: boltzmann, energy: {energy}, max_points: 500, batches: 3, batch_size: 500 }}
"
            ),
        );
        let (out, _) = ws.run_json("p.yaml", &[]);
        assert!(out.status.success(), "{energy}: {}", String::from_utf8_lossy(&out.stderr));
        let rows = export_csv(&ws, "test.samples");
        assert_eq!(rows.len() - 1, 10_000);
        for row in rows.iter().skip(1) {
            let x: Vec<f64> = row[..n * d].iter().map(|v| v.parse().unwrap()).collect();
            for k in 0..d {
                let com: f64 = (0..n).map(|i| x[i * d + k]).sum::<f64>() / n as f64;
                assert!(com.abs() < 1e-12, "{energy}: centre of mass {com}");
            }
        }
        let energies: Vec<f64> = rows.iter().skip(1).map(|r| r[n * d].parse().unwrap()).collect();
        let mean = energies.iter().sum::<f64>() / energies.len() as f64;
        assert!((mean - want).abs() < 0.05, "{energy}: mean energy {mean}, DEM's {want}");
        // the metrics: the set's own first 3000 against the whole (a random
        // subset of it): small but not zero, and the batches' columns there
        let m = export_csv(&ws, "metrics.metrics");
        assert_eq!(
            m[0],
            ["metric", "value", "floor", "batch_mean", "batch_std", "floor_batch_mean", "floor_batch_std"]
        );
        let row = |name: &str| m.iter().find(|r| r[0] == name).unwrap_or_else(|| panic!("{name}")).clone();
        for name in ["energy_w1", "energy_w2", "dist_w1", "x_w2"] {
            let r = row(name);
            let (v, mean, std): (f64, f64, f64) = (r[1].parse().unwrap(), r[3].parse().unwrap(), r[4].parse().unwrap());
            assert!(v > 0.0 && mean > 0.0 && std > 0.0, "{energy} {name}: {r:?}");
        }
        let (w2, w2_sq): (f64, f64) = (row("energy_w2")[1].parse().unwrap(), row("energy_w2_sq")[1].parse().unwrap());
        assert!((w2 * w2 - w2_sq).abs() < 1e-12 * w2_sq.max(1.0));
        assert_eq!(row("n_compared")[1], "500");
    }
}

/// The iDEM pipelines of DW-4 and LJ-13 evaluate against DEM's test split by
/// default (their `metrics` stage's target reads `data/dem/test_split_*`,
/// its floor DEM's validation split), and train with DEM's checkpoint rule
/// on the validation split.
#[test]
fn dw4_and_lj13_pipelines_evaluate_against_dems_test_split() {
    use yaml_rust2::{Yaml, YamlLoader};
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for entry in std::fs::read_dir(repo.join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let split = match name.as_str() {
            n if n.starts_with("idem_dw4") => "DW4",
            n if n.starts_with("idem_lj13") => "LJ13-1000",
            _ => continue,
        };
        let doc = &YamlLoader::load_from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()[0];
        let stages = &doc["stages"];
        let file_of = |input: &Yaml| -> String {
            let stage = input.as_str().unwrap().trim_end_matches(".samples");
            let s = &stages[stage];
            assert_eq!(s["params"]["method"].as_str(), Some("file"), "{name}: {stage}");
            s["inputs"]["data"]["file"].as_str().unwrap().to_string()
        };
        let metrics = &stages["metrics"]["inputs"];
        assert_eq!(file_of(&metrics["target"]), format!("../data/dem/test_split_{split}.npy"), "{name}");
        assert_eq!(file_of(&metrics["floor"]), format!("../data/dem/val_split_{split}.npy"), "{name}");
        assert_eq!(file_of(&stages["train"]["inputs"]["val"]), format!("../data/dem/val_split_{split}.npy"), "{name}");
        assert!(stages["train"]["params"]["select"].is_badvalue(), "{name}: DEM's rule, the default");
        seen += 1;
    }
    assert!(seen >= 10, "{seen} pipelines");
}

/// Same spec and seed, one thread or two: the same bytes, chains included.
#[test]
fn mcmc_references_do_not_depend_on_the_thread_count() {
    let hashes: Vec<serde_json::Value> = ["1", "2"]
        .iter()
        .map(|jobs| {
            let ws = Workspace::new();
            ws.write("p.yaml", &spec("dw4", 8));
            let (out, _) = ws.run_json("p.yaml", &["--jobs", jobs]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let m = ws.latest_manifest("particles");
            m["stages"].as_array().unwrap().iter().map(|s| s["outputs"].clone()).collect()
        })
        .collect();
    assert_eq!(hashes[0], hashes[1]);
}

/// A particle system has no exact sampler, and MCMC needs whole chains: both
/// are spec errors at the parameter, reported together, nothing run.
#[test]
fn impossible_reference_settings_are_spec_errors() {
    let ws = Workspace::new();
    ws.write(
        "p.yaml",
        "name: bad\nstages:\n  a:\n    kind: generate\n    params: { dataset: boltzmann, energy: lj13, method: exact }\n  b:\n    kind: generate\n    params: { dataset: boltzmann, energy: dw4, method: mcmc, n_samples: 10, chains: 3 }\n",
    );
    let out = ws.cmd(&["run", "p.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("p.yaml:5:") && text.contains("no exact sampler"), "{text}");
    assert!(text.contains("p.yaml:8:") && text.contains("multiple of chains"), "{text}");
    assert!(!ws.path().join("artifacts/objects").exists() || ws.files_under("artifacts/objects").is_empty());
}

/// iDEM on DW-4 with DEM's EGNN, at a toy budget, end to end: train, the
/// network's reverse SDE (mean-free samples), the metrics and the report
/// with its histograms; the same bytes on one thread or two.
#[test]
fn idem_trains_an_egnn_on_dw4_and_reports() {
    let mut spec = spec("dw4", 8);
    spec.push_str(
        "  train:
    kind: train
    inputs: { target: reference.samples }
    params: { objective: idem, energy: dw4, outer: 2, inner: 3, batch: 16, k: 8, hidden: 8, steps: 10, samples_per_outer: 16, n_init: 16, init_from_prior: true, lambda: none, max_norm: 20.0, sigma_max: 3.0, normalization: 1.0, lr: 0.001, snapshot_every: 1, select: last }
  samples:
    kind: sample
    inputs: { model: train.model }
    params: { sampler: ve_sde, n_samples: 30, steps: 10 }
  model_metrics:
    kind: validate
    inputs: { samples: samples, target: reference.samples, floor: floor.samples }
    params: { checks: boltzmann, energy: dw4 }
  report:
    kind: report
    inputs: { target: reference.samples, samples: samples, mc_samples: mc, metrics: model_metrics.metrics, loss: train.loss, tracker: train.tracker, buffer: train.buffer }
    params: { layout: idem, energy: dw4 }
  score_fit:
    kind: validate
    inputs: { model: train.model, target: reference.samples }
    params: { checks: network_score, ts: [0.0, 0.5], points: 12, repeats: 3, k: 16 }
",
    );
    let outputs: Vec<serde_json::Value> = ["1", "2"]
        .iter()
        .map(|jobs| {
            let ws = Workspace::new();
            ws.write("p.yaml", &spec);
            let (out, _) = ws.run_json("p.yaml", &["--jobs", jobs]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let rows = export_csv(&ws, "samples.samples");
            assert_eq!(rows[0].len(), 8);
            for row in rows.iter().skip(1) {
                let x: Vec<f64> = row.iter().map(|v| v.parse().unwrap()).collect();
                assert!((x[0] + x[2] + x[4] + x[6]).abs() < 1e-4 && (x[1] + x[3] + x[5] + x[7]).abs() < 1e-4);
            }
            let loss = export_csv(&ws, "train.loss");
            assert_eq!(loss.len() - 1, 6);
            let names = ws.export_model("train.model", "p.yaml", "iDEM EGNN");
            assert!(
                names.contains(&"gcl.2.coord_2.weight".to_string()) && names.contains(&"embedding.bias".to_string()),
                "{names:?}"
            );
            let page = ws.path().join("artifacts/reports/particles/report");
            for f in ["index.html", "samples.png", "training.png", "buffer.png"] {
                assert!(page.join(f).exists(), "{f}");
            }
            let html = std::fs::read_to_string(page.join("index.html")).unwrap();
            assert!(html.contains("iDEM on DW4") && html.contains("interquartile range"), "{html}");
            // the network against its training target, one row per t
            let score = export_csv(&ws, "score_fit.score");
            assert_eq!(score[0][..4], ["metric", "t", "h", "gain"]);
            assert_eq!(score.iter().skip(1).map(|r| r[0].as_str()).collect::<Vec<_>>(), ["t=0", "t=0.5"]);
            let col = |name: &str| score[0].iter().position(|c| c == name).unwrap_or_else(|| panic!("{name}"));
            for row in &score[1..] {
                assert!(row[1..].iter().all(|v| v.parse::<f64>().unwrap().is_finite()), "{row:?}");
                assert_eq!(row[col("points")], "12", "points");
                // the estimates' effective number of draws lies in [1, k]
                let (ess, q10): (f64, f64) = (row[col("ess")].parse().unwrap(), row[col("ess_q10")].parse().unwrap());
                assert!((1.0..=16.0 + 1e-9).contains(&q10) && q10 <= ess && ess <= 16.0 + 1e-9, "{row:?}");
            }
            // at t = 0 every draw is the point itself: all k weigh alike
            assert!((score[1][col("ess")].parse::<f64>().unwrap() - 16.0).abs() < 1e-9);
            // compare shows both of the check's measures, each row once per measure
            let out = ws.cmd(&["compare", "p.yaml", "--json"]).output().unwrap();
            let row: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            for measure in ["gain", "rel_mse"] {
                let column = col(measure);
                for (i, t) in ["t=0", "t=0.5"].iter().enumerate() {
                    let v = row[format!("score_fit.{measure}({t})")].as_f64().unwrap_or_else(|| panic!("{row}"));
                    let exported: f64 = score[i + 1][column].parse().unwrap();
                    assert!((v - exported).abs() <= 1e-12 * exported.abs(), "{measure} {t}: {v} vs {exported}");
                }
            }
            let m = ws.latest_manifest("particles");
            serde_json::Value::Array(
                m["stages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|s| s["kind"] != "report")
                    .map(|s| s["outputs"].clone())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(outputs[0], outputs[1]);
}

/// A chain that accepts nothing (a step size far too large, adaptation off)
/// fails its stage with the chain named, and leaves no record: the next run
/// tries again.
#[test]
fn a_stuck_chain_fails_its_stage_and_caches_nothing() {
    let ws = Workspace::new();
    ws.write(
        "p.yaml",
        "name: stuck\nstages:\n  reference:\n    kind: generate\n    params: { dataset: boltzmann, energy: lj13, method: mcmc, n_samples: 4, chains: 2, burn_in: 10, thin: 100, step: 1000.0, target_accept: 0.0 }\n",
    );
    for _ in 0..2 {
        let error = reference_failure(&ws);
        assert!(error.contains("chain ") && error.contains("accepted no proposal"), "{error}");
    }
}

/// Runs `p.yaml`, which must fail (exit 1) at its `reference` stage leaving
/// no record, and returns the stage's error.
fn reference_failure(ws: &Workspace) -> String {
    let (out, events) = ws.run_json("p.yaml", &[]);
    assert_eq!(out.status.code(), Some(1));
    let failed = events.iter().find(|e| e["event"] == "failed").expect("a failed event");
    assert_eq!(failed["stage"], "reference");
    assert!(ws.files_under("artifacts/records").is_empty(), "no record of a failed stage");
    failed["error"].as_str().unwrap().to_string()
}

/// Chains that each accept proposals but do not agree — LJ-13 started from
/// a prior 20 times too narrow, so some chains sit jammed at energies of
/// 10⁴ and more with their step sizes adapted to nothing — fail the stage on
/// split-R̂ (`max_rhat`, 1.1 by default) with the statistic, the energies
/// and the step sizes named, and leave no record; `max_rhat: 0` keeps them,
/// the R̂ reported in the diagnostics.
#[test]
fn chains_that_have_not_mixed_fail_on_rhat_unless_asked_to_keep_them() {
    let spec = |max_rhat: &str| {
        format!(
            "name: jammed\nstages:\n  reference:\n    kind: generate\n    params: {{ dataset: boltzmann, energy: lj13, method: mcmc, n_samples: 80, chains: 20, burn_in: 50000, thin: 2000, step: 0.0001, init_scale: 0.05{max_rhat} }}\n"
        )
    };
    let ws = Workspace::new();
    ws.write("p.yaml", &spec(""));
    let error = reference_failure(&ws);
    assert!(error.contains("20 chains have not mixed: split-R̂") && error.contains("above max_rhat 1.1"), "{error}");
    assert!(error.contains("for the energy") && error.contains("step sizes"), "{error}");

    ws.write("p.yaml", &spec(", max_rhat: 0.0"));
    let (out, _) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = export_csv(&ws, "reference.diagnostics");
    let rhat: f64 = rows.iter().find(|r| r[0] == "rhat_energy").unwrap()[1].parse().unwrap();
    assert!(rhat > 1.1, "the kept set reports its R̂: {rhat}");
}

/// The options beyond DEM's DW-4 defaults: `ema` saves the weights' moving
/// average as the model (a different model from the same run without it),
/// and DEM's negative-time tail (`negative_time_steps`, LJ-55's setting)
/// runs after the buffer's and the sampler's reverse SDEs, the samples still
/// mean-free; the tail on a GMM-40 training is a spec error.
#[test]
fn ema_and_the_negative_time_tail_on_particles() {
    let train = |ema: f64, tail: usize| {
        let mut spec = spec("dw4", 4);
        spec.push_str(&format!(
            "  train:
    kind: train
    inputs: {{ target: reference.samples }}
    params: {{ objective: idem, energy: dw4, outer: 2, inner: 3, batch: 8, k: 8, hidden: 8, steps: 10, samples_per_outer: 8, n_init: 8, init_from_prior: true, lambda: none, max_norm: 20.0, sigma_max: 3.0, normalization: 1.0, ema: {ema}, negative_time_steps: {tail}, select: last }}
  samples:
    kind: sample
    inputs: {{ model: train.model }}
    params: {{ sampler: ve_sde, n_samples: 12, steps: 10, negative_time_steps: {tail} }}
"
        ));
        let ws = Workspace::new();
        ws.write("p.yaml", &spec);
        let (out, _) = ws.run_json("p.yaml", &[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        for row in export_csv(&ws, "samples.samples").iter().skip(1) {
            let x: Vec<f64> = row.iter().map(|v| v.parse().unwrap()).collect();
            assert!((x[0] + x[2] + x[4] + x[6]).abs() < 1e-4 && (x[1] + x[3] + x[5] + x[7]).abs() < 1e-4);
        }
        let m = ws.latest_manifest("particles");
        let out = |stage: &str, o: &str| {
            m["stages"].as_array().unwrap().iter().find(|s| s["name"] == stage).unwrap()["outputs"][o].clone()
        };
        (out("train", "model"), out("train", "loss"), out("samples", "samples"))
    };
    let plain = train(0.0, 0);
    let ema = train(0.9, 0);
    assert_eq!(plain.1, ema.1, "the same training steps");
    assert_ne!(plain.0, ema.0, "the saved model is the average");
    let tail = train(0.0, 5);
    assert_ne!(plain.2, tail.2, "the tail moves the samples");

    let ws = Workspace::new();
    ws.write(
        "p.yaml",
        "name: g\nstages:\n  t:\n    kind: train\n    params: { objective: idem, negative_time_steps: 3, select: last }\n",
    );
    let out = ws.cmd(&["check", "p.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("negative_time_steps") && err.contains("particle systems"), "{err}");
}

/// DEM's `ReduceLROnPlateau` on particles: with a `val` input every
/// `plateau_every` steps a validation loss is recorded and steps the rate
/// (PyTorch's rule, recomputed here from the recorded losses), the loss
/// table's rate follows it; validation never changes training otherwise (a
/// patience no run can exhaust gives the model of a run without `val`, whose
/// `val` table is empty).
#[test]
fn the_plateau_schedule_follows_the_validation_loss() {
    let train = |val: bool, patience: usize| train_dw4_tiny(val, patience, "none");
    let (val, loss, _) = train(true, 0);
    assert_eq!(val.len(), 8, "one validation a step");
    // PyTorch's rule from the recorded losses: better when below best·(1 − 1e-4),
    // else the rate halves (patience 0)
    let (mut best, mut lr) = (f64::INFINITY, 0.01);
    for (i, row) in val.iter().enumerate() {
        assert_eq!(row[0] as usize, i + 1);
        assert!(row[1].is_finite() && row[1] > 0.0);
        if row[1] < best * (1.0 - 1e-4) {
            best = row[1];
        } else {
            lr *= 0.5;
        }
        assert!((row[2] - lr).abs() < 1e-12, "validation {i}: rate {} vs {lr}", row[2]);
        // the next step trains at the rate this validation set
        if i + 1 < loss.len() {
            assert!((loss[i + 1][4] - row[2]).abs() < 1e-12, "step {}", i + 1);
        }
    }
    assert!(lr < 0.01, "the schedule reduced the rate at least once");
    assert_eq!(loss[0][4], 0.01);
    let (_, _, model) = train(true, 100);
    let (none, plain_loss, plain_model) = train(false, 100);
    assert!(none.is_empty(), "no val input: no validations");
    assert!(plain_loss.iter().all(|r| r[4] == 0.01));
    assert_eq!(model, plain_model, "validating does not change training");
}

/// `lr_decay: cosine` (not DEM's) multiplies whatever rate the plateau set by
/// ½(1 + cos(π·step/steps)): each recorded step's rate is the plateau's rate
/// after the validations before it times the half cosine.
#[test]
fn the_cosine_decay_multiplies_the_plateau_rate() {
    let (val, loss, model) = train_dw4_tiny(true, 0, "cosine");
    let (_, _, plain) = train_dw4_tiny(true, 0, "none");
    assert_ne!(model, plain, "the decay changes the model");
    assert_eq!(loss.len(), 8);
    for (i, row) in loss.iter().enumerate() {
        let plateau = if i == 0 { 0.01 } else { val[i - 1][2] };
        let want = plateau * 0.5 * (1.0 + (std::f64::consts::PI * i as f64 / 8.0).cos());
        assert!((row[4] - want).abs() < 1e-12, "step {i}: {} vs {want}", row[4]);
    }
}

/// A tiny DW-4 iDEM training (2 × 4 steps, one validation a step when `val`
/// is wired) through the binary: its `val` and `loss` tables as numbers, and
/// the manifest's model entry.
fn train_dw4_tiny(val: bool, patience: usize, decay: &str) -> (Vec<Vec<f64>>, Vec<Vec<f64>>, serde_json::Value) {
    let mut spec = spec("dw4", 4);
    let inputs = if val { "target: reference.samples, val: floor.samples" } else { "target: reference.samples" };
    spec.push_str(&format!(
        "  train:
    kind: train
    inputs: {{ {inputs} }}
    params: {{ objective: idem, energy: dw4, outer: 2, inner: 4, batch: 8, k: 8, hidden: 8, steps: 10, samples_per_outer: 8, n_init: 8, init_from_prior: true, lambda: none, max_norm: 20.0, sigma_max: 3.0, normalization: 1.0, lr: 0.01, plateau_every: 1, plateau_patience: {patience}, plateau_factor: 0.5, val_batch: 6, lr_decay: {decay}, select: last }}
"
    ));
    let ws = Workspace::new();
    ws.write("p.yaml", &spec);
    let (out, _) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let num = |rows: Vec<Vec<String>>| -> Vec<Vec<f64>> {
        rows.iter().skip(1).map(|r| r.iter().map(|v| v.parse().unwrap()).collect()).collect()
    };
    let val = export_csv(&ws, "train.val");
    assert_eq!(val[0], ["step", "val_loss", "lr"]);
    let loss = export_csv(&ws, "train.loss");
    let m = ws.latest_manifest("particles");
    let model =
        m["stages"].as_array().unwrap().iter().find(|s| s["name"] == "train").unwrap()["outputs"]["model"].clone();
    (num(val), num(loss), model)
}

/// `checks: network_score` compares an EGNN with its targets; given DEM's
/// MLP (a GMM-40 model) the stage fails saying so, and leaves no record of
/// itself.
#[test]
fn network_score_on_a_gmm_model_is_a_clear_error() {
    let ws = Workspace::new();
    ws.write(
        "p.yaml",
        "name: mlp\nseed: 5\nstages:\n  target:\n    kind: generate\n    params: { dataset: boltzmann, n_samples: 40, draw: 1 }\n  train:\n    kind: train\n    inputs: { target: target.samples }\n    params: { objective: idem, outer: 1, inner: 2, batch: 8, k: 4, n_init: 8, samples_per_outer: 8, steps: 5, select: last }\n  score_fit:\n    kind: validate\n    inputs: { model: train.model, target: target.samples }\n    params: { checks: network_score, points: 4, repeats: 2, k: 4 }\n",
    );
    let (out, events) = ws.run_json("p.yaml", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let failed = events.iter().find(|e| e["event"] == "failed").expect("a failed event");
    assert_eq!(failed["stage"], "score_fit");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("checks an EGNN") && error.contains("DEM's MLP"), "{error}");
    assert!(
        !ws.files_under("artifacts/records").iter().any(|r| r.contains("score_fit")),
        "no record of the failed stage"
    );
}
