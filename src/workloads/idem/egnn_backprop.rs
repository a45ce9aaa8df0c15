//! DEM's EGNN ([`super::egnn`]) trained by hand: the forward pass with its
//! activations kept, and the backward pass of iDEM's particle loss, on plain
//! weights in one flat vector ([`crate::workloads::idem::mlp::flatten`]
//! order: every linear layer's `[in × out]` weight, then its bias).
//!
//! Why: burn's autodiff on a CPU backend runs DEM's EGNN training step 2–3×
//! slower than PyTorch (`cargo bench --bench idem -- egnn`), and the particle
//! budgets are bound by it. This module computes the same loss and gradients
//! directly:
//!
//! * the batch is cut into chunks of a fixed number of configurations (a
//!   function of the particle count only: about 1024 edges a chunk, at most
//!   16 configurations), each chunk's forward and backward on one thread; the
//!   chunks' gradients are summed in chunk order, so the result does not depend
//!   on the thread count;
//! * every edge is an ordered pair `i ≠ j` (no diagonal rows, unlike the
//!   module's masked `n × n` broadcast), every matrix product a `gemm` call
//!   with transposes by strides (weight gradients `Xᵀ·G`, input gradients
//!   `G·Wᵀ`), the first edge layer applied by parts (`h_i·W_i + h_j·W_j` from
//!   one product per node);
//! * the loss is `mean_b w_b · mean_d (s_θ(x_b, t_b)_d − target_{b,d})²`, the
//!   particle loop's (DEM's `get_loss` with its λ weights).
//!
//! The backward pass, layer by layer from the output: the score's centring
//! projects the gradient onto the mean-free subspace; the coordinate update
//! `c ← c + Σ_j u_ij·tanh(W_c2 SiLU(W_c1 m_ij))·15/L` sends gradients into the
//! gated messages and, through `u_ij = (c_i − c_j)/(√(r_ij + 10⁻⁸) + 1)` and
//! `r_ij = ‖c_i − c_j‖²`, into the positions; the node update's residual and
//! aggregation send them into `h` and the messages; the attention gate
//! `m·σ(W_a m)` and the two edge layers carry them back to `h_i`, `h_j` and
//! `r_ij`. The input distances `a_ij` are data. The last layer's node update
//! feeds nothing (its weights get zero gradients, as under autodiff).
//!
//! Checked against burn's autodiff of [`super::egnn::Egnn`] in this module's
//! tests (loss, every gradient) on DW-4 and LJ-13 shapes.

use rayon::prelude::*;

use super::egnn::{EgnnConfig, PER_LAYER};
use crate::numerics::nn::backprop::{ChunkPool, Slot, act_backward, act_forward, bias_grad};
use crate::numerics::nn::fast::{mm, mm_acc};

/// One chunk's weighted squared error and, when asked, its gradient.
struct Part {
    grad: Vec<f32>,
    sq: f64,
}

crate::chunk_grad!(Part, grad, sq);

/// The EGNN's loss and gradient on a flat parameter vector.
#[derive(Debug, Clone)]
pub struct EgnnBackprop {
    cfg: EgnnConfig,
    slots: Vec<Slot>,
    n_params: usize,
}

/// What the forward pass keeps of one equivariant layer.
#[derive(Default)]
struct Tape {
    /// Node features (`rows × H`) and positions (`rows × d`) entering the layer.
    h: Vec<f32>,
    c: Vec<f32>,
    /// Per edge: `‖c_i − c_j‖²` and the scaled difference `u_ij`.
    radial: Vec<f32>,
    unit: Vec<f32>,
    /// Edge layer 1 and 2: pre-activation (bias in), sigmoid, SiLU output.
    u0: Vec<f32>,
    s0: Vec<f32>,
    a0: Vec<f32>,
    u1: Vec<f32>,
    s1: Vec<f32>,
    a1: Vec<f32>,
    /// Attention per edge and the gated message `m·att`.
    att: Vec<f32>,
    g: Vec<f32>,
    /// Coordinate MLP's hidden layer, and `tanh` of its output per edge.
    u5: Vec<f32>,
    s5: Vec<f32>,
    a5: Vec<f32>,
    th: Vec<f32>,
    /// Node update: `[h, Σ_j m_ij]` and the hidden layer (not on the last layer).
    node_in: Vec<f32>,
    u3: Vec<f32>,
    s3: Vec<f32>,
    a3: Vec<f32>,
}

impl EgnnBackprop {
    pub fn new(cfg: &EgnnConfig) -> EgnnBackprop {
        let (slots, at) = Slot::layout(cfg.shapes());
        EgnnBackprop { cfg: *cfg, slots, n_params: at }
    }

    /// Length of the flat parameter vector (the coordinate layers' unused bias
    /// slots included: they stay zero).
    pub fn n_params(&self) -> usize {
        self.n_params
    }

    /// Configurations per chunk: about 1024 edges, between 1 and 16.
    pub fn chunk_configs(&self) -> usize {
        let pairs = self.cfg.n * (self.cfg.n - 1);
        (1024 / pairs).clamp(1, 16)
    }

    /// `mean_b w_b · mean_d (s_θ(x_b, t_b) − target_b)²` over the batch
    /// (`x`, `target`: `B × n·d`; `t`, `weight`: `B`) and its gradient,
    /// written to `grad` ([`EgnnBackprop::n_params`] values).
    pub fn loss_and_grad(
        &self,
        params: &[f32],
        x: &[f32],
        t: &[f32],
        target: &[f32],
        weight: &[f32],
        grad: &mut [f32],
    ) -> f64 {
        self.chunked_loss(params, x, t, target, weight, Some(grad))
    }

    /// The loss of [`EgnnBackprop::loss_and_grad`] alone, bit for bit, without
    /// the backward pass (a validation loss, which steps no weights).
    pub fn loss(&self, params: &[f32], x: &[f32], t: &[f32], target: &[f32], weight: &[f32]) -> f64 {
        self.chunked_loss(params, x, t, target, weight, None)
    }

    /// Both of the above: the same chunks in the same order, so the loss is
    /// the same bytes with or without the gradient.
    fn chunked_loss(
        &self,
        params: &[f32],
        x: &[f32],
        t: &[f32],
        target: &[f32],
        weight: &[f32],
        grad: Option<&mut [f32]>,
    ) -> f64 {
        let want_grad = grad.is_some();
        let dim = self.cfg.n * self.cfg.d;
        let b = t.len();
        let norm = 2.0 / (b * dim) as f32;
        let make = || Part { grad: if want_grad { vec![0f32; self.n_params] } else { Vec::new() }, sq: 0.0 };
        let sum = ChunkPool::default().sum(b, self.chunk_configs(), make, grad, |r, part| {
            let rows = r.start * dim..r.end * dim;
            let mut out = vec![0f32; r.len() * dim];
            let tapes = self.forward(params, &x[rows.clone()], &t[r.clone()], &mut out);
            let mut sq = 0f64;
            // dL/ds for this chunk's configurations.
            for ((o, tg), w) in
                out.chunks_exact_mut(dim).zip(target[rows.clone()].chunks_exact(dim)).zip(&weight[r.clone()])
            {
                let mut s = 0f64;
                for (ov, tv) in o.iter_mut().zip(tg) {
                    let e = *ov - tv;
                    s += (e as f64) * (e as f64);
                    *ov = e * norm * w;
                }
                sq += *w as f64 * s;
            }
            part.sq = sq;
            if want_grad {
                part.grad.fill(0.0);
                self.backward(params, &x[rows], &t[r], &tapes, &out, &mut part.grad);
            }
        });
        sum / (b * dim) as f64
    }

    /// The scores alone (`B × n·d` into `out`), each configuration at its own
    /// time: the forward pass the gradient is taken of.
    pub fn predict(&self, params: &[f32], x: &[f32], t: &[f32], out: &mut [f32]) {
        let dim = self.cfg.n * self.cfg.d;
        let cc = self.chunk_configs();
        x.par_chunks(cc * dim).zip(t.par_chunks(cc)).zip(out.par_chunks_mut(cc * dim)).for_each(|((x, t), o)| {
            self.forward(params, x, t, o);
        });
    }

    /// (configuration, i, j) of edge row `e`: ordered pairs `i ≠ j`, `i`-major,
    /// so node `r = c·n + i` owns edges `r(n − 1) … (r + 1)(n − 1) − 1`.
    fn edge(&self, e: usize) -> (usize, usize, usize) {
        let n = self.cfg.n;
        let pairs = n * (n - 1);
        let (c, k) = (e / pairs, e % pairs);
        let i = k / (n - 1);
        let j0 = k % (n - 1);
        (c, i, if j0 >= i { j0 + 1 } else { j0 })
    }

    /// The input distances `a_ij = ‖x_i − x_j‖²` per edge.
    fn edge_attr(&self, x: &[f32], e_rows: usize) -> Vec<f32> {
        let (n, d) = (self.cfg.n, self.cfg.d);
        (0..e_rows)
            .map(|e| {
                let (b, i, j) = self.edge(e);
                (0..d).map(|k| (x[(b * n + i) * d + k] - x[(b * n + j) * d + k]).powi(2)).sum()
            })
            .collect()
    }

    /// One chunk's forward pass: scores into `out`, the layers' tapes returned.
    fn forward(&self, p: &[f32], x: &[f32], t: &[f32], out: &mut [f32]) -> Vec<Tape> {
        let EgnnConfig { n, d, hidden: hd, layers: depth } = self.cfg;
        let bc = t.len();
        let rows = bc * n;
        let e_rows = bc * n * (n - 1);
        let range = self.cfg.coords_range();
        let w = |s: &Slot| &p[s.w..s.w + s.input * s.output];
        let bias = |s: &Slot| &p[s.b..s.b + s.output];
        let attr = self.edge_attr(x, e_rows);
        let (w_emb, b_emb) = (w(&self.slots[0]), bias(&self.slots[0]));
        let mut h: Vec<f32> = (0..rows).flat_map(|r| (0..hd).map(move |k| t[r / n] * w_emb[k] + b_emb[k])).collect();
        let mut c = x.to_vec();
        let mut pq = vec![0f32; rows * 2 * hd];
        let mut tapes = Vec::with_capacity(depth);
        for l in 0..depth {
            let s = &self.slots[1 + l * PER_LAYER..1 + (l + 1) * PER_LAYER];
            let last = l + 1 == depth;
            let z = |len: usize| vec![0f32; len];
            let mut tp = Tape {
                h: h.clone(),
                c: c.clone(),
                radial: z(e_rows),
                unit: z(e_rows * d),
                u0: z(e_rows * hd),
                s0: z(e_rows * hd),
                a0: z(e_rows * hd),
                u1: z(e_rows * hd),
                s1: z(e_rows * hd),
                a1: z(e_rows * hd),
                att: z(e_rows),
                g: z(e_rows * hd),
                u5: z(e_rows * hd),
                s5: z(e_rows * hd),
                a5: z(e_rows * hd),
                th: z(e_rows),
                ..Tape::default()
            };
            // P = h·W_i, Q = h·W_j side by side: [rows, 2H].
            let w0 = w(&s[0]);
            mm(rows, hd, hd, &mut pq, (1, 2 * hd), &h, (1, hd), &w0[..hd * hd], (1, hd));
            mm(rows, hd, hd, &mut pq[hd..], (1, 2 * hd), &h, (1, hd), &w0[hd * hd..2 * hd * hd], (1, hd));
            let (wr, wa) = (&w0[2 * hd * hd..(2 * hd + 1) * hd], &w0[(2 * hd + 1) * hd..(2 * hd + 2) * hd]);
            for (e, a_e) in attr.iter().enumerate() {
                let (b, i, j) = self.edge(e);
                let mut r = 0f32;
                for k in 0..d {
                    let v = c[(b * n + i) * d + k] - c[(b * n + j) * d + k];
                    tp.unit[e * d + k] = v;
                    r += v * v;
                }
                tp.radial[e] = r;
                let inv = 1.0 / ((r + 1e-8).sqrt() + 1.0);
                tp.unit[e * d..(e + 1) * d].iter_mut().for_each(|u| *u *= inv);
                let (pi, qj) = (&pq[(b * n + i) * 2 * hd..][..hd], &pq[(b * n + j) * 2 * hd + hd..][..hd]);
                let row = &mut tp.u0[e * hd..(e + 1) * hd];
                for k in 0..hd {
                    row[k] = pi[k] + qj[k] + wr[k] * r + wa[k] * a_e;
                }
            }
            act_forward(&mut tp.u0, &mut tp.s0, &mut tp.a0, bias(&s[0]));
            mm(e_rows, hd, hd, &mut tp.u1, (1, hd), &tp.a0, (1, hd), w(&s[1]), (1, hd));
            act_forward(&mut tp.u1, &mut tp.s1, &mut tp.a1, bias(&s[1]));
            let (w2, b2) = (w(&s[2]), bias(&s[2])[0]);
            for e in 0..e_rows {
                let m = &tp.a1[e * hd..(e + 1) * hd];
                let logit: f32 = m.iter().zip(w2).map(|(a, b)| a * b).sum::<f32>() + b2;
                let att = 1.0 / (1.0 + (-logit).exp());
                tp.att[e] = att;
                tp.g[e * hd..(e + 1) * hd].iter_mut().zip(m).for_each(|(g, m)| *g = m * att);
            }
            mm(e_rows, hd, hd, &mut tp.u5, (1, hd), &tp.g, (1, hd), w(&s[5]), (1, hd));
            act_forward(&mut tp.u5, &mut tp.s5, &mut tp.a5, bias(&s[5]));
            let w6 = w(&s[6]);
            for e in 0..e_rows {
                let (b, i, _) = self.edge(e);
                let th = tp.a5[e * hd..(e + 1) * hd].iter().zip(w6).map(|(a, b)| a * b).sum::<f32>().tanh();
                tp.th[e] = th;
                for k in 0..d {
                    c[(b * n + i) * d + k] += tp.unit[e * d + k] * th * range;
                }
            }
            if !last {
                // Node update: [h, Σ_j m_ij] → W₃ → SiLU → W₄, residual.
                tp.node_in = z(rows * 2 * hd);
                for r in 0..rows {
                    tp.node_in[r * 2 * hd..r * 2 * hd + hd].copy_from_slice(&h[r * hd..(r + 1) * hd]);
                    let agg = &mut tp.node_in[r * 2 * hd + hd..(r + 1) * 2 * hd];
                    for e in r * (n - 1)..(r + 1) * (n - 1) {
                        agg.iter_mut().zip(&tp.g[e * hd..(e + 1) * hd]).for_each(|(a, m)| *a += m);
                    }
                }
                (tp.u3, tp.s3, tp.a3) = (z(rows * hd), z(rows * hd), z(rows * hd));
                mm(rows, hd, 2 * hd, &mut tp.u3, (1, hd), &tp.node_in, (1, 2 * hd), w(&s[3]), (1, hd));
                act_forward(&mut tp.u3, &mut tp.s3, &mut tp.a3, bias(&s[3]));
                let mut n2 = z(rows * hd);
                mm(rows, hd, hd, &mut n2, (1, hd), &tp.a3, (1, hd), w(&s[4]), (1, hd));
                let b4 = bias(&s[4]);
                for r in 0..rows {
                    for k in 0..hd {
                        h[r * hd + k] += n2[r * hd + k] + b4[k];
                    }
                }
            }
            tapes.push(tp);
        }
        let dim = n * d;
        for b in 0..bc {
            for k in 0..d {
                let mean: f32 = (0..n).map(|i| c[b * dim + i * d + k] - x[b * dim + i * d + k]).sum::<f32>() / n as f32;
                for i in 0..n {
                    out[b * dim + i * d + k] = c[b * dim + i * d + k] - x[b * dim + i * d + k] - mean;
                }
            }
        }
        tapes
    }

    /// One chunk's backward pass from `gout = ∂L/∂s` (`B × n·d`); the
    /// parameter gradient into `grad`.
    // Over 150 lines: the hand-written backward pass, layer by layer in reverse, beside its
    // forward (`forward`): split, it would thread a dozen buffers through every call.
    fn backward(&self, p: &[f32], x: &[f32], t: &[f32], tapes: &[Tape], gout: &[f32], grad: &mut [f32]) {
        let EgnnConfig { n, d, hidden: hd, layers: depth } = self.cfg;
        let bc = t.len();
        let rows = bc * n;
        let e_rows = bc * n * (n - 1);
        let dim = n * d;
        let range = self.cfg.coords_range();
        let w = |s: &Slot| &p[s.w..s.w + s.input * s.output];
        let attr = self.edge_attr(x, e_rows);
        // The score's centring: ∂L/∂c = ∂L/∂s minus its mean over particles.
        let mut gc = gout.to_vec();
        for b in 0..bc {
            for k in 0..d {
                let mean: f32 = (0..n).map(|i| gout[b * dim + i * d + k]).sum::<f32>() / n as f32;
                (0..n).for_each(|i| gc[b * dim + i * d + k] -= mean);
            }
        }
        let mut gh = vec![0f32; rows * hd];
        let z = |len: usize| vec![0f32; len];
        let (mut ga, mut gb, mut gpq) = (z(e_rows * hd), z(e_rows * hd), z(rows * 2 * hd));
        for l in (0..depth).rev() {
            let s = &self.slots[1 + l * PER_LAYER..1 + (l + 1) * PER_LAYER];
            let tp = &tapes[l];
            let slot = |k: usize| (s[k].w..s[k].w + s[k].input * s[k].output, s[k].b..s[k].b + s[k].output);
            // Node update (h_out = h + a3·W₄ + b₄): gradient of the aggregated
            // messages, and gh gains the node MLP's input-gradient.
            let mut g_agg = None;
            if l + 1 < depth {
                let (w4r, b4r) = slot(4);
                mm(hd, hd, rows, &mut grad[w4r], (1, hd), &tp.a3, (hd, 1), &gh, (1, hd));
                bias_grad(&mut grad[b4r], &gh);
                let mut g3 = z(rows * hd);
                mm(rows, hd, hd, &mut g3, (1, hd), &gh, (1, hd), w(&s[4]), (hd, 1));
                act_backward(&mut g3, &tp.u3, &tp.s3);
                let (w3r, b3r) = slot(3);
                mm(2 * hd, hd, rows, &mut grad[w3r], (1, hd), &tp.node_in, (2 * hd, 1), &g3, (1, hd));
                bias_grad(&mut grad[b3r], &g3);
                let mut gni = z(rows * 2 * hd);
                mm(rows, 2 * hd, hd, &mut gni, (1, 2 * hd), &g3, (1, hd), w(&s[3]), (hd, 1));
                for r in 0..rows {
                    gh[r * hd..(r + 1) * hd]
                        .iter_mut()
                        .zip(&gni[r * 2 * hd..r * 2 * hd + hd])
                        .for_each(|(a, v)| *a += v);
                }
                g_agg = Some(gni);
            }
            // Coordinate update: c_out = c + Σ_j u_ij·tanh(z6_ij)·range.
            let mut gc_in = gc.clone();
            let mut g_unit = z(e_rows * d);
            let w6 = w(&s[6]);
            let (w6r, _) = slot(6);
            {
                let ga5 = &mut ga;
                for e in 0..e_rows {
                    let (b, i, _) = self.edge(e);
                    let r = b * n + i;
                    let th = tp.th[e];
                    let mut g_step = 0f32;
                    for k in 0..d {
                        g_step += gc[r * d + k] * tp.unit[e * d + k];
                        g_unit[e * d + k] = gc[r * d + k] * th * range;
                    }
                    let g_z6 = g_step * range * (1.0 - th * th);
                    let a5 = &tp.a5[e * hd..(e + 1) * hd];
                    grad[w6r.clone()].iter_mut().zip(a5).for_each(|(gw, a)| *gw += g_z6 * a);
                    ga5[e * hd..(e + 1) * hd].iter_mut().zip(w6).for_each(|(g, wv)| *g = g_z6 * wv);
                }
            }
            act_backward(&mut ga, &tp.u5, &tp.s5);
            let (w5r, b5r) = slot(5);
            mm(hd, hd, e_rows, &mut grad[w5r], (1, hd), &tp.g, (hd, 1), &ga, (1, hd));
            bias_grad(&mut grad[b5r], &ga);
            // gb: ∂L/∂(gated message), from the coordinate MLP and the aggregation.
            mm(e_rows, hd, hd, &mut gb, (1, hd), &ga, (1, hd), w(&s[5]), (hd, 1));
            if let Some(gni) = &g_agg {
                for e in 0..e_rows {
                    let r = e / (n - 1);
                    gb[e * hd..(e + 1) * hd]
                        .iter_mut()
                        .zip(&gni[r * 2 * hd + hd..(r + 1) * 2 * hd])
                        .for_each(|(a, v)| *a += v);
                }
            }
            // Attention: g = m·σ(m·w_a + b_a).
            let w2 = w(&s[2]);
            let (w2r, b2r) = slot(2);
            let mut gb2 = 0f32;
            for e in 0..e_rows {
                let att = tp.att[e];
                let m = &tp.a1[e * hd..(e + 1) * hd];
                let row = &mut gb[e * hd..(e + 1) * hd];
                let g_att: f32 = row.iter().zip(m).map(|(g, m)| g * m).sum();
                let g_logit = g_att * att * (1.0 - att);
                grad[w2r.clone()].iter_mut().zip(m).for_each(|(gw, m)| *gw += g_logit * m);
                gb2 += g_logit;
                row.iter_mut().zip(w2).for_each(|(g, wv)| *g = *g * att + g_logit * wv);
            }
            grad[b2r.start] = gb2;
            // Edge layer 2.
            act_backward(&mut gb, &tp.u1, &tp.s1);
            let (w1r, b1r) = slot(1);
            mm(hd, hd, e_rows, &mut grad[w1r], (1, hd), &tp.a0, (hd, 1), &gb, (1, hd));
            bias_grad(&mut grad[b1r], &gb);
            mm(e_rows, hd, hd, &mut ga, (1, hd), &gb, (1, hd), w(&s[1]), (hd, 1));
            // Edge layer 1, by parts.
            act_backward(&mut ga, &tp.u0, &tp.s0);
            let (w0r, b0r) = slot(0);
            bias_grad(&mut grad[b0r], &ga);
            let w0 = w(&s[0]);
            let wr = &w0[2 * hd * hd..(2 * hd + 1) * hd];
            let (mut gwr, mut gwa) = (z(hd), z(hd));
            gpq.iter_mut().for_each(|v| *v = 0.0);
            for e in 0..e_rows {
                let (b, i, j) = self.edge(e);
                let (r, a) = (tp.radial[e], attr[e]);
                let gp = &ga[e * hd..(e + 1) * hd];
                let mut g_r = 0f32;
                for k in 0..hd {
                    gwr[k] += gp[k] * r;
                    gwa[k] += gp[k] * a;
                    g_r += gp[k] * wr[k];
                }
                gpq[(b * n + i) * 2 * hd..][..hd].iter_mut().zip(gp).for_each(|(q, g)| *q += g);
                gpq[(b * n + j) * 2 * hd + hd..][..hd].iter_mut().zip(gp).for_each(|(q, g)| *q += g);
                // r = ‖v‖², u = v/(√(r + 10⁻⁸) + 1), v = c_i − c_j.
                let sq = (r + 1e-8).sqrt();
                let den = sq + 1.0;
                let mut v = [0f32; 3];
                let mut gu_v = 0f32;
                for k in 0..d {
                    v[k] = tp.c[(b * n + i) * d + k] - tp.c[(b * n + j) * d + k];
                    gu_v += g_unit[e * d + k] * v[k];
                }
                for k in 0..d {
                    let gv = 2.0 * v[k] * g_r + g_unit[e * d + k] / den - gu_v * v[k] / (sq * den * den);
                    gc_in[(b * n + i) * d + k] += gv;
                    gc_in[(b * n + j) * d + k] -= gv;
                }
            }
            let gw0 = &mut grad[w0r];
            mm(hd, hd, rows, &mut gw0[..hd * hd], (1, hd), &tp.h, (hd, 1), &gpq, (1, 2 * hd));
            mm(hd, hd, rows, &mut gw0[hd * hd..2 * hd * hd], (1, hd), &tp.h, (hd, 1), &gpq[hd..], (1, 2 * hd));
            gw0[2 * hd * hd..(2 * hd + 1) * hd].copy_from_slice(&gwr);
            gw0[(2 * hd + 1) * hd..].copy_from_slice(&gwa);
            mm_acc(rows, hd, hd, &mut gh, (1, hd), &gpq, (1, 2 * hd), &w0[..hd * hd], (hd, 1));
            mm_acc(rows, hd, hd, &mut gh, (1, hd), &gpq[hd..], (1, 2 * hd), &w0[hd * hd..2 * hd * hd], (hd, 1));
            gc = gc_in;
        }
        // Time embedding: h₀ = t·w + b.
        let (s0, s0b) = (self.slots[0].w, self.slots[0].b);
        for r in 0..rows {
            let tv = t[r / n];
            for k in 0..hd {
                grad[s0 + k] += tv * gh[r * hd + k];
                grad[s0b + k] += gh[r * hd + k];
            }
        }
    }
}

/// Plain layers (`[in × out]` weight, bias) of a flat parameter vector.
pub fn unflatten(cfg: &EgnnConfig, params: &[f32]) -> crate::numerics::nn::Layers {
    crate::numerics::nn::unflatten_layers(&cfg.shapes(), params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::idem::egnn::Egnn;
    use crate::workloads::idem::mlp::flatten;
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::tensor::{Tensor, TensorData};
    use rand::{Rng, SeedableRng};

    /// Loss and every gradient against burn's autodiff of the module.
    fn check(cfg: EgnnConfig, batch: usize, seed: u64) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut layers = cfg.init(&mut rng);
        // Larger coordinate weights than the init's gain 0.001, so the
        // position gradients through u and r matter.
        for l in 0..cfg.layers {
            let (w, _, _, _) = &mut layers[1 + l * PER_LAYER + 6];
            w.iter_mut().for_each(|v| *v = rng.random_range(-0.3..0.3));
        }
        let dim = cfg.n * cfg.d;
        let x: Vec<f32> = (0..batch * dim).map(|_| rng.random_range(-1.5f32..1.5)).collect();
        let t: Vec<f32> = (0..batch).map(|_| rng.random_range(0f32..1.0)).collect();
        let target: Vec<f32> = (0..batch * dim).map(|_| rng.random_range(-3f32..3.0)).collect();
        let weight: Vec<f32> = (0..batch).map(|_| rng.random_range(0.5f32..2.0)).collect();
        let bp = EgnnBackprop::new(&cfg);
        let params = flatten(&layers);
        assert_eq!(params.len(), bp.n_params());
        let mut grad = vec![0f32; bp.n_params()];
        let loss = bp.loss_and_grad(&params, &x, &t, &target, &weight, &mut grad);
        assert_eq!(bp.loss(&params, &x, &t, &target, &weight).to_bits(), loss.to_bits(), "the loss alone");

        let device = crate::workloads::train_device(crate::engine::stage::Backend::Flex);
        let net = Egnn::from_layers(&layers, &cfg, &device);
        let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [batch, dim]), &device);
        let tt = Tensor::<1>::from_data(TensorData::new(t.clone(), [batch]), &device);
        let tg = Tensor::<2>::from_data(TensorData::new(target.clone(), [batch, dim]), &device);
        let wt = Tensor::<2>::from_data(TensorData::new(weight.clone(), [batch, 1]), &device);
        let pred = net.forward(xt, tt);
        let loss_t = ((pred.clone() - tg).powi_scalar(2).mean_dim(1) * wt).mean();
        let burn_loss = loss_t.clone().into_data().try_to_vec::<f32>().unwrap()[0] as f64;
        assert!((loss - burn_loss).abs() < 1e-4 * burn_loss, "loss {loss} vs burn {burn_loss}");
        let mut out = vec![0f32; batch * dim];
        bp.predict(&params, &x, &t, &mut out);
        let want = pred.into_data().try_to_vec::<f32>().unwrap();
        for (a, b) in out.iter().zip(&want) {
            assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "score {a} vs {b}");
        }

        let grads = burn::optim::GradientsParams::from_grads(loss_t.backward(), &net);
        struct Collect<'a> {
            grads: &'a burn::optim::GradientsParams,
            out: Vec<Option<Vec<f32>>>,
        }
        impl ModuleVisitor for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.out.push(self.grads.get::<D>(param.id).map(|g| g.into_data().try_to_vec::<f32>().unwrap()));
            }
        }
        let mut col = Collect { grads: &grads, out: Vec::new() };
        net.visit(&mut col);
        // The module visits each Linear's weight then bias, in layer order;
        // coord₂ has no bias, and the last layer's node MLP no gradient.
        let mut want = Vec::new();
        let mut it = col.out.into_iter();
        for (li, (input, output)) in cfg.shapes().into_iter().enumerate() {
            let is_coord2 = li > 0 && (li - 1) % PER_LAYER == 6;
            let wgrad = it.next().unwrap().unwrap_or_else(|| vec![0.0; input * output]);
            want.extend(wgrad);
            if is_coord2 {
                want.extend(vec![0.0; output]);
            } else {
                want.extend(it.next().unwrap().unwrap_or_else(|| vec![0.0; output]));
            }
        }
        assert_eq!(want.len(), grad.len());
        let scale = want.iter().map(|v| v.abs()).fold(0f32, f32::max);
        let mut worst = 0f32;
        for (a, b) in grad.iter().zip(&want) {
            worst = worst.max((a - b).abs());
        }
        assert!(worst < 2e-4 * scale, "worst gradient error {worst} against max |g| {scale}");
        // a gradient that matters is non-zero in every layer the score reads
        let nonzero = want.iter().filter(|v| v.abs() > 0.0).count();
        assert!(nonzero > want.len() / 2);
    }

    #[test]
    fn gradients_match_burn_autodiff_dw4() {
        check(EgnnConfig { n: 4, d: 2, hidden: 16, layers: 3 }, 37, 1);
    }

    #[test]
    fn gradients_match_burn_autodiff_lj13() {
        check(EgnnConfig { n: 13, d: 3, hidden: 8, layers: 2 }, 9, 2);
    }

    #[test]
    fn the_result_does_not_depend_on_the_thread_count() {
        let cfg = EgnnConfig { n: 4, d: 2, hidden: 8, layers: 2 };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let params = flatten(&cfg.init(&mut rng));
        let b = 70;
        let x: Vec<f32> = (0..b * 8).map(|_| rng.random_range(-1f32..1.0)).collect();
        let t: Vec<f32> = (0..b).map(|_| rng.random_range(0f32..1.0)).collect();
        let tg: Vec<f32> = (0..b * 8).map(|_| rng.random_range(-1f32..1.0)).collect();
        let w = vec![1f32; b];
        let bp = EgnnBackprop::new(&cfg);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut g = vec![0f32; bp.n_params()];
            let loss = pool.install(|| bp.loss_and_grad(&params, &x, &t, &tg, &w, &mut g));
            (loss.to_bits(), g.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
        };
        assert_eq!(run(1), run(3));
    }
}
