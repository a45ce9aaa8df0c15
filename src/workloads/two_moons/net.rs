//! The ε-prediction network of the two-moons DDPM (seed 002), as a burn module.
//!
//! The seed's `ScoreNet` is "a small MLP conditioned on time via sinusoidal
//! embeddings (diffusers `Timesteps` + `TimestepEmbedding`)". Its code is public
//! (`RishiDesai/fal-task`, `twomoons_baseline/networks.py` at the commit whose
//! README is the seed); [`Join::Concat`] rebuilds it and is the default:
//!
//! * `Timesteps(time_channels, flip_sin_to_cos=True, downscale_freq_shift=0)`:
//!   frequencies `f_k = exp(−ln(10000)·k/half)`, `k < half = time_channels/2`,
//!   embedding `[cos(t·f), sin(t·f)]` of the timestep. The origin feeds
//!   `clamp(t/999, 0, 1)·999`, i.e. the raw timestep `t` (0…999, fractional at
//!   sampling); it is used here as it is;
//! * `TimestepEmbedding(time_channels, time_channels)`: Linear → SiLU → Linear,
//!   64 → 64 → 64 in the origin;
//! * the trunk reads the **concatenation** `[x, temb]`: Linear(dim + 64, 128) →
//!   SiLU → Linear(128, 128) → SiLU → Linear(128, dim), the last layer
//!   zero-initialised (so training starts from ε̂ = 0). Depth 2, hidden 128.
//!
//! [`Join::Add`] is scoreflow's earlier, larger variant (`architecture: wide` in
//! `train`): `TimestepEmbedding(32, hidden)` **added** to the first layer's
//! pre-activation, `h = SiLU(Linear(x) + temb)`, then `depth − 1` × (Linear(h, h)
//! → SiLU), then Linear(hidden, dim); depth 3, 32 time channels.
//!
//! Initialisation is PyTorch's `nn.Linear` default (see [`crate::numerics::nn::init_layers`]).
//! The module serves as the reference implementation: training uses the
//! hand-written forward/backward of [`super::backprop`] (checked against this
//! module's autodiff gradients for both joins), sampling the fused
//! [`FastEps`].
//!
//! **Serialisation**: the magic `SFEPS001`, a little-endian u32 length, a JSON
//! header (config, DDPM schedule, data columns, whether EMA weights follow), then
//! the raw weights and, if present, the EMA weights, each in burn's record format.
//! Headers written before `join` existed read as [`Join::Add`].

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::numerics::nn::fast::{FastNet, Scratch, silu_bias};
use crate::numerics::nn::{
    Layers, ModelError, frame_blob, init_layers, io_device, layers_of, linears, load_record, record_bytes,
    skeleton_layers, unframe_blob,
};

/// How the timestep embedding meets `x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Join {
    /// `h = SiLU(Linear(x) + temb)`, temb of width `hidden` (scoreflow's `wide`).
    #[default]
    Add,
    /// `h = SiLU(Linear([x, temb]))`, temb of width `time_channels` (the origin's).
    Concat,
}

/// Architecture of the ε-network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpsNetConfig {
    pub dim: usize,
    pub hidden: usize,
    /// Trunk layers with a SiLU after them (the first reads `x`).
    pub depth: usize,
    /// Width of the sinusoidal timestep embedding (even).
    pub time_channels: usize,
    #[serde(default)]
    pub join: Join,
}

impl EpsNetConfig {
    /// The origin's `ScoreNet` (`twomoons_baseline/networks.py`): 64 time
    /// channels, `[x, temb]` → 128 → 128 → dim.
    pub fn origin(dim: usize) -> EpsNetConfig {
        EpsNetConfig { dim, hidden: 128, depth: 2, time_channels: 64, join: Join::Concat }
    }
    /// scoreflow's earlier, larger network (`architecture: wide`).
    pub fn wide(dim: usize) -> EpsNetConfig {
        EpsNetConfig { dim, hidden: 128, depth: 3, time_channels: 32, join: Join::Add }
    }
    /// Output width of the timestep-embedding MLP.
    pub fn temb_width(&self) -> usize {
        match self.join {
            Join::Add => self.hidden,
            Join::Concat => self.time_channels,
        }
    }
    /// `(input, output)` of the timestep-embedding MLP's layers.
    pub fn temb_shapes(&self) -> Vec<(usize, usize)> {
        let w = self.temb_width();
        vec![(self.time_channels, w), (w, w)]
    }
    /// Rows of the first trunk layer's weight that read the embedding (0 for `Add`).
    pub fn first_feat_rows(&self) -> usize {
        match self.join {
            Join::Add => 0,
            Join::Concat => self.temb_width(),
        }
    }
    /// `(input, output)` of the trunk's layers.
    pub fn trunk_shapes(&self) -> Vec<(usize, usize)> {
        let mut v = vec![(self.dim + self.first_feat_rows(), self.hidden)];
        for _ in 1..self.depth {
            v.push((self.hidden, self.hidden));
        }
        v.push((self.hidden, self.dim));
        v
    }
    /// diffusers' timestep frequencies `exp(−ln(10000)·k/half)`.
    pub fn frequencies(&self) -> Vec<f32> {
        let half = self.time_channels / 2;
        (0..half).map(|k| (-(10000f64.ln()) * k as f64 / half as f64).exp() as f32).collect()
    }
}

/// `[cos(t·f₀) … cos(t·fₙ₋₁), sin(t·f₀) … sin(t·fₙ₋₁)]` (flip_sin_to_cos).
pub fn timestep_embedding_into(t: f32, freqs: &[f32], out: &mut [f32]) {
    crate::numerics::nn::sinusoidal_into(t, freqs, true, out);
}

/// The DDPM training schedule a model was trained under (the sampler rebuilds
/// its tables from it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleMeta {
    pub beta_start: f64,
    pub beta_end: f64,
    pub train_timesteps: usize,
}

/// The burn module.
#[derive(Module, Debug)]
pub struct EpsNet {
    pub temb: Vec<Linear>,
    pub trunk: Vec<Linear>,
    pub time_channels: usize,
    /// [`Join::Concat`] when true.
    pub concat: bool,
}

impl EpsNet {
    /// `ε̂(x, t)` for `x: [B, dim]`, `t: [B]` (raw timesteps).
    pub fn forward(&self, x: Tensor<2>, t: Tensor<1>) -> Tensor<2> {
        let device = x.device();
        let cfg = EpsNetConfig { dim: 0, hidden: 0, depth: 0, time_channels: self.time_channels, join: Join::Add };
        let half = self.time_channels / 2;
        let freqs = Tensor::<2>::from_data(TensorData::new(cfg.frequencies(), [1, half]), &device);
        let e = crate::numerics::nn::sinusoidal(t, freqs, true);
        let temb = self.temb[1].forward(silu(self.temb[0].forward(e)));
        let mut h = if self.concat {
            silu(self.trunk[0].forward(Tensor::cat(vec![x, temb], 1)))
        } else {
            silu(self.trunk[0].forward(x) + temb)
        };
        let last = self.trunk.len() - 1;
        for layer in &self.trunk[1..last] {
            h = silu(layer.forward(h));
        }
        self.trunk[last].forward(h)
    }

    pub fn from_layers(w: &EpsLayers, config: &EpsNetConfig, device: &Device) -> EpsNet {
        EpsNet {
            temb: linears(&w.temb, device, 0),
            trunk: linears(&w.trunk, device, 2 * w.temb.len() as u64),
            time_channels: config.time_channels,
            concat: config.join == Join::Concat,
        }
    }
}

/// One set of the network's weights as plain layers (row-major `[in × out]`).
#[derive(Debug, Clone, PartialEq)]
pub struct EpsLayers {
    pub temb: Layers,
    pub trunk: Layers,
}

impl EpsLayers {
    /// PyTorch-default initialisation, output layer zero.
    pub fn init(config: &EpsNetConfig, rng: &mut impl Rng) -> EpsLayers {
        EpsLayers {
            temb: init_layers(&config.temb_shapes(), false, rng),
            trunk: init_layers(&config.trunk_shapes(), true, rng),
        }
    }

    /// All layers in order: the embedding MLP's, then the trunk's.
    pub fn all(&self) -> impl Iterator<Item = &(Vec<f32>, Vec<f32>, usize, usize)> {
        self.temb.iter().chain(self.trunk.iter())
    }

    /// Parameters flattened layer by layer (weight, then bias).
    pub fn flatten(&self) -> Vec<f32> {
        self.all().flat_map(|(w, b, _, _)| w.iter().chain(b.iter()).copied()).collect()
    }

    /// Inverse of [`EpsLayers::flatten`] for the shapes of `config`.
    pub fn unflatten(config: &EpsNetConfig, flat: &[f32]) -> EpsLayers {
        let mut at = 0;
        let mut take = |shapes: Vec<(usize, usize)>| -> Layers {
            shapes
                .into_iter()
                .map(|(i, o)| {
                    let w = flat[at..at + i * o].to_vec();
                    let b = flat[at + i * o..at + i * o + o].to_vec();
                    at += i * o + o;
                    (w, b, i, o)
                })
                .collect()
        };
        let temb = take(config.temb_shapes());
        let trunk = take(config.trunk_shapes());
        EpsLayers { temb, trunk }
    }
}

/// A trained ε-model: architecture, schedule, data columns, raw and EMA weights.
#[derive(Debug, Clone, PartialEq)]
pub struct EpsModelWeights {
    pub config: EpsNetConfig,
    pub schedule: ScheduleMeta,
    /// Names of the data columns the model was trained on, in order.
    pub columns: Vec<String>,
    pub raw: EpsLayers,
    pub ema: Option<EpsLayers>,
}

pub const MAGIC: &[u8; 8] = b"SFEPS001";

#[derive(Serialize, Deserialize)]
struct Header {
    config: EpsNetConfig,
    schedule: ScheduleMeta,
    columns: Vec<String>,
    raw_len: u64,
    ema: bool,
}

impl EpsModelWeights {
    /// Serialise: header + burn records (see the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let record = |l: &EpsLayers| record_bytes(EpsNet::from_layers(l, &self.config, &io_device()));
        let raw = record(&self.raw);
        let ema = self.ema.as_ref().map(record).unwrap_or_default();
        let header = Header {
            config: self.config.clone(),
            schedule: self.schedule.clone(),
            columns: self.columns.clone(),
            raw_len: raw.len() as u64,
            ema: self.ema.is_some(),
        };
        frame_blob(MAGIC, &header, &[&raw, &ema])
    }

    /// Inverse of [`EpsModelWeights::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<EpsModelWeights, ModelError> {
        let (header, body): (Header, _) = unframe_blob(bytes, MAGIC, "not an ε-prediction model")?;
        let raw_len = header.raw_len as usize;
        let cfg = &header.config;
        let load = |record: &[u8]| -> Result<EpsLayers, ModelError> {
            let skeleton =
                EpsLayers { temb: skeleton_layers(&cfg.temb_shapes()), trunk: skeleton_layers(&cfg.trunk_shapes()) };
            let net = load_record(EpsNet::from_layers(&skeleton, cfg, &io_device()), record)?;
            Ok(EpsLayers { temb: layers_of(&net.temb), trunk: layers_of(&net.trunk) })
        };
        let raw = load(body.get(..raw_len).ok_or_else(|| ModelError::Format("truncated record".into()))?)?;
        let ema = if header.ema { Some(load(&body[raw_len..])?) } else { None };
        Ok(EpsModelWeights { config: header.config, schedule: header.schedule, columns: header.columns, raw, ema })
    }
}

/// The two-moons ε-network ([`EpsNet`]) for sampling: every row of a call
/// shares the timestep, so the embedding MLP runs once per call on one row and
/// its output joins the trunk's first-layer bias — added to it (`Join::Add`) or
/// through the first layer's embedding rows (`Join::Concat`, the same product
/// `FastNet::forward` forms for per-call features); the trunk is a `FastNet`.
#[derive(Debug, Clone)]
pub struct FastEps {
    freqs: Vec<f32>,
    /// The embedding MLP: (weight `[in × out]`, bias) per layer.
    temb: Vec<(Vec<f32>, Vec<f32>, usize, usize)>,
    trunk: FastNet,
    concat: bool,
}

impl FastEps {
    pub fn new(config: &EpsNetConfig, layers: &EpsLayers) -> FastEps {
        FastEps {
            freqs: config.frequencies(),
            temb: layers.temb.clone(),
            trunk: FastNet::new(config.dim, &layers.trunk),
            concat: config.join == Join::Concat,
        }
    }

    /// `TimestepEmbedding(Timesteps(t))`.
    fn temb_at(&self, t: f32) -> Vec<f32> {
        let mut h = vec![0f32; 2 * self.freqs.len()];
        timestep_embedding_into(t, &self.freqs, &mut h);
        for (i, (w, b, n_in, n_out)) in self.temb.iter().enumerate() {
            let mut out = b.clone();
            for (k, e) in h.iter().enumerate().take(*n_in) {
                for (o, wv) in out.iter_mut().zip(&w[k * n_out..(k + 1) * n_out]) {
                    *o += e * wv;
                }
            }
            if i + 1 < self.temb.len() {
                silu_bias(&mut out, &[]);
            }
            h = out;
        }
        h
    }
}

impl crate::numerics::sde::ddpm::EpsModel for FastEps {
    type Scratch = Scratch;
    fn dim(&self) -> usize {
        self.trunk.dim()
    }
    fn scratch(&self, rows: usize) -> Scratch {
        Scratch::new(rows, self.trunk.widest(), 0, 0)
    }
    fn eval(&self, x: &[f32], t: f32, out: &mut [f32], s: &mut Scratch) {
        let temb = self.temb_at(t);
        if self.concat {
            self.trunk.forward(x, &temb, out, &mut s.a, &mut s.b, &mut s.bias);
        } else {
            let w = self.trunk.width();
            for ((o, e), b) in s.bias[..w].iter_mut().zip(&temb).zip(self.trunk.first_bias()) {
                *o = e + b;
            }
            self.trunk.forward_biased(x, &s.bias[..w], out, &mut s.a, &mut s.b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn embedding_is_diffusers_flip_sin_to_cos() {
        let cfg = EpsNetConfig::wide(2);
        let f = cfg.frequencies();
        assert_eq!(f.len(), 16);
        assert_eq!(f[0], 1.0);
        assert!((f[8] as f64 - 0.01).abs() < 1e-9, "10000^(-1/2) = 0.01, got {}", f[8]);
        let mut e = vec![0f32; 32];
        timestep_embedding_into(3.0, &f, &mut e);
        assert!((e[0] - 3f32.cos()).abs() < 1e-6 && (e[16] - 3f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn shapes_zero_output_and_round_trip() {
        // The origin's ScoreNet: TimestepEmbedding(64, 64), then [x, temb] → 128 → 128 → 2.
        let origin = EpsNetConfig::origin(2);
        let shapes: Vec<_> = origin.temb_shapes().into_iter().chain(origin.trunk_shapes()).collect();
        assert_eq!(shapes, [(64, 64), (64, 64), (66, 128), (128, 128), (128, 2)]);
        let n_params: usize = shapes.iter().map(|(i, o)| i * o + o).sum();
        assert_eq!(n_params, 8320 + 8576 + 16512 + 258);
        for (cfg, want) in [
            (EpsNetConfig::wide(2), vec![(32, 128), (128, 128), (2, 128), (128, 128), (128, 128), (128, 2)]),
            (origin, shapes),
        ] {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
            let raw = EpsLayers::init(&cfg, &mut rng);
            let got: Vec<_> = raw.all().map(|l| (l.2, l.3)).collect();
            assert_eq!(got, want);
            let net = EpsNet::from_layers(&raw, &cfg, &io_device());
            let x = Tensor::<2>::from_data(TensorData::new(vec![0.3f32; 8], [4, 2]), &io_device());
            let t = Tensor::<1>::from_data(TensorData::new(vec![0.0f32, 10.0, 500.5, 999.0], [4]), &io_device());
            let out = net.forward(x, t).into_data().try_to_vec::<f32>().unwrap();
            assert_eq!(out, vec![0.0; 8]);
            assert_eq!(EpsLayers::unflatten(&cfg, &raw.flatten()), raw);
            let mut ema = raw.clone();
            ema.trunk[0].1[0] = 0.5;
            let w = EpsModelWeights {
                config: cfg,
                schedule: ScheduleMeta { beta_start: 1e-4, beta_end: 0.02, train_timesteps: 1000 },
                columns: vec!["x".into(), "y".into()],
                raw,
                ema: Some(ema),
            };
            let bytes = w.to_bytes();
            assert_eq!(EpsModelWeights::from_bytes(&bytes).unwrap(), w);
            assert!(EpsModelWeights::from_bytes(&bytes[..30]).is_err());
        }
    }

    /// The fused ε-network agrees with burn's forward of the reference module,
    /// for both joins, at integer and fractional timesteps.
    #[test]
    fn fast_eps_matches_burn() {
        use crate::numerics::sde::ddpm::EpsModel;
        use burn::tensor::{Tensor, TensorData};
        use rand::{Rng, SeedableRng};
        for cfg in [EpsNetConfig::origin(2), EpsNetConfig::wide(2)] {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
            let mut layers = EpsLayers::init(&cfg, &mut rng);
            let last = layers.trunk.len() - 1;
            layers.trunk[last].0.iter_mut().for_each(|v| *v = rng.random_range(-0.3..0.3));
            let rows = 37;
            let x: Vec<f32> = (0..rows * 2).map(|_| rng.random_range(-2.0..2.0)).collect();
            let fast = FastEps::new(&cfg, &layers);
            let net = EpsNet::from_layers(&layers, &cfg, &crate::numerics::nn::flex_device());
            for t in [0.0f32, 17.0, 499.5, 999.0] {
                let mut out = vec![0f32; rows * 2];
                let mut s = fast.scratch(rows);
                fast.eval(&x, t, &mut out, &mut s);
                let dev = crate::numerics::nn::flex_device();
                let want = net
                    .forward(
                        Tensor::<2>::from_data(TensorData::new(x.clone(), [rows, 2]), &dev),
                        Tensor::<1>::from_data(TensorData::new(vec![t; rows], [rows]), &dev),
                    )
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap();
                for (a, b) in out.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{:?} t {t}: {a} vs {b}", cfg.join);
                }
            }
        }
    }

    #[test]
    fn safetensors_round_trip_in_pytorch_layout_with_the_origins_names() {
        let cfg = EpsNetConfig::origin(2);
        let raw = EpsLayers::init(&cfg, &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(2));
        let w = EpsModelWeights {
            config: cfg,
            schedule: ScheduleMeta { beta_start: 1e-4, beta_end: 0.02, train_timesteps: 1000 },
            columns: vec!["x".into(), "y".into()],
            raw: raw.clone(),
            ema: Some(raw.clone()),
        };
        let file = crate::export::to_safetensors(&w.to_bytes()).unwrap();
        let st = safetensors::SafeTensors::deserialize(&file).unwrap();
        let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
        names.sort();
        assert!(names.contains(&"time_emb.time_mlp.linear_1.weight".to_string()));
        assert!(names.contains(&"net.4.bias".to_string()) && names.contains(&"ema.net.0.weight".to_string()));
        assert_eq!(names.len(), 20, "{names:?}");
        // net.0 is Linear(66, 128): PyTorch's [out, in] = [128, 66], transposed from [in, out].
        let t = st.tensor("net.0.weight").unwrap();
        assert_eq!(t.shape(), &[128, 66]);
        let (wv, _, input, output) = &raw.trunk[0];
        let at = |o: usize, i: usize| f32::from_le_bytes(t.data()[(o * input + i) * 4..][..4].try_into().unwrap());
        assert_eq!(at(5, 7), wv[7 * output + 5]);
        assert_eq!(at(127, 65), wv[65 * output + 127]);
        // Not model weights: a clear error.
        assert!(crate::export::to_safetensors(b"\x89PNG....").unwrap_err().contains("PNG image"));
    }
}
