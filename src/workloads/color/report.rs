//! `report` / `layout: color`: the colour experiment's page — the dopesheet's
//! timeline as the origin plots it (lr on a linear axis, actions marked), the
//! total loss and its terms over training, about ten views of the latent
//! (0, 1) plane over training and the final latents in the pairs (0, 1),
//! (0, 2), (0, 3) — every colour drawn in itself with a dark outline on grey,
//! the view fitted to the points — an animation of the three planes whose
//! frames follow the latents' movement, with a cursor on the schedule (APNG),
//! the latent checks over time, and the metric table.

use crate::engine::frame::Table;
use crate::engine::params::{Default, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::report::plot::{self, AnimationFrame, ColoredPanel, ColoredPoint, Lines, TimelineParts, TimelineSeries};
use crate::report::{esc, html_table_with, moving_mean, page, plot_err};

pub struct ColorReport;

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct ColorReportParams {
        loss_window: usize = (ParamType::Int { min: 1, max: 100_000 }, Default::Int(100), "moving-mean window of the loss curves (steps)"),
        frames: usize = (ParamType::Int { min: 2, max: 1000 }, Default::Int(60), "at most this many animation frames (spaced by how far the latents move)"),
        frame_ms: usize = (ParamType::Int { min: 10, max: 10_000 }, Default::Int(80), "each frame's duration"),
        thumbnails: usize = (ParamType::Int { min: 1, max: 100 }, Default::Int(10), "small (z0, z1) views over training (the seed: about 10)"),
        lr_axis: String = (ParamType::Str { choices: &["linear", "log"] }, Default::Str("linear"), "the timeline's learning-rate axis (the origin's plot_timeline: linear)"),
        view: Option<f64> = (ParamType::Float { min: 0.01, max: 1000.0 }, Default::Optional, "half-width of the latent views (default: fitted to the points); points outside are counted in each title"),
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
    OutputDef { name: "latents", media: Media::Png, doc: "PNG: the (0, 1) plane at `thumbnails` steps" },
    OutputDef { name: "final", media: Media::Png, doc: "PNG: the final latents in the planes (0, 1), (0, 2), (0, 3)" },
    OutputDef {
        name: "animation",
        media: Media::Png,
        doc: "APNG: the three latent planes over training, a cursor on the schedule",
    },
    OutputDef { name: "checks", media: Media::Png, doc: "PNG: the latent checks over time" },
];

/// One snapshot: its step and the points of each dimension pair.
pub(crate) type Snapshot = (i64, [Vec<ColoredPoint>; 3]);

/// A named line.
type Series = (&'static str, Vec<(f64, f64)>);

/// At most `frames` snapshot indices, the first and last included, spaced
/// evenly in how far the latents have moved (the mean distance each colour
/// moved between snapshots, summed): dense where the latent space forms.
fn frames_by_movement(snaps: &[Snapshot], frames: usize) -> Vec<usize> {
    let n = snaps.len();
    let mut travelled = vec![0.0f64; n];
    for i in 1..n {
        let (a, b) = (&snaps[i - 1].1[0], &snaps[i].1[0]);
        let m = a.iter().zip(b).map(|(p, q)| ((p.0 - q.0).powi(2) + (p.1 - q.1).powi(2)).sqrt()).sum::<f64>()
            / a.len().max(1) as f64;
        travelled[i] = travelled[i - 1] + if m.is_finite() { m } else { 0.0 };
    }
    let total = travelled[n - 1];
    let want = frames.max(2);
    let mut ids: Vec<usize> = if total > 0.0 {
        (0..want).map(|k| travelled.partition_point(|t| *t < total * k as f64 / (want - 1) as f64).min(n - 1)).collect()
    } else {
        (0..want).map(|k| k * (n - 1) / (want - 1)).collect()
    };
    ids.push(n - 1);
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Every snapshot, in step order.
pub(crate) fn snapshots(lat: &Table) -> Result<Vec<Snapshot>, StageError> {
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

/// The dopesheet's timeline figure in its parts: every property column
/// (keyframes from `keys` circled), the learning rate, phases and actions.
pub fn timeline_parts(tl: &Table, keys: Option<&Table>, caption: &str) -> Result<TimelineParts<'static>, StageError> {
    let steps: Vec<f64> = tl.i64s("step")?.iter().map(|s| *s as f64).collect();
    let (kp, ks, kv) = match keys {
        Some(k) => (k.strs("property")?.to_vec(), k.i64s("step")?.to_vec(), k.f64s("value")?),
        None => (Vec::new(), Vec::new(), Vec::new()),
    };
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
        .filter(|n| n != "lr" && !super::timeline::NOT_PROPERTIES.contains(&n.as_str()))
        .collect();
    let props: Vec<TimelineSeries> = names.iter().map(|n| series_of(n)).collect::<Result<_, _>>()?;
    let lr = tl.f64s("lr").ok().map(|_| series_of("lr")).transpose()?;
    let phase = tl.strs("phase")?;
    // Each phase's start (a repeated name is a new phase); from the name's
    // changes for a timeline without the flags.
    let starts: Vec<bool> = match tl.bools("phase_start") {
        Ok(b) => b.to_vec(),
        Err(_) => (0..phase.len()).map(|i| i == 0 || phase[i] != phase[i - 1]).collect(),
    };
    // A phase that repeats the previous one's name gets its line but no label.
    let mut phases: Vec<(f64, String)> = Vec::new();
    let mut last: Option<&str> = None;
    for i in (0..phase.len()).filter(|&i| !phase[i].is_empty() && starts[i]) {
        let label = if last == Some(phase[i].as_str()) { String::new() } else { phase[i].clone() };
        phases.push((steps[i], label));
        last = Some(&phase[i]);
    }
    let actions: Vec<(f64, String)> = match tl.strs("action") {
        Ok(a) => (0..a.len()).filter(|&i| !a[i].is_empty()).map(|i| (steps[i], a[i].clone())).collect(),
        Err(_) => Vec::new(),
    };
    Ok(TimelineParts { caption: caption.to_string(), props, lr, phases, actions })
}

/// The latent planes every figure shows: (z0, z1), (z0, z2), (z0, z3).
const PLANES: [(&str, &str); 3] = [("z0", "z1"), ("z0", "z2"), ("z0", "z3")];

/// A snapshot's three planes as panels, each titled `title(x, y)`.
pub(crate) fn plane_panels(
    snap: &Snapshot,
    radius: i32,
    title: impl Fn(&str, &str) -> String,
) -> Vec<ColoredPanel<'_>> {
    PLANES
        .iter()
        .enumerate()
        .map(|(j, (xd, yd))| ColoredPanel { title: title(xd, yd), x_desc: xd, y_desc: yd, points: &snap.1[j], radius })
        .collect()
}

impl Stage for ColorReport {
    describe!(Kind::Report, "color", version 4, params ColorReportParams, INPUTS, OUTPUTS);
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
        let t = timeline_parts(ctx.table("timeline")?, Some(ctx.table("keys")?), "Dopesheet timeline")?;
        let timeline_png =
            plot::timeline(&t.props, t.lr.as_ref(), (&t.phases, &t.actions), p.lr_axis == "log").map_err(plot_err)?;
        (ctx.progress)(0.2);

        // Loss terms, moving means, on a log₁₀ axis.
        let loss = ctx.table("loss")?;
        let lsteps = loss.i64s("step")?;
        let mut series = Vec::new();
        // The total, the reconstruction and each regularizer the training recorded.
        for c in loss.columns.iter().filter(|c| c.name != "step" && c.name != "lr") {
            let term: &str = &c.name;
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

        // Latent thumbnails over training, the final view, and the animation.
        let snaps = snapshots(ctx.table("latents")?)?;
        if snaps.is_empty() {
            return Err(StageError::Failed("no latent snapshots".into()));
        }
        let n = snaps.len() - 1;
        let k = p.thumbnails.min(snaps.len());
        let mut picks: Vec<usize> = (0..k).map(|i| if k > 1 { i * n / (k - 1) } else { n }).collect();
        picks.dedup();
        let view = |pts: &[&[ColoredPoint]]| p.view.map_or_else(|| plot::fitted_view(pts), |h| (-h, h));
        let thumbs: Vec<ColoredPanel> = picks
            .iter()
            .map(|&i| ColoredPanel {
                title: format!("step {}", snaps[i].0),
                x_desc: "z0",
                y_desc: "z1",
                points: &snaps[i].1[0],
                radius: 2,
            })
            .collect();
        let thumb_view = view(&thumbs.iter().map(|t| t.points).collect::<Vec<_>>());
        let latents_png = plot::colored_scatter(&thumbs, 5, 250, thumb_view).map_err(plot_err)?;
        let last = plane_panels(&snaps[n], 4, |xd, yd| format!("step {}: ({xd}, {yd})", snaps[n].0));
        let final_view = view(&last.iter().map(|t| t.points).collect::<Vec<_>>());
        let final_png = plot::colored_scatter(&last, 3, 440, final_view).map_err(plot_err)?;
        let frame_ids = frames_by_movement(&snaps, p.frames);
        let frames: Vec<AnimationFrame> = frame_ids
            .iter()
            .map(|&i| AnimationFrame {
                panels: plane_panels(&snaps[i], 3, |xd, yd| format!("step {}: ({xd}, {yd})", snaps[i].0)),
                step: snaps[i].0 as f64,
            })
            .collect();
        let anim_view = view(&snaps.iter().flat_map(|s| s.1.iter().map(|v| v.as_slice())).collect::<Vec<_>>());
        // The schedule's weights under the animation, thinned to ~500 points a line.
        let strip: Vec<(&str, Vec<(f64, f64)>)> = t
            .props
            .iter()
            .map(|prop| {
                let every = prop.values.len().div_ceil(500).max(1);
                (prop.name, prop.values.iter().step_by(every).copied().collect())
            })
            .collect();
        let animation = plot::colored_animation(&frames, anim_view, &strip, p.frame_ms as u16).map_err(plot_err)?;
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
            "<h2>Result</h2>\n<p>The colour autoencoder (seed document 003) after {} steps: {}.</p>\n",
            lsteps.len(),
            esc(&parts.join("; "))
        );
        let html = page(
            "Colour autoencoder",
            &intro,
            &[
                (
                    "timeline",
                    "The dopesheet's timeline: regularizer weights (keyframes circled), the learning rate below (linear axis, as the origin; `lr_axis: log` for log₁₀), phases as grey lines, actions as red dashed lines.",
                ),
                ("loss", "The total loss (weighted) and each term (unweighted) over training, moving means of log₁₀."),
                (
                    "latents",
                    "The evaluation grid's latents in the (0, 1) plane over training, each colour drawn in itself with a dark outline on grey; the circle is the unit sphere's trace. The view is fitted to the points (a title counts any outside it).",
                ),
                ("final", "The final latents in the dimension pairs (0, 1), (0, 2), (0, 3)."),
                (
                    "animation",
                    "The latents in the planes (0, 1), (0, 2), (0, 3) over training (animated; frames spaced by how far the latents move, so dense early), with a cursor on the schedule's weights below.",
                ),
                ("checks", "The latent checks at every snapshot."),
            ],
            &html_table_with(metrics, "Latent checks of the final model", 5),
        );
        Ok([
            ("html".to_string(), Artifact::Blob(html.into_bytes())),
            ("timeline".to_string(), Artifact::Blob(timeline_png)),
            ("loss".to_string(), Artifact::Blob(loss_png)),
            ("latents".to_string(), Artifact::Blob(latents_png)),
            ("final".to_string(), Artifact::Blob(final_png)),
            ("animation".to_string(), Artifact::Blob(animation)),
            ("checks".to_string(), Artifact::Blob(checks_png)),
        ]
        .into_iter()
        .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames follow the movement: latents that move in the first tenth of
    /// training and then stand still get most frames there.
    #[test]
    fn animation_frames_are_dense_where_the_latents_move() {
        let snap = |step: i64, x: f64| -> Snapshot {
            let pts = vec![(x, 0.0, [0u8; 3]); 4];
            (step, [pts.clone(), pts.clone(), pts])
        };
        // 101 snapshots; the points move by 1 a snapshot for the first 10, then stop.
        let snaps: Vec<Snapshot> = (0..=100).map(|i| snap(i * 100, (i.min(10)) as f64)).collect();
        let ids = frames_by_movement(&snaps, 12);
        assert_eq!((ids[0], *ids.last().unwrap()), (0, 100), "{ids:?}");
        let early = ids.iter().filter(|&&i| i <= 10).count();
        assert!(early >= 10, "{ids:?}");
        // Standing still throughout: evenly spaced.
        let still: Vec<Snapshot> = (0..=100).map(|i| snap(i, 0.0)).collect();
        assert_eq!(frames_by_movement(&still, 5), [0, 25, 50, 75, 100]);
    }
}
