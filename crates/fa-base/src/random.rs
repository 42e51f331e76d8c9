//! Every random draw of fa: ChaCha8 streams keyed by (seed, purpose, round, sample).
//!
//! The design is written up in `docs/randomness.md`: no generator state is ever carried
//! from one step to the next; each draw comes from a stream named by what it is for, so a
//! sample's augmentation depends neither on the batch it lands in nor on how many processes
//! share the batch, and a resumed run draws exactly what an uninterrupted one would.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// What a stream's draws are for; part of the key, so streams of different purposes never
/// overlap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// The order of the training split in one epoch (round = epoch).
    DataOrder,
    /// The data augmentation of view `n` (round = epoch, sample = dataset index).
    View(u32),
    /// The draws of feature-augmentation node `n` (masks, mixup weights, partners, noise;
    /// round = epoch, sample = dataset index).
    FeatureAug(u32),
    /// Parameter initialisation of the trained network.
    Init,
    /// Parameter initialisation of the random-initialisation evaluation baseline.
    BaselineInit,
    /// The linear probe's data order (round = probe epoch).
    Probe,
    /// The augmentation of the linear probe's crops (round = probe epoch, sample = index).
    ProbeView,
    /// Draws inside the network that belong to no sample (bank initialisation).
    Network,
}

impl Purpose {
    fn code(self) -> u64 {
        match self {
            Purpose::DataOrder => 1,
            Purpose::Init => 2,
            Purpose::BaselineInit => 3,
            Purpose::Probe => 4,
            Purpose::Network => 5,
            Purpose::ProbeView => 6,
            Purpose::View(n) => 0x1_0000_0000 | u64::from(n),
            Purpose::FeatureAug(n) => 0x2_0000_0000 | u64::from(n),
        }
    }
}

/// The name of one stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub seed: u64,
    pub purpose: Purpose,
    /// The epoch for per-sample draws and the data order; 0 for initialisation.
    pub round: u64,
}

impl Key {
    pub fn new(seed: u64, purpose: Purpose, round: u64) -> Key {
        Key {
            seed,
            purpose,
            round,
        }
    }

    /// The stream of `sample` (a global dataset index; 0 for draws that belong to no sample).
    pub fn stream(self, sample: u64) -> Stream {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&self.seed.to_le_bytes());
        key[8..16].copy_from_slice(&self.purpose.code().to_le_bytes());
        key[16..24].copy_from_slice(&self.round.to_le_bytes());
        let mut rng = ChaCha8Rng::from_seed(key);
        rng.set_stream(sample);
        Stream { rng }
    }

    /// The stream of `sample` positioned at the range of operation `op`, so that the draws
    /// of one operation never depend on how many the operations before it made.
    pub fn stream_at(self, sample: u64, op: u32) -> Stream {
        let mut stream = self.stream(sample);
        stream.rng.set_word_pos(u128::from(op) << OP_SHIFT);
        stream
    }

    /// A 63-bit seed for a generator fa does not own (libtorch's, for initialisation).
    pub fn torch_seed(self) -> i64 {
        (self.stream(0).next_u64() >> 1) as i64
    }
}

/// Each operation owns 2^40 words (32-bit) of a sample's stream: far more than any
/// operation draws, and 2^24 operations fit.
const OP_SHIFT: u32 = 40;

/// A sequence of draws.
#[derive(Clone, Debug)]
pub struct Stream {
    rng: ChaCha8Rng,
}

impl Stream {
    pub fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[low, high)` (or `low` when the interval is empty).
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// True with probability `p`.
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A standard normal draw (Box–Muller on two uniforms; one value per call).
    pub fn normal(&mut self) -> f64 {
        // 1 − unit is in (0, 1], so the logarithm is finite.
        let radius = (-2.0 * (1.0 - self.unit()).ln()).sqrt();
        radius * (std::f64::consts::TAU * self.unit()).cos()
    }

    /// Uniform integer in `[0, n)` for `n > 0`, without modulo bias (Lemire's method with
    /// rejection).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0) has no value to return");
        let threshold = n.wrapping_neg() % n;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(n);
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }

    /// A uniformly random permutation of `0..len` (Fisher–Yates).
    pub fn permutation(&mut self, len: usize) -> Vec<usize> {
        let mut items: Vec<usize> = (0..len).collect();
        for i in (1..len).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(mut stream: Stream, n: usize) -> Vec<u64> {
        (0..n).map(|_| stream.next_u64()).collect()
    }

    #[test]
    fn a_stream_is_a_pure_function_of_its_name() {
        let key = Key::new(7, Purpose::View(1), 3);
        assert_eq!(draws(key.stream(42), 5), draws(key.stream(42), 5));
        let first = draws(key.stream(42), 1)[0];
        // Every field of the name matters.
        assert_ne!(
            draws(Key::new(8, Purpose::View(1), 3).stream(42), 1)[0],
            first
        );
        assert_ne!(
            draws(Key::new(7, Purpose::View(0), 3).stream(42), 1)[0],
            first
        );
        assert_ne!(
            draws(Key::new(7, Purpose::FeatureAug(1), 3).stream(42), 1)[0],
            first
        );
        assert_ne!(
            draws(Key::new(7, Purpose::View(1), 4).stream(42), 1)[0],
            first
        );
        assert_ne!(draws(key.stream(43), 1)[0], first);
    }

    #[test]
    fn operations_draw_from_disjoint_ranges() {
        let key = Key::new(1, Purpose::View(0), 0);
        // Whatever operation 0 draws, operation 1 starts at the same place.
        let mut zero = key.stream_at(5, 0);
        for _ in 0..1000 {
            zero.next_u64();
        }
        assert_eq!(draws(key.stream_at(5, 1), 4), draws(key.stream_at(5, 1), 4));
        assert_ne!(draws(key.stream_at(5, 1), 4), draws(key.stream_at(5, 0), 4));
        // Operation 0 at position 0 is the plain stream.
        assert_eq!(draws(key.stream_at(5, 0), 4), draws(key.stream(5), 4));
    }

    #[test]
    fn unit_and_normal_draws_have_the_right_moments() {
        let mut stream = Key::new(1, Purpose::Network, 0).stream(0);
        let n = 100_000;
        let units: Vec<f64> = (0..n).map(|_| stream.unit()).collect();
        let mean = units.iter().sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
        assert!(units.iter().all(|&v| (0.0..1.0).contains(&v)));
        let below_tenth = units.iter().filter(|&&v| v < 0.1).count() as f64 / n as f64;
        assert!((below_tenth - 0.1).abs() < 0.005, "fraction {below_tenth}");
        let normals: Vec<f64> = (0..n).map(|_| stream.normal()).collect();
        let mean = normals.iter().sum::<f64>() / n as f64;
        let variance = normals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((variance - 1.0).abs() < 0.02, "variance {variance}");
    }

    #[test]
    fn below_is_uniform_and_permutations_cover_every_order() {
        let mut stream = Key::new(3, Purpose::DataOrder, 0).stream(0);
        let mut counts = [0usize; 4];
        for _ in 0..40_000 {
            counts[stream.below(4) as usize] += 1;
        }
        assert!(
            counts.iter().all(|c| (9_000..11_000).contains(c)),
            "{counts:?}"
        );
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let p = stream.permutation(4);
            let mut sorted = p.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2, 3]);
            seen.insert(p);
        }
        assert_eq!(seen.len(), 24);
    }

    #[test]
    fn torch_seeds_are_non_negative_and_differ_by_purpose() {
        let a = Key::new(0, Purpose::Init, 0).torch_seed();
        let b = Key::new(0, Purpose::BaselineInit, 0).torch_seed();
        assert!(a >= 0 && b >= 0);
        assert_ne!(a, b);
    }
}
