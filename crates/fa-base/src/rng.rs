//! A counter-based random number generator: every draw is a pure function of a key and a counter.
//!
//! The augmenter derives one stream per (seed, sample, operation), so a sample's parameters do
//! not depend on the device, on the other samples in the batch, or on the order in which
//! operations happen to be evaluated. The mixing function is SplitMix64's finaliser, applied
//! twice, which passes the usual statistical batteries for this use.

/// The golden-ratio increment of SplitMix64.
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function: a bijective avalanche of 64 bits.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hashes a run seed, a step and a view number into one augmentation seed (what the trainer
/// passes to `Augmenter::apply`).
pub fn combine(seed: u64, step: u64, view: u64) -> u64 {
    mix(mix(mix(seed).wrapping_add(step.wrapping_mul(GOLDEN)))
        .wrapping_add(view.wrapping_mul(GOLDEN)))
}

/// One stream of draws.
#[derive(Clone, Debug)]
pub struct CounterRng {
    key: u64,
    counter: u64,
}

impl CounterRng {
    /// The stream of `seed` for sample `sample` and operation `op`.
    pub fn new(seed: u64, sample: u64, op: u64) -> CounterRng {
        CounterRng {
            key: combine(seed, sample, op.wrapping_add(1)),
            counter: 0,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let value = mix(self.key ^ mix(self.counter.wrapping_mul(GOLDEN)));
        self.counter += 1;
        value
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

    /// Uniform integer in `[0, n)` for `n > 0`, without modulo bias (Lemire's method with
    /// rejection).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let threshold = n.wrapping_neg() % n;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(n);
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }

    /// A uniformly random permutation of `0..N` (Fisher–Yates).
    pub fn permutation<const N: usize>(&mut self) -> [usize; N] {
        let mut items: [usize; N] = std::array::from_fn(|i| i);
        for i in (1..N).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_depend_only_on_key_and_counter() {
        let mut a = CounterRng::new(7, 3, 1);
        let mut b = CounterRng::new(7, 3, 1);
        let first: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let second: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(first, second);
        assert_ne!(CounterRng::new(7, 4, 1).next_u64(), first[0]);
        assert_ne!(CounterRng::new(8, 3, 1).next_u64(), first[0]);
    }

    #[test]
    fn unit_draws_look_uniform() {
        let mut rng = CounterRng::new(1, 2, 3);
        let n = 100_000;
        let values: Vec<f64> = (0..n).map(|_| rng.unit()).collect();
        let mean = values.iter().sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
        let below_tenth = values.iter().filter(|&&v| v < 0.1).count() as f64 / n as f64;
        assert!((below_tenth - 0.1).abs() < 0.005, "fraction {below_tenth}");
        assert!(values.iter().all(|&v| (0.0..1.0).contains(&v)));
    }

    #[test]
    fn permutations_cover_all_orders() {
        let mut rng = CounterRng::new(5, 0, 0);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let p = rng.permutation::<4>();
            let mut sorted = p;
            sorted.sort();
            assert_eq!(sorted, [0, 1, 2, 3]);
            seen.insert(p);
        }
        assert_eq!(seen.len(), 24);
    }
}
