//! The two-moons DDPM pipelines through the real binary, at small settings:
//! generate → train (ddpm_eps) → sample (euler_discrete, ddpm) → validate
//! (distribution) → report; cache sharing between the 5k, 40k and EMA
//! pipelines, reruns, determinism, and a clear error for `use_ema` without EMA
//! weights.

mod common;

use common::Workspace;

fn shrink(text: &str) -> String {
    text.replace("n_samples: 50000", "n_samples: 4000")
        .replace("n_samples: 5000, noise", "n_samples: 400, noise")
        .replace("train_steps: 5000", "train_steps: 200")
        .replace("train_steps: 40000", "train_steps: 300")
        .replace("n_samples: 5000, steps: 1000", "n_samples: 400, steps: 50")
        .replace("directions: 256", "directions: 32")
}

fn small(name: &str) -> String {
    shrink(&std::fs::read_to_string(common::checkout(&format!("pipelines/{name}"))).unwrap())
}

#[test]
fn both_pipelines_run_and_share_the_data_stages() {
    let ws = Workspace::new();
    ws.write("two_moons.yaml", &small("two_moons.yaml"));
    ws.write("two_moons_40k.yaml", &small("two_moons_40k.yaml"));
    ws.write("two_moons_40k_ema.yaml", &small("two_moons_40k_ema.yaml"));
    let out = ws.cmd(&["run", "two_moons.yaml"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for line in ["[metrics]", "mmd2_unbiased", "energy_distance", "sliced_w1", "[ddpm]", "loss (mean of"] {
        assert!(text.contains(line), "missing {line}: {text}");
    }
    assert!(text.contains("report: ") && text.contains("reports/two_moons/report/index.html"), "{text}");

    let (out, ev) = ws.run_json("two_moons_40k.yaml", &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(Workspace::ran(&ev), ["ddpm", "metrics", "report", "samples"], "data stages come from the cache");

    // The metrics table: every metric finite and non-negative, floors too.
    let out = ws
        .cmd(&["inspect", "metrics.metrics", "--pipeline", "two_moons_40k.yaml", "--json", "-n", "10"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["head"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["metric"].as_str().unwrap()).collect();
    assert_eq!(names, ["mmd", "mmd2_unbiased", "mmd_biased", "energy_distance", "sliced_w1"]);
    for r in rows.iter().filter(|r| r["metric"] != "mmd2_unbiased") {
        let (value, floor) = (r["value"].as_f64().unwrap(), r["floor"].as_f64().unwrap());
        assert!(value >= 0.0 && floor >= 0.0 && value.is_finite(), "{r}");
    }
    // The clamped MMD carries a note exactly when the signed estimate is negative.
    let signed = rows[1]["value"].as_f64().unwrap();
    assert_eq!(rows[0]["note"].as_str().unwrap().starts_with("below resolution"), signed < 0.0, "{}", rows[0]);
    // 300 steps is far from converged: the model is measurably worse than the floor.
    let sw1 = rows.iter().find(|r| r["metric"] == "sliced_w1").unwrap();
    assert!(sw1["value"].as_f64().unwrap() > sw1["floor"].as_f64().unwrap(), "{sw1}");

    // The report page and its three figures.
    let page = ws.path().join("artifacts/reports/two_moons_40k/report/index.html");
    let html = std::fs::read_to_string(&page).unwrap();
    for src in ["comparison.png", "generated.png", "training.png"] {
        assert!(html.contains(src), "{src} not on the page");
        let bytes = std::fs::read(page.parent().unwrap().join(src)).unwrap();
        assert!(png::Decoder::new(std::io::Cursor::new(bytes)).read_info().is_ok(), "{src} is not a PNG");
    }
    assert!(html.contains("sliced_w1") && html.contains("floor"), "{html}");

    // The EMA pipeline reuses the data stages and samples the EMA weights with
    // both the DDPM ancestral and the Euler-discrete sampler.
    let (out, ev) = ws.run_json("two_moons_40k_ema.yaml", &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(Workspace::ran(&ev), ["ddpm", "metrics", "metrics_euler", "report", "samples", "samples_euler"]);
}

#[test]
fn use_ema_reruns_only_sampling_and_needs_ema_weights() {
    let ws = Workspace::new();
    ws.write("tm.yaml", &small("two_moons_40k_ema.yaml"));
    ws.cmd(&["run", "tm.yaml"]).assert().success();
    ws.write("tm.yaml", &small("two_moons_40k_ema.yaml").replacen("use_ema: true", "use_ema: false", 1));
    let (out, ev) = ws.run_json("tm.yaml", &[]);
    assert!(out.status.success());
    assert_eq!(Workspace::ran(&ev), ["metrics", "report", "samples"]);
    let started = ev.iter().find(|e| e["event"] == "started" && e["stage"] == "samples").unwrap();
    assert_eq!(started["reasons"][0], "param use_ema changed true → false");

    // A model trained without EMA cannot be sampled with it: `check` says so at
    // the input, before anything runs (exit 2, nothing written).
    ws.write("plain.yaml", &small("two_moons.yaml").replace("steps: 50 }", "steps: 50, use_ema: true }"));
    let before = ws.files_under("artifacts/records");
    let out = ws.cmd(&["run", "plain.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plain.yaml:"), "{err}");
    assert!(
        err.contains("input `model` of stage `samples`: use_ema: true, but the model was trained without `ema: true`"),
        "{err}"
    );
    assert_eq!(ws.files_under("artifacts/records"), before, "nothing ran");
}

#[test]
fn same_spec_same_seed_same_bytes() {
    let (a, b) = (Workspace::new(), Workspace::new());
    for ws in [&a, &b] {
        ws.write("two_moons.yaml", &small("two_moons.yaml"));
        ws.cmd(&["run", "two_moons.yaml"]).assert().success();
    }
    let objects = a.files_under("artifacts/objects");
    assert!(objects.len() >= 10, "{objects:?}");
    assert_eq!(objects, b.files_under("artifacts/objects"));
    for f in &objects {
        let p = format!("artifacts/objects/{f}");
        assert_eq!(std::fs::read(a.path().join(&p)).unwrap(), std::fs::read(b.path().join(&p)).unwrap(), "{f}");
    }
}
