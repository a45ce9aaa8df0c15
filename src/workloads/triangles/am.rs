//! `tune method: smeme_am`: S-MEME as the paper does it — mirror descent over
//! `iterations` steps, each a KL-regularised step toward `p_{k−1}^{1−γ}`,
//! solved by Adjoint Matching (De Santi et al., ICML 2025, "Provable Maximum
//! Entropy Manifold Exploration via Diffusion Models"; the S-MEME trainers in
//! the first commit of `riccardodesanti/flow-density-control`, whose Adjoint
//! Matching base class is not public: this is written from the AM paper,
//! Domingo-Enrich et al. 2024, in the OU score model's terms).
//!
//! **The step.** The base model is the previous iterate `π_{k−1}` (the
//! pre-trained model at k = 1; `base ← fine` after every iteration), the
//! reward of step k is `r = −γ_k·log p_{k−1}`, whose gradient the base score
//! network gives without a density: `∇r(x) = −γ_k·s_{k−1}(x, t_ε)`.
//! Generative time runs from `t = T` (noise) to `t = 0` (data); the reverse
//! SDE's drift is `b(x, t) = λx + σ²·s(x, t)`, and a fine model `s_fine`
//! differs from the base by the control `u = σ·(s_fine − s_base)`. Adjoint
//! Matching's optimal control is `u* = −σ·ã` with the lean adjoint `ã`,
//! `ã(0) = −∇r(X_0)` and, in scoreflow's time, `dã/dt = (∇ₓb)ᵀã`. Hence the
//! per-step regression, on the fine model's own trajectories:
//!
//! ```text
//! ã_0 = γ_k·((1 + α)·s_{k−1}(x_0, t_ε) − α·s_pre(x_0, t_ε))
//! ã_j = ã_{j−1} + h·(λ·ã_{j−1} + σ²·J_{s_{k−1}}(x_j, t_j)ᵀ·ã_{j−1})   (+ h·γ_k·s_{k−1}(x_j, t_j) with running_reward)
//! L   = mean_{i, j ∈ subset} σ²·‖s_fine(x_j, t_j) − (s_{k−1}(x_j, t_j) − ã_j)‖²
//! ```
//!
//! At the data end the target is `s_{k−1} − γ·s_{k−1} = (1 − γ)·s_{k−1}`: the
//! score of `p_{k−1}^{1−γ}`, flatter for γ ∈ (0, 2) — the sign derived from
//! the AM paper (its loss `‖u + σᵀã‖²` with `ã(1) = −∇r`). The public genexp
//! code writes `(2/σ)(v_fine − v_base) − σ·adj` with `adj = −∇r`, which moves
//! toward higher density: the design notes flag it, and the end-to-end
//! Gaussian test pins ours (the tuned variance grows).
//!
//! **The loop** (each of `iterations` K): rounds until `steps_per_iteration`
//! Adam steps: sample `traj_per_batch` trajectories of the fine model by
//! Euler–Maruyama, predictor only (AM's adjoint is the SDE's), `am_steps`
//! steps from the `prior` (each trajectory its own noise stream); the lean
//! adjoint through the base network (one hand-written input VJP a step,
//! [`super::backprop::Mlp::forward_vjp`], checked against burn's autodiff);
//! the regression on the time subset (the `time_subset_fixed` share of the
//! steps nearest `time_subset_end` plus a random `time_subset_random` share of
//! the rest, AM's App. G2 / `create_timestep_subset`); `grad_steps_per_batch`
//! Adam steps on it (lr 2e-4, no weight decay, global norm clip 1.0, state
//! kept across iterations). `parameterization: full` (the paper) trains every
//! weight from the pre-trained ones; `delta` trains a zero-initialised delta
//! network on `[x, t]` beside the frozen pre-trained one. With γ = 0 the
//! target is the fine model's own output, the gradient exactly zero, and the
//! weights do not move.
//!
//! **Outputs**: the model, a `tracker` row per round (AM loss, gradient norm
//! before clipping, mean ‖ã_0‖ and ‖ã_N‖, `step_ratio` = mean‖s_fine −
//! s_base‖/mean‖s_base‖ at `(x_0, t_ε)` on the round's terminal samples, their
//! valid fraction and obtuse share) and an `iterations` table: after each
//! mirror step k = 0 … K, the exploration metrics ([`super::explore`]) of
//! `eval_samples` predictor–corrector samples from fixed x_T (the same for
//! every k, and the same as a `sample` stage with this stage's seed), against
//! those of k = 0.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::Rng;
use rand::seq::SliceRandom;

use super::backprop::{Features, Mlp};
use super::net::{FastMlp, ScoreNetWeights};
use super::validate::{TriangleChecksParams, ValidSet};
use crate::engine::checkpoint::{Checkpointing, decode, encode};
use crate::engine::frame::{ColumnData, Table};
use crate::engine::params::{Default, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::numerics::nn::backprop::{AdamW, clip_grad_norm};
use crate::numerics::nn::{init_layers, unflatten_layers};
use crate::numerics::rng::{particle as particle_rng, stream as rng};
use crate::numerics::sde::Ou;
use crate::numerics::sde::sampler::{Prior, pc_sample, prior_draw};
use rand_distr::{Distribution, StandardNormal};

pub struct SmemeAm;

const NONNEG: ParamType = ParamType::Float { min: 0.0, max: f64::INFINITY };
const COUNT: ParamType = ParamType::Int { min: 1, max: 1_000_000 };
const SHARE: ParamType = ParamType::Float { min: 0.0, max: 1.0 };

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct AmParams {
        iterations: usize = (COUNT, Default::Int(4), "mirror-descent iterations K (the paper's synthetic runs: 4)"),
        gamma: f64 = (ParamType::Float { min: 0.0, max: 10.0 }, Default::Float(1.0), "γ = 1/η, the reward multiplier of each step (the code's lmbda: 1)"),
        gamma_schedule: String = (ParamType::Str { choices: &["const", "harmonic"] }, Default::Str("const"), "`const`: γ every step; `harmonic`: γ/k (Robbins–Monro)"),
        t_eps: f64 = (ParamType::Float { min: 1e-6, max: 1.0 }, Default::Float(0.01), "time at which the previous model's score gives the reward gradient (the code's epsilon 1/100)"),
        alpha_pre: f64 = (NONNEG, Default::Float(0.0), "weight of an extra KL to the pre-trained model (the code's kl_penalty; 0 in S-MEME)"),
        running_reward: bool = (ParamType::Bool, Default::Bool(false), "add the running reward −γ·log p_{k−1}(x_t) along the path (max_ent_trajectory.py)"),
        steps_per_iteration: usize = (COUNT, Default::Int(300), "Adam steps per mirror step"),
        grad_steps_per_batch: usize = (COUNT, Default::Int(2), "Adam steps on each sampled batch and its adjoint (the code's finetune_steps)"),
        traj_per_batch: usize = (COUNT, Default::Int(64), "trajectories sampled per batch"),
        am_steps: usize = (COUNT, Default::Int(100), "Euler–Maruyama steps of a trajectory"),
        time_subset_fixed: f64 = (SHARE, Default::Float(0.25), "share of the steps, nearest time_subset_end, always in the loss"),
        time_subset_random: f64 = (SHARE, Default::Float(0.25), "share of the other steps drawn at random for the loss"),
        time_subset_end: String = (ParamType::Str { choices: &["data", "noise"] }, Default::Str("data"), "which end the fixed steps are taken from"),
        lr: f64 = (NONNEG, Default::Float(2e-4), "Adam learning rate (FDC's manifold-exploration run)"),
        clip_grad_norm: f64 = (NONNEG, Default::Float(1.0), "global gradient-norm clip (0: none)"),
        parameterization: String = (ParamType::Str { choices: &["full", "delta"] }, Default::Str("full"), "`full`: every weight (the paper); `delta`: a zero-initialised delta network beside the frozen model"),
        delta_hidden: usize = (COUNT, Default::Int(64), "delta network width (parameterization: delta)"),
        prior: String = (ParamType::Str { choices: &["standard", "ou_marginal"] }, Default::Str("standard"), "x_T of the trajectories and of the evaluation: N(0, I) or the OU marginal at T"),
        eval_every_iteration: bool = (ParamType::Bool, Default::Bool(true), "write the iterations table"),
        eval_samples: usize = (COUNT, Default::Int(4096), "evaluation samples per iteration"),
        eval_steps: usize = super::sample::PC_STEPS,
        snr: f64 = super::sample::PC_SNR,
        denoise: bool = super::sample::PC_DENOISE,
        eps: f64 = (SHARE, Default::Float(1e-3), "validity margin (the validate stage's)"),
        tol: f64 = (SHARE, Default::Float(0.01), "type classification tolerance"),
    }
}

static INPUTS: &[InputDef] =
    &[InputDef { name: "model", media: Media::Model("score_ou"), required: true, doc: "the pre-trained score model" }];
static OUTPUTS: &[OutputDef] = &[
    OutputDef { name: "model", media: Media::Model("score_ou"), doc: "π_K: the tuned model" },
    OutputDef {
        name: "tracker",
        media: Media::Table,
        doc: "per round: AM loss, gradient norm, adjoint norms, step ratio, validity",
    },
    OutputDef {
        name: "iterations",
        media: Media::Table,
        doc: "per mirror step k = 0…K: exploration metrics of paired samples",
    },
    OutputDef {
        name: "samples",
        media: Media::Table,
        doc: "iteration, a, b, c: each mirror step's evaluation samples",
    },
];

/// One `tracker` row.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Round {
    pub iteration: i64,
    pub round: i64,
    pub step: i64,
    pub gamma: f64,
    pub am_loss: f64,
    pub grad_norm: f64,
    pub adjoint_0: f64,
    pub adjoint_n: f64,
    pub step_ratio: f64,
    pub valid_fraction: f64,
    pub obtuse: f64,
}

/// Everything the loop needs to continue from a round's start.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct AmState {
    params: Vec<f32>,
    base: Vec<f32>,
    adam: Option<AdamW>,
    rounds: Vec<Round>,
    iterations: Vec<(i64, Vec<f64>)>,
    samples: Vec<(i64, Vec<[f64; 3]>)>,
    k: usize,
    round: usize,
    steps: usize,
}

/// The networks: the frozen pre-trained one, and the trainable one (the whole
/// score network, or a delta beside the frozen one).
pub(crate) struct Nets {
    score: Mlp,
    delta: Option<Mlp>,
    pre: Vec<f32>,
    dim: usize,
}

impl Nets {
    /// `s(x, t)` of the model whose trainable parameters are `p` into `out`,
    /// and `Jₓsᵀ·a` into `vjp` when `a` is given.
    fn eval(&mut self, p: &[f32], x: &[f32], t: f32, a: Option<&[f32]>, out: &mut [f32], vjp: &mut [f32]) {
        match &mut self.delta {
            None => self.score.forward_vjp(p, x, t, a, out, vjp),
            Some(d) => {
                self.score.forward_vjp(&self.pre, x, t, a, out, vjp);
                let (mut o2, mut v2) = (vec![0f32; out.len()], vec![0f32; vjp.len()]);
                d.forward_vjp(p, x, t, a, &mut o2, &mut v2);
                out.iter_mut().zip(&o2).for_each(|(o, v)| *o += v);
                vjp.iter_mut().zip(&v2).for_each(|(o, v)| *o += v);
            }
        }
    }

    /// The pre-trained model's `s(x, t)`.
    fn pre_eval(&mut self, x: &[f32], t: f32) -> Vec<f32> {
        let mut out = vec![0f32; x.len()];
        self.score.forward_vjp(&self.pre, x, t, None, &mut out, &mut []);
        out
    }

    /// The trainable network alone.
    fn trainable(&mut self) -> &mut Mlp {
        self.delta.as_mut().unwrap_or(&mut self.score)
    }

    /// The model's weights with trainable parameters `p`.
    fn weights(&self, pre: &ScoreNetWeights, p: &[f32]) -> ScoreNetWeights {
        match &self.delta {
            None => ScoreNetWeights { layers: unflatten_layers(&self.score.shapes(), p), ..pre.clone() },
            Some(d) => ScoreNetWeights { delta: unflatten_layers(&d.shapes(), p), ..pre.clone() },
        }
    }
}

/// One round's trajectories (states `x_j`, j = 0 at the data end), their
/// lean adjoints and the regression batch.
pub(crate) struct Batch {
    x: Vec<f32>,
    t: Vec<f32>,
    adjoint: Vec<f32>,
    adjoint_0: f64,
    adjoint_n: f64,
    step_ratio: f64,
    terminal: Vec<f32>,
}

/// The AM settings one round needs.
pub(crate) struct Setting<'a> {
    ou: Ou,
    t_max: f64,
    gamma: f64,
    prior: Prior,
    p: &'a AmParams,
}

fn mean_norm(v: &[f32], dim: usize) -> f64 {
    let n = (v.len() / dim).max(1) as f64;
    v.chunks_exact(dim).map(|r| r.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()).sum::<f64>() / n
}

/// The steps `1..=n` in the loss: the fixed share nearest the chosen end, and
/// a random share of the rest (sorted).
pub fn time_subset(n: usize, fixed: f64, random: f64, data_end: bool, rng: &mut impl Rng) -> Vec<usize> {
    let nf = ((fixed * n as f64).ceil() as usize).min(n);
    let (mut keep, mut rest): (Vec<usize>, Vec<usize>) = if data_end {
        ((1..=nf).collect(), (nf + 1..=n).collect())
    } else {
        ((n - nf + 1..=n).collect(), (1..=n - nf).collect())
    };
    let nr = ((random * rest.len() as f64).round() as usize).min(rest.len());
    let (picked, _) = rest.partial_shuffle(rng, nr);
    keep.extend_from_slice(picked);
    keep.sort_unstable();
    keep
}

/// One step of the lean adjoint from `t_{j−1}` to `t_j = t_{j−1} + h`, given
/// `vjp = J_{s_base}(x_j, t_j)ᵀ·ã_{j−1}`: `ã ← ã + h·(λ·ã + σ²·vjp)`, plus
/// `h·γ·s_base(x_j, t_j)` with a running reward `(γ, s_base)`.
pub fn adjoint_step(a: &mut [f32], vjp: &[f32], h: f32, (lambda, sigma): (f32, f32), running: Option<(f32, &[f32])>) {
    for (k, v) in a.iter_mut().enumerate() {
        *v += h * (lambda * *v + sigma * sigma * vjp[k]);
        if let Some((gamma, s)) = running {
            *v += h * gamma * s[k];
        }
    }
}

/// Sample one round's trajectories from the fine model and take the lean
/// adjoint through the base model.
pub(crate) fn round_batch(nets: &mut Nets, s: &Setting, (params, base): (&[f32], &[f32]), seed: u64) -> Batch {
    let (dim, m, n) = (nets.dim, s.p.traj_per_batch, s.p.am_steps);
    let h = (s.t_max / n as f64) as f32;
    let (lambda, sigma) = (s.ou.lambda as f32, s.ou.sigma as f32);
    let prior = s.prior;
    // States x_n (the prior) … x_0, stored by j.
    let mut xs = vec![Vec::new(); n + 1];
    xs[n] = prior_draw(m, dim, prior, s.ou, s.t_max, seed);
    let mut noise: Vec<_> = (0..m).map(|i| particle_rng(seed, "am-noise", i)).collect();
    let mut out = vec![0f32; m * dim];
    let t_of = |j: usize| (j as f64 * s.t_max / n as f64) as f32;
    for j in (1..=n).rev() {
        nets.eval(params, &xs[j], t_of(j), None, &mut out, &mut []);
        let mut next = xs[j].clone();
        for (i, r) in noise.iter_mut().enumerate() {
            for c in 0..dim {
                let k = i * dim + c;
                let z: f32 = StandardNormal.sample(r);
                next[k] += (lambda * xs[j][k] + sigma * sigma * out[k]) * h + sigma * h.sqrt() * z;
            }
        }
        xs[j - 1] = next;
    }
    // ã_0 from the base (and pre-trained) score at (x_0, t_ε).
    let (t_eps, gamma, alpha) = (s.p.t_eps as f32, s.gamma as f32, s.p.alpha_pre as f32);
    let mut s_base = vec![0f32; m * dim];
    nets.eval(base, &xs[0], t_eps, None, &mut s_base, &mut []);
    let mut s_fine = vec![0f32; m * dim];
    nets.eval(params, &xs[0], t_eps, None, &mut s_fine, &mut []);
    let diff: Vec<f32> = s_fine.iter().zip(&s_base).map(|(a, b)| a - b).collect();
    let step_ratio = mean_norm(&diff, dim) / mean_norm(&s_base, dim).max(1e-12);
    let mut a: Vec<f32> = s_base.iter().map(|v| gamma * (1.0 + alpha) * v).collect();
    if alpha > 0.0 {
        let s_pre = nets.pre_eval(&xs[0], t_eps);
        a.iter_mut().zip(&s_pre).for_each(|(v, p)| *v -= gamma * alpha * p);
    }
    let adjoint_0 = mean_norm(&a, dim);
    let mut adjoints = vec![Vec::new(); n + 1];
    let mut vjp = vec![0f32; m * dim];
    for j in 1..=n {
        nets.eval(base, &xs[j], t_of(j), Some(&a), &mut out, &mut vjp);
        adjoint_step(&mut a, &vjp, h, (lambda, sigma), s.p.running_reward.then_some((gamma, out.as_slice())));
        adjoints[j] = a.clone();
    }
    let subset = time_subset(
        n,
        s.p.time_subset_fixed,
        s.p.time_subset_random,
        s.p.time_subset_end == "data",
        &mut rng(seed, "am-subset"),
    );
    let mut batch = Batch {
        x: Vec::new(),
        t: Vec::new(),
        adjoint: Vec::new(),
        adjoint_0,
        adjoint_n: mean_norm(&a, dim),
        step_ratio,
        terminal: xs[0].clone(),
    };
    for j in subset {
        batch.x.extend_from_slice(&xs[j]);
        batch.t.extend(std::iter::repeat_n(t_of(j), m));
        batch.adjoint.extend_from_slice(&adjoints[j]);
    }
    batch
}

/// The validate stage's checks with this stage's margin and tolerance.
fn checks(p: &AmParams) -> TriangleChecksParams {
    TriangleChecksParams { bins: 50, uv_max: 2.0, eps: p.eps, tol: p.tol }
}

/// Samples in model coordinates as side lengths, and their validity and types.
fn valid_set(x: &[f32], meta: &super::net::ModelMeta, checks: &TriangleChecksParams) -> ([Vec<f64>; 3], ValidSet) {
    let sides = [0, 1, 2].map(|j| x.chunks_exact(3).map(|r| meta.to_data(r[j])).collect::<Vec<f64>>());
    let set = ValidSet::new(&sides[0], &sides[1], &sides[2], checks);
    (sides, set)
}

/// The valid fraction and obtuse share of samples in model coordinates.
fn terminal_stats(x: &[f32], meta: &super::net::ModelMeta, p: &AmParams) -> (f64, f64) {
    let (_, set) = valid_set(x, meta, &checks(p));
    let obtuse = super::explore::type_shares(&set.sides, &set.angles)[2];
    (set.valid[0].len() as f64 / (x.len() / 3).max(1) as f64, obtuse)
}

/// The names of the `iterations` table's metric columns.
pub const ITERATION_METRICS: [&str; 14] = [
    "valid_fraction",
    "knn_entropy",
    "knn_entropy_gap",
    "low_density_mass",
    "mean_surprise",
    "uv_coverage",
    "uv_uniformity",
    "type_tv_to_uniform",
    "acute",
    "obtuse",
    "right",
    "isosceles",
    "equilateral",
    "rare_type_mass",
];

/// Paired PC samples of a model and their metrics against the reference set
/// (k = 0's, or these samples themselves at k = 0).
fn evaluate(
    w: &ScoreNetWeights,
    (p, prior): (&AmParams, Prior),
    seed: u64,
    reference: &mut Option<ValidSet>,
) -> (Vec<f64>, Vec<[f64; 3]>) {
    let meta = &w.meta;
    let ou = Ou { lambda: meta.lambda, sigma: meta.sigma };
    let mut x = prior_draw(p.eval_samples, w.dim, prior, ou, meta.t_max, seed);
    let cfg = super::sample::pc_config(p.eval_steps, p.snr, p.denoise, meta.t_max);
    pc_sample(&FastMlp::new(w), ou, &mut x, cfg, (seed, 0), 0, 1, &|_| {});
    let checks = checks(p);
    let (sides, set) = valid_set(&x, meta, &checks);
    let reference = reference.get_or_insert_with(|| ValidSet::new(&sides[0], &sides[1], &sides[2], &checks));
    let rows = super::validate::exploration_rows(&set, Some(reference), &checks);
    let value = |m: &str| rows.iter().find(|r| r.0 == m).map_or(f64::NAN, |r| r.2);
    let metrics = ITERATION_METRICS.iter().map(|m| value(m)).collect();
    let [a, b, c] = &sides;
    (metrics, (0..a.len()).map(|i| [a[i], b[i], c[i]]).collect())
}

impl Stage for SmemeAm {
    describe!(Kind::Tune, "smeme_am", version 1, params AmParams, INPUTS, OUTPUTS);
    fn checkpoints(&self) -> bool {
        true
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let p = AmParams::read(ctx.params);
        let pre = ScoreNetWeights::from_bytes(ctx.blob("model")?)?;
        let (tuned, rounds, iterations, samples) = tune_am(&pre, &p, ctx.seed, ctx.checkpoint, ctx.progress)?;
        let rows = || samples.iter().flat_map(|(k, s)| s.iter().map(move |r| (*k, *r)));
        let side = |j: usize| ColumnData::F64(rows().map(|(_, r)| r[j]).collect());
        let samples = Table::new()
            .with("iteration", ColumnData::I64(rows().map(|(k, _)| k).collect()))
            .with("a", side(0))
            .with("b", side(1))
            .with("c", side(2));
        Ok([
            ("samples".to_string(), Artifact::Table(samples)),
            ("model".to_string(), Artifact::Blob(tuned.to_bytes())),
            ("tracker".to_string(), Artifact::Table(tracker_table(&rounds))),
            ("iterations".to_string(), Artifact::Table(iterations_table(&iterations))),
        ]
        .into_iter()
        .collect())
    }

    fn summary(&self, outputs: &BTreeMap<String, Arc<Artifact>>) -> Option<String> {
        let Artifact::Table(t) = outputs.get("iterations")?.as_ref() else { return None };
        let k = t.i64s("iteration").ok()?;
        let col = |m: &str| t.f64s(m).ok();
        let (v, h, ldm, cov, ob) = (
            col("valid_fraction")?,
            col("knn_entropy")?,
            col("low_density_mass")?,
            col("uv_coverage")?,
            col("obtuse")?,
        );
        let lines: Vec<String> = (0..k.len())
            .map(|i| {
                format!(
                    "[k {}] valid {:.3} | kNN entropy {:.3} | low-density mass {:.3} | uv coverage {:.3} | obtuse {:.3}",
                    k[i], v[i], h[i], ldm[i], cov[i], ob[i]
                )
            })
            .collect();
        Some(lines.join("\n"))
    }
}

/// The tuned model, its tracker rows, its iterations rows and each
/// iteration's evaluation samples (side units).
pub type Tuned = (ScoreNetWeights, Vec<Round>, Vec<(i64, Vec<f64>)>, Vec<(i64, Vec<[f64; 3]>)>);

/// The mirror loop on a pre-trained model (the stage's work, apart from its
/// inputs and outputs), checkpointed at every round's start.
// Over 150 lines: the mirror loop reads as one piece — setup, resume,
// rounds with their checkpoints, the base update and the evaluation.
pub fn tune_am(
    pre: &ScoreNetWeights,
    p: &AmParams,
    seed: u64,
    checkpoint: &Checkpointing,
    progress: &(dyn Fn(f64) + Sync),
) -> Result<Tuned, StageError> {
    let prior = if p.prior == "standard" { Prior::Standard } else { Prior::OuMarginal };
    tune_am_from(pre, (p, prior), seed, checkpoint, progress)
}

/// [`tune_am`] from a given prior (the tests' exact Gaussian marginals).
// Over 150 lines: the mirror loop reads as one piece — setup, resume,
// rounds with their checkpoints, the base update and the evaluation.
pub fn tune_am_from(
    pre: &ScoreNetWeights,
    (p, prior): (&AmParams, Prior),
    seed: u64,
    checkpoint: &Checkpointing,
    progress: &(dyn Fn(f64) + Sync),
) -> Result<Tuned, StageError> {
    if !pre.delta.is_empty() {
        return Err(StageError::Failed("the input model is already tuned; tune a pre-trained model".into()));
    }
    let (dim, meta) = (pre.dim, pre.meta.clone());
    let ou = Ou { lambda: meta.lambda, sigma: meta.sigma };
    let score = Mlp::new(dim, Features::Sinusoidal(pre.freqs.clone()), &pre.config.shapes());
    let pre_p = Mlp::flatten(&pre.layers);
    let (delta, init) = if p.parameterization == "delta" {
        let hd = p.delta_hidden;
        let shapes = [(dim + 1, hd), (hd, hd), (hd, dim)];
        let mut l = init_layers(&shapes, false, &mut rng(seed, "am-delta-init"));
        let last = l.len() - 1;
        l[last].0.fill(0.0);
        l[last].1.fill(0.0);
        (Some(Mlp::new(dim, Features::Time, &shapes)), Mlp::flatten(&l))
    } else {
        (None, pre_p.clone())
    };
    let mut nets = Nets { score, delta, pre: pre_p, dim };
    let n_params = nets.trainable().n_params();
    let mut st = checkpoint.resume_with(decode::<AmState>).map(|(_, s)| s).unwrap_or_else(|| AmState {
        params: init.clone(),
        base: init,
        adam: Some(AdamW::new(n_params, 0.0)),
        k: 1,
        ..AmState::default()
    });
    let mut reference = None;
    if p.eval_every_iteration && st.iterations.is_empty() {
        let (metrics, sides) = evaluate(pre, (p, prior), seed, &mut reference);
        st.iterations.push((0, metrics));
        st.samples.push((0, sides));
    }
    let total = (p.iterations * p.steps_per_iteration) as u64;
    let mut grad = vec![0f32; n_params];
    while st.k <= p.iterations {
        let k = st.k;
        let gamma = if p.gamma_schedule == "harmonic" { p.gamma / k as f64 } else { p.gamma };
        let setting = Setting { ou, t_max: meta.t_max, gamma, prior, p };
        while st.steps < p.steps_per_iteration {
            let done = ((k - 1) * p.steps_per_iteration + st.steps) as u64;
            checkpoint.at_boundary(done, total, || encode(&st))?;
            let seed: u64 = rng(seed, &format!("am/{k}/{}", st.round)).random();
            let b = round_batch(&mut nets, &setting, (&st.params, &st.base), seed);
            // Targets: the base's trainable part minus the adjoint (the frozen
            // part, with `delta`, is on both sides and cancels).
            let rows = b.t.len();
            let mut target = vec![0f32; rows * dim];
            nets.trainable().forward_rows(&st.base, &b.x, &b.t, &mut target);
            target.iter_mut().zip(&b.adjoint).for_each(|(y, a)| *y -= a);
            let (valid_fraction, obtuse) = terminal_stats(&b.terminal, &meta, p);
            let (mut loss, mut norm) = (0.0, 0.0);
            let todo = p.grad_steps_per_batch.min(p.steps_per_iteration - st.steps);
            let sigma2 = (ou.sigma * ou.sigma) as f32;
            for _ in 0..todo {
                let l = nets.trainable().loss_and_grad(&st.params, (&b.x, &b.t, &target), sigma2, &mut grad);
                if !l.is_finite() {
                    return Err(StageError::NonFinite { step: done as usize, value: l });
                }
                let gn = if p.clip_grad_norm > 0.0 {
                    clip_grad_norm(&mut grad, p.clip_grad_norm)
                } else {
                    grad.iter().map(|g| (*g as f64).powi(2)).sum::<f64>().sqrt()
                };
                st.adam.as_mut().expect("set").step(&mut st.params, &grad, p.lr);
                (loss, norm) = (loss + l / todo as f64, norm + gn / todo as f64);
            }
            st.rounds.push(Round {
                iteration: k as i64,
                round: st.round as i64,
                step: (done as usize + todo) as i64,
                gamma,
                am_loss: loss,
                grad_norm: norm,
                adjoint_0: b.adjoint_0,
                adjoint_n: b.adjoint_n,
                step_ratio: b.step_ratio,
                valid_fraction,
                obtuse,
            });
            st.steps += todo;
            st.round += 1;
            progress((done as usize + todo) as f64 / total.max(1) as f64);
        }
        // base ← fine: the next step's reference is this iterate.
        st.base = st.params.clone();
        if p.eval_every_iteration {
            if reference.is_none() {
                // Resumed: k = 0's samples again, as the reference.
                evaluate(pre, (p, prior), seed, &mut reference);
            }
            let (metrics, sides) = evaluate(&nets.weights(pre, &st.params), (p, prior), seed, &mut reference);
            st.iterations.push((k as i64, metrics));
            st.samples.push((k as i64, sides));
        }
        (st.k, st.steps, st.round) = (k + 1, 0, 0);
    }
    Ok((nets.weights(pre, &st.params), st.rounds, st.iterations, st.samples))
}

fn tracker_table(rows: &[Round]) -> Table {
    let col_i = |f: fn(&Round) -> i64| ColumnData::I64(rows.iter().map(f).collect());
    let col_f = |f: fn(&Round) -> f64| ColumnData::F64(rows.iter().map(f).collect());
    Table::new()
        .with("iteration", col_i(|r| r.iteration))
        .with("round", col_i(|r| r.round))
        .with("step", col_i(|r| r.step))
        .with("gamma", col_f(|r| r.gamma))
        .with("am_loss", col_f(|r| r.am_loss))
        .with("grad_norm", col_f(|r| r.grad_norm))
        .with("adjoint_0", col_f(|r| r.adjoint_0))
        .with("adjoint_n", col_f(|r| r.adjoint_n))
        .with("step_ratio", col_f(|r| r.step_ratio))
        .with("valid_fraction", col_f(|r| r.valid_fraction))
        .with("obtuse", col_f(|r| r.obtuse))
}

fn iterations_table(rows: &[(i64, Vec<f64>)]) -> Table {
    let mut t = Table::new().with("iteration", ColumnData::I64(rows.iter().map(|r| r.0).collect()));
    for (j, name) in ITERATION_METRICS.iter().enumerate() {
        t = t.with(name, ColumnData::F64(rows.iter().map(|r| r.1[j]).collect()));
    }
    t
}

#[cfg(test)]
#[path = "am_tests.rs"]
mod tests;
