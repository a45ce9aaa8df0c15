//! Getting results out: what a blob is, tables as CSV, model weights as
//! safetensors.
//!
//! `scoreflow export STAGE[.OUTPUT] --pipeline FILE -o PATH` writes a cached
//! output where a user wants it, chosen by the extension of `PATH`:
//!
//! * tables: `.parquet` (the cached file as it is) or `.csv` (header row, one line
//!   per row, floats in their shortest round-trip form);
//! * blobs: any extension writes the cached bytes as they are; model weights also
//!   export as `.safetensors` ([`to_safetensors`]) so PyTorch users can load them.
//!
//! **safetensors layout.** Every model format a workload registers
//! ([`crate::model_formats`]: the score network, the two-moons ε-network,
//! DEM's MLP and EGNN, the colour autoencoder) names its layers; every
//! `Linear` becomes `<name>.weight` of shape `[out, in]` (PyTorch's layout:
//! scoreflow stores `[in, out]` and transposes) and `<name>.bias`, float32.
//! The two-moons ε-network with the origin's architecture carries the
//! origin's `ScoreNet` state-dict keys, so `load_state_dict` takes the file
//! as it is. The header's `__metadata__` holds the model's configuration as
//! JSON (`scoreflow.model`).

use std::collections::HashMap;

use safetensors::tensor::{Dtype, TensorView};

use crate::engine::frame::{ColumnData, Table};
use crate::numerics::nn::Layers;

/// What a cached blob holds, from its first bytes: a registered model
/// format ([`crate::model_formats`]) by its magic, else an image, a page, a
/// table.
pub fn blob_kind(bytes: &[u8]) -> &'static str {
    if let Some(f) = crate::numerics::nn::format::format_of(&crate::model_formats(), bytes) {
        return f.describe;
    }
    if bytes.starts_with(b"\x89PNG") {
        "PNG image"
    } else if bytes.starts_with(b"<!DOCTYPE") || bytes.starts_with(b"<html") {
        "HTML page"
    } else if bytes.starts_with(b"PAR1") {
        "Parquet table"
    } else {
        "binary data"
    }
}

/// A table as CSV: a header of column names, then one record per row.
pub fn table_to_csv(table: &Table) -> Result<Vec<u8>, String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(table.columns.iter().map(|c| c.name.as_str())).map_err(|e| e.to_string())?;
    for row in 0..table.num_rows() {
        let cells = table.columns.iter().map(|c| match &c.data {
            ColumnData::F64(v) => v[row].to_string(),
            ColumnData::F32(v) => v[row].to_string(),
            ColumnData::I64(v) => v[row].to_string(),
            ColumnData::Bool(v) => v[row].to_string(),
            ColumnData::Str(v) => v[row].clone(),
        });
        w.write_record(cells).map_err(|e| e.to_string())?;
    }
    w.into_inner().map_err(|e| e.to_string())
}

/// Named `[out, in]` weights and `[out]` biases of a list of layers.
fn push_layers(out: &mut Vec<(String, Vec<usize>, Vec<u8>)>, names: &[String], layers: &Layers) {
    for (name, (w, b, input, output)) in names.iter().zip(layers) {
        let mut t = Vec::with_capacity(w.len() * 4);
        for o in 0..*output {
            for i in 0..*input {
                t.extend_from_slice(&w[i * output + o].to_le_bytes());
            }
        }
        out.push((format!("{name}.weight"), vec![*output, *input], t));
        out.push((format!("{name}.bias"), vec![*output], b.iter().flat_map(|v| v.to_le_bytes()).collect()));
    }
}

/// Model weights of any registered format as a safetensors file; see the
/// module docs.
pub fn to_safetensors(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let formats = crate::model_formats();
    let Some(format) = crate::numerics::nn::format::format_of(&formats, bytes) else {
        return Err(format!("a {} is not model weights", blob_kind(bytes)));
    };
    let named = (format.layers)(bytes)?;
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (names, layers) in &named.groups {
        push_layers(&mut tensors, names, layers);
    }
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, shape, data)| {
            Ok((n.clone(), TensorView::new(Dtype::F32, shape.clone(), data).map_err(|e| e.to_string())?))
        })
        .collect::<Result<_, String>>()?;
    let info = HashMap::from([("scoreflow.model".to_string(), named.config.to_string())]);
    safetensors::tensor::serialize(views, Some(info)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_a_header_and_one_line_per_row() {
        let t = Table::new()
            .with("a", ColumnData::F32(vec![0.5, 1.25]))
            .with("kind", ColumnData::Str(vec!["x,y".into(), "z".into()]))
            .with("n", ColumnData::I64(vec![3, -4]));
        let text = String::from_utf8(table_to_csv(&t).unwrap()).unwrap();
        assert_eq!(text, "a,kind,n\n0.5,\"x,y\",3\n1.25,z,-4\n");
    }
}
