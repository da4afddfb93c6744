//! Throughput of the convolution and matrix-product micro-kernels on the shapes of a CIFAR
//! ResNet-20 at batch 64 (a benchmark, not a test): forward, input gradient and weight gradient,
//! each the median of several timed runs after a warm-up, in GFLOP/s.
//!
//! Two figures per measurement: wall-clock GFLOP/s (what training sees, on a quiet machine)
//! and GFLOP per CPU-second summed over the process's threads (Linux `schedstat`), which stays
//! meaningful when other processes share the cores.
//!
//! Run: `cargo run --release -p runtime --example ukernel_bench [-- batch]`.

#![expect(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::time::Instant;

use runtime::target::cpu::ukernels::conv::{self, ConvShape};
use runtime::target::cpu::ukernels::matmul::{self, MatmulShape};
use runtime::target::cpu::ukernels::pool;

const RUNS: usize = 7;

fn values(len: usize) -> Vec<f32> {
    (0..len)
        .map(|index| ((index * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect()
}

/// CPU seconds used so far by all threads of this process (0 where schedstat is missing).
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let nanos: u64 = tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|text| text.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    nanos as f64 * 1e-9
}

/// Median wall seconds and median CPU seconds of `RUNS` calls of `body`, after a warm-up.
fn median_seconds(mut body: impl FnMut()) -> (f64, f64) {
    body();
    let (mut wall, mut cpu): (Vec<f64>, Vec<f64>) = (0..RUNS)
        .map(|_| {
            let (started, cpu_started) = (Instant::now(), cpu_seconds());
            body();
            (started.elapsed().as_secs_f64(), cpu_seconds() - cpu_started)
        })
        .unzip();
    wall.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    (wall[RUNS / 2], cpu[RUNS / 2])
}

/// `wall GFLOP/s / per-CPU-second GFLOP/s` for `flops` done in `(wall, cpu)` seconds.
fn rate(flops: f64, (wall, cpu): (f64, f64)) -> String {
    format!(
        "{:6.1} /{:6.1}",
        flops / wall / 1e9,
        flops / cpu.max(1e-9) / 1e9
    )
}

fn conv_shape(
    batch: usize,
    channels: (usize, usize),
    size: usize,
    kernel: usize,
    stride: usize,
) -> ConvShape {
    ConvShape {
        batch,
        in_channels: channels.0,
        in_height: size,
        in_width: size,
        out_channels: channels.1,
        kernel_height: kernel,
        kernel_width: kernel,
        stride: (stride, stride),
        padding: (kernel / 2, kernel / 2),
    }
}

fn bench_conv(label: &str, shape: ConvShape) {
    let x = values(shape.batch * shape.in_channels * shape.in_height * shape.in_width);
    let w = values(shape.out_channels * shape.patch_len());
    let dy = values(shape.batch * shape.out_channels * shape.out_pixels());
    let (mut y, mut dx) = (vec![0.0; dy.len()], vec![0.0; x.len()]);
    let (mut dw, mut db) = (vec![0.0; w.len()], vec![0.0; shape.out_channels]);
    let pool = pool();
    let forward = median_seconds(|| pool.install(|| conv::forward(&shape, &x, &w, &[], &mut y)));
    let input = median_seconds(|| pool.install(|| conv::input_grad(&shape, &dy, &w, &mut dx)));
    let weight =
        median_seconds(|| pool.install(|| conv::weight_grad(&shape, &dy, &x, &mut dw, &mut db)));
    let flops = shape.flops();
    println!(
        "{label:<27} fwd {}  dx {}  dw {}  ({:.2} ms)",
        rate(flops, forward),
        rate(flops, input),
        rate(flops, weight),
        (forward.0 + input.0 + weight.0) * 1e3
    );
}

fn bench_matmul(label: &str, shape: MatmulShape) {
    let a = values(shape.m * shape.k);
    let b = values(shape.k * shape.n);
    let mut c = vec![0.0; shape.m * shape.n];
    let seconds = median_seconds(|| pool().install(|| matmul::matmul(&shape, &a, &b, &[], &mut c)));
    println!("{label:<27} {}", rate(shape.flops(), seconds));
}

fn main() {
    let batch = std::env::args()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .unwrap_or(64);
    let threads = pool().current_num_threads();
    println!("batch {batch}, {threads} threads; GFLOP/s as wall / per CPU-second");
    bench_conv("3->16 32x32 3x3", conv_shape(batch, (3, 16), 32, 3, 1));
    bench_conv("16->16 32x32 3x3", conv_shape(batch, (16, 16), 32, 3, 1));
    bench_conv(
        "16->32 32x32 3x3 stride 2",
        conv_shape(batch, (16, 32), 32, 3, 2),
    );
    bench_conv("32->32 16x16 3x3", conv_shape(batch, (32, 32), 16, 3, 1));
    bench_conv(
        "32->64 16x16 3x3 stride 2",
        conv_shape(batch, (32, 64), 16, 3, 2),
    );
    bench_conv("64->64 8x8 3x3", conv_shape(batch, (64, 64), 8, 3, 1));
    bench_conv(
        "16->32 32x32 1x1 stride 2",
        conv_shape(batch, (16, 32), 32, 1, 2),
    );
    let square = MatmulShape {
        m: 1024,
        n: 1024,
        k: 1024,
        transpose_a: false,
        transpose_b: false,
    };
    bench_matmul("matmul 1024^3", square);
    let dense = MatmulShape {
        m: batch,
        n: 10,
        k: 64,
        transpose_a: false,
        transpose_b: true,
    };
    bench_matmul("dense 64->10", dense);
}
