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
//!
//! **Ancestral sampler** ([`DdpmAncestral`]): diffusers' `DDPMScheduler.step` as
//! the origin's sampling code used it after its README's Euler row (the commit
//! that reports the EMA result): `variance_type="fixed_small"`,
//! `clip_sample=False`, "leading" spacing (`t_i = i·⌊T/n⌋`, descending,
//! previous timestep `t − ⌊T/n⌋`, `ᾱ = 1` before 0), `init_noise_sigma = 1`:
//!
//! * `x0̂ = (x − √(1 − ᾱ_t)·ε̂)/√ᾱ_t`;
//! * `x ← (√ᾱ_prev·β_t/(1 − ᾱ_t))·x0̂ + (√α_t·(1 − ᾱ_prev)/(1 − ᾱ_t))·x + σ_t·z`
//!   with `α_t = ᾱ_t/ᾱ_prev`, `β_t = 1 − α_t`,
//!   `σ_t² = max((1 − ᾱ_prev)/(1 − ᾱ_t)·β_t, 1e-20)`, and no noise at `t = 0`.
//!
//! Its noise comes from one stream per particle, so it too is independent of
//! chunking and thread count.

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

/// One step of the ancestral sampler: `x ← c0·(x − sb·ε̂)·inv_sa + c1·x + std·z`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AncestralStep {
    pub t: usize,
    /// `√(1 − ᾱ_t)`.
    pub sb: f32,
    /// `1/√ᾱ_t`.
    pub inv_sa: f32,
    /// Coefficient of `x0̂`.
    pub c0: f32,
    /// Coefficient of `x`.
    pub c1: f32,
    /// Standard deviation of the added noise (0 at `t = 0`).
    pub std: f32,
}

/// diffusers' `DDPMScheduler` tables for `n` inference steps (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct DdpmAncestral {
    pub steps: Vec<AncestralStep>,
}

impl DdpmAncestral {
    pub fn new(schedule: &DdpmSchedule, n: usize) -> DdpmAncestral {
        let big_t = schedule.len();
        let n = n.clamp(1, big_t);
        let ratio = big_t / n;
        let ab = |t: i64| if t >= 0 { schedule.alphas_cumprod[t as usize] } else { 1.0 };
        let steps = (0..n)
            .rev()
            .map(|i| {
                let t = i * ratio;
                let prev = t as i64 - ratio as i64;
                let (a_t, a_prev) = (ab(t as i64), ab(prev));
                let (beta_prod, beta_prod_prev) = (1.0 - a_t, 1.0 - a_prev);
                let alpha = a_t / a_prev;
                let beta = 1.0 - alpha;
                let var = (beta_prod_prev / beta_prod * beta).max(1e-20);
                AncestralStep {
                    t,
                    sb: beta_prod.sqrt() as f32,
                    inv_sa: (1.0 / a_t.sqrt()) as f32,
                    c0: (a_prev.sqrt() * beta / beta_prod) as f32,
                    c1: (alpha.sqrt() * beta_prod_prev / beta_prod) as f32,
                    std: if t > 0 { var.sqrt() as f32 } else { 0.0 },
                }
            })
            .collect();
        DdpmAncestral { steps }
    }
}

/// Run the ancestral sampler in place on `x` (the initial `N(0, I)` draw), in
/// chunks of `chunk` rows; particle `p` draws its noise from stream (`seed`, p).
pub fn ancestral_sample<M: EpsModel>(
    model: &M,
    sched: &DdpmAncestral,
    x: &mut [f32],
    chunk: usize,
    seed: u64,
    progress: &(dyn Fn(f64) + Sync),
) {
    ancestral_sample_from(model, sched, x, chunk, (seed, 0), progress)
}

/// [`ancestral_sample`] on particles `first..` of a larger draw: row `r` of
/// `x` is particle `first + r` and draws its noise from that particle's
/// stream, so a run in slices (a multiple of `chunk` rows each) gives the
/// bytes of one run over them all.
pub fn ancestral_sample_from<M: EpsModel>(
    model: &M,
    sched: &DdpmAncestral,
    x: &mut [f32],
    chunk: usize,
    (seed, first): (u64, usize),
    progress: &(dyn Fn(f64) + Sync),
) {
    use rand_distr::{Distribution, StandardNormal};
    let dim = model.dim();
    let chunk = chunk.max(1);
    let total = (x.len() / dim).div_ceil(chunk) * sched.steps.len();
    let done = AtomicUsize::new(0);
    x.par_chunks_mut(chunk * dim).enumerate().for_each(|(ci, xs)| {
        let rows = xs.len() / dim;
        let mut rngs: Vec<_> =
            (0..rows).map(|r| super::sampler::particle_rng(seed, "ddpm-ancestral", first + ci * chunk + r)).collect();
        let mut scratch = model.scratch(rows);
        let mut eps = vec![0f32; xs.len()];
        for st in &sched.steps {
            model.eval(xs, st.t as f32, &mut eps, &mut scratch);
            for (r, rng) in rngs.iter_mut().enumerate() {
                for k in r * dim..(r + 1) * dim {
                    let x0 = (xs[k] - st.sb * eps[k]) * st.inv_sa;
                    let mean = st.c0 * x0 + st.c1 * xs[k];
                    xs[k] = if st.std > 0.0 {
                        let z: f32 = StandardNormal.sample(rng);
                        mean + st.std * z
                    } else {
                        mean
                    };
                }
            }
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            if d.is_multiple_of(50) {
                progress(d as f64 / total as f64);
            }
        }
    });
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

    #[test]
    fn ancestral_tables_match_diffusers_ddpm_step() {
        let s = DdpmSchedule::linear(1e-4, 0.02, 1000);
        let a = DdpmAncestral::new(&s, 1000);
        assert_eq!(a.steps.len(), 1000);
        assert_eq!((a.steps[0].t, a.steps[999].t), (999, 0));
        // t = 500: prev 499; posterior mean coefficients and the fixed_small variance.
        let st = a.steps[499];
        assert_eq!(st.t, 500);
        let (at, ap) = (s.alphas_cumprod[500], s.alphas_cumprod[499]);
        let beta = 1.0 - at / ap;
        assert!((st.c0 as f64 - ap.sqrt() * beta / (1.0 - at)).abs() < 1e-7);
        assert!((st.c1 as f64 - (at / ap).sqrt() * (1.0 - ap) / (1.0 - at)).abs() < 1e-7);
        assert!((st.std as f64 - ((1.0 - ap) / (1.0 - at) * beta).sqrt()).abs() < 1e-7);
        // β_t = β_500 for one-step spacing.
        assert!((beta - s.betas[500]).abs() < 1e-12);
        // The last step (t = 0, ᾱ_prev = 1) returns x0̂ without noise.
        let last = a.steps[999];
        assert_eq!(last.std, 0.0);
        assert!((last.c0 - 1.0).abs() < 1e-6 && last.c1.abs() < 1e-6);
        // 10 steps, "leading": 900, 800, …, 0.
        let ten = DdpmAncestral::new(&s, 10);
        assert_eq!(
            ten.steps.iter().map(|s| s.t).collect::<Vec<_>>(),
            (0..10).rev().map(|i| i * 100).collect::<Vec<_>>()
        );
    }

    /// With the exact ε of N(0, s²) data, ancestral sampling recovers the spread.
    #[test]
    fn ancestral_sampler_recovers_a_gaussian_target() {
        struct Exact(DdpmSchedule, f32);
        impl EpsModel for Exact {
            type Scratch = ();
            fn dim(&self) -> usize {
                1
            }
            fn scratch(&self, _: usize) {}
            fn eval(&self, x: &[f32], t: f32, out: &mut [f32], _: &mut ()) {
                let a = self.0.alphas_cumprod[t as usize] as f32;
                for (o, v) in out.iter_mut().zip(x) {
                    *o = (1.0 - a).sqrt() * v / (a * self.1 + 1.0 - a);
                }
            }
        }
        let sched = DdpmSchedule::linear(1e-4, 0.02, 1000);
        let model = Exact(sched.clone(), 0.25);
        let a = DdpmAncestral::new(&sched, 1000);
        let mut x = crate::numerics::sde::sampler::normal_rows(20_000, 1, 3, "x_T");
        let mut y = x.clone();
        ancestral_sample(&model, &a, &mut x, 1000, 7, &|_| {});
        ancestral_sample(&model, &a, &mut y, 333, 7, &|_| {});
        assert_eq!(x, y, "chunking does not change the result");
        let var = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len() as f64;
        assert!((var.sqrt() - 0.5).abs() < 0.02, "sd {}", var.sqrt());
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
