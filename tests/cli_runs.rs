//! End-to-end tests of the `fa` commands that train or read a run (train, sweep, plot,
//! augment, export, eval) on Fashion-MNIST from Debian; without it they fail and say how to
//! install it.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::data::fashion_root;
use support::process::{expect_code, fa, path_text, stderr, stdout};

/// The `--data-root` value for Fashion-MNIST; fails the test when it is not installed.
fn fashion_root_flag() -> String {
    path_text(&fashion_root()).to_string()
}

/// Trains tests/train/tiny.fa for `steps` steps into `out` without evaluation.
fn train_tiny(out: &Path, root: &str, steps: u64) -> Output {
    train_tiny_with(out, root, steps, &[])
}

/// [`train_tiny`] with `extra` flags.
fn train_tiny_with(out: &Path, root: &str, steps: u64, extra: &[&str]) -> Output {
    let steps = steps.to_string();
    let args = [
        "train",
        "tests/train/tiny.fa",
        "--max-steps",
        &steps,
        "--no-eval",
        "--out",
        path_text(out),
        "--data-root",
        root,
    ];
    expect_code(
        fa(&[
            &args[..],
            &["--log-format", "json", "--device", "cpu"],
            extra,
        ]
        .concat()),
        0,
        "train tiny",
    )
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|bytes| bytes.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[test]
fn train_writes_metrics_and_a_checkpoint_and_prints_json_lines() {
    let root = fashion_root_flag();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let output = train_tiny(&run, &root, 3);
    let text = stdout(&output);
    let records: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(
        records.len(),
        4,
        "one JSON line per step, then the summary:\n{text}"
    );
    let (summary, records) = records.split_last().unwrap();
    assert_eq!(summary["kind"], "summary", "{text}");
    assert_eq!(summary["steps"], 3, "{text}");
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record["kind"], "step");
        assert_eq!(record["step"], i as u64 + 1);
        assert!(
            record["loss"].as_f64().is_some_and(f64::is_finite),
            "{record}"
        );
        assert!(record["terms"]["anchor~augmented"].is_number(), "{record}");
    }
    assert!(
        !stderr(&output).contains("training tiny"),
        "json mode keeps stderr quiet: {}",
        stderr(&output)
    );

    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, records, "the metrics file holds what was printed");
    let checkpoints: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(checkpoints, ["step-000000003.safetensors"]);
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("model.json")).unwrap()).unwrap();
    assert_eq!(
        model["format"], 2,
        "model.json records the run-folder format"
    );
    assert_eq!(model["model"]["name"], "tiny");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 3);
    assert!(summary["knn"].is_null(), "--no-eval: no kNN");

    // TensorBoard's events file by default: the version, the augmentation grid, one event
    // per step with the step's loss among its tags.
    use fa_torch::train::tensorboard::{parse_event, read_records, EVENTS_FILE};
    let events_path = run.join(EVENTS_FILE);
    let events = read_records(&events_path, &std::fs::read(&events_path).unwrap()).unwrap();
    assert_eq!(events.len(), 5);
    assert_eq!(parse_event(&events[1]).tags, ["augmentation"]);
    for (index, event) in events[2..].iter().enumerate() {
        let info = parse_event(event);
        assert_eq!(info.step, index as u64 + 1);
        assert!(info.tags.contains(&"loss/total".to_string()), "{info:?}");
    }
}

#[test]
fn train_refuses_a_sweep_without_a_cell_and_lists_the_cells() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = expect_code(
        fa(&["train", "tests/cli/tiny_sweep.fa", "--out", path_text(&out)]),
        2,
        "sweep without --cell",
    );
    let text = stderr(&output);
    assert!(text.contains("sweep of 2 cells"), "{text}");
    assert!(
        text.contains("tiny_sweep[fa=mask]") && text.contains("tiny_sweep[fa=nn]"),
        "{text}"
    );
    let output = expect_code(
        fa(&[
            "train",
            "tests/cli/tiny_sweep.fa",
            "--cell",
            "nope",
            "--out",
            path_text(&out),
        ]),
        2,
        "unknown cell",
    );
    assert!(
        stderr(&output).contains("no cell named `nope`"),
        "{}",
        stderr(&output)
    );
    assert!(!out.exists(), "nothing is written before training starts");
}

fn knn_column(csv: &str, cell: &str) -> f64 {
    let line = csv
        .lines()
        .find(|l| l.starts_with(&format!("\"{cell}\"")))
        .unwrap_or_else(|| panic!("{cell} missing:\n{csv}"));
    line.split(',')
        .nth(3)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no kNN value: {line}"))
}

/// `fa sweep` of `tests/cli/tiny_sweep.fa` into `out` on the CPU, two seeds per cell.
fn tiny_sweep_args<'a>(out: &'a std::path::Path, root: &'a str) -> Vec<&'a str> {
    vec![
        "sweep",
        "tests/cli/tiny_sweep.fa",
        "--out",
        path_text(out),
        "--data-root",
        root,
        "--device",
        "cpu",
        "--seeds",
        "2",
    ]
}

/// `--devices cpu,cpu` trains both cells at once in child processes; the runs are the serial
/// sweep's own (a serial sweep afterwards skips them), with a log each.
#[test]
fn a_sweep_over_two_devices_trains_the_cells_at_once_and_a_serial_sweep_skips_them() {
    let root = fashion_root_flag();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    let mut args = tiny_sweep_args(&out, &root);
    let parallel = expect_code(
        fa(&[args.as_slice(), &["--devices", "cpu,cpu"]].concat()),
        0,
        "parallel sweep",
    );
    let text = stderr(&parallel);
    assert!(
        text.contains("4 run(s) to train on 2 worker(s): cpu, cpu"),
        "{text}"
    );
    // Two runs start before the first one ends: they ran at the same time.
    let first_done = text.find(" done on ").expect("a run finished");
    assert_eq!(
        text[..first_done].matches(" started on cpu").count(),
        2,
        "{text}"
    );
    assert_eq!(text.matches(" done on cpu in ").count(), 4, "{text}");
    for cell in ["tiny_sweep_fa=mask_", "tiny_sweep_fa=nn_"] {
        for seed in 0..2 {
            let log = out.join(format!("logs/{cell}-seed-{seed}.log"));
            let log = std::fs::read_to_string(&log).unwrap_or_else(|_| panic!("{log:?}"));
            assert!(log.contains("kNN top-1"), "{log}");
        }
    }
    let csv = std::fs::read_to_string(out.join("table.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "a header and a row per run:\n{csv}");
    for cell in ["tiny_sweep[fa=mask]", "tiny_sweep[fa=nn]"] {
        let knn = knn_column(&csv, cell);
        assert!(knn > 10.0 && knn <= 100.0, "{cell}: kNN {knn}%");
    }
    // Seed 1 trained with the file's seed plus one, as the serial sweep trains it.
    let stored = std::fs::read_to_string(out.join("tiny_sweep_fa=nn_/seed-1/model.json")).unwrap();
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    let seed0 = std::fs::read_to_string(out.join("tiny_sweep_fa=nn_/seed-0/model.json")).unwrap();
    let seed0: serde_json::Value = serde_json::from_str(&seed0).unwrap();
    assert_eq!(
        stored["model"]["train"]["seed"].as_u64().unwrap(),
        seed0["model"]["train"]["seed"].as_u64().unwrap() + 1
    );

    let serial = expect_code(fa(&args), 0, "serial sweep afterwards");
    let text = stderr(&serial);
    assert_eq!(
        text.matches("skipped").count(),
        4,
        "all four are this sweep's: {text}"
    );
    assert_eq!(std::fs::read_to_string(out.join("table.csv")).unwrap(), csv);

    args.extend(["--devices", "gpu0"]);
    let bad = expect_code(fa(&args), 2, "a bad device");
    assert!(
        stderr(&bad).contains("`gpu0` is not a device"),
        "{}",
        stderr(&bad)
    );
}

/// Ctrl-C reaches the sweep alone; it passes the stop on to each running child once, and
/// each child checkpoints where it stopped; nothing new starts.
#[test]
fn ctrl_c_stops_a_sweep_over_two_devices_with_a_checkpoint_per_running_run() {
    let root = fashion_root_flag();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_fa"))
        .args(tiny_sweep_args(&out, &root))
        .args(["--set", "train.epochs=1000", "--devices", "cpu,cpu"])
        .current_dir(support::project_root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("fa runs");
    let mut sweep = KillOnDrop(Some(child));
    let pid = sweep.0.as_ref().unwrap().id();
    // The two workers take the first two runs: `fa=mask`, seeds 0 and 1. They are training
    // once each has written a checkpoint (one per epoch of 4 steps).
    let started = std::time::Instant::now();
    let training = |seed: u32| {
        std::fs::read_dir(out.join(format!("tiny_sweep_fa=mask_/seed-{seed}/checkpoints")))
            .is_ok_and(|mut entries| entries.next().is_some())
    };
    while !(training(0) && training(1)) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(90),
            "the runs did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // SAFETY: kill(2) on this test's child.
    unsafe {
        libc::kill(pid as i32, libc::SIGINT);
    }
    let stopped = std::time::Instant::now();
    while sweep.0.as_mut().unwrap().try_wait().unwrap().is_none() {
        assert!(
            stopped.elapsed() < std::time::Duration::from_secs(60),
            "the sweep did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let child = sweep.0.take().unwrap();
    let output = child.wait_with_output().unwrap();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(130), "{text}");
    assert!(
        text.contains("the sweep stopped by SIGINT; 2 run(s) in progress kept their checkpoints"),
        "{text}"
    );
    for seed in 0..2 {
        let run = out.join(format!("tiny_sweep_fa=mask_/seed-{seed}"));
        let log =
            std::fs::read_to_string(out.join(format!("logs/tiny_sweep_fa=mask_-seed-{seed}.log")))
                .unwrap();
        assert!(log.contains("stopped by SIGINT"), "seed {seed}: {log}");
        assert!(
            !run.join("summary.json").exists(),
            "seed {seed} stopped before finishing"
        );
    }
    assert!(
        !out.join("tiny_sweep_fa=nn_").exists(),
        "nothing new started after the stop"
    );
}

/// Kills a sweep and the runs it started when a test ends early, so that a failed assertion
/// leaves no training behind.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let Some(mut child) = self.0.take() else {
            return;
        };
        let pid = child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for grandchild in children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: kill(2) on a process the test's child started.
            unsafe {
                libc::kill(grandchild, libc::SIGKILL);
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn sweep_writes_a_table_of_both_cells_and_skips_them_when_run_again() {
    let root = fashion_root_flag();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    let args = [
        "sweep",
        "tests/cli/tiny_sweep.fa",
        "--out",
        path_text(&out),
        "--data-root",
        &root,
        "--device",
        "cpu",
    ];
    let first = expect_code(fa(&args), 0, "first sweep");
    assert!(!stderr(&first).contains("skipped"), "{}", stderr(&first));

    let markdown = std::fs::read_to_string(out.join("table.md")).unwrap();
    let csv = std::fs::read_to_string(out.join("table.csv")).unwrap();
    assert!(markdown.contains("| fa | mask | nn |"), "{markdown}");
    assert!(
        markdown.contains("1 epochs, 1 seed(s), on CPU"),
        "{markdown}"
    );
    assert_eq!(stdout(&first), markdown, "the table is printed too");
    assert_eq!(
        csv.lines().count(),
        3,
        "a header and one row per cell:\n{csv}"
    );
    for cell in ["tiny_sweep[fa=mask]", "tiny_sweep[fa=nn]"] {
        let knn = knn_column(&csv, cell);
        assert!(
            knn > 10.0 && knn <= 100.0,
            "{cell}: kNN {knn}% (chance is 10%)"
        );
    }
    let metrics =
        |cell: &str| std::fs::read_to_string(out.join(cell).join("seed-0/metrics.jsonl")).unwrap();
    let before = (metrics("tiny_sweep_fa=mask_"), metrics("tiny_sweep_fa=nn_"));

    let second = expect_code(fa(&args), 0, "second sweep");
    let text = stderr(&second);
    assert_eq!(
        text.matches("skipped").count(),
        2,
        "both cells are finished: {text}"
    );
    assert!(!text.contains("step "), "nothing is trained again: {text}");
    assert_eq!(
        std::fs::read_to_string(out.join("table.csv")).unwrap(),
        csv,
        "the same table"
    );
    assert_eq!(
        (metrics("tiny_sweep_fa=mask_"), metrics("tiny_sweep_fa=nn_")),
        before,
        "the runs are untouched"
    );

    // Another configuration into the same folder is refused, not reported as this one.
    let third = expect_code(
        fa(&[&args[..], &["--set", "optim.lr=0.01"]].concat()),
        2,
        "sweep of another configuration",
    );
    let said: String = stderr(&third)
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(said.contains("another configuration"), "{said}");
    assert_eq!(
        (metrics("tiny_sweep_fa=mask_"), metrics("tiny_sweep_fa=nn_")),
        before,
        "the runs are still untouched"
    );
}

#[test]
fn plot_writes_png_and_svg_curves() {
    let root = fashion_root_flag();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train_tiny(&run, &root, 3);
    let plots = dir.path().join("plots");
    let output = expect_code(
        fa(&["plot", path_text(&run), "--out", path_text(&plots)]),
        0,
        "plot",
    );
    let written: Vec<PathBuf> = stdout(&output).lines().map(PathBuf::from).collect();
    assert!(
        written.iter().any(|p| p.ends_with("loss.png"))
            && written.iter().any(|p| p.ends_with("loss.svg")),
        "{written:?}"
    );
    for path in &written {
        match path.extension().and_then(|e| e.to_str()) {
            Some("png") => assert!(is_png(path), "{} is not a PNG", path.display()),
            Some("svg") => {
                let svg = std::fs::read_to_string(path).unwrap();
                assert!(
                    svg.contains("<svg") && svg.contains("</svg>"),
                    "{} is not an SVG",
                    path.display()
                );
            }
            _ => panic!("unexpected file {}", path.display()),
        }
    }
    // A missing run, a folder that is not a run and an --out that is a file are usage
    // errors (exit 2) that say which.
    let note = dir.path().join("note.txt");
    std::fs::write(&note, "mine").unwrap();
    for (args, expected) in [
        (
            vec![
                "plot",
                path_text(&dir.path().join("no_run")),
                "--out",
                path_text(&plots),
            ],
            "does not exist",
        ),
        (
            vec!["plot", path_text(dir.path()), "--out", path_text(&plots)],
            "it has no metrics.jsonl",
        ),
        (
            vec!["plot", path_text(&run), "--out", path_text(&note)],
            "is not a folder",
        ),
    ] {
        let output = fa(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    assert_eq!(std::fs::read_to_string(&note).unwrap(), "mine");
}

#[test]
fn augment_writes_a_png_grid_of_the_size_it_reports() {
    let root = fashion_root_flag();
    let dir = tempfile::tempdir().unwrap();
    let grid = dir.path().join("grid.png");
    let output = expect_code(
        fa(&[
            "augment",
            "tests/train/tiny.fa",
            "--out",
            path_text(&grid),
            "--data-root",
            &root,
        ]),
        0,
        "augment",
    );
    assert!(is_png(&grid));
    let (width, height) = image::image_dimensions(&grid).unwrap();
    assert!(
        stdout(&output).contains(&format!("({width}×{height})")),
        "{}",
        stdout(&output)
    );
    let output = expect_code(
        fa(&[
            "augment",
            "tests/train/tiny.fa",
            "--view",
            "nope",
            "--out",
            path_text(&grid),
            "--data-root",
            &root,
        ]),
        2,
        "unknown view",
    );
    assert!(
        stderr(&output).contains("no view named `nope`")
            && stderr(&output).contains("the views of `tiny` are `anchor` (pipeline"),
        "{}",
        stderr(&output)
    );
    // The branch's source name selects its view.
    let one = dir.path().join("one.png");
    expect_code(
        fa(&[
            "augment",
            "tests/train/tiny.fa",
            "--view",
            "anchor",
            "--out",
            path_text(&one),
            "--data-root",
            &root,
        ]),
        0,
        "augment one view",
    );
    let one_size = image::image_dimensions(&one).unwrap();
    assert!(
        one_size.0 * one_size.1 < width * height,
        "one view: {one_size:?}, every view: {width}×{height}"
    );
}

#[test]
fn export_of_a_convnet_run_writes_the_encoder_tensors_under_short_names() {
    let root = fashion_root_flag();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train_tiny_with(&run, &root, 2, &["--no-tensorboard"]);
    assert!(
        !run.join(fa_torch::train::tensorboard::EVENTS_FILE).exists(),
        "--no-tensorboard writes no events file"
    );
    let out = dir.path().join("backbone.safetensors");
    // torchvision (the default) has no convnet: refused, with the way out.
    let refused = expect_code(
        fa(&["export", path_text(&run), "--backbone", path_text(&out)]),
        2,
        "export of a convnet as torchvision",
    );
    let said = stderr(&refused);
    assert!(
        said.contains("no counterpart") && said.contains("--format state-dict"),
        "{said}"
    );
    assert!(!out.exists());
    expect_code(
        fa(&[
            "export",
            path_text(&run),
            "--backbone",
            path_text(&out),
            "--format",
            "state-dict",
        ]),
        0,
        "export",
    );

    let exported = std::fs::read(&out).unwrap();
    let exported = safetensors::SafeTensors::deserialize(&exported).unwrap();
    let checkpoint = std::fs::read(run.join("checkpoints/step-000000002.safetensors")).unwrap();
    let checkpoint = safetensors::SafeTensors::deserialize(&checkpoint).unwrap();
    let mut expected: Vec<String> = checkpoint
        .names()
        .into_iter()
        .filter_map(|n| n.strip_prefix("model/f.").map(str::to_string))
        .collect();
    expected.sort();
    let mut names: Vec<String> = exported.names().into_iter().map(str::to_string).collect();
    names.sort();
    assert!(!names.is_empty());
    assert_eq!(
        names, expected,
        "exactly the encoder's tensors, prefix stripped"
    );
    for name in &names {
        let a = exported.tensor(name).unwrap();
        let b = checkpoint.tensor(&format!("model/f.{name}")).unwrap();
        assert_eq!(
            (a.shape(), a.dtype(), a.data()),
            (b.shape(), b.dtype(), b.data()),
            "{name} differs from the checkpoint"
        );
    }
}

#[test]
fn eval_knn_of_a_run_prints_a_knn_line() {
    let root = fashion_root_flag();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train_tiny(&run, &root, 2);
    let output = expect_code(
        fa(&[
            "eval",
            path_text(&run),
            "--knn",
            "--data-root",
            &root,
            "--device",
            "cpu",
        ]),
        0,
        "eval --knn",
    );
    let text = stdout(&output);
    let knn = text
        .lines()
        .find(|l| l.starts_with("kNN top-1"))
        .unwrap_or_else(|| panic!("no kNN line:\n{text}"));
    let value: f64 = knn
        .split_whitespace()
        .last()
        .and_then(|v| v.strip_suffix('%'))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{knn}"));
    assert!(
        value > 10.0 && value <= 100.0,
        "kNN {value}% on ten classes"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("linear top-1") && l.ends_with('-')),
        "--knn only: {text}"
    );
    let output = expect_code(
        fa(&[
            "eval",
            path_text(&dir.path().join("no_run")),
            "--knn",
            "--data-root",
            &root,
        ]),
        2,
        "eval of a missing run",
    );
    assert!(
        stderr(&output).contains("model.json"),
        "{}",
        stderr(&output)
    );
    // A checkpoint file instead of the run folder.
    let first = run.join("checkpoints").join("step-000000002.safetensors");
    assert!(
        first.exists(),
        "the run stopped at step 2 with a checkpoint"
    );
    let output = expect_code(
        fa(&[
            "eval",
            path_text(&first),
            "--knn",
            "--data-root",
            &root,
            "--device",
            "cpu",
        ]),
        0,
        "eval of a checkpoint file",
    );
    let text = stdout(&output);
    assert!(
        text.lines()
            .any(|l| l.starts_with("steps") && l.contains(" 2 (")),
        "{text}"
    );
}
