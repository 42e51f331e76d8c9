//! Image folders `<split>/<class>/<image>` and `.tar` / `.tar.gz` archives of that layout.
//!
//! Files are listed first (names only for folders, names and bytes for archives), ordered by
//! class then file name, and decoded in parallel with rayon. Classes are the sorted folder
//! names; a class's label is its position.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use rayon::prelude::*;

use super::resize::{interleaved_to_planar, square};
use super::{DataError, ImageSet, LoadOptions};

/// Where the bytes of one image come from.
enum Source {
    File(PathBuf),
    /// A member of an archive, already read: its name in the archive and its bytes.
    Member {
        archive: PathBuf,
        name: String,
        bytes: Vec<u8>,
    },
}

impl Source {
    /// The name used in error messages: the path, or `archive:member`.
    fn describe(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Member { archive, name, .. } => format!("{}:{name}", archive.display()),
        }
    }
}

/// The largest archive member read as an image (256 MiB); larger ones are refused.
const MAX_MEMBER_BYTES: u64 = 256 << 20;

/// Whether a file name has an image extension this reader decodes.
fn is_image(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".jpg", ".jpeg", ".png"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

/// Files of each class, by class name (sorted) then file name (sorted).
type Listing = BTreeMap<String, BTreeMap<String, Source>>;

fn list_folder(split_dir: &Path) -> Result<Listing, DataError> {
    let mut listing = Listing::new();
    let entries =
        std::fs::read_dir(split_dir).map_err(|source| DataError::io(split_dir, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| DataError::io(split_dir, source))?;
        let class_dir = entry.path();
        if !class_dir.is_dir() {
            continue;
        }
        let class = entry.file_name().to_string_lossy().into_owned();
        let files = listing.entry(class).or_default();
        for file in
            std::fs::read_dir(&class_dir).map_err(|source| DataError::io(&class_dir, source))?
        {
            let file = file.map_err(|source| DataError::io(&class_dir, source))?;
            let name = file.file_name().to_string_lossy().into_owned();
            if is_image(&name) && file.path().is_file() {
                files.insert(name, Source::File(file.path()));
            }
        }
    }
    Ok(listing)
}

/// Reads every member of an archive. Member paths are `<class>/<image>`, optionally under a
/// leading `<split>/` (and `./`); other members are ignored.
fn list_archive(archive_path: &Path, split: &str, gzipped: bool) -> Result<Listing, DataError> {
    let file = File::open(archive_path).map_err(|source| DataError::io(archive_path, source))?;
    let reader: Box<dyn Read> = if gzipped {
        Box::new(GzDecoder::new(std::io::BufReader::with_capacity(
            1 << 20,
            file,
        )))
    } else {
        Box::new(std::io::BufReader::with_capacity(1 << 20, file))
    };
    let mut archive = tar::Archive::new(reader);
    let mut listing = Listing::new();
    let io_error = |source| DataError::io(archive_path, source);
    for entry in archive.entries().map_err(io_error)? {
        let mut entry = entry.map_err(io_error)?;
        let path = entry
            .path()
            .map_err(io_error)?
            .to_string_lossy()
            .into_owned();
        let mut parts: Vec<&str> = path
            .split('/')
            .filter(|part| !part.is_empty() && *part != ".")
            .collect();
        if parts.first() == Some(&split) {
            parts.remove(0);
        }
        let is_dir = entry.header().entry_type().is_dir();
        match (parts.as_slice(), is_dir) {
            ([class], true) => {
                listing.entry(class.to_string()).or_default();
            }
            ([class, name], false) if is_image(name) => {
                let (class, name) = (class.to_string(), name.to_string());
                // The declared size is the archive's word, not a fact: a damaged header could
                // ask for terabytes. Refuse what no image file needs, and read the rest
                // without trusting the size for the allocation.
                if entry.size() > MAX_MEMBER_BYTES {
                    return Err(DataError::MemberTooLarge {
                        archive: archive_path.to_path_buf(),
                        name: path.clone(),
                        size: entry.size(),
                        limit: MAX_MEMBER_BYTES,
                    });
                }
                let mut bytes = Vec::with_capacity(entry.size().min(1 << 20) as usize);
                entry.read_to_end(&mut bytes).map_err(io_error)?;
                let source = Source::Member {
                    archive: archive_path.to_path_buf(),
                    name: path.clone(),
                    bytes,
                };
                listing.entry(class).or_default().insert(name, source);
            }
            _ => {}
        }
    }
    Ok(listing)
}

/// How many of each class's files to keep so that `limit` files are spread over the classes
/// in proportion to their sizes (largest remainders get the leftover).
fn per_class_quota(sizes: &[usize], limit: usize) -> Vec<usize> {
    let total: usize = sizes.iter().sum();
    if limit >= total {
        return sizes.to_vec();
    }
    let mut quota: Vec<usize> = sizes.iter().map(|&n| n * limit / total).collect();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&c| std::cmp::Reverse((sizes[c] * limit) % total));
    let mut left = limit - quota.iter().sum::<usize>();
    for c in order {
        if left == 0 {
            break;
        }
        if quota[c] < sizes[c] {
            quota[c] += 1;
            left -= 1;
        }
    }
    quota
}

/// Decodes one image to `channels` planes of `size`×`size` bytes in `out`.
fn decode(source: &Source, channels: usize, size: usize, out: &mut [u8]) -> Result<(), DataError> {
    let owned;
    let bytes: &[u8] = match source {
        Source::File(path) => {
            owned = std::fs::read(path).map_err(|source| DataError::io(path, source))?;
            &owned
        }
        Source::Member { bytes, .. } => bytes,
    };
    let image = image::load_from_memory(bytes).map_err(|error| DataError::Decode {
        file: source.describe(),
        reason: error.to_string(),
    })?;
    let image = if channels == 1 {
        if image.color().has_color() {
            return Err(DataError::ColourImage {
                file: source.describe(),
            });
        }
        image::DynamicImage::ImageLuma8(image.into_luma8())
    } else {
        // Greyscale files in a colour dataset are replicated to three channels here.
        image::DynamicImage::ImageRgb8(image.into_rgb8())
    };
    let resized = square(image, size);
    interleaved_to_planar(resized.as_bytes(), channels, out);
    Ok(())
}

pub(super) fn load(
    base: &Path,
    split: &str,
    channels: usize,
    size: usize,
    options: &LoadOptions,
) -> Result<ImageSet, DataError> {
    let split_dir = base.join(split);
    let tar_gz = base.join(format!("{split}.tar.gz"));
    let tgz = base.join(format!("{split}.tgz"));
    let tar = base.join(format!("{split}.tar"));
    let (location, listing) = if split_dir.is_dir() {
        (split_dir.clone(), list_folder(&split_dir)?)
    } else if tar_gz.is_file() {
        (tar_gz.clone(), list_archive(&tar_gz, split, true)?)
    } else if tgz.is_file() {
        (tgz.clone(), list_archive(&tgz, split, true)?)
    } else if tar.is_file() {
        (tar.clone(), list_archive(&tar, split, false)?)
    } else {
        let looked_for = [&split_dir, &tar_gz, &tgz, &tar]
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(DataError::MissingSplit {
            split: split.to_string(),
            looked_for,
        });
    };
    if listing.is_empty() {
        return Err(DataError::NoImages { location });
    }
    if let Some((class, _)) = listing.iter().find(|(_, files)| files.is_empty()) {
        return Err(DataError::EmptyClass {
            location,
            class: class.clone(),
        });
    }

    let classes: Vec<String> = listing.keys().cloned().collect();
    let sizes: Vec<usize> = listing.values().map(BTreeMap::len).collect();
    let quota = per_class_quota(&sizes, options.limit.unwrap_or(usize::MAX));
    let mut sources = Vec::new();
    let mut labels = Vec::new();
    for (label, (files, &take)) in listing.into_values().zip(&quota).enumerate() {
        for source in files.into_values().take(take) {
            sources.push(source);
            labels.push(label as u32);
        }
    }

    let image_bytes = channels * size * size;
    let mut images = vec![0u8; sources.len() * image_bytes];
    let outcomes: Vec<Result<(), DataError>> = images
        .par_chunks_mut(image_bytes)
        .zip(sources.par_iter())
        .map(|(out, source)| decode(source, channels, size, out))
        .collect();

    // Without `skip_bad` the first failure in file order is the error; with it, failed
    // images are squeezed out of the buffer and counted.
    let mut kept = 0;
    let mut skipped = 0;
    let mut kept_labels = Vec::with_capacity(labels.len());
    for (index, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(()) => {
                if kept != index {
                    images.copy_within(
                        index * image_bytes..(index + 1) * image_bytes,
                        kept * image_bytes,
                    );
                }
                kept_labels.push(labels[index]);
                kept += 1;
            }
            Err(error @ (DataError::Decode { .. } | DataError::ColourImage { .. }))
                if !options.skip_bad =>
            {
                return Err(error)
            }
            Err(DataError::Decode { .. } | DataError::ColourImage { .. }) => skipped += 1,
            Err(other) => return Err(other),
        }
    }
    images.truncate(kept * image_bytes);
    if kept == 0 {
        return Err(DataError::NoImages { location });
    }
    Ok(ImageSet {
        images,
        labels: Some(kept_labels),
        len: kept,
        channels,
        height: size,
        width: size,
        classes,
        skipped,
    })
}
