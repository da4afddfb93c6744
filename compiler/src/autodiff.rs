//! Autodiff: turns a typed forward graph into the training graph (forward in training mode,
//! loss, backward, SGD update) or the evaluation graph, each an ordinary [`Graph`].
//!
//! Needs: a typed forward graph with an output `logits` of type `f32[N,K]`, built from forward
//! ops only (`Mix` included, so phase-1 and phase-2 graphs both work).
//!
//! Promises ([`training_graph`]):
//! - forward node ids survive (the graph is a clone), except each `BatchNorm`, which is
//!   replaced by `BatchMean`, `BatchVar`, `BatchNormApply` and two `RunningUpdate` effects
//!   (mean with `unbiased: false`, variance with `unbiased: true`, the layer's momentum);
//! - feeds: every forward `Input`, `Labels { name: "labels" }` (`i32[N]`) and
//!   `Scalar { name: "lr" }`; the step's dropout seed is fed beside them (see
//!   [`crate::reference::dropout`]);
//! - outputs: the forward outputs (`logits`), then `loss` (softmax cross-entropy, mean over the
//!   batch) and `correct` (number of correct arg-max predictions);
//! - state: every forward `Param` plus one `<param>.momentum` buffer (role
//!   [`crate::ir::ParamRole::MomentumBuffer`], zero-initialised) per trained parameter;
//! - every trained parameter that reaches the loss gets one `SgdUpdate` effect
//!   `[param, grad, buffer, lr]`; a trained parameter that does not reach the loss gets none
//!   (as PyTorch skips parameters whose gradient is `None`);
//! - effects read their state at the step's start: a scheduler must run every other reader of a
//!   `Param` before the effect that updates it (the edges alone do not force this);
//! - a `DropoutGrad`'s `site` is the index of its forward `Dropout` node, which is the site
//!   that node's own mask uses;
//! - every node a rewrite creates inherits the span of the forward node it comes from.

mod backward;
mod expand;
mod optimizer;
mod rules;
#[cfg(test)]
mod tests;

use grammar::Span;
use thiserror::Error;

use crate::ir::{DType, Graph, NodeId, Op, TensorType};
pub use backward::{backward, Gradients};

/// Name of the logits output the loss is attached to.
pub const LOGITS: &str = "logits";
/// Name of the loss output.
pub const LOSS: &str = "loss";
/// Name of the correct-count output.
pub const CORRECT: &str = "correct";
/// Name under which the runtime feeds the labels.
pub const LABELS: &str = "labels";
/// Name under which the runtime feeds the learning rate.
pub const LEARNING_RATE: &str = "lr";
/// Suffix of a parameter's momentum buffer name (`<param>.momentum`).
pub const MOMENTUM_SUFFIX: &str = ".momentum";

/// SGD as PyTorch defines it: `d = g + weight_decay·p; buf = momentum·buf + d;
/// p −= lr·(nesterov ? d + momentum·buf : buf)`. The learning rate is fed at every step.
#[derive(Clone, Debug, PartialEq)]
pub struct SgdOptions {
    /// Momentum μ.
    pub momentum: f32,
    /// L2 weight decay, applied to every trained parameter (PyTorch's default grouping).
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
}

impl Default for SgdOptions {
    /// The paper's CIFAR recipe: momentum 0.9, weight decay 1e-4, no Nesterov.
    fn default() -> Self {
        SgdOptions {
            momentum: 0.9,
            weight_decay: 1e-4,
            nesterov: false,
        }
    }
}

/// Why a training or evaluation graph could not be built.
#[derive(Debug, Error, Clone, PartialEq, miette::Diagnostic)]
pub enum AutodiffError {
    /// The forward graph has no output of the required name.
    #[error("the forward graph has no output named `{name}`")]
    #[diagnostic(code(coopc::autodiff::missing_output))]
    MissingOutput {
        /// The missing output.
        name: &'static str,
    },
    /// The forward graph already names an output that autodiff adds.
    #[error("the forward graph already has an output named `{name}`")]
    #[diagnostic(code(coopc::autodiff::duplicate_output))]
    DuplicateOutput {
        /// The output.
        name: &'static str,
    },
    /// A parameter name autodiff would create is taken.
    #[error("a parameter named `{name}` already exists")]
    #[diagnostic(code(coopc::autodiff::duplicate_param))]
    DuplicateParam {
        /// The name.
        name: String,
    },
    /// The logits are not a batch of f32 vectors.
    #[error("the logits must have type f32[N,K], found {found:?}")]
    #[diagnostic(code(coopc::autodiff::logits_type))]
    LogitsType {
        /// Their type.
        found: TensorType,
        /// Where they are computed.
        #[label("these logits")]
        span: Span,
    },
    /// A node has the wrong number of operands for its op.
    #[error("`{op}` has {found} operands, expected {expected}")]
    #[diagnostic(code(coopc::autodiff::operands))]
    Operands {
        /// The op.
        op: &'static str,
        /// Operands expected.
        expected: usize,
        /// Operands found.
        found: usize,
        /// The node.
        #[label("here")]
        span: Span,
    },
    /// A `BatchNorm` running statistic is not a parameter, so it cannot be updated.
    #[error("the running statistics of a batchnorm must be parameters")]
    #[diagnostic(code(coopc::autodiff::running_statistic))]
    RunningStatisticNotParam {
        /// The BatchNorm node.
        #[label("this batchnorm")]
        span: Span,
    },
    /// A gradient reached an op that has no gradient rule (training-graph ops: second-order
    /// derivatives are not supported).
    #[error("`{op}` is not differentiable")]
    #[diagnostic(code(coopc::autodiff::not_differentiable))]
    NotDifferentiable {
        /// The op.
        op: &'static str,
        /// The node.
        #[label("a gradient reaches this")]
        span: Span,
    },
    /// A whole `BatchNorm` layer reached the backward pass; it must be expanded first.
    #[error("a batchnorm layer must be expanded into batch statistics before differentiation")]
    #[diagnostic(code(coopc::autodiff::unexpanded_batchnorm))]
    UnexpandedBatchNorm {
        /// The BatchNorm node.
        #[label("this batchnorm")]
        span: Span,
    },
    /// A `BatchNormApply` whose statistics are not its own input's batch statistics needs an
    /// input gradient, which has no op.
    #[error("the input gradient of a batchnorm with fixed statistics is not supported")]
    #[diagnostic(
        code(coopc::autodiff::fixed_statistics),
        help("train BatchNorm with batch statistics (the training graph does this)")
    )]
    FixedStatisticsInputGrad {
        /// The node.
        #[label("this batchnorm")]
        span: Span,
    },
    /// A gradient reached a batch statistic other than through its `BatchNormApply`.
    #[error("a gradient reaches `{op}` outside its batchnorm")]
    #[diagnostic(code(coopc::autodiff::statistic_gradient))]
    StatisticGradient {
        /// `batch_mean` or `batch_var`.
        op: &'static str,
        /// The node.
        #[label("used here")]
        span: Span,
    },
    /// The node differentiated from is not a softmax cross-entropy.
    #[error("the loss must be a softmax cross-entropy, found `{op}`")]
    #[diagnostic(code(coopc::autodiff::loss_op))]
    LossNotCrossEntropy {
        /// The op found.
        op: &'static str,
        /// The node.
        #[label("this node")]
        span: Span,
    },
    /// A softmax cross-entropy feeds another node on the way to the loss.
    #[error("a softmax cross-entropy may only be the loss itself")]
    #[diagnostic(code(coopc::autodiff::loss_not_at_root))]
    LossNotAtRoot {
        /// The node.
        #[label("this cross-entropy")]
        span: Span,
    },
    /// The graph has a cycle.
    #[error("the graph has a cycle")]
    #[diagnostic(code(coopc::autodiff::cycle))]
    Cycle,
}

/// The forward graph in training mode with its loss: BatchNorm expanded (with its
/// running-statistic effects), `labels` fed, `loss` and `correct` added. No backward pass.
///
/// This is the function the training graph differentiates; its `loss` output is what finite
/// differences perturb.
///
/// # Errors
/// [`AutodiffError`] when `logits` is missing or mistyped, or a BatchNorm is malformed.
pub fn loss_graph(forward: &Graph) -> Result<Graph, AutodiffError> {
    let mut graph = forward.clone();
    expand::batch_norm_for_training(&mut graph)?;
    add_loss(&mut graph)?;
    Ok(graph)
}

/// The training graph: [`loss_graph`], then the backward pass for every trained parameter,
/// then one SGD update per parameter. See the module docs for its structure.
///
/// # Errors
/// [`AutodiffError`] when the forward graph breaks the module's requirements.
pub fn training_graph(forward: &Graph, options: &SgdOptions) -> Result<Graph, AutodiffError> {
    let _span = tracing::info_span!("autodiff").entered();
    let mut graph = loss_graph(forward)?;
    let loss = graph
        .output(LOSS)
        .ok_or(AutodiffError::MissingOutput { name: LOSS })?;
    let trained = trained_params(&graph);
    let gradients = backward(&mut graph, loss, &trained)?;
    let updates = optimizer::add_sgd(&mut graph, &gradients, &trained, options)?;
    tracing::debug!(
        nodes = graph.len(),
        params = trained.len(),
        updates,
        "training graph"
    );
    Ok(graph)
}

/// The evaluation graph: BatchNorm uses its running statistics (`BatchNormApply` on the
/// running mean and variance), dropout is removed, and `labels`, `loss` and `correct` are
/// added as in training. No backward pass, no effects.
///
/// # Errors
/// [`AutodiffError`] when `logits` is missing or mistyped, or a BatchNorm is malformed.
pub fn eval_graph(forward: &Graph) -> Result<Graph, AutodiffError> {
    let mut graph = inference_graph(forward)?;
    add_loss(&mut graph)?;
    Ok(graph)
}

/// The inference graph: as [`eval_graph`] but without labels or loss; its outputs are the
/// forward graph's.
///
/// # Errors
/// [`AutodiffError`] when a BatchNorm is malformed.
pub fn inference_graph(forward: &Graph) -> Result<Graph, AutodiffError> {
    let mut graph = forward.clone();
    expand::batch_norm_for_eval(&mut graph)?;
    expand::remove_dropout(&mut graph)?;
    Ok(graph)
}

/// The trained parameters of `graph`, in creation order.
pub fn trained_params(graph: &Graph) -> Vec<NodeId> {
    let trained = |id: &NodeId| match &graph.node(*id).op {
        Op::Param { role, .. } => role.is_trained(),
        _ => false,
    };
    graph.params().into_iter().filter(trained).collect()
}

/// Adds `labels`, `loss = SoftmaxCrossEntropy(logits, labels)` and
/// `correct = CorrectCount(logits, labels)`, spanned like the logits.
fn add_loss(graph: &mut Graph) -> Result<(), AutodiffError> {
    let logits = graph
        .output(LOGITS)
        .ok_or(AutodiffError::MissingOutput { name: LOGITS })?;
    for name in [LOSS, CORRECT] {
        if graph.output(name).is_some() {
            return Err(AutodiffError::DuplicateOutput { name });
        }
    }
    let node = graph.node(logits);
    let span = node.span;
    let is_matrix = node.ty.dtype == DType::F32 && node.ty.batched && node.ty.dims.len() == 1;
    if !is_matrix {
        return Err(AutodiffError::LogitsType {
            found: node.ty.clone(),
            span,
        });
    }
    let labels_ty = TensorType {
        dtype: DType::I32,
        batched: true,
        dims: Vec::new(),
    };
    let labels = graph.add(
        Op::Labels {
            name: LABELS.into(),
        },
        labels_ty,
        span,
        &[],
    );
    let loss = graph.add(
        Op::SoftmaxCrossEntropy,
        TensorType::scalar(),
        span,
        &[logits, labels],
    );
    let correct = graph.add(
        Op::CorrectCount,
        TensorType::scalar(),
        span,
        &[logits, labels],
    );
    graph.add_output(LOSS, loss);
    graph.add_output(CORRECT, correct);
    Ok(())
}

/// The name of the momentum buffer of parameter `name`.
pub fn momentum_name(name: &str) -> String {
    format!("{name}{MOMENTUM_SUFFIX}")
}
