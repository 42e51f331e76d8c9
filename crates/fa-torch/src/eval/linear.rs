//! Linear probes: a softmax-regression layer trained with SGD on frozen features.
//!
//! The probe is the protocol the paper states (a linear layer on the frozen backbone, SGD
//! with momentum, the configured learning rate, batch size, weight decay, epochs and ×0.1
//! decays at the milestones). Features are used as they come, neither standardised nor
//! normalised: the configured learning rates (1.0 for discrimination, 0.2 for similarity)
//! are calibrated for raw backbone features, and a batch-norm or standardisation layer in
//! front of the classifier would change what they mean. Weights and bias start at zero, which
//! makes the probe deterministic given the data order (the problem is convex, so the start
//! point matters little). The bias is excluded from weight decay, like every 1-D parameter
//! of [`Optimizer`].

use tch::{Device, Kind, Tensor};

use super::{accuracy_of_scores, percentages, Accuracy};
use crate::optim::Optimizer;
use fa_lang::ir::{LinearConfig, OptimKind};

/// Test samples scored per forward pass.
const SCORE_CHUNK: i64 = 4096;

/// The learning rate of epoch `epoch` (from 0): `lr · 0.1^m` with `m` the number of
/// milestones at or before `epoch`, PyTorch's `MultiStepLR` stepped once per epoch.
fn probe_learning_rate(cfg: &LinearConfig, epoch: usize) -> f64 {
    let decays = cfg
        .milestones
        .iter()
        .filter(|&&milestone| milestone <= epoch)
        .count();
    cfg.lr * 0.1f64.powi(decays as i32)
}

/// The training order of epoch `epoch`: the run's deterministic host-side shuffle, so it is
/// the same on every device and libtorch version.
fn epoch_order(len: usize, seed: u64, epoch: usize) -> Vec<i64> {
    let key = fa_base::random::Key::new(seed, fa_base::random::Purpose::Probe, epoch as u64);
    key.stream(0)
        .permutation(len)
        .into_iter()
        .map(|i| i as i64)
        .collect()
}

/// Linear probe on pre-computed frozen features (the fast mode): see the module
/// documentation for the protocol. Returns the test accuracy.
///
/// # Shapes
/// `train: [N, D]`, `train_labels: [N]`, `test: [M, D]`, `test_labels: [M]`, labels in
/// `0..classes`. The probe runs on `test`'s device.
pub fn linear_probe_features(
    train: &Tensor,
    train_labels: &Tensor,
    test: &Tensor,
    test_labels: &Tensor,
    cfg: &LinearConfig,
    classes: usize,
    seed: u64,
) -> Accuracy {
    let device = test.device();
    let train = train.detach().to_device(device).to_kind(Kind::Float);
    let feature_dim = train.size()[1] as usize;
    let features_of = |_epoch: usize, indices: &[i64]| {
        train.index_select(0, &Tensor::from_slice(indices).to_device(device))
    };
    linear_probe_with(
        features_of,
        train_labels,
        test,
        test_labels,
        feature_dim,
        cfg,
        classes,
        seed,
    )
}

/// Linear probe whose training features come from `features_of(epoch, indices)`, which
/// returns the `[indices.len(), feature_dim]` features of those training samples for that
/// epoch (the standard protocol: the caller augments the images and runs the frozen
/// backbone). `test` holds the pre-computed features of the un-augmented test images.
/// Every epoch visits each of the `train_labels.size()[0]` samples once, in a seeded order,
/// in batches of `cfg.batch_size` (the last one smaller).
///
/// # Panics
/// When `features_of` returns a tensor of another shape than `[indices.len(), feature_dim]`,
/// which is a bug in the caller, not bad input.
#[allow(clippy::too_many_arguments)]
pub fn linear_probe_with<F: FnMut(usize, &[i64]) -> Tensor>(
    mut features_of: F,
    train_labels: &Tensor,
    test: &Tensor,
    test_labels: &Tensor,
    feature_dim: usize,
    cfg: &LinearConfig,
    classes: usize,
    seed: u64,
) -> Accuracy {
    let device = test.device();
    let options = (Kind::Float, device);
    let weight =
        Tensor::zeros([classes as i64, feature_dim as i64], options).set_requires_grad(true);
    let bias = Tensor::zeros([classes as i64], options).set_requires_grad(true);
    let mut optimizer = Optimizer::with_settings(
        OptimKind::Sgd,
        cfg.momentum,
        cfg.weight_decay,
        vec![
            ("weight".to_string(), weight.shallow_clone()),
            ("bias".to_string(), bias.shallow_clone()),
        ],
    );
    // Labels stay on the host for indexing by batch and move to the device once per batch.
    let labels = train_labels.to_device(Device::Cpu).to_kind(Kind::Int64);
    let sample_count = labels.size()[0] as usize;
    let batch_size = cfg.batch_size.max(1);
    for epoch in 0..cfg.epochs {
        let lr = probe_learning_rate(cfg, epoch);
        let order = epoch_order(sample_count, seed, epoch);
        for indices in order.chunks(batch_size) {
            let features = features_of(epoch, indices)
                .detach()
                .to_device(device)
                .to_kind(Kind::Float);
            assert_eq!(
                features.size(),
                [indices.len() as i64, feature_dim as i64],
                "linear probe: the feature closure returned the wrong shape"
            );
            let batch_labels = labels
                .index_select(0, &Tensor::from_slice(indices))
                .to_device(device);
            optimizer.zero_grad();
            let logits = features.linear(&weight, Some(&bias));
            logits.cross_entropy_for_logits(&batch_labels).backward();
            optimizer.step(lr);
        }
    }
    score(&weight, &bias, test, test_labels)
}

/// Test accuracy of the trained linear layer.
fn score(weight: &Tensor, bias: &Tensor, test: &Tensor, test_labels: &Tensor) -> Accuracy {
    let _guard = tch::no_grad_guard();
    let total = test.size()[0];
    let (mut top1, mut top5) = (0, 0);
    let mut start = 0;
    while start < total {
        let length = SCORE_CHUNK.min(total - start);
        let features = test.narrow(0, start, length).detach().to_kind(Kind::Float);
        let logits = features.linear(weight, Some(bias));
        let (hits1, hits5) = accuracy_of_scores(&logits, &test_labels.narrow(0, start, length));
        top1 += hits1;
        top5 += hits5;
        start += length;
    }
    percentages(top1, top5, total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fa_lang::ir::{LinearMode, Span};

    #[test]
    fn epoch_orders_are_seeded_permutations() {
        let order = epoch_order(100, 5, 0);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<i64>>());
        assert_eq!(order, epoch_order(100, 5, 0));
        assert_ne!(order, epoch_order(100, 5, 1));
        assert_ne!(order, epoch_order(100, 6, 0));
    }

    #[test]
    fn milestones_divide_the_rate_by_ten_from_their_epoch_on() {
        let cfg = LinearConfig {
            epochs: 60,
            lr: 1.0,
            batch_size: 256,
            momentum: 0.9,
            weight_decay: 0.0,
            milestones: vec![40, 50, 55],
            mode: LinearMode::Features,
            span: Span::default(),
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(probe_learning_rate(&cfg, 0), 1.0));
        assert!(close(probe_learning_rate(&cfg, 39), 1.0));
        assert!(close(probe_learning_rate(&cfg, 40), 0.1));
        assert!(close(probe_learning_rate(&cfg, 50), 0.01));
        assert!(close(probe_learning_rate(&cfg, 59), 0.001));
    }
}
