//! Weight matrices of the decoder's linear layers: the tch tensor, and beside it on the CPU
//! the GGML blocks it was dequantised from, which products of a few rows read instead.

use std::sync::Arc;

use tch::{Device, Kind, Tensor};

use crate::kernels::blocks::BlockMatrix;

/// A weight matrix `w` for `x · wᵀ`: the tensor, and, on the CPU, the GGML blocks it was
/// dequantised from when their format has a kernel here.
pub(crate) struct Linear {
    pub(crate) weight: Tensor,
    blocks: Option<Arc<BlockMatrix>>,
}

impl Linear {
    /// A matrix with no blocks (every product through libtorch).
    pub(crate) fn plain(weight: Tensor) -> Self {
        Self { weight, blocks: None }
    }

    /// A matrix with its blocks; they must be the weight's own (same shape).
    pub(crate) fn with_blocks(weight: Tensor, blocks: Option<BlockMatrix>) -> Self {
        let blocks = blocks.filter(|b| weight.size() == [b.rows() as i64, b.cols() as i64]);
        Self { weight, blocks: blocks.map(Arc::new) }
    }

    /// Bytes of the blocks kept beside the weight.
    pub(crate) fn block_bytes(&self) -> usize {
        self.blocks.as_ref().map_or(0, |b| b.bytes())
    }

    /// `x · wᵀ (+ bias)`: through the blocks when there are some, `x` is f32 on the CPU and it
    /// has at most `max_rows` rows (where reading the weights, not arithmetic, is the cost);
    /// otherwise through libtorch.
    pub(crate) fn forward(&self, x: &Tensor, bias: Option<&Tensor>, max_rows: usize) -> Tensor {
        if let Some(blocks) = &self.blocks {
            let cols = blocks.cols() as i64;
            let rows = if x.dim() > 0 && x.size().last() == Some(&cols) { x.numel() / blocks.cols() } else { 0 };
            if rows > 0 && rows <= max_rows && x.device() == Device::Cpu && x.kind() == Kind::Float {
                let x = x.contiguous();
                let mut shape = x.size();
                *shape.last_mut().expect("at least one dimension") = blocks.rows() as i64;
                let y = Tensor::empty(shape.as_slice(), (Kind::Float, Device::Cpu));
                // SAFETY: both tensors are contiguous f32 on the CPU with exactly these lengths,
                // and `y` is fresh (no other view of it exists).
                let (xs, ys) = unsafe {
                    (
                        std::slice::from_raw_parts(x.data_ptr() as *const f32, rows * blocks.cols()),
                        std::slice::from_raw_parts_mut(y.data_ptr() as *mut f32, rows * blocks.rows()),
                    )
                };
                blocks.matmul(xs, rows, ys);
                return match bias {
                    Some(b) => y + b,
                    None => y,
                };
            }
        }
        x.linear(&self.weight, bias)
    }

    /// The matrix on `device` in `kind`; the blocks stay only on the CPU.
    pub(crate) fn to(&self, device: Device, kind: Kind) -> Self {
        self.with_weight(self.weight.to_kind(kind).to_device(device))
    }

    /// This matrix's blocks beside `weight` (this weight converted, or a tensor sharing it);
    /// the blocks stay only where `weight` is on the CPU.
    pub(crate) fn with_weight(&self, weight: Tensor) -> Self {
        let blocks = if weight.device() == Device::Cpu { self.blocks.clone() } else { None };
        Self { weight, blocks }
    }
}
