//! `validate` stages: check samples.
//!
//! `checks: triangle` is the seed's `triangle_validity_numpy(x, eps=1e-3)`: every
//! side within `[−eps, 1 + eps]` and the sorted sides satisfy `c ≤ a + b − eps`.
//! It reports the valid fraction, the count of each rejection reason (a sample can
//! have several), margin statistics (`a + b − c` of the valid samples), and the
//! side/angle type distribution of the valid samples (the label stage's
//! classification, reused). With a `reference` (the pre-trained model's
//! samples), the `exploration` table compares the two: the seed's type masses
//! and (u, v) entropy, and the metrics of [`super::explore`] (kNN entropy,
//! low-density mass and surprise under the reference's KDE, (u, v) coverage
//! and uniformity, distance to the uniform-triangle type shares).

use super::label::{classify_all, format_counts, type_counts, type_fractions};
use crate::engine::frame::{ColumnData, Table};
use crate::engine::params::{Default, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::workloads::triangles::geometry::{AngleType, SideType, Validity};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct TriangleChecks;

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct TriangleChecksParams {
        bins: usize = (ParamType::Int { min: 1, max: 10_000 }, Default::Int(50), "bins per axis of the (u, v) = (a/c, b/c) histogram"),
        uv_max: f64 = (ParamType::Float { min: 1e-6, max: 1e6 }, Default::Float(2.0), "the histogram covers [0, uv_max)²"),
        eps: f64 = (ParamType::Float { min: 0.0, max: 1.0 }, Default::Float(1e-3), "range slack and triangle-inequality margin"),
        tol: f64 = (ParamType::Float { min: 0.0, max: 1.0 }, Default::Float(0.01), "type classification tolerance"),
    }
}
static INPUTS: &[InputDef] = &[
    InputDef { name: "samples", media: Media::Table, required: true, doc: "a table with columns a, b, c" },
    InputDef {
        name: "reference",
        media: Media::Table,
        required: false,
        doc: "samples to compare with (e.g. the pre-trained model's, drawn from the same x_T)",
    },
];
static OUTPUTS: &[OutputDef] = &[
    OutputDef { name: "summary", media: Media::Table, doc: "metric, value" },
    OutputDef {
        name: "flags",
        media: Media::Table,
        doc: "per sample: a, b, c, valid, negative, over_one, inequality_ok, margin",
    },
    OutputDef { name: "types", media: Media::Table, doc: "type distribution of the valid samples" },
    OutputDef {
        name: "exploration",
        media: Media::Table,
        doc: "metric, reference, samples, change: validity, type masses, (u, v) entropy; with a reference, kNN entropy, low-density mass, surprise, (u, v) coverage",
    },
];

/// Validity of every sample.
pub fn check_all(a: &[f64], b: &[f64], c: &[f64], eps: f64) -> Vec<Validity> {
    (0..a.len()).map(|i| Validity::check([a[i], b[i], c[i]], eps)).collect()
}

/// The summary rows (metric, value) of a set of validity checks.
pub fn summarize(v: &[Validity]) -> (Vec<String>, Vec<f64>) {
    let n = v.len() as f64;
    let count = |f: &dyn Fn(&Validity) -> bool| v.iter().filter(|x| f(x)).count() as f64;
    let valid = count(&|x| x.valid());
    let margins: Vec<f64> = v.iter().filter(|x| x.valid()).map(|x| x.margin).collect();
    let mean_margin = if margins.is_empty() { f64::NAN } else { margins.iter().sum::<f64>() / margins.len() as f64 };
    let min_margin = margins.iter().copied().fold(f64::NAN, f64::min);
    let rows = [
        ("n", n),
        ("valid", valid),
        ("valid_fraction", valid / n.max(1.0)),
        ("invalid", n - valid),
        ("negative", count(&|x| x.negative)),
        ("over_one", count(&|x| x.over_one)),
        ("triangle_violations", count(&|x| !x.inequality_ok)),
        ("non_finite", count(&|x| !x.finite)),
        ("mean_margin", mean_margin),
        ("min_margin", min_margin),
    ];
    (rows.iter().map(|r| r.0.to_string()).collect(), rows.iter().map(|r| r.1).collect())
}

impl Stage for TriangleChecks {
    describe!(Kind::Validate, "triangle", version 2, params TriangleChecksParams, INPUTS, OUTPUTS);
    fn metrics(&self) -> &'static [(&'static str, &'static str)] {
        // The validity summary; with a reference, the exploration metrics of
        // these samples (rare-type mass, (u, v) entropy, …).
        &[("summary", "value"), ("exploration", "samples")]
    }
    fn input_columns(&self, _input: &str) -> &'static [&'static str] {
        &["a", "b", "c"]
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let t = ctx.table("samples")?;
        let (a, b, c) = (t.f64s("a")?, t.f64s("b")?, t.f64s("c")?);
        let p = &TriangleChecksParams::read(ctx.params);
        let mine = ValidSet::new(&a, &b, &c, p);
        let checks = &mine.checks;
        let (metric, value) = summarize(checks);
        let flags = Table::new()
            .with("a", ColumnData::F64(a.clone()))
            .with("b", ColumnData::F64(b.clone()))
            .with("c", ColumnData::F64(c.clone()))
            .with("valid", ColumnData::Bool(checks.iter().map(|x| x.valid()).collect()))
            .with("negative", ColumnData::Bool(checks.iter().map(|x| x.negative).collect()))
            .with("over_one", ColumnData::Bool(checks.iter().map(|x| x.over_one).collect()))
            .with("inequality_ok", ColumnData::Bool(checks.iter().map(|x| x.inequality_ok).collect()))
            .with("margin", ColumnData::F64(checks.iter().map(|x| x.margin).collect()));
        let summary = Table::new().with("metric", ColumnData::Str(metric)).with("value", ColumnData::F64(value));
        let types = type_counts(&mine.sides, &mine.angles);
        let theirs = match ctx.inputs.get("reference") {
            Some(_) => {
                let r = ctx.table("reference")?;
                Some(ValidSet::new(&r.f64s("a")?, &r.f64s("b")?, &r.f64s("c")?, p))
            }
            None => None,
        };
        let rows = exploration_rows(&mine, theirs.as_ref(), p);
        let col = |f: fn(&(&str, f64, f64)) -> f64| ColumnData::F64(rows.iter().map(f).collect());
        let exploration = Table::new()
            .with("metric", ColumnData::Str(rows.iter().map(|m| m.0.to_string()).collect()))
            .with("reference", col(|m| m.1))
            .with("samples", col(|m| m.2))
            .with("change", col(|m| m.2 - m.1));
        Ok([
            ("exploration".to_string(), Artifact::Table(exploration)),
            ("summary".to_string(), Artifact::Table(summary)),
            ("flags".to_string(), Artifact::Table(flags)),
            ("types".to_string(), Artifact::Table(types)),
        ]
        .into_iter()
        .collect())
    }
    fn summary(&self, outputs: &BTreeMap<String, Arc<Artifact>>) -> Option<String> {
        let Artifact::Table(s) = outputs.get("summary")?.as_ref() else {
            return None;
        };
        let (m, v) = (s.strs("metric").ok()?, s.f64s("value").ok()?);
        let get = |k: &str| m.iter().position(|x| x == k).map(|i| v[i]).unwrap_or(f64::NAN);
        let n = get("n").max(1.0);
        let pct = |x: f64| 100.0 * x / n;
        let mut text = format!(
            "Total: {}\nValid: {} ({:.2}%)\nInvalid: {} ({:.2}%)\nRejection reason counts:\n  Negative <0: {} ({:.2}%)\n  >1: {} ({:.2}%)\n  Triangle inequality fail: {} ({:.2}%)\n  Not finite (diverged): {} ({:.2}%)\nMargin of valid samples: mean {:.4}, min {:.4}",
            get("n"),
            get("valid"),
            pct(get("valid")),
            get("invalid"),
            pct(get("invalid")),
            get("negative"),
            pct(get("negative")),
            get("over_one"),
            pct(get("over_one")),
            get("triangle_violations"),
            pct(get("triangle_violations")),
            get("non_finite"),
            pct(get("non_finite")),
            get("mean_margin"),
            get("min_margin"),
        );
        if let Some(Artifact::Table(types)) = outputs.get("types").map(|a| a.as_ref())
            && let Some(line) = format_counts(types)
        {
            text.push_str(&format!("\nTypes of valid samples: {line}"));
        }
        if let Some(Artifact::Table(e)) = outputs.get("exploration").map(|a| a.as_ref())
            && let (Ok(m), Ok(r), Ok(v), Ok(d)) =
                (e.strs("metric"), e.f64s("reference"), e.f64s("samples"), e.f64s("change"))
            && r.iter().any(|x| !x.is_nan())
        {
            text.push_str("\nExploration (reference → samples, change):");
            for i in 0..m.len() {
                text.push_str(&format!("\n  {:<22} {:>8.4} → {:>8.4}  {:+.4}", m[i], r[i], v[i], d[i]));
            }
        }
        Some(text)
    }
}

/// The `exploration` table's rows (metric, the reference's value, the
/// samples' value): [`exploration`] of both sets (the reference's NaN
/// without one), then, with a reference, [`super::explore::exploration_metrics`].
pub fn exploration_rows(
    mine: &ValidSet,
    theirs: Option<&ValidSet>,
    p: &TriangleChecksParams,
) -> Vec<(&'static str, f64, f64)> {
    let mut rows: Vec<(&str, f64, f64)> = exploration(mine, p).into_iter().map(|(m, v)| (m, f64::NAN, v)).collect();
    if let Some(theirs) = theirs {
        for (row, (_, value)) in rows.iter_mut().zip(exploration(theirs, p)) {
            row.1 = value;
        }
        rows.extend(super::explore::exploration_metrics(mine, theirs));
    }
    rows
}

/// A sample set's validity checks and the types of its valid samples.
pub struct ValidSet {
    pub checks: Vec<Validity>,
    /// (a, b, c) of the valid samples.
    pub valid: [Vec<f64>; 3],
    pub sides: Vec<SideType>,
    pub angles: Vec<AngleType>,
}

impl ValidSet {
    pub fn new(a: &[f64], b: &[f64], c: &[f64], p: &TriangleChecksParams) -> ValidSet {
        let checks = check_all(a, b, c, p.eps);
        let keep: Vec<usize> = (0..a.len()).filter(|i| checks[*i].valid()).collect();
        let pick = |v: &[f64]| keep.iter().map(|i| v[*i]).collect::<Vec<f64>>();
        let valid = [pick(a), pick(b), pick(c)];
        let (sides, angles) = classify_all(&valid[0], &valid[1], &valid[2], p.tol);
        ValidSet { checks, valid, sides, angles }
    }
}

/// Exploration metrics of one sample set: validity, the type distribution of its
/// valid samples, the mass of the rare types (a valid triangle that is isosceles,
/// equilateral or right — counted once), and the entropy and occupied-bin fraction
/// of the seed's shape map `(u, v) = (a/c, b/c)` over the valid samples.
pub fn exploration(set: &ValidSet, p: &TriangleChecksParams) -> Vec<(&'static str, f64)> {
    let [va, vb, vc] = &set.valid;
    let n_valid = va.len();
    let rare =
        (0..n_valid).filter(|i| set.sides[*i] != SideType::Scalene || set.angles[*i] == AngleType::Right).count();
    let u: Vec<f64> = va.iter().zip(vc).map(|(a, c)| a / c).collect();
    let v: Vec<f64> = vb.iter().zip(vc).map(|(b, c)| b / c).collect();
    let bins = p.bins;
    let (entropy, occupied) = crate::numerics::metrics::hist2d_entropy(&u, &v, bins, 0.0, p.uv_max);
    let f = type_fractions(&set.sides, &set.angles);
    vec![
        ("valid_fraction", n_valid as f64 / set.checks.len().max(1) as f64),
        ("rare_type_mass", rare as f64 / n_valid.max(1) as f64),
        ("equilateral", f[0]),
        ("isosceles", f[1]),
        ("scalene", f[2]),
        ("right", f[3]),
        ("acute", f[4]),
        ("obtuse", f[5]),
        ("uv_entropy", entropy),
        ("uv_entropy_max", ((bins * bins) as f64).ln()),
        ("uv_occupied_fraction", occupied),
    ]
}
