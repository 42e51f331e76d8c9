//! Mixed precision on CUDA: the forward pass under libtorch's autocast in bfloat16, losses
//! and normalisation in float32 (the loss functions cast their inputs).
//!
//! tch 0.24's `autocast` uses libtorch's default CUDA dtype, float16, which needs loss
//! scaling; fa sets bfloat16 through a small C++ shim (`csrc/autocast.cpp`) instead. On the
//! CPU every precision trains in float32.
//!
//! Evaluation extracts frozen features in bfloat16 where the hardware computes it natively
//! (every CUDA device fa supports, and CPUs with AVX-512 BF16 instructions, where oneDNN's
//! bfloat16 convolutions run about 1.8× faster than float32), then scores them in float32;
//! [`extraction_precision`] decides, `FA_EVAL_PRECISION=f32|bf16` overrides.

use tch::Device;

use fa_lang::ir::Precision;

extern "C" {
    fn fa_set_cuda_autocast_bf16(bf16: i32);
    fn fa_cuda_autocast_is_bf16() -> i32;
    fn fa_cpu_autocast_enter() -> i32;
    fn fa_cpu_autocast_exit(before: i32);
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

/// The precision evaluation extracts features in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extraction {
    F32,
    Bf16,
}

impl Extraction {
    pub fn name(self) -> &'static str {
        match self {
            Extraction::F32 => "f32",
            Extraction::Bf16 => "bf16",
        }
    }
}

/// Whether this CPU has bfloat16 dot-product instructions (AVX-512 BF16).
pub fn cpu_has_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Why `FA_EVAL_PRECISION` was not understood.
#[derive(Debug, thiserror::Error)]
#[error("FA_EVAL_PRECISION is `{0}`; expected `f32` or `bf16`")]
pub struct BadExtractionPrecision(String);

/// The precision evaluation extracts features in on `device`: bfloat16 on CUDA and on CPUs
/// with AVX-512 BF16, else float32; `FA_EVAL_PRECISION` (`f32` or `bf16`) overrides.
pub fn extraction_precision(device: Device) -> Result<Extraction, BadExtractionPrecision> {
    let cpu_bf16 = device == Device::Cpu && cpu_has_bf16();
    choose_extraction(
        std::env::var("FA_EVAL_PRECISION").ok().as_deref(),
        device.is_cuda() || cpu_bf16,
    )
}

/// The extraction precision for the override `chosen` (`FA_EVAL_PRECISION`'s value), or by
/// default bfloat16 when the device has `native_bf16`.
fn choose_extraction(
    chosen: Option<&str>,
    native_bf16: bool,
) -> Result<Extraction, BadExtractionPrecision> {
    match chosen.map(|value| value.trim().to_ascii_lowercase()) {
        Some(value) if value == "f32" || value == "float32" => Ok(Extraction::F32),
        Some(value) if value == "bf16" || value == "bfloat16" => Ok(Extraction::Bf16),
        Some(_) => Err(BadExtractionPrecision(
            chosen.unwrap_or_default().to_string(),
        )),
        None if native_bf16 => Ok(Extraction::Bf16),
        None => Ok(Extraction::F32),
    }
}

/// Leaves CPU autocast when dropped, also when the forward pass unwinds.
struct CpuAutocast(i32);

impl Drop for CpuAutocast {
    fn drop(&mut self) {
        // SAFETY: pairs the `fa_cpu_autocast_enter` that made this guard, on the same thread.
        unsafe { fa_cpu_autocast_exit(self.0) }
    }
}

/// Runs an inference `forward` on `device` in `precision` (bfloat16 autocast on CUDA or on
/// the CPU), returning what it returns; the caller casts features to float32.
pub fn extract<T>(device: Device, precision: Extraction, forward: impl FnOnce() -> T) -> T {
    match precision {
        Extraction::F32 => forward(),
        Extraction::Bf16 if device.is_cuda() => self::forward(true, forward),
        Extraction::Bf16 => {
            // SAFETY: the shim only writes libtorch's thread-local autocast state; the guard
            // restores it on this thread.
            let _guard = CpuAutocast(unsafe { fa_cpu_autocast_enter() });
            forward()
        }
    }
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
    fn cpu_bf16_extraction_casts_convolutions_and_restores_float32() {
        let _ = tch::manual_seed(3);
        let conv = tch::nn::conv2d(
            &tch::nn::VarStore::new(Device::Cpu).root(),
            3,
            4,
            3,
            Default::default(),
        );
        let x = tch::Tensor::randn([2, 3, 8, 8], (tch::Kind::Float, Device::Cpu));
        let inside = tch::no_grad(|| {
            extract(Device::Cpu, Extraction::Bf16, || {
                tch::nn::Module::forward(&conv, &x)
            })
        });
        assert_eq!(inside.kind(), tch::Kind::BFloat16);
        let after = tch::no_grad(|| tch::nn::Module::forward(&conv, &x));
        assert_eq!(after.kind(), tch::Kind::Float, "autocast left on");
        let error = (inside.to_kind(tch::Kind::Float) - &after)
            .abs()
            .max()
            .double_value(&[]);
        let scale = after.abs().max().double_value(&[]);
        assert!(
            error <= 0.02 * scale,
            "bf16 {error} against f32 scale {scale}"
        );
    }

    #[test]
    fn the_extraction_precision_follows_the_device_unless_overridden() {
        assert_eq!(choose_extraction(None, true).unwrap(), Extraction::Bf16);
        assert_eq!(choose_extraction(None, false).unwrap(), Extraction::F32);
        assert_eq!(
            choose_extraction(Some("f32"), true).unwrap(),
            Extraction::F32
        );
        assert_eq!(
            choose_extraction(Some(" BF16 "), false).unwrap(),
            Extraction::Bf16
        );
        let error = choose_extraction(Some("fp8"), true).unwrap_err();
        assert_eq!(
            error.to_string(),
            "FA_EVAL_PRECISION is `fp8`; expected `f32` or `bf16`"
        );
    }

    #[test]
    fn precisions_are_checked_per_device() {
        assert!(!uses_autocast(Precision::Bf16, Device::Cpu).unwrap());
        assert!(uses_autocast(Precision::Bf16, Device::Cuda(0)).unwrap());
        assert!(!uses_autocast(Precision::F32, Device::Cuda(0)).unwrap());
        assert!(uses_autocast(Precision::F16, Device::Cuda(0)).is_err());
    }
}
