//! One epoch: every batch of the training split through `train_step` (batches prepared ahead
//! by the [`crate::data::EpochLoader`]), then the evaluation of a split through `eval_step`.
//!
//! Invariant: the epoch's sums are accumulated in `f64` in batch order, so they depend only
//! on the per-batch outputs; the dropout seed of each step is the next draw of the trainer's
//! RNG, drawn whether or not the program has dropout, so the RNG advances by exactly one
//! value per training step.

use std::collections::BTreeMap;
use std::time::Instant;

use super::observer::{BatchProgress, Event, Flow, Observer};
use super::{
    BatchSource, TrainError, CORRECT_OUTPUT, DROPOUT_SEED_FEED, EVAL_ENTRY, LABELS_FEED,
    LOSS_OUTPUT, LR_FEED, TRAIN_ENTRY,
};
use crate::experiment::EpochPlan;
use crate::program::{DType, HostTensor, ParamStore, Program, Storage, TensorRef};
use crate::rng::Rng;
use crate::target::cpu::CpuExecutable;
use crate::target::TargetError;

/// The feeds of a program besides labels, rate and seed: the image input's name, and whether
/// a dropout seed is fed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Feeds {
    pub image: String,
    pub dropout: bool,
}

impl Feeds {
    /// Finds the image feed: the one batched `f32` feed that is not a label, rate or seed.
    pub fn of(program: &Program) -> Result<Feeds, String> {
        let known = [LABELS_FEED, LR_FEED, DROPOUT_SEED_FEED];
        let images: Vec<&str> = program
            .tensors
            .iter()
            .filter(|slot| slot.storage == Storage::Feed && !known.contains(&slot.name.as_str()))
            .filter(|slot| slot.batched && slot.dtype == DType::F32)
            .map(|slot| slot.name.as_str())
            .collect();
        let [image] = images[..] else {
            return Err(format!(
                "expected exactly one batched f32 image feed, found {images:?}"
            ));
        };
        let dropout = program
            .tensors
            .iter()
            .any(|slot| slot.storage == Storage::Feed && slot.name == DROPOUT_SEED_FEED);
        Ok(Feeds {
            image: image.to_string(),
            dropout,
        })
    }
}

/// Sums over the batches of an epoch's training.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct TrainTotals {
    pub images: usize,
    pub loss_sum: f64,
    pub correct: f64,
    pub steps: u64,
    pub seconds: f64,
}

impl TrainTotals {
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.images.max(1) as f64
    }

    pub fn accuracy(&self) -> f64 {
        self.correct / self.images.max(1) as f64
    }

    pub fn images_per_s(&self) -> f64 {
        self.images as f64 / self.seconds.max(1e-9)
    }
}

/// What the loop needs to run a phase's steps.
pub(super) struct Stepper<'a> {
    pub executable: &'a mut CpuExecutable,
    pub store: &'a mut ParamStore,
    pub feeds: &'a Feeds,
    pub rng: &'a mut Rng,
    pub phase: u8,
}

/// How an epoch's training ended.
pub(super) enum EpochEnd {
    /// Every batch trained.
    Done(TrainTotals),
    /// The observer asked to stop.
    Stopped,
    /// The loss of a batch is not finite.
    Diverged {
        batch: usize,
        batches: usize,
        loss: f64,
    },
}

/// Trains epoch `plan` over `split`.
pub(super) fn train_epoch(
    stepper: &mut Stepper<'_>,
    split: &BatchSource,
    plan: &EpochPlan,
    observer: &mut dyn Observer,
) -> Result<EpochEnd, TrainError> {
    let loader = split.epoch(plan.epoch, 0);
    let batches = loader.len();
    observer.event(Event::EpochStarted { plan, batches });
    let started = Instant::now();
    let mut totals = TrainTotals::default();
    let lr = [plan.lr as f32];
    for batch in loader {
        let seed = stepper.rng.next_u64();
        let seed_words = [seed as u32 as i32, (seed >> 32) as u32 as i32];
        let mut feeds = vec![
            (stepper.feeds.image.as_str(), TensorRef::F32(&batch.images)),
            (LABELS_FEED, TensorRef::I32(&batch.labels)),
            (LR_FEED, TensorRef::F32(&lr)),
        ];
        if stepper.feeds.dropout {
            feeds.push((DROPOUT_SEED_FEED, TensorRef::I32(&seed_words)));
        }
        let outputs = stepper
            .executable
            .run(TRAIN_ENTRY, batch.len(), &feeds, stepper.store)
            .map_err(TrainError::target(stepper.phase))?;
        let (loss, correct) =
            loss_and_correct(&outputs).map_err(TrainError::target(stepper.phase))?;
        totals.steps += 1;
        if !loss.is_finite() {
            let batch = batch.position + 1;
            return Ok(EpochEnd::Diverged {
                batch,
                batches,
                loss,
            });
        }
        totals.images += batch.len();
        totals.loss_sum += loss * batch.len() as f64;
        totals.correct += correct;
        totals.seconds = started.elapsed().as_secs_f64();
        let progress = BatchProgress {
            epoch: plan.epoch,
            batch: batch.position + 1,
            batches,
            images: totals.images,
            loss: totals.loss(),
            accuracy: totals.accuracy(),
            images_per_s: totals.images_per_s(),
        };
        if observer.event(Event::Batch(progress)) == Flow::Stop {
            return Ok(EpochEnd::Stopped);
        }
    }
    Ok(EpochEnd::Done(totals))
}

/// The loss and accuracy of a model on one split.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Evaluation {
    /// Images evaluated.
    pub images: usize,
    /// Mean loss over them.
    pub loss: f64,
    /// Images classified correctly.
    pub correct: usize,
    /// `correct / images`.
    pub accuracy: f64,
}

/// Evaluates the model in `store` on `split` with the program's `eval_step` (BatchNorm on
/// running statistics; nothing in `store` changes).
///
/// # Errors
///
/// A [`TargetError`] from a step, or when the program lacks the feed of the images.
pub fn evaluate(
    executable: &mut CpuExecutable,
    store: &mut ParamStore,
    split: &BatchSource,
) -> Result<Evaluation, TargetError> {
    let image = Feeds::of(executable.program())
        .map_err(|_| TargetError::MissingTensor {
            name: "image".to_string(),
        })?
        .image;
    let loader = split.epoch(0, 0);
    let (mut images, mut loss_sum, mut correct_sum) = (0usize, 0.0f64, 0.0f64);
    for batch in loader {
        let feeds = [
            (image.as_str(), TensorRef::F32(&batch.images)),
            (LABELS_FEED, TensorRef::I32(&batch.labels)),
        ];
        let outputs = executable.run(EVAL_ENTRY, batch.len(), &feeds, store)?;
        let (loss, correct) = loss_and_correct(&outputs)?;
        images += batch.len();
        loss_sum += loss * batch.len() as f64;
        correct_sum += correct;
    }
    let count = images.max(1) as f64;
    Ok(Evaluation {
        images,
        loss: loss_sum / count,
        correct: correct_sum.round() as usize,
        accuracy: correct_sum / count,
    })
}

/// The `loss` and `correct` outputs of a step, widened to `f64`.
fn loss_and_correct(outputs: &BTreeMap<String, HostTensor>) -> Result<(f64, f64), TargetError> {
    let scalar = |name: &str| -> Result<f64, TargetError> {
        let tensor = outputs
            .get(name)
            .ok_or_else(|| TargetError::MissingTensor {
                name: name.to_string(),
            })?;
        let value = match (tensor.as_f32(), tensor.as_i32()) {
            (Some([value]), _) => f64::from(*value),
            (_, Some([value])) => f64::from(*value),
            _ => {
                return Err(TargetError::TensorMismatch {
                    name: name.to_string(),
                    expected_dtype: tensor.dtype(),
                    expected: Vec::new(),
                    found_dtype: tensor.dtype(),
                    found: tensor.len(),
                })
            }
        };
        Ok(value)
    };
    Ok((scalar(LOSS_OUTPUT)?, scalar(CORRECT_OUTPUT)?))
}
