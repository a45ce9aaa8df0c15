//! `sample` / `sampler: mc_score` ([`McScore`]): the reverse VE SDE driven by the
//! Monte Carlo score estimator itself — no network. A strong baseline the
//! paper does not report: what iDEM's network is trained to imitate.

use super::egnn::{EgnnModel, EgnnRun};
use super::estimator::Estimator;
use super::generate::Target;
use super::integrate::{NegativeTime, egnn_sde_range, mc_score_range, schedule_errors, ve_sde_range};
use super::mlp::{DemMlpRun, flatten};
use super::net::DemModel;
use crate::engine::frame::{ColumnData, Table};
use crate::engine::params::{Default, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::numerics::energy::Scaled;
use crate::numerics::sde::ve::Geometric;

/// `sampler: mc_score`: `n_samples` particles from DEM's prior `N(0, h(1) I)`
/// in DEM's normalised coordinates (the energy's divided by `normalization`,
/// 50 for GMM-40), integrated by [`crate::numerics::sde::ve::reverse_em`] with the score at each step
/// estimated from `k` energy evaluations ([`Estimator`], DEM's log-sum-exp and
/// norm clip by default), then scaled back. The energy is GMM-40 without
/// FAB's −∞ floor ([`crate::numerics::energy::gmm::Gmm::unmasked`]): the same estimates wherever DEM's are
/// defined. Each particle has its own random
/// stream of the stage seed (prior, SDE noise, Monte Carlo draws), so samples
/// do not depend on the thread count.
pub struct McScore;

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct McScoreParams {
        energy: String = (ParamType::Str { choices: &["gmm40", "dw4", "lj13", "lj55"] }, Default::Str("gmm40"), "the target (the particle systems are not normalised: set `normalization: 1`)"),
        n_samples: usize = (ParamType::Int { min: 1, max: 10_000_000 }, Default::Int(1000), "particles"),
        steps: usize = (ParamType::Int { min: 1, max: 100_000 }, Default::Int(1000), "Euler–Maruyama steps (DEM: 1000)"),
        k: usize = (super::estimator::K, Default::Int(100), "Monte Carlo samples per score estimate"),
        estimator: String = (super::estimator::FORMS, Default::Str("log_sum_exp"), "the score estimator (DEM: log_sum_exp); `unbiased` needs the exact p_t and is for the study only"),
        max_norm: f64 = (super::estimator::MAX_NORM, Default::Float(70.0), "clip each estimate's norm to this (DEM: 70 for GMM-40; 20 per particle for DW-4 and LJ); 0: no clip"),
        sigma_min: f64 = (ParamType::Float { min: 1e-12, max: 1e6 }, Default::Float(1e-5), "geometric schedule's σ_min (DEM: 1e-5)"),
        sigma_max: f64 = (ParamType::Float { min: 1e-12, max: 1e6 }, Default::Float(1.0), "geometric schedule's σ_max (DEM: 1)"),
        normalization: f64 = (ParamType::Float { min: 1e-9, max: 1e9 }, Default::Float(50.0), "the energy's coordinates divided by this (DEM: 50 for GMM-40)"),
        diffusion_scale: f64 = (ParamType::Float { min: 0.0, max: 100.0 }, Default::Float(1.0), "multiplies the SDE's noise (DEM: 1)"),
    }
}
static INPUTS: &[InputDef] = &[];
static OUTPUTS: &[OutputDef] = &[OutputDef {
    name: "samples",
    media: Media::Table,
    doc: "GMM-40: x, y in the energy's coordinates; particles: p{i}_x, p{i}_y[, p{i}_z]",
}];

impl Stage for McScore {
    describe!(Kind::Sample, "mc_score", version 3, params McScoreParams, INPUTS, OUTPUTS);
    fn checkpoints(&self) -> bool {
        true
    }
    fn check_params(&self, p: &crate::engine::params::Params) -> Vec<(&'static str, String)> {
        let p = McScoreParams::read(p);
        schedule_errors(&p.energy, p.sigma_min, p.sigma_max, p.normalization)
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let p = McScoreParams::read(ctx.params);
        // GMM-40 unmasked: where every Monte Carlo sample lies beyond FAB's
        // floor (a particle far out early in the reverse SDE) DEM's estimate is NaN.
        let target = match Target::by_name(&p.energy) {
            Some(Target::Gmm(g)) => Target::Gmm(g.unmasked()),
            Some(t) => t,
            None => return Err(StageError::Failed(format!("unknown energy `{}`", p.energy))),
        };
        let energy = Scaled { energy: target.energy(), scale: p.normalization };
        let est = Estimator::from_params(&p.estimator, p.k, p.max_norm);
        let schedule = Geometric { sigma_min: p.sigma_min, sigma_max: p.sigma_max };
        let n = p.n_samples;
        // In chunks of particles, each particle from its own stream (each one
        // integrated alone, so the chunk size may follow the threads).
        let chunk = 64.max(8 * rayon::current_num_threads());
        let dim = crate::numerics::energy::Energy::dim(&energy);
        let xs = in_chunks(ctx, (n, dim, chunk), &mut |range, progress| {
            mc_score_range(&energy, &est, &schedule, p.steps, p.diffusion_scale, range, ctx.seed, "mc_score", progress)
        })?;
        Ok([("samples".to_string(), Artifact::Table(points_table(&target, &xs, p.normalization)))]
            .into_iter()
            .collect())
    }
}

/// A chunk of particles: `(range, progress)` to the particles' values
/// (`dim` each), `progress` taking the chunk's fraction done.
type Chunk<'a, T> = dyn FnMut(std::ops::Range<usize>, &(dyn Fn(f64) + Sync)) -> Result<Vec<T>, String> + 'a;

/// The `n` particles (`dim` values each) of a sampler that integrates them
/// in chunks of `size`, each particle from its own stream, checkpointed
/// between chunks with the rows so far ([`crate::engine::checkpoint::Checkpointing::in_chunks`]).
fn in_chunks<T: serde::Serialize + serde::de::DeserializeOwned>(
    ctx: &StageCtx,
    (n, dim, size): (usize, usize, usize),
    chunk: &mut Chunk<'_, T>,
) -> Result<Vec<T>, StageError> {
    ctx.checkpoint.in_chunks(
        (n, size),
        ctx.progress,
        |xs: &Vec<T>| xs.len() / dim,
        |xs, range, progress| {
            xs.extend(chunk(range, progress).map_err(StageError::Failed)?);
            Ok(())
        },
    )
}

/// Points (`n × dim`, in the network's coordinates) as the target's sample
/// table, scaled back by `normalization`.
pub fn points_table(target: &Target, xs: &[f64], normalization: f64) -> Table {
    let cols = target.columns();
    let dim = cols.len();
    let mut table = Table::new();
    for (j, name) in cols.iter().enumerate() {
        table = table.with(name, ColumnData::F64(xs.iter().skip(j).step_by(dim).map(|v| v * normalization).collect()));
    }
    table
}

/// `sampler: ve_sde`: a trained iDEM network's reverse SDE — DEM's sampler —
/// with the schedule and normalisation the model was trained with; samples
/// in the energy's coordinates. DEM's MLP (GMM-40) through
/// [`super::integrate::ve_sde_particles`], its EGNN (particle systems, mean-free) through
/// [`super::integrate::egnn_sde_particles`], in chunks of 1000 particles.
pub struct VeSde;

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct VeSdeParams {
        n_samples: usize = (ParamType::Int { min: 1, max: 10_000_000 }, Default::Int(1000), "particles (DEM's evaluation batch: 1000)"),
        steps: usize = (ParamType::Int { min: 1, max: 100_000 }, Default::Int(1000), "Euler–Maruyama steps (DEM: 1000)"),
        diffusion_scale: f64 = (ParamType::Float { min: 0.0, max: 100.0 }, Default::Float(1.0), "multiplies the SDE's noise (DEM: 1)"),
        negative_time_steps: usize = (ParamType::Int { min: 0, max: 1_000_000 }, Default::Int(0), "particle systems: gradient-descent steps on the energy after the reverse SDE (DEM's negative_time tail, dt 1e-4; DEM: 10 for lj55, off otherwise)"),
        max_norm: f64 = (super::estimator::MAX_NORM, Default::Float(20.0), "the negative-time tail's clip on each configuration's gradient norm (DEM's clipper: 20); 0: no clip"),
    }
}
static VE_INPUTS: &[InputDef] = &[InputDef {
    name: "model",
    media: Media::Model("idem"),
    required: true,
    doc: "a network from train objective: idem (DEM's MLP or EGNN)",
}];

/// Particles a `ve_sde` chunk holds: a checkpoint falls between chunks. Fixed,
/// not tied to the thread count, so the networks' batched forwards see the
/// same batches whatever the threads (and up to 1000 samples are one chunk).
const VE_CHUNK: usize = 1000;

impl Stage for VeSde {
    describe!(Kind::Sample, "ve_sde", version 3, params VeSdeParams, VE_INPUTS, OUTPUTS);
    /// In chunks of [`VE_CHUNK`] particles, each from its own stream: a
    /// checkpoint holds the finished particles (network coordinates).
    fn checkpoints(&self) -> bool {
        true
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let p = VeSdeParams::read(ctx.params);
        let blob = ctx.blob("model")?;
        let n = p.n_samples;
        if blob.starts_with(super::egnn::MAGIC) {
            let model = EgnnModel::from_bytes(blob).map_err(|e| StageError::Failed(e.to_string()))?;
            let net = EgnnRun::new(&model.config, &model.layers);
            let schedule = Geometric { sigma_min: model.sigma_min, sigma_max: model.sigma_max };
            let target = Target::by_name(&model.energy)
                .ok_or_else(|| StageError::Failed(format!("the model's energy `{}` is unknown", model.energy)))?;
            let Target::Particles(sys) = &target else {
                return Err(StageError::Failed(format!(
                    "an EGNN trained on `{}`, not a particle system",
                    model.energy
                )));
            };
            let tail = NegativeTime { sys, steps: p.negative_time_steps, max_norm: p.max_norm };
            let pts = in_chunks(ctx, (n, sys.n * sys.d, VE_CHUNK), &mut |r, _| {
                egnn_sde_range(&net, &schedule, p.steps, p.diffusion_scale, &tail, r, ctx.seed, "ve_sde")
            })?;
            let xs: Vec<f64> = pts.iter().map(|v| *v as f64).collect();
            return Ok([("samples".to_string(), Artifact::Table(points_table(&target, &xs, 1.0)))]
                .into_iter()
                .collect());
        }
        if p.negative_time_steps > 0 {
            return Err(StageError::Failed(
                "negative_time_steps: the negative-time tail is for the particle systems; this is a GMM-40 model"
                    .to_string(),
            ));
        }
        let model = DemModel::from_bytes(blob).map_err(|e| StageError::Failed(e.to_string()))?;
        let params = flatten(&model.layers);
        let mut run = DemMlpRun::new(&model.config);
        let schedule = Geometric { sigma_min: model.sigma_min, sigma_max: model.sigma_max };
        let pts = in_chunks(ctx, (n, 2, VE_CHUNK), &mut |r, _| {
            ve_sde_range(&mut run, &params, &schedule, p.steps, p.diffusion_scale, r, ctx.seed, "ve_sde")
                .map(|v| v.into_flattened())
        })?;
        let s = model.normalization;
        let table = Table::new()
            .with("x", ColumnData::F64(pts.iter().step_by(2).map(|v| *v as f64 * s).collect()))
            .with("y", ColumnData::F64(pts.iter().skip(1).step_by(2).map(|v| *v as f64 * s).collect()));
        Ok([("samples".to_string(), Artifact::Table(table))].into_iter().collect())
    }
}
