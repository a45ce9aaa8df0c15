//! DEM's score network for GMM-40 (`dem/models/components/mlp.py`, `MyMLP`
//! with `configs/model/net/mlp.yaml`), as a burn module — the network the
//! coming `train objective: idem` stage fits to the Monte Carlo estimates.
//!
//! * Each input coordinate and the time get DEM's `SinusoidalEmbedding(128)`:
//!   `half = 64`, frequencies `f_k = exp(−k·ln(10⁴)/(half − 1))` (note the
//!   `half − 1`, unlike diffusers' `half`), embedding `[sin(s·v·f), cos(s·v·f)]`
//!   with scale `s = 25` for the coordinates and 1 for `t`;
//! * the three embeddings are concatenated (`[emb(x₀), emb(x₁), emb(t)]`,
//!   384 wide) → Linear(384, 128) → GELU → 3 residual blocks
//!   `h ← h + GELU(Linear(h))` → Linear(128, 2): the predicted score.
//!
//! Initialisation is PyTorch's `nn.Linear` default; DEM does not zero the last
//! layer. 99 074 parameters at DEM's sizes.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;

use crate::numerics::nn::{
    Layers, ModelError, frame_blob, init_layers, io_device, layers_of, linears, load_record, record_bytes,
    skeleton_layers, unframe_blob,
};

/// DEM's sizes (`mlp.yaml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DemMlpConfig {
    pub dim: usize,
    pub hidden: usize,
    pub blocks: usize,
    pub emb_size: usize,
}

impl DemMlpConfig {
    pub const GMM: DemMlpConfig = DemMlpConfig { dim: 2, hidden: 128, blocks: 3, emb_size: 128 };

    /// (in, out) of every linear layer, in order.
    pub fn shapes(&self) -> Vec<(usize, usize)> {
        let concat = (self.dim + 1) * self.emb_size;
        std::iter::once((concat, self.hidden))
            .chain(std::iter::repeat_n((self.hidden, self.hidden), self.blocks))
            .chain(std::iter::once((self.hidden, self.dim)))
            .collect()
    }

    /// DEM's embedding frequencies.
    pub fn frequencies(&self) -> Vec<f32> {
        let half = self.emb_size / 2;
        let step = (10_000f64).ln() / (half as f64 - 1.0);
        (0..half).map(|k| (-(k as f64) * step).exp() as f32).collect()
    }

    /// PyTorch-default weights.
    pub fn init(&self, rng: &mut impl Rng) -> Layers {
        init_layers(&self.shapes(), false, rng)
    }
}

/// Scale of the coordinates' embeddings (DEM: 25).
pub const INPUT_SCALE: f32 = 25.0;

/// The burn module.
#[derive(Module, Debug)]
pub struct DemMlp {
    pub layers: Vec<Linear>,
    pub dim: usize,
    pub emb_size: usize,
}

impl DemMlp {
    pub fn from_layers(layers: &Layers, config: &DemMlpConfig, device: &Device) -> DemMlp {
        DemMlp { layers: linears(layers, device, 0), dim: config.dim, emb_size: config.emb_size }
    }

    /// The predicted score `s(x, t)` for `x: [B, dim]`, `t: [B]`.
    pub fn forward(&self, x: Tensor<2>, t: Tensor<1>) -> Tensor<2> {
        let device = x.device();
        let [b, dim] = x.dims();
        let cfg = DemMlpConfig { dim, hidden: 0, blocks: 0, emb_size: self.emb_size };
        let half = self.emb_size / 2;
        let freqs = Tensor::<2>::from_data(TensorData::new(cfg.frequencies(), [1, half]), &device);
        let mut parts: Vec<Tensor<2>> = (0..dim)
            .map(|j| {
                let v = x.clone().slice([0..b, j..j + 1]).reshape([b]).mul_scalar(INPUT_SCALE);
                crate::numerics::nn::sinusoidal(v, freqs.clone(), false)
            })
            .collect();
        parts.push(crate::numerics::nn::sinusoidal(t, freqs, false));
        let last = self.layers.len() - 1;
        let mut h = gelu(self.layers[0].forward(Tensor::cat(parts, 1)));
        for block in &self.layers[1..last] {
            h = h.clone() + gelu(block.forward(h));
        }
        self.layers[last].forward(h)
    }
}

/// A trained iDEM network and what its samples need: the noise schedule and
/// the coordinates' normalisation it was trained in.
///
/// **Serialisation**: the magic `SFDEM001`, a little-endian u32 length, the
/// JSON of everything but the weights, then [`DemMlp`] in burn's record
/// format.
#[derive(Debug, Clone, PartialEq)]
pub struct DemModel {
    pub config: DemMlpConfig,
    pub sigma_min: f64,
    pub sigma_max: f64,
    /// The energy's coordinates divided by this are the network's (DEM: 50).
    pub normalization: f64,
    /// The energy it was trained on (`gmm40`).
    pub energy: String,
    pub layers: Layers,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    config: DemMlpConfig,
    sigma_min: f64,
    sigma_max: f64,
    normalization: f64,
    energy: String,
}

pub const MAGIC: &[u8; 8] = b"SFDEM001";

impl DemModel {
    pub fn to_bytes(&self) -> Vec<u8> {
        let record = record_bytes(DemMlp::from_layers(&self.layers, &self.config, &io_device()));
        let header = Header {
            config: self.config,
            sigma_min: self.sigma_min,
            sigma_max: self.sigma_max,
            normalization: self.normalization,
            energy: self.energy.clone(),
        };
        frame_blob(MAGIC, &header, &[&record])
    }
    pub fn from_bytes(bytes: &[u8]) -> Result<DemModel, ModelError> {
        let (h, body): (Header, _) = unframe_blob(bytes, MAGIC, "not an iDEM model")?;
        let skeleton = DemMlp::from_layers(&skeleton_layers(&h.config.shapes()), &h.config, &io_device());
        let net = load_record(skeleton, body)?;
        Ok(DemModel {
            config: h.config,
            sigma_min: h.sigma_min,
            sigma_max: h.sigma_max,
            normalization: h.normalization,
            energy: h.energy,
            layers: layers_of(&net.layers),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn dems_sizes_and_embedding() {
        let cfg = DemMlpConfig::GMM;
        let params: usize = cfg.shapes().iter().map(|(i, o)| i * o + o).sum();
        assert_eq!(params, 99_074);
        let f = cfg.frequencies();
        assert_eq!(f.len(), 64);
        assert!((f[0] - 1.0).abs() < 1e-7 && (f[63] - 1e-4).abs() < 1e-9, "{} {}", f[0], f[63]);
    }

    /// The forward pass has the shape of a score, and training can move every
    /// parameter: autodiff reaches each layer.
    #[test]
    fn forward_and_gradients_reach_every_layer() {
        let cfg = DemMlpConfig::GMM;
        let layers = cfg.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        let dev = crate::workloads::train_device(crate::engine::stage::Backend::Flex);
        let net = DemMlp::from_layers(&layers, &cfg, &dev);
        let b = 16;
        let x = Tensor::<2>::from_data(
            TensorData::new((0..b * 2).map(|i| (i as f32 - 16.0) / 40.0).collect(), [b, 2]),
            &dev,
        );
        let t = Tensor::<1>::from_data(TensorData::new((0..b).map(|i| i as f32 / b as f32).collect(), [b]), &dev);
        let out = net.forward(x, t);
        assert_eq!(out.dims(), [b, 2]);
        let loss = out.powi_scalar(2).mean();
        let grads = loss.backward();
        for (i, lin) in net.layers.iter().enumerate() {
            let g = lin.weight.val().grad(&grads).expect("a gradient").into_data().try_to_vec::<f32>().unwrap();
            assert!(g.iter().any(|v| *v != 0.0), "layer {i} gets no gradient");
        }
    }

    #[test]
    fn a_model_round_trips() {
        let cfg = DemMlpConfig::GMM;
        let m = DemModel {
            config: cfg,
            sigma_min: 1e-5,
            sigma_max: 1.0,
            normalization: 50.0,
            energy: "gmm40".into(),
            layers: cfg.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(2)),
        };
        assert_eq!(DemModel::from_bytes(&m.to_bytes()).unwrap(), m);
        assert!(DemModel::from_bytes(b"SFEPS001xxxx").is_err());
    }
}
