//! Why a command of the `fa-torch` executable could not do its work, and its exit code.

use std::path::PathBuf;

use crate::data::DataError;
use crate::lower::LowerError;
use crate::plot::PlotError;
use crate::train::metrics::MetricsError;
use crate::train::TrainError;

/// A usage or I/O problem (exit 2), or a run that failed (exit 1); the diagnostic code tells
/// them apart, as [`CommandError::exit_code`] reads it.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CommandError {
    #[error("cannot read {}: {source}", .path.display())]
    #[diagnostic(code(fa::io))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", .path.display())]
    #[diagnostic(code(fa::io))]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An unusable `--device`.
    #[error(transparent)]
    #[diagnostic(code(fa::usage))]
    Device(LowerError),
    #[error("no cell named `{wanted}`; the cells are: {}", .cells.join(", "))]
    #[diagnostic(code(fa::usage))]
    NoSuchCell { wanted: String, cells: Vec<String> },
    #[error("this file is a sweep of {} cells; train one with --cell NAME or all with `fa sweep` (cells: {})", .cells.len(), .cells.join(", "))]
    #[diagnostic(code(fa::usage))]
    SweepNeedsCell { cells: Vec<String> },
    #[error("{} holds a run of another configuration of `{cell}`; sweep into another --out, or remove it", .run.display())]
    #[diagnostic(code(fa::usage))]
    SweepConflict { run: PathBuf, cell: String },
    #[error("no view named `{view}`")]
    #[diagnostic(code(fa::usage))]
    NoSuchView { view: String },
    #[error("no run folders given")]
    #[diagnostic(code(fa::usage))]
    NoRuns,
    #[error("{} is not a model: {source}", .path.display())]
    #[diagnostic(code(fa::train))]
    NotAModel {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{} no longer validates ({count} problems)", .path.display())]
    #[diagnostic(code(fa::train))]
    StoredModelInvalid { path: PathBuf, count: usize },
    #[error("a reseeded cell failed to validate")]
    #[diagnostic(code(fa::train))]
    ReseededInvalid,
    #[error("no model")]
    #[diagnostic(code(fa::train))]
    NoModel,
    /// Reading the preview images or drawing the grid of `fa augment`.
    #[error(transparent)]
    #[diagnostic(code(fa::train))]
    Preview(#[from] DataError),
    #[error(transparent)]
    #[diagnostic(code(fa::train))]
    Metrics(MetricsError),
    #[error(transparent)]
    #[diagnostic(code(fa::train))]
    Plot(#[from] PlotError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Train(#[from] TrainError),
}

impl CommandError {
    /// Usage and I/O problems exit with 2; a run that failed exits with 1. The diagnostic
    /// code is the one place that says which: `fa::train` marks a run that failed.
    pub fn exit_code(&self) -> u8 {
        match miette::Diagnostic::code(self) {
            Some(code) if code.to_string() == "fa::train" => 1,
            _ => 2,
        }
    }
}

impl From<MetricsError> for CommandError {
    /// A metrics file that cannot be read is an I/O problem; one that cannot be parsed is not.
    fn from(error: MetricsError) -> CommandError {
        match error {
            MetricsError::Io { path, source } => CommandError::Io { path, source },
            other => CommandError::Metrics(other),
        }
    }
}
