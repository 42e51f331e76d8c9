//! Completion from the text before the cursor: keywords at the start of a statement, FA
//! methods after `fa`, a word's parameters inside its parentheses, a section's keys inside
//! its braces, augmentations inside a pipeline's brackets, and modules and names elsewhere.

use fa_lang::resolve::vocabulary::{
    Vocabulary, AUGMENTATIONS, FA_METHODS, LOSSES, MODULE_KINDS, SECTIONS,
};
use fa_lang::syntax::ast::ItemKind;
use lsp_types::{CompletionItem, CompletionItemKind, Documentation};

use crate::words;
use crate::workspace::Document;

/// What the cursor at byte `offset` may continue with.
pub fn complete(document: &Document, offset: usize) -> Vec<CompletionItem> {
    let text = &document.text[..offset.min(document.text.len())];
    let line = &text[text.rfind('\n').map_or(0, |newline| newline + 1)..];
    let typed = line.trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '_');
    if typed.ends_with(' ') && word_before(typed) == "fa" {
        return vocabulary_items(FA_METHODS, CompletionItemKind::FUNCTION);
    }
    match innermost_open_bracket(text) {
        Some(('(', at)) => {
            let owner = word_before(&text[..at]);
            match words::word(owner) {
                Some((_, word)) => word
                    .params
                    .iter()
                    .map(|param| CompletionItem {
                        label: param.to_string(),
                        kind: Some(CompletionItemKind::PROPERTY),
                        detail: words::default_of(word.name, param).map(|d| format!("default {d}")),
                        insert_text: Some(format!("{param}: ")),
                        ..CompletionItem::default()
                    })
                    .collect(),
                // `view(` takes a pipeline; other calls name no vocabulary word.
                None if owner == "view" => {
                    names(document, |kind| matches!(kind, ItemKind::Pipeline { .. }))
                }
                None => Vec::new(),
            }
        }
        Some(('{', at)) => {
            let owner = word_before(&text[..at]);
            match words::word(owner) {
                Some((_, word)) if !word.params.is_empty() => word
                    .params
                    .iter()
                    .map(|key| CompletionItem {
                        label: key.to_string(),
                        kind: Some(CompletionItemKind::FIELD),
                        detail: words::default_of(word.name, key).map(|d| format!("default {d}")),
                        insert_text: Some(format!("{key}: ")),
                        ..CompletionItem::default()
                    })
                    .collect(),
                // A loss's terms: the values of the graph.
                _ => names(document, |kind| matches!(kind, ItemKind::Binding { .. })),
            }
        }
        Some(('[', _)) => vocabulary_items(AUGMENTATIONS, CompletionItemKind::FUNCTION),
        _ if typed.trim().is_empty() => {
            let mut items: Vec<CompletionItem> = words::KEYWORDS
                .iter()
                .map(|(keyword, doc)| CompletionItem {
                    label: keyword.to_string(),
                    kind: Some(CompletionItemKind::KEYWORD),
                    documentation: Some(Documentation::String(doc.to_string())),
                    ..CompletionItem::default()
                })
                .collect();
            items.extend(vocabulary_items(SECTIONS, CompletionItemKind::MODULE));
            items
        }
        _ if typed.trim_start().starts_with("loss") => {
            vocabulary_items(LOSSES, CompletionItemKind::FUNCTION)
        }
        _ => {
            let mut items = vocabulary_items(MODULE_KINDS, CompletionItemKind::CONSTRUCTOR);
            items.extend(names(document, |kind| {
                matches!(kind, ItemKind::Binding { .. } | ItemKind::Module { .. })
            }));
            for (keyword, doc) in words::KEYWORDS {
                if ["view", "stopgrad", "fa"].contains(keyword) {
                    items.push(CompletionItem {
                        label: keyword.to_string(),
                        kind: Some(CompletionItemKind::KEYWORD),
                        documentation: Some(Documentation::String(doc.to_string())),
                        ..CompletionItem::default()
                    });
                }
            }
            items
        }
    }
}

fn vocabulary_items(vocabulary: Vocabulary, kind: CompletionItemKind) -> Vec<CompletionItem> {
    vocabulary
        .words()
        .iter()
        .map(|word| CompletionItem {
            label: word.name.to_string(),
            kind: Some(kind),
            detail: (!word.params.is_empty()).then(|| format!("({})", word.params.join(", "))),
            documentation: Some(Documentation::String(word.doc.to_string())),
            ..CompletionItem::default()
        })
        .collect()
}

/// The names this file defines with a statement of the kind `wanted` accepts.
fn names(document: &Document, wanted: impl Fn(&ItemKind) -> bool) -> Vec<CompletionItem> {
    crate::analysis::all_items(&document.analysis)
        .iter()
        .filter(|(_, item)| wanted(&item.kind))
        .filter_map(|(_, item)| match &item.kind {
            ItemKind::Binding { name, .. }
            | ItemKind::Module { name, .. }
            | ItemKind::Pipeline { name, .. } => Some(CompletionItem {
                label: name.text.clone(),
                kind: Some(CompletionItemKind::VARIABLE),
                ..CompletionItem::default()
            }),
            _ => None,
        })
        .collect()
}

/// The identifier that ends `text` (spaces before the bracket allowed).
fn word_before(text: &str) -> &str {
    let text = text.trim_end();
    let start = text
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |index| index + 1);
    &text[start..]
}

/// The innermost bracket left open in `text`, and its byte offset; comments and strings
/// are skipped.
fn innermost_open_bracket(text: &str) -> Option<(char, usize)> {
    let mut stack: Vec<(char, usize)> = Vec::new();
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let mut in_string = false;
        let mut previous = ' ';
        for (index, character) in line.char_indices() {
            match character {
                '"' => in_string = !in_string,
                '/' if !in_string && previous == '/' => break,
                '(' | '[' | '{' if !in_string => stack.push((character, line_start + index)),
                ')' | ']' | '}' if !in_string => {
                    stack.pop();
                }
                _ => {}
            }
            previous = character;
        }
        line_start += line.len();
    }
    stack.pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_innermost_open_bracket_ignores_comments_and_closed_pairs() {
        assert_eq!(
            innermost_open_bracket("a = f(x) // (\nb = g("),
            Some(('(', 19))
        );
        assert_eq!(
            innermost_open_bracket("data {\n  k: [1, 2]\n  "),
            Some(('{', 5))
        );
        assert_eq!(innermost_open_bracket("x = \"(\" "), None);
        assert_eq!(word_before("loss infonce "), "infonce");
        assert_eq!(word_before("x -> sofa "), "sofa");
    }
}
