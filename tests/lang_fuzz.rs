//! The front end never panics or hangs: random bytes, mutated model files, huge, deeply
//! nested, NUL-filled and non-UTF-8 inputs all end in a result (usually diagnostics).

mod support;

use std::sync::OnceLock;

use proptest::prelude::*;

/// Compiles `bytes` as a file next to the models (so `use` paths resolve), formats it, and
/// checks what every stage gave back:
///
/// - a compiled file has at least one cell, and each cell draws as non-empty text and as a
///   complete GraphViz graph;
/// - a file that does not compile has at least one error, and the rendered report is not
///   empty;
/// - formatted text formats to itself, and when the original compiled, the formatted text
///   compiles to the same graphs; text the formatter refuses has at least one error.
fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(bytes);
    let name = "models/fuzz_input.fa";
    let compiled = fa_lang::driver::compile_source(name, &text, &[]);
    let graphs = match &compiled {
        Ok(compiled) => {
            prop_assert!(!compiled.cells.is_empty(), "a compiled file has no cell");
            let mut graphs = Vec::new();
            for (cell, valid) in &compiled.cells {
                let graph = fa_lang::graph::to_text(valid);
                prop_assert!(!graph.trim().is_empty(), "{}: empty text graph", cell.name);
                let dot = fa_lang::graph::to_dot(valid);
                prop_assert!(
                    dot.starts_with("digraph ") && dot.trim_end().ends_with('}'),
                    "{}: incomplete dot graph:\n{dot}",
                    cell.name
                );
                graphs.push(graph);
            }
            Some(graphs)
        }
        Err(report) => {
            prop_assert!(report.has_errors(), "compilation failed without an error");
            let rendered = support::models::render(report);
            prop_assert!(
                !rendered.trim().is_empty(),
                "an empty report for {:?}",
                report.codes()
            );
            None
        }
    };
    match fa_lang::fmt::format_source(&text) {
        Ok(formatted) => {
            let again = fa_lang::fmt::format_source(&formatted);
            prop_assert!(
                again.as_ref().is_ok_and(|again| *again == formatted),
                "formatting is not idempotent:\n{formatted}"
            );
            if let Some(graphs) = graphs {
                let compiled = fa_lang::driver::compile_source(name, &formatted, &[]);
                let formatted_graphs: Option<Vec<String>> = compiled.ok().map(|compiled| {
                    compiled
                        .cells
                        .iter()
                        .map(|(_, valid)| fa_lang::graph::to_text(valid))
                        .collect()
                });
                prop_assert_eq!(
                    Some(graphs),
                    formatted_graphs,
                    "formatting changed the model"
                );
            }
        }
        Err(report) => {
            prop_assert!(report.has_errors(), "the formatter failed without an error");
        }
    }
    Ok(())
}

/// The text of every file in `models/`, read once.
fn model_sources() -> &'static [String] {
    static SOURCES: OnceLock<Vec<String>> = OnceLock::new();
    SOURCES.get_or_init(|| {
        let sources: Vec<String> = support::model_files()
            .iter()
            .map(|path| std::fs::read_to_string(path).expect("model files are readable"))
            .collect();
        assert!(!sources.is_empty(), "models/ holds model files");
        sources
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        support::enter_project_root();
        check(&bytes)?;
    }

    #[test]
    fn mutated_models_never_panic(index in 0usize..64, edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 1..8)) {
        support::enter_project_root();
        let sources = model_sources();
        let mut bytes = sources[index % sources.len()].clone().into_bytes();
        for (position, kind, byte) in edits {
            if bytes.is_empty() { break; }
            let at = position.index(bytes.len());
            // Delete, duplicate, replace by a token character, or insert a raw byte.
            let tokens = b"{}()[]->~:,$\"= 0.5fa";
            match kind {
                0 => { bytes.remove(at); }
                1 => { let end = (at + 1 + byte as usize % 40).min(bytes.len()); let chunk = bytes[at..end].to_vec(); bytes.splice(at..at, chunk); }
                2 => bytes[at] = tokens[byte as usize % tokens.len()],
                _ => bytes.insert(at, byte),
            }
        }
        check(&bytes)?;
    }
}

#[test]
fn empty_file_reports_missing_loss() {
    let report = fa_lang::driver::compile_source("empty.fa", "", &[]).expect_err("no loss");
    assert!(
        report.codes().contains(&"fa::resolve::no_loss"),
        "{:?}",
        report.codes()
    );
}

#[test]
fn nul_bytes_and_invalid_utf8_give_diagnostics() {
    let report = fa_lang::driver::compile_source("nul.fa", "model m\0\0\n", &[])
        .expect_err("NUL is not a token");
    assert_eq!(report.codes(), vec!["fa::syntax::parse"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("latin1.fa");
    std::fs::write(&path, b"model caf\xe9\n").expect("writable");
    let report = fa_lang::driver::compile_file(&path, &[]).expect_err("not UTF-8");
    assert_eq!(report.codes(), vec!["fa::syntax::invalid_utf8"]);
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for open in ["(", "[", "{"] {
        let close = match open {
            "(" => ")",
            "[" => "]",
            _ => "}",
        };
        let text = format!("x = f{}{}\n", open.repeat(100_000), close.repeat(100_000));
        let report = fa_lang::driver::compile_source("deep.fa", &text, &[]).expect_err("too deep");
        assert_eq!(report.codes(), vec!["fa::syntax::too_deep"]);
    }
    // Exactly at the limit is still parsed (and then rejected for other reasons).
    let limit = fa_lang::syntax::MAX_NESTING;
    let text = format!("sweep s = {}{}\n", "[".repeat(limit), "]".repeat(limit));
    let report = fa_lang::driver::compile_source("limit.fa", &text, &[]).expect_err("no loss");
    assert!(!report.codes().contains(&"fa::syntax::too_deep"));
}

#[test]
fn ten_megabyte_inputs_finish() {
    // Valid statements repeated: many duplicate definitions, all reported.
    let unit = "pipeline p = [crop, flip, jitter(p: 0.8)] // a comment\n";
    let text = unit.repeat(10 * 1024 * 1024 / unit.len());
    let report = fa_lang::driver::compile_source("big.fa", &text, &[]).expect_err("duplicates");
    assert!(report.error_count() > 1000);
    // Garbage: one syntax error.
    let garbage = "#".repeat(10 * 1024 * 1024);
    let report = fa_lang::driver::compile_source("garbage.fa", &garbage, &[]).expect_err("garbage");
    assert_eq!(report.codes(), vec!["fa::syntax::parse"]);
    // A very long chain.
    let chain = format!(
        "model m\npipeline p = [crop]\nencoder f = convnet(8)\nx = view(p){}\n",
        " -> stopgrad".repeat(500_000)
    );
    // It finishes either way; a refusal says why.
    if let Err(report) = fa_lang::driver::compile_source("chain.fa", &chain, &[]) {
        assert!(report.has_errors(), "refused without an error");
    }
}

#[test]
fn huge_dataflow_is_refused_quickly() {
    let text = format!(
        "model m\ndata {{ path: \"x\" }}\npipeline p = [crop]\nencoder f = convnet(8)\nx = view(p) -> f{}\ny = view(p) -> f\nloss infonce {{ x ~ y }}\n",
        " -> fa mask(rate: 0.1)".repeat(200_000)
    );
    let report = fa_lang::driver::compile_source("huge.fa", &text, &[]).expect_err("too large");
    assert_eq!(report.codes(), vec!["fa::valid::too_large"]);
}
