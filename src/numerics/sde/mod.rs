//! The diffusion processes and their samplers: the Ornstein–Uhlenbeck SDE
//! and its predictor–corrector sampler ([`sampler`]) of the S-MEME workload
//! (seed 000), the discrete-time DDPM and its samplers ([`ddpm`]) of the
//! two-moons workload (seed 002), and the variance-exploding SDE ([`ve`])
//! iDEM integrates (seed 001).
//!
//! The OU forward process is `dx = −λx dt + σ dW`
//! (seed: λ = 0.3, σ = 0.5, T = 1). Its transition from `x0` is Gaussian with the
//! closed forms
//!
//! * mean  `m(t) = x0·e^(−λt)`
//! * var   `v(t) = σ²/(2λ)·(1 − e^(−2λt))`
//! * score `∇ log p(xt | x0) = −(xt − m)/v`
//!
//! [`ou_pairs`] draws denoising-score-matching training pairs as the seed's
//! `OUDiffusionDatasetVectorized` does: per row, `x0` uniformly from the pool (with
//! replacement), `t ~ U(0, T]`, `xt = m + √v·z`. **Small t**: `t` is drawn as
//! `T·(1 − u)` with `u ∈ [0, 1)`, so `t > 0` and `v > 0` always; the conditional
//! score grows like `1/√v` near 0, which the variance-weighted loss
//! (`v/mean(v)·(score − s)²`, i.e. `z²/mean(v)` at the target) keeps bounded, so
//! no clamp is needed. Nothing here does I/O.

pub mod ddpm;
pub mod sampler;
pub mod ve;

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// The OU forward process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ou {
    pub lambda: f64,
    pub sigma: f64,
}

impl Ou {
    /// The seed's coefficients.
    pub const SEED: Ou = Ou { lambda: 0.3, sigma: 0.5 };

    /// Drift `f(x, t) = −λx` (per coordinate).
    pub fn drift(&self, x: f64) -> f64 {
        -self.lambda * x
    }
    /// Diffusion `g(t) = σ`.
    pub fn diffusion(&self) -> f64 {
        self.sigma
    }
    /// `e^(−λt)`: the mean is `x0` times this.
    pub fn mean_coeff(&self, t: f64) -> f64 {
        (-self.lambda * t).exp()
    }
    /// `σ²/(2λ)·(1 − e^(−2λt))`.
    pub fn var(&self, t: f64) -> f64 {
        self.sigma * self.sigma / (2.0 * self.lambda) * (1.0 - (-2.0 * self.lambda * t).exp())
    }
}

/// One batch of training pairs, row-major with `dim` columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Pairs {
    pub dim: usize,
    pub t: Vec<f32>,
    pub x0: Vec<f32>,
    pub xt: Vec<f32>,
    pub mean: Vec<f32>,
    /// One variance per row (the process is isotropic).
    pub var: Vec<f32>,
    pub score: Vec<f32>,
}

/// Draw `batch` training pairs from `pool` (row-major, `dim` columns).
pub fn ou_pairs(pool: &[f32], dim: usize, batch: usize, ou: Ou, t_max: f64, rng: &mut impl Rng) -> Pairs {
    let n = pool.len() / dim;
    assert!(n > 0, "empty training pool");
    let mut p = Pairs {
        dim,
        t: Vec::with_capacity(batch),
        x0: Vec::with_capacity(batch * dim),
        xt: Vec::with_capacity(batch * dim),
        mean: Vec::with_capacity(batch * dim),
        var: Vec::with_capacity(batch),
        score: Vec::with_capacity(batch * dim),
    };
    for _ in 0..batch {
        let row = rng.random_range(0..n);
        let u: f64 = rng.random();
        let t = t_max * (1.0 - u);
        let (c, v) = (ou.mean_coeff(t), ou.var(t));
        let sd = v.sqrt();
        p.t.push(t as f32);
        p.var.push(v as f32);
        for j in 0..dim {
            let x0 = pool[row * dim + j] as f64;
            let z: f64 = StandardNormal.sample(rng);
            let m = x0 * c;
            let xt = m + sd * z;
            p.x0.push(x0 as f32);
            p.mean.push(m as f32);
            p.xt.push(xt as f32);
            p.score.push((-(xt - m) / v) as f32);
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn transition_moments_match_simulation() {
        // Simulate dx = −λx dt + σ dW with fine Euler–Maruyama steps from x0 = 0.8.
        let ou = Ou::SEED;
        let (x0, t, steps, n) = (0.8f64, 0.7f64, 700usize, 20_000usize);
        let dt = t / steps as f64;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut xs = vec![x0; n];
        for _ in 0..steps {
            for x in &mut xs {
                let z: f64 = StandardNormal.sample(&mut rng);
                *x += ou.drift(*x) * dt + ou.diffusion() * dt.sqrt() * z;
            }
        }
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let (m, v) = (x0 * ou.mean_coeff(t), ou.var(t));
        assert!((mean - m).abs() < 4.0 * (v / n as f64).sqrt(), "mean {mean} vs {m}");
        assert!((var / v - 1.0).abs() < 0.04, "var {var} vs {v}");
    }

    #[test]
    fn conditional_score_is_the_gradient_of_the_log_density() {
        let ou = Ou::SEED;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let pool = [0.2f32, -0.4, 0.9];
        let p = ou_pairs(&pool, 3, 50, ou, 1.0, &mut rng);
        for r in 0..50 {
            let v = p.var[r] as f64;
            for j in 0..3 {
                let (x, m) = (p.xt[3 * r + j] as f64, p.mean[3 * r + j] as f64);
                let logp = |x: f64| -(x - m).powi(2) / (2.0 * v) - 0.5 * (2.0 * std::f64::consts::PI * v).ln();
                let h = 1e-5 * v.sqrt();
                let fd = (logp(x + h) - logp(x - h)) / (2.0 * h);
                let s = p.score[3 * r + j] as f64;
                assert!((fd - s).abs() <= 1e-3 * s.abs().max(1.0), "fd {fd} vs score {s}");
            }
            assert!(p.t[r] > 0.0 && p.t[r] <= 1.0);
        }
    }
}
