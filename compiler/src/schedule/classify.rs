//! How the scheduler sees each op: what kind of kernel computes it, and whether it can join an
//! element-wise fusion group.
//!
//! Invariant: the match in [`class_of`] is exhaustive with no catch-all arm, so a new op does
//! not compile until someone decides how it is scheduled.

use crate::ir::{Op, TensorType};

/// What computes a node's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpClass {
    /// A value the caller provides or keeps (input, labels, scalar feed, parameter): no
    /// kernel, its own storage.
    Leaf,
    /// The operand's bytes under another shape (`Flatten`, `Reshape`): no kernel, no storage.
    View,
    /// An element-wise op over its own type (operands broadcast per channel at most): fusable.
    Elementwise,
    /// A reduction to per-channel, per-row or scalar values.
    Reduction,
    /// A convolution or dense product (or a gradient of one), through a micro-kernel.
    Contraction,
    /// Pooling, shortcut gathers and scatters: windows over the spatial axes.
    Window,
    /// The loss, its gradient and the correct count: row-wise over logits.
    Loss,
    /// An in-place update of persistent state (SGD, running statistics).
    Effect,
}

/// The class of `op`.
pub fn class_of(op: &Op) -> OpClass {
    match op {
        Op::Input { .. } | Op::Labels { .. } | Op::Scalar { .. } | Op::Param { .. } => {
            OpClass::Leaf
        }
        Op::Flatten | Op::Reshape => OpClass::View,
        Op::Activation(_)
        | Op::ActivationGrad(_)
        | Op::Mix { .. }
        | Op::Add
        | Op::Scale { .. }
        | Op::BatchNorm { .. }
        | Op::BatchNormApply { .. }
        | Op::BatchNormInputGrad { .. }
        | Op::GlobalAvgPoolGrad
        | Op::Dropout { .. }
        | Op::DropoutGrad { .. } => OpClass::Elementwise,
        Op::BatchMean
        | Op::BatchVar
        | Op::ChannelSum
        | Op::BatchNormScaleGrad { .. }
        | Op::PreluSlopeGrad
        | Op::GlobalAvgPool => OpClass::Reduction,
        Op::Conv2d { .. }
        | Op::Dense { .. }
        | Op::Conv2dInputGrad { .. }
        | Op::Conv2dWeightGrad { .. }
        | Op::DenseInputGrad
        | Op::DenseWeightGrad => OpClass::Contraction,
        Op::MaxPool { .. }
        | Op::AvgPool { .. }
        | Op::MaxPoolGrad { .. }
        | Op::AvgPoolGrad { .. }
        | Op::ShortcutA { .. }
        | Op::ShortcutAGrad { .. } => OpClass::Window,
        Op::SoftmaxCrossEntropy | Op::SoftmaxCrossEntropyGrad | Op::CorrectCount => OpClass::Loss,
        Op::RunningUpdate { .. } | Op::SgdUpdate { .. } => OpClass::Effect,
    }
}

/// How an element-wise kernel over iteration type `space` reads an operand of type `operand`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Broadcast {
    /// Same type as the iteration space: element for element.
    Full,
    /// A `[C]` vector indexed by the channel (axis 1 of a batched space).
    Channel,
    /// A `[1]` vector (a shared PReLU slope): its only element everywhere.
    Single,
    /// A rank-0 scalar.
    Scalar,
    /// A batched `[N, C]` value indexed by batch item and channel (global pooling's gradient).
    BatchChannel,
}

/// The broadcast that reads `operand` inside a kernel iterating over `space`, if any.
pub fn broadcast_of(operand: &TensorType, space: &TensorType) -> Option<Broadcast> {
    if operand.dtype != space.dtype {
        return None;
    }
    if operand.batched == space.batched && operand.dims == space.dims {
        return Some(Broadcast::Full);
    }
    if operand.batched {
        let is_batch_channel = space.batched
            && operand.dims.len() == 1
            && space.dims.len() >= 2
            && space.dims.first() == operand.dims.first();
        return is_batch_channel.then_some(Broadcast::BatchChannel);
    }
    match operand.dims.as_slice() {
        [] => Some(Broadcast::Scalar),
        [1] => Some(Broadcast::Single),
        [channels] if space.batched && space.dims.first() == Some(channels) => {
            Some(Broadcast::Channel)
        }
        _ => None,
    }
}

/// True when a kernel made of `op` treats each batch item on its own and does not depend on
/// the batch size, so a target may run it on disjoint sub-batches.
pub fn is_batch_local(op: &Op) -> bool {
    match op {
        // Statistics over the whole batch, or divisions by the batch size (a BatchNorm input
        // gradient's division by the batch size happens in its separate coefficients kernel).
        Op::SoftmaxCrossEntropy
        | Op::SoftmaxCrossEntropyGrad
        | Op::CorrectCount
        | Op::BatchMean
        | Op::BatchVar
        | Op::ChannelSum
        | Op::BatchNormScaleGrad { .. }
        | Op::PreluSlopeGrad
        | Op::Conv2dWeightGrad { .. }
        | Op::DenseWeightGrad
        | Op::RunningUpdate { .. }
        | Op::SgdUpdate { .. } => false,
        // The dropout mask depends on the absolute batch index.
        Op::Dropout { .. } | Op::DropoutGrad { .. } => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_is_decided_by_operand_type() {
        let space = TensorType::batch(vec![16, 8, 8]);
        let check = |ty: TensorType| broadcast_of(&ty, &space);
        assert_eq!(
            check(TensorType::batch(vec![16, 8, 8])),
            Some(Broadcast::Full)
        );
        assert_eq!(check(TensorType::fixed(vec![16])), Some(Broadcast::Channel));
        assert_eq!(check(TensorType::fixed(vec![1])), Some(Broadcast::Single));
        assert_eq!(check(TensorType::scalar()), Some(Broadcast::Scalar));
        assert_eq!(
            check(TensorType::batch(vec![16])),
            Some(Broadcast::BatchChannel)
        );
        assert_eq!(check(TensorType::fixed(vec![8])), None);
        assert_eq!(check(TensorType::batch(vec![16, 4, 4])), None);
    }
}
