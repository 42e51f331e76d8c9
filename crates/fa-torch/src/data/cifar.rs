//! The CIFAR-10 and CIFAR-100 binary releases.
//!
//! CIFAR-10 (`cifar-10-batches-bin/`): `data_batch_1.bin` … `data_batch_5.bin` and
//! `test_batch.bin`, records of 1 label byte and 3072 pixel bytes (the red plane, then green,
//! then blue, row-major). CIFAR-100 (`cifar-100-binary/`): `train.bin` and `test.bin`,
//! records of a coarse and a fine label byte then 3072 pixel bytes; the fine label is used.

use std::path::{Path, PathBuf};

use super::{DataError, ImageSet, LoadOptions};

const PIXELS: usize = 3 * 32 * 32;

/// CIFAR-10's class names in label order, used when `batches.meta.txt` is absent.
const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Which release a folder holds, by the files present.
enum Release {
    Cifar10,
    Cifar100,
}

/// The folder holding the batch files: `base` itself or the release's own subfolder.
fn locate(base: &Path) -> Option<(PathBuf, Release)> {
    for dir in [
        base.to_path_buf(),
        base.join("cifar-10-batches-bin"),
        base.join("cifar-100-binary"),
    ] {
        if dir.join("data_batch_1.bin").is_file() || dir.join("test_batch.bin").is_file() {
            return Some((dir, Release::Cifar10));
        }
        if dir.join("train.bin").is_file() || dir.join("test.bin").is_file() {
            return Some((dir, Release::Cifar100));
        }
    }
    None
}

/// Class names from a text file with one name per line, or `None` when it is absent.
fn read_names(path: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(String::from)
        .collect();
    (!names.is_empty()).then_some(names)
}

pub(super) fn load(base: &Path, split: &str, options: &LoadOptions) -> Result<ImageSet, DataError> {
    let missing = |looked_for: String| DataError::MissingSplit {
        split: split.to_string(),
        looked_for,
    };
    let Some((dir, release)) = locate(base) else {
        return Err(missing(format!("data_batch_*.bin, test_batch.bin, train.bin or test.bin in {} (or its cifar-10-batches-bin / cifar-100-binary subfolder)", base.display())));
    };
    let (files, label_bytes, classes): (Vec<PathBuf>, usize, Vec<String>) = match release {
        Release::Cifar10 => {
            let files = match split {
                "train" => (1..=5)
                    .map(|i| dir.join(format!("data_batch_{i}.bin")))
                    .collect(),
                "test" => vec![dir.join("test_batch.bin")],
                other => vec![dir.join(format!("{other}.bin"))],
            };
            let classes = read_names(&dir.join("batches.meta.txt"))
                .unwrap_or_else(|| CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect());
            (files, 1, classes)
        }
        Release::Cifar100 => {
            let classes = read_names(&dir.join("fine_label_names.txt"))
                .unwrap_or_else(|| (0..100).map(|c| c.to_string()).collect());
            (vec![dir.join(format!("{split}.bin"))], 2, classes)
        }
    };
    if let Some(absent) = files.iter().find(|file| !file.is_file()) {
        return Err(missing(absent.display().to_string()));
    }

    let record = label_bytes + PIXELS;
    let wanted = options.limit.unwrap_or(usize::MAX);
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for file in &files {
        if labels.len() >= wanted {
            break;
        }
        let bytes = std::fs::read(file).map_err(|source| DataError::io(file, source))?;
        if bytes.len() % record != 0 {
            let expected = (bytes.len() / record + 1) * record;
            return Err(DataError::Truncated {
                path: file.clone(),
                expected: expected as u64,
                found: bytes.len() as u64,
            });
        }
        for chunk in bytes.chunks_exact(record).take(wanted - labels.len()) {
            // The last label byte is CIFAR-10's label or CIFAR-100's fine label.
            let label = u32::from(chunk[label_bytes - 1]);
            if label as usize >= classes.len() {
                return Err(DataError::LabelOutOfRange {
                    path: file.clone(),
                    label,
                    classes: classes.len(),
                });
            }
            labels.push(label);
            images.extend_from_slice(&chunk[label_bytes..]);
        }
    }
    Ok(ImageSet {
        images,
        len: labels.len(),
        labels: Some(labels),
        channels: 3,
        height: 32,
        width: 32,
        classes,
        skipped: 0,
    })
}
