//! Hashes: stage keys and content hashes.
//!
//! scoreflow keys its cache on two levels, like Bazel's action cache in front of a
//! content-addressed store:
//!
//! 1. **Stage key** — blake3 over a canonical encoding of exactly the [`KeyInputs`]
//!    below. It names the stage's *record* (`records/<key>.json`).
//! 2. **Content hash** — blake3 over the logical content of each output (a table's
//!    schema and values, see [`crate::engine::frame::Table::content_hash`]; a blob's bytes).
//!    It names the output *object* (`objects/<hash>.parquet`). Downstream keys are
//!    built from content hashes, so a stage that reruns and produces identical
//!    content leaves its dependents fresh (early cutoff).
//!
//! | hash input        | encoding                                                      |
//! |-------------------|---------------------------------------------------------------|
//! | domain tag        | `"scoreflow/stage-key/v1"`                                     |
//! | `kind`            | string (`generate`, `label`, …)                                |
//! | `method`          | string (the kind's selector: `dataset`, `scheme`, …)            |
//! | `version`         | u32, the implementation version of (kind, method)             |
//! | `params`          | canonical map: sorted keys, defaults filled, typed values      |
//! | `seed`            | u64, the stage's effective seed                                |
//! | `inputs`          | sorted map input name → content hash of the referenced output  |
//! | `definition`      | command stages only: argv, outputs, env values, … (canonical map) |
//!
//! Every field is written as `len(name) ‖ name ‖ len(value) ‖ value` with lengths as
//! little-endian u64, so no two different inputs share an encoding. Never part of the
//! key: file paths, modification times, the clock, the pipeline's name, the stage's
//! name (renaming a stage keeps its cache), or the host.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::engine::params::{Params, Value, encode_params, params_to_json};

/// A 32-byte blake3 digest, shown as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn of(bytes: &[u8]) -> Hash {
        Hash(*blake3::hash(bytes).as_bytes())
    }
    pub fn hex(&self) -> String {
        self.to_string()
    }
    /// The first 12 hex digits, for humans.
    pub fn short(&self) -> String {
        self.to_string()[..12].to_string()
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.short())
    }
}

impl FromStr for Hash {
    type Err = String;
    fn from_str(s: &str) -> Result<Hash, String> {
        if s.len() != 64 {
            return Err(format!("a hash has 64 hex digits, `{s}` has {}", s.len()));
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| format!("bad hash `{s}`: {e}"))?;
        }
        Ok(Hash(out))
    }
}

/// A length-prefixed canonical encoder feeding a blake3 hasher.
pub struct Canon {
    hasher: blake3::Hasher,
}

impl Canon {
    pub fn new(domain: &str) -> Canon {
        let mut c = Canon { hasher: blake3::Hasher::new() };
        c.bytes(domain.as_bytes());
        c
    }
    /// Write `len ‖ bytes`.
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.hasher.update(&(bytes.len() as u64).to_le_bytes());
        self.hasher.update(bytes);
        self
    }
    /// Write raw bytes with no prefix (for fixed-width data after a length was written).
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.hasher.update(bytes);
        self
    }
    pub fn u64(&mut self, x: u64) -> &mut Self {
        self.hasher.update(&x.to_le_bytes());
        self
    }
    /// Write a named field: `name` then `value`, each length-prefixed.
    pub fn field(&mut self, name: &str, value: &[u8]) -> &mut Self {
        self.bytes(name.as_bytes());
        self.bytes(value)
    }
    pub fn finish(&self) -> Hash {
        Hash(*self.hasher.finalize().as_bytes())
    }
}

/// Exactly the inputs of a stage key (see the module table). Stored expanded in
/// each record, and read back only to explain why a key changed.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyInputs {
    pub kind: String,
    pub method: String,
    pub version: u32,
    pub params: Params,
    pub seed: u64,
    /// input name → content hash of the output it refers to.
    pub inputs: BTreeMap<String, Hash>,
    /// What a command stage declares beyond the fields above
    /// ([`crate::engine::stage::Stage::definition`]); `None` for built-in
    /// stages, whose keys it leaves as they were.
    pub definition: Option<Value>,
}

impl KeyInputs {
    /// The stage key.
    pub fn key(&self) -> Hash {
        let mut c = Canon::new("scoreflow/stage-key/v1");
        c.field("kind", self.kind.as_bytes());
        c.field("method", self.method.as_bytes());
        c.field("version", &self.version.to_le_bytes());
        let mut params = Vec::new();
        encode_params(&self.params, &mut params);
        c.field("params", &params);
        c.field("seed", &self.seed.to_le_bytes());
        let mut inputs = Vec::new();
        inputs.extend_from_slice(&(self.inputs.len() as u64).to_le_bytes());
        for (name, hash) in &self.inputs {
            inputs.extend_from_slice(&(name.len() as u64).to_le_bytes());
            inputs.extend_from_slice(name.as_bytes());
            inputs.extend_from_slice(&hash.0);
        }
        c.field("inputs", &inputs);
        if let Some(def) = &self.definition {
            let mut bytes = Vec::new();
            def.encode(&mut bytes);
            c.field("definition", &bytes);
        }
        c.finish()
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::json!({
            "kind": self.kind,
            "method": self.method,
            "version": self.version,
            "params": params_to_json(&self.params),
            "seed": self.seed,
            "inputs": self.inputs.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.hex()))).collect::<serde_json::Map<_, _>>(),
        });
        if let Some(def) = &self.definition {
            json["definition"] = def.to_json();
        }
        json
    }

    pub fn from_json(json: &serde_json::Value) -> Option<KeyInputs> {
        let params = match Value::from_json(json.get("params")?)? {
            Value::Map(m) => m,
            _ => return None,
        };
        let inputs = json
            .get("inputs")?
            .as_object()?
            .iter()
            .map(|(k, v)| Some((k.clone(), v.as_str()?.parse().ok()?)))
            .collect::<Option<_>>()?;
        Some(KeyInputs {
            kind: json.get("kind")?.as_str()?.to_string(),
            method: json.get("method")?.as_str()?.to_string(),
            version: u32::try_from(json.get("version")?.as_u64()?).ok()?,
            params,
            seed: json.get("seed")?.as_u64()?,
            inputs,
            definition: match json.get("definition") {
                None => None,
                Some(d) => Some(Value::from_json(d)?),
            },
        })
    }
}

/// Content hash of an opaque blob (model weights).
pub fn blob_hash(bytes: &[u8]) -> Hash {
    let mut c = Canon::new("scoreflow/blob/v1");
    c.bytes(bytes);
    c.finish()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A stage's key inputs, for tests here and in the executor.
    pub(crate) fn sample() -> KeyInputs {
        KeyInputs {
            kind: "generate".into(),
            method: "triangles".into(),
            version: 1,
            params: [("n_samples".to_string(), Value::Int(4096))].into_iter().collect(),
            seed: 42,
            inputs: BTreeMap::new(),
            definition: None,
        }
    }

    #[test]
    fn every_field_changes_the_key() {
        let base = sample().key();
        let mut k = sample();
        k.kind = "label".into();
        assert_ne!(k.key(), base);
        let mut k = sample();
        k.version = 2;
        assert_ne!(k.key(), base);
        let mut k = sample();
        k.seed = 43;
        assert_ne!(k.key(), base);
        let mut k = sample();
        k.params.insert("n_samples".into(), Value::Int(4095));
        assert_ne!(k.key(), base);
        let mut k = sample();
        k.inputs.insert("data".into(), Hash::of(b"x"));
        assert_ne!(k.key(), base);
        let mut k = sample();
        k.definition = Some(Value::Map(BTreeMap::new()));
        assert_ne!(k.key(), base);
    }

    #[test]
    fn json_round_trip() {
        let mut k = sample();
        k.inputs.insert("data".into(), Hash::of(b"x"));
        assert_eq!(KeyInputs::from_json(&k.to_json()).unwrap(), k);
        k.definition = Some(Value::Map([("run".to_string(), Value::List(vec![Value::Str("x".into())]))].into()));
        assert_eq!(KeyInputs::from_json(&k.to_json()).unwrap(), k);
    }

    proptest! {
        /// Length prefixes make the encoding injective: moving a character from one
        /// string field to its neighbour always changes the key.
        #[test]
        fn field_boundaries_matter(a in "[a-z]{0,6}", b in "[a-z]{1,6}") {
            let mut k1 = sample();
            k1.kind = a.clone();
            k1.method = b.clone();
            let mut k2 = sample();
            k2.kind = format!("{a}{}", &b[..1]);
            k2.method = b[1..].to_string();
            prop_assert_ne!(k1.key(), k2.key());
        }

        #[test]
        fn hash_hex_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let h = Hash::of(&bytes);
            prop_assert_eq!(h.hex().parse::<Hash>().unwrap(), h);
        }
    }
}
