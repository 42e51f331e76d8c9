//! Where the tests find real datasets; a dataset that is not there fails the test that needs
//! it with a message naming the missing file and how to install it.

use std::path::{Path, PathBuf};

use super::project_root;

/// The variable naming the data root, as for `fa train --data-root`.
pub const DATA_ROOT_ENV: &str = "FA_DATA_ROOT";

/// The data root when `FA_DATA_ROOT` is unset: where Debian's `dataset-fashion-mnist`
/// installs. `./dev` exports `FA_DATA_ROOT` with this default before running the tests.
pub const DEBIAN_DATA_ROOT: &str = "/usr/share/datasets";

/// The four gzipped IDX files of Fashion-MNIST, relative to the data root.
const FASHION_MNIST_FILES: [&str; 4] = [
    "fashion-mnist/train-images-idx3-ubyte.gz",
    "fashion-mnist/train-labels-idx1-ubyte.gz",
    "fashion-mnist/t10k-images-idx3-ubyte.gz",
    "fashion-mnist/t10k-labels-idx1-ubyte.gz",
];

/// The data root: `$FA_DATA_ROOT`, else [`DEBIAN_DATA_ROOT`].
pub fn data_root() -> PathBuf {
    match std::env::var_os(DATA_ROOT_ENV) {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => PathBuf::from(DEBIAN_DATA_ROOT),
    }
}

/// The data root holding Fashion-MNIST; fails the calling test when any file is missing.
#[track_caller]
pub fn fashion_root() -> PathBuf {
    let root = data_root();
    let missing: Vec<String> = FASHION_MNIST_FILES
        .iter()
        .map(|file| root.join(file))
        .filter(|path| !path.is_file())
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "Fashion-MNIST is missing: {} not found under the data root ${DATA_ROOT_ENV} \
         (default {DEBIAN_DATA_ROOT}); `./dev test` installs it, or run \
         `apt-get install dataset-fashion-mnist`",
        missing.join(", ")
    );
    root
}

/// The shared datasets folder beside the project (`../shared/datasets`), which holds the
/// CIFAR-10 archives the project may not redistribute.
pub fn shared_datasets() -> PathBuf {
    project_root().join("../shared/datasets")
}

/// A data root holding CIFAR-10 as `cifar10/{train,test}.tar.gz`: `$FA_DATA_ROOT` when it
/// has them, else `../shared/datasets`; fails the calling test when neither does.
#[track_caller]
pub fn cifar10_root() -> PathBuf {
    let has_cifar10 = |root: &Path| {
        ["cifar10/train.tar.gz", "cifar10/test.tar.gz"]
            .iter()
            .all(|file| root.join(file).is_file())
    };
    let candidates = [data_root(), shared_datasets()];
    candidates
        .iter()
        .find(|root| has_cifar10(root))
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "CIFAR-10 is missing: cifar10/train.tar.gz and cifar10/test.tar.gz are in \
                 neither {} nor {} (see ../shared/datasets/README.md; `./dev` does not \
                 install CIFAR-10)",
                candidates[0].display(),
                candidates[1].display()
            )
        })
}

/// A dataset of `format` at `path` under the data root, with `train` and `test` splits, read
/// at `image_size` with `channels`, in batches of 8 and without a limit.
pub fn dataset_config(
    format: fa_lang::ir::DatasetFormat,
    path: &str,
    image_size: usize,
    channels: usize,
) -> fa_lang::ir::DataConfig {
    fa_lang::ir::DataConfig {
        format,
        path: path.to_string(),
        train_split: "train".to_string(),
        test_split: "test".to_string(),
        image_size,
        channels,
        batch_size: 8,
        limit: None,
        span: fa_lang::ir::Span::default(),
    }
}
