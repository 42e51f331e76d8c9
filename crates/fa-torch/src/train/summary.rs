//! What a finished run, or an evaluation of a stored one, reports.

use serde::{Deserialize, Serialize};

use crate::eval::Accuracy;
use crate::train::memory::PeakMemory;

/// What a finished run reports (and what `summary.json` holds; fields a file lacks read as
/// their defaults).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    pub model: String,
    /// The commit fa was built from (`git describe`-like: hash, `+dirty` with local changes).
    pub commit: String,
    pub steps: u64,
    pub epochs: u64,
    /// Wall time of the training loop in this process (since the resume, for a resumed run).
    pub train_seconds: f64,
    /// Wall time of the whole command: training, checkpoints and evaluation.
    pub seconds: f64,
    pub final_loss: Option<f64>,
    pub collapse_std: Option<f64>,
    pub healthy_std: f64,
    pub knn: Option<Accuracy>,
    pub linear: Option<Accuracy>,
    pub random_init_knn: Option<Accuracy>,
    pub pixels_knn: Option<Accuracy>,
    /// The precision evaluation extracted features in (`f32`, `bf16`); scoring is float32.
    pub eval_precision: Option<String>,
    /// The command's peak memory (host resident set, CUDA allocator), taken at the end.
    pub peak_memory: Option<PeakMemory>,
}
