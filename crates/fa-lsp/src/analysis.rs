//! What the server knows about one open file: its statements (parsed with recovery), and,
//! when it parses and is not a library, its compilation with every diagnostic, the files it
//! `use`s read from the editor's buffers first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fa_lang::diag::{Diagnostic, Report, Severity};
use fa_lang::driver;
use fa_lang::resolve::Cell;
use fa_lang::syntax::ast::{Item, ItemKind};
use fa_lang::syntax::{self, SourceMap};
use fa_lang::valid::ValidModel;
use lsp_types::{DiagnosticRelatedInformation, DiagnosticSeverity, Location, NumberOrString, Url};

use crate::position;
use crate::recover::{self, Parsed};

/// One analysed file.
#[derive(Debug)]
pub struct Analysis {
    /// The file's statements that parse, with the syntax errors of the others (file 0).
    pub parsed: Parsed,
    /// Every source of the compilation (file 0 is this file); empty when it was not compiled.
    pub sources: SourceMap,
    /// Diagnostics of the compilation, pointing into `sources`.
    pub diagnostics: Vec<Diagnostic>,
    /// The validated sweep cells (none when there are errors or nothing was compiled).
    pub cells: Vec<(Cell, ValidModel)>,
}

impl Analysis {
    /// Nothing known yet (a file just opened, before the workspace analyses it).
    pub fn empty() -> Analysis {
        Analysis {
            parsed: Parsed::default(),
            sources: SourceMap::default(),
            diagnostics: Vec::new(),
            cells: Vec::new(),
        }
    }

    /// The first cell's validated model: what hover reports shapes and parameters from.
    pub fn model(&self) -> Option<&ValidModel> {
        self.cells.first().map(|(_, valid)| valid)
    }
}

/// A file meant to be `use`d: statements, none of them a `model` or a `loss`. As `fa check`
/// does, such a file is only parsed; the files that use it check its definitions in full.
pub fn is_library(items: &[Item]) -> bool {
    !items.is_empty()
        && !items
            .iter()
            .any(|item| matches!(item.kind, ItemKind::Model(_) | ItemKind::Loss { .. }))
}

/// Analyses the text of the file at `path`; `overlay` holds the other open files' texts by
/// canonical path.
pub fn analyse(path: &Path, text: &str, overlay: BTreeMap<PathBuf, String>) -> Analysis {
    let parsed = recover::parse(text);
    let mut sources = SourceMap::default();
    sources.add(
        path.display().to_string(),
        Some(path.to_path_buf()),
        text.to_string(),
    );
    let mut analysis = Analysis {
        parsed,
        sources,
        diagnostics: Vec::new(),
        cells: Vec::new(),
    };
    if !analysis.parsed.problems.is_empty() || is_library(&analysis.parsed.items) {
        return analysis;
    }
    let report: Report = match driver::compile_with_overlay(path, text, overlay) {
        Ok(compiled) => {
            analysis.cells = compiled.cells;
            compiled.report
        }
        Err(report) => report,
    };
    if report.io_error().is_none() {
        analysis.sources = report.sources;
        analysis.diagnostics = report.diagnostics;
    }
    analysis
}

/// Where a diagnostic's file lives: this file for file 0, else the path it was read from.
pub fn file_path(sources: &SourceMap, file: u32) -> Option<PathBuf> {
    sources.get(file).and_then(|source| source.path.clone())
}

/// A diagnostic in the protocol's terms, with the code, the label and the help of `fa check`.
pub fn to_lsp(
    diagnostic: &Diagnostic,
    sources: &SourceMap,
    uri_of: &dyn Fn(u32) -> Option<Url>,
) -> lsp_types::Diagnostic {
    let (_, text) = sources.name_and_text(diagnostic.span.file);
    let range = position::range(text, diagnostic.span.start, diagnostic.span.end);
    let mut message = diagnostic.message.clone();
    if !diagnostic.label.is_empty() {
        message.push_str(&format!("\n{}", diagnostic.label));
    }
    if let Some(help) = &diagnostic.help {
        message.push_str(&format!("\nhelp: {help}"));
    }
    let related_information = diagnostic.related.as_ref().and_then(|(span, label)| {
        let uri = uri_of(span.file)?;
        let (_, other) = sources.name_and_text(span.file);
        Some(vec![DiagnosticRelatedInformation {
            location: Location::new(uri, position::range(other, span.start, span.end)),
            message: label.clone(),
        }])
    });
    lsp_types::Diagnostic {
        range,
        severity: Some(match diagnostic.severity {
            Severity::Error => DiagnosticSeverity::ERROR,
            Severity::Warning => DiagnosticSeverity::WARNING,
        }),
        code: Some(NumberOrString::String(diagnostic.code.to_string())),
        source: Some("fa".into()),
        message,
        related_information,
        ..lsp_types::Diagnostic::default()
    }
}

/// Every statement of every file of the analysis, each with the file it is in: this file's
/// from the recovering parse, the `use`d files' parsed again from the compilation's sources.
pub fn all_items(analysis: &Analysis) -> Vec<(u32, Item)> {
    let mut items: Vec<(u32, Item)> = analysis
        .parsed
        .items
        .iter()
        .map(|item| (0, item.clone()))
        .collect();
    for (index, source) in analysis.sources.files.iter().enumerate().skip(1) {
        if source.path.is_none() {
            continue;
        }
        if let Ok(file) = syntax::parse_file(index as u32, &source.text) {
            items.extend(file.items.into_iter().map(|item| (index as u32, item)));
        }
    }
    items
}
