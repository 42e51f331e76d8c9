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
    #[error("cells `{first}` and `{second}` would share the run folder `{folder}`")]
    #[diagnostic(
        code(fa::usage),
        help("run folders keep letters, digits and `-_.=` of a cell's name; rename one of the sweep's labels")
    )]
    SweepFolderCollision {
        first: String,
        second: String,
        folder: String,
    },
    #[error("no view named `{view}`")]
    #[diagnostic(code(fa::usage), help("{known}"))]
    NoSuchView { view: String, known: String },
    #[error("{} does not exist", .path.display())]
    #[diagnostic(code(fa::usage), help("give a run folder written by fa train --out (it holds model.json and checkpoints/), or a checkpoint file in its checkpoints folder"))]
    NoSuchRun { path: PathBuf },
    #[error("{} is not a run folder: it has no model.json", .path.display())]
    #[diagnostic(code(fa::usage), help("give a run folder written by fa train (--out), or a checkpoint file in its checkpoints folder"))]
    NotARunFolder { path: PathBuf },
    #[error("{} is not a run folder: it has no metrics.jsonl", .path.display())]
    #[diagnostic(code(fa::usage), help("fa plot takes the run folders written by fa train (--out) or fa sweep (their seed-N folders)"))]
    NoMetrics { path: PathBuf },
    #[error("{} is not a folder: --out names the folder the charts go into", .path.display())]
    #[diagnostic(code(fa::usage))]
    PlotOutNotAFolder { path: PathBuf },
    #[error("{} is a file outside a run folder, so its model (RUN/model.json) is unknown", .path.display())]
    #[diagnostic(code(fa::usage), help("give the run folder, or a checkpoint inside RUN/checkpoints/ of the run that trained it"))]
    LooseCheckpoint { path: PathBuf },
    #[error("no run folders given")]
    #[diagnostic(code(fa::usage))]
    NoRuns,
    #[error("{}: {source}", .path.display())]
    #[diagnostic(code(fa::train))]
    NotAModel {
        path: PathBuf,
        source: crate::train::stored_model::StoredModelError,
    },
    #[error("{} no longer validates: {problems}", .path.display())]
    #[diagnostic(code(fa::usage), help("the run folder's model.json was changed after training (a `.fa` source with these values is refused); restore it, or train from the source into a new folder"))]
    StoredModelInvalid { path: PathBuf, problems: String },
    #[error("a reseeded cell failed to validate")]
    #[diagnostic(code(fa::train))]
    ReseededInvalid,
    #[error("no model")]
    #[diagnostic(code(fa::train))]
    NoModel,
    /// Starting the ranks of `--nproc`, or one of them failing.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Launch(#[from] crate::dist::LaunchError),
    /// Joining the process group of a data-parallel job.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Dist(#[from] crate::dist::DistError),
    /// Data-parallel training runs on CPUs and CUDA GPUs.
    #[error(
        "data-parallel training runs on the CPU (Gloo) or on CUDA GPUs (NCCL), not on {device}"
    )]
    #[diagnostic(
        code(fa::usage),
        help("train with --device cpu or cuda, or on one process")
    )]
    ParallelDevice { device: String },
    /// A CUDA job needs the NCCL backend, which this build lacks.
    #[error("data-parallel training on CUDA needs c10d's NCCL backend, which this fa was built without: {why}")]
    #[diagnostic(
        code(fa::usage),
        help("rebuild with ./dev (it installs the headers), or pass --dist-backend gloo (slower), or train on one process")
    )]
    NcclMissing { why: String },
    #[error("--dist-backend nccl needs CUDA tensors; the CPU trains with gloo")]
    #[diagnostic(
        code(fa::usage),
        help("pass --device cuda, or --dist-backend gloo (the default on the CPU)")
    )]
    NcclNeedsCuda,
    #[error("unknown --dist-backend `{backend}`; expected auto, gloo or nccl")]
    #[diagnostic(code(fa::usage))]
    UnknownBackend { backend: String },
    #[error("--nproc {nproc} on CUDA needs a GPU per process, and this machine has {count}")]
    #[diagnostic(
        code(fa::usage),
        help("lower --nproc to the number of GPUs (each rank takes the GPU of its local rank)")
    )]
    TooFewGpus { nproc: usize, count: usize },
    /// The local ranks ended together with rank 0's exit code, which is the command's.
    #[error("the ranks stopped; rank 0 exited with code {code} (its message is above)")]
    #[diagnostic(code(fa::train))]
    RanksExited { code: u8 },
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
    #[error("the sweep stopped by {signal}; {running} run(s) in progress kept their checkpoints")]
    #[diagnostic(code(fa::interrupted), help("continue it with the same fa sweep command: finished runs are skipped, stopped ones resume"))]
    SweepInterrupted {
        signal: &'static str,
        number: i32,
        running: usize,
    },
    #[error("{failed} of {total} sweep run(s) failed:\n{details}")]
    #[diagnostic(code(fa::train), help("each run's output is in its log; run the sweep again to retry them (finished runs are skipped)"))]
    SweepRunsFailed {
        failed: usize,
        total: usize,
        details: String,
    },
    #[error("--devices: `{device}` is not a device; expected cpu, cuda, cuda:N or N")]
    #[diagnostic(code(fa::usage))]
    BadDevices { device: String },
    #[error("cannot start a sweep run: {source}")]
    #[diagnostic(code(fa::usage))]
    SweepSpawn { source: std::io::Error },
    #[error("stopped by {signal} after step {step}; the checkpoint {} holds the progress", .checkpoint.display())]
    #[diagnostic(code(fa::interrupted))]
    Interrupted {
        signal: &'static str,
        /// The signal's number; the command exits with 128 plus it (130 for SIGINT).
        number: i32,
        step: u64,
        checkpoint: PathBuf,
        /// How to continue: the command line that was run, with `--resume`.
        #[help]
        resume: String,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Train(#[from] TrainError),
}

impl CommandError {
    /// Usage and I/O problems exit with 2; a run that failed exits with 1. The diagnostic
    /// code is the one place that says which: `fa::train` marks a run that failed.
    pub fn exit_code(&self) -> u8 {
        if let CommandError::Interrupted { number, .. }
        | CommandError::SweepInterrupted { number, .. } = self
        {
            return (128 + number).clamp(1, 255) as u8;
        }
        if let CommandError::RanksExited { code } = self {
            return *code;
        }
        match miette::Diagnostic::code(self) {
            Some(code) if code.to_string() == "fa::train" => 1,
            _ => 2,
        }
    }
}

/// Turns a run stopped by a signal into the command's error, with the command line that
/// continues it; `resume` is that command line. Other errors pass through.
pub(crate) fn with_resume_command(
    error: TrainError,
    resume: impl FnOnce() -> String,
) -> CommandError {
    match error {
        TrainError::Interrupted {
            signal,
            number,
            step,
            checkpoint,
        } => CommandError::Interrupted {
            signal,
            number,
            step,
            checkpoint,
            resume: format!("continue it with: {}", resume()),
        },
        other => CommandError::Train(other),
    }
}

/// The command line of this process as `fa` would be typed, with `--overwrite` dropped and
/// `--resume` added when `resume_flag` (a sweep resumes by itself). Arguments that a shell
/// would split or expand are single-quoted.
pub(crate) fn resume_command_line(resume_flag: bool) -> String {
    let mut words = vec!["fa".to_string()];
    let mut has_resume = false;
    for argument in std::env::args_os().skip(1) {
        let argument = argument.to_string_lossy().into_owned();
        if argument == "--overwrite" {
            continue;
        }
        has_resume |= argument == "--resume";
        words.push(shell_quote(&argument));
    }
    if resume_flag && !has_resume {
        words.push("--resume".to_string());
    }
    words.join(" ")
}

fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
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
