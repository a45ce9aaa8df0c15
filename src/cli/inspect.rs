//! `scoreflow inspect`: Show an artifact: a stage's output or a Parquet file.

use super::prelude::*;

pub(super) fn run(cli: &Cli, overrides: &[spec::Override], args: &InspectArgs) -> Result<ExitCode, Error> {
    let InspectArgs { target, pipeline, head, sql, json } = args;
    // polars prints at most 10 rows unless told otherwise; show all `-n`.
    // SAFETY: set before anything in this process has used polars or
    // started a thread that could read the environment concurrently.
    unsafe { std::env::set_var("POLARS_FMT_MAX_ROWS", head.to_string()) };
    let opts = InspectOptions { head: *head, sql: sql.clone(), json: *json };
    let r = resolve_output(&cli.artifacts, target, pipeline.as_deref(), overrides)?;
    if let Some(w) = &r.warning {
        eprintln!("warning: {w}");
    }
    if r.format == crate::engine::stage::Format::Blob {
        let bytes = std::fs::read(&r.path).map_err(|e| Error::BadInput(format!("{}: {e}", r.path.display())))?;
        let kind = crate::export::blob_kind(&bytes);
        if *json {
            let v = serde_json::json!({"target": r.label, "kind": kind, "bytes": bytes.len(), "path": r.path.display().to_string()});
            out(&(v.to_string() + "\n"));
        } else {
            out(&format!(
                "{}: {kind}, {} at {}\nscoreflow export {} -o FILE{} writes it out{}\n",
                r.label,
                human_bytes(bytes.len() as u64),
                r.path.display(),
                target,
                pipeline.as_ref().map(|p| format!(" --pipeline {}", p.display())).unwrap_or_default(),
                if kind.starts_with("model") { " (FILE.safetensors for PyTorch)" } else { "" }
            ));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let metadata = std::fs::read(&r.path)
        .ok()
        .and_then(|b| crate::engine::frame::Table::from_parquet(b).ok())
        .map(|(_, m)| m)
        .unwrap_or_default();
    out(&crate::inspect::render(&r.path, &metadata, &opts)?);
    Ok(ExitCode::SUCCESS)
}
