//! Evaluation of frozen features: weighted kNN and linear probes, reported as top-1/top-5 accuracy.
//!
//! `knn.rs` and `linear.rs` work on feature tensors the caller computed with a frozen
//! backbone, so the same code scores a trained encoder, the same encoder at random
//! initialisation and raw pixels (the two baselines printed beside each result);
//! `protocols.rs` computes those features and runs both, at the end of training and for
//! `fa eval` (`run.rs`).

mod baselines;
mod knn;
mod linear;
pub(crate) mod protocols;
mod run;

pub use knn::{knn, knn_votes};
pub use linear::{linear_probe_features, linear_probe_with};
pub use run::{evaluate_run, EvalOptions};

use serde::{Deserialize, Serialize};

/// Classification accuracy in percent. Top-5 counts a hit when the label is among the five
/// best-scored classes (among all classes when there are fewer than five). Both are NaN
/// when there was nothing to score.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub top1: f64,
    pub top5: f64,
}

/// Top-1 and top-5 accuracy of class scores `[M, classes]` against labels `[M]`.
fn accuracy_of_scores(scores: &tch::Tensor, labels: &tch::Tensor) -> (i64, i64) {
    let classes = scores.size()[1];
    let (_, best) = scores.topk(classes.min(5), 1, true, true);
    let labels = labels
        .to_device(best.device())
        .to_kind(tch::Kind::Int64)
        .unsqueeze(1);
    let hits = best.eq_tensor(&labels);
    let top1 = hits.narrow(1, 0, 1).sum(tch::Kind::Int64).int64_value(&[]);
    let top5 = hits
        .any_dim(1, false)
        .sum(tch::Kind::Int64)
        .int64_value(&[]);
    (top1, top5)
}

/// Percentages from hit counts; NaN when `total` is zero.
fn percentages(top1: i64, top5: i64, total: i64) -> Accuracy {
    if total == 0 {
        return Accuracy {
            top1: f64::NAN,
            top5: f64::NAN,
        };
    }
    Accuracy {
        top1: 100.0 * top1 as f64 / total as f64,
        top5: 100.0 * top5 as f64 / total as f64,
    }
}
