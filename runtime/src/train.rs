//! The two-phase training loop: it compiles each phase's [`Program`] for the CPU, trains epoch
//! by epoch on prefetched batches, evaluates on the test split, moves every surviving
//! persistent tensor from phase 1 into phase 2 by name, logs one metrics line per epoch,
//! writes checkpoints, and resumes from the latest one.
//!
//! The trainer knows nothing of the language or the IR: the caller (the `coopc` binary)
//! compiles each phase's graphs into a [`PhaseModel`] (program, initial values, what each
//! persistent tensor is) and hands over the experiment's [`Plan`] and the data.
//!
//! Invariant (exact resume): everything an epoch computes is a function of the persistent
//! tensors at its start, the trainer's RNG state at its start and the epoch number. Batches
//! are pure functions of the seed, epoch and position ([`crate::data::batch`]), the dropout
//! seed of every step is drawn from the trainer's RNG, and a checkpoint stores exactly the
//! tensors and that RNG state. A run stopped at any point and resumed from its latest
//! checkpoint therefore recomputes the lost epochs bit for bit, and the metrics log is cut
//! back to the checkpoint's epoch before it grows again.

mod carry;
mod data;
mod epoch;
mod error;
mod observer;
mod resume;
mod session;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::experiment::Plan;
pub use crate::experiment::{BatchSource, RunData};
use crate::program::{ParamStore, Program, Storage};

pub use carry::{carry_into, CarryReport};
pub use data::load_test_split;
pub use epoch::{evaluate, Evaluation};
pub use error::TrainError;
pub use observer::{BatchProgress, Event, Flow, Observer, QuietObserver};
pub use resume::{checkpoint_of, expected_for, restore_store, store_tensors};
pub use session::{train, Outcome, Summary};

/// Feed name of the class labels (`i32[N]`), as the compiler's autodiff names it.
pub const LABELS_FEED: &str = "labels";
/// Feed name of the learning rate (`f32` scalar).
pub const LR_FEED: &str = "lr";
/// Feed name of the step's dropout seed (`i32[2]`, low then high 32 bits), present only in
/// programs with dropout.
pub const DROPOUT_SEED_FEED: &str = "dropout_seed";
/// Output name of the batch's mean loss.
pub const LOSS_OUTPUT: &str = "loss";
/// Output name of the number of correct predictions in the batch.
pub const CORRECT_OUTPUT: &str = "correct";
/// Entry that trains one batch.
pub const TRAIN_ENTRY: &str = "train_step";
/// Entry that evaluates one batch (BatchNorm on running statistics, no effects).
pub const EVAL_ENTRY: &str = "eval_step";
/// File name of the metrics log in a run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Folder of the checkpoints in a run directory.
pub const CHECKPOINTS_DIR: &str = "checkpoints";

/// What a persistent tensor of a program is, as far as training is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorKind {
    /// Updated by the optimizer: weights, biases, BatchNorm scale and shift, PReLU slopes.
    Trained,
    /// Updated by the forward pass: BatchNorm running mean and variance.
    Statistic,
    /// The optimizer's own state: SGD momentum buffers.
    Optimizer,
}

/// One phase's compiled network: the program, the fresh value of each persistent tensor, and
/// what each persistent tensor is.
#[derive(Clone, Debug)]
pub struct PhaseModel {
    /// The program with entries [`TRAIN_ENTRY`] and [`EVAL_ENTRY`].
    pub program: Program,
    /// A freshly initialised value for every persistent slot of `program`.
    pub initial: ParamStore,
    /// The kind of every persistent slot, by name.
    pub kinds: BTreeMap<String, TensorKind>,
}

impl PhaseModel {
    /// A SHA-256 (hex) of the program's plain data: MLIR text, slot table and entries.
    /// Checkpoints record it; a run refuses to resume when its program hashes differently.
    pub fn program_hash(&self) -> String {
        program_hash(&self.program)
    }

    /// The number of trained values (what PyTorch counts as the model's parameters).
    pub fn parameter_count(&self) -> usize {
        self.persistent_names(TensorKind::Trained)
            .iter()
            .filter_map(|name| self.initial.get(name))
            .map(|tensor| tensor.len())
            .sum()
    }

    /// Names of the persistent tensors of one kind, sorted.
    pub fn persistent_names(&self, kind: TensorKind) -> Vec<String> {
        self.kinds
            .iter()
            .filter(|(_, &found)| found == kind)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The kind of persistent tensor `name`; a tensor the table does not list counts as
    /// trained, the safe side (it is carried and checkpointed as a weight).
    pub fn kind(&self, name: &str) -> TensorKind {
        self.kinds.get(name).copied().unwrap_or(TensorKind::Trained)
    }

    /// Checks that the model is complete: every persistent slot has an initial value of its
    /// shape and element type, and the entries the trainer calls exist.
    ///
    /// # Errors
    ///
    /// [`TrainError::BadModel`] naming the first problem.
    pub fn validate(&self, phase: u8) -> Result<(), TrainError> {
        let bad = |problem: String| TrainError::BadModel { phase, problem };
        for entry in [TRAIN_ENTRY, EVAL_ENTRY] {
            if self.program.entry(entry).is_none() {
                return Err(bad(format!("the program has no entry `{entry}`")));
            }
        }
        for slot in &self.program.tensors {
            if slot.storage != Storage::Persistent {
                continue;
            }
            let Some(tensor) = self.initial.get(&slot.name) else {
                return Err(bad(format!("no initial value for `{}`", slot.name)));
            };
            if slot.dtype != crate::program::DType::F32 {
                let name = &slot.name;
                return Err(bad(format!(
                    "persistent `{name}` is not f32 (checkpoints hold f32)"
                )));
            }
            if tensor.shape != slot.shape(1) || tensor.dtype() != slot.dtype {
                let (found, expected) = (&tensor.shape, slot.shape(1));
                let name = &slot.name;
                return Err(bad(format!(
                    "initial value of `{name}` has shape {found:?}, the slot {expected:?}"
                )));
            }
        }
        Ok(())
    }
}

/// A SHA-256 (hex) of a program's canonical JSON form.
pub fn program_hash(program: &Program) -> String {
    let text = serde_json::to_string(program)
        .expect("invariant: a program holds only strings, numbers, lists and maps");
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// One phase of a run: its plan and its compiled network.
#[derive(Clone, Debug)]
pub struct PhaseRun {
    /// The phase's number (1 or 2), epochs and learning rates, how it starts.
    pub plan: crate::experiment::PhasePlan,
    /// Its network.
    pub model: Arc<PhaseModel>,
}

/// Everything a run needs besides its data.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// The experiment's name (recorded in checkpoints).
    pub name: String,
    /// The phases, phase 1 first; their plans are those of one [`Plan`].
    pub phases: Vec<PhaseRun>,
    /// The run directory: metrics and checkpoints go there.
    pub dir: PathBuf,
    /// Checkpoint after every this many global epochs (0: only at phase ends, which always
    /// get one).
    pub checkpoint_every: u32,
    /// Evaluate after every this many global epochs (the last epoch of each phase always
    /// is).
    pub eval_every: u32,
    /// The experiment seed: the trainer's RNG derives from it.
    pub seed: u64,
    /// The experiment's configuration hash (recorded in checkpoints, checked on resume).
    pub config_hash: String,
    /// The coopc version (recorded in checkpoints).
    pub coopc_version: String,
    /// Keep every checkpoint; otherwise an epoch checkpoint is removed once a later one is
    /// written (phase-end checkpoints always stay).
    pub keep_all_checkpoints: bool,
    /// Continue from the latest checkpoint in `dir` instead of starting afresh.
    pub resume: bool,
}

impl RunSpec {
    /// A spec for `plan` with one model per phase, in the plan's order.
    pub fn new(plan: &Plan, models: Vec<Arc<PhaseModel>>, dir: PathBuf) -> RunSpec {
        let phases = plan
            .phases
            .iter()
            .cloned()
            .zip(models)
            .map(|(plan, model)| PhaseRun { plan, model })
            .collect();
        RunSpec {
            name: plan.name.clone(),
            phases,
            dir,
            checkpoint_every: plan.checkpoint_every,
            eval_every: plan.eval_every,
            seed: 0,
            config_hash: String::new(),
            coopc_version: String::new(),
            keep_all_checkpoints: false,
            resume: false,
        }
    }

    /// The metrics log of the run.
    pub fn metrics_path(&self) -> PathBuf {
        self.dir.join(METRICS_FILE)
    }

    /// The checkpoint folder of the run.
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.dir.join(CHECKPOINTS_DIR)
    }

    /// The last global epoch of the run.
    pub fn last_epoch(&self) -> u32 {
        self.phases
            .last()
            .map_or(0, |phase| phase.plan.first_epoch + phase.plan.epochs - 1)
    }
}
