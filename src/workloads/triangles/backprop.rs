//! The score network by hand: forward passes, the input vector–Jacobian
//! product `Jₓᵀa` that Adjoint Matching's lean adjoint takes once per step,
//! and the regression loss's weight gradient.
//!
//! [`Mlp`] is any network of the triangles workload: `[x, features(t)]` →
//! Linear → SiLU → … → Linear(·, dim), where the features are the score
//! network's sinusoidal time embedding ([`Features::Sinusoidal`], the
//! pre-trained [`super::net::ScoreNet`]) or `t` itself ([`Features::Time`], the
//! S-MEME [`super::net::DeltaNet`]). Its parameters live in one flat vector
//! (layer by layer, weight `[input × output]` row-major, then bias — the order
//! of [`crate::numerics::nn::unflatten_layers`]).
//!
//! Every pass runs in the kit's [`ChunkPool`] (fixed chunks of rows, each on
//! one thread with the `gemm` crate; gradients summed in chunk order), so the
//! bytes do not depend on the thread count. Passes at one shared `t` (the
//! sampler's and the adjoint's) fold the features into the first layer's bias;
//! the loss pass, whose rows carry their own `t`, multiplies the whole input.
//! Both are checked against burn's autodiff of the same module in the tests.

use crate::numerics::nn::backprop::{CHUNK, ChunkPool, Slot, act_backward, act_forward, bias_grad};
use crate::numerics::nn::fast::mm;
use crate::numerics::nn::{Layers, sinusoidal_into};

/// What the first layer reads beside `x`.
#[derive(Debug, Clone, PartialEq)]
pub enum Features {
    /// The sinusoidal embedding of `t` at these frequencies (sines, then cosines).
    Sinusoidal(Vec<f32>),
    /// `t` itself.
    Time,
}

impl Features {
    fn width(&self) -> usize {
        match self {
            Features::Sinusoidal(f) => 2 * f.len(),
            Features::Time => 1,
        }
    }
    fn fill(&self, t: f32, out: &mut [f32]) {
        match self {
            Features::Sinusoidal(f) => sinusoidal_into(t, f, false, out),
            Features::Time => out[0] = t,
        }
    }
}

/// One chunk's activations and gradient.
struct Workspace {
    /// The first layer's input `[x, features]` (loss pass) and its bias at a shared `t`.
    inp: Vec<f32>,
    bias: Vec<f32>,
    u: Vec<Vec<f32>>,
    s: Vec<Vec<f32>>,
    h: Vec<Vec<f32>>,
    out: Vec<f32>,
    g1: Vec<f32>,
    g2: Vec<f32>,
    grad: Vec<f32>,
    loss: f64,
}

crate::chunk_grad!(Workspace, grad, loss);

/// A network's shape and the passes over its flat parameters.
pub struct Mlp {
    dim: usize,
    features: Features,
    slots: Vec<Slot>,
    n_params: usize,
    widest: usize,
    pool: ChunkPool<Workspace>,
}

impl Mlp {
    /// The network of layer shapes `shapes` ((input, output) each; the first
    /// reads `dim + features` values, the last writes `dim`).
    pub fn new(dim: usize, features: Features, shapes: &[(usize, usize)]) -> Mlp {
        assert_eq!(shapes[0].0, dim + features.width(), "the first layer reads [x, features]");
        assert_eq!(shapes[shapes.len() - 1].1, dim, "the last layer writes dim values");
        let (slots, n_params) = Slot::layout(shapes.iter().copied());
        let widest = shapes.iter().map(|s| s.0.max(s.1)).max().unwrap_or(dim);
        Mlp { dim, features, slots, n_params, widest, pool: ChunkPool::default() }
    }

    pub fn n_params(&self) -> usize {
        self.n_params
    }

    /// The shapes of its layers.
    pub fn shapes(&self) -> Vec<(usize, usize)> {
        self.slots.iter().map(|s| (s.input, s.output)).collect()
    }

    /// Flatten plain layers in this network's order.
    pub fn flatten(layers: &Layers) -> Vec<f32> {
        layers.iter().flat_map(|(w, b, _, _)| w.iter().chain(b).copied()).collect()
    }

    fn workspace(&self) -> Workspace {
        let (n, w) = (CHUNK, self.widest);
        let hidden = self.slots.len() - 1;
        Workspace {
            inp: vec![0.0; n * self.slots[0].input],
            bias: vec![0.0; self.slots[0].output],
            u: (0..hidden).map(|_| vec![0.0; n * w]).collect(),
            s: (0..hidden).map(|_| vec![0.0; n * w]).collect(),
            h: (0..hidden).map(|_| vec![0.0; n * w]).collect(),
            out: vec![0.0; n * self.dim],
            g1: vec![0.0; n * w],
            g2: vec![0.0; n * w],
            grad: vec![0.0; self.n_params],
            loss: 0.0,
        }
    }

    /// `s(x, t)` at one shared `t` into `out`, and with `a` given, `Jₓ s(x, t)ᵀ·a`
    /// (row by row) into `vjp`. `x`, `a`, `out` and `vjp` are row-major, `dim` columns.
    pub fn forward_vjp(&mut self, p: &[f32], x: &[f32], t: f32, a: Option<&[f32]>, out: &mut [f32], vjp: &mut [f32]) {
        let (dim, rows) = (self.dim, x.len() / self.dim);
        let mut pool = std::mem::take(&mut self.pool);
        let this = &*self;
        // `out` and `vjp` side by side per chunk: one buffer, split after.
        let mut both = vec![0f32; rows * 2 * dim];
        pool.for_each_out(
            rows,
            CHUNK,
            &mut both,
            2 * dim,
            || this.workspace(),
            |r, ws, o| {
                let n = r.len();
                this.forward_chunk(p, &x[r.start * dim..r.end * dim], Some(t), None, ws);
                for i in 0..n {
                    o[i * 2 * dim..i * 2 * dim + dim].copy_from_slice(&ws.out[i * dim..(i + 1) * dim]);
                }
                if let Some(a) = a {
                    ws.out[..n * dim].copy_from_slice(&a[r.start * dim..r.end * dim]);
                    this.backward_chunk(p, n, None, ws);
                    for i in 0..n {
                        o[i * 2 * dim + dim..(i + 1) * 2 * dim].copy_from_slice(&ws.g1[i * dim..(i + 1) * dim]);
                    }
                }
            },
        );
        self.pool = pool;
        for (i, row) in both.chunks_exact(2 * dim).enumerate() {
            out[i * dim..(i + 1) * dim].copy_from_slice(&row[..dim]);
            if a.is_some() {
                vjp[i * dim..(i + 1) * dim].copy_from_slice(&row[dim..]);
            }
        }
    }

    /// `s(x_i, t_i)`, each row at its own `t`, into `out`.
    pub fn forward_rows(&mut self, p: &[f32], x: &[f32], t: &[f32], out: &mut [f32]) {
        let dim = self.dim;
        let mut pool = std::mem::take(&mut self.pool);
        let this = &*self;
        pool.for_each_out(
            t.len(),
            CHUNK,
            out,
            dim,
            || this.workspace(),
            |r, ws, o| {
                this.forward_chunk(p, &x[r.start * dim..r.end * dim], None, Some(&t[r.clone()]), ws);
                o.copy_from_slice(&ws.out[..r.len() * dim]);
            },
        );
        self.pool = pool;
    }

    /// The regression loss `mean_i w·‖s(x_i, t_i) − target_i‖²` (rows at their
    /// own `t`) and its gradient in `grad` ([`Mlp::n_params`] values).
    pub fn loss_and_grad(
        &mut self,
        p: &[f32],
        (x, t, target): (&[f32], &[f32], &[f32]),
        w: f32,
        grad: &mut [f32],
    ) -> f64 {
        let (dim, rows) = (self.dim, t.len());
        let norm = 2.0 * w / rows as f32;
        let mut pool = std::mem::take(&mut self.pool);
        let this = &*self;
        let loss = pool.sum(
            rows,
            CHUNK,
            || this.workspace(),
            Some(grad),
            |r, ws| {
                let n = r.len();
                let rd = r.start * dim..r.end * dim;
                this.forward_chunk(p, &x[rd.clone()], None, Some(&t[r.clone()]), ws);
                let mut sq = 0f64;
                for (o, y) in ws.out[..n * dim].iter_mut().zip(&target[rd]) {
                    let d = *o - y;
                    sq += (d as f64) * (d as f64);
                    *o = d * norm;
                }
                ws.loss = sq * w as f64;
                this.backward_chunk(p, n, Some(&x[r.start * dim..r.end * dim]), ws);
            },
        );
        self.pool = pool;
        loss / rows as f64
    }

    /// Forward one chunk: at a shared `t` (features folded into the first
    /// layer's bias) or at per-row `ts`. Leaves `ws.out` (`n × dim`).
    fn forward_chunk(&self, p: &[f32], x: &[f32], t: Option<f32>, ts: Option<&[f32]>, ws: &mut Workspace) {
        let (dim, n) = (self.dim, x.len() / self.dim);
        let sl = &self.slots;
        let last = sl.len() - 1;
        let w = |s: &Slot| &p[s.w..s.w + s.input * s.output];
        let bias = |s: &Slot| &p[s.b..s.b + s.output];
        let (in0, h0) = (sl[0].input, sl[0].output);
        let Workspace { inp, bias: b0, u, s, h, out, .. } = ws;
        match (t, ts) {
            (Some(t), _) => {
                // bias' = features(t)·W[dim..] + b; u = x·W[..dim].
                let mut feat = vec![0f32; in0 - dim];
                self.features.fill(t, &mut feat);
                b0.copy_from_slice(bias(&sl[0]));
                for (k, e) in feat.iter().enumerate() {
                    let row = &w(&sl[0])[(dim + k) * h0..(dim + k + 1) * h0];
                    b0.iter_mut().zip(row).for_each(|(bv, wv)| *bv += e * wv);
                }
                mm(n, h0, dim, &mut u[0][..n * h0], (1, h0), x, (1, dim), &w(&sl[0])[..dim * h0], (1, h0));
            }
            (None, Some(ts)) => {
                for (i, tv) in ts.iter().enumerate() {
                    let row = &mut inp[i * in0..(i + 1) * in0];
                    row[..dim].copy_from_slice(&x[i * dim..(i + 1) * dim]);
                    self.features.fill(*tv, &mut row[dim..]);
                }
                b0.copy_from_slice(bias(&sl[0]));
                mm(n, h0, in0, &mut u[0][..n * h0], (1, h0), &inp[..n * in0], (1, in0), w(&sl[0]), (1, h0));
            }
            (None, None) => unreachable!("a time for every row or one for all"),
        }
        act_forward(&mut u[0][..n * h0], &mut s[0][..n * h0], &mut h[0][..n * h0], b0);
        for l in 1..last {
            let (i, o) = (sl[l].input, sl[l].output);
            let (lo, hi) = h.split_at_mut(l);
            mm(n, o, i, &mut u[l][..n * o], (1, o), &lo[l - 1][..n * i], (1, i), w(&sl[l]), (1, o));
            act_forward(&mut u[l][..n * o], &mut s[l][..n * o], &mut hi[0][..n * o], bias(&sl[l]));
        }
        let il = sl[last].input;
        mm(n, dim, il, &mut out[..n * dim], (1, dim), &h[last - 1][..n * il], (1, il), w(&sl[last]), (1, dim));
        for row in out[..n * dim].chunks_exact_mut(dim) {
            row.iter_mut().zip(bias(&sl[last])).for_each(|(o, b)| *o += b);
        }
    }

    /// Backward one chunk from the output gradient in `ws.out`: with `x`
    /// (the loss pass, per-row `t`: `ws.inp` holds the input) the weight
    /// gradient into `ws.grad`; without, the input gradient `Jₓᵀ·g` into
    /// `ws.g1` (`n × dim`).
    fn backward_chunk(&self, p: &[f32], n: usize, x: Option<&[f32]>, ws: &mut Workspace) {
        let dim = self.dim;
        let sl = &self.slots;
        let last = sl.len() - 1;
        let w = |s: &Slot| &p[s.w..s.w + s.input * s.output];
        let Workspace { inp, u, s, h, out, g1, g2, grad, .. } = ws;
        let weights = x.is_some();
        let gslot = |s: &Slot| (s.w..s.w + s.input * s.output, s.b..s.b + s.output);
        let gout = &out[..n * dim];
        let il = sl[last].input;
        if weights {
            let (wr, br) = gslot(&sl[last]);
            mm(il, dim, n, &mut grad[wr], (1, dim), &h[last - 1][..n * il], (il, 1), gout, (1, dim));
            bias_grad(&mut grad[br], gout);
        }
        mm(n, il, dim, &mut g1[..n * il], (1, il), gout, (1, dim), w(&sl[last]), (dim, 1));
        for l in (0..last).rev() {
            let (i, o) = (sl[l].input, sl[l].output);
            let gu = &mut g1[..n * o];
            act_backward(gu, &u[l][..n * o], &s[l][..n * o]);
            if weights {
                let (wr, br) = gslot(&sl[l]);
                let below: &[f32] = if l == 0 { &inp[..n * i] } else { &h[l - 1][..n * i] };
                mm(i, o, n, &mut grad[wr], (1, o), below, (i, 1), gu, (1, o));
                bias_grad(&mut grad[br], gu);
                if l == 0 {
                    return;
                }
            }
            // Into the layer's input; the first layer's only to its x rows.
            let i = if l == 0 { dim } else { i };
            mm(n, i, o, &mut g2[..n * i], (1, i), gu, (1, o), &w(&sl[l])[..i * o], (o, 1));
            std::mem::swap(g1, g2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numerics::nn::{init_layers, linears};
    use crate::workloads::backend_device;
    use crate::workloads::triangles::net::{DeltaNet, ScoreNet};
    use burn::tensor::{Tensor, TensorData};
    use rand::{Rng, SeedableRng};

    fn layers(shapes: &[(usize, usize)], seed: u64) -> Layers {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut l = init_layers(shapes, false, &mut rng);
        // Larger weights than the default, so SiLU's curvature shows.
        for (w, b, _, _) in l.iter_mut() {
            w.iter_mut().chain(b.iter_mut()).for_each(|v| *v *= 1.5);
        }
        l
    }

    /// burn's score network (sinusoidal features) or delta network (`t`), and its
    /// forward on `x`, `t`, on the autodiff device.
    fn burn_forward(
        l: &Layers,
        features: &Features,
        x: Tensor<2>,
        t: Tensor<1>,
        dev: &burn::tensor::Device,
    ) -> (Tensor<2>, Vec<burn::nn::Linear>) {
        let lin = linears(l, dev, 0);
        match features {
            Features::Sinusoidal(f) => {
                let net = ScoreNet { layers: lin.clone(), dim: 3, n_freqs: f.len(), f_min: 1.0, f_max: 1000.0 };
                (net.forward(x, t), lin)
            }
            Features::Time => (DeltaNet { layers: lin.clone() }.forward(x, t), lin),
        }
    }

    fn cases() -> Vec<(Features, Vec<(usize, usize)>)> {
        let freqs = crate::workloads::triangles::net::ScoreNetConfig {
            n_freqs: 4,
            ..crate::workloads::triangles::net::ScoreNetConfig::seed_default()
        }
        .frequencies();
        vec![
            (Features::Sinusoidal(freqs), vec![(3 + 8, 24), (24, 16), (16, 3)]),
            (Features::Time, vec![(4, 12), (12, 12), (12, 3)]),
        ]
    }

    /// The input VJP at a shared `t` (over several chunks) equals burn's
    /// autodiff gradient of `Σ a·s(x, t)` with respect to `x`, and the forward
    /// equals burn's.
    #[test]
    fn input_vjp_matches_burn_autodiff() {
        let dev = backend_device(crate::engine::stage::Backend::Flex).autodiff();
        for (features, shapes) in cases() {
            let l = layers(&shapes, 7);
            let mut mlp = Mlp::new(3, features.clone(), &shapes);
            let p = Mlp::flatten(&l);
            let rows = 300;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
            let x: Vec<f32> = (0..rows * 3).map(|_| rng.random_range(-1.5..1.5)).collect();
            let a: Vec<f32> = (0..rows * 3).map(|_| rng.random_range(-1.0..1.0)).collect();
            let t = 0.37f32;
            let (mut out, mut vjp) = (vec![0f32; rows * 3], vec![0f32; rows * 3]);
            mlp.forward_vjp(&p, &x, t, Some(&a), &mut out, &mut vjp);

            let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [rows, 3]), &dev).require_grad();
            let tt = Tensor::<1>::from_data(TensorData::new(vec![t; rows], [rows]), &dev);
            let at = Tensor::<2>::from_data(TensorData::new(a.clone(), [rows, 3]), &dev);
            let (s, _) = burn_forward(&l, &features, xt.clone(), tt, &dev);
            let want_s = s.clone().into_data().try_to_vec::<f32>().unwrap();
            let grads = s.mul(at).sum().backward();
            let want = xt.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
            for (g, w) in out.iter().zip(&want_s) {
                assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "forward {g} vs burn {w}");
            }
            for (g, w) in vjp.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "vjp {g} vs burn {w}");
            }
            // Per-row times give the same forward.
            let mut rows_out = vec![0f32; rows * 3];
            mlp.forward_rows(&p, &x, &vec![t; rows], &mut rows_out);
            for (g, w) in rows_out.iter().zip(&want_s) {
                assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "forward_rows {g} vs burn {w}");
            }
        }
    }

    /// The loss's weight gradient (rows at their own `t`, over several chunks)
    /// equals burn's autodiff of the same loss.
    #[test]
    fn loss_gradient_matches_burn_autodiff() {
        let dev = backend_device(crate::engine::stage::Backend::Flex).autodiff();
        for (features, shapes) in cases() {
            let l = layers(&shapes, 9);
            let mut mlp = Mlp::new(3, features.clone(), &shapes);
            let p = Mlp::flatten(&l);
            let rows = 333;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
            let x: Vec<f32> = (0..rows * 3).map(|_| rng.random_range(-1.5..1.5)).collect();
            let t: Vec<f32> = (0..rows).map(|_| rng.random_range(0.0..1.0)).collect();
            let y: Vec<f32> = (0..rows * 3).map(|_| rng.random_range(-2.0..2.0)).collect();
            let w = 0.25f32;
            let mut grad = vec![0f32; mlp.n_params()];
            let loss = mlp.loss_and_grad(&p, (&x, &t, &y), w, &mut grad);

            let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [rows, 3]), &dev);
            let tt = Tensor::<1>::from_data(TensorData::new(t.clone(), [rows]), &dev);
            let yt = Tensor::<2>::from_data(TensorData::new(y.clone(), [rows, 3]), &dev);
            let (s, lin) = burn_forward(&l, &features, xt, tt, &dev);
            let burn_loss = (s - yt).powi_scalar(2).sum_dim(1).mean().mul_scalar(w);
            let want_loss = burn_loss.clone().into_scalar::<f32>() as f64;
            assert!((loss - want_loss).abs() <= 1e-5 * want_loss.abs().max(1.0), "{loss} vs {want_loss}");
            let grads = burn_loss.backward();
            let mut want = Vec::new();
            for layer in &lin {
                let gw = layer.weight.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
                let gb = layer.bias.as_ref().unwrap().grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
                want.extend(gw);
                want.extend(gb);
            }
            assert_eq!(want.len(), grad.len());
            for (g, w) in grad.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "grad {g} vs burn {w}");
            }
        }
    }
}
