//! Per-epoch statistics of a run and the collapse monitor built on them.

use std::time::Instant;

use crate::train::memory::PeakMemory;
use crate::train::metrics::Record;
use crate::train::step::StepOutcome;

/// Per-epoch accumulation of the collapse monitor and loss.
#[derive(Default)]
pub(crate) struct EpochStats {
    started: Option<Instant>,
    steps: u64,
    loss: f64,
    collapse: f64,
    nn_match: f64,
    nn_steps: u64,
    pub(crate) last_collapse: Option<f64>,
}

impl EpochStats {
    pub(crate) fn add(&mut self, outcome: &StepOutcome) {
        self.started.get_or_insert_with(Instant::now);
        self.steps += 1;
        self.loss += outcome.loss;
        self.collapse += outcome.collapse_std;
        if let Some(fraction) = outcome.nn_match {
            self.nn_match += fraction;
            self.nn_steps += 1;
        }
    }

    /// Counts again the steps of `epoch` that `records` hold: a resumed run's epoch record
    /// then averages the whole epoch, not only the steps after the resume. Steps recorded
    /// by an fa that did not store the collapse statistic count in the loss only.
    pub(crate) fn restore(&mut self, records: &[Record], epoch: u64) {
        for record in records {
            if let Record::Step {
                epoch: e,
                loss,
                collapse_std,
                nn_label_match,
                ..
            } = record
            {
                if *e != epoch {
                    continue;
                }
                self.steps += 1;
                self.loss += loss;
                self.collapse += collapse_std.unwrap_or(0.0);
                if let Some(fraction) = nn_label_match {
                    self.nn_match += fraction;
                    self.nn_steps += 1;
                }
            }
        }
    }

    pub(crate) fn finish(
        &mut self,
        epoch: u64,
        knn_top1: Option<f64>,
        peak_memory: PeakMemory,
    ) -> Record {
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
            peak_memory: Some(peak_memory),
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
