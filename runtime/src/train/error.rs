//! What can stop a run: the data, the target, the run directory, a checkpoint that does not
//! belong to the run, or a loss that left the finite numbers.
//!
//! Invariant: every variant names where the run was (phase, epoch, batch) or which file is
//! at fault, so the message alone tells the user what happened and what survived.

use std::path::PathBuf;

use crate::checkpoint::CheckpointError;
use crate::data::DataError;
use crate::metrics::MetricsError;
use crate::target::TargetError;

/// Why a run stopped before its last epoch.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum TrainError {
    /// The data could not be read or split.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Data(#[from] DataError),
    /// A checkpoint could not be written, read, or does not match the run.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The metrics log could not be written or resumed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Metrics(#[from] MetricsError),
    /// A phase's program could not be compiled or run.
    #[error("phase {phase}: {source}")]
    #[diagnostic(code(coopc::train::target))]
    Target {
        /// The phase.
        phase: u8,
        /// What the target reported.
        source: TargetError,
    },
    /// A phase's model is inconsistent (a bug of the caller that compiled it).
    #[error("internal error: the model of phase {phase} is inconsistent: {problem}")]
    #[diagnostic(code(coopc::train::bad_model))]
    BadModel {
        /// The phase.
        phase: u8,
        /// What is wrong.
        problem: String,
    },
    /// A persistent tensor that crosses into the next phase changes shape on the way.
    #[error(
        "`{name}` has shape {from:?} in phase {phase} but {to:?} in phase {next}, so it cannot \
         be carried across"
    )]
    #[diagnostic(code(coopc::train::carry_shape))]
    CarryShape {
        /// The tensor.
        name: String,
        /// The phase it comes from.
        phase: u8,
        /// The phase it goes to.
        next: u8,
        /// Its shape there.
        from: Vec<usize>,
        /// Its shape in the next phase.
        to: Vec<usize>,
    },
    /// The loss became NaN or infinite.
    #[error(
        "training diverged: the {what} loss {} of epoch {epoch} (phase {phase}, lr {}) is \
         {loss}; the run stopped. {}",
        batch_text(.batch),
        rate_text(*.lr),
        kept_checkpoint(.last_checkpoint)
    )]
    #[diagnostic(
        code(coopc::train::diverged),
        help("lower the learning rate (optimizer.lr or phaseN.lr) and start the run again")
    )]
    Diverged {
        /// `training`, `test` or `validation`.
        what: &'static str,
        /// Global epoch.
        epoch: u32,
        /// Its phase.
        phase: u8,
        /// For a training loss: the batch (from 1) and the number of batches in the epoch.
        batch: Option<(usize, usize)>,
        /// The learning rate of the epoch.
        lr: f64,
        /// The loss found.
        loss: f64,
        /// The newest complete checkpoint, kept as it was.
        last_checkpoint: Option<PathBuf>,
    },
    /// The data set's images do not have the shape the model's input declares.
    #[error(
        "the model's input `{input}` takes images of shape {expected:?}, but {dataset} holds \
         images of shape {found:?}"
    )]
    #[diagnostic(
        code(coopc::train::input_shape),
        help("pick a model and a data set that agree (the input line of the .coop file)")
    )]
    InputShape {
        /// The input's name.
        input: String,
        /// Its item shape.
        expected: Vec<usize>,
        /// The data set.
        dataset: String,
        /// The shape of its images.
        found: Vec<usize>,
    },
    /// The run directory cannot be prepared.
    #[error("{path}: {source}")]
    #[diagnostic(code(coopc::train::io))]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A resume found a checkpoint of a phase the plan does not have.
    #[error("{dir} belongs to phase {phase}, which this run's plan does not have")]
    #[diagnostic(
        code(coopc::train::unknown_phase),
        help("resume with the experiment the run was started with")
    )]
    UnknownPhase {
        /// The checkpoint.
        dir: PathBuf,
        /// Its phase.
        phase: u8,
    },
}

/// A learning rate as a person writes it: `0.05`, or `1e30` for extreme ones.
fn rate_text(lr: f64) -> String {
    if lr != 0.0 && !(1e-4..1e6).contains(&lr.abs()) {
        format!("{lr:e}")
    } else {
        crate::experiment::plan::format_lr(lr)
    }
}

fn batch_text(batch: &Option<(usize, usize)>) -> String {
    match batch {
        Some((batch, batches)) => format!("of batch {batch}/{batches}"),
        None => "after the training".to_string(),
    }
}

fn kept_checkpoint(last: &Option<PathBuf>) -> String {
    match last {
        Some(path) => format!("The last good checkpoint, {}, is kept.", path.display()),
        None => "No checkpoint had been written yet.".to_string(),
    }
}

impl TrainError {
    /// A target error of phase `phase`.
    pub fn target(phase: u8) -> impl FnOnce(TargetError) -> TrainError {
        move |source| TrainError::Target { phase, source }
    }

    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
        move |source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
