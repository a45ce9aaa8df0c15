// Over 700 lines: the rules that need the whole spec at once (stages, inputs, files, params); the rest are its submodules.
//! Pipeline specs: YAML in, a validated [`Spec`] out, or every error at once.
//!
//! Loading has three steps, each its own type: [`yaml::parse`] turns text into a
//! positioned tree; [`validate`] checks it against the stage registry and builds a
//! [`Spec`] (typed, canonical params with defaults filled in, resolved input
//! references, no cycle); [`crate::engine::dag::Dag`] orders it. Validation never stops at the first
//! problem: it collects a [`Diagnostic`] for every unknown key, unknown kind or
//! method, unknown or ill-typed parameter, missing input, dangling reference,
//! duplicate stage name and cycle, each with `file:line:column` and a sentence.
//!
//! ```yaml
//! name: smeme            # pipeline name: groups run manifests under artifacts/runs/
//! seed: 42               # default seed of every stage
//! stages:
//!   triangles:           # stage name: letters, digits, `_` and `-`
//!     kind: generate     # one of the seven kinds
//!     seed: 7            # optional: overrides the pipeline seed for this stage
//!     params: { dataset: triangles, n_samples: 4096 }
//!   labelled:
//!     kind: label
//!     inputs: { data: triangles }   # `stage` (its first output) or `stage.output`
//!     params: { scheme: triangle_types, tol: 0.01 }
//! ```

mod command;
pub mod matrix;
pub mod overrides;
pub mod resources;
pub mod yaml;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::engine::params::{Default as ParamDefault, Params, Raw, Value, suggest};
use crate::engine::stage::{self, Kind, Registry, Stage};
pub use command::project_root;
pub use overrides::Override;
pub use resources::Resources;
use yaml::{Node, NodeValue, Pos};

/// One problem in a spec, with its position.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub file: String,
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A message quotes the spec, which may be someone else's: its
        // control and text-direction characters are shown escaped, never
        // sent to the terminal (a colour, a title, a line of its own).
        let message = printable(&self.message);
        if self.pos.line == 0 {
            // From a command-line option; `file` names it.
            write!(f, "{}: {message}", printable(&self.file))
        } else {
            write!(f, "{}:{}:{}: {message}", printable(&self.file), self.pos.line, self.pos.col)
        }
    }
}

/// `s` with its control and text-direction characters escaped (`\u{1b}`).
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if ch.is_control() || matches!(ch, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
            out.extend(ch.escape_unicode());
        } else {
            out.push(ch);
        }
    }
    out
}

/// All problems found in a spec, sorted by position.
#[derive(Debug, Clone, thiserror::Error)]
pub struct SpecErrors {
    pub file: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            writeln!(f, "error: {d}")?;
        }
        let n = self.diagnostics.len();
        write!(f, "{n} error{} in {}; nothing was run", if n == 1 { "" } else { "s" }, self.file)
    }
}

/// A reference from a stage input to another stage's output.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct InputRef {
    pub stage: String,
    pub output: String,
}

impl fmt::Display for InputRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.stage, self.output)
    }
}

/// A file a stage reads (`inputs: { sheet: { file: path } }`, or a command
/// stage's `code:`): read when the spec is validated; its content hash, never
/// its path, enters the key. On a table input the file is read as a table
/// ([`crate::engine::tables`]) and keyed by its logical content, so the same
/// samples in another format or codec keep the key.
#[derive(Clone)]
pub struct FileInput {
    /// The path as the spec writes it (relative to the spec's folder; a
    /// command's code file: relative to the project root).
    pub path: String,
    /// The content hash of [`FileInput::artifact`]: the object it is stored as.
    pub hash: crate::engine::hash::Hash,
    /// The bytes (a blob), or the table read from them.
    pub artifact: std::sync::Arc<stage::Artifact>,
    /// Read from outside the project, as the input's `allow_outside: true`
    /// allowed (`check` names every such file).
    pub outside: bool,
}

impl fmt::Debug for FileInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.artifact.as_ref() {
            stage::Artifact::Blob(b) => format!("{} bytes", b.len()),
            stage::Artifact::Table(t) => format!("a table of {} rows", t.num_rows()),
        };
        write!(f, "file {} ({what}, {})", self.path, &self.hash.hex()[..12])
    }
}

/// A validated stage.
#[derive(Clone)]
pub struct StageSpec {
    pub name: String,
    pub imp: &'static dyn Stage,
    /// Canonical parameters: typed, sorted, defaults filled in.
    pub params: Params,
    /// The effective seed: the stage's own, else the pipeline's.
    pub seed: u64,
    /// Whether the stage gives its own seed (a swept pipeline seed then leaves it).
    pub seed_given: bool,
    pub inputs: BTreeMap<String, InputRef>,
    /// Inputs bound to files.
    pub files: BTreeMap<String, FileInput>,
    /// What a cluster scheduler should give it (not part of the key).
    pub resources: Resources,
    pub pos: Pos,
}

impl fmt::Debug for StageSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StageSpec")
            .field("name", &self.name)
            .field("kind", &self.imp.kind())
            .field("method", &self.imp.method())
            .field("params", &self.params)
            .field("seed", &self.seed)
            .field("inputs", &self.inputs)
            .field("files", &self.files)
            .finish()
    }
}

/// A validated pipeline.
#[derive(Debug, Clone)]
pub struct Spec {
    pub path: PathBuf,
    pub name: String,
    pub seed: u64,
    /// What the spec's `matrix:` expanded to (`None`: no matrix).
    pub matrix: Option<matrix::MatrixInfo>,
    /// Stages in file order.
    pub stages: Vec<StageSpec>,
}

impl Spec {
    pub fn stage(&self, name: &str) -> Option<&StageSpec> {
        self.stages.iter().find(|s| s.name == name)
    }
    /// The stages as a petgraph graph: node weights are stage indices, one edge
    /// from each distinct upstream stage to its consumer.
    pub fn graph(&self) -> petgraph::graph::DiGraph<usize, ()> {
        let mut graph = petgraph::graph::DiGraph::new();
        let nodes: Vec<_> = (0..self.stages.len()).map(|i| graph.add_node(i)).collect();
        for (i, stage) in self.stages.iter().enumerate() {
            let ups: std::collections::BTreeSet<usize> =
                stage.inputs.values().filter_map(|r| self.index(&r.stage)).collect();
            for up in ups {
                graph.add_edge(nodes[up], nodes[i], ());
            }
        }
        graph
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }
}

/// Read and validate a spec file. An unreadable file is reported as a diagnostic
/// at 1:1 so that every spec problem has the same shape.
pub fn load(path: &Path, registry: &Registry) -> Result<Spec, SpecErrors> {
    load_with(path, registry, &[])
}

/// [`load`] with command-line changes ([`Override`]) applied before validation.
pub fn load_with(path: &Path, registry: &Registry, overrides: &[Override]) -> Result<Spec, SpecErrors> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => validate_with(path, &text, registry, overrides),
        Err(e) => Err(SpecErrors {
            file: file.clone(),
            diagnostics: vec![Diagnostic {
                file,
                pos: Pos { line: 1, col: 1 },
                message: format!("cannot read the spec: {e}"),
            }],
        }),
    }
}

struct Collector {
    file: String,
    /// The command-line options applied to the tree; a node at line 0, column
    /// `n` came from the `n`th.
    options: Vec<String>,
    diagnostics: Vec<Diagnostic>,
}

impl Collector {
    fn err(&mut self, pos: Pos, message: impl Into<String>) {
        let file = match pos.line {
            0 => format!("{} ({})", self.file, self.options.get(pos.col.wrapping_sub(1)).map_or("?", |s| s.as_str())),
            _ => self.file.clone(),
        };
        self.diagnostics.push(Diagnostic { file, pos, message: message.into() });
    }
}

const TOP_KEYS: &[&str] = &["name", "seed", "description", "stages", "matrix", "resources"];
const STAGE_KEYS: &[&str] = &[
    "kind",
    "params",
    "inputs",
    "seed",
    "resources",
    "description",
    // A command stage's (see `command`).
    "run",
    "shell",
    "code",
    "outputs",
    "env",
    "version",
];

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn entries(node: &Node) -> Option<&[(Node, Node)]> {
    match &node.value {
        NodeValue::Map(e) => Some(e),
        _ => None,
    }
}

fn parse_seed(c: &mut Collector, node: &Node, what: &str) -> Option<u64> {
    match node.to_raw() {
        Raw::Int(i) if i >= 0 => Some(i as u64),
        _ => {
            c.err(node.pos, format!("{what} must be a non-negative integer, found {}", node.describe()));
            None
        }
    }
}

/// A stage as parsed, before references are resolved.
/// What an input entry names, before resolution.
#[derive(Debug, Clone)]
enum InputText {
    /// `stage` or `stage.output`.
    Stage(String),
    /// `{ file: path }`, with `columns:` naming a bare array's columns and
    /// `allow_outside: true` letting the path leave the project.
    File { path: String, columns: Option<Vec<String>>, allow_outside: bool },
}

struct Draft {
    name: String,
    pos: Pos,
    kind: Option<Kind>,
    /// The implementation; for a command stage, made once its inputs are resolved.
    imp: Option<&'static dyn Stage>,
    /// A command stage's declaration (`run:` and the rest).
    command: Option<command::CommandDraft>,
    params: Params,
    /// Whether every parameter in `params` is present and well typed: with one
    /// reported wrong the map lacks it, so rules that read the map
    /// (`check_input`) must not run.
    params_ok: bool,
    seed: Option<u64>,
    /// input name → (reference, its position)
    inputs: Vec<(String, InputText, Pos)>,
    resources: Resources,
}

impl Draft {
    /// The outputs the stage declares, with their media: its implementation's,
    /// or a command's `outputs:`. `None` when the stage itself is in error.
    fn outputs(&self) -> Option<Vec<(&str, stage::Media)>> {
        match (&self.command, self.imp) {
            (Some(cmd), _) => Some(cmd.outputs.iter().map(|(n, m)| (n.as_str(), *m)).collect()),
            (None, Some(imp)) => Some(imp.outputs().iter().map(|o| (o.name, o.media)).collect()),
            (None, None) => None,
        }
    }

    /// `train ddpm_eps`, `generate command`: for messages.
    fn what(&self) -> String {
        let kind = self.kind.map_or("?", |k| k.name());
        match (&self.command, self.imp) {
            (Some(_), _) => format!("{kind} {}", crate::engine::command::METHOD),
            (None, Some(imp)) => format!("{kind} {}", imp.method()),
            (None, None) => kind.to_string(),
        }
    }
}

/// Validate spec text against the implementations in `registry`. `path` is
/// used in messages and kept in the spec.
pub fn validate(path: &Path, text: &str, registry: &Registry) -> Result<Spec, SpecErrors> {
    validate_with(path, text, registry, &[])
}

/// [`validate`] with command-line changes ([`Override`]) applied to the YAML
/// tree first; an error in an option's value names the option.
pub fn validate_with(path: &Path, text: &str, registry: &Registry, overrides: &[Override]) -> Result<Spec, SpecErrors> {
    let file = path.display().to_string();
    let options = overrides.iter().map(|o| o.text.clone()).collect();
    let mut c = Collector { file: file.clone(), options, diagnostics: Vec::new() };
    let fail = |c: Collector| {
        let mut diagnostics = c.diagnostics;
        diagnostics.sort();
        diagnostics.dedup();
        Err(SpecErrors { file: file.clone(), diagnostics })
    };

    let mut root = match yaml::parse(text) {
        Ok(Some(root)) => root,
        Ok(None) => {
            c.err(Pos { line: 1, col: 1 }, "the spec is empty; expected a mapping with `name` and `stages`");
            return fail(c);
        }
        Err(e) => {
            if e.limit {
                c.err(e.pos, e.message);
            } else {
                c.err(e.pos, format!("this is not valid YAML: {}", e.message));
            }
            return fail(c);
        }
    };
    for (i, message) in overrides::apply(&mut root, overrides) {
        c.err(Pos { line: 0, col: i + 1 }, message);
    }
    let Some(top) = entries(&root) else {
        c.err(root.pos, format!("expected a mapping with `name` and `stages`, found {}", root.describe()));
        return fail(c);
    };

    let top = parse_top(&mut c, top);
    let drafts = match top.stages {
        None => {
            c.err(Pos { line: 1, col: 1 }, "missing `stages`: a pipeline needs at least one stage");
            Vec::new()
        }
        Some(node) => parse_stages(&mut c, registry, path, node),
    };
    let stages = resolve(&mut c, path, &drafts, top.seed, &top.resources);
    let (name, seed, matrix_node) = (top.name, top.seed, top.matrix);
    let spec = Spec { path: path.to_path_buf(), name: name.unwrap_or_default(), seed, matrix: None, stages };
    if let Some(cycle) = find_cycle(&spec) {
        let first = spec.stage(&cycle[0]).expect("cycle names stages");
        c.err(first.pos, format!("the stages form a cycle: {}", cycle.join(" → ")));
    }
    if !c.diagnostics.is_empty() {
        return fail(c);
    }
    let spec = match matrix_node {
        None => spec,
        Some(node) => {
            let (mut spec, info) = matrix::expand(&mut c, node, spec);
            spec.matrix = info;
            spec
        }
    };
    if c.diagnostics.is_empty() { Ok(spec) } else { fail(c) }
}

/// The top level of a spec: what it names, before any stage is read.
struct Top<'n> {
    name: Option<String>,
    seed: u64,
    stages: Option<&'n Node>,
    matrix: Option<&'n Node>,
    resources: Resources,
}

/// Read the top-level keys: each once, known or `x-` extensions.
fn parse_top<'n>(c: &mut Collector, top: &'n [(Node, Node)]) -> Top<'n> {
    let mut t = Top { name: None, seed: 0, stages: None, matrix: None, resources: Resources::default() };
    let mut seen_top: HashMap<String, Pos> = HashMap::new();
    for (k, v) in top {
        let key = k.as_str().unwrap_or_default();
        if let Some(first) = seen_top.insert(key.to_string(), k.pos) {
            c.err(k.pos, format!("`{key}` is given twice (first at line {})", first.line));
            continue;
        }
        match key {
            "name" => match v.as_str() {
                Some(s) if valid_name(s) => t.name = Some(s.to_string()),
                _ => c.err(
                    v.pos,
                    format!("the pipeline name must be letters, digits, `_` or `-`, found {}", v.describe()),
                ),
            },
            "seed" => t.seed = parse_seed(c, v, "the pipeline seed").unwrap_or(0),
            "description" => {}
            "stages" => t.stages = Some(v),
            "matrix" => t.matrix = Some(v),
            "resources" => t.resources = resources::parse(c, v, "the pipeline"),
            // Extension keys: ignored, a place for YAML anchors shared by stages.
            other if other.starts_with("x-") => {}
            other => c.err(
                k.pos,
                format!("unknown key `{other}`; expected one of: {}{}", TOP_KEYS.join(", "), suggest(other, TOP_KEYS)),
            ),
        }
    }
    if t.name.is_none() && !seen_top.contains_key("name") {
        c.err(Pos { line: 1, col: 1 }, "missing `name`: give the pipeline a name, e.g. `name: smeme`");
    }
    t
}

/// Every stage of `stages:`, each name valid and given once.
fn parse_stages(c: &mut Collector, registry: &Registry, path: &Path, node: &Node) -> Vec<Draft> {
    let mut drafts = Vec::new();
    match entries(node) {
        Some(list) if !list.is_empty() => {
            let mut seen: HashMap<String, Pos> = HashMap::new();
            for (k, v) in list {
                let stage_name = k.as_str().unwrap_or_default().to_string();
                if !valid_name(&stage_name) {
                    c.err(
                        k.pos,
                        format!("stage name `{stage_name}` must be letters, digits, `_` or `-` (a dot separates a stage from its output in references)"),
                    );
                }
                if let Some(first) = seen.get(&stage_name) {
                    c.err(
                        k.pos,
                        format!("duplicate stage name `{stage_name}` (first defined at line {}); stage names must be unique", first.line),
                    );
                    continue;
                }
                seen.insert(stage_name.clone(), k.pos);
                drafts.push(parse_stage(c, registry, path, stage_name, k.pos, v));
            }
        }
        _ => c.err(
            node.pos,
            format!("`stages` must be a non-empty mapping from stage names to stages, found {}", node.describe()),
        ),
    }
    drafts
}

/// Resolve every stage's inputs now that every stage is known: references
/// to a producer's output (its media, columns and the rules between the two
/// stages' parameters), files the spec names; then build command stages.
fn resolve(c: &mut Collector, path: &Path, drafts: &[Draft], seed: u64, resources: &Resources) -> Vec<StageSpec> {
    let by_name: HashMap<&str, &Draft> = drafts.iter().map(|d| (d.name.as_str(), d)).collect();
    let mut stages = Vec::new();
    for d in drafts {
        let mut inputs = BTreeMap::new();
        let mut files = BTreeMap::new();
        // A command stage's inputs: media and, for a file, its extension.
        let mut command_inputs = BTreeMap::new();
        for (input, text, pos) in &d.inputs {
            let text = match text {
                InputText::Stage(t) => t,
                InputText::File { path: p, columns, allow_outside } => {
                    let how = FileRead { written: p, columns: columns.as_deref(), allow_outside: *allow_outside };
                    if let Some(f) = file_input(c, path, d, input, &how, *pos) {
                        let ext =
                            Path::new(p).extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
                        command_inputs.insert(input.clone(), (stage::Media::File, ext));
                        files.insert(input.clone(), f);
                    }
                    continue;
                }
            };
            if let Some((r, media)) = resolve_reference(c, drafts, &by_name, d, input, text, *pos) {
                if d.command.is_some() {
                    command_inputs.insert(input.clone(), (media, String::new()));
                }
                inputs.insert(input.clone(), r);
            }
        }
        let imp = match (&d.command, d.kind) {
            (Some(cmd), Some(kind)) => {
                files.extend(cmd.code.iter().map(|(k, f)| (k.clone(), f.clone())));
                Some(command::build(kind, cmd, command_inputs))
            }
            _ => d.imp,
        };
        if let Some(imp) = imp {
            stages.push(StageSpec {
                name: d.name.clone(),
                imp,
                params: d.params.clone(),
                seed: d.seed.unwrap_or(seed),
                seed_given: d.seed.is_some(),
                inputs,
                files,
                resources: d.resources.or(resources),
                pos: d.pos,
            });
        }
    }
    stages
}

/// One input `stage` or `stage.output` of draft `d`: the producer exists and
/// is not `d`, has that output, of the media (and columns) the consumer
/// expects, and the two stages' parameters agree. `None` after an error.
fn resolve_reference(
    c: &mut Collector,
    drafts: &[Draft],
    by_name: &HashMap<&str, &Draft>,
    d: &Draft,
    input: &str,
    text: &str,
    pos: Pos,
) -> Option<(InputRef, stage::Media)> {
    let (stage_name, output) = match text.split_once('.') {
        Some((s, o)) => (s, Some(o)),
        None => (text, None),
    };
    let Some(target) = by_name.get(stage_name) else {
        let names: Vec<&str> = drafts.iter().map(|d| d.name.as_str()).collect();
        c.err(
            pos,
            format!(
                "input `{input}` of stage `{}` refers to stage `{stage_name}`, which does not exist{}",
                d.name,
                suggest(stage_name, &names)
            ),
        );
        return None;
    };
    if target.name == d.name {
        c.err(pos, format!("stage `{}` cannot take its own output as input `{input}`", d.name));
        return None;
    }
    let declared = target.outputs()?;
    let outputs: Vec<&str> = declared.iter().map(|(n, _)| *n).collect();
    let output = match output {
        None => outputs[0],
        Some(o) if outputs.contains(&o) => o,
        Some(o) => {
            c.err(
                pos,
                format!(
                    "stage `{stage_name}` ({}) has no output `{o}`; its outputs are: {}{}",
                    target.what(),
                    outputs.join(", "),
                    suggest(o, &outputs)
                ),
            );
            return None;
        }
    };
    let found = declared.iter().find(|(n, _)| *n == output).expect("listed above").1;
    if let Some(imp) = d.imp
        && let Some(def) = imp.inputs().iter().find(|i| i.name == input)
    {
        if def.media != found {
            c.err(
                pos,
                format!(
                    "input `{input}` of a {} stage expects {}, but `{stage_name}.{output}` is {} (from a {} stage)",
                    d.what(),
                    def.media,
                    found,
                    target.what()
                ),
            );
            return None;
        }
        // Columns: what the consumer needs against what the producer
        // declares (a command's columns are known only when it has run).
        let needed = imp.input_columns(input);
        if let Some(target_imp) = target.imp.filter(|_| target.command.is_none())
            && let Some(has) = target_imp.output_columns(output)
        {
            let missing: Vec<&str> = needed.iter().copied().filter(|c| !has.contains(c)).collect();
            if !missing.is_empty() {
                c.err(
                    pos,
                    format!(
                        "input `{input}` of stage `{}` needs columns {}; `{stage_name}.{output}` has {} (missing: {})",
                        d.name,
                        needed.join(", "),
                        has.join(", "),
                        missing.join(", ")
                    ),
                );
                return None;
            }
        }
        // Rules between the two stages' parameters (use_ema on a model
        // trained without EMA, say): only between parameter maps that
        // passed their own checks, as the rules read every parameter.
        if d.params_ok
            && target.params_ok
            && let Some(target_imp) = target.imp.filter(|_| target.command.is_none())
            && let Some(why) = imp.check_input(&d.params, input, target_imp, &target.params)
        {
            c.err(pos, format!("input `{input}` of stage `{}`: {why}", d.name));
            return None;
        }
    }
    Some((InputRef { stage: stage_name.to_string(), output: output.to_string() }, found))
}

/// The first cycle among the stages, as a closed path of names
/// (`a → b → a`), or `None` when the graph is acyclic.
fn find_cycle(spec: &Spec) -> Option<Vec<String>> {
    use petgraph::algo::tarjan_scc;
    use petgraph::graph::NodeIndex;
    use petgraph::visit::EdgeRef;
    use std::collections::BTreeSet;

    let graph = spec.graph();
    let mut sccs: Vec<Vec<NodeIndex>> = tarjan_scc(&graph).into_iter().filter(|scc| scc.len() > 1).collect();
    // Deterministic choice: the cycle containing the earliest stage in the file.
    sccs.sort_by_key(|scc| scc.iter().map(|n| graph[*n]).min());
    let scc = sccs.first()?;
    let members: BTreeSet<NodeIndex> = scc.iter().copied().collect();
    let start = *scc.iter().min_by_key(|n| graph[**n]).expect("non-empty");
    // Walk inside the component until we come back to a visited node.
    let mut path = vec![start];
    let mut current = start;
    loop {
        let next = graph
            .edges(current)
            .map(|e| e.target())
            .filter(|t| members.contains(t))
            .min_by_key(|t| graph[*t])
            .expect("a node of a strongly connected component has a successor inside it");
        if let Some(pos) = path.iter().position(|n| *n == next) {
            let mut cycle: Vec<String> = path[pos..].iter().map(|n| spec.stages[graph[*n]].name.clone()).collect();
            cycle.push(spec.stages[graph[next]].name.clone());
            return Some(cycle);
        }
        path.push(next);
        current = next;
    }
}

fn parse_stage(c: &mut Collector, registry: &Registry, spec: &Path, name: String, pos: Pos, node: &Node) -> Draft {
    let mut draft = Draft {
        name: name.clone(),
        pos,
        kind: None,
        imp: None,
        command: None,
        params: Params::new(),
        params_ok: false,
        seed: None,
        inputs: Vec::new(),
        resources: Resources::default(),
    };
    let Some(fields) = entries(node) else {
        c.err(
            node.pos,
            format!("stage `{name}` must be a mapping with `kind` and `params`, found {}", node.describe()),
        );
        return draft;
    };
    let (mut kind_node, mut params_node, mut inputs_node) = (None, None, None);
    let mut command_fields: BTreeMap<&str, &Node> = BTreeMap::new();
    let mut seen: HashMap<&str, Pos> = HashMap::new();
    for (k, v) in fields {
        let key = k.as_str().unwrap_or_default();
        if let Some(first) = seen.insert(key, k.pos) {
            c.err(k.pos, format!("`{key}` is given twice in stage `{name}` (first at line {})", first.line));
            continue;
        }
        match key {
            "kind" => kind_node = Some(v),
            "params" => params_node = Some(v),
            "inputs" => inputs_node = Some(v),
            "seed" => draft.seed = parse_seed(c, v, "a stage seed"),
            "resources" => draft.resources = resources::parse(c, v, &format!("stage `{name}`")),
            "description" => {}
            k if command::KEYS.contains(&k) => {
                command_fields.insert(k, v);
            }
            other => c.err(
                k.pos,
                format!(
                    "unknown key `{other}` in stage `{name}`; expected one of: {}{}",
                    STAGE_KEYS.join(", "),
                    suggest(other, STAGE_KEYS)
                ),
            ),
        }
    }

    let kind = parse_kind(c, &name, pos, kind_node);

    // Params: find the selector first, then check the rest against its schema.
    let param_entries: &[(Node, Node)] = match params_node {
        None => &[],
        Some(p) => match entries(p) {
            Some(e) => e,
            None => {
                c.err(p.pos, format!("`params` of stage `{name}` must be a mapping, found {}", p.describe()));
                &[]
            }
        },
    };
    draft.kind = kind;
    // A stage with `run:` runs the researcher's own command.
    if command_fields.contains_key("run") {
        draft.params = command::params(c, &name, param_entries);
        draft.params_ok = true;
        draft.inputs = check_inputs(c, &name, None, pos, inputs_node);
        let input_names: Vec<String> = draft.inputs.iter().map(|(n, _, _)| n.clone()).collect();
        if kind.is_some() {
            draft.command = command::parse(c, spec, &name, &command_fields, &draft.params, &input_names);
        }
        return draft;
    }
    for k in command_fields.keys() {
        let at = fields.iter().find(|(key, _)| key.as_str() == Some(k)).map_or(pos, |(key, _)| key.pos);
        c.err(at, format!("`{k}` is for command stages: stage `{name}` has no `run:` (a command to run)"));
    }
    if let Some(kind) = kind {
        let imp = implementation(c, registry, kind, (&name, pos), (kind_node, params_node), param_entries);
        if let Some(imp) = imp {
            (draft.params, draft.params_ok) =
                check_params(c, &name, imp, params_node.map_or(pos, |p| p.pos), param_entries);
            draft.inputs = check_inputs(c, &name, Some(imp), pos, inputs_node);
            if draft.params_ok {
                needed_inputs(c, &name, imp, &draft.params, &draft.inputs, inputs_node.map_or(pos, |n| n.pos));
            }
            draft.imp = Some(imp);
        }
    }
    draft
}

/// The optional inputs a stage's parameter values need
/// ([`Stage::needs_inputs`]) that it does not bind, each an error at `at`.
fn needed_inputs(
    c: &mut Collector,
    stage: &str,
    imp: &dyn Stage,
    params: &crate::engine::params::Params,
    bound: &[(String, InputText, Pos)],
    at: Pos,
) {
    for (input, why) in imp.needs_inputs(params) {
        if !bound.iter().any(|(n, _, _)| n == input) {
            c.err(at, format!("stage `{stage}` needs input `{input}`: {why}"));
        }
    }
}

/// A stage's `kind`: given, and one of the seven.
fn parse_kind(c: &mut Collector, name: &str, pos: Pos, kind_node: Option<&Node>) -> Option<Kind> {
    let kind_names: Vec<&str> = Kind::PUBLIC.iter().map(|k| k.name()).collect();
    match kind_node {
        None => {
            c.err(pos, format!("stage `{name}` has no `kind`; expected one of: {}", kind_names.join(", ")));
            None
        }
        Some(k) => match k.as_str().and_then(Kind::parse) {
            Some(kind) => Some(kind),
            None => {
                let found = k.as_str().unwrap_or_default();
                c.err(
                    k.pos,
                    format!(
                        "unknown stage kind {}; expected one of: {}{}",
                        k.describe(),
                        kind_names.join(", "),
                        suggest(found, &kind_names)
                    ),
                );
                None
            }
        },
    }
}

/// The implementation a stage of `kind` chooses by its selector parameter
/// (`objective`, `sampler`, …), or the only one the kind has.
fn implementation(
    c: &mut Collector,
    registry: &Registry,
    kind: Kind,
    (name, pos): (&str, Pos),
    (kind_node, params_node): (Option<&Node>, Option<&Node>),
    param_entries: &[(Node, Node)],
) -> Option<&'static dyn Stage> {
    let selector = kind.selector();
    let methods = registry.methods(kind);
    let method_names: Vec<&str> = methods.iter().map(|m| m.method()).collect();
    let chosen = param_entries.iter().find(|(k, _)| k.as_str() == Some(selector));
    match chosen {
        Some((_, v)) => {
            let m = v.as_str().unwrap_or_default();
            match registry.find(kind, m) {
                Some(imp) => Some(imp),
                None if method_names.is_empty() => {
                    c.err(v.pos, format!("stage kind `{kind}` has no implementations in this build"));
                    None
                }
                None => {
                    c.err(
                        v.pos,
                        format!(
                            "unknown {selector} {} for a {kind} stage; expected one of: {}{}",
                            v.describe(),
                            method_names.join(", "),
                            suggest(m, &method_names)
                        ),
                    );
                    None
                }
            }
        }
        None if methods.len() == 1 => Some(methods[0]),
        None if methods.is_empty() => {
            c.err(
                kind_node.map_or(pos, |k| k.pos),
                format!("stage kind `{kind}` has no implementations in this build"),
            );
            None
        }
        None => {
            c.err(
                params_node.map_or(pos, |p| p.pos),
                format!("stage `{name}` must choose `{selector}` in its params: one of {}", method_names.join(", ")),
            );
            None
        }
    }
}

/// The stage's parameter map, defaults filled in, and whether every parameter
/// in it is well typed (a cross-parameter rule broken still leaves it typed).
fn check_params(
    c: &mut Collector,
    stage: &str,
    imp: &'static dyn Stage,
    at: Pos,
    given: &[(Node, Node)],
) -> (Params, bool) {
    let selector = imp.kind().selector();
    let defs = imp.params();
    let names: Vec<&str> = std::iter::once(selector).chain(defs.iter().map(|d| d.name)).collect();
    let mut params = Params::new();
    params.insert(selector.to_string(), Value::Str(imp.method().to_string()));
    let errors_before = c.diagnostics.len();
    let mut seen: HashMap<&str, Pos> = HashMap::new();
    for (k, v) in given {
        let key = k.as_str().unwrap_or_default();
        if let Some(first) = seen.insert(key, k.pos) {
            c.err(k.pos, format!("parameter `{key}` is given twice in stage `{stage}` (first at line {})", first.line));
            continue;
        }
        if key == selector {
            continue;
        }
        let Some(def) = defs.iter().find(|d| d.name == key) else {
            c.err(
                k.pos,
                format!(
                    "unknown parameter `{key}` for a {} stage ({selector}: {}); expected one of: {}{}",
                    imp.kind(),
                    imp.method(),
                    names.join(", "),
                    suggest(key, &names)
                ),
            );
            continue;
        };
        match def.ty.coerce(&v.to_raw()) {
            Ok(value) => {
                params.insert(key.to_string(), value);
            }
            Err(why) => c.err(v.pos, format!("parameter `{key}` of stage `{stage}`: {why}")),
        }
    }
    for def in defs {
        if params.contains_key(def.name) || seen.contains_key(def.name) {
            continue;
        }
        match def.default {
            ParamDefault::Required => {
                c.err(at, format!("stage `{stage}` is missing required parameter `{}`: {}", def.name, def.doc))
            }
            d => {
                if let Some(v) = d.value() {
                    params.insert(def.name.to_string(), v);
                }
            }
        }
    }
    // Rules across parameters, and the memory estimate, need every parameter
    // typed: with one already reported wrong they would read a map without it.
    if c.diagnostics.len() > errors_before {
        return (params, false);
    }
    // Rules across parameters, reported at the first parameter they name.
    for (param, why) in imp.check_params(&params) {
        let pos = given.iter().find(|(k, _)| k.as_str() == Some(param)).map_or(at, |(_, v)| v.pos);
        c.err(pos, format!("stage `{stage}`: {why}"));
    }
    if let (Some((param, need)), Some(have)) = (imp.memory_bytes(&params), memory_limit())
        && need > have
    {
        let pos = given.iter().find(|(k, _)| k.as_str() == Some(param)).map_or(at, |(_, v)| v.pos);
        let value = params.get(param).map(|v| v.to_json().to_string()).unwrap_or_default();
        c.err(
            pos,
            format!(
                "stage `{stage}` would need about {} of memory with {param} = {value}, more than the {} a run may use here; lower {param}",
                gib(need),
                gib(have)
            ),
        );
    }
    (params, true)
}

/// The memory a run may plan for: `SCOREFLOW_MEMORY` (bytes, or with a `K`, `M`,
/// `G` suffix) if set, else 80 % of the machine's total memory (Linux; the rest
/// is the system's and the allocator's), else no limit.
pub fn memory_limit() -> Option<u64> {
    if let Some(n) = std::env::var("SCOREFLOW_MEMORY").ok().and_then(|v| parse_bytes(&v)) {
        return Some(n);
    }
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024 / 5 * 4)
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// How a spec asks for a file input.
struct FileRead<'a> {
    written: &'a str,
    columns: Option<&'a [String]>,
    allow_outside: bool,
}

/// The most bytes a file input may have: `SCOREFLOW_MAX_INPUT_BYTES` (bytes,
/// or with a `K`, `M`, `G` suffix), else 1 GiB.
pub fn max_input_bytes() -> u64 {
    std::env::var("SCOREFLOW_MAX_INPUT_BYTES").ok().and_then(|v| parse_bytes(&v)).unwrap_or(1 << 30)
}

/// `123`, `64K`, `1.5G`: a byte count.
fn parse_bytes(v: &str) -> Option<u64> {
    let v = v.trim();
    let (num, mult) = match v.chars().last() {
        Some('K' | 'k') => (&v[..v.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&v[..v.len() - 1], 1 << 20),
        Some('G' | 'g') => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    num.trim().parse::<f64>().ok().filter(|n| n.is_finite() && *n >= 0.0).map(|n| (n * mult as f64) as u64)
}

/// The bytes of a file input at `written` (relative to the spec's folder):
/// inside the spec's project unless `allow_outside` (symbolic links are
/// followed before the check), a regular file (never a FIFO, a device or a
/// folder, which could block or never end), at most [`max_input_bytes`].
/// Returns the bytes and whether the file lies outside the project.
fn read_confined(spec: &Path, written: &str, allow_outside: bool) -> Result<(Vec<u8>, bool), String> {
    use std::io::Read;
    let full = spec.parent().unwrap_or(Path::new(".")).join(written);
    let real =
        std::fs::canonicalize(&full).map_err(|e| format!("cannot read `{written}` ({}): {e}", full.display()))?;
    let root = command::project_root(spec);
    let outside = !real.starts_with(&root);
    if outside && !allow_outside {
        return Err(format!(
            "`{written}` lies outside the project ({}); a spec reads files of its own project unless the input says `allow_outside: true`",
            root.display()
        ));
    }
    let meta = std::fs::metadata(&real).map_err(|e| format!("cannot read `{written}`: {e}"))?;
    if !meta.is_file() {
        return Err(format!("`{written}` is not a regular file (a folder, device or pipe); name a file"));
    }
    let cap = max_input_bytes();
    if meta.len() > cap {
        return Err(format!(
            "`{written}` has {} bytes, more than the {cap} a file input may have (SCOREFLOW_MAX_INPUT_BYTES raises it)",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(&real)
        .and_then(|f| f.take(cap + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read `{written}`: {e}"))?;
    if bytes.len() as u64 > cap {
        return Err(format!("`{written}` grew past the {cap} bytes a file input may have while it was read"));
    }
    Ok((bytes, outside))
}

/// Read a file input, relative to the spec's folder: on a table input, as a
/// table of any format [`crate::engine::tables`] reads; on a file input (and
/// any input of a command stage), as bytes. An unreadable file, a table that
/// does not parse or an input that takes neither is reported at the path.
fn file_input(c: &mut Collector, spec: &Path, d: &Draft, input: &str, how: &FileRead, pos: Pos) -> Option<FileInput> {
    let FileRead { written, columns, allow_outside } = *how;
    let media = match d.imp.and_then(|imp| imp.inputs().iter().find(|i| i.name == input)) {
        _ if d.command.is_some() => stage::Media::File,
        Some(def) if matches!(def.media, stage::Media::File | stage::Media::Table) => def.media,
        Some(def) => {
            c.err(
                pos,
                format!(
                    "input `{input}` of a {} stage expects {}, not a file; name a stage or `stage.output`",
                    d.what(),
                    def.media
                ),
            );
            return None;
        }
        None => return None,
    };
    let (bytes, outside) = match read_confined(spec, written, allow_outside) {
        Ok(read) => read,
        Err(why) => {
            c.err(pos, format!("input `{input}` of stage `{}`: {why}", d.name));
            return None;
        }
    };
    if media != stage::Media::Table {
        if columns.is_some() {
            c.err(pos, format!("input `{input}` of stage `{}`: `columns` names a table's columns; this input takes the file as it is", d.name));
            return None;
        }
        if let Some(imp) = d.imp {
            let problems = imp.check_file(input, &bytes);
            for p in &problems {
                c.err(
                    pos,
                    format!("input `{input}` of stage `{}`: {written}:{}:{}: {}", d.name, p.line, p.col, p.message),
                );
            }
            if !problems.is_empty() {
                return None;
            }
        }
        let hash = crate::engine::hash::blob_hash(&bytes);
        return Some(FileInput {
            path: written.to_string(),
            hash,
            artifact: std::sync::Arc::new(stage::Artifact::Blob(bytes)),
            outside,
        });
    }
    let Some(ext) = crate::engine::tables::table_extension(written) else {
        c.err(
            pos,
            format!(
                "input `{input}` of stage `{}` takes a table; `{written}` is none of .{}",
                d.name,
                crate::engine::tables::EXTENSIONS.join(", .")
            ),
        );
        return None;
    };
    match crate::engine::tables::read(&bytes, &ext, columns) {
        Ok(table) => Some(FileInput {
            path: written.to_string(),
            hash: table.content_hash(),
            artifact: std::sync::Arc::new(stage::Artifact::Table(table)),
            outside,
        }),
        Err(why) => {
            c.err(pos, format!("input `{input}` of stage `{}`: `{written}` is not a readable table: {why}", d.name));
            None
        }
    }
}

/// The `inputs:` of a stage: checked against `imp`'s declared inputs, or, for
/// a command stage (`imp` `None`), any valid names.
fn check_inputs(
    c: &mut Collector,
    stage: &str,
    imp: Option<&'static dyn Stage>,
    at: Pos,
    node: Option<&Node>,
) -> Vec<(String, InputText, Pos)> {
    let defs = imp.map_or(&[][..], |i| i.inputs());
    let names: Vec<&str> = defs.iter().map(|d| d.name).collect();
    let mut out = Vec::new();
    if let Some(node) = node {
        match entries(node) {
            None => c.err(
                node.pos,
                format!(
                    "`inputs` of stage `{stage}` must be a mapping from input names to stages, found {}",
                    node.describe()
                ),
            ),
            Some(list) => {
                for (k, v) in list {
                    let key = k.as_str().unwrap_or_default();
                    if out.iter().any(|(n, _, _): &(String, InputText, Pos)| n == key) {
                        c.err(k.pos, format!("input `{key}` is given twice in stage `{stage}`"));
                        continue;
                    }
                    match imp {
                        None if !valid_name(key) => {
                            c.err(k.pos, format!("input name `{key}` must be letters, digits, `_` or `-`"));
                            continue;
                        }
                        Some(imp) if !names.contains(&key) => {
                            let expected = if names.is_empty() {
                                "it takes no inputs".to_string()
                            } else {
                                format!("expected one of: {}", names.join(", "))
                            };
                            c.err(
                                k.pos,
                                format!(
                                    "unknown input `{key}` for a {} stage ({}); {expected}{}",
                                    imp.kind(),
                                    imp.method(),
                                    suggest(key, &names)
                                ),
                            );
                            continue;
                        }
                        _ => {}
                    }
                    if let Some(r) = v.as_str().filter(|r| !r.is_empty()) {
                        out.push((key.to_string(), InputText::Stage(r.to_string()), v.pos));
                        continue;
                    }
                    match file_entry(c, key, v) {
                        Some(Some((text, pos))) => out.push((key.to_string(), text, pos)),
                        Some(None) => {}
                        None => c.err(
                            v.pos,
                            format!(
                                "input `{key}` must name a stage, `stage.output`, or a file as `{{ file: path }}`, found {}",
                                v.describe()
                            ),
                        ),
                    }
                }
            }
        }
    }
    for def in defs {
        if def.required && !out.iter().any(|(n, _, _)| n == def.name) {
            c.err(
                node.map_or(at, |n| n.pos),
                format!(
                    "stage `{stage}` is missing required input `{}` ({}); add `inputs: {{ {}: {} }}`",
                    def.name,
                    def.doc,
                    def.name,
                    if def.media == stage::Media::File { "{ file: <path> }" } else { "<stage>" }
                ),
            );
        }
    }
    out
}

/// A `{ file: path, columns: [..] }` entry: `None` when `v` is no such
/// mapping; `Some(None)` when it is one with an error (reported).
fn file_entry(c: &mut Collector, input: &str, v: &Node) -> Option<Option<(InputText, Pos)>> {
    let e = entries(v)?;
    if !e.iter().any(|(k, _)| k.as_str() == Some("file")) {
        return None;
    }
    let (mut path, mut columns, mut allow_outside, mut ok) = (None, None, false, true);
    for (k, val) in e {
        match k.as_str().unwrap_or_default() {
            "file" => match val.as_str().filter(|p| !p.is_empty() && matches!(val.value, NodeValue::Scalar { .. })) {
                Some(p) => path = Some((p.to_string(), val.pos)),
                None => {
                    c.err(val.pos, format!("`file` of input `{input}` must be a path, found {}", val.describe()));
                    ok = false;
                }
            },
            "columns" => match &val.value {
                NodeValue::Seq(items)
                    if !items.is_empty() && items.iter().all(|i| i.as_str().is_some_and(|s| !s.is_empty())) =>
                {
                    columns = Some(items.iter().map(|i| i.as_str().unwrap_or_default().to_string()).collect());
                }
                _ => {
                    c.err(
                        val.pos,
                        format!(
                            "`columns` of input `{input}` must be a list of column names, found {}",
                            val.describe()
                        ),
                    );
                    ok = false;
                }
            },
            "allow_outside" => match match (&val.value, val.to_raw()) {
                (NodeValue::Scalar { .. }, crate::engine::params::Raw::Bool(b)) => Some(b),
                _ => None,
            } {
                Some(b) => allow_outside = b,
                None => {
                    c.err(
                        val.pos,
                        format!("`allow_outside` of input `{input}` must be true or false, found {}", val.describe()),
                    );
                    ok = false;
                }
            },
            other => {
                c.err(
                    k.pos,
                    format!("unknown key `{other}` in file input `{input}`; expected file, columns, allow_outside"),
                );
                ok = false;
            }
        }
    }
    Some(match (ok, path) {
        (true, Some((path, pos))) => Some((InputText::File { path, columns, allow_outside }, pos)),
        _ => None,
    })
}
