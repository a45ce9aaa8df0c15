//! `scoreflow inspect`: look inside an artifact from the command line.
//!
//! Tables are read with polars (the same reader a researcher would use from
//! Python), and shown as schema, row count, head and a describe table (count,
//! nulls, mean, std, min, quartiles, max of every numeric column). `--sql` runs a
//! polars SQL query with the table registered as `t` (a column named `t` does not
//! clash: `SELECT t FROM t` selects the column, `t.t` qualifies it). Objects in the cache are
//! also verified against their content hash; a mismatch is reported as a warning.

use std::fmt::Write as _;
use std::path::Path;

use polars::prelude::*;
use polars::sql::SQLContext;

/// Errors from `inspect`.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: std::io::Error },
    #[error("polars could not read {path}: {source}")]
    Polars { path: String, source: PolarsError },
    #[error("{0}")]
    Query(String),
}

/// What to show.
#[derive(Debug, Clone)]
pub struct InspectOptions {
    pub head: usize,
    pub sql: Option<String>,
    pub json: bool,
}

/// A named summary statistic of a column expression.
type Stat = (&'static str, fn(Expr) -> Expr);

fn describe(df: &DataFrame) -> PolarsResult<DataFrame> {
    let numeric: Vec<String> =
        df.columns().iter().filter(|c| c.dtype().is_primitive_numeric()).map(|c| c.name().to_string()).collect();
    let stats: [Stat; 9] = [
        ("count", |e| e.count().cast(DataType::Float64)),
        ("null_count", |e| e.null_count().cast(DataType::Float64)),
        ("mean", |e| e.cast(DataType::Float64).mean()),
        ("std", |e| e.cast(DataType::Float64).std(1)),
        ("min", |e| e.cast(DataType::Float64).min()),
        ("25%", |e| e.cast(DataType::Float64).quantile(lit(0.25), QuantileMethod::Linear)),
        ("50%", |e| e.cast(DataType::Float64).quantile(lit(0.5), QuantileMethod::Linear)),
        ("75%", |e| e.cast(DataType::Float64).quantile(lit(0.75), QuantileMethod::Linear)),
        ("max", |e| e.cast(DataType::Float64).max()),
    ];
    let mut rows = Vec::new();
    for (name, f) in stats {
        let exprs: Vec<Expr> = numeric.iter().map(|c| f(col(c.as_str())).alias(c.as_str())).collect();
        let row = df.clone().lazy().select(exprs).collect()?;
        let label = DataFrame::new_infer_height(vec![Column::new("statistic".into(), [name])])?;
        rows.push(label.hstack(row.columns())?);
    }
    let mut out = rows.remove(0);
    for r in rows {
        out.vstack_mut(&r)?;
    }
    Ok(out)
}

fn any_to_json(v: AnyValue) -> serde_json::Value {
    match v {
        AnyValue::Null => serde_json::Value::Null,
        AnyValue::Boolean(b) => b.into(),
        AnyValue::String(s) => s.into(),
        AnyValue::StringOwned(s) => s.as_str().into(),
        AnyValue::Int64(i) => i.into(),
        AnyValue::Int32(i) => i.into(),
        AnyValue::UInt32(i) => i.into(),
        AnyValue::UInt64(i) => i.into(),
        AnyValue::Float64(f) => serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into),
        AnyValue::Float32(f) => serde_json::Number::from_f64(f as f64).map_or(serde_json::Value::Null, Into::into),
        other => other.to_string().into(),
    }
}

fn rows_json(df: &DataFrame) -> serde_json::Value {
    let mut rows = Vec::new();
    for i in 0..df.height() {
        let mut obj = serde_json::Map::new();
        for c in df.columns() {
            obj.insert(c.name().to_string(), c.get(i).map(any_to_json).unwrap_or(serde_json::Value::Null));
        }
        rows.push(serde_json::Value::Object(obj));
    }
    serde_json::Value::Array(rows)
}

/// Render a Parquet file. `metadata` is its key-value metadata (read separately
/// so that scoreflow's own keys can be shown first), `warning` a verification note.
pub fn render(path: &Path, metadata: &[(String, String)], opts: &InspectOptions) -> Result<String, InspectError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| InspectError::Open { path: shown.clone(), source })?;
    let df =
        ParquetReader::new(file).finish().map_err(|source| InspectError::Polars { path: shown.clone(), source })?;
    let df = match &opts.sql {
        None => df,
        Some(q) => {
            let mut ctx = SQLContext::new();
            ctx.register("t", df.lazy());
            ctx.execute(q)
                .and_then(|lf| lf.collect())
                .map_err(|e| InspectError::Query(format!("SQL query failed: {e}")))?
        }
    };
    let head = df.head(Some(opts.head));
    let desc = describe(&df).map_err(|e| InspectError::Query(format!("describe failed: {e}")))?;
    if opts.json {
        let value = serde_json::json!({
            "path": shown,
            "rows": df.height(),
            "schema": df.columns().iter().map(|c| serde_json::json!({"name": c.name().as_str(), "dtype": c.dtype().to_string()})).collect::<Vec<_>>(),
            "metadata": metadata.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "head": rows_json(&head),
            "describe": rows_json(&desc),
        });
        return Ok(serde_json::to_string_pretty(&value).expect("json") + "\n");
    }
    let mut out = String::new();
    let _ = writeln!(out, "file: {shown}");
    for (k, v) in metadata {
        let _ = writeln!(out, "{k}: {v}");
    }
    let _ = writeln!(out, "rows: {}", df.height());
    let _ = writeln!(out, "schema:");
    for c in df.columns() {
        let _ = writeln!(out, "  {}: {}", c.name(), c.dtype());
    }
    let _ = writeln!(out, "\nhead({}):\n{head}", opts.head);
    let _ = writeln!(out, "\ndescribe:\n{desc}");
    Ok(out)
}
