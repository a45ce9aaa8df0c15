//! `train` / `objective: color_ae`: the colour autoencoder's training loop —
//! experiment 1.7's (the seed's `train_color_model`, spec §6) by default, 1.5's
//! or 1.6's with `form` (their curricula: [`super::curriculum`]).
//!
//! For every step `s` of the timeline (its length: the sheet's last step + 1;
//! 10 001 for the 1.7 sheet): read the schedule at `s` — Adam's learning rate
//! from `lr`, each regularizer's weight from its column (without one: 1 in
//! `ex_1_7`, 0 in the others), the reconstruction's from `loss-recon` (never
//! read by 1.7) — run the sheet's actions (`anchor`: snapshot the six
//! primaries' latents for the `anchor` criterion), take the next batch, compute
//! the loss ([`super::loss::loss_and_grad`]) and step Adam only when the total
//! is positive. Batches: a phase in `primary_phases` trains on the six primary
//! and secondary colours; otherwise `ex_1_7` uses the origin's
//! `WeightedRandomSampler` — each epoch draws 3600 colours with replacement,
//! with probability proportional to their `bias`, cut into batches of 32, the
//! epoch's last batch 16 — and `ex_1_5`/`ex_1_6` the origin's dynamic sampler,
//! steered by the sheet's `data-*` columns one step late. The draws are a
//! ChaCha8 stream of the stage seed, not torch's.
//!
//! Regularizers: `regularizers` lists them (criterion, column, affinity); the
//! default is the form's notebook's (the seed's five for 1.7, 1.5/1.6's four).
//! Labels: an affinity names label columns of `data` (the primaries' labels
//! are computed); used as they are (the seed's soft probabilities), or with
//! `labels: per_draw` — the origin from commit 32a7dda ("ex 1.7: using
//! stochastic labels", its `collate_fn`) — a fresh Bernoulli draw, 1 with
//! probability `label_scale·p`, each time a colour enters a batch, from a
//! stream of the stage seed (so seeds of a sweep draw differently). `label
//! scheme: color_soft` with `stochastic: true` is the other choice: one draw
//! per colour for the whole run.
//!
//! Outputs: the model; a loss table (step, lr, total, recon and one column per
//! regularizer — NaN where the term was skipped: zero weight or zero
//! affinity); and latent snapshots: the evaluation grid's latents every
//! `snapshot_every` steps and at the last, one long table (step, r, g, b,
//! z0..z3).

use std::collections::BTreeMap;

use rand::Rng;

use super::curriculum::{self, Cube, DATA_COLUMNS, DynamicSampler, Focus};
use super::loss::{Batch, Criterion, Form, Regularizer, StepWeights, Terms, loss_and_grad};
use super::model::{LATENT, N_PARAMS, SHAPES, forward};
use crate::engine::frame::{ColumnData, Table};
use crate::engine::params::{Default, ParamType, Params, Value};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::numerics::nn::backprop::AdamW;
use crate::numerics::nn::{init_layers, io_device, linears, record_bytes};
use crate::numerics::rng::stream as rng;

/// `objective: color_ae` (see the module documentation).
pub struct ColorAe;

/// One `regularizers` item.
static REGULARIZER: ParamType = ParamType::Record {
    fields: &[
        ("column", ParamType::Str { choices: &[] }),
        ("criterion", ParamType::Str { choices: Criterion::NAMES }),
        ("affinity", ParamType::FloatMap { keys: super::data::LABELS, min: -100.0, max: 100.0 }),
    ],
};
static PHASE_NAME: ParamType = ParamType::Str { choices: &[] };

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct ColorAeParams {
        batch: usize = (ParamType::Int { min: 1, max: 100_000 }, Default::Int(32), "colours per batch (the seed and 1.6: 32; 1.5: 256)"),
        epoch: usize = (ParamType::Int { min: 1, max: 100_000_000 }, Default::Int(3600), "form ex_1_7: draws per sampler epoch (the origin: the data set's size, 3600)"),
        snapshot_every: usize = (ParamType::Int { min: 1, max: 1_000_000 }, Default::Int(50), "steps between latent snapshots of the evaluation grid (the notebook records every step and plots every 200)"),
        labels: String = (ParamType::Str { choices: &["soft", "per_draw"] }, Default::Str("soft"), "`soft`: the label columns as they are (the seed); `per_draw`: a fresh 0/1 draw, 1 with probability label_scale·p, each time a colour enters a batch (the origin from 32a7dda)"),
        label_scale: f64 = (ParamType::Float { min: 0.0, max: 1.0 }, Default::Float(0.5), "labels: per_draw: the probabilities' factor (the origin: 0.5)"),
        form: String = (ParamType::Str { choices: Form::NAMES }, Default::Str("ex_1_7"), "whose training loop: `ex_1_7` (the seed: per-sample regularization), `ex_1_5` (batch means, the dynamic sampler, loss-recon read), `ex_1_6` (per-sample losses × the sampler's batch weights)"),
        regularizers: Option<Vec<BTreeMap<String, Value>>> = (ParamType::List { item: &REGULARIZER, min_len: 0 }, Default::Optional, "each `{ column, criterion, affinity }`: the sheet column weighting it; polar, planar, norm, separate (the seed's), separate_cosine (the origin's later form), separate_inverse (1.5/1.6's), anchor; label strengths, `{}` for none [default: the form's notebook's]"),
        primary_phases: Option<Vec<String>> = (ParamType::List { item: &PHASE_NAME, min_len: 0 }, Default::Optional, "phases that train on the six primary and secondary colours [default: Primary & secondary]"),
    }
}
static INPUTS: &[InputDef] = &[
    InputDef {
        name: "data",
        media: Media::Table,
        required: true,
        doc: "labelled colours: h, r, g, b, vibrancy, bias and the label columns the affinities name",
    },
    InputDef { name: "timeline", media: Media::Table, required: true, doc: "generate dataset: dopesheet's timeline" },
    InputDef { name: "grid", media: Media::Table, required: true, doc: "the evaluation colours (r, g, b)" },
];
static OUTPUTS: &[OutputDef] = &[
    OutputDef { name: "model", media: Media::Model("color_mlp"), doc: "ColorMLP's weights (SFCOL001)" },
    OutputDef {
        name: "loss",
        media: Media::Table,
        doc: "step, lr, total, recon, then one column per regularizer (the seed's: reg-polar, reg-separate, reg-planar, reg-norm-v, reg-norm)",
    },
    OutputDef { name: "latents", media: Media::Table, doc: "step, r, g, b, z0, z1, z2, z3" },
];

pub const MAGIC: &[u8; 8] = b"SFCOL001";

/// The training setup the params describe.
struct Setup {
    form: Form,
    regs: Vec<Regularizer>,
    /// The label columns the affinities index.
    labels: Vec<String>,
    primary_phases: Vec<String>,
}

/// Read the params into a [`Setup`], or each broken rule.
fn setup(p: &ColorAeParams) -> Result<Setup, Vec<(&'static str, String)>> {
    let form = Form::parse(&p.form).expect("choices checked");
    let primary_phases = p.primary_phases.clone().unwrap_or_else(|| vec![curriculum::PRIMARY_PHASE.to_string()]);
    let mut errors = Vec::new();
    let (mut regs, mut labels): (Vec<Regularizer>, Vec<String>) = match (&p.regularizers, form) {
        (Some(_), _) => (Vec::new(), Vec::new()),
        (None, Form::Ex17) => (super::loss::seed_regularizers(), vec!["red".to_string(), "vibrant".to_string()]),
        (None, _) => (super::loss::curriculum_regularizers(), vec![]),
    };
    for (i, item) in p.regularizers.iter().flatten().enumerate() {
        let (Some(Value::Str(column)), Some(Value::Str(criterion)), Some(Value::Map(affinity))) =
            (item.get("column"), item.get("criterion"), item.get("affinity"))
        else {
            errors.push(("regularizers", format!("item {i}: expected column, criterion and affinity")));
            continue;
        };
        let criterion = Criterion::parse(criterion).expect("choices checked");
        // The loss table's own columns, the timeline's and the sampler's are no regularizer's.
        let reserved = ["lr", "loss-recon", "total", "recon"];
        if column.trim().is_empty()
            || reserved.contains(&column.as_str())
            || DATA_COLUMNS.contains(&column.as_str())
            || super::timeline::NOT_PROPERTIES.contains(&column.as_str())
        {
            errors.push(("regularizers", format!("item {i}: column `{column}` cannot weigh a regularizer")));
        }
        if regs.iter().any(|r: &Regularizer| &r.column == column) {
            errors.push(("regularizers", format!("item {i}: column `{column}` weights two regularizers")));
        }
        let mut aff = Vec::new();
        for (name, v) in affinity {
            let Value::Float(v) = v else { continue };
            if *v == 0.0 {
                continue;
            }
            let k = labels.iter().position(|l| l == name).unwrap_or_else(|| {
                labels.push(name.clone());
                labels.len() - 1
            });
            aff.push((k, *v as f32));
        }
        if criterion.is_scalar() && !aff.is_empty() {
            errors.push((
                "regularizers",
                format!(
                    "item {i}: criterion `{}` is one value per batch and takes no affinity",
                    Criterion::NAMES[criterion as usize]
                ),
            ));
        }
        regs.push(Regularizer { column: column.clone(), criterion, affinity: aff });
    }
    if p.batch > MAX_PAIRWISE_BATCH && regs.iter().any(|r| r.criterion.is_pairwise()) {
        errors.push((
            "batch",
            format!("a pairwise regularizer (separate…) costs batch² a step: at most {MAX_PAIRWISE_BATCH} colours"),
        ));
    }
    if errors.is_empty() { Ok(Setup { form, regs, labels, primary_phases }) } else { Err(errors) }
}

/// The largest batch a pairwise criterion may see (its B × B work per step).
const MAX_PAIRWISE_BATCH: usize = 4096;

impl Stage for ColorAe {
    describe!(Kind::Train, "color_ae", version 2, params ColorAeParams, INPUTS, OUTPUTS);
    fn input_columns(&self, input: &str) -> &'static [&'static str] {
        match input {
            "data" => &["r", "g", "b", "bias"],
            "timeline" => &["step", "phase"],
            "grid" => &["r", "g", "b"],
            _ => &[],
        }
    }
    fn output_columns(&self, output: &str) -> Option<&'static [&'static str]> {
        match output {
            "loss" => Some(&["step", "lr", "total", "recon"]),
            "latents" => Some(&["step", "r", "g", "b", "z0", "z1", "z2", "z3"]),
            _ => None,
        }
    }
    fn check_params(&self, params: &Params) -> Vec<(&'static str, String)> {
        setup(&ColorAeParams::read(params)).err().unwrap_or_default()
    }
    fn checkpoints(&self) -> bool {
        true
    }
    // Over 150 lines: the training loop — read the inputs, resume, then per
    // step: checkpoint, actions, batch (by phase and form), loss, Adam, record.
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        use crate::engine::checkpoint::{decode, encode};
        use crate::numerics::rng::Position;
        let p = ColorAeParams::read(ctx.params);
        let setup = setup(&p).map_err(|e| {
            StageError::Failed(e.iter().map(|(k, m)| format!("{k}: {m}")).collect::<Vec<_>>().join("; "))
        })?;
        let form = setup.form;
        let data = ctx.table("data")?;
        let xs: Vec<[f32; 3]> = {
            let (r, g, b) = (data.f64s("r")?, data.f64s("g")?, data.f64s("b")?);
            (0..r.len()).map(|i| [r[i] as f32, g[i] as f32, b[i] as f32]).collect()
        };
        let bias = data.f64s("bias")?;
        if xs.is_empty() || bias.iter().any(|w| !(w.is_finite() && *w >= 0.0)) || bias.iter().sum::<f64>() <= 0.0 {
            return Err(StageError::Failed("the data's bias must be finite, non-negative and not all 0".into()));
        }
        let label_cols: Vec<Vec<f64>> = setup
            .labels
            .iter()
            .map(|l| {
                data.f64s(l).map_err(|_| {
                    StageError::Failed(format!(
                        "a regularizer's affinity names label `{l}`, which the data lacks (label scheme: color_soft writes it when its `labels` list it)"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        let timeline = ctx.table("timeline")?;
        let sched = Schedule::read(timeline, &setup)?;
        // The curricula's sampler: the columns the sheet steers it by.
        let mut sampler = DynamicSampler::new(Cube {
            bias: bias.clone(),
            vibrancy: if sched.vibrancy.is_some() { data.f64s("vibrancy")? } else { Vec::new() },
            hue_focus: match sched.hues {
                Some(_) => data
                    .f64s("h")
                    .map_err(|_| StageError::Failed("data-hues needs the data's `h` column".into()))?
                    .iter()
                    .map(|h| curriculum::hue_focus(*h))
                    .collect(),
                None => Vec::new(),
            },
        });
        // The timeline has steps 0..=len; training runs 0..len.
        let steps = timeline.num_rows().saturating_sub(1).max(1);
        let grid = ctx.table("grid")?;
        let grid: Vec<[f32; 3]> = {
            let (r, g, b) = (grid.f64s("r")?, grid.f64s("g")?, grid.f64s("b")?);
            (0..r.len()).map(|i| [r[i] as f32, g[i] as f32, b[i] as f32]).collect()
        };
        let primaries = curriculum::primaries();
        let primary_labels: Vec<Vec<f64>> = setup
            .labels
            .iter()
            .map(|l| primaries.iter().map(|c| super::data::label_value(l, c.map(f64::from), 1.0)).collect())
            .collect();

        let layers = init_layers(&SHAPES, false, &mut rng(ctx.seed, "color_ae/weights"));
        let mut params: Vec<f32> = layers.iter().flat_map(|(w, b, _, _)| w.iter().chain(b).copied()).collect();
        debug_assert_eq!(params.len(), N_PARAMS);
        let mut opt = AdamW::new(N_PARAMS, 0.0);
        let mut grad = vec![0f32; N_PARAMS];
        // The epoch sampler: cumulative weights, one uniform draw per colour.
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
        let mut anchor: Option<Vec<[f32; LATENT]>> = None;
        let mut loss_rows: Vec<Vec<f64>> = Vec::with_capacity(steps);
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
            (params, opt, epoch, at_in_epoch, snaps, anchor, start) =
                (s.params, s.opt, s.epoch, s.at_in_epoch, s.snaps, s.anchor, at as usize);
            loss_rows = s.loss_bits.iter().map(|r| r.iter().map(|b| f64::from_bits(*b)).collect()).collect();
            s.draws.seek(&mut draws);
            s.label_draws.seek(&mut label_draws);
        }
        let (mut bx, mut blabels, mut bw) = (Vec::new(), vec![Vec::new(); setup.labels.len()], Vec::new());
        let mut reg_w = vec![0.0; setup.regs.len()];
        for s in start..steps {
            ctx.checkpoint.at_boundary(s as u64, steps as u64, || {
                encode(&ColorState {
                    params: params.clone(),
                    opt: opt.clone(),
                    draws: Position::of(&draws),
                    label_draws: Position::of(&label_draws),
                    epoch: epoch.clone(),
                    at_in_epoch,
                    anchor: anchor.clone(),
                    // As bits: the unused terms are NaN, kept exactly.
                    loss_bits: loss_rows.iter().map(|r| r.iter().map(|v| v.to_bits()).collect()).collect(),
                    snaps: snaps.clone(),
                })
            })?;
            // The batch (drawn before the step's events, as the origin).
            bx.clear();
            blabels.iter_mut().for_each(|l: &mut Vec<f32>| l.clear());
            let mut batch_weights = None;
            let mut label = |p: f64| per_draw.map_or(p as f32, |scale| draw_label(p, scale, &mut label_draws));
            if setup.primary_phases.contains(&sched.phase[s]) {
                for (i, c) in primaries.iter().enumerate() {
                    bx.push(*c);
                    for (k, col) in primary_labels.iter().enumerate() {
                        blabels[k].push(label(col[i]));
                    }
                }
            } else if form == Form::Ex17 {
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
                for &i in &epoch[at_in_epoch..end] {
                    bx.push(xs[i]);
                    for (k, col) in label_cols.iter().enumerate() {
                        blabels[k].push(label(col[i]));
                    }
                }
                at_in_epoch = end;
            } else {
                // The dynamic sampler with the weights set at the previous step.
                let (drawn, w) = sampler.draw(sched.sampler_focus(s), p.batch, &mut draws);
                for &i in &drawn {
                    bx.push(xs[i]);
                    for (k, col) in label_cols.iter().enumerate() {
                        blabels[k].push(label(col[i]));
                    }
                }
                if form == Form::Ex16 {
                    bw.clear();
                    bw.extend(curriculum::batch_weights(w, &drawn));
                    batch_weights = Some(&bw[..]);
                }
            }
            // The step's actions, then its loss.
            if sched.actions(s).any(|a| a == "anchor") {
                anchor = Some(primaries.iter().map(|c| forward(&params, *c).z).collect());
            }
            if s % p.snapshot_every == 0 {
                snapshot(&mut snaps, s, &params);
            }
            for (k, w) in reg_w.iter_mut().enumerate() {
                *w = sched.regs[k].as_ref().map_or(form.missing_weight(), |v| v[s]);
            }
            let sw = StepWeights {
                recon: sched.recon.as_ref().map(|v| v[s]),
                regs: &reg_w,
                anchor: anchor.as_deref().map(|a| (&primaries[..], a)),
            };
            let batch = Batch { x: &bx, labels: &blabels, weights: batch_weights };
            let t: Terms = loss_and_grad(&params, form, &setup.regs, &batch, &sw, &mut grad);
            if !t.total.is_finite() {
                return Err(StageError::Failed(format!("step {s}: the loss is {}; nothing was kept", t.total)));
            }
            if t.total > 0.0 {
                opt.step(&mut params, &grad, sched.lr[s]);
            }
            let mut row = vec![s as f64, sched.lr[s], t.total, t.recon];
            row.extend(t.regs.iter().map(|v| v.unwrap_or(f64::NAN)));
            loss_rows.push(row);
            if s % 100 == 99 {
                (ctx.progress)((s + 1) as f64 / steps as f64);
            }
        }
        snapshot(&mut snaps, steps, &params);
        let (snap_step, snap_rgb, snap_z) = snaps;
        if params.iter().any(|v| !v.is_finite()) {
            return Err(StageError::Failed("the weights are not finite after training".into()));
        }

        let columns: Vec<&str> = setup.regs.iter().map(|r| r.column.as_str()).collect();
        let loss = loss_table(&loss_rows, &columns);
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

/// The dopesheet's timeline as the objective reads it.
struct Schedule {
    lr: Vec<f64>,
    /// The reconstruction's weight per step (`None`: 1.7, unweighted).
    recon: Option<Vec<f64>>,
    /// Each regularizer's weight per step, where the sheet has its column.
    regs: Vec<Option<Vec<f64>>>,
    phase: Vec<String>,
    action: Vec<String>,
    vibrancy: Option<Vec<f64>>,
    hues: Option<Vec<f64>>,
}

impl Schedule {
    /// Read the timeline for `setup`; a column it does not read is an error.
    fn read(timeline: &Table, setup: &Setup) -> Result<Schedule, StageError> {
        let fail = |m: String| StageError::Failed(m);
        let names: Vec<&str> = timeline.columns.iter().map(|c| c.name.as_str()).collect();
        let mut known: Vec<&str> = vec!["lr", "loss-recon"];
        known.extend(setup.regs.iter().map(|r| r.column.as_str()));
        if setup.form != Form::Ex17 {
            known.extend(DATA_COLUMNS);
        }
        let unknown: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !super::timeline::NOT_PROPERTIES.contains(n) && !known.contains(n))
            .collect();
        if !unknown.is_empty() {
            let data = unknown.iter().filter(|n| DATA_COLUMNS.contains(n)).count();
            return Err(fail(format!(
                "the dopesheet has {} {}, which objective: color_ae does not read{} (it reads {})",
                if unknown.len() == 1 { "column" } else { "columns" },
                unknown.join(", "),
                if data > 0 {
                    " with form ex_1_7 (the data-* columns steer form ex_1_5's and ex_1_6's sampler)"
                } else {
                    ""
                },
                known.join(", ")
            )));
        }
        let lr = timeline.f64s("lr").map_err(|_| fail("the dopesheet must have an `lr` column".into()))?;
        let col = |name: &str| timeline.f64s(name).ok();
        let recon = match setup.form {
            Form::Ex17 => None,
            _ => Some(col("loss-recon").ok_or_else(|| {
                fail("form ex_1_5 and ex_1_6 weight the reconstruction by the sheet's `loss-recon` column, which this sheet lacks".into())
            })?),
        };
        if col("data-fraction").is_some() && col("data-vibrancies").is_some() {
            return Err(fail(
                "the sheet has both data-fraction and data-vibrancies, which steer the same weights".into(),
            ));
        }
        let action = timeline.strs("action").map(|a| a.to_vec()).unwrap_or_default();
        let unknown: Vec<String> = action
            .iter()
            .enumerate()
            .flat_map(|(s, a)| {
                a.split(',').map(str::trim).filter(|a| !a.is_empty() && *a != "anchor").map(move |a| (s, a))
            })
            .map(|(s, a)| format!("`{a}` at step {s}"))
            .collect();
        if !unknown.is_empty() {
            return Err(fail(format!(
                "the dopesheet has {}, which objective: color_ae does not know (its action: anchor)",
                if unknown.len() == 1 {
                    format!("action {}", unknown[0])
                } else {
                    format!("actions {}", unknown.join(", "))
                }
            )));
        }
        Ok(Schedule {
            lr,
            recon,
            regs: setup.regs.iter().map(|r| col(&r.column)).collect(),
            phase: timeline.strs("phase")?.to_vec(),
            action,
            vibrancy: col("data-fraction").or_else(|| col("data-vibrancies")),
            hues: col("data-hues"),
        })
    }
    /// The sampler's focus for the batch of step `s`: the sheet's values at
    /// `s − 1` (the origin's pre-step handler runs after the batch is drawn),
    /// none at step 0.
    fn sampler_focus(&self, s: usize) -> Focus {
        if s == 0 {
            return Focus { vibrancy: None, hues: None };
        }
        Focus { vibrancy: self.vibrancy.as_ref().map(|v| v[s - 1]), hues: self.hues.as_ref().map(|v| v[s - 1]) }
    }
    /// The actions at step `s` (a cell may list several, comma-separated).
    fn actions(&self, s: usize) -> impl Iterator<Item = &str> {
        self.action.get(s).into_iter().flat_map(|a| a.split(',')).map(str::trim).filter(|a| !a.is_empty())
    }
}

/// The `loss` table: one row per step.
fn loss_table(loss_rows: &[Vec<f64>], regs: &[&str]) -> Table {
    let mut loss = Table::new().with("step", ColumnData::I64(loss_rows.iter().map(|r| r[0] as i64).collect()));
    let names = ["lr", "total", "recon"].into_iter().chain(regs.iter().copied());
    for (k, name) in names.enumerate() {
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
    label_draws: crate::numerics::rng::Position,
    epoch: Vec<usize>,
    at_in_epoch: usize,
    /// The primaries' latents at the last `anchor` action.
    anchor: Option<Vec<[f32; LATENT]>>,
    loss_bits: Vec<Vec<u64>>,
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
#[path = "train_tests.rs"]
mod tests;
