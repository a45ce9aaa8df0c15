//! PyTorch's CPU `torch.rand` stream, to rebuild targets that origin code
//! draws once from a fixed `torch.manual_seed` (GMM-40's means).
//!
//! `torch.manual_seed(s)` seeds a standard MT19937 with `s`; `torch.rand` of
//! dtype float32 takes one 32-bit output per value and keeps its low 24 bits:
//! `(u & (2²⁴ − 1)) · 2⁻²⁴`. The generator is `rand_mt`'s MT19937 (the C++
//! standard's, same seeding); only this conversion is ours, pinned by the
//! values `torch.manual_seed(0); torch.rand(5)` prints.

/// `torch.manual_seed(seed); torch.rand(n)` (float32) as f32 values.
pub fn rand_f32(seed: u32, n: usize) -> Vec<f32> {
    let mut mt = rand_mt::Mt::new(seed);
    (0..n).map(|_| (mt.next_u32() & ((1 << 24) - 1)) as f32 * (1.0 / (1u32 << 24) as f32)).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_torch_manual_seed_0() {
        // torch.manual_seed(0); torch.rand(5) → [0.4963, 0.7682, 0.0885, 0.1320, 0.3074]
        let v = super::rand_f32(0, 5);
        for (got, want) in v.iter().zip([0.4963, 0.7682, 0.0885, 0.1320, 0.3074]) {
            assert!((got - want).abs() < 5e-5, "{v:?}");
        }
    }
}
