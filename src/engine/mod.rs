//! The engine: everything that knows pipelines, not science.
//!
//! [`spec`] parses and validates a YAML file into a [`spec::Spec`] (against a
//! [`stage::Registry`] it is given), [`dag`] orders its stages, [`hash`] computes
//! their keys, [`cache`] stores records and content-addressed objects,
//! [`executor`] schedules stages and explains every rerun, [`progress`] shows a
//! run, [`frame`] moves tables to and from Parquet, [`params`] types parameters,
//! [`rng`] derives every random stream from a stage seed, and [`stage`] is the
//! contract an implementation fulfils. Nothing here imports
//! a workload: implementations live outside (`crate::stages`, the workloads) and
//! reach the engine only through the registry.

pub mod cache;
pub mod dag;
pub mod executor;
pub mod fingerprint;
pub mod frame;
pub mod hash;
pub mod params;
pub mod progress;
pub mod rng;
pub mod spec;
#[macro_use]
pub mod stage;
pub mod worker;
