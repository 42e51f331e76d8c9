//! Peak memory of the process: the resident set on the host (`VmHWM` of `/proc/self/status`)
//! and the bytes libtorch's caching allocator has held on a CUDA device.

use serde::{Deserialize, Serialize};
use tch::Device;

/// Peak memory so far, in MiB (2^20 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeakMemory {
    /// The process's peak resident set (host memory); `None` where `/proc` has no `VmHWM`
    /// (systems other than Linux).
    pub rss_mib: Option<f64>,
    /// The most the CUDA caching allocator has held on the training device (tensors only,
    /// not the CUDA context); `None` on other devices.
    pub cuda_mib: Option<f64>,
}

impl PeakMemory {
    /// The peaks of this process so far, with the CUDA one of `device` when it is a GPU.
    pub fn now(device: Device) -> PeakMemory {
        const MIB: f64 = (1u64 << 20) as f64;
        PeakMemory {
            rss_mib: peak_rss_bytes().map(|bytes| bytes as f64 / MIB),
            cuda_mib: crate::native::cuda_peak_bytes(device).map(|bytes| bytes as f64 / MIB),
        }
    }
}

/// The peak resident set of this process in bytes, from `VmHWM` in `/proc/self/status`.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    vm_hwm_bytes(&status)
}

/// The `VmHWM:  <n> kB` line of a `/proc/<pid>/status` text, in bytes.
pub fn vm_hwm_bytes(status: &str) -> Option<u64> {
    kilobyte_field(status, "VmHWM:")
}

/// The memory the kernel reports as available for new work (`MemAvailable` of
/// `/proc/meminfo`), in bytes; `None` outside Linux.
pub fn available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    kilobyte_field(&meminfo, "MemAvailable:")
}

/// The value of a `<key>  <n> kB` line of a `/proc` text, in bytes.
fn kilobyte_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with(key))?;
    let mut fields = line[key.len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => value.checked_mul(1024),
        _ => None,
    }
}
