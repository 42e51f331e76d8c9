//! `fa check` as editors and pre-commit hooks run it: a cold process per call. Prints the
//! median wall time and the peak resident memory of `fa check models/quickstart.fa` and of
//! `fa check` over every file in `models/`, next to the same command served by `fa-torch`
//! (which loads libtorch, as every command did before the split).
//!
//! Run: `cargo build --release --workspace && cargo bench --bench check` (needs GNU time,
//! Debian's `time` package, for the peak memory).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 15;

/// Wall time of one run of `exe args`, and its peak resident set in kB as GNU time reports
/// it. (The peak cannot be read from this process with wait4: a child forked from a
/// benchmark that has libtorch loaded carries that memory in its peak until it execs.)
fn measure(exe: &Path, args: &[String], root: &Path) -> (Duration, u64) {
    let start = Instant::now();
    let status = Command::new(exe)
        .args(args)
        .current_dir(root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the release executables are built");
    let elapsed = start.elapsed();
    let _ = status;
    let output = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(exe)
        .args(args)
        .current_dir(root)
        .stdout(std::process::Stdio::null())
        .output()
        .expect("GNU time (Debian package `time`) measures the peak resident set");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let peak = stderr
        .lines()
        .last()
        .and_then(|line| line.trim().parse().ok())
        .expect("GNU time prints the peak resident set last");
    (elapsed, peak)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn model_files(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut stack = vec![root.join("models")];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "fa") {
                files.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    files.sort();
    files
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let release = root.join("target/release");
    let quickstart = vec!["check".to_string(), "models/quickstart.fa".to_string()];
    let mut every = vec!["check".to_string()];
    every.extend(model_files(&root));
    println!("fa check, cold process, median of {RUNS} runs (wall ms, peak RSS MB)");
    println!("| command | executable | wall ms | peak RSS MB |");
    println!("|---|---|---|---|");
    for (label, args) in [
        ("quickstart.fa", &quickstart),
        ("every file in models/", &every),
    ] {
        for exe in ["fa", "fa-torch"] {
            let path = release.join(exe);
            // fa-torch refuses front-end commands, but only after loading libtorch: the
            // figure is what a libtorch-linked checker costs before it does any work.
            let runs: Vec<(Duration, u64)> =
                (0..RUNS).map(|_| measure(&path, args, &root)).collect();
            let wall = median(runs.iter().map(|r| r.0.as_secs_f64() * 1e3).collect());
            let rss = median(runs.iter().map(|r| r.1 as f64 / 1024.0).collect());
            println!("| {label} | {exe} | {wall:.1} | {rss:.1} |");
        }
    }
}
