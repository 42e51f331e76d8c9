//! Property tests: readers never panic on arbitrary bytes; colour ops keep their algebra.

mod support;

use std::io::Write;

use fa_lang::ir::{DataConfig, DatasetFormat};
use fa_torch::data::{load, LoadOptions};
use proptest::prelude::*;

/// A dataset `d` of 8×8 colour images in `format`.
fn config(format: DatasetFormat) -> DataConfig {
    support::data::dataset_config(format, "d", 8, 3)
}

/// An IDX header for `count` images of `rows`×`cols`, then `tail`.
fn idx_with(count: u32, rows: u32, cols: u32, tail: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 8, 3];
    for dim in [count, rows, cols] {
        bytes.extend_from_slice(&dim.to_be_bytes());
    }
    bytes.extend_from_slice(tail);
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn idx_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), count in 0u32..5, side in 0u32..5, gzip in any::<bool>(), header in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("d");
        std::fs::create_dir_all(&base).unwrap();
        let content = if header { idx_with(count, side, side, &bytes) } else { bytes };
        let content = if gzip {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&content).unwrap();
            encoder.finish().unwrap()
        } else {
            content
        };
        std::fs::write(base.join("train-images-idx3-ubyte"), &content).unwrap();
        let cfg = DataConfig { channels: 1, ..config(DatasetFormat::Idx) };
        if let Ok(set) = load(&cfg, dir.path(), "train", &LoadOptions::default()) {
            prop_assert_eq!(set.images.len(), set.len * set.image_bytes());
        }
    }

    #[test]
    fn cifar_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..8000)) {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("d");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::write(base.join("test_batch.bin"), &bytes).unwrap();
        if let Ok(set) = load(&config(DatasetFormat::CifarBinary), dir.path(), "test", &LoadOptions::default()) {
            prop_assert_eq!(set.len, bytes.len() / 3073);
        }
    }

    #[test]
    fn archive_with_garbage_members_is_an_error_or_skipped(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("d");
        std::fs::create_dir_all(&base).unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, "train/class/x.jpg", bytes.as_slice()).unwrap();
        std::fs::write(base.join("train.tar"), builder.into_inner().unwrap()).unwrap();
        let strict = load(&config(DatasetFormat::ImageFolder), dir.path(), "train", &LoadOptions::default());
        prop_assert!(strict.is_err());
        let lenient = load(&config(DatasetFormat::ImageFolder), dir.path(), "train", &LoadOptions { skip_bad: true, ..Default::default() });
        // The only image is bad, so nothing is left: still an error, never a panic.
        prop_assert!(lenient.is_err());
    }
}
mod colour {
    use fa_lang::ir::Interpolation;
    use fa_torch::data::{ops, CropBox};
    use proptest::prelude::*;
    use tch::{Kind, Tensor};

    fn image(values: &[u8], n: i64) -> Tensor {
        Tensor::from_slice(values)
            .view([n, 3, 4, 4])
            .to_kind(Kind::Float)
            / 255.0
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn unit_factors_are_identities(values in proptest::collection::vec(any::<u8>(), 96)) {
            let x = image(&values, 2);
            prop_assert!(ops::adjust_brightness(&x, &[1.0, 1.0]).equal(&x));
            prop_assert!(ops::adjust_contrast(&x, &[1.0, 1.0]).equal(&x));
            prop_assert!(ops::adjust_saturation(&x, &[1.0, 1.0]).equal(&x));
        }

        #[test]
        fn hue_shifts_add(values in proptest::collection::vec(any::<u8>(), 96), a in -0.5f64..0.5, b in -0.5f64..0.5) {
            let x = image(&values, 2);
            let twice = ops::adjust_hue(&ops::adjust_hue(&x, &[a, b]), &[b, a]);
            let once = ops::adjust_hue(&x, &[a + b, a + b]);
            prop_assert!(crate::support::tensors::max_abs_difference(&twice, &once) < 1e-5, "{}", crate::support::tensors::max_abs_difference(&twice, &once));
        }

        #[test]
        fn colour_ops_stay_in_the_unit_interval(values in proptest::collection::vec(any::<u8>(), 96), f in 0.0f64..3.0, h in -0.5f64..0.5) {
            let x = image(&values, 2);
            for out in [ops::adjust_brightness(&x, &[f, f]), ops::adjust_contrast(&x, &[f, f]), ops::adjust_saturation(&x, &[f, f]), ops::adjust_hue(&x, &[h, h])] {
                prop_assert!(out.min().double_value(&[]) >= 0.0 && out.max().double_value(&[]) <= 1.0);
            }
        }

        #[test]
        fn any_crop_of_a_constant_image_is_constant(top in 0usize..10, left in 0usize..10, height in 1usize..10, width in 1usize..10, size in 1usize..20, value in 0.0f64..1.0, bicubic in any::<bool>()) {
            let (height, width) = (height.min(10 - top).max(1), width.min(10 - left).max(1));
            let (top, left) = (top.min(10 - height), left.min(10 - width));
            let x = Tensor::full([1, 3, 10, 10], value, (Kind::Float, tch::Device::Cpu));
            let interpolation = if bicubic { Interpolation::Bicubic } else { Interpolation::Bilinear };
            let out = ops::resized_crop(&x, &[CropBox { top, left, height, width }], size, interpolation);
            prop_assert_eq!(out.size(), vec![1, 3, size as i64, size as i64]);
            prop_assert!((out - value).abs().max().double_value(&[]) < 1e-5);
        }
    }
}
