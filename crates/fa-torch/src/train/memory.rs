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
    parse_vm_hwm(&status)
}

/// The `VmHWM:  <n> kB` line of a `/proc/<pid>/status` text, in bytes.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let mut fields = line["VmHWM:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => value.checked_mul(1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_line_is_read_in_kilobytes() {
        let status = "Name:\tfa-torch\nVmPeak:\t 9000 kB\nVmHWM:\t  2048 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(2048 * 1024));
        assert_eq!(parse_vm_hwm("VmRSS:\t 1 kB\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM:\t lots\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM:\t 12 MB\n"), None);
    }

    #[test]
    fn the_peak_grows_with_an_allocation_that_is_touched() {
        let before = peak_rss_bytes().expect("Linux has VmHWM");
        // 256 MiB written page by page, so it is resident.
        let block = vec![1u8; 256 << 20];
        let after = peak_rss_bytes().unwrap();
        assert!(block.iter().step_by(4096).all(|&b| b == 1));
        assert!(after >= before + (200 << 20), "before {before}, after {after}");
        let peak = PeakMemory::now(Device::Cpu);
        assert!(peak.rss_mib.unwrap() >= after as f64 / (1u64 << 20) as f64 - 1.0);
        assert_eq!(peak.cuda_mib, None);
    }
}
