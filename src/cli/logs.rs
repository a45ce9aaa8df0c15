//! `scoreflow logs`: what a command stage printed in its latest run.

use super::prelude::*;

/// `scoreflow logs`: a command stage's log of its latest run, found through
/// the key the pipeline's latest manifest records for it (a failed stage's
/// too), else through its current key.
pub(super) fn run(
    artifacts: &Option<PathBuf>,
    overrides: &[spec::Override],
    args: &LogsArgs,
) -> Result<ExitCode, Error> {
    let LogsArgs { stage, pipeline: file, tail } = args;
    let tail = *tail;
    let spec = load_spec(file, overrides)?;
    let cache = cache_for(artifacts, file);
    let home = cache.home(&spec.name, file, false)?;
    let recorded = cache
        .latest_manifest(&home.dir)
        .and_then(|m| m.stage(stage).and_then(|s| s.key.clone()))
        .and_then(|k| k.parse::<crate::engine::hash::Hash>().ok());
    let key = match recorded {
        Some(k) => Some(k),
        None => {
            let Some(idx) = spec.index(stage) else {
                let names: Vec<&str> = spec.stages.iter().map(|s| s.name.as_str()).collect();
                return Err(Error::BadInput(format!(
                    "pipeline {} has no stage `{stage}`{}",
                    spec.name,
                    crate::engine::params::suggest(stage, &names)
                )));
            };
            crate::engine::fingerprint::status(&spec, &cache, &home.dir)?[idx].key
        }
    };
    let dir = key.map(|k| crate::engine::command::log_dir(&cache, &k)).filter(|d| d.is_dir());
    let Some(dir) = dir else {
        return Err(Error::BadInput(format!(
            "stage `{stage}` of {} has no log: only command stages keep one, once they have run",
            spec.name
        )));
    };
    let mut text = String::new();
    for (title, name) in [("command", "command.txt"), ("stdout", "stdout.log"), ("stderr", "stderr.log")] {
        let path = dir.join(name);
        let body = match tail {
            Some(n) => crate::engine::command::tail(&path, n),
            None => std::fs::read_to_string(&path).unwrap_or_default(),
        };
        text.push_str(&format!("── {title} ({}) ──\n{}", path.display(), body));
        if !body.is_empty() && !body.ends_with('\n') {
            text.push('\n');
        }
    }
    out(&text);
    Ok(ExitCode::SUCCESS)
}
