//! The prefetching loader: a worker thread builds an epoch's batches in order and hands them
//! over through a bounded channel, so the next batch is being prepared while the current one
//! trains.
//!
//! Invariant: the loader yields exactly the batches [`Batcher::epoch`] yields, in the same
//! order and with the same contents, whatever the thread timing, because each batch is a pure
//! function of its epoch and position (see [`super::batch`]) and one worker sends them in
//! order. A worker that dies does not shorten the epoch silently: the panic is re-raised on
//! the consuming thread.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::batch::{batch_count, Batch, Batcher};

/// The batches of one epoch, prepared ahead on a worker thread.
#[derive(Debug)]
pub struct EpochLoader {
    receiver: Option<Receiver<Batch>>,
    worker: Option<JoinHandle<()>>,
    remaining: usize,
}

impl EpochLoader {
    /// Starts preparing epoch `epoch` over `indices`, from batch `start` on, keeping at most
    /// `prefetch` finished batches waiting (at least one).
    ///
    /// # Panics
    ///
    /// When the operating system cannot start a thread.
    pub fn spawn(
        batcher: Arc<Batcher>,
        indices: Arc<[u32]>,
        epoch: u64,
        start: usize,
        prefetch: usize,
    ) -> EpochLoader {
        let total = batch_count(indices.len(), batcher.options().batch_size);
        let remaining = total.saturating_sub(start);
        let (sender, receiver) = sync_channel(prefetch.max(1));
        let work = move || {
            for batch in batcher.epoch(&indices, epoch, start) {
                // The consumer hung up (it stopped early): nothing more is wanted.
                if sender.send(batch).is_err() {
                    return;
                }
            }
        };
        let worker = std::thread::Builder::new()
            .name(format!("coopc-loader-epoch-{epoch}"))
            .spawn(work)
            .expect("the operating system refused to start the data-loader thread");
        EpochLoader {
            receiver: Some(receiver),
            worker: Some(worker),
            remaining,
        }
    }

    /// How many batches are still to come.
    pub fn remaining(&self) -> usize {
        self.remaining
    }
}

impl Iterator for EpochLoader {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.remaining == 0 {
            return None;
        }
        let received = self.receiver.as_ref().map(|receiver| receiver.recv());
        match received {
            Some(Ok(batch)) => {
                self.remaining -= 1;
                Some(batch)
            }
            // The worker stopped before sending every batch: only a panic does that.
            _ => {
                self.remaining = 0;
                if let Some(worker) = self.worker.take() {
                    if let Err(panic) = worker.join() {
                        std::panic::resume_unwind(panic);
                    }
                }
                unreachable!("invariant: the loader worker sends every batch unless it panics")
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for EpochLoader {}

impl Drop for EpochLoader {
    fn drop(&mut self) {
        // Hang up first, so a worker blocked on a full channel wakes up and returns.
        drop(self.receiver.take());
        if let Some(worker) = self.worker.take() {
            // A panic here was already re-raised by `next`, or no batch was asked for after
            // it; either way the epoch is being abandoned, so it is not raised again.
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Augment, BatchOptions, Dataset, Normalization};

    fn batcher(batch_size: usize) -> Arc<Batcher> {
        let images: Vec<u8> = (0..=255).cycle().take(37 * 3 * 4 * 4).collect();
        let labels = (0..37).map(|i| i % 5).collect();
        let dataset = Arc::new(Dataset::from_parts("d", images, labels, [3, 4, 4], 5));
        let options = BatchOptions {
            batch_size,
            shuffle: true,
            augment: Some(Augment { pad: 2, flip: true }),
            normalization: Normalization::for_kind(crate::data::DatasetKind::Cifar10),
            seed: 42,
        };
        Arc::new(Batcher::new(dataset, options).unwrap())
    }

    #[test]
    fn prefetched_batches_equal_those_built_in_place() {
        let batcher = batcher(8);
        let indices: Arc<[u32]> = (0..37).collect();
        let expected: Vec<Batch> = batcher.epoch(&indices, 3, 0).collect();
        assert_eq!(expected.len(), 5);
        for prefetch in [1, 2, 16] {
            let loader = EpochLoader::spawn(batcher.clone(), indices.clone(), 3, 0, prefetch);
            assert_eq!(loader.len(), 5);
            let loaded: Vec<Batch> = loader.collect();
            assert_eq!(loaded, expected, "prefetch {prefetch}");
        }
    }

    #[test]
    fn slow_and_fast_consumers_see_the_same_epoch() {
        let batcher = batcher(5);
        let indices: Arc<[u32]> = (0..37).collect();
        let fast: Vec<Batch> =
            EpochLoader::spawn(batcher.clone(), indices.clone(), 1, 0, 2).collect();
        let slow: Vec<Batch> = EpochLoader::spawn(batcher, indices, 1, 0, 2)
            .inspect(|_| std::thread::sleep(std::time::Duration::from_millis(2)))
            .collect();
        assert_eq!(fast, slow);
        assert_eq!(fast.last().unwrap().len(), 2);
    }

    #[test]
    fn resuming_at_a_batch_continues_the_same_epoch() {
        let batcher = batcher(4);
        let indices: Arc<[u32]> = (0..37).collect();
        let whole: Vec<Batch> =
            EpochLoader::spawn(batcher.clone(), indices.clone(), 7, 0, 2).collect();
        let rest: Vec<Batch> = EpochLoader::spawn(batcher, indices, 7, 6, 2).collect();
        assert_eq!(&whole[6..], &rest[..]);
    }

    #[test]
    fn dropping_a_loader_early_stops_its_worker() {
        let batcher = batcher(1);
        let indices: Arc<[u32]> = (0..37).collect();
        let mut loader = EpochLoader::spawn(batcher, indices, 0, 0, 1);
        assert!(loader.next().is_some());
        assert_eq!(loader.remaining(), 36);
        // Drop joins the worker, which must notice the hang-up instead of blocking forever.
        drop(loader);
    }

    #[test]
    fn a_worker_panic_reaches_the_consumer() {
        let batcher = batcher(4);
        // Index 99 is outside the 37-image data set: building its batch panics in the worker.
        let indices: Arc<[u32]> = vec![0, 1, 2, 3, 99].into();
        let result =
            std::panic::catch_unwind(|| EpochLoader::spawn(batcher, indices, 0, 0, 1).count());
        assert!(
            result.is_err(),
            "a dead worker must not end the epoch quietly"
        );
    }
}
