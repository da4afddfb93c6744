//! The per-channel prologue of BatchNorm inside element-wise kernels. Applying BatchNorm and
//! its input gradient are affine maps per channel; their coefficients are computed once per
//! channel by a small generic over `[C]` before the main generic (as PyTorch's CPU kernels
//! do), which then reads them like any other per-channel operand.
//!
//! - apply: `y = α·x + β'` with `invstd = 1/sqrt(var + eps)`, `α = invstd·γ`,
//!   `β' = β − mean·α`;
//! - input gradient: `dx = k·dy − s·(x − mean) − o` with `k = γ·invstd`,
//!   `s = k·invstd·dscale/M`, `o = k·dshift/M`, `M = N·H·W`. Since `M` needs the whole
//!   batch, the scheduler usually computes these in a `Coefficients` kernel of their own
//!   ([`emit_coefficients`], rows of a `[3, C]` table) and the element-wise kernel reads the
//!   table, so that it can run on sub-batches.

use std::collections::BTreeMap;

use crate::ir::{NodeId, Op, TensorType};
use crate::schedule::{Access, Value};

use super::generic::{alloc, batch_count, dealloc, Buffer, Dim, Generic, GenericOperand};
use super::scalar::binary;
use super::writer::FunctionWriter;
use super::{Emit, MlirError};

/// Per-channel coefficients of one BatchNorm-like node, computed by the prologue.
pub(crate) struct Coefficients {
    /// Index of the first coefficient among the main generic's inputs.
    pub first_input: usize,
    /// The prologue's output buffers, one per coefficient.
    pub buffers: Vec<Buffer>,
}

/// Operand slots of `op` that only its per-channel prologue reads.
pub(crate) fn prologue_slots(op: &Op) -> &'static [usize] {
    match op {
        Op::BatchNormApply { .. } | Op::BatchNorm { .. } => &[1, 2, 3, 4],
        Op::BatchNormInputGrad { .. } => &[3, 4, 5, 6],
        _ => &[],
    }
}

/// Computes the per-channel coefficients of every BatchNorm-like node of the group and adds
/// them to the generic's inputs; returns them per node. Free them with [`free`].
pub(crate) fn prologue(
    emit: &mut Emit<'_>,
    space: &TensorType,
    generic: &mut Generic,
) -> Result<BTreeMap<NodeId, Coefficients>, MlirError> {
    let mut result = BTreeMap::new();
    let nodes = emit.kernel.nodes.clone();
    let mut tables = emit
        .kernel
        .args
        .iter()
        .enumerate()
        .filter_map(|(index, arg)| {
            (arg.access == Access::Read && matches!(arg.value, Value::Temporary(_)))
                .then_some(index)
        });
    let tables: Vec<usize> = tables.by_ref().collect();
    let mut next_table = tables.into_iter();
    for node in nodes {
        let op = emit.graph.node(node).op.clone();
        if matches!(op, Op::BatchNormInputGrad { .. }) {
            if let Some(table) = next_table.next() {
                let first_input = generic.ins.len();
                for row in 0..3 {
                    let buffer = emit.args[table].clone();
                    generic.ins.push(GenericOperand {
                        buffer,
                        map: format!("{row}, d1"),
                    });
                }
                result.insert(
                    node,
                    Coefficients {
                        first_input,
                        buffers: Vec::new(),
                    },
                );
                continue;
            }
        }
        let inputs = emit.graph.inputs(node);
        let (channel_slots, count): (&[usize], usize) = match op {
            Op::BatchNormApply { .. } => (&[1, 2, 3, 4], 2),
            Op::BatchNorm { .. } => (&[1, 2, 3, 4], 2),
            Op::BatchNormInputGrad { .. } => (&[2, 3, 4, 5, 6], 3),
            _ => continue,
        };
        let channels = match (space.batched, space.dims.first()) {
            (true, Some(&channels)) => channels,
            _ => {
                let (op, span) = emit.describe(node);
                let reason = "BatchNorm needs a batched tensor with a channel axis";
                return Err(MlirError::UnsupportedShape {
                    op,
                    ty: space.clone(),
                    reason,
                    span,
                });
            }
        };
        emit.locate(node);
        let mut per_channel = Generic {
            iterators: vec!["parallel"],
            ..Generic::default()
        };
        for &slot in channel_slots {
            let index = inputs.get(slot).and_then(|&id| emit.arg_of(id));
            let index = index.ok_or(MlirError::BadKernel { op: op.name() })?;
            let map = if emit.types[index].dims == [1] && channels != 1 {
                "0"
            } else {
                "d0"
            };
            per_channel.ins.push(GenericOperand {
                buffer: emit.args[index].clone(),
                map: map.into(),
            });
        }
        let mut buffers = Vec::with_capacity(count);
        for _ in 0..count {
            let buffer = alloc(&mut emit.writer, vec![Dim::Static(channels)], space.dtype);
            per_channel.outs.push(GenericOperand {
                buffer: buffer.clone(),
                map: "d0".into(),
            });
            buffers.push(buffer);
        }
        let elements = match &op {
            Op::BatchNormInputGrad { .. } => Some(batch_elements(emit, space, channels)?),
            _ => None,
        };
        per_channel.write(&mut emit.writer, |writer, block| {
            Ok(coefficients(writer, &op, block, elements.as_deref()))
        })?;
        let first_input = generic.ins.len();
        for buffer in &buffers {
            generic.ins.push(GenericOperand {
                buffer: buffer.clone(),
                map: "d1".to_string(),
            });
        }
        result.insert(
            node,
            Coefficients {
                first_input,
                buffers,
            },
        );
    }
    Ok(result)
}

/// `M = N·(H·W)` as an `f32`, the number of elements per channel in the batch.
fn batch_elements(
    emit: &mut Emit<'_>,
    space: &TensorType,
    channels: usize,
) -> Result<String, MlirError> {
    let full = emit
        .kernel
        .args
        .iter()
        .position(|arg| matches!(arg.value, Value::Node(id) if emit.graph.node(id).ty == *space))
        .ok_or(MlirError::BadKernel {
            op: "batchnorm_input_grad",
        })?;
    let buffer = emit.args[full].clone();
    let per_item = space.item_elements() / channels.max(1);
    Ok(batch_count(&mut emit.writer, &buffer, per_item))
}

/// Frees the coefficient buffers of [`prologue`].
pub(crate) fn free(emit: &mut Emit<'_>, coefficients: &BTreeMap<NodeId, Coefficients>) {
    for node in coefficients.values() {
        for buffer in &node.buffers {
            dealloc(&mut emit.writer, buffer);
        }
    }
}

/// The per-channel coefficients of `op` from its channel operands (in slot order).
fn coefficients(
    writer: &mut FunctionWriter,
    op: &Op,
    block: &[String],
    elements: Option<&str>,
) -> Vec<String> {
    match op {
        Op::BatchNormApply { eps } => {
            apply_coefficients(writer, *eps, [&block[0], &block[1], &block[2], &block[3]])
        }
        Op::BatchNorm { eps, .. } => {
            apply_coefficients(writer, *eps, [&block[2], &block[3], &block[0], &block[1]])
        }
        Op::BatchNormInputGrad { eps } => {
            let one = writer.f32(1.0);
            let elements = elements.map_or(one, str::to_string);
            input_grad_coefficients(
                writer,
                *eps,
                [&block[1], &block[2], &block[3], &block[4]],
                &elements,
            )
        }
        _ => Vec::new(),
    }
}

// invstd = 1/sqrt(var + eps); alpha = invstd·γ; beta = β − mean·alpha.
fn apply_coefficients(
    writer: &mut FunctionWriter,
    eps: f32,
    [mean, var, scale, shift]: [&String; 4],
) -> Vec<String> {
    let invstd = inverse_deviation(writer, eps, var);
    let alpha = binary(writer, "mulf", &invstd, scale);
    let product = binary(writer, "mulf", mean, &alpha);
    let beta = binary(writer, "subf", shift, &product);
    vec![alpha, beta]
}

// dx = k·dy − k·invstd·dscale/M·(x − mean) − k·dshift/M, k = γ·invstd.
fn input_grad_coefficients(
    writer: &mut FunctionWriter,
    eps: f32,
    [var, scale, dscale, dshift]: [&String; 4],
    elements: &str,
) -> Vec<String> {
    let invstd = inverse_deviation(writer, eps, var);
    let k = binary(writer, "mulf", scale, &invstd);
    let k_invstd = binary(writer, "mulf", &k, &invstd);
    let scaled = binary(writer, "mulf", &k_invstd, dscale);
    let slope = binary(writer, "divf", &scaled, elements);
    let shift_term = binary(writer, "mulf", &k, dshift);
    let offset = binary(writer, "divf", &shift_term, elements);
    vec![k, slope, offset]
}

/// `1/sqrt(var + eps)`.
fn inverse_deviation(writer: &mut FunctionWriter, eps: f32, var: &str) -> String {
    let one = writer.f32(1.0);
    let eps = writer.f32(eps);
    let shifted = binary(writer, "addf", var, &eps);
    let root = super::scalar::math(writer, "sqrt", &shifted);
    binary(writer, "divf", &one, &root)
}

/// Emits a `Coefficients` kernel: the three per-channel coefficients of one BatchNorm input
/// gradient, from `[var, γ, dscale, dshift, x]`, into the rows of a `[3, C]` temporary.
pub(crate) fn emit_coefficients(emit: &mut Emit<'_>) -> Result<(), MlirError> {
    let node = emit.kernel.nodes[0];
    emit.locate(node);
    let Op::BatchNormInputGrad { eps } = emit.graph.node(node).op else {
        return Err(MlirError::BadKernel { op: "coefficients" });
    };
    if emit.args.len() != 6 {
        return Err(MlirError::BadKernel { op: "coefficients" });
    }
    let (x_ty, channels) = (
        emit.types[4].clone(),
        emit.types[5].dims.get(1).copied().unwrap_or(1),
    );
    let elements = batch_count(
        &mut emit.writer,
        &emit.args[4].clone(),
        x_ty.item_elements() / channels.max(1),
    );
    let table = emit.args[5].clone();
    let mut generic = Generic {
        iterators: vec!["parallel"],
        ..Generic::default()
    };
    for index in 0..4 {
        let map = if emit.types[index].dims == [1] && channels != 1 {
            "0"
        } else {
            "d0"
        };
        generic.ins.push(GenericOperand {
            buffer: emit.args[index].clone(),
            map: map.into(),
        });
    }
    for row in 0..3 {
        let buffer = table_row(&mut emit.writer, &table, row, channels);
        generic.outs.push(GenericOperand {
            buffer,
            map: "d0".into(),
        });
    }
    generic.write(&mut emit.writer, |writer, block| {
        Ok(input_grad_coefficients(
            writer,
            eps,
            [&block[0], &block[1], &block[2], &block[3]],
            &elements,
        ))
    })
}

/// Row `row` of a `[rows, C]` table, as a `[C]` view.
fn table_row(writer: &mut FunctionWriter, table: &Buffer, row: usize, channels: usize) -> Buffer {
    let layout = format!("strided<[1], offset: {}>", row * channels);
    let view = Buffer {
        name: String::new(),
        dims: vec![Dim::Static(channels)],
        dtype: table.dtype,
        layout: Some(layout),
    };
    let rhs = format!(
        "memref.subview {}[{row}, 0] [1, {channels}] [1, 1] : {} to {}",
        table.name,
        table.ty(),
        view.ty()
    );
    let name = writer.assign("view", &rhs);
    Buffer { name, ..view }
}
