//! `fa-torch`: the commands of `fa` that need libtorch (train, eval, sweep, export, plot,
//! augment, doctor). `fa` runs it with its own arguments; it parses the same flags.

use std::process::ExitCode;

use clap::Parser;
use fa::cli::{Cli, Command};
use fa_lang::driver::Outcome;
use fa_lang::resolve::Override;
use fa_torch::commands::{self, EvalArgs, SweepArgs, TrainArgs};
use fa_torch::export::{ExportEncoder, ExportFormat};
use fa_torch::train::LogFormat;

fn main() -> ExitCode {
    fa::exit_quietly_on_closed_pipe();
    // Before any tensor exists: freed tensor memory is reused, not returned to the kernel.
    fa_torch::host_memory::install();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Doctor => commands::doctor(),
        Command::Train {
            file,
            mut overrides,
            out,
            device,
            resume,
            overwrite,
            data_root,
            log_format,
            max_steps,
            no_eval,
            cell,
            no_tensorboard,
            precision,
            nproc,
            sync_batch_norm,
            dist_timeout,
            dist_backend,
        } => {
            if let Some(precision) = precision {
                overrides.push(Override {
                    key: "train.precision".into(),
                    value: precision,
                });
            }
            commands::train(&TrainArgs {
                file,
                overrides,
                out,
                device,
                resume,
                overwrite,
                data_root,
                log: log(log_format),
                max_steps,
                no_eval,
                cell,
                no_tensorboard,
                nproc: nproc.map(|n| n as usize),
                sync_batch_norm,
                dist_timeout: std::time::Duration::from_secs(dist_timeout),
                dist_backend,
            })
        }
        Command::Eval {
            run,
            knn,
            linear,
            device,
            data_root,
        } => commands::eval(&EvalArgs {
            run,
            knn,
            linear,
            device,
            data_root,
        }),
        Command::Sweep {
            file,
            overrides,
            seeds,
            out,
            device,
            data_root,
            devices,
        } => commands::sweep(&SweepArgs {
            file,
            overrides,
            seeds,
            out,
            device,
            data_root,
            devices,
        }),
        Command::Export {
            run,
            backbone,
            format,
            encoder,
        } => commands::export(
            &run,
            &backbone,
            export_format(format),
            export_encoder(encoder),
        ),
        Command::Plot { runs, out } => commands::plot(&runs, &out),
        Command::Augment {
            file,
            view,
            out,
            data_root,
            overrides,
        } => commands::augment(
            &file,
            view.as_deref(),
            &out,
            data_root.as_deref(),
            &overrides,
        ),
        Command::Check { .. }
        | Command::Graph { .. }
        | Command::Fmt { .. }
        | Command::Expand { .. }
        | Command::Lower { .. }
        | Command::Completions { .. }
        | Command::Man
        | Command::Lsp => {
            eprintln!("error: front-end commands are served by `fa`, not `fa-torch`");
            return ExitCode::from(2);
        }
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

/// The flag's value as the trainer's progress format (`fa` parses the flag without linking
/// the backend, so the two enums meet here).
fn log(format: fa::cli::LogFormat) -> LogFormat {
    match format {
        fa::cli::LogFormat::Auto => LogFormat::Auto,
        fa::cli::LogFormat::Plain => LogFormat::Plain,
        fa::cli::LogFormat::Json => LogFormat::Json,
        fa::cli::LogFormat::Quiet => LogFormat::Quiet,
    }
}

fn export_format(format: fa::cli::ExportFormat) -> ExportFormat {
    match format {
        fa::cli::ExportFormat::Torchvision => ExportFormat::Torchvision,
        fa::cli::ExportFormat::Timm => ExportFormat::Timm,
        fa::cli::ExportFormat::StateDict => ExportFormat::StateDict,
    }
}

fn export_encoder(encoder: fa::cli::ExportEncoder) -> ExportEncoder {
    match encoder {
        fa::cli::ExportEncoder::Online => ExportEncoder::Online,
        fa::cli::ExportEncoder::Target => ExportEncoder::Target,
    }
}
