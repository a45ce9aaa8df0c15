//! The score network of the triangles workload (seed 000), as a burn module.
//!
//! [`ScoreNet`] is the seed's `SimpleScoreNet(input_dimension=3, layer_count=2,
//! hidden_dim=256)`: `x` concatenated with a sinusoidal time embedding (32
//! geometric frequencies from 1 to 1000, sines then cosines: 64 values) →
//! Linear(67, 256) → SiLU → Linear(256, 256) → SiLU → Linear(256, 3). Width, depth
//! and the embedding are configurable ([`ScoreNetConfig`]).
//!
//! **Initialisation** is PyTorch's default for `nn.Linear` — weight and bias
//! `U(−1/√fan_in, 1/√fan_in)` (the same bound as burn's default Kaiming-uniform) —
//! drawn from the stage's seeded stream, so a model is a deterministic function of
//! its seed; the output layer starts at zero. Parameter ids are assigned in layer
//! order, so the serialised record is deterministic too.
//!
//! **Serialisation** ([`ScoreNetWeights::to_bytes`]): the magic `SFNET001`, a
//! little-endian u32 length, the JSON of the config and training metadata, then the
//! module in burn's record format (burnpack, [`burn::module::Module::into_record`]).
//!
//! **Device**: training runs on burn's autodiff over the CPU backend the run
//! chose (`--device`, `SCOREFLOW_DEVICE`: `flex`, the default, or `ndarray`,
//! deprecated by burn 0.22), which reaches a stage in its
//! [`crate::engine::stage::StageCtx`] — no global. The device is not part of any
//! cache key: both give the same results within float tolerance.
//! Inference in the sampler uses [`FastMlp`] over the trained weights.
//!
//! The S-MEME delta network ([`DeltaNet`]) is stored in the same blob, after
//! the base network, when a model is tuned.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::numerics::nn::fast::{FastNet, Scratch};
use crate::numerics::nn::{
    Layers, ModelError, frame_blob, init_layers, io_device, layers_of, linears, load_record, record_bytes, sinusoidal,
    sinusoidal_into, skeleton_layers, unframe_blob,
};
use crate::numerics::sde::sampler::ScoreModel;

/// Architecture of the score network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreNetConfig {
    pub dim: usize,
    pub hidden: usize,
    /// Number of hidden layers (the seed's `layer_count`): depth 2 means
    /// Linear(in, h) → SiLU → Linear(h, h) → SiLU → Linear(h, dim).
    pub depth: usize,
    pub n_freqs: usize,
    pub f_min: f64,
    pub f_max: f64,
}

impl ScoreNetConfig {
    pub fn seed_default() -> ScoreNetConfig {
        ScoreNetConfig { dim: 3, hidden: 256, depth: 2, n_freqs: 32, f_min: 1.0, f_max: 1000.0 }
    }
    /// Geometric frequencies `f_min·(f_max/f_min)^(k/(n−1))`.
    pub fn frequencies(&self) -> Vec<f32> {
        let n = self.n_freqs;
        (0..n)
            .map(|k| {
                let e = if n > 1 { k as f64 / (n - 1) as f64 } else { 0.0 };
                (self.f_min * (self.f_max / self.f_min).powf(e)) as f32
            })
            .collect()
    }
    /// (input, output) sizes of every layer.
    pub fn shapes(&self) -> Vec<(usize, usize)> {
        let mut v = vec![(self.dim + 2 * self.n_freqs, self.hidden)];
        for _ in 1..self.depth {
            v.push((self.hidden, self.hidden));
        }
        v.push((self.hidden, self.dim));
        v
    }
}

/// The burn module.
#[derive(Module, Debug)]
pub struct ScoreNet {
    pub layers: Vec<Linear>,
    pub dim: usize,
    pub n_freqs: usize,
    pub f_min: f64,
    pub f_max: f64,
}

impl ScoreNet {
    /// `s(x, t)` for `x: [B, dim]`, `t: [B]`.
    pub fn forward(&self, x: Tensor<2>, t: Tensor<1>) -> Tensor<2> {
        let device = x.device();
        let cfg = ScoreNetConfig {
            dim: self.dim,
            hidden: 0,
            depth: 0,
            n_freqs: self.n_freqs,
            f_min: self.f_min,
            f_max: self.f_max,
        };
        let freqs = Tensor::<2>::from_data(TensorData::new(cfg.frequencies(), [1, self.n_freqs]), &device);
        let emb = sinusoidal(t, freqs, false);
        let mut h = Tensor::cat(vec![x, emb], 1);
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(h);
            if i < last {
                h = silu(h);
            }
        }
        h
    }

    /// Build the module from plain weights on `device`.
    pub fn from_weights(w: &ScoreNetWeights, device: &Device) -> ScoreNet {
        ScoreNet {
            layers: linears(&w.layers, device, 0),
            dim: w.dim,
            n_freqs: w.freqs.len(),
            f_min: w.config.f_min,
            f_max: w.config.f_max,
        }
    }
}

/// The S-MEME delta network `Δ(x, t)`: `[x, t]` → Linear(dim + 1, h) → SiLU →
/// Linear(h, h) → SiLU → Linear(h, dim) (the seed's `build_teacher_student(…,
/// hidden_size=64)`). The tuned score is `s_pre(x, t) + Δ(x, t)`.
#[derive(Module, Debug)]
pub struct DeltaNet {
    pub layers: Vec<Linear>,
}

impl DeltaNet {
    pub fn forward(&self, x: Tensor<2>, t: Tensor<1>) -> Tensor<2> {
        let [b, _] = x.dims();
        let mut h = Tensor::cat(vec![x, t.reshape([b, 1])], 1);
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(h);
            if i < last {
                h = silu(h);
            }
        }
        h
    }
}

/// Training-side facts a sampler needs to use a model the way it was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// OU drift coefficient λ.
    pub lambda: f64,
    /// OU diffusion coefficient σ.
    pub sigma: f64,
    pub t_max: f64,
    /// Data scaling applied before training: x_scaled = scale·x + shift.
    pub scale: f64,
    pub shift: f64,
}

impl ModelMeta {
    /// A data value (a side length) in the model's coordinates.
    pub fn to_model(&self, v: f64) -> f32 {
        (self.scale * v + self.shift) as f32
    }

    /// A model coordinate back in data units.
    pub fn to_data(&self, v: f32) -> f64 {
        (v as f64 - self.shift) / self.scale
    }
}

/// The network's weights as plain vectors (row-major `[input × output]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreNetWeights {
    pub config: ScoreNetConfig,
    pub meta: ModelMeta,
    pub dim: usize,
    pub freqs: Vec<f32>,
    /// (weight, bias, input, output) per layer.
    pub layers: Layers,
    /// The S-MEME delta network's layers; empty for a plain model.
    pub delta: Layers,
}

pub const MAGIC: &[u8; 8] = b"SFNET001";

#[derive(Serialize, Deserialize)]
struct Header {
    config: ScoreNetConfig,
    meta: ModelMeta,
    /// Shapes of the delta network's layers (empty: none).
    #[serde(default)]
    delta: Vec<(usize, usize)>,
    /// Length of the base network's record; the delta's record follows it.
    base_len: u64,
}

impl ScoreNetWeights {
    /// PyTorch-default initialisation from `rng`, output layer zero.
    pub fn init(config: ScoreNetConfig, meta: ModelMeta, rng: &mut impl Rng) -> ScoreNetWeights {
        let layers = init_layers(&config.shapes(), true, rng);
        ScoreNetWeights { dim: config.dim, freqs: config.frequencies(), config, meta, layers, delta: Vec::new() }
    }

    /// Read the weights back out of a (trained) module.
    pub fn from_module(net: &ScoreNet, config: ScoreNetConfig, meta: ModelMeta) -> ScoreNetWeights {
        ScoreNetWeights {
            dim: config.dim,
            freqs: config.frequencies(),
            config,
            meta,
            layers: layers_of(&net.layers),
            delta: Vec::new(),
        }
    }

    /// Serialise: header + burn records (see the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let record = |layers: &Layers| {
            record_bytes(ScoreNet {
                layers: linears(layers, &io_device(), 0),
                dim: 0,
                n_freqs: 0,
                f_min: 0.0,
                f_max: 0.0,
            })
        };
        let base = record(&self.layers);
        let delta = if self.delta.is_empty() { Vec::new() } else { record(&self.delta) };
        let header = Header {
            config: self.config.clone(),
            meta: self.meta.clone(),
            delta: self.delta.iter().map(|l| (l.2, l.3)).collect(),
            base_len: base.len() as u64,
        };
        frame_blob(MAGIC, &header, &[&base, &delta])
    }

    /// Inverse of [`ScoreNetWeights::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<ScoreNetWeights, ModelError> {
        let (header, body): (Header, _) = unframe_blob(bytes, MAGIC, "not a score model")?;
        let base_len = header.base_len as usize;
        let base = body.get(..base_len).ok_or_else(|| ModelError::Format("truncated record".into()))?;
        let load = |record: &[u8], shapes: &[(usize, usize)]| -> Result<Layers, ModelError> {
            let skeleton = linears(&skeleton_layers(shapes), &io_device(), 0);
            let net = load_record(ScoreNet { layers: skeleton, dim: 0, n_freqs: 0, f_min: 0.0, f_max: 0.0 }, record)?;
            Ok(layers_of(&net.layers))
        };
        let layers = load(base, &header.config.shapes())?;
        let delta = if header.delta.is_empty() { Vec::new() } else { load(&body[base_len..], &header.delta)? };
        Ok(ScoreNetWeights {
            dim: header.config.dim,
            freqs: header.config.frequencies(),
            config: header.config,
            meta: header.meta,
            layers,
            delta,
        })
    }
}

/// The score model for the sampler's hot loop ([`crate::numerics::nn::fast`]):
/// burn evaluates this small network well below what the hardware can do, so
/// the trained weights are copied out once and the time embedding is folded
/// into a per-call bias. Agrees with [`ScoreNet::forward`] to about 1e-6.
///
/// The network, plus the S-MEME delta network when tuned —
/// ready for fast batched evaluation at a shared `t`.
#[derive(Debug, Clone)]
pub struct FastMlp {
    dim: usize,
    freqs: Vec<f32>,
    base: FastNet,
    delta: Option<FastNet>,
}

impl FastMlp {
    pub fn new(w: &ScoreNetWeights) -> FastMlp {
        FastMlp {
            dim: w.dim,
            freqs: w.freqs.clone(),
            base: FastNet::new(w.dim, &w.layers),
            delta: (!w.delta.is_empty()).then(|| FastNet::new(w.dim, &w.delta)),
        }
    }

    /// Evaluate into `out`; `x` and `out` are row-major with `dim` columns.
    pub fn forward(&self, x: &[f32], t: f32, out: &mut [f32], s: &mut Scratch) {
        sinusoidal_into(t, &self.freqs, false, &mut s.feat);
        self.base.forward(x, &s.feat, out, &mut s.a, &mut s.b, &mut s.bias);
        if let Some(delta) = &self.delta {
            let n = x.len();
            delta.forward(x, &[t], &mut s.delta_out[..n], &mut s.a, &mut s.b, &mut s.bias);
            for (o, d) in out.iter_mut().zip(&s.delta_out[..n]) {
                *o += d;
            }
        }
    }
}

impl ScoreModel for FastMlp {
    type Scratch = Scratch;
    fn dim(&self) -> usize {
        self.dim
    }
    fn scratch(&self, rows: usize) -> Scratch {
        let widest = self.base.widest().max(self.delta.as_ref().map_or(0, |d| d.widest()));
        let delta = if self.delta.is_some() { rows * self.dim } else { 0 };
        Scratch::new(rows, widest, 2 * self.freqs.len(), delta)
    }
    fn eval(&self, x: &[f32], t: f32, out: &mut [f32], scratch: &mut Scratch) {
        self.forward(x, t, out, scratch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn meta() -> ModelMeta {
        ModelMeta { lambda: 0.3, sigma: 0.5, t_max: 1.0, scale: 2.0, shift: -1.0 }
    }

    fn random_weights(seed: u64) -> ScoreNetWeights {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut w = ScoreNetWeights::init(ScoreNetConfig::seed_default(), meta(), &mut rng);
        // Give the output layer values too, so the forward pass is not trivially 0.
        let last = w.layers.len() - 1;
        let (wl, bl, _, _) = &mut w.layers[last];
        for v in wl.iter_mut().chain(bl.iter_mut()) {
            *v = rng.random_range(-0.1..0.1);
        }
        w
    }

    #[test]
    fn shapes_and_zero_initialised_output() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let w = ScoreNetWeights::init(ScoreNetConfig::seed_default(), meta(), &mut rng);
        let shapes: Vec<_> = w.layers.iter().map(|l| (l.2, l.3)).collect();
        assert_eq!(shapes, [(67, 256), (256, 256), (256, 3)]);
        let net = ScoreNet::from_weights(&w, &io_device());
        let x = Tensor::<2>::from_data(TensorData::new(vec![0.1f32; 5 * 3], [5, 3]), &io_device());
        let t = Tensor::<1>::from_data(TensorData::new(vec![0.5f32; 5], [5]), &io_device());
        let out = net.forward(x, t);
        assert_eq!(out.dims(), [5, 3]);
        assert!(out.into_data().try_to_vec::<f32>().unwrap().iter().all(|v| *v == 0.0));
    }

    #[test]
    fn serialisation_round_trips_and_is_deterministic() {
        let w = random_weights(2);
        let bytes = w.to_bytes();
        assert_eq!(bytes, random_weights(2).to_bytes());
        assert_eq!(ScoreNetWeights::from_bytes(&bytes).unwrap(), w);
        assert!(ScoreNetWeights::from_bytes(&bytes[..20]).is_err());
    }

    #[test]
    fn fast_forward_matches_burn() {
        let w = random_weights(3);
        let net = ScoreNet::from_weights(&w, &io_device());
        let fast = FastMlp::new(&w);
        let rows = 300;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let x: Vec<f32> = (0..rows * 3).map(|_| rng.random_range(-1.5..1.5)).collect();
        for t in [0.001f32, 0.37, 1.0] {
            let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [rows, 3]), &io_device());
            let tt = Tensor::<1>::from_data(TensorData::new(vec![t; rows], [rows]), &io_device());
            let want = net.forward(xt, tt).into_data().try_to_vec::<f32>().unwrap();
            let mut got = vec![0f32; rows * 3];
            let mut scratch = fast.scratch(rows);
            fast.eval(&x, t, &mut got, &mut scratch);
            for (a, b) in want.iter().zip(&got) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "t={t}: burn {a} vs fast {b}");
            }
        }
    }
}
