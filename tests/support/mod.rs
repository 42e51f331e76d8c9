//! Helpers shared by the integration tests: paths inside the project, the datasets a test
//! needs, compiling models, comparing tensors and running processes. Each lives here once.
//!
//! A test file brings them in with `mod support;`. Each test binary compiles this module on
//! its own and uses only part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod data;
pub mod models;
pub mod process;
pub mod tensors;

use std::path::{Path, PathBuf};

/// The project root (the root package's folder), where `models/`, `tests/` and `docs/` are.
pub fn project_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `relative` under the project root.
pub fn project_path(relative: impl AsRef<Path>) -> PathBuf {
    project_root().join(relative)
}

/// `path` relative to the project root, or `path` itself when it lies elsewhere.
pub fn relative_to_project(path: &Path) -> &Path {
    path.strip_prefix(project_root()).unwrap_or(path)
}

/// Makes the project root the working directory, so that relative paths (and with them file
/// names in diagnostics and snapshots) do not depend on where the project is checked out.
///
/// Cargo already starts test binaries there; this keeps a binary run by hand from elsewhere
/// working. Every caller sets the same directory, so tests running in parallel agree.
pub fn enter_project_root() {
    std::env::set_current_dir(project_root()).expect("the project root exists");
}

/// Every `.fa` file under `folder`, recursively, sorted.
pub fn fa_files(folder: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut folders = vec![folder.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder)
            .unwrap_or_else(|error| panic!("{} is not readable: {error}", folder.display()));
        for entry in entries {
            let path = entry.expect("a readable folder entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|extension| extension == "fa") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Every `.fa` file under `models/`, recursively, sorted, as absolute paths.
pub fn model_files() -> Vec<PathBuf> {
    fa_files(&project_path("models"))
}

/// Whether `path` is the shared library of definitions that `models/` files `use`.
pub fn is_library(path: &Path) -> bool {
    path.file_name().is_some_and(|name| name == "common.fa")
}
