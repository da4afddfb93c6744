//! Building the typed graph IR from a parsed `.coop` file.
//!
//! The phase runs in two steps. The static check ([`check`]) reads every item: duplicate
//! names, names used before they are defined, unknown ops or blocks, argument binding,
//! recursion between blocks, models without input or output. Then the chosen model is
//! instantiated: its parameters take their defaults or the user's overrides, block calls are
//! expanded inline in fresh naming scopes ([`scope`]), pipes and repeats are desugared
//! ([`expr`]), and each op is added through the [`GraphBuilder`], which infers its type.
//!
//! Invariant: every error of both steps is collected (each reported once) and the graph is
//! returned only when there is none; a failed computation yields a poison value that later
//! uses pass on silently, so one mistake gives one report.

mod args;
mod builtins;
mod check;
mod expr;
mod scope;
mod value;

use std::collections::{HashMap, HashSet};

use grammar::ast::{Block, ExprKind, File, Model, Stmt};
use grammar::Span;

use crate::error::BuildError;
use crate::ir::{Graph, GraphBuilder};
use check::Items;
use scope::Scope;
use value::Value;

pub use builtins::{Builtin, BUILTINS};
pub use value::MAX_SIZE;

/// Most nodes a model may expand to (ResNet-1202 has about 20,000).
pub const MAX_NODES: usize = 200_000;

/// Most op and block calls one instantiation may evaluate (bounds work even for calls that
/// add nothing, such as a repeated block returning its input).
pub const MAX_CALLS: usize = 1_000_000;

/// Deepest nesting of block calls.
pub const MAX_BLOCK_DEPTH: usize = 128;

/// What to build.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// The model to build; `None` when the file has exactly one.
    pub model: Option<String>,
    /// Values for model parameters, replacing their defaults (`--set classes=100`). Names the
    /// model does not have are ignored here (the pipeline reports them).
    pub overrides: Vec<(String, ExprKind)>,
}

/// A built model.
#[derive(Clone, Debug)]
pub struct Built {
    /// The model's name.
    pub model: String,
    /// Its typed graph: inputs, layers and the named outputs (logits, no loss).
    pub graph: Graph,
}

/// Builds the typed IR of one model of `file`.
///
/// # Errors
/// Every [`BuildError`] found, in the order found, each once.
pub fn build(file: &File, options: &BuildOptions) -> Result<Built, Vec<BuildError>> {
    let _span = tracing::info_span!("build").entered();
    let mut errors = Errors::default();
    let items = Items::collect(file, &mut errors);
    let recursive = check::check_items(file, &items, &mut errors);
    let Some(model) = select_model(file, &items, options.model.as_deref(), &mut errors) else {
        return Err(errors.list);
    };

    let mut graph = Graph::new();
    let mut instantiator = Instantiator {
        items: &items,
        recursive: &recursive,
        builder: GraphBuilder::new(&mut graph),
        errors,
        depth: 0,
        calls: 0,
        aborted: false,
    };
    instantiator.model(model, &options.overrides);
    let errors = instantiator.errors.list;
    if errors.is_empty() {
        Ok(Built {
            model: model.name.name.clone(),
            graph,
        })
    } else {
        Err(errors)
    }
}

/// The model to build: the one named, or the only one.
fn select_model<'a>(
    file: &File,
    items: &Items<'a>,
    name: Option<&str>,
    errors: &mut Errors,
) -> Option<&'a Model> {
    if let Some(name) = name {
        let found = items
            .models
            .iter()
            .find(|model| model.name.name == name)
            .copied();
        if found.is_none() {
            let names: Vec<&str> = items
                .models
                .iter()
                .map(|model| model.name.name.as_str())
                .collect();
            let help = format!("the models of this file: {}", names.join(", "));
            errors.push(BuildError::UndefinedName {
                name: format!("model {name}"),
                span: Span::new(0, 0),
                help,
            });
        }
        return found;
    }
    match items.models.as_slice() {
        [] => {
            errors.push(BuildError::NoModel { span: file.span });
            None
        }
        [only] => Some(only),
        [_, second, ..] => {
            let names: Vec<&str> = items
                .models
                .iter()
                .map(|model| model.name.name.as_str())
                .collect();
            errors.push(BuildError::SeveralModels {
                names: names.join(", "),
                span: second.name.span,
            });
            None
        }
    }
}

/// The errors of the phase, each kept once (a block instantiated many times reports its
/// mistakes once).
#[derive(Default)]
pub(crate) struct Errors {
    list: Vec<BuildError>,
    seen: HashSet<(Span, String)>,
}

impl Errors {
    pub(crate) fn push(&mut self, error: BuildError) {
        let key = (error_span(&error), error.to_string());
        if self.seen.insert(key) {
            self.list.push(error);
        }
    }
}

fn error_span(error: &BuildError) -> Span {
    use BuildError::*;
    match error {
        UnknownCallee { span, .. }
        | UndefinedName { span, .. }
        | ReservedName { span, .. }
        | DuplicateName { span, .. }
        | ArgumentCount { span, .. }
        | UnknownNamedArgument { span, .. }
        | ArgumentGivenTwice { span, .. }
        | MissingArgument { span, .. }
        | WrongKind { span, .. }
        | BadSize { span, .. }
        | OutOfRange { span, .. }
        | Shape { span, .. }
        | Recursion { span, .. }
        | NoOutput { span, .. }
        | NoInput { span, .. }
        | NoModel { span }
        | SeveralModels { span, .. }
        | Arithmetic { span, .. }
        | TooLarge { span, .. } => *span,
    }
}

/// The variables of one model or block instance, and its naming scope.
pub(crate) struct Frame {
    env: HashMap<String, Value>,
    scope: Scope,
}

/// The state of one model's instantiation.
pub(crate) struct Instantiator<'i, 'g> {
    items: &'i Items<'i>,
    recursive: &'i HashSet<String>,
    builder: GraphBuilder<'g>,
    errors: Errors,
    depth: usize,
    /// Calls evaluated so far.
    calls: usize,
    /// Set once a size limit is passed: nothing more is built.
    aborted: bool,
}

impl Instantiator<'_, '_> {
    /// Instantiates `model` with `overrides` for its parameters.
    fn model(&mut self, model: &Model, overrides: &[(String, ExprKind)]) {
        let mut frame = Frame {
            env: HashMap::new(),
            scope: Scope::new(String::new()),
        };
        for param in &model.params {
            let name = &param.name.name;
            let value = match (
                overrides.iter().find(|(key, _)| key == name),
                &param.default,
            ) {
                (Some((_, kind)), _) => {
                    let expr = grammar::ast::Expr {
                        kind: kind.clone(),
                        span: param.span,
                    };
                    self.eval(&expr, &mut frame)
                }
                (None, Some(default)) => self.eval(default, &mut frame),
                (None, None) => {
                    self.errors.push(BuildError::MissingArgument {
                        callee: model.name.name.clone(),
                        name: name.clone(),
                        span: param.span,
                        help: format!("give it a default, or pass `--set {name}=VALUE`"),
                    });
                    Value::Poison
                }
            };
            frame.env.insert(name.clone(), value);
        }
        for stmt in &model.body {
            self.model_statement(stmt, &mut frame);
        }
    }

    fn model_statement(&mut self, stmt: &Stmt, frame: &mut Frame) {
        match stmt {
            Stmt::Input(input) => {
                let mut dims = Vec::with_capacity(input.dims.len());
                for dim in &input.dims {
                    let value = self.eval(dim, frame);
                    dims.push(self.accept(value::size(
                        &value,
                        "an input dimension",
                        dim.span,
                        false,
                    )));
                }
                let dims: Option<Vec<usize>> = dims.into_iter().collect();
                let value = match dims {
                    Some(dims) => {
                        let result = self.builder.input(&input.name.name, dims, input.span);
                        self.accept(result.map_err(value::Refusal::Error))
                            .map_or(Value::Poison, Value::Tensor)
                    }
                    None => Value::Poison,
                };
                frame.env.insert(input.name.name.clone(), value);
            }
            Stmt::Assign(assign) => {
                let value = self.eval(&assign.value, frame);
                frame.env.insert(assign.target.name.clone(), value);
            }
            Stmt::Output(output) => {
                let value = self.eval(&output.value, frame);
                let what = format!("output `{}`", output.target.name);
                if let Some(id) = self.accept(value::tensor(&value, &what, output.value.span)) {
                    self.builder.output(&output.target.name, id);
                }
            }
            Stmt::Expr(expr) => {
                self.eval(expr, frame);
            }
        }
    }

    /// Expands `block` inline with its arguments (`None` where the default applies), in the
    /// naming scope `path`.
    fn instantiate_block(
        &mut self,
        block: &Block,
        values: Vec<Option<(Value, Span)>>,
        path: String,
        span: Span,
    ) -> Value {
        if self.recursive.contains(&block.name.name) {
            return Value::Poison;
        }
        if self.depth >= MAX_BLOCK_DEPTH {
            let problem = format!("blocks nested more than {MAX_BLOCK_DEPTH} deep");
            self.errors.push(BuildError::TooLarge { problem, span });
            self.aborted = true;
            return Value::Poison;
        }
        let mut frame = Frame {
            env: HashMap::new(),
            scope: Scope::new(path),
        };
        for (param, value) in block.params.iter().zip(values) {
            let value = match (value, &param.default) {
                (Some((value, _)), _) => value,
                (None, Some(default)) => self.eval(default, &mut frame),
                (None, None) => Value::Poison,
            };
            frame.env.insert(param.name.name.clone(), value);
        }

        self.depth += 1;
        let mut result = Value::Poison;
        for stmt in &block.body {
            match stmt {
                Stmt::Assign(assign) => {
                    let value = self.eval(&assign.value, &mut frame);
                    frame.env.insert(assign.target.name.clone(), value);
                }
                Stmt::Expr(expr) => result = self.eval(expr, &mut frame),
                // The parser keeps `input` and `output` out of blocks.
                Stmt::Input(_) | Stmt::Output(_) => {}
            }
        }
        self.depth -= 1;
        result
    }

    /// Stops the build once the graph passes [`MAX_NODES`] or the calls [`MAX_CALLS`].
    fn check_size(&mut self, span: Span) {
        if self.aborted {
            return;
        }
        let problem = if self.builder.graph().len() > MAX_NODES {
            format!("more than {MAX_NODES} nodes")
        } else if self.calls > MAX_CALLS {
            format!("more than {MAX_CALLS} calls to expand")
        } else {
            return;
        };
        self.errors.push(BuildError::TooLarge { problem, span });
        self.aborted = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::print::print_graph;
    use grammar::SourceFile;

    fn built(text: &str) -> Result<Built, Vec<BuildError>> {
        let file = grammar::parse(&SourceFile::new("t.coop", text)).expect("test source parses");
        build(&file, &BuildOptions::default())
    }

    fn printed(text: &str) -> String {
        print_graph(&built(text).expect("test model builds").graph)
    }

    const HEAD: &str = "block unit(x, width) { x |> conv(width, kernel: 3, pad: 1) |> relu }\n";

    #[test]
    fn a_pipe_is_a_call_with_the_piped_value_first() {
        let piped = printed("model m { input i: [3, 8, 8]\n output o = i |> conv(4, kernel: 3) }");
        let called = printed("model m { input i: [3, 8, 8]\n output o = conv(i, 4, kernel: 3) }");
        assert_eq!(piped, called);
    }

    #[test]
    fn a_standalone_repeat_feeds_its_first_argument() {
        let piped =
            format!("{HEAD}model m {{ input i: [3, 8, 8]\n output o = i |> repeat 2 unit(4) }}");
        let alone =
            format!("{HEAD}model m {{ input i: [3, 8, 8]\n output o = repeat 2 unit(i, 4) }}");
        let nested =
            format!("{HEAD}model m {{ input i: [3, 8, 8]\n output o = unit(unit(i, 4), 4) }}");
        assert_eq!(printed(&piped), printed(&alone));
        assert_eq!(printed(&piped), printed(&nested));
        assert!(printed(&piped).contains("\"unit2.conv1.weight\""));
    }

    #[test]
    fn labels_name_scopes_and_repetitions() {
        let text = format!(
            "{HEAD}model m {{ input i: [3, 8, 8]\n x = i |> unit(4) as stem\n \
             output o = x |> repeat 2 unit(4) as body }}"
        );
        let graph = built(&text).expect("builds").graph;
        for name in [
            "stem.conv1.weight",
            "body.0.conv1.weight",
            "body.1.conv1.bias",
        ] {
            assert!(graph.param(name).is_some(), "{name} missing");
        }
    }

    #[test]
    fn arithmetic_on_parameters_and_overrides() {
        let text = "model m(width = 4) { input i: [3, 8, 8]\n output o = i |> conv(width * 2 - 1, \
                    kernel: 1) }";
        let file = grammar::parse(&SourceFile::new("t.coop", text)).expect("parses");
        let options = BuildOptions {
            model: None,
            overrides: vec![("width".into(), ExprKind::Int(8))],
        };
        let graph = build(&file, &options).expect("builds").graph;
        let weight = graph.param("conv1.weight").expect("conv1.weight");
        assert_eq!(graph.node(weight).ty.dims, [15, 3, 1, 1]);
    }

    #[test]
    fn recursion_is_found_before_expanding_and_reported_once() {
        let text = "block a(x) { x |> b }\nblock b(x) { x |> a }\nblock c(x) { c(x) }\n\
                    model m { input i: [4]\n output o = i |> a |> c }";
        let errors = built(text).expect_err("recursive blocks");
        let cycles: Vec<String> = errors
            .iter()
            .filter_map(|error| match error {
                BuildError::Recursion { cycle, .. } => Some(cycle.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(cycles, ["a -> b -> a", "c -> c"]);
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn a_mistake_in_a_block_used_many_times_is_reported_once() {
        let text = "block u(x) { x |> relu(slope: 1) }\nmodel m { input i: [4]\n \
                    output o = i |> repeat 5 u }";
        let errors = built(text).expect_err("unknown named argument");
        assert_eq!(errors.len(), 1, "{errors:?}");
    }
}
