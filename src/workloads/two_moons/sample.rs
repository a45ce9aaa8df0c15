//! `sample` / `sampler: euler_discrete` ([`EulerDiscrete`]) samples an ε-prediction
//! model with diffusers' Euler-discrete scheduler (seed 002); `sampler: ddpm`
//! ([`Ancestral`]) with diffusers' DDPM ancestral scheduler.

use crate::engine::frame::{ColumnData, Table};
use crate::engine::params::{Default, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::numerics::sde::ddpm::{DdpmSchedule, ancestral_sample_from, euler_sample};
use crate::numerics::sde::sampler::normal_rows;
use crate::workloads::two_moons::net::EpsModelWeights;
use crate::workloads::two_moons::net::FastEps;

/// Peak memory per requested row (measured; see [`crate::engine::stage::rows_memory`]).
const EPS_BYTES_PER_ROW: u64 = 50;

/// `sampler: euler_discrete`: diffusers' `EulerDiscreteScheduler` for an
/// ε-prediction model trained by `objective: ddpm_eps` (see
/// [`crate::numerics::sde::ddpm`] for the exact update). `x_T` is `N(0, I)·init_noise_sigma`,
/// each particle from its own stream of the stage seed; the model's raw or EMA
/// weights (`use_ema`) are evaluated by the fused [`FastEps`]. Samples keep the
/// training data's column names and coordinates (standardised, for two moons).
pub struct EulerDiscrete;

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct EpsSamplerParams {
        n_samples: usize = (ParamType::Int { min: 1, max: 100_000_000 }, Default::Int(5000), "particles"),
        steps: usize = (ParamType::Int { min: 1, max: 1_000_000 }, Default::Int(1000), "inference steps (one network evaluation each)"),
        use_ema: bool = (ParamType::Bool, Default::Bool(false), "sample with the EMA weights (the model must have them)"),
        max_nonfinite: f64 = (ParamType::Float { min: 0.0, max: 1.0 }, Default::Float(0.01), "largest fraction of non-finite samples kept (counted as invalid); more fails the stage"),
    }
}
static EULER_INPUTS: &[InputDef] = &[InputDef {
    name: "model",
    media: Media::Model("eps_ddpm"),
    required: true,
    doc: "a model from `objective: ddpm_eps`",
}];
static EULER_OUTPUTS: &[OutputDef] =
    &[OutputDef { name: "samples", media: Media::Table, doc: "the model's data columns (e.g. x, y)" }];

/// `use_ema: true` needs a model trained with `ema: true`: said by `check`,
/// before anything runs (the sampler also refuses such a blob at run time).
fn ema_wiring(
    p: &crate::engine::params::Params,
    input: &str,
    producer: &dyn Stage,
    producer_params: &crate::engine::params::Params,
) -> Option<String> {
    let p = EpsSamplerParams::read(p);
    let trained_with_ema = producer_params.get("ema").is_none_or(|v| *v == crate::engine::params::Value::Bool(true));
    (input == "model" && p.use_ema && producer.method() == "ddpm_eps" && !trained_with_ema)
        .then(|| "use_ema: true, but the model was trained without `ema: true`".to_string())
}

/// The weights `use_ema` picks from a DDPM model, and its schedule.
fn eps_model(ctx: &StageCtx, p: &EpsSamplerParams) -> Result<(EpsModelWeights, FastEps, DdpmSchedule), StageError> {
    let w = EpsModelWeights::from_bytes(ctx.blob("model")?)?;
    let layers = if p.use_ema {
        w.ema
            .as_ref()
            .ok_or_else(|| StageError::Failed("use_ema: true, but the model was trained without `ema: true`".into()))?
    } else {
        &w.raw
    };
    let model = FastEps::new(&w.config, layers);
    let sched = DdpmSchedule::linear(w.schedule.beta_start, w.schedule.beta_end, w.schedule.train_timesteps);
    Ok((w, model, sched))
}

/// A table with the model's data columns from row-major samples.
fn columns_table(columns: &[String], x: &[f32]) -> Outputs {
    let dim = columns.len();
    let mut table = Table::new();
    for (j, name) in columns.iter().enumerate() {
        table = table.with(name, ColumnData::F32(x.iter().skip(j).step_by(dim).copied().collect()));
    }
    [("samples".to_string(), Artifact::Table(table))].into_iter().collect()
}

/// `sampler: ddpm`: diffusers' `DDPMScheduler` ancestral sampler
/// ([`crate::numerics::sde::ddpm::DdpmAncestral`]: posterior mean plus the `fixed_small`
/// noise at every step but the last) for a model from `objective: ddpm_eps` —
/// the sampler behind the origin's EMA result ("DDPM (this repo)" in its README
/// history). Same parameters and outputs as `euler_discrete`; `x_T ~ N(0, I)`
/// and each step's noise come from per-particle streams of the stage seed.
pub struct Ancestral;

/// What the two samplers of a DDPM ε-model share: the model's weights and
/// schedule, the checks, `x_T` from per-particle streams, the output table;
/// they differ only in the scheduler that moves `x_T` to samples.
trait EpsScheduler {
    /// Move `x` (`N(0, I)` rows; row `r` is particle `first + r` of the
    /// stage seed's streams) to samples.
    fn sample(
        &self,
        p: &EpsSamplerParams,
        model_sched: (&FastEps, &DdpmSchedule),
        x: &mut [f32],
        seed_first: (u64, usize),
        progress: &(dyn Fn(f64) + Sync),
    );
}

impl EpsScheduler for EulerDiscrete {
    fn sample(
        &self,
        p: &EpsSamplerParams,
        (model, sched): (&FastEps, &DdpmSchedule),
        x: &mut [f32],
        _seed_first: (u64, usize),
        progress: &(dyn Fn(f64) + Sync),
    ) {
        let euler = crate::numerics::sde::ddpm::EulerDiscrete::new(sched, p.steps);
        x.iter_mut().for_each(|v| *v *= euler.init_noise_sigma);
        euler_sample(model, &euler, x, EULER_CHUNK, progress);
    }
}

impl EpsScheduler for Ancestral {
    fn sample(
        &self,
        p: &EpsSamplerParams,
        (model, sched): (&FastEps, &DdpmSchedule),
        x: &mut [f32],
        seed_first: (u64, usize),
        progress: &(dyn Fn(f64) + Sync),
    ) {
        let ancestral = crate::numerics::sde::ddpm::DdpmAncestral::new(sched, p.steps);
        ancestral_sample_from(model, &ancestral, x, EULER_CHUNK, seed_first, progress);
    }
}

/// Particles a checkpoint falls between: whole chunks of [`EULER_CHUNK`], so a
/// run in groups computes each chunk as one run over all particles does.
const EPS_GROUP: usize = 16 * EULER_CHUNK;

/// Both samplers: `x_T` for every particle, then groups of [`EPS_GROUP`]
/// particles, each moved to samples whole; the finished rows are the
/// checkpoint's state, and a resumed run goes on from the next group.
fn run_eps_sampler(scheduler: &dyn EpsScheduler, ctx: &StageCtx) -> Result<Outputs, StageError> {
    let p = &EpsSamplerParams::read(ctx.params);
    let (w, model, sched) = eps_model(ctx, p)?;
    let dim = w.config.dim;
    let x_t = normal_rows(p.n_samples, dim, ctx.seed, "x_T");
    let x = ctx.checkpoint.in_chunks(
        (p.n_samples, EPS_GROUP),
        ctx.progress,
        |x: &Vec<f32>| x.len() / dim,
        |x, r, progress| {
            let mut group = x_t[r.start * dim..r.end * dim].to_vec();
            scheduler.sample(p, (&model, &sched), &mut group, (ctx.seed, r.start), progress);
            x.extend(group);
            Ok(())
        },
    )?;
    crate::engine::stage::check_finite_rows(&x, dim, p.max_nonfinite)?;
    Ok(columns_table(&w.columns, &x))
}

/// The `Stage` impl of a DDPM-model sampler: its selector value and version.
macro_rules! eps_sampler {
    ($ty:ty, $method:literal, version $version:literal) => {
        impl Stage for $ty {
            describe!(Kind::Sample, $method, version $version, params EpsSamplerParams, EULER_INPUTS, EULER_OUTPUTS);
            fn check_input(
                &self,
                p: &crate::engine::params::Params,
                input: &str,
                producer: &dyn Stage,
                producer_params: &crate::engine::params::Params,
            ) -> Option<String> {
                ema_wiring(p, input, producer, producer_params)
            }
            fn memory_bytes(&self, p: &crate::engine::params::Params) -> Option<(&'static str, u64)> {
                Some(("n_samples", crate::engine::stage::rows_memory(p, EPS_BYTES_PER_ROW)))
            }
            fn checkpoints(&self) -> bool {
                true
            }
            fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
                run_eps_sampler(self, ctx)
            }
        }
    };
}

eps_sampler!(EulerDiscrete, "euler_discrete", version 1);
eps_sampler!(Ancestral, "ddpm", version 1);

/// Particles per chunk of the DDPM-model samplers.
pub const EULER_CHUNK: usize = 256;
