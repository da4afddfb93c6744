//! Multiply-accumulates of the contractions (convolutions, dense layers and their gradients)
//! per batch item, from the IR's types, to turn kernel times into GFLOP/s.
//!
//! Invariant: a gradient contraction counts the same multiply-accumulates as its forward op
//! (the input and weight gradients of a convolution are each one convolution of the same
//! size), so a training step counts three times its forward pass, as PyTorch's scripts
//! (`6 · MACs · batch` FLOP) assume.

use compiler::ir::{Graph, NodeId, Op};

/// Multiply-accumulates per batch item of node `id`; 0 for a node that is no contraction.
pub fn node_macs(graph: &Graph, id: NodeId) -> u64 {
    let node = graph.node(id);
    let dims_of = |slot: usize| -> Vec<usize> {
        let inputs = graph.inputs(id);
        inputs
            .get(slot)
            .map(|&input| graph.node(input).ty.dims.clone())
            .unwrap_or_default()
    };
    let product = |dims: &[usize]| dims.iter().map(|&dim| dim as u64).product::<u64>();
    match &node.op {
        // out[Cout,Ho,Wo] · Cin·Kh·Kw, with weight [Cout,Cin,Kh,Kw] in slot 1.
        Op::Conv2d { .. } => product(&node.ty.dims) * product(dims_of(1).get(1..).unwrap_or(&[])),
        // dy[Cout,Ho,Wo] · Cin·Kh·Kw.
        Op::Conv2dInputGrad { .. } => {
            product(&dims_of(0)) * product(dims_of(1).get(1..).unwrap_or(&[]))
        }
        // dy[Cout,Ho,Wo] · Cin·Kh·Kw, the weight being the node's own type.
        Op::Conv2dWeightGrad { .. } => {
            product(&dims_of(0)) * product(node.ty.dims.get(1..).unwrap_or(&[]))
        }
        // M·K: the weight [M,K] is slot 1, or the node itself for the weight gradient.
        Op::Dense { .. } | Op::DenseInputGrad => product(&dims_of(1)),
        Op::DenseWeightGrad => product(&node.ty.dims),
        _ => 0,
    }
}

/// Multiply-accumulates per batch item of the nodes `ids`.
pub fn macs_of(graph: &Graph, ids: &[NodeId]) -> u64 {
    ids.iter().map(|&id| node_macs(graph, id)).sum()
}

/// Multiply-accumulates per batch item of a forward graph's contractions.
pub fn forward_macs(graph: &Graph) -> u64 {
    macs_of(graph, &graph.node_ids())
}

#[cfg(test)]
mod tests {
    use super::*;
    use compiler::pipeline::{compile_source, CompileOptions};
    use grammar::SourceFile;

    #[test]
    fn lenet_forward_counts_both_convolutions_and_the_dense_layer() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/models/lenet.coop"))
                .expect("the model file");
        let source = SourceFile::new("lenet.coop", text);
        let compiled = compile_source(&source, &CompileOptions::default()).expect("compiles");
        // conv1: 20·24·24 · 1·5·5; conv2: 30·8·8 · 20·5·5; dense: 10 · 30·4·4.
        let expected = 20 * 24 * 24 * 25 + 30 * 8 * 8 * 20 * 25 + 10 * 30 * 4 * 4;
        assert_eq!(forward_macs(&compiled.lowered), expected);
    }
}
