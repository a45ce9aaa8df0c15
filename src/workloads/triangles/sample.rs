//! `sample` stages: draw from a trained model.
//!
//! `sampler: pc` runs the reverse-time predictor–corrector sampler
//! ([`crate::numerics::sde::sampler`]) with the OU coefficients and data scaling stored in
//! the model, then maps samples back to side lengths (`(x − shift)/scale`).
//! The prior draw depends only on (`prior_seed`, particle), so two sample stages
//! with the same `prior_seed` start from the same `x_T` — the seed samples its
//! tuned model from the pre-trained model's `x_T`, which makes pre/post
//! comparisons paired. By default `prior_seed` is the stage's seed.
//!
//! The origin's `reverse_pc_sampler_torch` adds noise on every corrector step,
//! the last included, and so does `sample` by default; `denoise: true` (Song et
//! al.'s `denoise=True`) returns the last corrector step's mean instead (see
//! [`crate::numerics::sde::sampler`]).
//!
//! A particle that diverges (the fixed-step Langevin corrector can overshoot
//! where the learned score is steep, near t = 0) is kept as it is: non-finite
//! samples fail every validity check, as NaN does in the seed's numpy code, and
//! the validate stage counts them — up to `max_nonfinite` (1 % by default) of
//! them; more fails the stage (every sampler), so a diverged model is never
//! cached as samples.
//!
//! A long run checkpoints between groups of 4096 particles (whole sampler
//! chunks): the finished rows and trajectory rows are the state, and a
//! resumed run gives the bytes of an uninterrupted one.

use crate::engine::frame::{ColumnData, Table};
use crate::engine::params::{Decl, Default, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::numerics::sde::Ou;
use crate::numerics::sde::sampler::{PcConfig, Prior, Trajectories, pc_sample, prior_draw};
use crate::workloads::triangles::net::FastMlp;
use crate::workloads::triangles::net::ScoreNetWeights;

pub struct Pc;

/// Peak memory per particle (measured; see [`crate::engine::stage::rows_memory`]).
const PC_BYTES_PER_ROW: u64 = 80;

/// The predictor–corrector sampler's own parameters, declared once: `sample`
/// / `pc` and `tune` / `smeme` (which samples its student every round) share
/// them, read by [`pc_config`].
pub const PC_STEPS: Decl =
    (ParamType::Int { min: 1, max: 1_000_000 }, Default::Int(1000), "predictor steps N (2N score evaluations)");
pub const PC_SNR: Decl =
    (ParamType::Float { min: 0.0, max: 10.0 }, Default::Float(0.15), "corrector step ε = (snr·g)²");
pub const PC_DENOISE: Decl = (
    ParamType::Bool,
    Default::Bool(false),
    "leave the noise out of the last corrector step (Song et al.'s denoise=True; the origin keeps it)",
);

/// The sampler settings [`PC_STEPS`], [`PC_SNR`] and [`PC_DENOISE`] give, for a
/// model trained up to `t_max`.
pub fn pc_config(steps: usize, snr: f64, denoise: bool, t_max: f64) -> PcConfig {
    PcConfig { steps, snr, t_max, chunk: CHUNK, denoise }
}

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct PcParams {
        n_samples: usize = (ParamType::Int { min: 1, max: 100_000_000 }, Default::Int(4096), "particles"),
        steps: usize = PC_STEPS,
        snr: f64 = PC_SNR,
        prior: String = (ParamType::Str { choices: &["standard", "ou_marginal"] }, Default::Str("standard"), "x_T ~ N(0, I) (seed) or the OU marginal at T"),
        denoise: bool = PC_DENOISE,
        max_nonfinite: f64 = (ParamType::Float { min: 0.0, max: 1.0 }, Default::Float(0.01), "largest fraction of non-finite samples kept (counted as invalid); more fails the stage"),
        prior_seed: Option<u64> = (ParamType::Int { min: 0, max: i64::MAX }, Default::Optional, "seed of the x_T draw (default: the stage seed); equal seeds pair samples"),
        trajectories: usize = (ParamType::Int { min: 0, max: 10_000 }, Default::Int(8), "particles whose paths are recorded"),
        trajectory_every: usize = (ParamType::Int { min: 1, max: 1_000_000 }, Default::Int(10), "record every k-th step"),
    }
}
static INPUTS: &[InputDef] =
    &[InputDef { name: "model", media: Media::Model("score_ou"), required: true, doc: "a trained score model" }];
static OUTPUTS: &[OutputDef] = &[
    OutputDef { name: "samples", media: Media::Table, doc: "a, b, c in side-length units" },
    OutputDef { name: "trajectories", media: Media::Table, doc: "particle, step, t, a, b, c" },
];

/// Particles per sampler chunk: large enough for gemm to be efficient, small
/// enough for a chunk's activations to stay in L2.
pub const CHUNK: usize = 512;

/// Particles a checkpoint falls between: whole chunks of [`CHUNK`], fixed
/// (not tied to the thread count). Each particle draws from its own stream,
/// so a run in groups gives the bytes of one run over all particles.
const PC_GROUP: usize = 8 * CHUNK;

impl Stage for Pc {
    describe!(Kind::Sample, "pc", version 3, params PcParams, INPUTS, OUTPUTS);
    fn output_columns(&self, output: &str) -> Option<&'static [&'static str]> {
        match output {
            "samples" => Some(&["a", "b", "c"]),
            "trajectories" => Some(&["particle", "step", "t", "a", "b", "c"]),
            _ => None,
        }
    }
    fn memory_bytes(&self, p: &crate::engine::params::Params) -> Option<(&'static str, u64)> {
        Some(("n_samples", crate::engine::stage::rows_memory(p, PC_BYTES_PER_ROW)))
    }
    fn checkpoints(&self) -> bool {
        true
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let p = &PcParams::read(ctx.params);
        let weights = ScoreNetWeights::from_bytes(ctx.blob("model")?)?;
        let meta = weights.meta.clone();
        let ou = Ou { lambda: meta.lambda, sigma: meta.sigma };
        let model = FastMlp::new(&weights);
        let n = p.n_samples;
        let prior = if p.prior == "standard" { Prior::Standard } else { Prior::OuMarginal };
        let prior_seed = p.prior_seed.unwrap_or(ctx.seed);
        let dim = weights.dim;
        let x_t = prior_draw(n, dim, prior, ou, meta.t_max, prior_seed);
        let cfg = pc_config(p.steps, p.snr, p.denoise, meta.t_max);
        let (x, traj) = ctx.checkpoint.in_chunks(
            (n, PC_GROUP),
            ctx.progress,
            |(x, _): &(Vec<f32>, Trajectories)| x.len() / dim,
            |(x, traj), r, progress| {
                let mut group = x_t[r.start * dim..r.end * dim].to_vec();
                let tr = pc_sample(
                    &model,
                    ou,
                    &mut group,
                    cfg,
                    (ctx.seed, r.start),
                    p.trajectories,
                    p.trajectory_every,
                    progress,
                );
                x.extend(group);
                traj.append(tr);
                Ok(())
            },
        )?;
        crate::engine::stage::check_finite_rows(&x, dim, p.max_nonfinite)?;
        let col = |xs: &[f32], j: usize| ColumnData::F32(xs.chunks(dim).map(|r| meta.to_data(r[j]) as f32).collect());
        let samples = Table::new().with("a", col(&x, 0)).with("b", col(&x, 1)).with("c", col(&x, 2));
        let trajectories = Table::new()
            .with("particle", ColumnData::I64(traj.particle))
            .with("step", ColumnData::I64(traj.step))
            .with("t", ColumnData::F32(traj.t))
            .with("a", col(&traj.x, 0))
            .with("b", col(&traj.x, 1))
            .with("c", col(&traj.x, 2));
        Ok([
            ("samples".to_string(), Artifact::Table(samples)),
            ("trajectories".to_string(), Artifact::Table(trajectories)),
        ]
        .into_iter()
        .collect())
    }
}
