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
///   (POT's `emd2`, then a square root) computes it.
/// * `energy_w1`, `energy_w2`, `energy_w2_sq` — 1-D Wasserstein distances
///   between the sets' energies `E = −log p`, exact ([`wasserstein_1d`]): W₁;
///   W₂; and W₂², the transport cost POT's `emd2_1d` returns with its default
///   (squared) metric, which is what DEM logs as `energy_w2`. Tables that
///   call a figure "energy W2" may mean either W₂² (DEM's logs) or W₁ (the
///   ICLR-2025 blog's notebooks, `emd2_1d(…, metric="euclidean")`): each has
///   its own column here. Points the target gives zero density are counted as
///   `nonfinite_energy` and left out.
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
/// * `energy_w1`, `energy_w2`, `energy_w2_sq` — as above (DEM's logged
///   `energy_w2` is `energy_w2_sq`).
/// * `dist_w1`, `dist_w2`, `dist_w2_sq` — the same between the pooled
///   interatomic distances (DEM's logged `dist_w2` is `dist_w2_sq`).
/// * `dist_tv` — DEM's `dist_total_var`: total variation between the distance
///   histograms on 200 bins spanning the reference's range.
/// * `energy_mean`, `energy_q25`, `energy_q75` — the set's energy summary.
///
/// **Which points are compared.** As DEM's `eval_step`: the reference is cut
/// to the samples' size by a random subset (a permutation drawn from the
/// stage's seed, DEM's `randperm`), so both sides have the same number of
/// points, at most `max_points`. The floor (a second exact set, e.g. DEM's
/// validation split) is compared with the same reference subset.
///
/// **Batches** (`batches: B > 1`, the ICLR-2025 blog's protocol, mean ± std
/// over 5 batches of 1000): batch `b` is samples `[b·m, (b+1)·m)` against
/// the permuted reference's rows `[b·m, (b+1)·m)`, `m = batch_size`; the
/// columns `batch_mean` and `batch_std` (population standard deviation, as
/// `numpy.std`) beside the single-batch `value`, and the same for the floor.
pub struct BoltzmannChecks;

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct BoltzmannChecksParams {
        energy: String = (ParamType::Str { choices: &["gmm40", "dw4", "lj13", "lj55"] }, Default::Str("gmm40"), "the target the samples are of"),
        bins: usize = (ParamType::Int { min: 2, max: 10_000 }, Default::Int(50), "histogram bins per axis for `tv`"),
        range: f64 = (ParamType::Float { min: 1e-9, max: 1e9 }, Default::Float(50.0), "the histogram covers [−range, range] on each axis"),
        max_points: usize = (ParamType::Int { min: 2, max: 20_000 }, Default::Int(2000), "at most this many points of each set are compared (samples: the first ones; reference: a random subset of the same size, DEM's randperm)"),
        batches: usize = (ParamType::Int { min: 1, max: 1000 }, Default::Int(1), "1: one comparison (DEM's eval_step); B > 1: also B disjoint batches of batch_size, mean ± std (the ICLR-2025 blog's protocol: 5 of 1000)"),
        batch_size: usize = (ParamType::Int { min: 2, max: 20_000 }, Default::Int(1000), "points per batch when batches > 1 (samples and reference each need batches × batch_size)"),
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

/// The exact 1-D `p`-Wasserstein distance `W_p` (not its `p`-th power)
/// between two samples with uniform weights, of any sizes `n` and `m`: the
/// sorted values are matched through their quantile functions, each point of
/// `a` carrying `m` units of mass and each of `b` `n` units, so the transport
/// is exact in integers — POT's `emd2_1d` and scipy's `wasserstein_distance`
/// (for `p = 1`) compute the same. `W_p^p = Σ mass·|a_i − b_j|^p / (n·m)`.
pub fn wasserstein_1d(a: &[f64], b: &[f64], p: f64) -> f64 {
    if a.is_empty() || b.is_empty() {
        return f64::NAN;
    }
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (n, m) = (a.len() as u64, b.len() as u64);
    let (mut i, mut j, mut left_a, mut left_b) = (0usize, 0usize, m, n);
    let mut cost = 0.0;
    while i < a.len() && j < b.len() {
        let mass = left_a.min(left_b);
        cost += mass as f64 * (a[i] - b[j]).abs().powf(p);
        left_a -= mass;
        left_b -= mass;
        if left_a == 0 {
            i += 1;
            left_a = m;
        }
        if left_b == 0 {
            j += 1;
            left_b = n;
        }
    }
    (cost / (n * m) as f64).powf(1.0 / p)
}

/// W₁, W₂ and W₂² of two 1-D samples, under the names `{what}_w1`,
/// `{what}_w2`, `{what}_w2_sq`.
fn w_family(what: [&'static str; 3], a: &[f64], b: &[f64]) -> [(&'static str, f64); 3] {
    let w2 = wasserstein_1d(a, b, 2.0);
    [(what[0], wasserstein_1d(a, b, 1.0)), (what[1], w2), (what[2], w2 * w2)]
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

/// The rows of `v` (`dim` values each) in a random order drawn from `rng`.
pub(crate) fn shuffled(v: &[f64], dim: usize, rng: &mut impl rand::Rng) -> Vec<f64> {
    use rand::seq::SliceRandom;
    let mut order: Vec<usize> = (0..v.len() / dim).collect();
    order.shuffle(rng);
    order.iter().flat_map(|&i| v[i * dim..(i + 1) * dim].iter().copied()).collect()
}

/// Per metric, the mean and the population standard deviation (`numpy.std`)
/// over batches (`per[b][metric]`).
fn mean_std(per: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let k = per.len() as f64;
    (0..per[0].len())
        .map(|j| {
            let mean = per.iter().map(|r| r[j]).sum::<f64>() / k;
            (mean, (per.iter().map(|r| (r[j] - mean).powi(2)).sum::<f64>() / k).sqrt())
        })
        .unzip()
}

/// The first `n` points of each set, `n` the smaller set's size capped at
/// `max_points` (DEM compares sets of equal size).
fn cut_to_same<'a>(s: &'a [f64], t: &'a [f64], dim: usize, max_points: usize) -> (&'a [f64], &'a [f64]) {
    let n = (s.len() / dim).min(t.len() / dim).min(max_points);
    (&s[..n * dim], &t[..n * dim])
}

/// One set's metrics against the target: (name, value) rows.
pub fn metrics(
    gmm: &Gmm,
    s: &[f64],
    target: &[f64],
    p: &BoltzmannChecksParams,
) -> Result<Vec<(&'static str, f64)>, String> {
    let (cs, ct) = cut_to_same(s, target, 2, p.max_points);
    let x_w2 = w2_exact(cs, ct, 2)?;
    let energies = |v: &[f64]| -> (Vec<f64>, usize) {
        let e: Vec<f64> = gmm.log_prob_batch(v).into_iter().map(|lp| -lp).collect();
        let bad = e.iter().filter(|x| !x.is_finite()).count();
        (e.into_iter().filter(|x| x.is_finite()).collect(), bad)
    };
    let ((es, bad), (et, _)) = (energies(cs), energies(ct));
    let [w1, w2, w2_sq] = w_family(["energy_w1", "energy_w2", "energy_w2_sq"], &es, &et);
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
        w1,
        w2,
        w2_sq,
        ("tv", tv(s, target, p.bins, p.range)),
        ("modes_1", counts.iter().filter(|&&c| c >= 1).count() as f64),
        ("modes_5", counts.iter().filter(|&&c| c >= 5).count() as f64),
        ("on_mode", on_mode as f64 / n),
        ("nonfinite_energy", bad as f64),
        ("n", n),
        ("n_compared", (cs.len() / 2) as f64),
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
    let (cs, ct) = cut_to_same(s, target, dim, p.max_points);
    let x_w2 = w2_exact(cs, ct, dim)?;
    let energies = |v: &[f64]| -> Vec<f64> { v.chunks(dim).map(|x| sys.energy(x, None)).collect() };
    let distances = |v: &[f64]| -> Vec<f64> {
        let mut d = Vec::new();
        v.chunks(dim).for_each(|x| sys.distances(x, &mut d));
        d
    };
    let (es, et) = (energies(cs), energies(ct));
    let (ds, dt) = (distances(cs), distances(ct));
    let [e1, e2, e2_sq] = w_family(["energy_w1", "energy_w2", "energy_w2_sq"], &es, &et);
    let [d1, d2, d2_sq] = w_family(["dist_w1", "dist_w2", "dist_w2_sq"], &ds, &dt);
    // The energy summary describes every sample, not only the compared ones.
    let all = energies(s);
    let mut sorted = all.clone();
    sorted.sort_by(f64::total_cmp);
    let q = |f: f64| sorted[((sorted.len() - 1) as f64 * f).round() as usize];
    Ok(vec![
        ("x_w2", x_w2),
        e1,
        e2,
        e2_sq,
        d1,
        d2,
        d2_sq,
        ("dist_tv", hist_tv_1d(&ds, &dt, 200)),
        ("energy_mean", all.iter().sum::<f64>() / all.len() as f64),
        ("energy_q25", q(0.25)),
        ("energy_q75", q(0.75)),
        ("n", (s.len() / dim) as f64),
        ("n_compared", (cs.len() / dim) as f64),
    ])
}

impl Stage for BoltzmannChecks {
    describe!(Kind::Validate, "boltzmann", version 4, params BoltzmannChecksParams, INPUTS, OUTPUTS);
    fn check_params(&self, p: &crate::engine::params::Params) -> Vec<(&'static str, String)> {
        let p = BoltzmannChecksParams::read(p);
        match p.batches > 1 && p.batch_size > p.max_points {
            true => vec![(
                "batch_size",
                format!(
                    "a batch of {} points would be cut to max_points ({}); raise max_points",
                    p.batch_size, p.max_points
                ),
            )],
            false => Vec::new(),
        }
    }
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
        // DEM's randperm: the reference in a random order from the stage's
        // seed, so a cut to the samples' size is a random subset.
        let target =
            shuffled(&load("target")?, cols.len(), &mut crate::numerics::rng::stream(ctx.seed, "boltzmann/reference"));
        let eval = |set: &[f64], target: &[f64]| match &target_sys {
            Target::Gmm(gmm) => metrics(gmm, set, target, &p),
            Target::Particles(sys) => particle_metrics(sys, set, target, &p),
        };
        let floor_set = match ctx.inputs.get("floor") {
            Some(_) => Some(load("floor")?),
            None => None,
        };
        let rows = eval(&s, &target).map_err(StageError::Failed)?;
        let floor = floor_set.as_ref().map(|f| eval(f, &target)).transpose().map_err(StageError::Failed)?;
        let mut table = Table::new()
            .with("metric", ColumnData::Str(rows.iter().map(|r| r.0.to_string()).collect()))
            .with("value", ColumnData::F64(rows.iter().map(|r| r.1).collect()))
            .with(
                "floor",
                ColumnData::F64(match &floor {
                    Some(f) => f.iter().map(|r| r.1).collect(),
                    None => vec![f64::NAN; rows.len()],
                }),
            );
        if p.batches > 1 {
            let (m, d) = (p.batch_size, cols.len());
            let batched = |set: &[f64], what: &str| -> Result<(Vec<f64>, Vec<f64>), StageError> {
                let need = p.batches * m;
                for (name, len) in [(what, set.len() / d), ("target", target.len() / d)] {
                    if len < need {
                        return Err(StageError::Failed(format!(
                            "`batches: {}` of `batch_size: {m}` needs {need} points of `{name}`; it has {len}",
                            p.batches
                        )));
                    }
                }
                let per: Vec<Vec<f64>> = (0..p.batches)
                    .map(|b| {
                        let r = b * m * d..(b + 1) * m * d;
                        eval(&set[r.clone()], &target[r]).map(|v| v.into_iter().map(|x| x.1).collect())
                    })
                    .collect::<Result<_, _>>()
                    .map_err(StageError::Failed)?;
                Ok(mean_std(&per))
            };
            let (mean, std) = batched(&s, "samples")?;
            table = table.with("batch_mean", ColumnData::F64(mean)).with("batch_std", ColumnData::F64(std));
            let (fm, fs) = match &floor_set {
                Some(f) => batched(f, "floor")?,
                None => (vec![f64::NAN; rows.len()], vec![f64::NAN; rows.len()]),
            };
            table = table.with("floor_batch_mean", ColumnData::F64(fm)).with("floor_batch_std", ColumnData::F64(fs));
        }
        Ok([("metrics".to_string(), Artifact::Table(table))].into_iter().collect())
    }
    fn summary(&self, outputs: &std::collections::BTreeMap<String, std::sync::Arc<Artifact>>) -> Option<String> {
        let Artifact::Table(t) = outputs.get("metrics")?.as_ref() else {
            return None;
        };
        let (m, v, f) = (t.strs("metric").ok()?, t.f64s("value").ok()?, t.f64s("floor").ok()?);
        let batches = t.f64s("batch_mean").ok().zip(t.f64s("batch_std").ok());
        let mut text = String::from("metric                   samples vs target   floor (reference vs reference)");
        if batches.is_some() {
            text.push_str("   batches: mean ± std");
        }
        for i in 0..m.len() {
            let floor = if f[i].is_finite() { format!("{:>11.6}", f[i]) } else { "          —".to_string() };
            text.push_str(&format!("\n  {:<22} {:>11.6}         {floor}", m[i], v[i]));
            if let Some((mean, std)) = &batches {
                text.push_str(&format!("   {:>11.6} ± {:.6}", mean[i], std[i]));
            }
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
        for k in ["x_w2", "energy_w1", "energy_w2", "energy_w2_sq", "dist_w1", "dist_w2", "dist_w2_sq", "dist_tv"] {
            assert_eq!(m[k], 0.0, "{k}");
        }
        let y: Vec<f64> = x.iter().map(|v| v * 1.3).collect();
        assert!(hist_tv_1d(&y, &x, 200) > 0.0 && particle_metrics(&sys, &y, &x, &p).unwrap()[1].1 > 0.0);
        // the compared sets are cut to the same size
        let m: std::collections::BTreeMap<_, _> =
            particle_metrics(&sys, &y, &x[..8 * 30], &p).unwrap().into_iter().collect();
        assert_eq!((m["n"], m["n_compared"]), (50.0, 30.0));
    }

    /// W₁, W₂ and W₂² of a small case by hand, where all three differ: equal
    /// sizes (sorted values matched) and unequal sizes (quantile masses).
    #[test]
    fn one_d_wasserstein_by_hand() {
        // {0, 1} vs {0, 3}: costs 0 and 2 (W₁ = 1), squared 0 and 4 (W₂² = 2).
        let (a, b) = ([1.0, 0.0], [3.0, 0.0]);
        assert_eq!(wasserstein_1d(&a, &b, 1.0), 1.0);
        assert!((wasserstein_1d(&a, &b, 2.0) - 2f64.sqrt()).abs() < 1e-15);
        let m: std::collections::BTreeMap<_, _> = w_family(["w1", "w2", "w2_sq"], &a, &b).into_iter().collect();
        assert!((m["w2_sq"] - 2.0).abs() < 1e-12 && m["w1"] == 1.0);
        // {0, 1, 2} (mass 1/3 each) vs {0, 4} (1/2 each): 1/3 of 0→0, 1/6 of
        // 1→0, 1/6 of 1→4, 1/3 of 2→4: W₁ = 1/6 + 3/6 + 2/3 = 4/3,
        // W₂² = 1/6 + 9/6 + 4/3 = 3.
        let (a, b) = ([2.0, 0.0, 1.0], [4.0, 0.0]);
        assert!((wasserstein_1d(&a, &b, 1.0) - 4.0 / 3.0).abs() < 1e-12);
        assert!((wasserstein_1d(&a, &b, 2.0).powi(2) - 3.0).abs() < 1e-12);
    }

    /// Against SciPy and POT, numbers pasted from a one-off run (scipy
    /// 1.17.1, POT 0.9.7): `scipy.stats.wasserstein_distance(a, b)` (W₁),
    /// `ot.emd2_1d(a, b)` (default squared metric: W₂², DEM's `energy_w2`)
    /// and `ot.emd2_1d(a, b, metric="euclidean")` (W₁, the blog's "W2").
    #[test]
    fn one_d_wasserstein_matches_scipy_and_pot() {
        let a = [0.3, -1.2, 2.5, 0.7, 4.1, -0.4, 1.9];
        let b = [1.1, 0.2, -2.3, 3.3, 0.9];
        assert!((wasserstein_1d(&a, &b, 1.0) - 0.7742857142857142).abs() < 1e-12);
        assert!((wasserstein_1d(&a, &b, 2.0).powi(2) - 0.8248571428571424).abs() < 1e-12);
    }

    /// Batches: the mean and population standard deviation per metric.
    #[test]
    fn batch_mean_and_std() {
        let (mean, std) = mean_std(&[vec![1.0, 10.0], vec![3.0, 10.0]]);
        assert_eq!((mean, std), (vec![2.0, 10.0], vec![1.0, 0.0]));
    }

    #[test]
    fn w2_is_symmetric_and_zero_on_itself() {
        let g = Gmm::dem40();
        use rand::SeedableRng;
        let a = g.sample(300, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        let b = g.sample(300, &mut rand_chacha::ChaCha8Rng::seed_from_u64(2));
        assert_eq!(w2_exact(&a, &a, 2).unwrap(), 0.0);
        assert!((w2_exact(&a, &b, 2).unwrap() - w2_exact(&b, &a, 2).unwrap()).abs() < 1e-9);
        let (ea, eb) = (&a[..200], &b[..300]);
        for q in [1.0, 2.0] {
            assert!((wasserstein_1d(ea, eb, q) - wasserstein_1d(eb, ea, q)).abs() < 1e-12);
        }
        assert_eq!(tv(&a, &a, 50, 50.0), 0.0);
    }
}
