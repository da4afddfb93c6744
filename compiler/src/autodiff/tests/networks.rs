//! Whole-network checks: gradients of a tiny LeNet and a tiny ResNet (BatchNorm, option-A
//! shortcut, residual add) in phase 2 (ReLU) and phase 1 (the paper's mix), and the exact
//! agreement of a mix with β = [1, 0, 0, 0] with the ReLU network.

use super::super::{training_graph, SgdOptions, LOSS};
use super::gradcheck::{assert_gradients_of, random_feeds, random_state, Elements};
use super::net::{tiny_lenet, tiny_resnet, ActivationStyle};
use crate::ir::{Graph, Op};
use crate::reference::{self, Feeds, State, Values};

fn equal_mix() -> ActivationStyle {
    ActivationStyle::Mix(vec![0.25; 4])
}

/// Checks a network's gradients on a batch of `batch`: 40 spread elements of every parameter
/// and of the image (every element of the small ones).
fn check_network(graph: &Graph, batch: usize, seed: u64) {
    let (feeds, state) = (random_feeds(graph, batch, seed), random_state(graph, seed));
    assert_gradients_of(graph, &feeds, &state, true, Elements::Spread(40));
}

#[test]
fn lenet_relu_gradients_match_finite_differences() {
    let graph = tiny_lenet(&ActivationStyle::Relu);
    check_network(&graph, 3, 40);
}

#[test]
fn lenet_mix_gradients_match_finite_differences() {
    let graph = tiny_lenet(&equal_mix());
    check_network(&graph, 3, 41);
}

#[test]
fn resnet_relu_gradients_match_finite_differences() {
    let graph = tiny_resnet(&ActivationStyle::Relu);
    check_network(&graph, 4, 42);
}

#[test]
fn resnet_mix_gradients_match_finite_differences() {
    let graph = tiny_resnet(&equal_mix());
    check_network(&graph, 4, 43);
}

/// One training step of `forward` on `feeds`; returns the training graph, its values and the
/// state after the step.
fn one_step(forward: &Graph, feeds: &Feeds, state: &State) -> (Graph, Values, State) {
    let options = SgdOptions {
        momentum: 0.9,
        weight_decay: 1e-3,
        nesterov: true,
    };
    let graph = training_graph(forward, &options).expect("training graph");
    let mut after = state.clone();
    for (name, values) in reference::init_params(&graph, 0) {
        after.entry(name).or_insert(values);
    }
    let mut feeds = feeds.clone();
    feeds.scalars.insert("lr".into(), 0.1);
    let values = reference::run(&graph, &feeds, &mut after).expect("reference step");
    (graph, values, after)
}

/// The gradient value of every parameter updated in `graph`, by parameter name.
fn gradients_by_name(graph: &Graph, values: &Values) -> State {
    let mut gradients = State::new();
    for id in graph.node_ids() {
        if let Op::SgdUpdate { .. } = graph.node(id).op {
            let operands = graph.inputs(id);
            if let Op::Param { name, .. } = &graph.node(operands[0]).op {
                gradients.insert(name.clone(), values[&operands[1]].clone());
            }
        }
    }
    gradients
}

fn assert_mix_with_relu_weight_is_relu(build: fn(&ActivationStyle) -> Graph, batch: usize) {
    let relu = build(&ActivationStyle::Relu);
    let mix = build(&ActivationStyle::Mix(vec![1.0, 0.0, 0.0, 0.0]));
    let feeds = random_feeds(&relu, batch, 44);
    let state = random_state(&mix, 44);
    let relu_state = random_state(&relu, 44);
    // Shared parameters start equal (same names, same seed); the mix only adds PReLU slopes.
    for (name, values) in &relu_state {
        assert_eq!(state.get(name), Some(values), "{name}");
    }

    let (relu_graph, relu_values, relu_after) = one_step(&relu, &feeds, &relu_state);
    let (mix_graph, mix_values, mix_after) = one_step(&mix, &feeds, &state);
    for output in ["logits", LOSS, "correct"] {
        let relu_output = &relu_values[&relu_graph.output(output).expect("output")];
        let mix_output = &mix_values[&mix_graph.output(output).expect("output")];
        assert_eq!(relu_output, mix_output, "{output}");
    }
    let relu_gradients = gradients_by_name(&relu_graph, &relu_values);
    let mix_gradients = gradients_by_name(&mix_graph, &mix_values);
    assert!(!relu_gradients.is_empty());
    for (name, gradient) in &relu_gradients {
        assert_eq!(
            mix_gradients.get(name),
            Some(gradient),
            "gradient of {name}"
        );
    }
    for (name, values) in &relu_after {
        assert_eq!(
            mix_after.get(name),
            Some(values),
            "state {name} after the step"
        );
    }
}

#[test]
fn lenet_mix_with_all_weight_on_relu_is_the_relu_network_exactly() {
    assert_mix_with_relu_weight_is_relu(tiny_lenet, 3);
}

#[test]
fn resnet_mix_with_all_weight_on_relu_is_the_relu_network_exactly() {
    assert_mix_with_relu_weight_is_relu(tiny_resnet, 4);
}
