//! `scoreflow compare`: The experiment table of a spec's instances, or two runs side by side.

use super::prelude::*;

pub(super) fn run(cli: &Cli, overrides: &[spec::Override], args: &CompareArgs) -> Result<ExitCode, Error> {
    let CompareArgs { file, metrics, json, csv, runs } = args;
    let spec = load_spec(file, overrides)?;
    let cache = cache_for(&cli.artifacts, file);
    let home = cache.home(&spec.name, file, false)?;
    let recorded = cache.runs_checked(&home.dir)?;
    // Without options of its own, the table is of what the latest run ran:
    // its --set and --matrix, read back from its manifest.
    let (spec, used, from_latest) = match recorded.last() {
        Some(last) if overrides.is_empty() && !last.overrides.is_empty() && runs.is_empty() => {
            let again: Vec<spec::Override> = last
                .overrides
                .iter()
                .filter_map(|t| {
                    t.split_once(' ').and_then(|(flag, arg)| spec::Override::parse(flag == "--matrix", arg).ok())
                })
                .collect();
            (load_spec(file, &again)?, last.overrides.join(" "), true)
        }
        _ => (spec, overrides.iter().map(|o| o.text.clone()).collect::<Vec<_>>().join(" "), false),
    };
    if let [a, b] = runs.as_slice() {
        let a = crate::compare::find_run(&recorded, a).map_err(Error::BadInput)?;
        let b = crate::compare::find_run(&recorded, b).map_err(Error::BadInput)?;
        let mut d = crate::compare::diff_runs(&cache, a, b);
        d.metrics.retain(|(m, _, _)| metrics.is_empty() || metrics.iter().any(|p| m.contains(p.as_str())));
        out(&crate::compare::render_diff(&d, a, b, *json, *csv));
        return Ok(ExitCode::SUCCESS);
    }
    let mut cmp = crate::compare::compare(&spec, &cache)?;
    cmp.select(metrics);
    let rows = cmp.all_rows();
    if cmp.unreadable.is_empty() && !rows.iter().any(|(_, m)| m.iter().any(|v| v.is_finite())) {
        let listed: Vec<String> = recorded
            .iter()
            .rev()
            .take(5)
            .map(|m| {
                let opts = if m.overrides.is_empty() { "no options".to_string() } else { m.overrides.join(" ") };
                format!("  {} started {} ({opts})", m.run_id, crate::report::utc(m.started_ms))
            })
            .collect();
        eprintln!(
            "error: no current result of {}{} has metrics to table{}",
            file.display(),
            if used.is_empty() { String::new() } else { format!(" with {used}") },
            if listed.is_empty() {
                format!("; it has no recorded run (`scoreflow run {}` first)", file.display())
            } else {
                format!(
                    "; its recorded runs, newest first (give their --set/--matrix to compare them):\n{}",
                    listed.join("\n")
                )
            }
        );
        return Ok(ExitCode::from(EXIT_FAILURE));
    }
    if !*json && !*csv {
        eprintln!(
            "the current results of {}{}",
            file.display(),
            match (used.is_empty(), from_latest) {
                (true, _) => String::new(),
                (false, true) => format!(" with {used}, as its latest run"),
                (false, false) => format!(" with {used}"),
            }
        );
    }
    let table = cmp.table(&rows);
    let parquet = table.to_parquet(&[]).map_err(|e| Error::Fault(e.to_string()))?;
    let path = cache.root().join("compare").join(format!("{}.parquet", home.dir));
    cache.write_atomic(&path, &parquet)?;
    if !cmp.missing.is_empty() {
        eprintln!(
            "warning: no current result for {} (run `scoreflow run {}` first); their metrics are NaN",
            cmp.missing.join(", "),
            file.display()
        );
    }
    let label = |values: &[String]| -> String {
        if values.is_empty() {
            "value".to_string()
        } else {
            cmp.swept.iter().zip(values).map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
        }
    };
    let text = if *json {
        rows.iter()
            .map(|(values, m)| {
                let mut o = serde_json::Map::new();
                for (k, v) in cmp.swept.iter().zip(values) {
                    o.insert(k.clone(), serde_json::Value::String(v.clone()));
                }
                for (k, v) in cmp.metric_names.iter().zip(m) {
                    o.insert(k.clone(), serde_json::json!(if v.is_finite() { Some(*v) } else { None }));
                }
                serde_json::Value::Object(o).to_string() + "\n"
            })
            .collect()
    } else if *csv {
        String::from_utf8(crate::export::table_to_csv(&table).map_err(Error::Fault)?).expect("utf-8")
    } else {
        // Metrics down, instances across: a terminal is taller than wide.
        let heads: Vec<String> = rows.iter().map(|(v, _)| label(v)).collect();
        let w0 = cmp.metric_names.iter().map(|m| m.len()).max().unwrap_or(6).max(6);
        let ws: Vec<usize> = heads.iter().map(|h| h.len().max(10)).collect();
        let mut t = format!("{:w0$}", "metric");
        for (h, w) in heads.iter().zip(&ws) {
            t.push_str(&format!("  {h:>w$}"));
        }
        t.push('\n');
        for (j, m) in cmp.metric_names.iter().enumerate() {
            t.push_str(&format!("{m:w0$}"));
            for ((_, vals), w) in rows.iter().zip(&ws) {
                t.push_str(&format!("  {:>w$}", format!("{:.6}", vals[j])));
            }
            t.push('\n');
        }
        t.push_str(&format!("table: {}\n", path.display()));
        t
    };
    out(&text);
    if !cmp.unreadable.is_empty() {
        for what in &cmp.unreadable {
            eprintln!(
                "error: the metrics of {what} could not be read; they show as NaN (`scoreflow run` recomputes a corrupt result)"
            );
        }
        return Ok(ExitCode::from(EXIT_FAILURE));
    }
    Ok(ExitCode::SUCCESS)
}
