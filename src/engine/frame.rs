//! In-memory tables and their Parquet form.
//!
//! Stages compute on plain column vectors ([`Table`]); this module converts them to
//! Arrow record batches and writes Parquet with arrow-rs, so every output opens in
//! polars, pandas or DuckDB as it is. Files carry key-value metadata (stage kind,
//! key, params as JSON, content hash) so that they explain themselves.
//!
//! A table's **content hash** is computed from its logical content — column names,
//! logical types and values in row order — never from the Parquet bytes, so the
//! hash does not depend on compression, page sizes or the writer's version. Floats
//! are hashed by their bit patterns (determinism means bit-identical values).
//!
//! Writing is deterministic: fixed writer properties, a fixed `created_by`, metadata
//! in a fixed order, no timestamps.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Float32Array, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::engine::hash::{Canon, Hash};

/// The values of one column.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    F64(Vec<f64>),
    F32(Vec<f32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
    Str(Vec<String>),
}

impl ColumnData {
    pub fn len(&self) -> usize {
        match self {
            ColumnData::F64(v) => v.len(),
            ColumnData::F32(v) => v.len(),
            ColumnData::I64(v) => v.len(),
            ColumnData::Bool(v) => v.len(),
            ColumnData::Str(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn type_name(&self) -> &'static str {
        match self {
            ColumnData::F64(_) => "f64",
            ColumnData::F32(_) => "f32",
            ColumnData::I64(_) => "i64",
            ColumnData::Bool(_) => "bool",
            ColumnData::Str(_) => "str",
        }
    }
}

/// A named column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub data: ColumnData,
}

/// Errors reading or shaping tables.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("column `{0}` not found")]
    MissingColumn(String),
    #[error("column `{name}` has type {found}, expected {expected}")]
    ColumnType { name: String, expected: &'static str, found: String },
    #[error("column `{name}` has {found} rows, expected {expected}")]
    Length { name: String, expected: usize, found: usize },
    #[error("not a readable Parquet table: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("column `{name}`: {ty}")]
    Unsupported { name: String, ty: String },
    #[error("column `{0}` contains nulls; scoreflow tables have none")]
    Nulls(String),
}

/// A table of equally long, null-free columns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub columns: Vec<Column>,
}

impl Table {
    pub fn new() -> Table {
        Table::default()
    }

    /// Builder-style: append a column. Panics when its length disagrees with the
    /// table's (a stage bug, not a user error).
    pub fn with(mut self, name: &str, data: ColumnData) -> Table {
        if let Some(first) = self.columns.first() {
            assert_eq!(first.data.len(), data.len(), "column `{name}` length differs from `{}`", first.name);
        }
        self.columns.push(Column { name: name.to_string(), data });
        self
    }

    pub fn num_rows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.data.len())
    }

    pub fn column(&self, name: &str) -> Result<&ColumnData, FrameError> {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .map(|c| &c.data)
            .ok_or_else(|| FrameError::MissingColumn(name.to_string()))
    }

    /// A float column as f64 (f32 columns are widened exactly).
    pub fn f64s(&self, name: &str) -> Result<Vec<f64>, FrameError> {
        match self.column(name)? {
            ColumnData::F64(v) => Ok(v.clone()),
            ColumnData::F32(v) => Ok(v.iter().map(|x| *x as f64).collect()),
            other => {
                Err(FrameError::ColumnType { name: name.into(), expected: "float", found: other.type_name().into() })
            }
        }
    }

    /// Names of the float (f64 or f32) columns, in table order.
    pub fn float_columns(&self) -> Vec<String> {
        self.columns
            .iter()
            .filter(|c| matches!(c.data, ColumnData::F64(_) | ColumnData::F32(_)))
            .map(|c| c.name.clone())
            .collect()
    }

    /// The named float columns as one row-major f64 matrix.
    pub fn rows_f64(&self, names: &[String]) -> Result<Vec<f64>, FrameError> {
        let cols = names.iter().map(|n| self.f64s(n)).collect::<Result<Vec<_>, _>>()?;
        let n = self.num_rows();
        Ok((0..n).flat_map(|i| cols.iter().map(move |c| c[i])).collect())
    }

    pub fn strs(&self, name: &str) -> Result<&[String], FrameError> {
        match self.column(name)? {
            ColumnData::Str(v) => Ok(v),
            other => {
                Err(FrameError::ColumnType { name: name.into(), expected: "str", found: other.type_name().into() })
            }
        }
    }

    pub fn bools(&self, name: &str) -> Result<&[bool], FrameError> {
        match self.column(name)? {
            ColumnData::Bool(v) => Ok(v),
            other => {
                Err(FrameError::ColumnType { name: name.into(), expected: "bool", found: other.type_name().into() })
            }
        }
    }

    pub fn i64s(&self, name: &str) -> Result<&[i64], FrameError> {
        match self.column(name)? {
            ColumnData::I64(v) => Ok(v),
            other => {
                Err(FrameError::ColumnType { name: name.into(), expected: "i64", found: other.type_name().into() })
            }
        }
    }

    /// Hash of the logical content: per column its name, logical type, row count and
    /// values (floats by bit pattern, strings length-prefixed).
    pub fn content_hash(&self) -> Hash {
        let mut c = Canon::new("scoreflow/table/v1");
        c.u64(self.columns.len() as u64);
        for col in &self.columns {
            c.bytes(col.name.as_bytes());
            c.bytes(col.data.type_name().as_bytes());
            c.u64(col.data.len() as u64);
            match &col.data {
                ColumnData::F64(v) => v.iter().for_each(|x| {
                    c.raw(&x.to_bits().to_le_bytes());
                }),
                ColumnData::F32(v) => v.iter().for_each(|x| {
                    c.raw(&x.to_bits().to_le_bytes());
                }),
                ColumnData::I64(v) => v.iter().for_each(|x| {
                    c.raw(&x.to_le_bytes());
                }),
                ColumnData::Bool(v) => v.iter().for_each(|x| {
                    c.raw(&[*x as u8]);
                }),
                ColumnData::Str(v) => v.iter().for_each(|s| {
                    c.bytes(s.as_bytes());
                }),
            }
        }
        c.finish()
    }

    pub fn to_record_batch(&self) -> Result<RecordBatch, FrameError> {
        let mut fields = Vec::with_capacity(self.columns.len());
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for col in &self.columns {
            let (ty, array): (DataType, ArrayRef) = match &col.data {
                ColumnData::F64(v) => (DataType::Float64, Arc::new(Float64Array::from(v.clone()))),
                ColumnData::F32(v) => (DataType::Float32, Arc::new(Float32Array::from(v.clone()))),
                ColumnData::I64(v) => (DataType::Int64, Arc::new(Int64Array::from(v.clone()))),
                ColumnData::Bool(v) => (DataType::Boolean, Arc::new(BooleanArray::from(v.clone()))),
                ColumnData::Str(v) => (DataType::Utf8, Arc::new(StringArray::from(v.clone()))),
            };
            fields.push(Field::new(&col.name, ty, false));
            arrays.push(array);
        }
        let schema = Arc::new(Schema::new(fields));
        if arrays.is_empty() {
            return Ok(RecordBatch::new_empty(schema));
        }
        Ok(RecordBatch::try_new(schema, arrays)?)
    }

    /// Concatenate record batches (as read from Parquet) into a table.
    pub fn from_record_batches(schema: &Schema, batches: &[RecordBatch]) -> Result<Table, FrameError> {
        let mut table = Table::new();
        for (i, field) in schema.fields().iter().enumerate() {
            let name = field.name().clone();
            // Types scoreflow holds without loss (i32, view strings, …) are
            // cast to its five; anything else is an error naming the column.
            let arrays = batches
                .iter()
                .map(|b| crate::engine::tables::normalise(field, b.column(i)))
                .collect::<Result<Vec<ArrayRef>, String>>()
                .map_err(|why| FrameError::Unsupported { name: name.clone(), ty: why })?;
            let arrays: Vec<&ArrayRef> = arrays.iter().collect();
            if arrays.iter().any(|a| a.null_count() > 0) {
                return Err(FrameError::Nulls(name));
            }
            macro_rules! collect {
                ($arr:ty, $variant:ident, $map:expr) => {{
                    let mut out = Vec::new();
                    for a in &arrays {
                        let a = a.as_any().downcast_ref::<$arr>().expect("type checked by schema");
                        out.extend(a.iter().map(|x| $map(x.expect("no nulls"))));
                    }
                    ColumnData::$variant(out)
                }};
            }
            let ty = arrays.first().map_or_else(|| field.data_type().clone(), |a| a.data_type().clone());
            let ty = match ty {
                DataType::Float16 => DataType::Float32,
                DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::UInt64 => DataType::Int64,
                DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..) => DataType::Utf8,
                t => t,
            };
            let data = match &ty {
                DataType::Float64 => collect!(Float64Array, F64, |x| x),
                DataType::Float32 => collect!(Float32Array, F32, |x| x),
                DataType::Int64 => collect!(Int64Array, I64, |x| x),
                DataType::Boolean => collect!(BooleanArray, Bool, |x| x),
                DataType::Utf8 => collect!(StringArray, Str, |x: &str| x.to_string()),
                other => {
                    return Err(FrameError::Unsupported { name, ty: format!("unsupported type {other}") });
                }
            };
            table.columns.push(Column { name, data });
        }
        Ok(table)
    }

    /// Serialise to Parquet bytes with the given key-value metadata (kept in order).
    pub fn to_parquet(&self, metadata: &[(String, String)]) -> Result<Vec<u8>, FrameError> {
        let batch = self.to_record_batch()?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("scoreflow {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(metadata.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect()))
            .build();
        let mut buf = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props))?;
        writer.write(&batch)?;
        writer.close()?;
        Ok(buf)
    }

    /// Parse Parquet bytes; returns the table and its key-value metadata.
    /// Bytes that make the decoder panic (some single-bit flips do) are an
    /// error like any other unreadable file, never a panic of the caller.
    pub fn from_parquet(bytes: Vec<u8>) -> Result<(Table, Vec<(String, String)>), FrameError> {
        std::panic::catch_unwind(|| Table::from_parquet_unguarded(bytes)).unwrap_or_else(|_| {
            Err(FrameError::Parquet(parquet::errors::ParquetError::General(
                "the Parquet decoder panicked on these bytes (corrupt)".into(),
            )))
        })
    }

    /// The key-value metadata of Parquet bytes, from the footer alone (no
    /// column is decoded); `None` for bytes that are not Parquet, or that make
    /// the footer's decoder panic.
    pub fn parquet_metadata(bytes: &[u8]) -> Option<Vec<(String, String)>> {
        let bytes = bytes::Bytes::copy_from_slice(bytes);
        std::panic::catch_unwind(|| {
            let meta = parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&bytes).ok()?;
            Some(
                meta.file_metadata()
                    .key_value_metadata()
                    .map(|kvs| kvs.iter().map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default())).collect())
                    .unwrap_or_default(),
            )
        })
        .ok()
        .flatten()
    }

    fn from_parquet_unguarded(bytes: Vec<u8>) -> Result<(Table, Vec<(String, String)>), FrameError> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))?;
        let metadata = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .map(|kvs| {
                kvs.iter()
                    .filter(|kv| !kv.key.starts_with("ARROW:"))
                    .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        let schema = builder.schema().clone();
        let reader = builder.build()?;
        let batches = reader.collect::<Result<Vec<_>, _>>()?;
        Ok((Table::from_record_batches(&schema, &batches)?, metadata))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        Table::new()
            .with("a", ColumnData::F64(vec![0.1, 0.2, 0.3]))
            .with("n", ColumnData::I64(vec![1, 2, 3]))
            .with("s", ColumnData::Str(vec!["x".into(), "y".into(), "".into()]))
            .with("b", ColumnData::Bool(vec![true, false, true]))
            .with("f", ColumnData::F32(vec![1.5, 2.5, 3.5]))
    }

    #[test]
    fn parquet_round_trip_preserves_content_and_metadata() {
        let t = sample();
        let meta = vec![("scoreflow.kind".to_string(), "generate".to_string())];
        let bytes = t.to_parquet(&meta).unwrap();
        let (back, meta_back) = Table::from_parquet(bytes).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.content_hash(), t.content_hash());
        assert_eq!(meta_back, meta);
    }

    #[test]
    fn writing_is_deterministic() {
        let t = sample();
        assert_eq!(t.to_parquet(&[]).unwrap(), t.to_parquet(&[]).unwrap());
    }

    #[test]
    fn content_hash_sees_names_types_and_values() {
        let base = sample().content_hash();
        let mut t = sample();
        t.columns[0].name = "z".into();
        assert_ne!(t.content_hash(), base);
        let mut t = sample();
        t.columns[1].data = ColumnData::F64(vec![1.0, 2.0, 3.0]);
        assert_ne!(t.content_hash(), base);
        let mut t = sample();
        if let ColumnData::F64(v) = &mut t.columns[0].data {
            v[2] = 0.30000000000000004;
        }
        assert_ne!(t.content_hash(), base);
        // Metadata is not content.
        let bytes = sample().to_parquet(&[("k".into(), "v".into())]).unwrap();
        assert_eq!(Table::from_parquet(bytes).unwrap().0.content_hash(), base);
    }

    /// Every single-bit flip of a table's file: an error or a table, never a
    /// panic (some flips make the decoder itself panic).
    #[test]
    fn no_bit_flip_makes_reading_panic() {
        let bytes = sample().to_parquet(&[("k".into(), "v".into())]).unwrap();
        for offset in 0..bytes.len() {
            for bit in [0u8, 5] {
                let mut b = bytes.clone();
                b[offset] ^= 1 << bit;
                let caught = std::panic::catch_unwind(|| Table::from_parquet(b));
                assert!(caught.is_ok(), "offset {offset} bit {bit} panicked");
            }
        }
    }

    #[test]
    fn truncated_parquet_is_an_error() {
        let bytes = sample().to_parquet(&[]).unwrap();
        let cut = bytes[..bytes.len() / 2].to_vec();
        assert!(Table::from_parquet(cut).is_err());
    }
}
