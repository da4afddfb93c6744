//! Shape and dtype inference: the type of an op's value from the types of its operands.
//!
//! [`infer`] is the rule of every forward op of [`Op`] (and of the training ops whose type
//! follows from their operands); [`check`] validates a node's recorded type against its
//! operands for every op, including the training ops whose type cannot be derived (a gradient
//! that has "x's type"), which is what the verifier runs after each pass.
//!
//! Invariant: no rule panics or overflows, whatever sizes it is given; every failure is a
//! [`ShapeError`] that carries the op and the shapes involved, so a report can show them.

mod training;

use std::fmt;

use crate::ir::{Activation, DType, Op, Pair, TensorType};

/// Largest number of elements one tensor (per batch item) may have: 2⁴⁰. Larger sizes are
/// certainly typos and would overflow later size arithmetic.
pub const MAX_ELEMENTS: usize = 1 << 40;

/// How many operands an op takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    /// Exactly this many.
    Exactly(usize),
    /// This many or more.
    AtLeast(usize),
}

impl fmt::Display for Arity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arity::Exactly(count) => write!(formatter, "{count}"),
            Arity::AtLeast(count) => write!(formatter, "at least {count}"),
        }
    }
}

impl Arity {
    /// True when `count` operands are acceptable.
    pub fn accepts(self, count: usize) -> bool {
        match self {
            Arity::Exactly(expected) => count == expected,
            Arity::AtLeast(minimum) => count >= minimum,
        }
    }
}

/// Why a type could not be inferred or does not match its operands.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ShapeError {
    /// The op received the wrong number of operands.
    #[error("`{op}` takes {expected} operands, found {found}")]
    OperandCount {
        /// The op.
        op: &'static str,
        /// What it takes.
        expected: Arity,
        /// What it got.
        found: usize,
    },
    /// An operand has the wrong kind of type (rank, batching or dtype).
    #[error("`{op}` expects {expected} as operand {slot}, found {found}")]
    OperandKind {
        /// The op.
        op: &'static str,
        /// Which operand.
        slot: usize,
        /// What was expected, in words (e.g. "a batched f32[N,C,H,W] image").
        expected: &'static str,
        /// What it got.
        found: TensorType,
    },
    /// Two operands that must agree do not (e.g. the two sides of an add).
    #[error("the operands of `{op}` do not match: {lhs} and {rhs}")]
    OperandMismatch {
        /// The op.
        op: &'static str,
        /// Slot of the first operand.
        lhs_slot: usize,
        /// Its type.
        lhs: TensorType,
        /// Slot of the second operand.
        rhs_slot: usize,
        /// Its type.
        rhs: TensorType,
    },
    /// A window (kernel) does not fit in the padded input.
    #[error("the {kernel_h}x{kernel_w} window of `{op}` is larger than its padded input \
             {padded_h}x{padded_w} (input {input})", kernel_h = kernel[0], kernel_w = kernel[1],
             padded_h = padded[0], padded_w = padded[1])]
    KernelLargerThanInput {
        /// The op.
        op: &'static str,
        /// Window size.
        kernel: Pair,
        /// Input height/width plus padding on both sides.
        padded: Pair,
        /// The input's type.
        input: TensorType,
    },
    /// A size that must be positive is zero.
    #[error("`{op}` needs a positive {what}, found 0")]
    ZeroSize {
        /// The op.
        op: &'static str,
        /// Which size ("stride", "kernel", "output channels", ...).
        what: &'static str,
    },
    /// Pooling padding larger than half the window (PyTorch refuses it too).
    #[error("`{op}` padding {padding} is more than half its window {kernel}")]
    PaddingTooLarge {
        /// The op.
        op: &'static str,
        /// The padding.
        padding: usize,
        /// The window.
        kernel: usize,
    },
    /// A tensor would be unreasonably large.
    #[error("`{op}` would produce a tensor of dims {dims:?}, more than 2^40 elements")]
    TooLarge {
        /// The op.
        op: &'static str,
        /// The dims it would have.
        dims: Vec<usize>,
    },
    /// A dropout probability outside `[0, 1)`.
    #[error("dropout probability must be in [0, 1), found {p}")]
    BadProbability {
        /// The probability.
        p: f32,
    },
    /// A mix whose weight list and operand list differ in length.
    #[error("`mix` has {weights} weights for {operands} operands")]
    MixWeightCount {
        /// Number of weights.
        weights: usize,
        /// Number of operands.
        operands: usize,
    },
    /// The node's recorded type differs from the one its operands give.
    #[error("`{op}` should have type {inferred}, but its node records {recorded}")]
    RecordedTypeMismatch {
        /// The op.
        op: &'static str,
        /// What the rule gives.
        inferred: TensorType,
        /// What the node holds.
        recorded: TensorType,
    },
    /// The op's type cannot be derived from its operands alone (a leaf, or a gradient whose type
    /// is "x's"); use [`check`] with the recorded type instead.
    #[error("`{op}` has no inference rule; its type is given when it is created")]
    NotInferable {
        /// The op.
        op: &'static str,
    },
}

/// The type of `op`'s value given its operands' types.
///
/// # Errors
/// A [`ShapeError`] when the operands do not fit the op, or [`ShapeError::NotInferable`] for
/// leaves and the gradients whose type is not determined by their operands.
pub fn infer(op: &Op, operands: &[&TensorType]) -> Result<TensorType, ShapeError> {
    let name = op.name();
    if let Some(arity) = arity(op) {
        if !arity.accepts(operands.len()) {
            return Err(ShapeError::OperandCount {
                op: name,
                expected: arity,
                found: operands.len(),
            });
        }
    }
    match op {
        Op::Input { .. } | Op::Labels { .. } | Op::Scalar { .. } | Op::Param { .. } => {
            Err(ShapeError::NotInferable { op: name })
        }
        Op::Conv2d {
            stride,
            padding,
            bias,
        } => conv2d(operands, *stride, *padding, *bias),
        Op::Dense { bias } => dense(operands, *bias),
        Op::BatchNorm { .. } => batchnorm(operands),
        Op::Activation(activation) => activation_rule(activation, operands),
        Op::Mix { weights } => mix(weights, operands),
        Op::Add => same_types(name, operands),
        Op::MaxPool {
            kernel,
            stride,
            padding,
        }
        | Op::AvgPool {
            kernel,
            stride,
            padding,
        } => pool(name, operands[0], *kernel, *stride, *padding),
        Op::GlobalAvgPool => {
            let [channels, _, _] = image(name, 0, operands[0])?;
            Ok(TensorType::batch(vec![channels]))
        }
        Op::Flatten => flatten(operands[0]),
        Op::Dropout { p } => dropout(*p, operands[0]),
        Op::ShortcutA {
            stride,
            pad_channels,
        } => shortcut_a(operands[0], *stride, *pad_channels),
        Op::SoftmaxCrossEntropy => {
            classifier_with_labels(name, operands)?;
            Ok(TensorType::scalar())
        }
        _ => training::infer(op, operands),
    }
}

/// Checks a node's recorded type `recorded` against its operands, for every op.
///
/// # Errors
/// A [`ShapeError`] describing the first disagreement found.
pub fn check(op: &Op, operands: &[&TensorType], recorded: &TensorType) -> Result<(), ShapeError> {
    match infer(op, operands) {
        Ok(inferred) if inferred == *recorded => Ok(()),
        Ok(inferred) => Err(ShapeError::RecordedTypeMismatch {
            op: op.name(),
            inferred,
            recorded: recorded.clone(),
        }),
        Err(ShapeError::NotInferable { .. }) => training::check_given(op, operands, recorded),
        Err(error) => Err(error),
    }
}

/// The number of operands `op` takes, when fixed by the op alone (`None` for leaves).
pub fn arity(op: &Op) -> Option<Arity> {
    use Arity::{AtLeast, Exactly};
    Some(match op {
        Op::Input { .. } | Op::Labels { .. } | Op::Scalar { .. } | Op::Param { .. } => Exactly(0),
        Op::Conv2d { bias, .. } | Op::Dense { bias } => Exactly(2 + usize::from(*bias)),
        Op::BatchNorm { .. } => Exactly(5),
        Op::Activation(activation) => Exactly(1 + usize::from(*activation == Activation::Prelu)),
        Op::Mix { weights } => Exactly(weights.len().max(1)),
        Op::Add => AtLeast(2),
        Op::MaxPool { .. } | Op::AvgPool { .. } | Op::GlobalAvgPool | Op::Flatten => Exactly(1),
        Op::Dropout { .. } | Op::ShortcutA { .. } => Exactly(1),
        Op::SoftmaxCrossEntropy => Exactly(2),
        _ => return training::arity(op),
    })
}

/// The `[C, H, W]` of a batched f32 image operand.
pub(crate) fn image(
    op: &'static str,
    slot: usize,
    ty: &TensorType,
) -> Result<[usize; 3], ShapeError> {
    match (ty.dtype, ty.batched, ty.dims.as_slice()) {
        (DType::F32, true, &[channels, height, width]) => Ok([channels, height, width]),
        _ => Err(kind_error(op, slot, "a batched f32[N,C,H,W] image", ty)),
    }
}

/// The dims of a batched f32 operand of any rank ≥ `min_rank` (after the batch dimension).
pub(crate) fn batched<'a>(
    op: &'static str,
    slot: usize,
    ty: &'a TensorType,
    min_rank: usize,
) -> Result<&'a [usize], ShapeError> {
    if ty.dtype == DType::F32 && ty.batched && ty.dims.len() >= min_rank {
        Ok(&ty.dims)
    } else {
        let expected = if min_rank == 0 {
            "a batched f32 tensor"
        } else {
            "a batched f32[N,C,...]"
        };
        Err(kind_error(op, slot, expected, ty))
    }
}

/// Requires `ty` to be exactly the unbatched f32 tensor of `dims`.
pub(crate) fn fixed(
    op: &'static str,
    slot: usize,
    ty: &TensorType,
    dims: &[usize],
    expected: &'static str,
) -> Result<(), ShapeError> {
    if ty.dtype == DType::F32 && !ty.batched && ty.dims == dims {
        Ok(())
    } else {
        Err(kind_error(op, slot, expected, ty))
    }
}

pub(crate) fn kind_error(
    op: &'static str,
    slot: usize,
    expected: &'static str,
    found: &TensorType,
) -> ShapeError {
    ShapeError::OperandKind {
        op,
        slot,
        expected,
        found: found.clone(),
    }
}

/// A batched f32 type of `dims`, refused when it would be absurdly large.
pub(crate) fn sized_batch(op: &'static str, dims: Vec<usize>) -> Result<TensorType, ShapeError> {
    check_elements(op, &dims)?;
    Ok(TensorType::batch(dims))
}

/// Refuses zero-sized and too large dims.
pub fn check_elements(op: &'static str, dims: &[usize]) -> Result<usize, ShapeError> {
    let mut elements: usize = 1;
    for &dim in dims {
        if dim == 0 {
            return Err(ShapeError::ZeroSize {
                op,
                what: "dimension",
            });
        }
        elements = elements.saturating_mul(dim);
    }
    if elements > MAX_ELEMENTS {
        return Err(ShapeError::TooLarge {
            op,
            dims: dims.to_vec(),
        });
    }
    Ok(elements)
}

/// Output size of a sliding window: `(size + 2·padding − kernel) / stride + 1` per axis.
pub fn window_output(
    op: &'static str,
    input: &TensorType,
    size: Pair,
    kernel: Pair,
    stride: Pair,
    padding: Pair,
) -> Result<Pair, ShapeError> {
    if kernel.contains(&0) {
        return Err(ShapeError::ZeroSize {
            op,
            what: "kernel size",
        });
    }
    if stride.contains(&0) {
        return Err(ShapeError::ZeroSize { op, what: "stride" });
    }
    let padded = [0, 1].map(|axis| size[axis].saturating_add(padding[axis].saturating_mul(2)));
    if kernel[0] > padded[0] || kernel[1] > padded[1] {
        return Err(ShapeError::KernelLargerThanInput {
            op,
            kernel,
            padded,
            input: input.clone(),
        });
    }
    Ok([0, 1].map(|axis| (padded[axis] - kernel[axis]) / stride[axis] + 1))
}

// conv(x[N,Cin,H,W], w[Cout,Cin,Kh,Kw], b[Cout]) -> [N, Cout, Ho, Wo]
fn conv2d(
    operands: &[&TensorType],
    stride: Pair,
    padding: Pair,
    bias: bool,
) -> Result<TensorType, ShapeError> {
    let op = "conv2d";
    let [channels, height, width] = image(op, 0, operands[0])?;
    let weight = operands[1];
    let &[out_channels, in_channels, kernel_h, kernel_w] = weight.dims.as_slice() else {
        return Err(kind_error(op, 1, "an f32[Cout,Cin,Kh,Kw] weight", weight));
    };
    if weight.batched || weight.dtype != DType::F32 {
        return Err(kind_error(op, 1, "an f32[Cout,Cin,Kh,Kw] weight", weight));
    }
    if in_channels != channels {
        return Err(mismatch(op, operands, 0, 1));
    }
    if bias {
        fixed(op, 2, operands[2], &[out_channels], "an f32[Cout] bias")?;
    }
    let kernel = [kernel_h, kernel_w];
    let [out_h, out_w] = window_output(op, operands[0], [height, width], kernel, stride, padding)?;
    sized_batch(op, vec![out_channels, out_h, out_w])
}

// dense(x[N,K], w[M,K], b[M]) -> [N, M]
fn dense(operands: &[&TensorType], bias: bool) -> Result<TensorType, ShapeError> {
    let op = "dense";
    let input = operands[0];
    let &[features] = batched(op, 0, input, 1)? else {
        return Err(kind_error(
            op,
            0,
            "a batched f32[N,K] (flatten first)",
            input,
        ));
    };
    let weight = operands[1];
    let &[outputs, weight_features] = weight.dims.as_slice() else {
        return Err(kind_error(op, 1, "an f32[M,K] weight", weight));
    };
    if weight.batched || weight.dtype != DType::F32 {
        return Err(kind_error(op, 1, "an f32[M,K] weight", weight));
    }
    if weight_features != features {
        return Err(mismatch(op, operands, 0, 1));
    }
    if bias {
        fixed(op, 2, operands[2], &[outputs], "an f32[M] bias")?;
    }
    sized_batch(op, vec![outputs])
}

// batchnorm(x[N,C,...], γ[C], β[C], mean[C], var[C]) -> x's type
fn batchnorm(operands: &[&TensorType]) -> Result<TensorType, ShapeError> {
    let op = "batchnorm";
    let dims = batched(op, 0, operands[0], 1)?;
    let channels = [dims[0]];
    for (slot, operand) in operands.iter().enumerate().skip(1) {
        fixed(
            op,
            slot,
            operand,
            &channels,
            "an f32[C] per-channel parameter",
        )?;
    }
    Ok(operands[0].clone())
}

// act(x) -> x's type; prelu's slope is [1] or [C]
fn activation_rule(
    activation: &Activation,
    operands: &[&TensorType],
) -> Result<TensorType, ShapeError> {
    let op = activation.name();
    let dims = batched(op, 0, operands[0], 0)?;
    if *activation == Activation::Prelu {
        let slope = operands[1];
        let channels = dims.first().copied().unwrap_or(1);
        let fits = slope.dtype == DType::F32
            && !slope.batched
            && (slope.dims == [1] || slope.dims == [channels]);
        if !fits {
            return Err(kind_error(op, 1, "an f32[1] or f32[C] slope", slope));
        }
    }
    Ok(operands[0].clone())
}

// mix(a₁..a_k) -> the common type; one weight per operand
fn mix(weights: &[f32], operands: &[&TensorType]) -> Result<TensorType, ShapeError> {
    if weights.len() != operands.len() {
        return Err(ShapeError::MixWeightCount {
            weights: weights.len(),
            operands: operands.len(),
        });
    }
    same_types("mix", operands)
}

/// All operands share one batched f32 type, which is the result.
fn same_types(op: &'static str, operands: &[&TensorType]) -> Result<TensorType, ShapeError> {
    batched(op, 0, operands[0], 0)?;
    for slot in 1..operands.len() {
        if operands[slot] != operands[0] {
            return Err(mismatch(op, operands, 0, slot));
        }
    }
    Ok(operands[0].clone())
}

fn mismatch(op: &'static str, operands: &[&TensorType], lhs: usize, rhs: usize) -> ShapeError {
    ShapeError::OperandMismatch {
        op,
        lhs_slot: lhs,
        lhs: operands[lhs].clone(),
        rhs_slot: rhs,
        rhs: operands[rhs].clone(),
    }
}

// pool(x[N,C,H,W]) -> [N, C, Ho, Wo]; padding at most half the window
fn pool(
    op: &'static str,
    input: &TensorType,
    kernel: Pair,
    stride: Pair,
    padding: Pair,
) -> Result<TensorType, ShapeError> {
    let [channels, height, width] = image(op, 0, input)?;
    for axis in 0..2 {
        if kernel[axis] > 0 && padding[axis] > kernel[axis] / 2 {
            let (padding, kernel) = (padding[axis], kernel[axis]);
            return Err(ShapeError::PaddingTooLarge {
                op,
                padding,
                kernel,
            });
        }
    }
    let [out_h, out_w] = window_output(op, input, [height, width], kernel, stride, padding)?;
    sized_batch(op, vec![channels, out_h, out_w])
}

// flatten(x[N, d₁, d₂, ...]) -> [N, d₁·d₂·...]
fn flatten(input: &TensorType) -> Result<TensorType, ShapeError> {
    let dims = batched("flatten", 0, input, 1)?;
    let elements = check_elements("flatten", dims)?;
    Ok(TensorType::batch(vec![elements]))
}

fn dropout(p: f32, input: &TensorType) -> Result<TensorType, ShapeError> {
    if !(0.0..1.0).contains(&p) {
        return Err(ShapeError::BadProbability { p });
    }
    batched("dropout", 0, input, 0)?;
    Ok(input.clone())
}

// shortcut_a(x[N,C,H,W]) -> [N, C + 2·pad, ⌈H/s⌉, ⌈W/s⌉]
fn shortcut_a(
    input: &TensorType,
    stride: usize,
    pad_channels: usize,
) -> Result<TensorType, ShapeError> {
    let op = "shortcut_a";
    let [channels, height, width] = image(op, 0, input)?;
    if stride == 0 {
        return Err(ShapeError::ZeroSize { op, what: "stride" });
    }
    let channels = channels.saturating_add(pad_channels.saturating_mul(2));
    sized_batch(
        op,
        vec![channels, height.div_ceil(stride), width.div_ceil(stride)],
    )
}

/// Checks `[0: logits f32[N,K], 1: labels i32[N]]`.
pub(crate) fn classifier_with_labels(
    op: &'static str,
    operands: &[&TensorType],
) -> Result<(), ShapeError> {
    let logits = operands[0];
    if batched(op, 0, logits, 1)?.len() != 1 {
        return Err(kind_error(op, 0, "batched f32[N,K] logits", logits));
    }
    let labels = operands[1];
    if labels.dtype != DType::I32 || !labels.batched || !labels.dims.is_empty() {
        return Err(kind_error(op, 1, "batched i32[N] labels", labels));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv_op(stride: usize, padding: usize) -> Op {
        Op::Conv2d {
            stride: [stride; 2],
            padding: [padding; 2],
            bias: false,
        }
    }

    #[test]
    fn conv_with_stride_and_padding_gives_floor_size() {
        let x = TensorType::batch(vec![16, 32, 32]);
        let weight = TensorType::fixed(vec![32, 16, 3, 3]);
        let ty = infer(&conv_op(2, 1), &[&x, &weight]);
        assert_eq!(ty, Ok(TensorType::batch(vec![32, 16, 16])));
        let ty = infer(
            &conv_op(4, 2),
            &[&TensorType::batch(vec![3, 224, 224]), &{
                TensorType::fixed(vec![64, 3, 11, 11])
            }],
        );
        assert_eq!(ty, Ok(TensorType::batch(vec![64, 55, 55])));
    }

    #[test]
    fn conv_refuses_a_kernel_larger_than_the_padded_input() {
        let x = TensorType::batch(vec![1, 4, 4]);
        let weight = TensorType::fixed(vec![8, 1, 5, 5]);
        let error = infer(&conv_op(1, 0), &[&x, &weight]).unwrap_err();
        assert!(matches!(
            error,
            ShapeError::KernelLargerThanInput { padded: [4, 4], .. }
        ));
        assert!(infer(&conv_op(1, 1), &[&x, &weight]).is_ok());
    }

    #[test]
    fn conv_refuses_channel_mismatch_and_zero_stride() {
        let x = TensorType::batch(vec![3, 8, 8]);
        let weight = TensorType::fixed(vec![8, 4, 3, 3]);
        let error = infer(&conv_op(1, 1), &[&x, &weight]).unwrap_err();
        assert!(matches!(
            error,
            ShapeError::OperandMismatch {
                lhs_slot: 0,
                rhs_slot: 1,
                ..
            }
        ));
        let weight = TensorType::fixed(vec![8, 3, 3, 3]);
        let error = infer(&conv_op(0, 1), &[&x, &weight]).unwrap_err();
        assert_eq!(
            error,
            ShapeError::ZeroSize {
                op: "conv2d",
                what: "stride"
            }
        );
    }

    #[test]
    fn add_mismatch_carries_both_shapes() {
        let lhs = TensorType::batch(vec![16, 32, 32]);
        let rhs = TensorType::batch(vec![32, 16, 16]);
        let error = infer(&Op::Add, &[&lhs, &rhs]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the operands of `add` do not match: f32[N,16,32,32] and \
                                       f32[N,32,16,16]"
        );
    }

    #[test]
    fn dense_batchnorm_and_flatten_rules() {
        let x = TensorType::batch(vec![64, 8, 8]);
        let flat = infer(&Op::Flatten, &[&x]).unwrap();
        assert_eq!(flat, TensorType::batch(vec![4096]));
        let weight = TensorType::fixed(vec![10, 4096]);
        let bias = TensorType::fixed(vec![10]);
        let dense = infer(&Op::Dense { bias: true }, &[&flat, &weight, &bias]);
        assert_eq!(dense, Ok(TensorType::batch(vec![10])));
        let channel = TensorType::fixed(vec![64]);
        let bn = Op::BatchNorm {
            eps: 1e-5,
            momentum: 0.1,
        };
        let operands = [&x, &channel, &channel, &channel, &channel];
        assert_eq!(infer(&bn, &operands), Ok(x.clone()));
        let wrong = TensorType::fixed(vec![32]);
        assert!(infer(&bn, &[&x, &channel, &wrong, &channel, &channel]).is_err());
    }

    #[test]
    fn pools_and_shortcut_rules() {
        let x = TensorType::batch(vec![16, 32, 32]);
        let maxpool = Op::MaxPool {
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1, 1],
        };
        assert_eq!(
            infer(&maxpool, &[&x]),
            Ok(TensorType::batch(vec![16, 16, 16]))
        );
        let too_padded = Op::AvgPool {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [2, 2],
        };
        assert!(matches!(
            infer(&too_padded, &[&x]),
            Err(ShapeError::PaddingTooLarge { .. })
        ));
        let global = infer(&Op::GlobalAvgPool, &[&x]);
        assert_eq!(global, Ok(TensorType::batch(vec![16])));
        let shortcut = Op::ShortcutA {
            stride: 2,
            pad_channels: 8,
        };
        assert_eq!(
            infer(&shortcut, &[&x]),
            Ok(TensorType::batch(vec![32, 16, 16]))
        );
    }

    #[test]
    fn activations_mix_and_dropout_rules() {
        let x = TensorType::batch(vec![16, 4, 4]);
        let relu = Op::Activation(Activation::Relu);
        assert_eq!(infer(&relu, &[&x]), Ok(x.clone()));
        let prelu = Op::Activation(Activation::Prelu);
        assert!(infer(&prelu, &[&x, &TensorType::fixed(vec![16])]).is_ok());
        assert!(infer(&prelu, &[&x, &TensorType::fixed(vec![3])]).is_err());
        let mix = Op::Mix {
            weights: vec![0.5, 0.5],
        };
        assert_eq!(infer(&mix, &[&x, &x]), Ok(x.clone()));
        assert!(matches!(
            infer(&mix, &[&x]),
            Err(ShapeError::OperandCount { .. })
        ));
        assert!(matches!(
            infer(&Op::Dropout { p: 1.0 }, &[&x]),
            Err(ShapeError::BadProbability { .. })
        ));
    }

    #[test]
    fn softmax_cross_entropy_needs_i32_labels() {
        let logits = TensorType::batch(vec![10]);
        let labels = TensorType {
            dtype: DType::I32,
            batched: true,
            dims: vec![],
        };
        let op = Op::SoftmaxCrossEntropy;
        assert_eq!(infer(&op, &[&logits, &labels]), Ok(TensorType::scalar()));
        assert!(infer(&op, &[&logits, &logits]).is_err());
    }

    #[test]
    fn huge_sizes_are_errors_not_overflows() {
        let x = TensorType::batch(vec![usize::MAX, 8, 8]);
        let weight = TensorType::fixed(vec![usize::MAX, usize::MAX, 1, 1]);
        let conv = Op::Conv2d {
            stride: [1, 1],
            padding: [usize::MAX, 0],
            bias: false,
        };
        assert!(infer(&conv, &[&x, &weight]).is_err());
        assert!(infer(&Op::Flatten, &[&x]).is_err());
    }
}
