//! Datasets held in memory as uint8 and the batched, per-sample data augmentation run on them.
//!
//! Reading is pure Rust and always compiled: [`load`] turns a [`DataConfig`]
//! and a data root into an [`ImageSet`] (IDX, CIFAR binary, image folders and their tar
//! archives). The augmentation (`Augmenter`) and the preview grid (`preview_grid`) need
//! libtorch and sit behind the `torch` feature. See `docs/data.md` for the definitions.

use std::path::{Path, PathBuf};

use thiserror::Error;

use fa_lang::ir::{DataConfig, DatasetFormat};

mod cifar;
mod folder;
mod idx;
mod pipelines;
mod resize;

mod augment;
pub mod ops;
mod preview;

pub use augment::{to_tensor, Augmenter};
pub use pipelines::{byol_pipelines, gaussian_kernel_size, CropBox};
pub use preview::{preview_grid, preview_png};

/// The environment variable naming the data root when `--data-root` is not given.
pub const DATA_ROOT_ENV: &str = "FA_DATA_ROOT";

/// A whole split of a dataset in host memory.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    /// `len × channels × height × width` bytes in NCHW order.
    pub images: Vec<u8>,
    /// One label per image (an index into `classes`), when the format carries labels.
    pub labels: Option<Vec<u32>>,
    pub len: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Class names; the label of a class is its position here.
    pub classes: Vec<String>,
    /// Files that could not be decoded and were left out (only with [`LoadOptions::skip_bad`]).
    pub skipped: usize,
}

impl ImageSet {
    /// Bytes of one image.
    pub fn image_bytes(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The bytes of image `index` in CHW order.
    pub fn image(&self, index: usize) -> &[u8] {
        let size = self.image_bytes();
        &self.images[index * size..(index + 1) * size]
    }
}

/// How [`load`] treats bad files and how much it reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Leave out images that cannot be decoded and count them in [`ImageSet::skipped`]
    /// instead of failing.
    pub skip_bad: bool,
    /// Read at most this many images. IDX and CIFAR take the first ones; image folders take
    /// the first files of each class in proportion to the class sizes, so a small subset
    /// still holds every class.
    pub limit: Option<usize>,
}

/// Everything that can go wrong reading a dataset or building an augmentation.
#[derive(Debug, Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: wrong magic number {found:#010x}, expected {expected:#010x} for an IDX {what} file")]
    BadMagic {
        path: PathBuf,
        found: u32,
        expected: u32,
        what: &'static str,
    },
    #[error("{path}: truncated: expected {expected} bytes, found {found}")]
    Truncated {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("{path}: {found} bytes where the header declares {expected}: trailing data")]
    TrailingBytes {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("{path}: label {label} is out of range for {classes} classes")]
    LabelOutOfRange {
        path: PathBuf,
        label: u32,
        classes: usize,
    },
    #[error("{images_path} holds {images} images but {labels_path} holds {labels} labels")]
    CountMismatch {
        images_path: PathBuf,
        images: usize,
        labels_path: PathBuf,
        labels: usize,
    },
    #[error(
        "{path}: the header declares {height}×{width} images; an image needs at least one pixel"
    )]
    EmptyImages {
        path: PathBuf,
        height: usize,
        width: usize,
    },
    #[error("{archive}: member {name} declares {size} bytes, more than the {limit} bytes an image file may have; the archive is damaged or not a dataset")]
    MemberTooLarge {
        archive: PathBuf,
        name: String,
        size: u64,
        limit: u64,
    },
    #[error("split `{split}` not found: looked for {looked_for}. If the dataset is elsewhere, give the folder that holds it with --data-root DIR or the environment variable FA_DATA_ROOT (the data block's `path` is relative to it); Debian's `dataset-fashion-mnist` package installs Fashion-MNIST under /usr/share/datasets")]
    MissingSplit { split: String, looked_for: String },
    #[error("cannot decode image {file}: {reason}")]
    Decode { file: String, reason: String },
    #[error("{file} is a colour image but the data declares 1 channel")]
    ColourImage { file: String },
    #[error("class folder {class} in {location} holds no images")]
    EmptyClass { location: PathBuf, class: String },
    #[error("{location} holds no images")]
    NoImages { location: PathBuf },
    #[error("{format} data has {found} channels but the data declares {declared}")]
    ChannelMismatch {
        format: &'static str,
        found: usize,
        declared: usize,
    },
    #[error("data block: {message}")]
    InvalidConfig { message: String },
    #[error("pipeline `{pipeline}`: {message}")]
    Pipeline { pipeline: String, message: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

impl DataError {
    fn io(path: &Path, source: std::io::Error) -> DataError {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The data root: the `--data-root` flag, else `$FA_DATA_ROOT`, else `./data`.
pub fn data_root(cli: Option<&Path>) -> PathBuf {
    if let Some(path) = cli {
        return path.to_path_buf();
    }
    match std::env::var_os(DATA_ROOT_ENV) {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => PathBuf::from("data"),
    }
}

/// Reads split `split` of the dataset `cfg` describes, resolving `cfg.path` against `root`.
///
/// Images whose size differs from `cfg.image_size` are resized to it (centre square, then
/// resized). `cfg.limit` is not applied here: the caller passes it in `options` for the
/// splits it should limit. IDX data is returned with 1 channel even when `cfg.channels` is
/// 3; the `Augmenter` replicates it. Colour data where `cfg.channels` is 1 is an error.
pub fn load(
    cfg: &DataConfig,
    root: &Path,
    split: &str,
    options: &LoadOptions,
) -> Result<ImageSet, DataError> {
    if cfg.image_size == 0 {
        return Err(DataError::InvalidConfig {
            message: "image size must be positive".to_string(),
        });
    }
    if cfg.channels != 1 && cfg.channels != 3 {
        return Err(DataError::InvalidConfig {
            message: format!("{} channels: only 1 or 3 are supported", cfg.channels),
        });
    }
    let base = root.join(&cfg.path);
    let set = match cfg.format {
        DatasetFormat::Idx => idx::load(&base, split, options)?,
        DatasetFormat::CifarBinary => {
            if cfg.channels == 1 {
                return Err(DataError::ChannelMismatch {
                    format: "CIFAR",
                    found: 3,
                    declared: 1,
                });
            }
            cifar::load(&base, split, options)?
        }
        DatasetFormat::ImageFolder => {
            folder::load(&base, split, cfg.channels, cfg.image_size, options)?
        }
    };
    resize::to_square(set, cfg.image_size)
}
