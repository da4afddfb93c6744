//! A whole run: phase after phase, epoch after epoch, with evaluation, metrics, checkpoints,
//! the phase-boundary carry and the resume from the latest checkpoint.
//!
//! Invariant: after every completed epoch the metrics log holds one line per epoch up to it;
//! a checkpoint is written after the metrics line of its epoch; on resume the log is cut back
//! to the checkpoint's epoch and the run continues with exactly the tensors, RNG state and
//! step count the checkpoint holds, so the rest of the run is the uninterrupted one's.

use std::path::PathBuf;
use std::time::Instant;

use super::carry::{carry_into, CarryReport};
use super::epoch::{evaluate, train_epoch, EpochEnd, Evaluation, Feeds, Stepper};
use super::observer::{Event, Flow, Observer};
use super::resume::{self, Position};
use super::{BatchSource, PhaseModel, PhaseRun, RunData, RunSpec, TrainError};
use crate::experiment::EpochPlan;
use crate::metrics::{EpochMetrics, MetricsLog};
use crate::program::{ParamStore, Storage};
use crate::rng::Rng;
use crate::target::cpu::CpuExecutable;

/// The key of the trainer's RNG stream ("TRAIN" in ASCII), beside the data streams.
const TRAINER_STREAM_KEY: u64 = 0x54_5241_494E;

/// What a finished run leaves behind.
#[derive(Debug)]
pub struct Summary {
    /// Epochs trained by this call (fewer than the plan's after a resume).
    pub epochs_trained: u32,
    /// The last epoch of the run.
    pub last_epoch: u32,
    /// The last evaluation on the test split made by this call.
    pub test: Option<Evaluation>,
    /// What crossed each phase boundary crossed by this call.
    pub carries: Vec<CarryReport>,
    /// The newest checkpoint.
    pub last_checkpoint: Option<PathBuf>,
    /// The final persistent tensors of the last phase.
    pub store: ParamStore,
}

/// How a call to [`train`] ended without error.
#[derive(Debug)]
pub enum Outcome {
    /// Every epoch of the plan is done.
    Finished(Summary),
    /// The observer asked to stop during or after `epoch`; resume to continue.
    Stopped {
        /// The epoch during or after which the run stopped.
        epoch: u32,
    },
}

/// The moving parts of a run.
struct Runner<'a> {
    spec: &'a RunSpec,
    data: &'a RunData,
    metrics: MetricsLog,
    observer: &'a mut dyn Observer,
    rng: Rng,
    step: u64,
    epochs_trained: u32,
    last_checkpoint: Option<PathBuf>,
    test: Option<Evaluation>,
    carries: Vec<CarryReport>,
    /// The last compiled executable, with its program's hash.
    executable: Option<(String, CpuExecutable)>,
}

/// Trains the run `spec` describes on `data`, reporting to `observer`.
///
/// # Errors
///
/// Any [`TrainError`]: an inconsistent model, data that does not fit it, a checkpoint that
/// does not belong to the run, file-system failures, a target failure, or divergence.
pub fn train(
    spec: &RunSpec,
    data: &RunData,
    observer: &mut dyn Observer,
) -> Result<Outcome, TrainError> {
    let _span = tracing::info_span!("train", run = %spec.name).entered();
    for phase in &spec.phases {
        phase.model.validate(phase.plan.phase)?;
        check_input(&phase.model, phase.plan.phase, &data.train)?;
    }
    let checkpoints = spec.checkpoints_dir();
    std::fs::create_dir_all(&checkpoints).map_err(TrainError::io(&checkpoints))?;
    let resumed = if spec.resume {
        resume::find(spec)?
    } else {
        None
    };
    let metrics = open_metrics(spec, resumed.as_ref())?;
    let mut runner = Runner {
        spec,
        data,
        metrics,
        observer,
        rng: Rng::derive(spec.seed, &[TRAINER_STREAM_KEY]),
        step: 0,
        epochs_trained: 0,
        last_checkpoint: None,
        test: None,
        carries: Vec::new(),
        executable: None,
    };

    let mut previous: Option<(u8, ParamStore)> = None;
    for (index, phase) in spec.phases.iter().enumerate() {
        let (mut store, next_epoch) = match &resumed {
            Some(found) if index < found.phase_index => continue,
            Some(found) if index == found.phase_index => runner.restore(found, &phase.model),
            _ => (
                runner.entry_store(phase, previous.take())?,
                phase.plan.first_epoch,
            ),
        };
        if let Some(epoch) = runner.run_phase(phase, &mut store, next_epoch)? {
            return Ok(Outcome::Stopped { epoch });
        }
        previous = Some((phase.plan.phase, store));
    }

    let store = previous.map(|(_, store)| store).unwrap_or_default();
    Ok(Outcome::Finished(Summary {
        epochs_trained: runner.epochs_trained,
        last_epoch: spec.last_epoch(),
        test: runner.test,
        carries: runner.carries,
        last_checkpoint: runner.last_checkpoint,
        store,
    }))
}

/// The metrics log: new, or cut back to the resumed checkpoint's epoch (to nothing when a
/// resume finds no checkpoint).
fn open_metrics(
    spec: &RunSpec,
    resumed: Option<&resume::Resumed>,
) -> Result<MetricsLog, TrainError> {
    let path = spec.metrics_path();
    let log = match resumed {
        Some(found) => MetricsLog::resume(&path, found.checkpoint.manifest.epoch)?,
        None if spec.resume && path.exists() => MetricsLog::resume(&path, 0)?,
        None => MetricsLog::create(&path)?,
    };
    Ok(log)
}

impl Runner<'_> {
    /// The store, RNG and step count of a resumed checkpoint; returns the store and the
    /// first epoch still to train.
    fn restore(&mut self, found: &resume::Resumed, model: &PhaseModel) -> (ParamStore, u32) {
        let manifest = &found.checkpoint.manifest;
        self.rng = Rng::from_state(manifest.rng);
        self.step = manifest.step;
        self.last_checkpoint = Some(found.dir.clone());
        let dir = found.dir.as_path();
        self.observer.event(Event::Resumed {
            dir,
            epoch: manifest.epoch,
        });
        (
            resume::restore_store(&found.checkpoint, model),
            manifest.epoch + 1,
        )
    }

    /// The store a phase starts from when it is entered (not resumed): fresh values, or the
    /// previous phase's carried across.
    fn entry_store(
        &mut self,
        phase: &PhaseRun,
        previous: Option<(u8, ParamStore)>,
    ) -> Result<ParamStore, TrainError> {
        let Some((from_phase, store)) = previous else {
            return Ok(phase.model.initial.clone());
        };
        let phases = (from_phase, phase.plan.phase);
        let carry_momentum = phase.plan.carry_momentum;
        let (store, report) = carry_into(&store, &phase.model, carry_momentum, phases)?;
        tracing::info!(
            carried = report.carried.len(),
            dropped = report.dropped.len(),
            restarted = report.restarted.len(),
            fresh = report.fresh.len(),
            "phase boundary crossed"
        );
        self.carries.push(report);
        Ok(store)
    }

    /// Trains the epochs of `phase` from `next_epoch` on. Returns the epoch at which the
    /// observer stopped the run, if it did.
    fn run_phase(
        &mut self,
        phase: &PhaseRun,
        store: &mut ParamStore,
        next_epoch: u32,
    ) -> Result<Option<u32>, TrainError> {
        let plan = &phase.plan;
        if next_epoch >= plan.first_epoch + plan.epochs {
            return Ok(None);
        }
        let number = plan.phase;
        let feeds = Feeds::of(&phase.model.program).map_err(|problem| TrainError::BadModel {
            phase: number,
            problem,
        })?;
        let mut executable = self.take_executable(&phase.model, number)?;
        let parameters = phase.model.parameter_count();
        let carry = self
            .carries
            .last()
            .filter(|report| report.to_phase == number);
        let carry = carry.filter(|_| next_epoch == plan.first_epoch);
        self.observer.event(Event::PhaseStarted {
            plan,
            parameters,
            carry,
        });

        let epochs = epochs_of(phase).filter(|epoch| epoch.epoch >= next_epoch);
        for epoch in epochs.collect::<Vec<_>>() {
            let flow = self.run_epoch(phase, &feeds, &mut executable, store, &epoch)?;
            if flow == Flow::Stop {
                return Ok(Some(epoch.epoch));
            }
        }
        self.executable = Some((phase.model.program_hash(), executable));
        Ok(None)
    }

    /// One epoch: training, evaluation, its metrics line and its checkpoint when due.
    fn run_epoch(
        &mut self,
        phase: &PhaseRun,
        feeds: &Feeds,
        executable: &mut CpuExecutable,
        store: &mut ParamStore,
        epoch: &EpochPlan,
    ) -> Result<Flow, TrainError> {
        let started = Instant::now();
        let number = phase.plan.phase;
        let mut stepper = Stepper {
            executable: &mut *executable,
            store: &mut *store,
            feeds,
            rng: &mut self.rng,
            phase: number,
        };
        let totals = match train_epoch(&mut stepper, &self.data.train, epoch, self.observer)? {
            EpochEnd::Done(totals) => totals,
            EpochEnd::Stopped => return Ok(Flow::Stop),
            EpochEnd::Diverged {
                batch,
                batches,
                loss,
            } => {
                return Err(self.diverged("training", epoch, Some((batch, batches)), loss));
            }
        };
        self.step += totals.steps;
        self.epochs_trained += 1;

        let record = self.evaluate_epoch(phase, executable, store, epoch)?;
        let record = EpochMetrics {
            train_loss: totals.loss(),
            train_acc: totals.accuracy(),
            seconds: started.elapsed().as_secs_f64(),
            images_per_s: totals.images_per_s(),
            ..record
        };
        self.metrics.append(&record)?;
        if self.observer.event(Event::EpochDone(&record)) == Flow::Stop {
            return Ok(Flow::Stop);
        }
        if !checkpoint_due(self.spec, phase, epoch) {
            return Ok(Flow::Continue);
        }
        let position = Position {
            epoch,
            step: self.step,
            rng: &self.rng,
        };
        let dir = resume::save(self.spec, &phase.model, store, &position)?;
        if !self.spec.keep_all_checkpoints {
            resume::prune(self.spec, epoch.epoch)?;
        }
        let flow = self.observer.event(Event::CheckpointSaved {
            dir: &dir,
            epoch: epoch.epoch,
        });
        self.last_checkpoint = Some(dir);
        Ok(flow)
    }

    /// The executable of `model`: the previous phase's when the program is the same, else
    /// freshly compiled (after the previous one and its arena are freed).
    fn take_executable(
        &mut self,
        model: &PhaseModel,
        phase: u8,
    ) -> Result<CpuExecutable, TrainError> {
        let hash = model.program_hash();
        if let Some((cached, executable)) = self.executable.take() {
            if cached == hash {
                return Ok(executable);
            }
        }
        let executable =
            CpuExecutable::compile(&model.program).map_err(TrainError::target(phase))?;
        let seconds = executable.compile_seconds();
        self.observer.event(Event::Compiled { phase, seconds });
        Ok(executable)
    }

    /// The epoch's metrics without the training fields: test (and validation) results when
    /// the epoch is evaluated.
    fn evaluate_epoch(
        &mut self,
        phase: &PhaseRun,
        executable: &mut CpuExecutable,
        store: &mut ParamStore,
        epoch: &EpochPlan,
    ) -> Result<EpochMetrics, TrainError> {
        let mut record = EpochMetrics {
            epoch: epoch.epoch,
            phase: epoch.phase,
            lr: epoch.lr,
            train_loss: 0.0,
            train_acc: 0.0,
            test_loss: None,
            test_acc: None,
            validation_loss: None,
            validation_acc: None,
            seconds: 0.0,
            images_per_s: 0.0,
        };
        let last_of_phase = epoch.phase_epoch == phase.plan.epochs;
        if !(last_of_phase || epoch.epoch.is_multiple_of(self.spec.eval_every.max(1))) {
            return Ok(record);
        }
        let data = self.data;
        let test = self.evaluate_split("test", &data.test, executable, store, epoch)?;
        (record.test_loss, record.test_acc) = (Some(test.loss), Some(test.accuracy));
        if let Some(validation) = &data.validation {
            let result = self.evaluate_split("validation", validation, executable, store, epoch)?;
            record.validation_loss = Some(result.loss);
            record.validation_acc = Some(result.accuracy);
        }
        self.test = Some(test);
        Ok(record)
    }

    fn evaluate_split(
        &mut self,
        what: &'static str,
        split: &BatchSource,
        executable: &mut CpuExecutable,
        store: &mut ParamStore,
        epoch: &EpochPlan,
    ) -> Result<Evaluation, TrainError> {
        let images = split.len();
        self.observer.event(Event::Evaluating {
            epoch: epoch.epoch,
            images,
        });
        let result = evaluate(executable, store, split).map_err(TrainError::target(epoch.phase))?;
        if !result.loss.is_finite() {
            return Err(self.diverged(what, epoch, None, result.loss));
        }
        Ok(result)
    }

    fn diverged(
        &self,
        what: &'static str,
        epoch: &EpochPlan,
        batch: Option<(usize, usize)>,
        loss: f64,
    ) -> TrainError {
        TrainError::Diverged {
            what,
            epoch: epoch.epoch,
            phase: epoch.phase,
            batch,
            lr: epoch.lr,
            loss,
            last_checkpoint: self.last_checkpoint.clone(),
        }
    }
}

/// True when a checkpoint follows `epoch`: every `checkpoint_every` global epochs, and at the
/// end of each phase (as [`crate::experiment::Plan::checkpoint_after`] says).
fn checkpoint_due(spec: &RunSpec, phase: &PhaseRun, epoch: &EpochPlan) -> bool {
    let every = spec.checkpoint_every;
    epoch.phase_epoch == phase.plan.epochs || (every > 0 && epoch.epoch.is_multiple_of(every))
}

/// The epochs of one phase, numbered globally.
fn epochs_of(phase: &PhaseRun) -> impl Iterator<Item = EpochPlan> + '_ {
    let plan = &phase.plan;
    plan.lrs
        .iter()
        .enumerate()
        .map(move |(index, &lr)| EpochPlan {
            epoch: plan.first_epoch + index as u32,
            phase: plan.phase,
            phase_epoch: index as u32 + 1,
            lr,
        })
}

/// Checks that the training images have the shape of the model's image input, and that the
/// batch fits the program.
fn check_input(model: &PhaseModel, phase: u8, split: &BatchSource) -> Result<(), TrainError> {
    let program = &model.program;
    let Ok(feeds) = Feeds::of(program) else {
        return Ok(());
    };
    let slot = program
        .tensors
        .iter()
        .find(|slot| slot.storage == Storage::Feed && slot.name == feeds.image);
    let dataset = split.batcher.dataset();
    let found = dataset.shape.to_vec();
    if let Some(slot) = slot.filter(|slot| slot.dims != found) {
        return Err(TrainError::InputShape {
            input: slot.name.clone(),
            expected: slot.dims.clone(),
            dataset: dataset.name.clone(),
            found,
        });
    }
    let batch = split.batcher.options().batch_size;
    if batch > program.max_batch {
        let problem = format!(
            "batch size {batch} above the program's {}",
            program.max_batch
        );
        return Err(TrainError::BadModel { phase, problem });
    }
    Ok(())
}
