//! From an experiment's `dataset` section to the splits a run trains and evaluates on: both
//! files read and checked, the training subset and validation split chosen from the seed,
//! and one batcher per split (training batches shuffled and, when asked, augmented;
//! evaluation batches in file order, never augmented).
//!
//! Invariant: the same experiment always yields the same splits and batches, whatever the
//! machine or the thread timing (see [`crate::data::split`] and [`crate::data::batch`]).

use std::path::Path;
use std::sync::Arc;

use super::{SplitData, TrainData};
use crate::data::{
    train_split, Augment, BatchOptions, Batcher, Cifar100Labels, DataError, Dataset, Split,
};
use crate::experiment::Experiment;

/// Reads the training and test splits of `experiment` and prepares their batches.
///
/// # Errors
///
/// Any [`DataError`] of reading or splitting the files.
pub fn load_data(experiment: &Experiment) -> Result<TrainData, DataError> {
    let config = &experiment.dataset;
    let _span = tracing::info_span!("data", kind = config.kind.name()).entered();
    let train = Arc::new(
        config
            .kind
            .load(&config.path, Split::Train, labels(experiment))?,
    );
    let test = load_test_split(experiment, None)?;
    let chosen = train_split(
        &train.labels,
        train.classes,
        config.subset,
        config.validation,
        experiment.seed,
    )?;
    tracing::info!(
        train = chosen.train.len(),
        validation = chosen.validation.len(),
        test = test.len(),
        "data loaded"
    );

    let augment = config.augment.then(|| Augment {
        pad: config.crop_padding as usize,
        flip: config.flip,
    });
    let training = options(experiment, true, augment);
    let train_split = SplitData {
        batcher: Arc::new(Batcher::new(train.clone(), training)?),
        indices: chosen.train.into(),
    };
    let validation = if chosen.validation.is_empty() {
        None
    } else {
        let batcher = Batcher::new(train, options(experiment, false, None))?;
        Some(SplitData {
            batcher: Arc::new(batcher),
            indices: chosen.validation.into(),
        })
    };
    Ok(TrainData {
        train: train_split,
        test,
        validation,
    })
}

/// Reads the test split of `experiment`, from `path` instead of `dataset.path` when given,
/// with evaluation batches.
///
/// # Errors
///
/// Any [`DataError`] of reading the files.
pub fn load_test_split(
    experiment: &Experiment,
    path: Option<&Path>,
) -> Result<SplitData, DataError> {
    let config = &experiment.dataset;
    let dir = path.unwrap_or(&config.path);
    let test: Arc<Dataset> = Arc::new(config.kind.load(dir, Split::Test, labels(experiment))?);
    let indices: Arc<[u32]> = (0..test.len() as u32).collect();
    let batcher = Batcher::new(test, options(experiment, false, None))?;
    Ok(SplitData {
        batcher: Arc::new(batcher),
        indices,
    })
}

fn labels(experiment: &Experiment) -> Cifar100Labels {
    if experiment.dataset.coarse_labels {
        Cifar100Labels::Coarse
    } else {
        Cifar100Labels::Fine
    }
}

fn options(experiment: &Experiment, shuffle: bool, augment: Option<Augment>) -> BatchOptions {
    BatchOptions {
        batch_size: experiment.batch_size as usize,
        shuffle,
        augment,
        normalization: experiment.dataset.kind.normalization(),
        seed: experiment.seed,
    }
}
