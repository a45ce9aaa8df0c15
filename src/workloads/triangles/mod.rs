//! S-MEME on triangles (seed 000): the biased triangle data set, its type
//! labels, the OU score model trained by denoising score matching, the
//! predictor–corrector sampler, the seed's validity checks and exploration
//! metrics, S-MEME tuning, and the report.

pub mod generate;
pub mod geometry;
pub mod label;
pub mod report;
pub mod sample;
pub mod train;
pub mod tune;
pub mod validate;
