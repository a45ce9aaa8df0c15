//! The workloads: one folder each, holding its stage implementations and the
//! numerics only it uses. Shared numerics live in `model`, `sde` and `metrics`;
//! the contract is [`crate::engine::stage`]. A new workload is a folder here
//! and its lines in [`all`].

pub mod color;
#[cfg(feature = "test-stages")]
pub mod debug;
pub mod idem;
pub mod triangles;
pub mod two_moons;

use crate::engine::stage::Stage;

/// Every stage implementation in this crate, for [`crate::registry`].
pub fn all() -> Vec<&'static dyn Stage> {
    vec![
        &triangles::generate::Triangles,
        &two_moons::generate::TwoMoons,
        &idem::generate::Boltzmann,
        &color::timeline::DopesheetTimeline,
        &color::stages::ColorCube,
        &triangles::label::TriangleTypes,
        &color::stages::ColorSoft,
        &triangles::train::DsmOu,
        &two_moons::train::DdpmEps,
        &idem::train::Idem,
        &color::train::ColorAe,
        &triangles::sample::Pc,
        &two_moons::sample::EulerDiscrete,
        &two_moons::sample::Ancestral,
        &idem::sample::McScore,
        &idem::sample::VeSde,
        &triangles::validate::TriangleChecks,
        &two_moons::validate::Distribution,
        &idem::validate::BoltzmannChecks,
        &color::validate::ColorLatent,
        &idem::study::ScoreEstimatorStudy,
        &idem::network_score::NetworkScore,
        &triangles::tune::Smeme,
        &triangles::report::Smeme,
        &two_moons::report::TwoMoons,
        &idem::report::IdemReport,
        &color::report::ColorReport,
        #[cfg(feature = "test-stages")]
        &debug::Debug,
    ]
}

#[cfg(test)]
mod tests {
    /// Every registered implementation declares its parameters through a
    /// struct, and that struct reads a map in which every parameter is given:
    /// each field's Rust type matches its declared type. Driven by the
    /// registry, so a new stage is checked without being listed here.
    #[test]
    fn every_stage_reads_every_declared_parameter_through_its_struct() {
        for imp in super::all() {
            let read = imp.reads_its_params();
            let name = format!("{} {}", imp.kind(), imp.method());
            assert_eq!(
                read,
                Some(imp.params().len()),
                "{name}: declare its params with `describe!(…, params STRUCT, …)`"
            );
        }
    }
}
