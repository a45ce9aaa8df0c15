//! The colour workload (seed 003) end to end through the binary: the real
//! pipeline (10 001 steps take about half a second), and what an edit of the
//! dopesheet reruns.

mod common;

use common::Workspace;

fn workspace() -> Workspace {
    let ws = Workspace::new();
    for dir in ["pipelines", "data"] {
        std::fs::create_dir_all(ws.path().join(dir)).unwrap();
    }
    std::fs::copy(common::checkout("pipelines/color.yaml"), ws.path().join("pipelines/color.yaml")).unwrap();
    std::fs::copy(common::checkout("data/ex-1.7-dopesheet.csv"), ws.path().join("data/ex-1.7-dopesheet.csv")).unwrap();
    ws
}

fn metric(ws: &Workspace, name: &str) -> f64 {
    let out = ws.cmd(&["compare", "pipelines/color.yaml", "--json"]).output().unwrap();
    let row: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    row[format!("latent.{name}")].as_f64().unwrap_or_else(|| panic!("{name}: {row}"))
}

/// The seed's pipeline trains a latent space with red near e₁, the vibrant
/// hues in one clean turn and a small reconstruction error; editing one cell
/// of the sheet reruns the schedule, training and its checks, nothing before.
#[test]
fn the_color_pipeline_runs_and_a_sheet_edit_reruns_only_what_follows() {
    let ws = workspace();
    let (out, events) = ws.run_json("pipelines/color.yaml", &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(Workspace::ran(&events), vec!["cube", "labels", "latent", "report", "schedule", "train"]);
    // The page and its figures, the animation an APNG (an acTL chunk).
    let page = ws.path().join("artifacts/reports/color/report");
    for f in ["index.html", "timeline.png", "loss.png", "latents.png", "final.png", "checks.png"] {
        assert!(page.join(f).exists(), "{f}");
    }
    let apng = std::fs::read(page.join("animation.png")).unwrap();
    assert!(apng.windows(4).any(|w| w == b"acTL"), "an animated PNG");
    assert!(metric(&ws, "recon_mse") < 0.002);
    assert!(metric(&ws, "red_angle") < 30.0);
    assert_eq!(metric(&ws, "hue_order"), 1.0);
    assert_eq!(metric(&ws, "hue_turns").abs(), 1.0);
    let names = ws.export_model("train.model", "pipelines/color.yaml", "colour autoencoder");
    assert_eq!(
        names,
        [
            "decoder.0.bias",
            "decoder.0.weight",
            "decoder.1.bias",
            "decoder.1.weight",
            "encoder.0.bias",
            "encoder.0.weight",
            "encoder.1.bias",
            "encoder.1.weight"
        ]
    );
    // One cell: reg-planar at step 5000, 0.05 → 0.04.
    let path = ws.path().join("data/ex-1.7-dopesheet.csv");
    let sheet = std::fs::read_to_string(&path).unwrap();
    let edited = sheet.replace("5000,,,,1.0,0.05,0.05,", "5000,,,,1.0,0.05,0.04,");
    assert_ne!(edited, sheet);
    std::fs::write(&path, edited).unwrap();
    let (out, events) = ws.run_json("pipelines/color.yaml", &[]);
    assert!(out.status.success());
    assert_eq!(Workspace::ran(&events), vec!["latent", "report", "schedule", "train"]);
    let started = events.iter().find(|e| e["event"] == "started" && e["stage"] == "schedule").unwrap();
    assert!(started["reasons"][0].as_str().unwrap().contains("file ../data/ex-1.7-dopesheet.csv changed"), "{started}");
}

/// A sheet column the objective does not read is an error naming it.
#[test]
fn an_unknown_dopesheet_column_is_a_clear_error() {
    let ws = workspace();
    let path = ws.path().join("data/ex-1.7-dopesheet.csv");
    let sheet = std::fs::read_to_string(&path).unwrap().replace("reg-polar", "reg-anchor");
    std::fs::write(&path, sheet).unwrap();
    let out = ws.cmd(&["run", "pipelines/color.yaml"]).output().unwrap();
    assert!(!out.status.success());
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("train") && text.contains("reg-anchor") && text.contains("does not read"), "{text}");
}

/// `labels: per_draw` (the origin's stochastic labels) trains through the
/// binary, differently from the soft labels, and differently per seed: the
/// draws come from the stage seed's stream.
#[test]
fn per_draw_labels_train_and_depend_on_the_seed() {
    let ws = workspace();
    let train_hash = |args: &[&str]| {
        let (out, _) = ws.run_json("pipelines/color.yaml", args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        common::stage_line(&ws, "color", "train")["outputs"].clone()
    };
    let soft = train_hash(&["--only", "train"]);
    let per_draw = train_hash(&["--only", "train", "--set", "stages.train.params.labels=per_draw"]);
    let other_seed =
        train_hash(&["--only", "train", "--set", "stages.train.params.labels=per_draw", "--set", "seed=2"]);
    assert_ne!(soft, per_draw);
    assert_ne!(per_draw, other_seed);
    assert_eq!(per_draw, train_hash(&["--only", "train", "--set", "stages.train.params.labels=per_draw"]));
}

/// `labels` chooses the label columns: the seed's red and vibrant by default,
/// the origin's later green, blue and desaturated on request.
#[test]
fn the_label_set_is_configurable() {
    let ws = workspace();
    let all = "stages.labels.params.labels=[red, green, blue, vibrant, desaturated]";
    let out = ws.cmd(&["run", "pipelines/color.yaml", "--only", "labels", "--set", all]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out =
        ws.cmd(&["inspect", "labels.labels", "--pipeline", "pipelines/color.yaml", "--set", all]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let schema = &text[text.find("schema:").expect("a schema")..text.find("head(").expect("a head")];
    for name in ["red: f64", "green: f64", "blue: f64", "vibrant: f64", "desaturated: f64"] {
        assert!(schema.contains(name), "{name}: {schema}");
    }
    let out = ws.cmd(&["run", "pipelines/color.yaml", "--only", "labels"]).output().unwrap();
    assert!(out.status.success());
    let out = ws.cmd(&["inspect", "labels.labels", "--pipeline", "pipelines/color.yaml"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("red: f64") && !text.contains("green: f64"), "{text}");
}

/// The curricula workspace: the comparison spec and the four sheets.
fn curricula() -> Workspace {
    let ws = workspace();
    std::fs::copy(common::checkout("pipelines/color_curricula.yaml"), ws.path().join("pipelines/color_curricula.yaml"))
        .unwrap();
    for sheet in ["ex-1.5-dopesheet.csv", "ex-1.6-smooth-dopesheet.csv", "ex-1.6-stepped-dopesheet.csv"] {
        std::fs::copy(common::checkout(&format!("data/{sheet}")), ws.path().join("data").join(sheet)).unwrap();
    }
    ws
}

/// One column of a stage's table output, through `scoreflow export`.
fn column(ws: &Workspace, target: &str, spec: &str, name: &str) -> Vec<f64> {
    let csv = ws.path().join("out.csv");
    let out = ws
        .cmd(&["export", target, "--pipeline", spec, "--matrix", "seed=1", "-o", csv.to_str().unwrap(), "--force"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    let k = lines.next().unwrap().split(',').position(|c| c == name).unwrap_or_else(|| panic!("{name}"));
    lines.map(|l| l.split(',').nth(k).unwrap().parse::<f64>().unwrap_or(f64::NAN)).collect()
}

/// The 1.5, 1.6 smooth and 1.6 stepped curricula train through the binary as
/// their notebooks do — the anchor snapshot taken at the sheet's `anchor`
/// action, the separation only while the primaries phase weights it — beside
/// 1.7, and the page puts the four side by side.
#[test]
fn the_curricula_train_through_the_binary_beside_per_sample_regularization() {
    let ws = curricula();
    let spec = "pipelines/color_curricula.yaml";
    let (out, events) = ws.run_json(spec, &["--matrix", "seed=1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ran = Workspace::ran(&events);
    for stage in ["train_15", "train_16_smooth", "train_16_stepped", "train_17", "report"] {
        assert!(ran.iter().any(|s| s == stage), "{stage}: {ran:?}");
    }
    // 1.6 smooth: reg-anchor weighs 0 until the anchor at step 500, then the
    // term is recorded; reg-separate runs in the primaries phase only.
    let anchor = column(&ws, "train_16_smooth.loss", spec, "reg-anchor");
    assert_eq!(anchor.len(), 10_001);
    assert!(anchor[..500].iter().all(|v| v.is_nan()), "before the anchor");
    assert!(anchor[500..].iter().all(|v| v.is_finite() && *v >= 0.0), "after the anchor");
    assert!(anchor[600] > 0.0, "the anchored primaries drift a little");
    let sep = column(&ws, "train_16_smooth.loss", spec, "reg-separate");
    assert!(sep[100..499].iter().all(|v| v.is_finite()) && sep[600..].iter().all(|v| v.is_nan()));
    // 1.5: 20 001 steps; its anchor at 3000.
    let anchor = column(&ws, "train_15.loss", spec, "reg-anchor");
    assert_eq!(anchor.len(), 20_001);
    assert!(anchor[..3000].iter().all(|v| v.is_nan()) && anchor[3001..].iter().all(|v| v.is_finite()));
    // The same checks on every run; the 1.6 curricula form one clean hue turn.
    let out = ws.cmd(&["compare", spec, "--matrix", "seed=1", "--json"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let row: serde_json::Value = serde_json::from_str(text.lines().next().expect("a row")).unwrap();
    for arm in ["15", "16_smooth", "16_stepped", "17"] {
        let recon = row[format!("latent_{arm}.recon_mse")].as_f64().unwrap_or_else(|| panic!("{arm}: {row}"));
        assert!(recon < 0.002, "{arm}: {recon}");
    }
    for arm in ["16_smooth", "16_stepped"] {
        assert_eq!(row[format!("latent_{arm}.hue_turns")].as_f64().unwrap().abs(), 1.0, "{arm}");
    }
    let page = ws.path().join("artifacts/reports/color_curricula/report");
    for f in ["index.html", "final.png", "evolution.png", "checks.png", "timelines.png"] {
        assert!(page.join(f).exists(), "{f}");
    }
    let html = std::fs::read_to_string(page.join("index.html")).unwrap();
    assert!(html.contains("1.6 stepped") && html.contains("1.7 per-sample"));
}

/// Configured regularizers are checked with the spec: a batch-scalar criterion
/// takes no affinity, a column weighs one regularizer; a curriculum's `data-*`
/// columns need a curriculum form.
#[test]
fn regularizer_and_form_mistakes_are_clear_errors() {
    let ws = curricula();
    let spec = std::fs::read_to_string(ws.path().join("pipelines/color_curricula.yaml")).unwrap().replace(
        "params: { objective: color_ae, form: ex_1_5, batch: 256, snapshot_every: 100 }",
        "params:\n      objective: color_ae\n      form: ex_1_5\n      regularizers:\n        - { column: reg-anchor, criterion: anchor, affinity: { red: 1 } }\n        - { column: reg-norm, criterion: norm, affinity: {} }\n        - { column: reg-norm, criterion: planar, affinity: {} }",
    );
    ws.write("pipelines/bad.yaml", &spec);
    let out = ws.cmd(&["check", "pipelines/bad.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("bad.yaml:"), "{text}");
    assert!(text.contains("`anchor` is one value per batch and takes no affinity"), "{text}");
    assert!(text.contains("column `reg-norm` weights two regularizers"), "{text}");
    // The 1.5 sheet under the seed's form: its data-fraction is not read.
    let spec = std::fs::read_to_string(ws.path().join("pipelines/color_curricula.yaml"))
        .unwrap()
        .replace("form: ex_1_5, ", "");
    ws.write("pipelines/no_form.yaml", &spec);
    let out = ws.cmd(&["run", "pipelines/no_form.yaml", "--matrix", "seed=1", "--only", "train_15"]).output().unwrap();
    assert!(!out.status.success());
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("data-fraction") && text.contains("form ex_1_7"), "{text}");
}
