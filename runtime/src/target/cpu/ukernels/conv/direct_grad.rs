//! Direct weight gradient of 3x3 stride-1 convolutions on AVX-512, vectorised over output
//! channels: `dw_t[(ci, kh, kw)][co] += Σ_images Σ_(oh, ow) padded[ci][oh + kh][ow + kw] ·
//! dy[co][oh][ow]`, with `dy` transposed to `[pixel][co]` so that 16 output channels are one
//! vector and each input value is one broadcast.
//!
//! A register tile is one input channel's 9 taps by one or two vectors of output channels
//! (9 or 18 accumulators), summed over every pixel of every image of the chunk before it is
//! added to `dw_t` once: no horizontal sums, no wasted columns, and a fixed summation order.
//!
//! Invariant: every read stays inside the padded planes (output `(oh, ow)` reads rows
//! `oh..oh + 3` and columns `ow..ow + 3` of a `(Ho + 2) x (Wo + 2)` padded plane).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{__m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{_mm512_setzero_ps, _mm512_storeu_ps};

use super::direct::{self, Geometry};
use super::ConvShape;
use crate::target::cpu::ukernels::with_scratch;

/// `f32` lanes of a vector.
const LANES: usize = 16;
/// Taps of a 3x3 kernel.
const TAPS: usize = 9;

/// Fewest output channels for which this method is used: with one vector of channels per
/// tile (16 or fewer), each multiply-add needs its own load and the tile runs slower than
/// the other methods (measured on CIFAR shapes).
const MIN_OUT_CHANNELS: usize = 2 * LANES;

/// True when this method computes the weight gradient of `shape`.
pub(super) fn applies(shape: &ConvShape) -> bool {
    let three_by_three = shape.kernel_height == 3 && shape.kernel_width == 3;
    let wide_enough = shape.out_channels >= MIN_OUT_CHANNELS;
    three_by_three && wide_enough && shape.stride == (1, 1) && direct::available()
}

/// True when the kernel itself can run `shape`, whatever its channel count.
pub(super) fn runs(shape: &ConvShape) -> bool {
    let three_by_three = shape.kernel_height == 3 && shape.kernel_width == 3;
    three_by_three && shape.stride == (1, 1) && direct::available()
}

/// The weight gradient of a chunk of images, added to `dw_t` (`Cin·9 x Cout`, taps in
/// `(ci, kh, kw)` order).
///
/// # Panics
///
/// When [`runs`] is false for `shape` (callers check [`applies`]).
pub(super) fn weight_grad_chunk(
    shape: &ConvShape,
    dy: &[f32],
    x: &[f32],
    images: std::ops::Range<usize>,
    dw_t: &mut [f32],
) {
    assert!(
        runs(shape),
        "direct weight gradient needs a 3x3 stride-1 kernel and AVX-512"
    );
    let vectors = if shape.out_channels <= LANES { 1 } else { 2 };
    let layout = Layout::new(shape, images.len(), vectors);
    with_scratch(layout.padded_len() + layout.transposed_len(), |buffer| {
        let (padded, transposed) = buffer.split_at_mut(layout.padded_len());
        transposed.fill(0.0);
        for (slot, image) in images.enumerate() {
            let x_image = &x[image * shape.in_image_len()..][..shape.in_image_len()];
            let dy_image = &dy[image * shape.out_image_len()..][..shape.out_image_len()];
            let image_padded = &mut padded[slot * layout.padded_image..][..layout.padded_image];
            direct::pad(shape, &layout.geometry, x_image, image_padded);
            let image_transposed =
                &mut transposed[slot * layout.transposed_image..][..layout.transposed_image];
            transpose(shape, layout.channels, dy_image, image_transposed);
        }
        for block in 0..layout.channels / (vectors * LANES) {
            for ci in 0..shape.in_channels {
                let sums = tile(shape, &layout, padded, transposed, block, ci);
                add_sums(shape, &layout, &sums, block, ci, dw_t);
            }
        }
    });
}

/// Where the chunk's padded inputs and transposed gradients lie in the scratch buffer.
struct Layout {
    geometry: Geometry,
    images: usize,
    /// Output-channel vectors per tile (1 or 2).
    vectors: usize,
    /// Output channels rounded up to whole tiles; the extra ones are zero in `dy`.
    channels: usize,
    /// Floats of one image's padded input.
    padded_image: usize,
    /// Floats of one image's transposed gradient: `Ho·Wo·channels`.
    transposed_image: usize,
}

impl Layout {
    fn new(shape: &ConvShape, images: usize, vectors: usize) -> Self {
        let geometry = Geometry::new(shape);
        let channels = shape.out_channels.next_multiple_of(vectors * LANES);
        let padded_image = shape.in_channels * geometry.plane_stride;
        let transposed_image = shape.out_pixels() * channels;
        Layout {
            geometry,
            images,
            vectors,
            channels,
            padded_image,
            transposed_image,
        }
    }

    fn padded_len(&self) -> usize {
        self.images * self.padded_image
    }

    fn transposed_len(&self) -> usize {
        self.images * self.transposed_image
    }
}

/// `transposed[p·channels + co] = dy[co][p]` (the padding channels stay as they are, 0).
fn transpose(shape: &ConvShape, channels: usize, dy: &[f32], transposed: &mut [f32]) {
    for (co, row) in dy.chunks_exact(shape.out_pixels()).enumerate() {
        for (pixel, &value) in row.iter().enumerate() {
            transposed[pixel * channels + co] = value;
        }
    }
}

/// The 9 x (16·vectors) sums of one tile, row-major `[tap][channel of the block]`.
fn tile(
    shape: &ConvShape,
    layout: &Layout,
    padded: &[f32],
    transposed: &[f32],
    block: usize,
    ci: usize,
) -> [f32; 2 * LANES * TAPS] {
    let mut sums = [0.0f32; 2 * LANES * TAPS];
    let out_height = shape.out_height();
    let plane_end = (out_height + 2) * layout.geometry.padded_width;
    assert!(
        plane_end <= layout.geometry.plane_stride,
        "padded plane too short"
    );
    assert!(padded.len() >= layout.padded_len() && transposed.len() >= layout.transposed_len());
    assert!(
        (block + 1) * layout.vectors * LANES <= layout.channels,
        "channel block"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F is available (checked by `applies`); the asserts above bound every
    // read: rows `oh..oh + 3` of each plane, and `vectors` vectors of each transposed row.
    unsafe {
        if layout.vectors == 1 {
            tile_sums::<1>(shape, layout, padded, transposed, block, ci, &mut sums);
        } else {
            tile_sums::<2>(shape, layout, padded, transposed, block, ci, &mut sums);
        }
    }
    sums
}

/// # Safety
///
/// AVX-512F must be available and the buffers as large as [`tile`] asserts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[expect(
    clippy::needless_range_loop,
    reason = "`v` and `tap` index the gradient vectors and the accumulators at once"
)]
unsafe fn tile_sums<const VECTORS: usize>(
    shape: &ConvShape,
    layout: &Layout,
    padded: &[f32],
    transposed: &[f32],
    block: usize,
    ci: usize,
    out: &mut [f32; 2 * LANES * TAPS],
) {
    let (out_height, out_width) = (shape.out_height(), shape.out_width());
    let width = layout.geometry.padded_width;
    let channels = layout.channels;
    let mut sums: [[__m512; TAPS]; VECTORS] = [[_mm512_setzero_ps(); TAPS]; VECTORS];
    for image in 0..layout.images {
        let plane = padded
            .as_ptr()
            .wrapping_add(image * layout.padded_image + ci * layout.geometry.plane_stride);
        let gradients = transposed
            .as_ptr()
            .wrapping_add(image * layout.transposed_image + block * VECTORS * LANES);
        for oh in 0..out_height {
            let rows: [*const f32; 3] =
                std::array::from_fn(|kh| plane.wrapping_add((oh + kh) * width));
            let line = gradients.wrapping_add(oh * out_width * channels);
            for ow in 0..out_width {
                let at = line.wrapping_add(ow * channels);
                // SAFETY (this loop): `tile` bounds the transposed rows and the padded planes.
                let d: [__m512; VECTORS] =
                    std::array::from_fn(|v| unsafe { _mm512_loadu_ps(at.add(v * LANES)) });
                for kh in 0..3 {
                    for kw in 0..3 {
                        let input = _mm512_set1_ps(unsafe { *rows[kh].add(ow + kw) });
                        for v in 0..VECTORS {
                            let tap = kh * 3 + kw;
                            sums[v][tap] = _mm512_fmadd_ps(d[v], input, sums[v][tap]);
                        }
                    }
                }
            }
        }
    }
    for tap in 0..TAPS {
        for v in 0..VECTORS {
            let target = out.as_mut_ptr().wrapping_add(tap * 2 * LANES + v * LANES);
            // SAFETY: `out` holds 9 rows of 32 floats.
            unsafe { _mm512_storeu_ps(target, sums[v][tap]) };
        }
    }
}

/// `dw_t[(ci·9 + tap)][co] += sums[tap][co - first]` for the block's real channels.
fn add_sums(
    shape: &ConvShape,
    layout: &Layout,
    sums: &[f32; 2 * LANES * TAPS],
    block: usize,
    ci: usize,
    dw_t: &mut [f32],
) {
    let cout = shape.out_channels;
    let first = block * layout.vectors * LANES;
    let count = (layout.vectors * LANES).min(cout - first);
    for (tap, row) in sums.chunks_exact(2 * LANES).enumerate() {
        let target = &mut dw_t[(ci * TAPS + tap) * cout + first..][..count];
        target
            .iter_mut()
            .zip(row)
            .for_each(|(total, value)| *total += value);
    }
}
