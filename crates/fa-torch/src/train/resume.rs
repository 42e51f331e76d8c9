//! Saving a trainer to a checkpoint and restoring one from it, so that a resumed run
//! continues an interrupted one bit for bit on the CPU.

use fa_base::random::Purpose;
use std::path::Path;

use tch::{nn, Device, Tensor};

use crate::lower::Network;
use crate::optim::Optimizer;
use crate::train::checkpoint::{self, Checkpoint, CheckpointMeta};
use crate::train::error::io;
use crate::train::metrics::Record;
use crate::train::progress::LogFormat;
use crate::train::trainer::{build_network, trainable, Geometry, TrainOptions, Trainer};
use crate::train::TrainError;
use fa_lang::valid::ValidModel;

/// The checkpoint metadata key of the number of processes that trained the run.
const WORLD_SIZE: &str = "world_size";

impl Trainer<'_> {
    /// The number of processes training this run (1 without a process group).
    fn world_size(&self) -> usize {
        self.parallel.as_ref().map_or(1, |p| p.world())
    }
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

impl Trainer<'_> {
    /// Writes the model's variables and the optimiser's state at `step` into `run`'s
    /// checkpoint folder.
    pub(crate) fn save(
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
        let mut extra = std::collections::BTreeMap::new();
        extra.insert(WORLD_SIZE.to_string(), self.world_size().into());
        let meta = CheckpointMeta {
            format_version: checkpoint::FORMAT_VERSION,
            extra,
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
        checkpoint::prune(run, self.valid.model().train.keep_checkpoints)?;
        Ok(())
    }

    /// Loads the checkpoint at `path` into the model and optimiser; returns its step. A
    /// checkpoint of the same parameters but another configuration (`source`) is accepted
    /// with a warning: changing the learning rate of a resumed run is a legitimate choice.
    pub(crate) fn restore(
        &mut self,
        path: &Path,
        device: Device,
        source: &str,
        log: LogFormat,
    ) -> Result<u64, TrainError> {
        let ckpt = checkpoint::load(path, device)?;
        if !source.is_empty()
            && !ckpt.meta.source.is_empty()
            && !super::stored_model::same_configuration(&ckpt.meta.source, source)
            && log != LogFormat::Quiet
        {
            eprintln!(
                "warning: resuming {} with a configuration that differs from the one it was saved with; the schedule and data order follow the new one",
                path.display()
            );
        }
        // Checkpoints do not depend on the world size (the data order and every draw are
        // keyed by global sample index), so another one is accepted, and said.
        let saved_world = ckpt
            .meta
            .extra
            .get(WORLD_SIZE)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(1) as usize;
        if saved_world != self.world_size() && log != LogFormat::Quiet {
            eprintln!(
                "note: {} was written by a run on {saved_world} process(es); continuing on {}: the global batch, the data order and every random draw stay the same",
                path.display(),
                self.world_size()
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
}

/// After a resume from step `step`, keeps only the metrics records up to that step, so the
/// steps that are trained again are not recorded twice.
pub(crate) fn keep_metrics_up_to(
    path: &Path,
    step: u64,
    steps_per_epoch: u64,
) -> Result<Vec<Record>, TrainError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let records = crate::train::metrics::read_metrics(path)?;
    let mut text = String::new();
    let mut kept = Vec::new();
    for record in records {
        let keep = match &record {
            Record::Step { step: s, .. } => *s <= step,
            Record::Epoch { epoch, .. } => *epoch * steps_per_epoch <= step,
            Record::Eval { .. } => false,
        };
        if keep {
            text += &serde_json::to_string(&record).expect("records serialise");
            text.push('\n');
            kept.push(record);
        }
    }
    checkpoint::write_file_atomically(path, text.as_bytes())
        .map_err(io("cannot rewrite metrics.jsonl"))?;
    Ok(kept)
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
        parallel: None,
    };
    let step = trainer.restore(&path, device, "", LogFormat::Quiet)?;
    Ok((trainer.vs, trainer.network, step))
}
