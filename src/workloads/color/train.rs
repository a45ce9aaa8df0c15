//! `train` / `objective: color_ae`: experiment 1.7's training loop (the seed's
//! `train_color_model`, spec §6).
//!
//! For every step `s` of the timeline (its length: the sheet's last step + 1;
//! 10 001 for the 1.7 sheet): read the schedule at `s` — Adam's learning rate
//! from `lr`, each regularizer's weight from its column (1 without one;
//! `loss-recon` is never read, as in the origin) — take the next batch, compute
//! the loss ([`super::model::loss_and_grad`]) and step Adam only when the total
//! is positive. Batches come from the origin's `WeightedRandomSampler`: each
//! epoch draws 3600 colours with replacement, with probability proportional to
//! their `bias`, cut into batches of 32 — the epoch's last batch has 16. The
//! draws are a ChaCha8 stream of the stage seed, not torch's.
//!
//! Labels: the `data` table's `red` and `vibrant` columns as they are (the
//! seed's soft probabilities), or with `labels: per_draw` — the origin from
//! commit 32a7dda ("ex 1.7: using stochastic labels", its `collate_fn`) — a
//! fresh Bernoulli draw, 1 with probability `label_scale·p`, each time a colour
//! enters a batch, from a stream of the stage seed (so seeds of a sweep draw
//! differently). `label scheme: color_soft` with `stochastic: true` is the other
//! choice: one draw per colour for the whole run.
//!
//! Outputs: the model; a loss table (step, lr, total, recon and each term —
//! NaN where the term was skipped: zero weight or zero affinity); and latent
//! snapshots: the evaluation grid's latents every `snapshot_every` steps and at
//! the last, one long table (step, r, g, b, z0..z3).

use rand::Rng;

use super::model::{LATENT, N_PARAMS, SHAPES, Weights, forward, loss_and_grad};
use crate::engine::frame::{ColumnData, Table};
use crate::engine::params::{Default, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::numerics::nn::backprop::AdamW;
use crate::numerics::nn::{init_layers, io_device, linears, record_bytes};
use crate::numerics::rng::stream as rng;

/// `objective: color_ae` (see the module documentation).
pub struct ColorAe;

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct ColorAeParams {
        batch: usize = (ParamType::Int { min: 1, max: 100_000 }, Default::Int(32), "colours per batch (the seed: 32)"),
        epoch: usize = (ParamType::Int { min: 1, max: 100_000_000 }, Default::Int(3600), "draws per sampler epoch (the origin: the data set's size, 3600)"),
        snapshot_every: usize = (ParamType::Int { min: 1, max: 1_000_000 }, Default::Int(50), "steps between latent snapshots of the evaluation grid (the notebook records every step and plots every 200)"),
        labels: String = (ParamType::Str { choices: &["soft", "per_draw"] }, Default::Str("soft"), "`soft`: the label columns as they are (the seed); `per_draw`: a fresh 0/1 draw, 1 with probability label_scale·p, each time a colour enters a batch (the origin from 32a7dda)"),
        label_scale: f64 = (ParamType::Float { min: 0.0, max: 1.0 }, Default::Float(0.5), "labels: per_draw: the probabilities' factor (the origin: 0.5)"),
    }
}
static INPUTS: &[InputDef] = &[
    InputDef {
        name: "data",
        media: Media::Table,
        required: true,
        doc: "labelled colours: r, g, b, bias, red, vibrant",
    },
    InputDef { name: "timeline", media: Media::Table, required: true, doc: "generate dataset: dopesheet's timeline" },
    InputDef { name: "grid", media: Media::Table, required: true, doc: "the evaluation colours (r, g, b)" },
];
static OUTPUTS: &[OutputDef] = &[
    OutputDef { name: "model", media: Media::Model("color_mlp"), doc: "ColorMLP's weights (SFCOL001)" },
    OutputDef {
        name: "loss",
        media: Media::Table,
        doc: "step, lr, total, recon, reg-polar, reg-separate, reg-planar, reg-norm-v, reg-norm",
    },
    OutputDef { name: "latents", media: Media::Table, doc: "step, r, g, b, z0, z1, z2, z3" },
];

/// The dopesheet columns this objective reads (any other is an error).
const KNOWN: &[&str] = &["lr", "loss-recon", "reg-polar", "reg-separate", "reg-planar", "reg-norm-v", "reg-norm"];

pub const MAGIC: &[u8; 8] = b"SFCOL001";

impl Stage for ColorAe {
    describe!(Kind::Train, "color_ae", version 1, params ColorAeParams, INPUTS, OUTPUTS);
    fn input_columns(&self, input: &str) -> &'static [&'static str] {
        match input {
            "data" => &["r", "g", "b", "bias", "red", "vibrant"],
            "timeline" => &["step"],
            "grid" => &["r", "g", "b"],
            _ => &[],
        }
    }
    fn output_columns(&self, output: &str) -> Option<&'static [&'static str]> {
        match output {
            "loss" => Some(&[
                "step",
                "lr",
                "total",
                "recon",
                "reg-polar",
                "reg-separate",
                "reg-planar",
                "reg-norm-v",
                "reg-norm",
            ]),
            "latents" => Some(&["step", "r", "g", "b", "z0", "z1", "z2", "z3"]),
            _ => None,
        }
    }
    fn checkpoints(&self) -> bool {
        true
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        use crate::engine::checkpoint::{decode, encode};
        use crate::numerics::rng::Position;
        let p = ColorAeParams::read(ctx.params);
        let data = ctx.table("data")?;
        let xs: Vec<[f32; 3]> = {
            let (r, g, b) = (data.f64s("r")?, data.f64s("g")?, data.f64s("b")?);
            (0..r.len()).map(|i| [r[i] as f32, g[i] as f32, b[i] as f32]).collect()
        };
        let (bias, red, vibrant) = (data.f64s("bias")?, data.f64s("red")?, data.f64s("vibrant")?);
        if xs.is_empty() || bias.iter().any(|w| !(w.is_finite() && *w >= 0.0)) || bias.iter().sum::<f64>() <= 0.0 {
            return Err(StageError::Failed("the data's bias must be finite, non-negative and not all 0".into()));
        }
        let timeline = ctx.table("timeline")?;
        let (lr, [w_polar, w_sep, w_planar, w_norm_v, w_norm]) = schedule(timeline)?;
        let at = |w: &Option<Vec<f64>>, s: usize| w.as_ref().map_or(1.0, |v| v[s]);
        // The timeline has steps 0..=len; training runs 0..len.
        let steps = timeline.num_rows().saturating_sub(1).max(1);
        let grid = ctx.table("grid")?;
        let grid: Vec<[f32; 3]> = {
            let (r, g, b) = (grid.f64s("r")?, grid.f64s("g")?, grid.f64s("b")?);
            (0..r.len()).map(|i| [r[i] as f32, g[i] as f32, b[i] as f32]).collect()
        };

        let layers = init_layers(&SHAPES, false, &mut rng(ctx.seed, "color_ae/weights"));
        let mut params: Vec<f32> = layers.iter().flat_map(|(w, b, _, _)| w.iter().chain(b).copied()).collect();
        debug_assert_eq!(params.len(), N_PARAMS);
        let mut opt = AdamW::new(N_PARAMS, 0.0);
        let mut grad = vec![0f32; N_PARAMS];
        // The weighted sampler: cumulative weights, one uniform draw per colour.
        let mut cum = Vec::with_capacity(bias.len());
        let mut acc = 0.0;
        for w in &bias {
            acc += w;
            cum.push(acc);
        }
        let mut draws = rng(ctx.seed, "color_ae/sampler");
        let mut label_draws = rng(ctx.seed, "color_ae/labels");
        let per_draw = (p.labels == "per_draw").then_some(p.label_scale);
        let mut epoch: Vec<usize> = Vec::new();
        let mut at_in_epoch = 0;
        let mut loss_rows: Vec<[f64; 9]> = Vec::with_capacity(steps);
        let mut snaps: Snaps = (Vec::new(), Vec::new(), Vec::new());
        let snapshot = |snaps: &mut Snaps, step: usize, params: &[f32]| {
            for c in &grid {
                let z = forward(params, *c).z;
                snaps.0.push(step as i64);
                snaps.1.push(*c);
                snaps.2.push(z);
            }
        };
        let mut start = 0;
        if let Some((at, s)) = ctx.checkpoint.resume_with(decode::<ColorState>) {
            (params, opt, epoch, at_in_epoch, snaps, start) =
                (s.params, s.opt, s.epoch, s.at_in_epoch, s.snaps, at as usize);
            loss_rows = s.loss_bits.iter().map(|r| r.map(f64::from_bits)).collect();
            s.draws.seek(&mut draws);
            if let Some(at) = s.label_draws {
                at.seek(&mut label_draws);
            }
        }
        let (mut bx, mut br, mut bv) = (Vec::new(), Vec::new(), Vec::new());
        #[allow(clippy::needless_range_loop)] // s is the step, which also indexes the schedule
        for s in start..steps {
            ctx.checkpoint.at_boundary(s as u64, steps as u64, || {
                encode(&ColorState {
                    params: params.clone(),
                    opt: opt.clone(),
                    draws: Position::of(&draws),
                    label_draws: Some(Position::of(&label_draws)),
                    epoch: epoch.clone(),
                    at_in_epoch,
                    // As bits: the unused terms are NaN, kept exactly.
                    loss_bits: loss_rows.iter().map(|r| r.map(f64::to_bits)).collect(),
                    snaps: snaps.clone(),
                })
            })?;
            if at_in_epoch >= epoch.len() {
                epoch = (0..p.epoch)
                    .map(|_| {
                        let u = draws.random::<f64>() * acc;
                        cum.partition_point(|c| *c <= u).min(bias.len() - 1)
                    })
                    .collect();
                at_in_epoch = 0;
            }
            let end = (at_in_epoch + p.batch).min(epoch.len());
            bx.clear();
            br.clear();
            bv.clear();
            let mut label = |p: f64| per_draw.map_or(p as f32, |scale| draw_label(p, scale, &mut label_draws));
            for &i in &epoch[at_in_epoch..end] {
                bx.push(xs[i]);
                br.push(label(red[i]));
                bv.push(label(vibrant[i]));
            }
            at_in_epoch = end;
            if s % p.snapshot_every == 0 {
                snapshot(&mut snaps, s, &params);
            }
            let w = Weights {
                polar: at(&w_polar, s),
                separate: at(&w_sep, s),
                planar: at(&w_planar, s),
                norm_v: at(&w_norm_v, s),
                norm: at(&w_norm, s),
            };
            let t = loss_and_grad(&params, &bx, &br, &bv, &w, &mut grad);
            if !t.total.is_finite() {
                return Err(StageError::Failed(format!("step {s}: the loss is {}; nothing was kept", t.total)));
            }
            if t.total > 0.0 {
                opt.step(&mut params, &grad, lr[s]);
            }
            let nan = f64::NAN;
            loss_rows.push([
                s as f64,
                lr[s],
                t.total,
                t.recon,
                t.polar.unwrap_or(nan),
                t.separate.unwrap_or(nan),
                t.planar.unwrap_or(nan),
                t.norm_v.unwrap_or(nan),
                t.norm.unwrap_or(nan),
            ]);
            if s % 100 == 99 {
                (ctx.progress)((s + 1) as f64 / steps as f64);
            }
        }
        snapshot(&mut snaps, steps, &params);
        let (snap_step, snap_rgb, snap_z) = snaps;
        if params.iter().any(|v| !v.is_finite()) {
            return Err(StageError::Failed("the weights are not finite after training".into()));
        }

        let loss = loss_table(&loss_rows);
        let latents = latents_table(snap_step, &snap_rgb, &snap_z);
        let model = model_bytes(&params);
        Ok([
            ("model".to_string(), Artifact::Blob(model)),
            ("loss".to_string(), Artifact::Table(loss)),
            ("latents".to_string(), Artifact::Table(latents)),
        ]
        .into_iter()
        .collect())
    }
}

/// One per-draw label: 1 with probability `scale·p`, else 0 (the origin's
/// `(torch.rand_like(probs) < probs).float()` on `scale·p`).
pub fn draw_label(p: f64, scale: f64, rng: &mut impl Rng) -> f32 {
    f32::from(u8::from(rng.random::<f64>() < scale * p))
}

/// The dopesheet's timeline as the objective reads it: the learning rate
/// per step, and each regulariser's weight per step where the sheet has its
/// column (else 1). A column it does not read is an error.
#[allow(clippy::type_complexity)]
fn schedule(timeline: &Table) -> Result<(Vec<f64>, [Option<Vec<f64>>; 5]), StageError> {
    let names: Vec<&str> = timeline.columns.iter().map(|c| c.name.as_str()).collect();
    let unknown: Vec<&str> =
        names.iter().copied().filter(|n| !super::timeline::NOT_PROPERTIES.contains(n) && !KNOWN.contains(n)).collect();
    if !unknown.is_empty() {
        return Err(StageError::Failed(format!(
            "the dopesheet has {} {}, which objective: color_ae does not read (it reads {})",
            if unknown.len() == 1 { "column" } else { "columns" },
            unknown.join(", "),
            KNOWN.join(", ")
        )));
    }
    let lr = timeline.f64s("lr").map_err(|_| StageError::Failed("the dopesheet must have an `lr` column".into()))?;
    let weight = |name: &str| timeline.f64s(name).ok();
    Ok((
        lr,
        [weight("reg-polar"), weight("reg-separate"), weight("reg-planar"), weight("reg-norm-v"), weight("reg-norm")],
    ))
}

/// The `loss` table: one row per step.
fn loss_table(loss_rows: &[[f64; 9]]) -> Table {
    let mut loss = Table::new().with("step", ColumnData::I64(loss_rows.iter().map(|r| r[0] as i64).collect()));
    for (k, name) in
        ["lr", "total", "recon", "reg-polar", "reg-separate", "reg-planar", "reg-norm-v", "reg-norm"].iter().enumerate()
    {
        loss = loss.with(name, ColumnData::F64(loss_rows.iter().map(|r| r[k + 1]).collect()));
    }
    loss
}

/// The `latents` table: the grid's latent codes at every snapshot.
/// The latent snapshots so far: step, colour, latent.
type Snaps = (Vec<i64>, Vec<[f32; 3]>, Vec<[f32; LATENT]>);

/// Everything the training loop needs to continue from a step boundary.
#[derive(serde::Serialize, serde::Deserialize)]
struct ColorState {
    params: Vec<f32>,
    opt: AdamW,
    draws: crate::numerics::rng::Position,
    /// The per-draw labels' stream (absent in a checkpoint from before it).
    #[serde(default)]
    label_draws: Option<crate::numerics::rng::Position>,
    epoch: Vec<usize>,
    at_in_epoch: usize,
    loss_bits: Vec<[u64; 9]>,
    snaps: Snaps,
}

fn latents_table(snap_step: Vec<i64>, snap_rgb: &[[f32; 3]], snap_z: &[[f32; LATENT]]) -> Table {
    let mut latents = Table::new()
        .with("step", ColumnData::I64(snap_step))
        .with("r", ColumnData::F64(snap_rgb.iter().map(|c| c[0] as f64).collect()))
        .with("g", ColumnData::F64(snap_rgb.iter().map(|c| c[1] as f64).collect()))
        .with("b", ColumnData::F64(snap_rgb.iter().map(|c| c[2] as f64).collect()));
    for k in 0..LATENT {
        latents = latents.with(&format!("z{k}"), ColumnData::F64(snap_z.iter().map(|z| z[k] as f64).collect()));
    }
    latents
}

/// The model blob: `SFCOL001`, the JSON header, then the four layers in burn's
/// record format.
pub fn model_bytes(params: &[f32]) -> Vec<u8> {
    let layers = crate::numerics::nn::unflatten_layers(&SHAPES, params);
    let record = record_bytes(linears(&layers, &io_device(), 0));
    let header = serde_json::json!({ "model": "ColorMLP", "shapes": SHAPES });
    crate::numerics::nn::frame_blob(MAGIC, &header, &[&record])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per-draw labels: the same colour drawn again can get the other label,
    /// and over many draws the share of 1s is `scale·p`.
    #[test]
    fn per_draw_labels_redraw_and_average_to_scale_times_p() {
        let mut r = rng(3, "color_ae/labels");
        let (p, scale, n) = (0.6, 0.5, 200_000);
        let draws: Vec<f32> = (0..n).map(|_| draw_label(p, scale, &mut r)).collect();
        assert!(draws.iter().all(|d| *d == 0.0 || *d == 1.0));
        assert!(draws.windows(2).any(|w| w[0] != w[1]), "two draws of one colour differ somewhere");
        let freq = draws.iter().map(|d| *d as f64).sum::<f64>() / n as f64;
        // Binomial sd: sqrt(0.3·0.7/200 000) ≈ 0.001.
        assert!((freq - scale * p).abs() < 0.005, "{freq} vs {}", scale * p);
        // p = 0 never labels; scale·p = 1 always does.
        assert!((0..1000).all(|_| draw_label(0.0, 1.0, &mut r) == 0.0));
        assert!((0..1000).all(|_| draw_label(1.0, 1.0, &mut r) == 1.0));
    }
}
