//! 2-D convolution (NCHW, groups = 1) on host slices: forward, input gradient and weight
//! gradient, each computed image by image, by AVX-512 register tiles or by GEMMs of the `gemm`
//! crate.
//!
//! Four methods, chosen by shape ([`Method`]):
//! - pointwise (1x1, stride 1, no padding): the image itself is the GEMM operand;
//! - direct (stride-1 convolutions with outputs at least 16 wide on AVX-512 CPUs, see
//!   `direct`; for the weight gradient, 3x3 kernels with at least 32 output channels, see
//!   `direct_grad`, or outputs at least 32 wide): register tiles over the zero-padded image,
//!   no GEMM;
//! - shifted rows (stride-1 convolutions with wide enough outputs, see `shifted`): `Kw`
//!   shifted copies of the zero-padded image, and one GEMM per kernel row that reads them at
//!   a row offset;
//! - im2col (the others, see `im2col`): the full patch matrix, one GEMM.
//!
//! The input gradient of a stride-1 convolution is the forward convolution of `dy` with the
//! flipped, transposed kernel; otherwise it is `Wᵀ·dy` scattered back by col2im.
//!
//! Invariant: every result is bitwise reproducible. Work is cut into fixed pieces (one image,
//! or a fixed chunk of images for the weight gradient) that do not depend on the number of
//! threads; a reduction across pieces is summed in piece order after all pieces finish. The
//! per-image buffers (a few hundred KB for CIFAR networks) stay in the core's L2 cache, which
//! is why no batch-wide patch matrix is ever built.

mod direct;
mod direct_grad;
mod im2col;
mod shifted;

use rayon::prelude::*;

use super::{gemm_f32, GemmOperand, WEIGHT_GRAD_CHUNK_IMAGES};

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

    pub(super) fn in_image_len(&self) -> usize {
        self.in_channels * self.in_height * self.in_width
    }

    pub(super) fn out_image_len(&self) -> usize {
        self.out_channels * self.out_pixels()
    }

    /// Floating-point operations of the forward pass (also of each gradient): `2·N·Cout·Cin·
    /// Kh·Kw·Ho·Wo`.
    pub fn flops(&self) -> f64 {
        2.0 * (self.batch * self.out_channels * self.patch_len() * self.out_pixels()) as f64
    }

    /// True when im2col is the identity (1x1 kernel, stride 1, no padding).
    pub(super) fn is_pointwise(&self) -> bool {
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

/// How a convolution is computed; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Pointwise,
    Direct,
    Shifted,
    Im2col,
}

/// Below this output width the shifted method's extra columns (`Wp - Wo` of every `Wp`) cost
/// more than the im2col copy it saves (measured on CIFAR shapes: 8x8 loses, 16x16 wins).
const SHIFTED_MIN_OUT_WIDTH: usize = 16;

/// Below this output width the direct weight gradient's per-image overhead (padding, widening,
/// reloading its accumulators) outweighs its faster inner loop (measured: 32x32 wins, 16x16
/// loses to the shifted method).
const DIRECT_GRAD_MIN_OUT_WIDTH: usize = 32;

/// Below this operand depth (`Cin·Kw`) the shifted weight gradient's GEMMs (`Cin·Kw x Cout`
/// results) are too small to run fast, and one im2col GEMM (`Cin·Kh·Kw x Cout`) wins.
const SHIFTED_MIN_DEPTH: usize = 96;

impl Method {
    /// The method of the forward pass (and of a stride-1 input gradient).
    fn for_forward(shape: &ConvShape) -> Self {
        let wide = shape.out_width() >= SHIFTED_MIN_OUT_WIDTH;
        if shape.is_pointwise() {
            Method::Pointwise
        } else if shape.stride == (1, 1) && wide && direct::available() {
            Method::Direct
        } else if shape.stride == (1, 1) && wide {
            Method::Shifted
        } else {
            Method::Im2col
        }
    }

    /// The method of the weight gradient.
    fn for_weight_grad(shape: &ConvShape) -> Self {
        let depth = shape.in_channels * shape.kernel_width;
        let wide = shape.out_width() >= SHIFTED_MIN_OUT_WIDTH;
        let direct_wide = shape.out_width() >= DIRECT_GRAD_MIN_OUT_WIDTH;
        if shape.is_pointwise() {
            Method::Pointwise
        } else if direct_grad::applies(shape)
            || (direct_wide && shape.stride == (1, 1) && direct::available())
        {
            Method::Direct
        } else if shape.stride == (1, 1) && wide && depth >= SHIFTED_MIN_DEPTH {
            Method::Shifted
        } else {
            Method::Im2col
        }
    }

    /// Row of tap `(ci, kh, kw)` in the transposed weight gradient `(taps x Cout)` the method
    /// accumulates.
    fn tap_row(self, shape: &ConvShape, (ci, kh, kw): (usize, usize, usize)) -> usize {
        let (kernel_height, kernel_width) = (shape.kernel_height, shape.kernel_width);
        match self {
            Method::Pointwise | Method::Direct | Method::Im2col => {
                (ci * kernel_height + kh) * kernel_width + kw
            }
            Method::Shifted => (kh * shape.in_channels + ci) * kernel_width + kw,
        }
    }
}

/// `y = conv(x, w) + b`: `x [N,Cin,H,W]`, `w [Cout,Cin,Kh,Kw]`, `bias` empty or `[Cout]`,
/// `y [N,Cout,Ho,Wo]` (overwritten).
pub fn forward(shape: &ConvShape, x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32]) {
    if shape.out_pixels() == 0 || shape.batch == 0 {
        return;
    }
    let method = Method::for_forward(shape);
    let rows = match method {
        Method::Shifted => shifted::weight_rows(shape, w),
        Method::Direct => direct::pack_weights(shape, w),
        Method::Pointwise | Method::Im2col => Vec::new(),
    };
    let in_len = shape.in_image_len();
    let out_len = shape.out_image_len();
    y.par_chunks_mut(out_len)
        .enumerate()
        .for_each(|(image, y_image)| {
            let x_image = &x[image * in_len..(image + 1) * in_len];
            match method {
                Method::Pointwise => pointwise_forward(shape, x_image, w, bias, y_image),
                Method::Direct => direct::forward_image(shape, x_image, &rows, bias, y_image),
                Method::Shifted => shifted::forward_image(shape, x_image, &rows, bias, y_image),
                Method::Im2col => im2col::forward_image(shape, x_image, w, bias, y_image),
            }
        });
}

/// One image of a pointwise convolution: `y (Cout x HW) = W (Cout x Cin) · x (Cin x HW) + b`.
fn pointwise_forward(shape: &ConvShape, x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32]) {
    let pixels = shape.out_pixels();
    let has_bias = fill_bias(bias, pixels, y);
    let weight = GemmOperand::row_major(w, shape.in_channels);
    let image = GemmOperand::row_major(x, pixels);
    gemm_f32(
        shape.out_channels,
        pixels,
        shape.in_channels,
        y,
        pixels,
        has_bias,
        weight,
        image,
    );
}

/// Sets each channel of `y` to its bias; false (and `y` untouched) when there is no bias.
fn fill_bias(bias: &[f32], pixels: usize, y: &mut [f32]) -> bool {
    for (row, &value) in y.chunks_mut(pixels).zip(bias) {
        row.fill(value);
    }
    !bias.is_empty()
}

/// `dx = conv_input_grad(dy, w)`: `dy [N,Cout,Ho,Wo]`, `w [Cout,Cin,Kh,Kw]`, `dx [N,Cin,H,W]`
/// (overwritten).
///
/// With stride 1 and padding below the kernel size this is a forward convolution of `dy` with
/// the flipped, transposed kernel and padding `K-1-p`; otherwise each image computes
/// `dcol = Wᵀ·dy` and scatters it back with col2im.
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
            im2col::input_grad_image(shape, dy_image, w, dx_image);
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

/// `dw = conv_weight_grad(dy, x)` summed over the batch, and `db = Σ dy` over batch and
/// pixels when `db` is not empty: `dy [N,Cout,Ho,Wo]`, `x [N,Cin,H,W]`, `dw [Cout,Cin,Kh,Kw]`
/// and `db [Cout]` (both overwritten).
///
/// Images are cut into chunks of [`WEIGHT_GRAD_CHUNK_IMAGES`]; each chunk accumulates its own
/// partial sum image by image, and the partials are added in chunk order. A partial holds the
/// transposed gradient `(taps x Cout)`, which lets the GEMM read the patch matrix as it is
/// laid out (about twice as fast as `dy · colᵀ` into `dw`).
pub fn weight_grad(shape: &ConvShape, dy: &[f32], x: &[f32], dw: &mut [f32], db: &mut [f32]) {
    let method = Method::for_weight_grad(shape);
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
                let (dw_t, db_partial) = partial.split_at_mut(weight_len);
                let images = first..(first + WEIGHT_GRAD_CHUNK_IMAGES).min(shape.batch);
                add_bias_grad(shape, dy, images.clone(), db_partial);
                if method == Method::Direct {
                    if direct_grad::applies(shape) {
                        direct_grad::weight_grad_chunk(shape, dy, x, images, dw_t);
                    } else {
                        direct::weight_grad_chunk(shape, dy, x, images, dw_t);
                    }
                    return;
                }
                for image in images {
                    weight_grad_image(shape, method, dy, x, image, dw_t);
                }
            });
    }
    dw.fill(0.0);
    db.fill(0.0);
    for partial in partials.chunks(partial_len) {
        let (dw_t, db_partial) = partial.split_at(weight_len);
        add_transposed(shape, method, dw_t, dw);
        db.iter_mut()
            .zip(db_partial)
            .for_each(|(total, part)| *total += part);
    }
}

/// Adds `Σ dy` over the pixels of `images` to `db` (nothing when `db` is empty).
fn add_bias_grad(shape: &ConvShape, dy: &[f32], images: std::ops::Range<usize>, db: &mut [f32]) {
    for image in images {
        let dy_image = &dy[image * shape.out_image_len()..][..shape.out_image_len()];
        for (total, row) in db.iter_mut().zip(dy_image.chunks(shape.out_pixels())) {
            *total += lane_sum(row);
        }
    }
}

/// Adds image `image`'s contribution to the transposed partial `dw_t`.
fn weight_grad_image(
    shape: &ConvShape,
    method: Method,
    dy: &[f32],
    x: &[f32],
    image: usize,
    dw_t: &mut [f32],
) {
    let pixels = shape.out_pixels();
    let dy_image = &dy[image * shape.out_image_len()..][..shape.out_image_len()];
    let x_image = &x[image * shape.in_image_len()..][..shape.in_image_len()];
    match method {
        Method::Pointwise => {
            // dwᵀ (Cin x Cout) += x (Cin x HW) · dyᵀ (HW x Cout)
            let (cin, cout) = (shape.in_channels, shape.out_channels);
            let image = GemmOperand::row_major(x_image, pixels);
            let dy_t = GemmOperand::transposed(dy_image, pixels);
            gemm_f32(cin, cout, pixels, dw_t, cout, true, image, dy_t);
        }
        Method::Shifted => shifted::weight_grad_image(shape, dy_image, x_image, dw_t),
        Method::Direct | Method::Im2col => {
            im2col::weight_grad_image(shape, dy_image, x_image, dw_t)
        }
    }
}

/// The sum of `values` in 16 interleaved partial sums (lane `i` takes elements `i`, `i + 16`,
/// ...), added pairwise at the end: a fixed order, so reproducible, and one the compiler
/// vectorises (a plain left-to-right sum waits on one addition at a time).
fn lane_sum(values: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [0.0f32; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        lanes
            .iter_mut()
            .zip(chunk)
            .for_each(|(lane, value)| *lane += value);
    }
    lanes
        .iter_mut()
        .zip(chunks.remainder())
        .for_each(|(lane, value)| *lane += value);
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for index in 0..width {
            lanes[index] += lanes[index + width];
        }
    }
    lanes[0]
}

/// `dw[co][ci][kh][kw] += dw_t[tap_row(ci, kh, kw)][co]`.
fn add_transposed(shape: &ConvShape, method: Method, dw_t: &[f32], dw: &mut [f32]) {
    let cout = shape.out_channels;
    let mut targets = dw.iter_mut();
    for co in 0..cout {
        for ci in 0..shape.in_channels {
            for kh in 0..shape.kernel_height {
                for kw in 0..shape.kernel_width {
                    let row = method.tap_row(shape, (ci, kh, kw));
                    if let Some(target) = targets.next() {
                        *target += dw_t[row * cout + co];
                    }
                }
            }
        }
    }
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
            shape(10, (3, 7), (17, 18), (3, 3), (1, 1), (1, 1)),
            shape(2, (2, 5), (16, 20), (5, 5), (1, 1), (2, 2)),
            shape(1, (4, 4), (18, 18), (3, 3), (1, 1), (0, 0)),
        ]
    }

    /// Every stride-1 method on its own, whatever `Method::for_forward` would pick here.
    #[test]
    fn every_stride_one_method_matches_float64() {
        let mut values = Values(5);
        for shape in [
            shape(3, (3, 7), (17, 18), (3, 3), (1, 1), (1, 1)),
            shape(2, (5, 6), (16, 16), (5, 5), (1, 1), (2, 2)),
        ] {
            let x = values.vec(shape.batch * shape.in_image_len());
            let w = values.vec(shape.out_channels * shape.patch_len());
            let dy = values.vec(shape.batch * shape.out_image_len());
            let [y_ref, _, dw_ref] = references(&shape, &x, &w, &dy);
            let (in_len, out_len) = (shape.in_image_len(), shape.out_image_len());
            let forward_with = |method: Method| {
                let mut y = vec![f32::NAN; dy.len()];
                let rows = shifted::weight_rows(&shape, &w);
                let packed = direct::pack_weights(&shape, &w);
                for (image, y_image) in y.chunks_mut(out_len).enumerate() {
                    let x_image = &x[image * in_len..][..in_len];
                    match method {
                        Method::Direct => {
                            direct::forward_image(&shape, x_image, &packed, &[], y_image)
                        }
                        Method::Shifted => {
                            shifted::forward_image(&shape, x_image, &rows, &[], y_image)
                        }
                        _ => im2col::forward_image(&shape, x_image, &w, &[], y_image),
                    }
                }
                y
            };
            let weight_grad_with = |method: Method| {
                let mut dw_t = vec![0.0; w.len()];
                if method == Method::Direct {
                    direct::weight_grad_chunk(&shape, &dy, &x, 0..shape.batch, &mut dw_t);
                } else {
                    for image in 0..shape.batch {
                        weight_grad_image(&shape, method, &dy, &x, image, &mut dw_t);
                    }
                }
                let mut dw = vec![0.0; w.len()];
                add_transposed(&shape, method, &dw_t, &mut dw);
                dw
            };
            let mut methods = vec![Method::Shifted, Method::Im2col];
            if direct::available() {
                methods.push(Method::Direct);
            }
            for method in methods {
                assert_close(
                    &format!("{method:?} y"),
                    &shape,
                    &forward_with(method),
                    &y_ref,
                );
                assert_close(
                    &format!("{method:?} dw"),
                    &shape,
                    &weight_grad_with(method),
                    &dw_ref,
                );
            }
        }
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

    /// The channel-vectorised 3x3 weight gradient, on channel counts around its 16 and 32
    /// channel tiles.
    #[test]
    fn direct_three_by_three_weight_gradient_matches_float64() {
        let mut values = Values(9);
        for shape in [
            shape(3, (3, 7), (9, 11), (3, 3), (1, 1), (1, 1)),
            shape(2, (2, 20), (6, 5), (3, 3), (1, 1), (0, 0)),
            shape(2, (4, 33), (5, 7), (3, 3), (1, 1), (2, 2)),
            shape(1, (1, 16), (4, 4), (3, 3), (1, 1), (1, 1)),
        ] {
            if !direct_grad::runs(&shape) {
                return;
            }
            let x = values.vec(shape.batch * shape.in_image_len());
            let w = values.vec(shape.out_channels * shape.patch_len());
            let dy = values.vec(shape.batch * shape.out_image_len());
            let [_, _, dw_ref] = references(&shape, &x, &w, &dy);
            let mut dw_t = vec![0.0; w.len()];
            direct_grad::weight_grad_chunk(&shape, &dy, &x, 0..shape.batch, &mut dw_t);
            let mut dw = vec![0.0; w.len()];
            add_transposed(&shape, Method::Direct, &dw_t, &mut dw);
            assert_close("dw", &shape, &dw, &dw_ref);
        }
    }

    #[test]
    fn lane_sum_adds_every_element() {
        let values: Vec<f32> = (0..37).map(|index| index as f32).collect();
        assert_eq!(lane_sum(&values), (0..37).sum::<i32>() as f32);
        assert_eq!(lane_sum(&[]), 0.0);
        assert_eq!(lane_sum(&[2.5]), 2.5);
    }

    #[test]
    fn output_extent_follows_the_floor_formula() {
        assert_eq!(out_extent(32, 3, 1, 1), 32);
        assert_eq!(out_extent(32, 3, 2, 1), 16);
        assert_eq!(out_extent(7, 3, 2, 0), 3);
        assert_eq!(out_extent(2, 5, 1, 1), 0);
    }
}
