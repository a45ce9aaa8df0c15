//! The science that knows no stage: no parameter table, no engine, no
//! workload. Each module here is plain numerics on slices, burn tensors or
//! seeded generators, so it can be tested, benchmarked and reused alone; a
//! workload's stages read their inputs and parameters, then call in here.
//!
//! * [`nn`]: the networks' shared kit — plain layers and their burn modules,
//!   initialisation, model-blob framing and the format registry's types, the
//!   hand-written training harness and optimisers, fast inference kernels.
//!   The networks themselves live in the workloads that train them.
//! * [`sde`]: forward processes and samplers — the OU process and its
//!   Euler–Maruyama / predictor–corrector samplers, DDPM, the VE process.
//! * [`metrics`]: distances between sample sets (MMD, energy distance, sliced
//!   Wasserstein-1), histogram entropy, the median.
//! * [`energy`]: Boltzmann targets by their energy alone (GMM-40, DW-4,
//!   LJ-13, LJ-55) with their gradients.
//! * [`mcmc`]: Metropolis-adjusted samplers of an energy (reference sets).
//! * [`temporal`]: keyframed hyperparameter schedules (dopesheets, timelines).
//! * [`rng`]: every random stream a stage draws, derived from its seed alone.
//!
//! `tests/architecture.rs` enforces the rule: nothing here names the engine,
//! a workload, a command or the CLI.

pub mod energy;
pub mod mcmc;
pub mod metrics;
pub mod nn;
pub mod rng;
pub mod sde;
pub mod temporal;
