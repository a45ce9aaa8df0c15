//! The colour autoencoder (seed 003, experiment 1.7 of `z0u/ex-color-transformer`):
//! a tiny autoencoder whose latent space is shaped by per-sample regularizers
//! weighted by soft labels and, over time, by a keyframed dopesheet
//! ([`crate::temporal`]).

pub mod data;
pub mod model;
pub mod report;
pub mod stages;
pub mod timeline;
pub mod train;
pub mod validate;
