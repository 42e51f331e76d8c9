//! kNN and linear probes on synthetic features with known answers.

use fa_lang::ir::{LinearConfig, LinearMode, Span};
use fa_torch::eval::{knn, knn_votes, linear_probe_features, linear_probe_with, Accuracy};
use tch::{Device, Kind, Tensor};

const CLASSES: i64 = 10;

/// SplitMix64, so test data does not depend on libtorch's global generator, which tests
/// running in parallel threads would race on.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal values by the Box–Muller transform.
    fn gaussian(&mut self, shape: [i64; 2]) -> Tensor {
        let values: Vec<f32> = (0..shape[0] * shape[1])
            .map(|_| {
                let (u, v) = (self.uniform(), self.uniform());
                ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
            })
            .collect();
        Tensor::from_slice(&values).reshape(shape)
    }
}

/// `count` points around 10 well-separated random centres in 32 dimensions, with labels
/// cycling through the classes. The same `centre_seed` gives the same centres.
fn clusters(count: i64, centre_seed: u64, noise_seed: u64) -> (Tensor, Tensor) {
    let centres = Random(centre_seed).gaussian([CLASSES, 32]) * 4.0;
    let labels = Tensor::arange(count, (Kind::Int64, Device::Cpu)).remainder(CLASSES);
    let features =
        centres.index_select(0, &labels) + Random(noise_seed).gaussian([count, 32]) * 0.5;
    (features, labels)
}

fn random_labels(count: i64, seed: u64) -> Tensor {
    let mut random = Random(seed);
    let labels: Vec<i64> = (0..count)
        .map(|_| (random.next() % CLASSES as u64) as i64)
        .collect();
    Tensor::from_slice(&labels)
}

fn probe_config(epochs: usize) -> LinearConfig {
    LinearConfig {
        epochs,
        lr: 0.1,
        batch_size: 64,
        momentum: 0.9,
        weight_decay: 0.0,
        milestones: vec![epochs * 2 / 3, epochs * 5 / 6],
        mode: LinearMode::Features,
        span: Span::default(),
    }
}

#[test]
fn knn_classifies_separable_clusters_perfectly() {
    let (train, train_labels) = clusters(500, 1, 2);
    let (test, test_labels) = clusters(200, 1, 3);
    let accuracy = knn(
        &train,
        &train_labels,
        &test,
        &test_labels,
        20,
        0.1,
        CLASSES as usize,
    );
    assert_eq!(
        accuracy,
        Accuracy {
            top1: 100.0,
            top5: 100.0
        }
    );
}

#[test]
fn knn_with_random_labels_is_near_chance() {
    let (train, _) = clusters(1000, 1, 2);
    let (test, _) = clusters(400, 1, 3);
    let accuracy = knn(
        &train,
        &random_labels(1000, 4),
        &test,
        &random_labels(400, 5),
        20,
        0.1,
        CLASSES as usize,
    );
    assert!((0.0..=25.0).contains(&accuracy.top1), "{accuracy:?}");
    // Five guesses out of ten: about 50%.
    assert!((30.0..=70.0).contains(&accuracy.top5), "{accuracy:?}");
}

/// Bank: a = (1, 0) class 0, b = (0, 1) class 1, c = (−1, 0) class 1, d = (2, 2) class 1
/// (normalised to (1, 1)/√2); query q = (3, 0), normalised (1, 0).
/// Cosine similarities to q: a 1, d 1/√2, b 0, c −1. With k = 3 the neighbours are a, d, b.
/// T = 0.5: class 0 gets e^2 = 7.389, class 1 gets e^(√2) + e^0 = 5.113, so q is class 0.
/// T = 2: class 0 gets e^0.5 = 1.649, class 1 gets e^(1/(2√2)) + 1 = 2.424, so q is class 1.
#[test]
fn knn_votes_match_a_hand_worked_case() {
    let bank = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, -1.0, 0.0, 2.0, 2.0]).reshape([4, 2]);
    let labels = Tensor::from_slice(&[0i64, 1, 1, 1]);
    let query = Tensor::from_slice(&[3.0f32, 0.0]).reshape([1, 2]);
    let sqrt_half = 0.5f64.sqrt();
    for (temperature, class0, class1, predicted) in [
        (0.5, 2.0f64.exp(), (2.0 * sqrt_half).exp() + 1.0, 0),
        (2.0, 0.5f64.exp(), (0.5 * sqrt_half).exp() + 1.0, 1),
    ] {
        let votes = knn_votes(&bank, &labels, &query, 3, temperature, 3);
        let votes = Vec::<f32>::try_from(votes.reshape([-1])).unwrap();
        assert!(
            (votes[0] as f64 - class0).abs() < 1e-5,
            "T {temperature}: {votes:?}"
        );
        assert!(
            (votes[1] as f64 - class1).abs() < 1e-5,
            "T {temperature}: {votes:?}"
        );
        assert_eq!(votes[2], 0.0);
        let accuracy = knn(
            &bank,
            &labels,
            &query,
            &Tensor::from_slice(&[predicted]),
            3,
            temperature,
            3,
        );
        assert_eq!(accuracy.top1, 100.0, "T {temperature}");
    }
    // k larger than the bank uses the whole bank: c adds e^(−1/T) to class 1.
    let votes =
        Vec::<f32>::try_from(knn_votes(&bank, &labels, &query, 50, 0.5, 2).reshape([-1])).unwrap();
    let expected = (2.0 * sqrt_half).exp() + 1.0 + (-2.0f64).exp();
    assert!((votes[1] as f64 - expected).abs() < 1e-5, "{votes:?}");
}

#[test]
fn knn_of_nothing_is_not_a_number() {
    let bank = Tensor::zeros([3, 2], (Kind::Float, Device::Cpu));
    let empty = Tensor::zeros([0, 2], (Kind::Float, Device::Cpu));
    let labels = Tensor::zeros([3], (Kind::Int64, Device::Cpu));
    let accuracy = knn(
        &bank,
        &labels,
        &empty,
        &Tensor::zeros([0], (Kind::Int64, Device::Cpu)),
        5,
        0.1,
        2,
    );
    assert!(accuracy.top1.is_nan() && accuracy.top5.is_nan());
}

#[test]
fn linear_probe_separates_clusters() {
    let (train, train_labels) = clusters(500, 1, 2);
    let (test, test_labels) = clusters(200, 1, 3);
    let accuracy = linear_probe_features(
        &train,
        &train_labels,
        &test,
        &test_labels,
        &probe_config(30),
        CLASSES as usize,
        9,
    );
    assert!(accuracy.top1 >= 99.0, "{accuracy:?}");
    assert_eq!(accuracy.top5, 100.0);
}

#[test]
fn linear_probe_with_random_labels_is_near_chance_on_test() {
    let (train, _) = clusters(500, 1, 2);
    let (test, _) = clusters(400, 1, 3);
    let accuracy = linear_probe_features(
        &train,
        &random_labels(500, 4),
        &test,
        &random_labels(400, 5),
        &probe_config(30),
        CLASSES as usize,
        9,
    );
    assert!((0.0..=25.0).contains(&accuracy.top1), "{accuracy:?}");
}

#[test]
fn linear_probe_with_a_feature_closure_sees_every_sample_once_per_epoch() {
    let (train, train_labels) = clusters(300, 1, 2);
    let (test, test_labels) = clusters(100, 1, 3);
    let epochs = 6;
    let mut seen = vec![vec![0usize; 300]; epochs];
    let mut orders: Vec<Vec<i64>> = vec![Vec::new(); epochs];
    let accuracy = linear_probe_with(
        |epoch, indices| {
            for &index in indices {
                seen[epoch][index as usize] += 1;
            }
            orders[epoch].extend_from_slice(indices);
            assert!(indices.len() <= 64);
            // A stand-in for augmentation: fresh noise on every call.
            let batch = train.index_select(0, &Tensor::from_slice(indices));
            &batch + batch.randn_like() * 0.3
        },
        &train_labels,
        &test,
        &test_labels,
        32,
        &probe_config(epochs),
        CLASSES as usize,
        17,
    );
    assert!(seen
        .iter()
        .all(|epoch| epoch.iter().all(|&count| count == 1)));
    assert_ne!(orders[0], orders[1], "each epoch draws its own order");
    assert!(accuracy.top1 >= 99.0, "{accuracy:?}");
}

#[test]
fn linear_probe_is_deterministic_for_a_seed() {
    let (train, train_labels) = clusters(200, 1, 2);
    let noisy_labels = random_labels(200, 8);
    let (test, test_labels) = clusters(100, 1, 3);
    let run = |labels: &Tensor, seed| {
        linear_probe_features(
            &train,
            labels,
            &test,
            &test_labels,
            &probe_config(3),
            10,
            seed,
        )
    };
    assert_eq!(run(&train_labels, 1), run(&train_labels, 1));
    assert_eq!(run(&noisy_labels, 1), run(&noisy_labels, 1));
}
