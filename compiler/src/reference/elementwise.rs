//! Reference element-wise ops: activations and their gradients, the PReLU slope gradient,
//! mix, add, scale and dropout.
//!
//! Invariant: constants stored as `f32` in the IR are widened to `f64` once, exactly, so a
//! float32 kernel and this reference compute with the same constants.

use super::dropout::keep;
use super::tensor::{expect_dims, ChannelLayout, Tensor};
use super::ReferenceError;
use crate::ir::Activation;

/// The PReLU slope seen by each element: one shared value (`[1]`) or one per channel (`[C]`).
fn slope_lookup<'a>(
    op: &'static str,
    x: Tensor,
    slope: Option<Tensor<'a>>,
) -> Result<impl Fn(usize) -> f64 + 'a, ReferenceError> {
    let slope = slope.ok_or(ReferenceError::Operands {
        op,
        expected: 2,
        found: 1,
    })?;
    let layout = match slope.data.len() {
        1 => ChannelLayout {
            batch: 1,
            channels: 1,
            inner: 1,
        },
        _ => {
            let layout = x.channel_layout(op)?;
            expect_dims(op, &[layout.channels], slope.dims)?;
            layout
        }
    };
    Ok(move |index: usize| slope.data[layout.channel_of(index)])
}

/// `f(index, value)` for every element of `x`.
fn map_elements(x: Tensor, f: impl Fn(usize, f64) -> f64) -> Vec<f64> {
    x.data
        .iter()
        .enumerate()
        .map(|(index, &value)| f(index, value))
        .collect()
}

/// `F(x)` for one activation, element-wise (`slope` is PReLU's second operand).
pub(crate) fn activation(
    act: &Activation,
    x: Tensor,
    slope: Option<Tensor>,
) -> Result<Vec<f64>, ReferenceError> {
    Ok(match *act {
        Activation::Relu => map_elements(x, |_, v| v.max(0.0)),
        Activation::Prelu => {
            let slope = slope_lookup("prelu", x, slope)?;
            map_elements(x, |i, v| if v > 0.0 { v } else { slope(i) * v })
        }
        Activation::Elu { alpha } => {
            let alpha = f64::from(alpha);
            map_elements(x, |_, v| if v > 0.0 { v } else { alpha * v.exp_m1() })
        }
        Activation::Softplus { beta, threshold } => {
            let (beta, threshold) = (f64::from(beta), f64::from(threshold));
            map_elements(x, |_, v| {
                if beta * v > threshold {
                    v
                } else {
                    (beta * v).exp().ln_1p() / beta
                }
            })
        }
        Activation::LeakyRelu { slope } => {
            let slope = f64::from(slope);
            map_elements(x, |_, v| if v > 0.0 { v } else { slope * v })
        }
        Activation::Identity => x.data.to_vec(),
    })
}

/// `dx = dy·F'(x)`, with PyTorch's one-sided choices at the kinks (0 for ReLU at 0; the
/// negative-side slope for PReLU and leaky ReLU at 0; `α·eˣ` for ELU at `x ≤ 0`).
pub(crate) fn activation_grad(
    act: &Activation,
    dy: Tensor,
    x: Tensor,
    slope: Option<Tensor>,
) -> Result<Vec<f64>, ReferenceError> {
    expect_dims("activation_grad", x.dims, dy.dims)?;
    let derivative: Vec<f64> = match *act {
        Activation::Relu => x
            .data
            .iter()
            .map(|&v| if v > 0.0 { 1.0 } else { 0.0 })
            .collect(),
        Activation::Prelu => {
            let slope = slope_lookup("activation_grad", x, slope)?;
            let values = x.data.iter().enumerate();
            values
                .map(|(i, &v)| if v > 0.0 { 1.0 } else { slope(i) })
                .collect()
        }
        Activation::Elu { alpha } => {
            let alpha = f64::from(alpha);
            x.data
                .iter()
                .map(|&v| if v > 0.0 { 1.0 } else { alpha * v.exp() })
                .collect()
        }
        Activation::Softplus { beta, threshold } => {
            let (beta, threshold) = (f64::from(beta), f64::from(threshold));
            let sigmoid = |v: f64| 1.0 / (1.0 + (-beta * v).exp());
            let values = x.data.iter();
            values
                .map(|&v| {
                    if beta * v > threshold {
                        1.0
                    } else {
                        sigmoid(v)
                    }
                })
                .collect()
        }
        Activation::LeakyRelu { slope } => {
            let slope = f64::from(slope);
            x.data
                .iter()
                .map(|&v| if v > 0.0 { 1.0 } else { slope })
                .collect()
        }
        Activation::Identity => vec![1.0; x.data.len()],
    };
    Ok(dy
        .data
        .iter()
        .zip(derivative)
        .map(|(grad, d)| grad * d)
        .collect())
}

/// `dslope = Σ dy·x` over the elements with `x ≤ 0`, summed to the slope's shape (`[1]`
/// shared, `[C]` per channel).
pub(crate) fn prelu_slope_grad(
    dy: Tensor,
    x: Tensor,
    out: &[usize],
) -> Result<Vec<f64>, ReferenceError> {
    const OP: &str = "prelu_slope_grad";
    expect_dims(OP, x.dims, dy.dims)?;
    let slots: usize = out.iter().product();
    let layout = match slots {
        1 => ChannelLayout {
            batch: 1,
            channels: 1,
            inner: 1,
        },
        _ => {
            let layout = x.channel_layout(OP)?;
            expect_dims(OP, &[layout.channels], out)?;
            layout
        }
    };
    let mut dslope = vec![0.0; slots];
    for (index, (&value, grad)) in x.data.iter().zip(dy.data).enumerate() {
        if value <= 0.0 {
            dslope[layout.channel_of(index)] += grad * value;
        }
    }
    Ok(dslope)
}

/// `y = Σᵢ weights[i]·operandᵢ`.
pub(crate) fn mix(weights: &[f32], operands: &[Tensor]) -> Result<Vec<f64>, ReferenceError> {
    if weights.len() != operands.len() {
        let (expected, found) = (weights.len(), operands.len());
        return Err(ReferenceError::Operands {
            op: "mix",
            expected,
            found,
        });
    }
    let mut y = vec![0.0; operands.first().map_or(0, |first| first.data.len())];
    for (weight, operand) in weights.iter().zip(operands) {
        expect_dims("mix", operands[0].dims, operand.dims)?;
        for (sum, value) in y.iter_mut().zip(operand.data) {
            *sum += f64::from(*weight) * value;
        }
    }
    Ok(y)
}

/// `y = Σ operandᵢ`, summed in slot order.
pub(crate) fn add(operands: &[Tensor]) -> Result<Vec<f64>, ReferenceError> {
    let Some((first, rest)) = operands.split_first() else {
        return Err(ReferenceError::Operands {
            op: "add",
            expected: 2,
            found: 0,
        });
    };
    let mut y = first.data.to_vec();
    for operand in rest {
        expect_dims("add", first.dims, operand.dims)?;
        for (sum, value) in y.iter_mut().zip(operand.data) {
            *sum += value;
        }
    }
    Ok(y)
}

/// `y = factor·x`.
pub(crate) fn scale(factor: f32, x: Tensor) -> Vec<f64> {
    x.data
        .iter()
        .map(|value| f64::from(factor) * value)
        .collect()
}

/// Where a dropout mask comes from: the step's seed and the site.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DropoutMask {
    /// The step's dropout seed.
    pub seed: u64,
    /// The forward Dropout node's site.
    pub site: u32,
    /// Drop probability.
    pub p: f32,
}

/// `y = x·mask/(1 − p)` with `mask[i] = keep(seed, site, i, p)`, `i` the flat index over the
/// whole batched tensor. Used for the forward dropout (on `x`) and its gradient (on `dy`).
pub(crate) fn dropout(values: Tensor, mask: DropoutMask) -> Vec<f64> {
    let survivor_scale = 1.0 / (1.0 - f64::from(mask.p));
    let scaled = values.data.iter().enumerate().map(|(index, value)| {
        if keep(mask.seed, mask.site, index as u64, mask.p) {
            value * survivor_scale
        } else {
            0.0
        }
    });
    scaled.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t<'a>(dims: &'a [usize], data: &'a [f64]) -> Tensor<'a> {
        Tensor { dims, data }
    }

    const X: [f64; 4] = [-2.0, -0.5, 0.0, 3.0];
    const DIMS: [usize; 2] = [2, 2];

    fn forward(act: Activation, slope: Option<Tensor>) -> Vec<f64> {
        activation(&act, t(&DIMS, &X), slope).unwrap()
    }

    #[test]
    fn activations_match_hand_computed_values() {
        assert_eq!(forward(Activation::Relu, None), vec![0.0, 0.0, 0.0, 3.0]);
        let shared = forward(Activation::Prelu, Some(t(&[1], &[0.25])));
        assert_eq!(shared, vec![-0.5, -0.125, 0.0, 3.0]);
        // Per channel over [N=2, C=2]: channel 0 slope 0.1, channel 1 slope 2.
        let per_channel = forward(Activation::Prelu, Some(t(&[2], &[0.1, 2.0])));
        assert_eq!(per_channel, vec![-2.0 * 0.1, -1.0, 0.0, 3.0]);
        let elu = forward(Activation::Elu { alpha: 1.0 }, None);
        assert_eq!(
            elu,
            vec![(-2.0f64).exp() - 1.0, (-0.5f64).exp() - 1.0, 0.0, 3.0]
        );
        let softplus = forward(
            Activation::Softplus {
                beta: 1.0,
                threshold: 20.0,
            },
            None,
        );
        let expected: Vec<f64> = X.iter().map(|v| (1.0 + v.exp()).ln()).collect();
        for (got, want) in softplus.iter().zip(&expected) {
            assert!((got - want).abs() < 1e-15, "{got} vs {want}");
        }
        let linear = forward(
            Activation::Softplus {
                beta: 2.0,
                threshold: 5.0,
            },
            None,
        );
        assert_eq!(linear[3], 3.0);
        let leaky = forward(Activation::LeakyRelu { slope: 0.5 }, None);
        assert_eq!(leaky, vec![-1.0, -0.25, 0.0, 3.0]);
        assert_eq!(forward(Activation::Identity, None), X.to_vec());
    }

    fn backward(act: Activation, slope: Option<Tensor>) -> Vec<f64> {
        let dy = [1.0, 2.0, 3.0, 4.0];
        activation_grad(&act, t(&DIMS, &dy), t(&DIMS, &X), slope).unwrap()
    }

    #[test]
    fn activation_grads_match_hand_computed_values() {
        assert_eq!(backward(Activation::Relu, None), vec![0.0, 0.0, 0.0, 4.0]);
        let shared = backward(Activation::Prelu, Some(t(&[1], &[0.25])));
        assert_eq!(shared, vec![0.25, 0.5, 0.75, 4.0]);
        let elu = backward(Activation::Elu { alpha: 2.0 }, None);
        assert_eq!(
            elu,
            vec![2.0 * (-2.0f64).exp(), 4.0 * (-0.5f64).exp(), 6.0, 4.0]
        );
        let softplus = backward(
            Activation::Softplus {
                beta: 1.0,
                threshold: 20.0,
            },
            None,
        );
        assert_eq!(softplus[2], 1.5);
        let leaky = backward(Activation::LeakyRelu { slope: 0.5 }, None);
        assert_eq!(leaky, vec![0.5, 1.0, 1.5, 4.0]);
        assert_eq!(
            backward(Activation::Identity, None),
            vec![1.0, 2.0, 3.0, 4.0]
        );
    }

    #[test]
    fn prelu_slope_grad_sums_over_non_positive_inputs() {
        let dy = [1.0, 2.0, 3.0, 4.0];
        let shared = prelu_slope_grad(t(&DIMS, &dy), t(&DIMS, &X), &[1]).unwrap();
        assert_eq!(shared, vec![-2.0 - 1.0]);
        let per_channel = prelu_slope_grad(t(&DIMS, &dy), t(&DIMS, &X), &[2]).unwrap();
        assert_eq!(per_channel, vec![-2.0, -1.0]);
    }

    #[test]
    fn mix_add_and_scale_combine_operands() {
        let a = [1.0, 2.0];
        let b = [10.0, 20.0];
        let mixed = mix(&[0.5, 0.25], &[t(&[2], &a), t(&[2], &b)]).unwrap();
        assert_eq!(mixed, vec![3.0, 6.0]);
        assert!(mix(&[1.0], &[t(&[2], &a), t(&[2], &b)]).is_err());
        assert_eq!(
            add(&[t(&[2], &a), t(&[2], &b), t(&[2], &a)]).unwrap(),
            vec![12.0, 24.0]
        );
        assert_eq!(scale(-2.0, t(&[2], &a)), vec![-2.0, -4.0]);
    }

    #[test]
    fn dropout_zeroes_or_rescales_by_the_mask() {
        let x = vec![1.0; 1000];
        let mask = DropoutMask {
            seed: 7,
            site: 3,
            p: 0.25,
        };
        let y = dropout(t(&[1000], &x), mask);
        let kept = y.iter().filter(|&&v| v != 0.0).count();
        assert!(y.iter().all(|&v| v == 0.0 || v == 1.0 / 0.75));
        assert!((700..800).contains(&kept), "{kept}");
        for (index, value) in y.iter().enumerate() {
            assert_eq!(*value != 0.0, keep(7, 3, index as u64, 0.25));
        }
    }
}
