//! The text form of the graph IR: what `coopc compile --emit ir|coop|lowered` shows and what the
//! snapshot tests pin.
//!
//! Invariant: the text depends only on the graph's structure, never on node ids or creation
//! order. Nodes are numbered afresh (`%0`, `%1`, ...) in a depth-first post-order from the
//! outputs (operands in slot order), then from the remaining nodes that no node uses, oldest
//! first; so two graphs that compute the same thing print the same, whichever pass built them.
//!
//! ```text
//! %3 = conv2d(%0, %1, %2) stride=[1,1] padding=[0,0] bias=true : f32[N,20,24,24]  @conv1
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write};

use super::graph::{Graph, NodeId};
use super::op::{Activation, DType, Init, Op, ParamRole, TensorType};

impl fmt::Display for TensorType {
    /// `f32[N,16,32,32]` (batched), `f32[16,3,3,3]` (a parameter), `f32[]` (a scalar).
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dtype = match self.dtype {
            DType::F32 => "f32",
            DType::I32 => "i32",
        };
        let mut dims: Vec<String> = self.dims.iter().map(usize::to_string).collect();
        if self.batched {
            dims.insert(0, "N".to_string());
        }
        write!(formatter, "{dtype}[{}]", dims.join(","))
    }
}

/// The whole graph as text, one node per line, then its outputs.
pub fn print_graph(graph: &Graph) -> String {
    let order = print_order(graph);
    let numbers: HashMap<NodeId, usize> = order
        .iter()
        .enumerate()
        .map(|(number, &id)| (id, number))
        .collect();
    let mut text = String::from("graph {\n");
    for (number, &id) in order.iter().enumerate() {
        let _ = writeln!(text, "  %{number} = {}", node_line(graph, id, &numbers));
    }
    for (name, id) in graph.outputs() {
        let _ = writeln!(text, "  output {name} = {}", operand(&numbers, *id));
    }
    text.push_str("}\n");
    text
}

/// The order nodes are printed in: depth-first post-order from the outputs, then from the
/// unused nodes in creation order. Iterative, so deep graphs cannot overflow the stack.
pub fn print_order(graph: &Graph) -> Vec<NodeId> {
    let mut visited: HashSet<NodeId> = HashSet::with_capacity(graph.len());
    let mut expanding: HashSet<NodeId> = HashSet::new();
    let mut order = Vec::with_capacity(graph.len());
    let output_roots = graph.outputs().iter().map(|(_, id)| *id);
    let unused_roots: Vec<NodeId> = graph
        .node_ids()
        .into_iter()
        .filter(|&id| graph.users(id).is_empty())
        .collect();
    let leftovers = graph.node_ids();
    for root in output_roots.chain(unused_roots).chain(leftovers) {
        // Each stack entry is a node and whether its operands have been pushed already; a node
        // being expanded is never pushed again, so a (malformed) cycle cannot loop forever.
        let mut stack = vec![(root, false)];
        while let Some((id, expanded)) = stack.pop() {
            if expanded {
                expanding.remove(&id);
                if visited.insert(id) {
                    order.push(id);
                }
                continue;
            }
            if visited.contains(&id) || !expanding.insert(id) {
                continue;
            }
            stack.push((id, true));
            for input in graph.inputs(id).into_iter().rev() {
                if !visited.contains(&input) && !expanding.contains(&input) {
                    stack.push((input, false));
                }
            }
        }
    }
    order
}

fn operand(numbers: &HashMap<NodeId, usize>, id: NodeId) -> String {
    match numbers.get(&id) {
        Some(number) => format!("%{number}"),
        None => "%?".to_string(),
    }
}

/// `op(operands) attributes : type  @layer` for one node.
fn node_line(graph: &Graph, id: NodeId, numbers: &HashMap<NodeId, usize>) -> String {
    let node = graph.node(id);
    let mut line = node.op.name().to_string();
    let inputs = graph.inputs(id);
    if !inputs.is_empty() {
        let operands: Vec<String> = inputs
            .iter()
            .map(|&input| operand(numbers, input))
            .collect();
        let _ = write!(line, "({})", operands.join(", "));
    }
    let attributes = attributes(&node.op);
    if !attributes.is_empty() {
        let _ = write!(line, " {attributes}");
    }
    let _ = write!(line, " : {}", node.ty);
    if let Some(layer) = graph.layer_name(id) {
        let _ = write!(line, "  @{layer}");
    }
    line
}

/// The attributes of an op as `key=value` pairs separated by spaces (empty when it has none).
pub fn attributes(op: &Op) -> String {
    let pair = |values: [usize; 2]| format!("[{},{}]", values[0], values[1]);
    match op {
        Op::Input { name } | Op::Labels { name } | Op::Scalar { name } => format!("\"{name}\""),
        Op::Param { name, role, init } => {
            format!("\"{name}\" {} init={}", role_name(*role), init_text(init))
        }
        Op::Conv2d {
            stride,
            padding,
            bias,
        } => format!(
            "stride={} padding={} bias={bias}",
            pair(*stride),
            pair(*padding)
        ),
        Op::Dense { bias } => format!("bias={bias}"),
        Op::BatchNorm { eps, momentum } => format!("eps={eps} momentum={momentum}"),
        Op::Activation(activation) => activation_constants(activation),
        Op::Mix { weights } => format!("weights={}", float_list(weights)),
        Op::MaxPool {
            kernel,
            stride,
            padding,
        }
        | Op::AvgPool {
            kernel,
            stride,
            padding,
        }
        | Op::MaxPoolGrad {
            kernel,
            stride,
            padding,
        }
        | Op::AvgPoolGrad {
            kernel,
            stride,
            padding,
        } => format!(
            "kernel={} stride={} padding={}",
            pair(*kernel),
            pair(*stride),
            pair(*padding)
        ),
        Op::Dropout { p } => format!("p={p}"),
        Op::ShortcutA {
            stride,
            pad_channels,
        }
        | Op::ShortcutAGrad {
            stride,
            pad_channels,
        } => {
            format!("stride={stride} pad_channels={pad_channels}")
        }
        Op::BatchNormApply { eps }
        | Op::BatchNormScaleGrad { eps }
        | Op::BatchNormInputGrad { eps } => format!("eps={eps}"),
        Op::RunningUpdate { momentum, unbiased } => {
            format!("momentum={momentum} unbiased={unbiased}")
        }
        Op::Conv2dInputGrad { stride, padding } | Op::Conv2dWeightGrad { stride, padding } => {
            format!("stride={} padding={}", pair(*stride), pair(*padding))
        }
        Op::ActivationGrad(activation) => {
            let constants = activation_constants(activation);
            let separator = if constants.is_empty() { "" } else { " " };
            format!("activation={}{separator}{constants}", activation.name())
        }
        Op::Scale { factor } => format!("factor={factor}"),
        Op::DropoutGrad { p, site } => format!("p={p} site={site}"),
        Op::SgdUpdate {
            momentum,
            weight_decay,
            nesterov,
        } => {
            format!("momentum={momentum} weight_decay={weight_decay} nesterov={nesterov}")
        }
        Op::Add
        | Op::GlobalAvgPool
        | Op::Flatten
        | Op::SoftmaxCrossEntropy
        | Op::BatchMean
        | Op::BatchVar
        | Op::ChannelSum
        | Op::DenseInputGrad
        | Op::DenseWeightGrad
        | Op::PreluSlopeGrad
        | Op::GlobalAvgPoolGrad
        | Op::Reshape
        | Op::SoftmaxCrossEntropyGrad
        | Op::CorrectCount => String::new(),
    }
}

fn activation_constants(activation: &Activation) -> String {
    match activation {
        Activation::Relu | Activation::Prelu | Activation::Identity => String::new(),
        Activation::Elu { alpha } => format!("alpha={alpha}"),
        Activation::Softplus { beta, threshold } => format!("beta={beta} threshold={threshold}"),
        Activation::LeakyRelu { slope } => format!("slope={slope}"),
    }
}

/// Lower-case name of a parameter role, as printed.
pub fn role_name(role: ParamRole) -> &'static str {
    match role {
        ParamRole::Weight => "weight",
        ParamRole::Bias => "bias",
        ParamRole::BatchNormScale => "bn_scale",
        ParamRole::BatchNormShift => "bn_shift",
        ParamRole::RunningMean => "running_mean",
        ParamRole::RunningVar => "running_var",
        ParamRole::PreluSlope => "prelu_slope",
        ParamRole::MomentumBuffer => "momentum_buffer",
    }
}

fn init_text(init: &Init) -> String {
    match init {
        Init::Constant(value) => format!("const({value})"),
        Init::UniformFanIn { fan_in, gain } => format!("uniform(fan_in={fan_in},gain={gain})"),
        Init::KaimingNormal { fan } => format!("kaiming_normal(fan={fan})"),
    }
}

fn float_list(values: &[f32]) -> String {
    let items: Vec<String> = values.iter().map(f32::to_string).collect();
    format!("[{}]", items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use grammar::Span;

    fn param(graph: &mut Graph, name: &str, dims: Vec<usize>) -> NodeId {
        let op = Op::Param {
            name: name.into(),
            role: ParamRole::Weight,
            init: Init::Constant(0.0),
        };
        graph.add(op, TensorType::fixed(dims), Span::default(), &[])
    }

    #[test]
    fn types_print_with_a_symbolic_batch() {
        assert_eq!(
            TensorType::batch(vec![16, 32, 32]).to_string(),
            "f32[N,16,32,32]"
        );
        assert_eq!(TensorType::fixed(vec![10]).to_string(), "f32[10]");
        let labels = TensorType {
            dtype: DType::I32,
            batched: true,
            dims: vec![],
        };
        assert_eq!(labels.to_string(), "i32[N]");
    }

    #[test]
    fn printing_ignores_creation_order() {
        // The same dense layer built in two orders prints the same.
        let mut first = Graph::new();
        let x = first.add(
            Op::Input { name: "x".into() },
            TensorType::batch(vec![4]),
            Span::default(),
            &[],
        );
        let weight = param(&mut first, "fc.weight", vec![2, 4]);
        let y = first.add(
            Op::Dense { bias: false },
            TensorType::batch(vec![2]),
            Span::default(),
            &[x, weight],
        );
        first.add_output("y", y);

        let mut second = Graph::new();
        let weight = param(&mut second, "fc.weight", vec![2, 4]);
        let x = second.add(
            Op::Input { name: "x".into() },
            TensorType::batch(vec![4]),
            Span::default(),
            &[],
        );
        let y = second.add(
            Op::Dense { bias: false },
            TensorType::batch(vec![2]),
            Span::default(),
            &[x, weight],
        );
        second.add_output("y", y);

        let text = print_graph(&first);
        assert_eq!(text, print_graph(&second));
        assert_eq!(
            text,
            "graph {\n  %0 = input \"x\" : f32[N,4]\n  %1 = param \"fc.weight\" weight \
             init=const(0) : f32[2,4]\n  %2 = dense(%0, %1) bias=false : f32[N,2]\n  \
             output y = %2\n}\n"
        );
    }

    #[test]
    fn training_ops_print_their_attributes() {
        let grad = Op::ActivationGrad(Activation::Elu { alpha: 1.0 });
        assert_eq!(attributes(&grad), "activation=elu alpha=1");
        let sgd = Op::SgdUpdate {
            momentum: 0.9,
            weight_decay: 0.0001,
            nesterov: false,
        };
        assert_eq!(
            attributes(&sgd),
            "momentum=0.9 weight_decay=0.0001 nesterov=false"
        );
        assert_eq!(
            attributes(&Op::DropoutGrad { p: 0.5, site: 3 }),
            "p=0.5 site=3"
        );
    }
}
