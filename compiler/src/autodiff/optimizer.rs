//! The optimizer step of the training graph: one `SgdUpdate` effect per trained parameter,
//! with its momentum buffer and the learning-rate feed.
//!
//! Needs: the gradients of the trained parameters. Promises: one `Scalar { name: "lr" }` node,
//! one `Param` `<name>.momentum` (role `MomentumBuffer`, zero-initialised, the parameter's
//! type and span) and one `SgdUpdate [param, grad, buffer, lr]` per parameter with a gradient,
//! in parameter creation order.

use grammar::Span;

use super::{momentum_name, AutodiffError, Gradients, SgdOptions, LEARNING_RATE};
use crate::ir::{Graph, Init, NodeId, Op, ParamRole, TensorType};

/// Adds the SGD updates of `params` (those with a gradient); returns how many were added.
pub(super) fn add_sgd(
    graph: &mut Graph,
    gradients: &Gradients,
    params: &[NodeId],
    options: &SgdOptions,
) -> Result<usize, AutodiffError> {
    let updated: Vec<(NodeId, NodeId)> = params
        .iter()
        .filter_map(|&param| Some((param, gradients.get(param)?)))
        .collect();
    let Some(&(first, _)) = updated.first() else {
        return Ok(0);
    };
    let lr_span = graph.node(first).span;
    let lr_op = Op::Scalar {
        name: LEARNING_RATE.into(),
    };
    let lr = graph.add(lr_op, TensorType::scalar(), lr_span, &[]);
    for &(param, grad) in &updated {
        let buffer = add_buffer(graph, param)?;
        let node = graph.node(param);
        let (ty, span) = (node.ty.clone(), node.span);
        let update = Op::SgdUpdate {
            momentum: options.momentum,
            weight_decay: options.weight_decay,
            nesterov: options.nesterov,
        };
        graph.add(update, ty, span, &[param, grad, buffer, lr]);
    }
    Ok(updated.len())
}

/// The momentum buffer of `param`: a zero-initialised `Param` named `<name>.momentum`.
fn add_buffer(graph: &mut Graph, param: NodeId) -> Result<NodeId, AutodiffError> {
    let node = graph.node(param);
    let name = match &node.op {
        Op::Param { name, .. } => momentum_name(name),
        _ => String::new(),
    };
    if graph.param(&name).is_some() {
        return Err(AutodiffError::DuplicateParam { name });
    }
    let (ty, span): (TensorType, Span) = (node.ty.clone(), node.span);
    let op = Op::Param {
        name,
        role: ParamRole::MomentumBuffer,
        init: Init::Constant(0.0),
    };
    Ok(graph.add(op, ty, span, &[]))
}
