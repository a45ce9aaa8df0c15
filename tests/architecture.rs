//! The house rules, read from the source: which top-level module may name
//! which (`crate::x` paths in code, comments left out), no cycle between
//! top-level modules, and no file over 700 lines without a reason at its top.
//!
//! * the engine names nothing outside `crate::engine` (but the `params!`
//!   macro it exports at the crate root, and `checkout`, the tests' path
//!   helper): workloads reach it through the registry, never the reverse;
//! * the numerics (`numerics::{nn, sde, metrics, energy, mcmc, temporal,
//!   rng}`) know no stage: they name nothing but themselves — no engine, no
//!   workload, no command, no CLI (but `checkout`, the tests' path helper).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, with its text.
fn sources(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&p).unwrap();
            out.push((p, text));
        }
    }
}

/// The `crate::x…` paths a line of code names (its comment left out), as
/// `x` or `x::y`; a grouped `use crate::{a, b::c}` names each.
fn named(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or_default();
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or_default();
            out.extend(inner.split(',').map(|p| path_of(p.trim())).filter(|p| !p.is_empty()));
        } else {
            out.push(path_of(rest));
        }
    }
    out
}

fn path_of(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect::<String>()
        .trim_end_matches(':')
        .to_string()
}

/// The top-level module a source file belongs to (`engine`, `cli`, …).
fn top(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.iter().next().unwrap().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// Which top-level module names which, and every such use: (from, the path
/// named, `file:line`).
type Uses = Vec<(String, String, String)>;

fn graph() -> (BTreeMap<String, BTreeSet<String>>, Uses) {
    let src = scoreflow::checkout("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut uses = Vec::new();
    for (file, text) in &files {
        let from = top(&src, file);
        if from == "lib" || from == "main" {
            continue;
        }
        let rel = file.strip_prefix(&src).unwrap().display().to_string();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for path in named(line) {
                let to = path.split("::").next().unwrap_or_default().to_string();
                if to != from && !to.is_empty() {
                    edges.entry(from.clone()).or_default().insert(to.clone());
                    uses.push((from.clone(), path, format!("src/{rel}:{}", n + 1)));
                }
            }
        }
    }
    (edges, uses)
}

#[test]
fn dependencies_point_one_way() {
    let (_, uses) = graph();
    let mut bad = Vec::new();
    for (from, path, at) in &uses {
        let allowed = match from.as_str() {
            "engine" => ["params", "checkout"].iter().any(|a| path == a || path.starts_with(&format!("{a}::"))),
            "numerics" => path == "checkout" || path.starts_with("numerics::"),
            _ => true,
        };
        if !allowed {
            bad.push(format!("{at}: {from} names crate::{path}"));
        }
    }
    assert!(bad.is_empty(), "imports against the house rules:\n{}", bad.join("\n"));
}

#[test]
fn no_cycle_between_top_level_modules() {
    let (edges, uses) = graph();
    // Depth-first search for a back edge, reporting the cycle's path.
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in edges.keys() {
        if let Some(cycle) = visit(n, &edges, &mut Vec::new(), &mut done) {
            let witness: Vec<String> = cycle
                .windows(2)
                .filter_map(|w| uses.iter().find(|(f, p, _)| *f == w[0] && p.starts_with(&w[1])))
                .map(|(f, p, at)| format!("  {at}: {f} names crate::{p}"))
                .collect();
            panic!("top-level modules in a cycle: {}\n{}", cycle.join(" → "), witness.join("\n"));
        }
    }
}

/// A file over 700 lines says why at its top (within its first five lines:
/// `// Over 700 lines: …`), or is split.
#[test]
fn long_files_say_why() {
    let src = scoreflow::checkout("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut bad = Vec::new();
    for (file, text) in &files {
        let n = text.lines().count();
        if n > 700 && !text.lines().take(5).any(|l| l.starts_with("// Over 700 lines:")) {
            bad.push(format!("{} ({n} lines)", file.strip_prefix(&src).unwrap().display()));
        }
    }
    assert!(bad.is_empty(), "files over 700 lines without `// Over 700 lines: <why>` at the top:\n{}", bad.join("\n"));
}

/// The functions of `text` longer than `limit` lines: (first line, name,
/// length), a function running from its `fn` line to the closing brace at
/// the same indentation.
fn long_functions(text: &str, limit: usize) -> Vec<(usize, String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = line.trim_start();
        let indent = line.len() - code.len();
        let rest = ["pub fn ", "pub(crate) fn ", "pub(super) fn ", "fn "].iter().find_map(|p| code.strip_prefix(p));
        let Some(rest) = rest else { continue };
        if line.trim_end().ends_with(';') {
            continue; // a trait's declaration
        }
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let end = lines[i + 1..]
            .iter()
            .position(|l| l.len() - l.trim_start().len() == indent && l.trim_start().starts_with('}'))
            .map_or(lines.len(), |k| i + 1 + k);
        let n = end - i + 1;
        if n > limit {
            out.push((i + 1, name, n));
        }
    }
    out
}

/// A function over 150 lines says why on the line above it (`// Over 150
/// lines: …`: a hand-written backward pass, a figure's assembly), or is split.
#[test]
fn long_functions_say_why() {
    let src = scoreflow::checkout("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut bad = Vec::new();
    for (file, text) in &files {
        let lines: Vec<&str> = text.lines().collect();
        for (at, name, n) in long_functions(text, 150) {
            let above = lines[..at - 1].iter().rev().take_while(|l| {
                let t = l.trim_start();
                t.starts_with("//") || t.starts_with("#[")
            });
            if !above.into_iter().any(|l| l.trim_start().starts_with("// Over 150 lines:")) {
                bad.push(format!("{}:{at}: fn {name} ({n} lines)", file.strip_prefix(&src).unwrap().display()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "functions over 150 lines without `// Over 150 lines: <why>` above them:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_function_scanner_measures_to_the_closing_brace() {
    let text = "fn a() {\n    x();\n}\n    pub fn b(&self) {\n        if y {\n        }\n    }\n    fn c(&self);\n";
    assert_eq!(long_functions(text, 2), [(1, "a".to_string(), 3), (4, "b".to_string(), 4)]);
}

#[test]
fn the_scanner_sees_grouped_and_plain_paths_and_skips_comments() {
    assert_eq!(named("use crate::{engine::cache, metrics};"), ["engine::cache", "metrics"]);
    assert_eq!(named("let x = crate::compare::median(&mut v); // crate::publish"), ["compare::median"]);
    assert_eq!(named("$crate::engine::params::ParamDef"), Vec::<String>::new());
}
