//! Pooling without padding as `linalg.generic` ops over `(n, c, oh, kh, kw, ow)`, with the
//! output column innermost so that the loops vectorise (the general, clipped forms in
//! [`super::window`] are scalar).
//!
//! - forward, no padding: every window lies inside the input; `y = fold(x[n, c, oh·s + kh,
//!   ow·s + kw])` over `(kh, kw)` in row-major order (first maximum, NaN wins, as PyTorch);
//! - gradients of non-overlapping windows (stride = kernel, no padding): every input element
//!   belongs to at most one window, so the gradient is a gather, not a scatter: the max
//!   gradient first records the row-major index of each window's first maximum, then writes
//!   `dy` where the index matches and 0 elsewhere; the average gradient writes `dy / (Kh·Kw)`.
//!   Rows and columns no window covers are zeroed first.
//!
//! The window's extent enters the loops through an unused `[Kh, Kw]` operand, as for linalg's
//! named pooling ops (its loads are removed before code generation).

use crate::ir::DType;

use super::generic::{
    alloc_batched, batch_size, fill, identity_map, Buffer, Generic, GenericOperand,
};
use super::scalar::binary;
use super::window::Window;
use super::writer::FunctionWriter;
use super::MlirError;

/// True when no window overlaps another and none reaches padding.
pub(crate) fn is_tiled(window: &Window) -> bool {
    window.padding == [0, 0] && window.stride == window.kernel
}

const ITERATORS: [&str; 6] = [
    "parallel",
    "parallel",
    "parallel",
    "reduction",
    "reduction",
    "parallel",
];

/// The map reading the input element of window position `(kh, kw)`.
fn input_map(window: &Window) -> String {
    format!(
        "d0, d1, d2 * {} + d3, d5 * {} + d4",
        window.stride[0], window.stride[1]
    )
}

/// The map of a per-output value.
const OUTPUT_MAP: &str = "d0, d1, d2, d5";

/// The unused operand carrying the window's extent.
fn window_operand(writer: &mut FunctionWriter, window: &Window) -> GenericOperand {
    let ty = format!("memref<{}x{}xf32>", window.kernel[0], window.kernel[1]);
    let name = writer.assign("window", &format!("memref.alloca() : {ty}"));
    let dims = vec![
        super::generic::Dim::Static(window.kernel[0]),
        super::generic::Dim::Static(window.kernel[1]),
    ];
    GenericOperand {
        buffer: Buffer {
            name,
            dims,
            dtype: DType::F32,
            layout: None,
        },
        map: "d3, d4".into(),
    }
}

/// `take = v > best or v is NaN`: PyTorch's update rule for a running maximum.
fn takes_over(writer: &mut FunctionWriter, value: &str, best: &str) -> String {
    let greater = writer.assign("p", &format!("arith.cmpf ogt, {value}, {best} : f32"));
    let nan = writer.assign("p", &format!("arith.cmpf uno, {value}, {value} : f32"));
    writer.assign("p", &format!("arith.ori {greater}, {nan} : i1"))
}

/// The row-major position `kh·Kw + kw` of the current window element, as an `i32`.
fn window_position(writer: &mut FunctionWriter, window: &Window) -> String {
    let row = writer.assign("i", "linalg.index 3 : index");
    let column = writer.assign("i", "linalg.index 4 : index");
    let width = writer.index(window.kernel[1]);
    let scaled = writer.assign("i", &format!("arith.muli {row}, {width} : index"));
    let position = writer.assign("i", &format!("arith.addi {scaled}, {column} : index"));
    writer.assign("k", &format!("arith.index_cast {position} : index to i32"))
}

// max: y = the first maximum of the window; average: y = Σ window / (Kh·Kw)
pub(crate) fn pool_unpadded(
    writer: &mut FunctionWriter,
    x: &Buffer,
    out: &Buffer,
    window: &Window,
    is_max: bool,
) -> Result<(), MlirError> {
    let init = if is_max {
        writer.f32(f32::NEG_INFINITY)
    } else {
        writer.f32(0.0)
    };
    fill(writer, out, &init);
    let extent = window_operand(writer, window);
    let fold = Generic {
        iterators: ITERATORS.to_vec(),
        ins: vec![
            GenericOperand {
                buffer: x.clone(),
                map: input_map(window),
            },
            extent,
        ],
        outs: vec![GenericOperand {
            buffer: out.clone(),
            map: OUTPUT_MAP.into(),
        }],
    };
    fold.write(writer, |writer, block| {
        let (value, best) = (&block[0], &block[2]);
        Ok(vec![if is_max {
            let take = takes_over(writer, value, best);
            writer.assign("v", &format!("arith.select {take}, {value}, {best} : f32"))
        } else {
            binary(writer, "addf", best, value)
        }])
    })?;
    if is_max {
        return Ok(());
    }
    let area = writer.f32((window.kernel[0] * window.kernel[1]) as f32);
    let divide = Generic {
        iterators: vec!["parallel"; 4],
        ins: Vec::new(),
        outs: vec![GenericOperand {
            buffer: out.clone(),
            map: identity_map(4),
        }],
    };
    divide.write(writer, |writer, block| {
        Ok(vec![binary(writer, "divf", &block[0], &area)])
    })
}

/// Zeroes `dx` when some rows or columns lie outside every window.
fn zero_uncovered(writer: &mut FunctionWriter, dy: &Buffer, dx: &Buffer, window: &Window) {
    let covered_rows = dy.static_dim(2) * window.stride[0];
    let covered_columns = dy.static_dim(3) * window.stride[1];
    if covered_rows != dx.static_dim(2) || covered_columns != dx.static_dim(3) {
        let zero = writer.f32(0.0);
        fill(writer, dx, &zero);
    }
}

/// The generic writing each window element of `dx` from per-output values.
fn gather_into_windows(dx: &Buffer, window: &Window, ins: Vec<GenericOperand>) -> Generic {
    Generic {
        iterators: vec!["parallel"; 6],
        ins,
        outs: vec![GenericOperand {
            buffer: dx.clone(),
            map: input_map(window),
        }],
    }
}

// index = row-major position of each window's first maximum; dx = position = index ? dy : 0
pub(crate) fn max_pool_grad_tiled(
    writer: &mut FunctionWriter,
    dy: &Buffer,
    x: &Buffer,
    dx: &Buffer,
    window: &Window,
) -> Result<(), MlirError> {
    let batch = batch_size(writer, dy);
    let rest = [dy.static_dim(1), dy.static_dim(2), dy.static_dim(3)];
    let best = alloc_batched(writer, &batch, &rest, DType::F32);
    let index = alloc_batched(writer, &batch, &rest, DType::I32);
    let minus_infinity = writer.f32(f32::NEG_INFINITY);
    let first = writer.i32(0);
    fill(writer, &best, &minus_infinity);
    fill(writer, &index, &first);
    let extent = window_operand(writer, window);
    let search = Generic {
        iterators: ITERATORS.to_vec(),
        ins: vec![
            GenericOperand {
                buffer: x.clone(),
                map: input_map(window),
            },
            extent.clone(),
        ],
        outs: vec![
            GenericOperand {
                buffer: best.clone(),
                map: OUTPUT_MAP.into(),
            },
            GenericOperand {
                buffer: index.clone(),
                map: OUTPUT_MAP.into(),
            },
        ],
    };
    search.write(writer, |writer, block| {
        let (value, best, index) = (&block[0], &block[2], &block[3]);
        let take = takes_over(writer, value, best);
        let position = window_position(writer, window);
        let new_best = writer.assign("v", &format!("arith.select {take}, {value}, {best} : f32"));
        let new_index = writer.assign(
            "k",
            &format!("arith.select {take}, {position}, {index} : i32"),
        );
        Ok(vec![new_best, new_index])
    })?;
    zero_uncovered(writer, dy, dx, window);
    let ins = vec![
        GenericOperand {
            buffer: dy.clone(),
            map: OUTPUT_MAP.into(),
        },
        GenericOperand {
            buffer: index.clone(),
            map: OUTPUT_MAP.into(),
        },
        extent,
    ];
    gather_into_windows(dx, window, ins).write(writer, |writer, block| {
        let position = window_position(writer, window);
        let chosen = writer.assign(
            "p",
            &format!("arith.cmpi eq, {position}, {} : i32", block[1]),
        );
        let zero = writer.f32(0.0);
        Ok(vec![writer.assign(
            "v",
            &format!("arith.select {chosen}, {}, {zero} : f32", block[0]),
        )])
    })?;
    writer.line(&format!("memref.dealloc {} : {}", best.name, best.ty()));
    writer.line(&format!("memref.dealloc {} : {}", index.name, index.ty()));
    Ok(())
}

// dx = dy / (Kh·Kw) on each window's elements
pub(crate) fn avg_pool_grad_tiled(
    writer: &mut FunctionWriter,
    dy: &Buffer,
    dx: &Buffer,
    window: &Window,
) -> Result<(), MlirError> {
    zero_uncovered(writer, dy, dx, window);
    let extent = window_operand(writer, window);
    let ins = vec![
        GenericOperand {
            buffer: dy.clone(),
            map: OUTPUT_MAP.into(),
        },
        extent,
    ];
    let area = writer.f32((window.kernel[0] * window.kernel[1]) as f32);
    gather_into_windows(dx, window, ins).write(writer, |writer, block| {
        Ok(vec![binary(writer, "divf", &block[0], &area)])
    })
}
