//! The two-moons DDPM baseline (seed 002): `make_moons` data, the ε-prediction
//! DDPM and its samplers, distribution distances with their floor, the report.

pub mod generate;
pub mod report;
pub mod sample;
pub mod train;
pub mod validate;
