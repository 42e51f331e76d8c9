//! The subcommands of `fa`, one function each, called by the thin `main`.
//!
//! They print what the user asked for and return an [`Outcome`]; problems the user must fix
//! in a `.fa` file are printed as diagnostics (exit 1), usage and I/O problems come back as
//! a [`CommandError`] (exit 2).

use std::path::{Path, PathBuf};

use crate::resolve::{self, Override};
use crate::valid::ValidModel;

#[cfg(feature = "torch")]
mod run;
#[cfg(feature = "torch")]
pub use run::{augment, eval, export, sweep, train};

/// How a command ended when it did not hit a usage or I/O error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The command ran and found problems (diagnostics printed, a check failed).
    Failed,
}

/// Progress output of `fa train`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Log {
    Auto,
    Plain,
    Json,
    Quiet,
}

/// The flags of `fa train`.
#[derive(Clone, Debug)]
pub struct TrainArgs {
    pub file: PathBuf,
    pub overrides: Vec<Override>,
    pub out: Option<PathBuf>,
    pub device: String,
    pub resume: bool,
    pub data_root: Option<PathBuf>,
    pub log: Log,
    pub max_steps: Option<u64>,
    pub no_eval: bool,
    pub cell: Option<String>,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CommandError {
    #[error("cannot read {}: {source}", .path.display())]
    #[diagnostic(code(fa::io))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    #[diagnostic(code(fa::usage))]
    Usage(String),
    #[error("{0}")]
    #[diagnostic(code(fa::train))]
    Failed(String),
    #[error("this fa was built without libtorch (the `torch` feature); `{0}` needs it")]
    #[diagnostic(
        code(fa::no_torch),
        help("build with the default features: ./dev cargo build --release")
    )]
    NoTorch(&'static str),
}

impl CommandError {
    /// Usage and I/O problems exit with 2; a run that failed exits with 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Failed(_) => 1,
            _ => 2,
        }
    }
}

/// Compiles `file`, printing its diagnostics; `None` when it has errors.
fn compile(file: &Path, overrides: &[Override]) -> Result<Option<resolve::Compiled>, CommandError> {
    match resolve::compile_file(file, overrides) {
        Ok(compiled) => {
            if compiled.report.has_diagnostics() {
                eprint!("{}", compiled.report.render_for_terminal());
            }
            Ok(Some(compiled))
        }
        Err(report) => {
            if let Some(error) = report.io_error() {
                return Err(CommandError::Io {
                    path: file.to_path_buf(),
                    source: std::io::Error::new(error.kind(), error.to_string()),
                });
            }
            eprint!("{}", report.render_for_terminal());
            Ok(None)
        }
    }
}

/// `fa check`: every file, every problem; exit 1 on errors (or warnings with `deny`).
pub fn check(
    files: &[PathBuf],
    overrides: &[Override],
    deny_warnings: bool,
) -> Result<Outcome, CommandError> {
    if files.is_empty() {
        return Err(CommandError::Usage("no files given".into()));
    }
    let mut failed = false;
    for file in files {
        if let Some(definitions) = library_definitions(file) {
            eprintln!(
                "{}: a library of {definitions} definitions (no `model`), parsed; the files that `use` it check them in full",
                file.display()
            );
            continue;
        }
        match compile(file, overrides)? {
            Some(compiled) => {
                let warnings = compiled.report.warning_count();
                if deny_warnings && warnings > 0 {
                    failed = true;
                }
                let cells = compiled.cells.len();
                let cells = if cells > 1 {
                    format!(", {cells} cells")
                } else {
                    String::new()
                };
                eprintln!(
                    "{}: ok ({warnings} warning{}{cells})",
                    file.display(),
                    if warnings == 1 { "" } else { "s" }
                );
            }
            None => failed = true,
        }
    }
    Ok(if failed {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}

/// The number of definitions of `file` when it parses and is a library, a file meant to be
/// `use`d (no `model` and no `loss`), such as `models/common.fa`; `None` otherwise, so that
/// everything else, syntax errors included, goes through the full compile.
fn library_definitions(file: &Path) -> Option<usize> {
    use crate::syntax::ast::ItemKind;
    let text = std::fs::read_to_string(file).ok()?;
    let parsed = crate::syntax::parse_file(0, &text).ok()?;
    let is_model = parsed
        .items
        .iter()
        .any(|item| matches!(item.kind, ItemKind::Model(_) | ItemKind::Loss { .. }));
    (!is_model && !parsed.items.is_empty()).then_some(parsed.items.len())
}

fn each_cell(
    file: &Path,
    overrides: &[Override],
    mut print: impl FnMut(&str, &ValidModel),
) -> Result<Outcome, CommandError> {
    let Some(compiled) = compile(file, overrides)? else {
        return Ok(Outcome::Failed);
    };
    for (cell, valid) in &compiled.cells {
        print(&cell.name, valid);
    }
    Ok(Outcome::Success)
}

/// `fa graph`: DOT or text for every cell.
pub fn graph(file: &Path, overrides: &[Override], dot: bool) -> Result<Outcome, CommandError> {
    each_cell(file, overrides, |name, valid| {
        if dot {
            print!("{}", crate::graph::to_dot(valid));
        } else {
            println!("# {name}");
            print!("{}", crate::graph::to_text(valid));
        }
    })
}

/// `fa lower`: the plan of every cell.
pub fn lower(file: &Path, overrides: &[Override]) -> Result<Outcome, CommandError> {
    each_cell(file, overrides, |name, valid| {
        println!("# {name}");
        print!("{}", crate::lower::plan(valid));
    })
}

/// `fa expand`: the cells of a sweep, one per line.
pub fn expand(file: &Path, overrides: &[Override]) -> Result<Outcome, CommandError> {
    each_cell(file, overrides, |name, _| println!("{name}"))
}

/// `fa fmt`: rewrite files canonically (atomically), or with `check` report those that differ.
pub fn fmt(files: &[PathBuf], check: bool) -> Result<Outcome, CommandError> {
    let mut outcome = Outcome::Success;
    for file in files {
        let source = std::fs::read_to_string(file).map_err(|source| CommandError::Io {
            path: file.clone(),
            source,
        })?;
        let formatted = match crate::fmt::format_source(&source) {
            Ok(formatted) => formatted,
            Err(report) => {
                eprint!("{}", report.render_for_terminal());
                outcome = Outcome::Failed;
                continue;
            }
        };
        if formatted == source {
            continue;
        }
        if check {
            eprintln!("{}: not formatted", file.display());
            outcome = Outcome::Failed;
        } else {
            write_atomically(file, formatted.as_bytes()).map_err(|source| CommandError::Io {
                path: file.clone(),
                source,
            })?;
        }
    }
    Ok(outcome)
}

pub use crate::train::checkpoint::write_file_atomically as write_atomically;

/// `fa doctor`: the libtorch in use and the devices it sees.
pub fn doctor() -> Result<Outcome, CommandError> {
    #[cfg(feature = "torch")]
    {
        println!("{}", crate::lower::doctor().trim_end());
        Ok(Outcome::Success)
    }
    #[cfg(not(feature = "torch"))]
    Err(CommandError::NoTorch("doctor"))
}

/// `fa plot`: curves of one or more runs.
pub fn plot(runs: &[PathBuf], out: &Path) -> Result<Outcome, CommandError> {
    if runs.is_empty() {
        return Err(CommandError::Usage("no run folders given".into()));
    }
    let mut loaded = Vec::new();
    for run in runs {
        let path = run.join("metrics.jsonl");
        let records = crate::train::metrics::read_metrics(&path).map_err(|error| match error {
            crate::train::metrics::MetricsError::Io { path, source } => {
                CommandError::Io { path, source }
            }
            other => CommandError::Failed(other.to_string()),
        })?;
        let label = run
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| run.display().to_string());
        loaded.push((label, records));
    }
    let written =
        crate::plot::plot_runs(&loaded, out).map_err(|e| CommandError::Failed(e.to_string()))?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(Outcome::Success)
}

#[cfg(not(feature = "torch"))]
mod no_torch {
    use super::*;
    pub fn train(_: &TrainArgs) -> Result<Outcome, CommandError> {
        Err(CommandError::NoTorch("train"))
    }
    pub fn eval(
        _: &Path,
        _: bool,
        _: bool,
        _: &str,
        _: Option<&Path>,
    ) -> Result<Outcome, CommandError> {
        Err(CommandError::NoTorch("eval"))
    }
    pub fn sweep(
        _: &Path,
        _: &[Override],
        _: u64,
        _: Option<&Path>,
        _: &str,
        _: Option<&Path>,
    ) -> Result<Outcome, CommandError> {
        Err(CommandError::NoTorch("sweep"))
    }
    pub fn export(_: &Path, _: &Path) -> Result<Outcome, CommandError> {
        Err(CommandError::NoTorch("export"))
    }
    pub fn augment(
        _: &Path,
        _: Option<&str>,
        _: &Path,
        _: Option<&Path>,
    ) -> Result<Outcome, CommandError> {
        Err(CommandError::NoTorch("augment"))
    }
}
#[cfg(not(feature = "torch"))]
pub use no_torch::{augment, eval, export, sweep, train};
