//! The layering promises of ARCHITECTURE.md that the crate graph alone cannot show: the
//! `fa` executable never loads libtorch, and only `fa-torch` does.

use std::process::Command;

/// The shared libraries the dynamic loader would load for `exe`, as `ldd` lists them.
fn loaded_libraries(exe: &str) -> String {
    let output = Command::new("ldd")
        .arg(exe)
        .output()
        .expect("ldd (Debian's libc-bin) lists an executable's shared libraries");
    assert!(output.status.success(), "ldd {exe} failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_front_end_executable_does_not_load_libtorch() {
    let front = loaded_libraries(env!("CARGO_BIN_EXE_fa"));
    assert!(
        !front.contains("libtorch") && !front.contains("libc10"),
        "fa loads libtorch:\n{front}"
    );
    // The check is meaningful: the backend executable does load it.
    let backend = loaded_libraries(env!("CARGO_BIN_EXE_fa-torch"));
    assert!(backend.contains("libtorch_cpu"), "fa-torch:\n{backend}");
}

#[test]
fn front_end_commands_run_without_the_backend() {
    // With FA_TORCH pointing nowhere, every front-end command still works…
    let root = env!("CARGO_MANIFEST_DIR");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fa"))
            .args(args)
            .current_dir(root)
            .env("FA_TORCH", "/nonexistent/fa-torch")
            .output()
            .unwrap()
    };
    for args in [
        &["check", "models/quickstart.fa"][..],
        &["graph", "--format", "text", "models/quickstart.fa"],
        &["expand", "models/table1/parallel_predictor.fa"],
        &["lower", "models/quickstart.fa"],
        &["fmt", "--check", "models/quickstart.fa"],
    ] {
        let output = run(args);
        assert!(
            output.status.success(),
            "fa {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // …and a backend command says where it looked for the backend.
    let output = run(&["doctor"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/fa-torch"), "{stderr}");
    assert!(stderr.contains("FA_TORCH"), "{stderr}");
}
