//! One-off changes to a spec from the command line, applied to its YAML tree
//! before validation, so they are checked exactly like the file's own text:
//!
//! ```text
//! scoreflow run pipelines/smeme.yaml --set stages.tuned.params.beta=2.0
//! scoreflow run pipelines/smeme.yaml --set seed=7 --matrix stages.tuned.params.beta=0.5,0.9,2
//! ```
//!
//! `--set PATH=VALUE` sets the value at a dotted path (`seed`,
//! `stages.S.seed`, `stages.S.params.P`, `stages.S.resources.time`), creating
//! the mappings on the way; `VALUE` is read as YAML (`2.0` is a float, `[a, b]`
//! a list, `"7"` a string). `--matrix TARGET=V1,V2,...` (or `=[V1, V2]`) adds
//! the axis to the spec's `matrix:`, or replaces the axis of that target. An
//! error in a value names the option it came from instead of a line of the
//! file. The changed spec is keyed like a file with that text: `--set` to a
//! value a stage already has changes nothing.

use super::yaml::{self, Node, NodeValue, Pos};

/// One `--set` or `--matrix` option.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// As given, for messages: `--set stages.tuned.params.beta=2.0`.
    pub text: String,
    /// `--matrix` (an axis) rather than `--set` (a value).
    pub matrix: bool,
    /// The dotted path (`--set`) or matrix target (`--matrix`).
    pub path: String,
    /// The value's YAML text.
    pub value: String,
}

impl Override {
    /// Read `PATH=VALUE` given to `--set` (`matrix: false`) or `--matrix`.
    pub fn parse(matrix: bool, arg: &str) -> Result<Override, String> {
        let flag = if matrix { "--matrix" } else { "--set" };
        let (path, value) = arg
            .split_once('=')
            .filter(|(p, _)| !p.trim().is_empty())
            .ok_or_else(|| format!("{flag} {arg}: expected PATH=VALUE, e.g. {flag} stages.tuned.params.beta=2.0"))?;
        let path = path.trim().to_string();
        if !matrix && path.split('.').any(str::is_empty) {
            return Err(format!("{flag} {arg}: `{path}` is not a dotted path"));
        }
        let value = value.trim();
        // A bracketed list must be the whole value: `[1,2],[3]` is not read as
        // `[1,2]` with the rest dropped.
        if matrix && value.starts_with('[') && list_end(value) != Some(value.len() - 1) {
            return Err(format!(
                "{flag} {arg}: the values must be one list, `{path}=V1,V2,…` or `{path}=[V1, V2, …]`, with nothing after its `]`"
            ));
        }
        let value = if matrix && !value.starts_with('[') { format!("[{value}]") } else { value.to_string() };
        Ok(Override { text: format!("{flag} {arg}"), matrix, path, value })
    }
}

/// The byte index of the `]` that closes the list opening `text`, skipping
/// brackets inside quotes; `None` when it is never closed.
fn list_end(text: &str) -> Option<usize> {
    let (mut depth, mut quote) = (0usize, None::<char>);
    for (i, ch) in text.char_indices() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(ch),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Give `node` and everything under it the position that stands for option
/// `n` (line 0: not a line of the file; see [`super::Collector::err`]).
fn mark(node: &mut Node, n: usize) {
    node.pos = Pos { line: 0, col: n };
    match &mut node.value {
        NodeValue::Seq(items) => items.iter_mut().for_each(|i| mark(i, n)),
        NodeValue::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            mark(k, n);
            mark(v, n)
        }),
        _ => {}
    }
}

fn scalar(text: &str, n: usize) -> Node {
    Node { pos: Pos { line: 0, col: n }, value: NodeValue::Scalar { text: text.to_string(), plain: true } }
}

/// The value of key `key` in mapping `node`, added (an empty mapping) when absent.
fn child<'a>(node: &'a mut Node, key: &str, n: usize) -> Result<&'a mut Node, String> {
    if !matches!(node.value, NodeValue::Map(_)) {
        return Err(format!("cannot set `{key}` inside {}, which is not a mapping", node.describe()));
    }
    let NodeValue::Map(entries) = &mut node.value else { unreachable!("checked above") };
    // The last of duplicate keys is the one validation reports as given twice;
    // setting the last keeps that error.
    let i = match entries.iter().rposition(|(k, _)| k.as_str() == Some(key)) {
        Some(i) => i,
        None => {
            entries.push((scalar(key, n), Node { pos: Pos { line: 0, col: n }, value: NodeValue::Map(Vec::new()) }));
            entries.len() - 1
        }
    };
    Ok(&mut entries[i].1)
}

/// Apply the options, in order, to the spec's tree. Option `i` (0-based) marks
/// its nodes with position `0:i+1`. Errors: (option index, message).
pub(super) fn apply(root: &mut Node, overrides: &[Override]) -> Vec<(usize, String)> {
    let mut errors = Vec::new();
    for (i, o) in overrides.iter().enumerate() {
        let n = i + 1;
        let mut value = match yaml::parse(&o.value) {
            Ok(Some(v)) => v,
            Ok(None) => scalar("", n),
            Err(e) => {
                errors.push((i, format!("the value is not valid YAML: {}", e.message)));
                continue;
            }
        };
        mark(&mut value, n);
        let placed = if o.matrix {
            child(root, "matrix", n).and_then(|m| {
                *child(m, &o.path, n)? = value;
                Ok(())
            })
        } else {
            let segments: Vec<&str> = o.path.split('.').collect();
            let (last, parents) = segments.split_last().expect("a path has a segment");
            parents.iter().try_fold(&mut *root, |node, seg| child(node, seg, n)).and_then(|node| {
                *child(node, last, n)? = value;
                Ok(())
            })
        };
        if let Err(e) = placed {
            errors.push((i, e));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        let o = Override::parse(true, "seed=1,2,3").unwrap();
        assert_eq!((o.path.as_str(), o.value.as_str()), ("seed", "[1,2,3]"));
        assert_eq!(Override::parse(true, "seed=[1, 2]").unwrap().value, "[1, 2]");
        let s = Override::parse(false, "stages.a.params.lr=0.01").unwrap();
        assert_eq!(
            (s.path.as_str(), s.value.as_str(), s.text.as_str()),
            ("stages.a.params.lr", "0.01", "--set stages.a.params.lr=0.01")
        );
        assert!(Override::parse(false, "lr").is_err());
        assert!(Override::parse(false, "=1").is_err());
        assert!(Override::parse(false, "stages..x=1").is_err());
        // Nothing after the list is dropped silently: it is an error.
        for bad in ["seed=[1,2],[3]", "seed=[1,2]3", "seed=[1,2"] {
            let e = Override::parse(true, bad).unwrap_err();
            assert!(e.contains("must be one list"), "{bad}: {e}");
        }
        assert_eq!(Override::parse(true, "x=[\"a]\", [1, 2]]").unwrap().value, "[\"a]\", [1, 2]]");
    }
}
