//! Effect kernels, which update persistent state in place: the SGD step (PyTorch's form, with
//! momentum buffer, weight decay and Nesterov) and the BatchNorm running statistics; and the
//! copy of a value into an output slot.

use crate::ir::Op;

use super::generic::{batch_count, collapse, Generic, GenericOperand};
use super::scalar::binary;
use super::{Emit, MlirError};

/// Emits the effect kernel.
pub(crate) fn emit(emit: &mut Emit<'_>) -> Result<(), MlirError> {
    let node = emit.kernel.nodes[0];
    emit.locate(node);
    match emit.graph.node(node).op.clone() {
        Op::SgdUpdate {
            momentum,
            weight_decay,
            nesterov,
        } => sgd(
            emit,
            Sgd {
                momentum,
                weight_decay,
                nesterov,
            },
        ),
        Op::RunningUpdate { momentum, unbiased } => running_update(emit, momentum, unbiased),
        other => Err(MlirError::BadKernel { op: other.name() }),
    }
}

/// The constants of one SGD step.
struct Sgd {
    momentum: f32,
    weight_decay: f32,
    nesterov: bool,
}

/// Groups collapsing an unbatched tensor to one dimension.
fn flat_groups(rank: usize) -> Vec<usize> {
    if rank == 0 {
        Vec::new()
    } else {
        vec![rank]
    }
}

// d = g + wd·p; buf = μ·buf + d; p −= lr·(nesterov ? d + μ·buf : buf)
// (weight decay skipped when 0, as PyTorch does).
fn sgd(emit: &mut Emit<'_>, constants: Sgd) -> Result<(), MlirError> {
    if emit.args.len() != 4 {
        return Err(MlirError::BadKernel { op: "sgd_update" });
    }
    let groups = flat_groups(emit.types[0].dims.len());
    let rank = groups.len();
    let map = if rank == 1 { "d0" } else { "" };
    let operand = |emit: &mut Emit<'_>, index: usize| GenericOperand {
        buffer: collapse(&mut emit.writer, &emit.args[index], &groups),
        map: map.to_string(),
    };
    let param = operand(emit, 0);
    let grad = operand(emit, 1);
    let buffer = operand(emit, 2);
    let lr = GenericOperand {
        buffer: emit.args[3].clone(),
        map: String::new(),
    };
    let generic = Generic {
        iterators: vec!["parallel"; rank],
        ins: vec![grad, lr],
        outs: vec![param, buffer],
    };
    generic.write(&mut emit.writer, |writer, block| {
        let (g, lr, p, old) = (&block[0], &block[1], &block[2], &block[3]);
        let mut d = g.clone();
        if constants.weight_decay != 0.0 {
            let decay = writer.f32(constants.weight_decay);
            let decayed = binary(writer, "mulf", &decay, p);
            d = binary(writer, "addf", g, &decayed);
        }
        let momentum = writer.f32(constants.momentum);
        let kept = binary(writer, "mulf", &momentum, old);
        let new_buffer = binary(writer, "addf", &kept, &d);
        let step = if constants.nesterov {
            let ahead = binary(writer, "mulf", &momentum, &new_buffer);
            binary(writer, "addf", &d, &ahead)
        } else {
            new_buffer.clone()
        };
        let change = binary(writer, "mulf", lr, &step);
        let new_param = binary(writer, "subf", p, &change);
        Ok(vec![new_param, new_buffer])
    })
}

// running = (1 − m)·running + m·stat·c, c = M/(M − 1) for the unbiased variance, else 1.
fn running_update(emit: &mut Emit<'_>, momentum: f32, unbiased: bool) -> Result<(), MlirError> {
    if emit.args.len() != 3 || !emit.types[2].batched {
        return Err(MlirError::BadKernel {
            op: "running_update",
        });
    }
    let channels = emit.types[0].item_elements().max(1);
    let correction = if unbiased {
        let x = emit.args[2].clone();
        let per_item = emit.types[2].item_elements() / channels;
        let count = batch_count(&mut emit.writer, &x, per_item);
        let one = emit.writer.f32(1.0);
        let less = emit
            .writer
            .assign("m", &format!("arith.subf {count}, {one} : f32"));
        Some(
            emit.writer
                .assign("m", &format!("arith.divf {count}, {less} : f32")),
        )
    } else {
        None
    };
    let groups = flat_groups(emit.types[0].dims.len());
    let map = if groups.is_empty() { "" } else { "d0" };
    let running = collapse(&mut emit.writer, &emit.args[0], &groups);
    let stat = collapse(&mut emit.writer, &emit.args[1], &groups);
    let generic = Generic {
        iterators: vec!["parallel"; groups.len()],
        ins: vec![GenericOperand {
            buffer: stat,
            map: map.into(),
        }],
        outs: vec![GenericOperand {
            buffer: running,
            map: map.into(),
        }],
    };
    generic.write(&mut emit.writer, |writer, block| {
        let (stat, running) = (&block[0], &block[1]);
        let corrected = match &correction {
            Some(factor) => binary(writer, "mulf", stat, factor),
            None => stat.clone(),
        };
        let weight = writer.f32(momentum);
        let keep = writer.f32(1.0 - momentum);
        let new_part = binary(writer, "mulf", &weight, &corrected);
        let old_part = binary(writer, "mulf", &keep, running);
        Ok(vec![binary(writer, "addf", &new_part, &old_part)])
    })
}

/// Emits a copy of argument 0 into argument 1.
pub(crate) fn emit_copy(emit: &mut Emit<'_>) -> Result<(), MlirError> {
    if emit.args.len() != 2 || emit.types[0] != emit.types[1] {
        return Err(MlirError::BadKernel { op: "copy" });
    }
    let (source, target) = (&emit.args[0], &emit.args[1]);
    emit.writer.line(&format!(
        "linalg.copy ins({} : {}) outs({} : {})",
        source.name,
        source.ty(),
        target.name,
        target.ty()
    ));
    Ok(())
}
