//! Direct stride-1 convolution on AVX-512: no patch matrix and no GEMM, a register tile of
//! 64 outputs x 6 output channels accumulated over every input channel and kernel tap.
//!
//! As in `shifted`, the image is zero-padded to `Hp x Wp` and outputs are computed on the
//! padded width: output `q = oh·Wp + ow` reads `padded[ci][q + kh·Wp + kw]`, so 16
//! consecutive outputs read 16 consecutive inputs for every tap, even across rows. The
//! `Wp - Wo` extra columns of each row (and the tail of the last tile) are computed and
//! discarded.
//!
//! Invariant: each output is one sum in a fixed order (input channel, then kernel row, then
//! kernel column), so results do not depend on threads. Every load stays inside the padded
//! buffer: each channel's plane is followed by enough slack for the last tile's reads.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{__m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{_mm512_setzero_ps, _mm512_storeu_ps};

use super::ConvShape;
use crate::target::cpu::ukernels::with_scratch;

/// `f32` lanes of a vector.
const LANES: usize = 16;
/// Vectors of outputs per register tile.
const VECTORS: usize = 4;
/// Outputs (consecutive `q`) per register tile.
const TILE: usize = LANES * VECTORS;
/// Output channels per register tile: 4 x 6 = 24 accumulators of the 32 vector registers.
const CHANNELS: usize = 6;

/// True when this CPU runs the direct kernels.
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Sizes of the padded input and of the wide output of one image.
pub(super) struct Geometry {
    /// `Wp = W + 2·pw`.
    pub(super) padded_width: usize,
    /// Outputs per channel on the padded width: `Ho·Wp`.
    wide: usize,
    /// Distance between padded channel planes: `Hp·Wp` plus slack for the last tile.
    pub(super) plane_stride: usize,
    /// Tiles per output channel.
    tiles: usize,
    /// Distance between wide output channels: `tiles · TILE`.
    wide_stride: usize,
    /// `kh·Wp + kw` for every tap, in `(kh, kw)` row-major order.
    offsets: Vec<usize>,
}

impl Geometry {
    pub(super) fn new(shape: &ConvShape) -> Self {
        let padded_width = shape.in_width + 2 * shape.padding.1;
        let padded_height = shape.in_height + 2 * shape.padding.0;
        let wide = shape.out_height() * padded_width;
        let tiles = wide.div_ceil(TILE);
        // The last tile reads up to `tiles·TILE - 1 + (Kh-1)·Wp + Kw - 1`, and
        // `wide + (Kh-1)·Wp = Hp·Wp`.
        let slack = tiles * TILE - wide + shape.kernel_width;
        let offsets = (0..shape.kernel_height)
            .flat_map(|kh| (0..shape.kernel_width).map(move |kw| kh * padded_width + kw))
            .collect();
        Geometry {
            padded_width,
            wide,
            plane_stride: (padded_height * padded_width + slack).next_multiple_of(LANES),
            tiles,
            wide_stride: tiles * TILE,
            offsets,
        }
    }
}

/// `w [Cout,Cin,Kh,Kw]` packed per block of [`CHANNELS`] output channels as
/// `[block][Cin][Kh][Kw][channel of the block]`; block `b` starts at `b·CHANNELS·Cin·Kh·Kw`.
pub(super) fn pack_weights(shape: &ConvShape, w: &[f32]) -> Vec<f32> {
    let taps = shape.patch_len();
    let mut packed = Vec::with_capacity(w.len());
    for first in (0..shape.out_channels).step_by(CHANNELS) {
        let count = CHANNELS.min(shape.out_channels - first);
        for tap in 0..taps {
            packed.extend((first..first + count).map(|co| w[co * taps + tap]));
        }
    }
    packed
}

/// One image: `y (Cout x Ho x Wo) = conv(x, w) + bias`, with `packed` from [`pack_weights`].
///
/// # Panics
///
/// When [`available`] is false (callers check it).
pub(super) fn forward_image(
    shape: &ConvShape,
    x: &[f32],
    packed: &[f32],
    bias: &[f32],
    y: &mut [f32],
) {
    let geometry = Geometry::new(shape);
    let padded_len = shape.in_channels * geometry.plane_stride;
    let wide_len = shape.out_channels * geometry.wide_stride;
    with_scratch(padded_len + wide_len, |buffer| {
        let (padded, wide) = buffer.split_at_mut(padded_len);
        pad(shape, &geometry, x, padded);
        let taps = shape.patch_len();
        for first in (0..shape.out_channels).step_by(CHANNELS) {
            let count = CHANNELS.min(shape.out_channels - first);
            let weights = &packed[first * taps..][..count * taps];
            let outputs = &mut wide[first * geometry.wide_stride..][..count * geometry.wide_stride];
            channel_block(shape, &geometry, padded, weights, count, outputs);
        }
        compact(shape, &geometry, wide, bias, y);
    });
}

/// Every tile of one block of `count` output channels.
fn channel_block(
    shape: &ConvShape,
    geometry: &Geometry,
    padded: &[f32],
    weights: &[f32],
    count: usize,
    outputs: &mut [f32],
) {
    assert!(available(), "direct convolution needs AVX-512");
    let cin = shape.in_channels;
    let last_read = (cin - 1) * geometry.plane_stride
        + (geometry.tiles * TILE - 1)
        + geometry.offsets.last().copied().unwrap_or(0);
    assert!(last_read < padded.len(), "padded input too short");
    assert!(
        weights.len() >= cin * geometry.offsets.len() * count,
        "weights too short"
    );
    assert!(
        outputs.len() >= count * geometry.wide_stride,
        "outputs too short"
    );
    #[cfg(target_arch = "x86_64")]
    for tile in 0..geometry.tiles {
        let job = Tile {
            padded,
            geometry,
            cin,
            weights,
            outputs: &mut *outputs,
            first: tile * TILE,
        };
        // SAFETY: AVX-512F is available (asserted), and the asserts above bound every load
        // and store the tile makes.
        unsafe {
            match count {
                1 => job.run::<1>(),
                2 => job.run::<2>(),
                3 => job.run::<3>(),
                4 => job.run::<4>(),
                5 => job.run::<5>(),
                _ => job.run::<CHANNELS>(),
            }
        }
    }
}

/// One register tile: outputs `first..first + TILE` of `CO` output channels.
struct Tile<'a> {
    padded: &'a [f32],
    geometry: &'a Geometry,
    cin: usize,
    weights: &'a [f32],
    outputs: &'a mut [f32],
    first: usize,
}

#[cfg(target_arch = "x86_64")]
impl Tile<'_> {
    /// # Safety
    ///
    /// AVX-512F must be available, and the buffers as long as `channel_block` asserts.
    #[target_feature(enable = "avx512f")]
    #[expect(
        clippy::needless_range_loop,
        reason = "`co` indexes the weights and a column of the accumulators at once"
    )]
    unsafe fn run<const CO: usize>(self) {
        let geometry = self.geometry;
        let taps = geometry.offsets.len();
        let mut sums: [[__m512; CO]; VECTORS] = [[_mm512_setzero_ps(); CO]; VECTORS];
        let padded = self.padded.as_ptr();
        let weights = self.weights.as_ptr();
        for ci in 0..self.cin {
            let channel = padded.wrapping_add(ci * geometry.plane_stride + self.first);
            for (tap, &offset) in geometry.offsets.iter().enumerate() {
                let source = channel.wrapping_add(offset);
                // SAFETY: `channel_block` bounds every read of the padded input.
                let inputs: [__m512; VECTORS] = std::array::from_fn(|vector| unsafe {
                    _mm512_loadu_ps(source.add(vector * LANES))
                });
                let tap_weights = weights.wrapping_add((ci * taps + tap) * CO);
                for co in 0..CO {
                    // SAFETY: `channel_block` bounds the weights: `Cin·taps·CO` of them.
                    let weight = _mm512_set1_ps(unsafe { *tap_weights.add(co) });
                    for vector in 0..VECTORS {
                        sums[vector][co] =
                            _mm512_fmadd_ps(inputs[vector], weight, sums[vector][co]);
                    }
                }
            }
        }
        let outputs = self.outputs.as_mut_ptr();
        for co in 0..CO {
            for (vector, row) in sums.iter().enumerate() {
                let target = co * geometry.wide_stride + self.first + vector * LANES;
                // SAFETY: `channel_block` bounds the outputs: `CO` channels of `wide_stride`.
                unsafe { _mm512_storeu_ps(outputs.add(target), row[co]) };
            }
        }
    }
}

/// `padded[ci·stride + r·Wp + c] = x[ci][r - ph][c - pw]`, 0 elsewhere (slack included).
pub(super) fn pad(shape: &ConvShape, geometry: &Geometry, x: &[f32], padded: &mut [f32]) {
    let (width, padded_width) = (shape.in_width, geometry.padded_width);
    let (pad_h, pad_w) = shape.padding;
    let planes = padded.chunks_exact_mut(geometry.plane_stride);
    for (plane, channel) in planes.zip(x.chunks_exact(shape.in_height * width)) {
        let top = pad_h * padded_width;
        let body = shape.in_height * padded_width;
        plane[..top].fill(0.0);
        let lines = plane[top..top + body].chunks_exact_mut(padded_width);
        for (line, source) in lines.zip(channel.chunks_exact(width)) {
            line[..pad_w].fill(0.0);
            line[pad_w..pad_w + width].copy_from_slice(source);
            line[pad_w + width..].fill(0.0);
        }
        plane[top + body..].fill(0.0);
    }
}

/// `y[co][oh][ow] = wide[co·stride + oh·Wp + ow] (+ bias[co])` for `ow < Wo`.
fn compact(shape: &ConvShape, geometry: &Geometry, wide: &[f32], bias: &[f32], y: &mut [f32]) {
    let out_width = shape.out_width();
    let channels = y
        .chunks_exact_mut(shape.out_pixels())
        .zip(wide.chunks_exact(geometry.wide_stride));
    for (co, (y_channel, wide_channel)) in channels.enumerate() {
        let lines = y_channel.chunks_exact_mut(out_width);
        for (line, source) in lines.zip(wide_channel.chunks(geometry.padded_width)) {
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

/// Output channels per weight-gradient register tile.
const GRAD_CHANNELS: usize = 4;
/// Taps (input channel, kernel row, kernel column) per weight-gradient register tile:
/// 4 x 6 = 24 accumulators, each 16 partial sums over output pixels.
const GRAD_TAPS: usize = 6;
/// Floats of one tile's vector accumulators.
const GRAD_TILE_FLOATS: usize = GRAD_CHANNELS * GRAD_TAPS * LANES;

/// The weight gradient of a chunk of images, added to `dw_t`, the transposed gradient
/// `(Cin·Kh·Kw x Cout)` with taps in `(ci, kh, kw)` order:
/// `dw_t[tap][co] += Σ_images Σ_q dy_wide[co][q] · padded[ci][q + kh·Wp + kw]`.
///
/// Each tile keeps its 24 vector accumulators in memory across the chunk's images and adds
/// their lanes into `dw_t` once at the end, so the order of every sum is fixed.
///
/// # Panics
///
/// When [`available`] is false (callers check it).
pub(super) fn weight_grad_chunk(
    shape: &ConvShape,
    dy: &[f32],
    x: &[f32],
    images: std::ops::Range<usize>,
    dw_t: &mut [f32],
) {
    assert!(available(), "direct convolution needs AVX-512");
    let geometry = Geometry::new(shape);
    let taps = tap_offsets(shape, &geometry);
    let channel_blocks = shape.out_channels.div_ceil(GRAD_CHANNELS);
    let tiles = channel_blocks * taps.len().div_ceil(GRAD_TAPS);
    let accumulators_len = tiles * GRAD_TILE_FLOATS;
    let padded_len = shape.in_channels * geometry.plane_stride;
    let wide_len = channel_blocks * GRAD_CHANNELS * geometry.wide_stride;
    with_scratch(accumulators_len + padded_len + wide_len, |buffer| {
        let (accumulators, rest) = buffer.split_at_mut(accumulators_len);
        let (padded, dy_wide) = rest.split_at_mut(padded_len);
        accumulators.fill(0.0);
        // Channels past Cout stay zero, so a tile may always cover 4 channels.
        dy_wide.fill(0.0);
        for image in images {
            let x_image = &x[image * shape.in_image_len()..][..shape.in_image_len()];
            let dy_image = &dy[image * shape.out_image_len()..][..shape.out_image_len()];
            pad(shape, &geometry, x_image, padded);
            widen(shape, &geometry, dy_image, dy_wide);
            accumulate_image(&geometry, &taps, padded, dy_wide, accumulators);
        }
        add_lanes(shape, &taps, accumulators, dw_t);
    });
}

/// Offset in the padded buffer of every tap `(ci, kh, kw)`, in that order.
fn tap_offsets(shape: &ConvShape, geometry: &Geometry) -> Vec<usize> {
    let channels = 0..shape.in_channels;
    let planes = channels.map(|ci| ci * geometry.plane_stride);
    planes
        .flat_map(|plane| geometry.offsets.iter().map(move |offset| plane + offset))
        .collect()
}

/// `dy_wide[co·stride + oh·Wp + ow] = dy[co][oh][ow]` for `ow < Wo`; the extra columns and
/// the tail stay 0.
fn widen(shape: &ConvShape, geometry: &Geometry, dy: &[f32], dy_wide: &mut [f32]) {
    let out_width = shape.out_width();
    let channels = dy_wide.chunks_exact_mut(geometry.wide_stride);
    for (wide, channel) in channels.zip(dy.chunks_exact(shape.out_pixels())) {
        let lines = wide.chunks_exact_mut(geometry.padded_width);
        for (line, source) in lines.zip(channel.chunks_exact(out_width)) {
            line[..out_width].copy_from_slice(source);
            line[out_width..].fill(0.0);
        }
    }
}

/// Adds one image to every tile's vector accumulators.
fn accumulate_image(
    geometry: &Geometry,
    taps: &[usize],
    padded: &[f32],
    dy_wide: &[f32],
    accumulators: &mut [f32],
) {
    // Whole vectors up to the last real output; the rest of `wide_stride` is zero in dy.
    let steps = geometry.wide.div_ceil(LANES);
    let last_tap = taps.iter().copied().max().unwrap_or(0);
    assert!(
        last_tap + geometry.wide_stride <= padded.len(),
        "padded input too short"
    );
    let mut tiles = accumulators.chunks_exact_mut(GRAD_TILE_FLOATS);
    let channel_rows = dy_wide.chunks_exact(GRAD_CHANNELS * geometry.wide_stride);
    for rows in channel_rows {
        let dy_rows: [&[f32]; GRAD_CHANNELS] =
            std::array::from_fn(|c| &rows[c * geometry.wide_stride..][..geometry.wide_stride]);
        for tap_block in taps.chunks(GRAD_TAPS) {
            // A short last block repeats its first tap; those sums are never read.
            let block: [usize; GRAD_TAPS] =
                std::array::from_fn(|t| tap_block.get(t).copied().unwrap_or(tap_block[0]));
            let Some(tile) = tiles.next() else { return };
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512F is available (checked by the caller); every tap reads
            // `wide_stride` floats inside `padded` (asserted above), every row is
            // `wide_stride` long, and the tile holds 24 vectors.
            unsafe {
                grad_tile(dy_rows, padded, block, steps, tile)
            };
        }
    }
}

/// `tile[c][t] += Σ_step dy_rows[c][step·16..] · padded[taps[t] + step·16..]`, lane-wise.
///
/// # Safety
///
/// AVX-512F must be available; each `dy_rows[c]` and each `padded[taps[t]..]` must hold
/// `steps·16` floats, and `tile` [`GRAD_TILE_FLOATS`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn grad_tile(
    dy_rows: [&[f32]; GRAD_CHANNELS],
    padded: &[f32],
    taps: [usize; GRAD_TAPS],
    steps: usize,
    tile: &mut [f32],
) {
    let accumulators = tile.as_mut_ptr();
    // SAFETY (whole function): the caller guarantees every pointer below stays in bounds.
    let mut sums: [[__m512; GRAD_TAPS]; GRAD_CHANNELS] = std::array::from_fn(|c| {
        std::array::from_fn(|t| unsafe {
            _mm512_loadu_ps(accumulators.add((c * GRAD_TAPS + t) * LANES))
        })
    });
    let rows = dy_rows.map(<[f32]>::as_ptr);
    let sources = taps.map(|offset| padded.as_ptr().wrapping_add(offset));
    for step in 0..steps {
        let at = step * LANES;
        let gradients: [__m512; GRAD_CHANNELS] =
            std::array::from_fn(|c| unsafe { _mm512_loadu_ps(rows[c].add(at)) });
        for t in 0..GRAD_TAPS {
            let input = unsafe { _mm512_loadu_ps(sources[t].add(at)) };
            for c in 0..GRAD_CHANNELS {
                sums[c][t] = _mm512_fmadd_ps(gradients[c], input, sums[c][t]);
            }
        }
    }
    for (c, row) in sums.iter().enumerate() {
        for (t, &sum) in row.iter().enumerate() {
            unsafe { _mm512_storeu_ps(accumulators.add((c * GRAD_TAPS + t) * LANES), sum) };
        }
    }
}

/// `dw_t[tap][co] += Σ lanes` of each accumulator that stands for a real `(co, tap)`.
fn add_lanes(shape: &ConvShape, taps: &[usize], accumulators: &[f32], dw_t: &mut [f32]) {
    let cout = shape.out_channels;
    let tap_blocks = taps.len().div_ceil(GRAD_TAPS);
    for (tile_index, tile) in accumulators.chunks_exact(GRAD_TILE_FLOATS).enumerate() {
        let (channel_block, tap_block) = (tile_index / tap_blocks, tile_index % tap_blocks);
        for (vector_index, lanes) in tile.chunks_exact(LANES).enumerate() {
            let co = channel_block * GRAD_CHANNELS + vector_index / GRAD_TAPS;
            let tap = tap_block * GRAD_TAPS + vector_index % GRAD_TAPS;
            if co < cout && tap < taps.len() {
                dw_t[tap * cout + co] += super::lane_sum(lanes);
            }
        }
    }
}
