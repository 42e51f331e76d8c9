//! `--device` parsing and the `fa doctor` report.

use fa_torch::lower::{doctor, parse_device, LowerError};
use tch::Device;

#[test]
fn parses_device_names() {
    assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
    assert_eq!(parse_device("auto").unwrap(), Device::cuda_if_available());
    for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", ""] {
        assert!(
            matches!(parse_device(bad), Err(LowerError::Device(_))),
            "{bad}"
        );
    }
}

#[test]
fn cuda_beyond_the_device_count_is_an_error() {
    let count = if tch::Cuda::is_available() {
        tch::Cuda::device_count() as usize
    } else {
        0
    };
    match parse_device(&format!("cuda:{count}")) {
        Err(LowerError::CudaUnavailable {
            index,
            count: reported,
        }) => {
            assert_eq!((index, reported), (count, count));
        }
        other => panic!("expected an error, got {other:?}"),
    }
    if count > 0 {
        assert_eq!(parse_device("cuda").unwrap(), Device::Cuda(0));
    }
}

#[test]
fn doctor_names_the_loaded_libtorch() {
    let report = doctor();
    assert!(report.contains("libtorch version:  2.11.0"), "{report}");
    assert!(report.contains("libtorch_cpu.so"), "{report}");
    assert!(report.contains("cuda available:"), "{report}");
}
