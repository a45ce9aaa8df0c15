//! iDEM (seed 001): sampling a Boltzmann density from its energy alone.
//!
//! Akhound-Sadegh et al. 2024, "Iterated Denoising Energy Matching"; origin
//! code `jarridrb/DEM`. The energies are shared numerics ([`crate::energy`]);
//! this folder holds what only iDEM uses: the Monte Carlo score estimators and
//! the stages.

pub mod egnn;
pub mod egnn_backprop;
pub mod estimator;
pub mod generate;
pub mod mlp;
pub mod net;
pub mod network_score;
pub mod particles_train;
pub mod report;
pub mod sample;
pub mod study;
pub mod train;
pub mod validate;
