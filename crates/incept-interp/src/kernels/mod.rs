//! Compute kernels over one image's contiguous `[C, H, W]` slab (or a batch
//! of rows for linear layers), generic over [`crate::float::Float`].

pub(crate) mod balance;
pub mod conv;
pub mod direct;
pub mod eltwise;
pub mod gemm;
pub mod linear;
pub mod narrow;
pub mod pool;
pub mod sgemm;
pub mod winograd;

/// The per-core L2 of the machines the kernels' choices were measured on
/// (AMD EPYC, 1 MiB): what a layer's working set must fit in to be read
/// again cheaply.
pub(crate) const L2_BYTES: usize = 1 << 20;

/// Their per-core L1 data cache as set (48 KiB): what a tile's weights must
/// fit in to be read again cheaply (`direct::PREFETCH_K`). The Zen 4 hosts
/// of 2026-12-07 have 32 KiB; a 32 KiB threshold there (weight prefetch
/// also on Conv2d_2a's and 2b's 36 KiB panels) measured the same, 2a
/// 3.87-3.92 ms against 3.88-4.08 in alternating runs.
pub(crate) const L1_BYTES: usize = 48 << 10;
