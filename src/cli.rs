//! The subcommands of `coopc`: one variant of [`Command`] and one module each, every module
//! with an `Args` struct (its flags; the doc comments are the help text) and a `run` function.
//!
//! Invariant: a subcommand never prints reports or exits itself; it returns a [`Failure`] and
//! `main` renders it and picks the exit code.

pub mod bench;
pub mod compile;
pub mod eval;
pub mod train;

use clap::{ArgAction, Parser, Subcommand};
use miette::Diagnostic;

use compiler::error::CompileError;

/// coopc: a compiler and trainer for convolutional networks with cooperative initialization.
#[derive(Debug, Parser)]
#[command(name = "coopc", version, about)]
pub struct Cli {
    /// More log output on stderr: -v stages and timings, -vv pass statistics, -vvv rewrites.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compile a model: print its layers, parameters per phase and multiply-accumulates, or one
    /// stage of the pipeline (`--emit`).
    Compile(compile::Args),
    /// Train an experiment (YAML) with the two-phase procedure, or resume a run.
    Train(train::Args),
    /// Test loss and accuracy of a saved model (a checkpoint or a run directory).
    Eval(eval::Args),
    /// Measure training and inference speed, peak memory and compile time of a model.
    Bench(bench::Args),
}

/// Runs `command`.
pub fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Compile(args) => compile::run(&args),
        Command::Train(args) => train::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Bench(args) => bench::run(&args),
    }
}

/// Why a subcommand failed: what `main` renders as reports.
#[derive(Debug)]
pub enum Failure {
    /// The compiler's errors (every report it collected).
    Compile(CompileError),
    /// Any other diagnostic (a file that cannot be read, a bad flag value, ...).
    Report {
        /// The diagnostic.
        report: miette::Report,
        /// True when it is a bug in coopc, not the user's mistake.
        internal: bool,
    },
}

impl Failure {
    /// A user-facing failure from any diagnostic.
    pub fn user(diagnostic: impl Diagnostic + Send + Sync + 'static) -> Self {
        Failure::Report {
            report: miette::Report::new(diagnostic),
            internal: false,
        }
    }

    /// A failure that is a bug in coopc (exit code 2), from any diagnostic.
    pub fn internal(diagnostic: impl Diagnostic + Send + Sync + 'static) -> Self {
        Failure::Report {
            report: miette::Report::new(diagnostic),
            internal: true,
        }
    }

    /// True when the failure is a bug in coopc (exit code 2) rather than a user error (1).
    pub fn is_internal(&self) -> bool {
        match self {
            Failure::Compile(error) => error.is_internal(),
            Failure::Report { internal, .. } => *internal,
        }
    }

    /// The reports to print, in order.
    pub fn diagnostics(&self) -> Vec<&dyn Diagnostic> {
        match self {
            Failure::Compile(error) => error.diagnostics(),
            Failure::Report { report, .. } => vec![report.as_ref()],
        }
    }
}

impl From<CompileError> for Failure {
    fn from(error: CompileError) -> Self {
        Failure::Compile(error)
    }
}
