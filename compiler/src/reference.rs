//! The float64 reference interpreter: runs any [`Graph`] of [`crate::ir::op`] (forward graphs
//! in training or evaluation semantics, training graphs, evaluation graphs) with plain loops.
//! It is the oracle every fast kernel and every gradient rule is tested against.
//!
//! Semantics:
//! - nodes run in [`Graph::topological_order`]; every node's value is kept and returned;
//! - a `Param` node's value is the state entry of its name when the node runs; since an effect
//!   always depends on the `Param` it updates, every reader of a parameter sees the value of
//!   the step's start, and effects (`RunningUpdate`, `SgdUpdate`) write the new values back
//!   into the state in schedule order (the value of an effect node is the updated tensor);
//! - [`Mode`] decides only the two forward ops whose meaning depends on it: `BatchNorm`
//!   (batch statistics in training, running statistics in evaluation; it never updates the
//!   running statistics, which is the job of the training graph's `RunningUpdate`) and
//!   `Dropout` (masked in training, identity in evaluation);
//! - a forward `Dropout` node's site is its own node index; its mask is
//!   [`dropout::keep`]`(feeds.dropout_seed, site, flat index, p)`.
//!
//! Invariant: no clever kernels here. Each op is the textbook loop over NCHW data, in f64.

mod compute;
mod conv;
pub mod dropout;
mod elementwise;
pub mod init;
mod loss;
mod norm;
mod optimizer;
mod pool;
mod tensor;

use std::collections::BTreeMap;

use thiserror::Error;

use crate::ir::{Graph, NodeId, Op, TensorType};
use compute::compute;
pub use init::init_params;
use tensor::Tensor;

/// Persistent tensors by name: parameters, BatchNorm running statistics, momentum buffers.
pub type State = BTreeMap<String, Vec<f64>>;

/// The value of every node of a run, by node.
pub type Values = BTreeMap<NodeId, Vec<f64>>;

/// Which meaning the mode-dependent forward ops (`BatchNorm`, `Dropout`) take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics; dropout masks applied.
    Train,
    /// Running statistics; dropout is the identity.
    Eval,
}

/// What one run is fed.
#[derive(Clone, Debug)]
pub struct Feeds {
    /// The batch size `N` of every batched value.
    pub batch: usize,
    /// `Input` values by name, `N·item` elements each, row-major.
    pub inputs: BTreeMap<String, Vec<f64>>,
    /// `Labels` values by name, `N` class indices each.
    pub labels: BTreeMap<String, Vec<i32>>,
    /// `Scalar` values by name (`lr`).
    pub scalars: BTreeMap<String, f64>,
    /// The step's dropout seed.
    pub dropout_seed: u64,
    /// Meaning of `BatchNorm` and `Dropout`.
    pub mode: Mode,
}

impl Feeds {
    /// Feeds for a batch of `batch` items in `mode`, with nothing fed yet and seed 0.
    pub fn new(batch: usize, mode: Mode) -> Self {
        Feeds {
            batch,
            inputs: BTreeMap::new(),
            labels: BTreeMap::new(),
            scalars: BTreeMap::new(),
            dropout_seed: 0,
            mode,
        }
    }
}

/// Why a reference run failed.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ReferenceError {
    /// The graph has a cycle.
    #[error("the graph has a cycle")]
    Cycle,
    /// A leaf's value was not fed.
    #[error("no {kind} value fed for `{name}`")]
    MissingFeed {
        /// `input`, `labels` or `scalar`.
        kind: &'static str,
        /// The leaf's name.
        name: String,
    },
    /// A parameter has no entry in the state.
    #[error("no state value for parameter `{name}`")]
    MissingState {
        /// The parameter's name.
        name: String,
    },
    /// A fed or stored value has the wrong number of elements.
    #[error("`{name}` has {found} elements, expected {expected}")]
    WrongLength {
        /// The leaf's name.
        name: String,
        /// Elements its type asks for.
        expected: usize,
        /// Elements given.
        found: usize,
    },
    /// An op got the wrong number of operands.
    #[error("`{op}` takes {expected} operands, got {found}")]
    Operands {
        /// The op.
        op: &'static str,
        /// Operands expected.
        expected: usize,
        /// Operands found.
        found: usize,
    },
    /// An operand or the node's own type has the wrong rank.
    #[error("`{op}` expects rank {expected}, got dims {found:?}")]
    Rank {
        /// The op.
        op: &'static str,
        /// Rank expected.
        expected: usize,
        /// Dims found.
        found: Vec<usize>,
    },
    /// Dimensions do not agree.
    #[error("`{op}` expects dims {expected:?}, got {found:?}")]
    Shape {
        /// The op.
        op: &'static str,
        /// Dims expected.
        expected: Vec<usize>,
        /// Dims found.
        found: Vec<usize>,
    },
    /// A window (or stride) does not fit its input.
    #[error("`{op}` window {kernel:?} does not fit input {input:?}")]
    Window {
        /// The op.
        op: &'static str,
        /// Spatial input size.
        input: Vec<usize>,
        /// Kernel size (or the stride, for the shortcut).
        kernel: Vec<usize>,
    },
    /// A label is not a class index.
    #[error("label {label} is outside 0..{classes}")]
    LabelOutOfRange {
        /// The label.
        label: i64,
        /// Number of classes.
        classes: usize,
    },
    /// Bessel's correction needs at least two values per channel.
    #[error("an unbiased variance needs more than one value per channel, got {count}")]
    TooFewForVariance {
        /// Values per channel.
        count: usize,
    },
    /// An effect's state operand is not a `Param` node.
    #[error("operand {slot} of `{op}` must be a parameter")]
    NotAState {
        /// The effect.
        op: &'static str,
        /// The operand slot.
        slot: usize,
    },
}

/// Runs `graph` on `feeds`, reading parameters from `state` and writing effects back into it.
/// Returns every node's value.
///
/// # Errors
/// A [`ReferenceError`] when the graph has a cycle, a feed or state entry is missing or has
/// the wrong size, or an op's operands do not fit its definition.
pub fn run(graph: &Graph, feeds: &Feeds, state: &mut State) -> Result<Values, ReferenceError> {
    let order = graph.topological_order().ok_or(ReferenceError::Cycle)?;
    let mut values = Values::new();
    for id in order {
        let value = run_node(graph, id, feeds, state, &values)?;
        values.insert(id, value);
    }
    Ok(values)
}

/// The full dimensions of a value of type `ty` in a batch of `batch`.
pub fn full_dims(ty: &TensorType, batch: usize) -> Vec<usize> {
    let batch_dim = ty.batched.then_some(batch);
    batch_dim
        .into_iter()
        .chain(ty.dims.iter().copied())
        .collect()
}

/// Everything one node's computation reads.
struct NodeContext<'a> {
    graph: &'a Graph,
    id: NodeId,
    feeds: &'a Feeds,
    operand_ids: Vec<NodeId>,
    operand_dims: Vec<Vec<usize>>,
    out: Vec<usize>,
}

impl NodeContext<'_> {
    /// The name of the `Param` in operand `slot` (for effects).
    fn state_name(&self, op: &'static str, slot: usize) -> Result<String, ReferenceError> {
        let operand = self
            .operand_ids
            .get(slot)
            .map(|&id| &self.graph.node(id).op);
        match operand {
            Some(Op::Param { name, .. }) => Ok(name.clone()),
            _ => Err(ReferenceError::NotAState { op, slot }),
        }
    }
}

/// Computes one node and checks the result has the size of its type.
fn run_node(
    graph: &Graph,
    id: NodeId,
    feeds: &Feeds,
    state: &mut State,
    values: &Values,
) -> Result<Vec<f64>, ReferenceError> {
    let node = graph.node(id);
    let operand_ids = graph.inputs(id);
    let operand_dims = operand_ids
        .iter()
        .map(|&o| full_dims(&graph.node(o).ty, feeds.batch));
    let operand_dims: Vec<Vec<usize>> = operand_dims.collect();
    let out = full_dims(&node.ty, feeds.batch);
    let context = NodeContext {
        graph,
        id,
        feeds,
        operand_ids,
        operand_dims,
        out,
    };
    let operands: Vec<Tensor> = context
        .operand_ids
        .iter()
        .zip(&context.operand_dims)
        .map(|(operand, dims)| Tensor {
            dims,
            data: values.get(operand).map_or(&[], |v| v),
        })
        .collect();
    let value = compute(&node.op, &context, &operands, state)?;
    let expected: usize = context.out.iter().product();
    if value.len() != expected {
        let name = format!("{} (node {})", node.op.name(), id.index());
        return Err(ReferenceError::WrongLength {
            name,
            expected,
            found: value.len(),
        });
    }
    Ok(value)
}

/// Requires exactly `count` operands (or `count − 1` when `optional_last`).
fn arity(
    op: &'static str,
    operands: &[Tensor],
    count: usize,
    optional_last: bool,
) -> Result<(), ReferenceError> {
    let found = operands.len();
    if found == count || (optional_last && found + 1 == count) {
        Ok(())
    } else {
        Err(ReferenceError::Operands {
            op,
            expected: count,
            found,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Init, ParamRole};
    use grammar::Span;

    fn param(graph: &mut Graph, name: &str, role: ParamRole, dims: Vec<usize>) -> NodeId {
        let op = Op::Param {
            name: name.into(),
            role,
            init: Init::Constant(0.0),
        };
        graph.add(op, TensorType::fixed(dims), Span::default(), &[])
    }

    /// `w [2]`, its buffer, `lr`, `grad = 2·w`, `SgdUpdate(w, grad, buffer, lr)`, and a reader
    /// of `w` created after the update.
    fn sgd_graph() -> (Graph, NodeId, NodeId) {
        let mut graph = Graph::new();
        let weight = param(&mut graph, "w", ParamRole::Weight, vec![2]);
        let buffer = param(&mut graph, "w.momentum", ParamRole::MomentumBuffer, vec![2]);
        let lr_op = Op::Scalar { name: "lr".into() };
        let lr = graph.add(lr_op, TensorType::scalar(), Span::default(), &[]);
        let ty = TensorType::fixed(vec![2]);
        let grad = graph.add(
            Op::Scale { factor: 2.0 },
            ty.clone(),
            Span::default(),
            &[weight],
        );
        let update = Op::SgdUpdate {
            momentum: 0.5,
            weight_decay: 0.0,
            nesterov: false,
        };
        let update = graph.add(
            update,
            ty.clone(),
            Span::default(),
            &[weight, grad, buffer, lr],
        );
        let reader = graph.add(Op::Scale { factor: 1.0 }, ty, Span::default(), &[weight]);
        (graph, update, reader)
    }

    #[test]
    fn effects_write_state_and_every_reader_sees_the_step_start() {
        let (graph, update, reader) = sgd_graph();
        let mut state = State::from([
            ("w".into(), vec![1.0, -2.0]),
            ("w.momentum".into(), vec![1.0, 0.0]),
        ]);
        let mut feeds = Feeds::new(1, Mode::Train);
        feeds.scalars.insert("lr".into(), 0.5);
        let values = run(&graph, &feeds, &mut state).unwrap();
        // d = 2w = [2, -4]; buf = 0.5·[1, 0] + d = [2.5, -4]; w = w − 0.5·buf = [-0.25, 0].
        assert_eq!(state["w"], vec![-0.25, 0.0]);
        assert_eq!(state["w.momentum"], vec![2.5, -4.0]);
        assert_eq!(values[&update], vec![-0.25, 0.0]);
        assert_eq!(values[&reader], vec![1.0, -2.0]);
    }

    #[test]
    fn missing_or_misshapen_feeds_and_state_are_errors() {
        let (graph, _, _) = sgd_graph();
        let feeds = Feeds::new(1, Mode::Train);
        let mut state = State::from([
            ("w".into(), vec![1.0, 2.0]),
            ("w.momentum".into(), vec![0.0; 2]),
        ]);
        let missing = run(&graph, &feeds, &mut state.clone());
        assert_eq!(
            missing,
            Err(ReferenceError::MissingFeed {
                kind: "scalar",
                name: "lr".into()
            })
        );
        state.remove("w.momentum");
        let mut with_lr = feeds.clone();
        with_lr.scalars.insert("lr".into(), 0.1);
        let no_state = run(&graph, &with_lr, &mut state.clone());
        assert_eq!(
            no_state,
            Err(ReferenceError::MissingState {
                name: "w.momentum".into()
            })
        );
        state.insert("w.momentum".into(), vec![0.0; 3]);
        let wrong = run(&graph, &with_lr, &mut state);
        assert!(matches!(
            wrong,
            Err(ReferenceError::WrongLength {
                expected: 2,
                found: 3,
                ..
            })
        ));
    }

    #[test]
    fn batched_inputs_take_the_batch_size_and_modes_switch_dropout() {
        let mut graph = Graph::new();
        let ty = TensorType::batch(vec![3]);
        let x = graph.add(
            Op::Input { name: "x".into() },
            ty.clone(),
            Span::default(),
            &[],
        );
        let dropped = graph.add(Op::Dropout { p: 0.5 }, ty, Span::default(), &[x]);
        let mut feeds = Feeds::new(4, Mode::Eval);
        feeds.inputs.insert("x".into(), vec![1.0; 12]);
        let values = run(&graph, &feeds, &mut State::new()).unwrap();
        assert_eq!(values[&dropped], vec![1.0; 12]);
        feeds.mode = Mode::Train;
        let values = run(&graph, &feeds, &mut State::new()).unwrap();
        let site = dropped.index() as u32;
        for (index, value) in values[&dropped].iter().enumerate() {
            let kept = dropout::keep(0, site, index as u64, 0.5);
            assert_eq!(*value, if kept { 2.0 } else { 0.0 });
        }
        feeds.inputs.insert("x".into(), vec![1.0; 11]);
        assert!(matches!(
            run(&graph, &feeds, &mut State::new()),
            Err(ReferenceError::WrongLength { .. })
        ));
    }
}
