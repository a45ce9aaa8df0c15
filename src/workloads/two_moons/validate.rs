//! `validate` / `checks: distribution` ([`Distribution`]): how far samples are from
//! an independent draw of the target — MMD, energy distance, sliced W1 — with the
//! floor between two independent draws (seed 002).

use crate::engine::frame::{ColumnData, Table};
use crate::engine::params::{Default, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// `checks: distribution`: how far samples are from the target distribution,
/// by the seed 002 metrics as its origin computes them
/// ([`crate::numerics::metrics::distance`]): MMD (five-bandwidth RBF around the median
/// heuristic `γ₀ = 2/median d²`, unbiased, square root; the signed `MMD²ᵤ` and
/// the biased `√MMD²_b` are reported beside it), energy distance (square root)
/// and sliced Wasserstein-1 over `directions` random directions (drawn from the
/// stage seed; the same directions serve the floor). `mmd_wide` (not the
/// origin's: `γ₀ = 1/(2·median d²)`) is an extra metric under its own name.
///
/// **Below resolution.** When `MMD²ᵤ < 0` the reported `√max(MMD²ᵤ, 0)` is 0, which
/// reads as a perfect score but only says that the estimator cannot tell the
/// sets apart at this `n`; the `note` column then says so, with the signed value,
/// and the floor row gives what two draws of the target itself score. `target` is an independent draw of the data distribution, of the
/// same size as the samples as a rule; with `floor` bound to a second independent
/// draw, the same metrics between the two draws are reported beside them — the
/// value a perfect model would get at this sample size. Coordinates are the
/// samples' float columns, looked up by name in the target tables.
pub struct Distribution;

const METRICS: &[&str] = &["mmd", "mmd_wide", "energy_distance", "sliced_w1"];
const DEFAULT_METRICS: &[&str] = &["mmd", "energy_distance", "sliced_w1"];

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct DistributionParams {
        metrics: Vec<String> = (ParamType::StrList { choices: METRICS }, Default::StrList(DEFAULT_METRICS), "which distances to compute"),
        directions: usize = (ParamType::Int { min: 1, max: 1_000_000 }, Default::Int(256), "random directions L of the sliced W1"),
    }
}
static DIST_INPUTS: &[InputDef] = &[
    InputDef { name: "samples", media: Media::Table, required: true, doc: "generated points" },
    InputDef { name: "target", media: Media::Table, required: true, doc: "an independent draw of the target" },
    InputDef { name: "floor", media: Media::Table, required: false, doc: "a second independent draw (the floor)" },
];
static DIST_OUTPUTS: &[OutputDef] = &[OutputDef {
    name: "metrics",
    media: Media::Table,
    doc: "metric, value (samples vs target), floor (target vs floor draw), note",
}];

impl Stage for Distribution {
    describe!(Kind::Validate, "distribution", version 2, params DistributionParams, DIST_INPUTS, DIST_OUTPUTS);
    fn metrics(&self) -> &'static [(&'static str, &'static str)] {
        &[("metrics", "value")]
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        use crate::numerics::metrics::distance::{
            Mmd2, Points, directions, energy_distance, mmd2, mmd2_wide, sliced_w1,
        };
        let p = &DistributionParams::read(ctx.params);
        let samples = ctx.table("samples")?;
        let cols = samples.float_columns();
        if cols.is_empty() {
            return Err(StageError::Failed("`samples` has no float columns".into()));
        }
        let dim = cols.len();
        let load = |name: &str| -> Result<Option<Vec<f64>>, StageError> {
            match ctx.inputs.get(name) {
                None => Ok(None),
                Some(_) => Ok(Some(ctx.table(name)?.rows_f64(&cols)?)),
            }
        };
        let s = samples.rows_f64(&cols)?;
        if let Some(bad) = s.iter().position(|v| !v.is_finite()) {
            return Err(StageError::Failed(format!("sample {} is not finite; metrics need finite points", bad / dim)));
        }
        let target = load("target")?.expect("required input");
        let floor = load("floor")?;
        let dirs = directions(p.directions, dim, &mut crate::numerics::rng::stream(ctx.seed, "directions"));
        let wanted = &p.metrics;
        // Rows (name, value) of one metric between two sets. With MMD, the signed
        // estimate (√max(·, 0) reads 0 whenever MMD²ᵤ < 0) and the biased √MMD²_b
        // stand beside it.
        let mmd_rows = |name: &str, m2: Mmd2| -> Vec<(String, f64)> {
            vec![
                (name.into(), m2.mmd()),
                (format!("{name}2_unbiased"), m2.unbiased),
                (format!("{name}_biased"), m2.biased.sqrt()),
            ]
        };
        let metric = |name: &str, a: &[f64], b: &[f64]| -> Vec<(String, f64)> {
            let (x, y) = (Points::new(a, dim), Points::new(b, dim));
            match name {
                "mmd" => mmd_rows(name, mmd2(x, y)),
                "mmd_wide" => mmd_rows(name, mmd2_wide(x, y)),
                "energy_distance" => vec![(name.into(), energy_distance(x, y))],
                _ => vec![(name.into(), sliced_w1(x, y, &dirs))],
            }
        };
        let n = s.len() / dim;
        let (mut names, mut values, mut floors, mut notes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, name) in wanted.iter().enumerate() {
            let rows = metric(name, &s, &target);
            let floor_rows = floor.as_ref().map(|f| metric(name, &target, f));
            for (k, (row, value)) in rows.iter().enumerate() {
                let floor_value = floor_rows.as_ref().map_or(f64::NAN, |f| f[k].1);
                // The clamped MMD row carries the resolution note.
                let note = match rows.get(k + 1) {
                    Some((signed, v)) if signed == &format!("{row}2_unbiased") && *v < 0.0 => format!(
                        "below resolution at n = {n}: MMD²ᵤ = {v:.3e} < 0{}",
                        floor_rows.as_ref().map_or(String::new(), |f| format!(" (floor: MMD²ᵤ = {:.3e})", f[k + 1].1))
                    ),
                    _ => String::new(),
                };
                names.push(row.clone());
                values.push(*value);
                floors.push(floor_value);
                notes.push(note);
            }
            (ctx.progress)((i + 1) as f64 / wanted.len() as f64);
        }
        let table = Table::new()
            .with("metric", ColumnData::Str(names))
            .with("value", ColumnData::F64(values))
            .with("floor", ColumnData::F64(floors))
            .with("note", ColumnData::Str(notes));
        Ok([("metrics".to_string(), Artifact::Table(table))].into_iter().collect())
    }
    fn summary(&self, outputs: &BTreeMap<String, Arc<Artifact>>) -> Option<String> {
        let Artifact::Table(t) = outputs.get("metrics")?.as_ref() else {
            return None;
        };
        let (m, v, f) = (t.strs("metric").ok()?, t.f64s("value").ok()?, t.f64s("floor").ok()?);
        let notes = t.strs("note").ok()?;
        let mut text = String::from("metric            samples vs target   floor (target vs target)");
        for i in 0..m.len() {
            text.push_str(&format!("\n  {:<16} {:>11.6}         {:>11.6}", m[i], v[i], f[i]));
            if !notes[i].is_empty() {
                text.push_str(&format!("   {}", notes[i]));
            }
        }
        Some(text)
    }
}
