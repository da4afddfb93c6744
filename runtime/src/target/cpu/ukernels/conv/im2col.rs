//! The im2col method: each image's full patch matrix `col (Cin·Kh·Kw x Ho·Wo)` is built in a
//! per-thread buffer and contracted with one GEMM. Used for strided convolutions, and (with
//! col2im) for input gradients that are not a stride-1 forward convolution.
//!
//! Invariant: `col` row `(ci·Kh + kh)·Kw + kw` holds tap `(ci, kh, kw)` of every output pixel,
//! 0 where the tap falls in the padding.

use super::ConvShape;
use crate::target::cpu::ukernels::{gemm_f32, with_scratch, GemmOperand};

/// One image: `y (Cout x HoWo) = W (Cout x CinKK) · col (CinKK x HoWo) + b`.
pub(super) fn forward_image(shape: &ConvShape, x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32]) {
    let pixels = shape.out_pixels();
    let patch = shape.patch_len();
    let has_bias = super::fill_bias(bias, pixels, y);
    let weight = GemmOperand::row_major(w, patch);
    with_scratch(patch * pixels, |col| {
        im2col(shape, x, col);
        let col = GemmOperand::row_major(col, pixels);
        gemm_f32(
            shape.out_channels,
            pixels,
            patch,
            y,
            pixels,
            has_bias,
            weight,
            col,
        );
    });
}

/// One image of the col2im input gradient: `dcol = Wᵀ·dy`, scattered onto `dx`.
pub(super) fn input_grad_image(shape: &ConvShape, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let pixels = shape.out_pixels();
    let patch = shape.patch_len();
    dx.fill(0.0);
    if pixels == 0 {
        return;
    }
    with_scratch(patch * pixels, |dcol| {
        // dcol (CinKK x HoWo) = Wᵀ (CinKK x Cout) · dy (Cout x HoWo)
        let weight_t = GemmOperand::transposed(w, patch);
        let dy = GemmOperand::row_major(dy, pixels);
        gemm_f32(
            patch,
            pixels,
            shape.out_channels,
            dcol,
            pixels,
            false,
            weight_t,
            dy,
        );
        col2im_add(shape, dcol, dx);
    });
}

/// One image of the weight gradient: `dwᵀ (CinKK x Cout) += col (CinKK x HoWo) · dyᵀ`.
pub(super) fn weight_grad_image(shape: &ConvShape, dy: &[f32], x: &[f32], dw_t: &mut [f32]) {
    let pixels = shape.out_pixels();
    let patch = shape.patch_len();
    let cout = shape.out_channels;
    let dy_t = GemmOperand::transposed(dy, pixels);
    with_scratch(patch * pixels, |col| {
        im2col(shape, x, col);
        let col = GemmOperand::row_major(col, pixels);
        gemm_f32(patch, cout, pixels, dw_t, cout, true, col, dy_t);
    });
}

/// Fills `col (CinKK x HoWo)` with the patches of one image `x (Cin x H x W)`; taps that fall
/// in the padding are 0.
fn im2col(shape: &ConvShape, x: &[f32], col: &mut [f32]) {
    let plane = shape.in_height * shape.in_width;
    let windows = TapWindow::all(shape);
    let mut rows = col.chunks_mut(shape.out_pixels());
    for channel in x.chunks(plane).take(shape.in_channels) {
        for window in &windows {
            let Some(row) = rows.next() else { return };
            gather_tap(shape, window, channel, row);
        }
    }
}

/// Adds `dcol (CinKK x HoWo)` back onto the image gradient `dx (Cin x H x W)`.
fn col2im_add(shape: &ConvShape, dcol: &[f32], dx: &mut [f32]) {
    let plane = shape.in_height * shape.in_width;
    let windows = TapWindow::all(shape);
    let mut rows = dcol.chunks(shape.out_pixels());
    for channel in dx.chunks_mut(plane).take(shape.in_channels) {
        for window in &windows {
            let Some(row) = rows.next() else { return };
            scatter_tap(shape, window, row, channel);
        }
    }
}

/// The output rows and columns whose tap `(kh, kw)` reads inside the image.
struct TapWindow {
    tap: (usize, usize),
    rows: std::ops::Range<usize>,
    columns: std::ops::Range<usize>,
}

impl TapWindow {
    /// The windows of every tap, in `(kh, kw)` row-major order.
    fn all(shape: &ConvShape) -> Vec<TapWindow> {
        let taps =
            (0..shape.kernel_height).flat_map(|kh| (0..shape.kernel_width).map(move |kw| (kh, kw)));
        taps.map(|tap| TapWindow::new(shape, tap)).collect()
    }

    fn new(shape: &ConvShape, (kh, kw): (usize, usize)) -> Self {
        let rows = valid_range(
            shape.in_height,
            kh,
            shape.stride.0,
            shape.padding.0,
            shape.out_height(),
        );
        let columns = valid_range(
            shape.in_width,
            kw,
            shape.stride.1,
            shape.padding.1,
            shape.out_width(),
        );
        TapWindow {
            tap: (kh, kw),
            rows,
            columns,
        }
    }

    fn is_empty(&self) -> bool {
        self.rows.is_empty() || self.columns.is_empty()
    }
}

/// The outputs `o < out_extent` whose input `o·s + k - p` lies inside `[0, extent)`.
fn valid_range(
    extent: usize,
    k: usize,
    stride: usize,
    pad: usize,
    out_extent: usize,
) -> std::ops::Range<usize> {
    // o·s + k >= p  <=>  o >= ceil((p - k) / s)
    let first = pad.saturating_sub(k).div_ceil(stride).min(out_extent);
    // o·s + k - p < extent  <=>  o < ceil((extent + p - k) / s)
    let last = (extent + pad)
        .saturating_sub(k)
        .div_ceil(stride)
        .min(out_extent);
    first..last.max(first)
}

/// `out[oh·Wo + ow] = channel[oh·s + kh - p][ow·s + kw - p]`, 0 in the padding.
fn gather_tap(shape: &ConvShape, window: &TapWindow, channel: &[f32], out: &mut [f32]) {
    let tap = window.tap;
    if window.is_empty() {
        out.fill(0.0);
        return;
    }
    let (width, out_width) = (shape.in_width, shape.out_width());
    out[..window.rows.start * out_width].fill(0.0);
    out[window.rows.end * out_width..].fill(0.0);
    if shape.stride == (1, 1) && out_width == width {
        // Output and input rows have the same length, so the whole window is one shifted
        // copy; the columns that wrapped around to a neighbouring row are zeroed after.
        let start = window.rows.start * width + window.columns.start;
        let end = (window.rows.end - 1) * width + window.columns.end;
        let source = start + tap.0 * width + tap.1 - (shape.padding.0 * width + shape.padding.1);
        out[start..end].copy_from_slice(&channel[source..source + (end - start)]);
        for line in out
            .chunks_mut(width)
            .take(window.rows.end)
            .skip(window.rows.start)
        {
            line[..window.columns.start].fill(0.0);
            line[window.columns.end..].fill(0.0);
        }
        return;
    }
    for oh in window.rows.clone() {
        let ih = oh * shape.stride.0 + tap.0 - shape.padding.0;
        let line = &channel[ih * width..][..width];
        let out_line = &mut out[oh * out_width..][..out_width];
        out_line[..window.columns.start].fill(0.0);
        out_line[window.columns.end..].fill(0.0);
        let first = window.columns.start * shape.stride.1 + tap.1 - shape.padding.1;
        let targets = &mut out_line[window.columns.clone()];
        if shape.stride.1 == 1 {
            targets.copy_from_slice(&line[first..first + targets.len()]);
        } else {
            let sources = line[first..].iter().step_by(shape.stride.1);
            targets
                .iter_mut()
                .zip(sources)
                .for_each(|(target, value)| *target = *value);
        }
    }
}

/// `channel[oh·s + kh - p][ow·s + kw - p] += out[oh·Wo + ow]` for the taps inside the image.
fn scatter_tap(shape: &ConvShape, window: &TapWindow, out: &[f32], channel: &mut [f32]) {
    let tap = window.tap;
    if window.is_empty() {
        return;
    }
    let (width, out_width) = (shape.in_width, shape.out_width());
    for oh in window.rows.clone() {
        let ih = oh * shape.stride.0 + tap.0 - shape.padding.0;
        let line = &mut channel[ih * width..][..width];
        let out_line = &out[oh * out_width..][..out_width];
        let first = window.columns.start * shape.stride.1 + tap.1 - shape.padding.1;
        let targets = line[first..].iter_mut().step_by(shape.stride.1);
        let values = &out_line[window.columns.clone()];
        targets
            .zip(values)
            .for_each(|(target, value)| *target += value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_range_keeps_the_taps_inside_the_image() {
        assert_eq!(valid_range(8, 0, 1, 1, 8), 1..8);
        assert_eq!(valid_range(8, 2, 1, 1, 8), 0..7);
        assert_eq!(valid_range(7, 0, 2, 1, 4), 1..4);
        assert_eq!(valid_range(4, 0, 1, 3, 2), 2..2);
    }
}
