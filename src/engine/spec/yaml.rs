//! A YAML tree that remembers where every node came from.
//!
//! serde_yaml (the usual choice) deserialises into types but forgets positions, and
//! it aborts on the first error; scoreflow reports *every* spec error at once with
//! `file:line:column`. So the spec is loaded in two steps: yaml-rust2's event parser
//! (a complete YAML 1.2 parser) feeds this small builder, which keeps each node's
//! start marker and keeps duplicate mapping keys (so a duplicate stage name is one
//! more error in the list, not a fatal load error). Typing and validation happen
//! later, in [`super::validate`].
//!
//! Anchors and aliases work as YAML defines them: `&name` on a node, `*name`
//! elsewhere stands for a copy of it (its positions are the anchor's). Mapping
//! merge keys (`<<: *name`, or `<<: [*a, *b]`) copy the entries of the named
//! mappings that the mapping does not set itself — the usual way to share
//! parameters between stages:
//!
//! ```yaml
//! sampler: &pc { sampler: pc, steps: 1000, snr: 0.15 }
//! ...
//!     params: { <<: *pc, n_samples: 4096 }
//! ```

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::engine::params::Raw;

/// A 1-based line and column in the spec file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// A YAML node with its position.
#[derive(Debug, Clone)]
pub struct Node {
    pub pos: Pos,
    pub value: NodeValue,
}

#[derive(Debug, Clone)]
pub enum NodeValue {
    /// A scalar's text; `plain` is false for quoted and block scalars, which are
    /// always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Entries in file order; duplicate keys are kept.
    Map(Vec<(Node, Node)>),
    /// An alias (`*name`) whose anchor was not defined before it.
    Alias,
}

impl Node {
    /// The scalar text, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// A short description of the node for error messages.
    pub fn describe(&self) -> String {
        match &self.value {
            NodeValue::Scalar { text, .. } => format!("`{text}`"),
            NodeValue::Seq(v) if v.is_empty() => "an empty list".into(),
            NodeValue::Seq(_) => "a list".into(),
            NodeValue::Map(v) if v.is_empty() => "an empty mapping".into(),
            NodeValue::Map(_) => "a mapping".into(),
            NodeValue::Alias => "an alias to an undefined anchor".into(),
        }
    }

    /// The YAML 1.2 core-schema reading of this node as a raw value.
    pub fn to_raw(&self) -> Raw {
        match &self.value {
            NodeValue::Scalar { text, plain: false } => Raw::Str(text.clone()),
            NodeValue::Scalar { text, plain: true } => resolve_plain(text),
            NodeValue::Seq(items) => Raw::List(items.iter().map(Node::to_raw).collect()),
            NodeValue::Map(entries) => Raw::Map(
                entries.iter().map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v.to_raw())).collect(),
            ),
            NodeValue::Alias => Raw::Null,
        }
    }
}

/// Core-schema resolution of a plain scalar: null, booleans, integers, floats,
/// otherwise a string.
fn resolve_plain(text: &str) -> Raw {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Raw::Null,
        "true" | "True" | "TRUE" => return Raw::Bool(true),
        "false" | "False" | "FALSE" => return Raw::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" => return Raw::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Raw::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Raw::Float(f64::NAN),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Raw::Int(i);
    }
    let looks_numeric = text.chars().next().is_some_and(|c| c.is_ascii_digit() || "+-.".contains(c))
        && text.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c));
    if looks_numeric && let Ok(f) = text.parse::<f64>() {
        return Raw::Float(f);
    }
    Raw::Str(text.to_string())
}

/// A YAML syntax error.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
    /// Valid YAML past one of the spec's size limits ([`MAX_NODES`],
    /// [`MAX_DEPTH`]), not a syntax error.
    pub limit: bool,
}

struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    /// Completed anchored nodes by anchor id, with their sizes in nodes.
    anchors: std::collections::HashMap<usize, (Node, usize)>,
    /// Nodes in the tree so far, aliases counted as the copies they are.
    nodes: usize,
    /// Where the tree outgrew [`MAX_NODES`] or [`MAX_DEPTH`], and which
    /// (nothing is copied or nested after it).
    overflow: Option<(Pos, String)>,
    /// Documents begun so far, and where a second one began (a spec is one).
    docs: usize,
    second: Option<Pos>,
    /// Levels opened past [`MAX_DEPTH`] and not yet closed.
    deep: usize,
}

/// The most nodes a spec may expand to. A large grid spec has a few thousand;
/// the cap stops an alias bomb (each level repeating the one before) from
/// exhausting memory before anything is checked.
pub const MAX_NODES: usize = 200_000;

/// The deepest a spec may nest (a spec needs a handful of levels; a file of
/// ten thousand `[` would otherwise recurse past the stack in every walk).
pub const MAX_DEPTH: usize = 128;

/// The number of nodes in a tree.
fn size(node: &Node) -> usize {
    1 + match &node.value {
        NodeValue::Seq(items) => items.iter().map(size).sum(),
        NodeValue::Map(entries) => entries.iter().map(|(k, v)| size(k) + size(v)).sum(),
        _ => 0,
    }
}

enum Frame {
    /// Start position, anchor id (0: none), items.
    Seq(Pos, usize, Vec<Node>),
    Map(Pos, usize, Vec<(Node, Node)>, Option<Node>),
}

/// Expand merge keys: `<<: mapping` or `<<: [mappings]` adds the entries whose
/// keys the mapping does not set itself (earlier merged mappings win over later
/// ones, as YAML's merge-key spec says).
fn merge_keys(entries: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
    if !entries.iter().any(|(k, _)| k.as_str() == Some("<<")) {
        return entries;
    }
    let (merges, mut own): (Vec<_>, Vec<_>) = entries.into_iter().partition(|(k, _)| k.as_str() == Some("<<"));
    for (key, value) in merges {
        let sources = match value.value {
            NodeValue::Seq(items) => items,
            _ => vec![value],
        };
        for src in sources {
            match src.value {
                NodeValue::Map(src_entries) => {
                    for (k, v) in src_entries {
                        if !own.iter().any(|(o, _)| o.as_str().is_some() && o.as_str() == k.as_str()) {
                            own.push((k, v));
                        }
                    }
                }
                // Not a mapping: keep the entry, so validation reports it.
                other => own.push((key.clone(), Node { pos: src.pos, value: other })),
            }
        }
    }
    own
}

fn pos(m: Marker) -> Pos {
    Pos { line: m.line(), col: m.col() + 1 }
}

impl Builder {
    fn push(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq(_, _, items)) => items.push(node),
            Some(Frame::Map(_, _, entries, pending)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => entries.push((key, node)),
            },
        }
    }
}

impl Builder {
    fn push_anchored(&mut self, node: Node, anchor: usize) {
        self.nodes += 1;
        if anchor > 0 {
            let n = size(&node);
            self.anchors.insert(anchor, (node.clone(), n));
        }
        self.push(node);
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::DocumentStart => {
                self.docs += 1;
                if self.docs == 2 {
                    self.second = Some(pos(mark));
                }
            }
            Event::Scalar(text, style, anchor, _) => {
                let plain = matches!(style, TScalarStyle::Plain);
                self.push_anchored(Node { pos: pos(mark), value: NodeValue::Scalar { text, plain } }, anchor);
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if self.stack.len() >= MAX_DEPTH => {
                if self.overflow.is_none() {
                    self.overflow =
                        Some((pos(mark), format!("the spec nests deeper than {MAX_DEPTH} levels here; flatten it")));
                }
                // Count the level so that its end balances; keep nothing of it.
                self.deep += 1;
            }
            Event::SequenceEnd | Event::MappingEnd if self.deep > 0 => self.deep -= 1,
            _ if self.deep > 0 => {}
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq(pos(mark), anchor, Vec::new())),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map(pos(mark), anchor, Vec::new(), None)),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq(p, a, items)) => (Node { pos: p, value: NodeValue::Seq(items) }, a),
                    Some(Frame::Map(p, a, entries, _)) => {
                        (Node { pos: p, value: NodeValue::Map(merge_keys(entries)) }, a)
                    }
                    None => return,
                };
                self.push_anchored(node, anchor);
            }
            Event::Alias(id) => {
                let n = self.anchors.get(&id).map_or(1, |(_, n)| *n);
                if self.overflow.is_none() && self.nodes + n > MAX_NODES {
                    self.overflow = Some((
                        pos(mark),
                        format!(
                            "this alias makes the spec more than {MAX_NODES} nodes (each alias is a copy of its anchor); a spec that large is a mistake or an attack"
                        ),
                    ));
                }
                let node = match self.anchors.get(&id) {
                    Some((node, n)) if self.overflow.is_none() => {
                        self.nodes += n;
                        node.clone()
                    }
                    _ => Node { pos: pos(mark), value: NodeValue::Alias },
                };
                self.push(node);
            }
            _ => {}
        }
    }
}

/// Parse YAML text into a positioned tree: one document (a second is an
/// error). A UTF-8 byte-order mark at the start is ignored.
pub fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut builder = Builder {
        stack: Vec::new(),
        root: None,
        anchors: Default::default(),
        nodes: 0,
        overflow: None,
        deep: 0,
        docs: 0,
        second: None,
    };
    let mut parser = Parser::new_from_str(text);
    // Every document is read (a second one is an error, not dropped unread).
    parser.load(&mut builder, true).map_err(|e| {
        let mut at = pos(*e.marker());
        // The scanner reports tab errors after the tab on its line, or at the end
        // of the token before it (a line early); point at the tab itself: the
        // first on the marker's line up to the marker, else the next one after it.
        if e.info().contains("tab") {
            let chars: Vec<char> = text.chars().collect();
            let m = e.marker().index().min(chars.len());
            let line_start = chars[..m].iter().rposition(|c| *c == '\n').map_or(0, |i| i + 1);
            let tab = chars[line_start..m]
                .iter()
                .position(|c| *c == '\t')
                .map(|i| line_start + i)
                .or_else(|| chars[m..].iter().position(|c| *c == '\t').map(|i| m + i));
            if let Some(t) = tab {
                let line = chars[..t].iter().filter(|c| **c == '\n').count() + 1;
                let col = t - chars[..t].iter().rposition(|c| *c == '\n').map_or(0, |i| i + 1) + 1;
                at = Pos { line, col };
            }
        }
        SyntaxError { pos: at, message: e.info().to_string(), limit: false }
    })?;
    if let Some((pos, message)) = builder.overflow {
        return Err(SyntaxError { pos, message, limit: true });
    }
    if let Some(pos) = builder.second {
        let message = "a second YAML document starts here; a spec is one document".to_string();
        return Err(SyntaxError { pos, message, limit: true });
    }
    Ok(builder.root)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few lines of aliases, each repeating the one before nine times,
    /// would expand to billions of nodes: refused at the alias that crosses
    /// the cap, quickly and in little memory.
    #[test]
    fn an_alias_bomb_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("more than 200000 nodes"), "{}", err.message);
        assert!(err.pos.line > 1);
        // Ordinary aliases are fine.
        assert!(parse("a: &x [1, 2]\nb: *x\n").is_ok());
    }

    /// Deep nesting is refused before any walk could overflow the stack.
    #[test]
    fn nesting_past_the_limit_is_refused() {
        let text = format!("a: {}{}\n", "[".repeat(200), "]".repeat(200));
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("deeper than 128"), "{}", err.message);
        // Far deeper, the parser's own limit answers first: an error either way.
        let text = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(&text).is_err());
        assert!(parse(&format!("a: {}1{}\n", "[".repeat(20), "]".repeat(20))).is_ok());
    }

    #[test]
    fn positions_are_one_based() {
        let root = parse("a: 1\nb:\n  c: x\n").unwrap().unwrap();
        let NodeValue::Map(entries) = &root.value else { panic!() };
        assert_eq!(entries[0].0.pos, Pos { line: 1, col: 1 });
        assert_eq!(entries[0].1.pos, Pos { line: 1, col: 4 });
        let NodeValue::Map(inner) = &entries[1].1.value else { panic!() };
        assert_eq!(inner[0].0.pos, Pos { line: 3, col: 3 });
    }

    #[test]
    fn duplicates_are_kept() {
        let root = parse("a: 1\na: 2\n").unwrap().unwrap();
        let NodeValue::Map(entries) = &root.value else { panic!() };
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn scalars_resolve_like_yaml_core() {
        assert_eq!(resolve_plain("4096"), Raw::Int(4096));
        assert_eq!(resolve_plain("1e-8"), Raw::Float(1e-8));
        assert_eq!(resolve_plain("0.05"), Raw::Float(0.05));
        assert_eq!(resolve_plain("true"), Raw::Bool(true));
        assert_eq!(resolve_plain("triangles"), Raw::Str("triangles".into()));
        assert_eq!(resolve_plain("e5"), Raw::Str("e5".into()));
        let root = parse("a: '12'\n").unwrap().unwrap();
        let NodeValue::Map(entries) = &root.value else { panic!() };
        assert_eq!(entries[0].1.to_raw(), Raw::Str("12".into()));
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let text = "base: &b { steps: 10, snr: 0.1 }\nx: *b\ny: { <<: *b, snr: 0.2 }\nz: &s 7\nw: *s\n";
        let root = parse(text).unwrap().unwrap();
        let NodeValue::Map(entries) = &root.value else { panic!() };
        let raw = |i: usize| entries[i].1.to_raw();
        assert_eq!(raw(1), raw(0), "an alias is a copy of its anchor");
        let Raw::Map(y) = raw(2) else { panic!() };
        let get = |k: &str| y.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("snr"), Some(Raw::Float(0.2)), "the mapping's own key wins");
        assert_eq!(get("steps"), Some(Raw::Int(10)), "merged from the anchor");
        assert_eq!(get("<<"), None);
        assert_eq!(y.len(), 2);
        assert_eq!(raw(4), Raw::Int(7));
        // An alias to nothing stays an alias, for validation to report.
        let root = parse("a: *nope\n");
        assert!(
            root.is_err()
                || matches!(&root.unwrap().unwrap().value, NodeValue::Map(e) if matches!(e[0].1.value, NodeValue::Alias))
        );
    }

    #[test]
    fn a_tab_is_reported_where_it_is() {
        // The scanner stops at the end of `generate` on line 4; the tab is on line 5.
        let err = parse("name: x\nstages:\n  a:\n    kind: generate\n\tparams: {}\n").unwrap_err();
        assert_eq!(err.pos, Pos { line: 5, col: 1 }, "{}", err.message);
        let err = parse("a:\n  b:\n\t  c: 1\n").unwrap_err();
        assert_eq!(err.pos, Pos { line: 3, col: 1 }, "{}", err.message);
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        let root = parse("\u{feff}name: x\n").unwrap().unwrap();
        let NodeValue::Map(entries) = &root.value else { panic!() };
        assert_eq!(entries[0].0.as_str(), Some("name"));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1);
    }
}
