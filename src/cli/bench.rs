//! `coopc bench`: how fast a model trains and infers on this machine. For every configuration
//! (phase × batch size) it compiles the phase's network into a program with a training entry
//! (forward, loss, backward, SGD with momentum 0.9 and weight decay 1e-4) and an inference
//! entry (forward only, BatchNorm on running statistics), feeds it seeded random data, and
//! reports images per second (median over repeats of the median step), peak resident memory
//! and the compile time of each stage. `--profile` adds the time of every kernel.
//!
//! Invariant: the timed loop calls exactly what `coopc train` calls (`CpuExecutable::run` of a
//! whole entry), and nothing else happens inside a timed region; `--profile` measures kernels
//! in separate rounds after the throughput figures, so it never slows them.

mod flops;
mod measure;
mod profile;
mod report;
mod setup;

use std::time::Instant;

use clap::ValueEnum;
use compiler::codegen::TRAIN_STEP;
use runtime::target::cpu::ukernels;
use runtime::target::TargetError;

use super::compile::ModelArgs;
use super::Failure;
use measure::{Repetition, Timing};
use report::Record;
use setup::{Configuration, Front, Prepared, INFER_STEP};

/// Which entries a configuration measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The training step only.
    Train,
    /// Inference only.
    Infer,
    /// Both, from one program.
    Both,
}

impl Mode {
    /// True when the training step is measured.
    fn trains(self) -> bool {
        matches!(self, Mode::Train | Mode::Both)
    }

    /// True when inference is measured.
    fn infers(self) -> bool {
        matches!(self, Mode::Infer | Mode::Both)
    }

    /// The name printed in reports.
    fn name(self) -> &'static str {
        match self {
            Mode::Train => "train",
            Mode::Infer => "infer",
            Mode::Both => "both",
        }
    }
}

/// Flags of `coopc bench`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// The model and the front end's options.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Batch sizes, comma-separated: one configuration each.
    #[arg(long, value_delimiter = ',', default_value = "64", value_parser = positive)]
    pub batch: Vec<usize>,
    /// Phases, comma-separated: 1 = after the `coop` pass (every activation the mix), 2 =
    /// after `lower` (the phase-2 activation, relu by default).
    #[arg(long, value_delimiter = ',', default_value = "1,2",
          value_parser = clap::value_parser!(u8).range(1..=2))]
    pub phase: Vec<u8>,
    /// What to measure.
    #[arg(long, value_enum, default_value = "both")]
    pub mode: Mode,
    /// Timed steps per repeat.
    #[arg(long, default_value_t = 20, value_parser = positive)]
    pub steps: usize,
    /// Untimed steps before the first repeat.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Repeats; each gives the median of its steps, and the figure is their median.
    #[arg(long, default_value_t = 3, value_parser = positive)]
    pub repeats: usize,
    /// Print one JSON object per configuration (one per line) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Seed of the initial parameters and of the random images and labels.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Learning rate fed to the training step.
    #[arg(long, default_value_t = 0.01)]
    pub lr: f32,
    /// Also time every kernel (in separate rounds after the throughput figures) and print the
    /// kernels sorted by time with their share of the step.
    #[arg(long)]
    pub profile: bool,
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum BenchError {
    /// The target failed to compile or run the program.
    #[error("{stage} failed: {source}")]
    #[diagnostic(code(coopc::bench::target))]
    Target {
        /// What was being done.
        stage: &'static str,
        /// The target's error.
        source: TargetError,
    },
    /// The program has a feed that the benchmark does not know how to fill.
    #[error("internal error: no random data for the program's feed `{name}`")]
    #[diagnostic(code(coopc::bench::feed))]
    UnknownFeed {
        /// The feed's name.
        name: String,
    },
    /// A persistent tensor of the program has no initial value.
    #[error("internal error: no initial value for the program's tensor `{name}`")]
    #[diagnostic(code(coopc::bench::init))]
    MissingInitialValue {
        /// The tensor's name.
        name: String,
    },
}

impl BenchError {
    /// The failure to report: every benchmark error is coopc's bug, not the user's.
    fn failure(self) -> Failure {
        Failure::internal(self)
    }
}

/// Runs `coopc bench`.
///
/// # Errors
///
/// The model does not compile, or the program fails to compile or run on the CPU.
pub fn run(args: &Args) -> Result<(), Failure> {
    let front = Front::compile(&args.model)?;
    for &phase in &args.phase {
        for &batch in &args.batch {
            let record = bench_configuration(args, &front, phase, batch)?;
            report::print(&record, args.json);
        }
    }
    Ok(())
}

/// Compiles, measures and (with `--profile`) profiles one configuration.
fn bench_configuration(
    args: &Args,
    front: &Front,
    phase: u8,
    batch: usize,
) -> Result<Record, Failure> {
    let reset = measure::reset_peak_rss();
    let configuration = Configuration {
        phase,
        batch,
        mode: args.mode,
        seed: args.seed,
        lr: args.lr,
        profile: args.profile,
    };
    report::progress(&format!(
        "{} phase {phase}, batch {batch}: compiling",
        front.model()
    ));
    let mut prepared = setup::prepare(front, &configuration)?;
    let run_reset = measure::reset_peak_rss();

    let repetition = Repetition {
        warmup: args.warmup,
        steps: args.steps,
        repeats: args.repeats,
    };
    let train = measured(
        args.mode.trains(),
        TRAIN_STEP,
        &mut prepared,
        batch,
        &repetition,
    )?;
    let infer = measured(
        args.mode.infers(),
        INFER_STEP,
        &mut prepared,
        batch,
        &repetition,
    )?;
    let run_peak = measure::peak_rss_bytes().filter(|_| run_reset);

    let profiles = if args.profile {
        let rounds = args.steps.max(1) * args.repeats.max(1);
        Some(profile::profile_all(&mut prepared, batch, rounds)?)
    } else {
        None
    };
    Ok(Record::new(
        report::Identity {
            model: front.model().to_string(),
            phase,
            batch,
            mode: args.mode.name(),
            threads: ukernels::pool().current_num_threads(),
        },
        &prepared,
        report::Figures {
            train,
            infer,
            peak_rss_bytes: measure::peak_rss_bytes(),
            peak_rss_reset: reset,
            run_peak_rss_bytes: run_peak,
        },
        &repetition,
        profiles,
    ))
}

/// The timing of `entry` when `wanted`, with a progress line.
fn measured(
    wanted: bool,
    entry: &'static str,
    prepared: &mut Prepared,
    batch: usize,
    repetition: &Repetition,
) -> Result<Option<Timing>, Failure> {
    if !wanted {
        return Ok(None);
    }
    report::progress(&format!("  measuring {entry}"));
    let started = Instant::now();
    let timing = measure::time_entry(prepared, entry, batch, repetition)?;
    tracing::info!(entry, seconds = started.elapsed().as_secs_f64(), "measured");
    Ok(Some(timing))
}

/// A value parser for counts that must be at least 1.
fn positive(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(value) => Ok(value),
        Err(error) => Err(error.to_string()),
    }
}
