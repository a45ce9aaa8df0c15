//! The colour autoencoder (seed 003, experiment 1.7 of `z0u/ex-color-transformer`):
//! a tiny autoencoder whose latent space is shaped by per-sample regularizers
//! weighted by soft labels and, over time, by a keyframed dopesheet
//! ([`crate::numerics::temporal`]).

pub mod compare;
pub mod curriculum;
pub mod data;
pub mod loss;
#[cfg(test)]
mod loss_tests;
pub mod model;
pub mod report;
pub mod stages;
pub mod timeline;
pub mod train;
pub mod validate;

use crate::numerics::nn::format::{ModelFormat, NamedLayers};

/// The colour autoencoder's blob (`model/color_mlp`): `encoder.0`,
/// `encoder.1` (RGB → hidden → latent) and `decoder.0`, `decoder.1`.
pub static COLOR_FORMAT: ModelFormat = ModelFormat {
    magic: train::MAGIC,
    framing: "color_mlp",
    describe: "model weights (colour autoencoder)",
    layers: color_layers,
};

fn color_layers(bytes: &[u8]) -> Result<NamedLayers, String> {
    let params = validate::load_params(bytes)?;
    let layers = crate::numerics::nn::unflatten_layers(&model::SHAPES, &params);
    let names = ["encoder.0", "encoder.1", "decoder.0", "decoder.1"].map(String::from).to_vec();
    let config = serde_json::json!({ "kind": "color_mlp", "shapes": model::SHAPES });
    Ok(NamedLayers { groups: vec![(names, layers)], config })
}
