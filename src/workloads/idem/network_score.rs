//! `validate` / `checks: network_score`: where, along the noise schedule, a
//! trained iDEM network departs from the target it was trained to regress.
//!
//! iDEM's network regresses Monte Carlo estimates of the noised score
//! `∇ log p_t`; its samples can only be as good as that fit where the reverse
//! SDE ends, at small noise, where the estimate is nearly the clipped force
//! `−∇E` itself. DEM logs nothing that says where the fit fails; this check
//! does, on configurations from a reference set (the distribution the samples
//! should reach): at each time `t` of `ts` it noises `points` of them as the
//! training does (`x_t = x₀ + √h(t)·z`, then the centre of mass removed) and
//! compares the network's score with the mean of `repeats` estimates of `k`
//! samples each (DEM's log-sum-exp form, each particle's vector clipped to
//! `max_norm` as in training), projected onto the mean-free subspace the
//! network's output lives in.
//!
//! Per `t`, with `T` the mean of a point's estimates, which scatters by
//! `v = variance / repeats` around the estimator's expectation `E T`:
//! `gain` — the pooled regression slope `Σ⟨s, T⟩ / Σ(|T|² − v)` of the
//! network's score `s` on `E T` (1: the right strength; below 1 the network's
//! forces are too weak, which lets a sampler's configurations sit higher on the
//! energy); `mse` — the mean `|s − T|² − v`, the misfit against `E T` (it can
//! dip below 0 where the misfit is below resolution); `rel_mse` — `mse` over
//! `target_norm2`, the mean `|T|² − v`; `net_norm2` — the mean `|s|²`;
//! `cosine` — the mean cosine between `s` and `T` (not corrected: the targets'
//! noise lowers it where `target_var` is large); `target_var` — one estimate's
//! variance (summed over coordinates), what the training's targets scatter by;
//! `clipped` — the fraction of the estimates' particle vectors the clip
//! shortened; `ess`, `ess_q10` — the median and the 10th percentile, over
//! every estimate at that `t`, of the effective number of its `k` draws
//! (Kish's `(Σw)²/Σw²` of the log-sum-exp weights; the network does not enter
//! them): where it is a few, a larger `k` barely lowers the targets' noise.
//! The pooled sums weigh each point by its target's size, so the strongest
//! forces dominate `gain`.

use rayon::prelude::*;

use super::egnn::{EgnnModel, EgnnRun};
use super::estimator::{Estimator, Form, Scratch, clip_norm};
use super::generate::{Target, particle_columns};
use super::particles_train::noise_into;
use crate::engine::frame::{ColumnData, Table};
use crate::engine::params::{Default, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::numerics::energy::particles::{Particles, remove_mean};
use crate::numerics::sde::ve::Geometric;

/// `checks: network_score` (see the module documentation).
pub struct NetworkScore;

const DEFAULT_TS: [f64; 8] = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0];

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct NetworkScoreParams {
        ts: Option<Vec<f64>> = (ParamType::List { item: &ParamType::Float { min: 0.0, max: 1.0 }, min_len: 1 }, Default::Optional, "diffusion times t in [0, 1] [default: 0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1]"),
        points: usize = (ParamType::Int { min: 1, max: 100_000 }, Default::Int(256), "reference configurations noised at each t (the first ones of `target`, cycled if it has fewer)"),
        repeats: usize = (ParamType::Int { min: 2, max: 10_000 }, Default::Int(4), "independent estimates per point, averaged into its target"),
        k: usize = (super::estimator::K, Default::Int(1000), "Monte Carlo samples per estimate (DEM's LJ: 1000)"),
        max_norm: f64 = (super::estimator::MAX_NORM, Default::Float(20.0), "clip each particle's estimated score to this norm, as the training did (DEM: 20); 0: no clip"),
    }
}
static INPUTS: &[InputDef] = &[
    InputDef {
        name: "model",
        media: Media::Model("idem"),
        required: true,
        doc: "an EGNN from train objective: idem on a particle system",
    },
    InputDef {
        name: "target",
        media: Media::Table,
        required: true,
        doc: "configurations to noise (p{i}_x, …), e.g. the MCMC reference",
    },
];
const COLUMNS: [&str; 15] = [
    "metric",
    "t",
    "h",
    "gain",
    "cosine",
    "mse",
    "rel_mse",
    "net_norm2",
    "target_norm2",
    "target_var",
    "clipped",
    "ess",
    "ess_q10",
    "points",
    "sigma",
];
static OUTPUTS: &[OutputDef] = &[OutputDef {
    name: "score",
    media: Media::Table,
    doc: "one row per t: metric (`t=…`), t, h, gain, cosine, mse, rel_mse, net_norm2, target_norm2, target_var, clipped, ess, ess_q10, points, sigma",
}];

/// One time's comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub t: f64,
    pub h: f64,
    pub gain: f64,
    pub cosine: f64,
    pub mse: f64,
    pub rel_mse: f64,
    pub net_norm2: f64,
    pub target_norm2: f64,
    pub target_var: f64,
    pub clipped: f64,
    pub ess: f64,
    pub ess_q10: f64,
    pub points: usize,
}

/// Per point: ⟨s, T⟩, |T|², |s|², |s − T|², cos, one estimate's variance,
/// clipped particle vectors (the estimates' effective sample sizes are kept
/// apart).
type PointStats = (f64, f64, f64, f64, f64, f64, usize);

/// A network's score: configurations (`B × n·d`) at a shared time into `out`.
pub type Score<'a> = &'a (dyn Fn(&[f32], f32, &mut [f32]) + Sync);

/// The comparison at every `t` of `ts` of the network's `score` against the
/// estimator on `energy`, at `points` configurations of `configs`
/// (`m × n·d`). Point `i` at time index `j` draws its noise and its estimates
/// from its own stream, so the result does not depend on the thread count.
pub fn compare(
    score: Score,
    schedule: &Geometric,
    energy: &Particles,
    configs: &[f64],
    ts: &[f64],
    p: &NetworkScoreParams,
    seed: u64,
) -> Result<Vec<Row>, String> {
    let (n, d) = (energy.n, energy.d);
    let dim = n * d;
    let m = configs.len() / dim;
    if m == 0 {
        return Err("the target set has no configurations".into());
    }
    let est = Estimator { form: Form::LogSumExp, k: p.k, max_norm: None };
    let mut rows = Vec::with_capacity(ts.len());
    for (j, &t) in ts.iter().enumerate() {
        let h = schedule.h(t);
        let mut xt = vec![0f64; p.points * dim];
        let targets: Vec<(Vec<f64>, f64, usize, Vec<f64>)> = xt
            .par_chunks_mut(dim)
            .enumerate()
            .map(|(i, x)| {
                let mut r = crate::numerics::rng::particle(seed, &format!("network_score/{j}"), i);
                noise_into(&mut r, h, &configs[(i % m) * dim..(i % m + 1) * dim], x);
                remove_mean(x, n, d);
                let (mut ests, mut clipped) = (Vec::with_capacity(p.repeats), 0usize);
                let mut ess = Vec::with_capacity(p.repeats);
                let mut scratch = Scratch::default();
                for _ in 0..p.repeats {
                    let mut s = vec![0f64; dim];
                    est.estimate(energy, x, h, &mut r, &mut scratch, &mut s)
                        .map_err(|e| format!("t = {t}, point {i}: {e}"))?;
                    ess.extend(scratch.effective_samples());
                    if p.max_norm > 0.0 {
                        clipped += s.chunks_mut(d).map(|v| usize::from(clip_norm(v, p.max_norm) < 1.0)).sum::<usize>();
                    }
                    remove_mean(&mut s, n, d);
                    ests.push(s);
                }
                let reps = p.repeats as f64;
                let mean: Vec<f64> = (0..dim).map(|c| ests.iter().map(|s| s[c]).sum::<f64>() / reps).collect();
                let var =
                    ests.iter().map(|s| s.iter().zip(&mean).map(|(a, b)| (a - b).powi(2)).sum::<f64>()).sum::<f64>()
                        / (reps - 1.0);
                Ok((mean, var, clipped, ess))
            })
            .collect::<Result<_, String>>()?;
        let xs: Vec<f32> = xt.iter().map(|v| *v as f32).collect();
        let mut s = vec![0f32; xs.len()];
        score(&xs, t as f32, &mut s);
        if let Some(i) = s.iter().position(|v| !v.is_finite()) {
            return Err(format!("the network's score is not finite at t = {t}, point {}", i / dim));
        }
        let stats: Vec<PointStats> = targets
            .iter()
            .zip(s.chunks(dim))
            .map(|((tg, var, clipped, _), s)| {
                let dot: f64 = tg.iter().zip(s).map(|(a, b)| a * *b as f64).sum();
                let tn: f64 = tg.iter().map(|a| a * a).sum();
                let sn: f64 = s.iter().map(|b| (*b as f64).powi(2)).sum();
                let err: f64 = tg.iter().zip(s).map(|(a, b)| (*b as f64 - a).powi(2)).sum();
                let cos = if tn > 0.0 && sn > 0.0 { dot / (tn * sn).sqrt() } else { 0.0 };
                (dot, tn, sn, err, cos, *var, *clipped)
            })
            .collect();
        let np = p.points as f64;
        let sum = |f: &dyn Fn(&PointStats) -> f64| stats.iter().map(f).sum::<f64>();
        let (dot, tn, sn, err) = (sum(&|s| s.0), sum(&|s| s.1), sum(&|s| s.2), sum(&|s| s.3));
        let var = sum(&|s| s.5) / np;
        // The mean of `repeats` estimates scatters by var/repeats around the
        // estimator's expectation: take it off the misfit and off |T|², so
        // that neither the gain nor rel_mse is diluted by the targets' noise.
        let noise = var / p.repeats as f64;
        let mse = err / np - noise;
        let tn = tn - noise * np;
        let clipped = stats.iter().map(|s| s.6).sum::<usize>() as f64 / (np * p.repeats as f64 * n as f64);
        let mut ess: Vec<f64> = targets.iter().flat_map(|tg| tg.3.iter().copied()).collect();
        ess.sort_by(f64::total_cmp);
        let ess_q10 = ess[(ess.len() - 1) / 10];
        let ess = crate::numerics::metrics::median(&mut ess);
        rows.push(Row {
            t,
            h,
            gain: if tn > 0.0 { dot / tn } else { f64::NAN },
            cosine: sum(&|s| s.4) / np,
            mse,
            rel_mse: mse / (tn / np),
            net_norm2: sn / np,
            target_norm2: tn / np,
            target_var: var,
            clipped,
            ess,
            ess_q10,
            points: p.points,
        });
    }
    Ok(rows)
}

impl Stage for NetworkScore {
    describe!(Kind::Validate, "network_score", version 2, params NetworkScoreParams, INPUTS, OUTPUTS);
    fn output_columns(&self, output: &str) -> Option<&'static [&'static str]> {
        (output == "score").then_some(&COLUMNS[..])
    }
    fn metrics(&self) -> &'static [(&'static str, &'static str)] {
        &[("score", "gain"), ("score", "rel_mse")]
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let p = NetworkScoreParams::read(ctx.params);
        let blob = ctx.blob("model")?;
        if !blob.starts_with(super::egnn::MAGIC) {
            return Err(StageError::Failed(
                "network_score checks an EGNN trained on a particle system; this model is DEM's MLP (GMM-40, whose \
                 exact noised score `checks: score_estimator` uses)"
                    .into(),
            ));
        }
        let model = EgnnModel::from_bytes(blob).map_err(|e| StageError::Failed(e.to_string()))?;
        let target = Target::by_name(&model.energy);
        let Some(Target::Particles(sys)) = &target else {
            return Err(StageError::Failed(format!("the model's energy `{}` is not a particle system", model.energy)));
        };
        let configs = ctx.table("target")?.rows_f64(&particle_columns(sys.n, sys.d))?;
        if let Some(bad) = configs.iter().position(|v| !v.is_finite()) {
            return Err(StageError::Failed(format!("target configuration {} is not finite", bad / (sys.n * sys.d))));
        }
        let net = EgnnRun::new(&model.config, &model.layers);
        let schedule = Geometric { sigma_min: model.sigma_min, sigma_max: model.sigma_max };
        let ts = p.ts.clone().unwrap_or(DEFAULT_TS.to_vec());
        let rows = compare(&|x, t, out| net.forward(x, t, out), &schedule, sys, &configs, &ts, &p, ctx.seed)
            .map_err(StageError::Failed)?;
        if let Some(r) = rows.iter().find(|r| !(r.gain.is_finite() && r.mse.is_finite())) {
            return Err(StageError::Failed(format!(
                "at t = {}, the targets' noise is as large as the targets (|T|² − variance/repeats = {:.3e}): raise \
                 `repeats` or `k`",
                r.t, r.target_norm2
            )));
        }
        let col = |f: &dyn Fn(&Row) -> f64| ColumnData::F64(rows.iter().map(f).collect());
        let table = Table::new()
            .with("metric", ColumnData::Str(rows.iter().map(|r| format!("t={}", r.t)).collect()))
            .with("t", col(&|r| r.t))
            .with("h", col(&|r| r.h))
            .with("gain", col(&|r| r.gain))
            .with("cosine", col(&|r| r.cosine))
            .with("mse", col(&|r| r.mse))
            .with("rel_mse", col(&|r| r.rel_mse))
            .with("net_norm2", col(&|r| r.net_norm2))
            .with("target_norm2", col(&|r| r.target_norm2))
            .with("target_var", col(&|r| r.target_var))
            .with("clipped", col(&|r| r.clipped))
            .with("ess", col(&|r| r.ess))
            .with("ess_q10", col(&|r| r.ess_q10))
            .with("points", ColumnData::I64(rows.iter().map(|r| r.points as i64).collect()))
            .with("sigma", col(&|r| r.h.sqrt()));
        Ok([("score".to_string(), Artifact::Table(table))].into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(repeats: usize, max_norm: f64) -> NetworkScoreParams {
        let mut p = NetworkScoreParams::read(&NetworkScoreParams::example());
        (p.points, p.repeats, p.k, p.max_norm) = (24, repeats, 64, max_norm);
        p
    }

    /// LJ-13 configurations: the icosahedron compressed to spacing 0.9 (DEM's
    /// pair minimum is at 1), where forces of about 20 a pair push it apart,
    /// perturbed by 0.05.
    fn configs(m: usize) -> Vec<f64> {
        use rand::SeedableRng;
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let ico = crate::numerics::energy::particles::icosahedron(1, 0.9);
        (0..m)
            .flat_map(|_| {
                super::super::integrate::prior_draw(&mut r, 39, 0.05, None)
                    .into_iter()
                    .zip(ico.clone())
                    .map(|(z, x)| x + z)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The mean-free force `c·(−∇E)`: what a network would output that
    /// learned the t = 0 target up to a factor `c`.
    fn scaled_force(sys: &Particles, c: f64) -> impl Fn(&[f32], f32, &mut [f32]) + Sync + '_ {
        move |x, _, out| {
            for (xc, oc) in x.chunks(39).zip(out.chunks_mut(39)) {
                let x64: Vec<f64> = xc.iter().map(|v| *v as f64).collect();
                let mut g = vec![0f64; 39];
                sys.energy(&x64, Some(&mut g));
                let mut s: Vec<f64> = g.iter().map(|v| -c * v).collect();
                remove_mean(&mut s, 13, 3);
                oc.iter_mut().zip(&s).for_each(|(o, v)| *o = *v as f32);
            }
        }
    }

    /// At t = 0 the unclipped target is the force itself (no noise: every
    /// estimate is the same), so a network outputting `c` times it has gain
    /// `c`, cosine 1 and misfit `(c − 1)²·|T|²`; a silent one has gain 0.
    #[test]
    fn at_t0_the_comparison_recovers_a_known_misfit() {
        let sys = Particles::lj(13);
        let schedule = Geometric { sigma_min: 0.01, sigma_max: 2.0 };
        let xs = configs(8);
        for c in [0.0, 0.5, 1.0, 1.5] {
            let f = scaled_force(&sys, c);
            let rows = compare(&f, &schedule, &sys, &xs, &[0.0], &params(3, 0.0), 1).unwrap();
            let r = &rows[0];
            assert_eq!((r.h, r.clipped), (0.0, 0.0));
            // no noise: every draw is the point itself, weighing alike
            assert!((r.ess - 64.0).abs() < 1e-9 && (r.ess_q10 - 64.0).abs() < 1e-9, "{r:?}");
            // identical estimates: no scatter beyond the mean's rounding
            assert!(r.target_var < 1e-20 * r.target_norm2, "{r:?}");
            // float32 outputs: agreement to 1e-5 relative
            assert!((r.gain - c).abs() < 1e-5 * (1.0 + c), "c {c}: gain {}", r.gain);
            assert!((r.net_norm2 - c * c * r.target_norm2).abs() < 1e-5 * r.target_norm2);
            assert!((r.mse - (c - 1.0).powi(2) * r.target_norm2).abs() < 1e-5 * r.target_norm2, "{r:?}");
            assert!((r.cosine - if c == 0.0 { 0.0 } else { 1.0 }).abs() < 1e-6);
        }
    }

    /// DEM's clip of 20 a particle shortens forces near the minimum; with
    /// noise the targets scatter; every figure is the same on 1 and 2 threads.
    #[test]
    fn the_clip_and_the_noise_show_and_threads_do_not_matter() {
        let sys = Particles::lj(13);
        let schedule = Geometric { sigma_min: 0.01, sigma_max: 2.0 };
        let xs = configs(8);
        let f = scaled_force(&sys, 1.0);
        let p = params(3, 20.0);
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| compare(&f, &schedule, &sys, &xs, &[0.0, 0.3], &p, 7).unwrap())
        };
        let (one, two) = (run(1), run(2));
        assert_eq!(one, two);
        let (r0, r3) = (&one[0], &one[1]);
        assert!(r0.clipped > 0.0, "{r0:?}");
        // the clipped target is weaker than the force the network outputs
        assert!(r0.gain > 1.0 && r0.net_norm2 > r0.target_norm2, "{r0:?}");
        assert!(r3.target_var > 0.0 && r3.h > 0.0, "{r3:?}");
        // with noise the weights spread over the draws unevenly
        assert!(r3.ess_q10 <= r3.ess && r3.ess < 64.0 && r3.ess_q10 >= 1.0, "{r3:?}");
    }
}
