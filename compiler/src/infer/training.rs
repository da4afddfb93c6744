//! Type rules of the training-graph ops (BatchNorm statistics, gradients, the optimizer).
//!
//! These ops are made by autodiff, which records each node's type; the rules here let the
//! verifier check those records. Ops whose type is derived from their operands are in
//! [`infer`]; those whose type is "x's" (a gradient whose operands do not determine it) are
//! checked against the recorded type in [`check_given`].

use super::{batched, classifier_with_labels, fixed, kind_error, Arity, ShapeError};
use crate::ir::{DType, Op, TensorType};

/// Operand counts of the training ops.
pub(super) fn arity(op: &Op) -> Option<Arity> {
    use Arity::Exactly;
    Some(Exactly(match op {
        Op::BatchMean | Op::ChannelSum | Op::Scale { .. } | Op::Reshape => 1,
        Op::AvgPoolGrad { .. } | Op::GlobalAvgPoolGrad | Op::ShortcutAGrad { .. } => 1,
        Op::BatchVar | Op::DenseInputGrad | Op::DenseWeightGrad | Op::PreluSlopeGrad => 2,
        Op::Conv2dInputGrad { .. } | Op::Conv2dWeightGrad { .. } | Op::MaxPoolGrad { .. } => 2,
        Op::DropoutGrad { .. } | Op::SoftmaxCrossEntropyGrad | Op::CorrectCount => 2,
        Op::RunningUpdate { .. } => 3,
        Op::BatchNormScaleGrad { .. } | Op::SgdUpdate { .. } => 4,
        Op::BatchNormApply { .. } => 5,
        Op::BatchNormInputGrad { .. } => 7,
        Op::ActivationGrad(activation) => {
            2 + usize::from(*activation == crate::ir::Activation::Prelu)
        }
        _ => return None,
    }))
}

/// Types of the training ops that follow from their operands.
pub(super) fn infer(op: &Op, operands: &[&TensorType]) -> Result<TensorType, ShapeError> {
    let name = op.name();
    match op {
        // mean, sum: [N,C,...] -> [C]
        Op::BatchMean | Op::ChannelSum => Ok(per_channel(name, 0, operands[0])?),
        Op::BatchVar => {
            let stat = per_channel(name, 0, operands[0])?;
            channel_vectors(name, operands, &stat, 1..2)?;
            Ok(stat)
        }
        Op::BatchNormApply { .. } => {
            let stat = per_channel(name, 0, operands[0])?;
            channel_vectors(name, operands, &stat, 1..5)?;
            Ok(operands[0].clone())
        }
        Op::BatchNormScaleGrad { .. } => {
            same_batched(name, operands, 0, 1)?;
            let stat = per_channel(name, 1, operands[1])?;
            channel_vectors(name, operands, &stat, 2..4)?;
            Ok(stat)
        }
        Op::BatchNormInputGrad { .. } => {
            same_batched(name, operands, 0, 1)?;
            let stat = per_channel(name, 1, operands[1])?;
            channel_vectors(name, operands, &stat, 2..7)?;
            Ok(operands[1].clone())
        }
        Op::RunningUpdate { .. } => {
            let stat = per_channel(name, 2, operands[2])?;
            channel_vectors(name, operands, &stat, 0..2)?;
            Ok(stat)
        }
        Op::DenseInputGrad => dense_input_grad(operands),
        Op::DenseWeightGrad => dense_weight_grad(operands),
        Op::ActivationGrad(activation) => {
            same_batched(name, operands, 0, 1)?;
            if *activation == crate::ir::Activation::Prelu {
                slope(name, 2, operands[2], &operands[1].dims)?;
            }
            Ok(operands[1].clone())
        }
        Op::Scale { .. } => Ok(operands[0].clone()),
        Op::MaxPoolGrad {
            kernel,
            stride,
            padding,
        } => {
            let pooled = super::infer(
                &Op::MaxPool {
                    kernel: *kernel,
                    stride: *stride,
                    padding: *padding,
                },
                &[operands[1]],
            )?;
            equal(name, operands, 0, &pooled)?;
            Ok(operands[1].clone())
        }
        Op::DropoutGrad { .. } => {
            same_batched(name, operands, 0, 1)?;
            Ok(operands[0].clone())
        }
        Op::SoftmaxCrossEntropyGrad => {
            classifier_with_labels(name, operands)?;
            Ok(operands[0].clone())
        }
        Op::CorrectCount => {
            classifier_with_labels(name, operands)?;
            Ok(TensorType::scalar())
        }
        Op::SgdUpdate { .. } => sgd_update(operands),
        _ => Err(ShapeError::NotInferable { op: name }),
    }
}

/// Checks the ops whose type is given at creation (leaves and "x's type" gradients).
pub(super) fn check_given(
    op: &Op,
    operands: &[&TensorType],
    recorded: &TensorType,
) -> Result<(), ShapeError> {
    let name = op.name();
    match op {
        Op::Input { .. } => batched(name, 0, recorded, 0).map(drop),
        Op::Labels { .. } => label_type(name, recorded),
        Op::Scalar { .. } => fixed(name, 0, recorded, &[], "an f32 scalar"),
        Op::Param { .. } if recorded.batched || recorded.dtype != DType::F32 => {
            Err(kind_error(name, 0, "an unbatched f32 tensor", recorded))
        }
        Op::Param { .. } => Ok(()),
        // the forward conv of the recorded x with the weight gives dy
        Op::Conv2dInputGrad { stride, padding } => {
            let forward = Op::Conv2d {
                stride: *stride,
                padding: *padding,
                bias: false,
            };
            let dy = super::infer(&forward, &[recorded, operands[1]])?;
            equal(name, operands, 0, &dy)
        }
        Op::Conv2dWeightGrad { stride, padding } => {
            let forward = Op::Conv2d {
                stride: *stride,
                padding: *padding,
                bias: false,
            };
            let dy = super::infer(&forward, &[operands[1], recorded])?;
            equal(name, operands, 0, &dy)
        }
        Op::PreluSlopeGrad => {
            same_batched(name, operands, 0, 1)?;
            slope(name, 0, recorded, &operands[1].dims)
        }
        Op::AvgPoolGrad {
            kernel,
            stride,
            padding,
        } => {
            let forward = Op::AvgPool {
                kernel: *kernel,
                stride: *stride,
                padding: *padding,
            };
            equal(name, operands, 0, &super::infer(&forward, &[recorded])?)
        }
        Op::GlobalAvgPoolGrad => equal(
            name,
            operands,
            0,
            &super::infer(&Op::GlobalAvgPool, &[recorded])?,
        ),
        Op::ShortcutAGrad {
            stride,
            pad_channels,
        } => {
            let forward = Op::ShortcutA {
                stride: *stride,
                pad_channels: *pad_channels,
            };
            equal(name, operands, 0, &super::infer(&forward, &[recorded])?)
        }
        Op::Reshape => {
            let same_count = operands[0].item_elements() == recorded.item_elements();
            if same_count && operands[0].batched == recorded.batched {
                Ok(())
            } else {
                Err(kind_error(
                    name,
                    0,
                    "as many elements as the result",
                    operands[0],
                ))
            }
        }
        _ => Err(ShapeError::NotInferable { op: name }),
    }
}

fn label_type(op: &'static str, ty: &TensorType) -> Result<(), ShapeError> {
    if ty.dtype == DType::I32 && ty.batched && ty.dims.is_empty() {
        Ok(())
    } else {
        Err(kind_error(op, 0, "batched i32[N] labels", ty))
    }
}

/// `[C]` for a batched `[N, C, ...]` operand.
fn per_channel(op: &'static str, slot: usize, ty: &TensorType) -> Result<TensorType, ShapeError> {
    let dims = batched(op, slot, ty, 1)?;
    Ok(TensorType::fixed(vec![dims[0]]))
}

/// Every operand in `slots` has the per-channel type `stat`.
fn channel_vectors(
    op: &'static str,
    operands: &[&TensorType],
    stat: &TensorType,
    slots: std::ops::Range<usize>,
) -> Result<(), ShapeError> {
    for slot in slots {
        fixed(
            op,
            slot,
            operands[slot],
            &stat.dims,
            "an f32[C] per-channel vector",
        )?;
    }
    Ok(())
}

/// Operands `lhs` and `rhs` are the same batched tensor type.
fn same_batched(
    op: &'static str,
    operands: &[&TensorType],
    lhs: usize,
    rhs: usize,
) -> Result<(), ShapeError> {
    batched(op, lhs, operands[lhs], 0)?;
    if operands[lhs] == operands[rhs] {
        Ok(())
    } else {
        Err(ShapeError::OperandMismatch {
            op,
            lhs_slot: lhs,
            lhs: operands[lhs].clone(),
            rhs_slot: rhs,
            rhs: operands[rhs].clone(),
        })
    }
}

/// Operand `slot` equals `expected`.
fn equal(
    op: &'static str,
    operands: &[&TensorType],
    slot: usize,
    expected: &TensorType,
) -> Result<(), ShapeError> {
    if operands[slot] == expected {
        Ok(())
    } else {
        Err(ShapeError::RecordedTypeMismatch {
            op,
            inferred: expected.clone(),
            recorded: operands[slot].clone(),
        })
    }
}

/// A PReLU slope `[1]` or `[C]` for activations of dims `dims`.
fn slope(op: &'static str, slot: usize, ty: &TensorType, dims: &[usize]) -> Result<(), ShapeError> {
    let channels = dims.first().copied().unwrap_or(1);
    let fits = ty.dtype == DType::F32 && !ty.batched && (ty.dims == [1] || ty.dims == [channels]);
    if fits {
        Ok(())
    } else {
        Err(kind_error(op, slot, "an f32[1] or f32[C] slope", ty))
    }
}

// dx = dy·W: dy[N,M], W[M,K] -> [N,K]
fn dense_input_grad(operands: &[&TensorType]) -> Result<TensorType, ShapeError> {
    let op = "dense_input_grad";
    let &[outputs] = batched(op, 0, operands[0], 1)? else {
        return Err(kind_error(
            op,
            0,
            "a batched f32[N,M] gradient",
            operands[0],
        ));
    };
    match operands[1].dims.as_slice() {
        &[weight_outputs, features] if weight_outputs == outputs && !operands[1].batched => {
            Ok(TensorType::batch(vec![features]))
        }
        _ => Err(kind_error(op, 1, "an f32[M,K] weight", operands[1])),
    }
}

// dW = dyᵀ·x: dy[N,M], x[N,K] -> [M,K]
fn dense_weight_grad(operands: &[&TensorType]) -> Result<TensorType, ShapeError> {
    let op = "dense_weight_grad";
    let &[outputs] = batched(op, 0, operands[0], 1)? else {
        return Err(kind_error(
            op,
            0,
            "a batched f32[N,M] gradient",
            operands[0],
        ));
    };
    let &[features] = batched(op, 1, operands[1], 1)? else {
        return Err(kind_error(op, 1, "a batched f32[N,K] input", operands[1]));
    };
    Ok(TensorType::fixed(vec![outputs, features]))
}

// param, grad and momentum buffer agree; lr is a scalar
fn sgd_update(operands: &[&TensorType]) -> Result<TensorType, ShapeError> {
    let op = "sgd_update";
    let param = operands[0];
    if param.batched {
        return Err(kind_error(op, 0, "an unbatched parameter", param));
    }
    for (slot, operand) in operands.iter().enumerate().take(3).skip(1) {
        fixed(
            op,
            slot,
            operand,
            &param.dims,
            "a tensor of the parameter's shape",
        )?;
    }
    fixed(op, 3, operands[3], &[], "an f32 scalar learning rate")?;
    Ok(param.clone())
}

#[cfg(test)]
mod tests {
    use super::super::{check, infer};
    use crate::ir::{Activation, DType, Op, TensorType};

    #[test]
    fn gradient_types_follow_their_forward_ops() {
        let x = TensorType::batch(vec![16, 32, 32]);
        let weight = TensorType::fixed(vec![32, 16, 3, 3]);
        let dy = TensorType::batch(vec![32, 16, 16]);
        let input_grad = Op::Conv2dInputGrad {
            stride: [2, 2],
            padding: [1, 1],
        };
        assert_eq!(check(&input_grad, &[&dy, &weight], &x), Ok(()));
        let weight_grad = Op::Conv2dWeightGrad {
            stride: [2, 2],
            padding: [1, 1],
        };
        assert_eq!(check(&weight_grad, &[&dy, &x], &weight), Ok(()));
        assert!(check(&weight_grad, &[&x, &x], &weight).is_err());
        let relu_grad = Op::ActivationGrad(Activation::Relu);
        assert_eq!(infer(&relu_grad, &[&x, &x]), Ok(x.clone()));
    }

    #[test]
    fn batchnorm_training_ops_are_per_channel() {
        let x = TensorType::batch(vec![16, 8, 8]);
        let stat = TensorType::fixed(vec![16]);
        assert_eq!(infer(&Op::BatchMean, &[&x]), Ok(stat.clone()));
        assert_eq!(infer(&Op::BatchVar, &[&x, &stat]), Ok(stat.clone()));
        let update = Op::RunningUpdate {
            momentum: 0.1,
            unbiased: true,
        };
        assert_eq!(infer(&update, &[&stat, &stat, &x]), Ok(stat.clone()));
        let apply = Op::BatchNormApply { eps: 1e-5 };
        assert_eq!(
            infer(&apply, &[&x, &stat, &stat, &stat, &stat]),
            Ok(x.clone())
        );
    }

    #[test]
    fn optimizer_and_metric_types() {
        let param = TensorType::fixed(vec![10, 64]);
        let lr = TensorType::scalar();
        let sgd = Op::SgdUpdate {
            momentum: 0.9,
            weight_decay: 1e-4,
            nesterov: false,
        };
        assert_eq!(
            infer(&sgd, &[&param, &param, &param, &lr]),
            Ok(param.clone())
        );
        let logits = TensorType::batch(vec![10]);
        let labels = TensorType {
            dtype: DType::I32,
            batched: true,
            dims: vec![],
        };
        assert_eq!(
            infer(&Op::CorrectCount, &[&logits, &labels]),
            Ok(TensorType::scalar())
        );
        let reshape = check(&Op::Reshape, &[&logits], &TensorType::batch(vec![10, 1, 1]));
        assert_eq!(reshape, Ok(()));
    }
}
