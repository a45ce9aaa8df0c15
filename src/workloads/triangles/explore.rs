//! Exploration metrics that can show what maximum-entropy tuning does to a
//! triangle model, beside the seed's validity and type masses.
//!
//! None of them is in the seed, the blog or the paper's code (the paper
//! measures entropy by the likelihood ODE); they are scoreflow's, chosen so
//! that each has a known value for the pre-trained model or a known ceiling.
//! All are computed on the **valid** samples, sides sorted `a ≤ b ≤ c` (side
//! units), with both sets cut to the same size `N` (their first `N` valid
//! samples: the samples are independent draws, so the first `N` are a random
//! subset):
//!
//! * `knn_entropy`: the Kozachenko–Leonenko estimate (k = 5, N ≤ 2000),
//!   `Ĥ = ψ(N) − ψ(k) + ln(4π/3) + (3/N)·Σ ln ρ_k(i)`, in nats, each k-NN
//!   ball counted by its share inside the sorted valid wedge (the support;
//!   without it the estimate is biased up by the balls that reach past the
//!   wedge's faces — about +0.12 nats on U[0,1]³ at N = 2000);
//!   `knn_entropy_gap` is `ln(1/12) − Ĥ`, the distance to the uniform
//!   density on the sorted valid wedge (volume 1/12: the maximum entropy);
//! * `low_density_mass`: a Gaussian product KDE (Scott's bandwidth,
//!   `h_j = σ̂_j·n^(−1/7)`) of the reference's even-indexed samples; `τ` is the
//!   10th percentile of its density over the reference's odd-indexed samples;
//!   the share of samples below `τ` (0.10 for the reference by construction);
//!   `mean_surprise` is the samples' mean `−ln p̂` under the same KDE
//!   (the reference's value is over its odd half) — the first S-MEME step's
//!   objective `E_p[−log p_pre]`;
//! * `uv_coverage`, `uv_uniformity`: the shape map `(u, v) = (a/c, b/c)` on a
//!   20 × 20 grid over [0, 1]²; the feasible cells are those whose centre has
//!   `u ≤ v ≤ 1`, `u + v ≥ 1`. Uniform triangles are uniform in `(u, v)` (the
//!   Jacobian is `c²`, whose integral does not depend on `(u, v)`), so both
//!   have ceiling 1: the share of feasible cells holding one of N ≤ 1000
//!   samples, and the histogram entropy over feasible cells over ln(#cells);
//! * `type_tv_to_uniform`: the mean of two total-variation distances — the
//!   angle types' (right, acute, obtuse) and the side types' (equilateral,
//!   isosceles, scalene) — between the samples and triangles uniform on the
//!   valid region of [0, 1]³ ([`UNIFORM_SHARES`], checked by Monte Carlo in
//!   the tests).

use super::geometry::{AngleType, SideType};
use super::validate::ValidSet;

/// The neighbour rank of the kNN entropy estimate.
pub const KNN_K: usize = 5;
/// The most samples the kNN entropy and the KDE use.
pub const KNN_N: usize = 2000;
/// The most samples the (u, v) coverage uses.
pub const UV_N: usize = 1000;
/// Cells per axis of the (u, v) grid.
pub const UV_GRID: usize = 20;
/// The entropy of the uniform density on the sorted valid wedge (volume 1/12).
pub const WEDGE_ENTROPY: f64 = -2.484_906_649_788_000_4; // ln(1/12)

/// Type shares of triangles uniform on the valid region of [0, 1]³ (the
/// seed's classification, tolerance 0.01): right, acute, obtuse, then
/// equilateral, isosceles, scalene.
pub const UNIFORM_SHARES: [f64; 6] = [0.032, 0.413, 0.556, 0.0012, 0.086, 0.913];

/// Sorted sides of a set's valid samples, the first `n` at most.
pub fn sorted_valid(set: &ValidSet, n: usize) -> Vec<[f64; 3]> {
    let [a, b, c] = &set.valid;
    (0..a.len().min(n))
        .map(|i| {
            let mut s = [a[i], b[i], c[i]];
            s.sort_by(f64::total_cmp);
            s
        })
        .collect()
}

/// `ψ(n)` for a positive integer: `−γ + Σ_{i<n} 1/i`.
pub fn digamma(n: usize) -> f64 {
    const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;
    -EULER_GAMMA + (1..n).map(|i| 1.0 / i as f64).sum::<f64>()
}

/// Points of the unit ball the support correction probes (fixed, uniform).
const BALL_PROBES: usize = 256;

fn ball_probes() -> Vec<[f64; 3]> {
    use rand::Rng;
    let mut rng = crate::numerics::rng::stream(0, "knn-entropy/ball");
    let mut out = Vec::with_capacity(BALL_PROBES);
    while out.len() < BALL_PROBES {
        let p: [f64; 3] = [rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0)];
        if p.iter().map(|v| v * v).sum::<f64>() <= 1.0 {
            out.push(p);
        }
    }
    out
}

/// The sorted valid wedge `0 ≤ a ≤ b ≤ c ≤ 1`, `a + b ≥ c` (volume 1/12).
pub fn in_wedge(p: &[f64; 3]) -> bool {
    0.0 <= p[0] && p[0] <= p[1] && p[1] <= p[2] && p[2] <= 1.0 && p[0] + p[1] >= p[2]
}

/// The Kozachenko–Leonenko entropy estimate (nats) of 3-D points, rank `k`,
/// with the support's boundary corrected: each point's k-NN ball counts only
/// its share inside the known support (`inside`; estimated on 256 fixed
/// probes of the ball), `Ĥ = ψ(N) − ψ(k) + mean ln(V_ball(ρ_k)·share)`.
/// Without the correction, KL's estimate of U[0,1]³ at N = 2000, k = 5 is
/// about +0.12 (balls reaching past the faces); with it, within 0.02.
pub fn knn_entropy(points: &[[f64; 3]], k: usize, inside: &dyn Fn(&[f64; 3]) -> bool) -> f64 {
    let n = points.len();
    if n <= k {
        return f64::NAN;
    }
    let probes = ball_probes();
    let mut log_v = 0.0;
    let mut d2 = vec![0f64; n];
    for (i, p) in points.iter().enumerate() {
        for (j, q) in points.iter().enumerate() {
            d2[j] = if i == j { f64::INFINITY } else { (0..3).map(|c| (p[c] - q[c]).powi(2)).sum() };
        }
        d2.select_nth_unstable_by(k - 1, f64::total_cmp);
        let rho = d2[k - 1].max(1e-300).sqrt();
        let hits = probes.iter().filter(|b| inside(&[p[0] + rho * b[0], p[1] + rho * b[1], p[2] + rho * b[2]])).count();
        let share = (hits.max(1) as f64) / BALL_PROBES as f64;
        log_v += (4.0 * std::f64::consts::PI / 3.0 * rho.powi(3) * share).ln();
    }
    digamma(n) - digamma(k) + log_v / n as f64
}

/// A Gaussian product KDE with Scott's bandwidth.
pub struct Kde {
    points: Vec<[f64; 3]>,
    h: [f64; 3],
}

impl Kde {
    pub fn fit(points: Vec<[f64; 3]>) -> Kde {
        let n = points.len().max(2) as f64;
        let mut h = [0f64; 3];
        for (j, hj) in h.iter_mut().enumerate() {
            let mean = points.iter().map(|p| p[j]).sum::<f64>() / n;
            let var = points.iter().map(|p| (p[j] - mean).powi(2)).sum::<f64>() / (n - 1.0);
            *hj = var.sqrt().max(1e-12) * n.powf(-1.0 / 7.0);
        }
        Kde { points, h }
    }

    pub fn density(&self, y: &[f64; 3]) -> f64 {
        let norm = (2.0 * std::f64::consts::PI).powf(1.5) * self.h.iter().product::<f64>();
        let sum: f64 = self
            .points
            .iter()
            .map(|p| (-0.5 * (0..3).map(|j| ((y[j] - p[j]) / self.h[j]).powi(2)).sum::<f64>()).exp())
            .sum();
        sum / (self.points.len().max(1) as f64 * norm)
    }
}

/// (`low_density_mass`, `mean_surprise`) of `samples`, and the reference's own
/// (its odd half), under the KDE of the reference's even half.
pub fn surprise(reference: &[[f64; 3]], samples: &[[f64; 3]]) -> ((f64, f64), (f64, f64)) {
    let even: Vec<[f64; 3]> = reference.iter().step_by(2).copied().collect();
    let odd: Vec<[f64; 3]> = reference.iter().skip(1).step_by(2).copied().collect();
    if even.len() < 2 || odd.is_empty() || samples.is_empty() {
        return ((f64::NAN, f64::NAN), (f64::NAN, f64::NAN));
    }
    let kde = Kde::fit(even);
    let dens = |set: &[[f64; 3]]| -> Vec<f64> { set.iter().map(|y| kde.density(y)).collect() };
    let (d_odd, d_s) = (dens(&odd), dens(samples));
    let mut sorted = d_odd.clone();
    sorted.sort_by(f64::total_cmp);
    let tau = quantile(&sorted, 0.10);
    let stats = |d: &[f64]| {
        let low = d.iter().filter(|p| **p < tau).count() as f64 / d.len() as f64;
        let surprise = d.iter().map(|p| -p.max(1e-300).ln()).sum::<f64>() / d.len() as f64;
        (low, surprise)
    };
    (stats(&d_s), stats(&d_odd))
}

/// numpy's default (linear) quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, frac) = (pos.floor() as usize, pos - pos.floor());
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + frac * (sorted[hi] - sorted[lo])
}

/// (`uv_coverage`, `uv_uniformity`) of sorted side triples.
pub fn uv_cells(points: &[[f64; 3]]) -> (f64, f64) {
    let g = UV_GRID;
    let centre = |i: usize| (i as f64 + 0.5) / g as f64;
    let feasible = |i: usize, j: usize| {
        let (u, v) = (centre(i), centre(j));
        u <= v && v <= 1.0 && u + v >= 1.0
    };
    let mut counts = vec![0usize; g * g];
    for p in points {
        let (u, v) = (p[0] / p[2], p[1] / p[2]);
        if !(0.0..=1.0).contains(&u) || !(0.0..=1.0).contains(&v) {
            continue;
        }
        let (i, j) = (((u * g as f64) as usize).min(g - 1), ((v * g as f64) as usize).min(g - 1));
        counts[i * g + j] += 1;
    }
    let cells: Vec<usize> = (0..g * g).filter(|c| feasible(c / g, c % g)).map(|c| counts[c]).collect();
    let total: usize = cells.iter().sum();
    if cells.is_empty() || total == 0 {
        return (0.0, 0.0);
    }
    let coverage = cells.iter().filter(|c| **c > 0).count() as f64 / cells.len() as f64;
    let entropy: f64 = cells
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = *c as f64 / total as f64;
            -p * p.ln()
        })
        .sum();
    (coverage, entropy / (cells.len() as f64).ln())
}

/// The shares (right, acute, obtuse, equilateral, isosceles, scalene) of classified triangles.
pub fn type_shares(sides: &[SideType], angles: &[AngleType]) -> [f64; 6] {
    let n = sides.len().max(1) as f64;
    let a = |t: AngleType| angles.iter().filter(|x| **x == t).count() as f64 / n;
    let s = |t: SideType| sides.iter().filter(|x| **x == t).count() as f64 / n;
    [
        a(AngleType::Right),
        a(AngleType::Acute),
        a(AngleType::Obtuse),
        s(SideType::Equilateral),
        s(SideType::Isosceles),
        s(SideType::Scalene),
    ]
}

/// The mean of the angle types' and the side types' total variation to [`UNIFORM_SHARES`].
pub fn type_tv_to_uniform(shares: &[f64; 6]) -> f64 {
    let tv = |r: std::ops::Range<usize>| 0.5 * r.map(|i| (shares[i] - UNIFORM_SHARES[i]).abs()).sum::<f64>();
    0.5 * (tv(0..3) + tv(3..6))
}

/// The metrics of one valid set's first samples (not the KDE ones).
fn own(points: &[[f64; 3]], set: &ValidSet, n: usize) -> [f64; 5] {
    let h = knn_entropy(&points[..points.len().min(KNN_N)], KNN_K, &in_wedge);
    let (cov, uni) = uv_cells(&points[..points.len().min(UV_N)]);
    let k = n.min(set.sides.len());
    let tv = type_tv_to_uniform(&type_shares(&set.sides[..k], &set.angles[..k]));
    [h, WEDGE_ENTROPY - h, cov, uni, tv]
}

/// The exploration metrics of `samples` against `reference`: (name, the
/// reference's value, the samples' value), both sets cut to the same size.
pub fn exploration_metrics(samples: &ValidSet, reference: &ValidSet) -> Vec<(&'static str, f64, f64)> {
    let n = samples.valid[0].len().min(reference.valid[0].len());
    let (s, r) = (sorted_valid(samples, n), sorted_valid(reference, n));
    let ((ldm, ms), (ldm_r, ms_r)) = surprise(&r[..r.len().min(KNN_N)], &s[..s.len().min(KNN_N)]);
    let (mine, theirs) = (own(&s, samples, n), own(&r, reference, n));
    let names = ["knn_entropy", "knn_entropy_gap", "uv_coverage", "uv_uniformity", "type_tv_to_uniform"];
    let mut rows = vec![("low_density_mass", ldm_r, ldm), ("mean_surprise", ms_r, ms)];
    rows.extend(names.iter().enumerate().map(|(i, name)| (*name, theirs[i], mine[i])));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::triangles::label::classify_all;
    use rand::{Rng, SeedableRng};
    use rand_distr::{Distribution, StandardNormal};

    fn uniform_triangles(n: usize, seed: u64) -> Vec<[f64; 3]> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let mut s: [f64; 3] = [rng.random(), rng.random(), rng.random()];
            s.sort_by(f64::total_cmp);
            if s[0] + s[1] > s[2] {
                out.push(s);
            }
        }
        out
    }

    #[test]
    fn knn_entropy_of_a_cube_and_a_gaussian() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let cube: Vec<[f64; 3]> = (0..2000).map(|_| [rng.random(), rng.random(), rng.random()]).collect();
        let in_cube = |p: &[f64; 3]| p.iter().all(|v| (0.0..=1.0).contains(v));
        let h = knn_entropy(&cube, KNN_K, &in_cube);
        assert!(h.abs() < 0.05, "U[0,1]³: {h}");
        // A Gaussian: the mean of 8 independent estimates (each at N = 2000,
        // whose own sampling error has sd about 0.03), so the check is on
        // the estimator's bias (about −0.04 nats at k = 5 here).
        for s in [0.1f64, 1.0] {
            let want = 1.5 * (2.0 * std::f64::consts::PI * std::f64::consts::E * s * s).ln();
            let mean = (0..8)
                .map(|_| {
                    let g: Vec<[f64; 3]> = (0..2000)
                        .map(|_| {
                            let mut z = || -> f64 {
                                let v: f64 = StandardNormal.sample(&mut rng);
                                s * v
                            };
                            [z(), z(), z()]
                        })
                        .collect();
                    knn_entropy(&g, KNN_K, &|_| true)
                })
                .sum::<f64>()
                / 8.0;
            assert!((mean - want).abs() < 0.05, "N(0, {s}²I): {mean} vs {want}");
        }
        // The uniform wedge comes near its ceiling ln(1/12).
        let h = knn_entropy(&uniform_triangles(2000, 2), KNN_K, &in_wedge);
        assert!((h - WEDGE_ENTROPY).abs() < 0.05, "wedge: {h} vs {WEDGE_ENTROPY}");
        assert!((digamma(1) + 0.5772156649015329).abs() < 1e-15);
    }

    #[test]
    fn uniform_triangles_cover_the_shape_map() {
        let (cov, uni) = uv_cells(&uniform_triangles(UV_N, 3));
        assert!(cov >= 0.97, "coverage {cov}");
        assert!(uni > 0.95, "uniformity {uni}");
        // A point mass covers one cell.
        let (cov, uni) = uv_cells(&[[0.5, 0.7, 0.8]; 100]);
        assert!(cov < 0.02 && uni == 0.0, "{cov} {uni}");
    }

    /// The uniform-triangle shares, by our own Monte Carlo (300 000 draws).
    #[test]
    fn uniform_shares_by_monte_carlo() {
        let t = uniform_triangles(300_000, 4);
        let col = |j: usize| t.iter().map(|s| s[j]).collect::<Vec<f64>>();
        let (sides, angles) = classify_all(&col(0), &col(1), &col(2), 0.01);
        let shares = type_shares(&sides, &angles);
        for (i, (got, want)) in shares.iter().zip(UNIFORM_SHARES).enumerate() {
            let tol = if want < 0.01 { 0.0005 } else { 0.004 };
            assert!((got - want).abs() < tol, "share {i}: {got} vs {want}");
        }
        assert!(type_tv_to_uniform(&shares) < 0.005);
        assert!((type_tv_to_uniform(&[0.0, 0.56, 0.44, 0.0, 0.063, 0.937]) - 0.1).abs() < 0.05);
    }

    /// The reference against itself: 10 % below the threshold by construction;
    /// a wider set has more low-density mass and more surprise.
    #[test]
    fn low_density_mass_is_a_tenth_for_the_reference() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut gauss = |s: f64| -> Vec<[f64; 3]> {
            (0..2000)
                .map(|_| {
                    let mut z = || {
                        let v: f64 = StandardNormal.sample(&mut rng);
                        0.5 + s * v
                    };
                    [z(), z(), z()]
                })
                .collect()
        };
        let (narrow, wide) = (gauss(0.05), gauss(0.1));
        let ((ldm, ms), (ldm_ref, ms_ref)) = surprise(&narrow, &narrow[..1000]);
        assert!((ldm_ref - 0.10).abs() < 0.01, "{ldm_ref}");
        assert!((ldm - 0.10).abs() < 0.05 && (ms - ms_ref).abs() < 0.3, "{ldm} {ms} {ms_ref}");
        let ((ldm_w, ms_w), _) = surprise(&narrow, &wide);
        assert!(ldm_w > 0.4 && ms_w > ms_ref + 1.0, "{ldm_w} {ms_w}");
    }
}
