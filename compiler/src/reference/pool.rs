//! Reference pooling and data movement: max/average/global pooling, the option-A shortcut,
//! and their gradients.
//!
//! Invariant: windows follow PyTorch (floor output size, max-pool padding is −∞, average-pool
//! padding counts in the divisor, first maximum wins on ties).

use super::conv::grid4;
use super::tensor::{expect_dims, window_input, window_output, Tensor};
use super::ReferenceError;
use crate::ir::Pair;

/// Kernel, stride and padding of one pooling window.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolWindow {
    /// Window (height, width).
    pub kernel: Pair,
    /// Stride (height, width).
    pub stride: Pair,
    /// Padding on each side.
    pub padding: Pair,
}

/// Checks `x [N,C,H,W]` against `y [N,C,Ho,Wo]`, returning both.
fn pool_shape(
    op: &'static str,
    x: [usize; 4],
    y: [usize; 4],
    window: PoolWindow,
) -> Result<([usize; 4], [usize; 4]), ReferenceError> {
    let [n, c, h, w] = x;
    let ho = window_output(h, window.kernel[0], window.stride[0], window.padding[0]);
    let wo = window_output(w, window.kernel[1], window.stride[1], window.padding[1]);
    let (Some(ho), Some(wo)) = (ho, wo) else {
        return Err(ReferenceError::Window {
            op,
            input: vec![h, w],
            kernel: window.kernel.into(),
        });
    };
    expect_dims(op, &[n, c, ho, wo], &y)?;
    Ok((x, y))
}

/// The flat indices of `x` that window `(n, c, oy, ox)` covers, in row-major window order
/// (positions in the padding are skipped).
fn window_indices(
    x: [usize; 4],
    window: PoolWindow,
    (n, c, oy, ox): (usize, usize, usize, usize),
) -> Vec<usize> {
    let [_, channels, h, w] = x;
    let mut indices = Vec::with_capacity(window.kernel[0] * window.kernel[1]);
    for ky in 0..window.kernel[0] {
        for kx in 0..window.kernel[1] {
            let iy = window_input(oy, window.stride[0], window.padding[0], ky, h);
            let ix = window_input(ox, window.stride[1], window.padding[1], kx, w);
            if let (Some(iy), Some(ix)) = (iy, ix) {
                indices.push(((n * channels + c) * h + iy) * w + ix);
            }
        }
    }
    indices
}

/// The index of the first maximum of `x` over `indices`, if any.
fn first_max(x: &[f64], indices: &[usize]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for &index in indices {
        if best.is_none_or(|current| x[index] > x[current]) {
            best = Some(index);
        }
    }
    best
}

/// `y = max over the window` (−∞ for a window that lies wholly in the padding).
pub(crate) fn max_pool(
    x: Tensor,
    window: PoolWindow,
    out: &[usize],
) -> Result<Vec<f64>, ReferenceError> {
    const OP: &str = "maxpool";
    let out4 = Tensor {
        dims: out,
        data: &[],
    }
    .dims4(OP)?;
    let (x_dims, y_dims) = pool_shape(OP, x.dims4(OP)?, out4, window)?;
    let y = grid4(y_dims).map(|position| {
        let indices = window_indices(x_dims, window, position);
        first_max(x.data, &indices).map_or(f64::NEG_INFINITY, |index| x.data[index])
    });
    Ok(y.collect())
}

/// `dx[i] = Σ dy` over the windows whose first maximum is `x[i]`.
pub(crate) fn max_pool_grad(
    dy: Tensor,
    x: Tensor,
    window: PoolWindow,
) -> Result<Vec<f64>, ReferenceError> {
    const OP: &str = "maxpool_grad";
    let (x_dims, y_dims) = pool_shape(OP, x.dims4(OP)?, dy.dims4(OP)?, window)?;
    let mut dx = vec![0.0; x.data.len()];
    for (position, grad) in grid4(y_dims).zip(dy.data) {
        let indices = window_indices(x_dims, window, position);
        if let Some(index) = first_max(x.data, &indices) {
            dx[index] += grad;
        }
    }
    Ok(dx)
}

/// `y = (Σ over the window) / (kh·kw)`, padding counted in the divisor.
pub(crate) fn avg_pool(
    x: Tensor,
    window: PoolWindow,
    out: &[usize],
) -> Result<Vec<f64>, ReferenceError> {
    const OP: &str = "avgpool";
    let out4 = Tensor {
        dims: out,
        data: &[],
    }
    .dims4(OP)?;
    let (x_dims, y_dims) = pool_shape(OP, x.dims4(OP)?, out4, window)?;
    let area = (window.kernel[0] * window.kernel[1]) as f64;
    let y = grid4(y_dims).map(|position| {
        let indices = window_indices(x_dims, window, position);
        indices.iter().map(|&index| x.data[index]).sum::<f64>() / area
    });
    Ok(y.collect())
}

/// `dx[i] = Σ dy/(kh·kw)` over the windows covering `x[i]`.
pub(crate) fn avg_pool_grad(
    dy: Tensor,
    window: PoolWindow,
    out: &[usize],
) -> Result<Vec<f64>, ReferenceError> {
    const OP: &str = "avgpool_grad";
    let x4 = Tensor {
        dims: out,
        data: &[],
    }
    .dims4(OP)?;
    let (x_dims, y_dims) = pool_shape(OP, x4, dy.dims4(OP)?, window)?;
    let area = (window.kernel[0] * window.kernel[1]) as f64;
    let mut dx = vec![0.0; out.iter().product()];
    for (position, grad) in grid4(y_dims).zip(dy.data) {
        for index in window_indices(x_dims, window, position) {
            dx[index] += grad / area;
        }
    }
    Ok(dx)
}

/// `y[n,c] = mean over h, w of x[n,c,h,w]`.
pub(crate) fn global_avg_pool(x: Tensor, out: &[usize]) -> Result<Vec<f64>, ReferenceError> {
    const OP: &str = "global_avgpool";
    let [n, c, h, w] = x.dims4(OP)?;
    expect_dims(OP, &[n, c], out)?;
    let area = h * w;
    let y = x
        .data
        .chunks(area.max(1))
        .map(|plane| plane.iter().sum::<f64>() / area as f64);
    Ok(y.collect())
}

/// `dx[n,c,h,w] = dy[n,c]/(H·W)`.
pub(crate) fn global_avg_pool_grad(dy: Tensor, out: &[usize]) -> Result<Vec<f64>, ReferenceError> {
    const OP: &str = "global_avgpool_grad";
    let [n, c, h, w] = Tensor {
        dims: out,
        data: &[],
    }
    .dims4(OP)?;
    expect_dims(OP, &[n, c], dy.dims)?;
    let area = h * w;
    let dx = dy
        .data
        .iter()
        .flat_map(|grad| std::iter::repeat_n(grad / area as f64, area));
    Ok(dx.collect())
}

/// Stride and channel padding of the option-A shortcut.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shortcut {
    /// Spatial subsampling stride.
    pub stride: usize,
    /// Zero channels added on each side.
    pub pad_channels: usize,
}

/// Checks `x [N,C,H,W]` against `y [N, C + 2·pad, ceil(H/s), ceil(W/s)]`.
fn shortcut_shape(
    op: &'static str,
    x: [usize; 4],
    y: [usize; 4],
    shortcut: Shortcut,
) -> Result<(), ReferenceError> {
    let [n, c, h, w] = x;
    let Shortcut {
        stride,
        pad_channels,
    } = shortcut;
    if stride == 0 {
        return Err(ReferenceError::Window {
            op,
            input: vec![h, w],
            kernel: vec![stride],
        });
    }
    let expected = [
        n,
        c + 2 * pad_channels,
        h.div_ceil(stride),
        w.div_ceil(stride),
    ];
    expect_dims(op, &expected, &y)
}

/// Calls `visit(x_index, y_index)` for every element the shortcut copies.
fn shortcut_pairs(x: [usize; 4], y: [usize; 4], shortcut: Shortcut) -> Vec<(usize, usize)> {
    let [_, c, h, w] = x;
    let [_, yc, yh, yw] = y;
    grid4([x[0], c, yh, yw])
        .map(|(n, channel, oy, ox)| {
            let x_index = ((n * c + channel) * h + oy * shortcut.stride) * w + ox * shortcut.stride;
            let y_index = ((n * yc + channel + shortcut.pad_channels) * yh + oy) * yw + ox;
            (x_index, y_index)
        })
        .collect()
}

/// `y[n, c + pad, h, w] = x[n, c, h·s, w·s]`; the padded channels are 0.
pub(crate) fn shortcut_a(
    x: Tensor,
    shortcut: Shortcut,
    out: &[usize],
) -> Result<Vec<f64>, ReferenceError> {
    const OP: &str = "shortcut_a";
    let y_dims = Tensor {
        dims: out,
        data: &[],
    }
    .dims4(OP)?;
    let x_dims = x.dims4(OP)?;
    shortcut_shape(OP, x_dims, y_dims, shortcut)?;
    let mut y = vec![0.0; out.iter().product()];
    for (x_index, y_index) in shortcut_pairs(x_dims, y_dims, shortcut) {
        y[y_index] = x.data[x_index];
    }
    Ok(y)
}

/// `dx[n, c, h·s, w·s] = dy[n, c + pad, h, w]`; every other `dx` is 0.
pub(crate) fn shortcut_a_grad(
    dy: Tensor,
    shortcut: Shortcut,
    out: &[usize],
) -> Result<Vec<f64>, ReferenceError> {
    const OP: &str = "shortcut_a_grad";
    let x_dims = Tensor {
        dims: out,
        data: &[],
    }
    .dims4(OP)?;
    let y_dims = dy.dims4(OP)?;
    shortcut_shape(OP, x_dims, y_dims, shortcut)?;
    let mut dx = vec![0.0; out.iter().product()];
    for (x_index, y_index) in shortcut_pairs(x_dims, y_dims, shortcut) {
        dx[x_index] = dy.data[y_index];
    }
    Ok(dx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t<'a>(dims: &'a [usize], data: &'a [f64]) -> Tensor<'a> {
        Tensor { dims, data }
    }

    const X: [f64; 9] = [1.0, 5.0, 2.0, 4.0, 3.0, 5.0, 0.0, 7.0, 6.0];
    const X_DIMS: [usize; 4] = [1, 1, 3, 3];

    #[test]
    fn max_pool_takes_window_maxima_and_routes_grad_to_the_first() {
        // 2x2 windows, stride 1, over [[1,5,2],[4,3,5],[0,7,6]].
        let window = PoolWindow {
            kernel: [2, 2],
            stride: [1, 1],
            padding: [0, 0],
        };
        let x = t(&X_DIMS, &X);
        assert_eq!(
            max_pool(x, window, &[1, 1, 2, 2]).unwrap(),
            vec![5.0, 5.0, 7.0, 7.0]
        );
        // Window (0,1) holds 5 twice (positions 1 and 5): the first, position 1, wins.
        let dy = t(&[1, 1, 2, 2], &[1.0, 10.0, 100.0, 1000.0]);
        let dx = max_pool_grad(dy, x, window).unwrap();
        assert_eq!(dx, vec![0.0, 11.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1100.0, 0.0]);
    }

    #[test]
    fn max_pool_padding_is_minus_infinity() {
        let window = PoolWindow {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [1, 1],
        };
        let x = t(&[1, 1, 2, 2], &[-1.0, -2.0, -3.0, -4.0]);
        let y = max_pool(x, window, &[1, 1, 2, 2]).unwrap();
        assert_eq!(y, vec![-1.0, -2.0, -3.0, -4.0]);
    }

    #[test]
    fn avg_pool_counts_padding_in_the_divisor() {
        let window = PoolWindow {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [1, 1],
        };
        let x = t(&[1, 1, 2, 2], &[4.0, 8.0, 12.0, 16.0]);
        assert_eq!(
            avg_pool(x, window, &[1, 1, 2, 2]).unwrap(),
            vec![1.0, 2.0, 3.0, 4.0]
        );
        let dy = t(&[1, 1, 2, 2], &[4.0, 8.0, 12.0, 16.0]);
        assert_eq!(
            avg_pool_grad(dy, window, &[1, 1, 2, 2]).unwrap(),
            vec![1.0, 2.0, 3.0, 4.0]
        );
        let unpadded = PoolWindow {
            kernel: [2, 2],
            stride: [1, 1],
            padding: [0, 0],
        };
        let y = avg_pool(t(&X_DIMS, &X), unpadded, &[1, 1, 2, 2]).unwrap();
        assert_eq!(y, vec![13.0 / 4.0, 15.0 / 4.0, 14.0 / 4.0, 21.0 / 4.0]);
    }

    #[test]
    fn global_avg_pool_and_grad() {
        let x = t(&[1, 2, 1, 2], &[1.0, 3.0, 10.0, 20.0]);
        assert_eq!(global_avg_pool(x, &[1, 2]).unwrap(), vec![2.0, 15.0]);
        let dx = global_avg_pool_grad(t(&[1, 2], &[2.0, 4.0]), &[1, 2, 1, 2]).unwrap();
        assert_eq!(dx, vec![1.0, 1.0, 2.0, 2.0]);
    }

    #[test]
    fn shortcut_a_subsamples_and_pads_channels() {
        // x [1,1,3,3], stride 2, one zero channel on each side: y [1,3,2,2].
        let shortcut = Shortcut {
            stride: 2,
            pad_channels: 1,
        };
        let y = shortcut_a(t(&X_DIMS, &X), shortcut, &[1, 3, 2, 2]).unwrap();
        let mut expected = vec![0.0; 12];
        expected[4..8].copy_from_slice(&[1.0, 2.0, 0.0, 6.0]);
        assert_eq!(y, expected);
        let dy: Vec<f64> = (1..=12).map(f64::from).collect();
        let dx = shortcut_a_grad(t(&[1, 3, 2, 2], &dy), shortcut, &X_DIMS).unwrap();
        assert_eq!(dx, vec![5.0, 0.0, 6.0, 0.0, 0.0, 0.0, 7.0, 0.0, 8.0]);
        let wrong = shortcut_a(t(&X_DIMS, &X), shortcut, &[1, 3, 1, 1]);
        assert!(matches!(wrong, Err(ReferenceError::Shape { .. })));
    }
}
