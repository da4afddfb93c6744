//! The operations of the graph IR, and the types of the values they produce.
//!
//! Every node produces exactly one value. An operation's operands are the node's inputs in slot
//! order (see [`super::graph::Graph::inputs`]); the table in each variant's doc says which slot
//! holds what. Layout is NCHW throughout; the batch dimension is symbolic (`N`), so one compiled
//! program serves every batch size up to the one it was planned for, including a last partial
//! batch.
//!
//! Forward ops are what the front end builds. The ops below "training graph" are created only by
//! autodiff and the optimizer: their semantics are those of the derivative or update they
//! compute, as written in their docs, and `docs/ir.md` repeats them for users.

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE float: activations, parameters, gradients.
    F32,
    /// 32-bit signed integer: class labels.
    I32,
}

/// The type of a value: element type, whether it has a leading batch dimension, and the
/// remaining dimensions.
///
/// `batched: true, dims: [16, 32, 32]` prints as `f32[N,16,32,32]`; a parameter of shape
/// `[16, 3, 3, 3]` has `batched: false`. A scalar has no dims.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    /// Element type.
    pub dtype: DType,
    /// True when the value has a leading batch dimension of symbolic size `N`.
    pub batched: bool,
    /// Dimensions after the batch dimension (all of them when not batched).
    pub dims: Vec<usize>,
}

impl TensorType {
    /// A batched f32 tensor `[N, dims...]`.
    pub fn batch(dims: Vec<usize>) -> Self {
        TensorType {
            dtype: DType::F32,
            batched: true,
            dims,
        }
    }

    /// An unbatched f32 tensor (a parameter, a statistic, a scalar).
    pub fn fixed(dims: Vec<usize>) -> Self {
        TensorType {
            dtype: DType::F32,
            batched: false,
            dims,
        }
    }

    /// An f32 scalar.
    pub fn scalar() -> Self {
        TensorType::fixed(Vec::new())
    }

    /// Number of elements per batch item (per whole tensor when not batched).
    pub fn item_elements(&self) -> usize {
        self.dims.iter().product()
    }
}

/// A non-linear activation function, with its constants. Semantics follow PyTorch.
#[derive(Clone, Debug, PartialEq)]
pub enum Activation {
    /// `max(x, 0)`; derivative 0 at 0.
    Relu,
    /// `x if x > 0 else a·x`; `a` is the node's second operand, a parameter of shape `[1]`
    /// (shared, like `nn.PReLU()`) or `[C]` (per channel).
    Prelu,
    /// `x if x > 0 else alpha·(eˣ − 1)`.
    Elu {
        /// Saturation constant; 1 by default.
        alpha: f32,
    },
    /// `(1/beta)·log(1 + e^{beta·x})`, and `x` itself where `beta·x > threshold`.
    Softplus {
        /// Sharpness; 1 by default.
        beta: f32,
        /// Linear beyond this; 20 by default.
        threshold: f32,
    },
    /// `x if x > 0 else slope·x`.
    LeakyRelu {
        /// Negative slope; 0.01 by default.
        slope: f32,
    },
    /// `x`: the "no non-linear activation" (WNLA) ablation.
    Identity,
}

/// What a parameter node holds, which decides how it is initialised, whether it is trained,
/// and how it crosses the phase boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamRole {
    /// Convolution or dense weight (trained).
    Weight,
    /// Convolution or dense bias (trained).
    Bias,
    /// BatchNorm scale γ (trained, initialised to 1).
    BatchNormScale,
    /// BatchNorm shift β (trained, initialised to 0).
    BatchNormShift,
    /// BatchNorm running mean (state, not trained, initialised to 0).
    RunningMean,
    /// BatchNorm running variance (state, not trained, initialised to 1).
    RunningVar,
    /// PReLU slope (trained, initialised to 0.25).
    PreluSlope,
    /// SGD momentum buffer of a trained parameter, named `<param>.momentum` (optimizer state,
    /// not trained, initialised to 0). Created by autodiff's optimizer step only.
    MomentumBuffer,
}

impl ParamRole {
    /// True for values the optimizer updates; false for BatchNorm running statistics and
    /// optimizer state.
    pub fn is_trained(self) -> bool {
        !matches!(
            self,
            ParamRole::RunningMean | ParamRole::RunningVar | ParamRole::MomentumBuffer
        )
    }
}

/// How a parameter is initialised. Defaults are PyTorch's for each layer kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    /// Every element equals the value.
    Constant(f32),
    /// Uniform on `[-bound, bound]` with `bound = gain / sqrt(fan_in)`: PyTorch's default for
    /// `Conv2d` and `Linear` weights (`kaiming_uniform_(a=√5)` gives gain 1) and biases.
    UniformFanIn {
        /// Fan-in of the layer (input channels × kernel area, or input features).
        fan_in: usize,
        /// Multiplier on `1/sqrt(fan_in)`.
        gain: f32,
    },
    /// Normal with standard deviation `sqrt(2 / fan)` (He/Kaiming normal), on request.
    KaimingNormal {
        /// The fan used (fan-out for `mode=fan_out`).
        fan: usize,
    },
}

/// Height/width pair for strides, paddings and kernel sizes.
pub type Pair = [usize; 2];

/// One operation. Operand slots are listed as `[0: ..., 1: ...]`.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    // ---- Leaves -------------------------------------------------------------------------
    /// A batch of images fed by the runtime: `f32[N, C, H, W]` (or any batched shape).
    Input {
        /// The name given in the model (`input image: [...]`).
        name: String,
    },
    /// A batch of class labels fed by the runtime: `i32[N]`.
    Labels {
        /// Name under which the runtime feeds it (`labels`).
        name: String,
    },
    /// A scalar fed by the runtime at every step (the learning rate).
    Scalar {
        /// Name under which the runtime feeds it (`lr`).
        name: String,
    },
    /// A named, persistent tensor: weights, biases, BatchNorm parameters and statistics,
    /// PReLU slopes. The name is stable across every pass (e.g. `stage2.block3.conv1.weight`);
    /// the trainer carries values across phases by it.
    Param {
        /// Hierarchical name.
        name: String,
        /// What it holds.
        role: ParamRole,
        /// How it starts.
        init: Init,
    },

    // ---- Forward ------------------------------------------------------------------------
    /// 2-D convolution (cross-correlation), groups = 1.
    /// `[0: x f32[N,Cin,H,W], 1: weight [Cout,Cin,Kh,Kw], 2: bias [Cout] (when bias)]`.
    Conv2d {
        /// Stride (height, width).
        stride: Pair,
        /// Zero padding on each side (height, width).
        padding: Pair,
        /// Whether slot 2 holds a bias.
        bias: bool,
    },
    /// Fully connected layer `y = x·Wᵀ + b`. `[0: x f32[N,K], 1: weight [M,K], 2: bias [M]]`.
    Dense {
        /// Whether slot 2 holds a bias.
        bias: bool,
    },
    /// BatchNorm over the channel axis, as a whole layer (training or eval decided later).
    /// `[0: x, 1: scale γ [C], 2: shift β [C], 3: running mean [C], 4: running var [C]]`.
    BatchNorm {
        /// Added to the variance; 1e-5.
        eps: f32,
        /// Weight of the new batch statistic in the running estimate; 0.1.
        momentum: f32,
    },
    /// An activation applied element-wise. `[0: x, 1: slope (Prelu only)]`.
    Activation(Activation),
    /// The cooperative mix: `y = Σᵢ weights[i]·operandᵢ`, where each operand is an activation
    /// node applied to the same `x`. `[0..k: the k activation outputs]`.
    Mix {
        /// βᵢ, one per operand.
        weights: Vec<f32>,
    },
    /// Element-wise sum of two or more same-typed operands.
    Add,
    /// Max pooling. `[0: x]`. Padding is −∞.
    MaxPool {
        /// Window (height, width).
        kernel: Pair,
        /// Stride (height, width).
        stride: Pair,
        /// Padding on each side.
        padding: Pair,
    },
    /// Average pooling, padding counted in the divisor (PyTorch's `count_include_pad=True`).
    AvgPool {
        /// Window (height, width).
        kernel: Pair,
        /// Stride (height, width).
        stride: Pair,
        /// Padding on each side.
        padding: Pair,
    },
    /// Mean over H and W: `f32[N,C,H,W] -> f32[N,C]`.
    GlobalAvgPool,
    /// `f32[N, d1, d2, ...] -> f32[N, d1·d2·...]`; no data movement.
    Flatten,
    /// Inverted dropout: zero with probability `p`, scale survivors by `1/(1−p)` in training;
    /// identity in evaluation. `[0: x]`.
    Dropout {
        /// Drop probability, in `[0, 1)`.
        p: f32,
    },
    /// ResNet option-A shortcut: `x[:, :, ::stride, ::stride]`, then `pad_channels` zero
    /// channels before and after. `[0: x]`.
    ShortcutA {
        /// Spatial subsampling stride.
        stride: usize,
        /// Zero channels added on each side.
        pad_channels: usize,
    },
    /// Softmax cross-entropy, mean over the batch: a scalar.
    /// `[0: logits f32[N,K], 1: labels i32[N]]`.
    SoftmaxCrossEntropy,

    // ---- Training graph: BatchNorm in training mode -----------------------------------------
    /// Per-channel mean over N, H, W: `f32[N,C,...] -> f32[C]`. `[0: x]`.
    BatchMean,
    /// Per-channel biased variance over N, H, W. `[0: x, 1: mean [C]]`.
    BatchVar,
    /// `y = γ·(x − mean)/sqrt(var + eps) + β`.
    /// `[0: x, 1: mean [C], 2: var [C], 3: scale γ, 4: shift β]`.
    BatchNormApply {
        /// Added to the variance.
        eps: f32,
    },
    /// Per-channel sum over N, H, W (or over N for `f32[N,C]`): the gradient of a bias or of
    /// the BatchNorm shift. `[0: dy]`.
    ChannelSum,
    /// `Σ dy·x̂` per channel, `x̂ = (x − mean)/sqrt(var + eps)`: gradient of the BatchNorm scale.
    /// `[0: dy, 1: x, 2: mean, 3: var]`.
    BatchNormScaleGrad {
        /// As in the forward op.
        eps: f32,
    },
    /// Gradient of a training-mode BatchNorm with respect to its input:
    /// `dx = γ·invstd/M · (M·dy − dshift − x̂·dscale)`, `M = N·H·W`.
    /// `[0: dy, 1: x, 2: mean, 3: var, 4: scale γ, 5: dscale, 6: dshift]`.
    BatchNormInputGrad {
        /// As in the forward op.
        eps: f32,
    },
    /// In-place update of a running statistic (an effect; its value is the updated state):
    /// `running = (1 − momentum)·running + momentum·stat·c`, where `c = M/(M−1)` when
    /// `unbiased` (variance) and 1 otherwise. `[0: running (a Param), 1: stat [C], 2: x]`;
    /// slot 2 only supplies `M` (the batch's N·H·W).
    RunningUpdate {
        /// Weight of the new statistic.
        momentum: f32,
        /// Apply Bessel's correction (for the variance).
        unbiased: bool,
    },

    // ---- Training graph: other gradients ---------------------------------------------------
    /// `dx` of a convolution. `[0: dy f32[N,Cout,Ho,Wo], 1: weight]`; the node's type is x's.
    Conv2dInputGrad {
        /// As in the forward op.
        stride: Pair,
        /// As in the forward op.
        padding: Pair,
    },
    /// `dW` of a convolution, summed over the batch. `[0: dy, 1: x]`; the type is the weight's.
    Conv2dWeightGrad {
        /// As in the forward op.
        stride: Pair,
        /// As in the forward op.
        padding: Pair,
    },
    /// `dx = dy·W` of a dense layer. `[0: dy f32[N,M], 1: weight [M,K]]`.
    DenseInputGrad,
    /// `dW = dyᵀ·x` of a dense layer. `[0: dy f32[N,M], 1: x f32[N,K]]`.
    DenseWeightGrad,
    /// `dx = dy·F'(x)` for an activation. `[0: dy, 1: x, 2: slope (Prelu only)]`.
    ActivationGrad(Activation),
    /// Gradient of a PReLU slope: `Σ dy·x` over the elements where `x ≤ 0`, summed to the
    /// slope's shape (`[1]` or `[C]`). `[0: dy, 1: x]`; the type is the slope's.
    PreluSlopeGrad,
    /// `y = factor·x`, element-wise. `[0: x]`.
    Scale {
        /// The constant factor.
        factor: f32,
    },
    /// Routes `dy` to the position of each window's maximum (first maximum on ties, as PyTorch).
    /// `[0: dy, 1: x]`; the type is x's.
    MaxPoolGrad {
        /// As in the forward op.
        kernel: Pair,
        /// As in the forward op.
        stride: Pair,
        /// As in the forward op.
        padding: Pair,
    },
    /// Spreads `dy / window area` over each window. `[0: dy]`; the type is x's.
    AvgPoolGrad {
        /// As in the forward op.
        kernel: Pair,
        /// As in the forward op.
        stride: Pair,
        /// As in the forward op.
        padding: Pair,
    },
    /// `dx[n,c,h,w] = dy[n,c]/(H·W)`. `[0: dy f32[N,C]]`; the type is x's.
    GlobalAvgPoolGrad,
    /// Gives `x` the node's type without moving data (the gradient of `Flatten`). `[0: x]`.
    Reshape,
    /// `dx = dy · mask / (1 − p)` with the same mask as the forward dropout. `[0: dy, 1: the
    /// forward Dropout node's input]`; the mask is re-derived from the step's seed.
    DropoutGrad {
        /// As in the forward op.
        p: f32,
        /// Identifies the forward dropout site, so both draw the same mask.
        site: u32,
    },
    /// Gradient of the option-A shortcut: the strided scatter of the un-padded channels.
    /// `[0: dy]`; the type is x's.
    ShortcutAGrad {
        /// As in the forward op.
        stride: usize,
        /// As in the forward op.
        pad_channels: usize,
    },
    /// `dlogits = (softmax(logits) − onehot(labels)) / N`. `[0: logits, 1: labels]`.
    SoftmaxCrossEntropyGrad,
    /// Number of rows whose arg-max equals the label, as an f32 scalar (a metric, not
    /// differentiated). `[0: logits, 1: labels]`.
    CorrectCount,

    // ---- Training graph: the optimizer -------------------------------------------------------
    /// In-place SGD step on a parameter (an effect), PyTorch's form:
    /// `d = g + weight_decay·p; buf = momentum·buf + d; p −= lr·(nesterov ? d + momentum·buf :
    /// buf)`. `[0: param, 1: grad, 2: momentum buffer (a Param-like state), 3: lr scalar]`.
    SgdUpdate {
        /// Momentum μ.
        momentum: f32,
        /// L2 weight decay.
        weight_decay: f32,
        /// Nesterov momentum.
        nesterov: bool,
    },
}

impl Op {
    /// Short lower-case name used by the printer, logs and kernel names.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Labels { .. } => "labels",
            Op::Scalar { .. } => "scalar",
            Op::Param { .. } => "param",
            Op::Conv2d { .. } => "conv2d",
            Op::Dense { .. } => "dense",
            Op::BatchNorm { .. } => "batchnorm",
            Op::Activation(act) => act.name(),
            Op::Mix { .. } => "mix",
            Op::Add => "add",
            Op::MaxPool { .. } => "maxpool",
            Op::AvgPool { .. } => "avgpool",
            Op::GlobalAvgPool => "global_avgpool",
            Op::Flatten => "flatten",
            Op::Dropout { .. } => "dropout",
            Op::ShortcutA { .. } => "shortcut_a",
            Op::SoftmaxCrossEntropy => "softmax_cross_entropy",
            Op::BatchMean => "batch_mean",
            Op::BatchVar => "batch_var",
            Op::BatchNormApply { .. } => "batchnorm_apply",
            Op::ChannelSum => "channel_sum",
            Op::BatchNormScaleGrad { .. } => "batchnorm_scale_grad",
            Op::BatchNormInputGrad { .. } => "batchnorm_input_grad",
            Op::RunningUpdate { .. } => "running_update",
            Op::Conv2dInputGrad { .. } => "conv2d_input_grad",
            Op::Conv2dWeightGrad { .. } => "conv2d_weight_grad",
            Op::DenseInputGrad => "dense_input_grad",
            Op::DenseWeightGrad => "dense_weight_grad",
            Op::ActivationGrad(_) => "activation_grad",
            Op::PreluSlopeGrad => "prelu_slope_grad",
            Op::Scale { .. } => "scale",
            Op::MaxPoolGrad { .. } => "maxpool_grad",
            Op::AvgPoolGrad { .. } => "avgpool_grad",
            Op::GlobalAvgPoolGrad => "global_avgpool_grad",
            Op::Reshape => "reshape",
            Op::DropoutGrad { .. } => "dropout_grad",
            Op::ShortcutAGrad { .. } => "shortcut_a_grad",
            Op::SoftmaxCrossEntropyGrad => "softmax_cross_entropy_grad",
            Op::CorrectCount => "correct_count",
            Op::SgdUpdate { .. } => "sgd_update",
        }
    }

    /// True for ops that write persistent state in place instead of producing a new value.
    pub fn is_effect(&self) -> bool {
        matches!(self, Op::RunningUpdate { .. } | Op::SgdUpdate { .. })
    }

    /// True for activations in the forward sense (the ops the `coop` pass rewrites).
    pub fn is_activation(&self) -> bool {
        matches!(self, Op::Activation(_))
    }
}

impl Activation {
    /// Lower-case name, as written in `.coop` source.
    pub fn name(&self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Prelu => "prelu",
            Activation::Elu { .. } => "elu",
            Activation::Softplus { .. } => "softplus",
            Activation::LeakyRelu { .. } => "leaky_relu",
            Activation::Identity => "identity",
        }
    }

    /// The activation named `name` with PyTorch's default constants.
    pub fn from_name(name: &str) -> Option<Activation> {
        Some(match name {
            "relu" => Activation::Relu,
            "prelu" => Activation::Prelu,
            "elu" => Activation::Elu { alpha: 1.0 },
            "softplus" => Activation::Softplus {
                beta: 1.0,
                threshold: 20.0,
            },
            "leaky_relu" => Activation::LeakyRelu { slope: 0.01 },
            "identity" => Activation::Identity,
            _ => return None,
        })
    }
}
