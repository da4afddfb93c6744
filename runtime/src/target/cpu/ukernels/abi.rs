//! The C entry points JIT code calls (`_mlir_ciface_coopc_*`): they read MLIR memref
//! descriptors, check shapes, and run the slice kernels of `conv` and `matmul` on the pool.
//!
//! Invariant: no entry point unwinds or aborts on bad input. A shape mismatch, an overlap of
//! an output with an input, or a panic inside a kernel is recorded with `record_failure` and
//! the call returns, leaving the output unspecified; the runtime turns it into an error.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::conv::{self, ConvShape};
use super::matmul::{self, MatmulShape};
use super::{pool, record_failure, UkernelError};

/// A ranked strided memref descriptor, as MLIR's C interface lays it out.
#[repr(C)]
pub struct MemRef<const RANK: usize> {
    allocated: *mut f32,
    aligned: *mut f32,
    offset: i64,
    sizes: [i64; RANK],
    strides: [i64; RANK],
}

/// The symbols to register in the JIT: C name and address of each micro-kernel.
pub fn symbols() -> [(&'static str, *mut ()); 4] {
    [
        (
            "_mlir_ciface_coopc_conv2d_forward",
            conv2d_forward as *mut (),
        ),
        (
            "_mlir_ciface_coopc_conv2d_input_grad",
            conv2d_input_grad as *mut (),
        ),
        (
            "_mlir_ciface_coopc_conv2d_weight_grad",
            conv2d_weight_grad as *mut (),
        ),
        ("_mlir_ciface_coopc_matmul", matmul as *mut ()),
    ]
}

/// A descriptor's sizes as `usize`, or an error naming the operand.
fn sizes<const RANK: usize>(memref: &MemRef<RANK>, operand: &str) -> Result<[usize; RANK], String> {
    let mut sizes = [0; RANK];
    for (size, &raw) in sizes.iter_mut().zip(&memref.sizes) {
        *size = usize::try_from(raw).map_err(|_| format!("{operand} has negative size {raw}"))?;
    }
    // Row-major contiguity: stride[i] = product of sizes after i (any stride of a size-1 or
    // empty dimension is irrelevant).
    let mut expected = 1usize;
    for index in (0..RANK).rev() {
        if sizes[index] > 1 && memref.strides[index] as usize != expected {
            return Err(format!(
                "{operand} is not contiguous row-major: sizes {sizes:?}"
            ));
        }
        expected *= sizes[index];
    }
    Ok(sizes)
}

/// The memory a descriptor (whose sizes were checked by [`sizes`]) describes: `len` elements
/// from its offset. Raw, so overlaps can be checked before any reference is made.
#[derive(Clone, Copy)]
struct Buffer {
    start: *mut f32,
    len: usize,
}

impl Buffer {
    fn of<const RANK: usize>(memref: &MemRef<RANK>, len: usize) -> Self {
        Buffer {
            start: memref.aligned.wrapping_offset(memref.offset as isize),
            len,
        }
    }

    fn overlaps(&self, other: &Buffer) -> bool {
        let (start, end) = (
            self.start as usize,
            self.start.wrapping_add(self.len) as usize,
        );
        let (other_start, other_end) = (
            other.start as usize,
            other.start.wrapping_add(other.len) as usize,
        );
        self.len > 0 && other.len > 0 && start < other_end && other_start < end
    }

    /// # Safety
    ///
    /// The buffer must be live for `'a` and not written through another reference meanwhile.
    unsafe fn read<'a>(self) -> &'a [f32] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the caller guarantees the memory is live and holds `len` elements.
        unsafe { std::slice::from_raw_parts(self.start, self.len) }
    }

    /// # Safety
    ///
    /// The buffer must be live for `'a` and accessed through no other reference meanwhile.
    unsafe fn write<'a>(self) -> &'a mut [f32] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: the caller guarantees the memory is live, holds `len` elements and is
        // borrowed nowhere else.
        unsafe { std::slice::from_raw_parts_mut(self.start, self.len) }
    }
}

/// Fails when an output overlaps another output or an input.
fn check_disjoint(outputs: &[Buffer], inputs: &[Buffer]) -> Result<(), String> {
    for (index, output) in outputs.iter().enumerate() {
        let others = outputs[index + 1..].iter().chain(inputs);
        if others.into_iter().any(|other| output.overlaps(other)) {
            return Err("an output overlaps another operand".into());
        }
    }
    Ok(())
}

/// Runs `body`, turning an error or a panic into a recorded failure.
fn guarded(kernel: &'static str, body: impl FnOnce() -> Result<(), String>) {
    let message = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return,
        Ok(Err(message)) => message,
        Err(panic) => panic
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .map_or_else(|| "panicked".to_owned(), |text| format!("panicked: {text}")),
    };
    record_failure(UkernelError { kernel, message });
}

/// `(stride, padding)`, each `(height, width)`.
type StrideAndPadding = ((usize, usize), (usize, usize));

fn stride_and_padding(values: [i64; 4]) -> Result<StrideAndPadding, String> {
    let [stride_h, stride_w, pad_h, pad_w] = values.map(|value| usize::try_from(value).ok());
    match (stride_h, stride_w, pad_h, pad_w) {
        (Some(sh), Some(sw), Some(ph), Some(pw)) if sh > 0 && sw > 0 => Ok(((sh, sw), (ph, pw))),
        _ => Err(format!("bad stride/padding {values:?}")),
    }
}

/// Builds the shape of a convolution from its input, weight and output sizes, checking that
/// they agree.
fn conv_shape(
    input: [usize; 4],
    weight: [usize; 4],
    output: [usize; 4],
    params: [i64; 4],
) -> Result<ConvShape, String> {
    let (stride, padding) = stride_and_padding(params)?;
    let [batch, in_channels, in_height, in_width] = input;
    let [out_channels, weight_in, kernel_height, kernel_width] = weight;
    let shape = ConvShape {
        batch,
        in_channels,
        in_height,
        in_width,
        out_channels,
        kernel_height,
        kernel_width,
        stride,
        padding,
    };
    let expected = [batch, out_channels, shape.out_height(), shape.out_width()];
    if weight_in != in_channels || output != expected || shape.out_pixels() == 0 {
        return Err(format!(
            "input {input:?}, weight {weight:?}, stride {stride:?}, padding {padding:?} give \
             output {expected:?}, got {output:?}"
        ));
    }
    Ok(shape)
}

fn optional_len(bias: [usize; 1], wanted: usize, operand: &str) -> Result<usize, String> {
    match bias[0] {
        0 => Ok(0),
        len if len == wanted => Ok(len),
        len => Err(format!(
            "{operand} has {len} elements; expected 0 or {wanted}"
        )),
    }
}

/// `_mlir_ciface_coopc_conv2d_forward(x, w, bias, y, stride_h, stride_w, pad_h, pad_w)`.
///
/// # Safety
///
/// Each pointer must point to a valid descriptor of live memory (JIT code guarantees it).
unsafe extern "C" fn conv2d_forward(
    x: &MemRef<4>,
    w: &MemRef<4>,
    bias: &MemRef<1>,
    y: &MemRef<4>,
    stride_h: i64,
    stride_w: i64,
    pad_h: i64,
    pad_w: i64,
) {
    guarded("coopc_conv2d_forward", || {
        let (x_sizes, w_sizes) = (sizes(x, "x")?, sizes(w, "w")?);
        let shape = conv_shape(
            x_sizes,
            w_sizes,
            sizes(y, "y")?,
            [stride_h, stride_w, pad_h, pad_w],
        )?;
        let bias_len = optional_len(sizes(bias, "bias")?, shape.out_channels, "bias")?;
        let x = Buffer::of(x, x_sizes.iter().product());
        let w = Buffer::of(w, w_sizes.iter().product());
        let bias = Buffer::of(bias, bias_len);
        let y = Buffer::of(y, shape.batch * shape.out_channels * shape.out_pixels());
        check_disjoint(&[y], &[x, w, bias])?;
        // SAFETY: sizes match the descriptors of live JIT buffers; the output overlaps nothing.
        let (x, w, bias, y) = unsafe { (x.read(), w.read(), bias.read(), y.write()) };
        pool().install(|| conv::forward(&shape, x, w, bias, y));
        Ok(())
    });
}

/// `_mlir_ciface_coopc_conv2d_input_grad(dy, w, dx, stride_h, stride_w, pad_h, pad_w)`.
///
/// # Safety
///
/// Each pointer must point to a valid descriptor of live memory (JIT code guarantees it).
unsafe extern "C" fn conv2d_input_grad(
    dy: &MemRef<4>,
    w: &MemRef<4>,
    dx: &MemRef<4>,
    stride_h: i64,
    stride_w: i64,
    pad_h: i64,
    pad_w: i64,
) {
    guarded("coopc_conv2d_input_grad", || {
        let (dy_sizes, w_sizes, dx_sizes) = (sizes(dy, "dy")?, sizes(w, "w")?, sizes(dx, "dx")?);
        let shape = conv_shape(
            dx_sizes,
            w_sizes,
            dy_sizes,
            [stride_h, stride_w, pad_h, pad_w],
        )?;
        let dy = Buffer::of(dy, dy_sizes.iter().product());
        let w = Buffer::of(w, w_sizes.iter().product());
        let dx = Buffer::of(dx, dx_sizes.iter().product());
        check_disjoint(&[dx], &[dy, w])?;
        // SAFETY: sizes match the descriptors of live JIT buffers; the output overlaps nothing.
        let (dy, w, dx) = unsafe { (dy.read(), w.read(), dx.write()) };
        pool().install(|| conv::input_grad(&shape, dy, w, dx));
        Ok(())
    });
}

/// `_mlir_ciface_coopc_conv2d_weight_grad(dy, x, dw, db, stride_h, stride_w, pad_h, pad_w)`.
///
/// # Safety
///
/// Each pointer must point to a valid descriptor of live memory (JIT code guarantees it).
unsafe extern "C" fn conv2d_weight_grad(
    dy: &MemRef<4>,
    x: &MemRef<4>,
    dw: &MemRef<4>,
    db: &MemRef<1>,
    stride_h: i64,
    stride_w: i64,
    pad_h: i64,
    pad_w: i64,
) {
    guarded("coopc_conv2d_weight_grad", || {
        let (dy_sizes, x_sizes, dw_sizes) = (sizes(dy, "dy")?, sizes(x, "x")?, sizes(dw, "dw")?);
        let shape = conv_shape(
            x_sizes,
            dw_sizes,
            dy_sizes,
            [stride_h, stride_w, pad_h, pad_w],
        )?;
        let db_len = optional_len(sizes(db, "db")?, shape.out_channels, "db")?;
        let dy = Buffer::of(dy, dy_sizes.iter().product());
        let x = Buffer::of(x, x_sizes.iter().product());
        let dw = Buffer::of(dw, dw_sizes.iter().product());
        let db = Buffer::of(db, db_len);
        check_disjoint(&[dw, db], &[dy, x])?;
        // SAFETY: sizes match the descriptors of live JIT buffers; outputs overlap nothing.
        let (dy, x, dw, db) = unsafe { (dy.read(), x.read(), dw.write(), db.write()) };
        pool().install(|| conv::weight_grad(&shape, dy, x, dw, db));
        Ok(())
    });
}

/// `_mlir_ciface_coopc_matmul(a, b, bias, c, transpose_a, transpose_b)`.
///
/// # Safety
///
/// Each pointer must point to a valid descriptor of live memory (JIT code guarantees it).
unsafe extern "C" fn matmul(
    a: &MemRef<2>,
    b: &MemRef<2>,
    bias: &MemRef<1>,
    c: &MemRef<2>,
    transpose_a: i64,
    transpose_b: i64,
) {
    guarded("coopc_matmul", || {
        let (a_sizes, b_sizes, c_sizes) = (sizes(a, "a")?, sizes(b, "b")?, sizes(c, "c")?);
        let (transpose_a, transpose_b) = (transpose_a != 0, transpose_b != 0);
        let [m, k] = if transpose_a {
            [a_sizes[1], a_sizes[0]]
        } else {
            a_sizes
        };
        let [k_b, n] = if transpose_b {
            [b_sizes[1], b_sizes[0]]
        } else {
            b_sizes
        };
        if k != k_b || c_sizes != [m, n] {
            return Err(format!(
                "a {a_sizes:?} (transposed: {transpose_a}), b {b_sizes:?} (transposed: \
                 {transpose_b}) do not give c {c_sizes:?}"
            ));
        }
        let bias_len = optional_len(sizes(bias, "bias")?, n, "bias")?;
        let (a, b) = (Buffer::of(a, m * k), Buffer::of(b, k * n));
        let (bias, c) = (Buffer::of(bias, bias_len), Buffer::of(c, m * n));
        check_disjoint(&[c], &[a, b, bias])?;
        // SAFETY: sizes match the descriptors of live JIT buffers; the output overlaps nothing.
        let (a, b, bias, c) = unsafe { (a.read(), b.read(), bias.read(), c.write()) };
        let shape = MatmulShape {
            m,
            n,
            k,
            transpose_a,
            transpose_b,
        };
        pool().install(|| matmul::matmul(&shape, a, b, bias, c));
        Ok(())
    });
}
