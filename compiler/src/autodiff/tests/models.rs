//! The training and evaluation graphs of the shipped models (compiled by the front end, in
//! phase 1 and phase 2) pass the IR verifier and have one SGD update per trained parameter.

use super::super::{eval_graph, trained_params, training_graph, SgdOptions};
use crate::ir::verify::verify;
use crate::ir::{Graph, Op};
use crate::pipeline::{compile_source, CompileOptions};
use grammar::SourceFile;

/// The phase-1 and phase-2 forward graphs of `models/<name>.coop`.
fn phases(name: &str) -> [Graph; 2] {
    let path = format!("{}/../models/{name}.coop", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("model file");
    let compiled = compile_source(&SourceFile::new(path, text), &CompileOptions::default())
        .expect("the model compiles");
    [compiled.coop, compiled.lowered]
}

fn check_model(name: &str) {
    for forward in phases(name) {
        let training = training_graph(&forward, &SgdOptions::default()).expect("training graph");
        verify(&training).unwrap_or_else(|errors| panic!("{name} training graph: {errors:#?}"));
        let updates = training
            .node_ids()
            .into_iter()
            .filter(|&id| matches!(training.node(id).op, Op::SgdUpdate { .. }))
            .count();
        assert_eq!(updates, trained_params(&forward).len(), "{name}");
        let eval = eval_graph(&forward).expect("eval graph");
        verify(&eval).unwrap_or_else(|errors| panic!("{name} eval graph: {errors:#?}"));
    }
}

#[test]
fn lenet_training_and_eval_graphs_verify() {
    check_model("lenet");
}

#[test]
fn resnet20_training_and_eval_graphs_verify() {
    check_model("resnet20");
}

#[test]
fn vgg16_and_alexnet_training_and_eval_graphs_verify() {
    check_model("vgg16");
    check_model("alexnet");
}

#[test]
fn resnet56_training_graph_builds_quickly() {
    let [phase1, _] = phases("resnet56");
    let start = std::time::Instant::now();
    let training = training_graph(&phase1, &SgdOptions::default()).expect("training graph");
    let seconds = start.elapsed().as_secs_f64();
    // Generous even for an unoptimised test build: the whole compile must stay under 10 s.
    assert!(seconds < 2.0, "{seconds} s for {} nodes", training.len());
}
