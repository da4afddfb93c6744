//! The reference meaning of every op: one exhaustive `match` over [`Op`] that checks operand
//! counts and calls the kernel of the op's family.
//!
//! Invariant: no `_ =>` arm, so a new op does not compile until it has a reference meaning.

use super::conv::{self, Window};
use super::elementwise::{self, DropoutMask};
use super::norm::{self, InputGradParts, Normalisation};
use super::optimizer::{sgd_update, Sgd};
use super::pool::{self, PoolWindow, Shortcut};
use super::tensor::Tensor;
use super::{arity, loss, Mode, NodeContext, ReferenceError, State};
use crate::ir::Op;

/// The value of one node (`operands` in slot order). Effects also write `state`.
pub(super) fn compute(
    op: &Op,
    ctx: &NodeContext,
    operands: &[Tensor],
    state: &mut State,
) -> Result<Vec<f64>, ReferenceError> {
    let name = op.name();
    let out = ctx.out.as_slice();
    let x = |slot: usize| operands[slot];
    let optional = |slot: usize| operands.get(slot).copied();
    match op {
        Op::Input { name } => fed(name, ctx.feeds.inputs.get(name), "input", out),
        Op::Labels { name } => {
            let labels = ctx.feeds.labels.get(name);
            let labels = labels.map(|labels| labels.iter().map(|&l| f64::from(l)).collect());
            fed(name, labels.as_ref(), "labels", out)
        }
        Op::Scalar { name } => {
            let value = ctx.feeds.scalars.get(name);
            let kind = "scalar";
            value.map(|&v| vec![v]).ok_or(ReferenceError::MissingFeed {
                kind,
                name: name.clone(),
            })
        }
        Op::Param { name, .. } => stored(name, state, out),
        Op::Conv2d {
            stride,
            padding,
            bias,
        } => {
            arity(name, operands, 2 + usize::from(*bias), false)?;
            let window = Window {
                stride: *stride,
                padding: *padding,
            };
            conv::conv2d(x(0), x(1), optional(2), window, out)
        }
        Op::Dense { bias } => {
            arity(name, operands, 2 + usize::from(*bias), false)?;
            conv::dense(x(0), x(1), optional(2), out)
        }
        Op::BatchNorm { eps, .. } => {
            arity(name, operands, 5, false)?;
            batch_norm(ctx.feeds.mode, operands, f64::from(*eps))
        }
        Op::Activation(act) => {
            arity(name, operands, 2, true)?;
            elementwise::activation(act, x(0), optional(1))
        }
        Op::Mix { weights } => elementwise::mix(weights, operands),
        Op::Add => elementwise::add(operands),
        Op::MaxPool {
            kernel,
            stride,
            padding,
        } => {
            arity(name, operands, 1, false)?;
            let window = PoolWindow {
                kernel: *kernel,
                stride: *stride,
                padding: *padding,
            };
            pool::max_pool(x(0), window, out)
        }
        Op::AvgPool {
            kernel,
            stride,
            padding,
        } => {
            arity(name, operands, 1, false)?;
            let window = PoolWindow {
                kernel: *kernel,
                stride: *stride,
                padding: *padding,
            };
            pool::avg_pool(x(0), window, out)
        }
        Op::GlobalAvgPool => {
            arity(name, operands, 1, false)?;
            pool::global_avg_pool(x(0), out)
        }
        Op::Flatten | Op::Reshape => {
            arity(name, operands, 1, false)?;
            Ok(x(0).data.to_vec())
        }
        Op::Dropout { p } => {
            arity(name, operands, 1, false)?;
            Ok(match ctx.feeds.mode {
                Mode::Train => {
                    let site = ctx.id.index() as u32;
                    let mask = DropoutMask {
                        seed: ctx.feeds.dropout_seed,
                        site,
                        p: *p,
                    };
                    elementwise::dropout(x(0), mask)
                }
                Mode::Eval => x(0).data.to_vec(),
            })
        }
        Op::ShortcutA {
            stride,
            pad_channels,
        } => {
            arity(name, operands, 1, false)?;
            let shortcut = Shortcut {
                stride: *stride,
                pad_channels: *pad_channels,
            };
            pool::shortcut_a(x(0), shortcut, out)
        }
        Op::SoftmaxCrossEntropy => {
            arity(name, operands, 2, false)?;
            Ok(vec![loss::softmax_cross_entropy(x(0), x(1))?])
        }
        Op::BatchMean => {
            arity(name, operands, 1, false)?;
            norm::batch_mean(x(0))
        }
        Op::BatchVar => {
            arity(name, operands, 2, false)?;
            norm::batch_var(x(0), x(1))
        }
        Op::BatchNormApply { eps } => {
            arity(name, operands, 5, false)?;
            let (mean, var, scale, shift) = (x(1), x(2), x(3), x(4));
            let norm = Normalisation {
                mean,
                var,
                scale,
                shift,
                eps: f64::from(*eps),
            };
            norm::batch_norm_apply(x(0), norm)
        }
        Op::ChannelSum => {
            arity(name, operands, 1, false)?;
            norm::channel_sum(x(0))
        }
        Op::BatchNormScaleGrad { eps } => {
            arity(name, operands, 4, false)?;
            norm::batch_norm_scale_grad(x(0), x(1), x(2), x(3), f64::from(*eps))
        }
        Op::BatchNormInputGrad { eps } => {
            arity(name, operands, 7, false)?;
            let (mean, var, scale, dscale, dshift) = (x(2), x(3), x(4), x(5), x(6));
            let eps = f64::from(*eps);
            let parts = InputGradParts {
                mean,
                var,
                scale,
                dscale,
                dshift,
                eps,
            };
            norm::batch_norm_input_grad(x(0), x(1), parts)
        }
        Op::RunningUpdate { momentum, unbiased } => {
            arity(name, operands, 3, false)?;
            let momentum = f64::from(*momentum);
            let updated = norm::running_update(x(0), x(1), x(2), momentum, *unbiased)?;
            state.insert(ctx.state_name(name, 0)?, updated.clone());
            Ok(updated)
        }
        Op::Conv2dInputGrad { stride, padding } => {
            arity(name, operands, 2, false)?;
            let window = Window {
                stride: *stride,
                padding: *padding,
            };
            conv::conv2d_input_grad(x(0), x(1), window, out)
        }
        Op::Conv2dWeightGrad { stride, padding } => {
            arity(name, operands, 2, false)?;
            let window = Window {
                stride: *stride,
                padding: *padding,
            };
            conv::conv2d_weight_grad(x(0), x(1), window, out)
        }
        Op::DenseInputGrad => {
            arity(name, operands, 2, false)?;
            conv::dense_input_grad(x(0), x(1), out)
        }
        Op::DenseWeightGrad => {
            arity(name, operands, 2, false)?;
            conv::dense_weight_grad(x(0), x(1), out)
        }
        Op::ActivationGrad(act) => {
            arity(name, operands, 3, true)?;
            elementwise::activation_grad(act, x(0), x(1), optional(2))
        }
        Op::PreluSlopeGrad => {
            arity(name, operands, 2, false)?;
            elementwise::prelu_slope_grad(x(0), x(1), out)
        }
        Op::Scale { factor } => {
            arity(name, operands, 1, false)?;
            Ok(elementwise::scale(*factor, x(0)))
        }
        Op::MaxPoolGrad {
            kernel,
            stride,
            padding,
        } => {
            arity(name, operands, 2, false)?;
            let window = PoolWindow {
                kernel: *kernel,
                stride: *stride,
                padding: *padding,
            };
            pool::max_pool_grad(x(0), x(1), window)
        }
        Op::AvgPoolGrad {
            kernel,
            stride,
            padding,
        } => {
            arity(name, operands, 1, false)?;
            let window = PoolWindow {
                kernel: *kernel,
                stride: *stride,
                padding: *padding,
            };
            pool::avg_pool_grad(x(0), window, out)
        }
        Op::GlobalAvgPoolGrad => {
            arity(name, operands, 1, false)?;
            pool::global_avg_pool_grad(x(0), out)
        }
        Op::DropoutGrad { p, site } => {
            arity(name, operands, 2, false)?;
            let mask = DropoutMask {
                seed: ctx.feeds.dropout_seed,
                site: *site,
                p: *p,
            };
            Ok(elementwise::dropout(x(0), mask))
        }
        Op::ShortcutAGrad {
            stride,
            pad_channels,
        } => {
            arity(name, operands, 1, false)?;
            let shortcut = Shortcut {
                stride: *stride,
                pad_channels: *pad_channels,
            };
            pool::shortcut_a_grad(x(0), shortcut, out)
        }
        Op::SoftmaxCrossEntropyGrad => {
            arity(name, operands, 2, false)?;
            loss::softmax_cross_entropy_grad(x(0), x(1))
        }
        Op::CorrectCount => {
            arity(name, operands, 2, false)?;
            Ok(vec![loss::correct_count(x(0), x(1))?])
        }
        Op::SgdUpdate {
            momentum,
            weight_decay,
            nesterov,
        } => {
            arity(name, operands, 4, false)?;
            let lr = x(3).data.first().copied().unwrap_or(0.0);
            let (momentum, weight_decay) = (f64::from(*momentum), f64::from(*weight_decay));
            let sgd = Sgd {
                lr,
                momentum,
                weight_decay,
                nesterov: *nesterov,
            };
            let (param, buffer) = sgd_update(x(0), x(1), x(2), sgd)?;
            state.insert(ctx.state_name(name, 0)?, param.clone());
            state.insert(ctx.state_name(name, 2)?, buffer);
            Ok(param)
        }
    }
}

/// A fed leaf's value, checked against its type.
fn fed(
    name: &str,
    value: Option<&Vec<f64>>,
    kind: &'static str,
    out: &[usize],
) -> Result<Vec<f64>, ReferenceError> {
    let value = value.ok_or_else(|| ReferenceError::MissingFeed {
        kind,
        name: name.into(),
    })?;
    checked_length(name, value, out)
}

/// A parameter's value from the state, checked against its type.
fn stored(name: &str, state: &State, out: &[usize]) -> Result<Vec<f64>, ReferenceError> {
    let value = state.get(name);
    let value = value.ok_or_else(|| ReferenceError::MissingState { name: name.into() })?;
    checked_length(name, value, out)
}

/// `value` when it has the element count of `out`.
fn checked_length(name: &str, value: &[f64], out: &[usize]) -> Result<Vec<f64>, ReferenceError> {
    let expected: usize = out.iter().product();
    if value.len() == expected {
        Ok(value.to_vec())
    } else {
        Err(ReferenceError::WrongLength {
            name: name.into(),
            expected,
            found: value.len(),
        })
    }
}

/// A whole BatchNorm layer: batch statistics in training, running statistics in evaluation.
/// `[x, scale, shift, running mean, running var]`.
fn batch_norm(mode: Mode, operands: &[Tensor], eps: f64) -> Result<Vec<f64>, ReferenceError> {
    let [x, scale, shift, running_mean, running_var] = operands else {
        let found = operands.len();
        return Err(ReferenceError::Operands {
            op: "batchnorm",
            expected: 5,
            found,
        });
    };
    let (mean, var) = match mode {
        Mode::Train => {
            let mean = norm::batch_mean(*x)?;
            let var = norm::batch_var(
                *x,
                Tensor {
                    dims: running_mean.dims,
                    data: &mean,
                },
            )?;
            (mean, var)
        }
        Mode::Eval => (running_mean.data.to_vec(), running_var.data.to_vec()),
    };
    let dims = running_mean.dims;
    let mean = Tensor { dims, data: &mean };
    let var = Tensor { dims, data: &var };
    norm::batch_norm_apply(
        *x,
        Normalisation {
            mean,
            var,
            scale: *scale,
            shift: *shift,
            eps,
        },
    )
}
