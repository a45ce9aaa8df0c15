//! `report` / `layout: idem`: the iDEM report (seed 001) — samples beside the
//! exact reference set, the metric table with its floors, and the estimator
//! study's curves when it is bound.

use crate::engine::frame::Table;
use crate::engine::params::ParamDef;
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::report::plot::{self, Lines};
use crate::report::{esc, html_table_with, page, plot_err};

/// `layout: idem`: the exact reference set and the samples on GMM-40's
/// square (±56, DEM's plotting bounds), each alone and together; the
/// `boltzmann` metric table beside its floors, with a result paragraph; and,
/// with `study` bound, the estimator study: log₁₀ MSE against log₁₀ K at the
/// middle time, and against t at the middle K, one line per form.
pub struct IdemReport;

static PARAMS: &[ParamDef] = &[];
static INPUTS: &[InputDef] = &[
    InputDef { name: "target", media: Media::Table, required: true, doc: "exact reference samples (x, y)" },
    InputDef { name: "samples", media: Media::Table, required: true, doc: "generated samples (x, y)" },
    InputDef { name: "metrics", media: Media::Table, required: true, doc: "validate checks: boltzmann's metrics" },
    InputDef { name: "study", media: Media::Table, required: false, doc: "validate checks: score_estimator's study" },
];
static OUTPUTS: &[OutputDef] = &[
    OutputDef { name: "html", media: Media::Html, doc: "the report page (index.html)" },
    OutputDef { name: "samples", media: Media::Png, doc: "PNG" },
    OutputDef { name: "study", media: Media::Png, doc: "PNG (an empty frame without the study)" },
];

fn points(t: &Table) -> Result<Vec<(f64, f64)>, StageError> {
    Ok(t.f64s("x")?.into_iter().zip(t.f64s("y")?).collect())
}

/// The study's curves: (MSE vs K at the middle t, MSE vs t at the middle K).
fn study_panels(study: &Table) -> Result<Vec<u8>, StageError> {
    let (forms, ks, ts, mse) = (study.strs("form")?, study.i64s("k")?, study.f64s("t")?, study.f64s("mse")?);
    let mid = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.dedup();
        v[v.len() / 2]
    };
    let t_mid = mid(&mut ts.clone());
    let k_mid = mid(&mut ks.iter().map(|&k| k as f64).collect()) as i64;
    let names: std::collections::BTreeSet<&str> = forms.iter().map(String::as_str).collect();
    let curve = |form: &str, keep: &dyn Fn(usize) -> bool, x: &dyn Fn(usize) -> f64| -> Vec<(f64, f64)> {
        let mut pts: Vec<(f64, f64)> = (0..forms.len())
            .filter(|&i| forms[i] == form && keep(i) && mse[i] > 0.0)
            .map(|i| (x(i), mse[i].log10()))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        pts
    };
    let by_k = names.iter().map(|&f| (f, curve(f, &|i| ts[i] == t_mid, &|i| (ks[i] as f64).log10()))).collect();
    let by_t = names.iter().map(|&f| (f, curve(f, &|i| ks[i] == k_mid, &|i| ts[i]))).collect();
    let (title_k, title_t) = (format!("MSE against K at t = {t_mid}"), format!("MSE against t at K = {k_mid}"));
    plot::line_panels(&[
        Lines { title: &title_k, x_desc: "log₁₀ K", y_desc: "log₁₀ MSE", x_integer: false, series: by_k },
        Lines { title: &title_t, x_desc: "t", y_desc: "log₁₀ MSE", x_integer: false, series: by_t },
    ])
    .map_err(plot_err)
}

impl Stage for IdemReport {
    describe!(Kind::Report, "idem", version 1, PARAMS, INPUTS, OUTPUTS);
    fn input_columns(&self, input: &str) -> &'static [&'static str] {
        match input {
            "target" | "samples" => &["x", "y"],
            "metrics" => &["metric", "value", "floor"],
            _ => &[],
        }
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let (target, samples) = (points(ctx.table("target")?)?, points(ctx.table("samples")?)?);
        let square = (-56.0, 56.0);
        let labels = ("x", "y");
        let figure = plot::scatter(
            "Exact reference and samples",
            labels,
            square,
            square,
            &[("reference", &target), ("samples", &samples)],
        )
        .map_err(plot_err)?;
        (ctx.progress)(0.5);
        let study = match ctx.inputs.get("study") {
            Some(_) => study_panels(ctx.table("study")?)?,
            None => plot::line_panels(&[Lines {
                title: "no estimator study bound",
                x_desc: "",
                y_desc: "",
                x_integer: false,
                series: Vec::new(),
            }])
            .map_err(plot_err)?,
        };
        let metrics = ctx.table("metrics")?;
        let (names, values, floors) = (metrics.strs("metric")?, metrics.f64s("value")?, metrics.f64s("floor")?);
        let row = |name: &str| names.iter().position(|m| m == name).map(|i| (values[i], floors[i]));
        let mut parts = Vec::new();
        for (name, label) in [("x_w2", "x-W2"), ("energy_w2", "energy-W2"), ("tv", "TV")] {
            if let Some((v, f)) = row(name) {
                parts.push(format!("{label} {v:.3} (floor {f:.3}, {:.2}× it)", v / f));
            }
        }
        if let Some((v, f)) = row("modes_5") {
            parts.push(format!("{v:.0} of 40 modes with at least 5 samples (floor {f:.0})"));
        }
        let intro = format!(
            "<h2>Result</h2>\n<p>GMM-40 (DEM's 40-mode mixture): {} samples against {} exact reference points: {}. \
             The floor is the same metric between two independent exact sets of this size: what a perfect \
             sampler scores.</p>\n",
            samples.len(),
            target.len(),
            esc(&parts.join("; "))
        );
        let html = page(
            "iDEM on GMM-40",
            &intro,
            &[
                ("samples", "Exact reference set (blue) and samples (orange) on DEM's plotting square."),
                ("study", "The estimator study: log₁₀ MSE against the exact noised score, by form."),
            ],
            &html_table_with(metrics, "Samples against the reference (value) and two exact sets (floor)", 4),
        );
        Ok([
            ("html".to_string(), Artifact::Blob(html.into_bytes())),
            ("samples".to_string(), Artifact::Blob(figure)),
            ("study".to_string(), Artifact::Blob(study)),
        ]
        .into_iter()
        .collect())
    }
}
