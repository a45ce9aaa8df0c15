//! `generate` / `dataset: two_moons`: scikit-learn's `make_moons`, standardised
//! (seed 002).

use crate::engine::frame::{ColumnData, Table};
use crate::engine::params::{Default, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::numerics::rng::stream as rng;
use rand::seq::SliceRandom;

/// Peak memory per requested row (measured; see [`crate::engine::stage::rows_memory`]).
const MOONS_BYTES_PER_ROW: u64 = 100;

/// `dataset: two_moons`: scikit-learn's `make_moons(n_samples, shuffle=True,
/// noise)` (seed 002), standardised per axis.
///
/// As sklearn: the outer moon gets `n/2` points (rounded down) at angles
/// `linspace(0, π, n_out)`, `(cos θ, sin θ)`; the inner moon the other `n − n/2`
/// at `(1 − cos θ, 1 − sin θ − 0.5)`; rows are shuffled, then every coordinate gets
/// Gaussian noise of standard deviation `noise`. Then each axis is standardised,
/// `(v − mean)/std` (population std, numpy's default), with the data set's own
/// statistics — or, when the `stats` input is bound, with those (so an
/// independent evaluation draw lives in the training data's coordinates). The
/// statistics used are an output. `draw` selects an independent random stream
/// under the same seed: draws 1, 2, … of a pipeline are independent of each
/// other and of draw 0, reproducibly. Random streams are ChaCha8, not numpy's
/// Mersenne Twister, so points are not bit-compatible with sklearn's.
pub struct TwoMoons;

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct MoonsParams {
        n_samples: usize = (ParamType::Int { min: 2, max: 100_000_000 }, Default::Int(50_000), "points, split between the moons as sklearn does"),
        noise: f64 = (ParamType::Float { min: 0.0, max: 100.0 }, Default::Float(0.05), "standard deviation of the Gaussian noise"),
        standardize: bool = (ParamType::Bool, Default::Bool(true), "standardise each axis (own statistics, or the `stats` input's)"),
        draw: i64 = (ParamType::Int { min: 0, max: 1_000_000 }, Default::Int(0), "independent draw number under the same seed"),
    }
}
static MOONS_INPUTS: &[InputDef] = &[InputDef {
    name: "stats",
    media: Media::Table,
    required: false,
    doc: "axis, mean, std to standardise with (another draw's `stats`)",
}];
static MOONS_OUTPUTS: &[OutputDef] = &[
    OutputDef { name: "samples", media: Media::Table, doc: "x, y (standardised) and moon (0 outer, 1 inner)" },
    OutputDef { name: "stats", media: Media::Table, doc: "axis, mean, std used to standardise" },
];

/// Raw `make_moons` points (row-major `[x, y]`) and moon labels.
pub fn make_moons(n: usize, noise: f64, seed: u64, draw: i64) -> (Vec<f64>, Vec<i64>) {
    use rand_distr::{Distribution, Normal};
    let n_out = n / 2;
    let n_in = n - n_out;
    let angle = |i: usize, k: usize| if k > 1 { std::f64::consts::PI * i as f64 / (k - 1) as f64 } else { 0.0 };
    let mut pts: Vec<([f64; 2], i64)> = (0..n_out)
        .map(|i| ([angle(i, n_out).cos(), angle(i, n_out).sin()], 0))
        .chain((0..n_in).map(|i| ([1.0 - angle(i, n_in).cos(), 1.0 - angle(i, n_in).sin() - 0.5], 1)))
        .collect();
    pts.shuffle(&mut rng(seed, &format!("two_moons/{draw}/shuffle")));
    let mut r = rng(seed, &format!("two_moons/{draw}/noise"));
    let normal = Normal::new(0.0, noise).expect("noise ≥ 0");
    let mut xy = Vec::with_capacity(2 * n);
    let mut label = Vec::with_capacity(n);
    for (p, l) in pts {
        xy.push(p[0] + normal.sample(&mut r));
        xy.push(p[1] + normal.sample(&mut r));
        label.push(l);
    }
    (xy, label)
}

impl Stage for TwoMoons {
    describe!(Kind::Generate, "two_moons", version 1, params MoonsParams, MOONS_INPUTS, MOONS_OUTPUTS);
    fn output_columns(&self, output: &str) -> Option<&'static [&'static str]> {
        match output {
            "samples" => Some(&["x", "y", "moon"]),
            "stats" => Some(&["axis", "mean", "std"]),
            _ => None,
        }
    }
    fn input_columns(&self, input: &str) -> &'static [&'static str] {
        if input == "stats" { &["axis", "mean", "std"] } else { &[] }
    }
    fn memory_bytes(&self, p: &crate::engine::params::Params) -> Option<(&'static str, u64)> {
        Some(("n_samples", crate::engine::stage::rows_memory(p, MOONS_BYTES_PER_ROW)))
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let p = &MoonsParams::read(ctx.params);
        let n = p.n_samples;
        let (xy, label) = make_moons(n, p.noise, ctx.seed, p.draw);
        let axis = |j: usize| xy.iter().skip(j).step_by(2).copied().collect::<Vec<f64>>();
        let (mut x, mut y) = (axis(0), axis(1));
        let (mean, std) = if ctx.inputs.contains_key("stats") {
            let t = ctx.table("stats")?;
            let (m, s) = (t.f64s("mean")?, t.f64s("std")?);
            if m.len() != 2 || s.len() != 2 {
                return Err(StageError::Failed(format!("`stats` must have 2 rows (x, y), found {}", m.len())));
            }
            ([m[0], m[1]], [s[0], s[1]])
        } else if p.standardize {
            let stats = |v: &[f64]| {
                let m = v.iter().sum::<f64>() / v.len() as f64;
                (m, (v.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / v.len() as f64).sqrt())
            };
            let ((mx, sx), (my, sy)) = (stats(&x), stats(&y));
            ([mx, my], [sx, sy])
        } else {
            ([0.0, 0.0], [1.0, 1.0])
        };
        for (v, (m, s)) in [&mut x, &mut y].into_iter().zip(mean.iter().zip(&std)) {
            v.iter_mut().for_each(|a| *a = (*a - m) / s);
        }
        let samples = Table::new()
            .with("x", ColumnData::F64(x))
            .with("y", ColumnData::F64(y))
            .with("moon", ColumnData::I64(label));
        let stats = Table::new()
            .with("axis", ColumnData::Str(vec!["x".into(), "y".into()]))
            .with("mean", ColumnData::F64(mean.to_vec()))
            .with("std", ColumnData::F64(std.to_vec()));
        Ok([("samples".to_string(), Artifact::Table(samples)), ("stats".to_string(), Artifact::Table(stats))]
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_moons_has_sklearns_shape_and_noise() {
        let n = 20_001;
        let (xy, label) = make_moons(n, 0.0, 1, 0);
        assert_eq!((xy.len(), label.len()), (2 * n, n));
        // sklearn: n_out = n // 2 outer points, the rest inner.
        assert_eq!(label.iter().filter(|l| **l == 0).count(), n / 2);
        // Without noise every point is on its circle.
        for (p, l) in xy.chunks(2).zip(&label) {
            let (cx, cy) = if *l == 0 { (0.0, 0.0) } else { (1.0, 0.5) };
            assert!(((p[0] - cx).hypot(p[1] - cy) - 1.0).abs() < 1e-12);
        }
        // Noise: the residual from the noiseless point has the requested sd.
        let (noisy, _) = make_moons(n, 0.05, 1, 0);
        let res: Vec<f64> = noisy.iter().zip(&xy).map(|(a, b)| a - b).collect();
        let mean = res.iter().sum::<f64>() / res.len() as f64;
        let sd = (res.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / res.len() as f64).sqrt();
        assert!(mean.abs() < 0.002 && (sd - 0.05).abs() < 0.001, "mean {mean} sd {sd}");
        // The data set's moments: x̄ = 0.5, ȳ = 0.25 (sklearn's moons).
        let mx = xy.iter().step_by(2).sum::<f64>() / n as f64;
        let my = xy.iter().skip(1).step_by(2).sum::<f64>() / n as f64;
        assert!((mx - 0.5).abs() < 1e-3 && (my - 0.25).abs() < 1e-3, "{mx} {my}");
        // Other draws are independent, the same draw repeats.
        assert_eq!(make_moons(100, 0.05, 1, 0), make_moons(100, 0.05, 1, 0));
        assert_ne!(make_moons(100, 0.05, 1, 0).0, make_moons(100, 0.05, 1, 1).0);
    }
}
