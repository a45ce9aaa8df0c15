//! The worker: compute one stage key from a serialisable job description.
//!
//! A [`Job`] holds exactly what determines the result — the stage's
//! [`KeyInputs`] (kind, method, implementation version, params, seed, the
//! content hashes of its inputs) — plus lineage that is not hashed (stage,
//! pipeline, spec file). [`execute`] takes the key's lock, checks the record
//! again (another process may have computed it meanwhile), loads and verifies
//! the inputs by content hash, runs the implementation, stores the outputs and
//! writes the record last. It needs nothing of the run that scheduled it, so a
//! job written out as JSON ([`Job::to_json`]) can be executed by another
//! process on another machine that shares the cache, with the same code.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::engine::cache::{Cache, ObjectError, OutputEntry, RECORD_FORMAT, Record, now_ms};
use crate::engine::checkpoint::{Checkpointing, DEFAULT_EVERY, Every, Resume, thousands};
use crate::engine::fingerprint::{OutputMap, outputs_of};
use crate::engine::hash::{Hash, KeyInputs};
use crate::engine::params::params_to_json;
use crate::engine::stage::{Artifact, Backend, Format, JobCtx, Kind, Registry, Stage, StageCtx};

/// One stage to compute: what determines its key, and where it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Everything that determines the result, and so the key.
    pub key_inputs: KeyInputs,
    /// Not hashed: the stage's name, its pipeline and spec file (lineage
    /// metadata and messages).
    pub stage: String,
    pub pipeline: String,
    pub spec_file: String,
    /// Recompute even when the key has a record.
    pub forced: bool,
    /// Not hashed: the wall-clock limit in seconds (`resources.time`), which
    /// a command stage enforces wherever it runs.
    pub time_limit_s: Option<u64>,
    /// Not hashed: how often a checkpointing stage saves its state.
    pub checkpoint_every: Every,
    /// Not hashed: resume from the key's checkpoint when there is one
    /// (`run --no-resume`: start over).
    pub resume: bool,
}

impl Job {
    pub fn key(&self) -> Hash {
        self.key_inputs.key()
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "key_inputs": self.key_inputs.to_json(),
            "stage": self.stage,
            "pipeline": self.pipeline,
            "spec_file": self.spec_file,
            "forced": self.forced,
            "time_limit_s": self.time_limit_s,
            "checkpoint_every": self.checkpoint_every.describe(),
            "resume": self.resume,
        })
    }

    pub fn from_json(json: &serde_json::Value) -> Option<Job> {
        Some(Job {
            key_inputs: KeyInputs::from_json(json.get("key_inputs")?)?,
            stage: json.get("stage")?.as_str()?.to_string(),
            pipeline: json.get("pipeline")?.as_str()?.to_string(),
            spec_file: json.get("spec_file")?.as_str()?.to_string(),
            forced: json.get("forced")?.as_bool()?,
            time_limit_s: json.get("time_limit_s").and_then(serde_json::Value::as_u64),
            checkpoint_every: match json.get("checkpoint_every") {
                None => DEFAULT_EVERY,
                Some(v) => Every::parse(v.as_str()?)?,
            },
            resume: json.get("resume").and_then(serde_json::Value::as_bool).unwrap_or(true),
        })
    }

    /// The implementation a job names, in `registry`, at the version it names.
    pub fn implementation(&self, registry: &Registry) -> Result<&'static dyn Stage, String> {
        implementation_of(&self.key_inputs, registry)
    }
}

/// The implementation a key's inputs name, in `registry`, at the version they
/// name; a command stage is rebuilt from its definition.
pub fn implementation_of(ki: &KeyInputs, registry: &Registry) -> Result<&'static dyn Stage, String> {
    let kind = Kind::parse(&ki.kind).ok_or_else(|| format!("unknown stage kind `{}`", ki.kind))?;
    if ki.method == crate::engine::command::METHOD {
        let def = ki.definition.as_ref().ok_or("a command job without its definition")?;
        let stage = crate::engine::command::from_key(kind, def, &ki.inputs)
            .ok_or("a command job whose definition does not parse")?;
        if ki.version != crate::engine::command::PROTOCOL {
            return Err(format!(
                "the job wants command protocol {}, this build has {}",
                ki.version,
                crate::engine::command::PROTOCOL
            ));
        }
        return Ok(stage);
    }
    let imp = registry.find(kind, &ki.method).ok_or_else(|| format!("no {kind} implementation `{}`", ki.method))?;
    if imp.version() != ki.version {
        return Err(format!(
            "the job wants {kind} {} version {}, this build has version {}",
            ki.method,
            ki.version,
            imp.version()
        ));
    }
    Ok(imp)
}

/// A computed (or, found meanwhile, fresh) stage.
#[derive(Debug)]
pub struct Done {
    pub outputs: OutputMap,
    /// The record appeared while the job waited for its lock: nothing was computed.
    pub fresh: bool,
    pub started_ms: u64,
    pub finished_ms: u64,
    /// What the implementation wants printed at the end of the run.
    pub summary: Option<String>,
    /// The resumes on the way to the result, oldest first (empty when it
    /// ran from the start).
    pub resumes: Vec<Resume>,
    /// What the user should hear (a bad checkpoint discarded).
    pub warnings: Vec<String>,
    /// The Slurm jobs that stopped and were resubmitted before this one finished.
    pub requeues: Vec<crate::engine::manifest::Requeue>,
}

/// Why a job did not produce a record.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error("{error}")]
    Failed { error: String, started_ms: u64, finished_ms: u64 },
    /// The object of input `input` is missing or corrupt; it has been removed,
    /// so its producer can be recomputed.
    #[error("input `{input}` is corrupt or missing")]
    InputCorrupt { input: String },
    /// The process was asked to stop; the stage saved a checkpoint at `step`
    /// of `total` first (it resumes there).
    #[error(
        "by signal {signal} at step {} of {}; its checkpoint is saved and the next run resumes there",
        thousands(*.step),
        thousands(*.total)
    )]
    Interrupted { step: u64, total: u64, signal: i32, started_ms: u64, finished_ms: u64 },
}

/// A worker's outcome as JSON: what `scoreflow worker` writes to its result
/// file for the coordinator that submitted it (see [`crate::engine::slurm`]).
pub fn outcome_to_json(outcome: &Result<Done, WorkError>) -> serde_json::Value {
    match outcome {
        Ok(d) => serde_json::json!({
            "ok": true,
            "fresh": d.fresh,
            "started_ms": d.started_ms,
            "finished_ms": d.finished_ms,
            "summary": d.summary,
            "resumes": d.resumes,
            "warnings": d.warnings,
            "outputs": d.outputs.iter().map(|(name, (hash, format))| {
                (name.clone(), serde_json::json!({"hash": hash.hex(), "format": format.name()}))
            }).collect::<serde_json::Map<_, _>>(),
        }),
        Err(WorkError::Failed { error, started_ms, finished_ms }) => serde_json::json!({
            "ok": false, "error": error, "started_ms": started_ms, "finished_ms": finished_ms,
        }),
        Err(WorkError::InputCorrupt { input }) => serde_json::json!({"ok": false, "input_corrupt": input}),
        Err(WorkError::Interrupted { step, total, signal, started_ms, finished_ms }) => serde_json::json!({
            "ok": false, "interrupted": {"step": step, "total": total, "signal": signal},
            "started_ms": started_ms, "finished_ms": finished_ms,
        }),
    }
}

/// Read back what [`outcome_to_json`] wrote; `None` when it is not such a value.
pub fn outcome_from_json(v: &serde_json::Value) -> Option<Result<Done, WorkError>> {
    let ms = |k: &str| v.get(k).and_then(serde_json::Value::as_u64);
    if v.get("ok")?.as_bool()? {
        let mut outputs = OutputMap::new();
        for (name, o) in v.get("outputs")?.as_object()? {
            let hash = o.get("hash")?.as_str()?.parse().ok()?;
            let format = match o.get("format")?.as_str()? {
                "table" => Format::Table,
                "blob" => Format::Blob,
                _ => return None,
            };
            outputs.insert(name.clone(), (hash, format));
        }
        return Some(Ok(Done {
            outputs,
            fresh: v.get("fresh")?.as_bool()?,
            started_ms: ms("started_ms")?,
            finished_ms: ms("finished_ms")?,
            summary: v.get("summary").and_then(|s| s.as_str()).map(str::to_string),
            resumes: v.get("resumes").and_then(|r| serde_json::from_value(r.clone()).ok()).unwrap_or_default(),
            warnings: v
                .get("warnings")
                .and_then(|w| w.as_array())
                .map(|w| w.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            requeues: Vec::new(),
        }));
    }
    if let Some(i) = v.get("interrupted") {
        return Some(Err(WorkError::Interrupted {
            step: i.get("step")?.as_u64()?,
            total: i.get("total")?.as_u64()?,
            signal: i.get("signal")?.as_i64()? as i32,
            started_ms: ms("started_ms")?,
            finished_ms: ms("finished_ms")?,
        }));
    }
    if let Some(input) = v.get("input_corrupt").and_then(|i| i.as_str()) {
        return Some(Err(WorkError::InputCorrupt { input: input.to_string() }));
    }
    Some(Err(WorkError::Failed {
        error: v.get("error")?.as_str()?.to_string(),
        started_ms: ms("started_ms")?,
        finished_ms: ms("finished_ms")?,
    }))
}

/// Artifacts produced or read in this process, by content hash (saves
/// re-reading an object several consumers share).
#[derive(Default)]
pub struct Memo(Mutex<HashMap<Hash, Arc<Artifact>>>);

impl Memo {
    fn load(&self, cache: &Cache, hash: Hash, format: Format) -> Result<Arc<Artifact>, ObjectError> {
        if let Some(a) = self.0.lock().expect("not poisoned").get(&hash) {
            return Ok(a.clone());
        }
        let a = Arc::new(cache.read(&hash, format)?);
        self.0.lock().expect("not poisoned").insert(hash, a.clone());
        Ok(a)
    }

    fn keep(&self, hash: Hash, artifact: Arc<Artifact>) {
        self.0.lock().expect("not poisoned").insert(hash, artifact);
    }
}

/// Compute `job` with implementation `imp` (the one [`Job::implementation`]
/// names): lock, re-check, load inputs, run, store, record. A panic anywhere
/// in it — a stage's bug, a decoder's — is the stage's failure, with the
/// panic's message: the key's lock is released on the way out, nothing is
/// recorded, and the caller (the run's coordinator, a Slurm worker) always
/// gets an outcome, never a silent thread.
pub fn execute(
    job: &Job,
    imp: &dyn Stage,
    cache: &Cache,
    memo: &Memo,
    backend: Backend,
    progress: &(dyn Fn(f64) + Sync),
) -> Result<Done, WorkError> {
    let started_ms = now_ms();
    let run = std::panic::AssertUnwindSafe(|| execute_unguarded(job, imp, cache, memo, backend, progress));
    std::panic::catch_unwind(run).unwrap_or_else(|payload| {
        let why = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string());
        // The stage's checkpoint goes too: resumed, it may be what the stage
        // could not take (state that verifies but does not fit), and a
        // checkpoint the panicking code wrote would lead to the same panic.
        let path = cache.checkpoint_path(&job.key());
        let discarded = if std::fs::symlink_metadata(&path).is_ok() {
            cache.remove_checkpoint(&job.key());
            " and its checkpoint was discarded (the next run starts over)"
        } else {
            ""
        };
        Err(WorkError::Failed {
            error: format!("the stage panicked (a bug, please report it): {why}; nothing was cached{discarded}"),
            started_ms,
            finished_ms: now_ms(),
        })
    })
}

fn execute_unguarded(
    job: &Job,
    imp: &dyn Stage,
    cache: &Cache,
    memo: &Memo,
    backend: Backend,
    progress: &(dyn Fn(f64) + Sync),
) -> Result<Done, WorkError> {
    let started_ms = now_ms();
    let fail = |error: String| WorkError::Failed { error, started_ms, finished_ms: now_ms() };
    let key = job.key();
    let ki = &job.key_inputs;
    let _lock = cache.lock(&key).map_err(|e| fail(e.to_string()))?;
    if !job.forced {
        match cache.load_record(&key) {
            Ok(Some(rec)) if matches!(cache.bad_output(&rec), Ok(None)) => {
                if let Some(outputs) = outputs_of(&rec) {
                    cache.remove_checkpoint(&key);
                    return Ok(Done {
                        outputs,
                        fresh: true,
                        started_ms,
                        finished_ms: now_ms(),
                        summary: None,
                        resumes: Vec::new(),
                        warnings: Vec::new(),
                        requeues: Vec::new(),
                    });
                }
            }
            Ok(_) => {}
            Err(e) => return Err(fail(e.to_string())),
        }
    }
    let mut inputs = BTreeMap::new();
    for (name, hash) in &ki.inputs {
        let def =
            imp.inputs().iter().find(|d| d.name == name).ok_or_else(|| fail(format!("unknown input `{name}`")))?;
        match memo.load(cache, *hash, def.format()) {
            Ok(artifact) => {
                inputs.insert(name.clone(), artifact);
            }
            Err(ObjectError::Missing) | Err(ObjectError::Corrupt(_)) => {
                cache.remove_object(hash, def.format());
                return Err(WorkError::InputCorrupt { input: name.clone() });
            }
            Err(ObjectError::Cache(e)) => return Err(fail(e.to_string())),
        }
    }
    let job_ctx = JobCtx {
        stage: &job.stage,
        pipeline: &job.pipeline,
        key,
        cache,
        input_hashes: &ki.inputs,
        time_limit: job.time_limit_s.map(std::time::Duration::from_secs),
        threads: rayon::current_num_threads(),
    };
    let checkpoint = if imp.checkpoints() {
        Checkpointing::for_key(cache, key, job.checkpoint_every, job.resume)
    } else {
        Checkpointing::none()
    };
    let ctx = StageCtx {
        params: &ki.params,
        seed: ki.seed,
        backend,
        inputs,
        progress,
        job: Some(&job_ctx),
        checkpoint: &checkpoint,
    };
    let outputs = imp.run(&ctx).map_err(|e| match e {
        crate::engine::stage::StageError::Interrupted { step, total, signal } => {
            WorkError::Interrupted { step, total, signal, started_ms, finished_ms: now_ms() }
        }
        e => fail(e.to_string()),
    })?;
    // Store objects, then the record.
    let params_json = params_to_json(&ki.params).to_string();
    let inputs_json = serde_json::Value::Object(
        ki.inputs.iter().map(|(k, h)| (k.clone(), serde_json::Value::String(h.hex()))).collect(),
    )
    .to_string();
    let mut entries = BTreeMap::new();
    let mut hashes = OutputMap::new();
    let mut produced = BTreeMap::new();
    for def in imp.outputs() {
        let Some(artifact) = outputs.get(def.name) else {
            return Err(fail(format!("stage implementation did not produce output `{}`", def.name)));
        };
        let meta = vec![
            ("scoreflow.stage_kind".to_string(), ki.kind.clone()),
            ("scoreflow.method".to_string(), ki.method.clone()),
            ("scoreflow.stage_key".to_string(), key.hex()),
            ("scoreflow.output".to_string(), def.name.to_string()),
            ("scoreflow.params".to_string(), params_json.clone()),
            ("scoreflow.seed".to_string(), ki.seed.to_string()),
            ("scoreflow.impl_version".to_string(), ki.version.to_string()),
            ("scoreflow.inputs".to_string(), inputs_json.clone()),
            ("scoreflow.stage".to_string(), job.stage.clone()),
            ("scoreflow.pipeline".to_string(), job.pipeline.clone()),
            ("scoreflow.spec_file".to_string(), job.spec_file.clone()),
            ("scoreflow.version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        ];
        let entry: OutputEntry = cache.store(artifact, &meta).map_err(|e| fail(e.to_string()))?;
        let hash = entry.content_hash().expect("just computed");
        hashes.insert(def.name.to_string(), (hash, def.format()));
        let artifact = Arc::new(artifact.clone());
        memo.keep(hash, artifact.clone());
        produced.insert(def.name.to_string(), artifact);
        entries.insert(def.name.to_string(), entry);
    }
    let finished_ms = now_ms();
    let record = Record {
        format: RECORD_FORMAT,
        key: key.hex(),
        hash_inputs: ki.to_json(),
        outputs: entries,
        stage_name: job.stage.clone(),
        started_ms,
        finished_ms,
        scoreflow_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    cache.write_record(&record).map_err(|e| fail(e.to_string()))?;
    // The result is recorded: the state that led to it is of no more use.
    cache.remove_checkpoint(&key);
    let summary = imp.summary(&produced);
    Ok(Done {
        outputs: hashes,
        fresh: false,
        started_ms,
        finished_ms,
        summary,
        resumes: checkpoint.resumes(),
        warnings: checkpoint.warnings(),
        requeues: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::params::Value;

    /// A job written out and read back names the same key: every parameter
    /// type keeps its type (a float `1.0` stays a float), every input hash.
    #[test]
    fn a_job_round_trips_through_json_with_its_key() {
        let mut ki = crate::engine::hash::tests::sample();
        ki.params.insert("lr".into(), Value::Float(1.0));
        ki.params.insert("ema".into(), Value::Bool(true));
        ki.params.insert("sampler".into(), Value::Str("pc".into()));
        ki.params.insert("metrics".into(), Value::List(vec![Value::Str("mmd".into())]));
        ki.params
            .insert("side_bias".into(), Value::Map([("scalene".to_string(), Value::Float(0.9))].into_iter().collect()));
        ki.inputs.insert("data".into(), crate::engine::hash::Hash([7; 32]));
        let job = Job {
            key_inputs: ki,
            stage: "s".into(),
            pipeline: "p".into(),
            spec_file: "pipelines/p.yaml".into(),
            forced: false,
            time_limit_s: Some(90),
            checkpoint_every: Every::Steps(50),
            resume: false,
        };
        let text = job.to_json().to_string();
        let back = Job::from_json(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back, job);
        assert_eq!(back.key(), job.key());
    }

    /// Every outcome a worker process reports reads back as itself.
    #[test]
    fn outcomes_round_trip_through_json() {
        let h = crate::engine::hash::Hash([3; 32]);
        let done = Done {
            outputs: [("model".to_string(), (h, Format::Blob)), ("t".to_string(), (h, Format::Table))].into(),
            fresh: false,
            started_ms: 5,
            finished_ms: 9,
            summary: Some("valid 90%".into()),
            resumes: vec![Resume { step: 20, at_ms: 3 }, Resume { step: 40, at_ms: 4 }],
            warnings: vec!["w".into()],
            requeues: Vec::new(),
        };
        let back = outcome_from_json(&outcome_to_json(&Ok(done))).unwrap().unwrap();
        assert_eq!(back.outputs.len(), 2);
        assert_eq!(back.outputs["model"], (h, Format::Blob));
        assert_eq!((back.started_ms, back.finished_ms, back.summary.as_deref()), (5, 9, Some("valid 90%")));
        assert_eq!(back.resumes.iter().map(|r| (r.step, r.at_ms)).collect::<Vec<_>>(), [(20, 3), (40, 4)]);
        assert_eq!(back.warnings, ["w"]);
        let stopped = WorkError::Interrupted { step: 7, total: 9, signal: 10, started_ms: 1, finished_ms: 2 };
        assert!(matches!(
            outcome_from_json(&outcome_to_json(&Err(stopped))),
            Some(Err(WorkError::Interrupted { step: 7, total: 9, signal: 10, .. }))
        ));
        let failed = WorkError::Failed { error: "boom".into(), started_ms: 1, finished_ms: 2 };
        assert!(
            matches!(outcome_from_json(&outcome_to_json(&Err(failed))), Some(Err(WorkError::Failed { error, .. })) if error == "boom")
        );
        let corrupt = WorkError::InputCorrupt { input: "data".into() };
        assert!(
            matches!(outcome_from_json(&outcome_to_json(&Err(corrupt))), Some(Err(WorkError::InputCorrupt { input })) if input == "data")
        );
        assert!(outcome_from_json(&serde_json::json!({"ok": true})).is_none());
    }
}
