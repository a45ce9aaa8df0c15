//! Training the ε-network by hand: forward, backward, AdamW, clipping, EMA.
//!
//! The two-moons setting (40 000 steps at batch 512) wants about a millisecond a
//! step, out of reach of burn's autodiff on a CPU backend, which allocates and
//! dispatches every op of a small MLP (`ddpm/burn_train_step_512` in the
//! `diffusion` bench against `ddpm/train_step_512`). This module
//! computes the same loss and gradients directly:
//!
//! * parameters live in one flat `Vec<f32>` ([`super::eps::EpsLayers::flatten`]
//!   order), so the optimiser, clipping and EMA are single loops;
//! * the batch is cut into fixed chunks of [`CHUNK`] rows; each chunk's forward
//!   and backward run on one thread with the `gemm` crate (weight gradients as
//!   `Aᵀ·G`, input gradients as `G·Wᵀ`, both by strides, no transposes copied) and
//!   fused bias + SiLU kernels; the chunks' gradients are then summed in chunk
//!   order. Chunking is fixed by the batch, not by the thread count, so results
//!   are bit-identical on any number of threads;
//! * the loss is `mean((ε̂ − ε)²)` over rows and coordinates, as PyTorch's
//!   `F.mse_loss`.
//!
//! The gradients are checked against burn's autodiff of [`super::eps::EpsNet`]
//! in this module's tests.
//!
//! [`AdamW`] follows `torch.optim.AdamW` (decoupled decay `p ← p − lr·λ·p` on every
//! parameter, bias-corrected moments, ε = 1e-8 outside the square root);
//! [`clip_grad_norm`] follows `torch.nn.utils.clip_grad_norm_` (global L2 norm,
//! scale by `max/(norm + 1e-6)` when below 1); [`ema_update`] is the exponential
//! moving average `e ← d·e + (1 − d)·p` after every optimiser step. The origin
//! keeps it with diffusers' `EMAModel(decay=0.999)`, whose decay warms up:
//! [`diffusers_ema_decay`] gives `d = 0` at the first step (the average starts as
//! the weights after one step) and `min(decay, (1 + n)/(10 + n))` after `n + 1`
//! steps; a constant `d` from the initial weights is the `ema_warmup: false`
//! option.

use rayon::prelude::*;

use super::eps::{EpsNetConfig, Join, timestep_embedding_into};
use super::fast::{exp_fast, mm};

/// Rows per chunk of the batch (a fixed property of the computation).
pub const CHUNK: usize = 128;

#[inline(always)]
fn act_forward_body(u: &mut [f32], s: &mut [f32], h: &mut [f32], bias: &[f32]) {
    for ((ur, sr), hr) in
        u.chunks_exact_mut(bias.len()).zip(s.chunks_exact_mut(bias.len())).zip(h.chunks_exact_mut(bias.len()))
    {
        for j in 0..bias.len() {
            let z = ur[j] + bias[j];
            let sig = 1.0 / (1.0 + exp_fast(-z));
            ur[j] = z;
            sr[j] = sig;
            hr[j] = z * sig;
        }
    }
}

#[inline(always)]
fn act_backward_body(g: &mut [f32], u: &[f32], s: &[f32]) {
    for ((gv, uv), sv) in g.iter_mut().zip(u).zip(s) {
        *gv *= sv * (1.0 + uv * (1.0 - sv));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn act_forward_avx512(u: &mut [f32], s: &mut [f32], h: &mut [f32], bias: &[f32]) {
    act_forward_body(u, s, h, bias)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn act_forward_avx2(u: &mut [f32], s: &mut [f32], h: &mut [f32], bias: &[f32]) {
    act_forward_body(u, s, h, bias)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn act_backward_avx512(g: &mut [f32], u: &[f32], s: &[f32]) {
    act_backward_body(g, u, s)
}

/// `u ← u + bias`, `s ← σ(u)`, `h ← u·s` (SiLU), row-wise.
pub(crate) fn act_forward(u: &mut [f32], s: &mut [f32], h: &mut [f32], bias: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked above).
            return unsafe { act_forward_avx512(u, s, h, bias) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            return unsafe { act_forward_avx2(u, s, h, bias) };
        }
    }
    act_forward_body(u, s, h, bias)
}

/// `g ← g·SiLU'(u)` with `SiLU'(u) = σ(1 + u(1 − σ))`.
pub(crate) fn act_backward(g: &mut [f32], u: &[f32], s: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked above).
            return unsafe { act_backward_avx512(g, u, s) };
        }
    }
    act_backward_body(g, u, s)
}

/// `db[j] = Σ_r g[r, j]`.
pub(crate) fn bias_grad(db: &mut [f32], g: &[f32]) {
    db.iter_mut().for_each(|v| *v = 0.0);
    for row in g.chunks_exact(db.len()) {
        for (d, v) in db.iter_mut().zip(row) {
            *d += v;
        }
    }
}

/// Offsets of one layer's weight and bias in the flat parameter vector.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub(crate) w: usize,
    pub(crate) b: usize,
    pub(crate) input: usize,
    pub(crate) output: usize,
}

impl Slot {
    /// The slots of layers of `shapes` (in, out) laid out one after another,
    /// and the parameter count.
    pub(crate) fn layout(shapes: impl IntoIterator<Item = (usize, usize)>) -> (Vec<Slot>, usize) {
        let mut at = 0;
        let slots = shapes
            .into_iter()
            .map(|(input, output)| {
                let s = Slot { w: at, b: at + input * output, input, output };
                at += input * output + output;
                s
            })
            .collect();
        (slots, at)
    }
}

/// One chunk's activations and gradient.
struct Workspace {
    emb: Vec<f32>,
    /// Per layer but the output one (the embedding MLP's, then the trunk's):
    /// pre-activation, sigmoid, output. The embedding's second layer has no SiLU:
    /// only its pre-activation (the embedding itself) is used.
    u: Vec<Vec<f32>>,
    s: Vec<Vec<f32>>,
    h: Vec<Vec<f32>>,
    out: Vec<f32>,
    g1: Vec<f32>,
    g2: Vec<f32>,
    grad: Vec<f32>,
    loss: f64,
}

/// Loss and gradient of the ε-network for one architecture.
pub struct EpsBackprop {
    cfg: EpsNetConfig,
    freqs: Vec<f32>,
    slots: Vec<Slot>,
    n_params: usize,
    spaces: Vec<Workspace>,
}

impl EpsBackprop {
    pub fn new(cfg: &EpsNetConfig) -> EpsBackprop {
        let (slots, at) = Slot::layout(cfg.temb_shapes().into_iter().chain(cfg.trunk_shapes()));
        EpsBackprop { cfg: cfg.clone(), freqs: cfg.frequencies(), slots, n_params: at, spaces: Vec::new() }
    }

    pub fn n_params(&self) -> usize {
        self.n_params
    }

    fn workspace(&self) -> Workspace {
        let (w, n) = (self.cfg.hidden.max(self.cfg.temb_width()), CHUNK);
        // Activations of every layer but the output one (its output is `out`).
        let layers = self.slots.len() - 1;
        Workspace {
            emb: vec![0.0; n * self.cfg.time_channels],
            u: (0..layers).map(|_| vec![0.0; n * w]).collect(),
            s: (0..layers).map(|_| vec![0.0; n * w]).collect(),
            h: (0..layers).map(|_| vec![0.0; n * w]).collect(),
            out: vec![0.0; n * self.cfg.dim],
            g1: vec![0.0; n * w],
            g2: vec![0.0; n * w],
            grad: vec![0.0; self.n_params],
            loss: 0.0,
        }
    }

    /// `mean((ε̂(x_t, t) − ε)²)` over the batch and its gradient (written to
    /// `grad`, which must hold [`EpsBackprop::n_params`] values).
    pub fn loss_and_grad(&mut self, params: &[f32], xt: &[f32], t: &[f32], eps: &[f32], grad: &mut [f32]) -> f64 {
        let dim = self.cfg.dim;
        let rows = t.len();
        let chunks = rows.div_ceil(CHUNK);
        while self.spaces.len() < chunks {
            let ws = self.workspace();
            self.spaces.push(ws);
        }
        let norm = 2.0 / (rows * dim) as f32;
        let mut spaces = std::mem::take(&mut self.spaces);
        let this = &*self;
        spaces[..chunks].par_iter_mut().enumerate().for_each(|(c, ws)| {
            let r0 = c * CHUNK;
            let r1 = (r0 + CHUNK).min(rows);
            this.chunk(params, &xt[r0 * dim..r1 * dim], &t[r0..r1], &eps[r0 * dim..r1 * dim], norm, ws);
        });
        grad.copy_from_slice(&spaces[0].grad);
        let mut loss = spaces[0].loss;
        for ws in &spaces[1..chunks] {
            for (g, v) in grad.iter_mut().zip(&ws.grad) {
                *g += v;
            }
            loss += ws.loss;
        }
        self.spaces = spaces;
        loss / (rows * dim) as f64
    }

    /// Forward and backward of one chunk; its gradient goes to `ws.grad`, its
    /// summed squared error to `ws.loss`.
    fn chunk(&self, p: &[f32], x: &[f32], t: &[f32], eps: &[f32], norm: f32, ws: &mut Workspace) {
        let (dim, hid, tc) = (self.cfg.dim, self.cfg.hidden, self.cfg.time_channels);
        let ew = self.cfg.temb_width();
        let concat = self.cfg.join == Join::Concat;
        let r = t.len();
        let sl = &self.slots;
        let w = |s: &Slot| &p[s.w..s.w + s.input * s.output];
        let bias = |s: &Slot| &p[s.b..s.b + s.output];
        let n_layers = sl.len();
        let (t0, t1, k0) = (0, 1, 2); // embedding layers, first trunk layer
        let last = n_layers - 1;

        // ---- forward ----
        for (i, tv) in t.iter().enumerate() {
            timestep_embedding_into(*tv, &self.freqs, &mut ws.emb[i * tc..(i + 1) * tc]);
        }
        let Workspace { emb, u, s, h, out, g1, g2, grad, loss } = ws;
        // Embedding MLP: a0 = emb·W0 + b0, z0 = SiLU(a0); temb = z0·W1 + b1.
        mm(r, ew, tc, &mut u[t0][..r * ew], (1, ew), &emb[..r * tc], (1, tc), w(&sl[t0]), (1, ew));
        act_forward(&mut u[t0][..r * ew], &mut s[t0][..r * ew], &mut h[t0][..r * ew], bias(&sl[t0]));
        mm(r, ew, ew, &mut u[t1][..r * ew], (1, ew), &h[t0][..r * ew], (1, ew), w(&sl[t1]), (1, ew));
        // First trunk layer. Add: u = x·Wx + temb (+ b_k0 + b1, added by
        // act_forward). Concat: u = x·Wx + temb·Wt (+ b_k0), with temb's bias
        // added in place first (u[t1] then holds temb itself).
        let (wx, wt) = w(&sl[k0]).split_at(dim * hid);
        {
            let (lo, hi) = u.split_at_mut(k0);
            let (temb, u_k0) = (&mut lo[t1][..r * ew], &mut hi[0][..r * hid]);
            let mut b = bias(&sl[k0]).to_vec();
            if concat {
                for row in temb.chunks_exact_mut(ew) {
                    row.iter_mut().zip(bias(&sl[t1])).for_each(|(v, b1)| *v += b1);
                }
                mm(r, hid, ew, u_k0, (1, hid), temb, (1, ew), wt, (1, hid));
            } else {
                u_k0.copy_from_slice(temb);
                b.iter_mut().zip(bias(&sl[t1])).for_each(|(bv, b1)| *bv += b1);
            }
            for i in 0..r {
                let row = &mut u_k0[i * hid..(i + 1) * hid];
                for j in 0..dim {
                    let xv = x[i * dim + j];
                    for (o, wv) in row.iter_mut().zip(&wx[j * hid..(j + 1) * hid]) {
                        *o += xv * wv;
                    }
                }
            }
            act_forward(u_k0, &mut s[k0][..r * hid], &mut h[k0][..r * hid], &b);
        }
        for l in k0 + 1..last {
            let (lo, hi) = h.split_at_mut(l);
            mm(r, hid, hid, &mut u[l][..r * hid], (1, hid), &lo[l - 1][..r * hid], (1, hid), w(&sl[l]), (1, hid));
            act_forward(&mut u[l][..r * hid], &mut s[l][..r * hid], &mut hi[0][..r * hid], bias(&sl[l]));
        }
        // Output layer: ε̂ = h·W + b; the error and its gradient.
        let (wo, bo) = (w(&sl[last]), bias(&sl[last]));
        let hl = &h[last - 1][..r * hid];
        mm(r, dim, hid, &mut out[..r * dim], (1, dim), hl, (1, hid), wo, (1, dim));
        let mut sq = 0f64;
        for (orow, erow) in out[..r * dim].chunks_exact_mut(dim).zip(eps.chunks_exact(dim)) {
            for ((o, e), b) in orow.iter_mut().zip(erow).zip(bo) {
                let d = *o + b - e;
                sq += (d as f64) * (d as f64);
                *o = d * norm;
            }
        }
        *loss = sq;

        // ---- backward ----
        let gslot = |s: &Slot| (s.w..s.w + s.input * s.output, s.b..s.b + s.output);
        // Output layer: dW = hᵀ·g, db = Σ g, g1 = g·Wᵀ.
        {
            let gout = &out[..r * dim];
            let (wr, br) = gslot(&sl[last]);
            mm(hid, dim, r, &mut grad[wr], (1, dim), hl, (hid, 1), gout, (1, dim));
            bias_grad(&mut grad[br], gout);
            mm(r, hid, dim, &mut g1[..r * hid], (1, hid), gout, (1, dim), wo, (dim, 1));
        }
        // Hidden trunk layers, last to second.
        for l in (k0 + 1..last).rev() {
            let gu = &mut g1[..r * hid];
            act_backward(gu, &u[l][..r * hid], &s[l][..r * hid]);
            let (wr, br) = gslot(&sl[l]);
            mm(hid, hid, r, &mut grad[wr], (1, hid), &h[l - 1][..r * hid], (hid, 1), gu, (1, hid));
            bias_grad(&mut grad[br], gu);
            mm(r, hid, hid, &mut g2[..r * hid], (1, hid), gu, (1, hid), w(&sl[l]), (hid, 1));
            std::mem::swap(g1, g2);
        }
        // First trunk layer: x rows of the weight, then (Concat) the temb rows;
        // the gradient flows on into temb.
        {
            let gu = &mut g1[..r * hid];
            act_backward(gu, &u[k0][..r * hid], &s[k0][..r * hid]);
            let (wr, br) = gslot(&sl[k0]);
            let (gwx, gwt) = grad[wr].split_at_mut(dim * hid);
            gwx.iter_mut().for_each(|v| *v = 0.0);
            for i in 0..r {
                for j in 0..dim {
                    let xv = x[i * dim + j];
                    for (gv, g) in gwx[j * hid..(j + 1) * hid].iter_mut().zip(&gu[i * hid..(i + 1) * hid]) {
                        *gv += xv * g;
                    }
                }
            }
            if concat {
                mm(ew, hid, r, gwt, (1, hid), &u[t1][..r * ew], (ew, 1), gu, (1, hid));
            }
            bias_grad(&mut grad[br], gu);
            if concat {
                mm(r, ew, hid, &mut g2[..r * ew], (1, ew), gu, (1, hid), wt, (hid, 1));
                std::mem::swap(g1, g2);
            }
        }
        // Second embedding layer: temb = z0·W1 + b1, gradient g1.
        let gt = &g1[..r * ew];
        let (wr, br) = gslot(&sl[t1]);
        mm(ew, ew, r, &mut grad[wr], (1, ew), &h[t0][..r * ew], (ew, 1), gt, (1, ew));
        bias_grad(&mut grad[br], gt);
        mm(r, ew, ew, &mut g2[..r * ew], (1, ew), gt, (1, ew), w(&sl[t1]), (ew, 1));
        // First embedding layer.
        let gz = &mut g2[..r * ew];
        act_backward(gz, &u[t0][..r * ew], &s[t0][..r * ew]);
        let (wr, br) = gslot(&sl[t0]);
        mm(tc, ew, r, &mut grad[wr], (1, ew), &emb[..r * tc], (tc, 1), gz, (1, ew));
        bias_grad(&mut grad[br], gz);
    }
}

/// The factor that brings a vector of norm `norm` to norm at most `max`:
/// `min(1, max/(norm + 10⁻⁶))`, the rule of `torch.nn.utils.clip_grad_norm_` and
/// of DEM's `Clipper` (the Monte Carlo score's clip and the negative-time
/// tail's step).
pub fn clip_factor(norm: f64, max: f64) -> f64 {
    (max / (norm + 1e-6)).min(1.0)
}

/// `torch.nn.utils.clip_grad_norm_(…, max_norm)`: returns the norm before clipping.
pub fn clip_grad_norm(grad: &mut [f32], max_norm: f64) -> f64 {
    let norm = grad.iter().map(|g| (*g as f64) * (*g as f64)).sum::<f64>().sqrt();
    let coef = clip_factor(norm, max_norm);
    if coef < 1.0 {
        let c = coef as f32;
        grad.iter_mut().for_each(|g| *g *= c);
    }
    norm
}

/// `torch.optim.lr_scheduler.ReduceLROnPlateau` in DEM's use (`mode: min`,
/// `factor`, `patience`; PyTorch's defaults for the rest: relative threshold
/// 10⁻⁴, no cooldown, `min_lr` 0, `eps` 10⁻⁸): [`Plateau::step`] takes one
/// validation loss and returns the rate to use from now on. A loss counts as
/// better when it is below `best · (1 − 10⁻⁴)`; after more than `patience`
/// validations in a row that are not, the rate is multiplied by `factor` and
/// the count starts again.
#[derive(Debug, Clone)]
pub struct Plateau {
    pub lr: f64,
    pub factor: f64,
    pub patience: usize,
    best: f64,
    bad: usize,
}

impl Plateau {
    pub const THRESHOLD: f64 = 1e-4;
    pub const EPS: f64 = 1e-8;

    pub fn new(lr: f64, factor: f64, patience: usize) -> Plateau {
        Plateau { lr, factor, patience, best: f64::INFINITY, bad: 0 }
    }

    /// Record a validation loss; the learning rate after it.
    pub fn step(&mut self, loss: f64) -> f64 {
        if loss < self.best * (1.0 - Self::THRESHOLD) {
            self.best = loss;
            self.bad = 0;
        } else {
            self.bad += 1;
        }
        if self.bad > self.patience {
            let new = self.lr * self.factor;
            if self.lr - new > Self::EPS {
                self.lr = new;
            }
            self.bad = 0;
        }
        self.lr
    }
}

/// `torch.optim.AdamW` over a flat parameter vector.
#[derive(Debug, Clone)]
pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl AdamW {
    pub fn new(n: usize, weight_decay: f64) -> AdamW {
        AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay, m: vec![0.0; n], v: vec![0.0; n], t: 0 }
    }

    pub fn step(&mut self, params: &mut [f32], grad: &[f32], lr: f64) {
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t);
        let bc2 = 1.0 - self.beta2.powi(self.t);
        let decay = (1.0 - lr * self.weight_decay) as f32;
        let step = (lr / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        let (b1, b2, eps) = (self.beta1 as f32, self.beta2 as f32, self.eps as f32);
        for (((p, g), m), v) in params.iter_mut().zip(grad).zip(self.m.iter_mut()).zip(self.v.iter_mut()) {
            *p *= decay;
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *p -= step * *m / (v.sqrt() / bc2_sqrt + eps);
        }
    }
}

/// The decay diffusers' `EMAModel` (`use_ema_warmup=False`, `update_after_step=0`,
/// `min_decay=0`) applies at its `optimization_step`-th update (1-based):
/// `n = step − 1`, 0 when `n ≤ 0`, else `min(decay, (1 + n)/(10 + n))`.
pub fn diffusers_ema_decay(optimization_step: usize, decay: f64) -> f64 {
    let n = optimization_step.saturating_sub(1);
    if n == 0 {
        return 0.0;
    }
    ((1.0 + n as f64) / (10.0 + n as f64)).min(decay)
}

/// `ema ← decay·ema + (1 − decay)·params`.
pub fn ema_update(ema: &mut [f32], params: &[f32], decay: f64) {
    let (d, c) = (decay as f32, (1.0 - decay) as f32);
    for (e, p) in ema.iter_mut().zip(params) {
        *e = d * *e + c * p;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plateau_reduces_after_more_than_patience_flat_validations() {
        // PyTorch 2.15: ReduceLROnPlateau(opt(lr=1e-3), mode="min", factor=0.1, patience=2)
        // stepped with 5, 4, 4, 4.0001, 3.9999, 4, 4, 4, 1, 1, 1, 1 gives the rates
        // below, run to check (the third non-improvement in a row reduces; 3.9999 is not below
        // 4·(1 − 1e-4) and so does not count as better).
        let mut p = Plateau::new(1e-3, 0.1, 2);
        let losses = [5.0, 4.0, 4.0, 4.0001, 3.9999, 4.0, 4.0, 4.0, 1.0, 1.0, 1.0, 1.0];
        let rates: Vec<f64> = losses.iter().map(|l| p.step(*l)).collect();
        let want = [1e-3, 1e-3, 1e-3, 1e-3, 1e-4, 1e-4, 1e-4, 1e-5, 1e-5, 1e-5, 1e-5, 1e-6];
        for (i, (a, b)) in rates.iter().zip(want).enumerate() {
            assert!((a - b).abs() < 1e-15, "validation {i}: {a} vs {b}");
        }
        // below eps the rate stops shrinking
        let mut q = Plateau::new(1e-8, 0.1, 0);
        assert_eq!(q.step(1.0), 1e-8);
        assert_eq!(q.step(1.0), 1e-8);
    }
    use crate::model::eps::{EpsLayers, EpsNet};
    use burn::tensor::{Tensor, TensorData};
    use rand::{Rng, SeedableRng};

    /// Hand-written gradients equal burn's autodiff of the reference module,
    /// for both ways the embedding meets `x`.
    #[test]
    fn gradients_match_burn_autodiff() {
        gradients_match(EpsNetConfig { dim: 2, hidden: 24, depth: 3, time_channels: 8, join: Join::Add });
        gradients_match(EpsNetConfig { dim: 2, hidden: 24, depth: 2, time_channels: 10, join: Join::Concat });
    }

    fn gradients_match(cfg: EpsNetConfig) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut layers = EpsLayers::init(&cfg, &mut rng);
        // Non-zero output layer, so every gradient is exercised.
        let last = layers.trunk.len() - 1;
        layers.trunk[last].0.iter_mut().for_each(|v| *v = rng.random_range(-0.3..0.3));
        layers.trunk[last].1.iter_mut().for_each(|v| *v = rng.random_range(-0.3..0.3));
        let rows = 300; // three chunks, the last partial
        let x: Vec<f32> = (0..rows * 2).map(|_| rng.random_range(-2.0..2.0)).collect();
        let t: Vec<f32> = (0..rows).map(|_| rng.random_range(0..1000) as f32).collect();
        let e: Vec<f32> = (0..rows * 2).map(|_| rng.random_range(-1.5..1.5)).collect();

        let mut bp = EpsBackprop::new(&cfg);
        let params = layers.flatten();
        let mut grad = vec![0f32; bp.n_params()];
        let loss = bp.loss_and_grad(&params, &x, &t, &e, &mut grad);

        let dev = crate::model::backend_device(crate::model::Backend::Flex).autodiff();
        let net = EpsNet::from_layers(&layers, &cfg, &dev);
        let xt = Tensor::<2>::from_data(TensorData::new(x, [rows, 2]), &dev);
        let tt = Tensor::<1>::from_data(TensorData::new(t, [rows]), &dev);
        let et = Tensor::<2>::from_data(TensorData::new(e, [rows, 2]), &dev);
        let l = (net.forward(xt, tt) - et).powi_scalar(2).mean();
        let burn_loss: f32 = l.clone().into_scalar();
        assert!((loss - burn_loss as f64).abs() < 1e-5 * (1.0 + loss), "loss {loss} vs burn {burn_loss}");
        let grads = l.backward();
        let mut want = Vec::new();
        for lin in net.temb.iter().chain(net.trunk.iter()) {
            let g = |p: &burn::module::Param<Tensor<1>>| {
                p.val().grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap()
            };
            let gw = lin.weight.val().grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
            want.extend(gw);
            want.extend(g(lin.bias.as_ref().unwrap()));
        }
        assert_eq!(want.len(), grad.len());
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (i, (a, b)) in grad.iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= 1e-4 * scale + 1e-4 * b.abs(), "param {i}: {a} vs burn {b}");
        }
    }

    #[test]
    fn adamw_matches_a_hand_computed_step() {
        // One step from m = v = 0: p ← p(1 − lr·λ) − lr·g/(|g| + ε) (bias-corrected).
        let mut opt = AdamW::new(2, 0.01);
        let mut p = vec![1.0f32, -2.0];
        opt.step(&mut p, &[0.5, -0.25], 0.1);
        assert!((p[0] - (1.0 * 0.999 - 0.1)).abs() < 1e-6, "{}", p[0]);
        assert!((p[1] - (-2.0 * 0.999 + 0.1)).abs() < 1e-6, "{}", p[1]);
    }

    #[test]
    fn clipping_and_ema() {
        let mut g = vec![3.0f32, 4.0];
        assert_eq!(clip_grad_norm(&mut g, 1.0), 5.0);
        assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
        let mut small = vec![0.3f32, 0.4];
        clip_grad_norm(&mut small, 1.0);
        assert_eq!(small, vec![0.3, 0.4]);
        let mut e = vec![1.0f32];
        ema_update(&mut e, &[0.0], 0.999);
        assert!((e[0] - 0.999).abs() < 1e-7);
        // diffusers' EMAModel: copy at the first step, then (1 + n)/(10 + n) up to the cap.
        assert_eq!(diffusers_ema_decay(1, 0.999), 0.0);
        assert_eq!(diffusers_ema_decay(2, 0.999), 2.0 / 11.0);
        assert_eq!(diffusers_ema_decay(101, 0.999), 101.0 / 110.0);
        assert_eq!(diffusers_ema_decay(40_000, 0.999), 0.999);
        // (1 + n)/(10 + n) reaches 0.999 at n = 8990.
        assert!(diffusers_ema_decay(8990, 0.999) < 0.999 && diffusers_ema_decay(8992, 0.999) == 0.999);
    }
}
