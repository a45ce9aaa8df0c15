//! A YAML tree that remembers where every node came from.
//!
//! serde_yaml (the usual choice) deserialises into types but forgets positions, and
//! it aborts on the first error; scoreflow reports *every* spec error at once with
//! `file:line:column`. So the spec is loaded in two steps: yaml-rust2's event parser
//! (a complete YAML 1.2 parser) feeds this small builder, which keeps each node's
//! start marker and keeps duplicate mapping keys (so a duplicate stage name is one
//! more error in the list, not a fatal load error). Typing and validation happen
//! later, in [`super::validate`].

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::params::Raw;

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
    /// An alias (`*name`): not supported in specs.
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
            NodeValue::Seq(_) => "a list".into(),
            NodeValue::Map(_) => "a mapping".into(),
            NodeValue::Alias => "an alias".into(),
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
}

struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
}

enum Frame {
    Seq(Pos, Vec<Node>),
    Map(Pos, Vec<(Node, Node)>, Option<Node>),
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
            Some(Frame::Seq(_, items)) => items.push(node),
            Some(Frame::Map(_, entries, pending)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => entries.push((key, node)),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, style, _, _) => {
                let plain = matches!(style, TScalarStyle::Plain);
                self.push(Node { pos: pos(mark), value: NodeValue::Scalar { text, plain } });
            }
            Event::SequenceStart(..) => self.stack.push(Frame::Seq(pos(mark), Vec::new())),
            Event::MappingStart(..) => self.stack.push(Frame::Map(pos(mark), Vec::new(), None)),
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Frame::Seq(p, items)) => Node { pos: p, value: NodeValue::Seq(items) },
                    Some(Frame::Map(p, entries, _)) => Node { pos: p, value: NodeValue::Map(entries) },
                    None => return,
                };
                self.push(node);
            }
            Event::Alias(_) => self.push(Node { pos: pos(mark), value: NodeValue::Alias }),
            _ => {}
        }
    }
}

/// Parse YAML text into a positioned tree (the first document only).
pub fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let mut builder = Builder { stack: Vec::new(), root: None };
    let mut parser = Parser::new_from_str(text);
    parser
        .load(&mut builder, false)
        .map_err(|e| SyntaxError { pos: pos(*e.marker()), message: e.info().to_string() })?;
    Ok(builder.root)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1);
    }
}
