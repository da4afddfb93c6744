//! Reference loss and metric: softmax cross-entropy (mean over the batch), its gradient, and
//! the count of correct arg-max predictions.
//!
//! Invariant: the softmax is computed after subtracting each row's maximum, so no exponential
//! overflows; a label outside `0..K` is an error, never an out-of-bounds read.

use super::tensor::{expect_dims, Tensor};
use super::ReferenceError;

/// The rows of `logits [N, K]` with their labels, checked.
fn rows<'a>(
    op: &'static str,
    logits: Tensor<'a>,
    labels: Tensor<'a>,
) -> Result<Vec<(&'a [f64], usize)>, ReferenceError> {
    let [n, classes] = logits.dims2(op)?;
    expect_dims(op, &[n], labels.dims)?;
    let label_of = |value: f64| {
        let label = value as i64;
        usize::try_from(label)
            .ok()
            .filter(|&label| label < classes)
            .ok_or(ReferenceError::LabelOutOfRange { label, classes })
    };
    let chunks = logits.data.chunks(classes.max(1));
    chunks
        .zip(labels.data)
        .map(|(row, &label)| Ok((row, label_of(label)?)))
        .collect()
}

/// `softmax(row)`, computed stably.
fn softmax(row: &[f64]) -> Vec<f64> {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = row.iter().map(|value| (value - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / total).collect()
}

/// `loss = (1/N)·Σₙ (log Σₖ exp(logits[n,k]) − logits[n, labels[n]])`.
pub(crate) fn softmax_cross_entropy(logits: Tensor, labels: Tensor) -> Result<f64, ReferenceError> {
    let rows = rows("softmax_cross_entropy", logits, labels)?;
    let count = rows.len().max(1) as f64;
    let total: f64 = rows
        .iter()
        .map(|(row, label)| {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let log_sum = row
                .iter()
                .map(|value| (value - max).exp())
                .sum::<f64>()
                .ln()
                + max;
            log_sum - row[*label]
        })
        .sum();
    Ok(total / count)
}

/// `dlogits[n,k] = (softmax(logits[n])[k] − [k = labels[n]]) / N`.
pub(crate) fn softmax_cross_entropy_grad(
    logits: Tensor,
    labels: Tensor,
) -> Result<Vec<f64>, ReferenceError> {
    let rows = rows("softmax_cross_entropy_grad", logits, labels)?;
    let count = rows.len() as f64;
    let mut grad = Vec::with_capacity(logits.data.len());
    for (row, label) in rows {
        let probabilities = softmax(row);
        let shifted = probabilities.into_iter().enumerate();
        grad.extend(shifted.map(|(k, p)| (p - if k == label { 1.0 } else { 0.0 }) / count));
    }
    Ok(grad)
}

/// Number of rows whose first maximum sits at the label.
pub(crate) fn correct_count(logits: Tensor, labels: Tensor) -> Result<f64, ReferenceError> {
    let rows = rows("correct_count", logits, labels)?;
    let first_max = |row: &[f64]| {
        let mut best = 0;
        for (k, value) in row.iter().enumerate() {
            if *value > row[best] {
                best = k;
            }
        }
        best
    };
    Ok(rows
        .iter()
        .filter(|(row, label)| first_max(row) == *label)
        .count() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t<'a>(dims: &'a [usize], data: &'a [f64]) -> Tensor<'a> {
        Tensor { dims, data }
    }

    #[test]
    fn cross_entropy_of_uniform_and_peaked_rows() {
        // Row 0: equal logits → −log(1/2) = ln 2. Row 1: [ln 3, 0] with label 0 → ln(4/3).
        let logits = [5.0, 5.0, 3f64.ln(), 0.0];
        let labels = [1.0, 0.0];
        let loss = softmax_cross_entropy(t(&[2, 2], &logits), t(&[2], &labels)).unwrap();
        let expected = (2f64.ln() + (4.0f64 / 3.0).ln()) / 2.0;
        assert!((loss - expected).abs() < 1e-15, "{loss} vs {expected}");
        let grad = softmax_cross_entropy_grad(t(&[2, 2], &logits), t(&[2], &labels)).unwrap();
        let expected = [0.25, -0.25, (0.75 - 1.0) / 2.0, 0.25 / 2.0];
        for (got, want) in grad.iter().zip(expected) {
            assert!((got - want).abs() < 1e-15, "{got} vs {want}");
        }
    }

    #[test]
    fn large_logits_do_not_overflow() {
        let loss = softmax_cross_entropy(t(&[1, 2], &[1000.0, 0.0]), t(&[1], &[0.0])).unwrap();
        assert!(loss.abs() < 1e-300);
    }

    #[test]
    fn correct_count_uses_the_first_maximum_and_checks_labels() {
        let logits = [1.0, 1.0, 0.0, 2.0, 3.0, 1.0];
        let count = correct_count(t(&[3, 2], &logits), t(&[3], &[0.0, 1.0, 1.0])).unwrap();
        assert_eq!(count, 2.0);
        let bad = correct_count(t(&[3, 2], &logits), t(&[3], &[0.0, 2.0, 1.0]));
        assert!(matches!(
            bad,
            Err(ReferenceError::LabelOutOfRange {
                label: 2,
                classes: 2
            })
        ));
    }
}
