//! Fusion: partitions the live nodes that need a kernel into groups, one kernel each.
//!
//! Rules, in the order they are tried:
//! - element-wise chains: an element-wise node joins the group of every element-wise operand of
//!   the same type (so BatchNorm apply + activation, the k activations of a mix and their
//!   weighted sum, residual add + activation, and the backward chains of activation gradients,
//!   scales and adds of gradients each become one kernel);
//! - sibling reductions: per-channel reductions of the same operand that do not depend on each
//!   other (the bias/shift gradient and the BatchNorm scale gradient of one `dy`) share a kernel;
//! - bias into weight gradient: a convolution's bias gradient (`ChannelSum` of `dy`) joins the
//!   weight gradient of the same `dy`, whose micro-kernel computes both;
//! - everything else is a kernel of its own.
//!
//! Invariant: every group is convex (no path leaves it and re-enters it through another
//! kernel), so the groups can be ordered topologically.

use crate::ir::{Graph, NodeId, Op};

use super::classify::{class_of, OpClass};

/// Dense tables over the live nodes, shared by the scheduling steps.
pub(crate) struct LiveGraph<'g> {
    /// The graph.
    pub graph: &'g Graph,
    /// Live nodes (those an output or an effect needs), in topological order.
    pub order: Vec<NodeId>,
    /// Position of each node in `order`, by node index; `None` for dead nodes.
    pub position: Vec<Option<usize>>,
    /// Inputs of each node in slot order, by node index.
    pub inputs: Vec<Vec<NodeId>>,
    /// Live users of each node, by node index.
    pub users: Vec<Vec<NodeId>>,
    /// Position of every node (live or not) in the graph's topological order, by node index:
    /// the number printers and slot names use.
    pub number: Vec<usize>,
}

impl<'g> LiveGraph<'g> {
    /// The tables for `graph`, given its topological order. A node is live when a named
    /// output or an effect depends on it.
    pub fn new(graph: &'g Graph, topological: &[NodeId]) -> Self {
        let bound = topological
            .iter()
            .map(|id| id.index() + 1)
            .max()
            .unwrap_or(0);
        let mut inputs = vec![Vec::new(); bound];
        for &id in topological {
            inputs[id.index()] = graph.inputs(id);
        }
        let mut live = vec![false; bound];
        let mut stack: Vec<NodeId> = graph.outputs().iter().map(|(_, id)| *id).collect();
        stack.extend(
            topological
                .iter()
                .filter(|&&id| graph.node(id).op.is_effect()),
        );
        while let Some(id) = stack.pop() {
            if !std::mem::replace(&mut live[id.index()], true) {
                stack.extend(inputs[id.index()].iter().copied());
            }
        }
        let order: Vec<NodeId> = topological
            .iter()
            .copied()
            .filter(|id| live[id.index()])
            .collect();
        let mut position = vec![None; bound];
        let mut users = vec![Vec::new(); bound];
        for (index, &id) in order.iter().enumerate() {
            position[id.index()] = Some(index);
            for &input in &inputs[id.index()] {
                if users[input.index()].last() != Some(&id) {
                    users[input.index()].push(id);
                }
            }
        }
        let mut number = vec![0; bound];
        for (index, id) in topological.iter().enumerate() {
            number[id.index()] = index;
        }
        LiveGraph {
            graph,
            order,
            position,
            inputs,
            users,
            number,
        }
    }

    /// The op of `id`.
    pub fn op(&self, id: NodeId) -> &'g Op {
        &self.graph.node(id).op
    }

    /// The scheduling class of `id`.
    pub fn class(&self, id: NodeId) -> OpClass {
        class_of(self.op(id))
    }

    /// Position of a live node in the topological order (0 for a dead one, never asked).
    pub fn pos(&self, id: NodeId) -> usize {
        self.position[id.index()].unwrap_or(0)
    }
}

/// Union of node sets with member lists, merged smaller into larger.
struct Partition {
    group_of: Vec<usize>,
    members: Vec<Vec<NodeId>>,
}

impl Partition {
    fn merge(&mut self, a: usize, b: usize) -> usize {
        let (keep, gone) = if self.members[a].len() >= self.members[b].len() {
            (a, b)
        } else {
            (b, a)
        };
        let moved = std::mem::take(&mut self.members[gone]);
        for &id in &moved {
            self.group_of[id.index()] = keep;
        }
        self.members[keep].extend(moved);
        keep
    }
}

/// The fusion groups of the live nodes that need a kernel (not leaves, not views), each in
/// topological order, the groups ordered by their first node.
pub(crate) fn fuse(live: &LiveGraph) -> Vec<Vec<NodeId>> {
    let bound = live.position.len();
    let mut partition = Partition {
        group_of: vec![usize::MAX; bound],
        members: Vec::new(),
    };
    for &id in &live.order {
        if matches!(live.class(id), OpClass::Leaf | OpClass::View) {
            continue;
        }
        partition.group_of[id.index()] = partition.members.len();
        partition.members.push(vec![id]);
        match live.class(id) {
            OpClass::Elementwise => join_elementwise_operands(live, &mut partition, id),
            OpClass::Reduction => join_sibling_reduction(live, &mut partition, id),
            _ => {}
        }
    }
    join_bias_gradients(live, &mut partition);
    let mut groups: Vec<Vec<NodeId>> = partition
        .members
        .into_iter()
        .filter(|members| !members.is_empty())
        .collect();
    for group in &mut groups {
        group.sort_by_key(|&id| live.pos(id));
    }
    groups.sort_by_key(|group| group.first().map(|&id| live.pos(id)));
    groups
}

// v = f(..., u, ...) with u element-wise of v's type  =>  u and v in one kernel.
fn join_elementwise_operands(live: &LiveGraph, partition: &mut Partition, id: NodeId) {
    let ty = &live.graph.node(id).ty;
    for &operand in &live.inputs[id.index()] {
        let fusable = live.class(operand) == OpClass::Elementwise
            && live.graph.node(operand).ty == *ty
            && partition.group_of[operand.index()] != partition.group_of[id.index()];
        if fusable {
            let (a, b) = (
                partition.group_of[operand.index()],
                partition.group_of[id.index()],
            );
            if is_convex_union(live, partition, a, b) {
                partition.merge(a, b);
            }
        }
    }
}

// r1 = sum(dy, ...), r2 = sum(dy, ...), independent  =>  one multi-output reduction kernel.
fn join_sibling_reduction(live: &LiveGraph, partition: &mut Partition, id: NodeId) {
    if !is_channel_reduction(live, id) {
        return;
    }
    let Some(&source) = live.inputs[id.index()].first() else {
        return;
    };
    for &sibling in &live.users[source.index()] {
        let is_candidate = sibling != id
            && live.position[sibling.index()] < live.position[id.index()]
            && partition.group_of[sibling.index()] != usize::MAX
            && is_channel_reduction(live, sibling)
            && live.inputs[sibling.index()].first() == Some(&source);
        if !is_candidate {
            continue;
        }
        let (a, b) = (
            partition.group_of[sibling.index()],
            partition.group_of[id.index()],
        );
        let independent = partition.members[a].iter().all(|member| {
            !live.inputs[id.index()].contains(member) && !live.inputs[member.index()].contains(&id)
        });
        if independent && is_convex_union(live, partition, a, b) {
            partition.merge(a, b);
            return;
        }
    }
}

// db = Σ dy and dW = conv_weight_grad(dy, x)  =>  one micro-kernel call computing both.
fn join_bias_gradients(live: &LiveGraph, partition: &mut Partition) {
    for &id in &live.order {
        let group = partition.group_of[id.index()];
        let alone = group != usize::MAX && partition.members[group].len() == 1;
        let Some(&dy) = live.inputs[id.index()].first() else {
            continue;
        };
        let is_bias_sum = matches!(live.op(id), Op::ChannelSum)
            && alone
            && is_channel_reduction(live, id)
            && live.graph.node(dy).ty.dims.len() == 3;
        if !is_bias_sum {
            continue;
        }
        let weight_grad = live.users[dy.index()].iter().copied().find(|&user| {
            matches!(live.op(user), Op::Conv2dWeightGrad { .. })
                && live.inputs[user.index()].first() == Some(&dy)
                && partition.members[partition.group_of[user.index()]].len() == 1
        });
        if let Some(weight_grad) = weight_grad {
            let other = partition.group_of[weight_grad.index()];
            if is_convex_union(live, partition, group, other) {
                partition.merge(group, other);
            }
        }
    }
}

/// True for reductions that produce one value per channel of their batched first operand.
fn is_channel_reduction(live: &LiveGraph, id: NodeId) -> bool {
    let node = live.graph.node(id);
    let per_channel = matches!(
        node.op,
        Op::ChannelSum | Op::BatchNormScaleGrad { .. } | Op::PreluSlopeGrad
    );
    let Some(&source) = live.inputs[id.index()].first() else {
        return false;
    };
    let source_ty = &live.graph.node(source).ty;
    per_channel
        && source_ty.batched
        && !node.ty.batched
        && node.ty.dims.len() == 1
        && source_ty.dims.first() == node.ty.dims.first()
}

/// True when no path leaves `a ∪ b` and comes back through a node outside it.
fn is_convex_union(live: &LiveGraph, partition: &Partition, a: usize, b: usize) -> bool {
    let inside = |id: NodeId| {
        let group = partition.group_of[id.index()];
        group == a || group == b
    };
    let members = partition.members[a].iter().chain(&partition.members[b]);
    let last = members.clone().map(|&id| live.pos(id)).max().unwrap_or(0);
    let mut seen = vec![false; live.position.len()];
    let mut stack: Vec<NodeId> = Vec::new();
    for &member in members {
        stack.extend(
            live.users[member.index()]
                .iter()
                .filter(|&&user| !inside(user)),
        );
    }
    while let Some(id) = stack.pop() {
        if std::mem::replace(&mut seen[id.index()], true) || live.pos(id) > last {
            continue;
        }
        for &user in &live.users[id.index()] {
            if inside(user) {
                return false;
            }
            stack.push(user);
        }
    }
    true
}
