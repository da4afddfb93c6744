//! Per-op gradient checks: each op applied to a random image batch (stride, padding and odd
//! sizes included), its output flattened into the logits, and the gradients of the image and
//! of every parameter compared with central finite differences.

use super::gradcheck::{assert_gradients, random_feeds, random_state};
use super::net::Net;
use crate::ir::{Activation, NodeId};

/// Builds `image [dims] -> layer -> logits`, then checks all gradients on a batch of `batch`.
fn check_layer(
    dims: Vec<usize>,
    batch: usize,
    seed: u64,
    layer: impl FnOnce(&mut Net, NodeId) -> NodeId,
) {
    let mut net = Net::new();
    let image = net.input(dims);
    let y = layer(&mut net, image);
    let graph = net.finish(y);
    let feeds = random_feeds(&graph, batch, seed);
    let state = random_state(&graph, seed);
    assert_gradients(&graph, &feeds, &state, true);
}

#[test]
fn conv2d_unit_stride_with_bias() {
    check_layer(vec![2, 5, 5], 2, 1, |net, x| {
        net.conv_square(x, 3, 3, 1, 0, true)
    });
}

#[test]
fn conv2d_stride_two_padding_one_odd_sizes() {
    check_layer(vec![3, 7, 6], 2, 2, |net, x| {
        net.conv_square(x, 2, 3, 2, 1, true)
    });
}

#[test]
fn conv2d_stride_that_skips_the_last_row_without_bias() {
    // Height 6, kernel 3, stride 2, no padding: rows 0..5 are read, row 5 gets no gradient.
    check_layer(vec![2, 6, 5], 3, 3, |net, x| {
        net.conv(x, 2, [3, 2], [2, 1], [0, 1], false)
    });
}

#[test]
fn conv2d_one_by_one() {
    check_layer(vec![3, 4, 4], 2, 4, |net, x| {
        net.conv_square(x, 2, 1, 1, 0, true)
    });
}

#[test]
fn dense_with_and_without_bias() {
    check_layer(vec![7], 3, 5, |net, x| net.dense(x, 4, true));
    check_layer(vec![2, 3, 3], 2, 6, |net, x| {
        let flat = net.flatten(x);
        net.dense(flat, 5, false)
    });
}

#[test]
fn batch_norm_training_mode_on_images() {
    check_layer(vec![3, 3, 5], 3, 7, |net, x| net.batch_norm(x));
}

#[test]
fn batch_norm_training_mode_on_features() {
    check_layer(vec![4], 5, 8, |net, x| net.batch_norm(x));
}

#[test]
fn batch_norm_after_conv() {
    check_layer(vec![2, 5, 5], 2, 9, |net, x| {
        let y = net.conv_square(x, 3, 3, 2, 1, false);
        net.batch_norm(y)
    });
}

#[test]
fn relu() {
    check_layer(vec![2, 3, 3], 2, 10, |net, x| net.act(x, Activation::Relu));
}

#[test]
fn leaky_relu() {
    check_layer(vec![2, 3, 3], 2, 11, |net, x| {
        net.act(x, Activation::LeakyRelu { slope: 0.01 })
    });
}

#[test]
fn elu() {
    check_layer(vec![2, 3, 3], 2, 12, |net, x| {
        net.act(x, Activation::Elu { alpha: 1.0 })
    });
    check_layer(vec![2, 3, 3], 2, 13, |net, x| {
        net.act(x, Activation::Elu { alpha: 0.7 })
    });
}

#[test]
fn softplus_smooth_and_linear_regions() {
    let default = Activation::Softplus {
        beta: 1.0,
        threshold: 20.0,
    };
    check_layer(vec![2, 3, 3], 2, 14, |net, x| net.act(x, default));
    // β = 2, threshold 1: inputs above 0.5 are in the linear region.
    let sharp = Activation::Softplus {
        beta: 2.0,
        threshold: 1.0,
    };
    check_layer(vec![2, 3, 3], 2, 15, |net, x| net.act(x, sharp));
}

#[test]
fn prelu_shared_slope() {
    check_layer(vec![3, 2, 3], 2, 16, |net, x| net.act(x, Activation::Prelu));
}

#[test]
fn prelu_per_channel_slope() {
    check_layer(vec![3, 2, 3], 2, 17, |net, x| net.prelu_per_channel(x));
    check_layer(vec![5], 3, 18, |net, x| net.prelu_per_channel(x));
}

#[test]
fn identity() {
    check_layer(vec![2, 2, 2], 2, 19, |net, x| {
        let y = net.act(x, Activation::Identity);
        net.conv_square(y, 2, 1, 1, 0, true)
    });
}

#[test]
fn mix_with_equal_and_unequal_weights() {
    check_layer(vec![2, 3, 3], 2, 20, |net, x| net.mix(x, &[0.25; 4]));
    check_layer(vec![2, 3, 3], 2, 21, |net, x| {
        net.mix(x, &[0.1, 0.2, 0.3, 0.4])
    });
}

#[test]
fn add_of_distinct_and_repeated_operands() {
    check_layer(vec![2, 3, 3], 2, 22, |net, x| {
        let relu = net.act(x, Activation::Relu);
        let elu = net.act(x, Activation::Elu { alpha: 1.0 });
        net.add(&[relu, x, elu])
    });
    check_layer(vec![2, 3, 3], 2, 23, |net, x| net.add(&[x, x]));
}

#[test]
fn max_pool_floor_sizes_and_padding() {
    check_layer(vec![2, 5, 5], 2, 24, |net, x| net.max_pool(x, 2, 2, 0));
    check_layer(vec![2, 7, 7], 2, 25, |net, x| net.max_pool(x, 3, 2, 1));
}

#[test]
fn avg_pool_with_and_without_padding() {
    check_layer(vec![2, 4, 4], 2, 26, |net, x| net.avg_pool(x, 2, 2, 0));
    check_layer(vec![2, 5, 6], 2, 27, |net, x| net.avg_pool(x, 3, 2, 1));
}

#[test]
fn global_avg_pool() {
    check_layer(vec![3, 3, 5], 2, 28, |net, x| net.global_avg_pool(x));
}

#[test]
fn flatten_then_dense() {
    check_layer(vec![2, 3, 2], 2, 29, |net, x| {
        let flat = net.flatten(x);
        net.dense(flat, 3, true)
    });
}

#[test]
fn dropout_with_a_fixed_mask() {
    check_layer(vec![3, 4, 4], 2, 30, |net, x| net.dropout(x, 0.3));
}

#[test]
fn shortcut_a_stride_two_odd_size_and_stride_one() {
    check_layer(vec![2, 5, 5], 2, 31, |net, x| net.shortcut(x, 2, 1));
    check_layer(vec![1, 3, 3], 2, 32, |net, x| net.shortcut(x, 1, 2));
}
