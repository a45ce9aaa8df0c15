//! Monte Carlo estimators of the noised score `∇ log p_t(x)`, where
//! `p_t = p ∗ N(0, h_t I)` and `p ∝ exp(−E)` is known only through its energy.
//!
//! With `y_i = x + √h z_i`, `z_i ~ N(0, I)`, `l_i = log p(y_i)`, `g_i = ∇ log p(y_i)`,
//! `w = softmax(l)`:
//!
//! | form | estimate | notes |
//! |---|---|---|
//! | `log_sum_exp` (DEM's, the default) | `Σ w_i g_i` | `∇_x [logsumexp_i l_i − log K]` with the `z_i` fixed: what DEM's `estimate_grad_Rt` differentiates |
//! | `tweedie` | `Σ w_i (z_i − z̄) / √h` | gradient-free (Tweedie: `E[x₀ − x_t | x_t] / h`); the mean `z̄` subtracted as a control variate |
//! | `jensen` | `(1/K) Σ g_i` | the gradient of the Jensen bound `E[log p(y)]`: biased at every K |
//! | `unbiased` | `(1/K) Σ e^{l_i} g_i / p_t(x)` | importance-weighted numerator over the exact `p_t(x)`: unbiased, unstable at small K; only for energies with a closed-form `p_t` |
//!
//! DEM clips the estimate's norm (`clip_scores`, 70 for GMM-40, 20 for the
//! particle systems): scaled by `min(1, max / (|S| + 10⁻⁶))`; for a particle
//! system ([`Energy::particles`]) each particle's `d`-vector is clipped on its
//! own, as DEM's molecule reshape does. Every sample with zero density (FAB's −∞
//! floor) leaves the estimate undefined: an error, never a NaN.

use rand::Rng;
use rand_distr::StandardNormal;

use crate::numerics::energy::Energy;

/// Which estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    LogSumExp,
    Tweedie,
    Jensen,
    Unbiased,
}

impl Form {
    pub const ALL: [Form; 4] = [Form::LogSumExp, Form::Tweedie, Form::Jensen, Form::Unbiased];
    pub fn name(self) -> &'static str {
        match self {
            Form::LogSumExp => "log_sum_exp",
            Form::Tweedie => "tweedie",
            Form::Jensen => "jensen",
            Form::Unbiased => "unbiased",
        }
    }
    pub fn parse(s: &str) -> Option<Form> {
        Form::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// Why an estimate could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EstimateError {
    #[error("all {k} Monte Carlo samples at noise variance {h:.3e} have zero density (the energy is +∞ there)")]
    NoMass { k: usize, h: f64 },
    #[error("the {form} estimator needs the exact noised density, which this energy does not have")]
    NoExactDensity { form: &'static str },
    #[error("the {form} estimate is not finite (noise variance {h:.3e})")]
    NonFinite { form: &'static str, h: f64 },
}

/// Scale `s` so that its norm is at most `max` (DEM's `Clipper.clip_scores`);
/// returns the factor applied (below 1 where it clipped).
pub fn clip_norm(s: &mut [f64], max: f64) -> f64 {
    let norm = s.iter().map(|v| v * v).sum::<f64>().sqrt();
    let c = crate::numerics::nn::backprop::clip_factor(norm, max);
    s.iter_mut().for_each(|v| *v *= c);
    c
}

/// Reusable buffers for [`Estimator::estimate`].
#[derive(Default)]
pub struct Scratch {
    z: Vec<f64>,
    y: Vec<f64>,
    g: Vec<f64>,
    l: Vec<f64>,
}

impl Scratch {
    /// The effective number of Monte Carlo samples behind the last estimate
    /// made with this scratch: Kish's `(Σ w)² / Σ w²` of its self-normalised
    /// weights `w = softmax(l)` — `K` when the draws weigh alike, near 1 when
    /// one draw carries the estimate. `None` before any estimate, or where
    /// every weight is zero.
    pub fn effective_samples(&self) -> Option<f64> {
        let max = self.l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if max == f64::NEG_INFINITY {
            return None;
        }
        let (s1, s2) = self.l.iter().fold((0.0, 0.0), |(a, b), v| {
            let w = (v - max).exp();
            (a + w, b + w * w)
        });
        Some(s1 * s1 / s2)
    }
}

/// `k`, Monte Carlo samples per estimate, as every stage that estimates
/// scores declares it (each with the default its origin uses).
pub const K: crate::engine::params::ParamType = crate::engine::params::ParamType::Int { min: 1, max: 100_000 };

/// The estimator's form, as every stage that picks one declares it.
pub const FORMS: crate::engine::params::ParamType =
    crate::engine::params::ParamType::Str { choices: &["log_sum_exp", "tweedie", "jensen"] };

/// A norm clip (0: none), as the stages that clip declare it.
pub const MAX_NORM: crate::engine::params::ParamType = crate::engine::params::ParamType::Float { min: 0.0, max: 1e12 };

/// An estimator: its form, its number of samples, and DEM's norm clip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimator {
    pub form: Form,
    /// Monte Carlo samples per estimate.
    pub k: usize,
    /// Clip the estimate's norm to this (DEM: 70 for GMM-40); `None`: no clip.
    pub max_norm: Option<f64>,
}

impl Estimator {
    /// The estimator a stage's parameters describe: `estimator` (one of
    /// [`FORMS`]), `k`, and `max_norm` (0: no clip) — the one reading of them
    /// every stage shares.
    pub fn from_params(estimator: &str, k: usize, max_norm: f64) -> Estimator {
        let form = Form::parse(estimator).expect("the declared choices");
        Estimator { form, k, max_norm: (max_norm > 0.0).then_some(max_norm) }
    }

    /// The estimate of `∇ log p_t(x)`, `p_t = p ∗ N(0, h I)`, written to `out`.
    pub fn estimate<R: Rng>(
        &self,
        energy: &dyn Energy,
        x: &[f64],
        h: f64,
        rng: &mut R,
        scratch: &mut Scratch,
        out: &mut [f64],
    ) -> Result<(), EstimateError> {
        raw(energy, x, h, self.k, self.form, rng, scratch, out)?;
        if let Some(max) = self.max_norm {
            match energy.particles() {
                // DEM reshapes a molecule's score to (n, d) before clipping:
                // each particle's vector is clipped on its own.
                Some((_, d)) => out.chunks_mut(d).for_each(|s| {
                    clip_norm(s, max);
                }),
                None => {
                    clip_norm(out, max);
                }
            }
        }
        Ok(())
    }
}

/// The unclipped estimate (see [`Estimator::estimate`]).
#[allow(clippy::too_many_arguments)]
fn raw<R: Rng>(
    energy: &dyn Energy,
    x: &[f64],
    h: f64,
    k: usize,
    form: Form,
    rng: &mut R,
    scratch: &mut Scratch,
    out: &mut [f64],
) -> Result<(), EstimateError> {
    let d = energy.dim();
    let sd = h.sqrt();
    let Scratch { z, y, g, l } = scratch;
    z.clear();
    z.extend((0..k * d).map(|_| rng.sample::<f64, _>(StandardNormal)));
    y.resize(d, 0.0);
    g.resize(k * d, 0.0);
    l.clear();
    for i in 0..k {
        for j in 0..d {
            y[j] = x[j] + sd * z[i * d + j];
        }
        l.push(energy.grad_log_prob(y, &mut g[i * d..(i + 1) * d]));
    }
    out.iter_mut().for_each(|o| *o = 0.0);
    let max = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match form {
        Form::Jensen => {
            for i in 0..k {
                for j in 0..d {
                    out[j] += g[i * d + j] / k as f64;
                }
            }
        }
        Form::LogSumExp | Form::Tweedie => {
            if max == f64::NEG_INFINITY {
                return Err(EstimateError::NoMass { k, h });
            }
            let total: f64 = l.iter().map(|v| (v - max).exp()).sum();
            // The control variate only the gradient-free form uses.
            let zbar: Vec<f64> = match form {
                Form::Tweedie => (0..d).map(|j| (0..k).map(|i| z[i * d + j]).sum::<f64>() / k as f64).collect(),
                _ => Vec::new(),
            };
            for (i, li) in l.iter().enumerate() {
                let w = (li - max).exp() / total;
                for j in 0..d {
                    out[j] += w * match form {
                        Form::LogSumExp => g[i * d + j],
                        _ => (z[i * d + j] - zbar[j]) / sd,
                    };
                }
            }
        }
        Form::Unbiased => {
            let log_pt = energy.noised_log_prob(x, h).ok_or(EstimateError::NoExactDensity { form: form.name() })?;
            for (i, li) in l.iter().enumerate() {
                let w = (li - log_pt).exp() / k as f64;
                for j in 0..d {
                    out[j] += w * g[i * d + j];
                }
            }
        }
    }
    if out.iter().any(|v| !v.is_finite()) {
        return Err(EstimateError::NonFinite { form: form.name(), h });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numerics::energy::gmm::Gmm;
    use rand::SeedableRng;

    /// Mean squared error of each form against the exact noised score, over
    /// points near the modes, at `k` samples.
    fn mse(form: Form, k: usize, h: f64, seed: u64) -> f64 {
        let g = Gmm::dem40().rescaled(50.0);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let xs = g.noised(h).sample(200, &mut rng);
        let (mut total, mut scratch) = (0.0, Scratch::default());
        for x in xs.chunks(2) {
            let (mut est, mut exact) = ([0.0; 2], [0.0; 2]);
            assert!(g.noised_score(x, h, &mut exact));
            Estimator { form, k, max_norm: None }.estimate(&g, x, h, &mut rng, &mut scratch, &mut est).unwrap();
            total += (est[0] - exact[0]).powi(2) + (est[1] - exact[1]).powi(2);
        }
        total / 200.0
    }

    /// Every form's error falls as K grows, and with many samples the
    /// consistent forms agree with the exact noised score.
    #[test]
    fn estimators_converge_to_the_exact_noised_score() {
        let h = 1e-3; // σ_t ≈ 0.03 in normalised units: 1.6 mode widths
        for form in [Form::LogSumExp, Form::Tweedie, Form::Unbiased] {
            let (small, large) = (mse(form, 4, h, 1), mse(form, 4000, h, 1));
            assert!(large < small / 20.0, "{}: MSE {small} at K=4, {large} at K=4000", form.name());
        }
        // Jensen's bias does not go away with K: its error at K = 4000 stays
        // far above log-sum-exp's.
        let (j, l) = (mse(Form::Jensen, 4000, h, 2), mse(Form::LogSumExp, 4000, h, 2));
        assert!(j > 10.0 * l, "jensen {j} vs log-sum-exp {l}");
    }

    #[test]
    fn clipping_bounds_the_norm_and_keeps_the_direction() {
        let mut s = [300.0, -400.0];
        clip_norm(&mut s, 70.0);
        assert!((s[0] - 42.0).abs() < 1e-3 && (s[1] + 56.0).abs() < 1e-3, "{s:?}");
        let mut small = [3.0, 4.0];
        clip_norm(&mut small, 70.0);
        assert_eq!(small, [3.0, 4.0]);
    }

    /// Kish's effective sample size: K for equal weights, 1 for one
    /// dominant draw, and in between for a known spread.
    #[test]
    fn effective_samples_counts_the_draws_that_carry_the_weight() {
        let mut s = Scratch::default();
        assert_eq!(s.effective_samples(), None);
        s.l = vec![-3.0; 10];
        assert!((s.effective_samples().unwrap() - 10.0).abs() < 1e-12);
        s.l = vec![0.0, -800.0, -900.0, f64::NEG_INFINITY];
        assert!((s.effective_samples().unwrap() - 1.0).abs() < 1e-12);
        // weights 1, 1, 2: (4)² / (1 + 1 + 4) = 8/3
        s.l = vec![0.0, 0.0, 2f64.ln()];
        assert!((s.effective_samples().unwrap() - 8.0 / 3.0).abs() < 1e-12);
        s.l = vec![f64::NEG_INFINITY; 3];
        assert_eq!(s.effective_samples(), None);
    }

    #[test]
    fn no_mass_is_an_error_not_a_nan() {
        let g = Gmm::dem40();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut out = [0.0; 2];
        let e = Estimator { form: Form::LogSumExp, k: 8, max_norm: Some(70.0) };
        let err = e.estimate(&g, &[5000.0, 5000.0], 1e-4, &mut rng, &mut Scratch::default(), &mut out);
        assert!(matches!(err, Err(EstimateError::NoMass { k: 8, .. })), "{err:?}");
    }
}
