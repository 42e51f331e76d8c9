//! Go to definition (names, pipelines, recipes, sweeps, `use` paths) and the outline of a
//! file (document symbols).

use std::path::Path;

use fa_lang::ir::Span;
use fa_lang::syntax::ast::{ExprKind, Ident, ItemKind};
use lsp_types::{DocumentSymbol, Location, Range, SymbolKind, Url};

use crate::analysis;
use crate::cursor;
use crate::position;
use crate::workspace::Document;

/// Where the name (or `use` path) at byte `offset` of `document` is defined.
pub fn definition(uri: &Url, document: &Document, offset: usize) -> Option<Location> {
    let analysis = &document.analysis;
    for item in &analysis.parsed.items {
        if let ItemKind::Use { path, path_span } = &item.kind {
            if path_span.start <= offset && offset <= path_span.end {
                let folder = document.path.parent().unwrap_or(Path::new(""));
                let target = folder.join(path);
                let target = target.canonicalize().unwrap_or(target);
                let uri = Url::from_file_path(&target).ok()?;
                return Some(Location::new(uri, Range::default()));
            }
        }
    }
    let (_, _, word) = cursor::word_at(&document.text, offset)?;
    let items = analysis::all_items(analysis);
    let defined = items.iter().find_map(|(file, item)| {
        let name = defined_name(&item.kind)?;
        (name.text == word).then_some((*file, name.span))
    })?;
    location(uri, document, defined.0, defined.1)
}

fn defined_name(kind: &ItemKind) -> Option<&Ident> {
    match kind {
        ItemKind::Pipeline { name, .. }
        | ItemKind::Module { name, .. }
        | ItemKind::Sweep { name, .. }
        | ItemKind::RecipeDef { name, .. }
        | ItemKind::Binding { name, .. } => Some(name),
        _ => None,
    }
}

fn location(uri: &Url, document: &Document, file: u32, span: Span) -> Option<Location> {
    let analysis = &document.analysis;
    if file == 0 {
        return Some(Location::new(
            uri.clone(),
            position::range(&document.text, span.start, span.end),
        ));
    }
    let path = analysis::file_path(&analysis.sources, file)?;
    let path = path.canonicalize().unwrap_or(path);
    let (_, text) = analysis.sources.name_and_text(file);
    Some(Location::new(
        Url::from_file_path(&path).ok()?,
        position::range(text, span.start, span.end),
    ))
}

/// The statements of `document` as an outline; configuration blocks list their keys.
#[allow(deprecated)] // `DocumentSymbol::deprecated` must be given; it is left empty.
pub fn symbols(document: &Document) -> Vec<DocumentSymbol> {
    let text = &document.text;
    let range = |span: Span| position::range(text, span.start, span.end);
    let symbol =
        |name: String, detail: Option<String>, kind, span: Span, selection: Span| DocumentSymbol {
            name,
            detail,
            kind,
            tags: None,
            deprecated: None,
            range: range(span),
            selection_range: range(selection),
            children: None,
        };
    let mut out = Vec::new();
    for item in &document.analysis.parsed.items {
        let span = item.span;
        let entry = match &item.kind {
            ItemKind::Model(name) => symbol(
                name.text.clone(),
                Some("model".into()),
                SymbolKind::MODULE,
                span,
                name.span,
            ),
            ItemKind::Use { path, path_span } => symbol(
                path.clone(),
                Some("use".into()),
                SymbolKind::FILE,
                span,
                *path_span,
            ),
            ItemKind::Pipeline { name, .. } => symbol(
                name.text.clone(),
                Some("pipeline".into()),
                SymbolKind::ARRAY,
                span,
                name.span,
            ),
            ItemKind::Module {
                role, name, value, ..
            } => {
                let kind = match &value.kind {
                    ExprKind::Call { name, .. } => name.text.clone(),
                    ExprKind::Name(name) => name.clone(),
                    _ => String::new(),
                };
                symbol(
                    name.text.clone(),
                    Some(format!("{} {kind}", role.keyword())),
                    SymbolKind::CLASS,
                    span,
                    name.span,
                )
            }
            ItemKind::Sweep { name, .. } => symbol(
                name.text.clone(),
                Some("sweep".into()),
                SymbolKind::ENUM,
                span,
                name.span,
            ),
            ItemKind::RecipeDef { name, .. } => symbol(
                name.text.clone(),
                Some("recipe".into()),
                SymbolKind::STRUCT,
                span,
                name.span,
            ),
            ItemKind::RecipeApply(name) => symbol(
                name.text.clone(),
                Some("recipe applied".into()),
                SymbolKind::EVENT,
                span,
                name.span,
            ),
            ItemKind::Block { section, body } => {
                let mut block = symbol(
                    section.text.clone(),
                    Some("section".into()),
                    SymbolKind::NAMESPACE,
                    span,
                    section.span,
                );
                block.children = Some(
                    body.entries
                        .iter()
                        .map(|entry| {
                            let whole = Span::new(
                                0,
                                entry.key.span.start,
                                entry.value.span.end.max(entry.key.span.end),
                            );
                            symbol(
                                entry.key.text.clone(),
                                None,
                                SymbolKind::FIELD,
                                whole,
                                entry.key.span,
                            )
                        })
                        .collect(),
                );
                block
            }
            ItemKind::Loss { terms, .. } => symbol(
                "loss".into(),
                Some(format!("{} terms", terms.len())),
                SymbolKind::FUNCTION,
                span,
                Span::new(0, span.start, span.start + 4),
            ),
            ItemKind::Binding { name, .. } => symbol(
                name.text.clone(),
                None,
                SymbolKind::VARIABLE,
                span,
                name.span,
            ),
        };
        out.push(entry);
    }
    out
}
