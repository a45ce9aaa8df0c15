//! A burn-trained module's optimiser state as bytes, for checkpoints.
//!
//! burn keys an optimiser's state (Adam's moments and step count) by the ids
//! of the parameters it updates, and gives a module fresh random ids when it
//! is built. So a checkpoint keeps, beside the weights, the ids in the order
//! burn visits the parameters and the optimiser's record (burnpack: the state
//! tensors' bytes as they are); on resume the module is rebuilt from the
//! weights, given its old ids back ([`with_param_ids`]) and the optimiser
//! loads its record: the next step is bit for bit the one an uninterrupted
//! run takes.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{ModuleOptimizer, OptimizerRecord};
use burn::tensor::Tensor;

/// The ids of `module`'s float parameters, in the order burn visits them.
pub fn param_ids<M: Module>(module: &M) -> Vec<u64> {
    struct Ids(Vec<u64>);
    impl ModuleVisitor for Ids {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.id.val());
        }
    }
    let mut ids = Ids(Vec::new());
    module.visit(&mut ids);
    ids.0
}

/// `module` with its float parameters given `ids`, in visiting order; `None`
/// when the counts differ (a checkpoint of another architecture).
pub fn with_param_ids<M: Module>(module: M, ids: &[u64]) -> Option<M> {
    struct Give<'a>(&'a [u64], usize);
    impl ModuleMapper for Give<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, tensor, mapper) = param.consume();
            let id = self.0.get(self.1).map_or(id, |v| ParamId::from(*v));
            self.1 += 1;
            Param::from_mapped_value(id, tensor, mapper)
        }
    }
    if param_ids(&module).len() != ids.len() {
        return None;
    }
    Some(module.map(&mut Give(ids, 0)))
}

/// The optimiser's state as bytes (burnpack).
pub fn optimizer_bytes(optim: &ModuleOptimizer) -> Vec<u8> {
    optim.to_record().into_bytes().expect("an optimiser record encodes in memory").to_vec()
}

/// The optimiser state [`optimizer_bytes`] wrote; `None` when the bytes are
/// not such a state (load it with `optim.load_record`).
pub fn optimizer_record(bytes: &[u8]) -> Option<OptimizerRecord> {
    OptimizerRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes.to_vec())).ok()
}
