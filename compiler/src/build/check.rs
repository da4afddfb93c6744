//! Static checks of a file before anything is instantiated: item and parameter names, names
//! used before they are defined, unknown callees, argument binding, recursion between blocks,
//! models without input or output.
//!
//! These run over every item, called or not, so a mistake in an unused block is still
//! reported. Invariant: they only read the AST; the instantiation may meet the same problems
//! again, and the error list drops such repeats.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use miette::LabeledSpan;

use grammar::ast::{Block, Call, Expr, ExprKind, File, Item, Model, Param, Stmt};
use grammar::Span;

use super::args::{bind, ParamInfo, Signature};
use super::builtins::{builtin, BUILTINS};
use super::Errors;
use crate::error::{closest, BuildError};

/// The items of a file by kind.
pub struct Items<'a> {
    /// Blocks by name (the first definition of each name).
    pub blocks: HashMap<&'a str, &'a Block>,
    /// Models in source order.
    pub models: Vec<&'a Model>,
}

impl<'a> Items<'a> {
    /// Sorts the file's items, reporting duplicate names and blocks named like built-in ops.
    pub fn collect(file: &'a File, errors: &mut Errors) -> Items<'a> {
        let mut blocks = HashMap::new();
        let mut models = Vec::new();
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for item in &file.items {
            let name = item.name();
            if let Some(&previous) = seen.get(name.name.as_str()) {
                let what = "item";
                errors.push(BuildError::DuplicateName {
                    what,
                    name: name.name.clone(),
                    span: name.span,
                    previous,
                });
                continue;
            }
            seen.insert(&name.name, name.span);
            match item {
                Item::Model(model) => models.push(model),
                Item::Block(block) if builtin(&block.name.name).is_some() => {
                    errors.push(BuildError::ReservedName {
                        name: block.name.name.clone(),
                        span: block.name.span,
                    });
                }
                Item::Block(block) => {
                    blocks.insert(block.name.name.as_str(), block);
                }
            }
        }
        Items { blocks, models }
    }

    /// The signature of block `block`.
    pub fn block_signature(block: &Block) -> Signature {
        let params = block
            .params
            .iter()
            .map(|param| ParamInfo {
                name: param.name.name.clone(),
                required: param.default.is_none(),
            })
            .collect();
        let text: Vec<String> = block.params.iter().map(Param::to_string).collect();
        Signature {
            callee: block.name.name.clone(),
            params,
            definition: Some(block.name.span),
            text: text.join(", "),
        }
    }

    /// The signature of `name`, a built-in op or a block, or `None` when it is neither.
    pub fn signature(&self, name: &str) -> Option<Signature> {
        match builtin(name) {
            Some(op) => Some(op.signature()),
            None => self
                .blocks
                .get(name)
                .map(|block| Self::block_signature(block)),
        }
    }

    /// The error for a call of an unknown `name`, with a suggestion.
    pub fn unknown_callee(&self, name: &str, span: Span) -> BuildError {
        let candidates = BUILTINS
            .iter()
            .map(|op| op.name)
            .chain(self.blocks.keys().copied());
        let help = match closest(name, candidates) {
            Some(near) => format!("did you mean `{near}`?"),
            None => {
                let ops: Vec<&str> = BUILTINS.iter().map(|op| op.name).collect();
                let mut blocks: Vec<&str> = self.blocks.keys().copied().collect();
                blocks.sort_unstable();
                let blocks = if blocks.is_empty() {
                    "none".to_string()
                } else {
                    blocks.join(", ")
                };
                format!(
                    "the ops are {}; the blocks of this file: {blocks}",
                    ops.join(", ")
                )
            }
        };
        BuildError::UnknownCallee {
            name: name.to_string(),
            span,
            help,
        }
    }
}

/// Checks every item and returns the names of the blocks that take part in a recursion.
pub fn check_items(file: &File, items: &Items<'_>, errors: &mut Errors) -> HashSet<String> {
    let mut calls: BTreeMap<String, Vec<(String, Span)>> = BTreeMap::new();
    for item in &file.items {
        let (params, body) = match item {
            Item::Model(model) => (&model.params, &model.body),
            Item::Block(block) => (&block.params, &block.body),
        };
        check_params(params, errors);
        let mut walker = Walker {
            items,
            errors: &mut *errors,
            defined: Vec::new(),
            calls: Vec::new(),
        };
        walker.defined = params.iter().map(|param| param.name.name.clone()).collect();
        walker.body(body);
        if let Item::Model(model) = item {
            check_model_statements(model, walker.errors);
        }
        if let Item::Block(block) = item {
            calls.insert(block.name.name.clone(), walker.calls);
        }
    }
    find_recursion(&calls, errors)
}

fn check_params(params: &[Param], errors: &mut Errors) {
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for param in params {
        if let Some(&previous) = seen.get(param.name.name.as_str()) {
            let name = param.name.name.clone();
            errors.push(BuildError::DuplicateName {
                what: "parameter",
                name,
                span: param.name.span,
                previous,
            });
        }
        seen.insert(&param.name.name, param.name.span);
    }
}

fn check_model_statements(model: &Model, errors: &mut Errors) {
    let mut inputs: HashMap<&str, Span> = HashMap::new();
    let mut outputs: HashMap<&str, Span> = HashMap::new();
    for stmt in &model.body {
        let (table, ident, what) = match stmt {
            Stmt::Input(input) => (&mut inputs, &input.name, "input"),
            Stmt::Output(output) => (&mut outputs, &output.target, "output"),
            _ => continue,
        };
        if let Some(&previous) = table.get(ident.name.as_str()) {
            errors.push(BuildError::DuplicateName {
                what,
                name: ident.name.clone(),
                span: ident.span,
                previous,
            });
        }
        table.insert(&ident.name, ident.span);
    }
    let model_name = model.name.name.clone();
    if inputs.is_empty() {
        errors.push(BuildError::NoInput {
            model: model_name.clone(),
            span: model.name.span,
        });
    }
    if outputs.is_empty() {
        errors.push(BuildError::NoOutput {
            model: model_name,
            span: model.name.span,
        });
    }
}

/// Walks one item's body, tracking which names are defined.
struct Walker<'i, 'a> {
    items: &'i Items<'a>,
    errors: &'i mut Errors,
    defined: Vec<String>,
    /// Block calls made by this item: callee and span.
    calls: Vec<(String, Span)>,
}

impl Walker<'_, '_> {
    fn body(&mut self, body: &[Stmt]) {
        for stmt in body {
            match stmt {
                Stmt::Input(input) => {
                    input.dims.iter().for_each(|dim| self.expr(dim));
                    self.defined.push(input.name.name.clone());
                }
                Stmt::Assign(assign) => {
                    self.expr(&assign.value);
                    self.defined.push(assign.target.name.clone());
                }
                Stmt::Output(output) => self.expr(&output.value),
                Stmt::Expr(expr) => self.expr(expr),
            }
        }
    }

    fn expr(&mut self, expr: &Expr) {
        stacker::maybe_grow(64 * 1024, 1024 * 1024, || self.expr_inner(expr));
    }

    fn expr_inner(&mut self, expr: &Expr) {
        match &expr.kind {
            ExprKind::Ident(name) => self.name(name, expr.span),
            ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Bool(_) | ExprKind::Str(_) => {}
            ExprKind::List(items) => items.iter().for_each(|item| self.expr(item)),
            ExprKind::Call(call) => self.call(call, false, false),
            ExprKind::Pipe { .. } => {
                let (source, stages) = super::expr::unpipe(expr);
                self.expr(source);
                for stage in stages {
                    self.stage(stage, true);
                }
            }
            ExprKind::Binary { lhs, rhs, .. } => {
                self.expr(lhs);
                self.expr(rhs);
            }
            ExprKind::Repeat { .. } | ExprKind::Labeled { .. } => self.stage(expr, false),
        }
    }

    /// A call, a repeat, or a labelled one of those; `piped` when a value is fed in.
    fn stage(&mut self, stage: &Expr, piped: bool) {
        match &stage.kind {
            ExprKind::Call(call) => self.call(call, piped, false),
            ExprKind::Repeat { count, call } => {
                self.expr(count);
                // Standing alone, the call's first positional argument is the value fed in.
                self.call(call, true, !piped);
            }
            ExprKind::Labeled { expr, .. } => self.stage(expr, piped),
            _ => self.expr(stage),
        }
    }

    fn call(&mut self, call: &Call, piped: bool, skip_first: bool) {
        let name = &call.callee.name;
        match self.items.signature(name) {
            Some(signature) => {
                if let Err(errors) = bind(&signature, call, piped, skip_first) {
                    errors.into_iter().for_each(|error| self.errors.push(error));
                }
                if self.items.blocks.contains_key(name.as_str()) {
                    self.calls.push((name.clone(), call.callee.span));
                }
            }
            None => self
                .errors
                .push(self.items.unknown_callee(name, call.callee.span)),
        }
        for arg in &call.args {
            self.expr(&arg.value);
        }
    }

    fn name(&mut self, name: &str, span: Span) {
        if self.defined.iter().any(|defined| defined == name) {
            return;
        }
        let help = match closest(name, self.defined.iter().map(String::as_str)) {
            Some(near) => format!("did you mean `{near}`?"),
            None if self.items.signature(name).is_some() => {
                format!("`{name}` is an op or block: call it, e.g. `{name}(x)` or `x |> {name}`")
            }
            None => "names come from parameters, inputs and earlier assignments".to_string(),
        };
        self.errors.push(BuildError::UndefinedName {
            name: name.to_string(),
            span,
            help,
        });
    }
}

/// Finds every cycle of block calls, reports each once, and returns the blocks on cycles.
fn find_recursion(
    calls: &BTreeMap<String, Vec<(String, Span)>>,
    errors: &mut Errors,
) -> HashSet<String> {
    let mut on_cycle = HashSet::new();
    let mut reported: BTreeSet<Vec<String>> = BTreeSet::new();
    for start in calls.keys() {
        // Depth-first search from `start` along call edges, keeping the current path.
        let mut path: Vec<(String, Span)> = Vec::new();
        let mut stack: Vec<(String, Span, usize)> = vec![(start.clone(), Span::default(), 0)];
        let mut finished: HashSet<String> = HashSet::new();
        while let Some((block, span, depth)) = stack.pop() {
            path.truncate(depth);
            if let Some(position) = path.iter().position(|(name, _)| *name == block) {
                let cycle = &path[position..];
                report_cycle(cycle, &block, span, &mut reported, errors);
                on_cycle.extend(cycle.iter().map(|(name, _)| name.clone()));
                continue;
            }
            if !finished.insert(block.clone()) {
                continue;
            }
            path.push((block.clone(), span));
            for (callee, call_span) in calls.get(&block).into_iter().flatten() {
                stack.push((callee.clone(), *call_span, depth + 1));
            }
        }
    }
    on_cycle
}

fn report_cycle(
    cycle: &[(String, Span)],
    closing_block: &str,
    closing_span: Span,
    reported: &mut BTreeSet<Vec<String>>,
    errors: &mut Errors,
) {
    let mut key: Vec<String> = cycle.iter().map(|(name, _)| name.clone()).collect();
    key.sort();
    if !reported.insert(key) {
        return;
    }
    let mut names: Vec<&str> = cycle.iter().map(|(name, _)| name.as_str()).collect();
    names.push(closing_block);
    let calls = cycle
        .iter()
        .enumerate()
        .skip(1)
        .map(|(index, (name, span))| {
            let text = format!("`{}` calls `{name}` here", cycle[index - 1].0);
            LabeledSpan::new_with_span(Some(text), *span)
        })
        .collect();
    errors.push(BuildError::Recursion {
        cycle: names.join(" -> "),
        span: closing_span,
        calls,
    });
}
