//! Parameter initialisation: PyTorch's default distributions, drawn from seeded, per-parameter
//! streams of the runtime's generator ([`runtime::rng::Rng`], xoshiro256** seeded through
//! splitmix64).
//!
//! Stream of a parameter: `Rng::derive(seed, &[INIT_STREAM_KEY, fnv1a64(name)])`. Each value
//! therefore depends only on the seed and the parameter's name, never on the order in which
//! parameters are visited, and a parameter that survives from phase 1 to phase 2 under the same
//! name would draw the same values.
//!
//! Per element, in row-major order:
//! - `Constant(c)`: `c`;
//! - `UniformFanIn { fan_in, gain }`: `bound·(2u − 1)`, `bound = gain/sqrt(fan_in)`, `u` =
//!   [`Rng::next_f64`] (53 bits in `[0, 1)`), which is `U[−bound, bound)`;
//! - `KaimingNormal { fan }`: `sqrt(2/fan)·z`, `z` = [`Rng::next_normal`] (Box–Muller).
//!
//! Invariant: the values are computed in f64 and are what a float32 trainer stores after
//! rounding each to f32 (`value as f32`).

use runtime::rng::Rng;

use super::State;
use crate::ir::{Graph, Init, Op};

/// The first key of every initialisation stream, so they never coincide with the runtime's
/// other streams derived from the same seed ("INIT" in ASCII).
pub const INIT_STREAM_KEY: u64 = 0x494E_4954;

/// FNV-1a, 64-bit, of `bytes`: the key that names a parameter's stream.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash = 0xCBF2_9CE4_8422_2325u64;
    for &byte in bytes {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01B3);
    }
    hash
}

/// The `count` initial values of parameter `name`.
pub fn init_values(init: &Init, name: &str, count: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::derive(seed, &[INIT_STREAM_KEY, fnv1a64(name.as_bytes())]);
    match *init {
        Init::Constant(value) => vec![f64::from(value); count],
        Init::UniformFanIn { fan_in, gain } => {
            let bound = f64::from(gain) / (fan_in.max(1) as f64).sqrt();
            (0..count)
                .map(|_| bound * (2.0 * rng.next_f64() - 1.0))
                .collect()
        }
        Init::KaimingNormal { fan } => {
            let std = (2.0 / fan.max(1) as f64).sqrt();
            (0..count)
                .map(|_| std * f64::from(rng.next_normal()))
                .collect()
        }
    }
}

/// Initial values of every `Param` node of `graph` (weights, biases, BatchNorm parameters and
/// statistics, PReLU slopes, momentum buffers), by name.
pub fn init_params(graph: &Graph, seed: u64) -> State {
    let mut state = State::new();
    for id in graph.params() {
        let node = graph.node(id);
        if let Op::Param { name, init, .. } = &node.op {
            let values = init_values(init, name, node.ty.item_elements(), seed);
            state.insert(name.clone(), values);
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_published_values() {
        assert_eq!(fnv1a64(b""), 0xCBF2_9CE4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xAF63_DC4C_8601_EC8C);
    }

    #[test]
    fn uniform_fan_in_stays_in_bounds_and_spreads() {
        let values = init_values(
            &Init::UniformFanIn {
                fan_in: 25,
                gain: 1.0,
            },
            "w",
            5000,
            1,
        );
        assert!(values.iter().all(|v| v.abs() <= 0.2));
        let max = values.iter().copied().fold(0.0, f64::max);
        assert!(max > 0.19, "{max}");
        let mean = values.iter().sum::<f64>() / 5000.0;
        assert!(mean.abs() < 0.01, "{mean}");
    }

    #[test]
    fn kaiming_normal_has_the_requested_spread() {
        let values = init_values(&Init::KaimingNormal { fan: 50 }, "w", 20_000, 2);
        let variance = values.iter().map(|v| v * v).sum::<f64>() / 20_000.0;
        assert!((variance - 2.0 / 50.0).abs() < 0.002, "{variance}");
    }

    #[test]
    fn streams_depend_on_seed_and_name_only() {
        let init = Init::UniformFanIn {
            fan_in: 4,
            gain: 1.0,
        };
        let a = init_values(&init, "conv1.weight", 8, 3);
        assert_eq!(a, init_values(&init, "conv1.weight", 8, 3));
        assert_ne!(a, init_values(&init, "conv2.weight", 8, 3));
        assert_ne!(a, init_values(&init, "conv1.weight", 8, 4));
        assert_eq!(
            init_values(&Init::Constant(0.25), "slope", 3, 9),
            vec![0.25; 3]
        );
    }
}
