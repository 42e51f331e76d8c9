//! Diagnostics: the problems every pass reports, collected in a [`Report`] and rendered with miette.
//!
//! Passes produce plain [`Diagnostic`] values (a stable code, a span, a label, an optional
//! second place and a help line). They become miette diagnostics only here, at the boundary,
//! so the passes stay free of presentation concerns.

use std::fmt;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};
use serde::Serialize;

use crate::ir::Span;
use crate::syntax::SourceMap;

/// How serious a problem is. Warnings never fail `fa check` unless `--deny-warnings`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Severity {
    Warning,
    Error,
}

/// One problem, before rendering.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable code, e.g. `fa::valid::loss_width`.
    pub code: &'static str,
    pub message: String,
    pub span: Span,
    pub label: String,
    /// A second place involved (an earlier definition, the other side of a loss term).
    pub related: Option<(Span, String)>,
    pub help: Option<String>,
}

/// The errors among `problems` as plain lines (`code: message`), for models without their
/// source at hand (a stored `model.json`), where spans cannot be shown.
pub fn plain_errors(problems: &[Diagnostic]) -> String {
    problems
        .iter()
        .filter(|problem| problem.is_error())
        .map(|problem| format!("{}: {}", problem.code, problem.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Diagnostic {
    pub fn error(
        code: &'static str,
        span: Span,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            span,
            label: label.into(),
            related: None,
            help: None,
        }
    }

    pub fn warning(
        code: &'static str,
        span: Span,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, span, message, label)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn with_related(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.related = Some((span, label.into()));
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Sorts diagnostics by position and drops exact duplicates (sweep cells repeat them).
pub fn sort_and_dedup(diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.sort_by(|a, b| {
        (
            a.span.file,
            a.span.start,
            a.span.end,
            b.severity,
            a.code,
            &a.message,
        )
            .cmp(&(
                b.span.file,
                b.span.start,
                b.span.end,
                a.severity,
                b.code,
                &b.message,
            ))
    });
    diagnostics.dedup();
}

/// "did you mean" help for `name` among `candidates`, when one is close enough.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let mut best: Option<(f64, &str)> = None;
    for candidate in candidates {
        let score = strsim::jaro_winkler(name, candidate);
        if score > 0.8 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, candidate)| format!("did you mean `{candidate}`?"))
}

/// All diagnostics of one compilation together with the sources they point into, or an
/// I/O error that prevented reading the main file.
#[derive(Debug, Default)]
pub struct Report {
    pub sources: SourceMap,
    pub diagnostics: Vec<Diagnostic>,
    io: Option<std::io::Error>,
}

impl Report {
    pub fn new(sources: SourceMap, mut diagnostics: Vec<Diagnostic>) -> Report {
        sort_and_dedup(&mut diagnostics);
        Report {
            sources,
            diagnostics,
            io: None,
        }
    }

    /// A report for a file that could not be read (exit code 2, not 1).
    pub fn io(error: std::io::Error) -> Report {
        Report {
            sources: SourceMap::default(),
            diagnostics: Vec::new(),
            io: Some(error),
        }
    }

    /// The I/O error that stopped compilation, if that is what happened.
    pub fn io_error(&self) -> Option<&std::io::Error> {
        self.io.as_ref()
    }

    pub fn has_errors(&self) -> bool {
        self.io.is_some() || self.diagnostics.iter().any(Diagnostic::is_error)
    }

    pub fn has_diagnostics(&self) -> bool {
        self.io.is_some() || !self.diagnostics.is_empty()
    }

    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count() + usize::from(self.io.is_some())
    }

    pub fn warning_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| !d.is_error()).count()
    }

    /// The codes of all diagnostics, in order.
    pub fn codes(&self) -> Vec<&'static str> {
        self.diagnostics.iter().map(|d| d.code).collect()
    }

    /// Renders for standard error: colour and terminal width when it is a terminal.
    pub fn render_for_terminal(&self) -> String {
        use std::io::IsTerminal;
        let terminal = std::io::stderr().is_terminal();
        let width = if terminal {
            terminal_width().unwrap_or(100)
        } else {
            100
        };
        render(self, width, terminal)
    }
}

fn terminal_width() -> Option<usize> {
    std::env::var("COLUMNS").ok()?.parse().ok()
}

/// Renders every diagnostic of `report` with miette's graphical handler at a fixed width.
pub fn render(report: &Report, width: usize, color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(width);
    let mut out = String::new();
    if let Some(error) = &report.io {
        out.push_str(&format!("error: {error}\n"));
    }
    for diagnostic in report.diagnostics.iter().take(MAX_RENDERED) {
        let rendered = Rendered::new(diagnostic, &report.sources);
        // Writing into a String cannot fail.
        let _ = handler.render_report(&mut out, &rendered);
    }
    let hidden = report.diagnostics.len().saturating_sub(MAX_RENDERED);
    if hidden > 0 {
        out.push_str(&format!(
            "… and {hidden} more problems not shown; fix the ones above and check again\n"
        ));
    }
    out
}

/// The most diagnostics rendered for one report. Rendering costs time in the size of the
/// file for each diagnostic, so a large file with a problem on every line (a file repeated
/// a thousand times) would otherwise take minutes to report; the first ones show the way.
pub const MAX_RENDERED: usize = 100;

/// A diagnostic prepared for miette: owns a copy of its source so it can be rendered alone.
#[derive(Debug)]
struct Rendered {
    severity: Severity,
    code: &'static str,
    message: String,
    help: Option<String>,
    source: NamedSource<String>,
    labels: Vec<LabeledSpan>,
    related: Vec<Rendered>,
}

impl Rendered {
    fn new(diagnostic: &Diagnostic, sources: &SourceMap) -> Rendered {
        let (name, text) = sources.name_and_text(diagnostic.span.file);
        let mut labels = vec![LabeledSpan::new_primary_with_span(
            Some(diagnostic.label.clone()),
            source_span(diagnostic.span, text),
        )];
        let mut related = Vec::new();
        if let Some((span, label)) = &diagnostic.related {
            if span.file == diagnostic.span.file {
                labels.push(LabeledSpan::new_with_span(
                    Some(label.clone()),
                    source_span(*span, text),
                ));
            } else {
                let (other_name, other_text) = sources.name_and_text(span.file);
                related.push(Rendered {
                    severity: Severity::Warning,
                    code: "",
                    message: format!("see {other_name}"),
                    help: None,
                    source: NamedSource::new(other_name, other_text.to_string()),
                    labels: vec![LabeledSpan::new_primary_with_span(
                        Some(label.clone()),
                        source_span(*span, other_text),
                    )],
                    related: Vec::new(),
                });
            }
        }
        Rendered {
            severity: diagnostic.severity,
            code: diagnostic.code,
            message: diagnostic.message.clone(),
            help: diagnostic.help.clone(),
            source: NamedSource::new(name, text.to_string()),
            labels,
            related,
        }
    }
}

/// Clamps a span to the text so a stale span can never make rendering panic.
fn source_span(span: Span, text: &str) -> SourceSpan {
    let mut start = span.start.min(text.len());
    while start > 0 && !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = span.end.clamp(start, text.len());
    while end < text.len() && !text.is_char_boundary(end) {
        end += 1;
    }
    SourceSpan::new(start.into(), end - start)
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Rendered {}

impl miette::Diagnostic for Rendered {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        if self.code.is_empty() {
            None
        } else {
            Some(Box::new(self.code))
        }
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning if self.code.is_empty() => miette::Severity::Advice,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|help| Box::new(help) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(self.labels.iter().cloned()))
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        if self.related.is_empty() {
            None
        } else {
            Some(Box::new(
                self.related.iter().map(|r| r as &dyn miette::Diagnostic),
            ))
        }
    }
}
