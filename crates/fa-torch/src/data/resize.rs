//! Bringing images to the square storage resolution: centre square, then an antialiased resize.

use image::imageops::FilterType;
use image::DynamicImage;
use rayon::prelude::*;

use super::{DataError, ImageSet};

/// The centre square of `image` resized to `size`×`size` (a no-op when it already is).
///
/// Cropping the centre square first and resizing it is the same as resizing the shorter
/// side to `size` and cropping the centre, but resizes fewer pixels. The triangle filter
/// widens with the scale factor, so shrinking is antialiased.
pub(super) fn square(image: DynamicImage, size: usize) -> DynamicImage {
    let (width, height) = (image.width(), image.height());
    let size = size as u32;
    if width == size && height == size {
        return image;
    }
    let side = width.min(height);
    let cropped = if width == height {
        image
    } else {
        image.crop_imm((width - side) / 2, (height - side) / 2, side, side)
    };
    cropped.resize_exact(size, size, FilterType::Triangle)
}

/// Interleaved `height × width × channels` bytes to planar `channels × height × width`.
pub(super) fn interleaved_to_planar(pixels: &[u8], channels: usize, out: &mut [u8]) {
    let plane = pixels.len() / channels;
    for (position, pixel) in pixels.chunks_exact(channels).enumerate() {
        for (channel, &value) in pixel.iter().enumerate() {
            out[channel * plane + position] = value;
        }
    }
}

/// Planar `channels × height × width` bytes to an `image` value.
fn planar_to_image(pixels: &[u8], channels: usize, height: usize, width: usize) -> DynamicImage {
    let plane = height * width;
    let mut interleaved = vec![0u8; pixels.len()];
    for position in 0..plane {
        for channel in 0..channels {
            interleaved[position * channels + channel] = pixels[channel * plane + position];
        }
    }
    let (w, h) = (width as u32, height as u32);
    if channels == 1 {
        DynamicImage::ImageLuma8(
            image::GrayImage::from_raw(w, h, interleaved).expect("buffer size matches"),
        )
    } else {
        DynamicImage::ImageRgb8(
            image::RgbImage::from_raw(w, h, interleaved).expect("buffer size matches"),
        )
    }
}

/// Resizes every image of `set` to `size`×`size`, in parallel; returns `set` unchanged when
/// its images already have that size.
pub(super) fn to_square(set: ImageSet, size: usize) -> Result<ImageSet, DataError> {
    if set.height == size && set.width == size {
        return Ok(set);
    }
    let (channels, height, width) = (set.channels, set.height, set.width);
    let mut images = vec![0u8; set.len * channels * size * size];
    images
        .par_chunks_mut(channels * size * size)
        .zip(set.images.par_chunks(channels * height * width))
        .for_each(|(out, pixels)| {
            let resized = square(planar_to_image(pixels, channels, height, width), size);
            interleaved_to_planar(resized.as_bytes(), channels, out);
        });
    Ok(ImageSet {
        images,
        height: size,
        width: size,
        ..set
    })
}
