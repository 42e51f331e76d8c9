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

#[test]
fn a_byte_order_mark_is_skipped_and_a_non_ascii_name_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let bom = dir.path().join("bom.fa");
    std::fs::write(&bom, format!("\u{FEFF}{}", quickstart())).unwrap();
    let output = fa(&["check", bom.to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let accented = dir.path().join("accented.fa");
    std::fs::write(&accented, quickstart().replace("anchor", "änchor")).unwrap();
    let output = fa(&["check", accented.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`ä` (U+00E4) is not ASCII") && stderr.contains("e.g. with `anchor`"),
        "{stderr}"
    );

    let hidden = dir.path().join("hidden.fa");
    std::fs::write(
        &hidden,
        quickstart().replace("positive =", "positive\u{200B} ="),
    )
    .unwrap();
    let output = fa(&["check", hidden.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        stderr.contains("(U+200B) is an invisible character"),
        "{stderr}"
    );
}

/// `fa fmt` rewrites a symbolic link's target (the link stays a link) and keeps the file's
/// permission bits.
#[test]
fn fmt_writes_through_a_symbolic_link_and_keeps_the_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("real.fa");
    let messy = quickstart().replace("anchor = view", "anchor   =   view");
    std::fs::write(&target, &messy).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = dir.path().join("link.fa");
    std::os::unix::fs::symlink("real.fa", &link).unwrap();

    let output = fa(&["fmt", link.to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link stays a link"
    );
    let formatted = std::fs::read_to_string(&target).unwrap();
    assert_ne!(formatted, messy, "the target was formatted");
    assert!(formatted.contains("anchor = view"));
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// An endless device or a huge file given as a source, or `use`d, fails at once with the
/// size named instead of filling the memory.
#[test]
fn an_endless_source_is_refused_by_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let using = dir.path().join("using.fa");
    std::fs::write(&using, format!("use \"/dev/zero\"\n{}", quickstart())).unwrap();
    for args in [
        vec!["check", "/dev/zero"],
        vec!["fmt", "--check", "/dev/zero"],
        vec!["check", using.to_str().unwrap()],
    ] {
        let started = Instant::now();
        let output = fa(&args);
        let stderr = String::from_utf8_lossy(&output.stderr)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace(" │ ", " ");
        assert_ne!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.contains("larger than 64 MiB"), "{args:?}: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(20), "{args:?}");
    }
}
