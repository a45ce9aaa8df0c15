//! `scoreflow export`: Write a cached output to a file (Parquet, CSV, safetensors, bytes).

use super::prelude::*;

pub(super) fn run(cli: &Cli, overrides: &[spec::Override], args: &ExportArgs) -> Result<ExitCode, Error> {
    let ExportArgs { target, pipeline, output, force } = args;
    // Never through a link (`latest/` points into the object store),
    // never over a file unless asked.
    if let Ok(meta) = std::fs::symlink_metadata(output) {
        if meta.file_type().is_symlink() {
            return Err(Error::BadInput(format!(
                "{} is a symbolic link; export writes files, never through a link (remove it, or choose another path)",
                output.display()
            )));
        }
        if !force {
            return Err(Error::BadInput(format!("{} exists; add --force to replace it", output.display())));
        }
    }
    let r = resolve_output(&cli.artifacts, target, pipeline.as_deref(), overrides)?;
    if let Some(w) = &r.warning {
        return Err(Error::Fault(format!("{w}; not exported")));
    }
    let bytes = std::fs::read(&r.path).map_err(|e| Error::BadInput(format!("{}: {e}", r.path.display())))?;
    let ext = output.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    let written = match (r.format, ext.as_str()) {
        (crate::engine::stage::Format::Table, "csv") => {
            let (table, _) =
                crate::engine::frame::Table::from_parquet(bytes).map_err(|e| Error::Fault(e.to_string()))?;
            crate::export::table_to_csv(&table).map_err(Error::Fault)?
        }
        (crate::engine::stage::Format::Table, "parquet") => bytes,
        (crate::engine::stage::Format::Table, other) => {
            return Err(Error::BadInput(format!(
                "{} is a table: export it as .parquet or .csv, not .{other}",
                r.label
            )));
        }
        (crate::engine::stage::Format::Blob, "safetensors") => {
            crate::export::to_safetensors(&bytes).map_err(|e| Error::BadInput(format!("{}: {e}", r.label)))?
        }
        (crate::engine::stage::Format::Blob, ext) => {
            refuse_blob_extension(&r, ext)?;
            bytes
        }
    };
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::Fault(format!("create {}: {e}", dir.display())))?;
    }
    std::fs::write(output, &written).map_err(|e| Error::Fault(format!("write {}: {e}", output.display())))?;
    out(&format!("{} → {} ({})\n", r.label, output.display(), human_bytes(written.len() as u64)));
    Ok(ExitCode::SUCCESS)
}
