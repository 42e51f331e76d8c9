//! Checkpoints: named tensors and run metadata in one safetensors file, written atomically and verified on load.
//!
//! Layout of a checkpoint file: a plain safetensors file (never pickle) whose metadata
//! header holds two entries, `fa.meta` (the [`CheckpointMeta`] as JSON) and `fa.sha256`
//! (a SHA-256 over the metadata JSON and every tensor's name, dtype, shape and bytes, in
//! name order). Hashing tensors in name order rather than hashing the file's data section
//! keeps the checksum independent of how the safetensors writer lays tensors out.
//!
//! Saving writes a temporary file beside the target, syncs it, renames it over the target
//! and syncs the directory, so a crash at any moment leaves either the previous checkpoint
//! or the new one, never a half-written file under a checkpoint name. Checkpoints of a run
//! live in `<run>/checkpoints/step-000000123.safetensors`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use fa_base::fsio::write_file_atomically;

/// Version of the run-folder format (checkpoints and `model.json`); bumped when a stored run
/// would resume differently. 2: the random streams of `docs/randomness.md` (version 1 drew
/// from per-step seeds), so a version-1 run is refused rather than resumed with other draws.
pub const FORMAT_VERSION: u32 = 2;

/// Key of the JSON-encoded [`CheckpointMeta`] in the safetensors metadata header.
const META_KEY: &str = "fa.meta";
/// Key of the hex SHA-256 checksum in the safetensors metadata header.
const CHECKSUM_KEY: &str = "fa.sha256";
/// Folder of a run that holds its checkpoints.
const CHECKPOINT_FOLDER: &str = "checkpoints";

/// Everything about a run that is not a tensor but is needed to resume it exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Layout version, [`FORMAT_VERSION`] when written by this build.
    pub format_version: u32,
    pub model_name: String,
    /// Optimiser steps taken so far.
    pub step: u64,
    /// The epoch in progress (or the next one, when `position` is 0).
    pub epoch: u64,
    /// Index into the epoch's data order of the next micro-batch's first sample.
    pub position: u64,
    pub seed: u64,
    /// The resolved `.fa` source or model JSON the run was started from.
    pub source: String,
    /// [`fingerprint`] of the model's parameter names and shapes.
    pub fingerprint: String,
    /// Further values the training loop wants back on resume (the world size of a
    /// data-parallel run).
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// One way a checkpoint's tensors differ from what the model expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TensorMismatch {
    Shape {
        name: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },
    Missing {
        name: String,
    },
    Unexpected {
        name: String,
    },
}

impl fmt::Display for TensorMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorMismatch::Shape { name, expected, found } => write!(
                f,
                "tensor `{name}` has shape {found:?} in the checkpoint but the model expects {expected:?}"
            ),
            TensorMismatch::Missing { name } => {
                write!(f, "tensor `{name}` is missing from the checkpoint")
            }
            TensorMismatch::Unexpected { name } => {
                write!(f, "tensor `{name}` is in the checkpoint but not in the model")
            }
        }
    }
}

/// Why a checkpoint could not be written, read or used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot access checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint {path} is truncated: {detail}")]
    Truncated { path: PathBuf, detail: String },
    #[error("checkpoint {path} is corrupt: its checksum should be {expected} but the contents hash to {found}")]
    Corrupt {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("checkpoint {path} was written in run format {found}; this fa reads format {FORMAT_VERSION} (docs/randomness.md) and would not resume it the same way: train into a new folder, or use the fa that wrote it")]
    Format { path: PathBuf, found: u32 },
    #[error("{path} is not a checkpoint: {reason}")]
    NotACheckpoint { path: PathBuf, reason: String },
    #[error("checkpoint does not match the model: {}", join_mismatches(.problems))]
    Mismatch { problems: Vec<TensorMismatch> },
    #[error("tensor `{name}` is given twice; checkpoint names must be unique")]
    DuplicateName { name: String },
    #[error("tensor `{name}` has element type {kind}, which checkpoints cannot store")]
    UnsupportedKind { name: String, kind: String },
    #[error("not enough free space in {} for a checkpoint: it needs {} but {} are free; free some space or lower train.keep_checkpoints", .folder.display(), human_bytes(.needed), human_bytes(.available))]
    NoSpace {
        folder: PathBuf,
        needed: u64,
        available: u64,
    },
}

fn join_mismatches(problems: &[TensorMismatch]) -> String {
    problems
        .iter()
        .map(|problem| problem.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A hash of the parameter names and shapes, to recognise a checkpoint of another model
/// before comparing tensor by tensor. Order-independent: the entries are sorted first.
pub fn fingerprint(parameters: &[(String, Vec<i64>)]) -> String {
    let mut entries: Vec<&(String, Vec<i64>)> = parameters.iter().collect();
    entries.sort();
    let mut hasher = Sha256::new();
    for (name, shape) in entries {
        hasher.update(name.as_bytes());
        hasher.update([0u8]);
        for dim in shape {
            hasher.update(dim.to_le_bytes());
        }
        hasher.update([0xffu8]);
    }
    hex::encode(hasher.finalize())
}

/// The path of the checkpoint of step `step` in run folder `run_dir`.
pub fn checkpoint_path(run_dir: &Path, step: u64) -> PathBuf {
    run_dir
        .join(CHECKPOINT_FOLDER)
        .join(format!("step-{step:09}.safetensors"))
}

/// The folder of `run_dir` that holds its checkpoints.
pub fn checkpoint_folder(run_dir: &Path) -> PathBuf {
    run_dir.join(CHECKPOINT_FOLDER)
}

/// The step recorded inside a checkpoint, read from its safetensors header alone (the
/// tensors are neither read nor verified); `None` for a file that is not a checkpoint.
pub fn stored_step(path: &Path) -> Option<u64> {
    use std::io::Read;

    let mut file = std::fs::File::open(path).ok()?;
    let mut length = [0u8; 8];
    file.read_exact(&mut length).ok()?;
    let length = u64::from_le_bytes(length);
    // The cap of `open_verified`: a larger header means the file is something else.
    if length > 100_000_000 {
        return None;
    }
    let mut header = vec![0u8; length as usize];
    file.read_exact(&mut header).ok()?;
    let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
    let meta = header.get("__metadata__")?.get(META_KEY)?.as_str()?;
    let meta: CheckpointMeta = serde_json::from_str(meta).ok()?;
    Some(meta.step)
}

/// Every checkpoint of `run_dir/checkpoints` with the step stored inside it, by step. The
/// step comes from the file, never from its name, so a renamed or copied checkpoint is
/// ordered by what it holds; temporary files (leading dot) and other files are ignored.
pub fn checkpoints(run_dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(checkpoint_folder(run_dir)) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|name| !name.starts_with('.') && name.ends_with(".safetensors"))
        })
        .filter_map(|entry| Some((stored_step(&entry.path())?, entry.path())))
        .collect();
    found.sort();
    found
}

/// The checkpoint with the highest stored step in `run_dir/checkpoints`, or `None` when
/// there is none (or the folder cannot be read).
pub fn latest(run_dir: &Path) -> Option<PathBuf> {
    checkpoints(run_dir).pop().map(|(_, path)| path)
}

/// Removes all but the `keep` checkpoints with the highest stored steps (at least one is
/// always kept); returns the files removed.
pub fn prune(run_dir: &Path, keep: usize) -> Result<Vec<PathBuf>, CheckpointError> {
    let found = checkpoints(run_dir);
    let surplus = found.len().saturating_sub(keep.max(1));
    let mut removed = Vec::new();
    for (_, path) in found.into_iter().take(surplus) {
        std::fs::remove_file(&path).map_err(|source| CheckpointError::Io {
            path: path.clone(),
            source,
        })?;
        removed.push(path);
    }
    Ok(removed)
}

/// Refuses to write `needed` bytes into `folder` when its file system has less free space
/// (`available`, `None` when it cannot be told), so a full disk is a clear message before
/// writing instead of a failed write after it.
pub fn check_space(
    folder: &Path,
    needed: u64,
    available: Option<u64>,
) -> Result<(), CheckpointError> {
    match available {
        Some(available) if available < needed => Err(CheckpointError::NoSpace {
            folder: folder.to_path_buf(),
            needed,
            available,
        }),
        _ => Ok(()),
    }
}

/// A byte count for messages, in the largest unit that keeps it above 1.
fn human_bytes(bytes: &u64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = *bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// Computes the checksum stored under `fa.sha256` from the metadata JSON and the tensors,
/// given as `(name, dtype name, shape, bytes)` in any order.
fn checksum<'a>(
    meta_json: &str,
    tensors: impl IntoIterator<Item = (&'a str, &'a str, Vec<usize>, &'a [u8])>,
) -> String {
    let mut sorted: Vec<_> = tensors.into_iter().collect();
    sorted.sort_by(|left, right| left.0.cmp(right.0));
    let mut hasher = Sha256::new();
    hasher.update((meta_json.len() as u64).to_le_bytes());
    hasher.update(meta_json.as_bytes());
    for (name, dtype, shape, bytes) in sorted {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((dtype.len() as u64).to_le_bytes());
        hasher.update(dtype.as_bytes());
        hasher.update((shape.len() as u64).to_le_bytes());
        for dim in shape {
            hasher.update((dim as u64).to_le_bytes());
        }
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    hex::encode(hasher.finalize())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    write_file_atomically(path, bytes).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Checks the parts of a checkpoint file that do not need libtorch: the header, the
/// metadata and the checksum. Returns the parsed tensors view and the metadata.
fn open_verified<'a>(
    path: &Path,
    bytes: &'a [u8],
) -> Result<(safetensors::SafeTensors<'a>, CheckpointMeta), CheckpointError> {
    let not_a_checkpoint = |reason: String| CheckpointError::NotACheckpoint {
        path: path.to_path_buf(),
        reason,
    };
    let truncated = |detail: String| CheckpointError::Truncated {
        path: path.to_path_buf(),
        detail,
    };
    if bytes.len() < 8 {
        return Err(truncated(format!(
            "the file has {} bytes, fewer than the 8-byte header length",
            bytes.len()
        )));
    }
    let header_length = u64::from_le_bytes(
        bytes[..8]
            .try_into()
            .expect("eight bytes were checked above"),
    );
    // safetensors caps its header at 100 MB; a larger value means the file is something else.
    if header_length > 100_000_000 {
        return Err(not_a_checkpoint(format!(
            "its header length {header_length} is implausible"
        )));
    }
    let header_end = 8 + header_length as usize;
    if bytes.len() < header_end {
        return Err(truncated(format!(
            "the header needs {header_end} bytes but the file has {}",
            bytes.len()
        )));
    }
    let header = match safetensors::SafeTensors::read_metadata(bytes) {
        Ok((_, header)) => header,
        Err(safetensors::SafeTensorError::MetadataIncompleteBuffer) => {
            return Err(match data_section_length(&bytes[8..header_end]) {
                Some(needed) if header_end + needed > bytes.len() => truncated(format!(
                    "the tensors need {} bytes but the file has {}",
                    header_end + needed,
                    bytes.len()
                )),
                _ => {
                    not_a_checkpoint("its length does not match its safetensors header".to_string())
                }
            });
        }
        Err(error) => {
            return Err(not_a_checkpoint(format!(
                "invalid safetensors data ({error})"
            )))
        }
    };
    let tensors = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|error| not_a_checkpoint(format!("invalid safetensors data ({error})")))?;
    let metadata = header.metadata().as_ref();
    let meta_json = metadata
        .and_then(|metadata| metadata.get(META_KEY))
        .ok_or_else(|| {
            not_a_checkpoint(format!("its safetensors header has no `{META_KEY}` entry"))
        })?;
    let expected = metadata
        .and_then(|metadata| metadata.get(CHECKSUM_KEY))
        .ok_or_else(|| {
            not_a_checkpoint(format!(
                "its safetensors header has no `{CHECKSUM_KEY}` entry"
            ))
        })?;
    let dtype_names: Vec<(String, String)> = tensors
        .iter()
        .map(|(name, view)| (name.to_string(), format!("{:?}", view.dtype())))
        .collect();
    let views: Vec<_> = tensors.iter().collect();
    let found = checksum(
        meta_json,
        views
            .iter()
            .zip(&dtype_names)
            .map(|((name, view), (_, dtype))| {
                (*name, dtype.as_str(), view.shape().to_vec(), view.data())
            }),
    );
    if &found != expected {
        return Err(CheckpointError::Corrupt {
            path: path.to_path_buf(),
            expected: expected.clone(),
            found,
        });
    }
    let meta: CheckpointMeta = serde_json::from_str(meta_json).map_err(|error| {
        not_a_checkpoint(format!("its `{META_KEY}` entry is not valid ({error})"))
    })?;
    if meta.format_version != FORMAT_VERSION {
        return Err(CheckpointError::Format {
            path: path.to_path_buf(),
            found: meta.format_version,
        });
    }
    Ok((tensors, meta))
}

/// The length of the data section a safetensors header describes (the largest end offset),
/// or `None` when the header cannot be parsed.
fn data_section_length(header: &[u8]) -> Option<usize> {
    let value: serde_json::Value = serde_json::from_slice(header).ok()?;
    let entries = value.as_object()?;
    let mut end = 0usize;
    for (name, entry) in entries {
        if name == "__metadata__" {
            continue;
        }
        let offsets = entry.get("data_offsets")?.as_array()?;
        end = end.max(offsets.get(1)?.as_u64()? as usize);
    }
    Some(end)
}

/// Reads only the metadata of a checkpoint, after verifying its checksum; needs no libtorch.
pub fn read_meta(path: &Path) -> Result<CheckpointMeta, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    open_verified(path, &bytes).map(|(_, meta)| meta)
}

pub use with_torch::*;

mod with_torch {
    use super::*;
    use safetensors::tensor::{Dtype, TensorView};
    use tch::{Device, Kind, Tensor};

    /// A checkpoint in memory: named tensors (model, EMA target, optimiser state, banks)
    /// and the run's metadata.
    #[derive(Debug)]
    pub struct Checkpoint {
        pub tensors: Vec<(String, Tensor)>,
        pub meta: CheckpointMeta,
    }

    fn dtype_of(name: &str, kind: Kind) -> Result<Dtype, CheckpointError> {
        Ok(match kind {
            Kind::Bool => Dtype::BOOL,
            Kind::Uint8 => Dtype::U8,
            Kind::Int8 => Dtype::I8,
            Kind::Int16 => Dtype::I16,
            Kind::Int => Dtype::I32,
            Kind::Int64 => Dtype::I64,
            Kind::BFloat16 => Dtype::BF16,
            Kind::Half => Dtype::F16,
            Kind::Float => Dtype::F32,
            Kind::Double => Dtype::F64,
            other => {
                return Err(CheckpointError::UnsupportedKind {
                    name: name.to_string(),
                    kind: format!("{other:?}"),
                })
            }
        })
    }

    fn kind_of(path: &Path, name: &str, dtype: Dtype) -> Result<Kind, CheckpointError> {
        Ok(match dtype {
            Dtype::BOOL => Kind::Bool,
            Dtype::U8 => Kind::Uint8,
            Dtype::I8 => Kind::Int8,
            Dtype::I16 => Kind::Int16,
            Dtype::I32 => Kind::Int,
            Dtype::I64 => Kind::Int64,
            Dtype::BF16 => Kind::BFloat16,
            Dtype::F16 => Kind::Half,
            Dtype::F32 => Kind::Float,
            Dtype::F64 => Kind::Double,
            other => {
                return Err(CheckpointError::NotACheckpoint {
                    path: path.to_path_buf(),
                    reason: format!(
                        "tensor `{name}` has element type {other:?}, which fa never writes"
                    ),
                })
            }
        })
    }

    /// The raw bytes of a tensor in native (little-endian) order, copied to the CPU.
    fn tensor_bytes(tensor: &Tensor) -> Vec<u8> {
        let tensor = tensor.detach().to_device(Device::Cpu).contiguous();
        let numel = tensor.numel();
        let mut bytes = vec![0u8; numel * tensor.kind().elt_size_in_bytes()];
        tensor.copy_data_u8(&mut bytes, numel);
        bytes
    }

    /// Writes `ckpt` to `path` atomically (see the module documentation). Tensors may live
    /// on any device; they are copied to the CPU for writing.
    pub fn save(path: &Path, ckpt: &Checkpoint) -> Result<(), CheckpointError> {
        let mut seen = std::collections::BTreeSet::new();
        let mut prepared = Vec::with_capacity(ckpt.tensors.len());
        for (name, tensor) in &ckpt.tensors {
            if !seen.insert(name.as_str()) {
                return Err(CheckpointError::DuplicateName { name: name.clone() });
            }
            let dtype = dtype_of(name, tensor.kind())?;
            let shape: Vec<usize> = tensor.size().iter().map(|&dim| dim as usize).collect();
            prepared.push((name.clone(), dtype, shape, tensor_bytes(tensor)));
        }
        let meta_json =
            serde_json::to_string(&ckpt.meta).expect("checkpoint metadata always serialises");
        let dtype_names: Vec<String> = prepared
            .iter()
            .map(|(_, dtype, _, _)| format!("{dtype:?}"))
            .collect();
        let digest = checksum(
            &meta_json,
            prepared
                .iter()
                .zip(&dtype_names)
                .map(|((name, _, shape, bytes), dtype)| {
                    (
                        name.as_str(),
                        dtype.as_str(),
                        shape.clone(),
                        bytes.as_slice(),
                    )
                }),
        );
        let mut views = Vec::with_capacity(prepared.len());
        for (name, dtype, shape, bytes) in &prepared {
            let view = TensorView::new(*dtype, shape.clone(), bytes).map_err(|error| {
                CheckpointError::NotACheckpoint {
                    path: path.to_path_buf(),
                    reason: format!("tensor `{name}` cannot be stored ({error})"),
                }
            })?;
            views.push((name.as_str(), view));
        }
        let metadata = std::collections::HashMap::from([
            (META_KEY.to_string(), meta_json),
            (CHECKSUM_KEY.to_string(), digest),
        ]);
        let bytes = safetensors::serialize(views, Some(metadata)).map_err(|error| {
            CheckpointError::NotACheckpoint {
                path: path.to_path_buf(),
                reason: format!("safetensors refused the tensors ({error})"),
            }
        })?;
        let folder = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(folder).map_err(|source| CheckpointError::Io {
            path: folder.to_path_buf(),
            source,
        })?;
        check_space(
            folder,
            bytes.len() as u64,
            fs4::available_space(folder).ok(),
        )?;
        write_atomically(path, &bytes)
    }

    /// Reads and verifies the checkpoint at `path`, placing its tensors on `device`. Tensors
    /// come back in name order.
    pub fn load(path: &Path, device: Device) -> Result<Checkpoint, CheckpointError> {
        let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let (tensors, meta) = open_verified(path, &bytes)?;
        let mut loaded = Vec::new();
        let mut views: Vec<_> = tensors.iter().collect();
        views.sort_by(|left, right| left.0.cmp(right.0));
        for (name, view) in views {
            let kind = kind_of(path, name, view.dtype())?;
            let shape: Vec<i64> = view.shape().iter().map(|&dim| dim as i64).collect();
            let tensor = Tensor::f_from_data_size(view.data(), &shape, kind).map_err(|error| {
                CheckpointError::NotACheckpoint {
                    path: path.to_path_buf(),
                    reason: format!("tensor `{name}` cannot be rebuilt ({error})"),
                }
            })?;
            loaded.push((name.to_string(), tensor.to_device(device)));
        }
        Ok(Checkpoint {
            tensors: loaded,
            meta,
        })
    }

    /// Compares the checkpoint's tensors with the model's `(name, shape)` list and reports
    /// every difference at once. Tensors under `optim/` are the optimiser's and are checked
    /// by [`Optimizer::load_state`](crate::optim::Optimizer::load_state) instead;
    /// every other checkpoint tensor must be expected.
    pub fn check_compatible(
        ckpt: &Checkpoint,
        expected: &[(String, Vec<i64>)],
    ) -> Result<(), CheckpointError> {
        let stored: BTreeMap<&str, Vec<i64>> = ckpt
            .tensors
            .iter()
            .map(|(name, tensor)| (name.as_str(), tensor.size()))
            .collect();
        let wanted: BTreeMap<&str, &Vec<i64>> = expected
            .iter()
            .map(|(name, shape)| (name.as_str(), shape))
            .collect();
        let mut problems = Vec::new();
        for (name, shape) in &wanted {
            match stored.get(name) {
                None => problems.push(TensorMismatch::Missing {
                    name: name.to_string(),
                }),
                Some(found) if found != *shape => problems.push(TensorMismatch::Shape {
                    name: name.to_string(),
                    expected: (*shape).clone(),
                    found: found.clone(),
                }),
                Some(_) => {}
            }
        }
        for name in stored.keys() {
            if !name.starts_with("optim/") && !wanted.contains_key(name) {
                problems.push(TensorMismatch::Unexpected {
                    name: name.to_string(),
                });
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(CheckpointError::Mismatch { problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_larger_than_the_free_space_is_refused_with_the_space_needed() {
        let folder = Path::new("runs/a/checkpoints");
        assert!(check_space(folder, 10, Some(10)).is_ok());
        assert!(check_space(folder, 10, None).is_ok(), "unknown space: try");
        let error = check_space(folder, 3 * 1024 * 1024, Some(1024)).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("needs 3.0 MiB") && text.contains("1.0 KiB are free"),
            "{text}"
        );
    }

    #[test]
    fn fingerprint_ignores_order_but_not_shapes() {
        let a = vec![("w".to_string(), vec![2, 3]), ("b".to_string(), vec![3])];
        let b = vec![("b".to_string(), vec![3]), ("w".to_string(), vec![2, 3])];
        let c = vec![("b".to_string(), vec![3]), ("w".to_string(), vec![3, 2])];
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }
}
