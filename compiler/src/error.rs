//! The compiler's user-facing errors, as miette diagnostics.
//!
//! Each phase has its own enum whose variants hold data (spans, names, shapes), not sentences;
//! the wording of each variant lives in its attributes here and nowhere else. Variants carry
//! spans but not the source text: [`Located`] pairs an error with its source for rendering, and
//! [`CompileError`] is what [`crate::pipeline`] returns, with every error a phase found.

use std::fmt;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};
use thiserror::Error;

use grammar::error::ParseError;
use grammar::Span;

use crate::infer::ShapeError;

/// A mistake found while building the IR from the AST: names, arguments, values, shapes.
#[derive(Clone, Debug, PartialEq, Error, Diagnostic)]
pub enum BuildError {
    /// A call of something that is neither a built-in op nor a block of this file.
    #[error("unknown op or block `{name}`")]
    #[diagnostic(code(build::unknown_callee))]
    UnknownCallee {
        /// The name called.
        name: String,
        /// Where.
        #[label("not an op or a block")]
        span: Span,
        /// "did you mean ..." or the list of ops.
        #[help]
        help: String,
    },
    /// A reference to a variable or parameter that is not defined at that point.
    #[error("undefined name `{name}`")]
    #[diagnostic(code(build::undefined_name))]
    UndefinedName {
        /// The name.
        name: String,
        /// Where it is used.
        #[label("not defined here")]
        span: Span,
        /// What is in scope, or a close match.
        #[help]
        help: String,
    },
    /// Two definitions of the same name where one is allowed.
    #[error("duplicate {what} `{name}`")]
    #[diagnostic(code(build::duplicate_name))]
    DuplicateName {
        /// What kind of name ("block", "parameter", "layer name", "output", "input").
        what: &'static str,
        /// The name.
        name: String,
        /// The second definition.
        #[label("defined again here")]
        span: Span,
        /// The first definition.
        #[label("first defined here")]
        previous: Span,
    },
    /// A block named like a built-in op.
    #[error("`{name}` is a built-in op; a block cannot take its name")]
    #[diagnostic(code(build::reserved_name), help("rename the block"))]
    ReservedName {
        /// The name.
        name: String,
        /// The block's name.
        #[label("built-in op name")]
        span: Span,
    },
    /// A call with too many or too few positional arguments.
    #[error("`{callee}` takes {expected} arguments, found {found}")]
    #[diagnostic(code(build::argument_count))]
    ArgumentCount {
        /// The op or block.
        callee: String,
        /// How many it takes (e.g. "1 to 3").
        expected: String,
        /// How many were given (the piped value included).
        found: usize,
        /// The call.
        #[label("called with {found} arguments")]
        span: Span,
        /// The block's definition, when the callee is a block.
        #[label("`{callee}` is defined here")]
        definition: Option<Span>,
        /// The parameter list.
        #[help]
        help: String,
    },
    /// A named argument the callee does not have.
    #[error("`{callee}` has no parameter `{name}`")]
    #[diagnostic(code(build::unknown_named_argument))]
    UnknownNamedArgument {
        /// The op or block.
        callee: String,
        /// The argument name.
        name: String,
        /// Where.
        #[label("unknown parameter")]
        span: Span,
        /// The parameter list.
        #[help]
        help: String,
    },
    /// An argument given twice (positionally and by name, or by name twice).
    #[error("argument `{name}` of `{callee}` is given twice")]
    #[diagnostic(code(build::argument_given_twice))]
    ArgumentGivenTwice {
        /// The op or block.
        callee: String,
        /// The parameter.
        name: String,
        /// The second time.
        #[label("given again here")]
        span: Span,
        /// The first time.
        #[label("first given here")]
        previous: Span,
    },
    /// A required argument is missing.
    #[error("`{callee}` needs argument `{name}`")]
    #[diagnostic(code(build::missing_argument))]
    MissingArgument {
        /// The op or block.
        callee: String,
        /// The parameter.
        name: String,
        /// The call.
        #[label("`{name}` is not given")]
        span: Span,
        /// The parameter list.
        #[help]
        help: String,
    },
    /// A value of the wrong kind (a tensor where a number is needed, and so on).
    #[error("{what} must be {expected}, found {found}")]
    #[diagnostic(code(build::wrong_kind))]
    WrongKind {
        /// What the value is for (e.g. "argument `kernel` of `conv`").
        what: String,
        /// What it must be (e.g. "an integer").
        expected: &'static str,
        /// What it is (e.g. "a tensor").
        found: &'static str,
        /// The value.
        #[label("this is {found}")]
        span: Span,
    },
    /// A size that must be positive (or at least zero) is not.
    #[error("{what} must be {bound}, found {value}")]
    #[diagnostic(code(build::bad_size))]
    BadSize {
        /// What the size is for (e.g. "the output channels of `conv`").
        what: String,
        /// "positive" or "zero or more".
        bound: &'static str,
        /// The value.
        value: i64,
        /// Where it was computed.
        #[label("{value} is not {bound}")]
        span: Span,
    },
    /// A number outside the range its use allows.
    #[error("{what} must be {expected}, found {value}")]
    #[diagnostic(code(build::out_of_range))]
    OutOfRange {
        /// What the value is for.
        what: String,
        /// The allowed range or set, in words.
        expected: String,
        /// The value, as written.
        value: String,
        /// Where.
        #[label("out of range")]
        span: Span,
    },
    /// An op whose operand shapes do not fit.
    #[error("{error}")]
    #[diagnostic(code(build::shape))]
    Shape {
        /// The rule that failed, with the shapes (boxed: it is the largest variant).
        error: Box<ShapeError>,
        /// The expression that builds the op.
        #[label(primary, "in this `{op}`")]
        span: Span,
        /// The op, as the user wrote it.
        op: String,
        /// The operands involved, each labelled with its type.
        #[label(collection)]
        operands: Vec<LabeledSpan>,
    },
    /// Blocks that call each other in a cycle, which would never finish expanding.
    #[error("recursion between blocks: {cycle}")]
    #[diagnostic(
        code(build::recursion),
        help("blocks are expanded inline, so a block cannot call itself, directly or not")
    )]
    Recursion {
        /// The cycle, e.g. "a -> b -> a".
        cycle: String,
        /// The call that closes the cycle.
        #[label("this call closes the cycle")]
        span: Span,
        /// The other calls of the cycle.
        #[label(collection)]
        calls: Vec<LabeledSpan>,
    },
    /// A model without any `output` statement.
    #[error("model `{model}` has no output")]
    #[diagnostic(
        code(build::no_output),
        help("name the network's result, e.g. `output logits = x |> dense(classes)`")
    )]
    NoOutput {
        /// The model.
        model: String,
        /// The model's name.
        #[label("this model produces nothing")]
        span: Span,
    },
    /// A model without any `input` statement.
    #[error("model `{model}` has no input")]
    #[diagnostic(
        code(build::no_input),
        help("declare one, e.g. `input image: [3, 32, 32]`")
    )]
    NoInput {
        /// The model.
        model: String,
        /// The model's name.
        #[label("this model reads nothing")]
        span: Span,
    },
    /// A file with blocks but no model.
    #[error("no model in this file")]
    #[diagnostic(
        code(build::no_model),
        help("add `model NAME(...) {{ input ...; output ... }}`")
    )]
    NoModel {
        /// The whole file.
        #[label("only blocks here")]
        span: Span,
    },
    /// A file with several models and no choice made.
    #[error("this file has several models ({names}); choose one")]
    #[diagnostic(code(build::several_models), help("pass `--model NAME`"))]
    SeveralModels {
        /// Their names.
        names: String,
        /// The second model.
        #[label("second model")]
        span: Span,
    },
    /// Integer arithmetic that overflows or divides by zero.
    #[error("arithmetic error: {problem}")]
    #[diagnostic(code(build::arithmetic))]
    Arithmetic {
        /// "division by zero" or "overflow".
        problem: &'static str,
        /// The expression.
        #[label("{problem}")]
        span: Span,
    },
    /// The network expands to more nodes or deeper block nesting than the compiler accepts.
    #[error("the network is too large: {problem}")]
    #[diagnostic(code(build::too_large), help("check repeat counts and sizes"))]
    TooLarge {
        /// What limit was passed.
        problem: String,
        /// Where it was passed.
        #[label("here")]
        span: Span,
    },
}

/// A value given on the command line (`--set`, `--beta`, `--activations`, `--target`) that is
/// not acceptable. The span points into the option's own text, shown as the report's source.
#[derive(Clone, Debug, PartialEq, Error, Diagnostic)]
pub enum OptionError {
    /// `--set NAME=VALUE` without `=`, or with a value that is not a literal.
    #[error("`{option}` expects {expected}")]
    #[diagnostic(code(options::syntax))]
    Syntax {
        /// The option.
        option: &'static str,
        /// The expected form.
        expected: &'static str,
        /// The bad part.
        #[label("not {expected}")]
        span: Span,
    },
    /// `--set` names a parameter the model does not have.
    #[error("model `{model}` has no parameter `{name}`")]
    #[diagnostic(code(options::unknown_parameter))]
    UnknownModelParameter {
        /// The model.
        model: String,
        /// The name given.
        name: String,
        /// Where in the option.
        #[label("unknown parameter")]
        span: Span,
        /// The model's parameters.
        #[help]
        help: String,
    },
    /// `--model` names a model the file does not have.
    #[error("no model `{name}` in this file")]
    #[diagnostic(code(options::unknown_model))]
    UnknownModel {
        /// The name given.
        name: String,
        /// Where in the option.
        #[label("not a model of the file")]
        span: Span,
        /// The file's models.
        #[help]
        help: String,
    },
    /// A name that is not an activation (for `--activations` or `--target`).
    #[error("unknown activation `{name}`")]
    #[diagnostic(code(options::unknown_activation))]
    UnknownActivation {
        /// The name given.
        name: String,
        /// Where in the option.
        #[label("not an activation")]
        span: Span,
        /// The accepted names.
        #[help]
        help: String,
    },
    /// An activation listed twice in the mix set.
    #[error("activation `{name}` is listed twice")]
    #[diagnostic(code(options::duplicate_activation))]
    DuplicateActivation {
        /// The activation.
        name: String,
        /// The second mention.
        #[label("again here")]
        span: Span,
    },
    /// The mix set is empty (k = 0).
    #[error("the activation set of the mix is empty")]
    #[diagnostic(
        code(options::empty_set),
        help("list at least one, e.g. `relu,prelu,elu,softplus`")
    )]
    EmptyActivationSet {
        /// The option's text.
        #[label("no activation here")]
        span: Span,
    },
    /// β is not a list of numbers.
    #[error("β weight `{text}` is not a number")]
    #[diagnostic(code(options::bad_beta))]
    BadBetaNumber {
        /// The text.
        text: String,
        /// Where.
        #[label("not a number")]
        span: Span,
    },
    /// As many β weights as activations are needed.
    #[error("{weights} β weights for {activations} activations")]
    #[diagnostic(
        code(options::beta_count),
        help("give one weight per activation of the set")
    )]
    BetaCount {
        /// Number of weights.
        weights: usize,
        /// Number of activations.
        activations: usize,
        /// The weights.
        #[label("{weights} weights")]
        span: Span,
    },
    /// A β weight below zero (or not finite).
    #[error("β weight {value} must be zero or more")]
    #[diagnostic(code(options::negative_beta))]
    NegativeBeta {
        /// The weight.
        value: f32,
        /// Where.
        #[label("negative")]
        span: Span,
    },
    /// β weights that do not sum to 1.
    #[error("the β weights sum to {sum}, not 1")]
    #[diagnostic(
        code(options::unnormalized_beta),
        help("make them sum to 1, or pass `--allow-unnormalized` to keep them as they are")
    )]
    UnnormalizedBeta {
        /// Their sum.
        sum: f32,
        /// The weights.
        #[label("sum is {sum}")]
        span: Span,
    },
}

/// An error together with the source its spans point into, so it renders on its own.
#[derive(Debug)]
pub struct Located<E> {
    /// The error.
    pub error: E,
    /// The source (a `.coop` file, or the text of a command-line option).
    pub src: NamedSource<String>,
}

impl<E> Located<E> {
    /// Pairs `error` with the source named `name` holding `text`.
    pub fn new(error: E, name: &str, text: &str) -> Self {
        Located {
            error,
            src: NamedSource::new(name, text.to_string()),
        }
    }
}

impl<E: fmt::Display> fmt::Display for Located<E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(formatter)
    }
}

impl<E: Diagnostic> std::error::Error for Located<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

impl<E: Diagnostic> Diagnostic for Located<E> {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.error.code()
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.error.help()
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.error.labels()
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.src)
    }
}

/// Everything that can stop [`crate::pipeline`]: each variant holds every error its phase
/// found, each with its source.
#[derive(Debug, Error)]
pub enum CompileError {
    /// The source does not parse.
    #[error(transparent)]
    Parse(Box<ParseError>),
    /// Building the IR found mistakes in the model.
    #[error("{} error(s) in the model", .0.len())]
    Build(Vec<Located<BuildError>>),
    /// A command-line option is not acceptable.
    #[error(transparent)]
    Option(Box<Located<OptionError>>),
    /// A pass failed: bad options (a user error) or a graph breaking the pass's contract.
    #[error("pass `{stage}` failed")]
    Pass {
        /// The pass.
        stage: String,
        /// Why.
        error: Box<Located<crate::passes::PassError>>,
    },
    /// The verifier found a malformed graph after a stage: a bug in coopc.
    #[error("internal error: the IR is malformed after `{stage}`")]
    Internal {
        /// The stage after which the verifier failed.
        stage: String,
        /// What the verifier found.
        errors: Vec<Located<crate::ir::verify::VerifyError>>,
    },
}

impl CompileError {
    /// True when the error is a bug in coopc rather than a mistake of the user's.
    pub fn is_internal(&self) -> bool {
        match self {
            CompileError::Internal { .. } => true,
            CompileError::Pass { error, .. } => error.error.is_internal(),
            _ => false,
        }
    }

    /// The individual reports, each renderable on its own (with its source).
    pub fn diagnostics(&self) -> Vec<&dyn Diagnostic> {
        match self {
            CompileError::Parse(error) => vec![error.as_ref() as &dyn Diagnostic],
            CompileError::Build(errors) => errors.iter().map(|e| e as &dyn Diagnostic).collect(),
            CompileError::Option(error) => vec![error.as_ref() as &dyn Diagnostic],
            CompileError::Pass { error, .. } => vec![error.as_ref() as &dyn Diagnostic],
            CompileError::Internal { errors, .. } => {
                errors.iter().map(|e| e as &dyn Diagnostic).collect()
            }
        }
    }

    /// All reports rendered as text without colour (what the error snapshots store).
    pub fn render(&self) -> String {
        let mut text = String::new();
        if self.is_internal() {
            text.push_str(&format!(
                "{self}: this is a bug in coopc, please report it\n"
            ));
        }
        for diagnostic in self.diagnostics() {
            text.push_str(&grammar::error::render_report(diagnostic));
        }
        text
    }
}

/// The closest of `candidates` to `name` (edit distance at most a third of its length), for
/// "did you mean" hints.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min()
        .map(|(_, candidate)| candidate)
}

/// Edit distance in characters, a swap of two neighbours counting as one edit (optimal string
/// alignment), so `cnov` is one edit from `conv`.
fn edit_distance(lhs: &str, rhs: &str) -> usize {
    let lhs: Vec<char> = lhs.chars().collect();
    let rhs: Vec<char> = rhs.chars().collect();
    let width = rhs.len() + 1;
    let mut table = vec![0usize; (lhs.len() + 1) * width];
    for row in 0..=lhs.len() {
        for column in 0..=rhs.len() {
            table[row * width + column] = if row == 0 || column == 0 {
                row + column
            } else {
                let substitution = usize::from(lhs[row - 1] != rhs[column - 1]);
                let mut best = (table[(row - 1) * width + column] + 1)
                    .min(table[row * width + column - 1] + 1)
                    .min(table[(row - 1) * width + column - 1] + substitution);
                let swapped = row > 1
                    && column > 1
                    && lhs[row - 1] == rhs[column - 2]
                    && lhs[row - 2] == rhs[column - 1];
                if swapped {
                    best = best.min(table[(row - 2) * width + column - 2] + 1);
                }
                best
            };
        }
    }
    table[lhs.len() * width + rhs.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_suggests_near_names_only() {
        let ops = ["conv", "dense", "batchnorm", "relu"];
        assert_eq!(closest("cnov", ops), Some("conv"));
        assert_eq!(closest("batchnrom", ops), Some("batchnorm"));
        assert_eq!(closest("softmax", ops), None);
    }

    #[test]
    fn located_errors_render_with_file_line_and_column() {
        let text = "model m() {\n  x = foo(1)\n}\n";
        let error = BuildError::UnknownCallee {
            name: "foo".into(),
            span: Span::new(18, 21),
            help: "did you mean `conv`?".into(),
        };
        let report = grammar::error::render_report(&Located::new(error, "m.coop", text));
        assert!(report.contains("[m.coop:2:7]"), "{report}");
        assert!(report.contains("not an op or a block"), "{report}");
    }
}
