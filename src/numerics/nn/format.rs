//! Model formats: what a model blob holds, known by its first eight bytes.
//!
//! Every network scoreflow trains is stored as a framed blob (a magic, a JSON
//! header, burn's record of its linear layers; [`super::frame_blob`]). The
//! workload that trains a network registers its format here — the magic, the
//! framing name its stages declare (`Media::Model("eps_ddpm")`), a sentence
//! `inspect` shows, and how to read its layers with names — so `inspect` and
//! `export` (safetensors) know every format without a line of their own per
//! network. A new network is one [`ModelFormat`] in its workload's list.

use super::Layers;

/// Named groups of linear layers (each layer's name, then the layers) and the
/// model's configuration as JSON: what `export` writes as safetensors.
pub struct NamedLayers {
    pub groups: Vec<(Vec<String>, Layers)>,
    pub config: serde_json::Value,
}

/// One model format.
pub struct ModelFormat {
    /// The blob's first eight bytes.
    pub magic: &'static [u8; 8],
    /// The framing its stages declare as media (`model/<framing>`).
    pub framing: &'static str,
    /// What it is, in words.
    pub describe: &'static str,
    /// Its layers, named (PyTorch's state-dict names where an origin has them).
    pub layers: fn(&[u8]) -> Result<NamedLayers, String>,
}

impl std::fmt::Debug for ModelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", String::from_utf8_lossy(self.magic), self.framing)
    }
}

/// `prefix.0`, `prefix.1`, … for `n` layers.
pub fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}.{i}")).collect()
}

/// The format of a blob, among `formats`, by its magic.
pub fn format_of<'a>(formats: &'a [&'static ModelFormat], bytes: &[u8]) -> Option<&'a ModelFormat> {
    formats.iter().copied().find(|f| bytes.starts_with(f.magic))
}
