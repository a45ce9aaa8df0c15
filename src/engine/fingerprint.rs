//! Fingerprints: a stage's key from its hash inputs, whether the cache holds a
//! complete result for it, and — when it does not — the named [`Reason`]s why,
//! found by diffing the hash inputs against those of the key the stage had in
//! the pipeline's latest run (cargo's fingerprints, stored structured).
//!
//! A key is known only once the content hashes of the stage's inputs are: the
//! walk in [`assess_fresh`] goes down the DAG as far as results are fresh, and
//! serves both `status` and `inspect`/`export` (the run does the same walk as
//! it schedules, in [`crate::engine::executor`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::engine::cache::{Cache, CacheError, Lookup, Manifest, ObjectError, Record, Verify};
use crate::engine::dag::Dag;
use crate::engine::hash::{Hash, KeyInputs};
use crate::engine::params::Value;
use crate::engine::spec::{Spec, StageSpec};
use crate::engine::stage::Format;

/// Content hash and storage format of each output of a stage.
pub type OutputMap = BTreeMap<String, (Hash, Format)>;

/// Why a stage runs (or would run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
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
    /// The content of the file bound to input `input` changed (its path may not have).
    FileChanged {
        input: String,
        path: String,
    },
    /// A command stage's `code:` file changed content (or was added or removed).
    CodeChanged {
        path: String,
    },
    /// A field of a command stage's declaration changed (`run`, `outputs`,
    /// `env` values, `version`, …).
    CommandChanged {
        field: String,
        old: Option<Value>,
        new: Option<Value>,
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
            Reason::FileChanged { input, path } => write!(f, "file {path} changed (as `{input}`)"),
            Reason::CodeChanged { path } => write!(f, "code {path} changed"),
            Reason::CommandChanged { field, old, new } => {
                write!(f, "command {field} changed {} → {}", opt(old), opt(new))
            }
            Reason::OutputMissing { output } => write!(f, "output {output} missing from the cache"),
            Reason::OutputCorrupt { output } => write!(f, "cached output {output} was corrupt"),
            Reason::RecordCorrupt { path } => write!(f, "cached record {path} was corrupt"),
            Reason::Forced => write!(f, "forced (--force)"),
            Reason::UpstreamDirty { stage } => write!(f, "waits for {stage}, which will run first"),
        }
    }
}

/// Where an input comes from, for naming it in a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stage(String),
    File(String),
}

/// Compare the hash inputs of the previous key with the current ones.
/// `sources` says where each input comes from.
pub fn explain(prev: &KeyInputs, cur: &KeyInputs, sources: &BTreeMap<String, Source>) -> Vec<Reason> {
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
    let source = |input: &String| match sources.get(input) {
        Some(Source::Stage(s)) => s.clone(),
        Some(Source::File(p)) => format!("file {p}"),
        None => input.clone(),
    };
    // A command's declaration, field by field (`env` variable by variable).
    let fields = |ki: &KeyInputs| match &ki.definition {
        Some(Value::Map(m)) => m.clone(),
        _ => BTreeMap::new(),
    };
    let (pd, cd) = (fields(prev), fields(cur));
    for field in pd.keys().chain(cd.keys()).collect::<BTreeSet<_>>() {
        match (pd.get(field), cd.get(field)) {
            (Some(Value::Map(a)), Some(Value::Map(b))) if field == "env" => {
                for var in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
                    if a.get(var) != b.get(var) {
                        reasons.push(Reason::CommandChanged {
                            field: format!("env {var}"),
                            old: a.get(var).cloned(),
                            new: b.get(var).cloned(),
                        });
                    }
                }
            }
            (a, b) if a != b => {
                reasons.push(Reason::CommandChanged { field: field.clone(), old: a.cloned(), new: b.cloned() })
            }
            _ => {}
        }
    }
    let code = |input: &str| input.strip_prefix(crate::engine::command::CODE_PREFIX).map(str::to_string);
    for (input, hash) in &cur.inputs {
        if let Some(path) = code(input) {
            if prev.inputs.get(input) != Some(hash) {
                reasons.push(Reason::CodeChanged { path });
            }
            continue;
        }
        match prev.inputs.get(input) {
            None => reasons.push(Reason::InputAdded { input: input.clone(), stage: source(input) }),
            Some(h) if h != hash => reasons.push(match sources.get(input) {
                Some(Source::File(path)) => Reason::FileChanged { input: input.clone(), path: path.clone() },
                _ => Reason::InputChanged { input: input.clone(), stage: source(input) },
            }),
            _ => {}
        }
    }
    for input in prev.inputs.keys() {
        if !cur.inputs.contains_key(input) {
            reasons.push(match code(input) {
                Some(path) => Reason::CodeChanged { path },
                None => Reason::InputRemoved { input: input.clone() },
            });
        }
    }
    if reasons.is_empty() {
        reasons.push(Reason::NoCachedResult);
    }
    reasons
}

pub fn outputs_of(record: &Record) -> Option<OutputMap> {
    record.outputs.iter().map(|(k, o)| Some((k.clone(), (o.content_hash()?, o.format())))).collect()
}

/// Hash inputs of a stage given its upstream outputs.
pub fn key_inputs(stage: &StageSpec, done: &HashMap<String, OutputMap>) -> Option<KeyInputs> {
    let mut inputs = BTreeMap::new();
    for (name, r) in &stage.inputs {
        let (hash, _) = done.get(&r.stage)?.get(&r.output)?;
        inputs.insert(name.clone(), *hash);
    }
    for (name, f) in &stage.files {
        inputs.insert(name.clone(), f.hash);
    }
    Some(KeyInputs {
        kind: stage.imp.kind().name().to_string(),
        method: stage.imp.method().to_string(),
        version: stage.imp.version(),
        params: stage.params.clone(),
        seed: stage.seed,
        inputs,
        definition: stage.imp.definition(),
    })
}

/// The verdict on one stage whose key is known.
pub struct Assessment {
    pub key: Hash,
    pub key_inputs: KeyInputs,
    /// `Some` when a complete record exists.
    pub record: Option<Record>,
    /// Why it must run (empty when fresh).
    pub reasons: Vec<Reason>,
    /// What was found bad in the cache, for the user (a run prints them).
    pub warnings: Vec<String>,
}

pub fn assess(
    cache: &Cache,
    stage: &StageSpec,
    ki: KeyInputs,
    previous: Option<&Manifest>,
    forced: bool,
    verify: Verify,
) -> Result<Assessment, CacheError> {
    let key = ki.key();
    let mut reasons = Vec::new();
    let mut warnings = Vec::new();
    let name = &stage.name;
    let record = match cache.lookup(&key)? {
        Lookup::Hit(rec) => match cache.bad_output_by(&rec, verify)? {
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
                            let sources = stage
                                .inputs
                                .iter()
                                .map(|(k, r)| (k.clone(), Source::Stage(r.stage.clone())))
                                .chain(stage.files.iter().map(|(k, f)| (k.clone(), Source::File(f.path.clone()))))
                                .collect();
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

/// Walk the stages among `among` (all when `None`) in DAG order, computing each
/// key from its inputs' content hashes while upstream results are fresh:
/// `Some(assessment)` for a stage whose key is known, `None` for one that waits
/// for an upstream stage that is not fresh.
pub fn assess_fresh(
    spec: &Spec,
    cache: &Cache,
    previous: Option<&Manifest>,
    among: Option<&BTreeSet<usize>>,
    verify: Verify,
) -> Result<Vec<Option<Assessment>>, CacheError> {
    let dag = Dag::new(spec);
    let mut done: HashMap<String, OutputMap> = HashMap::new();
    let mut found: Vec<Option<Assessment>> = (0..spec.stages.len()).map(|_| None).collect();
    for &i in dag.order.iter().filter(|i| among.is_none_or(|a| a.contains(i))) {
        let stage = &spec.stages[i];
        let Some(ki) = key_inputs(stage, &done) else { continue };
        let a = assess(cache, stage, ki, previous, false, verify)?;
        if let Some(outs) = a.record.as_ref().and_then(outputs_of) {
            done.insert(stage.name.clone(), outs);
        }
        found[i] = Some(a);
    }
    Ok(found)
}

/// Status of one stage without running anything.
#[derive(Debug, Clone)]
pub struct StageStatus {
    pub name: String,
    pub key: Option<Hash>,
    pub fresh: bool,
    pub reasons: Vec<Reason>,
    /// The checkpoint a run would resume this stage from.
    pub checkpoint: Option<crate::engine::checkpoint::Header>,
}

/// `scoreflow status`: what a run would do, and why.
pub fn status(spec: &Spec, cache: &Cache, home: &str) -> Result<Vec<StageStatus>, CacheError> {
    let previous = cache.latest_manifest(home);
    let found = assess_fresh(spec, cache, previous.as_ref(), None, Verify::Bytes)?;
    let fresh = |name: &str| spec.index(name).is_some_and(|j| found[j].as_ref().is_some_and(|a| a.record.is_some()));
    Ok(spec
        .stages
        .iter()
        .zip(found.iter())
        .map(|(stage, a)| match a {
            Some(a) => StageStatus {
                name: stage.name.clone(),
                key: Some(a.key),
                fresh: a.record.is_some(),
                reasons: a.reasons.clone(),
                checkpoint: if a.record.is_some() { None } else { cache.checkpoint_header(&a.key) },
            },
            None => {
                let waits = stage.inputs.values().map(|r| r.stage.clone()).find(|s| !fresh(s)).expect("an upstream");
                StageStatus {
                    name: stage.name.clone(),
                    key: None,
                    fresh: false,
                    reasons: vec![Reason::UpstreamDirty { stage: waits }],
                    checkpoint: None,
                }
            }
        })
        .collect())
}

/// The current result of stage `idx`, if it is fresh: its key and record.
pub fn current_record(spec: &Spec, cache: &Cache, idx: usize) -> Result<Option<(Hash, Record)>, CacheError> {
    let among = Dag::new(spec).ancestors_of(&[idx]);
    let mut found = assess_fresh(spec, cache, None, Some(&among), Verify::Bytes)?;
    Ok(found[idx].take().and_then(|a| a.record.map(|r| (a.key, r))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ki() -> KeyInputs {
        crate::engine::hash::tests::sample()
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
        let sources = [("data".to_string(), Source::Stage("triangles".to_string()))].into_iter().collect();
        assert_eq!(explain(&prev, &cur, &sources)[0].to_string(), "input triangles changed (as `data`)");
    }

    #[test]
    fn explain_names_a_command_s_changed_code_and_declaration() {
        let def = |env: &str, run: &str| {
            Some(Value::Map(
                [
                    ("env".to_string(), Value::Map([("TORCH".to_string(), Value::Str(env.into()))].into())),
                    ("run".to_string(), Value::List(vec![Value::Str(run.into())])),
                ]
                .into(),
            ))
        };
        let mut prev = ki();
        prev.inputs.insert("code:scripts/a.py".into(), Hash::of(b"a"));
        prev.definition = def("2.4", "a");
        let mut cur = prev.clone();
        cur.inputs.insert("code:scripts/a.py".into(), Hash::of(b"b"));
        cur.definition = def("2.5", "a");
        let r: Vec<String> = explain(&prev, &cur, &BTreeMap::new()).iter().map(|r| r.to_string()).collect();
        assert_eq!(r, ["command env TORCH changed 2.4 → 2.5", "code scripts/a.py changed"]);
        cur.definition = def("2.4", "b");
        cur.inputs = prev.inputs.clone();
        let r: Vec<String> = explain(&prev, &cur, &BTreeMap::new()).iter().map(|r| r.to_string()).collect();
        assert_eq!(r, ["command run changed [a] → [b]"]);
    }

    #[test]
    fn reasons_are_stored_structured_and_read_back() {
        let r = vec![
            Reason::ParamChanged { key: "lr".into(), old: Some(Value::Float(1.0)), new: None },
            Reason::InputChanged { input: "model".into(), stage: "pretrain".into() },
            Reason::Forced,
        ];
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#"{"reason":"param_changed","key":"lr","old":1.0,"new":null}"#), "{json}");
        assert_eq!(serde_json::from_str::<Vec<Reason>>(&json).unwrap(), r);
    }
}
