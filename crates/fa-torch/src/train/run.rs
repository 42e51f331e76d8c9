//! The training loop: one validated model, its data and a run folder in, a trained and
//! evaluated model out, resumable at any checkpoint with bit-identical results on CPU.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use tch::{nn, Device, Kind, Tensor};

use crate::data::{self, Augmenter, ImageSet, LoadOptions};
use crate::eval::{self, Accuracy};
use crate::lower::Network;
use crate::optim::Optimizer;
use crate::schedule;
use crate::train::checkpoint::{self, Checkpoint, CheckpointMeta};
use crate::train::metrics::{MetricsWriter, Record};
use crate::train::precision;
use fa_base::random::{Key, Purpose};
use fa_lang::ir::{
    AugOp, DataConfig, Interpolation, KnnConfig, LinearConfig, LinearMode, Model, Pipeline,
    Precision,
};
use fa_lang::valid::ValidModel;

/// How `fa train` reports progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// A progress bar on a terminal, plain lines otherwise.
    Auto,
    /// Plain lines.
    Plain,
    /// One JSON object per line on stdout.
    Json,
    /// Nothing but errors.
    Quiet,
}

/// Everything about a run that is not in the model file.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub out: PathBuf,
    pub device: Device,
    pub data_root: PathBuf,
    pub resume: bool,
    pub log: LogFormat,
    /// Stop after this many optimiser steps (tests and smoke runs); the schedule still spans
    /// the file's epochs.
    pub max_steps: Option<u64>,
    /// Skip the final evaluation.
    pub skip_eval: bool,
    /// The resolved model as JSON, stored in the run folder and in checkpoints.
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("lowering failed: {0}")]
    Lower(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("the {what} became {value} at step {step} (epoch {epoch}); the parameters were not updated with it; {kept}")]
    NonFiniteLoss {
        /// `loss` or `gradient norm`.
        what: &'static str,
        value: f64,
        step: u64,
        /// Counted from 1, as the progress lines count.
        epoch: u64,
        /// Which checkpoint is kept, or that none was saved yet.
        kept: String,
    },
    #[error("the dataset has {images} training images, fewer than one effective batch of {batch}")]
    TooFewImages { images: usize, batch: usize },
    #[error("evaluation needs labels but split `{split}` has none")]
    NoLabels { split: String },
    #[error("--resume given but {} holds no checkpoint", .run.display())]
    NothingToResume { run: PathBuf },
    #[error("{} holds no checkpoint", .run.display())]
    NoCheckpoint { run: PathBuf },
    #[error("{} already holds a run (checkpoints up to {}); continue it with --resume, or train into another --out", .run.display(), .latest.display())]
    RunExists { run: PathBuf, latest: PathBuf },
    #[error("the {test} split's classes ({test_classes}) differ from the {train} split's ({train_classes}), so their labels cannot be compared")]
    ClassMismatch {
        train: String,
        test: String,
        train_classes: String,
        test_classes: String,
    },
    #[error("no tensor of the backbone `{backbone}` in {}", .path.display())]
    EmptyExport { backbone: String, path: PathBuf },
    #[error(transparent)]
    Metrics(#[from] crate::train::metrics::MetricsError),
    #[error(transparent)]
    Precision(#[from] precision::PrecisionError),
    #[error("torch error: {0}")]
    Torch(#[from] tch::TchError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TrainError {
    let what = what.into();
    move |source| TrainError::Io { what, source }
}

/// What a finished run reports.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub model: String,
    pub steps: u64,
    pub epochs: u64,
    pub seconds: f64,
    pub final_loss: Option<f64>,
    pub collapse_std: Option<f64>,
    pub healthy_std: f64,
    pub knn: Option<Accuracy>,
    pub linear: Option<Accuracy>,
    pub random_init_knn: Option<Accuracy>,
    pub pixels_knn: Option<Accuracy>,
}

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
) -> Result<ImageSet, TrainError> {
    Ok(data::load(
        config,
        root,
        split,
        &LoadOptions {
            limit,
            ..LoadOptions::default()
        },
    )?)
}

/// The online model with everything it needs to take a step.
struct Trainer<'a> {
    valid: &'a ValidModel,
    vs: nn::VarStore,
    network: Network,
    optimizer: Optimizer,
    augmenters: Vec<Augmenter>,
    seed: u64,
    /// The forward pass runs under bfloat16 autocast (CUDA with `precision: bf16`).
    autocast: bool,
}

fn model_augmenters(valid: &ValidModel) -> Result<Vec<Augmenter>, TrainError> {
    let model = valid.model();
    valid
        .views()
        .iter()
        .map(|&view| {
            let fa_lang::ir::NodeKind::View { pipeline } = &model.graph[view].kind else {
                unreachable!("views() holds view nodes")
            };
            Ok(Augmenter::new(
                &model.pipelines[pipeline],
                model.data.channels,
            )?)
        })
        .collect()
}

/// The network of `valid` with parameters initialised from the stream of (`seed`, `purpose`):
/// [`Purpose::Init`] for the trained network, [`Purpose::BaselineInit`] for the baseline.
fn build_network(
    valid: &ValidModel,
    device: Device,
    seed: u64,
    purpose: Purpose,
) -> Result<(nn::VarStore, Network), TrainError> {
    tch::manual_seed(Key::new(seed, purpose, 0).torch_seed());
    let vs = nn::VarStore::new(device);
    let network = Network::new(&vs.root(), valid).map_err(|e| TrainError::Lower(e.to_string()))?;
    Ok((vs, network))
}

/// Named trainable parameters in a stable order.
fn trainable(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, tensor)| tensor.requires_grad())
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// Every variable (parameters, buffers, EMA copies, banks) in a stable order.
fn all_variables(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// A hash of the parameter names and shapes, so a checkpoint of another model is refused.
fn fingerprint(vs: &nn::VarStore) -> String {
    let shapes: Vec<(String, Vec<i64>)> = all_variables(vs)
        .into_iter()
        .map(|(name, tensor)| (name, tensor.size()))
        .collect();
    checkpoint::fingerprint(&shapes)
}

/// Schedule geometry derived from the model and the dataset size.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    batch: usize,
    accumulate: usize,
    steps_per_epoch: u64,
    total_steps: u64,
    warmup_steps: u64,
    peak_lr: f64,
}

fn geometry(model: &Model, images: usize) -> Result<Geometry, TrainError> {
    let batch = model.data.batch_size;
    let accumulate = model.optim.accumulate.max(1);
    let effective = batch * accumulate;
    let steps_per_epoch = (images / effective) as u64;
    if steps_per_epoch == 0 {
        return Err(TrainError::TooFewImages {
            images,
            batch: effective,
        });
    }
    let total_steps = steps_per_epoch * model.train.epochs as u64;
    let warmup_steps = (model.optim.warmup_epochs * steps_per_epoch as f64).round() as u64;
    Ok(Geometry {
        batch,
        accumulate,
        steps_per_epoch,
        total_steps,
        warmup_steps,
        peak_lr: model.optim.lr.resolve(effective),
    })
}

/// Trains `valid` into `options.out`, then evaluates it. Returns the run's summary.
pub fn train(valid: &ValidModel, options: &TrainOptions) -> Result<Summary, TrainError> {
    let model = valid.model();
    let started = Instant::now();
    // Refuse before any work: a fresh run never mixes with an old one in the same folder.
    let existing = checkpoint::latest(&options.out);
    match (&existing, options.resume) {
        (Some(latest), false) => {
            return Err(TrainError::RunExists {
                run: options.out.clone(),
                latest: latest.clone(),
            })
        }
        (None, true) => {
            return Err(TrainError::NothingToResume {
                run: options.out.clone(),
            })
        }
        _ => {}
    }

    let autocast = precision::uses_autocast(model.train.precision, options.device)?;
    if model.train.precision != Precision::F32 && !autocast && options.log != LogFormat::Quiet {
        eprintln!(
            "note: precision {:?} applies on CUDA only; training in float32 on {:?}",
            model.train.precision, options.device
        );
    }
    let train_set = load_split(
        &model.data,
        &options.data_root,
        &model.data.train_split,
        model.data.limit,
    )?;
    let data = DeviceData::new(&train_set, options.device);
    // Evaluation data is loaded and checked now, not after hours of training.
    let evaluates = (!options.skip_eval
        && (model.eval.knn.is_some() || model.eval.linear.is_some()))
        || (model.train.knn_every > 0 && model.eval.knn.is_some());
    let test = if evaluates {
        Some(load_test(
            model,
            &options.data_root,
            &train_set,
            options.device,
        )?)
    } else {
        None
    };
    let geo = geometry(model, data.len)?;
    let seed_value = model.train.seed;

    let (vs, network) = build_network(valid, options.device, seed_value, Purpose::Init)?;
    let optimizer = Optimizer::new(&model.optim, trainable(&vs));
    let mut trainer = Trainer {
        valid,
        vs,
        network,
        optimizer,
        augmenters: model_augmenters(valid)?,
        seed: seed_value,
        autocast,
    };

    let mut step: u64 = 0;
    if let (Some(path), true) = (&existing, options.resume) {
        step = trainer.restore(path, options.device, &options.source, options.log)?;
        keep_metrics_up_to(
            &options.out.join("metrics.jsonl"),
            step,
            geo.steps_per_epoch,
        )?;
    }
    // Written only once the checkpoint (if any) has been accepted, so a refused resume
    // leaves the run folder as it was.
    checkpoint::write_file_atomically(&options.out.join("model.json"), options.source.as_bytes())
        .map_err(io("cannot write model.json"))?;

    let metrics_path = options.out.join("metrics.jsonl");
    let mut metrics = MetricsWriter::open(&metrics_path)?;
    let progress = Progress::new(options.log, geo.total_steps, step);
    let last_step = options
        .max_steps
        .map_or(geo.total_steps, |max| geo.total_steps.min(max));
    let mut epoch_stats = EpochStats::default();
    let mut last_loss = None;
    let mut window = Instant::now();
    let mut last_saved = options.resume.then_some(step);

    while step < last_step {
        let epoch = step / geo.steps_per_epoch;
        let order = Key::new(seed_value, Purpose::DataOrder, epoch)
            .stream(0)
            .permutation(data.len);
        let position = (step % geo.steps_per_epoch) as usize * geo.batch * geo.accumulate;
        let lr = schedule::learning_rate(
            step as usize,
            geo.total_steps as usize,
            geo.warmup_steps as usize,
            geo.peak_lr,
            model.optim.schedule,
        );
        let outcome = trainer.step(
            &data,
            &order[position..position + geo.batch * geo.accumulate],
            geo,
            step,
            lr,
        )?;
        if let Some((what, value)) = outcome.non_finite() {
            let kept = match checkpoint::latest(&options.out) {
                Some(path) => format!("the last good checkpoint is kept: {}", path.display()),
                None => "no checkpoint had been saved yet".to_string(),
            };
            return Err(TrainError::NonFiniteLoss {
                what,
                value,
                step: step + 1,
                epoch: epoch + 1,
                kept,
            });
        }
        step += 1;
        last_loss = Some(outcome.loss);
        epoch_stats.add(&outcome);
        let images_per_s =
            (geo.batch * geo.accumulate) as f64 / window.elapsed().as_secs_f64().max(1e-9);
        window = Instant::now();
        let record = Record::Step {
            step,
            epoch,
            loss: outcome.loss,
            terms: outcome.terms.clone(),
            lr,
            ema_momentum: outcome.ema_momentum,
            images_per_s,
            grad_norm: outcome.grad_norm,
        };
        progress.step(&record);
        metrics.write(&record)?;

        let epoch_done = step % geo.steps_per_epoch == 0;
        if epoch_done {
            let finished_epoch = step / geo.steps_per_epoch;
            let knn_every = model.train.knn_every;
            let knn_top1 = if knn_every > 0
                && finished_epoch % knn_every as u64 == 0
                && finished_epoch < model.train.epochs as u64
            {
                test.as_ref()
                    .and_then(|test| quick_knn(&trainer, &data, test, model))
            } else {
                None
            };
            let record = epoch_stats.finish(finished_epoch, knn_top1);
            progress.epoch(&record);
            if let (
                Record::Epoch {
                    collapse_std: Some(std),
                    ..
                },
                Some(width),
            ) = (&record, trainer.projection_width())
            {
                if let Some(warning) = collapse_warning(*std, width) {
                    progress.warn(&warning);
                }
            }
            metrics.write(&record)?;
            let every = model.train.checkpoint_every.max(1) as u64;
            if finished_epoch % every == 0 || step == geo.total_steps {
                trainer.save(&options.out, step, geo, options)?;
                last_saved = Some(step);
            }
        }
    }
    if last_saved != Some(step) {
        // Stopped by --max-steps between checkpoints: keep the progress.
        trainer.save(&options.out, step, geo, options)?;
    }
    progress.finish();

    let mut summary = Summary {
        model: model.name.clone(),
        steps: step,
        epochs: step / geo.steps_per_epoch,
        final_loss: last_loss,
        collapse_std: epoch_stats.last_collapse,
        healthy_std: trainer
            .projection_width()
            .map_or(0.0, |d| 1.0 / (d as f64).sqrt()),
        ..Summary::default()
    };
    if !options.skip_eval {
        if let Some(test) = &test {
            evaluate(&trainer.evaluator(), &data, test, options, &mut summary)?;
        }
        metrics.write(&Record::Eval {
            step: Some(step),
            random_init_linear_top1: None,
            knn_top1: summary.knn.map(|a| a.top1),
            knn_top5: summary.knn.map(|a| a.top5),
            linear_top1: summary.linear.map(|a| a.top1),
            linear_top5: summary.linear.map(|a| a.top5),
            random_init_knn_top1: summary.random_init_knn.map(|a| a.top1),
            pixels_knn_top1: summary.pixels_knn.map(|a| a.top1),
        })?;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    let json = serde_json::to_string_pretty(&summary).expect("summary serialises");
    checkpoint::write_file_atomically(&options.out.join("summary.json"), json.as_bytes())
        .map_err(io("cannot write summary.json"))?;
    Ok(summary)
}

/// What one optimiser step reports.
struct StepOutcome {
    loss: f64,
    terms: std::collections::BTreeMap<String, f64>,
    ema_momentum: Option<f64>,
    /// The global gradient norm before clipping.
    grad_norm: Option<f64>,
    collapse_std: f64,
    nn_match: Option<f64>,
}

impl StepOutcome {
    /// What was not finite, when something was: then the step did not update anything.
    fn non_finite(&self) -> Option<(&'static str, f64)> {
        if !self.loss.is_finite() {
            return Some(("loss", self.loss));
        }
        self.grad_norm
            .filter(|norm| !norm.is_finite())
            .map(|norm| ("gradient norm", norm))
    }
}

impl Trainer<'_> {
    /// One optimiser step over `indices` (accumulate × batch dataset indices).
    fn step(
        &mut self,
        data: &DeviceData,
        indices: &[usize],
        geo: Geometry,
        step: u64,
        lr: f64,
    ) -> Result<StepOutcome, TrainError> {
        self.optimizer.zero_grad();
        // The statistics of the micro-batches stay on the device, summed, and come to the
        // host once per step: [loss, each term, projection std, NN label match, NN seen].
        let mut stats: Option<Tensor> = None;
        let mut term_names: Vec<String> = Vec::new();
        let scale = 1.0 / geo.accumulate as f64;
        for micro in 0..geo.accumulate {
            let chunk = &indices[micro * geo.batch..(micro + 1) * geo.batch];
            let index_tensor =
                Tensor::from_slice(&chunk.iter().map(|&i| i as i64).collect::<Vec<_>>())
                    .to_device(data.images.device());
            let batch = data.images.index_select(0, &index_tensor);
            let micro_step = step * geo.accumulate as u64 + micro as u64;
            let epoch = step / geo.steps_per_epoch;
            let samples: Vec<u64> = chunk.iter().map(|&i| i as u64).collect();
            let views: Vec<Tensor> = self
                .augmenters
                .iter()
                .enumerate()
                .map(|(view, augmenter)| {
                    let key = Key::new(self.seed, Purpose::View(view as u32), epoch);
                    augmenter.apply(&batch, key, &samples)
                })
                .collect();
            tch::manual_seed(Key::new(self.seed, Purpose::Network, micro_step).torch_seed());
            let network = &mut self.network;
            let output = precision::forward(self.autocast, || {
                network.forward(&views, &index_tensor, true)
            });
            (&output.total / geo.accumulate as f64).backward();

            let scalar = |t: &Tensor| t.detach().to_kind(Kind::Double);
            let mut row = vec![scalar(&output.total)];
            row.extend(output.terms.iter().map(|(_, value)| scalar(value)));
            row.push(scalar(
                &output
                    .projection
                    .std_dim(Some(&[0i64][..]), false, false)
                    .mean(Kind::Float),
            ));
            if let (Some((neighbours, queries)), Some(labels)) = (&output.nn_hits, &data.labels) {
                let valid = neighbours.ge(0);
                let count = valid.sum(Kind::Double);
                let same = labels
                    .index_select(0, &neighbours.clamp_min(0))
                    .eq_tensor(&labels.index_select(0, queries))
                    .logical_and(&valid)
                    .sum(Kind::Double);
                row.push(same / count.clamp_min(1.0));
                row.push(count.gt(0.0).to_kind(Kind::Double));
            }
            let row = Tensor::stack(&row, 0) * scale;
            stats = Some(match stats {
                None => row,
                Some(sum) => sum + row,
            });
            term_names = output.terms.into_iter().map(|(name, _)| name).collect();
        }
        let values = Vec::<f64>::try_from(
            stats
                .expect("at least one micro-batch")
                .to_device(Device::Cpu),
        )
        .expect("statistics are a 1-D double tensor");
        let term_count = term_names.len();
        let loss_sum = values[0];
        let terms = term_names
            .into_iter()
            .zip(values[1..=term_count].iter().copied())
            .collect();
        let collapse = values[term_count + 1];
        // NN statistics: the mean label-match fraction, when some micro-batch saw neighbours.
        let nn_match = match values.get(term_count + 2..term_count + 4) {
            Some(&[fraction, seen]) if seen > 0.0 => Some(fraction),
            _ => None,
        };
        let grad_norm = match self.valid.model().optim.clip_grad_norm {
            Some(max) => self.optimizer.clip_grad_norm(max),
            None => self.optimizer.grad_norm(),
        };
        let mut outcome = StepOutcome {
            loss: loss_sum,
            terms,
            ema_momentum: None,
            grad_norm: Some(grad_norm),
            collapse_std: collapse,
            nn_match,
        };
        // A non-finite loss or gradient must not reach the parameters: the run stops with
        // the parameters of the last finite step.
        if outcome.non_finite().is_some() {
            return Ok(outcome);
        }
        self.optimizer.step(lr);
        let progress = (step + 1) as f64 / geo.total_steps.max(1) as f64;
        outcome.ema_momentum = self.network.update_targets(progress);
        Ok(outcome)
    }

    fn projection_width(&self) -> Option<usize> {
        self.valid
            .terms()
            .first()
            .and_then(|term| match self.valid.shape(term.left) {
                fa_lang::ir::FeatureShape::Vector { width, .. } => Some(width),
                fa_lang::ir::FeatureShape::Image { .. } => None,
            })
    }

    fn save(
        &self,
        run: &Path,
        step: u64,
        geo: Geometry,
        options: &TrainOptions,
    ) -> Result<(), TrainError> {
        let epoch = step / geo.steps_per_epoch;
        let position = (step % geo.steps_per_epoch) * (geo.batch * geo.accumulate) as u64;
        let mut tensors: Vec<(String, Tensor)> = all_variables(&self.vs)
            .into_iter()
            .map(|(name, tensor)| (format!("model/{name}"), tensor))
            .collect();
        tensors.extend(self.optimizer.state());
        let meta = CheckpointMeta {
            format_version: checkpoint::FORMAT_VERSION,
            extra: Default::default(),
            model_name: self.valid.model().name.clone(),
            step,
            epoch,
            position,
            seed: self.seed,
            source: options.source.clone(),
            fingerprint: fingerprint(&self.vs),
        };
        checkpoint::save(
            &checkpoint::checkpoint_path(run, step),
            &Checkpoint { tensors, meta },
        )?;
        Ok(())
    }

    /// Loads the checkpoint at `path` into the model and optimiser; returns its step. A
    /// checkpoint of the same parameters but another configuration (`source`) is accepted
    /// with a warning: changing the learning rate of a resumed run is a legitimate choice.
    fn restore(
        &mut self,
        path: &Path,
        device: Device,
        source: &str,
        log: LogFormat,
    ) -> Result<u64, TrainError> {
        let ckpt = checkpoint::load(path, device)?;
        if !source.is_empty()
            && !ckpt.meta.source.is_empty()
            && ckpt.meta.source != source
            && log != LogFormat::Quiet
        {
            eprintln!(
                "warning: resuming {} with a configuration that differs from the one it was saved with; the schedule and data order follow the new one",
                path.display()
            );
        }
        let expected: Vec<(String, Vec<i64>)> = all_variables(&self.vs)
            .into_iter()
            .map(|(name, tensor)| (format!("model/{name}"), tensor.size()))
            .collect();
        checkpoint::check_compatible(&ckpt, &expected)?;
        let variables = self.vs.variables();
        tch::no_grad(|| {
            for (name, tensor) in &ckpt.tensors {
                if let Some(stripped) = name.strip_prefix("model/") {
                    if let Some(target) = variables.get(stripped) {
                        let mut target = target.shallow_clone();
                        target.copy_(tensor);
                    }
                }
            }
        });
        let optimizer_state: Vec<(String, Tensor)> = ckpt
            .tensors
            .iter()
            .filter(|(name, _)| !name.starts_with("model/"))
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        self.optimizer.load_state(&optimizer_state)?;
        Ok(ckpt.meta.step)
    }

    fn evaluator(&self) -> Evaluator<'_> {
        Evaluator {
            valid: self.valid,
            network: &self.network,
            augmenters: &self.augmenters,
        }
    }
}

/// What evaluation needs of a trained model.
struct Evaluator<'a> {
    valid: &'a ValidModel,
    network: &'a Network,
    augmenters: &'a [Augmenter],
}

impl Evaluator<'_> {
    /// Backbone features of every image, in order, with the evaluation transform.
    fn features(&self, images: &Tensor, augmenter: &Augmenter) -> Tensor {
        backbone_features(self.network, images, augmenter)
    }
}

/// Frozen backbone features of `images` in chunks.
fn backbone_features(network: &Network, images: &Tensor, augmenter: &Augmenter) -> Tensor {
    let len = images.size()[0];
    let chunk = 512;
    let mut parts = Vec::new();
    tch::no_grad(|| {
        let mut start = 0;
        while start < len {
            let end = (start + chunk).min(len);
            let batch = augmenter.eval_transform(&images.narrow(0, start, end - start));
            parts.push(network.backbone(&batch).to_kind(Kind::Float));
            start = end;
        }
    });
    Tensor::cat(&parts, 0)
}

fn quick_knn(
    trainer: &Trainer,
    data: &DeviceData,
    test: &DeviceData,
    model: &Model,
) -> Option<f64> {
    let trainer = trainer.evaluator();
    let (knn, train_labels, test_labels) = (
        model.eval.knn.as_ref()?,
        data.labels.as_ref()?,
        test.labels.as_ref()?,
    );
    let augmenter = &trainer.augmenters[0];
    let train_features = trainer.features(&data.images, augmenter);
    let test_features = trainer.features(&test.images, augmenter);
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

/// Loads the evaluation split and checks what evaluation needs: labels on both splits and
/// the same classes (labels are indices into each split's class list).
fn load_test(
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

/// After a resume from step `step`, keeps only the metrics records up to that step, so the
/// steps that are trained again are not recorded twice.
fn keep_metrics_up_to(path: &Path, step: u64, steps_per_epoch: u64) -> Result<(), TrainError> {
    if !path.exists() {
        return Ok(());
    }
    let records = crate::train::metrics::read_metrics(path)?;
    let mut text = String::new();
    for record in records {
        let keep = match &record {
            Record::Step { step: s, .. } => *s <= step,
            Record::Epoch { epoch, .. } => *epoch * steps_per_epoch <= step,
            Record::Eval { .. } => false,
        };
        if keep {
            text += &serde_json::to_string(&record).expect("records serialise");
            text.push('\n');
        }
    }
    checkpoint::write_file_atomically(path, text.as_bytes())
        .map_err(io("cannot rewrite metrics.jsonl"))
}

/// The final evaluation: kNN and linear probe of the trained backbone, and the baselines.
fn evaluate(
    trainer: &Evaluator,
    data: &DeviceData,
    test: &DeviceData,
    options: &TrainOptions,
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
    let train_features = trainer.features(&data.images, augmenter);
    let test_features = trainer.features(&test.images, augmenter);

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
        // Baselines: the same encoder at random initialisation, and raw pixels.
        let (_vs, random_network) = build_network(
            trainer.valid,
            options.device,
            model.train.seed,
            Purpose::BaselineInit,
        )?;
        summary.random_init_knn = Some(accuracy(
            &backbone_features(&random_network, &data.images, augmenter),
            &backbone_features(&random_network, &test.images, augmenter),
        ));
        let pixels = |images: &Tensor| {
            augmenter
                .eval_transform(images)
                .flatten(1, -1)
                .to_kind(Kind::Float)
        };
        summary.pixels_knn = Some(accuracy(&pixels(&data.images), &pixels(&test.images)));
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
                    tch::no_grad(|| trainer.network.backbone(&views).to_kind(Kind::Float))
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

/// Per-epoch accumulation of the collapse monitor and loss.
#[derive(Default)]
struct EpochStats {
    started: Option<Instant>,
    steps: u64,
    loss: f64,
    collapse: f64,
    nn_match: f64,
    nn_steps: u64,
    last_collapse: Option<f64>,
}

impl EpochStats {
    fn add(&mut self, outcome: &StepOutcome) {
        self.started.get_or_insert_with(Instant::now);
        self.steps += 1;
        self.loss += outcome.loss;
        self.collapse += outcome.collapse_std;
        if let Some(fraction) = outcome.nn_match {
            self.nn_match += fraction;
            self.nn_steps += 1;
        }
    }

    fn finish(&mut self, epoch: u64, knn_top1: Option<f64>) -> Record {
        let steps = self.steps.max(1) as f64;
        let collapse = self.collapse / steps;
        self.last_collapse = Some(collapse);
        let record = Record::Epoch {
            epoch,
            loss: self.loss / steps,
            collapse_std: Some(collapse),
            nn_label_match: (self.nn_steps > 0).then(|| self.nn_match / self.nn_steps as f64),
            knn_top1,
            seconds: self.started.map_or(0.0, |s| s.elapsed().as_secs_f64()),
        };
        let last = self.last_collapse;
        *self = EpochStats {
            last_collapse: last,
            ..EpochStats::default()
        };
        record
    }
}

/// A warning when the projections' spread has fallen far below the healthy `1/√d`.
pub fn collapse_warning(std: f64, width: usize) -> Option<String> {
    let healthy = 1.0 / (width as f64).sqrt();
    (std < 0.2 * healthy).then(|| {
        format!("warning: the projections are collapsing (std {std:.4}, healthy ≈ {healthy:.4}); check stop-gradients, the predictor and the learning rate")
    })
}

/// Progress output: an indicatif bar on a terminal, plain or JSON lines otherwise.
struct Progress {
    format: LogFormat,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(format: LogFormat, total: u64, position: u64) -> Progress {
        use std::io::IsTerminal;
        let format = match format {
            LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Auto,
            LogFormat::Auto => LogFormat::Plain,
            other => other,
        };
        let bar = (format == LogFormat::Auto).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} steps  {msg}  eta {eta}",
                )
                .expect("template is valid"),
            );
            bar.set_position(position);
            bar
        });
        Progress { format, bar }
    }

    fn step(&self, record: &Record) {
        let Record::Step {
            step,
            loss,
            terms,
            lr,
            images_per_s,
            ..
        } = record
        else {
            return;
        };
        match self.format {
            LogFormat::Auto => {
                if let Some(bar) = &self.bar {
                    bar.set_position(*step);
                    let terms: Vec<String> =
                        terms.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
                    bar.set_message(format!(
                        "loss {loss:.4} [{}] lr {lr:.4} {images_per_s:.0} img/s",
                        terms.join(", ")
                    ));
                }
            }
            LogFormat::Plain => {
                if *step % 50 == 0 || *step == 1 {
                    eprintln!(
                        "step {step:>7}  loss {loss:.4}  lr {lr:.5}  {images_per_s:.0} img/s"
                    );
                }
            }
            LogFormat::Json => println!(
                "{}",
                serde_json::to_string(record).expect("records serialise")
            ),
            LogFormat::Quiet => {}
        }
    }

    fn epoch(&self, record: &Record) {
        let Record::Epoch {
            epoch,
            loss,
            collapse_std,
            nn_label_match,
            knn_top1,
            seconds,
        } = record
        else {
            return;
        };
        let mut line = format!("epoch {epoch:>4}  loss {loss:.4}  {seconds:.1}s");
        if let Some(std) = collapse_std {
            line += &format!("  proj std {std:.4}");
        }
        if let Some(m) = nn_label_match {
            line += &format!("  nn label match {:.1}%", m * 100.0);
        }
        if let Some(k) = knn_top1 {
            line += &format!("  knn {k:.2}%");
        }
        match self.format {
            LogFormat::Auto => match &self.bar {
                Some(bar) => bar.println(line),
                None => eprintln!("{line}"),
            },
            LogFormat::Plain => eprintln!("{line}"),
            LogFormat::Json => println!(
                "{}",
                serde_json::to_string(record).expect("records serialise")
            ),
            LogFormat::Quiet => {}
        }
    }

    fn warn(&self, line: &str) {
        match (&self.bar, self.format) {
            (Some(bar), _) => bar.println(line),
            (None, LogFormat::Json) => println!(
                "{}",
                serde_json::json!({ "kind": "warning", "message": line })
            ),
            _ => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A few lines describing what will be trained: modules, parameters, terms, schedule.
pub fn describe(valid: &ValidModel) -> String {
    let model = valid.model();
    let plan = fa_lang::plan::plan(valid);
    let data = &model.data;
    let optim = &model.optim;
    let effective = data.batch_size * optim.accumulate.max(1);
    let mut lines = vec![
        format!(
            "  data     {:?} `{}` split {} (eval on {}), {}×{}×{}, batch {} × accumulate {}{}",
            data.format,
            data.path,
            data.train_split,
            data.test_split,
            data.channels,
            data.image_size,
            data.image_size,
            data.batch_size,
            optim.accumulate,
            data.limit.map_or(String::new(), |limit| format!(", first {limit} images"))
        ),
        format!("  modules  {} ({} trainable parameters)", model.modules.keys().cloned().collect::<Vec<_>>().join(", "), plan.trainable),
        format!("  loss     {} term(s) combined {:?}", valid.term_count(), model.combine),
        format!(
            "  optim    {:?}, peak lr {:.4} ({} {:?} at effective batch {effective}), momentum {}, weight decay {}, warm-up {} epochs, {:?}{}",
            optim.kind,
            optim.lr.resolve(effective),
            optim.lr.value,
            optim.lr.scaling,
            optim.momentum,
            optim.weight_decay,
            optim.warmup_epochs,
            optim.schedule,
            optim.clip_grad_norm.map_or(String::new(), |clip| format!(", clip {clip}"))
        ),
        format!("  train    {} epochs, seed {}, {:?}", model.train.epochs, model.train.seed, model.train.precision),
    ];
    if let Some(knn) = &model.eval.knn {
        lines.push(format!("  eval     kNN k {} T {}", knn.k, knn.temperature));
    }
    if let Some(linear) = &model.eval.linear {
        lines.push(format!(
            "  eval     linear probe {:?}, {} epochs, lr {}",
            linear.mode, linear.epochs, linear.lr
        ));
    }
    lines.join("\n")
}

/// Builds the network of `valid` and loads a checkpoint into it: `run` is a checkpoint file
/// or a run folder, whose latest checkpoint is taken.
pub fn load_network(
    valid: &ValidModel,
    run: &Path,
    device: Device,
) -> Result<(nn::VarStore, Network, u64), TrainError> {
    let model = valid.model();
    // A checkpoint file is taken as it is; a run folder gives its latest checkpoint.
    let path = if run.is_file() {
        run.to_path_buf()
    } else {
        checkpoint::latest(run).ok_or_else(|| TrainError::NothingToResume {
            run: run.to_path_buf(),
        })?
    };
    let (vs, network) = build_network(valid, device, model.train.seed, Purpose::Init)?;
    let optimizer = Optimizer::new(&model.optim, trainable(&vs));
    let mut trainer = Trainer {
        valid,
        vs,
        network,
        optimizer,
        augmenters: Vec::new(),
        seed: model.train.seed,
        autocast: false,
    };
    let step = trainer.restore(&path, device, "", LogFormat::Quiet)?;
    Ok((trainer.vs, trainer.network, step))
}

/// Evaluates a checkpoint (`run` is a checkpoint file, or a run folder whose latest
/// checkpoint is taken): kNN and/or linear probe, and the baselines.
pub fn evaluate_run(
    valid: &ValidModel,
    run: &Path,
    device: Device,
    data_root: &Path,
    knn: bool,
    linear: bool,
) -> Result<Summary, TrainError> {
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
            model.eval.linear = Some(LinearConfig {
                epochs: 60,
                lr: 1.0,
                batch_size: 256,
                momentum: 0.9,
                weight_decay: 0.0,
                milestones: vec![40, 50, 55],
                mode: LinearMode::Features,
                span,
            })
        }
        (true, true) => {}
    }
    let valid = fa_lang::valid::validate(model)
        .map_err(|_| TrainError::Lower("the stored model no longer validates".into()))?;
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
    let options = TrainOptions {
        out: run.to_path_buf(),
        device,
        data_root: data_root.to_path_buf(),
        resume: true,
        log: LogFormat::Quiet,
        max_steps: None,
        skip_eval: false,
        source: String::new(),
    };
    let started = Instant::now();
    let steps_per_epoch = geometry(model, data.len).map_or(1, |geo| geo.steps_per_epoch);
    let mut summary = Summary {
        model: model.name.clone(),
        steps: step,
        epochs: step / steps_per_epoch,
        ..Summary::default()
    };
    evaluate(&evaluator, &data, &test, &options, &mut summary)?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Writes the backbone's tensors of the latest checkpoint of `run` under torchvision's names
/// (the module prefix stripped); returns how many tensors were written.
pub fn export_backbone(valid: &ValidModel, run: &Path, out: &Path) -> Result<usize, TrainError> {
    let path = if run.is_file() {
        run.to_path_buf()
    } else {
        checkpoint::latest(run).ok_or_else(|| TrainError::NoCheckpoint {
            run: run.to_path_buf(),
        })?
    };
    let ckpt = checkpoint::load(&path, Device::Cpu)?;
    let (_vs, network) = build_network(valid, Device::Cpu, 0, Purpose::Init)?;
    let backbone = network.backbone_name().to_string();
    let prefix = format!("model/{backbone}.");
    let tensors: Vec<(String, Tensor)> = ckpt
        .tensors
        .iter()
        .filter_map(|(name, tensor)| {
            name.strip_prefix(&prefix)
                .map(|short| (short.to_string(), tensor.shallow_clone()))
        })
        .collect();
    if tensors.is_empty() {
        return Err(TrainError::EmptyExport { backbone, path });
    }
    // Through a temporary file and a rename, like every file fa writes.
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = out.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    if let Err(error) = Tensor::write_safetensors(&tensors, &temporary) {
        let _ = std::fs::remove_file(&temporary);
        return Err(error.into());
    }
    std::fs::rename(&temporary, out).map_err(io(format!("cannot write {}", out.display())))?;
    Ok(tensors.len())
}

#[cfg(test)]
mod tests {
    use super::collapse_warning;

    #[test]
    fn collapse_is_reported_only_far_below_the_healthy_spread() {
        // d = 100: healthy std 0.1.
        assert!(collapse_warning(0.09, 100).is_none());
        assert!(collapse_warning(0.021, 100).is_none());
        assert!(collapse_warning(0.019, 100).unwrap().contains("collapsing"));
        assert!(collapse_warning(0.0, 100).is_some());
    }
}
