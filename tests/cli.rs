//! End-to-end tests of the `fa` binary: every subcommand run as a user runs it, with its exit
//! code, what it prints and the files it writes. Training runs use Fashion-MNIST from Debian
//! and skip with a note when it is not installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `fa` with `args` from the repository root.
fn fa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fa"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("the fa binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit code and returns the output, showing both streams when it differs.
fn expect_code(output: Output, code: i32, what: &str) -> Output {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
        stdout(&output),
        stderr(&output)
    );
    output
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

#[test]
fn check_treats_a_file_without_model_as_a_library_and_passes_every_model_file() {
    let output = expect_code(fa(&["check", "models/common.fa"]), 0, "library");
    assert!(
        stderr(&output).contains("models/common.fa: a library of"),
        "{}",
        stderr(&output)
    );
    let mut files = vec![
        "models/common.fa".to_string(),
        "models/quickstart.fa".to_string(),
    ];
    for folder in [
        "baselines",
        "cifar10",
        "table1",
        "table2",
        "table3",
        "table4",
        "table5",
    ] {
        for entry in std::fs::read_dir(format!("models/{folder}"))
            .unwrap()
            .flatten()
        {
            files.push(entry.path().display().to_string());
        }
    }
    let args: Vec<&str> = std::iter::once("check")
        .chain(files.iter().map(String::as_str))
        .collect();
    let output = expect_code(fa(&args), 0, "every file of models/");
    assert_eq!(
        stderr(&output)
            .lines()
            .filter(|l| l.contains(": ok ("))
            .count(),
        files.len() - 1
    );
    // An empty file is no library: it gets the model's diagnostics.
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.fa");
    std::fs::write(&empty, "").unwrap();
    expect_code(fa(&["check", empty.to_str().unwrap()]), 1, "empty file");
}

#[test]
fn check_exits_0_on_valid_files_even_with_warnings() {
    let output = expect_code(fa(&["check", "models/quickstart.fa"]), 0, "quickstart");
    assert!(
        stderr(&output).contains("models/quickstart.fa: ok (0 warnings)"),
        "{}",
        stderr(&output)
    );
    let output = expect_code(fa(&["check", "tests/cli/warning.fa"]), 0, "warnings only");
    let text = stderr(&output);
    assert!(
        text.contains("fa::resolve::unused_definition"),
        "the warning is shown: {text}"
    );
    assert!(
        text.contains("tests/cli/warning.fa: ok (1 warning)"),
        "{text}"
    );
}

#[test]
fn check_exits_1_on_errors_and_reports_every_file() {
    let output = expect_code(
        fa(&["check", "models/quickstart.fa", "tests/cli/error.fa"]),
        1,
        "one file with an error",
    );
    let text = stderr(&output);
    assert!(
        text.contains("fa::resolve::unknown_module"),
        "the diagnostic names its code: {text}"
    );
    assert!(
        text.contains("tests/cli/error.fa:8:31"),
        "the diagnostic points into the file: {text}"
    );
    assert!(
        text.contains("models/quickstart.fa: ok"),
        "the valid file is still checked: {text}"
    );
}

#[test]
fn check_with_deny_warnings_exits_1_on_warnings_only() {
    expect_code(
        fa(&["check", "--deny-warnings", "tests/cli/warning.fa"]),
        1,
        "denied warning",
    );
    expect_code(
        fa(&["check", "--deny-warnings", "models/quickstart.fa"]),
        0,
        "no warnings to deny",
    );
}

#[test]
fn check_exits_2_on_a_missing_file_and_on_malformed_flags() {
    let output = expect_code(
        fa(&["check", "tests/cli/no_such_file.fa"]),
        2,
        "missing file",
    );
    assert!(
        stderr(&output).contains("no_such_file.fa"),
        "{}",
        stderr(&output)
    );
    expect_code(fa(&["check"]), 2, "no files");
    // An override without `=` is a usage error caught by the flag parser.
    let output = expect_code(
        fa(&["check", "models/quickstart.fa", "--set", "optim.lr"]),
        2,
        "override without =",
    );
    assert!(
        stderr(&output).contains("has no `=`"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn check_reports_bad_override_keys_and_values_as_problems_in_the_file() {
    // Well-formed `key=value` overrides that do not fit the model are diagnostics (exit 1).
    let output = expect_code(
        fa(&["check", "models/quickstart.fa", "--set", "nosuch.key=1"]),
        1,
        "unknown key",
    );
    assert!(
        stderr(&output).contains("fa::resolve::unknown_key"),
        "{}",
        stderr(&output)
    );
    let output = expect_code(
        fa(&["check", "models/quickstart.fa", "--set", "optim.lr=abc"]),
        1,
        "bad value",
    );
    assert!(
        stderr(&output).contains("fa::resolve::type"),
        "{}",
        stderr(&output)
    );
    expect_code(
        fa(&["check", "models/quickstart.fa", "--set", "optim.lr=0.3"]),
        0,
        "good override",
    );
}

#[test]
fn graph_dot_draws_stop_gradient_edges_dashed_and_nothing_else() {
    let output = expect_code(
        fa(&["graph", "--format", "dot", "models/quickstart.fa"]),
        0,
        "graph",
    );
    let dot = stdout(&output);
    assert!(dot.starts_with("digraph \"quickstart\" {"), "{dot}");
    assert!(dot.trim_end().ends_with('}'), "{dot}");
    let dashed: Vec<&str> = dot
        .lines()
        .filter(|line| line.contains("style=dashed"))
        .collect();
    assert!(!dashed.is_empty(), "the stopgrad edge is dashed: {dot}");
    assert!(
        dashed.iter().all(|line| line.contains("\"positive.3\" ->")),
        "only edges out of the detached node: {dashed:?}"
    );
    // The same architecture without stop-gradient has no dashed edge in any cell.
    let output = expect_code(
        fa(&[
            "graph",
            "--format",
            "dot",
            "models/table2/parallel_predictor_nosg.fa",
        ]),
        0,
        "graph nosg",
    );
    let dot = stdout(&output);
    assert_eq!(
        dot.matches("digraph").count(),
        6,
        "one graph per sweep cell"
    );
    assert!(!dot.contains("dashed"), "{dot}");
}

/// Every `.fa` file under `folder`, recursively.
fn fa_files(folder: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder)
        .expect("folder readable")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            files.extend(fa_files(&path));
        } else if path.extension().is_some_and(|e| e == "fa") {
            files.push(path);
        }
    }
    files
}

#[test]
fn fmt_check_passes_on_every_model() {
    let files = fa_files(&repo().join("models"));
    assert!(
        files.len() > 10,
        "the models folder holds the paper's tables"
    );
    let mut args = vec!["fmt", "--check"];
    args.extend(files.iter().map(|f| path_text(f)));
    let output = expect_code(fa(&args), 0, "fmt --check models");
    assert!(
        !stderr(&output).contains("not formatted"),
        "{}",
        stderr(&output)
    );
}

/// The quickstart with its layout spoilt outside comments: tabs for indentation, no space
/// after commas, extra spaces around `=`.
fn badly_formatted(source: &str) -> String {
    source
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("//") {
                return line.to_string();
            }
            let line = line.replace(", ", ",").replacen(" = ", "   =  ", 1);
            match line.strip_prefix("  ") {
                Some(rest) => format!("\t\t{rest}"),
                None => line,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn fmt_check_fails_on_a_badly_formatted_copy_without_touching_it_and_fmt_restores_it() {
    let canonical = std::fs::read_to_string(repo().join("models/quickstart.fa")).unwrap();
    let bad = badly_formatted(&canonical);
    assert_ne!(bad, canonical);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quickstart.fa");
    std::fs::write(&path, &bad).unwrap();

    let output = expect_code(
        fa(&["fmt", "--check", path_text(&path)]),
        1,
        "fmt --check on a bad copy",
    );
    assert!(
        stderr(&output).contains("not formatted"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        bad,
        "--check must not modify the file"
    );

    expect_code(fa(&["fmt", path_text(&path)]), 0, "fmt");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        canonical,
        "the canonical layout comes back"
    );
    expect_code(
        fa(&["fmt", "--check", path_text(&path)]),
        0,
        "fmt --check after fmt",
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
}

#[test]
fn expand_lists_the_six_cells_of_table_one() {
    let output = expect_code(
        fa(&["expand", "models/table1/parallel_predictor.fa"]),
        0,
        "expand",
    );
    let cells: Vec<String> = stdout(&output).lines().map(str::to_string).collect();
    let expected: Vec<String> = [
        "none",
        "mask",
        "nn",
        "nn_noise",
        "batch_noise",
        "gaussian_noise",
    ]
    .iter()
    .map(|label| format!("parallel_predictor[fa={label}]"))
    .collect();
    assert_eq!(cells, expected);
}

#[test]
fn lower_prints_the_quickstart_parameter_total() {
    let output = expect_code(fa(&["lower", "models/quickstart.fa"]), 0, "lower");
    let text = stdout(&output);
    // By hand: convnet(16, 32, 64) on one channel, 3×3 convolutions without bias, each
    // followed by batch norm: 144 + 32 + 4,608 + 64 + 18,432 + 128 = 23,408.
    // g = mlp(256, 128) from 64, batch norm after both layers, no biases:
    // 16,384 + 512 + 32,768 + 256 = 49,920.
    // q = mlp(256, 128) from 128, batch norm after the hidden layer, a biased output:
    // 32,768 + 512 + 32,768 + 128 = 66,176.
    let line = text
        .lines()
        .find(|l| l.starts_with("trainable parameters:"))
        .unwrap_or_else(|| panic!("no total in:\n{text}"));
    assert_eq!(line.split_whitespace().last(), Some("139,504"), "{line}");
    assert!(
        text.contains("bank.augmented.features"),
        "the bank is in the table: {text}"
    );
}
#[test]
fn doctor_names_libtorch_2_11() {
    let output = expect_code(fa(&["doctor"]), 0, "doctor");
    let text = stdout(&output);
    let version = text
        .lines()
        .find(|l| l.starts_with("libtorch version:"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(version.contains("2.11"), "{version}");
    assert!(text.contains("cuda available:"), "{text}");
}
mod runs {
    use super::*;

    fn fashion_root() -> Option<&'static str> {
        let root = "/usr/share/datasets";
        if Path::new(root)
            .join("fashion-mnist/train-images-idx3-ubyte.gz")
            .exists()
        {
            Some(root)
        } else {
            eprintln!(
                "skipped: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"
            );
            None
        }
    }

    /// Trains tests/train/tiny.fa for `steps` steps into `out` without evaluation.
    fn train_tiny(out: &Path, root: &str, steps: u64) -> Output {
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
            fa(&[&args[..], &["--log-format", "json", "--device", "cpu"]].concat()),
            0,
            "train tiny",
        )
    }

    fn is_png(path: &Path) -> bool {
        std::fs::read(path).is_ok_and(|bytes| bytes.starts_with(b"\x89PNG\r\n\x1a\n"))
    }

    #[test]
    fn train_writes_metrics_and_a_checkpoint_and_prints_json_lines() {
        let Some(root) = fashion_root() else { return };
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let output = train_tiny(&run, root, 3);
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
            serde_json::from_str(&std::fs::read_to_string(run.join("model.json")).unwrap())
                .unwrap();
        assert_eq!(model["name"], "tiny");
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(summary["steps"], 3);
        assert!(summary["knn"].is_null(), "--no-eval: no kNN");
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

    #[test]
    fn sweep_writes_a_table_of_both_cells_and_skips_them_when_run_again() {
        let Some(root) = fashion_root() else { return };
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sweep");
        let args = [
            "sweep",
            "tests/cli/tiny_sweep.fa",
            "--out",
            path_text(&out),
            "--data-root",
            root,
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
        let metrics = |cell: &str| {
            std::fs::read_to_string(out.join(cell).join("seed-0/metrics.jsonl")).unwrap()
        };
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
        let Some(root) = fashion_root() else { return };
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        train_tiny(&run, root, 3);
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
        // A folder without metrics fails; ARCHITECTURE.md calls this an I/O problem (exit 2)
        // but `fa plot` reports it as a failed run (exit 1), so only failure is asserted.
        let output = fa(&[
            "plot",
            path_text(&dir.path().join("no_run")),
            "--out",
            path_text(&plots),
        ]);
        assert!(!output.status.success(), "plot of a missing run must fail");
        assert!(
            stderr(&output).contains("metrics.jsonl"),
            "{}",
            stderr(&output)
        );
    }

    #[test]
    fn augment_writes_a_png_grid_of_the_size_it_reports() {
        let Some(root) = fashion_root() else { return };
        let dir = tempfile::tempdir().unwrap();
        let grid = dir.path().join("grid.png");
        let output = expect_code(
            fa(&[
                "augment",
                "tests/train/tiny.fa",
                "--out",
                path_text(&grid),
                "--data-root",
                root,
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
                root,
            ]),
            2,
            "unknown view",
        );
        assert!(
            stderr(&output).contains("no view named `nope`"),
            "{}",
            stderr(&output)
        );
    }

    #[test]
    fn export_of_a_convnet_run_writes_the_encoder_tensors_under_short_names() {
        let Some(root) = fashion_root() else { return };
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        train_tiny(&run, root, 2);
        let out = dir.path().join("backbone.safetensors");
        expect_code(
            fa(&["export", path_text(&run), "--backbone", path_text(&out)]),
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
        let Some(root) = fashion_root() else { return };
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        train_tiny(&run, root, 2);
        let output = expect_code(
            fa(&[
                "eval",
                path_text(&run),
                "--knn",
                "--data-root",
                root,
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
                root,
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
                root,
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
}
