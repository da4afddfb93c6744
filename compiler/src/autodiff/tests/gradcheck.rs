//! Finite-difference gradient checks through the reference interpreter: the analytic
//! gradients of the backward graph against central differences of the loss graph's `loss`.
//!
//! Invariant: everything in float64; a gradient element passes when
//! `|analytic − numeric| ≤ RELATIVE·max(|analytic|, |numeric|) + ABSOLUTE`, tight enough that a
//! wrong factor anywhere fails.

use runtime::rng::Rng;

use super::super::{backward, loss_graph, trained_params, LABELS, LOSS};
use super::net::IMAGE;
use crate::ir::{Graph, NodeId, Op, ParamRole};
use crate::reference::init::fnv1a64;
use crate::reference::{self, Feeds, Mode, State};

/// Step of the central difference.
const STEP: f64 = 1e-5;
/// Relative tolerance.
const RELATIVE: f64 = 1e-5;
/// Absolute floor (the noise of a difference of two losses of size ~1, divided by 2·STEP).
const ABSOLUTE: f64 = 2e-9;

/// A uniform value in `[low, high)`.
pub fn uniform(rng: &mut Rng, low: f64, high: f64) -> f64 {
    low + (high - low) * rng.next_f64()
}

/// `count` values with `|v|` in `[0.1, 1)` and random sign: away from the kinks at 0.
pub fn away_from_zero(rng: &mut Rng, count: usize) -> Vec<f64> {
    (0..count)
        .map(|_| {
            let magnitude = uniform(rng, 0.1, 1.0);
            if rng.coin() {
                magnitude
            } else {
                -magnitude
            }
        })
        .collect()
}

/// Training feeds for `graph`: a random image batch (away from zero) and random labels.
pub fn random_feeds(graph: &Graph, batch: usize, seed: u64) -> Feeds {
    let mut rng = Rng::seed_from(seed);
    let mut feeds = Feeds::new(batch, Mode::Train);
    feeds.dropout_seed = seed;
    for id in graph.node_ids() {
        if let Op::Input { name } = &graph.node(id).op {
            let count = batch * graph.node(id).ty.item_elements();
            feeds
                .inputs
                .insert(name.clone(), away_from_zero(&mut rng, count));
        }
    }
    let classes = graph
        .output("logits")
        .map_or(1, |logits| graph.node(logits).ty.item_elements());
    let labels = (0..batch)
        .map(|_| rng.below(classes as u64) as i32)
        .collect();
    feeds.labels.insert(LABELS.into(), labels);
    feeds
}

/// PyTorch-default initial values, with BatchNorm parameters, running statistics and PReLU
/// slopes moved off their constant defaults so every term of their gradients matters.
pub fn random_state(graph: &Graph, seed: u64) -> State {
    let mut state = reference::init_params(graph, seed);
    for id in graph.params() {
        let Op::Param { name, role, .. } = &graph.node(id).op else {
            continue;
        };
        // One stream per name, so networks that share parameter names share their values.
        let mut rng = Rng::derive(seed, &[fnv1a64(name.as_bytes())]);
        let (low, high) = match role {
            ParamRole::BatchNormScale => (0.5, 1.5),
            ParamRole::BatchNormShift | ParamRole::RunningMean => (-0.5, 0.5),
            ParamRole::RunningVar => (0.5, 1.5),
            ParamRole::PreluSlope => (0.05, 0.45),
            ParamRole::Weight | ParamRole::Bias | ParamRole::MomentumBuffer => continue,
        };
        if let Some(values) = state.get_mut(name) {
            values
                .iter_mut()
                .for_each(|v| *v = uniform(&mut rng, low, high));
        }
    }
    state
}

/// What one gradient check found.
#[derive(Debug)]
pub struct Report {
    /// Elements compared.
    pub elements: usize,
    /// Largest `|analytic|` seen (shows the check was not vacuous).
    pub largest_gradient: f64,
    /// Failures: `(what, element, analytic, numeric)`.
    pub failures: Vec<(String, usize, f64, f64)>,
}

/// The loss of `graph` (a loss graph) on `feeds` and `state`.
fn loss_of(graph: &Graph, loss: NodeId, feeds: &Feeds, state: &State) -> f64 {
    let mut scratch = state.clone();
    let values = reference::run(graph, feeds, &mut scratch).expect("reference run of the loss");
    values[&loss][0]
}

/// A leaf whose gradient is checked: a trained parameter (in the state) or the image feed.
enum Leaf {
    Param(String),
    Image,
}

/// Which elements of each leaf are compared.
#[derive(Clone, Copy, Debug)]
pub enum Elements {
    /// Every element.
    All,
    /// At most this many per leaf, evenly spread, the first and last included.
    Spread(usize),
}

impl Elements {
    /// The indices to compare in a leaf of `len` elements.
    fn indices(self, len: usize) -> Vec<usize> {
        match self {
            Elements::Spread(count) if count >= 2 && len > count => {
                (0..count).map(|i| i * (len - 1) / (count - 1)).collect()
            }
            Elements::All | Elements::Spread(_) => (0..len).collect(),
        }
    }
}

/// Checks the gradients of every trained parameter of `forward`, and of the image input when
/// `with_image`, against central differences.
pub fn check(
    forward: &Graph,
    feeds: &Feeds,
    state: &State,
    with_image: bool,
    elements: Elements,
) -> Report {
    let losses = loss_graph(forward).expect("loss graph");
    let loss = losses.output(LOSS).expect("loss output");
    let mut graph = losses.clone();
    let mut wrt: Vec<(Leaf, NodeId)> = trained_params(&graph)
        .into_iter()
        .map(|id| match &graph.node(id).op {
            Op::Param { name, .. } => (Leaf::Param(name.clone()), id),
            _ => unreachable!("trained_params returns parameters"),
        })
        .collect();
    if with_image {
        let image = graph
            .node_ids()
            .into_iter()
            .find(|&id| matches!(&graph.node(id).op, Op::Input { name } if name == IMAGE));
        wrt.push((Leaf::Image, image.expect("image input")));
    }
    let ids: Vec<NodeId> = wrt.iter().map(|(_, id)| *id).collect();
    let gradients = backward(&mut graph, loss, &ids).expect("backward");
    let values = reference::run(&graph, feeds, &mut state.clone()).expect("reference run");
    let mut report = Report {
        elements: 0,
        largest_gradient: 0.0,
        failures: Vec::new(),
    };
    for (leaf, id) in &wrt {
        let grad = gradients
            .get(*id)
            .expect("every checked leaf reaches the loss");
        let analytic = &values[&grad];
        for element in elements.indices(analytic.len()) {
            let numeric = numeric_gradient(&losses, loss, feeds, state, leaf, element);
            report.record(leaf, element, analytic[element], numeric);
        }
    }
    report
}

/// The central difference of the loss in element `element` of `leaf`.
fn numeric_gradient(
    losses: &Graph,
    loss: NodeId,
    feeds: &Feeds,
    state: &State,
    leaf: &Leaf,
    element: usize,
) -> f64 {
    let shifted = |delta: f64| {
        let (mut feeds, mut state) = (feeds.clone(), state.clone());
        let values = match leaf {
            Leaf::Param(name) => state.get_mut(name),
            Leaf::Image => feeds.inputs.get_mut(IMAGE),
        };
        values.expect("leaf value")[element] += delta;
        loss_of(losses, loss, &feeds, &state)
    };
    (shifted(STEP) - shifted(-STEP)) / (2.0 * STEP)
}

impl Report {
    /// Compares one element and records a failure when it is outside the tolerance.
    fn record(&mut self, leaf: &Leaf, element: usize, exact: f64, numeric: f64) {
        self.elements += 1;
        self.largest_gradient = self.largest_gradient.max(exact.abs());
        let tolerance = RELATIVE * exact.abs().max(numeric.abs()) + ABSOLUTE;
        if (exact - numeric).abs() > tolerance || !exact.is_finite() {
            let name = match leaf {
                Leaf::Param(name) => name.clone(),
                Leaf::Image => IMAGE.to_string(),
            };
            self.failures.push((name, element, exact, numeric));
        }
    }
}

/// Runs [`check`] on every element and fails the test on any mismatch or a vacuous check.
pub fn assert_gradients(forward: &Graph, feeds: &Feeds, state: &State, with_image: bool) {
    assert_gradients_of(forward, feeds, state, with_image, Elements::All);
}

/// Runs [`check`] on `elements` and fails the test on any mismatch or a vacuous check.
pub fn assert_gradients_of(
    forward: &Graph,
    feeds: &Feeds,
    state: &State,
    with_image: bool,
    elements: Elements,
) {
    let report = check(forward, feeds, state, with_image, elements);
    assert!(report.elements > 0, "nothing was checked");
    assert!(report.largest_gradient > 1e-3, "vacuous check: {report:?}");
    let shown: Vec<_> = report.failures.iter().take(12).collect();
    assert!(
        report.failures.is_empty(),
        "{} of {} gradient elements differ from finite differences: {shown:#?}",
        report.failures.len(),
        report.elements
    );
}
