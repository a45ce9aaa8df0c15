//! `report` / `layout: color`: the colour experiment's page — the dopesheet's
//! timeline as the origin plots it, the loss terms over training, the latent
//! space in its dimension pairs (0, 1), (0, 2), (0, 3) at several steps with
//! every colour drawn in itself, an animation of the (0, 1) plane over
//! training (APNG), the latent checks over time, and the metric table.

use crate::engine::frame::Table;
use crate::engine::params::{Default, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::report::plot::{self, ColoredPanel, ColoredPoint, Lines, TimelineSeries};
use crate::report::{esc, html_table_with, moving_mean, page, plot_err};

pub struct ColorReport;

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct ColorReportParams {
        loss_window: usize = (ParamType::Int { min: 1, max: 100_000 }, Default::Int(100), "moving-mean window of the loss curves (steps)"),
        frames: usize = (ParamType::Int { min: 2, max: 1000 }, Default::Int(100), "at most this many animation frames (evenly spaced snapshots)"),
        frame_ms: usize = (ParamType::Int { min: 10, max: 10_000 }, Default::Int(80), "each frame's duration"),
    }
}
static INPUTS: &[InputDef] = &[
    InputDef { name: "timeline", media: Media::Table, required: true, doc: "generate dataset: dopesheet's timeline" },
    InputDef { name: "keys", media: Media::Table, required: true, doc: "generate dataset: dopesheet's keys" },
    InputDef { name: "loss", media: Media::Table, required: true, doc: "train objective: color_ae's loss" },
    InputDef { name: "latents", media: Media::Table, required: true, doc: "train objective: color_ae's latents" },
    InputDef { name: "metrics", media: Media::Table, required: true, doc: "validate checks: color_latent's metrics" },
    InputDef {
        name: "over_time",
        media: Media::Table,
        required: false,
        doc: "validate checks: color_latent's over_time",
    },
];
static OUTPUTS: &[OutputDef] = &[
    OutputDef { name: "html", media: Media::Html, doc: "the report page (index.html)" },
    OutputDef { name: "timeline", media: Media::Png, doc: "PNG: the dopesheet's timeline" },
    OutputDef { name: "loss", media: Media::Png, doc: "PNG: the loss terms" },
    OutputDef { name: "latents", media: Media::Png, doc: "PNG: latent dimension pairs at four steps" },
    OutputDef { name: "animation", media: Media::Png, doc: "APNG: the (0, 1) plane over training" },
    OutputDef { name: "checks", media: Media::Png, doc: "PNG: the latent checks over time" },
];

const TERMS: [&str; 6] = ["recon", "reg-polar", "reg-separate", "reg-planar", "reg-norm-v", "reg-norm"];

/// One snapshot: its step and the points of each dimension pair.
type Snapshot = (i64, [Vec<ColoredPoint>; 3]);

/// A named line.
type Series = (&'static str, Vec<(f64, f64)>);

/// Every snapshot, in step order.
fn snapshots(lat: &Table) -> Result<Vec<Snapshot>, StageError> {
    let step = lat.i64s("step")?;
    let (r, g, b) = (lat.f64s("r")?, lat.f64s("g")?, lat.f64s("b")?);
    let z: Vec<Vec<f64>> = (0..4).map(|k| lat.f64s(&format!("z{k}"))).collect::<Result<_, _>>()?;
    let mut out: Vec<Snapshot> = Vec::new();
    for i in 0..step.len() {
        if out.last().is_none_or(|l| l.0 != step[i]) {
            out.push((step[i], std::default::Default::default()));
        }
        let rgb = [r[i], g[i], b[i]].map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8);
        let last = &mut out.last_mut().expect("pushed").1;
        for (pair, k) in [1, 2, 3].into_iter().enumerate() {
            last[pair].push((z[0][i], z[k][i], rgb));
        }
    }
    Ok(out)
}

impl Stage for ColorReport {
    describe!(Kind::Report, "color", version 2, params ColorReportParams, INPUTS, OUTPUTS);
    fn input_columns(&self, input: &str) -> &'static [&'static str] {
        match input {
            "timeline" => &["step", "phase"],
            "keys" => &["property", "step", "value"],
            "loss" => &["step"],
            "latents" => &["step", "r", "g", "b", "z0", "z1", "z2", "z3"],
            "metrics" => &["metric", "value"],
            _ => &[],
        }
    }
    // Over 150 lines: figure assembly — each figure's data read and drawn in order, as
    // the page shows them.
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let p = ColorReportParams::read(ctx.params);
        // Timeline: every property column, keyframes from `keys`.
        let tl = ctx.table("timeline")?;
        let steps: Vec<f64> = tl.i64s("step")?.iter().map(|s| *s as f64).collect();
        let keys = ctx.table("keys")?;
        let (kp, ks, kv) = (keys.strs("property")?, keys.i64s("step")?, keys.f64s("value")?);
        let series_of = |name: &str| -> Result<TimelineSeries<'static>, StageError> {
            let v = tl.f64s(name)?;
            let k = (0..kp.len()).filter(|&i| kp[i] == name).map(|i| (ks[i] as f64, kv[i])).collect();
            let name: &'static str = Box::leak(name.to_string().into_boxed_str());
            Ok(TimelineSeries { name, values: steps.iter().copied().zip(v).collect(), keys: k })
        };
        let names: Vec<String> = tl
            .columns
            .iter()
            .map(|c| c.name.clone())
            .filter(|n| !["step", "phase", "action", "lr"].contains(&n.as_str()))
            .collect();
        let props: Vec<TimelineSeries> = names.iter().map(|n| series_of(n)).collect::<Result<_, _>>()?;
        let lr = tl.f64s("lr").ok().map(|_| series_of("lr")).transpose()?;
        let phase = tl.strs("phase")?;
        let phases: Vec<(f64, String)> = (0..phase.len())
            .filter(|&i| !phase[i].is_empty() && (i == 0 || phase[i] != phase[i - 1]))
            .map(|i| (steps[i], phase[i].clone()))
            .collect();
        let timeline_png = plot::timeline(&props, lr.as_ref(), &phases).map_err(plot_err)?;
        (ctx.progress)(0.2);

        // Loss terms, moving means, on a log₁₀ axis.
        let loss = ctx.table("loss")?;
        let lsteps = loss.i64s("step")?;
        let mut series = Vec::new();
        for term in TERMS {
            let v = loss.f64s(term)?;
            let (s, v): (Vec<i64>, Vec<f64>) =
                lsteps.iter().zip(&v).filter(|(_, v)| v.is_finite() && **v > 0.0).map(|(s, v)| (*s, v.log10())).unzip();
            if !v.is_empty() {
                series.push((term, moving_mean(&s, &v, p.loss_window)));
            }
        }
        let loss_png = plot::line_panels(&[Lines {
            title: "Loss terms (moving mean of log₁₀)",
            x_desc: "step",
            y_desc: "log₁₀ term",
            x_integer: true,
            series,
        }])
        .map_err(plot_err)?;
        (ctx.progress)(0.4);

        // Latent scatter at four steps, and the animation.
        let snaps = snapshots(ctx.table("latents")?)?;
        if snaps.is_empty() {
            return Err(StageError::Failed("no latent snapshots".into()));
        }
        let n = snaps.len() - 1;
        let mut picks: Vec<usize> = [0, n / 3, 2 * n / 3, n].to_vec();
        picks.dedup();
        let pairs = [("z0", "z1"), ("z0", "z2"), ("z0", "z3")];
        let mut panels = Vec::new();
        for &i in &picks {
            for (k, (xd, yd)) in pairs.iter().enumerate() {
                panels.push(ColoredPanel {
                    title: format!("step {}: ({xd}, {yd})", snaps[i].0),
                    x_desc: xd,
                    y_desc: yd,
                    points: &snaps[i].1[k],
                });
            }
        }
        let range = (-1.6, 1.6);
        let latents_png = plot::colored_scatter(&panels, 3, range).map_err(plot_err)?;
        let stride = snaps.len().div_ceil(p.frames).max(1);
        let mut frame_ids: Vec<usize> = (0..snaps.len()).step_by(stride).collect();
        if frame_ids.last() != Some(&n) {
            frame_ids.push(n);
        }
        let frames: Vec<ColoredPanel> = frame_ids
            .iter()
            .map(|&i| ColoredPanel {
                title: format!("step {}", snaps[i].0),
                x_desc: "z0",
                y_desc: "z1",
                points: &snaps[i].1[0],
            })
            .collect();
        let animation = plot::colored_animation(&frames, range, p.frame_ms as u16).map_err(plot_err)?;
        (ctx.progress)(0.8);

        // The checks over time.
        let checks_png = match ctx.inputs.get("over_time") {
            Some(_) => {
                let t = ctx.table("over_time")?;
                let s: Vec<f64> = t.i64s("step")?.iter().map(|v| *v as f64).collect();
                let col = |name: &'static str| -> Result<Series, StageError> {
                    Ok((name, s.iter().copied().zip(t.f64s(name)?).collect()))
                };
                plot::line_panels(&[
                    Lines {
                        title: "Norms and plane",
                        x_desc: "step",
                        y_desc: "",
                        x_integer: true,
                        series: vec![col("norm_dev")?, col("vibrant_norm_dev")?, col("off_plane")?],
                    },
                    Lines {
                        title: "Red's angle to e₁ (degrees)",
                        x_desc: "step",
                        y_desc: "degrees",
                        x_integer: true,
                        series: vec![col("red_angle")?],
                    },
                    Lines {
                        title: "Hue order",
                        x_desc: "step",
                        y_desc: "",
                        x_integer: true,
                        series: vec![col("hue_order")?],
                    },
                ])
                .map_err(plot_err)?
            }
            None => plot::line_panels(&[Lines {
                title: "no over_time bound",
                x_desc: "",
                y_desc: "",
                x_integer: false,
                series: Vec::new(),
            }])
            .map_err(plot_err)?,
        };

        let metrics = ctx.table("metrics")?;
        let (mn, mv) = (metrics.strs("metric")?, metrics.f64s("value")?);
        let get = |name: &str| mn.iter().position(|m| m == name).map(|i| mv[i]);
        let mut parts = Vec::new();
        if let Some(v) = get("recon_mse") {
            parts.push(format!("reconstruction MSE {v:.6}"));
        }
        if let Some(v) = get("red_angle") {
            parts.push(format!("red {v:.1}° from e₁"));
        }
        if let Some(v) = get("norm_dev") {
            parts.push(format!("mean |‖z‖ − 1| {v:.3}"));
        }
        if let (Some(o), Some(t)) = (get("hue_order"), get("hue_turns")) {
            parts.push(format!("hue order {o:.2} in {t:.0} turn(s)"));
        }
        let intro = format!(
            "<h2>Result</h2>\n<p>The colour autoencoder (seed document 003, experiment 1.7) after {} steps: {}.</p>\n",
            lsteps.len(),
            esc(&parts.join("; "))
        );
        let html = page(
            "Colour autoencoder",
            &intro,
            &[
                (
                    "timeline",
                    "The dopesheet's timeline: regularizer weights (keyframes circled), learning rate on a log axis below, phases as grey lines.",
                ),
                ("loss", "Each loss term over training (moving mean of its log₁₀)."),
                (
                    "latents",
                    "The evaluation grid's latents, each colour drawn in itself, in the dimension pairs (0, 1), (0, 2), (0, 3) at four steps; the circle is the unit sphere's trace.",
                ),
                ("animation", "The (0, 1) plane over training (animated)."),
                ("checks", "The latent checks at every snapshot."),
            ],
            &html_table_with(metrics, "Latent checks of the final model", 5),
        );
        Ok([
            ("html".to_string(), Artifact::Blob(html.into_bytes())),
            ("timeline".to_string(), Artifact::Blob(timeline_png)),
            ("loss".to_string(), Artifact::Blob(loss_png)),
            ("latents".to_string(), Artifact::Blob(latents_png)),
            ("animation".to_string(), Artifact::Blob(animation)),
            ("checks".to_string(), Artifact::Blob(checks_png)),
        ]
        .into_iter()
        .collect())
    }
}
