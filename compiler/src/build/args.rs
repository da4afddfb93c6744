//! Binding a call's arguments to the callee's parameters, for blocks and built-in ops alike.
//!
//! The piped value (`x |> f(a)`) is the first positional argument; the rest bind by position,
//! then by name. Binding depends only on the call's syntax and the callee's signature, so the
//! static check and the instantiation run the same function and report the same errors.

use grammar::ast::{Call, Expr};
use grammar::Span;

use crate::error::{closest, BuildError};

/// One parameter of a callee.
#[derive(Clone, Debug)]
pub struct ParamInfo {
    /// Its name.
    pub name: String,
    /// True when the call must give it (no default).
    pub required: bool,
}

/// What a callee accepts.
#[derive(Clone, Debug)]
pub struct Signature {
    /// The op or block name.
    pub callee: String,
    /// Its parameters in order.
    pub params: Vec<ParamInfo>,
    /// The block's definition (none for built-in ops).
    pub definition: Option<Span>,
    /// The parameter list as the user would write it, for help texts.
    pub text: String,
}

/// Where a bound argument comes from.
#[derive(Clone, Copy, Debug)]
pub enum Source<'e> {
    /// The value fed by a pipe or a repeat.
    Piped,
    /// An argument expression of the call.
    Expr(&'e Expr),
}

/// One argument per parameter, `None` where the call leaves it to the default, each with the
/// span to blame for it.
pub type Bound<'e> = Vec<Option<(Source<'e>, Span)>>;

/// Binds `call`'s arguments to `signature`. With `piped`, a value fed in takes the first
/// position; with `skip_first`, the call's first positional argument is not bound (a
/// standalone `repeat` feeds it separately).
///
/// # Errors
/// Every problem found: too many positional arguments, unknown or repeated names, missing
/// required parameters.
pub fn bind<'e>(
    signature: &Signature,
    call: &'e Call,
    piped: bool,
    skip_first: bool,
) -> Result<Bound<'e>, Vec<BuildError>> {
    let mut bound: Bound<'e> = vec![None; signature.params.len()];
    let mut errors = Vec::new();
    let mut positional: Vec<(Source<'e>, Span)> = Vec::new();
    if piped {
        positional.push((Source::Piped, call.span));
    }
    let mut skipped = !skip_first;
    for arg in call.args.iter().filter(|arg| arg.name.is_none()) {
        if !skipped {
            skipped = true;
            continue;
        }
        positional.push((Source::Expr(&arg.value), arg.value.span));
    }
    if positional.len() > signature.params.len() {
        errors.push(count_error(signature, positional.len(), call.span));
    }
    for (slot, source) in positional
        .into_iter()
        .enumerate()
        .take(signature.params.len())
    {
        bound[slot] = Some(source);
    }
    bind_named(signature, call, &mut bound, &mut errors);
    for (slot, param) in signature.params.iter().enumerate() {
        if param.required && bound[slot].is_none() && errors.is_empty() {
            errors.push(BuildError::MissingArgument {
                callee: signature.callee.clone(),
                name: param.name.clone(),
                span: call.span,
                help: format!("`{}` takes ({})", signature.callee, signature.text),
            });
        }
    }
    if errors.is_empty() {
        Ok(bound)
    } else {
        Err(errors)
    }
}

fn bind_named<'e>(
    signature: &Signature,
    call: &'e Call,
    bound: &mut Bound<'e>,
    errors: &mut Vec<BuildError>,
) {
    for arg in &call.args {
        let Some(name) = &arg.name else { continue };
        let Some(slot) = signature
            .params
            .iter()
            .position(|param| param.name == name.name)
        else {
            let names = signature.params.iter().map(|param| param.name.as_str());
            let help = match closest(&name.name, names) {
                Some(near) => format!(
                    "did you mean `{near}`? `{}` takes ({})",
                    signature.callee, signature.text
                ),
                None => format!("`{}` takes ({})", signature.callee, signature.text),
            };
            errors.push(BuildError::UnknownNamedArgument {
                callee: signature.callee.clone(),
                name: name.name.clone(),
                span: name.span,
                help,
            });
            continue;
        };
        if let Some((_, previous)) = bound[slot] {
            errors.push(BuildError::ArgumentGivenTwice {
                callee: signature.callee.clone(),
                name: name.name.clone(),
                span: arg.span,
                previous,
            });
            continue;
        }
        bound[slot] = Some((Source::Expr(&arg.value), arg.span));
    }
}

fn count_error(signature: &Signature, found: usize, span: Span) -> BuildError {
    let total = signature.params.len();
    let required = signature
        .params
        .iter()
        .filter(|param| param.required)
        .count();
    let expected = if required == total {
        format!("{total}")
    } else {
        format!("{required} to {total}")
    };
    BuildError::ArgumentCount {
        callee: signature.callee.clone(),
        expected,
        found,
        span,
        definition: signature.definition,
        help: format!(
            "`{}` takes ({}); a piped value counts as the first",
            signature.callee, signature.text
        ),
    }
}
