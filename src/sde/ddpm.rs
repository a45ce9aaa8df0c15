//! The discrete-time DDPM of the two-moons workload (seed 002), and the
//! Euler-discrete sampler of diffusers' `EulerDiscreteScheduler`.
//!
//! **Training schedule** ([`DdpmSchedule`]): diffusers' `DDPMScheduler` with
//! `beta_schedule="linear"`: `β_t = linspace(β_start, β_end, T)` (seed: 1e-4 →
//! 0.02, T = 1000), `ᾱ_t = ∏_{s≤t}(1 − β_s)`, and the forward draw
//! `x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·ε` for integer `t ∈ {0, …, T−1}`. diffusers builds
//! the table in float32; it is built here in f64 and rounded once (the two agree
//! to ~1e-6 relative, far below anything a metric can see).
//!
//! **Sampler** ([`EulerDiscrete`]), for ε-prediction with the scheduler's default
//! config (`timestep_spacing="linspace"`, `interpolation_type="linear"`, no
//! Karras sigmas, `s_churn = 0`):
//!
//! * `σ(t) = √((1 − ᾱ_t)/ᾱ_t)` on the integer training timesteps;
//! * `timesteps = linspace(0, T−1, n)` reversed (fractional when `n` does not divide
//!   `T−1`), `σ_i` = `σ` linearly interpolated at `timesteps[i]` (numpy's `interp`),
//!   then `σ_n = 0` appended;
//! * `x = randn·init_noise_sigma` with `init_noise_sigma = max σ` (the "linspace"
//!   spacing rule);
//! * at step `i`: the model sees `x/√(σ_i² + 1)` (`scale_model_input`) and
//!   `timesteps[i]` as it is (fractional values go into the embedding unrounded);
//!   `x0̂ = x − σ_i·ε̂`, derivative `(x − x0̂)/σ_i = ε̂`, and `x ← x + ε̂·(σ_{i+1} − σ_i)`.
//!
//! With `s_churn = 0` the sampler draws no noise after `x_T`, so a particle's path
//! is a deterministic function of its `x_T` (drawn from its own stream, see
//! [`super::sampler::prior_draw`]'s scheme); particles are processed in chunks in
//! parallel and the result does not depend on chunking or thread count.

use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

/// The linear-β DDPM noise schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct DdpmSchedule {
    pub betas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
}

impl DdpmSchedule {
    /// `β = linspace(beta_start, beta_end, steps)` and its cumulative products.
    pub fn linear(beta_start: f64, beta_end: f64, steps: usize) -> DdpmSchedule {
        let betas: Vec<f64> = (0..steps)
            .map(|i| {
                if steps == 1 {
                    beta_start
                } else {
                    beta_start + (beta_end - beta_start) * i as f64 / (steps - 1) as f64
                }
            })
            .collect();
        let mut acc = 1.0;
        let alphas_cumprod = betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc
            })
            .collect();
        DdpmSchedule { betas, alphas_cumprod }
    }

    pub fn len(&self) -> usize {
        self.betas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    /// `(√ᾱ_t, √(1 − ᾱ_t))` of the forward draw at integer `t`.
    pub fn coefficients(&self, t: usize) -> (f32, f32) {
        let a = self.alphas_cumprod[t];
        (a.sqrt() as f32, (1.0 - a).sqrt() as f32)
    }

    /// `σ_t = √((1 − ᾱ_t)/ᾱ_t)` on the training timesteps.
    pub fn sigmas(&self) -> Vec<f64> {
        self.alphas_cumprod.iter().map(|a| ((1.0 - a) / a).sqrt()).collect()
    }
}

/// The Euler-discrete sampler's tables for `n` inference steps.
#[derive(Debug, Clone, PartialEq)]
pub struct EulerDiscrete {
    /// The (possibly fractional) timesteps, descending; `n` of them.
    pub timesteps: Vec<f32>,
    /// `σ` at each timestep, then a final 0: `n + 1` values.
    pub sigmas: Vec<f32>,
    /// Scale of the initial draw: the largest σ.
    pub init_noise_sigma: f32,
}

/// numpy's `interp(x, arange(len(ys)), ys)` for `x` inside the table.
fn interp(x: f64, ys: &[f64]) -> f64 {
    let last = ys.len() - 1;
    if x <= 0.0 {
        return ys[0];
    }
    if x >= last as f64 {
        return ys[last];
    }
    let i = x.floor() as usize;
    let f = x - i as f64;
    ys[i] + f * (ys[i + 1] - ys[i])
}

impl EulerDiscrete {
    /// diffusers' `set_timesteps(n)` for the default ("linspace") spacing.
    pub fn new(schedule: &DdpmSchedule, n: usize) -> EulerDiscrete {
        let table = schedule.sigmas();
        let last = (schedule.len() - 1) as f64;
        // numpy.linspace(0, T−1, n, dtype=float32)[::-1]
        let ts: Vec<f64> =
            (0..n).rev().map(|i| if n == 1 { 0.0 } else { (last * i as f64 / (n - 1) as f64) as f32 as f64 }).collect();
        let mut sigmas: Vec<f32> = ts.iter().map(|t| interp(*t, &table) as f32).collect();
        sigmas.push(0.0);
        let init_noise_sigma = sigmas.iter().copied().fold(0.0f32, f32::max);
        EulerDiscrete { timesteps: ts.iter().map(|t| *t as f32).collect(), sigmas, init_noise_sigma }
    }

    /// `scale_model_input`: the factor `1/√(σ_i² + 1)`.
    pub fn input_scale(&self, i: usize) -> f32 {
        let s = self.sigmas[i] as f64;
        (1.0 / (s * s + 1.0).sqrt()) as f32
    }

    /// One update in place: `x ← x + ε̂·(σ_{i+1} − σ_i)`.
    pub fn step(&self, i: usize, x: &mut [f32], eps: &[f32]) {
        let dt = self.sigmas[i + 1] - self.sigmas[i];
        for (xv, e) in x.iter_mut().zip(eps) {
            *xv += e * dt;
        }
    }
}

/// A batched ε-predictor `ε̂(x, t)` over rows of `dim` coordinates.
pub trait EpsModel: Sync {
    type Scratch: Send;
    fn dim(&self) -> usize;
    fn scratch(&self, rows: usize) -> Self::Scratch;
    /// Write `ε̂(x, t)` for every row of `x` into `out`; every row shares `t`.
    fn eval(&self, x: &[f32], t: f32, out: &mut [f32], scratch: &mut Self::Scratch);
}

/// Run the sampler in place on `x` (the initial draw, already scaled by
/// `init_noise_sigma`), in chunks of `chunk` rows.
pub fn euler_sample<M: EpsModel>(
    model: &M,
    sched: &EulerDiscrete,
    x: &mut [f32],
    chunk: usize,
    progress: &(dyn Fn(f64) + Sync),
) {
    let dim = model.dim();
    let steps = sched.timesteps.len();
    let chunks = (x.len() / dim).div_ceil(chunk.max(1));
    let total = chunks * steps;
    let done = AtomicUsize::new(0);
    x.par_chunks_mut(chunk.max(1) * dim).for_each(|xs| {
        let mut scratch = model.scratch(xs.len() / dim);
        let mut input = vec![0f32; xs.len()];
        let mut eps = vec![0f32; xs.len()];
        for i in 0..steps {
            let c = sched.input_scale(i);
            for (inp, v) in input.iter_mut().zip(xs.iter()) {
                *inp = v * c;
            }
            model.eval(&input, sched.timesteps[i], &mut eps, &mut scratch);
            sched.step(i, xs, &eps);
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            if d.is_multiple_of(50) {
                progress(d as f64 / total as f64);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_matches_the_closed_forms() {
        let s = DdpmSchedule::linear(1e-4, 0.02, 1000);
        assert_eq!(s.len(), 1000);
        assert!((s.betas[0] - 1e-4).abs() < 1e-15 && (s.betas[999] - 0.02).abs() < 1e-15);
        // β_1 = 1e-4 + 0.0199/999; ᾱ_1 = (1 − β_0)(1 − β_1).
        let b1 = 1e-4 + 0.0199 / 999.0;
        assert!((s.alphas_cumprod[1] - (1.0 - 1e-4) * (1.0 - b1)).abs() < 1e-15);
        // ln ᾱ_999 = Σ ln(1 − β_i); diffusers (float32) prints ᾱ_999 ≈ 4.036e-5.
        let want: f64 = s.betas.iter().map(|b| (1.0 - b).ln()).sum::<f64>().exp();
        assert!((s.alphas_cumprod[999] / want - 1.0).abs() < 1e-12);
        assert!((s.alphas_cumprod[999] - 4.036e-5).abs() < 1e-7, "{}", s.alphas_cumprod[999]);
    }

    #[test]
    fn euler_sigma_table_and_one_step() {
        let s = DdpmSchedule::linear(1e-4, 0.02, 1000);
        let e = EulerDiscrete::new(&s, 1000);
        assert_eq!(e.timesteps.len(), 1000);
        assert_eq!(e.sigmas.len(), 1001);
        assert_eq!((e.timesteps[0], e.timesteps[999]), (999.0, 0.0));
        assert_eq!(e.sigmas[1000], 0.0);
        // σ_0 = √((1 − ᾱ_999)/ᾱ_999) ≈ 157.4; last σ = √(β_0/(1 − β_0)).
        let a999 = s.alphas_cumprod[999];
        assert!((e.sigmas[0] as f64 - ((1.0 - a999) / a999).sqrt()).abs() < 1e-3);
        assert!((e.sigmas[0] - 157.4).abs() < 0.1, "{}", e.sigmas[0]);
        assert_eq!(e.init_noise_sigma, e.sigmas[0]);
        assert!((e.sigmas[999] as f64 - (1e-4f64 / (1.0 - 1e-4)).sqrt()).abs() < 1e-7);
        // 4 steps: timesteps 999, 666, 333, 0 (exact thirds).
        let e4 = EulerDiscrete::new(&s, 4);
        assert_eq!(e4.timesteps, vec![999.0, 666.0, 333.0, 0.0]);
        let sig = s.sigmas();
        assert!((e4.sigmas[1] as f64 - sig[666]).abs() < 1e-5 * sig[666]);
        // 3 steps: a fractional timestep 499.5, interpolated.
        let e3 = EulerDiscrete::new(&s, 3);
        assert_eq!(e3.timesteps, vec![999.0, 499.5, 0.0]);
        assert!((e3.sigmas[1] as f64 - 0.5 * (sig[499] + sig[500])).abs() < 1e-6);
        // One update: x ← x + ε̂·(σ_1 − σ_0), the model input scaled by 1/√(σ_0² + 1).
        let mut x = vec![10.0f32, -3.0];
        e4.step(0, &mut x, &[0.5, -1.0]);
        let d = (sig[666] - sig[999]) as f32;
        assert!((x[0] - (10.0 + 0.5 * d)).abs() < 1e-3 && (x[1] - (-3.0 - d)).abs() < 1e-3);
        assert!((e4.input_scale(0) as f64 - 1.0 / (sig[999].powi(2) + 1.0).sqrt()).abs() < 1e-9);
    }

    /// With the exact ε of a Gaussian data distribution N(0, s²), Euler-discrete
    /// sampling recovers the target's spread.
    #[test]
    fn sampler_recovers_a_gaussian_target() {
        struct Exact {
            s2: f32,
            sched: DdpmSchedule,
        }
        impl EpsModel for Exact {
            type Scratch = ();
            fn dim(&self) -> usize {
                1
            }
            fn scratch(&self, _: usize) {}
            fn eval(&self, x: &[f32], t: f32, out: &mut [f32], _: &mut ()) {
                // x_t = √ā x0 + √(1−ā) ε; E[ε | x_t] = √(1−ā)·x_t/(ā s² + 1 − ā).
                let i = t.floor() as usize;
                let f = t - i as f32;
                let ab = |k: usize| self.sched.alphas_cumprod[k.min(self.sched.len() - 1)] as f32;
                let a = ab(i) + f * (ab(i + 1) - ab(i));
                for (o, v) in out.iter_mut().zip(x) {
                    *o = (1.0 - a).sqrt() * v / (a * self.s2 + 1.0 - a);
                }
            }
        }
        let sched = DdpmSchedule::linear(1e-4, 0.02, 1000);
        let model = Exact { s2: 0.25, sched: sched.clone() };
        let e = EulerDiscrete::new(&sched, 1000);
        let n = 20_000;
        let mut x: Vec<f32> = (0..n)
            .map(|i| {
                // Deterministic normal quantiles.
                let u = (i as f64 + 0.5) / n as f64;
                (std::f64::consts::SQRT_2 * erfinv(2.0 * u - 1.0)) as f32 * e.init_noise_sigma
            })
            .collect();
        euler_sample(&model, &e, &mut x, 1000, &|_| {});
        let var = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / n as f64;
        assert!((var.sqrt() - 0.5).abs() < 0.02, "sd {}", var.sqrt());
    }

    /// Inverse error function (Giles 2010, single-precision polynomial).
    fn erfinv(x: f64) -> f64 {
        let w = -((1.0 - x) * (1.0 + x)).ln();
        if w < 5.0 {
            let w = w - 2.5;
            let mut p = 2.810_226_36e-08;
            for c in [
                3.432_739_39e-07,
                -3.523_387_7e-06,
                -4.391_506_54e-06,
                0.000_218_580_87,
                -0.001_253_725_03,
                -0.004_177_681_64,
                0.246_640_727,
                1.501_409_41,
            ] {
                p = c + p * w;
            }
            p * x
        } else {
            let w = w.sqrt() - 3.0;
            let mut p = -0.000_200_214_257;
            for c in [
                0.000_100_950_558,
                0.001_349_343_22,
                -0.003_673_428_44,
                0.005_739_507_73,
                -0.007_622_461_3,
                0.009_438_870_47,
                1.001_674_06,
                2.832_976_82,
            ] {
                p = c + p * w;
            }
            p * x
        }
    }
}
