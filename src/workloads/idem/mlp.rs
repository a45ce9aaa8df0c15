//! DEM's MLP ([`super::net::DemMlp`]) by hand: the training loss and gradient,
//! and the sampler's forward pass.
//!
//! iDEM calls this network far more than the two-moons DDPM does: every outer
//! step integrates 1000 particles through 1000 reverse-SDE steps (DEM's
//! budget), and every inner step fits a batch of 512. burn's CPU backends
//! dispatch and allocate per op, so, as for the ε-network
//! ([`crate::numerics::nn::backprop`]), the hot paths are written out:
//!
//! * parameters live in one flat `Vec<f32>` (layer order, weight `[in × out]`
//!   row-major then bias — [`flatten`]); the optimiser and clipping are the
//!   shared [`crate::numerics::nn::backprop`] loops;
//! * rows are cut into fixed chunks of [`CHUNK`]; each chunk runs on one
//!   thread with the `gemm` crate and fused bias + GELU kernels; the chunks'
//!   gradients are summed in chunk order, so results do not depend on the
//!   thread count;
//! * the sinusoidal embeddings use a vectorisable `sin`/`cos` ([`sincos_fast`]:
//!   Cody–Waite reduction by π/2 and Cephes' single-precision polynomials,
//!   error ≈ 1 ulp on `|a| ≤ 8192`; rows with larger arguments take the
//!   library's `sin`/`cos`);
//! * GELU is PyTorch's exact form `u·Φ(u)` with `Φ` from Abramowitz & Stegun
//!   7.1.26 (absolute error < 1.5·10⁻⁷) and its derivative `Φ(u) + u·φ(u)`
//!   computed in the same pass;
//! * the sampler's forward ([`DemMlpRun::forward_shared_t`]) folds the time
//!   embedding, shared by every row of an SDE step, into the first layer's
//!   bias: the first layer then reads only the coordinates' embeddings.
//!
//! Both paths are checked against burn's autodiff of the module in this
//! module's tests.

use super::net::{DemMlpConfig, INPUT_SCALE};
use crate::numerics::nn::Layers;
use crate::numerics::nn::backprop::{ChunkPool, Slot, bias_grad};
use crate::numerics::nn::fast::{mm, normal_cdf_pdf as phi};

/// Rows per chunk (a fixed property of the computation).
pub const CHUNK: usize = 128;

/// The flat parameter vector of plain layers (weight then bias, layer order).
pub fn flatten(layers: &Layers) -> Vec<f32> {
    layers.iter().flat_map(|(w, b, _, _)| w.iter().chain(b).copied()).collect()
}

/// Plain layers of a flat parameter vector.
pub fn unflatten(cfg: &DemMlpConfig, params: &[f32]) -> Layers {
    crate::numerics::nn::unflatten_layers(&cfg.shapes(), params)
}

// ---------------------------------------------------------------- kernels

/// `(sin a, cos a)` in single precision, vectorisable (see the module doc);
/// accurate for `|a| ≤ 8192`.
#[inline(always)]
pub fn sincos_fast(a: f32) -> (f32, f32) {
    const TWO_OVER_PI: f32 = std::f32::consts::FRAC_2_PI;
    // π/2 in three parts (Cephes' π/4 split, doubled).
    const P1: f32 = 1.570_312_5;
    const P2: f32 = 4.837_513e-4;
    const P3: f32 = 7.549_79e-8;
    let q = (a * TWO_OVER_PI + 12_582_912.0) - 12_582_912.0;
    let r = ((a - q * P1) - q * P2) - q * P3;
    let z = r * r;
    let s = r + r * z * (-1.666_665_5e-1 + z * (8.332_161e-3 + z * -1.951_529_6e-4));
    let c = 1.0 - 0.5 * z + z * z * (4.166_664_6e-2 + z * (-1.388_731_6e-3 + z * 2.443_315_7e-5));
    // The quadrant q mod 4 from the mantissa of 1.5·2²³ + q (|q| < 2²²): no
    // float-to-int conversion, so the loop vectorises.
    let n = (q + 12_582_912.0).to_bits() & 3;
    let (s1, c1) = if n & 1 == 0 { (s, c) } else { (c, s) };
    let sin = if n & 2 == 0 { s1 } else { -s1 };
    let cos = if (n + 1) & 2 == 0 { c1 } else { -c1 };
    (sin, cos)
}

/// DEM's `SinusoidalEmbedding` of one value already scaled: `[sin(v·f), cos(v·f)]`.
#[inline(always)]
fn embed_into(v: f32, freqs: &[f32], out: &mut [f32]) {
    let (sin, cos) = out.split_at_mut(freqs.len());
    // The largest frequency is f₀ = 1.
    if v.abs() * freqs[0] <= 8192.0 {
        for ((f, s), c) in freqs.iter().zip(sin.iter_mut()).zip(cos.iter_mut()) {
            (*s, *c) = sincos_fast(v * f);
        }
    } else {
        for ((f, s), c) in freqs.iter().zip(sin.iter_mut()).zip(cos.iter_mut()) {
            (*s, *c) = ((v * f).sin(), (v * f).cos());
        }
    }
}

#[inline(always)]
fn gelu_body<const DERIV: bool>(u: &mut [f32], bias: &[f32], act: &mut [f32], deriv: &mut [f32]) {
    let n = bias.len();
    for ((ur, ar), dr) in u.chunks_exact_mut(n).zip(act.chunks_exact_mut(n)).zip(deriv.chunks_exact_mut(n)) {
        for j in 0..n {
            let z = ur[j] + bias[j];
            let (cdf, pdf) = phi(z);
            ur[j] = z;
            ar[j] = z * cdf;
            if DERIV {
                dr[j] = cdf + z * pdf;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn gelu_avx512<const DERIV: bool>(u: &mut [f32], bias: &[f32], act: &mut [f32], deriv: &mut [f32]) {
    gelu_body::<DERIV>(u, bias, act, deriv)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gelu_avx2<const DERIV: bool>(u: &mut [f32], bias: &[f32], act: &mut [f32], deriv: &mut [f32]) {
    gelu_body::<DERIV>(u, bias, act, deriv)
}

/// Row-wise `u ← u + bias`, `act ← GELU(u)` and, with `DERIV`, `deriv ← GELU′(u)`
/// (training needs it; the sampler does not).
fn gelu<const DERIV: bool>(u: &mut [f32], bias: &[f32], act: &mut [f32], deriv: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked above).
            return unsafe { gelu_avx512::<DERIV>(u, bias, act, deriv) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            return unsafe { gelu_avx2::<DERIV>(u, bias, act, deriv) };
        }
    }
    gelu_body::<DERIV>(u, bias, act, deriv)
}

// ---------------------------------------------------------------- the network

/// One chunk's activations and gradients.
struct Workspace {
    /// Embeddings `[rows × (dim + 1)·emb]` (the sampler's: `[rows × dim·emb]`).
    emb: Vec<f32>,
    /// Per hidden layer: pre-activation, GELU′, and the residual stream after it.
    u: Vec<Vec<f32>>,
    d: Vec<Vec<f32>>,
    h: Vec<Vec<f32>>,
    out: Vec<f32>,
    g1: Vec<f32>,
    g2: Vec<f32>,
    grad: Vec<f32>,
    loss: f64,
}

crate::chunk_grad!(Workspace, grad, loss);

/// Loss, gradient and forward passes of one DEM MLP architecture.
pub struct DemMlpRun {
    cfg: DemMlpConfig,
    freqs: Vec<f32>,
    slots: Vec<Slot>,
    n_params: usize,
    pool: ChunkPool<Workspace>,
    /// The first layer's bias with the shared time embedding folded in.
    bias_t: Vec<f32>,
}

impl DemMlpRun {
    pub fn new(cfg: &DemMlpConfig) -> DemMlpRun {
        let (slots, at) = Slot::layout(cfg.shapes());
        DemMlpRun {
            cfg: *cfg,
            freqs: cfg.frequencies(),
            slots,
            n_params: at,
            pool: ChunkPool::default(),
            bias_t: vec![0.0; cfg.hidden],
        }
    }

    pub fn n_params(&self) -> usize {
        self.n_params
    }

    fn workspace(&self) -> Workspace {
        let (hid, n) = (self.cfg.hidden, CHUNK);
        let layers = self.cfg.blocks + 1;
        Workspace {
            emb: vec![0.0; n * (self.cfg.dim + 1) * self.cfg.emb_size],
            u: (0..layers).map(|_| vec![0.0; n * hid]).collect(),
            d: (0..layers).map(|_| vec![0.0; n * hid]).collect(),
            h: (0..layers).map(|_| vec![0.0; n * hid]).collect(),
            out: vec![0.0; n * self.cfg.dim],
            g1: vec![0.0; n * hid],
            g2: vec![0.0; n * hid],
            grad: vec![0.0; self.n_params],
            loss: 0.0,
        }
    }

    /// The hidden layers' forward from the first layer's input (`emb`, `ein`
    /// wide, read against the first `ein` rows of its weight) and bias.
    fn trunk_forward<const DERIV: bool>(
        &self,
        p: &[f32],
        r: usize,
        ein: usize,
        first_bias: &[f32],
        ws: &mut Workspace,
    ) {
        let hid = self.cfg.hidden;
        let sl = &self.slots;
        let w = |s: &Slot, rows: usize| &p[s.w..s.w + rows * s.output];
        let Workspace { emb, u, d, h, out, .. } = ws;
        mm(r, hid, ein, &mut u[0][..r * hid], (1, hid), &emb[..r * ein], (1, ein), w(&sl[0], ein), (1, hid));
        gelu::<DERIV>(&mut u[0][..r * hid], first_bias, &mut h[0][..r * hid], &mut d[0][..r * hid]);
        for l in 1..=self.cfg.blocks {
            let (lo, hi) = h.split_at_mut(l);
            let (prev, cur) = (&lo[l - 1][..r * hid], &mut hi[0][..r * hid]);
            mm(r, hid, hid, &mut u[l][..r * hid], (1, hid), prev, (1, hid), w(&sl[l], hid), (1, hid));
            gelu::<DERIV>(&mut u[l][..r * hid], &p[sl[l].b..sl[l].b + hid], cur, &mut d[l][..r * hid]);
            cur.iter_mut().zip(prev).for_each(|(c, v)| *c += v);
        }
        let o = &sl[self.cfg.blocks + 1];
        let dim = self.cfg.dim;
        mm(r, dim, hid, &mut out[..r * dim], (1, dim), &h[self.cfg.blocks][..r * hid], (1, hid), w(o, hid), (1, dim));
        for row in out[..r * dim].chunks_exact_mut(dim) {
            row.iter_mut().zip(&p[o.b..o.b + dim]).for_each(|(v, b)| *v += b);
        }
    }

    /// The network at `(x_i, t_i)` for every row (`x: [rows × dim]`, `t: [rows]`).
    pub fn forward(&mut self, params: &[f32], x: &[f32], t: &[f32], out: &mut [f32]) {
        let (rows, dim) = (t.len(), self.cfg.dim);
        let mut pool = std::mem::take(&mut self.pool);
        let this = &*self;
        pool.for_each_out(
            rows,
            CHUNK,
            out,
            dim,
            || this.workspace(),
            |r, ws, o| {
                this.embed_rows(&x[r.start * dim..r.end * dim], Some(&t[r.clone()]), ws);
                let ein = (dim + 1) * this.cfg.emb_size;
                let b0 = &params[this.slots[0].b..this.slots[0].b + this.cfg.hidden];
                this.trunk_forward::<false>(params, r.len(), ein, b0, ws);
                o.copy_from_slice(&ws.out[..r.len() * dim]);
            },
        );
        self.pool = pool;
    }

    /// The network at `(x_i, t)` for every row, all at one time `t` (the
    /// sampler's call): the time embedding enters as a bias.
    pub fn forward_shared_t(&mut self, params: &[f32], x: &[f32], t: f32, out: &mut [f32]) {
        let (dim, e, hid) = (self.cfg.dim, self.cfg.emb_size, self.cfg.hidden);
        let rows = x.len() / dim;
        // bias_t = b₀ + emb(t)·W₀[time rows].
        let s0 = self.slots[0];
        let mut temb = vec![0f32; e];
        embed_into(t, &self.freqs, &mut temb);
        let wt = &params[s0.w + dim * e * hid..s0.w + (dim + 1) * e * hid];
        let mut bias_t = std::mem::take(&mut self.bias_t);
        bias_t.copy_from_slice(&params[s0.b..s0.b + hid]);
        for (k, tv) in temb.iter().enumerate() {
            bias_t.iter_mut().zip(&wt[k * hid..(k + 1) * hid]).for_each(|(b, w)| *b += tv * w);
        }
        let mut pool = std::mem::take(&mut self.pool);
        let this = &*self;
        pool.for_each_out(
            rows,
            CHUNK,
            out,
            dim,
            || this.workspace(),
            |r, ws, o| {
                this.embed_rows(&x[r.start * dim..r.end * dim], None, ws);
                this.trunk_forward::<false>(params, r.len(), dim * e, &bias_t, ws);
                o.copy_from_slice(&ws.out[..r.len() * dim]);
            },
        );
        self.pool = pool;
        self.bias_t = bias_t;
    }

    /// Fill `ws.emb` with the rows' embeddings: each coordinate's (scaled by
    /// DEM's 25), then, with `t`, the time's.
    fn embed_rows(&self, x: &[f32], t: Option<&[f32]>, ws: &mut Workspace) {
        let (dim, e) = (self.cfg.dim, self.cfg.emb_size);
        let width = (dim + usize::from(t.is_some())) * e;
        for (i, xr) in x.chunks_exact(dim).enumerate() {
            let row = &mut ws.emb[i * width..(i + 1) * width];
            for (j, v) in xr.iter().enumerate() {
                embed_into(v * INPUT_SCALE, &self.freqs, &mut row[j * e..(j + 1) * e]);
            }
            if let Some(t) = t {
                embed_into(t[i], &self.freqs, &mut row[dim * e..]);
            }
        }
    }

    /// DEM's loss `mean_i w_i · mean_d (s(x_i, t_i) − y_i)²` (`w_i = λ(t_i)`)
    /// and its gradient, written to `grad` ([`DemMlpRun::n_params`] values).
    pub fn loss_and_grad(
        &mut self,
        params: &[f32],
        x: &[f32],
        t: &[f32],
        target: &[f32],
        weight: &[f32],
        grad: &mut [f32],
    ) -> f64 {
        let dim = self.cfg.dim;
        let rows = t.len();
        let mut pool = std::mem::take(&mut self.pool);
        let this = &*self;
        let loss = pool.sum(
            rows,
            CHUNK,
            || this.workspace(),
            Some(grad),
            |r, ws| {
                let rd = r.start * dim..r.end * dim;
                this.chunk(params, &x[rd.clone()], &t[r.clone()], &target[rd], &weight[r], rows, ws);
            },
        );
        self.pool = pool;
        loss / rows as f64
    }

    /// Forward and backward of one chunk of a batch of `rows`.
    #[allow(clippy::too_many_arguments)]
    fn chunk(&self, p: &[f32], x: &[f32], t: &[f32], target: &[f32], weight: &[f32], rows: usize, ws: &mut Workspace) {
        let (dim, hid, e) = (self.cfg.dim, self.cfg.hidden, self.cfg.emb_size);
        let ein = (dim + 1) * e;
        let r = t.len();
        let sl = &self.slots;
        let blocks = self.cfg.blocks;
        self.embed_rows(x, Some(t), ws);
        self.trunk_forward::<true>(p, r, ein, &p[sl[0].b..sl[0].b + hid], ws);
        let Workspace { emb, u, d, h, out, g1, g2, grad, loss } = ws;
        // The error, its weighted mean, and ∂loss/∂out.
        let mut sum = 0f64;
        let norm = 2.0 / (dim * rows) as f32;
        for ((orow, yrow), w) in out[..r * dim].chunks_exact_mut(dim).zip(target.chunks_exact(dim)).zip(weight) {
            let mut sq = 0f64;
            for (o, y) in orow.iter_mut().zip(yrow) {
                let diff = *o - y;
                sq += (diff as f64) * (diff as f64);
                *o = diff * w * norm;
            }
            sum += *w as f64 * sq / dim as f64;
        }
        *loss = sum;

        let gslot = |s: &Slot| (s.w..s.w + s.input * s.output, s.b..s.b + s.output);
        let w = |s: &Slot| &p[s.w..s.w + s.input * s.output];
        // Output layer: dW = h_Bᵀ·g, db = Σ g, g_h = g·Wᵀ.
        let o = &sl[blocks + 1];
        let gout = &out[..r * dim];
        let hb = &h[blocks][..r * hid];
        let (wr, br) = gslot(o);
        mm(hid, dim, r, &mut grad[wr], (1, dim), hb, (hid, 1), gout, (1, dim));
        bias_grad(&mut grad[br], gout);
        mm(r, hid, dim, &mut g1[..r * hid], (1, hid), gout, (1, dim), w(o), (dim, 1));
        // Residual blocks: h_l = h_{l−1} + GELU(u_l); g_u = g_h ⊙ GELU′(u_l),
        // g_{h_{l−1}} = g_h + g_u·W_lᵀ.
        for l in (1..=blocks).rev() {
            let gh = &mut g1[..r * hid];
            let gu = &mut g2[..r * hid];
            gu.iter_mut().zip(gh.iter()).zip(&d[l][..r * hid]).for_each(|((a, g), dv)| *a = g * dv);
            let (wr, br) = gslot(&sl[l]);
            mm(hid, hid, r, &mut grad[wr], (1, hid), &h[l - 1][..r * hid], (hid, 1), gu, (1, hid));
            bias_grad(&mut grad[br], gu);
            // g_h += g_u·Wᵀ, through u_l (the pre-activation is not needed
            // in the backward pass: GELU′ is stored).
            let back = &mut u[l][..r * hid];
            mm(r, hid, hid, back, (1, hid), gu, (1, hid), w(&sl[l]), (hid, 1));
            gh.iter_mut().zip(back.iter()).for_each(|(g, b)| *g += b);
        }
        // First layer: g_u = g_h ⊙ GELU′(u_0); dW = embᵀ·g_u.
        let gu = &mut g2[..r * hid];
        gu.iter_mut().zip(&g1[..r * hid]).zip(&d[0][..r * hid]).for_each(|((a, g), dv)| *a = g * dv);
        let (wr, br) = gslot(&sl[0]);
        mm(ein, hid, r, &mut grad[wr], (1, hid), &emb[..r * ein], (ein, 1), gu, (1, hid));
        bias_grad(&mut grad[br], gu);
    }
}

#[cfg(test)]
mod tests {
    use super::super::net::DemMlp;
    use super::*;
    use burn::tensor::{Tensor, TensorData};
    use rand::{Rng, SeedableRng};

    const SMALL: DemMlpConfig = DemMlpConfig { dim: 2, hidden: 24, blocks: 2, emb_size: 16 };

    fn setup(rows: usize) -> (Layers, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let layers = SMALL.init(&mut rng);
        let x: Vec<f32> = (0..rows * 2).map(|_| rng.random_range(-1.5..1.5)).collect();
        let t: Vec<f32> = (0..rows).map(|_| rng.random_range(0.0..1.0)).collect();
        let y: Vec<f32> = (0..rows * 2).map(|_| rng.random_range(-2.0..2.0)).collect();
        let w: Vec<f32> = (0..rows).map(|_| rng.random_range(0.001..1.0)).collect();
        (layers, x, t, y, w)
    }

    /// Loss and every parameter's gradient equal burn's autodiff of the module.
    #[test]
    fn gradients_match_burn_autodiff() {
        let rows = 300; // three chunks, the last partial
        let (layers, x, t, y, w) = setup(rows);
        let mut run = DemMlpRun::new(&SMALL);
        let params = flatten(&layers);
        assert_eq!(params.len(), run.n_params());
        let mut grad = vec![0f32; run.n_params()];
        let loss = run.loss_and_grad(&params, &x, &t, &y, &w, &mut grad);

        let dev = crate::workloads::train_device(crate::engine::stage::Backend::Flex);
        let net = DemMlp::from_layers(&layers, &SMALL, &dev);
        let xt = Tensor::<2>::from_data(TensorData::new(x, [rows, 2]), &dev);
        let tt = Tensor::<1>::from_data(TensorData::new(t, [rows]), &dev);
        let yt = Tensor::<2>::from_data(TensorData::new(y, [rows, 2]), &dev);
        let wt = Tensor::<1>::from_data(TensorData::new(w, [rows]), &dev);
        let per_row = (net.forward(xt, tt) - yt).powi_scalar(2).mean_dim(1).reshape([rows]);
        let l = (per_row * wt).mean();
        let burn_loss: f32 = l.clone().into_scalar();
        assert!((loss - burn_loss as f64).abs() < 1e-5 * (1.0 + loss), "loss {loss} vs burn {burn_loss}");
        let grads = l.backward();
        let mut want = Vec::new();
        for lin in &net.layers {
            want.extend(lin.weight.val().grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap());
            let b = lin.bias.as_ref().unwrap();
            want.extend(b.val().grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap());
        }
        assert_eq!(want.len(), grad.len());
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (i, (a, b)) in grad.iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= 2e-4 * scale + 1e-4 * b.abs(), "param {i}: {a} vs burn {b}");
        }
    }

    /// Both forward passes equal burn's forward; the shared-time one equals
    /// the per-row one at a constant `t`.
    #[test]
    fn forward_passes_match_burn() {
        let rows = 200;
        let (layers, x, _, _, _) = setup(rows);
        let params = flatten(&layers);
        let mut run = DemMlpRun::new(&SMALL);
        let t = 0.37f32;
        let ts = vec![t; rows];
        let (mut a, mut b) = (vec![0f32; rows * 2], vec![0f32; rows * 2]);
        run.forward(&params, &x, &ts, &mut a);
        run.forward_shared_t(&params, &x, t, &mut b);
        let dev = crate::workloads::backend_device(crate::engine::stage::Backend::Flex);
        let net = DemMlp::from_layers(&layers, &SMALL, &dev);
        let want = net
            .forward(
                Tensor::<2>::from_data(TensorData::new(x, [rows, 2]), &dev),
                Tensor::<1>::from_data(TensorData::new(ts, [rows]), &dev),
            )
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for i in 0..rows * 2 {
            assert!((a[i] - want[i]).abs() < 1e-4 * (1.0 + want[i].abs()), "{i}: {} vs burn {}", a[i], want[i]);
            assert!((a[i] - b[i]).abs() < 1e-5 * (1.0 + a[i].abs()), "{i}: {} vs shared-t {}", a[i], b[i]);
        }
        // The flat vector round-trips.
        assert_eq!(flatten(&unflatten(&SMALL, &params)), params);
    }

    #[test]
    fn fast_sin_cos_and_gelu_are_accurate() {
        let mut worst: f64 = 0.0;
        for i in -200_000..=200_000 {
            let a = i as f32 * 0.04096; // ±8192
            let (s, c) = sincos_fast(a);
            let (ws, wc) = ((a as f64).sin(), (a as f64).cos());
            worst = worst.max((s as f64 - ws).abs()).max((c as f64 - wc).abs());
        }
        assert!(worst < 2e-6, "sin/cos error {worst}");
        // Φ against the erf series (double precision).
        let erf = |x: f64| {
            let (mut term, mut sum, mut n) = (x, x, 0.0);
            while term.abs() > 1e-17 * sum.abs().max(1e-300) && n < 200.0 {
                n += 1.0;
                term *= -x * x / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        };
        for i in -400..=400 {
            let u = i as f32 / 100.0;
            let (cdf, pdf) = phi(u);
            let want = 0.5 * (1.0 + erf(u as f64 / 2f64.sqrt()));
            assert!((cdf as f64 - want).abs() < 3e-7, "Φ({u}) = {cdf} vs {want}");
            let want_pdf = (-(u as f64).powi(2) / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
            assert!((pdf as f64 - want_pdf).abs() < 1e-6, "φ({u})");
        }
    }
}
