//! Invariant particle systems as DEM defines them: DW-4 and Lennard-Jones
//! clusters (LJ-13, LJ-55).
//!
//! A configuration is `n` particles in `d` dimensions, flattened particle-major
//! (`x = [p₀ₓ, p₀ᵧ, p₁ₓ, …]`, DEM's layout). Both energies depend on the
//! particles only through their pairwise distances (and, for Lennard-Jones,
//! the distances to the centre of mass), so they are invariant under
//! rotations, reflections, translations and permutations of the particles,
//! and their gradients are equivariant and sum to zero (mean-free).
//!
//! * **DW-4** (DEM's `MultiDoubleWellEnergy`, bgflow's
//!   `MultiDoubleWellPotential` with `a = 0.9, b = −4, c = 0, offset = 4`):
//!   `E(x) = Σ_{i<j} a (r_ij − 4)⁴ + b (r_ij − 4)² + c`, `r_ij = ‖x_i − x_j‖`
//!   (bgflow's `compute_distances`: each unordered pair once, no smoothing).
//! * **Lennard-Jones** (DEM's `LennardJonesPotential`, `eps = rm = 1`,
//!   oscillator scale 1, `energy_factor` 1):
//!   `E(x) = Σ_{i≠j} ε[(r_m/r_ij)¹² − 2(r_m/r_ij)⁶] + ½ Σ_i ‖x_i − x̄‖²`, where
//!   the sum runs over **ordered** pairs (bgflow's `distance_vectors` keeps
//!   both `i−j` and `j−i`, so every pair counts twice; DEM's comment: set
//!   `energy_factor = 0.5` to match the single-counted energy) and
//!   `r_ij = √(‖x_i − x_j‖² + 10⁻⁶)` (bgflow's `distances_from_vectors`).
//!   No clamp (DEM's `clip(−1e4, 1e4)` is commented out).
//!
//! [`lj_pair_energy`] is the textbook single-counted cluster energy, in which
//! the published global minima are stated (LJ-13: −44.326801, LJ-55:
//! −279.248470, Cambridge Cluster Database); [`icosahedron`] builds the
//! Mackay icosahedra those minima are, and [`relax`] relaxes any configuration
//! under any energy.

use super::Energy;

/// Which particle system, with DEM's constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum System {
    /// Pairwise double wells.
    DoubleWell { a: f64, b: f64, c: f64, offset: f64 },
    /// Lennard-Jones with a harmonic pull to the centre of mass.
    /// `dist_eps` regularises `r² → r² + dist_eps` (DEM: [`LJ_DIST_EPS`]).
    LennardJones { eps: f64, rm: f64, oscillator: f64, factor: f64, dist_eps: f64 },
}

/// `n` particles in `d` dimensions under a [`System`].
#[derive(Debug, Clone, PartialEq)]
pub struct Particles {
    pub n: usize,
    pub d: usize,
    pub system: System,
}

/// bgflow's `distances_from_vectors` regulariser: `r = √(‖Δ‖² + 10⁻⁶)`.
pub const LJ_DIST_EPS: f64 = 1e-6;

impl Particles {
    /// DEM's DW-4: 4 particles in 2-D.
    pub fn dw4() -> Particles {
        Particles { n: 4, d: 2, system: System::DoubleWell { a: 0.9, b: -4.0, c: 0.0, offset: 4.0 } }
    }
    /// DEM's Lennard-Jones cluster of `n` particles in 3-D (LJ-13, LJ-55).
    pub fn lj(n: usize) -> Particles {
        Particles {
            n,
            d: 3,
            system: System::LennardJones { eps: 1.0, rm: 1.0, oscillator: 1.0, factor: 1.0, dist_eps: LJ_DIST_EPS },
        }
    }
    /// By DEM's name: `dw4`, `lj13`, `lj55`.
    pub fn by_name(name: &str) -> Option<Particles> {
        match name {
            "dw4" => Some(Particles::dw4()),
            "lj13" => Some(Particles::lj(13)),
            "lj55" => Some(Particles::lj(55)),
            _ => None,
        }
    }

    /// `E(x)`, and `∇E(x)` written to `grad` when given.
    pub fn energy(&self, x: &[f64], mut grad: Option<&mut [f64]>) -> f64 {
        let (n, d) = (self.n, self.d);
        debug_assert_eq!(x.len(), n * d);
        if let Some(g) = grad.as_deref_mut() {
            g.iter_mut().for_each(|v| *v = 0.0);
        }
        let mut e = 0.0;
        let mut delta = [0.0f64; 3];
        for i in 0..n {
            for j in i + 1..n {
                let mut r2 = 0.0;
                for k in 0..d {
                    delta[k] = x[i * d + k] - x[j * d + k];
                    r2 += delta[k] * delta[k];
                }
                // (pair energy, dE/dr / r) for the unordered pair.
                let (pe, de_over_r) = match self.system {
                    System::DoubleWell { a, b, c, offset } => {
                        let r = r2.sqrt();
                        let s = r - offset;
                        let de = 4.0 * a * s * s * s + 2.0 * b * s;
                        // At r = 0 the direction is undefined; the gradient is
                        // taken as zero there (a set of measure zero).
                        (a * s.powi(4) + b * s * s + c, if r > 0.0 { de / r } else { 0.0 })
                    }
                    System::LennardJones { eps, rm, factor, dist_eps, .. } => {
                        let rr = r2 + dist_eps;
                        // (rm/r)^6 from r² without a square root.
                        let inv6 = (rm * rm / rr).powi(3);
                        // Ordered pairs: twice the unordered sum.
                        let pe = 2.0 * factor * eps * (inv6 * inv6 - 2.0 * inv6);
                        // dE/dr = 2·f·ε·(−12 s¹² + 12 s⁶)/r; divided by r: over r².
                        let de_over_r = 2.0 * factor * eps * 12.0 * (inv6 - inv6 * inv6) / rr;
                        (pe, de_over_r)
                    }
                };
                e += pe;
                if let Some(g) = grad.as_deref_mut() {
                    for k in 0..d {
                        let f = de_over_r * delta[k];
                        g[i * d + k] += f;
                        g[j * d + k] -= f;
                    }
                }
            }
        }
        if let System::LennardJones { oscillator, .. } = self.system {
            let mut mean = [0.0f64; 3];
            for i in 0..n {
                for k in 0..d {
                    mean[k] += x[i * d + k] / n as f64;
                }
            }
            let mut osc = 0.0;
            for i in 0..n {
                for k in 0..d {
                    let c = x[i * d + k] - mean[k];
                    osc += c * c;
                    if let Some(g) = grad.as_deref_mut() {
                        // ∂/∂x_i ½Σ‖x_k − x̄‖² = x_i − x̄ (the Σ(x_k − x̄) term is zero).
                        g[i * d + k] += oscillator * c;
                    }
                }
            }
            e += 0.5 * oscillator * osc;
        }
        e
    }

    /// The interatomic distances `‖x_i − x_j‖`, `i < j` (DEM's
    /// `interatomic_dist`, no regulariser), appended to `out`.
    pub fn distances(&self, x: &[f64], out: &mut Vec<f64>) {
        let (n, d) = (self.n, self.d);
        for i in 0..n {
            for j in i + 1..n {
                out.push((0..d).map(|k| (x[i * d + k] - x[j * d + k]).powi(2)).sum::<f64>().sqrt());
            }
        }
    }
}

impl Energy for Particles {
    fn dim(&self) -> usize {
        self.n * self.d
    }
    fn log_prob(&self, x: &[f64]) -> f64 {
        -self.energy(x, None)
    }
    fn grad_log_prob(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        let e = self.energy(x, Some(grad));
        grad.iter_mut().for_each(|g| *g = -*g);
        -e
    }
    fn particles(&self) -> Option<(usize, usize)> {
        Some((self.n, self.d))
    }
}

/// Subtract each configuration's centre of mass (DEM's `remove_mean`), in place,
/// for a batch of `n × d` configurations.
pub fn remove_mean(xs: &mut [f64], n: usize, d: usize) {
    for x in xs.chunks_mut(n * d) {
        for k in 0..d {
            let m = (0..n).map(|i| x[i * d + k]).sum::<f64>() / n as f64;
            (0..n).for_each(|i| x[i * d + k] -= m);
        }
    }
}

/// The textbook Lennard-Jones cluster energy `Σ_{i<j} 4[(σ/r)¹² − (σ/r)⁶]` with
/// pair minimum −1 at `r = 2^{1/6}σ` (σ = 2^{−1/6}: the same as DEM's `rm = 1`),
/// each pair once, no regulariser (it moves a pair at `r ≈ 1` by about 10⁻⁵),
/// no oscillator: the units in which published cluster minima are stated.
pub fn lj_pair_energy(x: &[f64], n: usize, d: usize, grad: Option<&mut [f64]>) -> f64 {
    let textbook = Particles {
        n,
        d,
        system: System::LennardJones { eps: 1.0, rm: 1.0, oscillator: 0.0, factor: 0.5, dist_eps: 0.0 },
    };
    textbook.energy(x, grad)
}

/// The Mackay icosahedron of `1 + Σ_{s=1}^{shells} (10 s² + 2)` particles
/// (13 for one shell, 55 for two) with nearest-neighbour spacing about `r`:
/// a central particle, then per shell `s` the 12 vertices of an icosahedron
/// of radius `s·R` and the points dividing its 30 edges into `s` equal
/// parts (and, from the third shell, the faces' interior lattice points).
pub fn icosahedron(shells: usize, r: f64) -> Vec<f64> {
    let phi = (1.0 + 5f64.sqrt()) / 2.0;
    let mut v: Vec<[f64; 3]> = Vec::new();
    for &(a, b) in &[(1.0, phi), (-1.0, phi), (1.0, -phi), (-1.0, -phi)] {
        v.push([0.0, a, b]);
        v.push([a, b, 0.0]);
        v.push([b, 0.0, a]);
    }
    // Edge length of this icosahedron is 2; scale edges to r.
    let unit = |p: [f64; 3], s: f64| [p[0] * s, p[1] * s, p[2] * s];
    let edge = 2.0;
    let dist2 = |a: [f64; 3], b: [f64; 3]| (0..3).map(|k| (a[k] - b[k]).powi(2)).sum::<f64>();
    let mut edges = Vec::new();
    for i in 0..12 {
        for j in i + 1..12 {
            if (dist2(v[i], v[j]) - edge * edge).abs() < 1e-9 {
                edges.push((i, j));
            }
        }
    }
    let mut faces = Vec::new();
    for &(i, j) in &edges {
        for k in j + 1..12 {
            if edges.contains(&(i, k)) && edges.contains(&(j, k)) {
                faces.push((i, j, k));
            }
        }
    }
    let mut out: Vec<[f64; 3]> = vec![[0.0; 3]];
    for s in 1..=shells {
        let scale = s as f64 * r / edge;
        let verts: Vec<[f64; 3]> = v.iter().map(|&p| unit(p, scale)).collect();
        let lerp = |a: [f64; 3], b: [f64; 3], t: f64| {
            [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
        };
        out.extend(verts.iter().copied());
        for &(i, j) in &edges {
            for m in 1..s {
                out.push(lerp(verts[i], verts[j], m as f64 / s as f64));
            }
        }
        for &(i, j, k) in &faces {
            for a in 1..s {
                for b in 1..s - a {
                    let (ta, tb) = (a as f64 / s as f64, b as f64 / s as f64);
                    let p = [0, 1, 2]
                        .map(|c| verts[i][c] + (verts[j][c] - verts[i][c]) * ta + (verts[k][c] - verts[i][c]) * tb);
                    out.push(p);
                }
            }
        }
    }
    out.into_iter().flatten().collect()
}

/// Relax `x` to a local minimum of `energy` (`E`, `∇E` into the slice) by
/// gradient descent with a backtracking step; stops when the gradient's
/// largest entry is below `tol` or after `max_iter` steps. Returns the final
/// energy.
pub fn relax(x: &mut [f64], energy: &dyn Fn(&[f64], &mut [f64]) -> f64, tol: f64, max_iter: usize) -> f64 {
    let mut g = vec![0.0; x.len()];
    let mut trial = x.to_vec();
    let mut gt = vec![0.0; x.len()];
    let mut e = energy(x, &mut g);
    let mut step = 1e-3;
    for _ in 0..max_iter {
        if g.iter().fold(0.0f64, |m, v| m.max(v.abs())) < tol {
            break;
        }
        loop {
            trial.iter_mut().zip(x.iter().zip(&g)).for_each(|(t, (v, gv))| *t = v - step * gv);
            let et = energy(&trial, &mut gt);
            if et < e {
                x.copy_from_slice(&trial);
                std::mem::swap(&mut g, &mut gt);
                e = et;
                step *= 1.2;
                break;
            }
            step *= 0.5;
            if step < 1e-16 {
                return e;
            }
        }
    }
    e
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::numerics::energy::tests::check_gradient;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;

    fn random_config(p: &Particles, scale: f64, seed: u64) -> Vec<f64> {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..p.n * p.d).map(|_| scale * r.sample::<f64, _>(StandardNormal)).collect()
    }

    #[test]
    fn gradients_match_finite_differences() {
        for (p, scale) in [(Particles::dw4(), 2.0), (Particles::lj(13), 1.0), (Particles::lj(55), 1.8)] {
            for seed in 0..3 {
                // Spread the LJ particles out so no pair sits on the r⁻¹² wall,
                // where central differences lose their digits.
                let mut x = random_config(&p, scale, seed);
                if p.d == 3 {
                    x = icosahedron(if p.n == 13 { 1 } else { 2 }, 1.1);
                    let noise = random_config(&p, 0.05, seed);
                    x.iter_mut().zip(noise).for_each(|(v, z)| *v += z);
                }
                check_gradient(&p, &x, 1e-5);
            }
        }
    }

    /// The DW-4 pair term is bgflow's: a(r−4)⁴ + b(r−4)² over unordered pairs.
    #[test]
    fn dw4_by_hand() {
        // A unit square with side 3: 4 sides of r = 3, 2 diagonals of r = 3√2.
        let x = [0.0, 0.0, 3.0, 0.0, 3.0, 3.0, 0.0, 3.0];
        let pair = |r: f64| 0.9 * (r - 4.0).powi(4) - 4.0 * (r - 4.0).powi(2);
        let want = 4.0 * pair(3.0) + 2.0 * pair(3.0 * 2f64.sqrt());
        assert!((Particles::dw4().energy(&x, None) - want).abs() < 1e-12);
    }

    /// DEM's Lennard-Jones is twice the pair sum (ordered pairs) plus the
    /// oscillator, with r² regularised by 10⁻⁶.
    #[test]
    fn lj_is_dems_ordered_pair_sum() {
        // Two particles at distance 1 plus one far away on the axis.
        let x: [f64; 9] = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.5, 2.0, 0.0];
        let p = Particles::lj(3);
        let lj = |r2: f64| {
            let s6 = (1.0 / (r2 + 1e-6)).powi(3);
            s6 * s6 - 2.0 * s6
        };
        let r2 = [1.0, 0.25 + 4.0, 0.25 + 4.0];
        let mean: [f64; 3] = [0.5, 2.0 / 3.0, 0.0];
        let osc: f64 = x.chunks(3).map(|q| (0..3).map(|k| (q[k] - mean[k]).powi(2)).sum::<f64>()).sum();
        let want = 2.0 * r2.iter().map(|&r| lj(r)).sum::<f64>() + 0.5 * osc;
        assert!((p.energy(&x, None) - want).abs() < 1e-12, "{} vs {want}", p.energy(&x, None));
    }

    /// The relaxed 13- and 55-particle Mackay icosahedra reach the published
    /// global minima of the Lennard-Jones cluster (Cambridge Cluster Database:
    /// LJ₁₃ −44.326801, LJ₅₅ −279.248470, in units of the pair well depth).
    #[test]
    fn lj_global_minima_are_the_published_constants() {
        for (shells, n, want) in [(1, 13, -44.326801), (2, 55, -279.248470)] {
            let mut x = icosahedron(shells, 1.0);
            assert_eq!(x.len(), n * 3);
            let e = relax(&mut x, &|x, g| lj_pair_energy(x, n, 3, Some(g)), 1e-9, 200_000);
            assert!((e - want).abs() < 2e-6, "LJ-{n}: {e} vs {want}");
        }
    }

    /// E is invariant, and ∇E equivariant, under a random rotation,
    /// reflection, translation and permutation of the particles.
    #[test]
    fn energy_is_invariant_and_gradient_equivariant() {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for p in [Particles::dw4(), Particles::lj(13)] {
            let x = random_config(&p, 1.5, 3);
            let q = random_orthogonal(p.d, &mut r);
            let shift: Vec<f64> = (0..p.d).map(|_| r.random_range(-5.0..5.0)).collect();
            let mut perm: Vec<usize> = (0..p.n).collect();
            for i in (1..p.n).rev() {
                perm.swap(i, r.random_range(0..=i));
            }
            let transform = |x: &[f64], translate: bool| -> Vec<f64> {
                let mut y = vec![0.0; x.len()];
                for (dst, &src) in perm.iter().enumerate() {
                    for a in 0..p.d {
                        let v: f64 = (0..p.d).map(|b| q[a * p.d + b] * x[src * p.d + b]).sum();
                        y[dst * p.d + a] = v + if translate { shift[a] } else { 0.0 };
                    }
                }
                y
            };
            let y = transform(&x, true);
            let (mut gx, mut gy) = (vec![0.0; x.len()], vec![0.0; x.len()]);
            let (ex, ey) = (p.energy(&x, Some(&mut gx)), p.energy(&y, Some(&mut gy)));
            assert!((ex - ey).abs() < 1e-9 * ex.abs().max(1.0), "{ex} vs {ey}");
            let gx_t = transform(&gx, false);
            for (a, b) in gx_t.iter().zip(&gy) {
                assert!((a - b).abs() < 1e-8 * a.abs().max(1.0), "{a} vs {b}");
            }
            // Mean-free gradient.
            for k in 0..p.d {
                let s: f64 = (0..p.n).map(|i| gx[i * p.d + k]).sum();
                assert!(s.abs() < 1e-9 * ex.abs().max(1.0));
            }
        }
    }

    /// A uniformly random orthogonal matrix (`d × d`, row-major), reflections included.
    pub(crate) fn random_orthogonal(d: usize, r: &mut impl Rng) -> Vec<f64> {
        // Gram–Schmidt on Gaussian columns.
        let mut q: Vec<Vec<f64>> = Vec::new();
        while q.len() < d {
            let mut v: Vec<f64> = (0..d).map(|_| r.sample::<f64, _>(StandardNormal)).collect();
            for u in &q {
                let dot: f64 = u.iter().zip(&v).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(u).for_each(|(x, y)| *x -= dot * y);
            }
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            q.push(v);
        }
        q.into_iter().flatten().collect()
    }

    #[test]
    fn remove_mean_centres_each_configuration() {
        let mut xs = random_config(&Particles::lj(13), 1.0, 1);
        xs.extend(random_config(&Particles::lj(13), 1.0, 2));
        remove_mean(&mut xs, 13, 3);
        for x in xs.chunks(39) {
            for k in 0..3 {
                assert!((0..13).map(|i| x[i * 3 + k]).sum::<f64>().abs() < 1e-12);
            }
        }
    }
}
