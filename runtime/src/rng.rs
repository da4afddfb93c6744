//! The seeded random-number generator of the runtime: xoshiro256** seeded through splitmix64.
//!
//! Invariant: every random choice the runtime makes (weight initialisation, subset and
//! validation selection, epoch shuffles, augmentation) is drawn from an [`Rng`] whose state is
//! a plain `[u64; 4]`, so it can be saved in a checkpoint and restored to continue the exact
//! same stream. Independent streams are derived from a seed and a list of keys
//! ([`Rng::derive`]), which makes a value depend only on *what* it is for (for example "the
//! augmentation of sample 17 in epoch 3") and never on the order in which threads ran.

use serde::{Deserialize, Serialize};

/// splitmix64's increment (the golden-ratio constant).
const SPLITMIX_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// One splitmix64 step: advances `state` and returns a well-mixed 64-bit value.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(SPLITMIX_GAMMA);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What a derived stream is for: the first key given to [`Rng::derive`], so that two
/// purposes never share random numbers even with equal further keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    /// Parameter initialisation (keys: a parameter's index).
    Init = 1,
    /// Choosing the training subset (keys: the class).
    Subset = 2,
    /// Choosing the validation split (keys: the class).
    Validation = 3,
    /// The order of an epoch (keys: the epoch).
    Shuffle = 4,
    /// The augmentation of one sample (keys: the epoch, the sample's index).
    Augment = 5,
}

impl Stream {
    /// A generator for this purpose: `Rng::derive(seed, [self, keys…])`.
    pub fn rng(self, seed: u64, keys: &[u64]) -> Rng {
        let mut all = Vec::with_capacity(keys.len() + 1);
        all.push(self as u64);
        all.extend_from_slice(keys);
        Rng::derive(seed, &all)
    }
}

/// A xoshiro256** generator. Not cryptographic; fast, 256 bits of state, period 2^256 − 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    state: [u64; 4],
}

/// The full state of an [`Rng`], as saved in checkpoint manifests. Serialised as four
/// 16-digit hexadecimal strings, so that JSON readers without 64-bit integers keep every bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "[String; 4]", into = "[String; 4]")]
pub struct RngState(pub [u64; 4]);

impl From<RngState> for [String; 4] {
    fn from(state: RngState) -> Self {
        state.0.map(|word| format!("{word:016x}"))
    }
}

impl TryFrom<[String; 4]> for RngState {
    type Error = String;

    fn try_from(words: [String; 4]) -> Result<Self, Self::Error> {
        let mut state = [0u64; 4];
        for (slot, word) in state.iter_mut().zip(&words) {
            *slot = u64::from_str_radix(word, 16)
                .map_err(|_| format!("RNG state word `{word}` is not a hexadecimal u64"))?;
        }
        if state == [0; 4] {
            return Err("RNG state is all zero, which xoshiro256** cannot leave".to_string());
        }
        Ok(RngState(state))
    }
}

impl Rng {
    /// A generator seeded from one 64-bit value (the state is expanded with splitmix64, as
    /// the xoshiro authors recommend, so nearby seeds give unrelated streams).
    pub fn seed_from(seed: u64) -> Rng {
        let mut mixer = seed;
        let state = [(); 4].map(|()| splitmix64(&mut mixer));
        Rng { state }
    }

    /// An independent stream for one purpose: the seed and every key are folded in turn
    /// through splitmix64, so `derive(s, &[a, b])` and `derive(s, &[a, c])` are unrelated.
    pub fn derive(seed: u64, keys: &[u64]) -> Rng {
        let mut mixer = seed;
        let mut folded = splitmix64(&mut mixer);
        for &key in keys {
            let mut step = folded ^ key.wrapping_mul(SPLITMIX_GAMMA);
            folded = splitmix64(&mut step);
        }
        Rng::seed_from(folded)
    }

    /// A generator that continues exactly where the one that produced `state` stopped.
    pub fn from_state(state: RngState) -> Rng {
        Rng { state: state.0 }
    }

    /// The full state, to save and later pass to [`Rng::from_state`].
    pub fn state(&self) -> RngState {
        RngState(self.state)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let [s0, s1, s2, s3] = self.state;
        let result = s1.wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let shifted = s1 << 17;
        let mut next = [s0, s1, s2 ^ s0, s3 ^ s1];
        next[1] ^= next[2];
        next[0] ^= next[3];
        next[2] ^= shifted;
        next[3] = next[3].rotate_left(45);
        self.state = next;
        result
    }

    /// The next 32 random bits (the high half of [`Rng::next_u64`], the better-mixed one).
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A uniform `f32` in `[0, 1)` with 24 random bits.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// A uniform `f64` in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `0..bound`, without modulo bias (Lemire's multiply-and-reject).
    /// Returns 0 when `bound` is 0.
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(bound);
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }

    /// True with probability one half.
    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }

    /// A standard normal `f32` (Box–Muller; one of the pair is discarded so that the state
    /// alone determines the stream).
    pub fn next_normal(&mut self) -> f32 {
        // 1 - u lies in (0, 1], so the logarithm is finite.
        let radius = (-2.0 * (1.0 - self.next_f64()).ln()).sqrt();
        let angle = std::f64::consts::TAU * self.next_f64();
        (radius * angle.cos()) as f32
    }

    /// Shuffles `items` in place (Fisher–Yates, from the back).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for last in (1..items.len()).rev() {
            let other = self.below(last as u64 + 1) as usize;
            items.swap(last, other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_reference_values() {
        // Reference outputs of splitmix64 seeded with 0 (from the published C code).
        let mut state = 0u64;
        assert_eq!(splitmix64(&mut state), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(&mut state), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(splitmix64(&mut state), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn xoshiro_matches_reference_for_state_1_2_3_4() {
        // xoshiro256** from state {1, 2, 3, 4}: the first outputs of the reference code.
        let mut rng = Rng::from_state(RngState([1, 2, 3, 4]));
        let first: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
        assert_eq!(first, vec![11520, 0, 1509978240, 1215971899390074240]);
    }

    #[test]
    fn restored_state_continues_the_same_stream() {
        let mut rng = Rng::seed_from(42);
        for _ in 0..17 {
            rng.next_u64();
        }
        let saved = rng.state();
        let expected: Vec<u64> = (0..8).map(|_| rng.next_u64()).collect();
        let mut restored = Rng::from_state(saved);
        let again: Vec<u64> = (0..8).map(|_| restored.next_u64()).collect();
        assert_eq!(expected, again);
    }

    #[test]
    fn state_round_trips_through_json_as_hex() {
        let state = Rng::seed_from(7).state();
        let json = serde_json::to_string(&state).unwrap();
        assert!(json.starts_with("[\""), "{json}");
        let back: RngState = serde_json::from_str(&json).unwrap();
        assert_eq!(state, back);
        assert!(serde_json::from_str::<RngState>(r#"["0","0","0","0"]"#).is_err());
        assert!(serde_json::from_str::<RngState>(r#"["zz","0","0","1"]"#).is_err());
    }

    #[test]
    fn derived_streams_differ_by_key_and_repeat_for_equal_keys() {
        let a = Rng::derive(1, &[3, 4]).next_u64();
        assert_eq!(a, Rng::derive(1, &[3, 4]).next_u64());
        assert_ne!(a, Rng::derive(1, &[3, 5]).next_u64());
        assert_ne!(a, Rng::derive(2, &[3, 4]).next_u64());
        assert_ne!(a, Rng::derive(1, &[4, 3]).next_u64());
    }

    #[test]
    fn streams_for_different_purposes_differ() {
        let init = Stream::Init.rng(1, &[0]).next_u64();
        assert_ne!(init, Stream::Shuffle.rng(1, &[0]).next_u64());
        assert_eq!(init, Rng::derive(1, &[1, 0]).next_u64());
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = Rng::seed_from(3);
        let mut seen = [0usize; 9];
        for _ in 0..9000 {
            let value = rng.below(9) as usize;
            seen[value] += 1;
        }
        assert!(
            seen.iter().all(|&count| (800..1200).contains(&count)),
            "{seen:?}"
        );
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.below(1), 0);
    }

    #[test]
    fn floats_lie_in_unit_interval_and_normals_have_unit_spread() {
        let mut rng = Rng::seed_from(5);
        let mut sum = 0.0f64;
        let mut sum_sq = 0.0f64;
        for _ in 0..20000 {
            let uniform = rng.next_f32();
            assert!((0.0..1.0).contains(&uniform));
            let normal = f64::from(rng.next_normal());
            sum += normal;
            sum_sq += normal * normal;
        }
        let mean = sum / 20000.0;
        let variance = sum_sq / 20000.0 - mean * mean;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((variance - 1.0).abs() < 0.05, "variance {variance}");
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut items: Vec<u32> = (0..100).collect();
        Rng::seed_from(9).shuffle(&mut items);
        assert_ne!(items, (0..100).collect::<Vec<_>>());
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    }
}
