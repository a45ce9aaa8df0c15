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
    /// Every implementation's parameter struct reads a map in which every
    /// parameter is given: each field's Rust type matches its declared type.
    #[test]
    fn every_parameter_struct_reads_every_declared_parameter() {
        use super::{triangles as t, two_moons as m};
        macro_rules! reads {
            ($($s:path),* $(,)?) => {$({
                use $s as S;
                let p = S::example();
                assert_eq!(p.len(), S::DEFS.len());
                let _ = S::read(&p);
            })*};
        }
        reads!(
            t::generate::TrianglesParams,
            t::label::LabelParams,
            t::train::DsmParams,
            t::sample::PcParams,
            t::validate::TriangleChecksParams,
            t::tune::TuneParams,
            t::report::SmemeReportParams,
            m::generate::MoonsParams,
            super::idem::generate::BoltzmannParams,
            super::idem::validate::BoltzmannChecksParams,
            super::idem::sample::McScoreParams,
            super::idem::sample::VeSdeParams,
            super::idem::train::IdemParams,
            super::color::stages::ColorCubeParams,
            super::color::stages::ColorSoftParams,
            super::color::train::ColorAeParams,
            super::color::report::ColorReportParams,
            super::idem::study::StudyParams,
            super::idem::network_score::NetworkScoreParams,
            m::train::DdpmParams,
            m::sample::EpsSamplerParams,
            m::validate::DistributionParams,
            m::report::MoonsReportParams,
        );
    }
}
