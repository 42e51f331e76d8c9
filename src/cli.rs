//! The flags of every subcommand (clap), shared by the `fa` and `fa-torch` executables so
//! that `fa --help` lists every command and both parse a command line the same way.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use fa_lang::resolve::Override;

#[derive(Parser, Debug)]
#[command(
    name = "fa",
    version,
    about = "Compile and train self-supervised contrastive models with feature augmentation"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Text,
}

/// Progress output of `fa train`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    Plain,
    Json,
    Quiet,
}

/// The layout of `fa export`'s file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Torchvision,
    Timm,
    StateDict,
}

/// Which copy of the encoder `fa export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportEncoder {
    Online,
    Target,
}

/// Which evaluation protocols `fa eval` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    Knn,
    Linear,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate .fa files and report every problem.
    Check {
        files: Vec<PathBuf>,
        /// Fail on warnings too.
        #[arg(long)]
        deny_warnings: bool,
        /// Override a value: `--set optim.lr=0.3`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<Override>,
        /// Fail when a model's estimated training memory exceeds this (`16GiB`, `80G`).
        #[arg(long, value_name = "SIZE", value_parser = fa_lang::plan::parse_size)]
        memory: Option<usize>,
    },
    /// Print the dataflow graph of a model (every sweep cell).
    Graph {
        file: PathBuf,
        #[arg(long, value_enum, default_value = "dot")]
        format: GraphFormat,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<Override>,
    },
    /// Format .fa files canonically.
    Fmt {
        files: Vec<PathBuf>,
        /// Only check; exit 1 when a file would change.
        #[arg(long)]
        check: bool,
    },
    /// List the cells of a sweep.
    Expand {
        file: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<Override>,
    },
    /// Print the lowering plan: operations, shapes and the parameter table.
    Lower {
        file: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<Override>,
    },
    /// Report the libtorch in use and the devices it sees.
    Doctor,
    /// Compile and train a model, then evaluate it.
    Train {
        file: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<Override>,
        /// Run folder (default: runs/<model name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// auto, cpu, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: String,
        /// Continue from the run folder's latest checkpoint.
        #[arg(long)]
        resume: bool,
        /// Replace the run already in the run folder (its metrics, model, summary and
        /// checkpoints are removed first).
        #[arg(long, conflicts_with = "resume")]
        overwrite: bool,
        /// Where dataset paths are resolved (default: $FA_DATA_ROOT, else ./data).
        #[arg(long)]
        data_root: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "auto")]
        log_format: LogFormat,
        /// Stop after this many optimiser steps (the schedule still spans the file's epochs).
        #[arg(long)]
        max_steps: Option<u64>,
        /// Skip the final evaluation.
        #[arg(long)]
        no_eval: bool,
        /// Train only the sweep cell with this name.
        #[arg(long)]
        cell: Option<String>,
        /// Do not write TensorBoard's events file (events.out.tfevents.fa in the run folder).
        #[arg(long)]
        no_tensorboard: bool,
        /// f32 or bf16; the same as `--set train.precision=...` (bf16 autocasts the
        /// forward pass on CUDA; the CPU trains in float32).
        #[arg(long)]
        precision: Option<String>,
        /// Train data-parallel on N local processes (Gloo); data.batch stays the global
        /// batch. Jobs started by torchrun or srun are joined without it
        /// (docs/distributed.md).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        nproc: Option<u64>,
        /// With several processes, normalise batch norm with the global batch's statistics
        /// (as `train { sync_batch_norm: true }`).
        #[arg(long)]
        sync_batch_norm: bool,
        /// Seconds a process waits for the others (rendezvous and each collective) before
        /// the job fails.
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        dist_timeout: u64,
        /// The collectives' backend: auto (NCCL on CUDA, Gloo on the CPU), gloo or nccl.
        #[arg(long, value_name = "BACKEND", default_value = "auto", value_parser = ["auto", "gloo", "nccl"])]
        dist_backend: String,
    },
    /// Evaluate a run's latest checkpoint (or a checkpoint file).
    Eval {
        run: PathBuf,
        /// Run kNN (alone, unless --linear is given too).
        #[arg(long)]
        knn: bool,
        /// Run the linear probe (alone, unless --knn is given too).
        #[arg(long)]
        linear: bool,
        #[arg(long, default_value = "auto")]
        device: String,
        #[arg(long)]
        data_root: Option<PathBuf>,
    },
    /// Train and evaluate every cell of a sweep; write a table like the paper's.
    Sweep {
        file: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<Override>,
        /// Seeds per cell (at least 1).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        seeds: u64,
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value = "auto")]
        device: String,
        #[arg(long)]
        data_root: Option<PathBuf>,
        /// Train the unfinished runs in parallel, one per device at a time, each in a child
        /// process: e.g. `0,1,2,3` (CUDA devices) or `cpu,cpu` (two runs sharing the cores).
        #[arg(long, value_delimiter = ',', value_name = "DEVICES")]
        devices: Vec<String>,
    },
    /// Export a run's backbone weights (safetensors) for torchvision, timm or plain code.
    Export {
        run: PathBuf,
        /// The file to write.
        #[arg(long)]
        backbone: PathBuf,
        /// torchvision and timm: keys their ResNets load with strict=True (the CIFAR stem
        /// and the convnet are refused); state-dict: fa's names for any backbone.
        #[arg(long, value_enum, default_value = "torchvision")]
        format: ExportFormat,
        /// The online encoder (what the paper evaluates) or its EMA target copy.
        #[arg(long, value_enum, default_value = "online")]
        encoder: ExportEncoder,
    },
    /// Plot loss, kNN accuracy and learning-rate curves of runs.
    Plot {
        runs: Vec<PathBuf>,
        #[arg(long, default_value = "plots")]
        out: PathBuf,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Serve the language server protocol on standard input and output (for editors).
    Lsp,
    /// Print fa's manual page (roff) with every subcommand.
    Man,
    /// Write a PNG grid of images and their augmented views.
    Augment {
        file: PathBuf,
        /// Only the pipeline of this view.
        #[arg(long)]
        view: Option<String>,
        #[arg(long, default_value = "augment.png")]
        out: PathBuf,
        #[arg(long)]
        data_root: Option<PathBuf>,
        /// Override a value, or pick one sweep cell: `--set fa=nn`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<Override>,
    },
}

impl Command {
    /// Whether the command needs libtorch, and so runs in the `fa-torch` executable.
    pub fn needs_libtorch(&self) -> bool {
        !matches!(
            self,
            Command::Check { .. }
                | Command::Graph { .. }
                | Command::Fmt { .. }
                | Command::Expand { .. }
                | Command::Lower { .. }
                | Command::Completions { .. }
                | Command::Man
                | Command::Lsp
        )
    }
}
