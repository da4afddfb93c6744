//! The experiment file's schema: one struct per YAML mapping, every mapping closed
//! (`deny_unknown_fields`), defaults written next to each field; and [`Experiment::issues`],
//! the checks of values and combinations that types alone do not express. docs/experiments.md
//! is the user-facing description of the same schema; keep the two in step.
//!
//! Invariant: an [`Experiment`] that deserialised and has no issues describes a run that can
//! be planned (every count positive, every rate finite and positive, every fraction in range,
//! the mix weights matching the activation set).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::DatasetKind;
use crate::schedule_lr::Schedule;

/// A whole experiment: what to train, on what, how, and which variant of the procedure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// The run's name; the file name without `.yaml` when absent.
    #[serde(default)]
    pub name: String,
    /// Free text: what the experiment reproduces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The network.
    pub model: ModelConfig,
    /// The data.
    pub dataset: DatasetConfig,
    /// Images per training batch (evaluation uses the same size).
    pub batch_size: u32,
    /// The seed every random choice derives from (initialisation, subsets, order,
    /// augmentation).
    #[serde(default)]
    pub seed: u64,
    /// The optimizer and its hyper-parameters.
    pub optimizer: OptimizerConfig,
    /// Which procedure of the paper's Table 5.
    pub variant: Variant,
    /// The activations mixed in phase 1 (and throughout, for `mixture`).
    #[serde(default)]
    pub mix: MixConfig,
    /// γ: the activation of the phase-2 network (`baseline`, `baseline-tpt`, `mix`);
    /// ReLU when absent. Meaningless for `mixture` and `wnla`, where it must stay absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<ActivationName>,
    /// Phase 1 (cooperative training); ignored by variants without one.
    #[serde(default)]
    pub phase1: Phase1Config,
    /// Phase 2 (the standard training).
    pub phase2: Phase2Config,
    /// Write a checkpoint every this many epochs (and always at the end of each phase);
    /// 0 writes only the phase-end ones.
    #[serde(default = "default_one")]
    pub checkpoint_every: u32,
    /// Evaluate on the test split every this many epochs (and always after the last).
    #[serde(default = "default_one")]
    pub eval_every: u32,
}

/// The network to train.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The `.coop` file, relative to the directory coopc runs in.
    pub file: PathBuf,
    /// Values for the model's parameters (`classes: 100`); the model's defaults otherwise.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, ModelParam>,
}

/// One model parameter value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModelParam {
    /// `true` or `false`.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A number with a fraction.
    Float(f64),
    /// Anything else, as text.
    Text(String),
}

/// The data set and how the training split is used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// Which data set.
    pub kind: DatasetKind,
    /// The directory holding its files as distributed.
    pub path: PathBuf,
    /// Fraction of the training split to use, in `(0, 1]`, chosen per class from the seed
    /// (the paper's Table 7 uses 0.25).
    #[serde(default = "default_one_f64")]
    pub subset: f64,
    /// Fraction of the (subset of the) training split held out for validation, in `[0, 1)`.
    #[serde(default)]
    pub validation: f64,
    /// Random crop with zero padding, and horizontal flips, on training images.
    #[serde(default)]
    pub augment: bool,
    /// Zero padding on each side before the random crop (when `augment`).
    #[serde(default = "default_crop_padding")]
    pub crop_padding: u32,
    /// Whether augmentation flips horizontally (when `augment`).
    #[serde(default = "default_true")]
    pub flip: bool,
    /// CIFAR-100 only: train on the 20 coarse classes instead of the 100 fine ones.
    #[serde(default)]
    pub coarse_labels: bool,
}

/// The optimizer. Only SGD exists; `kind` leaves room for others.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// The algorithm.
    #[serde(default)]
    pub kind: OptimizerKind,
    /// The base learning rate of both phases (each phase may override it).
    pub lr: f64,
    /// Momentum μ in `[0, 1)`.
    #[serde(default)]
    pub momentum: f64,
    /// L2 weight decay, added to the gradient as `weight_decay · p`.
    #[serde(default)]
    pub weight_decay: f64,
    /// Nesterov momentum (needs `momentum > 0`).
    #[serde(default)]
    pub nesterov: bool,
    /// Whether momentum buffers cross into phase 2; by default they restart, as a new
    /// PyTorch optimizer would.
    #[serde(default)]
    pub carry_momentum: bool,
}

/// Optimizer algorithms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Stochastic gradient descent in PyTorch's form.
    #[default]
    Sgd,
}

/// The procedures of the paper's Table 5 (see DESIGN.md, "The procedure and its variants").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// No phase 1; γ throughout.
    Baseline,
    /// Phase 1 with γ alone on phase 1's schedule, then γ: two-phase training without the mix.
    BaselineTpt,
    /// The method: the mix in phase 1, lowered to γ for phase 2.
    Mix,
    /// The mix in both phases, never lowered.
    Mixture,
    /// No phase 1; identity (no non-linear activation) throughout.
    Wnla,
}

impl Variant {
    /// The name used in experiment files.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Baseline => "baseline",
            Variant::BaselineTpt => "baseline-tpt",
            Variant::Mix => "mix",
            Variant::Mixture => "mixture",
            Variant::Wnla => "wnla",
        }
    }

    /// Whether the variant trains a phase 1 before phase 2.
    pub fn has_phase1(self) -> bool {
        matches!(self, Variant::BaselineTpt | Variant::Mix | Variant::Mixture)
    }

    /// Whether the variant's phase 2 uses the target activation γ.
    pub fn uses_target(self) -> bool {
        matches!(
            self,
            Variant::Baseline | Variant::BaselineTpt | Variant::Mix
        )
    }
}

/// Activation names as experiment files and the `.coop` language spell them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationName {
    /// `max(x, 0)`.
    Relu,
    /// Learnable negative slope, initialised to 0.25.
    Prelu,
    /// `α(eˣ − 1)` below zero, α = 1.
    Elu,
    /// `log(1 + eˣ)`.
    Softplus,
    /// Negative slope 0.01.
    LeakyRelu,
    /// No non-linearity.
    Identity,
}

impl ActivationName {
    /// The name used in experiment files.
    pub fn name(self) -> &'static str {
        match self {
            ActivationName::Relu => "relu",
            ActivationName::Prelu => "prelu",
            ActivationName::Elu => "elu",
            ActivationName::Softplus => "softplus",
            ActivationName::LeakyRelu => "leaky_relu",
            ActivationName::Identity => "identity",
        }
    }
}

/// The mix of phase 1: `y = Σᵢ βᵢ·Fᵢ(x)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixConfig {
    /// The activations Fᵢ; the paper's ReLU, PReLU, ELU, SoftPlus when absent.
    #[serde(default = "paper_activations")]
    pub activations: Vec<ActivationName>,
    /// The weights βᵢ, one per activation; `1/k` each when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<Vec<f64>>,
}

impl Default for MixConfig {
    fn default() -> Self {
        MixConfig {
            activations: paper_activations(),
            beta: None,
        }
    }
}

impl MixConfig {
    /// The weights, with the default `1/k` filled in.
    pub fn weights(&self) -> Vec<f64> {
        let equal = 1.0 / self.activations.len().max(1) as f64;
        self.beta
            .clone()
            .unwrap_or_else(|| vec![equal; self.activations.len()])
    }
}

/// Phase 1: its length and its learning-rate schedule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase1Config {
    /// Length as a fraction of phase 2's epochs, rounded to whole epochs (at least 1).
    /// With neither `fraction` nor `epochs`, the paper's 0.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// Length in epochs (instead of `fraction`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u32>,
    /// The phase's initial learning rate; `optimizer.lr` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// The phase's schedule; constant when absent.
    #[serde(default, with = "serde_yaml::with::singleton_map")]
    pub schedule: Schedule,
}

/// Phase 2: its length and its learning-rate schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase2Config {
    /// Length in epochs.
    pub epochs: u32,
    /// The phase's initial learning rate; `optimizer.lr` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// The phase's schedule; constant when absent.
    #[serde(default, with = "serde_yaml::with::singleton_map")]
    pub schedule: Schedule,
}

/// The paper's phase-1 length when none is given: 20% of phase 2.
pub const DEFAULT_PHASE1_FRACTION: f64 = 0.2;

fn default_one() -> u32 {
    1
}

fn default_one_f64() -> f64 {
    1.0
}

fn default_true() -> bool {
    true
}

fn default_crop_padding() -> u32 {
    4
}

fn paper_activations() -> Vec<ActivationName> {
    use ActivationName::*;
    vec![Relu, Prelu, Elu, Softplus]
}

/// A value that breaks a rule: the full key path and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// Dotted key path, e.g. `optimizer.momentum`.
    pub key: String,
    /// What is wrong, as a sentence fragment ("must be in [0, 1), got 1.5").
    pub message: String,
}

/// Collects issues under dotted keys.
#[derive(Default)]
struct Issues(Vec<Issue>);

impl Issues {
    fn add(&mut self, key: &str, message: impl Into<String>) {
        self.0.push(Issue {
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn positive(&mut self, key: &str, value: f64) {
        if !(value.is_finite() && value > 0.0) {
            self.add(key, format!("must be a positive number, got {value}"));
        }
    }

    fn in_range(&mut self, key: &str, value: f64, ok: bool, range: &str) {
        if !(ok && value.is_finite()) {
            self.add(key, format!("must be in {range}, got {value}"));
        }
    }

    fn at_least_one(&mut self, key: &str, value: u32) {
        if value == 0 {
            self.add(key, "must be at least 1");
        }
    }

    fn epoch_count(&mut self, key: &str, value: u32) {
        self.at_least_one(key, value);
        if value > MAX_EPOCHS {
            self.add(key, format!("must be at most {MAX_EPOCHS}, got {value}"));
        }
    }
}

/// The most epochs one phase may have. The plan holds one entry per epoch, so an absurd count
/// (a typo, or `4294967295`) must be refused here rather than exhaust memory while planning.
pub const MAX_EPOCHS: u32 = 100_000;

impl Experiment {
    /// The phase-2 activation γ (ReLU when absent).
    pub fn target(&self) -> ActivationName {
        self.target.unwrap_or(ActivationName::Relu)
    }

    /// Every value or combination that breaks a rule, in file order.
    pub fn issues(&self) -> Vec<Issue> {
        let mut issues = Issues::default();
        self.dataset_issues(&mut issues);
        issues.at_least_one("batch_size", self.batch_size);
        self.optimizer_issues(&mut issues);
        self.activation_issues(&mut issues);
        self.phase_issues(&mut issues);
        issues.at_least_one("eval_every", self.eval_every);
        issues.0
    }

    fn dataset_issues(&self, issues: &mut Issues) {
        let dataset = &self.dataset;
        let subset = dataset.subset;
        issues.in_range(
            "dataset.subset",
            subset,
            subset > 0.0 && subset <= 1.0,
            "(0, 1]",
        );
        let validation = dataset.validation;
        issues.in_range(
            "dataset.validation",
            validation,
            (0.0..1.0).contains(&validation),
            "[0, 1)",
        );
        if dataset.coarse_labels && dataset.kind != DatasetKind::Cifar100 {
            let kind = dataset.kind.name();
            issues.add(
                "dataset.coarse_labels",
                format!("exists only for cifar100, not {kind}"),
            );
        }
        if dataset.crop_padding > 32 {
            let padding = dataset.crop_padding;
            issues.add(
                "dataset.crop_padding",
                format!("must be at most 32 pixels, got {padding}"),
            );
        }
    }

    fn optimizer_issues(&self, issues: &mut Issues) {
        let optimizer = &self.optimizer;
        issues.positive("optimizer.lr", optimizer.lr);
        let momentum = optimizer.momentum;
        issues.in_range(
            "optimizer.momentum",
            momentum,
            (0.0..1.0).contains(&momentum),
            "[0, 1)",
        );
        let decay = optimizer.weight_decay;
        issues.in_range("optimizer.weight_decay", decay, decay >= 0.0, "[0, ∞)");
        if optimizer.nesterov && momentum <= 0.0 {
            issues.add("optimizer.nesterov", "needs a positive optimizer.momentum");
        }
    }

    fn activation_issues(&self, issues: &mut Issues) {
        let activations = &self.mix.activations;
        if activations.is_empty() {
            issues.add("mix.activations", "must name at least one activation");
        }
        let mut sorted = activations.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|pair| pair[0] == pair[1]) {
            issues.add("mix.activations", "must not name an activation twice");
        }
        if let Some(beta) = &self.mix.beta {
            if beta.len() != activations.len() {
                let (given, expected) = (beta.len(), activations.len());
                issues.add(
                    "mix.beta",
                    format!("has {given} weights for {expected} activations"),
                );
            }
            for (index, &weight) in beta.iter().enumerate() {
                issues.positive(&format!("mix.beta.{index}"), weight);
            }
        }
        let target = self.target.map(ActivationName::name);
        match (self.variant, target) {
            (Variant::Wnla, Some(name)) if name != "identity" => {
                issues.add(
                    "target",
                    format!("wnla trains with identity; remove `{name}`"),
                );
            }
            (Variant::Mixture, Some(name)) => {
                issues.add(
                    "target",
                    format!("mixture is never lowered; remove `{name}`"),
                );
            }
            _ => {}
        }
    }

    fn phase_issues(&self, issues: &mut Issues) {
        let phase1 = &self.phase1;
        if phase1.fraction.is_some() && phase1.epochs.is_some() {
            issues.add(
                "phase1.epochs",
                "give either phase1.fraction or phase1.epochs, not both",
            );
        }
        if let Some(fraction) = phase1.fraction {
            issues.positive("phase1.fraction", fraction);
            let planned = fraction * f64::from(self.phase2.epochs);
            if planned > f64::from(MAX_EPOCHS) {
                issues.add(
                    "phase1.fraction",
                    format!("gives {planned:e} epochs; a phase may have at most {MAX_EPOCHS}"),
                );
            }
        }
        if let Some(epochs) = phase1.epochs {
            issues.epoch_count("phase1.epochs", epochs);
        }
        if let Some(lr) = phase1.lr {
            issues.positive("phase1.lr", lr);
        }
        for issue in phase1.schedule.issues() {
            issues.add(&format!("phase1.schedule.{}", issue.key), issue.message);
        }

        let phase2 = &self.phase2;
        issues.epoch_count("phase2.epochs", phase2.epochs);
        if let Some(lr) = phase2.lr {
            issues.positive("phase2.lr", lr);
        }
        for issue in phase2.schedule.issues() {
            issues.add(&format!("phase2.schedule.{}", issue.key), issue.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_epoch_counts_are_refused_before_planning() {
        let too_many = MINIMAL.replace("epochs: 8", "epochs: 4294967295");
        let experiment: Experiment = serde_yaml::from_str(&too_many).expect("parses");
        let keys: Vec<String> = experiment.issues().into_iter().map(|i| i.key).collect();
        assert!(keys.contains(&"phase2.epochs".to_string()), "{keys:?}");

        let huge_fraction = format!("{MINIMAL}phase1: {{fraction: 1.0e30}}\n");
        let experiment: Experiment = serde_yaml::from_str(&huge_fraction).expect("parses");
        let keys: Vec<String> = experiment.issues().into_iter().map(|i| i.key).collect();
        assert!(keys.contains(&"phase1.fraction".to_string()), "{keys:?}");
    }

    const MINIMAL: &str = "\
model: {file: models/lenet.coop}
dataset: {kind: fashion-mnist, path: /data}
batch_size: 64
optimizer: {lr: 0.05}
variant: mix
phase2: {epochs: 8}
";

    fn parse(text: &str) -> Experiment {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_fill_every_optional_key() {
        let experiment = parse(MINIMAL);
        assert_eq!(experiment.seed, 0);
        assert_eq!(experiment.dataset.subset, 1.0);
        assert_eq!(
            (experiment.dataset.crop_padding, experiment.dataset.flip),
            (4, true)
        );
        assert_eq!(experiment.mix.weights(), vec![0.25; 4]);
        assert_eq!(experiment.target(), ActivationName::Relu);
        assert_eq!(experiment.phase1.schedule, Schedule::Constant);
        assert_eq!((experiment.checkpoint_every, experiment.eval_every), (1, 1));
        assert!(experiment.issues().is_empty(), "{:?}", experiment.issues());
    }

    #[test]
    fn every_rule_reports_its_key() {
        let mut experiment = parse(MINIMAL);
        experiment.batch_size = 0;
        experiment.optimizer.nesterov = true;
        experiment.optimizer.momentum = 0.0;
        experiment.dataset.subset = 0.0;
        experiment.dataset.coarse_labels = true;
        experiment.mix.beta = Some(vec![0.5, -0.5]);
        experiment.phase1.fraction = Some(0.1);
        experiment.phase1.epochs = Some(3);
        experiment.phase2.schedule = Schedule::Step {
            every: 0,
            factor: 0.5,
        };
        let keys: Vec<String> = experiment
            .issues()
            .into_iter()
            .map(|issue| issue.key)
            .collect();
        let expected = [
            "dataset.subset",
            "dataset.coarse_labels",
            "batch_size",
            "optimizer.nesterov",
            "mix.beta",
            "mix.beta.1",
            "phase1.epochs",
            "phase2.schedule.step.every",
        ];
        assert_eq!(keys, expected);
    }

    #[test]
    fn target_must_stay_absent_where_it_means_nothing() {
        let mut experiment = parse(MINIMAL);
        experiment.variant = Variant::Mixture;
        experiment.target = Some(ActivationName::Relu);
        assert_eq!(experiment.issues()[0].key, "target");
        experiment.variant = Variant::Wnla;
        assert_eq!(experiment.issues()[0].key, "target");
        experiment.target = Some(ActivationName::Identity);
        assert!(experiment.issues().is_empty());
    }

    #[test]
    fn model_params_keep_their_types() {
        let text = MINIMAL.replace(
            "model: {file: models/lenet.coop}",
            "model: {file: m.coop, params: {classes: 100, width: 0.5, bn: true, act: relu}}",
        );
        let params = parse(&text).model.params;
        assert_eq!(params["classes"], ModelParam::Int(100));
        assert_eq!(params["width"], ModelParam::Float(0.5));
        assert_eq!(params["bn"], ModelParam::Bool(true));
        assert_eq!(params["act"], ModelParam::Text("relu".into()));
    }
}
