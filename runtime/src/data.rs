//! Data sets for training: reading the standard files ([`idx`], [`cifar`]), normalising and
//! augmenting images ([`normalize`], [`augment`]), choosing subsets and validation splits
//! ([`split`]), and cutting epochs into batches, prepared ahead on another thread
//! ([`batch`], [`loader`]).
//!
//! Invariant: a [`Dataset`] holds raw pixels (`u8`, CHW per image, images back to back) with
//! exactly `len() * image_len()` bytes and one label below `classes` per image; every random
//! choice made from it is a function of the seed and what the choice is for (see
//! [`crate::rng::Stream`]), so batches never depend on thread timing.

pub mod augment;
pub mod batch;
pub mod cifar;
mod error;
pub mod idx;
pub mod loader;
pub mod normalize;
pub mod source;
pub mod split;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use error::DataError;

pub use augment::Augment;
pub use batch::{Batch, BatchOptions, Batcher};
pub use cifar::Cifar100Labels;
pub use loader::EpochLoader;
pub use normalize::Normalization;
pub use split::{select_subset, split_validation, train_split, TrainSplit};

/// The kinds of data set an experiment can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// MNIST digits (IDX files), 10 classes, `[1, 28, 28]`.
    Mnist,
    /// Fashion-MNIST (IDX files), 10 classes, `[1, 28, 28]`.
    FashionMnist,
    /// CIFAR-10 binary version, 10 classes, `[3, 32, 32]`.
    Cifar10,
    /// CIFAR-100 binary version, 100 fine (or 20 coarse) classes, `[3, 32, 32]`.
    Cifar100,
    /// ImageNet in the class-folder layout: declared so experiment files can name it, but not
    /// read yet ([`DatasetKind::load`] returns [`DataError::Unsupported`]).
    Imagenet,
}

impl DatasetKind {
    /// The name used in experiment files (`fashion-mnist`).
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "mnist",
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Cifar100 => "cifar100",
            DatasetKind::Imagenet => "imagenet",
        }
    }

    /// The per-channel mean and standard deviation images of this kind are normalised with.
    pub fn normalization(self) -> Normalization {
        Normalization::for_kind(self)
    }

    /// Reads one split from the directory the data set was unpacked into.
    ///
    /// # Errors
    ///
    /// Whatever the reader of the kind reports (missing, truncated or mismatched files), plus
    /// [`DataError::NoCoarseLabels`] when coarse labels are asked of anything but CIFAR-100
    /// and [`DataError::Unsupported`] for ImageNet.
    pub fn load(
        self,
        dir: &Path,
        split: Split,
        labels: Cifar100Labels,
    ) -> Result<Dataset, DataError> {
        if labels == Cifar100Labels::Coarse && self != DatasetKind::Cifar100 {
            return Err(DataError::NoCoarseLabels {
                kind: self.name().to_string(),
            });
        }
        match self {
            DatasetKind::Mnist | DatasetKind::FashionMnist => {
                idx::load_dir(dir, split, self.name())
            }
            DatasetKind::Cifar10 => cifar::load_cifar10_dir(dir, split),
            DatasetKind::Cifar100 => cifar::load_cifar100_dir(dir, split, labels),
            // TODO: an ImageNet reader (class folders of JPEGs, resize + crop 224) is missing;
            // until then an ImageNet experiment stops here with this error before training.
            DatasetKind::Imagenet => Err(DataError::Unsupported {
                kind: "ImageNet".to_string(),
                help: "the ImageNet experiment files document the paper's recipe; train \
                       them once a class-folder JPEG reader exists, or use CIFAR meanwhile"
                    .to_string(),
            }),
        }
    }
}

/// Which split of a data set as distributed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training split.
    Train,
    /// The test split.
    Test,
}

impl Split {
    /// `train` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// Images and labels of one split, held in memory as raw bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// What it is, for messages (`cifar10 train`).
    pub name: String,
    /// Raw pixels, `len() * image_len()` bytes: image after image, each `[C, H, W]`.
    pub images: Vec<u8>,
    /// One label per image, each below `classes`.
    pub labels: Vec<u16>,
    /// The shape of one image, `[C, H, W]`.
    pub shape: [usize; 3],
    /// The number of classes.
    pub classes: usize,
}

impl Dataset {
    /// Assembles a data set from parts whose sizes the caller (a reader) has checked.
    ///
    /// # Panics
    ///
    /// When `images` is not `labels.len()` images of `shape`: readers check the files before
    /// calling, so this is a reader bug, not bad input.
    pub fn from_parts(
        name: &str,
        images: Vec<u8>,
        labels: Vec<u16>,
        shape: [usize; 3],
        classes: usize,
    ) -> Dataset {
        let image_len: usize = shape.iter().product();
        assert_eq!(
            images.len(),
            labels.len() * image_len,
            "invariant: reader checked sizes"
        );
        Dataset {
            name: name.to_string(),
            images,
            labels,
            shape,
            classes,
        }
    }

    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes (values) per image: `C * H * W`.
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The raw pixels of image `index`, `[C, H, W]`.
    pub fn image(&self, index: usize) -> &[u8] {
        let len = self.image_len();
        &self.images[index * len..(index + 1) * len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_from_their_experiment_names() {
        for kind in [
            DatasetKind::Mnist,
            DatasetKind::FashionMnist,
            DatasetKind::Cifar10,
            DatasetKind::Cifar100,
            DatasetKind::Imagenet,
        ] {
            let parsed: DatasetKind = serde_yaml::from_str(kind.name()).unwrap();
            assert_eq!(parsed, kind);
        }
    }

    #[test]
    fn imagenet_and_misplaced_coarse_labels_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let error = DatasetKind::Imagenet
            .load(dir.path(), Split::Train, Cifar100Labels::Fine)
            .unwrap_err();
        assert!(matches!(error, DataError::Unsupported { .. }), "{error:?}");
        assert!(error.to_string().contains("not supported"), "{error}");

        let error = DatasetKind::Cifar10
            .load(dir.path(), Split::Train, Cifar100Labels::Coarse)
            .unwrap_err();
        assert!(
            matches!(error, DataError::NoCoarseLabels { .. }),
            "{error:?}"
        );
    }
}
