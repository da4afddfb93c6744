//! End-to-end tests of the CPU target: a hand-written module (an element-wise `linalg.generic`,
//! a kernel calling the convolution micro-kernel, a reduction with `math.exp`, an in-place
//! parameter update) compiled from a `Program` and run, checked against float64 loops.

use super::*;
use crate::program::{DType, Entry, Step, TensorSlot};

const MODULE: &str = r#"
#map4 = affine_map<(n, c, h, w) -> (n, c, h, w)>
#scalar4 = affine_map<(n, c, h, w) -> ()>
module {
  func.func private @coopc_conv2d_forward(memref<?x?x?x?xf32>, memref<?x?x?x?xf32>,
      memref<?xf32>, memref<?x?x?x?xf32>, i64, i64, i64, i64)
      attributes {llvm.emit_c_interface}

  // y = max(x * s, 0)
  func.func @scale_relu(%x: memref<?x2x5x5xf32>, %s: memref<f32>, %y: memref<?x2x5x5xf32>)
      attributes {llvm.emit_c_interface} {
    linalg.generic {indexing_maps = [#map4, #scalar4, #map4],
                    iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
        ins(%x, %s : memref<?x2x5x5xf32>, memref<f32>) outs(%y : memref<?x2x5x5xf32>) {
    ^bb0(%a: f32, %b: f32, %out: f32):
      %m = arith.mulf %a, %b : f32
      %zero = arith.constant 0.0 : f32
      %r = arith.maximumf %m, %zero : f32
      linalg.yield %r : f32
    }
    return
  }

  // y = conv(x, w) + b, stride 2, padding 1
  func.func @conv(%x: memref<?x2x5x5xf32>, %w: memref<3x2x3x3xf32>, %b: memref<3xf32>,
      %y: memref<?x3x3x3xf32>) attributes {llvm.emit_c_interface} {
    %xd = memref.cast %x : memref<?x2x5x5xf32> to memref<?x?x?x?xf32>
    %wd = memref.cast %w : memref<3x2x3x3xf32> to memref<?x?x?x?xf32>
    %bd = memref.cast %b : memref<3xf32> to memref<?xf32>
    %yd = memref.cast %y : memref<?x3x3x3xf32> to memref<?x?x?x?xf32>
    %one = arith.constant 1 : i64
    %two = arith.constant 2 : i64
    func.call @coopc_conv2d_forward(%xd, %wd, %bd, %yd, %two, %two, %one, %one)
        : (memref<?x?x?x?xf32>, memref<?x?x?x?xf32>, memref<?xf32>, memref<?x?x?x?xf32>,
           i64, i64, i64, i64) -> ()
    return
  }

  // total = sum(exp(y / 8))
  func.func @sum_exp(%y: memref<?x3x3x3xf32>, %total: memref<f32>)
      attributes {llvm.emit_c_interface} {
    %zero = arith.constant 0.0 : f32
    linalg.fill ins(%zero : f32) outs(%total : memref<f32>)
    linalg.generic {indexing_maps = [#map4, #scalar4],
                    iterator_types = ["reduction", "reduction", "reduction", "reduction"]}
        ins(%y : memref<?x3x3x3xf32>) outs(%total : memref<f32>) {
    ^bb0(%a: f32, %acc: f32):
      %eighth = arith.constant 0.125 : f32
      %scaled = arith.mulf %a, %eighth : f32
      %e = math.exp %scaled : f32
      %sum = arith.addf %acc, %e : f32
      linalg.yield %sum : f32
    }
    return
  }

  // w = w * (1 - lr), in place
  func.func @decay(%w: memref<3x2x3x3xf32>, %lr: memref<f32>)
      attributes {llvm.emit_c_interface} {
    linalg.generic {indexing_maps = [affine_map<(a, b, c, d) -> ()>,
                                     affine_map<(a, b, c, d) -> (a, b, c, d)>],
                    iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
        ins(%lr : memref<f32>) outs(%w : memref<3x2x3x3xf32>) {
    ^bb0(%rate: f32, %value: f32):
      %one = arith.constant 1.0 : f32
      %keep = arith.subf %one, %rate : f32
      %r = arith.mulf %value, %keep : f32
      linalg.yield %r : f32
    }
    return
  }
}
"#;

fn slot(name: &str, batched: bool, dims: &[usize], storage: Storage) -> TensorSlot {
    TensorSlot {
        name: name.into(),
        dtype: DType::F32,
        batched,
        dims: dims.to_vec(),
        storage,
    }
}

fn step(kernel: &str, args: &[usize], batch_split: bool) -> Step {
    Step {
        kernel: kernel.into(),
        args: args.to_vec(),
        batch_split,
    }
}

const MAX_BATCH: usize = 3;

fn program() -> Program {
    let act_bytes = MAX_BATCH * 2 * 5 * 5 * 4;
    let tensors = vec![
        slot("image", true, &[2, 5, 5], Storage::Feed),
        slot("scale", false, &[], Storage::Feed),
        slot("act", true, &[2, 5, 5], Storage::Arena { offset_bytes: 0 }),
        slot("w", false, &[3, 2, 3, 3], Storage::Persistent),
        slot("b", false, &[3], Storage::Persistent),
        slot("y", true, &[3, 3, 3], Storage::Output),
        slot("total", false, &[], Storage::Output),
        slot("lr", false, &[], Storage::Feed),
    ];
    let forward = vec![
        step("scale_relu", &[0, 1, 2], true),
        step("conv", &[2, 3, 4, 5], false),
        step("sum_exp", &[5, 6], false),
    ];
    Program {
        mlir: MODULE.into(),
        tensors,
        entries: vec![
            Entry {
                name: "forward".into(),
                steps: forward,
            },
            Entry {
                name: "update".into(),
                steps: vec![step("decay", &[3, 7], false)],
            },
        ],
        max_batch: MAX_BATCH,
        arena_bytes: act_bytes.div_ceil(ARENA_ALIGN) * ARENA_ALIGN,
    }
}

fn values(seed: u64, len: usize) -> Vec<f32> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn params() -> ParamStore {
    let mut store = ParamStore::default();
    store.insert("w", HostTensor::f32(vec![3, 2, 3, 3], values(2, 54)));
    store.insert("b", HostTensor::f32(vec![3], values(3, 3)));
    store
}

/// Float64 reference of the `forward` entry: (y, total).
fn reference(image: &[f32], scale: f32, w: &[f32], b: &[f32], batch: usize) -> (Vec<f64>, f64) {
    let act: Vec<f64> = image
        .iter()
        .map(|&v| (f64::from(v) * f64::from(scale)).max(0.0))
        .collect();
    let mut y = vec![0.0; batch * 27];
    for n in 0..batch {
        for co in 0..3 {
            for oh in 0..3 {
                for ow in 0..3 {
                    let mut sum = f64::from(b[co]);
                    for ci in 0..2 {
                        for kh in 0..3 {
                            for kw in 0..3 {
                                let (ih, iw) =
                                    ((oh * 2 + kh) as isize - 1, (ow * 2 + kw) as isize - 1);
                                if (0..5).contains(&ih) && (0..5).contains(&iw) {
                                    let x = act[((n * 2 + ci) * 5 + ih as usize) * 5 + iw as usize];
                                    sum += x * f64::from(w[((co * 2 + ci) * 3 + kh) * 3 + kw]);
                                }
                            }
                        }
                    }
                    y[((n * 3 + co) * 3 + oh) * 3 + ow] = sum;
                }
            }
        }
    }
    let total = y.iter().map(|v| (v / 8.0).exp()).sum();
    (y, total)
}

fn run_forward(executable: &mut CpuExecutable, image: &[f32], batch: usize) -> (Vec<f32>, f32) {
    let mut store = params();
    let feeds = [
        ("image", TensorRef::F32(image)),
        ("scale", TensorRef::F32(&[1.5])),
    ];
    let outputs = executable
        .run("forward", batch, &feeds, &mut store)
        .expect("runs");
    let y = outputs["y"].as_f32().expect("f32").to_vec();
    let total = outputs["total"].as_f32().expect("f32")[0];
    (y, total)
}

#[test]
fn hand_written_module_runs_end_to_end_and_matches_float64() {
    let mut executable = CpuExecutable::compile(&program()).expect("compiles");
    let store = params();
    let (w, b) = (store.get("w").expect("w"), store.get("b").expect("b"));
    for batch in [1, MAX_BATCH] {
        let image = values(10 + batch as u64, batch * 50);
        let (y, total) = run_forward(&mut executable, &image, batch);
        let (w, b) = (w.as_f32().expect("f32"), b.as_f32().expect("f32"));
        let (y_ref, total_ref) = reference(&image, 1.5, w, b, batch);
        assert_eq!(y.len(), y_ref.len());
        for (got, expected) in y.iter().zip(&y_ref) {
            assert!(
                (f64::from(*got) - expected).abs() < 1e-5,
                "y {got} vs {expected}"
            );
        }
        assert!(
            (f64::from(total) - total_ref).abs() < 1e-4 * total_ref,
            "{total} vs {total_ref}"
        );
    }
}

#[test]
fn runs_are_bitwise_reproducible() {
    let mut executable = CpuExecutable::compile(&program()).expect("compiles");
    let image = values(5, MAX_BATCH * 50);
    let first = run_forward(&mut executable, &image, MAX_BATCH);
    let second = run_forward(&mut executable, &image, MAX_BATCH);
    let bits = |(y, total): &(Vec<f32>, f32)| {
        (
            y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            total.to_bits(),
        )
    };
    assert_eq!(bits(&first), bits(&second));
}

#[test]
fn effects_update_persistent_tensors_in_place() {
    let mut executable = CpuExecutable::compile(&program()).expect("compiles");
    let mut store = params();
    let before = store.get("w").expect("w").as_f32().expect("f32").to_vec();
    let outputs = executable
        .run("update", 1, &[("lr", TensorRef::F32(&[0.25]))], &mut store)
        .expect("runs");
    assert!(outputs.is_empty());
    let after = store.get("w").expect("w").as_f32().expect("f32");
    for (old, new) in before.iter().zip(after) {
        assert_eq!(*new, old * 0.75);
    }
}

#[test]
fn run_rejects_bad_calls_with_named_errors() {
    let mut executable = CpuExecutable::compile(&program()).expect("compiles");
    let mut store = params();
    let image = values(1, 50);
    let scale = [1.0f32];
    let good = [
        ("image", TensorRef::F32(&image)),
        ("scale", TensorRef::F32(&scale)),
    ];
    let error = executable.run("backward", 1, &good, &mut store);
    assert!(
        matches!(error, Err(TargetError::UnknownEntry { .. })),
        "{error:?}"
    );
    let error = executable.run("forward", MAX_BATCH + 1, &good, &mut store);
    assert!(
        matches!(error, Err(TargetError::BadBatch { .. })),
        "{error:?}"
    );
    let error = executable.run("forward", 2, &good, &mut store);
    assert!(
        matches!(error, Err(TargetError::TensorMismatch { found: 50, .. })),
        "{error:?}"
    );
    let error = executable.run("forward", 1, &good[..1], &mut store);
    assert!(matches!(error, Err(TargetError::MissingTensor { ref name }) if name == "scale"));
    store.insert("b", HostTensor::f32(vec![4], vec![0.0; 4]));
    let error = executable.run("forward", 1, &good, &mut store);
    assert!(matches!(error, Err(TargetError::TensorMismatch { ref name, .. }) if name == "b"));
}

#[test]
fn micro_kernel_shape_errors_stop_the_entry() {
    // The conv kernel claims stride 1, which gives a 5x5 output where the slot holds 3x3.
    let mut broken = program();
    broken.mlir = MODULE.replace(
        "func.call @coopc_conv2d_forward(%xd, %wd, %bd, %yd, %two, %two,",
        "func.call @coopc_conv2d_forward(%xd, %wd, %bd, %yd, %one, %one,",
    );
    let mut executable = CpuExecutable::compile(&broken).expect("compiles");
    let image = values(1, 50);
    let feeds = [
        ("image", TensorRef::F32(&image)),
        ("scale", TensorRef::F32(&[1.0])),
    ];
    let error = executable.run("forward", 1, &feeds, &mut params());
    match error {
        Err(TargetError::Ukernel {
            step: 1,
            ref kernel,
            ref source,
            ..
        }) => {
            assert_eq!(kernel, "conv");
            assert_eq!(source.kernel, "coopc_conv2d_forward");
            assert!(
                source.message.contains("[1, 3, 5, 5]"),
                "{}",
                source.message
            );
        }
        other => panic!("expected a micro-kernel error, got {other:?}"),
    }
}

#[test]
fn steps_whose_slots_disagree_with_the_kernel_type_are_refused() {
    let mut wrong = program();
    wrong.tensors[4].dims = vec![4];
    match CpuExecutable::compile(&wrong) {
        Err(TargetError::KernelSignature {
            kernel,
            expected,
            found,
        }) => {
            assert_eq!(kernel, "conv");
            assert!(expected.contains("memref<4xf32>"), "{expected}");
            assert!(found.contains("memref<3xf32>"), "{found}");
        }
        Err(other) => panic!("expected a signature error, got {other}"),
        Ok(_) => panic!("expected a signature error, got a compiled program"),
    }
}

#[test]
fn batch_split_steps_give_the_same_bits_as_whole_batch_steps() {
    // 8 x 4 x 64 x 64 elements, above the size at which a batch-split step runs in parts.
    let text = r#"
#id = affine_map<(n, c, h, w) -> (n, c, h, w)>
module {
  func.func @softplus(%x: memref<?x4x64x64xf32>, %y: memref<?x4x64x64xf32>)
      attributes {llvm.emit_c_interface} {
    linalg.generic {indexing_maps = [#id, #id],
                    iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
        ins(%x : memref<?x4x64x64xf32>) outs(%y : memref<?x4x64x64xf32>) {
    ^bb0(%a: f32, %out: f32):
      %e = math.exp %a : f32
      %l = math.log1p %e : f32
      linalg.yield %l : f32
    }
    return
  }
}"#;
    let batch = 8;
    let elements = batch * 4 * 64 * 64;
    assert!(2 * elements >= SPLIT_MIN_ELEMENTS);
    let outputs = [false, true].map(|batch_split| {
        let program = Program {
            mlir: text.into(),
            tensors: vec![
                slot("x", true, &[4, 64, 64], Storage::Feed),
                slot("y", true, &[4, 64, 64], Storage::Output),
            ],
            entries: vec![Entry {
                name: "run".into(),
                steps: vec![step("softplus", &[0, 1], batch_split)],
            }],
            max_batch: batch,
            arena_bytes: 0,
        };
        let mut executable = CpuExecutable::compile(&program).expect("compiles");
        let x = values(3, elements);
        let feeds = [("x", TensorRef::F32(&x))];
        let outputs = executable.run("run", batch, &feeds, &mut ParamStore::default());
        let y = outputs.expect("runs")["y"].as_f32().expect("f32").to_vec();
        for (index, (&input, &output)) in x.iter().zip(&y).enumerate().step_by(997) {
            let expected = f64::from(input).exp().ln_1p();
            assert!(
                (f64::from(output) - expected).abs() < 1e-6,
                "y[{index}] = {output}"
            );
        }
        y.iter().map(|value| value.to_bits()).collect::<Vec<_>>()
    });
    assert_eq!(outputs[0], outputs[1]);
}

#[test]
fn compile_errors_carry_mlir_diagnostics_and_locations() {
    let bad_type = "module {\n  func.func @f(%a: memref<2xf32>) {\n    \
                    %c = arith.addi %a, %a : f32\n    return\n  }\n}";
    match verify_mlir(bad_type) {
        Err(TargetError::Parse { diagnostics }) => {
            assert!(!diagnostics.is_empty());
            assert!(diagnostics[0].location.contains(":3:"), "{diagnostics:?}");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    let mut missing = program();
    missing.entries[1].steps[0].kernel = "no_such_kernel".into();
    match CpuExecutable::compile(&missing) {
        Err(TargetError::MissingKernel { kernel, .. }) => assert_eq!(kernel, "no_such_kernel"),
        Err(other) => panic!("expected a missing kernel, got {other}"),
        Ok(_) => panic!("expected a missing kernel, got a compiled program"),
    }
    assert!(verify_mlir(MODULE).is_ok());
}
