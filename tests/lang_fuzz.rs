//! The front end never panics or hangs: random bytes, mutated model files, huge, deeply
//! nested, NUL-filled and non-UTF-8 inputs all end in a result (usually diagnostics).

use proptest::prelude::*;

/// Compiles `bytes` as a file next to the models (so `use` paths resolve) and formats it.
fn run(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let compiled = fa_lang::driver::compile_source("models/fuzz_input.fa", &text, &[]);
    let _ = fa_lang::fmt::format_source(&text);
    match compiled {
        Ok(compiled) => {
            for (_, valid) in &compiled.cells {
                let _ = fa_lang::graph::to_text(valid);
                let _ = fa_lang::graph::to_dot(valid);
            }
            true
        }
        Err(report) => {
            let _ = fa_lang::diag::render(&report, 100, false);
            report.has_errors()
        }
    }
}

fn model_sources() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut out = Vec::new();
    for folder in ["", "table1", "table4", "table5"] {
        for entry in std::fs::read_dir(root.join(folder)).expect("models/ exists") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "fa") {
                out.push(std::fs::read_to_string(path).expect("readable"));
            }
        }
    }
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).expect("crate root exists");
        run(&bytes);
    }

    #[test]
    fn mutated_models_never_panic(index in 0usize..64, edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 1..8)) {
        std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).expect("crate root exists");
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
        run(&bytes);
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
    let _ = fa_lang::driver::compile_source("chain.fa", &chain, &[]);
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
