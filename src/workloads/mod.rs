//! The workloads: one folder each, holding its stage implementations and the
//! numerics only it uses. Shared numerics live in `model`, `sde` and `metrics`;
//! the contract is [`crate::engine::stage`]. A new workload is a folder here
//! and its lines in [`all`].

#[cfg(feature = "test-stages")]
pub mod debug;
pub mod triangles;
pub mod two_moons;

use crate::engine::stage::Stage;

/// Every stage implementation in this crate, for [`crate::registry`].
pub fn all() -> Vec<&'static dyn Stage> {
    vec![
        &triangles::generate::Triangles,
        &two_moons::generate::TwoMoons,
        &triangles::label::TriangleTypes,
        &triangles::train::DsmOu,
        &two_moons::train::DdpmEps,
        &triangles::sample::Pc,
        &two_moons::sample::EulerDiscrete,
        &two_moons::sample::Ancestral,
        &triangles::validate::TriangleChecks,
        &two_moons::validate::Distribution,
        &triangles::tune::Smeme,
        &triangles::report::Smeme,
        &two_moons::report::TwoMoons,
        #[cfg(feature = "test-stages")]
        &debug::Debug,
    ]
}
