//! The `fa` command line: parses flags with clap and makes one library call per subcommand.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use fa::commands::{self, Outcome};
use fa::resolve::Override;

#[derive(Parser)]
#[command(
    name = "fa",
    version,
    about = "Compile and train self-supervised contrastive models with feature augmentation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Dot,
    Text,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Auto,
    Plain,
    Json,
    Quiet,
}

#[derive(Subcommand)]
enum Command {
    /// Validate .fa files and report every problem.
    Check {
        files: Vec<PathBuf>,
        /// Fail on warnings too.
        #[arg(long)]
        deny_warnings: bool,
        /// Override a value: `--set optim.lr=0.3`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<Override>,
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
        /// f32, bf16 or f16; the same as `--set train.precision=...` (bf16 autocasts the
        /// forward pass on CUDA; the CPU trains in float32).
        #[arg(long)]
        precision: Option<String>,
    },
    /// Evaluate a run's latest checkpoint (or a checkpoint file).
    Eval {
        run: PathBuf,
        #[arg(long)]
        knn: bool,
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
        /// Seeds per cell.
        #[arg(long, default_value_t = 1)]
        seeds: u64,
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value = "auto")]
        device: String,
        #[arg(long)]
        data_root: Option<PathBuf>,
    },
    /// Export a run's backbone weights under torchvision's parameter names.
    Export {
        run: PathBuf,
        #[arg(long)]
        backbone: PathBuf,
    },
    /// Plot loss, kNN accuracy and learning-rate curves of runs.
    Plot {
        runs: Vec<PathBuf>,
        #[arg(long, default_value = "plots")]
        out: PathBuf,
    },
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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check {
            files,
            deny_warnings,
            overrides,
        } => commands::check(&files, &overrides, deny_warnings),
        Command::Graph {
            file,
            format,
            overrides,
        } => commands::graph(&file, &overrides, matches!(format, GraphFormat::Dot)),
        Command::Fmt { files, check } => commands::fmt(&files, check),
        Command::Expand { file, overrides } => commands::expand(&file, &overrides),
        Command::Lower { file, overrides } => commands::lower(&file, &overrides),
        Command::Doctor => commands::doctor(),
        Command::Train {
            file,
            mut overrides,
            out,
            device,
            resume,
            data_root,
            log_format,
            max_steps,
            no_eval,
            cell,
            precision,
        } => {
            if let Some(precision) = precision {
                overrides.push(Override {
                    key: "train.precision".into(),
                    value: precision,
                });
            }
            let log = match log_format {
                LogFormat::Auto => commands::Log::Auto,
                LogFormat::Plain => commands::Log::Plain,
                LogFormat::Json => commands::Log::Json,
                LogFormat::Quiet => commands::Log::Quiet,
            };
            commands::train(&commands::TrainArgs {
                file,
                overrides,
                out,
                device,
                resume,
                data_root,
                log,
                max_steps,
                no_eval,
                cell,
            })
        }
        Command::Eval {
            run,
            knn,
            linear,
            device,
            data_root,
        } => commands::eval(&run, knn, linear, &device, data_root.as_deref()),
        Command::Sweep {
            file,
            overrides,
            seeds,
            out,
            device,
            data_root,
        } => commands::sweep(
            &file,
            &overrides,
            seeds,
            out.as_deref(),
            &device,
            data_root.as_deref(),
        ),
        Command::Export { run, backbone } => commands::export(&run, &backbone),
        Command::Plot { runs, out } => commands::plot(&runs, &out),
        Command::Augment {
            file,
            view,
            out,
            data_root,
        } => commands::augment(&file, view.as_deref(), &out, data_root.as_deref()),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Err(error) => {
            let code = error.exit_code();
            eprintln!("{:?}", miette::Report::new(error));
            ExitCode::from(code)
        }
    }
}
