//! Target densities known only through an energy: `p(x) ∝ exp(−E(x))`.
//!
//! An [`Energy`] knows its dimension, its log-density `−E(x)` (up to a
//! constant, or normalised where it can be) and the gradient of that, per
//! point and analytically; batch helpers parallelise over points with rayon,
//! each point computed alone, so results do not depend on the thread count.
//! The iDEM workload (seed 001) samples these densities from the energy alone;
//! the generate stage draws exact reference sets from those that have an exact
//! sampler (the GMM), and MCMC reference sets of the particle systems
//! ([`particles`]: DW-4, LJ-13, LJ-55).

pub mod gmm;
pub mod particles;
pub mod torch_rng;

use rayon::prelude::*;

/// A Boltzmann density given by its energy.
pub trait Energy: Sync {
    /// The dimension of one point.
    fn dim(&self) -> usize;
    /// `log p(x) = −E(x)` (plus a constant) at one point.
    fn log_prob(&self, x: &[f64]) -> f64;
    /// `∇ log p(x) = −∇E(x)` at one point, written to `grad`; returns `log p(x)`.
    fn grad_log_prob(&self, x: &[f64], grad: &mut [f64]) -> f64;

    /// `log p_t(x)` for `p_t = p ∗ N(0, h I)`, normalised, where it is known in
    /// closed form (a Gaussian mixture); `None` otherwise.
    fn noised_log_prob(&self, _x: &[f64], _h: f64) -> Option<f64> {
        None
    }
    /// The exact noised score `∇ log p_t(x)` written to `grad`, where it is
    /// known in closed form; `false` otherwise.
    fn noised_score(&self, _x: &[f64], _h: f64, _grad: &mut [f64]) -> bool {
        false
    }

    /// `(n, d)` for a system of `n` identical particles in `d` dimensions
    /// whose density is invariant under translations (and rotations and
    /// permutations): samplers then keep the centre of mass at zero.
    fn particles(&self) -> Option<(usize, usize)> {
        None
    }

    /// `log p` of every point of a row-major batch.
    fn log_prob_batch(&self, xs: &[f64]) -> Vec<f64> {
        xs.par_chunks(self.dim()).map(|x| self.log_prob(x)).collect()
    }
}

/// An energy seen in rescaled coordinates: `log p̃(y) = log p(s·y)`, as DEM
/// trains on data divided by a normalisation factor (50 for GMM-40) and
/// evaluates the energy on the samples scaled back (`∇ log p̃(y) = s·∇ log p(s·y)`).
pub struct Scaled<'a, E: Energy + ?Sized> {
    pub energy: &'a E,
    pub scale: f64,
}

impl<E: Energy + ?Sized> Scaled<'_, E> {
    /// `f(s·y)`, with `s·y` on the stack for small dimensions.
    fn with_scaled<T>(&self, y: &[f64], f: impl FnOnce(&[f64]) -> T) -> T {
        let mut stack = [0.0f64; 16];
        if y.len() <= stack.len() {
            let x = &mut stack[..y.len()];
            x.iter_mut().zip(y).for_each(|(x, v)| *x = v * self.scale);
            f(x)
        } else {
            f(&y.iter().map(|v| v * self.scale).collect::<Vec<f64>>())
        }
    }
}

impl<E: Energy + ?Sized> Energy for Scaled<'_, E> {
    fn dim(&self) -> usize {
        self.energy.dim()
    }
    fn log_prob(&self, y: &[f64]) -> f64 {
        self.with_scaled(y, |x| self.energy.log_prob(x))
    }
    fn grad_log_prob(&self, y: &[f64], grad: &mut [f64]) -> f64 {
        let lp = self.with_scaled(y, |x| self.energy.grad_log_prob(x, grad));
        grad.iter_mut().for_each(|g| *g *= self.scale);
        lp
    }
    fn particles(&self) -> Option<(usize, usize)> {
        self.energy.particles()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Central differences of `log_prob` against `grad_log_prob` at `x`.
    pub fn check_gradient(e: &dyn Energy, x: &[f64], tol: f64) {
        let mut g = vec![0.0; e.dim()];
        let lp = e.grad_log_prob(x, &mut g);
        assert!((lp - e.log_prob(x)).abs() < 1e-9 * lp.abs().max(1.0));
        for i in 0..e.dim() {
            let h = 1e-5 * x[i].abs().max(1.0);
            let (mut a, mut b) = (x.to_vec(), x.to_vec());
            a[i] += h;
            b[i] -= h;
            let fd = (e.log_prob(&a) - e.log_prob(&b)) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() <= tol * fd.abs().max(1.0),
                "d/dx{i}: analytic {} vs finite differences {fd}",
                g[i]
            );
        }
    }
}
