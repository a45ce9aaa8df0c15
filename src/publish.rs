//! What `scoreflow run` does after the executor: publish report pages under
//! `artifacts/reports/<home>/<stage>/` and point `artifacts/latest/` at the
//! run's objects. A page is any stage output of media `text/html`; it is
//! published as `index.html` beside the stage's `image/png` outputs, by media
//! alone — nothing here knows which workload drew them.
//!
//! A report stage's page is a pure function of its inputs, so it is cached like
//! any output; what only the run knows is added here, at the page's marker:
//! where the run came from (spec file, git commit, when), every stage's status
//! with why it ran or when its cached result was computed, and the spec itself
//! (each stage's seed, inputs and every parameter, defaults greyed). Published
//! pages are views, rewritten by every run; the cache holds the page without them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use crate::engine::cache::{Cache, Manifest, StageState};
use crate::engine::spec::Spec;
use crate::engine::stage::{Format, Media};
use crate::report::esc;

/// Why publishing a run's views failed: the cache's file work, or drawing a
/// figure.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Cache(#[from] crate::engine::cache::CacheError),
    #[error("{0}")]
    Figure(String),
}

/// Publish every report stage of the run, adding the run's section to its
/// page. Returns the pages' paths, or (inner `Err`) which report object turned
/// out missing or corrupt — it has been removed with the record naming it, so
/// the next run recomputes the stage.
pub fn reports(spec: &Spec, cache: &Cache, manifest: &Manifest) -> Result<Result<Vec<PathBuf>, String>, PublishError> {
    let mut pages = Vec::new();
    let dag = crate::engine::dag::Dag::new(spec);
    // The earlier runs, for why a cached stage once ran (a page is published
    // without that when they cannot be read).
    let history = crate::engine::manifest::run_manifests(&cache.root().join("runs").join(home(manifest)))
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.run_id != manifest.run_id)
        .collect::<Vec<_>>();
    // A stage with an HTML output is a page: published with its images.
    let is_page = |imp: &dyn crate::engine::stage::Stage| imp.outputs().iter().any(|o| o.media == Media::Html);
    for (idx, stage) in spec.stages.iter().enumerate().filter(|(_, s)| is_page(s.imp)) {
        let Some(line) = manifest.stage(&stage.name).filter(|l| l.status.settled()) else {
            continue;
        };
        // Which object each published file is a copy of: a figure whose object
        // is the one already published, and whose bytes are intact, is not
        // written again.
        let dir = cache.report_dir(home(manifest), &stage.name);
        // Beside the folder, which holds only what the page shows.
        let sources_file = dir.with_file_name(format!(".{}.sources.json", stage.name));
        let published: BTreeMap<String, String> =
            std::fs::read(&sources_file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        let mut sources = BTreeMap::new();
        let mut unchanged = Vec::new();
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        for def in stage.imp.outputs() {
            let index_taken = files.iter().any(|(f, _)| f == "index.html");
            let file = match def.media {
                Media::Html if !index_taken => "index.html".to_string(),
                Media::Html => format!("{}.html", def.name),
                Media::Png => format!("{}.png", def.name),
                Media::Table | Media::Model(_) | Media::File => continue,
            };
            let Some(hash) = line.outputs.get(def.name).and_then(|h| h.parse::<crate::engine::hash::Hash>().ok())
            else {
                continue;
            };
            sources.insert(file.clone(), hash.hex());
            // Kept only when its bytes are still the object's: a figure changed
            // or corrupted in place is written again.
            let intact = || std::fs::read(dir.join(&file)).is_ok_and(|b| crate::engine::hash::blob_hash(&b) == hash);
            if def.media == Media::Png && published.get(&file) == Some(&hash.hex()) && intact() {
                unchanged.push(file);
                continue;
            }
            // Through the record's entry: size and file hash before anything else.
            let entry = line
                .key
                .as_ref()
                .and_then(|k| k.parse().ok())
                .and_then(|k| cache.load_record(&k).ok().flatten())
                .and_then(|r| r.outputs.get(def.name).cloned())
                .filter(|o| o.hash == hash.hex());
            let read = match &entry {
                Some(o) => cache.read_entry(o),
                None => cache.read(&hash, Format::Blob),
            };
            let bytes = match read {
                Ok(crate::engine::stage::Artifact::Blob(bytes)) => bytes,
                Err(crate::engine::cache::ObjectError::Cache(e)) => return Err(e.into()),
                _ => {
                    cache.remove_object(&hash, Format::Blob);
                    if let Some(key) = line.key.as_ref().and_then(|k| k.parse().ok()) {
                        cache.remove_record(&key);
                    }
                    return Ok(Err(format!("report output {}.{} was missing or corrupt", stage.name, def.name)));
                }
            };
            if def.media == Media::Html {
                let html = String::from_utf8_lossy(&bytes).replace(
                    crate::report::STAGES_MARKER,
                    &run_section(spec, manifest, &history, &dag.ancestors_of(&[idx])),
                );
                files.push((file, html.into_bytes()));
            } else {
                files.push((file, bytes));
            }
        }
        let dir = cache.publish(home(manifest), &stage.name, &files, &unchanged)?;
        if sources != published {
            cache.write_atomic(&sources_file, &serde_json::to_vec_pretty(&sources).expect("json"))?;
        }
        pages.push(dir.join("index.html"));
    }
    if spec.matrix.is_some() {
        pages.push(sweep_page(spec, cache, manifest)?);
    }
    Ok(Ok(pages))
}

/// `reports/<home>/index.html` of a swept pipeline: what the matrix expanded
/// to, the experiment table (`scoreflow compare`'s, from this run's results),
/// one panel per metric against the first swept value other than the seed
/// (the seed when it is the only one), and links to the instances' pages.
/// The figure is drawn again only when the table changed.
fn sweep_page(spec: &Spec, cache: &Cache, manifest: &Manifest) -> Result<PathBuf, PublishError> {
    use crate::report::plot::{SweepPanel, sweep_panels};
    let dir = cache.root().join("reports").join(home(manifest));
    let cmp = crate::compare::from_manifest(spec, cache, manifest);
    let rows = cmp.all_rows();
    let table = cmp.table(&rows);
    let axis = cmp.swept.iter().position(|s| s != "seed").unwrap_or(0);
    let axis_name = cmp.swept.get(axis).cloned().unwrap_or_default();
    // The x of each instance: its swept value as a number, else its place
    // among the values in matrix order.
    let mut categories: Vec<String> = Vec::new();
    for (values, _) in &cmp.rows {
        if let Some(v) = values.get(axis)
            && !categories.contains(v)
        {
            categories.push(v.clone());
        }
    }
    let numeric = categories.iter().all(|v| v.parse::<f64>().is_ok());
    let x_of = |v: &str| {
        if numeric { v.parse().unwrap_or(f64::NAN) } else { categories.iter().position(|c| c == v).unwrap_or(0) as f64 }
    };
    let mut panels = Vec::new();
    for (j, metric) in cmp.metric_names.iter().enumerate() {
        let points: Vec<(f64, f64)> = cmp
            .rows
            .iter()
            .filter(|(_, m)| m[j].is_finite())
            .map(|(v, m)| (v.get(axis).map_or(0.0, |v| x_of(v)), m[j]))
            .collect();
        if points.is_empty() {
            continue;
        }
        let mut median: Vec<(f64, f64)> = categories
            .iter()
            .filter_map(|c| {
                let x = x_of(c);
                let mut ys: Vec<f64> = points.iter().filter(|p| p.0 == x).map(|p| p.1).collect();
                (!ys.is_empty()).then(|| (x, crate::numerics::metrics::median(&mut ys)))
            })
            .collect();
        median.sort_by(|a, b| a.0.total_cmp(&b.0));
        if median.len() == points.len() {
            // One instance per value (a sweep of seeds alone): no line to draw.
            median.clear();
        }
        panels.push(SweepPanel {
            title: metric.clone(),
            x_desc: axis_name.clone(),
            categories: (!numeric).then(|| categories.clone()),
            points,
            median,
        });
    }
    // Redraw only when the numbers changed.
    let fingerprint =
        blake3::hash(format!("{:?}{:?}{:?}", cmp.swept, cmp.metric_names, rows).as_bytes()).to_hex().to_string();
    let stamp = dir.join(".sweep.sources");
    let figure = dir.join("sweep.png");
    if !(std::fs::read_to_string(&stamp).is_ok_and(|s| s == fingerprint) && figure.is_file()) {
        let png = sweep_panels(&panels).map_err(|e| PublishError::Figure(e.to_string()))?;
        cache.write_atomic(&figure, &png)?;
        cache.write_atomic(&stamp, fingerprint.as_bytes())?;
    }
    let m = spec.matrix.as_ref().expect("a swept spec");
    let href = |name: &str| name.replace('[', "%5B").replace(']', "%5D").replace(',', "%2C");
    let links: Vec<String> = spec
        .stages
        .iter()
        .filter(|st| st.imp.outputs().iter().any(|o| o.media == Media::Html))
        .map(|st| format!("<a href=\"{}/index.html\">{}</a>", href(&st.name), esc(&st.name)))
        .collect();
    let intro = format!(
        "<p>Spec <code>{}</code>, run <code>{}</code> started {}: the matrix expanded to {m}. Each row is one \
         instance; when the seed is swept, the median, min and max over seeds follow each setting. The figure \
         plots each metric against <code>{}</code>: a dot per instance, the line through the medians.</p>\n\
         <p>Instance pages: {}</p>",
        esc(if manifest.spec_id.is_empty() { &manifest.spec_file } else { &manifest.spec_id }),
        esc(&manifest.run_id),
        crate::report::utc(manifest.started_ms),
        esc(&axis_name),
        links.join(", "),
    );
    let mut html = crate::report::page(
        &format!("{}: a sweep of {} instances", spec.name, m.instances),
        &intro,
        &[("sweep", "every metric against the swept value")],
        &crate::report::html_table_with(&table, "Experiment table (scoreflow compare)", 4),
    );
    html = html.replace(crate::report::STAGES_MARKER, "");
    let page = dir.join("index.html");
    cache.write_atomic(&page, html.as_bytes())?;
    Ok(page)
}

/// `latest/<home>/<stage>/<output>.<ext>` for every output of the run.
/// Links of outputs and stages the run no longer has are removed. A stage
/// whose outputs are those of the `previous` run's has its links already.
pub fn link_latest(
    spec: &Spec,
    cache: &Cache,
    manifest: &Manifest,
    previous: Option<&Manifest>,
) -> Result<(), PublishError> {
    let root = cache.root().join("latest").join(home(manifest));
    for line in manifest.stages.iter().filter(|l| l.status.settled()) {
        let Some(stage) = spec.stage(&line.name) else { continue };
        let linked = previous.and_then(|p| p.stage(&line.name)).is_some_and(|p| p.outputs == line.outputs);
        let names = line.outputs.keys().filter_map(|o| {
            crate::engine::stage::output_def(stage.imp, o).map(|d| format!("{o}.{}", d.media.extension()))
        });
        if linked && names.map(|n| root.join(&line.name).join(n)).all(|p| p.symlink_metadata().is_ok()) {
            continue;
        }
        let keep = link_stage(cache, home(manifest), &line.name, stage, line)?;
        Cache::prune(&root.join(&line.name), &keep.iter().map(String::as_str).collect::<Vec<_>>());
    }
    // A stage that failed or was not selected keeps its older links; a stage
    // gone from the spec loses them.
    Cache::prune(&root, &spec.stages.iter().map(|s| s.name.as_str()).collect::<Vec<_>>());
    // Each instance of a sweep under its own name, its stages under theirs in
    // the spec (`latest/smeme[seed=1]/samples/samples.parquet`); an instance
    // of an earlier sweep keeps its links (its latest run).
    if let Some(info) = &spec.matrix {
        for inst in &info.combinations {
            let values: Vec<String> =
                inst.values.iter().map(|(k, v)| format!("{k}={}", crate::engine::spec::matrix::name_text(v))).collect();
            let dir = format!("{}[{}]", home(manifest), values.join(","));
            for (base, merged) in &inst.stages {
                let (Some(stage), Some(line)) = (spec.stage(merged), manifest.stage(merged)) else { continue };
                if !line.status.settled() {
                    continue;
                }
                let keep = link_stage(cache, &dir, base, stage, line)?;
                Cache::prune(
                    &cache.root().join("latest").join(&dir).join(base),
                    &keep.iter().map(String::as_str).collect::<Vec<_>>(),
                );
            }
        }
    }
    Ok(())
}

/// Link every output of `line` as `latest/<dir>/<name>/<output>.<ext>`, the
/// extension from its media; returns the file names linked.
fn link_stage(
    cache: &Cache,
    dir: &str,
    name: &str,
    stage: &crate::engine::spec::StageSpec,
    line: &crate::engine::cache::ManifestStage,
) -> Result<Vec<String>, PublishError> {
    let mut keep = Vec::new();
    for (output, hash) in &line.outputs {
        let (Ok(hash), Some(def)) = (hash.parse(), crate::engine::stage::output_def(stage.imp, output)) else {
            continue;
        };
        let file = Cache::object_rel(&hash, def.format());
        let ext = def.media.extension();
        cache.link_latest(dir, name, output, &file, ext)?;
        keep.push(format!("{output}.{ext}"));
    }
    Ok(keep)
}

fn home(m: &Manifest) -> &str {
    if m.home.is_empty() { &m.pipeline } else { &m.home }
}

fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// The run's section of a report page: provenance, then the stage table and
/// the spec of the stages `shown` (indices into `spec.stages`: the page's stage
/// and what it depends on; of a swept pipeline, one instance's stages).
pub fn run_section(spec: &Spec, m: &Manifest, history: &[Manifest], shown: &BTreeSet<usize>) -> String {
    let names: BTreeSet<&str> = shown.iter().map(|&i| spec.stages[i].name.as_str()).collect();
    let mut s = String::from("<h2>This run</h2>\n<p>");
    let _ = write!(
        s,
        "Run <code>{}</code> of <code>{}</code> (pipeline <code>{}</code>), started {}",
        esc(&m.run_id),
        esc(if m.spec_id.is_empty() { &m.spec_file } else { &m.spec_id }),
        esc(&m.pipeline),
        crate::report::utc(m.started_ms),
    );
    if let Some(commit) = &m.git_commit {
        let _ = write!(s, ", spec repository at commit <code>{}</code>", esc(commit));
    }
    if names.len() < spec.stages.len() {
        let _ =
            write!(s, ". This page depends on {} of the run's {} stages, listed here", names.len(), spec.stages.len());
    }
    s.push_str(
        ". Each stage either ran in this run (and says why) or was fresh: its cached result, computed when the \
         table says, was reused because nothing that determines it changed.</p>\n",
    );
    s.push_str(
        "<table><caption>Stages</caption><thead><tr><th>stage</th><th>kind</th><th>method</th><th>status</th>\
         <th>key</th><th>time</th><th style=\"text-align:left\">why it ran, or when it was computed</th></tr></thead><tbody>",
    );
    for st in m.stages.iter().filter(|st| names.contains(st.name.as_str())) {
        // A cached stage: the run that computed it and why (the newest earlier
        // run in which its key ran), then when this run last checked it.
        let computed_by = || {
            history.iter().rev().find_map(|h| {
                h.stages
                    .iter()
                    .find(|l| l.status == StageState::Ran && l.key.is_some() && l.key == st.key)
                    .map(|l| (h, l))
            })
        };
        let why = match st.status {
            StageState::Fresh => match (computed_by(), st.computed_ms) {
                (Some((h, l)), _) => format!(
                    "ran in run {} ({}) because {}; last checked {}",
                    h.run_id,
                    crate::report::utc(l.finished_ms),
                    l.reasons.join("; "),
                    crate::report::utc(m.started_ms)
                ),
                (None, Some([started, finished])) => {
                    format!(
                        "cached: computed {} in {}",
                        crate::report::utc(finished),
                        seconds(finished.saturating_sub(started))
                    )
                }
                (None, None) => "cached".to_string(),
            },
            _ => st.reasons.iter().chain(&st.error).cloned().collect::<Vec<_>>().join("; "),
        };
        let time = if st.status == StageState::Ran { seconds(st.duration_ms) } else { String::new() };
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{time}</td>\
             <td style=\"text-align:left\">{}</td></tr>",
            esc(&st.name),
            esc(&st.kind),
            esc(&st.method),
            st.status.name(),
            st.key.as_deref().map_or("", |k| &k[..12.min(k.len())]),
            esc(&why),
        );
    }
    s.push_str("</tbody></table>\n<h2>Spec</h2>\n<p>");
    let _ = write!(
        s,
        "<code>{}</code>: every stage's parameters as hashed, defaults in grey.",
        esc(&spec.path.display().to_string())
    );
    s.push_str(
        "</p>\n<table><thead><tr><th>stage</th><th>kind / method</th><th>seed</th>\
         <th style=\"text-align:left\">inputs</th><th style=\"text-align:left\">params</th></tr></thead><tbody>",
    );
    for st in shown.iter().map(|&i| &spec.stages[i]) {
        let inputs: Vec<String> = st
            .inputs
            .iter()
            .map(|(name, r)| format!("{} ← {}.{}", esc(name), esc(&r.stage), esc(&r.output)))
            .chain(st.files.iter().map(|(name, f)| format!("{} ← file {}", esc(name), esc(&f.path))))
            .collect();
        let params: Vec<String> = st
            .params
            .iter()
            .map(|(name, value)| {
                let default = st.imp.params().iter().find(|d| d.name == name).and_then(|d| d.default.value());
                let text = format!("{}: {}", esc(name), esc(&value.to_string()));
                if default.as_ref() == Some(value) { format!("<span class=\"default\">{text}</span>") } else { text }
            })
            .collect();
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{} / {}</td><td>{}</td><td class=\"params\">{}</td><td class=\"params\">{}</td></tr>",
            esc(&st.name),
            esc(st.imp.kind().name()),
            esc(st.imp.method()),
            st.seed,
            inputs.join("<br>"),
            params.join(", "),
        );
    }
    s.push_str("</tbody></table>\n");
    s
}
