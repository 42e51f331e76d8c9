//! Safe wrappers of the C++ shim's performance calls (`csrc/perf.cpp`): the channels_last
//! memory format, the multi-tensor (`_foreach_*`) operations and a CUDA device's peak memory,
//! none of which tch 0.24 exposes.
//!
//! Each wrapper hands libtorch the tensors tch owns (`*mut C_tensor` is a `torch::Tensor*`)
//! and takes ownership of the new tensors the shim returns. A shim call that fails (libtorch
//! raised an exception, for instance on tensors of different devices) panics with libtorch's
//! message, as tch's own operations do: the callers pass tensors they built themselves, so a
//! failure is a bug, not bad input.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int};

use tch::{Device, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn fa_perf_last_error() -> *const c_char;
    fn fa_fused_sgd_(
        params: *const *mut C_tensor,
        grads: *const *mut C_tensor,
        bufs: *const *mut C_tensor,
        count: c_int,
        weight_decay: f64,
        momentum: f64,
        lr: f64,
        first_step: c_int,
    ) -> c_int;
    fn fa_clear_grad(tensor: *const C_tensor) -> c_int;
    fn fa_channels_last(tensor: *const C_tensor) -> *mut C_tensor;
    fn fa_is_channels_last(tensor: *const C_tensor) -> c_int;
    fn fa_foreach_mul_scalar(
        list: *const *mut C_tensor,
        count: c_int,
        scalar: f64,
        out: *mut *mut C_tensor,
    ) -> c_int;
    fn fa_foreach_mul_scalar_(list: *const *mut C_tensor, count: c_int, scalar: f64) -> c_int;
    fn fa_foreach_mul_list_(
        list: *const *mut C_tensor,
        other: *const *mut C_tensor,
        count: c_int,
    ) -> c_int;
    fn fa_foreach_add_list(
        list: *const *mut C_tensor,
        other: *const *mut C_tensor,
        count: c_int,
        out: *mut *mut C_tensor,
    ) -> c_int;
    fn fa_foreach_add_list_(
        list: *const *mut C_tensor,
        other: *const *mut C_tensor,
        count: c_int,
    ) -> c_int;
    fn fa_foreach_sub_list_(
        list: *const *mut C_tensor,
        other: *const *mut C_tensor,
        count: c_int,
    ) -> c_int;
    fn fa_foreach_copy(list: *const *mut C_tensor, count: c_int, out: *mut *mut C_tensor) -> c_int;
    fn fa_foreach_norm(list: *const *mut C_tensor, count: c_int, out: *mut *mut C_tensor) -> c_int;
    fn fa_cuda_peak_bytes(index: c_int) -> i64;
}

/// Panics with the shim's last error when `ok` is 0 (see the module documentation).
fn check(ok: c_int, operation: &str) {
    if ok == 0 {
        // SAFETY: the shim returns a pointer to its thread-local, NUL-terminated message.
        let message = unsafe { CStr::from_ptr(fa_perf_last_error()) };
        panic!("libtorch {operation} failed: {}", message.to_string_lossy());
    }
}

/// The raw pointers of `tensors`, for one shim call. The shim only reads the pointers; the
/// in-place operations change the tensors' values, which `&Tensor` allows in tch as well.
fn pointers(tensors: &[&Tensor]) -> Vec<*mut C_tensor> {
    tensors
        .iter()
        .map(|tensor| tensor.as_ptr() as *mut C_tensor)
        .collect()
}

/// The length of a tensor list as the shim's `int`.
fn count(tensors: &[&Tensor]) -> c_int {
    c_int::try_from(tensors.len()).expect("fewer than 2^31 tensors in one list")
}

/// Wraps the `count` new tensors the shim wrote into `out`.
fn owned(out: Vec<*mut C_tensor>) -> Vec<Tensor> {
    // SAFETY: each pointer is a new `torch::Tensor` the shim allocated for the caller.
    out.into_iter()
        .map(|pointer| unsafe { Tensor::from_ptr(pointer) })
        .collect()
}

/// `tensor` in the channels_last memory format when it is 4-D (`[N, C, H, W]` with the
/// channels innermost in memory; shape and values unchanged), else `tensor` itself.
/// Convolutions, batch norm and ReLU keep the format, so a convolutional network fed a
/// channels_last batch runs its layers in it (libtorch's oneDNN and cuDNN kernels prefer it).
pub fn channels_last(tensor: &Tensor) -> Tensor {
    // SAFETY: the shim reads the tensor and returns a new one (null on failure).
    let pointer = unsafe { fa_channels_last(tensor.as_ptr()) };
    check(c_int::from(!pointer.is_null()), "channels_last");
    // SAFETY: a non-null result is a new tensor owned by the caller.
    unsafe { Tensor::from_ptr(pointer) }
}

/// Whether `tensor` is 4-D and laid out channels_last.
pub fn is_channels_last(tensor: &Tensor) -> bool {
    // SAFETY: the shim only reads the tensor's metadata.
    unsafe { fa_is_channels_last(tensor.as_ptr()) == 1 }
}

/// `list[i] * scalar` for every `i`, in as few kernel launches as libtorch manages.
pub fn foreach_mul_scalar(list: &[&Tensor], scalar: f64) -> Vec<Tensor> {
    let mut out = vec![std::ptr::null_mut(); list.len()];
    // SAFETY: `out` has room for one pointer per input tensor.
    let ok = unsafe {
        fa_foreach_mul_scalar(
            pointers(list).as_ptr(),
            count(list),
            scalar,
            out.as_mut_ptr(),
        )
    };
    check(ok, "_foreach_mul");
    owned(out)
}

/// `list[i] *= scalar` in place.
pub fn foreach_mul_scalar_(list: &[&Tensor], scalar: f64) {
    // SAFETY: the shim changes the tensors' values in place, nothing else.
    let ok = unsafe { fa_foreach_mul_scalar_(pointers(list).as_ptr(), count(list), scalar) };
    check(ok, "_foreach_mul_");
}

/// `list[i] *= other[i]` in place; `other[i]` may be a 0-D tensor.
pub fn foreach_mul_list_(list: &[&Tensor], other: &[&Tensor]) {
    assert_eq!(
        list.len(),
        other.len(),
        "foreach lists of different lengths"
    );
    // SAFETY: as for `foreach_mul_scalar_`.
    let ok = unsafe {
        fa_foreach_mul_list_(
            pointers(list).as_ptr(),
            pointers(other).as_ptr(),
            count(list),
        )
    };
    check(ok, "_foreach_mul_");
}

/// `list[i] + other[i]` for every `i`.
pub fn foreach_add_list(list: &[&Tensor], other: &[&Tensor]) -> Vec<Tensor> {
    assert_eq!(
        list.len(),
        other.len(),
        "foreach lists of different lengths"
    );
    let mut out = vec![std::ptr::null_mut(); list.len()];
    // SAFETY: `out` has room for one pointer per input tensor.
    let ok = unsafe {
        fa_foreach_add_list(
            pointers(list).as_ptr(),
            pointers(other).as_ptr(),
            count(list),
            out.as_mut_ptr(),
        )
    };
    check(ok, "_foreach_add");
    owned(out)
}

/// `list[i] += other[i]` in place.
pub fn foreach_add_list_(list: &[&Tensor], other: &[&Tensor]) {
    assert_eq!(
        list.len(),
        other.len(),
        "foreach lists of different lengths"
    );
    // SAFETY: as for `foreach_mul_scalar_`.
    let ok = unsafe {
        fa_foreach_add_list_(
            pointers(list).as_ptr(),
            pointers(other).as_ptr(),
            count(list),
        )
    };
    check(ok, "_foreach_add_");
}

/// `list[i] -= other[i]` in place.
pub fn foreach_sub_list_(list: &[&Tensor], other: &[&Tensor]) {
    assert_eq!(
        list.len(),
        other.len(),
        "foreach lists of different lengths"
    );
    // SAFETY: as for `foreach_mul_scalar_`.
    let ok = unsafe {
        fa_foreach_sub_list_(
            pointers(list).as_ptr(),
            pointers(other).as_ptr(),
            count(list),
        )
    };
    check(ok, "_foreach_sub_");
}

/// A copy of every tensor (new storage, same values).
pub fn foreach_copy(list: &[&Tensor]) -> Vec<Tensor> {
    let mut out = vec![std::ptr::null_mut(); list.len()];
    // SAFETY: `out` has room for one pointer per input tensor.
    let ok = unsafe { fa_foreach_copy(pointers(list).as_ptr(), count(list), out.as_mut_ptr()) };
    check(ok, "clone");
    owned(out)
}

/// The L2 norm of every tensor, each a 0-D tensor on the tensor's device.
pub fn foreach_norm(list: &[&Tensor]) -> Vec<Tensor> {
    let mut out = vec![std::ptr::null_mut(); list.len()];
    // SAFETY: `out` has room for one pointer per input tensor.
    let ok = unsafe { fa_foreach_norm(pointers(list).as_ptr(), count(list), out.as_mut_ptr()) };
    check(ok, "_foreach_norm");
    owned(out)
}

/// SGD with momentum in libtorch's fused kernel (`_fused_sgd_`), in place: for each i,
/// d = grads[i] + weight_decay·params[i]; with buffers, buf = momentum·buf + d (buf = d when
/// `first_step`) and params[i] −= lr·buf; without, params[i] −= lr·d. All tensors share a
/// dtype and a device; `buffers`, when given, has one tensor per parameter.
pub fn fused_sgd_(
    params: &[&Tensor],
    grads: &[&Tensor],
    buffers: Option<&[&Tensor]>,
    weight_decay: f64,
    momentum: f64,
    lr: f64,
    first_step: bool,
) {
    assert_eq!(params.len(), grads.len());
    let buffer_pointers = buffers.map(|buffers| {
        assert_eq!(buffers.len(), params.len());
        pointers(buffers)
    });
    // SAFETY: the three lists have `count` pointers each (or no buffers: null).
    let ok = unsafe {
        fa_fused_sgd_(
            pointers(params).as_ptr(),
            pointers(grads).as_ptr(),
            buffer_pointers
                .as_ref()
                .map_or(std::ptr::null(), |list| list.as_ptr()),
            count(params),
            weight_decay,
            momentum,
            lr,
            c_int::from(first_step),
        )
    };
    check(ok, "_fused_sgd_");
}

/// Drops `tensor`'s gradient (PyTorch's `zero_grad(set_to_none=True)`): afterwards
/// `tensor.grad()` is undefined until a backward pass stores a new one.
pub fn clear_grad(tensor: &Tensor) {
    // SAFETY: the shim resets the gradient of the tensor tch owns.
    let ok = unsafe { fa_clear_grad(tensor.as_ptr()) };
    check(ok, "clearing a gradient");
}

/// The most bytes libtorch's caching allocator has held on `device` since the process
/// started; `None` on the CPU or when libtorch has no CUDA.
pub fn cuda_peak_bytes(device: Device) -> Option<u64> {
    let Device::Cuda(index) = device else {
        return None;
    };
    let index = c_int::try_from(index).ok()?;
    // SAFETY: the shim reads the allocator's statistics and returns -1 without CUDA.
    let peak = unsafe { fa_cuda_peak_bytes(index) };
    u64::try_from(peak).ok()
}
