//! The values `.coop` expressions evaluate to while the IR is built, and their arithmetic.
//!
//! Invariant: `Poison` stands for a value whose computation already reported an error; every
//! consumer passes it on silently, so one mistake gives one report, not a cascade.

use grammar::ast::BinaryOp;
use grammar::Span;

use crate::error::BuildError;
use crate::ir::NodeId;

/// Largest size (channels, kernel, stride, padding, dimension) accepted from source: 2²⁴.
pub const MAX_SIZE: i64 = 1 << 24;

/// A value during building.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A tensor: the node computing it.
    Tensor(NodeId),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(String),
    /// A list of values.
    List(Vec<Value>),
    /// The result of something that failed and was reported already.
    Poison,
}

impl Value {
    /// What kind of value it is, in words, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Tensor(_) => "a tensor",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
            Value::Poison => "an erroneous value",
        }
    }

    /// True for the value of a failed computation.
    pub fn is_poison(&self) -> bool {
        match self {
            Value::Poison => true,
            Value::List(items) => items.iter().any(Value::is_poison),
            _ => false,
        }
    }
}

/// Why a conversion gave no value: an error to report, or poison already reported.
pub enum Refusal {
    /// A new error.
    Error(BuildError),
    /// The value was poison; nothing more to say.
    Poisoned,
}

impl From<BuildError> for Refusal {
    fn from(error: BuildError) -> Self {
        Refusal::Error(error)
    }
}

/// The result of a conversion.
pub type Converted<T> = Result<T, Refusal>;

fn wrong_kind(what: &str, expected: &'static str, value: &Value, span: Span) -> Refusal {
    if value.is_poison() {
        return Refusal::Poisoned;
    }
    Refusal::Error(BuildError::WrongKind {
        what: what.to_string(),
        expected,
        found: value.kind(),
        span,
    })
}

/// The tensor in `value`.
pub fn tensor(value: &Value, what: &str, span: Span) -> Converted<NodeId> {
    match value {
        Value::Tensor(id) => Ok(*id),
        _ => Err(wrong_kind(what, "a tensor", value, span)),
    }
}

/// The integer in `value`.
pub fn integer(value: &Value, what: &str, span: Span) -> Converted<i64> {
    match value {
        Value::Int(number) => Ok(*number),
        _ => Err(wrong_kind(what, "an integer", value, span)),
    }
}

/// A size: an integer in `1..=MAX_SIZE` (or `0..=MAX_SIZE` when `allow_zero`).
pub fn size(value: &Value, what: &str, span: Span, allow_zero: bool) -> Converted<usize> {
    let number = integer(value, what, span)?;
    let lowest = i64::from(!allow_zero);
    if number < lowest {
        let bound = if allow_zero {
            "zero or more"
        } else {
            "positive"
        };
        return Err(BuildError::BadSize {
            what: what.to_string(),
            bound,
            value: number,
            span,
        }
        .into());
    }
    if number > MAX_SIZE {
        let expected = format!("at most {MAX_SIZE}");
        let error = BuildError::OutOfRange {
            what: what.to_string(),
            expected,
            value: number.to_string(),
            span,
        };
        return Err(error.into());
    }
    // In range 0..=2²⁴, so the conversion is exact on every platform.
    Ok(number as usize)
}

/// A (height, width) pair: one size for both, or a list of two.
pub fn pair(value: &Value, what: &str, span: Span, allow_zero: bool) -> Converted<[usize; 2]> {
    match value {
        Value::List(items) if items.len() == 2 => Ok([
            size(&items[0], what, span, allow_zero)?,
            size(&items[1], what, span, allow_zero)?,
        ]),
        Value::List(_) => Err(wrong_kind(
            what,
            "a size or a list of two sizes",
            value,
            span,
        )),
        _ => {
            let single = size(value, what, span, allow_zero)?;
            Ok([single, single])
        }
    }
}

/// A number (integer or float) as `f64`.
pub fn number(value: &Value, what: &str, span: Span) -> Converted<f64> {
    match value {
        Value::Int(number) => Ok(*number as f64),
        Value::Float(number) => Ok(*number),
        _ => Err(wrong_kind(what, "a number", value, span)),
    }
}

/// The boolean in `value`.
pub fn boolean(value: &Value, what: &str, span: Span) -> Converted<bool> {
    match value {
        Value::Bool(flag) => Ok(*flag),
        _ => Err(wrong_kind(what, "`true` or `false`", value, span)),
    }
}

/// The string in `value`.
pub fn string<'v>(value: &'v Value, what: &str, span: Span) -> Converted<&'v str> {
    match value {
        Value::Str(text) => Ok(text),
        _ => Err(wrong_kind(what, "a string", value, span)),
    }
}

/// Arithmetic on two numbers: checked on integers (`/` rounds toward zero), plain on floats.
pub fn arithmetic(op: BinaryOp, lhs: &Value, rhs: &Value, span: Span) -> Converted<Value> {
    let what = format!("an operand of `{}`", op.symbol());
    match (lhs, rhs) {
        (Value::Int(left), Value::Int(right)) => integer_arithmetic(op, *left, *right, span),
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            let (left, right) = (number(lhs, &what, span)?, number(rhs, &what, span)?);
            let result = match op {
                BinaryOp::Add => left + right,
                BinaryOp::Sub => left - right,
                BinaryOp::Mul => left * right,
                BinaryOp::Div => left / right,
            };
            if result.is_finite() {
                Ok(Value::Float(result))
            } else {
                Err(BuildError::Arithmetic {
                    problem: "a result that is not finite",
                    span,
                }
                .into())
            }
        }
        (Value::Int(_) | Value::Float(_), other) | (other, _) => {
            Err(wrong_kind(&what, "a number", other, span))
        }
    }
}

fn integer_arithmetic(op: BinaryOp, left: i64, right: i64, span: Span) -> Converted<Value> {
    if op == BinaryOp::Div && right == 0 {
        return Err(BuildError::Arithmetic {
            problem: "division by zero",
            span,
        }
        .into());
    }
    let result = match op {
        BinaryOp::Add => left.checked_add(right),
        BinaryOp::Sub => left.checked_sub(right),
        BinaryOp::Mul => left.checked_mul(right),
        BinaryOp::Div => left.checked_div(right),
    };
    result
        .map(Value::Int)
        .ok_or(Refusal::Error(BuildError::Arithmetic {
            problem: "overflow",
            span,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of<T: std::fmt::Debug>(result: Converted<T>) -> BuildError {
        match result {
            Err(Refusal::Error(error)) => error,
            Err(Refusal::Poisoned) => panic!("poisoned"),
            Ok(value) => panic!("converted to {value:?}"),
        }
    }

    #[test]
    fn sizes_must_be_positive_and_bounded() {
        let span = Span::new(0, 1);
        assert_eq!(size(&Value::Int(3), "k", span, false).ok(), Some(3));
        assert!(matches!(
            error_of(size(&Value::Int(0), "k", span, false)),
            BuildError::BadSize { value: 0, .. }
        ));
        assert!(matches!(
            error_of(size(&Value::Int(-2), "k", span, true)),
            BuildError::BadSize { value: -2, .. }
        ));
        assert_eq!(size(&Value::Int(0), "k", span, true).ok(), Some(0));
        assert!(matches!(
            error_of(size(&Value::Int(1 << 40), "k", span, false)),
            BuildError::OutOfRange { .. }
        ));
        let list = Value::List(vec![Value::Int(3), Value::Int(5)]);
        assert_eq!(pair(&list, "k", span, false).ok(), Some([3, 5]));
    }

    #[test]
    fn integer_arithmetic_is_checked() {
        let span = Span::new(0, 1);
        let value = arithmetic(BinaryOp::Div, &Value::Int(-7), &Value::Int(2), span);
        assert_eq!(value.ok(), Some(Value::Int(-3)));
        let error = error_of(arithmetic(
            BinaryOp::Div,
            &Value::Int(1),
            &Value::Int(0),
            span,
        ));
        assert!(matches!(
            error,
            BuildError::Arithmetic {
                problem: "division by zero",
                ..
            }
        ));
        let error = error_of(arithmetic(
            BinaryOp::Mul,
            &Value::Int(i64::MAX),
            &Value::Int(2),
            span,
        ));
        assert!(matches!(
            error,
            BuildError::Arithmetic {
                problem: "overflow",
                ..
            }
        ));
        let mixed = arithmetic(BinaryOp::Mul, &Value::Int(2), &Value::Float(0.5), span);
        assert_eq!(mixed.ok(), Some(Value::Float(1.0)));
    }

    #[test]
    fn poison_is_refused_silently() {
        let span = Span::new(0, 1);
        assert!(matches!(
            integer(&Value::Poison, "k", span),
            Err(Refusal::Poisoned)
        ));
        let error = error_of(integer(&Value::Str("a".into()), "k", span));
        assert_eq!(error.to_string(), "k must be an integer, found a string");
    }
}
