//! Mixed precision on CUDA: the forward pass under libtorch's autocast in bfloat16, losses
//! and normalisation in float32 (the loss functions cast their inputs).
//!
//! tch 0.24's `autocast` uses libtorch's default CUDA dtype, float16, which needs loss
//! scaling; fa sets bfloat16 through a small C++ shim (`csrc/autocast.cpp`) instead. On the
//! CPU every precision trains in float32.

use tch::Device;

use fa_lang::ir::Precision;

extern "C" {
    fn fa_set_cuda_autocast_bf16(bf16: i32);
    fn fa_cuda_autocast_is_bf16() -> i32;
}

/// Whether CUDA autocast currently casts to bfloat16 (`Some(true)`), float16
/// (`Some(false)`), or something else (`None`).
pub fn cuda_autocast_is_bf16() -> Option<bool> {
    // SAFETY: the shim only reads libtorch's thread-local autocast state.
    match unsafe { fa_cuda_autocast_is_bf16() } {
        1 => Some(true),
        0 => Some(false),
        _ => None,
    }
}

/// Sets the dtype CUDA autocast casts to: bfloat16 when `bf16`, else float16.
pub fn set_cuda_autocast_bf16(bf16: bool) {
    // SAFETY: the shim only writes libtorch's thread-local autocast state.
    unsafe { fa_set_cuda_autocast_bf16(i32::from(bf16)) }
}

/// Why a precision cannot be used on a device.
#[derive(Debug, thiserror::Error)]
pub enum PrecisionError {
    #[error("precision f16 needs loss scaling, which fa does not implement yet; use bf16 (no scaling needed) or f32")]
    HalfNeedsScaling,
}

/// Checks that `precision` can train on `device`; returns whether autocast will be used.
pub fn uses_autocast(precision: Precision, device: Device) -> Result<bool, PrecisionError> {
    match (precision, device) {
        (Precision::F32, _) | (_, Device::Cpu) | (_, Device::Mps) | (_, Device::Vulkan) => {
            Ok(false)
        }
        (Precision::F16, Device::Cuda(_)) => Err(PrecisionError::HalfNeedsScaling),
        (Precision::Bf16, Device::Cuda(_)) => Ok(true),
    }
}

/// Runs `forward` under bfloat16 autocast when `enabled` (CUDA), else as it is.
pub fn forward<T>(enabled: bool, forward: impl FnOnce() -> T) -> T {
    if !enabled {
        return forward();
    }
    set_cuda_autocast_bf16(true);
    tch::autocast(true, forward)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shim_sets_and_reads_the_cuda_autocast_dtype_without_a_gpu() {
        set_cuda_autocast_bf16(true);
        assert_eq!(cuda_autocast_is_bf16(), Some(true));
        set_cuda_autocast_bf16(false);
        assert_eq!(cuda_autocast_is_bf16(), Some(false));
    }

    #[test]
    fn precisions_are_checked_per_device() {
        assert!(!uses_autocast(Precision::Bf16, Device::Cpu).unwrap());
        assert!(uses_autocast(Precision::Bf16, Device::Cuda(0)).unwrap());
        assert!(!uses_autocast(Precision::F32, Device::Cuda(0)).unwrap());
        assert!(uses_autocast(Precision::F16, Device::Cuda(0)).is_err());
    }
}
