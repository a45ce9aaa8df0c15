//! `scoreflow gc`: Remove what no pipeline's latest run uses.

use super::prelude::*;

pub(super) fn run(cli: &Cli, args: &GcArgs) -> Result<ExitCode, Error> {
    let GcArgs { dry_run } = args;
    let cache = Cache::new(cli.artifacts.clone().unwrap_or_else(|| PathBuf::from("artifacts")));
    let r = cache.gc(*dry_run)?;
    let verb = if *dry_run { "would remove" } else { "removed" };
    let mut text: String = r.removed.iter().map(|line| format!("{verb} {line}\n")).collect();
    text.push_str(&format!(
        "{verb} {} records, {} objects, {} temporary files: {} freed; kept {} records, {} objects\n",
        r.records,
        r.objects,
        r.temp_files,
        human_bytes(r.bytes),
        r.kept_records,
        r.kept_objects
    ));
    out(&text);
    Ok(ExitCode::SUCCESS)
}
