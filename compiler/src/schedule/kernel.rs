//! Kernels: a fusion group together with the values it reads and writes, in argument order.
//!
//! Invariant: the arguments of a kernel are fixed here, once, and the MLIR emitter and the
//! buffer plan both follow them: for single-op kernels the operands in slot order (then the
//! result), for fused groups the distinct outside operands in first-use order (then the
//! results); effects update their state operands in place.

use crate::ir::{NodeId, Op, TensorType};

use super::classify::{class_of, is_batch_local, OpClass};
use super::fuse::LiveGraph;
use super::GraphMode;

/// A value a kernel argument is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    /// The value of a node (through views and effects to the storage that holds it).
    Node(NodeId),
    /// The copy of a node's value made for the graph output with this index, when the node
    /// cannot itself be stored as that output (a leaf, a view, or a value two outputs name).
    Output(usize),
    /// The step's dropout seed, fed by the caller as `dropout_seed: i32[2]` (the low and high
    /// 32 bits of the `u64` seed of `reference::dropout`).
    DropoutSeed,
    /// A value one kernel passes to another that is no node of the graph (the column sums of
    /// a split reduction, the per-channel coefficients of a BatchNorm input gradient); its
    /// type is `Schedule::temporaries[index]`.
    Temporary(usize),
}

/// How a kernel uses an argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Read only.
    Read,
    /// Fully written, not read.
    Write,
    /// Read, then updated in place (the state of an effect).
    Update,
}

/// One argument of a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KernelArg {
    /// The value bound to it.
    pub value: Value,
    /// How the kernel uses it.
    pub access: Access,
}

/// What sort of code a kernel is, which decides how it is emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelKind {
    /// One fused element-wise group: a single `linalg.generic` over the group's type.
    Elementwise,
    /// One or more sibling reductions of the same operand (or the finish half of a split one).
    Reduction,
    /// The per-item half of a split reduction: column sums for each batch item.
    Partials,
    /// The per-channel coefficients of a BatchNorm input gradient, computed before the
    /// element-wise kernel that applies them (which can then run on sub-batches).
    Coefficients,
    /// A convolution or dense product, or one of its gradients: a micro-kernel call.
    Contraction,
    /// A pooling or shortcut op and its gradient.
    Window,
    /// Softmax cross-entropy, its gradient, or the correct count.
    Loss,
    /// An in-place update of persistent state.
    Effect,
    /// A copy of a value into an output slot.
    Copy,
}

/// One kernel of the schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    /// How it is emitted.
    pub kind: KernelKind,
    /// The nodes it computes, in topological order (empty for a copy).
    pub nodes: Vec<NodeId>,
    /// Its arguments, in order.
    pub args: Vec<KernelArg>,
    /// True when a target may run it on disjoint sub-batches (see `runtime::program::Step`).
    pub batch_split: bool,
}

impl Kernel {
    /// The values the kernel reads (including updated state).
    pub fn reads(&self) -> impl Iterator<Item = Value> + '_ {
        self.args
            .iter()
            .filter(|arg| arg.access != Access::Write)
            .map(|arg| arg.value)
    }

    /// The values the kernel writes (including updated state).
    pub fn writes(&self) -> impl Iterator<Item = Value> + '_ {
        self.args
            .iter()
            .filter(|arg| arg.access != Access::Read)
            .map(|arg| arg.value)
    }
}

/// The kernel computing `group` (a fusion group in topological order).
pub(crate) fn kernel_for_group(
    live: &LiveGraph,
    group: &[NodeId],
    outputs: &[NodeId],
    mode: GraphMode,
) -> Kernel {
    let first = group[0];
    let has_contraction = group
        .iter()
        .any(|&id| live.class(id) == OpClass::Contraction);
    let class = if has_contraction {
        OpClass::Contraction
    } else {
        live.class(first)
    };
    let kind = match class {
        OpClass::Elementwise => KernelKind::Elementwise,
        OpClass::Reduction => KernelKind::Reduction,
        OpClass::Contraction => KernelKind::Contraction,
        OpClass::Window => KernelKind::Window,
        OpClass::Loss => KernelKind::Loss,
        OpClass::Effect => KernelKind::Effect,
        OpClass::Leaf | OpClass::View => KernelKind::Copy,
    };
    let mut args = match kind {
        _ if group.len() > 1 => group_args(live, group, outputs),
        KernelKind::Elementwise | KernelKind::Reduction => group_args(live, group, outputs),
        KernelKind::Effect => effect_args(live, first),
        _ => single_args(live, first),
    };
    let draws_mask = group.iter().any(|&id| match live.op(id) {
        Op::Dropout { .. } => mode == GraphMode::Train,
        Op::DropoutGrad { .. } => true,
        _ => false,
    });
    if draws_mask {
        args.insert(
            0,
            KernelArg {
                value: Value::DropoutSeed,
                access: Access::Read,
            },
        );
    }
    let batched_write = args.iter().all(|arg| {
        arg.access == Access::Read || matches!(arg.value, Value::Node(id) if is_batched(live, id))
    });
    let batch_split = batched_write
        && matches!(
            kind,
            KernelKind::Elementwise | KernelKind::Contraction | KernelKind::Window
        )
        && group.iter().all(|&id| is_batch_local(live.op(id)));
    Kernel {
        kind,
        nodes: group.to_vec(),
        args,
        batch_split,
    }
}

/// Splits a per-channel reduction kernel over a 4-D tensor into a batch-split partials kernel
/// and a finish kernel (see `mlir::reduce`); returns any other kernel unchanged. New
/// temporaries' types are appended to `temporaries`.
pub(crate) fn split_reduction(
    live: &LiveGraph,
    kernel: Kernel,
    temporaries: &mut Vec<TensorType>,
) -> Vec<Kernel> {
    let source = kernel
        .nodes
        .first()
        .and_then(|&id| live.inputs[id.index()].first().copied());
    let splittable = kernel.kind == KernelKind::Reduction
        && source.is_some_and(|source| {
            let ty = &live.graph.node(source).ty;
            let per_channel = kernel.nodes.iter().all(|&id| {
                matches!(
                    live.op(id),
                    Op::BatchMean
                        | Op::BatchVar
                        | Op::ChannelSum
                        | Op::BatchNormScaleGrad { .. }
                        | Op::PreluSlopeGrad
                )
            });
            per_channel && ty.batched && ty.dims.len() == 3
        });
    let Some(source) = source.filter(|_| splittable) else {
        return vec![kernel];
    };
    let dims = &live.graph.node(source).ty.dims;
    let column_ty = TensorType::batch(vec![dims[0], dims[2]]);
    let mut partials_args: Vec<KernelArg> = kernel
        .args
        .iter()
        .copied()
        .filter(|arg| arg.access == Access::Read)
        .collect();
    let mut finish_args = Vec::with_capacity(kernel.args.len());
    for _ in &kernel.nodes {
        let value = Value::Temporary(temporaries.len());
        temporaries.push(column_ty.clone());
        partials_args.push(KernelArg {
            value,
            access: Access::Write,
        });
        finish_args.push(KernelArg {
            value,
            access: Access::Read,
        });
    }
    for &node in &kernel.nodes {
        if let (Op::BatchNormScaleGrad { .. }, Some(&var)) =
            (live.op(node), live.inputs[node.index()].get(3))
        {
            finish_args.push(KernelArg {
                value: Value::Node(var),
                access: Access::Read,
            });
        }
    }
    finish_args.extend(
        kernel
            .args
            .iter()
            .copied()
            .filter(|arg| arg.access == Access::Write),
    );
    let partials = Kernel {
        kind: KernelKind::Partials,
        nodes: kernel.nodes.clone(),
        args: partials_args,
        batch_split: true,
    };
    let finish = Kernel {
        kind: KernelKind::Reduction,
        nodes: kernel.nodes,
        args: finish_args,
        batch_split: false,
    };
    vec![partials, finish]
}

/// Moves the per-channel coefficients of every BatchNorm input gradient of an element-wise
/// kernel into a `Coefficients` kernel of their own (they need the whole batch's size), so
/// that the element-wise kernel can run on sub-batches; returns the coefficient kernels, then
/// the element-wise one. Leaves the kernel whole when an operand of the coefficients is
/// computed inside it.
pub(crate) fn split_batchnorm_coefficients(
    live: &LiveGraph,
    mut kernel: Kernel,
    temporaries: &mut Vec<TensorType>,
) -> Vec<Kernel> {
    let is_input_grad = |id: &NodeId| matches!(live.op(*id), Op::BatchNormInputGrad { .. });
    let grads: Vec<NodeId> = kernel.nodes.iter().copied().filter(is_input_grad).collect();
    let operands_outside = grads.iter().all(|&grad| {
        let inputs = &live.inputs[grad.index()];
        COEFFICIENT_SLOTS.iter().all(|&slot| {
            inputs
                .get(slot)
                .is_some_and(|operand| !kernel.nodes.contains(operand))
        })
    });
    if kernel.kind != KernelKind::Elementwise || grads.is_empty() {
        return vec![kernel];
    }
    if !operands_outside {
        kernel.batch_split = false;
        return vec![kernel];
    }
    let mut split = Vec::with_capacity(grads.len() + 1);
    let first_write = kernel
        .args
        .iter()
        .position(|arg| arg.access != Access::Read);
    let mut insert_at = first_write.unwrap_or(kernel.args.len());
    for grad in grads {
        let inputs = &live.inputs[grad.index()];
        let channels = live
            .graph
            .node(inputs[2])
            .ty
            .dims
            .first()
            .copied()
            .unwrap_or(1);
        let value = Value::Temporary(temporaries.len());
        temporaries.push(TensorType::fixed(vec![3, channels]));
        let mut args: Vec<KernelArg> = COEFFICIENT_SLOTS
            .iter()
            .map(|&slot| KernelArg {
                value: Value::Node(inputs[slot]),
                access: Access::Read,
            })
            .collect();
        args.push(KernelArg {
            value,
            access: Access::Write,
        });
        split.push(Kernel {
            kind: KernelKind::Coefficients,
            nodes: vec![grad],
            args,
            batch_split: false,
        });
        kernel.args.insert(
            insert_at,
            KernelArg {
                value,
                access: Access::Read,
            },
        );
        insert_at += 1;
    }
    split.push(kernel);
    split
}

/// Operand slots of a `BatchNormInputGrad` its coefficients read: var, γ, dscale, dshift, and
/// `x` for the batch size.
pub(crate) const COEFFICIENT_SLOTS: [usize; 5] = [3, 4, 5, 6, 1];

/// A kernel copying `source` into the slot of graph output `index`.
pub(crate) fn copy_kernel(source: NodeId, index: usize) -> Kernel {
    let args = vec![
        KernelArg {
            value: Value::Node(source),
            access: Access::Read,
        },
        KernelArg {
            value: Value::Output(index),
            access: Access::Write,
        },
    ];
    Kernel {
        kind: KernelKind::Copy,
        nodes: Vec::new(),
        args,
        batch_split: false,
    }
}

fn is_batched(live: &LiveGraph, id: NodeId) -> bool {
    live.graph.node(id).ty.batched
}

// Fused groups: distinct outside operands in first-use order, then the results others need.
fn group_args(live: &LiveGraph, group: &[NodeId], outputs: &[NodeId]) -> Vec<KernelArg> {
    let mut args: Vec<KernelArg> = Vec::new();
    for &member in group {
        for &operand in &live.inputs[member.index()] {
            let value = Value::Node(operand);
            let outside = !group.contains(&operand);
            if outside && !args.iter().any(|arg| arg.value == value) {
                args.push(KernelArg {
                    value,
                    access: Access::Read,
                });
            }
        }
    }
    for &member in group {
        let used_outside = live.users[member.index()]
            .iter()
            .any(|user| !group.contains(user));
        if used_outside || outputs.contains(&member) {
            args.push(KernelArg {
                value: Value::Node(member),
                access: Access::Write,
            });
        }
    }
    args
}

// Single ops: operands in slot order, then the result.
fn single_args(live: &LiveGraph, id: NodeId) -> Vec<KernelArg> {
    let mut args: Vec<KernelArg> = live.inputs[id.index()]
        .iter()
        .map(|&operand| KernelArg {
            value: Value::Node(operand),
            access: Access::Read,
        })
        .collect();
    args.push(KernelArg {
        value: Value::Node(id),
        access: Access::Write,
    });
    args
}

// Effects: operands in slot order; the state slots are updated in place.
fn effect_args(live: &LiveGraph, id: NodeId) -> Vec<KernelArg> {
    let state_slots: &[usize] = match live.op(id) {
        Op::SgdUpdate { .. } => &[0, 2],
        _ => &[0],
    };
    live.inputs[id.index()]
        .iter()
        .enumerate()
        .map(|(slot, &operand)| {
            let access = if state_slots.contains(&slot) {
                Access::Update
            } else {
                Access::Read
            };
            KernelArg {
                value: Value::Node(operand),
                access,
            }
        })
        .collect()
}

/// The node whose storage holds `id`'s value: through views to their operand, and through
/// effects to the state they update.
pub(crate) fn storage_root(live: &LiveGraph, mut id: NodeId) -> NodeId {
    while matches!(class_of(live.op(id)), OpClass::View | OpClass::Effect) {
        match live.inputs[id.index()].first() {
            Some(&operand) => id = operand,
            None => break,
        }
    }
    id
}
