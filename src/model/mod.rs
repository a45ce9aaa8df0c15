//! The score network, as a burn module, and the burn devices of a [`Backend`].
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
//! Inference in the sampler uses [`fast::FastMlp`] over the trained weights.
//!
//! The two-moons ε-network lives in [`eps`] (a burn module too), its hand-written
//! training in [`backprop`], its fused inference in [`fast::FastEps`]. Both model
//! formats share one blob framing (`frame_blob`).

pub mod backprop;
pub mod eps;
pub mod fast;
pub mod format;

use burn::module::{Module, Param, ParamId};
use burn::nn::Linear;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use serde::{Deserialize, Serialize};

pub use crate::engine::stage::Backend;

/// The plain device of a backend.
pub fn backend_device(b: Backend) -> Device {
    match b {
        Backend::Flex => Device::from(burn::backend::flex::FlexDevice),
        #[allow(deprecated)]
        Backend::NdArray => Device::from(burn::backend::ndarray::NdArrayDevice::Cpu),
    }
}

/// The device weights are framed and unframed on: a CPU backend, since a
/// blob's bytes do not depend on where the model will compute.
pub fn io_device() -> Device {
    backend_device(Backend::Flex)
}

/// The autodiff device of a backend.
pub fn train_device(b: Backend) -> Device {
    backend_device(b).autodiff()
}

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

/// The sinusoidal time embedding of both networks, for one `t`: the sines and
/// the cosines of `t·fₖ` in two halves — `[sin…, cos…]` (the score network), or
/// `[cos…, sin…]` with `cos_first` (diffusers' `flip_sin_to_cos`, the
/// ε-network). [`sinusoidal`] is the same on burn tensors.
pub fn sinusoidal_into(t: f32, freqs: &[f32], cos_first: bool, out: &mut [f32]) {
    let n = freqs.len();
    let (sin_at, cos_at) = if cos_first { (n, 0) } else { (0, n) };
    for (k, f) in freqs.iter().enumerate() {
        let a = t * f;
        out[sin_at + k] = a.sin();
        out[cos_at + k] = a.cos();
    }
}

/// [`sinusoidal_into`] for a batch: `t: [B]`, `freqs: [1, n]` → `[B, 2n]`.
pub fn sinusoidal(t: Tensor<1>, freqs: Tensor<2>, cos_first: bool) -> Tensor<2> {
    let [b] = t.dims();
    let arg = t.reshape([b, 1]).mul(freqs);
    let (sin, cos) = (arg.clone().sin(), arg.cos());
    Tensor::cat(if cos_first { vec![cos, sin] } else { vec![sin, cos] }, 1)
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

/// Plain layers: (weight `[input × output]` row-major, bias, input, output).
pub type Layers = Vec<(Vec<f32>, Vec<f32>, usize, usize)>;

/// Plain layers of a flat parameter vector (each layer's `[in × out]` weight,
/// then its bias, in the order of `shapes`) — the inverse of flattening.
pub fn unflatten_layers(shapes: &[(usize, usize)], params: &[f32]) -> Layers {
    let mut at = 0;
    shapes
        .iter()
        .map(|&(i, o)| {
            let w = params[at..at + i * o].to_vec();
            let b = params[at + i * o..at + i * o + o].to_vec();
            at += i * o + o;
            (w, b, i, o)
        })
        .collect()
}

/// burn `Linear`s from plain layers; parameter ids count from `first_id` in layer
/// order, so records are deterministic. Gradients are tracked on autodiff devices.
pub fn linears(layers: &Layers, device: &Device, first_id: u64) -> Vec<Linear> {
    fn param<const D: usize>(v: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
        let t = Tensor::from_data(TensorData::new(v, shape), device);
        if device.is_autodiff() { t.require_grad() } else { t }
    }
    layers
        .iter()
        .enumerate()
        .map(|(i, (wv, bv, input, output))| Linear {
            weight: Param::initialized(
                ParamId::from(first_id + 2 * i as u64),
                param(wv.clone(), [*input, *output], device),
            ),
            bias: Some(Param::initialized(
                ParamId::from(first_id + 2 * i as u64 + 1),
                param(bv.clone(), [*output], device),
            )),
        })
        .collect()
}

/// Plain layers read back from burn `Linear`s.
pub fn layers_of(linears: &[Linear]) -> Layers {
    linears
        .iter()
        .map(|l| {
            let [input, output] = l.weight.val().dims();
            let w = l.weight.val().into_data().try_to_vec::<f32>().expect("f32 weights");
            let b = l.bias.as_ref().expect("bias").val().into_data().try_to_vec::<f32>().expect("f32 bias");
            (w, b, input, output)
        })
        .collect()
}

/// PyTorch's default `nn.Linear` initialisation, `U(−1/√in, 1/√in)`, for layers of
/// the given shapes; `zero_last` zeroes the output layer.
pub fn init_layers(shapes: &[(usize, usize)], zero_last: bool, rng: &mut impl Rng) -> Layers {
    let last = shapes.len() - 1;
    shapes
        .iter()
        .enumerate()
        .map(|(i, &(input, output))| {
            if zero_last && i == last {
                return (vec![0.0; input * output], vec![0.0; output], input, output);
            }
            let k = 1.0 / (input as f64).sqrt();
            let mut draw = |n: usize| (0..n).map(|_| rng.random_range(-k..k) as f32).collect::<Vec<f32>>();
            let w = draw(input * output);
            let b = draw(output);
            (w, b, input, output)
        })
        .collect()
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

/// AdamW as PyTorch's defaults (β = 0.9, 0.999, ε = 1e-8) with `weight_decay`:
/// the optimiser of every burn-trained network here.
/// The memory to train a dense network of layer `shapes` (in, out) on
/// `batch` rows, as (weights, activations) in bytes: f32 weights, their
/// gradients, AdamW's two moments and one spare copy (an EMA, or autodiff's
/// transposes: 5 copies); every layer's output, pre-activation and their
/// gradients for each row (4 copies). An upper bound for `check` to refuse a
/// width or batch that cannot fit before anything runs, not a prediction.
pub fn dense_train_memory(shapes: &[(usize, usize)], batch: usize) -> (u64, u64) {
    let params: u128 = shapes.iter().map(|&(i, o)| (i as u128 + 1) * o as u128).sum();
    let outputs: u128 =
        shapes.iter().map(|&(_, o)| o as u128).sum::<u128>() + shapes.first().map_or(0, |s| s.0 as u128);
    let clamp = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
    (clamp(params * 4 * 5), clamp(outputs * batch as u128 * 4 * 4))
}

/// [`dense_train_memory`] as a stage's memory estimate: the total plus 64 MiB,
/// named after `width` when the weights dominate, else after `batch`.
pub fn dense_estimate(
    shapes: &[(usize, usize)],
    batch: usize,
    width: &'static str,
    batch_name: &'static str,
) -> (&'static str, u64) {
    let (weights, activations) = dense_train_memory(shapes, batch);
    let total = weights.saturating_add(activations).saturating_add(64 << 20);
    (if weights >= activations { width } else { batch_name }, total)
}

/// Layer shapes of a dense network: `input` → `depth` hidden layers of
/// `hidden` → `output`.
pub fn dense_shapes(input: usize, hidden: usize, depth: usize, output: usize) -> Vec<(usize, usize)> {
    let mut shapes = vec![(input, hidden)];
    shapes.extend((1..depth.max(1)).map(|_| (hidden, hidden)));
    shapes.push((hidden, output));
    shapes
}

pub fn adamw(weight_decay: f64) -> burn::optim::AdamWConfig {
    burn::optim::AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .with_weight_decay(weight_decay as f32)
}

/// A model blob that does not decode fails the stage that reads it.
impl From<ModelError> for crate::engine::stage::StageError {
    fn from(e: ModelError) -> Self {
        crate::engine::stage::StageError::Failed(e.to_string())
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

/// Errors decoding a model blob.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("not a scoreflow model: {0}")]
    Format(String),
}

/// Frame a model blob: the 8-byte `magic`, the JSON header's length as a
/// little-endian u32, the header, then `parts` back to back. Every model format
/// of scoreflow is framed this way.
pub(crate) fn frame_blob(magic: &[u8; 8], header: &impl Serialize, parts: &[&[u8]]) -> Vec<u8> {
    let header = serde_json::to_vec(header).expect("json of a plain struct");
    let body: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(12 + header.len() + body);
    out.extend_from_slice(magic);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// Inverse of [`frame_blob`]: the header and the bytes after it.
pub(crate) fn unframe_blob<'a, H: serde::de::DeserializeOwned>(
    bytes: &'a [u8],
    magic: &[u8; 8],
    what: &str,
) -> Result<(H, &'a [u8]), ModelError> {
    let bad = |why: String| ModelError::Format(why);
    if bytes.len() < 12 || &bytes[..8] != magic {
        return Err(bad(format!("missing {} header ({what})", String::from_utf8_lossy(magic))));
    }
    let n = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    let header = bytes.get(12..12 + n).ok_or_else(|| bad("truncated header".into()))?;
    let header = serde_json::from_slice(header).map_err(|e| bad(e.to_string()))?;
    Ok((header, &bytes[12 + n..]))
}

/// burn's record bytes of a module (deterministic: ids are assigned in order).
pub(crate) fn record_bytes<M: Module>(module: M) -> Vec<u8> {
    module.into_record().into_bytes().expect("burnpack encoding of an in-memory module").to_vec()
}

/// Load burn record bytes into `skeleton` (a module of the same shapes).
pub(crate) fn load_record<M: Module>(skeleton: M, record: &[u8]) -> Result<M, ModelError> {
    let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_elems(record.to_vec()))
        .map_err(|e| ModelError::Format(e.to_string()))?;
    Ok(skeleton.load_record(record))
}

/// A module skeleton's plain layers of the given shapes (values irrelevant).
pub(crate) fn skeleton_layers(shapes: &[(usize, usize)]) -> Layers {
    init_layers(shapes, false, &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sde::sampler::ScoreModel;
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
        let fast = fast::FastMlp::new(&w);
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
