//! Batched image operations on float tensors `[N, C, H, W]` with values in `[0, 1]`, each sample
//! with its own parameter.
//!
//! These are the building blocks of the [`Augmenter`](super::Augmenter); they are public so
//! that tests can check each one against an independent definition. Per-sample parameters
//! are slices with one value per sample. Every operation keeps values in `[0, 1]`.

use tch::{Device, Kind, Tensor};

use super::CropBox;
use fa_lang::ir::Interpolation;

/// ITU-R BT.601 luma weights of red, green and blue.
pub const LUMA: [f64; 3] = [0.299, 0.587, 0.114];

/// Host values as a 1-D tensor on `device`. On a GPU the copy is queued without waiting for
/// the work already queued there (the host buffer is staged by the driver before the call
/// returns), so uploading per-sample parameters never stalls the pipeline.
pub(crate) fn upload<T: tch::kind::Element>(values: &[T], device: Device) -> Tensor {
    let host = Tensor::from_slice(values);
    match device {
        Device::Cpu => host,
        _ => host.to_device_(device, host.kind(), true, false),
    }
}

/// Host `f64` values as a 1-D float32 tensor on `device`.
fn upload_f32(values: impl IntoIterator<Item = f64>, device: Device) -> Tensor {
    upload(
        &values.into_iter().map(|v| v as f32).collect::<Vec<f32>>(),
        device,
    )
}

/// A `[N, 1, 1, 1]` float tensor of per-sample values on `like`'s device.
fn per_sample(values: &[f64], like: &Tensor) -> Tensor {
    upload_f32(values.iter().copied(), like.device()).view([-1, 1, 1, 1])
}

/// `ratio · a + (1 − ratio) · b`, clamped to `[0, 1]`: brightness, contrast and saturation
/// are blends with a black, a mean-grey and a greyscale image.
fn blend(a: &Tensor, b: &Tensor, ratio: &Tensor) -> Tensor {
    (a * ratio + b * (-ratio + 1.0)).clamp(0.0, 1.0)
}

/// Luma `[N, 1, H, W]` of RGB images (a greyscale image is returned as is).
///
/// # Shapes
/// `[N, 3, H, W]` or `[N, 1, H, W]` → `[N, 1, H, W]`.
pub fn luma(x: &Tensor) -> Tensor {
    if x.size()[1] == 1 {
        return x.shallow_clone();
    }
    x.narrow(1, 0, 1) * LUMA[0] + x.narrow(1, 1, 1) * LUMA[1] + x.narrow(1, 2, 1) * LUMA[2]
}

/// Greyscale with the channel count kept: every channel holds the luma.
pub fn grayscale(x: &Tensor) -> Tensor {
    let channels = x.size()[1];
    luma(x).expand([-1, channels, -1, -1], false).contiguous()
}

/// Multiplies by a per-sample factor.
pub fn adjust_brightness(x: &Tensor, factors: &[f64]) -> Tensor {
    (x * per_sample(factors, x)).clamp(0.0, 1.0)
}

/// Blends each image with the mean of its luma.
pub fn adjust_contrast(x: &Tensor, factors: &[f64]) -> Tensor {
    let mean = luma(x).mean_dim([1i64, 2, 3].as_slice(), true, Kind::Float);
    blend(x, &mean, &per_sample(factors, x))
}

/// Blends each image with its greyscale version (identity on greyscale images).
pub fn adjust_saturation(x: &Tensor, factors: &[f64]) -> Tensor {
    if x.size()[1] == 1 {
        return x.shallow_clone();
    }
    blend(x, &luma(x), &per_sample(factors, x))
}

/// RGB to hue, saturation, value, each in `[0, 1]` (hue in turns).
///
/// Hue is taken from the largest channel, with red before green before blue on ties; grey
/// pixels get hue 0 and saturation 0.
pub fn rgb_to_hsv(x: &Tensor) -> Tensor {
    let (r, g, b) = (x.narrow(1, 0, 1), x.narrow(1, 1, 1), x.narrow(1, 2, 1));
    let value = x.amax([1i64].as_slice(), true);
    let chroma = &value - x.amin([1i64].as_slice(), true);
    let grey = chroma.eq(0.0);
    let safe_chroma = chroma.where_self(&grey.logical_not(), &chroma.ones_like());
    let safe_value = value.where_self(&value.gt(0.0), &value.ones_like());
    let saturation = &chroma / safe_value;
    // Sixths of a turn from the dominant channel's primary.
    let from_red = ((&g - &b) / &safe_chroma).remainder(6.0);
    let from_green = (&b - &r) / &safe_chroma + 2.0;
    let from_blue = (&r - &g) / &safe_chroma + 4.0;
    let red_max = value.eq_tensor(&r);
    let green_max = value.eq_tensor(&g);
    let sixths = from_red.where_self(&red_max, &from_green.where_self(&green_max, &from_blue));
    let hue = (sixths / 6.0)
        .where_self(&grey.logical_not(), &value.zeros_like())
        .remainder(1.0);
    Tensor::cat(&[hue, saturation, value], 1)
}

/// Hue, saturation, value back to RGB: channel `n` (5 red, 3 green, 1 blue) is
/// `v − v·s·clamp(min(k, 4 − k), 0, 1)` with `k = (n + 6h) mod 6`.
pub fn hsv_to_rgb(x: &Tensor) -> Tensor {
    let (hue, saturation, value) = (x.narrow(1, 0, 1), x.narrow(1, 1, 1), x.narrow(1, 2, 1));
    let channel = |n: f64| {
        let k = (&hue * 6.0 + n).remainder(6.0);
        let ramp = k.minimum(&(-&k + 4.0)).clamp(0.0, 1.0);
        (&value - &value * &saturation * ramp).clamp(0.0, 1.0)
    };
    Tensor::cat(&[channel(5.0), channel(3.0), channel(1.0)], 1)
}

/// Rotates hue by a per-sample fraction of a turn (identity on greyscale images).
pub fn adjust_hue(x: &Tensor, shifts: &[f64]) -> Tensor {
    if x.size()[1] == 1 {
        return x.shallow_clone();
    }
    let hsv = rgb_to_hsv(x);
    let hue = (hsv.narrow(1, 0, 1) + per_sample(shifts, x)).remainder(1.0);
    hsv_to_rgb(&Tensor::cat(&[hue, hsv.narrow(1, 1, 2)], 1))
}

/// Inverts the pixels at or above `threshold`: `v ≥ t ↦ 1 − v`.
pub fn solarize(x: &Tensor, threshold: f64) -> Tensor {
    (-x + 1.0).where_self(&x.ge(threshold), x)
}

/// Mirrors left to right.
pub fn horizontal_flip(x: &Tensor) -> Tensor {
    x.flip([3i64].as_slice())
}

/// A normalised 1-D Gaussian of `size` taps centred on the middle one.
pub fn gaussian_kernel(size: usize, sigma: f64) -> Vec<f64> {
    let half = (size as f64 - 1.0) / 2.0;
    let taps: Vec<f64> = (0..size)
        .map(|i| (-0.5 * ((i as f64 - half) / sigma).powi(2)).exp())
        .collect();
    let total: f64 = taps.iter().sum();
    taps.into_iter().map(|t| t / total).collect()
}

/// Gaussian blur with a `size`-tap kernel and a per-sample σ, reflection padding, applied
/// separably (rows, then columns) as one grouped convolution per direction.
///
/// # Shapes
/// `[N, C, H, W]` → `[N, C, H, W]`; `size` is odd and is reduced to fit images narrower
/// than the kernel.
pub fn gaussian_blur(x: &Tensor, size: usize, sigmas: &[f64]) -> Tensor {
    let shape = x.size();
    let (n, channels, height, width) = (shape[0], shape[1], shape[2], shape[3]);
    // Reflection needs the padding to be smaller than the side.
    let largest = 2 * (height.min(width) as usize - 1) + 1;
    let size = size.min(largest).max(1);
    let half = (size / 2) as i64;
    let taps: Vec<f32> = sigmas
        .iter()
        .flat_map(|&sigma| gaussian_kernel(size, sigma))
        .map(|t| t as f32)
        .collect();
    let kernels = upload(&taps, x.device())
        .view([n, 1, size as i64])
        .expand([n, channels, size as i64], false)
        .reshape([n * channels, 1, 1, size as i64]);
    let padded = x
        .reshape([1, n * channels, height, width])
        .reflection_pad2d([half, half, half, half]);
    let rows = padded.conv2d(
        &kernels,
        None::<Tensor>,
        [1i64, 1],
        [0i64, 0],
        [1i64, 1],
        n * channels,
    );
    let columns = rows.conv2d(
        &kernels.view([n * channels, 1, size as i64, 1]),
        None::<Tensor>,
        [1i64, 1],
        [0i64, 0],
        [1i64, 1],
        n * channels,
    );
    columns.view([n, channels, height, width]).clamp(0.0, 1.0)
}

/// The resampling filter and its radius in input pixels at unit scale.
fn filter(distance: &Tensor, interpolation: Interpolation) -> Tensor {
    let d = distance.abs();
    match interpolation {
        Interpolation::Bilinear => (-&d + 1.0).clamp_min(0.0),
        Interpolation::Bicubic => {
            // Keys' cubic convolution with a = −0.5 (PIL's and torchvision's antialiased
            // bicubic).
            let a = -0.5;
            let inner: Tensor = ((&d * (a + 2.0) - (a + 3.0)) * &d) * &d + 1.0;
            let outer: Tensor = ((&d * a - 5.0 * a) * &d + 8.0 * a) * &d - 4.0 * a;
            let zero = d.zeros_like();
            inner.where_self(&d.lt(1.0), &outer.where_self(&d.lt(2.0), &zero))
        }
    }
}

/// Per-sample resampling matrices `[N, out, input]` for one axis: row `i` holds the weights
/// of the input pixels for output pixel `i` of a crop starting at `start` of length `len`.
///
/// Output pixel `i` is centred at `(i + ½)·len/out` in crop coordinates. When shrinking,
/// the filter is widened by the scale (antialiasing). Weights outside the crop are zero and
/// each row is normalised to sum to one, so the crop's border is reproduced, not blended
/// with the pixels beyond it.
fn axis_weights(
    starts: &[usize],
    lens: &[usize],
    input: usize,
    out: usize,
    interpolation: Interpolation,
    device: Device,
) -> Tensor {
    let to_tensor =
        |values: &[usize]| upload_f32(values.iter().map(|&v| v as f64), device).view([-1, 1, 1]);
    let (start, len) = (to_tensor(starts), to_tensor(lens));
    let options = (Kind::Float, device);
    let source = Tensor::arange(input as i64, options).view([1, 1, -1]);
    let target = Tensor::arange(out as i64, options).view([1, -1, 1]);
    let scale = &len / out as f64;
    let widening = scale.clamp_min(1.0);
    let centre = &scale * (target + 0.5);
    let relative = source - &start;
    let distance = (&relative + 0.5 - centre) / widening;
    let inside = relative.ge(0.0).logical_and(&relative.lt_tensor(&len));
    let weights = filter(&distance, interpolation) * inside.to_kind(Kind::Float);
    let total = weights.sum_dim_intlist([-1i64].as_slice(), true, Kind::Float);
    weights / total
}

/// Crops each sample to its box and resizes it to `size`×`size`.
///
/// Equivalent to torchvision's `resized_crop(..., antialias=True)` on float images: a
/// separable filter evaluated per sample as two batched matrix products (rows, then
/// columns), then clamped to `[0, 1]`.
///
/// # Shapes
/// `[N, C, H, W]` → `[N, C, size, size]`, one box per sample.
pub fn resized_crop(
    x: &Tensor,
    boxes: &[CropBox],
    size: usize,
    interpolation: Interpolation,
) -> Tensor {
    let shape = x.size();
    let (height, width) = (shape[2] as usize, shape[3] as usize);
    let device = x.device();
    let tops: Vec<usize> = boxes.iter().map(|b| b.top).collect();
    let heights: Vec<usize> = boxes.iter().map(|b| b.height).collect();
    let lefts: Vec<usize> = boxes.iter().map(|b| b.left).collect();
    let widths: Vec<usize> = boxes.iter().map(|b| b.width).collect();
    let (samples, channels) = (shape[0], shape[1]);
    let side = size as i64;
    let rows = axis_weights(&tops, &heights, height, size, interpolation, device);
    let columns = axis_weights(&lefts, &widths, width, size, interpolation, device).transpose(1, 2);
    // Two plain batched products (no broadcasting, which would materialise copies of the
    // weights per channel): rows of every channel first, then columns.
    let across = x
        .reshape([samples, channels * height as i64, width as i64])
        .bmm(&columns);
    let across = across
        .view([samples, channels, height as i64, side])
        .transpose(1, 2)
        .reshape([samples, height as i64, channels * side]);
    let out = rows
        .bmm(&across)
        .view([samples, side, channels, side])
        .permute([0i64, 2, 1, 3].as_slice());
    out.clamp(0.0, 1.0).contiguous()
}

/// `(x − mean) / std` per channel; one value applies to every channel.
pub fn normalize(x: &Tensor, mean: &[f64], std: &[f64]) -> Tensor {
    let to_tensor =
        |values: &[f64]| upload_f32(values.iter().copied(), x.device()).view([1, -1, 1, 1]);
    (x - to_tensor(mean)) / to_tensor(std)
}
