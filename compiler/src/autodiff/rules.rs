//! The gradient rules: one per op, in one exhaustive `match` with no catch-all arm, so a new op
//! does not compile until it has a rule or is marked non-differentiable here.
//!
//! A rule receives `dy = d loss / d y` for its node `y` and returns `(slot, d loss / d operand)`
//! for each operand slot that needs a gradient (and only those). Notation: `x` is operand 0,
//! `·` is element-wise, `Σ_c` sums to one value per channel.

use grammar::Span;

use super::AutodiffError;
use crate::ir::{Activation, Graph, NodeId, Op, TensorType};

/// What flows into a node from above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Upstream {
    /// The node is the loss itself: `d loss / d loss = 1`.
    Root,
    /// The node's accumulated gradient.
    Grad(NodeId),
}

/// `(operand slot, gradient node)` pairs a rule returns.
pub(super) type SlotGrads = Vec<(usize, NodeId)>;

/// The node a rule differentiates, and the graph it adds gradient nodes to.
pub(super) struct RuleContext<'a> {
    graph: &'a mut Graph,
    node: NodeId,
    operands: Vec<NodeId>,
    needs: &'a [bool],
    span: Span,
}

impl<'a> RuleContext<'a> {
    /// The context for node `node` with operands `operands`; `needs[i]` says whether node `i`
    /// needs a gradient.
    pub(super) fn new(
        graph: &'a mut Graph,
        node: NodeId,
        operands: Vec<NodeId>,
        needs: &'a [bool],
    ) -> Self {
        let span = graph.node(node).span;
        RuleContext {
            graph,
            node,
            operands,
            needs,
            span,
        }
    }

    /// The operand in `slot`.
    pub(super) fn operand(&self, slot: usize) -> NodeId {
        self.operands[slot]
    }

    /// True when operand `slot` exists and needs a gradient.
    fn needs(&self, slot: usize) -> bool {
        self.operands
            .get(slot)
            .is_some_and(|operand| self.needs[operand.index()])
    }

    /// The type of operand `slot`.
    fn ty(&self, slot: usize) -> TensorType {
        self.graph.node(self.operands[slot]).ty.clone()
    }

    /// Adds a gradient node, spanned like the node being differentiated.
    fn add(&mut self, op: Op, ty: TensorType, inputs: &[NodeId]) -> NodeId {
        self.graph.add(op, ty, self.span, inputs)
    }

    /// Requires `expected` operands (or also `expected − 1` when `optional_last`).
    fn arity(&self, op: &Op, expected: usize, optional_last: bool) -> Result<(), AutodiffError> {
        let found = self.operands.len();
        if found == expected || (optional_last && found + 1 == expected) {
            return Ok(());
        }
        let (op, span) = (op.name(), self.span);
        Err(AutodiffError::Operands {
            op,
            expected,
            found,
            span,
        })
    }

    /// The op of operand `slot`.
    fn operand_op(&self, slot: usize) -> &Op {
        &self.graph.node(self.operands[slot]).op
    }
}

/// The gradients of `op`'s operands, given what flows into it.
pub(super) fn rule(
    op: &Op,
    ctx: &mut RuleContext,
    upstream: Upstream,
) -> Result<SlotGrads, AutodiffError> {
    let span = ctx.span;
    let dy = match upstream {
        Upstream::Grad(dy) => dy,
        Upstream::Root if matches!(op, Op::SoftmaxCrossEntropy) => {
            return softmax_cross_entropy(op, ctx);
        }
        Upstream::Root => {
            return Err(AutodiffError::LossNotCrossEntropy {
                op: op.name(),
                span,
            })
        }
    };
    let not_differentiable = Err(AutodiffError::NotDifferentiable {
        op: op.name(),
        span,
    });
    match op {
        // Leaves: gradients end here; the driver collects those of requested nodes.
        Op::Input { .. } | Op::Labels { .. } | Op::Scalar { .. } | Op::Param { .. } => {
            Ok(Vec::new())
        }
        Op::Conv2d {
            stride,
            padding,
            bias,
        } => {
            ctx.arity(op, 2 + usize::from(*bias), false)?;
            Ok(conv2d(ctx, dy, *stride, *padding))
        }
        Op::Dense { bias } => {
            ctx.arity(op, 2 + usize::from(*bias), false)?;
            Ok(dense(ctx, dy))
        }
        Op::BatchNorm { .. } => Err(AutodiffError::UnexpandedBatchNorm { span }),
        Op::Activation(act) => {
            let with_slope = matches!(act, Activation::Prelu);
            ctx.arity(op, 1 + usize::from(with_slope), false)?;
            Ok(activation(ctx, act, dy))
        }
        Op::Mix { weights } => {
            ctx.arity(op, weights.len(), false)?;
            Ok(mix(ctx, weights, dy))
        }
        // y = Σᵢ xᵢ  ⇒  dxᵢ = dy for every operand (twice for an operand used twice).
        Op::Add => Ok((0..ctx.operands.len())
            .filter(|&s| ctx.needs(s))
            .map(|s| (s, dy))
            .collect()),
        Op::MaxPool {
            kernel,
            stride,
            padding,
        } => {
            ctx.arity(op, 1, false)?;
            // dx = dy routed to each window's first maximum.
            let grad = Op::MaxPoolGrad {
                kernel: *kernel,
                stride: *stride,
                padding: *padding,
            };
            Ok(unary(ctx, grad, &[dy, ctx.operand(0)]))
        }
        Op::AvgPool {
            kernel,
            stride,
            padding,
        } => {
            ctx.arity(op, 1, false)?;
            // dx = Σ over the windows covering x of dy/(kh·kw).
            let grad = Op::AvgPoolGrad {
                kernel: *kernel,
                stride: *stride,
                padding: *padding,
            };
            Ok(unary(ctx, grad, &[dy]))
        }
        Op::GlobalAvgPool => {
            ctx.arity(op, 1, false)?;
            // y[n,c] = mean_{h,w} x[n,c,h,w]  ⇒  dx[n,c,h,w] = dy[n,c]/(H·W).
            Ok(unary(ctx, Op::GlobalAvgPoolGrad, &[dy]))
        }
        // y = x reshaped  ⇒  dx = dy reshaped back (no data movement).
        Op::Flatten | Op::Reshape => {
            ctx.arity(op, 1, false)?;
            Ok(unary(ctx, Op::Reshape, &[dy]))
        }
        Op::Dropout { p } => {
            ctx.arity(op, 1, false)?;
            // y = x·m/(1−p)  ⇒  dx = dy·m/(1−p), the same mask m (same site).
            let site = ctx.node.index() as u32;
            Ok(unary(
                ctx,
                Op::DropoutGrad { p: *p, site },
                &[dy, ctx.operand(0)],
            ))
        }
        Op::ShortcutA {
            stride,
            pad_channels,
        } => {
            ctx.arity(op, 1, false)?;
            // y[n,c+pad,h,w] = x[n,c,h·s,w·s]  ⇒  dx[n,c,h·s,w·s] = dy[n,c+pad,h,w], else 0.
            let grad = Op::ShortcutAGrad {
                stride: *stride,
                pad_channels: *pad_channels,
            };
            Ok(unary(ctx, grad, &[dy]))
        }
        // The cross-entropy has no upstream: it is only differentiable as the loss itself.
        Op::SoftmaxCrossEntropy => Err(AutodiffError::LossNotAtRoot { span }),
        // Batch statistics are differentiated jointly by their BatchNormApply's rule.
        Op::BatchMean | Op::BatchVar => Err(AutodiffError::StatisticGradient {
            op: op.name(),
            span,
        }),
        Op::BatchNormApply { eps } => {
            ctx.arity(op, 5, false)?;
            batch_norm_apply(ctx, *eps, dy)
        }
        // y = factor·x  ⇒  dx = factor·dy.
        Op::Scale { factor } => {
            ctx.arity(op, 1, false)?;
            Ok(unary(ctx, Op::Scale { factor: *factor }, &[dy]))
        }
        // Piecewise constant: its derivative is zero almost everywhere and it is never a loss.
        Op::CorrectCount => not_differentiable,
        // Effects update state; they are not part of the function being differentiated.
        Op::RunningUpdate { .. } | Op::SgdUpdate { .. } => not_differentiable,
        // Gradient ops: second-order derivatives are not supported.
        Op::ChannelSum
        | Op::BatchNormScaleGrad { .. }
        | Op::BatchNormInputGrad { .. }
        | Op::Conv2dInputGrad { .. }
        | Op::Conv2dWeightGrad { .. }
        | Op::DenseInputGrad
        | Op::DenseWeightGrad
        | Op::ActivationGrad(_)
        | Op::PreluSlopeGrad
        | Op::MaxPoolGrad { .. }
        | Op::AvgPoolGrad { .. }
        | Op::GlobalAvgPoolGrad
        | Op::DropoutGrad { .. }
        | Op::ShortcutAGrad { .. }
        | Op::SoftmaxCrossEntropyGrad => not_differentiable,
    }
}

/// A rule whose only operand gradient is `grad(inputs)`, typed like operand 0.
fn unary(ctx: &mut RuleContext, grad: Op, inputs: &[NodeId]) -> SlotGrads {
    if !ctx.needs(0) {
        return Vec::new();
    }
    let ty = ctx.ty(0);
    vec![(0, ctx.add(grad, ty, inputs))]
}

/// `loss = (1/N)·Σₙ −log softmax(logits[n])[labels[n]]`
/// ⇒ `dlogits = (softmax(logits) − onehot(labels))/N`; labels get no gradient.
fn softmax_cross_entropy(op: &Op, ctx: &mut RuleContext) -> Result<SlotGrads, AutodiffError> {
    ctx.arity(op, 2, false)?;
    let (logits, labels) = (ctx.operand(0), ctx.operand(1));
    Ok(unary(ctx, Op::SoftmaxCrossEntropyGrad, &[logits, labels]))
}

/// `y[n,o,i,j] = b[o] + Σ_{c,u,v} x[n,c,i·s−p+u,j·s−p+v]·w[o,c,u,v]`
/// ⇒ `dx = Conv2dInputGrad(dy, w)` (the transposed convolution),
///   `dw[o,c,u,v] = Σ_{n,i,j} dy[n,o,i,j]·x[n,c,i·s−p+u,j·s−p+v]`, `db[o] = Σ_{n,i,j} dy`.
fn conv2d(ctx: &mut RuleContext, dy: NodeId, stride: [usize; 2], padding: [usize; 2]) -> SlotGrads {
    let (x, weight) = (ctx.operand(0), ctx.operand(1));
    let mut grads = Vec::new();
    if ctx.needs(0) {
        let ty = ctx.ty(0);
        grads.push((
            0,
            ctx.add(Op::Conv2dInputGrad { stride, padding }, ty, &[dy, weight]),
        ));
    }
    if ctx.needs(1) {
        let ty = ctx.ty(1);
        grads.push((
            1,
            ctx.add(Op::Conv2dWeightGrad { stride, padding }, ty, &[dy, x]),
        ));
    }
    if ctx.needs(2) {
        let ty = ctx.ty(2);
        grads.push((2, ctx.add(Op::ChannelSum, ty, &[dy])));
    }
    grads
}

/// `y = x·Wᵀ + b`  ⇒  `dx = dy·W`, `dW = dyᵀ·x`, `db = Σₙ dy[n]`.
fn dense(ctx: &mut RuleContext, dy: NodeId) -> SlotGrads {
    let (x, weight) = (ctx.operand(0), ctx.operand(1));
    let mut grads = Vec::new();
    if ctx.needs(0) {
        let ty = ctx.ty(0);
        grads.push((0, ctx.add(Op::DenseInputGrad, ty, &[dy, weight])));
    }
    if ctx.needs(1) {
        let ty = ctx.ty(1);
        grads.push((1, ctx.add(Op::DenseWeightGrad, ty, &[dy, x])));
    }
    if ctx.needs(2) {
        let ty = ctx.ty(2);
        grads.push((2, ctx.add(Op::ChannelSum, ty, &[dy])));
    }
    grads
}

/// `y = F(x)`  ⇒  `dx = dy·F'(x)` (`ActivationGrad`; identity passes `dy` through).
/// PReLU `y = x if x > 0 else a·x`  ⇒  `da = Σ_{x ≤ 0} dy·x`, summed to a's shape.
fn activation(ctx: &mut RuleContext, act: &Activation, dy: NodeId) -> SlotGrads {
    let x = ctx.operand(0);
    let mut grads = Vec::new();
    if ctx.needs(0) {
        let grad = match act {
            Activation::Identity => dy,
            Activation::Prelu => {
                let (ty, slope) = (ctx.ty(0), ctx.operand(1));
                ctx.add(Op::ActivationGrad(act.clone()), ty, &[dy, x, slope])
            }
            Activation::Relu
            | Activation::Elu { .. }
            | Activation::Softplus { .. }
            | Activation::LeakyRelu { .. } => {
                let ty = ctx.ty(0);
                ctx.add(Op::ActivationGrad(act.clone()), ty, &[dy, x])
            }
        };
        grads.push((0, grad));
    }
    if ctx.needs(1) {
        let ty = ctx.ty(1);
        grads.push((1, ctx.add(Op::PreluSlopeGrad, ty, &[dy, x])));
    }
    grads
}

/// `y = Σᵢ βᵢ·aᵢ`  ⇒  `daᵢ = βᵢ·dy`; each activation's own rule then carries it to the shared
/// input, so `dx = Σᵢ βᵢ·Fᵢ'(x)·dy`, the β-weighted sum of the activation gradients.
fn mix(ctx: &mut RuleContext, weights: &[f32], dy: NodeId) -> SlotGrads {
    let mut grads = Vec::new();
    for (slot, &weight) in weights.iter().enumerate() {
        if ctx.needs(slot) {
            let ty = ctx.ty(slot);
            grads.push((slot, ctx.add(Op::Scale { factor: weight }, ty, &[dy])));
        }
    }
    grads
}

/// `y = γ·x̂ + β`, `x̂ = (x − μ)/sqrt(σ² + eps)`
/// ⇒ `dβ = Σ_c dy`, `dγ = Σ_c dy·x̂`, and when `μ = BatchMean(x)` and `σ² = BatchVar(x, μ)`
///   (training mode, statistics differentiated too)
///   `dx = γ/sqrt(σ² + eps)/M · (M·dy − dβ − x̂·dγ)`, `M = N·H·W` (`BatchNormInputGrad`).
fn batch_norm_apply(
    ctx: &mut RuleContext,
    eps: f32,
    dy: NodeId,
) -> Result<SlotGrads, AutodiffError> {
    let [x, mean, var, scale, _] = [0, 1, 2, 3, 4].map(|slot| ctx.operand(slot));
    let batch_statistics = matches!(ctx.operand_op(1), Op::BatchMean)
        && ctx.graph.inputs(mean) == [x]
        && matches!(ctx.operand_op(2), Op::BatchVar)
        && ctx.graph.inputs(var) == [x, mean];
    if !batch_statistics && (ctx.needs(0) || ctx.needs(1) || ctx.needs(2)) {
        return Err(AutodiffError::FixedStatisticsInputGrad { span: ctx.span });
    }
    let mut grads = Vec::new();
    let needs_input = ctx.needs(0);
    let dshift = (needs_input || ctx.needs(4)).then(|| {
        let ty = ctx.ty(4);
        ctx.add(Op::ChannelSum, ty, &[dy])
    });
    let dscale = (needs_input || ctx.needs(3)).then(|| {
        let ty = ctx.ty(3);
        ctx.add(Op::BatchNormScaleGrad { eps }, ty, &[dy, x, mean, var])
    });
    if let (true, Some(dscale), Some(dshift)) = (needs_input, dscale, dshift) {
        let ty = ctx.ty(0);
        let operands = [dy, x, mean, var, scale, dscale, dshift];
        grads.push((0, ctx.add(Op::BatchNormInputGrad { eps }, ty, &operands)));
    }
    if let (true, Some(dscale)) = (ctx.needs(3), dscale) {
        grads.push((3, dscale));
    }
    if let (true, Some(dshift)) = (ctx.needs(4), dshift) {
        grads.push((4, dshift));
    }
    Ok(grads)
}
