//! Matrix product with transpose flags and an optional row-broadcast bias, for dense layers
//! and their gradients.
//!
//! Invariant: deterministic. Large products run as one `gemm` call spread over the pool, which
//! splits the result into tiles and never the contracted dimension (see
//! [`super::gemm_f32_parallel`]); small ones run on the calling thread.

use super::{gemm_f32, gemm_f32_parallel, GemmOperand};

/// Products with fewer multiply-adds than this run on the calling thread.
const PARALLEL_MIN_WORK: usize = 1 << 21;

/// The geometry of one matrix product `c (m x n) = op(a) (m x k) · op(b) (k x n)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulShape {
    /// Rows of the result.
    pub m: usize,
    /// Columns of the result.
    pub n: usize,
    /// The contracted dimension.
    pub k: usize,
    /// `a` is stored as `k x m` (and used transposed).
    pub transpose_a: bool,
    /// `b` is stored as `n x k` (and used transposed).
    pub transpose_b: bool,
}

impl MatmulShape {
    /// Floating-point operations: `2·m·n·k`.
    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k) as f64
    }
}

/// `c = op(a)·op(b) + bias`, `bias` empty or `[n]`; `c` is overwritten.
pub fn matmul(shape: &MatmulShape, a: &[f32], b: &[f32], bias: &[f32], c: &mut [f32]) {
    let MatmulShape {
        m,
        n,
        k,
        transpose_a,
        transpose_b,
    } = *shape;
    if m == 0 || n == 0 {
        return;
    }
    let has_bias = !bias.is_empty();
    if has_bias {
        c.chunks_mut(n).for_each(|row| row.copy_from_slice(bias));
    }
    let lhs = if transpose_a {
        GemmOperand::transposed(a, m)
    } else {
        GemmOperand::row_major(a, k)
    };
    let rhs = if transpose_b {
        GemmOperand::transposed(b, k)
    } else {
        GemmOperand::row_major(b, n)
    };
    if m * n * k < PARALLEL_MIN_WORK {
        gemm_f32(m, n, k, c, n, has_bias, lhs, rhs);
    } else {
        gemm_f32_parallel(m, n, k, c, n, has_bias, lhs, rhs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(seed: u64, len: usize) -> Vec<f32> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// `op(a)[i][p]` of a stored matrix under the transpose flag.
    fn element(
        data: &[f32],
        transposed: bool,
        rows: usize,
        columns: usize,
        i: usize,
        p: usize,
    ) -> f64 {
        let index = if transposed {
            p * rows + i
        } else {
            i * columns + p
        };
        f64::from(data[index])
    }

    #[test]
    fn matmul_matches_float64_for_every_transpose_and_bias() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (7, 5, 3),
            (64, 10, 65),
            (130, 33, 17),
            (300, 70, 120),
        ] {
            for transpose_a in [false, true] {
                for transpose_b in [false, true] {
                    let a = values(1, m * k);
                    let b = values(2, k * n);
                    let bias = values(3, n);
                    let shape = MatmulShape {
                        m,
                        n,
                        k,
                        transpose_a,
                        transpose_b,
                    };
                    let mut c = vec![f32::NAN; m * n];
                    matmul(&shape, &a, &b, &bias, &mut c);
                    for i in 0..m {
                        for j in 0..n {
                            let mut sum = f64::from(bias[j]);
                            let mut magnitude = sum.abs();
                            for p in 0..k {
                                let term = element(&a, transpose_a, m, k, i, p)
                                    * element(&b, transpose_b, k, n, p, j);
                                sum += term;
                                magnitude += term.abs();
                            }
                            let got = f64::from(c[i * n + j]);
                            assert!(
                                (got - sum).abs() <= 1e-5 * magnitude + 1e-6,
                                "{shape:?} c[{i}][{j}] = {got}, expected {sum}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn matmul_without_bias_overwrites_and_is_reproducible() {
        let shape = MatmulShape {
            m: 200,
            n: 130,
            k: 90,
            transpose_a: true,
            transpose_b: false,
        };
        let (a, b) = (values(4, 200 * 90), values(5, 90 * 130));
        let mut first = vec![f32::NAN; 200 * 130];
        matmul(&shape, &a, &b, &[], &mut first);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("pool");
        let mut second = vec![7.0; 200 * 130];
        pool.install(|| matmul(&shape, &a, &b, &[], &mut second));
        assert!(first
            .iter()
            .zip(&second)
            .all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}
