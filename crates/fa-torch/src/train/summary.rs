//! What a finished run, or an evaluation of a stored one, reports.

use serde::Serialize;

use crate::eval::Accuracy;

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
