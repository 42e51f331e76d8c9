//! The evaluation protocols of a trained backbone, run at the end of training and by
//! `fa eval`: weighted kNN and the linear probe, with the random-initialisation and
//! raw-pixel baselines beside them.
//!
//! Extraction runs at inference speed: no autograd, batch norm in evaluation mode,
//! convolutional encoders channels_last ([`crate::lower`]), large chunks, and bfloat16
//! autocast on CUDA and on CPUs with bfloat16 instructions (features are scored in float32;
//! [`precision::extraction_precision`]). The trained encoder's features are
//! extracted once and shared by kNN and the fast linear probe; the baselines, which do not
//! depend on training, come from the cache (`baselines.rs`) when this model, seed and data
//! were evaluated before.

use tch::{Device, Kind, Tensor};

use crate::data::Augmenter;
use crate::eval;
use crate::eval::baselines::{self, Baselines};
use crate::lower::Network;
use crate::train::device_data::DeviceData;
use crate::train::precision::{self, Extraction};
use crate::train::trainer::build_network;
use crate::train::{Summary, TrainError};
use fa_base::random::{Key, Purpose};
use fa_lang::ir::{AugOp, Interpolation, LinearMode, Model, Pipeline};
use fa_lang::valid::ValidModel;

/// What evaluation needs of a trained model.
pub(crate) struct Evaluator<'a> {
    pub(crate) valid: &'a ValidModel,
    pub(crate) network: &'a Network,
    pub(crate) augmenters: &'a [Augmenter],
}

impl Evaluator<'_> {
    /// Backbone features of every image, in order, with the evaluation transform.
    fn features(&self, images: &Tensor, augmenter: &Augmenter, precision: Extraction) -> Tensor {
        backbone_features(self.network, images, augmenter, precision)
    }
}

/// Input values per extraction chunk on a GPU: 2^24 (64 MiB of float32 input; 5,461 CIFAR
/// images or 334 at 224²), clamped to 64–4,096 images, so that a small image fills the
/// device. On the CPU larger chunks gain nothing (the kernels already use every core) and
/// cost memory, so the chunk stays at [`CPU_CHUNK`] images.
const GPU_CHUNK_ELEMENTS: i64 = 1 << 24;
const CPU_CHUNK: i64 = 512;

/// Images per extraction chunk for images of `[_, C, H, W]` on `device`.
fn extraction_chunk(images: &Tensor, device: Device) -> i64 {
    if !device.is_cuda() {
        return CPU_CHUNK;
    }
    let per_image: i64 = images.size()[1..].iter().product::<i64>().max(1);
    (GPU_CHUNK_ELEMENTS / per_image).clamp(64, 4096)
}

/// Frozen backbone features of `images` in chunks, in float32.
fn backbone_features(
    network: &Network,
    images: &Tensor,
    augmenter: &Augmenter,
    precision: Extraction,
) -> Tensor {
    let len = images.size()[0];
    let device = network.device();
    let chunk = extraction_chunk(images, device);
    let mut parts = Vec::new();
    tch::no_grad(|| {
        let mut start = 0;
        while start < len {
            let end = (start + chunk).min(len);
            let batch = augmenter.eval_transform(&images.narrow(0, start, end - start));
            let features = precision::extract(device, precision, || network.backbone(&batch));
            parts.push(features.to_kind(Kind::Float));
            start = end;
        }
    });
    Tensor::cat(&parts, 0)
}

/// The kNN top-1 accuracy some epochs report while training; `None` when the model
/// configures no kNN or a split has no labels.
pub(crate) fn quick_knn(
    trainer: &Evaluator,
    data: &DeviceData,
    test: &DeviceData,
    model: &Model,
) -> Option<f64> {
    let (knn, train_labels, test_labels) = (
        model.eval.knn.as_ref()?,
        data.labels.as_ref()?,
        test.labels.as_ref()?,
    );
    let augmenter = &trainer.augmenters[0];
    // A bad FA_EVAL_PRECISION is reported by the final evaluation; here it reads as float32.
    let precision =
        precision::extraction_precision(trainer.network.device()).unwrap_or(Extraction::F32);
    let train_features = trainer.features(&data.images, augmenter, precision);
    let test_features = trainer.features(&test.images, augmenter, precision);
    let classes = data.classes.max(test.classes);
    Some(
        eval::knn(
            &train_features,
            train_labels,
            &test_features,
            test_labels,
            knn.k,
            knn.temperature,
            classes,
        )
        .top1,
    )
}

/// The final evaluation: kNN and linear probe of the trained backbone, and the baselines.
pub(crate) fn evaluate(
    trainer: &Evaluator,
    data: &DeviceData,
    test: &DeviceData,
    device: Device,
    summary: &mut Summary,
) -> Result<(), TrainError> {
    let model = trainer.valid.model();
    if model.eval.knn.is_none() && model.eval.linear.is_none() {
        return Ok(());
    }
    let train_labels = data.labels.as_ref().ok_or_else(|| TrainError::NoLabels {
        split: model.data.train_split.clone(),
    })?;
    let test_labels = test.labels.as_ref().ok_or_else(|| TrainError::NoLabels {
        split: model.data.test_split.clone(),
    })?;
    let augmenter = &trainer.augmenters[0];
    let classes = data.classes.max(test.classes);
    let extraction = precision::extraction_precision(device)?;
    summary.eval_precision = Some(extraction.name().to_string());
    let train_features = trainer.features(&data.images, augmenter, extraction);
    let test_features = trainer.features(&test.images, augmenter, extraction);

    if let Some(knn) = &model.eval.knn {
        // The same protocol for the trained encoder and both baselines.
        let accuracy = |train: &Tensor, test: &Tensor| {
            eval::knn(
                train,
                train_labels,
                test,
                test_labels,
                knn.k,
                knn.temperature,
                classes,
            )
        };
        summary.knn = Some(accuracy(&train_features, &test_features));
        // Baselines: the same encoder at random initialisation, and raw pixels; neither
        // depends on training, so a cached result of this model, seed and data is reused.
        let cache = baselines::cache_folder().map(|folder| {
            (
                baselines::key(model, data, test, device, extraction),
                folder,
            )
        });
        let cached = cache
            .as_ref()
            .and_then(|(key, folder)| baselines::load(folder, key));
        let computed = match cached {
            Some(found) => found,
            None => {
                let (_vs, random_network) = build_network(
                    trainer.valid,
                    device,
                    model.train.seed,
                    Purpose::BaselineInit,
                )?;
                let random_init_knn = accuracy(
                    &backbone_features(&random_network, &data.images, augmenter, extraction),
                    &backbone_features(&random_network, &test.images, augmenter, extraction),
                );
                let pixels = |images: &Tensor| {
                    augmenter
                        .eval_transform(images)
                        .flatten(1, -1)
                        .to_kind(Kind::Float)
                };
                let pixels_knn = accuracy(&pixels(&data.images), &pixels(&test.images));
                let computed = Baselines {
                    random_init_knn,
                    pixels_knn,
                };
                if let Some((key, folder)) = &cache {
                    baselines::store(folder, key, &computed);
                }
                computed
            }
        };
        summary.random_init_knn = Some(computed.random_init_knn);
        summary.pixels_knn = Some(computed.pixels_knn);
    }
    if let Some(linear) = &model.eval.linear {
        let seed = model.train.seed;
        summary.linear = Some(match linear.mode {
            LinearMode::Features => eval::linear_probe_features(
                &train_features,
                train_labels,
                &test_features,
                test_labels,
                linear,
                classes,
                seed,
            ),
            LinearMode::Augmented => {
                // The standard protocol: a fresh random resized crop and flip of every
                // training image each epoch, through the frozen backbone.
                let probe_augmenter = Augmenter::new(
                    &probe_pipeline(augmenter.pipeline(), model.data.image_size),
                    model.data.channels,
                )?;
                let feature_dim = train_features.size()[1] as usize;
                let features_of = |epoch: usize, indices: &[i64]| {
                    let index = Tensor::from_slice(indices).to_device(data.images.device());
                    let batch = data.images.index_select(0, &index);
                    let samples: Vec<u64> = indices.iter().map(|&i| i as u64).collect();
                    let key = Key::new(seed, Purpose::ProbeView, epoch as u64);
                    let views = probe_augmenter.apply(&batch, key, &samples);
                    let features = tch::no_grad(|| {
                        precision::extract(device, extraction, || trainer.network.backbone(&views))
                    });
                    features.to_kind(Kind::Float)
                };
                eval::linear_probe_with(
                    features_of,
                    train_labels,
                    &test_features,
                    test_labels,
                    feature_dim,
                    linear,
                    classes,
                    seed,
                )
            }
        });
    }
    Ok(())
}

/// The linear probe's training augmentation: random resized crop (scale 0.08–1, bicubic) and
/// flip at the model's image size, then the model pipeline's own normalisation.
fn probe_pipeline(model_pipeline: &Pipeline, size: usize) -> Pipeline {
    let mut ops = vec![
        AugOp::RandomResizedCrop {
            size,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            interpolation: Interpolation::Bicubic,
        },
        AugOp::HorizontalFlip { p: 0.5 },
    ];
    ops.extend(
        model_pipeline
            .ops
            .iter()
            .filter(|op| matches!(op, AugOp::Normalize { .. }))
            .cloned(),
    );
    Pipeline {
        name: "linear_probe".into(),
        ops,
        span: model_pipeline.span,
    }
}
