//! Window kernels: max and average pooling with their gradients, as `scf.parallel` nests over
//! independent outputs with sequential `scf.for` loops inside; and the option-A shortcut with
//! its gradient, as strided copies (`linalg.generic` with a stride in one indexing map) into or
//! out of a channel window.
//!
//! Pooling windows are clipped to the input instead of reading padding: a max ignores padding
//! (PyTorch's −∞), an average counts it in the divisor (`count_include_pad`). Gradients that
//! scatter (several windows may cover one input) run one `(n, c)` plane per parallel iteration
//! and visit windows in row-major order, so every sum has a fixed order.

use crate::ir::{NodeId, Op, Pair};

use super::generic::{batch_size, fill, identity_map, Buffer, Dim, Generic, GenericOperand};
use super::pool;
use super::writer::FunctionWriter;
use super::{Emit, MlirError};

/// Emits the window kernel.
pub(crate) fn emit(emit: &mut Emit<'_>) -> Result<(), MlirError> {
    let node = emit.kernel.nodes[0];
    emit.locate(node);
    let op = emit.graph.node(node).op.clone();
    let inputs = emit.graph.inputs(node);
    let arg = |slot: usize| inputs.get(slot).and_then(|&id| emit.arg_of(id));
    let output = emit.arg_of(node);
    let (Some(first), Some(output)) = (arg(0), output) else {
        return Err(MlirError::BadKernel { op: op.name() });
    };
    check_rank4(emit, node, first)?;
    check_rank4(emit, node, output)?;
    let first = emit.args[first].clone();
    let out = emit.args[output].clone();
    match op {
        Op::MaxPool {
            kernel,
            stride,
            padding,
        }
        | Op::AvgPool {
            kernel,
            stride,
            padding,
        } => {
            let is_max = matches!(op, Op::MaxPool { .. });
            let window = Window {
                kernel,
                stride,
                padding,
            };
            if window.padding == [0, 0] {
                pool::pool_unpadded(&mut emit.writer, &first, &out, &window, is_max)?;
            } else {
                pool_forward(&mut emit.writer, &first, &out, &window, is_max);
            }
        }
        Op::MaxPoolGrad {
            kernel,
            stride,
            padding,
        } => {
            let x = arg(1).ok_or(MlirError::BadKernel { op: op.name() })?;
            let x = emit.args[x].clone();
            let window = Window {
                kernel,
                stride,
                padding,
            };
            if pool::is_tiled(&window) {
                pool::max_pool_grad_tiled(&mut emit.writer, &first, &x, &out, &window)?;
            } else {
                max_pool_grad(&mut emit.writer, &first, &x, &out, &window);
            }
        }
        Op::AvgPoolGrad {
            kernel,
            stride,
            padding,
        } => {
            let window = Window {
                kernel,
                stride,
                padding,
            };
            if pool::is_tiled(&window) {
                pool::avg_pool_grad_tiled(&mut emit.writer, &first, &out, &window)?;
            } else {
                avg_pool_grad(&mut emit.writer, &first, &out, &window);
            }
        }
        Op::ShortcutA {
            stride,
            pad_channels,
        } => {
            shortcut(&mut emit.writer, &first, &out, stride, pad_channels)?;
        }
        Op::ShortcutAGrad {
            stride,
            pad_channels,
        } => {
            shortcut_grad(&mut emit.writer, &first, &out, stride, pad_channels)?;
        }
        other => return Err(MlirError::BadKernel { op: other.name() }),
    }
    Ok(())
}

fn check_rank4(emit: &Emit<'_>, node: NodeId, index: usize) -> Result<(), MlirError> {
    let ty = &emit.types[index];
    if ty.batched && ty.dims.len() == 3 {
        return Ok(());
    }
    let (op, span) = emit.describe(node);
    let reason = "pooling and shortcuts need batched [N, C, H, W] tensors";
    Err(MlirError::UnsupportedShape {
        op,
        ty: ty.clone(),
        reason,
        span,
    })
}

/// Window geometry of a pooling op.
pub(crate) struct Window {
    /// Window (height, width).
    pub kernel: Pair,
    /// Stride (height, width).
    pub stride: Pair,
    /// Padding on each side.
    pub padding: Pair,
}

/// `a op b` on `index` values.
fn index_op(writer: &mut FunctionWriter, op: &str, lhs: &str, rhs: &str) -> String {
    writer.assign("i", &format!("arith.{op} {lhs}, {rhs} : index"))
}

/// The clipped window along one axis for output position `out`: start of the window in the
/// input (may be negative), first and one-past-last valid kernel offsets.
fn window_range(
    writer: &mut FunctionWriter,
    out: &str,
    axis: usize,
    window: &Window,
    input_size: usize,
) -> (String, String, String) {
    let stride = writer.index(window.stride[axis]);
    let padding = writer.index(window.padding[axis]);
    let kernel = writer.index(window.kernel[axis]);
    let size_plus_padding = writer.index(input_size + window.padding[axis]);
    let zero = writer.index(0);
    let scaled = index_op(writer, "muli", out, &stride);
    let start = index_op(writer, "subi", &scaled, &padding);
    let before = index_op(writer, "subi", &padding, &scaled);
    let low = index_op(writer, "maxsi", &before, &zero);
    let room = index_op(writer, "subi", &size_plus_padding, &scaled);
    let high = index_op(writer, "minsi", &room, &kernel);
    (start, low, high)
}

/// Opens `scf.parallel` over the given upper bounds and returns the induction variables.
fn open_parallel(writer: &mut FunctionWriter, bounds: &[String]) -> Vec<String> {
    let zero = writer.index(0);
    let one = writer.index(1);
    let names: Vec<String> = bounds.iter().map(|_| writer.fresh("p")).collect();
    let zeros = vec![zero; bounds.len()];
    let ones = vec![one; bounds.len()];
    writer.open(&format!(
        "scf.parallel ({}) = ({}) to ({}) step ({}) {{",
        names.join(", "),
        zeros.join(", "),
        bounds.join(", "),
        ones.join(", ")
    ));
    names
}

fn close_parallel(writer: &mut FunctionWriter) {
    writer.line("scf.reduce");
    writer.close("}");
}

/// Opens `scf.for %i = low to high` without loop-carried values.
fn open_for(writer: &mut FunctionWriter, low: &str, high: &str) -> String {
    let one = writer.index(1);
    let name = writer.fresh("k");
    writer.open(&format!("scf.for {name} = {low} to {high} step {one} {{"));
    name
}

fn load(writer: &mut FunctionWriter, buffer: &Buffer, indices: &[&str]) -> String {
    writer.assign(
        "x",
        &format!(
            "memref.load {}[{}] : {}",
            buffer.name,
            indices.join(", "),
            buffer.ty()
        ),
    )
}

fn store(writer: &mut FunctionWriter, value: &str, buffer: &Buffer, indices: &[&str]) {
    writer.line(&format!(
        "memref.store {value}, {}[{}] : {}",
        buffer.name,
        indices.join(", "),
        buffer.ty()
    ));
}

// max: y = the first maximum of the clipped window (NaN wins, as in PyTorch);
// average: y = Σ window / (Kh·Kw).
fn pool_forward(
    writer: &mut FunctionWriter,
    x: &Buffer,
    out: &Buffer,
    window: &Window,
    is_max: bool,
) {
    let bounds = full_bounds(writer, out);
    let ivs = open_parallel(writer, &bounds);
    let (item, channel, oh, ow) = (&ivs[0], &ivs[1], &ivs[2], &ivs[3]);
    let (h0, kh_low, kh_high) = window_range(writer, oh, 0, window, x.static_dim(2));
    let (w0, kw_low, kw_high) = window_range(writer, ow, 1, window, x.static_dim(3));
    let init = if is_max {
        writer.f32(f32::NEG_INFINITY)
    } else {
        writer.f32(0.0)
    };
    let one = writer.index(1);
    let kh = writer.fresh("k");
    let carried = writer.fresh("a");
    let result = writer.fresh("r");
    writer.open(&format!(
        "{result} = scf.for {kh} = {kh_low} to {kh_high} step {one} \
         iter_args({carried} = {init}) -> (f32) {{"
    ));
    let kw = writer.fresh("k");
    let inner = writer.fresh("a");
    let row = writer.fresh("r");
    writer.open(&format!(
        "{row} = scf.for {kw} = {kw_low} to {kw_high} step {one} \
         iter_args({inner} = {carried}) -> (f32) {{"
    ));
    let h = index_op(writer, "addi", &h0, &kh);
    let w = index_op(writer, "addi", &w0, &kw);
    let value = load(writer, x, &[item, channel, &h, &w]);
    let next = if is_max {
        let greater = writer.assign("p", &format!("arith.cmpf ogt, {value}, {inner} : f32"));
        let nan = writer.assign("p", &format!("arith.cmpf uno, {value}, {value} : f32"));
        let take = writer.assign("p", &format!("arith.ori {greater}, {nan} : i1"));
        writer.assign("v", &format!("arith.select {take}, {value}, {inner} : f32"))
    } else {
        writer.assign("v", &format!("arith.addf {inner}, {value} : f32"))
    };
    writer.line(&format!("scf.yield {next} : f32"));
    writer.close("}");
    writer.line(&format!("scf.yield {row} : f32"));
    writer.close("}");
    let value = if is_max {
        result
    } else {
        let area = writer.f32((window.kernel[0] * window.kernel[1]) as f32);
        writer.assign("v", &format!("arith.divf {result}, {area} : f32"))
    };
    store(writer, &value, out, &[item, channel, oh, ow]);
    close_parallel(writer);
}

/// Opens the `(n, c)` planes and the row-major loops over output positions of a scattering
/// gradient; returns `(n, c, oh, ow)`. Close with [`close_plane_loops`].
fn open_plane_loops(writer: &mut FunctionWriter, dy: &Buffer, dx: &Buffer) -> [String; 4] {
    let zero = writer.f32(0.0);
    fill(writer, dx, &zero);
    let batch = batch_size(writer, dy);
    let channels = writer.index(dy.static_dim(1));
    let ivs = open_parallel(writer, &[batch, channels]);
    let zero_index = writer.index(0);
    let rows = writer.index(dy.static_dim(2));
    let columns = writer.index(dy.static_dim(3));
    let oh = open_for(writer, &zero_index, &rows);
    let ow = open_for(writer, &zero_index, &columns);
    [ivs[0].clone(), ivs[1].clone(), oh, ow]
}

fn close_plane_loops(writer: &mut FunctionWriter) {
    writer.close("}");
    writer.close("}");
    close_parallel(writer);
}

// dx[argmax of each window] += dy (first maximum, as the forward pass chose it).
fn max_pool_grad(
    writer: &mut FunctionWriter,
    dy: &Buffer,
    x: &Buffer,
    dx: &Buffer,
    window: &Window,
) {
    let [item, channel, oh, ow] = open_plane_loops(writer, dy, dx);
    let (h0, kh_low, kh_high) = window_range(writer, &oh, 0, window, x.static_dim(2));
    let (w0, kw_low, kw_high) = window_range(writer, &ow, 1, window, x.static_dim(3));
    let rows_valid = writer.assign("p", &format!("arith.cmpi slt, {kh_low}, {kh_high} : index"));
    let columns_valid = writer.assign("p", &format!("arith.cmpi slt, {kw_low}, {kw_high} : index"));
    let valid = writer.assign(
        "p",
        &format!("arith.andi {rows_valid}, {columns_valid} : i1"),
    );
    writer.open(&format!("scf.if {valid} {{"));
    let first_h = index_op(writer, "addi", &h0, &kh_low);
    let first_w = index_op(writer, "addi", &w0, &kw_low);
    let minus_infinity = writer.f32(f32::NEG_INFINITY);
    let one = writer.index(1);
    let (kh, best, best_h, best_w) = (
        writer.fresh("k"),
        writer.fresh("m"),
        writer.fresh("h"),
        writer.fresh("w"),
    );
    let result = writer.fresh("r");
    writer.open(&format!(
        "{result}:3 = scf.for {kh} = {kh_low} to {kh_high} step {one} \
         iter_args({best} = {minus_infinity}, \
         {best_h} = {first_h}, {best_w} = {first_w}) -> (f32, index, index) {{"
    ));
    let (kw, inner, inner_h, inner_w) = (
        writer.fresh("k"),
        writer.fresh("m"),
        writer.fresh("h"),
        writer.fresh("w"),
    );
    let row = writer.fresh("r");
    writer.open(&format!(
        "{row}:3 = scf.for {kw} = {kw_low} to {kw_high} step {one} iter_args({inner} = {best}, \
         {inner_h} = {best_h}, {inner_w} = {best_w}) -> (f32, index, index) {{"
    ));
    let h = index_op(writer, "addi", &h0, &kh);
    let w = index_op(writer, "addi", &w0, &kw);
    let value = load(writer, x, &[&item, &channel, &h, &w]);
    let greater = writer.assign("p", &format!("arith.cmpf ogt, {value}, {inner} : f32"));
    let nan = writer.assign("p", &format!("arith.cmpf uno, {value}, {value} : f32"));
    let take = writer.assign("p", &format!("arith.ori {greater}, {nan} : i1"));
    let next = writer.assign("v", &format!("arith.select {take}, {value}, {inner} : f32"));
    let next_h = writer.assign("i", &format!("arith.select {take}, {h}, {inner_h} : index"));
    let next_w = writer.assign("i", &format!("arith.select {take}, {w}, {inner_w} : index"));
    writer.line(&format!(
        "scf.yield {next}, {next_h}, {next_w} : f32, index, index"
    ));
    writer.close("}");
    writer.line(&format!(
        "scf.yield {row}#0, {row}#1, {row}#2 : f32, index, index"
    ));
    writer.close("}");
    let gradient = load(writer, dy, &[&item, &channel, &oh, &ow]);
    let (target_h, target_w) = (format!("{result}#1"), format!("{result}#2"));
    let old = load(writer, dx, &[&item, &channel, &target_h, &target_w]);
    let sum = writer.assign("v", &format!("arith.addf {old}, {gradient} : f32"));
    store(writer, &sum, dx, &[&item, &channel, &target_h, &target_w]);
    writer.close("}");
    close_plane_loops(writer);
}

// dx[window] += dy / (Kh·Kw) over the clipped window.
fn avg_pool_grad(writer: &mut FunctionWriter, dy: &Buffer, dx: &Buffer, window: &Window) {
    let [item, channel, oh, ow] = open_plane_loops(writer, dy, dx);
    let (h0, kh_low, kh_high) = window_range(writer, &oh, 0, window, dx.static_dim(2));
    let (w0, kw_low, kw_high) = window_range(writer, &ow, 1, window, dx.static_dim(3));
    let gradient = load(writer, dy, &[&item, &channel, &oh, &ow]);
    let area = writer.f32((window.kernel[0] * window.kernel[1]) as f32);
    let share = writer.assign("v", &format!("arith.divf {gradient}, {area} : f32"));
    let kh = open_for(writer, &kh_low, &kh_high);
    let kw = open_for(writer, &kw_low, &kw_high);
    let h = index_op(writer, "addi", &h0, &kh);
    let w = index_op(writer, "addi", &w0, &kw);
    let old = load(writer, dx, &[&item, &channel, &h, &w]);
    let sum = writer.assign("v", &format!("arith.addf {old}, {share} : f32"));
    store(writer, &sum, dx, &[&item, &channel, &h, &w]);
    writer.close("}");
    writer.close("}");
    close_plane_loops(writer);
}

/// The four bounds of a batched `[N, C, H, W]` buffer as `index` values.
fn full_bounds(writer: &mut FunctionWriter, buffer: &Buffer) -> Vec<String> {
    let batch = batch_size(writer, buffer);
    let mut bounds = vec![batch];
    for axis in 1..4 {
        bounds.push(writer.index(buffer.static_dim(axis)));
    }
    bounds
}

/// The channels `pad..pad + count` of the batched `[N, C, H, W]` buffer, as a strided
/// subview.
fn channel_window(
    writer: &mut FunctionWriter,
    buffer: &Buffer,
    pad: usize,
    count: usize,
) -> Buffer {
    let batch = batch_size(writer, buffer);
    let (channels, height, width) = (
        buffer.static_dim(1),
        buffer.static_dim(2),
        buffer.static_dim(3),
    );
    let plane = height * width;
    let layout = format!(
        "strided<[{}, {plane}, {width}, 1], offset: {}>",
        channels * plane,
        pad * plane
    );
    let dims = vec![
        Dim::Dynamic,
        Dim::Static(count),
        Dim::Static(height),
        Dim::Static(width),
    ];
    let view = Buffer {
        name: String::new(),
        dims,
        dtype: buffer.dtype,
        layout: Some(layout),
    };
    let sizes = format!("[{batch}, {count}, {height}, {width}]");
    let rhs = format!(
        "memref.subview {}[0, {pad}, 0, 0] {sizes} [1, 1, 1, 1] : {} to {}",
        buffer.name,
        buffer.ty(),
        view.ty()
    );
    let name = writer.assign("view", &rhs);
    Buffer { name, ..view }
}

/// The map reading every `stride`-th row and column: `(n, c, h, w) -> (n, c, s·h, s·w)`.
fn strided_map(stride: usize) -> String {
    format!("d0, d1, d2 * {stride}, d3 * {stride}")
}

// y = 0, then y[n, p + c, h, w] = x[n, c, h·s, w·s] for c < Cin
fn shortcut(
    writer: &mut FunctionWriter,
    x: &Buffer,
    out: &Buffer,
    stride: usize,
    pad: usize,
) -> Result<(), MlirError> {
    let zero = writer.f32(0.0);
    fill(writer, out, &zero);
    let target = channel_window(writer, out, pad, x.static_dim(1));
    let copy = Generic {
        iterators: vec!["parallel"; 4],
        ins: vec![GenericOperand {
            buffer: x.clone(),
            map: strided_map(stride),
        }],
        outs: vec![GenericOperand {
            buffer: target,
            map: identity_map(4),
        }],
    };
    copy.write(writer, |_, block| Ok(vec![block[0].clone()]))
}

// dx = 0, then dx[n, c, h·s, w·s] = dy[n, p + c, h, w]
fn shortcut_grad(
    writer: &mut FunctionWriter,
    dy: &Buffer,
    dx: &Buffer,
    stride: usize,
    pad: usize,
) -> Result<(), MlirError> {
    let zero = writer.f32(0.0);
    fill(writer, dx, &zero);
    let source = channel_window(writer, dy, pad, dx.static_dim(1));
    let scatter = Generic {
        iterators: vec!["parallel"; 4],
        ins: vec![GenericOperand {
            buffer: source,
            map: identity_map(4),
        }],
        outs: vec![GenericOperand {
            buffer: dx.clone(),
            map: strided_map(stride),
        }],
    };
    scatter.write(writer, |_, block| Ok(vec![block[0].clone()]))
}
