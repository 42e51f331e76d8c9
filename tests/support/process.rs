//! Running programs from tests: the `fa` binary, this test binary in a child process with its
//! own environment, and the project's Python with torch.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::project_root;

/// Runs `fa` with `args` from the project root.
pub fn fa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fa"))
        .args(args)
        .current_dir(project_root())
        .output()
        .expect("the fa binary runs")
}

/// What `output` printed on stdout, lossily decoded.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What `output` printed on stderr, lossily decoded.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit code and returns the output, showing both streams when it differs.
#[track_caller]
pub fn expect_code(output: Output, code: i32, what: &str) -> Output {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
        stdout(&output),
        stderr(&output)
    );
    output
}

/// `path` as a command-line argument; temporary paths are UTF-8.
pub fn path_text(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Runs the test `name` of the current test binary alone in a child process whose
/// environment has `environment` applied (`None` removes the variable), and asserts that it
/// ran and passed.
///
/// The environment is process-wide: a test that changed it in its own process would race
/// with every other test reading it, so the change is made only in the child.
#[track_caller]
pub fn run_test_in_child(name: &str, environment: &[(&str, Option<&str>)]) {
    let binary = std::env::current_exe().expect("the test binary has a path");
    let mut command = Command::new(binary);
    command.args([name, "--exact", "--nocapture", "--test-threads=1"]);
    for (variable, value) in environment {
        match value {
            Some(value) => command.env(variable, value),
            None => command.env_remove(variable),
        };
    }
    let output = command.output().expect("the test binary runs again");
    let said = format!(
        "--- stdout\n{}\n--- stderr\n{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        output.status.success(),
        "{name} failed in a child process with {environment:?}\n{said}"
    );
    assert!(
        stdout(&output).contains("1 passed"),
        "{name} did not run in the child process\n{said}"
    );
}

/// Whether `python` runs and can import torch and torchvision.
fn has_torchvision(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import torch, torchvision"])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// A Python that imports torch and torchvision: the project's `.venv`, else the first
/// `python3` on `PATH` (`./dev` puts the `.venv` first); fails the calling test without one.
#[track_caller]
pub fn venv_python() -> PathBuf {
    let in_project = project_root().join(".venv/bin/python");
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|folder| folder.join("python3"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    std::iter::once(in_project)
        .chain(on_path)
        .find(|python| python.is_file() && has_torchvision(python))
        .unwrap_or_else(|| {
            panic!(
                "no Python with torch and torchvision: neither .venv/bin/python nor a python3 \
                 on PATH imports them; `./dev test` installs the project's .venv"
            )
        })
}

/// Runs `python` on `script` with `args`; fails the test with what it printed when it fails.
#[track_caller]
pub fn run_python(python: &Path, script: &Path, args: &[&OsStr], what: &str) {
    let output = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    let said = stdout(&output) + &stderr(&output);
    assert!(output.status.success(), "{what}: {said}");
}
