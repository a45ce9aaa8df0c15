//! Training the ε-network by hand: its forward and backward pass.
//!
//! The two-moons setting (40 000 steps at batch 512) wants about a millisecond
//! a step, out of reach of burn's autodiff on a CPU backend (the
//! `ddpm/burn_train_step_512` bench against `ddpm/train_step_512`).
//! [`EpsBackprop`] computes the same loss and gradients directly, in the kit's
//! [`ChunkPool`] (fixed chunks of [`CHUNK`] rows, summed in chunk order, so the
//! bytes are the same on any number of threads):
//!
//! * parameters live in one flat `Vec<f32>` ([`super::net::EpsLayers::flatten`]
//!   order);
//! * each chunk's forward and backward run on one thread with the `gemm` crate
//!   (weight gradients as `Aᵀ·G`, input gradients as `G·Wᵀ`, both by strides,
//!   no transposes copied) and fused bias + SiLU kernels;
//! * the loss is `mean((ε̂ − ε)²)` over rows and coordinates, as PyTorch's
//!   `F.mse_loss`.
//!
//! The gradients are checked against burn's autodiff of [`super::net::EpsNet`]
//! in this module's tests. The optimiser, clipping and EMA are the kit's
//! ([`crate::numerics::nn::backprop`]).

use super::net::{EpsNetConfig, Join, timestep_embedding_into};
use crate::numerics::nn::backprop::{CHUNK, ChunkPool, Slot, act_backward, act_forward, bias_grad};
use crate::numerics::nn::fast::mm;

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

crate::chunk_grad!(Workspace, grad, loss);

/// Loss and gradient of the ε-network for one architecture.
pub struct EpsBackprop {
    cfg: EpsNetConfig,
    freqs: Vec<f32>,
    slots: Vec<Slot>,
    n_params: usize,
    pool: ChunkPool<Workspace>,
}

impl EpsBackprop {
    pub fn new(cfg: &EpsNetConfig) -> EpsBackprop {
        let (slots, at) = Slot::layout(cfg.temb_shapes().into_iter().chain(cfg.trunk_shapes()));
        EpsBackprop { cfg: cfg.clone(), freqs: cfg.frequencies(), slots, n_params: at, pool: ChunkPool::default() }
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
        let norm = 2.0 / (rows * dim) as f32;
        let mut pool = std::mem::take(&mut self.pool);
        let this = &*self;
        let loss = pool.sum(
            rows,
            CHUNK,
            || this.workspace(),
            Some(grad),
            |r, ws| {
                let rd = r.start * dim..r.end * dim;
                this.chunk(params, &xt[rd.clone()], &t[r], &eps[rd], norm, ws);
            },
        );
        self.pool = pool;
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

#[cfg(test)]
mod tests {
    use super::super::net::{EpsLayers, EpsNet};
    use super::*;
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

        let dev = crate::numerics::nn::flex_device().autodiff();
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
}
