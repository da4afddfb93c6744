//! The test split alone, for evaluating a saved model (`coopc eval --data DIR`): unlike
//! [`crate::experiment::Experiment::load_data_from`], it needs no training files.
//!
//! Invariant: the batches are those of the run's own test source (same batch size,
//! normalisation and order, no augmentation), so an evaluation repeats the run's numbers.

use std::path::Path;
use std::sync::Arc;

use super::BatchSource;
use crate::data::{BatchOptions, Batcher, Cifar100Labels, DataError, Split};
use crate::experiment::Experiment;

/// Reads the test split of `experiment` from `dir` (its `dataset.path` when `None`).
///
/// # Errors
///
/// Any [`DataError`] of reading the files.
pub fn load_test_split(
    experiment: &Experiment,
    dir: Option<&Path>,
) -> Result<BatchSource, DataError> {
    let config = &experiment.dataset;
    let labels = if config.coarse_labels {
        Cifar100Labels::Coarse
    } else {
        Cifar100Labels::Fine
    };
    let dir = dir.unwrap_or(&config.path);
    let test = Arc::new(config.kind.load(dir, Split::Test, labels)?);
    let indices: Arc<[u32]> = (0..test.len() as u32).collect();
    let options = BatchOptions {
        batch_size: experiment.batch_size as usize,
        shuffle: false,
        augment: None,
        normalization: config.kind.normalization(),
        seed: experiment.seed,
    };
    let batcher = Arc::new(Batcher::new(test, options)?);
    Ok(BatchSource { batcher, indices })
}
