//! Prints an AST back as canonical `.coop` source (`Display` on the AST types).
//!
//! Invariant: for any tree the parser produced, parsing the printed text gives the same tree
//! up to spans. The printer puts in exactly the parentheses precedence needs, four-space
//! indents, one statement per line and one blank line between items; comments are not kept.

use std::fmt::{self, Display, Formatter, Write};

use crate::ast::{Arg, Assign, BinaryOp, Call, Expr, ExprKind, File, Item, Param, Stmt};

/// How tightly an expression binds; an operand that binds looser than its place gets `(...)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Pipe,
    Sum,
    Product,
    Primary,
}

impl Display for File {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (index, item) in self.items.iter().enumerate() {
            if index > 0 {
                f.write_char('\n')?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

impl Display for Item {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let (keyword, params, body) = match self {
            Item::Model(model) => ("model", &model.params, &model.body),
            Item::Block(block) => ("block", &block.params, &block.body),
        };
        write!(f, "{keyword} {}(", self.name().name)?;
        write_separated(f, params, ", ")?;
        f.write_str(") {\n")?;
        for stmt in body {
            writeln!(f, "    {stmt}")?;
        }
        f.write_str("}\n")
    }
}

impl Display for Param {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name.name)?;
        match &self.default {
            Some(default) => write!(f, " = {default}"),
            None => Ok(()),
        }
    }
}

impl Display for Stmt {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Stmt::Input(input) => {
                write!(f, "input {}: [", input.name.name)?;
                write_separated(f, &input.dims, ", ")?;
                f.write_char(']')
            }
            Stmt::Assign(Assign { target, value, .. }) => write!(f, "{} = {value}", target.name),
            Stmt::Output(Assign { target, value, .. }) => {
                write!(f, "output {} = {value}", target.name)
            }
            Stmt::Expr(expr) => write!(f, "{expr}"),
        }
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write_expr(f, self, Level::Pipe)
    }
}

impl Display for Arg {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.name {
            write!(f, "{}: ", name.name)?;
        }
        write!(f, "{}", self.value)
    }
}

fn write_separated<T: Display>(f: &mut Formatter<'_>, items: &[T], separator: &str) -> fmt::Result {
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            f.write_str(separator)?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

fn level(expr: &Expr) -> Level {
    match &expr.kind {
        ExprKind::Pipe { .. } => Level::Pipe,
        ExprKind::Binary {
            op: BinaryOp::Add | BinaryOp::Sub,
            ..
        } => Level::Sum,
        ExprKind::Binary {
            op: BinaryOp::Mul | BinaryOp::Div,
            ..
        } => Level::Product,
        _ => Level::Primary,
    }
}

/// Writes `expr` where an expression binding at least as tightly as `place` is needed.
fn write_expr(f: &mut Formatter<'_>, expr: &Expr, place: Level) -> fmt::Result {
    let own = level(expr);
    if own < place {
        f.write_char('(')?;
        write_expr(f, expr, Level::Pipe)?;
        return f.write_char(')');
    }
    match &expr.kind {
        ExprKind::Ident(name) => f.write_str(name),
        ExprKind::Int(value) => write!(f, "{value}"),
        // `{:?}` always has a `.` or an exponent, so the literal reads back as a float.
        ExprKind::Float(value) => write!(f, "{value:?}"),
        ExprKind::Bool(value) => write!(f, "{value}"),
        ExprKind::Str(text) => write_string(f, text),
        ExprKind::List(elements) => {
            f.write_char('[')?;
            write_separated(f, elements, ", ")?;
            f.write_char(']')
        }
        // Standing alone a call needs its parentheses, or it would read back as a variable.
        ExprKind::Call(call) => write_call(f, call, true),
        ExprKind::Pipe { input, stage } => {
            write_expr(f, input, Level::Pipe)?;
            f.write_str(" |> ")?;
            write_stage(f, stage)
        }
        ExprKind::Binary { op, lhs, rhs } => {
            write_expr(f, lhs, own)?;
            write!(f, " {} ", op.symbol())?;
            // Operators associate to the left, so an equal-level right operand needs `(...)`.
            let rhs_place = if own == Level::Sum {
                Level::Product
            } else {
                Level::Primary
            };
            write_expr(f, rhs, rhs_place)
        }
        ExprKind::Repeat { count, call } => {
            f.write_str("repeat ")?;
            write_expr(f, count, Level::Sum)?;
            f.write_char(' ')?;
            write_call(f, call, false)
        }
        ExprKind::Labeled { expr: inner, label } => {
            match &inner.kind {
                ExprKind::Call(call) => write_call(f, call, true)?,
                _ => write_expr(f, inner, Level::Primary)?,
            }
            write!(f, " as {}", label.name)
        }
    }
}

/// A pipe stage, where a call without arguments is written bare.
fn write_stage(f: &mut Formatter<'_>, stage: &Expr) -> fmt::Result {
    match &stage.kind {
        ExprKind::Call(call) => write_call(f, call, false),
        ExprKind::Labeled { expr: inner, label } => {
            write_stage(f, inner)?;
            write!(f, " as {}", label.name)
        }
        _ => write_expr(f, stage, Level::Primary),
    }
}

fn write_call(f: &mut Formatter<'_>, call: &Call, parentheses_always: bool) -> fmt::Result {
    f.write_str(&call.callee.name)?;
    if call.args.is_empty() && !parentheses_always {
        return Ok(());
    }
    f.write_char('(')?;
    write_separated(f, &call.args, ", ")?;
    f.write_char(')')
}

fn write_string(f: &mut Formatter<'_>, text: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in text.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            _ => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

#[cfg(test)]
mod tests {
    use crate::{parse, SourceFile};

    fn reprinted(text: &str) -> String {
        match parse(&SourceFile::new("t.coop", text)) {
            Ok(file) => file.to_string(),
            Err(error) => panic!("{}", crate::render_report(&error)),
        }
    }

    #[test]
    fn printing_keeps_needed_parentheses_only() {
        let text =
            "block b(x, n) {\n    y = (n - (1 - n)) * ((n + 1) / 2) - -1\n    (y + x) |> f\n}\n";
        let expected = "block b(x, n) {\n    y = (n - (1 - n)) * ((n + 1) / 2) - -1\n    \
                        y + x |> f\n}\n";
        assert_eq!(reprinted(text), expected);
    }

    #[test]
    fn calls_are_bare_only_in_pipe_stages_and_after_repeat() {
        let text = "block b(x) {\n    y = f() as a\n    x |> g as c |> repeat 2 h as d\n}\n";
        assert_eq!(reprinted(text), text);
    }

    #[test]
    fn literals_read_back_as_the_same_kind() {
        let text = "model m(a = 1.0, b = 1e-5, c = \"q\\\"\\\\\\n\\t\", d = [true, -2]) {\n}\n";
        assert_eq!(reprinted(text), text);
    }
}
