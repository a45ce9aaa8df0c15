//! iDEM (seed 001): sampling a Boltzmann density from its energy alone.
//!
//! Akhound-Sadegh et al. 2024, "Iterated Denoising Energy Matching"; origin
//! code `jarridrb/DEM`. The energies are shared numerics ([`crate::numerics::energy`]);
//! this folder holds what only iDEM uses: the Monte Carlo score estimators and
//! the stages.

pub mod egnn;
pub mod egnn_backprop;
pub mod estimator;
pub mod fitting;
pub mod generate;
pub mod integrate;
pub mod mlp;
pub mod net;
pub mod network_score;
pub mod particles_train;
pub mod report;
pub mod sample;
pub mod study;
pub mod train;
pub mod validate;

use crate::numerics::nn::format::{ModelFormat, NamedLayers, numbered};

/// DEM's MLP for GMM-40 (`model/idem`): `layers.<i>` (the first reads the
/// sinusoidal embeddings of x and t, concatenated).
pub static DEM_FORMAT: ModelFormat =
    ModelFormat { magic: net::MAGIC, framing: "idem", describe: "model weights (iDEM MLP)", layers: dem_layers };

/// DEM's EGNN for particle systems (`model/idem`): `embedding`, then per
/// layer `gcl.<l>.{edge_1, edge_2, attention, node_1, node_2, coord_1, coord_2}`
/// (coord₂ has no bias in DEM; its bias is written as zeros).
pub static EGNN_FORMAT: ModelFormat =
    ModelFormat { magic: egnn::MAGIC, framing: "idem", describe: "model weights (iDEM EGNN)", layers: egnn_layers };

fn dem_layers(bytes: &[u8]) -> Result<NamedLayers, String> {
    let m = net::DemModel::from_bytes(bytes).map_err(|e| e.to_string())?;
    let config = serde_json::json!({ "kind": "dem_mlp", "config": m.config, "sigma_min": m.sigma_min, "sigma_max": m.sigma_max, "normalization": m.normalization, "energy": m.energy });
    Ok(NamedLayers { groups: vec![(numbered("layers", m.layers.len()), m.layers)], config })
}

fn egnn_layers(bytes: &[u8]) -> Result<NamedLayers, String> {
    let m = egnn::EgnnModel::from_bytes(bytes).map_err(|e| e.to_string())?;
    let parts = ["edge_1", "edge_2", "attention", "node_1", "node_2", "coord_1", "coord_2"];
    let mut names = vec!["embedding".to_string()];
    for l in 0..m.config.layers {
        names.extend(parts.iter().map(|p| format!("gcl.{l}.{p}")));
    }
    if names.len() != m.layers.len() {
        return Err(format!("an EGNN blob of {} layers where its config says {}", m.layers.len(), names.len()));
    }
    let config = serde_json::json!({ "kind": "egnn", "config": m.config, "sigma_min": m.sigma_min, "sigma_max": m.sigma_max, "energy": m.energy });
    Ok(NamedLayers { groups: vec![(names, m.layers)], config })
}
