//! The engine: everything that knows pipelines, not science.
//!
//! [`spec`] parses and validates a YAML file into a [`spec::Spec`] (against a
//! [`stage::Registry`] it is given); [`dag`] orders its stages; [`hash`]
//! encodes key inputs canonically; [`fingerprint`] computes keys and explains
//! misses with named reasons; [`executor`] schedules stages onto [`worker`]s,
//! each computing one key from a serialisable job; [`cache`] stores records and
//! content-addressed objects, [`manifest`] the runs and their views,
//! [`maintenance`] gc and verify; [`progress`] shows a run; [`frame`] moves
//! tables to and from Parquet; [`params`] types parameters; [`stage`] is the contract an
//! implementation fulfils. Nothing here imports a workload: implementations live
//! in `crate::workloads` and reach the engine only through the registry.

pub mod cache;
pub mod checkpoint;
pub mod command;
pub mod dag;
pub mod executor;
pub mod fingerprint;
pub mod frame;
pub mod hash;
pub mod maintenance;
pub mod manifest;
pub mod params;
pub mod progress;
pub mod slurm;
pub mod spec;
pub mod tables;
#[macro_use]
pub mod stage;
pub mod worker;
