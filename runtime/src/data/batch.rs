//! Cutting an epoch into batches: the epoch's order (shuffled per epoch from the seed), and
//! the assembly of each batch into normalised, possibly augmented `f32` images and `i32`
//! labels.
//!
//! Invariant: batch `b` of epoch `e` is a pure function of the data set, the options, the
//! index list, `e` and `b`. The order comes from [`Stream::Shuffle`] keyed by the epoch and
//! each image's augmentation from [`Stream::Augment`] keyed by the epoch and the image's
//! index, so batches can be built on any thread, in any order, or again after a resume, and
//! come out identical. Every index appears in exactly one batch; the last batch holds the
//! remainder (any size from 1 up).

use std::sync::Arc;

use super::augment::{render, Augment, Draw};
use super::{DataError, Dataset, Normalization};
use crate::rng::Stream;

/// How an epoch's batches are made.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchOptions {
    /// Images per batch; the last batch of an epoch may hold fewer.
    pub batch_size: usize,
    /// Whether each epoch visits the images in a fresh random order.
    pub shuffle: bool,
    /// Augmentation for training batches; `None` for evaluation.
    pub augment: Option<Augment>,
    /// Per-channel normalisation.
    pub normalization: Normalization,
    /// The experiment seed all random choices derive from.
    pub seed: u64,
}

/// One batch, ready to feed a program.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Normalised images, `[N, C, H, W]` row-major.
    pub images: Vec<f32>,
    /// One label per image.
    pub labels: Vec<i32>,
    /// Each image's index in the data set, in batch order.
    pub indices: Vec<u32>,
    /// `[N, C, H, W]`.
    pub shape: [usize; 4],
    /// Position of this batch in its epoch, from 0.
    pub position: usize,
}

impl Batch {
    /// The number of images, `N`.
    pub fn len(&self) -> usize {
        self.shape[0]
    }

    /// True for a batch without images (never produced by [`Batcher`]).
    pub fn is_empty(&self) -> bool {
        self.shape[0] == 0
    }
}

/// The number of batches an epoch of `samples` images makes: `ceil(samples / batch_size)`.
pub fn batch_count(samples: usize, batch_size: usize) -> usize {
    samples.div_ceil(batch_size.max(1))
}

/// The order in which epoch `epoch` visits `indices`: shuffled from the seed and the epoch,
/// or as given.
pub fn epoch_order(indices: &[u32], seed: u64, epoch: u64, shuffle: bool) -> Vec<u32> {
    let mut order = indices.to_vec();
    if shuffle {
        Stream::Shuffle.rng(seed, &[epoch]).shuffle(&mut order);
    }
    order
}

/// Builds batches of one data set with fixed options.
#[derive(Debug)]
pub struct Batcher {
    dataset: Arc<Dataset>,
    options: BatchOptions,
    tables: Vec<[f32; 256]>,
}

impl Batcher {
    /// A batcher for `dataset`.
    ///
    /// # Errors
    ///
    /// [`DataError::ZeroBatchSize`], or [`DataError::ChannelMismatch`] when the
    /// normalisation does not have one mean and one deviation per image channel.
    pub fn new(dataset: Arc<Dataset>, options: BatchOptions) -> Result<Batcher, DataError> {
        if options.batch_size == 0 {
            return Err(DataError::ZeroBatchSize);
        }
        let channels = dataset.shape[0];
        let normalization = &options.normalization;
        let constants = normalization.mean.len().min(normalization.std.len());
        if normalization.mean.len() != channels || normalization.std.len() != channels {
            let name = dataset.name.clone();
            return Err(DataError::ChannelMismatch {
                name,
                channels,
                constants,
            });
        }
        let tables = normalization.table();
        Ok(Batcher {
            dataset,
            options,
            tables,
        })
    }

    /// The options batches are made with.
    pub fn options(&self) -> &BatchOptions {
        &self.options
    }

    /// The data set batches are made from.
    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.dataset
    }

    /// Batch `position` of an epoch whose order is `order`.
    ///
    /// # Panics
    ///
    /// When `position` is not below `batch_count(order.len(), batch_size)` or `order` holds
    /// an index outside the data set (callers take both from this module).
    pub fn batch(&self, order: &[u32], epoch: u64, position: usize) -> Batch {
        let size = self.options.batch_size;
        let chosen = &order[position * size..order.len().min((position + 1) * size)];
        let image_len = self.dataset.image_len();
        let [channels, height, width] = self.dataset.shape;
        let mut images = vec![0.0f32; chosen.len() * image_len];

        for (&index, out) in chosen.iter().zip(images.chunks_exact_mut(image_len)) {
            let draw = match self.options.augment {
                Some(augment) => {
                    let mut rng =
                        Stream::Augment.rng(self.options.seed, &[epoch, u64::from(index)]);
                    augment.draw(&mut rng)
                }
                None => Draw::identity(),
            };
            let image = self.dataset.image(index as usize);
            render(image, self.dataset.shape, draw, &self.tables, out);
        }

        let labels = chosen
            .iter()
            .map(|&index| i32::from(self.dataset.labels[index as usize]));
        Batch {
            images,
            labels: labels.collect(),
            indices: chosen.to_vec(),
            shape: [chosen.len(), channels, height, width],
            position,
        }
    }

    /// All batches of epoch `epoch` over `indices`, from batch `start` on, built on the
    /// calling thread (see [`super::loader`] for the prefetching version).
    pub fn epoch(
        &self,
        indices: &[u32],
        epoch: u64,
        start: usize,
    ) -> impl Iterator<Item = Batch> + '_ {
        let order = epoch_order(indices, self.options.seed, epoch, self.options.shuffle);
        let count = batch_count(order.len(), self.options.batch_size);
        (start.min(count)..count).map(move |position| self.batch(&order, epoch, position))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` 1x2x2 images; image `i` is filled with byte `i`, label `i % 3`.
    pub(crate) fn tiny(count: u8) -> Arc<Dataset> {
        let images = crate::data::idx::testing::constant_images(count, 2, 2);
        let labels = (0..count).map(|i| u16::from(i % 3)).collect();
        Arc::new(Dataset::from_parts("tiny", images, labels, [1, 2, 2], 3))
    }

    fn options(batch_size: usize, shuffle: bool) -> BatchOptions {
        BatchOptions {
            batch_size,
            shuffle,
            augment: None,
            normalization: Normalization::unit(1),
            seed: 1,
        }
    }

    #[test]
    fn last_batch_holds_the_remainder_down_to_one() {
        let batcher = Batcher::new(tiny(10), options(3, false)).unwrap();
        let indices: Vec<u32> = (0..10).collect();
        let sizes: Vec<usize> = batcher
            .epoch(&indices, 0, 0)
            .map(|batch| batch.len())
            .collect();
        assert_eq!(sizes, vec![3, 3, 3, 1]);

        let last = batcher.epoch(&indices, 0, 0).last().unwrap();
        assert_eq!(
            (last.indices.clone(), last.labels.clone()),
            (vec![9], vec![0])
        );
        assert_eq!(last.shape, [1, 1, 2, 2]);
        assert_eq!(last.images, vec![9.0 / 255.0; 4]);
        assert_eq!(last.position, 3);
    }

    #[test]
    fn every_index_is_visited_once_per_epoch() {
        let batcher = Batcher::new(tiny(25), options(4, true)).unwrap();
        let indices: Vec<u32> = (0..25).collect();
        let mut seen: Vec<u32> = batcher
            .epoch(&indices, 2, 0)
            .flat_map(|b| b.indices)
            .collect();
        assert_ne!(seen, indices, "epoch 2 should be shuffled");
        seen.sort_unstable();
        assert_eq!(seen, indices);
        assert_eq!(batch_count(25, 4), 7);
        assert_eq!(batch_count(24, 4), 6);
    }

    #[test]
    fn shuffles_differ_between_epochs_and_repeat_for_the_same_epoch() {
        let indices: Vec<u32> = (0..50).collect();
        let first = epoch_order(&indices, 9, 0, true);
        assert_eq!(first, epoch_order(&indices, 9, 0, true));
        assert_ne!(first, epoch_order(&indices, 9, 1, true));
        assert_eq!(epoch_order(&indices, 9, 0, false), indices);
    }

    #[test]
    fn starting_later_skips_whole_batches() {
        let batcher = Batcher::new(tiny(10), options(4, true)).unwrap();
        let indices: Vec<u32> = (0..10).collect();
        let all: Vec<Batch> = batcher.epoch(&indices, 5, 0).collect();
        let tail: Vec<Batch> = batcher.epoch(&indices, 5, 1).collect();
        assert_eq!(&all[1..], &tail[..]);
        assert_eq!(batcher.epoch(&indices, 5, 9).count(), 0);
    }

    #[test]
    fn augmentation_depends_on_epoch_and_image_only() {
        let mut with_augment = options(2, true);
        with_augment.augment = Some(Augment { pad: 1, flip: true });
        // Distinct pixels so that crops and flips are visible.
        let images: Vec<u8> = (1..=40).collect();
        let labels = vec![0u16; 10];
        let dataset = Arc::new(Dataset::from_parts("n", images, labels, [1, 2, 2], 1));
        let batcher = Batcher::new(dataset.clone(), with_augment.clone()).unwrap();
        let indices: Vec<u32> = (0..10).collect();
        let by_image = |epoch, size| {
            let mut options = with_augment.clone();
            options.batch_size = size;
            let batcher = Batcher::new(dataset.clone(), options).unwrap();
            let mut rendered = std::collections::BTreeMap::new();
            for batch in batcher.epoch(&indices, epoch, 0) {
                for (slot, &index) in batch.indices.iter().enumerate() {
                    rendered.insert(index, batch.images[slot * 4..slot * 4 + 4].to_vec());
                }
            }
            rendered
        };
        // The batch size changes the grouping, not what each image looks like.
        assert_eq!(by_image(3, 2), by_image(3, 5));
        assert_ne!(by_image(3, 2), by_image(4, 2));
        assert_eq!(batcher.options().batch_size, 2);
    }

    #[test]
    fn bad_options_are_refused() {
        let error = Batcher::new(tiny(2), options(0, false)).unwrap_err();
        assert!(matches!(error, DataError::ZeroBatchSize));
        let mut three_channels = options(1, false);
        three_channels.normalization = Normalization::unit(3);
        let error = Batcher::new(tiny(2), three_channels).unwrap_err();
        assert!(matches!(
            error,
            DataError::ChannelMismatch {
                channels: 1,
                constants: 3,
                ..
            }
        ));
    }
}
