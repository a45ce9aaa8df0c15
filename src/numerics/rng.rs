//! Every random stream of every stage, derived from the stage seed alone.
//!
//! Each independent draw gets its own ChaCha8 stream seeded by a blake3 hash
//! of (seed, stream name[, particle]), the way the seed's pandas code reseeds
//! with `random_state=seed` at each call: results are reproducible from the
//! seed, independent of the thread count (a particle's noise does not depend
//! on which thread draws it), and not bit-compatible with numpy's Mersenne
//! Twister or torch's generator.
//!
//! The hash input is a domain string, then the fields, each string
//! length-prefixed (a little-endian u64) and each integer as 8 little-endian
//! bytes — the canonical encoding of the engine's keys, so a stream never
//! collides with another domain's. The tests pin the first draws: changing
//! the derivation would change every stage's output.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// `blake3(len ‖ domain ‖ seed ‖ len ‖ name [‖ particle])`.
fn derive(domain: &str, seed: u64, name: &str, particle: Option<u64>) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    let mut bytes = |b: &[u8]| {
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    };
    bytes(domain.as_bytes());
    h.update(&seed.to_le_bytes());
    let mut h2 = h;
    h2.update(&(name.len() as u64).to_le_bytes());
    h2.update(name.as_bytes());
    if let Some(p) = particle {
        h2.update(&p.to_le_bytes());
    }
    *h2.finalize().as_bytes()
}

/// A stage's random stream `name` (the candidates, a quota's subsample, the
/// final shuffle, the network's initialisation, …).
pub fn stream(seed: u64, name: &str) -> ChaCha8Rng {
    ChaCha8Rng::from_seed(derive("scoreflow/rng/v1", seed, name, None))
}

/// The stream `name` of one particle (a sampler's noise, a prior draw): each
/// particle its own, so chunks of particles can run on any thread.
pub fn particle(seed: u64, name: &str, particle: usize) -> ChaCha8Rng {
    ChaCha8Rng::from_seed(derive("scoreflow/particle-rng/v1", seed, name, Some(particle as u64)))
}

/// Where a stream is: its position in 32-bit words from its start. A stage
/// that checkpoints keeps it and, on resume, derives the stream again and
/// seeks there, so the draws that follow are the ones an uninterrupted run
/// makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Position {
    low: u64,
    high: u64,
}

impl Position {
    pub fn of(rng: &ChaCha8Rng) -> Position {
        let w = rng.get_word_pos();
        Position { low: w as u64, high: (w >> 64) as u64 }
    }

    /// Move `rng` (the same stream, derived again) to this position.
    pub fn seek(&self, rng: &mut ChaCha8Rng) {
        rng.set_word_pos(((self.high as u128) << 64) | self.low as u128);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    /// The first draw of two streams, as every cached result was made with.
    #[test]
    fn streams_are_pinned() {
        assert_eq!(stream(7, "init").next_u64(), PIN_STREAM);
        assert_eq!(particle(7, "pc", 3).next_u64(), PIN_PARTICLE);
        assert_ne!(stream(7, "init").next_u64(), stream(8, "init").next_u64());
        assert_ne!(particle(7, "pc", 3).next_u64(), particle(7, "pc", 4).next_u64());
    }

    /// A stream sought to a saved position continues as the original does,
    /// whatever mix of 32- and 64-bit draws came before.
    #[test]
    fn a_stream_resumes_at_its_position() {
        use rand::Rng;
        let mut a = stream(3, "x");
        let _: u32 = a.next_u32();
        let _: f64 = a.random();
        let _: u32 = a.next_u32();
        let at = Position::of(&a);
        let mut b = stream(3, "x");
        at.seek(&mut b);
        let want: Vec<u64> = (0..40).map(|_| a.next_u64()).collect();
        let got: Vec<u64> = (0..40).map(|_| b.next_u64()).collect();
        assert_eq!(want, got);
    }

    const PIN_STREAM: u64 = 9037694271218732258;
    const PIN_PARTICLE: u64 = 12568735726925858441;
}
