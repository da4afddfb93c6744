//! Reference BatchNorm: batch statistics, normalisation, its gradients, channel sums and the
//! running-statistic update.
//!
//! Invariant: statistics run over every axis but the channel axis (axis 1) of a `[N, C, ...]`
//! tensor, so they cover `M = N·H·W` elements per channel (`N` for `[N, C]`).

use super::tensor::{expect_dims, ChannelLayout, Tensor};
use super::ReferenceError;

/// The per-channel values a BatchNorm kernel reads, checked to have `C` elements.
fn per_channel<'a>(
    op: &'static str,
    layout: ChannelLayout,
    values: Tensor<'a>,
) -> Result<&'a [f64], ReferenceError> {
    expect_dims(op, &[layout.channels], values.dims)?;
    Ok(values.data)
}

/// `sum[c] = Σ_{n,h,w} x[n,c,h,w]`.
pub(crate) fn channel_sum(x: Tensor) -> Result<Vec<f64>, ReferenceError> {
    let layout = x.channel_layout("channel_sum")?;
    let mut sum = vec![0.0; layout.channels];
    for (index, value) in x.data.iter().enumerate() {
        sum[layout.channel_of(index)] += value;
    }
    Ok(sum)
}

/// `mean[c] = (1/M)·Σ x[n,c,h,w]`.
pub(crate) fn batch_mean(x: Tensor) -> Result<Vec<f64>, ReferenceError> {
    let layout = x.channel_layout("batch_mean")?;
    let count = layout.per_channel() as f64;
    Ok(channel_sum(x)?.into_iter().map(|sum| sum / count).collect())
}

/// `var[c] = (1/M)·Σ (x[n,c,h,w] − mean[c])²` (biased).
pub(crate) fn batch_var(x: Tensor, mean: Tensor) -> Result<Vec<f64>, ReferenceError> {
    let layout = x.channel_layout("batch_var")?;
    let mean = per_channel("batch_var", layout, mean)?;
    let mut var = vec![0.0; layout.channels];
    for (index, value) in x.data.iter().enumerate() {
        let channel = layout.channel_of(index);
        var[channel] += (value - mean[channel]).powi(2);
    }
    let count = layout.per_channel() as f64;
    Ok(var.into_iter().map(|sum| sum / count).collect())
}

/// The statistics and affine parameters of one normalisation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Normalisation<'a> {
    /// Per-channel mean.
    pub mean: Tensor<'a>,
    /// Per-channel variance.
    pub var: Tensor<'a>,
    /// Scale γ.
    pub scale: Tensor<'a>,
    /// Shift β.
    pub shift: Tensor<'a>,
    /// Added to the variance.
    pub eps: f64,
}

/// `y = γ·(x − mean)/sqrt(var + eps) + β`, per channel.
pub(crate) fn batch_norm_apply(x: Tensor, norm: Normalisation) -> Result<Vec<f64>, ReferenceError> {
    const OP: &str = "batchnorm_apply";
    let layout = x.channel_layout(OP)?;
    let mean = per_channel(OP, layout, norm.mean)?;
    let var = per_channel(OP, layout, norm.var)?;
    let scale = per_channel(OP, layout, norm.scale)?;
    let shift = per_channel(OP, layout, norm.shift)?;
    let y = x.data.iter().enumerate().map(|(index, value)| {
        let c = layout.channel_of(index);
        scale[c] * (value - mean[c]) / (var[c] + norm.eps).sqrt() + shift[c]
    });
    Ok(y.collect())
}

/// `dscale[c] = Σ dy·x̂`, `x̂ = (x − mean)/sqrt(var + eps)`.
pub(crate) fn batch_norm_scale_grad(
    dy: Tensor,
    x: Tensor,
    mean: Tensor,
    var: Tensor,
    eps: f64,
) -> Result<Vec<f64>, ReferenceError> {
    const OP: &str = "batchnorm_scale_grad";
    let layout = x.channel_layout(OP)?;
    expect_dims(OP, x.dims, dy.dims)?;
    let mean = per_channel(OP, layout, mean)?;
    let var = per_channel(OP, layout, var)?;
    let mut dscale = vec![0.0; layout.channels];
    for (index, (value, grad)) in x.data.iter().zip(dy.data).enumerate() {
        let c = layout.channel_of(index);
        dscale[c] += grad * (value - mean[c]) / (var[c] + eps).sqrt();
    }
    Ok(dscale)
}

/// The operands of a training-mode BatchNorm input gradient besides `dy` and `x`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InputGradParts<'a> {
    /// Batch mean.
    pub mean: Tensor<'a>,
    /// Batch (biased) variance.
    pub var: Tensor<'a>,
    /// Scale γ.
    pub scale: Tensor<'a>,
    /// `Σ dy·x̂` per channel.
    pub dscale: Tensor<'a>,
    /// `Σ dy` per channel.
    pub dshift: Tensor<'a>,
    /// Added to the variance.
    pub eps: f64,
}

/// `dx = γ·invstd/M · (M·dy − dshift − x̂·dscale)`, `invstd = 1/sqrt(var + eps)`.
pub(crate) fn batch_norm_input_grad(
    dy: Tensor,
    x: Tensor,
    parts: InputGradParts,
) -> Result<Vec<f64>, ReferenceError> {
    const OP: &str = "batchnorm_input_grad";
    let layout = x.channel_layout(OP)?;
    expect_dims(OP, x.dims, dy.dims)?;
    let mean = per_channel(OP, layout, parts.mean)?;
    let var = per_channel(OP, layout, parts.var)?;
    let scale = per_channel(OP, layout, parts.scale)?;
    let dscale = per_channel(OP, layout, parts.dscale)?;
    let dshift = per_channel(OP, layout, parts.dshift)?;
    let count = layout.per_channel() as f64;
    let dx = x
        .data
        .iter()
        .zip(dy.data)
        .enumerate()
        .map(|(index, (value, grad))| {
            let c = layout.channel_of(index);
            let invstd = 1.0 / (var[c] + parts.eps).sqrt();
            let normalised = (value - mean[c]) * invstd;
            scale[c] * invstd / count * (count * grad - dshift[c] - normalised * dscale[c])
        });
    Ok(dx.collect())
}

/// `running = (1 − momentum)·running + momentum·stat·c`, `c = M/(M − 1)` when `unbiased`.
pub(crate) fn running_update(
    running: Tensor,
    stat: Tensor,
    x: Tensor,
    momentum: f64,
    unbiased: bool,
) -> Result<Vec<f64>, ReferenceError> {
    const OP: &str = "running_update";
    let layout = x.channel_layout(OP)?;
    let running = per_channel(OP, layout, running)?;
    let stat = per_channel(OP, layout, stat)?;
    let count = layout.per_channel();
    let correction = match (unbiased, count) {
        (false, _) => 1.0,
        (true, 0 | 1) => return Err(ReferenceError::TooFewForVariance { count }),
        (true, _) => count as f64 / (count - 1) as f64,
    };
    let updated = running.iter().zip(stat);
    Ok(updated
        .map(|(old, new)| (1.0 - momentum) * old + momentum * new * correction)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t<'a>(dims: &'a [usize], data: &'a [f64]) -> Tensor<'a> {
        Tensor { dims, data }
    }

    // x [N=2, C=2, 1, 2]: channel 0 holds 1, 2, 5, 6; channel 1 holds 3, 4, 7, 8.
    const X: [f64; 8] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    const DIMS: [usize; 4] = [2, 2, 1, 2];

    #[test]
    fn statistics_run_over_batch_and_space() {
        let x = t(&DIMS, &X);
        assert_eq!(channel_sum(x).unwrap(), vec![14.0, 22.0]);
        let mean = batch_mean(x).unwrap();
        assert_eq!(mean, vec![3.5, 5.5]);
        // Deviations ±1.5, ±2.5 → variance (2.25 + 6.25)/2 = 4.25 in both channels.
        assert_eq!(batch_var(x, t(&[2], &mean)).unwrap(), vec![4.25, 4.25]);
    }

    #[test]
    fn apply_normalises_then_scales_and_shifts() {
        let x = t(&[1, 1, 1, 2], &[0.0, 2.0]);
        let norm = Normalisation {
            mean: t(&[1], &[1.0]),
            var: t(&[1], &[1.0]),
            scale: t(&[1], &[3.0]),
            shift: t(&[1], &[10.0]),
            eps: 0.0,
        };
        assert_eq!(batch_norm_apply(x, norm).unwrap(), vec![7.0, 13.0]);
    }

    #[test]
    fn grads_match_hand_computed_values() {
        // One channel, x = [0, 2]: mean 1, var 1, x̂ = [-1, 1]; dy = [1, 3], γ = 2, eps 0.
        let x = t(&[1, 1, 1, 2], &[0.0, 2.0]);
        let dy = t(&[1, 1, 1, 2], &[1.0, 3.0]);
        let one = [1.0];
        let dscale = batch_norm_scale_grad(dy, x, t(&[1], &one), t(&[1], &one), 0.0).unwrap();
        assert_eq!(dscale, vec![2.0]);
        let parts = InputGradParts {
            mean: t(&[1], &one),
            var: t(&[1], &one),
            scale: t(&[1], &[2.0]),
            dscale: t(&[1], &dscale),
            dshift: t(&[1], &[4.0]),
            eps: 0.0,
        };
        // dx = 2·1/2·(2·dy − 4 − x̂·2) = [2 − 4 + 2, 6 − 4 − 2] = [0, 0].
        assert_eq!(batch_norm_input_grad(dy, x, parts).unwrap(), vec![0.0, 0.0]);
    }

    #[test]
    fn running_update_is_pytorchs_formula() {
        let x = t(&DIMS, &X);
        let mean = running_update(t(&[2], &[0.0, 0.0]), t(&[2], &[3.5, 5.5]), x, 0.1, false);
        assert_eq!(mean.unwrap(), vec![0.1 * 3.5, 0.1 * 5.5]);
        // Unbiased variance of four values with biased variance 4.25: 4.25·4/3.
        let var = running_update(t(&[2], &[1.0, 1.0]), t(&[2], &[4.25, 4.25]), x, 0.1, true);
        let expected = (1.0 - 0.1) * 1.0 + 0.1 * 4.25 * (4.0 / 3.0);
        assert_eq!(var.unwrap(), vec![expected, expected]);
        let single = t(&[1, 2, 1, 1], &[1.0, 2.0]);
        let refused = running_update(
            t(&[2], &[1.0, 1.0]),
            t(&[2], &[0.0, 0.0]),
            single,
            0.1,
            true,
        );
        assert!(matches!(
            refused,
            Err(ReferenceError::TooFewForVariance { count: 1 })
        ));
    }
}
