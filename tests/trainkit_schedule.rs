//! Learning-rate and EMA-momentum schedules against hand-worked values.

use fa_lang::ir::Schedule;
use fa_torch::schedule::{ema_momentum, learning_rate};

fn close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= 1e-12 * expected.abs().max(1.0),
        "{actual} != {expected}"
    );
}

#[test]
fn warm_up_rises_linearly_from_the_first_step_to_the_peak() {
    // 10 warm-up steps of 110 at peak 0.4: step 0 gets 0.4 · 1/10, step 9 the peak.
    close(learning_rate(0, 110, 10, 0.4, Schedule::Cosine), 0.04);
    close(learning_rate(4, 110, 10, 0.4, Schedule::Cosine), 0.2);
    close(learning_rate(9, 110, 10, 0.4, Schedule::Cosine), 0.4);
    close(learning_rate(0, 110, 10, 0.4, Schedule::Constant), 0.04);
}

#[test]
fn cosine_starts_at_the_peak_halves_at_the_midpoint_and_ends_at_zero() {
    // The decay covers steps 10..110, 100 steps: step 10 is t = 0, step 60 is t = 1/2.
    close(learning_rate(10, 110, 10, 0.4, Schedule::Cosine), 0.4);
    close(learning_rate(60, 110, 10, 0.4, Schedule::Cosine), 0.2);
    // t = 1/4: 0.4 · (1 + cos(π/4)) / 2.
    close(
        learning_rate(35, 110, 10, 0.4, Schedule::Cosine),
        0.2 * (1.0 + 0.5f64.sqrt()),
    );
    // The last step is one step before the end of the half-cosine: small but positive.
    let last = learning_rate(109, 110, 10, 0.4, Schedule::Cosine);
    close(last, 0.2 * (1.0 + (std::f64::consts::PI * 0.99).cos()));
    assert!(last > 0.0 && last < 1e-3);
    close(learning_rate(110, 110, 10, 0.4, Schedule::Cosine), 0.0);
    close(learning_rate(500, 110, 10, 0.4, Schedule::Cosine), 0.0);
}

#[test]
fn cosine_without_warm_up_decays_monotonically() {
    let rates: Vec<f64> = (0..50)
        .map(|step| learning_rate(step, 50, 0, 1.0, Schedule::Cosine))
        .collect();
    close(rates[0], 1.0);
    close(rates[25], 0.5);
    assert!(rates.windows(2).all(|pair| pair[1] < pair[0]));
}

#[test]
fn constant_schedule_holds_the_peak_after_warm_up() {
    for step in [3, 50, 109, 200] {
        close(learning_rate(step, 110, 3, 0.45, Schedule::Constant), 0.45);
    }
}

#[test]
fn ema_momentum_rises_from_base_to_final_along_a_half_cosine() {
    close(ema_momentum(0.99, 1.0, 0.0), 0.99);
    close(ema_momentum(0.99, 1.0, 1.0), 1.0);
    close(ema_momentum(0.99, 1.0, 0.5), 0.995);
    // Progress is clamped, so overshooting the step count cannot pass the final value.
    close(ema_momentum(0.99, 1.0, 1.5), 1.0);
    close(ema_momentum(0.99, 1.0, -0.5), 0.99);
    let values: Vec<f64> = (0..=100)
        .map(|i| ema_momentum(0.99, 1.0, i as f64 / 100.0))
        .collect();
    assert!(values.windows(2).all(|pair| pair[1] > pair[0]));
}
