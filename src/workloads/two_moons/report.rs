//! `report` / `layout: two_moons`: the DDPM baseline's report (seed 002).

use crate::engine::frame::Table;
use crate::engine::params::{Default, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::report::plot::{self, Lines};
use crate::report::{html_table_with, moving_mean, page, plot_err};
use std::fmt::Write as _;

/// `layout: two_moons`: the DDPM baseline's report (seed 002) — target vs
/// generated scatter, generated-only scatter, the training curves, and the
/// distance table with its floor, and the seed's numbers beside this run's.
/// Same page shell and plot helpers as `smeme`.
pub struct TwoMoons;

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct MoonsReportParams {
        loss_window: usize = (ParamType::Int { min: 1, max: 1_000_000 }, Default::Int(100), "steps in the loss curve's moving mean"),
    }
}
static MOONS_INPUTS: &[InputDef] = &[
    InputDef { name: "target", media: Media::Table, required: true, doc: "an independent draw of the target" },
    InputDef { name: "samples", media: Media::Table, required: true, doc: "generated points" },
    InputDef { name: "loss", media: Media::Table, required: true, doc: "train.loss (step, loss, lr, grad_norm)" },
    InputDef { name: "metrics", media: Media::Table, required: true, doc: "validate.metrics" },
];
static MOONS_OUTPUTS: &[OutputDef] = &[
    OutputDef { name: "html", media: Media::Html, doc: "the report page (index.html)" },
    OutputDef { name: "comparison", media: Media::Png, doc: "PNG" },
    OutputDef { name: "generated", media: Media::Png, doc: "PNG" },
    OutputDef { name: "training", media: Media::Png, doc: "PNG" },
];

/// The two-moons report's figures, in page order.
pub const MOONS_FIGURES: &[(&str, &str)] = &[
    ("comparison", "Target (an independent draw) and generated samples, in the standardised coordinates."),
    ("generated", "Generated samples only."),
    ("training", "Training: ε-MSE (moving mean), learning rate, and the gradient norm before clipping."),
];

/// The first two float columns of a table as points.
fn points2(t: &Table) -> Result<Vec<(f64, f64)>, StageError> {
    let cols = t.float_columns();
    if cols.len() < 2 {
        return Err(StageError::Failed(format!("need two float columns to plot, found {}", cols.len())));
    }
    let (x, y) = (t.f64s(&cols[0])?, t.f64s(&cols[1])?);
    Ok(x.into_iter().zip(y).collect())
}

impl Stage for TwoMoons {
    describe!(Kind::Report, "two_moons", version 4, params MoonsReportParams, MOONS_INPUTS, MOONS_OUTPUTS);
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let target = points2(ctx.table("target")?)?;
        let samples = points2(ctx.table("samples")?)?;
        // The frame: the target's extent plus a margin of a quarter of its span.
        let extent = |f: fn(&(f64, f64)) -> f64| {
            let (lo, hi) = target.iter().map(f).fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
            let pad = 0.25 * (hi - lo).max(1e-9);
            (lo - pad, hi + pad)
        };
        let (xr, yr) = (extent(|p| p.0), extent(|p| p.1));
        let labels = ("x (standardised)", "y (standardised)");
        let comparison =
            plot::scatter("Target vs generated", labels, xr, yr, &[("target", &target), ("generated", &samples)])
                .map_err(plot_err)?;
        let generated = plot::scatter("Generated", labels, xr, yr, &[("generated", &samples)]).map_err(plot_err)?;
        (ctx.progress)(0.5);

        let loss = ctx.table("loss")?;
        let steps = loss.i64s("step")?;
        let window = MoonsReportParams::read(ctx.params).loss_window;
        let series = |name: &str| -> Result<Vec<(f64, f64)>, StageError> {
            let v = loss.f64s(name)?;
            Ok(steps.iter().zip(&v).map(|(s, v)| (*s as f64, *v)).collect())
        };
        let training = plot::line_panels(&[
            Lines {
                title: "Loss",
                x_desc: "step",
                x_integer: true,
                y_desc: "MSE(ε̂, ε)",
                series: vec![("moving mean", moving_mean(steps, &loss.f64s("loss")?, window))],
            },
            Lines {
                title: "Learning rate",
                x_desc: "step",
                y_desc: "lr",
                x_integer: true,
                series: vec![("lr", series("lr")?)],
            },
            Lines {
                title: "Gradient norm",
                x_desc: "step",
                x_integer: true,
                y_desc: "‖g‖ (before clipping)",
                series: vec![("moving mean", moving_mean(steps, &loss.f64s("grad_norm")?, window))],
            },
        ])
        .map_err(plot_err)?;
        let metrics = ctx.table("metrics")?;
        let tables = html_table_with(
            metrics,
            "Distances to an independent target draw (value) and between two independent target draws \
             (floor: what a perfect model scores at this sample size). MMD is √max(MMD²ᵤ, 0): a 0 with a note \
             means the unbiased estimate is negative — the estimator cannot tell the sets apart at this n, \
             which is no better than the floor; compare the signed MMD²ᵤ rows.",
            6,
        );
        // (value, floor) of a metric, if the validate stage computed it.
        let (names, values, floors) = (metrics.strs("metric")?, metrics.f64s("value")?, metrics.f64s("floor")?);
        let row = |name: &str| names.iter().position(|m| m == name).map(|i| (values[i], floors[i]));
        let cell = |v: Option<(f64, f64)>, floor: bool| {
            v.map(|(v, f)| if floor { f } else { v })
                .filter(|x| x.is_finite())
                .map_or("—".into(), |x| format!("{x:.6}"))
        };
        let mut intro = format!(
            "<h2>Result</h2>\n<p>Two-moons DDPM baseline (seed document 002): after {} training steps, {} generated points \
             against an independent draw of {} target points score ",
            steps.len(),
            samples.len(),
            target.len(),
        );
        let mut parts = Vec::new();
        if let Some((v, f)) = row("mmd") {
            let signed = row("mmd2_unbiased").map_or(String::new(), |(u, _)| format!(", MMD²ᵤ {u:.2e}"));
            parts.push(format!("MMD {v:.6}{signed} (floor {f:.6})"));
        }
        for (name, label) in [("energy_distance", "energy distance"), ("sliced_w1", "sliced W1")] {
            if let Some((v, f)) = row(name) {
                let times = if f > 0.0 { format!(", {:.1}× its floor", v / f) } else { String::new() };
                parts.push(format!("{label} {v:.6} (floor {f:.6}{times})"));
            }
        }
        intro.push_str(&parts.join("; "));
        intro.push_str(
            ". The floor is what two independent draws of the target score at this n: a perfect model scores about \
             the floor, not 0. One RNG seed is one draw of the training noise; the README gives medians over RNG seeds 1–3 \
             for each pipeline.</p>\n",
        );
        let _ = write!(
            intro,
            "<table><caption>This run beside the baseline's README (seed document 002, lower is better)</caption><thead><tr><th></th>\
             <th>this run</th><th>floor (two target draws)</th><th>the baseline's README: 40k steps, Euler, no EMA, \
             RNG seed 42</th><th>the origin's EMA run: 40k steps, DDPM sampler, RNG seed 42</th></tr></thead><tbody>\
             <tr><td>MMD</td><td>{}</td><td>{}</td><td>0.043403</td><td>0.000000</td></tr>\
             <tr><td>energy distance</td><td>{}</td><td>{}</td><td>0.059351</td><td>0.020453</td></tr>\
             <tr><td>sliced W1</td><td>{}</td><td>{}</td><td>0.053859</td><td>0.016328</td></tr>\
             </tbody></table>\n<p>Compare like with like: this run's steps, EMA and sampler are in the spec below; \
             the README's row is <code>pipelines/two_moons_40k.yaml</code>'s setting, the EMA row \
             <code>pipelines/two_moons_40k_ema.yaml</code>'s.</p>\n",
            cell(row("mmd"), false),
            cell(row("mmd"), true),
            cell(row("energy_distance"), false),
            cell(row("energy_distance"), true),
            cell(row("sliced_w1"), false),
            cell(row("sliced_w1"), true),
        );
        let html = page("Two-moons DDPM report", &intro, MOONS_FIGURES, &tables);
        Ok([
            ("html".to_string(), Artifact::Blob(html.into_bytes())),
            ("comparison".to_string(), Artifact::Blob(comparison)),
            ("generated".to_string(), Artifact::Blob(generated)),
            ("training".to_string(), Artifact::Blob(training)),
        ]
        .into_iter()
        .collect())
    }
}
