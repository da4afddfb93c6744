//! A small typed-graph builder for the autodiff tests, independent of the front end: each
//! method adds one layer (with its parameters) and computes the result type by hand.
//!
//! Invariant: layer names come from one counter per layer kind (`conv0`, `conv1`, `bn0`, ...),
//! so a ReLU network and its mix version built by the same calls share every parameter name
//! except the mix's PReLU slopes; every layer gets its own non-empty span.

use grammar::Span;

use crate::ir::{Activation, Graph, Init, NodeId, Op, Pair, ParamRole, TensorType};

/// The image input's name.
pub const IMAGE: &str = "image";

/// The four activations of the paper's mix, in order: ReLU, PReLU, ELU, SoftPlus.
pub fn paper_set() -> [Activation; 4] {
    [
        Activation::Relu,
        Activation::Prelu,
        Activation::Elu { alpha: 1.0 },
        Activation::Softplus {
            beta: 1.0,
            threshold: 20.0,
        },
    ]
}

/// How the network's activations are built.
#[derive(Clone, Debug, PartialEq)]
pub enum ActivationStyle {
    /// Plain ReLU (phase 2).
    Relu,
    /// The paper's mix with these β (phase 1).
    Mix(Vec<f32>),
}

/// A forward graph under construction.
#[derive(Default)]
pub struct Net {
    /// The graph built so far.
    pub graph: Graph,
    counters: std::collections::BTreeMap<&'static str, usize>,
    spans: u32,
}

impl Net {
    /// An empty network.
    pub fn new() -> Self {
        Net::default()
    }

    /// The type of `id`.
    pub fn ty(&self, id: NodeId) -> TensorType {
        self.graph.node(id).ty.clone()
    }

    /// The batched dims of `id`.
    fn dims(&self, id: NodeId) -> Vec<usize> {
        self.ty(id).dims
    }

    /// A fresh layer name of `kind` and a fresh span.
    fn layer(&mut self, kind: &'static str) -> (String, Span) {
        let counter = self.counters.entry(kind).or_default();
        let name = format!("{kind}{counter}");
        *counter += 1;
        self.spans += 10;
        (name, Span::new(self.spans, self.spans + 5))
    }

    fn param(&mut self, name: String, role: ParamRole, init: Init, dims: Vec<usize>) -> NodeId {
        let span = Span::new(self.spans, self.spans + 5);
        self.graph.add(
            Op::Param { name, role, init },
            TensorType::fixed(dims),
            span,
            &[],
        )
    }

    fn node(&mut self, op: Op, dims: Vec<usize>, span: Span, inputs: &[NodeId]) -> NodeId {
        self.graph.add(op, TensorType::batch(dims), span, inputs)
    }

    /// The image input `f32[N, dims...]`.
    pub fn input(&mut self, dims: Vec<usize>) -> NodeId {
        let (_, span) = self.layer("input");
        self.node(Op::Input { name: IMAGE.into() }, dims, span, &[])
    }

    /// A convolution with PyTorch's default initialisation.
    pub fn conv(
        &mut self,
        x: NodeId,
        cout: usize,
        kernel: Pair,
        stride: Pair,
        padding: Pair,
        bias: bool,
    ) -> NodeId {
        let (name, span) = self.layer("conv");
        let [cin, h, w] = <[usize; 3]>::try_from(self.dims(x)).expect("conv input is [C,H,W]");
        let fan_in = cin * kernel[0] * kernel[1];
        let init = Init::UniformFanIn { fan_in, gain: 1.0 };
        let dims = vec![cout, cin, kernel[0], kernel[1]];
        let weight = self.param(
            format!("{name}.weight"),
            ParamRole::Weight,
            init.clone(),
            dims,
        );
        let mut inputs = vec![x, weight];
        if bias {
            inputs.push(self.param(format!("{name}.bias"), ParamRole::Bias, init, vec![cout]));
        }
        let out =
            |size: usize, axis: usize| (size + 2 * padding[axis] - kernel[axis]) / stride[axis] + 1;
        let dims = vec![cout, out(h, 0), out(w, 1)];
        self.node(
            Op::Conv2d {
                stride,
                padding,
                bias,
            },
            dims,
            span,
            &inputs,
        )
    }

    /// A square `k×k` convolution with equal stride and padding on both axes.
    pub fn conv_square(
        &mut self,
        x: NodeId,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
        bias: bool,
    ) -> NodeId {
        self.conv(x, cout, [k, k], [stride, stride], [pad, pad], bias)
    }

    /// A dense layer on `f32[N,K]`.
    pub fn dense(&mut self, x: NodeId, out: usize, bias: bool) -> NodeId {
        let (name, span) = self.layer("dense");
        let fan_in = self.dims(x)[0];
        let init = Init::UniformFanIn { fan_in, gain: 1.0 };
        let weight = self.param(
            format!("{name}.weight"),
            ParamRole::Weight,
            init.clone(),
            vec![out, fan_in],
        );
        let mut inputs = vec![x, weight];
        if bias {
            inputs.push(self.param(format!("{name}.bias"), ParamRole::Bias, init, vec![out]));
        }
        self.node(Op::Dense { bias }, vec![out], span, &inputs)
    }

    /// A BatchNorm layer (ε = 1e-5, momentum 0.1) over axis 1.
    pub fn batch_norm(&mut self, x: NodeId) -> NodeId {
        let (name, span) = self.layer("bn");
        let channels = self.dims(x)[0];
        let mut param = |what: &str, role, value| {
            let init = Init::Constant(value);
            self.param(format!("{name}.{what}"), role, init, vec![channels])
        };
        let scale = param("weight", ParamRole::BatchNormScale, 1.0);
        let shift = param("bias", ParamRole::BatchNormShift, 0.0);
        let mean = param("running_mean", ParamRole::RunningMean, 0.0);
        let var = param("running_var", ParamRole::RunningVar, 1.0);
        let dims = self.dims(x);
        let op = Op::BatchNorm {
            eps: 1e-5,
            momentum: 0.1,
        };
        self.node(op, dims, span, &[x, scale, shift, mean, var])
    }

    /// One activation; a PReLU gets a shared slope (`[1]`), initialised to 0.25.
    pub fn act(&mut self, x: NodeId, act: Activation) -> NodeId {
        self.activation_with_slope(x, act, false)
    }

    /// A PReLU with a per-channel slope `[C]`.
    pub fn prelu_per_channel(&mut self, x: NodeId) -> NodeId {
        self.activation_with_slope(x, Activation::Prelu, true)
    }

    fn activation_with_slope(&mut self, x: NodeId, act: Activation, per_channel: bool) -> NodeId {
        let (name, span) = self.layer("act");
        let dims = self.dims(x);
        let mut inputs = vec![x];
        if act == Activation::Prelu {
            let slopes = if per_channel { dims[0] } else { 1 };
            let init = Init::Constant(0.25);
            let name = format!("{name}.slope");
            inputs.push(self.param(name, ParamRole::PreluSlope, init, vec![slopes]));
        }
        self.node(Op::Activation(act), dims, span, &inputs)
    }

    /// The paper's mix of ReLU, PReLU, ELU and SoftPlus with weights `betas`.
    pub fn mix(&mut self, x: NodeId, betas: &[f32]) -> NodeId {
        let (name, span) = self.layer("mix");
        let dims = self.dims(x);
        let mut operands = Vec::new();
        for act in paper_set() {
            let mut inputs = vec![x];
            if act == Activation::Prelu {
                let init = Init::Constant(0.25);
                let slope_name = format!("{name}.prelu.slope");
                inputs.push(self.param(slope_name, ParamRole::PreluSlope, init, vec![1]));
            }
            operands.push(self.node(Op::Activation(act), dims.clone(), span, &inputs));
        }
        self.node(
            Op::Mix {
                weights: betas.to_vec(),
            },
            dims,
            span,
            &operands,
        )
    }

    /// ReLU or the mix, as `style` says.
    pub fn styled(&mut self, x: NodeId, style: &ActivationStyle) -> NodeId {
        match style {
            ActivationStyle::Relu => self.act(x, Activation::Relu),
            ActivationStyle::Mix(betas) => self.mix(x, betas),
        }
    }

    /// Element-wise sum.
    pub fn add(&mut self, operands: &[NodeId]) -> NodeId {
        let (_, span) = self.layer("add");
        let dims = self.dims(operands[0]);
        self.node(Op::Add, dims, span, operands)
    }

    fn pool_dims(&self, x: NodeId, kernel: usize, stride: usize, pad: usize) -> Vec<usize> {
        let [c, h, w] = <[usize; 3]>::try_from(self.dims(x)).expect("pool input is [C,H,W]");
        let out = |size: usize| (size + 2 * pad - kernel) / stride + 1;
        vec![c, out(h), out(w)]
    }

    /// Square max pooling.
    pub fn max_pool(&mut self, x: NodeId, kernel: usize, stride: usize, pad: usize) -> NodeId {
        let (_, span) = self.layer("maxpool");
        let dims = self.pool_dims(x, kernel, stride, pad);
        let op = Op::MaxPool {
            kernel: [kernel; 2],
            stride: [stride; 2],
            padding: [pad; 2],
        };
        self.node(op, dims, span, &[x])
    }

    /// Square average pooling (padding counted).
    pub fn avg_pool(&mut self, x: NodeId, kernel: usize, stride: usize, pad: usize) -> NodeId {
        let (_, span) = self.layer("avgpool");
        let dims = self.pool_dims(x, kernel, stride, pad);
        let op = Op::AvgPool {
            kernel: [kernel; 2],
            stride: [stride; 2],
            padding: [pad; 2],
        };
        self.node(op, dims, span, &[x])
    }

    /// Global average pooling `[C,H,W] -> [C]`.
    pub fn global_avg_pool(&mut self, x: NodeId) -> NodeId {
        let (_, span) = self.layer("gap");
        let channels = self.dims(x)[0];
        self.node(Op::GlobalAvgPool, vec![channels], span, &[x])
    }

    /// Flatten to `[N, K]`.
    pub fn flatten(&mut self, x: NodeId) -> NodeId {
        let (_, span) = self.layer("flatten");
        let elements = self.ty(x).item_elements();
        self.node(Op::Flatten, vec![elements], span, &[x])
    }

    /// Inverted dropout.
    pub fn dropout(&mut self, x: NodeId, p: f32) -> NodeId {
        let (_, span) = self.layer("dropout");
        let dims = self.dims(x);
        self.node(Op::Dropout { p }, dims, span, &[x])
    }

    /// The option-A shortcut.
    pub fn shortcut(&mut self, x: NodeId, stride: usize, pad_channels: usize) -> NodeId {
        let (_, span) = self.layer("shortcut");
        let [c, h, w] = <[usize; 3]>::try_from(self.dims(x)).expect("shortcut input is [C,H,W]");
        let dims = vec![c + 2 * pad_channels, h.div_ceil(stride), w.div_ceil(stride)];
        self.node(
            Op::ShortcutA {
                stride,
                pad_channels,
            },
            dims,
            span,
            &[x],
        )
    }

    /// Names `x` the logits (flattening it first when it is not `[N,K]`) and returns the graph.
    pub fn finish(mut self, x: NodeId) -> Graph {
        let logits = if self.dims(x).len() == 1 {
            x
        } else {
            self.flatten(x)
        };
        self.graph.add_output("logits", logits);
        self.graph
    }
}

/// A tiny LeNet: two 3×3 convolutions with activations and 2×2 max pools, then dense.
/// Input `[1, 10, 10]`, 5 classes.
pub fn tiny_lenet(style: &ActivationStyle) -> Graph {
    let mut net = Net::new();
    let image = net.input(vec![1, 10, 10]);
    let x = net.conv_square(image, 3, 3, 1, 0, true);
    let x = net.styled(x, style);
    let x = net.max_pool(x, 2, 2, 0);
    let x = net.conv_square(x, 4, 3, 1, 0, true);
    let x = net.styled(x, style);
    let x = net.max_pool(x, 2, 2, 0);
    let x = net.flatten(x);
    let logits = net.dense(x, 5, true);
    net.finish(logits)
}

/// A CIFAR-style basic block: conv-bn-act-conv-bn, plus the (option-A) shortcut, then act.
pub fn basic_block(
    net: &mut Net,
    x: NodeId,
    width: usize,
    stride: usize,
    style: &ActivationStyle,
) -> NodeId {
    let y = net.conv_square(x, width, 3, stride, 1, false);
    let y = net.batch_norm(y);
    let y = net.styled(y, style);
    let y = net.conv_square(y, width, 3, 1, 1, false);
    let y = net.batch_norm(y);
    let in_channels = net.ty(x).dims[0];
    let shortcut = if stride == 1 && in_channels == width {
        x
    } else {
        net.shortcut(x, stride, (width - in_channels) / 2)
    };
    let sum = net.add(&[y, shortcut]);
    net.styled(sum, style)
}

/// A tiny ResNet: stem conv-bn-act, a 4-wide block, an 8-wide block with stride 2 and an
/// option-A shortcut, global average pooling, dense. Input `[3, 6, 6]`, 3 classes.
pub fn tiny_resnet(style: &ActivationStyle) -> Graph {
    let mut net = Net::new();
    let image = net.input(vec![3, 6, 6]);
    let x = net.conv_square(image, 4, 3, 1, 1, false);
    let x = net.batch_norm(x);
    let x = net.styled(x, style);
    let x = basic_block(&mut net, x, 4, 1, style);
    let x = basic_block(&mut net, x, 8, 2, style);
    let x = net.global_avg_pool(x);
    let logits = net.dense(x, 3, true);
    net.finish(logits)
}
