//! Read-only tensor views and shape helpers of the reference interpreter.
//!
//! Invariant: a [`Tensor`]'s `data` holds exactly `dims.iter().product()` values in row-major
//! (NCHW) order, the batch dimension first when the value is batched.

use super::ReferenceError;

/// A row-major view of one operand's value together with its full dimensions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tensor<'a> {
    /// Full dimensions, the batch size first when batched.
    pub dims: &'a [usize],
    /// The values, row-major.
    pub data: &'a [f64],
}

impl<'a> Tensor<'a> {
    /// The dimensions as `[N, C, H, W]`, or an error naming `op` when the rank is not 4.
    pub fn dims4(&self, op: &'static str) -> Result<[usize; 4], ReferenceError> {
        match self.dims {
            &[n, c, h, w] => Ok([n, c, h, w]),
            other => Err(rank_error(op, 4, other)),
        }
    }

    /// The dimensions as `[rows, columns]`, or an error naming `op` when the rank is not 2.
    pub fn dims2(&self, op: &'static str) -> Result<[usize; 2], ReferenceError> {
        match self.dims {
            &[rows, columns] => Ok([rows, columns]),
            other => Err(rank_error(op, 2, other)),
        }
    }

    /// `(N, C, inner)` for a tensor `[N, C, ...]`: the channel layout that per-channel ops
    /// (BatchNorm statistics, channel sums, per-channel PReLU) iterate over.
    pub fn channel_layout(&self, op: &'static str) -> Result<ChannelLayout, ReferenceError> {
        match self.dims {
            [n, c, rest @ ..] => Ok(ChannelLayout {
                batch: *n,
                channels: *c,
                inner: rest.iter().product(),
            }),
            other => Err(rank_error(op, 2, other)),
        }
    }
}

/// How a `[N, C, ...]` tensor is laid out around its channel axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChannelLayout {
    /// Size of the leading (batch) axis.
    pub batch: usize,
    /// Number of channels (axis 1).
    pub channels: usize,
    /// Product of the axes after the channel axis (H·W, or 1 for `[N, C]`).
    pub inner: usize,
}

impl ChannelLayout {
    /// Number of elements each channel's statistics run over: `N·inner`.
    pub fn per_channel(&self) -> usize {
        self.batch * self.inner
    }

    /// The channel of the element at flat index `index`.
    pub fn channel_of(&self, index: usize) -> usize {
        (index / self.inner.max(1)) % self.channels.max(1)
    }
}

/// The error for an operand of the wrong rank.
pub(crate) fn rank_error(op: &'static str, rank: usize, found: &[usize]) -> ReferenceError {
    ReferenceError::Rank {
        op,
        expected: rank,
        found: found.to_vec(),
    }
}

/// Requires `found == expected`, naming `op` otherwise.
pub(crate) fn expect_dims(
    op: &'static str,
    expected: &[usize],
    found: &[usize],
) -> Result<(), ReferenceError> {
    if expected == found {
        Ok(())
    } else {
        Err(ReferenceError::Shape {
            op,
            expected: expected.to_vec(),
            found: found.to_vec(),
        })
    }
}

/// The output size of a sliding window: `(input + 2·padding − kernel) / stride + 1`, or
/// `None` when the window does not fit or the stride is 0.
pub(crate) fn window_output(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Option<usize> {
    let span = (input + 2 * padding).checked_sub(kernel)?;
    span.checked_div(stride).map(|steps| steps + 1)
}

/// The input coordinate `output·stride − padding + offset`, when it lies inside `0..size`.
pub(crate) fn window_input(
    output: usize,
    stride: usize,
    padding: usize,
    offset: usize,
    size: usize,
) -> Option<usize> {
    let position = (output * stride + offset).checked_sub(padding)?;
    (position < size).then_some(position)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_output_follows_the_floor_formula() {
        assert_eq!(window_output(5, 3, 1, 0), Some(3));
        assert_eq!(window_output(5, 3, 2, 1), Some(3));
        assert_eq!(window_output(6, 3, 2, 0), Some(2));
        assert_eq!(window_output(2, 3, 1, 0), None);
        assert_eq!(window_output(4, 2, 0, 0), None);
    }

    #[test]
    fn window_input_skips_padding() {
        assert_eq!(window_input(0, 2, 1, 0, 4), None);
        assert_eq!(window_input(0, 2, 1, 1, 4), Some(0));
        assert_eq!(window_input(2, 2, 1, 2, 4), None);
    }

    #[test]
    fn channel_layout_of_image_and_matrix() {
        let dims = [2, 3, 4, 5];
        let data = vec![0.0; 120];
        let layout = Tensor {
            dims: &dims,
            data: &data,
        }
        .channel_layout("t")
        .unwrap();
        assert_eq!(
            layout,
            ChannelLayout {
                batch: 2,
                channels: 3,
                inner: 20
            }
        );
        assert_eq!(layout.channel_of(20 * 4 + 3), 1);
        let dims = [2, 3];
        let layout = Tensor {
            dims: &dims,
            data: &data[..6],
        }
        .channel_layout("t")
        .unwrap();
        assert_eq!(layout.channel_of(4), 1);
    }
}
