//! One optimiser step: the augmented views of each micro-batch, the forward and backward
//! passes, and the statistics the progress lines and metrics report.

use tch::{Device, Kind, Tensor};

use crate::train::device_data::DeviceData;
use crate::train::precision;
use crate::train::trainer::{Geometry, Trainer};
use crate::train::TrainError;
use fa_base::random::{Key, Purpose};

/// What one optimiser step reports.
pub(crate) struct StepOutcome {
    pub(crate) loss: f64,
    pub(crate) terms: std::collections::BTreeMap<String, f64>,
    pub(crate) ema_momentum: Option<f64>,
    /// The global gradient norm before clipping.
    pub(crate) grad_norm: Option<f64>,
    pub(crate) collapse_std: f64,
    pub(crate) nn_match: Option<f64>,
}

impl StepOutcome {
    /// What was not finite, when something was: then the step did not update anything.
    pub(crate) fn non_finite(&self) -> Option<(&'static str, f64)> {
        if !self.loss.is_finite() {
            return Some(("loss", self.loss));
        }
        self.grad_norm
            .filter(|norm| !norm.is_finite())
            .map(|norm| ("gradient norm", norm))
    }
}

/// Gradients are averaged in flattened buckets of about this size (PyTorch DDP's default
/// bucket is 25 MiB): one collective per bucket rather than per parameter.
const GRADIENT_BUCKET_BYTES: usize = 25 << 20;

/// Appends one line to the rank's trace: the step, the dataset indices it trained on, and
/// the norm of its local gradient before averaging.
fn trace(
    folder: &std::path::Path,
    rank: usize,
    step: u64,
    samples: &[usize],
    local_grad_norm: f64,
) -> Result<(), TrainError> {
    use std::io::Write;
    let path = folder.join(format!("rank{rank}.jsonl"));
    let line = serde_json::json!({
        "step": step,
        "samples": samples,
        "local_grad_norm": local_grad_norm,
    });
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| writeln!(file, "{line}"))
        .map_err(crate::train::error::io(format!(
            "cannot write the trace {}",
            path.display()
        )))
}

impl Trainer<'_> {
    /// The first collective that failed inside the network's forward or backward pass.
    fn check_collectives(&self) -> Result<(), TrainError> {
        match &self.parallel {
            Some(parallel) => match parallel.collectives.take_failure() {
                Some(error) => Err(parallel.error(error)),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// One optimiser step over `indices` (accumulate × batch dataset indices). In a parallel
    /// job `indices` is the global batch and this rank trains on its slice of each
    /// micro-batch; the gradients are averaged over the ranks before clipping and the update.
    pub(crate) fn step(
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
        let mut seen: Vec<usize> = Vec::new();
        for micro in 0..geo.accumulate {
            let global = &indices[micro * geo.batch..(micro + 1) * geo.batch];
            let chunk = match &self.parallel {
                Some(parallel) => {
                    let share = geo.batch / parallel.world();
                    &global[parallel.rank() * share..(parallel.rank() + 1) * share]
                }
                None => global,
            };
            seen.extend_from_slice(chunk);
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
            self.check_collectives()?;
            (&output.total / geo.accumulate as f64).f_backward()?;
            self.check_collectives()?;

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
        let mut stats = stats
            .expect("at least one micro-batch")
            .to_device(Device::Cpu);
        if let Some(parallel) = &self.parallel {
            // The local gradient, before averaging, for the trace.
            if let Some(folder) = &parallel.trace {
                let norm = self.optimizer.grad_norm();
                trace(folder, parallel.rank(), step, &seen, norm)?;
            }
            let group = parallel.collectives.group();
            let parameters: Vec<Tensor> = crate::train::trainer::trainable(&self.vs)
                .into_iter()
                .map(|(_, tensor)| tensor)
                .collect();
            group
                .average_gradients(&parameters, GRADIENT_BUCKET_BYTES)
                .map_err(|e| parallel.error(e))?;
            // The reported loss and statistics are the global batch's: the mean of the
            // ranks' means over equal slices.
            let summed = stats.contiguous();
            group
                .all_reduce_sum(&summed)
                .map_err(|e| parallel.error(e))?;
            stats = summed / parallel.world() as f64;
        }
        let values = Vec::<f64>::try_from(stats).expect("statistics are a 1-D double tensor");
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
        // The EMA after optimiser step k (counted from 0) uses τ at progress k/K, as BYOL's
        // τ = 1 − (1 − τ_base)(cos(πk/K) + 1)/2 and solo-learn's momentum updater (which
        // applies the current τ, then advances it): the first update uses τ_base.
        let progress = step as f64 / geo.total_steps.max(1) as f64;
        outcome.ema_momentum = self.network.update_targets(progress);
        Ok(outcome)
    }
}
