//! The library's top-level error and the exit codes it maps to.
//!
//! Exit codes: 0 success; 1 a stage failed (or an internal error);
//! 2 bad input (a spec error, an unknown stage name, a bad path or query).

use crate::engine::cache::CacheError;
use crate::engine::executor::ExecError;
use crate::engine::spec::SpecErrors;
use crate::inspect::InspectError;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;
/// `scoreflow worker`: the stage saved a checkpoint on a stop signal and
/// exited; resubmitting the job resumes it (EX_TEMPFAIL).
pub const EXIT_CHECKPOINTED: u8 = 75;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Spec(#[from] SpecErrors),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Inspect(#[from] InspectError),
    #[error(transparent)]
    Publish(#[from] crate::publish::PublishError),
    /// A command-line argument that names something that is not there.
    #[error("{0}")]
    BadInput(String),
    /// A fault of the cache or the machine, not of the user's input.
    #[error("{0}")]
    Fault(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Spec(_) | Error::BadInput(_) | Error::Inspect(_) => EXIT_BAD_INPUT,
            Error::Exec(ExecError::UnknownStage(_)) => EXIT_BAD_INPUT,
            Error::Cache(CacheError::BadRoot { .. } | CacheError::BadManifest { .. } | CacheError::BadTag(_)) => {
                EXIT_BAD_INPUT
            }
            Error::Exec(_) | Error::Cache(_) | Error::Publish(_) | Error::Fault(_) => EXIT_FAILURE,
        }
    }
}
