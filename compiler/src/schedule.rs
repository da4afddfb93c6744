//! The `schedule` pass: turns a training or evaluation graph into kernels (fusion groups), a
//! deterministic kernel order, and a buffer plan.
//!
//! Needs: a typed graph without cycles (forward ops, or a training graph from autodiff).
//! Promises: every live node (one an output or an effect depends on) that is neither a leaf nor
//! a view is computed by exactly one kernel (a split reduction by its pair of kernels);
//! kernels are listed in an order that respects data dependencies and runs each effect after
//! every read of the state it overwrites; every value a kernel argument names has a slot in
//! [`BufferPlan`], and arena slots with intersecting lifetimes do not overlap. The input graph
//! is not modified; the schedule keeps a rewritten copy ([`Schedule::graph`]) with the same
//! node ids.
//!
//! Steps, in order: [`rewrite`] (memory-saving operand changes), liveness, fusion (groups),
//! [`kernel`] (arguments; reductions of 4-D tensors split into a batch-split partial-sums
//! kernel and a finish kernel), kernel order, [`buffers`] (the plan).

pub mod buffers;
pub mod classify;
mod fuse;
pub mod kernel;
mod order;
pub mod print;
pub mod rewrite;

use grammar::Span;
use tracing::debug;

use crate::ir::{Graph, NodeId, Op};

pub use buffers::{BufferPlan, Slot};
pub use classify::{broadcast_of, class_of, Broadcast, OpClass};
pub use kernel::{Access, Kernel, KernelArg, KernelKind, Value};

use fuse::LiveGraph;

/// The result of scheduling one graph.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The graph the kernels compute: the input graph after the memory-saving rewrites of
    /// [`rewrite`] (node ids are those of the input graph).
    pub graph: Graph,
    /// The kernels, in the order they run.
    pub kernels: Vec<Kernel>,
    /// Where every value lives.
    pub plan: BufferPlan,
    /// Types of the temporaries kernels pass to each other ([`Value::Temporary`]).
    pub temporaries: Vec<crate::ir::TensorType>,
    /// Counts for logs and tests.
    pub stats: ScheduleStats,
}

/// What scheduling did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScheduleStats {
    /// Live nodes computed by kernels.
    pub computed_nodes: usize,
    /// Kernels in the schedule.
    pub kernels: usize,
    /// Kernels that compute more than one node.
    pub fused_kernels: usize,
    /// Nodes dropped because no output or effect needs them.
    pub dead_nodes: usize,
    /// What the rewrites before fusion changed.
    pub rewrites: rewrite::RewriteStats,
}

/// Why a graph could not be scheduled (a bug in an earlier pass, never user input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum ScheduleError {
    /// The graph has a cycle.
    #[error("internal error: the graph to schedule has a cycle")]
    #[diagnostic(help("this is a bug in an earlier pass; please report it"))]
    CycleInGraph,
    /// The kernels cannot be ordered: an effect's state is read after the effect.
    #[error("internal error: kernel dependencies form a cycle around `{op}`")]
    #[diagnostic(help("this is a bug in fusion or in the training graph; please report it"))]
    KernelCycle {
        /// An op of one kernel on the cycle.
        op: &'static str,
        /// Where that op came from.
        #[label("this op's kernel is on the cycle")]
        span: Span,
    },
    /// A whole-layer BatchNorm in a training graph (autodiff expands it into statistics and
    /// an apply; only evaluation graphs keep it).
    #[error("internal error: a whole-layer BatchNorm reached the scheduler in training mode")]
    #[diagnostic(help("training graphs must come from autodiff; please report it"))]
    TrainingBatchNorm {
        /// Where the BatchNorm came from.
        #[label("this BatchNorm")]
        span: Span,
    },
    /// The graph has no output and no effect, so nothing would run.
    #[error("internal error: the graph has no output and no effect")]
    NothingToRun,
}

/// Whether a graph runs for training or evaluation: decides the meaning of `Dropout` (masked
/// in training, the identity in evaluation) and of a whole-layer `BatchNorm` (only evaluation,
/// with running statistics, is schedulable; training graphs expand it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GraphMode {
    /// Training.
    Train,
    /// Evaluation.
    Eval,
}

/// Schedules `graph` with an arena planned for batches of up to `max_batch` items.
///
/// # Errors
///
/// [`ScheduleError`] when the graph (or the kernels made from it) cannot be ordered, or holds a
/// whole-layer `BatchNorm` in training mode.
pub fn schedule(
    graph: &Graph,
    max_batch: usize,
    mode: GraphMode,
) -> Result<Schedule, ScheduleError> {
    let _span = tracing::info_span!("schedule").entered();
    let mut rewritten = graph.clone();
    let rewrites = rewrite::run(&mut rewritten);
    let graph = &rewritten;
    let topological = graph
        .topological_order()
        .ok_or(ScheduleError::CycleInGraph)?;
    let live = LiveGraph::new(graph, &topological);
    if live.order.is_empty() {
        return Err(ScheduleError::NothingToRun);
    }
    if mode == GraphMode::Train {
        let batchnorm = live
            .order
            .iter()
            .find(|&&id| matches!(live.op(id), Op::BatchNorm { .. }));
        if let Some(&id) = batchnorm {
            return Err(ScheduleError::TrainingBatchNorm {
                span: graph.node(id).span,
            });
        }
    }

    // Fusion groups, then one kernel per group plus copies for outputs that need them.
    let groups = fuse::fuse(&live);
    let output_nodes: Vec<NodeId> = graph.outputs().iter().map(|(_, id)| *id).collect();
    let mut temporaries = Vec::new();
    let mut kernels: Vec<kernel::Kernel> = groups
        .iter()
        .map(|group| kernel::kernel_for_group(&live, group, &output_nodes, mode))
        .flat_map(|kernel| kernel::split_reduction(&live, kernel, &mut temporaries))
        .collect::<Vec<_>>()
        .into_iter()
        .flat_map(|kernel| kernel::split_batchnorm_coefficients(&live, kernel, &mut temporaries))
        .collect();
    kernels.extend(output_copies(&live));

    // Run order, then storage.
    let order = order::kernel_order(&live, &kernels).ok_or_else(|| cycle_error(&live, &kernels))?;
    let mut ordered: Vec<Kernel> = Vec::with_capacity(kernels.len());
    for index in order {
        ordered.push(kernels[index].clone());
    }
    let plan = buffers::plan_buffers(&live, &ordered, &temporaries, max_batch);

    let stats = ScheduleStats {
        computed_nodes: ordered
            .iter()
            .filter(|kernel| {
                !matches!(kernel.kind, KernelKind::Partials | KernelKind::Coefficients)
            })
            .map(|kernel| kernel.nodes.len())
            .sum(),
        kernels: ordered.len(),
        fused_kernels: ordered
            .iter()
            .filter(|kernel| kernel.nodes.len() > 1)
            .count(),
        dead_nodes: graph.len() - live.order.len(),
        rewrites,
    };
    debug!(?stats, arena_bytes = plan.arena_bytes, "scheduled");
    drop(live);
    Ok(Schedule {
        graph: rewritten,
        kernels: ordered,
        plan,
        temporaries,
        stats,
    })
}

/// Copy kernels for outputs that cannot be their node's own slot.
fn output_copies(live: &LiveGraph) -> Vec<Kernel> {
    let names = buffers::output_slot_names(live);
    let mut copies = Vec::new();
    for (index, (name, id)) in live.graph.outputs().iter().enumerate() {
        if names.get(id) != Some(name) {
            copies.push(kernel::copy_kernel(*id, index));
        }
    }
    copies
}

fn cycle_error(live: &LiveGraph, kernels: &[Kernel]) -> ScheduleError {
    let node = kernels
        .iter()
        .find_map(|kernel| kernel.nodes.first())
        .map(|&id| live.graph.node(id));
    match node {
        Some(node) => ScheduleError::KernelCycle {
            op: node.op.name(),
            span: node.span,
        },
        None => ScheduleError::CycleInGraph,
    }
}
