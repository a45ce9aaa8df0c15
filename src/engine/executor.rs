//! Running a pipeline: keys, cache hits, reasons, parallel execution.
//!
//! A stage's key is known only once the content hashes of its inputs are known,
//! so the executor plans as it goes. A coordinator walks the DAG; when every
//! upstream stage of a stage is done it builds the stage's [`KeyInputs`] from the
//! upstream content hashes and looks the key up:
//!
//! * a complete record (every object present, right size) → **fresh**, no work;
//! * otherwise the stage runs on its own thread, with the [`Reason`]s that explain
//!   the miss (found by diffing against the hash inputs of the key this stage had
//!   in the pipeline's latest run).
//!
//! A worker takes the key's lock, checks the record again (another process may
//! have computed it meanwhile), loads and verifies its inputs, calls the stage,
//! stores the outputs, then writes the record. Independent stages run at the same
//! time (up to `jobs` workers); within a stage, rayon parallelises the numerics.
//! A corrupt input object is deleted, reported, and its producer recomputed before
//! the consumer runs again. A failed stage skips its dependents and leaves no
//! record; the others run on.
//!
//! Early cutoff falls out of the two-level keys: a stage that reruns and yields the
//! same content hashes gives its dependents the same keys, and they stay fresh.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::engine::cache::{
    Cache, CacheError, Lookup, Manifest, ManifestStage, ObjectError, OutputEntry, RECORD_FORMAT, Record, now_ms,
};
use crate::engine::dag::Dag;
use crate::engine::hash::{Hash, KeyInputs};
use crate::engine::params::{Value, params_to_json};
use crate::engine::progress::{Event, Reporter};
use crate::engine::spec::{Spec, StageSpec};
use crate::engine::stage::{Artifact, Format, StageCtx};

/// Why a stage runs (or would run).
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// The stage name is not in the pipeline's latest run and its key has no record.
    NewStage,
    /// The key has no record, and there is nothing to compare it with.
    NoCachedResult,
    ParamChanged {
        key: String,
        old: Option<Value>,
        new: Option<Value>,
    },
    SeedChanged {
        old: u64,
        new: u64,
    },
    KindChanged {
        old: String,
        new: String,
    },
    VersionChanged {
        old: u32,
        new: u32,
    },
    /// The content of input `input` (read from stage `stage`) changed.
    InputChanged {
        input: String,
        stage: String,
    },
    InputAdded {
        input: String,
        stage: String,
    },
    InputRemoved {
        input: String,
    },
    OutputMissing {
        output: String,
    },
    /// The record file of the key did not parse (it is rewritten by this run).
    RecordCorrupt {
        path: String,
    },
    OutputCorrupt {
        output: String,
    },
    Forced,
    /// Status only: an upstream stage must run first, so this key is not known yet.
    UpstreamDirty {
        stage: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |v: &Option<Value>| v.as_ref().map_or("(unset)".to_string(), |v| v.to_string());
        match self {
            Reason::NewStage => write!(f, "new stage, no cached result"),
            Reason::NoCachedResult => write!(f, "no cached result"),
            Reason::ParamChanged { key, old, new } => {
                write!(f, "param {key} changed {} → {}", opt(old), opt(new))
            }
            Reason::SeedChanged { old, new } => write!(f, "seed changed {old} → {new}"),
            Reason::KindChanged { old, new } => write!(f, "kind changed {old} → {new}"),
            Reason::VersionChanged { old, new } => {
                write!(f, "implementation version {old} → {new}")
            }
            Reason::InputChanged { input, stage } if input == stage => {
                write!(f, "input {stage} changed")
            }
            Reason::InputChanged { input, stage } => {
                write!(f, "input {stage} changed (as `{input}`)")
            }
            Reason::InputAdded { input, stage } => {
                write!(f, "input `{input}` added (from {stage})")
            }
            Reason::InputRemoved { input } => write!(f, "input `{input}` removed"),
            Reason::OutputMissing { output } => write!(f, "output {output} missing from the cache"),
            Reason::OutputCorrupt { output } => write!(f, "cached output {output} was corrupt"),
            Reason::RecordCorrupt { path } => write!(f, "cached record {path} was corrupt"),
            Reason::Forced => write!(f, "forced (--force)"),
            Reason::UpstreamDirty { stage } => write!(f, "waits for {stage}, which will run first"),
        }
    }
}

/// Compare the hash inputs of the previous key with the current ones.
/// `sources` maps input names to the stage names they come from.
pub fn explain(prev: &KeyInputs, cur: &KeyInputs, sources: &BTreeMap<String, String>) -> Vec<Reason> {
    let mut reasons = Vec::new();
    if prev.kind != cur.kind {
        reasons.push(Reason::KindChanged { old: prev.kind.clone(), new: cur.kind.clone() });
    }
    if prev.version != cur.version && prev.kind == cur.kind && prev.method == cur.method {
        reasons.push(Reason::VersionChanged { old: prev.version, new: cur.version });
    }
    let keys: BTreeSet<&String> = prev.params.keys().chain(cur.params.keys()).collect();
    for k in keys {
        let (old, new) = (prev.params.get(k), cur.params.get(k));
        if old != new {
            reasons.push(Reason::ParamChanged { key: k.clone(), old: old.cloned(), new: new.cloned() });
        }
    }
    if prev.seed != cur.seed {
        reasons.push(Reason::SeedChanged { old: prev.seed, new: cur.seed });
    }
    let source = |input: &String| sources.get(input).cloned().unwrap_or_else(|| input.clone());
    for (input, hash) in &cur.inputs {
        match prev.inputs.get(input) {
            None => reasons.push(Reason::InputAdded { input: input.clone(), stage: source(input) }),
            Some(h) if h != hash => reasons.push(Reason::InputChanged { input: input.clone(), stage: source(input) }),
            _ => {}
        }
    }
    for input in prev.inputs.keys() {
        if !cur.inputs.contains_key(input) {
            reasons.push(Reason::InputRemoved { input: input.clone() });
        }
    }
    if reasons.is_empty() {
        reasons.push(Reason::NoCachedResult);
    }
    reasons
}

/// Errors that stop a run before or around stages (a failing stage is not one:
/// it is reported and recorded in the manifest).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// An unknown stage name (the message names it and the nearest known one).
    #[error("{0}")]
    UnknownStage(String),
}

/// What the run in progress has settled so far, so that an interrupt (Ctrl-C)
/// can record it: the manifest with the settled stages, and the stages running.
struct InFlight {
    cache: Cache,
    manifest: Manifest,
    running: Vec<String>,
}

static IN_FLIGHT: Mutex<Option<InFlight>> = Mutex::new(None);

/// Record the run in progress as interrupted: its manifest gets every stage that
/// settled (their results are cached and stay valid) and the running ones as
/// `interrupted` (they leave no record). Returns what to tell the user; `None`
/// when no run is in progress. For a Ctrl-C handler, which then exits.
pub fn interrupt() -> Option<String> {
    let mut guard = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    let state = guard.take()?;
    let mut manifest = state.manifest;
    let t = now_ms();
    for name in &state.running {
        manifest.stages.push(ManifestStage {
            name: name.clone(),
            kind: String::new(),
            method: String::new(),
            status: "interrupted".into(),
            key: None,
            reasons: Vec::new(),
            started_ms: t,
            finished_ms: t,
            duration_ms: 0,
            outputs: BTreeMap::new(),
            error: Some("interrupted".into()),
        });
    }
    manifest.ok = false;
    manifest.finished_ms = t;
    let settled = manifest.stages.iter().filter(|s| s.status == "ran" || s.status == "fresh").count();
    let written = state.cache.write_manifest(&manifest);
    let running = if state.running.is_empty() {
        "between stages".to_string()
    } else {
        format!("while {} ran", state.running.join(", "))
    };
    Some(match written {
        Ok(path) => format!(
            "interrupted {running}; {settled} finished stages are recorded in {} (the next run reuses them)",
            path.display()
        ),
        Err(e) => format!("interrupted {running}; the manifest could not be written: {e}"),
    })
}

fn unknown_stage(spec: &Spec, name: &str) -> ExecError {
    let names: Vec<&str> = spec.stages.iter().map(|s| s.name.as_str()).collect();
    ExecError::UnknownStage(format!(
        "pipeline {} has no stage `{name}`{}",
        spec.name,
        crate::engine::params::suggest(name, &names)
    ))
}

/// Options of `scoreflow run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Run only these stages (and what they need).
    pub only: Vec<String>,
    /// Recompute these stages even when their key is cached.
    pub force: Vec<String>,
    /// Most stages computed at once; 0 means the number of CPUs.
    pub jobs: usize,
    /// The spec file's folder under `runs/` (see [`crate::engine::cache::Home`]);
    /// `None`: the pipeline's name.
    pub home: Option<String>,
    /// Where burn computes; handed to every stage in its [`StageCtx`].
    pub backend: crate::engine::stage::Backend,
}

/// What happened to one stage.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Fresh,
    Ran,
    Failed(String),
    Skipped(String),
    NotSelected,
}

/// The result of a run.
#[derive(Debug)]
pub struct RunReport {
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
    /// Per stage, in file order.
    pub outcomes: Vec<(String, Outcome)>,
    /// Stage summaries (e.g. validity tables) to print at the end.
    pub summaries: Vec<(String, String)>,
}

impl RunReport {
    pub fn ok(&self) -> bool {
        self.manifest.ok
    }
}

/// A completed stage's outputs: name → (content hash, format).
type OutputMap = BTreeMap<String, (Hash, Format)>;

fn outputs_of(record: &Record) -> Option<OutputMap> {
    record.outputs.iter().map(|(k, o)| Some((k.clone(), (o.content_hash()?, o.format())))).collect()
}

/// Hash inputs of a stage given its upstream outputs.
fn key_inputs(stage: &StageSpec, done: &HashMap<String, OutputMap>) -> Option<KeyInputs> {
    let mut inputs = BTreeMap::new();
    for (name, r) in &stage.inputs {
        let (hash, _) = done.get(&r.stage)?.get(&r.output)?;
        inputs.insert(name.clone(), *hash);
    }
    Some(KeyInputs {
        kind: stage.imp.kind().name().to_string(),
        method: stage.imp.method().to_string(),
        version: stage.imp.version(),
        params: stage.params.clone(),
        seed: stage.seed,
        inputs,
    })
}

/// The verdict on one stage whose key is known.
struct Assessment {
    key: Hash,
    key_inputs: KeyInputs,
    /// `Some` when a complete record exists.
    record: Option<Record>,
    /// Why it must run (empty when fresh).
    reasons: Vec<Reason>,
    /// What was found bad in the cache, for the user (a run prints them).
    warnings: Vec<String>,
}

fn assess(
    cache: &Cache,
    stage: &StageSpec,
    ki: KeyInputs,
    previous: Option<&Manifest>,
    forced: bool,
) -> Result<Assessment, CacheError> {
    let key = ki.key();
    let mut reasons = Vec::new();
    let mut warnings = Vec::new();
    let name = &stage.name;
    let record = match cache.lookup(&key)? {
        Lookup::Hit(rec) => match cache.bad_output(&rec)? {
            None => Some(rec),
            Some((output, ObjectError::Missing)) => {
                reasons.push(Reason::OutputMissing { output });
                None
            }
            Some((output, why)) => {
                let file = &rec.outputs[&output].file;
                warnings.push(format!("cached output {name}.{output} is corrupt ({file}: {why}); recomputing {name}"));
                reasons.push(Reason::OutputCorrupt { output });
                None
            }
        },
        Lookup::Garbage(path) => {
            warnings.push(format!("cached record {path} of stage {name} is not a record; recomputing {name}"));
            reasons.push(Reason::RecordCorrupt { path });
            None
        }
        Lookup::Miss => {
            let prev_key = previous
                .and_then(|m| m.stage(&stage.name))
                .and_then(|s| s.key.as_ref())
                .and_then(|k| k.parse::<Hash>().ok());
            match prev_key {
                None if previous.and_then(|m| m.stage(&stage.name)).is_none() => reasons.push(Reason::NewStage),
                None => reasons.push(Reason::NoCachedResult),
                Some(pk) if pk == key => reasons.push(Reason::NoCachedResult),
                Some(pk) => {
                    let prev_inputs = cache.load_record(&pk)?.and_then(|r| KeyInputs::from_json(&r.hash_inputs));
                    match prev_inputs {
                        Some(prev) => {
                            let sources = stage.inputs.iter().map(|(k, r)| (k.clone(), r.stage.clone())).collect();
                            reasons.extend(explain(&prev, &ki, &sources));
                        }
                        None => reasons.push(Reason::NoCachedResult),
                    }
                }
            }
            None
        }
    };
    if forced {
        reasons.insert(0, Reason::Forced);
    }
    let record = if forced { None } else { record };
    Ok(Assessment { key, key_inputs: ki, record, reasons, warnings })
}

/// Status of one stage without running anything.
#[derive(Debug, Clone)]
pub struct StageStatus {
    pub name: String,
    pub key: Option<Hash>,
    pub fresh: bool,
    pub reasons: Vec<Reason>,
}

/// `scoreflow status`: what a run would do, and why.
pub fn status(spec: &Spec, cache: &Cache, home: &str) -> Result<Vec<StageStatus>, ExecError> {
    let dag = Dag::new(spec);
    let previous = cache.latest_manifest(home);
    let mut done: HashMap<String, OutputMap> = HashMap::new();
    let mut by_name: HashMap<String, StageStatus> = HashMap::new();
    for &i in &dag.order {
        let stage = &spec.stages[i];
        let st = match key_inputs(stage, &done) {
            None => {
                let dirty = stage
                    .inputs
                    .values()
                    .map(|r| r.stage.clone())
                    .find(|s| !done.contains_key(s))
                    .expect("some upstream is not done");
                StageStatus {
                    name: stage.name.clone(),
                    key: None,
                    fresh: false,
                    reasons: vec![Reason::UpstreamDirty { stage: dirty }],
                }
            }
            Some(ki) => {
                let a = assess(cache, stage, ki, previous.as_ref(), false)?;
                if let Some(rec) = &a.record
                    && let Some(outs) = outputs_of(rec)
                {
                    done.insert(stage.name.clone(), outs);
                }
                StageStatus {
                    name: stage.name.clone(),
                    key: Some(a.key),
                    fresh: a.record.is_some(),
                    reasons: a.reasons,
                }
            }
        };
        by_name.insert(stage.name.clone(), st);
    }
    Ok(spec.stages.iter().map(|s| by_name.remove(&s.name).expect("every stage assessed")).collect())
}

/// The current result of a stage, if it is fresh: its key and record.
pub fn current_record(spec: &Spec, cache: &Cache, stage_name: &str) -> Result<Option<(Hash, Record)>, ExecError> {
    let idx = spec.index(stage_name).ok_or_else(|| unknown_stage(spec, stage_name))?;
    let dag = Dag::new(spec);
    let needed = dag.ancestors_of(&[idx]);
    let mut done: HashMap<String, OutputMap> = HashMap::new();
    for &i in dag.order.iter().filter(|i| needed.contains(i)) {
        let stage = &spec.stages[i];
        let Some(ki) = key_inputs(stage, &done) else {
            return Ok(None);
        };
        let key = ki.key();
        let Some(rec) = cache.load_record(&key)? else {
            return Ok(None);
        };
        if cache.bad_output(&rec)?.is_some() {
            return Ok(None);
        }
        if i == idx {
            return Ok(Some((key, rec)));
        }
        if let Some(outs) = outputs_of(&rec) {
            done.insert(stage.name.clone(), outs);
        }
    }
    Ok(None)
}

/// Messages from workers to the coordinator.
enum Msg {
    Done {
        idx: usize,
        outputs: OutputMap,
        fresh: bool,
        started_ms: u64,
        finished_ms: u64,
        summary: Option<String>,
    },
    Failed {
        idx: usize,
        error: String,
        started_ms: u64,
        finished_ms: u64,
    },
    /// An input object failed verification; its producer must be recomputed.
    InputCorrupt {
        idx: usize,
        producer: String,
        output: String,
    },
}

struct Shared<'a> {
    spec: &'a Spec,
    cache: &'a Cache,
    /// The spec's identity in this cache (lineage metadata of every table).
    spec_id: String,
    reporter: &'a dyn Reporter,
    backend: crate::engine::stage::Backend,
    /// Artifacts produced or read in this run, by content hash (saves re-reading).
    memo: Mutex<HashMap<Hash, Arc<Artifact>>>,
}

impl Shared<'_> {
    fn load_input(&self, hash: Hash, format: Format) -> Result<Arc<Artifact>, ObjectError> {
        if let Some(a) = self.memo.lock().expect("not poisoned").get(&hash) {
            return Ok(a.clone());
        }
        let a = Arc::new(self.cache.read(&hash, format)?);
        self.memo.lock().expect("not poisoned").insert(hash, a.clone());
        Ok(a)
    }

    /// The worker: lock, re-check, load inputs, compute, store, record.
    fn work(&self, idx: usize, a: Assessment, forced: bool, done: &HashMap<String, OutputMap>) -> Msg {
        let stage = &self.spec.stages[idx];
        let started_ms = now_ms();
        let fail = |error: String| Msg::Failed { idx, error, started_ms, finished_ms: now_ms() };
        let _lock = match self.cache.lock(&a.key) {
            Ok(l) => l,
            Err(e) => return fail(e.to_string()),
        };
        if !forced {
            match self.cache.load_record(&a.key) {
                Ok(Some(rec)) if matches!(self.cache.bad_output(&rec), Ok(None)) => {
                    if let Some(outputs) = outputs_of(&rec) {
                        return Msg::Done {
                            idx,
                            outputs,
                            fresh: true,
                            started_ms,
                            finished_ms: now_ms(),
                            summary: None,
                        };
                    }
                }
                Ok(_) => {}
                Err(e) => return fail(e.to_string()),
            }
        }
        let mut inputs = BTreeMap::new();
        for (name, r) in &stage.inputs {
            let (hash, format) = done[&r.stage][&r.output];
            match self.load_input(hash, format) {
                Ok(artifact) => {
                    inputs.insert(name.clone(), artifact);
                }
                Err(ObjectError::Missing) | Err(ObjectError::Corrupt(_)) => {
                    self.cache.remove_object(&hash, format);
                    return Msg::InputCorrupt { idx, producer: r.stage.clone(), output: r.output.clone() };
                }
                Err(ObjectError::Cache(e)) => return fail(e.to_string()),
            }
        }
        let last = Mutex::new(-1i64);
        let progress = |fraction: f64| {
            let pct = (fraction * 100.0) as i64;
            let mut last = last.lock().expect("not poisoned");
            if pct != *last {
                *last = pct;
                self.reporter.event(&Event::Progress { stage: stage.name.clone(), fraction });
            }
        };
        let ctx =
            StageCtx { params: &stage.params, seed: stage.seed, backend: self.backend, inputs, progress: &progress };
        let outputs = match stage.imp.run(&ctx) {
            Ok(o) => o,
            Err(e) => return fail(e.to_string()),
        };
        // Store objects, then the record.
        let params_json = params_to_json(&stage.params).to_string();
        let inputs_json = serde_json::Value::Object(
            a.key_inputs.inputs.iter().map(|(k, h)| (k.clone(), serde_json::Value::String(h.hex()))).collect(),
        )
        .to_string();
        let mut entries = BTreeMap::new();
        let mut hashes = OutputMap::new();
        let mut produced = BTreeMap::new();
        for def in stage.imp.outputs() {
            let Some(artifact) = outputs.get(def.name) else {
                return fail(format!("stage implementation did not produce output `{}`", def.name));
            };
            let meta = vec![
                ("scoreflow.stage_kind".to_string(), stage.imp.kind().name().to_string()),
                ("scoreflow.method".to_string(), stage.imp.method().to_string()),
                ("scoreflow.stage_key".to_string(), a.key.hex()),
                ("scoreflow.output".to_string(), def.name.to_string()),
                ("scoreflow.params".to_string(), params_json.clone()),
                ("scoreflow.seed".to_string(), stage.seed.to_string()),
                ("scoreflow.impl_version".to_string(), stage.imp.version().to_string()),
                ("scoreflow.inputs".to_string(), inputs_json.clone()),
                ("scoreflow.stage".to_string(), stage.name.clone()),
                ("scoreflow.pipeline".to_string(), self.spec.name.clone()),
                ("scoreflow.spec_file".to_string(), self.spec_id.clone()),
                ("scoreflow.version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
            ];
            let entry: OutputEntry = match self.cache.store(artifact, &meta) {
                Ok(e) => e,
                Err(e) => return fail(e.to_string()),
            };
            let hash = entry.content_hash().expect("just computed");
            hashes.insert(def.name.to_string(), (hash, def.format()));
            produced.insert(def.name.to_string(), Arc::new(artifact.clone()));
            self.memo.lock().expect("not poisoned").insert(hash, produced[def.name].clone());
            entries.insert(def.name.to_string(), entry);
        }
        let finished_ms = now_ms();
        let record = Record {
            format: RECORD_FORMAT,
            key: a.key.hex(),
            hash_inputs: a.key_inputs.to_json(),
            outputs: entries,
            stage_name: stage.name.clone(),
            started_ms,
            finished_ms,
            scoreflow_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        if let Err(e) = self.cache.write_record(&record) {
            return fail(e.to_string());
        }
        let summary = stage.imp.summary(&produced);
        Msg::Done { idx, outputs: hashes, fresh: false, started_ms, finished_ms, summary }
    }
}

/// Run a pipeline.
pub fn run(spec: &Spec, cache: &Cache, opts: &RunOptions, reporter: &dyn Reporter) -> Result<RunReport, ExecError> {
    for name in opts.only.iter().chain(&opts.force) {
        if spec.index(name).is_none() {
            return Err(unknown_stage(spec, name));
        }
    }
    let dag = Dag::new(spec);
    let n = spec.stages.len();
    let selected: BTreeSet<usize> = if opts.only.is_empty() {
        (0..n).collect()
    } else {
        let roots: Vec<usize> = opts.only.iter().filter_map(|s| spec.index(s)).collect();
        dag.ancestors_of(&roots)
    };
    let forced: BTreeSet<usize> = opts.force.iter().filter_map(|s| spec.index(s)).collect();
    let jobs = if opts.jobs == 0 { std::thread::available_parallelism().map_or(2, |n| n.get()) } else { opts.jobs };
    let home = opts.home.clone().unwrap_or_else(|| spec.name.clone());
    let previous = cache.latest_manifest(&home);
    let run_started = now_ms();
    let template = Manifest {
        pipeline: spec.name.clone(),
        home: home.clone(),
        spec_file: spec.path.display().to_string(),
        spec_id: cache.spec_id(&spec.path),
        git_commit: git_commit(&spec.path),
        run_id: format!("{}-{}", run_started, std::process::id()),
        started_ms: run_started,
        finished_ms: run_started,
        ok: false,
        stages: Vec::new(),
    };
    *IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner()) =
        Some(InFlight { cache: cache.clone(), manifest: template.clone(), running: Vec::new() });
    // Keep the in-flight record in step with the coordinator.
    let sync = |lines: &[Option<ManifestStage>], running: &BTreeSet<usize>| {
        if let Some(state) = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            state.manifest.stages = lines.iter().flatten().cloned().collect();
            state.running = running.iter().map(|i| spec.stages[*i].name.clone()).collect();
        }
    };
    let mut in_progress: BTreeSet<usize> = BTreeSet::new();

    let shared = Shared {
        spec,
        cache,
        spec_id: template.spec_id.clone(),
        reporter,
        backend: opts.backend,
        memo: Mutex::new(HashMap::new()),
    };
    let mut done: HashMap<String, OutputMap> = HashMap::new();
    let mut lines: Vec<Option<ManifestStage>> = vec![None; n];
    let mut outcomes: Vec<Option<Outcome>> = vec![None; n];
    let mut reasons_of: Vec<Vec<Reason>> = vec![Vec::new(); n];
    let mut keys: Vec<Option<Hash>> = vec![None; n];
    let mut summaries = Vec::new();
    let mut corrupt_retries: HashMap<usize, u32> = HashMap::new();
    // Producers being recomputed because a consumer found their output corrupt.
    let mut recompute: HashMap<usize, String> = HashMap::new();

    for (i, outcome) in outcomes.iter_mut().enumerate() {
        if !selected.contains(&i) {
            *outcome = Some(Outcome::NotSelected);
        }
    }

    let manifest_line = |i: usize,
                         status: &str,
                         key: Option<Hash>,
                         reasons: &[Reason],
                         t: (u64, u64),
                         outputs: Option<&OutputMap>,
                         error: Option<String>| {
        let s = &spec.stages[i];
        ManifestStage {
            name: s.name.clone(),
            kind: s.imp.kind().name().into(),
            method: s.imp.method().into(),
            status: status.into(),
            key: key.map(|k| k.hex()),
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            started_ms: t.0,
            finished_ms: t.1,
            duration_ms: t.1.saturating_sub(t.0),
            outputs: outputs.map(|o| o.iter().map(|(k, (h, _))| (k.clone(), h.hex())).collect()).unwrap_or_default(),
            error,
        }
    };

    std::thread::scope(|scope| -> Result<(), ExecError> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let mut running = 0usize;
        let mut waiting: VecDeque<(usize, Assessment)> = VecDeque::new();
        loop {
            sync(&lines, &in_progress);
            // Assess every stage whose upstream is settled.
            let mut progressed = true;
            while progressed {
                progressed = false;
                for &i in &dag.order {
                    if outcomes[i].is_some() || keys[i].is_some() {
                        continue;
                    }
                    let stage = &spec.stages[i];
                    let ups = dag.upstream(i);
                    if let Some(&bad) = ups
                        .iter()
                        .find(|u| matches!(outcomes[**u], Some(Outcome::Failed(_)) | Some(Outcome::Skipped(_))))
                    {
                        let because = format!("upstream stage {} did not complete", spec.stages[bad].name);
                        reporter.event(&Event::Skipped { stage: stage.name.clone(), because: because.clone() });
                        lines[i] = Some(manifest_line(
                            i,
                            "skipped",
                            None,
                            &[],
                            (now_ms(), now_ms()),
                            None,
                            Some(because.clone()),
                        ));
                        outcomes[i] = Some(Outcome::Skipped(because));
                        progressed = true;
                        continue;
                    }
                    let Some(ki) = key_inputs(stage, &done) else {
                        continue;
                    };
                    let is_forced = forced.contains(&i) || recompute.contains_key(&i);
                    let mut a = assess(cache, stage, ki, previous.as_ref(), is_forced)?;
                    for message in a.warnings.drain(..) {
                        reporter.event(&Event::Warning { message });
                    }
                    if let Some(output) = recompute.get(&i) {
                        a.reasons = vec![Reason::OutputCorrupt { output: output.clone() }];
                    }
                    keys[i] = Some(a.key);
                    progressed = true;
                    if let Some(rec) = &a.record
                        && let Some(outs) = outputs_of(rec)
                    {
                        reporter.event(&Event::Fresh { stage: stage.name.clone(), key: a.key.hex() });
                        let t = now_ms();
                        lines[i] = Some(manifest_line(i, "fresh", Some(a.key), &[], (t, t), Some(&outs), None));
                        done.insert(stage.name.clone(), outs);
                        outcomes[i] = Some(Outcome::Fresh);
                        continue;
                    }
                    reasons_of[i] = a.reasons.clone();
                    waiting.push_back((i, a));
                }
            }
            // Start workers.
            while running < jobs {
                let Some((i, a)) = waiting.pop_front() else {
                    break;
                };
                let stage = &spec.stages[i];
                reporter.event(&Event::Started {
                    stage: stage.name.clone(),
                    key: a.key.hex(),
                    reasons: a.reasons.iter().map(|r| r.to_string()).collect(),
                });
                let tx = tx.clone();
                let shared = &shared;
                let snapshot: HashMap<String, OutputMap> =
                    stage.inputs.values().map(|r| (r.stage.clone(), done[&r.stage].clone())).collect();
                let is_forced = forced.contains(&i) || recompute.contains_key(&i);
                running += 1;
                in_progress.insert(i);
                sync(&lines, &in_progress);
                scope.spawn(move || {
                    let msg = shared.work(i, a, is_forced, &snapshot);
                    let _ = tx.send(msg);
                });
            }
            if running == 0 {
                break;
            }
            let msg = rx.recv().expect("a worker is running");
            running -= 1;
            let settled = match &msg {
                Msg::Done { idx, .. } | Msg::Failed { idx, .. } | Msg::InputCorrupt { idx, .. } => *idx,
            };
            in_progress.remove(&settled);
            match msg {
                Msg::Done { idx, outputs, fresh, started_ms, finished_ms, summary } => {
                    let stage = &spec.stages[idx];
                    let seconds = (finished_ms.saturating_sub(started_ms)) as f64 / 1000.0;
                    reporter.event(&Event::Finished {
                        stage: stage.name.clone(),
                        key: keys[idx].expect("assessed").hex(),
                        seconds,
                        fresh,
                    });
                    let status = if fresh { "fresh" } else { "ran" };
                    let reasons = if fresh { Vec::new() } else { reasons_of[idx].clone() };
                    lines[idx] = Some(manifest_line(
                        idx,
                        status,
                        keys[idx],
                        &reasons,
                        (started_ms, finished_ms),
                        Some(&outputs),
                        None,
                    ));
                    if let Some(text) = summary {
                        summaries.push((stage.name.clone(), text));
                    }
                    done.insert(stage.name.clone(), outputs);
                    outcomes[idx] = Some(if fresh { Outcome::Fresh } else { Outcome::Ran });
                }
                Msg::Failed { idx, error, started_ms, finished_ms } => {
                    let stage = &spec.stages[idx];
                    reporter.event(&Event::Failed { stage: stage.name.clone(), error: error.clone() });
                    lines[idx] = Some(manifest_line(
                        idx,
                        "failed",
                        keys[idx],
                        &reasons_of[idx],
                        (started_ms, finished_ms),
                        None,
                        Some(error.clone()),
                    ));
                    outcomes[idx] = Some(Outcome::Failed(error));
                }
                Msg::InputCorrupt { idx, producer, output } => {
                    let p = spec.index(&producer).expect("validated reference");
                    let tries = corrupt_retries.entry(p).or_insert(0);
                    *tries += 1;
                    let stage = &spec.stages[idx];
                    if *tries > 2 {
                        let error = format!("input {producer}.{output} is corrupt again after recomputing it");
                        reporter.event(&Event::Failed { stage: stage.name.clone(), error: error.clone() });
                        lines[idx] = Some(manifest_line(
                            idx,
                            "failed",
                            keys[idx],
                            &reasons_of[idx],
                            (now_ms(), now_ms()),
                            None,
                            Some(error.clone()),
                        ));
                        outcomes[idx] = Some(Outcome::Failed(error));
                        continue;
                    }
                    reporter.event(&Event::Warning {
                        message: format!("cached output {producer}.{output} is corrupt or missing; removed it and recomputing {producer}"),
                    });
                    if let Some(k) = keys[p] {
                        cache.remove_record(&k);
                    }
                    // Re-plan the producer and this consumer.
                    done.remove(&producer);
                    outcomes[p] = None;
                    keys[p] = None;
                    keys[idx] = None;
                    recompute.insert(p, output);
                }
            }
        }
        Ok(())
    })?;

    // Stages never reached (only possible if something upstream failed in a way
    // that did not mark them) are reported as skipped.
    for i in 0..n {
        if outcomes[i].is_none() {
            outcomes[i] = Some(Outcome::Skipped("not reached".into()));
            lines[i] =
                Some(manifest_line(i, "skipped", None, &[], (now_ms(), now_ms()), None, Some("not reached".into())));
        }
    }
    let ok = outcomes.iter().all(|o| !matches!(o, Some(Outcome::Failed(_)) | Some(Outcome::Skipped(_))));
    let stages = (0..n)
        .filter_map(|i| match &outcomes[i] {
            Some(Outcome::NotSelected) => {
                // Keep the previous run's line so `gc` does not drop unselected results.
                previous.as_ref().and_then(|m| m.stage(&spec.stages[i].name)).cloned()
            }
            _ => lines[i].clone(),
        })
        .collect();
    let manifest = Manifest { finished_ms: now_ms(), ok, stages, ..template };
    // From here on an interrupt has nothing to add: the manifest is complete.
    *IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let manifest_path = cache.write_manifest(&manifest)?;
    reporter.finish();
    let outcomes = spec.stages.iter().zip(outcomes).map(|(s, o)| (s.name.clone(), o.expect("settled"))).collect();
    Ok(RunReport { manifest, manifest_path, outcomes, summaries })
}

/// The commit checked out in the git repository holding `path`, read from
/// `.git` directly (a loose or packed ref, or a detached HEAD); `None` outside a
/// repository.
pub fn git_commit(path: &std::path::Path) -> Option<String> {
    let start = std::fs::canonicalize(path).ok()?;
    let git = start.ancestors().map(|d| d.join(".git")).find(|g| g.exists())?;
    // A worktree or submodule has a `.git` file pointing at its git dir.
    let git = if git.is_file() {
        let text = std::fs::read_to_string(&git).ok()?;
        let rel = text.strip_prefix("gitdir:")?.trim();
        git.parent()?.join(rel)
    } else {
        git
    };
    let head = std::fs::read_to_string(git.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref:").map(str::trim) else {
        return Some(head.to_string());
    };
    let common = std::fs::read_to_string(git.join("commondir")).ok().map(|c| git.join(c.trim())).unwrap_or(git.clone());
    for dir in [&git, &common] {
        if let Ok(id) = std::fs::read_to_string(dir.join(reference)) {
            return Some(id.trim().to_string());
        }
        if let Ok(packed) = std::fs::read_to_string(dir.join("packed-refs"))
            && let Some(line) = packed.lines().find(|l| l.ends_with(reference) && !l.starts_with('#'))
        {
            return line.split_whitespace().next().map(str::to_string);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_commit_reads_the_checked_out_commit() {
        let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        if here.join(".git").exists() {
            let c = git_commit(&here.join("Cargo.toml")).expect("a commit");
            assert!(c.len() == 40 && c.chars().all(|ch| ch.is_ascii_hexdigit()), "{c}");
        }
        assert_eq!(git_commit(std::path::Path::new("/")), None);
    }

    fn ki() -> KeyInputs {
        KeyInputs {
            kind: "generate".into(),
            method: "triangles".into(),
            version: 1,
            params: [("n_samples".to_string(), Value::Int(4096))].into_iter().collect(),
            seed: 42,
            inputs: BTreeMap::new(),
        }
    }

    #[test]
    fn explain_names_the_changed_field() {
        let mut cur = ki();
        cur.params.insert("n_samples".into(), Value::Int(2048));
        let r = explain(&ki(), &cur, &BTreeMap::new());
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].to_string(), "param n_samples changed 4096 → 2048");
        let mut cur = ki();
        cur.version = 2;
        assert_eq!(explain(&ki(), &cur, &BTreeMap::new())[0].to_string(), "implementation version 1 → 2");
    }

    #[test]
    fn explain_names_the_upstream_stage() {
        let mut prev = ki();
        prev.inputs.insert("data".into(), Hash::of(b"a"));
        let mut cur = prev.clone();
        cur.inputs.insert("data".into(), Hash::of(b"b"));
        let sources = [("data".to_string(), "triangles".to_string())].into_iter().collect();
        assert_eq!(explain(&prev, &cur, &sources)[0].to_string(), "input triangles changed (as `data`)");
    }
}
