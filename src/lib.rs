//! lim ("Less is More"): selective reduction of CT data and self-supervised pre-training,
//! computed on any GPU wgpu reaches (Vulkan, Metal, DX12, GL) with hand-written WGSL kernels.
//!
//! This is the foundation: the wgpu runtime ([`gpu`]), GPU tensors ([`Tensor`]) and the first
//! kernel families ([`ops`]).
//!
//! ```
//! use lim::{Gpu, GpuOptions, Tensor};
//! # fn main() -> lim::Result<()> {
//! let gpu = Gpu::new(&GpuOptions::from_env()?)?;
//! let a = Tensor::from_slice(&gpu, &[2, 3], &[1., 2., 3., 4., 5., 6.])?;
//! let b = Tensor::from_slice(&gpu, &[3, 1], &[1., 0., -1.])?;
//! assert_eq!(a.matmul(&b)?.to_vec()?, vec![-2., -2.]);
//! # Ok(())
//! # }
//! ```

pub mod autograd;
pub mod bench;
pub mod data;
pub mod dist;
pub mod dtype;
pub mod error;
pub mod eval;
pub mod fuzz;
pub mod gpu;
pub mod hash;
pub mod io;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod plot;
pub mod preprocess;
pub mod select;
mod simd;
pub mod ssl;
pub mod tensor;

pub use dtype::DType;
pub use error::{Error, Result};
pub use gpu::{Gpu, GpuError, GpuOptions};
pub use tensor::Tensor;
