//! The cache of the baseline accuracies (the encoder at random initialisation and raw pixels),
//! which depend on the model, the seed and the data but not on training, so that a second
//! run or `fa eval` of the same configuration skips extracting every image again.
//!
//! An entry is a small JSON file `baselines/<key>.json` in the cache folder: `$FA_CACHE_DIR`,
//! else `$XDG_CACHE_HOME/fa`, else `~/.cache/fa`; `FA_CACHE_DIR=off` turns the cache off.
//! The key is a SHA-256 over everything the baselines depend on: the model with its spans,
//! name, optimiser, training schedule and linear-probe settings left out (the seed and the
//! kNN settings stay in), the bytes of the training and test images and labels, the device
//! kind, the run format (the random streams) and [`CACHE_VERSION`]. A cache that cannot be
//! read or written is skipped with a note on standard error: it only saves time.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::{Device, Tensor};

use super::Accuracy;
use crate::train::checkpoint::FORMAT_VERSION;
use crate::train::device_data::DeviceData;
use crate::train::precision::Extraction;
use fa_lang::ir::Model;

/// Raised when what an entry means changes (the protocol, the key's contents).
const CACHE_VERSION: u32 = 1;

/// The baseline accuracies of one (model, seed, data).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Baselines {
    pub random_init_knn: Accuracy,
    pub pixels_knn: Accuracy,
}

/// The cache folder from the environment; `None` when turned off or no home is known.
pub(crate) fn cache_folder() -> Option<PathBuf> {
    match std::env::var_os("FA_CACHE_DIR") {
        Some(value) if value == "off" || value.is_empty() => None,
        Some(value) => Some(PathBuf::from(value)),
        None => std::env::var_os("XDG_CACHE_HOME")
            .filter(|value| !value.is_empty())
            .map(|value| PathBuf::from(value).join("fa"))
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/fa"))),
    }
}

/// The entry's key (64 hexadecimal digits) for `model` evaluated on `data` and `test` with
/// features extracted in `precision`.
pub(crate) fn key(
    model: &Model,
    data: &DeviceData,
    test: &DeviceData,
    device: Device,
    precision: Extraction,
) -> String {
    let mut identity = serde_json::to_value(model).expect("models serialise");
    crate::train::stored_model::strip_spans(&mut identity);
    if let serde_json::Value::Object(map) = &mut identity {
        map.remove("name");
        map.remove("optim");
        let seed = model.train.seed;
        map.insert("train".into(), serde_json::json!({ "seed": seed }));
        let knn = model.eval.knn.as_ref().map(|knn| (knn.k, knn.temperature));
        map.insert("eval".into(), serde_json::json!({ "knn": knn }));
    }
    let mut hasher = Sha256::new();
    hasher.update(format!(
        "fa baselines {CACHE_VERSION} run format {FORMAT_VERSION}\n"
    ));
    hasher.update(if device.is_cuda() { "cuda\n" } else { "cpu\n" });
    hasher.update(format!("extraction {}\n", precision.name()));
    hasher.update(identity.to_string());
    for split in [data, test] {
        hash_tensor(&mut hasher, &split.images);
        match &split.labels {
            Some(labels) => hash_tensor(&mut hasher, labels),
            None => hasher.update("no labels"),
        }
    }
    hex::encode(hasher.finalize())
}

/// Feeds the tensor's shape and its bytes (row-major, on the host) to `hasher`.
fn hash_tensor(hasher: &mut Sha256, tensor: &Tensor) {
    hasher.update(format!("{:?} {:?}\n", tensor.size(), tensor.kind()));
    let host = tensor.to_device(Device::Cpu).contiguous();
    let bytes = host.numel() * host.kind().elt_size_in_bytes();
    // SAFETY: a contiguous CPU tensor's data pointer addresses `bytes` initialised bytes, and
    // `host` outlives the slice.
    let slice = unsafe { std::slice::from_raw_parts(host.data_ptr() as *const u8, bytes) };
    hasher.update(slice);
}

fn entry_path(folder: &Path, key: &str) -> PathBuf {
    folder.join("baselines").join(format!("{key}.json"))
}

/// The stored baselines of `key`, if any (an unreadable entry counts as none).
pub(crate) fn load(folder: &Path, key: &str) -> Option<Baselines> {
    let path = entry_path(folder, key);
    let text = std::fs::read_to_string(&path).ok()?;
    match serde_json::from_str(&text) {
        Ok(baselines) => Some(baselines),
        Err(error) => {
            eprintln!(
                "note: ignoring the cached baselines {}: {error}",
                path.display()
            );
            None
        }
    }
}

/// Stores `baselines` under `key`; a failure is reported on standard error and otherwise
/// ignored.
pub(crate) fn store(folder: &Path, key: &str, baselines: &Baselines) {
    let path = entry_path(folder, key);
    let text = serde_json::to_string_pretty(baselines).expect("accuracies serialise");
    if let Err(error) = fa_base::fsio::write_file_atomically(&path, text.as_bytes()) {
        eprintln!(
            "note: could not cache the baselines in {}: {error}",
            path.display()
        );
    }
}
