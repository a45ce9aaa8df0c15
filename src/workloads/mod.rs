//! The workloads: one folder each, holding its stage implementations, the
//! networks it trains and the numerics only it uses. Shared numerics live in
//! [`crate::numerics`]; the contract is [`crate::engine::stage`]. A new
//! workload is a folder here and its lines in [`all`] (and in
//! [`model_formats`] if it writes a model format of its own).

pub mod color;
#[cfg(feature = "test-stages")]
pub mod debug;
pub mod idem;
pub mod triangles;
pub mod two_moons;

use crate::engine::stage::{Backend, Stage, StageError};
use crate::numerics::nn::ModelError;

/// The plain burn device of the backend a run chose (`--device`).
pub fn backend_device(b: Backend) -> burn::tensor::Device {
    match b {
        Backend::Flex => crate::numerics::nn::flex_device(),
        Backend::NdArray => crate::numerics::nn::ndarray_device(),
    }
}

/// The autodiff device of the backend a run chose.
pub fn train_device(b: Backend) -> burn::tensor::Device {
    backend_device(b).autodiff()
}

/// A model blob that does not decode fails the stage that reads it.
impl From<ModelError> for StageError {
    fn from(e: ModelError) -> Self {
        StageError::Failed(e.to_string())
    }
}

/// Every model format the workloads' stages write, for
/// [`crate::model_formats`].
pub fn model_formats() -> Vec<&'static crate::numerics::nn::format::ModelFormat> {
    vec![&triangles::SCORE_FORMAT, &two_moons::EPS_FORMAT, &idem::DEM_FORMAT, &idem::EGNN_FORMAT, &color::COLOR_FORMAT]
}

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
        &triangles::am::SmemeAm,
        &triangles::report::Smeme,
        &triangles::am_report::SmemeAm,
        &two_moons::report::TwoMoons,
        &idem::report::IdemReport,
        &color::report::ColorReport,
        &color::compare::ColorCompare,
        #[cfg(feature = "test-stages")]
        &debug::Debug,
    ]
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    /// A small blob of every registered format, from the workloads' own
    /// constructors.
    fn blobs() -> Vec<Vec<u8>> {
        use crate::workloads::triangles::net::{ModelMeta, ScoreNetConfig, ScoreNetWeights};
        use crate::workloads::two_moons::net::{EpsLayers, EpsModelWeights, EpsNetConfig, ScheduleMeta};
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let meta = ModelMeta { lambda: 0.3, sigma: 0.5, t_max: 1.0, scale: 2.0, shift: -1.0 };
        let score = ScoreNetWeights::init(ScoreNetConfig { hidden: 8, ..ScoreNetConfig::seed_default() }, meta, &mut r);
        let cfg = EpsNetConfig { hidden: 8, ..EpsNetConfig::origin(2) };
        let raw = EpsLayers::init(&cfg, &mut r);
        let eps = EpsModelWeights {
            config: cfg,
            schedule: ScheduleMeta { beta_start: 1e-4, beta_end: 0.02, train_timesteps: 1000 },
            columns: vec!["x".into(), "y".into()],
            raw: raw.clone(),
            ema: Some(raw),
        };
        let dem_cfg = super::idem::net::DemMlpConfig { dim: 2, hidden: 8, blocks: 1, emb_size: 4 };
        let dem = super::idem::net::DemModel {
            config: dem_cfg,
            sigma_min: 1e-5,
            sigma_max: 3.0,
            normalization: 50.0,
            energy: "gmm40".into(),
            layers: dem_cfg.init(&mut r),
        };
        let egnn_cfg = super::idem::egnn::EgnnConfig { n: 4, d: 2, hidden: 8, layers: 2 };
        let egnn = super::idem::egnn::EgnnModel {
            config: egnn_cfg,
            sigma_min: 0.01,
            sigma_max: 2.0,
            energy: "dw4".into(),
            layers: egnn_cfg.init(&mut r),
        };
        let color = super::color::train::model_bytes(&vec![0.25; super::color::model::N_PARAMS]);
        vec![score.to_bytes(), eps.to_bytes(), dem.to_bytes(), egnn.to_bytes(), color]
    }

    /// Every registered model format exports as safetensors (a weight and a
    /// bias per layer, PyTorch's `[out, in]`), `inspect` names it, and every
    /// framing a built-in stage declares has a format.
    #[test]
    fn every_model_format_exports_and_is_named() {
        let formats = crate::model_formats();
        let blobs = blobs();
        assert_eq!(blobs.len(), formats.len());
        for (format, blob) in formats.iter().zip(&blobs) {
            assert!(blob.starts_with(format.magic), "{format:?}");
            assert_eq!(crate::export::blob_kind(blob), format.describe);
            let named = (format.layers)(blob).unwrap();
            let layers: usize = named
                .groups
                .iter()
                .map(|(n, l)| {
                    assert_eq!(n.len(), l.len(), "{format:?}: a name per layer");
                    l.len()
                })
                .sum();
            let file = crate::export::to_safetensors(blob).unwrap();
            let st = safetensors::SafeTensors::deserialize(&file).unwrap();
            assert_eq!(st.names().len(), 2 * layers, "{format:?}");
            for (names, group) in &named.groups {
                for (name, (_, _, input, output)) in names.iter().zip(group) {
                    assert_eq!(
                        st.tensor(&format!("{name}.weight")).unwrap().shape(),
                        &[*output, *input],
                        "{format:?} {name}"
                    );
                }
            }
        }
        let magics: std::collections::BTreeSet<&[u8; 8]> = formats.iter().map(|f| f.magic).collect();
        assert_eq!(magics.len(), formats.len(), "one magic a format");
        for imp in super::all() {
            for media in imp.inputs().iter().map(|i| i.media).chain(imp.outputs().iter().map(|o| o.media)) {
                if let crate::engine::stage::Media::Model(framing) = media {
                    assert!(
                        framing == "pt" || formats.iter().any(|f| f.framing == framing),
                        "{} {}: no format for model/{framing}",
                        imp.kind(),
                        imp.method()
                    );
                }
            }
        }
    }

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
