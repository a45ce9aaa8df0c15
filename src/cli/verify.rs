//! `scoreflow verify`: Check every object and record; remove what is bad.

use super::prelude::*;

pub(super) fn run(cli: &Cli) -> Result<ExitCode, Error> {
    let cache = Cache::new(cli.artifacts.clone().unwrap_or_else(|| PathBuf::from("artifacts")));
    let r = cache.verify()?;
    let mut text = String::new();
    for p in &r.problems {
        let fate = if p.removed { "removed" } else { "left in place: not a file verify can read" };
        text.push_str(&format!("bad: {}: {} ({fate})\n", p.path, p.what));
    }
    text.push_str(&format!(
        "verified {} records, {} objects{} in {}: {}\n",
        r.records,
        r.objects,
        if r.checkpoints > 0 { format!(", {} checkpoints", r.checkpoints) } else { String::new() },
        cache.root().display(),
        if r.problems.is_empty() {
            "all good".to_string()
        } else {
            format!("{} bad, removed; the next run recomputes what they held", r.problems.len())
        }
    ));
    out(&text);
    Ok(if r.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILURE) })
}
