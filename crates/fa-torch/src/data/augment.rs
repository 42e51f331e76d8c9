//! The augmenter: a validated pipeline applied to a uint8 batch on its device, each sample
//! drawing its own parameters from a counter-based generator.

use tch::{Device, Kind, Tensor};

use super::ops;
use super::{gaussian_kernel_size, CropBox, DataError, ImageSet};
use fa_base::random::{Key, Stream};
use fa_lang::ir::{AugOp, Pipeline};

/// The whole set as a uint8 tensor `[N, C, H, W]` on `device`.
pub fn to_tensor(set: &ImageSet, device: Device) -> Tensor {
    Tensor::from_slice(&set.images)
        .view([
            set.len as i64,
            set.channels as i64,
            set.height as i64,
            set.width as i64,
        ])
        .to_device(device)
}

/// A pipeline checked once and ready to apply to batches.
#[derive(Clone, Debug)]
pub struct Augmenter {
    pipeline: Pipeline,
    out_channels: usize,
}

/// Applies `op` to the samples whose `mask` entry is true and leaves the others unchanged.
/// `op` receives the selected sub-batch and the selected sample positions. `x` is owned by
/// the augmenter (never the caller's batch), so the result is written back in place: an
/// out-of-place copy would cost a whole batch per call.
fn on_subset(mut x: Tensor, mask: &[bool], op: impl FnOnce(&Tensor, &[usize]) -> Tensor) -> Tensor {
    let chosen: Vec<usize> = mask
        .iter()
        .enumerate()
        .filter(|(_, &on)| on)
        .map(|(i, _)| i)
        .collect();
    if chosen.is_empty() {
        return x;
    }
    if chosen.len() == mask.len() {
        return op(&x, &chosen);
    }
    let positions: Vec<i64> = chosen.iter().map(|&i| i as i64).collect();
    let index = ops::upload(&positions, x.device());
    let changed = op(&x.index_select(0, &index), &chosen);
    let _ = x.index_copy_(0, &index, &changed);
    x
}

fn check(pipeline: &str, ok: bool, message: impl FnOnce() -> String) -> Result<(), DataError> {
    if ok {
        Ok(())
    } else {
        Err(DataError::Pipeline {
            pipeline: pipeline.to_string(),
            message: message(),
        })
    }
}

fn probability(pipeline: &str, op: &str, p: f64) -> Result<(), DataError> {
    check(pipeline, (0.0..=1.0).contains(&p), || {
        format!("{op}: probability {p} is outside [0, 1]")
    })
}

fn interval(
    pipeline: &str,
    op: &str,
    what: &str,
    (low, high): (f64, f64),
) -> Result<(), DataError> {
    check(
        pipeline,
        low > 0.0 && low <= high && high.is_finite(),
        || format!("{op}: {what} ({low}, {high}) must satisfy 0 < low ≤ high"),
    )
}

impl Augmenter {
    /// Checks `pipeline`'s parameters for a model that sees `out_channels` channels (1 or 3).
    pub fn new(pipeline: &Pipeline, out_channels: usize) -> Result<Augmenter, DataError> {
        let name = pipeline.name.as_str();
        check(name, out_channels == 1 || out_channels == 3, || {
            format!("{out_channels} output channels: only 1 or 3 are supported")
        })?;
        for op in &pipeline.ops {
            match op {
                AugOp::RandomResizedCrop {
                    size, scale, ratio, ..
                } => {
                    check(name, *size > 0, || {
                        "random resized crop: size must be positive".to_string()
                    })?;
                    interval(name, "random resized crop", "scale", *scale)?;
                    interval(name, "random resized crop", "ratio", *ratio)?;
                }
                AugOp::HorizontalFlip { p } => probability(name, "horizontal flip", *p)?,
                AugOp::ColorJitter {
                    brightness,
                    contrast,
                    saturation,
                    hue,
                    p,
                } => {
                    probability(name, "colour jitter", *p)?;
                    for (what, value) in [
                        ("brightness", brightness),
                        ("contrast", contrast),
                        ("saturation", saturation),
                    ] {
                        check(name, *value >= 0.0 && value.is_finite(), || {
                            format!("colour jitter: {what} {value} must be non-negative")
                        })?;
                    }
                    check(name, (0.0..=0.5).contains(hue), || {
                        format!("colour jitter: hue {hue} is outside [0, 0.5]")
                    })?;
                }
                AugOp::Grayscale { p } => probability(name, "greyscale", *p)?,
                AugOp::GaussianBlur { p, sigma } => {
                    probability(name, "gaussian blur", *p)?;
                    interval(name, "gaussian blur", "sigma", *sigma)?;
                }
                AugOp::Solarize { p, threshold } => {
                    probability(name, "solarize", *p)?;
                    check(name, threshold.is_finite(), || {
                        format!("solarize: threshold {threshold} is not finite")
                    })?;
                }
                AugOp::Normalize { mean, std } => {
                    check(
                        name,
                        mean.len() == std.len() && (mean.len() == 1 || mean.len() == out_channels),
                        || {
                            format!(
                                "normalize: {} means and {} stds for {out_channels} channels",
                                mean.len(),
                                std.len()
                            )
                        },
                    )?;
                    check(name, std.iter().all(|&s| s > 0.0 && s.is_finite()), || {
                        "normalize: every std must be positive".to_string()
                    })?;
                }
            }
        }
        Ok(Augmenter {
            pipeline: pipeline.clone(),
            out_channels,
        })
    }

    /// The pipeline this augmenter applies.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Whether batches with `channels` channels can be fed: equal to the output channels,
    /// or 1 when the output has 3 (replicated). Colour data cannot feed a greyscale model.
    pub fn check_channels(&self, channels: usize) -> Result<(), DataError> {
        check(
            &self.pipeline.name,
            channels == self.out_channels || (channels == 1 && self.out_channels == 3),
            || {
                format!(
                    "{channels}-channel data cannot feed a {}-channel model",
                    self.out_channels
                )
            },
        )
    }

    /// The side of the images this pipeline produces from `side`×`side` input.
    pub fn output_side(&self, side: usize) -> usize {
        self.crop_size().unwrap_or(side)
    }

    fn crop_size(&self) -> Option<usize> {
        self.pipeline.ops.iter().rev().find_map(|op| match op {
            AugOp::RandomResizedCrop { size, .. } => Some(*size),
            _ => None,
        })
    }

    /// uint8 (or float in `[0, 1]`) to float in `[0, 1]`, with greyscale replicated to three
    /// channels when the model expects three.
    fn prepare(&self, batch: &Tensor) -> Tensor {
        // Both branches make a new tensor, so later in-place writes never reach the caller's.
        let x = if batch.kind() == Kind::Uint8 {
            batch.to_kind(Kind::Float) / 255.0
        } else {
            batch.to_kind(Kind::Float) * 1.0
        };
        let channels = x.size()[1] as usize;
        if let Err(error) = self.check_channels(channels) {
            panic!("{error}");
        }
        if channels == 1 && self.out_channels == 3 {
            x.expand([-1, 3, -1, -1], false).contiguous()
        } else {
            x
        }
    }

    /// Augments a uint8 batch `[B, C, H, W]` on its device. Sample `i`'s parameters come from
    /// the stream of `key` for `samples[i]` (its global dataset index), at the range of each
    /// operation's position in the pipeline (`docs/randomness.md`): they depend neither on
    /// the device, nor on the other samples in the batch, nor on the sample's position.
    ///
    /// # Shapes
    /// `[B, C, H, W]` uint8 → `[B, C', S, S]` float32, normalised; `C'` is the output channel
    /// count and `S` the crop size (or `H` without a crop).
    ///
    /// # Panics
    /// When the batch's channels fail [`Augmenter::check_channels`], or `samples` does not
    /// name one index per image.
    pub fn apply(&self, batch: &Tensor, key: Key, samples: &[u64]) -> Tensor {
        self.run(batch, key, samples, true)
    }

    /// [`Augmenter::apply`] without the normalisation steps: values in `[0, 1]`.
    pub fn apply_unnormalised(&self, batch: &Tensor, key: Key, samples: &[u64]) -> Tensor {
        self.run(batch, key, samples, false)
    }

    fn run(&self, batch: &Tensor, key: Key, samples: &[u64], normalise: bool) -> Tensor {
        let mut x = self.prepare(batch);
        assert_eq!(
            samples.len(),
            x.size()[0] as usize,
            "one sample index per image"
        );
        for (position, op) in self.pipeline.ops.iter().enumerate() {
            let mut streams: Vec<Stream> = samples
                .iter()
                .map(|&sample| key.stream_at(sample, position as u32))
                .collect();
            x = match op {
                AugOp::RandomResizedCrop {
                    size,
                    scale,
                    ratio,
                    interpolation,
                } => {
                    let shape = x.size();
                    let (height, width) = (shape[2] as usize, shape[3] as usize);
                    let boxes: Vec<CropBox> = streams
                        .iter_mut()
                        .map(|rng| CropBox::sample(rng, height, width, *scale, *ratio))
                        .collect();
                    ops::resized_crop(&x, &boxes, *size, *interpolation)
                }
                AugOp::HorizontalFlip { p } => {
                    let mask: Vec<bool> = streams.iter_mut().map(|rng| rng.bernoulli(*p)).collect();
                    on_subset(x, &mask, |sub, _| ops::horizontal_flip(sub))
                }
                AugOp::ColorJitter {
                    brightness,
                    contrast,
                    saturation,
                    hue,
                    p,
                } => color_jitter(
                    x,
                    &mut streams,
                    [*brightness, *contrast, *saturation, *hue],
                    *p,
                ),
                AugOp::Grayscale { p } => {
                    let mask: Vec<bool> = streams.iter_mut().map(|rng| rng.bernoulli(*p)).collect();
                    on_subset(x, &mask, |sub, _| ops::grayscale(sub))
                }
                AugOp::GaussianBlur { p, sigma } => {
                    let draws: Vec<(bool, f64)> = streams
                        .iter_mut()
                        .map(|rng| (rng.bernoulli(*p), rng.uniform(sigma.0, sigma.1)))
                        .collect();
                    let mask: Vec<bool> = draws.iter().map(|d| d.0).collect();
                    let shape = x.size();
                    let kernel = gaussian_kernel_size(shape[2].min(shape[3]) as usize);
                    on_subset(x, &mask, |sub, chosen| {
                        let sigmas: Vec<f64> = chosen.iter().map(|&i| draws[i].1).collect();
                        ops::gaussian_blur(sub, kernel, &sigmas)
                    })
                }
                AugOp::Solarize { p, threshold } => {
                    let mask: Vec<bool> = streams.iter_mut().map(|rng| rng.bernoulli(*p)).collect();
                    on_subset(x, &mask, |sub, _| ops::solarize(sub, *threshold))
                }
                AugOp::Normalize { mean, std } if normalise => ops::normalize(&x, mean, std),
                AugOp::Normalize { .. } => x,
            };
        }
        x
    }

    /// The evaluation transform: uint8 to float in `[0, 1]`, channel replication, the centre
    /// square resized to the pipeline's crop size (with its interpolation) when the size
    /// differs, then the pipeline's normalisation. Nothing random.
    pub fn eval_transform(&self, batch: &Tensor) -> Tensor {
        let mut x = self.prepare(batch);
        let shape = x.size();
        let (samples, height, width) = (shape[0] as usize, shape[2] as usize, shape[3] as usize);
        let crop = self.pipeline.ops.iter().rev().find_map(|op| match op {
            AugOp::RandomResizedCrop {
                size,
                interpolation,
                ..
            } => Some((*size, *interpolation)),
            _ => None,
        });
        if let Some((size, interpolation)) = crop {
            if height != size || width != size {
                let boxes = vec![CropBox::centre_square(height, width); samples];
                x = ops::resized_crop(&x, &boxes, size, interpolation);
            }
        }
        for op in &self.pipeline.ops {
            if let AugOp::Normalize { mean, std } = op {
                x = ops::normalize(&x, mean, std);
            }
        }
        x
    }
}

/// torchvision's `ColorJitter` per sample: with probability `p`, brightness, contrast,
/// saturation and hue adjustments in a random order of the sample's own, each with its own
/// factor (`[max(0, 1 − s), 1 + s]` for the first three, `[−h, h]` for hue). A zero strength
/// skips that adjustment. Samples are grouped by which adjustment they take at each of the
/// four steps, so each adjustment runs once per step on just the samples that take it.
fn color_jitter(mut x: Tensor, streams: &mut [Stream], strengths: [f64; 4], p: f64) -> Tensor {
    struct Draw {
        on: bool,
        order: Vec<usize>,
        factors: [f64; 4],
    }
    let draws: Vec<Draw> = streams
        .iter_mut()
        .map(|rng| {
            let on = rng.bernoulli(p);
            let order = rng.permutation(4);
            let factors = std::array::from_fn(|kind| {
                let s = strengths[kind];
                if kind == 3 {
                    rng.uniform(-s, s)
                } else {
                    rng.uniform((1.0 - s).max(0.0), 1.0 + s)
                }
            });
            Draw { on, order, factors }
        })
        .collect();
    for step in 0..4 {
        for (kind, &strength) in strengths.iter().enumerate() {
            if strength == 0.0 {
                continue;
            }
            let mask: Vec<bool> = draws
                .iter()
                .map(|d| d.on && d.order[step] == kind)
                .collect();
            x = on_subset(x, &mask, |sub, chosen| {
                let factors: Vec<f64> = chosen.iter().map(|&i| draws[i].factors[kind]).collect();
                match kind {
                    0 => ops::adjust_brightness(sub, &factors),
                    1 => ops::adjust_contrast(sub, &factors),
                    2 => ops::adjust_saturation(sub, &factors),
                    _ => ops::adjust_hue(sub, &factors),
                }
            });
        }
    }
    x
}
