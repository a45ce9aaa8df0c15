//! `scoreflow stages`: every registered implementation with its parameters
//! (type, default, doc), inputs and outputs (media), printed from the same
//! declarations the validator checks specs against. The README's stage table
//! is [`markdown`]'s output, and a test keeps the two equal.

use std::fmt::Write as _;

use crate::engine::params::{Default, ParamDef};
use crate::engine::stage::{Kind, Registry, Stage};

fn default_text(d: &ParamDef) -> String {
    match d.default {
        Default::Required => "required".into(),
        Default::Optional => "optional".into(),
        _ => d.default.value().map_or_else(String::new, |v| v.to_string()),
    }
}

/// The implementations `kind` and `method` select (all when `None`).
pub fn select<'a>(registry: &'a Registry, kind: Option<Kind>, method: Option<&str>) -> Vec<&'a dyn Stage> {
    let mut v: Vec<&dyn Stage> = registry
        .all()
        .iter()
        .map(|s| &**s)
        .filter(|s| Kind::PUBLIC.contains(&s.kind()))
        .filter(|s| kind.is_none_or(|k| s.kind() == k) && method.is_none_or(|m| s.method() == m))
        .collect();
    v.sort_by_key(|s| (s.kind(), s.method()));
    v
}

/// A readable description of each implementation.
pub fn text(stages: &[&dyn Stage]) -> String {
    let mut s = String::new();
    for st in stages {
        let _ = writeln!(
            s,
            "{} {}: {} (implementation version {})",
            st.kind(),
            st.kind().selector(),
            st.method(),
            st.version()
        );
        if !st.params().is_empty() {
            s.push_str("  params:\n");
            let w = st.params().iter().map(|p| p.name.len()).max().unwrap_or(0);
            let dw = st.params().iter().map(|p| default_text(p).chars().count()).max().unwrap_or(0);
            for p in st.params() {
                let d = default_text(p);
                let pad = dw - d.chars().count();
                let _ = writeln!(s, "    {:w$}  {d}{:pad$}  {}; {}", p.name, "", p.doc, p.ty.expected());
            }
        }
        if !st.inputs().is_empty() {
            s.push_str("  inputs:\n");
            for i in st.inputs() {
                let need = if i.required { "" } else { ", optional" };
                let _ = writeln!(s, "    {}  {}{need}: {}", i.name, i.media, i.doc);
            }
        }
        s.push_str("  outputs:\n");
        for o in st.outputs() {
            let _ = writeln!(s, "    {}  {}: {}", o.name, o.media, o.doc);
        }
        s.push('\n');
    }
    s
}

/// The README's stage table: one row per implementation, parameters with
/// their defaults, inputs and outputs with their media.
pub fn markdown(stages: &[&dyn Stage]) -> String {
    let esc = |s: String| s.replace('|', "\\|");
    let mut s =
        String::from("| kind | selector: method | params (default) | inputs | outputs |\n|---|---|---|---|---|\n");
    for st in stages {
        let params: Vec<String> = st.params().iter().map(|p| format!("{} ({})", p.name, default_text(p))).collect();
        let cols = |c: &[&str]| if c.is_empty() { String::new() } else { format!(" ({})", c.join(", ")) };
        let inputs: Vec<String> = st
            .inputs()
            .iter()
            .map(|i| {
                let need = if i.required { "" } else { ", optional" };
                format!("`{}` {}{}{need}", i.name, i.media, cols(st.input_columns(i.name)))
            })
            .collect();
        let outputs: Vec<String> = st
            .outputs()
            .iter()
            .map(|o| format!("`{}` {}{}", o.name, o.media, cols(st.output_columns(o.name).unwrap_or(&[]))))
            .collect();
        let _ = writeln!(
            s,
            "| {} | {}: `{}` | {} | {} | {} |",
            st.kind(),
            st.kind().selector(),
            st.method(),
            esc(params.join(", ")),
            esc(inputs.join(", ")),
            esc(outputs.join(", "))
        );
    }
    s
}
