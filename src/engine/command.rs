// Over 700 lines: the command-stage protocol end to end (sandbox, argv, env, outputs, logs) with its unit tests.
//! Command stages: a researcher's own program, in any language, as a stage of
//! any kind, under the same keys, cache, reasons and integrity as the
//! built-in stages.
//!
//! ```yaml
//! estimate:
//!   kind: generate
//!   run: [python3, ../scripts/estimate_pi.py, --draws, "{params.draws}"]
//!   code: [../scripts/estimate_pi.py]      # hashed by content into the key
//!   outputs: { samples: table, metrics: table }
//!   params: { draws: 100000 }
//! ```
//!
//! **The key.** A command stage's key holds what a built-in stage's does (kind,
//! params, seed, the content hashes of its inputs) with the method `command`
//! and the protocol's version, plus its [`CommandDef`] — the argv template, the
//! declared outputs and input media, the values of the `env:` variables, the
//! user's `version:` string and the working folder — and, as inputs named
//! `code:<path>`, the content of every `code:` file. Editing a script reruns the
//! stage with the reason `code scripts/x.py changed`; a checkout moved
//! elsewhere keeps every key (paths are relative to the project, never absolute).
//!
//! **The protocol** (version [`PROTOCOL`]). The command runs in a fresh
//! temporary folder that mirrors the project: its `code:` files at their
//! places, the working directory at the spec's folder. It finds everything in
//! the JSON file named by `SCOREFLOW_STAGE` (stage, pipeline, kind, key, seed,
//! params, absolute read-only input paths, output paths, the output folder, the
//! thread budget), and the same values as environment variables
//! (`SCOREFLOW_SEED`, `SCOREFLOW_PARAM_<NAME>`, `SCOREFLOW_INPUT_<NAME>`,
//! `SCOREFLOW_OUTPUT_<NAME>`, `SCOREFLOW_OUTPUT_DIR`, `SCOREFLOW_THREADS`,
//! `SCOREFLOW_PROJECT` the sandbox's project root, `SCOREFLOW_BIN` this binary). It
//! writes each declared output into the output folder as `NAME.<ext>`: a table
//! as Parquet, CSV, NDJSON, Arrow IPC or `.npy`/`.npz` (read by
//! [`crate::engine::tables`] and stored as Parquet with scoreflow's lineage
//! metadata), anything else as its bytes. A line `scoreflow:progress 0.42` on
//! stdout moves the progress bar. A non-zero exit, a signal, a time-out
//! (`resources.time`), a missing or undeclared output, or a table that does
//! not parse fails the stage with the last lines of stderr and the log's path;
//! nothing is cached. stdout and stderr are kept under `logs/<key>/`.
//!
//! **No shell** unless `shell: true`: `run` is an argv list (or a string split
//! the way a shell splits words, without running one); placeholders
//! (`{params.NAME}`, `{inputs.NAME}`, `{outputs.NAME}`, `{seed}`) fill whole
//! or partial arguments with values, never re-split. With `shell: true` the one
//! string is run by `sh -c` and every placeholder is replaced by its value
//! quoted for the shell.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::engine::cache::{Cache, host, now_ms};
use crate::engine::params::Value;
use crate::engine::stage::{Artifact, InputDef, JobCtx, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};

/// The method name every command stage has.
pub const METHOD: &str = "command";
/// The protocol's version: the implementation version of every command stage.
pub const PROTOCOL: u32 = 1;
/// How many lines of stderr a failure shows.
pub const TAIL_LINES: usize = 40;
/// The prefix of the inputs that carry `code:` files.
pub const CODE_PREFIX: &str = "code:";

/// Everything a command stage's spec declares that enters its key besides
/// params, seed and inputs. Built by the spec validator; rebuilt from the key
/// by a remote worker ([`CommandDef::from_value`]), so both run the same.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandDef {
    pub kind: Kind,
    /// The argv template (with `shell`: one element, the script).
    pub run: Vec<String>,
    pub shell: bool,
    /// Declared outputs, by name.
    pub outputs: BTreeMap<String, Media>,
    /// Input name → its media and, for a file input, the file's extension.
    pub inputs: BTreeMap<String, (Media, String)>,
    /// `code:` files, relative to the project root (`/`-separated).
    pub code: Vec<String>,
    /// The working folder (the spec's), relative to the project root; `""` for the root.
    pub workdir: String,
    /// `env:` names with the values they had when the key was computed.
    pub env: BTreeMap<String, Option<String>>,
    /// The user's `version:` string.
    pub version: String,
}

/// A media from its name in a spec (`table`, `model/<framing>`, `image/png`, `text/html`, `file`).
pub fn parse_media(s: &str) -> Option<Media> {
    match s {
        "table" => Some(Media::Table),
        "image/png" => Some(Media::Png),
        "text/html" => Some(Media::Html),
        "file" => Some(Media::File),
        _ => {
            let framing = s.strip_prefix("model/")?;
            let ok = !framing.is_empty()
                && framing.len() <= 40
                && framing.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
            ok.then(|| intern_str(framing)).map(Media::Model)
        }
    }
}

/// A `'static` copy of `s`, made once per distinct string (names and framings
/// of command stages, which the stage contract holds as `&'static str`).
fn intern_str(s: &str) -> &'static str {
    static STRS: OnceLock<Mutex<std::collections::HashSet<&'static str>>> = OnceLock::new();
    let mut set = STRS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = set.get(s) {
        return found;
    }
    let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
    set.insert(leaked);
    leaked
}

impl CommandDef {
    /// The canonical form that enters the key (and the job a remote worker reads).
    pub fn to_value(&self) -> Value {
        let s = |x: &str| Value::Str(x.to_string());
        let mut m = BTreeMap::new();
        m.insert("run".into(), Value::List(self.run.iter().map(|a| s(a)).collect()));
        m.insert("shell".into(), Value::Bool(self.shell));
        m.insert("outputs".into(), Value::Map(self.outputs.iter().map(|(k, v)| (k.clone(), s(&v.name()))).collect()));
        m.insert(
            "inputs".into(),
            Value::Map(
                self.inputs
                    .iter()
                    .map(|(k, (media, ext))| (k.clone(), Value::List(vec![s(&media.name()), s(ext)])))
                    .collect(),
            ),
        );
        m.insert("workdir".into(), s(&self.workdir));
        m.insert(
            "env".into(),
            Value::Map(
                self.env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_ref().map_or(Value::List(Vec::new()), |v| s(v))))
                    .collect(),
            ),
        );
        m.insert("version".into(), s(&self.version));
        Value::Map(m)
    }

    /// Read back [`CommandDef::to_value`]; `code` comes from the key's
    /// `code:` inputs.
    pub fn from_value(kind: Kind, v: &Value, code: Vec<String>) -> Option<CommandDef> {
        let Value::Map(m) = v else { return None };
        let str_of = |v: &Value| match v {
            Value::Str(s) => Some(s.clone()),
            _ => None,
        };
        let map_of = |key: &str| match m.get(key) {
            Some(Value::Map(x)) => Some(x),
            _ => None,
        };
        let run = match m.get("run")? {
            Value::List(items) => items.iter().map(str_of).collect::<Option<Vec<_>>>()?,
            _ => return None,
        };
        let shell = matches!(m.get("shell")?, Value::Bool(true));
        let outputs = map_of("outputs")?
            .iter()
            .map(|(k, v)| Some((k.clone(), parse_media(&str_of(v)?)?)))
            .collect::<Option<_>>()?;
        let inputs = map_of("inputs")?
            .iter()
            .map(|(k, v)| match v {
                Value::List(pair) if pair.len() == 2 => {
                    Some((k.clone(), (parse_media(&str_of(&pair[0])?)?, str_of(&pair[1])?)))
                }
                _ => None,
            })
            .collect::<Option<_>>()?;
        let env: BTreeMap<String, Option<String>> =
            map_of("env")?.iter().map(|(k, v)| (k.clone(), str_of(v))).collect();
        let def = CommandDef {
            kind,
            run,
            shell,
            outputs,
            inputs,
            code,
            workdir: str_of(m.get("workdir")?)?,
            env,
            version: str_of(m.get("version")?)?,
        };
        // A job file is read from the cache, which someone else may have
        // written: it must say what a spec could (a command, plain names,
        // paths that stay inside the sandbox's project), or it is not one.
        let names = def.outputs.keys().chain(def.inputs.keys());
        let fits = def.run.first().is_some_and(|c| !c.is_empty())
            && names.into_iter().all(|n| plain_name(n))
            && def.env.keys().all(|k| !k.is_empty() && !k.contains(['=', '\0']))
            && def.code.iter().all(|c| !c.is_empty() && inside(c))
            && (def.workdir.is_empty() || inside(&def.workdir));
        fits.then_some(def)
    }
}

/// One command stage: its definition and the declarations the stage contract
/// asks for, made `'static` once per distinct definition ([`stage_for`]).
pub struct CommandStage {
    pub def: CommandDef,
    inputs: &'static [InputDef],
    outputs: &'static [OutputDef],
    metrics: &'static [(&'static str, &'static str)],
}

/// The stage of a definition. Command stages are built from specs at run
/// time while the contract hands out `&'static` implementations, so each
/// distinct definition is made once and kept for the life of the process.
pub fn stage_for(def: CommandDef) -> &'static CommandStage {
    static STAGES: OnceLock<Mutex<HashMap<String, &'static CommandStage>>> = OnceLock::new();
    let id = format!("{}|{}|{:?}", def.kind.name(), def.to_value().to_json(), def.code);
    let mut map = STAGES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = map.get(&id) {
        return s;
    }
    let mut inputs: Vec<InputDef> = def
        .inputs
        .iter()
        .map(|(name, (media, _))| InputDef {
            name: intern_str(name),
            media: *media,
            required: true,
            doc: "an input of the command",
        })
        .collect();
    inputs.extend(def.code.iter().map(|path| InputDef {
        name: intern_str(&format!("{CODE_PREFIX}{path}")),
        media: Media::File,
        required: true,
        doc: "a code file of the command",
    }));
    let outputs: Vec<OutputDef> = def
        .outputs
        .iter()
        .map(|(name, media)| OutputDef { name: intern_str(name), media: *media, doc: "an output of the command" })
        .collect();
    const METRICS: &[(&str, &str)] = &[("metrics", "value")];
    let metrics = if def.outputs.get("metrics") == Some(&Media::Table) { METRICS } else { &[] };
    let stage: &'static CommandStage = Box::leak(Box::new(CommandStage {
        def,
        inputs: Box::leak(inputs.into_boxed_slice()),
        outputs: Box::leak(outputs.into_boxed_slice()),
        metrics,
    }));
    map.insert(id, stage);
    stage
}

/// The implementation a job's key names, for a worker (here or on a node).
pub fn from_key(
    kind: Kind,
    definition: &Value,
    inputs: &BTreeMap<String, crate::engine::hash::Hash>,
) -> Option<&'static CommandStage> {
    let code = inputs.keys().filter_map(|k| k.strip_prefix(CODE_PREFIX)).map(str::to_string).collect();
    Some(stage_for(CommandDef::from_value(kind, definition, code)?))
}

impl Stage for CommandStage {
    fn kind(&self) -> Kind {
        self.def.kind
    }
    fn method(&self) -> &'static str {
        METHOD
    }
    fn version(&self) -> u32 {
        PROTOCOL
    }
    fn params(&self) -> &'static [crate::engine::params::ParamDef] {
        &[]
    }
    fn inputs(&self) -> &'static [InputDef] {
        self.inputs
    }
    fn outputs(&self) -> &'static [OutputDef] {
        self.outputs
    }
    fn metrics(&self) -> &'static [(&'static str, &'static str)] {
        self.metrics
    }
    fn definition(&self) -> Option<Value> {
        Some(self.def.to_value())
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        run_command(&self.def, ctx).map_err(StageError::Failed)
    }
}

// ---------------------------------------------------------------- placeholders

/// A placeholder in a `run` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placeholder {
    Param(String),
    Input(String),
    Output(String),
    Seed,
}

/// Split an argument into literal text and placeholders; `{{` and `}}` are
/// literal braces. The error says what is wrong with which placeholder.
pub fn parse_template(arg: &str) -> Result<Vec<Result<String, Placeholder>>, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = arg.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(format!("`{{{name}` is not closed; write `{{{{` for a literal brace")),
                    }
                }
                let p = match name.split_once('.') {
                    None if name == "seed" => Placeholder::Seed,
                    Some(("params", n)) if !n.is_empty() => Placeholder::Param(n.to_string()),
                    Some(("inputs", n)) if !n.is_empty() => Placeholder::Input(n.to_string()),
                    Some(("outputs", n)) if !n.is_empty() => Placeholder::Output(n.to_string()),
                    _ => {
                        return Err(format!(
                            "unknown placeholder `{{{name}}}`; use {{params.NAME}}, {{inputs.NAME}}, {{outputs.NAME}} or {{seed}} (`{{{{` for a literal brace)"
                        ));
                    }
                };
                if !lit.is_empty() {
                    parts.push(Ok(std::mem::take(&mut lit)));
                }
                parts.push(Err(p));
            }
            '}' => return Err("a lone `}`; write `}}` for a literal brace".into()),
            c => lit.push(c),
        }
    }
    if !lit.is_empty() || parts.is_empty() {
        parts.push(Ok(lit));
    }
    Ok(parts)
}

/// A parameter's value as one argument: strings as they are, numbers and
/// booleans as YAML writes them, lists and mappings as JSON.
pub fn param_text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::List(_) | Value::Map(_) => v.to_json().to_string(),
    }
}

/// A `shell: true` template as the script `sh -c` runs: each placeholder
/// becomes a reference to a positional parameter — `"${1}"` outside quotes,
/// `${1}` inside double quotes — so a value is one word and is never read
/// as shell code, whatever it holds (`$(…)`, quotes, newlines). Returns the
/// script and the placeholders in order (the parameters' values). A
/// placeholder inside single quotes (where the shell substitutes nothing) or
/// right after a backslash is an error.
pub fn shell_script(template: &str) -> Result<(String, Vec<Placeholder>), String> {
    #[derive(PartialEq)]
    enum Quote {
        None,
        Single,
        Double,
    }
    let (mut quote, mut escaped) = (Quote::None, false);
    let (mut script, mut placeholders) = (String::new(), Vec::new());
    for part in parse_template(template)? {
        match part {
            Ok(lit) => {
                for ch in lit.chars() {
                    match (&quote, ch) {
                        _ if escaped => escaped = false,
                        (Quote::None | Quote::Double, '\\') => escaped = true,
                        (Quote::None, '\'') => quote = Quote::Single,
                        (Quote::None, '"') => quote = Quote::Double,
                        (Quote::Single, '\'') | (Quote::Double, '"') => quote = Quote::None,
                        _ => {}
                    }
                }
                script.push_str(&lit);
            }
            Err(p) => {
                let k = placeholders.len() + 1;
                match quote {
                    _ if escaped => {
                        return Err(format!("{} stands right after a backslash; write it without one", p.text()));
                    }
                    Quote::Single => {
                        return Err(format!(
                            "{} stands inside single quotes, where the shell substitutes nothing; write it outside them (each value is one word as it is)",
                            p.text()
                        ));
                    }
                    Quote::Double => script.push_str(&format!("${{{k}}}")),
                    Quote::None => script.push_str(&format!("\"${{{k}}}\"")),
                }
                placeholders.push(p);
            }
        }
    }
    Ok((script, placeholders))
}

impl Placeholder {
    /// As written in a template: `{params.lr}`.
    pub fn text(&self) -> String {
        match self {
            Placeholder::Param(n) => format!("`{{params.{n}}}`"),
            Placeholder::Input(n) => format!("`{{inputs.{n}}}`"),
            Placeholder::Output(n) => format!("`{{outputs.{n}}}`"),
            Placeholder::Seed => "`{seed}`".to_string(),
        }
    }
}

/// A relative path that stays where it is joined: plain components only (no
/// root, no `..`, no `.`).
fn inside(path: &str) -> bool {
    Path::new(path).components().all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// A stage's input or output name as a spec may write it.
fn plain_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `s` quoted for a POSIX shell: one word whatever it holds.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// An environment variable's name for a parameter, input or output name.
pub fn env_name(prefix: &str, name: &str) -> String {
    let upper: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("SCOREFLOW_{prefix}_{upper}")
}

/// The extension a blob of this media is written with for the command.
fn blob_ext(media: Media, file_ext: &str) -> String {
    match media {
        Media::File if file_ext.is_empty() => String::new(),
        Media::File => format!(".{file_ext}"),
        m => format!(".{}", m.extension()),
    }
}

// ------------------------------------------------------------------- running

/// The process groups of the commands running in this process, so an
/// interrupt can end them ([`kill_all`]).
static RUNNING: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Kill every running command's whole process group (Ctrl-C): a command's
/// children go with it. Returns how many groups were signalled.
pub fn kill_all() -> usize {
    let groups = RUNNING.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for g in &groups {
        kill_group(*g);
    }
    groups.len()
}

fn kill_group(pgid: i32) {
    // SAFETY: killpg only sends a signal; a stale group id is an ESRCH error.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

/// The folder a command runs in, removed when it is dropped.
struct Sandbox(PathBuf);

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where a key's logs are kept.
pub fn log_dir(cache: &Cache, key: &crate::engine::hash::Hash) -> PathBuf {
    cache.root().join("logs").join(key.hex())
}

/// The last `n` lines of a file, for a failure message.
pub fn tail(path: &Path, n: usize) -> String {
    let Ok(mut f) = std::fs::File::open(path) else { return String::new() };
    let mut text = Vec::new();
    let _ = f.read_to_end(&mut text);
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Where a command runs: its sandbox's folders and the paths its inputs and
/// outputs have there.
struct Layout {
    root: PathBuf,
    project: PathBuf,
    out_dir: PathBuf,
    workdir: PathBuf,
    input_paths: BTreeMap<String, PathBuf>,
    output_paths: BTreeMap<String, PathBuf>,
}

/// `what path: error`, for an I/O failure.
fn io(what: &str, p: &Path) -> impl FnOnce(std::io::Error) -> String {
    let (what, p) = (what.to_string(), p.display().to_string());
    move |e: std::io::Error| format!("{what} {p}: {e}")
}

/// Lay out the sandbox under `root`: the project's code at its place in a
/// mirror of the project, the inputs as read-only copies of their verified
/// objects, an empty output folder.
fn lay_out(def: &CommandDef, ctx: &StageCtx, job: &JobCtx, root: PathBuf) -> Result<Layout, String> {
    let cache = job.cache;
    let (project, inputs_dir, out_dir) = (root.join("project"), root.join("inputs"), root.join("outputs"));
    for d in [&project, &inputs_dir, &out_dir] {
        std::fs::create_dir_all(d).map_err(io("create", d))?;
    }
    // Code at its place in the project's mirror.
    for path in &def.code {
        let name = format!("{CODE_PREFIX}{path}");
        let bytes = ctx.blob(&name).map_err(|e| e.to_string())?;
        let dest = project.join(path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io("create", parent))?;
        }
        std::fs::write(&dest, bytes).map_err(io("write", &dest))?;
        // A script keeps its executable bit's meaning: code is run as the spec says.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755));
        }
    }
    let workdir = if def.workdir.is_empty() { project.clone() } else { project.join(&def.workdir) };
    std::fs::create_dir_all(&workdir).map_err(io("create", &workdir))?;
    // Inputs as read-only files of their own, copied from the verified objects.
    let mut input_paths = BTreeMap::new();
    for (name, (media, ext)) in &def.inputs {
        let hash = job.input_hashes.get(name).ok_or_else(|| format!("input `{name}` has no content hash"))?;
        let src = cache.object_path(hash, media.format());
        let dest = inputs_dir.join(format!("{name}{}", blob_ext(*media, ext)));
        std::fs::copy(&src, &dest).map_err(io("copy input to", &dest))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o444));
        }
        input_paths.insert(name.clone(), dest);
    }
    let output_paths: BTreeMap<String, PathBuf> = def
        .outputs
        .iter()
        .map(|(name, media)| (name.clone(), out_dir.join(format!("{name}{}", blob_ext(*media, "")))))
        .collect();
    Ok(Layout { root, project, out_dir, workdir, input_paths, output_paths })
}

/// The argv, placeholders filled (quoted for `sh -c` when `shell`), and how
/// it is shown in messages.
fn argv(def: &CommandDef, ctx: &StageCtx, l: &Layout) -> Result<(Vec<String>, String), String> {
    let fill = |p: &Placeholder| -> Result<String, String> {
        Ok(match p {
            Placeholder::Seed => ctx.seed.to_string(),
            Placeholder::Param(n) => param_text(ctx.params.get(n).ok_or_else(|| format!("no parameter `{n}`"))?),
            Placeholder::Input(n) => {
                l.input_paths.get(n).ok_or_else(|| format!("no input `{n}`"))?.display().to_string()
            }
            Placeholder::Output(n) => {
                l.output_paths.get(n).ok_or_else(|| format!("no output `{n}`"))?.display().to_string()
            }
        })
    };
    let argv = if def.shell {
        // The values never enter the script's text: each placeholder is a
        // positional parameter, the values `sh`'s arguments after the script.
        let (script, placeholders) = shell_script(&def.run.concat())?;
        let mut argv = vec!["sh".to_string(), "-c".to_string(), script, "sh".to_string()];
        for p in &placeholders {
            argv.push(fill(p)?);
        }
        argv
    } else {
        let mut argv = Vec::new();
        for arg in &def.run {
            let mut out = String::new();
            for part in parse_template(arg)? {
                match part {
                    Ok(lit) => out.push_str(&lit),
                    Err(p) => out.push_str(&fill(&p)?),
                }
            }
            argv.push(out);
        }
        argv
    };
    if argv.first().is_none_or(String::is_empty) {
        return Err("the command is empty".into());
    }
    let shown = argv
        .iter()
        .map(|a| if a.contains([' ', '\'', '"', '\n']) { shell_quote(a) } else { a.clone() })
        .collect::<Vec<_>>()
        .join(" ");
    Ok((argv, shown))
}

/// Write the stage file (`stage.json`, the protocol's one description of
/// the stage) into the sandbox; returns its path.
fn write_stage_file(def: &CommandDef, ctx: &StageCtx, job: &JobCtx, l: &Layout) -> Result<PathBuf, String> {
    let params_json = crate::engine::params::params_to_json(ctx.params);
    let stage_json = serde_json::json!({
        "protocol": PROTOCOL,
        "stage": job.stage,
        "pipeline": job.pipeline,
        "kind": def.kind.name(),
        "key": job.key.hex(),
        "seed": ctx.seed,
        "params": params_json,
        "inputs": l.input_paths.iter().map(|(k, p)| (k.clone(), serde_json::json!(p.display().to_string()))).collect::<serde_json::Map<_, _>>(),
        "outputs": def.outputs.iter().map(|(k, m)| (k.clone(), serde_json::json!({
            "media": m.name(), "path": l.output_paths[k].display().to_string()
        }))).collect::<serde_json::Map<_, _>>(),
        "output_dir": l.out_dir.display().to_string(),
        "workdir": l.workdir.display().to_string(),
        "threads": job.threads,
    });
    let stage_file = l.root.join("stage.json");
    std::fs::write(&stage_file, serde_json::to_vec_pretty(&stage_json).expect("json"))
        .map_err(io("write", &stage_file))?;
    Ok(stage_file)
}

/// The process to start: argv, working directory, the protocol's
/// environment, stdout piped (for progress lines), stderr to its log, in a
/// process group of its own.
fn command(
    def: &CommandDef,
    ctx: &StageCtx,
    job: &JobCtx,
    l: &Layout,
    argv: &[String],
    stage_file: &Path,
    stderr: std::fs::File,
) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(&l.workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .env("SCOREFLOW_STAGE", stage_file)
        .env("SCOREFLOW_STAGE_NAME", job.stage)
        .env("SCOREFLOW_PIPELINE", job.pipeline)
        .env("SCOREFLOW_KIND", def.kind.name())
        .env("SCOREFLOW_SEED", ctx.seed.to_string())
        .env("SCOREFLOW_OUTPUT_DIR", &l.out_dir)
        .env("SCOREFLOW_THREADS", job.threads.to_string())
        .env("SCOREFLOW_PROJECT", &l.project);
    // The helper (`python/`) reads tables through this binary where no
    // Parquet library is installed.
    if let Ok(exe) = std::env::current_exe() {
        cmd.env("SCOREFLOW_BIN", exe);
    }
    for (k, v) in ctx.params {
        cmd.env(env_name("PARAM", k), param_text(v));
    }
    for (k, p) in &l.input_paths {
        cmd.env(env_name("INPUT", k), p);
    }
    for (k, p) in &l.output_paths {
        cmd.env(env_name("OUTPUT", k), p);
    }
    for var in ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"] {
        if std::env::var_os(var).is_none() {
            cmd.env(var, job.threads.to_string());
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    cmd
}

fn run_command(def: &CommandDef, ctx: &StageCtx) -> Result<Outputs, String> {
    let job = ctx.job.ok_or("a command stage needs a job (stage name, cache) to run")?;
    let cache = job.cache;
    let tmp = cache.root().join("tmp");
    let root = tmp.join(format!("{}-{}-{}@{}.cmd", std::process::id(), now_ms(), job.key.short(), host()));
    let sandbox = Sandbox(root.clone());
    let layout = lay_out(def, ctx, job, root)?;
    let (argv, shown) = argv(def, ctx, &layout)?;
    let stage_file = write_stage_file(def, ctx, job, &layout)?;
    let logs = log_dir(cache, &job.key);
    std::fs::create_dir_all(&logs).map_err(io("create", &logs))?;
    let (out_log, err_log) = (logs.join("stdout.log"), logs.join("stderr.log"));
    let stderr_file = std::fs::File::create(&err_log).map_err(io("create", &err_log))?;
    let mut stdout_file = std::fs::File::create(&out_log).map_err(io("create", &out_log))?;
    let _ = std::fs::write(logs.join("command.txt"), format!("{shown}\n"));
    let mut cmd = command(def, ctx, job, &layout, &argv, &stage_file, stderr_file);
    let context = |why: String| {
        let mut m = format!("command `{shown}` {why}");
        let t = tail(&err_log, TAIL_LINES);
        if !t.trim().is_empty() {
            let _ = write!(m, "; last lines of stderr:\n{t}\n");
        } else {
            m.push_str("; ");
        }
        let _ = write!(m, "log: {}", logs.display());
        m
    };
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(context(format!(
                "could not start: `{}` was not found (is it installed and on PATH?)",
                argv[0]
            )));
        }
        Err(e) => return Err(context(format!("could not start: {e}"))),
    };
    let pgid = child.id() as i32;
    RUNNING.lock().unwrap_or_else(|e| e.into_inner()).push(pgid);
    let forget = || RUNNING.lock().unwrap_or_else(|e| e.into_inner()).retain(|g| *g != pgid);
    // stdout: to its log, progress lines to the bar.
    let stdout = child.stdout.take().expect("piped");
    let progress = ctx.progress;
    let waited = std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = Vec::new();
            while r.read_until(b'\n', &mut line).map(|n| n > 0).unwrap_or(false) {
                let _ = stdout_file.write_all(&line);
                if let Some(f) = progress_of(&String::from_utf8_lossy(&line)) {
                    progress(f);
                }
                line.clear();
            }
        });
        let status = wait_with_limit(&mut child, job.time_limit);
        // Whatever the command left behind goes with it.
        kill_group(pgid);
        let _ = reader.join();
        status
    });
    forget();
    let elapsed = started.elapsed();
    match waited {
        Err(e) => return Err(context(format!("could not be waited for: {e}"))),
        Ok(None) => {
            let limit = job.time_limit.unwrap_or_default();
            return Err(context(format!(
                "timed out after {} (resources.time) and was killed",
                humantime::format_duration(Duration::from_secs(limit.as_secs()))
            )));
        }
        Ok(Some(status)) if !status.success() => {
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                if let Some(sig) = status.signal() {
                    return Err(context(format!("was killed by signal {sig} after {:.1} s", elapsed.as_secs_f64())));
                }
            }
            return Err(context(format!("exited with status {}", status.code().unwrap_or(-1))));
        }
        Ok(Some(_)) => {}
    }
    let outputs = collect_outputs(def, &layout.out_dir).map_err(context)?;
    drop(sandbox);
    Ok(outputs)
}

/// Wait for the child, at most `limit`: `None` when the limit passed (the
/// child is then killed with its group).
fn wait_with_limit(
    child: &mut std::process::Child,
    limit: Option<Duration>,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let Some(limit) = limit else { return child.wait().map(Some) };
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            kill_group(child.id() as i32);
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// The fraction a stdout line reports: `scoreflow:progress 0.42`, or a JSON
/// object `{"scoreflow": "progress", "fraction": 0.42}`.
pub fn progress_of(line: &str) -> Option<f64> {
    let line = line.trim();
    let f = if let Some(rest) = line.strip_prefix("scoreflow:progress") {
        rest.trim().parse::<f64>().ok()?
    } else if line.starts_with('{') && line.contains("\"scoreflow\"") {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        (v.get("scoreflow")?.as_str()? == "progress").then_some(())?;
        v.get("fraction")?.as_f64()?
    } else {
        return None;
    };
    f.is_finite().then_some(f.clamp(0.0, 1.0))
}

/// Read what the command wrote: each declared output exactly once, nothing else.
fn collect_outputs(def: &CommandDef, out_dir: &Path) -> Result<Outputs, String> {
    let mut found: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut undeclared = Vec::new();
    let entries =
        std::fs::read_dir(out_dir).map_err(|e| format!("succeeded but its output folder is unreadable: {e}"))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let file = entry.file_name().to_string_lossy().into_owned();
        let stem = file.split('.').next().unwrap_or_default().to_string();
        if !path.is_file() {
            undeclared.push(format!("{file} (not a plain file)"));
        } else if def.outputs.contains_key(&stem) {
            found.entry(stem).or_default().push(path);
        } else {
            undeclared.push(file);
        }
    }
    if !undeclared.is_empty() {
        undeclared.sort();
        let declared: Vec<&str> = def.outputs.keys().map(String::as_str).collect();
        return Err(format!(
            "succeeded but wrote undeclared output {}; declare it under `outputs:` (declared: {})",
            undeclared.join(", "),
            declared.join(", ")
        ));
    }
    let mut outputs = Outputs::new();
    for (name, media) in &def.outputs {
        let files = found.remove(name).unwrap_or_default();
        let path = match files.as_slice() {
            [one] => one,
            [] => {
                let hint = if *media == Media::Table {
                    format!("{name}.parquet (or .csv, .ndjson, .arrow)")
                } else {
                    format!("{name}.<ext>")
                };
                return Err(format!(
                    "succeeded but did not write its output `{name}` ({media}): expected {hint} in $SCOREFLOW_OUTPUT_DIR"
                ));
            }
            many => {
                let names: Vec<String> =
                    many.iter().map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
                return Err(format!(
                    "succeeded but wrote output `{name}` {} times ({}); write it once",
                    many.len(),
                    names.join(", ")
                ));
            }
        };
        let bytes = std::fs::read(path).map_err(|e| format!("succeeded but {} cannot be read: {e}", path.display()))?;
        let artifact = if *media == Media::Table {
            let file = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            let ext = crate::engine::tables::table_extension(&file).ok_or_else(|| {
                format!(
                    "succeeded but wrote table `{name}` as {file}; a table is one of .{}",
                    crate::engine::tables::EXTENSIONS.join(", .")
                )
            })?;
            let table = crate::engine::tables::read(&bytes, &ext, None)
                .map_err(|why| format!("succeeded but its table `{name}` ({file}) does not parse: {why}"))?;
            Artifact::Table(table)
        } else {
            Artifact::Blob(bytes)
        };
        outputs.insert(name.clone(), artifact);
    }
    Ok(outputs)
}

/// Fill `params` of a command stage from YAML: any JSON-representable value,
/// typed by its YAML type. The error says why a value is not one.
pub fn free_param(raw: &crate::engine::params::Raw) -> Result<Value, String> {
    use crate::engine::params::Raw;
    Ok(match raw {
        Raw::Bool(b) => Value::Bool(*b),
        Raw::Int(i) => Value::Int(*i),
        Raw::Float(f) if f.is_finite() => Value::Float(*f),
        Raw::Float(f) => return Err(format!("{f} is not a JSON number; give a finite number")),
        Raw::Str(s) => Value::Str(s.clone()),
        Raw::Null => return Err("null is not a value; give one or leave the parameter out".into()),
        Raw::List(items) => Value::List(items.iter().map(free_param).collect::<Result<_, _>>()?),
        Raw::Map(entries) => {
            let mut m = BTreeMap::new();
            for (k, v) in entries {
                if m.insert(k.clone(), free_param(v)?).is_some() {
                    return Err(format!("key `{k}` is given twice"));
                }
            }
            Value::Map(m)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_split_into_literals_and_placeholders() {
        let p = parse_template("--out={outputs.samples}").unwrap();
        assert_eq!(p, vec![Ok("--out=".to_string()), Err(Placeholder::Output("samples".into()))]);
        assert_eq!(parse_template("{{x}}").unwrap(), vec![Ok("{x}".to_string())]);
        assert_eq!(parse_template("{seed}").unwrap(), vec![Err(Placeholder::Seed)]);
        assert_eq!(parse_template("").unwrap(), vec![Ok(String::new())]);
        assert!(parse_template("{params}").unwrap_err().contains("unknown placeholder"));
        assert!(parse_template("{env.HOME}").unwrap_err().contains("unknown placeholder `{env.HOME}`"));
        assert!(parse_template("{params.x").unwrap_err().contains("not closed"));
        assert!(parse_template("a}b").unwrap_err().contains("lone"));
    }

    #[test]
    fn values_become_one_argument_and_shell_quoting_keeps_them_one_word() {
        assert_eq!(param_text(&Value::Float(0.1)), "0.1");
        assert_eq!(param_text(&Value::Float(2.0)), "2.0");
        assert_eq!(param_text(&Value::Int(3)), "3");
        assert_eq!(param_text(&Value::List(vec![Value::Int(1), Value::Str("a".into())])), r#"[1,"a"]"#);
        assert_eq!(shell_quote("$(touch pwned)"), "'$(touch pwned)'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(env_name("PARAM", "n-draws"), "SCOREFLOW_PARAM_N_DRAWS");
    }

    #[test]
    fn progress_lines_are_read_and_clamped() {
        assert_eq!(progress_of("scoreflow:progress 0.42\n"), Some(0.42));
        assert_eq!(progress_of(r#"{"scoreflow": "progress", "fraction": 1.5}"#), Some(1.0));
        assert_eq!(progress_of("progress 0.5"), None);
        assert_eq!(progress_of("scoreflow:progress nan"), None);
    }

    #[test]
    fn a_definition_round_trips_through_its_key_form() {
        let def = CommandDef {
            kind: Kind::Train,
            run: vec!["python3".into(), "train.py".into(), "{params.lr}".into()],
            shell: false,
            outputs: [("model".to_string(), Media::Model("pt")), ("loss".to_string(), Media::Table)].into(),
            inputs: [
                ("data".to_string(), (Media::Table, String::new())),
                ("x".to_string(), (Media::File, "npy".into())),
            ]
            .into(),
            code: vec!["scripts/train.py".into()],
            workdir: "pipelines".into(),
            env: [("TORCH_VERSION".to_string(), Some("2.5".to_string())), ("UNSET".to_string(), None)].into(),
            version: "2".into(),
        };
        let back = CommandDef::from_value(Kind::Train, &def.to_value(), def.code.clone()).unwrap();
        assert_eq!(back, def);
        // One stage per distinct definition.
        assert!(std::ptr::eq(stage_for(def.clone()), stage_for(back)));
        assert_eq!(parse_media("model/pt"), Some(Media::Model("pt")));
        assert_eq!(parse_media("model/"), None);
        assert_eq!(parse_media("image/jpeg"), None);
        // A job file from a cache someone else wrote says what a spec could,
        // or it is no definition: code and working folder inside the sandbox,
        // a command, plain names.
        let hostile = [
            CommandDef { code: vec!["../../../pwned".into()], ..def.clone() },
            CommandDef { code: vec!["/tmp/pwned".into()], ..def.clone() },
            CommandDef { workdir: "../../..".into(), ..def.clone() },
            CommandDef { workdir: "/tmp".into(), ..def.clone() },
            CommandDef { run: Vec::new(), ..def.clone() },
            CommandDef { outputs: [("../m".to_string(), Media::Table)].into(), ..def.clone() },
            CommandDef { env: [("A=B".to_string(), None)].into(), ..def.clone() },
        ];
        for bad in hostile {
            assert!(CommandDef::from_value(Kind::Train, &bad.to_value(), bad.code.clone()).is_none(), "{bad:?}");
        }
    }

    /// In a `shell: true` script a value is a positional parameter, quoted
    /// as its place needs; where the shell would not substitute it, an error.
    #[test]
    fn shell_placeholders_are_positional_parameters() {
        let (script, ps) = shell_script("cp {inputs.a} \"{outputs.b}\" && echo \"n={params.n}\" {seed}").unwrap();
        assert_eq!(script, r#"cp "${1}" "${2}" && echo "n=${3}" "${4}""#);
        assert_eq!(ps.len(), 4);
        // Quotes and escapes in the literal text keep their meaning.
        let (script, _) = shell_script(r#"echo 'it''s' "a \" b" \' {params.n}"#).unwrap();
        assert!(script.ends_with(r#"\' "${1}""#), "{script}");
        assert!(shell_script("echo '{params.n}'").unwrap_err().contains("inside single quotes"));
        assert!(shell_script("echo \\{params.n}").unwrap_err().contains("after a backslash"));
        assert!(shell_script("echo \"\\{params.n}\"").unwrap_err().contains("after a backslash"));
    }
}
