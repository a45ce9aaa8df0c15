//! Gaussian mixtures with equal weights and one isotropic scale, and GMM-40 as
//! DEM builds it.
//!
//! DEM's `GMM` energy (`dem/energies/gmm_energy.py`) calls `torch.manual_seed(0)`
//! and builds FAB's `GMM(dim=2, n_mixes=40, loc_scaling=40, log_var_scaling=1)`:
//! means `(torch.rand(40, 2) − 0.5)·2·40` (float32), every component's scale
//! `softplus(1) ≈ 1.3133` on each axis, equal weights. Its log-density is the
//! mixture's, set to −∞ below −10⁴ (FAB masks very unlikely points so they
//! carry no weight); the gradient is the mixture's everywhere. DEM trains on
//! the data divided by 50 (`data_normalization_factor`).

use rand::Rng;
use rand_distr::StandardNormal;

use super::Energy;

/// log-densities below this are −∞ (FAB's mask).
pub const LOG_PROB_FLOOR: f64 = -1e4;

/// An equal-weight mixture of `N(μ_k, σ² I)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Gmm {
    dim: usize,
    /// `n × dim`, row-major.
    means: Vec<f64>,
    std: f64,
    /// Apply FAB's −∞ floor to `log_prob`.
    masked: bool,
    /// `log` of the normalising constant, `−(d/2)·log(2πσ²) − log n`.
    log_norm: f64,
}

fn log_norm(dim: usize, std: f64, n: usize) -> f64 {
    // The expression eval used to compute per call, kept bit for bit.
    let inv_var = 1.0 / (std * std);
    -0.5 * dim as f64 * (2.0 * std::f64::consts::PI / inv_var).ln() - (n as f64).ln()
}

impl Gmm {
    pub fn new(dim: usize, means: Vec<f64>, std: f64) -> Gmm {
        assert!(dim > 0 && !means.is_empty() && means.len().is_multiple_of(dim) && std > 0.0);
        let log_norm = log_norm(dim, std, means.len() / dim);
        Gmm { dim, means, std, masked: false, log_norm }
    }

    /// GMM-40 exactly as DEM: 40 means from `torch.manual_seed(0)`, scale softplus(1), FAB's mask.
    pub fn dem40() -> Gmm {
        let (n, dim, loc_scaling) = (40, 2, 40.0f32);
        let u = super::torch_rng::rand_f32(0, n * dim);
        // In float32, as torch computes it.
        let means = u.iter().map(|&r| ((r - 0.5) * 2.0 * loc_scaling) as f64).collect();
        let softplus1 = (1.0f64.exp()).ln_1p();
        Gmm { masked: true, ..Gmm::new(dim, means, softplus1) }
    }

    /// The same mixture without FAB's −∞ floor. A Monte Carlo score estimate
    /// is the same with or without it wherever one of its samples is above the
    /// floor (the floored ones carry weight `e^{−10⁴}` relative to it anyway);
    /// where every sample is below it, DEM's estimate is NaN and this one is
    /// the mixture's.
    pub fn unmasked(self) -> Gmm {
        Gmm { masked: false, ..self }
    }

    pub fn n_components(&self) -> usize {
        self.means.len() / self.dim
    }
    pub fn mean(&self, k: usize) -> &[f64] {
        &self.means[k * self.dim..(k + 1) * self.dim]
    }
    pub fn std(&self) -> f64 {
        self.std
    }

    /// The same mixture convolved with `N(0, h I)` (the law of `x + √h·z`):
    /// its score is the exact noised score `∇ log p_t`.
    pub fn noised(&self, h: f64) -> Gmm {
        Gmm::new(self.dim, self.means.clone(), (self.std * self.std + h).sqrt())
    }

    /// The mixture of `x / s` (DEM's normalised coordinates: `s = 50`).
    pub fn rescaled(&self, s: f64) -> Gmm {
        let g = Gmm::new(self.dim, self.means.iter().map(|m| m / s).collect(), self.std / s);
        Gmm { masked: self.masked, ..g }
    }

    /// `n` exact samples, `n × dim` row-major: a component uniformly, then its normal.
    pub fn sample<R: Rng>(&self, n: usize, rng: &mut R) -> Vec<f64> {
        self.sample_labelled(n, rng).0
    }

    /// [`Gmm::sample`], and the component each sample was drawn from.
    pub fn sample_labelled<R: Rng>(&self, n: usize, rng: &mut R) -> (Vec<f64>, Vec<usize>) {
        let mut out = Vec::with_capacity(n * self.dim);
        let mut components = Vec::with_capacity(n);
        for _ in 0..n {
            let k = rng.random_range(0..self.n_components());
            for d in 0..self.dim {
                let z: f64 = rng.sample(StandardNormal);
                out.push(self.mean(k)[d] + self.std * z);
            }
            components.push(k);
        }
        (out, components)
    }

    /// log p at `x` and, when `grad` is given, `∇ log p` written to it, in one
    /// pass over the components: each component's logit `−|x − μ_k|²/(2σ²)`,
    /// then softmax weights. A component more than 36 nats below the largest
    /// (weight < 2.3·10⁻¹⁶, under f64's resolution of the sum) is skipped, so
    /// usually only the nearest few cost an exponential.
    fn eval(&self, x: &[f64], grad: Option<&mut [f64]>) -> f64 {
        const MAX_COMPONENTS_ON_STACK: usize = 64;
        let n = self.n_components();
        let mut heap = Vec::new();
        let mut stack = [0.0f64; MAX_COMPONENTS_ON_STACK];
        let logits: &mut [f64] = if n <= MAX_COMPONENTS_ON_STACK {
            &mut stack[..n]
        } else {
            heap.resize(n, 0.0);
            &mut heap
        };
        let inv_var = 1.0 / (self.std * self.std);
        let mut max = f64::NEG_INFINITY;
        for (k, l) in logits.iter_mut().enumerate() {
            let d2: f64 = self.mean(k).iter().zip(x).map(|(m, v)| (v - m) * (v - m)).sum();
            *l = -0.5 * d2 * inv_var;
            max = max.max(*l);
        }
        let mut total = 0.0;
        let mut grad = grad;
        if let Some(g) = grad.as_deref_mut() {
            g.iter_mut().for_each(|v| *v = 0.0);
        }
        for (k, l) in logits.iter().enumerate() {
            let rel = l - max;
            if rel < -36.0 {
                continue;
            }
            let w = rel.exp();
            total += w;
            if let Some(g) = grad.as_deref_mut() {
                for (gi, (m, v)) in g.iter_mut().zip(self.mean(k).iter().zip(x)) {
                    *gi += w * (m - v) * inv_var;
                }
            }
        }
        if let Some(g) = grad {
            g.iter_mut().for_each(|v| *v /= total);
        }
        max + total.ln() + self.log_norm
    }

    fn mask(&self, lp: f64) -> f64 {
        if self.masked && lp < LOG_PROB_FLOOR { f64::NEG_INFINITY } else { lp }
    }

    /// The index of the nearest mean.
    pub fn nearest_mode(&self, x: &[f64]) -> (usize, f64) {
        (0..self.n_components())
            .map(|k| (k, self.mean(k).iter().zip(x).map(|(m, v)| (v - m) * (v - m)).sum::<f64>().sqrt()))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("at least one component")
    }
}

impl Energy for Gmm {
    fn dim(&self) -> usize {
        self.dim
    }

    fn log_prob(&self, x: &[f64]) -> f64 {
        self.mask(self.eval(x, None))
    }

    fn grad_log_prob(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        self.mask(self.eval(x, Some(grad)))
    }

    fn noised_log_prob(&self, x: &[f64], h: f64) -> Option<f64> {
        Some(self.noised(h).log_prob(x))
    }

    fn noised_score(&self, x: &[f64], h: f64, grad: &mut [f64]) -> bool {
        self.noised(h).grad_log_prob(x, grad);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn gmm40_is_dems() {
        let g = Gmm::dem40();
        assert_eq!((g.n_components(), g.dim()), (40, 2));
        // The issue pins DEM's first mean: (−0.2995, 21.4577).
        assert!((g.mean(0)[0] - -0.2995).abs() < 1e-3 && (g.mean(0)[1] - 21.4577).abs() < 1e-3, "{:?}", g.mean(0));
        assert!((g.std() - 1.313_261_687_518_222_8).abs() < 1e-12);
        assert!(g.means.iter().all(|m| m.abs() <= 40.0));
        // Far from every mode the density is masked to −∞, as FAB does.
        assert_eq!(g.log_prob(&[500.0, 500.0]), f64::NEG_INFINITY);
    }

    #[test]
    fn the_gradient_is_the_log_densitys() {
        let g = Gmm::dem40();
        for x in [[0.0, 0.0], [-0.3, 21.0], [10.0, -35.0], [3.3, 4.4]] {
            crate::numerics::energy::tests::check_gradient(&g, &x, 1e-6);
        }
        let scaled = crate::numerics::energy::Scaled { energy: &g, scale: 50.0 };
        crate::numerics::energy::tests::check_gradient(&scaled, &[0.01, 0.42], 1e-5);
    }

    #[test]
    fn the_log_density_is_normalised() {
        // Riemann sum over a box holding all the mass.
        let g = Gmm::dem40();
        let (lo, hi, n) = (-50.0, 50.0, 500);
        let h = (hi - lo) / n as f64;
        let mut total = 0.0;
        for i in 0..n {
            for j in 0..n {
                let x = [lo + (i as f64 + 0.5) * h, lo + (j as f64 + 0.5) * h];
                total += g.log_prob(&x).exp() * h * h;
            }
        }
        assert!((total - 1.0).abs() < 1e-3, "{total}");
    }

    #[test]
    fn exact_samples_have_the_mixtures_moments() {
        let g = Gmm::dem40();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let n = 200_000;
        let xs = g.sample(n, &mut rng);
        for d in 0..2 {
            let mean_true: f64 = (0..40).map(|k| g.mean(k)[d]).sum::<f64>() / 40.0;
            let second_true: f64 = (0..40).map(|k| g.mean(k)[d].powi(2)).sum::<f64>() / 40.0 + g.std().powi(2);
            let var_true = second_true - mean_true * mean_true;
            let mean: f64 = xs.iter().skip(d).step_by(2).sum::<f64>() / n as f64;
            let var: f64 = xs.iter().skip(d).step_by(2).map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
            // Standard errors: sqrt(var/n) ≈ 0.06 for the mean.
            assert!((mean - mean_true).abs() < 0.25, "axis {d}: mean {mean} vs {mean_true}");
            assert!((var / var_true - 1.0).abs() < 0.02, "axis {d}: var {var} vs {var_true}");
        }
    }
}
