//! Compile time and element-wise throughput of the CPU target's JIT (a benchmark, not a test).
//!
//! Builds a module of `count` kernels (a ReLU-like `linalg.generic` and a per-channel sum,
//! renamed copies), compiles it with `CpuExecutable::compile` and reports the seconds, then
//! times the first element-wise kernel and the first reduction on `[64, 16, 32, 32]` in GB/s.
//!
//! Run: `cargo run --release -p runtime --example jit_bench [-- count [batch]]`.

#![expect(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::fmt::Write;
use std::time::Instant;

use runtime::program::{DType, Entry, ParamStore, Program, Step, Storage, TensorRef, TensorSlot};
use runtime::target::cpu::CpuExecutable;

/// Largest batch the program is planned for.
const MAX_BATCH: usize = 64;
const ITEM: [usize; 3] = [16, 32, 32];

fn kernels(index: usize) -> String {
    format!(
        r#"
  func.func @relu_{index}(%x: memref<?x16x32x32xf32>, %y: memref<?x16x32x32xf32>)
      attributes {{llvm.emit_c_interface}} {{
    linalg.generic {{indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel",
        "parallel", "parallel"]}}
        ins(%x : memref<?x16x32x32xf32>) outs(%y : memref<?x16x32x32xf32>) {{
    ^bb0(%a: f32, %out: f32):
      %zero = arith.constant 0.0 : f32
      %r = arith.maximumf %a, %zero : f32
      linalg.yield %r : f32
    }}
    return
  }}
  func.func @channel_sum_{index}(%x: memref<?x16x32x32xf32>, %s: memref<16xf32>)
      attributes {{llvm.emit_c_interface}} {{
    %zero = arith.constant 0.0 : f32
    linalg.fill ins(%zero : f32) outs(%s : memref<16xf32>)
    linalg.generic {{indexing_maps = [#id, #channel], iterator_types = ["reduction",
        "parallel", "reduction", "reduction"]}}
        ins(%x : memref<?x16x32x32xf32>) outs(%s : memref<16xf32>) {{
    ^bb0(%a: f32, %acc: f32):
      %r = arith.addf %a, %acc : f32
      linalg.yield %r : f32
    }}
    return
  }}
"#
    )
}

fn program(count: usize) -> Program {
    let mut mlir = String::from(
        "#id = affine_map<(n, c, h, w) -> (n, c, h, w)>\n\
         #channel = affine_map<(n, c, h, w) -> (c)>\nmodule {\n",
    );
    for index in 0..count {
        mlir.push_str(&kernels(index));
    }
    mlir.push_str("}\n");
    let slot = |name: &str, batched, dims: &[usize], storage| TensorSlot {
        name: name.into(),
        dtype: DType::F32,
        batched,
        dims: dims.to_vec(),
        storage,
    };
    let tensors = vec![
        slot("x", true, &ITEM, Storage::Feed),
        slot("y", true, &ITEM, Storage::Arena { offset_bytes: 0 }),
        slot("sum", false, &[16], Storage::Output),
    ];
    let mut entries = Vec::new();
    let mut steps = Vec::new();
    for index in 0..count {
        steps.push(Step {
            kernel: format!("relu_{index}"),
            args: vec![0, 1],
            batch_split: true,
        });
        steps.push(Step {
            kernel: format!("channel_sum_{index}"),
            args: vec![0, 2],
            batch_split: false,
        });
    }
    entries.push(Entry {
        name: "all".into(),
        steps,
    });
    // One-step entries for timing: the first ReLU whole and batch-split, the first sum.
    let single = |name: &str, kernel: &str, args: Vec<usize>, batch_split| Entry {
        name: name.into(),
        steps: vec![Step {
            kernel: kernel.into(),
            args,
            batch_split,
        }],
    };
    entries.push(single("relu_0", "relu_0", vec![0, 1], false));
    entries.push(single("relu_0_split", "relu_0", vec![0, 1], true));
    entries.push(single("channel_sum_0", "channel_sum_0", vec![0, 2], false));
    Program {
        mlir,
        tensors,
        entries,
        max_batch: MAX_BATCH,
        arena_bytes: MAX_BATCH * ITEM.iter().product::<usize>() * 4,
    }
}

/// CPU seconds used by the whole process so far (`CLOCK_PROCESS_CPUTIME_ID`).
fn cpu_seconds() -> f64 {
    #[repr(C)]
    struct Timespec {
        seconds: i64,
        nanos: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, time: *mut Timespec) -> i32;
    }
    let mut time = Timespec {
        seconds: 0,
        nanos: 0,
    };
    // SAFETY: clock 2 is CLOCK_PROCESS_CPUTIME_ID; `time` is a valid out-pointer.
    unsafe { clock_gettime(2, &mut time) };
    time.seconds as f64 + time.nanos as f64 * 1e-9
}

fn main() {
    let count = std::env::args()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .unwrap_or(300);
    let program = program(count);
    let mut text = String::new();
    let _ = write!(
        text,
        "{} kernels, {} bytes of MLIR",
        2 * count,
        program.mlir.len()
    );
    println!("{text}");
    let (started, cpu_started) = (Instant::now(), cpu_seconds());
    let mut executable = match CpuExecutable::compile(&program) {
        Ok(executable) => executable,
        Err(error) => {
            println!("compile failed: {error}");
            return;
        }
    };
    println!(
        "compiled in {:.2} s wall, {:.2} s CPU",
        started.elapsed().as_secs_f64(),
        cpu_seconds() - cpu_started
    );
    let batch: usize = std::env::args()
        .nth(2)
        .and_then(|text| text.parse().ok())
        .unwrap_or(64);
    let elements = batch * ITEM.iter().product::<usize>();
    let x: Vec<f32> = (0..elements)
        .map(|index| (index % 17) as f32 - 8.0)
        .collect();
    let mut store = ParamStore::default();
    for (entry, bytes) in [("relu_0", 8), ("relu_0_split", 8), ("channel_sum_0", 4)] {
        let feeds = [("x", TensorRef::F32(&x))];
        let mut run = || executable.run(entry, batch, &feeds, &mut store).map(|_| ());
        if let Err(error) = run() {
            println!("{entry} failed: {error}");
            return;
        }
        let started = Instant::now();
        let runs: usize = std::env::var("RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        for _ in 0..runs {
            let _ = run();
        }
        let seconds = started.elapsed().as_secs_f64() / runs as f64;
        let rate = (elements * bytes) as f64 / seconds / 1e9;
        println!("{entry:<14} {:8.3} ms  {rate:6.1} GB/s", seconds * 1e3);
    }
}
