//! Markov chain Monte Carlo for densities known by their energy: many
//! parallel Metropolis-adjusted Langevin (MALA) chains with step-size
//! adaptation during burn-in, thinning, and the convergence diagnostics a
//! reader needs to trust the result (split-R̂ and effective sample size).
//!
//! DEM evaluates DW-4 and LJ-13/55 against MCMC sets it downloads (Klein et
//! al. 2023); scoreflow builds its own, cached like any stage, so a long
//! chain is paid once.
//!
//! **MALA.** From `x` with `g = ∇ log p(x)` and step `ε`, propose
//! `y = x + ε g + √(2ε) ξ` and accept with probability
//! `min(1, p(y) q(x|y) / (p(x) q(y|x)))`, `q(a|b) ∝ exp(−‖a − b − ε∇log p(b)‖² / 4ε)`.
//! For a particle system ([`Energy::particles`]) the noise has its centre of
//! mass removed, so chains stay in the mean-free subspace (the energies are
//! translation-invariant and their gradients mean-free, so the proposal is
//! the same MALA restricted to that subspace, and the acceptance ratio is
//! computed there).
//!
//! **Adaptation.** During burn-in each chain moves `log ε` by
//! `γ_t (α_t − α*)`, `γ_t = 1/(1 + t)^{0.6}` (Robbins–Monro; `α*` = 0.574,
//! MALA's optimal acceptance); after burn-in `ε` is frozen, so the kept draws
//! come from a fixed, valid Markov kernel.
//!
//! **Diagnostics** (Vehtari et al. 2021, without rank normalisation): split-R̂
//! (each chain's kept draws cut in two) and the multi-chain effective sample
//! size with Geyer's initial monotone sequence, on any scalar statistic of the
//! draws (the stage reports the energy, and for particles the mean
//! interatomic distance).
//!
//! **Failure.** A NaN log-density or a non-finite gradient at a chain's
//! current or proposed state, a state that runs off to infinity, or a chain
//! that accepts nothing after burn-in stops the run with the chain and step
//! named.

use rand::Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

use crate::numerics::energy::Energy;
use crate::numerics::energy::particles::remove_mean;
use crate::numerics::rng::Position;
use rand_chacha::ChaCha8Rng;

/// MALA's asymptotically optimal acceptance rate (Roberts & Rosenthal 1998).
pub const MALA_TARGET_ACCEPT: f64 = 0.574;

/// How to run the chains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MalaConfig {
    /// Steps before the first kept draw; the step size adapts during these.
    pub burn_in: usize,
    /// Draws kept per chain.
    pub draws: usize,
    /// Steps between two kept draws.
    pub thin: usize,
    /// The initial step size ε.
    pub step: f64,
    /// Adapt ε during burn-in towards this acceptance rate; `None`: keep ε.
    pub target_accept: Option<f64>,
}

/// Why chains could not be run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum McmcError {
    #[error("chain {chain} diverged at step {step}: {what}")]
    Diverged { chain: usize, step: usize, what: String },
}

/// One chain's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    /// `draws × dim`, row-major.
    pub x: Vec<f64>,
    /// `log p` of each kept draw.
    pub log_prob: Vec<f64>,
    /// Acceptance rate over the kept part (after burn-in).
    pub acceptance: f64,
    /// The step size after adaptation.
    pub step: f64,
}

/// Run one MALA chain per row of `init` (`chains × dim`), chain `c` drawing
/// from `rngs[c]`, in parallel; the result does not depend on the thread count.
pub fn mala<R: Rng + Send>(
    energy: &dyn Energy,
    init: &[f64],
    cfg: &MalaConfig,
    rngs: Vec<R>,
    progress: &(dyn Fn(f64) + Sync),
) -> Result<Vec<Chain>, McmcError> {
    let dim = energy.dim();
    assert_eq!(init.len(), rngs.len() * dim);
    let n_chains = rngs.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let total = cfg.burn_in + cfg.draws * cfg.thin;
    init.par_chunks(dim)
        .zip(rngs.into_par_iter())
        .enumerate()
        .map(|(c, (x0, mut rng))| {
            let mut state = ChainState::start(energy, x0, cfg, c)?;
            state.advance(energy, cfg, &mut rng, c, total)?;
            let k = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(k as f64 / n_chains as f64);
            state.finish(cfg, c)
        })
        .collect()
}

/// Why [`mala_in_segments`] stopped: a chain failed, or the boundary
/// callback asked to stop.
#[derive(Debug)]
pub enum Stopped<E> {
    Mcmc(McmcError),
    At(E),
}

/// What [`mala_in_segments`] calls at each boundary: step `t`, the chains.
pub type Boundary<'a, E> = dyn FnMut(usize, &[ChainState]) -> Result<(), E> + 'a;

/// [`mala`] with ChaCha streams, in segments of `segment` steps of every
/// chain: before each segment, `boundary(t, states)` sees the chains at step
/// `t` (each with its stream's position, so a caller can save them and, given
/// them back as `resume`, continue exactly); its error stops the run. The
/// result is [`mala`]'s, whatever the segments, the resumes and the threads.
#[allow(clippy::too_many_arguments)]
pub fn mala_in_segments<E: Send>(
    energy: &dyn Energy,
    init: &[f64],
    cfg: &MalaConfig,
    mut rngs: Vec<ChaCha8Rng>,
    resume: Option<Vec<ChainState>>,
    segment: usize,
    progress: &(dyn Fn(f64) + Sync),
    boundary: &mut Boundary<'_, E>,
) -> Result<Vec<Chain>, Stopped<E>> {
    let dim = energy.dim();
    assert_eq!(init.len(), rngs.len() * dim);
    let total = cfg.burn_in + cfg.draws * cfg.thin;
    let mut states = match resume {
        Some(states) => {
            for (st, rng) in states.iter().zip(rngs.iter_mut()) {
                st.rng.seek(rng);
            }
            states
        }
        None => init
            .par_chunks(dim)
            .enumerate()
            .map(|(c, x0)| ChainState::start(energy, x0, cfg, c))
            .collect::<Result<_, _>>()
            .map_err(Stopped::Mcmc)?,
    };
    let mut t = states.first().map_or(total, |s| s.t);
    while t < total {
        for (st, rng) in states.iter_mut().zip(&rngs) {
            st.rng = Position::of(rng);
        }
        boundary(t, &states).map_err(Stopped::At)?;
        let until = (t + segment.max(1)).min(total);
        states
            .par_iter_mut()
            .zip(rngs.par_iter_mut())
            .enumerate()
            .try_for_each(|(c, (st, rng))| st.advance(energy, cfg, rng, c, until))
            .map_err(Stopped::Mcmc)?;
        t = until;
        progress(t as f64 / total as f64);
    }
    states.into_iter().enumerate().map(|(c, st)| st.finish(cfg, c)).collect::<Result<_, _>>().map_err(Stopped::Mcmc)
}

/// One MALA chain between two steps: everything its next steps depend on.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChainState {
    /// Steps taken.
    pub t: usize,
    x: Vec<f64>,
    g: Vec<f64>,
    lp: f64,
    log_step: f64,
    accepted: usize,
    kept_x: Vec<f64>,
    kept_lp: Vec<f64>,
    /// Where the chain's stream is (set at each segment boundary).
    pub rng: Position,
}

impl ChainState {
    /// Whether `states` (from a checkpoint) are `chains` chains in `dim`
    /// dimensions at one step at most `total`, their kept draws whole: the
    /// state a run of these params could have saved.
    pub fn fit(states: &[ChainState], chains: usize, dim: usize, total: usize) -> bool {
        states.len() == chains
            && states.iter().all(|s| {
                s.t == states[0].t
                    && s.t <= total
                    && s.x.len() == dim
                    && s.g.len() == dim
                    && s.kept_x.len() == s.kept_lp.len() * dim
                    && s.log_step.is_finite()
            })
    }

    fn start(energy: &dyn Energy, x0: &[f64], cfg: &MalaConfig, chain: usize) -> Result<ChainState, McmcError> {
        let dim = energy.dim();
        let mut x = x0.to_vec();
        if let Some((n, d)) = energy.particles() {
            remove_mean(&mut x, n, d);
        }
        let mut g = vec![0.0; dim];
        let lp = energy.grad_log_prob(&x, &mut g);
        let bad = |v: &[f64]| v.iter().any(|a| !a.is_finite());
        if !lp.is_finite() || bad(&g) || bad(&x) {
            return Err(McmcError::Diverged {
                chain,
                step: 0,
                what: format!("the initial state has log-density {lp} (or a non-finite gradient)"),
            });
        }
        Ok(ChainState {
            t: 0,
            x,
            g,
            lp,
            log_step: cfg.step.ln(),
            accepted: 0,
            kept_x: Vec::with_capacity(cfg.draws * dim),
            kept_lp: Vec::new(),
            rng: Position::default(),
        })
    }

    /// Take steps until `until`.
    fn advance<R: Rng>(
        &mut self,
        energy: &dyn Energy,
        cfg: &MalaConfig,
        rng: &mut R,
        chain: usize,
        until: usize,
    ) -> Result<(), McmcError> {
        let dim = energy.dim();
        let particles = energy.particles();
        let bad = |v: &[f64]| v.iter().any(|a| !a.is_finite());
        let (mut y, mut gy, mut xi) = (vec![0.0; dim], vec![0.0; dim], vec![0.0; dim]);
        let ChainState { t: t0, x, g, lp, log_step, accepted, kept_x, kept_lp, .. } = self;
        for t in *t0..until {
            let eps = log_step.exp();
            xi.iter_mut().for_each(|v| *v = rng.sample(StandardNormal));
            if let Some((n, d)) = particles {
                remove_mean(&mut xi, n, d);
            }
            let s = (2.0 * eps).sqrt();
            for i in 0..dim {
                y[i] = x[i] + eps * g[i] + s * xi[i];
            }
            let lpy = energy.grad_log_prob(&y, &mut gy);
            if lpy.is_nan() || bad(&gy) && lpy.is_finite() {
                return Err(McmcError::Diverged {
                    chain,
                    step: t + 1,
                    what: format!("the log-density or its gradient is not finite at a proposal (log p = {lpy})"),
                });
            }
            // log q(x|y) − log q(y|x); −∞ proposals (zero density) are rejected.
            let alpha = if lpy == f64::NEG_INFINITY {
                0.0
            } else {
                let (mut fwd, mut rev) = (0.0, 0.0);
                for i in 0..dim {
                    let a = y[i] - x[i] - eps * g[i];
                    let b = x[i] - y[i] - eps * gy[i];
                    fwd += a * a;
                    rev += b * b;
                }
                let log_a = lpy - *lp + (fwd - rev) / (4.0 * eps);
                if log_a.is_nan() {
                    return Err(McmcError::Diverged {
                        chain,
                        step: t + 1,
                        what: format!("the acceptance ratio is NaN (log p = {lp} → {lpy})"),
                    });
                }
                log_a.min(0.0).exp()
            };
            if rng.random::<f64>() < alpha {
                std::mem::swap(x, &mut y);
                std::mem::swap(g, &mut gy);
                *lp = lpy;
                if t >= cfg.burn_in {
                    *accepted += 1;
                }
            }
            if bad(x) || !lp.is_finite() {
                return Err(McmcError::Diverged {
                    chain,
                    step: t + 1,
                    what: format!("the state ran off to log p = {lp}"),
                });
            }
            if t < cfg.burn_in {
                if let Some(target) = cfg.target_accept {
                    *log_step += (alpha - target) / (1.0 + t as f64).powf(0.6);
                }
            } else if (t + 1 - cfg.burn_in).is_multiple_of(cfg.thin) {
                kept_x.extend_from_slice(x);
                kept_lp.push(*lp);
            }
        }
        *t0 = until.max(*t0);
        Ok(())
    }

    /// The chain's result once every step is taken.
    fn finish(self, cfg: &MalaConfig, chain: usize) -> Result<Chain, McmcError> {
        let total = cfg.burn_in + cfg.draws * cfg.thin;
        let kept_steps = total - cfg.burn_in;
        if kept_steps >= 100 && self.accepted == 0 {
            return Err(McmcError::Diverged {
                chain,
                step: total,
                what: format!(
                    "it accepted no proposal in the {kept_steps} steps after burn-in (step size {:.3e})",
                    self.log_step.exp()
                ),
            });
        }
        Ok(Chain {
            x: self.kept_x,
            log_prob: self.kept_lp,
            acceptance: if kept_steps > 0 { self.accepted as f64 / kept_steps as f64 } else { f64::NAN },
            step: self.log_step.exp(),
        })
    }
}

/// Split-R̂ and the multi-chain effective sample size of one scalar statistic,
/// `chains[c][t]` (equal lengths, at least 4 draws each).
pub fn rhat_ess(chains: &[Vec<f64>]) -> (f64, f64) {
    let n = chains.iter().map(Vec::len).min().unwrap_or(0);
    if chains.is_empty() || n < 4 {
        return (f64::NAN, f64::NAN);
    }
    // Split-R̂ on half-chains.
    let half = n / 2;
    let halves: Vec<&[f64]> = chains.iter().flat_map(|c| [&c[..half], &c[n - half..n]]).collect();
    let (w, var_plus) = between_within(&halves);
    let rhat = (var_plus / w).sqrt();

    // ESS: autocorrelation combined across chains (Stan's formula).
    let m = chains.len();
    let acovs: Vec<Vec<f64>> = chains.iter().map(|c| autocov(&c[..n])).collect();
    let chain_means: Vec<f64> = chains.iter().map(|c| c[..n].iter().sum::<f64>() / n as f64).collect();
    let mean_var = acovs.iter().map(|a| a[0]).sum::<f64>() / m as f64 * n as f64 / (n as f64 - 1.0);
    let mut var_plus = mean_var * (n as f64 - 1.0) / n as f64;
    if m > 1 {
        let grand = chain_means.iter().sum::<f64>() / m as f64;
        var_plus += chain_means.iter().map(|v| (v - grand).powi(2)).sum::<f64>() / (m as f64 - 1.0);
    }
    if var_plus <= 0.0 {
        return (rhat, f64::NAN);
    }
    let rho = |t: usize| 1.0 - (mean_var - acovs.iter().map(|a| a[t]).sum::<f64>() / m as f64) / var_plus;
    // Geyer's initial positive, monotone sequence of pair sums.
    let mut tau = -1.0;
    let mut prev = f64::INFINITY;
    let mut t = 0;
    while t + 1 < n {
        let pair = rho(t) + rho(t + 1);
        if pair <= 0.0 {
            break;
        }
        let pair = pair.min(prev);
        tau += 2.0 * pair;
        prev = pair;
        t += 2;
    }
    let ess = (m * n) as f64 / tau.max(1.0 / ((m * n) as f64).log10().max(1.0));
    (rhat, ess)
}

/// (mean within-chain variance W, pooled variance estimate var⁺).
fn between_within(chains: &[&[f64]]) -> (f64, f64) {
    let m = chains.len() as f64;
    let n = chains[0].len() as f64;
    let means: Vec<f64> = chains.iter().map(|c| c.iter().sum::<f64>() / n).collect();
    let grand = means.iter().sum::<f64>() / m;
    let w = chains
        .iter()
        .zip(&means)
        .map(|(c, mu)| c.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / (n - 1.0))
        .sum::<f64>()
        / m;
    let b_over_n = means.iter().map(|v| (v - grand).powi(2)).sum::<f64>() / (m - 1.0).max(1.0);
    (w, (n - 1.0) / n * w + b_over_n)
}

/// Biased autocovariance at every lag (`1/n` normalisation), by direct sums.
fn autocov(x: &[f64]) -> Vec<f64> {
    let n = x.len();
    let mu = x.iter().sum::<f64>() / n as f64;
    let c: Vec<f64> = x.iter().map(|v| v - mu).collect();
    (0..n).map(|t| c[..n - t].iter().zip(&c[t..]).map(|(a, b)| a * b).sum::<f64>() / n as f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// A correlated 2-D Gaussian, `N(μ, Σ)`.
    struct Gauss2 {
        mu: [f64; 2],
        prec: [[f64; 2]; 2],
    }
    impl Energy for Gauss2 {
        fn dim(&self) -> usize {
            2
        }
        fn log_prob(&self, x: &[f64]) -> f64 {
            let d = [x[0] - self.mu[0], x[1] - self.mu[1]];
            -0.5 * (0..2).map(|i| (0..2).map(|j| d[i] * self.prec[i][j] * d[j]).sum::<f64>()).sum::<f64>()
        }
        fn grad_log_prob(&self, x: &[f64], g: &mut [f64]) -> f64 {
            let d = [x[0] - self.mu[0], x[1] - self.mu[1]];
            for (gi, row) in g.iter_mut().zip(&self.prec) {
                *gi = -(row[0] * d[0] + row[1] * d[1]);
            }
            self.log_prob(x)
        }
    }

    fn rngs(n: usize, seed: u64) -> Vec<ChaCha8Rng> {
        (0..n).map(|c| ChaCha8Rng::seed_from_u64(seed * 1000 + c as u64)).collect()
    }

    /// MALA on a correlated 2-D Gaussian recovers its mean and covariance;
    /// the adapted acceptance sits near 0.574; R̂ ≈ 1 and the ESS is sane.
    #[test]
    fn mala_recovers_a_gaussians_moments() {
        // Σ = [[2, 1.2], [1.2, 1]]; its inverse:
        let det = 2.0 * 1.0 - 1.2 * 1.2;
        let target = Gauss2 { mu: [3.0, -1.0], prec: [[1.0 / det, -1.2 / det], [-1.2 / det, 2.0 / det]] };
        let chains = 64;
        let init: Vec<f64> = (0..chains).flat_map(|c| [c as f64 * 0.1 - 3.0, 2.0]).collect();
        let cfg =
            MalaConfig { burn_in: 1000, draws: 500, thin: 2, step: 0.05, target_accept: Some(MALA_TARGET_ACCEPT) };
        let out = mala(&target, &init, &cfg, rngs(chains, 1), &|_| {}).unwrap();
        let all: Vec<f64> = out.iter().flat_map(|c| c.x.iter().copied()).collect();
        let n = (all.len() / 2) as f64;
        let mean = [0, 1].map(|k| all.iter().skip(k).step_by(2).sum::<f64>() / n);
        let cov =
            |a: usize, b: usize| all.chunks(2).map(|p| (p[a] - mean[a]) * (p[b] - mean[b])).sum::<f64>() / (n - 1.0);
        let acc = out.iter().map(|c| c.acceptance).sum::<f64>() / chains as f64;
        assert!((acc - MALA_TARGET_ACCEPT).abs() < 0.08, "acceptance {acc}");
        let (rhat, ess) = rhat_ess(&out.iter().map(|c| c.x.iter().step_by(2).copied().collect()).collect::<Vec<_>>());
        assert!(rhat < 1.02, "R̂ {rhat}");
        assert!(ess > 1000.0 && ess <= 1.5 * (chains * cfg.draws) as f64, "ESS {ess}");
        // Within four Monte Carlo standard errors (ESS-based) of the truth.
        let se = |var: f64| 4.0 * (var / ess).sqrt();
        assert!((mean[0] - 3.0).abs() < se(2.0) && (mean[1] + 1.0).abs() < se(1.0), "{mean:?}, ESS {ess}");
        assert!((cov(0, 0) - 2.0).abs() < 0.15 && (cov(1, 1) - 1.0).abs() < 0.08 && (cov(0, 1) - 1.2).abs() < 0.1);
    }

    /// In segments, stopped and resumed from the saved states (through CBOR,
    /// as a checkpoint does), the chains are the ones `mala` gives.
    #[test]
    fn segments_and_resumes_give_malas_chains() {
        let target = Gauss2 { mu: [1.0, -0.5], prec: [[2.0, 0.5], [0.5, 1.0]] };
        let cfg = MalaConfig { burn_in: 150, draws: 40, thin: 5, step: 0.3, target_accept: Some(0.574) };
        let init: Vec<f64> = (0..6).flat_map(|c| [c as f64 * 0.3 - 1.0, 1.5]).collect();
        let streams = || (0..6).map(|c| ChaCha8Rng::seed_from_u64(100 + c)).collect::<Vec<_>>();
        let want = mala(&target, &init, &cfg, streams(), &|_| {}).unwrap();
        for segment in [1, 7, 100, 1000] {
            let got =
                mala_in_segments::<()>(&target, &init, &cfg, streams(), None, segment, &|_| {}, &mut |_, _| Ok(()))
                    .unwrap();
            assert_eq!(got, want, "segment {segment}");
        }
        // Stop at step 200, keep the states as bytes, resume from them.
        let mut saved = None;
        let stop = |t: usize, st: &[ChainState]| {
            if t == 200 {
                let mut bytes = Vec::new();
                ciborium::into_writer(&st, &mut bytes).unwrap();
                saved = Some(bytes);
                return Err(t);
            }
            Ok(())
        };
        let mut stop = stop;
        let r = mala_in_segments(&target, &init, &cfg, streams(), None, 50, &|_| {}, &mut stop);
        assert!(matches!(r, Err(Stopped::At(200))));
        let states: Vec<ChainState> = ciborium::from_reader(saved.unwrap().as_slice()).unwrap();
        let got =
            mala_in_segments::<()>(&target, &init, &cfg, streams(), Some(states), 50, &|_| {}, &mut |_, _| Ok(()))
                .unwrap();
        assert_eq!(got, want);
    }

    /// Independent draws have ESS ≈ their number; stuck chains have R̂ ≫ 1.
    #[test]
    fn diagnostics_on_known_cases() {
        let mut r = ChaCha8Rng::seed_from_u64(3);
        let iid: Vec<Vec<f64>> = (0..8).map(|_| (0..500).map(|_| r.sample(StandardNormal)).collect()).collect();
        let (rhat, ess) = rhat_ess(&iid);
        assert!((rhat - 1.0).abs() < 0.02, "{rhat}");
        assert!((3000.0..5500.0).contains(&ess), "{ess}");
        let stuck: Vec<Vec<f64>> =
            (0..4).map(|c| (0..200).map(|_| c as f64 * 3.0 + r.sample::<f64, _>(StandardNormal)).collect()).collect();
        assert!(rhat_ess(&stuck).0 > 2.0);
    }

    /// A NaN log-density is an error naming the chain and the step; so is a
    /// chain that accepts nothing after burn-in (a step size gone wrong).
    #[test]
    fn nan_and_stuck_chains_are_errors() {
        struct NanBeyond;
        impl Energy for NanBeyond {
            fn dim(&self) -> usize {
                1
            }
            fn log_prob(&self, x: &[f64]) -> f64 {
                if x[0].abs() > 2.0 { f64::NAN } else { -0.5 * x[0] * x[0] }
            }
            fn grad_log_prob(&self, x: &[f64], g: &mut [f64]) -> f64 {
                g[0] = -x[0];
                self.log_prob(x)
            }
        }
        let cfg = MalaConfig { burn_in: 100, draws: 1000, thin: 1, step: 0.5, target_accept: None };
        let err = mala(&NanBeyond, &[0.5, 1.0], &cfg, rngs(2, 2), &|_| {}).unwrap_err().to_string();
        assert!(err.starts_with("chain ") && err.contains("diverged at step") && err.contains("NaN"), "{err}");

        let det = 1.0;
        let gauss = Gauss2 { mu: [0.0, 0.0], prec: [[1.0 / det, 0.0], [0.0, 1.0]] };
        let cfg = MalaConfig { burn_in: 10, draws: 200, thin: 1, step: 1e4, target_accept: None };
        let err = mala(&gauss, &[0.1, 0.2], &cfg, rngs(1, 3), &|_| {}).unwrap_err().to_string();
        assert!(err.contains("chain 0") && err.contains("accepted no proposal"), "{err}");
    }
}
