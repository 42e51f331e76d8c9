//! `fa`: parses the flags, runs the front-end commands itself and hands the others to
//! `fa-torch`, so that checking a file never loads libtorch.

use std::process::ExitCode;

use clap::Parser;
use fa::cli::{Cli, Command, GraphFormat};
use fa::front;
use fa_lang::driver::Outcome;

fn main() -> ExitCode {
    fa::exit_quietly_on_closed_pipe();
    let cli = Cli::parse();
    if cli.command.needs_libtorch() {
        return fa::backend::run_backend(std::env::args_os().skip(1));
    }
    let result = match cli.command {
        Command::Check {
            files,
            deny_warnings,
            overrides,
            memory,
        } => front::check(&files, &overrides, deny_warnings, memory),
        Command::Graph {
            file,
            format,
            overrides,
        } => front::graph(&file, &overrides, matches!(format, GraphFormat::Dot)),
        Command::Fmt { files, check } => front::fmt(&files, check),
        Command::Expand { file, overrides } => front::expand(&file, &overrides),
        Command::Lower { file, overrides } => front::lower(&file, &overrides),
        Command::Completions { shell } => front::completions(shell),
        Command::Man => front::man(),
        Command::Lsp => front::lsp(),
        _ => unreachable!("commands that need libtorch were handed to fa-torch above"),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Err(error) => {
            eprintln!("{:?}", miette::Report::new(error));
            ExitCode::from(2)
        }
    }
}
