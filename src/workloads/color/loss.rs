//! The colour autoencoder's loss, configurable as the origin's notebooks
//! configure it: a reconstruction term and a list of regularizers, each a
//! criterion on the latents, a dopesheet column for its weight and an optional
//! label affinity — reduced over the batch the way the chosen notebook's
//! training loop reduces it ([`Form`]).
//!
//! **Criteria** (per-sample `Lᵢ` unless marked batch scalar):
//! * `polar` — `‖z − e₁‖²` (1.7's `reg-polar`);
//! * `planar` — `z₂² + z₃²` (1.5 averages it over the two channels, see below);
//! * `norm` — `(‖z‖ − 1)²`;
//! * `separate` — the seed's (1.7) `Separate(bias=1, scale=1000, power=0.5)`:
//!   latents on the unit sphere, `dᵢⱼ = 1000²‖p̂ᵢ − p̂ⱼ‖²`, pairs with
//!   `dᵢⱼ ≤ 10⁻⁸` masked, `Lᵢ = (Σⱼ 1/(dᵢⱼ + 1))^0.5`. Its loss has shape
//!   `[B, 1]`, which broadcasts against the per-sample factors `[B]` to
//!   `[B, B]`: **the origin's batch reduction, kept** — 1.7's term is
//!   `ΣLᵢ · Σaᵢ/(Σaᵢ + 10⁻⁸)`, the batch *sum*, not the mean;
//! * `separate_cosine` — the origin's later form (`ex_color.loss.Separate` at
//!   HEAD, as its 1.7 notebook configures it: `power=10, shift=False`): unit
//!   latents `êᵢ`, `cᵢⱼ = êᵢ·êⱼ` with entries `isclose` to 1 (self pairs and
//!   duplicates) set to 0, `Lᵢ = Σⱼ cᵢⱼ¹⁰`;
//! * `separate_inverse` (batch scalar) — 1.5's and 1.6's `Separate((0, 1))`:
//!   squared distances of channels 0 and 1, the diagonal multiplied by 0 (not
//!   removed), `mean over B² of 1/(d²ᵢⱼ + 10⁻⁶)` — the diagonal's `B` entries
//!   add the constant `10⁶/B` (no gradient; duplicates in a batch add 10⁶
//!   each), kept as the origin computes it;
//! * `anchor` (batch scalar) — 1.5/1.6's `Anchor`: the six primary and
//!   secondary colours' latents against a snapshot taken at the sheet's
//!   `anchor` action, `mean((z(ref) − z_snapshot)²)` over 6 × 4 values.
//!
//! **Affinity**: `aᵢ = clamp(Σₖ labelₖ(i)·vₖ, 0, 1)`, the term skipped when
//! every `aᵢ ≤ 10⁻⁸`, then `Σ Lᵢaᵢ / (Σ aᵢ + 10⁻⁸)` (1.7's `label_affinities`
//! in every form). Without an affinity each form reduces as its notebook:
//! * `ex_1_7` — as with all-ones affinities, `Σ Lᵢ / (B + 10⁻⁸)`; weight 1 for
//!   a regularizer the sheet has no column for; the reconstruction is added
//!   unweighted (1.7 never reads `loss-recon`);
//! * `ex_1_5` — criteria return batch means (`torch.mean` over every element:
//!   `planar` over `B × 2`, so half the per-sample sum's mean); the weight of a
//!   column the sheet lacks is 0 (skipped), `loss-recon` weights the
//!   reconstruction;
//! * `ex_1_6` — per-sample losses times the batch's sampler weights (the
//!   weighted collate: the drawn colours' focus weights, normalised to sum 1
//!   within the batch; ones on the primaries), then `.mean()` — so on the
//!   weighted sampler a term is `Σ wᵢLᵢ / B`, `1/B` of its value on the
//!   primaries; missing columns weigh 0, `loss-recon` is read.
//!
//! A term is skipped when its weight is 0; it is recorded, and added as
//! `w·term` when finite (1.6's and 1.7's rule; 1.5's loop would add a NaN term
//! and so skip the whole step). The optimiser steps only when the total is
//! positive.

use super::model::{LATENT, N_PARAMS, Row, backward_row, forward};

/// Which notebook's training loop the objective reproduces (see the module
/// documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Ex17,
    Ex15,
    Ex16,
}

impl Form {
    pub const NAMES: &'static [&'static str] = &["ex_1_7", "ex_1_5", "ex_1_6"];
    pub fn parse(name: &str) -> Option<Form> {
        Some(match name {
            "ex_1_7" => Form::Ex17,
            "ex_1_5" => Form::Ex15,
            "ex_1_6" => Form::Ex16,
            _ => return None,
        })
    }
    /// The weight of a regularizer whose column the sheet lacks.
    pub fn missing_weight(self) -> f64 {
        if self == Form::Ex17 { 1.0 } else { 0.0 }
    }
}

/// A regularizer's criterion (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Criterion {
    Polar,
    Planar,
    Norm,
    Separate,
    SeparateCosine,
    SeparateInverse,
    Anchor,
}

impl Criterion {
    pub const NAMES: &'static [&'static str] =
        &["polar", "planar", "norm", "separate", "separate_cosine", "separate_inverse", "anchor"];
    pub fn parse(name: &str) -> Option<Criterion> {
        use Criterion::*;
        Some(match name {
            "polar" => Polar,
            "planar" => Planar,
            "norm" => Norm,
            "separate" => Separate,
            "separate_cosine" => SeparateCosine,
            "separate_inverse" => SeparateInverse,
            "anchor" => Anchor,
            _ => return None,
        })
    }
    /// A batch scalar takes no affinity.
    pub fn is_scalar(self) -> bool {
        matches!(self, Criterion::SeparateInverse | Criterion::Anchor)
    }
    /// Whether it compares every pair of the batch (B² work a step).
    pub fn is_pairwise(self) -> bool {
        matches!(self, Criterion::Separate | Criterion::SeparateCosine | Criterion::SeparateInverse)
    }
}

/// One configured regularizer: its criterion, the sheet column weighting it,
/// and its affinity as (label index into [`Batch::labels`], strength) pairs —
/// empty for none.
#[derive(Debug, Clone, PartialEq)]
pub struct Regularizer {
    pub column: String,
    pub criterion: Criterion,
    pub affinity: Vec<(usize, f32)>,
}

/// The seed's five (experiment 1.7): `reg-polar` (red), `reg-separate`,
/// `reg-planar` (vibrant), `reg-norm-v` (vibrant), `reg-norm`; label indices
/// into `[red, vibrant]`.
pub fn seed_regularizers() -> Vec<Regularizer> {
    let r = |column: &str, criterion, affinity: Vec<(usize, f32)>| Regularizer {
        column: column.to_string(),
        criterion,
        affinity,
    };
    vec![
        r("reg-polar", Criterion::Polar, vec![(0, 1.0)]),
        r("reg-separate", Criterion::Separate, vec![]),
        r("reg-planar", Criterion::Planar, vec![(1, 1.0)]),
        r("reg-norm-v", Criterion::Norm, vec![(1, 1.0)]),
        r("reg-norm", Criterion::Norm, vec![]),
    ]
}

/// 1.5's and 1.6's four: `reg-separate` (channels 0, 1), `reg-planar`,
/// `reg-norm`, `reg-anchor`, none with an affinity.
pub fn curriculum_regularizers() -> Vec<Regularizer> {
    let r = |column: &str, criterion| Regularizer { column: column.to_string(), criterion, affinity: vec![] };
    vec![
        r("reg-separate", Criterion::SeparateInverse),
        r("reg-planar", Criterion::Planar),
        r("reg-norm", Criterion::Norm),
        r("reg-anchor", Criterion::Anchor),
    ]
}

/// One batch: colours, label columns (`labels[k][i]`), the 1.6 sampler
/// weights (`None`: ones).
pub struct Batch<'a> {
    pub x: &'a [[f32; 3]],
    pub labels: &'a [Vec<f32>],
    pub weights: Option<&'a [f32]>,
}

/// The anchor: the reference colours and their snapshot latents.
pub type Anchor<'a> = (&'a [[f32; 3]], &'a [[f32; LATENT]]);

/// One step's settings: the reconstruction's weight (`None`: 1.7's, added
/// unweighted), each regularizer's weight, and the anchor (reference colours,
/// their snapshot latents once taken).
pub struct StepWeights<'a> {
    pub recon: Option<f64>,
    pub regs: &'a [f64],
    pub anchor: Option<Anchor<'a>>,
}

/// One step's loss terms (`None`: skipped) and total.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Terms {
    pub recon: f64,
    pub regs: Vec<Option<f64>>,
    pub total: f64,
}

/// Per-sample losses of the anchor at `(1, 0, 0, 0)`.
pub fn polar_losses(z: &[[f32; LATENT]]) -> Vec<f32> {
    z.iter().map(|v| (v[0] - 1.0).powi(2) + v[1] * v[1] + v[2] * v[2] + v[3] * v[3]).collect()
}

/// Per-sample losses of planarity: `z₂² + z₃²`.
pub fn planar_losses(z: &[[f32; LATENT]]) -> Vec<f32> {
    z.iter().map(|v| v[2] * v[2] + v[3] * v[3]).collect()
}

fn norm(v: &[f32; LATENT]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// Per-sample losses of unit norm: `(‖z‖ − 1)²`.
pub fn unit_losses(z: &[[f32; LATENT]]) -> Vec<f32> {
    z.iter().map(|v| (norm(v) - 1.0).powi(2)).collect()
}

const SEP_SCALE: f32 = 1000.0;
const SEP_BIAS: f32 = 1.0;
/// 1.5/1.6's `Separate`'s epsilon.
const INV_EPS: f32 = 1e-6;
/// `separate_cosine`'s power (the origin's 1.7 configuration).
const COS_POWER: i32 = 10;

fn unit_points(z: &[[f32; LATENT]]) -> Vec<[f32; LATENT]> {
    z.iter()
        .map(|v| {
            let n = norm(v) + 1e-8;
            [v[0] / n, v[1] / n, v[2] / n, v[3] / n]
        })
        .collect()
}

fn sep_sq(p: &[[f32; LATENT]], i: usize, j: usize) -> f32 {
    (0..LATENT).map(|k| ((p[i][k] - p[j][k]) * SEP_SCALE).powi(2)).sum()
}

/// Per-sample losses of the seed's `separate` and each sample's sum `Sᵢ`
/// (before the power).
pub fn separate_losses(z: &[[f32; LATENT]]) -> (Vec<f32>, Vec<f32>) {
    let p = unit_points(z);
    let sums: Vec<f32> = (0..p.len())
        .map(|i| {
            (0..p.len())
                .map(|j| {
                    let d = sep_sq(&p, i, j);
                    if d <= 1e-8 { 0.0 } else { 1.0 / (d + SEP_BIAS) }
                })
                .sum()
        })
        .collect();
    (sums.iter().map(|s| s.sqrt()).collect(), sums)
}

/// `separate_cosine`'s masked similarities `cᵢⱼ` (0 where `isclose(c, 1)`).
fn cosines(z: &[[f32; LATENT]]) -> (Vec<[f32; LATENT]>, Vec<f32>) {
    let e = unit_points(z);
    let b = e.len();
    let mut c = vec![0f32; b * b];
    for i in 0..b {
        for j in 0..b {
            let v: f32 = (0..LATENT).map(|k| e[i][k] * e[j][k]).sum();
            // torch.isclose(c, 1): |c − 1| ≤ 1e-8 + 1e-5·1.
            c[i * b + j] = if (v - 1.0).abs() <= 1e-8 + 1e-5 { 0.0 } else { v };
        }
    }
    (e, c)
}

/// Per-sample losses of `separate_cosine`: `Σⱼ cᵢⱼ¹⁰`.
pub fn cosine_losses(z: &[[f32; LATENT]]) -> Vec<f32> {
    let b = z.len();
    let (_, c) = cosines(z);
    (0..b).map(|i| c[i * b..(i + 1) * b].iter().map(|v| v.powi(COS_POWER)).sum()).collect()
}

/// `separate_inverse`: `mean over B² of 1/(d²ᵢⱼ·[i ≠ j] + 10⁻⁶)` on channels 0, 1.
pub fn inverse_separation(z: &[[f32; LATENT]]) -> f32 {
    // Summed in f64: the diagonal's 10⁶ terms would swamp the rest in f32.
    let b = z.len();
    let mut s = 0f64;
    for i in 0..b {
        for j in 0..b {
            let d = if i == j { 0.0 } else { (z[i][0] - z[j][0]).powi(2) + (z[i][1] - z[j][1]).powi(2) };
            s += 1.0 / (d as f64 + INV_EPS as f64);
        }
    }
    (s / (b * b) as f64) as f32
}

/// `aᵢ = clamp(Σₖ labelₖ·vₖ, 0, 1)`, or `None` when every one is ≤ 10⁻⁸ (skip).
fn affinities(labels: &[Vec<f32>], affinity: &[(usize, f32)], b: usize) -> Option<Vec<f32>> {
    let a: Vec<f32> = (0..b)
        .map(|i| {
            let mut s = labels[affinity[0].0][i] * affinity[0].1;
            for (k, v) in &affinity[1..] {
                s += labels[*k][i] * v;
            }
            s.clamp(0.0, 1.0)
        })
        .collect();
    a.iter().any(|v| v.abs() > 1e-8).then_some(a)
}

/// How a per-sample term reduces: `T = Σ Lᵢ·numᵢ / den`, and the gradient
/// factor of sample `i` is `w·numᵢ/den` (computed in that order: the seed's
/// bytes depend on it).
struct Reduce {
    num: Vec<f32>,
    den: f32,
}

impl Reduce {
    fn term(&self, l: &[f32]) -> f32 {
        l.iter().zip(&self.num).map(|(l, a)| l * a).sum::<f32>() / self.den
    }
    fn factors(&self, w: f32) -> Vec<f32> {
        self.num.iter().map(|a| w * a / self.den).collect()
    }
}

/// The batch's loss terms and the gradient of the total (written to `grad`,
/// [`N_PARAMS`] values); `grad` is zero when the total is not positive (no step).
// Over 150 lines: one pass over the configured terms in their order (the
// order sets the f32 sums, so the seed's bytes), then one backward.
pub fn loss_and_grad(
    p: &[f32],
    form: Form,
    regs: &[Regularizer],
    batch: &Batch,
    w: &StepWeights,
    grad: &mut [f32],
) -> Terms {
    debug_assert_eq!(grad.len(), N_PARAMS);
    let x = batch.x;
    let b = x.len();
    let bf = b as f32;
    let rows: Vec<Row> = x.iter().map(|xi| forward(p, *xi)).collect();
    let z: Vec<[f32; LATENT]> = rows.iter().map(|r| r.z).collect();
    let mut gz = vec![[0f32; LATENT]; b];
    let mut terms = Terms { regs: vec![None; regs.len()], ..Terms::default() };
    let ones = vec![1f32; b];
    let bw: &[f32] = batch.weights.unwrap_or(&ones);
    // Reconstruction: per-sample mean over channels.
    let mut total = 0f32;
    // Per-sample factor of the reconstruction's output gradient (None: none).
    let mut recon_scale: Option<Vec<f32>> = None;
    let recon_weight = w.recon.unwrap_or(1.0);
    if recon_weight != 0.0 {
        let recon = if form == Form::Ex16 {
            let l: Vec<f32> =
                rows.iter().map(|r| (0..3).map(|d| (r.y[d] - r.x[d]).powi(2)).sum::<f32>() / 3.0).collect();
            l.iter().zip(bw).map(|(l, w)| l * w).sum::<f32>() / bf
        } else {
            // MSELoss: the mean over batch and channels.
            let mut sq = 0f32;
            for r in &rows {
                for d in 0..3 {
                    sq += (r.y[d] - r.x[d]).powi(2);
                }
            }
            sq / (3 * b) as f32
        };
        terms.recon = recon as f64;
        if recon.is_finite() {
            total = match w.recon {
                None => recon,
                Some(rw) => total + recon * rw as f32,
            };
            let base = 2.0 / (3 * b) as f32;
            recon_scale = Some(match (form, w.recon) {
                (Form::Ex16, _) => bw.iter().map(|wi| recon_weight as f32 * wi * base).collect(),
                (_, None) => vec![base; b],
                (_, Some(rw)) => vec![rw as f32 * base; b],
            });
        }
    } else {
        terms.recon = f64::NAN;
    }
    // Anchor rows: forward of the reference colours when an anchor term runs.
    let mut anchor_rows: Vec<(Row, [f32; LATENT])> = Vec::new();
    for (k, reg) in regs.iter().enumerate() {
        let weight = w.regs[k];
        if weight == 0.0 {
            continue;
        }
        let wf = weight as f32;
        // The per-sample reduction (for per-sample criteria).
        let reduce = if reg.affinity.is_empty() {
            match form {
                Form::Ex17 => Some(Reduce { num: ones.clone(), den: ones.iter().sum::<f32>() + 1e-8 }),
                Form::Ex15 => {
                    let per = if reg.criterion == Criterion::Planar { (LATENT - 2) as f32 } else { 1.0 };
                    Some(Reduce { num: ones.clone(), den: bf * per })
                }
                Form::Ex16 => Some(Reduce { num: bw.to_vec(), den: bf }),
            }
        } else {
            match affinities(batch.labels, &reg.affinity, b) {
                None => continue,
                Some(a) => {
                    let den = a.iter().sum::<f32>() + 1e-8;
                    Some(Reduce { num: a, den })
                }
            }
        };
        let reduce = reduce.expect("set above");
        match reg.criterion {
            Criterion::Polar => {
                let t = reduce.term(&polar_losses(&z));
                terms.regs[k] = Some(t as f64);
                if t.is_finite() {
                    total += t * wf;
                    let c = reduce.factors(wf);
                    let e1 = [1.0, 0.0, 0.0, 0.0];
                    for i in 0..b {
                        for k in 0..LATENT {
                            gz[i][k] += c[i] * 2.0 * (z[i][k] - e1[k]);
                        }
                    }
                }
            }
            Criterion::Planar => {
                let t = reduce.term(&planar_losses(&z));
                terms.regs[k] = Some(t as f64);
                if t.is_finite() {
                    total += t * wf;
                    let c = reduce.factors(wf);
                    for i in 0..b {
                        gz[i][2] += c[i] * 2.0 * z[i][2];
                        gz[i][3] += c[i] * 2.0 * z[i][3];
                    }
                }
            }
            Criterion::Norm => {
                let t = reduce.term(&unit_losses(&z));
                terms.regs[k] = Some(t as f64);
                if t.is_finite() {
                    total += t * wf;
                    let c = reduce.factors(wf);
                    for i in 0..b {
                        let n = norm(&z[i]);
                        if n == 0.0 {
                            continue;
                        }
                        for k in 0..LATENT {
                            gz[i][k] += c[i] * 2.0 * (n - 1.0) * z[i][k] / n;
                        }
                    }
                }
            }
            Criterion::Separate => {
                // The [B, 1] loss against the [B] factors: every sample's
                // factor is the same, Σnum/den (1.5's mean of [B, 1]: 1/B).
                let scale = match (form, reg.affinity.is_empty()) {
                    (Form::Ex15, true) => 1.0 / bf,
                    (Form::Ex16, true) => bw.iter().sum::<f32>() / (bf * bf),
                    _ => {
                        let s = reduce.num.iter().sum::<f32>();
                        s / reduce.den
                    }
                };
                let (l, sums) = separate_losses(&z);
                let t = l.iter().sum::<f32>() * scale;
                terms.regs[k] = Some(t as f64);
                if t.is_finite() {
                    total += t * wf;
                    separate_grad(&z, &sums, wf * scale, &mut gz);
                }
            }
            Criterion::SeparateCosine => {
                let t = reduce.term(&cosine_losses(&z));
                terms.regs[k] = Some(t as f64);
                if t.is_finite() {
                    total += t * wf;
                    cosine_grad(&z, &reduce.factors(wf), &mut gz);
                }
            }
            Criterion::SeparateInverse => {
                let t = inverse_separation(&z);
                terms.regs[k] = Some(t as f64);
                if t.is_finite() {
                    total += t * wf;
                    inverse_grad(&z, wf, &mut gz);
                }
            }
            Criterion::Anchor => {
                let Some((ref_x, snap)) = w.anchor else {
                    // Before the snapshot: 1.5 adds a zero term, 1.6 skips it.
                    if form == Form::Ex15 {
                        terms.regs[k] = Some(0.0);
                    }
                    continue;
                };
                let rr: Vec<Row> = ref_x.iter().map(|c| forward(p, *c)).collect();
                let n = (rr.len() * LATENT) as f32;
                let t = rr
                    .iter()
                    .zip(snap)
                    .flat_map(|(r, s)| (0..LATENT).map(move |k| (r.z[k] - s[k]).powi(2)))
                    .sum::<f32>()
                    / n;
                terms.regs[k] = Some(t as f64);
                if t.is_finite() {
                    total += t * wf;
                    for (r, s) in rr.into_iter().zip(snap) {
                        let g: [f32; LATENT] = std::array::from_fn(|k| wf * 2.0 * (r.z[k] - s[k]) / n);
                        anchor_rows.push((r, g));
                    }
                }
            }
        }
    }
    terms.total = total as f64;
    grad.iter_mut().for_each(|g| *g = 0.0);
    if total <= 0.0 {
        return terms;
    }
    for (i, (r, gzi)) in rows.iter().zip(&gz).enumerate() {
        let go: [f32; 3] = match &recon_scale {
            Some(s) => std::array::from_fn(|d| s[i] * (r.y[d] - r.x[d]) * r.y[d] * (1.0 - r.y[d])),
            None => [0.0; 3],
        };
        backward_row(p, r, &go, gzi, grad);
    }
    for (r, g) in &anchor_rows {
        backward_row(p, r, &[0.0; 3], g, grad);
    }
    terms
}

/// The seed `separate`'s gradient for `T = c·Σ Lᵢ`: through `Lᵢ = √Sᵢ`, the
/// pair terms, and `p̂ = z/(‖z‖ + ε)`.
fn separate_grad(z: &[[f32; LATENT]], sums: &[f32], c: f32, gz: &mut [[f32; LATENT]]) {
    let b = z.len();
    let pts = unit_points(z);
    // ∂Lᵢ/∂Sᵢ = 0.5·Sᵢ^(−1/2).
    let dls: Vec<f32> = sums.iter().map(|s| if *s > 0.0 { 0.5 / s.sqrt() } else { 0.0 }).collect();
    let mut gp = vec![[0f32; LATENT]; b];
    for i in 0..b {
        for j in 0..b {
            let d = sep_sq(&pts, i, j);
            if d <= 1e-8 {
                continue;
            }
            // dᵢⱼ enters Sᵢ and Sⱼ; ∂f/∂d = −1/(d + bias)².
            let f1 = -1.0 / (d + SEP_BIAS).powi(2);
            let g = c * (dls[i] + dls[j]) * f1 * 2.0 * SEP_SCALE * SEP_SCALE;
            for k in 0..LATENT {
                gp[i][k] += g * (pts[i][k] - pts[j][k]);
            }
        }
    }
    through_unit(z, &gp, gz);
}

/// `∂/∂z` of `p̂ = z/(‖z‖ + ε)` applied to `gp`, added to `gz`.
fn through_unit(z: &[[f32; LATENT]], gp: &[[f32; LATENT]], gz: &mut [[f32; LATENT]]) {
    for i in 0..z.len() {
        let n = norm(&z[i]);
        if n == 0.0 {
            continue;
        }
        let ne = n + 1e-8;
        let dot: f32 = (0..LATENT).map(|k| gp[i][k] * z[i][k]).sum();
        for k in 0..LATENT {
            gz[i][k] += gp[i][k] / ne - z[i][k] * dot / (n * ne * ne);
        }
    }
}

/// `separate_cosine`'s gradient for `T = Σ cᵢLᵢ`: `cᵢⱼ` enters `Lᵢ` and `Lⱼ`.
fn cosine_grad(z: &[[f32; LATENT]], c: &[f32], gz: &mut [[f32; LATENT]]) {
    let b = z.len();
    let (e, cos) = cosines(z);
    let mut ge = vec![[0f32; LATENT]; b];
    for i in 0..b {
        for j in 0..b {
            let v = cos[i * b + j];
            if v == 0.0 {
                continue;
            }
            let g = (c[i] + c[j]) * COS_POWER as f32 * v.powi(COS_POWER - 1);
            for k in 0..LATENT {
                ge[i][k] += g * e[j][k];
            }
        }
    }
    through_unit(z, &ge, gz);
}

/// `separate_inverse`'s gradient times `w`: `dᵢⱼ` appears twice (i, j and j, i).
fn inverse_grad(z: &[[f32; LATENT]], w: f32, gz: &mut [[f32; LATENT]]) {
    let b = z.len();
    let n = (b * b) as f32;
    for i in 0..b {
        for j in 0..b {
            if i == j {
                continue;
            }
            let d = (z[i][0] - z[j][0]).powi(2) + (z[i][1] - z[j][1]).powi(2);
            let f1 = -1.0 / (d + INV_EPS).powi(2);
            let g = w * 2.0 * f1 / n;
            for k in 0..2 {
                gz[i][k] += g * 2.0 * (z[i][k] - z[j][k]);
            }
        }
    }
}
