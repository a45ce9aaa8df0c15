//! `scoreflow runs`: The recorded runs of a pipeline, oldest first.

use super::prelude::*;

pub(super) fn run(cli: &Cli, overrides: &[spec::Override], args: &RunsArgs) -> Result<ExitCode, Error> {
    let RunsArgs { file, json } = args;
    use crate::engine::cache::StageState;
    let spec = load_spec(file, overrides)?;
    let cache = cache_for(&cli.artifacts, file);
    let home = cache.home(&spec.name, file, false)?;
    let mut text = String::new();
    if !*json {
        text.push_str(&format!(
            "cache: {}
{:<22} {:<20} {:>9} {:>5} {:>5} {:>6} {:>7} {:>7}  result\n",
            cache.root().display(),
            "run",
            "started (UTC)",
            "seconds",
            "ran",
            "fresh",
            "failed",
            "stopped",
            "skipped"
        ));
    }
    for m in cache.runs_checked(&home.dir)? {
        let count = |s: StageState| m.stages.iter().filter(|l| l.status == s).count();
        let (ran, fresh, failed) = (count(StageState::Ran), count(StageState::Fresh), count(StageState::Failed));
        let skipped = count(StageState::Skipped);
        // Stopped by a signal while running (a stage that checkpoints saved its
        // state first, and the next run resumes it).
        let stopped = count(StageState::Interrupted);
        let result = if m.ok {
            "ok"
        } else if stopped > 0 {
            "interrupted"
        } else {
            "failed"
        };
        let seconds = m.finished_ms.saturating_sub(m.started_ms) as f64 / 1000.0;
        if *json {
            text.push_str(
                &(serde_json::json!({"run": m.run_id, "started_ms": m.started_ms, "seconds": seconds, "ran": ran,
                        "fresh": fresh, "failed": failed, "stopped": stopped, "skipped": skipped, "result": result,
                        "git_commit": m.git_commit, "overrides": m.overrides})
                .to_string()
                    + "\n"),
            );
        } else {
            text.push_str(&format!(
                "{:<22} {:<20} {seconds:>9.2} {ran:>5} {fresh:>5} {failed:>6} {stopped:>7} {skipped:>7}  {result}\n",
                m.run_id,
                crate::report::utc(m.started_ms).trim_end_matches(" UTC"),
            ));
        }
    }
    out(&text);
    Ok(ExitCode::SUCCESS)
}
