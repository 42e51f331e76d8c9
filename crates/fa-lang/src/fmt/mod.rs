//! The canonical formatter: prints a parsed file back with fixed spacing, keeping comments.
//!
//! Layout rules: one statement per line; single blank lines between statements are kept;
//! a record or loss block stays on one line when the source wrote it on one line, it has no
//! comments or nested blocks, and it fits in [`WIDTH`] columns; otherwise one entry per
//! line, indented by two spaces. Lists break one item per line only when too long. Numbers
//! keep their spelling. Formatting its own output changes nothing.

use crate::diag::Report;
use crate::syntax::ast::*;
use crate::syntax::comments::{comments, Comment};
use crate::syntax::{self, SourceMap};

/// Lines longer than this are broken where the layout allows.
pub const WIDTH: usize = 100;

/// Formats `src`; syntax errors come back as a report.
pub fn format_source(src: &str) -> Result<String, Report> {
    let mut sources = SourceMap::default();
    let file_id = sources.add("<input>", None, src.to_string());
    let file = match syntax::parse_file(file_id, src) {
        Ok(file) => file,
        Err(problems) => return Err(Report::new(sources, problems)),
    };
    let mut printer = Printer {
        src,
        comments: comments(src),
        next: 0,
        out: String::new(),
    };
    printer.file(&file);
    Ok(printer.out)
}

struct Printer<'a> {
    src: &'a str,
    comments: Vec<Comment>,
    next: usize,
    out: String,
}

impl Printer<'_> {
    /// Emits the comments that start before `position`: trailing ones at the end of the
    /// previous line, the others on their own lines at `indent`.
    fn comments_before(&mut self, position: usize, indent: usize) {
        while self.next < self.comments.len() && self.comments[self.next].start < position {
            let comment = self.comments[self.next].clone();
            self.next += 1;
            if comment.trailing && self.out.ends_with('\n') && !self.out.trim_end().is_empty() {
                self.out.pop();
                self.out.push_str("  ");
                self.out.push_str(&comment.text);
                self.out.push('\n');
            } else {
                if self.blank_line_before(comment.start)
                    && !self.out.is_empty()
                    && !self.out.ends_with("\n\n")
                    && !self.out.ends_with("{\n")
                {
                    self.out.push('\n');
                }
                self.out.push_str(&" ".repeat(indent));
                self.out.push_str(&comment.text);
                self.out.push('\n');
            }
        }
    }

    /// True when an empty line separates `position` from the code or comment before it.
    fn blank_line_before(&self, position: usize) -> bool {
        let before = &self.src[..position.min(self.src.len())];
        let trimmed = before.trim_end_matches([' ', '\t', '\r']);
        let Some(stripped) = trimmed.strip_suffix('\n') else {
            return false;
        };
        stripped.trim_end_matches([' ', '\t', '\r']).ends_with('\n')
    }

    fn has_comment_in(&self, start: usize, end: usize) -> bool {
        self.comments[self.next..]
            .iter()
            .any(|c| c.start >= start && c.start < end)
    }

    fn file(&mut self, file: &File) {
        for item in &file.items {
            self.comments_before(item.span.start, 0);
            if !self.out.is_empty()
                && self.blank_line_before(item.span.start)
                && !self.out.ends_with("\n\n")
            {
                self.out.push('\n');
            }
            self.item(item);
            self.out.push('\n');
        }
        self.comments_before(usize::MAX, 0);
        while self.out.ends_with("\n\n") {
            self.out.pop();
        }
    }

    fn item(&mut self, item: &Item) {
        match &item.kind {
            ItemKind::Model(name) => self.out.push_str(&format!("model {}", name.text)),
            ItemKind::Use { path, .. } => self.out.push_str(&format!("use {}", quote(path))),
            ItemKind::Pipeline { name, value } => {
                self.binding(&format!("pipeline {} = ", name.text), value)
            }
            ItemKind::Module {
                role, name, value, ..
            } => self.binding(&format!("{} {} = ", role.keyword(), name.text), value),
            ItemKind::Sweep { name, axis } => {
                self.binding(&format!("sweep {} = ", name.text), axis)
            }
            ItemKind::Binding { name, value } => self.binding(&format!("{} = ", name.text), value),
            ItemKind::RecipeDef { name, body } => {
                self.out.push_str(&format!("recipe {} ", name.text));
                self.record(body, 0);
            }
            ItemKind::RecipeApply(name) => self.out.push_str(&format!("recipe {}", name.text)),
            ItemKind::Block { section, body } => {
                self.out.push_str(&format!("{} ", section.text));
                self.record(body, 0);
            }
            ItemKind::Loss {
                kind,
                terms,
                combine,
            } => {
                self.out.push_str(&format!("loss {} ", inline(kind)));
                let body_start = kind.span.end;
                let body_end = terms.last().map(|t| t.span.end).unwrap_or(body_start);
                let texts: Vec<String> = terms.iter().map(term_text).collect();
                let one_line = format!("{{ {} }}", texts.join(", "));
                let close = self.src[body_end..item.span.end]
                    .find('}')
                    .map(|i| body_end + i)
                    .unwrap_or(item.span.end);
                let multiline = self.newline_after_brace(body_start)
                    || self.has_comment_in(body_start, close)
                    || self.line_len() + one_line.len() > WIDTH;
                if multiline && !terms.is_empty() {
                    self.out.push_str("{\n");
                    for (term, text) in terms.iter().zip(&texts) {
                        self.comments_before(term.span.start, 2);
                        self.out.push_str("  ");
                        self.out.push_str(text);
                        self.out.push('\n');
                    }
                    self.comments_before(close, 2);
                    self.out.push('}');
                } else if terms.is_empty() {
                    self.out.push_str("{}");
                } else {
                    self.out.push_str(&one_line);
                }
                if let Some(combine) = combine {
                    self.out.push_str(&format!(" combine {}", inline(combine)));
                }
            }
        }
    }

    fn line_len(&self) -> usize {
        self.out.len() - self.out.rfind('\n').map(|i| i + 1).unwrap_or(0)
    }

    /// Whether the source breaks the line right after the `{` that follows `from`.
    fn newline_after_brace(&self, from: usize) -> bool {
        let rest = &self.src[from.min(self.src.len())..];
        let Some(open) = rest.find('{') else {
            return false;
        };
        let after = &rest[open + 1..];
        let trimmed = after.trim_start_matches([' ', '\t', '\r']);
        trimmed.starts_with('\n') || trimmed.starts_with("//")
    }

    fn binding(&mut self, prefix: &str, value: &Expr) {
        self.out.push_str(prefix);
        self.expr(value, 0);
    }

    /// An expression at the current position; records and long lists may span lines.
    fn expr(&mut self, expr: &Expr, indent: usize) {
        match &expr.kind {
            ExprKind::Record(record) => self.record(record, indent),
            ExprKind::List(items) => {
                let text = inline(expr);
                if self.line_len() + text.len() <= WIDTH
                    && !self.has_comment_in(expr.span.start, expr.span.end)
                {
                    self.out.push_str(&text);
                } else {
                    self.out.push_str("[\n");
                    for item in items {
                        self.comments_before(item.span.start, indent + 2);
                        self.out.push_str(&" ".repeat(indent + 2));
                        self.expr(item, indent + 2);
                        self.out.push_str(",\n");
                    }
                    self.comments_before(expr.span.end, indent + 2);
                    self.out.push_str(&" ".repeat(indent));
                    self.out.push(']');
                }
            }
            _ => self.out.push_str(&inline(expr)),
        }
    }

    fn record(&mut self, record: &Record, indent: usize) {
        let nested = record.entries.iter().any(|e| {
            matches!(e.value.kind, ExprKind::Record(_)) && !is_inline_record(&e.value, self)
        });
        let one_line = record_inline(record);
        let multiline = self.newline_after_brace(record.span.start)
            || nested
            || self.has_comment_in(record.span.start, record.span.end)
            || self.line_len() + one_line.len() > WIDTH;
        if !multiline || record.entries.is_empty() {
            self.out.push_str(&one_line);
            return;
        }
        self.out.push_str("{\n");
        for entry in &record.entries {
            self.comments_before(entry.key.span.start, indent + 2);
            self.out.push_str(&" ".repeat(indent + 2));
            self.out.push_str(&entry.key.text);
            match &entry.value.kind {
                ExprKind::Record(inner) => {
                    self.out.push(' ');
                    self.record(inner, indent + 2);
                }
                _ => {
                    self.out.push_str(": ");
                    self.expr(&entry.value, indent + 2);
                }
            }
            self.out.push('\n');
        }
        self.comments_before(record.span.end, indent + 2);
        self.out.push_str(&" ".repeat(indent));
        self.out.push('}');
    }
}

fn is_inline_record(expr: &Expr, printer: &Printer<'_>) -> bool {
    match &expr.kind {
        ExprKind::Record(record) => {
            !printer.newline_after_brace(record.span.start)
                && !printer.has_comment_in(record.span.start, record.span.end)
                && record
                    .entries
                    .iter()
                    .all(|e| !matches!(e.value.kind, ExprKind::Record(_)))
        }
        _ => true,
    }
}

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn term_text(term: &Term) -> String {
    format!(
        "{}{} ~ {}",
        if term.symmetric { "symmetric " } else { "" },
        inline(&term.left),
        inline(&term.right)
    )
}

fn record_inline(record: &Record) -> String {
    if record.entries.is_empty() {
        return "{}".into();
    }
    let entries: Vec<String> = record
        .entries
        .iter()
        .map(|entry| match &entry.value.kind {
            ExprKind::Record(inner) => format!("{} {}", entry.key.text, record_inline(inner)),
            _ => format!("{}: {}", entry.key.text, inline(&entry.value)),
        })
        .collect();
    format!("{{ {} }}", entries.join(", "))
}

/// An expression on one line.
fn inline(expr: &Expr) -> String {
    match &expr.kind {
        ExprKind::Chain(steps) => steps.iter().map(inline).collect::<Vec<_>>().join(" -> "),
        ExprKind::Number { text, .. } => text.clone(),
        ExprKind::Per { value, per } => format!("{} per {}", inline(value), inline(per)),
        ExprKind::Str(text) => quote(text),
        ExprKind::Bool(value) => value.to_string(),
        ExprKind::Name(name) => name.clone(),
        ExprKind::Var(name) => format!("${name}"),
        ExprKind::Fa(method) => format!("fa {}", inline(method)),
        ExprKind::Call { name, args } => {
            let args: Vec<String> = args
                .iter()
                .map(|arg| match &arg.name {
                    Some(name) => format!("{}: {}", name.text, inline(&arg.value)),
                    None => inline(&arg.value),
                })
                .collect();
            format!("{}({})", name.text, args.join(", "))
        }
        ExprKind::Tuple(items) => format!(
            "({})",
            items.iter().map(inline).collect::<Vec<_>>().join(", ")
        ),
        ExprKind::List(items) => format!(
            "[{}]",
            items.iter().map(inline).collect::<Vec<_>>().join(", ")
        ),
        ExprKind::Record(record) => record_inline(record),
    }
}
