//! The shape of the graphs autodiff builds: outputs, feeds, state names, effects, spans,
//! dropout sites, the evaluation graph's meaning, and the errors for graphs it cannot handle.

use std::collections::BTreeSet;

use grammar::Span;

use super::super::{
    backward, eval_graph, inference_graph, training_graph, AutodiffError, SgdOptions, LABELS,
};
use super::gradcheck::{random_feeds, random_state};
use super::net::{tiny_resnet, ActivationStyle, Net};
use crate::ir::{Graph, Op, ParamRole, TensorType};
use crate::reference::{self, Mode};

/// A ResNet with a dropout before its classifier.
fn resnet_with_dropout() -> Graph {
    let mut graph = tiny_resnet(&ActivationStyle::Mix(vec![0.25; 4]));
    let logits = graph.output("logits").expect("logits");
    let dense_input = graph.inputs(logits)[0];
    let ty = graph.node(dense_input).ty.clone();
    let span = graph.node(dense_input).span;
    let dropout = graph.add(Op::Dropout { p: 0.5 }, ty, span, &[dense_input]);
    graph.set_input(logits, 0, dropout);
    graph
}

fn count(graph: &Graph, predicate: impl Fn(&Op) -> bool) -> usize {
    graph
        .node_ids()
        .into_iter()
        .filter(|&id| predicate(&graph.node(id).op))
        .count()
}

#[test]
fn training_graph_has_the_documented_outputs_feeds_and_state() {
    let forward = resnet_with_dropout();
    let graph = training_graph(&forward, &SgdOptions::default()).expect("training graph");
    let outputs: Vec<&str> = graph
        .outputs()
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(outputs, ["logits", "loss", "correct"]);

    let mut feeds = BTreeSet::new();
    let mut state = BTreeSet::new();
    for id in graph.node_ids() {
        match &graph.node(id).op {
            Op::Input { name } | Op::Labels { name } | Op::Scalar { name } => {
                feeds.insert(name.clone());
            }
            Op::Param { name, .. } => {
                assert!(state.insert(name.clone()), "duplicate state {name}");
            }
            _ => {}
        }
    }
    assert_eq!(
        feeds,
        BTreeSet::from(["image".into(), LABELS.into(), "lr".into()])
    );
    let mut expected = BTreeSet::new();
    for id in forward.params() {
        let Op::Param { name, role, .. } = &forward.node(id).op else {
            continue;
        };
        expected.insert(name.clone());
        if role.is_trained() {
            expected.insert(format!("{name}.momentum"));
        }
    }
    assert_eq!(state, expected);
    let labels = graph
        .node_ids()
        .into_iter()
        .find(|&id| matches!(graph.node(id).op, Op::Labels { .. }));
    let labels_ty = &graph.node(labels.expect("labels")).ty;
    assert_eq!(
        *labels_ty,
        TensorType {
            dtype: crate::ir::DType::I32,
            batched: true,
            dims: vec![]
        }
    );
}

#[test]
fn batch_norm_is_expanded_with_two_running_updates_each() {
    let mut forward = tiny_resnet(&ActivationStyle::Relu);
    let first_bn = forward
        .node_ids()
        .into_iter()
        .find(|&id| matches!(forward.node(id).op, Op::BatchNorm { .. }));
    forward.set_layer_name(first_bn.expect("a batchnorm"), "stem.bn");
    let layers = count(&forward, |op| matches!(op, Op::BatchNorm { .. }));
    assert_eq!(layers, 5);
    let graph = training_graph(&forward, &SgdOptions::default()).expect("training graph");
    assert_eq!(count(&graph, |op| matches!(op, Op::BatchNorm { .. })), 0);
    assert_eq!(count(&graph, |op| matches!(op, Op::BatchMean)), layers);
    let named = graph
        .node_ids()
        .into_iter()
        .find(|&id| graph.layer_name(id) == Some("stem.bn"));
    assert!(matches!(
        graph.node(named.expect("named")).op,
        Op::BatchNormApply { .. }
    ));
    assert_eq!(
        count(&graph, |op| matches!(op, Op::BatchNormInputGrad { .. })),
        layers
    );
    let biased = count(&graph, |op| {
        matches!(
            op,
            Op::RunningUpdate {
                unbiased: false,
                ..
            }
        )
    });
    let unbiased = count(&graph, |op| {
        matches!(op, Op::RunningUpdate { unbiased: true, .. })
    });
    assert_eq!((biased, unbiased), (layers, layers));
    for id in graph.node_ids() {
        if let Op::RunningUpdate { momentum, unbiased } = graph.node(id).op {
            let running = graph.inputs(id)[0];
            let Op::Param { role, .. } = &graph.node(running).op else {
                panic!("not a param")
            };
            let expected = if unbiased {
                ParamRole::RunningVar
            } else {
                ParamRole::RunningMean
            };
            assert_eq!((*role, momentum), (expected, 0.1));
        }
    }
}

#[test]
fn every_trained_param_gets_one_sgd_update_with_its_buffer() {
    let forward = tiny_resnet(&ActivationStyle::Mix(vec![0.25; 4]));
    let options = SgdOptions {
        momentum: 0.8,
        weight_decay: 5e-4,
        nesterov: true,
    };
    let graph = training_graph(&forward, &options).expect("training graph");
    let mut updated = BTreeSet::new();
    for id in graph.node_ids() {
        let Op::SgdUpdate {
            momentum,
            weight_decay,
            nesterov,
        } = graph.node(id).op
        else {
            continue;
        };
        assert_eq!((momentum, weight_decay, nesterov), (0.8, 5e-4, true));
        let operands = graph.inputs(id);
        assert_eq!(operands.len(), 4);
        let Op::Param { name, role, .. } = &graph.node(operands[0]).op else {
            panic!()
        };
        assert!(role.is_trained());
        let Op::Param {
            name: buffer,
            role: buffer_role,
            init,
        } = &graph.node(operands[2]).op
        else {
            panic!("buffer is not a param")
        };
        assert_eq!(buffer, &format!("{name}.momentum"));
        assert_eq!(
            (*buffer_role, init),
            (ParamRole::MomentumBuffer, &crate::ir::Init::Constant(0.0))
        );
        assert_eq!(graph.node(operands[1]).ty, graph.node(operands[0]).ty);
        assert!(matches!(&graph.node(operands[3]).op, Op::Scalar { name } if name == "lr"));
        assert!(updated.insert(name.clone()));
    }
    let trained = count(
        &forward,
        |op| matches!(op, Op::Param { role, .. } if role.is_trained()),
    );
    assert_eq!(updated.len(), trained);
    assert_eq!(count(&graph, |op| matches!(op, Op::Scalar { .. })), 1);
}

#[test]
fn new_nodes_inherit_forward_spans_and_ids_survive() {
    let forward = resnet_with_dropout();
    let graph = training_graph(&forward, &SgdOptions::default()).expect("training graph");
    let forward_spans: BTreeSet<Span> = forward
        .node_ids()
        .into_iter()
        .map(|id| forward.node(id).span)
        .collect();
    for id in graph.node_ids() {
        let node = graph.node(id);
        assert!(
            forward_spans.contains(&node.span),
            "{} has a new span",
            node.op.name()
        );
        if forward.contains(id) && !matches!(forward.node(id).op, Op::BatchNorm { .. }) {
            assert_eq!(
                forward.node(id),
                node,
                "forward node {} changed",
                id.index()
            );
        }
    }
    for id in graph.node_ids() {
        if let Op::ActivationGrad(_) | Op::Conv2dInputGrad { .. } = graph.node(id).op {
            let x = graph.inputs(id)[1];
            let owner = graph
                .users(x)
                .into_iter()
                .map(|(user, _)| graph.node(user).span);
            assert!(owner.clone().any(|span| span == graph.node(id).span));
        }
    }
}

#[test]
fn dropout_grad_uses_the_forward_node_as_its_site() {
    let forward = resnet_with_dropout();
    let graph = training_graph(&forward, &SgdOptions::default()).expect("training graph");
    let dropout = forward
        .node_ids()
        .into_iter()
        .find(|&id| matches!(forward.node(id).op, Op::Dropout { .. }))
        .expect("dropout");
    let sites: Vec<u32> = graph
        .node_ids()
        .into_iter()
        .filter_map(|id| match graph.node(id).op {
            Op::DropoutGrad { site, .. } => Some(site),
            _ => None,
        })
        .collect();
    assert_eq!(sites, vec![dropout.index() as u32]);
    assert!(matches!(graph.node(dropout).op, Op::Dropout { .. }));
}

#[test]
fn training_graph_forward_values_equal_the_forward_graph_in_training_mode() {
    let forward = resnet_with_dropout();
    let graph = training_graph(&forward, &SgdOptions::default()).expect("training graph");
    let mut feeds = random_feeds(&forward, 4, 60);
    feeds.scalars.insert("lr".into(), 0.1);
    let state = random_state(&graph, 60);
    let train = reference::run(&graph, &feeds, &mut state.clone()).expect("training step");
    let plain = reference::run(&forward, &feeds, &mut state.clone()).expect("forward");
    let logits = forward.output("logits").expect("logits");
    assert_eq!(
        train[&graph.output("logits").expect("logits")],
        plain[&logits]
    );
}

#[test]
fn eval_graph_uses_running_statistics_and_drops_dropout() {
    let forward = resnet_with_dropout();
    let eval = eval_graph(&forward).expect("eval graph");
    assert_eq!(
        count(&eval, |op| matches!(
            op,
            Op::BatchNorm { .. } | Op::Dropout { .. }
        )),
        0
    );
    assert_eq!(count(&eval, |op| op.is_effect()), 0);
    let outputs: Vec<&str> = eval
        .outputs()
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(outputs, ["logits", "loss", "correct"]);
    let inference = inference_graph(&forward).expect("inference graph");
    let outputs: Vec<&str> = inference
        .outputs()
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(outputs, ["logits"]);

    let mut feeds = random_feeds(&forward, 3, 61);
    let state = random_state(&forward, 61);
    let eval_values = reference::run(&eval, &feeds, &mut state.clone()).expect("eval");
    feeds.mode = Mode::Eval;
    let forward_values = reference::run(&forward, &feeds, &mut state.clone()).expect("forward");
    let logits = forward.output("logits").expect("logits");
    let eval_logits = &eval_values[&eval.output("logits").expect("logits")];
    assert_eq!(eval_logits, &forward_values[&logits]);
    feeds.mode = Mode::Train;
    let train_values = reference::run(&forward, &feeds, &mut state.clone()).expect("forward");
    assert_ne!(eval_logits, &train_values[&logits]);
}

#[test]
fn missing_or_mistyped_logits_are_errors() {
    let mut net = Net::new();
    let image = net.input(vec![2, 3, 3]);
    let y = net.act(image, crate::ir::Activation::Relu);
    let mut graph = net.graph.clone();
    let error = training_graph(&graph, &SgdOptions::default()).unwrap_err();
    assert_eq!(error, AutodiffError::MissingOutput { name: "logits" });
    graph.add_output("logits", y);
    let error = training_graph(&graph, &SgdOptions::default()).unwrap_err();
    assert!(
        matches!(error, AutodiffError::LogitsType { .. }),
        "{error:?}"
    );

    let mut with_loss = tiny_resnet(&ActivationStyle::Relu);
    let logits = with_loss.output("logits").expect("logits");
    with_loss.add_output("loss", logits);
    let error = training_graph(&with_loss, &SgdOptions::default()).unwrap_err();
    assert_eq!(error, AutodiffError::DuplicateOutput { name: "loss" });
}

#[test]
fn no_gradient_is_computed_for_the_image() {
    let forward = tiny_resnet(&ActivationStyle::Relu);
    let graph = training_graph(&forward, &SgdOptions::default()).expect("training graph");
    let convs = count(&forward, |op| matches!(op, Op::Conv2d { .. }));
    assert_eq!(
        count(&graph, |op| matches!(op, Op::Conv2dInputGrad { .. })),
        convs - 1
    );
    assert_eq!(
        count(&graph, |op| matches!(op, Op::Conv2dWeightGrad { .. })),
        convs
    );
}

#[test]
fn gradients_through_training_ops_or_from_a_non_loss_are_errors() {
    let mut net = Net::new();
    let image = net.input(vec![3]);
    let logits = net.dense(image, 2, true);
    let mut graph = net.finish(logits);
    let weight = graph.inputs(logits)[1];
    let span = graph.node(logits).span;
    let error = backward(&mut graph, logits, &[weight]).unwrap_err();
    assert!(matches!(
        error,
        AutodiffError::LossNotCrossEntropy { op: "dense", .. }
    ));

    // A loss reached through a gradient op, which has no rule (no second order).
    let labels_ty = TensorType {
        dtype: crate::ir::DType::I32,
        batched: true,
        dims: vec![],
    };
    let labels = graph.add(
        Op::Labels {
            name: LABELS.into(),
        },
        labels_ty,
        span,
        &[],
    );
    let grad_ty = TensorType::batch(vec![2]);
    let grad = graph.add(
        Op::SoftmaxCrossEntropyGrad,
        grad_ty,
        span,
        &[logits, labels],
    );
    let loss = graph.add(
        Op::SoftmaxCrossEntropy,
        TensorType::scalar(),
        span,
        &[grad, labels],
    );
    let error = backward(&mut graph, loss, &[weight]).unwrap_err();
    assert!(matches!(
        error,
        AutodiffError::NotDifferentiable {
            op: "softmax_cross_entropy_grad",
            ..
        }
    ));
}
