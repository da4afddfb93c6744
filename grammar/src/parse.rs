//! The parser: `.coop` text to [`crate::ast::File`].
//!
//! Three steps: the lexical scan (unterminated comments and strings, bracket depth), the pest
//! grammar, and the conversion of pest pairs into AST nodes, which converts every pest span to
//! a [`Span`] and checks what the grammar leaves open (number ranges, string escapes, where each
//! kind of statement may stand, expression depth). Invariant: no input panics; a parse tree of
//! a shape this module does not expect becomes [`ParseError::Internal`].

use std::sync::Arc;

use miette::NamedSource;
use pest::iterators::Pair;
use pest::Parser;

use crate::ast::{
    Arg, Assign, BinaryOp, Block, Call, Expr, ExprKind, File, Ident, Input, Item, Model, Param,
    Stmt,
};
use crate::error::{ParseError, Source};
use crate::rules::{CoopParser, Rule};
use crate::scan::{self, Problem, MAX_NESTING, MAX_SOURCE_BYTES};
use crate::span::{SourceFile, Span};
use crate::syntax;

type Result<T> = std::result::Result<T, ParseError>;

/// An expression with the depth of its tree (a leaf has depth 1).
type Deep = (Expr, usize);

/// Parses a whole `.coop` source into its AST.
///
/// # Errors
///
/// A [`ParseError`] for the first problem found: a lexical one (unterminated comment or
/// string), a syntax error with what was expected, a bad literal, a misplaced statement, or
/// nesting deeper than [`MAX_NESTING`]. The error carries the source for rendering.
///
/// Turns on pest's process-wide error detail (`pest::set_error_detail`), which lets reports
/// list the tokens expected; it costs about a third of the parse time, and `.coop` files are
/// small. It is set before every parse and never cleared, so every report has the detail.
pub fn parse(source: &SourceFile) -> Result<File> {
    let converter = Converter { source };
    scan::check(&source.text).map_err(|problem| converter.scan_error(problem))?;

    // Collects the literal tokens tried at the error position, so reports can list `)` etc.
    pest::set_error_detail(true);
    let parsed = with_stack(PARSER_STACK, || CoopParser::parse(Rule::file, &source.text));
    let mut pairs =
        parsed.map_err(|error| syntax::to_parse_error(&source.text, converter.src(), &error))?;
    match pairs.next() {
        Some(file) => converter.file(file),
        None => Err(converter.internal(Span::default(), "pest returned no `file` pair")),
    }
}

/// Stack the pest parser is guaranteed: enough for [`MAX_NESTING`] brackets (it needs about
/// 1.5 MiB for 300 in a debug build), so its own stack guard does not fire first.
const PARSER_STACK: usize = 8 << 20;

/// Stack guaranteed to each level of the recursive conversion (a debug build uses about 20 KiB
/// per bracket level).
const LEVEL_STACK: usize = 256 << 10;

/// Runs `work` with at least `needed` bytes of stack, on a new heap-allocated segment when the
/// current one has less left. Deep but accepted nesting then never overflows the thread's
/// stack, whatever its size.
fn with_stack<T>(needed: usize, work: impl FnOnce() -> T) -> T {
    stacker::maybe_grow(needed, 2 * needed, work)
}

/// The children of one pair, keywords left out, taken in order.
struct Children<'i> {
    pairs: std::vec::IntoIter<Pair<'i, Rule>>,
    parent: Span,
}

impl<'i> Children<'i> {
    fn of(pair: Pair<'i, Rule>) -> Self {
        let parent = span_of(&pair);
        let pairs: Vec<_> = pair
            .into_inner()
            .filter(|child| !is_keyword(child.as_rule()))
            .collect();
        Children {
            pairs: pairs.into_iter(),
            parent,
        }
    }

    /// The next child, whatever it is.
    fn next(&mut self) -> Option<Pair<'i, Rule>> {
        self.pairs.next()
    }

    /// The next child if it has `rule`; otherwise nothing is taken.
    fn take(&mut self, rule: Rule) -> Option<Pair<'i, Rule>> {
        if self.pairs.as_slice().first()?.as_rule() == rule {
            self.pairs.next()
        } else {
            None
        }
    }

    /// The next child, which the grammar says has `rule`.
    fn expect(&mut self, rule: Rule, converter: &Converter) -> Result<Pair<'i, Rule>> {
        self.take(rule).ok_or_else(|| {
            let detail = format!("expected a `{rule:?}` pair, found {:?}", self.peek_rule());
            converter.internal(self.parent, &detail)
        })
    }

    fn peek_rule(&self) -> Option<Rule> {
        self.pairs.as_slice().first().map(Pair::as_rule)
    }
}

fn is_keyword(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::kw_model
            | Rule::kw_block
            | Rule::kw_input
            | Rule::kw_output
            | Rule::kw_repeat
            | Rule::kw_as
            | Rule::EOI
    )
}

fn span_of(pair: &Pair<'_, Rule>) -> Span {
    let span = pair.as_span();
    // The scan refused sources longer than u32::MAX bytes, so offsets fit.
    Span::new(span.start() as u32, span.end() as u32)
}

fn ident(pair: &Pair<'_, Rule>) -> Ident {
    Ident {
        name: pair.as_str().to_string(),
        span: span_of(pair),
    }
}

/// Pair-to-AST conversion for one source.
struct Converter<'s> {
    source: &'s SourceFile,
}

impl Converter<'_> {
    fn src(&self) -> Source {
        Arc::new(NamedSource::new(
            self.source.name.clone(),
            self.source.text.clone(),
        ))
    }

    fn internal(&self, span: Span, detail: &str) -> ParseError {
        ParseError::Internal {
            src: self.src(),
            span,
            detail: detail.to_string(),
        }
    }

    fn unexpected(&self, pair: &Pair<'_, Rule>, context: &str) -> ParseError {
        let detail = format!("unexpected `{:?}` pair in {context}", pair.as_rule());
        self.internal(span_of(pair), &detail)
    }

    fn scan_error(&self, problem: Problem) -> ParseError {
        match problem {
            Problem::UnterminatedComment(span) => ParseError::UnterminatedComment {
                src: self.src(),
                span,
            },
            Problem::UnterminatedString(span) => ParseError::UnterminatedString {
                src: self.src(),
                span,
            },
            Problem::TooDeep(span) => self.too_deep(span),
            Problem::TooLarge => ParseError::FileTooLarge {
                name: self.source.name.clone(),
                bytes: self.source.text.len(),
                limit: MAX_SOURCE_BYTES,
            },
        }
    }

    fn too_deep(&self, span: Span) -> ParseError {
        ParseError::NestingTooDeep {
            src: self.src(),
            span,
            limit: MAX_NESTING,
        }
    }

    /// `depth` as the depth of a node at `span`, refused past the limit.
    fn check_depth(&self, depth: usize, span: Span) -> Result<usize> {
        if depth > MAX_NESTING {
            return Err(self.too_deep(span));
        }
        Ok(depth)
    }

    // ---- Items ---------------------------------------------------------------------------

    fn file(&self, pair: Pair<'_, Rule>) -> Result<File> {
        let span = span_of(&pair);
        let mut items = Vec::new();
        for child in pair.into_inner() {
            match child.as_rule() {
                Rule::model => items.push(Item::Model(self.model(child)?)),
                Rule::block => items.push(Item::Block(self.block(child)?)),
                Rule::EOI => {}
                _ => return Err(self.unexpected(&child, "a file")),
            }
        }
        if items.is_empty() {
            return Err(ParseError::NoItems {
                src: self.src(),
                span: Span::new(span.end, span.end),
            });
        }
        Ok(File { items, span })
    }

    fn model(&self, pair: Pair<'_, Rule>) -> Result<Model> {
        let span = span_of(&pair);
        let mut children = Children::of(pair);
        let name = ident(&children.expect(Rule::model_name, self)?);
        let params = self.params(children.take(Rule::params))?;
        let body = self.body(children.expect(Rule::body, self)?)?;
        for stmt in &body {
            if let Stmt::Expr(expr) = stmt {
                return Err(self.misplaced(
                    expr.span,
                    "a bare expression",
                    "model",
                    "a model names its values: write `NAME = ...` or `output NAME = ...`",
                ));
            }
        }
        Ok(Model {
            name,
            params,
            body,
            span,
        })
    }

    fn block(&self, pair: Pair<'_, Rule>) -> Result<Block> {
        let span = span_of(&pair);
        let mut children = Children::of(pair);
        let name = ident(&children.expect(Rule::block_name, self)?);
        let params = self.params(children.take(Rule::params))?;
        let body = self.body(children.expect(Rule::body, self)?)?;
        self.check_block_body(&body)?;
        let block = Block {
            name,
            params,
            body,
            span,
        };
        if block.result().is_none() {
            return Err(ParseError::MissingBlockResult {
                src: self.src(),
                span: Span::new(span.end.saturating_sub(1), span.end),
                block: block.name.name,
            });
        }
        Ok(block)
    }

    /// A block body holds assignments and, last, its result: no `input`, no `output`, and no
    /// bare expression before the end.
    fn check_block_body(&self, body: &[Stmt]) -> Result<()> {
        let last = body.len().saturating_sub(1);
        for (index, stmt) in body.iter().enumerate() {
            let (statement, hint) = match stmt {
                Stmt::Input(_) => (
                    "an `input` statement",
                    "a block takes its inputs as parameters; `input` belongs in a model",
                ),
                Stmt::Output(_) => (
                    "an `output` statement",
                    "a block returns the value of its last expression; `output` belongs in a \
                     model",
                ),
                Stmt::Expr(_) if index != last => (
                    "a bare expression other than the last",
                    "only the last statement of a block, its result, is a bare expression; \
                     assign this one to a name",
                ),
                Stmt::Assign(_) | Stmt::Expr(_) => continue,
            };
            return Err(self.misplaced(stmt.span(), statement, "block", hint));
        }
        Ok(())
    }

    fn misplaced(
        &self,
        span: Span,
        statement: &'static str,
        item: &'static str,
        hint: &'static str,
    ) -> ParseError {
        ParseError::MisplacedStatement {
            src: self.src(),
            span,
            statement,
            item,
            hint,
        }
    }

    fn params(&self, pair: Option<Pair<'_, Rule>>) -> Result<Vec<Param>> {
        let Some(pair) = pair else {
            return Ok(Vec::new());
        };
        let mut params = Vec::new();
        for param in pair.into_inner() {
            let span = span_of(&param);
            let mut children = Children::of(param);
            let name = ident(&children.expect(Rule::param_name, self)?);
            let default = match children.take(Rule::default) {
                Some(default) => Some(self.default(default)?),
                None => None,
            };
            params.push(Param {
                name,
                default,
                span,
            });
        }
        Ok(params)
    }

    fn default(&self, pair: Pair<'_, Rule>) -> Result<Expr> {
        let mut children = Children::of(pair);
        match children.next() {
            Some(literal) => Ok(self.primary(literal)?.0),
            None => Err(self.internal(children.parent, "empty `default` pair")),
        }
    }

    // ---- Statements ----------------------------------------------------------------------

    fn body(&self, pair: Pair<'_, Rule>) -> Result<Vec<Stmt>> {
        pair.into_inner().map(|stmt| self.stmt(stmt)).collect()
    }

    fn stmt(&self, pair: Pair<'_, Rule>) -> Result<Stmt> {
        let span = span_of(&pair);
        let rule = pair.as_rule();
        let mut children = Children::of(pair);
        match rule {
            Rule::input_stmt => {
                let name = ident(&children.expect(Rule::input_name, self)?);
                let shape = children.expect(Rule::shape, self)?;
                let shape_span = span_of(&shape);
                let dims = self.exprs(shape)?.into_iter().map(|(dim, _)| dim).collect();
                Ok(Stmt::Input(Input {
                    name,
                    dims,
                    shape_span,
                    span,
                }))
            }
            Rule::output_stmt | Rule::assign_stmt => {
                let name_rule = if rule == Rule::output_stmt {
                    Rule::output_name
                } else {
                    Rule::var_name
                };
                let target = ident(&children.expect(name_rule, self)?);
                let value = self.expr(children.expect(Rule::expr, self)?)?.0;
                let assign = Assign {
                    target,
                    value,
                    span,
                };
                Ok(if rule == Rule::output_stmt {
                    Stmt::Output(assign)
                } else {
                    Stmt::Assign(assign)
                })
            }
            Rule::expr_stmt => Ok(Stmt::Expr(self.expr(children.expect(Rule::expr, self)?)?.0)),
            _ => Err(self.internal(span, &format!("unexpected `{rule:?}` pair in a body"))),
        }
    }

    // ---- Expressions ---------------------------------------------------------------------

    /// Every child of `pair` as an expression (the elements of a list or shape).
    fn exprs(&self, pair: Pair<'_, Rule>) -> Result<Vec<Deep>> {
        pair.into_inner()
            .map(|child| match child.as_rule() {
                Rule::expr => self.expr(child),
                _ => self.primary(child),
            })
            .collect()
    }

    /// `sum |> stage |> stage ...`, folded to the left.
    fn expr(&self, pair: Pair<'_, Rule>) -> Result<Deep> {
        with_stack(LEVEL_STACK, || self.pipe_chain(pair))
    }

    fn pipe_chain(&self, pair: Pair<'_, Rule>) -> Result<Deep> {
        let mut children = Children::of(pair);
        let (mut result, mut depth) = self.sum(children.expect(Rule::sum, self)?)?;
        while let Some(stage) = children.next() {
            if stage.as_rule() != Rule::stage {
                return Err(self.unexpected(&stage, "a pipe"));
            }
            let (stage, stage_depth) = self.stage(stage)?;
            depth = self.check_depth(depth.max(stage_depth) + 1, stage.span)?;
            let span = result.span.join(stage.span);
            let kind = ExprKind::Pipe {
                input: Box::new(result),
                stage: Box::new(stage),
            };
            result = Expr { kind, span };
        }
        Ok((result, depth))
    }

    /// `(repeat N f(...) | f(...) | f) (as label)?` after a `|>`.
    fn stage(&self, pair: Pair<'_, Rule>) -> Result<Deep> {
        let mut children = Children::of(pair);
        let inner = match children.next() {
            Some(repeat) if repeat.as_rule() == Rule::repeat => self.repeat(repeat)?,
            Some(call) if call.as_rule() == Rule::call => {
                let mut call_children = Children::of(call);
                let callee = ident(&call_children.expect(Rule::callee, self)?);
                self.call(callee, call_children.take(Rule::args))?
            }
            Some(other) => return Err(self.unexpected(&other, "a pipe stage")),
            None => return Err(self.internal(children.parent, "empty `stage` pair")),
        };
        self.labeled(inner, children.take(Rule::label))
    }

    /// `repeat count call (as label)?`, as a stage or standing alone.
    fn repeat(&self, pair: Pair<'_, Rule>) -> Result<Deep> {
        let span = span_of(&pair);
        let mut children = Children::of(pair);
        let count = children.expect(Rule::count, self)?;
        let (count, count_depth) = self.sum(Children::of(count).expect(Rule::sum, self)?)?;
        let mut call_children = Children::of(children.expect(Rule::call, self)?);
        let callee = ident(&call_children.expect(Rule::callee, self)?);
        let (call, call_depth) = self.call(callee, call_children.take(Rule::args))?;
        let ExprKind::Call(call) = call.kind else {
            return Err(self.internal(span, "a repeated call did not convert to a call"));
        };
        let depth = self.check_depth(count_depth.max(call_depth) + 1, span)?;
        // The repeat ends with its call; a label, if any, wraps it.
        let repeat_span = Span::new(span.start, call.span.end);
        let kind = ExprKind::Repeat {
            count: Box::new(count),
            call,
        };
        let repeat = Expr {
            kind,
            span: repeat_span,
        };
        self.labeled((repeat, depth), children.take(Rule::label))
    }

    /// `callee` with its arguments, if any, as a call expression.
    fn call(&self, callee: Ident, args: Option<Pair<'_, Rule>>) -> Result<Deep> {
        let mut span = callee.span;
        let mut depth = 1;
        let mut converted = Vec::new();
        if let Some(args) = args {
            span = span.join(span_of(&args));
            for arg in args.into_inner() {
                let (arg, arg_depth) = self.arg(arg)?;
                depth = depth.max(arg_depth + 1);
                converted.push(arg);
            }
        }
        let depth = self.check_depth(depth, span)?;
        let call = Call {
            callee,
            args: converted,
            span,
        };
        Ok((
            Expr {
                kind: ExprKind::Call(call),
                span,
            },
            depth,
        ))
    }

    /// `value` or `name: value`.
    fn arg(&self, pair: Pair<'_, Rule>) -> Result<(Arg, usize)> {
        let span = span_of(&pair);
        let mut children = Children::of(pair);
        let name = children.take(Rule::arg_name).map(|name| ident(&name));
        let value = match children.take(Rule::value) {
            Some(value) => Children::of(value).expect(Rule::expr, self)?,
            None => children.expect(Rule::expr, self)?,
        };
        let (value, depth) = self.expr(value)?;
        Ok((Arg { name, value, span }, depth))
    }

    /// Wraps `inner` in [`ExprKind::Labeled`] when a label follows it.
    fn labeled(&self, inner: Deep, label: Option<Pair<'_, Rule>>) -> Result<Deep> {
        let Some(label) = label else { return Ok(inner) };
        let label = ident(&Children::of(label).expect(Rule::label_name, self)?);
        let (expr, depth) = inner;
        let span = expr.span.join(label.span);
        let depth = self.check_depth(depth + 1, span)?;
        let kind = ExprKind::Labeled {
            expr: Box::new(expr),
            label,
        };
        Ok((Expr { kind, span }, depth))
    }

    /// `product (+|- product)*`, folded to the left.
    fn sum(&self, pair: Pair<'_, Rule>) -> Result<Deep> {
        self.binary_chain(pair, Rule::product)
    }

    /// A left-folded chain `operand (op operand)*` of `sum` or `product`.
    fn binary_chain(&self, pair: Pair<'_, Rule>, operand_rule: Rule) -> Result<Deep> {
        let mut children = Children::of(pair);
        let first = children
            .next()
            .ok_or_else(|| self.internal(children.parent, "empty chain"))?;
        let (mut result, mut depth) = self.operand(first, operand_rule)?;
        while let Some(op) = children.next() {
            let op = match op.as_str() {
                "+" => BinaryOp::Add,
                "-" => BinaryOp::Sub,
                "*" => BinaryOp::Mul,
                "/" => BinaryOp::Div,
                _ => return Err(self.unexpected(&op, "an operator chain")),
            };
            let rhs = children
                .next()
                .ok_or_else(|| self.internal(result.span, "no operand"))?;
            let (rhs, rhs_depth) = self.operand(rhs, operand_rule)?;
            let span = result.span.join(rhs.span);
            depth = self.check_depth(depth.max(rhs_depth) + 1, rhs.span)?;
            let kind = ExprKind::Binary {
                op,
                lhs: Box::new(result),
                rhs: Box::new(rhs),
            };
            result = Expr { kind, span };
        }
        Ok((result, depth))
    }

    /// An operand of a chain: a `product` in a sum; in a product, a primary (a silent rule,
    /// so the pair is the primary's own alternative).
    fn operand(&self, pair: Pair<'_, Rule>, operand_rule: Rule) -> Result<Deep> {
        match (operand_rule, pair.as_rule()) {
            (Rule::product, Rule::product) => self.binary_chain(pair, Rule::primary),
            (Rule::product, _) => Err(self.unexpected(&pair, "a sum")),
            _ => self.primary(pair),
        }
    }

    /// One primary expression: a literal, list, parenthesised expression, call or variable.
    fn primary(&self, pair: Pair<'_, Rule>) -> Result<Deep> {
        with_stack(LEVEL_STACK, || self.primary_here(pair))
    }

    fn primary_here(&self, pair: Pair<'_, Rule>) -> Result<Deep> {
        let span = span_of(&pair);
        let leaf = |kind| Ok((Expr { kind, span }, 1));
        match pair.as_rule() {
            Rule::int => leaf(ExprKind::Int(self.int(&pair)?)),
            Rule::float => leaf(ExprKind::Float(self.float(&pair)?)),
            Rule::bool => leaf(ExprKind::Bool(pair.as_str() == "true")),
            Rule::string => leaf(ExprKind::Str(self.string(pair)?)),
            Rule::var => leaf(ExprKind::Ident(pair.as_str().to_string())),
            Rule::list | Rule::literal_list => self.list(pair),
            Rule::paren => {
                let (inner, depth) = self.expr(Children::of(pair).expect(Rule::expr, self)?)?;
                // The parentheses belong to the expression's text.
                Ok((
                    Expr {
                        kind: inner.kind,
                        span,
                    },
                    depth,
                ))
            }
            Rule::applied => {
                let mut children = Children::of(pair);
                let callee = ident(&children.expect(Rule::callee, self)?);
                let call = self.call(callee, Some(children.expect(Rule::args, self)?))?;
                self.labeled(call, children.take(Rule::label))
            }
            Rule::repeat_expr => self.repeat(pair),
            Rule::bad_name => Err(ParseError::InvalidName {
                src: self.src(),
                span,
                text: pair.as_str().to_string(),
            }),
            _ => Err(self.unexpected(&pair, "an expression")),
        }
    }

    /// `[a, b, ...]`, in an expression or as a parameter default.
    fn list(&self, pair: Pair<'_, Rule>) -> Result<Deep> {
        let span = span_of(&pair);
        let elements = self.exprs(pair)?;
        let depth = elements
            .iter()
            .map(|(_, depth)| depth + 1)
            .max()
            .unwrap_or(1);
        let depth = self.check_depth(depth, span)?;
        let elements = elements.into_iter().map(|(element, _)| element).collect();
        Ok((
            Expr {
                kind: ExprKind::List(elements),
                span,
            },
            depth,
        ))
    }

    // ---- Literals ------------------------------------------------------------------------

    fn int(&self, pair: &Pair<'_, Rule>) -> Result<i64> {
        pair.as_str()
            .parse::<i64>()
            .map_err(|_| self.too_large(pair))
    }

    fn float(&self, pair: &Pair<'_, Rule>) -> Result<f64> {
        match pair.as_str().parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(value),
            Ok(_) => Err(self.too_large(pair)),
            Err(_) => Err(self.internal(span_of(pair), "float literal did not parse")),
        }
    }

    fn too_large(&self, pair: &Pair<'_, Rule>) -> ParseError {
        let text = pair.as_str().to_string();
        ParseError::NumberTooLarge {
            src: self.src(),
            span: span_of(pair),
            text,
        }
    }

    /// The text of a string literal with its escapes resolved.
    fn string(&self, pair: Pair<'_, Rule>) -> Result<String> {
        let text = Children::of(pair).expect(Rule::string_text, self)?;
        let start = span_of(&text).start;
        let mut value = String::with_capacity(text.as_str().len());
        let mut chars = text.as_str().char_indices();
        while let Some((offset, c)) = chars.next() {
            if c != '\\' {
                value.push(c);
                continue;
            }
            let escaped = chars.next().map(|(_, escaped)| escaped);
            value.push(match escaped {
                Some('"') => '"',
                Some('\\') => '\\',
                Some('n') => '\n',
                Some('t') => '\t',
                _ => {
                    let length = 1 + escaped.map_or(0, char::len_utf8);
                    let at = start + offset as u32;
                    let escape = text.as_str().get(offset..offset + length).unwrap_or("\\");
                    return Err(ParseError::InvalidEscape {
                        src: self.src(),
                        span: Span::new(at, at + length as u32),
                        escape: escape.to_string(),
                    });
                }
            });
        }
        Ok(value)
    }
}
