//! `generate` / `dataset: boltzmann`: reference samples of a Boltzmann target,
//! for validation (a test set, and independent draws for floors): exact where
//! the target has an exact sampler (GMM-40), by MCMC otherwise (DW-4, LJ-13,
//! LJ-55, where DEM downloads MCMC sets we cannot fetch).

use crate::engine::checkpoint::{decode, encode};
use crate::engine::frame::{ColumnData, Table};
use crate::engine::params::{Default, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::numerics::energy::Energy;
use crate::numerics::energy::gmm::Gmm;
use crate::numerics::energy::particles::{Particles, icosahedron, relax, remove_mean};
use crate::numerics::mcmc::{ChainState, MALA_TARGET_ACCEPT, MalaConfig, Stopped, mala_in_segments, rhat_ess};
use crate::numerics::rng::particle as particle_rng;
use crate::numerics::rng::stream as rng;
use rand::Rng;
use rand_distr::StandardNormal;

/// Peak memory per requested row (a configuration of up to 165 coordinates
/// and its bookkeeping; estimated).
const BYTES_PER_ROW: u64 = 4096;

/// `dataset: boltzmann`: `n_samples` draws of the target `energy`.
///
/// * `method: exact` (GMM-40 only): DEM's GMM-40 ([`Gmm::dem40`]), a component
///   uniformly, then its normal, in the energy's own coordinates (DEM's test
///   set is in these too; its training works on `x / 50`). Each row records
///   the component drawn (`mode`).
/// * `method: mcmc`: `chains` parallel MALA chains ([`crate::numerics::mcmc`]), each
///   `burn_in` steps with step-size adaptation, then `n_samples / chains`
///   draws `thin` steps apart. Chains start from the mean-free prior
///   `N(0, init_scale² I)` (`init: prior`), or, for Lennard-Jones, from the
///   relaxed Mackay icosahedron (the LJ-13 and LJ-55 global minima) perturbed
///   by `init_scale` (`init: minimum`). Particle systems stay mean-free
///   (DEM's `remove_mean` on its data). Rows are chain-major and record the
///   chain; `energy` is `E(x)`.
///
/// Columns: GMM-40 `x, y`; particles `p{i}_x, p{i}_y[, p{i}_z]` for particle
/// `i` (DEM's flattened order). The `diagnostics` table (`statistic, value`)
/// gives the energy's mean and quartiles, and for MCMC the acceptance rate,
/// the adapted step sizes, and split-R̂ and effective sample size of the
/// energy (and of the mean interatomic distance for particles). Chains that
/// have not mixed — a split-R̂ above `max_rhat` (1.1; Gelman and Rubin's
/// classic bar, Vehtari et al. now ask 1.01 of longer chains), such as
/// chains jammed in clashing configurations with their step sizes adapted
/// to nothing — fail the stage rather than cache a biased reference;
/// `max_rhat: 0` keeps them.
///
/// * `method: file`: the configurations of a table bound to input `data`
///   (any format a file input reads: DEM's `.npy` evaluation splits, a
///   Parquet or CSV file, another stage's table), as DEM loads its test and
///   validation sets: the first `n_samples` rows, and for particle systems
///   each configuration's centre of mass removed (DEM's `remove_mean` on
///   load). The coordinates are the table's columns named as this stage
///   writes them when it has them, else its float columns in order (an
///   `.npy` array's `x0, x1, …`), which must number the target's dimension.
///
/// `draw` selects an independent stream under the same seed (draw 1 and 2
/// give two independent reference sets for a floor). Streams are ChaCha8,
/// not torch's.
pub struct Boltzmann;

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct BoltzmannParams {
        energy: String = (ParamType::Str { choices: &["gmm40", "dw4", "lj13", "lj55"] }, Default::Str("gmm40"), "the target: `gmm40` (DEM's 40-mode mixture in 2-D), `dw4` (4 particles, 2-D double wells), `lj13` / `lj55` (Lennard-Jones clusters in 3-D)"),
        method: String = (ParamType::Str { choices: &["exact", "mcmc", "file"] }, Default::Str("exact"), "`exact` (GMM-40 only), `mcmc` (MALA chains) or `file` (the configurations of input `data`, mean removed as DEM loads its sets)"),
        n_samples: usize = (ParamType::Int { min: 1, max: 100_000_000 }, Default::Int(1000), "samples (MCMC: a multiple of `chains`; file: the first n_samples rows, which the file must have)"),
        draw: i64 = (ParamType::Int { min: 0, max: 1_000_000 }, Default::Int(0), "independent draw number under the same seed"),
        chains: usize = (ParamType::Int { min: 1, max: 10_000_000 }, Default::Int(100), "MCMC: parallel chains"),
        burn_in: usize = (ParamType::Int { min: 0, max: 100_000_000 }, Default::Int(10_000), "MCMC: steps per chain before the first kept draw (the step size adapts during these)"),
        thin: usize = (ParamType::Int { min: 1, max: 1_000_000 }, Default::Int(100), "MCMC: steps between kept draws"),
        step: f64 = (ParamType::Float { min: 1e-12, max: 1e6 }, Default::Float(1e-3), "MCMC: the initial MALA step size ε"),
        target_accept: f64 = (ParamType::Float { min: 0.0, max: 1.0 }, Default::Float(MALA_TARGET_ACCEPT), "MCMC: adapt ε during burn-in towards this acceptance rate (0: keep ε)"),
        init: String = (ParamType::Str { choices: &["prior", "minimum"] }, Default::Str("prior"), "MCMC: chains start from the prior, or (Lennard-Jones) from the perturbed global minimum"),
        init_scale: f64 = (ParamType::Float { min: 0.0, max: 1e6 }, Default::Float(1.0), "MCMC: the prior's standard deviation, or the perturbation of the minimum"),
        max_rhat: f64 = (ParamType::Float { min: 0.0, max: 1e6 }, Default::Float(1.1), "MCMC: fail when the split-R̂ of a reported statistic exceeds this (chains that have not mixed, or are stuck); 0: report only"),
    }
}
static INPUTS: &[InputDef] = &[InputDef {
    name: "data",
    media: Media::Table,
    required: false,
    doc: "method: file only: the configurations, one per row (e.g. { file: ../data/dem/test_split_DW4.npy })",
}];
static OUTPUTS: &[OutputDef] = &[
    OutputDef {
        name: "samples",
        media: Media::Table,
        doc: "GMM-40: x, y, mode (exact) or chain, energy (MCMC); particles: p{i}_x, p{i}_y[, p{i}_z], chain, energy",
    },
    OutputDef {
        name: "diagnostics",
        media: Media::Table,
        doc: "statistic, value: energy mean and quartiles; MCMC acceptance, step sizes, split-R̂ and ESS",
    },
];

/// The target by name: GMM-40 or a particle system.
pub enum Target {
    Gmm(Gmm),
    Particles(Particles),
}

impl Target {
    pub fn by_name(name: &str) -> Option<Target> {
        match name {
            "gmm40" => Some(Target::Gmm(Gmm::dem40())),
            other => Particles::by_name(other).map(Target::Particles),
        }
    }
    pub fn energy(&self) -> &dyn Energy {
        match self {
            Target::Gmm(g) => g,
            Target::Particles(p) => p,
        }
    }
    /// The sample table's coordinate columns.
    pub fn columns(&self) -> Vec<String> {
        match self {
            Target::Gmm(_) => vec!["x".into(), "y".into()],
            Target::Particles(p) => particle_columns(p.n, p.d),
        }
    }
}

/// `p{i}_x, p{i}_y[, p{i}_z]` for `n` particles in `d ≤ 3` dimensions.
pub fn particle_columns(n: usize, d: usize) -> Vec<String> {
    (0..n).flat_map(|i| ["x", "y", "z"][..d].iter().map(move |a| format!("p{i}_{a}"))).collect()
}

/// The mean, quartiles and (for particles) the distance summary of a set.
fn summary(energies: &[f64]) -> Vec<(String, f64)> {
    let mut e = energies.to_vec();
    e.sort_by(f64::total_cmp);
    let q = |f: f64| e[((e.len() - 1) as f64 * f).round() as usize];
    vec![
        ("energy_mean".into(), e.iter().sum::<f64>() / e.len() as f64),
        ("energy_q25".into(), q(0.25)),
        ("energy_median".into(), q(0.5)),
        ("energy_q75".into(), q(0.75)),
    ]
}

impl Stage for Boltzmann {
    describe!(Kind::Generate, "boltzmann", version 3, params BoltzmannParams, INPUTS, OUTPUTS);
    fn needs_inputs(&self, p: &crate::engine::params::Params) -> Vec<(&'static str, String)> {
        match BoltzmannParams::read(p).method == "file" {
            true => vec![("data", "`method: file` reads its configurations from it".into())],
            false => Vec::new(),
        }
    }
    fn check_input(
        &self,
        p: &crate::engine::params::Params,
        input: &str,
        _producer: &dyn Stage,
        _producer_params: &crate::engine::params::Params,
    ) -> Option<String> {
        let p = BoltzmannParams::read(p);
        (input == "data" && p.method != "file")
            .then(|| format!("only `method: file` reads `data`; this stage samples by `{}`", p.method))
    }
    /// MCMC references checkpoint between segments of their chains.
    fn checkpoints(&self) -> bool {
        true
    }
    fn output_columns(&self, output: &str) -> Option<&'static [&'static str]> {
        (output == "diagnostics").then_some(&["statistic", "value"][..])
    }
    fn memory_bytes(&self, p: &crate::engine::params::Params) -> Option<(&'static str, u64)> {
        Some(("n_samples", crate::engine::stage::rows_memory(p, BYTES_PER_ROW)))
    }
    fn check_params(&self, p: &crate::engine::params::Params) -> Vec<(&'static str, String)> {
        let p = BoltzmannParams::read(p);
        let mut errors = Vec::new();
        if p.method == "exact" && p.energy != "gmm40" {
            errors.push((
                "method",
                format!("`{}` has no exact sampler; use `method: mcmc` (exact sampling exists for gmm40)", p.energy),
            ));
        }
        if p.method == "mcmc" && !p.n_samples.is_multiple_of(p.chains) {
            errors.push((
                "n_samples",
                format!("n_samples ({}) must be a multiple of chains ({})", p.n_samples, p.chains),
            ));
        }
        if p.method == "mcmc" && p.init == "minimum" && !p.energy.starts_with("lj") {
            errors.push(("init", format!("`init: minimum` is for the Lennard-Jones clusters, not `{}`", p.energy)));
        }
        errors
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let p = BoltzmannParams::read(ctx.params);
        let target =
            Target::by_name(&p.energy).ok_or_else(|| StageError::Failed(format!("unknown energy `{}`", p.energy)))?;
        let (samples, diagnostics) = match (&target, p.method.as_str()) {
            (Target::Gmm(gmm), "exact") => {
                let mut r = rng(ctx.seed, &format!("boltzmann/{}/{}", p.energy, p.draw));
                let (xs, components) = gmm.sample_labelled(p.n_samples, &mut r);
                let energies: Vec<f64> = xs.chunks(2).map(|x| -gmm.log_prob(x)).collect();
                let (x, y): (Vec<f64>, Vec<f64>) = xs.chunks(2).map(|v| (v[0], v[1])).unzip();
                let mode = components.into_iter().map(|k| k as i64).collect();
                let table = Table::new()
                    .with("x", ColumnData::F64(x))
                    .with("y", ColumnData::F64(y))
                    .with("mode", ColumnData::I64(mode));
                (table, summary(&energies))
            }
            (_, "mcmc") => run_mcmc(&p, &target, ctx)?,
            (_, "file") => from_file(&p, &target, ctx.table("data")?)?,
            _ => return Err(StageError::Failed(format!("`{}` has no exact sampler", p.energy))),
        };
        let diagnostics = Table::new()
            .with("statistic", ColumnData::Str(diagnostics.iter().map(|r| r.0.clone()).collect()))
            .with("value", ColumnData::F64(diagnostics.iter().map(|r| r.1).collect()));
        Ok([
            ("samples".to_string(), Artifact::Table(samples)),
            ("diagnostics".to_string(), Artifact::Table(diagnostics)),
        ]
        .into_iter()
        .collect())
    }
}

/// `method: file`: the first `n_samples` configurations of `data`, mean-free
/// for particle systems, with their energies.
fn from_file(p: &BoltzmannParams, target: &Target, data: &Table) -> Result<(Table, Vec<(String, f64)>), StageError> {
    let names = target.columns();
    let floats = data.float_columns();
    let cols = match names.iter().all(|n| floats.contains(n)) {
        true => names.clone(),
        false => floats,
    };
    if cols.len() != names.len() {
        return Err(StageError::Failed(format!(
            "`data` has {} float columns ({}); `{}` configurations have {} coordinates (name them {} or give exactly {} float columns)",
            cols.len(),
            cols.join(", "),
            p.energy,
            names.len(),
            names.join(", "),
            names.len()
        )));
    }
    let rows = data.num_rows();
    if rows < p.n_samples {
        return Err(StageError::Failed(format!("`data` has {rows} rows; n_samples asks for {}", p.n_samples)));
    }
    let dim = names.len();
    let mut x = data.rows_f64(&cols)?;
    x.truncate(p.n_samples * dim);
    if let Some(bad) = x.iter().position(|v| !v.is_finite()) {
        return Err(StageError::Failed(format!(
            "row {} of `data` has a coordinate that is not finite ({})",
            bad / dim,
            x[bad]
        )));
    }
    let energy = target.energy();
    if let Some((n, d)) = energy.particles() {
        remove_mean(&mut x, n, d);
    }
    let energies: Vec<f64> = x.chunks(dim).map(|c| -energy.log_prob(c)).collect();
    let table = super::sample::points_table(target, &x, 1.0).with("energy", ColumnData::F64(energies.clone()));
    let mut diagnostics = summary(&energies);
    diagnostics.push(("rows".into(), p.n_samples as f64));
    Ok((table, diagnostics))
}

/// The chains' starting points, `chains × dim`.
fn initial_states(p: &BoltzmannParams, target: &Target, seed: u64) -> Vec<f64> {
    let energy = target.energy();
    let dim = energy.dim();
    let name = format!("boltzmann/{}/{}/init", p.energy, p.draw);
    let centre = match (target, p.init.as_str()) {
        (Target::Particles(lj), "minimum") => {
            let shells = if lj.n == 13 { 1 } else { 2 };
            let mut x = icosahedron(shells, 1.0);
            relax(&mut x, &|x, g| lj.energy(x, Some(g)), 1e-8, 100_000);
            x
        }
        _ => vec![0.0; dim],
    };
    let mut out = Vec::with_capacity(p.chains * dim);
    for c in 0..p.chains {
        let mut r = particle_rng(seed, &name, c);
        out.extend(centre.iter().map(|m| m + p.init_scale * r.sample::<f64, _>(StandardNormal)));
    }
    if let Some((n, d)) = energy.particles() {
        remove_mean(&mut out, n, d);
    }
    out
}

fn run_mcmc(p: &BoltzmannParams, target: &Target, ctx: &StageCtx) -> Result<(Table, Vec<(String, f64)>), StageError> {
    let energy = target.energy();
    let dim = energy.dim();
    let init = initial_states(p, target, ctx.seed);
    let cfg = MalaConfig {
        burn_in: p.burn_in,
        draws: p.n_samples / p.chains,
        thin: p.thin,
        step: p.step,
        target_accept: (p.target_accept > 0.0).then_some(p.target_accept),
    };
    let name = format!("boltzmann/{}/{}/chain", p.energy, p.draw);
    let rngs = (0..p.chains).map(|c| particle_rng(ctx.seed, &name, c)).collect();
    // In segments of 100 steps of every chain, each boundary a checkpoint
    // (the chains' states and streams' positions) when one is due.
    let total = (cfg.burn_in + cfg.draws * cfg.thin) as u64;
    let resume = ctx
        .checkpoint
        .resume_with(|b| decode::<Vec<ChainState>>(b).filter(|s| ChainState::fit(s, p.chains, dim, total as usize)))
        .map(|(_, s)| s);
    let mut boundary =
        |t: usize, states: &[ChainState]| ctx.checkpoint.at_boundary(t as u64, total, || encode(&states));
    let chains =
        mala_in_segments(energy, &init, &cfg, rngs, resume, 100, ctx.progress, &mut boundary).map_err(|e| match e {
            Stopped::Mcmc(e) => StageError::Failed(e.to_string()),
            Stopped::At(e) => e,
        })?;

    let mut columns: Vec<Vec<f64>> = vec![Vec::with_capacity(p.n_samples); dim];
    let mut chain_col = Vec::with_capacity(p.n_samples);
    let mut energies = Vec::with_capacity(p.n_samples);
    for (c, ch) in chains.iter().enumerate() {
        for (x, lp) in ch.x.chunks(dim).zip(&ch.log_prob) {
            x.iter().zip(columns.iter_mut()).for_each(|(v, col)| col.push(*v));
            chain_col.push(c as i64);
            energies.push(-lp);
        }
    }
    let mut table = Table::new();
    for (name, col) in target.columns().iter().zip(columns) {
        table = table.with(name, ColumnData::F64(col));
    }
    table = table.with("chain", ColumnData::I64(chain_col)).with("energy", ColumnData::F64(energies.clone()));

    let mut diag = summary(&energies);
    let mut steps: Vec<f64> = chains.iter().map(|c| c.step).collect();
    steps.sort_by(f64::total_cmp);
    diag.push(("acceptance".into(), chains.iter().map(|c| c.acceptance).sum::<f64>() / chains.len() as f64));
    diag.push(("acceptance_min".into(), chains.iter().map(|c| c.acceptance).fold(f64::INFINITY, f64::min)));
    diag.push(("step_min".into(), steps[0]));
    diag.push(("step_median".into(), steps[steps.len() / 2]));
    diag.push(("step_max".into(), steps[steps.len() - 1]));
    let per_chain_energy: Vec<Vec<f64>> = chains.iter().map(|c| c.log_prob.iter().map(|l| -l).collect()).collect();
    let (rhat, ess) = rhat_ess(&per_chain_energy);
    let mut rhats = vec![("energy", rhat)];
    diag.push(("rhat_energy".into(), rhat));
    diag.push(("ess_energy".into(), ess));
    if let Target::Particles(sys) = target {
        let per_chain_dist: Vec<Vec<f64>> = chains
            .iter()
            .map(|c| {
                c.x.chunks(dim)
                    .map(|x| {
                        let mut d = Vec::new();
                        sys.distances(x, &mut d);
                        d.iter().sum::<f64>() / d.len() as f64
                    })
                    .collect()
            })
            .collect();
        let (rhat, ess) = rhat_ess(&per_chain_dist);
        rhats.push(("mean interatomic distance", rhat));
        diag.push(("rhat_mean_distance".into(), rhat));
        diag.push(("ess_mean_distance".into(), ess));
    }
    let unmixed: Vec<String> = rhats
        .iter()
        .filter(|(_, r)| p.max_rhat > 0.0 && *r > p.max_rhat)
        .map(|(what, r)| format!("{r:.3} for the {what}"))
        .collect();
    if !unmixed.is_empty() {
        let q = |name: &str| {
            let v = diag.iter().find(|(k, _)| k == name).map_or(f64::NAN, |(_, v)| *v);
            if v.abs() < 1e4 { format!("{v:.2}") } else { format!("{v:.3e}") }
        };
        return Err(StageError::Failed(format!(
            "the {} chains have not mixed: split-R̂ {} {} above max_rhat {} (kept energies' quartiles {} … {}; \
             adapted step sizes {:.3e} … {:.3e}, a chain stuck where only vanishing steps are accepted shows as a tiny one). \
             Lengthen burn_in, start the chains elsewhere (init, init_scale), or set max_rhat: 0 to keep them",
            p.chains,
            unmixed.join(" and "),
            if unmixed.len() == 1 { "is" } else { "are" },
            p.max_rhat,
            q("energy_q25"),
            q("energy_q75"),
            steps[0],
            steps[steps.len() - 1],
        )));
    }
    diag.push(("chains".into(), p.chains as f64));
    diag.push(("draws_per_chain".into(), cfg.draws as f64));
    diag.push(("energy_evaluations".into(), (p.chains * (p.burn_in + cfg.draws * p.thin + 1)) as f64));
    Ok((table, diag))
}
