//! What `coopc compile` prints: the layers of a model, its parameter counts per phase, and its
//! multiply-accumulates per image.
//!
//! Counting rules (those of the papers and of torchvision's figures): parameters are the
//! elements of trained parameter nodes (weights, biases, BatchNorm scale and shift, PReLU
//! slopes); BatchNorm running statistics are state and counted apart. Multiply-accumulates
//! count convolutions (`Cout·Ho·Wo·Cin·Kh·Kw`) and dense layers (`M·K`) per image; biases,
//! BatchNorm, activations, mixes, pooling and adds are not counted.

use std::fmt::{self, Write};

use crate::ir::print::print_order;
use crate::ir::{Graph, NodeId, Op, TensorType};
use crate::pipeline::Compiled;

/// One layer of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerRow {
    /// Layer name (`stage1.basic1.conv1`), or `-` when it has none.
    pub name: String,
    /// The op's name.
    pub op: &'static str,
    /// The type of its value.
    pub output: TensorType,
    /// Trained parameters it uses.
    pub params: usize,
    /// Multiply-accumulates per image.
    pub macs: u64,
}

/// The summary of a compiled model.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The model.
    pub model: String,
    /// The baseline's layers, in print order.
    pub layers: Vec<LayerRow>,
    /// Trained parameters of the model as written.
    pub baseline_params: usize,
    /// After `coop` (phase 1).
    pub phase1_params: usize,
    /// After `lower` (phase 2).
    pub phase2_params: usize,
    /// BatchNorm running statistics (state, not trained) of the baseline.
    pub state_elements: usize,
    /// Multiply-accumulates per image of the baseline.
    pub baseline_macs: u64,
    /// Multiply-accumulates per image of phase 2.
    pub phase2_macs: u64,
    /// Activation sites rewritten by `coop`.
    pub mix_sites: usize,
    /// Parameters `lower` removed.
    pub removed_params: Vec<String>,
}

/// Trained parameter elements of `graph`.
pub fn trained_params(graph: &Graph) -> usize {
    param_elements(graph, true)
}

fn param_elements(graph: &Graph, trained: bool) -> usize {
    graph
        .params()
        .into_iter()
        .filter(|&id| is_param(graph, id, trained))
        .map(|id| graph.node(id).ty.item_elements())
        .sum()
}

/// True when `id` is a parameter node that is trained (`trained`) or state (`!trained`).
fn is_param(graph: &Graph, id: NodeId, trained: bool) -> bool {
    matches!(&graph.node(id).op, Op::Param { role, .. } if role.is_trained() == trained)
}

/// Multiply-accumulates per image of `graph`.
pub fn macs(graph: &Graph) -> u64 {
    graph
        .node_ids()
        .into_iter()
        .map(|id| node_macs(graph, id))
        .sum()
}

fn node_macs(graph: &Graph, id: NodeId) -> u64 {
    let node = graph.node(id);
    let weight = || {
        graph
            .inputs(id)
            .get(1)
            .map(|&weight| graph.node(weight).ty.item_elements() as u64)
    };
    match node.op {
        // Each output position of each output channel reads Cin·Kh·Kw weights.
        Op::Conv2d { .. } => {
            let positions: u64 = node.ty.dims.iter().skip(1).map(|&dim| dim as u64).product();
            weight().unwrap_or(0).saturating_mul(positions)
        }
        Op::Dense { .. } => weight().unwrap_or(0),
        _ => 0,
    }
}

/// The layer table of `graph`: every node but inputs and parameters, in print order.
pub fn layers(graph: &Graph) -> Vec<LayerRow> {
    print_order(graph)
        .into_iter()
        .filter(|&id| !matches!(graph.node(id).op, Op::Param { .. } | Op::Input { .. }))
        .map(|id| {
            let node = graph.node(id);
            let params = graph
                .inputs(id)
                .into_iter()
                .filter(|&input| is_param(graph, input, true))
                .map(|input| graph.node(input).ty.item_elements())
                .sum();
            LayerRow {
                name: graph.layer_name(id).unwrap_or("-").to_string(),
                op: node.op.name(),
                output: node.ty.clone(),
                params,
                macs: node_macs(graph, id),
            }
        })
        .collect()
}

/// The summary of every phase of `compiled`.
pub fn summarize(compiled: &Compiled) -> Summary {
    Summary {
        model: compiled.model.clone(),
        layers: layers(&compiled.baseline),
        baseline_params: trained_params(&compiled.baseline),
        phase1_params: trained_params(&compiled.coop),
        phase2_params: trained_params(&compiled.lowered),
        state_elements: param_elements(&compiled.baseline, false),
        baseline_macs: macs(&compiled.baseline),
        phase2_macs: macs(&compiled.lowered),
        mix_sites: compiled.coop_stats.rewritten,
        removed_params: compiled.lower_stats.params_removed.clone(),
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut text = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

impl fmt::Display for Summary {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::new();
        let _ = writeln!(text, "model {}: {} layers", self.model, self.layers.len());
        let _ = writeln!(
            text,
            "  {:<36} {:<22} {:<20} {:>12} {:>14}",
            "layer", "op", "output", "params", "MACs"
        );
        for row in &self.layers {
            let (params, macs) = (thousands(row.params as u64), thousands(row.macs));
            let output = row.output.to_string();
            let _ = writeln!(
                text,
                "  {:<36} {:<22} {:<20} {params:>12} {macs:>14}",
                row.name, row.op, output
            );
        }
        let difference = self.phase1_params as i64 - self.phase2_params as i64;
        let _ = writeln!(text, "parameters (trained)");
        let _ = writeln!(
            text,
            "  baseline          {:>14}",
            thousands(self.baseline_params as u64)
        );
        let _ = writeln!(
            text,
            "  phase 1 (coop)    {:>14}   {} mixed sites",
            thousands(self.phase1_params as u64),
            self.mix_sites
        );
        let _ = writeln!(
            text,
            "  phase 2 (lower)   {:>14}",
            thousands(self.phase2_params as u64)
        );
        let _ = writeln!(
            text,
            "  phase 1 - phase 2 {:>14}   {} parameter tensors removed by lower",
            difference,
            self.removed_params.len()
        );
        let _ = writeln!(
            text,
            "BatchNorm running statistics (not trained): {}",
            thousands(self.state_elements as u64)
        );
        let _ = writeln!(
            text,
            "multiply-accumulates per image: {} (baseline), {} (phase 2)",
            thousands(self.baseline_macs),
            thousands(self.phase2_macs)
        );
        formatter.write_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(61_100_840), "61,100,840");
    }
}
