//! The notebook's `ColorMLP` (3 → 16 GELU → 4 → 16 GELU → 3 sigmoid, 263
//! parameters) and experiment 1.7's loss, by hand: forward, the regularizers,
//! and the gradient of the total, in f32 as PyTorch computes it.
//!
//! The loss of one batch (spec §6, the notebook's `train_color_model`):
//! reconstruction `mean((y − x)²)`, then in this order the regularizers
//! `reg-polar` (squared distance of `z` to `(1, 0, 0, 0)`, affinity `red`),
//! `reg-separate` (below, no affinity), `reg-planar` (`z₂² + z₃²`, affinity
//! `vibrant`), `reg-norm-v` (`(‖z‖ − 1)²`, affinity `vibrant`) and `reg-norm`
//! (`(‖z‖ − 1)²`, no affinity). Each has weight `w` from the dopesheet (1 when
//! the sheet lacks it) and is skipped when `w = 0`; per-sample affinities are
//! `a = clamp(label, 0, 1)` (ones without an affinity), the term skipped when
//! every `a ≤ 10⁻⁸`; the term is `Σ Lᵢaᵢ / (Σ aᵢ + 10⁻⁸)`, added as `w·term`
//! when finite. The optimiser steps only when the total is positive.
//!
//! `Separate(bias=1, scale=1000, power=0.5)`: latents projected on the unit
//! sphere (`z/(‖z‖ + 10⁻⁸)`), `dᵢⱼ = 1000²‖p̂ᵢ − p̂ⱼ‖²`, pairs with `dᵢⱼ ≤ 10⁻⁸`
//! (`torch.isclose` to 0: the self pairs and degenerate ones) masked, `Lᵢ =
//! (Σⱼ 1/(dᵢⱼ + 1))^0.5`. **The origin's batch reduction, kept:** with no
//! channel selection its loss has shape `[B, 1]`, which broadcasts against the
//! affinities `[B]` to `[B, B]`, so its term is `B·ΣLᵢ/(B + 10⁻⁸)` — the batch
//! *sum*, not the mean, of the per-sample losses.

use crate::numerics::nn::fast::normal_cdf_pdf;

/// Latent width (the notebook's `E`).
pub const LATENT: usize = 4;
const HIDDEN: usize = 16;

/// (in, out) of the four linear layers.
pub const SHAPES: [(usize, usize); 4] = [(3, HIDDEN), (HIDDEN, LATENT), (LATENT, HIDDEN), (HIDDEN, 3)];

/// Parameters in all.
pub const N_PARAMS: usize = 263;

/// Offsets (weight, bias) of layer `l` in the flat vector.
fn slot(l: usize) -> (usize, usize) {
    let mut at = 0;
    for &(i, o) in &SHAPES[..l] {
        at += i * o + o;
    }
    (at, at + SHAPES[l].0 * SHAPES[l].1)
}

/// `y = x·W + b` for one row (`W` row-major `[in × out]`).
fn linear(p: &[f32], l: usize, x: &[f32], y: &mut [f32]) {
    let (w, b) = slot(l);
    let (i_n, o_n) = SHAPES[l];
    y.copy_from_slice(&p[b..b + o_n]);
    for i in 0..i_n {
        let xi = x[i];
        for (o, yo) in y.iter_mut().enumerate() {
            *yo += xi * p[w + i * o_n + o];
        }
    }
}

/// `g_x += g_y·Wᵀ`, `dW += xᵀ·g_y`, `db += g_y` for one row.
fn linear_back(p: &[f32], l: usize, x: &[f32], gy: &[f32], gx: Option<&mut [f32]>, grad: &mut [f32]) {
    let (w, b) = slot(l);
    let (i_n, o_n) = SHAPES[l];
    for (o, g) in gy.iter().enumerate() {
        grad[b + o] += g;
    }
    for i in 0..i_n {
        for (o, g) in gy.iter().enumerate() {
            grad[w + i * o_n + o] += x[i] * g;
        }
    }
    if let Some(gx) = gx {
        for (i, gxi) in gx.iter_mut().enumerate().take(i_n) {
            let mut s = 0f32;
            for (o, g) in gy.iter().enumerate() {
                s += g * p[w + i * o_n + o];
            }
            *gxi += s;
        }
    }
}

fn gelu(a: &[f32], h: &mut [f32], d: &mut [f32]) {
    for ((av, hv), dv) in a.iter().zip(h.iter_mut()).zip(d.iter_mut()) {
        let (cdf, pdf) = normal_cdf_pdf(*av);
        *hv = av * cdf;
        *dv = cdf + av * pdf;
    }
}

/// One row's activations.
#[derive(Debug, Clone, Copy, Default)]
pub struct Row {
    pub x: [f32; 3],
    a1: [f32; HIDDEN],
    h1: [f32; HIDDEN],
    d1: [f32; HIDDEN],
    pub z: [f32; LATENT],
    a3: [f32; HIDDEN],
    h3: [f32; HIDDEN],
    d3: [f32; HIDDEN],
    pub y: [f32; 3],
}

/// The network at `x`: reconstruction and latent, with what backward needs.
pub fn forward(p: &[f32], x: [f32; 3]) -> Row {
    let mut r = Row { x, ..Row::default() };
    linear(p, 0, &r.x, &mut r.a1);
    gelu(&r.a1, &mut r.h1, &mut r.d1);
    linear(p, 1, &r.h1, &mut r.z);
    linear(p, 2, &r.z, &mut r.a3);
    gelu(&r.a3, &mut r.h3, &mut r.d3);
    let mut o = [0f32; 3];
    linear(p, 3, &r.h3, &mut o);
    for (y, o) in r.y.iter_mut().zip(o) {
        *y = 1.0 / (1.0 + (-o).exp());
    }
    r
}

/// The dopesheet's weights for one step (1 where the sheet has no column).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    pub polar: f64,
    pub separate: f64,
    pub planar: f64,
    pub norm_v: f64,
    pub norm: f64,
}

/// One step's loss terms (`None`: skipped) and total.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Terms {
    pub recon: f64,
    pub polar: Option<f64>,
    pub separate: Option<f64>,
    pub planar: Option<f64>,
    pub norm_v: Option<f64>,
    pub norm: Option<f64>,
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

/// Per-sample losses of `Separate(bias=1, scale=1000, power=0.5)` and each
/// sample's sum `Sᵢ` (before the power).
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

/// Affinities clamped to [0, 1], or `None` when every one is ≤ 10⁻⁸ (skip).
fn affinities(labels: &[f32]) -> Option<Vec<f32>> {
    let a: Vec<f32> = labels.iter().map(|l| l.clamp(0.0, 1.0)).collect();
    a.iter().any(|v| v.abs() > 1e-8).then_some(a)
}

/// The batch's loss terms and the gradient of the total (written to `grad`,
/// [`N_PARAMS`] values); `grad` is zero when the total is not positive (no step).
pub fn loss_and_grad(p: &[f32], x: &[[f32; 3]], red: &[f32], vibrant: &[f32], w: &Weights, grad: &mut [f32]) -> Terms {
    let b = x.len();
    let rows: Vec<Row> = x.iter().map(|xi| forward(p, *xi)).collect();
    let z: Vec<[f32; LATENT]> = rows.iter().map(|r| r.z).collect();
    let mut gz = vec![[0f32; LATENT]; b];
    let mut terms = Terms::default();
    // Reconstruction: MSELoss (mean over batch and channels).
    let mut sq = 0f32;
    for r in &rows {
        for d in 0..3 {
            sq += (r.y[d] - r.x[d]).powi(2);
        }
    }
    let recon = sq / (3 * b) as f32;
    let mut total = recon;
    terms.recon = recon as f64;
    let ones = vec![1f32; b];
    // Weighted mean Σ Lᵢaᵢ/(Σa + 1e-8) of per-sample losses, and its gradient
    // scale per sample: w·aᵢ/(Σa + 1e-8).
    let reduce = |l: &[f32], a: &[f32]| -> (f32, f32) {
        let den = a.iter().sum::<f32>() + 1e-8;
        (l.iter().zip(a).map(|(l, a)| l * a).sum::<f32>() / den, den)
    };
    // reg-polar (red).
    if w.polar != 0.0
        && let Some(a) = affinities(red)
    {
        let (t, den) = reduce(&polar_losses(&z), &a);
        terms.polar = Some(t as f64);
        if t.is_finite() {
            total += t * w.polar as f32;
            for i in 0..b {
                let c = w.polar as f32 * a[i] / den;
                let e1 = [1.0, 0.0, 0.0, 0.0];
                for k in 0..LATENT {
                    gz[i][k] += c * 2.0 * (z[i][k] - e1[k]);
                }
            }
        }
    }
    // reg-separate (no affinity; the batch-sum quirk).
    if w.separate != 0.0 {
        let (l, sums) = separate_losses(&z);
        let bf = b as f32;
        let scale = bf / (bf + 1e-8);
        let t = l.iter().sum::<f32>() * scale;
        terms.separate = Some(t as f64);
        if t.is_finite() {
            total += t * w.separate as f32;
            let c = w.separate as f32 * scale;
            let pts = unit_points(&z);
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
                    // ∂T/∂p̂ᵢ = Σⱼ c·(∂Lᵢ/∂Sᵢ + ∂Lⱼ/∂Sⱼ)·f′(dᵢⱼ)·2s²(p̂ᵢ − p̂ⱼ): here the j-th term.
                    for k in 0..LATENT {
                        gp[i][k] += g * (pts[i][k] - pts[j][k]);
                    }
                }
            }
            // Through p̂ = z/(‖z‖ + ε).
            for i in 0..b {
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
    }
    // reg-planar (vibrant), reg-norm-v (vibrant), reg-norm (none).
    let unit = |gz: &mut Vec<[f32; LATENT]>, c: &[f32]| {
        for i in 0..b {
            let n = norm(&z[i]);
            if n == 0.0 {
                continue;
            }
            for k in 0..LATENT {
                gz[i][k] += c[i] * 2.0 * (n - 1.0) * z[i][k] / n;
            }
        }
    };
    if w.planar != 0.0
        && let Some(a) = affinities(vibrant)
    {
        let (t, den) = reduce(&planar_losses(&z), &a);
        terms.planar = Some(t as f64);
        if t.is_finite() {
            total += t * w.planar as f32;
            for i in 0..b {
                let c = w.planar as f32 * a[i] / den;
                gz[i][2] += c * 2.0 * z[i][2];
                gz[i][3] += c * 2.0 * z[i][3];
            }
        }
    }
    if w.norm_v != 0.0
        && let Some(a) = affinities(vibrant)
    {
        let (t, den) = reduce(&unit_losses(&z), &a);
        terms.norm_v = Some(t as f64);
        if t.is_finite() {
            total += t * w.norm_v as f32;
            let c: Vec<f32> = a.iter().map(|a| w.norm_v as f32 * a / den).collect();
            unit(&mut gz, &c);
        }
    }
    if w.norm != 0.0 {
        let (t, den) = reduce(&unit_losses(&z), &ones);
        terms.norm = Some(t as f64);
        if t.is_finite() {
            total += t * w.norm as f32;
            let c: Vec<f32> = ones.iter().map(|a| w.norm as f32 * a / den).collect();
            unit(&mut gz, &c);
        }
    }
    terms.total = total as f64;
    grad.iter_mut().for_each(|g| *g = 0.0);
    if total <= 0.0 {
        return terms;
    }
    // Backward, row by row.
    let gy_scale = 2.0 / (3 * b) as f32;
    for (r, gzi) in rows.iter().zip(&gz) {
        let go: [f32; 3] = std::array::from_fn(|d| gy_scale * (r.y[d] - r.x[d]) * r.y[d] * (1.0 - r.y[d]));
        let mut gh3 = [0f32; HIDDEN];
        linear_back(p, 3, &r.h3, &go, Some(&mut gh3), grad);
        let ga3: Vec<f32> = gh3.iter().zip(&r.d3).map(|(g, d)| g * d).collect();
        let mut gzr = *gzi;
        linear_back(p, 2, &r.z, &ga3, Some(&mut gzr), grad);
        let mut gh1 = [0f32; HIDDEN];
        linear_back(p, 1, &r.h1, &gzr, Some(&mut gh1), grad);
        let ga1: Vec<f32> = gh1.iter().zip(&r.d1).map(|(g, d)| g * d).collect();
        linear_back(p, 0, &r.x, &ga1, None, grad);
    }
    terms
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::activation::{gelu as burn_gelu, sigmoid};
    use burn::tensor::{Tensor, TensorData};
    use rand::{Rng, SeedableRng};

    fn close(a: f32, b: f32, tol: f32) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    /// Each regularizer's per-sample losses against hand values.
    #[test]
    fn regularizers_at_hand_values() {
        let z = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 0.0, 0.0]];
        assert_eq!(polar_losses(&z), vec![0.0, 2.0, 29.0, 20.0]);
        assert_eq!(planar_losses(&z), vec![0.0, 0.0, 25.0, 0.0]);
        let u = unit_losses(&z);
        assert!(close(u[2], (30f32.sqrt() - 1.0).powi(2), 1e-6) && u[3] == 16.0 && u[0] == 0.0);
        // Two orthogonal unit vectors: d = 1000²·2, Sᵢ = 1/(2·10⁶ + 1), Lᵢ = √Sᵢ.
        let (l, s) = separate_losses(&z[..2]);
        let want = 1.0 / (2.0e6f32 + 1.0);
        assert!(close(s[0], want, 1e-5) && close(l[1], want.sqrt(), 1e-5), "{l:?}");
        // A duplicate and a point on the same ray are degenerate pairs: masked.
        let (l, _) = separate_losses(&[[1.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]);
        assert_eq!(l, vec![0.0, 0.0, 0.0]);
        // The batch-sum quirk: the term of B samples is ΣLᵢ, not the mean.
        let p = vec![0.05f32; N_PARAMS];
        let x = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let w = Weights { polar: 0.0, separate: 1.0, planar: 0.0, norm_v: 0.0, norm: 0.0 };
        let mut g = vec![0f32; N_PARAMS];
        let t = loss_and_grad(&p, &x, &[0.0; 3], &[0.0; 3], &w, &mut g);
        let z: Vec<[f32; LATENT]> = x.iter().map(|v| forward(&p, *v).z).collect();
        let sum: f32 = separate_losses(&z).0.iter().sum();
        assert!(close(t.separate.unwrap() as f32, sum, 1e-6), "{t:?} vs {sum}");
        // Zero affinities skip a term; zero weight skips it.
        assert_eq!(t.polar, None);
        assert_eq!(t.planar, None);
    }

    /// The loss and every gradient equal burn's autodiff of the same computation:
    /// all terms together, then each regularizer alone with a weight that makes
    /// it dominate the reconstruction.
    #[test]
    fn gradients_match_burn_autodiff() {
        let all = Weights { polar: 0.7, separate: 0.3, planar: 1.3, norm_v: 0.4, norm: 0.9 };
        let zero = Weights { polar: 0.0, separate: 0.0, planar: 0.0, norm_v: 0.0, norm: 0.0 };
        for w in [
            all,
            Weights { separate: 1e4, ..zero },
            Weights { polar: 100.0, ..zero },
            Weights { planar: 100.0, ..zero },
            Weights { norm_v: 100.0, ..zero },
            Weights { norm: 100.0, ..zero },
        ] {
            gradients_match(w);
        }
    }

    fn gradients_match(w: Weights) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let layers = crate::numerics::nn::init_layers(&SHAPES, false, &mut rng);
        let p: Vec<f32> = layers.iter().flat_map(|(w, b, _, _)| w.iter().chain(b).copied()).collect();
        assert_eq!(p.len(), N_PARAMS);
        let b = 7;
        let x: Vec<[f32; 3]> = (0..b).map(|_| [rng.random(), rng.random(), rng.random()]).collect();
        let red: Vec<f32> = (0..b).map(|i| if i % 3 == 0 { 0.0 } else { rng.random() }).collect();
        let vib: Vec<f32> = (0..b).map(|_| rng.random()).collect();
        let mut grad = vec![0f32; N_PARAMS];
        let terms = loss_and_grad(&p, &x, &red, &vib, &w, &mut grad);

        let dev = crate::workloads::train_device(crate::engine::stage::Backend::Flex);
        let lin = crate::numerics::nn::linears(&layers, &dev, 0);
        let xt =
            Tensor::<2>::from_data(TensorData::new(x.iter().flatten().copied().collect::<Vec<f32>>(), [b, 3]), &dev);
        let z = lin[1].forward(burn_gelu(lin[0].forward(xt.clone())));
        let y = sigmoid(lin[3].forward(burn_gelu(lin[2].forward(z.clone()))));
        let recon = (y - xt).powi_scalar(2).mean();
        let vec1 = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [b]), &dev);
        let weighted = |l: Tensor<1>, a: &[f32]| (l * vec1(a)).sum() / (a.iter().sum::<f32>() + 1e-8);
        let e1 = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0, 0.0, 0.0], [1, LATENT]), &dev);
        let polar = (z.clone() - e1).powi_scalar(2).sum_dim(1).reshape([b]);
        let norms = z.clone().powi_scalar(2).sum_dim(1).sqrt(); // [b, 1]
        let unit = (norms.clone() - 1.0).powi_scalar(2).reshape([b]);
        let planar = z.clone().slice([0..b, 2..4]).powi_scalar(2).sum_dim(1).reshape([b]);
        let pts = z.clone() / (norms + 1e-8);
        let diffs = (pts.clone().unsqueeze_dim::<3>(1) - pts.unsqueeze_dim::<3>(0)) * SEP_SCALE;
        let sq = diffs.powi_scalar(2).sum_dim(2).reshape([b, b]);
        let mask = sq.clone().lower_equal_elem(1e-8);
        let f = (sq + SEP_BIAS).recip().mask_fill(mask, 0.0);
        let sep = f.sum_dim(1).sqrt().sum() * (b as f32 / (b as f32 + 1e-8));
        let ones = vec![1f32; b];
        let total = recon
            + weighted(polar, &red) * w.polar as f32
            + sep * w.separate as f32
            + weighted(planar, &vib) * w.planar as f32
            + weighted(unit.clone(), &vib) * w.norm_v as f32
            + weighted(unit, &ones) * w.norm as f32;
        let want_total: f32 = total.clone().into_scalar();
        assert!(close(terms.total as f32, want_total, 1e-5), "{} vs burn {want_total}", terms.total);
        let grads = total.backward();
        let mut want = Vec::new();
        for l in &lin {
            want.extend(l.weight.val().grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap());
            want.extend(l.bias.as_ref().unwrap().val().grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap());
        }
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (i, (a, e)) in grad.iter().zip(&want).enumerate() {
            assert!((a - e).abs() <= 2e-4 * scale + 1e-4 * e.abs(), "{w:?}: param {i}: {a} vs burn {e}");
        }
    }
}
