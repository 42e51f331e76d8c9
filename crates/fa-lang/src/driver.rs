//! The front end's entry point: a file resolved into sweep cells, each validated, with every
//! diagnostic; and the same as the commands use it (diagnostics printed, an outcome).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::diag::{Diagnostic, Report};
use crate::resolve::{self, Cell, Override, Resolved};
use crate::syntax::SourceMap;
use crate::valid::{self, ValidModel};

/// A compiled file: every cell validated, and the warnings found on the way.
#[derive(Debug)]
pub struct Compiled {
    pub cells: Vec<(Cell, ValidModel)>,
    /// The sources and every warning (no errors: those make `compile_file` fail).
    pub report: Report,
}

impl Compiled {
    pub fn sources(&self) -> &SourceMap {
        &self.report.sources
    }

    pub fn warnings(&self) -> &[Diagnostic] {
        &self.report.diagnostics
    }
}

/// Reads `path` (and the files it `use`s), applies overrides, expands sweeps, validates
/// every cell. A file that cannot be read gives a report whose `io_error` is set.
pub fn compile_file(path: &Path, overrides: &[Override]) -> Result<Compiled, Report> {
    let bytes = fa_base::fsio::read_source(path).map_err(Report::io)?;
    compile_bytes(&path.display().to_string(), Some(path), bytes, overrides)
}

/// Compiles source text held in memory; `name` is shown in diagnostics and `use` paths are
/// relative to its folder.
pub fn compile_source(name: &str, text: &str, overrides: &[Override]) -> Result<Compiled, Report> {
    compile_bytes(
        name,
        Some(Path::new(name)),
        text.as_bytes().to_vec(),
        overrides,
    )
}

/// Compiles the text of the file at `path` as an editor holds it, reading the files it
/// `use`s from `overlay` (unsaved buffers by canonical path) before the disk.
pub fn compile_with_overlay(
    path: &Path,
    text: &str,
    overlay: BTreeMap<PathBuf, String>,
) -> Result<Compiled, Report> {
    compile_bytes_with(
        &path.display().to_string(),
        Some(path),
        text.as_bytes().to_vec(),
        &[],
        overlay,
    )
}

fn compile_bytes(
    name: &str,
    path: Option<&Path>,
    bytes: Vec<u8>,
    overrides: &[Override],
) -> Result<Compiled, Report> {
    compile_bytes_with(name, path, bytes, overrides, BTreeMap::new())
}

fn compile_bytes_with(
    name: &str,
    path: Option<&Path>,
    bytes: Vec<u8>,
    overrides: &[Override],
    overlay: BTreeMap<PathBuf, String>,
) -> Result<Compiled, Report> {
    let Resolved {
        sources,
        diagnostics: mut diags,
        cells,
    } = resolve::resolve_with_overlay(name, path, bytes, overrides, overlay);
    if diags.iter().any(Diagnostic::is_error) {
        return Err(Report::new(sources, diags));
    }
    let mut validated = Vec::new();
    for cell in cells {
        match valid::validate(cell.model.clone()) {
            Ok(model) => {
                diags.extend(model.warnings().iter().cloned());
                validated.push((cell, model));
            }
            Err(problems) => diags.extend(problems),
        }
    }
    if diags.iter().any(Diagnostic::is_error) {
        return Err(Report::new(sources, diags));
    }
    Ok(Compiled {
        cells: validated,
        report: Report::new(sources, diags),
    })
}

/// How a command ended when it did not hit a usage or I/O error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The command ran and found problems (diagnostics printed, a check failed).
    Failed,
}

impl Outcome {
    /// `Failed` when `failed`, else `Success`.
    pub fn failed_if(failed: bool) -> Outcome {
        if failed {
            Outcome::Failed
        } else {
            Outcome::Success
        }
    }
}

/// Compiles `file` and prints its diagnostics to standard error; `Ok(None)` when it has
/// errors, `Err` when the file itself cannot be read.
pub fn compile_reporting(
    file: &Path,
    overrides: &[Override],
) -> Result<Option<Compiled>, std::io::Error> {
    match compile_file(file, overrides) {
        Ok(compiled) => {
            if compiled.report.has_diagnostics() {
                eprint!("{}", compiled.report.render_for_terminal());
            }
            Ok(Some(compiled))
        }
        Err(report) => {
            if let Some(error) = report.io_error() {
                return Err(std::io::Error::new(error.kind(), error.to_string()));
            }
            eprint!("{}", report.render_for_terminal());
            Ok(None)
        }
    }
}
