//! What is under the cursor: the word, and what the syntax tree says it is.

use fa_lang::syntax::ast::{Expr, ExprKind, Item, ItemKind, Record};

/// The identifier around byte `offset` (letters, digits, `_`), with its byte range.
pub fn word_at(text: &str, offset: usize) -> Option<(usize, usize, &str)> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let offset = offset.min(text.len());
    if !text.is_char_boundary(offset) {
        return None;
    }
    let start = text[..offset]
        .char_indices()
        .rev()
        .take_while(|(_, c)| is_word(*c))
        .last()
        .map_or(offset, |(index, _)| index);
    let end = offset
        + text[offset..]
            .char_indices()
            .take_while(|(_, c)| is_word(*c))
            .last()
            .map_or(0, |(index, c)| index + c.len_utf8());
    (start < end).then(|| (start, end, &text[start..end]))
}

/// The word a named parameter or key at `offset` belongs to: `("infonce", "tau")` for
/// `infonce(tau: 0.2)`, `("data", "batch")` in a `data { }` block, `("knn", "k")` inside
/// `eval { knn { } }`.
pub fn parameter_at(items: &[Item], offset: usize) -> Option<(String, String)> {
    let inside = |span: fa_lang::ir::Span| span.start <= offset && offset <= span.end;
    for item in items {
        if !inside(item.span) {
            continue;
        }
        match &item.kind {
            ItemKind::Block { section, body }
            | ItemKind::RecipeDef {
                name: section,
                body,
            } => {
                return in_record(&section.text, body, offset);
            }
            ItemKind::Pipeline { value, .. }
            | ItemKind::Module { value, .. }
            | ItemKind::Binding { value, .. }
            | ItemKind::Sweep { axis: value, .. } => return in_expr(value, offset),
            ItemKind::Loss { kind, terms, .. } => {
                return in_expr(kind, offset).or_else(|| {
                    terms.iter().find_map(|term| {
                        in_expr(&term.left, offset).or_else(|| in_expr(&term.right, offset))
                    })
                });
            }
            _ => return None,
        }
    }
    None
}

fn in_record(owner: &str, record: &Record, offset: usize) -> Option<(String, String)> {
    for entry in &record.entries {
        if entry.key.span.start <= offset && offset <= entry.key.span.end {
            return Some((owner.to_string(), entry.key.text.clone()));
        }
        if let ExprKind::Record(inner) = &entry.value.kind {
            if let Some(found) = in_record(&entry.key.text, inner, offset) {
                return Some(found);
            }
        } else if let Some(found) = in_expr(&entry.value, offset) {
            return Some(found);
        }
    }
    None
}

fn in_expr(expr: &Expr, offset: usize) -> Option<(String, String)> {
    let mut found = None;
    expr.walk(&mut |inner| {
        if let ExprKind::Call { name, args } = &inner.kind {
            for arg in args {
                if let Some(param) = &arg.name {
                    if param.span.start <= offset && offset <= param.span.end {
                        found = Some((name.text.clone(), param.text.clone()));
                    }
                }
            }
        }
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_under_the_cursor_spans_identifier_characters_only() {
        let text = "x = mlp(256, é_b)";
        assert_eq!(word_at(text, 5).map(|w| w.2), Some("mlp"));
        assert_eq!(word_at(text, 4).map(|w| w.2), Some("mlp"));
        assert_eq!(word_at(text, 7).map(|w| w.2), Some("mlp"));
        assert_eq!(word_at(text, 3), None);
        // `é` is no identifier character: the word after it is `_b`.
        let after = text.find("_b").unwrap();
        assert_eq!(word_at(text, after + 1).map(|w| w.2), Some("_b"));
    }

    #[test]
    fn a_parameter_names_its_call_or_its_section() {
        let text = "data {\n  batch: 8\n}\nloss infonce(tau: 0.2) {\n  a ~ b\n}\neval {\n  knn { k: 3 }\n}\n";
        let file = fa_lang::syntax::parse_file(0, text).unwrap();
        let at = |needle: &str| text.find(needle).unwrap() + 1;
        assert_eq!(
            parameter_at(&file.items, at("batch")),
            Some(("data".into(), "batch".into()))
        );
        assert_eq!(
            parameter_at(&file.items, at("tau")),
            Some(("infonce".into(), "tau".into()))
        );
        assert_eq!(
            parameter_at(&file.items, at("k:")),
            Some(("knn".into(), "k".into()))
        );
        assert_eq!(parameter_at(&file.items, at("a ~")), None);
    }
}
