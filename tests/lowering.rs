//! Phase 2 is the plain network: for every model, the graph after `coop` then `lower` equals
//! the model's own graph as written (all models are written with plain ReLU), op for op, with
//! the same parameter names and shapes.

use compiler::ir::print::print_graph;
use compiler::ir::{Graph, Op, TensorType};

use crate::support::{model_paths, options_with, source};

/// Every parameter's name and type, sorted by name.
fn parameters(graph: &Graph) -> Vec<(String, TensorType)> {
    let mut params: Vec<(String, TensorType)> = graph
        .params()
        .into_iter()
        .filter_map(|id| match &graph.node(id).op {
            Op::Param { name, .. } => Some((name.clone(), graph.node(id).ty.clone())),
            _ => None,
        })
        .collect();
    params.sort_by(|lhs, rhs| lhs.0.cmp(&rhs.0));
    params
}

#[test]
fn lowered_graph_of_every_model_equals_its_relu_baseline() {
    for path in model_paths() {
        let compiled = compiler::pipeline::compile_source(&source(&path), &options_with(&[]))
            .unwrap_or_else(|error| panic!("{}: {}", path.display(), error.render()));
        assert_eq!(
            parameters(&compiled.lowered),
            parameters(&compiled.baseline),
            "{}",
            path.display()
        );
        assert_eq!(
            print_graph(&compiled.lowered),
            print_graph(&compiled.baseline),
            "{}",
            path.display()
        );
        assert_ne!(
            print_graph(&compiled.coop),
            print_graph(&compiled.baseline),
            "{}",
            path.display()
        );
    }
}

#[test]
fn phase_one_mixes_every_activation_of_the_baseline() {
    for path in model_paths() {
        let compiled = compiler::pipeline::compile_source(&source(&path), &options_with(&[]))
            .unwrap_or_else(|error| panic!("{}: {}", path.display(), error.render()));
        let count = |graph: &Graph, predicate: &dyn Fn(&Op) -> bool| {
            graph
                .node_ids()
                .into_iter()
                .filter(|&id| predicate(&graph.node(id).op))
                .count()
        };
        let activations = count(&compiled.baseline, &|op| op.is_activation());
        let mixes = count(&compiled.coop, &|op| matches!(op, Op::Mix { .. }));
        assert_eq!(mixes, activations, "{}", path.display());
        assert_eq!(
            count(&compiled.coop, &|op| op.is_activation()),
            4 * activations
        );
        // The trainer carries weights across phases by name: every baseline parameter exists
        // in phase 1 under the same name and shape.
        let phase_one = parameters(&compiled.coop);
        for param in parameters(&compiled.baseline) {
            assert!(
                phase_one.contains(&param),
                "{}: {} missing in phase 1",
                path.display(),
                param.0
            );
        }
    }
}
