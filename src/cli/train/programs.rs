//! From an experiment to the compiled network of each phase of its plan: the model file run
//! through the front end with the experiment's mix and target, the forward graph each phase
//! trains (by variant, see below), its training and evaluation graphs, one [`Program`] with
//! `train_step` and `eval_step`, PyTorch-default initial values from the seed, and the kind of
//! every persistent tensor.
//!
//! Forward graph per variant (`coop` = every activation mixed, `lower` = every mix to γ):
//!
//! | variant | phase 1 | phase 2 |
//! | --- | --- | --- |
//! | baseline (γ) | | lower(coop(model)) |
//! | baseline-tpt (γ) | lower(coop(model)) | the same |
//! | mix (γ) | coop(model) | lower(coop(model)) |
//! | mixture | coop(model) | the same |
//! | wnla | | wnla(model) |
//!
//! Invariant: the γ network of phase 2 is built the same way in every variant, so a mix run's
//! phase 2 has exactly the baseline's parameter names and shapes (for γ = ReLU it *is* the
//! model as written), and a phase shared by both phases is compiled once.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use compiler::autodiff::{self, SgdOptions};
use compiler::codegen::compile_program;
use compiler::error::CompileError;
use compiler::ir::print::print_graph;
use compiler::ir::{Activation, Graph, Op, ParamRole};
use compiler::passes::coop::CoopOptions;
use compiler::passes::lower::{self, LowerOptions, Target};
use compiler::pipeline::{self, CompileOptions, Compiled, Override};
use compiler::reference::init::init_params;
use grammar::SourceFile;
use runtime::experiment::{ActivationName, Experiment, ModelParam, Plan, Variant};
use runtime::program::{HostTensor, ParamStore, Storage};
use runtime::train::{PhaseModel, TensorKind};

use crate::cli::Failure;

/// The front end's output for an experiment, and the model's source.
pub struct Front {
    /// The model file as read.
    pub source: SourceFile,
    /// Every stage of the front end.
    pub compiled: Compiled,
}

/// Reads the experiment's model file and runs the front end with its parameters, mix and
/// target.
///
/// # Errors
///
/// The file cannot be read, or the front end reports errors.
pub fn front_end(experiment: &Experiment) -> Result<Front, Failure> {
    let path = &experiment.model.file;
    let text = std::fs::read_to_string(path).map_err(|source| read_failure(path, source))?;
    let source = SourceFile::new(path.display().to_string(), text);
    let options = compile_options(experiment)?;
    let compiled = pipeline::compile_source(&source, &options)?;
    Ok(Front { source, compiled })
}

/// The forward graph of each phase of `plan`, in order (see the module docs).
///
/// # Errors
///
/// A failure of the `wnla` rewrite.
pub fn phase_graphs(front: &Front, plan: &Plan) -> Result<Vec<Graph>, Failure> {
    let compiled = &front.compiled;
    let has_phase1 = plan.phases.len() == 2;
    let graphs = match plan.variant {
        Variant::Baseline => vec![compiled.lowered.clone()],
        Variant::BaselineTpt => vec![compiled.lowered.clone(); 2],
        Variant::Mix => vec![compiled.coop.clone(), compiled.lowered.clone()],
        Variant::Mixture => vec![compiled.coop.clone(); 2],
        Variant::Wnla => {
            let mut graph = compiled.baseline.clone();
            lower::wnla(&mut graph).map_err(|error| {
                let located =
                    compiler::error::Located::new(error, &front.source.name, &front.source.text);
                Failure::Compile(CompileError::Pass {
                    stage: "wnla".into(),
                    error: Box::new(located),
                })
            })?;
            vec![graph]
        }
    };
    debug_assert_eq!(graphs.len(), if has_phase1 { 2 } else { 1 });
    Ok(graphs)
}

/// The compiled network of each phase of `plan`; phases with the same forward graph share
/// one model.
///
/// # Errors
///
/// Any failure of the front end, autodiff or code generation.
pub fn phase_models(experiment: &Experiment, plan: &Plan) -> Result<Vec<Arc<PhaseModel>>, Failure> {
    let front = front_end(experiment)?;
    let graphs = phase_graphs(&front, plan)?;
    let printed: Vec<String> = graphs.iter().map(print_graph).collect();
    let mut models: Vec<Arc<PhaseModel>> = Vec::with_capacity(graphs.len());
    for (index, graph) in graphs.iter().enumerate() {
        let shared = printed[..index]
            .iter()
            .position(|earlier| *earlier == printed[index]);
        let model = match shared {
            Some(earlier) => models[earlier].clone(),
            None => Arc::new(phase_model(experiment, &front.source, graph)?),
        };
        models.push(model);
    }
    Ok(models)
}

/// The compiled network of one forward graph: training and evaluation graphs, the program,
/// initial values and tensor kinds.
///
/// # Errors
///
/// Autodiff refuses the graph (a user error: no `logits` output, a malformed BatchNorm), or
/// code generation fails (an internal error).
pub fn phase_model(
    experiment: &Experiment,
    source: &SourceFile,
    forward: &Graph,
) -> Result<PhaseModel, Failure> {
    let optimizer = &experiment.optimizer;
    let sgd = SgdOptions {
        momentum: optimizer.momentum as f32,
        weight_decay: optimizer.weight_decay as f32,
        nesterov: optimizer.nesterov,
    };
    let training = autodiff::training_graph(forward, &sgd).map_err(Failure::user)?;
    let evaluation = autodiff::eval_graph(forward).map_err(Failure::user)?;
    let max_batch = experiment.batch_size as usize;
    let program =
        compile_program(&training, &evaluation, source, max_batch).map_err(Failure::internal)?;

    let values = init_params(&training, experiment.seed);
    let mut initial = ParamStore::default();
    for slot in program
        .tensors
        .iter()
        .filter(|slot| slot.storage == Storage::Persistent)
    {
        let Some(found) = values.get(&slot.name) else {
            let problem = format!("no initial value for the program's tensor `{}`", slot.name);
            return Err(Failure::internal(GlueError { problem }));
        };
        let data: Vec<f32> = found.iter().map(|&value| value as f32).collect();
        initial.insert(slot.name.clone(), HostTensor::f32(slot.shape(1), data));
    }
    Ok(PhaseModel {
        program,
        initial,
        kinds: tensor_kinds(&training),
    })
}

/// The kind of every parameter node of a training graph, by name.
pub fn tensor_kinds(graph: &Graph) -> BTreeMap<String, TensorKind> {
    let mut kinds = BTreeMap::new();
    for id in graph.params() {
        if let Op::Param { name, role, .. } = &graph.node(id).op {
            let kind = match role {
                ParamRole::MomentumBuffer => TensorKind::Optimizer,
                ParamRole::RunningMean | ParamRole::RunningVar => TensorKind::Statistic,
                _ => TensorKind::Trained,
            };
            kinds.insert(name.clone(), kind);
        }
    }
    kinds
}

/// The trained parameters of a forward graph: name and shape of each, sorted by name.
pub fn trained_shapes(graph: &Graph) -> Vec<(String, Vec<usize>)> {
    let mut shapes: Vec<(String, Vec<usize>)> = graph
        .params()
        .into_iter()
        .filter_map(|id| match &graph.node(id).op {
            Op::Param { name, role, .. } if role.is_trained() => {
                Some((name.clone(), graph.node(id).ty.dims.clone()))
            }
            _ => None,
        })
        .collect();
    shapes.sort();
    shapes
}

/// The front end's options: model parameters, the mix of phase 1 and the phase-2 target.
fn compile_options(experiment: &Experiment) -> Result<CompileOptions, Failure> {
    let overrides = experiment
        .model
        .params
        .iter()
        .map(|(name, value)| Override::parse(&format!("{name}={}", param_text(value))))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| Failure::Compile(CompileError::Option(error)))?;
    let coop = CoopOptions {
        activations: experiment
            .mix
            .activations
            .iter()
            .map(|&name| activation(name))
            .collect(),
        weights: experiment
            .mix
            .beta
            .as_ref()
            .map(|beta| beta.iter().map(|&weight| weight as f32).collect()),
        ..CoopOptions::default()
    };
    let target = match experiment.variant {
        Variant::Mixture => Target::Keep,
        _ => Target::Activation(activation(experiment.target())),
    };
    let lower = LowerOptions {
        target,
        ..LowerOptions::default()
    };
    Ok(CompileOptions {
        overrides,
        coop,
        lower,
        ..CompileOptions::default()
    })
}

fn param_text(value: &ModelParam) -> String {
    match value {
        ModelParam::Bool(flag) => flag.to_string(),
        ModelParam::Int(number) => number.to_string(),
        ModelParam::Float(number) => format!("{number:?}"),
        ModelParam::Text(text) => text.clone(),
    }
}

/// The compiler's activation of an experiment's activation name.
fn activation(name: ActivationName) -> Activation {
    match name {
        ActivationName::Relu => Activation::Relu,
        ActivationName::Prelu => Activation::Prelu,
        ActivationName::Elu => Activation::Elu { alpha: 1.0 },
        ActivationName::Softplus => Activation::Softplus {
            beta: 1.0,
            threshold: 20.0,
        },
        ActivationName::LeakyRelu => Activation::LeakyRelu { slope: 0.01 },
        ActivationName::Identity => Activation::Identity,
    }
}

/// A file of the run that cannot be read.
pub fn read_failure(path: &Path, source: std::io::Error) -> Failure {
    Failure::user(ReadError {
        path: path.display().to_string(),
        source,
    })
}

/// A file that cannot be read.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cannot read {path}: {source}")]
#[diagnostic(code(coopc::train::read))]
pub struct ReadError {
    /// The file.
    pub path: String,
    /// What the operating system said.
    pub source: std::io::Error,
}

/// An inconsistency between the compiler's outputs (a bug).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("internal error: {problem}")]
#[diagnostic(code(coopc::train::internal))]
pub struct GlueError {
    /// What is wrong.
    pub problem: String,
}
