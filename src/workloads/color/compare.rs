//! `report` / `layout: color_compare`: up to four colour-autoencoder runs side
//! by side — the seed's comparison of curricula (1.5, 1.6 smooth, 1.6 stepped)
//! against per-sample regularization (1.7) on one page: the final latents of
//! each run in the planes (0, 1), (0, 2), (0, 3) on one shared view; the
//! (0, 1) plane at the same fractions of each run's training; the latent
//! checks over training, one line per run; each run's timeline; and the final
//! checks in one table.
//!
//! Run `k` (1 to 4) binds `timeline_k`, `latents_k`, `over_time_k` and
//! `metrics_k` (run 1 is required; a run binds all four or none).

use super::report::{Snapshot, plane_panels, snapshots, timeline_parts};
use crate::engine::frame::{ColumnData, Table};
use crate::engine::params::{Default, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::report::plot::{self, ColoredPanel, ColoredPoint, Lines};
use crate::report::{esc, html_table_with, page, plot_err};

pub struct ColorCompare;

static NAME: ParamType = ParamType::Str { choices: &[] };

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct ColorCompareParams {
        names: Option<Vec<String>> = (ParamType::List { item: &NAME, min_len: 1 }, Default::Optional, "each run's name, in run order [default: run 1, run 2, …]"),
        thumbnails: usize = (ParamType::Int { min: 1, max: 20 }, Default::Int(6), "(z0, z1) views per run, at the same fractions of training"),
        lr_axis: String = (ParamType::Str { choices: &["linear", "log"] }, Default::Str("linear"), "the timelines' learning-rate axis"),
    }
}

/// The four inputs of each run.
const PARTS: [&str; 4] = ["timeline", "latents", "over_time", "metrics"];
/// At most this many runs.
const RUNS: usize = 4;

macro_rules! run_inputs {
    ($($k:literal),*) => {
        &[$(
            InputDef { name: concat!("timeline_", $k), media: Media::Table, required: $k == 1, doc: concat!("run ", $k, ": generate dataset: dopesheet's timeline") },
            InputDef { name: concat!("latents_", $k), media: Media::Table, required: $k == 1, doc: concat!("run ", $k, ": train objective: color_ae's latents") },
            InputDef { name: concat!("over_time_", $k), media: Media::Table, required: $k == 1, doc: concat!("run ", $k, ": validate checks: color_latent's over_time") },
            InputDef { name: concat!("metrics_", $k), media: Media::Table, required: $k == 1, doc: concat!("run ", $k, ": validate checks: color_latent's metrics") },
        )*]
    };
}
static INPUTS: &[InputDef] = run_inputs!(1, 2, 3, 4);
static OUTPUTS: &[OutputDef] = &[
    OutputDef { name: "html", media: Media::Html, doc: "the report page (index.html)" },
    OutputDef { name: "final", media: Media::Png, doc: "PNG: each run's final latents, planes (0, 1), (0, 2), (0, 3)" },
    OutputDef { name: "evolution", media: Media::Png, doc: "PNG: each run's (0, 1) plane over training" },
    OutputDef { name: "checks", media: Media::Png, doc: "PNG: the latent checks over training, one line per run" },
    OutputDef { name: "timelines", media: Media::Png, doc: "PNG: each run's dopesheet timeline" },
];

/// The checks drawn over time: (column, panel title).
const CHECKS: [(&str, &str); 4] = [
    ("norm_dev", "mean |‖z‖ − 1| (grid)"),
    ("off_plane", "off-plane z₂² + z₃² (vibrant)"),
    ("hue_order", "hue order (vibrant)"),
    ("red_angle", "red's angle to e₁ (degrees)"),
];

impl Stage for ColorCompare {
    describe!(Kind::Report, "color_compare", version 1, params ColorCompareParams, INPUTS, OUTPUTS);
    fn input_columns(&self, input: &str) -> &'static [&'static str] {
        match input.rsplit_once('_').map_or(input, |(part, _)| part) {
            "timeline" => &["step", "phase"],
            "latents" => &["step", "r", "g", "b", "z0", "z1", "z2", "z3"],
            "over_time" => &["step", "norm_dev", "off_plane", "hue_order", "red_angle"],
            "metrics" => &["metric", "value"],
            _ => &[],
        }
    }
    // Over 150 lines: figure assembly — each figure's data read and drawn in
    // order, as the page shows them.
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let p = ColorCompareParams::read(ctx.params);
        // The runs bound, each with all four parts.
        let mut runs: Vec<usize> = Vec::new();
        for k in 1..=RUNS {
            let bound: Vec<bool> = PARTS.iter().map(|part| ctx.inputs.contains_key(&format!("{part}_{k}"))).collect();
            if bound.iter().all(|b| *b) {
                runs.push(k);
            } else if bound.iter().any(|b| *b) {
                let missing: Vec<String> =
                    PARTS.iter().zip(&bound).filter(|(_, b)| !**b).map(|(part, _)| format!("{part}_{k}")).collect();
                return Err(StageError::Failed(format!(
                    "run {k} binds some of its inputs but not {}",
                    missing.join(", ")
                )));
            }
        }
        let name = |k: usize| -> String {
            p.names.as_ref().and_then(|n| n.get(k - 1).cloned()).unwrap_or_else(|| format!("run {k}"))
        };
        let table = |part: &str, k: usize| ctx.table(&format!("{part}_{k}"));

        // Final latents and the evolution, on one view shared by every run.
        let snaps: Vec<Vec<Snapshot>> =
            runs.iter().map(|&k| snapshots(table("latents", k)?)).collect::<Result<_, _>>()?;
        if snaps.iter().any(|s| s.is_empty()) {
            return Err(StageError::Failed("a run has no latent snapshots".into()));
        }
        let mut finals: Vec<ColoredPanel> = Vec::new();
        for (r, s) in snaps.iter().enumerate() {
            let last = s.last().expect("not empty");
            finals.extend(plane_panels(last, 3, |xd, yd| format!("{}: step {} ({xd}, {yd})", name(runs[r]), last.0)));
        }
        let all: Vec<&[ColoredPoint]> = finals.iter().map(|f| f.points).collect();
        let final_png = plot::colored_scatter(&finals, 3, 380, plot::fitted_view(&all)).map_err(plot_err)?;
        let k = p.thumbnails;
        let mut thumbs: Vec<ColoredPanel> = Vec::new();
        for (r, s) in snaps.iter().enumerate() {
            let n = s.len() - 1;
            for i in 0..k {
                let at = if k > 1 { i * n / (k - 1) } else { n };
                thumbs.push(ColoredPanel {
                    title: format!("{}: step {}", name(runs[r]), s[at].0),
                    x_desc: "z0",
                    y_desc: "z1",
                    points: &s[at].1[0],
                    radius: 2,
                });
            }
        }
        let all: Vec<&[ColoredPoint]> = thumbs.iter().map(|f| f.points).collect();
        let evolution_png = plot::colored_scatter(&thumbs, k, 230, plot::fitted_view(&all)).map_err(plot_err)?;
        (ctx.progress)(0.4);

        // The checks over time, one line per run.
        let names: Vec<String> = runs.iter().map(|&k| name(k)).collect();
        let over: Vec<Table> = runs.iter().map(|&k| table("over_time", k).cloned()).collect::<Result<_, _>>()?;
        let mut panels = Vec::new();
        for (col, title) in CHECKS {
            let mut series = Vec::new();
            for (r, t) in over.iter().enumerate() {
                let s = t.i64s("step")?;
                let v = t.f64s(col)?;
                series.push((names[r].as_str(), s.iter().map(|x| *x as f64).zip(v).collect()));
            }
            panels.push(Lines { title, x_desc: "step", y_desc: "", x_integer: true, series });
        }
        let checks_png = plot::line_panels(&panels).map_err(plot_err)?;
        let parts = runs
            .iter()
            .map(|&k| timeline_parts(table("timeline", k)?, None, &format!("{}: dopesheet timeline", name(k))))
            .collect::<Result<Vec<_>, _>>()?;
        let timelines_png = plot::timelines(&parts, p.lr_axis == "log").map_err(plot_err)?;
        (ctx.progress)(0.8);

        // The final checks: one row per metric, one column per run.
        let mut metric_names: Vec<String> = Vec::new();
        let mut values: Vec<Vec<(String, f64)>> = Vec::new();
        for &k in &runs {
            let m = table("metrics", k)?;
            let (n, v) = (m.strs("metric")?, m.f64s("value")?);
            for name in n {
                if !metric_names.contains(name) {
                    metric_names.push(name.clone());
                }
            }
            values.push(n.iter().cloned().zip(v).collect());
        }
        let mut t = Table::new().with("metric", ColumnData::Str(metric_names.clone()));
        for (r, vals) in values.iter().enumerate() {
            let col =
                metric_names.iter().map(|m| vals.iter().find(|(n, _)| n == m).map_or(f64::NAN, |(_, v)| *v)).collect();
            t = t.with(&names[r], ColumnData::F64(col));
        }
        let intro = format!(
            "<h2>Runs</h2>\n<p>{} colour-autoencoder runs side by side: {}. Every run is scored by the same checks on \
             the same 8³ RGB grid (validate checks: color_latent); red's angle to e₁ is a target of the 1.7 \
             regularizers only.</p>\n",
            runs.len(),
            esc(&names.join(", "))
        );
        let html = page(
            "Colour autoencoder: runs compared",
            &intro,
            &[
                (
                    "final",
                    "Each run's final latents in the planes (0, 1), (0, 2), (0, 3), one row per run, on one view fitted to every run's points; colours drawn in themselves with a dark outline on grey; the circle is the unit sphere's trace.",
                ),
                ("evolution", "Each run's (0, 1) plane at the same fractions of its training, one row per run."),
                ("checks", "The latent checks at every snapshot, one line per run."),
                (
                    "timelines",
                    "Each run's dopesheet timeline: weights above (data-* columns steer the sampler), lr below; phases grey, actions red dashed.",
                ),
            ],
            &html_table_with(&t, "Latent checks of each final model", 5),
        );
        Ok([
            ("html".to_string(), Artifact::Blob(html.into_bytes())),
            ("final".to_string(), Artifact::Blob(final_png)),
            ("evolution".to_string(), Artifact::Blob(evolution_png)),
            ("checks".to_string(), Artifact::Blob(checks_png)),
            ("timelines".to_string(), Artifact::Blob(timelines_png)),
        ]
        .into_iter()
        .collect())
    }
}
