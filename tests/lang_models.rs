//! Every file in models/ compiles without errors; the text graph of every sweep cell is snapshotted.

use std::path::Path;

/// Compiles `path` (relative to the crate root) and renders all its cells as text.
fn check(path: &Path) -> String {
    let relative = path
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path);
    let compiled = match fa_lang::driver::compile_file(relative, &[]) {
        Ok(compiled) => compiled,
        Err(report) => panic!(
            "{} does not compile:\n{}",
            relative.display(),
            fa_lang::diag::render(&report, 100, false)
        ),
    };
    let mut out = String::new();
    for (cell, valid) in &compiled.cells {
        out.push_str(&format!("# {}\n", cell.name));
        out.push_str(&fa_lang::graph::to_text(valid));
        out.push('\n');
    }
    out
}

#[test]
fn models_graph_text() {
    // Relative paths keep file names in diagnostics independent of this machine.
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).expect("crate root exists");
    insta::glob!("../models", "**/*.fa", |path| {
        if path.file_name().is_some_and(|n| n == "common.fa") {
            return;
        }
        insta::assert_snapshot!(check(path));
    });
}
