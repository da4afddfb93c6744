//! Memory-saving rewrites applied before fusion, on a copy of the graph. Each keeps every
//! node's value bit for bit; they only change which values the backward pass reads.
//!
//! - `relu'(x) = [x > 0] = [relu(x) > 0]`: an activation gradient of ReLU (or of a leaky ReLU
//!   with a positive slope) reads the activation's output instead of its input, so the input
//!   (a BatchNorm output, or a residual sum) need not be kept for the backward pass; the output
//!   is kept anyway as the next layer's input. NaN behaves alike on both sides: `x` NaN gives
//!   `relu(x)` NaN, and `NaN ≤ 0` is false either way.
//! - `identity'(x)·dy = dy`: the gradient of the identity does not read `x` at all, so its `x`
//!   operand becomes `dy`.
//!
//! Invariant: a rewrite fires only when the activation's input has no reader other than the
//! activation and its gradients, so it removes a saved tensor and never adds one.

use crate::ir::{Activation, Graph, NodeId, Op};

/// What [`run`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RewriteStats {
    /// Activation gradients that now read the activation's output.
    pub from_output: usize,
    /// Identity gradients that no longer read their input.
    pub identity: usize,
}

/// True when `activation`'s derivative at `x` is decided by the sign of `activation(x)`.
fn sign_decides_derivative(activation: &Activation) -> bool {
    match activation {
        Activation::Relu => true,
        Activation::LeakyRelu { slope } => *slope > 0.0,
        _ => false,
    }
}

/// Applies the rewrites to `graph` in place.
pub fn run(graph: &mut Graph) -> RewriteStats {
    let mut stats = RewriteStats::default();
    for id in graph.node_ids() {
        let Op::ActivationGrad(activation) = &graph.node(id).op else {
            continue;
        };
        let activation = activation.clone();
        let inputs = graph.inputs(id);
        let (Some(&dy), Some(&x)) = (inputs.first(), inputs.get(1)) else {
            continue;
        };
        if activation == Activation::Identity {
            graph.set_input(id, 1, dy);
            stats.identity += 1;
        } else if sign_decides_derivative(&activation) {
            if let Some(output) = sole_forward_user(graph, x, &activation) {
                graph.set_input(id, 1, output);
                stats.from_output += 1;
            }
        }
    }
    stats
}

/// The one `activation(x)` node when every user of `x` is either it or a gradient of the same
/// activation.
fn sole_forward_user(graph: &Graph, x: NodeId, activation: &Activation) -> Option<NodeId> {
    let mut forward = None;
    for (user, slot) in graph.users(x) {
        match &graph.node(user).op {
            Op::Activation(kind) if kind == activation && slot == 0 => {
                if forward.replace(user).is_some() {
                    return None;
                }
            }
            Op::ActivationGrad(kind) if kind == activation && slot == 1 => {}
            _ => return None,
        }
    }
    forward
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::TensorType;
    use grammar::Span;

    #[test]
    fn relu_gradient_reads_the_output_and_identity_gradient_reads_nothing() {
        let mut graph = Graph::new();
        let ty = TensorType::batch(vec![4]);
        let span = Span::default();
        let x = graph.add(Op::Input { name: "x".into() }, ty.clone(), span, &[]);
        let dy = graph.add(Op::Input { name: "dy".into() }, ty.clone(), span, &[]);
        let y = graph.add(Op::Activation(Activation::Relu), ty.clone(), span, &[x]);
        let grad = graph.add(
            Op::ActivationGrad(Activation::Relu),
            ty.clone(),
            span,
            &[dy, x],
        );
        let other = graph.add(Op::Activation(Activation::Identity), ty.clone(), span, &[y]);
        let identity = Op::ActivationGrad(Activation::Identity);
        let identity_grad = graph.add(identity, ty.clone(), span, &[dy, y]);
        let stats = run(&mut graph);
        assert_eq!(
            stats,
            RewriteStats {
                from_output: 1,
                identity: 1
            }
        );
        assert_eq!(graph.inputs(grad), vec![dy, y]);
        assert_eq!(graph.inputs(identity_grad), vec![dy, dy]);
        assert_eq!(graph.inputs(other), vec![y]);
    }

    #[test]
    fn an_input_read_elsewhere_is_left_alone() {
        let mut graph = Graph::new();
        let ty = TensorType::batch(vec![4]);
        let span = Span::default();
        let x = graph.add(Op::Input { name: "x".into() }, ty.clone(), span, &[]);
        let dy = graph.add(Op::Input { name: "dy".into() }, ty.clone(), span, &[]);
        graph.add(Op::Activation(Activation::Relu), ty.clone(), span, &[x]);
        graph.add(
            Op::Activation(Activation::Elu { alpha: 1.0 }),
            ty.clone(),
            span,
            &[x],
        );
        let grad = graph.add(Op::ActivationGrad(Activation::Relu), ty, span, &[dy, x]);
        assert_eq!(run(&mut graph), RewriteStats::default());
        assert_eq!(graph.inputs(grad), vec![dy, x]);
    }
}
