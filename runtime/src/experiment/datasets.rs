//! From an experiment's `dataset` section to ready batch sources: the training split (its
//! subset, minus the validation images) with shuffling and augmentation, the validation
//! images and the test split in fixed order without augmentation.
//!
//! Invariant: the images chosen and every batch produced depend only on the experiment (its
//! seed, fractions and options) and the epoch number passed in, so a resumed run sees the
//! very batches the interrupted one would have seen. Epoch numbers are the plan's global
//! ones (see [`super::plan`]).

use std::path::Path;
use std::sync::Arc;

use super::Experiment;
use crate::data::{
    train_split, Augment, BatchOptions, Batcher, Cifar100Labels, DataError, Dataset, EpochLoader,
    Split,
};

/// How many finished batches the loaders keep ready ahead of the trainer.
pub const PREFETCH: usize = 2;

/// One source of batches: a batcher and the images it draws from.
#[derive(Clone, Debug)]
pub struct BatchSource {
    /// Builds the batches.
    pub batcher: Arc<Batcher>,
    /// Indices into the batcher's data set, ascending.
    pub indices: Arc<[u32]>,
}

impl BatchSource {
    /// The batches of epoch `epoch` (global number), from batch `start` on, prepared on a
    /// worker thread.
    pub fn epoch(&self, epoch: u32, start: usize) -> EpochLoader {
        let (batcher, indices) = (self.batcher.clone(), self.indices.clone());
        EpochLoader::spawn(batcher, indices, u64::from(epoch), start, PREFETCH)
    }

    /// The number of images an epoch visits.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// The data of a run.
#[derive(Clone, Debug)]
pub struct RunData {
    /// Training batches: shuffled each epoch, augmented when the experiment says so.
    pub train: BatchSource,
    /// Validation batches in fixed order, when the experiment holds some images out.
    pub validation: Option<BatchSource>,
    /// Test batches in fixed order.
    pub test: BatchSource,
    /// The number of classes.
    pub classes: usize,
    /// The shape of one image, `[C, H, W]`.
    pub image_shape: [usize; 3],
}

impl Experiment {
    /// Reads the experiment's data set from `dataset.path` and prepares its batch sources.
    ///
    /// # Errors
    ///
    /// Whatever reading the files reports (missing, truncated, mismatched; ImageNet is
    /// unsupported), and bad fractions.
    pub fn load_data(&self) -> Result<RunData, DataError> {
        self.load_data_from(&self.dataset.path)
    }

    /// As [`Experiment::load_data`], reading from `dir` instead of `dataset.path`.
    ///
    /// # Errors
    ///
    /// As [`Experiment::load_data`].
    pub fn load_data_from(&self, dir: &Path) -> Result<RunData, DataError> {
        let config = &self.dataset;
        let labels = if config.coarse_labels {
            Cifar100Labels::Coarse
        } else {
            Cifar100Labels::Fine
        };
        let train = Arc::new(config.kind.load(dir, Split::Train, labels)?);
        let test = Arc::new(config.kind.load(dir, Split::Test, labels)?);
        let chosen = train_split(
            &train.labels,
            train.classes,
            config.subset,
            config.validation,
            self.seed,
        )?;
        tracing::info!(
            train = chosen.train.len(),
            validation = chosen.validation.len(),
            test = test.len(),
            "data set {} ready",
            config.kind.name()
        );

        let augment = config.augment.then_some(Augment {
            pad: config.crop_padding as usize,
            flip: config.flip,
        });
        let training_options = self.batch_options(true, augment);
        let fixed_options = self.batch_options(false, None);
        let validation = if chosen.validation.is_empty() {
            None
        } else {
            Some(source(&train, &fixed_options, chosen.validation)?)
        };
        let all_test: Vec<u32> = (0..test.len() as u32).collect();
        Ok(RunData {
            classes: train.classes,
            image_shape: train.shape,
            validation,
            test: source(&test, &fixed_options, all_test)?,
            train: source(&train, &training_options, chosen.train)?,
        })
    }

    fn batch_options(&self, shuffle: bool, augment: Option<Augment>) -> BatchOptions {
        BatchOptions {
            batch_size: self.batch_size as usize,
            shuffle,
            augment,
            normalization: self.dataset.kind.normalization(),
            seed: self.seed,
        }
    }
}

fn source(
    dataset: &Arc<Dataset>,
    options: &BatchOptions,
    indices: Vec<u32>,
) -> Result<BatchSource, DataError> {
    let batcher = Arc::new(Batcher::new(dataset.clone(), options.clone())?);
    Ok(BatchSource {
        batcher,
        indices: indices.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::idx::testing::{constant_images, images, labels};

    /// A Fashion-MNIST-layout directory with 40 training and 10 test images.
    fn fake_fashion_mnist() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (prefix, count) in [("train", 40u8), ("t10k", 10)] {
            let pixels = constant_images(count, 28, 28);
            let image_file = dir.path().join(format!("{prefix}-images-idx3-ubyte"));
            std::fs::write(image_file, images(u32::from(count), 28, 28, &pixels)).unwrap();
            let label_bytes: Vec<u8> = (0..count).map(|i| i % 10).collect();
            let label_file = dir.path().join(format!("{prefix}-labels-idx1-ubyte"));
            std::fs::write(label_file, labels(&label_bytes)).unwrap();
        }
        dir
    }

    fn experiment(extra: &str) -> Experiment {
        let text = format!(
            "model: {{file: models/lenet.coop}}\n\
             dataset: {{kind: fashion-mnist, path: /none{extra}}}\n\
             batch_size: 16\nseed: 5\noptimizer: {{lr: 0.1}}\nvariant: baseline\n\
             phase2: {{epochs: 2}}\n"
        );
        super::super::parse(&text, "t.yaml", &[]).unwrap()
    }

    #[test]
    fn training_validation_and_test_sources_follow_the_experiment() {
        let dir = fake_fashion_mnist();
        let data = experiment(", subset: 0.5, validation: 0.25, augment: true")
            .load_data_from(dir.path())
            .unwrap();
        assert_eq!(
            (data.train.len(), data.validation.as_ref().unwrap().len()),
            (10, 10)
        );
        assert_eq!(
            (data.test.len(), data.classes, data.image_shape),
            (10, 10, [1, 28, 28])
        );
        let options = data.train.batcher.options();
        assert!(options.shuffle && options.augment == Some(Augment::paper()));
        assert!(data.test.batcher.options().augment.is_none());

        let sizes: Vec<usize> = data.train.epoch(1, 0).map(|batch| batch.len()).collect();
        assert_eq!(sizes, vec![10]);
        let test_order: Vec<u32> = data
            .test
            .epoch(1, 0)
            .flat_map(|batch| batch.indices)
            .collect();
        assert_eq!(test_order, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn the_same_experiment_gives_the_same_batches() {
        let dir = fake_fashion_mnist();
        let run = || {
            let data = experiment(", augment: true")
                .load_data_from(dir.path())
                .unwrap();
            data.train.epoch(3, 0).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
        assert!(experiment("").load_data().is_err(), "/none does not exist");
    }
}
