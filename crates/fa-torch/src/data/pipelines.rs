//! Parameter sampling rules shared by the augmenter, and BYOL's two pipelines as IR values.

use fa_base::random::Stream;
use fa_lang::ir::{AugOp, Interpolation, Pipeline, Span};

/// A crop rectangle in pixels of the source image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

impl CropBox {
    /// torchvision's `RandomResizedCrop.get_params` rule: up to ten tries of an area fraction
    /// uniform in `scale` and an aspect ratio log-uniform in `ratio`, sides rounded half to
    /// even (Python's `round`); the first that fits is placed uniformly. After ten misses,
    /// the largest centred crop whose ratio lies in `ratio`.
    pub fn sample(
        rng: &mut Stream,
        height: usize,
        width: usize,
        scale: (f64, f64),
        ratio: (f64, f64),
    ) -> CropBox {
        let area = (height * width) as f64;
        let (log_low, log_high) = (ratio.0.ln(), ratio.1.ln());
        for _ in 0..10 {
            let target_area = area * rng.uniform(scale.0, scale.1);
            let aspect = rng.uniform(log_low, log_high).exp();
            let w = (target_area * aspect).sqrt().round_ties_even();
            let h = (target_area / aspect).sqrt().round_ties_even();
            if w > 0.0 && h > 0.0 && w <= width as f64 && h <= height as f64 {
                let (w, h) = (w as usize, h as usize);
                let top = rng.below((height - h + 1) as u64) as usize;
                let left = rng.below((width - w + 1) as u64) as usize;
                return CropBox {
                    top,
                    left,
                    height: h,
                    width: w,
                };
            }
        }
        CropBox::centre_fallback(height, width, ratio)
    }

    /// The fallback of [`CropBox::sample`]: the whole image, narrowed to the nearest allowed
    /// aspect ratio.
    pub fn centre_fallback(height: usize, width: usize, ratio: (f64, f64)) -> CropBox {
        let in_ratio = width as f64 / height as f64;
        let (h, w) = if in_ratio < ratio.0.min(ratio.1) {
            (
                (width as f64 / ratio.0.min(ratio.1)).round_ties_even() as usize,
                width,
            )
        } else if in_ratio > ratio.0.max(ratio.1) {
            (
                height,
                (height as f64 * ratio.0.max(ratio.1)).round_ties_even() as usize,
            )
        } else {
            (height, width)
        };
        CropBox {
            top: (height - h) / 2,
            left: (width - w) / 2,
            height: h,
            width: w,
        }
    }

    /// The largest centred square (what evaluation resizes).
    pub fn centre_square(height: usize, width: usize) -> CropBox {
        let side = height.min(width);
        CropBox {
            top: (height - side) / 2,
            left: (width - side) / 2,
            height: side,
            width: side,
        }
    }
}

/// The Gaussian blur kernel side for an image side: 10% of it, rounded, made odd, at least 3
/// (23 at 224, 3 at 32, as BYOL uses).
pub fn gaussian_kernel_size(side: usize) -> usize {
    let size = ((side as f64) * 0.1).round() as usize;
    let odd = if size % 2 == 0 { size + 1 } else { size };
    odd.max(3)
}

/// BYOL's two augmentation pipelines at crop size `size` (its Table 6): the first with blur
/// always and no solarisation, the second with blur 10% and solarisation 20% of the time;
/// both end with CIFAR-10's normalisation.
pub fn byol_pipelines(size: usize) -> (Pipeline, Pipeline) {
    let build = |name: &str, blur: f64, solarize: f64| Pipeline {
        name: name.to_string(),
        ops: vec![
            AugOp::RandomResizedCrop {
                size,
                scale: (0.08, 1.0),
                ratio: (3.0 / 4.0, 4.0 / 3.0),
                interpolation: Interpolation::Bicubic,
            },
            AugOp::HorizontalFlip { p: 0.5 },
            AugOp::ColorJitter {
                brightness: 0.4,
                contrast: 0.4,
                saturation: 0.2,
                hue: 0.1,
                p: 0.8,
            },
            AugOp::Grayscale { p: 0.2 },
            AugOp::GaussianBlur {
                p: blur,
                sigma: (0.1, 2.0),
            },
            AugOp::Solarize {
                p: solarize,
                threshold: 0.5,
            },
            AugOp::Normalize {
                mean: vec![0.4914, 0.4822, 0.4465],
                std: vec![0.2470, 0.2435, 0.2616],
            },
        ],
        span: Span::default(),
    };
    (
        build("byol_strong", 1.0, 0.0),
        build("byol_light", 0.1, 0.2),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use fa_base::random::{Key, Purpose};

    #[test]
    fn kernel_sizes_follow_the_ten_percent_rule() {
        assert_eq!(gaussian_kernel_size(224), 23);
        assert_eq!(gaussian_kernel_size(32), 3);
        assert_eq!(gaussian_kernel_size(96), 11);
        assert_eq!(gaussian_kernel_size(8), 3);
    }

    #[test]
    fn crops_fit_and_follow_their_scale_and_ratio() {
        for sample in 0..2000 {
            let mut rng = Key::new(11, Purpose::View(0), 0).stream(sample);
            let crop = CropBox::sample(&mut rng, 40, 60, (0.08, 1.0), (0.75, 4.0 / 3.0));
            assert!(
                crop.top + crop.height <= 40 && crop.left + crop.width <= 60,
                "{crop:?}"
            );
            assert!(crop.height > 0 && crop.width > 0);
        }
        // A scale range that cannot fit forces the fallback: the whole 40×60 image narrowed
        // to ratio 4/3, i.e. 40×53, centred.
        let mut rng = Key::new(1, Purpose::View(0), 0).stream(0);
        let crop = CropBox::sample(&mut rng, 40, 60, (2.0, 3.0), (0.75, 4.0 / 3.0));
        assert_eq!(
            crop,
            CropBox {
                top: 0,
                left: 3,
                height: 40,
                width: 53
            }
        );
    }

    #[test]
    fn scale_one_ratio_one_is_the_whole_square() {
        let mut rng = Key::new(3, Purpose::View(0), 0).stream(0);
        assert_eq!(
            CropBox::sample(&mut rng, 32, 32, (1.0, 1.0), (1.0, 1.0)),
            CropBox {
                top: 0,
                left: 0,
                height: 32,
                width: 32
            }
        );
    }
}
