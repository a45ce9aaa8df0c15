//! `scoreflow gc`: remove what no run worth keeping uses; `scoreflow tag` and
//! `scoreflow tags`: name the runs to keep.

use super::prelude::*;

pub(super) fn run(cli: &Cli, args: &GcArgs) -> Result<ExitCode, Error> {
    let GcArgs { dry_run, older_than } = args;
    let cache = cache_of(cli);
    let policy = crate::engine::maintenance::GcPolicy { keep_younger_than: *older_than };
    let r = cache.gc(*dry_run, policy)?;
    let verb = if *dry_run { "would remove" } else { "removed" };
    let mut text: String = r.removed.iter().map(|line| format!("{verb} {line}\n")).collect();
    let (gone, kept) = match (r.checkpoints, r.kept_checkpoints) {
        (0, 0) => (String::new(), String::new()),
        (g, k) => (format!(", {g} checkpoints"), format!(", {k} checkpoints (work a run resumes)")),
    };
    text.push_str(&format!(
        "{verb} {} records, {} objects{gone}, {} temporary files: {} freed; kept {} records, {} objects{kept}\n",
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

fn cache_of(cli: &Cli) -> Cache {
    Cache::new(cli.artifacts.clone().unwrap_or_else(|| PathBuf::from("artifacts")))
}

pub(super) fn tag(cli: &Cli, args: &TagArgs) -> Result<ExitCode, Error> {
    let cache = cache_of(cli);
    if let Some(name) = &args.delete {
        if !cache.untag(name)? {
            return Err(Error::BadInput(format!("no tag `{name}` (`scoreflow tags` lists them)")));
        }
        out(&format!("removed tag {name}\n"));
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(run), Some(name)) = (&args.run, &args.name) else {
        return Err(Error::BadInput("give a run and a name: `scoreflow tag RUN NAME`".into()));
    };
    let t = cache.tag(run, name)?;
    out(&format!("tagged run {} of {} as {}: gc keeps its results\n", t.run_id, t.home, t.name));
    Ok(ExitCode::SUCCESS)
}

pub(super) fn tags(cli: &Cli) -> Result<ExitCode, Error> {
    let mut text = String::new();
    for t in cache_of(cli).tags()? {
        text.push_str(&format!(
            "{:<20} {:<20} {:<24} tagged {}\n",
            t.name,
            t.home,
            t.run_id,
            crate::report::utc(t.tagged_ms)
        ));
    }
    out(&text);
    Ok(ExitCode::SUCCESS)
}
