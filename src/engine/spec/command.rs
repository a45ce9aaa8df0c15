//! The spec side of command stages ([`crate::engine::command`]): a stage with
//! `run:` is one, of any kind. This module reads its keys — `run`, `shell`,
//! `code`, `outputs`, `env`, `version`, free-form `params` — with every error
//! at its `file:line:col`; references are resolved with the other stages' in
//! [`super::validate_with`], which then makes the stage ([`build`]).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::yaml::{Node, NodeValue, Pos};
use super::{Collector, FileInput, entries, valid_name};
use crate::engine::command::{self, CODE_PREFIX, CommandDef, Placeholder};
use crate::engine::params::{Params, Raw};
use crate::engine::stage::{Artifact, Kind, Media, Stage};

/// The keys only a command stage has.
pub(super) const KEYS: &[&str] = &["run", "shell", "code", "outputs", "env", "version"];

/// What a command stage declares, parsed, before its inputs are resolved.
pub(super) struct CommandDraft {
    pub run: Vec<String>,
    pub shell: bool,
    pub outputs: BTreeMap<String, Media>,
    /// `code:` files, named `code:<path from the project root>`.
    pub code: BTreeMap<String, FileInput>,
    pub workdir: String,
    pub env: BTreeMap<String, Option<String>>,
    pub version: String,
}

/// The folder the spec's paths are relative to, mirrored in a command's
/// sandbox: the nearest ancestor of the spec holding `.git`; else the folder
/// above a `pipelines/` folder holding the spec; else the spec's folder.
pub fn project_root(spec: &Path) -> PathBuf {
    let folder = spec.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let folder = std::fs::canonicalize(folder).unwrap_or_else(|_| folder.to_path_buf());
    if let Some(repo) = folder.ancestors().find(|d| d.join(".git").exists()) {
        return repo.to_path_buf();
    }
    match folder.file_name() {
        Some(n) if n == "pipelines" => folder.parent().map_or(folder.clone(), Path::to_path_buf),
        _ => folder,
    }
}

/// `path` (relative to the spec's folder) from the project root, `/`-separated,
/// or `None` when it leaves the project.
fn from_root(spec_folder_rel: &Path, written: &str) -> Option<String> {
    let mut parts: Vec<String> = spec_folder_rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    for comp in Path::new(written).components() {
        match comp {
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// The most files one `code:` entry may hold.
const MAX_CODE_FILES: usize = 10_000;

/// Files of a `code:` entry: the file, or every file under the folder (sorted;
/// hidden entries, `__pycache__` and `.pyc` files left out: they change when
/// the code runs, not when it is edited). Each folder is walked once and only
/// inside the project `root` (a link back up the tree is not walked again, a
/// link out of the project is an error), and at most [`MAX_CODE_FILES`] files.
fn code_files(
    path: &Path,
    root: &Path,
    seen: &mut std::collections::HashSet<PathBuf>,
    out: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let real = std::fs::canonicalize(path)?;
    if !real.starts_with(root) {
        return Err(std::io::Error::other(format!("{} leads outside the project", path.display())));
    }
    if !seen.insert(real) {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    entries.sort();
    for e in entries {
        let name = e.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "__pycache__" || name.ends_with(".pyc") {
            continue;
        }
        if e.is_dir() {
            code_files(&e, root, seen, out)?;
        } else if e.is_file() {
            out.push(e);
            if out.len() > MAX_CODE_FILES {
                return Err(std::io::Error::other(format!(
                    "more than {MAX_CODE_FILES} files; name the files or folders the stage runs"
                )));
            }
        }
    }
    Ok(())
}

/// A string or a list of strings; nested lists are flattened, so a YAML
/// anchor holding a list can stand among the items (`code: [a.py, *helper]`).
fn strings(c: &mut Collector, node: &Node, what: &str) -> Vec<(String, Pos)> {
    fn flat(c: &mut Collector, n: &Node, what: &str, out: &mut Vec<(String, Pos)>) {
        match &n.value {
            NodeValue::Scalar { text, .. } => out.push((text.clone(), n.pos)),
            NodeValue::Seq(items) => items.iter().for_each(|i| flat(c, i, what, out)),
            _ => c.err(n.pos, format!("{what} must be a list of strings, found {}", n.describe())),
        }
    }
    match &node.value {
        NodeValue::Scalar { text, .. } => vec![(text.clone(), node.pos)],
        NodeValue::Seq(_) => {
            let mut out = Vec::new();
            flat(c, node, what, &mut out);
            out
        }
        _ => {
            c.err(node.pos, format!("{what} must be a string or a list of strings, found {}", node.describe()));
            Vec::new()
        }
    }
}

/// Read a command stage's keys (`fields`: its mapping's entries by key).
/// `params` and `inputs` are parsed by the caller; the placeholders in `run`
/// are checked against them here.
pub(super) fn parse(
    c: &mut Collector,
    spec: &Path,
    stage: &str,
    fields: &BTreeMap<&str, &Node>,
    params: &Params,
    input_names: &[String],
) -> Option<CommandDraft> {
    let errors = c.diagnostics.len();
    let shell = match fields.get("shell").map(|n| (n.to_raw(), n.pos)) {
        None => false,
        Some((Raw::Bool(b), _)) => b,
        Some((_, pos)) => {
            c.err(pos, format!("`shell` of stage `{stage}` must be true or false"));
            false
        }
    };
    let run_node = fields.get("run").expect("a command stage has run");
    let run = parse_run(c, stage, run_node, shell)?;
    if run.is_empty() || run[0].0.trim().is_empty() {
        c.err(run_node.pos, format!("`run` of stage `{stage}` names no command"));
    }
    let outputs = parse_outputs(c, stage, fields.get("outputs").copied(), run_node.pos);
    check_placeholders(c, stage, &run, params, input_names, &outputs);
    if shell {
        // Where a placeholder stands in the script: never where the shell
        // would not substitute it.
        for (arg, pos) in &run {
            if command::parse_template(arg).is_ok()
                && let Err(why) = command::shell_script(arg)
            {
                c.err(*pos, format!("`run` of stage `{stage}`: {why}"));
            }
        }
    }
    let (code, workdir_rel) = parse_code(c, spec, stage, fields.get("code").copied());
    let env = parse_env(c, stage, fields.get("env").copied());
    let version = match fields.get("version") {
        None => String::new(),
        Some(n) => match n.as_str() {
            Some(s) if matches!(n.value, NodeValue::Scalar { .. }) => s.to_string(),
            _ => {
                c.err(
                    n.pos,
                    format!("`version` of stage `{stage}` must be a string or a number, found {}", n.describe()),
                );
                String::new()
            }
        },
    };
    if c.diagnostics.len() > errors {
        return None;
    }
    Some(CommandDraft {
        run: run.into_iter().map(|(a, _)| a).collect(),
        shell,
        outputs,
        code,
        workdir: workdir_rel.iter().map(|p| p.to_string_lossy().into_owned()).collect::<Vec<_>>().join("/"),
        env,
        version,
    })
}

/// `run`: an argv list, or a string split as a shell splits words (no shell
/// runs it), or with `shell: true` one string for `sh -c`. `None` when it
/// cannot be read at all.
fn parse_run(c: &mut Collector, stage: &str, run_node: &Node, shell: bool) -> Option<Vec<(String, Pos)>> {
    Some(match &run_node.value {
        NodeValue::Scalar { text, .. } if shell => vec![(text.clone(), run_node.pos)],
        NodeValue::Scalar { text, .. } => match shlex::split(text) {
            Some(words) if !words.is_empty() => words.into_iter().map(|w| (w, run_node.pos)).collect(),
            Some(_) => Vec::new(),
            None => {
                c.err(run_node.pos, format!("`run` of stage `{stage}` has an unclosed quote"));
                return None;
            }
        },
        NodeValue::Seq(_) if shell => {
            c.err(run_node.pos, format!("`run` of stage `{stage}` must be one string with `shell: true`"));
            return None;
        }
        _ => strings(c, run_node, &format!("`run` of stage `{stage}`")),
    })
}

/// `outputs`: a non-empty mapping from names to media.
fn parse_outputs(c: &mut Collector, stage: &str, node: Option<&Node>, run_pos: Pos) -> BTreeMap<String, Media> {
    let mut outputs = BTreeMap::new();
    match node {
        None => c.err(
            run_pos,
            format!("command stage `{stage}` declares no `outputs`; add e.g. `outputs: {{ samples: table }}`"),
        ),
        Some(node) => match entries(node) {
            Some(list) if !list.is_empty() => {
                for (k, v) in list {
                    let name = k.as_str().unwrap_or_default();
                    if !valid_name(name) {
                        c.err(k.pos, format!("output name `{name}` must be letters, digits, `_` or `-`"));
                        continue;
                    }
                    match v.as_str().and_then(command::parse_media) {
                        Some(m) => {
                            if outputs.insert(name.to_string(), m).is_some() {
                                c.err(k.pos, format!("output `{name}` is declared twice"));
                            }
                        }
                        None => c.err(
                            v.pos,
                            format!(
                                "output `{name}` of stage `{stage}`: unknown media {}; expected table, model/<name>, image/png, text/html or file",
                                v.describe()
                            ),
                        ),
                    }
                }
            }
            _ => c.err(
                node.pos,
                format!(
                    "`outputs` of stage `{stage}` must be a non-empty mapping from names to media, found {}",
                    node.describe()
                ),
            ),
        },
    }
    outputs
}

/// Every `{params.x}`, `{inputs.x}` and `{outputs.x}` of `run` names a value
/// the stage has.
fn check_placeholders(
    c: &mut Collector,
    stage: &str,
    run: &[(String, Pos)],
    params: &Params,
    input_names: &[String],
    outputs: &BTreeMap<String, Media>,
) {
    for (arg, pos) in run {
        match command::parse_template(arg) {
            Err(why) => c.err(*pos, format!("`run` of stage `{stage}`: {why}")),
            Ok(parts) => {
                for p in parts.into_iter().filter_map(Result::err) {
                    let missing = match &p {
                        Placeholder::Seed => None,
                        Placeholder::Param(n) if !params.contains_key(n) => {
                            Some(format!("{{params.{n}}}: no parameter `{n}` in `params`"))
                        }
                        Placeholder::Input(n) if !input_names.contains(n) => {
                            Some(format!("{{inputs.{n}}}: no input `{n}` in `inputs`"))
                        }
                        Placeholder::Output(n) if !outputs.contains_key(n) => {
                            Some(format!("{{outputs.{n}}}: no output `{n}` in `outputs`"))
                        }
                        _ => None,
                    };
                    if let Some(why) = missing {
                        c.err(*pos, format!("`run` of stage `{stage}`: {why}"));
                    }
                }
            }
        }
    }
}

/// `code`: files or folders, by content, each inside the project; and the
/// spec's folder relative to the project root (the command's working
/// directory in the sandbox's mirror).
fn parse_code(
    c: &mut Collector,
    spec: &Path,
    stage: &str,
    node: Option<&Node>,
) -> (BTreeMap<String, FileInput>, PathBuf) {
    let root = project_root(spec);
    let spec_folder = spec.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let spec_folder_abs = std::fs::canonicalize(spec_folder).unwrap_or_else(|_| spec_folder.to_path_buf());
    let workdir_rel = spec_folder_abs.strip_prefix(&root).map(Path::to_path_buf).unwrap_or_default();
    let mut code = BTreeMap::new();
    if let Some(node) = node {
        for (written, pos) in strings(c, node, &format!("`code` of stage `{stage}`")) {
            let full = spec_folder.join(&written);
            if std::fs::canonicalize(&full).is_ok_and(|real| !real.starts_with(&root)) {
                c.err(
                    pos,
                    format!("`code` of stage `{stage}`: `{written}` lies outside the project ({})", root.display()),
                );
                continue;
            }
            let mut files = Vec::new();
            if let Err(e) = code_files(&full, &root, &mut Default::default(), &mut files) {
                c.err(pos, format!("`code` of stage `{stage}`: cannot read `{written}` ({}): {e}", full.display()));
                continue;
            }
            for f in files {
                let rel_to_spec = f.strip_prefix(spec_folder).unwrap_or(&f).to_string_lossy().into_owned();
                let real = std::fs::canonicalize(&f).unwrap_or(f.clone());
                let Some(rel) = from_root(&workdir_rel, &rel_to_spec).filter(|_| real.starts_with(&root)) else {
                    c.err(
                        pos,
                        format!("`code` of stage `{stage}`: `{written}` lies outside the project ({})", root.display()),
                    );
                    break;
                };
                match std::fs::read(&f) {
                    Ok(bytes) => {
                        let hash = crate::engine::hash::blob_hash(&bytes);
                        let file = FileInput {
                            path: rel.clone(),
                            hash,
                            artifact: std::sync::Arc::new(Artifact::Blob(bytes)),
                            outside: false,
                        };
                        code.insert(format!("{CODE_PREFIX}{rel}"), file);
                    }
                    Err(e) => c.err(pos, format!("`code` of stage `{stage}`: cannot read `{}`: {e}", f.display())),
                }
            }
        }
    }
    (code, workdir_rel)
}

/// `env`: names of environment variables whose values enter the key.
fn parse_env(c: &mut Collector, stage: &str, node: Option<&Node>) -> BTreeMap<String, Option<String>> {
    let mut env = BTreeMap::new();
    if let Some(node) = node {
        for (var, pos) in strings(c, node, &format!("`env` of stage `{stage}`")) {
            let ok = !var.is_empty()
                && !var.starts_with(|ch: char| ch.is_ascii_digit())
                && var.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
            if !ok {
                c.err(pos, format!("`env` of stage `{stage}`: `{var}` is not an environment variable name"));
                continue;
            }
            env.insert(var.clone(), std::env::var(&var).ok());
        }
    }
    env
}

/// Free-form params of a command stage: any JSON-representable value.
pub(super) fn params(c: &mut Collector, stage: &str, given: &[(Node, Node)]) -> Params {
    let mut params = Params::new();
    for (k, v) in given {
        let key = k.as_str().unwrap_or_default();
        if !valid_name(key) {
            c.err(k.pos, format!("parameter name `{key}` of stage `{stage}` must be letters, digits, `_` or `-`"));
            continue;
        }
        if params.contains_key(key) {
            c.err(k.pos, format!("parameter `{key}` is given twice in stage `{stage}`"));
            continue;
        }
        match command::free_param(&v.to_raw()) {
            Ok(value) => {
                params.insert(key.to_string(), value);
            }
            Err(why) => c.err(v.pos, format!("parameter `{key}` of stage `{stage}`: {why}")),
        }
    }
    params
}

/// The stage of a parsed command, its inputs' media now known.
pub(super) fn build(kind: Kind, draft: &CommandDraft, inputs: BTreeMap<String, (Media, String)>) -> &'static dyn Stage {
    command::stage_for(CommandDef {
        kind,
        run: draft.run.clone(),
        shell: draft.shell,
        outputs: draft.outputs.clone(),
        inputs,
        code: draft.code.values().map(|f| f.path.clone()).collect(),
        workdir: draft.workdir.clone(),
        env: draft.env.clone(),
        version: draft.version.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_from_the_root_never_leave_it() {
        assert_eq!(from_root(Path::new("pipelines"), "../scripts/a.py").as_deref(), Some("scripts/a.py"));
        assert_eq!(from_root(Path::new(""), "scripts/./a.py").as_deref(), Some("scripts/a.py"));
        assert_eq!(from_root(Path::new("pipelines"), "../../etc/passwd"), None);
        assert_eq!(from_root(Path::new(""), "/etc/passwd"), None);
    }
}
