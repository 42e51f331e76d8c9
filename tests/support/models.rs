//! Compiling `.fa` files for tests: a model that does not compile fails the test with its
//! rendered diagnostics.

use std::path::{Path, PathBuf};

use fa_lang::driver::{compile_file, compile_source, Compiled};
use fa_lang::resolve::Override;
use fa_lang::valid::ValidModel;

use super::project_path;

/// Parses `key=value` overrides as `--set` does.
#[track_caller]
pub fn overrides(texts: &[&str]) -> Vec<Override> {
    texts
        .iter()
        .map(|text| {
            text.parse()
                .unwrap_or_else(|_| panic!("malformed override `{text}`"))
        })
        .collect()
}

/// The diagnostics of `report` as the CLI renders them, without colour at width 100.
pub fn render(report: &fa_lang::diag::Report) -> String {
    fa_lang::diag::render(report, 100, false)
}

/// Compiles the file at `path` (relative to the working directory, or absolute) with
/// `overrides`; fails the test with the diagnostics when it does not compile.
#[track_caller]
pub fn compile(path: &Path, overrides_text: &[&str]) -> Compiled {
    compile_file(path, &overrides(overrides_text)).unwrap_or_else(|report| {
        panic!("{} does not compile:\n{}", path.display(), render(&report))
    })
}

/// Compiles `text` as if it were the file `name`; fails the test when it does not compile.
#[track_caller]
pub fn compile_text(name: &str, text: &str) -> Compiled {
    compile_source(name, text, &[])
        .unwrap_or_else(|report| panic!("{name} does not compile:\n{}", render(&report)))
}

/// Every cell of the file at `path`, by cell name.
#[track_caller]
pub fn cells(path: &Path, overrides_text: &[&str]) -> Vec<(String, ValidModel)> {
    compile(path, overrides_text)
        .cells
        .into_iter()
        .map(|(cell, valid)| (cell.name, valid))
        .collect()
}

/// The first cell of the project file `relative` (for example `tests/train/tiny.fa`).
#[track_caller]
pub fn model(relative: &str, overrides_text: &[&str]) -> ValidModel {
    let path = project_path(relative);
    cells(&path, overrides_text)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{relative} has no cell"))
        .1
}

/// The path of the test model `name` under `tests/fixtures/models/`.
pub fn fixture_path(name: &str) -> PathBuf {
    project_path("tests/fixtures/models").join(name)
}

/// Every cell of the test model `name` under `tests/fixtures/models/`.
#[track_caller]
pub fn fixture_cells(name: &str) -> Vec<(String, ValidModel)> {
    cells(&fixture_path(name), &[])
}

/// The only cell of the test model `name` under `tests/fixtures/models/`.
#[track_caller]
pub fn fixture(name: &str) -> ValidModel {
    let mut cells = fixture_cells(name);
    assert_eq!(cells.len(), 1, "{name} is a sweep; use fixture_cells");
    cells.remove(0).1
}
