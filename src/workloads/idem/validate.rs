//! `validate` / `checks: boltzmann`: samples of a Boltzmann target against an
//! exact reference set, by DEM's metrics and a few more, each beside its floor
//! (the same metric between two independent exact sets).

use crate::engine::frame::{ColumnData, Table};
use crate::engine::params::{Default, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::numerics::energy::Energy;
use crate::numerics::energy::gmm::Gmm;
use crate::numerics::energy::particles::Particles;

use super::generate::Target;

/// `checks: boltzmann` on GMM-40, in the energy's own coordinates:
///
/// * `x_w2` — the 2-Wasserstein distance between the point sets by **exact**
///   optimal transport: with equal sizes and uniform weights the optimal plan
///   is a permutation, found by the `lsap` crate (scipy's
///   `linear_sum_assignment`, Jonker–Volgenant shortest augmenting paths) on the
///   squared distances; `√(mean matched cost)`, as DEM's `wasserstein(…, power=2)`
///   (POT's `emd2`) computes it. Both sets are cut to the smaller size.
/// * `energy_w2` — the 2-Wasserstein distance between the sets' energies
///   `E = −log p` (1-D: sorted values matched, exact). Points the target gives
///   zero density are counted as `nonfinite_energy` and left out.
///   `energy_emd2` is its square: what DEM logs as `energy_w2` (POT's
///   `emd2_1d` returns the transport cost, `W₂²`).
/// * `tv` — total variation between the two sets' histograms on a
///   `bins × bins` grid over `[−range, range]²` (points outside fall in the
///   edge bins).
/// * `modes_1`, `modes_5` — modes with at least 1 (5) samples within 3σ of
///   their mean; `on_mode` — the fraction of samples within 3σ of some mean.
///
/// On the particle systems (`dw4`, `lj13`, `lj55`; columns `p{i}_x, …`),
/// DEM's molecule metrics:
///
/// * `x_w2` — as above, on the flattened mean-free coordinates, with no
///   rotational alignment and no particle permutation: DEM's `2-Wasserstein`
///   (its `Eq-EMD2`, which aligns every pair by Hungarian matching and Kabsch,
///   is not computed). It is an upper bound on the symmetry-reduced distance.
/// * `energy_w2` — the 1-D 2-Wasserstein distance between the energies;
///   `energy_emd2` — its square, which is what DEM logs as `energy_w2` (POT's
///   `emd2_1d` returns the transport cost, `W₂²`).
/// * `dist_w2`, `dist_emd2` — the same between the pooled interatomic
///   distances (DEM's `dist_w2` is `dist_emd2`).
/// * `dist_tv` — DEM's `dist_total_var`: total variation between the distance
///   histograms on 200 bins spanning the reference's range.
/// * `energy_mean`, `energy_q25`, `energy_q75` — the set's energy summary.
pub struct BoltzmannChecks;

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct BoltzmannChecksParams {
        energy: String = (ParamType::Str { choices: &["gmm40", "dw4", "lj13", "lj55"] }, Default::Str("gmm40"), "the target the samples are of"),
        bins: usize = (ParamType::Int { min: 2, max: 10_000 }, Default::Int(50), "histogram bins per axis for `tv`"),
        range: f64 = (ParamType::Float { min: 1e-9, max: 1e9 }, Default::Float(50.0), "the histogram covers [−range, range] on each axis"),
        max_points: usize = (ParamType::Int { min: 2, max: 20_000 }, Default::Int(2000), "at most this many points of each set enter x_w2 (the first ones)"),
    }
}
static INPUTS: &[InputDef] = &[
    InputDef {
        name: "samples",
        media: Media::Table,
        required: true,
        doc: "generated points (x, y; particles p{i}_x, p{i}_y[, p{i}_z])",
    },
    InputDef { name: "target", media: Media::Table, required: true, doc: "reference samples, the same columns" },
    InputDef {
        name: "floor",
        media: Media::Table,
        required: false,
        doc: "a second, independent reference set (the floor)",
    },
];
static OUTPUTS: &[OutputDef] = &[OutputDef {
    name: "metrics",
    media: Media::Table,
    doc: "metric, value (samples vs target), floor (floor set vs target)",
}];

/// `√(mean ‖a_i − b_σ(i)‖²)` over the optimal permutation σ (exact).
pub fn w2_exact(a: &[f64], b: &[f64], dim: usize) -> Result<f64, String> {
    let n = (a.len() / dim).min(b.len() / dim);
    if n == 0 {
        return Err("an empty point set".into());
    }
    let mut cost = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            cost[i * n + j] = (0..dim).map(|d| (a[i * dim + d] - b[j * dim + d]).powi(2)).sum();
        }
    }
    let (rows, cols) = lsap::solve(n, n, &cost, false).map_err(|e| format!("assignment failed: {e:?}"))?;
    let total: f64 = rows.iter().zip(&cols).map(|(i, j)| cost[i * n + j]).sum();
    Ok((total / n as f64).sqrt())
}

/// The exact 1-D 2-Wasserstein distance between two equal-weight samples
/// (quantile functions matched on the sorted values; unequal sizes by
/// resampling the quantiles of the larger at the smaller's levels).
pub fn w2_1d(a: &[f64], b: &[f64]) -> f64 {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let n = a.len().min(b.len());
    let q = |v: &[f64], i: usize| v[((i as f64 + 0.5) / n as f64 * v.len() as f64) as usize];
    ((0..n).map(|i| (q(&a, i) - q(&b, i)).powi(2)).sum::<f64>() / n as f64).sqrt()
}

/// Total variation between two point sets' 2-D histograms.
pub fn tv(a: &[f64], b: &[f64], bins: usize, range: f64) -> f64 {
    let hist = |v: &[f64]| {
        let mut h = vec![0.0; bins * bins];
        let n = (v.len() / 2) as f64;
        let bin = |c: f64| (((c + range) / (2.0 * range) * bins as f64).floor().max(0.0) as usize).min(bins - 1);
        for p in v.chunks(2) {
            h[bin(p[0]) * bins + bin(p[1])] += 1.0 / n;
        }
        h
    };
    let (ha, hb) = (hist(a), hist(b));
    0.5 * ha.iter().zip(&hb).map(|(x, y)| (x - y).abs()).sum::<f64>()
}

/// One set's metrics against the target: (name, value) rows.
pub fn metrics(
    gmm: &Gmm,
    s: &[f64],
    target: &[f64],
    p: &BoltzmannChecksParams,
) -> Result<Vec<(&'static str, f64)>, String> {
    let cut = |v: &[f64]| v[..v.len().min(2 * p.max_points)].to_vec();
    let x_w2 = w2_exact(&cut(s), &cut(target), 2)?;
    let energies = |v: &[f64]| -> (Vec<f64>, usize) {
        let e: Vec<f64> = gmm.log_prob_batch(v).into_iter().map(|lp| -lp).collect();
        let bad = e.iter().filter(|x| !x.is_finite()).count();
        (e.into_iter().filter(|x| x.is_finite()).collect(), bad)
    };
    let ((es, bad), (et, _)) = (energies(s), energies(target));
    let energy_w2 = if es.is_empty() { f64::NAN } else { w2_1d(&es, &et) };
    let three_sigma = 3.0 * gmm.std();
    let mut counts = vec![0usize; gmm.n_components()];
    let mut on_mode = 0usize;
    for pt in s.chunks(2) {
        let (k, d) = gmm.nearest_mode(pt);
        if d <= three_sigma {
            counts[k] += 1;
            on_mode += 1;
        }
    }
    let n = (s.len() / 2) as f64;
    Ok(vec![
        ("x_w2", x_w2),
        ("energy_w2", energy_w2),
        ("energy_emd2", energy_w2 * energy_w2),
        ("tv", tv(s, target, p.bins, p.range)),
        ("modes_1", counts.iter().filter(|&&c| c >= 1).count() as f64),
        ("modes_5", counts.iter().filter(|&&c| c >= 5).count() as f64),
        ("on_mode", on_mode as f64 / n),
        ("nonfinite_energy", bad as f64),
        ("n", n),
    ])
}

/// The histogram TV DEM computes on interatomic distances: 200 bins over the
/// reference's range (values outside fall out of both histograms, as
/// `np.histogram` with the reference's edges drops them).
pub fn hist_tv_1d(samples: &[f64], reference: &[f64], bins: usize) -> f64 {
    let (lo, hi) = reference.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let hist = |v: &[f64]| {
        let mut h = vec![0.0; bins];
        for &x in v {
            if x >= lo && x <= hi {
                let i = (((x - lo) / (hi - lo)) * bins as f64).floor() as usize;
                h[i.min(bins - 1)] += 1.0;
            }
        }
        let total: f64 = h.iter().sum();
        h.iter_mut().for_each(|c| *c /= total.max(1.0));
        h
    };
    let (a, b) = (hist(samples), hist(reference));
    0.5 * a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f64>()
}

/// One particle set's metrics against the reference: (name, value) rows.
pub fn particle_metrics(
    sys: &Particles,
    s: &[f64],
    target: &[f64],
    p: &BoltzmannChecksParams,
) -> Result<Vec<(&'static str, f64)>, String> {
    let dim = sys.n * sys.d;
    let cut = |v: &[f64]| v[..v.len().min(dim * p.max_points)].to_vec();
    let x_w2 = w2_exact(&cut(s), &cut(target), dim)?;
    let energies = |v: &[f64]| -> Vec<f64> { v.chunks(dim).map(|x| sys.energy(x, None)).collect() };
    let distances = |v: &[f64]| -> Vec<f64> {
        let mut d = Vec::new();
        v.chunks(dim).for_each(|x| sys.distances(x, &mut d));
        d
    };
    let (es, et) = (energies(s), energies(target));
    let (ds, dt) = (distances(s), distances(target));
    let energy_w2 = w2_1d(&es, &et);
    let dist_w2 = w2_1d(&ds, &dt);
    let mut sorted = es.clone();
    sorted.sort_by(f64::total_cmp);
    let q = |f: f64| sorted[((sorted.len() - 1) as f64 * f).round() as usize];
    Ok(vec![
        ("x_w2", x_w2),
        ("energy_w2", energy_w2),
        ("energy_emd2", energy_w2 * energy_w2),
        ("dist_w2", dist_w2),
        ("dist_emd2", dist_w2 * dist_w2),
        ("dist_tv", hist_tv_1d(&ds, &dt, 200)),
        ("energy_mean", es.iter().sum::<f64>() / es.len() as f64),
        ("energy_q25", q(0.25)),
        ("energy_q75", q(0.75)),
        ("n", (s.len() / dim) as f64),
    ])
}

impl Stage for BoltzmannChecks {
    describe!(Kind::Validate, "boltzmann", version 3, params BoltzmannChecksParams, INPUTS, OUTPUTS);
    fn metrics(&self) -> &'static [(&'static str, &'static str)] {
        &[("metrics", "value")]
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let p = BoltzmannChecksParams::read(ctx.params);
        let target_sys =
            Target::by_name(&p.energy).ok_or_else(|| StageError::Failed(format!("unknown energy `{}`", p.energy)))?;
        let cols = target_sys.columns();
        let load = |name: &str| -> Result<Vec<f64>, StageError> { Ok(ctx.table(name)?.rows_f64(&cols)?) };
        let s = load("samples")?;
        if let Some(bad) = s.iter().position(|v| !v.is_finite()) {
            return Err(StageError::Failed(format!(
                "sample {} is not finite; the metrics need finite points",
                bad / cols.len()
            )));
        }
        let target = load("target")?;
        let eval = |set: &[f64]| match &target_sys {
            Target::Gmm(gmm) => metrics(gmm, set, &target, &p),
            Target::Particles(sys) => particle_metrics(sys, set, &target, &p),
        };
        let rows = eval(&s).map_err(StageError::Failed)?;
        let floor = match ctx.inputs.get("floor") {
            Some(_) => Some(eval(&load("floor")?).map_err(StageError::Failed)?),
            None => None,
        };
        let table = Table::new()
            .with("metric", ColumnData::Str(rows.iter().map(|r| r.0.to_string()).collect()))
            .with("value", ColumnData::F64(rows.iter().map(|r| r.1).collect()))
            .with(
                "floor",
                ColumnData::F64(match &floor {
                    Some(f) => f.iter().map(|r| r.1).collect(),
                    None => vec![f64::NAN; rows.len()],
                }),
            );
        Ok([("metrics".to_string(), Artifact::Table(table))].into_iter().collect())
    }
    fn summary(&self, outputs: &std::collections::BTreeMap<String, std::sync::Arc<Artifact>>) -> Option<String> {
        let Artifact::Table(t) = outputs.get("metrics")?.as_ref() else {
            return None;
        };
        let (m, v, f) = (t.strs("metric").ok()?, t.f64s("value").ok()?, t.f64s("floor").ok()?);
        let mut text = String::from("metric                   samples vs target   floor (reference vs reference)");
        for i in 0..m.len() {
            let floor = if f[i].is_finite() { format!("{:>11.6}", f[i]) } else { "          —".to_string() };
            text.push_str(&format!("\n  {:<22} {:>11.6}         {floor}", m[i], v[i]));
        }
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The assignment is the optimum: brute force over every permutation of
    /// small sets agrees.
    #[test]
    fn exact_ot_matches_brute_force() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for n in 2..=7 {
            let a: Vec<f64> = (0..2 * n).map(|_| rng.random_range(-3.0..3.0)).collect();
            let b: Vec<f64> = (0..2 * n).map(|_| rng.random_range(-3.0..3.0)).collect();
            let mut perm: Vec<usize> = (0..n).collect();
            let mut best = f64::INFINITY;
            permute(&mut perm, 0, &mut |p| {
                let c: f64 =
                    (0..n).map(|i| (a[2 * i] - b[2 * p[i]]).powi(2) + (a[2 * i + 1] - b[2 * p[i] + 1]).powi(2)).sum();
                best = best.min(c);
            });
            let w2 = w2_exact(&a, &b, 2).unwrap();
            assert!(
                (w2 * w2 * n as f64 - best).abs() < 1e-9,
                "n={n}: {w2} vs brute force {}",
                (best / n as f64).sqrt()
            );
        }
    }

    fn permute(v: &mut Vec<usize>, k: usize, f: &mut dyn FnMut(&[usize])) {
        if k == v.len() {
            return f(v);
        }
        for i in k..v.len() {
            v.swap(k, i);
            permute(v, k + 1, f);
            v.swap(k, i);
        }
    }

    /// Every molecule metric of a set against itself is zero.
    #[test]
    fn particle_metrics_vanish_on_the_same_set() {
        use rand::{Rng, SeedableRng};
        let sys = Particles::dw4();
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let x: Vec<f64> = (0..8 * 50).map(|_| r.sample::<f64, _>(rand_distr::StandardNormal) * 2.0).collect();
        let p = BoltzmannChecksParams::read(&BoltzmannChecksParams::example());
        let m: std::collections::BTreeMap<_, _> = particle_metrics(&sys, &x, &x, &p).unwrap().into_iter().collect();
        for k in ["x_w2", "energy_w2", "dist_w2", "dist_tv"] {
            assert_eq!(m[k], 0.0, "{k}");
        }
        let y: Vec<f64> = x.iter().map(|v| v * 1.3).collect();
        assert!(hist_tv_1d(&y, &x, 200) > 0.0 && particle_metrics(&sys, &y, &x, &p).unwrap()[1].1 > 0.0);
    }

    #[test]
    fn w2_is_symmetric_and_zero_on_itself() {
        let g = Gmm::dem40();
        use rand::SeedableRng;
        let a = g.sample(300, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        let b = g.sample(300, &mut rand_chacha::ChaCha8Rng::seed_from_u64(2));
        assert_eq!(w2_exact(&a, &a, 2).unwrap(), 0.0);
        assert!((w2_exact(&a, &b, 2).unwrap() - w2_exact(&b, &a, 2).unwrap()).abs() < 1e-9);
        assert!((w2_1d(&a, &b) - w2_1d(&b, &a)).abs() < 1e-12);
        assert_eq!(tv(&a, &a, 50, 50.0), 0.0);
    }
}
