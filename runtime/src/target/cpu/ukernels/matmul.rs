//! Matrix product with transpose flags and an optional row-broadcast bias, for dense layers
//! and their gradients.
//!
//! Invariant: deterministic. Large products are split into fixed blocks of rows of the result
//! (the block size is a constant), each computed whole by one thread; no reduction is split.

use rayon::prelude::*;

use super::{gemm_f32, GemmOperand};

/// Rows of the result per parallel block.
const ROW_BLOCK: usize = 64;

/// Products with fewer multiply-adds than this run on the calling thread.
const PARALLEL_MIN_WORK: usize = 1 << 21;

/// The geometry of one matrix product `c (m x n) = op(a) (m x k) · op(b) (k x n)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulShape {
    /// Rows of the result.
    pub m: usize,
    /// Columns of the result.
    pub n: usize,
    /// The contracted dimension.
    pub k: usize,
    /// `a` is stored as `k x m` (and used transposed).
    pub transpose_a: bool,
    /// `b` is stored as `n x k` (and used transposed).
    pub transpose_b: bool,
}

impl MatmulShape {
    /// Floating-point operations: `2·m·n·k`.
    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k) as f64
    }
}

/// `c = op(a)·op(b) + bias`, `bias` empty or `[n]`; `c` is overwritten.
pub fn matmul(shape: &MatmulShape, a: &[f32], b: &[f32], bias: &[f32], c: &mut [f32]) {
    let MatmulShape { m, n, k, .. } = *shape;
    if m == 0 || n == 0 {
        return;
    }
    if m * n * k < PARALLEL_MIN_WORK || m <= ROW_BLOCK {
        matmul_rows(shape, a, b, bias, 0, c);
        return;
    }
    c.par_chunks_mut(ROW_BLOCK * n).enumerate().for_each(|(block, c_block)| {
        matmul_rows(shape, a, b, bias, block * ROW_BLOCK, c_block);
    });
}

/// Rows `first..first + c.len() / n` of the product.
fn matmul_rows(shape: &MatmulShape, a: &[f32], b: &[f32], bias: &[f32], first: usize, c: &mut [f32]) {
    let MatmulShape { m, n, k, transpose_a, transpose_b } = *shape;
    let rows = c.len() / n;
    let has_bias = !bias.is_empty();
    if has_bias {
        c.chunks_mut(n).for_each(|row| row.copy_from_slice(bias));
    }
    let lhs = if transpose_a {
        GemmOperand::transposed(&a[first..], m)
    } else {
        GemmOperand::row_major(&a[first * k..], k)
    };
    let rhs = if transpose_b { GemmOperand::transposed(b, k) } else { GemmOperand::row_major(b, n) };
    gemm_f32(rows, n, k, c, n, has_bias, lhs, rhs);
}
