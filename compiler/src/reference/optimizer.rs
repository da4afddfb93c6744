//! Reference SGD step, PyTorch's form (`torch.optim.SGD` with momentum, dampening 0).
//!
//! Invariant: the update reads the parameter, gradient and buffer of the step's start and
//! returns the new parameter and buffer; the interpreter writes both back into the state.

use super::tensor::{expect_dims, Tensor};
use super::ReferenceError;

/// The constants of one SGD step, widened from the IR's f32.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sgd {
    /// Learning rate (fed per step).
    pub lr: f64,
    /// Momentum μ.
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
}

/// `d = g + wd·p; buf = μ·buf + d; p −= lr·(nesterov ? d + μ·buf : buf)`; returns
/// `(p, buf)`.
pub(crate) fn sgd_update(
    param: Tensor,
    grad: Tensor,
    buffer: Tensor,
    sgd: Sgd,
) -> Result<(Vec<f64>, Vec<f64>), ReferenceError> {
    expect_dims("sgd_update", param.dims, grad.dims)?;
    expect_dims("sgd_update", param.dims, buffer.dims)?;
    let mut new_param = Vec::with_capacity(param.data.len());
    let mut new_buffer = Vec::with_capacity(param.data.len());
    for ((&p, &g), &b) in param.data.iter().zip(grad.data).zip(buffer.data) {
        let d = g + sgd.weight_decay * p;
        let b = sgd.momentum * b + d;
        let step = if sgd.nesterov {
            d + sgd.momentum * b
        } else {
            b
        };
        new_param.push(p - sgd.lr * step);
        new_buffer.push(b);
    }
    Ok((new_param, new_buffer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_step_matches_hand_computed_values() {
        // p = 1, g = 0.5, buf = 2, wd = 0.1, μ = 0.5, lr = 0.1:
        // d = 0.6, buf = 1.6, plain p = 1 − 0.16 = 0.84, Nesterov p = 1 − 0.1·(0.6 + 0.8) = 0.86.
        let (dims, p, g, b) = ([1usize], [1.0], [0.5], [2.0]);
        let sgd = Sgd {
            lr: 0.1,
            momentum: 0.5,
            weight_decay: 0.1,
            nesterov: false,
        };
        let view = |data| Tensor { dims: &dims, data };
        let (param, buffer) = sgd_update(view(&p), view(&g), view(&b), sgd).unwrap();
        assert!((param[0] - 0.84).abs() < 1e-15 && (buffer[0] - 1.6).abs() < 1e-15);
        let nesterov = Sgd {
            nesterov: true,
            ..sgd
        };
        let (param, _) = sgd_update(view(&p), view(&g), view(&b), nesterov).unwrap();
        assert!((param[0] - 0.86).abs() < 1e-15);
    }
}
