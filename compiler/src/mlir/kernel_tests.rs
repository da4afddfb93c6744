//! Kernel tests: each op and each fused kernel is scheduled, emitted, JIT-compiled and run on
//! the CPU target, and compared with the float64 reference interpreter on random data with odd
//! sizes, strides, padding and small batches (including 1, below the planned maximum).

use std::collections::BTreeMap;

use grammar::{SourceFile, Span};
use runtime::program::{HostTensor, ParamStore, TensorRef};
use runtime::rng::Rng;
use runtime::target::cpu::CpuExecutable;

use crate::codegen::{compile_entries, EntryGraph};
use crate::ir::{Activation, DType, Graph, Init, NodeId, Op, ParamRole, TensorType};
use crate::reference::{self, Feeds, Mode};
use crate::schedule::{GraphMode, KernelKind};

/// A graph under construction with explicit types.
pub(crate) struct Net {
    pub graph: Graph,
    next_span: u32,
}

impl Net {
    pub fn new() -> Self {
        Net {
            graph: Graph::new(),
            next_span: 0,
        }
    }

    fn span(&mut self) -> Span {
        self.next_span += 4;
        Span::new(self.next_span, self.next_span + 3)
    }

    pub fn add(&mut self, op: Op, ty: TensorType, inputs: &[NodeId]) -> NodeId {
        let span = self.span();
        self.graph.add(op, ty, span, inputs)
    }

    /// `self.ty(id)`, cloned.
    pub fn ty(&self, id: NodeId) -> TensorType {
        self.graph.node(id).ty.clone()
    }

    pub fn input(&mut self, name: &str, dims: &[usize]) -> NodeId {
        self.add(
            Op::Input { name: name.into() },
            TensorType::batch(dims.to_vec()),
            &[],
        )
    }

    pub fn labels(&mut self) -> NodeId {
        let ty = TensorType {
            dtype: DType::I32,
            batched: true,
            dims: Vec::new(),
        };
        self.add(
            Op::Labels {
                name: "labels".into(),
            },
            ty,
            &[],
        )
    }

    pub fn scalar(&mut self, name: &str) -> NodeId {
        self.add(Op::Scalar { name: name.into() }, TensorType::scalar(), &[])
    }

    pub fn param(&mut self, name: &str, role: ParamRole, dims: &[usize]) -> NodeId {
        let op = Op::Param {
            name: name.into(),
            role,
            init: Init::Constant(0.0),
        };
        self.add(op, TensorType::fixed(dims.to_vec()), &[])
    }

    /// An op whose type is the type of its first operand.
    pub fn same(&mut self, op: Op, inputs: &[NodeId]) -> NodeId {
        let ty = self.ty(inputs[0]);
        self.add(op, ty, inputs)
    }

    pub fn output(&mut self, name: &str, id: NodeId) {
        self.graph.add_output(name, id);
    }
}

/// Test data: feeds and persistent tensors, in f32, drawn from a seeded generator.
pub(crate) struct Data {
    pub inputs: BTreeMap<String, Vec<f32>>,
    pub labels: Vec<i32>,
    pub scalars: BTreeMap<String, f32>,
    pub state: BTreeMap<String, Vec<f32>>,
    pub seed: u64,
}

/// How inputs are drawn.
#[derive(Clone, Copy)]
pub(crate) enum Draw {
    /// Uniform in [-2, 2].
    Uniform,
    /// Multiples of 0.5 in [-2, 2] (many exact ties and zeros).
    Coarse,
}

pub(crate) fn draw(rng: &mut Rng, count: usize, how: Draw) -> Vec<f32> {
    (0..count)
        .map(|_| match how {
            Draw::Uniform => rng.next_f32() * 4.0 - 2.0,
            Draw::Coarse => (rng.below(9) as f32) * 0.5 - 2.0,
        })
        .collect()
}

impl Data {
    /// Random data for every leaf of `graph` at batch `batch`.
    pub fn random(graph: &Graph, batch: usize, seed: u64, how: Draw) -> Self {
        let mut rng = Rng::seed_from(seed);
        let mut data = Data {
            inputs: BTreeMap::new(),
            labels: Vec::new(),
            scalars: BTreeMap::new(),
            state: BTreeMap::new(),
            seed: 0x1234_5678_9ABC_DEF1 ^ seed,
        };
        for id in graph.node_ids() {
            let node = graph.node(id);
            let count = reference::full_dims(&node.ty, batch).iter().product();
            match &node.op {
                Op::Input { name } => {
                    data.inputs.insert(name.clone(), draw(&mut rng, count, how));
                }
                Op::Labels { .. } => {
                    let classes = label_classes(graph, id).max(1);
                    data.labels = (0..count)
                        .map(|_| rng.below(classes as u64) as i32)
                        .collect();
                }
                Op::Scalar { name } => {
                    data.scalars.insert(name.clone(), 0.1);
                }
                Op::Param { name, role, .. } => {
                    let values = match role {
                        ParamRole::RunningVar => (0..count).map(|_| 0.5 + rng.next_f32()).collect(),
                        _ => draw(&mut rng, count, Draw::Uniform)
                            .iter()
                            .map(|v| v * 0.5)
                            .collect(),
                    };
                    data.state.insert(name.clone(), values);
                }
                _ => {}
            }
        }
        data
    }
}

/// The number of classes of the logits a labels node is used with (the second dim of a
/// sibling operand).
fn label_classes(graph: &Graph, labels: NodeId) -> usize {
    graph
        .users(labels)
        .iter()
        .filter_map(|&(user, _)| graph.inputs(user).first().copied())
        .filter_map(|logits| graph.node(logits).ty.dims.first().copied())
        .next()
        .unwrap_or(1)
}

/// What one run produced: outputs by name and the persistent tensors afterwards.
#[derive(Debug, PartialEq)]
pub(crate) struct RunResult {
    pub outputs: BTreeMap<String, Vec<f64>>,
    pub state: BTreeMap<String, Vec<f64>>,
}

/// Runs `graph` in the reference interpreter.
pub(crate) fn run_reference(graph: &Graph, mode: Mode, batch: usize, data: &Data) -> RunResult {
    let mut feeds = Feeds::new(batch, mode);
    for (name, values) in &data.inputs {
        feeds
            .inputs
            .insert(name.clone(), values.iter().map(|&v| f64::from(v)).collect());
    }
    feeds.labels.insert("labels".into(), data.labels.clone());
    for (name, value) in &data.scalars {
        feeds.scalars.insert(name.clone(), f64::from(*value));
    }
    feeds.dropout_seed = data.seed;
    let mut state: reference::State = data
        .state
        .iter()
        .map(|(name, values)| (name.clone(), values.iter().map(|&v| f64::from(v)).collect()))
        .collect();
    let values = reference::run(graph, &feeds, &mut state).expect("reference run");
    let outputs = graph
        .outputs()
        .iter()
        .map(|(name, id)| (name.clone(), values[id].clone()))
        .collect();
    RunResult { outputs, state }
}

/// Compiles `graph` alone into a program with entry `test` and runs it on the CPU.
pub(crate) fn run_cpu(
    graph: &Graph,
    mode: GraphMode,
    batch: usize,
    max_batch: usize,
    data: &Data,
) -> RunResult {
    let source = SourceFile::new("test.coop", " ".repeat(4096));
    let entries = [EntryGraph {
        name: "test",
        graph,
        mode,
    }];
    let compiled = compile_entries(&entries, Some(&source), max_batch).expect("codegen");
    let mut executable = match CpuExecutable::compile(&compiled.program) {
        Ok(executable) => executable,
        Err(error) => panic!("{error}\n{}", compiled.program.mlir),
    };
    let mut store = ParamStore::default();
    for (name, values) in &data.state {
        let node = graph.param(name).expect("param");
        let shape = reference::full_dims(&graph.node(node).ty, 1);
        store.insert(name.clone(), HostTensor::f32(shape, values.clone()));
    }
    for (name, id) in graph
        .params()
        .iter()
        .filter_map(|&id| match &graph.node(id).op {
            Op::Param { name, .. } => Some((name.clone(), id)),
            _ => None,
        })
    {
        if store.get(&name).is_none() {
            let shape = reference::full_dims(&graph.node(id).ty, 1);
            store.insert(name, HostTensor::zeros(runtime::program::DType::F32, shape));
        }
    }
    let seed = [data.seed as u32 as i32, (data.seed >> 32) as u32 as i32];
    let scalars: Vec<(String, [f32; 1])> = data
        .scalars
        .iter()
        .map(|(name, value)| (name.clone(), [*value]))
        .collect();
    let mut feeds: Vec<(&str, TensorRef<'_>)> = Vec::new();
    for (name, values) in &data.inputs {
        feeds.push((name, TensorRef::F32(values)));
    }
    feeds.push(("labels", TensorRef::I32(&data.labels)));
    for (name, value) in &scalars {
        feeds.push((name, TensorRef::F32(value)));
    }
    feeds.push(("dropout_seed", TensorRef::I32(&seed)));
    let outputs = executable
        .run("test", batch, &feeds, &mut store)
        .expect("cpu run");
    let widen = |tensor: &HostTensor| -> Vec<f64> {
        match (tensor.as_f32(), tensor.as_i32()) {
            (Some(values), _) => values.iter().map(|&v| f64::from(v)).collect(),
            (_, Some(values)) => values.iter().map(|&v| f64::from(v)).collect(),
            _ => Vec::new(),
        }
    };
    RunResult {
        outputs: outputs
            .iter()
            .map(|(name, tensor)| (name.clone(), widen(tensor)))
            .collect(),
        state: store
            .tensors
            .iter()
            .map(|(name, tensor)| (name.clone(), widen(tensor)))
            .collect(),
    }
}

/// Asserts `found` matches `expected` elementwise within `|e| · relative + scale · absolute`,
/// where `scale` is the largest magnitude of `expected` (at least 1).
pub(crate) fn assert_close(
    what: &str,
    found: &[f64],
    expected: &[f64],
    relative: f64,
    absolute: f64,
) {
    assert_eq!(found.len(), expected.len(), "{what}: length");
    let scale = expected.iter().fold(1.0f64, |acc, v| acc.max(v.abs()));
    for (index, (f, e)) in found.iter().zip(expected).enumerate() {
        let bound = e.abs() * relative + scale * absolute;
        let same_non_finite = (e.is_nan() && f.is_nan()) || (e.is_infinite() && f == e);
        assert!(
            same_non_finite || (f - e).abs() <= bound,
            "{what}[{index}]: found {f}, expected {e} (bound {bound})"
        );
    }
}

/// Runs `graph` on both and compares every output and every persistent tensor.
pub(crate) fn check(graph: &Graph, mode: GraphMode, batch: usize, max_batch: usize, how: Draw) {
    let data = Data::random(graph, batch, 17 + batch as u64, how);
    let reference_mode = if mode == GraphMode::Train {
        Mode::Train
    } else {
        Mode::Eval
    };
    let expected = run_reference(graph, reference_mode, batch, &data);
    let found = run_cpu(graph, mode, batch, max_batch, &data);
    for (name, values) in &expected.outputs {
        let Some(found_values) = found.outputs.get(name) else {
            let schedule = crate::schedule::schedule(graph, max_batch, mode).expect("schedule");
            let text = crate::schedule::print::print_schedule(&schedule);
            panic!(
                "output `{name}` missing from {:?}\n{text}",
                found.outputs.keys()
            );
        };
        assert_close(name, found_values, values, 2e-5, 2e-6);
    }
    for (name, values) in &expected.state {
        assert_close(name, &found.state[name], values, 2e-5, 2e-6);
    }
}

/// `check` at batches 1 and 3 with the arena planned for 4.
pub(crate) fn check_batches(graph: &Graph, mode: GraphMode, how: Draw) {
    for batch in [1, 3] {
        check(graph, mode, batch, 4, how);
    }
}

fn all_activations() -> Vec<Activation> {
    vec![
        Activation::Relu,
        Activation::Prelu,
        Activation::Elu { alpha: 1.0 },
        Activation::Softplus {
            beta: 1.0,
            threshold: 20.0,
        },
        Activation::Softplus {
            beta: 15.0,
            threshold: 20.0,
        },
        Activation::LeakyRelu { slope: 0.01 },
        Activation::Identity,
    ]
}

#[test]
fn activations_and_their_gradients_match_the_reference() {
    for activation in all_activations() {
        for slope_dims in [[1usize], [5]] {
            let mut net = Net::new();
            let x = net.input("x", &[5, 3, 7]);
            let dy = net.input("dy", &[5, 3, 7]);
            let slope = net.param("slope", ParamRole::PreluSlope, &slope_dims);
            let is_prelu = activation == Activation::Prelu;
            let forward_inputs = if is_prelu { vec![x, slope] } else { vec![x] };
            let y = net.same(Op::Activation(activation.clone()), &forward_inputs);
            let grad_inputs = if is_prelu {
                vec![dy, x, slope]
            } else {
                vec![dy, x]
            };
            let dx = net.same(Op::ActivationGrad(activation.clone()), &grad_inputs);
            net.output("y", y);
            net.output("dx", dx);
            if is_prelu {
                let ty = net.ty(slope);
                let dslope = net.add(Op::PreluSlopeGrad, ty, &[dy, x]);
                net.output("dslope", dslope);
            }
            check_batches(&net.graph, GraphMode::Train, Draw::Coarse);
            check_batches(&net.graph, GraphMode::Train, Draw::Uniform);
            if !is_prelu {
                break;
            }
        }
    }
}

#[test]
fn mix_forward_and_backward_fuse_into_one_kernel_each() {
    let mut net = Net::new();
    let x = net.input("x", &[4, 5, 6]);
    let dy = net.input("dy", &[4, 5, 6]);
    let slope = net.param("slope", ParamRole::PreluSlope, &[1]);
    let kinds = [
        Activation::Relu,
        Activation::Prelu,
        Activation::Elu { alpha: 1.0 },
        Activation::Softplus {
            beta: 1.0,
            threshold: 20.0,
        },
    ];
    let mut branches = Vec::new();
    let mut grads = Vec::new();
    for kind in &kinds {
        let prelu = *kind == Activation::Prelu;
        let inputs = if prelu { vec![x, slope] } else { vec![x] };
        branches.push(net.same(Op::Activation(kind.clone()), &inputs));
        let scaled = net.same(Op::Scale { factor: 0.25 }, &[dy]);
        let inputs = if prelu {
            vec![scaled, x, slope]
        } else {
            vec![scaled, x]
        };
        grads.push(net.same(Op::ActivationGrad(kind.clone()), &inputs));
    }
    let y = net.same(
        Op::Mix {
            weights: vec![0.25; 4],
        },
        &branches,
    );
    let dx = net.same(Op::Add, &grads);
    net.output("y", y);
    net.output("dx", dx);
    let schedule = crate::schedule::schedule(&net.graph, 4, GraphMode::Train).expect("schedule");
    assert_eq!(schedule.kernels.len(), 2, "{:?}", schedule.kernels);
    check_batches(&net.graph, GraphMode::Train, Draw::Uniform);
}

/// Adds the training-mode BatchNorm of `x` (statistics, apply, running updates); returns
/// `(mean, var, scale, y)`.
fn batchnorm_train(net: &mut Net, x: NodeId, channels: usize) -> (NodeId, NodeId, NodeId, NodeId) {
    let vector = TensorType::fixed(vec![channels]);
    let mean = net.add(Op::BatchMean, vector.clone(), &[x]);
    let var = net.add(Op::BatchVar, vector, &[x, mean]);
    let scale = net.param("bn.scale", ParamRole::BatchNormScale, &[channels]);
    let shift = net.param("bn.shift", ParamRole::BatchNormShift, &[channels]);
    let running_mean = net.param("bn.running_mean", ParamRole::RunningMean, &[channels]);
    let running_var = net.param("bn.running_var", ParamRole::RunningVar, &[channels]);
    let y = net.same(
        Op::BatchNormApply { eps: 1e-5 },
        &[x, mean, var, scale, shift],
    );
    let update = |unbiased| Op::RunningUpdate {
        momentum: 0.1,
        unbiased,
    };
    net.same(update(false), &[running_mean, mean, x]);
    net.same(update(true), &[running_var, var, x]);
    (mean, var, scale, y)
}

#[test]
fn batchnorm_training_forward_and_backward_match_the_reference() {
    for dims in [vec![4, 5, 3], vec![6]] {
        let channels = dims[0];
        let mut net = Net::new();
        let x = net.input("x", &dims);
        let dy = net.input("dy", &dims);
        let (mean, var, scale, y) = batchnorm_train(&mut net, x, channels);
        let r = net.same(Op::Activation(Activation::Relu), &[y]);
        let g = net.same(Op::ActivationGrad(Activation::Relu), &[dy, y]);
        let vector = TensorType::fixed(vec![channels]);
        let dshift = net.add(Op::ChannelSum, vector.clone(), &[g]);
        let dscale = net.add(
            Op::BatchNormScaleGrad { eps: 1e-5 },
            vector,
            &[g, x, mean, var],
        );
        let grad = Op::BatchNormInputGrad { eps: 1e-5 };
        let dx = net.same(grad, &[g, x, mean, var, scale, dscale, dshift]);
        for (name, id) in [("r", r), ("dshift", dshift), ("dscale", dscale), ("dx", dx)] {
            net.output(name, id);
        }
        let schedule =
            crate::schedule::schedule(&net.graph, 4, GraphMode::Train).expect("schedule");
        let kinds: Vec<KernelKind> = schedule.kernels.iter().map(|kernel| kernel.kind).collect();
        assert!(kinds.contains(&KernelKind::Coefficients), "{kinds:?}");
        if dims.len() == 3 {
            assert!(kinds.contains(&KernelKind::Partials), "{kinds:?}");
        }
        let input_grad = schedule.kernels.iter().find(|kernel| {
            kernel.kind == KernelKind::Elementwise
                && kernel
                    .nodes
                    .iter()
                    .any(|&id| matches!(net.graph.node(id).op, Op::BatchNormInputGrad { .. }))
        });
        assert!(
            input_grad.is_some_and(|kernel| kernel.batch_split),
            "{input_grad:?}"
        );
        for batch in [2, 3] {
            check(&net.graph, GraphMode::Train, batch, 4, Draw::Uniform);
        }
    }
}

#[test]
fn evaluation_batchnorm_uses_running_statistics() {
    let mut net = Net::new();
    let x = net.input("x", &[3, 4, 5]);
    let scale = net.param("bn.scale", ParamRole::BatchNormScale, &[3]);
    let shift = net.param("bn.shift", ParamRole::BatchNormShift, &[3]);
    let mean = net.param("bn.running_mean", ParamRole::RunningMean, &[3]);
    let var = net.param("bn.running_var", ParamRole::RunningVar, &[3]);
    let bn = Op::BatchNorm {
        eps: 1e-5,
        momentum: 0.1,
    };
    let y = net.same(bn, &[x, scale, shift, mean, var]);
    let r = net.same(Op::Activation(Activation::Relu), &[y]);
    net.output("r", r);
    check_batches(&net.graph, GraphMode::Eval, Draw::Uniform);
}

#[test]
fn convolutions_and_dense_products_match_the_reference() {
    let mut net = Net::new();
    let x = net.input("x", &[3, 7, 9]);
    let w = net.param("conv.weight", ParamRole::Weight, &[5, 3, 3, 3]);
    let b = net.param("conv.bias", ParamRole::Bias, &[5]);
    let (stride, padding) = ([2, 1], [1, 2]);
    let conv = Op::Conv2d {
        stride,
        padding,
        bias: true,
    };
    let y = net.add(conv, TensorType::batch(vec![5, 4, 11]), &[x, w, b]);
    let dy = net.input("dy", &[5, 4, 11]);
    let dx = net.add(Op::Conv2dInputGrad { stride, padding }, net.ty(x), &[dy, w]);
    let dw = net.add(
        Op::Conv2dWeightGrad { stride, padding },
        net.ty(w),
        &[dy, x],
    );
    let unbiased = Op::Conv2d {
        stride: [1, 1],
        padding: [0, 0],
        bias: false,
    };
    let z = net.add(unbiased, TensorType::batch(vec![5, 5, 7]), &[x, w]);
    let flat = net.add(Op::Flatten, TensorType::batch(vec![175]), &[z]);
    let dense_w = net.param("dense.weight", ParamRole::Weight, &[4, 175]);
    let dense_b = net.param("dense.bias", ParamRole::Bias, &[4]);
    let logits = net.add(
        Op::Dense { bias: true },
        TensorType::batch(vec![4]),
        &[flat, dense_w, dense_b],
    );
    let dlogits = net.input("dlogits", &[4]);
    let dflat = net.add(
        Op::DenseInputGrad,
        TensorType::batch(vec![175]),
        &[dlogits, dense_w],
    );
    let dz = net.add(Op::Reshape, net.ty(z), &[dflat]);
    let relu = net.same(Op::Activation(Activation::Relu), &[dz]);
    let ddense = net.add(Op::DenseWeightGrad, net.ty(dense_w), &[dlogits, flat]);
    for (name, id) in [
        ("y", y),
        ("dx", dx),
        ("dw", dw),
        ("logits", logits),
        ("relu", relu),
    ] {
        net.output(name, id);
    }
    net.output("ddense", ddense);
    let db = net.add(Op::ChannelSum, TensorType::fixed(vec![5]), &[dy]);
    net.output("db", db);
    let schedule = crate::schedule::schedule(&net.graph, 4, GraphMode::Train).expect("schedule");
    let fused = schedule
        .kernels
        .iter()
        .filter(|kernel| kernel.nodes.len() == 2)
        .count();
    assert_eq!(fused, 1, "the bias gradient joins the weight gradient");

    check_batches(&net.graph, GraphMode::Train, Draw::Uniform);
}

#[test]
fn pooling_and_shortcuts_match_the_reference_including_ties() {
    let mut net = Net::new();
    let x = net.input("x", &[3, 7, 6]);
    let (kernel, stride, padding) = ([3, 2], [2, 2], [1, 1]);
    let pooled = TensorType::batch(vec![3, 4, 4]);
    let max = net.add(
        Op::MaxPool {
            kernel,
            stride,
            padding,
        },
        pooled.clone(),
        &[x],
    );
    let avg = net.add(
        Op::AvgPool {
            kernel,
            stride,
            padding,
        },
        pooled,
        &[x],
    );
    let dy = net.input("dy", &[3, 4, 4]);
    let dmax = net.add(
        Op::MaxPoolGrad {
            kernel,
            stride,
            padding,
        },
        net.ty(x),
        &[dy, x],
    );
    let davg = net.add(
        Op::AvgPoolGrad {
            kernel,
            stride,
            padding,
        },
        net.ty(x),
        &[dy],
    );
    let global = net.add(Op::GlobalAvgPool, TensorType::batch(vec![3]), &[x]);
    let dglobal_in = net.input("dg", &[3]);
    let dglobal = net.add(Op::GlobalAvgPoolGrad, net.ty(x), &[dglobal_in]);
    let shortcut = Op::ShortcutA {
        stride: 2,
        pad_channels: 2,
    };
    let short = net.add(shortcut, TensorType::batch(vec![7, 4, 3]), &[x]);
    let ds = net.input("ds", &[7, 4, 3]);
    let dshort = net.add(
        Op::ShortcutAGrad {
            stride: 2,
            pad_channels: 2,
        },
        net.ty(x),
        &[ds],
    );
    for (name, id) in [("max", max), ("avg", avg), ("dmax", dmax), ("davg", davg)] {
        net.output(name, id);
    }
    for (name, id) in [
        ("global", global),
        ("dglobal", dglobal),
        ("short", short),
        ("dshort", dshort),
    ] {
        net.output(name, id);
    }
    check_batches(&net.graph, GraphMode::Train, Draw::Coarse);
    check_batches(&net.graph, GraphMode::Train, Draw::Uniform);
}

#[test]
fn loss_gradient_and_correct_count_match_the_reference() {
    let mut net = Net::new();
    let logits = net.input("logits", &[7]);
    let labels = net.labels();
    let loss = net.add(
        Op::SoftmaxCrossEntropy,
        TensorType::scalar(),
        &[logits, labels],
    );
    let dlogits = net.same(Op::SoftmaxCrossEntropyGrad, &[logits, labels]);
    let correct = net.add(Op::CorrectCount, TensorType::scalar(), &[logits, labels]);
    for (name, id) in [("loss", loss), ("dlogits", dlogits), ("correct", correct)] {
        net.output(name, id);
    }
    check_batches(&net.graph, GraphMode::Train, Draw::Uniform);
    check_batches(&net.graph, GraphMode::Train, Draw::Coarse);
}

#[test]
fn sgd_updates_run_after_every_read_of_the_old_weight() {
    for (momentum, weight_decay, nesterov) in
        [(0.9, 1e-4, false), (0.9, 0.0, true), (0.0, 0.0, false)]
    {
        let mut net = Net::new();
        let x = net.input("x", &[6]);
        let w = net.param("w", ParamRole::Weight, &[4, 6]);
        let g = net.param("g", ParamRole::Weight, &[4, 6]);
        let buffer = net.param("w.momentum", ParamRole::MomentumBuffer, &[4, 6]);
        let lr = net.scalar("lr");
        let sgd = Op::SgdUpdate {
            momentum,
            weight_decay,
            nesterov,
        };
        net.same(sgd, &[w, g, buffer, lr]);
        let y = net.add(
            Op::Dense { bias: false },
            TensorType::batch(vec![4]),
            &[x, w],
        );
        net.output("y", y);
        check_batches(&net.graph, GraphMode::Train, Draw::Uniform);
    }
}

#[test]
fn dropout_masks_match_the_reference_and_vanish_in_evaluation() {
    let mut net = Net::new();
    let x = net.input("x", &[3, 5]);
    let dy = net.input("dy", &[3, 5]);
    let y = net.same(Op::Dropout { p: 0.3 }, &[x]);
    let site = y.index() as u32;
    let dx = net.same(Op::DropoutGrad { p: 0.3, site }, &[dy, x]);
    net.output("y", y);
    net.output("dx", dx);
    check_batches(&net.graph, GraphMode::Train, Draw::Uniform);
    let mut eval = Net::new();
    let x = eval.input("x", &[3, 5]);
    let y = eval.same(Op::Dropout { p: 0.3 }, &[x]);
    eval.output("y", y);
    check_batches(&eval.graph, GraphMode::Eval, Draw::Uniform);
}

#[test]
fn residual_add_with_activation_fuses_with_the_batchnorm_apply() {
    let mut net = Net::new();
    let x = net.input("x", &[4, 3, 5]);
    let skip = net.input("skip", &[4, 3, 5]);
    let (_, _, _, y) = batchnorm_train(&mut net, x, 4);
    let sum = net.same(Op::Add, &[y, skip]);
    let out = net.same(Op::Activation(Activation::Relu), &[sum]);
    net.output("out", out);
    let schedule = crate::schedule::schedule(&net.graph, 4, GraphMode::Train).expect("schedule");
    let fused: Vec<usize> = schedule
        .kernels
        .iter()
        .map(|kernel| kernel.nodes.len())
        .collect();
    assert!(fused.contains(&3), "{fused:?}");
    check_batches(&net.graph, GraphMode::Train, Draw::Uniform);
}

#[test]
fn two_runs_are_bitwise_equal() {
    let mut net = Net::new();
    let x = net.input("x", &[8, 6, 6]);
    let (_, _, _, y) = batchnorm_train(&mut net, x, 8);
    let r = net.same(Op::Activation(Activation::Elu { alpha: 1.0 }), &[y]);
    let pooled = net.add(Op::GlobalAvgPool, TensorType::batch(vec![8]), &[r]);
    net.output("pooled", pooled);
    let data = Data::random(&net.graph, 5, 3, Draw::Uniform);
    let first = run_cpu(&net.graph, GraphMode::Train, 5, 8, &data);
    let second = run_cpu(&net.graph, GraphMode::Train, 5, 8, &data);
    let bits = |result: &RunResult| -> Vec<u64> {
        result
            .outputs
            .values()
            .chain(result.state.values())
            .flatten()
            .map(|v| v.to_bits())
            .collect()
    };
    assert_eq!(bits(&first), bits(&second));
}

/// Output size of a window along one axis.
fn window_out(size: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    (size + 2 * padding - kernel) / stride + 1
}

#[test]
fn random_convolution_and_pooling_shapes_match_the_reference() {
    let mut rng = Rng::seed_from(2024);
    for _ in 0..6 {
        let pick = |rng: &mut Rng, low: usize, high: usize| {
            low + rng.below((high - low + 1) as u64) as usize
        };
        let (cin, cout) = (pick(&mut rng, 1, 4), pick(&mut rng, 1, 5));
        let kernel = [pick(&mut rng, 1, 3), pick(&mut rng, 1, 3)];
        let stride = [pick(&mut rng, 1, 3), pick(&mut rng, 1, 3)];
        let padding = [
            pick(&mut rng, 0, kernel[0] / 2),
            pick(&mut rng, 0, kernel[1] / 2),
        ];
        let (h, w) = (pick(&mut rng, kernel[0], 9), pick(&mut rng, kernel[1], 9));
        let (ho, wo) = (
            window_out(h, kernel[0], stride[0], padding[0]),
            window_out(w, kernel[1], stride[1], padding[1]),
        );
        let mut net = Net::new();
        let x = net.input("x", &[cin, h, w]);
        let weight = net.param("w", ParamRole::Weight, &[cout, cin, kernel[0], kernel[1]]);
        let bias = net.param("b", ParamRole::Bias, &[cout]);
        let conv = Op::Conv2d {
            stride,
            padding,
            bias: true,
        };
        let y = net.add(
            conv,
            TensorType::batch(vec![cout, ho, wo]),
            &[x, weight, bias],
        );
        let dy = net.input("dy", &[cout, ho, wo]);
        let dx = net.add(
            Op::Conv2dInputGrad { stride, padding },
            net.ty(x),
            &[dy, weight],
        );
        let dw = net.add(
            Op::Conv2dWeightGrad { stride, padding },
            net.ty(weight),
            &[dy, x],
        );
        let db = net.add(Op::ChannelSum, TensorType::fixed(vec![cout]), &[dy]);
        let pooled = TensorType::batch(vec![cin, ho, wo]);
        let max = net.add(
            Op::MaxPool {
                kernel,
                stride,
                padding,
            },
            pooled.clone(),
            &[x],
        );
        let avg = net.add(
            Op::AvgPool {
                kernel,
                stride,
                padding,
            },
            pooled,
            &[x],
        );
        let dp = net.input("dp", &[cin, ho, wo]);
        let max_grad = Op::MaxPoolGrad {
            kernel,
            stride,
            padding,
        };
        let dmax = net.add(max_grad, net.ty(x), &[dp, x]);
        let davg = net.add(
            Op::AvgPoolGrad {
                kernel,
                stride,
                padding,
            },
            net.ty(x),
            &[dp],
        );
        for (name, id) in [("y", y), ("dx", dx), ("dw", dw), ("db", db), ("max", max)] {
            net.output(name, id);
        }
        for (name, id) in [("avg", avg), ("dmax", dmax), ("davg", davg)] {
            net.output(name, id);
        }
        check_batches(&net.graph, GraphMode::Train, Draw::Coarse);
    }
}

#[test]
fn outputs_that_are_views_or_leaves_are_copied() {
    let mut net = Net::new();
    let x = net.input("x", &[2, 3, 2]);
    let flat = net.add(Op::Flatten, TensorType::batch(vec![12]), &[x]);
    let relu = net.same(Op::Activation(Activation::Relu), &[flat]);
    let w = net.param("w", ParamRole::Weight, &[3]);
    net.output("relu", relu);
    net.output("flat", flat);
    net.output("input", x);
    net.output("weight", w);
    net.output("again", relu);
    check_batches(&net.graph, GraphMode::Eval, Draw::Uniform);
}

#[test]
fn unpadded_and_tiled_pooling_match_the_reference_including_ties_and_uncovered_rows() {
    let cases: [([usize; 2], [usize; 2]); 3] =
        [([2, 2], [2, 2]), ([3, 2], [3, 2]), ([3, 3], [2, 1])];
    for (kernel, stride) in cases {
        let padding = [0, 0];
        let (ho, wo) = (
            window_out(7, kernel[0], stride[0], 0),
            window_out(6, kernel[1], stride[1], 0),
        );
        let mut net = Net::new();
        let x = net.input("x", &[3, 7, 6]);
        let pooled = TensorType::batch(vec![3, ho, wo]);
        let max = net.add(
            Op::MaxPool {
                kernel,
                stride,
                padding,
            },
            pooled.clone(),
            &[x],
        );
        let avg = net.add(
            Op::AvgPool {
                kernel,
                stride,
                padding,
            },
            pooled,
            &[x],
        );
        let dy = net.input("dy", &[3, ho, wo]);
        let dmax = net.add(
            Op::MaxPoolGrad {
                kernel,
                stride,
                padding,
            },
            net.ty(x),
            &[dy, x],
        );
        let davg = net.add(
            Op::AvgPoolGrad {
                kernel,
                stride,
                padding,
            },
            net.ty(x),
            &[dy],
        );
        for (name, id) in [("max", max), ("avg", avg), ("dmax", dmax), ("davg", davg)] {
            net.output(name, id);
        }
        check_batches(&net.graph, GraphMode::Train, Draw::Coarse);
        check_batches(&net.graph, GraphMode::Train, Draw::Uniform);
    }
}
