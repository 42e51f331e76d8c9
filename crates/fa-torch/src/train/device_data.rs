//! The training and evaluation splits as tensors on the training device.

use std::path::Path;

use tch::{Device, Tensor};

use crate::data::{self, DataError, ImageSet, LoadOptions};
use crate::train::TrainError;
use fa_lang::ir::{DataConfig, Model};

/// The training data on the device, with labels when the split has them.
pub struct DeviceData {
    pub images: Tensor,
    pub labels: Option<Tensor>,
    pub len: usize,
    pub classes: usize,
}

impl DeviceData {
    pub fn new(set: &ImageSet, device: Device) -> DeviceData {
        DeviceData {
            images: data::to_tensor(set, device),
            labels: set.labels.as_ref().map(|labels| {
                Tensor::from_slice(&labels.iter().map(|&l| l as i64).collect::<Vec<_>>())
                    .to_device(device)
            }),
            len: set.len,
            classes: set.classes.len().max(1),
        }
    }
}

/// Loads one split of the model's dataset.
pub fn load_split(
    config: &DataConfig,
    root: &Path,
    split: &str,
    limit: Option<usize>,
) -> Result<ImageSet, DataError> {
    data::load(
        config,
        root,
        split,
        &LoadOptions {
            limit,
            ..LoadOptions::default()
        },
    )
}

/// Loads the evaluation split and checks what evaluation needs: labels on both splits and
/// the same classes (labels are indices into each split's class list).
pub(crate) fn load_test(
    model: &Model,
    root: &Path,
    train_set: &ImageSet,
    device: Device,
) -> Result<DeviceData, TrainError> {
    if train_set.labels.is_none() {
        return Err(TrainError::NoLabels {
            split: model.data.train_split.clone(),
        });
    }
    let test_set = load_split(&model.data, root, &model.data.test_split, None)?;
    if test_set.labels.is_none() {
        return Err(TrainError::NoLabels {
            split: model.data.test_split.clone(),
        });
    }
    if !train_set.classes.is_empty()
        && !test_set.classes.is_empty()
        && train_set.classes != test_set.classes
    {
        return Err(TrainError::ClassMismatch {
            train: model.data.train_split.clone(),
            test: model.data.test_split.clone(),
            train_classes: train_set.classes.join(", "),
            test_classes: test_set.classes.join(", "),
        });
    }
    Ok(DeviceData::new(&test_set, device))
}
