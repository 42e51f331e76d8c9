//! The process group as the network sees it: rank, world size and gathers that never fail
//! in the middle of a forward pass; a failure is kept and reported at the step boundary.
//!
//! The network's layers (batch norm, the losses, FA) are infallible functions of tensors, as
//! in single-process training. Threading a `Result` through every layer for the one case of a
//! failed collective would change every caller; instead the first failure is recorded here,
//! later collectives are skipped (so a dead peer costs one timeout, not one per layer), the
//! gather returns a stand-in of the right shape, and the trainer checks [`Collectives::failure`]
//! after the forward and backward passes, before anything is updated.

use std::sync::{Arc, Mutex};

use tch::Tensor;

use super::{DistError, ProcessGroup};

/// A shared handle on the process group, with the first failure of a gather.
#[derive(Debug, Clone)]
pub struct Collectives {
    group: Arc<ProcessGroup>,
    failure: Arc<Mutex<Option<DistError>>>,
}

impl Collectives {
    pub fn new(group: ProcessGroup) -> Collectives {
        Collectives {
            group: Arc::new(group),
            failure: Arc::new(Mutex::new(None)),
        }
    }

    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    pub fn world(&self) -> usize {
        self.group.world()
    }

    /// The group itself, for the collectives the trainer calls between steps (which return
    /// their errors directly).
    pub fn group(&self) -> &ProcessGroup {
        &self.group
    }

    /// The first gather that failed since the last call, if any.
    pub fn take_failure(&self) -> Option<DistError> {
        self.failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    fn failed(&self) -> bool {
        self.failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some()
    }

    fn record(&self, error: DistError) {
        self.failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get_or_insert(error);
    }

    /// The ranks' rows in rank order, with a gradient that flows back to each owner.
    ///
    /// # Shapes
    /// `[n, …]` to `[world · n, …]`.
    pub fn gather_autograd(&self, input: &Tensor) -> Tensor {
        self.gather_with(input, |group, x| group.all_gather_autograd(x))
    }

    /// The ranks' rows in rank order, without a gradient.
    ///
    /// # Shapes
    /// `[n, …]` to `[world · n, …]`.
    pub fn gather(&self, input: &Tensor) -> Tensor {
        self.gather_with(input, |group, x| group.all_gather(x))
    }

    fn gather_with(
        &self,
        input: &Tensor,
        gather: impl Fn(&ProcessGroup, &Tensor) -> Result<Tensor, DistError>,
    ) -> Tensor {
        if !self.failed() {
            match gather(&self.group, input) {
                Ok(gathered) => return gathered,
                Err(error) => self.record(error),
            }
        }
        // The stand-in has the gathered shape so the pass completes; the step is discarded.
        let mut repeats = vec![1i64; input.dim().max(1)];
        repeats[0] = self.world() as i64;
        input.repeat(repeats.as_slice())
    }

    /// Rows `[rank · n, (rank + 1) · n)` of a tensor of `world · n` rows: this rank's slice
    /// of a global-batch quantity.
    pub fn local_slice(&self, global: &Tensor) -> Tensor {
        let rows = global.size()[0] / self.world() as i64;
        global.narrow(0, self.rank() as i64 * rows, rows)
    }
}
