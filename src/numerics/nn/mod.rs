//! The networks' shared kit: what every hand-trained or burn-trained network
//! of the workloads builds on, and no network itself (each lives in the
//! workload that trains it: the score and delta networks in
//! `workloads::triangles::net`, the ε-network in `workloads::two_moons::net`,
//! the DEM MLP and EGNN in `workloads::idem`, the colour autoencoder in
//! `workloads::color::model`).
//!
//! * plain layers ([`Layers`]), PyTorch's default `nn.Linear` initialisation
//!   ([`init_layers`]) drawn from a seeded stream, and their conversion to and
//!   from burn `Linear`s with deterministic parameter ids ([`linears`],
//!   [`layers_of`]);
//! * the sinusoidal time embedding ([`sinusoidal_into`], [`sinusoidal`]);
//! * the burn CPU devices ([`flex_device`], [`ndarray_device`], [`io_device`]);
//! * a model blob's framing ([`frame_blob`]: magic, JSON header, burn records
//!   or raw parts), shared by every model format, and the format registry's
//!   types ([`mod@format`]);
//! * for hand-written training ([`backprop`]): parameter slots, fused SiLU
//!   forward and backward, gradient clipping, AdamW, ReduceLROnPlateau, EMA,
//!   and the chunked loss-and-gradient harness every hand-written backward
//!   pass runs in ([`backprop::ChunkPool`]);
//! * for fast inference ([`fast`]): the `gemm` products, a vectorised `exp`,
//!   fused bias + SiLU, and an MLP whose first layer takes per-call features.
//!
//! It knows no stage, no parameter and no engine: models are plain data here;
//! reading them from a stage's inputs is the workloads' business.

pub mod backprop;
pub mod fast;
pub mod format;
pub mod state;

use burn::module::{Module, Param, ParamId};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use serde::Serialize;

/// burn's `flex` CPU device (the default backend).
pub fn flex_device() -> Device {
    Device::from(burn::backend::flex::FlexDevice)
}

/// burn's `ndarray` CPU device (deprecated by burn 0.22, kept for comparison).
pub fn ndarray_device() -> Device {
    #[allow(deprecated)]
    Device::from(burn::backend::ndarray::NdArrayDevice::Cpu)
}

/// The device weights are framed and unframed on: a CPU backend, since a
/// blob's bytes do not depend on where the model will compute.
pub fn io_device() -> Device {
    flex_device()
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

/// AdamW as PyTorch's defaults (β = 0.9, 0.999, ε = 1e-8) with `weight_decay`:
/// the optimiser of every burn-trained network here.
pub fn adamw(weight_decay: f64) -> burn::optim::AdamWConfig {
    burn::optim::AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .with_weight_decay(weight_decay as f32)
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
pub fn frame_blob(magic: &[u8; 8], header: &impl Serialize, parts: &[&[u8]]) -> Vec<u8> {
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
pub fn unframe_blob<'a, H: serde::de::DeserializeOwned>(
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
pub fn record_bytes<M: Module>(module: M) -> Vec<u8> {
    module.into_record().into_bytes().expect("burnpack encoding of an in-memory module").to_vec()
}

/// Load burn record bytes into `skeleton` (a module of the same shapes).
pub fn load_record<M: Module>(skeleton: M, record: &[u8]) -> Result<M, ModelError> {
    let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_elems(record.to_vec()))
        .map_err(|e| ModelError::Format(e.to_string()))?;
    Ok(skeleton.load_record(record))
}

/// A module skeleton's plain layers of the given shapes (values irrelevant).
pub fn skeleton_layers(shapes: &[(usize, usize)]) -> Layers {
    init_layers(shapes, false, &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0))
}
