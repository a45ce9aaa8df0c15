//! The pieces of hand-written training: what every network trained without
//! burn's autodiff (the two-moons ε-network, the DEM MLP and EGNN, the colour
//! autoencoder) computes its loss, gradient and step with.
//!
//! Such networks exist because burn's autodiff on a CPU backend allocates and
//! dispatches every op of a small MLP, far from what the hardware can do (the
//! `ddpm/burn_train_step_512` bench against `ddpm/train_step_512`). Each keeps
//! its parameters in one flat `Vec<f32>` ([`Slot`]s say where each layer's
//! weight and bias sit), so the optimiser, clipping and EMA are single loops,
//! and each is checked against burn's autodiff of a reference module in its
//! workload's tests.
//!
//! * [`ChunkPool`]: the harness every backward pass runs in. The batch is cut
//!   into fixed chunks of rows; each chunk's forward and backward run on one
//!   thread in a workspace kept between calls; the chunks' gradients and losses
//!   are then summed in chunk order. Chunking is fixed by the batch, not by the
//!   thread count, so results are bit-identical on any number of threads.
//! * fused bias + SiLU forward and backward ([`act_forward`], [`act_backward`],
//!   compiled for AVX-512 and AVX2 and picked at run time) and [`bias_grad`];
//! * [`AdamW`] follows `torch.optim.AdamW` (decoupled decay `p ← p − lr·λ·p` on
//!   every parameter, bias-corrected moments, ε = 1e-8 outside the square
//!   root); [`clip_grad_norm`] follows `torch.nn.utils.clip_grad_norm_` (global
//!   L2 norm, scale by `max/(norm + 1e-6)` when below 1); [`Plateau`] is
//!   `ReduceLROnPlateau`; [`ema_update`] is the exponential moving average
//!   `e ← d·e + (1 − d)·p` after every optimiser step, and
//!   [`diffusers_ema_decay`] the warm-up of diffusers' `EMAModel(decay=0.999)`:
//!   `d = 0` at the first step (the average starts as the weights after one
//!   step) and `min(decay, (1 + n)/(10 + n))` after `n + 1` steps.

use std::ops::Range;

use rayon::prelude::*;

use super::fast::exp_fast;

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
pub fn act_forward(u: &mut [f32], s: &mut [f32], h: &mut [f32], bias: &[f32]) {
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
pub fn act_backward(g: &mut [f32], u: &[f32], s: &[f32]) {
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
pub fn bias_grad(db: &mut [f32], g: &[f32]) {
    db.iter_mut().for_each(|v| *v = 0.0);
    for row in g.chunks_exact(db.len()) {
        for (d, v) in db.iter_mut().zip(row) {
            *d += v;
        }
    }
}

/// Offsets of one layer's weight and bias in the flat parameter vector.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub w: usize,
    pub b: usize,
    pub input: usize,
    pub output: usize,
}

impl Slot {
    /// The slots of layers of `shapes` (in, out) laid out one after another,
    /// and the parameter count.
    pub fn layout(shapes: impl IntoIterator<Item = (usize, usize)>) -> (Vec<Slot>, usize) {
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

/// One chunk's share of a loss and its gradient, as its workspace holds them
/// after [`ChunkPool::sum`]'s body ran.
pub trait ChunkGrad {
    /// The chunk's gradient ([`ChunkPool::sum`] reads it only when a gradient
    /// was asked for).
    fn grad(&self) -> &[f32];
    /// The chunk's share of the loss, unnormalised.
    fn loss(&self) -> f64;
}

/// [`ChunkGrad`] for a workspace whose gradient and loss are its fields
/// `$grad` and `$loss`.
#[macro_export]
macro_rules! chunk_grad {
    ($ty:ty, $grad:ident, $loss:ident) => {
        impl $crate::numerics::nn::backprop::ChunkGrad for $ty {
            fn grad(&self) -> &[f32] {
                &self.$grad
            }
            fn loss(&self) -> f64 {
                self.$loss
            }
        }
    };
}

/// Per-chunk workspaces, kept between calls, and the fixed-chunk parallel loop
/// over a batch (see the module docs): every hand-written forward and backward
/// pass runs in one.
#[derive(Debug)]
pub struct ChunkPool<W> {
    spaces: Vec<W>,
}

impl<W> Default for ChunkPool<W> {
    fn default() -> Self {
        ChunkPool { spaces: Vec::new() }
    }
}

impl<W: Send> ChunkPool<W> {
    /// `body(rows of the chunk, its workspace)` for every chunk of `chunk`
    /// rows of a batch of `rows`, on any thread; workspaces are made by
    /// `make` when the pool has too few. Returns the chunks' workspaces, in order.
    pub fn for_each(
        &mut self,
        rows: usize,
        chunk: usize,
        make: impl Fn() -> W,
        body: impl Fn(Range<usize>, &mut W) + Sync,
    ) -> &[W] {
        let n = rows.div_ceil(chunk);
        while self.spaces.len() < n {
            self.spaces.push(make());
        }
        self.spaces[..n]
            .par_iter_mut()
            .enumerate()
            .for_each(|(c, ws)| body(c * chunk..((c + 1) * chunk).min(rows), ws));
        &self.spaces[..n]
    }

    /// [`ChunkPool::for_each`] with each chunk's rows of `out` (`width`
    /// values a row) given to `body` to fill.
    pub fn for_each_out(
        &mut self,
        rows: usize,
        chunk: usize,
        out: &mut [f32],
        width: usize,
        make: impl Fn() -> W,
        body: impl Fn(Range<usize>, &mut W, &mut [f32]) + Sync,
    ) {
        let n = rows.div_ceil(chunk);
        while self.spaces.len() < n {
            self.spaces.push(make());
        }
        self.spaces[..n]
            .par_iter_mut()
            .zip(out[..rows * width].par_chunks_mut(chunk * width))
            .enumerate()
            .for_each(|(c, (ws, o))| body(c * chunk..((c + 1) * chunk).min(rows), ws, o));
    }
}

impl<W: Send + ChunkGrad> ChunkPool<W> {
    /// [`ChunkPool::for_each`], then the chunks' gradients summed in chunk
    /// order into `grad` (when given) and their losses likewise: the returned
    /// loss is unnormalised. An empty batch has loss 0 and a zero gradient.
    pub fn sum(
        &mut self,
        rows: usize,
        chunk: usize,
        make: impl Fn() -> W,
        grad: Option<&mut [f32]>,
        body: impl Fn(Range<usize>, &mut W) + Sync,
    ) -> f64 {
        let spaces = self.for_each(rows, chunk, make, body);
        let Some((first, rest)) = spaces.split_first() else {
            grad.into_iter().for_each(|g| g.fill(0.0));
            return 0.0;
        };
        if let Some(grad) = grad {
            grad.copy_from_slice(first.grad());
            for ws in rest {
                grad.iter_mut().zip(ws.grad()).for_each(|(g, v)| *g += v);
            }
        }
        let mut loss = first.loss();
        for ws in rest {
            loss += ws.loss();
        }
        loss
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
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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

/// `torch.optim.AdamW` over a flat parameter vector (its moments and step
/// count serialise, for checkpoints).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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

    struct Part {
        grad: Vec<f32>,
        loss: f64,
    }

    impl ChunkGrad for Part {
        fn grad(&self) -> &[f32] {
            &self.grad
        }
        fn loss(&self) -> f64 {
            self.loss
        }
    }

    /// The pool sums chunk by chunk in order, the same bytes on any number of
    /// threads, and reuses its workspaces.
    #[test]
    fn chunk_pool_sums_in_chunk_order_on_any_thread_count() {
        let x: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1013) as f32 * 1e-3 - 0.4).collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut chunks = ChunkPool::default();
                let mut grad = vec![0f32; 3];
                let body = |r: Range<usize>, p: &mut Part| {
                    p.grad = vec![x[r.clone()].iter().sum(), x[r.clone()].iter().map(|v| v * v).sum(), r.len() as f32];
                    p.loss = x[r].iter().map(|v| *v as f64).sum();
                };
                let make = || Part { grad: Vec::new(), loss: 0.0 };
                let loss = chunks.sum(x.len(), 128, make, Some(&mut grad), body);
                assert_eq!(chunks.spaces.len(), 8);
                let again = chunks.sum(300, 128, make, None, body);
                assert_eq!(chunks.spaces.len(), 8, "workspaces are reused");
                (grad, loss, again)
            })
        };
        let (g1, l1, a1) = run(1);
        assert_eq!(g1[2], 1000.0);
        // In chunk order: ((c0 + c1) + c2) + …
        let mut want = 0f64;
        for c in x.chunks(128) {
            want += c.iter().map(|v| *v as f64).sum::<f64>();
        }
        assert_eq!(l1, want);
        assert_eq!(a1, x[..300].chunks(128).map(|c| c.iter().map(|v| *v as f64).sum::<f64>()).sum::<f64>());
        for threads in [2, 3, 8] {
            let (g, l, a) = run(threads);
            assert_eq!(
                (g.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), l, a),
                (g1.iter().map(|v| v.to_bits()).collect(), l1, a1)
            );
        }
        let mut empty = ChunkPool::<Part>::default();
        let mut g = vec![1f32; 2];
        assert_eq!(empty.sum(0, 128, || unreachable!(), Some(&mut g), |_, _| {}), 0.0);
        assert_eq!(g, [0.0, 0.0]);
    }
}
