//! Resolution: reads a file and the files it `use`s, applies `--set` overrides, expands
//! sweeps, and builds every sweep cell's `ir::Model`.
//!
//! ```text
//! loading (files, `use`) ─▶ program (definitions) ─▶ overrides (`--set`) ─▶ sweeps (cells)
//!     ─▶ build (graph, modules, pipelines, FA; configuration blocks read by `config`)
//! ```
//!
//! Validation is not part of resolution: [`crate::driver::compile_file`] validates the cells.

mod build;
mod config;
mod loading;
mod overrides;
pub(crate) mod params;
mod program;
mod sweeps;
pub mod vocabulary;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::diag::Diagnostic;
use crate::ir;
use crate::syntax::SourceMap;

pub use overrides::{Override, OverrideError};

/// One sweep cell: a complete model. A file without sweeps has exactly one cell.
#[derive(Clone, Debug)]
pub struct Cell {
    /// `model` or `model[axis=label,...]`.
    pub name: String,
    /// `(axis, label)` per sweep axis, in declaration order.
    pub labels: Vec<(String, String)>,
    pub model: ir::Model,
}

/// What resolution produced: the sources read, every problem found, and the cells built
/// (none when some problem is an error).
#[derive(Debug)]
pub struct Resolved {
    pub sources: SourceMap,
    pub diagnostics: Vec<Diagnostic>,
    pub cells: Vec<Cell>,
}

/// Resolves the source `bytes` of the file shown as `name` (read from `path` when it is a
/// file, so that its `use`s are found relative to its folder).
pub fn resolve(
    name: &str,
    path: Option<&Path>,
    bytes: Vec<u8>,
    overrides: &[Override],
) -> Resolved {
    resolve_with_overlay(name, path, bytes, overrides, BTreeMap::new())
}

/// [`resolve`], reading a `use`d file from `overlay` (by canonical path) instead of the disk
/// when it is there: the language server checks against the editor's unsaved buffers.
pub fn resolve_with_overlay(
    name: &str,
    path: Option<&Path>,
    bytes: Vec<u8>,
    overrides: &[Override],
    overlay: BTreeMap<PathBuf, String>,
) -> Resolved {
    let mut loader = loading::Loader::default();
    loader.overlay = overlay;
    let main = loader.load_root(name, path, bytes);
    let mut program = program::Program::default();
    let mut diags = std::mem::take(&mut loader.diags);
    let main_file = main.unwrap_or(0);
    program.collect(&loader.items, main_file, &mut diags);
    let default_name = Path::new(name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let mut sources = loader.sources;
    let overrides = program.apply_overrides(overrides, &mut sources, &mut diags);
    let mut cells = Vec::new();
    if !diags.iter().any(Diagnostic::is_error) {
        for (labels, program) in program.expand(&overrides, &sources, main_file, &mut diags) {
            let base = program
                .model_name
                .as_ref()
                .map(|n| n.text.clone())
                .unwrap_or_else(|| default_name.clone());
            let name = cell_name(&base, &labels);
            if let Some(model) = build::build(&program, &name, main_file, &sources, &mut diags) {
                cells.push(Cell {
                    name,
                    labels,
                    model,
                });
            }
        }
    }
    if diags.iter().any(Diagnostic::is_error) {
        cells.clear();
    }
    Resolved {
        sources,
        diagnostics: diags,
        cells,
    }
}

/// `base`, or `base[axis=label,...]` for a cell of a sweep.
fn cell_name(base: &str, labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return base.to_string();
    }
    let labels: Vec<String> = labels
        .iter()
        .map(|(axis, label)| format!("{axis}={label}"))
        .collect();
    format!("{base}[{}]", labels.join(","))
}
