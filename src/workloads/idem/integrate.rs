//! The reverse-time integrators iDEM's stages share: the prior draw, the
//! Monte Carlo score and VE-SDE samplers, the EGNN's reverse SDE and the
//! negative-time tail. The training loops fill their buffers with them and
//! the `sample` stages draw with them, so they live apart from both.

use crate::numerics::energy::Energy;
use crate::numerics::energy::particles::{Particles, remove_mean};

use super::egnn::EgnnRun;
use super::estimator::{Estimator, Scratch};
use super::mlp::{CHUNK, DemMlpRun};
use crate::numerics::nn::backprop::clip_factor;
use crate::numerics::sde::ve::{Geometric, reverse_em};
use rand::Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

/// The parameter rules `mc_score` and `train objective: idem` share: σ_min
/// below σ_max, and no normalisation for the particle systems (DEM's
/// `data_normalization_factor` is 1 for them; the default, 50, is GMM-40's).
pub fn schedule_errors(
    energy: &str,
    sigma_min: f64,
    sigma_max: f64,
    normalization: f64,
) -> Vec<(&'static str, String)> {
    let mut errors = Vec::new();
    if sigma_min >= sigma_max {
        errors.push(("sigma_min", format!("sigma_min ({sigma_min}) must be below sigma_max ({sigma_max})")));
    }
    if energy != "gmm40" && normalization != 1.0 {
        errors.push((
            "normalization",
            format!(
                "DEM does not normalise `{energy}` (data_normalization_factor 1.0); set `normalization: 1` (the default, 50, is GMM-40's)"
            ),
        ));
    }
    errors
}

/// One draw of DEM's prior `N(0, sd² I)` in `dim` coordinates; for a particle
/// system (`mean_free: Some((n, d))`) its centre of mass removed — DEM's
/// `MeanFreePrior`.
pub fn prior_draw(rng: &mut impl rand::Rng, dim: usize, sd: f64, mean_free: Option<(usize, usize)>) -> Vec<f64> {
    let mut x: Vec<f64> = (0..dim).map(|_| sd * rng.sample::<f64, _>(rand_distr::StandardNormal)).collect();
    if let Some((n, d)) = mean_free {
        crate::numerics::energy::particles::remove_mean(&mut x, n, d);
    }
    x
}

/// `n` particles from DEM's prior `N(0, h(1) I)` (mean-free for a particle
/// system, DEM's `MeanFreePrior`) through the reverse SDE with the score
/// estimated at every step (in the energy's coordinates as given: DEM's
/// normalised ones when `energy` is [`crate::numerics::energy::Scaled`]); `n × dim`, row-major.
/// Particle `i` has its own stream `(seed, tag, i)` for the prior, the SDE
/// noise and the Monte Carlo draws, so the result does not depend on the
/// thread count. The first failed estimate (or non-finite particle) is the
/// error.
#[allow(clippy::too_many_arguments)]
pub fn mc_score_particles(
    energy: &(dyn crate::numerics::energy::Energy + Sync),
    est: &Estimator,
    schedule: &Geometric,
    steps: usize,
    diffusion_scale: f64,
    n: usize,
    seed: u64,
    tag: &str,
    progress: &(dyn Fn(f64) + Sync),
) -> Result<Vec<f64>, String> {
    mc_score_range(energy, est, schedule, steps, diffusion_scale, 0..n, seed, tag, progress)
}

/// Particles `range` of [`mc_score_particles`] (each from its own stream, so
/// a run in ranges gives the same particles as one run).
#[allow(clippy::too_many_arguments)]
pub fn mc_score_range(
    energy: &(dyn crate::numerics::energy::Energy + Sync),
    est: &Estimator,
    schedule: &Geometric,
    steps: usize,
    diffusion_scale: f64,
    range: std::ops::Range<usize>,
    seed: u64,
    tag: &str,
    progress: &(dyn Fn(f64) + Sync),
) -> Result<Vec<f64>, String> {
    let prior_sd = schedule.h(1.0).sqrt();
    let dim = energy.dim();
    let mean_free = energy.particles();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let n = range.len();
    let rows: Vec<Vec<f64>> = range
        .into_par_iter()
        .map(|i| {
            let mut rng = crate::numerics::rng::particle(seed, tag, i);
            let mut x = prior_draw(&mut rng, dim, prior_sd, mean_free);
            let mut scratch = Scratch::default();
            reverse_em(schedule, steps, diffusion_scale, &mut x, &mut rng, mean_free, |_, h, x, out, rng| {
                est.estimate(energy, x, h, rng, &mut scratch, out)
            })
            .map_err(|(step, e)| format!("particle {i}, step {step} of {steps}: {e}"))?;
            if !x.iter().all(|v| v.is_finite()) {
                return Err(format!("particle {i} is not finite after {steps} steps"));
            }
            let finished = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if finished.is_multiple_of(50) {
                progress(finished as f64 / n as f64);
            }
            Ok(x)
        })
        .collect::<Result<_, String>>()?;
    Ok(rows.concat())
}

/// `n` particles from the prior through the network's reverse SDE (DEM's
/// `integrate_sde` with the model's score, unclipped as DEM's GMM config),
/// in the network's coordinates. Particle `i` draws its prior point and its
/// noise from its own stream `(seed, tag, i)`; the network's forward is
/// chunked on fixed rows: the result does not depend on the thread count.
#[allow(clippy::too_many_arguments)]
pub fn ve_sde_particles(
    run: &mut DemMlpRun,
    params: &[f32],
    schedule: &Geometric,
    steps: usize,
    diffusion_scale: f64,
    n: usize,
    seed: u64,
    tag: &str,
) -> Result<Vec<[f32; 2]>, String> {
    ve_sde_range(run, params, schedule, steps, diffusion_scale, 0..n, seed, tag)
}

/// Particles `range` of [`ve_sde_particles`]'s `n`: particle `i` from its
/// own stream, so a run in chunks of particles gives each particle as one
/// run of them all would.
#[allow(clippy::too_many_arguments)]
pub fn ve_sde_range(
    run: &mut DemMlpRun,
    params: &[f32],
    schedule: &Geometric,
    steps: usize,
    diffusion_scale: f64,
    range: std::ops::Range<usize>,
    seed: u64,
    tag: &str,
) -> Result<Vec<[f32; 2]>, String> {
    use rand::Rng;
    let dim = 2;
    let prior_sd = schedule.h(1.0).sqrt();
    let first = range.start;
    let mut rngs: Vec<_> = range.map(|i| crate::numerics::rng::particle(seed, tag, i)).collect();
    let n = rngs.len();
    let mut x: Vec<f32> = rngs
        .iter_mut()
        .flat_map(|r| {
            let a = prior_sd * r.sample::<f64, _>(rand_distr::StandardNormal);
            let b = prior_sd * r.sample::<f64, _>(rand_distr::StandardNormal);
            [a as f32, b as f32]
        })
        .collect();
    let mut s = vec![0f32; n * dim];
    let dt = 1.0 / steps as f64;
    for step in 0..steps {
        let t = 1.0 - step as f64 * dt;
        run.forward_shared_t(params, &x, t as f32, &mut s);
        let g = schedule.g(t);
        let (a, b) = ((g * g * dt) as f32, (diffusion_scale * g * dt.sqrt()) as f32);
        x.par_chunks_mut(dim * CHUNK).zip(s.par_chunks(dim * CHUNK)).zip(rngs.par_chunks_mut(CHUNK)).for_each(
            |((xc, sc), rc)| {
                for ((xp, sp), r) in xc.chunks_exact_mut(dim).zip(sc.chunks_exact(dim)).zip(rc.iter_mut()) {
                    for (xv, sv) in xp.iter_mut().zip(sp) {
                        let z: f32 = r.sample(rand_distr::StandardNormal);
                        *xv += a * sv + b * z;
                    }
                }
            },
        );
        let check = step % 100 == 99 || step + 1 == steps;
        if check && let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(format!("particle {} is not finite at step {step} of {steps}", first + i / dim));
        }
    }
    Ok(x.chunks_exact(dim).map(|q| [q[0], q[1]]).collect())
}

/// DEM's `negative_time_descent`, the tail `integrate_sde` appends when
/// `negative_time` is set (LJ-55: 10 steps): after the reverse SDE has reached
/// `t = 0`, `steps` plain gradient steps on the energy, `x ← x + dt·clip(−∇E(x))`
/// with DEM's `dt` = 10⁻⁴, the step clipped by DEM's clipper over the whole
/// configuration's norm (`max_norm`; no per-particle reshape here, as in DEM)
/// and the centre of mass removed after each.
pub struct NegativeTime<'a> {
    pub sys: &'a Particles,
    pub steps: usize,
    pub max_norm: f64,
}

impl NegativeTime<'_> {
    /// DEM's step size (`negative_time_descent`'s default, which DEM never changes).
    pub const DT: f64 = 1e-4;

    /// Apply the tail to a batch of configurations (`m × n·d`), in place.
    pub fn descend(&self, x: &mut [f64]) -> Result<(), String> {
        let dim = self.sys.n * self.sys.d;
        x.par_chunks_mut(dim).enumerate().try_for_each(|(i, xp)| {
            let mut g = vec![0f64; dim];
            for step in 0..self.steps {
                self.sys.grad_log_prob(xp, &mut g);
                let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
                if !norm.is_finite() {
                    return Err(format!("particle {i}: the energy's gradient is not finite at descent step {step}"));
                }
                let c = if self.max_norm > 0.0 { clip_factor(norm, self.max_norm) } else { 1.0 };
                xp.iter_mut().zip(&g).for_each(|(v, gv)| *v += Self::DT * c * gv);
                remove_mean(xp, self.sys.n, self.sys.d);
            }
            Ok(())
        })
    }
}

/// `n` particles through the network's reverse SDE (DEM's `integrate_sde`:
/// Euler–Maruyama from `t = 1`, noise times `diffusion_scale`, centre of mass
/// removed after every step), from the mean-free prior, the scores from the
/// hand-written forward ([`EgnnRun`]), then DEM's negative-time tail when
/// `tail` has steps; particle `i` draws its prior point and noise from stream
/// `(seed, tag, i)`. `n × n_p·d`.
#[allow(clippy::too_many_arguments)]
pub fn egnn_sde_particles(
    net: &EgnnRun,
    schedule: &Geometric,
    steps: usize,
    diffusion_scale: f64,
    tail: &NegativeTime,
    n: usize,
    seed: u64,
    tag: &str,
) -> Result<Vec<f32>, String> {
    egnn_sde_range(net, schedule, steps, diffusion_scale, tail, 0..n, seed, tag)
}

/// Particles `range` of [`egnn_sde_particles`]'s `n`, each from its own
/// stream (see [`ve_sde_range`]).
#[allow(clippy::too_many_arguments)]
pub fn egnn_sde_range(
    net: &EgnnRun,
    schedule: &Geometric,
    steps: usize,
    diffusion_scale: f64,
    tail: &NegativeTime,
    range: std::ops::Range<usize>,
    seed: u64,
    tag: &str,
) -> Result<Vec<f32>, String> {
    let cfg = net.config();
    let dim = cfg.n * cfg.d;
    let prior_sd = schedule.h(1.0).sqrt();
    let first = range.start;
    let mut rngs: Vec<_> = range.map(|i| crate::numerics::rng::particle(seed, tag, i)).collect();
    let n = rngs.len();
    let mut x: Vec<f64> = rngs.iter_mut().flat_map(|r| prior_draw(r, dim, prior_sd, Some((cfg.n, cfg.d)))).collect();
    let dt = 1.0 / steps as f64;
    let mut xs = vec![0f32; n * dim];
    let mut s = vec![0f32; n * dim];
    for step in 0..steps {
        let t = 1.0 - step as f64 * dt;
        xs.iter_mut().zip(&x).for_each(|(a, b)| *a = *b as f32);
        net.forward(&xs, t as f32, &mut s);
        let g = schedule.g(t);
        let (a, b) = (g * g * dt, diffusion_scale * g * dt.sqrt());
        x.par_chunks_mut(dim).zip(s.par_chunks(dim)).zip(rngs.par_iter_mut()).for_each(|((xp, sp), r)| {
            for (xv, sv) in xp.iter_mut().zip(sp) {
                let z: f64 = r.sample(StandardNormal);
                *xv += a * *sv as f64 + b * z;
            }
        });
        remove_mean(&mut x, cfg.n, cfg.d);
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(format!("particle {} is not finite at step {step} of {steps}", first + i / dim));
        }
    }
    tail.descend(&mut x)?;
    Ok(x.into_iter().map(|v| v as f32).collect())
}
