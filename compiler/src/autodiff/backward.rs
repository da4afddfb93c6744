//! The reverse-mode driver: walks the graph from the loss back to the requested nodes, asks
//! each node's rule ([`super::rules`]) for its operands' gradients, and sums the contributions
//! that reach a node with one `Add`.
//!
//! Needs: a graph whose `loss` node is a `SoftmaxCrossEntropy`. Promises: only nodes that lie
//! on a path from a requested node to the loss are differentiated, and only operands on such
//! a path get gradient nodes; existing nodes are untouched; contributions to a node are summed
//! in the order of (user id, operand slot), so the result depends only on the graph.

use std::collections::BTreeMap;

use super::rules::{rule, RuleContext, Upstream};
use super::AutodiffError;
use crate::ir::{Graph, NodeId, Op};

/// One gradient contribution to a node: the (user, slot) it came through, and its value.
type Contribution = ((NodeId, usize), NodeId);

/// The gradient node of each requested node that reaches the loss.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gradients {
    by_node: BTreeMap<NodeId, NodeId>,
}

impl Gradients {
    /// The node holding `d loss / d node`, when `node` reaches the loss.
    pub fn get(&self, node: NodeId) -> Option<NodeId> {
        self.by_node.get(&node).copied()
    }

    /// `(node, gradient)` pairs, by node.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, NodeId)> + '_ {
        self.by_node.iter().map(|(&node, &grad)| (node, grad))
    }

    /// Number of nodes with a gradient.
    pub fn len(&self) -> usize {
        self.by_node.len()
    }

    /// True when no requested node reaches the loss.
    pub fn is_empty(&self) -> bool {
        self.by_node.is_empty()
    }
}

/// Adds to `graph` the nodes computing `d loss / d node` for every node of `wrt` that the loss
/// depends on, and returns them.
///
/// # Errors
/// [`AutodiffError`] when `loss` is not a softmax cross-entropy, the graph has a cycle, or a
/// gradient reaches an op that has no rule.
pub fn backward(
    graph: &mut Graph,
    loss: NodeId,
    wrt: &[NodeId],
) -> Result<Gradients, AutodiffError> {
    let order = graph.topological_order().ok_or(AutodiffError::Cycle)?;
    let needs = needs_gradient(graph, &order, loss, wrt);
    let mut contributions: BTreeMap<NodeId, Vec<Contribution>> = BTreeMap::new();
    let mut gradients = Gradients::default();
    for &id in order.iter().rev() {
        if !needs[id.index()] {
            continue;
        }
        let upstream = if id == loss {
            Upstream::Root
        } else {
            match contributions.remove(&id) {
                Some(parts) => Upstream::Grad(accumulate(graph, id, parts)),
                None => continue,
            }
        };
        if let Upstream::Grad(grad) = upstream {
            if wrt.contains(&id) {
                gradients.by_node.insert(id, grad);
            }
        }
        let operands = graph.inputs(id);
        if !operands.iter().any(|operand| needs[operand.index()]) {
            continue;
        }
        let op = graph.node(id).op.clone();
        let mut ctx = RuleContext::new(graph, id, operands, &needs);
        for (slot, grad) in rule(&op, &mut ctx, upstream)? {
            let operand = ctx.operand(slot);
            contributions
                .entry(operand)
                .or_default()
                .push(((id, slot), grad));
        }
    }
    Ok(gradients)
}

/// `needs[i]`: node `i` lies on a path from a node of `wrt` to `loss` (both ends included).
fn needs_gradient(graph: &Graph, order: &[NodeId], loss: NodeId, wrt: &[NodeId]) -> Vec<bool> {
    let bound = order.iter().map(|id| id.index() + 1).max().unwrap_or(0);
    let mut depends_on_wrt = vec![false; bound];
    for &id in order {
        let from_operand = graph.inputs(id).iter().any(|o| depends_on_wrt[o.index()]);
        depends_on_wrt[id.index()] = wrt.contains(&id) || from_operand;
    }
    let mut reaches_loss = vec![false; bound];
    reaches_loss[loss.index()] = true;
    for &id in order.iter().rev() {
        if reaches_loss[id.index()] {
            for operand in graph.inputs(id) {
                reaches_loss[operand.index()] = true;
            }
        }
    }
    depends_on_wrt
        .iter()
        .zip(&reaches_loss)
        .map(|(&a, &b)| a && b)
        .collect()
}

/// The sum of the gradient contributions to `id`: the one contribution itself, or
/// `Add(contributions...)` in (user, slot) order, spanned like `id`.
fn accumulate(graph: &mut Graph, id: NodeId, mut parts: Vec<Contribution>) -> NodeId {
    parts.sort_by_key(|(origin, _)| *origin);
    match parts.as_slice() {
        [(_, single)] => *single,
        _ => {
            let node = graph.node(id);
            let (ty, span) = (node.ty.clone(), node.span);
            let operands: Vec<NodeId> = parts.iter().map(|(_, grad)| *grad).collect();
            graph.add(Op::Add, ty, span, &operands)
        }
    }
}
