//! The shifted-rows method for stride-1 convolutions, which needs no patch matrix.
//!
//! With the image zero-padded to `Hp x Wp`, output pixel `(oh, ow)` reads padded pixel
//! `(oh + kh, ow + kw)`. Outputs are computed on the padded width (`q = oh·Wp + ow` for
//! `ow < Wp`; the `Wp - Wo` extra columns are discarded), so tap `(ci, kh, kw)` of output `q` is
//! `padded[ci][q + kh·Wp + kw]`. Keeping `Kw` copies of each padded channel, copy `kw` shifted
//! left by `kw` (`columns[(ci·Kw + kw)·P + r] = padded[ci][r + kw]`, `P = Hp·Wp`), the operand of
//! kernel row `kh` is `columns` read from offset `kh·Wp` with row stride `P`: one GEMM per
//! kernel row with `K = Cin·Kw`, over `Kw/(Kh·Kw)` of the data an im2col would copy.
//!
//! Invariant: every read of `columns` stays inside it, because `Ho + kh ≤ Hp`.

use super::ConvShape;
use crate::target::cpu::ukernels::{gemm_f32, with_scratch, GemmOperand};

/// Sizes of the padded planes and of the wide (padded-width) output.
struct Geometry {
    padded_width: usize,
    /// `Hp·Wp`.
    plane: usize,
    /// Rows of the operand: `Cin·Kw`.
    depth: usize,
    /// Output pixels per channel on the padded width: `Ho·Wp`.
    wide_pixels: usize,
}

impl Geometry {
    fn new(shape: &ConvShape) -> Self {
        let padded_width = shape.in_width + 2 * shape.padding.1;
        let padded_height = shape.in_height + 2 * shape.padding.0;
        Geometry {
            padded_width,
            plane: padded_height * padded_width,
            depth: shape.in_channels * shape.kernel_width,
            wide_pixels: shape.out_height() * padded_width,
        }
    }

    fn columns_len(&self) -> usize {
        self.depth * self.plane
    }
}

/// `w [Cout,Cin,Kh,Kw]` reordered to `[Kh][Cout][Cin][Kw]`, so that the weight of kernel row
/// `kh` is a row-major `Cout x Cin·Kw` matrix.
pub(super) fn weight_rows(shape: &ConvShape, w: &[f32]) -> Vec<f32> {
    let (cout, cin) = (shape.out_channels, shape.in_channels);
    let (kernel_height, kernel_width) = (shape.kernel_height, shape.kernel_width);
    let mut rows = Vec::with_capacity(w.len());
    for kh in 0..kernel_height {
        for co in 0..cout {
            for ci in 0..cin {
                let start = ((co * cin + ci) * kernel_height + kh) * kernel_width;
                rows.extend_from_slice(&w[start..start + kernel_width]);
            }
        }
    }
    rows
}

/// One image: `y = Σ_kh W_kh · columns_kh`, computed on the padded width, then compacted to
/// `y (Cout x Ho x Wo)` with the bias added.
pub(super) fn forward_image(
    shape: &ConvShape,
    x: &[f32],
    rows: &[f32],
    bias: &[f32],
    y: &mut [f32],
) {
    let geometry = Geometry::new(shape);
    let (cout, depth, wide) = (shape.out_channels, geometry.depth, geometry.wide_pixels);
    with_scratch(geometry.columns_len() + cout * wide, |buffer| {
        let (columns, wide_y) = buffer.split_at_mut(geometry.columns_len());
        build_columns(shape, &geometry, x, columns);
        for kh in 0..shape.kernel_height {
            let weight = GemmOperand::row_major(&rows[kh * cout * depth..][..cout * depth], depth);
            let operand = shifted_operand(&geometry, columns, kh);
            gemm_f32(cout, wide, depth, wide_y, wide, kh > 0, weight, operand);
        }
        compact(shape, &geometry, wide_y, bias, y);
    });
}

/// One image of the weight gradient: `dw_tᵀ[kh] (Cin·Kw x Cout) += columns_kh · dy_wideᵀ`, where
/// `dy_wide` is `dy` on the padded width with zeros in the extra columns. The partial's rows
/// are ordered `(kh, ci, kw)`.
pub(super) fn weight_grad_image(shape: &ConvShape, dy: &[f32], x: &[f32], dw_t: &mut [f32]) {
    let geometry = Geometry::new(shape);
    let (cout, depth, wide) = (shape.out_channels, geometry.depth, geometry.wide_pixels);
    with_scratch(geometry.columns_len() + cout * wide, |buffer| {
        let (columns, dy_wide) = buffer.split_at_mut(geometry.columns_len());
        build_columns(shape, &geometry, x, columns);
        widen(shape, &geometry, dy, dy_wide);
        let dy_t = GemmOperand::transposed(dy_wide, wide);
        for (kh, block) in dw_t.chunks_mut(depth * cout).enumerate() {
            let operand = shifted_operand(&geometry, columns, kh);
            gemm_f32(depth, cout, wide, block, cout, true, operand, dy_t);
        }
    });
}

/// The `Cin·Kw x Ho·Wp` operand of kernel row `kh`.
fn shifted_operand<'a>(geometry: &Geometry, columns: &'a [f32], kh: usize) -> GemmOperand<'a> {
    GemmOperand::strided(&columns[kh * geometry.padded_width..], geometry.plane, 1)
}

/// `columns[(ci·Kw + kw)·P + i] = padded[ci][i + kw]` (flat index `i = r·Wp + c` into the
/// zero-padded channel), 0 past the plane's end.
///
/// Where `c + kw ≥ Wp` the flat shift reads the start of the next padded row instead of the
/// padding: those entries only meet output columns `ow ≥ Wo`, which the forward pass discards
/// and the weight gradient multiplies by zero, and they are finite (copies of the input).
fn build_columns(shape: &ConvShape, geometry: &Geometry, x: &[f32], columns: &mut [f32]) {
    let plane_len = geometry.plane;
    let mut groups = columns.chunks_exact_mut(plane_len * shape.kernel_width);
    for channel in x
        .chunks_exact(shape.in_height * shape.in_width)
        .take(shape.in_channels)
    {
        let Some(group) = groups.next() else { return };
        let (padded, shifted) = group.split_at_mut(plane_len);
        pad_channel(shape, geometry, channel, padded);
        for (index, plane) in shifted.chunks_exact_mut(plane_len).enumerate() {
            let kw = (index + 1).min(plane_len);
            plane[..plane_len - kw].copy_from_slice(&padded[kw..]);
            plane[plane_len - kw..].fill(0.0);
        }
    }
}

/// `padded[r·Wp + c] = channel[r - ph][c - pw]`, 0 in the padding.
fn pad_channel(shape: &ConvShape, geometry: &Geometry, channel: &[f32], padded: &mut [f32]) {
    let (width, padded_width) = (shape.in_width, geometry.padded_width);
    let (pad_h, pad_w) = shape.padding;
    let top = pad_h * padded_width;
    let body = shape.in_height * padded_width;
    padded[..top].fill(0.0);
    let lines = padded[top..top + body].chunks_exact_mut(padded_width);
    for (line, source) in lines.zip(channel.chunks_exact(width)) {
        line[..pad_w].fill(0.0);
        line[pad_w..pad_w + width].copy_from_slice(source);
        line[pad_w + width..].fill(0.0);
    }
    padded[top + body..].fill(0.0);
}

/// `y[co][oh][ow] = wide[co][oh·Wp + ow] (+ bias[co])` for `ow < Wo`.
fn compact(shape: &ConvShape, geometry: &Geometry, wide: &[f32], bias: &[f32], y: &mut [f32]) {
    let out_width = shape.out_width();
    let channels = y
        .chunks_exact_mut(shape.out_pixels())
        .zip(wide.chunks_exact(geometry.wide_pixels));
    for (co, (y_channel, wide_channel)) in channels.enumerate() {
        let lines = y_channel.chunks_exact_mut(out_width);
        for (line, source) in lines.zip(wide_channel.chunks_exact(geometry.padded_width)) {
            let source = &source[..out_width];
            match bias.get(co) {
                Some(&value) => line
                    .iter_mut()
                    .zip(source)
                    .for_each(|(y, s)| *y = s + value),
                None => line.copy_from_slice(source),
            }
        }
    }
}

/// `dy_wide[co][oh·Wp + ow] = dy[co][oh][ow]` for `ow < Wo`, 0 in the extra columns.
fn widen(shape: &ConvShape, geometry: &Geometry, dy: &[f32], dy_wide: &mut [f32]) {
    let out_width = shape.out_width();
    let lines = dy_wide.chunks_exact_mut(geometry.padded_width);
    for (line, source) in lines.zip(dy.chunks_exact(out_width)) {
        line[..out_width].copy_from_slice(source);
        line[out_width..].fill(0.0);
    }
}
