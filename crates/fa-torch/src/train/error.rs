//! Why a run could not be trained, resumed, evaluated or exported.

use std::path::PathBuf;

use crate::data::DataError;
use crate::lower::LowerError;
use crate::train::checkpoint::CheckpointError;
use crate::train::metrics::MetricsError;
use crate::train::precision::PrecisionError;

/// A training, evaluation or export problem. The diagnostic code says who must act: a
/// `fa::usage` problem is the data, the run folder or the files given (exit 2 at the command
/// line); a `fa::train` problem is a run that failed (exit 1).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum TrainError {
    #[error(transparent)]
    #[diagnostic(code(fa::usage))]
    Data(#[from] DataError),
    #[error(transparent)]
    #[diagnostic(code(fa::train))]
    Checkpoint(#[from] CheckpointError),
    #[error("lowering failed: {0}")]
    #[diagnostic(code(fa::train))]
    Lower(#[from] LowerError),
    #[error("lowering failed: the stored model no longer validates ({count} problems)")]
    #[diagnostic(code(fa::train))]
    StoredModelInvalid { count: usize },
    #[error("{what}: {source}")]
    #[diagnostic(code(fa::usage))]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("the {what} became {value} at step {step} (epoch {epoch}); the parameters were not updated with it; {kept}")]
    #[diagnostic(code(fa::train))]
    NonFiniteLoss {
        /// `loss` or `gradient norm`.
        what: &'static str,
        value: f64,
        step: u64,
        /// Counted from 1, as the progress lines count.
        epoch: u64,
        /// Which checkpoint is kept, or that none was saved yet.
        kept: String,
    },
    #[error("the dataset has {images} training images, fewer than one effective batch of {batch}")]
    #[diagnostic(code(fa::train))]
    TooFewImages { images: usize, batch: usize },
    #[error("evaluation needs labels but split `{split}` has none")]
    #[diagnostic(code(fa::usage))]
    NoLabels { split: String },
    #[error("--resume given but {} holds no checkpoint", .run.display())]
    #[diagnostic(
        code(fa::usage),
        help("a run stopped before its first checkpoint cannot be resumed; start it afresh with --overwrite")
    )]
    NothingToResume { run: PathBuf },
    #[error("{} holds no checkpoint", .run.display())]
    #[diagnostic(code(fa::usage))]
    NoCheckpoint { run: PathBuf },
    #[error("{} already holds a run ({}); continue it with --resume, replace it with --overwrite, or train into another --out", .run.display(), .artefacts.join(", "))]
    #[diagnostic(code(fa::usage))]
    RunExists {
        run: PathBuf,
        /// The run artefacts found there (`metrics.jsonl`, `checkpoints`, …).
        artefacts: Vec<&'static str>,
    },
    #[error("{} is in use by another trainer ({}); wait for it to finish or train into another --out", .run.display(), .holder.map_or("process id unknown".to_string(), |pid| format!("process {pid}")))]
    #[diagnostic(code(fa::usage))]
    RunBusy { run: PathBuf, holder: Option<u32> },
    #[error("{} is a file, not a run folder", .run.display())]
    #[diagnostic(
        code(fa::usage),
        help(
            "--out names the folder a run writes into; give a folder (it is created when missing)"
        )
    )]
    RunIsAFile { run: PathBuf },
    #[error("--resume and --overwrite contradict each other; give one of them")]
    #[diagnostic(code(fa::usage))]
    ResumeAndOverwrite,
    #[error("stopped by {signal} after step {step}; the checkpoint {} holds the progress", .checkpoint.display())]
    #[diagnostic(code(fa::interrupted))]
    Interrupted {
        /// `SIGINT` or `SIGTERM`.
        signal: &'static str,
        /// The signal's number; the command exits with 128 plus it.
        number: i32,
        step: u64,
        checkpoint: PathBuf,
    },
    #[error("the {test} split's classes ({test_classes}) differ from the {train} split's ({train_classes}), so their labels cannot be compared")]
    #[diagnostic(code(fa::usage))]
    ClassMismatch {
        train: String,
        test: String,
        train_classes: String,
        test_classes: String,
    },
    #[error("{} belongs to another model", .path.display())]
    #[diagnostic(
        code(fa::usage),
        help(
            "export a checkpoint of this run, or give the run folder the checkpoint was trained in"
        )
    )]
    ForeignCheckpoint {
        path: PathBuf,
        source: CheckpointError,
    },
    #[error("refusing to write the export {} into the run's checkpoint folder {}, where it could replace a checkpoint", .out.display(), .checkpoints.display())]
    #[diagnostic(code(fa::usage), help("give --backbone a path outside the checkpoints folder, for example RUN/backbone.safetensors"))]
    ExportIntoCheckpoints { out: PathBuf, checkpoints: PathBuf },
    #[error("cannot write the export {}: the folder {} does not exist", .out.display(), .folder.display())]
    #[diagnostic(
        code(fa::usage),
        help("create the folder first, or give --backbone a path in an existing folder")
    )]
    ExportFolderMissing { out: PathBuf, folder: PathBuf },
    #[error("cannot write the export {}: it is a folder; --backbone names the file to write", .out.display())]
    #[diagnostic(code(fa::usage))]
    ExportOntoFolder { out: PathBuf },
    #[error("no tensor of the backbone `{backbone}` in {}", .path.display())]
    #[diagnostic(code(fa::train))]
    EmptyExport { backbone: String, path: PathBuf },
    #[error(transparent)]
    #[diagnostic(code(fa::train))]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    #[diagnostic(code(fa::train))]
    Precision(#[from] PrecisionError),
    #[error("torch error: {0}")]
    #[diagnostic(code(fa::train))]
    Torch(#[from] tch::TchError),
    #[error("rank {rank}: {error}")]
    #[diagnostic(
        code(fa::train),
        help("when another rank stopped or lost its connection, its own message says why")
    )]
    Distributed {
        rank: usize,
        error: crate::dist::DistError,
    },
    #[error("data.batch {batch} does not split into {world} equal slices, one per rank")]
    #[diagnostic(
        code(fa::usage),
        help("data.batch is the global batch; choose a multiple of the number of processes")
    )]
    BatchNotDivisible { batch: usize, world: usize },
    #[error("rank {rank} stopped: rank 0 could not start the run (its message says why)")]
    #[diagnostic(code(fa::train))]
    LeaderFailed { rank: usize },
}

/// Wraps an I/O error with what was being done.
pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TrainError {
    let what = what.into();
    move |source| TrainError::Io { what, source }
}
