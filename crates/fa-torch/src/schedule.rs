//! Learning-rate and EMA-momentum schedules as pure functions of the iteration.
//!
//! Both schedules are evaluated per optimiser step (not per epoch), so a resumed run only
//! needs the step counter to land on exactly the same values.

use std::f64::consts::PI;

use fa_lang::ir::Schedule;

/// The learning rate at optimiser step `iteration` (counted from 0) of `total_iterations`.
///
/// During the first `warmup_iterations` steps the rate rises linearly,
/// `peak · (iteration + 1) / warmup_iterations`, so the first step already moves the weights
/// and the last warm-up step reaches `peak` exactly. After the warm-up:
///
/// - With [`Schedule::Cosine`], `peak · (1 + cos(π · t)) / 2` with
///   `t = (iteration − warmup) / (total − warmup)`, the half-cosine that solo-learn's
///   `LinearWarmupCosineAnnealingLR` uses with a minimum of zero; it is `peak` right after
///   warm-up, `peak / 2` halfway through the decay and reaches zero at `iteration = total`.
///   Steps at or beyond `total_iterations` get zero.
/// - With [`Schedule::Constant`], `peak`.
pub fn learning_rate(
    iteration: usize,
    total_iterations: usize,
    warmup_iterations: usize,
    peak: f64,
    schedule: Schedule,
) -> f64 {
    if iteration < warmup_iterations {
        return peak * (iteration + 1) as f64 / warmup_iterations as f64;
    }
    match schedule {
        Schedule::Constant => peak,
        Schedule::Cosine => {
            if iteration >= total_iterations {
                return 0.0;
            }
            // `total_iterations > iteration >= warmup_iterations` here, so the decay length
            // is at least one step and the division is safe.
            let decay_length = (total_iterations - warmup_iterations) as f64;
            let progress = (iteration - warmup_iterations) as f64 / decay_length;
            peak * 0.5 * (1.0 + (PI * progress).cos())
        }
    }
}

/// The EMA (target network) momentum at training progress `progress` in `[0, 1]`.
///
/// BYOL's schedule: `final − (final − base) · (cos(π · progress) + 1) / 2`, which starts at
/// `base` and rises along a half-cosine to `final`. Progress outside `[0, 1]` is clamped, so
/// a rounding error in the caller's step count cannot push the momentum past `final`.
pub fn ema_momentum(base: f64, final_: f64, progress: f64) -> f64 {
    let progress = progress.clamp(0.0, 1.0);
    final_ - (final_ - base) * ((PI * progress).cos() + 1.0) / 2.0
}
