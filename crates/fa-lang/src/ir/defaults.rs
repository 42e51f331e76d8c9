//! The defaults of the configuration: what a model gets for every setting its file leaves out.
//!
//! Resolution and the test builder both start from these, so each default lives here once.

use super::*;

/// The temperature of `infonce` without `tau`.
pub const INFONCE_TAU: f64 = 0.2;
/// The fraction `fa mask` zeroes without `rate`.
pub const MASK_RATE: f64 = 0.2;
/// The lower bound of the mixing weight of `fa mixup` without `alpha`.
pub const MIXUP_ALPHA: f64 = 0.85;
/// The standard deviation of `gaussian` noise without `sigma`.
pub const GAUSSIAN_SIGMA: f64 = 0.2;
/// The EMA momentum at the start of training, and at its end.
pub const EMA_MOMENTUM: (f64, f64) = (0.99, 1.0);
/// The trust coefficient of `lars` without `trust`.
pub const LARS_TRUST: f64 = 0.001;

impl DatasetFormat {
    /// The image side, channel count and test split name of a dataset of this format.
    pub fn defaults(self) -> (usize, usize, &'static str) {
        match self {
            DatasetFormat::Idx => (28, 1, "t10k"),
            DatasetFormat::CifarBinary => (32, 3, "test"),
            DatasetFormat::ImageFolder => (224, 3, "test"),
        }
    }
}

impl Default for DataConfig {
    /// An image-folder dataset at its format's defaults in batches of 256; a file must give
    /// the `path`.
    fn default() -> DataConfig {
        let format = DatasetFormat::ImageFolder;
        let (image_size, channels, test_split) = format.defaults();
        DataConfig {
            format,
            path: String::new(),
            train_split: "train".into(),
            test_split: test_split.into(),
            image_size,
            channels,
            batch_size: 256,
            limit: None,
            span: Span::default(),
        }
    }
}

impl Default for BankConfig {
    fn default() -> BankConfig {
        BankConfig {
            size: 65_536,
            grad: NnGrad::None,
            exclude_self: false,
        }
    }
}

impl Default for LearningRate {
    /// 0.3 per 256 images.
    fn default() -> LearningRate {
        LearningRate {
            value: 0.3,
            scaling: LrScaling::Per256,
            basis: LrBasis::Effective,
        }
    }
}

impl Default for OptimConfig {
    fn default() -> OptimConfig {
        OptimConfig {
            kind: OptimKind::Sgd,
            lr: LearningRate::default(),
            momentum: 0.9,
            weight_decay: 1e-6,
            warmup_epochs: 0.0,
            schedule: Schedule::Cosine,
            accumulate: 1,
            clip_grad_norm: None,
            span: Span::default(),
        }
    }
}

impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            epochs: 100,
            seed: 0,
            precision: Precision::F32,
            checkpoint_every: 10,
            knn_every: 0,
            keep_checkpoints: 3,
            sync_batch_norm: false,
            span: Span::default(),
        }
    }
}

/// The default of `train.keep_checkpoints`, for model files stored before the key existed.
pub(crate) fn keep_checkpoints() -> usize {
    TrainConfig::default().keep_checkpoints
}

impl Default for EvalConfig {
    /// kNN with its defaults; no linear probe.
    fn default() -> EvalConfig {
        EvalConfig {
            knn: Some(KnnConfig::default()),
            linear: None,
        }
    }
}

impl Default for KnnConfig {
    fn default() -> KnnConfig {
        KnnConfig {
            k: 200,
            temperature: 0.1,
            span: Span::default(),
        }
    }
}

impl Default for LinearConfig {
    fn default() -> LinearConfig {
        LinearConfig {
            epochs: 60,
            lr: 1.0,
            batch_size: 256,
            momentum: 0.9,
            weight_decay: 0.0,
            milestones: vec![40, 50, 55],
            mode: LinearMode::Augmented,
            span: Span::default(),
        }
    }
}
