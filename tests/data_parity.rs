//! Parity with torchvision's functional ops, from float64 reference outputs written by
//! `scripts/fixtures_data.py` (torch 2.11.0, torchvision 0.26.0).

mod support;

use fa_base::random::{Key, Purpose};
use fa_lang::ir::Interpolation;
use fa_torch::data::{ops, CropBox};
use safetensors::SafeTensors;
use support::tensors::assert_close_absolute;
use tch::{Kind, Tensor};

/// Float32 against float64 references: a few float32 roundings.
const TOLERANCE: f64 = 2e-6;
/// torchvision's greyscale uses 0.2989 for red where ITU-R 601 (and we) use 0.299: outputs
/// that depend on luma differ by at most 0.0001 · red, and by less after blending.
const LUMA_TOLERANCE: f64 = 1.5e-4;

struct Fixture {
    bytes: Vec<u8>,
}

impl Fixture {
    fn open() -> Fixture {
        let path = support::project_path("tests/fixtures/data/torchvision.safetensors");
        Fixture {
            bytes: std::fs::read(path).expect("fixture written by scripts/fixtures_data.py"),
        }
    }

    fn get(&self, name: &str) -> Tensor {
        let tensors = SafeTensors::deserialize(&self.bytes).unwrap();
        let view = tensors
            .tensor(name)
            .unwrap_or_else(|_| panic!("fixture has no `{name}`"));
        let values: Vec<f64> = view
            .data()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        Tensor::from_slice(&values).view(shape.as_slice())
    }

    fn input(&self) -> Tensor {
        self.get("input").to_kind(Kind::Float)
    }
}

#[test]
fn colour_ops_match_torchvision() {
    let fixture = Fixture::open();
    let x = fixture.input();
    // Each op's output under the fixture name it is checked against.
    let cases = [
        (
            "brightness",
            ops::adjust_brightness(&x, &[1.3, 0.7]),
            TOLERANCE,
        ),
        (
            "contrast",
            ops::adjust_contrast(&x, &[0.6, 1.4]),
            LUMA_TOLERANCE,
        ),
        (
            "saturation",
            ops::adjust_saturation(&x, &[1.7, 0.3]),
            LUMA_TOLERANCE,
        ),
        ("hue", ops::adjust_hue(&x, &[0.23, -0.4]), TOLERANCE),
        ("grayscale", ops::grayscale(&x), LUMA_TOLERANCE),
        ("solarize", ops::solarize(&x, 0.5), TOLERANCE),
    ];
    for (name, output, tolerance) in cases {
        assert_close_absolute(&output, &fixture.get(name), tolerance, name);
    }
}

#[test]
fn blur_matches_torchvision_with_a_fixed_sigma() {
    let fixture = Fixture::open();
    let x = fixture.input();
    assert_close_absolute(
        &ops::gaussian_blur(&x, 5, &[1.1, 1.1]),
        &fixture.get("blur_5"),
        TOLERANCE,
        "blur 5",
    );
    assert_close_absolute(
        &ops::gaussian_blur(&x, 3, &[0.6, 0.6]),
        &fixture.get("blur_3"),
        TOLERANCE,
        "blur 3",
    );
}

#[test]
fn resized_crop_matches_torchvision_antialiased_resize() {
    let fixture = Fixture::open();
    let x = fixture.input();
    for name in ["up", "up_small", "down", "mixed"] {
        let parameters: Vec<f64> =
            Vec::<f64>::try_from(&fixture.get(&format!("crop_{name}_box"))).unwrap();
        let p: Vec<usize> = parameters.iter().map(|&v| v as usize).collect();
        let (crop, size) = (
            CropBox {
                top: p[0],
                left: p[1],
                height: p[2],
                width: p[3],
            },
            p[4],
        );
        for (interpolation, label) in [
            (Interpolation::Bilinear, "bilinear"),
            (Interpolation::Bicubic, "bicubic"),
        ] {
            let expected = fixture.get(&format!("crop_{name}_{label}"));
            let got = ops::resized_crop(&x, &[crop, crop], size, interpolation);
            // torchvision does not clamp float output; bicubic overshoots [0, 1] near edges.
            assert_close_absolute(
                &got,
                &expected.clamp(0.0, 1.0),
                TOLERANCE,
                &format!("crop {name} {label}"),
            );
        }
    }
}

#[test]
fn crop_fallback_boxes_match_torchvision() {
    let fixture = Fixture::open();
    let rows = Vec::<f64>::try_from(&fixture.get("crop_fallbacks").view([-1])).unwrap();
    for row in rows.chunks_exact(8) {
        let (height, width) = (row[0] as usize, row[1] as usize);
        let mut rng = Key::new(0, Purpose::View(0), 0).stream(0);
        // A scale range above the whole image never fits: ten misses, then the fallback.
        let got = CropBox::sample(&mut rng, height, width, (2.0, 3.0), (row[2], row[3]));
        let expected = CropBox {
            top: row[4] as usize,
            left: row[5] as usize,
            height: row[6] as usize,
            width: row[7] as usize,
        };
        assert_eq!(
            got, expected,
            "{height}x{width} ratio ({}, {})",
            row[2], row[3]
        );
    }
}

#[test]
fn crop_box_statistics_match_torchvision() {
    // 40,000 draws each side: the standard error of a mean area fraction is about 0.0012, of
    // a mean side about 0.4% of the side; the bounds are about four combined standard errors.
    let fixture = Fixture::open();
    for side in [32, 224, 24] {
        let stats = Vec::<f64>::try_from(&fixture.get(&format!("crop_stats_{side}"))).unwrap();
        let ratio = (stats[1], stats[2]);
        let draws = 40_000;
        let boxes: Vec<CropBox> = (0..draws)
            .map(|i| {
                CropBox::sample(
                    &mut Key::new(99, Purpose::View(0), 0).stream(i),
                    side,
                    side,
                    (0.08, 1.0),
                    ratio,
                )
            })
            .collect();
        let mean = |f: &dyn Fn(&CropBox) -> f64| boxes.iter().map(f).sum::<f64>() / draws as f64;
        let area = |b: &CropBox| (b.height * b.width) as f64 / (side * side) as f64;
        let (mean_h, mean_w, mean_area) = (
            mean(&|b| b.height as f64),
            mean(&|b| b.width as f64),
            mean(&area),
        );
        let std_area = (mean(&|b| (area(b) - mean_area).powi(2))).sqrt();
        println!("side {side}: heights {mean_h:.3}/{:.3} widths {mean_w:.3}/{:.3} area {mean_area:.4}/{:.4} sd {std_area:.4}/{:.4}", stats[3], stats[4], stats[5], stats[6]);
        assert!(
            (mean_h - stats[3]).abs() < 0.012 * side as f64,
            "side {side}: mean height {mean_h} vs {}",
            stats[3]
        );
        assert!(
            (mean_w - stats[4]).abs() < 0.012 * side as f64,
            "side {side}: mean width {mean_w} vs {}",
            stats[4]
        );
        assert!(
            (mean_area - stats[5]).abs() < 0.007,
            "side {side}: mean area {mean_area} vs {}",
            stats[5]
        );
        assert!(
            (std_area - stats[6]).abs() < 0.007,
            "side {side}: area sd {std_area} vs {}",
            stats[6]
        );
    }
}
