//! Micro-kernels: the contractions (convolutions and matrix products) that JIT-compiled MLIR
//! kernels call instead of lowering them to loops. They run on the `gemm` crate, on a fixed
//! pool of threads, and are bitwise deterministic: work is split into fixed pieces and every
//! reduction is summed in a fixed order, whatever the number of threads or their timing.
//!
//! # Signatures (what MLIR declares and calls)
//!
//! All element types are `f32`; all memrefs are row-major and contiguous (identity layout, as
//! a `memref.cast` of a static-shaped kernel argument gives). Integer parameters are `i64`.
//! An "optional" memref is `memref<?xf32>` of size 0 when absent, e.g.
//! `%none = memref.alloca() : memref<0xf32>` cast to `memref<?xf32>`. Outputs are overwritten.
//!
//! ```mlir
//! // y = conv(x, w) + bias; x [N,Cin,H,W], w [Cout,Cin,Kh,Kw], bias [Cout] or [0],
//! // y [N,Cout,Ho,Wo] with Ho = (H + 2·pad_h - Kh) / stride_h + 1 (likewise Wo).
//! func.func private @coopc_conv2d_forward(memref<?x?x?x?xf32>, memref<?x?x?x?xf32>,
//!     memref<?xf32>, memref<?x?x?x?xf32>, i64, i64, i64, i64)
//!     attributes {llvm.emit_c_interface}   // (x, w, bias, y, stride_h, stride_w, pad_h, pad_w)
//!
//! // dx = ∂(Σ dy·y)/∂x; dy [N,Cout,Ho,Wo], w [Cout,Cin,Kh,Kw], dx [N,Cin,H,W] (its shape gives
//! // H and W, which the stride leaves ambiguous).
//! func.func private @coopc_conv2d_input_grad(memref<?x?x?x?xf32>, memref<?x?x?x?xf32>,
//!     memref<?x?x?x?xf32>, i64, i64, i64, i64)
//!     attributes {llvm.emit_c_interface}   // (dy, w, dx, stride_h, stride_w, pad_h, pad_w)
//!
//! // dw = Σ over the batch of ∂(Σ dy·y)/∂w, db = Σ dy over batch and pixels (skipped when db
//! // has size 0); dy [N,Cout,Ho,Wo], x [N,Cin,H,W], dw [Cout,Cin,Kh,Kw], db [Cout] or [0].
//! func.func private @coopc_conv2d_weight_grad(memref<?x?x?x?xf32>, memref<?x?x?x?xf32>,
//!     memref<?x?x?x?xf32>, memref<?xf32>, i64, i64, i64, i64)
//!     attributes {llvm.emit_c_interface}   // (dy, x, dw, db, stride_h, stride_w, pad_h, pad_w)
//!
//! // c = op(a)·op(b) + bias (bias broadcast over rows, [N] or [0]); op(a) is a [M,K] (or its
//! // transpose when transpose_a != 0, a then being [K,M]); op(b) is [K,N] (b [N,K] when
//! // transpose_b != 0); c [M,N]. Dense forward: (x, W, b, y, 0, 1); input grad:
//! // (dy, W, none, dx, 0, 0); weight grad: (dy, x, none, dW, 1, 0).
//! func.func private @coopc_matmul(memref<?x?xf32>, memref<?x?xf32>, memref<?xf32>,
//!     memref<?x?xf32>, i64, i64)
//!     attributes {llvm.emit_c_interface}   // (a, b, bias, c, transpose_a, transpose_b)
//! ```
//!
//! The C symbols are `_mlir_ciface_coopc_<name>`, taking one pointer to a memref descriptor
//! per memref and the `i64`s by value; [`symbols`] lists them for registration in the JIT.
//! A call whose shapes do not agree (or whose output overlaps an input) does nothing and
//! records a [`UkernelError`]; the runtime checks [`take_failure`] after every step.

mod abi;
pub mod conv;
pub mod matmul;

use std::cell::Cell;
use std::sync::{Mutex, OnceLock};

pub use abi::symbols;

/// Images per partial sum in the convolution weight gradient; a constant, so the summation
/// order (and every result bit) does not depend on the number of threads.
pub const WEIGHT_GRAD_CHUNK_IMAGES: usize = 8;

/// A micro-kernel call that could not run (shapes disagree, overlapping buffers, a bug).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("micro-kernel `{kernel}`: {message}")]
pub struct UkernelError {
    /// The micro-kernel, e.g. `coopc_conv2d_forward`.
    pub kernel: &'static str,
    /// What was wrong, with the shapes involved.
    pub message: String,
}

static FAILURE: Mutex<Option<UkernelError>> = Mutex::new(None);

/// Records the first failure since the last [`take_failure`].
fn record_failure(error: UkernelError) {
    let mut slot = FAILURE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    slot.get_or_insert(error);
}

/// The first micro-kernel failure recorded since the previous call, if any.
pub fn take_failure() -> Option<UkernelError> {
    FAILURE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take()
}

/// The thread pool the micro-kernels (and batch-split kernel steps) run on: one thread per
/// available core.
pub fn pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(1, |count| count.get());
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|index| format!("coopc-ukernel-{index}"))
            .build()
            .unwrap_or_else(|_| {
                // Spawning threads failed (resource limits): run everything on the caller.
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .use_current_thread()
                    .build()
                    .expect("invariant: a pool of the current thread needs no spawn")
            })
    })
}

/// A matrix operand of [`gemm_f32`]: data and strides (in elements) between rows and columns.
#[derive(Clone, Copy, Debug)]
pub struct GemmOperand<'a> {
    data: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> GemmOperand<'a> {
    /// A row-major matrix with `columns` columns.
    pub fn row_major(data: &'a [f32], columns: usize) -> Self {
        GemmOperand {
            data,
            row_stride: columns,
            col_stride: 1,
        }
    }

    /// The transpose of a stored row-major matrix with `stored_columns` columns.
    pub fn transposed(data: &'a [f32], stored_columns: usize) -> Self {
        GemmOperand {
            data,
            row_stride: 1,
            col_stride: stored_columns,
        }
    }

    /// A view whose element `(i, j)` is `data[i·row_stride + j·col_stride]`.
    pub fn strided(data: &'a [f32], row_stride: usize, col_stride: usize) -> Self {
        GemmOperand {
            data,
            row_stride,
            col_stride,
        }
    }

    /// Index one past the last element of a `rows x columns` view (0 when empty).
    fn extent(&self, rows: usize, columns: usize) -> usize {
        if rows == 0 || columns == 0 {
            0
        } else {
            (rows - 1) * self.row_stride + (columns - 1) * self.col_stride + 1
        }
    }
}

/// `dst (m x n, row stride dst_row_stride) = [dst +] lhs (m x k) · rhs (k x n)`, on the
/// calling thread.
///
/// Calls from rayon tasks must stay single-threaded; [`gemm_f32_parallel`] is the variant
/// that spreads one large product over the current pool.
///
/// # Panics
///
/// When an operand slice is too short for its view (a caller bug; the ABI layer catches it).
#[expect(
    clippy::too_many_arguments,
    reason = "a GEMM has this many independent parameters"
)]
pub fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_row_stride: usize,
    accumulate: bool,
    lhs: GemmOperand<'_>,
    rhs: GemmOperand<'_>,
) {
    let shape = GemmShape {
        m,
        n,
        k,
        dst_row_stride,
        accumulate,
    };
    gemm_with(shape, dst, lhs, rhs, gemm::Parallelism::None);
}

/// [`gemm_f32`] spread over the threads of the current rayon pool.
///
/// The `gemm` crate splits the result into tiles across threads and never splits the
/// contracted dimension, and its blocking depends on the shape only, so every result bit is
/// the same as on one thread (a unit test of `matmul` checks this).
///
/// # Panics
///
/// As [`gemm_f32`].
#[expect(
    clippy::too_many_arguments,
    reason = "a GEMM has this many independent parameters"
)]
pub fn gemm_f32_parallel(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_row_stride: usize,
    accumulate: bool,
    lhs: GemmOperand<'_>,
    rhs: GemmOperand<'_>,
) {
    let shape = GemmShape {
        m,
        n,
        k,
        dst_row_stride,
        accumulate,
    };
    let threads = rayon::current_num_threads();
    gemm_with(shape, dst, lhs, rhs, gemm::Parallelism::Rayon(threads));
}

/// Sizes and destination layout of one GEMM call.
#[derive(Clone, Copy)]
struct GemmShape {
    m: usize,
    n: usize,
    k: usize,
    dst_row_stride: usize,
    accumulate: bool,
}

fn gemm_with(
    shape: GemmShape,
    dst: &mut [f32],
    lhs: GemmOperand<'_>,
    rhs: GemmOperand<'_>,
    parallelism: gemm::Parallelism,
) {
    let GemmShape {
        m,
        n,
        k,
        dst_row_stride,
        accumulate,
    } = shape;
    let dst_view = GemmOperand::row_major(dst, dst_row_stride);
    assert!(
        dst_view.extent(m, n) <= dst.len(),
        "gemm: destination too short"
    );
    assert!(
        lhs.extent(m, k) <= lhs.data.len(),
        "gemm: left operand too short"
    );
    assert!(
        rhs.extent(k, n) <= rhs.data.len(),
        "gemm: right operand too short"
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts above keep every access of the m x n, m x k and k x n views inside
    // the slices; dst is borrowed mutably, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

thread_local! {
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Runs `body` with a per-thread scratch buffer of `len` elements (contents unspecified),
/// reused across calls so that im2col buffers are allocated once per thread.
fn with_scratch<R>(len: usize, body: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buffer = SCRATCH.with(Cell::take);
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    let result = body(&mut buffer[..len]);
    SCRATCH.with(|slot| slot.set(buffer));
    result
}
