//! What `coopc bench` prints: one [`Record`] per configuration, as a JSON line (`--json`, the
//! fields `../shared/bench` scripts compare with PyTorch's JSON lines) or as text; progress
//! lines go to stderr.
//!
//! Invariant: the JSON field names are a public interface (scripts read them): add fields,
//! never rename or remove one.

use serde::Serialize;

use super::measure::{Repetition, Timing};
use super::profile::{EntryProfile, Group};
use super::setup::{Prepared, INFER_STEP};
use compiler::codegen::TRAIN_STEP;

/// Rows of the per-kernel table printed as text.
const TEXT_KERNEL_ROWS: usize = 25;
/// Rows of the by-ops table printed as text.
const TEXT_GROUP_ROWS: usize = 15;

/// Which configuration a record is about.
pub struct Identity {
    /// The model's name.
    pub model: String,
    /// 1 or 2.
    pub phase: u8,
    /// Batch size.
    pub batch: usize,
    /// `train`, `infer` or `both`.
    pub mode: &'static str,
    /// Threads of the micro-kernel pool.
    pub threads: usize,
}

/// What was measured.
pub struct Figures {
    /// The training step, when measured.
    pub train: Option<Timing>,
    /// Inference, when measured.
    pub infer: Option<Timing>,
    /// Peak resident memory of the configuration (of the process when the reset failed).
    pub peak_rss_bytes: Option<u64>,
    /// Whether the peak was reset before the configuration.
    pub peak_rss_reset: bool,
    /// Peak resident memory while running, after compilation.
    pub run_peak_rss_bytes: Option<u64>,
}

/// One configuration's results; serialised as one JSON object.
#[derive(Debug, Serialize)]
pub struct Record {
    model: String,
    phase: u8,
    batch: usize,
    mode: &'static str,
    threads: usize,
    train_images_per_s: Option<f64>,
    train_ms_per_step: Option<f64>,
    train_min_ms_per_step: Option<f64>,
    train_repeats_images_per_s: Vec<f64>,
    train_loss_first: Option<f32>,
    train_loss_last: Option<f32>,
    infer_images_per_s: Option<f64>,
    infer_ms_per_step: Option<f64>,
    infer_min_ms_per_step: Option<f64>,
    infer_repeats_images_per_s: Vec<f64>,
    fwd_macs_per_image: u64,
    train_gflops: Option<f64>,
    infer_gflops: Option<f64>,
    peak_rss_bytes: Option<u64>,
    peak_rss_per_configuration: bool,
    run_peak_rss_bytes: Option<u64>,
    compile_seconds: f64,
    front_seconds: f64,
    autodiff_seconds: f64,
    codegen_seconds: f64,
    jit_seconds: f64,
    train_kernels: Option<usize>,
    infer_kernels: Option<usize>,
    functions: usize,
    arena_bytes: usize,
    warmup: usize,
    steps: usize,
    repeats: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<Vec<EntryProfile>>,
}

impl Record {
    /// The record of a configuration.
    pub fn new(
        identity: Identity,
        prepared: &Prepared,
        figures: Figures,
        repetition: &Repetition,
        profile: Option<Vec<EntryProfile>>,
    ) -> Record {
        let batch = identity.batch;
        let per_repeat = |timing: &Option<Timing>| -> Vec<f64> {
            let seconds = timing
                .iter()
                .flat_map(|timing| timing.repeat_seconds.iter());
            seconds.map(|&seconds| batch as f64 / seconds).collect()
        };
        let kernels = |name: &str| {
            let found = prepared.entries.iter().find(|entry| entry.name == name);
            found.map(|entry| entry.kernels.len())
        };
        let (train, infer) = (&figures.train, &figures.infer);
        let times = &prepared.times;
        // FLOP per image: 2 per multiply-accumulate, three passes when training.
        let flop = 2.0 * prepared.forward_macs as f64 * batch as f64;
        let gflops = |timing: &Option<Timing>, passes: f64| {
            timing
                .as_ref()
                .map(|timing| passes * flop / timing.median_seconds / 1e9)
        };
        Record {
            model: identity.model,
            phase: identity.phase,
            batch,
            mode: identity.mode,
            threads: identity.threads,
            train_images_per_s: train.as_ref().map(|timing| timing.images_per_second(batch)),
            train_ms_per_step: train.as_ref().map(|timing| timing.median_seconds * 1e3),
            train_min_ms_per_step: train.as_ref().map(|timing| timing.min_seconds * 1e3),
            train_repeats_images_per_s: per_repeat(train),
            train_loss_first: train
                .as_ref()
                .and_then(|timing| timing.loss)
                .map(|loss| loss.0),
            train_loss_last: train
                .as_ref()
                .and_then(|timing| timing.loss)
                .map(|loss| loss.1),
            infer_images_per_s: infer.as_ref().map(|timing| timing.images_per_second(batch)),
            infer_ms_per_step: infer.as_ref().map(|timing| timing.median_seconds * 1e3),
            infer_min_ms_per_step: infer.as_ref().map(|timing| timing.min_seconds * 1e3),
            infer_repeats_images_per_s: per_repeat(infer),
            fwd_macs_per_image: prepared.forward_macs,
            train_gflops: gflops(train, 3.0),
            infer_gflops: gflops(infer, 1.0),
            peak_rss_bytes: figures.peak_rss_bytes,
            peak_rss_per_configuration: figures.peak_rss_reset,
            run_peak_rss_bytes: figures.run_peak_rss_bytes,
            compile_seconds: times.total(),
            front_seconds: times.front,
            autodiff_seconds: times.autodiff,
            codegen_seconds: times.codegen,
            jit_seconds: times.jit,
            train_kernels: kernels(TRAIN_STEP),
            infer_kernels: kernels(INFER_STEP),
            functions: prepared.functions,
            arena_bytes: prepared.arena_bytes,
            warmup: repetition.warmup,
            steps: repetition.steps,
            repeats: repetition.repeats,
            profile,
        }
    }
}

/// Prints `record` on stdout: one JSON line, or text.
#[expect(clippy::print_stdout, reason = "the figures are the command's output")]
pub fn print(record: &Record, json: bool) {
    if json {
        match serde_json::to_string(record) {
            Ok(line) => println!("{line}"),
            Err(error) => tracing::warn!(%error, "the record does not serialise"),
        }
    } else {
        print!("{}", text(record));
    }
}

/// A progress line on stderr.
#[expect(
    clippy::print_stderr,
    reason = "progress belongs on stderr, apart from the figures"
)]
pub fn progress(line: &str) {
    eprintln!("{line}");
}

/// The record as text.
fn text(record: &Record) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} phase {}, batch {} ({} threads)",
        record.model, record.phase, record.batch, record.threads
    );
    let _ = writeln!(
        out,
        "  compile   {:7.2} s   (front {:.2}, autodiff {:.2}, codegen {:.2}, jit {:.2})",
        record.compile_seconds,
        record.front_seconds,
        record.autodiff_seconds,
        record.codegen_seconds,
        record.jit_seconds
    );
    let rows = [
        (
            "train",
            record.train_images_per_s,
            record.train_ms_per_step,
            record.train_gflops,
        ),
        (
            "infer",
            record.infer_images_per_s,
            record.infer_ms_per_step,
            record.infer_gflops,
        ),
    ];
    for (name, images, ms, gflops) in rows {
        if let (Some(images), Some(ms), Some(gflops)) = (images, ms, gflops) {
            let _ = writeln!(
                out,
                "  {name}     {images:9.1} images/s   {ms:8.2} ms/step   {gflops:6.1} GFLOP/s"
            );
        }
    }
    let _ = writeln!(
        out,
        "  kernels   {} train, {} infer, {} functions",
        record.train_kernels.unwrap_or(0),
        record.infer_kernels.unwrap_or(0),
        record.functions
    );
    if let (Some(first), Some(last)) = (record.train_loss_first, record.train_loss_last) {
        let _ = writeln!(out, "  loss       {first:.4} -> {last:.4} (random data)");
    }
    let mib = |bytes: Option<u64>| {
        bytes.map_or("?".to_string(), |b| format!("{:.1}", b as f64 / 1048576.0))
    };
    let _ = writeln!(
        out,
        "  peak RSS  {} MiB (while running: {} MiB; arena {:.1} MiB)",
        mib(record.peak_rss_bytes),
        mib(record.run_peak_rss_bytes),
        record.arena_bytes as f64 / 1048576.0
    );
    for profile in record.profile.iter().flatten() {
        profile_text(&mut out, profile);
    }
    out
}

/// The per-kernel tables of one entry.
fn profile_text(out: &mut String, profile: &EntryProfile) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "\n  {}: kernels sum to {:.2} ms (each includes ~{:.1} µs of call overhead)",
        profile.entry,
        profile.step_seconds * 1e3,
        profile.call_overhead_seconds * 1e6
    );
    let _ = writeln!(out, "    by kind:");
    for group in &profile.by_kind {
        group_line(out, group);
    }
    let _ = writeln!(out, "    by ops (top {TEXT_GROUP_ROWS}):");
    for group in profile.by_ops.iter().take(TEXT_GROUP_ROWS) {
        group_line(out, group);
    }
    let _ = writeln!(out, "    slowest kernels (top {TEXT_KERNEL_ROWS}):");
    for kernel in profile.kernels.iter().take(TEXT_KERNEL_ROWS) {
        let _ = writeln!(
            out,
            "      {:>5.1}%  {:9.3} ms  {}  #{:<4} {} ({})",
            kernel.share * 100.0,
            kernel.seconds * 1e3,
            gflops_text(kernel.gflops),
            kernel.index,
            kernel.kernel,
            kernel.ops
        );
    }
}

/// One row of a by-kind or by-ops table.
fn group_line(out: &mut String, group: &Group) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "      {:>5.1}%  {:9.3} ms  {}  {:4}x  {}",
        group.share * 100.0,
        group.seconds * 1e3,
        gflops_text(group.gflops),
        group.count,
        group.label
    );
}

/// `123.4 GFLOP/s`, or blanks of the same width.
fn gflops_text(gflops: Option<f64>) -> String {
    gflops.map_or(" ".repeat(13), |gflops| format!("{gflops:6.1} GFLOP/s"))
}
