//! End-to-end tests of the `fa` binary's front-end commands (check, graph, fmt, expand,
//! lower, doctor), run as a user runs them, with their exit codes and what they print. The
//! commands that train are in `cli_runs.rs`.

mod support;

use support::process::{expect_code, fa, path_text, stderr, stdout};
use support::{fa_files, project_path};

#[test]
fn check_treats_a_file_without_model_as_a_library_and_passes_every_model_file() {
    let output = expect_code(fa(&["check", "models/common.fa"]), 0, "library");
    assert!(
        stderr(&output).contains("models/common.fa: a library of"),
        "{}",
        stderr(&output)
    );
    // Every file of models/: the models check, the shared files (`common.fa`) are libraries.
    let files: Vec<String> = fa_files(&project_path("models"))
        .iter()
        .map(|path| path_text(path).to_string())
        .collect();
    let args: Vec<&str> = std::iter::once("check")
        .chain(files.iter().map(String::as_str))
        .collect();
    let output = expect_code(fa(&args), 0, "every file of models/");
    let count = |marker: &str| {
        stderr(&output)
            .lines()
            .filter(|l| l.contains(marker))
            .count()
    };
    let libraries = files.iter().filter(|f| f.ends_with("common.fa")).count();
    assert!(libraries >= 1);
    assert_eq!(count(": a library of"), libraries);
    assert_eq!(count(": ok ("), files.len() - libraries);
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

#[test]
fn fmt_check_passes_on_every_model() {
    let files = fa_files(&project_path("models"));
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
    let canonical = std::fs::read_to_string(project_path("models/quickstart.fa")).unwrap();
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
    // By hand: convnet(16, 32, 256) on one channel, 3×3 convolutions without bias, each
    // followed by batch norm: 144 + 32 + 4,608 + 64 + 73,728 + 512 = 79,088.
    // g = mlp(256, 128) from 256, batch norm after both layers, no biases:
    // 65,536 + 512 + 32,768 + 256 = 99,072.
    // q = mlp(256, 128) from 128, batch norm after the hidden layer, a biased output:
    // 32,768 + 512 + 32,768 + 128 = 66,176.
    let line = text
        .lines()
        .find(|l| l.starts_with("trainable parameters:"))
        .unwrap_or_else(|| panic!("no total in:\n{text}"));
    assert_eq!(line.split_whitespace().last(), Some("244,336"), "{line}");
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

#[test]
fn lower_graph_and_expand_of_a_library_say_it_is_a_library() {
    for command in ["lower", "graph", "expand"] {
        let output = expect_code(fa(&[command, "models/common.fa"]), 1, "a library");
        let text = stderr(&output);
        assert!(
            text.contains("models/common.fa: a library of") && !text.contains("no loss"),
            "fa {command}: {text}"
        );
    }
}

/// Every subcommand's name, from the clap definitions the scripts are generated from.
fn subcommand_names() -> Vec<String> {
    use clap::CommandFactory;
    let names: Vec<String> = fa::cli::Cli::command()
        .get_subcommands()
        .map(|command| command.get_name().to_string())
        .collect();
    // The definitions hold the commands this test must see, so an empty list cannot pass.
    for expected in ["check", "train", "export", "completions", "man", "lsp"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    names
}

#[test]
fn completions_for_bash_zsh_and_fish_mention_every_subcommand_without_fa_torch() {
    let names = subcommand_names();
    for shell in ["bash", "zsh", "fish"] {
        // Served by `fa` itself: a missing backend does not matter.
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_fa"))
            .args(["completions", shell])
            .env("FA_TORCH", "/nonexistent/fa-torch")
            .output()
            .expect("fa runs");
        let output = expect_code(output, 0, shell);
        let script = stdout(&output);
        for name in &names {
            assert!(
                script.contains(name.as_str()),
                "{shell}: no `{name}` in\n{script}"
            );
        }
        // Flags too; fish spells a long flag `-l deny-warnings`.
        assert!(
            script.contains("deny-warnings"),
            "{shell}: flags are completed too"
        );
    }
    let output = expect_code(fa(&["completions", "tcsh"]), 2, "an unknown shell");
    assert!(stderr(&output).contains("tcsh"), "{}", stderr(&output));
}

#[test]
fn man_page_is_roff_and_lists_every_subcommand() {
    let output = expect_code(fa(&["man"]), 0, "man");
    let page = stdout(&output);
    assert!(
        page.starts_with(".ie") || page.contains(".TH fa"),
        "roff: {page}"
    );
    let subcommands = page
        .split(".SH SUBCOMMANDS")
        .nth(1)
        .unwrap_or_else(|| panic!("no SUBCOMMANDS section in\n{page}"));
    for name in subcommand_names() {
        assert!(
            subcommands.contains(&format!("fa\\-{name}")) || subcommands.contains(&name),
            "no `{name}` among the subcommands of\n{page}"
        );
    }
}
