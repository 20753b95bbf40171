//! Compute kernels over one image's contiguous `[C, H, W]` slab (or a batch
//! of rows for linear layers), generic over [`crate::float::Float`].

pub(crate) mod balance;
pub mod conv;
pub mod direct;
pub mod eltwise;
pub mod gemm;
pub mod linear;
pub mod pool;
pub mod sgemm;
