//! The formatter: idempotent, keeps every comment, preserves meaning, and models/ is formatted.

mod support;

use support::{model_files, relative_to_project};

fn comment_texts(text: &str) -> Vec<String> {
    fa_lang::syntax::comments::comments(text)
        .into_iter()
        .map(|c| c.text)
        .collect()
}

fn graph_texts(name: &str, text: &str) -> Vec<String> {
    support::models::compile_text(name, text)
        .cells
        .iter()
        .map(|(_, valid)| fa_lang::graph::to_text(valid))
        .collect()
}

#[test]
fn formatting_is_idempotent_and_keeps_comments_and_meaning() {
    support::enter_project_root();
    for path in model_files() {
        let source = std::fs::read_to_string(&path).expect("readable");
        let once = fa_lang::fmt::format_source(&source)
            .unwrap_or_else(|r| panic!("{}: {}", path.display(), support::models::render(&r)));
        let twice = fa_lang::fmt::format_source(&once).expect("formatted output parses");
        assert_eq!(
            once,
            twice,
            "{}: formatting is not idempotent",
            path.display()
        );
        assert_eq!(
            comment_texts(&source),
            comment_texts(&once),
            "{}: comments changed",
            path.display()
        );
        let name = relative_to_project(&path).to_string_lossy().into_owned();
        if !name.ends_with("common.fa") {
            // The same folder, so `use` paths still resolve.
            assert_eq!(
                graph_texts(&name, &source),
                graph_texts(&name, &once),
                "{}: formatting changed the model",
                path.display()
            );
        }
    }
}

#[test]
fn models_are_formatted() {
    let mut unformatted = Vec::new();
    for path in model_files() {
        let source = std::fs::read_to_string(&path).expect("readable");
        let formatted = fa_lang::fmt::format_source(&source).expect("models parse");
        if formatted != source {
            if std::env::var_os("FA_FMT_WRITE").is_some() {
                std::fs::write(&path, &formatted).expect("writable");
            }
            unformatted.push(path.display().to_string());
        }
    }
    assert!(
        unformatted.is_empty(),
        "not formatted (run with FA_FMT_WRITE=1 to fix): {unformatted:?}"
    );
}

#[test]
fn messy_input_becomes_canonical() {
    let messy = "model   m // the name\n\n\n\nencoder f=convnet( 8,16 )\ndata{path:\"x\",batch:32}\nloss infonce ( tau:0.2 ){a~b,symmetric c ~ d}combine   free\n// end\n";
    let formatted = fa_lang::fmt::format_source(messy).expect("parses");
    assert_eq!(
        formatted,
        "model m  // the name\n\nencoder f = convnet(8, 16)\ndata { path: \"x\", batch: 32 }\nloss infonce(tau: 0.2) { a ~ b, symmetric c ~ d } combine free\n// end\n"
    );
}

#[test]
fn syntax_errors_are_reported() {
    let report = fa_lang::fmt::format_source("model m\nencoder = \n").expect_err("invalid");
    assert_eq!(report.codes(), vec!["fa::syntax::parse"]);
}
