//! Evaluation of expressions while instantiating a model: pipes, calls, repeats, labels,
//! arithmetic and residual adds.
//!
//! Desugarings, as `grammar::ast` documents them: `x |> f(a)` is `f(x, a)`; `x |> repeat n
//! f(a)` is `f(...f(x, a)..., a)` n times; standing alone, `repeat n f(x, a)` feeds `x`;
//! `call as label` names the call's scope `label` (`label.k` for the k-th repetition); `a + b`
//! on tensors is an `Add` node, on numbers integer (or float) arithmetic.

use grammar::ast::{BinaryOp, Call, Expr, ExprKind, Ident};
use grammar::Span;

use super::args::{bind, Source};
use super::builtins::{self, builtin, Args};
use super::value::{self, Converted, Refusal, Value};
use super::{Frame, Instantiator};
use crate::error::BuildError;

/// How a call's layer (or block instance) is named.
#[derive(Clone, Copy)]
pub(super) enum Naming<'e> {
    /// The callee's name and the next free number in the scope.
    Auto,
    /// A label written in the source.
    Label(&'e Ident),
    /// The `k`-th application of a labelled repeat, under the label's full path.
    Repetition(&'e str, usize),
}

/// The innermost source of a pipe chain and its stages in application order, without
/// recursion (a chain may be long).
pub(super) fn unpipe(expr: &Expr) -> (&Expr, Vec<&Expr>) {
    let mut stages = Vec::new();
    let mut current = expr;
    while let ExprKind::Pipe { input, stage } = &current.kind {
        stages.push(stage.as_ref());
        current = input;
    }
    stages.reverse();
    (current, stages)
}

impl Instantiator<'_, '_> {
    /// The value of `expr` in `frame`; errors are recorded and give [`Value::Poison`].
    pub(super) fn eval(&mut self, expr: &Expr, frame: &mut Frame) -> Value {
        // Blocks nest and expressions nest within them: grow the stack instead of overflowing.
        stacker::maybe_grow(64 * 1024, 1024 * 1024, || self.eval_inner(expr, frame))
    }

    fn eval_inner(&mut self, expr: &Expr, frame: &mut Frame) -> Value {
        match &expr.kind {
            ExprKind::Ident(name) => match frame.env.get(name) {
                Some(value) => value.clone(),
                None => {
                    let help = "names come from parameters, inputs and earlier assignments".into();
                    self.errors.push(BuildError::UndefinedName {
                        name: name.clone(),
                        span: expr.span,
                        help,
                    });
                    Value::Poison
                }
            },
            ExprKind::Int(number) => Value::Int(*number),
            ExprKind::Float(number) => Value::Float(*number),
            ExprKind::Bool(flag) => Value::Bool(*flag),
            ExprKind::Str(text) => Value::Str(text.clone()),
            ExprKind::List(items) => {
                Value::List(items.iter().map(|item| self.eval(item, frame)).collect())
            }
            ExprKind::Call(call) => self.call(call, None, false, Naming::Auto, frame),
            ExprKind::Pipe { .. } => {
                let (source, stages) = unpipe(expr);
                let mut value = self.eval(source, frame);
                for stage in stages {
                    value = self.stage(stage, Some(value), frame);
                }
                value
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let lhs_value = self.eval(lhs, frame);
                let rhs_value = self.eval(rhs, frame);
                self.binary(*op, lhs_value, rhs_value, expr.span)
            }
            ExprKind::Repeat { .. } | ExprKind::Labeled { .. } => self.stage(expr, None, frame),
        }
    }

    /// A call, repeat or labelled one of those, fed `input` when it is a pipe stage.
    fn stage(&mut self, stage: &Expr, input: Option<Value>, frame: &mut Frame) -> Value {
        let (inner, naming) = match &stage.kind {
            ExprKind::Labeled { expr, label } => (expr.as_ref(), Naming::Label(label)),
            _ => (stage, Naming::Auto),
        };
        match &inner.kind {
            ExprKind::Call(call) => self.call(call, input, false, naming, frame),
            ExprKind::Repeat { count, call } => self.repeat(count, call, input, naming, frame),
            // The parser only puts calls and repeats here; anything else is just a value.
            _ => self.eval(inner, frame),
        }
    }

    // repeat n f(a) fed x  =>  f(...f(f(x, a), a)..., a), n times
    fn repeat(
        &mut self,
        count: &Expr,
        call: &Call,
        input: Option<Value>,
        naming: Naming<'_>,
        frame: &mut Frame,
    ) -> Value {
        let count_value = self.eval(count, frame);
        let Some(count) = self.accept(value::size(
            &count_value,
            "the count of `repeat`",
            count.span,
            true,
        )) else {
            return Value::Poison;
        };
        // Standing alone, the first positional argument is the value fed to the first call.
        let skip_first = input.is_none();
        let mut value = match input {
            Some(value) => value,
            None => match call.args.iter().find(|arg| arg.name.is_none()) {
                Some(first) => self.eval(&first.value, frame),
                None => Value::Poison,
            },
        };
        let base = match naming {
            Naming::Label(label) => match frame.scope.label(&label.name, label.span) {
                Ok(path) => Some(path),
                Err(error) => {
                    self.errors.push(error);
                    return Value::Poison;
                }
            },
            _ => None,
        };
        for index in 0..count {
            let naming = match &base {
                Some(path) => Naming::Repetition(path, index),
                None => Naming::Auto,
            };
            value = self.call(call, Some(value), skip_first, naming, frame);
            if value.is_poison() || self.aborted {
                return Value::Poison;
            }
        }
        value
    }

    /// A call fed `input` (the piped value) or not.
    pub(super) fn call(
        &mut self,
        call: &Call,
        input: Option<Value>,
        skip_first: bool,
        naming: Naming<'_>,
        frame: &mut Frame,
    ) -> Value {
        self.calls += 1;
        self.check_size(call.span);
        if self.aborted {
            return Value::Poison;
        }
        let name = call.callee.name.as_str();
        let Some(signature) = self.items.signature(name) else {
            self.errors
                .push(self.items.unknown_callee(name, call.callee.span));
            return Value::Poison;
        };
        let bound = match bind(&signature, call, input.is_some(), skip_first) {
            Ok(bound) => bound,
            Err(errors) => {
                errors.into_iter().for_each(|error| self.errors.push(error));
                return Value::Poison;
            }
        };

        // Evaluate the arguments in parameter order; the piped value fills its slot.
        let mut input = input;
        let mut values = Vec::with_capacity(bound.len());
        for slot in bound {
            values.push(slot.map(|(source, span)| match source {
                Source::Piped => (input.take().unwrap_or(Value::Poison), span),
                Source::Expr(expr) => (self.eval(expr, frame), span),
            }));
        }
        let Some(path) = self.layer_path(name, naming, call.span, frame) else {
            return Value::Poison;
        };
        if values.iter().flatten().any(|(value, _)| value.is_poison()) {
            return Value::Poison;
        }

        let value = match (builtin(name), self.items.blocks.get(name)) {
            (Some(op), _) => {
                let args = Args {
                    builtin: op,
                    values,
                    span: call.span,
                    layer: &path,
                };
                let result = builtins::apply(&mut self.builder, &args);
                self.accept(result).unwrap_or(Value::Poison)
            }
            (None, Some(block)) => self.instantiate_block(block, values, path, call.span),
            (None, None) => Value::Poison,
        };
        self.check_size(call.span);
        value
    }

    /// The full path of the layer or block instance a call creates.
    fn layer_path(
        &mut self,
        callee: &str,
        naming: Naming<'_>,
        span: Span,
        frame: &mut Frame,
    ) -> Option<String> {
        match naming {
            Naming::Auto => Some(frame.scope.auto(callee, span)),
            Naming::Label(label) => match frame.scope.label(&label.name, label.span) {
                Ok(path) => Some(path),
                Err(error) => {
                    self.errors.push(error);
                    None
                }
            },
            Naming::Repetition(base, index) => Some(format!("{base}.{index}")),
        }
    }

    // tensor + tensor => Add; numbers => arithmetic
    fn binary(&mut self, op: BinaryOp, lhs: Value, rhs: Value, span: Span) -> Value {
        if lhs.is_poison() || rhs.is_poison() {
            return Value::Poison;
        }
        match (&lhs, &rhs) {
            (Value::Tensor(left), Value::Tensor(right)) if op == BinaryOp::Add => {
                let result = self.builder.add(&[*left, *right], span).map(Value::Tensor);
                self.accept(result.map_err(Refusal::Error))
                    .unwrap_or(Value::Poison)
            }
            (Value::Tensor(_), _) | (_, Value::Tensor(_)) => {
                let what = format!("an operand of `{}`", op.symbol());
                let expected = if op == BinaryOp::Add {
                    "a number, or tensors on both sides"
                } else {
                    "a number (only `+` applies to tensors)"
                };
                let found = if matches!(lhs, Value::Tensor(_)) {
                    rhs.kind()
                } else {
                    lhs.kind()
                };
                let found = if op == BinaryOp::Add {
                    found
                } else {
                    "a tensor"
                };
                self.errors.push(BuildError::WrongKind {
                    what,
                    expected,
                    found,
                    span,
                });
                Value::Poison
            }
            _ => self
                .accept(value::arithmetic(op, &lhs, &rhs, span))
                .unwrap_or(Value::Poison),
        }
    }

    /// The converted value, recording the error when there is one.
    pub(super) fn accept<T>(&mut self, converted: Converted<T>) -> Option<T> {
        match converted {
            Ok(value) => Some(value),
            Err(Refusal::Error(error)) => {
                self.errors.push(error);
                None
            }
            Err(Refusal::Poisoned) => None,
        }
    }
}
