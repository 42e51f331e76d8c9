//! The IDX format of MNIST and Fashion-MNIST, gzipped or not.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::{DataError, ImageSet, LoadOptions};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// The file-name prefix of a split: the IDX releases call the test split `t10k`.
fn prefix(split: &str) -> &str {
    match split {
        "test" => "t10k",
        other => other,
    }
}

/// The first existing file among the usual spellings of `{prefix}-{kind}-idx{dims}-ubyte`,
/// with or without `.gz`, or the list of names tried.
fn find(base: &Path, prefix: &str, kind: &str, dims: u32) -> Result<PathBuf, String> {
    let names = [
        format!("{prefix}-{kind}-idx{dims}-ubyte.gz"),
        format!("{prefix}-{kind}-idx{dims}-ubyte"),
        format!("{prefix}-{kind}.idx{dims}-ubyte.gz"),
        format!("{prefix}-{kind}.idx{dims}-ubyte"),
    ];
    for name in &names {
        let path = base.join(name);
        if path.is_file() {
            return Ok(path);
        }
    }
    Err(names
        .iter()
        .map(|name| base.join(name).display().to_string())
        .collect::<Vec<_>>()
        .join(", "))
}

/// The whole file, decompressed when it starts with the gzip magic bytes.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|source| DataError::io(path, source))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|source| DataError::io(path, source))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Checks the magic number and returns the dimensions and the data that follows the header.
fn parse<'a>(
    path: &Path,
    bytes: &'a [u8],
    magic: u32,
    what: &'static str,
) -> Result<(Vec<usize>, &'a [u8]), DataError> {
    let truncated = |expected: usize| DataError::Truncated {
        path: path.to_path_buf(),
        expected: expected as u64,
        found: bytes.len() as u64,
    };
    if bytes.len() < 4 {
        return Err(truncated(4));
    }
    let found = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if found != magic {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            found,
            expected: magic,
            what,
        });
    }
    let ndims = (magic & 0xff) as usize;
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(truncated(header));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|d| {
            let at = 4 + 4 * d;
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize
        })
        .collect();
    let data_len = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .unwrap_or(u64::MAX);
    let expected = (header as u64).saturating_add(data_len);
    let found_len = bytes.len() as u64;
    if found_len < expected {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected,
            found: found_len,
        });
    }
    if found_len > expected {
        return Err(DataError::TrailingBytes {
            path: path.to_path_buf(),
            expected,
            found: found_len,
        });
    }
    Ok((dims, &bytes[header..]))
}

/// Reads `{split}-images-idx3-ubyte[.gz]` and, when present, the matching labels file.
pub(super) fn load(base: &Path, split: &str, options: &LoadOptions) -> Result<ImageSet, DataError> {
    let prefix = prefix(split);
    let images_path =
        find(base, prefix, "images", 3).map_err(|looked_for| DataError::MissingSplit {
            split: split.to_string(),
            looked_for,
        })?;
    let image_file = read_maybe_gz(&images_path)?;
    let (dims, pixels) = parse(&images_path, &image_file, IMAGES_MAGIC, "images")?;
    let (count, height, width) = (dims[0], dims[1], dims[2]);
    if height == 0 || width == 0 {
        return Err(DataError::EmptyImages {
            path: images_path,
            height,
            width,
        });
    }
    let len = options.limit.map_or(count, |limit| limit.min(count));
    let images = pixels[..len * height * width].to_vec();

    // Labels are optional: pre-training needs none. A labels file that exists must agree.
    let labels = match find(base, prefix, "labels", 1) {
        Ok(labels_path) => {
            let label_file = read_maybe_gz(&labels_path)?;
            let (label_dims, label_bytes) =
                parse(&labels_path, &label_file, LABELS_MAGIC, "labels")?;
            if label_dims[0] != count {
                return Err(DataError::CountMismatch {
                    images_path,
                    images: count,
                    labels_path,
                    labels: label_dims[0],
                });
            }
            // The class count comes from every label, not just those of the limited subset.
            let classes = label_bytes
                .iter()
                .copied()
                .max()
                .map_or(0, |m| m as usize + 1);
            Some((
                label_bytes[..len]
                    .iter()
                    .map(|&b| u32::from(b))
                    .collect::<Vec<u32>>(),
                classes,
            ))
        }
        Err(_) => None,
    };
    let class_count = labels.as_ref().map_or(0, |(_, classes)| *classes);
    let labels = labels.map(|(labels, _)| labels);
    Ok(ImageSet {
        images,
        labels,
        len,
        channels: 1,
        height,
        width,
        classes: (0..class_count).map(|c| c.to_string()).collect(),
        skipped: 0,
    })
}
