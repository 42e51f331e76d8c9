//! `fa_torch::host_memory`: with fa's caching allocator installed (as `fa-torch` does at
//! start), a CPU tensor freed and made again reuses its block without fresh page faults,
//! within the cache's limit; with libtorch's default allocator every round faults its pages
//! in again. A test without the harness (`harness = false`): the allocator belongs to the
//! whole process. The default side runs in a child process of this binary.

use std::process::Command;

use fa_torch::host_memory::{self, HostAllocator};
use tch::{Device, Kind, Tensor};

const CHILD: &str = "FA_HOST_MEMORY_TEST_CHILD";
const FLOATS: i64 = 16 << 20; // 64 MiB of float32, above glibc's largest mmap threshold

/// The minor page faults of making a 64 MiB tensor in each of four rounds, each dropped
/// before the next, as a training step drops its activations.
fn fault_rounds() -> Vec<i64> {
    (0..4)
        .map(|_| {
            let before = minor_faults();
            let tensor = Tensor::ones([FLOATS], (Kind::Float, Device::Cpu));
            let faults = minor_faults() - before;
            assert_eq!(tensor.double_value(&[FLOATS - 1]), 1.0);
            faults
        })
        .collect()
}

fn minor_faults() -> i64 {
    // SAFETY: getrusage writes the struct it is given.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage.ru_minflt
    }
}

fn default_allocator_rounds() -> Vec<i64> {
    let output = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("faults "))
        .unwrap_or_else(|| panic!("the child printed no measurement: {stdout}"))
        .split_whitespace()
        .map(|field| field.parse().unwrap())
        .collect()
}

fn check(name: &str, body: impl FnOnce()) {
    body();
    println!("host_memory: {name} ... ok");
}

fn main() {
    if std::env::var_os(CHILD).is_some() {
        // libtorch's default allocator: this process never installs the cache.
        let faults: Vec<String> = fault_rounds().iter().map(i64::to_string).collect();
        println!("faults {}", faults.join(" "));
        return;
    }
    assert!(
        std::env::var_os("FA_HOST_ALLOC").is_none()
            && std::env::var_os("FA_HOST_CACHE_MIB").is_none(),
        "unset FA_HOST_ALLOC and FA_HOST_CACHE_MIB to run this test"
    );
    let limit = match host_memory::install() {
        HostAllocator::Caching { limit } => *limit,
        other => panic!("the cache was not installed: {other}"),
    };
    let bytes = (FLOATS * 4) as u64;
    assert!(
        limit >= 4 * bytes,
        "a limit of {limit} bytes is too small to test"
    );

    check("a freed block is reused without new page faults", || {
        let before = host_memory::stats();
        let cached = fault_rounds();
        let after = host_memory::stats();
        let default = default_allocator_rounds();
        println!("page faults per round: cache {cached:?}, libtorch's default {default:?}");
        // The default maps every tensor afresh and faults its pages in every round ...
        assert!(default.iter().all(|&f| f * 2 >= default[0]), "{default:?}");
        assert!(default[0] * 4096 >= bytes as i64 / 2, "{default:?}");
        // ... the cache hands the first round's pages to the next three.
        assert!(cached[0] * 4096 >= bytes as i64 / 2, "{cached:?}");
        for &round in &cached[1..] {
            assert!(round * 50 < cached[0], "{cached:?}");
        }
        assert!(after.hits >= before.hits + 3, "{before:?} → {after:?}");
        assert_eq!(after.live_bytes, before.live_bytes, "every tensor dropped");
        assert!(after.cached_bytes >= host_memory::size_class(bytes));
    });

    check(
        "blocks are kept per size class, and a tensor's bytes survive reuse",
        || {
            let small = Tensor::arange(FLOATS / 2, (Kind::Float, Device::Cpu));
            let misses = host_memory::stats().misses;
            // A different class: not served by the 64 MiB block.
            let other = Tensor::zeros([FLOATS / 2 + 12_345], (Kind::Float, Device::Cpu));
            assert!(host_memory::stats().misses > misses);
            drop(other);
            let reused = Tensor::ones([FLOATS], (Kind::Float, Device::Cpu));
            assert_eq!(reused.sum(Kind::Double).double_value(&[]), FLOATS as f64);
            assert_eq!(
                small.sum(Kind::Double).double_value(&[]),
                (FLOATS / 2 - 1) as f64 * (FLOATS / 2) as f64 / 2.0
            );
        },
    );

    check(
        "tensors freed on another thread come back to the cache",
        || {
            let tensors: Vec<Tensor> = (0..4)
                .map(|i| Tensor::full([FLOATS / 4], i as f64, (Kind::Float, Device::Cpu)))
                .collect();
            let live = host_memory::stats().live_bytes;
            std::thread::spawn(move || drop(tensors)).join().unwrap();
            let stats = host_memory::stats();
            assert_eq!(
                live - stats.live_bytes,
                4 * host_memory::size_class(bytes / 4),
                "{stats:?}"
            );
        },
    );

    check(
        "an impossible request is libtorch's out-of-memory error",
        || {
            // 2^50 bytes: more than the address space the kernel gives a process.
            let error = Tensor::f_empty([1i64 << 48], (Kind::Float, Device::Cpu))
                .expect_err("a petabyte was allocated");
            assert!(error.to_string().contains("out of memory"), "{error}");
            let stats = host_memory::stats();
            assert_eq!(
                stats.cached_bytes, 0,
                "the cache was released first: {stats:?}"
            );
        },
    );

    check(
        "the cache keeps no more than its limit, and releases on demand",
        || {
            host_memory::release_cached();
            assert_eq!(host_memory::stats().cached_bytes, 0);
            host_memory::set_limit(bytes);
            let tensors: Vec<Tensor> = (0..3)
                .map(|_| Tensor::ones([FLOATS], (Kind::Float, Device::Cpu)))
                .collect();
            drop(tensors);
            let stats = host_memory::stats();
            assert!(stats.cached_bytes <= bytes, "{stats:?}");
            assert!(stats.cached_bytes > 0, "{stats:?}");
            host_memory::release_cached();
            assert_eq!(host_memory::stats().cached_bytes, 0);
            host_memory::set_limit(limit);
        },
    );
}
