//! The structural verifier of the graph IR, run after every pipeline stage in debug builds
//! (and with `--verify-each`).
//!
//! It checks, and reports every violation it finds rather than the first: operand slots are
//! exactly `0..k` for the op's arity; each node's recorded type is what its op's rule gives for
//! its operands ([`crate::infer::check`]); the graph has no cycle; parameter names are unique;
//! every `Mix` operand is an activation of one common input. A failure is a bug in the pass
//! that ran last, never a user mistake; the spans still point at the user's source.

use std::collections::{BTreeMap, HashMap};

use miette::Diagnostic;
use thiserror::Error;

use grammar::Span;

use super::graph::{Graph, NodeId};
use super::op::Op;
use crate::infer::{self, Arity, ShapeError};

/// One violation of the IR's invariants.
#[derive(Clone, Debug, PartialEq, Error, Diagnostic)]
pub enum VerifyError {
    /// The operand slots of a node are not `0..k`, or `k` is not the op's arity.
    #[error(
        "`{op}` node has operand slots {slots:?}, expected {expected} operands numbered from 0"
    )]
    #[diagnostic(code(verify::slots))]
    Slots {
        /// The op.
        op: &'static str,
        /// The slots it has, in order.
        slots: Vec<u32>,
        /// How many it should have.
        expected: Arity,
        /// The node's span.
        #[label("this node")]
        span: Span,
    },
    /// A node's recorded type does not follow from its operands.
    #[error("`{op}` node is mistyped: {error}")]
    #[diagnostic(code(verify::mistyped))]
    Type {
        /// The op.
        op: &'static str,
        /// What the type rule says.
        error: ShapeError,
        /// The node's span.
        #[label("this node")]
        span: Span,
    },
    /// The graph has a cycle.
    #[error("the graph has a cycle through {count} node(s)")]
    #[diagnostic(code(verify::cycle))]
    CycleInGraph {
        /// How many nodes are on or behind a cycle.
        count: usize,
        /// The span of one of them.
        #[label("on a cycle")]
        span: Span,
    },
    /// Two parameter nodes share a name.
    #[error("two parameters are named `{name}`")]
    #[diagnostic(code(verify::duplicate_param))]
    DuplicateParam {
        /// The name.
        name: String,
        /// The second one.
        #[label("this one")]
        span: Span,
        /// The first one.
        #[label("and this one")]
        previous: Span,
    },
    /// A `Mix` operand that is not an activation of the mix's common input.
    #[error("operand {slot} of a `mix` is not an activation of the mix's common input")]
    #[diagnostic(code(verify::mix_operand))]
    MixOperand {
        /// The operand slot.
        slot: usize,
        /// The mix.
        #[label("this mix")]
        span: Span,
    },
}

/// Checks every invariant of `graph`.
///
/// # Errors
/// Every violation found, in node order.
pub fn verify(graph: &Graph) -> Result<(), Vec<VerifyError>> {
    let mut errors = Vec::new();
    let slots = incoming_slots(graph);
    for id in graph.node_ids() {
        let node_slots = slots.get(&id).cloned().unwrap_or_default();
        if let Err(error) = check_slots(graph, id, node_slots) {
            errors.push(error);
            continue;
        }
        check_type(graph, id, &mut errors);
        if let Op::Mix { .. } = graph.node(id).op {
            check_mix(graph, id, &mut errors);
        }
    }
    check_acyclic(graph, &mut errors);
    check_param_names(graph, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The slot numbers of each node's incoming edges, sorted.
fn incoming_slots(graph: &Graph) -> HashMap<NodeId, Vec<u32>> {
    let mut slots: HashMap<NodeId, Vec<u32>> = HashMap::new();
    for id in graph.node_ids() {
        for (user, slot) in graph.users(id) {
            slots.entry(user).or_default().push(slot);
        }
    }
    for list in slots.values_mut() {
        list.sort_unstable();
    }
    slots
}

fn check_slots(graph: &Graph, id: NodeId, slots: Vec<u32>) -> Result<(), VerifyError> {
    let node = graph.node(id);
    let numbered_from_zero = slots
        .iter()
        .enumerate()
        .all(|(index, &slot)| slot as usize == index);
    let arity = infer::arity(&node.op).unwrap_or(Arity::AtLeast(0));
    if numbered_from_zero && arity.accepts(slots.len()) {
        Ok(())
    } else {
        Err(VerifyError::Slots {
            op: node.op.name(),
            slots,
            expected: arity,
            span: node.span,
        })
    }
}

fn check_type(graph: &Graph, id: NodeId, errors: &mut Vec<VerifyError>) {
    let node = graph.node(id);
    let inputs = graph.inputs(id);
    let operands: Vec<_> = inputs.iter().map(|&input| &graph.node(input).ty).collect();
    if let Err(error) = infer::check(&node.op, &operands, &node.ty) {
        errors.push(VerifyError::Type {
            op: node.op.name(),
            error,
            span: node.span,
        });
    }
}

// mix(F₁(x), ..., F_k(x)): every operand an activation whose slot 0 is the same x
fn check_mix(graph: &Graph, id: NodeId, errors: &mut Vec<VerifyError>) {
    let mut common = None;
    for (slot, member) in graph.inputs(id).into_iter().enumerate() {
        let member_input = graph.inputs(member).first().copied();
        let is_activation = graph.node(member).op.is_activation();
        let agrees = match (common, member_input) {
            (_, None) => false,
            (None, Some(input)) => {
                common = Some(input);
                true
            }
            (Some(expected), Some(input)) => expected == input,
        };
        if !is_activation || !agrees {
            errors.push(VerifyError::MixOperand {
                slot,
                span: graph.node(id).span,
            });
        }
    }
}

fn check_acyclic(graph: &Graph, errors: &mut Vec<VerifyError>) {
    if graph.topological_order().is_some() {
        return;
    }
    // Nodes that never become ready are on a cycle or downstream of one.
    let mut pending: HashMap<NodeId, usize> = graph
        .node_ids()
        .into_iter()
        .map(|id| (id, graph.inputs(id).len()))
        .collect();
    let mut ready: Vec<NodeId> = pending
        .iter()
        .filter(|(_, count)| **count == 0)
        .map(|(id, _)| *id)
        .collect();
    while let Some(id) = ready.pop() {
        pending.remove(&id);
        for (user, _) in graph.users(id) {
            if let Some(count) = pending.get_mut(&user) {
                *count -= 1;
                if *count == 0 {
                    ready.push(user);
                }
            }
        }
    }
    let first = pending.keys().min().copied();
    let span = first.map(|id| graph.node(id).span).unwrap_or_default();
    errors.push(VerifyError::CycleInGraph {
        count: pending.len(),
        span,
    });
}

fn check_param_names(graph: &Graph, errors: &mut Vec<VerifyError>) {
    let mut seen: BTreeMap<&str, Span> = BTreeMap::new();
    for id in graph.params() {
        let node = graph.node(id);
        if let Op::Param { name, .. } = &node.op {
            if let Some(previous) = seen.insert(name, node.span) {
                let name = name.clone();
                errors.push(VerifyError::DuplicateParam {
                    name,
                    span: node.span,
                    previous,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::op::{Activation, Init, ParamRole, TensorType};

    fn input(graph: &mut Graph, dims: Vec<usize>) -> NodeId {
        graph.add(
            Op::Input { name: "x".into() },
            TensorType::batch(dims),
            Span::default(),
            &[],
        )
    }

    #[test]
    fn a_well_formed_graph_passes() {
        let mut graph = Graph::new();
        let x = input(&mut graph, vec![4]);
        let relu = graph.add(
            Op::Activation(Activation::Relu),
            TensorType::batch(vec![4]),
            Span::default(),
            &[x],
        );
        let elu = Op::Activation(Activation::Elu { alpha: 1.0 });
        let elu = graph.add(elu, TensorType::batch(vec![4]), Span::default(), &[x]);
        let mix = Op::Mix {
            weights: vec![0.5, 0.5],
        };
        let mix = graph.add(
            mix,
            TensorType::batch(vec![4]),
            Span::default(),
            &[relu, elu],
        );
        graph.add_output("y", mix);
        assert_eq!(verify(&graph), Ok(()));
    }

    #[test]
    fn every_violation_is_reported() {
        let mut graph = Graph::new();
        let x = input(&mut graph, vec![4]);
        // Wrong recorded type, wrong operand count, and a duplicate parameter name.
        graph.add(
            Op::Activation(Activation::Relu),
            TensorType::batch(vec![5]),
            Span::default(),
            &[x],
        );
        graph.add(Op::Add, TensorType::batch(vec![4]), Span::default(), &[x]);
        for _ in 0..2 {
            let op = Op::Param {
                name: "w".into(),
                role: ParamRole::Weight,
                init: Init::Constant(0.0),
            };
            graph.add(op, TensorType::fixed(vec![1]), Span::default(), &[]);
        }
        let errors = verify(&graph).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(matches!(errors[0], VerifyError::Type { op: "relu", .. }));
        assert!(matches!(errors[1], VerifyError::Slots { op: "add", .. }));
        assert!(matches!(errors[2], VerifyError::DuplicateParam { .. }));
    }

    #[test]
    fn cycles_and_bad_mixes_are_found() {
        let mut graph = Graph::new();
        let x = input(&mut graph, vec![4]);
        let ty = TensorType::batch(vec![4]);
        let first = graph.add(Op::Add, ty.clone(), Span::default(), &[x, x]);
        let second = graph.add(Op::Add, ty.clone(), Span::default(), &[first, x]);
        graph.set_input(first, 1, second);
        let mix = graph.add(Op::Mix { weights: vec![1.0] }, ty, Span::default(), &[x]);
        let errors = verify(&graph).unwrap_err();
        assert!(errors
            .iter()
            .any(|e| matches!(e, VerifyError::CycleInGraph { count: 2, .. })));
        assert!(errors
            .iter()
            .any(|e| matches!(e, VerifyError::MixOperand { slot: 0, .. })));
        assert!(graph.contains(mix));
    }
}
