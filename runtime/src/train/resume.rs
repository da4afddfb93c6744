//! Between a phase's persistent tensors and checkpoints: what a checkpoint of the run holds
//! (weights and statistics apart from optimizer state, the trainer's RNG state, the step
//! count, the hashes), and how a resume finds, checks and restores the latest one.
//!
//! Invariant: [`restore_store`] of the checkpoint [`checkpoint_of`] made gives back the store
//! bit for bit; a checkpoint is restored only after [`Checkpoint::check`] accepted it against
//! the run's configuration hash, the program hash of its phase and every tensor's shape.

use std::path::PathBuf;

use super::{PhaseModel, RunSpec, TensorKind, TrainError};
use crate::checkpoint::{self, Checkpoint, Expected, Manifest, Tensor, TensorMap};
use crate::experiment::EpochPlan;
use crate::program::{HostTensor, ParamStore};
use crate::rng::Rng;

/// The checkpoint's two maps: weights and statistics, then optimizer state.
pub fn store_tensors(store: &ParamStore, model: &PhaseModel) -> (TensorMap, TensorMap) {
    let mut weights = TensorMap::new();
    let mut optimizer = TensorMap::new();
    for (name, tensor) in &store.tensors {
        let values = tensor.as_f32().map(<[f32]>::to_vec).unwrap_or_default();
        let entry = Tensor {
            shape: tensor.shape.clone(),
            values,
        };
        match model.kind(name) {
            TensorKind::Optimizer => optimizer.insert(name.clone(), entry),
            TensorKind::Trained | TensorKind::Statistic => weights.insert(name.clone(), entry),
        };
    }
    (weights, optimizer)
}

/// The store of `model` with every tensor the checkpoint holds put in; tensors it lacks keep
/// their initial values (a checkpoint accepted by [`Checkpoint::check`] lacks none).
pub fn restore_store(checkpoint: &Checkpoint, model: &PhaseModel) -> ParamStore {
    let mut store = model.initial.clone();
    for (name, tensor) in checkpoint.weights.iter().chain(&checkpoint.optimizer) {
        if store.get(name).is_some() {
            let restored = HostTensor::f32(tensor.shape.clone(), tensor.values.clone());
            store.insert(name.clone(), restored);
        }
    }
    store
}

/// What a run with configuration hash `config_hash` expects of a checkpoint of `model`.
pub fn expected_for(model: &PhaseModel, config_hash: &str) -> Expected {
    let shapes = |kinds: &[TensorKind]| {
        model
            .initial
            .tensors
            .iter()
            .filter(|(name, _)| kinds.contains(&model.kind(name)))
            .map(|(name, tensor)| (name.clone(), tensor.shape.clone()))
            .collect()
    };
    Expected {
        config_hash: config_hash.to_string(),
        program_hash: model.program_hash(),
        weights: shapes(&[TensorKind::Trained, TensorKind::Statistic]),
        optimizer: shapes(&[TensorKind::Optimizer]),
    }
}

/// The position of a run after an epoch, as a checkpoint records it.
pub(super) struct Position<'a> {
    pub epoch: &'a EpochPlan,
    pub step: u64,
    pub rng: &'a Rng,
}

/// The checkpoint of `store` after `position`.
pub fn checkpoint_of(
    spec: &RunSpec,
    model: &PhaseModel,
    store: &ParamStore,
    epoch: &EpochPlan,
    step: u64,
    rng: &Rng,
) -> Checkpoint {
    let (weights, optimizer) = store_tensors(store, model);
    let manifest = Manifest {
        format: checkpoint::FORMAT,
        coopc_version: spec.coopc_version.clone(),
        experiment: spec.name.clone(),
        epoch: epoch.epoch,
        phase: epoch.phase,
        phase_epoch: epoch.phase_epoch,
        step,
        rng: rng.state(),
        config_hash: spec.config_hash.clone(),
        program_hash: model.program_hash(),
        files: Vec::new(),
    };
    Checkpoint {
        manifest,
        weights,
        optimizer,
    }
}

/// Writes the checkpoint after `position` into the run's checkpoint folder and returns its
/// directory.
pub(super) fn save(
    spec: &RunSpec,
    model: &PhaseModel,
    store: &ParamStore,
    position: &Position<'_>,
) -> Result<PathBuf, TrainError> {
    let dir = spec
        .checkpoints_dir()
        .join(checkpoint::dir_name(position.epoch.epoch));
    let made = checkpoint_of(
        spec,
        model,
        store,
        position.epoch,
        position.step,
        position.rng,
    );
    checkpoint::save(&dir, &made)?;
    Ok(dir)
}

/// A checkpoint found for a resume, checked against the run.
pub(super) struct Resumed {
    pub dir: PathBuf,
    pub checkpoint: Checkpoint,
    /// Index of its phase in the spec.
    pub phase_index: usize,
}

/// The run's latest complete checkpoint, checked against the run; `None` when there is none.
pub(super) fn find(spec: &RunSpec) -> Result<Option<Resumed>, TrainError> {
    let Some((dir, manifest)) = checkpoint::latest(&spec.checkpoints_dir())? else {
        return Ok(None);
    };
    let Some(phase_index) = spec
        .phases
        .iter()
        .position(|phase| phase.plan.phase == manifest.phase)
    else {
        let phase = manifest.phase;
        return Err(TrainError::UnknownPhase { dir, phase });
    };
    let checkpoint = checkpoint::load(&dir)?;
    let model = &spec.phases[phase_index].model;
    checkpoint.check(&dir, &expected_for(model, &spec.config_hash))?;
    Ok(Some(Resumed {
        dir,
        checkpoint,
        phase_index,
    }))
}

/// Removes the epoch checkpoints older than `newest` that do not end a phase (phase-end
/// checkpoints and incomplete folders are left alone).
pub(super) fn prune(spec: &RunSpec, newest: u32) -> Result<(), TrainError> {
    let folder = spec.checkpoints_dir();
    let entries = std::fs::read_dir(&folder).map_err(TrainError::io(&folder))?;
    for entry in entries {
        let path = entry.map_err(TrainError::io(&folder))?.path();
        let Ok(manifest) = checkpoint::read_manifest(&path) else {
            continue;
        };
        let ends_phase = spec.phases.iter().any(|phase| {
            phase.plan.phase == manifest.phase && phase.plan.epochs == manifest.phase_epoch
        });
        if manifest.epoch < newest && !ends_phase {
            // The manifest goes first: a removal cut short never leaves a checkpoint that
            // looks complete.
            let manifest_path = path.join(checkpoint::MANIFEST_FILE);
            std::fs::remove_file(&manifest_path).map_err(TrainError::io(&manifest_path))?;
            std::fs::remove_dir_all(&path).map_err(TrainError::io(&path))?;
        }
    }
    Ok(())
}
