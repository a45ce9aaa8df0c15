//! `scoreflow status`: Each stage fresh or dirty, and why; runs nothing.

use super::prelude::*;

pub(super) fn run(cli: &Cli, overrides: &[spec::Override], args: &StatusArgs) -> Result<ExitCode, Error> {
    let StatusArgs { file, json } = args;
    let spec = load_spec(file, overrides)?;
    let cache = cache_for(&cli.artifacts, file);
    let home = cache.home(&spec.name, file, false)?;
    let statuses = crate::engine::fingerprint::status(&spec, &cache, &home.dir)?;
    if *json {
        let v: Vec<_> = statuses
            .iter()
            .map(|s| {
                serde_json::json!({
                    "stage": s.name,
                    "fresh": s.fresh,
                    "key": s.key.map(|k| k.hex()),
                    "reasons": s.reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                    "checkpoint": s.checkpoint.as_ref().map(|h| h.to_json()),
                })
            })
            .collect();
        out(&(serde_json::to_string_pretty(&v).expect("json") + "\n"));
    } else {
        let w = width(&spec);
        let mut text = format!("cache: {}\n", cache.root().display());
        if let Some(m) = &spec.matrix {
            text.push_str(&format!("matrix: {m}\n"));
        }
        for s in &statuses {
            let state = if s.fresh { "fresh" } else { "dirty" };
            let detail = if s.fresh {
                s.key.map(|k| k.short()).unwrap_or_default()
            } else {
                let mut why: Vec<String> = s.reasons.iter().map(|r| r.to_string()).collect();
                if let Some(h) = &s.checkpoint {
                    why.push(format!("resumes from {}", h.describe()));
                }
                why.join("; ")
            };
            text.push_str(&format!("{:w$}  {state}  {detail}\n", s.name));
        }
        out(&text);
    }
    Ok(ExitCode::SUCCESS)
}
