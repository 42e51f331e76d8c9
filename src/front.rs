//! The front-end subcommands (`check`, `graph`, `fmt`, `expand`, `lower`), one function each.
//!
//! They print what the user asked for and return an [`Outcome`]; problems the user must fix
//! in a `.fa` file are printed as diagnostics (exit 1), usage and I/O problems come back as
//! a [`FrontError`] (exit 2). None of them touches libtorch.

use std::path::{Path, PathBuf};

use fa_lang::driver::{compile_reporting, Compiled, Outcome};
use fa_lang::resolve::Override;
use fa_lang::valid::ValidModel;

/// A usage or I/O problem of a front-end command.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum FrontError {
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
    #[error("the language server stopped: {0}")]
    #[diagnostic(code(fa::io))]
    Lsp(#[from] fa_lsp::LspError),
    #[error("no files given")]
    #[diagnostic(code(fa::usage), help("name one or more .fa files"))]
    NoFiles,
}

/// Compiles `file`, printing its diagnostics; `None` when it has errors.
fn compile(file: &Path, overrides: &[Override]) -> Result<Option<Compiled>, FrontError> {
    compile_reporting(file, overrides).map_err(|source| FrontError::Io {
        path: file.to_path_buf(),
        source,
    })
}

/// `fa check`: every file, every problem; exit 1 on errors (or warnings with `deny`).
pub fn check(
    files: &[PathBuf],
    overrides: &[Override],
    deny_warnings: bool,
    memory: Option<usize>,
) -> Result<Outcome, FrontError> {
    if files.is_empty() {
        return Err(FrontError::NoFiles);
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
                if !report_memory(&compiled, memory) {
                    failed = true;
                }
            }
            None => failed = true,
        }
    }
    Ok(Outcome::failed_if(failed))
}

/// Prints the training-memory estimate of the largest cell; false when it exceeds `limit`.
fn report_memory(compiled: &fa_lang::driver::Compiled, limit: Option<usize>) -> bool {
    use fa_lang::plan::{human_bytes, memory_estimate};
    let Some((cell, estimate)) = compiled
        .cells
        .iter()
        .map(|(cell, valid)| (cell, memory_estimate(valid)))
        .max_by_key(|(_, estimate)| estimate.device)
    else {
        return true;
    };
    let which = if compiled.cells.len() > 1 {
        format!(" (largest cell: {})", cell.name)
    } else {
        String::new()
    };
    eprintln!(
        "  memory ≈ {} per training step{which}: parameters and optimiser {}, buffers {}, banks {}, batch {}, activations {}{}",
        human_bytes(estimate.device),
        human_bytes(estimate.parameters),
        human_bytes(estimate.buffers),
        human_bytes(estimate.banks),
        human_bytes(estimate.batch),
        human_bytes(estimate.activations),
        estimate
            .dataset
            .map(|bytes| format!("; dataset in host memory {}", human_bytes(bytes)))
            .unwrap_or_default()
    );
    match limit {
        Some(limit) if estimate.device > limit => {
            eprintln!(
                "error: the estimate exceeds --memory {}: lower `data.batch` (and raise `optim.accumulate` to keep the effective batch), the bank, or the model's widths",
                human_bytes(limit)
            );
            false
        }
        _ => true,
    }
}

/// The number of definitions of `file` when it parses and is a library, a file meant to be
/// `use`d (no `model` and no `loss`), such as `models/common.fa`; `None` otherwise, so that
/// everything else, syntax errors included, goes through the full compile.
fn library_definitions(file: &Path) -> Option<usize> {
    use fa_lang::syntax::ast::ItemKind;
    let text = String::from_utf8(fa_base::fsio::read_source(file).ok()?).ok()?;
    let parsed = fa_lang::syntax::parse_file(0, &text).ok()?;
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
) -> Result<Outcome, FrontError> {
    // A library has no model to show: say so, as `fa check` does, rather than report the
    // missing model and loss as errors.
    if let Some(definitions) = library_definitions(file) {
        eprintln!(
            "{}: a library of {definitions} definitions (no `model`); name a file that `use`s it",
            file.display()
        );
        return Ok(Outcome::Failed);
    }
    let Some(compiled) = compile(file, overrides)? else {
        return Ok(Outcome::Failed);
    };
    for (cell, valid) in &compiled.cells {
        print(&cell.name, valid);
    }
    Ok(Outcome::Success)
}

/// `fa graph`: DOT or text for every cell.
pub fn graph(file: &Path, overrides: &[Override], dot: bool) -> Result<Outcome, FrontError> {
    each_cell(file, overrides, |name, valid| {
        if dot {
            print!("{}", fa_lang::graph::to_dot(valid));
        } else {
            println!("# {name}");
            print!("{}", fa_lang::graph::to_text(valid));
        }
    })
}

/// `fa lower`: the plan of every cell.
pub fn lower(file: &Path, overrides: &[Override]) -> Result<Outcome, FrontError> {
    each_cell(file, overrides, |name, valid| {
        println!("# {name}");
        print!("{}", fa_lang::plan::plan(valid));
    })
}

/// `fa expand`: the cells of a sweep, one per line.
pub fn expand(file: &Path, overrides: &[Override]) -> Result<Outcome, FrontError> {
    each_cell(file, overrides, |name, _| println!("{name}"))
}

/// `fa fmt`: rewrite files canonically (atomically), or with `check` report those that differ.
pub fn fmt(files: &[PathBuf], check: bool) -> Result<Outcome, FrontError> {
    let mut outcome = Outcome::Success;
    for file in files {
        let source = fa_base::fsio::read_source(file)
            .and_then(|bytes| {
                String::from_utf8(bytes).map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the file is not UTF-8 text",
                    )
                })
            })
            .map_err(|source| FrontError::Io {
                path: file.clone(),
                source,
            })?;
        let formatted = match fa_lang::fmt::format_source(&source) {
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
            fa_base::fsio::rewrite_file_atomically(file, formatted.as_bytes()).map_err(
                |source| FrontError::Write {
                    path: file.clone(),
                    source,
                },
            )?;
        }
    }
    Ok(outcome)
}

/// `fa completions`: the completion script of `shell` for every subcommand and flag,
/// generated from the clap definitions so it never falls behind them.
pub fn completions(shell: clap_complete::Shell) -> Result<Outcome, FrontError> {
    use clap::CommandFactory;
    let mut command = crate::cli::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "fa", &mut script);
    write_stdout(&script)
}

/// `fa man`: the manual page in roff, with a section listing every subcommand.
pub fn man() -> Result<Outcome, FrontError> {
    use clap::CommandFactory;
    let mut page = Vec::new();
    clap_mangen::Man::new(crate::cli::Cli::command())
        .render(&mut page)
        .map_err(|source| FrontError::Write {
            path: PathBuf::from("<manual page>"),
            source,
        })?;
    write_stdout(&page)
}

fn write_stdout(bytes: &[u8]) -> Result<Outcome, FrontError> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|source| FrontError::Write {
            path: PathBuf::from("<standard output>"),
            source,
        })?;
    Ok(Outcome::Success)
}

/// `fa lsp`: the language server, until the editor says `exit`.
pub fn lsp() -> Result<Outcome, FrontError> {
    fa_lsp::run_stdio()?;
    Ok(Outcome::Success)
}
