//! The C++ shim's performance calls (`fa_torch::native`) against libtorch's own per-tensor
//! operations, and the peak-memory readings (`fa_torch::train::memory`).

use fa_torch::native::{
    channels_last, cuda_peak_bytes, foreach_add_list, foreach_add_list_, foreach_copy,
    foreach_mul_list_, foreach_mul_scalar, foreach_mul_scalar_, foreach_norm, foreach_sub_list_,
    is_channels_last,
};
use fa_torch::train::memory::{peak_rss_bytes, vm_hwm_bytes, PeakMemory};
use tch::{Device, Kind, Tensor};

#[test]
fn channels_last_keeps_shape_and_values_and_changes_strides() {
    let tensor = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).view([2, 3, 4, 5]);
    assert!(!is_channels_last(&tensor));
    let converted = channels_last(&tensor);
    assert!(is_channels_last(&converted));
    assert_eq!(converted.size(), tensor.size());
    // NHWC in memory: the channel dimension has stride 1.
    assert_eq!(converted.stride(), [60, 1, 15, 3]);
    assert!(converted.equal(&tensor));
    let flat = Tensor::ones([7], (Kind::Float, Device::Cpu));
    assert!(!is_channels_last(&channels_last(&flat)));
}

#[test]
fn foreach_operations_equal_their_per_tensor_counterparts() {
    tch::manual_seed(3);
    let options = (Kind::Float, Device::Cpu);
    let a = [Tensor::randn([3, 4], options), Tensor::randn([5], options)];
    let b = [Tensor::randn([3, 4], options), Tensor::randn([5], options)];
    let originals: Vec<Tensor> = a.iter().map(Tensor::copy).collect();
    let list_a: Vec<&Tensor> = a.iter().collect();
    let list_b: Vec<&Tensor> = b.iter().collect();
    for (i, product) in foreach_mul_scalar(&list_a, 0.3).iter().enumerate() {
        assert!(product.equal(&(&a[i] * 0.3)));
    }
    for (i, sum) in foreach_add_list(&list_a, &list_b).iter().enumerate() {
        assert!(sum.equal(&(&a[i] + &b[i])));
    }
    for (i, norm) in foreach_norm(&list_a).iter().enumerate() {
        assert_eq!(norm.size(), Vec::<i64>::new());
        assert!(norm.equal(&a[i].norm()));
    }
    let copies = foreach_copy(&list_a);
    let list_copies: Vec<&Tensor> = copies.iter().collect();
    foreach_mul_scalar_(&list_copies, 2.0);
    foreach_add_list_(&list_copies, &list_b);
    foreach_sub_list_(&list_copies, &list_a);
    let scales = [Tensor::from(0.5f32), Tensor::from(-2.0f32)];
    foreach_mul_list_(&list_copies, &scales.iter().collect::<Vec<_>>());
    for i in 0..2 {
        let expected = ((&a[i] * 2.0 + &b[i]) - &a[i]) * &scales[i];
        assert!(copies[i].equal(&expected), "tensor {i}");
        // The copies have storage of their own: the in-place operations left `a` alone.
        assert!(a[i].equal(&originals[i]));
    }
}

#[test]
#[should_panic(expected = "libtorch _foreach_add failed")]
fn a_failing_shim_call_panics_with_libtorchs_message() {
    let a = Tensor::ones([3], (Kind::Float, Device::Cpu));
    let b = Tensor::ones([4], (Kind::Float, Device::Cpu));
    let _ = foreach_add_list(&[&a], &[&b]);
}

#[test]
fn the_peak_line_is_read_in_kilobytes() {
    let status = "Name:\tfa-torch\nVmPeak:\t 9000 kB\nVmHWM:\t  2048 kB\nVmRSS:\t 1024 kB\n";
    assert_eq!(vm_hwm_bytes(status), Some(2048 * 1024));
    assert_eq!(vm_hwm_bytes("VmRSS:\t 1 kB\n"), None);
    assert_eq!(vm_hwm_bytes("VmHWM:\t lots\n"), None);
    assert_eq!(vm_hwm_bytes("VmHWM:\t 12 MB\n"), None);
}

/// The current resident set in bytes (`VmRSS`).
fn current_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .unwrap();
    let kilobytes: u64 = line[6..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    kilobytes * 1024
}

#[test]
fn the_peak_grows_with_an_allocation_that_is_touched() {
    let before = peak_rss_bytes().expect("Linux has VmHWM");
    // Enough bytes, each written so that it is resident, to pass the earlier peak by 64 MiB
    // whatever other tests of this process allocated and freed before.
    let needed = before.saturating_sub(current_rss_bytes()) + (64 << 20);
    let block = vec![1u8; needed as usize];
    let after = peak_rss_bytes().unwrap();
    assert!(block.iter().step_by(4096).all(|&b| b == 1));
    assert!(
        after >= before + (48 << 20),
        "before {before}, after {after}"
    );
    let peak = PeakMemory::now(Device::Cpu);
    assert!(peak.rss_mib.unwrap() >= after as f64 / (1u64 << 20) as f64 - 1.0);
    assert_eq!(peak.cuda_mib, None);
    assert_eq!(cuda_peak_bytes(Device::Cpu), None);
}
