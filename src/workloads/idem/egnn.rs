//! DEM's E(n)-equivariant score network for the particle systems
//! (`dem/models/components/egnn.py`, `EGNN_dynamics` with
//! `configs/model/net/egnn.yaml`; Satorras et al. 2021), as a burn module.
//!
//! For `n` particles at `x ∈ ℝ^{n×d}` and time `t`:
//!
//! * node features `h_i = Linear(1, H)(t)` (`condition_time`: every node's
//!   input is `t`); edge attribute `a_ij = ‖x_i − x_j‖²` of the **input**
//!   positions, fixed across layers; every ordered pair `i ≠ j` is an edge;
//! * each of `L` layers (`E_GCL`, recurrent, attention, tanh, sum
//!   aggregation), with the current positions `c`:
//!   `r_ij = ‖c_i − c_j‖²`, `u_ij = (c_i − c_j)/(√(r_ij + 10⁻⁸) + 1)`;
//!   `m_ij = SiLU(W₂ SiLU(W₁ [h_i, h_j, r_ij, a_ij]))`, times the attention
//!   `σ(W_a m_ij)`;
//!   `c_i ← c_i + Σ_j u_ij · tanh(W_c2 SiLU(W_c1 m_ij)) · 15/L` (`W_c2` has no
//!   bias and starts at Xavier-uniform with gain 0.001);
//!   `h_i ← h_i + W_n2 SiLU(W_n1 [h_i, Σ_j m_ij])`;
//! * the score is `c − x` with its centre of mass removed.
//!
//! The result is equivariant under rotations, reflections and permutations,
//! invariant under translations, and mean-free (tests below). DEM's widths:
//! DW-4 `H = 128, L = 3`; LJ-13 and LJ-55 `H = 128, L = 5`. (`embedding_out`,
//! which DEM computes and discards, is left out.)
//!
//! Initialisation is PyTorch's `nn.Linear` default (`U(±1/√fan_in)`), drawn
//! from the stage's stream. Training goes through burn's autodiff.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::{sigmoid, silu};
use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;

use crate::numerics::nn::{
    Layers, ModelError, frame_blob, init_layers, io_device, layers_of, linears, load_record, record_bytes,
    skeleton_layers, unframe_blob,
};

/// Linear layers per equivariant layer, in storage order:
/// edge₁, edge₂, attention, node₁, node₂, coord₁, coord₂.
pub(crate) const PER_LAYER: usize = 7;
const COORD2: usize = 6;

/// The network's sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EgnnConfig {
    /// Particles.
    pub n: usize,
    /// Spatial dimension.
    pub d: usize,
    pub hidden: usize,
    pub layers: usize,
}

impl EgnnConfig {
    /// DEM's `dw4_idem.yaml`: 4 particles in 2-D, 128 wide, 3 layers.
    pub const DW4: EgnnConfig = EgnnConfig { n: 4, d: 2, hidden: 128, layers: 3 };
    /// DEM's `lj13_idem.yaml` / `lj55_idem.yaml`: 128 wide, 5 layers.
    pub fn lj(n: usize) -> EgnnConfig {
        EgnnConfig { n, d: 3, hidden: 128, layers: 5 }
    }

    /// (in, out) of every linear layer, in storage order.
    pub fn shapes(&self) -> Vec<(usize, usize)> {
        let h = self.hidden;
        let mut v = vec![(1, h)];
        for _ in 0..self.layers {
            v.extend([(2 * h + 2, h), (h, h), (h, 1), (2 * h, h), (h, h), (h, h), (h, 1)]);
        }
        v
    }

    /// The coordinate step's range, `15 / L` (DEM's `coords_range`).
    pub fn coords_range(&self) -> f32 {
        15.0 / self.layers as f32
    }

    /// PyTorch-default weights; each coord₂ is Xavier-uniform with gain
    /// 0.001 and no bias (its bias slot is kept at zero and never used).
    pub fn init(&self, rng: &mut impl Rng) -> Layers {
        let mut layers = init_layers(&self.shapes(), false, rng);
        for l in 0..self.layers {
            let (w, b, input, output) = &mut layers[1 + l * PER_LAYER + COORD2];
            let bound = 0.001 * (6.0 / (*input + *output) as f64).sqrt();
            w.iter_mut().for_each(|v| *v = rng.random_range(-bound..bound) as f32);
            b.iter_mut().for_each(|v| *v = 0.0);
        }
        layers
    }

    pub fn parameters(&self) -> usize {
        self.shapes().iter().map(|(i, o)| i * o + o).sum::<usize>() - self.layers
    }
}

/// The burn module: every linear layer in storage order.
#[derive(Module, Debug)]
pub struct Egnn {
    pub layers: Vec<Linear>,
    pub n: usize,
    pub d: usize,
    pub hidden: usize,
    pub depth: usize,
}

impl Egnn {
    pub fn from_layers(layers: &Layers, config: &EgnnConfig, device: &Device) -> Egnn {
        let mut lin = linears(layers, device, 0);
        for l in 0..config.layers {
            lin[1 + l * PER_LAYER + COORD2].bias = None;
        }
        Egnn { layers: lin, n: config.n, d: config.d, hidden: config.hidden, depth: config.layers }
    }

    pub fn config(&self) -> EgnnConfig {
        EgnnConfig { n: self.n, d: self.d, hidden: self.hidden, layers: self.depth }
    }

    /// The predicted score for `x: [B, n·d]` (particle-major), `t: [B]`.
    ///
    /// The first edge layer is applied by parts: `W₁[h_i, h_j, r, a] + b =
    /// (W_i h_i) + (W_j h_j) + w_r r + w_a a + b`, with the two node
    /// projections computed once per node (`B·n` rows) and broadcast over the
    /// pairs, instead of a `(2H + 2)`-wide product on each of the `B·n²`
    /// edges — the same function, about half the work.
    pub fn forward(&self, x: Tensor<2>, t: Tensor<1>) -> Tensor<2> {
        self.forward_with(x, t, false)
    }

    fn forward_with(&self, x: Tensor<2>, t: Tensor<1>, concat_edges: bool) -> Tensor<2> {
        let [b, _] = x.dims();
        let (n, d, hd) = (self.n, self.d, self.hidden);
        let device = x.device();
        let x0 = x.reshape([b, n, d]);
        // Pairwise differences x_i − x_j: [B, n, n, d].
        let diff = |c: &Tensor<3>| c.clone().reshape([b, n, 1, d]) - c.clone().reshape([b, 1, n, d]);
        let edge_attr = diff(&x0).powi_scalar(2).sum_dim(3);
        // Zero on the diagonal: no self-edges.
        let off_diag: Vec<f32> = (0..n * n).map(|k| if k / n == k % n { 0.0 } else { 1.0 }).collect();
        let mask = Tensor::<4>::from_data(TensorData::new(off_diag, [1, n, n, 1]), &device);
        let mut h = self.layers[0].forward(t.reshape([b, 1]).expand([b, n]).reshape([b * n, 1])).reshape([b, n, hd]);
        let mut c = x0.clone();
        let range = self.config().coords_range();
        for l in 0..self.depth {
            let w = &self.layers[1 + l * PER_LAYER..1 + (l + 1) * PER_LAYER];
            let dc = diff(&c);
            let radial = dc.clone().powi_scalar(2).sum_dim(3);
            let unit = dc / (radial.clone().add_scalar(1e-8).sqrt().add_scalar(1.0));
            // Linear layers on rows: [B·n·n, ·] and [B·n, ·] (one matrix
            // product each, not B·n small ones).
            let pre = if concat_edges {
                let hi = h.clone().reshape([b, n, 1, hd]).expand([b, n, n, hd]);
                let hj = h.clone().reshape([b, 1, n, hd]).expand([b, n, n, hd]);
                let e_in = Tensor::cat(vec![hi, hj, radial, edge_attr.clone()], 3);
                w[0].forward(e_in.reshape([b * n * n, 2 * hd + 2]))
            } else {
                let w0 = w[0].weight.val();
                let part = |rows: std::ops::Range<usize>| w0.clone().slice([rows, 0..hd]);
                let hf = h.clone().reshape([b * n, hd]);
                let pi = hf.clone().matmul(part(0..hd)).reshape([b, n, 1, hd]);
                let pj = hf.matmul(part(hd..2 * hd)).reshape([b, 1, n, hd]);
                let wr = part(2 * hd..2 * hd + 1).reshape([1, 1, 1, hd]);
                let wa = part(2 * hd + 1..2 * hd + 2).reshape([1, 1, 1, hd]);
                let bias = w[0].bias.as_ref().expect("edge₁ has a bias").val().reshape([1, 1, 1, hd]);
                (pi + pj + radial * wr + edge_attr.clone() * wa + bias).reshape([b * n * n, hd])
            };
            let m = silu(w[1].forward(silu(pre)));
            let m = m.clone() * sigmoid(w[2].forward(m));
            let step = w[6].forward(silu(w[5].forward(m.clone()))).tanh().mul_scalar(range);
            let m = m.reshape([b, n, n, hd]) * mask.clone();
            let step = step.reshape([b, n, n, 1]);
            c = c + (unit * step).sum_dim(2).reshape([b, n, d]);
            let agg = m.sum_dim(2).reshape([b * n, hd]);
            let node_in = Tensor::cat(vec![h.clone().reshape([b * n, hd]), agg], 1);
            h = h + w[4].forward(silu(w[3].forward(node_in))).reshape([b, n, hd]);
        }
        let vel = c - x0;
        let vel = vel.clone() - vel.mean_dim(1);
        vel.reshape([b, n * d])
    }
}

/// Configurations per chunk of [`EgnnRun::forward`] (fixed: the result does
/// not depend on the thread count).
pub const RUN_CHUNK: usize = 16;

/// DEM's EGNN forward by hand for the sampler: the same function as
/// [`Egnn::forward`], on plain weights, every matrix product on `gemm`, the
/// edge nonlinearities fused in loops over the `n(n − 1)` ordered pairs (no
/// diagonal, no broadcast copies), chunks of [`RUN_CHUNK`] configurations in
/// parallel. Tested against the burn module.
pub struct EgnnRun {
    cfg: EgnnConfig,
    layers: Layers,
}

impl EgnnRun {
    pub fn new(cfg: &EgnnConfig, layers: &Layers) -> EgnnRun {
        EgnnRun { cfg: *cfg, layers: layers.clone() }
    }

    pub fn config(&self) -> EgnnConfig {
        self.cfg
    }

    /// Scores for `x` (`B × n·d`) at the shared time `t`, into `out`.
    pub fn forward(&self, x: &[f32], t: f32, out: &mut [f32]) {
        use rayon::prelude::*;
        let dim = self.cfg.n * self.cfg.d;
        x.par_chunks(RUN_CHUNK * dim)
            .zip(out.par_chunks_mut(RUN_CHUNK * dim))
            .for_each(|(xc, oc)| self.chunk(xc, t, oc));
    }

    fn chunk(&self, x: &[f32], t: f32, out: &mut [f32]) {
        use crate::numerics::nn::fast::{mm, silu_bias};
        let EgnnConfig { n, d, hidden: hd, layers: depth } = self.cfg;
        let dim = n * d;
        let bc = x.len() / dim;
        let rows = bc * n;
        let pairs = n * (n - 1);
        let e_rows = bc * pairs;
        let range = self.cfg.coords_range();
        // (configuration, i, j) of every edge row, i ≠ j, i-major.
        let edge = |e: usize| {
            let (c, k) = (e / pairs, e % pairs);
            let i = k / (n - 1);
            let j0 = k % (n - 1);
            (c, i, if j0 >= i { j0 + 1 } else { j0 })
        };
        let (w_emb, b_emb, _, _) = &self.layers[0];
        let mut h: Vec<f32> = (0..rows).flat_map(|_| (0..hd).map(|k| t * w_emb[k] + b_emb[k])).collect();
        let mut c = x.to_vec();
        let attr: Vec<f32> = (0..e_rows)
            .map(|e| {
                let (b, i, j) = edge(e);
                (0..d).map(|k| (x[b * dim + i * d + k] - x[b * dim + j * d + k]).powi(2)).sum()
            })
            .collect();
        let (mut pq, mut m1, mut m2, mut c1) =
            (vec![0f32; rows * 2 * hd], vec![0f32; e_rows * hd], vec![0f32; e_rows * hd], vec![0f32; e_rows * hd]);
        let (mut node_in, mut n1, mut n2) = (vec![0f32; rows * 2 * hd], vec![0f32; rows * hd], vec![0f32; rows * hd]);
        let mut radial = vec![0f32; e_rows];
        let mut unit = vec![0f32; e_rows * d];
        for l in 0..depth {
            let w = &self.layers[1 + l * PER_LAYER..1 + (l + 1) * PER_LAYER];
            let (w0, b0, _, _) = &w[0];
            // P = h·W_i, Q = h·W_j side by side: [rows, 2H].
            mm(rows, hd, hd, &mut pq, (1, 2 * hd), &h, (1, hd), &w0[..hd * hd], (1, hd));
            mm(rows, hd, hd, &mut pq[hd..], (1, 2 * hd), &h, (1, hd), &w0[hd * hd..2 * hd * hd], (1, hd));
            let (wr, wa) = (&w0[2 * hd * hd..(2 * hd + 1) * hd], &w0[(2 * hd + 1) * hd..(2 * hd + 2) * hd]);
            for e in 0..e_rows {
                let (b, i, j) = edge(e);
                let mut r = 0f32;
                for k in 0..d {
                    let v = c[b * dim + i * d + k] - c[b * dim + j * d + k];
                    unit[e * d + k] = v;
                    r += v * v;
                }
                radial[e] = r;
                let inv = 1.0 / ((r + 1e-8).sqrt() + 1.0);
                unit[e * d..(e + 1) * d].iter_mut().for_each(|u| *u *= inv);
                let (pi, qj) = (&pq[(b * n + i) * 2 * hd..][..hd], &pq[(b * n + j) * 2 * hd + hd..][..hd]);
                let row = &mut m1[e * hd..(e + 1) * hd];
                for k in 0..hd {
                    row[k] = pi[k] + qj[k] + wr[k] * r + wa[k] * attr[e] + b0[k];
                }
            }
            silu_bias(&mut m1, &[]);
            let (w1, b1, _, _) = &w[1];
            mm(e_rows, hd, hd, &mut m2, (1, hd), &m1, (1, hd), w1, (1, hd));
            silu_bias(&mut m2, b1);
            let (w2, b2, _, _) = &w[2];
            for e in 0..e_rows {
                let row = &mut m2[e * hd..(e + 1) * hd];
                let logit: f32 = row.iter().zip(w2).map(|(a, b)| a * b).sum::<f32>() + b2[0];
                let att = 1.0 / (1.0 + (-logit).exp());
                row.iter_mut().for_each(|v| *v *= att);
            }
            let (w5, b5, _, _) = &w[5];
            mm(e_rows, hd, hd, &mut c1, (1, hd), &m2, (1, hd), w5, (1, hd));
            silu_bias(&mut c1, b5);
            let (w6, _, _, _) = &w[6];
            let mut dc = vec![0f32; rows * d];
            for e in 0..e_rows {
                let (b, i, _) = edge(e);
                let row = &c1[e * hd..(e + 1) * hd];
                let step = row.iter().zip(w6).map(|(a, b)| a * b).sum::<f32>().tanh() * range;
                for k in 0..d {
                    dc[(b * n + i) * d + k] += unit[e * d + k] * step;
                }
            }
            c.iter_mut().zip(&dc).for_each(|(v, dv)| *v += dv);
            if l + 1 == depth {
                break; // the last node update feeds nothing
            }
            // Node update: [h, Σ_j m_ij] → W₃ → SiLU → W₄, residual.
            for r in 0..rows {
                node_in[r * 2 * hd..r * 2 * hd + hd].copy_from_slice(&h[r * hd..(r + 1) * hd]);
                let agg = &mut node_in[r * 2 * hd + hd..(r + 1) * 2 * hd];
                agg.iter_mut().for_each(|v| *v = 0.0);
                for j0 in 0..n - 1 {
                    let e = r * (n - 1) + j0;
                    agg.iter_mut().zip(&m2[e * hd..(e + 1) * hd]).for_each(|(a, m)| *a += m);
                }
            }
            let (w3, b3, _, _) = &w[3];
            mm(rows, hd, 2 * hd, &mut n1, (1, hd), &node_in, (1, 2 * hd), w3, (1, hd));
            silu_bias(&mut n1, b3);
            let (w4, b4, _, _) = &w[4];
            mm(rows, hd, hd, &mut n2, (1, hd), &n1, (1, hd), w4, (1, hd));
            for r in 0..rows {
                for k in 0..hd {
                    h[r * hd + k] += n2[r * hd + k] + b4[k];
                }
            }
        }
        for b in 0..bc {
            for k in 0..d {
                let mean: f32 = (0..n).map(|i| c[b * dim + i * d + k] - x[b * dim + i * d + k]).sum::<f32>() / n as f32;
                for i in 0..n {
                    out[b * dim + i * d + k] = c[b * dim + i * d + k] - x[b * dim + i * d + k] - mean;
                }
            }
        }
    }
}

/// A trained EGNN and what its samples need (the schedule it was trained
/// with, the energy).
///
/// **Serialisation**: the magic `SFEGN001`, a little-endian u32 length, the
/// JSON of everything but the weights, then [`Egnn`] in burn's record format.
#[derive(Debug, Clone, PartialEq)]
pub struct EgnnModel {
    pub config: EgnnConfig,
    pub sigma_min: f64,
    pub sigma_max: f64,
    pub energy: String,
    pub layers: Layers,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    config: EgnnConfig,
    sigma_min: f64,
    sigma_max: f64,
    energy: String,
}

pub const MAGIC: &[u8; 8] = b"SFEGN001";

impl EgnnModel {
    pub fn to_bytes(&self) -> Vec<u8> {
        let record = record_bytes(Egnn::from_layers(&self.layers, &self.config, &io_device()));
        let header = Header {
            config: self.config,
            sigma_min: self.sigma_min,
            sigma_max: self.sigma_max,
            energy: self.energy.clone(),
        };
        frame_blob(MAGIC, &header, &[&record])
    }
    pub fn from_bytes(bytes: &[u8]) -> Result<EgnnModel, ModelError> {
        let (h, body): (Header, _) = unframe_blob(bytes, MAGIC, "not an iDEM EGNN model")?;
        let skeleton = Egnn::from_layers(&skeleton_layers(&h.config.shapes()), &h.config, &io_device());
        let net = load_record(skeleton, body)?;
        Ok(EgnnModel {
            config: h.config,
            sigma_min: h.sigma_min,
            sigma_max: h.sigma_max,
            energy: h.energy,
            layers: plain_layers(&net),
        })
    }
}

/// The module's weights as plain layers (coord₂'s absent bias as zeros).
pub fn plain_layers(net: &Egnn) -> Layers {
    net.layers
        .iter()
        .map(|l| {
            if l.bias.is_some() {
                layers_of(std::slice::from_ref(l)).remove(0)
            } else {
                let [input, output] = l.weight.val().dims();
                let w = l.weight.val().into_data().try_to_vec::<f32>().expect("f32 weights");
                (w, vec![0.0; output], input, output)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::StandardNormal;

    fn tensor2(v: Vec<f32>, shape: [usize; 2], dev: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v, shape), dev)
    }

    fn run(net: &Egnn, x: &[f32], t: &[f32]) -> Vec<f32> {
        let dev = io_device();
        let b = t.len();
        let out = net.forward(
            tensor2(x.to_vec(), [b, net.n * net.d], &dev),
            Tensor::from_data(TensorData::new(t.to_vec(), [b]), &dev),
        );
        out.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Rotating (or reflecting), translating and permuting the input rotates
    /// and permutes the score, translation leaves it alone, and it is
    /// mean-free — for DW-4 (2-D) and LJ-13 (3-D) sizes.
    #[test]
    fn the_score_is_equivariant_and_mean_free() {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        for cfg in
            [EgnnConfig { hidden: 16, ..EgnnConfig::DW4 }, EgnnConfig { hidden: 16, layers: 3, ..EgnnConfig::lj(13) }]
        {
            let (n, d) = (cfg.n, cfg.d);
            let net = Egnn::from_layers(&cfg.init(&mut r), &cfg, &io_device());
            let b = 3;
            let x: Vec<f32> = (0..b * n * d).map(|_| r.sample::<f32, _>(StandardNormal) * 1.5).collect();
            let t = [0.1f32, 0.5, 0.9];
            let q = crate::numerics::energy::particles::tests::random_orthogonal(d, &mut r);
            let shift: Vec<f64> = (0..d).map(|_| r.random_range(-3.0..3.0)).collect();
            let mut perm: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                perm.swap(i, r.random_range(0..=i));
            }
            let transform = |v: &[f32], translate: bool| -> Vec<f32> {
                let mut y = vec![0f32; v.len()];
                for s in 0..b {
                    for (dst, &src) in perm.iter().enumerate() {
                        for a in 0..d {
                            let mut acc: f64 = (0..d).map(|c| q[a * d + c] * v[s * n * d + src * d + c] as f64).sum();
                            if translate {
                                acc += shift[a];
                            }
                            y[s * n * d + dst * d + a] = acc as f32;
                        }
                    }
                }
                y
            };
            let out = run(&net, &x, &t);
            let out_t = run(&net, &transform(&x, true), &t);
            let want = transform(&out, false);
            let scale = out.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
            for (a, w) in out_t.iter().zip(&want) {
                assert!((a - w).abs() < 1e-4 * scale.max(1.0), "{a} vs {w}");
            }
            for s in 0..b {
                for a in 0..d {
                    let com: f32 = (0..n).map(|i| out[s * n * d + i * d + a]).sum();
                    assert!(com.abs() < 1e-5 * scale.max(1.0) * n as f32, "{com}");
                }
            }
            assert!(scale > 1e-7, "a non-trivial score");
        }
    }

    /// Autodiff reaches every layer (coord₂'s tiny initial weights included)
    /// except the last layer's node update, whose features the score never
    /// reads — in DEM too, where those parameters get no gradient.
    #[test]
    fn gradients_reach_every_layer_the_score_reads() {
        let cfg = EgnnConfig { hidden: 8, ..EgnnConfig::DW4 };
        let dev = crate::workloads::train_device(crate::engine::stage::Backend::Flex);
        let net = Egnn::from_layers(&cfg.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1)), &cfg, &dev);
        let b = 5;
        let x = tensor2((0..b * 8).map(|i| ((i * 37 % 11) as f32 - 5.0) / 2.0).collect(), [b, 8], &dev);
        let t = Tensor::<1>::from_data(TensorData::new((0..b).map(|i| i as f32 / b as f32).collect(), [b]), &dev);
        let loss = net.forward(x, t).powi_scalar(2).mean();
        let grads = loss.backward();
        let last_node = [1 + 2 * PER_LAYER + 3, 1 + 2 * PER_LAYER + 4];
        for (i, lin) in net.layers.iter().enumerate() {
            let g = lin.weight.val().grad(&grads).map(|g| g.into_data().try_to_vec::<f32>().unwrap());
            let reached = g.is_some_and(|g| g.iter().any(|v| *v != 0.0));
            assert_eq!(reached, !last_node.contains(&i), "layer {i}");
        }
    }

    /// The first edge layer by parts is the concatenated layer.
    #[test]
    fn the_split_edge_layer_is_the_concatenated_one() {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let cfg = EgnnConfig { hidden: 24, layers: 2, ..EgnnConfig::lj(13) };
        let net = Egnn::from_layers(&cfg.init(&mut r), &cfg, &io_device());
        let b = 4;
        let dev = io_device();
        let x: Vec<f32> = (0..b * 39).map(|_| r.sample::<f32, _>(StandardNormal)).collect();
        let t: Vec<f32> = vec![0.2, 0.4, 0.6, 0.8];
        let go = |concat: bool| {
            net.forward_with(
                tensor2(x.clone(), [b, 39], &dev),
                Tensor::from_data(TensorData::new(t.clone(), [b]), &dev),
                concat,
            )
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
        };
        let (a, c) = (go(false), go(true));
        let scale = c.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (u, v) in a.iter().zip(&c) {
            assert!((u - v).abs() <= 1e-5 * scale.max(1e-3), "{u} vs {v}");
        }
    }

    /// The hand-written sampler forward is the burn module's.
    #[test]
    fn the_fast_forward_is_the_modules() {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(12);
        for cfg in
            [EgnnConfig { hidden: 32, ..EgnnConfig::DW4 }, EgnnConfig { hidden: 24, layers: 3, ..EgnnConfig::lj(13) }]
        {
            let layers = cfg.init(&mut r);
            // Larger coordinate weights than the initial 0.001 gain, so the
            // positions move and later layers see them.
            let mut layers = layers;
            for l in 0..cfg.layers {
                layers[1 + l * PER_LAYER + COORD2].0.iter_mut().for_each(|v| *v *= 300.0);
            }
            let net = Egnn::from_layers(&layers, &cfg, &io_device());
            let dim = cfg.n * cfg.d;
            let b = 2 * RUN_CHUNK + 3;
            let x: Vec<f32> = (0..b * dim).map(|_| r.sample::<f32, _>(StandardNormal) * 1.5).collect();
            let want = run(&net, &x, &vec![0.37; b]);
            let mut got = vec![0f32; b * dim];
            EgnnRun::new(&cfg, &layers).forward(&x, 0.37, &mut got);
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(scale > 1e-3, "a non-trivial score: {scale}");
            for (a, w) in got.iter().zip(&want) {
                assert!((a - w).abs() <= 2e-4 * scale, "{a} vs {w}");
            }
        }
    }

    #[test]
    fn sizes_and_round_trip() {
        // DEM's DW-4 network.
        let cfg = EgnnConfig::DW4;
        assert_eq!(cfg.shapes().len(), 1 + 3 * PER_LAYER);
        let m = EgnnModel {
            config: cfg,
            sigma_min: 1e-5,
            sigma_max: 3.0,
            energy: "dw4".into(),
            layers: cfg.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(2)),
        };
        assert_eq!(EgnnModel::from_bytes(&m.to_bytes()).unwrap(), m);
        assert!(EgnnModel::from_bytes(b"SFDEM001xxxx").is_err());
    }
}
