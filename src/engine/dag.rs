//! The stage graph: who feeds whom, in which order, and drawings of it.
//!
//! Built with petgraph from a validated [`Spec`]: one node per stage, one edge per
//! distinct upstream stage. Validation has ruled out cycles (the spec module
//! reports one with the other spec errors, naming its path), so the graph is a
//! DAG and [`Dag::order`] is a topological order that follows file order where
//! the edges leave a choice, so plans and printouts are stable.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::engine::spec::Spec;

/// The dependency graph of a spec. Node weights are stage indices into `spec.stages`.
pub struct Dag {
    graph: DiGraph<usize, ()>,
    /// A topological order of stage indices.
    pub order: Vec<usize>,
}

fn build_graph(spec: &Spec) -> DiGraph<usize, ()> {
    spec.graph()
}

impl Dag {
    /// Build the DAG of a validated (hence acyclic) spec.
    pub fn new(spec: &Spec) -> Dag {
        let graph = build_graph(spec);
        debug_assert!(toposort(&graph, None).is_ok(), "validated specs are acyclic");
        // Kahn's algorithm, always taking the ready stage that comes first in the file.
        let n = graph.node_count();
        let mut indegree: Vec<usize> =
            (0..n).map(|i| graph.edges_directed(NodeIndex::new(i), petgraph::Direction::Incoming).count()).collect();
        let mut ready: BTreeSet<usize> = (0..n).filter(|i| indegree[*i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop_first() {
            order.push(graph[NodeIndex::new(i)]);
            for e in graph.edges(NodeIndex::new(i)) {
                let t = e.target().index();
                indegree[t] -= 1;
                if indegree[t] == 0 {
                    ready.insert(t);
                }
            }
        }
        Dag { graph, order }
    }

    /// Indices of the stages that `stage` reads from.
    pub fn upstream(&self, stage: usize) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .graph
            .edges_directed(NodeIndex::new(stage), petgraph::Direction::Incoming)
            .map(|e| self.graph[e.source()])
            .collect();
        v.sort();
        v
    }

    /// `stage` and everything upstream of it.
    pub fn ancestors_of(&self, roots: &[usize]) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<usize> = roots.to_vec();
        while let Some(s) = stack.pop() {
            if seen.insert(s) {
                stack.extend(self.upstream(s));
            }
        }
        seen
    }

    /// Graphviz DOT.
    pub fn to_dot(&self, spec: &Spec) -> String {
        let mut out =
            format!("digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n", spec.name);
        for &i in &self.order {
            let s = &spec.stages[i];
            let _ = writeln!(out, "  \"{}\" [label=\"{}\\n{} ({})\"];", s.name, s.name, s.imp.kind(), s.imp.method());
        }
        for &i in &self.order {
            let s = &spec.stages[i];
            for (input, r) in &s.inputs {
                let _ = writeln!(out, "  \"{}\" -> \"{}\" [label=\"{} → {}\"];", r.stage, s.name, r.output, input);
            }
        }
        out.push_str("}\n");
        out
    }

    /// A plain-text listing in topological order.
    pub fn to_text(&self, spec: &Spec) -> String {
        let mut out = String::new();
        let width = spec.stages.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for &i in &self.order {
            let s = &spec.stages[i];
            let ins: Vec<String> = s
                .inputs
                .iter()
                .map(|(k, r)| format!("{k} ← {r}"))
                .chain(s.files.iter().map(|(k, f)| format!("{k} ← file {}", f.path)))
                .collect();
            let _ = writeln!(
                out,
                "{:width$}  {} ({}){}",
                s.name,
                s.imp.kind(),
                s.imp.method(),
                if ins.is_empty() { String::new() } else { format!("  [{}]", ins.join(", ")) },
            );
        }
        out
    }
}
