//! Snapshots of the emitted MLIR for one small kernel of each kind, each verified by MLIR
//! before it is compared (`cargo insta review` to accept a change).

use grammar::SourceFile;
use runtime::target::cpu::verify_mlir;

use super::kernel_tests::Net;
use crate::codegen::{compile_entries, EntryGraph};
use crate::ir::{Activation, Op, ParamRole, TensorType};
use crate::schedule::GraphMode;

/// The verified module of `net` compiled alone in `mode`.
fn module(net: &Net, mode: GraphMode) -> String {
    let source = SourceFile::new("kernel.coop", "x\n".repeat(64));
    let entries = [EntryGraph {
        name: "test",
        graph: &net.graph,
        mode,
    }];
    let compiled = compile_entries(&entries, Some(&source), 8).expect("codegen");
    if let Err(error) = verify_mlir(&compiled.program.mlir) {
        panic!("{error}\n{}", compiled.program.mlir);
    }
    compiled.program.mlir
}

#[test]
fn elementwise_batchnorm_apply_and_relu() {
    let mut net = Net::new();
    let x = net.input("x", &[2, 3, 3]);
    let mean = net.param("mean", ParamRole::RunningMean, &[2]);
    let var = net.param("var", ParamRole::RunningVar, &[2]);
    let scale = net.param("scale", ParamRole::BatchNormScale, &[2]);
    let shift = net.param("shift", ParamRole::BatchNormShift, &[2]);
    let y = net.same(
        Op::BatchNormApply { eps: 1e-5 },
        &[x, mean, var, scale, shift],
    );
    let r = net.same(Op::Activation(Activation::Relu), &[y]);
    net.output("r", r);
    insta::assert_snapshot!(module(&net, GraphMode::Train));
}

#[test]
fn reduction_channel_sum_and_scale_gradient() {
    let mut net = Net::new();
    let dy = net.input("dy", &[2, 3, 3]);
    let x = net.input("x", &[2, 3, 3]);
    let mean = net.param("mean", ParamRole::RunningMean, &[2]);
    let var = net.param("var", ParamRole::RunningVar, &[2]);
    let vector = TensorType::fixed(vec![2]);
    let dshift = net.add(Op::ChannelSum, vector.clone(), &[dy]);
    let dscale = net.add(
        Op::BatchNormScaleGrad { eps: 1e-5 },
        vector,
        &[dy, x, mean, var],
    );
    net.output("dshift", dshift);
    net.output("dscale", dscale);
    insta::assert_snapshot!(module(&net, GraphMode::Train));
}

#[test]
fn contraction_convolution() {
    let mut net = Net::new();
    let x = net.input("x", &[3, 5, 5]);
    let w = net.param("w", ParamRole::Weight, &[4, 3, 3, 3]);
    let conv = Op::Conv2d {
        stride: [2, 2],
        padding: [1, 1],
        bias: false,
    };
    let y = net.add(conv, TensorType::batch(vec![4, 3, 3]), &[x, w]);
    net.output("y", y);
    insta::assert_snapshot!(module(&net, GraphMode::Train));
}

#[test]
fn window_max_pool() {
    let mut net = Net::new();
    let x = net.input("x", &[2, 4, 4]);
    let pool = Op::MaxPool {
        kernel: [2, 2],
        stride: [2, 2],
        padding: [0, 0],
    };
    let y = net.add(pool, TensorType::batch(vec![2, 2, 2]), &[x]);
    net.output("y", y);
    insta::assert_snapshot!(module(&net, GraphMode::Train));
}

#[test]
fn window_padded_max_pool_gradient() {
    let mut net = Net::new();
    let dy = net.input("dy", &[2, 2, 2]);
    let x = net.input("x", &[2, 4, 4]);
    let grad = Op::MaxPoolGrad {
        kernel: [3, 3],
        stride: [2, 2],
        padding: [1, 1],
    };
    let dx = net.add(grad, TensorType::batch(vec![2, 4, 4]), &[dy, x]);
    net.output("dx", dx);
    insta::assert_snapshot!(module(&net, GraphMode::Train));
}

#[test]
fn loss_softmax_cross_entropy() {
    let mut net = Net::new();
    let logits = net.input("logits", &[3]);
    let labels = net.labels();
    let loss = net.add(
        Op::SoftmaxCrossEntropy,
        TensorType::scalar(),
        &[logits, labels],
    );
    net.output("loss", loss);
    insta::assert_snapshot!(module(&net, GraphMode::Train));
}

#[test]
fn effect_sgd_update_and_output_copy() {
    let mut net = Net::new();
    let w = net.param("w", ParamRole::Weight, &[2, 3]);
    let g = net.param("g", ParamRole::Weight, &[2, 3]);
    let buffer = net.param("w.momentum", ParamRole::MomentumBuffer, &[2, 3]);
    let lr = net.scalar("lr");
    let sgd = Op::SgdUpdate {
        momentum: 0.9,
        weight_decay: 1e-4,
        nesterov: true,
    };
    net.same(sgd, &[w, g, buffer, lr]);
    net.output("copy", g);
    insta::assert_snapshot!(module(&net, GraphMode::Train));
}

#[test]
fn dropout_mask() {
    let mut net = Net::new();
    let x = net.input("x", &[4]);
    let y = net.same(Op::Dropout { p: 0.5 }, &[x]);
    net.output("y", y);
    insta::assert_snapshot!(module(&net, GraphMode::Train));
}
