//! The front half of the compiler as one list of stages: parse, build (typed IR), `coop`
//! (phase 1), `lower` (phase 2). Each stage's value can be printed; `coopc compile --emit`
//! and the snapshot tests show them with [`crate::ir::print::print_graph`].
//!
//! Invariant: after every stage the graph is verified when `verify_each` is set or in debug
//! builds, so a pass that breaks the IR is caught right after it ran, as an internal error.

use std::time::Instant;

use grammar::ast::{ExprKind, File, Item};
use grammar::{SourceFile, Span};

use crate::build::{self, BuildOptions};
use crate::error::{CompileError, Located, OptionError};
use crate::ir::verify::verify;
use crate::ir::{Graph, GraphBuilder, NodeId};
use crate::passes::coop::{self, CoopOptions};
use crate::passes::lower::{self, LowerOptions};
use crate::passes::PassStats;

/// A stage of the front end whose result can be shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The parsed file.
    Ast,
    /// The typed IR of the model as written (the baseline).
    Ir,
    /// After `coop`: phase 1.
    Coop,
    /// After `lower`: phase 2.
    Lowered,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 4] = [Stage::Ast, Stage::Ir, Stage::Coop, Stage::Lowered];

    /// The name used by `--emit` and in snapshot names.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Ast => "ast",
            Stage::Ir => "ir",
            Stage::Coop => "coop",
            Stage::Lowered => "lowered",
        }
    }
}

/// A model parameter value from the command line (`--set classes=100`).
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    /// The parameter.
    pub name: String,
    /// Its value, a literal.
    pub value: ExprKind,
    /// The option's text, for reports.
    pub text: String,
    /// The name's span in `text`.
    pub name_span: Span,
}

impl Override {
    /// Parses `NAME=VALUE`: an integer, a float, `true`/`false`, or a string (quoted or not).
    ///
    /// # Errors
    /// An [`OptionError::Syntax`] pointing into `text`.
    pub fn parse(text: &str) -> Result<Override, Box<Located<OptionError>>> {
        let syntax = |expected, span| {
            let error = OptionError::Syntax {
                option: "--set",
                expected,
                span,
            };
            Box::new(Located::new(error, "--set", text))
        };
        let Some((name, value)) = text.split_once('=') else {
            return Err(syntax("NAME=VALUE", Span::new(0, text.len() as u32)));
        };
        let name_span = Span::new(0, name.len() as u32);
        let is_name = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !is_name {
            return Err(syntax("a parameter name before `=`", name_span));
        }
        let value_text = value.trim();
        let value = if let Ok(number) = value_text.parse::<i64>() {
            ExprKind::Int(number)
        } else if let Some(number) = value_text.parse::<f64>().ok().filter(|n| n.is_finite()) {
            ExprKind::Float(number)
        } else if value_text == "true" || value_text == "false" {
            ExprKind::Bool(value_text == "true")
        } else {
            ExprKind::Str(value_text.trim_matches('"').to_string())
        };
        Ok(Override {
            name: name.to_string(),
            value,
            text: text.to_string(),
            name_span,
        })
    }
}

/// Everything the front end needs besides the source.
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// The model to build when the file has several.
    pub model: Option<String>,
    /// Model parameter values replacing the defaults.
    pub overrides: Vec<Override>,
    /// Options of the `coop` pass.
    pub coop: CoopOptions,
    /// Options of the `lower` pass.
    pub lower: LowerOptions,
    /// Verify the IR after every stage even in release builds.
    pub verify_each: bool,
}

/// The results of every stage.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The parsed file.
    pub file: File,
    /// The model's name.
    pub model: String,
    /// The typed IR as written (the baseline, and what phase 2 must equal for a ReLU model).
    pub baseline: Graph,
    /// Phase 1: after `coop`.
    pub coop: Graph,
    /// Phase 2: after `lower`.
    pub lowered: Graph,
    /// What `coop` changed.
    pub coop_stats: PassStats,
    /// What `lower` changed.
    pub lower_stats: PassStats,
}

/// Runs every stage on `source`.
///
/// # Errors
/// The first stage's errors that fail: a syntax error, every build error, a bad option, or an
/// internal error from the verifier.
pub fn compile_source(
    source: &SourceFile,
    options: &CompileOptions,
) -> Result<Compiled, CompileError> {
    compile_source_with(source, options, &mut |_, _| {})
}

/// As [`compile_source`], calling `observe` with each stage's graph as soon as it exists
/// (`--print-after-all`).
///
/// # Errors
/// As [`compile_source`].
pub fn compile_source_with(
    source: &SourceFile,
    options: &CompileOptions,
    observe: &mut dyn FnMut(Stage, &Graph),
) -> Result<Compiled, CompileError> {
    // Parse: text -> AST with spans.
    let file = timed("parse", || parse_source(source))?;

    // Build: AST -> typed IR of the chosen model (the baseline).
    let built = timed("build", || build_model(source, &file, options))?;
    check(source, Stage::Ir, &built.graph, options)?;
    observe(Stage::Ir, &built.graph);

    // coop: every activation becomes the β-weighted mix of the set (phase 1).
    let mut coop_graph = built.graph.clone();
    let coop_stats = timed("coop", || coop::run(&mut coop_graph, &options.coop))
        .map_err(|error| pass_error(source, Stage::Coop, error))?;
    check(source, Stage::Coop, &coop_graph, options)?;
    observe(Stage::Coop, &coop_graph);

    // lower: every mix becomes the phase-2 activation; unused slopes go (phase 2).
    let mut lowered = coop_graph.clone();
    let lower_stats = timed("lower", || lower::run(&mut lowered, &options.lower))
        .map_err(|error| pass_error(source, Stage::Lowered, error))?;
    check(source, Stage::Lowered, &lowered, options)?;
    observe(Stage::Lowered, &lowered);

    Ok(Compiled {
        file,
        model: built.model,
        baseline: built.graph,
        coop: coop_graph,
        lowered,
        coop_stats,
        lower_stats,
    })
}

/// Parses `source`.
///
/// # Errors
/// [`CompileError::Parse`].
pub fn parse_source(source: &SourceFile) -> Result<File, CompileError> {
    grammar::parse(source).map_err(|error| CompileError::Parse(Box::new(error)))
}

/// Builds the typed IR of the chosen model, after checking the overrides' names.
///
/// # Errors
/// [`CompileError::Option`] for an unknown override, [`CompileError::Build`] with every build
/// error.
pub fn build_model(
    source: &SourceFile,
    file: &File,
    options: &CompileOptions,
) -> Result<build::Built, CompileError> {
    check_overrides(file, options)?;
    let build_options = BuildOptions {
        model: options.model.clone(),
        overrides: options
            .overrides
            .iter()
            .map(|o| (o.name.clone(), o.value.clone()))
            .collect(),
    };
    build::build(file, &build_options).map_err(|errors| {
        let located = errors
            .into_iter()
            .map(|error| Located::new(error, &source.name, &source.text));
        CompileError::Build(located.collect())
    })
}

fn check_overrides(file: &File, options: &CompileOptions) -> Result<(), CompileError> {
    let models: Vec<_> = file
        .items
        .iter()
        .filter_map(|item| match item {
            Item::Model(model) => Some(model),
            Item::Block(_) => None,
        })
        .collect();
    let model = match &options.model {
        Some(name) => {
            let found = models.iter().find(|model| model.name.name == *name);
            if found.is_none() {
                let names: Vec<&str> = models
                    .iter()
                    .map(|model| model.name.name.as_str())
                    .collect();
                let error = OptionError::UnknownModel {
                    name: name.clone(),
                    span: Span::new(0, name.len() as u32),
                    help: format!("its models: {}", names.join(", ")),
                };
                return Err(CompileError::Option(Box::new(Located::new(
                    error, "--model", name,
                ))));
            }
            found
        }
        None if models.len() == 1 => models.first(),
        None => None,
    };
    let Some(model) = model else { return Ok(()) };
    for item in &options.overrides {
        if !model
            .params
            .iter()
            .any(|param| param.name.name == item.name)
        {
            let names: Vec<&str> = model
                .params
                .iter()
                .map(|param| param.name.name.as_str())
                .collect();
            let error = OptionError::UnknownModelParameter {
                model: model.name.name.clone(),
                name: item.name.clone(),
                span: item.name_span,
                help: format!(
                    "its parameters: {}",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            };
            return Err(CompileError::Option(Box::new(Located::new(
                error, "--set", &item.text,
            ))));
        }
    }
    Ok(())
}

/// Adds the training loss to a graph whose output `logits` is `f32[N,K]`: labels `i32[N]`
/// fed as `labels`, and the output `loss`, softmax cross-entropy averaged over the batch.
///
/// # Errors
/// [`crate::error::BuildError`] when there is no `logits` output or it is not `f32[N,K]`.
pub fn add_loss(graph: &mut Graph) -> Result<NodeId, crate::error::BuildError> {
    let Some(logits) = graph
        .output("logits")
        .or_else(|| graph.outputs().first().map(|(_, id)| *id))
    else {
        return Err(crate::error::BuildError::NoOutput {
            model: "the graph".into(),
            span: Span::default(),
        });
    };
    let span = graph.node(logits).span;
    let mut builder = GraphBuilder::new(graph);
    let labels = builder.labels("labels", span);
    let loss = builder.softmax_cross_entropy(logits, labels, span)?;
    builder.output("loss", loss);
    Ok(loss)
}

fn check(
    source: &SourceFile,
    stage: Stage,
    graph: &Graph,
    options: &CompileOptions,
) -> Result<(), CompileError> {
    if !(options.verify_each || cfg!(debug_assertions)) {
        return Ok(());
    }
    verify(graph).map_err(|errors| CompileError::Internal {
        stage: stage.name().to_string(),
        errors: errors
            .into_iter()
            .map(|error| Located::new(error, &source.name, &source.text))
            .collect(),
    })
}

fn pass_error(source: &SourceFile, stage: Stage, error: crate::passes::PassError) -> CompileError {
    let located = Located::new(error, &source.name, &source.text);
    CompileError::Pass {
        stage: stage.name().to_string(),
        error: Box::new(located),
    }
}

/// Runs `work` inside a tracing span named `stage`, logging its duration.
fn timed<T>(stage: &'static str, work: impl FnOnce() -> T) -> T {
    let _span = tracing::info_span!("stage", name = stage).entered();
    let start = Instant::now();
    let result = work();
    tracing::info!(stage, seconds = start.elapsed().as_secs_f64(), "stage done");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse_literals() {
        let parsed = Override::parse("classes=100").unwrap();
        assert_eq!(
            (parsed.name.as_str(), &parsed.value),
            ("classes", &ExprKind::Int(100))
        );
        assert_eq!(
            Override::parse("p=0.5").unwrap().value,
            ExprKind::Float(0.5)
        );
        assert_eq!(
            Override::parse("kind=b").unwrap().value,
            ExprKind::Str("b".into())
        );
        assert_eq!(
            Override::parse("bias=false").unwrap().value,
            ExprKind::Bool(false)
        );
        assert!(Override::parse("classes").is_err());
        assert!(Override::parse("2x=1").is_err());
    }

    #[test]
    fn a_file_with_several_models_needs_a_choice() {
        let text = "model a { input i: [4]\n output o = i |> relu }\n\
                    model b { input i: [4]\n output o = i |> dense(2) }";
        let source = SourceFile::new("two.coop", text);
        let error = compile_source(&source, &CompileOptions::default()).unwrap_err();
        assert!(
            error.render().contains("several models (a, b)"),
            "{}",
            error.render()
        );
        let chosen = CompileOptions {
            model: Some("b".into()),
            ..CompileOptions::default()
        };
        assert_eq!(compile_source(&source, &chosen).unwrap().model, "b");
        let unknown = CompileOptions {
            model: Some("c".into()),
            ..CompileOptions::default()
        };
        let error = compile_source(&source, &unknown).unwrap_err();
        assert!(
            error.render().contains("no model `c` in this file"),
            "{}",
            error.render()
        );
    }

    #[test]
    fn add_loss_appends_a_scalar_cross_entropy() {
        let source = SourceFile::new(
            "m.coop",
            "model m { input i: [4]\n output logits = i |> dense(3) }",
        );
        let mut graph = compile_source(&source, &CompileOptions::default())
            .unwrap()
            .baseline;
        let loss = add_loss(&mut graph).unwrap();
        assert_eq!(graph.node(loss).ty, crate::ir::TensorType::scalar());
        assert_eq!(graph.output("loss"), Some(loss));
        assert_eq!(verify(&graph), Ok(()));
    }
}
