//! Why a run could not be trained, resumed, evaluated or exported.

use std::path::PathBuf;

use crate::data::DataError;
use crate::lower::LowerError;
use crate::train::checkpoint::CheckpointError;
use crate::train::metrics::MetricsError;
use crate::train::precision::{BadExtractionPrecision, PrecisionError};

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
    #[error("the model needs about {needed} for a training step and its data, but {available} of memory is available")]
    #[diagnostic(code(fa::usage), help("`fa check` prints the estimate by part: lower `data.batch` (raise `optim.accumulate` to keep the effective batch), the bank or the widths, or set FA_SKIP_MEMORY_CHECK=1 to try anyway"))]
    NotEnoughMemory { needed: String, available: String },
    #[error("the run's model.json no longer validates: {problems}")]
    #[diagnostic(code(fa::usage), help("the run folder's model.json was changed after training (a `.fa` source with these values is refused); restore it, or train from the source into a new folder"))]
    StoredModelInvalid { problems: String },
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
    #[error("{} holds files that are not a run's ({examples}, …); fa writes a run into a folder of its own", .run.display())]
    #[diagnostic(code(fa::usage), help("give --out a new folder, an empty one, or an earlier run's folder (with --resume or --overwrite)"))]
    RunFolderNotEmpty { run: PathBuf, examples: String },
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
    #[error("cannot write the export {}: it exists and is not a regular file (a device, a pipe or a link), which the export would replace", .out.display())]
    #[diagnostic(
        code(fa::usage),
        help("give --backbone the path of a new file, or of a regular file to replace")
    )]
    ExportOntoSpecial { out: PathBuf },
    #[error("cannot export `{backbone}` ({kind}) as a {format} ResNet: {reason}")]
    #[diagnostic(
        code(fa::usage),
        help("export with --format state-dict for code that builds this backbone itself")
    )]
    ExportIncompatible {
        backbone: String,
        kind: String,
        format: &'static str,
        reason: String,
    },
    #[error("the model has no EMA target of its encoder `{backbone}`, so there is no target encoder to export")]
    #[diagnostic(
        code(fa::usage),
        help("export the online encoder (--encoder online, the default); a target exists in models with `target NAME = ema(chain: [{backbone}, ...])`")
    )]
    ExportNoTarget { backbone: String },
    #[error("no tensor of the backbone `{backbone}` in {}", .path.display())]
    #[diagnostic(code(fa::train))]
    EmptyExport { backbone: String, path: PathBuf },
    #[error(transparent)]
    #[diagnostic(code(fa::train))]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    #[diagnostic(code(fa::train))]
    Events(#[from] crate::train::tensorboard::EventsError),
    #[error(transparent)]
    #[diagnostic(code(fa::train))]
    Precision(#[from] PrecisionError),
    #[error(transparent)]
    #[diagnostic(code(fa::usage))]
    EvalPrecision(#[from] BadExtractionPrecision),
    #[error("torch error: {0}")]
    #[diagnostic(code(fa::train))]
    Torch(#[from] tch::TchError),
    #[error("rank {rank}: {error}{stalled}")]
    #[diagnostic(
        code(fa::train),
        help("when another rank stopped or lost its connection, its own message says why")
    )]
    Distributed {
        rank: usize,
        error: crate::dist::DistError,
        /// The ranks that never reached the collective that timed out, as a clause
        /// (`; rank 1 never reached …`), or empty.
        stalled: String,
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
