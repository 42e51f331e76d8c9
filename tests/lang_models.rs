//! Every file in models/ compiles without errors; the text graph of every sweep cell is snapshotted.

mod support;

use std::path::Path;

/// Compiles `path` (relative to the crate root) and renders all its cells as text.
fn check(path: &Path) -> String {
    let relative = support::relative_to_project(path);
    let compiled = support::models::compile(relative, &[]);
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
    support::enter_project_root();
    insta::glob!("../models", "**/*.fa", |path| {
        if support::is_library(path) {
            return;
        }
        insta::assert_snapshot!(check(path));
    });
}
