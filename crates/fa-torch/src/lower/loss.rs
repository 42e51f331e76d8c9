//! The two loss families, InfoNCE and BYOL's regression loss, always computed in float32.

use tch::{Kind, Tensor};

use super::fa::l2_normalize;

/// InfoNCE between `a` and `b`: the positive of row i is row i of `b`, the negatives are the
/// other rows of `b`; inputs are L2-normalised, logits divided by `tau`; mean over rows.
///
/// # Shapes
/// `[N, D]` and `[N, D]` to a scalar.
pub fn info_nce(a: &Tensor, b: &Tensor, tau: f64) -> Tensor {
    info_nce_rows(a, b, tau, 0)
}

/// InfoNCE of the rows of `a` against all rows of `b`, the positive of row i of `a` being
/// row `first_positive + i` of `b` (one rank's rows of a global batch against the gathered
/// global batch); mean over the rows of `a`.
///
/// # Shapes
/// `[n, D]` and `[N, D]` (n ≤ N) to a scalar.
pub fn info_nce_rows(a: &Tensor, b: &Tensor, tau: f64, first_positive: i64) -> Tensor {
    // Float32 even under mixed precision: exp(1/τ) with τ = 0.2 is fine in half precision,
    // but the log-sum-exp over a large batch loses too many digits.
    let a = l2_normalize(&a.to_kind(Kind::Float));
    let b = l2_normalize(&b.to_kind(Kind::Float));
    let logits = a.matmul(&b.tr()) / tau;
    let targets = Tensor::arange(logits.size()[0], (Kind::Int64, logits.device())) + first_positive;
    logits.cross_entropy_for_logits(&targets)
}

/// BYOL's loss `2 − 2 cos(p, z)`, mean over rows.
///
/// # Shapes
/// `[N, D]` and `[N, D]` to a scalar.
pub fn byol_loss(p: &Tensor, z: &Tensor) -> Tensor {
    let p = l2_normalize(&p.to_kind(Kind::Float));
    let z = l2_normalize(&z.to_kind(Kind::Float));
    let cosine = (p * z).sum_dim_intlist([-1i64].as_slice(), false, Kind::Float);
    let loss: Tensor = 2.0 - 2.0 * cosine;
    loss.mean(Kind::Float)
}
