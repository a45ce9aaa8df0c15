//! `scoreflow compare`: the experiment table of a spec — one row per instance
//! of its matrix (one row for a spec without one), the swept values as
//! columns, then every metric its stages declare ([`crate::engine::stage::Stage::metrics`])
//! as `stage.metric`, read from the current (fresh) results. When the seed is
//! swept, a median / min / max row over seeds follows each setting of the
//! other swept values. Written as text, JSON lines or CSV, and always as
//! Parquet under `artifacts/compare/<pipeline>.parquet`.

use std::collections::BTreeMap;

use crate::engine::cache::{Cache, Manifest, OutputEntry};
use crate::engine::frame::{ColumnData, Table};
use crate::engine::spec::Spec;
use crate::engine::spec::matrix::Instance;
use crate::engine::stage::{Artifact, Stage};

/// The table: one row per instance; `values` are the swept targets' values as
/// text, `metrics` the metric columns (NaN where a stage has no fresh result).
pub struct Comparison {
    pub swept: Vec<String>,
    pub metric_names: Vec<String>,
    pub rows: Vec<(Vec<String>, Vec<f64>)>,
    /// Stages whose result is not in the cache yet (run the spec first).
    pub missing: Vec<String>,
    /// `stage.output` metric tables that could not be read (corrupt, or not
    /// a metric table): their metrics are NaN, and `compare` exits 1.
    pub unreadable: Vec<String>,
}

/// Read every instance's metrics from the current (fresh) results in the cache.
pub fn compare(spec: &Spec, cache: &Cache) -> Result<Comparison, crate::engine::cache::CacheError> {
    // One walk down the DAG finds every fresh result (each stage once, however
    // many instances share it). The metric tables are verified by content when
    // read; the rest of each result need only be there.
    let mut fresh =
        crate::engine::fingerprint::assess_fresh(spec, cache, None, None, crate::engine::cache::Verify::Size)?;
    Ok(tabulate(spec, cache, |idx| Some(fresh[idx].take()?.record?.outputs)))
}

/// The metrics of a run's results: the output hashes its manifest names.
pub fn from_manifest(spec: &Spec, cache: &Cache, manifest: &Manifest) -> Comparison {
    tabulate(spec, cache, |idx| {
        let line = manifest.stage(&spec.stages[idx].name).filter(|l| l.status.settled())?;
        entries_of(cache, line)
    })
}

/// The table, given where each stage's outputs are (`outputs(idx)`: output
/// name → content hash; `None`: the stage has no result). Asked once per stage.
fn tabulate(
    spec: &Spec,
    cache: &Cache,
    mut outputs: impl FnMut(usize) -> Option<BTreeMap<String, OutputEntry>>,
) -> Comparison {
    let instances: Vec<Instance> = match &spec.matrix {
        Some(m) => m.combinations.clone(),
        None => vec![Instance {
            values: Vec::new(),
            stages: spec.stages.iter().map(|s| (s.name.clone(), s.name.clone())).collect(),
        }],
    };
    let swept: Vec<String> =
        instances.first().map(|i| i.values.iter().map(|(l, _)| l.clone()).collect()).unwrap_or_default();
    let mut metric_names: Vec<String> = Vec::new();
    let mut per_instance: Vec<BTreeMap<String, f64>> = Vec::new();
    let mut missing = Vec::new();
    let mut unreadable = Vec::new();
    let mut memo: BTreeMap<String, Option<BTreeMap<String, f64>>> = BTreeMap::new();
    for instance in &instances {
        let mut row = BTreeMap::new();
        for (base, merged) in &instance.stages {
            let Some(idx) = spec.index(merged) else { continue };
            let imp = spec.stages[idx].imp;
            if imp.metrics().is_empty() {
                continue;
            }
            if !memo.contains_key(merged) {
                let read = outputs(idx).map(|hashes| {
                    let mut found = BTreeMap::new();
                    let (metrics, bad) = stage_metrics(cache, imp, |output| hashes.get(output).cloned());
                    for (n, v) in metrics {
                        found.entry(n).or_insert(v);
                    }
                    unreadable.extend(bad.into_iter().map(|why| format!("{merged}.{why}")));
                    found
                });
                if read.is_none() {
                    missing.push(merged.clone());
                }
                memo.insert(merged.clone(), read);
            }
            for (metric, v) in memo[merged].iter().flatten() {
                let name = format!("{base}.{metric}");
                if !metric_names.contains(&name) {
                    metric_names.push(name.clone());
                }
                row.insert(name, *v);
            }
        }
        per_instance.push(row);
    }
    let rows = instances
        .iter()
        .zip(&per_instance)
        .map(|(instance, m)| {
            (
                instance.values.iter().map(|(_, v)| v.to_string()).collect(),
                metric_names.iter().map(|n| m.get(n).copied().unwrap_or(f64::NAN)).collect(),
            )
        })
        .collect();
    Comparison { swept, metric_names, rows, missing, unreadable }
}

impl Comparison {
    /// Keep the metric columns whose name contains one of `patterns` (all when empty).
    pub fn select(&mut self, patterns: &[String]) {
        if patterns.is_empty() {
            return;
        }
        let keep: Vec<usize> = (0..self.metric_names.len())
            .filter(|&j| patterns.iter().any(|p| self.metric_names[j].contains(p.as_str())))
            .collect();
        self.metric_names = keep.iter().map(|&j| self.metric_names[j].clone()).collect();
        for (_, m) in self.rows.iter_mut() {
            *m = keep.iter().map(|&j| m[j]).collect();
        }
    }

    /// Median, min and max over seeds, for each setting of the other swept
    /// values: (the setting's values with `seed` = "median"/"min"/"max", metrics).
    pub fn over_seeds(&self) -> Vec<(Vec<String>, Vec<f64>)> {
        let Some(seed) = self.swept.iter().position(|s| s == "seed") else { return Vec::new() };
        let mut groups: BTreeMap<Vec<String>, Vec<&Vec<f64>>> = BTreeMap::new();
        let mut order = Vec::new();
        for (values, metrics) in &self.rows {
            let mut key = values.clone();
            key[seed] = String::new();
            if !groups.contains_key(&key) {
                order.push(key.clone());
            }
            groups.entry(key).or_default().push(metrics);
        }
        let mut out = Vec::new();
        for key in order {
            let members = &groups[&key];
            let stat = |f: &dyn Fn(&mut [f64]) -> f64| -> Vec<f64> {
                (0..self.metric_names.len())
                    .map(|j| {
                        let mut v: Vec<f64> = members.iter().map(|m| m[j]).filter(|x| x.is_finite()).collect();
                        if v.is_empty() { f64::NAN } else { f(&mut v) }
                    })
                    .collect()
            };
            for (name, f) in [
                ("median", &crate::numerics::metrics::median as &dyn Fn(&mut [f64]) -> f64),
                ("min", &|v: &mut [f64]| v.iter().copied().fold(f64::INFINITY, f64::min)),
                ("max", &|v: &mut [f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
            ] {
                let mut values = key.clone();
                values[seed] = format!("{name} of {}", members.len());
                out.push((values, stat(f)));
            }
        }
        out
    }

    /// The instance rows, then the aggregates over seeds.
    pub fn all_rows(&self) -> Vec<(Vec<String>, Vec<f64>)> {
        self.rows.iter().cloned().chain(self.over_seeds()).collect()
    }

    /// `rows` (from [`Comparison::all_rows`]) as one table: swept values as
    /// strings, metrics as floats; aggregate rows name their statistic in the
    /// seed column.
    pub fn table(&self, all: &[(Vec<String>, Vec<f64>)]) -> Table {
        let mut t = Table::new();
        for (i, s) in self.swept.iter().enumerate() {
            t = t.with(s, ColumnData::Str(all.iter().map(|r| r.0[i].clone()).collect()));
        }
        if self.swept.is_empty() {
            t = t.with("instance", ColumnData::Str(all.iter().map(|_| "all".to_string()).collect()));
        }
        for (j, m) in self.metric_names.iter().enumerate() {
            t = t.with(m, ColumnData::F64(all.iter().map(|r| r.1[j]).collect()));
        }
        t
    }
}

/// Two runs of a spec side by side (`scoreflow compare FILE --runs A B`):
/// the stages whose results differ, and every metric of both.
pub struct RunDiff {
    /// (stage, A's key, B's key) for each stage whose key or outputs differ
    /// (`None`: the run has no result of it).
    pub changed: Vec<(String, Option<String>, Option<String>)>,
    /// Stages with the same result in both runs.
    pub same: usize,
    /// (stage.metric, A's value, B's value); NaN where a run has none.
    pub metrics: Vec<(String, f64, f64)>,
    /// What determined the changed stages differently, from their records'
    /// hash inputs: (`stages.<name>.params.<p>` or `stages.<name>.seed`,
    /// A's value, B's value); a stage only one run has, or whose record is
    /// gone, is not listed.
    pub settings: Vec<(String, String, String)>,
}

/// The metrics one stage's result holds, `(metric, value)` in table order:
/// every table output its implementation declares as metrics, read by content
/// hash (`hash_of(output)`); tables that are gone or not metric tables are
/// left out.
/// The metrics a stage's outputs hold, and the outputs that could not be read
/// as metric tables (`output: why`).
fn stage_metrics(
    cache: &Cache,
    imp: &dyn Stage,
    entry_of: impl Fn(&str) -> Option<OutputEntry>,
) -> (Vec<(String, f64)>, Vec<String>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let declared = imp.metrics();
    for (output, column) in declared {
        let Some(entry) = entry_of(output) else { continue };
        let t = match cache.read_entry(&entry) {
            Ok(Artifact::Table(t)) => t,
            Ok(Artifact::Blob(_)) => continue,
            Err(e) => {
                bad.push(format!("{output} ({e})"));
                continue;
            }
        };
        // A command's metrics may come as integers (a count, from CSV).
        let values = t.f64s(column).or_else(|_| t.i64s(column).map(|v| v.iter().map(|x| *x as f64).collect()));
        let (names, values) = match (t.strs("metric"), values) {
            (Ok(n), Ok(v)) => (n, v),
            (Err(e), _) | (_, Err(e)) => {
                bad.push(format!("{output} (not a metric table: {e})"));
                continue;
            }
        };
        let several = declared.iter().filter(|(o, _)| o == output).count() > 1;
        out.extend(names.iter().map(|n| if several { format!("{column}({n})") } else { n.clone() }).zip(values));
    }
    (out, bad)
}

/// The metrics a run's results hold, by `stage.metric`, read through the
/// outputs its manifest names (implementations found by kind and method, so a
/// stage since removed from the spec still counts). Objects gc has removed
/// are left out.
fn run_metrics(cache: &Cache, m: &Manifest) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for line in m.stages.iter().filter(|l| l.status.settled()) {
        let found = crate::engine::stage::Kind::parse(&line.kind).and_then(|k| crate::registry().find(k, &line.method));
        // A command stage is rebuilt from its record's key inputs.
        let found = found.or_else(|| {
            let key = line.key.as_ref()?.parse().ok()?;
            let ki = crate::engine::hash::KeyInputs::from_json(&cache.load_record(&key).ok()??.hash_inputs)?;
            crate::engine::worker::implementation_of(&ki, crate::registry()).ok()
        });
        let Some(imp) = found else {
            continue;
        };
        let Some(entries) = entries_of(cache, line) else { continue };
        for (n, v) in stage_metrics(cache, imp, |output| entries.get(output).cloned()).0 {
            let name = format!("{}.{n}", line.name);
            if !out.iter().any(|(k, _)| *k == name) {
                out.push((name, v));
            }
        }
    }
    out
}

/// The output entries (file hashes included) of a manifest line's result:
/// its record's, when the record names the outputs the line names.
fn entries_of(cache: &Cache, line: &crate::engine::cache::ManifestStage) -> Option<BTreeMap<String, OutputEntry>> {
    let key = line.key.as_ref()?.parse().ok()?;
    let record = cache.load_record(&key).ok()??;
    let same = line.outputs.iter().all(|(name, h)| record.outputs.get(name).is_some_and(|o| &o.hash == h));
    same.then_some(record.outputs)
}

/// Compare run `a` with run `b`.
pub fn diff_runs(cache: &Cache, a: &Manifest, b: &Manifest) -> RunDiff {
    let result = |m: &Manifest, name: &str| {
        m.stage(name).filter(|l| l.status.settled()).map(|l| (l.key.clone().unwrap_or_default(), l.outputs.clone()))
    };
    let mut names: Vec<&str> = a.stages.iter().map(|l| l.name.as_str()).collect();
    for l in &b.stages {
        if !names.contains(&l.name.as_str()) {
            names.push(&l.name);
        }
    }
    let (mut changed, mut same) = (Vec::new(), 0);
    for name in names {
        let (ra, rb) = (result(a, name), result(b, name));
        if ra.is_some() && ra == rb {
            same += 1;
        } else {
            changed.push((name.to_string(), ra.map(|r| r.0), rb.map(|r| r.0)));
        }
    }
    let (ma, mb) = (run_metrics(cache, a), run_metrics(cache, b));
    let mut metrics: Vec<(String, f64, f64)> = ma
        .iter()
        .map(|(n, v)| (n.clone(), *v, mb.iter().find(|(k, _)| k == n).map_or(f64::NAN, |(_, v)| *v)))
        .collect();
    for (n, v) in &mb {
        if !ma.iter().any(|(k, _)| k == n) {
            metrics.push((n.clone(), f64::NAN, *v));
        }
    }
    let settings = setting_changes(cache, &changed);
    RunDiff { changed, same, metrics, settings }
}

/// The parameter and seed differences behind `changed` (see [`RunDiff`]).
fn setting_changes(
    cache: &Cache,
    changed: &[(String, Option<String>, Option<String>)],
) -> Vec<(String, String, String)> {
    let inputs = |key: &Option<String>| -> Option<serde_json::Value> {
        let key = key.as_ref()?.parse().ok()?;
        Some(cache.load_record(&key).ok()??.hash_inputs)
    };
    let mut out = Vec::new();
    for (stage, ka, kb) in changed {
        let (Some(a), Some(b)) = (inputs(ka), inputs(kb)) else { continue };
        let empty = serde_json::Map::new();
        let (pa, pb) = (a["params"].as_object().unwrap_or(&empty), b["params"].as_object().unwrap_or(&empty));
        let mut names: Vec<&String> = pa.keys().chain(pb.keys()).collect();
        names.sort();
        names.dedup();
        let show = |v: Option<&serde_json::Value>| v.map_or("(none)".to_string(), |v| v.to_string());
        for p in names {
            if pa.get(p) != pb.get(p) {
                out.push((format!("stages.{stage}.params.{p}"), show(pa.get(p)), show(pb.get(p))));
            }
        }
        if a["seed"] != b["seed"] {
            out.push((format!("stages.{stage}.seed"), a["seed"].to_string(), b["seed"].to_string()));
        }
    }
    out
}

/// The run a `--runs` argument names among `runs` (oldest first): `latest`,
/// `previous`, or a run id or a prefix of exactly one.
pub fn find_run<'a>(runs: &'a [Manifest], which: &str) -> Result<&'a Manifest, String> {
    let n = runs.len();
    let found: Vec<&Manifest> = match which {
        "latest" => runs.last().into_iter().collect(),
        "previous" => n.checked_sub(2).map(|i| &runs[i]).into_iter().collect(),
        id => runs
            .iter()
            .filter(|m| m.run_id == id)
            .chain(runs.iter().filter(|m| m.run_id != id && m.run_id.starts_with(id)))
            .collect(),
    };
    match found.as_slice() {
        [m] => Ok(m),
        [m, ..] if m.run_id == which => Ok(m),
        [] => Err(format!("no run `{which}` among the {n} recorded runs (`scoreflow runs FILE` lists them)")),
        _ => Err(format!("`{which}` is the start of {} run ids; give more of it", found.len())),
    }
}

/// A [`RunDiff`] as text, JSON lines (`{"stage",…}` then `{"metric",…}`) or CSV (metrics).
pub fn render_diff(d: &RunDiff, a: &Manifest, b: &Manifest, json: bool, csv: bool) -> String {
    let num = |v: f64| if v.is_finite() { serde_json::json!(v) } else { serde_json::Value::Null };
    let mut s = String::new();
    if json {
        for (setting, va, vb) in &d.settings {
            s.push_str(&(serde_json::json!({"setting": setting, "a": va, "b": vb}).to_string() + "\n"));
        }
        for (stage, ka, kb) in &d.changed {
            s.push_str(&(serde_json::json!({"stage": stage, "a": ka, "b": kb}).to_string() + "\n"));
        }
        for (m, va, vb) in &d.metrics {
            s.push_str(
                &(serde_json::json!({"metric": m, "a": num(*va), "b": num(*vb), "delta": num(vb - va)}).to_string()
                    + "\n"),
            );
        }
        return s;
    }
    if csv {
        s.push_str("metric,a,b,delta\n");
        for (m, va, vb) in &d.metrics {
            let f = |v: f64| if v.is_finite() { v.to_string() } else { String::new() };
            s.push_str(&format!("{m},{},{},{}\n", f(*va), f(*vb), f(vb - va)));
        }
        return s;
    }
    for (label, m) in [("A", a), ("B", b)] {
        s.push_str(&format!(
            "{label}: run {} started {}{}\n",
            m.run_id,
            crate::report::utc(m.started_ms),
            if m.overrides.is_empty() { String::new() } else { format!(" ({})", m.overrides.join(" ")) }
        ));
    }
    if !d.settings.is_empty() {
        let n = d.settings.len();
        s.push_str(&format!("{n} {}\n", if n == 1 { "setting differs" } else { "settings differ" }));
        for (setting, va, vb) in &d.settings {
            s.push_str(&format!("  {setting} {va} → {vb}\n"));
        }
    }
    let short = |k: &Option<String>| k.as_deref().map_or("no result".to_string(), |k| k[..12.min(k.len())].to_string());
    s.push_str(&format!("{} stages with other results, {} the same\n", d.changed.len(), d.same));
    for (stage, ka, kb) in &d.changed {
        s.push_str(&format!("  {stage}: {} → {}\n", short(ka), short(kb)));
    }
    let w = d.metrics.iter().map(|m| m.0.len()).max().unwrap_or(6).max(6);
    s.push_str(&format!("{:w$}  {:>12}  {:>12}  {:>12}\n", "metric", "A", "B", "B − A"));
    for (m, va, vb) in &d.metrics {
        s.push_str(&format!("{m:w$}  {va:>12.6}  {vb:>12.6}  {:>+12.6}\n", vb - va));
    }
    s
}
