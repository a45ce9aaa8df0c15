//! `validate` / `checks: score_estimator`: the seed's estimator study — how
//! far each Monte Carlo form is from the exact noised score, over a grid of
//! sample counts K and diffusion times t.

use rayon::prelude::*;

use super::estimator::{EstimateError, Estimator, Form, Scratch};
use crate::engine::frame::{ColumnData, Table};
use crate::engine::params::{Default, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::numerics::energy::Energy;
use crate::numerics::energy::gmm::Gmm;
use crate::numerics::sde::ve::Geometric;

/// `checks: score_estimator` on GMM-40 in DEM's coordinates (÷ `normalization`,
/// as the normalised mixture, so the exact `p_t` the `unbiased` form needs is
/// the mixture's). For each `t` of `ts`, `points` evaluation points are drawn
/// from the exact `p_t` (`h = h(t)` of DEM's geometric schedule); at each, every
/// form makes `repeats` independent estimates with each K of `ks`, unclipped.
/// Per (form, K, t): `bias2` — the mean over points of the squared bias,
/// `|mean estimate − exact|² − variance/repeats` (unbiased; can dip below 0
/// where the bias is below resolution);
/// `variance` — the mean over points of the estimates' variance (summed over
/// coordinates); `mse` — the mean of `|estimate − exact|²`; `cosine` — the mean
/// cosine between estimate and exact score; `rel_mse` — `mse` over the mean
/// `|exact|²`; `failed` — estimates that were undefined or not finite (left out).
pub struct ScoreEstimatorStudy;

const DEFAULT_KS: [i64; 6] = [1, 4, 16, 64, 256, 1024];
const DEFAULT_TS: [f64; 5] = [0.1, 0.3, 0.5, 0.7, 0.9];

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct StudyParams {
        energy: String = (ParamType::Str { choices: &["gmm40"] }, Default::Str("gmm40"), "the target"),
        ks: Option<Vec<i64>> = (ParamType::List { item: &ParamType::Int { min: 1, max: 100_000 }, min_len: 1 }, Default::Optional, "Monte Carlo sample counts K [default: 1, 4, 16, 64, 256, 1024]"),
        ts: Option<Vec<f64>> = (ParamType::List { item: &ParamType::Float { min: 0.0, max: 1.0 }, min_len: 1 }, Default::Optional, "diffusion times t in [0, 1] [default: 0.1, 0.3, 0.5, 0.7, 0.9]"),
        points: usize = (ParamType::Int { min: 1, max: 100_000 }, Default::Int(64), "evaluation points per t, drawn from the exact p_t"),
        repeats: usize = (ParamType::Int { min: 2, max: 10_000 }, Default::Int(8), "independent estimates per point, form and K"),
        sigma_min: f64 = (ParamType::Float { min: 1e-12, max: 1e6 }, Default::Float(1e-5), "geometric schedule's σ_min (DEM: 1e-5)"),
        sigma_max: f64 = (ParamType::Float { min: 1e-12, max: 1e6 }, Default::Float(1.0), "geometric schedule's σ_max (DEM: 1)"),
        normalization: f64 = (ParamType::Float { min: 1e-9, max: 1e9 }, Default::Float(50.0), "the energy's coordinates divided by this (DEM: 50)"),
    }
}
static INPUTS: &[InputDef] = &[];
static OUTPUTS: &[OutputDef] = &[OutputDef {
    name: "study",
    media: Media::Table,
    doc: "form, k, t, h, bias2, variance, mse, rel_mse, cosine, failed",
}];

/// One cell of the study.
struct Cell {
    form: Form,
    k: usize,
    t: f64,
    h: f64,
    bias2: f64,
    variance: f64,
    mse: f64,
    rel_mse: f64,
    cosine: f64,
    failed: usize,
}

/// Every (form, K, t) cell of the study of `gmm` (which must have a
/// closed-form noised density), `points` exact points per t, `repeats`
/// estimates each.
fn study(
    gmm: &Gmm,
    schedule: &Geometric,
    ks: &[usize],
    ts: &[f64],
    points: usize,
    repeats: usize,
    seed: u64,
) -> Vec<Cell> {
    let mut grid: Vec<(usize, f64, Form, usize)> = Vec::new();
    for (ti, &t) in ts.iter().enumerate() {
        for form in Form::ALL {
            grid.extend(ks.iter().map(|&k| (ti, t, form, k)));
        }
    }
    grid.par_iter()
        .map(|&(ti, t, form, k)| {
            let h = schedule.h(t);
            let noised = gmm.noised(h);
            // The same evaluation points for every form and K at this t.
            let xs = noised.sample(points, &mut crate::numerics::rng::particle(seed, "study/points", ti));
            let est = Estimator { form, k, max_norm: None };
            let mut rng = crate::numerics::rng::particle(seed, &format!("study/{}/{k}", form.name()), ti);
            let mut scratch = Scratch::default();
            let (mut bias2, mut variance, mut mse, mut cosine, mut norm2) = (0.0, 0.0, 0.0, 0.0, 0.0);
            let (mut failed, mut used_points, mut used) = (0usize, 0usize, 0usize);
            for x in xs.chunks(2) {
                let mut exact = [0.0; 2];
                gmm.noised_score(x, h, &mut exact);
                let en = (exact[0] * exact[0] + exact[1] * exact[1]).sqrt();
                let mut ests: Vec<[f64; 2]> = Vec::with_capacity(repeats);
                for _ in 0..repeats {
                    let mut s = [0.0; 2];
                    match est.estimate(gmm, x, h, &mut rng, &mut scratch, &mut s) {
                        Ok(()) => ests.push(s),
                        Err(EstimateError::NoMass { .. } | EstimateError::NonFinite { .. }) => failed += 1,
                        Err(e @ EstimateError::NoExactDensity { .. }) => unreachable!("the mixture has it: {e}"),
                    }
                }
                if ests.len() < 2 {
                    continue;
                }
                let m = ests.len() as f64;
                let mean = [ests.iter().map(|s| s[0]).sum::<f64>() / m, ests.iter().map(|s| s[1]).sum::<f64>() / m];
                let var =
                    ests.iter().map(|s| (s[0] - mean[0]).powi(2) + (s[1] - mean[1]).powi(2)).sum::<f64>() / (m - 1.0);
                // |mean − exact|² overstates the squared bias by var/m: take it off.
                bias2 += (mean[0] - exact[0]).powi(2) + (mean[1] - exact[1]).powi(2) - var / m;
                variance += var;
                norm2 += en * en;
                for s in &ests {
                    mse += (s[0] - exact[0]).powi(2) + (s[1] - exact[1]).powi(2);
                    let sn = (s[0] * s[0] + s[1] * s[1]).sqrt();
                    cosine += if sn > 0.0 && en > 0.0 { (s[0] * exact[0] + s[1] * exact[1]) / (sn * en) } else { 0.0 };
                }
                used_points += 1;
                used += ests.len();
            }
            let per = |v: f64, n: usize| if n == 0 { f64::NAN } else { v / n as f64 };
            Cell {
                form,
                k,
                t,
                h,
                bias2: per(bias2, used_points),
                variance: per(variance, used_points),
                mse: per(mse, used),
                rel_mse: per(mse, used) / per(norm2, used_points),
                cosine: per(cosine, used),
                failed,
            }
        })
        .collect()
}

impl Stage for ScoreEstimatorStudy {
    describe!(Kind::Validate, "score_estimator", version 3, params StudyParams, INPUTS, OUTPUTS);
    fn output_columns(&self, output: &str) -> Option<&'static [&'static str]> {
        (output == "study")
            .then_some(&["form", "k", "t", "h", "bias2", "variance", "mse", "rel_mse", "cosine", "failed"][..])
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let p = StudyParams::read(ctx.params);
        let ks: Vec<usize> = p.ks.unwrap_or(DEFAULT_KS.to_vec()).into_iter().map(|k| k as usize).collect();
        let ts = p.ts.unwrap_or(DEFAULT_TS.to_vec());
        let gmm = Gmm::dem40().unmasked().rescaled(p.normalization);
        let schedule = Geometric { sigma_min: p.sigma_min, sigma_max: p.sigma_max };
        let cells = study(&gmm, &schedule, &ks, &ts, p.points, p.repeats, ctx.seed);
        let col = |f: &dyn Fn(&Cell) -> f64| ColumnData::F64(cells.iter().map(f).collect());
        let table = Table::new()
            .with("form", ColumnData::Str(cells.iter().map(|c| c.form.name().to_string()).collect()))
            .with("k", ColumnData::I64(cells.iter().map(|c| c.k as i64).collect()))
            .with("t", col(&|c| c.t))
            .with("h", col(&|c| c.h))
            .with("bias2", col(&|c| c.bias2))
            .with("variance", col(&|c| c.variance))
            .with("mse", col(&|c| c.mse))
            .with("rel_mse", col(&|c| c.rel_mse))
            .with("cosine", col(&|c| c.cosine))
            .with("failed", ColumnData::I64(cells.iter().map(|c| c.failed as i64).collect()));
        Ok([("study".to_string(), Artifact::Table(table))].into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the seed states: log-sum-exp's error falls with K and rises with
    /// t; Jensen's bias stays at every K.
    #[test]
    fn the_study_shows_what_the_seed_states() {
        let gmm = Gmm::dem40().unmasked().rescaled(50.0);
        let schedule = Geometric { sigma_min: 1e-5, sigma_max: 1.0 };
        let cells = study(&gmm, &schedule, &[4, 256], &[0.3, 0.5], 32, 4, 7);
        let get = |form: Form, k: usize, t: f64| cells.iter().find(|c| c.form == form && c.k == k && c.t == t).unwrap();
        let lse = |k, t| get(Form::LogSumExp, k, t).mse;
        assert!(lse(256, 0.5) < lse(4, 0.5) / 10.0, "{} vs {}", lse(256, 0.5), lse(4, 0.5));
        assert!(lse(256, 0.5) > 10.0 * lse(256, 0.3), "error rises with t");
        assert!(get(Form::Jensen, 256, 0.5).bias2 > 5.0 * get(Form::LogSumExp, 256, 0.5).bias2);
        assert!(cells.iter().all(|c| c.failed == 0 && c.mse.is_finite()));
    }
}
