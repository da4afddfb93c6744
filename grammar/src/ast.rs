//! The abstract syntax tree of a `.coop` file, as the parser produces it.
//!
//! Invariant: every node carries the [`Span`] of the exact source text it came from (byte range
//! into the [`crate::SourceFile`] that was parsed), so every later phase can underline the
//! user's own code. The tree is purely syntactic: no name is resolved and nothing is desugared;
//! the IR builder gives the meaning documented on each node (pipes, repetition, labels).
//!
//! Shapes the parser guarantees beyond what the types say are listed on [`Model`], [`Block`]
//! and [`ExprKind::Pipe`]; a consumer may rely on them.

use crate::span::Span;

/// A whole `.coop` file: one or more items in source order.
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    /// The models and blocks, in source order; never empty after a successful parse.
    pub items: Vec<Item>,
    /// The whole text of the file.
    pub span: Span,
}

/// A top-level definition.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// `model NAME(params) { ... }`: a network with inputs and outputs.
    Model(Model),
    /// `block NAME(params) { ... }`: a reusable subgraph.
    Block(Block),
}

impl Item {
    /// The item's name.
    pub fn name(&self) -> &Ident {
        match self {
            Item::Model(model) => &model.name,
            Item::Block(block) => &block.name,
        }
    }

    /// The span of the whole item, keyword to closing brace.
    pub fn span(&self) -> Span {
        match self {
            Item::Model(model) => model.span,
            Item::Block(block) => block.span,
        }
    }
}

/// A name as written: a model, block, parameter, variable, callee, argument name or label.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ident {
    /// The text of the name (ASCII letter or `_`, then letters, digits, `_`).
    pub name: String,
    /// Where it is written.
    pub span: Span,
}

/// `model NAME(params) { body }`.
///
/// The parser guarantees that `body` holds only [`Stmt::Input`], [`Stmt::Assign`] and
/// [`Stmt::Output`]; a model has no bare expression statement.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// The model's name.
    pub name: Ident,
    /// Hyper-parameters such as `classes = 10`, overridable by the user at compile time.
    pub params: Vec<Param>,
    /// The statements in source order.
    pub body: Vec<Stmt>,
    /// From `model` to the closing `}`.
    pub span: Span,
}

/// `block NAME(params) { body }`: a subgraph, applied like an op.
///
/// Parameters bind positionally and by name at each call; in a pipe `x |> b(a)` the piped value
/// binds to the first parameter. The parser guarantees that `body` holds [`Stmt::Assign`]s
/// followed by exactly one [`Stmt::Expr`], the last statement, whose value is the block's result
/// (see [`Block::result`]); a block has no `input` or `output` statement.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// The block's name, used like an op name at call sites.
    pub name: Ident,
    /// Parameters in order: tensors (e.g. `x`) and numbers (e.g. `width`, `stride = 1`) alike.
    pub params: Vec<Param>,
    /// The statements in source order; the last one is the result expression.
    pub body: Vec<Stmt>,
    /// From `block` to the closing `}`.
    pub span: Span,
}

impl Block {
    /// The final bare expression whose value the block returns.
    ///
    /// Always `Some` for a block produced by the parser.
    pub fn result(&self) -> Option<&Expr> {
        match self.body.last() {
            Some(Stmt::Expr(expr)) => Some(expr),
            _ => None,
        }
    }
}

/// A parameter of a model or block: `name` or `name = default`.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// The parameter's name.
    pub name: Ident,
    /// The default value, a literal ([`ExprKind::Int`], `Float`, `Bool`, `Str`, or a `List` of
    /// literals); `None` when the caller must supply it.
    pub default: Option<Expr>,
    /// From the name to the end of the default.
    pub span: Span,
}

/// A statement in a model or block body.
#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `input NAME: [dims]`: a model input of the given per-example shape.
    Input(Input),
    /// `NAME = expr`: binds (or rebinds) a variable.
    Assign(Assign),
    /// `output NAME = expr`: a named model output.
    Output(Assign),
    /// A bare expression: the result of a block (only as a block's last statement).
    Expr(Expr),
}

impl Stmt {
    /// The span of the whole statement.
    pub fn span(&self) -> Span {
        match self {
            Stmt::Input(input) => input.span,
            Stmt::Assign(assign) | Stmt::Output(assign) => assign.span,
            Stmt::Expr(expr) => expr.span,
        }
    }
}

/// `input image: [1, 28, 28]`: one example's shape, without the batch dimension.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    /// The variable the input is bound to.
    pub name: Ident,
    /// The dimensions, each an expression (a literal or arithmetic on model parameters).
    pub dims: Vec<Expr>,
    /// The bracketed list, `[` to `]`.
    pub shape_span: Span,
    /// From `input` to the closing `]`.
    pub span: Span,
}

/// `target = value`, used by both assignments and `output` statements.
#[derive(Clone, Debug, PartialEq)]
pub struct Assign {
    /// The variable (or output) name.
    pub target: Ident,
    /// The value.
    pub value: Expr,
    /// The whole statement (for `output`, from the keyword on).
    pub span: Span,
}

/// An expression with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Its source text.
    pub span: Span,
}

/// The kinds of expression.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A variable or parameter reference, e.g. `x`, `width`.
    Ident(String),
    /// An integer literal such as `28` or `-1` (fits in `i64`).
    Int(i64),
    /// A floating-point literal such as `0.25`, `1e-5` or `-0.5` (finite).
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// A string literal `"..."`, escapes (`\"`, `\\`, `\n`, `\t`) already resolved.
    Str(String),
    /// `[a, b, ...]`, possibly empty.
    List(Vec<Expr>),
    /// `f(args)`; in a pipe stage or after `repeat`, also a bare `f` (then `args` is empty).
    Call(Call),
    /// `input |> stage`: applies the stage to `input`.
    ///
    /// `x |> f(a, k: v)` means `f(x, a, k: v)`: the piped value becomes the first positional
    /// argument. `stage` is always an [`ExprKind::Call`], an [`ExprKind::Repeat`], or an
    /// [`ExprKind::Labeled`] wrapping one of those. Pipes associate to the left:
    /// `x |> f |> g` is `Pipe { input: Pipe { input: x, stage: f }, stage: g }`, i.e. `g(f(x))`.
    Pipe {
        /// The value fed in.
        input: Box<Expr>,
        /// What it is fed to.
        stage: Box<Expr>,
    },
    /// `lhs op rhs`: integer arithmetic on parameters, or, for `+` on tensors, a residual add
    /// (element-wise sum). The builder tells the two apart by the operands' values.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// `repeat count call`: `call` applied `count` times in sequence, each output feeding the
    /// next as its first argument.
    ///
    /// As a pipe stage, `x |> repeat 3 f(a)` means `f(f(f(x, a), a), a)`; `count` 0 gives `x`
    /// back. Standing alone, `repeat 3 f(x, a)` means the same: the first positional argument
    /// is the value fed to the first application. `count` is an integer expression
    /// (e.g. `blocks - 1`).
    Repeat {
        /// How many times.
        count: Box<Expr>,
        /// The call repeated.
        call: Call,
    },
    /// `expr as label`: scopes the names of the parameters created inside `expr` under
    /// `label` (e.g. `stage2.0.conv1.weight` instead of an automatic name).
    ///
    /// The label is written after a pipe stage or a call; for a `Repeat`, the k-th application
    /// (from 0) is scoped `label.k`.
    Labeled {
        /// The labelled expression (a `Call` or a `Repeat`).
        expr: Box<Expr>,
        /// The scope name.
        label: Ident,
    },
}

/// A binary arithmetic operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `+`: integer addition, or a residual add of two tensors.
    Add,
    /// `-`: integer subtraction.
    Sub,
    /// `*`: integer multiplication.
    Mul,
    /// `/`: integer division, rounding toward zero.
    Div,
}

impl BinaryOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
        }
    }
}

/// A call `callee(args)` of an op, a block, or a built-in such as `shortcut`.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The name called.
    pub callee: Ident,
    /// The arguments in source order; positional and named may mix.
    pub args: Vec<Arg>,
    /// From the callee name to the closing `)` (just the name for a bare call).
    pub span: Span,
}

/// One argument: positional `value` or named `name: value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    /// The parameter name for a named argument.
    pub name: Option<Ident>,
    /// The value.
    pub value: Expr,
    /// The whole argument, name included.
    pub span: Span,
}
