//! `fa augment`: a PNG grid of original images next to their augmented views.

use std::path::Path;

use fa_base::random::{Key, Purpose};
use tch::{Device, Kind, Tensor};

use super::{to_tensor, Augmenter, DataError, ImageSet};
use fa_lang::ir::Pipeline;

/// Gap between tiles, in pixels of the written image.
const GAP: u32 = 4;

/// Tiles are magnified by an integer factor (nearest neighbour) to at least this side, so
/// that 32-pixel images stay legible.
const MIN_TILE: usize = 96;

/// Writes a PNG grid to `out`: one row per image, `count` images spread evenly over `set`;
/// each row holds the original, then `views` augmented views (before normalisation) for each
/// pipeline in order. Augmentation runs on the CPU with `seed`. Returns the PNG's width and
/// height.
pub fn preview_grid(
    set: &ImageSet,
    pipelines: &[(String, &Pipeline)],
    out_channels: usize,
    count: usize,
    views: usize,
    seed: u64,
    out: &Path,
) -> Result<(u32, u32), DataError> {
    let (png, width, height) = preview_png(set, pipelines, out_channels, count, views, seed, out)?;
    std::fs::write(out, png).map_err(|error| DataError::Write {
        path: out.to_path_buf(),
        reason: error.to_string(),
    })?;
    Ok((width, height))
}

/// The grid of [`preview_grid`] as PNG bytes with its width and height (the trainer puts it
/// in TensorBoard's events file); `location` names the destination in errors.
pub fn preview_png(
    set: &ImageSet,
    pipelines: &[(String, &Pipeline)],
    out_channels: usize,
    count: usize,
    views: usize,
    seed: u64,
    location: &Path,
) -> Result<(Vec<u8>, u32, u32), DataError> {
    let out = location;
    let augmenters = pipelines
        .iter()
        .map(|(_, pipeline)| Augmenter::new(pipeline, out_channels))
        .collect::<Result<Vec<_>, _>>()?;
    for augmenter in &augmenters {
        augmenter.check_channels(set.channels)?;
    }
    let count = count.min(set.len);
    if count == 0 {
        return Err(DataError::NoImages {
            location: out.to_path_buf(),
        });
    }
    // Evenly spaced rather than the first images, which in a class-ordered set are one class.
    let picks: Vec<i64> = (0..count).map(|i| (i * set.len / count) as i64).collect();
    let originals = to_tensor(set, Device::Cpu).index_select(0, &Tensor::from_slice(&picks));
    let samples: Vec<u64> = picks.iter().map(|&i| i as u64).collect();

    // Every tile is shown at the largest side among the original and the pipelines' outputs.
    let side = augmenters
        .iter()
        .map(|a| a.output_side(set.height))
        .chain([set.height.max(set.width)])
        .max()
        .unwrap_or(1);
    let magnify = MIN_TILE.div_ceil(side).max(1);
    let tile = (side * magnify) as u32;

    let mut rows: Vec<Vec<Tensor>> = (0..count).map(|_| Vec::new()).collect();
    // Originals go through the channel conversion only, so grey data shows as grey RGB.
    let as_float = originals.to_kind(Kind::Float) / 255.0;
    let as_float = if set.channels == 1 && out_channels == 3 {
        as_float.expand([-1, 3, -1, -1], false)
    } else {
        as_float
    };
    for (index, row) in rows.iter_mut().enumerate() {
        row.push(as_float.get(index as i64));
    }
    for (index, augmenter) in augmenters.iter().enumerate() {
        for view in 0..views {
            // Each pipeline gets its own views: the pipeline's position is the key's round.
            let key = Key::new(seed, Purpose::View(view as u32), index as u64);
            let augmented = augmenter.apply_unnormalised(&originals, key, &samples);
            for (row, image) in rows.iter_mut().enumerate() {
                image.push(augmented.get(row as i64));
            }
        }
    }

    let columns = 1 + augmenters.len() * views;
    let width = columns as u32 * tile + (columns as u32 + 1) * GAP;
    let height = count as u32 * tile + (count as u32 + 1) * GAP;
    let mut canvas = image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    for (row, images) in rows.iter().enumerate() {
        for (column, image) in images.iter().enumerate() {
            let pixels = to_rgb_bytes(image);
            let image_side = image.size()[1] as usize;
            let scale = tile as usize / image_side;
            let x0 = GAP + column as u32 * (tile + GAP);
            let y0 = GAP + row as u32 * (tile + GAP);
            for y in 0..image_side * scale {
                for x in 0..image_side * scale {
                    let at = ((y / scale) * image_side + (x / scale)) * 3;
                    canvas.put_pixel(
                        x0 + x as u32,
                        y0 + y as u32,
                        image::Rgb([pixels[at], pixels[at + 1], pixels[at + 2]]),
                    );
                }
            }
        }
    }
    let mut png = Vec::new();
    canvas
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|error| DataError::Write {
            path: out.to_path_buf(),
            reason: error.to_string(),
        })?;
    Ok((png, width, height))
}

/// A `[C, S, S]` float image in `[0, 1]` as interleaved RGB bytes (grey replicated).
fn to_rgb_bytes(image: &Tensor) -> Vec<u8> {
    let rgb = if image.size()[0] == 1 {
        image.expand([3, -1, -1], false)
    } else {
        image.shallow_clone()
    };
    let bytes = (rgb.clamp(0.0, 1.0) * 255.0)
        .round()
        .to_kind(Kind::Uint8)
        .permute([1i64, 2, 0].as_slice())
        .contiguous();
    let numel = bytes.numel();
    let mut out = vec![0u8; numel];
    bytes.copy_data(&mut out, numel);
    out
}
