//! `train` / `objective: idem` on the particle systems (DW-4, LJ-13, LJ-55):
//! DEM's loop (see [`super::train`]) with its molecule settings
//! (`configs/experiment/{dw4,lj13,lj55}_idem.yaml`):
//!
//! * the network is DEM's EGNN ([`super::egnn`]), its loss and gradients
//!   computed by hand ([`super::egnn_backprop`], tested against burn's
//!   autodiff of the module), Adam (`lr`; DEM: 10⁻³) with the gradient's
//!   global norm clipped (Lightning's `gradient_clip_val` 0.5);
//! * everything stays in the mean-free subspace: the prior is DEM's
//!   `MeanFreePrior` with scale `√h(1)`, noised training points have their
//!   centre of mass removed (`remove_mean` in `training_step`), and so has
//!   every reverse-SDE step (`integrate_sde`);
//! * the Monte Carlo target is clipped per particle (norm 20), and the loss
//!   weight is DEM's `NoLambdaWeighter` (`lambda: none`, λ = 1);
//! * no coordinate normalisation (`data_normalization_factor` 1);
//! * `ema` (DEM's `use_ema`, off in its particle configs) saves the moving
//!   average of the weights as the model, as on GMM-40, while the buffer is
//!   filled by the current weights;
//! * LJ-55's `negative_time` tail (`negative_time_steps: 10`) follows every
//!   reverse SDE, the buffer's and the final samples' ([`NegativeTime`]).
//!
//! * DEM's `ReduceLROnPlateau` (`mode: min`, factor 0.1, patience 10) on the
//!   validation loss, stepped every `plateau_every` training steps (DEM: every
//!   10 epochs of 100 steps, LJ-55 every 5): the loss of `val_batch` points of
//!   the `val` input (DEM's validation set — a second MCMC set here, never the
//!   reference the metrics use), noised at uniform times and scored against
//!   fresh Monte Carlo targets, as DEM's `eval_step`. Without a `val` input the
//!   rate stays at `lr`.
//! * `lr_decay: cosine` (not DEM's) multiplies that rate by a half cosine
//!   over the run's steps ([`IdemParams::decayed`]).

use rand::Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

use super::egnn::{EgnnConfig, EgnnModel, EgnnRun};
use super::egnn_backprop::{EgnnBackprop, unflatten};
use super::estimator::{Estimator, Scratch};
use super::fitting::{
    Buffer, Fitted, FittedModel, IdemParams, Selection, Stepper, Tracked, tracked, tracker_table, val_table,
};
use super::generate::particle_columns;
use super::integrate::{NegativeTime, egnn_sde_particles, mc_score_particles, prior_draw};
use super::mlp::flatten;
use super::validate::{BoltzmannChecksParams, particle_metrics};
use crate::engine::checkpoint::{Checkpointing, decode, encode};
use crate::numerics::rng::Position;

use crate::engine::frame::{ColumnData, Table};
use crate::engine::stage::StageError;
use crate::numerics::energy::particles::{Particles, remove_mean};
use crate::numerics::nn::backprop::Plateau;
use crate::numerics::rng::stream as rng;
use crate::numerics::sde::ve::Geometric;

/// The EGNN's sizes for `p` on `sys`: `hidden`, and `layers` (0: DEM's — 3
/// for DW-4, 5 for the Lennard-Jones clusters).
pub fn egnn_config(p: &IdemParams, sys: &Particles) -> EgnnConfig {
    let dem_layers = if sys.n == 4 { 3 } else { 5 };
    EgnnConfig { n: sys.n, d: sys.d, hidden: p.hidden, layers: if p.layers == 0 { dem_layers } else { p.layers } }
}

/// DEM's noising of a training or validation point: `t ~ U(0, 1)`, then
/// `x_t = x₀ + √h(t)·z` with `z` standard normal (drawn after `t`, one
/// coordinate at a time); returns `(t, h(t))`.
fn noise_at_uniform_time(
    r: &mut rand_chacha::ChaCha8Rng,
    schedule: &Geometric,
    x0: &[f64],
    xt: &mut [f64],
) -> (f32, f64) {
    let t: f32 = r.random();
    let h = schedule.h(t as f64);
    noise_into(r, h, x0, xt);
    (t, h)
}

/// `x_t = x₀ + √h·z`, `z` standard normal drawn one coordinate at a time:
/// the training's noising at a given variance (`checks: network_score`
/// noises its configurations with it too).
pub fn noise_into(r: &mut rand_chacha::ChaCha8Rng, h: f64, x0: &[f64], xt: &mut [f64]) {
    for (x, x0) in xt.iter_mut().zip(x0) {
        let z: f64 = r.sample(StandardNormal);
        *x = x0 + h.sqrt() * z;
    }
}

/// One batch of iDEM's loss: `xt` (`b × n·d`, mean-free) at times `tt` with
/// variances `hs`, the Monte Carlo targets drawn from stream
/// `(seed, tag, first + i)` for point `i`; returns the loss, with its gradient
/// in `grad` when given (a validation takes none, and skips the backward pass).
#[allow(clippy::too_many_arguments)]
fn batch_loss(
    p: &IdemParams,
    sys: &Particles,
    est: &Estimator,
    backprop: &EgnnBackprop,
    params: &[f32],
    (xt, tt, hs): (&[f64], &[f32], &[f64]),
    (seed, tag, first): (u64, &str, usize),
    grad: Option<&mut [f32]>,
) -> Result<f64, String> {
    let dim = sys.n * sys.d;
    let mut targets = vec![0f32; tt.len() * dim];
    targets.par_chunks_mut(dim).enumerate().try_for_each(|(i, out)| {
        let mut r = crate::numerics::rng::particle(seed, tag, first + i);
        let mut s = vec![0f64; dim];
        est.estimate(sys, &xt[i * dim..(i + 1) * dim], hs[i], &mut r, &mut Scratch::default(), &mut s)
            .map_err(|e| format!("point {i}: {e}"))?;
        out.iter_mut().zip(&s).for_each(|(o, v)| *o = *v as f32);
        Ok::<(), String>(())
    })?;
    let weights: Vec<f32> = hs.iter().map(|h| p.loss_weight(*h)).collect();
    let xs: Vec<f32> = xt.iter().map(|v| *v as f32).collect();
    Ok(match grad {
        Some(grad) => backprop.loss_and_grad(params, &xs, tt, &targets, &weights, grad),
        None => backprop.loss(params, &xs, tt, &targets, &weights),
    })
}

/// DEM's validation loss (its `eval_step` on the validation set): `p.val_batch`
/// configurations of `val` drawn without replacement, noised at uniform
/// times, centred, scored against fresh Monte Carlo targets; a loss that is
/// not finite is an error.
#[allow(clippy::too_many_arguments)]
fn validation_loss(
    p: &IdemParams,
    sys: &Particles,
    est: &Estimator,
    backprop: &EgnnBackprop,
    schedule: &Geometric,
    params: &[f32],
    val: &[f64],
    r: &mut rand_chacha::ChaCha8Rng,
    (seed, count): (u64, usize),
) -> Result<f64, String> {
    let dim = sys.n * sys.d;
    let m = val.len() / dim;
    let b = p.val_batch.min(m);
    // a partial Fisher–Yates shuffle: the first b indices, without replacement
    let mut idx: Vec<usize> = (0..m).collect();
    for i in 0..b {
        let j = r.random_range(i..m);
        idx.swap(i, j);
    }
    let (mut xt, mut tt, mut hs) = (vec![0f64; b * dim], vec![0f32; b], vec![0f64; b]);
    for (i, &k) in idx[..b].iter().enumerate() {
        (tt[i], hs[i]) =
            noise_at_uniform_time(r, schedule, &val[k * dim..(k + 1) * dim], &mut xt[i * dim..(i + 1) * dim]);
    }
    remove_mean(&mut xt, sys.n, sys.d);
    let v = batch_loss(p, sys, est, backprop, params, (&xt, &tt, &hs), (seed, "idem/val_estimate", count * b), None)?;
    if !v.is_finite() {
        return Err(format!("the loss is {v}; nothing was kept"));
    }
    Ok(v)
}

/// The initial buffer on a particle system: `n_init` prior draws (mean-free),
/// or (DEM's default) the Monte Carlo score's reverse-SDE particles.
fn initial_particles(
    p: &IdemParams,
    sys: &Particles,
    est: &Estimator,
    schedule: &Geometric,
    seed: u64,
    progress: &(dyn Fn(f64) + Sync),
) -> Result<Vec<f32>, StageError> {
    let dim = sys.n * sys.d;
    if p.init_from_prior {
        let prior_sd = schedule.h(1.0).sqrt();
        let mut r = rng(seed, "idem/prior_init");
        return Ok((0..p.n_init)
            .flat_map(|_| prior_draw(&mut r, dim, prior_sd, Some((sys.n, sys.d))))
            .map(|v| v as f32)
            .collect());
    }
    Ok(mc_score_particles(sys, est, schedule, p.steps, p.diffusion_scale, p.n_init, seed, "idem/init", progress)
        .map_err(|e| StageError::Failed(format!("the initial buffer (mc_score): {e}")))?
        .into_iter()
        .map(|v| v as f32)
        .collect())
}

/// Everything `fit_particles` needs to continue from a training step's start.
#[derive(serde::Serialize, serde::Deserialize)]
struct ParticlesState {
    params: Vec<f32>,
    stepper: Stepper,
    buffer: Buffer,
    snaps: (Vec<i64>, Vec<f32>),
    batch_rng: Position,
    val_rng: Position,
    track: Vec<Tracked>,
    plateau: crate::numerics::nn::backprop::Plateau,
    lr: f64,
    vals: Vec<(usize, f64, f64)>,
    selection: Selection,
}

/// The training loop on a particle system (see the module documentation),
/// tracked against `target` (`m × n·d`), validated on `val` when given.
pub fn fit_particles(
    p: &IdemParams,
    sys: &Particles,
    target: &[f64],
    val: Option<&[f64]>,
    seed: u64,
    progress: &(dyn Fn(f64) + Sync),
    ck: &Checkpointing,
) -> Result<Fitted, StageError> {
    let cfg = egnn_config(p, sys);
    let dim = sys.n * sys.d;
    let est = Estimator::from_params(&p.estimator, p.k, p.max_norm);
    let schedule = Geometric { sigma_min: p.sigma_min, sigma_max: p.sigma_max };
    let checks = BoltzmannChecksParams::read(&BoltzmannChecksParams::example());
    let backprop = EgnnBackprop::new(&cfg);
    let mut params = flatten(&cfg.init(&mut rng(seed, "idem/weights")));
    let mut grad = vec![0f32; params.len()];
    let mut stepper = Stepper::new(p, &params);
    let units = (p.outer + 1) as f64;
    let prior_sd = schedule.h(1.0).sqrt();
    let prior_draw = |r: &mut rand_chacha::ChaCha8Rng| prior_draw(r, dim, prior_sd, Some((sys.n, sys.d)));
    let mut buffer = Buffer::new(dim, p.buffer_size);
    let mut snaps: (Vec<i64>, Vec<f32>) = (Vec::new(), Vec::new());
    let snapshot = |snaps: &mut (Vec<i64>, Vec<f32>), outer: usize, pts: &[f32]| {
        snaps.0.extend(std::iter::repeat_n(outer as i64, pts.len() / dim));
        snaps.1.extend_from_slice(pts);
    };
    let (mut batch_rng, mut val_rng) = (rng(seed, "idem/batch"), rng(seed, "idem/val"));
    let mut track: Vec<Tracked> = Vec::new();
    let mut plateau = Plateau::new(p.lr, p.plateau_factor, p.plateau_patience);
    let (mut lr, mut vals) = (p.lr, Vec::new());
    let mut selection = Selection::default();
    let resumed = ck.resume_with(decode::<ParticlesState>);
    // The state is saved at training-step boundaries: `start` is the step
    // to continue from (its outer step's earlier steps are done).
    let start = resumed.as_ref().map_or(0, |(step, _)| *step as usize);
    if let Some((_, s)) = resumed {
        (params, stepper, buffer, snaps, track, plateau, lr, vals, selection) =
            (s.params, s.stepper, s.buffer, s.snaps, s.track, s.plateau, s.lr, s.vals, s.selection);
        s.batch_rng.seek(&mut batch_rng);
        s.val_rng.seek(&mut val_rng);
    } else if p.use_buffer {
        let init = initial_particles(p, sys, &est, &schedule, seed, &|f| progress(f / units))?;
        buffer.add(&init);
        snapshot(&mut snaps, 0, &init);
    }
    let b = p.batch;
    let total = (p.outer * p.inner) as u64;
    for outer in start / p.inner..p.outer {
        let first = if outer == start / p.inner { start % p.inner } else { 0 };
        for inner in first..p.inner {
            let step = outer * p.inner + inner;
            ck.at_boundary(step as u64, total, || {
                encode(&ParticlesState {
                    params: params.clone(),
                    stepper: stepper.clone(),
                    buffer: buffer.clone(),
                    snaps: snaps.clone(),
                    batch_rng: Position::of(&batch_rng),
                    val_rng: Position::of(&val_rng),
                    track: track.clone(),
                    plateau: plateau.clone(),
                    lr,
                    vals: vals.clone(),
                    selection: selection.clone(),
                })
            })?;
            let mut xt = vec![0f64; b * dim];
            let mut tt = vec![0f32; b];
            let mut hs = vec![0f64; b];
            for i in 0..b {
                let x0: Vec<f64> = if p.use_buffer {
                    buffer.draw(&mut batch_rng).iter().map(|v| *v as f64).collect()
                } else {
                    prior_draw(&mut batch_rng)
                };
                (tt[i], hs[i]) = noise_at_uniform_time(&mut batch_rng, &schedule, &x0, &mut xt[i * dim..(i + 1) * dim]);
            }
            remove_mean(&mut xt, sys.n, sys.d);
            let loss = batch_loss(
                p,
                sys,
                &est,
                &backprop,
                &params,
                (&xt, &tt, &hs),
                (seed, "idem/estimate", step * b),
                Some(&mut grad),
            )
            .map_err(|e| StageError::Failed(format!("training step {step} (outer {outer}): {e}")))?;
            stepper.step(p, &mut params, &mut grad, loss, lr, (step, outer))?;
            if let Some(val) = val
                && p.plateau_every > 0
                && (step + 1).is_multiple_of(p.plateau_every)
            {
                let v =
                    validation_loss(p, sys, &est, &backprop, &schedule, &params, val, &mut val_rng, (seed, vals.len()))
                        .map_err(|e| StageError::Failed(format!("validation after training step {step}: {e}")))?;
                lr = plateau.step(v);
                vals.push((step + 1, v, lr));
            }
            progress((outer as f64 + 1.0 + 0.5 * (inner + 1) as f64 / p.inner as f64) / units);
        }
        let infer = EgnnRun::new(&cfg, &unflatten(&cfg, &params));
        let new = egnn_sde_particles(
            &infer,
            &schedule,
            p.steps,
            p.diffusion_scale,
            &NegativeTime { sys, steps: p.negative_time_steps, max_norm: p.max_norm },
            p.samples_per_outer,
            seed,
            &format!("idem/sde/{outer}"),
        )
        .map_err(|e| StageError::Failed(format!("outer step {outer}, the network's reverse SDE: {e}")))?;
        buffer.add(&new);
        let last = outer + 1 == p.outer;
        if (outer + 1) % p.snapshot_every == 0 || last {
            snapshot(&mut snaps, outer + 1, &new);
        }
        let pts: Vec<f64> = new.iter().map(|v| *v as f64).collect();
        if (outer + 1) % p.track_every == 0 || last {
            let m = particle_metrics(sys, &pts, target, &checks).map_err(StageError::Failed)?;
            track.push(tracked(outer + 1, (outer + 1) * p.inner, m));
        }
        selection.validate(p, outer, &pts, val, dim, seed, || stepper.kept(&params))?;
        progress((outer as f64 + 2.0) / units);
    }
    let ((kept, selection), loss) = stepper.finish(params, selection);
    let model = EgnnModel {
        config: cfg,
        sigma_min: p.sigma_min,
        sigma_max: p.sigma_max,
        energy: p.energy.clone(),
        layers: unflatten(&cfg, &kept),
    };
    let mut buffer_t = Table::new().with("outer", ColumnData::I64(snaps.0));
    for (j, name) in particle_columns(sys.n, sys.d).iter().enumerate() {
        buffer_t =
            buffer_t.with(name, ColumnData::F64(snaps.1.iter().skip(j).step_by(dim).map(|v| *v as f64).collect()));
    }
    Ok(Fitted {
        model: FittedModel::Egnn(model),
        loss,
        buffer: buffer_t,
        tracker: tracker_table(&track),
        val: val_table(vals),
        selection,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numerics::energy::Energy;
    use rand::SeedableRng;

    /// A perturbed LJ-13 icosahedron, mean-free: large gradients somewhere.
    fn noisy_lj13(seed: u64, scale: f64) -> (Particles, Vec<f64>) {
        let sys = Particles::lj(13);
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut x = crate::numerics::energy::particles::icosahedron(1, 1.0);
        x.iter_mut().for_each(|v| *v += scale * r.sample::<f64, _>(StandardNormal));
        remove_mean(&mut x, 13, 3);
        (sys, x)
    }

    #[test]
    fn negative_time_tail_is_dems_clipped_descent() {
        let (sys, x0) = noisy_lj13(3, 0.1);
        // no steps: nothing moves
        let mut x = x0.clone();
        NegativeTime { sys: &sys, steps: 0, max_norm: 20.0 }.descend(&mut x).unwrap();
        assert_eq!(x, x0);
        // one step by hand: x + dt · (−∇E) · min(1, 20 / (‖∇E‖ + 1e-6)), centred
        let mut g = vec![0.0; 39];
        sys.grad_log_prob(&x0, &mut g);
        let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!(norm > 20.0, "the test wants a clipped step, ‖∇E‖ = {norm}");
        let c = 20.0 / (norm + 1e-6);
        let mut want: Vec<f64> = x0.iter().zip(&g).map(|(x, g)| x + 1e-4 * c * g).collect();
        remove_mean(&mut want, 13, 3);
        let mut x = x0.clone();
        NegativeTime { sys: &sys, steps: 1, max_norm: 20.0 }.descend(&mut x).unwrap();
        for (a, b) in x.iter().zip(&want) {
            assert!((a - b).abs() < 1e-15, "{a} vs {b}");
        }
        // unclipped (max_norm 0) moves by dt·‖∇E‖
        let mut x = x0.clone();
        NegativeTime { sys: &sys, steps: 1, max_norm: 0.0 }.descend(&mut x).unwrap();
        let moved = x.iter().zip(&x0).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
        assert!((moved - 1e-4 * norm).abs() < 1e-9 * norm, "{moved} vs {}", 1e-4 * norm);
    }

    #[test]
    fn negative_time_tail_lowers_the_energy_and_stays_mean_free() {
        let (sys, x0) = noisy_lj13(5, 0.05);
        let mut batch: Vec<f64> = x0.iter().chain(&noisy_lj13(6, 0.05).1).copied().collect();
        let before: Vec<f64> = batch.chunks(39).map(|x| sys.energy(x, None)).collect();
        NegativeTime { sys: &sys, steps: 200, max_norm: 0.0 }.descend(&mut batch).unwrap();
        for (i, x) in batch.chunks(39).enumerate() {
            let after = sys.energy(x, None);
            assert!(after < before[i] - 1e-3, "configuration {i}: {} → {after}", before[i]);
            for k in 0..3 {
                let m: f64 = (0..13).map(|p| x[p * 3 + k]).sum();
                assert!(m.abs() < 1e-12);
            }
        }
        // a NaN configuration is an error naming it
        let mut bad = x0.clone();
        bad[4] = f64::NAN;
        let err = NegativeTime { sys: &sys, steps: 1, max_norm: 20.0 }.descend(&mut bad).unwrap_err();
        assert!(err.contains("particle 0") && err.contains("not finite"), "{err}");
    }
}
