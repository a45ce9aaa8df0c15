//! `train` / `objective: ddpm_eps`: the two-moons ε-prediction DDPM (seed 002),
//! trained with a hand-written forward/backward ([`crate::numerics::nn::backprop`]).

use crate::engine::frame::{ColumnData, Table};
use crate::engine::params::{Default, POS, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::numerics::rng::stream as rng;

/// `objective: ddpm_eps`: the two-moons DDPM (seed 002) — ε-prediction with
/// the linear-β schedule ([`crate::numerics::sde::ddpm::DdpmSchedule`]).
///
/// * the data: every float column of the `data` table, in order (for two moons:
///   the standardised `x`, `y`; the integer `moon` label is not a coordinate);
/// * the network: the origin's `ScoreNet` by default (`architecture: origin`,
///   see [`crate::workloads::two_moons::net`]); `architecture: wide` is scoreflow's earlier,
///   larger variant;
/// * shuffled epochs without replacement, batches of `batch_size` taken in order;
///   the origin's `DataLoader(shuffle=True, drop_last=True)` skips the short last
///   batch (`drop_last: false` keeps it);
/// * per row `t ~ U{0, …, T−1}`, `ε ~ N(0, I)`, `x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·ε`,
///   loss `MSE(ε̂(x_t, t), ε)`;
/// * AdamW (lr 1e-3, weight decay 0.01 by default), gradient-norm clipping
///   (1.0; 0 turns it off), an optional learning-rate schedule (`constant`, the
///   seed's, or `cosine` decay to 0 after `warmup_steps` of linear warm-up);
/// * optional EMA of the weights (`ema`, decay 0.999, warmed up as diffusers'
///   `EMAModel`, which the origin uses: see [`crate::numerics::nn::backprop`]), stored
///   beside the raw weights in the one model blob; `sample` picks with `use_ema`.
///
/// Forward and backward are computed by [`crate::numerics::nn::backprop`] (checked
/// against burn's autodiff); a non-finite loss stops the stage naming the step.
pub struct DdpmEps;

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct DdpmParams {
        train_steps: usize = (ParamType::Int { min: 1, max: 100_000_000 }, Default::Int(5000), "optimiser steps"),
        batch_size: usize = (ParamType::Int { min: 1, max: 1_000_000 }, Default::Int(512), "rows per step"),
        lr: f64 = (POS, Default::Float(1e-3), "AdamW learning rate (peak)"),
        lr_schedule: String = (ParamType::Str { choices: &["constant", "cosine"] }, Default::Str("constant"), "learning-rate schedule after warm-up"),
        warmup_steps: usize = (ParamType::Int { min: 0, max: 100_000_000 }, Default::Int(0), "linear warm-up steps"),
        weight_decay: f64 = (ParamType::Float { min: 0.0, max: f64::INFINITY }, Default::Float(0.01), "AdamW weight decay"),
        grad_clip: f64 = (ParamType::Float { min: 0.0, max: f64::INFINITY }, Default::Float(1.0), "max global gradient norm (0: no clipping)"),
        drop_last: bool = (ParamType::Bool, Default::Bool(true), "skip each epoch's short last batch (the origin's DataLoader(drop_last=True))"),
        ema: bool = (ParamType::Bool, Default::Bool(false), "track an EMA of the weights"),
        ema_decay: f64 = (ParamType::Float { min: 0.0, max: 1.0 }, Default::Float(0.999), "EMA decay (its cap, with ema_warmup)"),
        ema_warmup: bool = (ParamType::Bool, Default::Bool(true), "diffusers EMAModel's decay min(ema_decay, (1+n)/(10+n)) (origin); false: constant decay from the initial weights"),
        architecture: String = (ParamType::Str { choices: &["origin", "wide"] }, Default::Str("origin"), "`origin`: the seed's ScoreNet ([x, temb] concatenated, depth 2, 64 time channels); `wide`: temb added, depth 3, 32 channels"),
        hidden: usize = (ParamType::Int { min: 1, max: 65_536 }, Default::Int(128), "hidden width"),
        depth: Option<usize> = (ParamType::Int { min: 1, max: 64 }, Default::Optional, "trunk layers with SiLU (default: the architecture's, 2 or 3)"),
        time_channels: Option<usize> = (ParamType::Int { min: 2, max: 4096 }, Default::Optional, "sinusoidal timestep-embedding width, even (default: the architecture's, 64 or 32)"),
        beta_start: f64 = (POS, Default::Float(1e-4), "first β of the linear schedule"),
        beta_end: f64 = (POS, Default::Float(0.02), "last β of the linear schedule"),
        train_timesteps: usize = (ParamType::Int { min: 2, max: 1_000_000 }, Default::Int(1000), "DDPM timesteps T"),
    }
}
static DDPM_INPUTS: &[InputDef] =
    &[InputDef { name: "data", media: Media::Table, required: true, doc: "training points (every float column)" }];
static DDPM_OUTPUTS: &[OutputDef] = &[
    OutputDef {
        name: "model",
        media: Media::Model("eps_ddpm"),
        doc: "the ε-network: raw weights and, with `ema`, EMA weights",
    },
    OutputDef { name: "loss", media: Media::Table, doc: "step, loss, lr, grad_norm" },
];

/// Settings of a DDPM training run.
#[derive(Debug, Clone)]
pub struct DdpmConfig {
    pub net: crate::workloads::two_moons::net::EpsNetConfig,
    pub schedule: crate::workloads::two_moons::net::ScheduleMeta,
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub cosine: bool,
    pub warmup: usize,
    pub weight_decay: f64,
    pub grad_clip: f64,
    pub drop_last: bool,
    pub ema: Option<f64>,
    pub ema_warmup: bool,
}

impl DdpmConfig {
    pub fn from_params(p: &crate::engine::params::Params, dim: usize) -> DdpmConfig {
        use crate::workloads::two_moons::net::EpsNetConfig;
        let p = &DdpmParams::read(p);
        let mut net = match p.architecture.as_str() {
            "wide" => EpsNetConfig::wide(dim),
            _ => EpsNetConfig::origin(dim),
        };
        net.hidden = p.hidden;
        net.depth = p.depth.unwrap_or(net.depth);
        net.time_channels = p.time_channels.unwrap_or(net.time_channels);
        DdpmConfig {
            net,
            schedule: crate::workloads::two_moons::net::ScheduleMeta {
                beta_start: p.beta_start,
                beta_end: p.beta_end,
                train_timesteps: p.train_timesteps,
            },
            steps: p.train_steps,
            batch_size: p.batch_size,
            lr: p.lr,
            cosine: p.lr_schedule == "cosine",
            warmup: p.warmup_steps,
            weight_decay: p.weight_decay,
            grad_clip: p.grad_clip,
            drop_last: p.drop_last,
            ema: p.ema.then_some(p.ema_decay),
            ema_warmup: p.ema_warmup,
        }
    }

    /// The learning rate at (0-based) `step`.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        if !self.cosine {
            return self.lr;
        }
        let span = (self.steps - self.warmup).max(1) as f64;
        let k = (step - self.warmup) as f64 / span;
        self.lr * 0.5 * (1.0 + (std::f64::consts::PI * k).cos())
    }
}

/// What a DDPM training run returns: the weights and one row per step.
#[derive(Debug)]
pub struct DdpmRun {
    pub weights: crate::workloads::two_moons::net::EpsModelWeights,
    pub loss: Vec<f32>,
    pub lr: Vec<f32>,
    pub grad_norm: Vec<f32>,
}

/// Row indices in shuffled epochs, cut into batches in order — a PyTorch
/// `DataLoader(shuffle=True)`: each epoch is a fresh permutation; with
/// `drop_last` the short remainder of an epoch is skipped, else it is the
/// epoch's last, shorter batch.
pub struct EpochBatches {
    order: Vec<usize>,
    at: usize,
    batch: usize,
    drop_last: bool,
    rng: rand_chacha::ChaCha8Rng,
}

impl EpochBatches {
    pub fn new(n: usize, batch: usize, drop_last: bool, rng: rand_chacha::ChaCha8Rng) -> EpochBatches {
        EpochBatches { order: (0..n).collect(), at: n, batch: batch.min(n).max(1), drop_last, rng }
    }

    /// Where the epochs are: the current permutation, the next row, and the
    /// shuffling stream's position (for checkpoints).
    pub fn state(&self) -> (Vec<usize>, usize, crate::numerics::rng::Position) {
        (self.order.clone(), self.at, crate::numerics::rng::Position::of(&self.rng))
    }

    /// Continue from [`EpochBatches::state`] (the same stream, derived again).
    pub fn restore(&mut self, order: Vec<usize>, at: usize, rng: crate::numerics::rng::Position) {
        (self.order, self.at) = (order, at);
        rng.seek(&mut self.rng);
    }

    pub fn next_batch(&mut self) -> &[usize] {
        use rand::seq::SliceRandom;
        let n = self.order.len();
        if self.at >= n || (self.drop_last && n - self.at < self.batch) {
            self.order.shuffle(&mut self.rng);
            self.at = 0;
        }
        let start = self.at;
        self.at = (start + self.batch).min(n);
        &self.order[start..self.at]
    }
}

/// Everything a DDPM training run needs to continue from a step boundary.
#[derive(serde::Serialize, serde::Deserialize)]
struct DdpmState {
    params: Vec<f32>,
    ema: Option<Vec<f32>>,
    opt: crate::numerics::nn::backprop::AdamW,
    noise: crate::numerics::rng::Position,
    order: Vec<usize>,
    at: usize,
    epochs: crate::numerics::rng::Position,
    losses: Vec<f32>,
    lrs: Vec<f32>,
    norms: Vec<f32>,
    guard: crate::engine::stage::LossGuard,
}

/// Train an ε-network on `data` (row-major, `cfg.net.dim` columns); with
/// `ck`, checkpoint at step boundaries and resume from its state.
pub fn train_ddpm(
    cfg: &DdpmConfig,
    data: &[f32],
    columns: Vec<String>,
    seed: u64,
    progress: &(dyn Fn(f64) + Sync),
    ck: &crate::engine::checkpoint::Checkpointing,
) -> Result<DdpmRun, StageError> {
    use super::backprop::EpsBackprop;
    use crate::engine::checkpoint::{decode, encode};
    use crate::numerics::nn::backprop::{AdamW, clip_grad_norm, diffusers_ema_decay, ema_update};
    use crate::numerics::rng::Position;
    use crate::workloads::two_moons::net::{EpsLayers, EpsModelWeights};
    use rand::Rng;
    use rand_distr::{Distribution, StandardNormal};

    let dim = cfg.net.dim;
    let n = data.len() / dim;
    if n == 0 {
        return Err(StageError::Failed("the training data is empty".into()));
    }
    if !cfg.net.time_channels.is_multiple_of(2) {
        return Err(StageError::Failed("time_channels must be even".into()));
    }
    let sched = crate::numerics::sde::ddpm::DdpmSchedule::linear(
        cfg.schedule.beta_start,
        cfg.schedule.beta_end,
        cfg.schedule.train_timesteps,
    );
    let coef: Vec<(f32, f32)> = (0..sched.len()).map(|t| sched.coefficients(t)).collect();
    let mut params = EpsLayers::init(&cfg.net, &mut rng(seed, "init")).flatten();
    let mut ema = cfg.ema.map(|_| params.clone());
    let mut bp = EpsBackprop::new(&cfg.net);
    let mut opt = AdamW::new(params.len(), cfg.weight_decay);
    let mut grad = vec![0f32; params.len()];
    let mut noise_rng = rng(seed, "noise");
    if cfg.drop_last && cfg.batch_size > n {
        return Err(StageError::Failed(format!(
            "batch_size {} exceeds the {n} training rows, and drop_last leaves no full batch",
            cfg.batch_size
        )));
    }
    let mut batches = EpochBatches::new(n, cfg.batch_size, cfg.drop_last, rng(seed, "epochs"));
    let b = cfg.batch_size.min(n);
    let (mut xt, mut t, mut eps) = (vec![0f32; b * dim], vec![0f32; b], vec![0f32; b * dim]);
    let (mut losses, mut lrs, mut norms) =
        (Vec::with_capacity(cfg.steps), Vec::with_capacity(cfg.steps), Vec::with_capacity(cfg.steps));
    let mut guard = crate::engine::stage::LossGuard::default();
    let mut start = 0;
    if let Some((step, s)) = ck.resume_with(decode::<DdpmState>) {
        (params, ema, opt, losses, lrs, norms, guard) = (s.params, s.ema, s.opt, s.losses, s.lrs, s.norms, s.guard);
        s.noise.seek(&mut noise_rng);
        batches.restore(s.order, s.at, s.epochs);
        start = step as usize;
    }
    // One pass more than the steps: its loss, of the final weights on a fresh
    // batch, is checked and nothing else (the last update can diverge too, and
    // a single step's loss is the initial weights').
    for step in start..=cfg.steps {
        ck.at_boundary(step as u64, cfg.steps as u64, || {
            let (order, at, epochs) = batches.state();
            encode(&DdpmState {
                params: params.clone(),
                ema: ema.clone(),
                opt: opt.clone(),
                noise: Position::of(&noise_rng),
                order,
                at,
                epochs,
                losses: losses.clone(),
                lrs: lrs.clone(),
                norms: norms.clone(),
                guard: guard.clone(),
            })
        })?;
        let batch = batches.next_batch();
        let rows = batch.len();
        for (r, &row) in batch.iter().enumerate() {
            let x0 = &data[row * dim..(row + 1) * dim];
            let ti = noise_rng.random_range(0..sched.len());
            let (a, s) = coef[ti];
            t[r] = ti as f32;
            for j in 0..dim {
                let e: f32 = StandardNormal.sample(&mut noise_rng);
                eps[r * dim + j] = e;
                xt[r * dim + j] = a * x0[j] + s * e;
            }
        }
        let loss = bp.loss_and_grad(&params, &xt[..rows * dim], &t[..rows], &eps[..rows * dim], &mut grad);
        guard.check(step, loss)?;
        if step == cfg.steps {
            break;
        }
        let norm = if cfg.grad_clip > 0.0 {
            clip_grad_norm(&mut grad, cfg.grad_clip)
        } else {
            grad.iter().map(|g| (*g as f64).powi(2)).sum::<f64>().sqrt()
        };
        let lr = cfg.lr_at(step);
        opt.step(&mut params, &grad, lr);
        if let (Some(e), Some(decay)) = (ema.as_mut(), cfg.ema) {
            ema_update(e, &params, if cfg.ema_warmup { diffusers_ema_decay(step + 1, decay) } else { decay });
        }
        losses.push(loss as f32);
        lrs.push(lr as f32);
        norms.push(norm as f32);
        if step % 100 == 0 {
            progress((step + 1) as f64 / cfg.steps as f64);
        }
    }
    if params.iter().any(|v| !v.is_finite()) {
        return Err(StageError::NonFinite { step: cfg.steps, value: f64::NAN });
    }
    let weights = EpsModelWeights {
        config: cfg.net.clone(),
        schedule: cfg.schedule.clone(),
        columns,
        raw: EpsLayers::unflatten(&cfg.net, &params),
        ema: ema.map(|e| EpsLayers::unflatten(&cfg.net, &e)),
    };
    Ok(DdpmRun { weights, loss: losses, lr: lrs, grad_norm: norms })
}

impl Stage for DdpmEps {
    describe!(Kind::Train, "ddpm_eps", version 2, params DdpmParams, DDPM_INPUTS, DDPM_OUTPUTS);
    fn checkpoints(&self) -> bool {
        true
    }
    fn memory_bytes(&self, p: &crate::engine::params::Params) -> Option<(&'static str, u64)> {
        let p = DdpmParams::read(p);
        use crate::workloads::two_moons::net::EpsNetConfig;
        let base = if p.architecture == "wide" { EpsNetConfig::wide(2) } else { EpsNetConfig::origin(2) };
        let channels = p.time_channels.unwrap_or(base.time_channels);
        let depth = p.depth.unwrap_or(base.depth);
        // The time embedding's two layers, then the trunk on [x, temb].
        let mut shapes = vec![(channels, channels), (channels, channels)];
        shapes.extend(crate::numerics::nn::dense_shapes(2 + channels, p.hidden, depth, 2));
        Some(crate::numerics::nn::dense_estimate(&shapes, p.batch_size, "hidden", "batch_size"))
    }
    fn check_params(&self, p: &crate::engine::params::Params) -> Vec<(&'static str, String)> {
        let p = &DdpmParams::read(p);
        let mut broken = Vec::new();
        if let Some(n) = p.time_channels.filter(|n| !n.is_multiple_of(2)) {
            broken.push(("time_channels", format!("time_channels must be even (sines and cosines in pairs), not {n}")));
        }
        if p.beta_start >= p.beta_end {
            broken.push(("beta_start", "beta_start must be below beta_end (a linear β schedule rises)".to_string()));
        }
        if p.warmup_steps >= p.train_steps && p.warmup_steps > 0 {
            broken.push(("warmup_steps", "warmup_steps must be fewer than train_steps".to_string()));
        }
        broken
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let table = ctx.table("data")?;
        let columns = table.float_columns();
        if columns.is_empty() {
            return Err(StageError::Failed("the `data` table has no float columns to train on".into()));
        }
        let data: Vec<f32> = table.rows_f64(&columns)?.into_iter().map(|v| v as f32).collect();
        let cfg = DdpmConfig::from_params(ctx.params, columns.len());
        let run = train_ddpm(&cfg, &data, columns, ctx.seed, ctx.progress, ctx.checkpoint)?;
        let loss = Table::new()
            .with("step", ColumnData::I64((0..run.loss.len() as i64).collect()))
            .with("loss", ColumnData::F32(run.loss))
            .with("lr", ColumnData::F32(run.lr))
            .with("grad_norm", ColumnData::F32(run.grad_norm));
        Ok([("model".to_string(), Artifact::Blob(run.weights.to_bytes())), ("loss".to_string(), Artifact::Table(loss))]
            .into_iter()
            .collect())
    }
    fn summary(&self, outputs: &std::collections::BTreeMap<String, std::sync::Arc<Artifact>>) -> Option<String> {
        let Artifact::Table(t) = outputs.get("loss")?.as_ref() else {
            return None;
        };
        let loss = t.f64s("loss").ok()?;
        let k = (loss.len() / 10).clamp(1, 500);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        Some(format!(
            "loss (mean of {k} steps): first {:.4}, last {:.4} after {} steps",
            mean(&loss[..k]),
            mean(&loss[loss.len() - k..]),
            loss.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::checkpoint::Checkpointing;

    fn small_ddpm() -> DdpmConfig {
        let params: crate::engine::params::Params =
            DdpmParams::DEFS.iter().filter_map(|d| d.default.value().map(|v| (d.name.to_string(), v))).collect();
        let mut cfg = DdpmConfig::from_params(&params, 2);
        cfg.steps = 150;
        cfg.batch_size = 200;
        cfg.net.hidden = 32;
        cfg.ema = Some(0.99);
        cfg
    }

    fn moons() -> Vec<f32> {
        let (xy, _) = crate::workloads::two_moons::generate::make_moons(1000, 0.05, 1, 0);
        xy.iter().map(|v| *v as f32).collect()
    }

    #[test]
    fn ddpm_training_is_deterministic_lowers_the_loss_and_keeps_both_weight_sets() {
        let cols = vec!["x".to_string(), "y".to_string()];
        let a = train_ddpm(&small_ddpm(), &moons(), cols.clone(), 4, &|_| {}, &Checkpointing::none()).unwrap();
        let b = train_ddpm(&small_ddpm(), &moons(), cols, 4, &|_| {}, &Checkpointing::none()).unwrap();
        assert_eq!(a.weights, b.weights);
        assert_eq!(a.loss, b.loss);
        // At zero output the loss is E[ε²] = 1.
        assert!((a.loss[0] - 1.0).abs() < 0.15, "{}", a.loss[0]);
        let last: f32 = a.loss[a.loss.len() - 30..].iter().sum::<f32>() / 30.0;
        assert!(last < 0.8, "loss did not fall: {last}");
        let ema = a.weights.ema.as_ref().unwrap();
        assert_ne!(ema, &a.weights.raw);
        // 1000 rows, batches of 200: every epoch sees each row once.
        assert_eq!(a.loss.len(), 150);
    }

    #[test]
    fn epochs_drop_the_short_last_batch_as_the_origins_data_loader() {
        use rand::SeedableRng;
        let r = || rand_chacha::ChaCha8Rng::seed_from_u64(9);
        // 1000 rows, batches of 300: three full batches an epoch, 100 rows skipped.
        let mut dl = EpochBatches::new(1000, 300, true, r());
        let mut epoch = Vec::new();
        for _ in 0..3 {
            let b = dl.next_batch();
            assert_eq!(b.len(), 300);
            epoch.extend_from_slice(b);
        }
        epoch.sort_unstable();
        epoch.dedup();
        assert_eq!(epoch.len(), 900, "no row twice in an epoch");
        assert_eq!(dl.next_batch().len(), 300, "a new epoch starts");
        // Without drop_last the epoch ends with a batch of 100.
        let mut keep = EpochBatches::new(1000, 300, false, r());
        let sizes: Vec<usize> = (0..5).map(|_| keep.next_batch().len()).collect();
        assert_eq!(sizes, [300, 300, 300, 100, 300]);
    }

    #[test]
    fn cosine_schedule_with_warmup() {
        let mut cfg = small_ddpm();
        cfg.cosine = true;
        cfg.warmup = 10;
        cfg.steps = 110;
        assert!((cfg.lr_at(0) - cfg.lr / 10.0).abs() < 1e-15);
        assert_eq!(cfg.lr_at(9), cfg.lr);
        assert_eq!(cfg.lr_at(10), cfg.lr);
        assert!((cfg.lr_at(60) - cfg.lr / 2.0).abs() < 1e-12);
        assert!(cfg.lr_at(109) < cfg.lr * 0.01);
    }

    #[test]
    fn a_nan_in_ddpm_training_is_an_error_naming_the_step() {
        let mut cfg = small_ddpm();
        cfg.lr = 1e30;
        cfg.grad_clip = 0.0;
        let err =
            train_ddpm(&cfg, &moons(), vec!["x".into(), "y".into()], 1, &|_| {}, &Checkpointing::none()).unwrap_err();
        assert!(matches!(err, StageError::NonFinite { .. }), "{err}");
    }
}
