//! Tests of the training loop on a hand-written program (the runtime cannot use the compiler):
//! a two-class model `logits = x + w` trained by SGD with momentum 0.9, on a toy data set of
//! 1x1x2 images. They check the run directory, the phase-boundary carry, exact resume from
//! any interruption, refusal of foreign checkpoints, and the stop on divergence.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::checkpoint::{self, CheckpointError};
use crate::data::{BatchOptions, Batcher, Dataset, Normalization};
use crate::experiment::{PhaseActivation, PhasePlan, PhaseStart};
use crate::metrics::{self, EpochMetrics};
use crate::program::{DType, Entry, HostTensor, Step, TensorSlot};
use crate::schedule_lr::Schedule;

const MODULE: &str = r#"
module {
  // Forward for item i: l_k = x_k + w_k; returns (l0, l1, e0 + e1, label is 1).
  func.func @train(%x: memref<?x1x1x2xf32>, %labels: memref<?xi32>, %lr: memref<f32>,
      %w: memref<2xf32>, %m: memref<2xf32>, %loss: memref<f32>, %correct: memref<f32>)
      attributes {llvm.emit_c_interface} {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %zero = arith.constant 0.0 : f32
    %one = arith.constant 1.0 : f32
    %n = memref.dim %x, %c0 : memref<?x1x1x2xf32>
    %w0 = memref.load %w[%c0] : memref<2xf32>
    %w1 = memref.load %w[%c1] : memref<2xf32>
    %r:4 = scf.for %i = %c0 to %n step %c1
        iter_args(%g0 = %zero, %g1 = %zero, %ls = %zero, %cs = %zero)
        -> (f32, f32, f32, f32) {
      %x0 = memref.load %x[%i, %c0, %c0, %c0] : memref<?x1x1x2xf32>
      %x1 = memref.load %x[%i, %c0, %c0, %c1] : memref<?x1x1x2xf32>
      %l0 = arith.addf %x0, %w0 : f32
      %l1 = arith.addf %x1, %w1 : f32
      %e0 = math.exp %l0 : f32
      %e1 = math.exp %l1 : f32
      %s = arith.addf %e0, %e1 : f32
      %p0 = arith.divf %e0, %s : f32
      %p1 = arith.divf %e1, %s : f32
      %label = memref.load %labels[%i] : memref<?xi32>
      %one_i = arith.constant 1 : i32
      %is1 = arith.cmpi eq, %label, %one_i : i32
      %ly = arith.select %is1, %l1, %l0 : f32
      %lse = math.log %s : f32
      %li = arith.subf %lse, %ly : f32
      %y1 = arith.select %is1, %one, %zero : f32
      %y0 = arith.subf %one, %y1 : f32
      %d0 = arith.subf %p0, %y0 : f32
      %d1 = arith.subf %p1, %y1 : f32
      %pred1 = arith.cmpf ogt, %l1, %l0 : f32
      %ok = arith.cmpi eq, %pred1, %is1 : i1
      %okf = arith.select %ok, %one, %zero : f32
      %ng0 = arith.addf %g0, %d0 : f32
      %ng1 = arith.addf %g1, %d1 : f32
      %nls = arith.addf %ls, %li : f32
      %ncs = arith.addf %cs, %okf : f32
      scf.yield %ng0, %ng1, %nls, %ncs : f32, f32, f32, f32
    }
    %n64 = arith.index_cast %n : index to i64
    %nf = arith.sitofp %n64 : i64 to f32
    %mean = arith.divf %r#2, %nf : f32
    memref.store %mean, %loss[] : memref<f32>
    memref.store %r#3, %correct[] : memref<f32>
    %rate = memref.load %lr[] : memref<f32>
    %mu = arith.constant 0.9 : f32
    %grad0 = arith.divf %r#0, %nf : f32
    %grad1 = arith.divf %r#1, %nf : f32
    %m0 = memref.load %m[%c0] : memref<2xf32>
    %m1 = memref.load %m[%c1] : memref<2xf32>
    %mm0 = arith.mulf %mu, %m0 : f32
    %mm1 = arith.mulf %mu, %m1 : f32
    %nm0 = arith.addf %mm0, %grad0 : f32
    %nm1 = arith.addf %mm1, %grad1 : f32
    memref.store %nm0, %m[%c0] : memref<2xf32>
    memref.store %nm1, %m[%c1] : memref<2xf32>
    %u0 = arith.mulf %rate, %nm0 : f32
    %u1 = arith.mulf %rate, %nm1 : f32
    %nw0 = arith.subf %w0, %u0 : f32
    %nw1 = arith.subf %w1, %u1 : f32
    memref.store %nw0, %w[%c0] : memref<2xf32>
    memref.store %nw1, %w[%c1] : memref<2xf32>
    return
  }

  func.func @eval(%x: memref<?x1x1x2xf32>, %labels: memref<?xi32>, %w: memref<2xf32>,
      %loss: memref<f32>, %correct: memref<f32>) attributes {llvm.emit_c_interface} {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %zero = arith.constant 0.0 : f32
    %one = arith.constant 1.0 : f32
    %n = memref.dim %x, %c0 : memref<?x1x1x2xf32>
    %w0 = memref.load %w[%c0] : memref<2xf32>
    %w1 = memref.load %w[%c1] : memref<2xf32>
    %r:2 = scf.for %i = %c0 to %n step %c1 iter_args(%ls = %zero, %cs = %zero)
        -> (f32, f32) {
      %x0 = memref.load %x[%i, %c0, %c0, %c0] : memref<?x1x1x2xf32>
      %x1 = memref.load %x[%i, %c0, %c0, %c1] : memref<?x1x1x2xf32>
      %l0 = arith.addf %x0, %w0 : f32
      %l1 = arith.addf %x1, %w1 : f32
      %e0 = math.exp %l0 : f32
      %e1 = math.exp %l1 : f32
      %s = arith.addf %e0, %e1 : f32
      %label = memref.load %labels[%i] : memref<?xi32>
      %one_i = arith.constant 1 : i32
      %is1 = arith.cmpi eq, %label, %one_i : i32
      %ly = arith.select %is1, %l1, %l0 : f32
      %lse = math.log %s : f32
      %li = arith.subf %lse, %ly : f32
      %pred1 = arith.cmpf ogt, %l1, %l0 : f32
      %ok = arith.cmpi eq, %pred1, %is1 : i1
      %okf = arith.select %ok, %one, %zero : f32
      %nls = arith.addf %ls, %li : f32
      %ncs = arith.addf %cs, %okf : f32
      scf.yield %nls, %ncs : f32, f32
    }
    %n64 = arith.index_cast %n : index to i64
    %nf = arith.sitofp %n64 : i64 to f32
    %mean = arith.divf %r#0, %nf : f32
    memref.store %mean, %loss[] : memref<f32>
    memref.store %r#1, %correct[] : memref<f32>
    return
  }
}
"#;

const BATCH: usize = 4;

fn slot(name: &str, dtype: DType, batched: bool, dims: &[usize], storage: Storage) -> TensorSlot {
    TensorSlot {
        name: name.into(),
        dtype,
        batched,
        dims: dims.to_vec(),
        storage,
    }
}

/// The toy model; phase 1's also holds a `slope` tensor that phase 2 drops.
fn model(with_slope: bool, initial_w: [f32; 2]) -> Arc<PhaseModel> {
    use Storage::*;
    let mut tensors = vec![
        slot("image", DType::F32, true, &[1, 1, 2], Feed),
        slot(LABELS_FEED, DType::I32, true, &[], Feed),
        slot(LR_FEED, DType::F32, false, &[], Feed),
        slot("w", DType::F32, false, &[2], Persistent),
        slot("w.momentum", DType::F32, false, &[2], Persistent),
        slot(LOSS_OUTPUT, DType::F32, false, &[], Output),
        slot(CORRECT_OUTPUT, DType::F32, false, &[], Output),
    ];
    let mut kinds = BTreeMap::from([
        ("w".to_string(), TensorKind::Trained),
        ("w.momentum".to_string(), TensorKind::Optimizer),
    ]);
    if with_slope {
        tensors.push(slot("slope", DType::F32, false, &[1], Persistent));
        kinds.insert("slope".to_string(), TensorKind::Trained);
    }
    let step = |kernel: &str, args: &[usize]| Step {
        kernel: kernel.into(),
        args: args.to_vec(),
        batch_split: false,
    };
    let program = Program {
        mlir: MODULE.into(),
        tensors,
        entries: vec![
            Entry {
                name: TRAIN_ENTRY.into(),
                steps: vec![step("train", &[0, 1, 2, 3, 4, 5, 6])],
            },
            Entry {
                name: EVAL_ENTRY.into(),
                steps: vec![step("eval", &[0, 1, 3, 5, 6])],
            },
        ],
        max_batch: BATCH,
        arena_bytes: 0,
    };
    let mut initial = ParamStore::zeros_for(&program);
    initial.insert("w", HostTensor::f32(vec![2], initial_w.to_vec()));
    if with_slope {
        initial.insert("slope", HostTensor::f32(vec![1], vec![0.25]));
    }
    Arc::new(PhaseModel {
        program,
        initial,
        kinds,
    })
}

/// 22 images (so the last batch of 4 holds 2); three quarters are class 1, and the pixels
/// lean towards the label.
fn split(seed: u64, shuffle: bool) -> BatchSource {
    let count = 22u8;
    let labels: Vec<u16> = (0..count).map(|i| u16::from(i % 4 != 0)).collect();
    let images: Vec<u8> = (0..count)
        .flat_map(|i| {
            let label = i % 4 != 0;
            let noise = i.wrapping_mul(37) % 64;
            if label {
                [noise, 128 + noise]
            } else {
                [128 + noise, noise]
            }
        })
        .collect();
    let dataset = Arc::new(Dataset::from_parts("toy", images, labels, [1, 1, 2], 2));
    let options = BatchOptions {
        batch_size: BATCH,
        shuffle,
        augment: None,
        normalization: Normalization::unit(1),
        seed,
    };
    BatchSource {
        batcher: Arc::new(Batcher::new(dataset, options).unwrap()),
        indices: (0..u32::from(count)).collect(),
    }
}

fn data() -> RunData {
    RunData {
        train: split(5, true),
        test: split(5, false),
        validation: None,
        classes: 2,
        image_shape: [1, 1, 2],
    }
}

fn phase_plan(phase: u8, first_epoch: u32, lrs: Vec<f64>, start: PhaseStart) -> PhasePlan {
    PhasePlan {
        phase,
        activation: PhaseActivation::Single(crate::experiment::ActivationName::Relu),
        start,
        carry_momentum: false,
        epochs: lrs.len() as u32,
        first_epoch,
        base_lr: lrs[0],
        schedule: Schedule::Constant,
        lrs,
    }
}

/// Two phases: epochs 1-2 with the slope model, 3-5 without, checkpoints every 2 epochs.
fn spec(dir: &Path) -> RunSpec {
    let phase1 = PhaseRun {
        plan: phase_plan(1, 1, vec![0.5, 0.5], PhaseStart::Fresh),
        model: model(true, [0.0, 0.0]),
    };
    let lowered = PhaseStart::Lower(crate::experiment::ActivationName::Relu);
    let phase2 = PhaseRun {
        plan: phase_plan(2, 3, vec![0.5, 0.1, 0.1], lowered),
        model: model(false, [7.0, 7.0]),
    };
    RunSpec {
        name: "toy".into(),
        phases: vec![phase1, phase2],
        dir: dir.to_path_buf(),
        checkpoint_every: 2,
        eval_every: 1,
        seed: 11,
        config_hash: "config".into(),
        coopc_version: "test".into(),
        keep_all_checkpoints: false,
        resume: false,
    }
}

fn finished(outcome: Outcome) -> Summary {
    match outcome {
        Outcome::Finished(summary) => summary,
        Outcome::Stopped { epoch } => panic!("stopped at epoch {epoch}"),
    }
}

fn bits(store: &ParamStore) -> Vec<(String, Vec<u32>)> {
    store
        .tensors
        .iter()
        .map(|(name, tensor)| {
            let values = tensor.as_f32().unwrap().iter().map(|v| v.to_bits());
            (name.clone(), values.collect())
        })
        .collect()
}

/// The metrics without the timing fields, which differ from run to run.
fn timeless(dir: &Path) -> Vec<EpochMetrics> {
    let mut records = metrics::read(&dir.join(METRICS_FILE)).unwrap();
    for record in &mut records {
        (record.seconds, record.images_per_s) = (0.0, 0.0);
    }
    records
}

fn checkpoint_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(CHECKPOINTS_DIR))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_run_logs_every_epoch_carries_by_name_and_keeps_phase_end_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let summary = finished(train(&spec(dir.path()), &data(), &mut QuietObserver).unwrap());
    assert_eq!((summary.epochs_trained, summary.last_epoch), (5, 5));

    let records = timeless(dir.path());
    let epochs: Vec<(u32, u8, f64)> = records.iter().map(|r| (r.epoch, r.phase, r.lr)).collect();
    assert_eq!(
        epochs,
        vec![
            (1, 1, 0.5),
            (2, 1, 0.5),
            (3, 2, 0.5),
            (4, 2, 0.1),
            (5, 2, 0.1)
        ]
    );
    assert!(records.iter().all(|r| r.test_acc.is_some()));
    // The classes are 3:1 and the pixels lean to the label: the model learns something.
    assert!(records[4].train_loss < records[0].train_loss, "{records:?}");
    assert!(records[4].test_acc.unwrap() >= 0.75, "{records:?}");

    // Epoch 4's checkpoint went once epoch 5's (the phase end) was written.
    assert_eq!(
        checkpoint_names(dir.path()),
        vec!["epoch-0002", "epoch-0005"]
    );
    let last = checkpoint::load(&dir.path().join("checkpoints/epoch-0005")).unwrap();
    assert_eq!((last.manifest.phase, last.manifest.phase_epoch), (2, 3));
    assert_eq!(last.manifest.step, 5 * 6, "six batches an epoch");
    assert!(last.optimizer.contains_key("w.momentum"));
    assert!(!last.weights.contains_key("slope"));

    let [report] = &summary.carries[..] else {
        panic!("{:?}", summary.carries)
    };
    assert_eq!(report.carried, vec!["w"]);
    assert_eq!(report.restarted, vec!["w.momentum"]);
    assert_eq!(report.dropped, vec![("slope".to_string(), 1)]);
    // Carried, not the phase-2 initial value 7.
    let w = summary.store.get("w").unwrap().as_f32().unwrap();
    assert!(w.iter().all(|&value| value.abs() < 5.0), "{w:?}");
}

/// Where the observer interrupts a run.
#[derive(Clone, Copy, Debug)]
enum StopAt {
    Batch { epoch: u32, batch: usize },
    EpochDone(u32),
    Checkpoint(u32),
}

fn stopper(at: StopAt) -> impl FnMut(Event<'_>) -> Flow {
    move |event| {
        let stop = match (at, event) {
            (StopAt::Batch { epoch, batch }, Event::Batch(progress)) => {
                progress.epoch == epoch && progress.batch == batch
            }
            (StopAt::EpochDone(epoch), Event::EpochDone(record)) => record.epoch == epoch,
            (StopAt::Checkpoint(epoch), Event::CheckpointSaved { epoch: saved, .. }) => {
                saved == epoch
            }
            _ => false,
        };
        if stop {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}

#[test]
fn a_run_stopped_anywhere_and_resumed_ends_as_the_uninterrupted_one() {
    let reference_dir = tempfile::tempdir().unwrap();
    let reference =
        finished(train(&spec(reference_dir.path()), &data(), &mut QuietObserver).unwrap());
    let expected_metrics = timeless(reference_dir.path());
    let stops = [
        StopAt::Batch { epoch: 1, batch: 3 },
        StopAt::EpochDone(2),
        StopAt::Checkpoint(2),
        StopAt::Batch { epoch: 3, batch: 1 },
        StopAt::Batch { epoch: 4, batch: 6 },
        StopAt::EpochDone(4),
        StopAt::Checkpoint(4),
        StopAt::Batch { epoch: 5, batch: 2 },
    ];
    for at in stops {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(dir.path());
        let outcome = train(&spec, &data(), &mut stopper(at)).unwrap();
        assert!(matches!(outcome, Outcome::Stopped { .. }), "{at:?}");
        spec.resume = true;
        let resumed = finished(train(&spec, &data(), &mut QuietObserver).unwrap());
        assert_eq!(bits(&resumed.store), bits(&reference.store), "{at:?}");
        assert_eq!(timeless(dir.path()), expected_metrics, "{at:?}");
        let final_bytes = |root: &Path| {
            std::fs::read(
                root.join("checkpoints/epoch-0005")
                    .join(checkpoint::WEIGHTS_FILE),
            )
            .unwrap()
        };
        assert_eq!(
            final_bytes(dir.path()),
            final_bytes(reference_dir.path()),
            "{at:?}"
        );
    }
}

#[test]
fn resuming_a_finished_run_trains_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec(dir.path());
    finished(train(&spec, &data(), &mut QuietObserver).unwrap());
    spec.resume = true;
    let again = finished(train(&spec, &data(), &mut QuietObserver).unwrap());
    assert_eq!(again.epochs_trained, 0);
    assert_eq!(timeless(dir.path()).len(), 5);
}

#[test]
fn a_checkpoint_of_another_configuration_or_program_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec(dir.path());
    let outcome = train(&spec, &data(), &mut stopper(StopAt::EpochDone(3))).unwrap();
    assert!(matches!(outcome, Outcome::Stopped { epoch: 3 }));
    spec.resume = true;

    let mut other = spec.clone();
    other.config_hash = "another".into();
    let error = train(&other, &data(), &mut QuietObserver).unwrap_err();
    let TrainError::Checkpoint(CheckpointError::Mismatch { differences, .. }) = &error else {
        panic!("{error:?}")
    };
    assert!(
        differences[0].contains("configuration hash config"),
        "{differences:?}"
    );

    // The checkpoint (epoch 2) belongs to phase 1: a phase-1 program with another kernel
    // text hashes differently.
    let mut other = spec.clone();
    let mut changed = (*other.phases[0].model).clone();
    changed.program.mlir = changed.program.mlir.replace("0.9 : f32", "0.8 : f32");
    other.phases[0].model = Arc::new(changed);
    let error = train(&other, &data(), &mut QuietObserver).unwrap_err();
    assert!(error.to_string().contains("program hash"), "{error}");
}

#[test]
fn a_huge_learning_rate_stops_with_the_last_good_checkpoint_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec(dir.path());
    spec.checkpoint_every = 1;
    spec.phases[1].plan.lrs = vec![0.5, 1e36, 1e36];
    let error = train(&spec, &data(), &mut QuietObserver).unwrap_err();
    let TrainError::Diverged {
        epoch,
        phase,
        last_checkpoint,
        ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!((*epoch, *phase), (4, 2), "{error}");
    let kept = last_checkpoint.clone().unwrap();
    assert!(kept.ends_with("epoch-0003"), "{kept:?}");
    assert!(checkpoint::load(&kept).is_ok());
    let message = error.to_string();
    assert!(
        message.contains("epoch 4") && message.contains("epoch-0003"),
        "{message}"
    );
    assert_eq!(
        timeless(dir.path()).len(),
        3,
        "no line for the diverged epoch"
    );
}

#[test]
fn images_of_another_shape_than_the_input_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path());
    let mut data = data();
    let dataset = Dataset::from_parts("wide", vec![0; 12], vec![0, 1, 0, 1], [1, 1, 3], 2);
    let options = data.train.batcher.options().clone();
    data.train.batcher = Arc::new(Batcher::new(Arc::new(dataset), options).unwrap());
    data.train.indices = (0..4).collect();
    let error = train(&spec, &data, &mut QuietObserver).unwrap_err();
    assert!(matches!(error, TrainError::InputShape { .. }), "{error:?}");
    assert!(error.to_string().contains("[1, 1, 3]"), "{error}");
}
