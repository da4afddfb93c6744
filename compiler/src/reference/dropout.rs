//! The dropout mask: a pure, counter-based function that every kernel (this reference, the
//! CPU and GPU kernels) computes identically, so the forward dropout and its gradient draw the
//! same mask without storing it.
//!
//! Definition. Let `mix64` be splitmix64's finaliser and `G = 0x9E3779B97F4A7C15`:
//!
//! ```text
//! mix64(z) = z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB;
//!            z ^ (z >> 31)                                   (wrapping u64 arithmetic)
//! site_key = mix64(seed + (site + 1)·G)
//! bits     = mix64(site_key + (index + 1)·G) >> 40           (24 uniform bits)
//! keep     = bits ≥ p·2²⁴                                    (compared exactly)
//! ```
//!
//! `site_key` is the `site`-th output of a splitmix64 stream started at `seed`, and `bits` the
//! top 24 bits of the `index`-th output of a stream started at `site_key`. `p·2²⁴` is exact in
//! both f32 and f64 (a power-of-two scaling of an f32), and so is `bits` as a float (24 bits), so
//! a float32 kernel that compares `(bits as f32) >= p * 16777216.0` keeps exactly the same
//! elements. `index` is the flat row-major index over the whole batched tensor; `seed` is the
//! step's dropout seed (fed by the runtime) and `site` identifies the Dropout node (autodiff uses
//! the forward node's index, see `autodiff`).
//!
//! Invariant: `keep` depends on nothing but its four arguments.

/// splitmix64's increment (the golden-ratio constant).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64's output finaliser: a bijective, well-mixing map of 64-bit words.
pub fn mix64(word: u64) -> u64 {
    let mut z = word;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The 24 random bits of element `index` at dropout site `site` in the step seeded `seed`.
pub fn mask_bits(seed: u64, site: u32, index: u64) -> u32 {
    let site_key = mix64(seed.wrapping_add((u64::from(site) + 1).wrapping_mul(GAMMA)));
    let word = mix64(site_key.wrapping_add(index.wrapping_add(1).wrapping_mul(GAMMA)));
    (word >> 40) as u32
}

/// True when element `index` survives dropout with drop probability `p` (see the module docs
/// for the exact definition). Keeps each element with probability `1 − p` (to 2⁻²⁴).
pub fn keep(seed: u64, site: u32, index: u64, p: f32) -> bool {
    let threshold = f64::from(p) * f64::from(1u32 << 24);
    f64::from(mask_bits(seed, site, index)) >= threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix64_is_splitmix64s_finaliser() {
        // splitmix64 seeded with 0 outputs mix64(G) first (published reference value).
        assert_eq!(mix64(GAMMA), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn keep_rate_is_one_minus_p_and_sites_differ() {
        let kept = (0..100_000u64).filter(|&i| keep(11, 0, i, 0.3)).count();
        assert!((69_000..71_000).contains(&kept), "{kept}");
        let same = (0..1000u64)
            .filter(|&i| keep(11, 0, i, 0.5) == keep(11, 1, i, 0.5))
            .count();
        assert!((400..600).contains(&same), "{same}");
        assert!((0..1000u64).all(|i| keep(5, 2, i, 0.0)));
    }

    #[test]
    fn float32_comparison_agrees_with_the_exact_one() {
        for index in 0..10_000u64 {
            let bits = mask_bits(3, 9, index);
            let p = 0.37f32;
            assert_eq!(bits as f32 >= p * 16_777_216.0, keep(3, 9, index, p));
        }
    }
}
