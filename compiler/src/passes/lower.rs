//! Pass `lower`: phase 2 of cooperative initialization, every mix becomes one activation; and
//! the `wnla` rewrite of the "without non-linear activation" ablation.
//!
//! `lower` needs a typed IR that verifies, in which every `Op::Mix` mixes activations of one
//! common input `x` (what `coop` makes). It promises: with a target activation `γ`, every
//! mix `Σ βᵢ·Fᵢ(x)` is replaced by one node `γ(x)` that takes over the mix's users, outputs,
//! layer name (the site) and span; the members go when nothing else uses them, and so does
//! every parameter left without a use (the members' PReLU slopes), each reported in
//! [`PassStats::params_removed`]. For `γ = PReLU` the slope of the mix's PReLU member is kept
//! (so what phase 1 learnt crosses into phase 2 under the same name); a mix without a PReLU
//! member gets a new slope `<site>.prelu.slope`. With [`Target::Keep`] (the Mixture ablation)
//! the graph is left as it is. Node ids of everything but the mixes, their members and the
//! removed parameters survive. Applied to the output of `coop` on a plain-ReLU model, `lower`
//! to ReLU gives back that model's graph exactly (same ops, names, shapes, printed text).
//!
//! `wnla` needs a typed, verified IR and rewrites every activation and every mix to the
//! identity on its input `x` (same site name and span), removing parameters left unused.

use super::coop::site_name;
use super::{remove_unused_params, PassError, PassStats};
use crate::ir::{Activation, Graph, GraphBuilder, NodeId, Op};

/// What every mix becomes in phase 2.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// One activation (ReLU by default).
    Activation(Activation),
    /// Keep the mixes (the Mixture ablation: never lowered).
    Keep,
}

impl Target {
    /// `relu`, `prelu`, `elu`, `softplus`, `leaky_relu`, `identity`, or `keep`.
    pub fn from_name(name: &str) -> Option<Target> {
        if name == "keep" {
            return Some(Target::Keep);
        }
        Activation::from_name(name).map(Target::Activation)
    }
}

/// Settings of the `lower` pass.
#[derive(Clone, Debug, PartialEq)]
pub struct LowerOptions {
    /// What each mix becomes.
    pub target: Target,
    /// For a PReLU target created fresh (no PReLU member to take the slope from): one slope per
    /// channel instead of one shared slope.
    pub prelu_per_channel: bool,
}

impl Default for LowerOptions {
    fn default() -> Self {
        LowerOptions {
            target: Target::Activation(Activation::Relu),
            prelu_per_channel: false,
        }
    }
}

/// Runs `lower`. See the module documentation for the contract.
///
/// # Errors
/// [`PassError::MalformedMix`] for a mix that is not of activations of one input;
/// [`PassError::Rewrite`] when the target cannot be built there.
pub fn run(graph: &mut Graph, options: &LowerOptions) -> Result<PassStats, PassError> {
    let _span = tracing::info_span!("lower").entered();
    let mut rewriter = Rewriter::new(graph, "lower", options.prelu_per_channel);
    if let Target::Activation(target) = &options.target {
        for mix in nodes_where(rewriter.builder.graph(), |op| matches!(op, Op::Mix { .. })) {
            rewriter.lower_mix(mix, target)?;
        }
    }
    let stats = rewriter.finish();
    tracing::debug!(?stats, "lower done");
    Ok(stats)
}

/// Runs `wnla`: every activation and mix becomes the identity.
///
/// # Errors
/// As [`run`].
pub fn wnla(graph: &mut Graph) -> Result<PassStats, PassError> {
    let _span = tracing::info_span!("wnla").entered();
    let mut rewriter = Rewriter::new(graph, "wnla", false);
    // Mixes first, so their members go with them instead of being rewritten one by one.
    for mix in nodes_where(rewriter.builder.graph(), |op| matches!(op, Op::Mix { .. })) {
        let x = common_input(rewriter.builder.graph(), mix, "wnla")?;
        rewriter.replace_site(mix, x, &Activation::Identity, None)?;
    }
    let is_nonlinear = |op: &Op| op.is_activation() && !is_identity(op);
    for site in nodes_where(rewriter.builder.graph(), is_nonlinear) {
        let x = first_input(rewriter.builder.graph(), site, "wnla")?;
        rewriter.replace_site(site, x, &Activation::Identity, None)?;
    }
    Ok(rewriter.finish())
}

fn nodes_where(graph: &Graph, predicate: impl Fn(&Op) -> bool) -> Vec<NodeId> {
    graph
        .node_ids()
        .into_iter()
        .filter(|&id| predicate(&graph.node(id).op))
        .collect()
}

fn is_identity(op: &Op) -> bool {
    matches!(op, Op::Activation(Activation::Identity))
}

/// One run of `lower` or `wnla` over a graph.
struct Rewriter<'g> {
    builder: GraphBuilder<'g>,
    pass: &'static str,
    per_channel: bool,
    stats: PassStats,
}

impl<'g> Rewriter<'g> {
    fn new(graph: &'g mut Graph, pass: &'static str, per_channel: bool) -> Self {
        let stats = PassStats {
            pass,
            ..PassStats::default()
        };
        Rewriter {
            builder: GraphBuilder::new(graph),
            pass,
            per_channel,
            stats,
        }
    }

    // Σ βᵢ·Fᵢ(x) => γ(x)
    fn lower_mix(&mut self, mix: NodeId, target: &Activation) -> Result<(), PassError> {
        let graph = self.builder.graph();
        let x = common_input(graph, mix, self.pass)?;
        let slope = if *target == Activation::Prelu {
            prelu_member_slope(graph, mix)
        } else {
            None
        };
        self.replace_site(mix, x, target, slope).map(drop)
    }

    /// Replaces `site` (an activation or a mix) by `activation(x)`, removing what only it used.
    fn replace_site(
        &mut self,
        site: NodeId,
        x: NodeId,
        activation: &Activation,
        slope: Option<NodeId>,
    ) -> Result<NodeId, PassError> {
        let (pass, span) = (self.pass, self.builder.graph().node(site).span);
        let rewrite = |error| PassError::Rewrite {
            pass,
            error: Box::new(error),
            span,
        };
        let name = site_name(self.builder.graph(), site);
        let members = self.builder.graph().inputs(site);
        let before = self.builder.graph().len();

        let replacement = match (activation, slope) {
            (Activation::Prelu, Some(slope)) => {
                self.builder
                    .apply(Op::Activation(Activation::Prelu), &[x, slope], &name, span)
            }
            (Activation::Prelu, None) => {
                let slope_name = format!("{name}.prelu.slope");
                self.stats.params_added.push(slope_name.clone());
                self.builder
                    .prelu(x, &slope_name, self.per_channel, &name, span)
            }
            _ => self.builder.activation(x, activation, &name, span),
        }
        .map_err(rewrite)?;

        let graph = self.builder.graph_mut();
        self.stats.nodes_added += graph.len() - before;
        graph.replace_all_uses(site, replacement);
        graph.remove(site);
        self.stats.nodes_removed += 1;
        for member in members {
            let is_member = member != x && graph.node(member).op.is_activation();
            if is_member && graph.users(member).is_empty() && !is_output(graph, member) {
                graph.remove(member);
                self.stats.nodes_removed += 1;
            }
        }
        self.stats.rewritten += 1;
        tracing::trace!(site = %name, to = activation.name(), "site rewritten");
        Ok(replacement)
    }

    /// Removes the parameters left without a use and returns the statistics.
    fn finish(mut self) -> PassStats {
        let removed = remove_unused_params(self.builder.graph_mut());
        self.stats.nodes_removed += removed.len();
        self.stats.params_removed = removed;
        self.stats
    }
}

fn is_output(graph: &Graph, id: NodeId) -> bool {
    graph.outputs().iter().any(|(_, output)| *output == id)
}

fn first_input(graph: &Graph, site: NodeId, pass: &'static str) -> Result<NodeId, PassError> {
    let span = graph.node(site).span;
    graph
        .inputs(site)
        .first()
        .copied()
        .ok_or(PassError::MalformedMix { pass, span })
}

/// The `x` that every member of the mix is applied to.
fn common_input(graph: &Graph, mix: NodeId, pass: &'static str) -> Result<NodeId, PassError> {
    let span = graph.node(mix).span;
    let malformed = PassError::MalformedMix { pass, span };
    let mut common = None;
    for member in graph.inputs(mix) {
        if !graph.node(member).op.is_activation() {
            return Err(malformed);
        }
        let input = graph.inputs(member).first().copied();
        match (common, input) {
            (_, None) => return Err(malformed),
            (None, Some(input)) => common = Some(input),
            (Some(expected), Some(input)) if expected != input => return Err(malformed),
            _ => {}
        }
    }
    common.ok_or(malformed)
}

/// The slope parameter of the mix's PReLU member, if it has one.
fn prelu_member_slope(graph: &Graph, mix: NodeId) -> Option<NodeId> {
    graph.inputs(mix).into_iter().find_map(|member| {
        let is_prelu = graph.node(member).op == Op::Activation(Activation::Prelu);
        is_prelu
            .then(|| graph.inputs(member).get(1).copied())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::builder::BatchNormSpec;
    use crate::ir::print::print_graph;
    use crate::ir::verify::verify;
    use crate::passes::coop::{self, CoopOptions};
    use grammar::Span;

    fn relu_model() -> Graph {
        let mut graph = Graph::new();
        let mut builder = GraphBuilder::new(&mut graph);
        let x = builder.input("x", vec![8, 4, 4], Span::default()).unwrap();
        let bn = builder
            .batchnorm(x, &BatchNormSpec::default(), "bn1", Span::new(1, 2))
            .unwrap();
        let act = builder
            .activation(bn, &Activation::Relu, "relu1", Span::new(3, 4))
            .unwrap();
        let sum = builder.add(&[act, x], Span::new(5, 6)).unwrap();
        let act = builder
            .activation(sum, &Activation::Relu, "relu2", Span::new(7, 8))
            .unwrap();
        builder.output("y", act);
        graph
    }

    #[test]
    fn lower_after_coop_gives_plain_relu_graph() {
        let baseline = relu_model();
        let mut graph = relu_model();
        coop::run(&mut graph, &CoopOptions::default()).unwrap();
        assert_ne!(print_graph(&graph), print_graph(&baseline));
        let stats = run(&mut graph, &LowerOptions::default()).unwrap();
        assert_eq!(verify(&graph), Ok(()));
        assert_eq!(print_graph(&graph), print_graph(&baseline));
        assert_eq!(stats.rewritten, 2);
        assert_eq!(
            stats.params_removed,
            ["relu1.mix.prelu.slope", "relu2.mix.prelu.slope"]
        );
    }

    #[test]
    fn lowering_to_prelu_keeps_the_phase_one_slope() {
        let mut graph = relu_model();
        coop::run(&mut graph, &CoopOptions::default()).unwrap();
        let slope_before = graph.param("relu1.mix.prelu.slope").unwrap();
        let target = Target::Activation(Activation::Prelu);
        let stats = run(
            &mut graph,
            &LowerOptions {
                target,
                prelu_per_channel: false,
            },
        )
        .unwrap();
        assert_eq!(verify(&graph), Ok(()));
        assert!(stats.params_removed.is_empty());
        assert_eq!(graph.param("relu1.mix.prelu.slope"), Some(slope_before));
        assert_eq!(graph.params().len(), 6, "bn1's four and two slopes");
    }

    #[test]
    fn a_mix_without_prelu_lowered_to_prelu_gets_a_fresh_slope() {
        let mut graph = relu_model();
        let options = CoopOptions {
            activations: vec![Activation::Relu],
            ..CoopOptions::default()
        };
        coop::run(&mut graph, &options).unwrap();
        let target = Target::Activation(Activation::Prelu);
        let stats = run(
            &mut graph,
            &LowerOptions {
                target,
                prelu_per_channel: false,
            },
        )
        .unwrap();
        assert_eq!(
            stats.params_added,
            ["relu1.prelu.slope", "relu2.prelu.slope"]
        );
        assert_eq!(verify(&graph), Ok(()));
    }

    #[test]
    fn keep_leaves_the_mixes_and_wnla_makes_identities() {
        let mut graph = relu_model();
        coop::run(&mut graph, &CoopOptions::default()).unwrap();
        let mixed = print_graph(&graph);
        let options = LowerOptions {
            target: Target::Keep,
            prelu_per_channel: false,
        };
        run(&mut graph, &options).unwrap();
        assert_eq!(print_graph(&graph), mixed);

        let stats = wnla(&mut graph).unwrap();
        assert_eq!(verify(&graph), Ok(()));
        assert_eq!(stats.rewritten, 2);
        let activations: Vec<_> = graph
            .node_ids()
            .into_iter()
            .filter(|&id| graph.node(id).op.is_activation())
            .map(|id| graph.node(id).op.name())
            .collect();
        assert_eq!(activations, ["identity", "identity"]);
        assert_eq!(graph.params().len(), 4);
    }
}
