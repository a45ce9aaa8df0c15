//! Reports: the HTML page shell every report layout shares, and the figures
//! ([`plot`]). A workload's report stage draws its figures and fills the page;
//! `scoreflow run` adds the run's section at [`STAGES_MARKER`]
//! ([`crate::publish`]).

pub mod plot;

use std::fmt::Write as _;

use crate::engine::frame::Table;
use crate::engine::stage::StageError;

/// The marker that `scoreflow run` replaces with the run's stage list.
pub const STAGES_MARKER: &str = "<!-- scoreflow:stages -->";

/// A plot error as a stage error.
pub fn plot_err(e: plot::PlotError) -> StageError {
    StageError::Failed(e.to_string())
}

/// Trailing mean over `window` steps (shorter at the start).
pub fn moving_mean(steps: &[i64], values: &[f64], window: usize) -> Vec<(f64, f64)> {
    let mut sum = 0.0;
    (0..values.len())
        .map(|i| {
            sum += values[i];
            if i >= window {
                sum -= values[i - window];
            }
            (steps[i] as f64, sum / (i + 1).min(window) as f64)
        })
        .collect()
}

/// Text escaped for an HTML text node.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// An HTML table of a scoreflow table (numbers to 4 decimals).
pub fn html_table(t: &Table, caption: &str) -> String {
    html_table_with(t, caption, 4)
}

/// An HTML table of a scoreflow table, numbers to `decimals` decimals.
pub fn html_table_with(t: &Table, caption: &str, decimals: usize) -> String {
    use crate::engine::frame::ColumnData;
    let mut s = format!("<table><caption>{}</caption><thead><tr>", esc(caption));
    for c in &t.columns {
        let _ = write!(s, "<th>{}</th>", esc(&c.name));
    }
    s.push_str("</tr></thead><tbody>");
    for i in 0..t.num_rows() {
        s.push_str("<tr>");
        for c in &t.columns {
            let cell = match &c.data {
                ColumnData::F64(v) => format!("{:.*}", decimals, v[i]),
                ColumnData::F32(v) => format!("{:.*}", decimals, v[i]),
                ColumnData::I64(v) => v[i].to_string(),
                ColumnData::Bool(v) => v[i].to_string(),
                ColumnData::Str(v) => esc(&v[i]),
            };
            let _ = write!(s, "<td>{cell}</td>");
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>\n");
    s
}

/// The page shell shared by report layouts: `intro` is HTML (the result and
/// the reference numbers), then the figures, then `tables` (HTML), then the
/// marker where `scoreflow run` puts the run's stage table and the spec.
pub fn page(title: &str, intro: &str, figures: &[(&str, &str)], tables: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>\
body{{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1240px;color:#222}}\
figure{{margin:1.5em 0}}img{{max-width:100%;border:1px solid #ddd}}figcaption{{color:#555;font-size:.95em}}\
table{{border-collapse:collapse;margin:1em 0;font-size:.9em}}td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}\
th{{background:#f3f3f3}}caption{{text-align:left;font-weight:bold;margin-bottom:.3em}}\
td:first-child{{text-align:left}}p{{max-width:60em;line-height:1.45}}h2{{margin-top:1.6em;border-bottom:1px solid #ddd}}\
code{{font-size:.9em}}td.params{{text-align:left;font-size:.92em}}.default{{color:#888}}\
</style></head><body>\n<h1>{t}</h1>\n{intro}\n<h2>Figures</h2>\n",
        t = esc(title),
    );
    for (name, caption) in figures {
        let _ = writeln!(
            s,
            "<figure><img src=\"{name}.png\" alt=\"{c}\"><figcaption>{c}</figcaption></figure>",
            c = esc(caption)
        );
    }
    s.push_str("<h2>Tables</h2>\n");
    s.push_str(tables);
    s.push_str(STAGES_MARKER);
    s.push_str("\n</body></html>\n");
    s
}

/// A Unix time in milliseconds as `2026-11-29 21:03:07 UTC`.
pub fn utc(ms: u64) -> String {
    use std::time::{Duration, UNIX_EPOCH};
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms))
        .to_string()
        .replace('T', " ")
        .replace('Z', " UTC")
}
