//! `exp`, `expm1` and `log1p` of `f32` as plain `arith` code (range reduction and a
//! polynomial), so that element-wise loops holding them vectorise on every target. A call of
//! `math.exp` reaches the CPU as one scalar libm call per element, which made a mix of
//! activations cost ten times a ReLU; these run in a few vector instructions per element.
//!
//! Accuracy (checked against f64 in the tests): about 2 ulp over the whole `f32` range;
//! results below the smallest normal are formed by two exact power-of-two scalings, so they
//! round like any other product; infinities and NaN come out as libm gives them.
//!
//! Invariant: every operation is total on every input (no NaN is converted to an integer), so
//! lanes whose result is later discarded by a `select` never hold poison.

use super::scalar::{binary, compare, select};
use super::writer::FunctionWriter;

/// ln 2 split so that `n·LN2_HIGH` is exact for `|n| ≤ 255` (0.693145751953125, 16 bits).
const LN2_HIGH: f32 = f32::from_bits(0x3F31_7200);
/// The rest of ln 2, rounded to f32 (about 1.4286068e-6).
const LN2_LOW: f32 = f32::from_bits(0x35BF_BE8E);

/// `Σ cᵢ·xⁱ` by Horner's rule, coefficients from the highest power down.
fn horner(writer: &mut FunctionWriter, x: &str, coefficients: &[f64]) -> String {
    let mut value = writer.f32(coefficients[0] as f32);
    for &coefficient in &coefficients[1..] {
        let scaled = binary(writer, "mulf", &value, x);
        let constant = writer.f32(coefficient as f32);
        value = binary(writer, "addf", &scaled, &constant);
    }
    value
}

/// `2^n` for an `i32` exponent `n` in `[-126, 127]`.
fn power_of_two(writer: &mut FunctionWriter, exponent: &str) -> String {
    let bias = writer.i32(127);
    let shift = writer.i32(23);
    let biased = writer.assign("k", &format!("arith.addi {exponent}, {bias} : i32"));
    let bits = writer.assign("k", &format!("arith.shli {biased}, {shift} : i32"));
    writer.assign("v", &format!("arith.bitcast {bits} : i32 to f32"))
}

/// `eˣ`.
// eˣ = 2ⁿ·eʳ with n = round(x/ln 2), r = x − n·ln 2 (|r| ≤ ln 2/2), eʳ by its Taylor series
// to r⁷; 2ⁿ applied as 2^(n/2)·2^(n−n/2) so that overflow and gradual underflow round once.
pub fn exp(writer: &mut FunctionWriter, x: &str) -> String {
    let low = writer.f32(-104.0);
    let high = writer.f32(89.0);
    let raised = binary(writer, "maxnumf", x, &low);
    let clamped = binary(writer, "minnumf", &raised, &high);
    let log2e = writer.f32(std::f32::consts::LOG2_E);
    let half = writer.f32(0.5);
    let scaled = binary(writer, "mulf", &clamped, &log2e);
    let shifted = binary(writer, "addf", &scaled, &half);
    let rounded = writer.assign("v", &format!("math.floor {shifted} : f32"));
    let ln2_high = writer.f32(LN2_HIGH);
    let ln2_low = writer.f32(LN2_LOW);
    let high_part = binary(writer, "mulf", &rounded, &ln2_high);
    let low_part = binary(writer, "mulf", &rounded, &ln2_low);
    let reduced = binary(writer, "subf", &clamped, &high_part);
    let reduced = binary(writer, "subf", &reduced, &low_part);
    let taylor: Vec<f64> = (0..=7).rev().map(|power| 1.0 / factorial(power)).collect();
    let polynomial = horner(writer, &reduced, &taylor);
    let exponent = writer.assign("k", &format!("arith.fptosi {rounded} : f32 to i32"));
    let one = writer.i32(1);
    let first = writer.assign("k", &format!("arith.shrsi {exponent}, {one} : i32"));
    let second = writer.assign("k", &format!("arith.subi {exponent}, {first} : i32"));
    let first_scale = power_of_two(writer, &first);
    let second_scale = power_of_two(writer, &second);
    let partial = binary(writer, "mulf", &polynomial, &first_scale);
    let value = binary(writer, "mulf", &partial, &second_scale);
    let is_nan = compare(writer, "uno", x, x);
    select(writer, &is_nan, x, &value)
}

/// `eˣ − 1`, accurate near 0.
// |x| < 1/2: the Taylor series x + x²/2! + … + x⁹/9!; elsewhere eˣ − 1 (no cancellation).
pub fn expm1(writer: &mut FunctionWriter, x: &str) -> String {
    let taylor: Vec<f64> = (1..=9).rev().map(|power| 1.0 / factorial(power)).collect();
    let series = horner(writer, x, &taylor);
    let near_zero = binary(writer, "mulf", &series, x);
    let exp = exp(writer, x);
    let one = writer.f32(1.0);
    let far = binary(writer, "subf", &exp, &one);
    let magnitude = writer.assign("v", &format!("math.absf {x} : f32"));
    let half = writer.f32(0.5);
    let is_small = compare(writer, "olt", &magnitude, &half);
    select(writer, &is_small, &near_zero, &far)
}

/// `ln(1 + x)`, accurate near 0.
// u = 1 + x = 2ᵉ·m with m ∈ [√½, √2); ln m = 2·atanh(s), s = (m − 1)/(m + 1), by its series
// to s¹¹; then ln(1 + x) = ln u · x/(u − 1), which cancels the rounding of u (x when u = 1).
pub fn log1p(writer: &mut FunctionWriter, x: &str) -> String {
    let one = writer.f32(1.0);
    let u = binary(writer, "addf", &one, x);
    let bits = writer.assign("k", &format!("arith.bitcast {u} : f32 to i32"));
    let offset = writer.i32(0x3f80_0000 - 0x3f35_04f3);
    let shifted = writer.assign("k", &format!("arith.addi {bits}, {offset} : i32"));
    let twenty_three = writer.i32(23);
    let biased = writer.assign("k", &format!("arith.shrsi {shifted}, {twenty_three} : i32"));
    let bias = writer.i32(127);
    let exponent = writer.assign("k", &format!("arith.subi {biased}, {bias} : i32"));
    let mask = writer.i32(0x007f_ffff);
    let fraction = writer.assign("k", &format!("arith.andi {shifted}, {mask} : i32"));
    let base = writer.i32(0x3f35_04f3);
    let mantissa_bits = writer.assign("k", &format!("arith.addi {fraction}, {base} : i32"));
    let mantissa = writer.assign("v", &format!("arith.bitcast {mantissa_bits} : i32 to f32"));
    let f = binary(writer, "subf", &mantissa, &one);
    let two = writer.f32(2.0);
    let denominator = binary(writer, "addf", &f, &two);
    let s = binary(writer, "divf", &f, &denominator);
    let s2 = binary(writer, "mulf", &s, &s);
    let series: Vec<f64> = [11.0, 9.0, 7.0, 5.0, 3.0, 1.0]
        .iter()
        .map(|odd| 2.0 / odd)
        .collect();
    let odd_part = horner(writer, &s2, &series);
    let log_mantissa = binary(writer, "mulf", &odd_part, &s);
    let e = writer.assign("v", &format!("arith.sitofp {exponent} : i32 to f32"));
    let ln2_high = writer.f32(LN2_HIGH);
    let ln2_low = writer.f32(LN2_LOW);
    let low_term = binary(writer, "mulf", &e, &ln2_low);
    let high_term = binary(writer, "mulf", &e, &ln2_high);
    let sum = binary(writer, "addf", &log_mantissa, &low_term);
    let log_u = binary(writer, "addf", &high_term, &sum);
    let rounding = binary(writer, "subf", &u, &one);
    let ratio = binary(writer, "divf", x, &rounding);
    let corrected = binary(writer, "mulf", &log_u, &ratio);
    special_cases(writer, x, &u, &corrected)
}

/// `log1p`'s edge cases: `x` itself when `1 + x` rounds to 1 (and for +∞ and NaN), −∞ at −1,
/// NaN below −1.
fn special_cases(writer: &mut FunctionWriter, x: &str, u: &str, value: &str) -> String {
    let one = writer.f32(1.0);
    let zero = writer.f32(0.0);
    let infinity = writer.f32(f32::INFINITY);
    let minus_infinity = writer.f32(f32::NEG_INFINITY);
    let nan = writer.f32(f32::NAN);
    let is_one = compare(writer, "oeq", u, &one);
    let is_infinite = compare(writer, "oeq", u, &infinity);
    let keep_x = writer.assign("p", &format!("arith.ori {is_one}, {is_infinite} : i1"));
    let is_nan = compare(writer, "uno", x, x);
    let keep_x = writer.assign("p", &format!("arith.ori {keep_x}, {is_nan} : i1"));
    let value = select(writer, &keep_x, x, value);
    let is_zero = compare(writer, "oeq", u, &zero);
    let value = select(writer, &is_zero, &minus_infinity, &value);
    let is_negative = compare(writer, "olt", u, &zero);
    select(writer, &is_negative, &nan, &value)
}

fn factorial(n: u32) -> f64 {
    (1..=n).map(f64::from).product()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::ir::{Activation, Op};
    use crate::mlir::kernel_tests::{run_cpu, run_reference, Data, Net};
    use crate::reference::Mode;
    use crate::schedule::GraphMode;

    /// Inputs over the whole range, with the special values and both sides of every branch.
    fn inputs() -> Vec<f32> {
        let mut values: Vec<f32> = (0..=4000)
            .map(|i| -110.0 + 205.0 * i as f32 / 4000.0)
            .collect();
        values.extend((0..=400).map(|i| -0.75 + 1.5 * i as f32 / 400.0));
        values.extend([
            0.0, -0.0, 1e-30, -1e-30, 1e-8, -1e-8, 0.5, -0.5, 20.0, 20.000002,
        ]);
        values.extend([
            88.7,
            88.8,
            -87.0,
            -103.0,
            -150.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ]);
        values.push(f32::NAN);
        values
    }

    /// `|found − expected| ≤ 4 ulp(expected)`, or both the same non-finite value, or both
    /// below 2⁻¹²⁶ (the normal range's end) within 2⁻¹⁴⁹.
    fn assert_ulps(what: &str, input: &[f32], found: &[f64], expected: &[f64]) {
        for ((x, f), e) in input.iter().zip(found).zip(expected) {
            let e32 = *e as f32;
            let ok = if e32.is_nan() {
                f.is_nan()
            } else if e32.is_infinite() {
                *f == f64::from(e32)
            } else {
                let ulp = f64::from(e32.abs()) * f64::from(f32::EPSILON);
                (f - e).abs() <= 4.0 * ulp + 1.5e-45
            };
            assert!(ok, "{what}({x}): found {f}, expected {e}");
        }
    }

    #[test]
    fn exponentials_and_logarithms_are_within_four_ulp_everywhere() {
        let values = inputs();
        let count = values.len();
        let kinds = [
            ("elu", Activation::Elu { alpha: 1.0 }),
            (
                "softplus",
                Activation::Softplus {
                    beta: 1.0,
                    threshold: 20.0,
                },
            ),
        ];
        for (name, kind) in kinds {
            let mut net = Net::new();
            let x = net.input("x", &[count]);
            let dy = net.input("dy", &[count]);
            let y = net.same(Op::Activation(kind.clone()), &[x]);
            let dx = net.same(Op::ActivationGrad(kind), &[dy, x]);
            net.output("y", y);
            net.output("dx", dx);
            let mut feeds = BTreeMap::new();
            feeds.insert("x".to_string(), values.clone());
            feeds.insert("dy".to_string(), vec![1.0; count]);
            let inputs = values.clone();
            let data = Data {
                inputs: feeds,
                labels: Vec::new(),
                scalars: BTreeMap::new(),
                state: BTreeMap::new(),
                seed: 0,
            };
            let expected = run_reference(&net.graph, Mode::Train, 1, &data);
            let found = run_cpu(&net.graph, GraphMode::Train, 1, 1, &data);
            let what = format!("{name} y");
            assert_ulps(&what, &values, &found.outputs["y"], &expected.outputs["y"]);
            // At x = NaN the kernels follow PyTorch (`x <= 0` is false, so ELU's gradient is
            // dy) and the reference gives NaN; compare the gradient on the numbers only.
            let numbers = |values: &[f64]| -> Vec<f64> {
                values
                    .iter()
                    .zip(&inputs)
                    .filter(|(_, x)| !x.is_nan())
                    .map(|(v, _)| *v)
                    .collect()
            };
            let inputs_without_nan: Vec<f32> =
                values.iter().copied().filter(|x| !x.is_nan()).collect();
            let found_dx = numbers(&found.outputs["dx"]);
            let expected_dx = numbers(&expected.outputs["dx"]);
            assert_ulps(
                &format!("{name} dx"),
                &inputs_without_nan,
                &found_dx,
                &expected_dx,
            );
        }
    }
}
