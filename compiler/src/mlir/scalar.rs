//! Scalar bodies of the element-wise ops: activations and their derivatives, written as `arith`
//! and `math` ops on `f32` values inside a `linalg.generic` region.
//!
//! Each formula is PyTorch's (CPU kernels), including which side of a comparison NaN falls on
//! and where softplus turns linear, so results compare with PyTorch baselines. Exponentials and
//! logarithms are the vectorisable [`approx`] forms.

use crate::ir::Activation;

use super::approx;
use super::writer::FunctionWriter;

/// `a <op> b` for an `arith` binary float op.
pub fn binary(writer: &mut FunctionWriter, op: &str, lhs: &str, rhs: &str) -> String {
    writer.assign("v", &format!("arith.{op} {lhs}, {rhs} : f32"))
}

/// `arith.cmpf <predicate>, a, b`.
pub fn compare(writer: &mut FunctionWriter, predicate: &str, lhs: &str, rhs: &str) -> String {
    writer.assign("p", &format!("arith.cmpf {predicate}, {lhs}, {rhs} : f32"))
}

/// `condition ? a : b`.
pub fn select(writer: &mut FunctionWriter, condition: &str, lhs: &str, rhs: &str) -> String {
    writer.assign(
        "v",
        &format!("arith.select {condition}, {lhs}, {rhs} : f32"),
    )
}

/// A unary `math` op.
pub fn math(writer: &mut FunctionWriter, op: &str, operand: &str) -> String {
    writer.assign("v", &format!("math.{op} {operand} : f32"))
}

/// `F(x)`; `slope` is the PReLU slope (ignored by the others).
pub fn activation(
    writer: &mut FunctionWriter,
    activation: &Activation,
    x: &str,
    slope: Option<&str>,
) -> String {
    let zero = writer.f32(0.0);
    match activation {
        // max(x, 0), NaN propagating.
        Activation::Relu => binary(writer, "maximumf", x, &zero),
        // x > 0 ? x : a·x
        Activation::Prelu => {
            let slope = slope.map_or_else(|| zero.clone(), str::to_string);
            let scaled = binary(writer, "mulf", &slope, x);
            let positive = compare(writer, "ogt", x, &zero);
            select(writer, &positive, x, &scaled)
        }
        // x > 0 ? x : slope·x
        Activation::LeakyRelu { slope } => {
            let slope = writer.f32(*slope);
            let scaled = binary(writer, "mulf", x, &slope);
            let positive = compare(writer, "ogt", x, &zero);
            select(writer, &positive, x, &scaled)
        }
        // x > 0 ? x : α·expm1(x)
        Activation::Elu { alpha } => {
            let alpha = writer.f32(*alpha);
            let expm1 = approx::expm1(writer, x);
            let negative = binary(writer, "mulf", &expm1, &alpha);
            let positive = compare(writer, "ogt", x, &zero);
            select(writer, &positive, x, &negative)
        }
        // βx > threshold ? x : log1p(exp(βx))/β
        Activation::Softplus { beta, threshold } => {
            let beta = writer.f32(*beta);
            let threshold = writer.f32(*threshold);
            let scaled = binary(writer, "mulf", x, &beta);
            let exp = approx::exp(writer, &scaled);
            let log = approx::log1p(writer, &exp);
            let soft = binary(writer, "divf", &log, &beta);
            let linear = compare(writer, "ogt", &scaled, &threshold);
            select(writer, &linear, x, &soft)
        }
        Activation::Identity => x.to_string(),
    }
}

/// `dy·F'(x)`; `slope` is the PReLU slope (ignored by the others).
pub fn activation_grad(
    writer: &mut FunctionWriter,
    activation: &Activation,
    dy: &str,
    x: &str,
    slope: Option<&str>,
) -> String {
    let zero = writer.f32(0.0);
    match activation {
        // x <= 0 ? 0 : dy (PyTorch's threshold_backward; the derivative at 0 is 0).
        Activation::Relu => {
            let not_positive = compare(writer, "ole", x, &zero);
            select(writer, &not_positive, &zero, dy)
        }
        // x > 0 ? dy : a·dy
        Activation::Prelu => {
            let slope = slope.map_or_else(|| zero.clone(), str::to_string);
            let scaled = binary(writer, "mulf", &slope, dy);
            let positive = compare(writer, "ogt", x, &zero);
            select(writer, &positive, dy, &scaled)
        }
        // x > 0 ? dy : dy·slope
        Activation::LeakyRelu { slope } => {
            let slope = writer.f32(*slope);
            let scaled = binary(writer, "mulf", dy, &slope);
            let positive = compare(writer, "ogt", x, &zero);
            select(writer, &positive, dy, &scaled)
        }
        // x <= 0 ? dy·α·exp(x) : dy
        Activation::Elu { alpha } => {
            let alpha = writer.f32(*alpha);
            let exp = approx::exp(writer, x);
            let scaled = binary(writer, "mulf", dy, &alpha);
            let negative = binary(writer, "mulf", &scaled, &exp);
            let not_positive = compare(writer, "ole", x, &zero);
            select(writer, &not_positive, &negative, dy)
        }
        // z = exp(βx); βx > threshold ? dy : dy·z/(z + 1)
        Activation::Softplus { beta, threshold } => {
            let beta = writer.f32(*beta);
            let threshold = writer.f32(*threshold);
            let one = writer.f32(1.0);
            let scaled = binary(writer, "mulf", x, &beta);
            let z = approx::exp(writer, &scaled);
            let numerator = binary(writer, "mulf", dy, &z);
            let denominator = binary(writer, "addf", &z, &one);
            let soft = binary(writer, "divf", &numerator, &denominator);
            let linear = compare(writer, "ogt", &scaled, &threshold);
            select(writer, &linear, dy, &soft)
        }
        Activation::Identity => dy.to_string(),
    }
}

/// `x ≤ 0 ? dy·x : 0`: one term of a PReLU slope's gradient.
pub fn prelu_slope_term(writer: &mut FunctionWriter, dy: &str, x: &str) -> String {
    let zero = writer.f32(0.0);
    let product = binary(writer, "mulf", dy, x);
    let positive = compare(writer, "ogt", x, &zero);
    select(writer, &positive, &zero, &product)
}
