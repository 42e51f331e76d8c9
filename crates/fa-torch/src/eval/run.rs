//! `fa eval`: the evaluation protocols run on a stored checkpoint rather than at the end
//! of training.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tch::Device;

use crate::eval::protocols::{evaluate, Evaluator};
use crate::train::device_data::{load_split, load_test, DeviceData};
use crate::train::trainer::{geometry, model_augmenters};
use crate::train::{load_network, Summary, TrainError};
use fa_lang::ir::{KnnConfig, LinearConfig};
use fa_lang::valid::ValidModel;

/// How `fa eval` evaluates a checkpoint.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    pub device: Device,
    /// Where dataset paths are resolved.
    pub data_root: PathBuf,
    /// Run the kNN protocol (the usual one when the model configures none).
    pub knn: bool,
    /// Run the linear probe (the usual one when the model configures none).
    pub linear: bool,
}

/// Evaluates a checkpoint (`run` is a checkpoint file, or a run folder whose latest
/// checkpoint is taken): kNN and/or linear probe, and the baselines.
pub fn evaluate_run(
    valid: &ValidModel,
    run: &Path,
    options: &EvalOptions,
) -> Result<Summary, TrainError> {
    let EvalOptions {
        device,
        ref data_root,
        knn,
        linear,
    } = *options;
    let mut model = valid.model().clone();
    // Asking for an evaluation the file does not configure uses the usual protocol.
    let span = model.span;
    match (knn, model.eval.knn.is_some()) {
        (false, _) => model.eval.knn = None,
        (true, false) => {
            model.eval.knn = Some(KnnConfig {
                k: 200,
                temperature: 0.1,
                span,
            })
        }
        (true, true) => {}
    }
    match (linear, model.eval.linear.is_some()) {
        (false, _) => model.eval.linear = None,
        (true, false) => {
            // The defaults of a file's `eval { linear {} }`, so the flag and the file agree.
            model.eval.linear = Some(LinearConfig {
                span,
                ..LinearConfig::default()
            })
        }
        (true, true) => {}
    }
    let valid =
        fa_lang::valid::validate(model).map_err(|problems| TrainError::StoredModelInvalid {
            problems: fa_lang::diag::plain_errors(&problems),
        })?;
    let model = valid.model();
    let (_vs, network, step) = load_network(&valid, run, device)?;
    let augmenters = model_augmenters(&valid)?;
    let evaluator = Evaluator {
        valid: &valid,
        network: &network,
        augmenters: &augmenters,
    };
    let train_set = load_split(
        &model.data,
        data_root,
        &model.data.train_split,
        model.data.limit,
    )?;
    let data = DeviceData::new(&train_set, device);
    let test = load_test(model, data_root, &train_set, device)?;
    let started = Instant::now();
    let steps_per_epoch = geometry(model, data.len).map_or(1, |geo| geo.steps_per_epoch);
    let mut summary = Summary {
        model: model.name.clone(),
        steps: step,
        epochs: step / steps_per_epoch,
        ..Summary::default()
    };
    evaluate(&evaluator, &data, &test, device, &mut summary)?;
    summary.peak_memory = Some(crate::train::memory::PeakMemory::now(device));
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}
