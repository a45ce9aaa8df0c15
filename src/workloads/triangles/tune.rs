//! `tune` stages: fine-tune a pre-trained score model.
//!
//! `method: smeme` is the seed's maximal-manifold-exploration loop (seed 000,
//! "Implementation of manifold exploration in practice"), with the helpers it
//! calls as the origin (`tuomorphism/diffusion-on-the-edge`) writes them:
//!
//! * student `s = s_pre + Δ` with `s_pre` frozen and `Δ` a small network on
//!   `[x, t]` ([`crate::workloads::triangles::net::DeltaNet`], hidden 64, PyTorch's default
//!   initialisation — the origin's `ResidualScore` does not zero it, and the
//!   seed's first inner epoch already shows Δ/teach ≈ 0.05); the teacher in the
//!   loss is the pre-trained model (the seed calls `score_model(x, t)`);
//! * each of `outer_epochs`: draw `dataset_size` fresh `x_T ~ N(0, I)` and sample
//!   the current student with the PC sampler (noise on every corrector step, as
//!   the origin's `reverse_pc_sampler_torch`; `denoise: true` is Song et al.'s
//!   option); keep the triangles that pass the seed's `is_valid_triangle_torch`
//!   on the samples mapped back to side lengths (strict triangle inequalities
//!   only: [`is_triangle_strict`]; `pool_check: validate` uses the validate
//!   stage's rule with range and margin instead); build OU training pairs on
//!   them, `batch_size` rows per batch, `max(1, valid ÷ batch)` batches per inner
//!   epoch; for `inner_epochs` minimise
//!
//!   `loss = score_loss + λ_prox·mean‖Δ‖² − β·mean⟨−s_pre, Δ⟩`
//!
//!   by AdamW on Δ only (lr 1e-4; weight decay 0.01, PyTorch's default, which the
//!   seed leaves as is). `ω = clamp(v, 1e-3, 10)/mean(clamp(v, 1e-3, 10))`. The
//!   seed writes `mean(ω·‖score − s‖²)` with `ω` of shape `[B, 1]` (the OU
//!   dataset's `var`) and the squared error of shape `[B]`: the product
//!   broadcasts to `[B, B]`, so its mean is `mean(ω)·mean(‖score − s‖²)` — the
//!   unweighted mean, since `ω` has mean 1. That is the default
//!   (`score_weighting: seed`); `score_weighting: per_row` weights each row by its
//!   own `ω` (what `omega * score_loss` appears to intend; not what it computes);
//! * the tracker records, per outer/inner epoch, the sampler's valid count and
//!   fraction by the pool's rule (as the seed's `TuningTracker`) and the margins
//!   of those triangles (`a + b − c`, side units), and the epoch means of the
//!   loss, its three terms, and the `TuningTracker`'s geometry:
//!   `Δ/teach = mean_rows‖Δ‖ / mean_rows‖s_pre‖` and
//!   `cos(−T, Δ) = mean_rows cos(−s_pre, Δ)` (each row normalised with
//!   `max(‖·‖, 1e-12)`, as `F.normalize`).
//!
//! `variant: small_t` (not the seed's) applies the direction term only where
//! `t < t_direction`, i.e. where the score shapes the final samples' fine
//! structure, and leaves large-t behaviour to score matching.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use rand::Rng;

use super::net::{DeltaNet, ScoreNet, ScoreNetWeights};
use crate::engine::frame::{ColumnData, Table};
use crate::engine::params::{Default, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::numerics::nn::{init_layers, layers_of, linears};
use crate::numerics::rng::stream as rng;
use crate::numerics::sde::sampler::{Prior, pc_sample, prior_draw};
use crate::numerics::sde::{Ou, ou_pairs};
use crate::workloads::backend_device;
use crate::workloads::triangles::geometry::{Validity, is_triangle_strict};
use crate::workloads::triangles::net::FastMlp;

pub struct Smeme;

const NONNEG: ParamType = ParamType::Float { min: 0.0, max: f64::INFINITY };
const COUNT: ParamType = ParamType::Int { min: 1, max: 1_000_000 };

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct TuneParams {
        outer_epochs: usize = (COUNT, Default::Int(5), "sample–fine-tune rounds"),
        inner_epochs: usize = (COUNT, Default::Int(10), "passes over the valid pool per round"),
        dataset_size: usize = (COUNT, Default::Int(1024), "samples drawn per round"),
        batch_size: usize = (COUNT, Default::Int(256), "rows per step"),
        beta: f64 = (NONNEG, Default::Float(0.9), "weight of the direction term"),
        lambda_prox: f64 = (NONNEG, Default::Float(0.2), "weight of the proximity term"),
        lr: f64 = (NONNEG, Default::Float(1e-4), "AdamW learning rate (delta only)"),
        weight_decay: f64 = (NONNEG, Default::Float(0.01), "AdamW weight decay"),
        hidden: usize = (COUNT, Default::Int(64), "delta network width"),
        steps: usize = super::sample::PC_STEPS,
        snr: f64 = super::sample::PC_SNR,
        denoise: bool = super::sample::PC_DENOISE,
        score_weighting: String = (ParamType::Str { choices: &["seed", "per_row"] }, Default::Str("seed"), "`seed`: the seed's broadcast mean(ω)·mean(err) (unweighted); `per_row`: mean(ω·err)"),
        pool_check: String = (ParamType::Str { choices: &["seed", "validate"] }, Default::Str("seed"), "which samples train the student: the seed's strict triangle test, or the validate stage's rule"),
        eps: f64 = (ParamType::Float { min: 0.0, max: 1.0 }, Default::Float(1e-3), "validity margin (pool_check: validate)"),
        variant: String = (ParamType::Str { choices: &["seed", "small_t"] }, Default::Str("seed"), "`seed`: the seed's loss; `small_t`: direction term only for t < t_direction"),
        t_direction: f64 = (NONNEG, Default::Float(0.1), "small_t variant: cut-off time"),
    }
}
static INPUTS: &[InputDef] =
    &[InputDef { name: "model", media: Media::Model("score_ou"), required: true, doc: "the pre-trained score model" }];
static OUTPUTS: &[OutputDef] = &[
    OutputDef { name: "model", media: Media::Model("score_ou"), doc: "the tuned model (pre-trained + delta)" },
    OutputDef {
        name: "tracker",
        media: Media::Table,
        doc: "per outer/inner epoch: validity, loss terms, Δ/teach, cos",
    },
];

/// Everything the tuning loop needs to continue from an outer epoch's start.
#[derive(serde::Serialize, serde::Deserialize)]
struct TuneState {
    delta: crate::numerics::nn::Layers,
    optim: Vec<u8>,
    pair_rng: crate::numerics::rng::Position,
    rows: Vec<Row>,
    step: usize,
}

impl TuneState {
    /// The state to resume from and its optimiser record. A state of another
    /// shape than `shapes` (it verified, but does not fit) is not resumed:
    /// the checkpoint is discarded and the tuning starts over.
    fn resume(
        ck: &crate::engine::checkpoint::Checkpointing,
        shapes: &[(usize, usize)],
    ) -> Option<(u64, (burn::optim::OptimizerRecord, TuneState))> {
        let fits = |layers: &crate::numerics::nn::Layers| {
            layers.len() == shapes.len()
                && layers
                    .iter()
                    .zip(shapes)
                    .all(|((w, b, i, o), &(si, so))| (*i, *o) == (si, so) && w.len() == si * so && b.len() == so)
        };
        ck.resume_with(|bytes| {
            let s = crate::engine::checkpoint::decode::<TuneState>(bytes).filter(|s| fits(&s.delta))?;
            Some((crate::numerics::nn::state::optimizer_record(&s.optim)?, s))
        })
    }
}

/// The `tracker` output: one row per inner epoch.
fn tracker_table(rows: &[Row]) -> Table {
    let col_i = |f: fn(&Row) -> i64| ColumnData::I64(rows.iter().map(f).collect());
    let col_f = |f: fn(&Row) -> f64| ColumnData::F64(rows.iter().map(f).collect());
    Table::new()
        .with("outer", col_i(|r| r.outer))
        .with("inner", col_i(|r| r.inner))
        .with("valid", col_i(|r| r.valid))
        .with("valid_fraction", col_f(|r| r.valid_fraction))
        .with("mean_margin", col_f(|r| r.mean_margin))
        .with("min_margin", col_f(|r| r.min_margin))
        .with("loss", col_f(|r| r.loss))
        .with("score_loss", col_f(|r| r.score_loss))
        .with("delta_loss", col_f(|r| r.delta_loss))
        .with("direction_loss", col_f(|r| r.direction_loss))
        .with("delta_ratio", col_f(|r| r.delta_ratio))
        .with("cos", col_f(|r| r.cos))
}

/// One tracker row.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Row {
    outer: i64,
    inner: i64,
    valid: i64,
    valid_fraction: f64,
    mean_margin: f64,
    min_margin: f64,
    loss: f64,
    score_loss: f64,
    delta_loss: f64,
    direction_loss: f64,
    delta_ratio: f64,
    cos: f64,
}

/// The three terms of the S-MEME loss and their combination, for a batch with
/// teacher scores `teach`, delta outputs `d` (so the student is `teach + d`),
/// score-matching targets `target`, per-row weights `omega` (`[B, 1]`) and per-row
/// direction mask `mask` (all ones for the seed's loss):
///
/// * `score = mean(ω)·mean_rows(Σ_dims (target − (teach + d))²)` — the seed's
///   broadcast `[B, 1]·[B]` — or, with `per_row`,
///   `mean_rows(ω·Σ_dims (target − (teach + d))²)`
/// * `proximity = λ_prox·mean_rows(Σ_dims d²)`
/// * `direction = β·mean_rows(mask·Σ_dims (−teach)·d)`
/// * `loss = score + proximity − direction`
pub struct LossTerms {
    pub loss: Tensor<1>,
    pub score: Tensor<1>,
    pub proximity: Tensor<1>,
    pub direction: Tensor<1>,
}

#[allow(clippy::too_many_arguments)]
pub fn loss_terms(
    teach: Tensor<2>,
    d: Tensor<2>,
    target: Tensor<2>,
    omega: Tensor<2>,
    mask: Tensor<2>,
    beta: f64,
    lambda_prox: f64,
    per_row: bool,
) -> LossTerms {
    let student = teach.clone() + d.clone();
    let err = (target - student).powi_scalar(2).sum_dim(1);
    let score = if per_row { err.mul(omega).mean() } else { err.mean().mul(omega.mean()) };
    let proximity = d.clone().powi_scalar(2).sum_dim(1).mean().mul_scalar(lambda_prox as f32);
    let direction = teach.mul_scalar(-1.0).mul(d).sum_dim(1).mul(mask).mean().mul_scalar(beta as f32);
    let loss = score.clone() + proximity.clone() - direction.clone();
    LossTerms { loss, score, proximity, direction }
}

/// The seed's `TuningTracker` geometry of one batch: `Δ/teach` = mean row norm of
/// `Δ` over mean row norm of the teacher's score, and `cos(−T, Δ)` = the mean
/// over rows of the cosine between `−s_pre` and `Δ`, each row normalised by
/// `max(‖·‖, 1e-12)` (`F.normalize`).
pub fn tracker_geometry(teach: &[f32], delta: &[f32], dim: usize) -> (f64, f64) {
    let rows = teach.len() / dim;
    let (mut dn, mut tn, mut cos) = (0f64, 0f64, 0f64);
    for (t, d) in teach.chunks_exact(dim).zip(delta.chunks_exact(dim)) {
        let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let (nt, nd) = (norm(t), norm(d));
        dn += nd;
        tn += nt;
        let dot: f64 = t.iter().zip(d).map(|(a, b)| -(*a as f64) * *b as f64).sum();
        cos += dot / (nt.max(1e-12) * nd.max(1e-12));
    }
    let n = rows as f64;
    ((dn / n) / (tn / n).max(1e-12), cos / n)
}

fn tensor2(v: Vec<f32>, rows: usize, cols: usize, dev: &burn::tensor::Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v, [rows, cols]), dev)
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

impl Stage for Smeme {
    describe!(Kind::Tune, "smeme", version 4, params TuneParams, INPUTS, OUTPUTS);
    fn memory_bytes(&self, p: &crate::engine::params::Params) -> Option<(&'static str, u64)> {
        let p = TuneParams::read(p);
        // The delta network trains on `batch_size` rows; the student samples
        // `dataset_size` rows at a time (the teacher's activations are small
        // beside them, and counted as one more batch).
        let shapes = crate::numerics::nn::dense_shapes(7, p.hidden, 2, 6);
        let rows = p.batch_size.max(p.dataset_size).saturating_mul(2);
        let name = if p.dataset_size > p.batch_size { "dataset_size" } else { "batch_size" };
        Some(crate::numerics::nn::dense_estimate(&shapes, rows, "hidden", name))
    }
    fn checkpoints(&self) -> bool {
        true
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        use crate::engine::checkpoint::encode;
        use crate::numerics::nn::state::optimizer_bytes;
        let p = &TuneParams::read(ctx.params);
        let base = ScoreNetWeights::from_bytes(ctx.blob("model")?)?;
        if !base.delta.is_empty() {
            return Err(StageError::Failed("the input model is already tuned; tune a pre-trained model".into()));
        }
        let meta = base.meta.clone();
        let ou = Ou { lambda: meta.lambda, sigma: meta.sigma };
        let dim = base.dim;
        let (outer_n, inner_n) = (p.outer_epochs, p.inner_epochs);
        let (n_draw, batch) = (p.dataset_size, p.batch_size);
        let (beta, lambda_prox, eps) = (p.beta, p.lambda_prox, p.eps);
        let small_t = (p.variant == "small_t").then_some(p.t_direction as f32);
        let seed_pool = p.pool_check == "seed";
        let per_row = p.score_weighting == "per_row";
        let sampler = super::sample::pc_config(p.steps, p.snr, p.denoise, meta.t_max);

        let plain = backend_device(ctx.backend);
        let dev = plain.clone().autodiff();
        let teacher = ScoreNet::from_weights(&base, &plain);
        let hidden = p.hidden;
        let shapes = [(dim + 1, hidden), (hidden, hidden), (hidden, dim)];
        let mut delta =
            DeltaNet { layers: linears(&init_layers(&shapes, false, &mut rng(ctx.seed, "delta-init")), &dev, 0) };
        let mut optim = crate::numerics::nn::adamw(p.weight_decay).init();
        let mut pair_rng = rng(ctx.seed, "pairs");
        let mut rows: Vec<Row> = Vec::new();
        let total = (outer_n * (inner_n + 1)) as f64;
        let mut step = 0usize;
        let mut start = 0;
        // The delta network's parameter ids are fixed (`linears` from 0), so
        // Adam's state, keyed by them, applies to the rebuilt network as is.
        let resumed = TuneState::resume(ctx.checkpoint, &shapes);
        if let Some((at, (record, s))) = resumed {
            delta = DeltaNet { layers: linears(&s.delta, &dev, 0) };
            optim = optim.load_record(record);
            s.pair_rng.seek(&mut pair_rng);
            (rows, step, start) = (s.rows, s.step, at as usize);
        }

        for outer in start..outer_n {
            ctx.checkpoint.at_boundary(outer as u64, outer_n as u64, || {
                encode(&TuneState {
                    delta: layers_of(&delta.layers),
                    optim: optimizer_bytes(&optim),
                    pair_rng: crate::numerics::rng::Position::of(&pair_rng),
                    rows: rows.clone(),
                    step,
                })
            })?;
            // Sample the current student.
            let current = ScoreNetWeights { delta: layers_of(&delta.layers), ..base.clone() };
            let fast = FastMlp::new(&current);
            let prior_seed: u64 = rng(ctx.seed, &format!("outer-{outer}/prior")).random();
            let noise_seed: u64 = rng(ctx.seed, &format!("outer-{outer}/noise")).random();
            let mut x = prior_draw(n_draw, dim, Prior::Standard, ou, meta.t_max, prior_seed);
            pc_sample(&fast, ou, &mut x, sampler, (noise_seed, 0), 0, 1, &|_| {});
            let mut pool = Vec::new();
            let mut margins = Vec::new();
            for r in x.chunks(dim) {
                let sides = [meta.to_data(r[0]), meta.to_data(r[1]), meta.to_data(r[2])];
                let v = Validity::check(sides, eps);
                let keep = if seed_pool { is_triangle_strict(sides) } else { v.valid() };
                if keep {
                    pool.extend_from_slice(r);
                    margins.push(v.margin);
                }
            }
            let valid = margins.len();
            if valid == 0 {
                return Err(StageError::Failed(format!("outer epoch {outer}: the student sampled no valid triangle")));
            }
            let base_row = Row {
                outer: outer as i64,
                valid: valid as i64,
                valid_fraction: valid as f64 / n_draw as f64,
                mean_margin: margins.iter().sum::<f64>() / valid as f64,
                min_margin: margins.iter().copied().fold(f64::INFINITY, f64::min),
                ..Row::default()
            };
            (ctx.progress)((outer * (inner_n + 1) + 1) as f64 / total);
            let batches = (valid / batch).max(1);
            for inner in 0..inner_n {
                let mut acc = [0f64; 6];
                for _ in 0..batches {
                    let pr = ou_pairs(&pool, dim, batch, ou, meta.t_max, &mut pair_rng);
                    let b = batch;
                    let teach_plain = teacher.forward(
                        tensor2(pr.xt.clone(), b, dim, &plain),
                        Tensor::from_data(TensorData::new(pr.t.clone(), [b]), &plain),
                    );
                    let teach_v: Vec<f32> = teach_plain.into_data().try_to_vec::<f32>().expect("f32");
                    let clamped: Vec<f32> = pr.var.iter().map(|v| v.clamp(1e-3, 10.0)).collect();
                    let mean_c = clamped.iter().sum::<f32>() / b as f32;
                    let omega: Vec<f32> = clamped.iter().map(|v| v / mean_c).collect();
                    let dir_mask: Vec<f32> =
                        pr.t.iter().map(|t| if small_t.is_none_or(|cut| *t < cut) { 1.0 } else { 0.0 }).collect();

                    let xt = tensor2(pr.xt, b, dim, &dev);
                    let t = Tensor::<1>::from_data(TensorData::new(pr.t, [b]), &dev);
                    let target = tensor2(pr.score, b, dim, &dev);
                    let teach = tensor2(teach_v.clone(), b, dim, &dev);
                    let omega = tensor2(omega, b, 1, &dev);
                    let mask = tensor2(dir_mask, b, 1, &dev);

                    let d = delta.forward(xt, t);
                    let terms = loss_terms(teach, d.clone(), target, omega, mask, beta, lambda_prox, per_row);
                    let (loss, score_loss, delta_loss, direction) =
                        (terms.loss, terms.score, terms.proximity, terms.direction);
                    let d_v: Vec<f32> = d.into_data().try_to_vec::<f32>().expect("f32");
                    let values = [scalar(loss.clone()), scalar(score_loss), scalar(delta_loss), scalar(direction)];
                    if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
                        return Err(StageError::NonFinite { step, value: *bad });
                    }
                    let (ratio, cos) = tracker_geometry(&teach_v, &d_v, dim);
                    for (a, v) in acc.iter_mut().zip([values[0], values[1], values[2], values[3], ratio, cos]) {
                        *a += v / batches as f64;
                    }
                    let grads = GradientsParams::from_grads(loss.backward(), &delta);
                    delta = optim.step(p.lr, delta, grads);
                    step += 1;
                }
                rows.push(Row {
                    inner: inner as i64,
                    loss: acc[0],
                    score_loss: acc[1],
                    delta_loss: acc[2],
                    direction_loss: acc[3],
                    delta_ratio: acc[4],
                    cos: acc[5],
                    ..base_row.clone()
                });
                (ctx.progress)((outer * (inner_n + 1) + inner + 2) as f64 / total);
            }
        }
        let tuned = ScoreNetWeights { delta: layers_of(&delta.valid().layers), ..base };
        let tracker = tracker_table(&rows);
        Ok([("model".to_string(), Artifact::Blob(tuned.to_bytes())), ("tracker".to_string(), Artifact::Table(tracker))]
            .into_iter()
            .collect())
    }

    fn summary(&self, outputs: &BTreeMap<String, Arc<Artifact>>) -> Option<String> {
        let Artifact::Table(t) = outputs.get("tracker")?.as_ref() else { return None };
        let (outer, inner) = (t.i64s("outer").ok()?, t.i64s("inner").ok()?);
        let (vf, ratio, cos) = (t.f64s("valid_fraction").ok()?, t.f64s("delta_ratio").ok()?, t.f64s("cos").ok()?);
        let lines: Vec<String> = (0..outer.len())
            .filter(|i| inner[*i] == *inner.iter().max().unwrap_or(&0))
            .map(|i| {
                format!("[outer {}] valid {:.3} | Δ/teach {:.3} | cos(-T,Δ) {:.3}", outer[i], vf[i], ratio[i], cos[i])
            })
            .collect();
        Some(lines.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> burn::tensor::Device {
        backend_device(crate::engine::stage::Backend::Flex)
    }

    fn t2(v: &[f32], rows: usize, cols: usize) -> Tensor<2> {
        tensor2(v.to_vec(), rows, cols, &device())
    }

    #[test]
    fn loss_terms_match_hand_computed_values() {
        // Two rows, two dims.
        let teach = t2(&[1.0, -2.0, 0.5, 0.0], 2, 2);
        let d = t2(&[0.1, 0.2, -0.3, 0.4], 2, 2);
        let target = t2(&[1.0, -1.0, 0.0, 1.0], 2, 2);
        let omega = t2(&[0.5, 1.5], 2, 1);
        let ones = t2(&[1.0, 1.0], 2, 1);
        let terms = loss_terms(teach.clone(), d.clone(), target.clone(), omega.clone(), ones.clone(), 0.9, 0.2, true);
        // student = [1.1, -1.8; 0.2, 0.4]; residual² sums: (−0.1)²+(0.8)² = 0.65, (−0.2)²+(0.6)² = 0.40
        // per_row: score = mean(0.5·0.65, 1.5·0.40) = (0.325 + 0.6)/2 = 0.4625
        let score = 0.4625;
        // proximity = 0.2·mean(0.01+0.04, 0.09+0.16) = 0.2·0.15 = 0.03
        let proximity = 0.03;
        // direction = 0.9·mean((−1)(0.1)+(2)(0.2), (−0.5)(−0.3)+0·0.4) = 0.9·mean(0.3, 0.15) = 0.2025
        let direction = 0.2025;
        let v = |t: Tensor<1>| t.into_scalar::<f32>() as f64;
        assert!((v(terms.score) - score).abs() < 1e-6);
        assert!((v(terms.proximity) - proximity).abs() < 1e-6);
        assert!((v(terms.direction) - direction).abs() < 1e-6);
        assert!((v(terms.loss) - (score + proximity - direction)).abs() < 1e-6);

        // The seed's form: ω [B, 1] times the error [B] broadcasts to [B, B]:
        // mean_ij ω_i·e_j = mean(ω)·mean(e) = 1.0·(0.65 + 0.40)/2 = 0.525 — the
        // unweighted mean, as ω has mean 1.
        let seed = loss_terms(teach, d, target, omega, ones, 0.9, 0.2, false);
        let broadcast = [0.5f64, 1.5].iter().flat_map(|w| [0.65f64, 0.40].map(|e| w * e)).sum::<f64>() / 4.0;
        assert!((broadcast - 0.525).abs() < 1e-12);
        assert!((v(seed.score) - broadcast).abs() < 1e-6);
        assert!((v(seed.loss) - (broadcast + proximity - direction)).abs() < 1e-6);
    }

    #[test]
    fn tracker_geometry_is_the_seeds_mean_row_norms_and_mean_cosine() {
        // Rows: teacher (3, 4) with Δ (0, 1); teacher (1, 0) with Δ (−2, 0).
        let teach = [3.0f32, 4.0, 1.0, 0.0];
        let delta = [0.0f32, 1.0, -2.0, 0.0];
        let (ratio, cos) = tracker_geometry(&teach, &delta, 2);
        // mean‖Δ‖ = (1 + 2)/2 = 1.5, mean‖T‖ = (5 + 1)/2 = 3 → 0.5 (the Frobenius
        // ratio would be √5/√26 ≈ 0.439).
        assert!((ratio - 0.5).abs() < 1e-12, "{ratio}");
        // cos(−T, Δ): row 1 (−3, −4)·(0, 1)/(5·1) = −0.8; row 2 (−1, 0)·(−2, 0)/(1·2) = 1 → 0.1.
        assert!((cos - 0.1).abs() < 1e-12, "{cos}");
        // A zero row counts as cosine 0 (F.normalize's eps), not NaN.
        let (_, c0) = tracker_geometry(&[1.0, 0.0], &[0.0, 0.0], 2);
        assert_eq!(c0, 0.0);
    }

    #[test]
    fn the_student_is_the_teacher_plus_delta() {
        use crate::workloads::triangles::net::{ModelMeta, ScoreNetConfig};
        use rand::SeedableRng;
        let meta = ModelMeta { lambda: 0.3, sigma: 0.5, t_max: 1.0, scale: 2.0, shift: -1.0 };
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut base =
            ScoreNetWeights::init(ScoreNetConfig { hidden: 16, ..ScoreNetConfig::seed_default() }, meta, &mut r);
        let last = base.layers.len() - 1;
        base.layers[last].0.iter_mut().for_each(|w| *w = r.random_range(-0.3..0.3));
        let delta_layers = init_layers(&[(4, 8), (8, 8), (8, 3)], false, &mut r);
        let tuned = ScoreNetWeights { delta: delta_layers.clone(), ..base.clone() };
        let x = [0.1f32, -0.2, 0.3, 0.5, 0.5, -0.5];
        let t = 0.4f32;
        let eval = |w: &ScoreNetWeights| {
            use crate::numerics::sde::sampler::ScoreModel;
            let f = FastMlp::new(w);
            let mut out = vec![0f32; 6];
            let mut s = f.scratch(2);
            f.eval(&x, t, &mut out, &mut s);
            out
        };
        let (teacher, student) = (eval(&base), eval(&tuned));
        let delta = DeltaNet { layers: linears(&delta_layers, &device(), 0) }
            .forward(t2(&x, 2, 3), Tensor::from_data(TensorData::new(vec![t; 2], [2]), &device()))
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for i in 0..6 {
            assert!(
                (student[i] - (teacher[i] + delta[i])).abs() < 1e-5,
                "{i}: {} vs {} + {}",
                student[i],
                teacher[i],
                delta[i]
            );
        }
        // And a tuned model survives serialisation.
        assert_eq!(ScoreNetWeights::from_bytes(&tuned.to_bytes()).unwrap(), tuned);
    }
}
