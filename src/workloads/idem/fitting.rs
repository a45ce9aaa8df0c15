//! What iDEM's two training loops (DEM's MLP on GMM-40, the EGNN on particle
//! systems) share: the parameters, the replay buffer, one optimiser step
//! ([`Stepper`]: checks, clipping, AdamW, EMA, the loss log), the fitted
//! result and the tables the stage writes. Each loop keeps only what differs:
//! its network, how a batch is drawn and what it tracks.

use crate::engine::frame::{ColumnData, Table};
use crate::engine::params::{Default, ParamType};

use super::egnn::EgnnModel;
use super::net::DemModel;
use crate::engine::stage::StageError;
use crate::numerics::nn::backprop::{AdamW, clip_grad_norm, ema_update};
use rand::Rng;

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct IdemParams {
        energy: String = (ParamType::Str { choices: &["gmm40", "dw4", "lj13", "lj55"] }, Default::Str("gmm40"), "the target: gmm40 (DEM's MLP) or a particle system (DEM's EGNN; set DEM's molecule settings: normalization 1, lambda none, max_norm 20, its σ range)"),
        outer: usize = (ParamType::Int { min: 1, max: 1_000_000 }, Default::Int(1000), "outer steps (DEM's epochs: max_epochs 1000)"),
        inner: usize = (ParamType::Int { min: 1, max: 1_000_000 }, Default::Int(100), "training steps per outer step (DEM: 100 batches an epoch)"),
        batch: usize = (ParamType::Int { min: 1, max: 1_000_000 }, Default::Int(512), "points per training step (DEM: 512 from the buffer)"),
        k: usize = (super::estimator::K, Default::Int(500), "Monte Carlo samples per score estimate (DEM for GMM-40: 500)"),
        estimator: String = (super::estimator::FORMS, Default::Str("log_sum_exp"), "the training target's estimator (DEM: log_sum_exp)"),
        max_norm: f64 = (super::estimator::MAX_NORM, Default::Float(70.0), "clip each estimate's norm (DEM: 70 for GMM-40); 0: no clip"),
        lr: f64 = (ParamType::Float { min: 0.0, max: 10.0 }, Default::Float(5e-4), "Adam's learning rate (DEM for GMM-40: 5e-4, constant)"),
        grad_clip: f64 = (ParamType::Float { min: 0.0, max: 1e12 }, Default::Float(0.5), "clip the gradient's global norm (DEM's trainer: 0.5); 0: no clip"),
        buffer_size: usize = (ParamType::Int { min: 1, max: 100_000_000 }, Default::Int(10_000), "the replay buffer's length (FIFO; DEM: 10 000)"),
        n_init: usize = (ParamType::Int { min: 1, max: 10_000_000 }, Default::Int(1024), "particles in the initial buffer (DEM: 1024)"),
        init_from_prior: bool = (ParamType::Bool, Default::Bool(false), "fill the initial buffer from the prior instead of mc_score particles (DEM: false)"),
        use_buffer: bool = (ParamType::Bool, Default::Bool(true), "train on buffer points (iDEM); false: on prior draws (pDEM)"),
        samples_per_outer: usize = (ParamType::Int { min: 1, max: 10_000_000 }, Default::Int(1000), "particles the network generates into the buffer after each outer step (DEM: 1000)"),
        steps: usize = (ParamType::Int { min: 1, max: 100_000 }, Default::Int(1000), "Euler–Maruyama steps of every reverse SDE (DEM: 1000)"),
        diffusion_scale: f64 = (ParamType::Float { min: 0.0, max: 100.0 }, Default::Float(1.0), "multiplies the reverse SDE's noise (DEM: 1)"),
        lambda_eps: f64 = (ParamType::Float { min: 0.0, max: 1e6 }, Default::Float(1e-3), "ε of the loss weight λ(t) = h(t) + ε (DEM: 1e-3)"),
        sigma_min: f64 = (ParamType::Float { min: 1e-12, max: 1e6 }, Default::Float(1e-5), "geometric schedule's σ_min (DEM: 1e-5)"),
        sigma_max: f64 = (ParamType::Float { min: 1e-12, max: 1e6 }, Default::Float(1.0), "geometric schedule's σ_max (DEM: 1)"),
        normalization: f64 = (ParamType::Float { min: 1e-9, max: 1e9 }, Default::Float(50.0), "the energy's coordinates divided by this (DEM: 50 for GMM-40)"),
        track_every: usize = (ParamType::Int { min: 1, max: 1_000_000 }, Default::Int(1), "outer steps between tracker rows (the last is always tracked)"),
        ema: f64 = (ParamType::Float { min: 0.0, max: 0.999_999 }, Default::Float(0.0), "decay of an exponential moving average of the weights, saved as the model (DEM's use_ema: EMAWrapper, 0.999 with warm-up (1 + n)/(10 + n)); 0: off, DEM's GMM setting"),
        snapshot_every: usize = (ParamType::Int { min: 1, max: 1_000_000 }, Default::Int(5), "outer steps between buffer snapshots (the initial buffer and the last step are always kept)"),
        lambda: String = (ParamType::Str { choices: &["h_plus_eps", "none"] }, Default::Str("h_plus_eps"), "the loss weight: λ(t) = h(t) + lambda_eps (DEM's BasicLambdaWeighter, GMM-40) or 1 (NoLambdaWeighter, DEM's particle systems)"),
        hidden: usize = (ParamType::Int { min: 1, max: 4096 }, Default::Int(128), "particle systems: the EGNN's width (DEM: 128)"),
        layers: usize = (ParamType::Int { min: 0, max: 64 }, Default::Int(0), "particle systems: the EGNN's layers; 0: DEM's (3 for dw4, 5 for lj13/lj55)"),
        negative_time_steps: usize = (ParamType::Int { min: 0, max: 1_000_000 }, Default::Int(0), "particle systems: gradient-descent steps on the energy after every reverse SDE (DEM's negative_time tail, dt 1e-4, clipped to max_norm; DEM: 10 for lj55, off otherwise)"),
        plateau_every: usize = (ParamType::Int { min: 0, max: 100_000_000 }, Default::Int(1000), "particle systems with a `val` input: training steps between validations, each stepping DEM's ReduceLROnPlateau on the validation loss (DEM: every 10 epochs of 100 steps; lj55: 5); 0: the rate stays at lr"),
        plateau_patience: usize = (ParamType::Int { min: 0, max: 1_000_000 }, Default::Int(10), "validations without improvement the plateau schedule tolerates before it multiplies the rate by plateau_factor (DEM: 10)"),
        plateau_factor: f64 = (ParamType::Float { min: 0.0, max: 1.0 }, Default::Float(0.1), "the plateau schedule's factor (DEM: 0.1)"),
        val_batch: usize = (ParamType::Int { min: 1, max: 10_000_000 }, Default::Int(1000), "points of `val` per validation, drawn without replacement (DEM's eval_batch_size: 1000 for dw4, 1024 lj13, 128 lj55)"),
        select: String = (ParamType::Str { choices: &["best_val_w2", "last"] }, Default::Str("best_val_w2"), "the weights saved: best_val_w2 (DEM's rule: the lowest x-W2 of an outer step's new particles against `val_batch` points of `val`, every val_every outer steps; needs `val`) or last (the final weights)"),
        val_every: usize = (ParamType::Int { min: 1, max: 1_000_000 }, Default::Int(10), "outer steps between the x-W2 validations select: best_val_w2 compares (DEM: check_val_every_n_epoch 10); the last outer step is always validated"),
        lr_decay: String = (ParamType::Str { choices: &["none", "cosine"] }, Default::Str("none"), "none: DEM's rate (constant, or the plateau's); cosine (not DEM's): the rate times ½(1 + cos(π·step/steps)) over the outer × inner steps, so a short budget ends at a small rate as DEM's long runs do through the plateau"),
    }
}

impl IdemParams {
    /// The rate of training step `step` (0-based) given the schedule's rate
    /// `lr` (the constant `lr`, or the plateau's): `lr_decay: cosine` scales
    /// it by ½(1 + cos(π·step/steps)) over the `outer × inner` steps, so the
    /// first step trains at `lr` and the rate tends to 0 at the end.
    pub fn decayed(&self, lr: f64, step: usize) -> f64 {
        match self.lr_decay.as_str() {
            "cosine" => {
                let total = (self.outer * self.inner) as f64;
                lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total).cos())
            }
            _ => lr,
        }
    }

    /// The loss weight λ at noise variance `h`: 1 (`lambda: none`, DEM's
    /// `NoLambdaWeighter`) or `h + lambda_eps` (its `BasicLambdaWeighter`).
    pub(crate) fn loss_weight(&self, h: f64) -> f32 {
        if self.lambda == "none" { 1.0 } else { (h + self.lambda_eps) as f32 }
    }
}

/// One tracker row: outer step, training step, `checks: boltzmann`'s metrics.
pub(crate) type Tracked = (usize, usize, Vec<(String, f64)>);

/// A tracker row from the metrics of one outer step.
pub(crate) fn tracked(outer: usize, step: usize, m: Vec<(&'static str, f64)>) -> Tracked {
    (outer, step, m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// DEM's checkpoint rule (`select`): every `val_every` outer steps (and at
/// the last), the x-W2 of that step's new particles against a random subset
/// of `val_batch` points of the validation set (DEM's `eval_step` with
/// `randperm`, a fresh subset each time), and with `best_val_w2` the weights
/// of the lowest so far (the first on a tie) replace the final ones
/// (Lightning's `ModelCheckpoint(monitor="val/2-Wasserstein", mode="min")`,
/// whose best checkpoint DEM's `train.py` tests).
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Selection {
    /// (outer step, training step, val x-W2) of every validation.
    rows: Vec<(usize, usize, f64)>,
    /// The row that won so far and its weights.
    best: Option<(usize, Vec<f32>)>,
}

impl Selection {
    /// Validate outer step `outer`'s new particles `pts` (`dim` values each)
    /// against `val` when there is one and the step is due (every
    /// `val_every`-th and the last); `kept` gives the weights that step would
    /// save.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn validate(
        &mut self,
        p: &IdemParams,
        outer: usize,
        pts: &[f64],
        val: Option<&[f64]>,
        dim: usize,
        seed: u64,
        kept: impl FnOnce() -> Vec<f32>,
    ) -> Result<(), StageError> {
        let Some(val) = val.filter(|_| (outer + 1).is_multiple_of(p.val_every) || outer + 1 == p.outer) else {
            return Ok(());
        };
        let mut subset = super::validate::shuffled(
            val,
            dim,
            &mut crate::numerics::rng::particle(seed, "idem/select", self.rows.len()),
        );
        subset.truncate(p.val_batch * dim);
        let w2 = super::validate::w2_exact(pts, &subset, dim).map_err(StageError::Failed)?;
        if !w2.is_finite() {
            return Err(StageError::Failed(format!("outer step {outer}: the validation x-W2 is {w2}")));
        }
        let better = self.best.as_ref().is_none_or(|(i, _)| w2 < self.rows[*i].2);
        self.rows.push((outer + 1, (outer + 1) * p.inner, w2));
        if better && p.select == "best_val_w2" {
            self.best = Some((self.rows.len() - 1, kept()));
        }
        Ok(())
    }

    /// The weights to save (the best validated ones under `best_val_w2`,
    /// else `last`) and the `selection` table: outer, step, val_x_w2,
    /// selected (the row whose weights were saved; none under `last`).
    pub(crate) fn finish(self, last: Vec<f32>) -> (Vec<f32>, Table) {
        let chosen = self.best.as_ref().map(|(i, _)| *i);
        let table = Table::new()
            .with("outer", ColumnData::I64(self.rows.iter().map(|r| r.0 as i64).collect()))
            .with("step", ColumnData::I64(self.rows.iter().map(|r| r.1 as i64).collect()))
            .with("val_x_w2", ColumnData::F64(self.rows.iter().map(|r| r.2).collect()))
            .with("selected", ColumnData::Bool((0..self.rows.len()).map(|i| Some(i) == chosen).collect()));
        (self.best.map_or(last, |(_, w)| w), table)
    }
}

/// The replay buffer: FIFO of fixed capacity, uniform sampling with replacement
/// over what it holds (DEM's `SimpleBuffer` with `sample_with_replacement`);
/// points of `dim` coordinates, stored flat.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Buffer {
    pub(super) x: Vec<f32>,
    dim: usize,
    capacity: usize,
    next: usize,
}

impl Buffer {
    pub(crate) fn new(dim: usize, capacity: usize) -> Buffer {
        Buffer { x: Vec::new(), dim, capacity, next: 0 }
    }
    /// Add points (`n × dim`, flat), the oldest leaving once it is full.
    pub(crate) fn add(&mut self, points: &[f32]) {
        let dim = self.dim;
        for p in points.chunks_exact(dim) {
            if self.x.len() < self.capacity * dim {
                self.x.extend_from_slice(p);
            } else {
                self.x[self.next * dim..(self.next + 1) * dim].copy_from_slice(p);
            }
            self.next = (self.next + 1) % self.capacity;
        }
    }
    /// One point drawn uniformly from what it holds.
    pub(crate) fn draw(&self, rng: &mut impl Rng) -> &[f32] {
        let k = rng.random_range(0..self.x.len() / self.dim);
        &self.x[k * self.dim..(k + 1) * self.dim]
    }
}

/// The trained network: DEM's MLP (GMM-40) or its EGNN (particle systems).
pub enum FittedModel {
    Mlp(DemModel),
    Egnn(EgnnModel),
}

impl FittedModel {
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            FittedModel::Mlp(m) => m.to_bytes(),
            FittedModel::Egnn(m) => m.to_bytes(),
        }
    }
}

/// What [`super::train::fit`] produces: the stage's six outputs.
pub struct Fitted {
    pub model: FittedModel,
    pub loss: Table,
    pub buffer: Table,
    pub tracker: Table,
    pub val: Table,
    pub selection: Table,
}

/// Per-step losses: (step, outer, loss, gradient norm).
pub(crate) type Losses = (Vec<i64>, Vec<i64>, Vec<f64>, Vec<f64>);

/// The `loss` output: step, outer, loss, grad_norm, lr (the rate of each step).
pub(crate) fn loss_table(losses: Losses, lr: Vec<f64>) -> Table {
    Table::new()
        .with("step", ColumnData::I64(losses.0))
        .with("outer", ColumnData::I64(losses.1))
        .with("loss", ColumnData::F64(losses.2))
        .with("grad_norm", ColumnData::F64(losses.3))
        .with("lr", ColumnData::F64(lr))
}

/// The `val` output: step, val_loss, lr — one row per validation.
pub(crate) fn val_table(rows: Vec<(usize, f64, f64)>) -> Table {
    Table::new()
        .with("step", ColumnData::I64(rows.iter().map(|r| r.0 as i64).collect()))
        .with("val_loss", ColumnData::F64(rows.iter().map(|r| r.1).collect()))
        .with("lr", ColumnData::F64(rows.iter().map(|r| r.2).collect()))
}

/// The `tracker` output: outer, step, then one column per metric.
pub(crate) fn tracker_table(track: &[Tracked]) -> Table {
    let names: Vec<&str> =
        track[0].2.iter().map(|r| r.0.as_str()).filter(|n| !matches!(*n, "n" | "n_compared")).collect();
    let mut tracker = Table::new()
        .with("outer", ColumnData::I64(track.iter().map(|r| r.0 as i64).collect()))
        .with("step", ColumnData::I64(track.iter().map(|r| r.1 as i64).collect()));
    for name in names {
        let col = track.iter().map(|r| r.2.iter().find(|m| m.0 == name).map_or(f64::NAN, |m| m.1)).collect();
        tracker = tracker.with(name, ColumnData::F64(col));
    }
    tracker
}

/// One training step after the loss and its gradient, the same for both
/// networks: the loss and the gradient norm must be finite (else the stage
/// fails naming the step, and nothing is kept); the gradient is clipped to
/// `grad_clip` (0: not clipped, its norm still logged); AdamW steps at the
/// decayed rate; DEM's `EMAWrapper` shadow (from the initial weights, decay
/// `min(ema, (1 + n)/(10 + n))`) follows; the step is logged.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Stepper {
    opt: AdamW,
    ema: Option<Vec<f32>>,
    losses: Losses,
    lrs: Vec<f64>,
}

impl Stepper {
    /// A stepper for the initial weights `params`.
    pub(crate) fn new(p: &IdemParams, params: &[f32]) -> Stepper {
        Stepper {
            opt: AdamW::new(params.len(), 0.0),
            ema: (p.ema > 0.0).then(|| params.to_vec()),
            losses: Losses::default(),
            lrs: Vec::new(),
        }
    }

    /// Step `params` by `grad` (clipped in place) at `p.decayed(lr, step)`.
    pub(crate) fn step(
        &mut self,
        p: &IdemParams,
        params: &mut [f32],
        grad: &mut [f32],
        loss: f64,
        lr: f64,
        (step, outer): (usize, usize),
    ) -> Result<(), StageError> {
        if !loss.is_finite() {
            return Err(StageError::Failed(format!(
                "training step {step} (outer {outer}): the loss is {loss}; nothing was kept"
            )));
        }
        let norm = if p.grad_clip > 0.0 {
            clip_grad_norm(grad, p.grad_clip)
        } else {
            grad.iter().map(|g| (*g as f64).powi(2)).sum::<f64>().sqrt()
        };
        if !norm.is_finite() {
            return Err(StageError::Failed(format!(
                "training step {step} (outer {outer}): the gradient norm is {norm}; nothing was kept"
            )));
        }
        let rate = p.decayed(lr, step);
        self.opt.step(params, grad, rate);
        if let Some(shadow) = self.ema.as_mut() {
            let n = (step + 1) as f64;
            ema_update(shadow, params, p.ema.min((1.0 + n) / (10.0 + n)));
        }
        self.losses.0.push(step as i64);
        self.losses.1.push(outer as i64);
        self.losses.2.push(loss);
        self.losses.3.push(norm);
        self.lrs.push(rate);
        Ok(())
    }

    /// The weights a model saved now would have (the EMA shadow when there
    /// is one).
    pub(crate) fn kept(&self, params: &[f32]) -> Vec<f32> {
        self.ema.clone().unwrap_or_else(|| params.to_vec())
    }

    /// The weights to keep — `selection`'s pick, else the EMA shadow when
    /// there is one, else `params` — with the selection table, and the loss
    /// table.
    pub(crate) fn finish(self, params: Vec<f32>, selection: Selection) -> ((Vec<f32>, Table), Table) {
        (selection.finish(self.ema.unwrap_or(params)), loss_table(self.losses, self.lrs))
    }
}
