//! scoreflow: declarative, content-hashed, cached pipelines for diffusion-model
//! experiments.
//!
//! A pipeline is a YAML file ([`spec`]) declaring a DAG ([`dag`]) of stages of seven
//! kinds (generate, label, train, sample, validate, tune, report). Each stage is a pure
//! function of its parameters, its seed and the content of its inputs ([`stages`]).
//! The [`executor`] walks the DAG, computes each stage's key ([`hash`]) once its inputs
//! are known, reuses results found in the [`cache`] and runs the rest, in parallel where
//! the DAG allows, explaining every rerun with a named [`executor::Reason`].
//! Outputs are Parquet tables ([`frame`]) addressed by the hash of their logical content.

pub mod cache;
pub mod cli;
pub mod dag;
pub mod error;
pub mod executor;
pub mod export;
pub mod frame;
pub mod hash;
pub mod inspect;
pub mod metrics;
pub mod model;
pub mod params;
pub mod plot;
pub mod progress;
pub mod publish;
pub mod sde;
pub mod spec;
pub mod stages;
pub mod triangle;
