//! The two-moons DDPM baseline (seed 002): `make_moons` data, the ε-prediction
//! DDPM and its samplers, distribution distances with their floor, the report.

pub mod backprop;
pub mod generate;
pub mod net;
pub mod report;
pub mod sample;
pub mod train;
pub mod validate;

use crate::numerics::nn::format::{ModelFormat, NamedLayers, numbered};
use crate::workloads::two_moons::net::{EpsLayers, EpsModelWeights, Join};

/// The ε-network's blob (`model/eps_ddpm`). With the origin's architecture
/// its layers carry the origin's `ScoreNet` state-dict names —
/// `time_emb.time_mlp.linear_1`, `time_emb.time_mlp.linear_2`, `net.0`,
/// `net.2`, `net.4` — so `ScoreNet().load_state_dict(load_file(p))` loads
/// them; the `wide` network's are `temb.<i>` / `trunk.<i>`. EMA weights follow
/// under the prefix `ema.`.
pub static EPS_FORMAT: ModelFormat = ModelFormat {
    magic: crate::workloads::two_moons::net::MAGIC,
    framing: "eps_ddpm",
    describe: "model weights (two-moons ε-network)",
    layers: eps_layers,
};

fn eps_layers(bytes: &[u8]) -> Result<NamedLayers, String> {
    let w = EpsModelWeights::from_bytes(bytes).map_err(|e| e.to_string())?;
    let names = |layers: &EpsLayers| -> (Vec<String>, Vec<String>) {
        match w.config.join {
            Join::Concat => (
                vec!["time_emb.time_mlp.linear_1".into(), "time_emb.time_mlp.linear_2".into()],
                (0..layers.trunk.len()).map(|i| format!("net.{}", 2 * i)).collect(),
            ),
            Join::Add => (numbered("temb", layers.temb.len()), numbered("trunk", layers.trunk.len())),
        }
    };
    let mut groups = Vec::new();
    for (prefix, layers) in std::iter::once(("", &w.raw)).chain(w.ema.as_ref().map(|e| ("ema.", e))) {
        let (temb, trunk) = names(layers);
        let add = |n: Vec<String>| n.into_iter().map(|s| format!("{prefix}{s}")).collect::<Vec<_>>();
        groups.push((add(temb), layers.temb.clone()));
        groups.push((add(trunk), layers.trunk.clone()));
    }
    let config = serde_json::json!({ "kind": "eps", "config": w.config, "schedule": w.schedule, "columns": w.columns });
    Ok(NamedLayers { groups, config })
}
