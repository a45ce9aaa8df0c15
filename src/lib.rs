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
//! Dependencies point one way: the engine knows no workload; workloads, numerics
//! (`model`, `sde`, `metrics`), reports and the CLI build on it.

#[macro_use]
pub mod engine;

pub mod energy;

pub mod cli;
pub mod compare;
pub mod describe;
pub mod error;
pub mod export;
pub mod inspect;
pub mod mcmc;
pub mod metrics;
pub mod model;
pub mod publish;
pub mod report;
pub mod sde;
pub mod temporal;
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

/// Every stage implementation this build has, for [`engine::spec::load`].
pub fn registry() -> &'static engine::stage::Registry {
    static REGISTRY: std::sync::OnceLock<engine::stage::Registry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(|| engine::stage::Registry::new(workloads::all()))
}
