//! The front-end commands on hostile input end with a message, in bounded time, never a
//! panic (docs/reliability.md): a closed output pipe, a 65,536-character name, a 10 MB file
//! with a problem on every line.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fa"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("fa runs")
}

fn quickstart() -> String {
    std::fs::read_to_string(repo().join("models/quickstart.fa")).unwrap()
}

#[test]
fn printing_into_a_closed_pipe_ends_quietly() {
    for args in [
        ["graph", "models/quickstart.fa"],
        ["lower", "models/quickstart.fa"],
        ["expand", "models/table1/basic.fa"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fa"))
            .args(args)
            .current_dir(repo())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before fa writes, as `| head -0` would.
        drop(child.stdout.take());
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_ne!(status.code(), Some(101), "{args:?}: {stderr}");
    }
}

#[test]
fn a_name_of_seventy_thousand_characters_is_printed_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("long.fa");
    std::fs::write(&file, quickstart().replace("anchor", &"a".repeat(70_000))).unwrap();
    for command in ["check", "lower", "graph", "expand"] {
        let output = fa(&[command, file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{command}: {stderr}");
    }
}

#[test]
fn checking_ten_megabytes_of_repeated_definitions_ends_quickly_with_the_first_problems() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("repeated.fa");
    let line = "projector g = mlp(64, 32)\n";
    let text = quickstart() + &line.repeat(10_000_000 / line.len());
    std::fs::write(&file, text).unwrap();
    let started = Instant::now();
    let output = fa(&["check", file.to_str().unwrap()]);
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("is defined twice"), "{}", &stderr[..2000]);
    assert!(
        stderr.contains("more problems not shown"),
        "{}",
        &stderr[stderr.len() - 500..]
    );
    // Two seconds in a release build; a debug build parses several times slower.
    let limit = if cfg!(debug_assertions) { 30 } else { 2 };
    assert!(
        elapsed < Duration::from_secs(limit),
        "took {elapsed:?}, more than {limit} s"
    );
}

#[test]
fn sweep_refuses_zero_seeds_and_f16_is_not_offered() {
    let output = fa(&["sweep", "tests/cli/tiny_sweep.fa", "--seeds", "0"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--seeds"), "{stderr}");

    let output = fa(&[
        "check",
        "models/quickstart.fa",
        "--set",
        "train.precision=f16",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`f16` is not a valid `precision`"),
        "{stderr}"
    );
}

#[test]
fn sweep_cells_that_would_share_a_run_folder_are_refused() {
    let out = tempfile::tempdir().unwrap();
    let output = fa(&[
        "sweep",
        "tests/cli/colliding_sweep.fa",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("would share the run folder"), "{stderr}");
    assert!(
        stderr.contains(r#"folder="fm a""#) && stderr.contains(r#"folder="fm_a""#),
        "{stderr}"
    );
    // Nothing ran.
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}
