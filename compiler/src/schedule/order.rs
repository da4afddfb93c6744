//! Kernel order: a deterministic topological order of the kernels that also runs every effect
//! after all reads of the state it overwrites.
//!
//! Invariant: a kernel runs after the kernels producing every value it reads, and an effect on
//! a state `s` runs after every other kernel that reads the old value of `s` (an SGD step on a
//! weight after each gradient kernel that reads the weight; a running-statistics update after
//! everything that reads the old statistic). Among kernels that are ready together the one
//! whose first node comes first in the graph's topological order runs first.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::ir::NodeId;

use super::classify::OpClass;
use super::fuse::LiveGraph;
use super::kernel::{Access, Kernel, KernelKind, Value};

/// `order[i]` is the index of the kernel to run `i`-th, or `None` when the kernels' dependencies
/// form a cycle (a fusion bug or an effect read after it writes).
pub(crate) fn kernel_order(live: &LiveGraph, kernels: &[Kernel]) -> Option<Vec<usize>> {
    let edges = dependencies(live, kernels);
    let mut pending: Vec<usize> = vec![0; kernels.len()];
    let mut successors: Vec<Vec<usize>> = vec![Vec::new(); kernels.len()];
    for &(before, after) in &edges {
        pending[after] += 1;
        successors[before].push(after);
    }
    let priority = |index: usize| (first_position(live, &kernels[index]), index);
    let mut ready: BinaryHeap<Reverse<(usize, usize)>> = (0..kernels.len())
        .filter(|&index| pending[index] == 0)
        .map(|index| Reverse(priority(index)))
        .collect();
    let mut order = Vec::with_capacity(kernels.len());
    while let Some(Reverse((_, index))) = ready.pop() {
        order.push(index);
        for &next in &successors[index] {
            pending[next] -= 1;
            if pending[next] == 0 {
                ready.push(Reverse(priority(next)));
            }
        }
    }
    (order.len() == kernels.len()).then_some(order)
}

fn first_position(live: &LiveGraph, kernel: &Kernel) -> usize {
    let source = kernel.args.iter().find_map(|arg| match arg.value {
        Value::Node(id) => Some(id),
        Value::Output(_) | Value::DropoutSeed | Value::Temporary(_) => None,
    });
    match kernel.nodes.first().or(source.as_ref()) {
        Some(&id) => live.pos(id),
        None => usize::MAX,
    }
}

/// Follows views to the node that computes (or holds) the value.
fn through_views(live: &LiveGraph, mut id: NodeId) -> NodeId {
    while live.class(id) == OpClass::View {
        match live.inputs[id.index()].first() {
            Some(&operand) => id = operand,
            None => break,
        }
    }
    id
}

/// Edges `(before, after)` between kernel indices, deduplicated and sorted.
fn dependencies(live: &LiveGraph, kernels: &[Kernel]) -> Vec<(usize, usize)> {
    let mut producer = vec![usize::MAX; live.position.len()];
    for (index, kernel) in kernels.iter().enumerate() {
        if matches!(kernel.kind, KernelKind::Partials | KernelKind::Coefficients) {
            continue;
        }
        for &id in &kernel.nodes {
            producer[id.index()] = index;
        }
    }
    let mut edges = Vec::new();

    let mut temporary_writer = std::collections::BTreeMap::new();
    for (index, kernel) in kernels.iter().enumerate() {
        for value in kernel.writes() {
            if let Value::Temporary(temporary) = value {
                temporary_writer.insert(temporary, index);
            }
        }
    }

    // Data: the producer of every value read runs first.
    for (index, kernel) in kernels.iter().enumerate() {
        for value in kernel.reads() {
            let source = match value {
                Value::Node(id) => producer[through_views(live, id).index()],
                Value::Temporary(temporary) => temporary_writer
                    .get(&temporary)
                    .copied()
                    .unwrap_or(usize::MAX),
                Value::Output(_) | Value::DropoutSeed => usize::MAX,
            };
            if source != usize::MAX && source != index {
                edges.push((source, index));
            }
        }
    }

    // State: readers of the old value run before the effect that overwrites it; several
    // effects on one state run in kernel-index order.
    for (effect, kernel) in kernels.iter().enumerate() {
        for arg in kernel
            .args
            .iter()
            .filter(|arg| arg.access == Access::Update)
        {
            let Value::Node(state) = arg.value else {
                continue;
            };
            let state = through_views(live, state);
            for (reader, other) in kernels.iter().enumerate() {
                let reads_old = other.reads().any(|value| match value {
                    Value::Node(id) => through_views(live, id) == state,
                    Value::Output(_) | Value::DropoutSeed | Value::Temporary(_) => false,
                });
                if reader != effect && reads_old {
                    let is_effect = other.args.iter().any(|arg| arg.access == Access::Update);
                    edges.push(if is_effect && reader > effect {
                        (effect, reader)
                    } else {
                        (reader, effect)
                    });
                }
            }
        }
    }
    edges.sort_unstable();
    edges.dedup();
    edges
}
