//! `report` / `layout: smeme_am`: what the mirror steps of `tune method:
//! smeme_am` did — the exploration metrics after each step k, where each
//! step's valid samples lie in the shape space, validity against entropy
//! along the steps (γ·k on the path), and the Adjoint Matching tracker.

use crate::engine::frame::Table;
use crate::engine::params::{Default, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::report::plot::{self, Lines};
use crate::report::{html_table_with, page, plot_err};
use crate::workloads::triangles::geometry::Validity;

pub struct SmemeAm;

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct AmReportParams {
        bins: usize = (ParamType::Int { min: 4, max: 200 }, Default::Int(25), "bins per axis of the (u, v) histograms over [0, 1]²"),
        eps: f64 = (ParamType::Float { min: 0.0, max: 1.0 }, Default::Float(1e-3), "validity margin"),
    }
}
static INPUTS: &[InputDef] = &[
    InputDef { name: "iterations", media: Media::Table, required: true, doc: "tune.iterations (smeme_am)" },
    InputDef { name: "samples", media: Media::Table, required: true, doc: "tune.samples (smeme_am)" },
    InputDef { name: "tracker", media: Media::Table, required: true, doc: "tune.tracker (smeme_am)" },
    InputDef {
        name: "exploration",
        media: Media::Table,
        required: false,
        doc: "validate.exploration of the tuned model's samples against the pre-trained model's",
    },
];
static OUTPUTS: &[OutputDef] = &[
    OutputDef { name: "html", media: Media::Html, doc: "the report page (index.html)" },
    OutputDef { name: "metrics", media: Media::Png, doc: "PNG" },
    OutputDef { name: "uv_density", media: Media::Png, doc: "PNG" },
    OutputDef { name: "tradeoff", media: Media::Png, doc: "PNG" },
    OutputDef { name: "training", media: Media::Png, doc: "PNG" },
];

/// The figures, in page order: (output name, caption).
pub const FIGURES: &[(&str, &str)] = &[
    (
        "metrics",
        "The exploration metrics after each mirror step k (k = 0: the pre-trained model), each on the valid samples \
         of paired predictor–corrector draws (the same x_T and noise at every k): valid fraction; Kozachenko–Leonenko \
         entropy of the sorted sides (nats) beside its ceiling ln(1/12), the uniform valid wedge; the low-density mass \
         under the pre-trained samples' KDE (0.10 at k = 0 by construction) and the (u, v) coverage and uniformity; \
         the obtuse and right shares and the total variation to uniform triangles' types.",
    ),
    (
        "uv_density",
        "Where each step's valid samples lie in the shape space (u, v) = (a/c, b/c) of the sorted sides: share of \
         the valid samples per bin (one colour scale; white = none). Uniform triangles are uniform on the feasible \
         region u ≤ v ≤ 1, u + v ≥ 1.",
    ),
    (
        "tradeoff",
        "Validity against entropy along the mirror steps: each point a step k (γ·k from the left). Flattening the \
         model's density p^(1−γ) lifts its tails too, inside the valid wedge and outside it.",
    ),
    (
        "training",
        "Adjoint Matching, per round: the regression loss, the step ratio ‖s_fine − s_base‖/‖s_base‖ at (x_0, t_ε) on \
         the round's terminal samples, and their valid fraction (trajectories without corrector, from the prior).",
    ),
];

fn column(t: &Table, k: &[f64], name: &str) -> Result<Vec<(f64, f64)>, StageError> {
    let v = t.f64s(name)?;
    Ok(k.iter().zip(v).map(|(x, y)| (*x, y)).collect())
}

/// The share (%) of each iteration's valid samples per cell of the sorted (u, v) over [0, 1]².
fn uv_density(samples: &Table, bins: usize, eps: f64) -> Result<Vec<(i64, Vec<f64>)>, StageError> {
    let (it, a, b, c) = (samples.i64s("iteration")?, samples.f64s("a")?, samples.f64s("b")?, samples.f64s("c")?);
    let mut out: Vec<(i64, Vec<f64>, f64)> = Vec::new();
    for i in 0..it.len() {
        if out.last().is_none_or(|o| o.0 != it[i]) {
            out.push((it[i], vec![0.0; bins * bins], 0.0));
        }
        if !Validity::check([a[i], b[i], c[i]], eps).valid() {
            continue;
        }
        let mut s = [a[i], b[i], c[i]];
        s.sort_by(f64::total_cmp);
        let cell = |x: f64| ((x.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        let last = out.last_mut().expect("pushed");
        last.1[cell(s[0] / s[2]) * bins + cell(s[1] / s[2])] += 1.0;
        last.2 += 1.0;
    }
    Ok(out.into_iter().map(|(k, mut h, n)| (k, h.iter_mut().map(|v| 100.0 * *v / n.max(1.0)).collect())).collect())
}

impl Stage for SmemeAm {
    describe!(Kind::Report, "smeme_am", version 1, params AmReportParams, INPUTS, OUTPUTS);
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let p = AmReportParams::read(ctx.params);
        let it = ctx.table("iterations")?;
        let k: Vec<f64> = it.i64s("iteration")?.iter().map(|v| *v as f64).collect();
        let ceiling: Vec<(f64, f64)> = k.iter().map(|x| (*x, super::explore::WEDGE_ENTROPY)).collect();
        let metrics_png = plot::line_panels(&[
            Lines {
                title: "Valid fraction",
                x_desc: "mirror step k",
                x_integer: true,
                y_desc: "valid fraction",
                series: vec![("valid", column(it, &k, "valid_fraction")?)],
            },
            Lines {
                title: "kNN entropy (nats)",
                x_desc: "mirror step k",
                x_integer: true,
                y_desc: "nats",
                series: vec![("kNN entropy", column(it, &k, "knn_entropy")?), ("ceiling ln(1/12)", ceiling)],
            },
            Lines {
                title: "Low-density mass and (u, v) cover",
                x_desc: "mirror step k",
                x_integer: true,
                y_desc: "share",
                series: vec![
                    ("low-density mass", column(it, &k, "low_density_mass")?),
                    ("uv coverage", column(it, &k, "uv_coverage")?),
                    ("uv uniformity", column(it, &k, "uv_uniformity")?),
                ],
            },
            Lines {
                title: "Types",
                x_desc: "mirror step k",
                x_integer: true,
                y_desc: "share of valid samples",
                series: vec![
                    ("obtuse", column(it, &k, "obtuse")?),
                    ("right", column(it, &k, "right")?),
                    ("TV to uniform types", column(it, &k, "type_tv_to_uniform")?),
                ],
            },
        ])
        .map_err(plot_err)?;
        (ctx.progress)(0.3);

        let dens = uv_density(ctx.table("samples")?, p.bins, p.eps)?;
        let titles: Vec<String> = dens.iter().map(|(k, _)| format!("k = {k}")).collect();
        let heats: Vec<plot::Heat> = dens
            .iter()
            .zip(&titles)
            .map(|((_, h), t)| plot::Heat { title: t, values: h.clone(), diverging: false })
            .collect();
        let uv_png = plot::heatmaps(("u = a / c", "v = b / c"), (0.0, 1.0), (0.0, 1.0), p.bins, "% per bin", &heats)
            .map_err(plot_err)?;
        (ctx.progress)(0.6);

        let (h, v) = (it.f64s("knn_entropy")?, it.f64s("valid_fraction")?);
        let path: Vec<(f64, f64)> = h.iter().zip(&v).map(|(x, y)| (*x, *y)).collect();
        let tradeoff_png = plot::line_panels(&[Lines {
            title: "Validity against entropy, k = 0 … K",
            x_desc: "kNN entropy of the valid samples (nats)",
            x_integer: false,
            y_desc: "valid fraction",
            series: vec![("mirror steps", path)],
        }])
        .map_err(plot_err)?;

        let tr = ctx.table("tracker")?;
        let step: Vec<f64> = tr.i64s("step")?.iter().map(|v| *v as f64).collect();
        let training_png = plot::line_panels(&[
            Lines {
                title: "AM loss",
                x_desc: "Adam step",
                x_integer: true,
                y_desc: "σ²·‖s_fine − target‖²",
                series: vec![("loss", column(tr, &step, "am_loss")?)],
            },
            Lines {
                title: "Step ratio",
                x_desc: "Adam step",
                x_integer: true,
                y_desc: "‖s_fine − s_base‖ / ‖s_base‖",
                series: vec![("step ratio", column(tr, &step, "step_ratio")?)],
            },
            Lines {
                title: "Trajectories' valid fraction",
                x_desc: "Adam step",
                x_integer: true,
                y_desc: "valid fraction",
                series: vec![("valid", column(tr, &step, "valid_fraction")?)],
            },
        ])
        .map_err(plot_err)?;
        (ctx.progress)(0.9);

        let mut tables = html_table_with(it, "Exploration metrics after each mirror step", 4);
        if ctx.inputs.contains_key("exploration") {
            tables.push_str(&html_table_with(
                ctx.table("exploration")?,
                "The tuned model's samples against the pre-trained model's (validate)",
                4,
            ));
        }
        let intro = "<h2>S-MEME by mirror descent with Adjoint Matching</h2>\n<p>Each mirror step k moves the model \
                     toward p_(k−1)^(1−γ) by Adjoint Matching on its own trajectories, the lean adjoint taken through \
                     the previous iterate; the previous iterate is then replaced. The metrics are those of the \
                     validate stage's exploration table, on paired samples at every k.</p>\n";
        let html = page("S-MEME (Adjoint Matching) report", intro, FIGURES, &tables);
        Ok([
            ("html".to_string(), Artifact::Blob(html.into_bytes())),
            ("metrics".to_string(), Artifact::Blob(metrics_png)),
            ("uv_density".to_string(), Artifact::Blob(uv_png)),
            ("tradeoff".to_string(), Artifact::Blob(tradeoff_png)),
            ("training".to_string(), Artifact::Blob(training_png)),
        ]
        .into_iter()
        .collect())
    }
}
