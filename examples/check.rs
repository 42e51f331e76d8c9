//! Parses and validates a `.fa` file through the library API and prints every cell's graph.
//!
//! `cargo run --example check --no-default-features -- models/quickstart.fa [--dot]`

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let dot = args.iter().any(|a| a == "--dot");
    args.retain(|a| a != "--dot");
    let Some(path) = args.first().map(PathBuf::from) else {
        eprintln!("usage: check FILE.fa [--dot]");
        return ExitCode::from(2);
    };
    match fa_lang::driver::compile_file(&path, &[]) {
        Ok(compiled) => {
            eprint!("{}", fa_lang::diag::render(&compiled.report, 100, false));
            for (cell, valid) in &compiled.cells {
                if dot {
                    print!("{}", fa_lang::graph::to_dot(valid));
                } else {
                    println!("# {}", cell.name);
                    print!("{}", fa_lang::graph::to_text(valid));
                }
            }
            ExitCode::SUCCESS
        }
        Err(report) => {
            eprint!("{}", fa_lang::diag::render(&report, 100, false));
            ExitCode::from(if report.io_error().is_some() { 2 } else { 1 })
        }
    }
}
