//! Handing a command to the `fa-torch` executable, as git and cargo hand subcommands to
//! `git-foo` and `cargo-foo`: the same arguments, the same standard streams, its exit code.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// The name of the executable that serves the commands that need libtorch.
pub const BACKEND: &str = "fa-torch";

/// Where `fa-torch` is: `$FA_TORCH` when set, else next to the running `fa`.
pub fn backend_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FA_TORCH") {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.join(BACKEND))
}

/// Runs `fa-torch` with `args` (the command line without the program name) and returns its
/// exit code; on Unix the process is replaced, so signals reach the trainer directly.
pub fn run_backend(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let Some(path) = backend_path() else {
        eprintln!("error: cannot locate the running executable to find `{BACKEND}` beside it");
        return ExitCode::from(2);
    };
    let mut command = std::process::Command::new(&path);
    command.args(args);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let error = command.exec();
        report_missing(&path, &error);
        ExitCode::from(2)
    }
    #[cfg(not(unix))]
    match command.status() {
        Ok(status) => ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8),
        Err(error) => {
            report_missing(&path, &error);
            ExitCode::from(2)
        }
    }
}

fn report_missing(path: &std::path::Path, error: &std::io::Error) {
    eprintln!(
        "error: cannot run the training backend {}: {error}\n  help: `{BACKEND}` is built beside `fa` (cargo build --release --workspace); set FA_TORCH to its path if it lives elsewhere",
        path.display()
    );
}
