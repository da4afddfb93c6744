//! Reduction kernels: per-channel statistics and gradients (BatchNorm mean and variance, bias
//! and BatchNorm shift/scale gradients, PReLU slope gradients) and global average pooling.
//!
//! A per-channel reduction over `x [N, C, R]` (R = H·W, or 1) runs in fixed-order steps:
//! partial sums per channel and lane `p[c, r] = Σₙ term(x[n, c, r])` (vectorisable over r,
//! which also keeps each partial sum short), then `out[c] = Σᵣ p[c, r]` in lane order, then a
//! per-channel finish (divide by M = N·R for the statistics, times `invstd` for the scale
//! gradient). Sibling reductions of one operand share the first step.
//!
//! The scheduler may split a reduction of a 4-D tensor in two kernels so that the heavy part
//! runs on sub-batches in parallel: a *partials* kernel writes, per batch item, the column
//! sums `P[n, c, w] = Σₕ term(x[n, c, h, w])`; the *finish* kernel then sums
//! `p[c, w] = Σₙ P[n, c, w]` and continues as above. Either way every sum has one fixed order.

use std::collections::BTreeMap;

use crate::ir::{NodeId, Op, TensorType};
use crate::schedule::{broadcast_of, Access, Broadcast, KernelKind, Value};

use super::generic::{
    alloc, batch_count, collapse, dealloc, fill, identity_map, Buffer, Dim, Generic, GenericOperand,
};
use super::scalar::{binary, math, prelu_slope_term};
use super::writer::FunctionWriter;
use super::{Emit, MlirError};

/// How the source of the sums is laid out in the first generic's loops.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `(n, c)` over a `[N, C]` source.
    Channels,
    /// `(n, c, r)` over the source collapsed to `[N, C, R]`.
    Lanes,
    /// `(n, c, h, w)` over a `[N, C, H, W]` source (the partials kernel).
    Columns,
}

/// Emits the reduction kernel (whole, or either half of a split one).
pub(crate) fn emit(emit: &mut Emit<'_>) -> Result<(), MlirError> {
    let first = emit.kernel.nodes[0];
    emit.locate(first);
    if matches!(emit.graph.node(first).op, Op::GlobalAvgPool) {
        return global_average(emit, first);
    }
    let source = *emit
        .graph
        .inputs(first)
        .first()
        .ok_or(MlirError::BadKernel { op: "reduce" })?;
    let source_ty = emit.graph.node(source).ty.clone();
    let (channels, lanes) = channel_layout(emit, first, &source_ty)?;
    let is_finish = emit
        .kernel
        .args
        .iter()
        .any(|arg| arg.access == Access::Read && matches!(arg.value, Value::Temporary(_)));
    if emit.kernel.kind == KernelKind::Partials {
        return column_sums(emit, &source_ty);
    }
    if is_finish {
        return finish_from_columns(emit, &source_ty, channels);
    }

    // Partial sums per channel and lane (no lanes for a [N, C] operand).
    let layout = if source_ty.dims.len() >= 2 {
        Layout::Lanes
    } else {
        Layout::Channels
    };
    let mut dims = vec![Dim::Static(channels)];
    if layout == Layout::Lanes {
        dims.push(Dim::Static(lanes));
    }
    let zero = emit.writer.f32(0.0);
    let mut partials = Vec::with_capacity(emit.kernel.nodes.len());
    for _ in 0..emit.kernel.nodes.len() {
        let buffer = alloc(&mut emit.writer, dims.clone(), source_ty.dtype);
        fill(&mut emit.writer, &buffer, &zero);
        partials.push(buffer);
    }
    accumulate_terms(emit, &source_ty, layout, &partials)?;

    // Lanes in order into each output, then the per-channel finish.
    let elements = if emit
        .kernel
        .nodes
        .iter()
        .any(|&node| needs_count(&emit.graph.node(node).op))
    {
        let full = emit
            .kernel
            .args
            .iter()
            .zip(&emit.types)
            .position(|(arg, ty)| arg.access == Access::Read && *ty == source_ty);
        let buffer = emit.args[full.ok_or(MlirError::BadKernel { op: "reduce" })?].clone();
        Some(batch_count(&mut emit.writer, &buffer, lanes))
    } else {
        None
    };
    let nodes = emit.kernel.nodes.clone();
    for (node, partial) in nodes.into_iter().zip(&partials) {
        lanes_and_finish(emit, node, partial, channels, elements.as_deref())?;
        dealloc(&mut emit.writer, partial);
    }
    Ok(())
}

/// Adds every node's terms over the source into `sums` (one per node), in the loops of
/// `layout`.
fn accumulate_terms(
    emit: &mut Emit<'_>,
    source_ty: &TensorType,
    layout: Layout,
    sums: &[Buffer],
) -> Result<(), MlirError> {
    let (iterators, sum_map): (Vec<&'static str>, &str) = match layout {
        Layout::Channels => (vec!["reduction", "parallel"], "d1"),
        Layout::Lanes => (vec!["reduction", "parallel", "parallel"], "d1, d2"),
        Layout::Columns => (
            vec!["parallel", "parallel", "reduction", "parallel"],
            "d0, d1, d3",
        ),
    };
    let loops = iterators.len();
    let mut generic = Generic {
        iterators,
        ..Generic::default()
    };
    let mut input_of: BTreeMap<NodeId, usize> = BTreeMap::new();
    for (index, arg) in emit.kernel.args.iter().enumerate() {
        let Value::Node(value) = arg.value else {
            continue;
        };
        if arg.access != Access::Read {
            continue;
        }
        let ty = emit.types[index].clone();
        let (buffer, map) = match broadcast_of(&ty, source_ty) {
            Some(Broadcast::Full) if layout == Layout::Columns => {
                (emit.args[index].clone(), identity_map(loops))
            }
            Some(Broadcast::Full) => {
                let groups = lane_groups(source_ty);
                (
                    collapse(&mut emit.writer, &emit.args[index], &groups),
                    identity_map(loops),
                )
            }
            Some(Broadcast::Channel) => (emit.args[index].clone(), "d1".to_string()),
            Some(Broadcast::Single) => (emit.args[index].clone(), "0".to_string()),
            _ => {
                let (op, span) = emit.describe(emit.kernel.nodes[0]);
                let space = source_ty.clone();
                return Err(MlirError::UnsupportedBroadcast {
                    op,
                    operand: ty,
                    space,
                    span,
                });
            }
        };
        input_of.insert(value, generic.ins.len());
        generic.ins.push(GenericOperand { buffer, map });
    }
    for sum in sums {
        generic.outs.push(GenericOperand {
            buffer: sum.clone(),
            map: sum_map.into(),
        });
    }
    let terms = node_terms(emit, &input_of)?;
    let inputs = generic.ins.len();
    generic.write(&mut emit.writer, |writer, block| {
        let mut yields = Vec::with_capacity(terms.len());
        for (index, (op, slots)) in terms.iter().enumerate() {
            let operand = |slot: usize| block[slots[slot]].clone();
            let term = term(writer, op, &operand)?;
            yields.push(binary(writer, "addf", &block[inputs + index], &term));
        }
        Ok(yields)
    })
}

/// Each node's op with, per operand slot, its input's position among the generic's inputs.
fn node_terms(
    emit: &Emit<'_>,
    input_of: &BTreeMap<NodeId, usize>,
) -> Result<Vec<(Op, Vec<usize>)>, MlirError> {
    let mut terms = Vec::with_capacity(emit.kernel.nodes.len());
    for &node in &emit.kernel.nodes {
        let op = emit.graph.node(node).op.clone();
        let slots: Option<Vec<usize>> = emit
            .graph
            .inputs(node)
            .iter()
            .map(|id| input_of.get(id).copied())
            .collect();
        let slots = slots.ok_or(MlirError::BadKernel { op: op.name() })?;
        terms.push((op, slots));
    }
    Ok(terms)
}

// P[n, c, w] = Σₕ term(x[n, c, h, w]), one P per node (the partials kernel).
fn column_sums(emit: &mut Emit<'_>, source_ty: &TensorType) -> Result<(), MlirError> {
    let zero = emit.writer.f32(0.0);
    let sums: Vec<Buffer> = emit
        .kernel
        .args
        .iter()
        .zip(&emit.args)
        .filter(|(arg, _)| arg.access == Access::Write && matches!(arg.value, Value::Temporary(_)))
        .map(|(_, buffer)| buffer.clone())
        .collect();
    if sums.len() != emit.kernel.nodes.len() || source_ty.dims.len() != 3 {
        return Err(MlirError::BadKernel { op: "reduce" });
    }
    for sum in &sums {
        fill(&mut emit.writer, sum, &zero);
    }
    accumulate_terms(emit, source_ty, Layout::Columns, &sums)
}

// p[c, w] = Σₙ P[n, c, w], then lanes and finish (the finish kernel of a split reduction).
fn finish_from_columns(
    emit: &mut Emit<'_>,
    source_ty: &TensorType,
    channels: usize,
) -> Result<(), MlirError> {
    let columns: Vec<usize> = (0..emit.kernel.args.len())
        .filter(|&index| {
            let arg = emit.kernel.args[index];
            arg.access == Access::Read && matches!(arg.value, Value::Temporary(_))
        })
        .collect();
    if columns.len() != emit.kernel.nodes.len() {
        return Err(MlirError::BadKernel { op: "reduce" });
    }
    let per_item = source_ty.item_elements() / channels.max(1);
    let first_columns = emit.args[columns[0]].clone();
    let elements = batch_count(&mut emit.writer, &first_columns, per_item);
    let zero = emit.writer.f32(0.0);
    let nodes = emit.kernel.nodes.clone();
    for (node, index) in nodes.into_iter().zip(columns) {
        emit.locate(node);
        let columns = emit.args[index].clone();
        let width = columns.static_dim(2);
        let partial = alloc(
            &mut emit.writer,
            vec![Dim::Static(channels), Dim::Static(width)],
            source_ty.dtype,
        );
        fill(&mut emit.writer, &partial, &zero);
        let over_batch = Generic {
            iterators: vec!["reduction", "parallel", "parallel"],
            ins: vec![GenericOperand {
                buffer: columns,
                map: identity_map(3),
            }],
            outs: vec![GenericOperand {
                buffer: partial.clone(),
                map: "d1, d2".into(),
            }],
        };
        over_batch.write(&mut emit.writer, |writer, block| {
            Ok(vec![binary(writer, "addf", &block[1], &block[0])])
        })?;
        lanes_and_finish(emit, node, &partial, channels, Some(&elements))?;
        dealloc(&mut emit.writer, &partial);
    }
    Ok(())
}

/// `out = Σ_lanes partial` (into the node's output, per channel or to its single element),
/// then the node's per-channel finish.
fn lanes_and_finish(
    emit: &mut Emit<'_>,
    node: NodeId,
    partial: &Buffer,
    channels: usize,
    elements: Option<&str>,
) -> Result<(), MlirError> {
    emit.locate(node);
    let output = emit
        .arg_of(node)
        .ok_or(MlirError::BadKernel { op: "reduce" })?;
    let out = emit.args[output].clone();
    let zero = emit.writer.f32(0.0);
    fill(&mut emit.writer, &out, &zero);
    let single = emit.types[output].dims == [1] && channels != 1;
    let mut iterators = vec![if single { "reduction" } else { "parallel" }];
    if partial.dims.len() == 2 {
        iterators.push("reduction");
    }
    let lanes = Generic {
        ins: vec![GenericOperand {
            buffer: partial.clone(),
            map: identity_map(iterators.len()),
        }],
        iterators,
        outs: vec![GenericOperand {
            buffer: out.clone(),
            map: (if single { "0" } else { "d0" }).into(),
        }],
    };
    lanes.write(&mut emit.writer, |writer, block| {
        Ok(vec![binary(writer, "addf", &block[1], &block[0])])
    })?;
    finish(emit, node, &out, elements)
}

/// `(C, R)` of the reduced operand `[N, C, ...]`.
fn channel_layout(
    emit: &Emit<'_>,
    node: NodeId,
    source: &TensorType,
) -> Result<(usize, usize), MlirError> {
    match (source.batched, source.dims.first()) {
        (true, Some(&channels)) if channels > 0 => {
            Ok((channels, source.item_elements() / channels))
        }
        _ => {
            let (op, span) = emit.describe(node);
            let reason = "per-channel reductions need a batched tensor with a channel axis";
            Err(MlirError::UnsupportedShape {
                op,
                ty: source.clone(),
                reason,
                span,
            })
        }
    }
}

/// Loop groups collapsing `[N, C, ...]` to `[N, C, R]`.
fn lane_groups(ty: &TensorType) -> Vec<usize> {
    match ty.dims.len() {
        0 | 1 => vec![1; 1 + ty.dims.len()],
        rank => vec![1, 1, rank - 1],
    }
}

/// The term one element contributes to `op`'s sum; `operand(slot)` is the scalar of slot.
fn term(
    writer: &mut FunctionWriter,
    op: &Op,
    operand: &dyn Fn(usize) -> String,
) -> Result<String, MlirError> {
    Ok(match op {
        Op::BatchMean | Op::ChannelSum => operand(0),
        // (x − mean)²
        Op::BatchVar => {
            let centered = binary(writer, "subf", &operand(0), &operand(1));
            binary(writer, "mulf", &centered, &centered)
        }
        // dy·(x − mean); the factor invstd is applied once per channel at the end.
        Op::BatchNormScaleGrad { .. } => {
            let centered = binary(writer, "subf", &operand(1), &operand(2));
            binary(writer, "mulf", &operand(0), &centered)
        }
        Op::PreluSlopeGrad => prelu_slope_term(writer, &operand(0), &operand(1)),
        other => return Err(MlirError::BadKernel { op: other.name() }),
    })
}

fn needs_count(op: &Op) -> bool {
    matches!(op, Op::BatchMean | Op::BatchVar)
}

/// The per-channel finish of `node`'s sum, in place in `out`.
fn finish(
    emit: &mut Emit<'_>,
    node: NodeId,
    out: &Buffer,
    elements: Option<&str>,
) -> Result<(), MlirError> {
    let op = emit.graph.node(node).op.clone();
    let map = if out.dims.len() == 1 { "d0" } else { "" };
    let iterators = vec!["parallel"; out.dims.len()];
    match op {
        // mean = Σx / M; var = Σ(x − mean)² / M
        Op::BatchMean | Op::BatchVar => {
            let elements = elements
                .ok_or(MlirError::BadKernel { op: op.name() })?
                .to_string();
            let generic = Generic {
                iterators,
                ins: Vec::new(),
                outs: vec![GenericOperand {
                    buffer: out.clone(),
                    map: map.into(),
                }],
            };
            generic.write(&mut emit.writer, |writer, block| {
                Ok(vec![binary(writer, "divf", &block[0], &elements)])
            })
        }
        // dscale = invstd·Σ dy·(x − mean), invstd = 1/sqrt(var + eps)
        Op::BatchNormScaleGrad { eps } => {
            let inputs = emit.graph.inputs(node);
            let var = inputs.get(3).and_then(|&id| emit.arg_of(id));
            let var = var.ok_or(MlirError::BadKernel { op: op.name() })?;
            let generic = Generic {
                iterators,
                ins: vec![GenericOperand {
                    buffer: emit.args[var].clone(),
                    map: map.into(),
                }],
                outs: vec![GenericOperand {
                    buffer: out.clone(),
                    map: map.into(),
                }],
            };
            generic.write(&mut emit.writer, |writer, block| {
                let eps = writer.f32(eps);
                let one = writer.f32(1.0);
                let shifted = binary(writer, "addf", &block[0], &eps);
                let root = math(writer, "sqrt", &shifted);
                let invstd = binary(writer, "divf", &one, &root);
                Ok(vec![binary(writer, "mulf", &block[1], &invstd)])
            })
        }
        _ => Ok(()),
    }
}

// y[n, c] = Σ_hw x[n, c, hw] / (H·W)
fn global_average(emit: &mut Emit<'_>, node: NodeId) -> Result<(), MlirError> {
    let inputs = emit.graph.inputs(node);
    let source = inputs.first().and_then(|&id| emit.arg_of(id));
    let output = emit.arg_of(node);
    let (Some(source), Some(output)) = (source, output) else {
        return Err(MlirError::BadKernel {
            op: "global_avgpool",
        });
    };
    let ty = emit.types[source].clone();
    if !ty.batched || ty.dims.len() < 2 {
        let (op, span) = emit.describe(node);
        let reason = "global average pooling needs a batched [N, C, H, W] tensor";
        return Err(MlirError::UnsupportedShape {
            op,
            ty,
            reason,
            span,
        });
    }
    let area = ty.item_elements() / ty.dims[0].max(1);
    let x = collapse(
        &mut emit.writer,
        &emit.args[source],
        &[1, 1, ty.dims.len() - 1],
    );
    let out = emit.args[output].clone();
    let zero = emit.writer.f32(0.0);
    fill(&mut emit.writer, &out, &zero);
    let sum = Generic {
        iterators: vec!["parallel", "parallel", "reduction"],
        ins: vec![GenericOperand {
            buffer: x,
            map: identity_map(3),
        }],
        outs: vec![GenericOperand {
            buffer: out.clone(),
            map: "d0, d1".into(),
        }],
    };
    sum.write(&mut emit.writer, |writer, block| {
        Ok(vec![binary(writer, "addf", &block[1], &block[0])])
    })?;
    let area = emit.writer.f32(area as f32);
    let divide = Generic {
        iterators: vec!["parallel", "parallel"],
        ins: Vec::new(),
        outs: vec![GenericOperand {
            buffer: out,
            map: identity_map(2),
        }],
    };
    divide.write(&mut emit.writer, |writer, block| {
        Ok(vec![binary(writer, "divf", &block[0], &area)])
    })
}
