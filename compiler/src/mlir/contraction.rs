//! Contraction kernels: convolutions, dense products and their gradients as calls of the
//! runtime's micro-kernels (`coopc_conv2d_forward`, `coopc_conv2d_input_grad`,
//! `coopc_conv2d_weight_grad`, `coopc_matmul`; signatures in `runtime::target::cpu::ukernels`).
//!
//! A convolution's bias gradient (`ChannelSum` of the same `dy`) fused into its weight gradient
//! is the micro-kernel's `db` output.
//!
//! Invariant: the declarations below are exactly those signatures; the operands are cast to the
//! fully dynamic memref types they take, and an absent bias is a size-0 buffer.

use crate::ir::Op;

use super::generic::Buffer;
use super::writer::FunctionWriter;
use super::{Emit, MlirError};

const DYNAMIC_4D: &str = "memref<?x?x?x?xf32>";
const DYNAMIC_2D: &str = "memref<?x?xf32>";
const DYNAMIC_1D: &str = "memref<?xf32>";

/// The `func.func private` declaration of micro-kernel `name`.
pub(crate) fn declaration(name: &str) -> &'static str {
    match name {
        "coopc_conv2d_forward" => {
            "  func.func private @coopc_conv2d_forward(memref<?x?x?x?xf32>, memref<?x?x?x?xf32>, \
             memref<?xf32>, memref<?x?x?x?xf32>, i64, i64, i64, i64) \
             attributes {llvm.emit_c_interface}\n"
        }
        "coopc_conv2d_input_grad" => {
            "  func.func private @coopc_conv2d_input_grad(memref<?x?x?x?xf32>, \
             memref<?x?x?x?xf32>, memref<?x?x?x?xf32>, i64, i64, i64, i64) \
             attributes {llvm.emit_c_interface}\n"
        }
        "coopc_conv2d_weight_grad" => {
            "  func.func private @coopc_conv2d_weight_grad(memref<?x?x?x?xf32>, \
             memref<?x?x?x?xf32>, memref<?x?x?x?xf32>, memref<?xf32>, i64, i64, i64, i64) \
             attributes {llvm.emit_c_interface}\n"
        }
        _ => {
            "  func.func private @coopc_matmul(memref<?x?xf32>, memref<?x?xf32>, memref<?xf32>, \
             memref<?x?xf32>, i64, i64) attributes {llvm.emit_c_interface}\n"
        }
    }
}

/// Emits the contraction kernel.
pub(crate) fn emit(emit: &mut Emit<'_>) -> Result<(), MlirError> {
    let contraction = emit.kernel.nodes.iter().copied().find(|&id| {
        crate::schedule::class_of(&emit.graph.node(id).op) == crate::schedule::OpClass::Contraction
    });
    let node = contraction.ok_or(MlirError::BadKernel { op: "contraction" })?;
    let bias_sum = emit.kernel.nodes.iter().copied().find(|&id| id != node);
    let bias_grad = match bias_sum {
        Some(id) => Some(
            emit.arg_of(id)
                .ok_or(MlirError::BadKernel { op: "channel_sum" })?,
        ),
        None => None,
    };
    emit.locate(node);
    let op = emit.graph.node(node).op.clone();
    let inputs = emit.graph.inputs(node);
    let mut operands = Vec::with_capacity(inputs.len());
    for &input in &inputs {
        operands.push(
            emit.arg_of(input)
                .ok_or(MlirError::BadKernel { op: op.name() })?,
        );
    }
    let output = emit
        .arg_of(node)
        .ok_or(MlirError::BadKernel { op: op.name() })?;
    let arg = |slot: usize| operands.get(slot).map(|&index| emit.args[index].clone());
    let missing = || MlirError::BadKernel { op: op.name() };
    let out = emit.args[output].clone();
    let bias_grad = bias_grad.map(|index| emit.args[index].clone());
    let writer = &mut emit.writer;
    let (name, call) = match &op {
        Op::Conv2d {
            stride,
            padding,
            bias,
        } => {
            let (x, w) = (arg(0).ok_or_else(missing)?, arg(1).ok_or_else(missing)?);
            let b = if *bias {
                Some(arg(2).ok_or_else(missing)?)
            } else {
                None
            };
            let mut values = vec![cast(writer, &x, DYNAMIC_4D), cast(writer, &w, DYNAMIC_4D)];
            values.push(optional_vector(writer, b.as_ref()));
            values.push(cast(writer, &out, DYNAMIC_4D));
            values.extend(geometry(writer, *stride, *padding));
            ("coopc_conv2d_forward", values)
        }
        Op::Conv2dInputGrad { stride, padding } => {
            let (dy, w) = (arg(0).ok_or_else(missing)?, arg(1).ok_or_else(missing)?);
            let mut values = vec![cast(writer, &dy, DYNAMIC_4D), cast(writer, &w, DYNAMIC_4D)];
            values.push(cast(writer, &out, DYNAMIC_4D));
            values.extend(geometry(writer, *stride, *padding));
            ("coopc_conv2d_input_grad", values)
        }
        Op::Conv2dWeightGrad { stride, padding } => {
            let (dy, x) = (arg(0).ok_or_else(missing)?, arg(1).ok_or_else(missing)?);
            let mut values = vec![cast(writer, &dy, DYNAMIC_4D), cast(writer, &x, DYNAMIC_4D)];
            values.push(cast(writer, &out, DYNAMIC_4D));
            values.push(optional_vector(writer, bias_grad.as_ref()));
            values.extend(geometry(writer, *stride, *padding));
            ("coopc_conv2d_weight_grad", values)
        }
        // y = x·Wᵀ + b
        Op::Dense { bias } => {
            let (x, w) = (arg(0).ok_or_else(missing)?, arg(1).ok_or_else(missing)?);
            let b = if *bias {
                Some(arg(2).ok_or_else(missing)?)
            } else {
                None
            };
            matmul(writer, &x, &w, b.as_ref(), &out, (0, 1))
        }
        // dx = dy·W
        Op::DenseInputGrad => {
            let (dy, w) = (arg(0).ok_or_else(missing)?, arg(1).ok_or_else(missing)?);
            matmul(writer, &dy, &w, None, &out, (0, 0))
        }
        // dW = dyᵀ·x
        Op::DenseWeightGrad => {
            let (dy, x) = (arg(0).ok_or_else(missing)?, arg(1).ok_or_else(missing)?);
            matmul(writer, &dy, &x, None, &out, (1, 0))
        }
        other => return Err(MlirError::BadKernel { op: other.name() }),
    };
    let types = call_types(name);
    writer.line(&format!(
        "func.call @{name}({}) : ({types}) -> ()",
        call.join(", ")
    ));
    emit.declarations.insert(name);
    Ok(())
}

fn call_types(name: &str) -> String {
    let parts: Vec<&str> = match name {
        "coopc_conv2d_forward" => vec![DYNAMIC_4D, DYNAMIC_4D, DYNAMIC_1D, DYNAMIC_4D],
        "coopc_conv2d_input_grad" => vec![DYNAMIC_4D, DYNAMIC_4D, DYNAMIC_4D],
        "coopc_conv2d_weight_grad" => vec![DYNAMIC_4D, DYNAMIC_4D, DYNAMIC_4D, DYNAMIC_1D],
        _ => vec![DYNAMIC_2D, DYNAMIC_2D, DYNAMIC_1D, DYNAMIC_2D],
    };
    let integers = if name == "coopc_matmul" { 2 } else { 4 };
    let mut text: Vec<String> = parts.into_iter().map(str::to_string).collect();
    text.extend(std::iter::repeat_n("i64".to_string(), integers));
    text.join(", ")
}

fn cast(writer: &mut FunctionWriter, buffer: &Buffer, to: &str) -> String {
    writer.assign(
        "cast",
        &format!("memref.cast {} : {} to {to}", buffer.name, buffer.ty()),
    )
}

/// A bias operand as `memref<?xf32>`, or a size-0 buffer when there is none.
fn optional_vector(writer: &mut FunctionWriter, buffer: Option<&Buffer>) -> String {
    match buffer {
        Some(buffer) => cast(writer, buffer, DYNAMIC_1D),
        None => {
            let empty = writer.assign("none", "memref.alloca() : memref<0xf32>");
            writer.assign(
                "cast",
                &format!("memref.cast {empty} : memref<0xf32> to {DYNAMIC_1D}"),
            )
        }
    }
}

fn geometry(writer: &mut FunctionWriter, stride: [usize; 2], padding: [usize; 2]) -> Vec<String> {
    [stride[0], stride[1], padding[0], padding[1]]
        .iter()
        .map(|&value| writer.i64(value as u64))
        .collect()
}

fn matmul(
    writer: &mut FunctionWriter,
    a: &Buffer,
    b: &Buffer,
    bias: Option<&Buffer>,
    c: &Buffer,
    transposes: (u64, u64),
) -> (&'static str, Vec<String>) {
    let mut values = vec![cast(writer, a, DYNAMIC_2D), cast(writer, b, DYNAMIC_2D)];
    values.push(optional_vector(writer, bias));
    values.push(cast(writer, c, DYNAMIC_2D));
    values.push(writer.i64(transposes.0));
    values.push(writer.i64(transposes.1));
    ("coopc_matmul", values)
}
