//! Reference contractions: 2-D convolution and dense layers, forward and gradients.
//!
//! Invariant: plain nested loops in float64 over NCHW data, written for clarity, not speed;
//! every shape is checked against the formula before any element is touched.

use super::tensor::{expect_dims, window_input, window_output, Tensor};
use super::ReferenceError;
use crate::ir::Pair;

/// Strides and paddings of one convolution.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    /// Stride (height, width).
    pub stride: Pair,
    /// Zero padding on each side (height, width).
    pub padding: Pair,
}

/// The geometry every convolution loop shares: `x [N,Ci,H,W]`, `w [Co,Ci,Kh,Kw]`,
/// `y [N,Co,Ho,Wo]`.
struct ConvShape {
    x: [usize; 4],
    w: [usize; 4],
    y: [usize; 4],
}

impl ConvShape {
    /// Checks that `x`, `w` and `y` agree, and returns them.
    fn new(
        op: &'static str,
        x: [usize; 4],
        w: [usize; 4],
        y: [usize; 4],
        window: Window,
    ) -> Result<Self, ReferenceError> {
        let [n, ci, h, wd] = x;
        let [co, wci, kh, kw] = w;
        let mismatch = || ReferenceError::Shape {
            op,
            expected: vec![ci],
            found: vec![wci],
        };
        if ci != wci {
            return Err(mismatch());
        }
        let ho = window_output(h, kh, window.stride[0], window.padding[0]);
        let wo = window_output(wd, kw, window.stride[1], window.padding[1]);
        let (Some(ho), Some(wo)) = (ho, wo) else {
            return Err(ReferenceError::Window {
                op,
                input: vec![h, wd],
                kernel: vec![kh, kw],
            });
        };
        expect_dims(op, &[n, co, ho, wo], &y)?;
        Ok(ConvShape { x, w, y })
    }

    /// Calls `visit(x_index, w_index, y_index)` for every multiply-add of the convolution.
    fn for_each(&self, window: Window, mut visit: impl FnMut(usize, usize, usize)) {
        let [n, ci, h, wd] = self.x;
        let [co, _, kh, kw] = self.w;
        let [_, _, ho, wo] = self.y;
        for (b, o, oy, ox) in grid4([n, co, ho, wo]) {
            let y_index = ((b * co + o) * ho + oy) * wo + ox;
            for (c, ky, kx) in grid3([ci, kh, kw]) {
                let iy = window_input(oy, window.stride[0], window.padding[0], ky, h);
                let ix = window_input(ox, window.stride[1], window.padding[1], kx, wd);
                if let (Some(iy), Some(ix)) = (iy, ix) {
                    let x_index = ((b * ci + c) * h + iy) * wd + ix;
                    let w_index = ((o * ci + c) * kh + ky) * kw + kx;
                    visit(x_index, w_index, y_index);
                }
            }
        }
    }
}

/// Every `(a, b, c, d)` of a 4-D index space, row-major.
pub(crate) fn grid4(dims: [usize; 4]) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let [a, b, c, d] = dims;
    (0..a).flat_map(move |i| {
        (0..b).flat_map(move |j| (0..c).flat_map(move |k| (0..d).map(move |l| (i, j, k, l))))
    })
}

/// Every `(a, b, c)` of a 3-D index space, row-major.
fn grid3(dims: [usize; 3]) -> impl Iterator<Item = (usize, usize, usize)> {
    let [a, b, c] = dims;
    (0..a).flat_map(move |i| (0..b).flat_map(move |j| (0..c).map(move |k| (i, j, k))))
}

/// `y[n,o,oy,ox] = b[o] + Σ_{c,ky,kx} x[n,c,oy·s−p+ky,ox·s−p+kx]·w[o,c,ky,kx]`.
pub(crate) fn conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Option<Tensor>,
    window: Window,
    out: &[usize],
) -> Result<Vec<f64>, ReferenceError> {
    const OP: &str = "conv2d";
    let y_dims = Tensor {
        dims: out,
        data: &[],
    }
    .dims4(OP)?;
    let shape = ConvShape::new(OP, x.dims4(OP)?, weight.dims4(OP)?, y_dims, window)?;
    let mut y = vec![0.0; out.iter().product()];
    shape.for_each(window, |xi, wi, yi| y[yi] += x.data[xi] * weight.data[wi]);
    if let Some(bias) = bias {
        add_channel_bias(OP, &mut y, y_dims, bias)?;
    }
    Ok(y)
}

/// Adds `bias[c]` to every element of channel `c` of `y [N,C,...]`.
fn add_channel_bias(
    op: &'static str,
    y: &mut [f64],
    y_dims: [usize; 4],
    bias: Tensor,
) -> Result<(), ReferenceError> {
    let [_, channels, h, w] = y_dims;
    expect_dims(op, &[channels], bias.dims)?;
    for (index, value) in y.iter_mut().enumerate() {
        *value += bias.data[(index / (h * w)) % channels];
    }
    Ok(())
}

/// `dx[n,c,iy,ix] = Σ dy[n,o,oy,ox]·w[o,c,ky,kx]` over every tap that read `x[n,c,iy,ix]`.
pub(crate) fn conv2d_input_grad(
    dy: Tensor,
    weight: Tensor,
    window: Window,
    out: &[usize],
) -> Result<Vec<f64>, ReferenceError> {
    const OP: &str = "conv2d_input_grad";
    let x_dims = Tensor {
        dims: out,
        data: &[],
    }
    .dims4(OP)?;
    let shape = ConvShape::new(OP, x_dims, weight.dims4(OP)?, dy.dims4(OP)?, window)?;
    let mut dx = vec![0.0; out.iter().product()];
    shape.for_each(window, |xi, wi, yi| dx[xi] += dy.data[yi] * weight.data[wi]);
    Ok(dx)
}

/// `dw[o,c,ky,kx] = Σ_{n,oy,ox} dy[n,o,oy,ox]·x[n,c,oy·s−p+ky,ox·s−p+kx]`.
pub(crate) fn conv2d_weight_grad(
    dy: Tensor,
    x: Tensor,
    window: Window,
    out: &[usize],
) -> Result<Vec<f64>, ReferenceError> {
    const OP: &str = "conv2d_weight_grad";
    let w_dims = Tensor {
        dims: out,
        data: &[],
    }
    .dims4(OP)?;
    let shape = ConvShape::new(OP, x.dims4(OP)?, w_dims, dy.dims4(OP)?, window)?;
    let mut dw = vec![0.0; out.iter().product()];
    shape.for_each(window, |xi, wi, yi| dw[wi] += dy.data[yi] * x.data[xi]);
    Ok(dw)
}

/// `y[n,m] = b[m] + Σ_k x[n,k]·w[m,k]`.
pub(crate) fn dense(
    x: Tensor,
    weight: Tensor,
    bias: Option<Tensor>,
    out: &[usize],
) -> Result<Vec<f64>, ReferenceError> {
    const OP: &str = "dense";
    let [n, k] = x.dims2(OP)?;
    let [m, wk] = weight.dims2(OP)?;
    expect_dims(OP, &[k], &[wk])?;
    expect_dims(OP, &[n, m], out)?;
    let mut y = vec![0.0; n * m];
    for (row, col) in (0..n).flat_map(|row| (0..m).map(move |col| (row, col))) {
        let dot: f64 = (0..k)
            .map(|i| x.data[row * k + i] * weight.data[col * k + i])
            .sum();
        y[row * m + col] = dot;
    }
    if let Some(bias) = bias {
        expect_dims(OP, &[m], bias.dims)?;
        for (index, value) in y.iter_mut().enumerate() {
            *value += bias.data[index % m];
        }
    }
    Ok(y)
}

/// `dx[n,k] = Σ_m dy[n,m]·w[m,k]`.
pub(crate) fn dense_input_grad(
    dy: Tensor,
    weight: Tensor,
    out: &[usize],
) -> Result<Vec<f64>, ReferenceError> {
    const OP: &str = "dense_input_grad";
    let [n, m] = dy.dims2(OP)?;
    let [wm, k] = weight.dims2(OP)?;
    expect_dims(OP, &[m], &[wm])?;
    expect_dims(OP, &[n, k], out)?;
    let mut dx = vec![0.0; n * k];
    for (row, col) in (0..n).flat_map(|row| (0..k).map(move |col| (row, col))) {
        dx[row * k + col] = (0..m)
            .map(|j| dy.data[row * m + j] * weight.data[j * k + col])
            .sum();
    }
    Ok(dx)
}

/// `dw[m,k] = Σ_n dy[n,m]·x[n,k]`.
pub(crate) fn dense_weight_grad(
    dy: Tensor,
    x: Tensor,
    out: &[usize],
) -> Result<Vec<f64>, ReferenceError> {
    const OP: &str = "dense_weight_grad";
    let [n, m] = dy.dims2(OP)?;
    let [xn, k] = x.dims2(OP)?;
    expect_dims(OP, &[n], &[xn])?;
    expect_dims(OP, &[m, k], out)?;
    let mut dw = vec![0.0; m * k];
    for (row, col) in (0..m).flat_map(|row| (0..k).map(move |col| (row, col))) {
        dw[row * k + col] = (0..n)
            .map(|b| dy.data[b * m + row] * x.data[b * k + col])
            .sum();
    }
    Ok(dw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t<'a>(dims: &'a [usize], data: &'a [f64]) -> Tensor<'a> {
        Tensor { dims, data }
    }

    const UNIT: Window = Window {
        stride: [1, 1],
        padding: [0, 0],
    };

    #[test]
    fn conv2d_matches_hand_computed_3x3_by_2x2() {
        // x = [[1,2,3],[4,5,6],[7,8,9]], w = [[1,0],[0,-1]], b = 0.5:
        // y[i][j] = x[i][j] - x[i+1][j+1] + 0.5 = -4 + 0.5 everywhere.
        let x: Vec<f64> = (1..=9).map(f64::from).collect();
        let w = [1.0, 0.0, 0.0, -1.0];
        let y = conv2d(
            t(&[1, 1, 3, 3], &x),
            t(&[1, 1, 2, 2], &w),
            Some(t(&[1], &[0.5])),
            UNIT,
            &[1, 1, 2, 2],
        )
        .unwrap();
        assert_eq!(y, vec![-3.5; 4]);
    }

    #[test]
    fn conv2d_with_stride_and_padding_reads_zeros_outside() {
        // 2x2 input [[1,2],[3,4]], 3x3 all-ones kernel, pad 1, stride 2: output 1x1 at the
        // top-left, whose window covers the whole input (sum 10).
        let x = [1.0, 2.0, 3.0, 4.0];
        let w = [1.0; 9];
        let window = Window {
            stride: [2, 2],
            padding: [1, 1],
        };
        let y = conv2d(
            t(&[1, 1, 2, 2], &x),
            t(&[1, 1, 3, 3], &w),
            None,
            window,
            &[1, 1, 1, 1],
        );
        assert_eq!(y.unwrap(), vec![10.0]);
    }

    #[test]
    fn conv2d_sums_over_input_channels_and_rejects_bad_shapes() {
        // Two 1x1 input channels with values 2 and 3, weights 10 and 100: y = 320.
        let y = conv2d(
            t(&[1, 2, 1, 1], &[2.0, 3.0]),
            t(&[1, 2, 1, 1], &[10.0, 100.0]),
            None,
            UNIT,
            &[1, 1, 1, 1],
        );
        assert_eq!(y.unwrap(), vec![320.0]);
        let bad = conv2d(
            t(&[1, 2, 1, 1], &[2.0, 3.0]),
            t(&[1, 2, 1, 1], &[10.0, 100.0]),
            None,
            UNIT,
            &[1, 1, 2, 2],
        );
        assert!(matches!(bad, Err(ReferenceError::Shape { .. })));
    }

    #[test]
    fn conv2d_grads_match_hand_computed_values() {
        // x 1x1x2x2 = [1,2,3,4], w 1x1x1x2 = [5,6], y 1x1x2x1: y = [1·5+2·6, 3·5+4·6].
        let x = [1.0, 2.0, 3.0, 4.0];
        let w = [5.0, 6.0];
        let dy = [1.0, 10.0];
        let dx = conv2d_input_grad(
            t(&[1, 1, 2, 1], &dy),
            t(&[1, 1, 1, 2], &w),
            UNIT,
            &[1, 1, 2, 2],
        );
        assert_eq!(dx.unwrap(), vec![5.0, 6.0, 50.0, 60.0]);
        let dw = conv2d_weight_grad(
            t(&[1, 1, 2, 1], &dy),
            t(&[1, 1, 2, 2], &x),
            UNIT,
            &[1, 1, 1, 2],
        );
        assert_eq!(dw.unwrap(), vec![1.0 + 30.0, 2.0 + 40.0]);
    }

    #[test]
    fn dense_and_its_grads_match_hand_computed_values() {
        // x = [[1,2]], w = [[3,4],[5,6]], b = [1,-1]: y = [3+8+1, 5+12-1] = [12, 16].
        let x = [1.0, 2.0];
        let w = [3.0, 4.0, 5.0, 6.0];
        let y = dense(
            t(&[1, 2], &x),
            t(&[2, 2], &w),
            Some(t(&[2], &[1.0, -1.0])),
            &[1, 2],
        );
        assert_eq!(y.unwrap(), vec![12.0, 16.0]);
        let dy = [1.0, 2.0];
        let dx = dense_input_grad(t(&[1, 2], &dy), t(&[2, 2], &w), &[1, 2]).unwrap();
        assert_eq!(dx, vec![3.0 + 10.0, 4.0 + 12.0]);
        let dw = dense_weight_grad(t(&[1, 2], &dy), t(&[1, 2], &x), &[2, 2]).unwrap();
        assert_eq!(dw, vec![1.0, 2.0, 2.0, 4.0]);
    }
}
