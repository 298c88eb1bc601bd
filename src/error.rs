//! The library's error type.

use thiserror::Error;

use crate::dtype::DType;
use crate::gpu::GpuError;
use crate::hash::HashError;
use crate::io::IoError;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Gpu(#[from] GpuError),

    #[error(transparent)]
    Io(#[from] IoError),

    #[error(transparent)]
    Hash(#[from] HashError),

    #[error("{op}: shapes {lhs:?} and {rhs:?} do not fit together ({why})")]
    ShapeMismatch {
        op: &'static str,
        lhs: Vec<usize>,
        rhs: Vec<usize>,
        why: String,
    },

    #[error("{op}: {why}")]
    InvalidArgument { op: &'static str, why: String },

    /// A data-parallel collective that could not complete: a peer rank is gone.
    #[error("data-parallel: {0}")]
    Collective(String),

    #[error("{op} works on {expected:?} tensors, got {got:?}")]
    DType {
        op: &'static str,
        expected: DType,
        got: DType,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The message of a caught panic.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}
