//! `sample` / `sampler: mc_score` ([`McScore`]): the reverse VE SDE driven by the
//! Monte Carlo score estimator itself — no network. A strong baseline the
//! paper does not report: what iDEM's network is trained to imitate.

use rayon::prelude::*;

use super::estimator::{Estimator, Form, Scratch};
use crate::energy::Scaled;
use crate::energy::gmm::Gmm;
use crate::engine::frame::{ColumnData, Table};
use crate::engine::params::{Default, ParamDef, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::sde::ve::{Geometric, reverse_em};

/// `sampler: mc_score`: `n_samples` particles from DEM's prior `N(0, h(1) I)`
/// in DEM's normalised coordinates (the energy's divided by `normalization`,
/// 50 for GMM-40), integrated by [`reverse_em`] with the score at each step
/// estimated from `k` energy evaluations ([`Estimator`], DEM's log-sum-exp and
/// norm clip by default), then scaled back. The energy is GMM-40 without
/// FAB's −∞ floor ([`Gmm::unmasked`]): the same estimates wherever DEM's are
/// defined. Each particle has its own random
/// stream of the stage seed (prior, SDE noise, Monte Carlo draws), so samples
/// do not depend on the thread count.
pub struct McScore;

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct McScoreParams {
        energy: String = (ParamType::Str { choices: &["gmm40"] }, Default::Str("gmm40"), "the target"),
        n_samples: usize = (ParamType::Int { min: 1, max: 10_000_000 }, Default::Int(1000), "particles"),
        steps: usize = (ParamType::Int { min: 1, max: 100_000 }, Default::Int(1000), "Euler–Maruyama steps (DEM: 1000)"),
        k: usize = (ParamType::Int { min: 1, max: 100_000 }, Default::Int(100), "Monte Carlo samples per score estimate"),
        estimator: String = (ParamType::Str { choices: &["log_sum_exp", "tweedie", "jensen"] }, Default::Str("log_sum_exp"), "the score estimator (DEM: log_sum_exp); `unbiased` needs the exact p_t and is for the study only"),
        max_norm: f64 = (ParamType::Float { min: 0.0, max: 1e12 }, Default::Float(70.0), "clip each estimate's norm to this (DEM: 70 for GMM-40); 0: no clip"),
        sigma_min: f64 = (ParamType::Float { min: 1e-12, max: 1e6 }, Default::Float(1e-5), "geometric schedule's σ_min (DEM: 1e-5)"),
        sigma_max: f64 = (ParamType::Float { min: 1e-12, max: 1e6 }, Default::Float(1.0), "geometric schedule's σ_max (DEM: 1)"),
        normalization: f64 = (ParamType::Float { min: 1e-9, max: 1e9 }, Default::Float(50.0), "the energy's coordinates divided by this (DEM: 50 for GMM-40)"),
        diffusion_scale: f64 = (ParamType::Float { min: 0.0, max: 100.0 }, Default::Float(1.0), "multiplies the SDE's noise (DEM: 1)"),
    }
}
static PARAMS: &[ParamDef] = McScoreParams::DEFS;
static INPUTS: &[InputDef] = &[];
static OUTPUTS: &[OutputDef] =
    &[OutputDef { name: "samples", media: Media::Table, doc: "x, y in the energy's coordinates" }];

impl Stage for McScore {
    describe!(Kind::Sample, "mc_score", version 2, PARAMS, INPUTS, OUTPUTS);
    fn output_columns(&self, output: &str) -> Option<&'static [&'static str]> {
        (output == "samples").then_some(&["x", "y"][..])
    }
    fn check_params(&self, p: &crate::engine::params::Params) -> Vec<(&'static str, String)> {
        let p = McScoreParams::read(p);
        if p.sigma_min < p.sigma_max {
            return Vec::new();
        }
        vec![("sigma_min", format!("sigma_min ({}) must be below sigma_max ({})", p.sigma_min, p.sigma_max))]
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let p = McScoreParams::read(ctx.params);
        // Unmasked: where every Monte Carlo sample lies beyond FAB's floor
        // (a particle far out early in the reverse SDE) DEM's estimate is NaN.
        let gmm = Gmm::dem40().unmasked();
        let energy = Scaled { energy: &gmm, scale: p.normalization };
        let form = Form::parse(&p.estimator).expect("declared choices");
        let est = Estimator { form, k: p.k, max_norm: (p.max_norm > 0.0).then_some(p.max_norm) };
        let schedule = Geometric { sigma_min: p.sigma_min, sigma_max: p.sigma_max };
        let prior_sd = schedule.h(1.0).sqrt();
        let done = std::sync::atomic::AtomicUsize::new(0);
        let n = p.n_samples;
        let particles: Vec<Result<[f64; 2], String>> = (0..n)
            .into_par_iter()
            .map(|i| {
                use rand::Rng;
                let mut rng = crate::engine::rng::particle(ctx.seed, "mc_score", i);
                let mut x = [0.0; 2];
                for v in x.iter_mut() {
                    *v = prior_sd * rng.sample::<f64, _>(rand_distr::StandardNormal);
                }
                let mut scratch = Scratch::default();
                reverse_em(&schedule, p.steps, p.diffusion_scale, &mut x, &mut rng, |_, h, x, out, rng| {
                    est.estimate(&energy, x, h, rng, &mut scratch, out)
                })
                .map_err(|(step, e)| format!("particle {i}, step {step} of {}: {e}", p.steps))?;
                let finished = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if finished.is_multiple_of(50) {
                    (ctx.progress)(finished as f64 / n as f64);
                }
                Ok([x[0] * p.normalization, x[1] * p.normalization])
            })
            .collect();
        let mut xs = Vec::with_capacity(n);
        let mut ys = Vec::with_capacity(n);
        for r in particles {
            let [x, y] = r.map_err(StageError::Failed)?;
            if !(x.is_finite() && y.is_finite()) {
                return Err(StageError::Failed("a sample is not finite".into()));
            }
            xs.push(x);
            ys.push(y);
        }
        let table = Table::new().with("x", ColumnData::F64(xs)).with("y", ColumnData::F64(ys));
        Ok([("samples".to_string(), Artifact::Table(table))].into_iter().collect())
    }
}
