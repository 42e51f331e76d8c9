//! The training loop: one validated model, its data and a run folder in, a trained and
//! evaluated model out, resumable at any checkpoint with bit-identical results on CPU.

use std::path::PathBuf;
use std::time::Instant;

use tch::{nn, Device, Tensor};

use crate::data::Augmenter;
use crate::dist::{Collectives, DistError};
use crate::eval::protocols::{self, Evaluator};
use crate::lower::Network;
use crate::optim::Optimizer;
use crate::schedule;
use crate::train::checkpoint;
use crate::train::device_data::{load_split, load_test, DeviceData};
use crate::train::epoch::{collapse_warning, EpochStats};
use crate::train::error::io;
use crate::train::interrupt;
use crate::train::memory::PeakMemory;
use crate::train::metrics::{MetricsWriter, Record};
use crate::train::precision;
use crate::train::progress::{LogFormat, Progress};
use crate::train::resume::keep_metrics_up_to;
use crate::train::run_folder::{self, RunLock};
use crate::train::tensorboard::EventsWriter;
use crate::train::{Summary, TrainError};
use fa_base::random::{Key, Purpose};
use fa_lang::ir::{Model, Precision};
use fa_lang::valid::ValidModel;

/// Everything about a run that is not in the model file.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub out: PathBuf,
    pub device: Device,
    pub data_root: PathBuf,
    pub resume: bool,
    /// Replace the run already in `out` (its metrics, model, summary and checkpoints).
    pub overwrite: bool,
    pub log: LogFormat,
    /// Stop after this many optimiser steps (tests and smoke runs); the schedule still spans
    /// the file's epochs.
    pub max_steps: Option<u64>,
    /// Skip the final evaluation.
    pub skip_eval: bool,
    /// The resolved model as JSON, stored in the run folder and in checkpoints.
    pub source: String,
    /// Also write TensorBoard's events file (`fa train --no-tensorboard` turns it off).
    pub tensorboard: bool,
}

/// This process's part in a data-parallel job (docs/distributed.md).
#[derive(Clone, Debug)]
pub struct Parallel {
    pub collectives: Collectives,
    /// Batch norm normalises with the global batch's statistics (online and EMA modules).
    pub sync_batch_norm: bool,
    /// A folder where each rank appends, per step, the samples it trained on and the norm of
    /// its local gradient before averaging (`rank<r>.jsonl`): a diagnostic the tests read.
    pub trace: Option<PathBuf>,
    /// The backend, as `fa train` announces it (`Gloo`, `NCCL`, `Gloo on CUDA`).
    pub backend: &'static str,
}

/// How long a rank whose collective timed out waits for the other waiting ranks to say so.
const STALL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The clause of the error that names the ranks that never reached the collective.
fn stalled_ranks(missing: &[usize]) -> String {
    match missing {
        [] => String::new(),
        [rank] => format!(
            "; rank {rank} never reached this collective (it stalled or lost its connection)"
        ),
        ranks => format!(
            "; ranks {} never reached this collective (they stalled or lost their connections)",
            ranks
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

impl Parallel {
    pub fn rank(&self) -> usize {
        self.collectives.rank()
    }

    pub fn world(&self) -> usize {
        self.collectives.world()
    }

    /// Rank 0 writes the run folder: checkpoints, metrics, progress and evaluation.
    pub fn leads(&self) -> bool {
        self.rank() == 0
    }

    /// Wraps a failed collective with this rank's number. After a timeout, the ranks that
    /// waited mark themselves in the store and give each other [`STALL_WAIT`] to do so; the
    /// ranks that never mark themselves are the ones that stalled or were lost, and the error
    /// names them.
    pub(crate) fn error(&self, source: DistError) -> TrainError {
        let timed_out = match &source {
            DistError::Collective { message, .. } => {
                let message = message.to_ascii_lowercase();
                message.contains("timed out") || message.contains("timeout")
            }
            _ => false,
        };
        let missing = if timed_out {
            self.collectives.group().ranks_that_never_came(STALL_WAIT)
        } else {
            Vec::new()
        };
        TrainError::Distributed {
            rank: self.rank(),
            error: source,
            stalled: stalled_ranks(&missing),
        }
    }
}

/// The online model with everything it needs to take a step.
pub(crate) struct Trainer<'a> {
    pub(crate) valid: &'a ValidModel,
    pub(crate) vs: nn::VarStore,
    pub(crate) network: Network,
    pub(crate) optimizer: Optimizer,
    pub(crate) augmenters: Vec<Augmenter>,
    pub(crate) seed: u64,
    /// The forward pass runs under bfloat16 autocast (CUDA with `precision: bf16`).
    pub(crate) autocast: bool,
    /// The data-parallel job this trainer is a rank of.
    pub(crate) parallel: Option<Parallel>,
}

pub(crate) fn model_augmenters(valid: &ValidModel) -> Result<Vec<Augmenter>, TrainError> {
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
pub(crate) fn build_network(
    valid: &ValidModel,
    device: Device,
    seed: u64,
    purpose: Purpose,
) -> Result<(nn::VarStore, Network), TrainError> {
    build_parallel_network(valid, device, seed, purpose, None)
}

/// As [`build_network`], for one rank of a data-parallel job.
fn build_parallel_network(
    valid: &ValidModel,
    device: Device,
    seed: u64,
    purpose: Purpose,
    parallel: Option<&Parallel>,
) -> Result<(nn::VarStore, Network), TrainError> {
    tch::manual_seed(Key::new(seed, purpose, 0).torch_seed());
    let vs = nn::VarStore::new(device);
    let network = Network::new_parallel(
        &vs.root(),
        valid,
        parallel.map(|p| p.collectives.clone()),
        parallel.is_some_and(|p| p.sync_batch_norm),
    )?;
    Ok((vs, network))
}

/// Named trainable parameters in a stable order.
pub(crate) fn trainable(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, tensor)| tensor.requires_grad())
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// Schedule geometry derived from the model and the dataset size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub(crate) batch: usize,
    pub(crate) accumulate: usize,
    pub(crate) steps_per_epoch: u64,
    pub(crate) total_steps: u64,
    pub(crate) warmup_steps: u64,
    pub(crate) peak_lr: f64,
}

pub(crate) fn geometry(model: &Model, images: usize) -> Result<Geometry, TrainError> {
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
        peak_lr: model.optim.lr.resolve(batch, accumulate),
    })
}

/// Set to `1` to train even when the memory estimate exceeds the memory available.
pub const SKIP_MEMORY_CHECK_ENV: &str = "FA_SKIP_MEMORY_CHECK";

/// Refuses, before any data is loaded, a model whose estimated memory (`fa check` prints it)
/// exceeds what the machine has available. On the CPU the step and the decoded dataset share
/// the memory the kernel reports as available; on CUDA the estimate is printed by `fa check`
/// only (reading the card's free memory needs the CUDA runtime's headers, which the build
/// does not have).
fn check_memory(valid: &ValidModel, device: Device) -> Result<(), TrainError> {
    if device != Device::Cpu || std::env::var_os(SKIP_MEMORY_CHECK_ENV).is_some_and(|v| v == "1") {
        return Ok(());
    }
    let Some(available) =
        crate::train::memory::available_bytes().and_then(|bytes| usize::try_from(bytes).ok())
    else {
        return Ok(());
    };
    let estimate = fa_lang::plan::memory_estimate(valid);
    let needed = estimate
        .device
        .saturating_add(estimate.dataset.unwrap_or(0));
    if needed > available {
        return Err(TrainError::NotEnoughMemory {
            needed: fa_lang::plan::human_bytes(needed),
            available: fa_lang::plan::human_bytes(available),
        });
    }
    Ok(())
}

/// Trains `valid` into `options.out`, then evaluates it. Returns the run's summary.
pub fn train(valid: &ValidModel, options: &TrainOptions) -> Result<Summary, TrainError> {
    let _lock = prepare_folder(options)?;
    train_prepared(valid, options, None)
}

/// Trains `valid` as one rank of a data-parallel job. Every rank calls it with the same
/// model and options; rank 0 alone writes the run folder and evaluates, the others return
/// a summary without evaluation.
pub fn train_parallel(
    valid: &ValidModel,
    options: &TrainOptions,
    parallel: &Parallel,
) -> Result<Summary, TrainError> {
    // Rank 0 checks the run folder first; the other ranks wait for its word instead of
    // blocking in the first collective when it refuses.
    let prepared = parallel.leads().then(|| prepare_folder(options));
    let failed = matches!(prepared, Some(Err(_)));
    let any_failed = parallel
        .collectives
        .group()
        .any(failed)
        .map_err(|e| parallel.error(e))?;
    let _lock = match prepared {
        Some(result) => Some(result?),
        None if any_failed => {
            return Err(TrainError::LeaderFailed {
                rank: parallel.rank(),
            })
        }
        None => None,
    };
    train_prepared(valid, options, Some(parallel))
}

/// Locks the run folder and checks that the run may start there (a fresh folder, one to
/// resume, or one to overwrite, which is emptied).
fn prepare_folder(options: &TrainOptions) -> Result<RunLock, TrainError> {
    if options.resume && options.overwrite {
        return Err(TrainError::ResumeAndOverwrite);
    }
    // Held until training ends: one trainer per run folder, whatever else is running.
    let lock = RunLock::acquire(&options.out)?;
    for path in run_folder::remove_stale_temporaries(&options.out) {
        if options.log != LogFormat::Quiet {
            eprintln!(
                "note: removed {}, left by a process that stopped while writing it",
                path.display()
            );
        }
    }
    // Refuse before any work: a fresh run never mixes with an old one in the same folder.
    let existing = checkpoint::latest(&options.out);
    if options.resume {
        if existing.is_none() {
            return Err(TrainError::NothingToResume {
                run: options.out.clone(),
            });
        }
    } else {
        let artefacts = run_folder::artefacts(&options.out);
        if !artefacts.is_empty() {
            if !options.overwrite {
                return Err(TrainError::RunExists {
                    run: options.out.clone(),
                    artefacts,
                });
            }
            run_folder::remove_artefacts(&options.out)?;
        }
    }
    Ok(lock)
}

/// The run itself, once the folder is ready: rank 0 (or the only process) writes it.
fn train_prepared(
    valid: &ValidModel,
    options: &TrainOptions,
    parallel: Option<&Parallel>,
) -> Result<Summary, TrainError> {
    let model = valid.model();
    let started = Instant::now();
    let leads = parallel.is_none_or(Parallel::leads);
    // The other ranks print nothing but their errors.
    let quiet_options;
    let options = if leads {
        options
    } else {
        quiet_options = TrainOptions {
            log: LogFormat::Quiet,
            skip_eval: true,
            ..options.clone()
        };
        &quiet_options
    };
    let existing = checkpoint::latest(&options.out);
    if let Some(parallel) = parallel {
        if model.data.batch_size % parallel.world() != 0 {
            return Err(TrainError::BatchNotDivisible {
                batch: model.data.batch_size,
                world: parallel.world(),
            });
        }
    }

    let autocast = precision::uses_autocast(model.train.precision, options.device)?;
    if model.train.precision != Precision::F32 && !autocast && options.log != LogFormat::Quiet {
        eprintln!(
            "note: precision {:?} applies on CUDA only; training in float32 on {:?}",
            model.train.precision, options.device
        );
    }
    check_memory(valid, options.device)?;
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
    // Decoding's temporaries are done with: give their cached blocks back.
    crate::host_memory::release_cached();
    let geo = geometry(model, data.len)?;
    let seed_value = model.train.seed;

    let (vs, network) =
        build_parallel_network(valid, options.device, seed_value, Purpose::Init, parallel)?;
    let optimizer = Optimizer::new(&model.optim, trainable(&vs));
    let mut trainer = Trainer {
        valid,
        vs,
        network,
        optimizer,
        augmenters: model_augmenters(valid)?,
        seed: seed_value,
        autocast,
        parallel: parallel.cloned(),
    };

    let mut step: u64 = 0;
    let mut epoch_stats = EpochStats::default();
    if let (Some(path), true) = (&existing, options.resume) {
        step = trainer.restore(path, options.device, &options.source, options.log)?;
        if leads {
            let kept = keep_metrics_up_to(
                &options.out.join("metrics.jsonl"),
                step,
                geo.steps_per_epoch,
            )?;
            // The steps of the interrupted epoch taken before the stop count in its record.
            epoch_stats.restore(&kept, step / geo.steps_per_epoch);
        }
    }
    if let Some(parallel) = parallel {
        // Every rank starts from rank 0's parameters, buffers, banks and optimiser state
        // (they agree already when all were initialised from the same seed or checkpoint;
        // the broadcast makes it so whatever the initialisation).
        // By name: every rank must broadcast the same tensors in the same order.
        let mut named: Vec<(String, Tensor)> = trainer.vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let mut tensors: Vec<Tensor> = named.into_iter().map(|(_, t)| t).collect();
        tensors.extend(trainer.optimizer.state().into_iter().map(|(_, t)| t));
        parallel
            .collectives
            .group()
            .broadcast_all(&tensors, 0)
            .map_err(|e| parallel.error(e))?;
        if leads && options.log != LogFormat::Quiet {
            eprintln!(
                "note: data-parallel training on {} ranks ({}); each rank takes {} of the global batch of {}; sync batch norm {}",
                parallel.world(),
                parallel.backend,
                geo.batch / parallel.world(),
                geo.batch,
                if parallel.sync_batch_norm { "on" } else { "off: each rank normalises its own slice" }
            );
        }
    }
    // Written only once the checkpoint (if any) has been accepted, so a refused resume
    // leaves the run folder as it was.
    if leads {
        checkpoint::write_file_atomically(
            &options.out.join("model.json"),
            options.source.as_bytes(),
        )
        .map_err(io("cannot write model.json"))?;
    }

    let metrics_path = options.out.join("metrics.jsonl");
    let mut metrics = if leads {
        Some(MetricsWriter::open(&metrics_path)?)
    } else {
        None
    };
    let mut events = if options.tensorboard && leads {
        let resumed = options.resume.then_some(step);
        let mut events = EventsWriter::open(&options.out, resumed, geo.steps_per_epoch)?;
        if resumed.is_none() {
            augmentation_grid(valid, &train_set, &mut events)?;
        }
        Some(events)
    } else {
        None
    };
    // Rank 0 writes every record to metrics.jsonl and to the events file.
    let mut log = |record: &Record| -> Result<(), TrainError> {
        if let Some(metrics) = metrics.as_mut() {
            metrics.write(record)?;
        }
        if let Some(events) = events.as_mut() {
            events.record(record)?;
        }
        Ok(())
    };
    let progress = Progress::new(options.log, geo.total_steps, step);
    let last_step = options
        .max_steps
        .map_or(geo.total_steps, |max| geo.total_steps.min(max));
    let mut last_loss = None;
    let mut window = Instant::now();
    let mut last_saved = options.resume.then_some(step);

    while step < last_step {
        // A step boundary: the place where a signal stops the run with nothing lost. In a
        // parallel job a signal to any rank stops every rank here, at the same step.
        if let Some((signal, number)) = stop_requested(parallel)? {
            progress.finish();
            if last_saved != Some(step) && leads {
                trainer.save(&options.out, step, geo, options)?;
            }
            return Err(TrainError::Interrupted {
                signal,
                number,
                step,
                checkpoint: checkpoint::checkpoint_path(&options.out, step),
            });
        }
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
            collapse_std: Some(outcome.collapse_std),
            nn_label_match: outcome.nn_match,
        };
        progress.step(&record);
        log(&record)?;

        let epoch_done = step % geo.steps_per_epoch == 0;
        if epoch_done {
            let finished_epoch = step / geo.steps_per_epoch;
            let knn_every = model.train.knn_every;
            let knn_top1 = if leads
                && knn_every > 0
                && finished_epoch % knn_every as u64 == 0
                && finished_epoch < model.train.epochs as u64
            {
                test.as_ref().and_then(|test| {
                    // The evaluation's blocks have other sizes than training's: neither phase
                    // keeps the other's cached.
                    crate::host_memory::release_cached();
                    let top1 = protocols::quick_knn(&trainer.evaluator(), &data, test, model);
                    crate::host_memory::release_cached();
                    top1
                })
            } else {
                None
            };
            let peak = PeakMemory::now(options.device);
            let record = epoch_stats.finish(finished_epoch, knn_top1, peak);
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
            log(&record)?;
            let every = model.train.checkpoint_every.max(1) as u64;
            if finished_epoch % every == 0 || step == geo.total_steps {
                if leads {
                    trainer.save(&options.out, step, geo, options)?;
                }
                last_saved = Some(step);
            }
        }
    }
    if last_saved != Some(step) && leads {
        // Stopped by --max-steps between checkpoints: keep the progress.
        trainer.save(&options.out, step, geo, options)?;
    }
    progress.finish();
    if let Some((signal, number)) = stop_requested(parallel)? {
        return Err(TrainError::Interrupted {
            signal,
            number,
            step,
            checkpoint: checkpoint::checkpoint_path(&options.out, step),
        });
    }

    let mut summary = Summary {
        model: model.name.clone(),
        commit: env!("FA_COMMIT").to_string(),
        train_seconds: started.elapsed().as_secs_f64(),
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
            // Evaluation's blocks have other sizes than training's.
            crate::host_memory::release_cached();
            protocols::evaluate(
                &trainer.evaluator(),
                &data,
                test,
                options.device,
                &mut summary,
            )?;
        }
        log(&Record::Eval {
            step: Some(step),
            random_init_linear_top1: None,
            knn_top1: summary.knn.map(|a| a.top1),
            knn_top5: summary.knn.map(|a| a.top5),
            linear_top1: summary.linear.map(|a| a.top1),
            linear_top5: summary.linear.map(|a| a.top5),
            random_init_knn_top1: summary.random_init_knn.map(|a| a.top1),
            pixels_knn_top1: summary.pixels_knn.map(|a| a.top1),
            peak_memory: Some(PeakMemory::now(options.device)),
        })?;
    }
    summary.peak_memory = Some(PeakMemory::now(options.device));
    summary.seconds = started.elapsed().as_secs_f64();
    if !leads {
        return Ok(summary);
    }
    let json = serde_json::to_string_pretty(&summary).expect("summary serialises");
    checkpoint::write_file_atomically(&options.out.join("summary.json"), json.as_bytes())
        .map_err(io("cannot write summary.json"))?;
    Ok(summary)
}

/// Whether the run must stop at this step boundary, and by which signal: this process's
/// request, or in a parallel job any rank's (one all-reduce per step, so every rank stops
/// at the same step).
fn stop_requested(parallel: Option<&Parallel>) -> Result<Option<(&'static str, i32)>, TrainError> {
    let own = interrupt::requested();
    let Some(parallel) = parallel else {
        return Ok(own);
    };
    let any = parallel
        .collectives
        .group()
        .any(own.is_some())
        .map_err(|e| parallel.error(e))?;
    Ok(match (own, any) {
        (Some(own), _) => Some(own),
        (None, true) => Some(("a signal to another rank", 0)),
        (None, false) => None,
    })
}

impl Trainer<'_> {
    /// The width of the first loss term's projections, where the collapse monitor applies.
    pub(crate) fn projection_width(&self) -> Option<usize> {
        self.valid
            .terms()
            .first()
            .and_then(|term| match self.valid.shape(term.left) {
                fa_lang::ir::FeatureShape::Vector { width, .. } => Some(width),
                fa_lang::ir::FeatureShape::Image { .. } => None,
            })
    }

    /// What the evaluation protocols need of the trained model.
    pub(crate) fn evaluator(&self) -> Evaluator<'_> {
        Evaluator {
            valid: self.valid,
            network: &self.network,
            augmenters: &self.augmenters,
        }
    }
}

/// Writes the augmentation grid (`fa augment`'s picture: four training images and two views
/// of each pipeline) into the events file as the image `augmentation`, at step 0.
fn augmentation_grid(
    valid: &ValidModel,
    train_set: &crate::data::ImageSet,
    events: &mut EventsWriter,
) -> Result<(), TrainError> {
    let model = valid.model();
    let pipelines: Vec<(String, &fa_lang::ir::Pipeline)> = model
        .pipelines
        .iter()
        .map(|(name, pipeline)| (name.clone(), pipeline))
        .collect();
    if pipelines.is_empty() {
        return Ok(());
    }
    let (png, width, height) = crate::data::preview_png(
        train_set,
        &pipelines,
        model.data.channels,
        4,
        2,
        model.train.seed,
        events.path(),
    )?;
    Ok(events.image("augmentation", 0, &png, width, height)?)
}

#[cfg(test)]
mod stall_tests {
    use super::stalled_ranks;

    #[test]
    fn the_ranks_that_never_came_are_named() {
        assert_eq!(stalled_ranks(&[]), "");
        assert_eq!(
            stalled_ranks(&[1]),
            "; rank 1 never reached this collective (it stalled or lost its connection)"
        );
        assert_eq!(
            stalled_ranks(&[2, 5]),
            "; ranks 2, 5 never reached this collective (they stalled or lost their connections)"
        );
    }
}
