//! The graph IR container: nodes with an op, a type and a source span, joined by ordered edges.
//!
//! Invariants a reader must not break:
//! - it wraps a petgraph `StableDiGraph`, so removing a node never renumbers the others, and a
//!   [`NodeId`] stays valid until its own node is removed;
//! - every edge goes from an operand to its user and carries the operand's slot; a node's slots
//!   are exactly `0..k` with no gaps (`inputs` returns them in order);
//! - raw petgraph indices never leave this module.

use std::collections::BTreeMap;

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use grammar::Span;

use super::op::{Op, TensorType};

/// Identifies a node of one [`Graph`]. Dense, stable across removals of other nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(u32);

impl NodeId {
    /// The raw index, for tables keyed by node (never for petgraph).
    pub fn index(self) -> usize {
        self.0 as usize
    }

    fn from_petgraph(index: NodeIndex) -> Self {
        NodeId(index.index() as u32)
    }

    fn to_petgraph(self) -> NodeIndex {
        NodeIndex::new(self.0 as usize)
    }
}

/// One node: what it computes, the type of its value, and where in the source it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The operation.
    pub op: Op,
    /// The type of the value it produces.
    pub ty: TensorType,
    /// The source text it was built from; nodes created by passes inherit the span of the node
    /// they replace.
    pub span: Span,
}

/// A graph of [`Node`]s with named outputs.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    nodes: StableDiGraph<Node, u32>,
    outputs: Vec<(String, NodeId)>,
    /// Hierarchical layer names of nodes that have one (`stage1.block2.relu1`): the site a pass
    /// derives new parameter names from, and what the printer shows beside a node.
    layer_names: BTreeMap<NodeId, String>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Graph::default()
    }

    /// Adds a node whose operands are `inputs` (slot `i` is `inputs[i]`).
    pub fn add(&mut self, op: Op, ty: TensorType, span: Span, inputs: &[NodeId]) -> NodeId {
        let index = self.nodes.add_node(Node { op, ty, span });
        for (slot, input) in inputs.iter().enumerate() {
            self.nodes.add_edge(input.to_petgraph(), index, slot as u32);
        }
        NodeId::from_petgraph(index)
    }

    /// The node `id`.
    ///
    /// # Panics
    /// When `id` was removed: ids come from this graph, so that is a bug in a pass.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.to_petgraph()]
    }

    /// The node `id`, mutably. Changing `op` or `ty` is the caller's responsibility to keep
    /// consistent with the operands.
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id.to_petgraph()]
    }

    /// True while `id` names a node of this graph.
    pub fn contains(&self, id: NodeId) -> bool {
        self.nodes.contains_node(id.to_petgraph())
    }

    /// The operands of `id`, in slot order.
    pub fn inputs(&self, id: NodeId) -> Vec<NodeId> {
        let mut edges: Vec<(u32, NodeId)> = self
            .nodes
            .edges_directed(id.to_petgraph(), Direction::Incoming)
            .map(|edge| (*edge.weight(), NodeId::from_petgraph(edge.source())))
            .collect();
        edges.sort_by_key(|(slot, _)| *slot);
        edges.into_iter().map(|(_, source)| source).collect()
    }

    /// The nodes that use `id`, each with the slot it occupies there, sorted by user then slot.
    pub fn users(&self, id: NodeId) -> Vec<(NodeId, u32)> {
        let mut users: Vec<(NodeId, u32)> = self
            .nodes
            .edges_directed(id.to_petgraph(), Direction::Outgoing)
            .map(|edge| (NodeId::from_petgraph(edge.target()), *edge.weight()))
            .collect();
        users.sort();
        users
    }

    /// Makes every user of `old` (and every output naming it) use `new` instead.
    pub fn replace_all_uses(&mut self, old: NodeId, new: NodeId) {
        for (user, slot) in self.users(old) {
            self.set_input(user, slot, new);
        }
        for (_, output) in &mut self.outputs {
            if *output == old {
                *output = new;
            }
        }
    }

    /// Points slot `slot` of `user` at `new`.
    pub fn set_input(&mut self, user: NodeId, slot: u32, new: NodeId) {
        let target = user.to_petgraph();
        let old_edge = self
            .nodes
            .edges_directed(target, Direction::Incoming)
            .find(|edge| *edge.weight() == slot)
            .map(|edge| edge.id());
        if let Some(edge) = old_edge {
            self.nodes.remove_edge(edge);
        }
        self.nodes.add_edge(new.to_petgraph(), target, slot);
    }

    /// Removes `id` and its edges. The caller makes sure no remaining node needs it.
    pub fn remove(&mut self, id: NodeId) -> Option<Node> {
        self.outputs.retain(|(_, output)| *output != id);
        self.layer_names.remove(&id);
        self.nodes.remove_node(id.to_petgraph())
    }

    /// Every node id, in creation order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes
            .node_indices()
            .map(NodeId::from_petgraph)
            .collect()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.node_count()
    }

    /// True when the graph has no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.node_count() == 0
    }

    /// Names `id` as an output of the graph (`logits`, `loss`, ...).
    pub fn add_output(&mut self, name: impl Into<String>, id: NodeId) {
        self.outputs.push((name.into(), id));
    }

    /// The named outputs, in the order they were added.
    pub fn outputs(&self) -> &[(String, NodeId)] {
        &self.outputs
    }

    /// The output called `name`.
    pub fn output(&self, name: &str) -> Option<NodeId> {
        self.outputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| *id)
    }

    /// The nodes in a topological order (operands before users). Among nodes that are ready at
    /// the same time the oldest comes first, so the order depends only on the graph's content
    /// and creation order, never on hashing. Returns `None` when the graph has a cycle.
    pub fn topological_order(&self) -> Option<Vec<NodeId>> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;

        let ids = self.node_ids();
        let bound = ids.iter().map(|id| id.index() + 1).max().unwrap_or(0);
        let mut pending = vec![0usize; bound];
        let mut ready = BinaryHeap::new();
        for &id in &ids {
            pending[id.index()] = self.inputs(id).len();
            if pending[id.index()] == 0 {
                ready.push(Reverse(id));
            }
        }
        let mut order = Vec::with_capacity(ids.len());
        while let Some(Reverse(id)) = ready.pop() {
            order.push(id);
            for (user, _) in self.users(id) {
                pending[user.index()] -= 1;
                if pending[user.index()] == 0 {
                    ready.push(Reverse(user));
                }
            }
        }
        (order.len() == ids.len()).then_some(order)
    }

    /// Gives `id` the hierarchical layer name `name` (replacing any earlier one).
    pub fn set_layer_name(&mut self, id: NodeId, name: impl Into<String>) {
        self.layer_names.insert(id, name.into());
    }

    /// The layer name of `id`, when it has one.
    pub fn layer_name(&self, id: NodeId) -> Option<&str> {
        self.layer_names.get(&id).map(String::as_str)
    }

    /// The parameter nodes, in creation order.
    pub fn params(&self) -> Vec<NodeId> {
        self.node_ids()
            .into_iter()
            .filter(|&id| matches!(self.node(id).op, Op::Param { .. }))
            .collect()
    }

    /// The parameter node named `name`.
    pub fn param(&self, name: &str) -> Option<NodeId> {
        self.params()
            .into_iter()
            .find(|&id| match &self.node(id).op {
                Op::Param {
                    name: param_name, ..
                } => param_name == name,
                _ => false,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::op::Activation;

    fn tiny() -> (Graph, NodeId, NodeId, NodeId) {
        let mut graph = Graph::new();
        let ty = TensorType::batch(vec![4]);
        let x = graph.add(
            Op::Input { name: "x".into() },
            ty.clone(),
            Span::default(),
            &[],
        );
        let relu = Op::Activation(Activation::Relu);
        let y = graph.add(relu, ty.clone(), Span::default(), &[x]);
        let z = graph.add(Op::Add, ty, Span::default(), &[y, x]);
        graph.add_output("z", z);
        (graph, x, y, z)
    }

    #[test]
    fn inputs_come_back_in_slot_order() {
        let (graph, x, y, z) = tiny();
        assert_eq!(graph.inputs(z), vec![y, x]);
        assert_eq!(graph.users(x), vec![(y, 0), (z, 1)]);
    }

    #[test]
    fn replace_all_uses_rewires_users_and_outputs() {
        let (mut graph, x, y, z) = tiny();
        graph.replace_all_uses(y, x);
        assert_eq!(graph.inputs(z), vec![x, x]);
        graph.replace_all_uses(z, y);
        assert_eq!(graph.output("z"), Some(y));
    }

    #[test]
    fn topological_order_puts_operands_first() {
        let (graph, x, y, z) = tiny();
        assert_eq!(graph.topological_order(), Some(vec![x, y, z]));
    }
}
