//! S-MEME on triangles (seed 000): the biased triangle data set, its type
//! labels, the OU score model trained by denoising score matching, the
//! predictor–corrector sampler, the seed's validity checks and exploration
//! metrics, S-MEME tuning, and the report.

pub mod am;
pub mod am_report;
pub mod backprop;
pub mod explore;
pub mod generate;
pub mod geometry;
pub mod label;
pub mod net;
pub mod report;
pub mod sample;
pub mod train;
pub mod tune;
pub mod validate;

use crate::numerics::nn::format::{ModelFormat, NamedLayers, numbered};
use crate::workloads::triangles::net::ScoreNetWeights;

/// The score network's blob (`model/score_ou`), pre-trained or tuned:
/// `layers.<i>`, and the S-MEME delta network's `delta.<i>` when present.
pub static SCORE_FORMAT: ModelFormat = ModelFormat {
    magic: crate::workloads::triangles::net::MAGIC,
    framing: "score_ou",
    describe: "model weights (score network)",
    layers: score_layers,
};

fn score_layers(bytes: &[u8]) -> Result<NamedLayers, String> {
    let w = ScoreNetWeights::from_bytes(bytes).map_err(|e| e.to_string())?;
    let groups = vec![
        (numbered("layers", w.layers.len()), w.layers.clone()),
        (numbered("delta", w.delta.len()), w.delta.clone()),
    ];
    let config = serde_json::json!({ "kind": "score", "config": w.config, "meta": w.meta, "freqs": w.freqs });
    Ok(NamedLayers { groups, config })
}
