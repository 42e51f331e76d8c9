//! Comparing tensors: shapes first, then the largest element-wise difference.

use tch::{Kind, Tensor};

/// The largest absolute element-wise difference of two tensors of the same shape, computed in
/// the wider of their kinds (libtorch promotes float32 against float64 to float64).
#[track_caller]
pub fn max_abs_difference(actual: &Tensor, expected: &Tensor) -> f64 {
    assert_eq!(actual.size(), expected.size(), "shapes differ");
    (actual - expected).abs().max().double_value(&[])
}

/// Asserts that `actual` matches `expected` within `tolerance`, absolutely, and prints the
/// largest difference (parity tests show how close they came).
#[track_caller]
pub fn assert_close_absolute(actual: &Tensor, expected: &Tensor, tolerance: f64, what: &str) {
    assert_eq!(actual.size(), expected.size(), "{what}: shape");
    let difference = max_abs_difference(actual, expected);
    println!("{what}: largest difference {difference:.2e}");
    assert!(
        difference <= tolerance,
        "{what}: largest difference {difference} exceeds {tolerance}"
    );
}

/// Asserts that `actual` matches `expected` within `tolerance` relative to the largest
/// magnitude in `expected` (at least 1e-12, so an all-zero reference needs an exact match).
#[track_caller]
pub fn assert_close_relative(actual: &Tensor, expected: &Tensor, tolerance: f64, what: &str) {
    assert_eq!(actual.size(), expected.size(), "{what}: shape");
    let scale = expected.abs().max().double_value(&[]).max(1e-12);
    let error = max_abs_difference(actual, expected);
    assert!(
        error <= tolerance * scale,
        "{what}: max error {error:e} > {tolerance:e} × {scale:e}"
    );
}

/// The elements of `tensor` as float32, in row-major order.
pub fn values(tensor: &Tensor) -> Vec<f32> {
    let flat = tensor.to_kind(Kind::Float).contiguous().view([-1]);
    let numel = flat.numel();
    let mut out = vec![0f32; numel];
    flat.copy_data(&mut out, numel);
    out
}
