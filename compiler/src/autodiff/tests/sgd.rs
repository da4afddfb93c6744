//! Optimizer and running-statistic checks: several SGD steps of the training graph on a fixed
//! batch against the same steps written out by hand in float64 here, and BatchNorm's running
//! statistics against PyTorch's update formula.

use super::super::{training_graph, SgdOptions, LABELS};
use super::gradcheck::away_from_zero;
use super::net::{Net, IMAGE};
use crate::reference::{self, Feeds, Mode, State};
use runtime::rng::Rng;

const BATCH: usize = 5;
const FEATURES: usize = 3;
const CLASSES: usize = 4;

/// A linear classifier: `logits = x·Wᵀ + b`, parameters `dense0.weight`, `dense0.bias`.
fn linear() -> crate::ir::Graph {
    let mut net = Net::new();
    let image = net.input(vec![FEATURES]);
    let logits = net.dense(image, CLASSES, true);
    net.finish(logits)
}

/// The parameters and momentum buffers of the hand-written model.
#[derive(Clone, Debug)]
struct Model {
    weight: Vec<f64>,
    bias: Vec<f64>,
    weight_buffer: Vec<f64>,
    bias_buffer: Vec<f64>,
}

/// The gradients of the mean cross-entropy of `logits = x·Wᵀ + b`, by hand:
/// `dlogits = (softmax − onehot)/N`, `dW = dlogitsᵀ·x`, `db = Σₙ dlogits`.
fn hand_gradients(model: &Model, x: &[f64], labels: &[i32]) -> (Vec<f64>, Vec<f64>) {
    let mut weight_grad = vec![0.0; CLASSES * FEATURES];
    let mut bias_grad = vec![0.0; CLASSES];
    for n in 0..BATCH {
        let row = &x[n * FEATURES..(n + 1) * FEATURES];
        let logits: Vec<f64> = (0..CLASSES)
            .map(|m| {
                model.bias[m]
                    + (0..FEATURES)
                        .map(|k| model.weight[m * FEATURES + k] * row[k])
                        .sum::<f64>()
            })
            .collect();
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = logits.iter().map(|l| (l - max).exp()).sum();
        for m in 0..CLASSES {
            let target = if labels[n] as usize == m { 1.0 } else { 0.0 };
            let delta = ((logits[m] - max).exp() / total - target) / BATCH as f64;
            bias_grad[m] += delta;
            for k in 0..FEATURES {
                weight_grad[m * FEATURES + k] += delta * row[k];
            }
        }
    }
    (weight_grad, bias_grad)
}

/// PyTorch's SGD on one tensor, by hand.
fn hand_sgd(param: &mut [f64], buffer: &mut [f64], grad: &[f64], lr: f64, options: &SgdOptions) {
    let momentum = f64::from(options.momentum);
    let decay = f64::from(options.weight_decay);
    for i in 0..param.len() {
        let d = grad[i] + decay * param[i];
        buffer[i] = momentum * buffer[i] + d;
        let step = if options.nesterov {
            d + momentum * buffer[i]
        } else {
            buffer[i]
        };
        param[i] -= lr * step;
    }
}

fn assert_close(name: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{name}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-13 * w.abs().max(1.0),
            "{name}[{i}]: {g} vs {w}"
        );
    }
}

fn check_sgd_steps(options: SgdOptions) {
    let forward = linear();
    let graph = training_graph(&forward, &options).expect("training graph");
    let mut rng = Rng::seed_from(50);
    let x = away_from_zero(&mut rng, BATCH * FEATURES);
    let labels: Vec<i32> = (0..BATCH).map(|n| (n % CLASSES) as i32).collect();
    let mut state: State = reference::init_params(&graph, 50);
    let mut model = Model {
        weight: state["dense0.weight"].clone(),
        bias: state["dense0.bias"].clone(),
        weight_buffer: vec![0.0; CLASSES * FEATURES],
        bias_buffer: vec![0.0; CLASSES],
    };
    assert_eq!(state["dense0.weight.momentum"], model.weight_buffer);

    for lr in [0.1f64, 0.05, 0.02, 0.2] {
        let mut feeds = Feeds::new(BATCH, Mode::Train);
        feeds.inputs.insert(IMAGE.into(), x.clone());
        feeds.labels.insert(LABELS.into(), labels.clone());
        feeds.scalars.insert("lr".into(), lr);
        reference::run(&graph, &feeds, &mut state).expect("training step");

        let (weight_grad, bias_grad) = hand_gradients(&model, &x, &labels);
        hand_sgd(
            &mut model.weight,
            &mut model.weight_buffer,
            &weight_grad,
            lr,
            &options,
        );
        hand_sgd(
            &mut model.bias,
            &mut model.bias_buffer,
            &bias_grad,
            lr,
            &options,
        );
    }
    assert_close("weight", &state["dense0.weight"], &model.weight);
    assert_close("bias", &state["dense0.bias"], &model.bias);
    assert_close(
        "weight buffer",
        &state["dense0.weight.momentum"],
        &model.weight_buffer,
    );
    assert_close(
        "bias buffer",
        &state["dense0.bias.momentum"],
        &model.bias_buffer,
    );
}

#[test]
fn sgd_with_momentum_and_weight_decay_matches_hand_steps() {
    check_sgd_steps(SgdOptions {
        momentum: 0.9,
        weight_decay: 0.01,
        nesterov: false,
    });
}

#[test]
fn sgd_with_nesterov_matches_hand_steps() {
    check_sgd_steps(SgdOptions {
        momentum: 0.9,
        weight_decay: 0.01,
        nesterov: true,
    });
    check_sgd_steps(SgdOptions {
        momentum: 0.5,
        weight_decay: 0.1,
        nesterov: true,
    });
}

#[test]
fn plain_sgd_matches_hand_steps() {
    check_sgd_steps(SgdOptions {
        momentum: 0.0,
        weight_decay: 0.0,
        nesterov: false,
    });
}

#[test]
fn running_statistics_follow_pytorchs_update() {
    // image [2, 3, 3] -> batchnorm -> logits; two steps on two different batches.
    let mut net = Net::new();
    let image = net.input(vec![2, 3, 3]);
    let y = net.batch_norm(image);
    let forward = net.finish(y);
    let graph = training_graph(&forward, &SgdOptions::default()).expect("training graph");
    let mut state = reference::init_params(&graph, 51);
    let mut rng = Rng::seed_from(51);
    let (batch, per_channel) = (3usize, 9usize);
    let momentum = f64::from(0.1f32);
    let mut mean = [0.0f64; 2];
    let mut var = [1.0f64; 2];
    for _ in 0..2 {
        let x: Vec<f64> = (0..batch * 18)
            .map(|_| 3.0 * rng.next_f64() + 1.0)
            .collect();
        let mut feeds = Feeds::new(batch, Mode::Train);
        feeds.inputs.insert(IMAGE.into(), x.clone());
        feeds.labels.insert(LABELS.into(), vec![0, 5, 17]);
        feeds.scalars.insert("lr".into(), 0.1);
        reference::run(&graph, &feeds, &mut state).expect("training step");

        // running = (1 − m)·running + m·stat, the variance unbiased (÷ (M − 1)).
        for c in 0..2 {
            let values: Vec<f64> = (0..batch)
                .flat_map(|n| x[n * 18 + c * per_channel..n * 18 + (c + 1) * per_channel].to_vec())
                .collect();
            let count = values.len() as f64;
            let batch_mean = values.iter().sum::<f64>() / count;
            let unbiased =
                values.iter().map(|v| (v - batch_mean).powi(2)).sum::<f64>() / (count - 1.0);
            mean[c] = (1.0 - momentum) * mean[c] + momentum * batch_mean;
            var[c] = (1.0 - momentum) * var[c] + momentum * unbiased;
        }
        assert_close("running mean", &state["bn0.running_mean"], &mean);
        assert_close("running var", &state["bn0.running_var"], &var);
    }
}
