//! scoreflow: declarative, content-hashed, cached pipelines for diffusion-model
//! experiments.
//!
//! A pipeline is a YAML file ([`engine::spec`]) declaring a DAG ([`engine::dag`]) of
//! stages of seven kinds (generate, label, train, sample, validate, tune, report). Each
//! stage is a pure function of its parameters, its seed and the content of its inputs
//! ([`engine::stage`]; the implementations are in [`workloads`], found through
//! [`registry`]). The [`engine::executor`] walks the DAG, computes each stage's key
//! ([`engine::hash`]) once its inputs are known, reuses results found in the
//! [`engine::cache`] and runs the rest, in parallel where the DAG allows, explaining
//! every rerun with a named [`engine::executor::Reason`]. Outputs are Parquet tables
//! ([`engine::frame`]) addressed by the hash of their logical content.
//!
//! Dependencies point one way: the engine knows no workload and no numerics;
//! the [`numerics`] (the network kit, SDEs, metrics, energies, MCMC, keyframed
//! schedules) know no engine and no workload; [`workloads`] build on both;
//! reports and the CLI on everything.

#[macro_use]
pub mod engine;

pub mod cli;
pub use cli::error;
pub mod compare;
pub mod describe;
pub mod export;
pub mod inspect;
pub mod numerics;
pub mod publish;
pub mod report;
pub mod workloads;

/// The checkout's file at `rel`, for the tests and benchmarks of this package
/// (the library's unit tests, `tests/`, `benches/`): one rule for all three.
/// `cargo test` and `cargo bench` set `CARGO_MANIFEST_DIR` when they run a
/// target; the compile-time value is only the fallback, because a binary cargo
/// reuses from another checkout sharing the target directory (CI's clean
/// clones build into the same one) would otherwise read that checkout's files.
#[doc(hidden)]
pub fn checkout(rel: &str) -> std::path::PathBuf {
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")), std::path::PathBuf::from);
    root.join(rel)
}

static REGISTRY: std::sync::OnceLock<engine::stage::Registry> = std::sync::OnceLock::new();

/// Every stage implementation this process has, for [`engine::spec::load`]:
/// the built-in workloads' and those a user crate added ([`add_stages`]).
pub fn registry() -> &'static engine::stage::Registry {
    REGISTRY.get_or_init(|| engine::stage::Registry::new(workloads::all()))
}

/// Every model format a stage of this crate writes (by its workload's
/// registration): what `inspect` names and `export` converts to safetensors.
pub fn model_formats() -> Vec<&'static numerics::nn::format::ModelFormat> {
    workloads::model_formats()
}

/// Add a user crate's stage implementations to the registry, beside the
/// built-in ones, before anything uses it ([`cli::main_with`] calls this).
/// An implementation whose (kind, method) the registry has already, or that
/// is named `command`, is refused with a sentence naming it.
pub fn add_stages(extra: Vec<&'static dyn engine::stage::Stage>) -> Result<(), String> {
    let mut all = workloads::all();
    for s in extra {
        if s.method() == engine::command::METHOD {
            return Err(format!("a {} stage may not be named `command`: that name runs commands", s.kind()));
        }
        if all.iter().any(|b| b.kind() == s.kind() && b.method() == s.method()) {
            return Err(format!("{} {} is registered twice", s.kind(), s.method()));
        }
        all.push(s);
    }
    REGISTRY
        .set(engine::stage::Registry::new(all))
        .map_err(|_| "the registry is in use already: add stages before anything else".to_string())
}
