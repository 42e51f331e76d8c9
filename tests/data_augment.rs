//! Augmentation ops and the augmenter on the CPU, checked against independent definitions.

mod support;

use fa_base::random::{Key, Purpose};
use fa_lang::ir::{AugOp, Interpolation, Pipeline, Span};
use fa_torch::data::{byol_pipelines, ops, to_tensor, Augmenter, CropBox, DataError, ImageSet};
use support::tensors::{max_abs_difference, values};
use tch::{Device, Kind, Tensor};

/// The augmentation stream of view 0 in epoch 0 of a run seeded with `seed`.
fn key(seed: u64) -> Key {
    Key::new(seed, Purpose::View(0), 0)
}

/// Dataset indices 0, 1, … for every image of `batch`.
fn indices(batch: &Tensor) -> Vec<u64> {
    (0..batch.size()[0] as u64).collect()
}

/// A float batch `[n, c, h, w]` of pseudo-random values k/255 (deterministic).
fn random_batch(n: i64, c: i64, h: i64, w: i64, seed: u64) -> Tensor {
    random_bytes(n, c, h, w, seed).to_kind(Kind::Float) / 255.0
}

fn random_bytes(n: i64, c: i64, h: i64, w: i64, seed: u64) -> Tensor {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let bytes: Vec<u8> = (0..n * c * h * w)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    Tensor::from_slice(&bytes).view([n, c, h, w])
}

fn pipeline(ops: Vec<AugOp>) -> Pipeline {
    Pipeline {
        name: "test".to_string(),
        ops,
        span: Span::default(),
    }
}

#[test]
fn greyscale_uses_itu_601_luma_weights() {
    let x = random_batch(2, 3, 5, 4, 1);
    let grey = ops::grayscale(&x);
    assert_eq!(grey.size(), [2, 3, 5, 4]);
    let (input, output) = (values(&x), values(&grey));
    let plane = 20;
    for n in 0..2 {
        for p in 0..plane {
            let at = |c: usize| input[n * 3 * plane + c * plane + p] as f64;
            let expected = 0.299 * at(0) + 0.587 * at(1) + 0.114 * at(2);
            for c in 0..3 {
                assert!((output[n * 3 * plane + c * plane + p] as f64 - expected).abs() < 1e-6);
            }
        }
    }
}

#[test]
fn solarize_inverts_exactly_the_pixels_at_or_above_the_threshold() {
    let x = Tensor::from_slice(&[0.0f32, 0.29, 0.3, 0.31, 0.9, 1.0]).view([1, 1, 2, 3]);
    let out = values(&ops::solarize(&x, 0.3));
    let expected = [0.0f32, 0.29, 0.7, 0.69, 0.1, 0.0];
    for (o, e) in out.iter().zip(expected) {
        assert!((o - e).abs() < 1e-6, "{out:?}");
    }
}

#[test]
fn hsv_round_trips_and_knows_the_primaries() {
    let x = random_batch(3, 3, 6, 6, 2);
    // Greys, black, white and primaries exercise the grey and tie branches.
    let special = Tensor::from_slice(&[
        0.5f32, 0.5, 0.5, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0,
    ])
    .view([6, 3])
    .transpose(0, 1);
    x.narrow(0, 0, 1)
        .narrow(2, 0, 1)
        .view([3, 6])
        .copy_(&special);
    let hsv = ops::rgb_to_hsv(&x);
    assert!(max_abs_difference(&ops::hsv_to_rgb(&hsv), &x) < 1e-6);
    let first_row = values(&hsv.get(0).narrow(1, 0, 1));
    // Hues (first plane) of grey, black, white, red, green, blue.
    let hues = &first_row[0..6];
    let expected = [0.0, 0.0, 0.0, 0.0, 1.0 / 3.0, 2.0 / 3.0];
    for (h, e) in hues.iter().zip(expected) {
        assert!((*h as f64 - e).abs() < 1e-6, "{hues:?}");
    }
    let saturations = &first_row[6..12];
    assert_eq!(saturations, [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
}

#[test]
fn hue_shift_of_zero_and_of_a_full_turn_is_the_identity() {
    let x = random_batch(2, 3, 7, 5, 3);
    assert!(max_abs_difference(&ops::adjust_hue(&x, &[0.0, 0.0]), &x) < 1e-6);
    assert!(max_abs_difference(&ops::adjust_hue(&x, &[1.0, -1.0]), &x) < 2e-6);
    // Half a turn twice is a full turn.
    let twice = ops::adjust_hue(&ops::adjust_hue(&x, &[0.5, 0.5]), &[0.5, 0.5]);
    assert!(max_abs_difference(&twice, &x) < 2e-6);
    // And half a turn alone is not the identity.
    assert!(max_abs_difference(&ops::adjust_hue(&x, &[0.5, 0.5]), &x) > 0.1);
}

#[test]
fn brightness_and_contrast_by_hand() {
    let x = random_batch(2, 3, 4, 4, 4);
    let half = ops::adjust_brightness(&x, &[0.5, 1.0]);
    assert!(max_abs_difference(&half.get(0), &(x.get(0) * 0.5)) < 1e-7);
    assert!(max_abs_difference(&half.get(1), &x.get(1)) < 1e-7);
    // Contrast 0 leaves only the mean luma, the same value in every pixel and channel.
    let flat = values(&ops::adjust_contrast(&x, &[0.0, 0.0]).get(0));
    let input = values(&x.get(0));
    let mean = (0..16)
        .map(|p| {
            0.299 * input[p] as f64 + 0.587 * input[16 + p] as f64 + 0.114 * input[32 + p] as f64
        })
        .sum::<f64>()
        / 16.0;
    assert!(
        flat.iter().all(|&v| (v as f64 - mean).abs() < 1e-6),
        "{flat:?} vs {mean}"
    );
    // Saturation 0 is greyscale.
    assert!(
        max_abs_difference(
            &ops::adjust_saturation(&x, &[0.0, 0.0]),
            &ops::grayscale(&x)
        ) < 1e-6
    );
}

#[test]
fn flip_twice_is_the_identity_and_once_mirrors() {
    let x = random_batch(2, 3, 4, 5, 5);
    assert!(ops::horizontal_flip(&ops::horizontal_flip(&x)).equal(&x));
    let once = ops::horizontal_flip(&x);
    assert_eq!(values(&once.narrow(3, 0, 1)), values(&x.narrow(3, 4, 1)));
}

#[test]
fn crop_with_scale_one_and_ratio_one_is_the_identity() {
    let bytes = random_bytes(3, 3, 16, 16, 6);
    for interpolation in [Interpolation::Bilinear, Interpolation::Bicubic] {
        let augmenter = Augmenter::new(
            &pipeline(vec![AugOp::RandomResizedCrop {
                size: 16,
                scale: (1.0, 1.0),
                ratio: (1.0, 1.0),
                interpolation,
            }]),
            3,
        )
        .unwrap();
        let out = augmenter.apply(&bytes, key(9), &indices(&bytes));
        assert!(
            max_abs_difference(&out, &(bytes.to_kind(Kind::Float) / 255.0)) < 1e-6,
            "{interpolation:?}"
        );
    }
}

#[test]
fn crop_resamples_the_chosen_box() {
    // Nearest-size crop: a 2×2 box enlarged to 4×4 bilinearly from a ramp keeps the ramp's
    // direction and stays within the box's values.
    let x = Tensor::arange(64, (Kind::Float, Device::Cpu)).view([1, 1, 8, 8]) / 63.0;
    let crop = CropBox {
        top: 2,
        left: 3,
        height: 2,
        width: 2,
    };
    let out = values(&ops::resized_crop(&x, &[crop], 4, Interpolation::Bilinear));
    let (low, high) = ((2 * 8 + 3) as f32 / 63.0, (3 * 8 + 4) as f32 / 63.0);
    assert!(
        out.iter().all(|&v| v >= low - 1e-6 && v <= high + 1e-6),
        "{out:?}"
    );
    // Output pixel 0 samples at crop coordinate -0.25, clamped to the crop's first pixel;
    // pixel 1 at 0.25, a quarter of the way to the next column.
    assert!((out[0] - low).abs() < 1e-6);
    assert!((out[1] - (low + 0.25 / 63.0)).abs() < 1e-6, "{out:?}");
}

/// 2-D convolution with a Gaussian kernel and reflection padding, computed directly.
fn direct_blur(image: &[f32], height: usize, width: usize, size: usize, sigma: f64) -> Vec<f64> {
    let half = (size / 2) as isize;
    let weight =
        |dy: isize, dx: isize| (-((dy * dy + dx * dx) as f64) / (2.0 * sigma * sigma)).exp();
    let total: f64 = (-half..=half)
        .flat_map(|dy| (-half..=half).map(move |dx| weight(dy, dx)))
        .sum();
    let reflect = |i: isize, n: usize| -> usize {
        let n = n as isize;
        let i = if i < 0 { -i } else { i };
        (if i >= n { 2 * (n - 1) - i } else { i }) as usize
    };
    let mut out = vec![0.0; height * width];
    for y in 0..height {
        for x in 0..width {
            let mut sum = 0.0;
            for dy in -half..=half {
                for dx in -half..=half {
                    let (sy, sx) = (
                        reflect(y as isize + dy, height),
                        reflect(x as isize + dx, width),
                    );
                    sum += weight(dy, dx) * image[sy * width + sx] as f64;
                }
            }
            out[y * width + x] = sum / total;
        }
    }
    out
}

#[test]
fn blur_matches_a_direct_2d_gaussian_convolution() {
    let x = random_batch(2, 1, 7, 6, 7);
    let sigmas = [0.8, 1.7];
    let out = ops::gaussian_blur(&x, 5, &sigmas);
    for (n, sigma) in sigmas.iter().enumerate() {
        let expected = direct_blur(&values(&x.get(n as i64)), 7, 6, 5, *sigma);
        let got = values(&out.get(n as i64));
        for (g, e) in got.iter().zip(&expected) {
            assert!((*g as f64 - e).abs() < 1e-5, "sample {n}: {g} vs {e}");
        }
    }
}

#[test]
fn blur_leaves_a_constant_image_unchanged() {
    let x = Tensor::full([2, 3, 9, 9], 0.37, (Kind::Float, Device::Cpu));
    assert!(max_abs_difference(&ops::gaussian_blur(&x, 7, &[0.5, 2.0]), &x) < 1e-6);
}

fn byol_strong(size: usize) -> Augmenter {
    Augmenter::new(&byol_pipelines(size).0, 3).unwrap()
}

#[test]
fn seeded_runs_reproduce_exactly_and_seeds_differ() {
    let batch = random_bytes(6, 3, 32, 32, 8);
    for augmenter in [
        byol_strong(32),
        Augmenter::new(&byol_pipelines(32).1, 3).unwrap(),
    ] {
        let first = augmenter.apply(&batch, key(1234), &indices(&batch));
        assert!(first.equal(&augmenter.apply(&batch, key(1234), &indices(&batch))));
        assert!(!first.equal(&augmenter.apply(&batch, key(1235), &indices(&batch))));
        assert_eq!(first.size(), [6, 3, 32, 32]);
        assert_eq!(first.kind(), Kind::Float);
    }
}

#[test]
fn a_samples_parameters_do_not_depend_on_the_rest_of_the_batch() {
    let batch = random_bytes(5, 3, 32, 32, 9);
    let augmenter = byol_strong(32);
    let whole = augmenter.apply(&batch, key(77), &indices(&batch));
    let part = augmenter.apply(
        &batch.narrow(0, 0, 2),
        key(77),
        &indices(&batch.narrow(0, 0, 2)),
    );
    assert!(max_abs_difference(&whole.narrow(0, 0, 2), &part) < 1e-6);
}

#[test]
fn a_samples_augmentation_follows_its_dataset_index_not_its_position() {
    // The same five images in reverse order, each with its own dataset index: every image is
    // augmented identically, as it must be when another process or another batch holds it.
    let batch = random_bytes(5, 3, 32, 32, 14);
    let augmenter = byol_strong(32);
    let samples: Vec<u64> = vec![40, 41, 42, 43, 44];
    let forward = augmenter.apply(&batch, key(3), &samples);
    let reversed_order = Tensor::from_slice(&[4i64, 3, 2, 1, 0]);
    let reversed: Vec<u64> = samples.iter().rev().copied().collect();
    let backward = augmenter.apply(&batch.index_select(0, &reversed_order), key(3), &reversed);
    assert!(max_abs_difference(&forward, &backward.index_select(0, &reversed_order)) < 1e-6);
    // Another index for the same image gives another augmentation.
    let shifted: Vec<u64> = samples.iter().map(|i| i + 100).collect();
    assert!(max_abs_difference(&forward, &augmenter.apply(&batch, key(3), &shifted)) > 1e-3);
}

#[test]
fn per_sample_parameters_differ_across_a_batch() {
    // Eight copies of one image: every output pair differs because each sample draws its own
    // crop, flip, jitter, greyscale and blur.
    let one = random_bytes(1, 3, 32, 32, 10);
    let batch = one.expand([8, 3, 32, 32], false).contiguous();
    let out = byol_strong(32).apply(&batch, key(5), &indices(&batch));
    for i in 0..8 {
        for j in i + 1..8 {
            assert!(
                max_abs_difference(&out.get(i), &out.get(j)) > 1e-3,
                "samples {i} and {j} are equal"
            );
        }
    }
}

#[test]
fn values_stay_in_the_unit_interval_before_normalisation() {
    let batch = random_bytes(16, 3, 32, 32, 11);
    let (strong, light) = byol_pipelines(24);
    for pipeline in [strong, light] {
        let out = Augmenter::new(&pipeline, 3).unwrap().apply_unnormalised(
            &batch,
            key(3),
            &indices(&batch),
        );
        assert_eq!(out.size(), [16, 3, 24, 24]);
        let (low, high) = (out.min().double_value(&[]), out.max().double_value(&[]));
        assert!(low >= 0.0 && high <= 1.0, "{low} {high}");
    }
}

#[test]
fn probabilities_zero_and_one_are_respected() {
    let batch = random_bytes(4, 3, 8, 8, 12);
    let float = batch.to_kind(Kind::Float) / 255.0;
    let never = Augmenter::new(
        &pipeline(vec![
            AugOp::HorizontalFlip { p: 0.0 },
            AugOp::Solarize {
                p: 0.0,
                threshold: 0.5,
            },
            AugOp::Grayscale { p: 0.0 },
        ]),
        3,
    )
    .unwrap();
    assert!(never.apply(&batch, key(1), &indices(&batch)).equal(&float));
    let always = Augmenter::new(&pipeline(vec![AugOp::HorizontalFlip { p: 1.0 }]), 3).unwrap();
    assert!(always
        .apply(&batch, key(1), &indices(&batch))
        .equal(&ops::horizontal_flip(&float)));
}

#[test]
fn normalisation_and_greyscale_replication() {
    let grey = random_bytes(2, 1, 8, 8, 13);
    let augmenter = Augmenter::new(
        &pipeline(vec![AugOp::Normalize {
            mean: vec![0.5],
            std: vec![0.25],
        }]),
        3,
    )
    .unwrap();
    let out = augmenter.apply(&grey, key(0), &indices(&grey));
    assert_eq!(out.size(), [2, 3, 8, 8]);
    let expected = (grey.to_kind(Kind::Float) / 255.0 - 0.5) / 0.25;
    for c in 0..3 {
        assert!(max_abs_difference(&out.narrow(1, c, 1), &expected) < 1e-6);
    }
    assert!(augmenter.eval_transform(&grey).equal(&out));
    assert!(augmenter.check_channels(1).is_ok());
    let colour_only = Augmenter::new(&pipeline(vec![]), 1).unwrap();
    assert!(matches!(
        colour_only.check_channels(3),
        Err(DataError::Pipeline { .. })
    ));
}

#[test]
fn eval_transform_resizes_the_centre_to_the_crop_size() {
    let (strong, _) = byol_pipelines(16);
    let augmenter = Augmenter::new(&strong, 3).unwrap();
    let batch = random_bytes(2, 3, 20, 24, 14);
    let out = augmenter.eval_transform(&batch);
    assert_eq!(out.size(), [2, 3, 16, 16]);
    // Deterministic: no random draw.
    assert!(out.equal(&augmenter.eval_transform(&batch)));
    // Same size in and out: only the normalisation.
    let same = random_bytes(2, 3, 16, 16, 15);
    let mean = Tensor::from_slice(&[0.4914f32, 0.4822, 0.4465]).view([1, 3, 1, 1]);
    let std = Tensor::from_slice(&[0.2470f32, 0.2435, 0.2616]).view([1, 3, 1, 1]);
    assert!(
        max_abs_difference(
            &augmenter.eval_transform(&same),
            &((same.to_kind(Kind::Float) / 255.0 - mean) / std)
        ) < 1e-5
    );
}

#[test]
fn bad_pipelines_are_refused() {
    let bad = [
        AugOp::HorizontalFlip { p: 1.5 },
        AugOp::RandomResizedCrop {
            size: 0,
            scale: (0.1, 1.0),
            ratio: (0.75, 1.33),
            interpolation: Interpolation::Bilinear,
        },
        AugOp::RandomResizedCrop {
            size: 8,
            scale: (0.9, 0.1),
            ratio: (0.75, 1.33),
            interpolation: Interpolation::Bilinear,
        },
        AugOp::ColorJitter {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.2,
            hue: 0.7,
            p: 0.8,
        },
        AugOp::GaussianBlur {
            p: 0.5,
            sigma: (0.0, 2.0),
        },
        AugOp::Normalize {
            mean: vec![0.5, 0.5],
            std: vec![0.2, 0.2],
        },
    ];
    for op in bad {
        let error = Augmenter::new(&pipeline(vec![op.clone()]), 3).unwrap_err();
        assert!(matches!(error, DataError::Pipeline { .. }), "{op:?}");
        assert!(
            error.to_string().starts_with("pipeline `test`: "),
            "{error}"
        );
    }
    assert!(Augmenter::new(&pipeline(vec![]), 2).is_err());
}

#[test]
fn to_tensor_keeps_the_layout() {
    let set = ImageSet {
        images: (0..2 * 3 * 2 * 2).map(|v| v as u8).collect(),
        labels: None,
        len: 2,
        channels: 3,
        height: 2,
        width: 2,
        classes: vec![],
        skipped: 0,
    };
    let t = to_tensor(&set, Device::Cpu);
    assert_eq!(t.size(), [2, 3, 2, 2]);
    assert_eq!(t.kind(), Kind::Uint8);
    assert_eq!(t.int64_value(&[1, 2, 1, 0]), 12 + 8 + 2);
}
