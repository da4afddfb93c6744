//! Pass `coop`: phase 1 of cooperative initialization, every activation becomes a mix.
//!
//! Needs: a typed IR that verifies. Mixes already present are left alone.
//!
//! Promises: every `Op::Activation` node `A` applied to `x` is replaced by `k` activation nodes
//! `Fᵢ(x)`, one per activation of the set in the set's order, and one `Op::Mix { weights: β }`
//! of them. The mix takes over `A`'s users and outputs, its layer name (the *site*, e.g.
//! `stage1.0.relu1`) and its span; the members are named `<site>.mix.<activation>` and share
//! the span. A PReLU member gets a new slope parameter `<site>.mix.prelu.slope`, `[1]` by
//! default (as `nn.PReLU()`) or `[C]` with `prelu_per_channel`, initialised to 0.25.
//! Parameters that lose their last use (the slope of a site that was itself a PReLU) are
//! removed and reported. Every other node keeps its id; the ids of the replaced activations
//! are gone. β is validated first: `k ≥ 1`, one weight per activation, each `βᵢ ≥ 0`, and
//! `Σβᵢ = 1` (within 1e-4) unless `allow_unnormalized`.

use grammar::Span;

use super::{remove_unused_params, PassError, PassStats};
use crate::error::{Located, OptionError};
use crate::ir::{Activation, Graph, GraphBuilder, NodeId, Op};

/// The paper's activation set: ReLU, PReLU, ELU, SoftPlus.
pub fn paper_activations() -> Vec<Activation> {
    ["relu", "prelu", "elu", "softplus"]
        .iter()
        .filter_map(|name| Activation::from_name(name))
        .collect()
}

/// Settings of the `coop` pass.
#[derive(Clone, Debug, PartialEq)]
pub struct CoopOptions {
    /// The activations mixed at every site (`k` of them), in order.
    pub activations: Vec<Activation>,
    /// β, one weight per activation; `None` means `1/k` each.
    pub weights: Option<Vec<f32>>,
    /// Accept weights that do not sum to 1.
    pub allow_unnormalized: bool,
    /// Give each PReLU member one slope per channel instead of one shared slope.
    pub prelu_per_channel: bool,
}

impl Default for CoopOptions {
    fn default() -> Self {
        CoopOptions {
            activations: paper_activations(),
            weights: None,
            allow_unnormalized: false,
            prelu_per_channel: false,
        }
    }
}

impl CoopOptions {
    /// The validated β: the given weights, or `1/k` each.
    ///
    /// # Errors
    /// An [`OptionError`] (without a meaningful span) when the set is empty or the weights are
    /// not acceptable; [`CoopOptions::from_flags`] gives the same errors with spans.
    pub fn weights(&self) -> Result<Vec<f32>, OptionError> {
        check_activations(&self.activations, &[], Span::default())?;
        let count = self.activations.len();
        match &self.weights {
            None => Ok(vec![1.0 / count as f32; count]),
            Some(weights) => {
                let spans = vec![Span::default(); weights.len()];
                check_weights(
                    count,
                    weights,
                    &spans,
                    Span::default(),
                    self.allow_unnormalized,
                )?;
                Ok(weights.clone())
            }
        }
    }

    /// Options from the command-line texts of `--activations` (comma-separated names) and
    /// `--beta` (comma-separated numbers), validated.
    ///
    /// # Errors
    /// An [`OptionError`] whose span points into the option's text, shown as its source.
    pub fn from_flags(
        activations: Option<&str>,
        beta: Option<&str>,
        allow_unnormalized: bool,
        prelu_per_channel: bool,
    ) -> Result<CoopOptions, Box<Located<OptionError>>> {
        let mut options = CoopOptions {
            allow_unnormalized,
            prelu_per_channel,
            ..Self::default()
        };
        if let Some(text) = activations {
            let items = split_items(text);
            let mut parsed = Vec::new();
            for (item, span) in &items {
                let activation = parse_activation(item, *span)
                    .map_err(|error| Box::new(Located::new(error, "--activations", text)))?;
                parsed.push(activation);
            }
            let spans: Vec<Span> = items.iter().map(|(_, span)| *span).collect();
            check_activations(&parsed, &spans, whole(text))
                .map_err(|error| Box::new(Located::new(error, "--activations", text)))?;
            options.activations = parsed;
        }
        if let Some(text) = beta {
            let located = |error| Box::new(Located::new(error, "--beta", text));
            let items = split_items(text);
            let mut weights = Vec::new();
            for (item, span) in &items {
                let value = item.parse::<f32>().ok().filter(|value| value.is_finite());
                let text = item.to_string();
                weights.push(
                    value
                        .ok_or(OptionError::BadBetaNumber { text, span: *span })
                        .map_err(located)?,
                );
            }
            let spans: Vec<Span> = items.iter().map(|(_, span)| *span).collect();
            let count = options.activations.len();
            check_weights(count, &weights, &spans, whole(text), allow_unnormalized)
                .map_err(located)?;
            options.weights = Some(weights);
        }
        Ok(options)
    }
}

/// The activation named `name`, or an error listing the names.
pub fn parse_activation(name: &str, span: Span) -> Result<Activation, OptionError> {
    Activation::from_name(name).ok_or_else(|| OptionError::UnknownActivation {
        name: name.to_string(),
        span,
        help: "the activations are relu, prelu, elu, softplus, leaky_relu and identity".into(),
    })
}

/// Comma-separated items of `text`, trimmed, each with its span in `text`.
pub(crate) fn split_items(text: &str) -> Vec<(&str, Span)> {
    let mut items = Vec::new();
    let mut start = 0;
    for piece in text.split(',') {
        let leading = piece.len() - piece.trim_start().len();
        let trimmed = piece.trim();
        let begin = start + leading;
        if !trimmed.is_empty() {
            items.push((
                trimmed,
                Span::new(begin as u32, (begin + trimmed.len()) as u32),
            ));
        }
        start += piece.len() + 1;
    }
    items
}

fn whole(text: &str) -> Span {
    Span::new(0, text.len() as u32)
}

fn check_activations(
    activations: &[Activation],
    spans: &[Span],
    whole: Span,
) -> Result<(), OptionError> {
    if activations.is_empty() {
        return Err(OptionError::EmptyActivationSet { span: whole });
    }
    for (index, activation) in activations.iter().enumerate() {
        if activations[..index]
            .iter()
            .any(|earlier| earlier.name() == activation.name())
        {
            let span = spans.get(index).copied().unwrap_or_default();
            let name = activation.name().to_string();
            return Err(OptionError::DuplicateActivation { name, span });
        }
    }
    Ok(())
}

// k ≥ 1 weights, one per activation, βᵢ ≥ 0, Σβᵢ = 1 unless allowed otherwise
fn check_weights(
    count: usize,
    weights: &[f32],
    spans: &[Span],
    whole: Span,
    allow_unnormalized: bool,
) -> Result<(), OptionError> {
    if weights.len() != count {
        return Err(OptionError::BetaCount {
            weights: weights.len(),
            activations: count,
            span: whole,
        });
    }
    for (index, &value) in weights.iter().enumerate() {
        if value.is_nan() || value < 0.0 || value.is_infinite() {
            let span = spans.get(index).copied().unwrap_or_default();
            return Err(OptionError::NegativeBeta { value, span });
        }
    }
    let sum: f32 = weights.iter().sum();
    if !allow_unnormalized && (sum - 1.0).abs() > 1e-4 {
        return Err(OptionError::UnnormalizedBeta { sum, span: whole });
    }
    Ok(())
}

/// Runs the pass. See the module documentation for the contract.
///
/// # Errors
/// [`PassError::Options`] for bad options; [`PassError::Rewrite`] when a site cannot be
/// rewritten (the graph breaks the contract).
pub fn run(graph: &mut Graph, options: &CoopOptions) -> Result<PassStats, PassError> {
    let _span = tracing::info_span!("coop").entered();
    let weights = options.weights().map_err(PassError::Options)?;
    let mut stats = PassStats {
        pass: "coop",
        ..PassStats::default()
    };
    let sites: Vec<NodeId> = graph
        .node_ids()
        .into_iter()
        .filter(|&id| graph.node(id).op.is_activation())
        .collect();
    let mut builder = GraphBuilder::new(graph);
    for site in sites {
        expand_site(&mut builder, site, options, &weights, &mut stats)?;
    }
    let removed = remove_unused_params(builder.graph_mut());
    stats.nodes_removed += removed.len();
    stats.params_removed = removed;
    tracing::debug!(?stats, "coop done");
    Ok(stats)
}

// act(x) => Σ βᵢ·Fᵢ(x), βᵢ = 1/k by default
fn expand_site(
    builder: &mut GraphBuilder<'_>,
    site: NodeId,
    options: &CoopOptions,
    weights: &[f32],
    stats: &mut PassStats,
) -> Result<(), PassError> {
    let span = builder.graph().node(site).span;
    let rewrite = |error| PassError::Rewrite {
        pass: "coop",
        error: Box::new(error),
        span,
    };
    let name = site_name(builder.graph(), site);
    let Some(&x) = builder.graph().inputs(site).first() else {
        return Err(PassError::MalformedMix { pass: "coop", span });
    };
    let before = builder.graph().len();

    let mut members = Vec::with_capacity(options.activations.len());
    for activation in &options.activations {
        let member_name = format!("{name}.mix.{}", activation.name());
        let member = if *activation == Activation::Prelu {
            let slope = format!("{member_name}.slope");
            stats.params_added.push(slope.clone());
            builder.prelu(x, &slope, options.prelu_per_channel, &member_name, span)
        } else {
            builder.activation(x, activation, &member_name, span)
        };
        members.push(member.map_err(rewrite)?);
    }
    let mix = builder
        .mix(&members, weights.to_vec(), &name, span)
        .map_err(rewrite)?;

    let graph = builder.graph_mut();
    graph.replace_all_uses(site, mix);
    graph.remove(site);
    stats.rewritten += 1;
    stats.nodes_added += graph.len() + 1 - before;
    stats.nodes_removed += 1;
    tracing::trace!(site = %name, "activation expanded into a mix");
    Ok(())
}

/// The layer name of a site, or a name made from its op and id when it has none.
pub(crate) fn site_name(graph: &Graph, id: NodeId) -> String {
    match graph.layer_name(id) {
        Some(name) => name.to_string(),
        None => format!("{}{}", graph.node(id).op.name(), id.index()),
    }
}

/// True when `op` is a mix (for tests and other passes).
pub fn is_mix(op: &Op) -> bool {
    matches!(op, Op::Mix { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::builder::BatchNormSpec;
    use crate::ir::verify::verify;
    use crate::ir::TensorType;

    /// input -> batchnorm -> `activation` (named "block.act1") -> output.
    fn one_site(activation: &Activation) -> Graph {
        let mut graph = Graph::new();
        let mut builder = GraphBuilder::new(&mut graph);
        let x = builder.input("x", vec![8, 4, 4], Span::default()).unwrap();
        let bn = builder.batchnorm(x, &BatchNormSpec::default(), "block.bn1", Span::default());
        let act = builder.activation(bn.unwrap(), activation, "block.act1", Span::new(3, 7));
        builder.output("y", act.unwrap());
        graph
    }

    #[test]
    fn every_activation_becomes_a_mix_of_the_set() {
        let mut graph = one_site(&Activation::Relu);
        let stats = run(&mut graph, &CoopOptions::default()).unwrap();
        assert_eq!(verify(&graph), Ok(()));
        assert_eq!(stats.rewritten, 1);
        assert_eq!(stats.params_added, ["block.act1.mix.prelu.slope"]);
        assert_eq!(stats.nodes_added, 6, "4 members, 1 slope, 1 mix");

        let output = graph.output("y").unwrap();
        let Op::Mix { weights } = &graph.node(output).op else {
            panic!("output is not a mix")
        };
        assert_eq!(weights, &[0.25; 4]);
        assert_eq!(graph.layer_name(output), Some("block.act1"));
        assert_eq!(graph.node(output).span, Span::new(3, 7));
        let names: Vec<_> = graph
            .inputs(output)
            .iter()
            .map(|&m| graph.node(m).op.name())
            .collect();
        assert_eq!(names, ["relu", "prelu", "elu", "softplus"]);
        let slope = graph.param("block.act1.mix.prelu.slope").unwrap();
        assert_eq!(graph.node(slope).ty, TensorType::fixed(vec![1]));
    }

    #[test]
    fn a_prelu_site_loses_its_own_slope_and_per_channel_slopes_have_c_entries() {
        let mut graph = one_site(&Activation::Prelu);
        let options = CoopOptions {
            prelu_per_channel: true,
            ..CoopOptions::default()
        };
        let stats = run(&mut graph, &options).unwrap();
        assert_eq!(verify(&graph), Ok(()));
        assert_eq!(stats.params_removed, ["block.act1.slope"]);
        let slope = graph.param("block.act1.mix.prelu.slope").unwrap();
        assert_eq!(graph.node(slope).ty, TensorType::fixed(vec![8]));
    }

    #[test]
    fn beta_is_validated() {
        let options = |weights: Vec<f32>| CoopOptions {
            weights: Some(weights),
            ..CoopOptions::default()
        };
        assert!(matches!(
            options(vec![0.5, 0.5]).weights(),
            Err(OptionError::BetaCount { .. })
        ));
        let negative = options(vec![1.5, -0.5, 0.0, 0.0]).weights();
        assert!(matches!(negative, Err(OptionError::NegativeBeta { .. })));
        let unnormalized = options(vec![0.5, 0.5, 0.5, 0.5]);
        assert!(matches!(
            unnormalized.weights(),
            Err(OptionError::UnnormalizedBeta { .. })
        ));
        let allowed = CoopOptions {
            allow_unnormalized: true,
            ..unnormalized
        };
        assert_eq!(allowed.weights(), Ok(vec![0.5; 4]));
        let empty = CoopOptions {
            activations: Vec::new(),
            ..CoopOptions::default()
        };
        assert!(matches!(
            empty.weights(),
            Err(OptionError::EmptyActivationSet { .. })
        ));
    }

    #[test]
    fn flags_are_parsed_with_spans() {
        let options = CoopOptions::from_flags(Some("relu, elu"), Some("0.75,0.25"), false, false);
        let options = options.unwrap();
        assert_eq!(
            options.activations,
            [Activation::Relu, Activation::Elu { alpha: 1.0 }]
        );
        assert_eq!(options.weights, Some(vec![0.75, 0.25]));
        let error = CoopOptions::from_flags(Some("relu,gelu"), None, false, false).unwrap_err();
        assert_eq!(error.error.to_string(), "unknown activation `gelu`");
        let OptionError::UnknownActivation { span, .. } = error.error else {
            panic!("{error:?}")
        };
        assert_eq!(span, Span::new(5, 9));
        let error = CoopOptions::from_flags(None, Some("0.25,x,0.25,0.25"), false, false);
        assert!(matches!(
            error.unwrap_err().error,
            OptionError::BadBetaNumber { .. }
        ));
    }
}
