//! Table files from outside scoreflow: what a spec may bind to a table input
//! (`inputs: { samples: { file: my_samples.parquet } }`) and what a command
//! stage may write as a table output.
//!
//! | extension              | reader                                                   |
//! |------------------------|----------------------------------------------------------|
//! | `.parquet`, `.pq`      | Parquet, any codec (zstd from polars, snappy from pandas, gzip, lz4, brotli, none) |
//! | `.csv`                 | CSV with a header row; types inferred from every row     |
//! | `.ndjson`, `.jsonl`    | one JSON object per line; types inferred from every line |
//! | `.arrow`, `.feather`, `.ipc` | Arrow IPC, file or stream format                   |
//! | `.npy`                 | one array, 1-D (one column) or 2-D (one column per column of the array) |
//! | `.npz`                 | 1-D arrays of one length, each a column named by its key; or a single array as `.npy` |
//!
//! Whatever the file, the result is a [`Table`] of scoreflow's five column types
//! (f64, f32, i64, bool, str): narrower integers widen to i64, half floats to
//! f32, large, view and dictionary strings become strings. What cannot be read
//! as such — a null, a NaN, a nested column, a ragged array — is an error that
//! names the column, never a silent conversion. The table is keyed by its
//! logical content ([`Table::content_hash`]), so the same samples saved with
//! another codec or by another library keep the key.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::engine::frame::{ColumnData, Table};

/// The extensions [`read`] knows, for messages.
pub const EXTENSIONS: &[&str] = &["parquet", "pq", "csv", "ndjson", "jsonl", "arrow", "feather", "ipc", "npy", "npz"];

/// The lower-cased extension of `path`, if [`read`] knows it.
pub fn table_extension(path: &str) -> Option<String> {
    let ext = std::path::Path::new(path).extension()?.to_str()?.to_ascii_lowercase();
    EXTENSIONS.contains(&ext.as_str()).then_some(ext)
}

/// Read a table file's bytes by its extension. `columns` names the columns of
/// a bare array (`.npy`, or an `.npz` holding one 2-D array): one name per
/// column; `None` names them `x0`, `x1`, …
pub fn read(bytes: &[u8], ext: &str, columns: Option<&[String]>) -> Result<Table, String> {
    let table = match ext {
        "parquet" | "pq" => read_parquet(bytes),
        "csv" => read_csv(bytes),
        "ndjson" | "jsonl" => read_ndjson(bytes),
        "arrow" | "feather" | "ipc" => read_ipc(bytes),
        "npy" => return finish(npy_table(bytes, columns)?),
        "npz" => return finish(npz_table(bytes, columns)?),
        other => Err(format!("`.{other}` is not a table format scoreflow reads; it reads {}", EXTENSIONS.join(", "))),
    }?;
    if columns.is_some() {
        return Err("`columns` names the columns of a bare array (.npy, .npz); this file names its own".into());
    }
    finish(table)
}

/// Refuse NaN: a table with one is a bug upstream, not data.
fn finish(t: Table) -> Result<Table, String> {
    for c in &t.columns {
        let row = match &c.data {
            ColumnData::F64(v) => v.iter().position(|x| x.is_nan()),
            ColumnData::F32(v) => v.iter().position(|x| x.is_nan()),
            _ => None,
        };
        if let Some(row) = row {
            return Err(format!("column `{}` holds NaN (first at row {row}); scoreflow tables hold numbers", c.name));
        }
    }
    Ok(t)
}

fn read_parquet(bytes: &[u8]) -> Result<Table, String> {
    let (t, _) = Table::from_parquet(bytes.to_vec()).map_err(|e| e.to_string())?;
    Ok(t)
}

fn batches_to_table(schema: &Schema, batches: &[RecordBatch]) -> Result<Table, String> {
    Table::from_record_batches(schema, batches).map_err(|e| e.to_string())
}

fn read_csv(bytes: &[u8]) -> Result<Table, String> {
    use arrow::csv::reader::{Format, ReaderBuilder};
    let format = Format::default().with_header(true);
    let (schema, _) = format.infer_schema(Cursor::new(bytes), None).map_err(|e| format!("not a readable CSV: {e}"))?;
    let schema: SchemaRef = Arc::new(schema);
    let reader = ReaderBuilder::new(schema.clone())
        .with_format(format)
        .build(Cursor::new(bytes))
        .map_err(|e| format!("not a readable CSV: {e}"))?;
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| format!("not a readable CSV: {e}"))?;
    batches_to_table(&schema, &batches)
}

fn read_ndjson(bytes: &[u8]) -> Result<Table, String> {
    use arrow::json::reader::{ReaderBuilder, infer_json_schema_from_seekable};
    let (schema, _) =
        infer_json_schema_from_seekable(Cursor::new(bytes), None).map_err(|e| format!("not readable NDJSON: {e}"))?;
    let schema: SchemaRef = Arc::new(schema);
    let reader = ReaderBuilder::new(schema.clone())
        .build(Cursor::new(bytes))
        .map_err(|e| format!("not readable NDJSON: {e}"))?;
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| format!("not readable NDJSON: {e}"))?;
    batches_to_table(&schema, &batches)
}

fn read_ipc(bytes: &[u8]) -> Result<Table, String> {
    use arrow::ipc::reader::{FileReader, StreamReader};
    // The file format starts with the magic `ARROW1`; anything else is tried as a stream.
    if bytes.starts_with(b"ARROW1") {
        let reader =
            FileReader::try_new(Cursor::new(bytes), None).map_err(|e| format!("not a readable Arrow file: {e}"))?;
        let schema = reader.schema();
        let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| format!("not a readable Arrow file: {e}"))?;
        return batches_to_table(&schema, &batches);
    }
    let reader =
        StreamReader::try_new(Cursor::new(bytes), None).map_err(|e| format!("not a readable Arrow file: {e}"))?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| format!("not a readable Arrow stream: {e}"))?;
    batches_to_table(&schema, &batches)
}

/// One array's values as column vectors (row-major in the result whatever the
/// file's order), with its shape.
fn npy_columns<R: std::io::Read>(npy: npyz::NpyFile<R>, what: &str) -> Result<(Vec<ColumnData>, usize), String> {
    let shape = npy.shape().to_vec();
    let fortran = npy.order() == npyz::Order::Fortran;
    let (rows, cols) = match shape.as_slice() {
        [n] => (*n as usize, 1usize),
        [n, d] => (*n as usize, *d as usize),
        other => return Err(format!("{what} has shape {other:?}; a table is a 1-D or 2-D array")),
    };
    let descr = npy.dtype().descr();
    let kind = descr.trim_matches('\'').trim_start_matches(['<', '>', '|', '=']).to_string();
    let bad = |e: std::io::Error| format!("{what}: {e}");
    // Element (i, j) of the flat data: row-major unless the file says Fortran.
    let at = |i: usize, j: usize| if fortran { j * rows + i } else { i * cols + j };
    macro_rules! split {
        ($v:expr, $variant:ident, $map:expr) => {{
            let v = $v;
            (0..cols).map(|j| ColumnData::$variant((0..rows).map(|i| $map(v[at(i, j)])).collect())).collect()
        }};
    }
    let columns: Vec<ColumnData> = match kind.as_str() {
        "f8" => split!(npy.into_vec::<f64>().map_err(bad)?, F64, |x| x),
        "f4" => split!(npy.into_vec::<f32>().map_err(bad)?, F32, |x| x),
        "i8" => split!(npy.into_vec::<i64>().map_err(bad)?, I64, |x| x),
        "i4" => split!(npy.into_vec::<i32>().map_err(bad)?, I64, i64::from),
        "i2" => split!(npy.into_vec::<i16>().map_err(bad)?, I64, i64::from),
        "i1" => split!(npy.into_vec::<i8>().map_err(bad)?, I64, i64::from),
        "u4" => split!(npy.into_vec::<u32>().map_err(bad)?, I64, i64::from),
        "u2" => split!(npy.into_vec::<u16>().map_err(bad)?, I64, i64::from),
        "u1" => split!(npy.into_vec::<u8>().map_err(bad)?, I64, i64::from),
        "b1" => split!(npy.into_vec::<bool>().map_err(bad)?, Bool, |x| x),
        _ => return Err(format!("{what} has dtype `{descr}`; scoreflow reads float, integer and bool arrays")),
    };
    Ok((columns, rows))
}

fn named(columns: Vec<ColumnData>, names: Option<&[String]>, what: &str) -> Result<Table, String> {
    let names: Vec<String> = match names {
        Some(n) if n.len() != columns.len() => {
            return Err(format!("{what} has {} columns but `columns` names {}", columns.len(), n.len()));
        }
        Some(n) => n.to_vec(),
        None => (0..columns.len()).map(|j| format!("x{j}")).collect(),
    };
    let mut t = Table::new();
    for (name, data) in names.into_iter().zip(columns) {
        if t.columns.iter().any(|c| c.name == name) {
            return Err(format!("`columns` names `{name}` twice"));
        }
        t.columns.push(crate::engine::frame::Column { name, data });
    }
    Ok(t)
}

fn npy_table(bytes: &[u8], names: Option<&[String]>) -> Result<Table, String> {
    let npy = npyz::NpyFile::new(bytes).map_err(|e| format!("not a readable .npy file: {e}"))?;
    let (columns, _) = npy_columns(npy, "the array")?;
    named(columns, names, "the array")
}

fn npz_table(bytes: &[u8], names: Option<&[String]>) -> Result<Table, String> {
    let mut npz =
        npyz::npz::NpzArchive::new(Cursor::new(bytes)).map_err(|e| format!("not a readable .npz file: {e}"))?;
    let mut keys: Vec<String> = npz.array_names().map(str::to_string).collect();
    if keys.is_empty() {
        return Err("the .npz file holds no array".into());
    }
    let mut read = |key: &str| -> Result<(Vec<ColumnData>, usize), String> {
        let what = format!("array `{key}`");
        let npy = npz.by_name(key).map_err(|e| format!("{what}: {e}"))?.ok_or_else(|| format!("{what} is missing"))?;
        npy_columns(npy, &what)
    };
    if keys.len() == 1 {
        let (columns, _) = read(&keys[0])?;
        return named(columns, names, &format!("array `{}`", keys[0]));
    }
    if names.is_some() {
        return Err(
            "`columns` names the columns of one array; this .npz holds several, each a column named by its key".into(),
        );
    }
    // Archive order is the writer's; sort for a canonical table.
    keys.sort();
    let mut t = Table::new();
    let mut length = None;
    for key in &keys {
        let (mut columns, rows) = read(key)?;
        if columns.len() != 1 {
            return Err(format!("array `{key}` is 2-D; an .npz of several arrays needs 1-D arrays, one per column"));
        }
        if *length.get_or_insert(rows) != rows {
            return Err(format!("array `{key}` has {rows} values, the others {}", length.unwrap_or(0)));
        }
        t.columns.push(crate::engine::frame::Column { name: key.clone(), data: columns.remove(0) });
    }
    Ok(t)
}

/// Cast a column of any type scoreflow can hold without loss to one of its
/// five: the rule [`Table::from_record_batches`] applies to every table it reads.
/// The error says why not, for a message that names the column.
pub fn normalise(field: &Field, array: &ArrayRef) -> Result<ArrayRef, String> {
    let target = match field.data_type() {
        DataType::Float64 | DataType::Float32 | DataType::Int64 | DataType::Boolean | DataType::Utf8 => {
            return Ok(array.clone());
        }
        DataType::Float16 => DataType::Float32,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => {
            DataType::Int64
        }
        DataType::UInt64 => {
            let a = array.as_any().downcast_ref::<arrow::array::UInt64Array>().expect("typed");
            if a.iter().flatten().any(|x| x > i64::MAX as u64) {
                return Err("holds unsigned integers beyond i64".into());
            }
            DataType::Int64
        }
        DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::Dictionary(_, v) if matches!(**v, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => {
            DataType::Utf8
        }
        other => return Err(format!("has type {other}, which scoreflow tables do not hold")),
    };
    arrow::compute::cast(array, &target).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy_bytes(descr: &str, shape: &[u64], data: &[u8], fortran: bool) -> Vec<u8> {
        let shape = shape.iter().map(|s| format!("{s},")).collect::<String>();
        let header = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': ({shape}), }}",
            if fortran { "True" } else { "False" }
        );
        let mut h = header.into_bytes();
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out
    }

    fn f64s(v: &[f64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn a_2d_npy_array_is_one_column_per_column_in_either_order() {
        let c = npy_bytes("<f8", &[3, 2], &f64s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), false);
        let names = vec!["x".to_string(), "y".to_string()];
        let t = read(&c, "npy", Some(&names)).unwrap();
        assert_eq!(t.f64s("x").unwrap(), vec![1.0, 3.0, 5.0]);
        assert_eq!(t.f64s("y").unwrap(), vec![2.0, 4.0, 6.0]);
        // The same matrix stored column-major.
        let f = npy_bytes("<f8", &[3, 2], &f64s(&[1.0, 3.0, 5.0, 2.0, 4.0, 6.0]), true);
        assert_eq!(read(&f, "npy", Some(&names)).unwrap(), t);
        let unnamed = read(&c, "npy", None).unwrap();
        assert_eq!(unnamed.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["x0", "x1"]);
        let e = read(&c, "npy", Some(&names[..1])).unwrap_err();
        assert!(e.contains("has 2 columns but `columns` names 1"), "{e}");
    }

    #[test]
    fn nan_and_nested_shapes_and_unknown_formats_are_errors() {
        let c = npy_bytes("<f8", &[2], &f64s(&[1.0, f64::NAN]), false);
        let e = read(&c, "npy", None).unwrap_err();
        assert!(e.contains("NaN (first at row 1)"), "{e}");
        let c = npy_bytes("<f8", &[1, 1, 1], &f64s(&[1.0]), false);
        assert!(read(&c, "npy", None).unwrap_err().contains("shape [1, 1, 1]"));
        assert!(read(b"a,b\n1,2\n", "xlsx", None).unwrap_err().contains("not a table format"));
        assert!(read(b"garbage", "parquet", None).is_err());
        assert!(read(b"garbage", "npy", None).is_err());
    }

    #[test]
    fn csv_and_ndjson_infer_types_from_every_row() {
        let t = read(b"x,n,s\n1.5,1,a\n2,2,b\n", "csv", None).unwrap();
        assert_eq!(t.f64s("x").unwrap(), vec![1.5, 2.0]);
        assert_eq!(t.i64s("n").unwrap(), &[1, 2]);
        assert_eq!(t.strs("s").unwrap(), &["a".to_string(), "b".to_string()]);
        let j = read(b"{\"x\": 1.5, \"n\": 1, \"s\": \"a\"}\n{\"x\": 2.0, \"n\": 2, \"s\": \"b\"}\n", "ndjson", None)
            .unwrap();
        assert_eq!(j, t);
        let e = read(b"x,y\n1,\n2,3\n", "csv", None).unwrap_err();
        assert!(e.contains("nulls"), "{e}");
    }

    #[test]
    fn parquet_of_every_codec_and_arrow_ipc_read_the_same_table() {
        use parquet::arrow::ArrowWriter;
        use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
        use parquet::file::properties::WriterProperties;
        let t = Table::new()
            .with("x", ColumnData::F64(vec![0.5, -1.0, 2.25]))
            .with("k", ColumnData::I64(vec![1, 2, 3]))
            .with("s", ColumnData::Str(vec!["a".into(), "b".into(), "c".into()]));
        let batch = t.to_record_batch().unwrap();
        for codec in [
            Compression::UNCOMPRESSED,
            Compression::SNAPPY,
            Compression::ZSTD(ZstdLevel::default()),
            Compression::LZ4_RAW,
            Compression::GZIP(GzipLevel::default()),
            Compression::BROTLI(BrotliLevel::default()),
        ] {
            let props = WriterProperties::builder().set_compression(codec).build();
            let mut buf = Vec::new();
            let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
            assert_eq!(read(&buf, "parquet", None).unwrap(), t, "{codec:?}");
        }
        let mut buf = Vec::new();
        let mut w = arrow::ipc::writer::FileWriter::try_new(&mut buf, &batch.schema()).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        drop(w);
        assert_eq!(read(&buf, "arrow", None).unwrap(), t);
    }

    #[test]
    fn narrow_and_view_types_widen_to_scoreflow_types() {
        use arrow::array::{Int32Array, StringViewArray};
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int32, false),
            Field::new("s", DataType::Utf8View, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int32Array::from(vec![7, 8])), Arc::new(StringViewArray::from(vec!["p", "q"]))],
        )
        .unwrap();
        let t = batches_to_table(&schema, &[batch]).unwrap();
        assert_eq!(t.i64s("i").unwrap(), &[7, 8]);
        assert_eq!(t.strs("s").unwrap(), &["p".to_string(), "q".to_string()]);
    }
}
