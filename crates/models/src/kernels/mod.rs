//! Products on the CPU: the GGML block products of a few rows (AVX2 and AVX-512 kernels,
//! chosen once by CPU features) and the linear layers that pick them or libtorch's GEMM.

pub(crate) mod blocks;
pub(crate) mod linear;
