//! One `.fa` file per diagnostic code in `tests/lang/invalid/`; each snapshot holds the source
//! and the rendered diagnostics (no colour, width 100). A file's first line names the code it
//! must produce (`// expect: fa::...`); an optional `// set: key=value` line adds an override.

mod support;

use std::path::Path;

use fa_lang::resolve::Override;

/// Compiles `path` and returns the source with its rendered diagnostics and their codes.
fn check(path: &Path) -> (String, Vec<String>) {
    let relative = support::relative_to_project(path);
    let bytes = std::fs::read(relative).expect("test file is readable");
    let source = String::from_utf8_lossy(&bytes).into_owned();
    let overrides: Vec<Override> = source
        .lines()
        .filter_map(|line| line.strip_prefix("// set: "))
        .map(|text| {
            text.parse()
                .expect("override in a test header is well formed")
        })
        .collect();
    let report = match fa_lang::driver::compile_file(relative, &overrides) {
        Ok(compiled) => compiled.report,
        Err(report) => report,
    };
    let rendered = support::models::render(&report);
    let codes = report.codes().into_iter().map(str::to_string).collect();
    (
        format!("{source}\n---- diagnostics ----\n{rendered}"),
        codes,
    )
}

#[test]
fn invalid_files() {
    support::enter_project_root();
    let mut missing = Vec::new();
    insta::glob!("lang/invalid", "*.fa", |path| {
        let (snapshot, codes) = check(path);
        let expected = snapshot
            .lines()
            .find_map(|line| line.strip_prefix("// expect: "))
            .unwrap_or_else(|| panic!("{} has no `// expect:` line", path.display()))
            .trim()
            .to_string();
        if !codes.contains(&expected) {
            missing.push(format!(
                "{}: expected {expected}, got {codes:?}",
                path.display()
            ));
        }
        insta::assert_snapshot!(snapshot);
    });
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn every_code_is_documented() {
    support::enter_project_root();
    let docs = std::fs::read_to_string("docs/language.md").expect("docs/language.md exists");
    for entry in std::fs::read_dir("tests/lang/invalid").expect("folder exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "fa") {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&path).expect("readable")).into_owned();
        let code = text
            .lines()
            .find_map(|l| l.strip_prefix("// expect: "))
            .expect("expect line")
            .trim()
            .to_string();
        assert!(
            docs.contains(&format!("`{code}`")),
            "{code} is not documented in docs/language.md"
        );
    }
}
