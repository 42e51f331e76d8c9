//! `fa export` and `fa eval` on the wrong inputs (docs/reliability.md): another model's
//! checkpoint, an export into the run's checkpoint folder or a missing folder, a file where a
//! run folder is expected. Each is refused with what is wrong and the way out, and nothing is
//! left behind. Runs use Fashion-MNIST from Debian and skip without it.

use std::path::Path;
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

const ROOT: &str = "/usr/share/datasets";

fn have_data() -> bool {
    let found = Path::new(ROOT)
        .join("fashion-mnist/train-images-idx3-ubyte.gz")
        .exists();
    if !found {
        eprintln!("skipped: Fashion-MNIST is not installed");
    }
    found
}

fn fa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fa"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("fa runs")
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
    .split_whitespace()
    .collect::<Vec<_>>()
    .join(" ")
}

fn train(file: &Path, out: &Path) {
    let output = fa(&[
        "train",
        file.to_str().unwrap(),
        "--max-steps",
        "1",
        "--no-eval",
        "--log-format",
        "quiet",
        "--device",
        "cpu",
        "--data-root",
        ROOT,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
}

fn only_checkpoint(run: &Path) -> std::path::PathBuf {
    fa_torch::train::checkpoint::latest(run).expect("a checkpoint")
}

fn no_temporaries(folder: &Path) -> bool {
    std::fs::read_dir(folder)
        .unwrap()
        .flatten()
        .all(|entry| !entry.file_name().to_string_lossy().ends_with(".tmp"))
}

#[test]
fn export_and_eval_refuse_wrong_inputs_with_the_reason_and_the_way_out() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train(&repo().join("tests/train/tiny.fa"), &run);
    let s = |path: &Path| path.to_str().unwrap().to_string();

    // The run's own checkpoint folder is not a place for exports.
    let latest = only_checkpoint(&run);
    let output = fa(&["export", &s(&run), "--backbone", &s(&latest)]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("into the run's checkpoint folder"),
        "{}",
        text(&output)
    );
    assert_eq!(only_checkpoint(&run), latest, "the checkpoint is untouched");
    fa_torch::train::checkpoint::read_meta(&latest).expect("still a valid checkpoint");

    // A missing folder says which folder.
    let missing = dir.path().join("nope/backbone.safetensors");
    let output = fa(&["export", &s(&run), "--backbone", &s(&missing)]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("does not exist"),
        "{}",
        text(&output)
    );

    // A device or a link is not replaced by the export.
    let link = dir.path().join("link.safetensors");
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    for special in [Path::new("/dev/null"), link.as_path()] {
        let output = fa(&["export", &s(&run), "--backbone", &s(special)]);
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        let message = text(&output).replace(" │ ", " ");
        assert!(message.contains("is not a regular file"), "{message}");
    }
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(!Path::new("/dev/null").symlink_metadata().unwrap().is_file());

    // A checkpoint in its run's checkpoints folder exports; a loose copy is explained.
    let good = dir.path().join("backbone.safetensors");
    let output = fa(&[
        "export",
        &s(&latest),
        "--backbone",
        &s(&good),
        "--format",
        "state-dict",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let loose = dir.path().join("loose.safetensors");
    std::fs::copy(&latest, &loose).unwrap();
    for args in [
        vec![
            "export".to_string(),
            s(&loose),
            "--backbone".into(),
            s(&good),
            "--format".into(),
            "state-dict".into(),
        ],
        vec![
            "eval".to_string(),
            s(&loose),
            "--device".into(),
            "cpu".into(),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = fa(&args);
        let message = text(&output);
        assert_eq!(output.status.code(), Some(2), "{message}");
        assert!(
            message.contains("is a file outside a run folder")
                && message.contains("RUN/checkpoints/"),
            "{message}"
        );
        assert!(!message.contains("Not a directory"), "{message}");
    }
    let output = fa(&["eval", &s(dir.path()), "--device", "cpu"]);
    assert!(
        text(&output).contains("is not a run folder: it has no model.json"),
        "{}",
        text(&output)
    );

    // Another model's checkpoint (other widths) in this run's folder is refused.
    let source = std::fs::read_to_string(repo().join("tests/train/tiny.fa")).unwrap();
    let other_file = dir.path().join("other.fa");
    std::fs::write(
        &other_file,
        source.replace("convnet(8, 16, 32)", "convnet(4, 8, 16)"),
    )
    .unwrap();
    let other = dir.path().join("other");
    train(&other_file, &other);
    std::fs::remove_file(&latest).unwrap();
    std::fs::copy(only_checkpoint(&other), &latest).unwrap();
    let foreign = dir.path().join("foreign.safetensors");
    let output = fa(&[
        "export",
        &s(&run),
        "--backbone",
        &s(&foreign),
        "--format",
        "state-dict",
    ]);
    let message = text(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(
        message.contains("another model")
            && message.contains("in the checkpoint but the model expects"),
        "{message}"
    );
    assert!(!foreign.exists());
    assert!(no_temporaries(dir.path()), "no temporary file is left");
}

/// A `model.json` edited by hand is validated again with the ranges of source files: batch 0
/// and a negative temperature are refused by name, never divided by.
#[test]
fn an_edited_stored_model_is_refused_with_the_value_named() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train(&repo().join("tests/train/tiny.fa"), &run);
    let path = run.join("model.json");
    let original = std::fs::read_to_string(&path).unwrap();
    let s = |path: &Path| path.to_str().unwrap().to_string();

    let edits: [(&str, fn(&mut serde_json::Value)); 2] = [
        ("`batch` must be in [1, 1048576], found 0", |model| {
            model["model"]["data"]["batch_size"] = 0.into();
        }),
        ("`tau` must be > 0, found -1", |model| {
            for node in model["model"]["graph"]["nodes"].as_array_mut().unwrap() {
                if let Some(loss) = node.pointer_mut("/kind/Loss/kind/InfoNce") {
                    loss["tau"] = (-1.0).into();
                }
            }
        }),
    ];
    for (expected, edit) in edits {
        let mut model: serde_json::Value = serde_json::from_str(&original).unwrap();
        edit(&mut model);
        assert_ne!(
            model.to_string(),
            serde_json::from_str::<serde_json::Value>(&original)
                .unwrap()
                .to_string(),
            "the edit applies"
        );
        std::fs::write(&path, serde_json::to_string_pretty(&model).unwrap()).unwrap();
        for args in [
            vec!["eval".to_string(), s(&run), "--device".into(), "cpu".into()],
            vec![
                "export".to_string(),
                s(&run),
                "--backbone".into(),
                s(&dir.path().join("b.safetensors")),
            ],
        ] {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let output = fa(&args);
            // The terminal renderer wraps long lines with a `│` margin.
            let message = text(&output).replace(" │ ", " ");
            assert_eq!(output.status.code(), Some(2), "{message}");
            assert!(
                message.contains("fa::valid::range") && message.contains(expected),
                "{message}"
            );
            assert!(!message.contains("panicked"), "{message}");
        }
    }
}
