//! `coopc eval`: the test loss and accuracy of a saved model. It reads the run's
//! `config.yaml`, compiles the network of the checkpoint's phase, checks that the checkpoint
//! belongs to it (configuration and program hashes, every tensor's name and shape), loads the
//! weights and runs `eval_step` over the test split.
//!
//! Invariant: the evaluation uses exactly the trained tensors of the checkpoint's phase; for
//! a phase-2 model of the mix variant these are the baseline network's parameters (same
//! names and shapes), which the command checks and prints.

use std::path::{Path, PathBuf};

use runtime::checkpoint::{self, MANIFEST_FILE};
use runtime::experiment;
use runtime::target::cpu::CpuExecutable;
use runtime::train::{self, TensorKind};

use super::train::programs::{front_end, phase_graphs, phase_model, trained_shapes};
use super::train::CONFIG_FILE;
use super::Failure;

/// Flags of `coopc eval`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// A checkpoint directory (`RUN/checkpoints/epoch-0010`), or a run directory (its latest
    /// checkpoint is used).
    pub checkpoint: PathBuf,
    /// The data set's directory, instead of the `dataset.path` of the run's configuration.
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
}

/// Runs `coopc eval`.
///
/// # Errors
///
/// The checkpoint or its run cannot be found or read, does not match the compiled model,
/// the model does not compile, or the data cannot be read.
#[expect(
    clippy::print_stdout,
    reason = "the evaluation is the command's output"
)]
pub fn run(args: &Args) -> Result<(), Failure> {
    let (run_dir, checkpoint_dir) = locate(&args.checkpoint)?;
    let experiment = experiment::load(&run_dir.join(CONFIG_FILE), &[]).map_err(Failure::user)?;
    let checkpoint = checkpoint::load(&checkpoint_dir).map_err(Failure::user)?;
    let phase = checkpoint.manifest.phase;

    // Compile the network of the checkpoint's phase only.
    let plan = experiment.plan();
    let front = front_end(&experiment)?;
    let graphs = phase_graphs(&front, &plan)?;
    let index = plan
        .phases
        .iter()
        .position(|planned| planned.phase == phase);
    let Some(index) = index else {
        let dir = checkpoint_dir.clone();
        return Err(Failure::user(train::TrainError::UnknownPhase {
            dir,
            phase,
        }));
    };
    let model = phase_model(&experiment, &front.source, &graphs[index])?;
    let expected = train::expected_for(&model, &experiment.config_hash());
    checkpoint
        .check(&checkpoint_dir, &expected)
        .map_err(Failure::user)?;

    let mut store = train::restore_store(&checkpoint, &model);
    let test = train::load_test_split(&experiment, args.data.as_deref()).map_err(Failure::user)?;
    let target_failure = |error| {
        Failure::internal(train::TrainError::Target {
            phase,
            source: error,
        })
    };
    let mut executable = CpuExecutable::compile(&model.program).map_err(target_failure)?;
    let result = train::evaluate(&mut executable, &mut store, &test).map_err(target_failure)?;

    let manifest = &checkpoint.manifest;
    println!(
        "{}: epoch {}, phase {phase} of {}",
        checkpoint_dir.display(),
        manifest.epoch,
        experiment.name
    );
    println!(
        "{}",
        parameter_line(&model, &graphs[index], &front.compiled.baseline)
    );
    println!(
        "test accuracy {:.2}% ({}/{}), loss {:.4}",
        100.0 * result.accuracy,
        result.correct,
        result.images,
        result.loss
    );
    Ok(())
}

/// The run directory and the checkpoint directory `path` designates.
fn locate(path: &Path) -> Result<(PathBuf, PathBuf), Failure> {
    if path.join(MANIFEST_FILE).is_file() {
        // RUN/checkpoints/epoch-NNNN
        let run = path.parent().and_then(Path::parent).map(Path::to_path_buf);
        let run = run.unwrap_or_else(|| PathBuf::from("."));
        return Ok((run, path.to_path_buf()));
    }
    let latest = checkpoint::latest(&path.join(train::CHECKPOINTS_DIR)).map_err(Failure::user)?;
    match latest {
        Some((dir, _)) => Ok((path.to_path_buf(), dir)),
        None => Err(Failure::user(EvalError::NoCheckpoint {
            path: path.to_path_buf(),
        })),
    }
}

/// `44426 parameters, the same names and shapes as the baseline model`, or what differs.
fn parameter_line(
    model: &train::PhaseModel,
    forward: &compiler::ir::Graph,
    baseline: &compiler::ir::Graph,
) -> String {
    let count = model.parameter_count();
    let mine = trained_shapes(forward);
    let reference = trained_shapes(baseline);
    let trained = model.persistent_names(TensorKind::Trained).len();
    if mine == reference {
        return format!(
            "{count} parameters in {trained} tensors: the same names and shapes as the baseline \
             model"
        );
    }
    let baseline_count: usize = reference
        .iter()
        .map(|(_, shape)| shape.iter().product::<usize>())
        .sum();
    let extra: Vec<&str> = mine
        .iter()
        .filter(|entry| !reference.contains(entry))
        .map(|(name, _)| name.as_str())
        .collect();
    format!(
        "{count} parameters in {trained} tensors (the baseline model has {baseline_count}); \
         not in the baseline: {}",
        extra.join(", ")
    )
}

/// Problems finding what to evaluate.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum EvalError {
    /// Neither a checkpoint nor a run with one.
    #[error("{path} is neither a checkpoint nor a run directory with a complete checkpoint")]
    #[diagnostic(
        code(coopc::eval::no_checkpoint),
        help("pass RUN_DIR or RUN_DIR/checkpoints/epoch-NNNN")
    )]
    NoCheckpoint {
        /// What was given.
        path: PathBuf,
    },
}
