//! Every random stream of every stage, derived from the stage seed alone.
//!
//! Each independent draw gets its own ChaCha8 stream seeded by a blake3 hash
//! of (seed, stream name[, particle]), the way the seed's pandas code reseeds
//! with `random_state=seed` at each call: results are reproducible from the
//! seed, independent of the thread count (a particle's noise does not depend
//! on which thread draws it), and not bit-compatible with numpy's Mersenne
//! Twister or torch's generator.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::engine::hash::Canon;

/// A stage's random stream `name` (the candidates, a quota's subsample, the
/// final shuffle, the network's initialisation, …).
pub fn stream(seed: u64, name: &str) -> ChaCha8Rng {
    let mut c = Canon::new("scoreflow/rng/v1");
    c.u64(seed).bytes(name.as_bytes());
    ChaCha8Rng::from_seed(c.finish().0)
}

/// The stream `name` of one particle (a sampler's noise, a prior draw): each
/// particle its own, so chunks of particles can run on any thread.
pub fn particle(seed: u64, name: &str, particle: usize) -> ChaCha8Rng {
    let mut c = Canon::new("scoreflow/particle-rng/v1");
    c.u64(seed).bytes(name.as_bytes()).u64(particle as u64);
    ChaCha8Rng::from_seed(c.finish().0)
}
