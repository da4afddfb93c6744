//! Mode rewrites of the forward graph: BatchNorm into training form (batch statistics and
//! running-statistic effects) or evaluation form (running statistics), and dropout removal.
//!
//! Needs: a typed forward graph. Promises: no `BatchNorm` node remains (and no `Dropout` after
//! [`remove_dropout`]); every other node keeps its id; new nodes carry the span of the layer
//! they replace.

use grammar::Span;

use super::AutodiffError;
use crate::ir::{Graph, NodeId, Op, TensorType};

/// The operands of one BatchNorm layer.
struct BatchNormLayer {
    id: NodeId,
    span: Span,
    ty: TensorType,
    eps: f32,
    momentum: f32,
    x: NodeId,
    scale: NodeId,
    shift: NodeId,
    running_mean: NodeId,
    running_var: NodeId,
}

/// Every BatchNorm layer of `graph`, with its operands checked.
fn batch_norm_layers(graph: &Graph) -> Result<Vec<BatchNormLayer>, AutodiffError> {
    let mut layers = Vec::new();
    for id in graph.node_ids() {
        let node = graph.node(id);
        let Op::BatchNorm { eps, momentum } = node.op else {
            continue;
        };
        let span = node.span;
        let &[x, scale, shift, running_mean, running_var] = graph.inputs(id).as_slice() else {
            let found = graph.inputs(id).len();
            return Err(AutodiffError::Operands {
                op: "batchnorm",
                expected: 5,
                found,
                span,
            });
        };
        let is_param = |id: NodeId| matches!(graph.node(id).op, Op::Param { .. });
        if !is_param(running_mean) || !is_param(running_var) {
            return Err(AutodiffError::RunningStatisticNotParam { span });
        }
        let ty = node.ty.clone();
        layers.push(BatchNormLayer {
            id,
            span,
            ty,
            eps,
            momentum,
            x,
            scale,
            shift,
            running_mean,
            running_var,
        });
    }
    Ok(layers)
}

/// `BatchNorm(x) => BatchNormApply(x, mean, var, γ, β)` with `mean = BatchMean(x)`,
/// `var = BatchVar(x, mean)`, plus `RunningUpdate(running_mean, mean, x)` (biased) and
/// `RunningUpdate(running_var, var, x)` (unbiased).
pub(super) fn batch_norm_for_training(graph: &mut Graph) -> Result<usize, AutodiffError> {
    let layers = batch_norm_layers(graph)?;
    for layer in &layers {
        let stat_ty = graph.node(layer.running_mean).ty.clone();
        let span = layer.span;
        let mean = graph.add(Op::BatchMean, stat_ty.clone(), span, &[layer.x]);
        let var = graph.add(Op::BatchVar, stat_ty, span, &[layer.x, mean]);
        let apply = Op::BatchNormApply { eps: layer.eps };
        let operands = [layer.x, mean, var, layer.scale, layer.shift];
        let y = graph.add(apply, layer.ty.clone(), span, &operands);
        for (running, stat, unbiased) in [
            (layer.running_mean, mean, false),
            (layer.running_var, var, true),
        ] {
            let update = Op::RunningUpdate {
                momentum: layer.momentum,
                unbiased,
            };
            let running_ty = graph.node(running).ty.clone();
            graph.add(update, running_ty, span, &[running, stat, layer.x]);
        }
        replace(graph, layer.id, y);
    }
    Ok(layers.len())
}

/// `BatchNorm(x) => BatchNormApply(x, running_mean, running_var, γ, β)`.
pub(super) fn batch_norm_for_eval(graph: &mut Graph) -> Result<usize, AutodiffError> {
    let layers = batch_norm_layers(graph)?;
    for layer in &layers {
        let apply = Op::BatchNormApply { eps: layer.eps };
        let operands = [
            layer.x,
            layer.running_mean,
            layer.running_var,
            layer.scale,
            layer.shift,
        ];
        let y = graph.add(apply, layer.ty.clone(), layer.span, &operands);
        replace(graph, layer.id, y);
    }
    Ok(layers.len())
}

/// `Dropout(x) => x` (evaluation).
pub(super) fn remove_dropout(graph: &mut Graph) -> Result<usize, AutodiffError> {
    let dropouts: Vec<NodeId> = graph
        .node_ids()
        .into_iter()
        .filter(|&id| matches!(graph.node(id).op, Op::Dropout { .. }))
        .collect();
    for &id in &dropouts {
        let &[x] = graph.inputs(id).as_slice() else {
            let (found, span) = (graph.inputs(id).len(), graph.node(id).span);
            return Err(AutodiffError::Operands {
                op: "dropout",
                expected: 1,
                found,
                span,
            });
        };
        replace(graph, id, x);
    }
    Ok(dropouts.len())
}

/// Points every use of `old` (outputs included) at `new`, hands `old`'s layer name to `new`
/// when `new` has none, then removes `old`.
fn replace(graph: &mut Graph, old: NodeId, new: NodeId) {
    graph.replace_all_uses(old, new);
    if graph.layer_name(new).is_none() {
        if let Some(name) = graph.layer_name(old).map(str::to_owned) {
            graph.set_layer_name(new, name);
        }
    }
    graph.remove(old);
}
