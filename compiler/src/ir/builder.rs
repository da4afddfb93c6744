//! [`GraphBuilder`]: adds typed nodes to a [`Graph`], one method per kind of layer.
//!
//! Each method creates the layer's parameter nodes with stable hierarchical names
//! (`<layer>.weight`, `<layer>.bias`, `<layer>.scale`, `<layer>.shift`, `<layer>.running_mean`,
//! `<layer>.running_var`, `<layer>.slope`) and PyTorch's default initialisers, infers the
//! layer's type, records the layer name and the source span, and returns the node's id.
//!
//! Invariant: a method either adds its whole layer or nothing. All checks (shapes, duplicate
//! parameter names) run before the first node is added, so an error leaves the graph as it was.

use std::collections::HashMap;

use miette::LabeledSpan;

use grammar::Span;

use super::graph::{Graph, NodeId};
use super::op::{Activation, DType, Init, Op, Pair, ParamRole, TensorType};
use crate::error::BuildError;
use crate::infer::{self, ShapeError};

/// How the weight of a convolution or dense layer starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightInit {
    /// PyTorch's default: uniform on `±1/sqrt(fan_in)` (`kaiming_uniform_(a=√5)`).
    #[default]
    Default,
    /// `kaiming_normal_` with `mode="fan_in"`: normal, std `sqrt(2/fan_in)`.
    KaimingNormalFanIn,
    /// `kaiming_normal_` with `mode="fan_out"` (torchvision's ResNets): std `sqrt(2/fan_out)`.
    KaimingNormalFanOut,
}

impl WeightInit {
    /// The initialiser named `name` in `.coop` source (`"default"`, `"kaiming_normal"`,
    /// `"kaiming_normal_fan_out"`).
    pub fn from_name(name: &str) -> Option<WeightInit> {
        Some(match name {
            "default" => WeightInit::Default,
            "kaiming_normal" => WeightInit::KaimingNormalFanIn,
            "kaiming_normal_fan_out" => WeightInit::KaimingNormalFanOut,
            _ => return None,
        })
    }

    fn init(self, fan_in: usize, fan_out: usize) -> Init {
        match self {
            WeightInit::Default => Init::UniformFanIn { fan_in, gain: 1.0 },
            WeightInit::KaimingNormalFanIn => Init::KaimingNormal { fan: fan_in },
            WeightInit::KaimingNormalFanOut => Init::KaimingNormal { fan: fan_out },
        }
    }
}

/// A convolution layer's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvSpec {
    /// Output channels.
    pub out_channels: usize,
    /// Kernel (height, width).
    pub kernel: Pair,
    /// Stride (height, width).
    pub stride: Pair,
    /// Zero padding per side (height, width).
    pub padding: Pair,
    /// Whether it has a bias.
    pub bias: bool,
    /// How its weight starts (the bias always uses PyTorch's default).
    pub init: WeightInit,
}

/// A dense layer's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseSpec {
    /// Output features.
    pub out_features: usize,
    /// Whether it has a bias.
    pub bias: bool,
    /// How its weight starts.
    pub init: WeightInit,
}

/// A pooling window.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSpec {
    /// Window (height, width).
    pub kernel: Pair,
    /// Stride (height, width).
    pub stride: Pair,
    /// Padding per side.
    pub padding: Pair,
}

/// BatchNorm constants (PyTorch's defaults: ε = 1e-5, momentum = 0.1).
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNormSpec {
    /// Added to the variance.
    pub eps: f32,
    /// Weight of the batch statistic in the running estimate.
    pub momentum: f32,
}

impl Default for BatchNormSpec {
    fn default() -> Self {
        BatchNormSpec {
            eps: 1e-5,
            momentum: 0.1,
        }
    }
}

/// An operand of a node being built: an existing node, or a parameter about to be created.
enum Operand {
    Node(NodeId),
    New(TensorType),
}

/// Adds layers to a graph. See the module documentation.
pub struct GraphBuilder<'g> {
    graph: &'g mut Graph,
    param_names: HashMap<String, Span>,
}

impl<'g> GraphBuilder<'g> {
    /// A builder adding to `graph` (which may already hold nodes).
    pub fn new(graph: &'g mut Graph) -> Self {
        let mut param_names = HashMap::new();
        for id in graph.params() {
            if let Op::Param { name, .. } = &graph.node(id).op {
                param_names.insert(name.clone(), graph.node(id).span);
            }
        }
        GraphBuilder { graph, param_names }
    }

    /// The graph built so far.
    pub fn graph(&self) -> &Graph {
        self.graph
    }

    /// The graph, for the edits the builder has no method for (rewiring users, removing
    /// nodes). Names of parameters removed this way stay reserved in this builder, which is
    /// only ever stricter.
    pub fn graph_mut(&mut self) -> &mut Graph {
        self.graph
    }

    /// The type of node `id`.
    pub fn ty(&self, id: NodeId) -> &TensorType {
        &self.graph.node(id).ty
    }

    /// A model input `f32[N, dims...]`.
    ///
    /// # Errors
    /// [`BuildError::Shape`] when a dimension is zero or the tensor is too large.
    pub fn input(
        &mut self,
        name: &str,
        dims: Vec<usize>,
        span: Span,
    ) -> Result<NodeId, BuildError> {
        infer::check_elements("input", &dims).map_err(|error| shape(error, "input", span))?;
        let op = Op::Input {
            name: name.to_string(),
        };
        Ok(self.graph.add(op, TensorType::batch(dims), span, &[]))
    }

    /// The class labels `i32[N]` fed by the runtime.
    pub fn labels(&mut self, name: &str, span: Span) -> NodeId {
        let ty = TensorType {
            dtype: DType::I32,
            batched: true,
            dims: Vec::new(),
        };
        self.graph.add(
            Op::Labels {
                name: name.to_string(),
            },
            ty,
            span,
            &[],
        )
    }

    /// A named parameter of `dims`.
    ///
    /// # Errors
    /// [`BuildError::DuplicateName`] when a parameter of that name exists, and
    /// [`BuildError::Shape`] for zero or too large dims.
    pub fn param(
        &mut self,
        name: &str,
        role: ParamRole,
        init: Init,
        dims: Vec<usize>,
        span: Span,
    ) -> Result<NodeId, BuildError> {
        self.reserve(&[name.to_string()], span)?;
        infer::check_elements("param", &dims).map_err(|error| shape(error, "param", span))?;
        Ok(self.add_param(name.to_string(), role, init, dims, span))
    }

    /// A convolution `layer`, with `layer.weight` `[Cout, Cin, Kh, Kw]` and, with a bias,
    /// `layer.bias` `[Cout]`.
    ///
    /// # Errors
    /// [`BuildError::Shape`] when the input is not an image or the kernel does not fit, and
    /// [`BuildError::DuplicateName`] when the parameter names are taken.
    pub fn conv(
        &mut self,
        x: NodeId,
        spec: &ConvSpec,
        layer: &str,
        span: Span,
    ) -> Result<NodeId, BuildError> {
        let op = Op::Conv2d {
            stride: spec.stride,
            padding: spec.padding,
            bias: spec.bias,
        };
        if spec.out_channels == 0 {
            let error = ShapeError::ZeroSize {
                op: "conv2d",
                what: "number of output channels",
            };
            return Err(shape(error, "conv", span));
        }
        let in_channels = self.ty(x).dims.first().copied().unwrap_or(1);
        let [kernel_h, kernel_w] = spec.kernel;
        let weight_dims = vec![spec.out_channels, in_channels, kernel_h, kernel_w];
        let area = kernel_h.saturating_mul(kernel_w);
        let fan_in = in_channels.saturating_mul(area);
        let fan_out = spec.out_channels.saturating_mul(area);
        let mut params = vec![(
            format!("{layer}.weight"),
            ParamRole::Weight,
            spec.init.init(fan_in, fan_out),
            weight_dims,
        )];
        if spec.bias {
            let init = Init::UniformFanIn { fan_in, gain: 1.0 };
            params.push((
                format!("{layer}.bias"),
                ParamRole::Bias,
                init,
                vec![spec.out_channels],
            ));
        }
        self.layer_with_params(op, x, params, layer, span)
    }

    /// A dense layer, with `layer.weight` `[M, K]` and, with a bias, `layer.bias` `[M]`.
    ///
    /// # Errors
    /// As [`GraphBuilder::conv`]; the input must be `f32[N, K]` (flatten first).
    pub fn dense(
        &mut self,
        x: NodeId,
        spec: &DenseSpec,
        layer: &str,
        span: Span,
    ) -> Result<NodeId, BuildError> {
        if spec.out_features == 0 {
            let error = ShapeError::ZeroSize {
                op: "dense",
                what: "number of output features",
            };
            return Err(shape(error, "dense", span));
        }
        let in_features = self.ty(x).dims.first().copied().unwrap_or(1);
        let init = spec.init.init(in_features, spec.out_features);
        let mut params = vec![(
            format!("{layer}.weight"),
            ParamRole::Weight,
            init,
            vec![spec.out_features, in_features],
        )];
        if spec.bias {
            let init = Init::UniformFanIn {
                fan_in: in_features,
                gain: 1.0,
            };
            params.push((
                format!("{layer}.bias"),
                ParamRole::Bias,
                init,
                vec![spec.out_features],
            ));
        }
        self.layer_with_params(Op::Dense { bias: spec.bias }, x, params, layer, span)
    }

    /// A BatchNorm layer with `layer.scale` (1), `layer.shift` (0), `layer.running_mean` (0)
    /// and `layer.running_var` (1), all `[C]`.
    ///
    /// # Errors
    /// As [`GraphBuilder::conv`].
    pub fn batchnorm(
        &mut self,
        x: NodeId,
        spec: &BatchNormSpec,
        layer: &str,
        span: Span,
    ) -> Result<NodeId, BuildError> {
        let channels = self.ty(x).dims.first().copied().unwrap_or(1);
        let per_channel = |suffix: &str, role, value| {
            (
                format!("{layer}.{suffix}"),
                role,
                Init::Constant(value),
                vec![channels],
            )
        };
        let params = vec![
            per_channel("scale", ParamRole::BatchNormScale, 1.0),
            per_channel("shift", ParamRole::BatchNormShift, 0.0),
            per_channel("running_mean", ParamRole::RunningMean, 0.0),
            per_channel("running_var", ParamRole::RunningVar, 1.0),
        ];
        let op = Op::BatchNorm {
            eps: spec.eps,
            momentum: spec.momentum,
        };
        self.layer_with_params(op, x, params, layer, span)
    }

    /// An activation layer. A PReLU gets one shared slope `layer.slope` `[1]`, as
    /// `nn.PReLU()`; use [`GraphBuilder::prelu`] for other slopes.
    ///
    /// # Errors
    /// As [`GraphBuilder::conv`].
    pub fn activation(
        &mut self,
        x: NodeId,
        activation: &Activation,
        layer: &str,
        span: Span,
    ) -> Result<NodeId, BuildError> {
        if *activation == Activation::Prelu {
            return self.prelu(x, &format!("{layer}.slope"), false, layer, span);
        }
        let op = Op::Activation(activation.clone());
        self.layer_with_params(op, x, Vec::new(), layer, span)
    }

    /// A PReLU whose slope parameter, named `slope_name`, is `[C]` when `per_channel` and `[1]`
    /// otherwise, initialised to 0.25.
    ///
    /// # Errors
    /// As [`GraphBuilder::conv`].
    pub fn prelu(
        &mut self,
        x: NodeId,
        slope_name: &str,
        per_channel: bool,
        layer: &str,
        span: Span,
    ) -> Result<NodeId, BuildError> {
        let channels = if per_channel {
            self.ty(x).dims.first().copied().unwrap_or(1)
        } else {
            1
        };
        let slope = (
            slope_name.to_string(),
            ParamRole::PreluSlope,
            Init::Constant(0.25),
            vec![channels],
        );
        self.layer_with_params(
            Op::Activation(Activation::Prelu),
            x,
            vec![slope],
            layer,
            span,
        )
    }

    /// An activation applied to `x` with existing operands after `x` (a PReLU's slope).
    ///
    /// # Errors
    /// [`BuildError::Shape`] when the operands do not fit.
    pub fn apply(
        &mut self,
        op: Op,
        inputs: &[NodeId],
        layer: &str,
        span: Span,
    ) -> Result<NodeId, BuildError> {
        let operands: Vec<Operand> = inputs.iter().map(|&id| Operand::Node(id)).collect();
        let ty = self.infer_op(&op, &operands, op.name(), span)?;
        let id = self.graph.add(op, ty, span, inputs);
        self.name_layer(id, layer);
        Ok(id)
    }

    /// The cooperative mix `Σ weights[i]·members[i]`.
    ///
    /// # Errors
    /// [`BuildError::Shape`] when the members differ in type or number from the weights.
    pub fn mix(
        &mut self,
        members: &[NodeId],
        weights: Vec<f32>,
        layer: &str,
        span: Span,
    ) -> Result<NodeId, BuildError> {
        self.apply(Op::Mix { weights }, members, layer, span)
    }

    /// The element-wise sum of `operands` (a residual add).
    ///
    /// # Errors
    /// [`BuildError::Shape`] with both shapes when the operands differ.
    pub fn add(&mut self, operands: &[NodeId], span: Span) -> Result<NodeId, BuildError> {
        self.apply(Op::Add, operands, "", span)
    }

    /// Max pooling.
    ///
    /// # Errors
    /// [`BuildError::Shape`] when the window does not fit.
    pub fn maxpool(
        &mut self,
        x: NodeId,
        spec: &PoolSpec,
        layer: &str,
        span: Span,
    ) -> Result<NodeId, BuildError> {
        let op = Op::MaxPool {
            kernel: spec.kernel,
            stride: spec.stride,
            padding: spec.padding,
        };
        self.apply(op, &[x], layer, span)
    }

    /// Average pooling (padding counted in the divisor).
    ///
    /// # Errors
    /// [`BuildError::Shape`] when the window does not fit.
    pub fn avgpool(
        &mut self,
        x: NodeId,
        spec: &PoolSpec,
        layer: &str,
        span: Span,
    ) -> Result<NodeId, BuildError> {
        let op = Op::AvgPool {
            kernel: spec.kernel,
            stride: spec.stride,
            padding: spec.padding,
        };
        self.apply(op, &[x], layer, span)
    }

    /// Mean over height and width.
    ///
    /// # Errors
    /// [`BuildError::Shape`] when `x` is not an image.
    pub fn global_avgpool(
        &mut self,
        x: NodeId,
        layer: &str,
        span: Span,
    ) -> Result<NodeId, BuildError> {
        self.apply(Op::GlobalAvgPool, &[x], layer, span)
    }

    /// `[N, d...] -> [N, Πd]`.
    ///
    /// # Errors
    /// [`BuildError::Shape`] when `x` has no dimension to flatten.
    pub fn flatten(&mut self, x: NodeId, layer: &str, span: Span) -> Result<NodeId, BuildError> {
        self.apply(Op::Flatten, &[x], layer, span)
    }

    /// Inverted dropout with drop probability `p`.
    ///
    /// # Errors
    /// [`BuildError::Shape`] when `p` is outside `[0, 1)`.
    pub fn dropout(
        &mut self,
        x: NodeId,
        p: f32,
        layer: &str,
        span: Span,
    ) -> Result<NodeId, BuildError> {
        self.apply(Op::Dropout { p }, &[x], layer, span)
    }

    /// The ResNet option-A shortcut: subsample by `stride`, pad `pad_channels` zero channels on
    /// each side.
    ///
    /// # Errors
    /// [`BuildError::Shape`] when `x` is not an image or `stride` is 0.
    pub fn shortcut_a(
        &mut self,
        x: NodeId,
        stride: usize,
        pad_channels: usize,
        layer: &str,
        span: Span,
    ) -> Result<NodeId, BuildError> {
        self.apply(
            Op::ShortcutA {
                stride,
                pad_channels,
            },
            &[x],
            layer,
            span,
        )
    }

    /// Softmax cross-entropy of `logits` against `labels`, a scalar.
    ///
    /// # Errors
    /// [`BuildError::Shape`] unless `logits` is `f32[N,K]` and `labels` `i32[N]`.
    pub fn softmax_cross_entropy(
        &mut self,
        logits: NodeId,
        labels: NodeId,
        span: Span,
    ) -> Result<NodeId, BuildError> {
        self.apply(Op::SoftmaxCrossEntropy, &[logits, labels], "", span)
    }

    /// Names `id` as the graph output `name`.
    pub fn output(&mut self, name: &str, id: NodeId) {
        self.graph.add_output(name, id);
    }

    /// Infers the op's type with its new parameters, then adds the parameters and the op.
    fn layer_with_params(
        &mut self,
        op: Op,
        x: NodeId,
        params: Vec<(String, ParamRole, Init, Vec<usize>)>,
        layer: &str,
        span: Span,
    ) -> Result<NodeId, BuildError> {
        let op_name = op.name();
        let mut operands = vec![Operand::Node(x)];
        for (_, _, _, dims) in &params {
            infer::check_elements(op_name, dims).map_err(|error| shape(error, op_name, span))?;
            operands.push(Operand::New(TensorType::fixed(dims.clone())));
        }
        let ty = self.infer_op(&op, &operands, op_name, span)?;
        let names: Vec<String> = params.iter().map(|(name, ..)| name.clone()).collect();
        self.reserve(&names, span)?;

        let mut inputs = vec![x];
        for (name, role, init, dims) in params {
            inputs.push(self.add_param(name, role, init, dims, span));
        }
        let id = self.graph.add(op, ty, span, &inputs);
        self.name_layer(id, layer);
        Ok(id)
    }

    fn add_param(
        &mut self,
        name: String,
        role: ParamRole,
        init: Init,
        dims: Vec<usize>,
        span: Span,
    ) -> NodeId {
        self.param_names.insert(name.clone(), span);
        let op = Op::Param { name, role, init };
        self.graph.add(op, TensorType::fixed(dims), span, &[])
    }

    /// Fails when any of `names` is already a parameter's (or repeats within `names`).
    fn reserve(&self, names: &[String], span: Span) -> Result<(), BuildError> {
        for (index, name) in names.iter().enumerate() {
            let repeated = names[..index].contains(name);
            if let Some(previous) = self
                .param_names
                .get(name)
                .copied()
                .or(repeated.then_some(span))
            {
                let what = "parameter";
                return Err(BuildError::DuplicateName {
                    what,
                    name: name.clone(),
                    span,
                    previous,
                });
            }
        }
        Ok(())
    }

    fn name_layer(&mut self, id: NodeId, layer: &str) {
        if !layer.is_empty() {
            self.graph.set_layer_name(id, layer);
        }
    }

    /// The op's type, or a shape error labelling the operands involved with their types.
    fn infer_op(
        &self,
        op: &Op,
        operands: &[Operand],
        op_name: &str,
        span: Span,
    ) -> Result<TensorType, BuildError> {
        let types: Vec<&TensorType> = operands
            .iter()
            .map(|operand| match operand {
                Operand::Node(id) => &self.graph.node(*id).ty,
                Operand::New(ty) => ty,
            })
            .collect();
        infer::infer(op, &types).map_err(|error| {
            let slots = match &error {
                ShapeError::OperandMismatch {
                    lhs_slot, rhs_slot, ..
                } => vec![*lhs_slot, *rhs_slot],
                ShapeError::OperandKind { slot, .. } => vec![*slot],
                _ => vec![0],
            };
            let mut labels = Vec::new();
            for slot in slots {
                if let Some(Operand::Node(id)) = operands.get(slot) {
                    let node = self.graph.node(*id);
                    if node.span != span {
                        let text = format!("this is {}", node.ty);
                        labels.push(LabeledSpan::new_with_span(Some(text), node.span));
                    }
                }
            }
            BuildError::Shape {
                error: Box::new(error),
                span,
                op: op_name.to_string(),
                operands: labels,
            }
        })
    }
}

fn shape(error: ShapeError, op: &str, span: Span) -> BuildError {
    BuildError::Shape {
        error: Box::new(error),
        span,
        op: op.to_string(),
        operands: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::verify::verify;

    fn span(start: u32) -> Span {
        Span::new(start, start + 1)
    }

    fn conv3x3(out_channels: usize, stride: usize) -> ConvSpec {
        ConvSpec {
            out_channels,
            kernel: [3, 3],
            stride: [stride; 2],
            padding: [1, 1],
            bias: false,
            init: WeightInit::Default,
        }
    }

    #[test]
    fn layers_get_hierarchical_parameter_names_and_pytorch_inits() {
        let mut graph = Graph::new();
        let mut builder = GraphBuilder::new(&mut graph);
        let x = builder.input("image", vec![3, 32, 32], span(0)).unwrap();
        let conv = builder
            .conv(x, &conv3x3(16, 1), "stage1.0.conv1", span(1))
            .unwrap();
        let bn = builder.batchnorm(conv, &BatchNormSpec::default(), "stage1.0.bn1", span(2));
        let act = builder.activation(bn.unwrap(), &Activation::Prelu, "stage1.0.prelu1", span(3));
        builder.output("y", act.unwrap());
        assert_eq!(verify(&graph), Ok(()));

        let names: Vec<String> = graph
            .params()
            .into_iter()
            .filter_map(|id| match &graph.node(id).op {
                Op::Param { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect();
        let expected = [
            "stage1.0.conv1.weight",
            "stage1.0.bn1.scale",
            "stage1.0.bn1.shift",
            "stage1.0.bn1.running_mean",
            "stage1.0.bn1.running_var",
            "stage1.0.prelu1.slope",
        ];
        assert_eq!(names, expected);
        let weight = graph.param("stage1.0.conv1.weight").unwrap();
        let Op::Param { init, .. } = &graph.node(weight).op else {
            panic!("not a param")
        };
        assert_eq!(
            *init,
            Init::UniformFanIn {
                fan_in: 27,
                gain: 1.0
            }
        );
        assert_eq!(graph.node(weight).ty, TensorType::fixed(vec![16, 3, 3, 3]));
        assert_eq!(graph.layer_name(conv), Some("stage1.0.conv1"));
    }

    #[test]
    fn a_failed_layer_adds_nothing() {
        let mut graph = Graph::new();
        let mut builder = GraphBuilder::new(&mut graph);
        let x = builder.input("image", vec![3, 4, 4], span(0)).unwrap();
        let big = ConvSpec {
            kernel: [7, 7],
            padding: [0, 0],
            ..conv3x3(8, 1)
        };
        let error = builder.conv(x, &big, "conv1", span(5)).unwrap_err();
        let BuildError::Shape { error, .. } = error else {
            panic!("{error:?}")
        };
        assert!(matches!(*error, ShapeError::KernelLargerThanInput { .. }));
        builder.conv(x, &conv3x3(8, 1), "conv1", span(6)).unwrap();
        let again = builder
            .conv(x, &conv3x3(8, 1), "conv1", span(7))
            .unwrap_err();
        assert!(matches!(
            again,
            BuildError::DuplicateName {
                what: "parameter",
                ..
            }
        ));
        assert_eq!(graph.len(), 3);
    }

    #[test]
    fn add_mismatch_labels_both_operands_with_their_types() {
        let mut graph = Graph::new();
        let mut builder = GraphBuilder::new(&mut graph);
        let x = builder.input("image", vec![16, 32, 32], span(0)).unwrap();
        let y = builder.conv(x, &conv3x3(32, 2), "conv1", span(3)).unwrap();
        let error = builder.add(&[x, y], Span::new(0, 10)).unwrap_err();
        let BuildError::Shape { operands, .. } = error else {
            panic!("not a shape error")
        };
        let labels: Vec<_> = operands.iter().filter_map(|label| label.label()).collect();
        assert_eq!(
            labels,
            ["this is f32[N,16,32,32]", "this is f32[N,32,16,16]"]
        );
    }

    #[test]
    fn dense_bias_and_kaiming_fan_out() {
        let mut graph = Graph::new();
        let mut builder = GraphBuilder::new(&mut graph);
        let x = builder.input("features", vec![64], span(0)).unwrap();
        let spec = DenseSpec {
            out_features: 10,
            bias: true,
            init: WeightInit::KaimingNormalFanOut,
        };
        builder.dense(x, &spec, "fc", span(1)).unwrap();
        let weight = graph.param("fc.weight").unwrap();
        let Op::Param { init, .. } = &graph.node(weight).op else {
            panic!("not a param")
        };
        assert_eq!(*init, Init::KaimingNormal { fan: 10 });
        let bias = graph.param("fc.bias").unwrap();
        assert_eq!(graph.node(bias).ty, TensorType::fixed(vec![10]));
    }
}
