//! The front end as the commands use it: compile a file, print its diagnostics, say how it went.

use std::path::Path;

use crate::resolve::{self, Compiled, Override};

/// How a command ended when it did not hit a usage or I/O error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The command ran and found problems (diagnostics printed, a check failed).
    Failed,
}

impl Outcome {
    /// `Failed` when `failed`, else `Success`.
    pub fn failed_if(failed: bool) -> Outcome {
        if failed {
            Outcome::Failed
        } else {
            Outcome::Success
        }
    }
}

/// Compiles `file` and prints its diagnostics to standard error; `Ok(None)` when it has
/// errors, `Err` when the file itself cannot be read.
pub fn compile_reporting(
    file: &Path,
    overrides: &[Override],
) -> Result<Option<Compiled>, std::io::Error> {
    match resolve::compile_file(file, overrides) {
        Ok(compiled) => {
            if compiled.report.has_diagnostics() {
                eprint!("{}", compiled.report.render_for_terminal());
            }
            Ok(Some(compiled))
        }
        Err(report) => {
            if let Some(error) = report.io_error() {
                return Err(std::io::Error::new(error.kind(), error.to_string()));
            }
            eprint!("{}", report.render_for_terminal());
            Ok(None)
        }
    }
}
