//! `coopc compile`: runs the front end on a model and prints its summary or one stage.
//!
//! [`ModelArgs`] (the model file, `--set`, and the options of the `coop` and `lower` passes)
//! is shared with the subcommands that compile a model before doing more (`train`, `eval`):
//! they flatten it into their own `Args` and call [`ModelArgs::compile`].

use std::io::Read;
use std::path::PathBuf;

use clap::ValueEnum;
use miette::Diagnostic;
use thiserror::Error;

use compiler::autodiff::{self, SgdOptions};
use compiler::codegen::{compile_entries, EntryGraph, EVAL_STEP, TRAIN_STEP};
use compiler::error::{CompileError, Located, OptionError};
use compiler::ir::print::print_graph;
use compiler::ir::Graph;
use compiler::passes::coop::CoopOptions;
use compiler::passes::lower::{LowerOptions, Target};
use compiler::pipeline::{self, CompileOptions, Compiled, Override, Stage};
use compiler::schedule::print::print_schedule;
use compiler::schedule::GraphMode;
use compiler::summary::summarize;
use grammar::{SourceFile, Span};
use runtime::target::cpu::verify_mlir;

use super::Failure;

/// A stage `--emit` can print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Emit {
    /// The parsed file, printed back as canonical source.
    Ast,
    /// The typed IR of the model as written (the baseline).
    Ir,
    /// Phase 1: after the `coop` pass.
    Coop,
    /// Phase 2: after the `lower` pass.
    Lowered,
    /// The training graph of the phase chosen by `--phase`: forward, loss, backward, SGD.
    Train,
    /// The kernels, their order and the buffer plan of the training and evaluation steps.
    Schedule,
    /// The verified MLIR module of every kernel of the training and evaluation steps.
    Mlir,
}

/// The model to compile and the options of the front end.
#[derive(Clone, Debug, clap::Args)]
pub struct ModelArgs {
    /// The `.coop` file, or `-` for standard input.
    pub input: PathBuf,
    /// Set a model parameter, e.g. `--set classes=100` (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// The model to compile, when the file has several.
    #[arg(long)]
    pub model: Option<String>,
    /// Activations mixed at every site in phase 1, comma-separated.
    #[arg(long, value_name = "LIST", default_value = "relu,prelu,elu,softplus")]
    pub activations: String,
    /// Mix weights β, comma-separated, one per activation (default: 1/k each).
    #[arg(long, value_name = "LIST")]
    pub beta: Option<String>,
    /// Accept β weights that do not sum to 1.
    #[arg(long)]
    pub allow_unnormalized: bool,
    /// Give each PReLU one slope per channel instead of one per layer.
    #[arg(long)]
    pub prelu_per_channel: bool,
    /// What each mix becomes in phase 2: relu, prelu, elu, softplus, leaky_relu, identity, or
    /// keep (never lowered: the Mixture ablation).
    #[arg(long, default_value = "relu")]
    pub target: String,
    /// Verify the IR after every stage (always on in debug builds).
    #[arg(long)]
    pub verify_each: bool,
}

/// Flags of `coopc compile`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// The model and the front end's options.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print this stage instead of the summary.
    #[arg(long, value_enum)]
    pub emit: Option<Emit>,
    /// Print the IR after every stage, before the summary.
    #[arg(long)]
    pub print_after_all: bool,
    /// The phase whose program `--emit train|schedule|mlir` shows: 1 (the mix) or 2 (lowered).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub phase: u8,
    /// The largest batch the program of `--emit schedule|mlir` is planned for.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
}

/// A model file that cannot be read.
#[derive(Debug, Error, Diagnostic)]
#[error("cannot read `{path}`: {source}")]
#[diagnostic(code(cli::read))]
pub struct ReadError {
    /// The path as given.
    pub path: String,
    /// What the system said.
    #[source]
    pub source: std::io::Error,
}

impl ModelArgs {
    /// The source named by `input` (standard input for `-`).
    ///
    /// # Errors
    /// A [`ReadError`] when it cannot be read.
    pub fn source(&self) -> Result<SourceFile, Failure> {
        let path = self.input.display().to_string();
        let read = if path == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map(|_| text)
        } else {
            std::fs::read_to_string(&self.input)
        };
        let name = if path == "-" {
            "<stdin>".to_string()
        } else {
            path.clone()
        };
        read.map(|text| SourceFile::new(name, text))
            .map_err(|source| Failure::user(ReadError { path, source }))
    }

    /// The pipeline options these flags give.
    ///
    /// # Errors
    /// A report pointing into the offending flag's value.
    pub fn options(&self) -> Result<CompileOptions, Failure> {
        let option_failure =
            |error: Box<Located<OptionError>>| Failure::Compile(CompileError::Option(error));
        let overrides: Vec<Override> = self
            .set
            .iter()
            .map(|text| Override::parse(text))
            .collect::<Result<_, _>>()
            .map_err(option_failure)?;
        let coop = CoopOptions::from_flags(
            Some(&self.activations),
            self.beta.as_deref(),
            self.allow_unnormalized,
            self.prelu_per_channel,
        )
        .map_err(option_failure)?;
        let target = Target::from_name(self.target.trim()).ok_or_else(|| {
            let error = OptionError::UnknownActivation {
                name: self.target.clone(),
                span: Span::new(0, self.target.len() as u32),
                help: "the targets are relu, prelu, elu, softplus, leaky_relu, identity and keep"
                    .into(),
            };
            option_failure(Box::new(Located::new(error, "--target", &self.target)))
        })?;
        Ok(CompileOptions {
            model: self.model.clone(),
            overrides,
            coop,
            lower: LowerOptions {
                target,
                prelu_per_channel: self.prelu_per_channel,
            },
            verify_each: self.verify_each,
        })
    }

    /// Parses `source`, builds the model and runs both passes, calling `observe` with each
    /// stage's graph.
    ///
    /// # Errors
    /// The failure of the first stage that fails, or of a flag.
    pub fn compile(
        &self,
        source: &SourceFile,
        observe: &mut dyn FnMut(Stage, &Graph),
    ) -> Result<Compiled, Failure> {
        let options = self.options()?;
        Ok(pipeline::compile_source_with(source, &options, observe)?)
    }
}

/// Runs `coopc compile`.
///
/// # Errors
/// The failure of the first stage that fails.
#[expect(
    clippy::print_stdout,
    reason = "printing the summary or the stage is the command's job"
)]
pub fn run(args: &Args) -> Result<(), Failure> {
    let source = args.model.source()?;
    if args.emit == Some(Emit::Ast) {
        let file = pipeline::parse_source(&source)?;
        print!("{file}");
        return Ok(());
    }
    let compiled = args.model.compile(&source, &mut |stage, graph| {
        if args.print_after_all {
            println!("// after {}", stage.name());
            print!("{}", print_graph(graph));
        }
    })?;
    match args.emit {
        Some(Emit::Ir) => print!("{}", print_graph(&compiled.baseline)),
        Some(Emit::Coop) => print!("{}", print_graph(&compiled.coop)),
        Some(Emit::Lowered) => print!("{}", print_graph(&compiled.lowered)),
        Some(emit @ (Emit::Train | Emit::Schedule | Emit::Mlir)) => {
            print!("{}", back_end_text(args, &source, &compiled, emit)?)
        }
        Some(Emit::Ast) | None => print!("{}", summarize(&compiled)),
    }
    Ok(())
}

/// The text of a stage after the front end: the training graph, the schedule, or the MLIR
/// (verified before it is shown) of the phase `--phase` names.
fn back_end_text(
    args: &Args,
    source: &SourceFile,
    compiled: &Compiled,
    emit: Emit,
) -> Result<String, Failure> {
    let forward = if args.phase == 1 {
        &compiled.coop
    } else {
        &compiled.lowered
    };
    let training =
        autodiff::training_graph(forward, &SgdOptions::default()).map_err(Failure::user)?;
    if emit == Emit::Train {
        return Ok(print_graph(&training));
    }
    let evaluation = autodiff::eval_graph(forward).map_err(Failure::user)?;
    let entries = [
        EntryGraph {
            name: TRAIN_STEP,
            graph: &training,
            mode: GraphMode::Train,
        },
        EntryGraph {
            name: EVAL_STEP,
            graph: &evaluation,
            mode: GraphMode::Eval,
        },
    ];
    let generated =
        compile_entries(&entries, Some(source), args.batch as usize).map_err(Failure::internal)?;
    if emit == Emit::Schedule {
        let printed: Vec<String> = entries
            .iter()
            .zip(&generated.schedules)
            .map(|(entry, schedule)| {
                format!("// entry {}\n{}", entry.name, print_schedule(schedule))
            })
            .collect();
        return Ok(printed.join("\n"));
    }
    let mlir = generated.program.mlir;
    verify_mlir(&mlir).map_err(|error| {
        Failure::internal(MlirRejected {
            message: error.to_string(),
        })
    })?;
    Ok(mlir)
}

/// The generated module did not verify: a bug in the MLIR emission.
#[derive(Debug, Error, Diagnostic)]
#[error("internal error: the generated MLIR does not verify\n{message}")]
#[diagnostic(help("please report this with the model file"))]
pub struct MlirRejected {
    /// MLIR's diagnostics.
    pub message: String,
}
