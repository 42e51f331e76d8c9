//! The host memory of libtorch's CPU tensors: a size-class cache that hands the blocks one
//! training step frees to the next step (`csrc/host_cache.cpp`).
//!
//! libtorch's default CPU allocator takes each tensor's storage from the C library and gives
//! it back when the tensor drops. With glibc's defaults, blocks above a sliding threshold (at
//! most 32 MiB) are fresh `mmap` regions returned to the kernel on free, and the top of the
//! heap is trimmed back as soon as enough of it is free. A training step frees and
//! reallocates the same activations every step, so every step takes its memory back from the
//! kernel page by page: zero-filled pages, one fault per 4 KiB. On the 2-core machine of
//! `docs/benchmarks.md`, `fa train` of the paper's ResNet-18 on CIFAR-10 took about 62,000
//! minor page faults per step at batch 64 and 0.8 million at batch 256.
//!
//! Telling glibc not to map or trim (`mallopt`) is not enough: blocks aligned by
//! `posix_memalign`, as libtorch's are, cannot be reused for a request of the same size on
//! glibc before 2.38, and a loop that frees a large tensor and allocates it again grows the
//! heap by the whole tensor every round. So fa installs its own CPU allocator: blocks of
//! 64 KiB and more are rounded up to one of eight size classes per doubling and kept, when
//! freed, for the next request of their class, up to a limit on the bytes kept (a quarter
//! of the machine's memory, at most 16 GiB; `FA_HOST_CACHE_MIB` sets it). This is what
//! libtorch's caching allocator does for CUDA memory. The numerics do not change: only where
//! the bytes live.
//!
//! `FA_HOST_ALLOC=default` keeps libtorch's own allocator.

use std::sync::OnceLock;

extern "C" {
    fn fa_host_cache_install(limit: u64) -> i32;
    fn fa_host_cache_release();
    fn fa_host_cache_stats(out: *mut u64);
    fn fa_host_cache_class(bytes: u64) -> u64;
}

/// The allocator of this process's CPU tensors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostAllocator {
    /// fa's size-class cache, keeping at most `limit` bytes of freed blocks.
    Caching { limit: u64 },
    /// libtorch's default allocator, for the reason given.
    Default(String),
}

impl std::fmt::Display for HostAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostAllocator::Caching { limit } => write!(
                f,
                "fa's caching allocator (freed tensor memory kept for reuse, up to {} MiB)",
                limit >> 20
            ),
            HostAllocator::Default(why) => write!(f, "libtorch's default allocator ({why})"),
        }
    }
}

/// The cache's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheStats {
    /// Bytes of cached-size blocks in use by tensors.
    pub live_bytes: u64,
    /// Bytes of freed blocks kept for reuse.
    pub cached_bytes: u64,
    /// The most bytes kept.
    pub limit: u64,
    /// Requests served from the cache.
    pub hits: u64,
    /// Requests of cached sizes that went to the C library.
    pub misses: u64,
}

static POLICY: OnceLock<HostAllocator> = OnceLock::new();

/// Chooses this process's CPU allocator once (later calls return the first answer): fa's
/// cache unless the environment says otherwise. Call it before the first large tensor
/// exists; tensors made before keep the allocator they came from.
pub fn install() -> &'static HostAllocator {
    POLICY.get_or_init(|| {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        match choice(&vars, physical_memory()) {
            Ok(limit) => {
                // SAFETY: the shim only registers the allocator and sets its limit.
                unsafe { fa_host_cache_install(limit) };
                HostAllocator::Caching { limit }
            }
            Err(why) => HostAllocator::Default(why),
        }
    })
}

/// The allocator [`install`] chose, if it has run.
pub fn policy() -> Option<&'static HostAllocator> {
    POLICY.get()
}

/// The cache's limit, or why not to install it, from the environment `vars` and the
/// machine's memory.
pub fn choice(vars: &[(String, String)], physical: Option<u64>) -> Result<u64, String> {
    let get = |name: &str| {
        vars.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    match get("FA_HOST_ALLOC") {
        Some("default") => return Err("FA_HOST_ALLOC=default".into()),
        Some("cache") | Some("") | None => {}
        Some(other) => {
            return Err(format!(
                "FA_HOST_ALLOC={other} is neither `cache` nor `default`"
            ))
        }
    }
    match get("FA_HOST_CACHE_MIB") {
        Some(mib) => match mib.trim().parse::<u64>() {
            Ok(mib) => Ok(mib << 20),
            Err(_) => Err(format!(
                "FA_HOST_CACHE_MIB={mib} is not a whole number of MiB"
            )),
        },
        None => Ok(physical.map_or(4 << 30, |bytes| (bytes / 4).min(16 << 30))),
    }
}

/// The machine's memory in bytes (`sysconf`), `None` where it does not say.
fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf only reads system parameters.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages > 0 && size > 0).then(|| pages as u64 * size as u64)
}

/// The cache's counters now (zeros when it was never installed).
pub fn stats() -> CacheStats {
    let mut out = [0u64; 5];
    // SAFETY: the shim writes five counters into the array.
    unsafe { fa_host_cache_stats(out.as_mut_ptr()) };
    CacheStats {
        live_bytes: out[0],
        cached_bytes: out[1],
        limit: out[2],
        hits: out[3],
        misses: out[4],
    }
}

/// Returns every cached block to the C library (tensors in use keep theirs).
pub fn release_cached() {
    // SAFETY: the shim frees only blocks no tensor holds.
    unsafe { fa_host_cache_release() }
}

/// Sets the most bytes the cache keeps from now on (blocks already kept stay until reused or
/// released). No effect unless [`install`] installed the cache.
pub fn set_limit(bytes: u64) {
    if matches!(policy(), Some(HostAllocator::Caching { .. })) {
        // SAFETY: a second install only sets the limit.
        unsafe { fa_host_cache_install(bytes) };
    }
}

/// The bytes the cache sets aside for a request of `bytes` (the request itself below 64 KiB,
/// which the C library recycles).
pub fn size_class(bytes: u64) -> u64 {
    // SAFETY: a pure function of its argument.
    unsafe { fa_host_cache_class(bytes) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_limit_is_a_quarter_of_memory_at_most_16_gib_unless_the_environment_says() {
        const GIB: u64 = 1 << 30;
        assert_eq!(choice(&vars(&[]), Some(24 * GIB)), Ok(6 * GIB));
        assert_eq!(choice(&vars(&[]), Some(2048 * GIB)), Ok(16 * GIB));
        assert_eq!(choice(&vars(&[]), None), Ok(4 * GIB));
        assert_eq!(
            choice(&vars(&[("FA_HOST_CACHE_MIB", "512")]), Some(24 * GIB)),
            Ok(512 << 20)
        );
        assert_eq!(
            choice(&vars(&[("FA_HOST_ALLOC", "cache")]), Some(8 * GIB)),
            Ok(2 * GIB)
        );
        assert_eq!(
            choice(&vars(&[("FA_HOST_ALLOC", "default")]), Some(8 * GIB)),
            Err("FA_HOST_ALLOC=default".into())
        );
        for bad in [
            vars(&[("FA_HOST_ALLOC", "glibc")]),
            vars(&[("FA_HOST_CACHE_MIB", "1.5")]),
        ] {
            assert!(choice(&bad, Some(GIB)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn size_classes_cover_the_request_within_an_eighth() {
        assert_eq!(size_class(100), 100);
        assert_eq!(size_class(65_535), 65_535);
        for bytes in [
            1u64 << 16,
            70_000,
            1 << 20,
            (1 << 20) + 1,
            67_108_864,
            123_456_789,
        ] {
            let class = size_class(bytes);
            assert!(class >= bytes, "{bytes} → {class}");
            assert!(class * 8 <= bytes * 9, "{bytes} → {class}");
            // A class is its own class: a block is reused for the sizes that round to it.
            assert_eq!(size_class(class), class, "{bytes}");
        }
        assert_eq!(size_class(1 << 20), 1 << 20);
        assert_eq!(size_class((1 << 20) + 1), (1 << 20) + (1 << 17));
    }
}
