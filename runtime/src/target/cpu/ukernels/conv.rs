//! 2-D convolution (NCHW, groups = 1) on host slices: forward, input gradient and weight
//! gradient, each as a per-image im2col followed by a GEMM of the `gemm` crate.
//!
//! Invariant: every result is bitwise reproducible. Work is cut into fixed pieces (one image,
//! or a fixed chunk of images for the weight gradient) that do not depend on the number of
//! threads; a reduction across pieces is summed in piece order after all pieces finish.
//! The im2col buffer of one image (at most a few hundred KB for CIFAR networks) stays in the
//! core's L2 cache, which is why no batch-wide im2col matrix is ever built.

use rayon::prelude::*;

use super::{gemm_f32, with_scratch, GemmOperand, WEIGHT_GRAD_CHUNK_IMAGES};

/// The geometry of one convolution call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    /// Images in the batch.
    pub batch: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Input height.
    pub in_height: usize,
    /// Input width.
    pub in_width: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel height.
    pub kernel_height: usize,
    /// Kernel width.
    pub kernel_width: usize,
    /// Stride (height, width), both at least 1.
    pub stride: (usize, usize),
    /// Zero padding on each side (height, width).
    pub padding: (usize, usize),
}

impl ConvShape {
    /// Output height, `(H + 2p - K) / s + 1`; 0 when the kernel does not fit.
    pub fn out_height(&self) -> usize {
        out_extent(
            self.in_height,
            self.kernel_height,
            self.stride.0,
            self.padding.0,
        )
    }

    /// Output width, `(W + 2p - K) / s + 1`; 0 when the kernel does not fit.
    pub fn out_width(&self) -> usize {
        out_extent(
            self.in_width,
            self.kernel_width,
            self.stride.1,
            self.padding.1,
        )
    }

    /// Rows of the im2col matrix: `Cin·Kh·Kw`.
    pub fn patch_len(&self) -> usize {
        self.in_channels * self.kernel_height * self.kernel_width
    }

    /// Output pixels per channel: `Ho·Wo`.
    pub fn out_pixels(&self) -> usize {
        self.out_height() * self.out_width()
    }

    fn in_image_len(&self) -> usize {
        self.in_channels * self.in_height * self.in_width
    }

    fn out_image_len(&self) -> usize {
        self.out_channels * self.out_pixels()
    }

    /// Floating-point operations of the forward pass (also of each gradient): `2·N·Cout·Cin·
    /// Kh·Kw·Ho·Wo`.
    pub fn flops(&self) -> f64 {
        2.0 * (self.batch * self.out_channels * self.patch_len() * self.out_pixels()) as f64
    }

    /// True when im2col is the identity (1x1 kernel, stride 1, no padding).
    fn is_pointwise(&self) -> bool {
        self.kernel_height == 1
            && self.kernel_width == 1
            && self.stride == (1, 1)
            && self.padding == (0, 0)
    }
}

fn out_extent(input: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    let padded = input + 2 * padding;
    if padded < kernel || stride == 0 {
        0
    } else {
        (padded - kernel) / stride + 1
    }
}

/// `y = conv(x, w) + b`: `x [N,Cin,H,W]`, `w [Cout,Cin,Kh,Kw]`, `bias` empty or `[Cout]`,
/// `y [N,Cout,Ho,Wo]` (overwritten).
pub fn forward(shape: &ConvShape, x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32]) {
    if shape.out_pixels() == 0 || shape.batch == 0 {
        return;
    }
    let in_len = shape.in_image_len();
    let out_len = shape.out_image_len();
    y.par_chunks_mut(out_len)
        .enumerate()
        .for_each(|(image, y_image)| {
            let x_image = &x[image * in_len..(image + 1) * in_len];
            forward_image(shape, x_image, w, bias, y_image);
        });
}

/// One image of [`forward`]: `y (Cout x HoWo) = W (Cout x CinKK) · col (CinKK x HoWo) + b`.
fn forward_image(shape: &ConvShape, x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32]) {
    let pixels = shape.out_pixels();
    let patch = shape.patch_len();
    let has_bias = !bias.is_empty();
    if has_bias {
        for (row, &value) in y.chunks_mut(pixels).zip(bias) {
            row.fill(value);
        }
    }
    let weight = GemmOperand::row_major(w, patch);
    if shape.is_pointwise() {
        let col = GemmOperand::row_major(x, pixels);
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
        return;
    }
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

/// `dx = conv_input_grad(dy, w)`: `dy [N,Cout,Ho,Wo]`, `w [Cout,Cin,Kh,Kw]`, `dx [N,Cin,H,W]`
/// (overwritten).
///
/// With stride 1 and padding below the kernel size this is a forward convolution of `dy` with
/// the flipped, transposed kernel and padding `K-1-p` (no scatter); otherwise each image
/// computes `dcol = Wᵀ·dy` and scatters it back with col2im.
pub fn input_grad(shape: &ConvShape, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    if shape.batch == 0 {
        return;
    }
    if let Some(flipped) = flipped_shape(shape) {
        let flipped_weight = flip_transpose(shape, w);
        forward(&flipped, dy, &flipped_weight, &[], dx);
        return;
    }
    let in_len = shape.in_image_len();
    let out_len = shape.out_image_len();
    dx.par_chunks_mut(in_len)
        .enumerate()
        .for_each(|(image, dx_image)| {
            let dy_image = &dy[image * out_len..(image + 1) * out_len];
            input_grad_image(shape, dy_image, w, dx_image);
        });
}

/// The forward convolution equal to the input gradient of `shape`, when stride is 1 and each
/// padding is at most kernel - 1.
fn flipped_shape(shape: &ConvShape) -> Option<ConvShape> {
    let fits = shape.padding.0 < shape.kernel_height && shape.padding.1 < shape.kernel_width;
    if shape.stride != (1, 1) || !fits || shape.out_pixels() == 0 {
        return None;
    }
    Some(ConvShape {
        batch: shape.batch,
        in_channels: shape.out_channels,
        in_height: shape.out_height(),
        in_width: shape.out_width(),
        out_channels: shape.in_channels,
        kernel_height: shape.kernel_height,
        kernel_width: shape.kernel_width,
        stride: (1, 1),
        padding: (
            shape.kernel_height - 1 - shape.padding.0,
            shape.kernel_width - 1 - shape.padding.1,
        ),
    })
}

/// `w'[ci][co][kh][kw] = w[co][ci][Kh-1-kh][Kw-1-kw]`.
fn flip_transpose(shape: &ConvShape, w: &[f32]) -> Vec<f32> {
    let (kh_len, kw_len) = (shape.kernel_height, shape.kernel_width);
    let taps = kh_len * kw_len;
    let mut flipped = vec![0.0; w.len()];
    for co in 0..shape.out_channels {
        for ci in 0..shape.in_channels {
            let source = &w[(co * shape.in_channels + ci) * taps..][..taps];
            let target = &mut flipped[(ci * shape.out_channels + co) * taps..][..taps];
            for tap in 0..taps {
                target[taps - 1 - tap] = source[tap];
            }
        }
    }
    flipped
}

/// One image of the col2im path of [`input_grad`].
fn input_grad_image(shape: &ConvShape, dy: &[f32], w: &[f32], dx: &mut [f32]) {
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

/// `dw = conv_weight_grad(dy, x)` summed over the batch, and `db = Σ dy` over batch and
/// pixels when `db` is not empty: `dy [N,Cout,Ho,Wo]`, `x [N,Cin,H,W]`, `dw [Cout,Cin,Kh,Kw]`
/// and `db [Cout]` (both overwritten).
///
/// Images are cut into chunks of [`WEIGHT_GRAD_CHUNK_IMAGES`]; each chunk accumulates its own
/// partial sum image by image, and the partials are added in chunk order.
pub fn weight_grad(shape: &ConvShape, dy: &[f32], x: &[f32], dw: &mut [f32], db: &mut [f32]) {
    let weight_len = shape.out_channels * shape.patch_len();
    let bias_len = if db.is_empty() { 0 } else { shape.out_channels };
    let partial_len = weight_len + bias_len;
    let chunks = shape.batch.div_ceil(WEIGHT_GRAD_CHUNK_IMAGES);
    let mut partials = vec![0.0f32; chunks * partial_len];
    if shape.out_pixels() > 0 {
        partials
            .par_chunks_mut(partial_len)
            .enumerate()
            .for_each(|(chunk, partial)| {
                let first = chunk * WEIGHT_GRAD_CHUNK_IMAGES;
                let images = first..(first + WEIGHT_GRAD_CHUNK_IMAGES).min(shape.batch);
                let (dw_partial, db_partial) = partial.split_at_mut(weight_len);
                for image in images {
                    weight_grad_image(shape, dy, x, image, dw_partial, db_partial);
                }
            });
    }
    dw.fill(0.0);
    db.fill(0.0);
    for partial in partials.chunks(partial_len) {
        let (dw_partial, db_partial) = partial.split_at(weight_len);
        dw.iter_mut()
            .zip(dw_partial)
            .for_each(|(total, part)| *total += part);
        db.iter_mut()
            .zip(db_partial)
            .for_each(|(total, part)| *total += part);
    }
}

/// Adds image `image`'s contribution to `dw` (and to `db` unless empty).
fn weight_grad_image(
    shape: &ConvShape,
    dy: &[f32],
    x: &[f32],
    image: usize,
    dw: &mut [f32],
    db: &mut [f32],
) {
    let pixels = shape.out_pixels();
    let patch = shape.patch_len();
    let dy_image = &dy[image * shape.out_image_len()..][..shape.out_image_len()];
    let x_image = &x[image * shape.in_image_len()..][..shape.in_image_len()];
    for (total, row) in db.iter_mut().zip(dy_image.chunks(pixels)) {
        *total += row.iter().sum::<f32>();
    }
    // dw (Cout x CinKK) += dy (Cout x HoWo) · colᵀ (HoWo x CinKK)
    let dy_operand = GemmOperand::row_major(dy_image, pixels);
    if shape.is_pointwise() {
        let col_t = GemmOperand::transposed(x_image, pixels);
        gemm_f32(
            shape.out_channels,
            patch,
            pixels,
            dw,
            patch,
            true,
            dy_operand,
            col_t,
        );
        return;
    }
    with_scratch(patch * pixels, |col| {
        im2col(shape, x_image, col);
        let col_t = GemmOperand::transposed(col, pixels);
        gemm_f32(
            shape.out_channels,
            patch,
            pixels,
            dw,
            patch,
            true,
            dy_operand,
            col_t,
        );
    });
}

/// Fills `col (CinKK x HoWo)` with the patches of one image `x (Cin x H x W)`; taps that fall
/// in the padding are 0.
fn im2col(shape: &ConvShape, x: &[f32], col: &mut [f32]) {
    let (out_height, out_width) = (shape.out_height(), shape.out_width());
    let plane = shape.in_height * shape.in_width;
    let mut rows = col.chunks_mut(out_height * out_width);
    for channel in x.chunks(plane).take(shape.in_channels) {
        for kh in 0..shape.kernel_height {
            for kw in 0..shape.kernel_width {
                let Some(row) = rows.next() else { return };
                for (oh, out_row) in row.chunks_mut(out_width).enumerate() {
                    match input_row(shape, oh, kh) {
                        Some(ih) => {
                            let line = &channel[ih * shape.in_width..][..shape.in_width];
                            gather_line(shape, kw, line, out_row);
                        }
                        None => out_row.fill(0.0),
                    }
                }
            }
        }
    }
}

/// Adds `dcol (CinKK x HoWo)` back onto the image gradient `dx (Cin x H x W)`.
fn col2im_add(shape: &ConvShape, dcol: &[f32], dx: &mut [f32]) {
    let (out_height, out_width) = (shape.out_height(), shape.out_width());
    let plane = shape.in_height * shape.in_width;
    let mut rows = dcol.chunks(out_height * out_width);
    for channel in dx.chunks_mut(plane).take(shape.in_channels) {
        for kh in 0..shape.kernel_height {
            for kw in 0..shape.kernel_width {
                let Some(row) = rows.next() else { return };
                for (oh, out_row) in row.chunks(out_width).enumerate() {
                    if let Some(ih) = input_row(shape, oh, kh) {
                        let line = &mut channel[ih * shape.in_width..][..shape.in_width];
                        scatter_line(shape, kw, out_row, line);
                    }
                }
            }
        }
    }
}

/// The input row read by output row `oh` at kernel row `kh`, or `None` in the padding.
fn input_row(shape: &ConvShape, oh: usize, kh: usize) -> Option<usize> {
    (oh * shape.stride.0 + kh)
        .checked_sub(shape.padding.0)
        .filter(|&ih| ih < shape.in_height)
}

/// The range of output columns whose input column `ow·s + kw - p` lies inside `[0, W)`.
fn valid_columns(shape: &ConvShape, kw: usize, out_width: usize) -> (usize, usize) {
    let (stride, pad) = (shape.stride.1, shape.padding.1);
    // ow·s + kw >= pad  <=>  ow >= ceil((pad - kw) / s)
    let first = pad.saturating_sub(kw).div_ceil(stride);
    // ow·s + kw - pad < W  <=>  ow < (W + pad - kw) / s rounded up
    let last = (shape.in_width + pad).saturating_sub(kw).div_ceil(stride);
    (
        first.min(out_width),
        last.min(out_width).max(first.min(out_width)),
    )
}

/// `out[ow] = line[ow·s + kw - p]`, 0 outside the line.
fn gather_line(shape: &ConvShape, kw: usize, line: &[f32], out: &mut [f32]) {
    let (first, last) = valid_columns(shape, kw, out.len());
    out[..first].fill(0.0);
    out[last..].fill(0.0);
    if first == last {
        return;
    }
    let start = first * shape.stride.1 + kw - shape.padding.1;
    if shape.stride.1 == 1 {
        out[first..last].copy_from_slice(&line[start..start + (last - first)]);
    } else {
        let source = line[start..].iter().step_by(shape.stride.1);
        out[first..last]
            .iter_mut()
            .zip(source)
            .for_each(|(target, value)| *target = *value);
    }
}

/// `line[ow·s + kw - p] += out[ow]` for the columns inside the line.
fn scatter_line(shape: &ConvShape, kw: usize, out: &[f32], line: &mut [f32]) {
    let (first, last) = valid_columns(shape, kw, out.len());
    if first == last {
        return;
    }
    let start = first * shape.stride.1 + kw - shape.padding.1;
    let targets = line[start..].iter_mut().step_by(shape.stride.1);
    targets
        .zip(&out[first..last])
        .for_each(|(target, value)| *target += value);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator of test values in [-1, 1).
    struct Values(u64);

    impl Values {
        fn next(&mut self) -> f32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }

        fn vec(&mut self, len: usize) -> Vec<f32> {
            (0..len).map(|_| self.next()).collect()
        }
    }

    /// Calls `visit(n, co, ci, oh, ow, kh, kw, ih, iw)` for every tap inside the input.
    fn for_each_tap(shape: &ConvShape, mut visit: impl FnMut([usize; 9])) {
        for n in 0..shape.batch {
            for co in 0..shape.out_channels {
                for ci in 0..shape.in_channels {
                    for oh in 0..shape.out_height() {
                        for ow in 0..shape.out_width() {
                            for kh in 0..shape.kernel_height {
                                for kw in 0..shape.kernel_width {
                                    let ih =
                                        (oh * shape.stride.0 + kh).checked_sub(shape.padding.0);
                                    let iw =
                                        (ow * shape.stride.1 + kw).checked_sub(shape.padding.1);
                                    if let (Some(ih), Some(iw)) = (ih, iw) {
                                        if ih < shape.in_height && iw < shape.in_width {
                                            visit([n, co, ci, oh, ow, kh, kw, ih, iw]);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    struct Index(ConvShape);

    impl Index {
        fn x(&self, n: usize, c: usize, h: usize, w: usize) -> usize {
            let s = &self.0;
            ((n * s.in_channels + c) * s.in_height + h) * s.in_width + w
        }
        fn y(&self, n: usize, c: usize, h: usize, w: usize) -> usize {
            let s = &self.0;
            ((n * s.out_channels + c) * s.out_height() + h) * s.out_width() + w
        }
        fn w(&self, co: usize, ci: usize, kh: usize, kw: usize) -> usize {
            let s = &self.0;
            ((co * s.in_channels + ci) * s.kernel_height + kh) * s.kernel_width + kw
        }
    }

    /// Float64 references of the three convolutions: (sum, sum of |terms|) per element.
    fn references(shape: &ConvShape, x: &[f32], w: &[f32], dy: &[f32]) -> [Vec<(f64, f64)>; 3] {
        let at = Index(*shape);
        let mut y = vec![(0.0, 0.0); dy.len()];
        let mut dx = vec![(0.0, 0.0); x.len()];
        let mut dw = vec![(0.0, 0.0); w.len()];
        for_each_tap(shape, |[n, co, ci, oh, ow, kh, kw, ih, iw]| {
            let (xi, yi, wi) = (
                at.x(n, ci, ih, iw),
                at.y(n, co, oh, ow),
                at.w(co, ci, kh, kw),
            );
            let add = |target: &mut (f64, f64), a: f32, b: f32| {
                let term = f64::from(a) * f64::from(b);
                target.0 += term;
                target.1 += term.abs();
            };
            add(&mut y[yi], x[xi], w[wi]);
            add(&mut dx[xi], dy[yi], w[wi]);
            add(&mut dw[wi], dy[yi], x[xi]);
        });
        [y, dx, dw]
    }

    fn assert_close(what: &str, shape: &ConvShape, got: &[f32], expected: &[(f64, f64)]) {
        assert_eq!(got.len(), expected.len(), "{what} length for {shape:?}");
        for (index, (&value, &(sum, magnitude))) in got.iter().zip(expected).enumerate() {
            let error = (f64::from(value) - sum).abs();
            assert!(
                error <= 1e-5 * magnitude + 1e-6,
                "{what}[{index}] = {value}, expected {sum} (shape {shape:?})"
            );
        }
    }

    fn shape(
        batch: usize,
        channels: (usize, usize),
        size: (usize, usize),
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> ConvShape {
        ConvShape {
            batch,
            in_channels: channels.0,
            in_height: size.0,
            in_width: size.1,
            out_channels: channels.1,
            kernel_height: kernel.0,
            kernel_width: kernel.1,
            stride,
            padding,
        }
    }

    fn shapes() -> Vec<ConvShape> {
        vec![
            shape(2, (3, 4), (8, 8), (3, 3), (1, 1), (1, 1)),
            shape(1, (5, 3), (7, 9), (3, 3), (2, 2), (1, 1)),
            shape(3, (4, 6), (6, 5), (1, 1), (1, 1), (0, 0)),
            shape(2, (4, 6), (7, 7), (1, 1), (2, 2), (0, 0)),
            shape(1, (2, 3), (9, 6), (5, 5), (1, 1), (2, 2)),
            shape(2, (3, 2), (5, 7), (2, 3), (1, 2), (0, 1)),
            shape(1, (2, 2), (4, 4), (1, 1), (1, 1), (1, 1)),
            shape(10, (3, 5), (5, 5), (3, 3), (1, 1), (0, 0)),
            shape(2, (3, 4), (6, 6), (3, 3), (3, 3), (2, 2)),
            shape(1, (1, 1), (3, 3), (3, 3), (1, 1), (0, 0)),
        ]
    }

    #[test]
    fn convolutions_match_float64_loops_on_odd_shapes() {
        let mut values = Values(7);
        for shape in shapes() {
            let x = values.vec(shape.batch * shape.in_image_len());
            let w = values.vec(shape.out_channels * shape.patch_len());
            let dy = values.vec(shape.batch * shape.out_image_len());
            let bias = values.vec(shape.out_channels);
            let [y_ref, dx_ref, dw_ref] = references(&shape, &x, &w, &dy);

            let mut y = vec![f32::NAN; dy.len()];
            forward(&shape, &x, &w, &[], &mut y);
            assert_close("y", &shape, &y, &y_ref);
            forward(&shape, &x, &w, &bias, &mut y);
            let pixels = shape.out_pixels();
            let y_biased: Vec<(f64, f64)> = y_ref
                .iter()
                .enumerate()
                .map(|(i, &(sum, mag))| {
                    let b = f64::from(bias[(i / pixels) % shape.out_channels]);
                    (sum + b, mag + b.abs())
                })
                .collect();
            assert_close("y+b", &shape, &y, &y_biased);

            let mut dx = vec![f32::NAN; x.len()];
            input_grad(&shape, &dy, &w, &mut dx);
            assert_close("dx", &shape, &dx, &dx_ref);

            let mut dw = vec![f32::NAN; w.len()];
            let mut db = vec![f32::NAN; shape.out_channels];
            weight_grad(&shape, &dy, &x, &mut dw, &mut db);
            assert_close("dw", &shape, &dw, &dw_ref);
            let db_ref: Vec<(f64, f64)> = (0..shape.out_channels)
                .map(|co| {
                    let terms = (0..shape.batch).flat_map(|n| {
                        dy[(n * shape.out_channels + co) * pixels..][..pixels].iter()
                    });
                    terms.fold((0.0, 0.0), |(s, m), &v| {
                        (s + f64::from(v), m + f64::from(v).abs())
                    })
                })
                .collect();
            assert_close("db", &shape, &db, &db_ref);
        }
    }

    #[test]
    fn convolutions_are_bitwise_reproducible_on_any_pool() {
        let shape = shape(19, (6, 8), (9, 9), (3, 3), (1, 1), (1, 1));
        let mut values = Values(11);
        let x = values.vec(shape.batch * shape.in_image_len());
        let w = values.vec(shape.out_channels * shape.patch_len());
        let dy = values.vec(shape.batch * shape.out_image_len());
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            pool.install(|| {
                let mut y = vec![0.0; dy.len()];
                let mut dx = vec![0.0; x.len()];
                let mut dw = vec![0.0; w.len()];
                let mut db = vec![0.0; shape.out_channels];
                forward(&shape, &x, &w, &[], &mut y);
                input_grad(&shape, &dy, &w, &mut dx);
                weight_grad(&shape, &dy, &x, &mut dw, &mut db);
                [y, dx, dw, db].map(|values| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
            })
        };
        let single = run(1);
        assert_eq!(run(2), single);
        assert_eq!(run(3), single);
        assert_eq!(run(2), single);
    }

    #[test]
    fn output_extent_follows_the_floor_formula() {
        assert_eq!(out_extent(32, 3, 1, 1), 32);
        assert_eq!(out_extent(32, 3, 2, 1), 16);
        assert_eq!(out_extent(7, 3, 2, 0), 3);
        assert_eq!(out_extent(2, 5, 1, 1), 0);
    }
}
