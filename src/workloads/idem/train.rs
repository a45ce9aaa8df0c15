//! `train` / `objective: idem`: Iterated Denoising Energy Matching as DEM's
//! `DEMLitModule` trains it (seed 001; `jarridrb/DEM`, `dem/models/dem_module.py`
//! with `configs/model/dem.yaml` and `configs/experiment/gmm_idem.yaml`).
//!
//! In DEM's normalised coordinates (the energy's ÷ `normalization`, 50 for
//! GMM-40):
//!
//! 1. **Initial buffer** (DEM's `setup`): `n_init` = 1024 particles through the
//!    reverse SDE driven by the Monte Carlo score estimator itself (the
//!    `mc_score` sampler, `k` samples, clipped), or, with `init_from_prior`,
//!    draws of the prior `N(0, h(1) I)`.
//! 2. **Outer loop** (DEM's epochs), each of `inner` steps (DEM's 100 dummy
//!    batches): `batch` points `x₀` drawn uniformly **with replacement** from the
//!    buffer (pDEM, `use_buffer: false`: fresh prior draws), `t ~ U[0, 1)`,
//!    `x_t = x₀ + √h(t)·z`; the target is the clipped estimate `S_K(x_t, t)`; the
//!    loss `mean_i λ(t_i)·mean_d (s_θ(x_t, t)_d − S_K,d)²` with DEM's
//!    `BasicLambdaWeighter` `λ(t) = h(t) + ε` (ε = 10⁻³); gradients clipped to
//!    global norm 0.5 (Lightning's `gradient_clip_val`); Adam (lr 5·10⁻⁴, no
//!    decay, no scheduler for GMM).
//! 3. **End of each outer step** (DEM's `on_train_epoch_end`): 1000 particles
//!    through the network's reverse SDE (1000 Euler–Maruyama steps, unclipped
//!    score as DEM's GMM config) are added to the FIFO buffer (10 000).
//!
//! With `ema` (DEM's `use_ema`, off for GMM-40) the saved model is the moving
//! average of the weights (DEM's `EMAWrapper`: decay `min(ema, (1 + n)/(10 + n))`
//! at the `n`-th update, from the initial weights), while the buffer is filled
//! by the current weights, as in DEM, where Lightning generates it in training
//! mode.
//!
//! The tracker evaluates each `track_every`-th outer step's new particles
//! against the bound reference set with `checks: boltzmann`'s metrics (DEM logs
//! energy-W2 every epoch and the rest every 10).
//!
//! The energy is GMM-40 without FAB's −∞ floor ([`Gmm::unmasked`]), as for
//! `mc_score`: where DEM's estimate is NaN this one is defined. Streams: the
//! weights, the batch draws (indices, `t`, noise), each training point's Monte
//! Carlo draws and each generated particle have their own ChaCha8 streams of
//! the stage seed, so the result does not depend on the thread count.

use rand::Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

use super::estimator::{Estimator, Scratch};
pub use super::fitting::IdemParams;
use super::fitting::{Buffer, Fitted, FittedModel, Selection, Stepper, Tracked, tracked, tracker_table, val_table};
use super::generate::{Target, particle_columns};
use super::integrate::{mc_score_particles, ve_sde_particles};
use super::mlp::{DemMlpRun, flatten, unflatten};
use super::net::{DemMlpConfig, DemModel};
use super::particles_train::fit_particles;
use super::validate::{BoltzmannChecksParams, metrics};
use crate::engine::checkpoint::{Checkpointing, decode, encode};
use crate::engine::frame::{ColumnData, Table};
use crate::numerics::energy::gmm::Gmm;
use crate::numerics::energy::{Energy, Scaled};
use crate::numerics::rng::Position;

use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};

use crate::numerics::rng::stream as rng;
use crate::numerics::sde::ve::Geometric;

/// `objective: idem` (see the module documentation).
pub struct Idem;

static INPUTS: &[InputDef] = &[
    InputDef {
        name: "target",
        media: Media::Table,
        required: true,
        doc: "exact reference samples (x, y): the tracker's yardstick (never read by training)",
    },
    InputDef {
        name: "val",
        media: Media::Table,
        required: false,
        doc: "DEM's validation set (e.g. DEM's val split, never the test reference): `select: best_val_w2` keeps the weights whose particles are closest to it in x-W2; on particle systems its iDEM loss also steps the learning-rate plateau",
    },
];
static OUTPUTS: &[OutputDef] = &[
    OutputDef {
        name: "model",
        media: Media::Model("idem"),
        doc: "the trained network: DEM's MLP (SFDEM001, GMM-40) or EGNN (SFEGN001, particles)",
    },
    OutputDef { name: "loss", media: Media::Table, doc: "step, outer, loss, grad_norm (before clipping), lr" },
    OutputDef {
        name: "buffer",
        media: Media::Table,
        doc: "outer, then x, y (GMM-40) or p{i}_x, … (particles): the particles added to the buffer (outer 0: the initial buffer; k: after outer step k)",
    },
    OutputDef {
        name: "tracker",
        media: Media::Table,
        doc: "outer, step, then checks: boltzmann's metrics of that outer step's particles against `target`",
    },
    OutputDef {
        name: "val",
        media: Media::Table,
        doc: "step, val_loss, lr: each validation's loss on `val` and the rate the plateau schedule set after it (no rows without validations)",
    },
    OutputDef {
        name: "selection",
        media: Media::Table,
        doc: "outer, step, val_x_w2, selected: every x-W2 validation against `val` and the one whose weights the model holds (none under select: last)",
    },
];

impl Stage for Idem {
    describe!(Kind::Train, "idem", version 6, params IdemParams, INPUTS, OUTPUTS);
    fn needs_inputs(&self, p: &crate::engine::params::Params) -> Vec<(&'static str, String)> {
        match IdemParams::read(p).select == "best_val_w2" {
            true => vec![(
                "val",
                "`select: best_val_w2` (DEM's rule, the default) keeps the weights validated best against it; bind DEM's validation set, or set `select: last`".into(),
            )],
            false => Vec::new(),
        }
    }
    fn checkpoints(&self) -> bool {
        true
    }
    /// The largest of: the network (DEM's MLP for GMM-40, an EGNN of `hidden`
    /// × `layers` for a particle system, with its per-chunk edge activations),
    /// the replay buffer, and the Monte Carlo estimate of one batch (`k` noisy
    /// copies of each point, their energies and forces).
    fn memory_bytes(&self, p: &crate::engine::params::Params) -> Option<(&'static str, u64)> {
        let p = IdemParams::read(p);
        let (dim, n) = match p.energy.as_str() {
            "dw4" => (8u128, 4u128),
            "lj13" => (39, 13),
            "lj55" => (165, 55),
            _ => (2, 1),
        };
        let (batch, k, h) = (p.batch as u128, p.k as u128, p.hidden as u128);
        let layers = match (p.layers, p.energy.as_str()) {
            (0, "dw4") => 3,
            (0, _) => 5,
            (l, _) => l as u128,
        };
        let network = if p.energy == "gmm40" {
            let shapes = crate::numerics::nn::dense_shapes(2 + 128, 256, 3, 2);
            let (w, a) = crate::numerics::nn::dense_train_memory(&shapes, p.batch);
            w as u128 + a as u128
        } else {
            // Weights, gradients and moments of ~6 h² a layer; per chunk of up
            // to 256 points, every edge's h features kept for the backward pass.
            layers * 6 * h * h * 4 * 5 + batch.min(256) * n * n * h * layers * 4 * 3
        };
        let buffer = (p.buffer_size as u128) * dim * 4 * 2;
        let estimate = batch * k * dim * 4 * 3;
        let clamp = |v: u128| u64::try_from(v.saturating_add(64 << 20)).unwrap_or(u64::MAX);
        let (name, most) = [("hidden", network), ("buffer_size", buffer), ("k", estimate)]
            .into_iter()
            .max_by_key(|(_, v)| *v)
            .expect("three");
        Some((name, clamp(most.max(network + buffer + estimate))))
    }
    fn output_columns(&self, output: &str) -> Option<&'static [&'static str]> {
        match output {
            "loss" => Some(&["step", "outer", "loss", "grad_norm", "lr"]),
            "val" => Some(&["step", "val_loss", "lr"]),
            "selection" => Some(&["outer", "step", "val_x_w2", "selected"]),
            _ => None,
        }
    }
    fn check_params(&self, p: &crate::engine::params::Params) -> Vec<(&'static str, String)> {
        let p = IdemParams::read(p);
        let mut errors = super::integrate::schedule_errors(&p.energy, p.sigma_min, p.sigma_max, p.normalization);
        if p.use_buffer && p.n_init + p.samples_per_outer == 0 {
            errors.push(("n_init", "the buffer would stay empty".to_string()));
        }
        if p.energy == "gmm40" && p.negative_time_steps > 0 {
            errors.push((
                "negative_time_steps",
                "`negative_time_steps` is for the particle systems (DEM's negative-time tail, used on lj55 only)"
                    .to_string(),
            ));
        }
        errors
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let p = IdemParams::read(ctx.params);
        let f = match Target::by_name(&p.energy) {
            Some(Target::Gmm(gmm)) => {
                let gmm = gmm.unmasked();
                let energy = Scaled { energy: &gmm, scale: p.normalization };
                let xy = ["x".to_string(), "y".to_string()];
                let target = ctx.table("target")?.rows_f64(&xy)?;
                let val = match ctx.inputs.contains_key("val") {
                    true => Some(ctx.table("val")?.rows_f64(&xy)?),
                    false => None,
                };
                fit(&p, &energy, (&target, val.as_deref()), ctx.seed, ctx.progress, ctx.checkpoint)?
            }
            Some(Target::Particles(sys)) => {
                let cols = particle_columns(sys.n, sys.d);
                let target = ctx.table("target")?.rows_f64(&cols)?;
                let val = match ctx.inputs.contains_key("val") {
                    true => Some(ctx.table("val")?.rows_f64(&cols)?),
                    false => None,
                };
                fit_particles(&p, &sys, &target, val.as_deref(), ctx.seed, ctx.progress, ctx.checkpoint)?
            }
            None => return Err(StageError::Failed(format!("unknown energy `{}`", p.energy))),
        };
        Ok([
            ("model".to_string(), Artifact::Blob(f.model.to_bytes())),
            ("loss".to_string(), Artifact::Table(f.loss)),
            ("buffer".to_string(), Artifact::Table(f.buffer)),
            ("tracker".to_string(), Artifact::Table(f.tracker)),
            ("val".to_string(), Artifact::Table(f.val)),
            ("selection".to_string(), Artifact::Table(f.selection)),
        ]
        .into_iter()
        .collect())
    }
}

/// The initial buffer on GMM-40: `n_init` prior draws, or (DEM's default)
/// the Monte Carlo score's reverse-SDE particles, in the network's coordinates.
fn initial_buffer(
    p: &IdemParams,
    energy: &dyn Energy,
    est: &Estimator,
    schedule: &Geometric,
    seed: u64,
    progress: &(dyn Fn(f64) + Sync),
) -> Result<Vec<[f32; 2]>, StageError> {
    if p.init_from_prior {
        let prior_sd = schedule.h(1.0).sqrt();
        let mut r = rng(seed, "idem/prior_init");
        return Ok((0..p.n_init)
            .map(|_| {
                let mut q = [0f32; 2];
                q.iter_mut().for_each(|v| *v = (prior_sd * r.sample::<f64, _>(StandardNormal)) as f32);
                q
            })
            .collect());
    }
    let pts =
        mc_score_particles(energy, est, schedule, p.steps, p.diffusion_scale, p.n_init, seed, "idem/init", progress)
            .map_err(|e| StageError::Failed(format!("the initial buffer (mc_score): {e}")))?;
    Ok(pts.chunks_exact(2).map(|q| [q[0] as f32, q[1] as f32]).collect())
}

/// Everything `fit` needs to continue from a training step's start.
#[derive(serde::Serialize, serde::Deserialize)]
struct GmmState {
    params: Vec<f32>,
    stepper: Stepper,
    buffer: Buffer,
    snaps: (Vec<i64>, Vec<f64>, Vec<f64>),
    batch_rng: crate::numerics::rng::Position,
    track: Vec<Tracked>,
    selection: Selection,
}

/// The training loop of `objective: idem` on GMM-40 (`energy` in the
/// network's coordinates: the energy's own ÷ `p.normalization`), tracked
/// against `target` and validated against `val` (GMM-40's coordinates,
/// `n × 2`). Errors name the outer and training step.
pub fn fit(
    p: &IdemParams,
    energy: &dyn Energy,
    (target, val): (&[f64], Option<&[f64]>),
    seed: u64,
    progress: &(dyn Fn(f64) + Sync),
    ck: &Checkpointing,
) -> Result<Fitted, StageError> {
    let gmm_exact = Gmm::dem40();
    let est = Estimator::from_params(&p.estimator, p.k, p.max_norm);
    let schedule = Geometric { sigma_min: p.sigma_min, sigma_max: p.sigma_max };
    let checks = BoltzmannChecksParams::read(&BoltzmannChecksParams::example());

    let cfg = DemMlpConfig::GMM;
    let mut params = flatten(&cfg.init(&mut rng(seed, "idem/weights")));
    let mut run = DemMlpRun::new(&cfg);
    let mut grad = vec![0f32; params.len()];
    let mut stepper = Stepper::new(p, &params);
    let prior_sd = schedule.h(1.0).sqrt();
    // Work units for progress: the initial buffer counts as one outer step.
    let units = (p.outer + 1) as f64;

    let mut buffer = Buffer::new(2, p.buffer_size);
    let mut snaps: (Vec<i64>, Vec<f64>, Vec<f64>) = std::default::Default::default();
    let snapshot = |snaps: &mut (Vec<i64>, Vec<f64>, Vec<f64>), outer: usize, pts: &[[f32; 2]]| {
        for q in pts {
            snaps.0.push(outer as i64);
            snaps.1.push(q[0] as f64 * p.normalization);
            snaps.2.push(q[1] as f64 * p.normalization);
        }
    };
    let mut batch_rng = rng(seed, "idem/batch");
    let mut track: Vec<Tracked> = Vec::new();
    let mut selection = Selection::default();
    let resumed = ck.resume_with(decode::<GmmState>);
    // The state is saved at training-step boundaries: `start` is the step
    // to continue from (its outer step's earlier steps are done).
    let start = resumed.as_ref().map_or(0, |(step, _)| *step as usize);
    if let Some((_, s)) = resumed {
        (params, stepper, buffer, snaps, track, selection) =
            (s.params, s.stepper, s.buffer, s.snaps, s.track, s.selection);
        s.batch_rng.seek(&mut batch_rng);
    } else if p.use_buffer {
        let init = initial_buffer(p, energy, &est, &schedule, seed, &|f| progress(f / units))?;
        buffer.add(init.as_flattened());
        snapshot(&mut snaps, 0, &init);
    }

    let (b, dim) = (p.batch, 2);
    let (mut xt, mut tt, mut wt) = (vec![0f32; b * dim], vec![0f32; b], vec![0f32; b]);
    let mut hs = vec![0f64; b];
    let mut target_s = vec![0f32; b * dim];
    let total = (p.outer * p.inner) as u64;
    for outer in start / p.inner..p.outer {
        let first = if outer == start / p.inner { start % p.inner } else { 0 };
        for inner in first..p.inner {
            let step = outer * p.inner + inner;
            ck.at_boundary(step as u64, total, || {
                encode(&GmmState {
                    params: params.clone(),
                    stepper: stepper.clone(),
                    buffer: buffer.clone(),
                    snaps: snaps.clone(),
                    batch_rng: Position::of(&batch_rng),
                    track: track.clone(),
                    selection: selection.clone(),
                })
            })?;
            for i in 0..b {
                let x0 = if p.use_buffer {
                    let q = buffer.draw(&mut batch_rng);
                    [q[0], q[1]]
                } else {
                    let mut q = [0f32; 2];
                    q.iter_mut().for_each(|v| *v = (prior_sd * batch_rng.sample::<f64, _>(StandardNormal)) as f32);
                    q
                };
                let t: f32 = batch_rng.random();
                let h = schedule.h(t as f64);
                for d in 0..dim {
                    let z: f64 = batch_rng.sample(StandardNormal);
                    xt[i * dim + d] = (x0[d] as f64 + h.sqrt() * z) as f32;
                }
                tt[i] = t;
                hs[i] = h;
                wt[i] = p.loss_weight(h);
            }
            target_s.par_chunks_mut(dim).enumerate().try_for_each(|(i, out)| {
                let mut r = crate::numerics::rng::particle(seed, "idem/estimate", step * b + i);
                let x = [xt[i * dim] as f64, xt[i * dim + 1] as f64];
                let mut s = [0f64; 2];
                est.estimate(energy, &x, hs[i], &mut r, &mut Scratch::default(), &mut s)
                    .map_err(|e| StageError::Failed(format!("training step {step} (outer {outer}): point {i}: {e}")))?;
                out[0] = s[0] as f32;
                out[1] = s[1] as f32;
                Ok::<(), StageError>(())
            })?;
            let loss = run.loss_and_grad(&params, &xt, &tt, &target_s, &wt, &mut grad);
            stepper.step(p, &mut params, &mut grad, loss, p.lr, (step, outer))?;
            if inner % 10 == 9 {
                progress((outer as f64 + 1.0 + 0.5 * (inner + 1) as f64 / p.inner as f64) / units);
            }
        }
        let new = ve_sde_particles(
            &mut run,
            &params,
            &schedule,
            p.steps,
            p.diffusion_scale,
            p.samples_per_outer,
            seed,
            &format!("idem/sde/{outer}"),
        )
        .map_err(|e| StageError::Failed(format!("outer step {outer}, the network's reverse SDE: {e}")))?;
        buffer.add(new.as_flattened());
        let last = outer + 1 == p.outer;
        if (outer + 1) % p.snapshot_every == 0 || last {
            snapshot(&mut snaps, outer + 1, &new);
        }
        let pts: Vec<f64> = new.iter().flat_map(|q| q.map(|v| v as f64 * p.normalization)).collect();
        if (outer + 1) % p.track_every == 0 || last {
            let m = metrics(&gmm_exact, &pts, target, &checks).map_err(StageError::Failed)?;
            track.push(tracked(outer + 1, (outer + 1) * p.inner, m));
        }
        selection.validate(p, outer, &pts, val, 2, seed, || stepper.kept(&params))?;
        progress((outer as f64 + 2.0) / units);
    }
    let ((kept, selection), loss) = stepper.finish(params, selection);
    let model = DemModel {
        config: cfg,
        sigma_min: p.sigma_min,
        sigma_max: p.sigma_max,
        normalization: p.normalization,
        energy: p.energy.clone(),
        layers: unflatten(&cfg, &kept),
    };
    let buffer_t = Table::new()
        .with("outer", ColumnData::I64(snaps.0))
        .with("x", ColumnData::F64(snaps.1))
        .with("y", ColumnData::F64(snaps.2));
    let tracker = tracker_table(&track);
    Ok(Fitted {
        model: FittedModel::Mlp(model),
        loss,
        buffer: buffer_t,
        tracker,
        val: val_table(Vec::new()),
        selection,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2-D energy that is well behaved except inside `x₀ > edge`, where
    /// its gradient is NaN (a bug in a user's energy, say).
    struct NanBeyond {
        edge: f64,
    }
    impl Energy for NanBeyond {
        fn dim(&self) -> usize {
            2
        }
        fn log_prob(&self, x: &[f64]) -> f64 {
            -0.5 * (x[0] * x[0] + x[1] * x[1])
        }
        fn grad_log_prob(&self, x: &[f64], g: &mut [f64]) -> f64 {
            g[0] = if x[0] > self.edge { f64::NAN } else { -x[0] };
            g[1] = -x[1];
            self.log_prob(x)
        }
    }

    fn tiny(extra: &[(&str, crate::engine::params::Value)]) -> IdemParams {
        use crate::engine::params::Value;
        let mut m = IdemParams::example();
        for (k, v) in [
            ("outer", Value::Int(2)),
            ("inner", Value::Int(3)),
            ("batch", Value::Int(16)),
            ("k", Value::Int(4)),
            ("n_init", Value::Int(16)),
            ("samples_per_outer", Value::Int(16)),
            ("steps", Value::Int(10)),
        ]
        .into_iter()
        .chain(extra.iter().cloned())
        {
            m.insert(k.to_string(), v);
        }
        IdemParams::read(&m)
    }

    /// NaN from the energy is an error naming where it arose — the initial
    /// buffer's particle and SDE step, or the training step — never a NaN
    /// target, loss or sample.
    #[test]
    fn nan_in_the_estimator_is_an_error_naming_the_step() {
        use crate::engine::params::Value;
        let target = vec![0.0; 20];
        // Everywhere: the initial buffer (mc_score particles) fails first.
        let everywhere = NanBeyond { edge: f64::NEG_INFINITY };
        let e = fit(&tiny(&[]), &everywhere, (&target, None), 1, &|_| {}, &Checkpointing::none())
            .err()
            .expect("an error")
            .to_string();
        assert!(e.contains("initial buffer") && e.contains("step 0 of 10") && e.contains("not finite"), "{e}");
        // From the prior instead: the first training step fails.
        let e = fit(
            &tiny(&[("init_from_prior", Value::Bool(true))]),
            &everywhere,
            (&target, None),
            1,
            &|_| {},
            &Checkpointing::none(),
        )
        .err()
        .expect("an error")
        .to_string();
        assert!(e.contains("training step 0 (outer 0)") && e.contains("not finite"), "{e}");
        // A healthy energy trains.
        let fine = NanBeyond { edge: f64::INFINITY };
        let f = fit(&tiny(&[]), &fine, (&target, None), 1, &|_| {}, &Checkpointing::none()).expect("trains");
        assert_eq!(f.loss.f64s("loss").unwrap().len(), 6);
        assert!(f.loss.f64s("loss").unwrap().iter().all(|v| v.is_finite()));
    }

    /// `lr_decay: cosine` (GMM-40's loop): step i of n trains at
    /// lr·½(1 + cos(πi/n)), recorded in the loss table; `none` keeps `lr`.
    #[test]
    fn the_cosine_decay_sets_each_steps_rate() {
        use crate::engine::params::Value;
        let fine = NanBeyond { edge: f64::INFINITY };
        let target = vec![0.0; 20];
        let cos = tiny(&[("lr_decay", Value::Str("cosine".into())), ("lr", Value::Float(0.01))]);
        let f = fit(&cos, &fine, (&target, None), 1, &|_| {}, &Checkpointing::none()).expect("trains");
        let lrs = f.loss.f64s("lr").unwrap();
        assert_eq!(lrs.len(), 6);
        for (i, lr) in lrs.iter().enumerate() {
            let want = 0.01 * 0.5 * (1.0 + (std::f64::consts::PI * i as f64 / 6.0).cos());
            assert!((lr - want).abs() < 1e-15, "step {i}: {lr} vs {want}");
        }
        assert_eq!(lrs[0], 0.01);
        assert!(lrs[5] < 0.001);
        let plain =
            fit(&tiny(&[("lr", Value::Float(0.01))]), &fine, (&target, None), 1, &|_| {}, &Checkpointing::none())
                .expect("trains");
        assert!(plain.loss.f64s("lr").unwrap().iter().all(|v| *v == 0.01));
        assert_ne!(plain.model.to_bytes(), f.model.to_bytes(), "the decay changes training");
    }

    /// FIFO: the oldest particles leave first once the buffer is full.
    #[test]
    fn the_buffer_is_a_fifo_of_fixed_length() {
        let mut b = Buffer::new(2, 3);
        b.add(&[1.0, 0.0, 2.0, 0.0]);
        assert_eq!(b.x.len(), 4);
        b.add(&[3.0, 0.0, 4.0, 0.0]);
        assert_eq!(b.x, vec![4.0, 0.0, 2.0, 0.0, 3.0, 0.0]);
        b.add(&[5.0, 0.0]);
        assert_eq!(b.x, vec![4.0, 0.0, 5.0, 0.0, 3.0, 0.0]);
        // Draws come from what it holds.
        let mut r = rng(1, "t");
        for _ in 0..50 {
            assert!([3.0, 4.0, 5.0].contains(&b.draw(&mut r)[0]));
        }
    }

    /// `select: best_val_w2` writes the weights of the validation it
    /// records as selected: a run stopped at that outer step under
    /// `select: last` ends with the same model bytes (the validations draw
    /// from their own streams, so training is the same either way).
    #[test]
    fn best_val_w2_writes_the_selected_steps_weights() {
        use crate::engine::params::Value;
        use rand::SeedableRng;
        let gmm = Gmm::dem40().unmasked();
        let energy = Scaled { energy: &gmm, scale: 50.0 };
        let target = gmm.sample(64, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        let val = gmm.sample(64, &mut rand_chacha::ChaCha8Rng::seed_from_u64(2));
        let base = [
            ("outer", Value::Int(5)),
            ("init_from_prior", Value::Bool(true)),
            ("val_every", Value::Int(1)),
            ("val_batch", Value::Int(16)),
            ("lr", Value::Float(0.02)),
        ];
        let mut checked = 0;
        for seed in 1..=12u64 {
            let f = fit(&tiny(&base), &energy, (&target, Some(&val)), seed, &|_| {}, &Checkpointing::none()).unwrap();
            let sel = &f.selection;
            assert_eq!(sel.i64s("outer").unwrap(), &[1, 2, 3, 4, 5]);
            let w2 = sel.f64s("val_x_w2").unwrap();
            let chosen: Vec<usize> =
                (0..5).filter(|&i| matches!(sel.column("selected").unwrap(), ColumnData::Bool(b) if b[i])).collect();
            assert_eq!(chosen.len(), 1, "one selected row");
            let k = chosen[0];
            let first_min = (0..5).find(|&i| w2[i] == w2.iter().copied().fold(f64::INFINITY, f64::min)).unwrap();
            assert_eq!(k, first_min, "the first lowest x-W2 wins: {w2:?}");
            let mut upto: Vec<(&str, Value)> = base.to_vec();
            upto[0] = ("outer", Value::Int(k as i64 + 1));
            upto.push(("select", Value::Str("last".into())));
            let short =
                fit(&tiny(&upto), &energy, (&target, Some(&val)), seed, &|_| {}, &Checkpointing::none()).unwrap();
            assert_eq!(short.model.to_bytes(), f.model.to_bytes(), "seed {seed}: outer {} selected", k + 1);
            if k < 4 {
                checked += 1;
                // and the final weights differ from the selected ones
                let last = fit(
                    &tiny(&[base.to_vec(), vec![("select", Value::Str("last".into()))]].concat()),
                    &energy,
                    (&target, Some(&val)),
                    seed,
                    &|_| {},
                    &Checkpointing::none(),
                )
                .unwrap();
                assert_ne!(last.model.to_bytes(), f.model.to_bytes());
            }
        }
        assert!(checked > 0, "some seed selects an earlier step than the last");
    }
}
