//! The variance-exploding SDE `dx = g(t) dW` with DEM's geometric noise
//! schedule, and its reverse-time Euler–Maruyama integration (iDEM, seed 001).
//!
//! As DEM's `GeometricNoiseSchedule` (Karras et al. 2022, eqs. 192 and 199):
//! with `σ_d = σ_max/σ_min`, `g(t) = σ_min·σ_d^t·√(2 ln σ_d)` and the noise
//! variance accumulated from 0 to `t`, `h(t) = ∫₀ᵗ g² = σ_min²·(σ_d^{2t} − 1)`.
//! The reverse SDE is integrated as DEM's `integrate_sde`: `N` steps of size
//! `1/N` at `t = 1, 1 − 1/N, …, 1/N` (no step at 0), each
//! `x ← x + g(t)²·s(x, t)·dt + c·g(t)·√dt·z`, `c` the `diffusion_scale`, from
//! `x ~ N(0, h(1) I)` (DEM's prior for GMM-40).

use rand::Rng;
use rand_distr::StandardNormal;

/// DEM's geometric schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometric {
    pub sigma_min: f64,
    pub sigma_max: f64,
}

impl Geometric {
    pub fn g(&self, t: f64) -> f64 {
        let d = self.sigma_max / self.sigma_min;
        self.sigma_min * d.powf(t) * (2.0 * d.ln()).sqrt()
    }
    pub fn h(&self, t: f64) -> f64 {
        let d = self.sigma_max / self.sigma_min;
        self.sigma_min * self.sigma_min * (d.powf(2.0 * t) - 1.0)
    }
}

/// Integrate one particle `x` (drawn from the prior by the caller) through
/// the reverse SDE; `score(t, h(t), x, out)` writes the score. Stops at the
/// first error the score reports, with the step it failed at. With
/// `mean_free: Some((n, d))` (a particle system) the centre of mass is
/// removed after every step, as DEM's `integrate_sde` does for molecules.
pub fn reverse_em<R: Rng, E>(
    schedule: &Geometric,
    steps: usize,
    diffusion_scale: f64,
    x: &mut [f64],
    rng: &mut R,
    mean_free: Option<(usize, usize)>,
    mut score: impl FnMut(f64, f64, &[f64], &mut [f64], &mut R) -> Result<(), E>,
) -> Result<(), (usize, E)> {
    let dt = 1.0 / steps as f64;
    let mut s = vec![0.0; x.len()];
    for step in 0..steps {
        let t = 1.0 - step as f64 * dt;
        score(t, schedule.h(t), x, &mut s, rng).map_err(|e| (step, e))?;
        let g = schedule.g(t);
        for (xi, si) in x.iter_mut().zip(&s) {
            let z: f64 = rng.sample(StandardNormal);
            *xi += g * g * si * dt + diffusion_scale * g * dt.sqrt() * z;
        }
        if let Some((n, d)) = mean_free {
            crate::numerics::energy::particles::remove_mean(x, n, d);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h_is_the_integral_of_g_squared() {
        let s = Geometric { sigma_min: 1e-5, sigma_max: 1.0 };
        let n = 200_000;
        let integral: f64 = (0..n).map(|i| s.g((i as f64 + 0.5) / n as f64).powi(2) / n as f64).sum();
        assert!((integral / s.h(1.0) - 1.0).abs() < 1e-6, "{integral} vs {}", s.h(1.0));
        assert_eq!(s.h(0.0), 0.0);
    }

    /// A Gaussian target `N(0, v)`: the reverse SDE with its exact noised
    /// score `−x/(v + h)` brings `N(0, v + h(1))` back to variance `v`.
    #[test]
    fn the_reverse_sde_recovers_a_gaussian() {
        use rand::SeedableRng;
        let s = Geometric { sigma_min: 1e-3, sigma_max: 1.0 };
        let v = 0.04;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let n = 4000;
        let mut total = 0.0;
        for _ in 0..n {
            let mut x = [(v + s.h(1.0)).sqrt() * rng.sample::<f64, _>(StandardNormal)];
            reverse_em(&s, 500, 1.0, &mut x, &mut rng, None, |_, h, x, out, _| {
                out[0] = -x[0] / (v + h);
                Ok::<(), ()>(())
            })
            .unwrap();
            total += x[0] * x[0];
        }
        let var = total / n as f64;
        assert!((var / v - 1.0).abs() < 0.08, "variance {var} vs {v}");
    }
}
